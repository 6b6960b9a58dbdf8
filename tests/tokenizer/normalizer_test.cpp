// The normalizer: NFC equals tokenizers' NFC for every code point below U+30000 (and a sample
// above) alone and next to combining marks, and the fast path (skipping inert text) equals
// utf8proc's full NFC on adversarial mixtures.
#include <catch2/catch.hpp>

#include <grpo/tokenizer/detail/normalizer.hpp>

#include <random>

#include "fixture.hpp"

using grpo::tokenizer_detail::NormalizationForm;

TEST_CASE("normalizer: NFC equals tokenizers' NFC, code point by code point", "[tokenizer]") {
  const auto dir = grpo::test::tokenizer_fixture_dir() / "probes";
  const std::string input = grpo::test::read_binary(dir / "nfc_input.txt");
  const std::string expected = grpo::test::read_binary(dir / "nfc_expected.txt");
  const grpo::tokenizer_detail::Normalizer nfc({NormalizationForm::nfc});
  std::string storage, scratch;
  // Line by line, so a difference names its code point (lines hold one code point each).
  std::size_t a = 0, b = 0;
  int failures = 0;
  while (a <= input.size() && b <= expected.size()) {
    std::size_t a_end = input.find('\n', a), b_end = expected.find('\n', b);
    if (a_end == std::string::npos) a_end = input.size();
    if (b_end == std::string::npos) b_end = expected.size();
    const std::string_view line(input.data() + a, a_end - a);
    const std::string_view want(expected.data() + b, b_end - b);
    if (nfc.apply(line, storage, scratch) != want && failures++ < 10) UNSCOPED_INFO("line " << line);
    a = a_end + 1;
    b = b_end + 1;
  }
  CHECK(failures == 0);
  CHECK(a == input.size() + 1);
  CHECK(b == expected.size() + 1);
}

TEST_CASE("normalizer: the NFC fast path equals NFC of the whole text", "[tokenizer]") {
  // Random strings over an alphabet dense in what composes, reorders or decomposes: starters
  // that take marks, marks of several combining classes, Hangul L/V/T jamo and syllables,
  // singletons (U+212B), exclusions (U+0958), precomposed letters, CJK, ASCII, and characters
  // newer than tokenizers' Unicode 9 tables (U+07FD, U+0898 marks; U+11935 + U+11930, which
  // Unicode 13 composes). The reference is utf8proc on the whole text, split only at those.
  const std::vector<char32_t> alphabet = {
      'a', 'e', 'o', 'A', ' ', '\n', 0xE9, 0xC5, 0x212B, 0x0958, 0x0301, 0x0308, 0x0327, 0x0316, 0x0345, 0x05B0,
      0x093C, 0x0915, 0x3099, 0x304B, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xAC01, 0x4E2D, 0x0CC6, 0x0CC2, 0x0CD5,
      0x0B47, 0x0B3E, 0x0B57, 0x1B05, 0x1B35, 0x0FB2, 0x0F80, 0x0F71, 0x1D15E, 0x1D165, 0xFB01, 0x2126, 0x0344,
      0x07FD, 0x0898, 0x11935, 0x11930};
  std::mt19937 rng(42);
  int failures = 0;
  for (int k = 0; k < 20000; ++k) {
    std::string text;
    const int length = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < length; ++i) grpo::utf8::append(text, alphabet[rng() % alphabet.size()]);
    std::string fast;
    const bool changed = grpo::tokenizer_detail::nfc_fast(text, fast);
    std::string full;
    grpo::tokenizer_detail::normalize_segmented(text, NormalizationForm::nfc, full);
    if ((changed ? fast : text) != full && failures++ < 10) UNSCOPED_INFO("text " << text);
  }
  CHECK(failures == 0);
}

TEST_CASE("normalizer: forms and sequences", "[tokenizer]") {
  std::string storage, scratch;
  const grpo::tokenizer_detail::Normalizer none;
  CHECK(none.empty());
  CHECK(none.apply("e\xCC\x81", storage, scratch) == "e\xCC\x81");
  // e + U+0301 <-> U+00E9; U+FB01 (ﬁ) is a compatibility ligature: only NFK* expand it.
  const grpo::tokenizer_detail::Normalizer nfc({NormalizationForm::nfc});
  const grpo::tokenizer_detail::Normalizer nfd({NormalizationForm::nfd});
  const grpo::tokenizer_detail::Normalizer nfkc({NormalizationForm::nfkc});
  const grpo::tokenizer_detail::Normalizer nfkd({NormalizationForm::nfkd});
  CHECK(nfc.apply("e\xCC\x81 \xEF\xAC\x81", storage, scratch) == "\xC3\xA9 \xEF\xAC\x81");
  CHECK(nfd.apply("\xC3\xA9", storage, scratch) == "e\xCC\x81");
  CHECK(nfkc.apply("\xEF\xAC\x81 e\xCC\x81", storage, scratch) == "fi \xC3\xA9");
  CHECK(nfkd.apply("\xEF\xAC\x81 \xC3\xA9", storage, scratch) == "fi e\xCC\x81");
  const grpo::tokenizer_detail::Normalizer sequence({NormalizationForm::nfd, NormalizationForm::nfc});
  CHECK(sequence.apply("\xE2\x84\xAB", storage, scratch) == "\xC3\x85");  // Angstrom sign -> Å
  CHECK(nfc.apply("plain ascii", storage, scratch) == "plain ascii");
}
