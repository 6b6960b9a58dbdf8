#pragma once
// The byte-level alphabet of GPT-2 (`bytes_to_unicode` in openai/gpt-2 encoder.py, the ByteLevel
// pre-tokenizer and decoder of Hugging Face tokenizers): every byte is spelled as one printable
// code point, so BPE vocabularies are strings. Printable Latin-1 bytes (! .. ~, ¡ .. ¬, ® .. ÿ)
// stand for themselves; the other 68 bytes, in increasing order, become U+0100 + n.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace grpo::tokenizer_detail {

struct ByteLevelAlphabet {
  std::array<char32_t, 256> code_point_of_byte{};  ///< byte -> its code point
  std::array<std::int16_t, 324> byte_of_code_point{};  ///< code point (< 324) -> byte, or -1
};

constexpr ByteLevelAlphabet make_byte_level_alphabet() {
  ByteLevelAlphabet alphabet;
  for (auto& b : alphabet.byte_of_code_point) b = -1;
  const auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
    alphabet.code_point_of_byte[static_cast<std::size_t>(b)] = cp;
    alphabet.byte_of_code_point[cp] = static_cast<std::int16_t>(b);
  }
  return alphabet;
}

inline constexpr ByteLevelAlphabet byte_level_alphabet = make_byte_level_alphabet();

/// Appends the byte-level spelling of `bytes` (each byte -> one code point of 1 or 2 UTF-8 bytes).
inline void append_byte_level(std::string& out, std::string_view bytes) {
  for (unsigned char b : bytes) {
    const char32_t cp = byte_level_alphabet.code_point_of_byte[b];
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
}

/// Bytes a vocabulary token stands for under the ByteLevel decoder: if every code point of the
/// token is in the alphabet, the bytes they spell; otherwise (a token outside the alphabet, e.g.
/// an added token "<|im_start|>" with a non-Latin-1 character) the token's own UTF-8 bytes.
/// This is, per token, what `tokenizers`' ByteLevel decoder does before its lossy UTF-8 step.
inline std::string byte_level_token_bytes(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  std::size_t i = 0;
  while (i < token.size()) {
    const auto lead = static_cast<unsigned char>(token[i]);
    char32_t cp;
    if (lead < 0x80) {
      cp = lead;
      i += 1;
    } else if ((lead & 0xE0) == 0xC0 && i + 1 < token.size()) {
      cp = (char32_t{lead & 0x1Fu} << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return std::string(token);  // 3- or 4-byte code points are beyond U+0143: not in the alphabet
    }
    if (cp >= byte_level_alphabet.byte_of_code_point.size() || byte_level_alphabet.byte_of_code_point[cp] < 0) {
      return std::string(token);
    }
    bytes.push_back(static_cast<char>(byte_level_alphabet.byte_of_code_point[cp]));
  }
  return bytes;
}

}  // namespace grpo::tokenizer_detail
