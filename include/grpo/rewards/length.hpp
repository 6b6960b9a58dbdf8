#pragma once
// The length reward of LongWriter-Zero (paper, Eq. 3) and the LongBench-Write length score S_l.
//
// For an answer of `len` words (grpo::word_count of the answer block) and a target [lo, hi]:
//   r = 1                                  if lo <= len <= hi
//   r = len / lo                           if len < lo
//   r = max(0, (L_max - len) / (L_max - hi))   if len > hi
// L_max was never published. Here L_max = max_words when set, else max_factor * hi: a constant
// L_max (say 12,000) would make overshooting a 500-word target almost free (r = 0.96 at 1,000
// words), while max_factor = 2 gives r = 0 at twice the upper bound for every target size.
// Guards: lo = 0 has no "too short" branch (the division never happens); the target [0, 0] means
// "no target" (the prompt should have been dropped) and scores `no_target_reward`; a negative
// bound, lo > hi or L_max <= hi throws grpo::Error. docs/rewards.md gives the reasoning.

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "grpo/concepts/reward.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/customization_points.hpp"
#include "grpo/rewards/detail/score_each.hpp"
#include "grpo/text/completion.hpp"
#include "grpo/text/word_count.hpp"

namespace grpo {

/// Which text a length is measured on.
enum class MeasuredText {
  answer_block,  ///< the <answer> block (grpo/text/completion.hpp rules); no <answer> -> 0 words
  completion,    ///< the whole completion (models prompted without the think/answer tags)
};

/// The words LengthReward measures in a completion.
inline std::int64_t measured_words(std::string_view completion, MeasuredText what) noexcept {
  return word_count(what == MeasuredText::answer_block ? parse_completion(completion).answer : completion);
}

namespace detail {
inline std::string range_text(WordRange r) {
  return fmt::format("[{}, {}]", r.lower, r.upper);
}
}  // namespace detail

/// Eq. 3 of the paper on the word count of the answer. Options are its fields:
/// `grpo::LengthReward{.max_factor = 3.0}`.
struct LengthReward {
  /// L_max in words (reward 0 at and beyond it) when set; must exceed every target's upper bound.
  /// Default: unset, L_max = max_factor * upper.
  std::optional<std::int64_t> max_words;
  /// L_max = max_factor * upper when max_words is unset; must be > 1. Default 2.0.
  double max_factor = 2.0;
  /// Reward for a sample whose target is [0, 0] ("no target"). Default 0.
  float no_target_reward = 0.0f;
  /// The text whose words are counted. Default: the <answer> block.
  MeasuredText measure = MeasuredText::answer_block;

  [[nodiscard]] static std::string_view name() noexcept { return "length"; }

  /// Per-sample metric (customization_points.hpp): the words this reward measured.
  static constexpr std::array<SampleMetricName, 1> sample_metric_names{{{"answer_words", "answer_words_mean"}}};
  void sample_metrics(const Sample& sample, std::span<double> out) const {
    out[0] = static_cast<double>(measured_words(sample.completion, measure));
  }

  /// Eq. 3 for an answer of `words` words and the target [lower, upper]; in [0, 1].
  [[nodiscard]] double reward(std::int64_t words, WordRange target) const {
    if (target.lower < 0 || target.upper < 0 || target.lower > target.upper) {
      throw Error("LengthReward: expected a target range 0 <= lower <= upper, found " + detail::range_text(target) +
                  "; fix the sample's target (lower/upper)");
    }
    if (target.upper == 0) return no_target_reward;
    if (words < 0) throw Error(fmt::format("LengthReward: expected a word count >= 0, found {}", words));
    const auto len = static_cast<double>(words);
    const auto lo = static_cast<double>(target.lower);
    const auto hi = static_cast<double>(target.upper);
    if (words < target.lower) return len / lo;  // lo > 0 here
    if (words <= target.upper) return 1.0;
    const double l_max = max_length(target);
    return std::max(0.0, (l_max - len) / (l_max - hi));
  }

  /// L_max for a target (validated: finite and above the upper bound).
  [[nodiscard]] double max_length(WordRange target) const {
    if (max_words) {
      if (*max_words <= target.upper) {
        throw Error(fmt::format("LengthReward: expected max_words (L_max) > the target's upper bound, found max_words "
                                "= {} for target {}; raise max_words or leave it unset to use max_factor * upper",
                                *max_words, detail::range_text(target)));
      }
      return static_cast<double>(*max_words);
    }
    if (!(std::isfinite(max_factor) && max_factor > 1.0)) {
      throw Error(fmt::format(
          "LengthReward: expected max_factor > 1 (L_max = max_factor * upper), found {}; use e.g. 2.0", max_factor));
    }
    return max_factor * static_cast<double>(target.upper);
  }

  /// The reward of one sample.
  [[nodiscard]] float operator()(const Sample& sample) const {
    return static_cast<float>(reward(measured_words(sample.completion, measure), sample.target));
  }

  /// Scores a batch: out[i] = (*this)(batch[i]).
  void score(SampleBatch batch, std::span<float> out) const { detail::score_each(*this, batch, out, "LengthReward::score"); }
};
static_assert(NamedReward<LengthReward>);

/// The LongBench-Write length score S_l in [0, 100] for a required length x and a produced
/// length y (both in words):
///   S_l = 100 * max(0, 1 - (y/x - 1) / 3)   if y > x
///   S_l = 100 * max(0, 1 - (x/y - 1) / 2)   if y <= x;   y = 0 scores 0.
/// Throws grpo::Error for x <= 0 or y < 0.
inline double longbench_length_score(std::int64_t required, std::int64_t produced) {
  if (required <= 0) {
    throw Error(fmt::format("longbench_length_score: expected a required length > 0 words, found {}", required));
  }
  if (produced < 0) {
    throw Error(fmt::format("longbench_length_score: expected a produced length >= 0 words, found {}", produced));
  }
  if (produced == 0) return 0.0;
  const auto x = static_cast<double>(required);
  const auto y = static_cast<double>(produced);
  if (y > x) return 100.0 * std::max(0.0, 1.0 - (y / x - 1.0) / 3.0);
  return 100.0 * std::max(0.0, 1.0 - (x / y - 1.0) / 2.0);
}

}  // namespace grpo
