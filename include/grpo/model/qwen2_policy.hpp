#pragma once
// grpo::Qwen2Policy: a Qwen2 causal LM and its tokenizer, modelling grpo::Policy (generate,
// teacher-forced log-probs with gradients, parameters) and grpo::CheckpointablePolicy.
//
// Log-probs go through the final hidden states and grpo::token_logprobs (chunked over the
// vocabulary with a custom backward), so training never materialises [tokens, vocab] logits.

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "grpo/concepts/policy.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/generation.hpp"
#include "grpo/loss/token_logprobs.hpp"
#include "grpo/loss/vocab_parallel_logprobs.hpp"
#include "grpo/model/lora.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/model/qwen2_checkpoint.hpp"
#include "grpo/model/qwen2_generate.hpp"
#include "grpo/tokenizer/tokenizer.hpp"

namespace grpo {

/// How a Qwen2Policy computes log-probs and tokenizes prompts.
struct Qwen2PolicyOptions {
  /// Tokens per chunk of grpo::token_logprobs (memory ~ 2 x chunk x vocab x 4 bytes); default 1024.
  std::int64_t logprob_chunk_size = 1024;
  /// logprobs() also returns the entropy of each scored position; default true.
  bool compute_entropy = true;
  /// Prompts may contain special tokens written out (<|im_start|> in ChatML); default true.
  bool allow_special_in_prompts = true;
  /// With LoRA adapters (grpo/model/lora.hpp): false computes the base model (adapters switched
  /// off while this policy generates or scores), see Qwen2Policy::base_model_view. Default true.
  bool use_lora_adapters = true;
};

/// A right-padded TokenBatch from prompt and completion ids: input_ids = prompt + completion,
/// completion_mask marks the completion; padding uses `pad_id` (masked out).
inline TokenBatch make_token_batch(std::span<const std::vector<std::int64_t>> prompts,
                                   std::span<const std::vector<std::int64_t>> completions, std::int64_t pad_id = 0) {
  if (prompts.size() != completions.size()) {
    throw Error(fmt::format("make_token_batch: {} prompts but {} completions", prompts.size(), completions.size()));
  }
  std::int64_t width = 1;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) {
      throw Error(fmt::format("make_token_batch: prompt {} is empty; the first completion token needs a context", i));
    }
    width = std::max<std::int64_t>(width, static_cast<std::int64_t>(prompts[i].size() + completions[i].size()));
  }
  const auto rows = static_cast<std::int64_t>(prompts.size());
  TokenBatch batch{at::full({rows, width}, pad_id, at::kLong), at::zeros({rows, width}, at::kLong),
                   at::zeros({rows, width}, at::kLong)};
  for (std::int64_t i = 0; i < rows; ++i) {
    const auto& p = prompts[static_cast<std::size_t>(i)];
    const auto& c = completions[static_cast<std::size_t>(i)];
    const auto np = static_cast<std::int64_t>(p.size());
    const auto nc = static_cast<std::int64_t>(c.size());
    batch.input_ids[i].narrow(0, 0, np).copy_(at::from_blob(const_cast<std::int64_t*>(p.data()), {np}, at::kLong));
    if (nc > 0) {
      batch.input_ids[i].narrow(0, np, nc).copy_(at::from_blob(const_cast<std::int64_t*>(c.data()), {nc}, at::kLong));
      batch.completion_mask[i].narrow(0, np, nc).fill_(1);
    }
    batch.attention_mask[i].narrow(0, 0, np + nc).fill_(1);
  }
  return batch;
}

namespace detail {

inline void check_token_batch(const TokenBatch& batch, std::int64_t vocab_size) {
  const auto where = std::string("teacher_forced_logprobs: ");
  if (!batch.input_ids.defined() || batch.input_ids.dim() != 2 || batch.input_ids.size(0) == 0 ||
      batch.input_ids.size(1) < 2) {
    throw Error(where + "expected input_ids [batch, length] with length >= 2 (a prompt token and a completion token)");
  }
  for (const auto* tensor : {&batch.attention_mask, &batch.completion_mask}) {
    if (!tensor->defined() || !tensor->sizes().equals(batch.input_ids.sizes())) {
      throw Error(where + "attention_mask and completion_mask must have the shape of input_ids");
    }
  }
  if (batch.completion_mask.select(1, 0).ne(0).any().item<bool>()) {
    throw Error(where + "completion_mask[:, 0] must be 0: the first token has no context to be scored in");
  }
  const auto low = batch.input_ids.min().item<std::int64_t>();
  const auto high = batch.input_ids.max().item<std::int64_t>();
  if (low < 0 || high >= vocab_size) {
    throw Error(fmt::format("{}token id {} outside the vocabulary [0, {})", where, low < 0 ? low : high, vocab_size));
  }
}

}  // namespace detail

