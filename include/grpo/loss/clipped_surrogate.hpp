#pragma once
// grpo::ClippedSurrogateLoss: the PPO/GRPO clipped surrogate (method.md, "GRPO objective") with
// clip-higher, dual clip, a KL penalty against a reference policy, GSPO's sequence-level ratio
// and the four usual aggregations, each normalised by *global* counts (docs/loss.md).
//
// Per completion token t of sequence i (m = mask, A_i the sequence's advantage):
//   r_it  = exp(logp_it - old_logp_it)                                   (ratio = token)
//   r_it  = exp(sg[mean_t(logp_i - old_logp_i)] + logp_it - sg[logp_it])  (ratio = sequence: GSPO-token)
//   pg_it = max(-A_i r_it, -A_i clip(r_it, 1 - clip_low, 1 + clip_high))
//   pg_it = min(pg_it, c |A_i|)  if A_i < 0 and dual_clip = c
//   l_it  = pg_it + kl_coef * kl_it,   kl_it = k1 | k2 | k3 of logp_it - ref_logp_it
// Aggregation over the global batch (N_tok tokens, N_seq sequences, horizon H):
//   token_mean               sum_it m l / N_tok
//   seq_mean_token_mean      sum_i (sum_t m l / |o_i|) / N_seq
//   seq_mean_token_sum       sum_it m l / N_seq
//   seq_mean_token_sum_norm  sum_it m l / (N_seq H)     (Dr.GRPO's constant normaliser)
// Each is a sum over sequences divided by a global constant, so the micro-batch losses add up to
// the whole-batch loss and their gradients to its gradient.

#include <ATen/core/Tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <optional>
#include <string>

#include "grpo/concepts/loss.hpp"
#include "grpo/core/error.hpp"
#include "grpo/loss/types.hpp"

namespace grpo {

/// The KL estimator between pi_theta and pi_ref, with d = logp - ref_logp = log(pi_theta / pi_ref)
/// on tokens sampled from pi_theta (Schulman, "Approximating KL divergence", 2020).
enum class KlEstimator {
  k1,  ///< d: unbiased, high variance, can be negative
  k2,  ///< d^2 / 2: biased, low variance, its gradient is that of the reverse KL
  k3,  ///< exp(-d) - 1 + d: unbiased, >= 0, low variance (verl's low_var_kl); clamped at 10
};

/// Where the importance ratio lives.
enum class RatioLevel {
  token,     ///< PPO/GRPO: one ratio per token
  sequence,  ///< GSPO (Zheng et al. 2025): the length-normalised sequence ratio, GSPO-token gradient form
};

/// How per-token losses become a scalar (normalisers from LossNormalizer, global over the step).
enum class Aggregation {
  token_mean,               ///< sum over tokens / global tokens (DAPO, verl default)
  seq_mean_token_mean,      ///< per-sequence token mean, summed / global sequences (original GRPO)
  seq_mean_token_sum,       ///< per-sequence token sum, summed / global sequences
  seq_mean_token_sum_norm,  ///< sum over tokens / (global sequences x horizon) (Dr.GRPO)
};

/// The clipped policy-gradient surrogate; a PolicyLoss. Options are validated at each call.
struct ClippedSurrogateLoss {
  /// The ratio is clipped below at 1 - clip_low, in [0, 1). Default 0.2 (the paper's epsilon).
  double clip_low = 0.2;
  /// The ratio is clipped above at 1 + clip_high, >= 0 (DAPO's clip-higher uses 0.28). Default 0.2.
  double clip_high = 0.2;
  /// Dual clip c > 1: for A < 0 the per-token loss is capped at c |A| (Ye et al. 2020). Default off.
  std::optional<double> dual_clip{};
  /// Weight beta of the KL penalty, >= 0; > 0 needs ref_logprobs. Default 0 (the paper; no reference model).
  double kl_coef = 0.0;
  /// KL estimator for the penalty and the ref_kl statistic. Default k3.
  KlEstimator kl = KlEstimator::k3;
  /// Token-level ratio (PPO/GRPO) or sequence-level (GSPO). Default token.
  RatioLevel ratio = RatioLevel::token;
  /// How token losses are averaged. Default token_mean.
  Aggregation aggregation = Aggregation::token_mean;

