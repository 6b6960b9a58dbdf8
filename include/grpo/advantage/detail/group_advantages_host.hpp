#pragma once
// The host implementation of every group advantage estimator, over contiguous ranges.
//
// Memory is touched once per reward: a group (G values) is read into L1 by the first of its two
// short passes (moments, output), so the second costs no memory traffic. Arithmetic is in double;
// inner loops run over kLanes independent accumulators so the compiler can vectorise them without
// reassociating floating-point sums.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "grpo/advantage/group_rule.hpp"
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

template <class T>
inline GroupMoments group_moments(const T* x, std::size_t n) {
  std::size_t first = 0;
  while (first < n && !std::isfinite(x[first])) ++first;
  GroupMoments m;
  if (first == n) return m;
  const T shift = x[first];
  double count[kLanes] = {};
  double sum[kLanes] = {};
  double squares[kLanes] = {};
  double differ[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::size_t j = 0; j < kLanes; ++j) {
      const T v = x[i + j];
      const bool finite = std::isfinite(v);
      const double d = finite ? static_cast<double>(v) - static_cast<double>(shift) : 0.0;
      count[j] += finite ? 1.0 : 0.0;
      sum[j] += d;
      squares[j] += d * d;
      differ[j] += d != 0.0 ? 1.0 : 0.0;
    }
  }
  for (std::size_t j = 0; j < kLanes && i + j < n; ++j) {  // the tail, fewer than kLanes values
    const T v = x[i + j];
    if (!std::isfinite(v)) continue;
    const double d = static_cast<double>(v) - static_cast<double>(shift);
    count[j] += 1.0;
    sum[j] += d;
    squares[j] += d * d;
    differ[j] += d != 0.0 ? 1.0 : 0.0;
  }
  double finite = 0.0;
  double differing = 0.0;
  for (std::size_t j = 0; j < kLanes; ++j) {
    finite += count[j];
    m.sum += sum[j];
    m.sum_squares += squares[j];
    differing += differ[j];
  }
  m.finite = static_cast<std::size_t>(finite);
  m.shift = static_cast<double>(shift);
  m.constant = m.finite <= 1 || differing == 0.0;
  return m;
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
    throw Error(std::string(who) + ": epsilon must be finite and >= 0, found " + std::to_string(rule.epsilon) +
                "; use e.g. 1e-6");
}

/// The weights normalised to sum 1 (equal when `weights` is empty), validated.
inline std::vector<double> normalized_weights(std::span<const double> weights, std::size_t rewards, const char* who) {
  if (weights.empty()) return std::vector<double>(rewards, rewards > 0 ? 1.0 / static_cast<double>(rewards) : 0.0);
  if (weights.size() != rewards)
    throw Error(std::string(who) + ": expected one weight per reward (" + std::to_string(rewards) + "), found " +
                std::to_string(weights.size()) + " weights; pass K weights or none for equal weights");
  double total = 0.0;
  for (std::size_t k = 0; k < weights.size(); ++k) {
    if (!(weights[k] >= 0.0) || !std::isfinite(weights[k]))
      throw Error(std::string(who) + ": weight " + std::to_string(k) + " must be finite and >= 0, found " +
                  std::to_string(weights[k]));
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
    throw Error(std::string(who) + ": expected the number of samples (" + std::to_string(samples) +
                ") to be a multiple of group_size (" + std::to_string(group_size) +
                "); every prompt needs exactly group_size completions, each group contiguous");
  if (rewards == 0 && samples > 0)
    throw Error(std::string(who) + ": expected at least one reward row, found a [0, " + std::to_string(samples) +
                "] table");
}

inline void check_reward_count(std::size_t found, std::size_t expected, const char* who) {
  if (found != expected)
    throw Error(std::string(who) + ": expected a reward table of " + std::to_string(expected) + " reward row(s), found " +
                std::to_string(found) + (expected == 1 ? "; combine several rewards with grpo::Balanced or grpo::RewardAverage" : ""));
}

/// rewards [K, N] -> out [N]: the plan's rule per group, combined over rewards by the plan.
inline void group_advantages(RewardTableView<const float> rewards, std::size_t group_size, std::span<float> out,
                             const GroupAdvantagePlan& plan, const char* who) {
  check_group_rule(plan.rule, who);
  check_group_shape(rewards.rewards, rewards.samples, group_size, who);
  if (out.size() != rewards.samples)
    throw Error(std::string(who) + ": expected an output span of " + std::to_string(rewards.samples) +
                " advantages (one per sample), found " + std::to_string(out.size()));
  const std::vector<double> weights = normalized_weights(plan.weights, rewards.rewards, who);
  const std::size_t samples = rewards.samples;
  const std::size_t groups = samples / group_size;
  constexpr double poison = std::numeric_limits<double>::quiet_NaN();

  // Skip zero-weight rewards entirely (their non-finite values too).
  std::vector<std::size_t> active;
  for (std::size_t k = 0; k < rewards.rewards; ++k)
    if (weights[k] > 0.0) active.push_back(k);

  if (active.size() == 1) {
    // One reward: the rule straight from the row into out.
    const float* row = rewards.row(active[0]).data();
    for (std::size_t g = 0; g < groups; ++g) {
      const float* x = row + g * group_size;
      float* o = out.data() + g * group_size;
      const GroupAffine a = group_affine(x, group_size, plan.rule);
      for (std::size_t i = 0; i < group_size; ++i)
        o[i] = std::isfinite(x[i]) ? static_cast<float>(a.scale * (static_cast<double>(x[i]) - a.center)) : 0.0f;
    }
    return;
  }

  std::vector<double> buffer(group_size);
  double* acc = buffer.data();
  for (std::size_t g = 0; g < groups; ++g) {
    float* o = out.data() + g * group_size;
    const std::size_t offset = g * group_size;
    if (plan.combination == RewardCombination::normalize_then_average) {
      // acc_i = sum_k w_k a_ik, NaN as soon as one reward of sample i is non-finite.
      bool first = true;
      for (std::size_t k : active) {
        const float* x = rewards.row(k).data() + offset;
        const GroupAffine a = group_affine(x, group_size, plan.rule);
        const double w = weights[k];
        for (std::size_t i = 0; i < group_size; ++i) {
          const double v = std::isfinite(x[i]) ? w * a.scale * (static_cast<double>(x[i]) - a.center) : poison;
          acc[i] = first ? v : acc[i] + v;
        }
        first = false;
      }
      for (std::size_t i = 0; i < group_size; ++i) o[i] = std::isnan(acc[i]) ? 0.0f : static_cast<float>(acc[i]);
    } else {
      // acc_i = sum_k w_k r_ik (non-finite if any r_ik is), then the rule on acc.
      std::fill_n(acc, group_size, 0.0);
      for (std::size_t k : active) {
        const float* x = rewards.row(k).data() + offset;
        const double w = weights[k];
        for (std::size_t i = 0; i < group_size; ++i) acc[i] += w * static_cast<double>(x[i]);
      }
      const GroupAffine a = group_affine(acc, group_size, plan.rule);
      for (std::size_t i = 0; i < group_size; ++i)
        o[i] = std::isfinite(acc[i]) ? static_cast<float>(a.scale * (acc[i] - a.center)) : 0.0f;
    }
  }
}

}  // namespace grpo::detail
