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
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/file_kind.hpp"
#include "grpo/io/safetensors.hpp"
#include "grpo/model/lora.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/model/qwen2_config.hpp"
#include "grpo/model/qwen2_sharding.hpp"

namespace grpo {

/// How a checkpoint is loaded.
struct Qwen2LoadOptions {
  c10::Device device = c10::kCPU;       ///< device of the parameters; default CPU
  c10::ScalarType dtype = c10::kFloat;  ///< parameter dtype (the checkpoint's is converted); default float32
  bool activation_checkpointing = false;  ///< see Qwen2Options::activation_checkpointing; default false
  /// Split the model over this tensor-parallel group: each rank reads only its slices of the
  /// checkpoint (memory-mapped, narrowed before copying); default none (the whole model).
  TensorParallel tensor_parallel{};
  bool sequence_parallel = false;  ///< see Qwen2Options::sequence_parallel; default false
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
  /// false: config.json and the tokenizer files only, nothing gathered (a sharded checkpoint's
  /// description of its model, grpo/trainer/sharded_checkpoint.hpp). Default true.
  bool weights = true;
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

/// This rank's `slice` of the checkpoint's tensor `name`, read from the mapping and shape-checked
/// (the whole tensor: `parameter`'s shape with slice.full along slice.dim).
inline at::Tensor read_parameter_slice(const io::SafetensorsCheckpoint& checkpoint, const std::string& name,
                                       const at::Tensor& parameter, const ParameterSlice& slice,
                                       const io::TensorLoadOptions& load) {
  std::vector<std::int64_t> whole(parameter.sizes().begin(), parameter.sizes().end());
  whole[static_cast<std::size_t>(slice.dim)] = slice.full;
  return checkpoint.require_slice(name, whole, slice.dim, slice.slice.start, slice.slice.length, load);
}

/// Copies every parameter of `module` from `checkpoint` (shape-checked; with tensor parallelism
/// this rank's slice of each tensor, `shard`). Tensors the checkpoint holds that nothing uses were
/// refused before (check_qwen2_checkpoint_shapes).
inline void load_parameters(torch::nn::Module& module, const io::SafetensorsCheckpoint& checkpoint,
                            const Qwen2LoadOptions& options, const Qwen2Shard& shard = {}) {
  at::NoGradGuard no_grad;
  const io::TensorLoadOptions load{.device = options.device, .dtype = options.dtype};
  for (auto& item : module.named_parameters()) {
    auto& parameter = item.value();
    const auto slice = qwen2_parameter_slice(item.key(), shard);
    parameter.copy_(slice.whole() ? checkpoint.require(item.key(), parameter.sizes(), load)
                                  : read_parameter_slice(checkpoint, item.key(), parameter, slice, load));
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

/// Tensor-parallel (`tp` active): every rank of the group calls it; each tensor is gathered whole
/// (one at a time, to the CPU) and the group's rank 0 writes the folder.
inline void save_checkpoint(torch::nn::Module& module, Qwen2Config config, const std::filesystem::path& folder,
                            const Qwen2SaveOptions& options, const Qwen2Shard& shard = {}, const TensorParallel& tp = {}) {
  // An adapted projection is saved merged (W + scaling B A): the folder is a plain model to
  // transformers; the adapters themselves go to adapter/ (PEFT layout).
  // Merged on the parameters' device one at a time, kept in host memory until written: the
  // device holds one extra weight at most (a second copy of a 32B model would not fit beside it).
  std::map<std::string, at::Tensor> merged;
  const auto adapted = lora_projections(module);
  if (options.weights)
    for (const auto& [name, projection] : adapted) merged.emplace(name + ".weight", projection->effective_weight().cpu());
  io::NamedTensors tensors;
  c10::ScalarType dtype = c10::kFloat;
  for (const auto& item : module.named_parameters()) {
    if (is_lora_parameter(item.key())) continue;
    dtype = item.value().scalar_type();
    if (!options.weights) continue;
    const auto it = merged.find(item.key());
    // Tensor-parallel: every rank joins each gather; only the writer keeps the whole tensor.
    auto whole = it != merged.end() ? it->second : gather_qwen2_parameter(item.key(), item.value().detach(), shard, tp);
    if (tp.rank() == 0) tensors.emplace_back(item.key(), std::move(whole));
  }
  if (tp.rank() != 0) return;  // the group's rank 0 writes
  config.torch_dtype = dtype_name(dtype);
  // An earlier write of this folder that a kill interrupted left its staging folder behind.
  const auto name = folder.filename().empty() ? folder.parent_path().filename() : folder.filename();
  io::remove_write_leftovers(io::detail::parent_folder(folder), name.string() + ".");
  io::StagedDirectory stage(folder);
  save_qwen2_config(config, stage.path());
  if (options.weights)
    io::save_sharded_safetensors(stage.path(), tensors, io::ShardOptions{.max_shard_bytes = options.max_shard_bytes});
  if (!adapted.empty() && options.weights) save_lora_adapter(module, stage.path() / "adapter", options.base_model);
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
                                   .activation_checkpointing = options.activation_checkpointing,
                                   .tensor_parallel = options.tensor_parallel,
                                   .sequence_parallel = options.sequence_parallel});
  load_parameters(*model, checkpoint, options, model->model->shard());
  return model;
}
}  // namespace detail

// ---- checks before anything is allocated ---------------------------------------------------

/// Checks that `folder` is a folder and that every file grpo may read from a checkpoint folder
/// (config.json, generation_config.json, the tokenizer files, *.safetensors,
/// model.safetensors.index.json, adapter_config.json) is, where present, a regular file or a link
/// to one. Opens nothing: a FIFO under one of those names would block its reader, and a folder
/// or a dangling link would fail later with a message naming the wrong cause. Throws grpo::Error
/// naming the path and what was found.
inline void check_checkpoint_folder(const std::filesystem::path& folder) {
  const auto kind = io::describe_path_kind(folder);
  if (kind != "a folder") {
    throw Error(folder.string() + ": expected a checkpoint folder (config.json, model.safetensors, tokenizer.json), found " +
                kind + (kind == "a regular file" ? "; give the folder that holds it" : ""));
  }
  static const std::set<std::string, std::less<>> read_names = {
      "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
      "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "model.safetensors.index.json",
      "adapter_config.json"};
  std::error_code ec;
  for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (read_names.contains(name) || name.ends_with(".safetensors")) {
      io::require_regular_file(it->path(), "a checkpoint file");
    }
  }
  if (ec) throw Error(folder.string() + ": cannot list the checkpoint folder: " + ec.message());
}

