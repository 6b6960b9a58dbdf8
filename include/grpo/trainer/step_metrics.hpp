#pragma once
// grpo::StepMetrics: what one GRPO step reports, as named fields. One row of metrics.jsonl is
// StepMetrics::to_json(); the TensorBoard scalars are its numeric leaves (tensorboard_scalars()),
// so both always say the same thing.
//
//   StepSamples   the step's per-sample numbers over every rank, in global order:
//                 rewards [K, N], advantages [N], completion tokens, truncation, and the rewards'
//                 own per-sample metrics [M, N] (grpo::sample_metrics, customization_points.hpp)
//   UpdateStats   what update() measured (loss, clipping, KL, entropy, sampler mismatch, norms)
//   StepMetrics   both summarised, with times, memory peaks and dynamic sampling's counts

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "grpo/advantage/reward_statistics.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/customization_points.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/trainer/memory.hpp"
#include "grpo/trainer/rollout.hpp"
#include "grpo/trainer/update_stats.hpp"

namespace grpo {

/// DAPO's dynamic sampling in a step, over every rank (trainer/dynamic_sampling.hpp).
struct DynamicSamplingStats {
  std::int64_t rounds = 0;        ///< batches of prompts drawn
  double groups_drawn = 0;        ///< groups rolled out in those rounds
  double groups_with_signal = 0;  ///< of them, groups whose advantages are not all 0
  double groups_trained = 0;      ///< groups kept for the update (<= prompts_per_step)
};

/// Wall-clock seconds of the step's phases.
struct StepTimes {
  double sample_s = 0.0;  ///< rollout (every dynamic-sampling round)
  double score_s = 0.0;   ///< rewards and advantages
  double update_s = 0.0;  ///< selection, log-probs, backward, optimizer
  [[nodiscard]] double step_s() const { return sample_s + score_s + update_s; }
};

/// The step's per-sample numbers over every rank, in global order (N samples, K rewards, M metrics).
struct StepSamples {
  RewardTable rewards;                         ///< [K, N]
  std::vector<float> advantages;               ///< [N]
  std::vector<double> completion_tokens;       ///< [N]
  std::vector<double> truncated;               ///< [N] 1 for a completion cut at max_new_tokens
  std::vector<SampleMetricName> metric_names;  ///< [M]
  std::vector<double> metrics;                 ///< [M, N] metric-major
  double groups = 0;                           ///< prompts (groups) of the step
  double zero_signal_groups = 0;               ///< groups whose advantages are all 0

  /// This rank's numbers (`metrics`: [M, n] for its n samples), gathered from every rank when
  /// `comm` is given (a world of one otherwise) and put in global order by Rollout::global_group.
  static StepSamples gather(const Rollout& r, const RewardTable& table, std::span<const float> adv,
                            std::vector<SampleMetricName> names, std::span<const double> metrics,
                            std::int64_t zero_signal_groups, Communicator* comm) {
    const auto K = static_cast<std::int64_t>(table.rewards());
    const auto M = static_cast<std::int64_t>(names.size());
    const std::int64_t F = K + M + 4;  // rewards, metrics, advantage, tokens, truncated, global position
    const auto G = static_cast<std::size_t>(r.group_size);
    const auto n = static_cast<std::int64_t>(r.generations.size());
    at::Tensor local = at::zeros({n, F}, at::kDouble);
    double* row = local.data_ptr<double>();
    for (std::int64_t i = 0; i < n; ++i, row += F) {
      const auto s = static_cast<std::size_t>(i);
      for (std::int64_t k = 0; k < K; ++k) row[k] = table.row(static_cast<std::size_t>(k))[s];
      for (std::int64_t m = 0; m < M; ++m) row[K + m] = metrics[static_cast<std::size_t>(m * n + i)];
      row[K + M] = adv[s];
      row[K + M + 1] = static_cast<double>(r.generations[s].ids.size());
      row[K + M + 2] = r.samples[s].truncated ? 1.0 : 0.0;
      row[K + M + 3] = static_cast<double>(r.global_group(s / G) * G + s % G);
    }
    std::vector<double> counts{static_cast<double>(r.prompts.size()), static_cast<double>(zero_signal_groups)};
    if (comm != nullptr && comm->world_size() > 1) {
      local = all_gather_rows(*comm, local.to(comm->device())).cpu();
      local = local.index_select(0, local.select(1, F - 1).argsort()).contiguous();  // global order
      counts = all_reduce_sum(*comm, std::move(counts));
    }
    StepSamples out;
    const auto N = static_cast<std::size_t>(local.size(0));
    out.rewards = RewardTable(static_cast<std::size_t>(K), N);
    out.metric_names = std::move(names);
    out.metrics.resize(static_cast<std::size_t>(M) * N);
    const double* v = local.data_ptr<double>();
    for (std::size_t i = 0; i < N; ++i, v += F) {
      for (std::size_t k = 0; k < static_cast<std::size_t>(K); ++k) out.rewards.row(k)[i] = static_cast<float>(v[k]);
      for (std::size_t m = 0; m < static_cast<std::size_t>(M); ++m) out.metrics[m * N + i] = v[K + static_cast<std::int64_t>(m)];
      out.advantages.push_back(static_cast<float>(v[K + M]));
      out.completion_tokens.push_back(v[K + M + 1]);
      out.truncated.push_back(v[K + M + 2]);
    }
    out.groups = counts[0];
    out.zero_signal_groups = counts[1];
    return out;
  }
};

/// The per-sample metrics of a reward set's rewards (grpo::sample_metrics) on `batch`: their names
/// [M] and values [M, N]; none for a scorer that reports none.
template <class Rewards>
std::pair<std::vector<SampleMetricName>, std::vector<double>> reward_sample_metrics(const Rewards& rewards,
                                                                                    SampleBatch batch) {
  std::pair<std::vector<SampleMetricName>, std::vector<double>> out;
  if constexpr (detail::ReportsSampleMetrics<Rewards>) {
    out.first = rewards.sample_metric_names();
    out.second.resize(out.first.size() * batch.size());
    rewards.sample_metrics(batch, out.second);
  }
  return out;
}

/// Each peak's largest value over every rank (`comm` null: this process's).
inline MemoryPeaks max_over_ranks(MemoryPeaks m, Communicator* comm) {
  if (comm == nullptr || comm->world_size() == 1) return m;
  const auto peaks = all_reduce_max(*comm, {m.host_rss_peak_gib, m.cuda_peak_allocated_gib.value_or(0.0),
                                            m.cuda_peak_reserved_gib.value_or(0.0)});
  m.host_rss_peak_gib = peaks[0];
  if (m.cuda_peak_allocated_gib) m.cuda_peak_allocated_gib = peaks[1];
  if (m.cuda_peak_reserved_gib) m.cuda_peak_reserved_gib = peaks[2];
  return m;
}

/// Mean, (population) std, min and max of a list of numbers; all 0 for none.
struct Summary {
  double mean = 0.0, std = 0.0, min = 0.0, max = 0.0;

