#pragma once
// Grouped-query self-attention of Qwen2 (q/k/v projections with bias, o_proj without), rotary
// positions, through at::scaled_dot_product_attention.
//
// Query head h reads key/value head h / G, G = num_heads / num_kv_heads (transformers' repeat_kv
// order). Prefill and training expand k/v to num_heads; a one-token decode step instead folds the
// G query heads of a group into SDPA's query-length axis, q: [B, H, 1, D] -> [B, KV, G, D], so
// the cache is read as it is stored, with no copy of it per step.
//
// Tensor-parallel (grpo/model/qwen2_sharding.hpp): num_heads and num_kv_heads are this rank's
// heads; q/k/v are column-parallel (their input's gradient summed over the group), o_proj is
// row-parallel (its partial outputs summed over the group). Key/value heads replicated over
// kv_ranks_per_copy ranks sum their weights' gradients over those ranks.

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <fmt/format.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "grpo/core/error.hpp"
#include "grpo/distributed/tensor_parallel.hpp"
#include "grpo/model/kv_cache.hpp"
#include "grpo/model/layers.hpp"
#include "grpo/model/rotary.hpp"

namespace grpo {

/// Which keys each query may attend to, shared by every layer of one forward.
struct AttentionMask {
  at::Tensor allowed;   ///< [B or 1, 1, T, S] bool, true = may attend; undefined = see `causal`
  bool causal = false;  ///< no explicit mask: SDPA's is_causal (queries and keys aligned, T == S)
};

/// The mask for T queries at absolute slots [past, past + T) over keys [0, past + T).
/// key_valid: [B, S] bool (false = padding or unwritten slot; S = past + T, or more for a single
/// query) or undefined when no key is padding.
/// A padding query may always attend to itself, so no row is fully masked: fully masked rows give
/// NaN in SDPA's math path, and NaN in ignored positions still poisons gradients (0 * NaN).
inline AttentionMask make_attention_mask(const at::Tensor& key_valid, std::int64_t query_length, std::int64_t past,
                                         c10::Device device) {
  const auto keys = past + query_length;
  if (query_length == 1) {
    // One new token sees every valid slot; its own slot is valid (it was just written), and no
    // slot depends on `past` here, so a captured CUDA graph may replay this at any position.
    if (!key_valid.defined()) return {};
    return {key_valid.to(device).to(at::kBool).unsqueeze(1).unsqueeze(1), false};  // [B, 1, 1, S]
  }
  if (!key_valid.defined() && past == 0) return {at::Tensor(), true};  // plain causal: flash kernels apply
  const auto long_options = at::TensorOptions().device(device).dtype(at::kLong);
  const auto query_slots = (at::arange(query_length, long_options) + past).unsqueeze(1);  // [T, 1]
  const auto key_slots = at::arange(keys, long_options).unsqueeze(0);                     // [1, S]
  const auto causal = key_slots <= query_slots;                                           // [T, S]
  if (!key_valid.defined()) return {causal.unsqueeze(0).unsqueeze(0), false};
  const auto self = key_slots == query_slots;
  const auto allowed = (causal.unsqueeze(0) & key_valid.to(device).to(at::kBool).unsqueeze(1)) | self.unsqueeze(0);
  return {allowed.unsqueeze(1), false};  // [B, 1, T, S]
}

/// Dimensions of one attention block.
struct AttentionOptions {
  std::int64_t hidden_size = 0;   ///< model width; required
  std::int64_t num_heads = 0;     ///< query heads; required
  std::int64_t num_kv_heads = 0;  ///< key/value heads, divides num_heads; required
  std::int64_t head_dim = 0;      ///< per-head dimension (even); required
  TensorParallel tensor_parallel{};    ///< the group the heads are split over; default none
  std::int64_t kv_ranks_per_copy = 1;  ///< ranks of the group holding these key/value heads too; default 1
};

class Qwen2AttentionImpl : public torch::nn::Module {
 public:
  Qwen2AttentionImpl(const AttentionOptions& dims, const ParameterOptions& options = {}) : dims_(dims) {
    const auto where = std::string("Qwen2Attention: ");
    if (dims.hidden_size <= 0 || dims.num_heads <= 0 || dims.num_kv_heads <= 0 || dims.head_dim <= 0) {
      throw Error(fmt::format("{}expected hidden_size, num_attention_heads, num_key_value_heads and head_dim > 0, "
                              "found {}, {}, {}, {}",
                              where, dims.hidden_size, dims.num_heads, dims.num_kv_heads, dims.head_dim));
    }
    if (dims.num_heads % dims.num_kv_heads != 0) {
      throw Error(fmt::format("{}num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", where,
                              dims.num_heads, dims.num_kv_heads));
    }
    const auto q_width = dims.num_heads * dims.head_dim;
    const auto kv_width = dims.num_kv_heads * dims.head_dim;
    q_proj = register_module("q_proj", Projection(dims.hidden_size, q_width, true, options));
    k_proj = register_module("k_proj", Projection(dims.hidden_size, kv_width, true, options));
    v_proj = register_module("v_proj", Projection(dims.hidden_size, kv_width, true, options));
    o_proj = register_module("o_proj", Projection(q_width, dims.hidden_size, false, options));
  }

