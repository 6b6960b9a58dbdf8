#pragma once
// The stages of a run before RL, each cached in a folder of output_dir that a later run reuses
// when its inputs are unchanged: the warmed-up base policy (base-policy/) and the trained writing
// reward model (reward-model/). A cached folder holds grpo_stage.json with a fingerprint of the
// config section and data files that made it. `train-rm` runs the reward-model stage alone.

#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>

#include <grpo/model/qwen2_policy.hpp>
#include <grpo/rewards/writing.hpp>
#include <grpo/sampling/prompts.hpp>
#include <grpo/tokenizer/tokenizer.hpp>

#include "train_config.hpp"

namespace lwz {

// ---- the cache -----------------------------------------------------------------------------

/// A short stable fingerprint of the inputs of a cached stage (config section + data files):
/// FNV-1a 64 of their bytes and the seed, as 16 hex digits.
std::string fingerprint(const nlohmann::json& section, std::initializer_list<std::filesystem::path> files,
                        std::uint64_t seed);

/// True when `dir` holds a finished stage whose fingerprint is `print`.
bool cached(const std::filesystem::path& dir, const std::string& print);

/// Marks `dir` as a finished stage of fingerprint `print` (grpo_stage.json: `extra` + the print).
void mark_cached(const std::filesystem::path& dir, const std::string& print, const nlohmann::json& extra);

/// For a rank other than 0 (ctx.reuse_only), a cached stage that is missing means rank 0's output
/// is not visible here: throws. Does nothing on rank 0.
void require_cached(const RunContext& ctx, const std::filesystem::path& dir, const char* stage);

// ---- the stages ----------------------------------------------------------------------------

/// The config's tokenizer, else the one in `model_dir`.
grpo::Tokenizer load_tokenizer(const RunContext& ctx, const std::optional<std::filesystem::path>& model_dir);

/// The policy of `spec`: its checkpoint, random weights (no warm-up data), or the warmed-up base
/// policy (made, or reused from output_dir/base-policy).
/// With parallel.tensor = T > 1: the policy's and the writing reward model's configs split over T
/// (grpo::check_tensor_parallel, naming the option and the model), and no LoRA; before any stage.
void check_models_split(const PolicySpec& policy, const WritingSpec& writing, const RunContext& ctx);

grpo::Qwen2Policy build_policy(const PolicySpec& spec, const RunContext& ctx, const grpo::PromptOptions& prompt);

/// Trains (or reuses) the reward model of `spec` in `out`; returns `out`.
std::filesystem::path train_or_reuse_reward_model(const WritingSpec& spec, const RunContext& ctx,
                                                  const std::filesystem::path& out);

/// The writing reward of `spec`: its model, random weights (no pairs), or the trained one.
grpo::WritingReward build_writing_reward(const WritingSpec& spec, const RunContext& ctx);

/// `train-rm`: the reward-model stage of a config alone; prints its grpo_stage.json.
void run_train_rm(const TrainArgs& args);

}  // namespace lwz
