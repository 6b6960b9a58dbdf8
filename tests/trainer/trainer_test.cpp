// Trainer tests with a policy whose gradient is known in closed form: each completion is T
// tokens drawn i.i.d. from softmax(theta) over a small alphabet, so
//   d/dtheta log p(o) = sum_t (onehot(o_t) - softmax(theta)),
// and one GRPO step's gradient (token-mean aggregation, ratio 1 on-policy) is
//   g = -(1 / N_tok) sum_i A_i sum_t (onehot(o_it) - softmax(theta)).
// Independent of the trainer: the expected numbers are computed here from the sampled tokens.
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <grpo/advantage/group_normalized.hpp>
#include <grpo/advantage/balanced.hpp>
#include <grpo/io/safetensors.hpp>
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/trainer/trainer.hpp>

#include "../catch_torch.hpp"
#include "trainer_fixtures.hpp"  // ToyPolicy, share_of_a, toy_prompts, toy_options, scratch

namespace fs = std::filesystem;
using namespace grpo_test;

TEST_CASE("one step moves theta against the closed-form GRPO gradient", "[trainer]") {
  ToyPolicy policy;
  grpo::RewardSet rewards{share_of_a};
  grpo::Trainer trainer(policy, std::move(rewards), grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), toy_options(scratch("grad")));
  // Reproduce the step's rollout and advantages independently of update().
  const auto dataset = toy_prompts();  // batch() points into it: keep it alive
  const auto batch = dataset.batch(0, 2);
  const grpo::Rollout r = trainer.rollout(batch, 0);
  const auto table = trainer.score(r);
  const auto adv = trainer.advantages(r, table);

  // Expected gradient, by hand: g_v = -(1/N_tok) sum_i A_i sum_t (1[o_it = v] - p_v), p = softmax(0) = 1/5.
  std::vector<double> g(5, 0.0);
  double tokens = 0;
  for (std::size_t i = 0; i < r.generations.size(); ++i) {
    for (auto id : r.generations[i].ids) {
      for (int v = 0; v < 5; ++v) g[static_cast<std::size_t>(v)] -= adv[i] * ((id == v ? 1.0 : 0.0) - 0.2);
      tokens += 1;
    }
  }
  for (auto& x : g) x /= tokens;

  const auto before = policy.theta().detach().clone();
  const auto selected = trainer.select_samples(r, adv);
  const grpo::UpdateStats stats = trainer.update(r, adv, selected);
  REQUIRE(stats.updates == 1);
  // Adam's first step is -lr * m_hat / (sqrt(v_hat) + eps) = -lr * g / (|g| + eps).
  const auto delta = policy.theta().detach() - before;
  for (int v = 0; v < 5; ++v) {
    const double expected = -0.1 * g[static_cast<std::size_t>(v)] / (std::abs(g[static_cast<std::size_t>(v)]) + 1e-8);
    CHECK(delta[v].item<double>() == Approx(expected).margin(1e-6));
  }
  CHECK(stats.grad_norm == Approx(std::sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2] + g[3] * g[3] + g[4] * g[4])).epsilon(1e-5));
  CHECK(stats.trained_tokens == static_cast<std::int64_t>(tokens));
}

namespace {
/// A field of /proc/self/status in GiB (VmRSS: resident now, VmHWM: the resident peak): the
/// kernel's own account, independent of getrusage.
double proc_status_gib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string key;
  double kib = -1;
  while (in >> key) {
    if (key == field + ":") {
      in >> kib;
      break;
    }
  }
  return kib / (1024.0 * 1024.0);
}
}  // namespace

TEST_CASE("the metrics row reports the host memory peak of the step", "[trainer]") {
  if (proc_status_gib("VmHWM") < 0) {
    WARN("no /proc/self/status here: nothing to compare with");
    return;
  }
  ToyPolicy policy;
  // A reward that touches 512 MiB of fresh memory mid-step and frees it again: the peak must
  // show it although nothing of it is resident when the row is written.
  auto heavy = [](const grpo::Sample& s) {
    static int calls = 0;
    if (calls++ > 0) return share_of_a(s);
    std::vector<char> block(std::size_t{512} << 20);
    std::memset(block.data(), 1, block.size());
    return static_cast<float>(block[block.size() / 2]) * share_of_a(s);
  };
  grpo::Trainer trainer(policy, grpo::RewardSet{heavy}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), toy_options(scratch("memory")));
  const double resident_before = proc_status_gib("VmRSS");
  const auto row = trainer.step().to_json();
  const double peak_after = proc_status_gib("VmHWM");
  REQUIRE(row["memory"].contains("host_rss_peak_gib"));
  const double reported = row["memory"]["host_rss_peak_gib"].get<double>();
  CHECK(reported >= resident_before + 0.45);  // the 0.5 GiB block was resident during the step
  CHECK(reported <= peak_after + 1e-3);
  CHECK_FALSE(row["memory"].contains("cuda_peak_allocated_gib"));  // a CPU policy reports no CUDA figures
}

