#pragma once
// grpo::ClippedAdamW: the one optimizer update of every training loop in the library (GRPO,
// supervised warm-up, reward-model training).
//
//   g      = the gradients of the trainable tensors (summed over data-parallel ranks by the caller)
//   norm   = ||g||_2 over every tensor (global norm; each tensor's norm in float32 at least)
//   norm not finite -> the update is skipped: no weight, master weight or AdamW moment changes, the
//                      gradients are cleared, the update still counts (the schedule advances). A
//                      NaN/inf gradient would otherwise poison the weights and both moments for good.
//   else   g *= min(1, max_grad_norm / (norm + 1e-6))       (max_grad_norm <= 0: no clipping)
//          lr  = schedule(update index); AdamW step (decoupled weight decay, Loshchilov & Hutter)
//
// Master weights (AdamWOptions::master_weights, grpo::MasterWeights): a bfloat16/float16 tensor is
// stepped through a float32 copy; its gradient is upcast before clipping and it takes the copy's
// rounded value after the step.
//
// Tensor parallelism (set_tensor_parallel): every element counts once in the norm. A tensor held by
// c_i of the T ranks of the tensor group (1: split, each rank its own slice; T: replicated; in
// between: a slice some ranks share, e.g. key/value heads) contributes its square sum over c_i:
//   norm^2 = sum over the group (sum_{i: c_i < T} ||g_i||^2 / c_i) + sum_{i: c_i = T} ||g_i||^2
// (the replicated tensors' squares stay local: every rank has the same). Copies must hold the same
// gradient.
//
// Sharded optimizer state (ZeRO-1, grpo::OptimizerShards in distributed/) plugs in through
// shard(): the AdamW then holds only this rank's tensors (and their masters) and the owners
// broadcast their updated values after the step. The norm is taken from every tensor's gradient on
// every rank, so all ranks clip alike.

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <torch/optim/adamw.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/optim/master_weights.hpp"
#include "grpo/optim/schedule.hpp"

namespace grpo {

/// AdamW with a schedule and global-norm clipping; every field with its meaning and default.
struct AdamWOptions {
  LrSchedule lr{};             ///< learning rate of update i: lr.at(i); default constant 1e-6
  double beta1 = 0.9;          ///< first-moment decay; default 0.9
  double beta2 = 0.999;        ///< second-moment decay; default 0.999
  double eps = 1e-8;           ///< denominator epsilon; default 1e-8
  double weight_decay = 0.0;   ///< decoupled weight decay; default 0
  double max_grad_norm = 1.0;  ///< clip the global gradient norm to this; <= 0 disables; default 1.0
  /// Step bfloat16/float16 tensors through float32 master copies (grpo::MasterWeights); float32
  /// and float64 tensors are their own masters. Default false.
  bool master_weights = false;

