#pragma once
// Tensor parallelism (Megatron-LM's layout) on grpo::Communicator: the group a layer is split
// over, how a dimension is split, and the four collectives of a split layer as autograd
// functions, so gradients are right without special cases in the model or the trainer.
//
//   copy_to_tensor_group(x)      forward: x (every rank holds all of x)
//                                backward: dL/dx summed over the group (each rank's column slice
//                                contributed a part of it)
//   reduce_from_tensor_group(x)  forward: sum over the group (row-parallel partial products)
//                                backward: dL/dy unchanged (every rank holds all of y)
//   share_gradient(w, copies)    forward: w; backward: dL/dw summed over the ranks that hold the
//                                same copy of w (key/value heads replicated when T > their count)
//   gather_last_dim(x)           [..., n] on each rank -> [..., T * n] in rank order (no autograd:
//                                the sampler's logits)
//
// Sequence parallelism (Megatron's, Korthikanti et al. 2022) splits the tokens of the residual
// stream, the norms and the embedding output over the group between the split layers, so those
// [B, L, H] activations take 1/T per rank. Its collectives, on dimension 1 of [B, L, ...]:
//   gather_sequence(x)           forward: [B, L/T, H] -> [B, L, H] (all-gather); the input of a
//                                column-parallel layer. backward: dL/dx summed over the group and
//                                this rank's tokens kept (reduce-scatter)
//   reduce_scatter_sequence(x)   forward: sum over the group, this rank's tokens kept; the output of
//                                a row-parallel layer. backward: all-gather
//   gather_sequence_output(x)    forward: all-gather; backward: this rank's tokens of dL/dx (the
//                                consumer is replicated: every rank's dL/dx is the same)
//
// A TensorParallel with no group is T = 1: every function is the identity and nothing is split.
// Like every collective, each rank of the group must make the same calls in the same order.

#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/distributed/communicator.hpp"

namespace grpo {

/// The tensor-parallel group a model is split over: this rank's index in it and its size T.
/// Default: no group, T = 1 (nothing split, no collective).
struct TensorParallel {
  Communicator* group = nullptr;  ///< the tensor-parallel group (owned elsewhere; outlives the model)

  [[nodiscard]] int rank() const { return group == nullptr ? 0 : group->rank(); }
  [[nodiscard]] int size() const { return group == nullptr ? 1 : group->world_size(); }
  [[nodiscard]] bool active() const { return group != nullptr && group->world_size() > 1; }
};

/// The part [start, start + length) of a dimension this rank holds.
struct DimSlice {
  std::int64_t start = 0;
  std::int64_t length = 0;
};

/// Dimension `total` split into `parts` equal slices (total % parts == 0, checked by the model's
/// validation); the slice of part `index`.
inline DimSlice split_evenly(std::int64_t total, int parts, int index) {
  const auto length = total / parts;
  return {index * length, length};
}

namespace detail {

/// The group pointer travels through autograd's saved data as an integer (IValue holds no raw
/// pointers); the group outlives every graph built while it exists.
inline std::int64_t group_handle(Communicator* group) { return static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(group)); }
inline Communicator* group_of(torch::autograd::AutogradContext* ctx) {
  return reinterpret_cast<Communicator*>(static_cast<std::intptr_t>(ctx->saved_data["group"].toInt()));
}

/// sum over the group of x, out of place (x is not modified), in x's dtype and device. The
/// collective runs on the group's device (Gloo: CPU) in the wire dtype (float32 for half types on Gloo).
inline at::Tensor group_sum(Communicator& group, const at::Tensor& x) {
  const auto wire = wire_dtype(x.scalar_type(), group.device());
  at::Tensor buffer = x.to(group.device(), wire, /*non_blocking=*/false, /*copy=*/true).contiguous();
  group.all_reduce_sum(buffer);
  return buffer.to(x.device(), x.scalar_type());
}

struct CopyToTensorGroup : torch::autograd::Function<CopyToTensorGroup> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, std::int64_t group) {
    ctx->saved_data["group"] = group;
    return x.view_as(x);  // a new autograd node over the same data
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {grads[0].defined() ? group_sum(*group_of(ctx), grads[0]) : at::Tensor(), at::Tensor()};
  }
};

