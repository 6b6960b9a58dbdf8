// The LongWriter-Zero job: `train` (GRPO with the paper's three rewards), `train-rm` (the writing
// reward model, Bradley-Terry) and `eval` (LongBench-Write S_l, rewards, format and repetition
// rates). Configs: examples/configs/*.json, see docs/training.md.
#include <ATen/ops/zeros.h>
#include <torch/nn/module.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include <grpo/advantage/balanced.hpp>
#include <grpo/advantage/reward_average.hpp>
#include <grpo/distributed/process_group.hpp>
#include <grpo/io/atomic_file.hpp>
#include <grpo/io/jsonl.hpp>
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/model/qwen2_policy.hpp>
#include <grpo/rewards/format.hpp>
#include <grpo/rewards/length.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/rewards/writing.hpp>
#include <grpo/text/completion.hpp>
#include <grpo/text/repetition.hpp>
#include <grpo/text/targets.hpp>
#include <grpo/text/word_count.hpp>
#include <grpo/trainer/freeze.hpp>
#include <grpo/trainer/reward_model_training.hpp>
#include <grpo/trainer/sft.hpp>
#include <grpo/trainer/trainer.hpp>

#include "commands.hpp"
#include "config.hpp"

namespace {

namespace fs = std::filesystem;
using lwz::json;
using lwz::Section;

/// An advantage rule chosen in the config (grpo, dr_grpo, rloo): one instantiation serves all.
struct ConfiguredBaseline {
  grpo::GroupRule rule;
  [[nodiscard]] grpo::GroupRule group_rule() const { return rule; }
};

/// What every part of a run shares.
struct RunContext {
  lwz::Config config;
  fs::path output_dir;
  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;
  std::uint64_t seed = 0;
  fs::path tokenizer_path;
  /// A data-parallel rank other than 0: the cached stages before RL must be there (rank 0 made
  /// them); making them again here would race rank 0's folders.
  bool reuse_only = false;
};

/// For a rank other than 0, a cached stage that is missing means rank 0's output is not visible here.
void require_cached(const RunContext& ctx, const fs::path& dir, const char* stage) {
  if (!ctx.reuse_only) return;
  throw grpo::Error(dir.string() + ": no finished " + stage + " from rank 0 here; data-parallel ranks share output_dir, "
                    "so run them on one node or on a shared file system");
}

c10::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return c10::kFloat;
  if (name == "bfloat16") return c10::kBFloat16;
  throw grpo::Error("dtype: expected float32 or bfloat16, found \"" + name + "\"");
}

/// Reads the top-level settings shared by every command into `ctx` (whose config `root` views).
void read_context(RunContext& ctx, Section& root, const std::string& output_override) {
  const auto& config = ctx.config;
  root.string("description", "");
  ctx.output_dir = root.path("output_dir").value_or("runs/longwriter-zero");
  if (!output_override.empty()) ctx.output_dir = output_override;
  ctx.device = c10::Device(root.string("device", "cpu"));
  if (ctx.device.is_cuda() && !at::hasCUDA()) {
    throw grpo::Error(config.source + ": device: \"" + ctx.device.str() +
                      "\" but no CUDA device is available (build with the cuda preset on a GPU machine, or use \"cpu\")");
  }
  ctx.dtype = parse_dtype(root.string("dtype", "float32"));
  ctx.seed = static_cast<std::uint64_t>(root.integer("seed", 0));
  if (auto t = root.path("tokenizer")) ctx.tokenizer_path = *t;
}

/// A short stable fingerprint of the inputs of a cached stage (config section + data files).
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

grpo::Tokenizer load_tokenizer(const RunContext& ctx, const std::optional<fs::path>& model_dir) {
  if (!ctx.tokenizer_path.empty()) return grpo::Tokenizer::from_file(ctx.tokenizer_path);
  if (model_dir) return grpo::Tokenizer::from_file(*model_dir);
  throw grpo::Error(ctx.config.source + ": tokenizer: needed when the policy is created from \"init\"");
}

grpo::Qwen2Config config_from_json(const json& j, const std::string& where) {
  return grpo::parse_qwen2_config(j, where);
}

// ---- policy ------------------------------------------------------------------------------

