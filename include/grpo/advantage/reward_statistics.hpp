#pragma once
// grpo::reward_statistics: per-reward numbers to log each step (what TRL reports as reward/mean,
// reward/std and frac_reward_zero_std, per reward function): mean, std, min, max over the batch,
// the fraction of groups with no learning signal, and the count of non-finite rewards.
// Definitions match the estimators: non-finite values are left out; a group is "zero variance"
// when its finite values are all equal or it has at most one (every estimator gives it A = 0).

#include <ATen/core/Tensor.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "grpo/advantage/detail/group_advantages_host.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reward_table.hpp"

namespace grpo {

/// Statistics of one reward over a batch (host numbers).
struct RewardStatistics {
  double mean = 0.0;     ///< mean of the finite values; 0 when there are none
  double std_dev = 0.0;  ///< sample std (n - 1) of the finite values; 0 when fewer than 2
  double min = 0.0;      ///< smallest finite value; 0 when there are none
  double max = 0.0;      ///< largest finite value; 0 when there are none
  double zero_variance_fraction = 0.0;  ///< groups whose finite values are all equal (or <= 1) / groups; 0 for no groups
  std::size_t non_finite = 0;           ///< NaN/inf values (left out; their samples get advantage 0)
};

/// The same statistics as device tensors, each [K] on the rewards' device (no host sync):
/// float64 except non_finite (int64).
struct RewardStatisticsTensors {
  at::Tensor mean;
  at::Tensor std_dev;
  at::Tensor min;
  at::Tensor max;
  at::Tensor zero_variance_fraction;
  at::Tensor non_finite;
};

/// rewards: [K, N], groups of group_size contiguous samples -> K statistics.
inline std::vector<RewardStatistics> reward_statistics(RewardTableView<const float> rewards, std::size_t group_size) {
  constexpr const char* who = "grpo::reward_statistics";
  detail::check_group_shape(rewards.rewards, rewards.samples, group_size, who);
  const std::size_t samples = rewards.samples;
  const std::size_t groups = samples / group_size;
  std::vector<RewardStatistics> result(rewards.rewards);
  for (std::size_t k = 0; k < rewards.rewards; ++k) {
    const float* row = rewards.row(k).data();
    RewardStatistics& s = result[k];
    double sum = 0.0;
    std::size_t finite = 0;
    std::size_t constant_groups = 0;
    float low = std::numeric_limits<float>::infinity();
    float high = -std::numeric_limits<float>::infinity();
    for (std::size_t g = 0; g < groups; ++g)
      constant_groups += detail::group_moments(row + g * group_size, group_size).constant ? 1 : 0;
    for (std::size_t i = 0; i < samples; ++i) {
      if (!std::isfinite(row[i])) continue;
      ++finite;
      sum += row[i];
      low = std::min(low, row[i]);
      high = std::max(high, row[i]);
    }
    s.non_finite = samples - finite;
    s.zero_variance_fraction = groups > 0 ? static_cast<double>(constant_groups) / static_cast<double>(groups) : 0.0;
    if (finite == 0) continue;
    s.mean = sum / static_cast<double>(finite);
    s.min = low;
    s.max = high;
    if (finite < 2) continue;
    double squares = 0.0;
    for (std::size_t i = 0; i < samples; ++i)
      if (std::isfinite(row[i])) squares += (row[i] - s.mean) * (row[i] - s.mean);
    s.std_dev = std::sqrt(squares / static_cast<double>(finite - 1));
  }
  return result;
}

/// rewards: [K, N] (or [N]) floating tensor on any device -> [K] statistics tensors, no host sync.
inline RewardStatisticsTensors reward_statistics(const at::Tensor& rewards, std::int64_t group_size) {
  constexpr const char* who = "grpo::reward_statistics";
  if (!rewards.defined() || (rewards.dim() != 1 && rewards.dim() != 2) || !at::isFloatingType(rewards.scalar_type()))
    throw Error(fmt::format("{}: expected a floating [K, N] (or [N]) reward tensor, found {}", who,
                            rewards.defined()
                                ? fmt::format("{}-dim {}", rewards.dim(), c10::toString(rewards.scalar_type()))
                                : std::string("an undefined tensor")));
  if (group_size <= 0) throw Error(fmt::format("{}: group_size must be >= 1, found {}", who, group_size));
  const at::Tensor x = (rewards.dim() == 1 ? rewards.unsqueeze(0) : rewards).detach().to(at::kDouble);  // [K, N]
  const std::int64_t k_rewards = x.size(0);
  const std::int64_t samples = x.size(1);
  detail::check_group_shape(static_cast<std::size_t>(k_rewards), static_cast<std::size_t>(samples),
                            static_cast<std::size_t>(group_size), who);
  const std::int64_t groups = samples / group_size;
  constexpr double inf = std::numeric_limits<double>::infinity();

  const at::Tensor finite = at::isfinite(x);
  const at::Tensor count = finite.sum({1}, false, at::kDouble);  // [K]
  RewardStatisticsTensors s;
  s.mean = at::where(finite, x, 0.0).sum({1}).div(count.clamp_min(1.0));
  const at::Tensor deviation = at::where(finite, x.sub(s.mean.unsqueeze(1)), 0.0);
  s.std_dev = at::where(count.ge(2.0), deviation.square().sum({1}).div(count.sub(1.0).clamp_min(1.0)).sqrt(), 0.0);
  const at::Tensor any = count.gt(0.0);
  if (samples > 0) {
    s.min = at::where(any, at::where(finite, x, inf).amin({1}), 0.0);
    s.max = at::where(any, at::where(finite, x, -inf).amax({1}), 0.0);
  } else {  // amin over an empty dim is an error
    s.min = at::zeros_like(count);
    s.max = at::zeros_like(count);
  }
  s.non_finite = finite.logical_not().sum({1}, false, at::kLong);

  // Per group [K, groups]: <= 1 finite value, or min == max.
  const at::Tensor grouped = x.view({k_rewards, groups, group_size});
  const at::Tensor grouped_finite = finite.view({k_rewards, groups, group_size});
  const at::Tensor group_count = grouped_finite.sum({2}, false, at::kDouble);
  const at::Tensor group_low = at::where(grouped_finite, grouped, inf).amin({2});
  const at::Tensor group_high = at::where(grouped_finite, grouped, -inf).amax({2});
  const at::Tensor constant = group_count.le(1.0).logical_or_(group_low.eq(group_high));
  s.zero_variance_fraction = constant.sum({1}, false, at::kDouble).div(static_cast<double>(std::max<std::int64_t>(groups, 1)));
  return s;
}

}  // namespace grpo
