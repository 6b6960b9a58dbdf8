#pragma once
// The AdvantageEstimator concepts: turn a [K, N] reward table into one advantage per sample.

#include <ATen/core/Tensor.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "grpo/core/reward_table.hpp"

namespace grpo {

/// Computes advantages on the host over contiguous ranges.
///   rewards: [K, N] (reward-major), N = groups x group_size, a group's samples contiguous
///   out:     [N] advantages, written in place
///
/// Satisfied by: grpo::GroupNormalized, grpo::DrGrpo, grpo::LeaveOneOut, grpo::Balanced,
/// grpo::RewardAverage, and any type with that `compute` member.
template <class E>
concept AdvantageEstimator =
    requires(const E& e, RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) {
      { e.compute(rewards, group_size, out) } -> std::same_as<void>;
    };

/// Computes advantages on a device without host synchronisation.
///   rewards: [K, N] float tensor on CPU or CUDA  ->  [N] float tensor on the same device
///
/// Satisfied by: the same estimators as AdvantageEstimator (they implement both paths).
template <class E>
concept TensorAdvantageEstimator = requires(const E& e, const at::Tensor& rewards, std::int64_t group_size) {
  { e.compute(rewards, group_size) } -> std::same_as<at::Tensor>;
};

/// The number of rewards an estimator is built for, or std::dynamic_extent when any number fits.
template <class E>
inline constexpr std::size_t estimator_rewards = [] {
  if constexpr (requires { E::num_rewards; }) return std::size_t{E::num_rewards};
  else return std::dynamic_extent;
}();

/// An estimator that accepts exactly K rewards (K known at compile time, as RewardSet gives it).
template <class E, std::size_t K>
concept AdvantageEstimatorFor =
    AdvantageEstimator<E> && (estimator_rewards<E> == K || estimator_rewards<E> == std::dynamic_extent);

namespace archetypes {
/// The least an AdvantageEstimator must provide.
struct MinimalAdvantage {
  void compute(RewardTableView<const float>, std::size_t, std::span<float>) const {}
};
}  // namespace archetypes

static_assert(AdvantageEstimator<archetypes::MinimalAdvantage>);

}  // namespace grpo