struct PolicySpec {
  std::optional<fs::path> model;
  json init_config;
  bool activation_checkpointing = false;
  std::int64_t logprob_chunk = 1024;
  std::vector<std::string> freeze;  // parameter-name patterns left out of the RL update
  std::optional<grpo::LoraOptions> lora;  // train LoRA adapters only (policy.lora)
  // warm-up (supervised), only with init
  std::optional<fs::path> warmup_data;
  grpo::SftOptions warmup;
  json section_json;
};

/// "lr_decay": "constant" (default), "linear" or "cosine".
grpo::LrDecay read_lr_decay(Section& s) {
  const auto decay = s.choice("lr_decay", "constant", {"constant", "linear", "cosine"});
  return decay == "constant" ? grpo::LrDecay::constant : decay == "linear" ? grpo::LrDecay::linear : grpo::LrDecay::cosine;
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
    if (p.init_config.is_null()) throw grpo::Error(ctx.config.source + ": policy: give either \"model\" (a checkpoint folder) or \"init.config\"");
    auto warm = init.section("warmup");
    p.warmup_data = warm.path("data");
    p.warmup.epochs = warm.integer("epochs", 1);
    p.warmup.batch_size = warm.integer("batch_size", 16);
    p.warmup.lr = {.peak = warm.number("lr", 1e-3), .warmup_steps = warm.integer("lr_warmup_steps", 0)};
    p.warmup.lr.decay = read_lr_decay(warm);
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

grpo::Qwen2Policy build_policy(const PolicySpec& spec, const RunContext& ctx, const grpo::PromptOptions& prompt) {
  const grpo::Qwen2PolicyOptions policy_options{.logprob_chunk_size = spec.logprob_chunk};
  const grpo::Qwen2LoadOptions load{.device = ctx.device, .dtype = ctx.dtype,
                                    .activation_checkpointing = spec.activation_checkpointing};
  if (spec.model) return grpo::Qwen2Policy::load(*spec.model, load, policy_options);
  if (!spec.warmup_data) {  // random weights (benchmarks): nothing worth caching
    std::fprintf(stderr, "policy: random initialisation (no warm-up data): for benchmarks, it writes noise\n");
    torch::manual_seed(ctx.seed);
    const auto config = config_from_json(spec.init_config, ctx.config.source + ": policy.init.config");
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
  const auto config = config_from_json(spec.init_config, ctx.config.source + ": policy.init.config");
  torch::manual_seed(ctx.seed);
  grpo::Qwen2Model model(config, grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype,
                                                    .activation_checkpointing = spec.activation_checkpointing});
  grpo::Qwen2Policy policy(model, tokenizer, policy_options);
  if (spec.warmup_data) {
    std::vector<grpo::SftExample> examples;
    std::ifstream in(*spec.warmup_data, std::ios::binary);
    if (!in) throw grpo::Error(spec.warmup_data->string() + ": cannot open the warm-up data");
    grpo::io::for_each_jsonl(in, spec.warmup_data->string(), [&](const json& row, std::size_t line) {
      examples.push_back({grpo::apply_prompt_template(grpo::io::require_string(row, "prompt", spec.warmup_data->string(), line), prompt),
                          grpo::io::require_string(row, "completion", spec.warmup_data->string(), line)});
    });
    auto options = spec.warmup;
    options.metrics_path = ctx.output_dir / "warmup_metrics.jsonl";
    std::fprintf(stderr, "policy: warm-up on %zu examples from %s\n", examples.size(), spec.warmup_data->c_str());
    const auto result = grpo::train_supervised(policy, tokenizer, examples, options);
    std::fprintf(stderr, "policy: warm-up done, loss %.3f -> %.3f per token\n", result.first_loss, result.last_loss);
  }
  policy.save_pretrained(base, grpo::Qwen2SaveOptions{.copy_files_from = ctx.tokenizer_path});
  mark_cached(base, print, {{"stage", "base-policy"}});
  return grpo::Qwen2Policy::load(base, load, policy_options);
}

// ---- writing reward model -----------------------------------------------------------------

struct WritingSpec {
  std::optional<fs::path> model;
  json init_config;
  std::optional<fs::path> pairs;
  grpo::RewardModelTrainingOptions train;
  grpo::WritingReward::Options score;
  json section_json;
};

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
    throw grpo::Error(ctx.config.source + ": rewards.writing: give either \"model\" (a reward-model checkpoint folder) or "
                      "\"init\": {\"config\", \"train\": {\"pairs\", ...}}");
  }
  return w;
}

