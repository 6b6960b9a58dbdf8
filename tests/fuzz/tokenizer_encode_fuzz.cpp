// Fuzz target: grpo::Tokenizer::encode/decode and IncrementalDecoder on arbitrary bytes (invalid
// UTF-8 included), with two small byte-level tokenizers built here: one without added tokens,
// for which decode(encode(x)) must equal the NFC of x with invalid bytes replaced; one with
// added tokens of every kind (special, lstrip, rstrip, single_word, normalized), for which only
// the invariants below hold. Any failure aborts: a crash, an exception, an id outside the
// vocabulary, invalid UTF-8 out of decode or of an incremental push, pushes that do not add up
// to decode. Seed corpus: tests/fuzz/corpus/tokenizer_encode_fuzz/ (texts in many scripts).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "grpo/text/utf8.hpp"
#include "grpo/tokenizer/detail/byte_level.hpp"
#include "grpo/tokenizer/incremental_decoder.hpp"
#include "grpo/tokenizer/tokenizer.hpp"

namespace {

/// The 256 byte-level characters plus a few merges (" t" "he" " the" and a CJK character), the
/// Qwen2 split pattern, NFC, optional added tokens.
grpo::Tokenizer make_tokenizer(bool with_added_tokens) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string spelled;
    const char byte = static_cast<char>(b);
    grpo::tokenizer_detail::append_byte_level(spelled, std::string_view(&byte, 1));
    vocab[spelled] = b;
  }
  const char* merges[][2] = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"ä", "¸"}, {"ä¸", "Ń"}, {"Ġ", "Ġ"}};
  nlohmann::json merge_list = nlohmann::json::array();
  int next = 256;
  for (const auto& m : merges) {
    vocab[std::string(m[0]) + m[1]] = next++;
    merge_list.push_back({m[0], m[1]});
  }
  nlohmann::json added = nlohmann::json::array();
  if (with_added_tokens) {
    const auto token = [&](const char* content, bool special, bool lstrip, bool rstrip, bool single_word, bool normalized) {
      added.push_back({{"id", next++}, {"content", content}, {"special", special}, {"lstrip", lstrip}, {"rstrip", rstrip},
                       {"single_word", single_word}, {"normalized", normalized}});
    };
    token("<|im_start|>", true, false, false, false, false);
    token("<mask>", true, true, true, false, false);
    token("word", false, false, false, true, false);
    token("<é>", false, false, false, false, true);
    token("e\xCC\x81x", false, false, true, false, true);
  }
  const nlohmann::json j = {
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", std::string(grpo::tokenizer_detail::qwen2_pattern)}}}, {"behavior", "Isolated"}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
  return grpo::Tokenizer::from_json(j, "fuzz tokenizer");
}

void check(const grpo::Tokenizer& tok, std::string_view text, bool round_trip) {
  const auto ids = tok.encode(text);
  for (std::int64_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  }
  const std::string decoded = tok.decode(ids);
  if (!grpo::utf8::is_valid(decoded)) std::abort();
  if (round_trip && decoded != tok.normalize(text)) std::abort();
  grpo::IncrementalDecoder decoder(tok);
  std::string pushed;
  for (std::int64_t id : ids) {
    const std::string piece = decoder.push(id);
    if (!grpo::utf8::is_valid(piece)) std::abort();
    pushed += piece;
  }
  pushed += decoder.finish();
  if (pushed != decoded) std::abort();
  if (tok.encode(text, false).empty() != ids.empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const grpo::Tokenizer plain = make_tokenizer(false);
  static const grpo::Tokenizer with_added = make_tokenizer(true);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    check(plain, text, true);
    check(with_added, text, false);
  } catch (...) {
    std::abort();  // encode and decode accept any bytes: no exception is acceptable
  }
  return 0;
}
