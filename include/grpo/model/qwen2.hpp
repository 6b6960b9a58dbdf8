#pragma once
// Qwen2 / Qwen2.5 decoder-only language model in LibTorch, weight for weight the model of Hugging
// Face transformers (Qwen2ForCausalLM), plus its scalar-head variant (Qwen2ForSequenceClassification)
// used as a reward model.
//
//   Qwen2Model        parameters: model.embed_tokens.weight, model.layers.N.{input_layernorm,
//                     self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj},
//                     model.norm.weight, lm_head.weight (absent when embeddings are tied)
//   Qwen2RewardModel  the same "model." tree and score.weight [num_labels, hidden]
//
// forward() returns the final hidden states (after the last RMSNorm) rather than logits, so the
// trainer can compute log-probs chunk by chunk (grpo::token_logprobs) without [T, V] logits;
// logits(hidden) applies the output projection when wanted.
//
// Padding: any mix of left and right padding is accepted through attention_mask. Rotary positions
// count real tokens only (cumsum(mask) - 1), so a padded row computes what it would alone.
//
// Tensor parallelism: Qwen2Options::tensor_parallel splits every layer over a group of T ranks
// (grpo/model/qwen2_sharding.hpp); each rank builds only its slices, forward() returns the whole
// hidden states on every rank, output_weight() is this rank's vocabulary rows and logits() the
// whole vocabulary (gathered over the group).

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/ones_like.h>
#include <fmt/format.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/model/activation_checkpoint.hpp"
#include "grpo/model/attention.hpp"
#include "grpo/model/kv_cache.hpp"
#include "grpo/model/layers.hpp"
#include "grpo/model/mlp.hpp"
#include "grpo/model/qwen2_config.hpp"
#include "grpo/model/qwen2_sharding.hpp"
#include "grpo/model/rotary.hpp"

namespace grpo {

/// How a Qwen2 model is built (the architecture itself comes from Qwen2Config).
struct Qwen2Options {
  c10::Device device = c10::kCPU;       ///< device of the parameters; default CPU
  c10::ScalarType dtype = c10::kFloat;  ///< parameter dtype, float32 or bfloat16; default float32
  /// true: random initialisation as transformers (N(0, config initializer_range), biases 0, norms 1);
  /// false: uninitialised memory, for a checkpoint to fill (load_qwen2 does). Default true.
  bool initialize = true;
  /// Recompute each decoder layer in the backward pass instead of storing its activations
  /// (training only: applies in train mode with grad enabled and no KV cache). Default false.
  bool activation_checkpointing = false;
  /// The tensor-parallel group the model is split over; default none (the whole model here).
  TensorParallel tensor_parallel{};
  /// With a tensor-parallel group: split the tokens of the residual stream, the norms and the
  /// embedding output over it too (Megatron's sequence parallelism) in forwards without a KV
  /// cache (training, scoring), so those activations take 1/T per rank; the results are the
  /// same. Default false.
  bool sequence_parallel = false;
};

namespace detail {

inline ParameterOptions parameter_options(const Qwen2Config& config, const Qwen2Options& options) {
  return {.device = options.device, .dtype = options.dtype, .initialize = options.initialize,
          .init_std = config.initializer_range};
}

}  // namespace detail

/// One pre-norm decoder layer: h += attn(norm(h)); h += mlp(norm(h)).
class Qwen2DecoderLayerImpl : public torch::nn::Module {
 public:
  Qwen2DecoderLayerImpl(const Qwen2Config& config, const ParameterOptions& options, const Qwen2Shard& shard = {},
                        TensorParallel tp = {})
      : tensor_parallel_(tp) {
    // config: validated by the backbone (head_dim filled in); shard: this rank's sizes
    const bool split = shard.size > 1;
    input_layernorm = register_module("input_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps, options));
    self_attn = register_module(
        "self_attn", Qwen2Attention(AttentionOptions{.hidden_size = config.hidden_size,
                                                     .num_heads = split ? shard.heads : config.num_attention_heads,
                                                     .num_kv_heads = split ? shard.kv_heads : config.num_key_value_heads,
                                                     .head_dim = head_dim_of(config),
                                                     .tensor_parallel = tp,
                                                     .kv_ranks_per_copy = shard.kv_ranks_per_copy},
                                    options));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps, options));
    mlp = register_module(
        "mlp", Qwen2MLP(config.hidden_size, split ? shard.intermediate : config.intermediate_size, options, tp));
  }

