// train_supervised (trainer/sft.hpp) on a tiny random Qwen2 with the shipped Qwen2.5 tokenizer.
// The references are computed here, independently of the policy's chunked log-prob path:
//   loss = -(1 / N_c) sum_{completion tokens t} log softmax(logits_{t-1})[id_t]
// from the model's full logits and plain ATen log_softmax, each example on its own (no padding);
// N_c counts the completion tokens (stop ids included) of the whole batch, prompt tokens none.
// AdamW's first step (bias-corrected m = g, v = g^2) is p <- p (1 - lr wd) - lr g / (|g| + eps).
#include <ATen/ops/equal.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <grpo/model/qwen2.hpp>
#include <grpo/model/qwen2_policy.hpp>
#include <grpo/tokenizer/tokenizer.hpp>
#include <grpo/trainer/sft.hpp>

#include "../catch_torch.hpp"

namespace {

constexpr std::int64_t endoftext = 151643;  // Qwen2.5's <|endoftext|>, the stop id appended to completions

const grpo::Tokenizer& qwen_tokenizer() {
  static const grpo::Tokenizer tokenizer =
      grpo::Tokenizer::from_file(std::filesystem::path(GRPO_SOURCE_DIR) / "examples/data/qwen2.5-tokenizer");
  return tokenizer;
}

/// One decoder layer, hidden 16, the real vocabulary (tied embedding). A wide initialisation
/// (std 0.5) makes the predictive distributions far from uniform, so a wrong mask shows.
grpo::Qwen2Model tiny_model(std::uint64_t seed) {
  grpo::Qwen2Config config;
  config.vocab_size = 151936;
  config.hidden_size = 16;
  config.intermediate_size = 32;
  config.num_hidden_layers = 1;
  config.num_attention_heads = 2;
  config.num_key_value_heads = 1;
  config.max_position_embeddings = 128;
  config.tie_word_embeddings = true;
  config.initializer_range = 0.5;
  torch::manual_seed(seed);
  return grpo::Qwen2Model(config);
}

const std::vector<grpo::SftExample> examples{
    {"<|im_start|>user\nGreet me.<|im_end|>\n<|im_start|>assistant\n", "Hello there, friend."},
    {"<|im_start|>user\nName a colour in one word, please.<|im_end|>\n<|im_start|>assistant\n", "Blue."},
};

/// The reference loss over `examples` (prompt ids with specials, completion ids + <|endoftext|>):
/// sums of -log p over the completion tokens (or, with include_prompt, over every predicted token)
/// divided by their count.
at::Tensor reference_nll(grpo::Qwen2Model& model, bool include_prompt = false) {
  at::Tensor total = at::zeros({}, at::kFloat);
  std::int64_t count = 0;
  for (const auto& e : examples) {
    const auto prompt = qwen_tokenizer().encode(e.prompt, /*allow_special=*/true);
    auto completion = qwen_tokenizer().encode(e.completion, /*allow_special=*/false);
    completion.push_back(endoftext);
    std::vector<std::int64_t> ids = prompt;
    ids.insert(ids.end(), completion.begin(), completion.end());
    const auto n = static_cast<std::int64_t>(ids.size());
    const auto input = at::tensor(ids, at::kLong).view({1, n});
    const auto logp = at::log_softmax(model->logits(model->forward(input))[0], -1);  // [n, V]
    // Position t - 1 predicts token t; completion tokens are t >= |prompt|.
    const auto first = include_prompt ? std::int64_t{1} : static_cast<std::int64_t>(prompt.size());
    for (std::int64_t t = first; t < n; ++t) total = total - logp[t - 1][ids[static_cast<std::size_t>(t)]];
    count += n - first;
  }
  return total / static_cast<double>(count);
}

grpo::SftOptions plain_options(double lr) {
  grpo::SftOptions o;
  o.epochs = 1;
  o.batch_size = 2;  // both examples in one update
  o.lr = {.peak = lr};
  o.weight_decay = 0.0;
  o.max_grad_norm = 0.0;  // no clipping: the update is pure AdamW
  return o;
}

}  // namespace

