// grpo::token_logprobs against the naive computation (full [N, V] logits, log_softmax, gather,
// entropy = -sum p log p, gradients by autograd), which is the reference definition.
#include <grpo/loss/token_logprobs.hpp>

#include <ATen/Context.h>
#include <ATen/Functions.h>
#include <ATen/TensorOperators.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

// c10/util/Logging.h (pulled in by ATen) replaces Catch's CHECK with a glog-style CHECK(cond)
// that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

struct Naive {
  at::Tensor logprobs, entropy;
};

// The reference: materialise every logit.  hidden [N, H], weight [V, H], targets [N].
Naive naive_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                     double temperature) {
  const auto logits = at::matmul(hidden, weight.t()) / temperature;  // [N, V]
  const auto log_p = at::log_softmax(logits, -1);
  return {log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1), -(log_p.exp() * log_p).sum(-1)};
}

struct Case {
  std::int64_t n, h, v, chunk;
  double temperature;
  std::int64_t vocab_block = 0;  // 0: whole rows; > 0: vocabulary tiles (the CPU default path)
};

// Values and gradients of ours vs naive for a loss that uses both outputs with random weights.
void compare_with_naive(const Case& c, at::ScalarType dtype, double tol) {
  at::manual_seed(1234 + c.n * 7 + c.chunk);
  const auto options = at::TensorOptions().dtype(dtype);
  const auto hidden0 = at::randn({c.n, c.h}, options);
  const auto weight0 = at::randn({c.v, c.h}, options) * 0.5;
  const auto targets = at::randint(c.v, {c.n}, at::TensorOptions().dtype(at::kLong));
  const auto g_lp = at::randn({c.n}, options);
  const auto g_ent = at::randn({c.n}, options);

  auto hidden = hidden0.clone().requires_grad_(true);
  auto weight = weight0.clone().requires_grad_(true);
  const auto ours = grpo::token_logprobs(hidden, weight, targets,
                                         {.chunk_size = c.chunk, .temperature = c.temperature, .vocab_block = c.vocab_block});
  ((ours.logprobs * g_lp).sum() + (ours.entropy * g_ent).sum()).backward();

  auto hidden_ref = hidden0.clone().requires_grad_(true);
  auto weight_ref = weight0.clone().requires_grad_(true);
  const auto ref = naive_logprobs(hidden_ref, weight_ref, targets, c.temperature);
  ((ref.logprobs * g_lp).sum() + (ref.entropy * g_ent).sum()).backward();

  REQUIRE(ours.logprobs.scalar_type() == dtype);
  REQUIRE(ours.logprobs.sizes() == ref.logprobs.sizes());
  CHECK(at::allclose(ours.logprobs, ref.logprobs, tol, tol));
  CHECK(at::allclose(ours.entropy, ref.entropy, tol, tol));
  CHECK(at::allclose(hidden.grad(), hidden_ref.grad(), tol, tol));
  CHECK(at::allclose(weight.grad(), weight_ref.grad(), tol, tol));
}

}  // namespace

TEST_CASE("token_logprobs equals the naive computation in float64", "[token_logprobs]") {
  // N a multiple of the chunk, N not a multiple, chunk > N, chunk = 1, temperature != 1.
  for (const Case c : {Case{12, 8, 37, 4, 1.0}, Case{13, 8, 37, 5, 1.0}, Case{7, 6, 50, 64, 1.0},
                       Case{5, 4, 11, 1, 1.0}, Case{13, 8, 37, 5, 0.7}, Case{9, 8, 29, 4, 1.6}}) {
    for (const std::int64_t block : {0, 8, 5, 1}) {  // whole rows; tiles dividing V or not; one column
      Case tiled = c;
      tiled.vocab_block = block;
      INFO("n=" << c.n << " chunk=" << c.chunk << " T=" << c.temperature << " vocab_block=" << block);
      compare_with_naive(tiled, at::kDouble, 1e-10);
    }
  }
}

