#pragma once
// Qwen2 / Qwen2.5 config.json in and out, as transformers 5.24 reads and writes it
// (transformers/models/qwen2/configuration_qwen2.py, configuration_utils.py, modeling_rope_utils.py).
//
// Reading is strict: grpo implements exactly one architecture (decoder-only, RMSNorm, SiLU
// gated MLP, biased q/k/v, full causal attention, default RoPE), so every key that would change
// it is checked, and a config asking for something else (YaRN or other RoPE scaling, sliding
// windows, M-RoPE, quantisation, custom code, attention dropout...) is rejected with the file and
// the field named, never silently ignored. Keys known not to affect the model (generation
// defaults, bookkeeping) are ignored; any other key is an error unless
// Qwen2ConfigOptions::allow_unknown_keys is set, because grpo cannot know what it means.
//
// Defaults for absent keys are transformers' (Qwen2Config's dataclass defaults), except the six
// sizes that define a model (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads; the last may be null = num_attention_heads): those
// must be stated, since transformers' 7B defaults are never what a checkpoint on disk means.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/file_kind.hpp"
#include "grpo/io/json.hpp"

namespace grpo {

/// Which head sits on the decoder.
enum class Qwen2Architecture {
  causal_lm,                ///< Qwen2ForCausalLM: lm_head [vocab_size, hidden_size] (tied or not)
  sequence_classification,  ///< Qwen2ForSequenceClassification: score [num_labels, hidden_size], no bias
};

/// The Qwen2 hyper-parameters grpo's model needs. Default values are transformers' Qwen2Config().
struct Qwen2Config {
  /// Rows of the embedding table and of lm_head (default 151936).
  std::int64_t vocab_size = 151936;
  /// Width of the residual stream (default 4096).
  std::int64_t hidden_size = 4096;
  /// Width of the gated MLP (default 22016).
  std::int64_t intermediate_size = 22016;
  /// Decoder layers (default 32).
  std::int64_t num_hidden_layers = 32;
  /// Query heads (default 32); divides hidden_size.
  std::int64_t num_attention_heads = 32;
  /// Key/value heads (default 32); divides num_attention_heads (GQA group = heads / kv heads).
  std::int64_t num_key_value_heads = 32;
  /// Width of one head; 0 (default) means hidden_size / num_attention_heads, which
  /// validate_qwen2_config fills in (any other value is rejected: Qwen2 derives it).
  std::int64_t head_dim = 0;
  /// Longest position the model was trained for (default 32768).
  std::int64_t max_position_embeddings = 32768;
  /// RoPE base theta (default 10000; Qwen2.5 uses 1e6). Only the default RoPE type is supported.
  double rope_theta = 10000.0;
  /// RMSNorm epsilon (default 1e-6).
  double rms_norm_eps = 1e-6;
  /// lm_head shares the embedding matrix (default false; true for Qwen2.5 0.5B-3B).
  bool tie_word_embeddings = false;
  /// q/k/v projections carry biases: always true for Qwen2 (false is rejected).
  bool attention_bias = true;
  /// Standard deviation of the normal initialisation of fresh weights (default 0.02).
  double initializer_range = 0.02;
  /// Beginning-of-sequence token, if stated (default none).
  std::optional<std::int64_t> bos_token_id = std::nullopt;
  /// End-of-sequence tokens (config.json may give one id or a list; default none).
  std::vector<std::int64_t> eos_token_ids = {};
  /// Padding token, if stated (default none); the classification head pools at the last non-pad token.
  std::optional<std::int64_t> pad_token_id = std::nullopt;
  /// Storage dtype stated by the checkpoint: "bfloat16", "float16", "float32", "float64", or "" (default: unstated).
  std::string torch_dtype = {};
  /// The head (default causal_lm).
  Qwen2Architecture architecture = Qwen2Architecture::causal_lm;
  /// Outputs of the classification head (default 2, transformers' default; reward models use 1).
  std::int64_t num_labels = 2;
};

/// How parse_qwen2_config treats keys it does not know.
struct Qwen2ConfigOptions {
  /// Ignore keys that are neither known-harmless nor known-architectural (default false: reject).
  bool allow_unknown_keys = false;
};

/// The largest sizes validate_qwen2_config accepts. They stop a corrupt or hostile config.json
/// (hidden_size 10^12 would ask the allocator for petabytes) before anything is allocated, and
/// leave ample room above the largest Qwen2/Qwen2.5 models: Qwen2.5-72B has vocab_size 152064,
/// hidden_size 8192, intermediate_size 29568, 80 layers, 64 query and 8 key/value heads;
/// Qwen2.5-7B-Instruct-1M has max_position_embeddings 1010000.
struct Qwen2SizeLimits {
  static constexpr std::int64_t vocab_size = std::int64_t{1} << 22;               ///< 4,194,304 tokens
  static constexpr std::int64_t hidden_size = std::int64_t{1} << 16;              ///< 65,536
  static constexpr std::int64_t intermediate_size = std::int64_t{1} << 18;        ///< 262,144
  static constexpr std::int64_t num_hidden_layers = std::int64_t{1} << 10;        ///< 1,024
  static constexpr std::int64_t num_attention_heads = std::int64_t{1} << 10;      ///< 1,024 (and the key/value heads)
  static constexpr std::int64_t max_position_embeddings = std::int64_t{1} << 24;  ///< 16,777,216 positions
  static constexpr std::int64_t num_labels = std::int64_t{1} << 16;               ///< 65,536 outputs of a score head
};

/// hidden_size / num_attention_heads unless head_dim is set.
inline std::int64_t head_dim_of(const Qwen2Config& config) noexcept {
  return config.head_dim != 0 ? config.head_dim
                              : (config.num_attention_heads > 0 ? config.hidden_size / config.num_attention_heads : 0);
}

/// Checks the invariants of a config (sizes positive and within Qwen2SizeLimits, heads dividing,
/// supported values) and fills head_dim. `source` names the config in messages
/// ("<source>: <field>: ..."). Throws grpo::Error.
inline void validate_qwen2_config(Qwen2Config& config, std::string_view source = "Qwen2Config") {
  const std::string src(source);
  const auto positive = [&](std::int64_t value, std::string_view field, std::int64_t limit) {
    if (value <= 0) {
      throw Error(fmt::format("{}: {}: expected a positive integer, found {}", src, field, value));
    }
    if (value > limit) {
      throw Error(fmt::format("{}: {}: {} is above the largest supported value {} (Qwen2.5-72B needs far less); "
                              "the file is corrupt or not a Qwen2 config",
                              src, field, value, limit));
    }
  };
  using Limits = Qwen2SizeLimits;
  positive(config.vocab_size, "vocab_size", Limits::vocab_size);
  positive(config.hidden_size, "hidden_size", Limits::hidden_size);
  positive(config.intermediate_size, "intermediate_size", Limits::intermediate_size);
  positive(config.num_hidden_layers, "num_hidden_layers", Limits::num_hidden_layers);
  positive(config.num_attention_heads, "num_attention_heads", Limits::num_attention_heads);
  positive(config.num_key_value_heads, "num_key_value_heads", Limits::num_attention_heads);
  positive(config.max_position_embeddings, "max_position_embeddings", Limits::max_position_embeddings);
  if (config.hidden_size % config.num_attention_heads != 0) {
    throw Error(fmt::format("{}: num_attention_heads: {} does not divide hidden_size {}; expected hidden_size = "
                            "num_attention_heads * head_dim",
                            src, config.num_attention_heads, config.hidden_size));
  }
  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    throw Error(fmt::format("{}: num_key_value_heads: {} does not divide num_attention_heads {} (grouped-query "
                            "attention needs whole groups)",
                            src, config.num_key_value_heads, config.num_attention_heads));
  }
  const std::int64_t derived = config.hidden_size / config.num_attention_heads;
  if (config.head_dim != 0 && config.head_dim != derived) {
    throw Error(fmt::format("{}: head_dim: {} differs from hidden_size / num_attention_heads = {}; grpo's Qwen2 "
                            "derives head_dim (remove the key or fix the sizes)",
                            src, config.head_dim, derived));
  }
  config.head_dim = derived;
  if (derived % 2 != 0) {
    throw Error(fmt::format("{}: head_dim {} is odd; rotary embeddings rotate pairs of channels", src, derived));
  }
  if (!(config.rope_theta > 0) || !std::isfinite(config.rope_theta)) {
    throw Error(fmt::format("{}: rope_theta: expected a positive finite number, found {}", src, config.rope_theta));
  }
  if (!(config.rms_norm_eps > 0) || !std::isfinite(config.rms_norm_eps)) {
    throw Error(fmt::format("{}: rms_norm_eps: expected a positive finite number, found {}", src, config.rms_norm_eps));
  }
  if (!(config.initializer_range >= 0) || !std::isfinite(config.initializer_range)) {
    throw Error(fmt::format("{}: initializer_range: expected a finite number >= 0, found {}", src,
                            config.initializer_range));
  }
  if (!config.attention_bias) {
    throw Error(src + ": attention_bias: Qwen2 always has q/k/v biases; a model without them is not Qwen2");
  }
  const auto token = [&](std::optional<std::int64_t> id, std::string_view field) {
    if (id && (*id < 0 || *id >= config.vocab_size)) {
      throw Error(
          fmt::format("{}: {}: token id {} is outside [0, vocab_size = {})", src, field, *id, config.vocab_size));
    }
  };
  token(config.bos_token_id, "bos_token_id");
  token(config.pad_token_id, "pad_token_id");
  for (auto id : config.eos_token_ids) token(id, "eos_token_id");
  if (!config.torch_dtype.empty() && config.torch_dtype != "bfloat16" && config.torch_dtype != "float16" &&
      config.torch_dtype != "float32" && config.torch_dtype != "float64") {
    throw Error(src + ": dtype: expected \"bfloat16\", \"float16\", \"float32\" or \"float64\", found \"" +
                config.torch_dtype + "\"");
  }
  if (config.architecture == Qwen2Architecture::sequence_classification) {
    positive(config.num_labels, "num_labels", Limits::num_labels);
  }
}

