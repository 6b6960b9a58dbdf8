#pragma once
// TrainerOptions: one GRPO run, every field with its meaning, unit and default. The defaults are
// the paper's settings (LongWriter-Zero: G = 32, 14,000 new tokens, temperature 0.8, top-p 1.0,
// clip 0.2, no KL, think prompt, three balanced rewards) wherever the paper gives one.

#include <fmt/format.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "grpo/core/enum_names.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reporter.hpp"
#include "grpo/distributed/agreement.hpp"
#include "grpo/optim/adamw.hpp"
#include "grpo/sampling/prompts.hpp"
#include "grpo/core/generation.hpp"
#include "grpo/optim/schedule.hpp"

namespace grpo {

/// What to do with completions that hit the token limit before a stop (they have no </answer>).
enum class TruncationPolicy : std::uint8_t {
  keep,        ///< score and train on them as they are: the format reward already fails them (default)
  mask,        ///< score them (their group statistics stay honest) but leave them out of the loss (TRL's mask_truncated_completions)
  zero_reward  ///< set every reward of a truncated completion to 0 before advantages
};

/// Names of TruncationPolicy (configs' trainer.truncation).
inline constexpr EnumName<TruncationPolicy> truncation_policy_names[] = {
    {"keep", TruncationPolicy::keep}, {"mask", TruncationPolicy::mask}, {"zero_reward", TruncationPolicy::zero_reward}};

/// Where pi_old (the denominator of the importance ratio) comes from.
enum class OldLogprobSource : std::uint8_t {
  automatic,  ///< the current policy, detached, when each sample is used once (strictly on-policy:
              ///< ratio = 1); otherwise recomputed by the trainer before the first update (default)
  sampler,    ///< the log-probs the sampler recorded (exact only with top-p = 1, top-k = 0)
  recompute,  ///< always recomputed by the trainer before the first update of the step
};

/// Names of OldLogprobSource (configs' trainer.old_logprobs).
inline constexpr EnumName<OldLogprobSource> old_logprob_source_names[] = {{"automatic", OldLogprobSource::automatic},
                                                                          {"sampler", OldLogprobSource::sampler},
                                                                          {"recompute", OldLogprobSource::recompute}};

/// How a checkpoint stores the weights and the optimizer state (grpo/trainer/checkpoint.hpp,
/// grpo/trainer/sharded_checkpoint.hpp).
enum class CheckpointLayout : std::uint8_t {
  automatic,  ///< sharded when the policy is split over a tensor-parallel group, else whole (default)
  whole,      ///< one process's files: policy/ in Hugging Face layout + optimizer.safetensors,
              ///< gathered on world rank 0 (host memory ~ the checkpoint's size there)
  sharded,    ///< each rank writes its own slices (shards/), nothing gathered; the final checkpoint
              ///< also holds policy/, exported one tensor at a time (longwriter-zero convert does
              ///< the same for any sharded checkpoint)
};

/// Names of CheckpointLayout (configs' trainer.checkpoint_layout).
inline constexpr EnumName<CheckpointLayout> checkpoint_layout_names[] = {
    {"auto", CheckpointLayout::automatic}, {"whole", CheckpointLayout::whole}, {"sharded", CheckpointLayout::sharded}};

/// The most samples one step may draw (prompts_per_step * group_size): 512 times the default
/// 64 x 32, and a bound that keeps a mistyped count an error instead of an allocation failure.
inline constexpr std::int64_t max_samples_per_step = std::int64_t{1} << 20;

struct TrainerOptions {
  // ---- GRPO ----
  std::int64_t steps = 150;            ///< RL steps; default 150 (the paper's run)
  std::int64_t prompts_per_step = 64;  ///< prompts drawn per step; default 64
  std::int64_t group_size = 32;        ///< G completions per prompt; default 32 (paper)
  /// Sampling for rollouts; default the paper's: temperature 0.8, top-p 1.0, 14,000 new tokens,
  /// stop after "</answer>".
  SamplingOptions sampling{.temperature = 0.8, .top_p = 1.0, .max_new_tokens = 14000, .stop_strings = {"</answer>"}};
  PromptOptions prompt{};              ///< how questions are wrapped; default the think prompt
  TruncationPolicy truncation = TruncationPolicy::keep;  ///< truncated completions; default keep
  bool filter_zero_variance_groups = false;  ///< leave groups whose advantages are all 0 out of the update; default false
  /// DAPO's dynamic sampling: draw up to this many batches of prompts_per_step prompts in a step,
  /// keeping only groups whose advantages are not all 0, until prompts_per_step such groups are
  /// found; exactly that many are trained (fewer if the rounds run out). Every drawn prompt counts
  /// as consumed. 0 = off (default).
  std::int64_t dynamic_sampling_rounds = 0;

