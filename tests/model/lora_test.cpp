// LoRA adapters against Hugging Face PEFT 0.21 (tests/python/fixtures/lora.py made the base model,
// two adapters and what PEFT computes with them), and against the formula worked by hand.
#include <catch2/catch.hpp>

#include <ATen/Functions.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/autograd.h>

#include <grpo/io/atomic_file.hpp>
#include <grpo/io/safetensors.hpp>
#include <grpo/model/lora.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/model/qwen2_policy.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../catch_torch.hpp"

namespace fs = std::filesystem;

namespace {

// (One intra-op thread for this executable: qwen2_test.cpp sets it.)
const fs::path fixtures = fs::path(GRPO_FIXTURE_DIR) / "lora";

at::Tensor expected(const std::string& name) {
  return grpo::io::SafetensorsCheckpoint::open(fixtures / "expected.safetensors").load(name);
}

// max |logits - reference| over the real (mask 1) positions
double logit_difference(grpo::Qwen2Model& model, const std::string& reference) {
  at::NoGradGuard no_grad;
  const auto ids = expected("ids");
  const auto mask = expected("mask");
  const auto logits = model->logits(model->forward(ids, mask));
  const auto keep = mask.to(at::kBool).unsqueeze(-1);
  return ((logits.to(at::kDouble) - expected(reference).to(at::kDouble)).abs() * keep).max().item<double>();
}

fs::path scratch(const std::string& name) {
  const auto folder = fs::path(GRPO_FIXTURE_DIR) / "scratch-lora-tests" / name;
  fs::remove_all(folder);
  fs::create_directories(folder.parent_path());
  return folder;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

void write_json(const fs::path& path, const nlohmann::json& value) { grpo::io::write_file_atomically(path, value.dump(2)); }

grpo::Qwen2Model base() { return grpo::load_qwen2(fixtures / "base"); }

}  // namespace

TEST_CASE("a LoRA projection computes x W^T + b + scaling (x A^T) B^T; its merged weight is W + scaling B A", "[lora]") {
  // By hand: x = [1, 2, 3], W = [[1, 0, 0], [0, 1, 0]], b = [0.5, -0.5], A = [[1, 1, 1]] (rank 1),
  // B = [[1], [2]], scaling 2: x A^T = 6, B (x A^T) = [6, 12], times 2 = [12, 24];
  // y = [1 + 0.5 + 12, 2 - 0.5 + 24] = [13.5, 25.5]; W + 2 B A = [[3, 2, 2], [4, 5, 4]].
  auto p = std::make_shared<grpo::ProjectionImpl>(3, 2, true);
  auto a = std::make_shared<grpo::ProjectionImpl>(3, 1, false);
  auto b = std::make_shared<grpo::ProjectionImpl>(1, 2, false);
  {
    at::NoGradGuard no_grad;
    p->weight.copy_(at::tensor({1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f}).view({2, 3}));
    p->bias.copy_(at::tensor({0.5f, -0.5f}));
    a->weight.fill_(1.0f);
    b->weight.copy_(at::tensor({1.0f, 2.0f}).view({2, 1}));
  }
  p->lora_A = p->register_module("lora_A", a);
  p->lora_B = p->register_module("lora_B", b);
  p->lora_alpha = 2.0;  // rank 1: scaling alpha / rank = 2
  const auto y = p->forward(at::tensor({1.0f, 2.0f, 3.0f}).view({1, 3}));
  CHECK(y.allclose(at::tensor({13.5f, 25.5f}).view({1, 2})));
  CHECK(p->effective_weight().allclose(at::tensor({3.0f, 2.0f, 2.0f, 4.0f, 5.0f, 4.0f}).view({2, 3})));
  p->lora_enabled = false;  // the base layer alone: [1 + 0.5, 2 - 0.5]
  CHECK(p->forward(at::tensor({1.0f, 2.0f, 3.0f}).view({1, 3})).allclose(at::tensor({1.5f, 1.5f}).view({1, 2})));
}

TEST_CASE("add_lora adapts the targeted projections of every layer, starts as the base model and freezes the rest",
          "[lora]") {
  auto model = base();
  REQUIRE(logit_difference(model, "base_logits") < 1e-4);
  const auto before = [&] {
    at::NoGradGuard no_grad;
    return model->logits(model->forward(expected("ids"), expected("mask")));
  }();
  torch::manual_seed(1);
  CHECK(grpo::add_lora(*model, {.rank = 4, .alpha = 8}) == 2 * 7);  // 2 layers x 7 projections
  CHECK(grpo::has_lora(*model));
  {
    at::NoGradGuard no_grad;  // B = 0: exactly the base model's logits
    CHECK(at::equal(model->logits(model->forward(expected("ids"), expected("mask"))), before));
  }
  std::int64_t trained = 0;
  for (const auto& item : model->named_parameters()) {
    CHECK(item.value().requires_grad() == grpo::is_lora_parameter(item.key()));
    if (item.value().requires_grad()) trained += item.value().numel();
  }
  // r (in + out) per projection: q 64+64, k 64+32, v 64+32, o 64+64, gate 64+96, up 64+96, down 96+64
  CHECK(trained == 2 * 4 * (128 + 96 + 96 + 128 + 160 + 160 + 160));
  for (const auto& [name, projection] : grpo::lora_projections(*model)) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(projection->weight.size(1)));
    CHECK(projection->lora_A->weight.abs().max().item<double>() <= bound);
    CHECK(projection->lora_A->weight.abs().max().item<double>() > bound / 2);  // uniform in +-bound, not zeros
    CHECK(projection->lora_B->weight.abs().max().item<double>() == 0.0);
    CHECK(projection->lora_scaling() == 2.0);
  }
  CHECK_FALSE(model->lm_head->lora_A);

  // With B = 0, dL/dA = scaling B^T (...) = 0 while dL/dB = scaling (dL/dy)^T (x A^T) is not.
  const auto loss = model->logits(model->forward(expected("ids"), expected("mask"))).pow(2).mean();
  loss.backward();
  for (const auto& [name, projection] : grpo::lora_projections(*model)) {
    CHECK(projection->lora_A->weight.grad().abs().max().item<double>() == 0.0);
    CHECK(projection->lora_B->weight.grad().abs().max().item<double>() > 0.0);
    CHECK_FALSE(projection->weight.grad().defined());
  }

  CHECK_THROWS_WITH(grpo::add_lora(*model, {}), Catch::Contains("already has LoRA adapters"));

  // Full module names, as PEFT writes them, adapt one module each; the saved config names them.
  auto one = base();
  CHECK(grpo::add_lora(*one, {.target_modules = {"model.layers.1.mlp.up_proj", "q_proj"}}) == 1 + 2);
  const auto saved = scratch("one-module");
  grpo::save_lora_adapter(*one, saved);
  CHECK(read_json(saved / "adapter_config.json")["target_modules"] ==
        nlohmann::json({"q_proj", "model.layers.1.mlp.up_proj"}));
  auto reloaded = base();
  grpo::load_lora_adapter(*reloaded, saved);
  CHECK(grpo::lora_projections(*reloaded).size() == 3);
  CHECK_THROWS_WITH(grpo::add_lora(*base(), {.target_modules = {"model.layers.9.self_attn.q_proj"}}),
                    Catch::Contains("'model.layers.9.self_attn.q_proj' matches no projection"));
  auto other = base();
  CHECK_THROWS_WITH(grpo::add_lora(*other, {.target_modules = {"lm_head"}}),
                    Catch::Contains("target_modules: unknown projection 'lm_head'"));
  CHECK_THROWS_WITH(grpo::add_lora(*other, {.rank = 0}), Catch::Contains("rank (r): expected > 0, found 0"));
  CHECK_THROWS_WITH(grpo::add_lora(*other, {.alpha = 0.0}), Catch::Contains("alpha (lora_alpha)"));
  CHECK_FALSE(grpo::has_lora(*other));
}

