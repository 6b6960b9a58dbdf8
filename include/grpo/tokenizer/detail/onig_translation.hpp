#pragma once
// An Oniguruma pattern (what tokenizers runs tokenizer.json patterns on) translated into PCRE2
// syntax: \p{..} general categories, \s, \d, \w and \h become explicit classes built from tables
// generated from tokenizers' own engine, so both engines agree code point for code point.

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

// ---- translation of an Oniguruma pattern into PCRE2 syntax ----

/// Bit set over general categories (bit i = GeneralCategory i).
using CategorySet = std::uint32_t;

inline constexpr CategorySet category_bit(GeneralCategory c) { return CategorySet{1} << static_cast<unsigned>(c); }

/// The general categories a property name denotes (short or long names, case, spaces, '_' and
/// '-' ignored), or 0 when the name is not a general category (scripts, binary properties).
inline CategorySet categories_named(std::string_view raw) {
  std::string name;
  for (char ch : raw) {
    if (ch == ' ' || ch == '_' || ch == '-') continue;
    name.push_back(static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch));
  }
  using G = GeneralCategory;
  const auto b = [](auto... c) { return (category_bit(c) | ...); };
  struct Name {
    const char* short_name;
    const char* long_name;
    CategorySet set;
  };
  const Name names[] = {
      {"l", "letter", b(G::Lu, G::Ll, G::Lt, G::Lm, G::Lo)},
      {"lc", "casedletter", b(G::Lu, G::Ll, G::Lt)},
      {"l&", "casedletter", b(G::Lu, G::Ll, G::Lt)},
      {"lu", "uppercaseletter", b(G::Lu)},
      {"ll", "lowercaseletter", b(G::Ll)},
      {"lt", "titlecaseletter", b(G::Lt)},
      {"lm", "modifierletter", b(G::Lm)},
      {"lo", "otherletter", b(G::Lo)},
      {"m", "mark", b(G::Mn, G::Mc, G::Me)},
      {"mn", "nonspacingmark", b(G::Mn)},
      {"mc", "spacingmark", b(G::Mc)},
      {"me", "enclosingmark", b(G::Me)},
      {"n", "number", b(G::Nd, G::Nl, G::No)},
      {"nd", "decimalnumber", b(G::Nd)},
      {"nl", "letternumber", b(G::Nl)},
      {"no", "othernumber", b(G::No)},
      {"p", "punctuation", b(G::Pc, G::Pd, G::Ps, G::Pe, G::Pi, G::Pf, G::Po)},
      {"pc", "connectorpunctuation", b(G::Pc)},
      {"pd", "dashpunctuation", b(G::Pd)},
      {"ps", "openpunctuation", b(G::Ps)},
      {"pe", "closepunctuation", b(G::Pe)},
      {"pi", "initialpunctuation", b(G::Pi)},
      {"pf", "finalpunctuation", b(G::Pf)},
      {"po", "otherpunctuation", b(G::Po)},
      {"s", "symbol", b(G::Sm, G::Sc, G::Sk, G::So)},
      {"sm", "mathsymbol", b(G::Sm)},
      {"sc", "currencysymbol", b(G::Sc)},
      {"sk", "modifiersymbol", b(G::Sk)},
      {"so", "othersymbol", b(G::So)},
      {"z", "separator", b(G::Zs, G::Zl, G::Zp)},
      {"zs", "spaceseparator", b(G::Zs)},
      {"zl", "lineseparator", b(G::Zl)},
      {"zp", "paragraphseparator", b(G::Zp)},
      {"c", "other", b(G::Cc, G::Cf, G::Cs, G::Co, G::Cn)},
      {"cc", "control", b(G::Cc)},
      {"cf", "format", b(G::Cf)},
      {"co", "privateuse", b(G::Co)},
      {"cn", "unassigned", b(G::Cn)},
  };
  for (const Name& n : names) {
    if (name == n.short_name || name == n.long_name) return n.set;
  }
  return 0;
}

