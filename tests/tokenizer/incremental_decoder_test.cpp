// grpo::IncrementalDecoder: pushing ids one at a time yields, concatenated, exactly what
// tokenizers' decode gives for all of them, and never a partial character.
#include <catch2/catch.hpp>

#include <grpo/text/utf8.hpp>
#include <grpo/tokenizer/incremental_decoder.hpp>

#include "fixture.hpp"

using grpo::IncrementalDecoder;
using grpo::test::ids_of;
using grpo::test::unhex;

namespace {

/// Pushes `ids` one by one; checks every piece is valid UTF-8 and returns the concatenation.
std::string decode_incrementally(IncrementalDecoder& decoder, const std::vector<std::int64_t>& ids, int& invalid_pieces) {
  std::string text;
  for (std::int64_t id : ids) {
    const std::string piece = decoder.push(id);
    if (!grpo::utf8::is_valid(piece)) ++invalid_pieces;
    text += piece;
  }
  const std::string rest = decoder.finish();
  if (!grpo::utf8::is_valid(rest)) ++invalid_pieces;
  return text + rest;
}

}  // namespace

TEST_CASE("IncrementalDecoder: concatenated pushes equal tokenizers' decode", "[tokenizer]") {
  const auto& tok = grpo::test::qwen_tokenizer();
  const auto cases = grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "cases.json")["cases"];
  const auto decode_cases = grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "decode_cases.json");
  int failures = 0;
  int invalid_pieces = 0;
  for (const bool skip_special : {false, true}) {
    IncrementalDecoder decoder(tok, skip_special);  // reused: finish() empties it
    const char* field = skip_special ? "decoded_skip_special" : "decoded";
    for (const auto* list : {&cases, &decode_cases}) {
      for (const auto& c : *list) {
        if (decode_incrementally(decoder, ids_of(c["ids"]), invalid_pieces) != unhex(c[field])) {
          ++failures;
          UNSCOPED_INFO("ids " << c["ids"].dump() << " skip_special " << skip_special);
        }
      }
    }
  }
  CHECK(failures == 0);
  CHECK(invalid_pieces == 0);
}

TEST_CASE("IncrementalDecoder: a character cut across tokens is emitted once, when complete", "[tokenizer]") {
  const auto& tok = grpo::test::qwen_tokenizer();
  // In Qwen's byte-level vocabulary the single bytes of "😀" (F0 9F 98 80) are tokens; their ids
  // are the ids of the byte-level characters ð, Ł, ĺ, Ģ (bytes_to_unicode of GPT-2).
  std::vector<std::int64_t> bytes;
  for (const char* spelled : {"ð", "Ł", "ĺ", "Ģ"}) {
    const auto id = tok.token_to_id(spelled);
    REQUIRE(id.has_value());
    bytes.push_back(*id);
  }
  IncrementalDecoder decoder(tok);
  CHECK(decoder.push(tok.encode("a")).size() == 1);
  CHECK(decoder.push(bytes[0]).empty());
  CHECK(decoder.pending() == "\xF0");
  CHECK(decoder.push(bytes[1]).empty());
  CHECK(decoder.push(bytes[2]).empty());
  CHECK(decoder.push(bytes[3]) == "\xF0\x9F\x98\x80");
  CHECK(decoder.pending().empty());
  // A cut that cannot be completed becomes U+FFFD as soon as that is certain, like decode():
  // F0 9F then 'b' -> one U+FFFD for the maximal subpart F0 9F, then "b".
  CHECK(decoder.push(bytes[0]).empty());
  CHECK(decoder.push(bytes[1]).empty());
  CHECK(decoder.push(tok.encode("b")) == "\xEF\xBF\xBD" "b");
  // At the end, held-back bytes become one U+FFFD (finish), as decode() does for a cut character.
  CHECK(decoder.push(bytes[0]).empty());
  CHECK(decoder.finish() == "\xEF\xBF\xBD");
  CHECK(decoder.finish().empty());
  // Ids that name no token contribute nothing.
  CHECK(decoder.push(std::int64_t{151700}).empty());
  CHECK(decoder.push(std::int64_t{-3}).empty());
}

TEST_CASE("IncrementalDecoder: special tokens follow skip_special", "[tokenizer]") {
  const auto& tok = grpo::test::qwen_tokenizer();
  IncrementalDecoder keep(tok, false);
  IncrementalDecoder skip(tok, true);
  CHECK(keep.push(std::int64_t{151644}) == "<|im_start|>");
  CHECK(skip.push(std::int64_t{151644}).empty());
  // <think> is an added token but not special: kept by both.
  CHECK(skip.push(std::int64_t{151667}) == "<think>");
}
