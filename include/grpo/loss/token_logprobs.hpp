#pragma once
// grpo::token_logprobs: log pi(target_t | h_t) and the entropy of pi(. | h_t) from hidden states
// and the output projection, computed chunk by chunk so the [N, V] logits never exist at once.
//
//   logits_t = (h_t W^T) / temperature               h: [N, H], W: [V, H]  ->  [V] per token
//   logprob_t = logits_t[target_t] - logsumexp(logits_t)
//   entropy_t = -sum_v p_tv log p_tv,   p_t = softmax(logits_t)
//
// A custom autograd function: forward keeps only (hidden, weight, targets, lse, entropy) and
// backward recomputes each chunk's logits (one extra matmul per chunk, the price of O(chunk x V)
// memory instead of O(N x V)). Logits are always float32 (float64 for float64 inputs), also when
// hidden and weight are bf16, because log-probs of a 152K vocabulary in bf16 are off by ~1e-2.
//
// On the CPU a chunk is also cut into vocabulary blocks (TokenLogprobOptions::vocab_block): each
// [chunk, block] tile of logits is reduced while it is still in cache, with an online log-sum-exp
//   M = running max, S = sum exp(z - M), T = sum exp(z - M) (z - M)
//   lse = M + log S,  entropy = lse - sum_v p_v z_v = log S - T / S
// and one exp per logit, where whole rows of 151,936 logits go through memory several times
// (logsumexp, then exp again for the entropy). The target's logit is read from the tile that holds
// it (the same GEMM as the max, so logprob <= 0 exactly), and backward adds its +g to dL/dz in
// that tile, so the target's gradient is summed inside the GEMM as on the whole-rows path.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/full.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "grpo/core/error.hpp"

