#pragma once
// Loading and saving Qwen2 models as Hugging Face checkpoint folders (config.json + safetensors,
// one file or shards with model.safetensors.index.json), the layout transformers'
// save_pretrained writes and from_pretrained reads.
//
// Loading is strict: every parameter of the model must be in the checkpoint with the expected
// shape, and every tensor of the checkpoint must be used, except the ones transformers also
// ignores (lm_head.weight of a tied model, the rotary inv_freq buffers some old checkpoints
// carry). Saving writes what transformers 5.24 writes: no lm_head.weight when tied, "dtype" in
// config.json, shards above ShardOptions' size, atomically (a crash leaves the old folder). A model
// with LoRA adapters (grpo/model/lora.hpp) is saved merged, with the adapters in adapter/.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <fmt/format.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/safetensors.hpp"
#include "grpo/model/lora.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/model/qwen2_config.hpp"

namespace grpo {

/// How a checkpoint is loaded.
struct Qwen2LoadOptions {
  c10::Device device = c10::kCPU;       ///< device of the parameters; default CPU
  c10::ScalarType dtype = c10::kFloat;  ///< parameter dtype (the checkpoint's is converted); default float32
  bool activation_checkpointing = false;  ///< see Qwen2Options::activation_checkpointing; default false
};

/// How a model is saved.
struct Qwen2SaveOptions {
  /// Largest safetensors shard in bytes; larger models are split with an index (default 5 GB).
  std::uint64_t max_shard_bytes = 5'000'000'000;
  /// A folder whose tokenizer and generation files (tokenizer.json, tokenizer_config.json,
  /// vocab.json, merges.txt, special_tokens_map.json, added_tokens.json, generation_config.json,
  /// chat_template.jinja) are copied next to the weights, when present; empty = none (default).
  std::filesystem::path copy_files_from = {};
  /// For a model with LoRA adapters: the base model's name or folder, written into
  /// adapter/adapter_config.json (base_model_name_or_path); may be empty.
  std::string base_model = {};
};

namespace detail {

inline std::string dtype_name(c10::ScalarType type) {
  switch (type) {
    case c10::kBFloat16: return "bfloat16";
    case c10::kHalf: return "float16";
    case c10::kFloat: return "float32";
    case c10::kDouble: return "float64";
    default: throw Error("Qwen2 checkpoint: cannot store parameters of dtype " + std::string(c10::toString(type)));
  }
}

/// Copies every parameter of `module` from `checkpoint` (shape-checked), then rejects tensors the
/// checkpoint holds that nothing used (a wrong architecture or a corrupt index).
inline void load_parameters(torch::nn::Module& module, const io::SafetensorsCheckpoint& checkpoint,
                            const Qwen2LoadOptions& options, bool tied) {
  at::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : module.named_parameters()) {
    auto& parameter = item.value();
    const auto loaded = checkpoint.require(item.key(), parameter.sizes(), io::TensorLoadOptions{.device = options.device, .dtype = options.dtype});
    parameter.copy_(loaded);
    used.insert(item.key());
  }
  std::vector<std::string> unused;
  for (const auto& name : checkpoint.names()) {
    if (used.contains(name)) continue;
    if (tied && name == "lm_head.weight") continue;  // transformers ties it to the embeddings
    if (name.ends_with("rotary_emb.inv_freq")) continue;  // a buffer, recomputed from rope_theta
    unused.push_back(name);
  }
  if (!unused.empty()) {
    std::string names;
    for (std::size_t i = 0; i < unused.size() && i < 5; ++i) names += (i ? ", " : "") + unused[i];
    if (unused.size() > 5) names += fmt::format(", ... ({} in all)", unused.size());
    throw Error(checkpoint.path().string() + ": tensors the model does not use: " + names +
                "; the checkpoint is not this architecture (check config.json \"architectures\")");
  }
}

inline void check_architecture(const Qwen2Config& config, Qwen2Architecture expected, const std::filesystem::path& folder) {
  if (config.architecture == expected) return;
  const bool want_causal = expected == Qwen2Architecture::causal_lm;
  throw Error(folder.string() + "/config.json: architectures: expected " +
              (want_causal ? "Qwen2ForCausalLM" : "Qwen2ForSequenceClassification") + ", found " +
              (want_causal ? "Qwen2ForSequenceClassification" : "Qwen2ForCausalLM") + "; use " +
              (want_causal ? "load_qwen2_reward_model" : "load_qwen2") + " for this checkpoint");
}

inline void save_checkpoint(torch::nn::Module& module, Qwen2Config config, const std::filesystem::path& folder,
                            const Qwen2SaveOptions& options) {
  // An adapted projection is saved merged (W + scaling B A): the folder is a plain model to
  // transformers; the adapters themselves go to adapter/ (PEFT layout).
  // Merged on the parameters' device one at a time, kept in host memory until written: the
  // device holds one extra weight at most (a second copy of a 32B model would not fit beside it).
  std::map<std::string, at::Tensor> merged;
  const auto adapted = lora_projections(module);
  for (const auto& [name, projection] : adapted) merged.emplace(name + ".weight", projection->effective_weight().cpu());
  io::NamedTensors tensors;
  c10::ScalarType dtype = c10::kFloat;
  for (const auto& item : module.named_parameters()) {
    if (is_lora_parameter(item.key())) continue;
    const auto it = merged.find(item.key());
    tensors.emplace_back(item.key(), it != merged.end() ? it->second : item.value().detach());
    dtype = item.value().scalar_type();
  }
  config.torch_dtype = dtype_name(dtype);
  // An earlier write of this folder that a kill interrupted left its staging folder behind.
  const auto name = folder.filename().empty() ? folder.parent_path().filename() : folder.filename();
  io::remove_write_leftovers(io::detail::parent_folder(folder), name.string() + ".");
  io::StagedDirectory stage(folder);
  save_qwen2_config(config, stage.path());
  io::save_sharded_safetensors(stage.path(), tensors, io::ShardOptions{.max_shard_bytes = options.max_shard_bytes});
  if (!adapted.empty()) save_lora_adapter(module, stage.path() / "adapter", options.base_model);
  if (!options.copy_files_from.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                             "special_tokens_map.json", "added_tokens.json", "generation_config.json",
                             "chat_template.jinja"}) {
      const auto source = options.copy_files_from / name;
      std::error_code ec;
      if (!std::filesystem::is_regular_file(source, ec)) continue;
      std::filesystem::copy_file(source, stage.path() / name, std::filesystem::copy_options::overwrite_existing, ec);
      if (ec) throw Error(source.string() + ": cannot copy into the checkpoint: " + ec.message());
    }
  }
  stage.publish();
}

}  // namespace detail