namespace detail {

/// Keys that never change a Qwen2 model's computation: bookkeeping, generation defaults older
/// transformers wrote into config.json, fields that only matter to other architectures' heads.
inline bool is_harmless_qwen2_key(std::string_view key) {
  static const std::set<std::string, std::less<>> keys = {
      "_name_or_path", "_commit_hash", "_attn_implementation", "_attn_implementation_autoset",
      "_attn_implementation_internal", "transformers_version", "use_cache", "initializer_range",
      "output_hidden_states", "output_attentions", "return_dict", "torchscript", "use_bfloat16", "tf_legacy_loss",
      "chunk_size_feed_forward", "is_decoder", "cross_attention_hidden_size", "tie_encoder_decoder",
      "finetuning_task", "problem_type", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
      "task_specific_params", "label2id",
      // generation defaults (transformers 4 wrote them into every config)
      "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
      "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
      "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
      "output_scores", "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
      "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens"};
  return keys.contains(key);
}

/// Keys parse_qwen2_config reads and checks itself.
inline bool is_checked_qwen2_key(std::string_view key) {
  static const std::set<std::string, std::less<>> keys = {
      "model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
      "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
      "rope_theta", "rope_parameters", "rope_scaling", "partial_rotary_factor", "hidden_act", "attention_dropout",
      "tie_word_embeddings", "use_sliding_window", "sliding_window", "max_window_layers", "layer_types",
      "use_mrope", "attention_bias", "mlp_bias", "quantization_config", "is_encoder_decoder", "add_cross_attention",
      "pruned_heads", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "dtype", "torch_dtype",
      "id2label", "num_labels", "use_qk_norm", "use_dynamic_ntk", "use_logn_attn"};
  return keys.contains(key);
}

class Qwen2ConfigReader {
 public:
  Qwen2ConfigReader(const nlohmann::json& root, std::string source) : root_(root), src_(std::move(source)) {}

