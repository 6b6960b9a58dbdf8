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
#include <grpo/io/json.hpp>
#include <grpo/io/jsonl.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/trainer/reward_model_training.hpp>
#include <grpo/trainer/sft.hpp>

#include "commands.hpp"
#include "outputs.hpp"

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

/// The largest grpo_stage.json read (ours are a few hundred bytes).
constexpr std::uintmax_t max_stage_file_bytes = std::uintmax_t{1} << 20;

bool cached(const fs::path& dir, const std::string& print) {
  if (!fs::is_regular_file(dir / "grpo_stage.json")) return false;
  json j;
  try {
    j = grpo::io::read_json_file(dir / "grpo_stage.json", max_stage_file_bytes);
  } catch (const grpo::Error&) {
    return false;  // unreadable or damaged: make the stage again
  }
  const auto it = j.find("fingerprint");  // end() when j is not an object
  return it != j.end() && *it == print;
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

// ---- tensor parallelism --------------------------------------------------------------------

void check_models_split(const PolicySpec& policy, const WritingSpec& writing, const RunContext& ctx) {
  const int tensor = ctx.tensor_parallel.size();
  if (tensor <= 1) return;
  const auto option = fmt::format("{}: parallel.tensor", ctx.config.source);
  if (policy.lora) {
    throw grpo::Error(fmt::format("{} = {}: LoRA adapters (policy.lora) are not supported with tensor parallelism",
                                  option, tensor));
  }
  const auto check = [&](const std::optional<fs::path>& folder, const json& init, const char* which) {
    const auto config = folder ? grpo::load_qwen2_config(*folder)
                               : config_from_json(init, fmt::format("{}: {}.init.config", ctx.config.source, which));
    try {
      grpo::check_tensor_parallel(config, tensor, option);
    } catch (const grpo::Error& e) {
      throw grpo::Error(fmt::format("{} ({})", e.what(), which));
    }
  };
  check(policy.model, policy.init_config, "policy");
  if (writing.model || !writing.init_config.is_null()) check(writing.model, writing.init_config, "rewards.writing");
}

// ---- policy ------------------------------------------------------------------------------

grpo::Qwen2Policy build_policy(const PolicySpec& spec, const RunContext& ctx, const grpo::PromptOptions& prompt) {
  const grpo::Qwen2PolicyOptions policy_options{.logprob_chunk_size = spec.logprob_chunk};
  // Split over the tensor-parallel group when loaded; the warm-up below runs whole, on rank 0 alone.
  const grpo::Qwen2LoadOptions load{.device = ctx.device, .dtype = ctx.dtype,
                                    .activation_checkpointing = spec.activation_checkpointing,
                                    .tensor_parallel = ctx.tensor_parallel,
                                    .sequence_parallel = ctx.sequence_parallel};
  if (spec.model) return grpo::Qwen2Policy::load(*spec.model, load, policy_options);
  const auto init_where = fmt::format("{}: policy.init.config", ctx.config.source);
  if (!spec.warmup_data) {  // random weights (benchmarks): nothing worth caching
    std::fprintf(stderr, "policy: random initialisation (no warm-up data): for benchmarks, it writes noise\n");
    // Each tensor rank its own draw (the same slice on every data-parallel copy): random slices
    // that differ, not T copies of one (the model differs from T = 1's either way).
    torch::manual_seed(ctx.seed + 7919 * static_cast<std::uint64_t>(ctx.tensor_parallel.rank()));
    const auto config = config_from_json(spec.init_config, init_where);
    grpo::Qwen2Model model(config, grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype,
                                                      .activation_checkpointing = spec.activation_checkpointing,
                                                      .tensor_parallel = ctx.tensor_parallel,
                                                      .sequence_parallel = ctx.sequence_parallel});
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
  check_checkpoint_destination(base, {spec.warmup_data.value_or(""), ctx.tokenizer_path}, "the cached base policy");
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

namespace {

/// What a trained reward model's grpo_stage.json records: its config section, pairs and seed.
std::string reward_model_fingerprint(const WritingSpec& spec, const RunContext& ctx) {
  return fingerprint(spec.section_json, {*spec.pairs}, ctx.seed);
}

}  // namespace

fs::path train_or_reuse_reward_model(const WritingSpec& spec, const RunContext& ctx, const fs::path& out) {
  const auto print = reward_model_fingerprint(spec, ctx);
  if (cached(out, print)) {
    std::fprintf(stderr, "writing reward: reusing the trained reward model in %s\n", out.c_str());
    return out;
  }
  require_cached(ctx, out, "writing reward model");
  check_checkpoint_destination(out, {*spec.pairs, ctx.tokenizer_path, ctx.config.source}, "the writing reward model's folder");
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
    torch::manual_seed(ctx.seed + 1 + 7919 * static_cast<std::uint64_t>(ctx.tensor_parallel.rank()));
    grpo::Qwen2RewardModel model(
        config_from_json(spec.init_config, fmt::format("{}: rewards.writing.init.config", ctx.config.source)),
        grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype, .tensor_parallel = ctx.tensor_parallel,
                           .sequence_parallel = ctx.sequence_parallel});
    return grpo::WritingReward(model, load_tokenizer(ctx, std::nullopt), spec.score);
  }
  const fs::path dir = spec.model ? *spec.model : train_or_reuse_reward_model(spec, ctx, ctx.output_dir / "reward-model");
  // Split over the policy's tensor-parallel group (trained whole, on rank 0 alone, above).
  auto model = grpo::load_qwen2_reward_model(dir, {.device = ctx.device, .dtype = ctx.dtype,
                                                   .tensor_parallel = ctx.tensor_parallel,
                                                   .sequence_parallel = ctx.sequence_parallel});
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
  // Before any work: the folder is replaced as a whole, so it may hold only a checkpoint and none
  // of the inputs; a reward model that other inputs made there is replaced only with --overwrite.
  check_checkpoint_destination(out, {*spec.pairs, ctx.tokenizer_path, ctx.config.source}, "--output");
  if (folder_has_entries(out) && !cached(out, reward_model_fingerprint(spec, ctx)) && !args.overwrite) {
    throw grpo::Error(fmt::format("--output {}: holds a reward model (or checkpoint) that other inputs made; replace it "
                                  "with --overwrite, or choose another folder",
                                  out.string()));
  }
  create_output_folder(ctx.output_dir, "the output folder");
  train_or_reuse_reward_model(spec, ctx, out);
  write_stdout(grpo::io::read_json_file(out / "grpo_stage.json", max_stage_file_bytes).dump() + "\n");
}

}  // namespace lwz
