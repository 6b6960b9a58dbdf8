#pragma once
// Code point classes for the tokenizer, as the Hugging Face `tokenizers` regex engine sees them
// (tables generated from it, see unicode_tables.hpp), and UTF-8 stepping over text that is
// known to be valid (the tokenizer sanitises its input first).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grpo/tokenizer/detail/unicode_tables.hpp"

namespace grpo::tokenizer_detail {

using unicode_tables::GeneralCategory;

/// General category of every code point in a two-stage table (cp >> 7 picks a 128-entry block;
/// identical blocks are stored once: about 70 KB), built once per process from the run table.
class CategoryTable {
 public:
  static const CategoryTable& instance() {
    static const CategoryTable table;
    return table;
  }

  GeneralCategory operator()(char32_t cp) const noexcept {
    if (cp > 0x10FFFF) return GeneralCategory::Cn;
    return static_cast<GeneralCategory>(blocks_[std::size_t{index_[cp >> 7]} * 128 + (cp & 127)]);
  }

 private:
  CategoryTable() {
    std::vector<std::uint8_t> flat(0x110000);
    const auto& runs = unicode_tables::category_runs;
    const std::size_t run_count = std::size(runs);
    for (std::size_t r = 0; r < run_count; ++r) {
      const std::uint32_t first = runs[r] >> 5;
      const std::uint32_t last = r + 1 < run_count ? (runs[r + 1] >> 5) : 0x110000;
      std::fill(flat.begin() + first, flat.begin() + last, static_cast<std::uint8_t>(runs[r] & 31));
    }
    index_.resize(0x110000 / 128);
    std::unordered_map<std::string_view, std::uint16_t> seen;
    blocks_.reserve(300 * 128);
    std::vector<std::string> keys;  // owns the bytes the map's keys view
    keys.reserve(index_.size());
    for (std::size_t b = 0; b < index_.size(); ++b) {
      keys.emplace_back(reinterpret_cast<const char*>(flat.data() + b * 128), 128);
      auto [it, inserted] = seen.try_emplace(keys.back(), static_cast<std::uint16_t>(blocks_.size() / 128));
      if (inserted) blocks_.insert(blocks_.end(), flat.begin() + b * 128, flat.begin() + (b + 1) * 128);
      index_[b] = it->second;
    }
  }

  std::vector<std::uint16_t> index_;
  std::vector<std::uint8_t> blocks_;
};

inline bool is_letter(GeneralCategory c) noexcept {
  return c >= GeneralCategory::Lu && c <= GeneralCategory::Lo;
}
inline bool is_number(GeneralCategory c) noexcept {
  return c >= GeneralCategory::Nd && c <= GeneralCategory::No;
}

/// `\s` of the reference regex engines: the Unicode White_Space property (25 code points).
inline bool is_white_space(char32_t cp) noexcept {
  if (cp < 0x80) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  return std::binary_search(std::begin(unicode_tables::white_space), std::end(unicode_tables::white_space), cp);
}

/// `\w` of the reference regex engine (Oniguruma): letters, marks, decimal digits, connector
/// punctuation and other alphabetic code points.
inline bool is_word_character(char32_t cp) noexcept {
  const auto& ranges = unicode_tables::word_ranges;
  const auto* end = std::end(ranges);
  const auto* it = std::upper_bound(std::begin(ranges), end, cp,
                                    [](char32_t value, const char32_t (&range)[2]) { return value < range[0]; });
  return it != std::begin(ranges) && cp <= (*(it - 1))[1];
}

/// Number of leading ASCII bytes of `text` (8 bytes at a time).
inline std::size_t ascii_prefix_length(std::string_view text) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t chunk;
    std::memcpy(&chunk, text.data() + i, 8);
    if (chunk & 0x8080808080808080ULL) break;
  }
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  return i;
}

/// Decodes the code point at `p` in valid UTF-8 and advances `p` past it.
inline char32_t next_code_point(const unsigned char*& p) noexcept {
  const unsigned char lead = *p;
  if (lead < 0x80) {
    ++p;
    return lead;
  }
  if (lead < 0xE0) {
    const char32_t cp = (char32_t{lead & 0x1Fu} << 6) | (p[1] & 0x3Fu);
    p += 2;
    return cp;
  }
  if (lead < 0xF0) {
    const char32_t cp = (char32_t{lead & 0x0Fu} << 12) | (char32_t{p[1] & 0x3Fu} << 6) | (p[2] & 0x3Fu);
    p += 3;
    return cp;
  }
  const char32_t cp = (char32_t{lead & 0x07u} << 18) | (char32_t{p[1] & 0x3Fu} << 12) |
                      (char32_t{p[2] & 0x3Fu} << 6) | (p[3] & 0x3Fu);
  p += 4;
  return cp;
}

/// The code point that ends at `end` in valid UTF-8 (`begin` < `end`), and where it starts.
inline char32_t previous_code_point(const unsigned char* begin, const unsigned char*& end) noexcept {
  const unsigned char* p = end - 1;
  while (p > begin && (*p & 0xC0) == 0x80) --p;
  const unsigned char* start = p;
  const char32_t cp = next_code_point(p);
  end = start;
  return cp;
}

}  // namespace grpo::tokenizer_detail
