#pragma once
// grpo::vocab_parallel_token_logprobs: token_logprobs when the output projection is split by
// vocabulary rows over a tensor-parallel group (each rank holds W_r = rows [s_r, s_r + V/T)).
// No rank ever holds [N, V] logits, nor all of W.
//
// Each rank reduces its columns chunk by chunk (grpo/loss/token_logprobs.hpp's tiles) to
//   M_r = max_v z_v,  S_r = sum_v exp(z_v - M_r),  Tz_r = sum_v exp(z_v - M_r) (z_v - M_r),
//   z_target if the target is among its columns (else 0)
// and the group combines them (one max and one sum per chunk):
//   M = max_r M_r,  S = sum_r exp(M_r - M) S_r,
//   Tz = sum_r exp(M_r - M) (Tz_r + (M_r - M) S_r)        (each term (z - M_r) -> (z - M))
//   lse = M + log S,  logprob = z_target - lse,  entropy = log S - Tz / S
// Backward needs only lse and entropy, which every rank has: each rank forms dL/dz of its own
// columns (token_logprobs' formula), so dL/dW_r is local and dL/dh is a partial sum, summed over
// the group by copy_to_tensor_group on the way in.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>

#include "grpo/core/error.hpp"
#include "grpo/distributed/tensor_parallel.hpp"
#include "grpo/loss/token_logprobs.hpp"

namespace grpo {

namespace detail {

/// Partials of all ranks combined in place into the whole vocabulary's (see the file comment).
inline void combine_partials(LogitPartials& p, Communicator& group, bool with_entropy) {
  const auto device = p.max.device();
  const auto type = p.max.scalar_type();
  at::Tensor global_max = p.max.to(group.device(), type, false, /*copy=*/true).contiguous();
  group.all_reduce_max(global_max);
  global_max = global_max.to(device);
  const at::Tensor shift = p.max.sub(global_max);  // M_r - M <= 0
  const at::Tensor scale = shift.exp();
  std::vector<at::Tensor> parts{p.sum_exp.mul(scale), p.target_logit};
  if (with_entropy) parts.push_back(p.sum_exp_z.add(shift.mul(p.sum_exp)).mul_(scale));
  at::Tensor sums = at::stack(parts).to(group.device(), type, false, /*copy=*/true).contiguous();
  group.all_reduce_sum(sums);
  sums = sums.to(device);
  p.max = global_max;
  p.sum_exp = sums[0];
  p.target_logit = sums[1].clone();
  if (with_entropy) p.sum_exp_z = sums[2];
}

/// The autograd function behind vocab_parallel_token_logprobs. Inputs: hidden [N, H] (the same
/// on every rank), weight [V/T, H] (this rank's rows), targets [N] int64 ids of the whole
/// vocabulary minus this rank's first id (so "here" is [0, V/T)). Outputs as ChunkedTokenLogprobs.
struct VocabParallelTokenLogprobs : torch::autograd::Function<VocabParallelTokenLogprobs> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                                const at::Tensor& weight, const at::Tensor& local_targets,
                                                std::int64_t chunk_size, double temperature, bool with_entropy,
                                                std::int64_t vocab_block, std::int64_t group_handle_value) {
    Communicator& group = *reinterpret_cast<Communicator*>(static_cast<std::intptr_t>(group_handle_value));
    const LogitPlan plan = make_logit_plan(weight, temperature);
    const at::Tensor w = plan.upcast ? weight.to(plan.logit_type) : weight;
    const std::int64_t n_tokens = hidden.size(0);
    const std::int64_t block = vocab_block > 0 ? std::min(vocab_block, w.size(0)) : w.size(0);
    const auto out_options = hidden.options().dtype(plan.logit_type);
    at::Tensor logprobs = at::empty({n_tokens}, out_options);
    at::Tensor lse = at::empty({n_tokens}, out_options);
    at::Tensor entropy = with_entropy ? at::empty({n_tokens}, out_options) : at::Tensor();
    TileBuffers buffers(std::max<std::int64_t>(1, std::min(chunk_size, n_tokens)), block, out_options);
    // Every rank runs the same number of chunks (N is the same on every rank of the group).
    for (std::int64_t start = 0; start < n_tokens; start += chunk_size) {
      const std::int64_t n = std::min(chunk_size, n_tokens - start);
      LogitPartials p = chunk_partials(chunk_rows(hidden, start, n, w, plan), w, local_targets.narrow(0, start, n),
                                       block, plan, buffers, with_entropy);
      combine_partials(p, group, with_entropy);
      finish_partials(p, lse.narrow(0, start, n), logprobs.narrow(0, start, n),
                      with_entropy ? entropy.narrow(0, start, n) : at::Tensor());
    }
    // What ChunkedTokenLogprobs saves, so its backward serves this function too (block > 0: tiles).
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["vocab_block"] = block;
    ctx->save_for_backward({hidden, weight, local_targets, lse, entropy});
    ctx->set_materialize_grads(false);
    if (with_entropy) return {logprobs, entropy};
    return {logprobs};
  }

