// grpo::ClippedAdamW: the one optimizer update of GRPO, the warm-up and reward-model training.
// Expected values by hand: AdamW's first step moves each weight by lr * g / (|g| + eps) (bias-
// corrected moments m = g, v = g^2), i.e. by lr in the direction of -g, whatever |g|; clipping
// scales g by max_norm / (||g|| + 1e-6) (torch.nn.utils.clip_grad_norm_). Master weights are
// checked against LibTorch's own AdamW and clip_grad_norm_ run on float32 copies of the weights (what
// a float32 trainer does), rounded to bfloat16 at the end.
#include <ATen/ops/equal.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../catch_torch.hpp"
#include "grpo/optim/adamw.hpp"

namespace {

at::Tensor param(std::vector<float> v) {
  return at::tensor(at::ArrayRef<float>(v), at::kFloat).set_requires_grad(true);
}

void set_grad(at::Tensor& p, std::vector<float> g) { p.mutable_grad() = at::tensor(at::ArrayRef<float>(g), at::kFloat); }

/// A bfloat16 trainable tensor holding `v` (each value rounded to bfloat16).
at::Tensor bf16_param(std::vector<float> v) {
  return at::tensor(at::ArrayRef<float>(v), at::kFloat).to(at::kBFloat16).set_requires_grad(true);
}

/// Step k's gradient for a tensor of n elements: a steady sign per element (so AdamW keeps moving
/// each weight the same way, about lr per step) with a varying size, rounded to bfloat16 like a
/// bf16 model's gradient. sign: +1 or -1 per element.
at::Tensor bf16_gradient(const std::vector<float>& sign, int k, float offset) {
  std::vector<float> g;
  for (std::size_t j = 0; j < sign.size(); ++j)
    g.push_back(sign[j] * (1.0f + 0.5f * std::sin(static_cast<float>(7 * k + static_cast<int>(j)) + offset)));
  return at::tensor(at::ArrayRef<float>(g), at::kFloat).to(at::kBFloat16);
}

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

TEST_CASE("master weights: bf16 weights at lr 1e-6 follow a float32 AdamW rounded to bf16; in place they never move",
          "[optim]") {
  // Why master weights: bf16 neighbours are 2^-8..2^-7 |w| apart, and AdamW moves a weight by about
  // lr = 1e-6 per step, below half the gap for every |w| >= 2^-10 here. Updated in place, each
  // step rounds back to the old value, so the weights never move; a float32 trainer's weights
  // (the reference: LibTorch's AdamW and clip_grad_norm_ on float32 copies) move by ~1e-6 per step
  // and, after 40 steps, the small ones (0.0039, 0.0117) cross to other bf16 values.
  const std::vector<float> a0 = {1.0f, -0.5f, 0.00390625f, 0.03125f, -0.0625f, 0.2f};
  const std::vector<float> b0 = {0.75f, -1.5f, 0.01171875f, 0.125f};
  const std::vector<float> a_sign = {1, -1, 1, -1, 1, 1}, b_sign = {-1, 1, 1, -1};
  const int steps = 40;
  const grpo::AdamWOptions options{.lr = {.peak = 1e-6}, .weight_decay = 0.01, .max_grad_norm = 1.0};

  // The float32 reference.
  at::Tensor ra = bf16_param(a0).detach().to(at::kFloat).set_requires_grad(true);
  at::Tensor rb = bf16_param(b0).detach().to(at::kFloat).set_requires_grad(true);
  torch::optim::AdamW reference({ra, rb}, torch::optim::AdamWOptions(1e-6).weight_decay(0.01));
  std::vector<at::Tensor> ref_a, ref_b;  // after each step
  for (int k = 0; k < steps; ++k) {
    ra.mutable_grad() = bf16_gradient(a_sign, k, 0.0f).to(at::kFloat);
    rb.mutable_grad() = bf16_gradient(b_sign, k, 1.0f).to(at::kFloat);
    torch::nn::utils::clip_grad_norm_({ra, rb}, 1.0);  // |g| ~ 3.6: clipping is active
    reference.step();
    ref_a.push_back(ra.detach().clone());
    ref_b.push_back(rb.detach().clone());
  }
  // The reference's rounded weights have left their start for some elements: a case where the
  // bf16 weights should move.
  const at::Tensor start_a = bf16_param(a0).detach(), start_b = bf16_param(b0).detach();
  CHECK(at::ne(ref_a.back().to(at::kBFloat16), start_a).sum().item<int>() >= 1);
  CHECK(at::ne(ref_b.back().to(at::kBFloat16), start_b).sum().item<int>() >= 1);

  for (const bool masters : {true, false}) {
    CAPTURE(masters);
    at::Tensor a = bf16_param(a0), b = bf16_param(b0);
    auto o = options;
    o.master_weights = masters;
    grpo::ClippedAdamW opt({a, b}, o);
    for (int k = 0; k < steps; ++k) {
      a.mutable_grad() = bf16_gradient(a_sign, k, 0.0f);
      b.mutable_grad() = bf16_gradient(b_sign, k, 1.0f);
      const auto u = opt.step();
      REQUIRE(u.applied);
      if (masters) {
        // Every step: the bf16 weights are the reference rounded to nearest, the masters the reference.
        CHECK(at::equal(a.detach(), ref_a[static_cast<std::size_t>(k)].to(at::kBFloat16)));
        CHECK(at::equal(b.detach(), ref_b[static_cast<std::size_t>(k)].to(at::kBFloat16)));
      } else {
        CHECK(at::equal(a.detach(), start_a));  // the update was lost
        CHECK(at::equal(b.detach(), start_b));
      }
    }
    const auto state = opt.moments();
    if (masters) {
      REQUIRE(state[0].master.defined());
      CHECK(state[0].master.scalar_type() == at::kFloat);
      CHECK(state[0].exp_avg.scalar_type() == at::kFloat);  // moments kept like the master
      CHECK(at::allclose(state[0].master, ref_a.back(), 0, 1e-9));
      CHECK(at::allclose(state[1].master, ref_b.back(), 0, 1e-9));
    } else {
      CHECK_FALSE(state[0].master.defined());
      CHECK(state[0].exp_avg.scalar_type() == at::kBFloat16);
    }
  }
}

TEST_CASE("master weights: the gradient is clipped in float32", "[optim]") {
  // g = (3, 4): ||g|| = 5, clipped to (0.6, 0.8) / (1 + 2e-7). In bf16 0.6 would be 0.6015625, so
  // m = 0.1 g' shows where the clipped gradient was computed.
  at::Tensor a = bf16_param({1.0f, -2.0f});
  grpo::ClippedAdamW opt({a}, {.lr = {.peak = 1e-3}, .max_grad_norm = 1.0, .master_weights = true});
  a.mutable_grad() = at::tensor({3.0f, 4.0f}, at::kFloat).to(at::kBFloat16);
  const auto u = opt.step();
  CHECK(u.grad_norm == Approx(5.0));
  const auto state = opt.moments();
  REQUIRE(state[0].defined());
  CHECK(state[0].exp_avg[0].item<double>() == Approx(0.1 * 3.0 / (5.0 + 1e-6)).epsilon(1e-7));
  CHECK(state[0].exp_avg[1].item<double>() == Approx(0.1 * 4.0 / (5.0 + 1e-6)).epsilon(1e-7));
  CHECK(state[0].exp_avg_sq[0].item<double>() == Approx(0.001 * 0.36 / (1 + 2e-7) / (1 + 2e-7)).epsilon(1e-6));
  // The first AdamW step moves the master by lr against g: 1 - 1e-3 and -2 - 1e-3 (eps aside), and
  // the bf16 weights are those rounded: 0.9990 -> 0.99609375 is further than 1.0, so 1.0 stays;
  // -2.001 -> -2.0 (bf16 gap at 2 is 2^-6).
  CHECK(state[0].master[0].item<double>() == Approx(1.0 - 1e-3).epsilon(1e-7));
  CHECK(state[0].master[1].item<double>() == Approx(-2.0 - 1e-3).epsilon(1e-7));
  CHECK(a[0].item<float>() == 1.0f);
  CHECK(a[1].item<float>() == -2.0f);
  CHECK(!a.grad().defined());
}

TEST_CASE("master weights: a non-finite norm leaves the masters, moments and weights alone", "[optim]") {
  at::Tensor a = bf16_param({1.0f, 0.5f});
  grpo::ClippedAdamW opt({a}, {.lr = {.peak = 1e-6}, .master_weights = true});
  a.mutable_grad() = at::tensor({1.0f, -1.0f}, at::kFloat).to(at::kBFloat16);
  REQUIRE(opt.step().applied);
  const auto before = opt.moments();
  const at::Tensor master = before[0].master.clone(), exp_avg = before[0].exp_avg.clone();
  CHECK(master[0].item<double>() == Approx(1.0 - 1e-6).epsilon(1e-7));  // moved (fp32 gap 6e-8); the bf16 weight did not
  CHECK(a[0].item<float>() == 1.0f);
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    a.mutable_grad() = at::tensor({bad, 1.0f}, at::kFloat).to(at::kBFloat16);
    const auto skipped = opt.step();
    CHECK_FALSE(skipped.applied);
    const auto after = opt.moments();
    CHECK(at::equal(after[0].master, master));
    CHECK(at::equal(after[0].exp_avg, exp_avg));
    CHECK(after[0].step == 1);
    CHECK(a[0].item<float>() == 1.0f);
    CHECK(a[1].item<float>() == 0.5f);
    CHECK(!a.grad().defined());
  }
  a.mutable_grad() = at::tensor({1.0f, -1.0f}, at::kFloat).to(at::kBFloat16);
  REQUIRE(opt.step().applied);
  CHECK(opt.moments()[0].master[0].item<double>() == Approx(1.0 - 2e-6).epsilon(1e-7));
}

