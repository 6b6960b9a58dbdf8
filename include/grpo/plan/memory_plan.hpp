#pragma once
// grpo::plan_memory: what one GPU holds when a Qwen2 policy is trained with GRPO on a mesh of
// T tensor-parallel x D data-parallel GPUs, before anyone rents them; and the parameter counts of
// a Qwen2 model, equal to transformers' sum(p.numel() for p in model.parameters()).
//
// Notation: H hidden_size, I intermediate_size, L num_hidden_layers, V vocab_size, n_h attention
// heads, n_kv key/value heads, d = H / n_h. One tensor-parallel rank (grpo/model/qwen2_sharding.hpp,
// Megatron's layout) holds n_h' = n_h / T query heads, n_kv' = n_kv / T key/value heads (1 when
// T > n_kv: replicated), I' = I / T MLP columns and V' = V / T vocabulary rows; norms and the
// reward model's score head are replicated.
//
// Parameters (whole model; per rank with the primed sizes):
//   embed_tokens            V x H
//   per layer               q: H x n_h d + n_h d (bias)    k, v: H x n_kv d + n_kv d (each)
//                           o: n_h d x H    gate, up: H x I (each)    down: I x H    2 RMSNorms: 2 H
//   final norm              H
//   lm_head                 V x H, only when untied (a tied one is the embedding, counted once)
//   score (reward model)    num_labels x H, no lm_head
//
// Bytes per GPU, p = bytes of the parameter dtype, c = bytes of an activation (p, or 2 under
// bf16 autocast on CUDA), P' = parameters of one tensor rank, P'_t = the trained ones (not frozen):
//   weights                 P' p
//   reference weights       P' p when a frozen reference policy exists (KL without LoRA)
//   master weights          4 O  fp32 copies, only with master weights and p < 4 (a float32
//                           tensor is its own master: grpo/optim/master_weights.hpp)
//   gradients               P'_t p
//   optimizer state         2 m O: AdamW's two moments, m = 4 with masters (above), else p
//   O = the trained elements this rank steps: P'_t, or with shard_optimizer_state over D > 1 the
//   elements the most loaded of D owners keeps when whole tensors go, largest first, to the least
//   loaded owner (shard_owners, grpo/distributed/communicator.hpp): about P'_t / D
//   master gradients        (4 - p) O during the optimizer step: the owned gradients upcast to
//                           fp32 before clipping (each frees its p-byte original), master weights only
//
// Activations of one micro-batch of N = micro_batch_tokens tokens (right-padded, so SDPA runs
// causal without a mask: flash / memory-efficient kernels keep no [N, N] scores). What autograd
// keeps per decoder layer (grpo/model/*.hpp; mul keeps only the operands the other gradient needs):
//   2 RMSNorms              x in fp32 [N, H] + x / rms [N, H] (p) + its output, the projections'
//                           input [N, H] (c)                                   2 (4 + p + c) N H
//   attention               rotated q, k and v expanded to n_h' heads, the output [N, n_h' d] (c)
//                           + the log-sum-exp [n_h', N] (fp32)                 4 c N n_h' d + 4 N n_h'
//   MLP                     gate, silu(gate), up, their product [N, I'] (c)    4 c N I'
//   A_layer = 2 (4 + p + c) N H + 4 c N n_h' d + 4 N n_h' + 4 c N I'
//   head                    final norm (4 + p) N H, the hidden states token_logprobs keeps p N H,
//                           its log-sum-exp, entropy and targets 16 N, the rotary tables 2 c N d
//   without checkpointing   (L + 1) A_layer + head      (one more layer: the gradients in flight)
//   with checkpointing      L N H p (each layer's input) + 2 A_layer (one layer recomputed, its
//                           gradients in flight) + head   (grpo/model/activation_checkpoint.hpp)
//   under bf16 autocast add c x (the layers' matrix parameters of the rank): autocast's bf16
//   copies of the weights, cached until the update's autocast scope ends.
//   With sequence parallelism (Megatron's, parallel.sequence) the [N, H] tensors outside the
//   parallel regions are split over T: the norms' 2 (4 + p) N H, the final norm's and the
//   checkpointed layer inputs become 1/T of the above; the projections' gathered input 2 c N H
//   stays whole (they keep it for their weight gradients).
//
// The rest:
//   log-prob chunk          2 min(chunk, N) V' 4: fp32 logits and their gradient (token_logprobs.hpp)
//   KV cache                R (prompt_tokens + max_new_tokens) 2 L n_kv' d p, R = rows decoded at
//                           once per data-parallel rank: (prompts_per_step / D) G, or
//                           max_batch_rows when smaller (grpo/model/kv_cache.hpp, generate.hpp)
//   forward without grad    F(N) = N (2 H p + 2 H c + max(4 c I', c (4 n_h' d + 2 n_kv' d), 8 H)):
//                           a layer's input and residual, the norm's output and the attention
//                           output, and the widest of the MLP's four [N, I'], attention's q, k, v
//                           and their expansions, or the norm's fp32 temporaries. Used for the
//                           prefill of ceil(R / G) x prompt_tokens tokens (the G samples of a
//                           prompt share one prefill) and for the reward model's
//                           batch_size x max_tokens (scored in its own dtype, no autocast).
//   reward model            P'_rm p (split over the same T ranks) + F_rm(batch_size max_tokens)
//
// A step's phases do not overlap in time: the KV cache is gone before the update, the gradients
// are released after each optimizer step, the activations after each micro-batch. So
//   persistent = weights + reference + master weights + optimizer state + reward-model weights
//   sampling   = persistent + KV cache + prefill
//   scoring    = persistent + reward-model activations
//   update     = persistent + gradients + max(activations + log-prob chunk, master gradients)
//   total      = max(sampling, scoring, update)
// Not modelled: the CUDA context and allocator fragmentation (leave a few GiB), the sampler's
// [R, V] logits, the gradient all-reduce buckets (64 MiB), optimizer temporaries of one tensor.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/model/qwen2_config.hpp"
#include "grpo/model/qwen2_sharding.hpp"

