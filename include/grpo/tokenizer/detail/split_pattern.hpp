#pragma once
// The pre-tokenizer's split pattern: where `tokenizers` would find regex matches in a text.
//
// tokenizers runs tokenizer.json patterns on Oniguruma. We run them on PCRE2 (UTF, JIT) after
// translating the escapes whose meaning differs or whose Unicode tables are older in PCRE2:
// \p{..} general categories, \s, \d, \w and Oniguruma's \h (hex digit) become explicit classes
// built from tables generated from tokenizers' own engine, so splits agree code point for code
// point. The split patterns of Qwen2/2.5 (and Llama 3) and GPT-2 additionally have hand-written
// matchers used when the file's pattern is exactly one of them; tests check both engines
// against each other and against tokenizers.

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/tokenizer/detail/known_patterns.hpp"
#include "grpo/tokenizer/detail/onig_translation.hpp"
#include "grpo/tokenizer/detail/pcre2_regex.hpp"
#include "grpo/tokenizer/detail/unicode.hpp"

namespace grpo::tokenizer_detail {

/// A split pattern from tokenizer.json: finds matches as tokenizers would, by a hand-written
/// matcher when the pattern is a known one, else by PCRE2 on the translated pattern.
class SplitPattern {
 public:
  /// `is_regex` false: `pattern` is a literal string (tokenizers' {"String": ...}).
  SplitPattern(std::string pattern, bool is_regex, std::string_view where, bool allow_fast_path = true)
      : source_(std::move(pattern)), known_(is_regex && allow_fast_path ? identify_pattern(source_) : KnownPattern::none) {
    if (is_regex) {
      regex_ = std::make_shared<Pcre2Regex>(translate_onig_pattern(source_, where), where);
    } else {
      if (source_.empty()) throw Error(std::string(where) + ": empty split string; remove the Split step or give a string");
      regex_ = std::make_shared<Pcre2Regex>(source_, where, PCRE2_LITERAL);
    }
  }

  const std::string& source() const noexcept { return source_; }
  KnownPattern known() const noexcept { return known_; }

  /// Calls fn(start, end) for every match in `text`, left to right, non-overlapping.
  template <class Fn>
  void for_each_match(std::string_view text, Fn&& fn) const {
    std::size_t i = 0;
    switch (known_) {
      case KnownPattern::qwen2:
      case KnownPattern::llama3: {
        const int digits = known_ == KnownPattern::qwen2 ? 1 : 3;
        while (i < text.size()) {
          const std::size_t end = qwen2_match_end(text, i, digits);
          fn(i, end);
          i = end;
        }
        return;
      }
      case KnownPattern::gpt2:
        while (i < text.size()) {
          const std::size_t end = gpt2_match_end(text, i);
          fn(i, end);
          i = end;
        }
        return;
      case KnownPattern::none:
        break;
    }
    std::size_t start = 0, end = 0;
    while (i < text.size() && regex_->find(text, i, start, end)) {
      fn(start, end);
      i = end;  // never empty: patterns that can match "" are rejected
    }
  }

  /// True when matches always tile the whole text (no gaps): the hand-written patterns.
  bool tiles() const noexcept { return known_ != KnownPattern::none; }

 private:
  std::string source_;
  KnownPattern known_;
  std::shared_ptr<const Pcre2Regex> regex_;
};

}  // namespace grpo::tokenizer_detail
