#pragma once
// Which part of a whole tensor a rank holds: all of it, or one contiguous range of one dimension.
// Tensor parallelism (grpo/model/qwen2_sharding.hpp) splits every tensor this way, and sharded
// checkpoints (grpo/io/sharded_tensors.hpp) record it beside each stored piece.

#include <cstdint>

namespace grpo {

/// [start, start + length) of dimension `dim`, whose whole size is `full`; dim < 0: the whole tensor.
struct TensorSlice {
  std::int64_t dim = -1;
  std::int64_t start = 0;
  std::int64_t length = 0;
  std::int64_t full = 0;
  [[nodiscard]] bool whole() const { return dim < 0; }
  [[nodiscard]] std::int64_t end() const { return start + length; }
};

}  // namespace grpo
