#pragma once
// What generation means, whatever model decodes: the request checks, per-request seeds, stop
// tokens and stop strings, waves, and what a Generation holds. A model's decode loop
// (grpo/model/qwen2_generate.hpp for Qwen2) feeds each request's sampled tokens to
// detail::append_token and splits large request sets with detail::generate_in_waves; nothing
// here knows a model.
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

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/core/generation.hpp"
#include "grpo/sampling/sampler.hpp"
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

/// A uniform double in [0, 1) from the top 53 bits of one draw.
inline double uniform_from(std::mt19937_64& engine) { return std::ldexp(static_cast<double>(engine() >> 11), -53); }

/// The seed of request i: options.seeds[i], or options.seed + i without explicit seeds.
inline std::uint64_t request_seed(const SamplingOptions& options, std::size_t i) {
  return options.seeds.empty() ? options.seed + i : options.seeds[i];
}

/// Checks the options of a set of `requests` requests before anything is decoded (grpo::Error):
/// SamplingOptions themselves, stop strings without a tokenizer, one seed per request.
inline void validate_requests(std::size_t requests, const SamplingOptions& options, const Tokenizer* tokenizer) {
  validate_sampling_options(options);
  if (tokenizer == nullptr && !options.stop_strings.empty()) {
    throw Error("generate: stop_strings need a tokenizer to decode the text; pass one or drop the stop strings");
  }
  if (!options.seeds.empty() && options.seeds.size() != requests) {
    throw Error(fmt::format("SamplingOptions.seeds: expected one seed per prompt ({}), found {}", requests,
                            options.seeds.size()));
  }
}

/// Checks that every prompt has tokens and that each id is in the model's vocabulary [0, vocab).
inline void validate_prompt_ids(std::span<const std::vector<std::int64_t>> prompts, std::int64_t vocab) {
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw Error(fmt::format("generate: prompt {} has no tokens", i));
    for (auto id : prompts[i]) {
      if (id < 0 || id >= vocab) {
        throw Error(fmt::format("generate: prompt {} holds token id {} outside the model's vocabulary [0, {}); "
                                "tokenizer and model do not match",
                                i, id, vocab));
      }
    }
  }
}

/// Appends request's sampled token `token` (log-prob `logprob`, new token number `step` from 0)
/// to its Generation; true when that ends the request: a stop token id or a stop string
/// (finish_reason stop), or the last of max_new_tokens (length). A finished request has its text.
inline bool append_token(Generation& result, CompletionText& text, std::int64_t token, float logprob,
                         std::int64_t step, const SamplingOptions& options) {
  result.ids.push_back(token);
  result.logprobs.push_back(logprob);
  const bool stop_token =
      std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) != options.stop_token_ids.end();
  const bool stop_string = !stop_token && text.push(token);
  if (stop_token || stop_string) {
    result.finish_reason = FinishReason::stop;
    result.text = text.finish(stop_string);
    return true;
  }
  if (step + 1 == options.max_new_tokens) {
    result.finish_reason = FinishReason::length;
    result.text = text.finish(false);
    return true;
  }
  return false;
}

/// Decodes the requests in consecutive waves of options.max_batch_rows (all at once when it is 0
/// or they fit) and returns their Generations in request order. Each wave gets its requests'
/// seeds (request_seed over the whole set), so the samples do not depend on the wave size.
///   decode_wave(prompts of the wave, options of the wave) -> one Generation per prompt
template <class DecodeWave>
std::vector<Generation> generate_in_waves(std::span<const std::vector<std::int64_t>> prompts,
                                          const SamplingOptions& options, DecodeWave&& decode_wave) {
  const auto batch = static_cast<std::int64_t>(prompts.size());
  if (options.max_batch_rows <= 0 || batch <= options.max_batch_rows) return decode_wave(prompts, options);
  std::vector<Generation> all;
  all.reserve(prompts.size());
  for (std::int64_t begin = 0; begin < batch; begin += options.max_batch_rows) {
    const auto count = std::min(options.max_batch_rows, batch - begin);
    SamplingOptions wave = options;
    wave.max_batch_rows = 0;
    wave.seeds.resize(static_cast<std::size_t>(count));
    for (std::int64_t j = 0; j < count; ++j) {
      wave.seeds[static_cast<std::size_t>(j)] = request_seed(options, static_cast<std::size_t>(begin + j));
    }
    auto part = decode_wave(prompts.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(count)),
                            std::as_const(wave));
    for (auto& g : part) all.push_back(std::move(g));
  }
  return all;
}

}  // namespace detail

}  // namespace grpo
