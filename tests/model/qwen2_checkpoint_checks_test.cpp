// What grpo::check_qwen2_checkpoint knows about a checkpoint folder before a parameter is
// allocated: the folder's files are regular files (check_checkpoint_folder: a FIFO is named, never
// opened), and every tensor's shape in the safetensors headers matches config.json
// (check_qwen2_checkpoint_shapes). The reference is transformers: on every fixture it wrote
// (tests/python/fixtures/qwen2.py) the names and shapes derived from config.json are exactly the
// headers' tensors.
#include <catch2/catch.hpp>

#include <grpo/io/safetensors.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

// c10's logging header defines CHECK; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

const fs::path fixtures = fs::path(GRPO_FIXTURE_DIR) / "qwen2";

fs::path copy_fixture(const std::string& name, const std::string& as) {
  const auto folder = fs::path(GRPO_FIXTURE_DIR) / "scratch-checkpoint-checks" / as;
  fs::remove_all(folder);
  fs::create_directories(folder.parent_path());
  fs::copy(fixtures / name, folder, fs::copy_options::recursive);
  return folder;
}

}  // namespace

TEST_CASE("checkpoint checks: the derived names and shapes are exactly transformers' tensors", "[model]") {
  for (const std::string name : {"tied_gqa2", "untied_mha", "gqa4_sharded", "mqa"}) {
    CAPTURE(name);
    CHECK_NOTHROW(grpo::check_qwen2_checkpoint(fixtures / name, grpo::Qwen2Architecture::causal_lm));
  }
  CHECK_NOTHROW(grpo::check_qwen2_checkpoint(fixtures / "reward", grpo::Qwen2Architecture::sequence_classification));
  // The count, independently: 2 + 12 per layer (+ lm_head when untied) for the causal LM.
  const auto config = grpo::load_qwen2_config(fixtures / "untied_mha");
  CHECK(grpo::io::SafetensorsCheckpoint::open(fixtures / "untied_mha").size() ==
        static_cast<std::size_t>(2 + 12 * config.num_hidden_layers + 1));
}

TEST_CASE("checkpoint checks: shapes are compared with config.json before anything is allocated", "[model]") {
  SECTION("a config within the size limits whose model would take a terabyte") {
    // vocab 2^22 x hidden 2^16 float32 embeddings are 1 TiB: building the module first would fail in
    // the allocator (a c10::Error); the header check refuses it as a grpo::Error naming the tensor.
    const auto folder = copy_fixture("tied_gqa2", "terabyte");
    auto config = grpo::load_qwen2_config(folder);
    config.vocab_size = std::int64_t{1} << 22;
    config.hidden_size = std::int64_t{1} << 16;
    config.num_attention_heads = 1024;
    config.num_key_value_heads = 512;
    config.head_dim = 0;
    config.bos_token_id.reset();
    config.eos_token_ids.clear();
    config.pad_token_id.reset();
    grpo::save_qwen2_config(config, folder);
    CHECK_THROWS_AS(grpo::load_qwen2(folder), grpo::Error);
    CHECK_THROWS_WITH(grpo::load_qwen2(folder),
                      Contains("tensor 'model.embed_tokens.weight': expected shape [4194304, 65536]") &&
                          Contains((folder / "config.json").string()));
  }
  SECTION("a sharded checkpoint names the shard holding the tensor") {
    const auto folder = copy_fixture("gqa4_sharded", "sharded-mismatch");
    auto config = grpo::load_qwen2_config(folder);
    const auto checkpoint = grpo::io::SafetensorsCheckpoint::open(folder);
    REQUIRE(checkpoint.files().size() > 1);
    config.intermediate_size += 2;
    const auto shard = checkpoint.file_of("model.layers.0.mlp.gate_proj.weight").path().string();
    CHECK_THROWS_WITH(grpo::check_qwen2_checkpoint_shapes(config, checkpoint, folder),
                      Contains(shard + ": tensor 'model.layers.0.mlp.gate_proj.weight': expected shape [" +
                               std::to_string(config.intermediate_size) + ", " + std::to_string(config.hidden_size) +
                               "], found [" + std::to_string(config.intermediate_size - 2) + ", " +
                               std::to_string(config.hidden_size) + "]"));
  }
  SECTION("a reward model's score head is checked against num_labels") {
    const auto folder = fixtures / "reward";
    auto config = grpo::load_qwen2_config(folder);
    config.num_labels = 3;
    CHECK_THROWS_WITH(grpo::check_qwen2_checkpoint_shapes(config, grpo::io::SafetensorsCheckpoint::open(folder), folder),
                      Contains("tensor 'score.weight': expected shape [3, " + std::to_string(config.hidden_size) + "]"));
  }
  SECTION("a tied model may carry lm_head.weight; any other extra tensor is named") {
    const auto folder = copy_fixture("tied_gqa2", "extra");
    auto tensors = grpo::io::SafetensorsCheckpoint::open(folder).load_all();
    tensors["lm_head.weight"] = tensors.at("model.embed_tokens.weight").clone();
    grpo::io::save_safetensors(folder / "model.safetensors", tensors);
    CHECK_NOTHROW(grpo::check_qwen2_checkpoint(folder, grpo::Qwen2Architecture::causal_lm));
    tensors["model.layers.7.mlp.up_proj.weight"] = at::ones({2, 2});
    grpo::io::save_safetensors(folder / "model.safetensors", tensors);
    CHECK_THROWS_WITH(grpo::check_qwen2_checkpoint(folder, grpo::Qwen2Architecture::causal_lm),
                      Contains("tensors the model does not use: model.layers.7.mlp.up_proj.weight"));
  }
}