/// Appends PCRE2 class items ("\x{41}-\x{5A}...") for code point ranges (surrogates skipped).
inline void append_class_ranges(std::string& out, const std::vector<std::pair<char32_t, char32_t>>& ranges) {
  char buffer[40];
  for (auto [first, last] : ranges) {
    if (first <= 0xDFFF && last >= 0xD800) {  // PCRE2 in UTF mode has no surrogates
      if (first < 0xD800) append_class_ranges(out, {{first, 0xD7FF}});
      if (last > 0xDFFF) append_class_ranges(out, {{0xE000, last}});
      continue;
    }
    if (first == last) {
      std::snprintf(buffer, sizeof buffer, "\\x{%X}", static_cast<unsigned>(first));
    } else {
      std::snprintf(buffer, sizeof buffer, "\\x{%X}-\\x{%X}", static_cast<unsigned>(first), static_cast<unsigned>(last));
    }
    out += buffer;
  }
}

inline std::vector<std::pair<char32_t, char32_t>> category_ranges(CategorySet set) {
  std::vector<std::pair<char32_t, char32_t>> ranges;
  const auto& runs = unicode_tables::category_runs;
  const std::size_t count = std::size(runs);
  for (std::size_t r = 0; r < count; ++r) {
    if (!((set >> (runs[r] & 31)) & 1u)) continue;
    const char32_t first = runs[r] >> 5;
    const char32_t last = (r + 1 < count ? (runs[r + 1] >> 5) : 0x110000) - 1;
    if (!ranges.empty() && ranges.back().second + 1 == first) {
      ranges.back().second = last;
    } else {
      ranges.emplace_back(first, last);
    }
  }
  return ranges;
}

inline std::vector<std::pair<char32_t, char32_t>> white_space_ranges() {
  std::vector<std::pair<char32_t, char32_t>> ranges;
  for (char32_t cp : unicode_tables::white_space) {
    if (!ranges.empty() && ranges.back().second + 1 == cp) {
      ranges.back().second = cp;
    } else {
      ranges.emplace_back(cp, cp);
    }
  }
  return ranges;
}

inline std::vector<std::pair<char32_t, char32_t>> word_character_ranges() {
  std::vector<std::pair<char32_t, char32_t>> ranges;
  for (const auto& r : unicode_tables::word_ranges) ranges.emplace_back(r[0], r[1]);
  return ranges;
}

