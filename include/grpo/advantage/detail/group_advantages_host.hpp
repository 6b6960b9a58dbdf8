#pragma once
// The host implementation of every group advantage estimator, over contiguous ranges.
//
// Memory is touched once per reward: a group (G values) is read into L1 by the first of its two
// short passes (moments, output), so the second costs no memory traffic. Arithmetic is in double;
// inner loops run over kLanes independent accumulators so the compiler can vectorise them without
// reassociating floating-point sums.

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "grpo/core/group_rule.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reward_table.hpp"

namespace grpo::detail {

/// What an estimator asks of the shared implementation.
struct GroupAdvantagePlan {
  GroupRule rule{};
  RewardCombination combination = RewardCombination::normalize_then_average;
  std::span<const double> weights{};  ///< one per reward, >= 0, not all 0; empty = equal weights
};

/// Per group: a_i = scale * (r_i - center) for finite r_i (scale 0: the group gives no signal).
struct GroupAffine {
  double center = 0.0;
  double scale = 0.0;
};

/// The finite values of one group, as sums of (v - shift) with shift = the first finite value:
/// centring on a member of the group keeps the one-pass variance exact to double rounding
/// (|mean - shift| <= range), and makes an all-equal group's sums exactly 0.
struct GroupMoments {
  std::size_t finite = 0;    ///< number of finite values
  double shift = 0.0;        ///< first finite value
  double sum = 0.0;          ///< sum of (v - shift)
  double sum_squares = 0.0;  ///< sum of (v - shift)^2
  bool constant = true;      ///< <= 1 finite value, or all finite values equal
  [[nodiscard]] double mean() const { return finite > 0 ? shift + sum / static_cast<double>(finite) : 0.0; }
  /// Sum of squared deviations from the mean.
  [[nodiscard]] double squared_deviations() const {
    return finite > 0 ? std::max(0.0, sum_squares - sum * sum / static_cast<double>(finite)) : 0.0;
  }
};

inline constexpr std::size_t kLanes = 8;

// Finiteness as an all-ones/all-zeros mask from the exponent bits. The hot loops select with
// these masks (integer AND) instead of `?:` on floating-point values: under GCC's default
// -ftrapping-math a conditional floating-point operation (a compare, a conversion) blocks
// if-conversion, and with it vectorisation.
inline std::uint64_t finite_mask(float v) {
  return (std::bit_cast<std::uint32_t>(v) & 0x7f800000u) != 0x7f800000u ? ~std::uint64_t{0} : 0;
}
inline std::uint64_t finite_mask(double v) {
  constexpr std::uint64_t exponent = 0x7ff0000000000000u;
  return (std::bit_cast<std::uint64_t>(v) & exponent) != exponent ? ~std::uint64_t{0} : 0;
}
inline double masked(double v, std::uint64_t mask) {
  return std::bit_cast<double>(std::bit_cast<std::uint64_t>(v) & mask);
}

// Fixed > 0: the group size is known at compile time, so the lane loops unroll completely and
// vectorise (with a run-time size GCC keeps them scalar); group_moments dispatches to it.
template <class T, std::size_t Fixed>
inline GroupMoments group_moments_sized(const T* x, std::size_t n_runtime) {
  const std::size_t n = Fixed > 0 ? Fixed : n_runtime;
  std::size_t first = 0;
  while (first < n && finite_mask(x[first]) == 0) ++first;
  GroupMoments m;
  if (first == n) return m;
  const double shift = static_cast<double>(x[first]);
  // Lane j accumulates x[j], x[j + kLanes], ...: kLanes independent sums (the j loop is what
  // the compiler vectorises), each in sequential order, so no floating-point reassociation.
  double count[kLanes];
  double sum[kLanes];
  double squares[kLanes];
  double spread[kLanes];  // sum |v - shift|: 0 iff every finite value equals the shift
  const std::size_t blocks = n / kLanes;
  for (std::size_t j = 0; j < kLanes; ++j) {
    double c = 0.0, s = 0.0, q = 0.0, a = 0.0;
    for (std::size_t b = 0; b < blocks; ++b) {
      const T v = x[b * kLanes + j];
      const std::uint64_t finite = finite_mask(v);
      const double d = masked(static_cast<double>(v) - shift, finite);
      c += masked(1.0, finite);
      s += d;
      q += d * d;
      a += std::abs(d);
    }
    count[j] = c;
    sum[j] = s;
    squares[j] = q;
    spread[j] = a;
  }
  for (std::size_t i = blocks * kLanes, j = 0; i < n; ++i, ++j) {  // the tail, fewer than kLanes values
    const T v = x[i];
    const std::uint64_t finite = finite_mask(v);
    const double d = masked(static_cast<double>(v) - shift, finite);
    count[j % kLanes] += masked(1.0, finite);
    sum[j % kLanes] += d;
    squares[j % kLanes] += d * d;
    spread[j % kLanes] += std::abs(d);
  }
  double finite = 0.0;
  double total_spread = 0.0;
  for (std::size_t j = 0; j < kLanes; ++j) {
    finite += count[j];
    m.sum += sum[j];
    m.sum_squares += squares[j];
    total_spread += spread[j];
  }
  m.finite = static_cast<std::size_t>(finite);
  m.shift = shift;
  m.constant = m.finite <= 1 || total_spread == 0.0;
  return m;
}

/// Count, shifted sums and constancy of the finite values of one group x[0..n).
template <class T>
inline GroupMoments group_moments(const T* x, std::size_t n) {
  switch (n) {
    case 8: return group_moments_sized<T, 8>(x, n);
    case 16: return group_moments_sized<T, 16>(x, n);
    case 32: return group_moments_sized<T, 32>(x, n);
    case 64: return group_moments_sized<T, 64>(x, n);
    default: return group_moments_sized<T, 0>(x, n);
  }
}

/// The rule applied to one group's moments.
template <class T>
inline GroupAffine group_affine(const T* x, std::size_t n, const GroupRule& rule) {
  const GroupMoments m = group_moments(x, n);
  if (m.constant) return {m.mean(), 0.0};
  const auto count = static_cast<double>(m.finite);
  switch (rule.kind) {
    case GroupRule::Kind::center:
      return {m.mean(), 1.0};
    case GroupRule::Kind::leave_one_out:
      return {m.mean(), count / (count - 1.0)};
    case GroupRule::Kind::normalize:
    default: {
      const double dof = rule.std_kind == StdKind::sample ? count - 1.0 : count;
      return {m.mean(), 1.0 / (std::sqrt(m.squared_deviations() / dof) + rule.epsilon)};
    }
  }
}

inline void check_group_rule(const GroupRule& rule, const char* who) {
  if (!(rule.epsilon >= 0.0) || !std::isfinite(rule.epsilon))
    throw Error(fmt::format("{}: epsilon must be finite and >= 0, found {}; use e.g. 1e-6", who, rule.epsilon));
}

/// The weights normalised to sum 1 (equal when `weights` is empty), validated.
inline std::vector<double> normalized_weights(std::span<const double> weights, std::size_t rewards, const char* who) {
  if (weights.empty()) return std::vector<double>(rewards, rewards > 0 ? 1.0 / static_cast<double>(rewards) : 0.0);
  if (weights.size() != rewards)
    throw Error(fmt::format("{}: expected one weight per reward ({}), found {} weights; pass K weights or none for "
                            "equal weights",
                            who, rewards, weights.size()));
  double total = 0.0;
  for (std::size_t k = 0; k < weights.size(); ++k) {
    if (!(weights[k] >= 0.0) || !std::isfinite(weights[k]))
      throw Error(fmt::format("{}: weight {} must be finite and >= 0, found {}", who, k, weights[k]));
    total += weights[k];
  }
  if (!(total > 0.0)) throw Error(std::string(who) + ": expected a positive sum of weights, found all weights 0");
  std::vector<double> out(weights.begin(), weights.end());
  for (double& w : out) w /= total;
  return out;
}

inline void check_group_shape(std::size_t rewards, std::size_t samples, std::size_t group_size, const char* who) {
  if (group_size == 0) throw Error(std::string(who) + ": group_size must be >= 1, found 0");
  if (samples % group_size != 0)
    throw Error(fmt::format("{}: expected the number of samples ({}) to be a multiple of group_size ({}); every "
                            "prompt needs exactly group_size completions, each group contiguous",
                            who, samples, group_size));
  if (rewards == 0 && samples > 0)
    throw Error(fmt::format("{}: expected at least one reward row, found a [0, {}] table", who, samples));
}

inline void check_reward_count(std::size_t found, std::size_t expected, const char* who) {
  if (found != expected)
    throw Error(fmt::format(
        "{}: expected a reward table of {} reward row(s), found {}{}", who, expected, found,
        expected == 1 ? "; combine several rewards with grpo::Balanced or grpo::RewardAverage" : ""));
}

/// The validated form of a plan: rewards of non-zero weight and their normalised weights.
struct ActiveRewards {
  std::vector<std::size_t> rows;   ///< reward indices with weight > 0
  std::vector<double> weights;     ///< their weights, summing to 1
};

inline ActiveRewards active_rewards(std::span<const double> weights, std::size_t rewards, const char* who) {
  const std::vector<double> normalized = normalized_weights(weights, rewards, who);
  ActiveRewards a;
  for (std::size_t k = 0; k < rewards; ++k) {
    if (normalized[k] > 0.0) {  // a zero-weight reward is skipped entirely, its non-finite values too
      a.rows.push_back(k);
      a.weights.push_back(normalized[k]);
    }
  }
  return a;
}

// out_i = sum_k a_k.scale * (r_ki - a_k.center), 0 if any r_ki is not finite; K fixed so the
// k loop unrolls and the i loop is one pass over the group.
template <std::size_t K>
inline void combine_group(const float* const* rows, const GroupAffine* affine, std::size_t n, float* out) {
  for (std::size_t i = 0; i < n; ++i) {
    double a = 0.0;
    std::uint64_t finite = ~std::uint64_t{0};
    for (std::size_t k = 0; k < K; ++k) {
      const float v = rows[k][i];
      finite &= finite_mask(v);
      a += affine[k].scale * (static_cast<double>(v) - affine[k].center);
    }
    const auto keep = static_cast<std::uint32_t>(finite);
    out[i] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(static_cast<float>(a)) & keep);
  }
}

