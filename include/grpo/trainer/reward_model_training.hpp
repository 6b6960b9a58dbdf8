#pragma once
// Bradley-Terry training of a scalar-head reward model on preference pairs (method.md, Eq. 4):
//   L = - mean log sigmoid(r(x, y_chosen) - r(x, y_rejected))
// Pairs are JSONL lines {"prompt", "chosen", "rejected"}. A deterministic split holds out
// eval_fraction of them; pair accuracy (r_chosen > r_rejected) on the held-out pairs is reported
// before and after training, so the gain is visible, not assumed.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/log_sigmoid.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/core/reporter.hpp"
#include "grpo/io/jsonl.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/rewards/writing.hpp"
#include "grpo/tokenizer/tokenizer.hpp"
#include "grpo/optim/adamw.hpp"
#include "grpo/trainer/metrics.hpp"
#include "grpo/optim/schedule.hpp"

namespace grpo {

/// One human (or constructed) preference: `chosen` is the better response to `prompt`.
struct PreferencePair {
  std::string prompt;
  std::string chosen;
  std::string rejected;
};

/// Reads {"prompt", "chosen", "rejected"} JSONL; errors name the file, the line and the field.
inline std::vector<PreferencePair> read_preference_pairs(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open the preference file for reading");
  std::vector<PreferencePair> pairs;
  const std::string source = path.string();
  io::for_each_jsonl(in, source, [&](const io::json& row, std::size_t line) {
    pairs.push_back({io::require_string(row, "prompt", source, line), io::require_string(row, "chosen", source, line),
                     io::require_string(row, "rejected", source, line)});
  });
  if (pairs.empty()) throw Error(source + ": no preference pairs");
  return pairs;
}

struct RewardModelTrainingOptions {
  std::int64_t epochs = 1;              ///< passes over the training pairs; default 1
  std::int64_t batch_size = 8;          ///< pairs per update; default 8
  /// Learning rate over updates; default constant 1e-5. Its total_steps is set from the run
  /// (epochs x batches per epoch), so a decay ends with the last update.
  LrSchedule lr{.peak = 1e-5};
  double weight_decay = 0.0;            ///< AdamW weight decay; default 0
  double max_grad_norm = 1.0;           ///< gradient-norm clip; <= 0 disables; default 1.0
  double eval_fraction = 0.1;           ///< share of pairs held out for accuracy, [0, 0.9]; default 0.1
  std::int64_t max_tokens = 2048;       ///< longest input (tail kept, see RewardModelBatcher); default 2,048
  std::uint64_t seed = 0;               ///< split and shuffling; default 0
  std::filesystem::path metrics_path{}; ///< per-update JSONL metrics; empty = none (default)
  Reporter* reporter = nullptr;          ///< where a progress line goes every log_every updates; null: none (default)
  std::int64_t log_every = 10;          ///< default 10
};

struct RewardModelTrainingResult {
  std::int64_t train_pairs = 0;
  std::int64_t eval_pairs = 0;
  double eval_accuracy_before = 0.0;  ///< held-out pair accuracy of the initial model
  double eval_accuracy = 0.0;         ///< held-out pair accuracy after training
  double eval_loss = 0.0;             ///< held-out Bradley-Terry loss after training
  double first_loss = 0.0;            ///< mean training loss of the first epoch's first 10% of updates
  double last_loss = 0.0;             ///< mean training loss of the last 10% of updates
  std::int64_t updates = 0;
};

namespace detail {

/// Scores chosen and rejected of `pairs` -> (r_chosen [B], r_rejected [B]) in float32.
inline std::pair<at::Tensor, at::Tensor> score_pairs(Qwen2RewardModel& model, const RewardModelBatcher& batcher,
                                                     std::span<const PreferencePair* const> pairs) {
  std::vector<std::vector<std::int64_t>> rows;
  rows.reserve(2 * pairs.size());
  for (const auto* p : pairs) rows.push_back(batcher.encode(p->prompt, p->chosen));
  for (const auto* p : pairs) rows.push_back(batcher.encode(p->prompt, p->rejected));
  auto [ids, mask] = batcher.pack(rows);
  const auto device = model->parameters().front().device();
  const auto scores = model->forward(ids.to(device), mask.to(device)).reshape({-1}).to(at::kFloat);  // [2B]
  const auto b = static_cast<std::int64_t>(pairs.size());
  return {scores.narrow(0, 0, b), scores.narrow(0, b, b)};
}

/// (accuracy, mean loss) over `pairs`, no gradients.
inline std::pair<double, double> evaluate_pairs(Qwen2RewardModel& model, const RewardModelBatcher& batcher,
                                                std::span<const PreferencePair* const> pairs, std::int64_t batch_size) {
  if (pairs.empty()) return {0.0, 0.0};
  at::NoGradGuard no_grad;
  double correct = 0, loss = 0;
  for (std::size_t begin = 0; begin < pairs.size(); begin += static_cast<std::size_t>(batch_size)) {
    const auto n = std::min(pairs.size() - begin, static_cast<std::size_t>(batch_size));
    auto [c, r] = score_pairs(model, batcher, pairs.subspan(begin, n));
    correct += (c > r).sum().item<double>();
    loss += -at::log_sigmoid(c - r).sum().item<double>();
  }
  return {correct / static_cast<double>(pairs.size()), loss / static_cast<double>(pairs.size())};
}

}  // namespace detail

/// Trains `model` (num_labels = 1) in place on `pairs` with the Bradley-Terry loss.
inline RewardModelTrainingResult train_reward_model(Qwen2RewardModel& model, const Tokenizer& tokenizer,
                                                    const std::vector<PreferencePair>& pairs,
                                                    const RewardModelTrainingOptions& options) {
  if (model->config().num_labels != 1) {
    throw Error(fmt::format("train_reward_model: expected a reward model with num_labels = 1, found {}",
                            model->config().num_labels));
  }
  if (options.epochs <= 0 || options.batch_size <= 0) throw Error("train_reward_model: epochs and batch_size must be > 0");
  if (!(options.eval_fraction >= 0 && options.eval_fraction <= 0.9)) {
    throw Error(fmt::format("train_reward_model: eval_fraction: expected a value in [0, 0.9], found {}",
                            options.eval_fraction));
  }
  options.lr.validate();
  const RewardModelBatcher batcher{&tokenizer, model->config().pad_token_id.value_or(tokenizer.pad_token_id().value_or(0)),
                                   options.max_tokens};

  std::vector<const PreferencePair*> order;
  for (const auto& p : pairs) order.push_back(&p);
  std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + 17);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  const auto eval_count = static_cast<std::size_t>(static_cast<double>(order.size()) * options.eval_fraction);
  std::vector<const PreferencePair*> eval(order.end() - static_cast<std::ptrdiff_t>(eval_count), order.end());
  std::vector<const PreferencePair*> train(order.begin(), order.end() - static_cast<std::ptrdiff_t>(eval_count));
  if (train.empty()) throw Error("train_reward_model: no training pairs left after holding out eval_fraction");

