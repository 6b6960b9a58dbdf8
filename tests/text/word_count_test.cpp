// The LongBench-Write word count against its Python definition
//   len(re.findall(r'[\u4e00-\u9fff]', s)) + len(re.findall(r'\b[a-zA-Z]+\b', s))
// on hand-derived cases, every shipped prompt, an adversarial list and 4,000 random byte strings
// (tests/python/fixtures/text.py), and the word-character table against Python's `re` for every
// code point.
#include <grpo/text/word_count.hpp>

#include "python_reference.hpp"

using grpo::word_count;

TEST_CASE("method.md's examples") {
  CHECK(word_count("我爱Python编程") == 4);   // 4 CJK; "Python" touches CJK letters (\w), no \b
  CHECK(word_count("我爱 Python 编程") == 5);  // 4 CJK + "Python"
  CHECK(word_count("don't e-mail abc123 x_y") == 4);  // don, t, e, mail; abc123 and x_y mix in \w
  CHECK(word_count("GPT-4o") == 1);  // GPT; "4o" is a \w run with a digit
  CHECK(word_count("café") == 0);   // é is a non-ASCII letter inside the run
}

TEST_CASE("hand-derived counts") {
  CHECK(word_count("") == 0);
  CHECK(word_count("   ") == 0);
  CHECK(word_count("The quick brown fox.") == 4);
  CHECK(word_count("cafe\xCC\x81") == 1);      // e + U+0301: the combining mark is not \w, "cafe" stands alone
  CHECK(word_count("1000 words") == 1);        // digits never count
  CHECK(word_count("hello_world") == 0);       // underscore joins the run
  CHECK(word_count("\xE4\xB8\x80") == 1);      // U+4E00, first counted
  CHECK(word_count("\xE9\xBF\xBF") == 1);      // U+9FFF, last counted
  CHECK(word_count("\xE4\xB7\xBF") == 0);      // U+4DFF is not in the range (and not \w)
  CHECK(word_count("\xEA\x80\x80" "abc") == 0);  // U+A000 (Yi, a letter) joins "abc" into one non-ASCII run
  CHECK(word_count("\xEF\xBC\xA1" "bc") == 0);   // fullwidth A is \w but not ASCII
  CHECK(word_count("\xE2\x80\x8D" "ab") == 1);   // ZWJ is not \w: "ab" is a word
  CHECK(word_count("ab\x80" "cd") == 2);        // invalid byte -> U+FFFD, not \w: two words
  CHECK(word_count("ab\xE4\xB8") == 1);         // truncated CJK -> U+FFFD: "ab" counts, the CJK does not
  CHECK(word_count("\xED\xA0\x80" "x") == 1);   // surrogate bytes -> 3 x U+FFFD, then "x"
}

TEST_CASE("is_word_char agrees with Python's re \\w for every code point") {
  const std::string bits = grpo_test::read_fixture("word_chars.bin");
  REQUIRE(bits.size() == 0x110000 / 8);
  const std::string versions = grpo_test::read_fixture("versions.txt");
  INFO("reference Python/Unicode: " << versions << "; table: " << grpo::detail::word_char_table_python_version << " "
                                    << grpo::detail::word_char_table_unicode_version);
  std::size_t mismatches = 0;
  for (char32_t c = 0; c < 0x110000; ++c) {
    const bool python = (static_cast<unsigned char>(bits[c >> 3]) >> (c & 7)) & 1;
    if (python != grpo::is_word_char(c) && ++mismatches <= 10) {
      UNSCOPED_INFO("U+" << std::hex << static_cast<std::uint32_t>(c) << " python=" << python);
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("word_count agrees with Python on shipped prompts, adversarial and random strings") {
  const auto cases = grpo_test::python_text_cases();
  REQUIRE(cases.size() > 4000);
  std::size_t mismatches = 0;
  for (const auto& c : cases) {
    if (word_count(c.bytes) != c.words && ++mismatches <= 10) {
      UNSCOPED_INFO("bytes: " << c.bytes << " ours=" << word_count(c.bytes) << " python=" << c.words);
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("a 10,000-word answer is counted exactly") {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "Alpha beta, gamma: delta epsilon. ";  // 5 words each
  for (int i = 0; i < 500; ++i) text += "\xE4\xB8\xAD\xE6\x96\x87";               // 中文: 2 each
  CHECK(word_count(text) == 2000 * 5 + 500 * 2);
}