TEST_CASE("master weights: a float32 tensor is its own master, stepped as without master weights", "[optim]") {
  // With a bf16 tensor beside it: only the bf16 one gets a copy; the float32 one's update is bit for
  // bit the one without master weights.
  std::vector<at::Tensor> finals;
  for (const bool masters : {true, false}) {
    at::Tensor w = param({0.25f, -1.0f, 3.0f}), h = bf16_param({0.5f});
    grpo::ClippedAdamW opt({w, h}, {.lr = {.peak = 0.01}, .weight_decay = 0.1, .max_grad_norm = 2.0, .master_weights = masters});
    for (int k = 0; k < 3; ++k) {
      set_grad(w, {1.0f + static_cast<float>(k), -2.0f, 0.5f});
      h.mutable_grad() = at::tensor({0.25f}, at::kFloat).to(at::kBFloat16);
      REQUIRE(opt.step().applied);
    }
    const auto state = opt.moments();
    CHECK_FALSE(state[0].master.defined());
    CHECK(state[0].exp_avg.scalar_type() == at::kFloat);
    CHECK(state[1].master.defined() == masters);
    finals.push_back(w.detach().clone());
  }
  CHECK(at::equal(finals[0], finals[1]));
}

TEST_CASE("restore: an optimizer given another's moments and masters continues bit for bit", "[optim]") {
  // One optimizer takes 5 steps; another takes the first's state after 2 (weights, moments(),
  // update index) and the same last 3 gradients. Without the saved masters (weights only), the
  // copies start from the bf16 weights and the run differs.
  const std::vector<float> sign = {1, -1, 1};
  auto grad = [&](int k) { return bf16_gradient(sign, k, 0.5f); };
  const grpo::AdamWOptions options{.lr = {.peak = 1e-3}, .max_grad_norm = 1.0, .master_weights = true};
  at::Tensor a = bf16_param({0.3f, -0.7f, 1.1f});
  grpo::ClippedAdamW straight({a}, options);
  std::vector<grpo::AdamWMoments> saved;
  at::Tensor saved_weights;
  for (int k = 0; k < 5; ++k) {
    if (k == 2) {  // moments() shares the optimizer's tensors: copy them, as a checkpoint does
      for (const auto& m : straight.moments()) saved.push_back({m.exp_avg.clone(), m.exp_avg_sq.clone(), m.step, m.master.clone()});
      saved_weights = a.detach().clone();
    }
    a.mutable_grad() = grad(k);
    straight.step();
  }
  REQUIRE(saved[0].master.defined());
  CHECK_FALSE(at::equal(saved[0].master, saved_weights.to(at::kFloat)));  // the masters carry more than the weights

  for (const bool with_masters : {true, false}) {
    CAPTURE(with_masters);
    at::Tensor b = saved_weights.clone().set_requires_grad(true);
    grpo::ClippedAdamW resumed({b}, options);
    auto state = saved;
    if (!with_masters) state[0].master = at::Tensor();
    resumed.restore(state);
    resumed.set_update_index(2);
    for (int k = 2; k < 5; ++k) {
      b.mutable_grad() = grad(k);
      resumed.step();
    }
    CHECK(at::equal(resumed.moments()[0].master, straight.moments()[0].master) == with_masters);
    if (with_masters) CHECK(at::equal(b.detach(), a.detach()));
  }
  // restore copied the state: the straight optimizer kept stepping its own moments meanwhile.
  CHECK(straight.moments()[0].step == 5);
}

