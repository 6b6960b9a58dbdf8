#pragma once
// Added tokens (tokenizer.json "added_tokens") are cut out of the text before normalization and
// BPE, exactly as tokenizers' AddedVocabulary::find_matches does: an Aho-Corasick search with
// leftmost-longest semantics (at the leftmost position where any token occurs, the longest token
// there), non-overlapping; then per match the single_word test, lstrip/rstrip (swallowing the
// white space around it) and, when special tokens are not allowed, skipping special tokens.
// A skipped match still consumes its text from the search, as in tokenizers.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpo/tokenizer/detail/unicode.hpp"

namespace grpo::tokenizer_detail {

/// How one added token matches (a copy of the public AddedToken's flags).
struct AddedTokenRule {
  std::int32_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
};

/// `\w` of Rust's regex crate, which tokenizers uses for single_word: Alphabetic, marks, Nd, Pc
/// and Join_Control. That is Oniguruma's `\w` (our table) without the six Latin-1 No code points
/// Oniguruma adds (U+00B2, U+00B3, U+00B9, U+00BC..U+00BE) and with ZWNJ/ZWJ.
inline bool is_rust_word_character(char32_t cp) noexcept {
  if (cp == 0x200C || cp == 0x200D) return true;
  if (cp == 0xB2 || cp == 0xB3 || cp == 0xB9 || (cp >= 0xBC && cp <= 0xBE)) return false;
  return is_word_character(cp);
}

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() { nodes_.emplace_back(); }

  /// Adds a pattern (non-empty) for rule index `rule`.
  void add(std::string_view pattern, std::int32_t rule) {
    std::uint32_t node = 0;
    for (unsigned char b : pattern) {
      auto& children = nodes_[node].children;
      auto it = std::lower_bound(children.begin(), children.end(), b,
                                 [](const std::pair<unsigned char, std::uint32_t>& c, unsigned char v) { return c.first < v; });
      if (it != children.end() && it->first == b) {
        node = it->second;
        continue;
      }
      const auto child = static_cast<std::uint32_t>(nodes_.size());
      children.insert(it, {b, child});
      nodes_.emplace_back();  // invalidates `children`, not `child`
      node = child;
    }
    if (nodes_[node].rule < 0) nodes_[node].rule = rule;  // the first token with this content wins
    first_bytes_[static_cast<unsigned char>(pattern.front())] = true;
    empty_ = false;
  }

  bool empty() const noexcept { return empty_; }

  /// Splits `text` into consecutive pieces: fn(start, end, rule) with rule >= 0 for an added
  /// token (its span includes stripped white space) and -1 for text in between.
  template <class Fn>
  void split(std::string_view text, const std::vector<AddedTokenRule>& rules, bool skip_special, Fn&& fn) const {
    std::size_t start_offset = 0;
    std::size_t pos = 0;
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    while (!empty_ && pos < n) {
      if (!first_bytes_[s[pos]]) {
        ++pos;
        continue;
      }
      std::uint32_t node = 0;
      std::int32_t rule_index = -1;
      std::size_t match_end = 0;
      for (std::size_t k = pos; k < n; ++k) {
        const auto& children = nodes_[node].children;
        auto it = std::lower_bound(children.begin(), children.end(), s[k],
                                   [](const std::pair<unsigned char, std::uint32_t>& c, unsigned char v) { return c.first < v; });
        if (it == children.end() || it->first != s[k]) break;
        node = it->second;
        if (nodes_[node].rule >= 0) {
          rule_index = nodes_[node].rule;
          match_end = k + 1;
        }
      }
      if (rule_index < 0) {
        ++pos;
        continue;
      }
      std::size_t start = pos;
      std::size_t stop = match_end;
      pos = match_end;  // the search resumes after this match whether or not it is used
      const AddedTokenRule& rule = rules[static_cast<std::size_t>(rule_index)];
      if (skip_special && rule.special) continue;
      if (rule.single_word) {
        const bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
        const bool stop_space = stop == n || !starts_with_word(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (rule.lstrip) start = std::max(start_of_trailing_space(text.substr(0, start)), start_offset);
      if (rule.rstrip) stop += length_of_leading_space(text.substr(stop));
      if (start_offset < start) fn(start_offset, start, std::int32_t{-1});
      fn(start, stop, rule_index);
      start_offset = stop;
    }
    if (start_offset < n) fn(start_offset, n, std::int32_t{-1});
  }

 private:
  static bool ends_with_word(std::string_view prefix) {
    if (prefix.empty()) return false;
    const auto* begin = reinterpret_cast<const unsigned char*>(prefix.data());
    const auto* end = begin + prefix.size();
    return is_rust_word_character(previous_code_point(begin, end));
  }
  static bool starts_with_word(std::string_view suffix) {
    if (suffix.empty()) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(suffix.data());
    return is_rust_word_character(next_code_point(p));
  }
  /// Where the white space at the end of `prefix` starts (prefix.size() if none): `\s*$`.
  static std::size_t start_of_trailing_space(std::string_view prefix) {
    const auto* begin = reinterpret_cast<const unsigned char*>(prefix.data());
    const auto* end = begin + prefix.size();
    while (end > begin) {
      const unsigned char* before = end;
      if (!is_white_space(previous_code_point(begin, before))) break;
      end = before;
    }
    return static_cast<std::size_t>(end - begin);
  }
  /// Length of the white space at the start of `suffix`: `^\s*`.
  static std::size_t length_of_leading_space(std::string_view suffix) {
    const auto* begin = reinterpret_cast<const unsigned char*>(suffix.data());
    const auto* p = begin;
    const auto* end = begin + suffix.size();
    while (p < end) {
      const unsigned char* q = p;
      if (!is_white_space(next_code_point(q))) break;
      p = q;
    }
    return static_cast<std::size_t>(p - begin);
  }

  struct Node {
    std::vector<std::pair<unsigned char, std::uint32_t>> children;  // sorted by byte
    std::int32_t rule = -1;
  };
  std::vector<Node> nodes_;
  std::array<bool, 256> first_bytes_{};
  bool empty_ = true;
};

}  // namespace grpo::tokenizer_detail