/// Trains (or reuses) the reward model of `spec`; returns its folder.
fs::path train_or_reuse_reward_model(const WritingSpec& spec, const RunContext& ctx, const fs::path& out) {
  const auto print = fingerprint(spec.section_json, {*spec.pairs}, ctx.seed);
  if (cached(out, print)) {
    std::fprintf(stderr, "writing reward: reusing the trained reward model in %s\n", out.c_str());
    return out;
  }
  require_cached(ctx, out, "writing reward model");
  auto tokenizer = load_tokenizer(ctx, std::nullopt);
  auto config = config_from_json(spec.init_config, ctx.config.source + ": rewards.writing.init.config");
  if (config.num_labels != 1) throw grpo::Error(ctx.config.source + ": rewards.writing.init.config: num_labels must be 1");
  torch::manual_seed(ctx.seed + 1);
  grpo::Qwen2RewardModel model(config, grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype});
  const auto pairs = grpo::read_preference_pairs(*spec.pairs);
  auto options = spec.train;
  options.metrics_path = ctx.output_dir / "reward_model_metrics.jsonl";
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
    grpo::Qwen2RewardModel model(config_from_json(spec.init_config, ctx.config.source + ": rewards.writing.init.config"),
                                 grpo::Qwen2Options{.device = ctx.device, .dtype = ctx.dtype});
    return grpo::WritingReward(model, load_tokenizer(ctx, std::nullopt), spec.score);
  }
  const fs::path dir = spec.model ? *spec.model : train_or_reuse_reward_model(spec, ctx, ctx.output_dir / "reward-model");
  auto model = grpo::load_qwen2_reward_model(dir, {.device = ctx.device, .dtype = ctx.dtype});
  auto tokenizer = ctx.tokenizer_path.empty() ? grpo::Tokenizer::from_file(dir) : grpo::Tokenizer::from_file(ctx.tokenizer_path);
  return grpo::WritingReward(model, std::move(tokenizer), spec.score);
}

// ---- rewards, advantage, loss, trainer options ---------------------------------------------

struct RewardSpecs {
  grpo::LengthReward length;
  grpo::FormatReward format;
  WritingSpec writing;
  std::array<double, 3> weights{1, 1, 1};
};

RewardSpecs read_rewards(Section s, const RunContext& ctx) {
  RewardSpecs r;
  auto length = s.section("length");
  r.weights[0] = length.number("weight", 1.0);
  r.length.max_factor = length.number("max_factor", 2.0);
  if (auto w = length.optional_number("max_words")) r.length.max_words = static_cast<std::int64_t>(*w);
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
  const auto kl = s.choice("kl", "k3", {"k1", "k2", "k3"});
  loss.kl = kl == "k1" ? grpo::KlEstimator::k1 : kl == "k2" ? grpo::KlEstimator::k2 : grpo::KlEstimator::k3;
  loss.ratio = s.choice("ratio", "token", {"token", "sequence"}) == "token" ? grpo::RatioLevel::token : grpo::RatioLevel::sequence;
  const auto agg = s.choice("aggregation", "token_mean",
                            {"token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"});
  loss.aggregation = agg == "token_mean"            ? grpo::Aggregation::token_mean
                     : agg == "seq_mean_token_mean" ? grpo::Aggregation::seq_mean_token_mean
                     : agg == "seq_mean_token_sum"  ? grpo::Aggregation::seq_mean_token_sum
                                                    : grpo::Aggregation::seq_mean_token_sum_norm;
  s.finish();
  return loss;
}

struct AdvantageSpec {
  std::string estimator;
  ConfiguredBaseline baseline;
};

