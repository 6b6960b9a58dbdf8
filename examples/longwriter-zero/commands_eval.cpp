// `eval`: samples completions for prompts and reports the LongBench-Write length score S_l, the
// paper's rewards, the format pass rate and the repetition rate (docs/training.md, "Evaluation").
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <grpo/io/jsonl.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/model/qwen2_policy.hpp>
#include <grpo/rewards/format.hpp>
#include <grpo/rewards/length.hpp>
#include <grpo/rewards/writing.hpp>
#include <grpo/sampling/prompts.hpp>
#include <grpo/advantage/reward_statistics.hpp>
#include <grpo/core/enum_names.hpp>
#include <grpo/core/generation.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/text/targets.hpp>
#include <grpo/trainer/metrics.hpp>
#include <grpo/trainer/step_metrics.hpp>
#include <grpo/data/prompt_dataset.hpp>

#include "commands.hpp"
#include "dtype_names.hpp"
#include "model_inputs.hpp"
#include "outputs.hpp"

namespace {

using json = nlohmann::json;

struct EvalArgs {
  std::string model, reward_model, input, output;
  std::string device = "cpu", dtype = "float32", template_name = "think";
  std::int64_t samples = 1, max_new_tokens = 15500, batch_size = 16;
  double temperature = 0.6, top_p = 0.95;
  std::uint64_t seed = 0;
  std::int64_t tensor_parallel = 1;
};

void run_eval(const EvalArgs& args) {
  c10::Device device(args.device);
  // --tensor-parallel T > 1: T ranks (torchrun) split the policy and the reward model; rank 0 writes.
  const auto mesh = lwz::join_tensor_group("eval", args.tensor_parallel, device, args.input);
  const grpo::Qwen2LoadOptions load{.device = device, .dtype = grpo::parse_enum(lwz::dtype_names, args.dtype, "--dtype"),
                                    .tensor_parallel = mesh.tensor_parallel()};
  const grpo::PromptOptions prompt{.style = grpo::parse_enum(grpo::prompt_template_names, args.template_name, "--template")};
  // Before any work: the output file can be written (it appears, complete, when eval finishes),
  // and every input line is read and checked.
  std::optional<grpo::io::AtomicFileWriter> out_file;
  if (!args.output.empty() && mesh.is_main()) out_file.emplace(lwz::open_output_file(args.output, "--output"));
  struct Row {
    json input;
    std::string prompt;
    grpo::WordRange target;
    std::optional<double> required;
    std::size_t line = 0;
    std::vector<std::int64_t> ids;  // the templated prompt's tokens
  };
  std::vector<Row> rows;
  const auto source = lwz::input_name(args.input);
  {
    auto in = lwz::open_input(args.input);
    grpo::io::for_each_jsonl(*in, source, [&](json row, std::size_t line) {
      Row r{row, grpo::io::require_string(row, "prompt", source, line), {}, std::nullopt, line, {}};
      // The same target fields (and checks) as training prompt files.
      const auto range = grpo::target_fields(row, source, line);
      r.target = range ? *range : grpo::extract_length_target(r.prompt).range;
      if (row.contains("length") && !row["length"].is_null()) {
        if (!row["length"].is_number() || !(row["length"].get<double>() > 0) ||
            row["length"].get<double>() > static_cast<double>(grpo::max_target_words)) {
          throw grpo::Error(
              fmt::format("{}:{}: \"length\" must be a number in (0, {}] (the required length in words), found {}",
                          source, line, grpo::max_target_words, grpo::io::quote_json(row["length"])));
        }
        r.required = row["length"].get<double>();
      }
      rows.push_back(std::move(r));
    });
  }
  if (rows.empty()) throw grpo::Error(source + ": no prompts (the input has no non-blank line)");
  const auto where = [&](const Row& r) { return fmt::format("{}:{}: ", source, r.line); };
  lwz::check_model_folder(args.model, "--model");
  if (!args.reward_model.empty()) lwz::check_model_folder(args.reward_model, "--reward-model");
  auto policy = grpo::Qwen2Policy::load(args.model, load);
  std::optional<grpo::WritingReward> writing;
  if (!args.reward_model.empty()) {
    writing.emplace(grpo::load_qwen2_reward_model(args.reward_model, load), grpo::Tokenizer::from_file(args.reward_model));
  }
  const auto max_positions = policy.model()->config().max_position_embeddings;
  for (auto& r : rows) {
    try {
      r.ids = policy.tokenizer().encode(grpo::apply_prompt_template(r.prompt, prompt), policy.options().allow_special_in_prompts);
      lwz::check_context_length(static_cast<std::int64_t>(r.ids.size()), args.max_new_tokens, max_positions,
                                "--max-new-tokens", (std::filesystem::path(args.model) / "config.json").string());
    } catch (const grpo::Error& e) {
      throw grpo::Error(where(r) + e.what());
    }
  }
  grpo::SamplingOptions sampling{.temperature = args.temperature, .top_p = args.top_p, .max_new_tokens = args.max_new_tokens,
                                 .stop_strings = {"</answer>"}, .seed = args.seed};
  if (auto eos = policy.tokenizer().eos_token_id()) sampling.stop_token_ids = {*eos};
  // The trainer's own rewards and per-sample metrics (grpo::sample_metrics), scored the same way.
  grpo::RewardSet text_rewards{grpo::LengthReward{}, grpo::FormatReward{}};
  const auto text_names = text_rewards.names();
  std::vector<std::string> reward_names(text_names.begin(), text_names.end());
  if (writing) reward_names.emplace_back(writing->name());
  std::vector<std::vector<float>> rewards(reward_names.size());  // [K][N] over every batch
  std::vector<grpo::SampleMetricName> metric_names = text_rewards.sample_metric_names();
  std::vector<std::vector<double>> metrics(metric_names.size());  // [M][N]
  double s_l = 0, s_l_n = 0, rep_flag = 0, trunc = 0;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::size_t> jobs;
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::int64_t s = 0; s < args.samples; ++s) jobs.push_back(i);
  for (std::size_t begin = 0; begin < jobs.size(); begin += static_cast<std::size_t>(args.batch_size)) {
    const auto end = std::min(jobs.size(), begin + static_cast<std::size_t>(args.batch_size));
    std::vector<std::vector<std::int64_t>> prompts;
    for (std::size_t j = begin; j < end; ++j) prompts.push_back(rows[jobs[j]].ids);
    sampling.seed = args.seed + begin;  // sample j draws with seed + j, whatever the batch size
    std::vector<grpo::Generation> generations;
    try {
      generations = policy.generate_ids(prompts, sampling);
    } catch (const grpo::Error& batch_error) {
      // Non-finite logits: redo the batch one sample at a time to name the line that fails.
      for (std::size_t j = begin; j < end; ++j) {
        auto one = sampling;
        one.seed = args.seed + j;
        try {
          policy.generate_ids(std::span(prompts).subspan(j - begin, 1), one);
        } catch (const grpo::Error& e) {
          throw grpo::Error(where(rows[jobs[j]]) + e.what());
        }
      }
      throw grpo::Error(fmt::format("{}:{}-{} (one batch of --batch-size samples): {}", source, rows[jobs[begin]].line,
                                    rows[jobs[end - 1]].line, batch_error.what()));
    }
    std::vector<grpo::Sample> samples;
    for (std::size_t j = begin; j < end; ++j) {
      const auto& g = generations[j - begin];
      samples.push_back({.prompt = rows[jobs[j]].prompt, .completion = g.text, .target = rows[jobs[j]].target,
                         .truncated = g.finish_reason == grpo::FinishReason::length});
    }
    const std::size_t b = samples.size();
    grpo::RewardTable table(reward_names.size(), b);
    text_rewards.score(samples, grpo::RewardTableView<float>{table.view().data, text_names.size(), b});
    if (writing) writing->score(samples, table.row(text_names.size()));
    auto [names, values] = grpo::reward_sample_metrics(text_rewards, samples);  // [M, b]
    // One rule for non-finite results: an error naming the line (a NaN reward model, say).
    for (std::size_t i = 0; i < b; ++i) {
      for (std::size_t k = 0; k < reward_names.size(); ++k) {
        if (!std::isfinite(table.row(k)[i])) {
          throw grpo::Error(fmt::format("{}the {} reward of sample {} is {} (not finite){}", where(rows[jobs[begin + i]]),
                                        reward_names[k], (begin + i) % static_cast<std::size_t>(args.samples),
                                        table.row(k)[i],
                                        k < text_names.size() ? "" : "; check the reward model's weights and the dtype"));
        }
      }
    }
    for (std::size_t i = 0; i < b; ++i) {
      const auto& sample = samples[i];
      const auto& row = rows[jobs[begin + i]];
      json out = row.input;
      out["completion"] = sample.completion;
      out["finish_reason"] = grpo::enum_name(grpo::finish_reason_names,
                                             sample.truncated ? grpo::FinishReason::length : grpo::FinishReason::stop);
      for (std::size_t k = 0; k < reward_names.size(); ++k) {
        out[reward_names[k] + "_reward"] = table.row(k)[i];
        rewards[k].push_back(table.row(k)[i]);
      }
      for (std::size_t m = 0; m < names.size(); ++m) {
        const double v = values[m * b + i];
        metrics[m].push_back(v);
        if (names[m].name == "answer_words") out["answer_words"] = static_cast<std::int64_t>(v);
        else out[std::string(names[m].name)] = v;
        if (names[m].name == "repetition") rep_flag += v > 0.1 ? 1 : 0;
        if (names[m].name == "answer_words" && row.required) {
          const double score = grpo::longbench_length_score(static_cast<std::int64_t>(*row.required), static_cast<std::int64_t>(v));
          out["S_l"] = score;
          s_l += score, s_l_n += 1;
        }
      }
      if (out_file) out_file->write(out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
      trunc += sample.truncated ? 1 : 0;
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double eta = elapsed / static_cast<double>(end) * static_cast<double>(jobs.size() - end);
    lwz::reporter().report(fmt::format("eval: {}/{} samples | {:.2f} samples/s | ETA {}", end, jobs.size(),
                                       static_cast<double>(end) / std::max(elapsed, 1e-9), grpo::format_duration(eta)));
  }
  // The summary: each reward's mean and the composite as the trainer's metrics compute them
  // (reward_statistics, composite_reward), each per-sample metric's mean under its step name.
  const double n = static_cast<double>(jobs.size());
  grpo::RewardTable all(reward_names.size(), jobs.size());
  for (std::size_t k = 0; k < reward_names.size(); ++k) std::copy(rewards[k].begin(), rewards[k].end(), all.row(k).begin());
  const auto stats = grpo::reward_statistics(all.view(), 1);
  json summary{{"samples", n}, {"repetition_rate", rep_flag / n}, {"truncated_fraction", trunc / n}};
  for (std::size_t k = 0; k < reward_names.size(); ++k) summary[reward_names[k] + "_reward"] = stats[k].mean;
  for (std::size_t m = 0; m < metric_names.size(); ++m) {
    double sum = 0;
    for (double v : metrics[m]) sum += v;
    summary[std::string(metric_names[m].mean_name)] = sum / n;
  }
  summary["format_pass_rate"] = summary["well_formed_fraction"];  // the name eval reported it under before
  if (s_l_n > 0) summary["S_l"] = s_l / s_l_n;
  if (writing) summary["reward"] = grpo::composite_reward(stats);  // metrics.jsonl's composite: all three rewards
  if (out_file) out_file->commit();
  lwz::write_stdout(summary.dump() + "\n");
}

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Generate for prompts and report LongBench-Write S_l, rewards, format pass rate "
                                         "and repetition rate (summary JSON on stdout)");
  cmd->add_option("--model", args->model, "policy checkpoint folder (config, safetensors, tokenizer)")->required();
  cmd->add_option("--input", args->input, "JSONL prompts: prompt, optional lower/upper, optional length (for S_l)")->required();
  cmd->add_option("--reward-model", args->reward_model, "writing reward model folder (adds writing_reward)");
  cmd->add_option("--output", args->output,
                  "per-sample JSONL results (its folder must exist; written atomically when eval finishes)");
  cmd->add_option("--samples", args->samples, "completions per prompt")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--temperature", args->temperature, "")->capture_default_str();
  cmd->add_option("--top-p", args->top_p, "")->capture_default_str();
  cmd->add_option("--template", args->template_name, grpo::enum_choices(grpo::prompt_template_names))->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--device", args->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, grpo::enum_choices(lwz::dtype_names))->capture_default_str();
  cmd->add_option("--seed", args->seed, "")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--tensor-parallel", args->tensor_parallel,
                  "split the models over T ranks: launch with torchrun --nproc_per_node T; rank 0 writes")
      ->capture_default_str();
  cmd->callback([args] { run_eval(*args); });
}

const lwz::Registration registration{&add_eval_command};

}  // namespace