  /// One micro-batch -> its share of the global loss and device-side statistics (no host sync).
  [[nodiscard]] PolicyLossOutput operator()(const PolicyLossInputs& in, const LossNormalizer& norm) const;
};

static_assert(PolicyLoss<ClippedSurrogateLoss>);

namespace detail {

/// Log-ratios beyond +-20 (ratios e^20) are clamped before exp so neither value nor gradient
/// overflows; verl clamps the same way.
inline constexpr double max_log_ratio = 20.0;
/// k3 is capped here, as in verl (beyond it the estimate is useless and its gradient explodes).
inline constexpr double max_k3 = 10.0;

/// The KL estimate per token, d = logp - ref_logp (masked entries 0 on both sides).
inline at::Tensor kl_estimate(const at::Tensor& logp, const at::Tensor& ref_logp, KlEstimator estimator) {
  const at::Tensor d = logp.sub(ref_logp);
  switch (estimator) {
    case KlEstimator::k1:
      return d;
    case KlEstimator::k2:
      return d.square().mul(0.5);
    case KlEstimator::k3:
    default: {
      const at::Tensor dc = d.clamp(-max_log_ratio, max_log_ratio);
      return dc.neg().exp().sub(1.0).add(dc).clamp_max(max_k3);
    }
  }
}

inline void check_loss_options(const ClippedSurrogateLoss& o) {
  const std::string who = "grpo::ClippedSurrogateLoss: ";
  if (!(o.clip_low >= 0.0 && o.clip_low < 1.0))
    throw Error(who + "clip_low must be in [0, 1), found " + std::to_string(o.clip_low) + "; the paper uses 0.2");
  if (!(o.clip_high >= 0.0) || !std::isfinite(o.clip_high))
    throw Error(who + "clip_high must be finite and >= 0, found " + std::to_string(o.clip_high));
  if (o.dual_clip && (!(*o.dual_clip > 1.0) || !std::isfinite(*o.dual_clip)))
    throw Error(who + "dual_clip must be finite and > 1, found " + std::to_string(*o.dual_clip) + "; verl uses 3");
  if (!(o.kl_coef >= 0.0) || !std::isfinite(o.kl_coef))
    throw Error(who + "kl_coef must be finite and >= 0, found " + std::to_string(o.kl_coef));
}

inline void check_loss_inputs(const ClippedSurrogateLoss& o, const PolicyLossInputs& in, const LossNormalizer& norm) {
  const std::string who = "grpo::ClippedSurrogateLoss: ";
  if (!in.logprobs.defined() || in.logprobs.dim() != 2)
    throw Error(who + "expected logprobs [B, T], found " +
                (in.logprobs.defined() ? std::to_string(in.logprobs.dim()) + " dims" : std::string("undefined")));
  if (!at::isFloatingType(in.logprobs.scalar_type()))
    throw Error(who + "expected floating logprobs, found " + std::string(c10::toString(in.logprobs.scalar_type())));
  const auto shape = in.logprobs.sizes();
  auto same = [&](const at::Tensor& t, const char* name) {
    if (!t.defined() || t.sizes() != shape)
      throw Error(who + "expected " + name + " of logprobs' shape " + c10::str(shape) + ", found " +
                  (t.defined() ? c10::str(t.sizes()) : std::string("undefined")));
    if (t.device() != in.logprobs.device())
      throw Error(who + "expected " + name + " on " + in.logprobs.device().str() + ", found " + t.device().str());
  };
  same(in.old_logprobs, "old_logprobs");
  same(in.mask, "mask");
  if (o.kl_coef > 0.0 && !in.ref_logprobs.defined())
    throw Error(who + "kl_coef = " + std::to_string(o.kl_coef) +
                " needs ref_logprobs [B, T] from the reference policy; pass them or set kl_coef = 0");
  if (in.ref_logprobs.defined()) same(in.ref_logprobs, "ref_logprobs");
  if (!in.advantages.defined() || in.advantages.dim() != 1 || in.advantages.size(0) != shape[0])
    throw Error(who + "expected advantages [B] with B = " + std::to_string(shape[0]) + ", found " +
                (in.advantages.defined() ? c10::str(in.advantages.sizes()) : std::string("undefined")));
  if (in.advantages.device() != in.logprobs.device())
    throw Error(who + "expected advantages on " + in.logprobs.device().str() + ", found " + in.advantages.device().str());
  auto positive = [&](double v, const char* field) {
    if (!(v > 0.0) || !std::isfinite(v))
      throw Error(who + "LossNormalizer::" + field + " must be finite and > 0 for this aggregation, found " +
                  std::to_string(v) + "; count it over the whole step (all micro-batches and ranks)");
  };
  switch (o.aggregation) {
    case Aggregation::token_mean:
      positive(norm.tokens, "tokens");
      break;
    case Aggregation::seq_mean_token_mean:
    case Aggregation::seq_mean_token_sum:
      positive(norm.sequences, "sequences");
      break;
    case Aggregation::seq_mean_token_sum_norm:
      positive(norm.sequences, "sequences");
      positive(norm.horizon, "horizon");
      break;
  }
}

inline PolicyLossOutput clipped_surrogate(const ClippedSurrogateLoss& o, const PolicyLossInputs& in,
                                          const LossNormalizer& norm) {
  check_loss_options(o);
  check_loss_inputs(o, in, norm);
  const at::ScalarType type = in.logprobs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor mask = in.mask.scalar_type() == at::kBool ? in.mask : in.mask.ne(0);
  const at::Tensor maskf = mask.to(type);
  // Masked entries become 0 through `where`, whose backward sends them exactly 0: NaN or inf in
  // padding never reaches the gradient.
  const at::Tensor logp = at::where(mask, in.logprobs.to(type), 0.0);
  const at::Tensor old_logp = at::where(mask, in.old_logprobs.detach().to(type), 0.0);
  const at::Tensor adv = in.advantages.detach().to(type).unsqueeze(1);  // [B, 1]
  const at::Tensor length = maskf.sum({1}).clamp_min(1.0);              // [B]

  at::Tensor log_ratio = logp.sub(old_logp);  // [B, T], 0 where masked
  if (o.ratio == RatioLevel::sequence) {
    // GSPO-token: value exp(mean_t log r_it) on every token of i, gradient s_i * d logp_it.
    const at::Tensor seq = log_ratio.detach().sum({1}).div(length).unsqueeze(1);  // [B, 1]
    log_ratio = logp.sub(logp.detach()).add(seq);
  }
  const at::Tensor ratio = log_ratio.clamp(-max_log_ratio, max_log_ratio).exp();
  const at::Tensor unclipped = adv.neg().mul(ratio);
  const at::Tensor clipped = adv.neg().mul(ratio.clamp(1.0 - o.clip_low, 1.0 + o.clip_high));
  at::Tensor token_loss = unclipped.maximum(clipped);
  at::Tensor clip_active = clipped.detach().gt(unclipped.detach());
  if (o.dual_clip) {
    const at::Tensor cap = adv.neg().mul(*o.dual_clip);  // c |A| for A < 0
    const at::Tensor negative = adv.lt(0.0);
    clip_active = clip_active.logical_or(negative.logical_and(token_loss.detach().gt(cap)));
    token_loss = at::where(negative, token_loss.minimum(cap), token_loss);
  }
  at::Tensor kl;
  if (in.ref_logprobs.defined()) {
    const at::Tensor ref_logp = at::where(mask, in.ref_logprobs.detach().to(type), 0.0);
    kl = kl_estimate(logp, ref_logp, o.kl);
    if (o.kl_coef > 0.0) token_loss = token_loss.add(kl.mul(o.kl_coef));
  }
  token_loss = at::where(mask, token_loss, 0.0);

  PolicyLossOutput out;
  switch (o.aggregation) {
    case Aggregation::token_mean:
      out.loss = token_loss.sum().div(norm.tokens);
      break;
    case Aggregation::seq_mean_token_mean:
      out.loss = token_loss.sum({1}).div(length).sum().div(norm.sequences);
      break;
    case Aggregation::seq_mean_token_sum:
      out.loss = token_loss.sum().div(norm.sequences);
      break;
    case Aggregation::seq_mean_token_sum_norm:
      out.loss = token_loss.sum().div(norm.sequences * norm.horizon);
      break;
  }

  const at::Tensor log_r = logp.detach().sub(old_logp);
  out.stats.tokens = maskf.sum();
  out.stats.clipped_tokens = clip_active.logical_and(mask).sum(type);
  out.stats.approx_kl = at::where(mask, log_r.square().mul(0.5), 0.0).sum();
  out.stats.ref_kl = kl.defined() ? at::where(mask, kl.detach(), 0.0).sum() : at::zeros({}, maskf.options());
  out.stats.ratio_max = ratio.numel() > 0 ? at::where(mask, ratio.detach(), 0.0).amax() : at::zeros({}, maskf.options());
  return out;
}

}  // namespace detail

inline PolicyLossOutput ClippedSurrogateLoss::operator()(const PolicyLossInputs& in, const LossNormalizer& norm) const {
  return detail::clipped_surrogate(*this, in, norm);
}

}  // namespace grpo
