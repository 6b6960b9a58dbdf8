#pragma once
// Every point where a user type plugs into grpo, in one place, each with a safe default.
//
//   hook                            what it answers                         default
//   grpo::score(r, batch, out)      how a reward scores a batch             member score, else a call
//                                                                           operator (batched or per sample)
//   grpo::reward_name(r)            the name a reward is logged under       member name(), else ""
//   grpo::estimator_rewards<E>      the K an advantage estimator is built   E::num_rewards, else
//                                   for                                     std::dynamic_extent (any K)
//   grpo::target_source(p)          the name a target predictor answers     member source(), else "model"
//                                   under (LengthTarget::source)
//   policy.restore_weights(folder)  how load_checkpoint restores a policy   copy named_parameters() by
//                                   (concept grpo::SelfRestoringPolicy)     name from folder's safetensors
//   policy.parameter_copies(),      how a policy split over a tensor-       none: such a policy cannot
//   gather_whole, local_slice,      parallel group counts, saves and        be split (Trainer::distribute
//   parameter_slice, save_config    resumes (concept TensorParallelPolicy)  with a mesh of T > 1 refuses it)
//                                                                           nor write sharded checkpoints
//   grpo::sample_metric_names(r),   numbers a reward reports about each     none
//   grpo::sample_metrics(r, s, out) sample (metrics means, eval's columns)
//
// Rewards. A reward can be any of:
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
//
// Advantage estimators. An estimator built for exactly K rewards says so, and a RewardSet of
// another size is then rejected at compile time (grpo::AdvantageEstimatorFor):
//
//   struct MyTwoRewardEstimator { static constexpr std::size_t num_rewards = 2; ... };
//   template <> inline constexpr std::size_t grpo::estimator_rewards<their::Estimator> = 2;
//
// Target predictors. LengthTarget::source names the predictor that answered:
//
//   struct MyModelPredictor {
//     std::optional<grpo::WordRange> predict(std::string_view prompt) const { ... }
//     std::string_view source() const { return "my_model"; }  // without it: "model"
//   };
//
// A predictor that itself delegates (a TargetPredictorChain nested in another) reports who
// answered through `predict_with_source(prompt)` (concept grpo::SourcedTargetPredictor); without
// it, a chain records target_source() of the predictor it asked.
//
// Policies. load_checkpoint restores a CheckpointablePolicy by copying every named_parameters()
// tensor from the checkpoint's safetensors, by name and shape. A policy whose saved layout is not
// that (Qwen2Policy with LoRA adapters: folder/adapter) restores itself instead:
//
//   struct MyPolicy {  // ... a grpo::CheckpointablePolicy, plus:
//     void restore_weights(const std::filesystem::path& folder);  // folder = what save_pretrained wrote
//   };

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>

#include "grpo/concepts/detail/hooks.hpp"
#include "grpo/core/sample.hpp"

namespace grpo {

/// Specialise to adapt a type that has neither a `score` member nor a call operator.
/// The primary template is empty; the defaults below apply when it is not specialised.
template <class R>
struct reward_traits {};

namespace detail {

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

struct target_source_fn {
  /// The predictor's source() member, else "model".
  template <class P>
  constexpr std::string_view operator()(const P& p) const {
    if constexpr (HasSourceMember<P>) {
      return p.source();
    } else {
      return "model";
    }
  }
};

template <class E>
constexpr std::size_t declared_num_rewards() {
  if constexpr (DeclaresNumRewards<E>) {
    return static_cast<std::size_t>(E::num_rewards);
  } else {
    return std::dynamic_extent;
  }
}

}  // namespace detail

/// Scores `batch` into `out` (out.size() == batch.size()), one float per sample.
inline constexpr detail::score_fn score{};
/// The name a reward is logged under; "" when the type gives none.
inline constexpr detail::reward_name_fn reward_name{};
/// The name a target predictor answers under (LengthTarget::source): its source(), else "model".
inline constexpr detail::target_source_fn target_source{};

/// The number of rewards an advantage estimator is built for: E::num_rewards, or
/// std::dynamic_extent (any number fits) when E does not declare one. Specialise it for an
/// estimator you cannot edit (see the file comment).
template <class E>
inline constexpr std::size_t estimator_rewards = detail::declared_num_rewards<E>();

// ---- per-sample metrics: numbers a reward reports about each sample beside its score ----
//
//   grpo::sample_metric_names(r)         the metrics' names          (sample_metric_traits<R>::names)
//   grpo::sample_metrics(r, sample, out) one sample's values, in the order of the names
//
// The trainer reports each metric's mean over a step's samples (metrics.jsonl, TensorBoard, under
// `mean_name`), and `longwriter-zero eval` writes the values per sample (under `name`). Default:
// a reward reports none, so a trainer for another task shows no meaningless columns. A reward
// opts in with members
//   static constexpr std::array<grpo::SampleMetricName, M> sample_metric_names{{{"answer_words", "answer_words_mean"}}};
//   void sample_metrics(const grpo::Sample&, std::span<double> out) const;   // out.size() == M
// or, for a type it cannot change, by specialising
//   template <> struct grpo::sample_metric_traits<my::Scorer> {
//     static constexpr std::array<grpo::SampleMetricName, 1> names{{{"x", "x_mean"}}};
//     static void compute(const my::Scorer&, const grpo::Sample&, std::span<double> out);
//   };

/// A per-sample metric: its name on one sample, and the name of its mean over a step.
struct SampleMetricName {
  std::string_view name;
  std::string_view mean_name;
};

/// Specialise to give a type per-sample metrics without changing it; empty by default.
template <class R>
struct sample_metric_traits {};  // declared in concepts/detail/hooks.hpp

namespace detail {
struct sample_metric_names_fn {
  template <class R>
  std::span<const SampleMetricName> operator()(const R&) const {
    using T = std::remove_cvref_t<R>;
    if constexpr (HasSampleMetricTraits<T>) {
      return sample_metric_traits<T>::names;
    } else if constexpr (HasSampleMetricMembers<T>) {
      return T::sample_metric_names;
    } else {
      return {};
    }
  }
};

struct sample_metrics_fn {
  template <class R>
  void operator()(const R& r, const Sample& sample, std::span<double> out) const {
    using T = std::remove_cvref_t<R>;
    if constexpr (HasSampleMetricTraits<T>) {
      sample_metric_traits<T>::compute(r, sample, out);
    } else if constexpr (HasSampleMetricMembers<T>) {
      r.sample_metrics(sample, out);
    }
  }
};
}  // namespace detail

/// The names of the per-sample metrics a reward reports (empty: none).
inline constexpr detail::sample_metric_names_fn sample_metric_names{};
/// Fills `out` (one value per name of sample_metric_names(r)) for one sample.
inline constexpr detail::sample_metrics_fn sample_metrics{};

}  // namespace grpo
