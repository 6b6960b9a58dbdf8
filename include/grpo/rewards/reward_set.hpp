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

#include <fmt/format.h>

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
#include <vector>

#include "grpo/concepts/reward.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/customization_points.hpp"

namespace grpo {

namespace detail {

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
      if (result[k].empty()) result[k] = fmt::format("reward{}", k);
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
      throw Error(fmt::format("RewardSet::score: expected a reward table of shape [{}, {}] (rewards x samples), found "
                              "[{}, {}]{}; make it with grpo::RewardTable(rewards.size, batch.size())",
                              size, batch.size(), out.rewards, out.samples,
                              out.data == nullptr ? " without storage" : ""));
    }
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (score_one<I>(batch, out.row(I)), ...);
    }(std::index_sequence_for<Rs...>{});
  }

  /// Every reward's per-sample metrics (grpo::sample_metric_names), reward by reward: M names.
  [[nodiscard]] std::vector<SampleMetricName> sample_metric_names() const {
    std::vector<SampleMetricName> names;
    std::apply([&](const auto&... r) { (append(names, grpo::sample_metric_names(r)), ...); }, rewards_);
    return names;
  }

  /// The per-sample metrics of every sample: out [M, N] metric-major (row m = metric m of
  /// sample_metric_names()), M * batch.size() values.
  void sample_metrics(SampleBatch batch, std::span<double> out) const {
    std::size_t first = 0;  // this reward's first row
    std::vector<double> values;
    auto one = [&](const auto& r) {
      const std::size_t m = grpo::sample_metric_names(r).size();
      values.resize(m);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        grpo::sample_metrics(r, batch[i], std::span<double>(values));
        for (std::size_t j = 0; j < m; ++j) out[(first + j) * batch.size() + i] = values[j];
      }
      first += m;
    };
    std::apply([&](const auto&... r) { (one(r), ...); }, rewards_);
  }

 private:
  static void append(std::vector<SampleMetricName>& to, std::span<const SampleMetricName> more) {
    to.insert(to.end(), more.begin(), more.end());
  }

  template <std::size_t I>
  void score_one(SampleBatch batch, std::span<float> row) {
    grpo::score(std::get<I>(rewards_), batch, row);
    if (non_finite == NonFiniteRewards::keep) return;
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (!std::isfinite(row[i])) {
        std::string name(grpo::reward_name(std::get<I>(rewards_)));
        if (name.empty()) name = fmt::format("reward{}", I);
        throw Error(fmt::format("RewardSet::score: reward \"{}\" (#{}) gave {} for sample {}; rewards must be finite "
                                "numbers, fix or clamp that reward",
                                name, I, row[i], i));
      }
    }
  }

  std::tuple<Rs...> rewards_;
};

template <class... Rs>
RewardSet(Rs...) -> RewardSet<Rs...>;

static_assert(RewardTableScorer<RewardSet<archetypes::MinimalReward>>);

}  // namespace grpo
