// UTF-8 decoding with replacement, checked against hand-derived byte sequences (Unicode Table 3-7,
// "maximal subpart" rule) and against Python's bytes.decode("utf-8", "replace") on thousands of
// adversarial and random byte strings (tests/python/fixtures/text.py).
#include <grpo/text/utf8.hpp>

#include "python_reference.hpp"

using namespace grpo;

namespace {
constexpr char32_t R = utf8::replacement_character;
}

TEST_CASE("decode keeps valid UTF-8 of every length") {
  // "a" (1 byte), "é" C3 A9 (2), "中" E4 B8 AD (3), "😀" F0 9F 98 80 (4)
  CHECK(utf8::decode("a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80") == U"a\u00E9\u4E2D\U0001F600");
  CHECK(utf8::decode("") == U"");
  // Boundaries: U+007F, U+0080 (C2 80), U+07FF (DF BF), U+0800 (E0 A0 80), U+D7FF (ED 9F BF),
  // U+E000 (EE 80 80), U+FFFF (EF BF BF), U+10000 (F0 90 80 80), U+10FFFF (F4 8F BF BF)
  CHECK(utf8::decode("\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF") ==
        std::u32string{0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF});
  CHECK(utf8::is_valid("a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80"));
}

TEST_CASE("decode replaces each maximal invalid subpart by one U+FFFD") {
  CHECK(utf8::decode("\x80") == std::u32string{R});                   // lone continuation
  CHECK(utf8::decode("\x80\xBF") == std::u32string{R, R});            // each continuation alone
  CHECK(utf8::decode("\xC2") == std::u32string{R});                   // truncated 2-byte at the end
  CHECK(utf8::decode("\xC2" "a") == std::u32string{R, 'a'});          // lead byte, then ASCII resumes
  CHECK(utf8::decode("\xE2\x82") == std::u32string{R});               // E2 82 is one maximal subpart
  CHECK(utf8::decode("\xE2\x82" "a") == std::u32string{R, 'a'});
  CHECK(utf8::decode("\xF0\x9F\x98") == std::u32string{R});           // truncated emoji: one U+FFFD
  CHECK(utf8::decode("\xC0\xAF") == std::u32string{R, R});            // C0 never starts a sequence
  CHECK(utf8::decode("\xE0\x80\x80") == std::u32string{R, R, R});     // overlong: E0 needs A0..BF
  CHECK(utf8::decode("\xED\xA0\x80") == std::u32string{R, R, R});     // surrogate D800: ED needs 80..9F
  CHECK(utf8::decode("\xF4\x90\x80\x80") == std::u32string{R, R, R, R});  // > U+10FFFF
  CHECK(utf8::decode("\xF0\x80\x80\x80") == std::u32string{R, R, R, R});  // overlong 4-byte
  CHECK(utf8::decode("\xF5\x80") == std::u32string{R, R});
  CHECK(utf8::decode("\xFF\xFE") == std::u32string{R, R});
  CHECK(utf8::decode("\xE4\xB8\xE4\xB8\xAD") == std::u32string{R, 0x4E2D});  // cut sequence, then a valid one
}

TEST_CASE("decode_one reports the bytes it consumed") {
  auto d = utf8::decode_one("\xE2\x82" "a", 0);
  CHECK(d.code_point == R);
  CHECK(d.length == 2);
  CHECK_FALSE(d.valid);
  d = utf8::decode_one("x\xE4\xB8\xAD", 1);
  CHECK(d.code_point == 0x4E2D);
  CHECK(d.length == 3);
  CHECK(d.valid);
}

TEST_CASE("validation finds the first invalid byte") {
  CHECK(utf8::first_invalid("plain ascii text, longer than eight bytes") == std::string_view::npos);
  CHECK(utf8::first_invalid("0123456789abcdef\x80") == 16);
  CHECK(utf8::first_invalid("\xE4\xB8\xAD\xED\xA0\x80") == 3);
  CHECK_FALSE(utf8::is_valid("\xC0\x80"));  // overlong NUL ("modified UTF-8")
  CHECK(utf8::is_valid(std::string_view("\0", 1)));
}

TEST_CASE("encode writes UTF-8 and replaces what has no UTF-8 form") {
  CHECK(utf8::encode(U"a\u00E9\u4E2D\U0001F600") == "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
  CHECK(utf8::encode(std::u32string{0xD800}) == "\xEF\xBF\xBD");
  CHECK(utf8::encode(std::u32string{0x110000}) == "\xEF\xBF\xBD");
}

TEST_CASE("sanitize replaces invalid bytes and keeps valid ones") {
  CHECK(utf8::sanitize("ok \xE4\xB8\xAD") == "ok \xE4\xB8\xAD");
  CHECK(utf8::sanitize("a\x80" "b") == "a\xEF\xBF\xBD" "b");
  CHECK(utf8::sanitize("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(utf8::is_valid(utf8::sanitize("\xF0\x9F\x98")));
}

TEST_CASE("safe_prefix_length never cuts inside a character") {
  const std::string_view text = "a\xE4\xB8\xAD" "b";  // a 中 b
  CHECK(utf8::safe_prefix_length(text, 0) == 0);
  CHECK(utf8::safe_prefix_length(text, 1) == 1);
  CHECK(utf8::safe_prefix_length(text, 2) == 1);
  CHECK(utf8::safe_prefix_length(text, 3) == 1);
  CHECK(utf8::safe_prefix_length(text, 4) == 4);
  CHECK(utf8::safe_prefix_length(text, 99) == 5);
}

TEST_CASE("decode and sanitize agree with Python's errors='replace' on every reference case") {
  const auto cases = grpo_test::python_text_cases();
  REQUIRE(cases.size() > 4000);
  std::size_t with_invalid = 0;
  for (const auto& c : cases) {
    INFO("case bytes (" << c.bytes.size() << "): " << c.bytes);
    REQUIRE(utf8::decode(c.bytes) == c.code_points);
    if (!utf8::is_valid(c.bytes)) {
      ++with_invalid;
      CHECK(c.code_points.find(R) != std::u32string::npos);
    } else {
      CHECK(utf8::sanitize(c.bytes) == c.bytes);
    }
    CHECK(utf8::sanitize(c.bytes) == utf8::encode(c.code_points));
  }
  CHECK(with_invalid > 300);  // the reference set really exercises invalid input
}
