// The pre-tokenizer's split pattern: every code point below U+30000 (and a sample above) in the
// contexts the pattern distinguishes (after/before letters, digits, spaces, tabs, newlines, an
// apostrophe) splits exactly where tokenizers' Qwen2.5 pre-tokenizer splits; the hand-written
// matchers agree with PCRE2 running the translated pattern; the translation itself.
#include <catch2/catch.hpp>

#include <grpo/tokenizer/detail/split_pattern.hpp>

#include <cstring>

#include "fixture.hpp"

using grpo::tokenizer_detail::SplitPattern;

namespace {

/// split_lengths.bin: per chunk of split_text.txt its byte length, the number of tokenizers'
/// pieces and their byte lengths (little-endian uint32).
std::vector<std::uint32_t> probe_lengths() {
  const std::string raw = grpo::test::read_binary(grpo::test::tokenizer_fixture_dir() / "probes/split_lengths.bin");
  std::vector<std::uint32_t> lengths(raw.size() / 4);
  std::memcpy(lengths.data(), raw.data(), lengths.size() * 4);
  return lengths;
}

/// The chunks of split_text.txt with tokenizers' piece lengths for each.
std::vector<std::pair<std::string, std::vector<std::uint32_t>>> probe_chunks() {
  const std::string text = grpo::test::read_binary(grpo::test::tokenizer_fixture_dir() / "probes/split_text.txt");
  const auto lengths = probe_lengths();
  std::vector<std::pair<std::string, std::vector<std::uint32_t>>> chunks;
  std::size_t offset = 0;
  for (std::size_t at = 0; at + 1 < lengths.size();) {
    const std::uint32_t bytes = lengths[at], count = lengths[at + 1];
    at += 2;
    if (at + count > lengths.size() || offset + bytes > text.size()) throw std::runtime_error("probes: inconsistent files");
    chunks.emplace_back(text.substr(offset, bytes), std::vector<std::uint32_t>(lengths.begin() + static_cast<std::ptrdiff_t>(at),
                                                                                lengths.begin() + static_cast<std::ptrdiff_t>(at + count)));
    offset += bytes;
    at += count;
  }
  if (offset != text.size()) throw std::runtime_error("probes: text longer than its lengths say");
  return chunks;
}

std::vector<std::pair<std::size_t, std::size_t>> matches(const SplitPattern& pattern, std::string_view text) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  pattern.for_each_match(text, [&](std::size_t a, std::size_t b) { out.emplace_back(a, b); });
  return out;
}

}  // namespace

TEST_CASE("split pattern: Qwen2.5 pieces equal tokenizers' for every code point in context", "[tokenizer]") {
  const auto chunks = probe_chunks();
  REQUIRE(chunks.size() > 1000);
  const auto& tok = grpo::test::qwen_tokenizer();
  int failures = 0;
  for (const auto& [chunk, expected] : chunks) {
    std::vector<std::uint32_t> got;
    for (const auto& piece : tok.pre_tokenize(chunk)) got.push_back(static_cast<std::uint32_t>(piece.size()));
    if (got != expected && failures++ < 5) UNSCOPED_INFO("chunk starting " << chunk.substr(0, 40));
  }
  CHECK(failures == 0);
}

TEST_CASE("split pattern: hand-written matchers equal PCRE2 on the translated pattern", "[tokenizer]") {
  // Every probe chunk and every corpus text, for the three patterns with a hand-written matcher.
  std::vector<std::string> texts;
  for (auto& chunk : probe_chunks()) texts.push_back(std::move(chunk.first));
  const auto fixture = grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "cases.json");
  for (const auto& c : fixture["cases"]) texts.push_back(grpo::test::unhex(c["normalized"]));
  for (const auto pattern : {grpo::tokenizer_detail::qwen2_pattern, grpo::tokenizer_detail::llama3_pattern, grpo::tokenizer_detail::gpt2_pattern}) {
    const SplitPattern fast(std::string(pattern), true, "test");
    const SplitPattern pcre2(std::string(pattern), true, "test", /*allow_fast_path=*/false);
    REQUIRE(fast.tiles());
    REQUIRE_FALSE(pcre2.tiles());
    int failures = 0;
    for (const auto& text : texts) {
      if (matches(fast, text) != matches(pcre2, text) && failures++ < 5) UNSCOPED_INFO(pattern << " on " << text.substr(0, 40));
    }
    CHECK(failures == 0);
  }
}

TEST_CASE("split pattern: Oniguruma escapes are translated, unsupported ones rejected", "[tokenizer]") {
  using grpo::tokenizer_detail::translate_onig_pattern;
  // \s is Oniguruma's White_Space (no U+180E, which PCRE2's \s includes).
  const SplitPattern space("\\s", true, "test");
  CHECK(matches(space, "a\xE1\xA0\x8E" "b").empty());                                  // U+180E
  CHECK(matches(space, "a\xE3\x80\x80" "b") == std::vector<std::pair<std::size_t, std::size_t>>{{1, 4}});  // U+3000
  // \h is a hexadecimal digit in Oniguruma.
  const SplitPattern hex("\\h+", true, "test");
  CHECK(matches(hex, "xx0aFz") == std::vector<std::pair<std::size_t, std::size_t>>{{2, 5}});
  // \p{L} includes letters newer than PCRE2 10.42's Unicode 14, e.g. U+1C89 (Unicode 16).
  const SplitPattern letters("\\p{L}+", true, "test");
  CHECK(matches(letters, "\xE1\xB2\x89") == std::vector<std::pair<std::size_t, std::size_t>>{{0, 3}});
  // A literal string pattern needs no escaping.
  const SplitPattern literal("a.b", false, "test");
  CHECK(matches(literal, "axb a.b") == std::vector<std::pair<std::size_t, std::size_t>>{{4, 7}});
  CHECK_THROWS_WITH(translate_onig_pattern("\\p{Han}+", "pre_tokenizer.pattern"),
                    Catch::Contains("pre_tokenizer.pattern") && Catch::Contains("\\p{Han}"));
  CHECK_THROWS_WITH(translate_onig_pattern("[^\\S]", "f"), Catch::Contains("negated set inside a character class"));
  CHECK_THROWS_WITH(translate_onig_pattern("\\bword", "f"), Catch::Contains("\\b"));
  CHECK_THROWS_WITH(translate_onig_pattern("(?m:.)", "f"), Catch::Contains("(?m)"));
  CHECK_THROWS_WITH(translate_onig_pattern("[[:alpha:]]", "f"), Catch::Contains("nested character class"));
  CHECK_THROWS_WITH(SplitPattern("a*", true, "f"), Catch::Contains("empty string"));
  CHECK_THROWS_WITH(SplitPattern("(unclosed", true, "f"), Catch::Contains("invalid split pattern"));
  CHECK_THROWS_WITH(SplitPattern("", false, "f"), Catch::Contains("empty split string"));
}
