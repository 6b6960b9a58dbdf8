// The trainer over 2 and 3 data-parallel Gloo ranks run as threads of one process
// (rank_threads.hpp), with the closed-form toy policy of the trainer tests. The reference for
// every number is the same run in one process.
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <grpo/advantage/group_normalized.hpp>
#include <grpo/io/safetensors.hpp>
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/trainer/trainer.hpp>

#include "../catch_torch.hpp"
#include "../trainer/trainer_fixtures.hpp"
#include "rank_threads.hpp"

namespace fs = std::filesystem;
using namespace grpo_test;

TEST_CASE("two data-parallel ranks take the steps one process takes on the whole batch", "[trainer][distributed]") {
  // Multi-epoch, two mini-batches, one sequence per micro-batch, zero-variance groups filtered
  // (or, second section, resampled): every normaliser must be counted over both ranks for the
  // sums of gradients to match.
  std::int64_t rounds = 0;
  SECTION("zero-variance groups filtered") { rounds = 0; }
  SECTION("dynamic sampling (uneven groups per rank)") { rounds = 4; }
  auto configure = [rounds](const fs::path& out) {
    auto o = toy_options(out);
    o.dynamic_sampling_rounds = rounds;
    o.steps = 3;
    o.prompts_per_step = 4;
    o.epochs = 2;
    o.mini_batches = 2;
    o.micro_batch_tokens = 7;
    o.filter_zero_variance_groups = true;
    o.max_grad_norm = 0.05;  // clipping on the summed gradient
    o.save_every = 0;
    return o;
  };
  const auto dir = scratch("dp");
  at::Tensor single_theta;
  std::vector<nlohmann::json> single_rows;
  {
    ToyPolicy policy;
    grpo::Trainer trainer(policy, grpo::RewardSet{ShareOfA{}}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "single"));
    for (int s = 0; s < 3; ++s) single_rows.push_back(trainer.step().to_json());
    single_theta = policy.theta().detach().clone();
  }
  std::vector<at::Tensor> thetas(2);
  std::vector<std::vector<nlohmann::json>> rows(2);
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy;
    if (r == 1) policy.theta().detach().copy_(at::tensor({3.0, -1.0, 0.5, 2.0, -2.0}, at::kDouble));  // replaced by rank 0's
    grpo::Trainer trainer(policy, grpo::RewardSet{ShareOfA{}}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "dp"));
    trainer.distribute(comm);
    if (trainer.world_size() != 2 || trainer.rank() != r) throw std::logic_error("rank/world not taken from the communicator");
    for (int s = 0; s < 3; ++s) rows[static_cast<std::size_t>(r)].push_back(trainer.step().to_json());
    thetas[static_cast<std::size_t>(r)] = policy.theta().detach().clone();
  });
  CHECK(at::equal(thetas[0], thetas[1]));  // the replicas stay identical
  CHECK(at::allclose(thetas[0], single_theta, 0, 1e-12));
  CHECK_FALSE(at::allclose(single_theta, at::zeros({5}, at::kDouble)));
  for (std::size_t s = 0; s < 3; ++s) {
    const auto& one = single_rows[s];
    for (const auto& dp : {rows[0][s], rows[1][s]}) {
      // Gathered over ranks: the same samples, so the same statistics.
      for (const char* key : {"reward", "zero_variance_group_fraction", "a_letters_mean", "truncated_fraction"})
        CHECK(dp[key].get<double>() == Approx(one[key].get<double>()).margin(1e-12));
      CHECK(dp["rewards"] == one["rewards"]);
      CHECK(dp["completion_tokens"] == one["completion_tokens"]);
      CHECK(dp["advantage"]["mean"].get<double>() == Approx(one["advantage"]["mean"].get<double>()).margin(1e-9));
      CHECK(dp["advantage"]["std"].get<double>() == Approx(one["advantage"]["std"].get<double>()).margin(1e-9));
      // Summed over ranks: the update's counts and the whole-batch loss.
      CHECK(dp["trained_samples"] == one["trained_samples"]);
      CHECK(dp["trained_tokens"] == one["trained_tokens"]);
      CHECK(dp["updates"] == one["updates"]);
      CHECK(dp["loss"].get<double>() == Approx(one["loss"].get<double>()).margin(1e-9));
      CHECK(dp["clip_fraction"].get<double>() == Approx(one["clip_fraction"].get<double>()).margin(1e-12));
      CHECK(dp["grad_norm"].get<double>() == Approx(one["grad_norm"].get<double>()).epsilon(1e-9));
      CHECK(dp["entropy"] == one["entropy"]);
      for (const char* key : {"prob_diff_mean", "prob_diff_max", "logprob_diff_mean"})
        CHECK(dp["sampler_mismatch"][key].get<double>() == Approx(one["sampler_mismatch"][key].get<double>()).margin(1e-12));
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("data parallel: rank 0 alone writes metrics, every rank's samples and checkpoints; a bad world size is refused",
          "[trainer][distributed]") {
  const auto dir = scratch("dp_files");
  auto configure = [](const fs::path& out) {
    auto options = toy_options(out);
    options.steps = 2;
    options.save_every = 1;
    options.log_samples_every = 1;
    options.log_samples_per_group = 2;
    return options;
  };
  {
    ToyPolicy policy;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "single"));
    trainer.train();
  }
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / ("rank" + std::to_string(r))));
    trainer.distribute(comm);
    trainer.train();
  });
  CHECK(fs::exists(dir / "rank0" / "metrics.jsonl"));
  CHECK(fs::exists(dir / "rank0" / "checkpoints" / "step-000002"));
  CHECK_FALSE(fs::exists(dir / "rank1"));
  // The completions table holds both ranks' groups (rank 1's second), as one process writes it.
  auto read = [](const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string single = read(dir / "single" / "samples.jsonl");
  CHECK(std::count(single.begin(), single.end(), '\n') == 2 * 2 * 2);  // steps x groups x samples logged
  CHECK(read(dir / "rank0" / "samples.jsonl") == single);
  fs::remove_all(dir);

  std::vector<std::string> messages(3);
  run_ranks(3, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), toy_options(dir));  // 2 prompts per step over 3 ranks
    try {
      trainer.distribute(comm);
    } catch (const grpo::Error& e) {
      messages[static_cast<std::size_t>(r)] = e.what();
    }
  });
  for (const auto& m : messages) CHECK_THAT(m, Catch::Contains("prompts_per_step") && Catch::Contains("world size 3"));

  // Ranks whose settings would make them run different collectives are stopped, every one of them.
  std::vector<std::string> disagree(2);
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy;
    auto options = toy_options(dir);
    options.epochs = r == 0 ? 1 : 2;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), options);
    try {
      trainer.distribute(comm);
    } catch (const grpo::Error& e) {
      disagree[static_cast<std::size_t>(r)] = e.what();
    }
  });
  for (const auto& m : disagree) CHECK_THAT(m, Catch::Contains("rank 1 has epochs = 2 but rank 0 has 1"));

  // The same over a tensor x data mesh: the two ranks of one tensor group (D = 1) compare their
  // settings over the world before the policy's split is even looked at.
  std::vector<std::string> tensor_group(2);
  run_mesh(2, 2, [&](int r, grpo::DeviceMesh& mesh) {
    ToyPolicy policy;
    auto options = toy_options(dir);
    options.master_weights = r == 1;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), options);
    try {
      trainer.distribute(mesh);
    } catch (const grpo::Error& e) {
      tensor_group[static_cast<std::size_t>(r)] = e.what();
    }
  });
  for (const auto& m : tensor_group) CHECK_THAT(m, Catch::Contains("rank 1 has master_weights = 1 but rank 0 has 0"));

  // A difference that would change the first collectives (a reference policy to broadcast on one
  // rank only; another model) is named before any of them runs.
  std::vector<std::string> shape(2);
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy(6, /*with_phi=*/r == 1), reference;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), toy_options(dir), r == 1 ? &reference : nullptr);
    try {
      trainer.distribute(comm);
    } catch (const grpo::Error& e) {
      shape[static_cast<std::size_t>(r)] = e.what();
    }
  });
  for (const auto& m : shape) CHECK_THAT(m, Catch::Contains("rank 1 has policy tensors = 2 but rank 0 has 1"));
}