  void validate() const {
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw Error("adam_beta1/adam_beta2: expected values in [0, 1)");
    if (!(eps > 0)) throw Error(fmt::format("adam_eps: expected > 0, found {}", eps));
    if (!(weight_decay >= 0)) throw Error(fmt::format("weight_decay: expected >= 0, found {}", weight_decay));
    lr.validate();
  }
};

/// One tensor's optimizer state: AdamW's moments (undefined when it has none: never updated) and,
/// with master weights, its float32 master copy (undefined for a tensor that is its own master).
struct AdamWMoments {
  at::Tensor exp_avg;
  at::Tensor exp_avg_sq;
  std::int64_t step = 0;
  at::Tensor master;  ///< float32 copy of the weights AdamW steps (MasterWeights); usually undefined
  [[nodiscard]] bool defined() const { return exp_avg.defined(); }
};

namespace detail {
/// The state `optimizer` keeps for each of `params` (undefined for a tensor it holds none for).
inline std::vector<AdamWMoments> adamw_moments(torch::optim::AdamW& optimizer, std::span<const at::Tensor> params) {
  std::vector<AdamWMoments> out(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined()) continue;
    auto it = optimizer.state().find(params[i].unsafeGetTensorImpl());
    if (it == optimizer.state().end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out[i] = {s.exp_avg(), s.exp_avg_sq(), s.step(), {}};
  }
  return out;
}
}  // namespace detail

/// What one update did.
struct OptimizerUpdate {
  double grad_norm = 0.0;  ///< global gradient norm before clipping (NaN/inf when skipped)
  double lr = 0.0;         ///< the learning rate of this update
  bool applied = false;    ///< false: skipped because grad_norm was not finite
};

/// Where updated tensors come from when the optimizer state is sharded (ZeRO-1): the interface
/// grpo::OptimizerShards implements, so this header needs no collective.
class OptimizerSharding {
 public:
  virtual ~OptimizerSharding() = default;
  /// Which of `params` this rank steps.
  [[nodiscard]] virtual std::vector<at::Tensor> owned(std::span<const at::Tensor> params) const = 0;
  /// After the owners stepped: every rank takes every tensor's new value.
  virtual void broadcast_updated(std::span<const at::Tensor> params) = 0;
  /// Every tensor's moments and masters on rank 0 (CPU; empty elsewhere), from this rank's `local` ones.
  [[nodiscard]] virtual std::vector<AdamWMoments> gather(std::span<const at::Tensor> params,
                                                         const std::vector<AdamWMoments>& local) = 0;
};

/// Tensor parallelism as the global gradient norm sees it (ClippedAdamW::set_tensor_parallel);
/// grpo::tensor_parallel_norm (distributed/sharded_optimizer.hpp) makes one from a Communicator.
struct TensorParallelNorm {
  /// copies[i]: how many ranks of the tensor group hold the same values of params()[i]: 1 for a
  /// tensor split over the group, group_size for a replicated one, in between for a slice that
  /// some ranks share.
  std::vector<std::int64_t> copies;
  std::int64_t group_size = 1;  ///< ranks in the tensor group
  /// In place: t = the sum of t over the ranks of the tensor group (a float64 scalar tensor on the
  /// gradients' device). Every rank of the group calls it once per update, gradients or not.
  std::function<void(at::Tensor&)> all_reduce_sum;
};

class ClippedAdamW {
 public:
  /// `params`: the trainable tensors, in a stable order (checkpoints store moments by position).
  ClippedAdamW(std::vector<at::Tensor> params, AdamWOptions options)
      : params_(std::move(params)),
        options_(std::move(options)),
        held_(params_.size(), true),
        masters_(options_.master_weights) {
    options_.validate();
  }