AdvantageSpec read_advantage(Section s) {
  AdvantageSpec a;
  a.estimator = s.choice("estimator", "balanced", {"balanced", "average"});
  const auto baseline = s.choice("baseline", "grpo", {"grpo", "dr_grpo", "rloo"});
  a.baseline.rule.kind = baseline == "grpo"      ? grpo::GroupRule::Kind::normalize
                         : baseline == "dr_grpo" ? grpo::GroupRule::Kind::center
                                                 : grpo::GroupRule::Kind::leave_one_out;
  a.baseline.rule.std_kind = s.choice("std", "sample", {"sample", "population"}) == "sample" ? grpo::StdKind::sample
                                                                                          : grpo::StdKind::population;
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
  o.prompt.style = grpo::parse_prompt_template(s.choice("prompt_template", "think", {"think", "direct", "chatml"}));
  const auto trunc = s.choice("truncation", "keep", {"keep", "mask", "zero_reward"});
  o.truncation = trunc == "keep" ? grpo::TruncationPolicy::keep
                 : trunc == "mask" ? grpo::TruncationPolicy::mask : grpo::TruncationPolicy::zero_reward;
  o.filter_zero_variance_groups = s.boolean("filter_zero_variance_groups", false);
  o.dynamic_sampling_rounds = s.integer("dynamic_sampling_rounds", 0);
  const auto old = s.choice("old_logprobs", "automatic", {"automatic", "sampler", "recompute"});
  o.old_logprobs = old == "automatic" ? grpo::OldLogprobSource::automatic
                   : old == "sampler" ? grpo::OldLogprobSource::sampler : grpo::OldLogprobSource::recompute;
  o.lr.peak = s.number("lr", 1e-6);
  o.lr.warmup_steps = s.integer("lr_warmup_steps", 0);
  o.lr.decay = read_lr_decay(s);
  o.lr.total_steps = o.steps * o.epochs * o.mini_batches;
  o.weight_decay = s.number("weight_decay", 0.0);
  o.adam_beta1 = s.number("adam_beta1", o.adam_beta1);
  o.adam_beta2 = s.number("adam_beta2", o.adam_beta2);
  o.adam_eps = s.number("adam_eps", o.adam_eps);
  o.max_grad_norm = s.number("max_grad_norm", 1.0);
  o.bf16_autocast = s.boolean("bf16_autocast", false);
  o.shard_optimizer_state = s.boolean("shard_optimizer_state", false);
  o.save_every = s.integer("save_every", o.save_every);
  o.keep_checkpoints = s.integer("keep_checkpoints", o.keep_checkpoints);
  o.save_final = s.boolean("save_final", o.save_final);
  o.log_samples_every = s.integer("log_samples_every", o.log_samples_every);
  o.log_samples_per_group = s.integer("log_samples_per_group", o.log_samples_per_group);
  s.finish();
  o.validate();
  return o;
}

// ---- train -----------------------------------------------------------------------------

struct TrainArgs {
  std::string config;
  std::vector<std::string> set;
  std::string resume;
  std::string output;
};

/// Mean of `key` (a JSON pointer) over metrics rows [begin, end).
double mean_of(const std::vector<json>& rows, std::size_t begin, std::size_t end, const std::string& pointer) {
  double sum = 0;
  for (std::size_t i = begin; i < end; ++i) sum += rows[i].at(json::json_pointer(pointer)).get<double>();
  return end > begin ? sum / static_cast<double>(end - begin) : 0.0;
}

void print_summary(const fs::path& output_dir) {
  std::ifstream in(output_dir / "metrics.jsonl");
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  if (rows.size() < 2) return;
  const std::size_t k = std::max<std::size_t>(1, rows.size() / 5);
  json summary{{"steps", rows.size()}, {"window", k}};
  for (const auto& [label, pointer] : std::vector<std::pair<std::string, std::string>>{
           {"reward", "/reward"}, {"length", "/rewards/length/mean"}, {"writing", "/rewards/writing/mean"},
           {"format", "/rewards/format/mean"}, {"answer_words", "/answer_words_mean"}}) {
    const double first = mean_of(rows, 0, k, pointer), last = mean_of(rows, rows.size() - k, rows.size(), pointer);
    summary[label] = {{"first", first}, {"last", last}, {"change", last - first}};
    std::fprintf(stderr, "summary: %-12s first %zu steps %.3f -> last %zu steps %.3f (%+.3f)\n", label.c_str(), k, first, k,
                 last, last - first);
  }
  grpo::io::write_file_atomically(output_dir / "summary.json", summary.dump(2) + "\n");
  std::fprintf(stderr, "summary: metrics in %s, curves: longwriter-zero plot %s -o %s\n",
               (output_dir / "metrics.jsonl").c_str(), (output_dir / "metrics.jsonl").c_str(),
               (output_dir / "curves.png").c_str());
}