TEST_CASE("adapters saved by PEFT load and give PEFT's logits; merged weights are PEFT's merge", "[lora]") {
  auto model = base();
  grpo::load_lora_adapter(*model, fixtures / "adapter");
  CHECK(grpo::lora_projections(*model).size() == 2 * 5);
  CHECK(logit_difference(model, "adapter_logits") < 1e-4);
  const auto q = model->model->layers->ptr<grpo::Qwen2DecoderLayerImpl>(0)->self_attn->q_proj;
  CHECK((q->effective_weight() - expected("merged_q_proj")).abs().max().item<double>() < 1e-6);
  {
    grpo::LoraDisabled off(*model);  // the base model while switched off
    CHECK(logit_difference(model, "base_logits") < 1e-4);
  }
  CHECK(logit_difference(model, "adapter_logits") < 1e-4);

  auto rs = base();  // rsLoRA: scaling alpha / sqrt(r) = 3 / sqrt(2); made with "all-linear", which PEFT wrote out as 14 names
  grpo::load_lora_adapter(*rs, fixtures / "adapter_rslora");
  CHECK(grpo::lora_projections(*rs).size() == 2 * 7);
  CHECK(grpo::lora_projections(*rs).front().second->lora_scaling() == Approx(3.0 / std::sqrt(2.0)));
  CHECK(logit_difference(rs, "rslora_logits") < 1e-4);
  const auto saved = scratch("rslora-saved");  // saved as made: use_rslora with alpha 3, not alpha 3 / sqrt(2) x 2
  grpo::save_lora_adapter(*rs, saved);
  const auto config = read_json(saved / "adapter_config.json");
  CHECK(config["use_rslora"] == true);
  CHECK(config["lora_alpha"].get<double>() == 3.0);
  CHECK(config["r"] == 2);

  // A bf16 adapter file loads in float32, as PEFT's from_pretrained upcasts it.
  const auto half = scratch("bf16-adapter");
  fs::create_directories(half);
  fs::copy_file(fixtures / "adapter" / "adapter_config.json", half / "adapter_config.json");
  const auto file = grpo::io::SafetensorsFile::open(fixtures / "adapter" / "adapter_model.safetensors");
  grpo::io::NamedTensors tensors;
  for (const auto& name : file.names()) tensors.emplace_back(name, file.tensor(name).to(at::kBFloat16));
  grpo::io::save_safetensors(half / "adapter_model.safetensors", tensors);
  auto from_half = base();
  grpo::load_lora_adapter(*from_half, half);
  CHECK(grpo::lora_projections(*from_half).front().second->lora_A->weight.scalar_type() == at::kFloat);
  CHECK(logit_difference(from_half, "adapter_logits") < 5e-2);  // bf16-rounded adapter values, float32 compute
}

