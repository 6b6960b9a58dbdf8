#pragma once
// Supervised warm-up of a policy on (prompt, completion) pairs: the negative log-likelihood of the
// completion tokens, mean over the batch's completion tokens, through the policy's own
// teacher-forced log-probs (the same path GRPO uses). The paper's optional continual pretraining
// stage; the tiny demo uses it to give its from-scratch base model a language to write in.

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <random>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "grpo/concepts/policy.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reporter.hpp"
#include "grpo/tokenizer/tokenizer.hpp"
#include "grpo/optim/adamw.hpp"
#include "grpo/trainer/metrics.hpp"
#include "grpo/optim/schedule.hpp"

namespace grpo {

/// One supervised example: the full prompt text (template applied) and the completion to learn.
struct SftExample {
  std::string prompt;
  std::string completion;
};

struct SftOptions {
  std::int64_t epochs = 1;               ///< passes over the examples; default 1
  std::int64_t batch_size = 16;          ///< examples per update; default 16
  /// Learning rate over updates; default constant 1e-4. Its total_steps is set from the run
  /// (epochs x batches per epoch), so a decay ends with the last update.
  LrSchedule lr{.peak = 1e-4};
  double weight_decay = 0.0;             ///< AdamW weight decay; default 0
  double max_grad_norm = 1.0;            ///< gradient-norm clip; <= 0 disables; default 1.0
  std::uint64_t seed = 0;                ///< shuffling; default 0
  std::filesystem::path metrics_path{};  ///< per-update JSONL; empty = none (default)
  Reporter* reporter = nullptr;          ///< where a progress line goes every log_every updates; null: none (default)
  std::int64_t log_every = 10;           ///< default 10
};

struct SftResult {
  std::int64_t updates = 0;
  double first_loss = 0.0;  ///< mean NLL per token over the first 10% of updates
  double last_loss = 0.0;   ///< mean NLL per token over the last 10% of updates
};

/// Tokenized examples -> a right-padded TokenBatch (completion_mask marks the completion).
inline TokenBatch make_sft_batch(std::span<const std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>>> rows,
                                 std::int64_t pad_id) {
  std::int64_t longest = 1;
  for (const auto& [p, c] : rows) longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(p.size() + c.size()));
  const auto b = static_cast<std::int64_t>(rows.size());
  std::vector<std::int64_t> ids(static_cast<std::size_t>(b * longest), pad_id), attention(ids.size(), 0);
  std::vector<float> completion(ids.size(), 0.0f);
  for (std::int64_t i = 0; i < b; ++i) {
    const auto& [p, c] = rows[static_cast<std::size_t>(i)];
    const auto row = static_cast<std::size_t>(i * longest);
    std::copy(p.begin(), p.end(), ids.begin() + static_cast<std::ptrdiff_t>(row));
    std::copy(c.begin(), c.end(), ids.begin() + static_cast<std::ptrdiff_t>(row + p.size()));
    std::fill_n(attention.begin() + static_cast<std::ptrdiff_t>(row), p.size() + c.size(), 1);
    std::fill_n(completion.begin() + static_cast<std::ptrdiff_t>(row + p.size()), c.size(), 1.0f);
  }
  TokenBatch batch;
  batch.input_ids = at::from_blob(ids.data(), {b, longest}, at::kLong).clone();
  batch.attention_mask = at::from_blob(attention.data(), {b, longest}, at::kLong).clone();
  batch.completion_mask = at::from_blob(completion.data(), {b, longest}, at::kFloat).clone();
  return batch;
}

/// Trains `policy` on `examples` (completion tokens only). `stop_ids` are appended to every
/// completion (e.g. the EOS id) so the policy learns to stop; empty for none.
template <Policy P>
SftResult train_supervised(P& policy, const Tokenizer& tokenizer, const std::vector<SftExample>& examples,
                           const SftOptions& options, std::span<const std::int64_t> stop_ids = {}) {
  if (examples.empty()) throw Error("train_supervised: no examples");
  if (options.epochs <= 0 || options.batch_size <= 0) throw Error("train_supervised: epochs and batch_size must be > 0");
  options.lr.validate();
  std::vector<std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>>> tokens;
  tokens.reserve(examples.size());
  for (const auto& e : examples) {
    auto completion = tokenizer.encode(e.completion, /*allow_special=*/false);
    completion.insert(completion.end(), stop_ids.begin(), stop_ids.end());
    tokens.emplace_back(tokenizer.encode(e.prompt, /*allow_special=*/true), std::move(completion));
  }
  const std::int64_t pad_id = tokenizer.pad_token_id().value_or(0);
  MetricsWriter metrics;
  if (!options.metrics_path.empty()) metrics = MetricsWriter(options.metrics_path);
  std::vector<std::size_t> order(tokens.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + 5);
  const auto per_epoch = static_cast<std::int64_t>((tokens.size() + options.batch_size - 1) / options.batch_size);
  const std::int64_t total = per_epoch * options.epochs;
  LrSchedule schedule = options.lr;
  schedule.total_steps = total;
  ClippedAdamW optimizer(policy.parameters(), AdamWOptions{.lr = schedule, .weight_decay = options.weight_decay,
                                                      .max_grad_norm = options.max_grad_norm});
  SftResult result;
  std::vector<double> losses;
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
    for (std::size_t begin = 0; begin < order.size(); begin += static_cast<std::size_t>(options.batch_size)) {
      const auto end = std::min(order.size(), begin + static_cast<std::size_t>(options.batch_size));
      std::vector<std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>>> rows;
      for (std::size_t j = begin; j < end; ++j) rows.push_back(tokens[order[j]]);
      const TokenBatch batch = make_sft_batch(rows, pad_id);
      const TokenLogprobs lp = policy.logprobs(batch, 1.0);
      const auto mask = batch.completion_mask.to(lp.logprobs.device());
      const auto loss = -(lp.logprobs * mask).sum() / mask.sum().clamp_min(1.0);
      loss.backward();
      const OptimizerUpdate update = optimizer.step();  // a non-finite gradient norm skips it
      const double lr = update.lr, norm = update.grad_norm;
      ++result.updates;
      const double l = loss.item<double>();
      losses.push_back(l);
      metrics.write({{"update", result.updates}, {"epoch", epoch}, {"loss", l}, {"grad_norm", norm}, {"lr", lr}});
      if (options.reporter != nullptr && (result.updates % options.log_every == 0 || result.updates == total)) {
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double eta = elapsed / static_cast<double>(result.updates) * static_cast<double>(total - result.updates);
        report(options.reporter,
               fmt::format("warm-up: update {}/{} | loss {:.3f} | {:.1f} examples/s | ETA {}", result.updates, total, l,
                           static_cast<double>(result.updates * options.batch_size) / std::max(elapsed, 1e-9),
                           format_duration(eta)));
      }
    }
  }
  const auto tenth = std::max<std::size_t>(1, losses.size() / 10);
  result.first_loss = std::accumulate(losses.begin(), losses.begin() + static_cast<std::ptrdiff_t>(tenth), 0.0) / static_cast<double>(tenth);
  result.last_loss = std::accumulate(losses.end() - static_cast<std::ptrdiff_t>(tenth), losses.end(), 0.0) / static_cast<double>(tenth);
  return result;
}

}  // namespace grpo
