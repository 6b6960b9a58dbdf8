// Text subcommands: count-words, length-target, score (no model needed).
//
// All three read JSON Lines (a file, or standard input) and write JSON Lines to standard output:
// one output line per non-blank input line, in order, with the input's fields kept in their order
// and the new fields appended (a new field replaces an input field of the same name). Blank input
// lines are skipped. Every line is read and scored before anything is written: the first bad line
// (invalid JSON, not an object, a missing or mistyped field) stops the program with
// "<source>:<line>: <what is wrong>" on standard error and exit code 1, with nothing written.
#include <grpo/core/error.hpp>
#include <grpo/core/reward_table.hpp>
#include <grpo/core/sample.hpp>
#include <grpo/rewards/format.hpp>
#include <grpo/rewards/length.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/text/completion.hpp>
#include <grpo/text/repetition.hpp>
#include <grpo/text/targets.hpp>
#include <grpo/text/word_count.hpp>

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "jsonl_rows.hpp"

namespace {

using lwz::Row;
using lwz::jsonl_contract;
using lwz::string_field;
using lwz::transform_jsonl;

/// A non-negative whole number of words (an integral float such as 2000.0 is accepted), or nullopt
/// when the field is absent or null.
std::optional<std::int64_t> word_count_field(const Row& row, const std::string& name) {
  const auto it = row.find(name);
  if (it == row.end() || it->is_null()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto v = it->get<std::uint64_t>();
    if (v <= 1'000'000'000) return static_cast<std::int64_t>(v);
  } else if (it->is_number_integer()) {
    const auto v = it->get<std::int64_t>();
    if (v >= 0 && v <= 1'000'000'000) return v;
  } else if (it->is_number_float()) {
    const double v = it->get<double>();
    if (std::isfinite(v) && v >= 0 && v <= 1e9 && v == std::floor(v)) return static_cast<std::int64_t>(v);
  }
  throw grpo::Error("field \"" + name + "\" must be a whole number of words from 0 to 1e9, found " + grpo::io::quote_json(*it));
}

/// A float reward as the shortest decimal that reads back as the same float ("0.015", not
/// "0.014999999664723873", which is what widening it to double prints).
double shortest(float value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::strtod(std::string(buffer, result.ptr).c_str(), nullptr);
}

Row target_json(const grpo::WordRange& range, std::string_view source) {
  Row t = Row::object();
  t["lower"] = range.lower;
  t["upper"] = range.upper;
  t["source"] = std::string(source);
  return t;
}

void add_count_words(CLI::App& app) {
  struct Options {
    std::string input;
    std::string field = "response";
    bool answer_only = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "count-words", std::string("Adds \"words\": the LongBench-Write word count of a string field (CJK characters "
                                 "U+4E00..U+9FFF plus runs of ASCII-only letters). ") + jsonl_contract);
  cmd->add_option("--input", o->input, "JSONL file, or - for standard input")->default_str("-");
  cmd->add_option("--field", o->field, "the string field to count")->capture_default_str();
  cmd->add_flag("--answer-only", o->answer_only, "count only the <answer> block of the field (no <answer>: 0)");
  cmd->callback([o] {
    transform_jsonl(o->input, [&](Row& row) {
      const std::string text = string_field(row, o->field);
      row["words"] = o->answer_only ? grpo::measured_words(text, grpo::MeasuredText::answer_block) : grpo::word_count(text);
    });
  });
}

void add_length_target(CLI::App& app) {
  struct Options {
    std::string input;
    std::string field = "prompt";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "length-target",
      std::string("Adds \"target\": {\"lower\", \"upper\", \"source\"}, the prompt's target word range: an explicit "
                  "requirement under the paper's rules (source \"rule\"), else a default by deliverable (source "
                  "\"default\"). ") + jsonl_contract);
  cmd->add_option("--input", o->input, "JSONL file, or - for standard input")->default_str("-");
  cmd->add_option("--field", o->field, "the string field holding the prompt")->capture_default_str();
  cmd->callback([o] {
    transform_jsonl(o->input, [&](Row& row) {
      const grpo::LengthTarget t = grpo::extract_length_target(string_field(row, o->field));
      row["target"] = target_json(t.range, t.source);
    });
  });
}

void add_score(CLI::App& app) {
  struct Options {
    std::string input;
    double max_factor = 2.0;
    std::int64_t max_words = 0;
    double repetition_weight = 1.0;
    bool whole_response = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "score",
      std::string("Scores \"response\" for \"prompt\" with the library's rewards and adds one field per reward "
                  "(\"length_reward\", \"format_reward\"), \"answer_words\", \"repetition\" (the format reward's "
                  "repetition ratio), \"target\" (from \"lower\"/\"upper\" when both are given, source \"input\"; "
                  "else extracted from the prompt) and, when \"length\" (a required length in words) is given, "
                  "\"S_l\" (LongBench-Write length score of the answer). ") + jsonl_contract);
  cmd->add_option("--input", o->input, "JSONL file, or - for standard input")->default_str("-");
  cmd->add_option("--max-factor", o->max_factor, "length reward: L_max = max-factor * upper (> 1)")->capture_default_str();
  cmd->add_option("--max-words", o->max_words, "length reward: a fixed L_max in words (overrides --max-factor)");
  cmd->add_option("--repetition-weight", o->repetition_weight, "format reward: 1 - weight * repetition ratio (>= 0)")
      ->capture_default_str();
  cmd->add_flag("--whole-response", o->whole_response,
                "measure the whole response instead of its <answer> block (for models prompted without tags)");
  cmd->callback([o] {
    if (!(std::isfinite(o->max_factor) && o->max_factor > 1.0)) {
      throw grpo::Error("score: --max-factor must be > 1 (L_max = max-factor * upper), found " + std::to_string(o->max_factor));
    }
    if (!(std::isfinite(o->repetition_weight) && o->repetition_weight >= 0.0)) {
      throw grpo::Error("score: --repetition-weight must be >= 0, found " + std::to_string(o->repetition_weight));
    }
    if (o->max_words < 0) throw grpo::Error("score: --max-words must be > 0, found " + std::to_string(o->max_words));
    const auto measure = o->whole_response ? grpo::MeasuredText::completion : grpo::MeasuredText::answer_block;
    grpo::LengthReward length{.max_factor = o->max_factor, .measure = measure};
    if (o->max_words > 0) length.max_words = o->max_words;
    // The writing reward (a reward model) joins this set when a model is given.
    grpo::RewardSet rewards{length, grpo::FormatReward{.repetition_weight = o->repetition_weight}};
    const auto names = rewards.names();
    grpo::RewardTable table(rewards.size, 1);
    transform_jsonl(o->input, [&](Row& row) {
      // Copies: adding fields to `row` below may move its strings.
      const std::string response = string_field(row, "response");
      const auto lower = word_count_field(row, "lower");
      const auto upper = word_count_field(row, "upper");
      if (lower.has_value() != upper.has_value()) {
        throw grpo::Error(std::string("fields \"lower\" and \"upper\" must be given together, found only \"") +
                          (lower ? "lower" : "upper") + "\"; give both, or neither to extract the target from the prompt");
      }
      grpo::LengthTarget target{{}, "input"};
      std::string prompt;
      if (lower) {
        target.range = {*lower, *upper};
        if (row.contains("prompt")) prompt = string_field(row, "prompt");
      } else {
        prompt = string_field(row, "prompt");
        target = grpo::extract_length_target(prompt);
      }
      if (target.range.lower > target.range.upper) {
        throw grpo::Error("expected \"lower\" <= \"upper\", found " + std::to_string(target.range.lower) + " > " +
                          std::to_string(target.range.upper));
      }
      const grpo::Sample sample{.prompt = prompt, .completion = response, .target = target.range};
      rewards.score(grpo::SampleBatch(&sample, 1), table.view());
      for (std::size_t k = 0; k < rewards.size; ++k) row[names[k] + "_reward"] = shortest(table.row(k)[0]);
      const std::int64_t words = grpo::measured_words(response, measure);
      row["answer_words"] = words;
      row["repetition"] = grpo::repetition_ratio(
          o->whole_response ? std::string_view(response) : grpo::parse_completion(response).answer);
      row["target"] = target_json(target.range, target.source);
      if (const auto required = word_count_field(row, "length")) {
        if (*required == 0) throw grpo::Error("field \"length\" must be > 0 (a required length in words), found 0");
        row["S_l"] = grpo::longbench_length_score(*required, words);
      }
    });
  });
}

void add_text_commands(CLI::App& app) {
  add_count_words(app);
  add_length_target(app);
  add_score(app);
}

const lwz::Registration registration{&add_text_commands};

}  // namespace
