#pragma once
// The scanner behind grpo::find_length_requirement (grpo/text/targets.hpp): finds numbers
// (digits, Chinese numerals, English number words), their word units, qualifiers, ranges and
// per-piece counts in a prompt (the numbers themselves: numbers_in_text.hpp). Internal: the rules
// it implements are documented there.

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

#include "grpo/text/detail/numbers_in_text.hpp"
#include "grpo/text/length_requirement.hpp"

namespace grpo {

namespace detail::targets {

struct Unit {
  Pos end = npos;            // npos: no word unit after the number
  bool at_least = false;     // "1000+ words", "1000多字"
  bool adjectival = false;   // "1000-word", "1000 word" (singular English)
  bool chinese = false;      // 字
};

/// The word unit right after a number: "words", "-word", "字", "个字", "多字", "字符", "+ words".
inline Unit unit_after(std::string_view t, Pos pos) {
  Unit u;
  pos = skip_spaces(t, pos);
  if (at(t, pos, "+")) {
    u.at_least = true;
    pos = skip_spaces(t, pos + 1);
  }
  Pos q = pos;
  bool hyphen = false;
  if (at(t, q, "-")) {
    hyphen = true;
    q = skip_spaces(t, q + 1);
  } else if (at(t, q, "\xE2\x80\x90") || at(t, q, "\xE2\x80\x91")) {  // U+2010, U+2011 hyphens
    hyphen = true;
    q = skip_spaces(t, q + 3);
  }
  if (word_at(t, q, "words")) {
    u.end = q + 5;
    return u;
  }
  if (word_at(t, q, "word")) {
    u.end = q + 4;
    u.adjectival = true;
    return u;
  }
  if (hyphen) return u;
  q = pos;
  bool more = false;
  if (at(t, q, "多")) {
    more = true;
    q += 3;
  }
  if (at(t, q, "个")) q += 3;
  if (at(t, q, "字")) {
    u.end = q + 3;
    if (at(t, u.end, "符")) u.end += 3;
    u.at_least = u.at_least || more;
    u.chinese = true;
  }
  return u;
}

struct Phrase {
  std::string_view text;
  LengthBound bound;
};

// Qualifiers right before a number (after spaces are skipped). The longest match wins, so
// "no more than" beats "more than".
inline constexpr auto qualifiers_before = std::to_array<Phrase>({
    {"at least", LengthBound::at_least}, {"no less than", LengthBound::at_least},
    {"not less than", LengthBound::at_least}, {"no fewer than", LengthBound::at_least},
    {"not fewer than", LengthBound::at_least}, {"minimum of", LengthBound::at_least},
    {"minimum", LengthBound::at_least}, {"min.", LengthBound::at_least}, {"more than", LengthBound::at_least},
    {"over", LengthBound::at_least}, {"upwards of", LengthBound::at_least}, {"in excess of", LengthBound::at_least},
    {"exceeding", LengthBound::at_least}, {"no shorter than", LengthBound::at_least},
    {"no more than", LengthBound::at_most}, {"not more than", LengthBound::at_most},
    {"at most", LengthBound::at_most}, {"up to", LengthBound::at_most}, {"within", LengthBound::at_most},
    {"less than", LengthBound::at_most}, {"fewer than", LengthBound::at_most}, {"under", LengthBound::at_most},
    {"maximum of", LengthBound::at_most}, {"maximum", LengthBound::at_most}, {"max", LengthBound::at_most},
    {"max.", LengthBound::at_most}, {"not exceeding", LengthBound::at_most},
    {"not to exceed", LengthBound::at_most}, {"no longer than", LengthBound::at_most},
    {"not longer than", LengthBound::at_most}, {"shorter than", LengthBound::at_most},
    {"below", LengthBound::at_most}, {"limit of", LengthBound::at_most}, {"limited to", LengthBound::at_most},
    {"about", LengthBound::about}, {"around", LengthBound::about}, {"approximately", LengthBound::about},
    {"approx.", LengthBound::about}, {"approx", LengthBound::about}, {"roughly", LengthBound::about},
    {"exactly", LengthBound::about}, {"~", LengthBound::about}, {"between", LengthBound::between},
    {"不少于", LengthBound::at_least}, {"不低于", LengthBound::at_least}, {"不小于", LengthBound::at_least},
    {"至少", LengthBound::at_least}, {"最少", LengthBound::at_least}, {"最低", LengthBound::at_least},
    {"超过", LengthBound::at_least}, {"多于", LengthBound::at_least}, {"起码", LengthBound::at_least},
    {"不超过", LengthBound::at_most}, {"不多于", LengthBound::at_most}, {"不大于", LengthBound::at_most},
    {"不高于", LengthBound::at_most}, {"最多", LengthBound::at_most}, {"至多", LengthBound::at_most},
    {"少于", LengthBound::at_most}, {"小于", LengthBound::at_most},
    {"约", LengthBound::about}, {"大概", LengthBound::about},
});

// Qualifiers right after the unit (or the number).
inline constexpr auto qualifiers_after = std::to_array<Phrase>({
    {"or more", LengthBound::at_least}, {"or longer", LengthBound::at_least}, {"minimum", LengthBound::at_least},
    {"at least", LengthBound::at_least}, {"or less", LengthBound::at_most}, {"or fewer", LengthBound::at_most},
    {"or under", LengthBound::at_most}, {"maximum", LengthBound::at_most}, {"max", LengthBound::at_most},
    {"at most", LengthBound::at_most}, {"or shorter", LengthBound::at_most},
    {"以上", LengthBound::at_least}, {"或以上", LengthBound::at_least}, {"以内", LengthBound::at_most},
    {"之内", LengthBound::at_most}, {"以下", LengthBound::at_most}, {"或以下", LengthBound::at_most},
    {"左右", LengthBound::about}, {"上下", LengthBound::about},
});

/// The longest qualifier ending at pos; sets `start` to where it begins.
inline std::optional<LengthBound> qualifier_before(std::string_view t, Pos pos, Pos& start) {
  std::optional<LengthBound> found;
  std::size_t best = 0;
  for (const auto& q : qualifiers_before) {
    if (q.text.size() > best && ends_at_word(t, pos, q.text)) {
      best = q.text.size();
      found = q.bound;
    }
  }
  start = pos - best;
  return found;
}

inline std::optional<LengthBound> qualifier_after(std::string_view t, Pos pos) {
  pos = skip_spaces(t, pos);
  std::optional<LengthBound> found;
  std::size_t best = 0;
  for (const auto& q : qualifiers_after) {
    const bool match = is_alpha(q.text.front()) ? word_at(t, pos, q.text) : at(t, pos, q.text);
    if (q.text.size() > best && match) {
      best = q.text.size();
      found = q.bound;
    }
  }
  if (!found && at(t, pos, "内") && !at(t, pos, "内容")) found = LengthBound::at_most;  // 500字内
  return found;
}

/// Range separators between two numbers: "-", "–", "—", "~", "～", "〜", "to", "至", "到", "and"
/// (the last only after "between"). Returns the position after the separator, or npos.
inline Pos range_separator(std::string_view t, Pos pos, bool after_between) {
  pos = skip_spaces(t, pos);
  for (std::string_view sep : {std::string_view("-"), std::string_view("\xE2\x80\x93"), std::string_view("\xE2\x80\x94"),
                               std::string_view("~"), std::string_view("\xEF\xBD\x9E"), std::string_view("\xE3\x80\x9C"),
                               std::string_view("至"), std::string_view("到")}) {
    if (at(t, pos, sep)) return skip_spaces(t, pos + sep.size());
  }
  if (word_at(t, pos, "to")) return skip_spaces(t, pos + 2);
  if (after_between && word_at(t, pos, "and")) return skip_spaces(t, pos + 3);
  return npos;
}

// Contexts that make a bare number a word count: "字数：3000", "word count of 1500".
inline bool word_count_context(std::string_view t, Pos pos) {
  for (;;) {  // strip fillers between the context and the number
    const Pos before = pos;
    pos = skip_spaces_back(t, pos);
    for (std::string_view filler : {std::string_view(":"), std::string_view("："), std::string_view("为"),
                                    std::string_view("在"), std::string_view("是"), std::string_view("要求"),
                                    std::string_view("控制"), std::string_view("of"), std::string_view("is"),
                                    std::string_view("should be"), std::string_view("around")}) {
      if (ends_at_word(t, pos, filler)) {
        pos -= filler.size();
        break;
      }
    }
    if (pos == before) break;
  }
  return ends_at(t, pos, "字数") || ends_at(t, pos, "篇幅") || ends_at_word(t, pos, "word count") ||
         ends_at_word(t, pos, "word limit") || ends_at_word(t, pos, "wordcount");
}

// Measure words of Chinese pieces: 3篇, 每章.
inline constexpr auto chinese_measure_words = std::to_array<std::string_view>({"篇", "章", "首", "段", "个", "封",
                                                                       "节", "部", "则", "条", "份", "幕"});

inline std::string_view chinese_measure_at(std::string_view t, Pos pos) {
  for (std::string_view m : chinese_measure_words)
    if (at(t, pos, m)) return m;
  return {};
}

/// "每篇", "每一章" ending at pos: the measure word, or "" when there is no per-piece marker.
inline std::optional<std::string_view> chinese_per_piece_before(std::string_view t, Pos pos) {
  pos = skip_spaces_back(t, pos);
  for (std::string_view m : chinese_measure_words) {
    if (ends_at(t, pos, m)) {
      Pos q = pos - m.size();
      if (ends_at(t, q, "一")) q -= 3;
      if (ends_at(t, q, "每")) return m;
    }
  }
  if (ends_at(t, pos, "部分") && (ends_at(t, pos - 6, "每") || ends_at(t, pos - 9, "每一"))) return std::string_view("部分");
  return std::nullopt;
}

/// One explicit requirement found in the prompt.
struct Mention {
  LengthRequirement requirement;
  Pos begin = 0;
  Pos end = 0;
  bool per_piece = false;
  std::string_view measure;  // Chinese measure word of a per-piece requirement
  double adjacent_count = 0;  // "three 500-word essays": the count right before, 0 if none
};

/// A count of pieces: "3篇", "three essays", and where it is.
struct PieceCount {
  Pos begin = 0;
  Pos end = 0;
  double count = 0;
  std::string_view measure;  // Chinese measure word, "" for English
  bool bare = false;         // no noun after it: only counts right before a requirement
};

inline bool is_plural_noun_at(std::string_view t, Pos pos) {
  const std::string_view w = ascii_word_at(t, pos);
  return w.size() >= 3 && w.back() == 's' && w != "words" && w != "is" && w != "was" && w != "has";
}

constexpr bool usable_count(double v) { return v >= 1 && v <= 100 && v == std::floor(v); }

inline std::optional<LengthRequirement> extract_requirement(std::string_view prompt) {
  std::string lowered(prompt);
  for (char& c : lowered)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  const std::string_view t = lowered;
  const std::vector<Number> numbers = find_numbers(t);

  std::vector<Mention> mentions;
  std::vector<PieceCount> counts;
  std::vector<bool> used(numbers.size(), false);
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    if (used[i]) continue;
    const Number& n = numbers[i];
    Unit unit = unit_after(t, n.end);
    Pos qualifier_start = 0;
    const Pos before = skip_spaces_back(t, n.begin);
    std::optional<LengthBound> bound = qualifier_before(t, before, qualifier_start);
    if (qualifier_start == before) qualifier_start = n.begin;
    Mention m;
    m.begin = qualifier_start;
    double upper = -1;
    // A range: "2000-2500 words", "2000 to 2500 words", "between 2000 and 2500 words", "2000字到3000字".
    if (i + 1 < numbers.size()) {
      const Pos sep_end = range_separator(t, unit.end != npos ? unit.end : n.end, bound == LengthBound::between);
      if (sep_end != npos && numbers[i + 1].begin == sep_end) {
        const Unit second = unit_after(t, numbers[i + 1].end);
        if (second.end != npos) {
          upper = numbers[i + 1].value;
          unit = second;
          used[i + 1] = true;
        }
      }
    }
    if (unit.end == npos && !word_count_context(t, qualifier_start) && !word_count_context(t, n.begin)) {
      // Not a word count; maybe a count of pieces ("3篇", "three essays").
      const Pos after = skip_spaces(t, n.end);
      const std::string_view measure = chinese_measure_at(t, after);
      if (usable_count(n.value) && (!measure.empty() || is_plural_noun_at(t, after))) {
        counts.push_back({n.begin, after + (measure.empty() ? ascii_word_at(t, after).size() : measure.size()),
                          n.value, measure, false});
      } else if (usable_count(n.value)) {
        counts.push_back({n.begin, n.end, n.value, {}, true});  // a bare count: "three 500-word essays"
      }
      continue;
    }
    const Pos after_unit = unit.end != npos ? unit.end : n.end;
    m.end = after_unit;
    const std::optional<LengthBound> after = qualifier_after(t, after_unit);
    const auto words = [](double v) -> std::int64_t { return v >= 1e9 ? 1'000'000'000 : std::llround(v); };
    if (upper >= 0) {
      m.requirement = {LengthBound::between, words(n.value), words(upper)};
    } else {
      LengthBound b = LengthBound::about;
      if (bound && *bound != LengthBound::between) b = *bound;
      if (after) b = *after;
      if (unit.at_least) b = LengthBound::at_least;
      if (ends_at_word(t, skip_spaces_back(t, qualifier_start), "word limit") ||
          ends_at_word(t, skip_spaces_back(t, qualifier_start), "word limit of")) {
        b = LengthBound::at_most;
      }
      m.requirement = {b, words(n.value), 0};
    }
    if (m.requirement.value <= 0 && m.requirement.upper <= 0) continue;
    // Per piece: "每篇400字", "each about 500 words", "500 words each", "500 words per essay".
    if (auto measure = chinese_per_piece_before(t, qualifier_start)) {
      m.per_piece = true;
      m.measure = *measure;
    } else if (ends_at_word(t, skip_spaces_back(t, qualifier_start), "each") ||
               ends_at_word(t, skip_spaces_back(t, qualifier_start), "each of") ||
               ends_at_word(t, skip_spaces_back(t, qualifier_start), "each with")) {
      m.per_piece = true;
    } else {
      const Pos q = skip_spaces(t, after_unit);
      if (word_at(t, q, "each") || word_at(t, q, "apiece") || word_at(t, q, "per")) m.per_piece = true;
    }
    // "three 500-word essays", "写3篇1000字的文章": a count right before the requirement.
    if (!m.per_piece && !counts.empty() && skip_spaces(t, counts.back().end) == n.begin &&
        (unit.adjectival || !counts.back().measure.empty())) {
      m.per_piece = true;
      m.measure = counts.back().measure;
      m.adjacent_count = counts.back().count;
    }
    mentions.push_back(m);
  }
  if (mentions.empty()) return std::nullopt;

  // Multiply per-piece requirements by their count: the count right before the requirement, else
  // the nearest count before it (same measure word preferred), else the first after; no count
  // means one piece.
  const auto piece_count = [&](const Mention& m) -> double {
    if (m.adjacent_count > 0) return m.adjacent_count;
    const PieceCount* best = nullptr;
    for (const PieceCount& c : counts) {
      if (c.bare || c.end > m.begin) continue;
      if (!best || (c.measure == m.measure) >= (best->measure == m.measure)) best = &c;
    }
    if (best) return best->count;
    for (const PieceCount& c : counts)
      if (!c.bare && c.begin >= m.end) return c.count;
    return 1;
  };
  for (Mention& m : mentions) {
    if (!m.per_piece) continue;
    const auto k = static_cast<std::int64_t>(piece_count(m));
    m.requirement.value *= k;
    m.requirement.upper *= k;
  }

  // Several requirements: "at least A ... at most B" with A <= B is the range [A, B]; otherwise the
  // largest requirement wins (a paragraph limit inside a long essay request must not win).
  std::optional<std::int64_t> at_least, at_most;
  for (const Mention& m : mentions) {
    if (m.requirement.bound == LengthBound::at_least) at_least = std::max(at_least.value_or(0), m.requirement.value);
  }
  if (at_least) {
    for (const Mention& m : mentions) {
      if (m.requirement.bound == LengthBound::at_most && m.requirement.value > *at_least &&
          (!at_most || m.requirement.value < *at_most)) {
        at_most = m.requirement.value;
      }
    }
    if (at_most) return LengthRequirement{LengthBound::between, *at_least, *at_most};
  }
  const auto size_of = [](const LengthRequirement& r) {
    return r.bound == LengthBound::between ? std::max(r.value, r.upper) : r.value;
  };
  const Mention* largest = &mentions.front();
  for (const Mention& m : mentions)
    if (size_of(m.requirement) > size_of(largest->requirement)) largest = &m;
  return largest->requirement;
}

}  // namespace detail::targets

}  // namespace grpo
