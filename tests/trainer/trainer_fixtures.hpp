#pragma once
// The closed-form toy policy and rewards of the trainer tests, shared by tests/trainer/ and
// tests/distributed/ (the data-parallel runs are checked against the same policy in one process).
// Each completion is T tokens drawn i.i.d. from softmax(theta) over the letters a..e, so
//   d/dtheta log p(o) = sum_t (onehot(o_t) - softmax(theta)).
#include <array>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/zeros.h>

#include <unistd.h>  // getpid

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <grpo/io/safetensors.hpp>
#include <grpo/trainer/trainer.hpp>

namespace grpo_test {

namespace fs = std::filesystem;

/// A categorical "language model" over the letters a..e with no context: logits theta (+ phi,
/// a second tensor of the same role, when constructed with_phi), stored in `dtype` (float64 by
/// default; bfloat16 for master-weight runs) and computed with in float64.
class ToyPolicy {
 public:
  explicit ToyPolicy(std::int64_t length = 6, bool with_phi = false, at::ScalarType dtype = at::kDouble)
      : length_(length) {
    theta_ = at::zeros({5}, dtype).set_requires_grad(true);
    if (with_phi) phi_ = at::zeros({5}, dtype).set_requires_grad(true);
  }

  std::vector<grpo::Generation> generate(std::span<const std::string> prompts, const grpo::SamplingOptions& options) {
    std::vector<grpo::Generation> out;
    const auto probs = at::softmax(logits().detach().to(at::kDouble), 0);
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
    const auto logp = at::log_softmax(logits().to(at::kDouble), 0);  // [5]
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
inline float share_of_a(const grpo::Sample& s) {
  if (s.completion.empty()) return 0.0f;
  return static_cast<float>(std::count(s.completion.begin(), s.completion.end(), 'a')) /
         static_cast<float>(s.completion.size());
}

/// share_of_a as a reward that also reports a per-sample metric (customization_points.hpp): the
/// number of 'a' letters, whose step mean the trainer reports as "a_letters_mean".
struct ShareOfA {
  static constexpr std::array<grpo::SampleMetricName, 1> sample_metric_names{{{"a_letters", "a_letters_mean"}}};
  [[nodiscard]] std::string_view name() const { return "share_of_a"; }
  float operator()(const grpo::Sample& s) const { return share_of_a(s); }
  void sample_metrics(const grpo::Sample& s, std::span<double> out) const {
    out[0] = static_cast<double>(std::count(s.completion.begin(), s.completion.end(), 'a'));
  }
};

inline grpo::PromptDataset toy_prompts() {
  std::vector<grpo::PromptRecord> records;
  for (int i = 0; i < 8; ++i) records.push_back({"prompt " + std::to_string(i), {10, 20}, "file"});
  return grpo::PromptDataset(std::move(records), 3);
}

inline grpo::TrainerOptions toy_options(const fs::path& out) {
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
  o.seed = 11;
  return o;
}

inline fs::path scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("grpo_trainer_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

}  // namespace grpo_test