TEST_CASE("micro-batching does not change the update", "[trainer]") {
  at::Tensor results[2];
  for (int variant = 0; variant < 2; ++variant) {
    ToyPolicy policy;
    auto options = toy_options(scratch("micro"));
    options.micro_batch_tokens = variant == 0 ? 1 << 20 : 7;  // one micro-batch vs one sequence each
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{},
                          grpo::ClippedSurrogateLoss{}, toy_prompts(), options);
    for (int s = 0; s < 3; ++s) trainer.step();
    results[variant] = policy.theta().detach().clone();
  }
  CHECK(at::allclose(results[0], results[1], 1e-12, 1e-12));
}

TEST_CASE("rewards rise: GRPO learns to write more 'a'", "[trainer]") {
  ToyPolicy policy(12);
  auto options = toy_options(scratch("learn"));
  options.steps = 30;
  options.prompts_per_step = 4;
  options.group_size = 8;
  grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), options);
  double first = 0, last = 0;
  for (int s = 0; s < 30; ++s) {
    const auto row = trainer.step().to_json();
    if (s < 3) first += row["reward"].get<double>() / 3;
    if (s >= 27) last += row["reward"].get<double>() / 3;
  }
  // p(a) starts at 1/5 = 0.2; 30 Adam steps of 0.1 on theta_a push it far above.
  CHECK(first == Approx(0.2).margin(0.1));
  CHECK(last > 0.6);
}

TEST_CASE("a resumed run reaches exactly the parameters of an uninterrupted one", "[trainer]") {
  const auto dir = scratch("resume");
  at::Tensor straight;
  {
    ToyPolicy policy;
    auto options = toy_options(dir / "straight");
    options.steps = 5;
    options.epochs = 2;       // pi_old recomputed; Adam moments matter
    options.mini_batches = 2;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{},
                          grpo::ClippedSurrogateLoss{}, toy_prompts(), options);
    trainer.train();
    straight = policy.theta().detach().clone();
  }
  {
    ToyPolicy policy;
    auto options = toy_options(dir / "interrupted");
    options.steps = 2;
    options.epochs = 2;
    options.mini_batches = 2;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{},
                          grpo::ClippedSurrogateLoss{}, toy_prompts(), options);
    trainer.train();  // saves at the end (step 2)
  }
  {
    ToyPolicy policy;  // fresh weights: everything must come from the checkpoint
    auto options = toy_options(dir / "interrupted");
    options.steps = 5;
    options.epochs = 2;
    options.mini_batches = 2;
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{},
                          grpo::ClippedSurrogateLoss{}, toy_prompts(), options);
    trainer.resume(dir / "interrupted");
    CHECK(trainer.step_index() == 2);
    trainer.train();
    CHECK(at::equal(policy.theta().detach(), straight));
  }
  // The metrics file of the resumed run has each step once.
  std::ifstream metrics(dir / "interrupted" / "metrics.jsonl");
  std::vector<std::int64_t> steps;
  for (std::string line; std::getline(metrics, line);) steps.push_back(nlohmann::json::parse(line)["step"].get<std::int64_t>());
  CHECK(steps == std::vector<std::int64_t>{1, 2, 3, 4, 5});
  fs::remove_all(dir);
}

