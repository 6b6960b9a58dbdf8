// Trainer tests with a policy whose gradient is known in closed form: each completion is T
// tokens drawn i.i.d. from softmax(theta) over a small alphabet, so
//   d/dtheta log p(o) = sum_t (onehot(o_t) - softmax(theta)),
// and one GRPO step's gradient (token-mean aggregation, ratio 1 on-policy) is
//   g = -(1 / N_tok) sum_i A_i sum_t (onehot(o_it) - softmax(theta)).
// Independent of the trainer: the expected numbers are computed here from the sampled tokens.
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/module.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <grpo/advantage/group_normalized.hpp>
#include <grpo/advantage/balanced.hpp>
#include <grpo/io/safetensors.hpp>
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/trainer/trainer.hpp>

#include "../catch_torch.hpp"

namespace {

namespace fs = std::filesystem;

/// A categorical "language model" over the letters a..e with no context: logits theta (+ phi,
/// a second tensor of the same role, when constructed with_phi).
class ToyPolicy {
 public:
  explicit ToyPolicy(std::int64_t length = 6, bool with_phi = false) : length_(length) {
    theta_ = at::zeros({5}, at::kDouble).set_requires_grad(true);
    if (with_phi) phi_ = at::zeros({5}, at::kDouble).set_requires_grad(true);
  }

  std::vector<grpo::Generation> generate(std::span<const std::string> prompts, const grpo::SamplingOptions& options) {
    std::vector<grpo::Generation> out;
    const auto probs = at::softmax(logits().detach(), 0);
    std::vector<double> p(probs.data_ptr<double>(), probs.data_ptr<double>() + 5);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      std::mt19937_64 rng(options.seed + i);
      std::discrete_distribution<int> pick(p.begin(), p.end());
      grpo::Generation g;
      g.prompt_ids = {7};  // a one-token prompt
      for (std::int64_t t = 0; t < length_; ++t) {
        const int token = pick(rng);
        g.ids.push_back(token);
        g.text.push_back(static_cast<char>('a' + token));
        g.logprobs.push_back(static_cast<float>(std::log(p[static_cast<std::size_t>(token)])));
      }
      g.finish_reason = grpo::FinishReason::stop;
      out.push_back(std::move(g));
    }
    return out;
  }

  grpo::TokenLogprobs logprobs(const grpo::TokenBatch& batch, double temperature) {
    REQUIRE(temperature == 1.0);
    const auto logp = at::log_softmax(logits(), 0);                  // [5]
    const auto ids = batch.input_ids.clamp(0, 4);                    // prompt id 7 is masked anyway
    auto out = logp.index_select(0, ids.reshape({-1})).reshape(ids.sizes());
    out = out * batch.completion_mask.to(at::kDouble);
    return {out.to(at::kFloat), at::Tensor()};
  }

  std::vector<at::Tensor> parameters() {
    if (phi_.defined()) return {theta_, phi_};
    return {theta_};
  }
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() {
    if (phi_.defined()) return {{"theta", theta_}, {"phi", phi_}};
    return {{"theta", theta_}};
  }
  void save_pretrained(const fs::path& dir) {
    fs::create_directories(dir);
    grpo::io::NamedTensors tensors{{"theta", theta_.detach()}};
    if (phi_.defined()) tensors.emplace_back("phi", phi_.detach());
    grpo::io::save_safetensors(dir / "model.safetensors", tensors);
  }

  at::Tensor& theta() { return theta_; }
  at::Tensor& phi() { return phi_; }

 private:
  at::Tensor logits() const { return phi_.defined() ? theta_ + phi_ : theta_; }

  std::int64_t length_;
  at::Tensor theta_;
  at::Tensor phi_;
};
static_assert(grpo::CheckpointablePolicy<ToyPolicy>);

/// Reward: the fraction of 'a' in the completion.
float share_of_a(const grpo::Sample& s) {
  if (s.completion.empty()) return 0.0f;
  return static_cast<float>(std::count(s.completion.begin(), s.completion.end(), 'a')) /
         static_cast<float>(s.completion.size());
}

grpo::PromptDataset toy_prompts() {
  std::vector<grpo::PromptRecord> records;
  for (int i = 0; i < 8; ++i) records.push_back({"prompt " + std::to_string(i), {10, 20}, "file"});
  return grpo::PromptDataset(std::move(records), 3);
}

grpo::TrainerOptions toy_options(const fs::path& out) {
  grpo::TrainerOptions o;
  o.steps = 4;
  o.prompts_per_step = 2;
  o.group_size = 4;
  o.sampling = {.temperature = 1.0, .max_new_tokens = 6};
  o.prompt.style = grpo::PromptTemplate::direct;
  o.lr = {.peak = 0.1};
  o.max_grad_norm = 0;  // no clipping: the update is pure Adam
  o.output_dir = out;
  o.save_every = 0;
  o.log_samples_every = 0;
  o.progress = false;
  o.seed = 11;
  return o;
}

fs::path scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("grpo_trainer_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

}  // namespace

TEST_CASE("one step moves theta against the closed-form GRPO gradient", "[trainer]") {
  ToyPolicy policy;
  grpo::RewardSet rewards{share_of_a};
  grpo::Trainer trainer(policy, std::move(rewards), grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), toy_options(scratch("grad")));
  // Reproduce the step's rollout and advantages independently of update().
  const auto batch = toy_prompts().batch(0, 2);
  const grpo::Rollout r = trainer.rollout(batch, 0);
  const auto table = trainer.score(r);
  const auto adv = trainer.advantages(table);

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
  const auto row = trainer.step();
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
    const auto row = trainer.step();
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

TEST_CASE("zero-variance groups are counted and can be filtered; truncated samples can be masked", "[trainer]") {
  ToyPolicy policy;
  auto options = toy_options(scratch("filter"));
  options.filter_zero_variance_groups = true;
  auto constant = [](const grpo::Sample&) { return 1.0f; };  // every group has equal rewards
  grpo::Trainer trainer(policy, grpo::RewardSet{constant}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                        toy_prompts(), options);
  const auto before = policy.theta().detach().clone();
  const auto row = trainer.step();
  CHECK(row["zero_variance_group_fraction"].get<double>() == 1.0);
  CHECK(row["trained_samples"].get<std::int64_t>() == 0);
  CHECK(at::equal(policy.theta().detach(), before));  // nothing to learn, nothing changed
  // Balanced advantages over two rewards are also zero when both are constant per group.
  grpo::Trainer balanced(policy, grpo::RewardSet{constant, constant}, grpo::Balanced<2>{},
                         grpo::ClippedSurrogateLoss{}, toy_prompts(), options);
  CHECK(balanced.step()["zero_variance_group_fraction"].get<double>() == 1.0);
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
  const auto batch = toy_prompts().batch(0, 2);
  const grpo::Rollout r = trainer.rollout(batch, 0);
  const auto table = trainer.score(r);
  const auto adv = trainer.advantages(table);
  CHECK(std::isnan(table.row(0)[0]));
  CHECK(adv[0] == 0.0f);
  const auto row = trainer.step();
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
    const auto expected = reference.step();
    const auto row = trainer.step();
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