namespace detail {
/// A model of `architecture` built from a checkpoint folder (config.json + safetensors): the
/// module without initialisation, then every parameter loaded by name and shape.
template <class Model>
Model load_architecture(const std::filesystem::path& folder, const Qwen2LoadOptions& options, Qwen2Architecture architecture) {
  const auto config = load_qwen2_config(folder);
  check_architecture(config, architecture, folder);
  const auto checkpoint = io::SafetensorsCheckpoint::open(folder);
  Model model(config, Qwen2Options{.device = options.device,
                                   .dtype = options.dtype,
                                   .initialize = false,
                                   .activation_checkpointing = options.activation_checkpointing});
  // A reward model's score head is never tied to the embedding.
  const bool tied = architecture == Qwen2Architecture::causal_lm && config.tie_word_embeddings;
  load_parameters(*model, checkpoint, options, tied);
  return model;
}
}  // namespace detail

/// Builds a Qwen2ForCausalLM from a checkpoint folder (config.json + safetensors).
inline Qwen2Model load_qwen2(const std::filesystem::path& folder, const Qwen2LoadOptions& options = {}) {
  return detail::load_architecture<Qwen2Model>(folder, options, Qwen2Architecture::causal_lm);
}

/// Builds a Qwen2ForSequenceClassification (reward model) from a checkpoint folder.
inline Qwen2RewardModel load_qwen2_reward_model(const std::filesystem::path& folder, const Qwen2LoadOptions& options = {}) {
  return detail::load_architecture<Qwen2RewardModel>(folder, options, Qwen2Architecture::sequence_classification);
}

/// Writes `model` as a checkpoint folder transformers' AutoModelForCausalLM.from_pretrained loads.
inline void save_qwen2(Qwen2Model& model, const std::filesystem::path& folder, const Qwen2SaveOptions& options = {}) {
  auto config = model->config();
  config.architecture = Qwen2Architecture::causal_lm;
  detail::save_checkpoint(*model, config, folder, options);
}

/// Writes a reward model as a checkpoint folder AutoModelForSequenceClassification loads.
inline void save_qwen2_reward_model(Qwen2RewardModel& model, const std::filesystem::path& folder,
                                    const Qwen2SaveOptions& options = {}) {
  auto config = model->config();
  config.architecture = Qwen2Architecture::sequence_classification;
  detail::save_checkpoint(*model, config, folder, options);
}

}  // namespace grpo
