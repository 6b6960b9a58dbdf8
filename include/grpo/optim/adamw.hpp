#pragma once
// grpo::ClippedAdamW: the one optimizer update of every training loop in the library (GRPO,
// supervised warm-up, reward-model training).
//
//   g      = the gradients of the trainable tensors (summed over data-parallel ranks by the caller)
//   norm   = ||g||_2 over every tensor (global norm)
//   norm not finite -> the update is skipped: no weight and no AdamW moment changes, the gradients
//                      are cleared, the update still counts (the schedule advances). A NaN/inf
//                      gradient would otherwise poison the weights and both moments for good.
//   else   g *= min(1, max_grad_norm / (norm + 1e-6))       (max_grad_norm <= 0: no clipping)
//          lr  = schedule(update index); AdamW step (decoupled weight decay, Loshchilov & Hutter)
//
// Sharded optimizer state (ZeRO-1, grpo::OptimizerShards in distributed/) plugs in through
// shard(): the AdamW then holds only this rank's tensors and the owners broadcast their updated
// values after the step.

#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
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

  void validate() const {
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw Error("adam_beta1/adam_beta2: expected values in [0, 1)");
    if (!(eps > 0)) throw Error(fmt::format("adam_eps: expected > 0, found {}", eps));
    if (!(weight_decay >= 0)) throw Error(fmt::format("weight_decay: expected >= 0, found {}", weight_decay));
    lr.validate();
  }
};

/// One tensor's AdamW state: undefined moments when it has none (never updated).
struct AdamWMoments {
  at::Tensor exp_avg;
  at::Tensor exp_avg_sq;
  std::int64_t step = 0;
  [[nodiscard]] bool defined() const { return exp_avg.defined(); }
};

namespace detail {
/// The state `optimizer` keeps for each of `params` (undefined for a tensor it holds none for).
inline std::vector<AdamWMoments> adamw_moments(torch::optim::AdamW& optimizer, std::span<const at::Tensor> params) {
  std::vector<AdamWMoments> out(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto it = optimizer.state().find(params[i].unsafeGetTensorImpl());
    if (it == optimizer.state().end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out[i] = {s.exp_avg(), s.exp_avg_sq(), s.step()};
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
  /// Every tensor's moments on rank 0 (CPU; empty elsewhere), from this rank's `local` ones.
  [[nodiscard]] virtual std::vector<AdamWMoments> gather(std::span<const at::Tensor> params,
                                                         const std::vector<AdamWMoments>& local) = 0;
};

class ClippedAdamW {
 public:
  /// `params`: the trainable tensors, in a stable order (checkpoints store moments by position).
  ClippedAdamW(std::vector<at::Tensor> params, AdamWOptions options)
      : params_(std::move(params)), options_(std::move(options)) {
    options_.validate();
    adamw_ = make(params_);
  }

  /// One update from the gradients the tensors hold now (see the header comment).
  OptimizerUpdate step() {
    OptimizerUpdate u{.grad_norm = clip(), .lr = options_.lr.at(update_index_)};
    if (std::isfinite(u.grad_norm)) {
      for (auto& group : adamw_->param_groups()) group.options().set_lr(u.lr);
      adamw_->step();
      if (sharding_) sharding_->broadcast_updated(params_);
      u.applied = true;
    }
    for (auto& p : params_) p.mutable_grad().reset();
    ++update_index_;
    return u;
  }

  /// From now on this rank steps only the tensors `sharding` gives it, keeping any moments they had.
  void shard(std::shared_ptr<OptimizerSharding> sharding) {
    auto owned = sharding->owned(params_);
    auto sharded = make(owned);
    for (const auto& p : owned) {
      auto it = adamw_->state().find(p.unsafeGetTensorImpl());
      if (it != adamw_->state().end()) sharded->state()[p.unsafeGetTensorImpl()] = std::move(it->second);
    }
    adamw_ = std::move(sharded);
    sharding_ = std::move(sharding);
  }

  /// Every tensor's moments: this process's, or with sharding gathered on rank 0 (empty
  /// elsewhere). Every rank calls it.
  [[nodiscard]] std::vector<AdamWMoments> moments() {
    auto local = detail::adamw_moments(*adamw_, params_);
    return sharding_ ? sharding_->gather(params_, local) : local;
  }

  [[nodiscard]] const std::vector<at::Tensor>& params() const { return params_; }
  /// The AdamW of the tensors this rank steps (all of them without sharding).
  [[nodiscard]] torch::optim::AdamW& adamw() { return *adamw_; }
  [[nodiscard]] const AdamWOptions& options() const { return options_; }
  /// Updates taken so far (skipped ones included): the schedule's position.
  [[nodiscard]] std::int64_t update_index() const { return update_index_; }
  void set_update_index(std::int64_t i) { update_index_ = i; }

 private:
  std::unique_ptr<torch::optim::AdamW> make(const std::vector<at::Tensor>& params) const {
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(options_.lr.at(0))
                                                             .betas({options_.beta1, options_.beta2})
                                                             .eps(options_.eps)
                                                             .weight_decay(options_.weight_decay));
  }

  /// The global norm before clipping; scales the gradients to max_grad_norm when above it.
  double clip() {
    std::vector<at::Tensor> with_grad;
    for (auto& p : params_)
      if (p.grad().defined()) with_grad.push_back(p);
    if (with_grad.empty()) return 0.0;
    const double max_norm = options_.max_grad_norm > 0 ? options_.max_grad_norm : std::numeric_limits<double>::infinity();
    return torch::nn::utils::clip_grad_norm_(with_grad, max_norm);
  }

  std::vector<at::Tensor> params_;
  AdamWOptions options_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
  std::shared_ptr<OptimizerSharding> sharding_;
  std::int64_t update_index_ = 0;
};

}  // namespace grpo
