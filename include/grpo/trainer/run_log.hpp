#pragma once
// grpo::RunLog: the files a GRPO run writes for people, in its output folder (rank 0 only).
//
//   metrics.jsonl           one StepMetrics::to_json() row per step
//   events.out.tfevents.*   TensorBoard: the same numbers as scalars (tensorboard_scalars), and
//                           the completions table as markdown text every log_samples_every steps
//   samples.jsonl           the completions table (TRL's "completions" log): the first
//                           log_samples_per_group samples of every group, with rewards and advantage
//
// Resuming after step S keeps every row and event of steps <= S and drops later ones (that work
// is being redone), so a resumed run never shows a step twice. Every line is flushed as written.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "grpo/core/generation.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/io/json.hpp"
#include "grpo/io/tensorboard.hpp"
#include "grpo/trainer/metrics.hpp"
#include "grpo/trainer/rollout.hpp"
#include "grpo/trainer/step_metrics.hpp"

namespace grpo {

/// The completions-table rows of this rank's groups: the first `per_group` samples of each.
/// Row fields: step, group (global), prompt, target, completion, finish_reason,
/// completion_tokens, rewards {name: value}, advantage.
inline std::vector<nlohmann::json> completion_rows(const Rollout& r, const RewardTable& table, std::span<const float> adv,
                                                   std::span<const std::string> reward_names, std::int64_t step,
                                                   std::size_t per_group) {
  std::vector<nlohmann::json> rows;
  const auto G = static_cast<std::size_t>(r.group_size);
  per_group = std::min(per_group, G);
  for (std::size_t g = 0; g < r.prompts.size(); ++g) {
    for (std::size_t j = 0; j < per_group; ++j) {
      const std::size_t i = g * G + j;
      const auto& gen = r.generations[i];
      nlohmann::json rewards;
      for (std::size_t k = 0; k < reward_names.size(); ++k) rewards[reward_names[k]] = table.row(k)[i];
      rows.push_back({{"step", step},
                      {"group", r.global_group(g)},
                      {"prompt", r.prompts[g].prompt},
                      {"target", {r.prompts[g].target.lower, r.prompts[g].target.upper}},
                      {"completion", gen.text},
                      {"finish_reason", enum_name(finish_reason_names, gen.finish_reason)},
                      {"completion_tokens", gen.ids.size()},
                      {"rewards", rewards},
                      {"advantage", adv[i]}});
    }
  }
  return rows;
}

/// A completions-table row as written to samples.jsonl (`line`, no newline) and parsed (`row`).
struct CompletionRow {
  std::string line;
  nlohmann::json row;
};

/// Every rank's rows (each rank calls it), on rank 0 in global group order; empty elsewhere. Rows
/// travel between ranks as text and are parsed once on rank 0 (for their group and the markdown).
inline std::vector<CompletionRow> gather_completion_rows(const std::vector<nlohmann::json>& rows, Communicator* comm) {
  std::string lines;
  for (const auto& row : rows) lines += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
  const std::vector<std::string> ranks = comm != nullptr ? all_gather(*comm, lines) : std::vector<std::string>{lines};
  if (comm != nullptr && comm->rank() != 0) return {};
  std::vector<CompletionRow> all;
  for (const auto& text : ranks) {
    std::size_t begin = 0;
    for (std::size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
      std::string line = text.substr(begin, end - begin);
      nlohmann::json row = io::parse_json(line, "completion rows");
      all.push_back({std::move(line), std::move(row)});
    }
  }
  // A rank's groups need not be contiguous in the global order.
  std::stable_sort(all.begin(), all.end(), [](const CompletionRow& a, const CompletionRow& b) {
    return a.row["group"].get<std::int64_t>() < b.row["group"].get<std::int64_t>();
  });
  return all;
}

class RunLog {
 public:
  /// Inactive: every call does nothing (ranks other than 0).
  RunLog() = default;
  /// Opens the run's files in `dir`, keeping what steps 1..resume_step wrote.
  RunLog(const std::filesystem::path& dir, std::int64_t resume_step)
      : active_(true),
        metrics_(dir / "metrics.jsonl", resume_step),
        samples_(dir / "samples.jsonl", resume_step),
        tensorboard_(dir, resume_step) {}

  /// One step's metrics: a metrics.jsonl row and its TensorBoard scalars.
  void write(const StepMetrics& m) {
    if (!active_) return;
    metrics_.write(m.to_json());
    const double now = wall_time();
    for (const auto& [tag, value] : tensorboard_scalars(m)) tensorboard_.add_scalar(tag, value, m.step, now);
    tensorboard_.flush();
  }

  /// The completions table of step `step` (rows in global order, as gather_completion_rows gives
  /// them): appended to samples.jsonl, and as one markdown table under the TensorBoard text tag
  /// "completions".
  void write_samples(std::int64_t step, std::span<const CompletionRow> rows) {
    if (!active_) return;
    std::string table = "| group | advantage | rewards | finish | completion |\n|---|---|---|---|---|\n";
    for (const auto& [line, row] : rows) {
      samples_.write_line(line);
      std::string rewards;
      for (const auto& [name, value] : row["rewards"].items()) rewards += fmt::format("{}{} {:.3f}", rewards.empty() ? "" : ", ", name, value.get<double>());
      table += fmt::format("| {} | {:.3f} | {} | {} | {} |\n", row["group"].get<std::int64_t>(), row["advantage"].get<double>(),
                           rewards, row["finish_reason"].get<std::string>(), markdown_cell(row["completion"].get<std::string>()));
    }
    tensorboard_.add_text("completions", table, step, wall_time());
    tensorboard_.flush();
  }

 private:
  static double wall_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  /// A table cell: pipes escaped, line breaks as <br>.
  static std::string markdown_cell(const std::string& text) {
    std::string out;
    for (char c : text) {
      if (c == '|') out += "\\|";
      else if (c == '\n') out += "<br>";
      else if (c != '\r') out += c;
    }
    return out;
  }

  bool active_ = false;
  MetricsWriter metrics_;
  MetricsWriter samples_;
  io::TensorBoardWriter tensorboard_;
};

}  // namespace grpo