void run_train(const TrainArgs& args) {
  RunContext ctx;
  ctx.config = lwz::load_config(args.config, args.set);
  Section root_again(&ctx.config.root, "", &ctx.config);
  read_context(ctx, root_again, args.output);
  // Under torchrun (WORLD_SIZE > 1) this process is one data-parallel rank: NCCL on its GPU
  // (cuda:LOCAL_RANK), Gloo on the CPU.
  const auto launch = grpo::LaunchEnv::from_environment();
  if (launch.distributed() && ctx.device.is_cuda())
    ctx.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank));
  const auto comm = grpo::init_process_group(launch, ctx.device);
  const bool main_rank = launch.rank == 0;
  if (comm) {
    std::fprintf(stderr, "train: rank %d of %d (%s on %s)\n", launch.rank, launch.world_size,
                 ctx.device.is_cuda() ? "nccl" : "gloo", ctx.device.str().c_str());
  }
  const auto policy_spec = read_policy(root_again.section("policy"), ctx);
  auto rewards_spec = read_rewards(root_again.section("rewards"), ctx);
  const auto advantage = read_advantage(root_again.section("advantage"));
  const auto loss = read_loss(root_again.section("loss"));
  const auto prompts_path = root_again.path("prompts");
  if (!prompts_path) throw grpo::Error(ctx.config.source + ": prompts: the JSONL file of training prompts is required");
  auto tokenizer = load_tokenizer(ctx, policy_spec.model);
  auto options = read_trainer(root_again.section("trainer"), ctx, tokenizer);
  root_again.finish();
  if (comm && options.prompts_per_step % launch.world_size != 0) {
    throw grpo::Error(ctx.config.source + ": trainer.prompts_per_step: expected a multiple of WORLD_SIZE " +
                      std::to_string(launch.world_size) + ", found " + std::to_string(options.prompts_per_step));
  }
  if (!main_rank) options.progress = false;

  // The stages before RL (warm-up, reward-model training) write cached folders: rank 0 makes
  // them while the other ranks wait, then those load what rank 0 wrote.
  if (main_rank) {
    fs::create_directories(ctx.output_dir);
    grpo::io::write_file_atomically(ctx.output_dir / "config.json", ctx.config.root.dump(2) + "\n");
  } else {
    comm->barrier_without_timeout();
    ctx.reuse_only = true;
  }
  auto policy = build_policy(policy_spec, ctx, options.prompt);
  if (policy_spec.lora) {
    torch::manual_seed(ctx.seed);  // the adapters' initial A: the same on every run (and rank) of this seed
    std::int64_t adapted = 0;
    try {
      adapted = policy.add_lora(*policy_spec.lora);
    } catch (const grpo::Error& e) {
      throw grpo::Error(ctx.config.source + ": policy.lora: " + e.what());
    }
    std::int64_t trained = 0, total = 0;
    for (auto& t : policy.parameters()) {
      total += t.numel();
      trained += t.requires_grad() ? t.numel() : 0;
    }
    std::fprintf(stderr, "policy: LoRA rank %lld, alpha %g on %lld projections: %lld of %lld parameters trained\n",
                 static_cast<long long>(policy_spec.lora->rank), policy_spec.lora->alpha, static_cast<long long>(adapted),
                 static_cast<long long>(trained), static_cast<long long>(total));
  }
  if (!policy_spec.freeze.empty()) {
    const auto frozen = grpo::freeze_parameters(policy, policy_spec.freeze);
    std::int64_t frozen_count = 0, total = 0;
    std::size_t trained_tensors = 0;
    for (auto& [name, t] : policy.named_parameters()) {
      (t.requires_grad() ? total : frozen_count) += t.numel();
      trained_tensors += t.requires_grad() ? 1 : 0;
    }
    std::fprintf(stderr, "policy: policy.freeze froze %zu tensors; %lld parameters frozen in all, %zu tensors trained (%lld parameters)\n",
                 frozen.size(), static_cast<long long>(frozen_count), trained_tensors,
                 static_cast<long long>(total));
  }
  auto writing = build_writing_reward(rewards_spec.writing, ctx);
  if (comm && main_rank) comm->barrier_without_timeout();
  auto dataset = grpo::PromptDataset::from_jsonl(*prompts_path, ctx.seed);
  std::fprintf(stderr, "train: %zu prompts (%zu dropped as unanswerable), %lld steps x %lld prompts x %lld samples\n",
               dataset.size(), dataset.dropped(), static_cast<long long>(options.steps),
               static_cast<long long>(options.prompts_per_step), static_cast<long long>(options.group_size));
  std::optional<grpo::Qwen2Policy> reference;
  if (loss.kl_coef > 0 && policy_spec.lora) {
    reference.emplace(policy.base_model_view());  // the base model: the policy with its adapters off, no second copy
  } else if (loss.kl_coef > 0) {
    reference.emplace(grpo::Qwen2Policy::load(policy_spec.model ? *policy_spec.model : ctx.output_dir / "base-policy",
                                              {.device = ctx.device, .dtype = ctx.dtype}));
    for (auto& p : reference->parameters()) p.set_requires_grad(false);
  }
  grpo::RewardSet rewards{rewards_spec.length, std::move(writing), rewards_spec.format};
  auto run = [&](auto estimator) {
    grpo::Trainer trainer(policy, std::move(rewards), estimator, loss, std::move(dataset), options,
                          reference ? &*reference : nullptr);
    trainer.distribute(comm);
    if (!args.resume.empty()) {
      trainer.resume(args.resume);
      std::fprintf(stderr, "train: resumed at step %lld\n", static_cast<long long>(trainer.step_index()));
    }
    trainer.train();
  };
  if (advantage.estimator == "balanced") {
    run(grpo::Balanced<3, ConfiguredBaseline>{.inner = advantage.baseline, .weights = rewards_spec.weights});
  } else {
    run(grpo::RewardAverage<3, ConfiguredBaseline>{.inner = advantage.baseline, .weights = rewards_spec.weights});
  }
  if (main_rank) print_summary(ctx.output_dir);
}

