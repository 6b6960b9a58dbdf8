// Qwen2 config.json parsing against what transformers 5.24 reads from the same files
// (tests/python/fixtures/safetensors.py writes configs/<name>/config.json and expected.json),
// and every architectural option grpo does not implement rejected by name.
// (Lives in tests/io with the other checkpoint formats; the header is grpo/model/qwen2_config.hpp.)

#include "grpo/model/qwen2_config.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

#include "io_test_support.hpp"

using Catch::Matchers::Contains;
using grpo::Qwen2Architecture;
using grpo::Qwen2Config;
using grpo::test::fixture_path;
using grpo::test::read_bytes;
using grpo::test::ScratchFolder;
using grpo::test::write_bytes;
using json = nlohmann::json;

namespace {

void require_matches_transformers(const Qwen2Config& c, const json& e) {
  CHECK(c.vocab_size == e["vocab_size"]);
  CHECK(c.hidden_size == e["hidden_size"]);
  CHECK(c.intermediate_size == e["intermediate_size"]);
  CHECK(c.num_hidden_layers == e["num_hidden_layers"]);
  CHECK(c.num_attention_heads == e["num_attention_heads"]);
  CHECK(c.num_key_value_heads == e["num_key_value_heads"]);
  CHECK(c.head_dim == e["head_dim"]);
  CHECK(grpo::head_dim_of(c) == e["head_dim"]);
  CHECK(c.max_position_embeddings == e["max_position_embeddings"]);
  CHECK(c.rope_theta == e["rope_theta"].get<double>());
  CHECK(e["rope_type"] == "default");
  CHECK(c.rms_norm_eps == e["rms_norm_eps"].get<double>());
  CHECK(c.initializer_range == e["initializer_range"].get<double>());
  CHECK(c.tie_word_embeddings == e["tie_word_embeddings"]);
  CHECK(c.attention_bias);
  CHECK(json(c.bos_token_id ? json(*c.bos_token_id) : json()) == e["bos_token_id"]);
  CHECK(json(c.pad_token_id ? json(*c.pad_token_id) : json()) == e["pad_token_id"]);
  CHECK(json(c.eos_token_ids) == e["eos_token_ids"]);
  CHECK(c.torch_dtype == e["dtype"]);
  CHECK((c.architecture == Qwen2Architecture::causal_lm ? "Qwen2ForCausalLM" : "Qwen2ForSequenceClassification") ==
        e["architecture"]);
  CHECK(c.num_labels == e["num_labels"]);
}

/// The tied bf16 config transformers wrote, as JSON to edit.
json base_config() { return json::parse(read_bytes(fixture_path("configs/tied_gqa_bf16/config.json"))); }

/// Writes `config` to folder/config.json and requires load_qwen2_config to throw naming the
/// file and containing every fragment.
void require_rejected(const json& config, const std::vector<std::string>& fragments) {
  ScratchFolder folder;
  write_bytes(folder / "config.json", config.dump(2));
  try {
    grpo::load_qwen2_config(folder.path());
    FAIL("expected grpo::Error for " << config.dump());
  } catch (const grpo::Error& e) {
    CHECK_THAT(e.what(), Contains((folder / "config.json").string() + ": "));
    for (const auto& fragment : fragments) CHECK_THAT(e.what(), Contains(fragment));
  }
}

json with(json config, const std::string& key, json value) {
  config[key] = std::move(value);
  return config;
}

json without(json config, const std::string& key) {
  config.erase(key);
  return config;
}

}  // namespace

TEST_CASE("qwen2 config: configs written by transformers parse as transformers reads them", "[io][qwen2_config]") {
  for (const char* name : {"tied_gqa_bf16", "untied_gqa", "seqcls_gqa4to1", "untied_mha_theta", "qwen25_7b_legacy",
                           "kv_heads_default"}) {
    INFO("config " << name);
    const std::string folder = fixture_path(std::string("configs/") + name);
    const auto expected = json::parse(read_bytes(folder + "/expected.json"));
    const Qwen2Config config = grpo::load_qwen2_config(folder);
    require_matches_transformers(config, expected);
    // The file path works as well as the folder.
    CHECK(grpo::load_qwen2_config(folder + "/config.json").hidden_size == config.hidden_size);
  }
}

