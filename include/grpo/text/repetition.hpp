#pragma once
// Repetition measure for long answers: catches paragraphs that repeat earlier text verbatim or
// lightly edited (a few words changed, sentences reordered, pieces of several earlier paragraphs
// stitched together), the length-inflation failure mode the paper names, while ordinary prose
// scores (close to) zero. Formula (docs/rewards.md gives the reasoning and the calibration):
//
// 1. Units: the text is cut into word units: each CJK character (Han, kana, Hangul) is one unit;
//    every other maximal run of word characters (grpo::is_word_char) is one unit, ASCII letters
//    lower-cased. Punctuation and spacing are not units, so re-punctuating changes nothing.
// 2. Paragraphs: lines (split at '\n'). A paragraph is judged only if it has at least
//    `min_paragraph_units` units (headings, list stubs and short lines are never judged).
// 3. Shingles: a paragraph's shingles are its n consecutive units, n = `cjk_ngram` if most of its
//    units are CJK characters, else `word_ngram`. A paragraph shorter than n has one shingle.
// 4. Containment c_p: the fraction of paragraph p's shingles already seen before them in the text
//    (in any earlier paragraph, or earlier in p itself), so a repeated sentence inside a single
//    long paragraph is caught too.
// 5. Paragraph score s_p = clamp((c_p - ordinary) / (repeated - ordinary), 0, 1): 0 for ordinary
//    overlap, 1 for a clear repeat, linear in between so the reward has no cliff.
// 6. ratio = sum_p units_p * s_p / (units of the whole text), in [0, 1]: the share of the text
//    that is repetition.
// Cost: O(units) with hashing; no quadratic paragraph-pair comparison.

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/text/utf8.hpp"
#include "grpo/text/word_count.hpp"

namespace grpo {

/// Parameters of the repetition measure; defaults calibrated in docs/rewards.md.
struct RepetitionOptions {
  /// Shingle length in word units for paragraphs that are mostly not CJK. Default 5.
  std::size_t word_ngram = 5;
  /// Shingle length in characters for paragraphs that are mostly CJK. Default 6.
  std::size_t cjk_ngram = 6;
  /// Paragraphs with fewer units are not judged (but their shingles are remembered). Default 12.
  std::size_t min_paragraph_units = 12;
  /// Containment at or below which a paragraph counts as ordinary (score 0). Default 0.2.
  double ordinary_containment = 0.2;
  /// Containment at or above which a paragraph counts as fully repeated (score 1). Default 0.5.
  double repeated_containment = 0.5;
};

/// The repetition of one text (see the formula at the top of grpo/text/repetition.hpp).
struct RepetitionReport {
  double ratio = 0.0;                   ///< share of the text's units that are repetition, [0, 1]
  std::size_t units = 0;                ///< word units in the text
  std::size_t paragraphs = 0;           ///< non-empty paragraphs
  std::size_t judged_paragraphs = 0;    ///< paragraphs with >= min_paragraph_units units
  std::size_t repeated_paragraphs = 0;  ///< judged paragraphs with containment >= repeated_containment
  double max_containment = 0.0;         ///< the largest c_p among judged paragraphs
};

namespace detail {

/// One character per unit in CJK scripts: Han (incl. extension A, compatibility ideographs and
/// the supplementary planes' ideographs), Hiragana, Katakana, Hangul syllables.
constexpr bool is_cjk_unit_char(char32_t c) noexcept {
  return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
         (c >= 0xAC00 && c <= 0xD7AF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x3FFFF);
}

constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

/// Open-addressing set of non-zero 64-bit hashes (linear probing, load <= 1/2).
class HashSet64 {
 public:
  explicit HashSet64(std::size_t expected) {
    std::size_t capacity = 16;
    while (capacity < 2 * expected + 2) capacity *= 2;
    slots_.assign(capacity, 0);
  }
  /// Inserts `h`; returns false when it was already present.
  bool insert(std::uint64_t h) {
    if (h == 0) h = 1;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      if (slots_[i] == h) return false;
      if (slots_[i] == 0) {
        slots_[i] = h;
        if (++size_ * 2 > slots_.size()) grow();
        return true;
      }
    }
  }

