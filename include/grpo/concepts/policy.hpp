#pragma once
// The Policy concepts: what the trainer needs from a language model (Policy), what its
// checkpoints need (CheckpointablePolicy), and a policy that restores its own checkpoint folders
// (SelfRestoringPolicy, the restore_weights hook of customization_points.hpp).

#include <ATen/core/Tensor.h>

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <utility>
#include <span>
#include <string>
#include <vector>

#include "grpo/core/generation.hpp"
#include "grpo/core/tensor_slice.hpp"

namespace grpo {

/// A policy samples completions, scores given tokens with gradients, and exposes its parameters.
///   generate(prompts, options)    -> one Generation per prompt (already-templated prompt text)
///   logprobs(batch, temperature)  -> TokenLogprobs, differentiable
///   parameters()                  -> the trainable tensors, in a stable order
///
/// Satisfied by: grpo::Qwen2Policy (model/qwen2_policy.hpp).
template <class P>
concept Policy = requires(P& p, std::span<const std::string> prompts, const SamplingOptions& options,
                          const TokenBatch& batch, double temperature) {
  { p.generate(prompts, options) } -> std::same_as<std::vector<Generation>>;
  { p.logprobs(batch, temperature) } -> std::same_as<TokenLogprobs>;
  { p.parameters() } -> std::same_as<std::vector<at::Tensor>>;
};

/// A policy whose weights can be saved in Hugging Face layout and restored by name: what the
/// trainer's checkpoints and `--resume` need.
///   named_parameters()     -> (name, tensor) pairs, names as in the saved safetensors
///   save_pretrained(dir)   -> writes config.json, *.safetensors (+ index), tokenizer files
///
/// Satisfied by: grpo::Qwen2Policy.
template <class P>
concept CheckpointablePolicy = Policy<P> && requires(P& p, const std::filesystem::path& dir) {
  { p.named_parameters() } -> std::same_as<std::vector<std::pair<std::string, at::Tensor>>>;
  p.save_pretrained(dir);
};

/// A checkpointable policy that restores the folders its save_pretrained wrote itself, because
/// its saved layout is not one tensor per named_parameters() name (LoRA adapters in
/// folder/adapter, say). grpo::load_checkpoint calls restore_weights(folder) when it exists, and
/// copies named_parameters() by name and shape otherwise (customization_points.hpp).
///   restore_weights(folder)  -> loads folder (a checkpoint's policy/) into this policy
///
/// Satisfied by: grpo::Qwen2Policy.
template <class P>
concept SelfRestoringPolicy = CheckpointablePolicy<P> && requires(P& p, const std::filesystem::path& folder) {
  p.restore_weights(folder);
};

/// A CheckpointablePolicy that can be split over a tensor-parallel group (Trainer::distribute with
/// a grpo::DeviceMesh; the tensor-parallel hooks of customization_points.hpp):
///   tensor_parallel_size()  T, the size of the group the policy is split over (1: whole)
///   parameter_copies()      per parameters() entry, how many ranks of the group hold an identical
///                           copy of it (1: split; the group size: replicated): the gradient norm
///                           counts each element once
///   gather_whole(name, t)   the whole tensor of parameter `name` from this rank's slice t (e.g.
///                           its AdamW moments): a collective, every rank of the group calls it
///   local_slice(name, t)    this rank's slice of a whole tensor t shaped like parameter `name`
///   parameter_slice(name)   which slice that is (grpo::TensorSlice), recorded beside each piece
///                           of a sharded checkpoint
///   save_config(folder)     what describes the model besides its weights (config, tokenizer):
///                           a sharded checkpoint keeps it to be converted into a whole folder.
///                           One rank calls it (world rank 0): it must not be a collective
/// Without a group (T = 1): all 1, t, t and the whole tensor.
///
/// Satisfied by: grpo::Qwen2Policy.
template <class P>
concept TensorParallelPolicy =
    CheckpointablePolicy<P> && requires(P& p, const P& cp, const std::string& name, const at::Tensor& t) {
      { cp.tensor_parallel_size() } -> std::convertible_to<int>;
      { p.parameter_copies() } -> std::convertible_to<std::vector<std::int64_t>>;
      { p.gather_whole(name, t) } -> std::convertible_to<at::Tensor>;
      { cp.local_slice(name, t) } -> std::convertible_to<at::Tensor>;
      { cp.parameter_slice(name) } -> std::convertible_to<TensorSlice>;
      p.save_config(std::filesystem::path());
    };

namespace archetypes {
/// The least a Policy must provide.
struct MinimalPolicy {
  std::vector<Generation> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  TokenLogprobs logprobs(const TokenBatch&, double) { return {}; }
  std::vector<at::Tensor> parameters() { return {}; }
};

/// The least a CheckpointablePolicy must provide.
struct MinimalCheckpointablePolicy : MinimalPolicy {
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() { return {}; }
  void save_pretrained(const std::filesystem::path&) {}
};

/// The least a SelfRestoringPolicy must provide.
struct MinimalSelfRestoringPolicy : MinimalCheckpointablePolicy {
  void restore_weights(const std::filesystem::path&) {}
};

/// The least a TensorParallelPolicy must provide.
struct MinimalTensorParallelPolicy : MinimalCheckpointablePolicy {
  int tensor_parallel_size() const { return 1; }
  std::vector<std::int64_t> parameter_copies() { return {}; }
  at::Tensor gather_whole(const std::string&, const at::Tensor& t) { return t; }
  at::Tensor local_slice(const std::string&, const at::Tensor& t) const { return t; }
  TensorSlice parameter_slice(const std::string&) const { return {}; }
  void save_config(const std::filesystem::path&) {}
};
}  // namespace archetypes

static_assert(TensorParallelPolicy<archetypes::MinimalTensorParallelPolicy>);
static_assert(Policy<archetypes::MinimalPolicy>);
static_assert(CheckpointablePolicy<archetypes::MinimalCheckpointablePolicy>);
static_assert(SelfRestoringPolicy<archetypes::MinimalSelfRestoringPolicy>);

}  // namespace grpo