struct ReduceFromTensorGroup : torch::autograd::Function<ReduceFromTensorGroup> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, std::int64_t group) {
    (void)ctx;
    return group_sum(*reinterpret_cast<Communicator*>(static_cast<std::intptr_t>(group)), x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    (void)ctx;
    return {grads[0], at::Tensor()};
  }
};

/// Identity forward; backward sums dL/dw over the ranks that hold the same copy of w (rank r
/// holds copy r / ranks_per_copy), through one all_gather of dL/dw.
struct ShareGradient : torch::autograd::Function<ShareGradient> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& w, std::int64_t group,
                            std::int64_t ranks_per_copy) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["ranks_per_copy"] = ranks_per_copy;
    return w.view_as(w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor& g = grads[0];
    if (!g.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    Communicator& group = *group_of(ctx);
    const auto per_copy = ctx->saved_data["ranks_per_copy"].toInt();
    const auto wire = wire_dtype(g.scalar_type(), group.device());
    // [T * n, ...] in rank order -> [T, n, ...]; ranks [c * per_copy, (c + 1) * per_copy) share copy c
    const at::Tensor all = group.all_gather(g.to(group.device(), wire).contiguous().unsqueeze(0));
    const auto copy = group.rank() / per_copy;
    const at::Tensor summed = all.narrow(0, copy * per_copy, per_copy).sum(0);
    return {summed.to(g.device(), g.scalar_type()), at::Tensor(), at::Tensor()};
  }
};

/// [B, n, ...] on every rank -> [B, T * n, ...], rank 0's tokens first, in x's dtype and device.
inline at::Tensor all_gather_tokens(Communicator& group, const at::Tensor& x) {
  const auto wire = wire_dtype(x.scalar_type(), group.device());
  // all_gather concatenates along dim 0: bring the tokens there and back
  const at::Tensor all = group.all_gather(x.to(group.device(), wire).transpose(0, 1).contiguous());
  return all.transpose(0, 1).to(x.device(), x.scalar_type()).contiguous();
}

/// The sum over the group of x [B, T * n, ...], this rank's n tokens of it (Communicator::
/// reduce_scatter_sum on the tokens brought to dimension 0), in x's dtype and device.
inline at::Tensor reduce_scatter_tokens(Communicator& group, const at::Tensor& x) {
  const auto wire = wire_dtype(x.scalar_type(), group.device());
  const at::Tensor mine = group.reduce_scatter_sum(x.to(group.device(), wire).transpose(0, 1).contiguous());
  return mine.transpose(0, 1).to(x.device(), x.scalar_type()).contiguous();
}

inline at::Tensor own_tokens(Communicator& group, const at::Tensor& x) {
  const auto n = x.size(1) / group.world_size();
  return x.narrow(1, group.rank() * n, n).contiguous();
}

/// What a sequence-parallel collective does to the tokens (dimension 1) in one direction.
enum class TokenOp : std::uint8_t { gather, reduce_scatter, own };

inline at::Tensor apply_token_op(Communicator& group, const at::Tensor& x, TokenOp op) {
  switch (op) {
    case TokenOp::gather: return all_gather_tokens(group, x);
    case TokenOp::reduce_scatter: return reduce_scatter_tokens(group, x);
    case TokenOp::own: return own_tokens(group, x);
  }
  return x;
}