TEST_CASE("qwen2 config: to_json parses back to the same config", "[io][qwen2_config]") {
  for (const char* name : {"tied_gqa_bf16", "seqcls_gqa4to1", "qwen25_7b_legacy"}) {
    INFO("config " << name);
    const Qwen2Config config = grpo::load_qwen2_config(fixture_path(std::string("configs/") + name));
    const json written = grpo::to_json(config);
    CHECK((written["rope_parameters"] == json{{"rope_theta", config.rope_theta}, {"rope_type", "default"}}));
    CHECK(written["rope_theta"] == config.rope_theta);
    const Qwen2Config again = grpo::parse_qwen2_config(json::parse(grpo::to_json_text(config)), "again");
    require_matches_transformers(again, json::parse(read_bytes(fixture_path(std::string("configs/") + name + "/expected.json"))));
  }
  const json seqcls = grpo::to_json(Qwen2Config{.vocab_size = 10, .hidden_size = 8, .intermediate_size = 8,
                                                .num_hidden_layers = 1, .num_attention_heads = 2,
                                                .num_key_value_heads = 1,
                                                .architecture = Qwen2Architecture::sequence_classification,
                                                .num_labels = 3});
  CHECK(seqcls["architectures"] == json{"Qwen2ForSequenceClassification"});
  CHECK((seqcls["id2label"] == json{{"0", "LABEL_0"}, {"1", "LABEL_1"}, {"2", "LABEL_2"}}));
  CHECK(seqcls["eos_token_id"].is_null());
}

TEST_CASE("qwen2 config: validation of programmatic configs", "[io][qwen2_config]") {
  Qwen2Config config;  // transformers' Qwen2Config() defaults: 4096 / 32 heads
  grpo::validate_qwen2_config(config);
  CHECK(config.head_dim == 128);
  Qwen2Config bad{.hidden_size = 100, .num_attention_heads = 3};
  REQUIRE_THROWS_WITH(grpo::validate_qwen2_config(bad, "mine"),
                      Contains("mine: num_attention_heads: 3 does not divide hidden_size 100"));
  Qwen2Config odd{.hidden_size = 60, .num_attention_heads = 4, .num_key_value_heads = 4};
  REQUIRE_THROWS_WITH(grpo::validate_qwen2_config(odd), Contains("head_dim 15 is odd"));
  REQUIRE_THROWS_WITH(grpo::to_json(Qwen2Config{.vocab_size = 0}), Contains("to_json(Qwen2Config): vocab_size"));
}

TEST_CASE("qwen2 config: accepted variants that do not change the architecture", "[io][qwen2_config]") {
  ScratchFolder folder;
  const auto parse = [](const json& config) { return grpo::parse_qwen2_config(config, "config.json"); };
  // use_sliding_window without any sliding layer (transformers: all layers full attention).
  CHECK(parse(with(base_config(), "use_sliding_window", true)).num_hidden_layers == 2);
  // sliding layer types while use_sliding_window is false: transformers sets sliding_window = None.
  CHECK(parse(with(base_config(), "layer_types", {"sliding_attention", "full_attention"})).num_hidden_layers == 2);
  // Legacy spellings: rope_scaling null + top-level rope_theta; rope_scaling {"type": "default"}.
  auto legacy = without(base_config(), "rope_parameters");
  legacy["rope_theta"] = 123456.0;
  legacy["rope_scaling"] = nullptr;
  CHECK(parse(legacy).rope_theta == 123456.0);
  legacy["rope_scaling"] = {{"type", "default"}};
  CHECK(parse(legacy).rope_theta == 123456.0);
  // rope_parameters wins over a top-level rope_theta (transformers' priority order).
  CHECK(parse(with(base_config(), "rope_theta", 5.0)).rope_theta == 1e6);
  // Unknown keys with the escape hatch; generation defaults of transformers 4 are harmless.
  Qwen2Config relaxed = grpo::parse_qwen2_config(with(base_config(), "my_note", "x"), "c", {.allow_unknown_keys = true});
  CHECK(relaxed.vocab_size == 128);
  CHECK(parse(with(with(base_config(), "temperature", 0.7), "_name_or_path", "Qwen/Qwen2.5-7B")).vocab_size == 128);
  CHECK(parse(with(base_config(), "num_key_value_heads", nullptr)).num_key_value_heads == 4);
  CHECK(parse(with(base_config(), "head_dim", 16)).head_dim == 16);
}

