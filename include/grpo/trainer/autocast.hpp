#pragma once
// grpo::Bf16AutocastScope: CUDA autocast to bfloat16 for a scope's lifetime, the C++ twin of
// torch.autocast("cuda", dtype=torch.bfloat16). The trainer runs sampling and the policy's
// forward/backward inside it when TrainerOptions::bf16_autocast is set, while parameters and
// AdamW state stay float32. No effect on the CPU.

#include <ATen/autocast_mode.h>

namespace grpo {

class Bf16AutocastScope {
 public:
  explicit Bf16AutocastScope(bool on) : on_(on) {
    if (!on_) return;
    was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    was_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~Bf16AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, was_dtype_);
  }
  Bf16AutocastScope(const Bf16AutocastScope&) = delete;
  Bf16AutocastScope& operator=(const Bf16AutocastScope&) = delete;

 private:
  bool on_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace grpo