TEST_CASE("token_logprobs: vocabulary tiles hold far-apart logits (the running max moves up and down)",
          "[token_logprobs]") {
  // Rows whose largest logit sits in the first, a middle or the last tile, with logits spread over
  // +-60, so a wrong re-basing of the running sums shows at once.
  at::manual_seed(21);
  const auto weight0 = at::randn({40, 6}, at::kDouble) * 10.0;
  const auto hidden0 = at::randn({6, 6}, at::kDouble);
  const auto targets = at::tensor(std::vector<std::int64_t>{0, 39, 17, 5, 22, 31});
  for (const std::int64_t block : {3, 7, 16}) {
    auto h = hidden0.clone().requires_grad_(true);
    auto h_ref = hidden0.clone().requires_grad_(true);
    const auto ours = grpo::token_logprobs(h, weight0, targets, {.chunk_size = 4, .vocab_block = block});
    const auto ref = naive_logprobs(h_ref, weight0, targets, 1.0);
    INFO("vocab_block=" << block);
    CHECK(at::allclose(ours.logprobs, ref.logprobs, 1e-10, 1e-10));
    CHECK(at::allclose(ours.entropy, ref.entropy, 1e-10, 1e-10));
    (ours.logprobs.sum() - ours.entropy.sum()).backward();
    (ref.logprobs.sum() - ref.entropy.sum()).backward();
    CHECK(at::allclose(h.grad(), h_ref.grad(), 1e-9, 1e-9));
  }
}

TEST_CASE("token_logprobs: the CPU default tiles, a block >= V, empty input, confident tokens", "[token_logprobs]") {
  // V > 2048: the default (-1) cuts the vocabulary into 2048-wide tiles on the CPU; a block of V
  // or more means whole rows. Both against the naive computation, with gradients.
  at::manual_seed(17);
  const auto hidden0 = at::randn({20, 8}, at::kDouble);
  const auto weight0 = at::randn({5000, 8}, at::kDouble);
  auto targets = at::randint(5000, {20}, at::TensorOptions().dtype(at::kLong));
  targets[3] = 4999;  // the last column of the last, partial tile
  targets[4] = 0;
  for (const std::int64_t block : {-1, 5000, 1 << 20}) {
    INFO("vocab_block=" << block);
    auto h = hidden0.clone().requires_grad_(true);
    auto w = weight0.clone().requires_grad_(true);
    auto h_ref = hidden0.clone().requires_grad_(true);
    auto w_ref = weight0.clone().requires_grad_(true);
    const auto ours = grpo::token_logprobs(h, w, targets, {.chunk_size = 7, .vocab_block = block});
    const auto ref = naive_logprobs(h_ref, w_ref, targets, 1.0);
    CHECK(at::allclose(ours.logprobs, ref.logprobs, 1e-10, 1e-10));
    CHECK(at::allclose(ours.entropy, ref.entropy, 1e-10, 1e-10));
    (ours.logprobs.sum() + ours.entropy.sum()).backward();
    (ref.logprobs.sum() + ref.entropy.sum()).backward();
    CHECK(at::allclose(h.grad(), h_ref.grad(), 1e-9, 1e-9));
    CHECK(at::allclose(w.grad(), w_ref.grad(), 1e-9, 1e-9));
  }
  // Empty input through the tiles.
  auto empty_hidden = at::randn({0, 8}, at::kDouble).requires_grad_(true);
  auto w = weight0.clone().requires_grad_(true);
  const auto empty = grpo::token_logprobs(empty_hidden, w, at::zeros({0}, at::kLong), {.vocab_block = 64});
  REQUIRE(empty.logprobs.numel() == 0);
  (empty.logprobs.sum() + empty.entropy.sum()).backward();
  CHECK(w.grad().abs().sum().item<double>() == 0.0);
  // Confident tokens in float32 (logits up to ~100): the target's logit comes from the same
  // GEMM as the log-sum-exp, so no log-prob is above 0.
  const auto sharp_hidden = at::randn({64, 16}) * 10.0;
  const auto sharp_weight = at::randn({3000, 16});
  const auto best = at::matmul(sharp_hidden, sharp_weight.t()).argmax(1);
  const auto sharp = grpo::token_logprobs(sharp_hidden, sharp_weight, best, {.chunk_size = 16});
  CHECK(sharp.logprobs.le(0).all().item<bool>());
  const auto sharp_ref = naive_logprobs(sharp_hidden, sharp_weight, best, 1.0);
  CHECK(at::allclose(sharp.logprobs, sharp_ref.logprobs, 1e-4, 1e-5));
}

TEST_CASE("token_logprobs equals the naive computation in float32", "[token_logprobs]") {
  for (const Case c : {Case{33, 16, 301, 8, 1.0}, Case{33, 16, 301, 100, 0.8}, Case{33, 16, 301, 8, 1.0, 64},
                       Case{33, 16, 301, 100, 0.8, 128}}) {
    INFO("n=" << c.n << " chunk=" << c.chunk << " T=" << c.temperature << " vocab_block=" << c.vocab_block);
    compare_with_naive(c, at::kFloat, 2e-5);
  }
}

