#pragma once
// The detection concepts behind grpo/customization_points.hpp: each one asks whether a user type
// provides one form of one hook. The customization points dispatch on them (in the order the
// hooks' documentation gives), and RewardSet's readable failures use them to say which form a
// type almost matches. Reached through customization_points.hpp, which defines reward_traits.

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>

#include "grpo/core/sample.hpp"

namespace grpo {

/// Declared here for the detection concepts; the empty primary template and its documentation
/// are in grpo/customization_points.hpp.
template <class R>
struct reward_traits;
/// The same for per-sample metrics (customization_points.hpp).
template <class R>
struct sample_metric_traits;

namespace detail {

// ---- Reward: grpo::score ----

/// reward_traits<R> is specialised with `static void score(R&, SampleBatch, std::span<float>)`.
template <class R>
concept HasRewardTraitsScore = requires(R& r, SampleBatch batch, std::span<float> out) {
  reward_traits<std::remove_cvref_t<R>>::score(r, batch, out);
};

/// A member `void score(SampleBatch, std::span<float>)` (a batched reward, e.g. a reward model).
template <class R>
concept HasScoreMember = requires(R& r, SampleBatch batch, std::span<float> out) {
  { r.score(batch, out) } -> std::same_as<void>;
};

/// A call operator `void(SampleBatch, std::span<float>)` (a batched lambda).
template <class R>
concept BatchCallable = requires(R& r, SampleBatch batch, std::span<float> out) {
  { r(batch, out) } -> std::same_as<void>;
};

/// A call operator `float(const Sample&)`, or any result convertible to float (a per-sample lambda).
template <class R>
concept PerSampleCallable = requires(R& r, const Sample& s) {
  { r(s) } -> std::convertible_to<float>;
};

/// Some member named `score`, of any signature: a near miss when HasScoreMember is false.
template <class R>
concept HasSomeScoreMember = requires { &R::score; };

/// Callable on a Sample with any result: a near miss when PerSampleCallable is false.
template <class R>
concept CallableOnSample = std::invocable<R&, const Sample&>;

// ---- Reward: grpo::reward_name ----

/// reward_traits<R> is specialised with `static std::string_view name(const R&)`.
template <class R>
concept HasRewardTraitsName = requires(const R& r) {
  { reward_traits<std::remove_cvref_t<R>>::name(r) } -> std::convertible_to<std::string_view>;
};

/// A member `name()` convertible to std::string_view.
template <class R>
concept HasNameMember = requires(const R& r) {
  { r.name() } -> std::convertible_to<std::string_view>;
};

// ---- AdvantageEstimator: grpo::estimator_rewards ----

/// A static member `num_rewards` convertible to std::size_t: the K an estimator is built for.
template <class E>
concept DeclaresNumRewards = requires {
  { E::num_rewards } -> std::convertible_to<std::size_t>;
};

// ---- TargetPredictor: grpo::target_source ----

/// A member `source()` convertible to std::string_view: the name of a target predictor.
template <class P>
concept HasSourceMember = requires(const P& p) {
  { p.source() } -> std::convertible_to<std::string_view>;
};

/// R's per-sample metrics come from a sample_metric_traits<R> specialisation.
template <class R>
concept HasSampleMetricTraits = requires { sample_metric_traits<std::remove_cvref_t<R>>::names; };

/// R declares its per-sample metrics as members: sample_metric_names and sample_metrics(sample, out).
template <class R>
concept HasSampleMetricMembers = requires(const R& r, const Sample& s, std::span<double> out) {
  std::remove_cvref_t<R>::sample_metric_names;
  r.sample_metrics(s, out);
};

/// A reward set that reports its rewards' per-sample metrics (grpo::RewardSet does).
template <class R>
concept ReportsSampleMetrics = requires(const R& r, SampleBatch batch, std::span<double> out) {
  r.sample_metric_names();
  r.sample_metrics(batch, out);
};

}  // namespace detail
}  // namespace grpo
