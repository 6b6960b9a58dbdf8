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
//
// An estimator that applies one of these rules models grpo::GroupBaseline (concepts/advantage.hpp).

#include "grpo/core/enum_names.hpp"

namespace grpo {

/// Which standard deviation a group-normalised advantage divides by.
enum class StdKind {
  sample,      ///< sqrt(sum (r - mean)^2 / (n - 1)): torch.std's default, what verl and TRL use
  population,  ///< sqrt(sum (r - mean)^2 / n)
};

/// Names of StdKind (configs' advantage.std).
inline constexpr EnumName<StdKind> std_kind_names[] = {{"sample", StdKind::sample}, {"population", StdKind::population}};

/// The per-group rule of a single-reward estimator (see the file comment for the formulas).
struct GroupRule {
  enum class Kind { normalize, center, leave_one_out };
  Kind kind = Kind::normalize;        ///< which affine map; default GRPO's normalisation
  StdKind std_kind = StdKind::sample; ///< std of `normalize`; default sample (n - 1)
  double epsilon = 1e-6;              ///< added to the std in `normalize`; default 1e-6 (verl's)
};

/// Names of GroupRule::Kind, each by the estimator that applies it (configs' advantage.baseline):
/// grpo = GroupNormalized, dr_grpo = DrGrpo, rloo = LeaveOneOut.
inline constexpr EnumName<GroupRule::Kind> group_rule_kind_names[] = {{"grpo", GroupRule::Kind::normalize},
                                                                      {"dr_grpo", GroupRule::Kind::center},
                                                                      {"rloo", GroupRule::Kind::leave_one_out}};

/// How a multi-reward estimator combines K rewards.
enum class RewardCombination {
  normalize_then_average,  ///< apply the rule to each reward, then weighted mean (LongWriter-Zero Eq. 5, GDPO)
  average_then_normalize,  ///< weighted mean of the raw rewards, then the rule (the ablation)
};

/// Names of RewardCombination, each by the estimator that combines so (configs'
/// advantage.estimator): balanced = Balanced, average = RewardAverage.
inline constexpr EnumName<RewardCombination> reward_combination_names[] = {
    {"balanced", RewardCombination::normalize_then_average}, {"average", RewardCombination::average_then_normalize}};

}  // namespace grpo
