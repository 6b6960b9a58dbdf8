#pragma once
// What rewards see: one completion of one prompt, with the prompt's metadata.

#include <cstdint>
#include <span>
#include <string_view>

namespace grpo {

/// A required answer length in words, both ends inclusive: the paper's [lo, hi] (method.md).
/// [0, 0] means "unanswerable / no target" and such prompts are dropped from training.
struct WordRange {
  std::int64_t lower = 0;  ///< inclusive lower bound, words; default 0
  std::int64_t upper = 0;  ///< inclusive upper bound, words; default 0

  friend constexpr bool operator==(const WordRange&, const WordRange&) = default;
};

/// One completion to be scored. A view: the caller owns the strings.
/// Samples of one prompt are contiguous in a batch (group i holds samples [i*G, (i+1)*G)).
struct Sample {
  std::string_view prompt;      ///< the user's request, without the think template
  std::string_view completion;  ///< the generated text after the template, up to the stop
  WordRange target;             ///< target answer length of the prompt, words
  bool truncated = false;       ///< true when generation hit the token limit before a stop
  std::int64_t group = 0;       ///< index of the prompt (group) in the batch
};

/// A batch of samples as rewards receive it.
using SampleBatch = std::span<const Sample>;

}  // namespace grpo
