#pragma once
// The umbrella header: everything grpo offers. It pulls in LibTorch's module and optimizer
// headers (~15 s of compile time per translation unit); include the narrow headers you use to
// compile faster. Layout and data flow: docs/design.md.

#include "grpo/version.hpp"

// core types, customisation points, concepts
#include "grpo/core/error.hpp"
#include "grpo/core/reporter.hpp"
#include "grpo/core/enum_names.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/core/generation.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/core/loss_types.hpp"
#include "grpo/customization_points.hpp"
// the concepts in data-flow order: prompts -> samples -> rewards -> advantages -> loss
#include "grpo/concepts/target.hpp"
#include "grpo/concepts/policy.hpp"
#include "grpo/concepts/trainer.hpp"
#include "grpo/concepts/reward.hpp"
#include "grpo/concepts/advantage.hpp"
#include "grpo/concepts/loss.hpp"

// text and rewards
#include "grpo/text/utf8.hpp"
#include "grpo/text/word_count.hpp"
#include "grpo/text/completion.hpp"
#include "grpo/text/length_requirement.hpp"
#include "grpo/text/targets.hpp"
#include "grpo/text/repetition.hpp"
#include "grpo/rewards/length.hpp"
#include "grpo/rewards/format.hpp"
#include "grpo/rewards/reward_set.hpp"
#include "grpo/rewards/writing.hpp"

// advantages and losses
#include "grpo/advantage/group_normalized.hpp"
#include "grpo/advantage/dr_grpo.hpp"
#include "grpo/advantage/leave_one_out.hpp"
#include "grpo/advantage/balanced.hpp"
#include "grpo/advantage/reward_average.hpp"
#include "grpo/advantage/reward_statistics.hpp"
#include "grpo/loss/clipped_surrogate.hpp"
#include "grpo/loss/token_logprobs.hpp"

// files
#include "grpo/io/json.hpp"
#include "grpo/io/jsonl.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/safetensors_header.hpp"
#include "grpo/io/safetensors.hpp"

// Qwen2: tokenizer, model, sampling
#include "grpo/tokenizer/tokenizer.hpp"
#include "grpo/tokenizer/incremental_decoder.hpp"
#include "grpo/model/lora.hpp"
#include "grpo/model/qwen2_config.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/model/qwen2_checkpoint.hpp"
#include "grpo/sampling/prompts.hpp"
#include "grpo/sampling/sampler.hpp"
#include "grpo/sampling/generate.hpp"
#include "grpo/model/qwen2_generate.hpp"
#include "grpo/model/qwen2_policy.hpp"

// training
#include "grpo/distributed/communicator.hpp"
#include "grpo/distributed/sharded_optimizer.hpp"
#include "grpo/optim/adamw.hpp"
#include "grpo/optim/master_weights.hpp"
#include "grpo/trainer/options.hpp"
#include "grpo/trainer/freeze.hpp"
#include "grpo/optim/schedule.hpp"
#include "grpo/trainer/metrics.hpp"
#include "grpo/trainer/step_metrics.hpp"
#include "grpo/trainer/run_log.hpp"
#include "grpo/trainer/dynamic_sampling.hpp"
#include "grpo/data/prompt_dataset.hpp"
#include "grpo/trainer/rollout.hpp"
#include "grpo/trainer/checkpoint.hpp"
#include "grpo/trainer/trainer.hpp"
#include "grpo/trainer/sft.hpp"
#include "grpo/trainer/reward_model_training.hpp"

// planning: memory per GPU of a run on a T x D mesh
#include "grpo/plan/memory_plan.hpp"
