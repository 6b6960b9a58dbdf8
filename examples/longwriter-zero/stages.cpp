// The cached stages before RL and `train-rm` (stages.hpp).
#include "stages.hpp"

#include <fmt/format.h>
#include <torch/utils.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include <grpo/io/atomic_file.hpp>
#include <grpo/io/jsonl.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/trainer/reward_model_training.hpp>
#include <grpo/trainer/sft.hpp>

#include "commands.hpp"

namespace lwz {

namespace fs = std::filesystem;

std::string fingerprint(const json& section, std::initializer_list<fs::path> files, std::uint64_t seed) {
  std::string text = section.dump() + "|" + std::to_string(seed);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    text += "|" + ss.str();
  }
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

bool cached(const fs::path& dir, const std::string& print) {
  std::ifstream in(dir / "grpo_stage.json");
  if (!in) return false;
  const auto j = json::parse(in, nullptr, false);
  return !j.is_discarded() && j.value("fingerprint", "") == print;
}

void mark_cached(const fs::path& dir, const std::string& print, const json& extra) {
  json j = extra;
  j["fingerprint"] = print;
  grpo::io::write_file_atomically(dir / "grpo_stage.json", j.dump(2) + "\n");
}

void require_cached(const RunContext& ctx, const fs::path& dir, const char* stage) {
  if (!ctx.reuse_only) return;
  throw grpo::Error(fmt::format("{}: no finished {} from rank 0 here; data-parallel ranks share output_dir, "
                                "so run them on one node or on a shared file system",
                                dir.string(), stage));
}

grpo::Tokenizer load_tokenizer(const RunContext& ctx, const std::optional<fs::path>& model_dir) {
  if (!ctx.tokenizer_path.empty()) return grpo::Tokenizer::from_file(ctx.tokenizer_path);
  if (model_dir) return grpo::Tokenizer::from_file(*model_dir);
  throw grpo::Error(fmt::format("{}: tokenizer: needed when the policy is created from \"init\"", ctx.config.source));
}

namespace {

/// The architecture of an "init.config" section; `where` names it in errors.
grpo::Qwen2Config config_from_json(const json& j, const std::string& where) {
  return grpo::parse_qwen2_config(j, where);
}

}  // namespace

// ---- policy ------------------------------------------------------------------------------

grpo::Qwen2Policy build_policy(const PolicySpec& spec, const RunContext& ctx, const grpo::PromptOptions& prompt) {
  const grpo::Qwen2PolicyOptions policy_options{.logprob_chunk_size = spec.logprob_chunk};
  const grpo::Qwen2LoadOptions load{.device = ctx.device, .dtype = ctx.dtype,
                                    .activation_checkpointing = spec.activation_checkpointing};
  if (spec.model) return grpo::Qwen2Policy::load(*spec.model, load, policy_options);
  const auto init_where = fmt::format("{}: policy.init.config", ctx.config.source);
  if (!spec.warmup_data) {  // random weights (benchmarks): nothing worth caching
    std::fprintf(stderr, "policy: random initialisation (no warm-up data): for benchmarks, it writes noise\n");
    torch::manual_seed(ctx.seed);
    const auto config = config_from_json(spec.init_config, init_where);
    grpo::Qwen2Model model(config, grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype,
                                                      .activation_checkpointing = spec.activation_checkpointing});
    return grpo::Qwen2Policy(model, load_tokenizer(ctx, std::nullopt), policy_options);
  }
  const fs::path base = ctx.output_dir / "base-policy";
  const auto print = fingerprint(spec.section_json, {spec.warmup_data.value_or("")}, ctx.seed);
  if (cached(base, print)) {
    std::fprintf(stderr, "policy: reusing the warmed-up base policy in %s\n", base.c_str());
    auto policy = grpo::Qwen2Policy::load(base, load, policy_options);
    return policy;
  }
  require_cached(ctx, base, "base policy (warm-up)");
  auto tokenizer = load_tokenizer(ctx, std::nullopt);
  const auto config = config_from_json(spec.init_config, init_where);
  torch::manual_seed(ctx.seed);
  grpo::Qwen2Model model(config, grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype,
                                                    .activation_checkpointing = spec.activation_checkpointing});
  grpo::Qwen2Policy policy(model, tokenizer, policy_options);
  if (spec.warmup_data) {
    std::vector<grpo::SftExample> examples;
    std::ifstream in(*spec.warmup_data, std::ios::binary);
    if (!in) throw grpo::Error(fmt::format("{}: cannot open the warm-up data", spec.warmup_data->string()));
    grpo::io::for_each_jsonl(in, spec.warmup_data->string(), [&](const json& row, std::size_t line) {
      examples.push_back({grpo::apply_prompt_template(grpo::io::require_string(row, "prompt", spec.warmup_data->string(), line), prompt),
                          grpo::io::require_string(row, "completion", spec.warmup_data->string(), line)});
    });
    auto options = spec.warmup;
    options.metrics_path = ctx.output_dir / "warmup_metrics.jsonl";
    options.reporter = &lwz::reporter();
    std::fprintf(stderr, "policy: warm-up on %zu examples from %s\n", examples.size(), spec.warmup_data->c_str());
    const auto result = grpo::train_supervised(policy, tokenizer, examples, options);
    std::fprintf(stderr, "policy: warm-up done, loss %.3f -> %.3f per token\n", result.first_loss, result.last_loss);
  }
  policy.save_pretrained(base, grpo::Qwen2SaveOptions{.copy_files_from = ctx.tokenizer_path});
  mark_cached(base, print, {{"stage", "base-policy"}});
  return grpo::Qwen2Policy::load(base, load, policy_options);
}

