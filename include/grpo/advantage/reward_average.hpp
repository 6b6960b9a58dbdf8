#pragma once
// grpo::RewardAverage: the ablation LongWriter-Zero argues against (method.md, "Combining the
// rewards"): average the raw rewards first, then apply the inner rule once,
//   A_i = Inner( sum_k w_k r_ik / sum_k w_k )  within i's group,
// so a reward with a larger spread dominates. A sample with any non-finite reward (of non-zero
// weight) has a non-finite average: it is left out of its group and gets A_i = 0.

#include <ATen/core/Tensor.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "grpo/advantage/balanced.hpp"
#include "grpo/advantage/detail/group_advantages_host.hpp"
#include "grpo/advantage/detail/group_advantages_tensor.hpp"
#include "grpo/advantage/group_normalized.hpp"
#include "grpo/core/group_rule.hpp"
#include "grpo/concepts/advantage.hpp"
#include "grpo/core/reward_table.hpp"

namespace grpo {

/// Weighted mean of K raw rewards, then Inner within each group.
/// K = std::dynamic_extent takes any number of rewards (weights as a vector, empty = equal).
template <std::size_t K = std::dynamic_extent, GroupBaseline Inner = GroupNormalized>
struct RewardAverage {
  static_assert(K > 0, "grpo::RewardAverage<K>: K must be at least 1");
  static constexpr std::size_t num_rewards = K;

  /// The rule applied to the averaged reward. Default GroupNormalized{}.
  Inner inner{};
  /// Relative weight of each raw reward, >= 0, not all 0; normalised by their sum. Default all 1.
  std::array<double, K> weights = detail::equal_weights<K>();

  /// rewards: [K, N] -> out: [N]
  void compute(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) const {
    detail::check_reward_count(rewards.rewards, K, "grpo::RewardAverage");
    detail::group_advantages(rewards, group_size, out, plan(), "grpo::RewardAverage");
  }
  /// rewards: [K, N] on CPU/CUDA -> [N] float32 on the same device, no host sync.
  [[nodiscard]] at::Tensor compute(const at::Tensor& rewards, std::int64_t group_size) const {
    return detail::group_advantages(rewards, group_size, plan(), K, "grpo::RewardAverage");
  }

 private:
  [[nodiscard]] detail::GroupAdvantagePlan plan() const {
    return {inner.group_rule(), RewardCombination::average_then_normalize, weights};
  }
};

/// RewardAverage over any number of rewards, known at run time.
template <GroupBaseline Inner>
struct RewardAverage<std::dynamic_extent, Inner> {
  static constexpr std::size_t num_rewards = std::dynamic_extent;

  /// The rule applied to the averaged reward. Default GroupNormalized{}.
  Inner inner{};
  /// One weight per reward, >= 0, not all 0; empty means equal weights. Default empty.
  std::vector<double> weights{};

  /// rewards: [K, N] -> out: [N]
  void compute(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) const {
    detail::group_advantages(rewards, group_size, out, plan(), "grpo::RewardAverage");
  }
  /// rewards: [K, N] on CPU/CUDA -> [N] float32 on the same device, no host sync.
  [[nodiscard]] at::Tensor compute(const at::Tensor& rewards, std::int64_t group_size) const {
    return detail::group_advantages(rewards, group_size, plan(), std::dynamic_extent, "grpo::RewardAverage");
  }

 private:
  [[nodiscard]] detail::GroupAdvantagePlan plan() const {
    return {inner.group_rule(), RewardCombination::average_then_normalize, weights};
  }
};

static_assert(AdvantageEstimator<RewardAverage<3>> && TensorAdvantageEstimator<RewardAverage<3>>);
static_assert(AdvantageEstimatorFor<RewardAverage<3>, 3> && !AdvantageEstimatorFor<RewardAverage<3>, 4>);
static_assert(AdvantageEstimator<RewardAverage<>> && TensorAdvantageEstimator<RewardAverage<>>);

}  // namespace grpo