/// Teacher-forced log-probs of a TokenBatch: position t of the result holds
/// log p(input_ids[t] | input_ids[<t]) under softmax(logits / options.temperature) where
/// completion_mask is 1 (and attention_mask is 1), else 0; entropy likewise (undefined unless
/// options.compute_entropy). Differentiable w.r.t. the model's parameters; [B, L] float32 on
/// the model's device. Any padding is accepted (positions come from attention_mask).
inline TokenLogprobs teacher_forced_logprobs(Qwen2Model& model, const TokenBatch& batch,
                                             const TokenLogprobOptions& options) {
  detail::check_token_batch(batch, model->config().vocab_size);
  const auto device = model->output_weight().device();
  const auto ids = batch.input_ids.to(device).to(at::kLong);
  const auto attention = batch.attention_mask.to(device).to(at::kLong);
  const auto rows = ids.size(0);
  const auto length = ids.size(1);
  const auto hidden = model->forward(ids, attention);  // [B, L, H]
  // Position t >= 1 is predicted by the hidden state at t - 1.
  const auto scored = batch.completion_mask.to(device).ne(0).logical_and(attention.ne(0)).narrow(1, 1, length - 1);
  const auto where = at::nonzero(scored.reshape({-1})).squeeze(1);  // [N] into the [B * (L - 1)] grid
  const auto inputs = hidden.narrow(1, 0, length - 1).reshape({-1, hidden.size(2)}).index_select(0, where);
  const auto targets = ids.narrow(1, 1, length - 1).reshape({-1}).index_select(0, where);
  // Tensor-parallel: this rank's vocabulary rows, combined over the group (no [N, V] logits anywhere).
  const auto result =
      vocab_parallel_token_logprobs(inputs, model->output_weight(), targets, model->vocab_start(), model->tensor_parallel(), options);
  const auto place = [&](const at::Tensor& values) {  // [N] -> [B, L], zeros elsewhere, differentiable
    const auto grid = at::zeros({rows * (length - 1)}, values.options()).index_copy(0, where, values);
    return at::cat({at::zeros({rows, 1}, values.options()), grid.view({rows, length - 1})}, 1);
  };
  TokenLogprobs out;
  out.logprobs = place(result.logprobs);
  if (result.entropy.defined()) out.entropy = place(result.entropy);
  return out;
}

class Qwen2Policy {
 public:
  Qwen2Policy(Qwen2Model model, Tokenizer tokenizer, const Qwen2PolicyOptions& options = {})
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(options) {
    if (options.logprob_chunk_size <= 0) {
      throw Error(
          fmt::format("Qwen2PolicyOptions.logprob_chunk_size: expected > 0, found {}", options.logprob_chunk_size));
    }
    if (tokenizer_.vocab_size() > model_->config().vocab_size) {
      throw Error(fmt::format("{}: the tokenizer has {} ids but the model's vocab_size is {}; the tokenizer does not "
                              "belong to this model",
                              tokenizer_.source(), tokenizer_.vocab_size(), model_->config().vocab_size));
    }
  }

  /// Loads the model (config.json + safetensors) and the tokenizer (tokenizer.json) of one
  /// Hugging Face folder.
  static Qwen2Policy load(const std::filesystem::path& folder, const Qwen2LoadOptions& load_options = {},
                          const Qwen2PolicyOptions& options = {}) {
    auto model = load_qwen2(folder, load_options);  // first: its checks name the folder's files before the tokenizer's
    Qwen2Policy policy(std::move(model), Tokenizer::from_file(folder), options);
    policy.source_folder_ = folder;
    return policy;
  }

  /// One completion per prompt (already templated text), see grpo/model/qwen2_generate.hpp.
  std::vector<Generation> generate(std::span<const std::string> prompts, const SamplingOptions& options) {
    std::vector<std::vector<std::int64_t>> ids;
    ids.reserve(prompts.size());
    for (const auto& prompt : prompts) ids.push_back(tokenizer_.encode(prompt, options_.allow_special_in_prompts));
    return generate_ids(ids, options);
  }