  // hidden: [B, T, hidden] -> [B, T, hidden]; sequence parallel: this rank's tokens [B, T / group, hidden]
  at::Tensor forward(const at::Tensor& hidden, const RotaryTables& rotary, const AttentionMask& mask,
                     KVCache* cache = nullptr, std::int64_t layer_index = 0, bool sequence = false) {
    const TensorParallel tokens_split = sequence ? tensor_parallel_ : TensorParallel{};
    auto h = hidden + self_attn->forward(input_layernorm->forward(hidden, tokens_split), rotary, mask, cache,
                                         layer_index, sequence);
    return h + mlp->forward(post_attention_layernorm->forward(h, tokens_split), sequence);
  }

  RMSNorm input_layernorm{nullptr};
  Qwen2Attention self_attn{nullptr};
  RMSNorm post_attention_layernorm{nullptr};
  Qwen2MLP mlp{nullptr};

 private:
  TensorParallel tensor_parallel_;  ///< the group the layer is split over (sequence parallelism splits tokens over it too)
};
TORCH_MODULE(Qwen2DecoderLayer);

/// The transformer body (transformers' Qwen2Model, registered as "model" in both heads):
/// embeddings, decoder layers, final norm. forward -> final hidden states.
class Qwen2BackboneImpl : public torch::nn::Module {
 public:
  Qwen2BackboneImpl(const Qwen2Config& config, const Qwen2Options& options = {})
      : config_(validated(config)),
        activation_checkpointing_(options.activation_checkpointing),
        sequence_parallel_(options.sequence_parallel),
        tensor_parallel_(options.tensor_parallel),
        shard_(qwen2_shard(config_, options.tensor_parallel)) {
    const auto params = detail::parameter_options(config_, options);
    embed_tokens = register_module("embed_tokens", TokenEmbedding(shard_.vocab, config_.hidden_size,
                                                                  config_.pad_token_id.value_or(-1), params,
                                                                  shard_.vocab_start, tensor_parallel_));
    layers = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < config_.num_hidden_layers; ++i)
      layers->push_back(Qwen2DecoderLayer(config_, params, shard_, tensor_parallel_));
    norm = register_module("norm", RMSNorm(config_.hidden_size, config_.rms_norm_eps, params));
    inv_freq_ = rotary_inverse_frequencies(head_dim_of(config_), config_.rope_theta, options.device);
  }

  /// input_ids: [B, T] int64; attention_mask: [B, T] (1 real, 0 padding) or undefined for all
  /// real; cache: appends this step's keys/values (prefill or decode) when given; position_ids:
  /// [B, T] to override the positions derived from the mask. -> hidden [B, T, hidden].
  /// With sequence parallelism (Qwen2Options::sequence_parallel, no cache) the tokens are padded
  /// on the right to a multiple of T (positions and masks as for right padding: earlier tokens
  /// never see them), each rank runs the residual stream on its T-th of them, and the final
  /// hidden states are gathered and cut back to T tokens: the same result.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {}, KVCache* cache = nullptr,
                     const at::Tensor& position_ids = {}) {
    check_inputs(input_ids, attention_mask, cache, position_ids);
    const bool sequence = sequence_parallel_ && tensor_parallel_.active() && cache == nullptr;
    if (sequence) {
      const auto length = input_ids.size(1);
      const auto group = tensor_parallel_.size();
      const auto padded = (length + group - 1) / group * group;
      if (padded != length) {
        const auto pad = padded - length;
        const auto mask = attention_mask.defined() ? attention_mask.to(input_ids.device()).to(at::kLong)
                                                   : at::ones_like(input_ids);
        const auto positions = position_ids.defined()
                                   ? at::constant_pad_nd(position_ids.to(input_ids.device()).expand_as(input_ids), {0, pad}, 0)
                                   : at::Tensor();
        return forward_tokens(at::constant_pad_nd(input_ids, {0, pad}, 0), at::constant_pad_nd(mask, {0, pad}, 0),
                              positions, true)
            .narrow(1, 0, length);
      }
    }
    return forward_tokens(input_ids, attention_mask, position_ids, sequence, cache);
  }

 private:
  at::Tensor forward_tokens(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                            bool sequence, KVCache* cache = nullptr) {
    const auto batch = input_ids.size(0);
    const auto length = input_ids.size(1);
    auto hidden = embed_tokens->forward(input_ids, sequence);  // sequence: [B, L / T, hidden]
    const auto device = hidden.device();

    at::Tensor positions;
    AttentionMask mask;
    if (cache != nullptr) {
      positions = cache->begin_step(length, attention_mask);
      mask = make_attention_mask(cache->key_valid(), length, cache->length(), device);
    } else if (attention_mask.defined()) {
      const auto real = attention_mask.to(device).to(at::kLong);
      positions = (at::cumsum(real, 1) - 1).clamp_min(0);
      // Right padding (or none) needs only the causal mask: real tokens never see later padding.
      const bool right_padded = length < 2 || (real.narrow(1, 1, length - 1) <= real.narrow(1, 0, length - 1)).all().item<bool>();
      mask = right_padded ? AttentionMask{at::Tensor(), length > 1} : make_attention_mask(real.to(at::kBool), length, 0, device);
    } else {
      positions = at::arange(length, at::TensorOptions().device(device).dtype(at::kLong)).unsqueeze(0).expand({batch, length});
      mask = AttentionMask{at::Tensor(), length > 1};
    }
    if (position_ids.defined()) positions = position_ids.to(device).to(at::kLong).expand({batch, length});
    if (inv_freq_.device() != device) inv_freq_ = inv_freq_.to(device);
    const auto rotary = rotary_tables(inv_freq_, positions, hidden.scalar_type());

    const bool recompute = activation_checkpointing_ && cache == nullptr && is_training() && at::GradMode::is_enabled();
    for (std::size_t i = 0; i < layers->size(); ++i) {
      auto layer = layers->ptr<Qwen2DecoderLayerImpl>(i);
      const auto index = static_cast<std::int64_t>(i);
      if (recompute) {
        hidden = checkpointed(
            [layer, rotary, mask, sequence](const at::Tensor& h) { return layer->forward(h, rotary, mask, nullptr, 0, sequence); },
            hidden, layer->parameters());
      } else {
        hidden = layer->forward(hidden, rotary, mask, cache, index, sequence);
      }
    }
    if (cache != nullptr) cache->end_step();
    hidden = norm->forward(hidden, sequence ? tensor_parallel_ : TensorParallel{});
    return sequence ? gather_sequence_output(hidden, tensor_parallel_) : hidden;
  }

 public:
  const Qwen2Config& config() const { return config_; }
  /// This rank's sizes (the whole model without tensor parallelism).
  const Qwen2Shard& shard() const { return shard_; }
  const TensorParallel& tensor_parallel() const { return tensor_parallel_; }
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }
  /// Sequence parallelism in forwards without a cache (Qwen2Options::sequence_parallel).
  void set_sequence_parallel(bool on) { sequence_parallel_ = on; }
  bool sequence_parallel() const { return sequence_parallel_ && tensor_parallel_.active(); }

  /// A cache sized for this model (this rank's key/value heads): `batch_size` rows of
  /// `max_length` slots, on the embeddings' device and dtype.
  KVCache make_cache(std::int64_t batch_size, std::int64_t max_length) const {
    return KVCache(KVCacheOptions{.num_layers = config_.num_hidden_layers,
                                  .batch_size = batch_size,
                                  .num_kv_heads = shard_.kv_heads,
                                  .head_dim = head_dim_of(config_),
                                  .max_length = max_length,
                                  .device = embed_tokens->weight.device(),
                                  .dtype = embed_tokens->weight.scalar_type()});
  }

  TokenEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  static Qwen2Config validated(Qwen2Config config) {
    validate_qwen2_config(config, "Qwen2 model config");
    return config;
  }

  void check_inputs(const at::Tensor& input_ids, const at::Tensor& attention_mask, const KVCache* cache,
                    const at::Tensor& position_ids) const {
    const auto where = std::string("Qwen2 forward: ");
    if (!input_ids.defined() || input_ids.dim() != 2 || input_ids.size(0) == 0 || input_ids.size(1) == 0) {
      throw Error(where + "expected input_ids of shape [batch, length] with batch, length > 0");
    }
    if (input_ids.scalar_type() != at::kLong && input_ids.scalar_type() != at::kInt) {
      throw Error(where + "expected integer input_ids (int64), found " + std::string(c10::toString(input_ids.scalar_type())));
    }
    if (input_ids.is_cpu()) {  // on a GPU an out-of-range id would be a device-side assert: check before moving
      const auto low = input_ids.min().item<std::int64_t>();
      const auto high = input_ids.max().item<std::int64_t>();
      if (low < 0 || high >= config_.vocab_size) {
        throw Error(fmt::format("{}token id {} outside the vocabulary [0, {}); the tokenizer does not match the model "
                                "(config vocab_size)",
                                where, low < 0 ? low : high, config_.vocab_size));
      }
    }
    if (attention_mask.defined() && !attention_mask.sizes().equals(input_ids.sizes())) {
      throw Error(fmt::format("{}attention_mask must have the shape of input_ids [{}, {}]", where, input_ids.size(0),
                              input_ids.size(1)));
    }
    if (position_ids.defined() && (position_ids.dim() != 2 || position_ids.size(1) != input_ids.size(1))) {
      throw Error(where + "position_ids must have shape [batch or 1, length]");
    }
    if (cache != nullptr && cache->batch_size() != input_ids.size(0)) {
      throw Error(fmt::format("{}the KV cache holds {} rows but input_ids has {}", where, cache->batch_size(),
                              input_ids.size(0)));
    }
  }

  Qwen2Config config_;
  bool activation_checkpointing_ = false;
  bool sequence_parallel_ = false;
  TensorParallel tensor_parallel_;
  Qwen2Shard shard_;
  at::Tensor inv_freq_;  // [head_dim / 2] float32; not a buffer, so module.to(bf16) cannot round it
};
TORCH_MODULE(Qwen2Backbone);