// ---- writing reward model -----------------------------------------------------------------

fs::path train_or_reuse_reward_model(const WritingSpec& spec, const RunContext& ctx, const fs::path& out) {
  const auto print = fingerprint(spec.section_json, {*spec.pairs}, ctx.seed);
  if (cached(out, print)) {
    std::fprintf(stderr, "writing reward: reusing the trained reward model in %s\n", out.c_str());
    return out;
  }
  require_cached(ctx, out, "writing reward model");
  auto tokenizer = load_tokenizer(ctx, std::nullopt);
  auto config = config_from_json(spec.init_config, fmt::format("{}: rewards.writing.init.config", ctx.config.source));
  if (config.num_labels != 1) {
    throw grpo::Error(fmt::format("{}: rewards.writing.init.config: num_labels must be 1", ctx.config.source));
  }
  torch::manual_seed(ctx.seed + 1);
  grpo::Qwen2RewardModel model(config, grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype});
  const auto pairs = grpo::read_preference_pairs(*spec.pairs);
  auto options = spec.train;
  options.metrics_path = ctx.output_dir / "reward_model_metrics.jsonl";
  options.reporter = &lwz::reporter();
  std::fprintf(stderr, "writing reward: Bradley-Terry training on %zu pairs from %s\n", pairs.size(), spec.pairs->c_str());
  const auto r = grpo::train_reward_model(model, tokenizer, pairs, options);
  std::fprintf(stderr,
               "writing reward: held-out pair accuracy %.3f -> %.3f on %lld pairs (loss %.3f -> %.3f on training batches)\n",
               r.eval_accuracy_before, r.eval_accuracy, static_cast<long long>(r.eval_pairs), r.first_loss, r.last_loss);
  grpo::save_qwen2_reward_model(model, out, grpo::Qwen2SaveOptions{.copy_files_from = ctx.tokenizer_path});
  mark_cached(out, print,
              {{"stage", "reward-model"}, {"eval_accuracy_before", r.eval_accuracy_before},
               {"eval_accuracy", r.eval_accuracy}, {"eval_loss", r.eval_loss}, {"eval_pairs", r.eval_pairs},
               {"train_pairs", r.train_pairs}});
  return out;
}

grpo::WritingReward build_writing_reward(const WritingSpec& spec, const RunContext& ctx) {
  if (!spec.model && !spec.pairs) {  // random weights (benchmarks)
    std::fprintf(stderr, "writing reward: random initialisation (no preference pairs): for benchmarks, its scores are noise\n");
    torch::manual_seed(ctx.seed + 1);
    grpo::Qwen2RewardModel model(
        config_from_json(spec.init_config, fmt::format("{}: rewards.writing.init.config", ctx.config.source)),
        grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype});
    return grpo::WritingReward(model, load_tokenizer(ctx, std::nullopt), spec.score);
  }
  const fs::path dir = spec.model ? *spec.model : train_or_reuse_reward_model(spec, ctx, ctx.output_dir / "reward-model");
  auto model = grpo::load_qwen2_reward_model(dir, {.device = ctx.device, .dtype = ctx.dtype});
  auto tokenizer = ctx.tokenizer_path.empty() ? grpo::Tokenizer::from_file(dir) : grpo::Tokenizer::from_file(ctx.tokenizer_path);
  return grpo::WritingReward(model, std::move(tokenizer), spec.score);
}

// ---- train-rm --------------------------------------------------------------------------

void run_train_rm(const TrainArgs& args) {
  refuse_launcher("train-rm");
  RunContext ctx;
  ctx.config = load_config(args.config, args.set);
  Section r(&ctx.config.root, "", &ctx.config);
  read_context(ctx, r, "");
  auto rewards = r.section("rewards");
  auto writing = rewards.section("writing");
  auto spec = read_writing(writing, ctx);
  if (!spec.pairs) {
    throw grpo::Error(fmt::format("{}: rewards.writing.init.train.pairs: required for train-rm", ctx.config.source));
  }
  spec.model.reset();
  const fs::path out = args.output.empty() ? ctx.output_dir / "reward-model" : fs::path(args.output);
  fs::create_directories(ctx.output_dir);
  train_or_reuse_reward_model(spec, ctx, out);
  std::ifstream in(out / "grpo_stage.json");
  std::cout << json::parse(in).dump() << '\n';
}

}  // namespace lwz
