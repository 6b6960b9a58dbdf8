#pragma once
// grpo::MasterWeights: float32 master copies of the bfloat16/float16 trainable tensors, the part of
// grpo::ClippedAdamW that AdamWOptions::master_weights turns on.
//
// Why: a bfloat16 number has 8 significant bits, so neighbouring values are 2^-8 |w| to 2^-7 |w|
// apart (7.8e-3 just above 1.0). AdamW moves a weight by about lr per update (lr * m_hat /
// (sqrt(v_hat) + eps), where |m_hat| is about sqrt(v_hat) for a steady gradient); at lr = 1e-6
// that is below half the gap for every |w| >= 2^-10 (about 1e-3), so the rounded result is the old
// weight and the update is lost, every update. With master weights AdamW updates a float32 copy (gaps 2^-24 |w| to
// 2^-23 |w|) where the small steps add up, and the model's tensor takes the copy rounded to nearest:
//
//   master  = float32(w)                        made when the optimizer first needs it
//   g       = float32(grad w)                   clipped in float32 (ClippedAdamW)
//   master <- AdamW(master, g)                  moments float32 too (AdamW keeps them like master)
//   w       = round_to_nearest_even(master)     what the forward passes use
//
// A float32 or float64 tensor is its own master: no copy, and its update is the one without master
// weights. Cost per bfloat16 parameter: the 4-byte copy, moments of 4 + 4 bytes instead of 2 + 2,
// and during the update a float32 gradient in place of the bfloat16 one; with ZeRO-1
// (OptimizerShards) a rank holds these for the tensors it steps only.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>

#include <cstddef>
#include <span>
#include <vector>

namespace grpo {

class MasterWeights {
 public:
  /// `enabled`: AdamWOptions::master_weights. Copies are made on demand (target()), never here.
  explicit MasterWeights(bool enabled = false) : enabled_(enabled) {}

  [[nodiscard]] bool enabled() const { return enabled_; }

  /// Whether `param` is stepped through a float32 copy: master weights on and `param` bfloat16 or
  /// float16.
  [[nodiscard]] bool copies(const at::Tensor& param) const {
    return enabled_ && (param.scalar_type() == at::kBFloat16 || param.scalar_type() == at::kHalf);
  }

  /// The tensor AdamW steps for trainable tensor i (`param`): its float32 copy, made from `param`'s
  /// value when it has none yet, or `param` itself.
  at::Tensor target(std::size_t i, const at::Tensor& param) {
    if (!copies(param)) return param;
    if (masters_.size() <= i) masters_.resize(i + 1);
    if (!masters_[i].defined()) masters_[i] = param.detach().to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
    return masters_[i];
  }

  /// Tensor i's copy; undefined when it has none (not a copied tensor, or not made yet).
  [[nodiscard]] at::Tensor copy(std::size_t i) const { return i < masters_.size() ? masters_[i] : at::Tensor(); }

  /// Tensor i's copy takes `value` (a checkpoint's float32 master), or `param`'s value when `value`
  /// is undefined; in place, so the AdamW that steps the copy keeps it.
  void restore(std::size_t i, const at::Tensor& param, const at::Tensor& value) {
    at::Tensor master = target(i, param);
    at::NoGradGuard no_grad;
    master.copy_(value.defined() ? value : param.detach());
  }

  /// Forgets tensor i's copy (another rank steps the tensor).
  void drop(std::size_t i) {
    if (i < masters_.size()) masters_[i] = at::Tensor();
  }

  /// The gradient AdamW uses for tensor i: float32(grad param) * scale (no scale: 1), on the copy.
  /// Frees `param`'s own gradient, so the two are not held at once for long.
  void take_gradient(std::size_t i, const at::Tensor& param, const at::Tensor& scale) {
    at::Tensor g = param.grad().to(at::kFloat);  // bf16 -> fp32 is exact
    if (scale.defined()) g.mul_(scale);
    target(i, param).mutable_grad() = std::move(g);
    at::Tensor handle = param;  // shares the TensorImpl: resetting its grad resets the parameter's
    handle.mutable_grad().reset();
  }

  /// After AdamW stepped: each tensor whose copy took a gradient takes the copy's value rounded to
  /// its own dtype (round to nearest even); the copies' gradients are cleared.
  void write_back(std::span<const at::Tensor> params) {
    at::NoGradGuard no_grad;
    for (std::size_t i = 0; i < masters_.size() && i < params.size(); ++i) {
      if (!masters_[i].defined() || !masters_[i].grad().defined()) continue;
      params[i].detach().copy_(masters_[i]);
    }
    clear_gradients();
  }

  /// The copies' gradients are dropped (an update that was skipped).
  void clear_gradients() {
    for (auto& m : masters_)
      if (m.defined()) m.mutable_grad().reset();
  }

 private:
  bool enabled_;
  std::vector<at::Tensor> masters_;  ///< by trainable-tensor index; undefined: none
};

}  // namespace grpo