  /// One update from the gradients the tensors hold now (see the header comment).
  OptimizerUpdate step() {
    torch::optim::AdamW& adamw = this->adamw();  // first use: masters copy the weights as they are now
    const at::Tensor norm = grad_norm();
    OptimizerUpdate u{.grad_norm = norm.defined() ? norm.item<double>() : 0.0, .lr = options_.lr.at(update_index_)};
    if (std::isfinite(u.grad_norm)) {
      const at::Tensor scale = clip_scale(norm);
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!held_[i] || !params_[i].grad().defined()) continue;  // another rank's: its owner clips it
        if (masters_.copies(params_[i])) masters_.take_gradient(i, params_[i], scale);
        else if (scale.defined()) params_[i].grad().mul_(scale);
      }
      for (auto& group : adamw.param_groups()) group.options().set_lr(u.lr);
      adamw.step();
      masters_.write_back(params_);
      if (sharding_) sharding_->broadcast_updated(params_);
      u.applied = true;
    }
    for (auto& p : params_) p.mutable_grad().reset();
    masters_.clear_gradients();
    ++update_index_;
    return u;
  }

  /// From now on this rank steps only the tensors `sharding` gives it, keeping any moments and
  /// masters they had; the others' masters are freed.
  void shard(std::shared_ptr<OptimizerSharding> sharding) {
    const auto owned = sharding->owned(params_);
    std::vector<bool> held(params_.size(), false);
    for (std::size_t i = 0; i < params_.size(); ++i)
      for (const auto& o : owned) held[i] = held[i] || o.is_same(params_[i]);
    std::unique_ptr<torch::optim::AdamW> before = std::move(adamw_);
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (!held[i]) masters_.drop(i);
    held_ = std::move(held);
    if (before) {
      adamw_ = make();
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!held_[i]) continue;
        void* key = stepped(i).unsafeGetTensorImpl();
        auto it = before->state().find(key);
        if (it != before->state().end()) adamw_->state()[key] = std::move(it->second);
      }
    }
    sharding_ = std::move(sharding);
  }

  /// Under tensor parallelism: the global norm counts each tensor once (see the header comment).
  /// Every rank of the tensor group must then call step() together.
  void set_tensor_parallel(TensorParallelNorm tp) {
    if (tp.copies.size() != params_.size()) {
      throw Error(fmt::format("ClippedAdamW::set_tensor_parallel: `copies` has {} entries for {} trainable tensors",
                              tp.copies.size(), params_.size()));
    }
    for (std::size_t i = 0; i < tp.copies.size(); ++i) {
      if (tp.copies[i] < 1 || tp.copies[i] > tp.group_size) {
        throw Error(fmt::format("ClippedAdamW::set_tensor_parallel: copies[{}] = {}, expected 1 to the group size {}", i,
                                tp.copies[i], tp.group_size));
      }
    }
    if (!tp.all_reduce_sum) throw Error("ClippedAdamW::set_tensor_parallel: no all_reduce_sum given");
    tp_ = std::move(tp);
  }

  /// Every tensor's moments and masters: this process's (the optimizer's own tensors, not copies:
  /// write them before the next step), or with sharding gathered on rank 0 (empty elsewhere).
  /// Every rank calls it.
  [[nodiscard]] std::vector<AdamWMoments> moments() {
    auto local = local_moments();
    return sharding_ ? sharding_->gather(params_, local) : local;
  }

  /// The moments and masters of the tensors this rank steps (held()), nothing gathered: a
  /// sharded checkpoint's part of this rank. Entries of the other tensors stay undefined.
  [[nodiscard]] std::vector<AdamWMoments> local_moments() {
    std::vector<AdamWMoments> local(params_.size());
    if (adamw_) {
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!held_[i]) continue;
        auto it = adamw_->state().find(stepped(i).unsafeGetTensorImpl());
        if (it != adamw_->state().end()) {
          auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
          local[i] = {s.exp_avg(), s.exp_avg_sq(), s.step(), {}};
        }
        local[i].master = masters_.copy(i);
      }
    }
    return local;
  }

  /// Takes back what moments() returned (a checkpoint's state, one entry per trainable tensor), for
  /// the tensors this rank steps: the moments, copied in the dtype and onto the device of the
  /// tensor AdamW steps, and the masters; a copied tensor saved without a master gets one from its
  /// current value. Restore the weights first.
  void restore(const std::vector<AdamWMoments>& saved) {
    if (saved.size() != params_.size()) {
      throw Error(fmt::format("ClippedAdamW::restore: state for {} tensors, but {} are trained", saved.size(), params_.size()));
    }
    torch::optim::AdamW& adamw = this->adamw();
    adamw.state().clear();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (!held_[i]) continue;
      if (saved[i].master.defined() && !saved[i].master.sizes().equals(params_[i].sizes())) {
        throw Error(fmt::format("ClippedAdamW::restore: the master of trainable tensor {} does not have its shape", i));
      }
      if (masters_.copies(params_[i])) masters_.restore(i, params_[i], saved[i].master);  // else its own master
      if (!saved[i].defined()) continue;
      const at::Tensor target = stepped(i);
      if (!saved[i].exp_avg.sizes().equals(target.sizes()) || !saved[i].exp_avg_sq.sizes().equals(target.sizes())) {
        throw Error(fmt::format("ClippedAdamW::restore: the moments of trainable tensor {} do not have its shape", i));
      }
      auto like = [&](const at::Tensor& t) { return t.to(target.device(), target.scalar_type(), false, /*copy=*/true); };
      auto state = std::make_unique<torch::optim::AdamWParamState>();
      state->step(saved[i].step);
      state->exp_avg(like(saved[i].exp_avg));
      state->exp_avg_sq(like(saved[i].exp_avg_sq));
      adamw.state()[target.unsafeGetTensorImpl()] = std::move(state);
    }
  }

  [[nodiscard]] const std::vector<at::Tensor>& params() const { return params_; }
  /// Whether the optimizer state is sharded over ranks (shard()).
  [[nodiscard]] bool sharded() const { return sharding_ != nullptr; }
  /// held()[i]: this rank steps params()[i] (all of them without sharding).
  [[nodiscard]] const std::vector<bool>& held() const { return held_; }
  /// The AdamW of the tensors this rank steps (all of them without sharding), through their
  /// masters where there are any. Made on first use (the first update, a restore), so that the
  /// masters copy the weights as they are then: after a data-parallel broadcast, after shard().
  [[nodiscard]] torch::optim::AdamW& adamw() {
    if (!adamw_) adamw_ = make();
    return *adamw_;
  }
  [[nodiscard]] const AdamWOptions& options() const { return options_; }
  /// Updates taken so far (skipped ones included): the schedule's position.
  [[nodiscard]] std::int64_t update_index() const { return update_index_; }
  void set_update_index(std::int64_t i) { update_index_ = i; }

 private:
  /// The tensor AdamW steps for params_[i] (held): its master, or the tensor itself.
  at::Tensor stepped(std::size_t i) { return masters_.target(i, params_[i]); }

  std::unique_ptr<torch::optim::AdamW> make() {
    std::vector<at::Tensor> targets;
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (held_[i]) targets.push_back(stepped(i));
    return std::make_unique<torch::optim::AdamW>(targets, torch::optim::AdamWOptions(options_.lr.at(0))
                                                              .betas({options_.beta1, options_.beta2})
                                                              .eps(options_.eps)
                                                              .weight_decay(options_.weight_decay));
  }

  /// ||g_i||_2 in float32 at least: a bf16/fp16 gradient is upcast as it is read (the same bits
  /// as the norm of its float32 copy), so owners and non-owners of a master agree.
  static at::Tensor tensor_norm(const at::Tensor& g) {
    if (g.scalar_type() == at::kBFloat16 || g.scalar_type() == at::kHalf)
      return at::linalg_vector_norm(g, 2, std::nullopt, false, at::kFloat);
    return g.norm(2);
  }

  /// The global norm before clipping, 0-dim; undefined when no tensor has a gradient here (and
  /// there is no tensor group to take part in).
  ///   no tensor group: || (||g_1||, ..., ||g_n||) ||       (torch.nn.utils.clip_grad_norm_)
  ///   tensor group:    sqrt(group sum of shared squares / copies + replicated squares), in float64
  at::Tensor grad_norm() const {
    std::vector<at::Tensor> norms, shared;  // shared: ||g_i||^2 / c_i of tensors not on every rank
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (!params_[i].grad().defined()) continue;
      at::Tensor n = tensor_norm(params_[i].grad());
      const std::int64_t copies = tp_ ? tp_->copies[i] : 1;
      if (tp_ && copies < tp_->group_size) shared.push_back(n.to(at::kDouble).square() / static_cast<double>(copies));
      else norms.push_back(std::move(n));
    }
    if (!tp_) {
      if (norms.empty()) return {};
      return norms.size() == 1 ? norms.front() : at::stack(norms).norm(2);
    }
    const auto on = at::TensorOptions(at::kDouble).device(params_.empty() ? c10::Device(c10::kCPU) : params_.front().device());
    at::Tensor total = shared.empty() ? at::zeros({}, on) : at::stack(shared).sum();
    tp_->all_reduce_sum(total);
    if (!norms.empty()) total = total + at::stack(norms).to(at::kDouble).square().sum();
    return total.sqrt();
  }

  /// min(1, max_grad_norm / (norm + 1e-6)) as a 0-dim tensor (torch.nn.utils.clip_grad_norm_'s
  /// coefficient); undefined when clipping is off or there is no norm.
  at::Tensor clip_scale(const at::Tensor& norm) const {
    if (!norm.defined() || options_.max_grad_norm <= 0) return {};
    return at::clamp(options_.max_grad_norm / (norm + 1e-6), std::nullopt, 1.0);
  }

  std::vector<at::Tensor> params_;
  AdamWOptions options_;
  std::vector<bool> held_;  ///< held_[i]: this rank steps params_[i]
  MasterWeights masters_;
  std::unique_ptr<torch::optim::AdamW> adamw_;  ///< over the held tensors (their masters); made on first use
  std::shared_ptr<OptimizerSharding> sharding_;
  std::optional<TensorParallelNorm> tp_;
  std::int64_t update_index_ = 0;
};

}  // namespace grpo
