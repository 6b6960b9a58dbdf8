// The readers of a run configuration (train_config.hpp).
#include "train_config.hpp"

#include <ATen/Context.h>
#include <fmt/format.h>

#include <cstdint>
#include <limits>

#include <grpo/core/error.hpp>

#include "dtype_names.hpp"

namespace lwz {

void read_context(RunContext& ctx, Section& root, const std::string& output_override) {
  const auto& config = ctx.config;
  root.string("description", "");
  ctx.output_dir = root.path("output_dir").value_or("runs/longwriter-zero");
  if (!output_override.empty()) ctx.output_dir = output_override;
  ctx.device = c10::Device(root.string("device", "cpu"));
  if (ctx.device.is_cuda() && !at::hasCUDA()) {
    throw grpo::Error(fmt::format(
        "{}: device: \"{}\" but no CUDA device is available (build with the cuda preset on a GPU machine, or use \"cpu\")",
        config.source, ctx.device.str()));
  }
  ctx.dtype = root.choice("dtype", c10::kFloat, dtype_names);
  ctx.seed = static_cast<std::uint64_t>(root.integer("seed", 0, {.max = std::numeric_limits<std::int64_t>::max()}));
  if (auto t = root.path("tokenizer")) ctx.tokenizer_path = *t;
}

PolicySpec read_policy(Section s, const RunContext& ctx) {
  PolicySpec p;
  p.section_json = s.raw("init");
  p.model = s.path("model");
  p.activation_checkpointing = s.boolean("activation_checkpointing", false);
  p.logprob_chunk = s.integer("logprob_chunk_size", 1024);
  p.freeze = s.strings("freeze", {});
  if (!s.raw("lora").is_null()) {
    auto l = s.section("lora");
    grpo::LoraOptions lora;
    lora.rank = l.integer("rank", lora.rank);
    lora.alpha = l.number("alpha", lora.alpha);
    lora.target_modules = l.strings("target_modules", lora.target_modules);
    lora.use_rslora = l.boolean("use_rslora", false);
    l.finish();
    p.lora = lora;
  }
  auto init = s.section("init");
  if (!p.model) {
    p.init_config = init.raw("config");
    if (p.init_config.is_null()) {
      throw grpo::Error(fmt::format("{}: policy: give either \"model\" (a checkpoint folder) or \"init.config\"",
                                    ctx.config.source));
    }
    auto warm = init.section("warmup");
    p.warmup_data = warm.path("data");
    p.warmup.epochs = warm.integer("epochs", 1);
    p.warmup.batch_size = warm.integer("batch_size", 16);
    p.warmup.lr = {.peak = warm.number("lr", 1e-3), .warmup_steps = warm.integer("lr_warmup_steps", 0)};
    p.warmup.lr.decay = warm.choice("lr_decay", grpo::LrDecay::constant, grpo::lr_decay_names);
    p.warmup.lr.min_ratio = warm.number("lr_min_ratio", 0.0);
    p.warmup.seed = ctx.seed;
    warm.finish();
  } else {
    // A checkpoint is given: "init" may stay in the config as the recipe that made it (rebuild with
    // --set policy.model=null); it is not used.
    init.raw("config");
    init.raw("warmup");
  }
  init.finish();
  s.finish();
  return p;
}

WritingSpec read_writing(Section& s, const RunContext& ctx) {
  WritingSpec w;
  w.model = s.path("model");
  w.score.batch_size = s.integer("batch_size", 8);
  w.score.max_tokens = s.integer("max_tokens", 8192);
  w.score.answer_only = s.boolean("answer_only", true);
  auto init = s.section("init");
  w.section_json = s.raw("init");
  w.init_config = init.raw("config");
  auto train = init.section("train");
  w.pairs = train.path("pairs");
  w.train.epochs = train.integer("epochs", 1);
  w.train.batch_size = train.integer("batch_size", 8);
  w.train.lr = {.peak = train.number("lr", 1e-4)};
  w.train.eval_fraction = train.number("eval_fraction", 0.1);
  w.train.max_tokens = train.integer("max_tokens", 2048);
  w.train.seed = ctx.seed;
  train.finish();
  init.finish();
  if (!w.model && w.init_config.is_null()) {
    throw grpo::Error(fmt::format("{}: rewards.writing: give either \"model\" (a reward-model checkpoint folder) or "
                                  "\"init\": {{\"config\", \"train\": {{\"pairs\", ...}}}}",
                                  ctx.config.source));
  }
  return w;
}

RewardSpecs read_rewards(Section s, const RunContext& ctx) {
  RewardSpecs r;
  auto length = s.section("length");
  r.weights[0] = length.number("weight", 1.0);
  r.length.max_factor = length.number("max_factor", 2.0);
  r.length.max_words = length.optional_integer("max_words");
  length.finish();
  auto writing = s.section("writing");
  r.weights[1] = writing.number("weight", 1.0);
  r.writing = read_writing(writing, ctx);
  writing.finish();
  auto format = s.section("format");
  r.weights[2] = format.number("weight", 1.0);
  r.format.repetition_weight = format.number("repetition_weight", 1.0);
  format.finish();
  s.finish();
  return r;
}

grpo::ClippedSurrogateLoss read_loss(Section s) {
  grpo::ClippedSurrogateLoss loss;
  loss.clip_low = s.number("clip_low", 0.2);
  loss.clip_high = s.number("clip_high", 0.2);
  if (auto c = s.optional_number("dual_clip")) loss.dual_clip = *c;
  loss.kl_coef = s.number("kl_coef", 0.0);
  loss.entropy_coef = s.number("entropy_coef", 0.0);
  loss.kl = s.choice("kl", grpo::KlEstimator::k3, grpo::kl_estimator_names);
  loss.ratio = s.choice("ratio", grpo::RatioLevel::token, grpo::ratio_level_names);
  loss.aggregation = s.choice("aggregation", grpo::Aggregation::token_mean, grpo::aggregation_names);
  s.finish();
  return loss;
}

AdvantageSpec read_advantage(Section s) {
  AdvantageSpec a;
  a.combination = s.choice("estimator", grpo::RewardCombination::normalize_then_average, grpo::reward_combination_names);
  a.baseline.rule.kind = s.choice("baseline", grpo::GroupRule::Kind::normalize, grpo::group_rule_kind_names);
  a.baseline.rule.std_kind = s.choice("std", grpo::StdKind::sample, grpo::std_kind_names);
  a.baseline.rule.epsilon = s.number("epsilon", 1e-6);
  s.finish();
  return a;
}

grpo::TrainerOptions read_trainer(Section s, const RunContext& ctx, const grpo::Tokenizer& tokenizer) {
  grpo::TrainerOptions o;
  o.output_dir = ctx.output_dir;
  o.seed = ctx.seed;
  o.steps = s.integer("steps", o.steps);
  o.prompts_per_step = s.integer("prompts_per_step", o.prompts_per_step);
  o.group_size = s.integer("group_size", o.group_size);
  o.epochs = s.integer("epochs", o.epochs);
  o.mini_batches = s.integer("mini_batches", o.mini_batches);
  o.micro_batch_tokens = s.integer("micro_batch_tokens", o.micro_batch_tokens);
  auto sampling = s.section("sampling");
  o.sampling.temperature = sampling.number("temperature", o.sampling.temperature);
  o.sampling.top_p = sampling.number("top_p", o.sampling.top_p);
  o.sampling.top_k = sampling.integer("top_k", o.sampling.top_k);
  o.sampling.max_new_tokens = sampling.integer("max_new_tokens", o.sampling.max_new_tokens);
  o.sampling.max_batch_rows = sampling.integer("max_batch_rows", o.sampling.max_batch_rows);
  o.sampling.stop_strings = sampling.strings("stop", o.sampling.stop_strings);
  sampling.finish();
  if (auto eos = tokenizer.eos_token_id()) o.sampling.stop_token_ids = {*eos};
  else if (auto id = tokenizer.token_to_id("<|endoftext|>")) o.sampling.stop_token_ids = {*id};
  o.prompt.style = s.choice("prompt_template", grpo::PromptTemplate::think, grpo::prompt_template_names);
  o.truncation = s.choice("truncation", grpo::TruncationPolicy::keep, grpo::truncation_policy_names);
  o.filter_zero_variance_groups = s.boolean("filter_zero_variance_groups", false);
  o.dynamic_sampling_rounds = s.integer("dynamic_sampling_rounds", 0);
  o.old_logprobs = s.choice("old_logprobs", grpo::OldLogprobSource::automatic, grpo::old_logprob_source_names);
  o.lr.peak = s.number("lr", 1e-6);
  o.lr.warmup_steps = s.integer("lr_warmup_steps", 0);
  o.lr.decay = s.choice("lr_decay", grpo::LrDecay::constant, grpo::lr_decay_names);
  o.lr.total_steps = o.steps * o.epochs * o.mini_batches;
  o.weight_decay = s.number("weight_decay", 0.0);
  o.adam_beta1 = s.number("adam_beta1", o.adam_beta1);
  o.adam_beta2 = s.number("adam_beta2", o.adam_beta2);
  o.adam_eps = s.number("adam_eps", o.adam_eps);
  o.max_grad_norm = s.number("max_grad_norm", 1.0);
  o.bf16_autocast = s.boolean("bf16_autocast", false);
  o.shard_optimizer_state = s.boolean("shard_optimizer_state", false);
  o.master_weights = s.boolean("master_weights", false);
  o.save_every = s.integer("save_every", o.save_every);
  o.keep_checkpoints = s.integer("keep_checkpoints", o.keep_checkpoints);
  o.save_final = s.boolean("save_final", o.save_final);
  o.checkpoint_layout = s.choice("checkpoint_layout", grpo::CheckpointLayout::automatic, grpo::checkpoint_layout_names);
  o.log_samples_every = s.integer("log_samples_every", o.log_samples_every);
  o.log_samples_per_group = s.integer("log_samples_per_group", o.log_samples_per_group);
  s.finish();
  o.validate();
  return o;
}

ParallelSpec read_parallel(Section s) {
  ParallelSpec p;
  p.tensor = s.integer("tensor", p.tensor, {.min = 1, .max = 4096});
  p.sequence = s.boolean("sequence", p.sequence);
  s.finish();
  return p;
}

}  // namespace lwz
