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
#include <atomic>
#include <chrono>
#include <exception>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <grpo/advantage/group_normalized.hpp>
#include <grpo/distributed/process_group.hpp>
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
        if (record_logprobs) g.logprobs.push_back(static_cast<float>(std::log(p[static_cast<std::size_t>(token)]) + sampler_bias));
      }
      g.finish_reason = grpo::FinishReason::stop;
      out.push_back(std::move(g));
    }
    return out;
  }

  grpo::TokenLogprobs logprobs(const grpo::TokenBatch& batch, double temperature) {
    if (temperature != 1.0) throw std::logic_error("ToyPolicy: temperature must be 1");  // may run on a worker thread
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
  double sampler_bias = 0.0;  ///< added to the log-probs generate() records (a sampler that disagrees)
  bool record_logprobs = true;  ///< false: a sampler that records none
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
  const auto dataset = toy_prompts();  // batch() points into it: keep it alive
  const auto batch = dataset.batch(0, 2);
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
  const auto dataset = toy_prompts();  // batch() points into it: keep it alive
  const auto batch = dataset.batch(0, 2);
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

// ---- data parallel --------------------------------------------------------------------------
// W ranks of one Gloo process group in one process: each rank is a thread with its own
// ProcessGroupGloo over a shared c10d::HashStore (what TCPStore is across processes). The
// reference for every number is arithmetic by hand or the same run in one process.

namespace {

/// Runs body(rank, communicator) on `world` threads, each a rank of one Gloo group; rethrows the
/// first exception of any rank.
template <class Body>
void run_ranks(int world, Body body) {
  // c10d's flight recorder (a process-wide log of collectives for debugging hangs) is not safe
  // for several process groups enqueueing from different threads of one process (it crashed in
  // recordWithResetEnabled here); real ranks are processes. Off for the threaded test ranks.
  ::setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/1);
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto options = c10d::ProcessGroupGloo::Options::create_default(std::chrono::seconds(60));
        auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, r, world, options);
        auto comm = std::make_shared<grpo::ProcessGroupCommunicator>(backend, c10::Device(c10::kCPU), store);
        body(r, comm);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Sets (or unsets) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("collectives: bucketed sums, broadcast, gather and gradient sums over 3 ranks", "[trainer][distributed]") {
  constexpr int W = 3;
  std::vector<at::Tensor> sums(W), bf16(W), gathered(W), broadcasted(W), grads_a(W), grads_b(W), grads_c(W);
  std::vector<std::vector<double>> host(W);
  run_ranks(W, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    const auto i = static_cast<std::size_t>(r);
    // Rank r holds r + 1 in every element; 40-byte buckets split the 3 float tensors, then bf16 and
    // float64 start buckets of their own.
    std::vector<at::Tensor> ts{at::full({3}, r + 1.0, at::kFloat), at::full({2, 4}, r + 1.0, at::kFloat),
                               at::full({5}, r + 1.0, at::kFloat), at::full({4}, r + 1.0, at::kBFloat16),
                               at::full({2}, r + 1.0, at::kDouble)};
    grpo::all_reduce_sum(*comm, ts, /*bucket_bytes=*/40);
    sums[i] = at::cat({ts[0], ts[1].reshape({-1}), ts[2], ts[4].to(at::kFloat)});
    bf16[i] = ts[3];
    host[i] = grpo::all_reduce_sum(*comm, std::vector<double>{0.5 * r, 1.0});
    gathered[i] = comm->all_gather(at::full({2, 2}, static_cast<double>(r), at::kDouble));
    std::vector<at::Tensor> b{at::full({3}, 10.0 * (r + 1), at::kFloat)};
    grpo::broadcast(*comm, b, /*root=*/0);
    broadcasted[i] = b[0];
    // Gradients: a has one on every rank, b only on rank 1, c on none.
    auto a = at::zeros({2}, at::kFloat).set_requires_grad(true);
    auto bp = at::zeros({2}, at::kFloat).set_requires_grad(true);
    auto c = at::zeros({2}, at::kFloat).set_requires_grad(true);
    (a * (r + 1.0)).sum().backward();
    if (r == 1) (bp * 7.0).sum().backward();
    std::vector<at::Tensor> params{a, bp, c};
    grpo::synchronize_gradients(*comm, params);
    grads_a[i] = a.grad();
    grads_b[i] = bp.grad();
    grads_c[i] = c.grad();
  });
  for (std::size_t i = 0; i < W; ++i) {
    CHECK(at::equal(sums[i], at::full({3 + 8 + 5 + 2}, 6.0, at::kFloat)));  // 1 + 2 + 3
    CHECK(bf16[i].scalar_type() == at::kBFloat16);
    CHECK(at::equal(bf16[i].to(at::kFloat), at::full({4}, 6.0, at::kFloat)));
    CHECK(host[i] == std::vector<double>{1.5, 3.0});
    CHECK(at::equal(gathered[i], at::tensor({0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0}, at::kDouble).reshape({6, 2})));
    CHECK(at::equal(broadcasted[i], at::full({3}, 10.0, at::kFloat)));
    CHECK(at::equal(grads_a[i], at::full({2}, 6.0, at::kFloat)));
    REQUIRE(grads_b[i].defined());  // rank 0 and 2 had none: they receive rank 1's
    CHECK(at::equal(grads_b[i], at::full({2}, 7.0, at::kFloat)));
    CHECK_FALSE(grads_c[i].defined());  // no rank had one: AdamW must still skip it
  }
}

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
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "single"));
    for (int s = 0; s < 3; ++s) single_rows.push_back(trainer.step());
    single_theta = policy.theta().detach().clone();
  }
  std::vector<at::Tensor> thetas(2);
  std::vector<std::vector<nlohmann::json>> rows(2);
  run_ranks(2, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    ToyPolicy policy;
    if (r == 1) policy.theta().detach().copy_(at::tensor({3.0, -1.0, 0.5, 2.0, -2.0}, at::kDouble));  // replaced by rank 0's
    grpo::Trainer trainer(policy, grpo::RewardSet{share_of_a}, grpo::GroupNormalized{}, grpo::ClippedSurrogateLoss{},
                          toy_prompts(), configure(dir / "dp"));
    trainer.distribute(comm);
    if (trainer.world_size() != 2 || trainer.rank() != r) throw std::logic_error("rank/world not taken from the communicator");
    for (int s = 0; s < 3; ++s) rows[static_cast<std::size_t>(r)].push_back(trainer.step());
    thetas[static_cast<std::size_t>(r)] = policy.theta().detach().clone();
  });
  CHECK(at::equal(thetas[0], thetas[1]));  // the replicas stay identical
  CHECK(at::allclose(thetas[0], single_theta, 0, 1e-12));
  CHECK_FALSE(at::allclose(single_theta, at::zeros({5}, at::kDouble)));
  for (std::size_t s = 0; s < 3; ++s) {
    const auto& one = single_rows[s];
    for (const auto& dp : {rows[0][s], rows[1][s]}) {
      // Gathered over ranks: the same samples, so the same statistics.
      for (const char* key : {"reward", "zero_variance_group_fraction", "answer_words_mean", "truncated_fraction"})
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

TEST_CASE("barrier_without_timeout waits for the last rank", "[trainer][distributed]") {
  std::atomic<bool> late_rank_arrived{false};
  std::vector<int> saw(3, 0);  // not vector<bool>: its bits share bytes across threads
  run_ranks(3, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    if (r == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the others are already waiting
      late_rank_arrived = true;
    }
    comm->barrier_without_timeout();
    saw[static_cast<std::size_t>(r)] = late_rank_arrived.load() ? 1 : 0;
    comm->barrier_without_timeout();  // a second use is a new barrier
  });
  CHECK(saw == std::vector<int>{1, 1, 1});
}

TEST_CASE("LaunchEnv reads torchrun's variables and names a bad one", "[trainer][distributed]") {
  {
    ScopedEnv w("WORLD_SIZE", nullptr);
    const auto env = grpo::LaunchEnv::from_environment();
    CHECK(env.world_size == 1);
    CHECK_FALSE(env.distributed());
    CHECK(grpo::init_process_group(env, c10::Device(c10::kCPU)) == nullptr);
  }
  {
    ScopedEnv w("WORLD_SIZE", "4"), r("RANK", "3"), l("LOCAL_RANK", "1"), lw("LOCAL_WORLD_SIZE", "2"),
        a("MASTER_ADDR", "10.0.0.7"), p("MASTER_PORT", "29501"), s("TORCHELASTIC_USE_AGENT_STORE", "True"),
        c("TORCHELASTIC_RESTART_COUNT", "2");
    const auto env = grpo::LaunchEnv::from_environment();
    CHECK(env.world_size == 4);
    CHECK(env.rank == 3);
    CHECK(env.local_rank == 1);
    CHECK(env.local_world_size == 2);
    CHECK(env.master_addr == "10.0.0.7");
    CHECK(env.master_port == 29501);
    CHECK(env.agent_store);
    CHECK(env.restart_count == 2);
  }
  auto message = [] {
    try {
      (void)grpo::LaunchEnv::from_environment();
    } catch (const grpo::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "2"), a("MASTER_ADDR", "h"), p("MASTER_PORT", "1");
    CHECK_THAT(message(), Catch::Contains("RANK") && Catch::Contains("[0, 1]") && Catch::Contains("found 2"));
  }
  {
    ScopedEnv w("WORLD_SIZE", "two");
    CHECK_THAT(message(), Catch::Contains("WORLD_SIZE") && Catch::Contains("\"two\""));
  }
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "0"), a("MASTER_ADDR", nullptr);
    CHECK_THAT(message(), Catch::Contains("MASTER_ADDR") && Catch::Contains("torchrun"));
  }
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", nullptr);
    CHECK_THAT(message(), Catch::Contains("RANK: not set"));
  }
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "0"), a("MASTER_ADDR", "h"), p("MASTER_PORT", "70000");
    CHECK_THAT(message(), Catch::Contains("MASTER_PORT") && Catch::Contains("65535"));
  }
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
    CHECK(trainer.optimizer().state().size() == 2);
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
    held[static_cast<std::size_t>(r)] = trainer.optimizer().param_groups().front().params().size();
    states[static_cast<std::size_t>(r)] = trainer.optimizer().state().size();
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

TEST_CASE("shard_owners balances elements and is the same on every rank", "[trainer][distributed]") {
  const std::vector<at::Tensor> params{at::zeros({10}), at::zeros({3}), at::zeros({7}), at::zeros({3}), at::zeros({1})};
  // Largest first to the least-loaded rank: 10 -> r0, 7 -> r1, 3 -> r1 (7 < 10), 3 -> r0 (a tie: the lower
  // rank), 1 -> r1 (10 < 13).
  CHECK(grpo::shard_owners(params, 2) == std::vector<int>{0, 1, 1, 0, 1});
  CHECK(grpo::shard_owners(params, 1) == std::vector<int>{0, 0, 0, 0, 0});
  CHECK(grpo::shard_owners(params, 8) == std::vector<int>{0, 2, 1, 3, 4});
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
      const auto row = trainer.step();
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
  const auto row = trainer.step();
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
  const auto row = trainer.step();
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
    rows[static_cast<std::size_t>(r)] = trainer.step();
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
