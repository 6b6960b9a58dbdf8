#pragma once
// What a person sees during training: a progress line per step (rate, ETA) through the program's
// grpo::Reporter, and one JSON object per line in a metrics file that plots and spreadsheets read
// directly.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/core/reporter.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/json.hpp"

namespace grpo {

/// Appends one JSON object per line to a metrics file (flushed every line, so a killed run keeps
/// every finished step). Rows carry the 1-based number of the step they describe; resuming after
/// `resume_step` completed steps keeps rows 1..resume_step and drops later ones (that work is
/// being redone).
class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::filesystem::path& path, std::int64_t resume_step = 0) : path_(path) {
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    if (resume_step > 0 && std::filesystem::exists(path)) truncate_after(resume_step);
    out_.open(path, resume_step > 0 ? std::ios::app : std::ios::trunc);
    if (!out_) throw Error(path.string() + ": cannot open the metrics file for writing");
  }

  void write(const nlohmann::json& row) { write_line(row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)); }

  /// One row already serialised (no newline).
  void write_line(std::string_view line) {
    if (!out_.is_open()) return;
    out_ << line << '\n';
    out_.flush();
    if (!out_) throw Error(path_.string() + ": cannot write to the file (disk full or removed?)");
  }

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  void truncate_after(std::int64_t resume_step) {
    std::ifstream in(path_);
    std::vector<std::string> keep;
    std::string line;
    while (std::getline(in, line)) {
      // A row that does not parse (a line cut by a kill) or has no integer step is dropped.
      nlohmann::json row;
      if (io::try_parse_json(line, row) || !row.is_object() || !row.contains("step")) continue;
      const auto step = io::json_integer(row["step"], 0, std::numeric_limits<std::int64_t>::max());
      if (step && *step <= resume_step) keep.push_back(line);
    }
    in.close();
    std::string text;
    for (const auto& kept : keep) (text += kept) += '\n';
    io::write_file_atomically(path_, text);  // checked, and a kill here leaves the old file whole
  }

  std::filesystem::path path_;
  std::ofstream out_;
};

/// Formats a duration as "1h02m", "3m05s" or "42s".
inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  auto s = static_cast<std::int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

/// The per-step progress line:
///   step 12/150 | reward 0.412 (length 0.55 writing 0.31 format 0.38) | 1.9k tok/s | 14.2 s/step | ETA 32m10s
/// Rate and ETA use the mean over the steps of this run (a resumed run starts a new mean).
class ProgressLine {
 public:
  /// `reporter` may be null (nothing is shown).
  ProgressLine(std::int64_t first_step, std::int64_t total_steps, Reporter* reporter)
      : first_step_(first_step), total_steps_(total_steps), reporter_(reporter), start_(Clock::now()) {}

  /// `step` is 1-based (the step just finished); `rewards` are (name, mean) pairs, the first the
  /// composite; `tokens` the sampled tokens of this step.
  void print(std::int64_t step, const std::vector<std::pair<std::string, double>>& rewards, double tokens,
             double step_seconds) {
    tokens_ += tokens;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const auto done = static_cast<double>(step - first_step_);
    const double per_step = done > 0 ? elapsed / done : step_seconds;
    const double eta = per_step * static_cast<double>(total_steps_ - step);
    std::string reward_text;
    for (std::size_t i = 0; i < rewards.size(); ++i) {
      if (i == 0) {
        reward_text = fmt::format("reward {:.3f}", rewards[i].second);
        if (rewards.size() > 1) reward_text += " (";
      } else {
        reward_text += fmt::format("{}{} {:.3f}", i > 1 ? " " : "", rewards[i].first, rewards[i].second);
        if (i + 1 == rewards.size()) reward_text += ")";
      }
    }
    const double rate = elapsed > 0 ? tokens_ / elapsed : 0.0;
    report(reporter_, fmt::format("step {}/{} | {} | {} tok/s | {:.1f} s/step | ETA {}", step, total_steps_, reward_text,
                                  human(rate), step_seconds, format_duration(eta)));
  }

 private:
  using Clock = std::chrono::steady_clock;
  static std::string human(double v) {
    if (v >= 1e6) return fmt::format("{:.1f}M", v / 1e6);
    if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
    return fmt::format("{:.0f}", v);
  }
  std::int64_t first_step_;
  std::int64_t total_steps_;
  Reporter* reporter_;
  Clock::time_point start_;
  double tokens_ = 0.0;
};

}  // namespace grpo
