#pragma once
// grpo::LeaveOneOut: the RLOO baseline (Kool et al. 2019; Ahmadian et al. 2024): each sample is
// compared with the mean of the *other* finite rewards of its group,
//   A_i = r_i - (S - r_i) / (n - 1) = n / (n - 1) * (r_i - mean),   S = sum, n = finite count,
// an unbiased baseline because it does not depend on the sample itself.

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "grpo/advantage/detail/group_advantages_host.hpp"
#include "grpo/advantage/detail/group_advantages_tensor.hpp"
#include "grpo/core/group_rule.hpp"
#include "grpo/concepts/advantage.hpp"
#include "grpo/core/reward_table.hpp"

namespace grpo {

/// RLOO's leave-one-out advantage for one reward.
struct LeaveOneOut {
  static constexpr std::size_t num_rewards = 1;

  [[nodiscard]] GroupRule group_rule() const { return {.kind = GroupRule::Kind::leave_one_out}; }
  /// rewards: [1, N] -> out: [N]
  void compute(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) const {
    detail::check_reward_count(rewards.rewards, 1, "grpo::LeaveOneOut");
    detail::group_advantages(rewards, group_size, out, {.rule = group_rule()}, "grpo::LeaveOneOut");
  }
  /// rewards: [1, N] or [N] on CPU/CUDA -> [N] float32 on the same device, no host sync.
  [[nodiscard]] at::Tensor compute(const at::Tensor& rewards, std::int64_t group_size) const {
    return detail::group_advantages(rewards, group_size, {.rule = group_rule()}, 1, "grpo::LeaveOneOut");
  }
};

static_assert(AdvantageEstimator<LeaveOneOut> && TensorAdvantageEstimator<LeaveOneOut>);
static_assert(GroupBaseline<LeaveOneOut> && AdvantageEstimatorFor<LeaveOneOut, 1>);

}  // namespace grpo
