// The Qwen2 model, its KV cache and generation on a GPU, against the same model on the CPU in
// float32 (whose conformance with transformers tests/model/qwen2_test.cpp establishes).
#include <catch2/catch.hpp>

#include <ATen/Functions.h>
#include <torch/csrc/autograd/autograd.h>

#include <grpo/model/qwen2.hpp>
#include <grpo/model/qwen2_generate.hpp>
#include <grpo/model/qwen2_policy.hpp>

#include <vector>

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

// A small GQA model (3 query heads per key/value head) with a spread of weights wide enough that
// next-token distributions are peaked, so greedy decoding does not hinge on rounding.
grpo::Qwen2Config small_config() {
  grpo::Qwen2Config config;
  config.vocab_size = 512;
  config.hidden_size = 96;
  config.intermediate_size = 192;
  config.num_hidden_layers = 3;
  config.num_attention_heads = 6;
  config.num_key_value_heads = 2;
  config.rope_theta = 1e6;
  config.tie_word_embeddings = true;
  config.initializer_range = 0.3;
  return config;
}

grpo::Qwen2Model cpu_model() {
  at::manual_seed(1);
  grpo::Qwen2Model model(small_config());
  model->eval();
  return model;
}

// A copy of `source` on the GPU in `dtype`.
grpo::Qwen2Model gpu_copy(grpo::Qwen2Model& source, at::ScalarType dtype) {
  grpo::Qwen2Model model(source->config(), grpo::Qwen2Options{.device = at::kCUDA, .dtype = dtype, .initialize = false});
  at::NoGradGuard no_grad;
  auto from = source->named_parameters();
  for (auto& item : model->named_parameters()) item.value().copy_(from[item.key()]);
  model->eval();
  return model;
}

std::vector<std::vector<std::int64_t>> prompts() { return {{5, 17, 300, 41, 2}, {9}, {100, 200, 300, 400, 500, 7, 8}}; }

}  // namespace

TEST_CASE("float32 on the GPU reproduces the CPU's logits; bfloat16 stays within bf16 rounding", "[cuda][model]") {
  auto cpu = cpu_model();
  at::NoGradGuard no_grad;
  const auto ids = at::randint(0, 512, {3, 20}, at::kLong);
  auto mask = at::ones({3, 20}, at::kLong);
  mask[1].narrow(0, 15, 5).zero_();  // right padding
  mask[2].narrow(0, 0, 4).zero_();   // left padding
  const auto reference = cpu->logits(cpu->forward(ids, mask));
  const auto real = mask.to(at::kBool).unsqueeze(-1);
  const auto scale = reference.abs().max().item<double>();

  auto fp32 = gpu_copy(cpu, at::kFloat);
  const auto gpu32 = fp32->logits(fp32->forward(ids.cuda(), mask.cuda())).cpu();
  CHECK(((gpu32 - reference).abs() * real).max().item<double>() < 1e-3 * scale);

  auto bf16 = gpu_copy(cpu, at::kBFloat16);
  const auto gpu16 = bf16->logits(bf16->forward(ids.cuda(), mask.cuda())).to(at::kFloat).cpu();
  CHECK(bf16->output_weight().scalar_type() == at::kBFloat16);
  CHECK(((gpu16 - reference).abs() * real).max().item<double>() < 0.08 * scale);
  // The bf16 model ranks the tokens like the fp32 one where the choice is clear.
  const auto agree = (gpu16.argmax(-1) == reference.argmax(-1)).masked_select(mask.to(at::kBool));
  CHECK(agree.to(at::kFloat).mean().item<double>() > 0.9);
}

