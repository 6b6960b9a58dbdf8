#pragma once
// One sampling step: next-token logits -> the sampled tokens and their log-probabilities.
//
// The distribution (what "sampling distribution" means for the log-probs, as vLLM reports them):
//   1. z = logits / temperature                             (float32)
//   2. top-k: tokens whose z is below the k-th largest z -> -inf (ties with the k-th stay, as in
//      transformers' TopKLogitsWarper and vLLM)
//   3. top-p: a token is dropped when the probability (after step 2) of it and of every less
//      likely token sums to <= 1 - top_p: transformers' TopPLogitsWarper, summed in the same
//      (ascending) order; the most likely token always stays
//   4. p = softmax(z); logprob = log p[token]
// Greedy decoding takes argmax(logits) (the first index on ties, as torch.argmax) and reports
// log softmax(logits)[token] at temperature 1, the model's own log-prob: under the point mass
// greedy samples from, every log-prob would be 0, which helps nobody.
//
// Sampling is by inversion with one uniform number u per row: the token is the first whose
// cumulative probability exceeds u * (total mass), cumulated in float64 over the sorted order
// (when top-k/top-p sorted) or over token ids. One number per row per step, drawn on the host
// from the row's own generator, makes a request's draws independent of the batch it is in and of
// the device: the same seed gives the same completion on a CPU or a GPU, alone or in a batch, up
// to the rare flip when u falls within rounding error of a cumulative-probability boundary.

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/full.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sort.h>
#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <tuple>

#include "grpo/core/error.hpp"
#include "grpo/core/generation.hpp"

namespace grpo {

/// The tokens of one step and their log-probabilities.
struct SampledTokens {
  at::Tensor tokens;    ///< [B] int64
  at::Tensor logprobs;  ///< [B] float32, under the sampling distribution (see the header)
  at::Tensor valid;     ///< [B] bool: false when the row's logits had no finite mass (NaN/-inf everywhere)
};

/// Throws grpo::Error unless the sampling settings make sense: temperature > 0 (unless greedy),
/// top_p in (0, 1], top_k >= 0, max_new_tokens >= 0, no empty stop string.
inline void validate_sampling_options(const SamplingOptions& options) {
  const auto where = std::string("SamplingOptions.");
  if (!options.greedy && !(options.temperature > 0.0 && std::isfinite(options.temperature))) {
    throw Error(fmt::format("{}temperature: expected a finite value > 0, found {}; use .greedy = true for argmax "
                            "decoding",
                            where, options.temperature));
  }
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) {
    throw Error(fmt::format("{}top_p: expected a value in (0, 1], found {}; 1 disables it", where, options.top_p));
  }
  if (options.top_k < 0) {
    throw Error(fmt::format("{}top_k: expected >= 0 (0 disables it), found {}", where, options.top_k));
  }
  if (options.max_new_tokens < 0) {
    throw Error(fmt::format("{}max_new_tokens: expected >= 0, found {}", where, options.max_new_tokens));
  }
  for (const auto& stop : options.stop_strings) {
    if (stop.empty()) throw Error(where + "stop_strings: an empty stop string would end every completion at once");
  }
  if (options.max_batch_rows < 0) {
    throw Error(fmt::format("{}max_batch_rows: expected >= 0 (0 = every request at once), found {}", where,
                            options.max_batch_rows));
  }
}

