#pragma once
// grpo::DrGrpo: Dr.GRPO's advantage without the std ("Understanding R1-Zero-Like Training",
// Liu et al. 2025): A_i = r_i - mean(r_1..r_G) over the group's finite rewards. Dividing by the
// std up-weights groups that are nearly solved or nearly failed; Dr.GRPO removes that bias.

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

/// Dr.GRPO's advantage for one reward: subtract the group mean, no scaling.
struct DrGrpo {
  static constexpr std::size_t num_rewards = 1;

  [[nodiscard]] GroupRule group_rule() const { return {.kind = GroupRule::Kind::center}; }
  /// rewards: [1, N] -> out: [N]
  void compute(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) const {
    detail::check_reward_count(rewards.rewards, 1, "grpo::DrGrpo");
    detail::group_advantages(rewards, group_size, out, {.rule = group_rule()}, "grpo::DrGrpo");
  }
  /// rewards: [1, N] or [N] on CPU/CUDA -> [N] float32 on the same device, no host sync.
  [[nodiscard]] at::Tensor compute(const at::Tensor& rewards, std::int64_t group_size) const {
    return detail::group_advantages(rewards, group_size, {.rule = group_rule()}, 1, "grpo::DrGrpo");
  }
};

static_assert(AdvantageEstimator<DrGrpo> && TensorAdvantageEstimator<DrGrpo>);
static_assert(GroupBaseline<DrGrpo> && AdvantageEstimatorFor<DrGrpo, 1>);

}  // namespace grpo
