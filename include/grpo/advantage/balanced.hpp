#pragma once
// grpo::Balanced: LongWriter-Zero's advantage balancing (method.md Eq. 5; "GDPO", TRL's
// "normalize then sum"): apply the inner rule to each reward within its group, then take the
// weighted mean,
//   A_i = sum_k w_k a_ik / sum_k w_k,    a_ik = Inner(reward k) within i's group,
// so no reward dominates through its scale. The paper: three rewards, equal weights.
// A sample with any non-finite reward (of non-zero weight) gets A_i = 0; its finite rewards still
// count in their groups' statistics.

#include <ATen/core/Tensor.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "grpo/advantage/detail/group_advantages_host.hpp"
#include "grpo/advantage/detail/group_advantages_tensor.hpp"
#include "grpo/advantage/group_normalized.hpp"
#include "grpo/core/group_rule.hpp"
#include "grpo/concepts/advantage.hpp"
#include "grpo/core/reward_table.hpp"

namespace grpo {

namespace detail {
template <std::size_t K>
constexpr std::array<double, K> equal_weights() {
  std::array<double, K> w{};
  w.fill(1.0);
  return w;
}
}  // namespace detail

/// Normalise each of K rewards within its group with Inner, then average with `weights`.
/// K = std::dynamic_extent takes any number of rewards (weights as a vector, empty = equal).
template <std::size_t K = std::dynamic_extent, GroupBaseline Inner = GroupNormalized>
struct Balanced {
  static_assert(K > 0, "grpo::Balanced<K>: K must be at least 1");
  static constexpr std::size_t num_rewards = K;

  /// The per-reward rule. Default GroupNormalized{} (sample std, epsilon 1e-6).
  Inner inner{};
  /// Relative weight of each reward, >= 0, not all 0; normalised by their sum. Default all 1.
  std::array<double, K> weights = detail::equal_weights<K>();

  /// rewards: [K, N] -> out: [N]
  void compute(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) const {
    detail::check_reward_count(rewards.rewards, K, "grpo::Balanced");
    detail::group_advantages(rewards, group_size, out, plan(), "grpo::Balanced");
  }
  /// rewards: [K, N] on CPU/CUDA -> [N] float32 on the same device, no host sync.
  [[nodiscard]] at::Tensor compute(const at::Tensor& rewards, std::int64_t group_size) const {
    return detail::group_advantages(rewards, group_size, plan(), K, "grpo::Balanced");
  }

 private:
  [[nodiscard]] detail::GroupAdvantagePlan plan() const {
    return {inner.group_rule(), RewardCombination::normalize_then_average, weights};
  }
};

/// Balanced over any number of rewards, known at run time.
template <GroupBaseline Inner>
struct Balanced<std::dynamic_extent, Inner> {
  static constexpr std::size_t num_rewards = std::dynamic_extent;

  /// The per-reward rule. Default GroupNormalized{} (sample std, epsilon 1e-6).
  Inner inner{};
  /// One weight per reward, >= 0, not all 0; empty means equal weights. Default empty.
  std::vector<double> weights{};

  /// rewards: [K, N] -> out: [N]
  void compute(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) const {
    detail::group_advantages(rewards, group_size, out, plan(), "grpo::Balanced");
  }
  /// rewards: [K, N] on CPU/CUDA -> [N] float32 on the same device, no host sync.
  [[nodiscard]] at::Tensor compute(const at::Tensor& rewards, std::int64_t group_size) const {
    return detail::group_advantages(rewards, group_size, plan(), std::dynamic_extent, "grpo::Balanced");
  }

 private:
  [[nodiscard]] detail::GroupAdvantagePlan plan() const {
    return {inner.group_rule(), RewardCombination::normalize_then_average, weights};
  }
};

static_assert(AdvantageEstimator<Balanced<3>> && TensorAdvantageEstimator<Balanced<3>>);
static_assert(AdvantageEstimatorFor<Balanced<3>, 3> && !AdvantageEstimatorFor<Balanced<3>, 2>);
static_assert(AdvantageEstimator<Balanced<>> && TensorAdvantageEstimator<Balanced<>>);
static_assert(AdvantageEstimatorFor<Balanced<>, 5>);

}  // namespace grpo