// ---- train-rm --------------------------------------------------------------------------

/// train-rm and eval are one-process commands: copies started by torchrun would all write the
/// same files.
void refuse_launcher(const char* command) {
  if (grpo::LaunchEnv::from_environment().distributed()) {
    throw grpo::Error(std::string(command) + ": runs in one process, but WORLD_SIZE says this is one of several ranks; "
                      "start it without torchrun (only `train` is data-parallel)");
  }
}

void run_train_rm(const TrainArgs& args) {
  refuse_launcher("train-rm");
  RunContext ctx;
  ctx.config = lwz::load_config(args.config, args.set);
  Section r(&ctx.config.root, "", &ctx.config);
  read_context(ctx, r, "");
  auto rewards = r.section("rewards");
  auto writing = rewards.section("writing");
  auto spec = read_writing(writing, ctx);
  if (!spec.pairs) throw grpo::Error(ctx.config.source + ": rewards.writing.init.train.pairs: required for train-rm");
  spec.model.reset();
  const fs::path out = args.output.empty() ? ctx.output_dir / "reward-model" : fs::path(args.output);
  fs::create_directories(ctx.output_dir);
  train_or_reuse_reward_model(spec, ctx, out);
  std::ifstream in(out / "grpo_stage.json");
  std::cout << json::parse(in).dump() << '\n';
}

// ---- eval ------------------------------------------------------------------------------

struct EvalArgs {
  std::string model, reward_model, input, output;
  std::string device = "cpu", dtype = "float32", template_name = "think";
  std::int64_t samples = 1, max_new_tokens = 15500, batch_size = 16;
  double temperature = 0.6, top_p = 0.95;
  std::uint64_t seed = 0;
};

