#pragma once
// How a Qwen2 model is split over a tensor-parallel group of T ranks (Megatron-LM's layout), and
// which slice of each Hugging Face tensor a rank holds.
//
//   q_proj, k_proj, v_proj   column-parallel by whole heads: weight [n * D, hidden] rows, bias [n * D]
//                            (rank r: query heads [r H/T, (r+1) H/T)); key/value heads split the
//                            same way when KV >= T, or replicated when T > KV: rank r then holds
//                            key/value head r / (T / KV), the one its query heads read
//   o_proj                   row-parallel: weight [hidden, H D] columns of this rank's heads
//   gate_proj, up_proj       column-parallel: weight [I, hidden] rows [r I/T, (r+1) I/T)
//   down_proj                row-parallel: weight [hidden, I] columns of the same slice
//   embed_tokens, lm_head    vocabulary-parallel: weight [V, hidden] rows [r V/T, (r+1) V/T)
//   norms, score             replicated (every rank holds all of it)
//
// Names are Hugging Face's, shapes are this rank's: a checkpoint maps 1:1 after narrowing each
// tensor to the rank's slice (grpo/model/qwen2_checkpoint.hpp).

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/distributed/tensor_parallel.hpp"
#include "grpo/model/qwen2_config.hpp"

namespace grpo {

/// The sizes one rank of a tensor-parallel group holds (T = 1: the whole model).
struct Qwen2Shard {
  int rank = 0;                          ///< index in the tensor-parallel group
  int size = 1;                          ///< T
  std::int64_t head_dim = 0;             ///< D
  std::int64_t heads = 0;                ///< query heads here: H / T
  std::int64_t head_start = 0;           ///< first query head here
  std::int64_t kv_heads = 0;             ///< key/value heads here: KV / T, or 1 when T > KV
  std::int64_t kv_head_start = 0;        ///< first key/value head here
  std::int64_t kv_ranks_per_copy = 1;    ///< ranks holding the same key/value heads: T / KV when T > KV, else 1
  std::int64_t intermediate = 0;         ///< MLP width here: I / T
  std::int64_t intermediate_start = 0;
  std::int64_t vocab = 0;                ///< vocabulary rows here: V / T
  std::int64_t vocab_start = 0;
};

/// Which part of a Hugging Face tensor a rank holds: all of it (dim = -1) or `slice` of `dim`,
/// whose whole size is `full`.
struct ParameterSlice {
  std::int64_t dim = -1;
  DimSlice slice{};
  std::int64_t full = 0;
  [[nodiscard]] bool whole() const { return dim < 0; }
};

namespace detail {
inline std::string tensor_sizes_that_work(const Qwen2Config& config) {
  std::vector<std::string> ok;
  for (std::int64_t t = 1; t <= config.num_attention_heads; ++t) {
    const auto kv = config.num_key_value_heads;
    if (config.num_attention_heads % t == 0 && (kv % t == 0 || t % kv == 0) && config.intermediate_size % t == 0 &&
        config.vocab_size % t == 0)
      ok.push_back(std::to_string(t));
  }
  std::string out;
  for (std::size_t i = 0; i < ok.size(); ++i) out += (i ? ", " : "") + ok[i];
  return out;
}
}  // namespace detail

/// Checks that `config` splits over T ranks; the error names the size that does not divide and
/// the tensor-parallel sizes that would work. `where` prefixes the message (the option's name).
inline void check_tensor_parallel(const Qwen2Config& config, int tensor_size, std::string_view where = "parallel.tensor (the tensor-parallel size)") {
  if (tensor_size < 1) throw Error(fmt::format("{}: expected >= 1, found {}", where, tensor_size));
  if (tensor_size == 1) return;
  const auto fail = [&](std::string_view what, std::int64_t value, std::string_view rule) {
    throw Error(fmt::format("{} = {}: the model's {} ({}) {}; tensor-parallel sizes that work for this model: {}", where,
                            tensor_size, what, value, rule, detail::tensor_sizes_that_work(config)));
  };
  const auto t = static_cast<std::int64_t>(tensor_size);
  if (config.num_attention_heads % t != 0) fail("num_attention_heads", config.num_attention_heads, "is not divisible by it");
  const auto kv = config.num_key_value_heads;
  if (kv % t != 0 && t % kv != 0)
    fail("num_key_value_heads", kv, "neither divides it nor is divisible by it (key/value heads are split or replicated whole)");
  if (config.intermediate_size % t != 0) fail("intermediate_size", config.intermediate_size, "is not divisible by it");
  if (config.vocab_size % t != 0) fail("vocab_size", config.vocab_size, "is not divisible by it");
}

/// The sizes rank `rank` of a group of `size` holds (checks the config splits).
inline Qwen2Shard qwen2_shard(const Qwen2Config& config, int rank, int size) {
  check_tensor_parallel(config, size);
  Qwen2Shard s;
  s.rank = rank;
  s.size = size;
  s.head_dim = head_dim_of(config);
  s.heads = config.num_attention_heads / size;
  s.head_start = rank * s.heads;
  const auto kv = config.num_key_value_heads;
  if (kv >= size) {
    s.kv_heads = kv / size;
    s.kv_head_start = rank * s.kv_heads;
  } else {
    s.kv_ranks_per_copy = size / kv;
    s.kv_heads = 1;
    s.kv_head_start = rank / s.kv_ranks_per_copy;
  }
  s.intermediate = config.intermediate_size / size;
  s.intermediate_start = rank * s.intermediate;
  s.vocab = config.vocab_size / size;
  s.vocab_start = rank * s.vocab;
  return s;
}

inline Qwen2Shard qwen2_shard(const Qwen2Config& config, const TensorParallel& tp) {
  return qwen2_shard(config, tp.rank(), tp.size());
}

/// The slice of the Hugging Face tensor `name` (model.layers.N.self_attn.q_proj.weight, ...) that
/// the rank of `shard` holds.
inline ParameterSlice qwen2_parameter_slice(std::string_view name, const Qwen2Shard& shard) {
  if (shard.size == 1) return {};
  const auto is = [&](std::string_view suffix) { return name.ends_with(suffix); };
  const auto heads = DimSlice{shard.head_start * shard.head_dim, shard.heads * shard.head_dim};
  const auto heads_full = shard.heads * shard.size * shard.head_dim;
  const auto kv = DimSlice{shard.kv_head_start * shard.head_dim, shard.kv_heads * shard.head_dim};
  const auto kv_full = (shard.kv_ranks_per_copy > 1 ? shard.size / shard.kv_ranks_per_copy : shard.kv_heads * shard.size) *
                       shard.head_dim;
  const auto mlp = DimSlice{shard.intermediate_start, shard.intermediate};
  const auto mlp_full = shard.intermediate * shard.size;
  if (is("embed_tokens.weight") || name == "lm_head.weight")
    return {0, {shard.vocab_start, shard.vocab}, shard.vocab * shard.size};
  if (is("q_proj.weight") || is("q_proj.bias")) return {0, heads, heads_full};
  if (is("k_proj.weight") || is("k_proj.bias") || is("v_proj.weight") || is("v_proj.bias")) return {0, kv, kv_full};
  if (is("o_proj.weight")) return {1, heads, heads_full};
  if (is("gate_proj.weight") || is("up_proj.weight")) return {0, mlp, mlp_full};
  if (is("down_proj.weight")) return {1, mlp, mlp_full};
  return {};  // norms, the reward model's score head
}

/// How many ranks of the group hold an identical copy of `name` (T for a replicated tensor,
/// T / KV for replicated key/value heads, 1 for a split tensor): a gradient norm over the group
/// counts a tensor's square sum divided by this, so every element counts once.
inline std::int64_t qwen2_parameter_copies(std::string_view name, const Qwen2Shard& shard) {
  if (shard.size == 1) return 1;
  const auto slice = qwen2_parameter_slice(name, shard);
  if (slice.whole()) return shard.size;
  const bool kv = name.ends_with("k_proj.weight") || name.ends_with("k_proj.bias") || name.ends_with("v_proj.weight") ||
                  name.ends_with("v_proj.bias");
  return kv ? shard.kv_ranks_per_copy : 1;
}

/// The whole Hugging Face tensor `name` from every rank's slice `local` (a collective: every rank
/// of the group calls it, in the same order, and gets the whole tensor, on the CPU in local's
/// dtype). Without a group, or for a replicated tensor, `local` itself.
inline at::Tensor gather_qwen2_parameter(std::string_view name, const at::Tensor& local, const Qwen2Shard& shard,
                                         const TensorParallel& tp) {
  const auto slice = qwen2_parameter_slice(name, shard);
  if (slice.whole() || !tp.active()) return local;
  Communicator& group = *tp.group;
  const auto wire = detail::wire_dtype(local.scalar_type(), group.device());
  // [T, ...local shape] in rank order; replicated key/value heads: one rank per copy
  const at::Tensor all = group.all_gather(local.detach().to(group.device(), wire).contiguous().unsqueeze(0));
  const auto step = qwen2_parameter_copies(name, shard);
  std::vector<at::Tensor> parts;
  for (std::int64_t r = 0; r < shard.size; r += step) parts.push_back(all[r]);
  return at::cat(parts, slice.dim).to(c10::Device(c10::kCPU), local.scalar_type());
}

}  // namespace grpo