/// Rewrites a tokenizers (Oniguruma) pattern for PCRE2 so that both engines match the same
/// text; throws grpo::Error naming `where` for constructs whose meaning we cannot keep.
inline std::string translate_onig_pattern(std::string_view pattern, std::string_view where) {
  const auto fail = [&](std::string_view what) {
    throw Error(std::string(where) + ": unsupported in the split pattern: " + std::string(what) +
                "; grpo matches tokenizers exactly only for patterns without it (pattern: " + std::string(pattern) + ")");
  };
  std::string out;
  out.reserve(pattern.size() * 2);
  bool in_class = false;
  std::size_t class_start = 0;  // index in `out` just after the class's '[' or '[^'
  // Emits a set: inside a class as items; outside as a class of its own (negated if asked).
  const auto emit = [&](const std::vector<std::pair<char32_t, char32_t>>& ranges, bool negated, std::string_view name) {
    if (in_class) {
      if (negated) fail(std::string(name) + " (a negated set inside a character class)");
      append_class_ranges(out, ranges);
    } else {
      out += negated ? "[^" : "[";
      append_class_ranges(out, ranges);
      out += "]";
    }
  };
  std::size_t i = 0;
  while (i < pattern.size()) {
    const char c = pattern[i];
    if (c == '\\') {
      if (i + 1 >= pattern.size()) fail("a trailing backslash");
      const char e = pattern[i + 1];
      switch (e) {
        case 'p':
        case 'P': {
          bool negated = e == 'P';
          std::string_view name;
          std::size_t next;
          if (i + 2 < pattern.size() && pattern[i + 2] == '{') {
            const std::size_t close = pattern.find('}', i + 3);
            if (close == std::string_view::npos) fail("an unterminated \\p{");
            name = pattern.substr(i + 3, close - (i + 3));
            next = close + 1;
          } else {
            if (i + 2 >= pattern.size()) fail("\\p without a property");
            name = pattern.substr(i + 2, 1);
            next = i + 3;
          }
          if (!name.empty() && name.front() == '^') {
            negated = !negated;
            name.remove_prefix(1);
          }
          const CategorySet set = categories_named(name);
          if (set == 0) {
            fail("the Unicode property \\p{" + std::string(name) +
                 "} (only general categories such as L, Lu, N, P, S, Z, M, C are supported)");
          }
          emit(category_ranges(set), negated, "\\p{" + std::string(name) + "}");
          i = next;
          continue;
        }
        case 's':
        case 'S':
          emit(white_space_ranges(), e == 'S', e == 'S' ? "\\S" : "\\s");
          i += 2;
          continue;
        case 'd':
        case 'D':
          emit(category_ranges(category_bit(GeneralCategory::Nd)), e == 'D', e == 'D' ? "\\D" : "\\d");
          i += 2;
          continue;
        case 'w':
        case 'W':
          emit(word_character_ranges(), e == 'W', e == 'W' ? "\\W" : "\\w");
          i += 2;
          continue;
        case 'h':
        case 'H':  // Oniguruma: hexadecimal digit (PCRE2: horizontal space)
          emit({{'0', '9'}, {'A', 'F'}, {'a', 'f'}}, e == 'H', e == 'H' ? "\\H" : "\\h");
          i += 2;
          continue;
        case 'v':  // Oniguruma: the vertical tab character (PCRE2: any vertical space)
          out += "\\x{B}";
          i += 2;
          continue;
        case 'u': {  // Oniguruma \uHHHH
          if (i + 6 > pattern.size()) fail("a short \\u escape");
          out += "\\x{" + std::string(pattern.substr(i + 2, 4)) + "}";
          i += 6;
          continue;
        }
        case 'b':
        case 'B':
        case 'X':
        case 'R':
        case 'N':
        case 'O':
        case 'y':
        case 'Y':
        case 'k':
        case 'g':
          fail(std::string("\\") + e + " (its meaning differs between Oniguruma and PCRE2)");
          break;
        default:
          out += c;
          out += e;
          i += 2;
          continue;
      }
    }
    if (in_class) {
      if (c == '[') fail("a nested character class or POSIX bracket inside [...]");
      if (c == '&' && i + 1 < pattern.size() && pattern[i + 1] == '&') fail("class intersection &&");
      if (c == ']' && out.size() > class_start) in_class = false;
      out += c;
      ++i;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < pattern.size() && pattern[i] == '^') {
        out += '^';
        ++i;
      }
      class_start = out.size();
      if (i < pattern.size() && pattern[i] == ']') {  // a leading ']' is literal
        out += "\\]";
        ++i;
      }
      continue;
    }
    if (c == '(' && i + 1 < pattern.size() && pattern[i + 1] == '?') {
      // Inline options: Oniguruma's (?m) is PCRE2's (?s); keep only the options both share.
      std::size_t k = i + 2;
      while (k < pattern.size() && (pattern[k] == 'i' || pattern[k] == 'x' || pattern[k] == 'm' || pattern[k] == 's' ||
                                    pattern[k] == '-')) {
        if (pattern[k] == 'm' || pattern[k] == 's') fail("the inline option (?m) or (?s)");
        ++k;
      }
    }
    out += c;
    ++i;
  }
  if (in_class) fail("an unterminated character class");
  return out;
}

}  // namespace grpo::tokenizer_detail