/// Qwen2ForCausalLM: the backbone and the output projection (tied to the embeddings when
/// config.tie_word_embeddings, in which case there is no lm_head parameter).
class Qwen2ModelImpl : public torch::nn::Module {
 public:
  explicit Qwen2ModelImpl(const Qwen2Config& config, const Qwen2Options& options = {}) {
    model = register_module("model", Qwen2Backbone(config, options));
    if (!config.tie_word_embeddings) {
      lm_head = register_module("lm_head", Projection(config.hidden_size, model->shard().vocab, false,
                                                      detail::parameter_options(config, options)));
    }
  }

  /// -> final hidden states [B, T, hidden]; see Qwen2BackboneImpl::forward.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {}, KVCache* cache = nullptr,
                     const at::Tensor& position_ids = {}) {
    return model->forward(input_ids, attention_mask, cache, position_ids);
  }

  /// hidden: [..., hidden] -> logits [..., vocab] in the model's dtype, over the whole vocabulary
  /// (tensor-parallel: each rank's rows gathered over the group; not differentiable then).
  at::Tensor logits(const at::Tensor& hidden) const {
    return gather_last_dim(at::linear(hidden, output_weight()), model->tensor_parallel());
  }

  /// The output projection [vocab, hidden]: lm_head.weight, or the embeddings when tied
  /// (tensor-parallel: this rank's rows [vocab_start(), vocab_start() + V / T)).
  const at::Tensor& output_weight() const { return lm_head ? lm_head->weight : model->embed_tokens->weight; }
  /// The first vocabulary id of output_weight()'s rows (0 without tensor parallelism).
  std::int64_t vocab_start() const { return model->shard().vocab_start; }
  const TensorParallel& tensor_parallel() const { return model->tensor_parallel(); }

  const Qwen2Config& config() const { return model->config(); }
  KVCache make_cache(std::int64_t batch_size, std::int64_t max_length) const { return model->make_cache(batch_size, max_length); }

  Qwen2Backbone model{nullptr};
  Projection lm_head{nullptr};  ///< empty when the output projection is tied to the embeddings
};
TORCH_MODULE(Qwen2Model);