TEST_CASE("LoraDisabled leaves each adapter as it found it", "[lora]") {
  auto model = base();
  grpo::load_lora_adapter(*model, fixtures / "adapter");
  auto projections = grpo::lora_projections(*model);
  projections.front().second->lora_enabled = false;  // switched off by someone else
  {
    grpo::LoraDisabled outer(*model);
    {
      grpo::LoraDisabled inner(*model);
    }
    for (const auto& [name, p] : projections) CHECK_FALSE(p->lora_enabled);  // the inner guard kept the outer's state
  }
  CHECK_FALSE(projections.front().second->lora_enabled);
  for (std::size_t i = 1; i < projections.size(); ++i) CHECK(projections[i].second->lora_enabled);
}

TEST_CASE("save_qwen2 of an adapted model writes merged weights and a PEFT adapter folder", "[lora]") {
  auto model = base();
  grpo::load_lora_adapter(*model, fixtures / "adapter");
  const auto folder = scratch("saved");
  grpo::save_qwen2(model, folder, {.base_model = "the-base"});
  // The folder is a plain model (no adapter tensors among its weights) computing the adapted function.
  auto merged = grpo::load_qwen2(folder);
  CHECK_FALSE(grpo::has_lora(*merged));
  CHECK(logit_difference(merged, "adapter_logits") < 1e-4);
  // adapter/ reloads onto the base exactly.
  const auto config = read_json(folder / "adapter" / "adapter_config.json");
  CHECK(config["peft_type"] == "LORA");
  CHECK(config["r"] == 4);
  CHECK(config["lora_alpha"].get<double>() == 8.0);
  CHECK(config["target_modules"] == nlohmann::json({"down_proj", "gate_proj", "o_proj", "q_proj", "v_proj"}));
  CHECK(config["base_model_name_or_path"] == "the-base");
  auto again = base();
  grpo::load_lora_adapter(*again, folder / "adapter");
  const auto original = grpo::lora_projections(*model);
  const auto reloaded = grpo::lora_projections(*again);
  REQUIRE(original.size() == reloaded.size());
  for (std::size_t i = 0; i < original.size(); ++i) {
    CHECK(original[i].first == reloaded[i].first);
    CHECK(at::equal(original[i].second->lora_A->weight, reloaded[i].second->lora_A->weight));
    CHECK(at::equal(original[i].second->lora_B->weight, reloaded[i].second->lora_B->weight));
  }
}