  [[noreturn]] void fail(std::string_view field, const std::string& message) const {
    throw Error(src_ + ": " + std::string(field) + ": " + message);
  }

  const nlohmann::json* find(std::string_view key) const {
    auto it = root_.find(key);
    return it == root_.end() ? nullptr : &*it;
  }
  /// Present and not null.
  const nlohmann::json* given(std::string_view key) const {
    const auto* value = find(key);
    return value == nullptr || value->is_null() ? nullptr : value;
  }

  static std::string excerpt(const nlohmann::json& value) { return io::quote_json(value); }

  std::int64_t integer(const nlohmann::json& value, std::string_view field) const {
    if (!value.is_number_integer() || (value.is_number_unsigned() && value.get<std::uint64_t>() > (1ULL << 62))) {
      fail(field, "expected an integer, found " + excerpt(value));
    }
    return value.get<std::int64_t>();
  }
  std::int64_t required_integer(std::string_view key) const {
    const auto* value = given(key);
    if (value == nullptr) {
      fail(key, "missing; a checkpoint's config.json must state it (transformers would silently use its 7B default)");
    }
    return integer(*value, key);
  }
  std::int64_t integer_or(std::string_view key, std::int64_t fallback) const {
    const auto* value = given(key);
    return value == nullptr ? fallback : integer(*value, key);
  }
  double number(const nlohmann::json& value, std::string_view field) const {
    if (!value.is_number()) fail(field, "expected a number, found " + excerpt(value));
    return value.get<double>();
  }
  double number_or(std::string_view key, double fallback) const {
    const auto* value = given(key);
    return value == nullptr ? fallback : number(*value, key);
  }
  bool boolean_or(std::string_view key, bool fallback) const {
    const auto* value = given(key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) fail(key, "expected true or false, found " + excerpt(*value));
    return value->get<bool>();
  }
  std::optional<std::int64_t> optional_integer(std::string_view key) const {
    const auto* value = given(key);
    return value == nullptr ? std::nullopt : std::optional<std::int64_t>(integer(*value, key));
  }
  std::string string_or(std::string_view key, std::string fallback) const {
    const auto* value = given(key);
    if (value == nullptr) return fallback;
    if (!value->is_string()) fail(key, "expected a string, found " + excerpt(*value));
    return value->get<std::string>();
  }

