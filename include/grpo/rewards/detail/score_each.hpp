#pragma once
// The batched score of a per-sample reward: out[i] = reward(batch[i]), after checking the shapes.

#include <fmt/format.h>

#include <cstddef>
#include <span>
#include <string_view>

#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"

namespace grpo::detail {

/// `who` names the reward in the error ("LengthReward::score").
template <class R>
void score_each(const R& reward, SampleBatch batch, std::span<float> out, std::string_view who) {
  if (out.size() != batch.size()) {
    throw Error(fmt::format("{}: expected one output per sample ({}), found {}", who, batch.size(), out.size()));
  }
  for (std::size_t i = 0; i < batch.size(); ++i) out[i] = reward(batch[i]);
}

}  // namespace grpo::detail