namespace detail {

/// Steps 1-3 of the header: tempered, top-k/top-p filtered float32 logits (-inf = removed).
/// Without top-k/top-p: [B, V] in token order, `order` undefined. With them: descending order,
/// `order` holds the token id of each position, and the width is V or, when the candidate path
/// below leaves the removed tokens out, smaller.
struct FilteredLogits {
  at::Tensor logits;
  at::Tensor order;
};

/// The fast path of filter_logits: the same result computed over the `candidates` most likely
/// tokens instead of a sort of the whole vocabulary (a [B, 151,936] stable sort per decoded token
/// costs more than a small model's forward). With v the (candidates + 1)-th largest value of a
/// row, every token at or below v is outside or tied with the outside. It applies when, in every
/// row, that provably changes nothing:
///   - top-k: the k-th largest value is strictly above v, so the k-th and its ties are inside;
///   - top-p alone: the tokens at or below v hold at most 1 - top_p - 1e-5 of the probability,
///     so top-p drops every one of them (a token's tail mass is at most theirs);
///   - no kept candidate's tail mass is within 1e-5 of 1 - top_p, where the two paths' rounding
///     could disagree.
/// Otherwise it returns nothing and the caller sorts. Ties inside are ordered by token id, as
/// the stable sort orders them. `z`: tempered float32 logits [B, V]. Result: [B, candidates]
/// descending (-inf = removed), with `order`.
inline std::optional<FilteredLogits> filter_logits_candidates(const at::Tensor& z, const SamplingOptions& options,
                                                              std::int64_t candidates) {
  if (z.dim() != 2) return std::nullopt;
  const auto vocab = z.size(-1);
  const bool top_k = options.top_k > 0 && options.top_k < vocab;
  if (candidates <= 0 || candidates + 1 >= vocab || (top_k && options.top_k > candidates)) return std::nullopt;
  auto [values, ids] = z.topk(candidates + 1, -1, /*largest=*/true, /*sorted=*/true);
  const auto next = values.narrow(-1, candidates, 1);  // [B, 1] the largest value left outside
  // NaN, +inf or an all -inf row: the full path reports it (valid = false).
  if (!values.select(-1, 0).isfinite().all().item<bool>()) return std::nullopt;
  if (top_k && !(values.narrow(-1, options.top_k - 1, 1) > next).all().item<bool>()) return std::nullopt;
  values = values.narrow(-1, 0, candidates);
  ids = ids.narrow(-1, 0, candidates);
  // Order ties by token id: sort by id, then stable-sort by value (descending).
  const auto [by_id, perm] = ids.sort(-1);
  values = values.gather(-1, perm);
  const auto [sorted, order_in] = values.sort(/*stable=*/true, -1, /*descending=*/true);
  FilteredLogits out{sorted, by_id.gather(-1, order_in)};
  const auto neg_inf = -std::numeric_limits<float>::infinity();
  if (top_k) {
    const auto kth = out.logits.narrow(-1, options.top_k - 1, 1);
    out.logits = out.logits.masked_fill(out.logits < kth, neg_inf);
  }
  if (options.top_p < 1.0) {
    const double threshold = 1.0 - options.top_p;
    at::Tensor probs, outside;
    if (top_k) {  // every token top-k keeps is a candidate: the softmax over them is the whole one
      probs = at::softmax(out.logits, -1);
      outside = at::zeros_like(probs.narrow(-1, 0, 1));
    } else {
      out.logits = out.logits.masked_fill(out.logits <= next, neg_inf);  // ties with the outside go with it
      probs = (out.logits - z.logsumexp({-1}, /*keepdim=*/true)).exp();
      outside = (1.0 - probs.to(at::kDouble).sum(-1, /*keepdim=*/true)).clamp_min(0.0).to(at::kFloat);
      if (!(outside <= threshold - 1e-5).all().item<bool>()) return std::nullopt;
    }
    const auto tail = probs.flip({-1}).cumsum(-1).flip({-1}) + outside;
    const auto kept = out.logits.isfinite();
    if ((tail - threshold).abs().lt(1e-5).logical_and(kept).any().item<bool>()) return std::nullopt;
    auto drop = tail <= threshold;
    drop.select(-1, 0).fill_(false);
    out.logits = out.logits.masked_fill(drop, neg_inf);
  }
  return out;
}

/// How many candidates filter_logits tries before it sorts the whole vocabulary.
inline constexpr std::array<std::int64_t, 2> kFilterCandidates{64, 1024};

inline FilteredLogits filter_logits(const at::Tensor& logits, const SamplingOptions& options,
                                    std::span<const std::int64_t> candidates = kFilterCandidates) {
  FilteredLogits out{logits.to(at::kFloat), at::Tensor()};
  if (options.temperature != 1.0) out.logits = out.logits / options.temperature;
  const auto vocab = out.logits.size(-1);
  const bool top_k = options.top_k > 0 && options.top_k < vocab;
  if (!top_k && options.top_p >= 1.0) return out;
  for (const auto k : candidates) {
    if (auto fast = filter_logits_candidates(out.logits, options, k)) return *std::move(fast);
  }
  const auto neg_inf = -std::numeric_limits<float>::infinity();
  std::tie(out.logits, out.order) = out.logits.sort(/*stable=*/true, -1, /*descending=*/true);
  if (top_k) {
    const auto kth = out.logits.narrow(-1, options.top_k - 1, 1);  // [B, 1] the k-th largest
    out.logits = out.logits.masked_fill(out.logits < kth, neg_inf);
  }
  if (options.top_p < 1.0) {
    // tail[j] = sum of probs at sorted positions >= j (this token and the less likely ones),
    // accumulated from the least likely up, as transformers' ascending cumsum.
    const auto tail = at::softmax(out.logits, -1).flip({-1}).cumsum(-1).flip({-1});
    auto drop = tail <= 1.0 - options.top_p;
    drop.select(-1, 0).fill_(false);
    out.logits = out.logits.masked_fill(drop, neg_inf);
  }
  return out;
}

}  // namespace detail