  template <class T>
  static Summary of(std::span<const T> values) {
    Summary s;
    if (values.empty()) return s;
    double sum = 0, sq = 0;
    s.min = s.max = static_cast<double>(values[0]);
    for (T x : values) {
      const auto v = static_cast<double>(x);
      sum += v, sq += v * v, s.min = std::min(s.min, v), s.max = std::max(s.max, v);
    }
    const auto n = static_cast<double>(values.size());
    s.mean = sum / n;
    s.std = std::sqrt(std::max(0.0, sq / n - s.mean * s.mean));
    return s;
  }
};

/// The equal-weight composite of the rewards' means: metrics.jsonl's "reward" and eval's.
inline double composite_reward(std::span<const RewardStatistics> stats) {
  double sum = 0.0;
  for (const auto& s : stats) sum += s.mean;
  return stats.empty() ? 0.0 : sum / static_cast<double>(stats.size());
}

/// One step's report.
struct StepMetrics {
  std::int64_t step = 0;             ///< 1-based number of the step described
  std::uint64_t data_position = 0;   ///< prompts consumed after it
  std::vector<std::string> reward_names;        ///< [K]
  std::vector<RewardStatistics> rewards;        ///< [K] per reward over the step's samples
  double reward = 0.0;                          ///< composite_reward(rewards)
  Summary advantage;
  double zero_variance_group_fraction = 0.0;    ///< groups with no signal / groups (of every drawn group with dynamic sampling)
  Summary completion_tokens;                    ///< per completion
  double completion_tokens_sum = 0.0;
  double truncated_fraction = 0.0;
  std::vector<std::pair<std::string, double>> sample_metric_means;  ///< (mean_name, mean) per metric of the rewards
  UpdateStats update;
  StepTimes time;
  MemoryPeaks memory;
  std::optional<DynamicSamplingStats> dynamic_sampling;

  /// Summarises the step's samples (group_size G) with the update's and times' numbers.
  static StepMetrics summarize(const StepSamples& s, std::span<const std::string> names, std::size_t group_size) {
    StepMetrics m;
    m.reward_names.assign(names.begin(), names.end());
    m.rewards = reward_statistics(s.rewards.view(), group_size);
    m.reward = composite_reward(m.rewards);
    m.advantage = Summary::of(std::span<const float>(s.advantages));
    m.zero_variance_group_fraction = s.zero_signal_groups / std::max(1.0, s.groups);
    m.completion_tokens = Summary::of(std::span<const double>(s.completion_tokens));
    for (double t : s.completion_tokens) m.completion_tokens_sum += t;
    const double count = static_cast<double>(std::max<std::size_t>(1, s.completion_tokens.size()));
    double truncated = 0.0;
    for (double t : s.truncated) truncated += t;
    m.truncated_fraction = truncated / count;
    const std::size_t N = s.completion_tokens.size();
    for (std::size_t j = 0; j < s.metric_names.size(); ++j) {
      double sum = 0.0;
      for (std::size_t i = 0; i < N; ++i) sum += s.metrics[j * N + i];
      m.sample_metric_means.emplace_back(std::string(s.metric_names[j].mean_name), sum / count);
    }
    return m;
  }