TEST_CASE("a bad adapter folder is refused with an error naming the file and the field or tensor", "[lora]") {
  const auto make = [](const std::string& name) {
    const auto folder = scratch(name);
    fs::create_directories(folder);
    for (const char* file : {"adapter_config.json", "adapter_model.safetensors"})
      fs::copy_file(fixtures / "adapter" / file, folder / file);
    return folder;
  };
  const auto edit = [](const fs::path& folder, const std::string& key, const nlohmann::json& value) {
    auto config = read_json(folder / "adapter_config.json");
    config[key] = value;
    write_json(folder / "adapter_config.json", config);
  };
  struct Case {
    std::string key;
    nlohmann::json value;
    std::string message;
  };
  for (const auto& c : std::vector<Case>{{"use_dora", true, "use_dora = true is not supported"},
                                         {"target_modules", ".*proj", "target_modules: expected a list of projection names or \"all-linear\""},
                                         {"peft_type", "IA3", "peft_type: expected \"LORA\""},
                                         {"r", 8, ""},
                                         {"rank_pattern", {{"q_proj", 2}}, "rank_pattern"},
                                         {"lora_alpha", "big", "lora_alpha: expected a number"},
                                         {"use_rslora", "yes", "use_rslora: expected true or false"},
                                         {"init_lora_weights", "pissa", "init_lora_weights = \"pissa\" is not supported"},
                                         {"init_lora_weights", "loftq", "init_lora_weights = \"loftq\" is not supported"},
                                         {"alora_invocation_tokens", {1, 2}, "alora_invocation_tokens = [1,2] is not supported"},
                                         {"layer_replication", {{0, 1}}, "layer_replication"}}) {
    INFO(c.key);
    const auto folder = make("bad-" + c.key + "-" + (c.value.is_string() ? c.value.get<std::string>() : c.value.dump()));
    edit(folder, c.key, c.value);
    auto model = base();
    if (c.key == "r") {  // the tensors are rank 4: the first one names itself and both shapes
      CHECK_THROWS_WITH(grpo::load_lora_adapter(*model, folder),
                        Catch::Contains("adapter_model.safetensors: tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has shape [4, 64], expected [8, 64]"));
    } else {
      CHECK_THROWS_WITH(grpo::load_lora_adapter(*model, folder),
                        Catch::Contains((folder / "adapter_config.json").string()) && Catch::Contains(c.message));
    }
  }
  {  // PEFT's "all-linear" shorthand: the seven projections of every layer
    const auto folder = make("all-linear");
    edit(folder, "target_modules", "all-linear");
    fs::copy_file(fixtures / "adapter_rslora" / "adapter_model.safetensors", folder / "adapter_model.safetensors",
                  fs::copy_options::overwrite_existing);
    edit(folder, "r", 2);
    edit(folder, "lora_alpha", 3);
    edit(folder, "use_rslora", true);
    auto model = base();
    grpo::load_lora_adapter(*model, folder);
    CHECK(grpo::lora_projections(*model).size() == 2 * 7);
    CHECK(logit_difference(model, "rslora_logits") < 1e-4);
  }
  {  // fewer targets than the file has tensors: the others match nothing
    const auto folder = make("extra-tensors");
    edit(folder, "target_modules", {"q_proj"});
    auto model = base();
    CHECK_THROWS_WITH(grpo::load_lora_adapter(*model, folder), Catch::Contains("matches no adapted projection"));
  }
  {  // a target whose tensors are missing
    const auto folder = make("missing-tensors");
    edit(folder, "target_modules", {"q_proj", "k_proj"});
    auto model = base();
    CHECK_THROWS_WITH(grpo::load_lora_adapter(*model, folder),
                      Catch::Contains("missing tensor 'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight'"));
  }
  {
    auto model = base();
    CHECK_THROWS_WITH(grpo::load_lora_adapter(*model, scratch("nothing")), Catch::Contains("adapter_config.json: not found"));
  }
}