TEST_CASE("master weights: a bf16 run resumed from its checkpoint continues bit for bit, masters included", "[trainer]") {
  // bf16 weights stepped through float32 masters; 2 steps, checkpoint, resume to 3, against 3 steps
  // straight. The checkpoint's masters are not the bf16 weights (they carry the bits below bf16's
  // resolution), so a resume that rebuilt them from the weights would not match.
  const auto dir = scratch("masters");
  auto configure = [&](const char* name, std::int64_t steps) {
    auto o = toy_options(dir / name);
    o.steps = steps;
    o.epochs = 2;
    o.mini_batches = 2;
    o.master_weights = true;
    return o;
  };
  auto run = [&](const char* name, std::int64_t steps, bool resume) {
    ToyPolicy policy(6, false, at::kBFloat16);
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(name, steps));
    if (resume) trainer.resume(dir / name);
    trainer.train();
    return policy.theta().detach().clone();
  };
  const at::Tensor straight = run("straight", 3, false);
  run("interrupted", 2, false);
  {
    const auto file = grpo::io::SafetensorsFile::open(dir / "interrupted" / "checkpoints" / "step-000002" / "optimizer.safetensors");
    const at::Tensor master = file.tensor("param.0.master");
    CHECK(master.scalar_type() == at::kFloat);
    CHECK(file.tensor("param.0.exp_avg").scalar_type() == at::kFloat);
    const auto policy = grpo::io::SafetensorsFile::open(dir / "interrupted" / "checkpoints" / "step-000002" / "policy" / "model.safetensors");
    const at::Tensor theta = policy.tensor("theta");
    CHECK(theta.scalar_type() == at::kBFloat16);
    CHECK(at::equal(master.to(at::kBFloat16), theta));  // the weights are the masters rounded
    CHECK_FALSE(at::equal(master, theta.to(at::kFloat)));
  }
  const at::Tensor resumed = run("interrupted", 3, true);
  CHECK(straight.scalar_type() == at::kBFloat16);
  CHECK_FALSE(at::equal(straight, at::zeros({5}, at::kBFloat16)));
  CHECK(at::equal(resumed, straight));
  const auto one = grpo::io::SafetensorsFile::open(dir / "straight" / "checkpoints" / "step-000003" / "optimizer.safetensors");
  const auto two = grpo::io::SafetensorsFile::open(dir / "interrupted" / "checkpoints" / "step-000003" / "optimizer.safetensors");
  CHECK(one.metadata() == two.metadata());
  for (const char* name : {"param.0.master", "param.0.exp_avg", "param.0.exp_avg_sq"}) CHECK(at::equal(one.tensor(name), two.tensor(name)));
  fs::remove_all(dir);
}

TEST_CASE("zero-variance groups are counted and can be filtered; truncated samples can be masked", "[trainer]") {
  ToyPolicy policy;
  auto options = toy_options(scratch("filter"));
  options.filter_zero_variance_groups = true;
  auto constant = [](const grpo::Sample&) { return 1.0f; };  // every group has equal rewards
  grpo::Trainer trainer(policy, grpo::RewardSet{constant}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), options);
  const auto before = policy.theta().detach().clone();
  const auto row = trainer.step().to_json();
  CHECK(row["zero_variance_group_fraction"].get<double>() == 1.0);
  CHECK(row["trained_samples"].get<std::int64_t>() == 0);
  CHECK(at::equal(policy.theta().detach(), before));  // nothing to learn, nothing changed
  // Balanced advantages over two rewards are also zero when both are constant per group.
  grpo::Trainer balanced(policy, grpo::RewardSet{constant, constant}, grpo::Balanced<2>{},
                         grpo::ClippedSurrogateLoss{}, toy_prompts(), options);
  CHECK(balanced.step().to_json()["zero_variance_group_fraction"].get<double>() == 1.0);
}

TEST_CASE("a NaN reward is counted, gets advantage 0, and does not stop the run", "[trainer]") {
  ToyPolicy policy;
  auto options = toy_options(scratch("nan"));
  int calls = 0;
  auto flaky = [&calls](const grpo::Sample& s) {  // the first sample of every batch scores NaN
    return calls++ % 8 == 0 ? std::numeric_limits<float>::quiet_NaN() : share_of_a(s);
  };
  grpo::Trainer trainer(policy, grpo::RewardSet{flaky}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), options);
  const auto dataset = toy_prompts();  // batch() points into it: keep it alive
  const auto batch = dataset.batch(0, 2);
  const grpo::Rollout r = trainer.rollout(batch, 0);
  const auto table = trainer.score(r);
  const auto adv = trainer.advantages(r, table);
  CHECK(std::isnan(table.row(0)[0]));
  CHECK(adv[0] == 0.0f);
  const auto row = trainer.step().to_json();
  CHECK(row["rewards"]["reward0"]["non_finite"].get<int>() == 1);
  CHECK(std::isfinite(row["loss"].get<double>()));
  CHECK(std::isfinite(policy.theta().detach().sum().item<double>()));
}