  const nlohmann::json& root() const { return root_; }
  const std::string& source() const { return src_; }

 private:
  const nlohmann::json& root_;
  std::string src_;
};

/// rope_parameters (transformers 5) or rope_scaling + rope_theta (transformers 4) -> theta.
/// Only the default RoPE is implemented; every scaled variant is rejected by name.
inline double read_rope_theta(const Qwen2ConfigReader& in) {
  double theta = in.number_or("rope_theta", 10000.0);  // modeling_rope_utils: default_theta
  const nlohmann::json* parameters = in.given("rope_scaling");  // legacy name, wins when truthy
  std::string_view field = "rope_scaling";
  if (parameters != nullptr && parameters->is_object() && parameters->empty()) parameters = nullptr;
  if (parameters == nullptr) {
    parameters = in.given("rope_parameters");
    field = "rope_parameters";
  }
  if (const auto* factor = in.given("partial_rotary_factor")) {
    if (in.number(*factor, "partial_rotary_factor") != 1.0) {
      in.fail("partial_rotary_factor", "only 1.0 (rotary embeddings on every channel) is supported, found " +
                                           Qwen2ConfigReader::excerpt(*factor));
    }
  }
  if (parameters == nullptr) return theta;
  if (!parameters->is_object()) in.fail(field, "expected an object or null, found " + Qwen2ConfigReader::excerpt(*parameters));
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    auto it = parameters->find(key);
    if (it != parameters->end() && !it->is_null()) {
      if (!it->is_string()) in.fail(field, std::string(key) + ": expected a string, found " + Qwen2ConfigReader::excerpt(*it));
      type = it->get<std::string>();
      break;
    }
  }
  if (type != "default") {
    if (parameters->contains("full_attention") || parameters->contains("sliding_attention")) {
      type = "per-layer-type";
    }
    in.fail(field, "RoPE type " + io::quote_text(type) +
                       " is not supported (grpo implements only the default RoPE; YaRN, dynamic NTK, linear, "
                       "llama3, longrope and per-layer RoPE are not); use a config without RoPE scaling");
  }
  if (parameters->contains("full_attention") || parameters->contains("sliding_attention")) {
    in.fail(field, "per-layer-type RoPE parameters are not supported; give one {rope_type, rope_theta} object");
  }
  for (const auto& [key, value] : parameters->items()) {
    if (key == "rope_theta") {
      if (!value.is_null()) theta = in.number(value, std::string(field) + ".rope_theta");
    } else if (key == "partial_rotary_factor") {
      if (!value.is_null() && in.number(value, std::string(field) + ".partial_rotary_factor") != 1.0) {
        in.fail(field, "partial_rotary_factor: only 1.0 is supported, found " + Qwen2ConfigReader::excerpt(value));
      }
    } else if (key != "rope_type" && key != "type") {
      // Scaling parameters (factor, original_max_position_embeddings, ...) are unused by the
      // default RoPE in transformers; a config carrying them most likely meant a scaled type.
      in.fail(field, "unexpected key \"" + key + "\" for the default RoPE (a leftover of RoPE scaling?); remove it");
    }
  }
  return theta;
}

}  // namespace detail

