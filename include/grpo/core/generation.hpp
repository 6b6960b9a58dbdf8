#pragma once
// Sampling settings and results shared by every policy (the Policy concept, generation, the trainer):
// core types, so concepts/policy.hpp needs nothing from sampling/ or model/.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "grpo/core/enum_names.hpp"

namespace grpo {

/// How to sample completions. Paper training defaults: temperature 0.8, top-p 1.0, 14,000 new tokens.
struct SamplingOptions {
  double temperature = 1.0;                ///< softmax temperature; ignored when greedy; default 1.0
  double top_p = 1.0;                      ///< nucleus mass kept, (0, 1]; default 1.0 (off)
  std::int64_t top_k = 0;                  ///< keep the k most likely tokens; 0 = off (default)
  std::int64_t max_new_tokens = 256;       ///< generation stops with "length" after this many; default 256
  std::vector<std::int64_t> stop_token_ids;  ///< EOS-like ids that end a completion (kept in ids)
  std::vector<std::string> stop_strings;   ///< end when the decoded text contains one (e.g. "</answer>")
  std::uint64_t seed = 0;                  ///< per-request seed: request i uses seed + i; default 0
  std::vector<std::uint64_t> seeds;        ///< one seed per request, replacing seed + i when given; default none
  bool greedy = false;                     ///< argmax decoding; default false
  bool skip_special_tokens = true;         ///< leave special tokens out of Generation::text (ids keep them); default true
  /// Most requests decoded together: larger sets are generated in consecutive waves of this many
  /// (in request order), which bounds the KV cache at max_batch_rows x (longest prompt of the
  /// wave + max_new_tokens) slots. Each request keeps its seed, so the samples do not depend on
  /// it. 0 = all at once (default).
  std::int64_t max_batch_rows = 0;
};

/// Why a completion ended.
enum class FinishReason : std::uint8_t {
  stop,    ///< a stop token or stop string
  length,  ///< max_new_tokens reached (a truncated completion)
};

/// Names of FinishReason (the "finish_reason" of generate's output and the trainer's sample logs).
inline constexpr EnumName<FinishReason> finish_reason_names[] = {{"stop", FinishReason::stop},
                                                                 {"length", FinishReason::length}};

/// One sampled completion.
struct Generation {
  std::vector<std::int64_t> prompt_ids;  ///< the tokenized prompt
  std::vector<std::int64_t> ids;         ///< completion token ids, stop token included
  std::string text;                      ///< decoded completion (cut after a stop string)
  std::vector<float> logprobs;           ///< log-prob of each sampled id under the sampling distribution
  FinishReason finish_reason = FinishReason::length;
};

/// A right-padded batch of prompt+completion sequences for teacher-forced log-probs.
struct TokenBatch {
  at::Tensor input_ids;        ///< [B, L] int64: prompt then completion, right-padded
  at::Tensor attention_mask;   ///< [B, L] 1 for real tokens
  at::Tensor completion_mask;  ///< [B, L] 1 where the token is a completion token (scored)
};

/// Log-probs of the tokens of a TokenBatch under a policy: position t holds log p(input_ids[t] | <t),
/// 0 where completion_mask is 0.
struct TokenLogprobs {
  at::Tensor logprobs;  ///< [B, L] float32, differentiable w.r.t. the policy parameters
  at::Tensor entropy;   ///< [B, L] float32 entropy of the predictive distribution, or undefined
};

}  // namespace grpo
