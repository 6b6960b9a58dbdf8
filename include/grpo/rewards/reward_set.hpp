#pragma once
// RewardSet: a compile-time list of rewards scored into one [K, N] RewardTable.
//
//   grpo::RewardSet rewards{grpo::LengthReward{}, grpo::FormatReward{},
//                           [](const grpo::Sample& s) { return s.truncated ? 0.0f : 1.0f; }};
//   grpo::RewardTable table(rewards.size, batch.size());
//   rewards.score(batch, table.view());   // row k = reward k
//
// K = RewardSet::size is a constant, so advantage estimators and losses can be instantiated for
// exactly K rewards. A type that is not a grpo::Reward stops compilation with a sentence naming
// the requirement it misses.

#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "grpo/concepts/reward.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/customization_points.hpp"

namespace grpo {

namespace detail {

template <class R>
concept HasSomeScoreMember = requires { &R::score; };

template <class R>
concept CallableOnSample = std::invocable<R&, const Sample&>;

/// Compile-time diagnosis of why `R` is not a Reward; each failing check reads as a sentence.
template <class R>
constexpr bool diagnose_reward() {
  static_assert(std::move_constructible<R>,
                "grpo::RewardSet: a reward must be move-constructible, because the set stores its "
                "rewards by value; give the type a move (or copy) constructor, or wrap a reference "
                "in a lambda: [&r](const grpo::Sample& s) { return r(s); }");
  if constexpr (HasSomeScoreMember<R> && !HasScoreMember<R> && !BatchCallable<R> && !PerSampleCallable<R> &&
                !HasRewardTraitsScore<R>) {
    static_assert(HasScoreMember<R>,
                  "grpo::RewardSet: this reward has a member `score`, but it must be callable as "
                  "`void score(std::span<const grpo::Sample>, std::span<float>)` (return void, write "
                  "one float per sample into the second argument)");
  } else if constexpr (CallableOnSample<R> && !PerSampleCallable<R> && !BatchCallable<R> &&
                       !HasScoreMember<R> && !HasRewardTraitsScore<R>) {
    static_assert(PerSampleCallable<R>,
                  "grpo::RewardSet: this reward is callable on a grpo::Sample, but its result is "
                  "not convertible to float; return a float (or double) score per sample");
  } else {
    static_assert(Reward<R>,
                  "grpo::RewardSet: this type is not a grpo::Reward: it has no way to score a "
                  "batch. Give it `void score(std::span<const grpo::Sample>, std::span<float>)`, or "
                  "a call operator `float(const grpo::Sample&)` or "
                  "`void(std::span<const grpo::Sample>, std::span<float>)`, or specialise "
                  "grpo::reward_traits for it (grpo/customization_points.hpp)");
  }
  return Reward<R>;
}

}  // namespace detail

/// How RewardSet treats a NaN or infinite score (see RewardSet::non_finite).
enum class NonFiniteRewards : std::uint8_t {
  keep,    ///< pass it to the estimator: left out of its group, advantage 0, counted in statistics
  reject,  ///< throw grpo::Error naming the reward and the sample
};

/// True when every type is a grpo::Reward: what RewardSet<Rs...> requires.
template <class... Rs>
concept RewardList = (Reward<Rs> && ...);

/// K rewards known at compile time, scored together into a [K, N] table (row k = reward k).
/// Construct from the rewards themselves (class template argument deduction, lambdas included).
template <class... Rs>
class RewardSet {
  static_assert((detail::diagnose_reward<Rs>() && ...));

 public:
  /// K, the number of rewards (rows of the table).
  static constexpr std::size_t size = sizeof...(Rs);

  RewardSet() = default;
  explicit RewardSet(Rs... rewards) : rewards_(std::move(rewards)...) {}

  /// Reward I (0-based, in construction order).
  template <std::size_t I>
  [[nodiscard]] auto& get() noexcept {
    return std::get<I>(rewards_);
  }
  template <std::size_t I>
  [[nodiscard]] const auto& get() const noexcept {
    return std::get<I>(rewards_);
  }

  /// The names the rewards are logged under: grpo::reward_name(r), or "reward<k>" when empty.
  [[nodiscard]] std::array<std::string, size> names() const {
    std::array<std::string, size> result;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((result[I] = std::string(grpo::reward_name(std::get<I>(rewards_)))), ...);
    }(std::index_sequence_for<Rs...>{});
    for (std::size_t k = 0; k < size; ++k)
      if (result[k].empty()) result[k] = "reward" + std::to_string(k);
    return result;
  }

  /// What a NaN or infinite reward does. keep (default): it stays in the table, and every
  /// estimator leaves it out of its group's statistics and gives its sample advantage 0, while
  /// reward_statistics counts it (metrics "non_finite") — one bad score does not stop a run.
  /// reject: score() throws grpo::Error naming the reward and the sample.
  NonFiniteRewards non_finite = NonFiniteRewards::keep;

  /// Fills row k of `out` with reward k of every sample. `out` must be [size, batch.size()].
  /// Throws grpo::Error for a wrong shape, and for a NaN or infinity under NonFiniteRewards::reject.
  void score(SampleBatch batch, RewardTableView<float> out) {
    if (out.rewards != size || out.samples != batch.size() || (out.data == nullptr && size * batch.size() > 0)) {
      throw Error("RewardSet::score: expected a reward table of shape [" + std::to_string(size) + ", " +
                  std::to_string(batch.size()) + "] (rewards x samples), found [" + std::to_string(out.rewards) +
                  ", " + std::to_string(out.samples) + "]" + (out.data == nullptr ? " without storage" : "") +
                  "; make it with grpo::RewardTable(rewards.size, batch.size())");
    }
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (score_one<I>(batch, out.row(I)), ...);
    }(std::index_sequence_for<Rs...>{});
  }

 private:
  template <std::size_t I>
  void score_one(SampleBatch batch, std::span<float> row) {
    grpo::score(std::get<I>(rewards_), batch, row);
    if (non_finite == NonFiniteRewards::keep) return;
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (!std::isfinite(row[i])) {
        std::string name(grpo::reward_name(std::get<I>(rewards_)));
        if (name.empty()) name = "reward" + std::to_string(I);
        throw Error("RewardSet::score: reward \"" + name + "\" (#" + std::to_string(I) + ") gave " +
                    std::to_string(row[i]) + " for sample " + std::to_string(i) +
                    "; rewards must be finite numbers, fix or clamp that reward");
      }
    }
  }

  std::tuple<Rs...> rewards_;
};

template <class... Rs>
RewardSet(Rs...) -> RewardSet<Rs...>;

}  // namespace grpo
