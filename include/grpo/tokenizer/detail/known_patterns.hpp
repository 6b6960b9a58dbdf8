#pragma once
// Hand-written matchers for the split patterns of Qwen2/2.5, Llama 3 and GPT-2, used when a
// tokenizer.json's pattern is exactly one of them (faster than the regex, tested against it).

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/tokenizer/detail/unicode.hpp"

namespace grpo::tokenizer_detail {

// ---- hand-written matchers for well-known patterns ----

/// Qwen2/2.5 (digits = 1) and Llama 3 (digits = 3) split pattern.
inline constexpr std::string_view qwen2_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
/// GPT-2's pattern, which the ByteLevel pre-tokenizer applies when `use_regex` is true.
inline constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class KnownPattern { none, qwen2, llama3, gpt2 };

inline KnownPattern identify_pattern(std::string_view pattern) {
  if (pattern == qwen2_pattern) return KnownPattern::qwen2;
  if (pattern == llama3_pattern) return KnownPattern::llama3;
  if (pattern == gpt2_pattern) return KnownPattern::gpt2;
  return KnownPattern::none;
}

/// What the hand-written matchers need to know about a code point.
enum CharClass : std::uint8_t {
  other = 0,    ///< none of the below: [^\s\p{L}\p{N}]
  letter = 1,   ///< \p{L}
  number = 2,   ///< \p{N}
  space = 4,    ///< \s
  newline = 8,  ///< \r or \n (always with `space`)
};

class CharClassifier {
 public:
  static const CharClassifier& instance() {
    static const CharClassifier classifier;
    return classifier;
  }

  /// Class and byte length of the code point at `p` (valid UTF-8, p < end).
  std::uint8_t classify(const unsigned char* p, std::size_t& length) const noexcept {
    if (*p < 0x80) {
      length = 1;
      return ascii_[*p];
    }
    const unsigned char* q = p;
    const char32_t cp = next_code_point(q);
    length = static_cast<std::size_t>(q - p);
    const GeneralCategory g = categories_(cp);
    if (is_letter(g)) return letter;
    if (is_number(g)) return number;
    return is_white_space(cp) ? space : other;
  }

 private:
  CharClassifier() : categories_(CategoryTable::instance()) {
    for (int c = 0; c < 128; ++c) {
      std::uint8_t k = other;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) k = letter;
      if (c >= '0' && c <= '9') k = number;
      if (c == ' ' || (c >= 0x09 && c <= 0x0D)) k = space;
      if (c == '\r' || c == '\n') k = space | newline;
      ascii_[c] = k;
    }
  }
  const CategoryTable& categories_;
  std::uint8_t ascii_[128]{};
};

