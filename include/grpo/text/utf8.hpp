#pragma once
// UTF-8 that never fails: decoding replaces invalid bytes with U+FFFD exactly as Python's
// `bytes.decode("utf-8", errors="replace")` does, so text measured here and in Python agrees.
//
// Replacement rule (Unicode 15, section 3.9 "U+FFFD Substitution of Maximal Subparts", the
// practice CPython follows): at each position, the longest prefix of a well-formed sequence
// (Table 3-7) that is present is one "maximal subpart"; it becomes one U+FFFD and decoding resumes
// after it. A byte that starts no well-formed sequence (80..BF, C0, C1, F5..FF) is one U+FFFD.
// Overlong forms (E0 80.., F0 80..), surrogates (ED A0..ED BF) and code points above U+10FFFF
// (F4 90..) are ill-formed at their second byte, so their lead byte alone is one U+FFFD.
//   "\xE2\x82"     (truncated 3-byte)  -> U+FFFD             (one: E2 82 is a maximal subpart)
//   "\xED\xA0\x80" (a surrogate)       -> U+FFFD U+FFFD U+FFFD
//   "\xC0\xAF"     (overlong '/')      -> U+FFFD U+FFFD

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace grpo::utf8 {

/// U+FFFD, what every maximal invalid subsequence decodes to.
inline constexpr char32_t replacement_character = 0xFFFD;

/// One decoding step: the code point at a position and how many bytes it took.
struct DecodedCodePoint {
  char32_t code_point = 0;  ///< the scalar value, or U+FFFD for an invalid subsequence
  std::size_t length = 0;   ///< bytes consumed, 1..4 (never 0 while bytes remain)
  bool valid = false;       ///< false when `code_point` replaces invalid bytes
};

namespace detail {
/// Table 3-7: the allowed range of the second byte for each lead byte (first byte C2..F4).
constexpr bool second_byte_ok(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;  // excludes overlong 3-byte forms
    case 0xED: return b >= 0x80 && b <= 0x9F;  // excludes surrogates D800..DFFF
    case 0xF0: return b >= 0x90 && b <= 0xBF;  // excludes overlong 4-byte forms
    case 0xF4: return b >= 0x80 && b <= 0x8F;  // excludes > U+10FFFF
    default: return b >= 0x80 && b <= 0xBF;
  }
}
constexpr bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

/// Number of leading bytes of `text` that are ASCII (8 bytes at a time).
inline std::size_t ascii_prefix(const char* text, std::size_t size) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t chunk;
    std::memcpy(&chunk, text + i, 8);
    if (chunk & 0x8080808080808080ULL) break;
  }
  while (i < size && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  return i;
}
}  // namespace detail

/// Decodes the code point starting at `text[pos]` (pos < text.size()).
/// Invalid input yields {U+FFFD, length of the maximal subpart, false}.
constexpr DecodedCodePoint decode_one(std::string_view text, std::size_t pos) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return {lead, 1, true};
  std::size_t need;  // continuation bytes after the lead
  char32_t value;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
    value = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2;
    value = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3;
    value = lead & 0x07;
  } else {
    return {replacement_character, 1, false};  // 80..C1, F5..FF start nothing
  }
  const std::size_t available = text.size() - pos - 1;
  for (std::size_t k = 1; k <= need; ++k) {
    if (k > available) return {replacement_character, k, false};  // truncated: the subpart so far
    const unsigned char b = byte(pos + k);
    const bool ok = k == 1 ? detail::second_byte_ok(lead, b) : detail::is_continuation(b);
    if (!ok) return {replacement_character, k, false};
    value = (value << 6) | (b & 0x3F);
  }
  return {value, need + 1, true};
}

/// Calls `fn(char32_t code_point, bool valid)` for every decoded code point, in order.
template <class Fn>
void for_each_code_point(std::string_view text, Fn&& fn) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto d = decode_one(text, pos);
    fn(d.code_point, d.valid);
    pos += d.length;
  }
}

/// Offset of the first byte of the first invalid subsequence, or std::string_view::npos.
inline std::size_t first_invalid(std::string_view text) noexcept {
  std::size_t pos = 0;
  while (pos < text.size()) {
    pos += detail::ascii_prefix(text.data() + pos, text.size() - pos);
    if (pos >= text.size()) break;
    const auto d = decode_one(text, pos);
    if (!d.valid) return pos;
    pos += d.length;
  }
  return std::string_view::npos;
}

/// True when `text` is well-formed UTF-8 (no surrogates, overlongs or values above U+10FFFF).
inline bool is_valid(std::string_view text) noexcept { return first_invalid(text) == std::string_view::npos; }

/// Appends the UTF-8 encoding of `code_point`; surrogates and values above U+10FFFF, which have
/// no UTF-8 form, append U+FFFD instead.
inline void append(std::string& out, char32_t code_point) {
  if ((code_point >= 0xD800 && code_point <= 0xDFFF) || code_point > 0x10FFFF) code_point = replacement_character;
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

/// The code points of `text`, invalid subsequences replaced (Python's errors="replace").
inline std::u32string decode(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for_each_code_point(text, [&](char32_t c, bool) { out.push_back(c); });
  return out;
}

/// UTF-8 encoding of `code_points` (surrogates and values above U+10FFFF become U+FFFD).
inline std::string encode(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) append(out, c);
  return out;
}

/// `text` as valid UTF-8: every maximal invalid subsequence replaced by U+FFFD (EF BF BD), valid
/// bytes unchanged. Equal to Python's `b.decode("utf-8", "replace").encode("utf-8")`.
inline std::string sanitize(std::string_view text) {
  std::size_t bad = first_invalid(text);
  if (bad == std::string_view::npos) return std::string(text);
  std::string out(text.substr(0, bad));
  out.reserve(text.size() + 8);
  std::size_t pos = bad;
  while (pos < text.size()) {
    const auto d = decode_one(text, pos);
    if (d.valid) {
      out.append(text.substr(pos, d.length));
    } else {
      append(out, replacement_character);
    }
    pos += d.length;
  }
  return out;
}

/// Length in bytes of the longest prefix of `text` that does not end inside a multi-byte
/// sequence: for cutting a string at a byte budget without splitting a character.
inline std::size_t safe_prefix_length(std::string_view text, std::size_t max_bytes) noexcept {
  if (max_bytes >= text.size()) return text.size();
  std::size_t cut = max_bytes;
  // Back up over at most 3 continuation bytes to the start of the sequence they belong to.
  for (std::size_t k = 0; k < 3 && cut > 0 && detail::is_continuation(static_cast<unsigned char>(text[cut])); ++k) --cut;
  return cut;
}

}  // namespace grpo::utf8
