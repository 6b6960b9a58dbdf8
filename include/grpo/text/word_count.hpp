#pragma once
// The LongBench-Write word count (method.md), exactly as its Python reference computes it:
//
//   len(re.findall(r'[\u4e00-\u9fff]', s)) + len(re.findall(r'\b[a-zA-Z]+\b', s))
//
// i.e. code points in U+4E00..U+9FFF, plus maximal runs of word characters (`\w` of Python's `re`
// for str patterns: ch.isalnum() or ch == '_') that consist only of ASCII letters. Consequences:
// "我爱Python编程" = 4 (the ASCII run touches CJK letters, which are \w), "我爱 Python 编程" = 5,
// "don't e-mail abc123 x_y" = 4, "GPT-4o" = 1, "café" = 0, "cafe\u0301" = 1 (a combining mark is
// not \w), digits never count. Bytes that are not valid UTF-8 are decoded as Python's
// errors="replace" does (grpo/text/utf8.hpp); U+FFFD is not a word character.

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>

#include "grpo/text/detail/word_char_table.hpp"
#include "grpo/text/utf8.hpp"

namespace grpo {

/// True for the characters Python's `re` matches with `\w` (str pattern, default flags).
/// Exact for the Unicode version named in detail/word_char_table.hpp.
constexpr bool is_word_char(char32_t c) noexcept {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  if (c >= 0x4E00 && c <= 0x9FFF) return true;  // CJK Unified Ideographs, all letters (Lo)
  const auto& ranges = detail::word_char_ranges;
  // First range whose last >= c; c is a word char iff that range also starts at or before c.
  auto it = std::lower_bound(ranges.begin(), ranges.end(), c,
                             [](const detail::CodePointRange& r, char32_t v) { return r.last < v; });
  return it != ranges.end() && it->first <= c;
}

/// True for the code points LongBench-Write counts one word each: U+4E00..U+9FFF.
constexpr bool is_counted_cjk(char32_t c) noexcept { return c >= 0x4E00 && c <= 0x9FFF; }

namespace detail {
// ASCII classes (bit flags): 0 = not a word char, 1 = ASCII letter, 2 = digit or underscore.
inline constexpr std::array<std::uint8_t, 128> ascii_word_class = [] {
  std::array<std::uint8_t, 128> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = 1;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = 1;
  for (int c = '0'; c <= '9'; ++c) t[c] = 2;
  t['_'] = 2;
  return t;
}();
}  // namespace detail

/// The LongBench-Write word count of UTF-8 text (see the top of this header). Never throws;
/// invalid UTF-8 follows the replacement rule. Linear time; ASCII is classified by table.
inline std::int64_t word_count(std::string_view utf8) noexcept {
  std::int64_t count = 0;
  bool in_run = false;        // inside a maximal run of \w characters
  bool run_all_ascii = false;  // ... made only of ASCII letters so far
  const auto end_run = [&] {
    if (in_run && run_all_ascii) ++count;
    in_run = false;
  };
  std::size_t pos = 0;
  const std::size_t size = utf8.size();
  while (pos < size) {
    const auto byte = static_cast<unsigned char>(utf8[pos]);
    if (byte < 0x80) {
      std::uint8_t cls = detail::ascii_word_class[byte];
      if (cls == 0) {
        end_run();
        ++pos;
        continue;
      }
      if (!in_run) {
        in_run = true;
        run_all_ascii = true;
      }
      // Consume the whole ASCII part of the run; its class bits say whether a digit or '_' occurred.
      std::uint8_t seen = 0;
      unsigned char b = byte;
      do {
        seen |= cls;
        ++pos;
      } while (pos < size && (b = static_cast<unsigned char>(utf8[pos])) < 0x80 &&
               (cls = detail::ascii_word_class[b]) != 0);
      if (seen & 2) run_all_ascii = false;
      continue;
    }
    const auto d = utf8::decode_one(utf8, pos);
    pos += d.length;
    if (is_counted_cjk(d.code_point)) ++count;
    if (is_word_char(d.code_point)) {  // a non-ASCII word char: the run is not all ASCII letters
      in_run = true;
      run_all_ascii = false;
    } else {
      end_run();
    }
  }
  end_run();
  return count;
}

}  // namespace grpo