/// Reads a config.json object. `source` names it in errors ("ckpt/config.json: rope_parameters: ...").
inline Qwen2Config parse_qwen2_config(const nlohmann::json& json, std::string_view source,
                                      const Qwen2ConfigOptions& options = {}) {
  std::string src(source);
  if (!json.is_object()) throw Error(src + ": expected a JSON object, found " + std::string(json.type_name()));
  const detail::Qwen2ConfigReader in(json, src);

  const auto model_type = in.string_or("model_type", "");
  if (model_type != "qwen2") {
    in.fail("model_type", "expected \"qwen2\", found " +
                              (model_type.empty() ? std::string("nothing") : io::quote_text(model_type)) +
                              " (grpo implements the Qwen2/Qwen2.5 architecture only)");
  }
  for (const auto& [key, value] : json.items()) {
    if (detail::is_checked_qwen2_key(key) || detail::is_harmless_qwen2_key(key) || options.allow_unknown_keys) continue;
    in.fail(key, "unknown key; grpo cannot tell whether it changes the model, so it refuses to guess. "
                 "Remove it if it is harmless, or set Qwen2ConfigOptions::allow_unknown_keys");
  }

  Qwen2Config config;
  config.vocab_size = in.required_integer("vocab_size");
  config.hidden_size = in.required_integer("hidden_size");
  config.intermediate_size = in.required_integer("intermediate_size");
  config.num_hidden_layers = in.required_integer("num_hidden_layers");
  config.num_attention_heads = in.required_integer("num_attention_heads");
  // Qwen2Config.__post_init__ maps null to num_attention_heads; a missing key would get the
  // dataclass default 32, so, like the other sizes, it must be stated.
  if (in.find("num_key_value_heads") == nullptr) {
    in.fail("num_key_value_heads", "missing; state it (null means num_attention_heads; transformers would "
                                   "silently use its 7B default of 32)");
  }
  config.num_key_value_heads = in.integer_or("num_key_value_heads", config.num_attention_heads);
  config.head_dim = in.integer_or("head_dim", 0);
  config.max_position_embeddings = in.integer_or("max_position_embeddings", 32768);
  config.rms_norm_eps = in.number_or("rms_norm_eps", 1e-6);
  config.initializer_range = in.number_or("initializer_range", 0.02);
  config.tie_word_embeddings = in.boolean_or("tie_word_embeddings", false);
  config.rope_theta = detail::read_rope_theta(in);

  if (const auto act = in.string_or("hidden_act", "silu"); act != "silu") {
    in.fail("hidden_act", "expected \"silu\" (Qwen2's gated MLP), found \"" + act + "\"");
  }
  if (const auto dropout = in.number_or("attention_dropout", 0.0); dropout != 0.0) {
    in.fail("attention_dropout", fmt::format("expected 0 (grpo does not implement attention dropout; with it, "
                                             "training log-probs would not match sampling), found {}",
                                             dropout));
  }
  const auto must_be_false = [&](std::string_view key, std::string_view why) {
    if (in.boolean_or(key, false)) in.fail(key, "true is not supported: " + std::string(why));
  };
  must_be_false("use_mrope", "multimodal RoPE belongs to Qwen2-VL");
  must_be_false("mlp_bias", "Qwen2's MLP has no biases");
  must_be_false("is_encoder_decoder", "Qwen2 is decoder-only");
  must_be_false("add_cross_attention", "Qwen2 has no cross-attention");
  must_be_false("use_qk_norm", "query/key norms belong to Qwen3");
  must_be_false("use_dynamic_ntk", "dynamic NTK RoPE (Qwen 1) is not implemented");
  must_be_false("use_logn_attn", "log-n attention scaling (Qwen 1) is not implemented");
  config.attention_bias = in.boolean_or("attention_bias", true);
  if (const auto* quantization = in.given("quantization_config")) {
    in.fail("quantization_config", "quantised checkpoints are not supported (found " +
                                       detail::Qwen2ConfigReader::excerpt(*quantization) +
                                       "); use a bf16/fp16/fp32 checkpoint");
  }
  if (const auto* pruned = in.given("pruned_heads"); pruned != nullptr && !pruned->empty()) {
    in.fail("pruned_heads", "pruned attention heads are not supported, found " + detail::Qwen2ConfigReader::excerpt(*pruned));
  }
  if (in.given("auto_map") != nullptr) {
    in.fail("auto_map", "the checkpoint asks for custom modelling code, which grpo cannot run; remove the key "
                        "if the weights are a standard Qwen2 model");
  }

  // Sliding windows, as Qwen2Config.__post_init__ derives them: with use_sliding_window, layers
  // from max_window_layers on (or those layer_types names "sliding_attention") attend within
  // sliding_window tokens. Without use_sliding_window transformers sets sliding_window = None,
  // so every layer attends fully whatever layer_types says.
  const bool use_sliding_window = in.boolean_or("use_sliding_window", false);
  const auto sliding_window = in.optional_integer("sliding_window");
  const auto max_window_layers = in.integer_or("max_window_layers", 28);
  if (const auto* types = in.given("layer_types")) {
    if (!types->is_array() || static_cast<std::int64_t>(types->size()) != config.num_hidden_layers) {
      in.fail("layer_types", fmt::format("expected a list of {} layer types, found {}", config.num_hidden_layers,
                                         detail::Qwen2ConfigReader::excerpt(*types)));
    }
    for (std::size_t i = 0; i < types->size(); ++i) {
      const auto& type = (*types)[i];
      if (!type.is_string() || (type != "full_attention" && type != "sliding_attention")) {
        in.fail("layer_types",
                fmt::format("entry {}: expected \"full_attention\" or \"sliding_attention\", found {}", i,
                            detail::Qwen2ConfigReader::excerpt(type)));
      }
      if (type == "sliding_attention" && use_sliding_window && sliding_window) {
        in.fail("layer_types", fmt::format("layer {} uses sliding-window attention (use_sliding_window is true); "
                                           "grpo implements full attention only",
                                           i));
      }
    }
  } else if (use_sliding_window && sliding_window && max_window_layers < config.num_hidden_layers) {
    in.fail("use_sliding_window", fmt::format("layers {}..{} would use sliding-window attention (max_window_layers = "
                                              "{}); grpo implements full attention only",
                                              max_window_layers, config.num_hidden_layers - 1, max_window_layers));
  }

  config.bos_token_id = in.optional_integer("bos_token_id");
  config.pad_token_id = in.optional_integer("pad_token_id");
  if (const auto* eos = in.given("eos_token_id")) {
    if (eos->is_array()) {
      for (const auto& id : *eos) config.eos_token_ids.push_back(in.integer(id, "eos_token_id"));
    } else {
      config.eos_token_ids.push_back(in.integer(*eos, "eos_token_id"));
    }
  }
  // transformers 5 writes "dtype"; transformers 4 wrote "torch_dtype".
  config.torch_dtype = in.string_or("dtype", in.string_or("torch_dtype", ""));

  if (const auto* architectures = in.given("architectures")) {
    if (!architectures->is_array() || architectures->size() > 1 ||
        (architectures->size() == 1 && !(*architectures)[0].is_string())) {
      in.fail("architectures", "expected a list with one class name, found " +
                                   detail::Qwen2ConfigReader::excerpt(*architectures));
    }
    const std::string name = architectures->empty() ? "Qwen2ForCausalLM" : (*architectures)[0].get<std::string>();
    if (name == "Qwen2ForCausalLM") {
      config.architecture = Qwen2Architecture::causal_lm;
    } else if (name == "Qwen2ForSequenceClassification") {
      config.architecture = Qwen2Architecture::sequence_classification;
    } else {
      in.fail("architectures", "expected \"Qwen2ForCausalLM\" or \"Qwen2ForSequenceClassification\", found " +
                                   io::quote_text(name));
    }
  }
  // PreTrainedConfig: num_labels = len(id2label) when id2label is given, else num_labels, else 2.
  if (const auto* labels = in.given("id2label")) {
    if (!labels->is_object() || labels->empty()) {
      in.fail("id2label", "expected a non-empty object {\"0\": \"LABEL_0\", ...}, found " +
                              detail::Qwen2ConfigReader::excerpt(*labels));
    }
    config.num_labels = static_cast<std::int64_t>(labels->size());
  } else {
    config.num_labels = in.integer_or("num_labels", 2);
  }

  validate_qwen2_config(config, src);
  return config;
}

