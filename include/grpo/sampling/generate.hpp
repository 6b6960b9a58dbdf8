#pragma once
// Batched generation with a Qwen2 model and a static KV cache.
//
// Prompts of different lengths are left-padded and prefilled together; then one token per live
// row per step. A row ends with finish_reason stop when it samples a stop token id or when its
// decoded text contains a stop string, and with length after max_new_tokens; finished rows are
// dropped from the cache (KVCache::keep_rows), so later steps compute only the live ones.
//
// Semantics of what comes back (one Generation per prompt, in order):
//   ids       every sampled token, the stop token included; after a stop string, the token that
//             completed it is the last one (it may carry characters beyond the stop string)
//   text      the decoded ids (special tokens left out when options.skip_special_tokens), without
//             the text of a stop token, and cut right after the first stop string it contains
//   logprobs  the log-prob of each id under the sampling distribution (grpo/sampling/sampler.hpp)
// Reproducibility: request i draws one uniform number per token from its own std::mt19937_64
// seeded with options.seeds[i] (or options.seed + i), so a request's completion depends on its
// seed and prompt, not on the other requests of the batch or on the device (up to floating-point
// differences between batch shapes flipping a draw that falls on a probability boundary).
// mt19937_64 rather than at::Generator: its sequence is fixed by the C++ standard, on any platform.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/sampling/sampler.hpp"
#include "grpo/sampling/types.hpp"
#include "grpo/tokenizer/incremental_decoder.hpp"
#include "grpo/tokenizer/tokenizer.hpp"

namespace grpo {

namespace detail {

/// The text state of one request: incremental decoding and stop-string search.
class CompletionText {
 public:
  CompletionText(const Tokenizer* tokenizer, const SamplingOptions& options) : options_(&options) {
    if (tokenizer != nullptr) decoder_.emplace(*tokenizer, options.skip_special_tokens);
    for (const auto& stop : options.stop_strings) longest_stop_ = std::max(longest_stop_, stop.size());
  }

  /// Adds a token's text; true when a stop string now appears (the text is cut after it).
  bool push(std::int64_t token) {
    if (!decoder_) return false;
    const auto searched_from = text_.size() >= longest_stop_ ? text_.size() - longest_stop_ + 1 : 0;
    text_ += decoder_->push(token);
    if (options_->stop_strings.empty()) return false;
    std::size_t cut = std::string::npos;
    for (const auto& stop : options_->stop_strings) {
      const auto at = text_.find(stop, searched_from);
      if (at != std::string::npos) cut = std::min(cut, at + stop.size());
    }
    if (cut == std::string::npos) return false;
    text_.resize(cut);
    return true;
  }

  /// Ends the text (held-back bytes of an unfinished character become U+FFFD) and returns it.
  std::string finish(bool cut_by_stop_string) {
    if (decoder_ && !cut_by_stop_string) text_ += decoder_->finish();
    return std::move(text_);
  }

 private:
  const SamplingOptions* options_;
  std::optional<IncrementalDecoder> decoder_;
  std::string text_;
  std::size_t longest_stop_ = 0;
};

inline double uniform_from(std::mt19937_64& engine) { return std::ldexp(static_cast<double>(engine() >> 11), -53); }

}  // namespace detail

/// Generates one completion per prompt (token ids; see the header for the semantics).
/// `tokenizer` decodes the text and matches stop strings; without one, text stays empty and
/// stop_strings must be empty. Runs without gradients, in the model's device and dtype.
inline std::vector<Generation> generate(Qwen2Model& model, std::span<const std::vector<std::int64_t>> prompts,
                                        const SamplingOptions& options, const Tokenizer* tokenizer = nullptr) {
  validate_sampling_options(options);
  const auto batch = static_cast<std::int64_t>(prompts.size());
  if (tokenizer == nullptr && !options.stop_strings.empty()) {
    throw Error("generate: stop_strings need a tokenizer to decode the text; pass one or drop the stop strings");
  }
  if (!options.seeds.empty() && options.seeds.size() != prompts.size()) {
    throw Error("SamplingOptions.seeds: expected one seed per prompt (" + std::to_string(prompts.size()) + "), found " +
                std::to_string(options.seeds.size()));
  }
  const auto vocab = model->config().vocab_size;
  std::vector<Generation> results(prompts.size());
  std::int64_t width = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw Error("generate: prompt " + std::to_string(i) + " has no tokens");
    for (auto id : prompts[i]) {
      if (id < 0 || id >= vocab) {
        throw Error("generate: prompt " + std::to_string(i) + " holds token id " + std::to_string(id) +
                    " outside the model's vocabulary [0, " + std::to_string(vocab) + "); tokenizer and model do not match");
      }
    }
    results[i].prompt_ids = prompts[i];
    width = std::max<std::int64_t>(width, static_cast<std::int64_t>(prompts[i].size()));
  }
  if (batch == 0 || options.max_new_tokens == 0) return results;