  /// (name, mean) for the progress line: the composite first, then each reward ("_reward" cut).
  [[nodiscard]] std::vector<std::pair<std::string, double>> progress_rewards() const {
    std::vector<std::pair<std::string, double>> shown{{"reward", reward}};
    for (std::size_t k = 0; k < rewards.size(); ++k) {
      const auto cut = reward_names[k].find("_reward");
      shown.emplace_back(cut == std::string::npos ? reward_names[k] : reward_names[k].substr(0, cut), rewards[k].mean);
    }
    return shown;
  }

  /// Sampled tokens per second of the whole step.
  [[nodiscard]] double tokens_per_second() const {
    return time.step_s() > 0 ? completion_tokens_sum / time.step_s() : 0.0;
  }

  /// The metrics.jsonl row.
  [[nodiscard]] nlohmann::json to_json() const {
    nlohmann::json row;
    row["step"] = step;
    row["data_position"] = data_position;
    for (std::size_t k = 0; k < rewards.size(); ++k) {
      const auto& s = rewards[k];
      row["rewards"][reward_names[k]] = {{"mean", s.mean}, {"std", s.std_dev}, {"min", s.min}, {"max", s.max},
                                         {"zero_std_group_fraction", s.zero_variance_fraction},
                                         {"non_finite", s.non_finite}};
    }
    row["reward"] = reward;
    row["advantage"] = {{"mean", advantage.mean}, {"std", advantage.std}, {"min", advantage.min}, {"max", advantage.max}};
    row["zero_variance_group_fraction"] = zero_variance_group_fraction;
    row["completion_tokens"] = {{"mean", completion_tokens.mean}, {"max", completion_tokens.max},
                                {"sum", completion_tokens_sum}};
    row["truncated_fraction"] = truncated_fraction;
    for (const auto& [name, value] : sample_metric_means) row[name] = value;
    const UpdateStats& u = update;
    row["loss"] = u.loss;
    row["clip_fraction"] = u.clip_fraction;
    row["approx_kl"] = u.approx_kl;
    row["ref_kl"] = u.ref_kl;
    row["entropy"] = u.entropy;
    row["sampler_mismatch"] = {{"prob_diff_mean", u.sampler_prob_diff_mean},
                               {"prob_diff_max", u.sampler_prob_diff_max},
                               {"logprob_diff_mean", u.sampler_logprob_diff_mean},
                               {"tokens", u.sampler_compared_tokens}};
    row["grad_norm"] = u.grad_norm;
    row["lr"] = u.lr;
    row["updates"] = u.updates;
    row["skipped_updates"] = u.skipped_updates;
    row["trained_samples"] = u.trained_samples;
    row["trained_tokens"] = u.trained_tokens;
    row["time"] = {{"sample_s", time.sample_s}, {"score_s", time.score_s}, {"update_s", time.update_s},
                   {"step_s", time.step_s()}};
    row["tokens_per_second"] = tokens_per_second();
    if (dynamic_sampling) {
      row["dynamic_sampling"] = {{"rounds", dynamic_sampling->rounds},
                                 {"groups_drawn", dynamic_sampling->groups_drawn},
                                 {"groups_with_signal", dynamic_sampling->groups_with_signal},
                                 {"groups_trained", dynamic_sampling->groups_trained}};
    }
    row["memory"] = memory.to_json();
    return row;
  }
};

/// The TensorBoard scalars of a step: every numeric leaf of to_json() but "step", tagged by its
/// path ("rewards/length/mean", "time/step_s"), in the row's key order.
inline std::vector<std::pair<std::string, double>> tensorboard_scalars(const StepMetrics& m) {
  std::vector<std::pair<std::string, double>> out;
  auto walk = [&](auto& self, const nlohmann::json& j, const std::string& prefix) -> void {
    for (const auto& [key, value] : j.items()) {
      const std::string tag = prefix.empty() ? key : prefix + "/" + key;
      if (value.is_object()) self(self, value, tag);
      else if (value.is_number() && tag != "step") out.emplace_back(tag, value.template get<double>());
    }
  };
  walk(walk, m.to_json(), "");
  return out;
}

}  // namespace grpo
