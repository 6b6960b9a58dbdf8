// Fuzz target: loading tokenizer.json from arbitrary bytes (Tokenizer::from_string, the path
// from_file takes). The only acceptable failure is grpo::Error with a valid UTF-8 message. A file
// that loads must then encode and decode without fault: ids inside the vocabulary, valid UTF-8
// out, incremental decoding adding up to decode. Seed corpus: tests/fuzz/corpus/
// tokenizer_json_fuzz/, made by tests/fuzz/make_tokenizer_corpus.py.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "grpo/core/error.hpp"
#include "grpo/text/utf8.hpp"
#include "grpo/tokenizer/incremental_decoder.hpp"
#include "grpo/tokenizer/tokenizer.hpp"

namespace {

void exercise(const grpo::Tokenizer& tok, const std::string& text) {
  const auto ids = tok.encode(text);
  for (std::int64_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  }
  const std::string decoded = tok.decode(ids, false);
  if (!grpo::utf8::is_valid(decoded) || !grpo::utf8::is_valid(tok.decode(ids, true))) std::abort();
  grpo::IncrementalDecoder decoder(tok);
  std::string pushed;
  for (std::int64_t id : ids) pushed += decoder.push(id);
  pushed += decoder.finish();
  if (pushed != decoded) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const grpo::Tokenizer tok = grpo::Tokenizer::from_string(text, "fuzz.json");
    exercise(tok, "Hello world, it's 2024! 我们的目标 <s> </s> <mask> [SEP] caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xFF");
    exercise(tok, text.substr(0, 512));
  } catch (const grpo::Error& e) {
    if (!grpo::utf8::is_valid(e.what())) std::abort();
  } catch (...) {
    std::abort();
  }
  return 0;
}