TEST_CASE("the KV cache on the GPU reproduces the full forward", "[cuda][model]") {
  auto cpu = cpu_model();
  auto model = gpu_copy(cpu, at::kFloat);
  at::NoGradGuard no_grad;
  const auto ids = at::randint(0, 512, {2, 12}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
  auto mask = at::ones({2, 12}, ids.options());
  mask[0].narrow(0, 0, 3).zero_();  // left padding in the prompt (its first 8 tokens)
  const auto full = model->logits(model->forward(ids, mask));
  auto cache = model->make_cache(2, 12);
  const auto prefill = model->logits(model->forward(ids.narrow(1, 0, 8), mask.narrow(1, 0, 8), &cache));
  const auto real = mask.narrow(1, 0, 8).to(at::kBool).unsqueeze(-1);
  CHECK(((prefill - full.narrow(1, 0, 8)).abs() * real).max().item<double>() < 1e-3);
  for (std::int64_t t = 8; t < 12; ++t) {
    const auto step = model->logits(model->forward(ids.narrow(1, t, 1), {}, &cache));
    CHECK((step.select(1, 0) - full.select(1, t)).abs().max().item<double>() < 1e-3);
  }
}

TEST_CASE("generation on the GPU gives the CPU's tokens (greedy and seeded sampling)", "[cuda][model]") {
  auto cpu = cpu_model();
  auto gpu = gpu_copy(cpu, at::kFloat);
  const auto p = prompts();
  for (const grpo::SamplingOptions& options :
       {grpo::SamplingOptions{.max_new_tokens = 32, .greedy = true},
        grpo::SamplingOptions{.temperature = 0.8, .top_p = 0.9, .top_k = 40, .max_new_tokens = 32, .seed = 11}}) {
    const auto on_cpu = grpo::generate(cpu, p, options);
    const auto on_gpu = grpo::generate(gpu, p, options);
    for (std::size_t i = 0; i < p.size(); ++i) {
      CHECK(on_gpu[i].ids == on_cpu[i].ids);
      for (std::size_t t = 0; t < on_gpu[i].logprobs.size() && t < on_cpu[i].logprobs.size(); ++t) {
        CHECK(on_gpu[i].logprobs[t] == Approx(on_cpu[i].logprobs[t]).margin(1e-3));
      }
    }
  }
  // bf16 generation runs and stops at a stop token.
  auto bf16 = gpu_copy(cpu, at::kBFloat16);
  const auto first = grpo::generate(bf16, p, {.max_new_tokens = 8, .greedy = true});
  const auto stop = first[0].ids[3];
  const auto stopped = grpo::generate(bf16, p, {.max_new_tokens = 8, .stop_token_ids = {stop}, .greedy = true});
  CHECK(stopped[0].finish_reason == grpo::FinishReason::stop);
  CHECK(stopped[0].ids.back() == stop);
}

TEST_CASE("CUDA-graph decoding gives the tokens of eager decoding", "[cuda][model]") {
  auto cpu = cpu_model();
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    auto gpu = gpu_copy(cpu, dtype);
    const auto p = prompts();
    // A small window (8 slots) forces several window growths and captures within 40 tokens.
    const grpo::DecodeOptions eager{.cuda_graphs = false};
    const grpo::DecodeOptions graphed{.cuda_graphs = true, .graph_window = 8};
    for (grpo::SamplingOptions options :
         {grpo::SamplingOptions{.max_new_tokens = 40, .greedy = true},
          grpo::SamplingOptions{.temperature = 0.9, .top_k = 50, .max_new_tokens = 40, .seed = 3}}) {
      const auto reference = grpo::generate(gpu, p, options, nullptr, eager);
      // Stop row 1 early (its 6th token) so the graphed batch compacts when half has finished.
      options.stop_token_ids = {reference[1].ids[5]};
      const auto a = grpo::generate(gpu, p, options, nullptr, eager);
      const auto b = grpo::generate(gpu, p, options, nullptr, graphed);
      for (std::size_t i = 0; i < p.size(); ++i) {
        CHECK(a[i].ids == b[i].ids);
        CHECK(a[i].finish_reason == b[i].finish_reason);
        REQUIRE(a[i].logprobs.size() == b[i].logprobs.size());
        for (std::size_t t = 0; t < a[i].logprobs.size(); ++t) CHECK(a[i].logprobs[t] == Approx(b[i].logprobs[t]).margin(1e-2));
      }
      CHECK(a[1].finish_reason == grpo::FinishReason::stop);
    }
  }
}

TEST_CASE("teacher-forced log-probs on the GPU match the CPU and have finite gradients", "[cuda][model]") {
  auto cpu = cpu_model();
  auto gpu = gpu_copy(cpu, at::kBFloat16);
  const std::vector<std::vector<std::int64_t>> prompt_ids = {{1, 2, 3}, {4}};
  const std::vector<std::vector<std::int64_t>> completion_ids = {{5, 6}, {7, 8, 9, 10}};
  const auto batch = grpo::make_token_batch(prompt_ids, completion_ids);
  const auto reference = grpo::teacher_forced_logprobs(cpu, batch, {.chunk_size = 2}).logprobs.detach();
  const auto result = grpo::teacher_forced_logprobs(gpu, batch, {.chunk_size = 2});
  CHECK((result.logprobs.detach().cpu() - reference).abs().max().item<double>() < 0.1 * (1.0 + reference.abs().max().item<double>()));
  auto parameters = gpu->parameters();
  const auto grads = torch::autograd::grad({result.logprobs.sum()}, parameters);
  for (const auto& g : grads) CHECK(g.isfinite().all().item<bool>());
}