TEST_CASE("samples.jsonl holds each logged completion with its rewards and advantage", "[trainer]") {
  ToyPolicy policy;
  const auto dir = scratch("samples");
  auto options = toy_options(dir);
  options.steps = 3;
  options.log_samples_every = 2;      // steps 1 and 3 are logged
  options.log_samples_per_group = 4;  // the whole group (G = 4)
  grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), options);
  trainer.train();
  std::ifstream in(dir / "samples.jsonl");
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 2 * 2 * 4);  // steps 1 and 3 x 2 prompts x 4 completions
  for (std::size_t g = 0; g < 4; ++g) {
    // Rewards recomputed here from the completion text (the share of 'a'), then the group's
    // advantages by hand: (r - mean) / (sample std + 1e-6), 0 for an all-equal group.
    std::vector<double> r;
    for (std::size_t i = 0; i < 4; ++i) {
      const auto& row = rows[g * 4 + i];
      CHECK(row["step"] == (g < 2 ? 1 : 3));
      CHECK(row["group"] == g % 2);
      CHECK(row["completion_tokens"] == 6);
      const std::string text = row["completion"];
      r.push_back(static_cast<double>(std::count(text.begin(), text.end(), 'a')) / 6.0);
      REQUIRE(row["rewards"].size() == 1);
      CHECK(row["rewards"].begin()->get<double>() == Approx(r.back()));
    }
    const double mean = (r[0] + r[1] + r[2] + r[3]) / 4.0;
    double ss = 0;
    for (double x : r) ss += (x - mean) * (x - mean);
    const double sd = std::sqrt(ss / 3.0);
    for (std::size_t i = 0; i < 4; ++i) {
      const double expected = ss == 0 ? 0.0 : (r[i] - mean) / (sd + 1e-6);
      CHECK(rows[g * 4 + i]["advantage"].get<double>() == Approx(expected).margin(1e-5));
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("a frozen tensor keeps its value and its optimizer state out; the rest takes the same step", "[trainer]") {
  // Reference: the one-tensor policy. With phi frozen at 0 the two-tensor policy has the same
  // logits, so theta must take exactly the one-tensor policy's steps (gradient norm included).
  ToyPolicy single;
  grpo::Trainer reference(single, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), toy_options(scratch("freeze_ref")));
  ToyPolicy both(6, /*with_phi=*/true);
  const std::vector<std::string> patterns{"p.i"};
  CHECK(grpo::freeze_parameters(both, patterns) == std::vector<std::string>{"phi"});
  CHECK_FALSE(both.phi().requires_grad());
  CHECK(both.theta().requires_grad());
  const auto dir = scratch("freeze");
  grpo::Trainer trainer(both, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), toy_options(dir));
  for (int s = 0; s < 3; ++s) {
    const auto expected = reference.step().to_json();
    const auto row = trainer.step().to_json();
    CHECK(row["grad_norm"].get<double>() == Approx(expected["grad_norm"].get<double>()).epsilon(1e-12));
  }
  CHECK(at::equal(both.phi().detach(), at::zeros({5}, at::kDouble)));
  CHECK(at::allclose(both.theta().detach(), single.theta().detach(), 1e-12, 1e-12));
  // Its checkpoint holds AdamW moments for theta alone, and a resume with phi frozen again works.
  const auto saved = trainer.save_checkpoint();
  const auto optimizer = grpo::io::SafetensorsFile::open(saved / "optimizer.safetensors");
  CHECK(optimizer.metadata().at("params") == "1");
  ToyPolicy again(6, true);
  grpo::freeze_parameters(again, patterns);
  auto more = toy_options(dir);
  more.steps = 4;
  grpo::Trainer resumed(again, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), more);
  resumed.resume(dir);
  CHECK(at::equal(again.theta().detach(), both.theta().detach()));
  // The next step uses the restored moments: it equals the uninterrupted run's next step.
  reference.step();
  resumed.step();
  CHECK(at::allclose(again.theta().detach(), single.theta().detach(), 1e-12, 1e-12));
  // Another frozen set with the same count (theta frozen, phi trained) is refused, naming both.
  ToyPolicy other(6, true);
  const std::vector<std::string> theta_only{"theta"};
  grpo::freeze_parameters(other, theta_only);
  grpo::Trainer mismatched(other, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                           toy_prompts(), toy_options(dir));
  CHECK_THROWS_WITH(mismatched.resume(dir), Catch::Contains("the checkpoint trained: theta; this run trains: phi") &&
                                                Catch::Contains("same frozen parameters"));
  fs::remove_all(dir);
  fs::remove_all(scratch("freeze_ref"));
}

