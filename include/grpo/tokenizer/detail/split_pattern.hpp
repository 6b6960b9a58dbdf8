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

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8  // pcre2.h needs it; the PCRE2::PCRE2 target normally sets it
#endif
#include <fmt/format.h>
#include <pcre2.h>

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

// ---- PCRE2 ----

/// A compiled PCRE2 pattern (UTF, JIT when available). Matching is thread-safe: match data and
/// the JIT stack are per thread.
class Pcre2Regex {
 public:
  Pcre2Regex(const std::string& pcre2_pattern, std::string_view where, std::uint32_t extra_options = 0) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    std::unique_ptr<pcre2_compile_context, decltype(&pcre2_compile_context_free)> context(
        pcre2_compile_context_create(nullptr), &pcre2_compile_context_free);
    pcre2_set_newline(context.get(), PCRE2_NEWLINE_LF);  // Oniguruma: only \n ends a line
    const std::uint32_t options = (extra_options & PCRE2_LITERAL) ? PCRE2_UTF | PCRE2_LITERAL
                                                                   : PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | extra_options;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre2_pattern.data()), pcre2_pattern.size(), options,
                                     &error_code, &error_offset, context.get());
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof message);
      throw Error(fmt::format("{}: invalid split pattern (PCRE2: {} at offset {}); fix the pattern", where,
                              reinterpret_cast<const char*>(message), error_offset));
    }
    code_.reset(code);
    std::uint32_t min_length = 0;
    pcre2_pattern_info(code, PCRE2_INFO_MINLENGTH, &min_length);
    if (min_length == 0) {
      throw Error(std::string(where) +
                  ": the split pattern can match the empty string; tokenizers' handling of empty matches is not "
                  "reproduced, so grpo rejects such patterns");
    }
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }

  /// Finds the first match at or after `start`: returns true and sets [match_start, match_end).
  bool find(std::string_view text, std::size_t start, std::size_t& match_start, std::size_t& match_end) const {
    ThreadState& state = thread_state();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), start, 0, state.match_data, state.context)
                        : pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, state.match_data,
                                      state.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw Error(std::string("tokenizer split pattern: PCRE2 matching failed: ") +
                  reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    match_start = ovector[0];
    match_end = ovector[1];
    return true;
  }

 private:
  struct CodeFree {
    void operator()(pcre2_code* code) const noexcept { pcre2_code_free(code); }
  };
  struct ThreadState {
    pcre2_match_data* match_data = pcre2_match_data_create(1, nullptr);
    pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_match_context* context = make_context(jit_stack);
    ThreadState() = default;
    ThreadState(const ThreadState&) = delete;
    ThreadState& operator=(const ThreadState&) = delete;
    ~ThreadState() {
      pcre2_match_context_free(context);
      pcre2_jit_stack_free(jit_stack);
      pcre2_match_data_free(match_data);
    }
    static pcre2_match_context* make_context(pcre2_jit_stack* stack) {
      pcre2_match_context* context = pcre2_match_context_create(nullptr);
      pcre2_jit_stack_assign(context, nullptr, stack);
      return context;
    }
  };
  static ThreadState& thread_state() {
    thread_local ThreadState state;
    return state;
  }

  std::unique_ptr<pcre2_code, CodeFree> code_;
  bool jit_ = false;
};

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