TEST_CASE("a LoRA policy: base-model view, checkpoint restore, and a checkpoint from another base is refused",
          "[lora]") {
  const auto tiny = fs::path(GRPO_FIXTURE_DIR) / "qwen2" / "cli_tiny";
  auto policy = grpo::Qwen2Policy::load(tiny);
  auto plain = grpo::Qwen2Policy::load(tiny);
  torch::manual_seed(3);
  policy.add_lora({.rank = 2, .alpha = 4, .target_modules = {"q_proj", "down_proj"}, .zero_init_b = false});
  const auto batch = grpo::make_token_batch(std::vector<std::vector<std::int64_t>>{{9707, 11, 1879}, {40, 1079}},
                                            std::vector<std::vector<std::int64_t>>{{13, 576, 9393}, {264, 1273}});
  at::NoGradGuard no_grad;
  const auto adapted = policy.logprobs(batch, 1.0).logprobs;
  const auto reference = plain.logprobs(batch, 1.0).logprobs;
  CHECK((adapted - reference).abs().max().item<double>() > 1e-4);  // the adapters act
  auto view = policy.base_model_view();
  CHECK(at::equal(view.logprobs(batch, 1.0).logprobs, reference));  // exactly the base model
  CHECK(at::equal(policy.logprobs(batch, 1.0).logprobs, adapted));  // the view left the policy as it was

  const auto folder = scratch("policy");
  policy.save_pretrained(folder);
  CHECK(fs::exists(folder / "tokenizer.json"));
  CHECK(read_json(folder / "adapter" / "adapter_config.json")["base_model_name_or_path"] == tiny.string());
  auto resumed = grpo::Qwen2Policy::load(tiny);
  torch::manual_seed(4);  // other initial adapters, overwritten by the restore
  resumed.add_lora({.rank = 2, .alpha = 4, .target_modules = {"q_proj", "down_proj"}});
  resumed.restore_weights(folder);
  CHECK(at::equal(resumed.logprobs(batch, 1.0).logprobs, adapted));

  // A checkpoint written without adapters cannot restore a policy that has them.
  const auto full = scratch("full-policy");
  plain.save_pretrained(full);
  CHECK_THROWS_WITH(resumed.restore_weights(full), Catch::Contains("was not trained with LoRA adapters"));

  auto other_base = grpo::Qwen2Policy::load(tiny);
  other_base.model()->model->norm->weight.add_(0.1);
  other_base.add_lora({.rank = 2, .alpha = 4, .target_modules = {"q_proj", "down_proj"}});
  CHECK_THROWS_WITH(other_base.restore_weights(folder),
                    Catch::Contains("'model.norm.weight' differs from this policy's base weights") &&
                        Catch::Contains("trained from another base model"));
}

TEST_CASE("with activation checkpointing the adapters get the gradients of the plain backward pass", "[lora]") {
  auto model = base();
  grpo::load_lora_adapter(*model, fixtures / "adapter");
  model->train();
  auto gradients = [&](bool recompute) {
    model->model->set_activation_checkpointing(recompute);
    for (auto& p : model->parameters()) p.mutable_grad().reset();
    model->logits(model->forward(expected("ids"), expected("mask"))).pow(2).mean().backward();
    std::vector<at::Tensor> out;
    for (const auto& [name, p] : grpo::lora_projections(*model)) {
      out.push_back(p->lora_A->weight.grad().clone());
      out.push_back(p->lora_B->weight.grad().clone());
    }
    return out;
  };
  const auto plain = gradients(false);
  const auto recomputed = gradients(true);
  REQUIRE(plain.size() == recomputed.size());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    CHECK(plain[i].abs().max().item<double>() > 0.0);
    CHECK((plain[i] - recomputed[i]).abs().max().item<double>() < 1e-6);
  }
}
