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
// and, with entropy_coef > 0, the aggregated entropy H_it of pi_theta is subtracted (verl's
// entropy_coeff): loss = agg(l) - entropy_coef * agg(H), with the same aggregation.
// Aggregation over the global batch (N_tok tokens, N_seq sequences, horizon H):
//   token_mean               sum_it m l / N_tok
//   seq_mean_token_mean      sum_i (sum_t m l / |o_i|) / N_seq
//   seq_mean_token_sum       sum_it m l / N_seq
//   seq_mean_token_sum_norm  sum_it m l / (N_seq H)     (Dr.GRPO's constant normaliser)
// Each is a sum over sequences divided by a global constant, so the micro-batch losses add up to
// the whole-batch loss and their gradients to its gradient.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "grpo/concepts/loss.hpp"
#include "grpo/core/enum_names.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/loss_types.hpp"

namespace grpo {

/// The KL estimator between pi_theta and pi_ref, with d = logp - ref_logp = log(pi_theta / pi_ref)
/// on tokens sampled from pi_theta (Schulman, "Approximating KL divergence", 2020).
enum class KlEstimator {
  k1,  ///< d: unbiased, high variance, can be negative
  k2,  ///< d^2 / 2: biased, low variance, its gradient is that of the reverse KL
  k3,  ///< exp(-d) - 1 + d: unbiased, >= 0, low variance (verl's low_var_kl); clamped at 10
};

/// Names of KlEstimator (configs' loss.kl).
inline constexpr EnumName<KlEstimator> kl_estimator_names[] = {
    {"k1", KlEstimator::k1}, {"k2", KlEstimator::k2}, {"k3", KlEstimator::k3}};

/// Where the importance ratio lives.
enum class RatioLevel {
  token,     ///< PPO/GRPO: one ratio per token
  sequence,  ///< GSPO (Zheng et al. 2025): the length-normalised sequence ratio, GSPO-token gradient form
};

/// Names of RatioLevel (configs' loss.ratio).
inline constexpr EnumName<RatioLevel> ratio_level_names[] = {{"token", RatioLevel::token},
                                                             {"sequence", RatioLevel::sequence}};

/// How per-token losses become a scalar (normalisers from LossNormalizer, global over the step).
enum class Aggregation {
  token_mean,               ///< sum over tokens / global tokens (DAPO, verl default)
  seq_mean_token_mean,      ///< per-sequence token mean, summed / global sequences (original GRPO)
  seq_mean_token_sum,       ///< per-sequence token sum, summed / global sequences
  seq_mean_token_sum_norm,  ///< sum over tokens / (global sequences x horizon) (Dr.GRPO)
};

/// Names of Aggregation (configs' loss.aggregation; docs/loss.md).
inline constexpr EnumName<Aggregation> aggregation_names[] = {
    {"token_mean", Aggregation::token_mean},
    {"seq_mean_token_mean", Aggregation::seq_mean_token_mean},
    {"seq_mean_token_sum", Aggregation::seq_mean_token_sum},
    {"seq_mean_token_sum_norm", Aggregation::seq_mean_token_sum_norm},
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
  /// Entropy bonus, >= 0: subtracts entropy_coef times the aggregated entropy (needs
  /// PolicyLossInputs::entropy). Default 0 (the paper; verl's entropy_coeff).
  double entropy_coef = 0.0;

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

inline void check_loss_options(const ClippedSurrogateLoss& o) {
  const std::string who = "grpo::ClippedSurrogateLoss: ";
  if (!(o.clip_low >= 0.0 && o.clip_low < 1.0))
    throw Error(fmt::format("{}clip_low must be in [0, 1), found {}; the paper uses 0.2", who, o.clip_low));
  if (!(o.clip_high >= 0.0) || !std::isfinite(o.clip_high))
    throw Error(fmt::format("{}clip_high must be finite and >= 0, found {}", who, o.clip_high));
  if (o.dual_clip && (!(*o.dual_clip > 1.0) || !std::isfinite(*o.dual_clip)))
    throw Error(fmt::format("{}dual_clip must be finite and > 1, found {}; verl uses 3", who, *o.dual_clip));
  if (!(o.kl_coef >= 0.0) || !std::isfinite(o.kl_coef))
    throw Error(fmt::format("{}kl_coef must be finite and >= 0, found {}", who, o.kl_coef));
  if (!(o.entropy_coef >= 0.0) || !std::isfinite(o.entropy_coef))
    throw Error(fmt::format("{}entropy_coef must be finite and >= 0, found {}", who, o.entropy_coef));
}

inline void check_loss_inputs(const ClippedSurrogateLoss& o, const PolicyLossInputs& in, const LossNormalizer& norm) {
  const std::string who = "grpo::ClippedSurrogateLoss: ";
  if (!in.logprobs.defined() || in.logprobs.dim() != 2)
    throw Error(fmt::format("{}expected logprobs [B, T], found {}", who,
                            in.logprobs.defined() ? fmt::format("{} dims", in.logprobs.dim()) : "undefined"));
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
    throw Error(fmt::format("{}kl_coef = {} needs ref_logprobs [B, T] from the reference policy; pass them or set "
                            "kl_coef = 0",
                            who, o.kl_coef));
  if (in.ref_logprobs.defined()) same(in.ref_logprobs, "ref_logprobs");
  if (o.entropy_coef > 0.0 && !in.entropy.defined())
    throw Error(fmt::format("{}entropy_coef = {} needs entropy [B, T] from the policy (a policy that computes it); "
                            "pass it or set entropy_coef = 0",
                            who, o.entropy_coef));
  if (o.entropy_coef > 0.0) same(in.entropy, "entropy");
  if (!in.advantages.defined() || in.advantages.dim() != 1 || in.advantages.size(0) != shape[0])
    throw Error(fmt::format("{}expected advantages [B] with B = {}, found {}", who, shape[0],
                            in.advantages.defined() ? c10::str(in.advantages.sizes()) : std::string("undefined")));
  if (in.advantages.device() != in.logprobs.device())
    throw Error(who + "expected advantages on " + in.logprobs.device().str() + ", found " + in.advantages.device().str());
  auto positive = [&](double v, const char* field) {
    if (!(v > 0.0) || !std::isfinite(v))
      throw Error(fmt::format("{}LossNormalizer::{} must be finite and > 0 for this aggregation, found {}; count it "
                              "over the whole step (all micro-batches and ranks)",
                              who, field, v));
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

/// What one micro-batch produces before autograd sees it: the loss, dloss/dlogp per token, and
/// the statistics. Computed without autograd (the gradient is written out below), so backward is
/// a single multiplication and no graph of ~30 elementwise ops is recorded.
struct SurrogateTerms {
  at::Tensor loss;       ///< []
  at::Tensor gradient;   ///< [B, T] dloss/dlogp
  PolicyLossStats stats;
};

// Per counted token, with r the (token or GSPO) ratio and A the advantage:
//   dpg/dlogp = -A r   unless the clipped branch is strictly larger (then 0: r is outside the clip
//                      range there, so clamp's gradient is 0), the dual clip caps it, or the
//                      log-ratio was clamped at +-20; GSPO-token has dr/dlogp = r as well.
//   dkl/dlogp = 1 (k1), d (k2), 1 - exp(-d) (k3, 0 where d was clamped or the cap of 10 applies)
// and the aggregation's weight: 1/N_tok, 1/(|o_i| N_seq), 1/N_seq or 1/(N_seq H).
// At exact ties (unclipped == clipped) the gradient is -A r, the sum of autograd's two halves.

/// The ATen form of the terms, for any device; no host synchronisation.
inline SurrogateTerms surrogate_terms_aten(const ClippedSurrogateLoss& o, const at::Tensor& logprobs,
                                           const at::Tensor& old_logprobs, const at::Tensor& ref_logprobs,
                                           const at::Tensor& advantages, const at::Tensor& mask, const LossNormalizer& norm,
                                           at::ScalarType type) {
  const at::Tensor maskf = mask.to(type);
  // Masked entries become 0 first: NaN or inf in padding never reaches the loss or the gradient.
  const at::Tensor logp = at::where(mask, logprobs.to(type), 0.0);
  const at::Tensor old_logp = at::where(mask, old_logprobs.to(type), 0.0);
  const at::Tensor neg_adv = advantages.to(type).neg().unsqueeze(1);  // [B, 1]
  const at::Tensor length = maskf.sum({1}, true).clamp_min(1.0);     // [B, 1]
  const at::Tensor log_ratio = logp.sub(old_logp);                   // [B, T], 0 where masked
  // token: [B, T]; sequence (GSPO): the length-normalised sequence log-ratio, [B, 1]
  const at::Tensor value = o.ratio == RatioLevel::sequence ? log_ratio.sum({1}, true).div(length) : log_ratio;
  const at::Tensor ratio = value.clamp(-max_log_ratio, max_log_ratio).exp();
  const at::Tensor unclipped = neg_adv.mul(ratio);
  const at::Tensor clipped = neg_adv.mul(ratio.clamp(1.0 - o.clip_low, 1.0 + o.clip_high));
  at::Tensor clip_active = clipped.gt(unclipped);
  at::Tensor loss = unclipped.maximum(clipped);
  at::Tensor gradient = at::where(clip_active.logical_or(value.abs().gt(max_log_ratio)), 0.0, unclipped);
  if (o.dual_clip) {
    const at::Tensor cap = neg_adv.mul(*o.dual_clip);                 // c |A| for A < 0
    const at::Tensor capped = neg_adv.gt(0.0).logical_and(loss.gt(cap));
    loss = at::where(capped, cap, loss);
    gradient = at::where(capped, 0.0, gradient);
    clip_active = clip_active.logical_or(capped);
  }
  at::Tensor kl;
  if (ref_logprobs.defined()) {
    const at::Tensor d = logp.sub(at::where(mask, ref_logprobs.to(type), 0.0));
    at::Tensor kl_gradient;
    switch (o.kl) {
      case KlEstimator::k1:
        kl = d;
        break;
      case KlEstimator::k2:
        kl = d.square().mul(0.5);
        kl_gradient = d;
        break;
      case KlEstimator::k3:
      default: {
        const at::Tensor e = d.clamp(-max_log_ratio, max_log_ratio).neg().exp();      // exp(-d)
        const at::Tensor raw = e.sub(1.0).add(d.clamp(-max_log_ratio, max_log_ratio));  // exp(-d) - 1 + d
        kl = raw.clamp_max(max_k3);
        kl_gradient = at::where(raw.gt(max_k3).logical_or(d.abs().gt(max_log_ratio)), 0.0, e.neg().add(1.0));
      }
    }
    if (o.kl_coef > 0.0) {
      loss = loss.add(kl.mul(o.kl_coef));
      gradient = kl_gradient.defined() ? gradient.add(kl_gradient.mul(o.kl_coef)) : gradient.add(o.kl_coef);
    }
  }
  const at::Tensor per_token = loss.mul(maskf);  // [B, T]
  SurrogateTerms t;
  switch (o.aggregation) {
    case Aggregation::token_mean:
      t.loss = per_token.sum().div(norm.tokens);
      t.gradient = gradient.mul(maskf).div(norm.tokens);
      break;
    case Aggregation::seq_mean_token_mean: {
      const at::Tensor weight = length.mul(norm.sequences).reciprocal();  // [B, 1]
      t.loss = per_token.sum({1}, true).mul(weight).sum();
      t.gradient = gradient.mul(maskf).mul(weight);
      break;
    }
    case Aggregation::seq_mean_token_sum:
      t.loss = per_token.sum().div(norm.sequences);
      t.gradient = gradient.mul(maskf).div(norm.sequences);
      break;
    case Aggregation::seq_mean_token_sum_norm:
      t.loss = per_token.sum().div(norm.sequences * norm.horizon);
      t.gradient = gradient.mul(maskf).div(norm.sequences * norm.horizon);
      break;
  }
  t.stats.tokens = maskf.sum();
  t.stats.clipped_tokens = clip_active.logical_and(mask).sum(type);
  t.stats.approx_kl = log_ratio.square().sum().mul(0.5);
  t.stats.ref_kl = kl.defined() ? kl.mul(maskf).sum() : at::zeros({}, maskf.options());
  t.stats.ratio_max = mask.numel() > 0 ? ratio.mul(maskf).amax() : at::zeros({}, maskf.options());
  return t;
}

/// The same terms in one pass over contiguous CPU memory (T = float or double), accumulating in
/// double, for rows [row_begin, row_end). mask: bool [B, T]; gradient: [B, T], those rows written
/// fully; row_stats: 6 per row (loss, tokens, clipped, approx_kl, ref_kl, ratio_max).
template <class T>
inline void surrogate_terms_host(const ClippedSurrogateLoss& o, const T* logp, const T* old, const T* ref, const T* adv,
                                 const bool* mask, std::int64_t row_begin, std::int64_t row_end, std::int64_t cols,
                                 const LossNormalizer& norm, T* gradient, double* row_stats) {
  const double low = 1.0 - o.clip_low;
  const double high = 1.0 + o.clip_high;
  for (std::int64_t b = row_begin; b < row_end; ++b) {
    double loss = 0.0, tokens = 0.0, clipped_tokens = 0.0, approx_kl = 0.0, ref_kl = 0.0, ratio_max = 0.0;
    const T* lp = logp + b * cols;
    const T* ol = old + b * cols;
    const bool* m = mask + b * cols;
    T* g = gradient + b * cols;
    double length = 0.0;
    double sequence = 0.0;
    for (std::int64_t t = 0; t < cols; ++t) {
      if (!m[t]) continue;
      length += 1.0;
      sequence += static_cast<double>(lp[t]) - static_cast<double>(ol[t]);
    }
    sequence /= std::max(length, 1.0);
    double weight = 0.0;
    switch (o.aggregation) {
      case Aggregation::token_mean: weight = 1.0 / norm.tokens; break;
      case Aggregation::seq_mean_token_mean: weight = 1.0 / (std::max(length, 1.0) * norm.sequences); break;
      case Aggregation::seq_mean_token_sum: weight = 1.0 / norm.sequences; break;
      case Aggregation::seq_mean_token_sum_norm: weight = 1.0 / (norm.sequences * norm.horizon); break;
    }
    const double neg_adv = -static_cast<double>(adv[b]);
    const double cap = o.dual_clip ? neg_adv * *o.dual_clip : 0.0;
    for (std::int64_t t = 0; t < cols; ++t) {
      if (!m[t]) {
        g[t] = T(0);
        continue;
      }
      const double log_ratio = static_cast<double>(lp[t]) - static_cast<double>(ol[t]);
      const double value = o.ratio == RatioLevel::sequence ? sequence : log_ratio;
      const double ratio = std::exp(std::clamp(value, -max_log_ratio, max_log_ratio));
      const double unclipped = neg_adv * ratio;
      const double clipped = neg_adv * std::clamp(ratio, low, high);
      bool clip_active = clipped > unclipped;
      double token_loss = std::max(unclipped, clipped);
      double grad = clip_active || std::abs(value) > max_log_ratio ? 0.0 : unclipped;
      if (o.dual_clip && neg_adv > 0.0 && token_loss > cap) {
        token_loss = cap;
        grad = 0.0;
        clip_active = true;
      }
      if (ref != nullptr) {
        const double d = static_cast<double>(lp[t]) - static_cast<double>(ref[b * cols + t]);
        double kl = d;
        double kl_grad = 1.0;
        if (o.kl == KlEstimator::k2) {
          kl = 0.5 * d * d;
          kl_grad = d;
        } else if (o.kl == KlEstimator::k3) {
          const double dc = std::clamp(d, -max_log_ratio, max_log_ratio);
          const double e = std::exp(-dc);
          const double raw = e - 1.0 + dc;
          kl = std::min(raw, max_k3);
          kl_grad = raw > max_k3 || std::abs(d) > max_log_ratio ? 0.0 : 1.0 - e;
        }
        ref_kl += kl;
        if (o.kl_coef > 0.0) {
          token_loss += o.kl_coef * kl;
          grad += o.kl_coef * kl_grad;
        }
      }
      loss += weight * token_loss;
      g[t] = static_cast<T>(weight * grad);
      tokens += 1.0;
      clipped_tokens += clip_active ? 1.0 : 0.0;
      approx_kl += 0.5 * log_ratio * log_ratio;
      ratio_max = std::max(ratio_max, ratio);
    }
    double* out = row_stats + 6 * b;
    out[0] = loss;
    out[1] = tokens;
    out[2] = clipped_tokens;
    out[3] = approx_kl;
    out[4] = ref_kl;
    out[5] = ratio_max;
  }
}

inline SurrogateTerms surrogate_terms_cpu(const ClippedSurrogateLoss& o, const at::Tensor& logprobs,
                                          const at::Tensor& old_logprobs, const at::Tensor& ref_logprobs,
                                          const at::Tensor& advantages, const at::Tensor& mask, const LossNormalizer& norm,
                                          at::ScalarType type) {
  const at::Tensor lp = logprobs.to(type).contiguous();
  const at::Tensor old = old_logprobs.to(type).contiguous();
  const at::Tensor ref = ref_logprobs.defined() ? ref_logprobs.to(type).contiguous() : at::Tensor();
  const at::Tensor adv = advantages.to(type).contiguous();
  const at::Tensor m = mask.contiguous();
  SurrogateTerms t;
  t.gradient = at::empty(lp.sizes(), lp.options());
  const std::int64_t rows = lp.size(0);
  const std::int64_t cols = lp.size(1);
  std::vector<double> row_stats(static_cast<std::size_t>(6 * rows));
  // Rows are independent: split them over ATen's intra-op threads (>= ~16K tokens per task);
  // per-row statistics are summed afterwards in row order, so the result does not depend on the
  // number of threads.
  at::parallel_for(0, rows, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(cols, 1)),
                   [&](std::int64_t begin, std::int64_t end) {
                     if (type == at::kDouble) {
                       surrogate_terms_host<double>(o, lp.data_ptr<double>(), old.data_ptr<double>(),
                                                    ref.defined() ? ref.data_ptr<double>() : nullptr,
                                                    adv.data_ptr<double>(), m.data_ptr<bool>(), begin, end, cols, norm,
                                                    t.gradient.data_ptr<double>(), row_stats.data());
                     } else {
                       surrogate_terms_host<float>(o, lp.data_ptr<float>(), old.data_ptr<float>(),
                                                   ref.defined() ? ref.data_ptr<float>() : nullptr,
                                                   adv.data_ptr<float>(), m.data_ptr<bool>(), begin, end, cols, norm,
                                                   t.gradient.data_ptr<float>(), row_stats.data());
                     }
                   });
  double stats[6] = {};
  for (std::int64_t b = 0; b < rows; ++b) {
    for (int k = 0; k < 5; ++k) stats[k] += row_stats[static_cast<std::size_t>(6 * b + k)];
    stats[5] = std::max(stats[5], row_stats[static_cast<std::size_t>(6 * b + 5)]);
  }
  const auto scalar = [&](double v) { return at::full({}, v, lp.options()); };
  t.loss = scalar(stats[0]);
  t.stats = {scalar(stats[1]), scalar(stats[2]), scalar(stats[3]), scalar(stats[4]), scalar(stats[5])};
  return t;
}

/// Autograd wrapper: forward computes SurrogateTerms (host loop on CPU, ATen elsewhere) and keeps
/// only the [B, T] gradient; backward multiplies it by the incoming scalar gradient.
struct ClippedSurrogateFunction : torch::autograd::Function<ClippedSurrogateFunction> {
  // Only logprobs is a differentiable input; the rest (detached, ref possibly undefined) travel
  // by pointer.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logprobs,
                                                const PolicyLossInputs* in, const ClippedSurrogateLoss* options,
                                                const LossNormalizer* norm, bool use_aten) {
    const at::ScalarType type = logprobs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    const at::Tensor mask = in->mask.scalar_type() == at::kBool ? in->mask : in->mask.ne(0);
    const at::Tensor old = in->old_logprobs.detach();
    const at::Tensor ref = in->ref_logprobs.defined() ? in->ref_logprobs.detach() : at::Tensor();
    const at::Tensor adv = in->advantages.detach();
    SurrogateTerms t = logprobs.is_cpu() && !use_aten
                           ? surrogate_terms_cpu(*options, logprobs, old, ref, adv, mask, *norm, type)
                           : surrogate_terms_aten(*options, logprobs, old, ref, adv, mask, *norm, type);
    ctx->save_for_backward({t.gradient});
    ctx->saved_data["dtype"] = static_cast<std::int64_t>(logprobs.scalar_type());
    torch::autograd::variable_list out{t.loss,          t.stats.tokens, t.stats.clipped_tokens, t.stats.approx_kl,
                                       t.stats.ref_kl, t.stats.ratio_max};
    ctx->mark_non_differentiable({out.begin() + 1, out.end()});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor gradient = ctx->get_saved_variables()[0];
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    torch::autograd::variable_list result(5);
    if (grads[0].defined()) result[0] = gradient.mul(grads[0].to(gradient.scalar_type())).to(dtype);
    return result;
  }
};

/// values [B, T] aggregated over the mask as the policy loss is (see the header), differentiable.
inline at::Tensor aggregate(const at::Tensor& values, const at::Tensor& mask, Aggregation aggregation,
                            const LossNormalizer& norm) {
  const at::Tensor m = mask.to(values.scalar_type());
  const at::Tensor masked = at::where(mask.ne(0), values, at::zeros({}, values.options()));  // NaN padding stays out
  switch (aggregation) {
    case Aggregation::token_mean: return masked.sum().div(norm.tokens);
    case Aggregation::seq_mean_token_mean:
      return masked.sum({1}, true).div(m.sum({1}, true).clamp_min(1.0).mul(norm.sequences)).sum();
    case Aggregation::seq_mean_token_sum: return masked.sum().div(norm.sequences);
    case Aggregation::seq_mean_token_sum_norm: return masked.sum().div(norm.sequences * norm.horizon);
  }
  return masked.sum();  // unreachable
}

inline PolicyLossOutput clipped_surrogate(const ClippedSurrogateLoss& o, const PolicyLossInputs& in,
                                          const LossNormalizer& norm, bool use_aten = false) {
  check_loss_options(o);
  check_loss_inputs(o, in, norm);
  const auto out = ClippedSurrogateFunction::apply(in.logprobs, &in, &o, &norm, use_aten);
  at::Tensor loss = out[0];
  if (o.entropy_coef > 0.0) loss = loss.sub(aggregate(in.entropy, in.mask, o.aggregation, norm).mul(o.entropy_coef));
  return {loss, {out[1], out[2], out[3], out[4], out[5]}};
}

}  // namespace detail

inline PolicyLossOutput ClippedSurrogateLoss::operator()(const PolicyLossInputs& in, const LossNormalizer& norm) const {
  return detail::clipped_surrogate(*this, in, norm);
}

}  // namespace grpo
