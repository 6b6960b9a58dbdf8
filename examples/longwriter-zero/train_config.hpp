#pragma once
// What `train` and `train-rm` read from a run configuration (examples/configs/*.json, see
// docs/training.md): the shared top-level settings (RunContext) and one reader per section, each
// returning the library's options for that part. Readers are strict: every key they do not read
// is an error (Section::finish), and enum-valued keys are parsed with the library's name tables.

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <grpo/core/group_rule.hpp>
#include <grpo/distributed/tensor_parallel.hpp>
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/model/lora.hpp>
#include <grpo/rewards/format.hpp>
#include <grpo/rewards/length.hpp>
#include <grpo/rewards/writing.hpp>
#include <grpo/tokenizer/tokenizer.hpp>
#include <grpo/trainer/options.hpp>
#include <grpo/trainer/reward_model_training.hpp>
#include <grpo/trainer/sft.hpp>

#include "config.hpp"

namespace lwz {

/// The command line of `train` and `train-rm`: a config and its overrides.
struct TrainArgs {
  std::string config;
  std::vector<std::string> set;
  std::string resume;
  std::string output;
  bool overwrite = false;  ///< --overwrite: replace an earlier run in the output folder (outputs.hpp)
};

/// What every part of a run shares.
struct RunContext {
  Config config;
  std::filesystem::path output_dir;
  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;
  std::uint64_t seed = 0;
  std::filesystem::path tokenizer_path;
  /// A data-parallel rank other than 0: the cached stages before RL must be there (rank 0 made
  /// them); making them again here would race rank 0's folders.
  bool reuse_only = false;
  /// The tensor-parallel group the policy is split over (parallel.tensor; none when 1).
  grpo::TensorParallel tensor_parallel{};
  bool sequence_parallel = false;  ///< parallel.sequence: the models' forwards split tokens over the group too
};

/// Reads the top-level settings shared by every command into `ctx` (whose config `root` views):
/// output_dir (`output_override` wins when not empty), device, dtype, seed, tokenizer.
void read_context(RunContext& ctx, Section& root, const std::string& output_override);

/// An advantage rule chosen in the config (grpo, dr_grpo, rloo): one instantiation serves all.
struct ConfiguredBaseline {
  grpo::GroupRule rule;
  [[nodiscard]] grpo::GroupRule group_rule() const { return rule; }
};

// ---- policy ------------------------------------------------------------------------------

/// The `policy` section: a checkpoint folder, or an architecture to initialise (and warm up).
struct PolicySpec {
  std::optional<std::filesystem::path> model;
  nlohmann::json init_config;
  bool activation_checkpointing = false;
  std::int64_t logprob_chunk = 1024;
  std::vector<std::string> freeze;  // parameter-name patterns left out of the RL update
  std::optional<grpo::LoraOptions> lora;  // train LoRA adapters only (policy.lora)
  // warm-up (supervised), only with init
  std::optional<std::filesystem::path> warmup_data;
  grpo::SftOptions warmup;
  nlohmann::json section_json;
};

PolicySpec read_policy(Section s, const RunContext& ctx);

// ---- rewards -------------------------------------------------------------------------------

/// The `rewards.writing` section: a reward-model folder, or one to train from preference pairs.
struct WritingSpec {
  std::optional<std::filesystem::path> model;
  nlohmann::json init_config;
  std::optional<std::filesystem::path> pairs;
  grpo::RewardModelTrainingOptions train;
  grpo::WritingReward::Options score;
  nlohmann::json section_json;
};

/// Reads `rewards.writing` (the caller finishes `s`: it also holds the reward's weight).
WritingSpec read_writing(Section& s, const RunContext& ctx);

/// The `rewards` section: the paper's three rewards and their advantage weights.
struct RewardSpecs {
  grpo::LengthReward length;
  grpo::FormatReward format;
  WritingSpec writing;
  std::array<double, 3> weights{1, 1, 1};  // length, writing, format
};

RewardSpecs read_rewards(Section s, const RunContext& ctx);

// ---- advantage, loss, trainer --------------------------------------------------------------

/// The `advantage` section: how the three rewards combine (balanced or average) and the rule.
struct AdvantageSpec {
  grpo::RewardCombination combination = grpo::RewardCombination::normalize_then_average;
  ConfiguredBaseline baseline;
};

AdvantageSpec read_advantage(Section s);

grpo::ClippedSurrogateLoss read_loss(Section s);

/// The `trainer` section; the stop ids come from `tokenizer` (EOS, else <|endoftext|>).
grpo::TrainerOptions read_trainer(Section s, const RunContext& ctx, const grpo::Tokenizer& tokenizer);

// ---- parallelism ---------------------------------------------------------------------------

/// The `parallel` section: how the GPUs of a run (WORLD_SIZE = tensor x data) split the model.
struct ParallelSpec {
  std::int64_t tensor = 1;  ///< T: GPUs one copy of the model is split over (Megatron layout); default 1
  bool sequence = false;    ///< Megatron sequence parallelism inside the tensor group; default false
};

/// Reads `parallel` (tensor >= 1, sequence true/false); every other key is an error.
ParallelSpec read_parallel(Section s);

}  // namespace lwz
