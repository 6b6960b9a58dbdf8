// Size limits of a Qwen2 config.json (grpo::Qwen2SizeLimits): a corrupt or hostile config asking for
// a petabyte-sized model is refused naming the field, while every published Qwen2/Qwen2.5 size
// passes (Qwen2.5-72B's config.json as Hugging Face ships it); and a config.json that is not a
// regular file (a FIFO would block the read forever) is named for what it is.

#include "grpo/model/qwen2_config.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "io_test_support.hpp"

using Catch::Matchers::Contains;
using grpo::test::ScratchFolder;
using grpo::test::write_bytes;
using json = nlohmann::json;

namespace {

/// Qwen/Qwen2.5-72B-Instruct's config.json (Hugging Face hub), the largest Qwen2 architecture.
json qwen25_72b() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 8192, "initializer_range": 0.02,
    "intermediate_size": 29568, "max_position_embeddings": 32768, "max_window_layers": 70,
    "model_type": "qwen2", "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": true,
    "use_sliding_window": false, "vocab_size": 152064})");
}

grpo::Qwen2Config parse(const json& config) { return grpo::parse_qwen2_config(config, "cfg/config.json"); }

}  // namespace

TEST_CASE("qwen2 config limits: Qwen2.5-72B and the limits themselves pass", "[io][qwen2_config]") {
  const auto config = parse(qwen25_72b());
  CHECK(config.vocab_size == 152064);
  CHECK(config.hidden_size == 8192);
  CHECK(config.intermediate_size == 29568);
  CHECK(config.num_hidden_layers == 80);
  CHECK(config.head_dim == 128);

  using Limits = grpo::Qwen2SizeLimits;
  auto at_limits = qwen25_72b();
  at_limits["vocab_size"] = Limits::vocab_size;
  at_limits["hidden_size"] = Limits::hidden_size;
  at_limits["intermediate_size"] = Limits::intermediate_size;
  at_limits["num_hidden_layers"] = Limits::num_hidden_layers;
  at_limits["num_attention_heads"] = Limits::num_attention_heads;  // head_dim 64
  at_limits["num_key_value_heads"] = Limits::num_attention_heads;
  at_limits["max_position_embeddings"] = Limits::max_position_embeddings;
  at_limits["max_window_layers"] = Limits::num_hidden_layers;
  CHECK_NOTHROW(parse(at_limits));
  // Qwen2.5-7B-Instruct-1M's context.
  auto million = qwen25_72b();
  million["max_position_embeddings"] = 1010000;
  CHECK(parse(million).max_position_embeddings == 1010000);
}

TEST_CASE("qwen2 config limits: a size above its limit is refused naming the field", "[io][qwen2_config]") {
  using Limits = grpo::Qwen2SizeLimits;
  const std::vector<std::pair<std::string, std::int64_t>> limits = {
      {"vocab_size", Limits::vocab_size},
      {"hidden_size", Limits::hidden_size},
      {"intermediate_size", Limits::intermediate_size},
      {"num_hidden_layers", Limits::num_hidden_layers},
      {"max_position_embeddings", Limits::max_position_embeddings},
  };
  for (const auto& [field, limit] : limits) {
    for (const std::int64_t value : {limit + 1, std::int64_t{1'000'000'000'000}}) {
      auto config = qwen25_72b();
      config[field] = value;
      CAPTURE(field, value);
      CHECK_THROWS_WITH(parse(config), Contains("cfg/config.json: " + field + ": " + std::to_string(value) +
                                                " is above the largest supported value " + std::to_string(limit)));
    }
  }
  // Heads: 2^11 heads of width 4 divide hidden_size 8192, and are still refused.
  auto heads = qwen25_72b();
  heads["num_attention_heads"] = 2048;
  heads["num_key_value_heads"] = 2048;
  CHECK_THROWS_WITH(parse(heads), Contains("num_attention_heads: 2048 is above the largest supported value 1024"));
  auto labels = qwen25_72b();
  labels["architectures"] = {"Qwen2ForSequenceClassification"};
  labels["num_labels"] = Limits::num_labels + 1;
  CHECK_THROWS_WITH(parse(labels), Contains("num_labels: 65537 is above the largest supported value 65536"));
}

TEST_CASE("qwen2 config limits: a config.json that is not a regular file is named, never read", "[io][qwen2_config]") {
  ScratchFolder fifo;
  REQUIRE(::mkfifo((fifo / "config.json").c_str(), 0600) == 0);
  // Opening a FIFO for reading blocks until a writer comes: this returns only if it is never opened.
  CHECK_THROWS_WITH(grpo::load_qwen2_config(fifo.path()),
                    Contains((fifo / "config.json").string() + ": expected a Hugging Face config.json (a regular file), "
                                                               "found a FIFO (named pipe)"));
  ScratchFolder folder;
  std::filesystem::create_directories(folder / "config.json");
  CHECK_THROWS_WITH(grpo::load_qwen2_config(folder.path()), Contains("found a folder"));
  ScratchFolder link;
  std::filesystem::create_symlink(link / "gone.json", link / "config.json");
  CHECK_THROWS_WITH(grpo::load_qwen2_config(link.path()), Contains("found a dangling symbolic link to"));
  ScratchFolder regular;
  write_bytes(regular / "config.json", qwen25_72b().dump());
  CHECK(grpo::load_qwen2_config(regular.path()).hidden_size == 8192);
}
