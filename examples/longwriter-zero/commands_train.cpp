// `train`: GRPO with the paper's three rewards (length, writing reward model, format) from a JSON
// config, data-parallel under torchrun; and the command lines of `train` and `train-rm`. The
// config readers are in train_config.cpp, the cached stages before RL (and `train-rm`) in
// stages.cpp, `eval` in commands_eval.cpp. Configs: examples/configs/*.json, see docs/training.md.
#include <fmt/format.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpo/advantage/balanced.hpp>
#include <grpo/advantage/reward_average.hpp>
#include <grpo/distributed/process_group.hpp>
#include <grpo/io/atomic_file.hpp>
#include <grpo/io/jsonl.hpp>
#include <grpo/model/qwen2_config.hpp>
#include <grpo/model/qwen2_policy.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/sampling/prompts.hpp>
#include <grpo/trainer/freeze.hpp>
#include <grpo/trainer/trainer.hpp>

#include "commands.hpp"
#include "config.hpp"
#include "model_inputs.hpp"
#include "outputs.hpp"
#include "stages.hpp"
#include "train_config.hpp"

void lwz::refuse_launcher(const char* command) {
  if (grpo::LaunchEnv::from_environment().distributed()) {
    throw grpo::Error(fmt::format("{}: runs in one process, but WORLD_SIZE says this is one of several ranks; "
                                  "start it without torchrun (only `train` is data-parallel)",
                                  command));
  }
}

grpo::DeviceMesh lwz::join_tensor_group(const char* command, std::int64_t tensor, c10::Device& device,
                                        const std::string& input) {
  if (tensor < 1 || tensor > 4096)
    throw grpo::Error(fmt::format("--tensor-parallel: expected a value in [1, 4096], found {}", tensor));
  if (tensor == 1) {
    refuse_launcher(command);
    return {};
  }
  const auto launch = grpo::LaunchEnv::from_environment();
  if (launch.world_size != tensor) {
    throw grpo::Error(fmt::format("{} --tensor-parallel {}: launch it as {} ranks (torchrun --nproc_per_node {} "
                                  "--no-python longwriter-zero {} ...); WORLD_SIZE is {}",
                                  command, tensor, tensor, tensor, command, launch.world_size));
  }
  if (input.empty() || input == "-") {
    throw grpo::Error(fmt::format("{} --tensor-parallel {}: --input must be a file (every rank reads it), not "
                                  "standard input",
                                  command, tensor));
  }
  if (device.is_cuda()) device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank));
  auto mesh = grpo::init_device_mesh(launch, device, static_cast<int>(tensor), {}, "--tensor-parallel");
  if (!mesh.is_main() && std::freopen("/dev/null", "w", stdout) == nullptr)
    throw grpo::Error(fmt::format("{}: rank {} cannot silence its standard output", command, launch.rank));
  return mesh;
}

