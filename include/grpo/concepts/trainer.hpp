#pragma once
// What grpo::Trainer<P, Rewards, Advantage, Loss> needs from its four parts, as one check with a
// sentence per requirement: the trainer's declaration fails with the sentence of the first part
// that does not fit (a policy that cannot be checkpointed, a scorer that is not a reward table,
// an estimator built for another number of rewards, a type that is not a loss), not with a
// template backtrace from inside train().
//
//   TrainerParts<P, R, A, L>  the concept: all of the below
//   check_trainer_parts<...>() the same, each requirement a static_assert with its message

#include "grpo/concepts/advantage.hpp"
#include "grpo/concepts/loss.hpp"
#include "grpo/concepts/policy.hpp"
#include "grpo/concepts/reward.hpp"

namespace grpo {

/// Satisfied by: a CheckpointablePolicy, a RewardTableScorer, an AdvantageEstimator for the
/// scorer's number of rewards and a PolicyLoss (e.g. Qwen2Policy, RewardSet<...>, Balanced<3>,
/// ClippedSurrogateLoss).
template <class P, class Rewards, class Advantage, class Loss>
concept TrainerParts = CheckpointablePolicy<P> && RewardTableScorer<Rewards> &&
                       AdvantageEstimatorFor<Advantage, Rewards::size> && PolicyLoss<Loss>;

template <class P, class Rewards, class Advantage, class Loss>
consteval bool check_trainer_parts() {
  static_assert(Policy<P>, "grpo::Trainer<P, ...>: P must model grpo::Policy: generate(prompts, SamplingOptions) -> "
                           "std::vector<Generation>, logprobs(TokenBatch, temperature) -> TokenLogprobs, parameters() -> "
                           "std::vector<at::Tensor> (concepts/policy.hpp)");
  static_assert(CheckpointablePolicy<P>, "grpo::Trainer<P, ...>: train() writes checkpoints and resume() reads them, so "
                                         "P must also model grpo::CheckpointablePolicy: named_parameters() -> (name, "
                                         "tensor) pairs and save_pretrained(dir) (concepts/policy.hpp)");
  static_assert(RewardTableScorer<Rewards>, "grpo::Trainer<P, Rewards, ...>: Rewards must score a [K, N] table: a "
                                            "grpo::RewardSet<Rs...> or a type with size, score(batch, table) and names() "
                                            "(concepts/reward.hpp)");
  static_assert(AdvantageEstimator<Advantage>, "grpo::Trainer<P, R, Advantage, ...>: Advantage must model "
                                               "grpo::AdvantageEstimator: compute(rewards [K, N], group_size, out [N]) "
                                               "(concepts/advantage.hpp)");
  if constexpr (RewardTableScorer<Rewards>) {
    static_assert(AdvantageEstimatorFor<Advantage, Rewards::size>, "grpo::Trainer: the advantage estimator is built "
                                                                   "for another number of rewards than the reward set has");
  }
  static_assert(PolicyLoss<Loss>, "grpo::Trainer<P, R, A, Loss>: Loss must model grpo::PolicyLoss: "
                                  "loss(PolicyLossInputs, LossNormalizer) -> PolicyLossOutput (concepts/loss.hpp)");
  return true;
}

}  // namespace grpo