TEST_CASE("qwen2 config: unsupported architectures are rejected by name", "[io][qwen2_config]") {
  const json base = base_config();
  require_rejected(with(base, "model_type", "llama"), {"model_type: expected \"qwen2\", found \"llama\""});
  require_rejected(without(base, "model_type"), {"model_type: expected \"qwen2\", found nothing"});
  require_rejected(without(base, "hidden_size"), {"hidden_size: missing"});
  require_rejected(without(base, "num_key_value_heads"), {"num_key_value_heads: missing"});
  require_rejected(with(base, "hidden_size", 64.0), {"hidden_size: expected an integer, found 64.0"});
  require_rejected(with(base, "num_attention_heads", 5), {"num_attention_heads: 5 does not divide hidden_size 64"});
  require_rejected(with(with(base, "num_attention_heads", 8), "num_key_value_heads", 3),
                   {"num_key_value_heads: 3 does not divide num_attention_heads 8"});
  require_rejected(with(base, "head_dim", 32), {"head_dim: 32 differs from hidden_size / num_attention_heads = 16"});
  require_rejected(with(base, "rope_parameters", {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 1e6}}),
                   {"rope_parameters: RoPE type \"yarn\" is not supported"});
  require_rejected(with(base, "rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}),
                   {"rope_scaling: RoPE type \"dynamic\" is not supported"});
  require_rejected(with(base, "rope_scaling", {{"rope_type", "linear"}, {"factor", 2.0}}),
                   {"rope_scaling: RoPE type \"linear\" is not supported"});
  require_rejected(with(base, "rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1e6}, {"factor", 4.0}}),
                   {"rope_parameters: unexpected key \"factor\""});
  require_rejected(with(base, "rope_parameters",
                        {{"full_attention", {{"rope_type", "default"}}}, {"sliding_attention", {{"rope_type", "default"}}}}),
                   {"per-layer-type RoPE parameters are not supported"});
  require_rejected(with(base, "partial_rotary_factor", 0.5), {"partial_rotary_factor: only 1.0"});
  require_rejected(with(with(with(base, "use_sliding_window", true), "sliding_window", 4096), "layer_types",
                        {"full_attention", "sliding_attention"}),
                   {"layer_types: layer 1 uses sliding-window attention"});
  require_rejected(with(with(with(without(base, "layer_types"), "use_sliding_window", true), "sliding_window", 4096),
                        "max_window_layers", 1),
                   {"use_sliding_window: layers 1..1 would use sliding-window attention"});
  require_rejected(with(base, "layer_types", {"full_attention"}), {"layer_types: expected a list of 2 layer types"});
  require_rejected(with(base, "use_mrope", true), {"use_mrope: true is not supported"});
  require_rejected(with(base, "hidden_act", "gelu"), {"hidden_act: expected \"silu\""});
  require_rejected(with(base, "attention_dropout", 0.1), {"attention_dropout: expected 0"});
  require_rejected(with(base, "attention_bias", false), {"attention_bias: Qwen2 always has q/k/v biases"});
  require_rejected(with(base, "mlp_bias", true), {"mlp_bias: true is not supported"});
  require_rejected(with(base, "quantization_config", {{"quant_method", "gptq"}}), {"quantization_config: quantised"});
  require_rejected(with(base, "auto_map", {{"AutoModel", "modeling.X"}}), {"auto_map: the checkpoint asks for custom"});
  require_rejected(with(base, "use_qk_norm", true), {"use_qk_norm: true is not supported"});
  require_rejected(with(base, "my_new_thing", 1), {"my_new_thing: unknown key", "allow_unknown_keys"});
  require_rejected(with(base, "architectures", {"Qwen2ForTokenClassification"}),
                   {"architectures: expected \"Qwen2ForCausalLM\" or \"Qwen2ForSequenceClassification\""});
  require_rejected(with(base, "eos_token_id", 500), {"eos_token_id: token id 500 is outside [0, vocab_size = 128)"});
  require_rejected(with(base, "pad_token_id", -1), {"pad_token_id: token id -1"});
  require_rejected(with(base, "dtype", "int8"), {"dtype: expected \"bfloat16\""});
  require_rejected(with(base, "tie_word_embeddings", "yes"), {"tie_word_embeddings: expected true or false"});
  require_rejected(with(base, "id2label", json::object()), {"id2label: expected a non-empty object"});
  require_rejected(json::array(), {"expected a JSON object, found array"});
}

TEST_CASE("qwen2 config: unreadable files name the file", "[io][qwen2_config]") {
  ScratchFolder folder;
  REQUIRE_THROWS_WITH(grpo::load_qwen2_config(folder.path()), Contains("config.json: cannot open for reading"));
  write_bytes(folder / "config.json", "{\"model_type\": ");
  REQUIRE_THROWS_WITH(grpo::load_qwen2_config(folder.path()), Contains("config.json:1: invalid JSON at column"));
}