namespace grpo {

/// How token_logprobs computes: chunking, temperature, entropy.
struct TokenLogprobOptions {
  /// Tokens per chunk. Extra memory is about 2 x chunk_size x V x 4 bytes (1024 x 151,936: 1.2 GB),
  /// independent of N. Default 1024.
  std::int64_t chunk_size = 1024;
  /// Logits are divided by this before the softmax, as the sampler does (> 0). Default 1.0.
  double temperature = 1.0;
  /// Also return the entropy of each position's distribution (and its gradient). Default true.
  bool compute_entropy = true;
  /// Vocabulary columns per tile: > 0 cuts each chunk's logits into [chunk, vocab_block] tiles that
  /// are reduced in cache (see the top of this file); 0 computes whole rows; -1 (default) picks
  /// 2048 on the CPU (2-3x faster there at V = 151,936) and whole rows on CUDA.
  std::int64_t vocab_block = -1;
};

/// The result of token_logprobs; both tensors have the leading shape of `hidden` (targets' shape).
struct TokenLogprobResult {
  at::Tensor logprobs;  ///< [N] float32 (float64 for float64 inputs), differentiable
  at::Tensor entropy;   ///< [N] like logprobs, or undefined when compute_entropy = false
};

namespace detail {

/// The matmul precision of a token_logprobs call, fixed once from the inputs.
struct LogitPlan {
  at::ScalarType logit_type = at::kFloat;  // float32, or float64 for float64 inputs
  bool mixed_mm = false;     // CUDA bf16/f16 inputs: mm(..., out_dtype = float32) without upcasting W
  bool upcast = false;       // CPU bf16/f16 inputs: compute with an upcast copy of W
  double inv_temperature = 1.0;
};

inline LogitPlan make_logit_plan(const at::Tensor& weight, double temperature) {
  LogitPlan plan;
  const auto type = weight.scalar_type();
  plan.logit_type = type == at::kDouble ? at::kDouble : at::kFloat;
  plan.mixed_mm = type != plan.logit_type && weight.is_cuda();
  plan.upcast = type != plan.logit_type && !weight.is_cuda();
  plan.inv_temperature = 1.0 / temperature;
  return plan;
}

// h: [n, H] (input dtype), w: [V, H] (input dtype, or logit_type when upcast) -> [n, V] logit_type
inline at::Tensor chunk_logits(const at::Tensor& h, const at::Tensor& w, const LogitPlan& plan) {
  at::Tensor logits;
  if (plan.mixed_mm) logits = at::mm(h, w.t(), plan.logit_type);
  else logits = at::mm(h.to(w.scalar_type()), w.t());
  if (plan.inv_temperature != 1.0) logits.mul_(plan.inv_temperature);
  return logits;
}

inline void check_token_logprob_inputs(const at::Tensor& hidden, const at::Tensor& weight,
                                       const at::Tensor& targets, const TokenLogprobOptions& options) {
  const auto where = std::string("grpo::token_logprobs: ");
  if (!hidden.defined() || !weight.defined() || !targets.defined())
    throw Error(where + "expected defined hidden, weight and targets tensors, found an undefined one");
  if (hidden.dim() < 1 || weight.dim() != 2)
    throw Error(fmt::format("{}expected hidden [..., H] and weight [V, H], found hidden of {} dims and weight of {} "
                            "dims; pass the output projection (lm_head.weight) as [V, H]",
                            where, hidden.dim(), weight.dim()));
  if (hidden.size(-1) != weight.size(1))
    throw Error(fmt::format("{}expected hidden's last dim to equal weight's H = {}, found {}", where, weight.size(1),
                            hidden.size(-1)));
  if (hidden.scalar_type() != weight.scalar_type() || !at::isFloatingType(hidden.scalar_type()))
    throw Error(where + "expected hidden and weight of one floating dtype, found " +
                std::string(c10::toString(hidden.scalar_type())) + " and " +
                std::string(c10::toString(weight.scalar_type())) + "; cast one of them");
  if (targets.sizes() != hidden.sizes().slice(0, hidden.dim() - 1))
    throw Error(where + "expected targets of hidden's leading shape " +
                c10::str(hidden.sizes().slice(0, hidden.dim() - 1)) + ", found " + c10::str(targets.sizes()));
  if (targets.scalar_type() != at::kLong && targets.scalar_type() != at::kInt)
    throw Error(where + "expected int64 (or int32) targets, found " + std::string(c10::toString(targets.scalar_type())));
  if (hidden.device() != weight.device() || hidden.device() != targets.device())
    throw Error(where + "expected hidden, weight and targets on one device, found " + hidden.device().str() + ", " +
                weight.device().str() + ", " + targets.device().str());
  if (options.chunk_size <= 0)
    throw Error(fmt::format("{}TokenLogprobOptions::chunk_size must be > 0, found {}", where, options.chunk_size));
  if (!(options.temperature > 0.0) || !std::isfinite(options.temperature))
    throw Error(fmt::format("{}TokenLogprobOptions::temperature must be finite and > 0, found {}", where,
                            options.temperature));
  if (options.vocab_block < -1)
    throw Error(fmt::format(
        "{}TokenLogprobOptions::vocab_block must be -1 (automatic), 0 (whole rows) or > 0, found {}", where,
        options.vocab_block));
  if (weight.size(0) == 0) throw Error(where + "expected a weight with V > 0 rows, found V = 0");
}

/// Reused storage for one [chunk, block] tile of logits and one of their exponentials (so the
/// tile loop allocates nothing of that size).
struct TileBuffers {
  at::Tensor logits, exp;
  TileBuffers(std::int64_t rows, std::int64_t block, const at::TensorOptions& options)
      : logits(at::empty({rows * block}, options)), exp(at::empty({rows * block}, options)) {}
  at::Tensor exp_of(const at::Tensor& z) {
    at::Tensor out = exp.narrow(0, 0, z.numel()).view(z.sizes());
    return at::exp_out(out, z);
  }
};

/// The vocabulary tile width a call uses: 0 = whole rows.
inline std::int64_t resolve_vocab_block(const TokenLogprobOptions& options, const at::Tensor& weight) {
  const std::int64_t block = options.vocab_block == -1 ? (weight.is_cpu() ? 2048 : 0) : options.vocab_block;
  return block >= weight.size(0) ? 0 : block;
}

/// Logits of rows h [n, H] against the vocabulary tile w [vb, H], scaled by 1/T; h and w already
/// in one dtype (w's), or bf16/f16 for the mixed CUDA matmul. Written into `buffer` (at least
/// n x vb elements of the logit dtype) unless the matmul is mixed.
inline at::Tensor tile_logits(const at::Tensor& h, const at::Tensor& w, const LogitPlan& plan, at::Tensor& buffer) {
  at::Tensor logits;
  if (plan.mixed_mm) {
    logits = at::mm(h, w.t(), plan.logit_type);
  } else {
    logits = buffer.narrow(0, 0, h.size(0) * w.size(0)).view({h.size(0), w.size(0)});
    at::mm_out(logits, h, w.t());
  }
  if (plan.inv_temperature != 1.0) logits.mul_(plan.inv_temperature);
  return logits;
}

/// Where each row's target falls in the tile [v0, v0 + vb): the in-tile column (clamped into the
/// tile) and whether it is there at all.
struct TileTargets {
  at::Tensor column;  // [n, 1] int64
  at::Tensor inside;  // [n] bool
  TileTargets(const at::Tensor& targets, std::int64_t v0, std::int64_t vb) {
    const at::Tensor local = targets.sub(v0);
    inside = local.ge(0).logical_and_(local.lt(vb));
    column = local.clamp(0, vb - 1).unsqueeze(1);
  }
};

/// Rows [start, start + n) of hidden as the tile GEMMs take them: in w's dtype, or as they are for
/// the mixed CUDA matmul. Converted once per chunk, not once per tile.
inline at::Tensor chunk_rows(const at::Tensor& hidden, std::int64_t start, std::int64_t n, const at::Tensor& w,
                             const LogitPlan& plan) {
  const at::Tensor rows = hidden.narrow(0, start, n);
  return plan.mixed_mm ? rows : rows.to(w.scalar_type());
}

/// The running log-sum-exp of one chunk's rows over some vocabulary columns (a tensor-parallel
/// rank's slice, or all of them): M = max z, S = sum exp(z - M), Tz = sum exp(z - M) (z - M)
/// (undefined without entropy), and the target's logit (0 where the target is not among the
/// columns). All [n] in the logit dtype.
struct LogitPartials {
  at::Tensor max, sum_exp, sum_exp_z, target_logit;
};

/// The partials of rows h [n, H] (from chunk_rows) over the columns of w [V, H] in tiles of
/// `block` columns; targets [n] are column indices of w (any value outside [0, V) is "not here").
inline LogitPartials chunk_partials(const at::Tensor& h, const at::Tensor& w, const at::Tensor& targets,
                                    std::int64_t block, const LogitPlan& plan, TileBuffers& buffers, bool with_entropy) {
  const std::int64_t vocab = w.size(0);
  at::Tensor running_max, sum_exp, sum_exp_z;  // M, S, T of the running log-sum-exp
  at::Tensor target_logit = at::zeros({h.size(0)}, buffers.logits.options());
  for (std::int64_t v0 = 0; v0 < vocab; v0 += block) {
    const std::int64_t vb = std::min(block, vocab - v0);
    at::Tensor z = tile_logits(h, w.narrow(0, v0, vb), plan, buffers.logits);  // [n, vb]
    const TileTargets tile_targets(targets, v0, vb);
    target_logit = at::where(tile_targets.inside, z.gather(1, tile_targets.column).squeeze(1), target_logit);
    const at::Tensor tile_max = z.amax({1});
    const at::Tensor new_max = running_max.defined() ? at::maximum(running_max, tile_max) : tile_max;
    z.sub_(new_max.unsqueeze(1));
    const at::Tensor e = buffers.exp_of(z);
    const at::Tensor tile_sum = e.sum({1});
    // sum_v e_v z_v as a batched row dot: no [n, vb] product temporary
    const at::Tensor tile_dot = with_entropy ? e.unsqueeze(1).bmm(z.unsqueeze(2)).view({z.size(0)}) : at::Tensor();
    if (!running_max.defined()) {
      running_max = new_max;
      sum_exp = tile_sum;
      sum_exp_z = tile_dot;
      continue;
    }
    // Re-base the running sums from the old max M to the new one M': scale exp(M - M'), and each
    // old term (z - M) becomes (z - M') = (z - M) + (M - M').
    const at::Tensor shift = running_max.sub(new_max);  // <= 0
    const at::Tensor scale = shift.exp();
    if (with_entropy) sum_exp_z = sum_exp_z.add(shift.mul(sum_exp)).mul_(scale).add_(tile_dot);
    sum_exp = sum_exp.mul(scale).add_(tile_sum);
    running_max = new_max;
  }
  return {running_max, sum_exp, sum_exp_z, target_logit};
}

/// lse = M + log S, logprob = z_target - lse, entropy = log S - Tz / S from the partials of all
/// the columns; entropy_out undefined: not computed.
inline void finish_partials(LogitPartials p, at::Tensor lse_out, at::Tensor logprob_out, at::Tensor entropy_out) {
  const at::Tensor log_sum = p.sum_exp.log();
  lse_out.copy_(p.max.add(log_sum));
  logprob_out.copy_(p.target_logit.sub_(p.max).sub_(log_sum));
  if (entropy_out.defined()) entropy_out.copy_(log_sum.sub(p.sum_exp_z.div(p.sum_exp)));
}

/// Forward of one chunk in vocabulary tiles: writes lse, the target's log-prob (its logit minus
/// lse) and, if entropy_out is defined, the entropy. h: [n, H] from chunk_rows; w: [V, H];
/// targets: [n].
inline void forward_chunk_tiles(const at::Tensor& h, const at::Tensor& w, const at::Tensor& targets,
                                std::int64_t block, const LogitPlan& plan, TileBuffers& buffers, at::Tensor lse_out,
                                at::Tensor logprob_out, at::Tensor entropy_out) {
  finish_partials(chunk_partials(h, w, targets, block, plan, buffers, entropy_out.defined()), lse_out, logprob_out,
                  entropy_out);
}

/// Forward in vocabulary tiles, chunk by chunk: fills lse, logprobs and (if defined) entropy [N].
inline void forward_tiles(const at::Tensor& hidden, const at::Tensor& w, const at::Tensor& targets,
                          std::int64_t chunk_size, std::int64_t block, const LogitPlan& plan, at::Tensor& lse,
                          at::Tensor& logprobs, at::Tensor& entropy) {
  const std::int64_t n_tokens = hidden.size(0);
  TileBuffers buffers(std::min(chunk_size, n_tokens), block, lse.options());
  for (std::int64_t start = 0; start < n_tokens; start += chunk_size) {
    const std::int64_t n = std::min(chunk_size, n_tokens - start);
    forward_chunk_tiles(chunk_rows(hidden, start, n, w, plan), w, targets.narrow(0, start, n), block, plan, buffers,
                        lse.narrow(0, start, n), logprobs.narrow(0, start, n),
                        entropy.defined() ? entropy.narrow(0, start, n) : at::Tensor());
  }
}

/// Backward in vocabulary tiles (see the comment of ChunkedTokenLogprobs::backward for dL/dz):
/// per chunk and tile, dz = dL/dz (with the target's +g added in the tile that holds it),
/// dL/dh += dz W_tile, dL/dW_tile += dz^T h; g and e carry the 1/T of z = h W^T / T.
/// grad_hidden / grad_weight: undefined when not wanted.
inline void backward_tiles(const at::Tensor& hidden, const at::Tensor& w, const at::Tensor& targets,
                           const at::Tensor& lse, const at::Tensor& entropy, const at::Tensor& grad_logprob,
                           const at::Tensor& grad_entropy, std::int64_t chunk_size, std::int64_t block,
                           const LogitPlan& plan, at::Tensor& grad_hidden, at::Tensor& grad_weight) {
  const std::int64_t n_tokens = hidden.size(0);
  const std::int64_t vocab = w.size(0);
  const auto logit_options = lse.options();
  TileBuffers buffers(std::min(chunk_size, n_tokens), block, logit_options);
  for (std::int64_t start = 0; start < n_tokens; start += chunk_size) {
    const std::int64_t n = std::min(chunk_size, n_tokens - start);
    const at::Tensor h = chunk_rows(hidden, start, n, w, plan);
    const at::Tensor t = targets.narrow(0, start, n);
    const at::Tensor g = grad_logprob.defined()
                             ? grad_logprob.narrow(0, start, n).to(plan.logit_type).mul(plan.inv_temperature).unsqueeze(1)
                             : at::zeros({n, 1}, logit_options);
    const at::Tensor e = grad_entropy.defined()
                             ? grad_entropy.narrow(0, start, n).to(plan.logit_type).mul(plan.inv_temperature).unsqueeze(1)
                             : at::Tensor();
    const at::Tensor lse_c = lse.narrow(0, start, n).unsqueeze(1);
    const at::Tensor entropy_c = e.defined() ? entropy.narrow(0, start, n).unsqueeze(1) : at::Tensor();
    at::Tensor acc = at::zeros({n, h.size(1)}, logit_options);  // dL/dh of this chunk
    for (std::int64_t v0 = 0; v0 < vocab; v0 += block) {
      const std::int64_t vb = std::min(block, vocab - v0);
      const at::Tensor w_tile = w.narrow(0, v0, vb);
      at::Tensor dz = tile_logits(h, w_tile, plan, buffers.logits);  // z, then log p, then dL/dz in place
      dz.sub_(lse_c);
      if (e.defined()) {
        const at::Tensor p = buffers.exp_of(dz);
        dz.add_(entropy_c).mul_(e).add_(g).mul_(p).neg_();
      } else {
        dz.exp_().mul_(g).neg_();
      }
      const TileTargets tile_targets(t, v0, vb);
      dz.scatter_add_(1, tile_targets.column, g.mul(tile_targets.inside.unsqueeze(1)));
      if (plan.mixed_mm) {
        const at::Tensor dz_w = dz.to(w.scalar_type());
        if (grad_hidden.defined()) acc.add_(at::mm(dz_w, w_tile, plan.logit_type));
        if (grad_weight.defined()) grad_weight.narrow(0, v0, vb).add_(at::mm(dz_w.t(), h, plan.logit_type));
      } else {
        if (grad_hidden.defined()) acc.addmm_(dz, w_tile);
        if (grad_weight.defined()) grad_weight.narrow(0, v0, vb).addmm_(dz.t(), h);
      }
    }
    if (grad_hidden.defined()) grad_hidden.narrow(0, start, n).copy_(acc);
  }
}

/// The autograd function behind token_logprobs. Inputs: hidden [N, H], weight [V, H],
/// targets [N] int64 (already in range). Outputs: logprobs [N], and entropy [N] if asked for.
struct ChunkedTokenLogprobs : torch::autograd::Function<ChunkedTokenLogprobs> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                                const at::Tensor& weight, const at::Tensor& targets,
                                                std::int64_t chunk_size, double temperature, bool with_entropy,
                                                std::int64_t vocab_block) {
    const LogitPlan plan = make_logit_plan(weight, temperature);
    const at::Tensor w = plan.upcast ? weight.to(plan.logit_type) : weight;
    const std::int64_t n_tokens = hidden.size(0);
    const auto out_options = hidden.options().dtype(plan.logit_type);
    at::Tensor logprobs = at::empty({n_tokens}, out_options);
    at::Tensor lse = at::empty({n_tokens}, out_options);
    at::Tensor entropy = with_entropy ? at::empty({n_tokens}, out_options) : at::Tensor();
    if (vocab_block > 0) {
      forward_tiles(hidden, w, targets, chunk_size, vocab_block, plan, lse, logprobs, entropy);
    } else {
      for (std::int64_t start = 0; start < n_tokens; start += chunk_size) {
        const std::int64_t n = std::min(chunk_size, n_tokens - start);
        at::Tensor logits = chunk_logits(hidden.narrow(0, start, n), w, plan);  // [n, V]
        at::Tensor lse_c = logits.logsumexp({1});                                // [n]
        at::Tensor target_logit = logits.gather(1, targets.narrow(0, start, n).unsqueeze(1)).squeeze(1);
        logprobs.narrow(0, start, n).copy_(target_logit.sub(lse_c));
        lse.narrow(0, start, n).copy_(lse_c);
        if (with_entropy) {
          // entropy = -sum_v p_v log p_v; the row dot as a bmm [n,1,V] x [n,V,1] needs no [n, V] temporary.
          at::Tensor& log_p = logits.sub_(lse_c.unsqueeze(1));
          at::Tensor p = log_p.exp();
          entropy.narrow(0, start, n).copy_(p.unsqueeze(1).bmm(log_p.unsqueeze(2)).view({n}).neg_());
        }
      }
    }
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["vocab_block"] = vocab_block;
    ctx->save_for_backward({hidden, weight, targets, lse, entropy});
    ctx->set_materialize_grads(false);
    if (with_entropy) return {logprobs, entropy};
    return {logprobs};
  }

