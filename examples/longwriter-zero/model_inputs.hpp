#pragma once
// What every subcommand that runs a model checks before any work:
// - the model folder (--model, --reward-model, policy.model, rewards.writing.model): a folder whose
//   checkpoint files are regular files (grpo::check_checkpoint_folder), checked before anything in
//   it is opened, so a FIFO cannot block a reader and a file given for a folder is named as such;
// - the context length: a sequence must fit the positions the model was trained for,
//   max_position_embeddings of its config.json. Checked for every input line, so that an
//   over-long prompt is an error naming its line instead of a silent extrapolation of the rotary
//   embeddings (or, sampling, a KV cache sized prompt + max_new_tokens beyond them).

#include <fmt/format.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <grpo/core/error.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>

namespace lwz {

/// grpo::check_checkpoint_folder(folder), its message prefixed by `option` ("--model: ...").
inline void check_model_folder(const std::filesystem::path& folder, std::string_view option) {
  try {
    grpo::check_checkpoint_folder(folder);
  } catch (const grpo::Error& e) {
    throw grpo::Error(fmt::format("{}: {}", option, e.what()));
  }
}

/// Throws grpo::Error unless `prompt_tokens` + `new_tokens` <= `max_positions`. `new_what` names
/// what the new tokens are ("--max-new-tokens", "trainer.sampling.max_new_tokens", "the
/// completion"), `model` the model's folder or config for the message.
inline void check_context_length(std::int64_t prompt_tokens, std::int64_t new_tokens, std::int64_t max_positions,
                                 std::string_view new_what, std::string_view model) {
  if (new_tokens <= max_positions - prompt_tokens) return;  // both >= 0: no overflow, unlike the sum
  if (prompt_tokens >= max_positions) {
    throw grpo::Error(fmt::format("the prompt has {} tokens, the model's whole context is {} "
                                  "(max_position_embeddings of {}); shorten the prompt",
                                  prompt_tokens, max_positions, model));
  }
  throw grpo::Error(fmt::format("the prompt's {} tokens + {} {} = {} tokens exceed the model's context of {} "
                                "(max_position_embeddings of {}); shorten the prompt or lower {} to at most {}",
                                prompt_tokens, new_what, new_tokens, prompt_tokens + new_tokens, max_positions, model,
                                new_what, max_positions - prompt_tokens));
}

}  // namespace lwz