TEST_CASE("set_tensor_parallel: one count of copies per trainable tensor, within the group, and a sum are required",
          "[optim]") {
  at::Tensor a = param({0.0f}), b = param({1.0f}), c = param({2.0f});
  grpo::ClippedAdamW opt({a, b, c}, {});
  auto noop = [](at::Tensor&) {};
  CHECK_THROWS_WITH(opt.set_tensor_parallel({.copies = {1}, .group_size = 4, .all_reduce_sum = noop}),
                    Catch::Contains("1 entries for 3 trainable tensors"));
  CHECK_THROWS_WITH(opt.set_tensor_parallel({.copies = {1, 5, 4}, .group_size = 4, .all_reduce_sum = noop}),
                    Catch::Contains("copies[1] = 5, expected 1 to the group size 4"));
  CHECK_THROWS_WITH(opt.set_tensor_parallel({.copies = {1, 2, 4}, .group_size = 4}), Catch::Contains("all_reduce_sum"));
  // A group of 4 ranks that all hold these values, simulated (the group sum is 4 x this rank's):
  // a is split (4 slices, equal here), b a slice 2 ranks share (2 slices), c replicated (1). The
  // whole tensors are [a a a a], [b b], c: norm^2 = 4 * 9 + 2 * 1 + 4.
  opt.set_tensor_parallel({.copies = {1, 2, 4}, .group_size = 4, .all_reduce_sum = [](at::Tensor& t) { t.mul_(4); }});
  set_grad(a, {3.0f});
  set_grad(b, {1.0f});
  set_grad(c, {2.0f});
  CHECK(opt.step().grad_norm == Approx(std::sqrt(4 * 9.0 + 2 * 1.0 + 4.0)));
}