namespace {

namespace fs = std::filesystem;
using lwz::ConfiguredBaseline;
using lwz::json;
using lwz::RunContext;
using lwz::Section;
using lwz::TrainArgs;
// config readers (train_config.hpp) and stages (stages.hpp)
using lwz::build_policy;
using lwz::build_writing_reward;
using lwz::load_tokenizer;
using lwz::read_advantage;
using lwz::read_context;
using lwz::read_loss;
using lwz::read_policy;
using lwz::read_rewards;
using lwz::read_trainer;

/// Mean of `key` (a JSON pointer) over metrics rows [begin, end).
double mean_of(const std::vector<json>& rows, std::size_t begin, std::size_t end, const std::string& pointer) {
  double sum = 0;
  for (std::size_t i = begin; i < end; ++i) sum += rows[i].at(json::json_pointer(pointer)).get<double>();
  return end > begin ? sum / static_cast<double>(end - begin) : 0.0;
}

void print_summary(const fs::path& output_dir) {
  std::ifstream in(output_dir / "metrics.jsonl", std::ios::binary);
  std::vector<json> rows;
  grpo::io::for_each_jsonl(in, (output_dir / "metrics.jsonl").string(),
                           [&](json row, std::size_t) { rows.push_back(std::move(row)); });
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

/// --resume and --overwrite: what to do with an output folder holding an earlier run.
lwz::RerunMode rerun_mode(const TrainArgs& args) {
  if (!args.resume.empty() && args.overwrite) {
    throw grpo::Error("--resume and --overwrite: give one (--resume continues the earlier run, --overwrite replaces it)");
  }
  return !args.resume.empty() ? lwz::RerunMode::resume
                              : (args.overwrite ? lwz::RerunMode::overwrite : lwz::RerunMode::fresh);
}

/// The `distributed` section: distributed.timeout_s, how long a collective (and the rendezvous)
/// waits for the slowest rank before failing, in seconds (default 3600; a rank that is alive but
/// stuck holds the others that long).
grpo::ProcessGroupOptions read_distributed(Section s, const RunContext& ctx) {
  grpo::ProcessGroupOptions options;
  const double seconds = s.number("timeout_s", 3600.0);
  constexpr double most = 30.0 * 24 * 3600;  // 30 days: far beyond any step, and within the milliseconds' range
  if (!(seconds >= 1.0 && seconds <= most)) {
    throw grpo::Error(fmt::format("{}: distributed.timeout_s: expected seconds in [1, {}], found {}", ctx.config.source,
                                  most, seconds));
  }
  options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0));
  s.finish();
  return options;
}

