#pragma once
// LoRA adapters for the Qwen2 model, in the layout of Hugging Face PEFT (peft 0.21, LoraConfig).
//
// add_lora(model, options) gives each targeted projection of every decoder layer (q/k/v/o_proj,
// gate/up/down_proj by default) two small matrices, lora_A [rank, in] and lora_B [out, rank]:
//   y = x W^T + b + scaling * (x A^T) B^T,   scaling = alpha / rank (alpha / sqrt(rank), rsLoRA)
// and freezes every other parameter, so the trainer, which optimises what requires a gradient,
// trains the adapters only: AdamW moments and gradient sums for a few million numbers instead of
// the whole model (what lets a 32B policy train on one 141 GB GPU, its weights replicated).
// A starts uniform in +-1/sqrt(in) (PEFT's kaiming_uniform(a=sqrt(5))), B at zero: the adapted
// model starts as the base model. No dropout: generation and teacher forcing must compute the
// same function (PEFT's lora_dropout is refused on add_lora and ignored on loading an adapter).
//
// Files (what PEFT's save_pretrained writes and PeftModel.from_pretrained reads):
//   adapter_config.json          peft_type LORA, r, lora_alpha, target_modules, use_rslora, ...
//   adapter_model.safetensors    "base_model.model.<module>.lora_A.weight" / ".lora_B.weight"
// save_qwen2 on an adapted model writes the merged weights (W + scaling B A, what transformers
// loads) and the adapter in an "adapter" subfolder.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/TensorOptions.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/safetensors.hpp"
#include "grpo/model/layers.hpp"