  /// generate() from token ids.
  std::vector<Generation> generate_ids(std::span<const std::vector<std::int64_t>> prompt_ids, const SamplingOptions& options) {
    const auto base_only = adapters_off();
    return grpo::generate(model_, prompt_ids, options, &tokenizer_);
  }

  /// teacher_forced_logprobs with this policy's chunk size and entropy setting.
  TokenLogprobs logprobs(const TokenBatch& batch, double temperature) {
    const auto base_only = adapters_off();
    return teacher_forced_logprobs(model_, batch,
                                   TokenLogprobOptions{.chunk_size = options_.logprob_chunk_size,
                                                       .temperature = temperature,
                                                       .compute_entropy = options_.compute_entropy});
  }

  /// The trainable tensors, in the model's parameter order (stable).
  std::vector<at::Tensor> parameters() { return model_->parameters(); }

  /// (name, tensor) pairs, names as in the saved safetensors (model.layers.0..., lm_head.weight).
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : model_->named_parameters()) out.emplace_back(item.key(), item.value());
    return out;
  }

  /// Under tensor parallelism, how many ranks of the group hold an identical copy of each of
  /// parameters() (1: split, T: replicated; see grpo::qwen2_parameter_copies). All 1 otherwise.
  /// T: how many ranks the model is split over (1 without tensor parallelism).
  int tensor_parallel_size() const { return model_->tensor_parallel().size(); }

  std::vector<std::int64_t> parameter_copies() const {
    std::vector<std::int64_t> out;
    for (const auto& item : model_->named_parameters())
      out.push_back(qwen2_parameter_copies(item.key(), model_->model->shard()));
    return out;
  }

  /// The whole tensor `name` (a parameter's name) from this rank's slice `local` of it, e.g. its
  /// AdamW moments: a collective over the tensor-parallel group (every rank calls it in the same
  /// order); `local` itself without tensor parallelism.
  at::Tensor gather_whole(const std::string& name, const at::Tensor& local) const {
    return gather_qwen2_parameter(name, local, model_->model->shard(), model_->tensor_parallel());
  }

  /// This rank's slice of `whole`, a whole tensor shaped like parameter `name` (e.g. its AdamW
  /// moments in a checkpoint); `whole` itself without tensor parallelism.
  at::Tensor local_slice(const std::string& name, const at::Tensor& whole) const {
    const auto slice = qwen2_parameter_slice(name, model_->model->shard());
    // clone: the slice must not keep the whole tensor's storage alive
    return slice.whole() ? whole : whole.narrow(slice.dim, slice.slice.start, slice.slice.length).clone();
  }

  /// The slice of the whole tensor `name` (a parameter's name) this rank holds: its part of a
  /// sharded checkpoint (grpo::TensorSlice; the whole tensor without tensor parallelism).
  TensorSlice parameter_slice(const std::string& name) const {
    if (is_lora_parameter(name))
      throw Error(fmt::format("{}: LoRA adapters are saved in PEFT's layout, not in a sharded checkpoint; use "
                              "checkpoint_layout \"whole\" (or \"auto\") with adapters",
                              name));
    const auto slice = qwen2_parameter_slice(name, model_->model->shard());
    if (slice.whole()) return {};
    return {.dim = slice.dim, .start = slice.slice.start, .length = slice.slice.length, .full = slice.full};
  }

  /// Writes config.json and the tokenizer files (no weights) into `folder`, atomically: what a
  /// sharded checkpoint keeps beside its pieces. Not a collective: one rank calls it.
  void save_config(const std::filesystem::path& folder) {
    save_pretrained(folder, Qwen2SaveOptions{.weights = false});
  }

  /// Writes config.json, the safetensors and the tokenizer files (copied from the folder the
  /// policy was loaded from, if any) into `folder`, atomically. Under tensor parallelism every
  /// rank of the group calls it (the weights are gathered) and the group's rank 0 writes.
  void save_pretrained(const std::filesystem::path& folder, const Qwen2SaveOptions& options = {}) {
    auto save = options;
    if (save.copy_files_from.empty()) save.copy_files_from = source_folder_;
    if (save.base_model.empty()) save.base_model = source_folder_.string();
    save_qwen2(model_, folder, save);
  }

  /// Adds LoRA adapters (grpo::add_lora: every other parameter is frozen, so a trainer built on
  /// this policy trains the adapters only). Returns the number of adapted projections.
  std::int64_t add_lora(const LoraOptions& options) {
    if (model_->tensor_parallel().active())
      throw Error("policy.lora: LoRA adapters are not supported with tensor parallelism (parallel.tensor > 1)");
    return grpo::add_lora(*model_, options);
  }

  /// The same model with its adapters switched off while this view generates or scores: the base
  /// model, as the KL reference of a LoRA run, without a second copy of the weights. It shares
  /// the weights (and the adapters) with this policy.
  [[nodiscard]] Qwen2Policy base_model_view() const {
    Qwen2Policy view = *this;
    view.options_.use_lora_adapters = false;
    return view;
  }

  /// Restores the weights of a checkpoint folder this policy's save_pretrained wrote (the
  /// trainer's resume calls it). Without adapters: every parameter, by name and shape. With
  /// adapters: the adapters, from folder/adapter; the base weights stay the ones this policy was
  /// loaded with, and the folder's weights must be them: bit for bit where nothing is adapted,
  /// and where merged, base + adapter up to two roundings of each element (the merge may have run
  /// on another device); else the checkpoint was trained from another base model (grpo::Error).
  void restore_weights(const std::filesystem::path& folder) {
    at::NoGradGuard no_grad;
    const auto checkpoint = io::SafetensorsCheckpoint::open(folder);
    const auto adapted = lora_projections(*model_);
    if (adapted.empty()) {
      const auto& shard = model_->model->shard();
      for (auto& [name, param] : named_parameters()) {
        const auto slice = qwen2_parameter_slice(name, shard);
        // tensor-parallel: this rank's slice of the whole tensor, read from the mapping
        param.copy_(slice.whole() ? io::load_parameter(checkpoint, folder, name, param)
                                  : detail::read_parameter_slice(checkpoint, name, param, slice,
                                                                 {.device = param.device(), .dtype = param.scalar_type()}));
      }
      return;
    }
    if (!std::filesystem::exists(folder / "adapter" / "adapter_model.safetensors")) {
      throw Error(folder.string() + ": no adapter/adapter_model.safetensors: this checkpoint was not trained with LoRA "
                  "adapters, but this policy has them; resume it without adapters (no policy.lora)");
    }
    load_lora_weights(*model_, folder / "adapter");
    std::map<std::string, const ProjectionImpl*> merged;
    for (const auto& [name, projection] : adapted) merged.emplace(name + ".weight", projection.get());
    for (auto& [name, param] : named_parameters()) {
      if (is_lora_parameter(name)) continue;
      const auto saved = io::load_parameter(checkpoint, folder, name, param);
      const auto it = merged.find(name);
      bool same = true;
      if (it == merged.end()) {
        same = at::equal(saved, param);
      } else {  // one merged weight at a time: never a second copy of the model
        const auto expected = it->second->effective_weight().to(at::kFloat);
        const double eps = param.scalar_type() == at::kBFloat16 ? 7.8125e-3 : param.scalar_type() == at::kHalf ? 9.77e-4 : 1.2e-7;
        const double floor = 1e-6 * expected.abs().max().item<double>();
        same = ((saved.to(at::kFloat) - expected).abs() <= expected.abs() * (2 * eps) + floor).all().item<bool>();
      }
      if (!same) {
        throw Error(folder.string() + ": tensor '" + name + "' differs from this policy's base weights" +
                    (it != merged.end() ? " plus the checkpoint's adapter" : "") +
                    "; the checkpoint was trained from another base model: load that one");
      }
    }
  }

  Qwen2Model& model() { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const Qwen2PolicyOptions& options() const { return options_; }

 private:
  /// Adapters off for the scope when this is a base-model view; nothing otherwise.
  [[nodiscard]] std::unique_ptr<LoraDisabled> adapters_off() {
    return options_.use_lora_adapters ? nullptr : std::make_unique<LoraDisabled>(*model_);
  }

  Qwen2Model model_;
  Tokenizer tokenizer_;
  Qwen2PolicyOptions options_;
  std::filesystem::path source_folder_;
};

static_assert(Policy<Qwen2Policy>, "Qwen2Policy must model grpo::Policy");
static_assert(CheckpointablePolicy<Qwen2Policy>, "Qwen2Policy must model grpo::CheckpointablePolicy");
static_assert(SelfRestoringPolicy<Qwen2Policy>, "Qwen2Policy must model grpo::SelfRestoringPolicy");
static_assert(TensorParallelPolicy<Qwen2Policy>, "Qwen2Policy must model grpo::TensorParallelPolicy");

}  // namespace grpo