  RewardModelTrainingResult result;
  result.train_pairs = static_cast<std::int64_t>(train.size());
  result.eval_pairs = static_cast<std::int64_t>(eval.size());
  model->eval();
  result.eval_accuracy_before = detail::evaluate_pairs(model, batcher, eval, options.batch_size).first;
  model->train();

  MetricsWriter metrics;
  if (!options.metrics_path.empty()) metrics = MetricsWriter(options.metrics_path);
  const auto per_epoch = static_cast<std::int64_t>((train.size() + options.batch_size - 1) / options.batch_size);
  const std::int64_t total = per_epoch * options.epochs;
  LrSchedule schedule = options.lr;
  schedule.total_steps = total;
  ClippedAdamW optimizer(model->parameters(), AdamWOptions{.lr = schedule, .weight_decay = options.weight_decay,
                                                      .max_grad_norm = options.max_grad_norm});
  std::vector<double> losses;
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    for (std::size_t i = train.size(); i > 1; --i) std::swap(train[i - 1], train[rng() % i]);
    for (std::size_t begin = 0; begin < train.size(); begin += static_cast<std::size_t>(options.batch_size)) {
      const auto n = std::min(train.size() - begin, static_cast<std::size_t>(options.batch_size));
      auto [c, r] = detail::score_pairs(model, batcher, std::span(train).subspan(begin, n));
      const auto loss = -at::log_sigmoid(c - r).mean();
      loss.backward();
      const OptimizerUpdate update = optimizer.step();  // a non-finite gradient norm skips it
      const double lr = update.lr, norm = update.grad_norm;
      ++result.updates;
      const double l = loss.item<double>();
      const double acc = (c > r).to(at::kFloat).mean().item<double>();
      losses.push_back(l);
      metrics.write({{"update", result.updates}, {"epoch", epoch}, {"loss", l}, {"accuracy", acc},
                     {"margin", (c - r).mean().item<double>()}, {"grad_norm", norm}, {"lr", lr}});
      if (options.reporter != nullptr && (result.updates % options.log_every == 0 || result.updates == total)) {
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double eta = elapsed / static_cast<double>(result.updates) * static_cast<double>(total - result.updates);
        report(options.reporter, fmt::format("reward model: update {}/{} | loss {:.4f} | batch accuracy {:.2f} | {:.1f} pairs/s | ETA {}",
                                             result.updates, total, l, acc,
                                             static_cast<double>(result.updates * options.batch_size) / std::max(elapsed, 1e-9),
                                             format_duration(eta)));
      }
    }
  }
  const auto tenth = std::max<std::size_t>(1, losses.size() / 10);
  result.first_loss = std::accumulate(losses.begin(), losses.begin() + static_cast<std::ptrdiff_t>(tenth), 0.0) / static_cast<double>(tenth);
  result.last_loss = std::accumulate(losses.end() - static_cast<std::ptrdiff_t>(tenth), losses.end(), 0.0) / static_cast<double>(tenth);
  model->eval();
  std::tie(result.eval_accuracy, result.eval_loss) = detail::evaluate_pairs(model, batcher, eval, options.batch_size);
  return result;
}

}  // namespace grpo