TEST_CASE("token_logprobs: bf16 inputs give float32 log-probs close to the float32 computation", "[token_logprobs]") {
  const std::int64_t block = GENERATE(0, 16);
  INFO("vocab_block=" << block);
  at::manual_seed(7);
  const auto hidden = at::randn({10, 16}).to(at::kBFloat16);
  const auto weight = at::randn({40, 16}).to(at::kBFloat16);
  const auto targets = at::randint(40, {10}, at::TensorOptions().dtype(at::kLong));
  const auto ours = grpo::token_logprobs(hidden, weight, targets, {.chunk_size = 3, .temperature = 0.8, .vocab_block = block});
  // Reference: the same bf16 values upcast, so only float32 arithmetic differs.
  const auto ref = naive_logprobs(hidden.to(at::kFloat), weight.to(at::kFloat), targets, 0.8);
  REQUIRE(ours.logprobs.scalar_type() == at::kFloat);
  CHECK(at::allclose(ours.logprobs, ref.logprobs, 1e-4, 1e-4));
  CHECK(at::allclose(ours.entropy, ref.entropy, 1e-4, 1e-4));

  auto h = hidden.clone().requires_grad_(true);
  auto w = weight.clone().requires_grad_(true);
  grpo::token_logprobs(h, w, targets, {.chunk_size = 3, .temperature = 0.8, .vocab_block = block}).logprobs.sum().backward();
  REQUIRE(h.grad().scalar_type() == at::kBFloat16);
  auto h_ref = hidden.to(at::kFloat).requires_grad_(true);
  auto w_ref = weight.to(at::kFloat).requires_grad_(true);
  naive_logprobs(h_ref, w_ref, targets, 0.8).logprobs.sum().backward();
  CHECK(at::allclose(h.grad().to(at::kFloat), h_ref.grad(), 2e-2, 2e-2));
  CHECK(at::allclose(w.grad().to(at::kFloat), w_ref.grad(), 2e-2, 2e-2));
}

TEST_CASE("token_logprobs: gradient of log-probs alone, of entropy alone, and w.r.t. one input", "[token_logprobs]") {
  const std::int64_t block = GENERATE(0, 4);
  INFO("vocab_block=" << block);
  at::manual_seed(11);
  const auto hidden0 = at::randn({9, 5}, at::kDouble);
  const auto weight0 = at::randn({13, 5}, at::kDouble);
  const auto targets = at::randint(13, {9}, at::TensorOptions().dtype(at::kLong));
  for (int which = 0; which < 2; ++which) {
    auto h = hidden0.clone().requires_grad_(true);
    auto h_ref = hidden0.clone().requires_grad_(true);
    const auto ours = grpo::token_logprobs(h, weight0, targets, {.chunk_size = 4, .vocab_block = block});
    const auto ref = naive_logprobs(h_ref, weight0, targets, 1.0);
    (which == 0 ? ours.logprobs : ours.entropy).sum().backward();
    (which == 0 ? ref.logprobs : ref.entropy).sum().backward();
    CHECK(at::allclose(h.grad(), h_ref.grad(), 1e-10, 1e-10));
  }
  // Only the weight requires grad (a frozen trunk).
  auto w = weight0.clone().requires_grad_(true);
  auto w_ref = weight0.clone().requires_grad_(true);
  grpo::token_logprobs(hidden0, w, targets, {.chunk_size = 2, .compute_entropy = false, .vocab_block = block})
      .logprobs.sum()
      .backward();
  naive_logprobs(hidden0, w_ref, targets, 1.0).logprobs.sum().backward();
  CHECK(at::allclose(w.grad(), w_ref.grad(), 1e-10, 1e-10));
}

TEST_CASE("token_logprobs: finite differences agree with the custom backward (float64)", "[token_logprobs]") {
  // Central differences of L = sum(a * logprob + b * entropy) on a few hidden entries, step 1e-6.
  at::manual_seed(5);
  const auto hidden = at::randn({4, 3}, at::kDouble);
  const auto weight = at::randn({7, 3}, at::kDouble);
  const auto targets = at::tensor(std::vector<std::int64_t>{0, 6, 3, 3});
  const auto a = at::randn({4}, at::kDouble);
  const auto b = at::randn({4}, at::kDouble);
  const std::int64_t block = GENERATE(0, 3);
  INFO("vocab_block=" << block);
  const grpo::TokenLogprobOptions options{.chunk_size = 3, .temperature = 0.9, .vocab_block = block};
  auto loss = [&](const at::Tensor& h) {
    const auto r = grpo::token_logprobs(h, weight, targets, options);
    return ((r.logprobs * a).sum() + (r.entropy * b).sum()).item<double>();
  };
  auto h = hidden.clone().requires_grad_(true);
  const auto r = grpo::token_logprobs(h, weight, targets, options);
  ((r.logprobs * a).sum() + (r.entropy * b).sum()).backward();
  const double step = 1e-6;
  for (std::int64_t i = 0; i < 4; ++i) {
    for (std::int64_t j = 0; j < 3; ++j) {
      auto plus = hidden.clone();
      auto minus = hidden.clone();
      plus[i][j] += step;
      minus[i][j] -= step;
      const double numeric = (loss(plus) - loss(minus)) / (2 * step);
      CHECK(h.grad()[i][j].item<double>() == Approx(numeric).margin(1e-7));
    }
  }
}