namespace grpo {

/// Which projections get an adapter and how it is sized (PEFT's LoraConfig fields).
struct LoraOptions {
  std::int64_t rank = 8;  ///< r: inner dimension of each adapter; default 8
  double alpha = 16.0;    ///< lora_alpha: the update is scaled by alpha / rank (ProjectionImpl::lora_scaling); default 16
  /// Projections to adapt, matched as PEFT does: a module whose name is the target or ends with
  /// "." + target. A bare name (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)
  /// adapts it in every layer; a longer one ("model.layers.3.mlp.up_proj", as PEFT writes
  /// "all-linear" out) one module. Default: all seven in every layer.
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  bool use_rslora = false;                 ///< scale by alpha / sqrt(rank) instead; default false
  c10::ScalarType dtype = c10::kFloat;     ///< adapter dtype (PEFT keeps adapters in float32); default float32
  /// true: B = 0 (the adapted model starts as the base, PEFT's default); false: B uniform in
  /// +-1/sqrt(rank) too (PEFT's init_lora_weights=False, for tests). Default true.
  bool zero_init_b = true;
};

namespace detail {

inline const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names;
}

inline std::string last_component(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

/// PEFT's rule for a target given as a string of a list: the name itself or a "."-suffix of it.
inline bool target_matches(const std::string& module, const std::string& target) {
  return module == target || (module.size() > target.size() && module.ends_with(target) &&
                              module[module.size() - target.size() - 1] == '.');
}

/// The projections of the decoder layers (never lm_head / score), with their names.
inline std::vector<std::pair<std::string, std::shared_ptr<ProjectionImpl>>> layer_projections(torch::nn::Module& module) {
  std::vector<std::pair<std::string, std::shared_ptr<ProjectionImpl>>> out;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    auto projection = std::dynamic_pointer_cast<ProjectionImpl>(item.value());
    if (projection && item.key().find("layers.") != std::string::npos) out.emplace_back(item.key(), std::move(projection));
  }
  return out;
}

inline void check_lora_options(const LoraOptions& options, const std::string& where) {
  if (options.rank <= 0) throw Error(fmt::format("{}: rank (r): expected > 0, found {}", where, options.rank));
  if (!(options.alpha > 0.0) || !std::isfinite(options.alpha)) {
    throw Error(fmt::format("{}: alpha (lora_alpha): expected a finite number > 0, found {}", where, options.alpha));
  }
  if (options.target_modules.empty()) throw Error(where + ": target_modules: expected at least one projection name");
  for (const auto& target : options.target_modules) {
    const auto& known = lora_target_names();
    if (std::find(known.begin(), known.end(), last_component(target)) == known.end()) {
      throw Error(where + ": target_modules: unknown projection '" + target +
                  "'; expected any of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    }
  }
  check_floating_dtype(options.dtype, (where + ": dtype").c_str());
}

}  // namespace detail

/// The adapted projections of `module`, with their names ("model.layers.0.self_attn.q_proj"), in
/// module order; empty without adapters.
inline std::vector<std::pair<std::string, std::shared_ptr<ProjectionImpl>>> lora_projections(torch::nn::Module& module) {
  auto out = detail::layer_projections(module);  // adapters live in the decoder layers only (add_lora)
  std::erase_if(out, [](const auto& item) { return !item.second->lora_A; });
  return out;
}

/// Whether `module` holds LoRA adapters.
inline bool has_lora(torch::nn::Module& module) { return !lora_projections(module).empty(); }

/// Whether a parameter name belongs to an adapter ("...q_proj.lora_A.weight").
inline bool is_lora_parameter(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

/// Adds an adapter to every targeted projection inside decoder layers and freezes every other
/// parameter (requires_grad false); adapters go on their projection's device. Returns how many
/// projections were adapted. Throws grpo::Error for invalid options, a model that already has
/// adapters, or one where no projection matches the targets.
inline std::int64_t add_lora(torch::nn::Module& module, const LoraOptions& options) {
  detail::check_lora_options(options, "LoRA options");
  if (has_lora(module)) throw Error("add_lora: the model already has LoRA adapters");
  std::vector<std::shared_ptr<ProjectionImpl>> chosen;
  const auto candidates = detail::layer_projections(module);
  for (const auto& target : options.target_modules) {
    const bool found = std::any_of(candidates.begin(), candidates.end(),
                                   [&](const auto& c) { return detail::target_matches(c.first, target); });
    if (!found) throw Error("add_lora: target_modules: '" + target + "' matches no projection of the model's layers");
  }
  for (const auto& [name, projection] : candidates) {
    const bool wanted = std::any_of(options.target_modules.begin(), options.target_modules.end(),
                                    [&](const std::string& t) { return detail::target_matches(name, t); });
    if (wanted) chosen.push_back(projection);
  }
  {
    at::NoGradGuard no_grad;
    for (auto& p : module.parameters()) p.requires_grad_(false);
  }
  for (auto& projection : chosen) {
    const auto out_features = projection->weight.size(0);
    const auto in_features = projection->weight.size(1);
    const ParameterOptions adapter{.device = projection->weight.device(), .dtype = options.dtype, .initialize = false};
    auto a = std::make_shared<ProjectionImpl>(in_features, options.rank, false, adapter);
    auto b = std::make_shared<ProjectionImpl>(options.rank, out_features, false, adapter);
    {
      at::NoGradGuard no_grad;
      const double bound_a = 1.0 / std::sqrt(static_cast<double>(in_features));
      a->weight.uniform_(-bound_a, bound_a);
      if (options.zero_init_b) {
        b->weight.zero_();
      } else {
        const double bound_b = 1.0 / std::sqrt(static_cast<double>(options.rank));
        b->weight.uniform_(-bound_b, bound_b);
      }
    }
    projection->lora_A = projection->register_module("lora_A", a);
    projection->lora_B = projection->register_module("lora_B", b);
    projection->lora_alpha = options.alpha;
    projection->lora_rslora = options.use_rslora;
  }
  return static_cast<std::int64_t>(chosen.size());
}

/// Switches the adapters off for a scope (the base model's function; the adapters are kept), as
/// Qwen2Policy::base_model_view does for the KL reference; each is left as it was before (nested
/// guards work).
class LoraDisabled {
 public:
  explicit LoraDisabled(torch::nn::Module& module) {
    for (auto& [name, projection] : lora_projections(module)) {
      saved_.emplace_back(projection, projection->lora_enabled);
      projection->lora_enabled = false;
    }
  }
  ~LoraDisabled() {
    for (auto& [projection, enabled] : saved_) projection->lora_enabled = enabled;
  }
  LoraDisabled(const LoraDisabled&) = delete;
  LoraDisabled& operator=(const LoraDisabled&) = delete;

 private:
  std::vector<std::pair<std::shared_ptr<ProjectionImpl>, bool>> saved_;
};

/// The options that describe the adapters `module` holds (rank and targets read from the
/// tensors, alpha and rsLoRA as they were made). Throws when it has none.
inline LoraOptions lora_options_of(torch::nn::Module& module) {
  const auto found = lora_projections(module);
  if (found.empty()) throw Error("the model has no LoRA adapters");
  const auto& first = *found.front().second;
  LoraOptions options;
  options.rank = first.lora_A->weight.size(0);
  options.alpha = first.lora_alpha;
  options.use_rslora = first.lora_rslora;
  options.dtype = first.lora_A->weight.scalar_type();
  // A bare name where every layer's projection of that name is adapted, else the full names.
  std::map<std::string, std::pair<int, int>> counts;  // last name -> (adapted, in the layers)
  for (const auto& [name, projection] : detail::layer_projections(module)) {
    auto& [adapted, total] = counts[detail::last_component(name)];
    ++total;
    adapted += projection->lora_A ? 1 : 0;
  }
  options.target_modules.clear();
  for (const auto& [last, count] : counts)
    if (count.first == count.second) options.target_modules.push_back(last);
  for (const auto& [name, projection] : found)
    if (counts[detail::last_component(name)].first != counts[detail::last_component(name)].second)
      options.target_modules.push_back(name);
  return options;
}

namespace detail {

inline constexpr const char* peft_prefix = "base_model.model.";

inline nlohmann::json adapter_config_json(const LoraOptions& options, const std::string& base_model) {
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"r", options.rank},
          {"lora_alpha", options.alpha},
          {"target_modules", options.target_modules},
          {"lora_dropout", 0.0},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"use_rslora", options.use_rslora},
          {"use_dora", false},
          {"init_lora_weights", true},
          {"inference_mode", true},
          {"modules_to_save", nullptr},
          {"base_model_name_or_path", base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(base_model)}};
}

}  // namespace detail