  // Per token with z = logits, p = softmax(z), g = dL/dlogprob, e = dL/dentropy:
  //   d logprob / dz_v = [v = target] - p_v
  //   d entropy / dz_v = -p_v (log p_v + entropy)
  //     (H = -sum_k p_k log p_k, dp_k/dz_v = p_k ([k = v] - p_v), so
  //      dH/dz_v = -sum_k (log p_k + 1) p_k ([k = v] - p_v) = -p_v (log p_v + 1) + p_v (1 - H))
  //   dL/dz_v = g [v = target] - p_v (g + e (log p_v + entropy))
  // and z = h W^T / T gives dL/dh = (dL/dz / T) W, dL/dW = (dL/dz / T)^T h, chunk by chunk.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& hidden = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& targets = saved[2];
    const at::Tensor& lse = saved[3];
    const at::Tensor& entropy = saved[4];
    const std::int64_t chunk_size = ctx->saved_data["chunk_size"].toInt();
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const std::int64_t vocab_block = ctx->saved_data["vocab_block"].toInt();
    const at::Tensor grad_logprob = grads[0];
    const at::Tensor grad_entropy = grads.size() > 1 ? grads[1] : at::Tensor();
    const bool want_hidden = ctx->needs_input_grad(0);
    const bool want_weight = ctx->needs_input_grad(1);
    torch::autograd::variable_list result(7);
    if ((!grad_logprob.defined() && !grad_entropy.defined()) || (!want_hidden && !want_weight)) return result;