TEST_CASE("token_logprobs: leading dims, empty input, no entropy", "[token_logprobs]") {
  at::manual_seed(3);
  const auto hidden = at::randn({2, 3, 4}, at::kDouble);
  const auto weight = at::randn({6, 4}, at::kDouble);
  const auto targets = at::randint(6, {2, 3}, at::TensorOptions().dtype(at::kLong));
  const auto ours = grpo::token_logprobs(hidden, weight, targets, {.chunk_size = 4});
  const auto ref = naive_logprobs(hidden, weight, targets, 1.0);
  REQUIRE((ours.logprobs.sizes() == at::IntArrayRef{2, 3}));
  CHECK(at::allclose(ours.logprobs, ref.logprobs, 1e-12, 1e-12));
  CHECK(at::allclose(ours.entropy, ref.entropy, 1e-12, 1e-12));

  const auto no_entropy = grpo::token_logprobs(hidden, weight, targets, {.compute_entropy = false});
  CHECK_FALSE(no_entropy.entropy.defined());
  CHECK(at::allclose(no_entropy.logprobs, ref.logprobs, 1e-12, 1e-12));

  auto empty_hidden = at::randn({0, 4}, at::kDouble).requires_grad_(true);
  auto w = weight.clone().requires_grad_(true);
  const auto empty = grpo::token_logprobs(empty_hidden, w, at::zeros({0}, at::kLong));
  REQUIRE(empty.logprobs.numel() == 0);
  REQUIRE(empty.entropy.numel() == 0);
  (empty.logprobs.sum() + empty.entropy.sum()).backward();
  CHECK(w.grad().abs().sum().item<double>() == 0.0);
  CHECK((empty_hidden.grad().sizes() == at::IntArrayRef{0, 4}));
}

TEST_CASE("token_logprobs: int32 targets are accepted", "[token_logprobs]") {
  const auto hidden = at::randn({3, 4}, at::kDouble);
  const auto weight = at::randn({6, 4}, at::kDouble);
  const auto targets = at::tensor(std::vector<std::int64_t>{5, 0, 2});
  const auto ref = naive_logprobs(hidden, weight, targets, 1.0);
  CHECK(at::allclose(grpo::token_logprobs(hidden, weight, targets.to(at::kInt)).logprobs, ref.logprobs));
}

TEST_CASE("token_logprobs: bad input throws grpo::Error", "[token_logprobs]") {
  const auto hidden = at::randn({3, 4});
  const auto weight = at::randn({6, 4});
  const auto targets = at::tensor(std::vector<std::int64_t>{1, 2, 3});
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, at::randn({6, 5}), targets), grpo::Error);         // H mismatch
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight.to(at::kDouble), targets), grpo::Error);    // dtype mismatch
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight, targets.narrow(0, 0, 2)), grpo::Error);    // N mismatch
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight, targets.to(at::kFloat)), grpo::Error);     // float targets
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight, at::tensor(std::vector<std::int64_t>{1, 6, 0})), grpo::Error);
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight, at::tensor(std::vector<std::int64_t>{-1, 0, 0})), grpo::Error);
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight, targets, {.chunk_size = 0}), grpo::Error);
  CHECK_THROWS_WITH(grpo::token_logprobs(hidden, weight, targets, {.vocab_block = -2}), Catch::Contains("vocab_block"));
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight, targets, {.temperature = 0.0}), grpo::Error);
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, weight, targets, {.temperature = std::nan("")}), grpo::Error);
  CHECK_THROWS_AS(grpo::token_logprobs(hidden, at::randn({4}), targets), grpo::Error);
  CHECK_THROWS_AS(grpo::token_logprobs(at::Tensor(), weight, targets), grpo::Error);
  CHECK_THROWS_WITH(grpo::token_logprobs(hidden, weight, at::tensor(std::vector<std::int64_t>{1, 9, 0})),
                    Catch::Contains("[0, V = 6)") && Catch::Contains("found 9"));
}