TEST_CASE("freeze patterns that match nothing, are invalid, or freeze everything are errors", "[trainer]") {
  ToyPolicy policy(6, true);
  const std::vector<std::string> typo{"theta", "embed_tokens"};
  CHECK_THROWS_WITH(grpo::freeze_parameters(policy, typo), Catch::Contains("\"embed_tokens\" matches no parameter") &&
                                                              Catch::Contains("theta, phi"));
  CHECK(policy.theta().requires_grad());  // an error leaves the policy as it was
  const std::vector<std::string> invalid{"(unclosed"};
  CHECK_THROWS_WITH(grpo::freeze_parameters(policy, invalid), Catch::Contains("not a valid regular expression"));
  const std::vector<std::string> all{".*"};
  CHECK(grpo::freeze_parameters(policy, all).size() == 2);
  CHECK_THROWS_WITH(grpo::Trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{},
                                  grpo::ClippedSurrogateLoss{}, toy_prompts(), toy_options(scratch("frozen_all"))),
                    Catch::Contains("all frozen"));
  fs::remove_all(scratch("frozen_all"));
}

TEST_CASE("the metrics compare the sampler's log-probs with the trainer's on the same weights", "[trainer]") {
  // theta = 0 at step 1: every token has p = 1/5 under the trainer. A sampler that records
  // log p + 0.05 is off by 0.05 in log-prob and by 0.2 (e^0.05 - 1) in probability on every token.
  const double expected_prob = 0.2 * (std::exp(0.05) - 1.0);
  for (const bool recompute : {false, true}) {  // one update (automatic), and pi_old recomputed first
    for (const double bias : {0.0, 0.05}) {
      ToyPolicy policy;
      policy.sampler_bias = bias;
      auto options = toy_options(scratch("mismatch"));
      if (recompute) options.old_logprobs = grpo::OldLogprobSource::recompute;
      grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                            toy_prompts(), options);
      const auto row = trainer.step().to_json();
      const auto& m = row["sampler_mismatch"];
      CHECK(m["logprob_diff_mean"].get<double>() == Approx(bias).margin(1e-6));
      CHECK(m["prob_diff_mean"].get<double>() == Approx(bias == 0 ? 0.0 : expected_prob).margin(1e-6));
      CHECK(m["prob_diff_max"].get<double>() == Approx(bias == 0 ? 0.0 : expected_prob).margin(1e-6));
      CHECK(m["tokens"] == 2 * 4 * 6);  // every completion token of the step
    }
  }
  // A sampler that records no log-probs: nothing is compared (not a mismatch of 1 - p).
  ToyPolicy silent;
  silent.record_logprobs = false;
  grpo::Trainer trainer(silent, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), toy_options(scratch("mismatch")));
  const auto row = trainer.step().to_json();
  CHECK(row["sampler_mismatch"]["tokens"] == 0);
  CHECK(row["sampler_mismatch"]["prob_diff_mean"] == 0.0);
}

namespace {
/// Reward: 1 if the completion has an 'a', else 0 (about 30 % of 4-sample groups are all 1 at p(a) = 0.2).
float has_a(const grpo::Sample& s) { return s.completion.find('a') == std::string::npos ? 0.0f : 1.0f; }
}  // namespace