/// Checks every tensor the model of `config` needs against the safetensors headers of
/// `checkpoint` before any parameter is allocated: present, with the shape the config implies
/// (the whole tensor, as a checkpoint stores it), and no tensor the model would not use (except
/// lm_head.weight of a tied model and rotary inv_freq buffers, which transformers ignores too).
/// `folder` names the config in messages. With H = hidden_size, V = vocab_size, I =
/// intermediate_size, d = head_dim, n / m = query / key-value heads:
///   model.embed_tokens.weight [V, H], model.norm.weight [H], per layer l (model.layers.l.):
///   input_layernorm.weight, post_attention_layernorm.weight [H]; self_attn.q_proj.weight [n d, H],
///   .bias [n d]; k_proj / v_proj.weight [m d, H], .bias [m d]; o_proj.weight [H, n d];
///   mlp.gate_proj / up_proj.weight [I, H], mlp.down_proj.weight [H, I];
///   causal LM: lm_head.weight [V, H] unless tied; sequence classification: score.weight [num_labels, H].
inline void check_qwen2_checkpoint_shapes(const Qwen2Config& config, const io::SafetensorsCheckpoint& checkpoint,
                                          const std::filesystem::path& folder) {
  const std::int64_t H = config.hidden_size, V = config.vocab_size, I = config.intermediate_size;
  const std::int64_t d = head_dim_of(config), n = config.num_attention_heads, m = config.num_key_value_heads;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected = {{"model.embed_tokens.weight", {V, H}},
                                                                             {"model.norm.weight", {H}}};
  for (std::int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const auto layer = fmt::format("model.layers.{}.", l);
    expected.insert(expected.end(), {{layer + "input_layernorm.weight", {H}},
                                     {layer + "post_attention_layernorm.weight", {H}},
                                     {layer + "self_attn.q_proj.weight", {n * d, H}},
                                     {layer + "self_attn.q_proj.bias", {n * d}},
                                     {layer + "self_attn.k_proj.weight", {m * d, H}},
                                     {layer + "self_attn.k_proj.bias", {m * d}},
                                     {layer + "self_attn.v_proj.weight", {m * d, H}},
                                     {layer + "self_attn.v_proj.bias", {m * d}},
                                     {layer + "self_attn.o_proj.weight", {H, n * d}},
                                     {layer + "mlp.gate_proj.weight", {I, H}},
                                     {layer + "mlp.up_proj.weight", {I, H}},
                                     {layer + "mlp.down_proj.weight", {H, I}}});
  }
  const bool causal = config.architecture == Qwen2Architecture::causal_lm;
  if (causal && !config.tie_word_embeddings) expected.push_back({"lm_head.weight", {V, H}});
  if (!causal) expected.push_back({"score.weight", {config.num_labels, H}});

  const auto config_file = (folder / "config.json").string();
  std::set<std::string, std::less<>> used;
  for (const auto& [name, shape] : expected) {
    if (!checkpoint.contains(name)) {
      throw Error(fmt::format("{}: missing tensor '{}' ({} describes a model that has it)", checkpoint.path().string(),
                              name, config_file));
    }
    const auto& info = checkpoint.info(name);
    if (info.shape != shape) {
      throw Error(fmt::format("{}: tensor '{}': expected shape {}, found {} (does {} match these weights?)",
                              checkpoint.file_of(name).path().string(), name, io::detail::shape_text(shape),
                              io::detail::shape_text(info.shape), config_file));
    }
    used.insert(name);
  }
  std::vector<std::string> unused;
  for (const auto& name : checkpoint.names()) {
    if (used.contains(name) || name.ends_with("rotary_emb.inv_freq")) continue;
    if (causal && config.tie_word_embeddings && name == "lm_head.weight") continue;  // transformers ties it
    unused.push_back(name);
  }
  if (!unused.empty()) {
    std::string names;
    for (std::size_t i = 0; i < unused.size() && i < 5; ++i) names += (i ? ", " : "") + unused[i];
    if (unused.size() > 5) names += fmt::format(", ... ({} in all)", unused.size());
    throw Error(checkpoint.path().string() + ": tensors the model does not use: " + names +
                "; the checkpoint is not this architecture (check " + config_file + ")");
  }
}