namespace grpo {

/// Parameters of a Qwen2 model by part, counted as transformers counts them.
struct Qwen2ParameterCount {
  std::int64_t embeddings = 0;  ///< embed_tokens: V x H
  std::int64_t per_layer = 0;   ///< one decoder layer: attention with q/k/v biases, MLP, two norms
  std::int64_t layers = 0;      ///< L x per_layer
  std::int64_t final_norm = 0;  ///< H
  std::int64_t head = 0;        ///< lm_head V x H when untied (0 when tied); score num_labels x H for a reward model
  std::int64_t total = 0;       ///< the sum
};

/// The parameter count of `config`'s model: Qwen2ForCausalLM, or Qwen2ForSequenceClassification
/// (backbone + score, no lm_head) as config.architecture says.
inline Qwen2ParameterCount count_qwen2_parameters(const Qwen2Config& config) {
  const auto h = config.hidden_size;
  const auto d = head_dim_of(config);
  const auto q = config.num_attention_heads * d;
  const auto kv = config.num_key_value_heads * d;
  Qwen2ParameterCount c;
  c.embeddings = config.vocab_size * h;
  c.per_layer = (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * config.intermediate_size + 2 * h;
  c.layers = config.num_hidden_layers * c.per_layer;
  c.final_norm = h;
  if (config.architecture == Qwen2Architecture::sequence_classification) c.head = config.num_labels * h;
  else if (!config.tie_word_embeddings) c.head = config.vocab_size * h;
  c.total = c.embeddings + c.layers + c.final_norm + c.head;
  return c;
}

/// One parameter tensor of a model: its Hugging Face name and elements, whole and on one
/// tensor-parallel rank.
struct PlannedTensor {
  std::string name;             ///< e.g. "model.layers.0.self_attn.q_proj.weight"
  std::int64_t numel = 0;       ///< elements of the whole tensor
  std::int64_t rank_numel = 0;  ///< elements one of T ranks holds (numel when replicated)
  bool matrix = false;          ///< a projection weight inside a decoder layer (what autocast copies)
};

/// The parameter tensors of `config`'s model in the model's order (the names grpo's Qwen2 and
/// transformers give them), each with the share one of `tensor_size` ranks holds. Throws when
/// the model does not split over that many ranks (check_tensor_parallel).
inline std::vector<PlannedTensor> qwen2_planned_tensors(const Qwen2Config& config, int tensor_size = 1) {
  const auto shard = qwen2_shard(config, 0, tensor_size);
  const auto h = config.hidden_size;
  const auto d = head_dim_of(config);
  const auto q = config.num_attention_heads * d;
  const auto kv = config.num_key_value_heads * d;
  const auto i = config.intermediate_size;
  std::vector<PlannedTensor> out;
  const auto add = [&](std::string name, std::int64_t numel, bool matrix = false) {
    const auto slice = qwen2_parameter_slice(name, shard);
    const auto local = slice.whole() ? numel : numel / slice.full * slice.slice.length;
    out.push_back({std::move(name), numel, local, matrix});
  };
  add("model.embed_tokens.weight", config.vocab_size * h);
  for (std::int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    const auto prefix = fmt::format("model.layers.{}.", layer);
    add(prefix + "input_layernorm.weight", h);
    add(prefix + "self_attn.q_proj.weight", q * h, true);
    add(prefix + "self_attn.q_proj.bias", q);
    add(prefix + "self_attn.k_proj.weight", kv * h, true);
    add(prefix + "self_attn.k_proj.bias", kv);
    add(prefix + "self_attn.v_proj.weight", kv * h, true);
    add(prefix + "self_attn.v_proj.bias", kv);
    add(prefix + "self_attn.o_proj.weight", h * q, true);
    add(prefix + "post_attention_layernorm.weight", h);
    add(prefix + "mlp.gate_proj.weight", i * h, true);
    add(prefix + "mlp.up_proj.weight", i * h, true);
    add(prefix + "mlp.down_proj.weight", h * i, true);
  }
  add("model.norm.weight", h);
  if (config.architecture == Qwen2Architecture::sequence_classification) add("score.weight", config.num_labels * h);
  else if (!config.tie_word_embeddings) add("lm_head.weight", config.vocab_size * h);
  return out;
}

/// The tensor-parallel sizes T (1 .. num_attention_heads) over which every one of `configs` splits.
inline std::vector<int> tensor_parallel_sizes(std::initializer_list<const Qwen2Config*> configs) {
  std::vector<int> out;
  int largest = 1 << 20;
  for (const auto* c : configs) largest = std::min<int>(largest, static_cast<int>(c->num_attention_heads));
  for (int t = 1; t <= largest; ++t) {
    bool ok = true;
    for (const auto* c : configs) {
      try {
        check_tensor_parallel(*c, t);
      } catch (const Error&) {
        ok = false;
      }
    }
    if (ok) out.push_back(t);
  }
  return out;
}

/// A T x D grid of GPUs: WORLD_SIZE = tensor x data.
struct MeshShape {
  std::int64_t tensor = 1;  ///< T: ranks a model is split over (parallel.tensor); default 1
  std::int64_t data = 1;    ///< D: copies of the split model, each on its share of the prompts; default 1
};

/// What plan_memory needs to know about a run (the `train` config's settings).
struct MemoryPlanOptions {
  Qwen2Config policy;                        ///< the policy's architecture (causal LM)
  std::optional<Qwen2Config> reward_model;   ///< the writing reward model's (sequence classification); none: no RM
  MeshShape mesh;                            ///< T x D; default 1 x 1
  std::int64_t param_bytes = 4;              ///< bytes per parameter: 4 float32 (default), 2 bfloat16
  std::int64_t compute_bytes = 4;            ///< bytes per activation: param_bytes, or 2 under bf16 autocast; default 4
  bool master_weights = false;               ///< fp32 master copies of the trained bf16/f16 tensors; default false
  bool shard_optimizer_state = false;        ///< AdamW moments (and master copies) sharded over D (ZeRO-1); default false
  std::vector<std::string> frozen;           ///< names of policy tensors that get no gradient (policy.freeze); default none
  bool reference_policy = false;             ///< a frozen copy of the policy is held (KL without LoRA); default false
  bool activation_checkpointing = false;     ///< recompute each decoder layer in the backward pass; default false
  bool sequence_parallel = false;            ///< the [N, H] activations split over T (parallel.sequence); default false
  std::int64_t micro_batch_tokens = 16384;   ///< padded tokens per forward/backward; default 16,384
  std::int64_t logprob_chunk_size = 1024;    ///< tokens per token_logprobs chunk; default 1024
  std::int64_t prompts_per_step = 64;        ///< prompts per step over all data-parallel ranks; default 64
  std::int64_t group_size = 32;              ///< G completions per prompt; default 32
  std::int64_t max_batch_rows = 0;           ///< rows decoded at once per rank, 0 = all of the rank's; default 0
  std::int64_t prompt_tokens = 512;          ///< longest templated prompt, tokens (the KV cache's left part); default 512
  std::int64_t max_new_tokens = 14000;       ///< completion tokens; default 14,000
  std::int64_t reward_batch_size = 8;        ///< reward-model inputs per forward; default 8
  std::int64_t reward_max_tokens = 8192;     ///< longest reward-model input, tokens; default 8,192
};

/// Bytes one GPU holds, item by item (see the top of this file for each formula).
struct MemoryPlan {
  MeshShape mesh;
  Qwen2ParameterCount policy_count;                 ///< the whole policy
  std::optional<Qwen2ParameterCount> reward_count;  ///< the whole reward model
  std::int64_t policy_parameters_per_gpu = 0;       ///< P'
  std::int64_t trained_parameters_per_gpu = 0;      ///< P'_t
  std::int64_t optimizer_parameters_per_gpu = 0;    ///< O: the trained elements this rank steps
  std::int64_t reward_parameters_per_gpu = 0;       ///< P'_rm
  std::int64_t sampling_rows = 0;                   ///< R: rows decoded at once per data-parallel rank
  std::int64_t kv_length = 0;                       ///< slots per row: prompt_tokens + max_new_tokens
  std::int64_t kv_heads_per_gpu = 0;                ///< n_kv'

  std::int64_t weights = 0;
  std::int64_t reference_weights = 0;
  std::int64_t master_weights = 0;
  std::int64_t gradients = 0;
  std::int64_t optimizer_state = 0;
  std::int64_t master_gradients = 0;                ///< during the optimizer step only
  std::int64_t activations = 0;                     ///< the configured one of the two below
  std::int64_t activations_checkpointed = 0;
  std::int64_t activations_full = 0;
  std::int64_t kv_cache = 0;
  std::int64_t prefill_activations = 0;
  std::int64_t logprob_chunk = 0;
  std::int64_t reward_model_weights = 0;
  std::int64_t reward_model_activations = 0;

  std::int64_t persistent = 0;  ///< held through the whole step
  std::int64_t sampling = 0;    ///< persistent + KV cache + prefill
  std::int64_t scoring = 0;     ///< persistent + reward-model activations
  std::int64_t update = 0;      ///< persistent + gradients + max(activations + log-prob chunk, master gradients)
  std::int64_t total = 0;       ///< the largest phase

  /// Whether the largest phase fits in `gpu_bytes`.
  [[nodiscard]] bool fits(std::int64_t gpu_bytes) const { return total <= gpu_bytes; }
};

namespace detail {

/// The most elements one data-parallel rank steps when the trained tensors (their element counts)
/// are split by shard_owners (grpo/distributed/communicator.hpp), the rule OptimizerShards uses.
inline std::int64_t most_loaded_owner(const std::vector<std::int64_t>& numels, std::int64_t owners) {
  const auto owner = shard_owners(std::span<const std::int64_t>(numels), static_cast<int>(std::max<std::int64_t>(1, owners)));
  std::vector<std::int64_t> load(static_cast<std::size_t>(std::max<std::int64_t>(1, owners)), 0);
  for (std::size_t i = 0; i < numels.size(); ++i) load[static_cast<std::size_t>(owner[i])] += numels[i];
  return *std::max_element(load.begin(), load.end());
}

/// Per-rank sizes of one model on T ranks.
struct RankDims {
  std::int64_t h, d, heads, kv_heads, intermediate, vocab, layers;
};

inline RankDims rank_dims(const Qwen2Config& config, int tensor_size) {
  const auto s = qwen2_shard(config, 0, tensor_size);
  return {config.hidden_size, s.head_dim, s.heads, s.kv_heads, s.intermediate, s.vocab, config.num_hidden_layers};
}

/// F(N): the peak of a forward without grad over n tokens (p: residual bytes, c: activation bytes).
inline std::int64_t forward_peak(const RankDims& r, std::int64_t n, std::int64_t p, std::int64_t c) {
  const auto widest = std::max({4 * c * r.intermediate, c * (4 * r.heads * r.d + 2 * r.kv_heads * r.d), 8 * r.h});
  return n * (2 * r.h * p + 2 * r.h * c + widest);
}

/// A_layer: what autograd keeps for one decoder layer over n tokens; `split` divides the [n, H]
/// tensors (sequence parallelism over T ranks; 1 without).
inline std::int64_t layer_activations(const RankDims& r, std::int64_t n, std::int64_t p, std::int64_t c,
                                      std::int64_t split) {
  // split > 1: each norm's fp32 input and normalised value hold this rank's tokens; the gathered
  // input of the column-parallel projections, which they keep for their weight gradients, all tokens
  return n * (2 * ((4 + p) * r.h / split + c * r.h) + 4 * c * r.heads * r.d + 4 * r.heads + 4 * c * r.intermediate);
}

/// parallel.tensor = t splits the policy and the reward model; the error names the model, the
/// size that does not divide, and the sizes that split both.
inline void check_mesh_splits(const MemoryPlanOptions& options, int t) {
  const auto both = options.reward_model ? tensor_parallel_sizes({&options.policy, &*options.reward_model})
                                         : tensor_parallel_sizes({&options.policy});
  if (std::find(both.begin(), both.end(), t) != both.end()) return;
  std::string sizes;
  for (const auto s : both) sizes += (sizes.empty() ? "" : ", ") + std::to_string(s);
  try {
    check_tensor_parallel(options.policy, t, "parallel.tensor (the policy)");
    if (options.reward_model) check_tensor_parallel(*options.reward_model, t, "parallel.tensor (the writing reward model)");
  } catch (const Error& e) {
    throw Error(fmt::format("{}{}", e.what(),
                            options.reward_model ? "; sizes that split both the policy and the reward model: " + sizes : ""));
  }
}

inline void require_positive(std::int64_t value, std::string_view field) {
  if (value <= 0) throw Error(fmt::format("{}: expected a positive integer, found {}", field, value));
}

}  // namespace detail

/// The memory one GPU needs for the run `options` describes (see the top of this file).
/// Throws grpo::Error naming the setting when the mesh does not fit the models or the batch.
inline MemoryPlan plan_memory(const MemoryPlanOptions& options) {
  using detail::require_positive;
  require_positive(options.mesh.tensor, "parallel.tensor");
  require_positive(options.mesh.data, "data-parallel size");
  require_positive(options.micro_batch_tokens, "trainer.micro_batch_tokens");
  require_positive(options.logprob_chunk_size, "policy.logprob_chunk_size");
  require_positive(options.prompts_per_step, "trainer.prompts_per_step");
  require_positive(options.group_size, "trainer.group_size");
  require_positive(options.prompt_tokens, "prompt tokens");
  require_positive(options.max_new_tokens, "trainer.sampling.max_new_tokens");
  require_positive(options.reward_batch_size, "rewards.writing.batch_size");
  require_positive(options.reward_max_tokens, "rewards.writing.max_tokens");
  if (options.max_batch_rows < 0) {
    throw Error(fmt::format("trainer.sampling.max_batch_rows: expected >= 0 (0 = every row at once), found {}",
                            options.max_batch_rows));
  }
  if (options.param_bytes <= 0 || options.compute_bytes <= 0) {
    throw Error(fmt::format("plan_memory: expected positive element sizes, found parameters {} and activations {} bytes",
                            options.param_bytes, options.compute_bytes));
  }
  const auto t = static_cast<int>(options.mesh.tensor);
  const auto data = options.mesh.data;
  detail::check_mesh_splits(options, t);
  if (options.prompts_per_step % data != 0) {
    throw Error(fmt::format("trainer.prompts_per_step: {} is not a multiple of the data-parallel size D = {} (each "
                            "data-parallel rank takes whole groups of an equal share of the prompts)",
                            options.prompts_per_step, data));
  }
  const auto p = options.param_bytes;
  const auto c = options.compute_bytes;

  MemoryPlan plan;
  plan.mesh = options.mesh;
  plan.policy_count = count_qwen2_parameters(options.policy);
  const auto tensors = qwen2_planned_tensors(options.policy, t);
  std::vector<std::int64_t> trained;
  std::int64_t layer_matrices = 0;
  for (const auto& tensor : tensors) {
    plan.policy_parameters_per_gpu += tensor.rank_numel;
    if (tensor.matrix) layer_matrices += tensor.rank_numel;
    if (std::find(options.frozen.begin(), options.frozen.end(), tensor.name) == options.frozen.end()) {
      trained.push_back(tensor.rank_numel);
      plan.trained_parameters_per_gpu += tensor.rank_numel;
    }
  }
  const bool sharded = data > 1 && options.shard_optimizer_state;
  plan.optimizer_parameters_per_gpu = sharded ? detail::most_loaded_owner(trained, data) : plan.trained_parameters_per_gpu;
  const bool masters = options.master_weights && p < 4;

  plan.weights = plan.policy_parameters_per_gpu * p;
  plan.reference_weights = options.reference_policy ? plan.weights : 0;
  plan.master_weights = masters ? 4 * plan.optimizer_parameters_per_gpu : 0;
  plan.gradients = plan.trained_parameters_per_gpu * p;
  plan.optimizer_state = 2 * (masters ? 4 : p) * plan.optimizer_parameters_per_gpu;
  plan.master_gradients = masters ? (4 - p) * plan.optimizer_parameters_per_gpu : 0;

  // Activations of one micro-batch.
  const auto dims = detail::rank_dims(options.policy, t);
  const auto n = options.micro_batch_tokens;
  const std::int64_t split = options.sequence_parallel ? options.mesh.tensor : 1;
  const auto layer = detail::layer_activations(dims, n, p, c, split);
  const auto head = n * ((4 + p) * dims.h / split + p * dims.h + 16 + 2 * c * dims.d);
  const auto autocast_copies = c != p ? c * layer_matrices : 0;
  plan.activations_full = (dims.layers + 1) * layer + head + autocast_copies;
  plan.activations_checkpointed = dims.layers * n * dims.h * p / split + 2 * layer + head + autocast_copies;
  plan.activations = options.activation_checkpointing ? plan.activations_checkpointed : plan.activations_full;
  plan.logprob_chunk = 2 * std::min(options.logprob_chunk_size, n) * dims.vocab * 4;

  // Sampling: the rank's rows, in waves of max_batch_rows.
  const auto rank_rows = options.prompts_per_step / data * options.group_size;
  plan.sampling_rows = options.max_batch_rows > 0 ? std::min(rank_rows, options.max_batch_rows) : rank_rows;
  plan.kv_length = options.prompt_tokens + options.max_new_tokens;
  plan.kv_heads_per_gpu = dims.kv_heads;
  plan.kv_cache = plan.sampling_rows * plan.kv_length * 2 * dims.layers * dims.kv_heads * dims.d * p;
  // The G samples of a prompt share one prefill (DecodeOptions::share_prompt_prefill): a wave of
  // R rows prefills about R / G distinct prompts.
  const auto prefill_rows = (plan.sampling_rows + options.group_size - 1) / std::max<std::int64_t>(1, options.group_size);
  plan.prefill_activations = detail::forward_peak(dims, prefill_rows * options.prompt_tokens, p, c);

  if (options.reward_model) {
    plan.reward_count = count_qwen2_parameters(*options.reward_model);
    for (const auto& tensor : qwen2_planned_tensors(*options.reward_model, t)) plan.reward_parameters_per_gpu += tensor.rank_numel;
    plan.reward_model_weights = plan.reward_parameters_per_gpu * p;
    plan.reward_model_activations = detail::forward_peak(detail::rank_dims(*options.reward_model, t),
                                                         options.reward_batch_size * options.reward_max_tokens, p, p);
  }

  plan.persistent = plan.weights + plan.reference_weights + plan.master_weights + plan.optimizer_state +
                    plan.reward_model_weights;
  plan.sampling = plan.persistent + plan.kv_cache + plan.prefill_activations;
  plan.scoring = plan.persistent + plan.reward_model_activations;
  plan.update = plan.persistent + plan.gradients + std::max(plan.activations + plan.logprob_chunk, plan.master_gradients);
  plan.total = std::max({plan.sampling, plan.scoring, plan.update});
  return plan;
}

}  // namespace grpo
