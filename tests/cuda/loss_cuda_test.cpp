// ClippedSurrogateLoss and token_logprobs on CUDA against the CPU (which tests/loss/* checks
// against plain-torch references), bf16 inputs through the mixed-precision matmul, NaN for
// out-of-range targets instead of a device assert, and no host synchronisation (graph capture).
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/loss/token_logprobs.hpp>
#include <grpo/trainer/memory.hpp>

#include <ATen/Functions.h>
#include <ATen/TensorOperators.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <catch2/catch.hpp>

#include <vector>

// c10/util/Logging.h (pulled in by ATen) replaces Catch's CHECK with a glog-style CHECK(cond)
// that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

TEST_CASE("ClippedSurrogateLoss on CUDA equals the CPU in float64", "[loss_cuda_test]") {
  at::manual_seed(5);
  const auto old = at::randn({6, 9}, at::kDouble).sub(2.0);
  const auto logprobs = old + at::rand({6, 9}, at::kDouble).sub(0.5);
  const auto ref = old + at::rand({6, 9}, at::kDouble).sub(0.5);
  const auto adv = at::randn({6}, at::kDouble);
  auto mask = at::rand({6, 9}, at::kDouble).gt(0.2).to(at::kDouble);
  mask[3].zero_();
  const grpo::LossNormalizer norm{.tokens = 40, .sequences = 8, .horizon = 12};
  for (auto aggregation : {grpo::Aggregation::token_mean, grpo::Aggregation::seq_mean_token_mean,
                           grpo::Aggregation::seq_mean_token_sum, grpo::Aggregation::seq_mean_token_sum_norm}) {
    for (auto ratio : {grpo::RatioLevel::token, grpo::RatioLevel::sequence}) {
      const grpo::ClippedSurrogateLoss loss{.clip_high = 0.28, .dual_clip = 2.0, .kl_coef = 0.1, .ratio = ratio,
                                            .aggregation = aggregation};
      auto lp_cpu = logprobs.clone().requires_grad_(true);
      auto lp_gpu = logprobs.cuda().requires_grad_(true);
      const auto cpu = loss({lp_cpu, old, ref, adv, mask}, norm);
      const auto gpu = loss({lp_gpu, old.cuda(), ref.cuda(), adv.cuda(), mask.cuda()}, norm);
      cpu.loss.backward();
      gpu.loss.backward();
      CHECK(gpu.loss.item<double>() == Approx(cpu.loss.item<double>()).margin(1e-12));
      CHECK(at::allclose(lp_gpu.grad().cpu(), lp_cpu.grad(), 1e-10, 1e-12));
      CHECK(gpu.stats.tokens.is_cuda());
      CHECK(gpu.stats.clipped_tokens.item<double>() == cpu.stats.clipped_tokens.item<double>());
      CHECK(gpu.stats.ratio_max.item<double>() == Approx(cpu.stats.ratio_max.item<double>()));
    }
  }
}

TEST_CASE("token_logprobs on CUDA equals the CPU (float32, bf16) with gradients", "[loss_cuda_test]") {
  // -1: the defaults (whole rows on both devices at V = 1000); 128: vocabulary tiles on both,
  // through the mixed-precision matmul for bf16 on CUDA.
  const std::int64_t vocab_block = GENERATE(-1, 128);
  INFO("vocab_block=" << vocab_block);
  at::manual_seed(9);
  const auto hidden = at::randn({300, 64});
  const auto weight = at::randn({1000, 64}).mul(0.2);
  const auto targets = at::randint(1000, {300}, at::TensorOptions().dtype(at::kLong));
  const auto g = at::randn({300});
  const grpo::TokenLogprobOptions options{.chunk_size = 128, .temperature = 0.8, .vocab_block = vocab_block};

  auto h_cpu = hidden.clone().requires_grad_(true);
  auto w_cpu = weight.clone().requires_grad_(true);
  const auto cpu = grpo::token_logprobs(h_cpu, w_cpu, targets, options);
  ((cpu.logprobs * g).sum() + cpu.entropy.sum()).backward();

  auto h_gpu = hidden.cuda().requires_grad_(true);
  auto w_gpu = weight.cuda().requires_grad_(true);
  const auto gpu = grpo::token_logprobs(h_gpu, w_gpu, targets.cuda(), options);
  ((gpu.logprobs * g.cuda()).sum() + gpu.entropy.sum()).backward();
  CHECK(at::allclose(gpu.logprobs.cpu(), cpu.logprobs, 1e-4, 1e-4));
  CHECK(at::allclose(gpu.entropy.cpu(), cpu.entropy, 1e-4, 1e-4));
  CHECK(at::allclose(h_gpu.grad().cpu(), h_cpu.grad(), 1e-4, 1e-4));
  CHECK(at::allclose(w_gpu.grad().cpu(), w_cpu.grad(), 1e-4, 1e-4));

  // bf16: logits in float32 through mm(..., out_dtype = float32); reference = CPU on the same
  // bf16 values upcast (the CPU path upcasts W).
  const auto hb = hidden.to(at::kBFloat16);
  const auto wb = weight.to(at::kBFloat16);
  const auto ref = grpo::token_logprobs(hb, wb, targets, options);
  auto hb_gpu = hb.cuda().requires_grad_(true);
  auto wb_gpu = wb.cuda().requires_grad_(true);
  const auto bf = grpo::token_logprobs(hb_gpu, wb_gpu, targets.cuda(), options);
  REQUIRE(bf.logprobs.scalar_type() == at::kFloat);
  CHECK(at::allclose(bf.logprobs.cpu(), ref.logprobs, 1e-3, 1e-3));
  CHECK(at::allclose(bf.entropy.cpu(), ref.entropy, 1e-3, 1e-3));
  bf.logprobs.sum().backward();
  REQUIRE(hb_gpu.grad().scalar_type() == at::kBFloat16);
  CHECK(at::isfinite(wb_gpu.grad()).all().item<bool>());
  // Gradient values against float32 on the same bf16 values, also with targets repeated ~60 times
  // per chunk (the target's share of dL/dW must be summed in float32, not once per occurrence in bf16).
  for (const bool repeated : {false, true}) {
    INFO("repeated targets: " << repeated);
    const auto t = repeated ? at::randint(5, {300}, at::TensorOptions().dtype(at::kLong)) : targets;
    auto h16 = hb.cuda().requires_grad_(true);
    auto w16 = wb.cuda().requires_grad_(true);
    grpo::token_logprobs(h16, w16, t.cuda(), options).logprobs.sum().backward();
    auto h32 = hb.to(at::kFloat).requires_grad_(true);
    auto w32 = wb.to(at::kFloat).requires_grad_(true);
    grpo::token_logprobs(h32, w32, t, options).logprobs.sum().backward();
    CHECK(at::allclose(h16.grad().cpu().to(at::kFloat), h32.grad(), 2e-2, 2e-2));
    CHECK(at::allclose(w16.grad().cpu().to(at::kFloat), w32.grad(), 2e-2, 2e-2));
  }
}

