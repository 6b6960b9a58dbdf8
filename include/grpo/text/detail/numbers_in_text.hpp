#pragma once
// The numbers of a prompt, as grpo::find_length_requirement reads them (grpo/text/targets.hpp):
// digits (with thousands separators), Chinese numerals and English number words, with the text
// helpers the requirement scanner (length_requirement_parser.hpp) shares. Internal.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grpo {

namespace detail::targets {

using Pos = std::size_t;
inline constexpr Pos npos = std::string_view::npos;

constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }

inline bool at(std::string_view t, Pos pos, std::string_view phrase) {
  return pos <= t.size() && t.substr(pos, phrase.size()) == phrase;
}
inline bool ends_at(std::string_view t, Pos pos, std::string_view phrase) {
  return pos >= phrase.size() && pos <= t.size() && t.substr(pos - phrase.size(), phrase.size()) == phrase;
}
/// An ASCII phrase starting at a word boundary (not preceded by a letter).
inline bool ends_at_word(std::string_view t, Pos pos, std::string_view phrase) {
  if (!ends_at(t, pos, phrase)) return false;
  const Pos start = pos - phrase.size();
  return !is_alpha(phrase.front()) || start == 0 || !is_alpha(t[start - 1]);
}
/// An ASCII word at pos, not followed by a letter.
inline bool word_at(std::string_view t, Pos pos, std::string_view word) {
  return at(t, pos, word) && (pos + word.size() >= t.size() || !is_alpha(t[pos + word.size()]));
}

inline Pos space_length_at(std::string_view t, Pos pos) {
  if (pos >= t.size()) return 0;
  const char c = t[pos];
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return 1;
  if (at(t, pos, "\xC2\xA0")) return 2;      // U+00A0 no-break space
  if (at(t, pos, "\xE3\x80\x80")) return 3;  // U+3000 ideographic space
  return 0;
}
inline Pos skip_spaces(std::string_view t, Pos pos) {
  for (Pos n; (n = space_length_at(t, pos)) > 0;) pos += n;
  return pos;
}
inline Pos skip_spaces_back(std::string_view t, Pos pos) {
  while (pos > 0) {
    if (t[pos - 1] == ' ' || t[pos - 1] == '\t' || t[pos - 1] == '\n' || t[pos - 1] == '\r') --pos;
    else if (ends_at(t, pos, "\xC2\xA0")) pos -= 2;
    else if (ends_at(t, pos, "\xE3\x80\x80")) pos -= 3;
    else break;
  }
  return pos;
}

/// A number in the prompt: digits (ASCII or fullwidth, with thousands separators, decimals,
/// "k", 千, 万), Chinese numerals (两千五百) or English number words (two thousand).
struct Number {
  Pos begin = 0;
  Pos end = 0;
  double value = 0;
};

inline int digit_at(std::string_view t, Pos pos, Pos& length) {
  if (pos < t.size() && is_digit(t[pos])) {
    length = 1;
    return t[pos] - '0';
  }
  if (pos + 2 < t.size() && static_cast<unsigned char>(t[pos]) == 0xEF && static_cast<unsigned char>(t[pos + 1]) == 0xBC) {
    const auto c = static_cast<unsigned char>(t[pos + 2]);
    if (c >= 0x90 && c <= 0x99) {  // U+FF10..U+FF19 fullwidth digits
      length = 3;
      return c - 0x90;
    }
  }
  return -1;
}

inline Number parse_digits(std::string_view t, Pos begin) {
  Pos pos = begin;
  Pos len = 0;
  double value = 0;
  int integer_digits = 0;
  for (int d; (d = digit_at(t, pos, len)) >= 0; pos += len, ++integer_digits) value = value * 10 + d;
  const auto three_digits_then_end = [&](Pos p) {
    for (int k = 0; k < 3; ++k)
      if (p + k >= t.size() || !is_digit(t[p + k])) return false;
    return p + 3 >= t.size() || !is_digit(t[p + 3]);
  };
  bool grouped = false;
  while (pos < t.size() && t[pos] == ',' && three_digits_then_end(pos + 1)) {  // 10,000
    value = value * 1000 + (t[pos + 1] - '0') * 100 + (t[pos + 2] - '0') * 10 + (t[pos + 3] - '0');
    pos += 4;
    grouped = true;
  }
  bool has_multiplier_after = false;
  if (pos < t.size() && t[pos] == '.' && pos + 1 < t.size() && is_digit(t[pos + 1])) {
    Pos q = pos + 1;
    while (q < t.size() && is_digit(t[q])) ++q;
    has_multiplier_after = q < t.size() && (t[q] == 'k' || at(t, q, "千") || at(t, q, "万"));
    if (!grouped && integer_digits <= 3 && q - pos - 1 == 3 && !has_multiplier_after) {  // 2.500 = 2500
      value = value * 1000 + (t[pos + 1] - '0') * 100 + (t[pos + 2] - '0') * 10 + (t[pos + 3] - '0');
    } else {
      double scale = 0.1;
      for (Pos k = pos + 1; k < q; ++k, scale /= 10) value += (t[k] - '0') * scale;
    }
    pos = q;
  }
  if (pos < t.size() && t[pos] == 'k' && (pos + 1 >= t.size() || !is_alpha(t[pos + 1]))) {
    value *= 1000;
    ++pos;
  } else if (at(t, pos, "万")) {
    value *= 10000;
    pos += 3;
  } else if (at(t, pos, "千")) {
    value *= 1000;
    pos += 3;
  }
  return {begin, pos, value};
}

