#pragma once
// The SwiGLU feed-forward block of Qwen2: down(silu(gate(x)) * up(x)), no biases.

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/silu.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "grpo/model/layers.hpp"

namespace grpo {

class Qwen2MLPImpl : public torch::nn::Module {
 public:
  Qwen2MLPImpl(std::int64_t hidden_size, std::int64_t intermediate_size, const ParameterOptions& options = {}) {
    gate_proj = register_module("gate_proj", Projection(hidden_size, intermediate_size, false, options));
    up_proj = register_module("up_proj", Projection(hidden_size, intermediate_size, false, options));
    down_proj = register_module("down_proj", Projection(intermediate_size, hidden_size, false, options));
  }

  // x: [..., hidden] -> [..., hidden]
  at::Tensor forward(const at::Tensor& x) {
    return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
  }

  Projection gate_proj{nullptr};
  Projection up_proj{nullptr};
  Projection down_proj{nullptr};
};
TORCH_MODULE(Qwen2MLP);

}  // namespace grpo
