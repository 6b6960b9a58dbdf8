#pragma once
// The tensor path of every group advantage estimator: [K, N] rewards -> [N] advantages on the
// rewards' device, never synchronising with the host.
//
//   CPU tensors         -> the host path over the tensor's float32 memory, one thread (faster
//                          than ~30 small multi-threaded ATen kernels up to at least 8192 x 32 x 3,
//                          see docs/benchmarks/rl-math.md)
//   CUDA, kernel linked -> grpo::cuda's fused kernel (one launch, see cuda/kernels.cu)
//   anything else       -> group_advantages_aten: masked ATen ops (where, no boolean indexing)

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/where.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "grpo/advantage/detail/group_advantages_host.hpp"
#include "grpo/core/error.hpp"
#include "grpo/cuda/kernels.hpp"

namespace grpo::detail {

// x: [M, G] float64 -> [M, G] float64: the rule per row, 0 where x is not finite.
inline at::Tensor group_rule_aten(const at::Tensor& x, const GroupRule& rule) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  const at::Tensor finite = at::isfinite(x);
  const at::Tensor count = finite.sum({1}, true, at::kDouble);                          // [M, 1]
  const at::Tensor mean = at::where(finite, x, 0.0).sum({1}, true).div(count.clamp_min(1.0));
  const at::Tensor deviation = at::where(finite, x.sub(mean), 0.0);                     // [M, G]
  const at::Tensor low = at::where(finite, x, inf).amin({1}, true);
  const at::Tensor high = at::where(finite, x, -inf).amax({1}, true);
  const at::Tensor constant = count.le(1.0).logical_or_(low.eq(high));                  // [M, 1]
  at::Tensor scale;
  switch (rule.kind) {
    case GroupRule::Kind::center:
      scale = at::ones_like(count);
      break;
    case GroupRule::Kind::leave_one_out:
      scale = count.div(count.sub(1.0).clamp_min(1.0));
      break;
    case GroupRule::Kind::normalize:
    default: {
      const at::Tensor dof = rule.std_kind == StdKind::sample ? count.sub(1.0) : count;
      scale = deviation.square().sum({1}, true).div(dof.clamp_min(1.0)).sqrt().add(rule.epsilon).reciprocal();
    }
  }
  return deviation.mul(at::where(constant, 0.0, scale));
}

/// The ATen implementation (any device, no host sync). table: [K, N] -> [N] float32.
/// `weights` normalised to sum 1 (normalized_weights).
inline at::Tensor group_advantages_aten(const at::Tensor& table, std::int64_t group_size, const GroupRule& rule,
                                        RewardCombination combination, const std::vector<double>& weights) {
  const at::Tensor x = table.detach().to(at::kDouble);
  const std::int64_t samples = x.size(1);
  const std::int64_t groups = samples / group_size;
  at::Tensor result;
  if (combination == RewardCombination::average_then_normalize) {
    at::Tensor combined;
    for (std::size_t k = 0; k < weights.size(); ++k) {
      if (weights[k] == 0.0) continue;
      const at::Tensor term = x.select(0, static_cast<std::int64_t>(k)).mul(weights[k]);
      combined = combined.defined() ? combined.add(term) : term;
    }
    result = group_rule_aten(combined.view({groups, group_size}), rule).view({samples});
  } else {
    at::Tensor sum;
    at::Tensor bad;
    for (std::size_t k = 0; k < weights.size(); ++k) {
      if (weights[k] == 0.0) continue;
      const at::Tensor row = x.select(0, static_cast<std::int64_t>(k));
      const at::Tensor a = group_rule_aten(row.view({groups, group_size}), rule).view({samples}).mul(weights[k]);
      const at::Tensor row_bad = at::isfinite(row).logical_not();
      sum = sum.defined() ? sum.add(a) : a;
      bad = bad.defined() ? bad.logical_or(row_bad) : row_bad;
    }
    result = at::where(bad, 0.0, sum);
  }
  return result.to(at::kFloat);
}

inline GroupAdvantageParams kernel_params(const GroupRule& rule, RewardCombination combination,
                                          const std::vector<double>& weights) {
  GroupAdvantageParams p;
  p.rule_kind = rule.kind == GroupRule::Kind::normalize ? 0 : rule.kind == GroupRule::Kind::center ? 1 : 2;
  p.sample_std = rule.std_kind == StdKind::sample;
  p.epsilon = rule.epsilon;
  p.average_first = combination == RewardCombination::average_then_normalize;
  p.rewards = static_cast<int>(weights.size());
  for (std::size_t k = 0; k < weights.size(); ++k) p.weights[k] = weights[k];
  return p;
}

/// rewards: [K, N] (or [N] for K = 1) floating tensor on any device -> [N] float32 advantages.
/// expected_rewards: the estimator's K, or std::dynamic_extent for any.
inline at::Tensor group_advantages(const at::Tensor& rewards, std::int64_t group_size, const GroupAdvantagePlan& plan,
                                   std::size_t expected_rewards, const char* who) {
  if (!rewards.defined()) throw Error(std::string(who) + ": expected a [K, N] reward tensor, found an undefined tensor");
  if (rewards.dim() != 1 && rewards.dim() != 2)
    throw Error(fmt::format("{}: expected a [K, N] (or [N]) reward tensor, found {} dims", who, rewards.dim()));
  if (!at::isFloatingType(rewards.scalar_type()))
    throw Error(std::string(who) + ": expected floating-point rewards, found " +
                std::string(c10::toString(rewards.scalar_type())) + "; convert with .to(at::kFloat)");
  if (group_size <= 0) throw Error(fmt::format("{}: group_size must be >= 1, found {}", who, group_size));
  const at::Tensor table = rewards.dim() == 1 ? rewards.unsqueeze(0) : rewards;
  const auto k_rewards = static_cast<std::size_t>(table.size(0));
  const auto samples = static_cast<std::size_t>(table.size(1));
  if (expected_rewards != std::dynamic_extent) check_reward_count(k_rewards, expected_rewards, who);
  check_group_rule(plan.rule, who);
  check_group_shape(k_rewards, samples, static_cast<std::size_t>(group_size), who);
  const std::vector<double> weights = normalized_weights(plan.weights, k_rewards, who);

  if (table.is_cpu()) {
    const at::Tensor x = table.detach().to(at::kFloat).contiguous();
    at::Tensor out = at::empty({table.size(1)}, x.options());
    group_advantages_range(x.data_ptr<float>(), samples, active_rewards(plan.weights, k_rewards, who),
                           static_cast<std::size_t>(group_size), 0, samples / static_cast<std::size_t>(group_size),
                           out.data_ptr<float>(), plan.rule, plan.combination);
    return out;
  }
  if (samples == 0) return at::empty({0}, table.options().dtype(at::kFloat));
  const GroupAdvantageLauncher launch = cuda_kernels().group_advantage;
  if (table.is_cuda() && launch != nullptr && k_rewards <= static_cast<std::size_t>(kernel_max_rewards)) {
    const at::Tensor x = table.detach().to(at::kFloat).contiguous();
    at::Tensor out = at::empty({table.size(1)}, x.options());
    launch(x, out, group_size, kernel_params(plan.rule, plan.combination, weights));
    return out;
  }
  return group_advantages_aten(table, group_size, plan.rule, plan.combination, weights);
}

}  // namespace grpo::detail
