#pragma once
// Learning-rate schedules: linear warm-up, then constant, linear or cosine decay.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>

#include "grpo/core/enum_names.hpp"
#include "grpo/core/error.hpp"

namespace grpo {

enum class LrDecay : std::uint8_t { constant, linear, cosine };

/// Names of LrDecay (configs' lr_decay).
inline constexpr EnumName<LrDecay> lr_decay_names[] = {
    {"constant", LrDecay::constant}, {"linear", LrDecay::linear}, {"cosine", LrDecay::cosine}};

/// The learning rate of an update, as a function of the update index.
struct LrSchedule {
  double peak = 1e-6;              ///< learning rate after warm-up; default 1e-6 (verl/TRL GRPO default range)
  std::int64_t warmup_steps = 0;   ///< linear warm-up from 0 over this many updates; default 0
  std::int64_t total_steps = 1;    ///< updates over which decay runs to min_ratio * peak; default 1
  LrDecay decay = LrDecay::constant;  ///< after warm-up; default constant
  double min_ratio = 0.0;          ///< final lr as a fraction of peak for linear/cosine; default 0

  void validate() const {
    if (!(peak >= 0) || !std::isfinite(peak)) throw Error("lr: expected a finite learning rate >= 0, found " + std::to_string(peak));
    if (warmup_steps < 0) throw Error("lr_warmup_steps: expected >= 0, found " + std::to_string(warmup_steps));
    if (!(min_ratio >= 0 && min_ratio <= 1)) throw Error("lr_min_ratio: expected a value in [0, 1], found " + std::to_string(min_ratio));
  }

  /// The learning rate of update `step` (0-based): warm-up uses (step + 1) / warmup_steps so the
  /// first update already moves.
  [[nodiscard]] double at(std::int64_t step) const {
    if (warmup_steps > 0 && step < warmup_steps) {
      return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    }
    if (decay == LrDecay::constant) return peak;
    const double span = static_cast<double>(std::max<std::int64_t>(1, total_steps - warmup_steps));
    const double progress = std::clamp(static_cast<double>(step - warmup_steps) / span, 0.0, 1.0);
    const double shape = decay == LrDecay::linear ? 1.0 - progress
                                                  : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    return peak * (min_ratio + (1.0 - min_ratio) * shape);
  }
};

}  // namespace grpo
