#pragma once
// Activation checkpointing for LibTorch, which has no torch.utils.checkpoint in C++.
//
// checkpointed(fn, input, parameters) returns fn(input) but keeps only `input` for the backward
// pass; backward recomputes fn with gradients enabled and differentiates the recomputation. This
// trades one extra forward of fn for not storing its intermediate activations (for a decoder
// layer: attention scores, MLP activations), the standard recipe for long sequences.
//
// It is the "reentrant" form: `parameters` are explicit inputs of the autograd node, so their
// gradients come back through the node (also with torch::autograd::grad, not only backward()).
// fn must be deterministic (no dropout) and may capture anything it needs by value.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace grpo {

namespace detail {

struct RecomputeClosure : torch::CustomClassHolder {
  explicit RecomputeClosure(std::function<at::Tensor(const at::Tensor&)> fn) : fn(std::move(fn)) {}
  std::function<at::Tensor(const at::Tensor&)> fn;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // Runs without grad (Function::apply disables it), so nothing inside fn is saved.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, at::TensorList parameters,
                            c10::intrusive_ptr<RecomputeClosure> closure) {
    ctx->save_for_backward({input});
    ctx->saved_data["closure"] = c10::IValue::make_capsule(closure);
    ctx->saved_data["parameters"] = static_cast<std::int64_t>(parameters.size());
    std::vector<at::Tensor> kept(parameters.begin(), parameters.end());
    ctx->saved_data["parameter_list"] = c10::List<at::Tensor>(kept);
    return closure->fn(input);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto input = ctx->get_saved_variables()[0];
    auto closure = c10::static_intrusive_pointer_cast<RecomputeClosure>(ctx->saved_data["closure"].toCapsule());
    const auto parameter_list = ctx->saved_data["parameter_list"].toTensorList();
    const auto count = static_cast<std::size_t>(ctx->saved_data["parameters"].toInt());

    at::AutoGradMode enable_grad(true);
    const auto replay_input = input.detach().requires_grad_(input.requires_grad());
    const auto output = closure->fn(replay_input);

    // Differentiate w.r.t. whatever requires grad; the rest gets an undefined gradient.
    std::vector<at::Tensor> wrt;
    std::vector<std::size_t> slot;  // result position of each entry of wrt
    if (replay_input.requires_grad()) {
      wrt.push_back(replay_input);
      slot.push_back(0);
    }
    for (std::size_t i = 0; i < count; ++i) {
      const at::Tensor p = parameter_list.get(i);
      if (p.requires_grad()) {
        wrt.push_back(p);
        slot.push_back(1 + i);
      }
    }
    // One gradient per forward argument: input, each parameter, the closure (none).
    torch::autograd::variable_list result(count + 2);
    if (wrt.empty() || !output.requires_grad()) return result;
    const auto grads = torch::autograd::grad({output}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                             /*create_graph=*/false, /*allow_unused=*/true);
    for (std::size_t i = 0; i < wrt.size(); ++i) result[slot[i]] = grads[i];
    return result;
  }
};

}  // namespace detail

/// fn(input) without storing fn's intermediate activations; see the header comment.
/// input: any tensor; parameters: every tensor fn reads that may need a gradient.
inline at::Tensor checkpointed(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& input,
                               const std::vector<at::Tensor>& parameters) {
  auto closure = c10::make_intrusive<detail::RecomputeClosure>(std::move(fn));
  return detail::CheckpointFunction::apply(input, at::TensorList(parameters), std::move(closure));
}

}  // namespace grpo
