#pragma once
// GroupRule: how one group's rewards become advantages. Every estimator reduces to it, so the host
// path, the ATen path and the CUDA kernel implement one rule (docs/advantages.md).
//
// Each rule is affine in the reward, a_i = scale * (r_i - center), with per-group center and scale
// over the group's n finite rewards:
//   normalize      center = mean, scale = 1 / (std + epsilon)      GRPO, DeepSeekMath Eq. 2
//   center         center = mean, scale = 1                        Dr.GRPO (no std)
//   leave_one_out  center = mean, scale = n / (n - 1)              RLOO: r_i - mean of the others
// A group whose finite rewards are all equal (or that has <= 1 finite reward) gets scale = 0:
// advantage exactly 0. A non-finite reward is left out of its group and its sample gets 0.

#include <concepts>

namespace grpo {

/// Which standard deviation a group-normalised advantage divides by.
enum class StdKind {
  sample,      ///< sqrt(sum (r - mean)^2 / (n - 1)): torch.std's default, what verl and TRL use
  population,  ///< sqrt(sum (r - mean)^2 / n)
};

/// The per-group rule of a single-reward estimator (see the file comment for the formulas).
struct GroupRule {
  enum class Kind { normalize, center, leave_one_out };
  Kind kind = Kind::normalize;        ///< which affine map; default GRPO's normalisation
  StdKind std_kind = StdKind::sample; ///< std of `normalize`; default sample (n - 1)
  double epsilon = 1e-6;              ///< added to the std in `normalize`; default 1e-6 (verl's)
};

/// How a multi-reward estimator combines K rewards.
enum class RewardCombination {
  normalize_then_average,  ///< apply the rule to each reward, then weighted mean (LongWriter-Zero Eq. 5, GDPO)
  average_then_normalize,  ///< weighted mean of the raw rewards, then the rule (the ablation)
};

/// A single-reward estimator that can serve as the inner rule of grpo::Balanced and
/// grpo::RewardAverage: it says which GroupRule it applies.
///
/// Satisfied by: grpo::GroupNormalized, grpo::DrGrpo, grpo::LeaveOneOut.
template <class B>
concept GroupBaseline = requires(const B& b) {
  { b.group_rule() } -> std::same_as<GroupRule>;
};

}  // namespace grpo