  // ---- update ----
  std::int64_t epochs = 1;             ///< optimisation passes over each step's samples; default 1 (on-policy)
  std::int64_t mini_batches = 1;       ///< optimizer updates per epoch (samples split evenly); default 1
  std::int64_t micro_batch_tokens = 16384;  ///< padded tokens per forward/backward (gradient accumulation); default 16,384
  OldLogprobSource old_logprobs = OldLogprobSource::automatic;  ///< pi_old; default automatic
  LrSchedule lr{.peak = 1e-6};         ///< learning-rate schedule over updates; default constant 1e-6
  double adam_beta1 = 0.9;             ///< AdamW beta1; default 0.9
  double adam_beta2 = 0.999;           ///< AdamW beta2; default 0.999
  double adam_eps = 1e-8;              ///< AdamW epsilon; default 1e-8
  double weight_decay = 0.0;           ///< AdamW decoupled weight decay; default 0
  double max_grad_norm = 1.0;          ///< clip the global gradient norm to this; <= 0 disables; default 1.0
  /// Run sampling and the policy's forward/backward under CUDA autocast to bfloat16 while the
  /// parameters and AdamW state stay float32 (master weights); no effect on CPU. Default false.
  bool bf16_autocast = false;
  /// Data parallel (Trainer::distribute): each rank keeps the AdamW moments of about 1/W of the
  /// trainable tensors, updates those and broadcasts them (ZeRO stage 1): 8 bytes per fp32
  /// parameter become 8/W. Checkpoints stay whole (gathered on rank 0), so a run resumes on any
  /// number of ranks. No effect in one process. Default false.
  bool shard_optimizer_state = false;
  /// fp32 master weights (grpo::MasterWeights): a bfloat16/float16 trainable tensor is stepped
  /// through a float32 copy (AdamW moments float32 too) and takes the copy's rounded value; at
  /// lr 1e-6 a bf16 weight updated in place would not move at all. Costs 4 bytes per bf16
  /// parameter (and float32 instead of bf16 moments), divided over the ranks with
  /// shard_optimizer_state; checkpoints store the masters. float32 tensors are their own masters
  /// (no copy, no change). Default false.
  bool master_weights = false;

  // ---- output ----
  std::filesystem::path output_dir = "runs/grpo";  ///< metrics.jsonl, checkpoints/, samples.jsonl; default runs/grpo
  std::int64_t save_every = 50;        ///< checkpoint every N steps (and at the end); 0 = only at the end; default 50
  bool save_final = true;              ///< checkpoint after the last step; default true
  std::int64_t keep_checkpoints = 3;   ///< newest checkpoints kept; 0 = keep all; default 3
  CheckpointLayout checkpoint_layout = CheckpointLayout::automatic;  ///< whole or per-rank files; default auto
  std::int64_t log_samples_every = 10; ///< write completions with their rewards to samples.jsonl at steps 1, 1+N, 1+2N, ...; 0 = never; default 10
  std::int64_t log_samples_per_group = 1;  ///< completions per group written then (<= group_size); default 1
  Reporter* reporter = nullptr;        ///< where the per-step progress line goes (rank 0); null: none (default)
  std::uint64_t seed = 0;              ///< prompt order and sampling seeds derive from it and the step; default 0

