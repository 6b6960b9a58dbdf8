#pragma once
// One optimizer update of the supervised stages (warm-up, reward-model training): clip the
// global gradient norm, set the learning rate, step, clear the gradients.

#include <ATen/core/Tensor.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace grpo {

/// Clips the gradients of `params` to `max_grad_norm` (<= 0: no clipping), sets every parameter
/// group's learning rate to `lr`, steps `optimizer` and sets the gradients to none. Returns the
/// gradient norm before clipping, or 0 when clipping is off.
inline double clipped_optimizer_step(torch::optim::Optimizer& optimizer, const std::vector<at::Tensor>& params,
                                     double max_grad_norm, double lr) {
  double norm = 0.0;
  if (max_grad_norm > 0) norm = torch::nn::utils::clip_grad_norm_(params, max_grad_norm);
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
  optimizer.step();
  optimizer.zero_grad(/*set_to_none=*/true);
  return norm;
}

}  // namespace grpo