  // hidden: [B, T, hidden] -> [B, T, hidden]. With a cache, this layer's keys/values are appended
  // at the cache's position (the caller brackets the layers with begin_step/end_step).
  // sequence (no cache): hidden is this rank's tokens [B, T / group, hidden], and so is the result.
  at::Tensor forward(const at::Tensor& hidden, const RotaryTables& rotary, const AttentionMask& mask,
                     KVCache* cache = nullptr, std::int64_t layer_index = 0, bool sequence = false) {
    const auto& tp = dims_.tensor_parallel;
    const auto x = sequence ? gather_sequence(hidden, tp) : copy_to_tensor_group(hidden, tp);
    const auto batch = x.size(0);
    const auto length = x.size(1);
    const auto heads = dims_.num_heads;
    const auto kv_heads = dims_.num_kv_heads;
    const auto head_dim = dims_.head_dim;
    const auto groups = heads / kv_heads;
    // [B, T, n * D] -> [B, n, T, D]
    auto q = q_proj->forward(x).view({batch, length, heads, head_dim}).transpose(1, 2);
    auto k = key_value(*k_proj, x).view({batch, length, kv_heads, head_dim}).transpose(1, 2);
    auto v = key_value(*v_proj, x).view({batch, length, kv_heads, head_dim}).transpose(1, 2);
    q = apply_rotary(q, rotary);
    k = apply_rotary(k, rotary);
    if (cache != nullptr) std::tie(k, v) = cache->update(layer_index, k, v);

    const auto explicit_mask = mask.allowed.defined() ? std::optional<at::Tensor>(mask.allowed) : std::nullopt;
    at::Tensor out;  // -> [B, T, H * D]
    if (length == 1 && groups > 1) {
      // Decode: q [B, H, 1, D] -> [B, KV, G, D]; every folded query sees the same keys.
      const auto folded = q.reshape({batch, kv_heads, groups, head_dim});
      out = at::scaled_dot_product_attention(folded, k, v, explicit_mask).reshape({batch, 1, heads * head_dim});
    } else {
      if (groups > 1) {
        const auto keys = k.size(2);
        k = k.unsqueeze(2).expand({batch, kv_heads, groups, keys, head_dim}).reshape({batch, heads, keys, head_dim});
        v = v.unsqueeze(2).expand({batch, kv_heads, groups, keys, head_dim}).reshape({batch, heads, keys, head_dim});
      }
      out = at::scaled_dot_product_attention(q, k, v, explicit_mask, 0.0, mask.causal)
                .transpose(1, 2)
                .reshape({batch, length, heads * head_dim});
    }
    const auto partial = o_proj->forward(out);
    return sequence ? reduce_scatter_sequence(partial, tp) : reduce_from_tensor_group(partial, tp);
  }

  const AttentionOptions& dims() const { return dims_; }

  Projection q_proj{nullptr};
  Projection k_proj{nullptr};
  Projection v_proj{nullptr};
  Projection o_proj{nullptr};

 private:
  // k or v of x; with key/value heads replicated over ranks, through weights whose gradient is
  // summed over those ranks (no LoRA adapter on such a layer: tensor parallelism refuses LoRA).
  at::Tensor key_value(ProjectionImpl& projection, const at::Tensor& x) {
    if (dims_.kv_ranks_per_copy <= 1) return projection.forward(x);
    const auto& tp = dims_.tensor_parallel;
    return at::linear(x, share_gradient(projection.weight, tp, dims_.kv_ranks_per_copy),
                      share_gradient(projection.bias, tp, dims_.kv_ranks_per_copy));
  }

  AttentionOptions dims_;
};
TORCH_MODULE(Qwen2Attention);

}  // namespace grpo
