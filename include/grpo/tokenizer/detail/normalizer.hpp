#pragma once
// The tokenizer's normalizer: Unicode normalization forms (utf8proc), alone or in a sequence.
//
// tokenizers normalizes with tables of Unicode 9.0 (the unicode-normalization-alignments crate),
// utf8proc 2.8 with Unicode 15. Normalization data of an assigned character never changes, so
// the two differ only on characters added after 9.0, which tokenizers treats as unassigned:
// starters of class 0 that neither decompose nor compose. We reproduce that by keeping those
// "opaque" code points (a generated table) as they are and normalizing the text between them
// separately, which is exactly what such starters do to canonical ordering and composition.
//
// NFC, the form Qwen declares, has a fast path: text made only of "NFC-inert" code points is
// returned untouched, and only the short spans around the other code points go through utf8proc.

#include <utf8proc.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/tokenizer/detail/unicode.hpp"

namespace grpo::tokenizer_detail {

enum class NormalizationForm { nfc, nfd, nfkc, nfkd };

inline bool is_normalization_opaque(char32_t cp) noexcept {
  if (cp < 0x7FD) return false;
  const auto& ranges = unicode_tables::normalization_opaque_ranges;
  const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                    [](char32_t value, const char32_t (&range)[2]) { return value < range[0]; });
  return it != std::begin(ranges) && cp <= (*(it - 1))[1];
}

/// `text` in normalization form `form`, computed by utf8proc (text must be valid UTF-8).
inline void utf8proc_normalize(std::string_view text, NormalizationForm form, std::string& out) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalizationForm::nfc: options |= UTF8PROC_COMPOSE; break;
    case NormalizationForm::nfd: options |= UTF8PROC_DECOMPOSE; break;
    case NormalizationForm::nfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalizationForm::nfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &result,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    throw Error(std::string("tokenizer normalizer: utf8proc failed: ") + utf8proc_errmsg(n));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(result, &std::free);
  out.append(reinterpret_cast<const char*>(result), static_cast<std::size_t>(n));
}

/// `text` in normalization form `form` as tokenizers computes it: utf8proc on the spans between
/// opaque code points, which are kept as they are.
inline void normalize_segmented(std::string_view text, NormalizationForm form, std::string& out) {
  const auto* begin = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = begin + text.size();
  const unsigned char* segment = begin;
  const unsigned char* p = begin;
  while (p < end) {
    const unsigned char* at = p;
    if (*p < 0xDF) {  // below U+07C0: never opaque
      p += *p < 0x80 ? 1 : 2;
      continue;
    }
    if (!is_normalization_opaque(next_code_point(p))) continue;
    if (at > segment) utf8proc_normalize({reinterpret_cast<const char*>(segment), static_cast<std::size_t>(at - segment)}, form, out);
    out.append(reinterpret_cast<const char*>(at), static_cast<std::size_t>(p - at));
    segment = p;
  }
  if (end > segment) utf8proc_normalize({reinterpret_cast<const char*>(segment), static_cast<std::size_t>(end - segment)}, form, out);
}

/// One bit per code point: true when the code point can neither change under NFC nor change
/// its neighbours: canonical combining class 0, NFC(c) == c, and c is never the second half of
/// a canonical composition (that excludes, e.g., U+0301 and the Hangul V and T jamo). A string
/// of such code points is its own NFC; NFC composes a non-inert code point at most with the one
/// code point before it (the last starter), so only that span needs utf8proc.
class NfcInertTable {
 public:
  static const NfcInertTable& instance() {
    static const NfcInertTable table;
    return table;
  }

  bool operator()(char32_t cp) const noexcept {
    return cp < 0x300 || (cp <= 0x10FFFF && !((bits_[cp >> 6] >> (cp & 63)) & 1u));
  }

  /// Opaque code points (see the file comment) count as inert: they end every span.
  bool opaque(char32_t cp) const noexcept { return cp <= 0x10FFFF && ((opaque_[cp >> 6] >> (cp & 63)) & 1u); }

