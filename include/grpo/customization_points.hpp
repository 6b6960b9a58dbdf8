#pragma once
// Every point where a user type plugs into grpo, in one place, each with a safe default.
//
//   grpo::score(r, batch, out)  how a reward scores a batch         (reward_traits<R>::score)
//   grpo::reward_name(r)        the name a reward is logged under  (reward_traits<R>::name)
//
// A reward can be any of:
//   - a type with a member `void score(std::span<const Sample>, std::span<float>)` (batched,
//     e.g. a reward model that wants the whole batch at once) and optionally `name()`;
//   - a callable `void(std::span<const Sample>, std::span<float>)` (batched lambda);
//   - a callable `R(const Sample&)` with R convertible to float (per-sample lambda).
// A type that fits none of these (a third-party scorer, say) specialises reward_traits:
//
//   template <> struct grpo::reward_traits<my::Scorer> {
//     static void score(my::Scorer& s, grpo::SampleBatch batch, std::span<float> out) { ... }
//     static std::string_view name(const my::Scorer&) { return "my_scorer"; }
//   };

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>

#include "grpo/core/sample.hpp"

namespace grpo {

/// Specialise to adapt a type that has neither a `score` member nor a call operator.
/// The primary template is empty; the defaults below apply when it is not specialised.
template <class R>
struct reward_traits {};

namespace detail {

template <class R>
concept HasRewardTraitsScore = requires(R& r, SampleBatch batch, std::span<float> out) {
  reward_traits<std::remove_cvref_t<R>>::score(r, batch, out);
};

template <class R>
concept HasScoreMember = requires(R& r, SampleBatch batch, std::span<float> out) {
  { r.score(batch, out) } -> std::same_as<void>;
};

template <class R>
concept BatchCallable = requires(R& r, SampleBatch batch, std::span<float> out) {
  { r(batch, out) } -> std::same_as<void>;
};

template <class R>
concept PerSampleCallable = requires(R& r, const Sample& s) {
  { r(s) } -> std::convertible_to<float>;
};

struct score_fn {
  template <class R>
    requires HasRewardTraitsScore<R> || HasScoreMember<R> || BatchCallable<R> || PerSampleCallable<R>
  void operator()(R& r, SampleBatch batch, std::span<float> out) const {
    if constexpr (HasRewardTraitsScore<R>) {
      reward_traits<std::remove_cvref_t<R>>::score(r, batch, out);
    } else if constexpr (HasScoreMember<R>) {
      r.score(batch, out);
    } else if constexpr (BatchCallable<R>) {
      r(batch, out);
    } else {
      for (std::size_t i = 0; i < batch.size(); ++i) out[i] = static_cast<float>(r(batch[i]));
    }
  }
};

template <class R>
concept HasRewardTraitsName = requires(const R& r) {
  { reward_traits<std::remove_cvref_t<R>>::name(r) } -> std::convertible_to<std::string_view>;
};

template <class R>
concept HasNameMember = requires(const R& r) {
  { r.name() } -> std::convertible_to<std::string_view>;
};

struct reward_name_fn {
  /// The reward's name, or "" when it has none (RewardSet then names it "reward<k>").
  template <class R>
  std::string_view operator()(const R& r) const {
    if constexpr (HasRewardTraitsName<R>) {
      return reward_traits<std::remove_cvref_t<R>>::name(r);
    } else if constexpr (HasNameMember<R>) {
      return r.name();
    } else {
      return {};
    }
  }
};

}  // namespace detail

/// Scores `batch` into `out` (out.size() == batch.size()), one float per sample.
inline constexpr detail::score_fn score{};
/// The name a reward is logged under; "" when the type gives none.
inline constexpr detail::reward_name_fn reward_name{};

}  // namespace grpo