/// End of the match that starts at `i` for the Qwen2 / Llama 3 pattern (it matches at every
/// position, so matches tile the text). Alternatives, tried in order as the regex does:
///   A1 (?i:'s|'t|'re|'ve|'m|'ll|'d)   A2 [^\r\n\p{L}\p{N}]?\p{L}+   A3 \p{N}{1,max_digits}
///   A4  ?[^\s\p{L}\p{N}]+[\r\n]*      A5 \s*[\r\n]+   A6 \s+(?!\S)   A7 \s+
inline std::size_t qwen2_match_end(std::string_view text, std::size_t i, int max_digits) {
  const auto& classifier = CharClassifier::instance();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t len0 = 0;
  const std::uint8_t c0 = classifier.classify(s + i, len0);
  const auto run_end = [&](std::size_t j, std::uint8_t wanted) {  // end of a run of `wanted`-class code points
    while (j < n) {
      std::size_t len = 0;
      if (!(classifier.classify(s + j, len) & wanted)) break;
      j += len;
    }
    return j;
  };
  if (s[i] == '\'' && i + 1 < n) {  // A1, case-insensitive: 's' also matches U+017F (long s)
    const unsigned char a = s[i + 1];
    const char lower = static_cast<char>(a >= 'A' && a <= 'Z' ? a - 'A' + 'a' : a);
    if (lower == 's' || lower == 't' || lower == 'm' || lower == 'd') return i + 2;
    if (a == 0xC5 && i + 2 < n && s[i + 2] == 0xBF) return i + 3;  // U+017F
    if (i + 2 < n) {
      const unsigned char b = s[i + 2];
      const char lower_b = static_cast<char>(b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b);
      if ((lower == 'r' || lower == 'v') && lower_b == 'e') return i + 3;
      if (lower == 'l' && lower_b == 'l') return i + 3;
    }
  }
  if (!(c0 & (letter | number | newline)) && i + len0 < n) {  // A2 with its optional first character
    std::size_t len1 = 0;
    if (classifier.classify(s + i + len0, len1) & letter) return run_end(i + len0 + len1, letter);
  }
  if (c0 & letter) return run_end(i + len0, letter);  // A2 without it
  if (c0 & number) {                                   // A3
    std::size_t j = i + len0;
    for (int k = 1; k < max_digits && j < n; ++k) {
      std::size_t len = 0;
      if (!(classifier.classify(s + j, len) & number)) break;
      j += len;
    }
    return j;
  }
  const auto other_run_then_newlines = [&](std::size_t j) {
    while (j < n) {
      std::size_t len = 0;
      if (classifier.classify(s + j, len) != other) break;
      j += len;
    }
    while (j < n && (s[j] == '\r' || s[j] == '\n')) ++j;
    return j;
  };
  if (s[i] == ' ' && i + 1 < n) {  // A4 with its optional space
    std::size_t len1 = 0;
    if (classifier.classify(s + i + 1, len1) == other) return other_run_then_newlines(i + 1);
  }
  if (c0 == other) return other_run_then_newlines(i);  // A4 without it
  // c0 is white space: W = [i, j) is the maximal white-space run.
  std::size_t j = i;
  std::size_t last_newline = std::string_view::npos;
  std::size_t last_start = i;
  while (j < n) {
    std::size_t len = 0;
    const std::uint8_t k = classifier.classify(s + j, len);
    if (!(k & space)) break;
    if (k & newline) last_newline = j;
    last_start = j;
    j += len;
  }
  if (last_newline != std::string_view::npos) return last_newline + 1;  // A5: up to the last \r or \n of W
  if (j == n) return j;                                                 // A6 at the end of the text
  if (last_start > i) return last_start;                                // A6 backs off one code point
  return j;                                                             // A7
}

/// End of the match that starts at `i` for GPT-2's pattern (it too tiles the text):
///   's|'t|'re|'ve|'m|'ll|'d |  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
inline std::size_t gpt2_match_end(std::string_view text, std::size_t i) {
  const auto& classifier = CharClassifier::instance();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  if (s[i] == '\'' && i + 1 < n) {
    const unsigned char a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n && ((a == 'r' && s[i + 2] == 'e') || (a == 'v' && s[i + 2] == 'e') || (a == 'l' && s[i + 2] == 'l'))) {
      return i + 3;
    }
  }
  const auto run_end = [&](std::size_t j, std::uint8_t wanted) {
    while (j < n) {
      std::size_t len = 0;
      const std::uint8_t k = classifier.classify(s + j, len);
      if (wanted == other ? k != other : !(k & wanted)) break;
      j += len;
    }
    return j;
  };
  std::size_t start = i;
  if (s[i] == ' ' && i + 1 < n) {
    std::size_t len1 = 0;
    const std::uint8_t k1 = classifier.classify(s + i + 1, len1);
    if (!(k1 & space)) start = i + 1;  // the optional space joins the letter/number/other run
  }
  std::size_t len0 = 0;
  const std::uint8_t c0 = classifier.classify(s + start, len0);
  if (c0 & letter) return run_end(start + len0, letter);
  if (c0 & number) return run_end(start + len0, number);
  if (c0 == other) return run_end(start + len0, other);
  std::size_t j = i;
  std::size_t last_start = i;
  while (j < n) {
    std::size_t len = 0;
    if (!(classifier.classify(s + j, len) & space)) break;
    last_start = j;
    j += len;
  }
  if (j == n) return j;
  if (last_start > i) return last_start;
  return j;
}

}  // namespace grpo::tokenizer_detail