/// Every prompt of the prompts file, templated and tokenized as the sampler will, must leave room
/// for trainer.sampling.max_new_tokens within the policy's max_position_embeddings. Checked before
/// any work; the error names the line. (Rows the dataset rejects are left to its own messages.)
void check_prompt_lengths(const fs::path& prompts, const grpo::Tokenizer& tokenizer, const grpo::TrainerOptions& options,
                          const lwz::PolicySpec& spec, const RunContext& ctx) {
  const auto model = spec.model ? (*spec.model / "config.json").string() : ctx.config.source + ": policy.init.config";
  const auto config = spec.model ? grpo::load_qwen2_config(*spec.model) : grpo::parse_qwen2_config(spec.init_config, model);
  std::ifstream in(prompts, std::ios::binary);
  if (!in) return;  // PromptDataset::from_jsonl names the file
  std::vector<std::int64_t> ids;
  grpo::io::for_each_jsonl(in, prompts.string(), [&](const json& row, std::size_t line) {
    const auto it = row.find("prompt");
    if (it == row.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return;
    ids.clear();
    tokenizer.encode_into(grpo::apply_prompt_template(it->get_ref<const std::string&>(), options.prompt), ids, true);
    try {
      lwz::check_context_length(static_cast<std::int64_t>(ids.size()), options.sampling.max_new_tokens,
                                config.max_position_embeddings, "trainer.sampling.max_new_tokens", model);
    } catch (const grpo::Error& e) {
      throw grpo::Error(fmt::format("{}:{}: {}", prompts.string(), line, e.what()));
    }
  });
}

void run_train(const TrainArgs& args) {
  RunContext ctx;
  ctx.config = lwz::load_config(args.config, args.set);
  Section root_again(&ctx.config.root, "", &ctx.config);
  read_context(ctx, root_again, args.output);
  // An output folder holding an earlier run needs --resume or --overwrite (every rank checks, reading only).
  const auto rerun = rerun_mode(args);
  lwz::check_run_folder(ctx.output_dir, rerun);
  const auto process_group = read_distributed(root_again.section("distributed"), ctx);
  // Under torchrun (WORLD_SIZE > 1) this process is one data-parallel rank: NCCL on its GPU
  // (cuda:LOCAL_RANK), Gloo on the CPU.
  const auto launch = grpo::LaunchEnv::from_environment();
  if (launch.distributed() && ctx.device.is_cuda())
    ctx.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank));
  // parallel.tensor = T: WORLD_SIZE = T x D; the policy is split over each T consecutive ranks.
  const auto parallel = read_parallel(root_again.section("parallel"));
  const auto mesh = grpo::init_device_mesh(launch, ctx.device, static_cast<int>(parallel.tensor), process_group,
                                           fmt::format("{}: parallel.tensor", ctx.config.source));
  const auto& comm = mesh.world;
  ctx.tensor_parallel = mesh.tensor_parallel();
  ctx.sequence_parallel = parallel.sequence;  // no effect with T = 1 (nothing to split the tokens over)
  const int data_size = mesh.at.data_size;
  const bool main_rank = launch.rank == 0;
  if (comm) {
    std::fprintf(stderr, "train: rank %d of %d (%s on %s), tensor rank %d of %d, data rank %d of %d%s\n", launch.rank,
                 launch.world_size, ctx.device.is_cuda() ? "nccl" : "gloo", ctx.device.str().c_str(),
                 mesh.at.tensor_rank, mesh.at.tensor_size, mesh.at.data_rank, mesh.at.data_size,
                 ctx.sequence_parallel && mesh.at.tensor_size > 1 ? ", sequence parallel" : "");
  }
  const auto policy_spec = read_policy(root_again.section("policy"), ctx);
  auto rewards_spec = read_rewards(root_again.section("rewards"), ctx);
  check_models_split(policy_spec, rewards_spec.writing, ctx);  // a bad split fails before any stage runs
  const auto advantage = read_advantage(root_again.section("advantage"));
  const auto loss = read_loss(root_again.section("loss"));
  const auto prompts_path = root_again.path("prompts");
  if (!prompts_path) {
    throw grpo::Error(fmt::format("{}: prompts: the JSONL file of training prompts is required", ctx.config.source));
  }
  // Model folders are checked before anything in them is opened (a FIFO would block the reader):
  // the policy's first when its tokenizer is read from it, else once the whole config is read.
  const auto check_model_folders = [&] {
    if (policy_spec.model) lwz::check_model_folder(*policy_spec.model, ctx.config.source + ": policy.model");
    if (rewards_spec.writing.model) {
      lwz::check_model_folder(*rewards_spec.writing.model, ctx.config.source + ": rewards.writing.model");
    }
  };
  if (ctx.tokenizer_path.empty()) check_model_folders();
  auto tokenizer = load_tokenizer(ctx, policy_spec.model);
  auto options = read_trainer(root_again.section("trainer"), ctx, tokenizer);
  root_again.finish();
  if (policy_spec.lora && options.checkpoint_layout == grpo::CheckpointLayout::sharded) {
    throw grpo::Error(fmt::format("{}: trainer.checkpoint_layout = \"sharded\": LoRA runs (policy.lora) save their "
                                  "adapters in PEFT's layout; use \"whole\" or \"auto\"",
                                  ctx.config.source));
  }
  check_model_folders();
  if (data_size > 1 && options.prompts_per_step % data_size != 0) {
    throw grpo::Error(fmt::format("{}: trainer.prompts_per_step: expected a multiple of the data-parallel size {} "
                                  "(WORLD_SIZE {} / parallel.tensor {}), found {}",
                                  ctx.config.source, data_size, launch.world_size, parallel.tensor,
                                  options.prompts_per_step));
  }
  options.reporter = main_rank ? &lwz::reporter() : nullptr;  // rank 0 shows progress
  if (main_rank && options.group_size == 1) {
    std::fprintf(stderr, "train: warning: trainer.group_size is 1: every group holds one sample, so its rewards have "
                         "zero variance and every advantage is 0; only the KL and entropy terms (if any) move the "
                         "policy. GRPO needs group_size >= 2\n");
  }
  check_prompt_lengths(*prompts_path, tokenizer, options, policy_spec, ctx);

  // The stages before RL (warm-up, reward-model training) write cached folders: rank 0 makes
  // them while the other ranks wait, then those load what rank 0 wrote.
  if (main_rank) {
    if (rerun == lwz::RerunMode::overwrite) {
      const auto removed = lwz::clear_run_folder(ctx.output_dir);
      if (!removed.empty()) {
        std::fprintf(stderr, "train: --overwrite removed %zu entries of the earlier run from %s\n", removed.size(),
                     ctx.output_dir.c_str());
      }
    }
    lwz::create_output_folder(ctx.output_dir, "the output folder");
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
      throw grpo::Error(fmt::format("{}: policy.lora: {}", ctx.config.source, e.what()));
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
  if (main_rank) {
    std::fprintf(stderr, "train: %zu prompts (%zu dropped as unanswerable), %lld steps x %lld prompts x %lld samples\n",
                 dataset.size(), dataset.dropped(), static_cast<long long>(options.steps),
                 static_cast<long long>(options.prompts_per_step), static_cast<long long>(options.group_size));
  }
  std::optional<grpo::Qwen2Policy> reference;
  if (loss.kl_coef > 0 && policy_spec.lora) {
    reference.emplace(policy.base_model_view());  // the base model: the policy with its adapters off, no second copy
  } else if (loss.kl_coef > 0) {
    reference.emplace(grpo::Qwen2Policy::load(policy_spec.model ? *policy_spec.model : ctx.output_dir / "base-policy",
                                              {.device = ctx.device, .dtype = ctx.dtype, .tensor_parallel = ctx.tensor_parallel,
                                               .sequence_parallel = ctx.sequence_parallel}));
    for (auto& p : reference->parameters()) p.set_requires_grad(false);
  }
  grpo::RewardSet rewards{rewards_spec.length, std::move(writing), rewards_spec.format};
  auto run = [&](auto estimator) {
    grpo::Trainer trainer(policy, std::move(rewards), estimator, loss, std::move(dataset), options,
                          reference ? &*reference : nullptr);
    trainer.distribute(mesh);
    if (!args.resume.empty()) {
      trainer.resume(args.resume);
      std::fprintf(stderr, "train: resumed at step %lld\n", static_cast<long long>(trainer.step_index()));
    }
    trainer.train();
  };
  if (advantage.combination == grpo::RewardCombination::normalize_then_average) {
    run(grpo::Balanced<3, ConfiguredBaseline>{.inner = advantage.baseline, .weights = rewards_spec.weights});
  } else {
    run(grpo::RewardAverage<3, ConfiguredBaseline>{.inner = advantage.baseline, .weights = rewards_spec.weights});
  }
  if (main_rank) print_summary(ctx.output_dir);
}

