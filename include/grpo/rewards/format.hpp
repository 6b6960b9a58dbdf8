#pragma once
// The format reward of LongWriter-Zero (the paper names the checks, not a formula):
//   r = 0                                                   if the completion is not well formed
//   r = max(0, 1 - repetition_weight * repetition_ratio(answer))   otherwise
// "Well formed" is grpo::parse_completion's rule: exactly one <think>...</think> followed by
// exactly one <answer>...</answer>, only whitespace outside (a truncated answer is not well
// formed). repetition_ratio is the share of the answer that repeats earlier text
// (grpo/text/repetition.hpp). docs/rewards.md gives the reasoning.

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <string>
#include <string_view>

#include "grpo/concepts/reward.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/customization_points.hpp"
#include "grpo/rewards/detail/score_each.hpp"
#include "grpo/text/completion.hpp"
#include "grpo/text/repetition.hpp"

namespace grpo {

/// Tag structure plus a repetition penalty. Options are its fields:
/// `grpo::FormatReward{.repetition_weight = 2.0}`.
struct FormatReward {
  /// How repetition is measured (n-gram sizes, thresholds). Default: RepetitionOptions{}.
  RepetitionOptions repetition{};
  /// Multiplies the repetition ratio before it is subtracted from 1; >= 0. Default 1.0
  /// (an answer that is half repetition scores 0.5).
  double repetition_weight = 1.0;

  [[nodiscard]] static std::string_view name() noexcept { return "format"; }

  /// Per-sample metrics (customization_points.hpp): 1 when the completion is well formed, else 0;
  /// the repetition ratio of its answer (with this reward's repetition options).
  static constexpr std::array<SampleMetricName, 2> sample_metric_names{
      {{"well_formed", "well_formed_fraction"}, {"repetition", "repetition_mean"}}};
  void sample_metrics(const Sample& sample, std::span<double> out) const {
    const CompletionParts parts = parse_completion(sample.completion);
    out[0] = parts.well_formed ? 1.0 : 0.0;
    out[1] = repetition_ratio(parts.answer, repetition);
  }

  /// The reward of one completion, in [0, 1].
  [[nodiscard]] double reward(std::string_view completion) const {
    if (!(std::isfinite(repetition_weight) && repetition_weight >= 0.0)) {
      throw Error(fmt::format("FormatReward: expected repetition_weight >= 0, found {}; use 0 to disable the "
                              "repetition penalty",
                              repetition_weight));
    }
    const CompletionParts parts = parse_completion(completion);
    if (!parts.well_formed) return 0.0;
    return std::max(0.0, 1.0 - repetition_weight * repetition_ratio(parts.answer, repetition));
  }

  [[nodiscard]] float operator()(const Sample& sample) const { return static_cast<float>(reward(sample.completion)); }

  /// Scores a batch: out[i] = (*this)(batch[i]).
  void score(SampleBatch batch, std::span<float> out) const { detail::score_each(*this, batch, out, "FormatReward::score"); }
};
static_assert(NamedReward<FormatReward>);

}  // namespace grpo