inline void combine_group(const float* const* rows, const GroupAffine* affine, std::size_t k_rewards, std::size_t n,
                          float* out) {
  switch (k_rewards) {
    case 1: return combine_group<1>(rows, affine, n, out);
    case 2: return combine_group<2>(rows, affine, n, out);
    case 3: return combine_group<3>(rows, affine, n, out);
    case 4: return combine_group<4>(rows, affine, n, out);
    default:
      for (std::size_t i = 0; i < n; ++i) {
        double a = 0.0;
        std::uint64_t finite = ~std::uint64_t{0};
        for (std::size_t k = 0; k < k_rewards; ++k) {
          const float v = rows[k][i];
          finite &= finite_mask(v);
          a += affine[k].scale * (static_cast<double>(v) - affine[k].center);
        }
        out[i] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(static_cast<float>(a)) & static_cast<std::uint32_t>(finite));
      }
  }
}

/// Groups [group_begin, group_end) of a [K, N] table with rows `row_stride` floats apart:
/// out (indexed like a row) receives their advantages. No validation: callers validate.
inline void group_advantages_range(const float* table, std::size_t row_stride, const ActiveRewards& active,
                                   std::size_t group_size, std::size_t group_begin, std::size_t group_end,
                                   float* out, const GroupRule& rule, RewardCombination combination) {
  const std::size_t k_active = active.rows.size();
  std::vector<const float*> rows(k_active);
  std::vector<GroupAffine> affine(k_active);
  std::vector<double> combined(combination == RewardCombination::average_then_normalize ? group_size : 0);
  for (std::size_t g = group_begin; g < group_end; ++g) {
    const std::size_t offset = g * group_size;
    for (std::size_t k = 0; k < k_active; ++k) rows[k] = table + active.rows[k] * row_stride + offset;
    if (combination == RewardCombination::normalize_then_average) {
      for (std::size_t k = 0; k < k_active; ++k) {
        affine[k] = group_affine(rows[k], group_size, rule);
        affine[k].scale *= active.weights[k];
      }
      combine_group(rows.data(), affine.data(), k_active, group_size, out + offset);
    } else {
      // c_i = sum_k w_k r_ki (not finite if any r_ki is not), then the rule on c
      std::fill(combined.begin(), combined.end(), 0.0);
      for (std::size_t k = 0; k < k_active; ++k)
        for (std::size_t i = 0; i < group_size; ++i) combined[i] += active.weights[k] * static_cast<double>(rows[k][i]);
      const GroupAffine a = group_affine(combined.data(), group_size, rule);
      for (std::size_t i = 0; i < group_size; ++i) {
        const auto keep = static_cast<std::uint32_t>(finite_mask(combined[i]));
        const auto value = static_cast<float>(a.scale * (combined[i] - a.center));
        out[offset + i] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(value) & keep);
      }
    }
  }
}

/// rewards [K, N] -> out [N]: the plan's rule per group, combined over rewards by the plan.
inline void group_advantages(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out,
                             const GroupAdvantagePlan& plan, const char* who) {
  check_group_rule(plan.rule, who);
  check_group_shape(rewards.rewards, rewards.samples, group_size, who);
  if (out.size() != rewards.samples)
    throw Error(fmt::format("{}: expected an output span of {} advantages (one per sample), found {}", who,
                            rewards.samples, out.size()));
  const ActiveRewards active = active_rewards(plan.weights, rewards.rewards, who);
  group_advantages_range(rewards.data, rewards.samples, active, group_size, 0, rewards.samples / group_size, out.data(),
                         plan.rule, plan.combination);
}

}  // namespace grpo::detail
