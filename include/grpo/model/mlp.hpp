#pragma once
// The SwiGLU feed-forward block of Qwen2: down(silu(gate(x)) * up(x)), no biases.
// Tensor-parallel: gate/up column-parallel and down row-parallel over `intermediate_size` (this
// rank's slice of the width), the partial outputs summed over the group.

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/silu.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "grpo/distributed/tensor_parallel.hpp"
#include "grpo/model/layers.hpp"

namespace grpo {

class Qwen2MLPImpl : public torch::nn::Module {
 public:
  Qwen2MLPImpl(std::int64_t hidden_size, std::int64_t intermediate_size, const ParameterOptions& options = {},
               TensorParallel tp = {})
      : tensor_parallel(tp) {
    gate_proj = register_module("gate_proj", Projection(hidden_size, intermediate_size, false, options));
    up_proj = register_module("up_proj", Projection(hidden_size, intermediate_size, false, options));
    down_proj = register_module("down_proj", Projection(intermediate_size, hidden_size, false, options));
  }

  // x: [..., hidden] -> [..., hidden]. sequence: x is this rank's tokens [B, L / T, hidden] (and
  // so is the result); the layer itself sees all L tokens.
  at::Tensor forward(const at::Tensor& input, bool sequence = false) {
    const auto& tp = tensor_parallel;
    const auto x = sequence ? gather_sequence(input, tp) : copy_to_tensor_group(input, tp);
    const auto partial = down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
    return sequence ? reduce_scatter_sequence(partial, tp) : reduce_from_tensor_group(partial, tp);
  }

  Projection gate_proj{nullptr};
  Projection up_proj{nullptr};
  Projection down_proj{nullptr};
  TensorParallel tensor_parallel;  ///< the group the width is split over (none: all of it)
};
TORCH_MODULE(Qwen2MLP);

}  // namespace grpo