  /// The options every data-parallel rank must share (distributed/agreement.hpp), with their names.
  [[nodiscard]] std::vector<RankSetting> rank_settings() const {
    return {{"seed", static_cast<std::int64_t>(seed)},  // the same bits
            {"steps", steps},
            {"prompts_per_step", prompts_per_step},
            {"group_size", group_size},
            {"epochs", epochs},
            {"mini_batches", mini_batches},
            {"save_every", save_every},
            {"save_final", save_final ? 1 : 0},
            {"checkpoint_layout", static_cast<std::int64_t>(checkpoint_layout)},
            {"log_samples_every", log_samples_every},
            {"shard_optimizer_state", shard_optimizer_state ? 1 : 0},
            {"master_weights", master_weights ? 1 : 0},
            {"dynamic_sampling_rounds", dynamic_sampling_rounds}};
  }

  /// The optimizer these options describe (optim/adamw.hpp).
  [[nodiscard]] AdamWOptions optimizer() const {
    return {.lr = lr, .beta1 = adam_beta1, .beta2 = adam_beta2, .eps = adam_eps, .weight_decay = weight_decay,
            .max_grad_norm = max_grad_norm, .master_weights = master_weights};
  }

  void validate() const {
    auto positive = [](std::int64_t v, const char* name) {
      if (v <= 0) throw Error(fmt::format("{}: expected a positive integer, found {}", name, v));
    };
    positive(steps, "steps");
    positive(prompts_per_step, "prompts_per_step");
    positive(group_size, "group_size");
    positive(epochs, "epochs");
    positive(mini_batches, "mini_batches");
    positive(micro_batch_tokens, "micro_batch_tokens");
    if (prompts_per_step > max_samples_per_step / group_size) {
      throw Error(fmt::format("prompts_per_step * group_size: expected at most {} samples per step, found {} * {}",
                              max_samples_per_step, prompts_per_step, group_size));
    }
    if (mini_batches > prompts_per_step * group_size) {
      throw Error(fmt::format("mini_batches: expected at most prompts_per_step * group_size = {}, found {}",
                              prompts_per_step * group_size, mini_batches));
    }
    if (save_every < 0) throw Error(fmt::format("save_every: expected >= 0, found {}", save_every));
    if (dynamic_sampling_rounds < 0) {
      throw Error(fmt::format("dynamic_sampling_rounds: expected >= 0 (0 = off), found {}", dynamic_sampling_rounds));
    }
    if (keep_checkpoints < 0) throw Error(fmt::format("keep_checkpoints: expected >= 0, found {}", keep_checkpoints));
    if (log_samples_per_group < 1) {
      throw Error(fmt::format("log_samples_per_group: expected >= 1, found {}", log_samples_per_group));
    }
    if (log_samples_every < 0) {
      throw Error(fmt::format("log_samples_every: expected >= 0, found {}", log_samples_every));
    }
    if (!(adam_beta1 >= 0 && adam_beta1 < 1) || !(adam_beta2 >= 0 && adam_beta2 < 1)) {
      throw Error("adam_beta1/adam_beta2: expected values in [0, 1)");
    }
    if (!(adam_eps > 0)) throw Error(fmt::format("adam_eps: expected > 0, found {}", adam_eps));
    if (!(weight_decay >= 0)) throw Error(fmt::format("weight_decay: expected >= 0, found {}", weight_decay));
    if (sampling.max_new_tokens <= 0) {
      throw Error(
          fmt::format("sampling.max_new_tokens: expected a positive integer, found {}", sampling.max_new_tokens));
    }
    lr.validate();
  }
};

}  // namespace grpo