TEST_CASE("sharded optimizer state: each rank keeps its tensors' moments; steps and checkpoints are one process's",
          "[trainer][distributed]") {
  // Two tensors (theta, phi), 2 epochs x 2 mini-batches, and a checkpoint at step 3 that a new
  // sharded run resumes to step 5. The reference is one process running 5 steps straight.
  const auto dir = scratch("zero1");
  auto configure = [](const fs::path& out, std::int64_t steps) {
    auto o = toy_options(out);
    o.steps = steps;
    o.prompts_per_step = 4;
    o.epochs = 2;
    o.mini_batches = 2;
    o.save_every = 3;
    o.keep_checkpoints = 0;
    o.shard_optimizer_state = true;  // no effect in one process
    return o;
  };
  at::Tensor theta, phi;
  {
    ToyPolicy policy(6, /*with_phi=*/true);
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "single", 5));
    trainer.train();
    CHECK(trainer.optimizer().adamw().state().size() == 2);
    theta = policy.theta().detach().clone();
    phi = policy.phi().detach().clone();
  }
  std::vector<std::size_t> held(2), states(2);
  std::vector<at::Tensor> thetas(2), phis(2);
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy(6, true);
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "sharded", 3));
    trainer.distribute(comm);
    trainer.train();  // saves at step 3
    held[static_cast<std::size_t>(r)] = trainer.optimizer().adamw().param_groups().front().params().size();
    states[static_cast<std::size_t>(r)] = trainer.optimizer().adamw().state().size();
  });
  CHECK(held == std::vector<std::size_t>{1, 1});  // theta on rank 0, phi on rank 1 (equal sizes: lowest rank first)
  CHECK(states == std::vector<std::size_t>{1, 1});
  // The checkpoint is whole: the same tensors, steps and names as one process's.
  {
    const auto one = grpo::io::SafetensorsFile::open(dir / "single" / "checkpoints" / "step-000003" / "optimizer.safetensors");
    const auto two = grpo::io::SafetensorsFile::open(dir / "sharded" / "checkpoints" / "step-000003" / "optimizer.safetensors");
    CHECK(one.metadata() == two.metadata());
    for (const char* name : {"param.0.exp_avg", "param.0.exp_avg_sq", "param.1.exp_avg", "param.1.exp_avg_sq"})
      CHECK(at::allclose(one.tensor(name), two.tensor(name), 0, 1e-12));
  }
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy(6, true);  // fresh weights: everything comes from the checkpoint
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "sharded", 5));
    trainer.distribute(comm);
    trainer.resume(dir / "sharded");
    trainer.train();
    thetas[static_cast<std::size_t>(r)] = policy.theta().detach().clone();
    phis[static_cast<std::size_t>(r)] = policy.phi().detach().clone();
  });
  for (std::size_t r = 0; r < 2; ++r) {
    CHECK(at::allclose(thetas[r], theta, 0, 1e-12));
    CHECK(at::allclose(phis[r], phi, 0, 1e-12));
  }
  CHECK_FALSE(at::allclose(theta, at::zeros({5}, at::kDouble)));
  CHECK_FALSE(at::allclose(phi, at::zeros({5}, at::kDouble)));
  {
    // The 2-rank checkpoint also resumes in one process, continuing the same run.
    ToyPolicy policy(6, true);
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "one_after_two", 5));
    trainer.resume(dir / "sharded" / "checkpoints" / "step-000003");
    trainer.train();
    CHECK(at::allclose(policy.theta().detach(), theta, 0, 1e-12));
    CHECK(at::allclose(policy.phi().detach(), phi, 0, 1e-12));
  }

  // Three ranks, two tensors: rank 2 owns none and still takes part in every step.
  at::Tensor theta3;
  {
    ToyPolicy policy(6, true);
    auto o = configure(dir / "single3", 2);
    o.prompts_per_step = 3;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), o);
    trainer.train();
    theta3 = (policy.theta() + policy.phi()).detach().clone();
  }
  std::vector<at::Tensor> logits(3);
  run_ranks(3, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy(6, true);
    auto o = configure(dir / "sharded3", 2);
    o.prompts_per_step = 3;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), o);
    trainer.distribute(comm);
    trainer.train();
    logits[static_cast<std::size_t>(r)] = (policy.theta() + policy.phi()).detach().clone();
  });
  for (const auto& l : logits) CHECK(at::allclose(l, theta3, 0, 1e-12));
  fs::remove_all(dir);
}

