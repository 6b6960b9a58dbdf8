// Qwen2 model conformance: our fp32 logits, reward scores, KV-cache decoding, loading and saving
// against Hugging Face transformers 5.24 (tests/python/fixtures/qwen2.py made the references).
#include <catch2/catch.hpp>

#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include <grpo/io/safetensors.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>

#include "../qwen2_fixtures.hpp"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

// c10's logging header defines CHECK; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;

namespace {

// Tiny models gain nothing from intra-op threads, and on a loaded machine OpenMP's spinning
// workers make these tests 10-20x slower (20 s instead of 1 s): one thread for the whole
// executable (model and sampling tests).
const bool single_threaded = [] {
  at::set_num_threads(1);
  return true;
}();

const fs::path& fixtures = grpo_test::qwen2_fixtures;
using grpo_test::expected;
using grpo_test::masked_max_difference;
const std::vector<std::string> causal_models = {"tied_gqa2", "untied_mha", "gqa4_sharded", "mqa"};


fs::path scratch_folder(const std::string& name) {
  const auto folder = fs::path(GRPO_FIXTURE_DIR) / "scratch-model-tests" / name;
  fs::remove_all(folder);
  fs::create_directories(folder.parent_path());
  return folder;
}

void copy_folder(const fs::path& from, const fs::path& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
}

}  // namespace

TEST_CASE("fp32 logits match transformers for right- and left-padded batches", "[model]") {
  at::NoGradGuard no_grad;
  for (const auto& name : causal_models) {
    INFO(name);
    auto model = grpo::load_qwen2(fixtures / name);
    model->eval();
    for (const std::string side : {"right", "left"}) {
      INFO(side << "-padded");
      const auto ids = expected(name, side + "_ids");
      const auto mask = expected(name, side + "_mask");
      const auto logits = model->logits(model->forward(ids, mask));
      CHECK(logits.sizes() == expected(name, side + "_logits").sizes());
      CHECK(masked_max_difference(logits, expected(name, side + "_logits"), mask) < 1e-4);
    }
  }
}

TEST_CASE("bf16 logits match transformers' bf16 model", "[model]") {
  at::NoGradGuard no_grad;
  auto model = grpo::load_qwen2(fixtures / "tied_gqa2", {.dtype = at::kBFloat16});
  model->eval();
  const auto ids = expected("tied_gqa2", "right_ids");
  const auto mask = expected("tied_gqa2", "right_mask");
  const auto logits = model->logits(model->forward(ids, mask)).to(at::kFloat);
  CHECK(model->output_weight().scalar_type() == at::kBFloat16);
  // Same operations in the same order as transformers: bf16 rounding differences stay within a
  // few bf16 ulps of logits of magnitude ~10 (ulp 0.0625), far below the fp32-vs-bf16 gap.
  const auto reference = expected("tied_gqa2", "right_logits_bf16");
  CHECK(masked_max_difference(logits, reference, mask) < 0.13);
  const auto fp32_gap = masked_max_difference(expected("tied_gqa2", "right_logits"), reference, mask);
  CHECK(fp32_gap > 0.0);
}

TEST_CASE("a padded row computes what its sequence computes alone", "[model]") {
  at::NoGradGuard no_grad;
  auto model = grpo::load_qwen2(fixtures / "gqa4_sharded");
  model->eval();
  const auto ids = expected("gqa4_sharded", "left_ids");
  const auto mask = expected("gqa4_sharded", "left_mask");
  const auto batched = model->logits(model->forward(ids, mask));
  for (std::int64_t row = 0; row < ids.size(0); ++row) {
    const auto real = mask[row].to(at::kBool);
    const auto alone = model->logits(model->forward(ids[row].masked_select(real).unsqueeze(0)));
    const auto from_batch = batched[row].index({real});
    CHECK((alone[0] - from_batch).abs().max().item<double>() < 1e-4);  // logits ~10: ~1e-6 relative
  }
}

