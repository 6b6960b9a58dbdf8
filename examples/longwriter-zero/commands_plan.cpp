// `longwriter-zero plan --config FILE --gpus N [--gpu-memory-gib M]`: the memory one GPU needs for
// a `train` config on N GPUs split into parallel.tensor x (N / parallel.tensor), item by item
// (grpo/plan/memory_plan.hpp), as one JSON object; nothing is loaded but the architectures'
// config.json, so it runs anywhere, before the GPUs are rented. docs/training.md, "Plan before you rent".
#include <c10/core/Device.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include <grpo/core/error.hpp>
#include <grpo/model/qwen2_config.hpp>
#include <grpo/plan/memory_plan.hpp>
#include <grpo/trainer/options.hpp>

#include "commands.hpp"
#include "config.hpp"
#include "dtype_names.hpp"
#include "outputs.hpp"
#include "train_config.hpp"

namespace {

namespace fs = std::filesystem;

struct PlanArgs {
  std::string config;
  std::vector<std::string> set;
  std::int64_t gpus = 0;
  double gpu_memory_gib = 80.0;
  std::int64_t prompt_tokens = 512;
};

/// The architecture of a model section: its checkpoint folder's config.json, else its init.config.
grpo::Qwen2Config architecture(const std::optional<fs::path>& model, const lwz::json& init_config,
                               const std::string& init_where, grpo::Qwen2Architecture expected, const char* role) {
  const auto config = model ? grpo::load_qwen2_config(*model) : grpo::parse_qwen2_config(init_config, init_where);
  if (config.architecture != expected) {
    const auto where = model ? (*model / "config.json").string() : init_where;
    throw grpo::Error(fmt::format("{}: architectures: {} must be {}", where, role,
                                  expected == grpo::Qwen2Architecture::causal_lm ? "Qwen2ForCausalLM"
                                                                                 : "Qwen2ForSequenceClassification"));
  }
  return config;
}

/// The names of the policy's tensors that policy.freeze matches (the rule of grpo::freeze_parameters:
/// ECMAScript expressions matching the whole name; one that matches nothing is an error).
std::vector<std::string> frozen_names(const grpo::Qwen2Config& policy, const std::vector<std::string>& patterns,
                                      const std::string& source) {
  std::vector<std::string> frozen;
  if (patterns.empty()) return frozen;
  const auto tensors = grpo::qwen2_planned_tensors(policy);
  for (const auto& pattern : patterns) {
    std::regex expression;
    try {
      expression = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw grpo::Error(fmt::format("{}: policy.freeze: \"{}\" is not a valid regular expression ({})", source, pattern,
                                    e.what()));
    }
    bool hit = false;
    for (const auto& t : tensors) {
      if (!std::regex_match(t.name, expression)) continue;
      hit = true;
      if (std::find(frozen.begin(), frozen.end(), t.name) == frozen.end()) frozen.push_back(t.name);
    }
    if (!hit) {
      throw grpo::Error(fmt::format("{}: policy.freeze: \"{}\" matches no parameter of the policy (names such as "
                                    "model.embed_tokens.weight, model.layers.0.mlp.up_proj.weight)",
                                    source, pattern));
    }
  }
  return frozen;
}

double in_gib(std::int64_t bytes) { return std::round(static_cast<double>(bytes) / double(1 << 30) * 1e4) / 1e4; }

std::string list(const std::vector<int>& values) {
  std::string out;
  for (const auto v : values) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out;
}

void run_plan(const PlanArgs& args) {
  if (args.gpus < 1) throw grpo::Error(fmt::format("--gpus: expected a positive number of GPUs, found {}", args.gpus));
  if (!(args.gpu_memory_gib > 0) || !std::isfinite(args.gpu_memory_gib)) {
    throw grpo::Error(fmt::format("--gpu-memory-gib: expected a positive number, found {}", args.gpu_memory_gib));
  }
  if (args.prompt_tokens < 1) {
    throw grpo::Error(fmt::format("--prompt-tokens: expected a positive number of tokens, found {}", args.prompt_tokens));
  }
  lwz::RunContext ctx;
  ctx.config = lwz::load_config(args.config, args.set);
  const auto& source = ctx.config.source;
  lwz::Section root(&ctx.config.root, "", &ctx.config);
  // The top-level settings train reads, without read_context's check for a CUDA device here.
  root.string("description", "");
  root.raw("output_dir");
  root.raw("seed");
  root.raw("tokenizer");
  root.raw("prompts");
  const c10::Device device(root.string("device", "cpu"));
  ctx.dtype = root.choice("dtype", c10::kFloat, lwz::dtype_names);
  const auto parallel = lwz::read_parallel(root.section("parallel"));
  const auto policy = lwz::read_policy(root.section("policy"), ctx);
  const auto rewards = lwz::read_rewards(root.section("rewards"), ctx);
  lwz::read_advantage(root.section("advantage"));
  const auto loss = lwz::read_loss(root.section("loss"));
  if (policy.lora) {
    throw grpo::Error(fmt::format("{}: policy.lora: plan models full fine-tuning (and policy.freeze), not LoRA "
                                  "adapters; remove the section (--set policy.lora=null) to plan the full run",
                                  source));
  }

  // The trainer settings that size memory (`train` reads and checks the whole section).
  const grpo::TrainerOptions defaults;
  auto trainer = root.section("trainer");
  auto sampling = trainer.section("sampling");
  grpo::MemoryPlanOptions o;
  o.policy = architecture(policy.model, policy.init_config, source + ": policy.init.config",
                          grpo::Qwen2Architecture::causal_lm, "the policy");
  o.reward_model = architecture(rewards.writing.model, rewards.writing.init_config, source + ": rewards.writing.init.config",
                                grpo::Qwen2Architecture::sequence_classification, "the writing reward model");
  o.param_bytes = ctx.dtype == c10::kFloat ? 4 : 2;
  const bool autocast = trainer.boolean("bf16_autocast", defaults.bf16_autocast) && device.is_cuda();
  o.compute_bytes = autocast ? 2 : o.param_bytes;
  o.master_weights = trainer.boolean("master_weights", defaults.master_weights);
  o.shard_optimizer_state = trainer.boolean("shard_optimizer_state", defaults.shard_optimizer_state);
  o.frozen = frozen_names(o.policy, policy.freeze, source);
  o.reference_policy = loss.kl_coef > 0;
  o.activation_checkpointing = policy.activation_checkpointing;
  o.sequence_parallel = parallel.sequence;
  o.micro_batch_tokens = trainer.integer("micro_batch_tokens", defaults.micro_batch_tokens);
  o.logprob_chunk_size = policy.logprob_chunk;
  o.prompts_per_step = trainer.integer("prompts_per_step", defaults.prompts_per_step);
  o.group_size = trainer.integer("group_size", defaults.group_size);
  o.max_batch_rows = sampling.integer("max_batch_rows", defaults.sampling.max_batch_rows);
  o.max_new_tokens = sampling.integer("max_new_tokens", defaults.sampling.max_new_tokens);
  o.prompt_tokens = args.prompt_tokens;
  o.reward_batch_size = rewards.writing.score.batch_size;
  o.reward_max_tokens = rewards.writing.score.max_tokens;
  root.finish();

  // The mesh: WORLD_SIZE = --gpus = T x D.
  const auto t = parallel.tensor;
  if (args.gpus % t != 0) {
    std::vector<int> work;
    for (const int size : grpo::tensor_parallel_sizes({&o.policy, &*o.reward_model}))
      if (args.gpus % size == 0) work.push_back(size);
    throw grpo::Error(fmt::format("--gpus {}: not a multiple of parallel.tensor = {} (the GPUs are tensor x data); "
                                  "use a multiple of {} GPUs, or a parallel.tensor that divides {} and splits the "
                                  "models: {}",
                                  args.gpus, t, t, args.gpus, list(work)));
  }
  o.mesh = {.tensor = t, .data = args.gpus / t};
  grpo::MemoryPlan plan;
  try {
    plan = grpo::plan_memory(o);
  } catch (const grpo::Error& e) {
    throw grpo::Error(fmt::format("{}: {}", source, e.what()));
  }

  const auto gpu_bytes = static_cast<std::int64_t>(args.gpu_memory_gib * double(1 << 30));
  const auto dtype_name = [](std::int64_t bytes) { return bytes == 4 ? "float32" : "bfloat16"; };
  nlohmann::ordered_json out;
  out["config"] = source;
  out["gpus"] = args.gpus;
  out["gpu_memory_gib"] = args.gpu_memory_gib;
  out["mesh"] = {{"tensor", plan.mesh.tensor}, {"data", plan.mesh.data}};
  out["parameters"] = {{"policy", plan.policy_count.total},
                       {"reward_model", plan.reward_count ? plan.reward_count->total : 0},
                       {"policy_per_gpu", plan.policy_parameters_per_gpu},
                       {"trained_per_gpu", plan.trained_parameters_per_gpu},
                       {"optimizer_per_gpu", plan.optimizer_parameters_per_gpu},
                       {"reward_model_per_gpu", plan.reward_parameters_per_gpu}};
  out["settings"] = {{"dtype", dtype_name(o.param_bytes)},
                     {"activation_dtype", dtype_name(o.compute_bytes)},
                     {"master_weights", o.master_weights},
                     {"shard_optimizer_state", o.shard_optimizer_state},
                     {"activation_checkpointing", o.activation_checkpointing},
                     {"sequence_parallel", o.sequence_parallel},
                     {"reference_policy", o.reference_policy},
                     {"micro_batch_tokens", o.micro_batch_tokens},
                     {"logprob_chunk_size", o.logprob_chunk_size},
                     {"sampling_rows_per_gpu", plan.sampling_rows},
                     {"prompt_tokens", o.prompt_tokens},
                     {"kv_length", plan.kv_length},
                     {"kv_heads_per_gpu", plan.kv_heads_per_gpu},
                     {"reward_tokens", o.reward_batch_size * o.reward_max_tokens}};
  out["gib_per_gpu"] = {{"weights", in_gib(plan.weights)},
                        {"reference_weights", in_gib(plan.reference_weights)},
                        {"master_weights", in_gib(plan.master_weights)},
                        {"gradients", in_gib(plan.gradients)},
                        {"master_gradients", in_gib(plan.master_gradients)},
                        {"optimizer_state", in_gib(plan.optimizer_state)},
                        {"activations", in_gib(plan.activations)},
                        {"activations_checkpointed", in_gib(plan.activations_checkpointed)},
                        {"activations_full", in_gib(plan.activations_full)},
                        {"logprob_chunk", in_gib(plan.logprob_chunk)},
                        {"kv_cache", in_gib(plan.kv_cache)},
                        {"prefill_activations", in_gib(plan.prefill_activations)},
                        {"reward_model_weights", in_gib(plan.reward_model_weights)},
                        {"reward_model_activations", in_gib(plan.reward_model_activations)}};
  out["phases_gib"] = {{"persistent", in_gib(plan.persistent)},
                       {"sampling", in_gib(plan.sampling)},
                       {"scoring", in_gib(plan.scoring)},
                       {"update", in_gib(plan.update)}};
  out["total_gib"] = in_gib(plan.total);
  out["fits"] = plan.fits(gpu_bytes);
  lwz::write_stdout(out.dump(2) + "\n");  // checked: a closed or full stdout is an error, not exit 0
}

void add_plan_commands(CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  auto* cmd = app.add_subcommand(
      "plan", "Memory per GPU of a train config on N GPUs (parallel.tensor x data), item by item, as JSON; loads no weights");
  cmd->add_option("--config", args->config, "config name (examples/configs/NAME.json) or path")->required();
  cmd->add_option("--set", args->set, "override a config value: --set parallel.tensor=4 (repeatable)");
  cmd->add_option("--gpus", args->gpus, "GPUs of the run (WORLD_SIZE = parallel.tensor x data)")->required();
  cmd->add_option("--gpu-memory-gib", args->gpu_memory_gib, "memory of one GPU, GiB (default 80)");
  cmd->add_option("--prompt-tokens", args->prompt_tokens,
                  "longest templated prompt, tokens: the KV cache holds it and max_new_tokens (default 512)");
  cmd->callback([args] { run_plan(*args); });
}

const lwz::Registration registration{&add_plan_commands};

}  // namespace