void run_eval(const EvalArgs& args) {
  refuse_launcher("eval");
  const c10::Device device(args.device);
  const grpo::Qwen2LoadOptions load{.device = device, .dtype = parse_dtype(args.dtype)};
  auto policy = grpo::Qwen2Policy::load(args.model, load);
  std::optional<grpo::WritingReward> writing;
  if (!args.reward_model.empty()) {
    writing.emplace(grpo::load_qwen2_reward_model(args.reward_model, load), grpo::Tokenizer::from_file(args.reward_model));
  }
  struct Row {
    json input;
    std::string prompt;
    grpo::WordRange target;
    std::optional<double> required;
  };
  std::vector<Row> rows;
  {
    auto in = lwz::open_input(args.input);
    const auto source = lwz::input_name(args.input);
    grpo::io::for_each_jsonl(*in, source, [&](json row, std::size_t line) {
      Row r{row, grpo::io::require_string(row, "prompt", source, line), {}, std::nullopt};
      // The same target fields (and checks) as training prompt files.
      const auto range = grpo::target_fields(row, source, line);
      r.target = range ? *range : grpo::extract_length_target(r.prompt).range;
      if (row.contains("length") && !row["length"].is_null()) {
        if (!row["length"].is_number() || !(row["length"].get<double>() > 0)) {
          throw grpo::Error(source + ":" + std::to_string(line) +
                            ": \"length\" must be a number > 0 (the required length in words), found " + row["length"].dump());
        }
        r.required = row["length"].get<double>();
      }
      rows.push_back(std::move(r));
    });
  }
  grpo::SamplingOptions sampling{.temperature = args.temperature, .top_p = args.top_p, .max_new_tokens = args.max_new_tokens,
                                 .stop_strings = {"</answer>"}, .seed = args.seed};
  if (auto eos = policy.tokenizer().eos_token_id()) sampling.stop_token_ids = {*eos};
  const grpo::PromptOptions prompt{.style = grpo::parse_prompt_template(args.template_name)};
  std::ofstream out_file;
  if (!args.output.empty()) out_file.open(args.output);
  const grpo::LengthReward length_reward;
  const grpo::FormatReward format_reward;
  double n = 0, s_l = 0, s_l_n = 0, len_r = 0, fmt_r = 0, wr = 0, pass = 0, rep = 0, rep_flag = 0, words = 0, trunc = 0;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::size_t> jobs;
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::int64_t s = 0; s < args.samples; ++s) jobs.push_back(i);
  for (std::size_t begin = 0; begin < jobs.size(); begin += static_cast<std::size_t>(args.batch_size)) {
    const auto end = std::min(jobs.size(), begin + static_cast<std::size_t>(args.batch_size));
    std::vector<std::string> prompts;
    for (std::size_t j = begin; j < end; ++j) prompts.push_back(grpo::apply_prompt_template(rows[jobs[j]].prompt, prompt));
    sampling.seed = args.seed + begin;
    const auto generations = policy.generate(prompts, sampling);
    std::vector<grpo::Sample> samples;
    for (std::size_t j = begin; j < end; ++j) {
      const auto& g = generations[j - begin];
      samples.push_back({.prompt = rows[jobs[j]].prompt, .completion = g.text, .target = rows[jobs[j]].target,
                         .truncated = g.finish_reason == grpo::FinishReason::length});
    }
    std::vector<float> writing_scores(samples.size(), NAN);
    if (writing) writing->score(samples, writing_scores);
    for (std::size_t j = begin; j < end; ++j) {
      const auto& sample = samples[j - begin];
      const auto parts = grpo::parse_completion(sample.completion);
      const auto w = grpo::word_count(parts.answer);
      const double lr = length_reward(sample), fr = format_reward(sample), rr = grpo::repetition_ratio(parts.answer);
      json out = rows[jobs[j]].input;
      out["completion"] = sample.completion;
      out["finish_reason"] = sample.truncated ? "length" : "stop";
      out["answer_words"] = w;
      out["length_reward"] = lr;
      out["format_reward"] = fr;
      out["repetition"] = rr;
      if (writing) out["writing_reward"] = writing_scores[j - begin];
      if (rows[jobs[j]].required) {
        const double score = grpo::longbench_length_score(*rows[jobs[j]].required, static_cast<double>(w));
        out["S_l"] = score;
        s_l += score, s_l_n += 1;
      }
      if (out_file) grpo::io::write_jsonl(out_file, out);
      n += 1, len_r += lr, fmt_r += fr, pass += parts.well_formed ? 1 : 0, rep += rr, rep_flag += rr > 0.1 ? 1 : 0;
      words += static_cast<double>(w), trunc += sample.truncated ? 1 : 0;
      if (writing) wr += writing_scores[j - begin];
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double eta = elapsed / static_cast<double>(end) * static_cast<double>(jobs.size() - end);
    std::fprintf(stderr, "eval: %zu/%zu samples | %.2f samples/s | ETA %s\n", end, jobs.size(),
                 static_cast<double>(end) / std::max(elapsed, 1e-9), grpo::format_duration(eta).c_str());
  }
  json summary{{"samples", n}, {"length_reward", len_r / n}, {"format_reward", fmt_r / n},
               {"format_pass_rate", pass / n}, {"repetition_mean", rep / n}, {"repetition_rate", rep_flag / n},
               {"answer_words_mean", words / n}, {"truncated_fraction", trunc / n}};
  if (s_l_n > 0) summary["S_l"] = s_l / s_l_n;
  if (writing) {
    summary["writing_reward"] = wr / n;
    // The composite of metrics.jsonl: the equal-weight mean of the three rewards' means.
    summary["reward"] = (len_r / n + wr / n + fmt_r / n) / 3.0;
  }
  std::cout << summary.dump() << '\n';
}