void add_train_commands(CLI::App& app) {
  {
    auto args = std::make_shared<TrainArgs>();
    auto* cmd = app.add_subcommand(
        "train", "GRPO training of a Qwen2 policy with the paper's rewards (length, writing, format), from a JSON config");
    cmd->add_option("--config", args->config, "config name (examples/configs/NAME.json) or path")->required();
    cmd->add_option("--set", args->set, "override a config value: --set trainer.steps=10 (repeatable)");
    cmd->add_option("--resume", args->resume, "continue from a checkpoint folder (or an output folder: its latest)");
    cmd->add_option("--output", args->output,
                    "output folder (overrides output_dir); one holding an earlier run needs --resume or --overwrite");
    cmd->add_flag("--overwrite", args->overwrite,
                  "start again in an output folder holding an earlier run: remove that run's files (metrics, samples, "
                  "events, checkpoints, summary, config.json) first; the cached stages are kept. Refused when the "
                  "folder holds files that are not a run's");
    cmd->callback([args] { run_train(*args); });
  }
  {
    auto args = std::make_shared<TrainArgs>();
    auto* cmd = app.add_subcommand(
        "train-rm", "Bradley-Terry training of the writing reward model on preference pairs (rewards.writing.init of a config)");
    cmd->add_option("--config", args->config, "config name or path")->required();
    cmd->add_option("--set", args->set, "override a config value (repeatable)");
    cmd->add_option("--output", args->output,
                    "folder of the reward-model checkpoint (default <output_dir>/reward-model); it may hold only a "
                    "checkpoint, and not the config's inputs");
    cmd->add_flag("--overwrite", args->overwrite,
                  "replace a reward model already in the output folder that other inputs made (one the same inputs "
                  "made is reused without it)");
    cmd->callback([args] { lwz::run_train_rm(*args); });
  }
}

const lwz::Registration registration{&add_train_commands};

}  // namespace