TEST_CASE("the supervised loss is the mean NLL of the completion tokens, prompt tokens masked", "[sft]") {
  auto model = tiny_model(5);
  grpo::Qwen2Policy policy(model, qwen_tokenizer());  // the same module: `model` sees the updates
  double expected = 0, with_prompt = 0;
  {
    at::NoGradGuard no_grad;
    expected = reference_nll(model).item<double>();
    with_prompt = reference_nll(model, /*include_prompt=*/true).item<double>();
  }
  REQUIRE(std::abs(expected - with_prompt) > 0.05);  // the mask matters for these weights
  const std::vector<std::int64_t> stop{endoftext};
  const auto result = grpo::train_supervised(policy, qwen_tokenizer(), examples, plain_options(1e-3), stop);
  REQUIRE(result.updates == 1);
  // One update: first_loss and last_loss are its loss, computed before the weights moved.
  CHECK(result.first_loss == Approx(expected).epsilon(1e-5));
  CHECK(result.last_loss == Approx(expected).epsilon(1e-5));
}

TEST_CASE("one supervised update is AdamW's first step on the gradient of that loss", "[sft]") {
  struct Case {
    double weight_decay;
    std::int64_t warmup_steps;
    double lr;  // the learning rate of update 0: peak, or peak / warmup_steps
  };
  const double peak = 1e-2, eps = 1e-8;  // eps: AdamWOptions' default
  for (const Case c : {Case{0.0, 0, peak}, Case{0.1, 0, peak}, Case{0.0, 4, peak / 4}}) {
    INFO("weight_decay " << c.weight_decay << ", warmup_steps " << c.warmup_steps);
    auto model = tiny_model(9);
    grpo::Qwen2Policy policy(model, qwen_tokenizer());
    // g: the gradient of the reference loss through full logits.
    std::vector<at::Tensor> before, grads;
    reference_nll(model).backward();
    for (auto& p : model->parameters()) {
      REQUIRE(p.grad().defined());
      before.push_back(p.detach().clone());
      grads.push_back(p.grad().clone());
      p.mutable_grad() = at::Tensor();
    }
    REQUIRE(policy.parameters().size() == before.size());  // the policy trains every tensor
    auto options = plain_options(peak);
    options.weight_decay = c.weight_decay;
    options.lr.warmup_steps = c.warmup_steps;
    const std::vector<std::int64_t> stop{endoftext};
    REQUIRE(grpo::train_supervised(policy, qwen_tokenizer(), examples, options, stop).updates == 1);
    const auto after = model->parameters();
    double worst = 0;
    for (std::size_t i = 0; i < after.size(); ++i) {
      const auto& g = grads[i];
      const auto expected = before[i] * (1.0 - c.lr * c.weight_decay) - c.lr * g / (g.abs() + eps);
      worst = std::max(worst, (after[i].detach() - expected).abs().max().item<double>());
      // Sign-like: where |g| >> eps every element moves by lr against its gradient's sign.
      const auto big = g.abs() > 1e-4;
      if (big.any().item<bool>()) {
        const auto moved = (after[i].detach() - before[i] * (1.0 - c.lr * c.weight_decay)).masked_select(big);
        CHECK((moved.abs() - c.lr).abs().max().item<double>() < 1e-3 * c.lr);
        CHECK((moved * g.masked_select(big) < 0).all().item<bool>());
      }
    }
    // Tolerance: the two float32 gradient paths differ by rounding, which moves g / (|g| + eps)
    // visibly only where |g| is near eps.
    CHECK(worst < 1e-2 * c.lr);
  }
}

TEST_CASE("supervised options are validated before anything is trained", "[sft]") {
  auto model = tiny_model(1);
  grpo::Qwen2Policy policy(model, qwen_tokenizer());
  const auto before = model->parameters().front().detach().clone();
  auto message = [&](const std::vector<grpo::SftExample>& data, const grpo::SftOptions& options) {
    try {
      (void)grpo::train_supervised(policy, qwen_tokenizer(), data, options);
    } catch (const grpo::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto options = plain_options(1e-3);
  CHECK_THAT(message({}, options), Catch::Contains("no examples"));
  options.epochs = 0;
  CHECK_THAT(message(examples, options), Catch::Contains("epochs"));
  options = plain_options(1e-3);
  options.batch_size = -1;
  CHECK_THAT(message(examples, options), Catch::Contains("batch_size"));
  options = plain_options(-1e-3);
  CHECK_THAT(message(examples, options), Catch::Contains("lr: expected a finite learning rate >= 0"));
  options = plain_options(1e-3);
  options.lr.min_ratio = 2.0;
  CHECK_THAT(message(examples, options), Catch::Contains("lr_min_ratio"));
  options = plain_options(1e-3);
  options.lr.warmup_steps = -3;
  CHECK_THAT(message(examples, options), Catch::Contains("lr_warmup_steps"));
  CHECK(at::equal(model->parameters().front().detach(), before));  // nothing was trained
}