/// Writes the adapters of `module` as a PEFT adapter folder (adapter_config.json and
/// adapter_model.safetensors, float32 or the adapters' dtype), atomically. `base_model` goes into
/// base_model_name_or_path (may be empty).
inline void save_lora_adapter(torch::nn::Module& module, const std::filesystem::path& folder, const std::string& base_model = {}) {
  const auto options = lora_options_of(module);
  io::NamedTensors tensors;
  for (const auto& [name, projection] : lora_projections(module)) {
    tensors.emplace_back(detail::peft_prefix + name + ".lora_A.weight", projection->lora_A->weight.detach());
    tensors.emplace_back(detail::peft_prefix + name + ".lora_B.weight", projection->lora_B->weight.detach());
  }
  io::StagedDirectory stage(folder);
  io::save_safetensors(stage.path() / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  io::write_file_atomically(stage.path() / "adapter_config.json", detail::adapter_config_json(options, base_model).dump(2) + "\n");
  stage.publish();
}

/// Reads a PEFT adapter_config.json into LoraOptions. Settings that change what the adapter
/// computes and that this implementation does not have (DoRA, aLoRA and the other variants, LoRA
/// biases, per-module rank or alpha patterns, layer subsets, fan_in_fan_out, modules_to_save, a
/// regex target_modules ("all-linear" is read), inits that rewrite the base weights such as PiSSA
/// or LoftQ) are refused
/// with an error naming the field; lora_dropout is ignored (it only acts in training).
inline LoraOptions load_lora_config(const std::filesystem::path& folder) {
  const auto path = folder / "adapter_config.json";
  if (!std::filesystem::exists(path)) throw Error(path.string() + ": not found (expected a PEFT LoRA adapter folder)");
  const auto root = io::read_json_file(path, 1 << 20);
  if (!root.is_object()) throw Error(path.string() + ": expected a JSON object, found " + io::quote_json(root));
  const auto where = path.string();
  auto field = [&](const char* key) -> const nlohmann::json* {
    auto it = root.find(key);
    return it == root.end() || it->is_null() ? nullptr : &*it;
  };
  auto refuse_unless = [&](const char* key, auto&& acceptable) {
    const auto* value = field(key);
    if (value != nullptr && !acceptable(*value)) {
      throw Error(where + ": " + key + " = " + io::quote_json(*value) + " is not supported (grpo's LoRA has no such setting)");
    }
  };
  const auto* type = field("peft_type");
  if (type == nullptr || !type->is_string() || type->get<std::string>() != "LORA") {
    throw Error(where + ": peft_type: expected \"LORA\"" + (type ? ", found " + io::quote_json(*type) : std::string(", missing")));
  }
  LoraOptions options;
  try {
    const auto* r = field("r");
    if (r == nullptr || !r->is_number_integer()) throw Error(where + ": r: expected an integer rank");
    options.rank = r->get<std::int64_t>();
    const auto* alpha = field("lora_alpha");
    if (alpha == nullptr || !alpha->is_number()) throw Error(where + ": lora_alpha: expected a number");
    options.alpha = alpha->get<double>();
    const auto* targets = field("target_modules");
    if (targets != nullptr && targets->is_string() && targets->get<std::string>() == "all-linear") {
      // PEFT's shorthand: every linear layer but the output layer, i.e. the seven projections of
      // each decoder layer of a Qwen2 model.
      options.target_modules = detail::lora_target_names();
    } else if (targets == nullptr || !targets->is_array()) {
      throw Error(where + ": target_modules: expected a list of projection names or \"all-linear\"" +
                  (targets ? ", found " + io::quote_json(*targets) + " (a regular expression is not supported)" : std::string()));
    } else {
      options.target_modules.clear();
      for (const auto& t : *targets) {
        if (!t.is_string()) throw Error(where + ": target_modules: expected strings, found " + io::quote_json(t));
        options.target_modules.push_back(t.get<std::string>());
      }
    }
    if (const auto* rs = field("use_rslora")) {
      if (!rs->is_boolean()) throw Error(where + ": use_rslora: expected true or false, found " + io::quote_json(*rs));
      options.use_rslora = rs->get<bool>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": " + e.what());
  }
  const auto is_false = [](const nlohmann::json& v) { return v.is_boolean() && !v.get<bool>(); };
  const auto is_empty = [](const nlohmann::json& v) { return v.empty(); };
  refuse_unless("use_dora", is_false);
  refuse_unless("lora_bias", is_false);
  refuse_unless("fan_in_fan_out", is_false);
  refuse_unless("bias", [](const nlohmann::json& v) { return v.is_string() && v.get<std::string>() == "none"; });
  refuse_unless("rank_pattern", is_empty);
  refuse_unless("alpha_pattern", is_empty);
  refuse_unless("layers_to_transform", is_empty);
  refuse_unless("modules_to_save", is_empty);
  refuse_unless("exclude_modules", is_empty);
  // Inits that rewrite the base weights when PEFT loads the adapter (PiSSA, CorDA, OLoRA, LoftQ,
  // LoRA-GA) would compute something else from W + B A; the ones that only start A and B are fine.
  refuse_unless("init_lora_weights", [](const nlohmann::json& v) {
    return v.is_boolean() || (v.is_string() && (v == "gaussian" || v == "orthogonal" || v == "eva"));
  });
  // Variants whose function is not W + s B A on every token, or that change other modules.
  const auto off = [](const nlohmann::json& v) { return v.empty() || (v.is_boolean() && !v.get<bool>()); };
  for (const char* key : {"alora_invocation_tokens", "use_bdlora", "velora_config", "monteclora_config", "arrow_config",
                          "kasa_config", "use_qalora", "target_parameters", "layer_replication", "trainable_token_indices"})
    refuse_unless(key, off);
  detail::check_lora_options(options, where);
  return options;
}

/// Copies the weights of folder/adapter_model.safetensors into the adapters `module` already has
/// (same strictness as load_lora_adapter; the values keep the adapters' dtype).
inline void load_lora_weights(torch::nn::Module& module, const std::filesystem::path& folder) {
  const auto file = io::SafetensorsFile::open(folder / "adapter_model.safetensors");
  std::set<std::string> used;
  at::NoGradGuard no_grad;
  for (const auto& [name, projection] : lora_projections(module)) {
    for (auto* part : {projection->lora_A.get(), projection->lora_B.get()}) {
      const std::string key = detail::peft_prefix + name + (part == projection->lora_A.get() ? ".lora_A.weight" : ".lora_B.weight");
      if (!file.contains(key)) {
        throw Error(file.path().string() + ": missing tensor '" + key + "' (adapter_config.json targets " +
                    detail::last_component(name) + ")");
      }
      const auto value = file.tensor(key, {.device = part->weight.device(), .dtype = part->weight.scalar_type()});
      if (!value.sizes().equals(part->weight.sizes())) {
        throw Error(file.path().string() + ": tensor '" + key + "' has shape " + c10::str(value.sizes()) + ", expected " +
                    c10::str(part->weight.sizes()) + " (r and the model's sizes)");
      }
      part->weight.copy_(value);
      used.insert(key);
    }
  }
  for (const auto& name : file.names()) {
    if (!used.contains(name)) {
      throw Error(file.path().string() + ": tensor '" + name + "' matches no adapted projection of this model");
    }
  }
}

/// Adds the adapters of a PEFT adapter folder to `module` (see add_lora: the rest is frozen) and
/// loads their weights, in float32 as PEFT does. Every adapter tensor of the file must be used and every adapter must be
/// in the file, with the expected shape; errors name the file and the tensor.
inline void load_lora_adapter(torch::nn::Module& module, const std::filesystem::path& folder) {
  auto options = load_lora_config(folder);
  options.dtype = c10::kFloat;  // as PEFT's from_pretrained (autocast_adapter_dtype): float32 whatever the file holds
  add_lora(module, options);
  load_lora_weights(module, folder);
}

}  // namespace grpo
