#pragma once
// The AdvantageEstimator concepts: turn a [K, N] reward table into one advantage per sample
// (AdvantageEstimator on the host, TensorAdvantageEstimator on a device, AdvantageEstimatorFor a
// given K), and GroupBaseline, the per-group rule a multi-reward estimator is built from.

#include <ATen/core/Tensor.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "grpo/core/group_rule.hpp"  // GroupRule: the value a GroupBaseline returns
#include "grpo/core/reward_table.hpp"
#include "grpo/customization_points.hpp"  // estimator_rewards (the num_rewards hook)

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

/// An estimator that accepts exactly K rewards (K known at compile time, as RewardSet gives it):
/// grpo::estimator_rewards<E> (E::num_rewards, customization_points.hpp) is K or
/// std::dynamic_extent.
///
/// Satisfied by: grpo::GroupNormalized, grpo::DrGrpo, grpo::LeaveOneOut for K = 1;
/// grpo::Balanced<K>, grpo::RewardAverage<K> for their K; Balanced<>, RewardAverage<> for any K.
template <class E, std::size_t K>
concept AdvantageEstimatorFor =
    AdvantageEstimator<E> && (estimator_rewards<E> == K || estimator_rewards<E> == std::dynamic_extent);

/// A single-reward estimator that can serve as the inner rule of grpo::Balanced and
/// grpo::RewardAverage: it says which GroupRule (core/group_rule.hpp) it applies, and the
/// multi-reward estimator applies that rule per reward.
///
/// Satisfied by: grpo::GroupNormalized, grpo::DrGrpo, grpo::LeaveOneOut.
template <class B>
concept GroupBaseline = requires(const B& b) {
  { b.group_rule() } -> std::same_as<GroupRule>;
};

namespace archetypes {
/// The least an AdvantageEstimator must provide.
struct MinimalAdvantage {
  void compute(RewardTableView<const float>, std::size_t, std::span<float>) const {}
};

/// The least a TensorAdvantageEstimator must provide.
struct MinimalTensorAdvantage {
  at::Tensor compute(const at::Tensor&, std::int64_t) const { return {}; }
};

/// The least a GroupBaseline must provide.
struct MinimalGroupBaseline {
  GroupRule group_rule() const { return {}; }
};
}  // namespace archetypes

static_assert(AdvantageEstimator<archetypes::MinimalAdvantage>);
static_assert(TensorAdvantageEstimator<archetypes::MinimalTensorAdvantage>);
static_assert(GroupBaseline<archetypes::MinimalGroupBaseline>);

}  // namespace grpo
