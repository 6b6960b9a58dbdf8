#pragma once
// The data a policy loss consumes and produces (the PolicyLoss concept, loss/, the trainer): core
// types, so concepts/loss.hpp needs nothing from loss/. Shapes: B sequences (a micro-batch), T tokens.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace grpo {

/// One micro-batch of the policy-gradient loss. All tensors on one device.
struct PolicyLossInputs {
  at::Tensor logprobs;      ///< [B, T] log pi_theta(o_t | ...), requires grad
  at::Tensor old_logprobs;  ///< [B, T] log pi_old at sampling time (detached)
  at::Tensor ref_logprobs;  ///< [B, T] log pi_ref for the KL term; undefined when beta = 0
  at::Tensor advantages;    ///< [B] one advantage per sequence (float)
  at::Tensor mask;          ///< [B, T] 1 for completion tokens that count, 0 for prompt/padding
  at::Tensor entropy;       ///< [B, T] entropy of pi_theta at each position, requires grad; needed for an entropy bonus only
};

/// Normalisers counted over the *global* batch: every micro-batch of the step on every rank.
/// With them each micro-batch's loss is its share of the whole-batch loss, so accumulated
/// gradients equal the gradient of one big batch (method.md, "GRPO objective").
struct LossNormalizer {
  double tokens = 0.0;     ///< completion tokens in the global batch (token-mean)
  double sequences = 0.0;  ///< sequences in the global batch (seq-mean-* and Dr.GRPO)
  double horizon = 0.0;    ///< Dr.GRPO's constant length, usually max new tokens
};

/// Per-micro-batch statistics as *sums* kept on the device (no host sync); divide by
/// `tokens` after all micro-batches to report means.
struct PolicyLossStats {
  at::Tensor tokens;          ///< [] number of counted tokens
  at::Tensor clipped_tokens;  ///< [] tokens where the clipped branch was taken
  at::Tensor approx_kl;       ///< [] sum of 0.5 (log r)^2 against the old policy (k2, for logging)
  at::Tensor ref_kl;          ///< [] sum of the KL estimate against the reference (0 without one)
  at::Tensor ratio_max;       ///< [] largest importance ratio seen
};

/// Adds one micro-batch's statistics into a running total on the device (no host sync): sums add,
/// ratio_max takes the maximum. An empty total (default-constructed) takes `more` as it is.
inline void accumulate(PolicyLossStats& total, const PolicyLossStats& more) {
  if (!total.tokens.defined()) {
    total = more;
    return;
  }
  total.tokens = total.tokens.add(more.tokens);
  total.clipped_tokens = total.clipped_tokens.add(more.clipped_tokens);
  total.approx_kl = total.approx_kl.add(more.approx_kl);
  total.ref_kl = total.ref_kl.add(more.ref_kl);
  total.ratio_max = total.ratio_max.maximum(more.ratio_max);
}

/// What a loss returns: a scalar to call backward() on, plus device-side statistics.
struct PolicyLossOutput {
  at::Tensor loss;        ///< [] this micro-batch's share of the global loss
  PolicyLossStats stats;  ///< device tensors, summed over the micro-batch
};

}  // namespace grpo