TEST_CASE("KV-cache prefill and decode reproduce the full forward", "[model]") {
  at::NoGradGuard no_grad;
  for (const auto& name : causal_models) {
    INFO(name);
    auto model = grpo::load_qwen2(fixtures / name);
    model->eval();
    // Left-padded prompts followed by 6 more tokens per row: the full forward sees all of it.
    const auto prompt = expected(name, "gen_prompt_ids");
    const auto prompt_mask = expected(name, "gen_prompt_mask");
    const auto continuation = expected(name, "gen_greedy").narrow(1, 0, 6);
    const auto ids = at::cat({prompt, continuation}, 1);
    const auto mask = at::cat({prompt_mask, at::ones_like(continuation)}, 1);
    const auto full = model->logits(model->forward(ids, mask));
    const auto width = prompt.size(1);

    SECTION("one prefill, then one token per step") {
      auto cache = model->make_cache(ids.size(0), ids.size(1));
      auto step = model->logits(model->forward(prompt, prompt_mask, &cache));
      CHECK(masked_max_difference(step, full.narrow(1, 0, width), prompt_mask) < 1e-4);
      for (std::int64_t t = 0; t < continuation.size(1); ++t) {
        step = model->logits(model->forward(continuation.narrow(1, t, 1), {}, &cache));
        CHECK((step.select(1, 0) - full.select(1, width + t)).abs().max().item<double>() < 1e-4);
      }
      CHECK(cache.length() == ids.size(1));
    }
    SECTION("chunked: the prompt, then three tokens at once, then three") {
      auto cache = model->make_cache(ids.size(0), ids.size(1));
      model->forward(prompt, prompt_mask, &cache);
      for (std::int64_t t = 0; t < 6; t += 3) {
        const auto step = model->logits(model->forward(continuation.narrow(1, t, 3), {}, &cache));
        CHECK((step - full.narrow(1, width + t, 3)).abs().max().item<double>() < 1e-4);
      }
    }
  }
}

TEST_CASE("static-window decoding (what a CUDA graph replays) equals plain decoding", "[model]") {
  at::NoGradGuard no_grad;
  auto model = grpo::load_qwen2(fixtures / "gqa4_sharded");
  model->eval();
  const auto prompt = expected("gqa4_sharded", "gen_prompt_ids");
  const auto prompt_mask = expected("gqa4_sharded", "gen_prompt_mask");
  const auto next = expected("gqa4_sharded", "gen_greedy");
  const auto width = prompt.size(1);
  auto plain = model->make_cache(3, width + 8);
  auto windowed = model->make_cache(3, width + 8);
  model->forward(prompt, prompt_mask, &plain);
  model->forward(prompt, prompt_mask, &windowed);
  windowed.set_static_window(width + 3);  // then grown to width + 8 after three steps
  for (std::int64_t t = 0; t < 6; ++t) {
    if (t == 3) windowed.set_static_window(width + 8);
    const auto token = next.narrow(1, t, 1);
    const auto a = model->logits(model->forward(token, {}, &plain));
    const auto b = model->logits(model->forward(token, {}, &windowed));
    windowed.advance_static();
    CHECK((a - b).abs().max().item<double>() < 1e-4);  // masked slots change the sums' order only
    CHECK(windowed.length() == plain.length());
  }
  CHECK(windowed.next_positions().equal(plain.next_positions()));
  CHECK_THROWS_AS(windowed.keep_rows(at::tensor(std::vector<std::int64_t>{0})), grpo::Error);
  CHECK_THROWS_AS(windowed.set_static_window(width + 2), grpo::Error);  // not beyond the length
  CHECK_THROWS_AS(windowed.begin_step(2), grpo::Error);                  // one token per step
  windowed.set_static_window(0);
  windowed.keep_rows(at::tensor(std::vector<std::int64_t>{1}));
  CHECK(windowed.batch_size() == 1);
}

TEST_CASE("dropping finished rows from the cache leaves the others unchanged", "[model]") {
  at::NoGradGuard no_grad;
  auto model = grpo::load_qwen2(fixtures / "tied_gqa2");
  model->eval();
  const auto prompt = expected("tied_gqa2", "gen_prompt_ids");
  const auto prompt_mask = expected("tied_gqa2", "gen_prompt_mask");
  const auto next = expected("tied_gqa2", "gen_greedy");
  auto cache = model->make_cache(3, prompt.size(1) + 4);
  model->forward(prompt, prompt_mask, &cache);
  model->forward(next.narrow(1, 0, 1), {}, &cache);
  // Keep rows 2 and 0 (in that order); their next step must equal the uncompacted one.
  auto reference_cache = model->make_cache(3, prompt.size(1) + 4);
  model->forward(prompt, prompt_mask, &reference_cache);
  model->forward(next.narrow(1, 0, 1), {}, &reference_cache);
  const auto reference = model->logits(model->forward(next.narrow(1, 1, 1), {}, &reference_cache));

  cache.keep_rows(at::tensor(std::vector<std::int64_t>{2, 0}));
  CHECK(cache.batch_size() == 2);
  const auto rows = at::tensor(std::vector<std::int64_t>{2, 0});
  const auto compacted = model->logits(model->forward(next.narrow(1, 1, 1).index_select(0, rows), {}, &cache));
  CHECK((compacted - reference.index_select(0, rows)).abs().max().item<double>() < 1e-5);
  CHECK_THROWS_AS(model->forward(next.narrow(1, 2, 1), {}, &cache), grpo::Error);  // 3 rows, cache has 2
}

