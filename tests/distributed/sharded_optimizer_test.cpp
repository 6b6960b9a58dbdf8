// grpo::ClippedAdamW over 2 Gloo ranks run as threads (rank_threads.hpp): ZeRO-1 with float32
// master weights (OptimizerShards), and the global gradient norm under tensor parallelism
// (tensor_parallel_norm). The reference for every number is the same optimizer in one process on
// the whole tensors, or the norm by hand.
#include <ATen/ops/allclose.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include <grpo/advantage/group_normalized.hpp>
#include <grpo/distributed/process_group.hpp>
#include <grpo/distributed/sharded_optimizer.hpp>
#include <grpo/io/safetensors.hpp>
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/optim/adamw.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/trainer/trainer.hpp>

#include "../catch_torch.hpp"
#include "../trainer/trainer_fixtures.hpp"
#include "rank_threads.hpp"

using grpo_test::run_ranks;

namespace {

at::Tensor bf16_param(std::vector<float> v) {
  return at::tensor(at::ArrayRef<float>(v), at::kFloat).to(at::kBFloat16).set_requires_grad(true);
}

/// Step k's bf16 gradient of tensor `which` (n elements): a steady sign, a varying size.
at::Tensor gradient(int which, int k, std::size_t n) {
  std::vector<float> g;
  for (std::size_t j = 0; j < n; ++j) {
    const float sign = (j + static_cast<std::size_t>(which)) % 3 == 0 ? -1.0f : 1.0f;
    g.push_back(sign * (1.0f + 0.5f * std::sin(static_cast<float>(5 * k + 3 * which) + static_cast<float>(j))));
  }
  return at::tensor(at::ArrayRef<float>(g), at::kFloat).to(at::kBFloat16);
}

const std::vector<float> a0 = {1.0f, -0.5f, 0.00390625f, 0.03125f, -0.0625f};
const std::vector<float> b0 = {0.75f, -1.5f, 0.01171875f, 0.125f, 2.0f};
constexpr int steps = 30;
const grpo::AdamWOptions options{.lr = {.peak = 1e-6}, .weight_decay = 0.01, .max_grad_norm = 1.0, .master_weights = true};

}  // namespace

TEST_CASE("sharded master weights over 2 ranks: each rank keeps its tensors' masters; the weights are one process's",
          "[distributed]") {
  // One process: a and b with their masters, 30 steps at lr 1e-6 with clipping.
  at::Tensor a = bf16_param(a0), b = bf16_param(b0);
  grpo::ClippedAdamW single({a, b}, options);
  for (int k = 0; k < steps; ++k) {
    a.mutable_grad() = gradient(0, k, a0.size());
    b.mutable_grad() = gradient(1, k, b0.size());
    single.step();
  }
  const auto single_state = single.moments();
  REQUIRE(single_state[0].master.defined());
  CHECK_FALSE(at::equal(single_state[0].master, a.detach().to(at::kFloat)));  // the masters moved off the bf16 grid

  // Two ranks, ZeRO-1: equal sizes, so a goes to rank 0 and b to rank 1. Every rank holds the whole
  // (already summed) gradient, as after synchronize_gradients.
  std::vector<at::Tensor> as(2), bs(2);
  std::vector<std::vector<grpo::AdamWMoments>> gathered(2);
  std::vector<std::size_t> held(2);
  std::vector<at::ScalarType> held_dtype(2);
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    at::Tensor ra = bf16_param(a0), rb = bf16_param(b0);
    grpo::ClippedAdamW opt({ra, rb}, options);
    opt.shard(std::make_shared<grpo::OptimizerShards>(comm, opt.params()));
    for (int k = 0; k < steps; ++k) {
      ra.mutable_grad() = gradient(0, k, a0.size());
      rb.mutable_grad() = gradient(1, k, b0.size());
      opt.step();
    }
    const auto i = static_cast<std::size_t>(r);
    as[i] = ra.detach().clone();
    bs[i] = rb.detach().clone();
    const auto& stepped = opt.adamw().param_groups().front().params();
    held[i] = stepped.size();
    held_dtype[i] = stepped.front().scalar_type();  // the master, not the bf16 tensor
    gathered[i] = opt.moments();
  });
  CHECK(held == std::vector<std::size_t>{1, 1});
  CHECK(held_dtype == std::vector<at::ScalarType>{at::kFloat, at::kFloat});
  for (std::size_t r = 0; r < 2; ++r) {
    CHECK(at::equal(as[r], a.detach()));
    CHECK(at::equal(bs[r], b.detach()));
  }
  // The masters and moments gathered on rank 0 are one process's (rank 1 gets none).
  REQUIRE(gathered[0].size() == 2);
  CHECK(gathered[1].empty());
  for (std::size_t t = 0; t < 2; ++t) {
    REQUIRE(gathered[0][t].master.defined());
    CHECK(at::equal(gathered[0][t].master, single_state[t].master));
    CHECK(at::equal(gathered[0][t].exp_avg, single_state[t].exp_avg));
    CHECK(at::equal(gathered[0][t].exp_avg_sq, single_state[t].exp_avg_sq));
    CHECK(gathered[0][t].step == steps);
  }
}

