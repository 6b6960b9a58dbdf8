#pragma once
// grpo::OptimizerShards: optimizer-state sharding over data-parallel ranks (ZeRO stage 1).
//
// Every rank holds the whole model and the whole (summed) gradient, but steps AdamW only for the
// tensors it owns (shard_owners: about 1/W of the elements each), then each owner broadcasts its
// updated tensors. AdamW's two fp32 moments (8 bytes per parameter) become 8/W per rank, and so do
// the fp32 master weights of bf16 tensors (AdamWOptions::master_weights: 4 bytes become 4/W): an
// owner keeps the masters of its tensors only and broadcasts their rounded values.
// Checkpoints stay whole: gather() sends every tensor's moments and master to rank 0, so a run
// resumes on any number of ranks.
//
// Also here: tensor_parallel_norm(), the tensor group as ClippedAdamW's global norm sees it.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "grpo/distributed/communicator.hpp"
#include "grpo/optim/adamw.hpp"

namespace grpo {

class OptimizerShards final : public OptimizerSharding {
 public:
  /// `params`: every trainable tensor, the same list (shapes, order) on every rank.
  OptimizerShards(std::shared_ptr<Communicator> comm, std::span<const at::Tensor> params)
      : comm_(std::move(comm)), owners_(shard_owners(params, comm_->world_size())) {}

  /// The rank that steps tensor i.
  [[nodiscard]] const std::vector<int>& owners() const { return owners_; }

  [[nodiscard]] std::vector<at::Tensor> owned(std::span<const at::Tensor> params) const override {
    std::vector<at::Tensor> mine;
    for (std::size_t i = 0; i < params.size(); ++i)
      if (owners_[i] == comm_->rank()) mine.push_back(params[i]);
    return mine;
  }

  /// Each owner's tensors, broadcast from it: one bucketed broadcast per rank.
  void broadcast_updated(std::span<const at::Tensor> params) override {
    at::NoGradGuard no_grad;
    for (int r = 0; r < comm_->world_size(); ++r) {
      std::vector<at::Tensor> tensors;
      for (std::size_t i = 0; i < params.size(); ++i)
        if (owners_[i] == r) tensors.push_back(params[i].detach());
      broadcast(*comm_, tensors, r);
    }
  }

  /// Tensor by tensor, its owner sends [has moments, step, has master, dtype of the moments], the
  /// two moments and the float32 master to rank 0 (which keeps its own); they arrive on the CPU in
  /// the dtype the owner keeps them in.
  std::vector<AdamWMoments> gather(std::span<const at::Tensor> params, const std::vector<AdamWMoments>& local) override {
    const int rank = comm_->rank();
    std::vector<AdamWMoments> out(rank == 0 ? params.size() : 0);
    const c10::Device device = comm_->device();
    const auto on = at::TensorOptions().device(device);
    auto cpu = [](const at::Tensor& t) { return t.defined() ? t.cpu() : t; };
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int owner = owners_[i];
      if (owner == 0) {
        if (rank == 0) {
          const auto& m = local[i];
          out[i] = {cpu(m.exp_avg), cpu(m.exp_avg_sq), m.step, cpu(m.master)};
        }
        continue;
      }
      if (rank == owner) {
        const auto& m = local[i];
        const double dtype = m.defined() ? static_cast<double>(static_cast<std::int8_t>(m.exp_avg.scalar_type())) : -1.0;
        comm_->send(at::tensor({m.defined() ? 1.0 : 0.0, static_cast<double>(m.step), m.master.defined() ? 1.0 : 0.0, dtype},
                               on.dtype(at::kDouble)),
                    0);
        if (m.defined()) {
          comm_->send(m.exp_avg.to(device).contiguous(), 0);
          comm_->send(m.exp_avg_sq.to(device).contiguous(), 0);
        }
        if (m.master.defined()) comm_->send(m.master.to(device).contiguous(), 0);
      } else if (rank == 0) {
        at::Tensor header = at::zeros({4}, on.dtype(at::kDouble));
        comm_->recv(header, owner);
        header = header.cpu();
        const double* h = header.data_ptr<double>();
        auto receive = [&](at::ScalarType dtype) {
          at::Tensor t = at::empty(params[i].sizes(), on.dtype(dtype));
          comm_->recv(t, owner);
          return t.cpu();
        };
        if (h[0] != 0.0) {
          const auto dtype = static_cast<at::ScalarType>(static_cast<std::int8_t>(h[3]));
          out[i].exp_avg = receive(dtype);
          out[i].exp_avg_sq = receive(dtype);
          out[i].step = static_cast<std::int64_t>(h[1]);
        }
        if (h[2] != 0.0) out[i].master = receive(at::kFloat);
      }
    }
    return out;
  }

 private:
  std::shared_ptr<Communicator> comm_;
  std::vector<int> owners_;
};

/// The tensor-parallel group `group` as ClippedAdamW's global norm sees it
/// (ClippedAdamW::set_tensor_parallel): copies[i] ranks of the group hold the same values of
/// trainable tensor i (1: split over the group, group size: replicated).
inline TensorParallelNorm tensor_parallel_norm(std::shared_ptr<Communicator> group, std::vector<std::int64_t> copies) {
  const std::int64_t size = group->world_size();
  return {.copies = std::move(copies), .group_size = size, .all_reduce_sum = [group = std::move(group)](at::Tensor& t) {
            if (group->world_size() == 1) return;
            at::Tensor wire = t.reshape({1}).to(group->device(), at::kDouble, false, /*copy=*/true);
            group->all_reduce_sum(wire);
            t.copy_(wire.reshape(t.sizes()));
          }};
}

/// The same when every tensor is either split over the group (sharded[i]) or replicated.
inline TensorParallelNorm tensor_parallel_norm(std::shared_ptr<Communicator> group, const std::vector<bool>& sharded) {
  std::vector<std::int64_t> copies;
  for (const bool s : sharded) copies.push_back(s ? 1 : group->world_size());
  return tensor_parallel_norm(std::move(group), std::move(copies));
}

}  // namespace grpo