 private:
  void grow() {
    std::vector<std::uint64_t> old(slots_.size() * 2, 0);
    old.swap(slots_);
    size_ = 0;
    for (std::uint64_t h : old)
      if (h != 0) insert(h);
  }
  std::vector<std::uint64_t> slots_;
  std::size_t size_ = 0;
};

struct Paragraph {
  std::size_t first_unit = 0;  // index into the unit hashes
  std::size_t units = 0;
  std::size_t cjk_units = 0;
};

/// Hashes of the text's units and its paragraphs (lines with at least one unit).
inline void split_units(std::string_view text, std::vector<std::uint64_t>& units, std::vector<Paragraph>& paragraphs) {
  constexpr std::uint64_t fnv_offset = 0xCBF29CE484222325ULL;
  constexpr std::uint64_t fnv_prime = 0x100000001B3ULL;
  Paragraph current;
  std::uint64_t word_hash = 0;
  bool in_word = false;
  const auto end_word = [&] {
    if (in_word) units.push_back(splitmix64(word_hash));
    in_word = false;
  };
  const auto end_paragraph = [&] {
    end_word();
    current.units = units.size() - current.first_unit;
    if (current.units > 0) paragraphs.push_back(current);
    current = Paragraph{units.size(), 0, 0};
  };
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto d = utf8::decode_one(text, pos);
    pos += d.length;
    char32_t c = d.code_point;
    if (c == '\n') {
      end_paragraph();
    } else if (is_cjk_unit_char(c)) {
      end_word();
      units.push_back(splitmix64(0x9E3779B97F4A7C15ULL ^ c));
      ++current.cjk_units;
    } else if (is_word_char(c)) {
      if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
      if (!in_word) word_hash = fnv_offset;
      in_word = true;
      word_hash = (word_hash ^ static_cast<std::uint64_t>(c)) * fnv_prime;
    } else {
      end_word();
    }
  }
  end_paragraph();
}

inline void validate(const RepetitionOptions& o) {
  if (o.word_ngram == 0 || o.cjk_ngram == 0) {
    throw Error(fmt::format("RepetitionOptions: expected word_ngram and cjk_ngram >= 1, found {} and {}; the "
                            "defaults are 5 and 6",
                            o.word_ngram, o.cjk_ngram));
  }
  if (!(o.ordinary_containment >= 0.0 && o.ordinary_containment < o.repeated_containment &&
        o.repeated_containment <= 1.0)) {
    throw Error(fmt::format("RepetitionOptions: expected 0 <= ordinary_containment < repeated_containment <= 1, found "
                            "{} and {}; the defaults are 0.2 and 0.5",
                            o.ordinary_containment, o.repeated_containment));
  }
}

}  // namespace detail

/// Measures repeated content in `text` (formula at the top of this header). Throws grpo::Error
/// only for invalid options; any bytes are accepted (invalid UTF-8 as U+FFFD, not a unit).
inline RepetitionReport measure_repetition(std::string_view text, const RepetitionOptions& options = {}) {
  detail::validate(options);
  std::vector<std::uint64_t> units;
  std::vector<detail::Paragraph> paragraphs;
  units.reserve(text.size() / 4 + 1);
  detail::split_units(text, units, paragraphs);

  RepetitionReport report;
  report.units = units.size();
  report.paragraphs = paragraphs.size();
  if (units.empty()) return report;

  detail::HashSet64 seen(units.size());
  double repeated_units = 0.0;
  const double span = options.repeated_containment - options.ordinary_containment;
  for (const auto& p : paragraphs) {
    const std::size_t n = std::min(p.cjk_units * 2 > p.units ? options.cjk_ngram : options.word_ngram, p.units);
    const std::size_t shingles = p.units - n + 1;
    std::size_t already_seen = 0;
    for (std::size_t s = 0; s < shingles; ++s) {
      std::uint64_t h = 0x6A09E667F3BCC909ULL + n;  // n in the seed: different n never collide by design
      for (std::size_t k = 0; k < n; ++k) h = detail::splitmix64(h ^ units[p.first_unit + s + k]);
      if (!seen.insert(h)) ++already_seen;
    }
    if (p.units < options.min_paragraph_units) continue;
    ++report.judged_paragraphs;
    const double containment = static_cast<double>(already_seen) / static_cast<double>(shingles);
    report.max_containment = std::max(report.max_containment, containment);
    if (containment >= options.repeated_containment) ++report.repeated_paragraphs;
    const double paragraph_score = std::clamp((containment - options.ordinary_containment) / span, 0.0, 1.0);
    repeated_units += paragraph_score * static_cast<double>(p.units);
  }
  report.ratio = repeated_units / static_cast<double>(units.size());
  return report;
}

/// measure_repetition(text, options).ratio: the share of the text that is repetition, [0, 1].
inline double repetition_ratio(std::string_view text, const RepetitionOptions& options = {}) {
  return measure_repetition(text, options).ratio;
}

}  // namespace grpo
