// grpo::ClippedAdamW: the one optimizer update of GRPO, the warm-up and reward-model training.
// Expected values by hand: AdamW's first step moves each weight by lr * g / (|g| + eps) (bias-
// corrected moments m = g, v = g^2), i.e. by lr in the direction of -g, whatever |g|; clipping
// scales g by max_norm / (||g|| + 1e-6) (torch.nn.utils.clip_grad_norm_).
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <limits>

#include "../catch_torch.hpp"
#include "grpo/optim/adamw.hpp"

namespace {

at::Tensor param(std::vector<float> v) {
  return at::tensor(at::ArrayRef<float>(v), at::kFloat).set_requires_grad(true);
}

void set_grad(at::Tensor& p, std::vector<float> g) { p.mutable_grad() = at::tensor(at::ArrayRef<float>(g), at::kFloat); }

}  // namespace

TEST_CASE("ClippedAdamW: the global norm is reported, gradients clipped, AdamW's first step is lr * sign(g)", "[optim]") {
  at::Tensor a = param({1.0f, 2.0f}), b = param({3.0f});
  grpo::ClippedAdamW opt({a, b}, {.lr = {.peak = 0.1}, .eps = 1e-12, .max_grad_norm = 1.0});
  set_grad(a, {3.0f, 0.0f});
  set_grad(b, {-4.0f});
  const grpo::OptimizerUpdate u = opt.step();
  CHECK(u.applied);
  CHECK(u.grad_norm == Approx(5.0));  // sqrt(3^2 + 4^2)
  CHECK(u.lr == Approx(0.1));
  // First step: lr * g / |g| for g != 0 (clipping scales g, not the step's size); 0 where g = 0.
  CHECK(a[0].item<float>() == Approx(0.9f));
  CHECK(a[1].item<float>() == Approx(2.0f));
  CHECK(b[0].item<float>() == Approx(3.1f));
  CHECK(!a.grad().defined());  // gradients cleared
  // The moments hold the clipped gradient: m = (1 - beta1) g', g' = g / (5 + 1e-6).
  const auto moments = opt.moments();
  REQUIRE(moments[0].defined());
  CHECK(moments[0].exp_avg[0].item<double>() == Approx(0.1 * 3.0 / 5.0).epsilon(1e-5));
  CHECK(moments[1].exp_avg_sq[0].item<double>() == Approx(0.001 * (4.0 / 5.0) * (4.0 / 5.0)).epsilon(1e-5));
  CHECK(opt.update_index() == 1);
}

TEST_CASE("ClippedAdamW: without clipping the moments hold the raw gradient", "[optim]") {
  at::Tensor a = param({0.0f});
  grpo::ClippedAdamW opt({a}, {.lr = {.peak = 0.5}, .max_grad_norm = 0.0});
  set_grad(a, {-8.0f});
  const auto u = opt.step();
  CHECK(u.grad_norm == Approx(8.0));
  CHECK(opt.moments()[0].exp_avg[0].item<double>() == Approx(0.1 * -8.0));
  CHECK(a[0].item<float>() == Approx(0.5f));
}

TEST_CASE("ClippedAdamW: a non-finite gradient norm skips the update and leaves weights and moments alone", "[optim]") {
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    at::Tensor a = param({1.0f, 2.0f});
    grpo::ClippedAdamW opt({a}, {.lr = {.peak = 0.1, .warmup_steps = 2}});
    set_grad(a, {bad, 1.0f});
    const auto skipped = opt.step();
    CHECK_FALSE(skipped.applied);
    CHECK_FALSE(std::isfinite(skipped.grad_norm));
    CHECK(a[0].item<float>() == 1.0f);
    CHECK(a[1].item<float>() == 2.0f);
    CHECK_FALSE(opt.moments()[0].defined());  // AdamW never saw the bad gradient
    CHECK(!a.grad().defined());
    CHECK(opt.update_index() == 1);  // the schedule advances: warm-up lr of update 1 is 0.1 * 2/2
    set_grad(a, {1.0f, -1.0f});
    const auto next = opt.step();
    CHECK(next.applied);
    CHECK(next.lr == Approx(0.1));
    CHECK(a[0].item<float>() == Approx(0.9f));
    CHECK(a[1].item<float>() == Approx(2.1f));
  }
}

TEST_CASE("ClippedAdamW: the learning rate follows the schedule by update index", "[optim]") {
  at::Tensor a = param({0.0f});
  grpo::ClippedAdamW opt({a}, {.lr = {.peak = 1.0, .warmup_steps = 4}});
  for (int i = 0; i < 4; ++i) {
    set_grad(a, {1.0f});
    CHECK(opt.step().lr == Approx((i + 1) / 4.0));  // linear warm-up: (i + 1) / warmup_steps
  }
  opt.set_update_index(10);
  set_grad(a, {1.0f});
  CHECK(opt.step().lr == Approx(1.0));
}

TEST_CASE("ClippedAdamW: bad options name the field", "[optim]") {
  at::Tensor a = param({0.0f});
  CHECK_THROWS_WITH(grpo::ClippedAdamW({a}, {.beta1 = 1.0}), Catch::Contains("adam_beta1"));
  CHECK_THROWS_WITH(grpo::ClippedAdamW({a}, {.eps = 0.0}), Catch::Contains("adam_eps"));
  CHECK_THROWS_WITH(grpo::ClippedAdamW({a}, {.weight_decay = -1.0}), Catch::Contains("weight_decay"));
}
