#pragma once
// The Reward concepts: what scores samples (Reward, NamedReward), a compile-time list of them
// (RewardList), and what scores a whole [K, N] reward table (RewardTableScorer).

#include <array>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "grpo/core/reward_table.hpp"
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
///
/// Satisfied by: grpo::LengthReward, grpo::FormatReward, grpo::WritingReward, and any Reward with
/// `std::string_view name() const` or a reward_traits<R>::name.
template <class R>
concept NamedReward = Reward<R> && (detail::HasNameMember<R> || detail::HasRewardTraitsName<R>);

/// True when every type is a grpo::Reward: what RewardSet<Rs...> requires (RewardSet names the
/// first type that is not one in a sentence, rewards/reward_set.hpp).
///
/// Satisfied by: any pack of Rewards, the empty pack included.
template <class... Rs>
concept RewardList = (Reward<Rs> && ...);

/// Scores a batch into a [K, N] reward table, row k = reward k, with K a compile-time constant:
/// what the trainer's score() phase needs.
///   R::size                    K, the number of rewards (rows)
///   score(batch, out)          fills `out`, [K, batch.size()]
///   names()                    the K names the rewards are logged under
///
/// Satisfied by: grpo::RewardSet<Rs...>, and any type shaped like it.
template <class R>
concept RewardTableScorer = requires(R& r, SampleBatch batch, RewardTableView<float> out) {
  { R::size } -> std::convertible_to<std::size_t>;
  r.score(batch, out);
  { r.names() };
};

namespace archetypes {
/// The least a Reward must provide: a per-sample call returning a float.
struct MinimalReward {
  float operator()(const Sample&) const { return 0.0f; }
};

/// The least a RewardTableScorer must provide: one reward (K = 1).
struct MinimalRewardTableScorer {
  static constexpr std::size_t size = 1;
  void score(SampleBatch, RewardTableView<float>) {}
  std::array<std::string, size> names() const { return {}; }
};
}  // namespace archetypes

static_assert(Reward<archetypes::MinimalReward>);
static_assert(RewardList<archetypes::MinimalReward, archetypes::MinimalReward>);
static_assert(RewardTableScorer<archetypes::MinimalRewardTableScorer>);

}  // namespace grpo