/// Value of a Chinese numeral character: 0..9 for digits, 10/100/1000/10000 for units, -1 otherwise.
inline int chinese_numeral_at(std::string_view t, Pos pos) {
  static constexpr std::array<std::pair<std::string_view, int>, 15> table{{
      {"零", 0}, {"〇", 0}, {"一", 1}, {"二", 2}, {"两", 2}, {"三", 3}, {"四", 4}, {"五", 5},
      {"六", 6}, {"七", 7}, {"八", 8}, {"九", 9}, {"十", 10}, {"百", 100}, {"千", 1000},
  }};
  for (const auto& [text, v] : table)
    if (at(t, pos, text)) return v;
  if (at(t, pos, "万")) return 10000;
  return -1;
}

inline Number parse_chinese_numeral(std::string_view t, Pos begin) {
  double total = 0;    // completed 万 sections
  double section = 0;  // below 万
  double digit = 0;
  int last_unit = 0;   // the unit just before a trailing digit: 三千五 = 3500
  bool digit_after_unit = false;
  Pos pos = begin;
  for (int v; (v = chinese_numeral_at(t, pos)) >= 0; pos += 3) {
    if (v < 10) {
      digit = v;
      digit_after_unit = last_unit > 0;
    } else if (v == 10000) {
      total += (section + digit == 0 ? 1 : section + digit) * 10000;
      section = digit = 0;
      last_unit = 10000;
      digit_after_unit = false;
    } else {
      section += (digit == 0 ? 1 : digit) * v;
      digit = 0;
      last_unit = v;
      digit_after_unit = false;
    }
  }
  if (digit_after_unit && last_unit >= 100) digit *= last_unit / 10;
  return {begin, pos, total + section + digit};
}

inline int english_number_word(std::string_view w) {
  static constexpr std::array<std::string_view, 20> small{
      "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
      "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
  static constexpr std::array<std::string_view, 8> tens{"twenty", "thirty", "forty", "fifty",
                                                        "sixty", "seventy", "eighty", "ninety"};
  for (std::size_t i = 0; i < small.size(); ++i)
    if (w == small[i]) return static_cast<int>(i);
  for (std::size_t i = 0; i < tens.size(); ++i)
    if (w == tens[i]) return static_cast<int>(20 + 10 * i);
  if (w == "hundred") return 100;
  if (w == "thousand") return 1000;
  return -1;
}

inline std::string_view ascii_word_at(std::string_view t, Pos pos) {
  Pos end = pos;
  while (end < t.size() && is_alpha(t[end])) ++end;
  return t.substr(pos, end - pos);
}

/// English number words starting at pos ("two thousand five hundred", "twenty-five",
/// "a thousand"); value < 0 when there are none.
inline Number parse_english_number(std::string_view t, Pos begin) {
  double total = 0, current = 0;
  bool any = false;
  Pos pos = begin, end = begin;
  while (pos < t.size()) {
    const std::string_view w = ascii_word_at(t, pos);
    if (w.empty()) break;
    int v = english_number_word(w);
    if (v < 0 && w == "a" && !any) {  // "a thousand words"
      Pos q = skip_spaces(t, pos + 1);
      const int next = english_number_word(ascii_word_at(t, q));
      if (next != 100 && next != 1000) break;
      current = 1;
    } else if (v < 0 && w == "and" && any) {
      // "two thousand and five": only if a number word follows
      Pos q = skip_spaces(t, pos + 3);
      if (english_number_word(ascii_word_at(t, q)) < 0) break;
    } else if (v < 0) {
      break;
    } else if (v == 100) {
      current = (current == 0 ? 1 : current) * 100;
      any = true;
    } else if (v == 1000) {
      total += (current == 0 ? 1 : current) * 1000;
      current = 0;
      any = true;
    } else {
      current += v;
      any = true;
    }
    pos += w.size();
    if (any) end = pos;
    if (pos < t.size() && t[pos] == '-' && pos + 1 < t.size() && is_alpha(t[pos + 1]) &&
        english_number_word(ascii_word_at(t, pos + 1)) >= 0) {
      ++pos;  // twenty-five
      continue;
    }
    const Pos q = skip_spaces(t, pos);
    if (q == pos) break;
    pos = q;
  }
  if (!any) return {begin, begin, -1};
  return {begin, end, total + current};
}

/// Every number in the (lower-cased) prompt, in order.
inline std::vector<Number> find_numbers(std::string_view t) {
  std::vector<Number> numbers;
  Pos pos = 0;
  while (pos < t.size()) {
    Pos len = 0;
    const bool after_word = pos > 0 && (is_alpha(t[pos - 1]) || is_digit(t[pos - 1]) || t[pos - 1] == '_' || t[pos - 1] == '.');
    if (digit_at(t, pos, len) >= 0) {
      Number n = parse_digits(t, pos);
      if (!after_word) numbers.push_back(n);  // not "gpt4", "v2", "h100"
      pos = n.end;
    } else if (chinese_numeral_at(t, pos) >= 0) {
      Number n = parse_chinese_numeral(t, pos);
      numbers.push_back(n);
      pos = n.end;
    } else if (is_alpha(t[pos])) {
      Number n = after_word ? Number{pos, pos, -1} : parse_english_number(t, pos);
      if (n.value >= 0) {
        numbers.push_back(n);
        pos = n.end;
      } else {
        pos += ascii_word_at(t, pos).size();
      }
    } else {
      ++pos;
    }
  }
  return numbers;
}

}  // namespace detail::targets

}  // namespace grpo