  at::NoGradGuard no_grad;
  const auto device = model->output_weight().device();
  // Left padding with id 0 (masked out; any id would do).
  auto ids = at::zeros({batch, width}, at::kLong);
  auto mask = at::zeros({batch, width}, at::kLong);
  for (std::int64_t i = 0; i < batch; ++i) {
    const auto& prompt = prompts[static_cast<std::size_t>(i)];
    const auto length = static_cast<std::int64_t>(prompt.size());
    ids[i].narrow(0, width - length, length).copy_(at::from_blob(const_cast<std::int64_t*>(prompt.data()), {length}, at::kLong));
    mask[i].narrow(0, width - length, length).fill_(1);
  }

  std::vector<std::mt19937_64> engines;
  std::vector<detail::CompletionText> texts;
  engines.reserve(prompts.size());
  texts.reserve(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    engines.emplace_back(options.seeds.empty() ? options.seed + i : options.seeds[i]);
    texts.emplace_back(tokenizer, options);
  }

  auto cache = model->make_cache(batch, width + options.max_new_tokens);
  // live[r]: the request in cache row r
  std::vector<std::int64_t> live(prompts.size());
  for (std::int64_t i = 0; i < batch; ++i) live[static_cast<std::size_t>(i)] = i;
  auto hidden = model->forward(ids.to(device), mask.to(device), &cache).select(1, width - 1);  // [B, H]

  for (std::int64_t step = 0; step < options.max_new_tokens; ++step) {
    const auto rows = static_cast<std::int64_t>(live.size());
    at::Tensor uniforms;
    if (!options.greedy) {
      std::vector<double> u(live.size());
      for (std::size_t r = 0; r < live.size(); ++r) u[r] = detail::uniform_from(engines[static_cast<std::size_t>(live[r])]);
      uniforms = at::from_blob(u.data(), {rows}, at::kDouble).clone();
    }
    const auto sampled = sample_tokens(model->logits(hidden), uniforms, options);
    const auto tokens = sampled.tokens.cpu();
    const auto logprobs = sampled.logprobs.cpu();
    const auto valid = sampled.valid.cpu();
    const auto* token_data = tokens.data_ptr<std::int64_t>();
    const auto* logprob_data = logprobs.data_ptr<float>();
    const auto* valid_data = valid.data_ptr<bool>();

    std::vector<std::int64_t> keep;  // cache rows that go on
    keep.reserve(live.size());
    for (std::size_t r = 0; r < live.size(); ++r) {
      const auto request = static_cast<std::size_t>(live[r]);
      if (!valid_data[r]) {
        throw Error("generate: request " + std::to_string(request) + ", new token " + std::to_string(step) +
                    ": the model's next-token logits have no finite probability (NaN or infinite); check the weights "
                    "and the dtype (float16 overflows where bfloat16 does not)");
      }
      auto& result = results[request];
      const auto token = token_data[r];
      result.ids.push_back(token);
      result.logprobs.push_back(logprob_data[r]);
      const bool stop_token = std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) !=
                              options.stop_token_ids.end();
      const bool stop_string = !stop_token && texts[request].push(token);
      if (stop_token || stop_string) {
        result.finish_reason = FinishReason::stop;
        result.text = texts[request].finish(stop_string);
      } else if (step + 1 == options.max_new_tokens) {
        result.finish_reason = FinishReason::length;
        result.text = texts[request].finish(false);
      } else {
        keep.push_back(static_cast<std::int64_t>(r));
      }
    }
    if (keep.empty()) break;
    auto next = tokens;
    if (static_cast<std::int64_t>(keep.size()) < rows) {
      const auto kept = at::from_blob(keep.data(), {static_cast<std::int64_t>(keep.size())}, at::kLong).clone();
      cache.keep_rows(kept);
      next = tokens.index_select(0, kept);
      std::vector<std::int64_t> still(keep.size());
      for (std::size_t k = 0; k < keep.size(); ++k) still[k] = live[static_cast<std::size_t>(keep[k])];
      live = std::move(still);
    }
    hidden = model->forward(next.to(device).unsqueeze(1), {}, &cache).select(1, 0);
  }
  return results;
}

}  // namespace grpo