TEST_CASE("the KV cache rejects misuse with grpo::Error", "[model]") {
  grpo::KVCache cache({.num_layers = 1, .batch_size = 2, .num_kv_heads = 1, .head_dim = 4, .max_length = 3});
  CHECK_THROWS_AS(cache.begin_step(4), grpo::Error);  // 4 > max_length 3
  CHECK_THROWS_AS(cache.update(0, at::zeros({2, 1, 1, 4}), at::zeros({2, 1, 1, 4})), grpo::Error);  // no step
  CHECK_THROWS_AS(cache.begin_step(1, at::ones({3, 1})), grpo::Error);  // mask of 3 rows
  const auto positions = cache.begin_step(2, at::tensor(std::vector<std::int64_t>{0, 1, 1, 1}).view({2, 2}));
  // Row 0 is [pad, token]: positions [0 (clamped), 0]; row 1 has two tokens: [0, 1].
  CHECK(positions.equal(at::tensor(std::vector<std::int64_t>{0, 0, 0, 1}).view({2, 2})));
  CHECK_THROWS_AS(cache.begin_step(1), grpo::Error);  // the step is still open
  CHECK_THROWS_AS(cache.update(1, at::zeros({2, 1, 2, 4}), at::zeros({2, 1, 2, 4})), grpo::Error);  // layer 1 of 1
  cache.update(0, at::ones({2, 1, 2, 4}), at::ones({2, 1, 2, 4}));
  cache.end_step();
  CHECK(cache.has_padding());
  CHECK(cache.next_positions().equal(at::tensor(std::vector<std::int64_t>{1, 2})));
  CHECK_THROWS_AS(cache.begin_step(2), grpo::Error);  // 2 + 2 > 3
  CHECK_THROWS_AS(cache.keep_rows(at::tensor(std::vector<std::int64_t>{0, 1, 0})), grpo::Error);
  CHECK_THROWS_AS(grpo::KVCache({.num_layers = 0, .batch_size = 1, .num_kv_heads = 1, .head_dim = 2, .max_length = 1}),
                  grpo::Error);
}

TEST_CASE("reward model scores match transformers' Qwen2ForSequenceClassification", "[model]") {
  at::NoGradGuard no_grad;
  auto model = grpo::load_qwen2_reward_model(fixtures / "reward");
  model->eval();
  SECTION("right padding: transformers' pooling at the last non-pad token") {
    const auto scores = model->forward(expected("reward", "rm_ids"), expected("reward", "rm_mask"));
    CHECK(scores.sizes() == at::IntArrayRef({4, 1}));
    CHECK((scores - expected("reward", "rm_scores")).abs().max().item<double>() < 1e-4);
  }
  SECTION("left padding: the score each sequence gets alone") {
    const auto scores = model->forward(expected("reward", "rm_left_ids"), expected("reward", "rm_left_mask"));
    CHECK((scores - expected("reward", "rm_single_scores")).abs().max().item<double>() < 1e-4);
  }
}

TEST_CASE("loading a checkpoint that does not fit the model fails with a clear grpo::Error", "[model]") {
  SECTION("a causal LM from a reward checkpoint and the reverse") {
    CHECK_THROWS_WITH(grpo::load_qwen2(fixtures / "reward"), Catch::Contains("load_qwen2_reward_model"));
    CHECK_THROWS_WITH(grpo::load_qwen2_reward_model(fixtures / "tied_gqa2"), Catch::Contains("load_qwen2"));
  }
  SECTION("a config whose sizes differ from the weights") {
    const auto folder = scratch_folder("wrong-size");
    copy_folder(fixtures / "untied_mha", folder);
    auto config = grpo::load_qwen2_config(folder);
    config.intermediate_size = 100;
    grpo::save_qwen2_config(config, folder);
    CHECK_THROWS_WITH(grpo::load_qwen2(folder), Catch::Contains("mlp.gate_proj.weight") && Catch::Contains("expected shape"));
  }
  SECTION("a missing tensor and an unexpected one") {
    const auto folder = scratch_folder("missing");
    copy_folder(fixtures / "untied_mha", folder);
    auto tensors = grpo::io::SafetensorsCheckpoint::open(folder).load_all();
    tensors.erase("model.norm.weight");
    grpo::io::save_safetensors(folder / "model.safetensors", tensors);
    CHECK_THROWS_WITH(grpo::load_qwen2(folder), Catch::Contains("missing tensor 'model.norm.weight'"));
    tensors["model.norm.weight"] = at::ones({48});
    tensors["model.layers.9.mlp.up_proj.weight"] = at::ones({2, 2});
    grpo::io::save_safetensors(folder / "model.safetensors", tensors);
    CHECK_THROWS_WITH(grpo::load_qwen2(folder), Catch::Contains("model.layers.9.mlp.up_proj.weight"));
  }
  SECTION("no weights at all") {
    const auto folder = scratch_folder("empty");
    fs::create_directories(folder);
    fs::copy_file(fixtures / "tied_gqa2" / "config.json", folder / "config.json");
    CHECK_THROWS_AS(grpo::load_qwen2(folder), grpo::Error);
  }
}

