#pragma once
// Explicit length requirements ("about / at least / at most N words", "A-B words") and the paper's
// rules that turn them into target ranges [lo, hi] (method.md, "Target range prediction"):
//   - bounds are multiples of 100; the upper bound is at most 12,000; hi - lo is at most 3,000;
//   - an explicit requirement is widened by +-10%:  "a 2,000-word essay"        -> [1800, 2200]
//                                                   "no more than 2,000 words"  -> [1800, 2000]
//                                                   "at least 2,000 words"      -> [2000, 2200]
//   - a range is kept:                               "2000-2500 words"           -> [2000, 2500]
// Rounding to multiples of 100 goes outward (lo down, hi up), so the range always contains the
// +-10% band: "about 1,234 words" -> [1100, 1400]. Requirements above the cap are treated as the
// cap: "20,000 words" -> [10800, 12000]. apply_target_rules lists every case.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"

namespace grpo {

/// The paper's constraints on target ranges.
struct TargetRules {
  /// Bounds are multiples of this many words. Default 100.
  std::int64_t step = 100;
  /// The largest allowed upper bound, words. Default 12,000.
  std::int64_t max_upper = 12000;
  /// The largest allowed hi - lo, words. Default 3,000.
  std::int64_t max_width = 3000;
  /// An explicit requirement N is widened to [N - p%, N + p%]. Default 10.
  std::int64_t tolerance_percent = 10;
};

/// How a prompt states its length.
enum class LengthBound {
  about,     ///< "1000 words", "about 1000 words", "1000字左右"
  at_least,  ///< "at least 1000 words", "不少于1000字"
  at_most,   ///< "no more than 1000 words", "1000字以内"
  between,   ///< "1000-1500 words", "1000至1500字"
};

/// An explicit length requirement in words: `value` (and `upper` for `between`).
struct LengthRequirement {
  LengthBound bound = LengthBound::about;
  std::int64_t value = 0;  ///< N, or the lower end of a `between`
  std::int64_t upper = 0;  ///< the upper end of a `between`; unused otherwise
};

namespace detail {
inline void validate(const TargetRules& r) {
  if (r.step <= 0 || r.max_upper < r.step || r.max_width < r.step || r.tolerance_percent < 0 ||
      r.tolerance_percent >= 100) {
    throw Error(fmt::format("TargetRules: expected step > 0, max_upper >= step, max_width >= step and 0 <= "
                            "tolerance_percent < 100, found step = {}, max_upper = {}, max_width = {}, "
                            "tolerance_percent = {}; the paper's values are 100, 12000, 3000, 10",
                            r.step, r.max_upper, r.max_width, r.tolerance_percent));
  }
}
constexpr std::int64_t floor_to(std::int64_t x, std::int64_t step) { return x / step * step; }  // x >= 0
constexpr std::int64_t ceil_to(std::int64_t x, std::int64_t step) { return (x + step - 1) / step * step; }
}  // namespace detail

/// Turns an explicit requirement into a target range under the paper's rules (s = step,
/// p = tolerance_percent; floor/ceil to multiples of s):
///   about N     -> [floor(N (1 - p)), ceil(N (1 + p))]
///   at_least N  -> [ceil(N), max(ceil(N) + s, ceil(N (1 + p)))]
///   at_most N   -> hi = max(s, floor(N)), lo = min(floor(N (1 - p)), hi - s)
///   between A B -> [floor(min), ceil(max)], or `about A` when A == B
/// then the caps: hi > max_upper -> hi = max_upper and lo = min(lo, floor(max_upper (1 - p)));
/// hi - lo > max_width -> shrink symmetrically (the excess split in multiples of s, the odd step
/// taken from the top). Throws grpo::Error for a negative value or invalid rules.
inline WordRange apply_target_rules(LengthRequirement req, const TargetRules& rules = {}) {
  detail::validate(rules);
  if (req.value < 0 || (req.bound == LengthBound::between && req.upper < 0)) {
    throw Error(fmt::format("apply_target_rules: expected word counts >= 0, found {}{}", req.value,
                            req.bound == LengthBound::between ? fmt::format(" and {}", req.upper) : std::string()));
  }
  constexpr std::int64_t limit = 1'000'000'000;  // keeps N * 110 far from overflow
  const std::int64_t s = rules.step;
  const std::int64_t p = rules.tolerance_percent;
  const std::int64_t n = std::min(req.value, limit);
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  switch (req.bound) {
    case LengthBound::about:
      lo = detail::floor_to(n * (100 - p) / 100, s);
      hi = detail::ceil_to((n * (100 + p) + 99) / 100, s);
      break;
    case LengthBound::at_least:
      lo = detail::ceil_to(n, s);
      hi = std::max(lo + s, detail::ceil_to((n * (100 + p) + 99) / 100, s));
      break;
    case LengthBound::at_most:
      hi = std::max(s, detail::floor_to(n, s));
      lo = std::min(detail::floor_to(n * (100 - p) / 100, s), hi - s);
      break;
    case LengthBound::between: {
      const std::int64_t a = std::min(n, std::min(req.upper, limit));
      const std::int64_t b = std::max(n, std::min(req.upper, limit));
      if (a == b) return apply_target_rules({LengthBound::about, a, 0}, rules);
      lo = detail::floor_to(a, s);
      hi = detail::ceil_to(b, s);
      break;
    }
  }
  if (hi > rules.max_upper) {
    hi = detail::floor_to(rules.max_upper, s);
    lo = std::min(lo, detail::floor_to(rules.max_upper * (100 - p) / 100, s));
  }
  if (hi - lo > rules.max_width) {
    const std::int64_t width = detail::floor_to(rules.max_width, s);
    lo += detail::floor_to((hi - lo - width) / 2, s);
    hi = lo + width;
  }
  return {lo, hi};
}

}  // namespace grpo