 private:
  NfcInertTable() : bits_(0x110000 / 64, 0), opaque_(0x110000 / 64, 0) {
    const auto mark = [&](char32_t cp) { bits_[cp >> 6] |= std::uint64_t{1} << (cp & 63); };
    for (char32_t cp = 0x300; cp <= 0x10FFFF; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      if (cp >= 0xAC00 && cp <= 0xD7A3) continue;  // Hangul syllables: algorithmic, recompose to themselves
      const utf8proc_property_t* property = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
      if (property->combining_class != 0) mark(cp);
      if (property->decomp_seqindex == UINT16_MAX) continue;
      utf8proc_int32_t decomposition[8];
      int boundclass = 0;
      const utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), decomposition, 8,
                                                         UTF8PROC_DECOMPOSE, &boundclass);
      if (n <= 0 || n > 8 || (n == 1 && decomposition[0] == static_cast<utf8proc_int32_t>(cp))) continue;
      for (utf8proc_ssize_t k = 1; k < n; ++k) mark(static_cast<char32_t>(decomposition[k]));
      std::string one;
      append_utf8(one, cp);
      std::string composed;
      utf8proc_normalize(one, NormalizationForm::nfc, composed);
      if (composed != one) mark(cp);
    }
    for (char32_t cp = 0x1161; cp <= 0x1175; ++cp) mark(cp);  // Hangul V jamo: L + V -> LV
    for (char32_t cp = 0x11A8; cp <= 0x11C2; ++cp) mark(cp);  // Hangul T jamo: LV + T -> LVT
    for (const auto& range : unicode_tables::normalization_opaque_ranges) {
      for (char32_t cp = range[0]; cp <= range[1]; ++cp) {
        bits_[cp >> 6] &= ~(std::uint64_t{1} << (cp & 63));
        opaque_[cp >> 6] |= std::uint64_t{1} << (cp & 63);
      }
    }
  }

  static void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    }
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }

  std::vector<std::uint64_t> bits_;    // 1 = not inert
  std::vector<std::uint64_t> opaque_;  // 1 = opaque
};

/// NFC of valid UTF-8 `text` into `out`; returns false (out untouched) when `text` is already
/// NFC by the inert-code-point test, the common case for most scripts.
inline bool nfc_fast(std::string_view text, std::string& out) {
  const auto* begin = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = begin + text.size();
  const auto* p = begin;
  const NfcInertTable* inert = nullptr;
  const unsigned char* copied = begin;  // text before this is already in `out`
  const unsigned char* previous = begin;  // start of the code point before `p`
  bool previous_opaque = false;           // it is opaque: it must not join the next span
  bool changed = false;
  while (p < end) {
    if (*p < 0xCC) {  // U+0000..U+02FF: always inert
      previous = p;
      previous_opaque = false;
      p += *p < 0x80 ? 1 : 2;
      continue;
    }
    if (inert == nullptr) inert = &NfcInertTable::instance();
    const unsigned char* at = p;
    const char32_t cp = next_code_point(p);
    if ((*inert)(cp)) {
      previous = at;
      previous_opaque = inert->opaque(cp);
      continue;
    }
    // A non-inert run [at, run_end), normalised together with the code point before it.
    const unsigned char* span_begin = at > begin && !previous_opaque ? previous : at;
    const unsigned char* run_end = p;
    while (run_end < end) {
      const unsigned char* q = run_end;
      if ((*inert)(next_code_point(q))) break;
      run_end = q;
    }
    if (!changed) {
      out.clear();
      changed = true;
    }
    out.append(reinterpret_cast<const char*>(copied), static_cast<std::size_t>(span_begin - copied));
    utf8proc_normalize({reinterpret_cast<const char*>(span_begin), static_cast<std::size_t>(run_end - span_begin)},
                       NormalizationForm::nfc, out);
    copied = run_end;
    p = run_end;
    previous = run_end;  // the next code point starts a fresh span: nothing before it can compose
    previous_opaque = false;
  }
  if (!changed) return false;
  out.append(reinterpret_cast<const char*>(copied), static_cast<std::size_t>(end - copied));
  return true;
}

/// A sequence of normalization forms applied in order (none: the identity).
class Normalizer {
 public:
  Normalizer() = default;
  explicit Normalizer(std::vector<NormalizationForm> forms) : forms_(std::move(forms)) {}

  bool empty() const noexcept { return forms_.empty(); }

  /// Normalises valid UTF-8 `text`. Returns a view of the result: `text` itself when nothing
  /// changed, else `storage`, which it fills.
  std::string_view apply(std::string_view text, std::string& storage, std::string& scratch) const {
    std::string_view current = text;
    for (NormalizationForm form : forms_) {
      if (ascii_prefix_length(current) == current.size()) continue;  // ASCII is invariant
      if (form == NormalizationForm::nfc) {
        if (!nfc_fast(current, scratch)) continue;
      } else {
        scratch.clear();
        normalize_segmented(current, form, scratch);
      }
      storage.swap(scratch);
      current = storage;
    }
    return current;
  }

 private:
  std::vector<NormalizationForm> forms_;
};

}  // namespace grpo::tokenizer_detail