TEST_CASE("dynamic sampling over two ranks when no round finds a signal: nothing trained, no hang", "[trainer][distributed]") {
  std::vector<nlohmann::json> rows(2);
  std::vector<at::Tensor> thetas(2);
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy;
    auto options = toy_options(scratch("dynamic_none"));
    options.dynamic_sampling_rounds = 2;
    grpo::Trainer trainer(policy, grpo::RewardSet{[](const grpo::Sample&) { return 1.0f; }}, grpo::GroupNormalized{},
                          grpo::ClippedSurrogateLoss{}, toy_prompts(), options);
    trainer.distribute(comm);
    rows[static_cast<std::size_t>(r)] = trainer.step().to_json();
    thetas[static_cast<std::size_t>(r)] = policy.theta().detach().clone();
  });
  for (std::size_t r = 0; r < 2; ++r) {
    CHECK(rows[r]["dynamic_sampling"]["rounds"] == 2);
    CHECK(rows[r]["dynamic_sampling"]["groups_with_signal"].get<double>() == 0.0);
    CHECK(rows[r]["dynamic_sampling"]["groups_trained"].get<double>() == 0.0);
    CHECK(rows[r]["zero_variance_group_fraction"].get<double>() == 1.0);
    CHECK(rows[r]["updates"] == 0);
    CHECK(rows[r]["data_position"] == 4);  // two rounds of two prompts consumed
    CHECK(at::equal(thetas[r], at::zeros({5}, at::kDouble)));
  }
}
