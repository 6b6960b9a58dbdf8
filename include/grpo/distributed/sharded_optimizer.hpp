#pragma once
// grpo::OptimizerShards: optimizer-state sharding over data-parallel ranks (ZeRO stage 1).
//
// Every rank holds the whole model and the whole (summed) gradient, but steps AdamW only for the
// tensors it owns (shard_owners: about 1/W of the elements each), then each owner broadcasts its
// updated tensors. AdamW's two fp32 moments (8 bytes per parameter) become 8/W per rank.
// Checkpoints stay whole: gather() sends every tensor's moments to rank 0, so a run resumes on any
// number of ranks. Tensor parallelism and fp32 master shards extend this piece: an owner is then a
// (tensor, slice) and the master copy lives beside the moments.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cstddef>
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

  /// Tensor by tensor, its owner sends [has state, step] and the two moments to rank 0 (which
  /// keeps its own); moments arrive on the CPU in the parameter's dtype.
  std::vector<AdamWMoments> gather(std::span<const at::Tensor> params, const std::vector<AdamWMoments>& local) override {
    const int rank = comm_->rank();
    std::vector<AdamWMoments> out(rank == 0 ? params.size() : 0);
    const c10::Device device = comm_->device();
    const auto on = at::TensorOptions().device(device);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int owner = owners_[i];
      if (owner == 0) {
        if (rank == 0 && local[i].defined()) out[i] = {local[i].exp_avg.cpu(), local[i].exp_avg_sq.cpu(), local[i].step};
        continue;
      }
      if (rank == owner) {
        const auto& m = local[i];
        comm_->send(at::tensor({m.defined() ? 1.0 : 0.0, static_cast<double>(m.step)}, on.dtype(at::kDouble)), 0);
        if (m.defined()) {
          comm_->send(m.exp_avg.to(device).contiguous(), 0);
          comm_->send(m.exp_avg_sq.to(device).contiguous(), 0);
        }
      } else if (rank == 0) {
        at::Tensor header = at::zeros({2}, on.dtype(at::kDouble));
        comm_->recv(header, owner);
        header = header.cpu();
        if (header[0].item<double>() == 0.0) continue;
        const auto like = on.dtype(params[i].scalar_type());
        at::Tensor exp_avg = at::empty(params[i].sizes(), like), exp_avg_sq = at::empty(params[i].sizes(), like);
        comm_->recv(exp_avg, owner);
        comm_->recv(exp_avg_sq, owner);
        out[i] = {exp_avg.cpu(), exp_avg_sq.cpu(), static_cast<std::int64_t>(header[1].item<double>())};
      }
    }
    return out;
  }

 private:
  std::shared_ptr<Communicator> comm_;
  std::vector<int> owners_;
};

}  // namespace grpo