    const LogitPlan plan = make_logit_plan(weight, temperature);
    const at::Tensor w = plan.upcast ? weight.to(plan.logit_type) : weight;
    const std::int64_t n_tokens = hidden.size(0);
    // Gradients accumulate in w's dtype: float32/64, or bf16/f16 on CUDA (the GEMM accumulates in
    // float32 inside a chunk and rounds once per chunk).
    at::Tensor grad_hidden = want_hidden ? at::empty(hidden.sizes(), hidden.options().dtype(w.scalar_type())) : at::Tensor();
    at::Tensor grad_weight = want_weight ? at::zeros(w.sizes(), w.options()) : at::Tensor();
    if (vocab_block > 0) {
      backward_tiles(hidden, w, targets, lse, entropy, grad_logprob, grad_entropy, chunk_size, vocab_block, plan,
                     grad_hidden, grad_weight);
    } else {
      for (std::int64_t start = 0; start < n_tokens; start += chunk_size) {
        const std::int64_t n = std::min(chunk_size, n_tokens - start);
        const at::Tensor h = hidden.narrow(0, start, n);
        const at::Tensor g = grad_logprob.defined() ? grad_logprob.narrow(0, start, n).to(plan.logit_type).unsqueeze(1)
                                                    : at::zeros({n, 1}, lse.options());
        at::Tensor grad_z = chunk_logits(h, w, plan);  // [n, V] logits, reused in place as dL/dz
        grad_z.sub_(lse.narrow(0, start, n).unsqueeze(1));  // log p
        if (grad_entropy.defined()) {
          const at::Tensor e = grad_entropy.narrow(0, start, n).to(plan.logit_type).unsqueeze(1);
          at::Tensor p = grad_z.exp();
          grad_z.add_(entropy.narrow(0, start, n).unsqueeze(1)).mul_(e).add_(g).mul_(p).neg_();
        } else {
          grad_z.exp_().mul_(g).neg_();
        }
        grad_z.scatter_add_(1, targets.narrow(0, start, n).unsqueeze(1), g);
        if (plan.inv_temperature != 1.0) grad_z.mul_(plan.inv_temperature);
        if (grad_z.scalar_type() != w.scalar_type()) grad_z = grad_z.to(w.scalar_type());
        if (want_hidden) {
          at::Tensor rows = grad_hidden.narrow(0, start, n);
          at::mm_out(rows, grad_z, w);
        }
        if (want_weight) grad_weight.addmm_(grad_z.t(), h.to(w.scalar_type()));
      }
    }
    if (want_hidden) result[0] = grad_hidden.to(hidden.scalar_type());
    if (want_weight) result[1] = grad_weight.to(weight.scalar_type());
    return result;
  }
};

}  // namespace detail