TEST_CASE("dynamic sampling keeps drawing until prompts_per_step groups have a signal", "[trainer]") {
  const auto dir = scratch("dynamic");
  auto options = toy_options(dir);
  options.prompts_per_step = 3;
  options.dynamic_sampling_rounds = 6;
  options.log_samples_every = 1;
  options.log_samples_per_group = 4;  // every sample of every trained group
  options.steps = 2;
  // Reference: the rounds redone by hand through the public phases of an identical trainer; a
  // group has a signal when its 0/1 rewards are not all equal.
  ToyPolicy twin;
  grpo::Trainer reference(twin, grpo::RewardSet{has_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), options);
  std::vector<std::string> expected;  // completions of the kept groups, in order
  std::int64_t expected_rounds = 0;
  const auto dataset = toy_prompts();  // batch() points into it: keep it alive
  double with_signal = 0;
  for (std::int64_t round = 0; expected.size() < 3 * 4 && round < 6; ++round, ++expected_rounds) {
    const auto batch = dataset.batch(static_cast<std::uint64_t>(round) * 3, 3);
    const grpo::Rollout r = reference.rollout(batch, 0, static_cast<std::uint64_t>(round) * 3 * 4);
    for (std::size_t g = 0; g < 3; ++g) {
      std::set<bool> values;
      for (std::size_t j = 0; j < 4; ++j) values.insert(r.generations[g * 4 + j].text.find('a') != std::string::npos);
      if (values.size() < 2) continue;
      ++with_signal;
      if (expected.size() < 3 * 4)
        for (std::size_t j = 0; j < 4; ++j) expected.push_back(r.generations[g * 4 + j].text);
    }
  }
  REQUIRE(expected.size() == 3 * 4);
  REQUIRE(expected_rounds > 1);  // the seed makes step 1 need more than one round

  ToyPolicy policy;
  grpo::Trainer trainer(policy, grpo::RewardSet{has_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), options);
  const auto row = trainer.step().to_json();
  CHECK(row["dynamic_sampling"]["rounds"] == expected_rounds);
  CHECK(row["dynamic_sampling"]["groups_drawn"].get<double>() == 3.0 * static_cast<double>(expected_rounds));
  CHECK(row["dynamic_sampling"]["groups_with_signal"].get<double>() == with_signal);
  CHECK(row["dynamic_sampling"]["groups_trained"].get<double>() == 3.0);
  CHECK(row["zero_variance_group_fraction"].get<double>() ==
        Approx(1.0 - with_signal / (3.0 * static_cast<double>(expected_rounds))));
  CHECK(row["rewards"]["reward0"]["zero_std_group_fraction"].get<double>() == 0.0);
  CHECK(row["trained_samples"] == 12);
  CHECK(row["data_position"] == 3 * expected_rounds);  // every drawn prompt is consumed
  fs::create_directories(dir);
  std::filesystem::remove(dir / "samples.jsonl");
  {
    // The completions table of step 1 lists exactly the kept groups' completions, in order.
    ToyPolicy again;
    grpo::Trainer logged(again, grpo::RewardSet{has_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                         toy_prompts(), options);
    logged.train();
    std::ifstream in(dir / "samples.jsonl");
    std::vector<std::string> completions;
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j["step"] == 1) completions.push_back(j["completion"]);
    }
    CHECK(completions == expected);
  }
  fs::remove_all(dir);
}

TEST_CASE("a reward's per-sample metrics are reported as their step mean; a reward without any adds no key",
          "[trainer]") {
  ToyPolicy policy;
  grpo::Trainer trainer(policy, grpo::RewardSet{ShareOfA{}}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), toy_options(scratch("sample_metrics")));
  // Step 1's samples, reproduced independently of step() (seeds derive from the step).
  const auto dataset = toy_prompts();
  const auto batch = dataset.batch(0, 2);
  const grpo::Rollout r = trainer.rollout(batch, 0);
  double letters = 0;
  for (const auto& s : r.samples) letters += static_cast<double>(std::count(s.completion.begin(), s.completion.end(), 'a'));
  REQUIRE(letters > 0);
  const auto row = trainer.step().to_json();
  CHECK(row["a_letters_mean"].get<double>() == Approx(letters / static_cast<double>(r.samples.size())));
  CHECK(row["rewards"].contains("share_of_a"));

  ToyPolicy other;
  grpo::Trainer plain(other, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                      toy_prompts(), toy_options(scratch("no_sample_metrics")));
  const auto plain_row = plain.step().to_json();
  for (const char* key : {"a_letters_mean", "answer_words_mean", "well_formed_fraction", "repetition_mean"})
    CHECK_FALSE(plain_row.contains(key));
}

TEST_CASE("a checkpoint a kill cut short leaves no staging folder once the run trains again", "[trainer]") {
  const auto out = scratch("leftovers");
  auto options = toy_options(out);
  options.steps = 1;
  fs::create_directories(out / "checkpoints" / ".step-000007.staging-k1ll3d" / "policy");  // what SIGKILL leaves
  std::ofstream(out / "checkpoints" / ".step-000007.staging-k1ll3d" / "policy" / "theta.bin") << "partial";
  ToyPolicy policy;
  grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), options);
  trainer.train();
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(out / "checkpoints")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"latest", "step-000001"});
  fs::remove_all(out);
}