/// Qwen2ForSequenceClassification: the backbone and "score" [num_labels, hidden] without bias,
/// read at one token per sequence (see forward).
class Qwen2RewardModelImpl : public torch::nn::Module {
 public:
  explicit Qwen2RewardModelImpl(const Qwen2Config& config, const Qwen2Options& options = {}) {
    if (config.num_labels <= 0) {
      throw Error(fmt::format("Qwen2 config: num_labels: expected > 0, found {}", config.num_labels));
    }
    model = register_module("model", Qwen2Backbone(config, options));
    score = register_module(
        "score", Projection(config.hidden_size, config.num_labels, false, detail::parameter_options(config, options)));
  }

  /// input_ids, attention_mask: [B, T] -> scores [B, num_labels] in the model's dtype.
  /// Pooling as transformers 5.24: with config.pad_token_id set, the rightmost token that is not
  /// pad_token_id (so left and right padding both work; a sequence that itself ends in the pad
  /// token is read one token earlier, exactly as transformers does); without it, the last token
  /// whose attention_mask is 1 (transformers instead refuses batches > 1).
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {}) {
    const auto hidden = model->forward(input_ids, attention_mask);
    const auto device = hidden.device();
    const auto length = input_ids.size(1);
    const auto slots = at::arange(length, at::TensorOptions().device(device).dtype(at::kLong));
    at::Tensor last;  // [B] int64
    const auto& config = model->config();
    if (config.pad_token_id.has_value()) {
      last = at::argmax(slots * input_ids.to(device).ne(*config.pad_token_id).to(at::kLong), 1);
    } else if (attention_mask.defined()) {
      last = at::argmax(slots * attention_mask.to(device).ne(0).to(at::kLong), 1);
    } else {
      last = at::full({input_ids.size(0)}, length - 1, at::TensorOptions().device(device).dtype(at::kLong));
    }
    // Project only the pooled rows: [B, hidden] -> [B, num_labels]
    const auto pooled = hidden.gather(1, last.view({-1, 1, 1}).expand({-1, 1, hidden.size(2)})).squeeze(1);
    return score->forward(pooled);
  }

  const Qwen2Config& config() const { return model->config(); }

  Qwen2Backbone model{nullptr};
  Projection score{nullptr};
};
TORCH_MODULE(Qwen2RewardModel);

}  // namespace grpo