/// Log-probabilities of `targets` (and entropies) under softmax(hidden W^T / temperature).
///   hidden: [..., H] float/bf16/f16, weight: [V, H] same dtype, targets: [...] int64
///   -> logprobs [...] (and entropy [...]) float32, float64 for float64 inputs; differentiable
///      w.r.t. hidden and weight (once; no double backward).
/// Memory beyond inputs and outputs: O(chunk_size x V), never O(N x V). Out-of-range targets
/// throw grpo::Error on the CPU; on CUDA (where checking would synchronise) they give NaN.
inline TokenLogprobResult token_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                     const TokenLogprobOptions& options = {}) {
  detail::check_token_logprob_inputs(hidden, weight, targets, options);
  const std::int64_t vocab = weight.size(0);
  const at::Tensor flat_hidden = hidden.reshape({-1, hidden.size(-1)});
  at::Tensor flat_targets = targets.reshape({-1}).to(at::kLong);
  at::Tensor valid;
  if (flat_targets.is_cpu()) {
    if (flat_targets.numel() > 0) {
      const auto low = flat_targets.min().item<std::int64_t>();
      const auto high = flat_targets.max().item<std::int64_t>();
      if (low < 0 || high >= vocab)
        throw Error(fmt::format("grpo::token_logprobs: expected targets in [0, V = {}), found {}; check the "
                                "tokenizer's vocabulary against the model's",
                                vocab, low < 0 ? low : high));
    }
  } else {
    valid = flat_targets.ge(0).logical_and_(flat_targets.lt(vocab));
    flat_targets = at::where(valid, flat_targets, 0);
  }
  auto outputs = detail::ChunkedTokenLogprobs::apply(flat_hidden, weight, flat_targets, options.chunk_size,
                                                     options.temperature, options.compute_entropy,
                                                     detail::resolve_vocab_block(options, weight));
  TokenLogprobResult result;
  result.logprobs = outputs[0];
  if (valid.defined()) result.logprobs = at::where(valid, result.logprobs, std::nan(""));
  result.logprobs = result.logprobs.view(targets.sizes());
  if (options.compute_entropy) result.entropy = outputs[1].view(targets.sizes());
  return result;
}

}  // namespace grpo
