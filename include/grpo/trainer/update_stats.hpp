#pragma once
// grpo::UpdateStats and the accumulator that fills it: what the update phase measured, summed on
// the device over micro-batches (no host sync per micro-batch), read once at the end of the
// step and summed over data-parallel ranks.

#include <ATen/core/Tensor.h>
#include <ATen/ops/maximum.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "grpo/core/loss_types.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/optim/adamw.hpp"
#include "grpo/trainer/rollout.hpp"

namespace grpo {

/// What update() measured: host numbers, read once per step, summed over ranks.
struct UpdateStats {
  double loss = 0.0;            ///< sum of the micro-batch losses of the last epoch (the whole-batch loss)
  double clip_fraction = 0.0;   ///< clipped tokens / tokens, over every epoch
  double approx_kl = 0.0;       ///< mean 0.5 (log r)^2 against pi_old
  double ref_kl = 0.0;          ///< mean KL estimate against the reference (0 without one)
  /// The sampler against the trainer on the same weights (verl's rollout_probs_diff), over the
  /// completion tokens the trainer scored before its first update: mean and max of
  /// |exp(logprob_sampler) - exp(logprob_trainer)| and the mean of logprob_sampler -
  /// logprob_trainer. Nonzero from numerics (batching, kernels, bf16) and, with top-p < 1 or
  /// top-k, from the truncation the sampler's log-probs include.
  double sampler_prob_diff_mean = 0.0;
  double sampler_prob_diff_max = 0.0;
  double sampler_logprob_diff_mean = 0.0;
  std::int64_t sampler_compared_tokens = 0;  ///< tokens compared (0: the sampler recorded no log-probs; the means are then 0)
  double entropy = 0.0;         ///< mean token entropy of the policy (first epoch)
  double grad_norm = 0.0;       ///< global gradient norm before clipping, mean over applied updates
  double lr = 0.0;              ///< learning rate of the last update
  std::int64_t updates = 0;     ///< optimizer updates attempted
  std::int64_t skipped_updates = 0;  ///< updates skipped because the gradient norm was not finite
  std::int64_t trained_samples = 0;
  std::int64_t trained_tokens = 0;
};

/// Sums of one step's update, on the device until finish().
class UpdateAccumulator {
 public:
  /// A micro-batch's loss output (its share of the mini-batch loss and its statistics).
  void add_loss(const PolicyLossOutput& out) {
    add(epoch_loss_, out.loss);
    add(clipped_, out.stats.clipped_tokens);
    add(tokens_, out.stats.tokens);
    add(approx_kl_, out.stats.approx_kl);
    if (out.stats.ref_kl.defined()) add(ref_kl_, out.stats.ref_kl);
  }
  /// The loss reported is the last epoch's.
  void end_epoch() { last_epoch_loss_ = std::exchange(epoch_loss_, at::Tensor()); }

  /// entropy, mask: [B, T]; the mean is over masked tokens.
  void add_entropy(const at::Tensor& entropy, const at::Tensor& mask) {
    add(entropy_sum_, (entropy.detach() * mask).sum());
    add(entropy_tokens_, mask.sum());
  }

  /// The trainer's log-probs [B, T] on the weights the sampler used against the sampler's own:
  /// sum |exp(lp_s) - exp(lp_t)|, sum (lp_s - lp_t), tokens compared, max |exp(lp_s) - exp(lp_t)|.
  void compare_with_sampler(const at::Tensor& trainer_logprobs, const MicroBatch& mb) {
    const at::Tensor mask = mb.batch.completion_mask * mb.sampler_recorded;  // tokens the sampler recorded
    const at::Tensor trained = trainer_logprobs.detach().to(at::kFloat).cpu();
    const at::Tensor diff = (mb.sampler_logprobs.exp() - trained.exp()).abs() * mask;
    add(prob_diff_, diff.sum());
    add(logprob_diff_, ((mb.sampler_logprobs - trained) * mask).sum());
    add(compared_, mask.sum());
    if (diff.numel() > 0) {
      const at::Tensor m = diff.max().to(at::kDouble);
      prob_diff_max_ = prob_diff_max_.defined() ? at::maximum(prob_diff_max_, m) : m;
    }
  }

  void add_update(const OptimizerUpdate& u) {
    lr_ = u.lr;
    ++updates_;
    if (u.applied) grad_norm_sum_ += u.grad_norm;
    else ++skipped_;
  }

  /// The step's statistics: this rank's sums (one host read each), summed over ranks (`comm`
  /// null: one process). `samples`, `tokens`: what this rank trained on.
  UpdateStats finish(std::int64_t samples, std::int64_t tokens, Communicator* comm) const {
    enum Sum { loss, clipped, counted, approx_kl, ref_kl, entropy, entropy_n, trained, trained_tokens, prob_diff,
               logprob_diff, compared, count };
    std::vector<double> sums(count, 0.0);
    sums[loss] = value(last_epoch_loss_);
    sums[clipped] = value(clipped_);
    sums[counted] = value(tokens_);
    sums[approx_kl] = value(approx_kl_);
    sums[ref_kl] = value(ref_kl_);
    sums[entropy] = value(entropy_sum_);
    sums[entropy_n] = value(entropy_tokens_);
    sums[trained] = static_cast<double>(samples);
    sums[trained_tokens] = static_cast<double>(tokens);
    sums[prob_diff] = value(prob_diff_);
    sums[logprob_diff] = value(logprob_diff_);
    sums[compared] = value(compared_);
    double max_diff = value(prob_diff_max_);
    if (comm != nullptr) {
      sums = all_reduce_sum(*comm, std::move(sums));
      max_diff = all_reduce_max(*comm, {max_diff}).front();
    }
    UpdateStats s;
    s.sampler_compared_tokens = static_cast<std::int64_t>(sums[compared]);
    if (sums[compared] > 0) {
      s.sampler_prob_diff_mean = sums[prob_diff] / sums[compared];
      s.sampler_logprob_diff_mean = sums[logprob_diff] / sums[compared];
      s.sampler_prob_diff_max = max_diff;
    }
    s.loss = sums[loss];
    if (sums[counted] > 0) {
      s.clip_fraction = sums[clipped] / sums[counted];
      s.approx_kl = sums[approx_kl] / sums[counted];
      s.ref_kl = sums[ref_kl] / sums[counted];
    }
    if (sums[entropy_n] > 0) s.entropy = sums[entropy] / sums[entropy_n];
    s.lr = lr_;
    s.updates = updates_;
    s.skipped_updates = skipped_;
    const auto applied = updates_ - skipped_;
    s.grad_norm = applied > 0 ? grad_norm_sum_ / static_cast<double>(applied) : 0.0;
    s.trained_samples = static_cast<std::int64_t>(sums[trained]);
    s.trained_tokens = static_cast<std::int64_t>(sums[trained_tokens]);
    return s;
  }

 private:
  /// sum += t, in float64 on t's device (no host sync).
  static void add(at::Tensor& sum, const at::Tensor& t) {
    if (!t.defined()) return;
    const at::Tensor v = t.detach().to(at::kDouble);
    sum = sum.defined() ? sum + v : v;
  }
  static double value(const at::Tensor& t) { return t.defined() ? t.item<double>() : 0.0; }

  at::Tensor epoch_loss_, last_epoch_loss_, clipped_, tokens_, approx_kl_, ref_kl_, entropy_sum_, entropy_tokens_;
  at::Tensor prob_diff_, logprob_diff_, compared_, prob_diff_max_;
  double lr_ = 0.0, grad_norm_sum_ = 0.0;
  std::int64_t updates_ = 0, skipped_ = 0;
};

}  // namespace grpo