/// Everything about a checkpoint folder that can be known without allocating the model:
/// check_checkpoint_folder, config.json (sizes within Qwen2SizeLimits), the architecture, the
/// safetensors headers (check_qwen2_checkpoint_shapes). Throws grpo::Error naming the file.
inline void check_qwen2_checkpoint(const std::filesystem::path& folder, Qwen2Architecture architecture) {
  check_checkpoint_folder(folder);
  const auto config = load_qwen2_config(folder);
  detail::check_architecture(config, architecture, folder);
  check_qwen2_checkpoint_shapes(config, io::SafetensorsCheckpoint::open(folder), folder);
}

/// Builds a Qwen2ForCausalLM from a checkpoint folder (config.json + safetensors).
inline Qwen2Model load_qwen2(const std::filesystem::path& folder, const Qwen2LoadOptions& options = {}) {
  check_qwen2_checkpoint(folder, Qwen2Architecture::causal_lm);
  return detail::load_architecture<Qwen2Model>(folder, options, Qwen2Architecture::causal_lm);
}

/// Builds a Qwen2ForSequenceClassification (reward model) from a checkpoint folder.
inline Qwen2RewardModel load_qwen2_reward_model(const std::filesystem::path& folder, const Qwen2LoadOptions& options = {}) {
  check_qwen2_checkpoint(folder, Qwen2Architecture::sequence_classification);
  return detail::load_architecture<Qwen2RewardModel>(folder, options, Qwen2Architecture::sequence_classification);
}

/// Writes `model` as a checkpoint folder transformers' AutoModelForCausalLM.from_pretrained loads
/// (tensor-parallel: every rank of the group calls it, the group's rank 0 writes).
inline void save_qwen2(Qwen2Model& model, const std::filesystem::path& folder, const Qwen2SaveOptions& options = {}) {
  auto config = model->config();
  config.architecture = Qwen2Architecture::causal_lm;
  detail::save_checkpoint(*model, config, folder, options, model->model->shard(), model->tensor_parallel());
}

/// Writes a reward model as a checkpoint folder AutoModelForSequenceClassification loads.
inline void save_qwen2_reward_model(Qwen2RewardModel& model, const std::filesystem::path& folder,
                                    const Qwen2SaveOptions& options = {}) {
  auto config = model->config();
  config.architecture = Qwen2Architecture::sequence_classification;
  detail::save_checkpoint(*model, config, folder, options, model->model->shard(), model->model->tensor_parallel());
}

}  // namespace grpo