TEST_CASE("sharded master weights in the trainer: a 2-rank bf16 run resumed from its gathered checkpoint continues bit for bit",
          "[trainer][distributed]") {
  // theta on rank 0, phi on rank 1 (equal sizes), both bf16 with float32 masters; 3 steps straight
  // against 2 steps, a checkpoint (masters gathered on rank 0), and a resume where each rank takes
  // back its own tensors' masters.
  namespace fs = std::filesystem;
  const auto dir = grpo_test::scratch("zero1_masters");
  auto run = [&](const char* name, std::int64_t steps, bool resume) {
    std::vector<at::Tensor> theta(2), phi(2);
    run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
      grpo_test::ToyPolicy policy(6, /*with_phi=*/true, at::kBFloat16);
      auto o = grpo_test::toy_options(dir / name);
      o.steps = steps;
      o.prompts_per_step = 4;
      o.epochs = 2;
      o.mini_batches = 2;
      o.shard_optimizer_state = true;
      o.master_weights = true;
      grpo::Trainer trainer(policy, grpo::RewardSet{grpo_test::share_of_a}, grpo::GroupNormalized{},
                            grpo::ClippedSurrogateLoss{}, grpo_test::toy_prompts(), o);
      trainer.distribute(comm);
      if (resume) trainer.resume(dir / name);
      trainer.train();
      theta[static_cast<std::size_t>(r)] = policy.theta().detach().clone();
      phi[static_cast<std::size_t>(r)] = policy.phi().detach().clone();
    });
    CHECK(at::equal(theta[0], theta[1]));
    CHECK(at::equal(phi[0], phi[1]));
    return std::make_pair(theta[0], phi[0]);
  };
  const auto straight = run("straight", 3, false);
  run("interrupted", 2, false);
  {
    const auto file = grpo::io::SafetensorsFile::open(dir / "interrupted" / "checkpoints" / "step-000002" / "optimizer.safetensors");
    for (const char* name : {"param.0.master", "param.1.master"}) CHECK(file.tensor(name).scalar_type() == at::kFloat);
  }
  const auto resumed = run("interrupted", 3, true);
  CHECK_FALSE(at::equal(straight.first, at::zeros({5}, at::kBFloat16)));
  CHECK(at::equal(resumed.first, straight.first));
  CHECK(at::equal(resumed.second, straight.second));
  const auto one = grpo::io::SafetensorsFile::open(dir / "straight" / "checkpoints" / "step-000003" / "optimizer.safetensors");
  const auto two = grpo::io::SafetensorsFile::open(dir / "interrupted" / "checkpoints" / "step-000003" / "optimizer.safetensors");
  for (const char* name : {"param.0.master", "param.1.master", "param.0.exp_avg", "param.1.exp_avg_sq"})
    CHECK(at::equal(one.tensor(name), two.tensor(name)));
  fs::remove_all(dir);
}

