#pragma once
// Training prompts with their target ranges, and the order in which a run consumes them.
//
// A prompt file is JSONL; each line has "prompt" (the user's request) and optionally its target
// range as "lower"/"upper" (words) or "target": {"lower", "upper"}; a line without one gets the
// range extract_length_target() gives (the paper's rules for an explicit requirement, else the
// deliverable default). Prompts whose range is [0, 0] are unanswerable and dropped (method.md).
//
// Order: epoch e visits the prompts in a permutation drawn from (seed, e); the run's position is
// the number of prompts consumed so far, so (seed, position) fully determines what comes next —
// that is all a resumed run needs.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/io/json.hpp"
#include "grpo/io/jsonl.hpp"
#include "grpo/text/targets.hpp"

namespace grpo {

/// One training prompt.
struct PromptRecord {
  std::string prompt;         ///< the user's request (the template is applied at sampling)
  WordRange target;           ///< target answer length in words
  std::string target_source;  ///< "file", "rule" or "default"
};

/// The largest word count a prompt file's "lower"/"upper" may give (the bound extract_length_target
/// applies to requirements in the text too): far above any real target, far below an overflow.
inline constexpr std::int64_t max_target_words = 1'000'000'000;

/// The target range a prompt row gives itself, as "lower"/"upper" or "target": {"lower", "upper"};
/// nullopt when it gives none. Bad values throw an error naming `source` and `line`.
inline std::optional<WordRange> target_fields(const io::json& row, const std::string& source, std::size_t line) {
  const io::json* range = &row;
  if (row.contains("target")) range = &row["target"];
  if (!range->is_object() || !range->contains("lower") || !range->contains("upper")) return std::nullopt;
  const auto& lo = (*range)["lower"];
  const auto& hi = (*range)["upper"];
  const auto lower = io::json_integer(lo, 0, max_target_words);
  const auto upper = io::json_integer(hi, 0, max_target_words);
  if (!lower || !upper || *lower > *upper) {
    throw Error(fmt::format("{}:{}: \"lower\"/\"upper\" must be integers with 0 <= lower <= upper <= {}, found {}, {}",
                            source, line, max_target_words, io::quote_json(lo), io::quote_json(hi)));
  }
  return WordRange{*lower, *upper};
}

class PromptDataset {
 public:
  PromptDataset() = default;
  explicit PromptDataset(std::vector<PromptRecord> records, std::uint64_t seed = 0)
      : records_(std::move(records)), seed_(seed) {
    if (records_.empty()) throw Error("PromptDataset: no usable prompts (every prompt was empty or unanswerable)");
  }

  /// Reads a JSONL prompt file (see the header comment). Errors name the file and the line.
  static PromptDataset from_jsonl(const std::filesystem::path& path, std::uint64_t seed = 0,
                                  const TargetRules& rules = {}) {
    std::vector<PromptRecord> records;
    std::size_t dropped = 0;
    const std::string source = path.string();
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(source + ": cannot open the prompt file for reading");
    io::for_each_jsonl(in, source, [&](const io::json& row, std::size_t line) {
      PromptRecord record;
      record.prompt = io::require_string(row, "prompt", source, line);
      if (const auto range = target_fields(row, source, line)) {
        record.target = *range;
        record.target_source = "file";
      } else {
        const LengthTarget t = extract_length_target(record.prompt, rules);
        record.target = t.range;
        record.target_source = std::string(t.source);
      }
      if (record.target == WordRange{0, 0} || record.prompt.empty()) {
        ++dropped;
        return;
      }
      records.push_back(std::move(record));
    });
    PromptDataset dataset(std::move(records), seed);
    dataset.dropped_ = dropped;
    return dataset;
  }

  [[nodiscard]] std::size_t size() const { return records_.size(); }
  [[nodiscard]] std::size_t dropped() const { return dropped_; }
  [[nodiscard]] const PromptRecord& operator[](std::size_t i) const { return records_.at(i); }

  /// The `count` prompts starting at run position `position` (crossing epochs as needed).
  [[nodiscard]] std::vector<const PromptRecord*> batch(std::uint64_t position, std::size_t count) const {
    std::vector<const PromptRecord*> out;
    out.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint64_t p = position + i;
      const std::uint64_t epoch = p / records_.size();
      if (epoch != cached_epoch_ || order_.empty()) shuffle_for(epoch);
      out.push_back(&records_[order_[p % records_.size()]]);
    }
    return out;
  }

 private:
  void shuffle_for(std::uint64_t epoch) const {
    order_.resize(records_.size());
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    // A fixed engine and our own Fisher-Yates, so the order is the same on every platform
    // (std::shuffle's algorithm is implementation-defined).
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + epoch + 1);
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng() % i]);
    cached_epoch_ = epoch;
  }

  std::vector<PromptRecord> records_;
  std::uint64_t seed_ = 0;
  std::size_t dropped_ = 0;
  mutable std::vector<std::size_t> order_;
  mutable std::uint64_t cached_epoch_ = ~std::uint64_t{0};
};

}  // namespace grpo
