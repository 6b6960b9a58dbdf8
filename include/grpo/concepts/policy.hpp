#pragma once
// The Policy concept: what the trainer needs from a language model.

#include <ATen/core/Tensor.h>

#include <concepts>
#include <filesystem>
#include <utility>
#include <span>
#include <string>
#include <vector>

#include "grpo/sampling/types.hpp"

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

namespace archetypes {
/// The least a Policy must provide.
struct MinimalPolicy {
  std::vector<Generation> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  TokenLogprobs logprobs(const TokenBatch&, double) { return {}; }
  std::vector<at::Tensor> parameters() { return {}; }
};
}  // namespace archetypes

static_assert(Policy<archetypes::MinimalPolicy>);

}  // namespace grpo