TEST_CASE("tensor parallel: the global norm counts a split tensor once, a replicated one once; clipping is one process's",
          "[distributed]") {
  // W [4, 3] is split by rows over 2 ranks (rank r holds rows 2r, 2r+1); R [3] is replicated.
  const at::Tensor w = at::tensor({0.5, -1.0, 2.0, 0.25, 3.0, -0.75, 1.5, 1.0, -2.0, 0.0, 0.125, 4.0}, at::kDouble).reshape({4, 3});
  const at::Tensor r = at::tensor({1.0, -2.0, 0.5}, at::kDouble);
  const at::Tensor gw = at::tensor({1.0, 2.0, -2.0, 0.5, -1.0, 3.0, 0.0, 1.0, 2.0, -4.0, 1.0, 0.5}, at::kDouble).reshape({4, 3});
  const at::Tensor gr = at::tensor({2.0, -1.0, 1.0}, at::kDouble);
  // By hand: ||gW||^2 = 1 + 4 + 4 + 0.25 + 1 + 9 + 0 + 1 + 4 + 16 + 1 + 0.25 = 41.5, ||gR||^2 = 6.
  const double norm = std::sqrt(41.5 + 6.0);
  const grpo::AdamWOptions clipped{.lr = {.peak = 0.1}, .max_grad_norm = 2.0};

  // One process on the whole tensors.
  at::Tensor sw = w.clone().set_requires_grad(true), sr = r.clone().set_requires_grad(true);
  grpo::ClippedAdamW single({sw, sr}, clipped);
  sw.mutable_grad() = gw.clone();
  sr.mutable_grad() = gr.clone();
  const auto single_update = single.step();
  CHECK(single_update.grad_norm == Approx(norm).epsilon(1e-14));
  const auto single_state = single.moments();
  CHECK(at::allclose(single_state[0].exp_avg, 0.1 * gw * (2.0 / (norm + 1e-6)), 0, 1e-14));  // m = (1 - beta1) g'

  std::vector<double> norms(2);
  std::vector<at::Tensor> wm(2), rm(2), ws(2), rs(2);
  run_ranks(2, [&](int rank, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    const auto i = static_cast<std::size_t>(rank);
    at::Tensor pw = w.narrow(0, 2 * rank, 2).clone().set_requires_grad(true), pr = r.clone().set_requires_grad(true);
    grpo::ClippedAdamW opt({pw, pr}, clipped);
    opt.set_tensor_parallel(grpo::tensor_parallel_norm(comm, std::vector<bool>{true, false}));
    pw.mutable_grad() = gw.narrow(0, 2 * rank, 2).clone();
    pr.mutable_grad() = gr.clone();
    norms[i] = opt.step().grad_norm;
    const auto state = opt.moments();
    wm[i] = state[0].exp_avg.clone();
    rm[i] = state[1].exp_avg.clone();
    ws[i] = pw.detach().clone();
    rs[i] = pr.detach().clone();
  });
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(norms[i] == Approx(norm).epsilon(1e-14));
    CHECK(at::allclose(rm[i], single_state[1].exp_avg, 0, 1e-14));
    CHECK(at::allclose(rs[i], sr.detach(), 0, 1e-14));
  }
  CHECK(at::allclose(at::cat({wm[0], wm[1]}), single_state[0].exp_avg, 0, 1e-14));
  CHECK(at::allclose(at::cat({ws[0], ws[1]}), sw.detach(), 0, 1e-14));

  // A rank whose slice has no gradient still takes part: the norm is the others' squares.
  run_ranks(2, [&](int rank, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    at::Tensor pw = w.narrow(0, 2 * rank, 2).clone().set_requires_grad(true), pr = r.clone().set_requires_grad(true);
    grpo::ClippedAdamW opt({pw, pr}, clipped);
    opt.set_tensor_parallel(grpo::tensor_parallel_norm(comm, std::vector<bool>{true, false}));
    if (rank == 0) pw.mutable_grad() = gw.narrow(0, 0, 2).clone();
    pr.mutable_grad() = gr.clone();
    norms[static_cast<std::size_t>(rank)] = opt.step().grad_norm;
  });
  // Rows 0 and 1 of gW: 1 + 4 + 4 + 0.25 + 1 + 9 = 19.25.
  CHECK(norms[0] == Approx(std::sqrt(19.25 + 6.0)).epsilon(1e-14));
  CHECK(norms[1] == Approx(std::sqrt(19.25 + 6.0)).epsilon(1e-14));
}

TEST_CASE("tensor parallel over 4 ranks: a slice shared by 2 ranks (key/value heads) counts once", "[distributed]") {
  // gW [4, 3] split by rows (rank r: row r, copies 1); gK [2, 3] in 2 slices, rank r holding row
  // r / 2 (copies 2, as key/value heads when there are half as many as ranks); gR replicated
  // (copies 4). By hand: ||gW||^2 = 41.5 (as above), ||gK||^2 = 1 + 4 + 9 + 0.25 + 0.25 + 1 = 15.5,
  // ||gR||^2 = 6.
  const at::Tensor gw = at::tensor({1.0, 2.0, -2.0, 0.5, -1.0, 3.0, 0.0, 1.0, 2.0, -4.0, 1.0, 0.5}, at::kDouble).reshape({4, 3});
  const at::Tensor gk = at::tensor({1.0, -2.0, 3.0, 0.5, -0.5, 1.0}, at::kDouble).reshape({2, 3});
  const at::Tensor gr = at::tensor({2.0, -1.0, 1.0}, at::kDouble);
  std::vector<double> norms(4);
  run_ranks(4, [&](int rank, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    at::Tensor w = at::zeros({1, 3}, at::kDouble).set_requires_grad(true), k = at::zeros({1, 3}, at::kDouble).set_requires_grad(true),
               r = at::zeros({3}, at::kDouble).set_requires_grad(true);
    grpo::ClippedAdamW opt({w, k, r}, {.max_grad_norm = 0.0});
    opt.set_tensor_parallel(grpo::tensor_parallel_norm(comm, std::vector<std::int64_t>{1, 2, 4}));
    w.mutable_grad() = gw.narrow(0, rank, 1).clone();
    k.mutable_grad() = gk.narrow(0, rank / 2, 1).clone();
    r.mutable_grad() = gr.clone();
    norms[static_cast<std::size_t>(rank)] = opt.step().grad_norm;
  });
  for (const double n : norms) CHECK(n == Approx(std::sqrt(41.5 + 15.5 + 6.0)).epsilon(1e-14));
}