/// `Forward` on the way in, `Backward` on the gradient's way back.
template <TokenOp Forward, TokenOp Backward>
struct TokenCollective : torch::autograd::Function<TokenCollective<Forward, Backward>> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, std::int64_t group) {
    ctx->saved_data["group"] = group;
    return apply_token_op(*reinterpret_cast<Communicator*>(static_cast<std::intptr_t>(group)), x, Forward);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {grads[0].defined() ? apply_token_op(*group_of(ctx), grads[0], Backward) : at::Tensor(), at::Tensor()};
  }
};
using GatherSequence = TokenCollective<TokenOp::gather, TokenOp::reduce_scatter>;
using ReduceScatterSequence = TokenCollective<TokenOp::reduce_scatter, TokenOp::gather>;
using GatherSequenceOutput = TokenCollective<TokenOp::gather, TokenOp::own>;

}  // namespace detail

/// Forward: x. Backward: dL/dx summed over the group. The input of a column-parallel layer.
inline at::Tensor copy_to_tensor_group(const at::Tensor& x, const TensorParallel& tp) {
  if (!tp.active()) return x;
  return detail::CopyToTensorGroup::apply(x, detail::group_handle(tp.group));
}

/// Forward: sum of x over the group. Backward: dL/dy. The output of a row-parallel layer.
inline at::Tensor reduce_from_tensor_group(const at::Tensor& x, const TensorParallel& tp) {
  if (!tp.active()) return x;
  return detail::ReduceFromTensorGroup::apply(x, detail::group_handle(tp.group));
}

/// Forward: w. Backward: dL/dw summed over the `ranks_per_copy` consecutive ranks that hold the
/// same copy of w (ranks_per_copy = 1: unchanged).
inline at::Tensor share_gradient(const at::Tensor& w, const TensorParallel& tp, std::int64_t ranks_per_copy) {
  if (!tp.active() || ranks_per_copy <= 1 || !w.defined()) return w;
  return detail::ShareGradient::apply(w, detail::group_handle(tp.group), ranks_per_copy);
}

/// Sequence parallelism: [B, L/T, ...] on every rank -> [B, L, ...]; backward reduce-scatter.
/// The input of a column-parallel layer (instead of copy_to_tensor_group).
inline at::Tensor gather_sequence(const at::Tensor& x, const TensorParallel& tp) {
  if (!tp.active()) return x;
  return detail::GatherSequence::apply(x, detail::group_handle(tp.group));
}

/// Sequence parallelism: [B, L, ...] partial sums -> their sum's [B, L/T, ...] of this rank;
/// backward all-gather. The output of a row-parallel layer (instead of reduce_from_tensor_group).
inline at::Tensor reduce_scatter_sequence(const at::Tensor& x, const TensorParallel& tp) {
  if (!tp.active()) return x;
  return detail::ReduceScatterSequence::apply(x, detail::group_handle(tp.group));
}

/// Sequence parallelism: [B, L/T, ...] -> [B, L, ...] for a consumer every rank runs alike (the
/// final hidden states); backward keeps this rank's tokens of dL/dx.
inline at::Tensor gather_sequence_output(const at::Tensor& x, const TensorParallel& tp) {
  if (!tp.active()) return x;
  return detail::GatherSequenceOutput::apply(x, detail::group_handle(tp.group));
}

/// [..., n] on every rank -> [..., T * n], rank 0's slice first. Not differentiable (sampling).
inline at::Tensor gather_last_dim(const at::Tensor& x, const TensorParallel& tp) {
  if (!tp.active()) return x;
  Communicator& group = *tp.group;
  const auto wire = detail::wire_dtype(x.scalar_type(), group.device());
  // all_gather concatenates along dim 0: [T, ..., n] -> move T next to n -> [..., T * n]
  const at::Tensor all = group.all_gather(x.detach().to(group.device(), wire).contiguous().unsqueeze(0));
  const auto dims = x.dim();
  std::vector<std::int64_t> order;
  for (std::int64_t d = 1; d <= dims; ++d) order.push_back(d == dims ? 0 : d);
  order.push_back(dims);
  std::vector<std::int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() *= group.world_size();
  return all.permute(order).reshape(shape).to(x.device(), x.scalar_type());
}

}  // namespace grpo
