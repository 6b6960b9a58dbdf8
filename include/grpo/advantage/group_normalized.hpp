#pragma once
// grpo::GroupNormalized: GRPO's group-normalised advantage (DeepSeekMath; LongWriter-Zero Eq. 2),
//   A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + epsilon)
// over the group's finite rewards; all-equal groups and non-finite rewards give 0 (group_rule.hpp).

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

/// GRPO's advantage for one reward: standardise within each group of `group_size` samples.
struct GroupNormalized {
  static constexpr std::size_t num_rewards = 1;

  /// Which std to divide by. Default sample (n - 1), as torch.std in verl and TRL.
  StdKind std_kind = StdKind::sample;
  /// Added to the std (not the variance). Default 1e-6 (verl's; TRL uses 1e-4).
  double epsilon = 1e-6;

  [[nodiscard]] GroupRule group_rule() const {
    return {.kind = GroupRule::Kind::normalize, .std_kind = std_kind, .epsilon = epsilon};
  }
  /// rewards: [1, N] -> out: [N]
  void compute(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out) const {
    detail::check_reward_count(rewards.rewards, 1, "grpo::GroupNormalized");
    detail::group_advantages(rewards, group_size, out, {.rule = group_rule()}, "grpo::GroupNormalized");
  }
  /// rewards: [1, N] or [N] on CPU/CUDA -> [N] float32 on the same device, no host sync.
  [[nodiscard]] at::Tensor compute(const at::Tensor& rewards, std::int64_t group_size) const {
    return detail::group_advantages(rewards, group_size, {.rule = group_rule()}, 1, "grpo::GroupNormalized");
  }
};

static_assert(AdvantageEstimator<GroupNormalized> && TensorAdvantageEstimator<GroupNormalized>);
static_assert(GroupBaseline<GroupNormalized> && AdvantageEstimatorFor<GroupNormalized, 1>);

}  // namespace grpo
