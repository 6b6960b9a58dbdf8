#pragma once
// The Reward concept: anything grpo::score can call on a batch of samples.

#include <concepts>
#include <span>
#include <string_view>

#include "grpo/core/sample.hpp"
#include "grpo/customization_points.hpp"

namespace grpo {

/// A reward scores a batch of samples, one float per sample; higher is better.
///
/// Satisfied by: a type with `void score(std::span<const Sample>, std::span<float>)`, a callable
/// `void(std::span<const Sample>, std::span<float>)`, a callable `float(const Sample&)` (lambdas
/// included), or any type with a `reward_traits` specialisation (customization_points.hpp).
/// Rewards are moved into a RewardSet, so they must be move-constructible.
template <class R>
concept Reward = std::move_constructible<std::remove_cvref_t<R>> &&
                 requires(std::remove_cvref_t<R>& r, SampleBatch batch, std::span<float> out) {
                   grpo::score(r, batch, out);
                 };

/// A reward that also names itself for logging (member `name()` or reward_traits::name).
template <class R>
concept NamedReward = Reward<R> && (detail::HasNameMember<R> || detail::HasRewardTraitsName<R>);

namespace archetypes {
/// The least a Reward must provide: a per-sample call returning a float.
struct MinimalReward {
  float operator()(const Sample&) const { return 0.0f; }
};
}  // namespace archetypes

static_assert(Reward<archetypes::MinimalReward>);

}  // namespace grpo
