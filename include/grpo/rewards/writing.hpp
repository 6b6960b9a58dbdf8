#pragma once
// grpo::WritingReward: the paper's writing-quality reward (method.md, Eq. 4): a scalar-head Qwen2
// reward model (Qwen2ForSequenceClassification, num_labels = 1) scores (prompt, answer), batched,
// on its own device. The reward model is trained with grpo::train_reward_model (Bradley-Terry)
// on the same input format, reward_model_input().

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/from_blob.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/concepts/reward.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/text/completion.hpp"
#include "grpo/tokenizer/tokenizer.hpp"

namespace grpo {

/// The text a reward model reads for (prompt, response): one ChatML user turn and the assistant's
/// response, closed by <|im_end|> so the pooled (last) token is the same for every input.
inline std::string reward_model_input(std::string_view prompt, std::string_view response) {
  std::string text;
  text.reserve(prompt.size() + response.size() + 64);
  text += "<|im_start|>user\n";
  text += prompt;
  text += "<|im_end|>\n<|im_start|>assistant\n";
  text += response;
  text += "<|im_end|>";
  return text;
}

/// Tokenizes (prompt, response) pairs for a reward model and packs them into right-padded
/// [B, L] batches. Inputs longer than max_tokens keep their *last* max_tokens tokens: the pooled
/// token and the end of the answer survive, the start of the prompt is cut.
struct RewardModelBatcher {
  const Tokenizer* tokenizer = nullptr;  ///< the reward model's tokenizer
  std::int64_t pad_id = 0;               ///< the reward model's pad_token_id
  std::int64_t max_tokens = 8192;        ///< longest input, tokens

  [[nodiscard]] std::vector<std::int64_t> encode(std::string_view prompt, std::string_view response) const {
    auto ids = tokenizer->encode(reward_model_input(prompt, response), /*allow_special=*/true);
    if (static_cast<std::int64_t>(ids.size()) > max_tokens) ids.erase(ids.begin(), ids.end() - max_tokens);
    return ids;
  }

  /// rows -> input_ids [B, L] int64 (pad_id-padded), attention_mask [B, L] int64.
  [[nodiscard]] std::pair<at::Tensor, at::Tensor> pack(std::span<const std::vector<std::int64_t>> rows) const {
    std::int64_t longest = 1;
    for (const auto& r : rows) longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(r.size()));
    const auto b = static_cast<std::int64_t>(rows.size());
    std::vector<std::int64_t> ids(static_cast<std::size_t>(b * longest), pad_id), mask(ids.size(), 0);
    for (std::int64_t i = 0; i < b; ++i) {
      const auto& r = rows[static_cast<std::size_t>(i)];
      std::copy(r.begin(), r.end(), ids.begin() + i * longest);
      std::fill_n(mask.begin() + i * longest, r.size(), 1);
    }
    auto make = [&](std::vector<std::int64_t>& v) { return at::from_blob(v.data(), {b, longest}, at::kLong).clone(); };
    return {make(ids), make(mask)};
  }
};

/// The writing reward: reward model score of the answer (the text inside <answer>, or the whole
/// completion when answer_only is false). Deterministic (no sampling); inputs are sorted by
/// length and scored `batch_size` at a time.
class WritingReward {
 public:
  struct Options {
    std::int64_t batch_size = 8;     ///< inputs per reward-model forward; default 8
    std::int64_t max_tokens = 8192;  ///< longest input, tokens (the tail is kept); default 8,192
    bool answer_only = true;         ///< score only the answer part of the completion; default true
  };

  WritingReward(Qwen2RewardModel model, Tokenizer tokenizer, Options options)
      : model_(std::move(model)), tokenizer_(std::make_shared<Tokenizer>(std::move(tokenizer))), options_(options) {
    if (options_.batch_size <= 0) throw Error("WritingReward: batch_size: expected > 0");
    if (options_.max_tokens <= 8) throw Error("WritingReward: max_tokens: expected > 8");
    const auto& config = model_->config();
    if (config.num_labels != 1) {
      throw Error(fmt::format("WritingReward: the reward model must have one output (num_labels = 1), found {}",
                              config.num_labels));
    }
    model_->eval();
  }
  WritingReward(Qwen2RewardModel model, Tokenizer tokenizer) : WritingReward(std::move(model), std::move(tokenizer), Options{}) {}

  [[nodiscard]] std::string_view name() const { return "writing"; }

  void score(SampleBatch batch, std::span<float> out) {
    const RewardModelBatcher batcher{tokenizer_.get(), pad_id(), options_.max_tokens};
    std::vector<std::vector<std::int64_t>> inputs;
    inputs.reserve(batch.size());
    for (const Sample& s : batch) {
      const std::string_view response = options_.answer_only ? parse_completion(s.completion).answer : s.completion;
      inputs.push_back(batcher.encode(s.prompt, response));
    }
    std::vector<std::size_t> order(inputs.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return inputs[a].size() > inputs[b].size(); });
    at::NoGradGuard no_grad;
    const auto device = model_->parameters().front().device();
    for (std::size_t begin = 0; begin < order.size(); begin += static_cast<std::size_t>(options_.batch_size)) {
      const std::size_t end = std::min(order.size(), begin + static_cast<std::size_t>(options_.batch_size));
      std::vector<std::vector<std::int64_t>> rows;
      for (std::size_t j = begin; j < end; ++j) rows.push_back(std::move(inputs[order[j]]));
      auto [ids, mask] = batcher.pack(rows);
      const auto scores = model_->forward(ids.to(device), mask.to(device)).to(at::kFloat).cpu().reshape({-1});
      const float* s = scores.data_ptr<float>();
      for (std::size_t j = begin; j < end; ++j) out[order[j]] = s[j - begin];
    }
  }

  [[nodiscard]] Qwen2RewardModel& model() { return model_; }

 private:
  std::int64_t pad_id() const {
    const auto& config = model_->config();
    if (config.pad_token_id) return *config.pad_token_id;
    return tokenizer_->pad_token_id().value_or(0);
  }

  Qwen2RewardModel model_;
  std::shared_ptr<Tokenizer> tokenizer_;  // shared: the reward is copied into RewardSet by move, cheaply
  Options options_;
};

static_assert(NamedReward<WritingReward>);

}  // namespace grpo