/// The largest config.json read (a real one is about 1 KB; the bound keeps a wrong file out of memory).
inline constexpr std::uintmax_t max_config_json_bytes = std::uintmax_t{16} << 20;

/// Reads `path` (a config.json, or a folder holding one).
inline Qwen2Config load_qwen2_config(const std::filesystem::path& path, const Qwen2ConfigOptions& options = {}) {
  std::error_code ec;
  const auto file = std::filesystem::is_directory(path, ec) ? path / "config.json" : path;
  // A FIFO would block the read below; a folder or a dangling link deserves its own message.
  if (io::path_entry_exists(file)) io::require_regular_file(file, "a Hugging Face config.json");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string() + ": cannot open for reading (expected a Hugging Face config.json)");
  return parse_qwen2_config(io::read_json_file(file, max_config_json_bytes), file.string(), options);
}

/// The config.json transformers 5.24 writes for this config (Qwen2Config.save_pretrained after
/// model.save_pretrained: architectures set, keys sorted). "rope_theta" is written beside
/// "rope_parameters" so that transformers 4 and older inference engines, which read only the
/// former, do not fall back to theta = 10000. Throws grpo::Error if the config is invalid.
inline nlohmann::json to_json(const Qwen2Config& input) {
  Qwen2Config config = input;
  validate_qwen2_config(config, "to_json(Qwen2Config)");
  const auto optional_id = [](std::optional<std::int64_t> id) { return id ? nlohmann::json(*id) : nlohmann::json(); };
  nlohmann::json json = {
      {"model_type", "qwen2"},
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"max_position_embeddings", config.max_position_embeddings},
      {"rms_norm_eps", config.rms_norm_eps},
      {"rope_parameters", {{"rope_theta", config.rope_theta}, {"rope_type", "default"}}},
      {"rope_theta", config.rope_theta},
      {"hidden_act", "silu"},
      {"attention_dropout", 0.0},
      {"initializer_range", config.initializer_range},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"use_cache", true},
      {"use_sliding_window", false},
      {"sliding_window", nullptr},
      {"max_window_layers", config.num_hidden_layers},
      {"layer_types", std::vector<std::string>(static_cast<std::size_t>(config.num_hidden_layers), "full_attention")},
      {"bos_token_id", optional_id(config.bos_token_id)},
      {"pad_token_id", optional_id(config.pad_token_id)},
  };
  if (config.eos_token_ids.empty()) {
    json["eos_token_id"] = nullptr;
  } else if (config.eos_token_ids.size() == 1) {
    json["eos_token_id"] = config.eos_token_ids.front();
  } else {
    json["eos_token_id"] = config.eos_token_ids;
  }
  if (!config.torch_dtype.empty()) json["dtype"] = config.torch_dtype;
  if (config.architecture == Qwen2Architecture::causal_lm) {
    json["architectures"] = {"Qwen2ForCausalLM"};
  } else {
    json["architectures"] = {"Qwen2ForSequenceClassification"};
    nlohmann::json id2label = nlohmann::json::object();
    nlohmann::json label2id = nlohmann::json::object();
    for (std::int64_t i = 0; i < config.num_labels; ++i) {
      id2label[std::to_string(i)] = fmt::format("LABEL_{}", i);
      label2id[fmt::format("LABEL_{}", i)] = i;
    }
    json["id2label"] = std::move(id2label);
    json["label2id"] = std::move(label2id);
  }
  return json;
}

/// to_json as text: indent 2, sorted keys, trailing newline (transformers' to_json_file layout).
inline std::string to_json_text(const Qwen2Config& config) { return to_json(config).dump(2) + "\n"; }

/// Writes `folder`/config.json atomically.
inline void save_qwen2_config(const Qwen2Config& config, const std::filesystem::path& folder) {
  io::write_file_atomically(folder / "config.json", to_json_text(config));
}

}  // namespace grpo