TEST_CASE("token_logprobs on CUDA: out-of-range targets give NaN, not a device assert", "[loss_cuda_test]") {
  const auto hidden = at::randn({4, 8}, at::kCUDA);
  const auto weight = at::randn({10, 8}, at::kCUDA);
  const auto targets = at::tensor(std::vector<std::int64_t>{1, 10, -3, 9}).cuda();
  const auto out = grpo::token_logprobs(hidden, weight, targets).logprobs.cpu();
  CHECK(std::isfinite(out[0].item<float>()));
  CHECK(std::isnan(out[1].item<float>()));
  CHECK(std::isnan(out[2].item<float>()));
  CHECK(std::isfinite(out[3].item<float>()));
}

TEST_CASE("loss and token_logprobs forward never synchronise (graph capture)", "[loss_cuda_test]") {
  const auto hidden = at::randn({64, 32}, at::kCUDA);
  const auto weight = at::randn({500, 32}, at::kCUDA);
  const auto targets = at::randint(500, {64}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
  const auto lp = at::randn({4, 16}, at::dtype(at::kFloat).device(at::kCUDA)).sub(2.0);
  const auto mask = at::ones({4, 16}, at::kCUDA);
  const auto adv = at::randn({4}, at::kCUDA);
  at::cuda::CUDAGraph graph;
  const auto stream = c10::cuda::getStreamFromPool();
  at::Tensor logprobs, loss;
  {
    const c10::cuda::CUDAStreamGuard guard(stream);
    graph.capture_begin();
    logprobs = grpo::token_logprobs(hidden, weight, targets, {.chunk_size = 16}).logprobs;
    loss = grpo::ClippedSurrogateLoss{.dual_clip = 3.0}({lp, lp, lp, adv, mask}, {.tokens = 64}).loss;
    graph.capture_end();
  }
  graph.replay();
  stream.synchronize();
  CHECK(at::isfinite(logprobs).all().item<bool>());
  CHECK(std::isfinite(loss.item<float>()));
}

TEST_CASE("PeakMemory reports the step's CUDA peaks through grpo::cuda's registered allocator calls",
          "[loss_cuda_test]") {
  const grpo::PeakMemory memory(c10::Device(c10::kCUDA, 0));
  memory.reset();
  {
    const auto block = at::empty({std::int64_t{256} << 20}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA));
    const auto during = memory.read();
    REQUIRE(during.contains("cuda_peak_allocated_gib"));
    CHECK(during["cuda_peak_allocated_gib"].get<double>() >= 0.25);
    CHECK(during["cuda_peak_reserved_gib"].get<double>() >= during["cuda_peak_allocated_gib"].get<double>());
  }
  memory.reset();  // the block is freed: a new window starts from what is allocated now
  const auto after = memory.read();
  CHECK(after["cuda_peak_allocated_gib"].get<double>() < 0.25);
  CHECK(after["host_rss_peak_gib"].get<double>() > 0.0);
}