void add_train_commands(CLI::App& app) {
  {
    auto args = std::make_shared<TrainArgs>();
    auto* cmd = app.add_subcommand(
        "train", "GRPO training of a Qwen2 policy with the paper's rewards (length, writing, format), from a JSON config");
    cmd->add_option("--config", args->config, "config name (examples/configs/NAME.json) or path")->required();
    cmd->add_option("--set", args->set, "override a config value: --set trainer.steps=10 (repeatable)");
    cmd->add_option("--resume", args->resume, "continue from a checkpoint folder (or an output folder: its latest)");
    cmd->add_option("--output", args->output, "output folder (overrides output_dir)");
    cmd->callback([args] { run_train(*args); });
  }
  {
    auto args = std::make_shared<TrainArgs>();
    auto* cmd = app.add_subcommand(
        "train-rm", "Bradley-Terry training of the writing reward model on preference pairs (rewards.writing.init of a config)");
    cmd->add_option("--config", args->config, "config name or path")->required();
    cmd->add_option("--set", args->set, "override a config value (repeatable)");
    cmd->add_option("--output", args->output, "folder of the reward-model checkpoint (default <output_dir>/reward-model)");
    cmd->callback([args] { run_train_rm(*args); });
  }
  {
    auto args = std::make_shared<EvalArgs>();
    auto* cmd = app.add_subcommand("eval", "Generate for prompts and report LongBench-Write S_l, rewards, format pass rate "
                                           "and repetition rate (summary JSON on stdout)");
    cmd->add_option("--model", args->model, "policy checkpoint folder (config, safetensors, tokenizer)")->required();
    cmd->add_option("--input", args->input, "JSONL prompts: prompt, optional lower/upper, optional length (for S_l)")->required();
    cmd->add_option("--reward-model", args->reward_model, "writing reward model folder (adds writing_reward)");
    cmd->add_option("--output", args->output, "per-sample JSONL results");
    cmd->add_option("--samples", args->samples, "completions per prompt")->capture_default_str();
    cmd->add_option("--max-new-tokens", args->max_new_tokens, "")->capture_default_str();
    cmd->add_option("--temperature", args->temperature, "")->capture_default_str();
    cmd->add_option("--top-p", args->top_p, "")->capture_default_str();
    cmd->add_option("--template", args->template_name, "think, direct or chatml")->capture_default_str();
    cmd->add_option("--batch-size", args->batch_size, "")->capture_default_str();
    cmd->add_option("--device", args->device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--dtype", args->dtype, "float32 or bfloat16")->capture_default_str();
    cmd->add_option("--seed", args->seed, "")->capture_default_str();
    cmd->callback([args] { run_eval(*args); });
  }
}

const lwz::Registration registration{&add_train_commands};

}  // namespace