TEST_CASE("checkpoint checks: files that are not regular files are named, never opened", "[model]") {
  const auto expect = [](const fs::path& folder, const std::string& fragment) {
    CHECK_THROWS_WITH(grpo::load_qwen2(folder), Contains(fragment));
  };
  {
    const auto folder = copy_fixture("tied_gqa2", "fifo");
    fs::remove(folder / "model.safetensors");
    REQUIRE(::mkfifo((folder / "model.safetensors").c_str(), 0600) == 0);
    expect(folder, (folder / "model.safetensors").string() + ": expected a checkpoint file (a regular file), found a FIFO");
  }
  {
    const auto folder = copy_fixture("gqa4_sharded", "fifo-shard");
    const auto shard = grpo::io::SafetensorsCheckpoint::open(folder).files().front().path();
    fs::remove(shard);
    REQUIRE(::mkfifo(shard.c_str(), 0600) == 0);
    expect(folder, shard.string() + ": expected a checkpoint file (a regular file), found a FIFO");
  }
  {
    const auto folder = copy_fixture("tied_gqa2", "folder");
    fs::remove(folder / "model.safetensors");
    fs::create_directory(folder / "model.safetensors");
    expect(folder, "model.safetensors: expected a checkpoint file (a regular file), found a folder");
  }
  {
    const auto folder = copy_fixture("tied_gqa2", "dangling");
    fs::remove(folder / "model.safetensors");
    fs::create_symlink(folder / "elsewhere.safetensors", folder / "model.safetensors");
    expect(folder, "model.safetensors: expected a checkpoint file (a regular file), found a dangling symbolic link to " +
                       (folder / "elsewhere.safetensors").string());
  }
  {
    const auto folder = copy_fixture("tied_gqa2", "linked");  // a link to a regular file is fine
    fs::rename(folder / "model.safetensors", folder / "weights.bin");
    fs::create_symlink(folder / "weights.bin", folder / "model.safetensors");
    CHECK_NOTHROW(grpo::check_checkpoint_folder(folder));
  }
  expect(fixtures / "tied_gqa2" / "model.safetensors",
         "model.safetensors: expected a checkpoint folder (config.json, model.safetensors, tokenizer.json), found a "
         "regular file; give the folder that holds it");
  expect(fixtures / "no-such-model", "no-such-model: expected a checkpoint folder");
}
