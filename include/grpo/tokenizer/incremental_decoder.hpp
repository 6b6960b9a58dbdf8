#pragma once
// grpo::IncrementalDecoder: decodes ids one at a time during generation. Each push returns the
// text that became final with that id; a character whose bytes span several tokens is returned
// once, when its last byte arrives. Invariant (tested): the concatenation of every push() and
// the final finish() equals Tokenizer::decode of all the ids, and every returned string is valid
// UTF-8. Stop strings can therefore be searched in the pushed text without seeing half characters.
//
// Bytes that can never become a character (an invalid byte, a sequence cut short by a byte
// that cannot continue it) are returned as U+FFFD as soon as that is certain, exactly where
// decode() puts them; only a prefix that may still be completed (at most 3 bytes) is held back.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "grpo/text/utf8.hpp"
#include "grpo/tokenizer/tokenizer.hpp"

namespace grpo {

class IncrementalDecoder {
 public:
  /// Decodes with `tokenizer` (a cheap shared handle, kept alive by the decoder); special
  /// tokens are dropped when `skip_special`, as in Tokenizer::decode.
  explicit IncrementalDecoder(Tokenizer tokenizer, bool skip_special = false)
      : tokenizer_(std::move(tokenizer)), skip_special_(skip_special) {}

  /// Adds one id; returns the text completed by it (often empty for a partial character).
  std::string push(std::int64_t id) {
    tokenizer_.append_token_bytes(pending_, id, skip_special_);
    return take_complete();
  }

  /// Adds several ids; returns the text they complete.
  std::string push(std::span<const std::int64_t> ids) {
    for (std::int64_t id : ids) tokenizer_.append_token_bytes(pending_, id, skip_special_);
    return take_complete();
  }

  /// Ends the sequence: the held-back bytes of an unfinished character become U+FFFD, as in
  /// decode(). The decoder is empty afterwards and can be reused.
  std::string finish() {
    std::string rest = utf8::sanitize(pending_);
    pending_.clear();
    return rest;
  }

  /// Bytes held back because they may start a character that later tokens complete (<= 3).
  std::string_view pending() const noexcept { return pending_; }

  /// Forgets the held-back bytes.
  void reset() noexcept { pending_.clear(); }

 private:
  /// Returns (sanitised) the longest prefix of pending_ whose decoding no later byte can change:
  /// everything except a trailing incomplete but so far valid UTF-8 sequence.
  std::string take_complete() {
    std::size_t pos = 0;
    const std::size_t size = pending_.size();
    while (pos < size) {
      const utf8::DecodedCodePoint d = utf8::decode_one(pending_, pos);
      const auto lead = static_cast<unsigned char>(pending_[pos]);
      if (!d.valid && pos + d.length == size && lead >= 0xC2 && lead <= 0xF4) break;  // may still complete
      pos += d.length;
    }
    std::string done = utf8::sanitize(std::string_view(pending_).substr(0, pos));
    pending_.erase(0, pos);
    return done;
  }

  Tokenizer tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace grpo