TEST_CASE("save_qwen2 writes a checkpoint that loads back identically, sharded when large", "[model]") {
  auto model = grpo::load_qwen2(fixtures / "tied_gqa2");
  const auto folder = scratch_folder("saved-tied");
  grpo::save_qwen2(model, folder, {.max_shard_bytes = 100'000});
  CHECK(fs::exists(folder / "model.safetensors.index.json"));
  const auto checkpoint = grpo::io::SafetensorsCheckpoint::open(folder);
  CHECK_FALSE(checkpoint.contains("lm_head.weight"));  // tied: transformers stores the embeddings only
  auto reloaded = grpo::load_qwen2(folder);
  const auto original = model->named_parameters();
  const auto restored = reloaded->named_parameters();
  REQUIRE(original.size() == restored.size());
  for (const auto& item : original) CHECK(item.value().equal(restored[item.key()]));
  CHECK(grpo::load_qwen2_config(folder).torch_dtype == "float32");

  auto reward = grpo::load_qwen2_reward_model(fixtures / "reward");
  const auto reward_folder = scratch_folder("saved-reward");
  grpo::save_qwen2_reward_model(reward, reward_folder);
  auto reward_again = grpo::load_qwen2_reward_model(reward_folder);
  CHECK(reward_again->score->weight.equal(reward->score->weight));
  CHECK(grpo::load_qwen2_config(reward_folder).pad_token_id == reward->config().pad_token_id);
}

TEST_CASE("activation checkpointing gives the gradients of the plain backward pass", "[model]") {
  auto model = grpo::load_qwen2(fixtures / "untied_mha");
  model->train();
  const auto ids = expected("untied_mha", "right_ids");
  const auto mask = expected("untied_mha", "right_mask");
  const auto loss_of = [&] {
    // A scalar touching every parameter: the logits of real tokens, weighted by position.
    const auto logits = model->logits(model->forward(ids, mask));
    const auto weights = at::arange(logits.size(-1), at::kFloat).div(100.0);
    return ((logits * weights).sum(-1) * mask).sum();
  };
  std::vector<at::Tensor> parameters = model->parameters();
  const auto plain = torch::autograd::grad({loss_of()}, parameters);
  model->model->set_activation_checkpointing(true);
  const auto recomputed = torch::autograd::grad({loss_of()}, parameters);
  REQUIRE(plain.size() == recomputed.size());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    CHECK(plain[i].abs().sum().item<double>() > 0.0);
    CHECK((plain[i] - recomputed[i]).abs().max().item<double>() < 1e-4 * (1.0 + plain[i].abs().max().item<double>()));
  }
}

TEST_CASE("model options and inputs are validated", "[model]") {
  auto config = grpo::load_qwen2_config(fixtures / "tied_gqa2");
  config.num_key_value_heads = 3;  // does not divide 4 heads
  CHECK_THROWS_AS(grpo::Qwen2Model(config), grpo::Error);
  auto model = grpo::load_qwen2(fixtures / "tied_gqa2");
  at::NoGradGuard no_grad;
  CHECK_THROWS_WITH(model->forward(at::full({1, 3}, 320, at::kLong)), Catch::Contains("outside the vocabulary"));
  CHECK_THROWS_AS(model->forward(at::zeros({3}, at::kLong)), grpo::Error);
  CHECK_THROWS_AS(model->forward(at::zeros({1, 3}, at::kFloat)), grpo::Error);
  CHECK_THROWS_AS(model->forward(at::zeros({1, 3}, at::kLong), at::ones({1, 2})), grpo::Error);
  CHECK_THROWS_AS(grpo::load_qwen2(fixtures / "tied_gqa2", {.dtype = at::kInt}), grpo::Error);
}
