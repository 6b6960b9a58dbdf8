#pragma once
// A step's rollout (prompts, their G completions, the Samples rewards see) and its packing into
// padded micro-batches for teacher-forced log-probs.

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/core/generation.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/data/prompt_dataset.hpp"

namespace grpo {

/// Everything sampled in one step. Generations are group-major: sample i belongs to prompt
/// i / group_size. `samples` views the prompts and generation texts: keep the Rollout alive and
/// do not copy it while they are used (moving is fine: the strings' buffers do not move).
struct Rollout {
  std::vector<PromptRecord> prompts;     ///< [P] the step's prompts
  std::vector<std::string> templated;    ///< [P] the text fed to the policy
  std::vector<Generation> generations;   ///< [P * G]
  std::vector<Sample> samples;           ///< [P * G]
  std::int64_t group_size = 1;
  /// Each group's place in the step's global order of groups (over every rank and dynamic-sampling
  /// round), which fixes the mini-batch partition and the order of logged rows whatever the
  /// number of ranks. Empty: 0, 1, 2, ... (one process, one round).
  std::vector<std::size_t> global_groups;

  [[nodiscard]] std::size_t global_group(std::size_t g) const { return global_groups.empty() ? g : global_groups[g]; }

  /// Rebuilds `samples` from prompts and generations.
  void link_samples() {
    samples.clear();
    samples.reserve(generations.size());
    for (std::size_t i = 0; i < generations.size(); ++i) {
      const auto group = i / static_cast<std::size_t>(group_size);
      samples.push_back(Sample{.prompt = prompts.at(group).prompt,
                               .completion = generations[i].text,
                               .target = prompts[group].target,
                               .truncated = generations[i].finish_reason == FinishReason::length,
                               .group = static_cast<std::int64_t>(group)});
    }
  }
};

/// A rollout with its rewards and advantages: what the update trains on, and what the step's
/// drawing cost (several rounds under dynamic sampling).
struct ScoredRollout {
  Rollout rollout;
  RewardTable table;                    ///< [K, N]
  std::vector<float> adv;               ///< [N]
  std::uint64_t prompts_consumed = 0;   ///< prompts drawn from the dataset (every round's)
  double sample_s = 0.0, score_s = 0.0; ///< seconds in rollout and in rewards + advantages
  std::int64_t rounds = 0;              ///< batches of prompts drawn
  double groups_drawn = 0.0, groups_with_signal = 0.0;  ///< over every rank
};

/// A padded micro-batch: which samples it holds and their tensors (CPU; the policy and the loss
/// move them to their device).
struct MicroBatch {
  std::vector<std::size_t> samples;  ///< indices into Rollout::generations
  TokenBatch batch;                  ///< input_ids/attention_mask/completion_mask [B, L]
  at::Tensor sampler_logprobs;       ///< [B, L] float32, the sampler's log-prob at completion positions, 0 elsewhere
  at::Tensor sampler_recorded;       ///< [B, L] float32, 1 where the sampler recorded a log-prob (a policy may record none)
  at::Tensor old_logprobs;           ///< [B, L] float32, filled by the trainer when pi_old is not the current policy
  at::Tensor ref_logprobs;           ///< [B, L] float32, filled by the trainer when a reference model is used
  std::int64_t completion_tokens = 0;
};

/// Packs `selected` samples into micro-batches of at most `token_budget` padded tokens (B x L),
/// longest first so padding stays small; a sequence longer than the budget gets a micro-batch of
/// its own. Right padding with `pad_id`.
inline std::vector<MicroBatch> pack_micro_batches(const Rollout& rollout, std::span<const std::size_t> selected,
                                                  std::int64_t token_budget, std::int64_t pad_id) {
  auto length_of = [&](std::size_t i) {
    const auto& g = rollout.generations[i];
    return static_cast<std::int64_t>(g.prompt_ids.size() + g.ids.size());
  };
  std::vector<std::size_t> order(selected.begin(), selected.end());
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return length_of(a) > length_of(b); });

  std::vector<MicroBatch> out;
  std::size_t begin = 0;
  while (begin < order.size()) {
    const std::int64_t longest = length_of(order[begin]);  // sorted: the first is the longest
    std::size_t end = begin + 1;
    while (end < order.size() && static_cast<std::int64_t>(end - begin + 1) * longest <= token_budget) ++end;
    MicroBatch mb;
    mb.samples.assign(order.begin() + static_cast<std::ptrdiff_t>(begin), order.begin() + static_cast<std::ptrdiff_t>(end));
    const auto rows = static_cast<std::int64_t>(mb.samples.size());
    std::vector<std::int64_t> ids(static_cast<std::size_t>(rows * longest), pad_id);
    std::vector<float> attention(ids.size(), 0.0f), completion(ids.size(), 0.0f), sampler(ids.size(), 0.0f),
        recorded(ids.size(), 0.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
      const auto& g = rollout.generations[mb.samples[static_cast<std::size_t>(r)]];
      const auto row = static_cast<std::size_t>(r * longest);
      const auto prompt_len = g.prompt_ids.size();
      std::copy(g.prompt_ids.begin(), g.prompt_ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(row));
      std::copy(g.ids.begin(), g.ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(row + prompt_len));
      for (std::size_t t = 0; t < prompt_len + g.ids.size(); ++t) attention[row + t] = 1.0f;
      for (std::size_t t = 0; t < g.ids.size(); ++t) {
        completion[row + prompt_len + t] = 1.0f;
        sampler[row + prompt_len + t] = t < g.logprobs.size() ? g.logprobs[t] : 0.0f;
        recorded[row + prompt_len + t] = t < g.logprobs.size() ? 1.0f : 0.0f;
      }
      mb.completion_tokens += static_cast<std::int64_t>(g.ids.size());
    }
    auto make = [&](auto& values, at::ScalarType type) {
      return at::from_blob(values.data(), {rows, longest}, at::TensorOptions().dtype(type)).clone();
    };
    mb.batch.input_ids = make(ids, at::kLong);
    mb.batch.attention_mask = make(attention, at::kFloat).to(at::kLong);
    mb.batch.completion_mask = make(completion, at::kFloat);
    mb.sampler_logprobs = make(sampler, at::kFloat);
    mb.sampler_recorded = make(recorded, at::kFloat);
    out.push_back(std::move(mb));
    begin = end;
  }
  return out;
}

}  // namespace grpo