  // dL/dz_v of this rank's columns is ChunkedTokenLogprobs::backward's, with the global lse and
  // entropy saved above and the targets local ("not here" outside [0, V/T)): its tile path, as it
  // is. dL/dh is this rank's part of the sum over columns (copy_to_tensor_group sums it).
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto result = ChunkedTokenLogprobs::backward(ctx, std::move(grads));
    result.resize(8);  // one more input here: the group handle
    return result;
  }
};

}  // namespace detail

/// token_logprobs (same options, same results up to float rounding of the sums) with `weight`
/// this rank's rows [vocab_start, vocab_start + V/T) of the output projection and `hidden` the
/// same on every rank of `tp`'s group. targets: ids of the whole vocabulary. Differentiable
/// w.r.t. hidden (gradient summed over the group) and this rank's weight rows. Without a group
/// it is token_logprobs.
inline TokenLogprobResult vocab_parallel_token_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                                                        const at::Tensor& targets, std::int64_t vocab_start,
                                                        const TensorParallel& tp, const TokenLogprobOptions& options = {}) {
  if (!tp.active()) return token_logprobs(hidden, weight, targets, options);
  detail::check_token_logprob_inputs(hidden, weight, targets, options);
  const std::int64_t vocab = weight.size(0) * tp.size();
  at::Tensor flat_targets = targets.reshape({-1}).to(at::kLong);
  at::Tensor valid;  // CUDA: out-of-range targets give NaN (as token_logprobs), without a host sync
  if (!flat_targets.is_cpu()) {
    valid = flat_targets.ge(0).logical_and_(flat_targets.lt(vocab));
    flat_targets = at::where(valid, flat_targets, 0);
  } else if (flat_targets.numel() > 0) {
    const auto low = flat_targets.min().item<std::int64_t>();
    const auto high = flat_targets.max().item<std::int64_t>();
    if (low < 0 || high >= vocab)
      throw Error(fmt::format("grpo::vocab_parallel_token_logprobs: expected targets in [0, V = {}), found {}; check "
                              "the tokenizer's vocabulary against the model's",
                              vocab, low < 0 ? low : high));
  }
  const at::Tensor flat_hidden = copy_to_tensor_group(hidden.reshape({-1, hidden.size(-1)}), tp);
  auto outputs = detail::VocabParallelTokenLogprobs::apply(
      flat_hidden, weight, flat_targets.sub(vocab_start), options.chunk_size, options.temperature, options.compute_entropy,
      detail::resolve_vocab_block(options, weight), detail::group_handle(tp.group));
  TokenLogprobResult result;
  result.logprobs = valid.defined() ? at::where(valid, outputs[0], std::nan("")) : outputs[0];
  result.logprobs = result.logprobs.view(targets.sizes());
  if (options.compute_entropy) result.entropy = outputs[1].view(targets.sizes());
  return result;
}

}  // namespace grpo