/// log softmax of the filtered, tempered logits: [B, V] float32 in token order, -inf for removed
/// tokens (steps 1-4 of the header; greedy: the plain log softmax). What sample_tokens samples from.
inline at::Tensor sampling_logprobs(const at::Tensor& logits, const SamplingOptions& options,
                                   std::span<const std::int64_t> candidates = detail::kFilterCandidates) {
  if (options.greedy) return at::log_softmax(logits.to(at::kFloat), -1);
  const auto filtered = detail::filter_logits(logits, options, candidates);
  const auto logp = at::log_softmax(filtered.logits, -1);
  if (!filtered.order.defined()) return logp;
  // token order: out[order[j]] = logp[j]; tokens outside `order` were removed (-inf)
  return at::full(logits.sizes(), -std::numeric_limits<float>::infinity(), logp.options()).scatter_(-1, filtered.order, logp);
}

/// Samples one token per row. logits: [B, V] (any float dtype, any device); uniforms: [B]
/// float64 in [0, 1) on the CPU (ignored when greedy), one per row from the row's generator.
/// `candidates`: the candidate counts filter_logits tries before a full sort; empty = always
/// sort (what a captured CUDA graph needs: the candidate path decides on the host).
inline SampledTokens sample_tokens(const at::Tensor& logits, const at::Tensor& uniforms, const SamplingOptions& options,
                                   std::span<const std::int64_t> candidates = detail::kFilterCandidates) {
  if (logits.dim() != 2 || logits.size(1) == 0) throw Error("sample_tokens: expected logits [batch, vocab > 0]");
  SampledTokens out;
  if (options.greedy) {
    const auto z = logits.to(at::kFloat);
    out.tokens = at::argmax(z, -1);
    out.logprobs = at::log_softmax(z, -1).gather(-1, out.tokens.unsqueeze(-1)).squeeze(-1);
    out.valid = out.logprobs.isfinite();
    return out;
  }
  if (!uniforms.defined() || uniforms.numel() != logits.size(0)) {
    throw Error(fmt::format("sample_tokens: expected one uniform number per row ({})", logits.size(0)));
  }
  const auto filtered = detail::filter_logits(logits, options, candidates);
  const auto vocab = filtered.logits.size(-1);                  // V, or fewer on the candidate path
  const auto logp = at::log_softmax(filtered.logits, -1);        // [B, width] float32
  const auto cdf = at::cumsum(logp.exp().to(at::kDouble), -1);  // [B, width] float64
  const auto total = cdf.select(-1, vocab - 1);
  // u < 1 - 2^-40 keeps the target strictly below the total mass despite rounding, so the first
  // position whose cumulative mass exceeds it always has probability > 0.
  const auto u = uniforms.to(cdf.device()).to(at::kDouble).clamp(0.0, 1.0 - std::ldexp(1.0, -40));
  const auto target = (u * total).unsqueeze(-1);
  const auto position = at::searchsorted(cdf, target, /*out_int32=*/false, /*right=*/true).clamp_max(vocab - 1);
  out.logprobs = logp.gather(-1, position).squeeze(-1);
  out.tokens = filtered.order.defined() ? filtered.order.gather(-1, position).squeeze(-1) : position.squeeze(-1);
  out.valid = total.isfinite().logical_and(total > 0.5);
  return out;
}

}  // namespace grpo
