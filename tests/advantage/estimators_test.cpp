// Hand-derived advantages on tiny groups (derivations in comments), the defined edge results
// (all-equal groups, non-finite rewards, G = 1) on every path, and bad input.
#include <grpo/advantage/balanced.hpp>
#include <grpo/advantage/dr_grpo.hpp>
#include <grpo/advantage/group_normalized.hpp>
#include <grpo/advantage/leave_one_out.hpp>
#include <grpo/advantage/reward_average.hpp>
#include <grpo/advantage/reward_statistics.hpp>

#include <ATen/Functions.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

// c10/util/Logging.h (pulled in by ATen) replaces Catch's CHECK with a glog-style CHECK(cond)
// that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

// ---- concept proofs and near misses (compile-time) ----
struct RuleAsDouble {  // near miss: group_rule() must return a GroupRule
  double group_rule() const { return 0.0; }
};
struct MutableRule {  // near miss: group_rule() must be callable on a const object
  grpo::GroupRule group_rule() { return {}; }
};
static_assert(grpo::GroupBaseline<grpo::GroupNormalized> && grpo::GroupBaseline<grpo::DrGrpo> &&
              grpo::GroupBaseline<grpo::LeaveOneOut>);
static_assert(!grpo::GroupBaseline<RuleAsDouble> && !grpo::GroupBaseline<MutableRule>);
static_assert(!grpo::GroupBaseline<grpo::Balanced<3>>, "a multi-reward estimator is not an inner rule");
static_assert(grpo::AdvantageEstimatorFor<grpo::GroupNormalized, 1> && !grpo::AdvantageEstimatorFor<grpo::GroupNormalized, 3>);
static_assert(grpo::AdvantageEstimatorFor<grpo::Balanced<3, grpo::LeaveOneOut>, 3>);
static_assert(grpo::AdvantageEstimatorFor<grpo::RewardAverage<>, 7> && grpo::TensorAdvantageEstimator<grpo::RewardAverage<2>>);
static_assert(grpo::estimator_rewards<grpo::Balanced<>> == std::dynamic_extent);

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
constexpr float inf_f = std::numeric_limits<float>::infinity();

// Runs the range path and the CPU tensor path and the ATen fallback; returns the range result and
// checks the other two agree with it to float rounding.
template <class E>
std::vector<float> run(const E& estimator, std::vector<float> table, std::size_t rewards, std::size_t group) {
  const std::size_t samples = rewards == 0 ? 0 : table.size() / rewards;
  std::vector<float> out(samples, -7.0f);
  estimator.compute(grpo::RewardTableView<const float>{table.data(), rewards, samples}, group, out);
  const at::Tensor t = at::from_blob(table.data(), {static_cast<std::int64_t>(rewards), static_cast<std::int64_t>(samples)},
                                     at::kFloat);
  const at::Tensor via_tensor = estimator.compute(t, static_cast<std::int64_t>(group));
  REQUIRE(via_tensor.scalar_type() == at::kFloat);
  REQUIRE(via_tensor.size(0) == static_cast<std::int64_t>(samples));
  for (std::size_t i = 0; i < samples; ++i) CHECK(via_tensor[static_cast<std::int64_t>(i)].item<float>() == out[i]);
  return out;
}

void check_close(const std::vector<float>& got, const std::vector<double>& expected, double tol = 1e-6) {
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    CHECK(got[i] == Approx(expected[i]).margin(tol));
  }
}

}  // namespace

TEST_CASE("GroupNormalized on [1, 2, 3, 4]", "[estimators]") {
  // mean 2.5, deviations (-1.5, -0.5, 0.5, 1.5), sum of squares 5.
  // sample std sqrt(5/3) = 1.290994: A = dev / 1.290994 = (-1.161895, -0.387298, 0.387298, 1.161895)
  check_close(run(grpo::GroupNormalized{.epsilon = 0.0}, {1, 2, 3, 4}, 1, 4),
              {-1.161895003862225, -0.3872983346207417, 0.3872983346207417, 1.161895003862225});
  // population std sqrt(5/4) = 1.118034: A = (-1.341641, -0.447214, 0.447214, 1.341641)
  check_close(run(grpo::GroupNormalized{.std_kind = grpo::StdKind::population, .epsilon = 0.0}, {1, 2, 3, 4}, 1, 4),
              {-1.3416407864998738, -0.4472135954999579, 0.4472135954999579, 1.3416407864998738});
  // epsilon is added to the std: 1.5 / (sqrt(5/3) + 0.5) = 0.837722
  CHECK(run(grpo::GroupNormalized{.epsilon = 0.5}, {1, 2, 3, 4}, 1, 4)[3] == Approx(1.5 / (std::sqrt(5.0 / 3.0) + 0.5)));
  // two groups are independent: the second is the first + 100 and scaled by 10 -> same advantages
  const auto two = run(grpo::GroupNormalized{.epsilon = 0.0}, {1, 2, 3, 4, 110, 120, 130, 140}, 1, 4);
  for (int i = 0; i < 4; ++i) CHECK(two[i] == Approx(two[i + 4]).margin(1e-6));
}

TEST_CASE("DrGrpo and LeaveOneOut on [1, 2, 3, 4]", "[estimators]") {
  // Dr.GRPO: r - mean = (-1.5, -0.5, 0.5, 1.5)
  check_close(run(grpo::DrGrpo{}, {1, 2, 3, 4}, 1, 4), {-1.5, -0.5, 0.5, 1.5});
  // RLOO: 1 - mean(2,3,4) = -2; 2 - mean(1,3,4) = -2/3; 3 - mean(1,2,4) = 2/3; 4 - mean(1,2,3) = 2
  check_close(run(grpo::LeaveOneOut{}, {1, 2, 3, 4}, 1, 4), {-2.0, -2.0 / 3.0, 2.0 / 3.0, 2.0});
}

TEST_CASE("non-finite rewards are left out of the group and get advantage 0", "[estimators]") {
  // [1, NaN, 3, inf]: finite {1, 3}, mean 2, sample std sqrt(2): A = (-1/sqrt2, 0, 1/sqrt2, 0)
  const auto a = run(grpo::GroupNormalized{.epsilon = 0.0}, {1, nan_f, 3, inf_f}, 1, 4);
  check_close(a, {-std::sqrt(0.5), 0.0, std::sqrt(0.5), 0.0});
  CHECK(a[1] == 0.0f);
  CHECK(a[3] == 0.0f);
  // RLOO over the finite {1, 3, 5} of [1, -inf, 3, 5]: 1 - 4 = -3, 3 - 3 = 0, 5 - 2 = 3
  check_close(run(grpo::LeaveOneOut{}, {1, -inf_f, 3, 5}, 1, 4), {-3.0, 0.0, 0.0, 3.0});
  // a group with a single finite reward has no baseline: all 0
  for (float v : run(grpo::GroupNormalized{}, {nan_f, 5, inf_f}, 1, 3)) CHECK(v == 0.0f);
  for (float v : run(grpo::LeaveOneOut{}, {nan_f, nan_f, 2, nan_f}, 1, 4)) CHECK(v == 0.0f);
}

TEST_CASE("a group whose rewards are all equal gets exactly 0, never NaN", "[estimators]") {
  // 0.1f is not a dyadic fraction: a float mean of 7 copies need not equal the value, and
  // (r - mean) / (0 + eps) would be a large number instead of 0.
  const std::vector<float> equal(7, 0.1f);
  for (float v : run(grpo::GroupNormalized{}, equal, 1, 7)) CHECK(v == 0.0f);
  for (float v : run(grpo::GroupNormalized{.epsilon = 0.0}, equal, 1, 7)) CHECK(v == 0.0f);
  for (float v : run(grpo::DrGrpo{}, equal, 1, 7)) CHECK(v == 0.0f);
  for (float v : run(grpo::LeaveOneOut{}, equal, 1, 7)) CHECK(v == 0.0f);
  // equal finite values plus a NaN: still constant
  for (float v : run(grpo::GroupNormalized{}, {0.3f, nan_f, 0.3f, 0.3f}, 1, 4)) CHECK(v == 0.0f);
  // ATen fallback, float32 arithmetic traps included
  const at::Tensor t = at::full({1, 7}, 0.1f);
  const auto aten = grpo::detail::group_advantages_aten(t, 7, grpo::GroupRule{}, grpo::RewardCombination::normalize_then_average, {1.0});
  CHECK(aten.abs().max().item<float>() == 0.0f);
}

TEST_CASE("G = 1: every group has one sample, every advantage is 0", "[estimators]") {
  for (float v : run(grpo::GroupNormalized{}, {1, 5, -2}, 1, 1)) CHECK(v == 0.0f);
  for (float v : run(grpo::LeaveOneOut{}, {1, 5, -2}, 1, 1)) CHECK(v == 0.0f);
  for (float v : run(grpo::Balanced<2>{}, {1, 5, -2, 3, 3, 3}, 2, 1)) CHECK(v == 0.0f);
}

TEST_CASE("Balanced: normalise each reward in its group, then average (method.md Eq. 5)", "[estimators]") {
  // reward 0 = [1, 2, 3, 4]  -> a0 = (-1.161895, -0.387298, 0.387298, 1.161895)  (see above)
  // reward 1 = [10, 10, 30, 30]: mean 20, dev (-10, -10, 10, 10), sample std sqrt(400/3) = 11.547005
  //          -> a1 = (-0.866025, -0.866025, 0.866025, 0.866025)
  // equal weights: (a0 + a1) / 2 = (-1.013960, -0.626662, 0.626662, 1.013960)
  const std::vector<double> expected{-1.013960203823332, -0.6266618692025901, 0.6266618692025901, 1.013960203823332};
  check_close(run(grpo::Balanced<2>{.inner = {.epsilon = 0.0}}, {1, 2, 3, 4, 10, 10, 30, 30}, 2, 4), expected);
  check_close(run(grpo::Balanced<>{.inner = {.epsilon = 0.0}}, {1, 2, 3, 4, 10, 10, 30, 30}, 2, 4), expected);
  // scale invariance: reward 1 x 1000 does not change anything (the point of balancing)
  check_close(run(grpo::Balanced<2>{.inner = {.epsilon = 0.0}}, {1, 2, 3, 4, 10000, 10000, 30000, 30000}, 2, 4),
              expected);
  // weights 3:1 -> (3 a0 + a1) / 4 = (-1.087928, -0.506980, 0.506980, 1.087928)
  check_close(run(grpo::Balanced<2>{.inner = {.epsilon = 0.0}, .weights = {3.0, 1.0}}, {1, 2, 3, 4, 10, 10, 30, 30}, 2, 4),
              {-1.0879276038427785, -0.506980101911666, 0.506980101911666, 1.0879276038427785});
  check_close(run(grpo::Balanced<>{.inner = {.epsilon = 0.0}, .weights = {3.0, 1.0}}, {1, 2, 3, 4, 10, 10, 30, 30}, 2, 4),
              {-1.0879276038427785, -0.506980101911666, 0.506980101911666, 1.0879276038427785});
  // Dr.GRPO inside: (dev0 + dev1) / 2 = ((-1.5-10)/2, (-0.5-10)/2, (0.5+10)/2, (1.5+10)/2)
  check_close(run(grpo::Balanced<2, grpo::DrGrpo>{}, {1, 2, 3, 4, 10, 10, 30, 30}, 2, 4), {-5.75, -5.25, 5.25, 5.75});
  // a zero weight ignores the reward entirely, its NaN included: only reward 0 counts
  check_close(run(grpo::Balanced<2>{.inner = {.epsilon = 0.0}, .weights = {1.0, 0.0}}, {1, 2, 3, 4, nan_f, 10, 30, 30}, 2, 4),
              {-1.161895003862225, -0.3872983346207417, 0.3872983346207417, 1.161895003862225});
}

TEST_CASE("Balanced: a sample with any non-finite reward gets 0; its other rewards still count", "[estimators]") {
  // reward 1 = [10, NaN, 30, 30]: finite {10, 30, 30}, mean 70/3, dev (-40/3, ., 20/3, 20/3),
  //   sample var = (1600/9 + 400/9 + 400/9) / 2 = 400/3, std = 11.547005
  //   a1 = (-1.154701, 0, 0.577350, 0.577350); sample 1 gets 0 overall
  // reward 0 unchanged: a0 = (-1.161895, ., 0.387298, 1.161895)
  const auto a = run(grpo::Balanced<2>{.inner = {.epsilon = 0.0}}, {1, 2, 3, 4, 10, nan_f, 30, 30}, 2, 4);
  const double s = std::sqrt(400.0 / 3.0);
  check_close(a, {(-1.161895003862225 - 40.0 / 3.0 / s) / 2, 0.0, (0.3872983346207417 + 20.0 / 3.0 / s) / 2,
                  (1.161895003862225 + 20.0 / 3.0 / s) / 2});
  CHECK(a[1] == 0.0f);
}

TEST_CASE("RewardAverage: average the raw rewards, then normalise (the ablation)", "[estimators]") {
  // (r0 + r1) / 2 = [5.5, 6, 16.5, 17]: mean 11.25, dev (-5.75, -5.25, 5.25, 5.75),
  //   sample std sqrt((2 * 5.75^2 + 2 * 5.25^2) / 3) = 6.357410
  //   A = (-0.904456, -0.825808, 0.825808, 0.904456)
  check_close(run(grpo::RewardAverage<2>{.inner = {.epsilon = 0.0}}, {1, 2, 3, 4, 10, 10, 30, 30}, 2, 4),
              {-0.9044563212855568, -0.8258079455215953, 0.8258079455215953, 0.9044563212855568});
  // reward 1 x 1000 dominates: A ~ a1 = (-0.866069, -0.865982, 0.865982, 0.866069)
  check_close(run(grpo::RewardAverage<2>{.inner = {.epsilon = 0.0}}, {1, 2, 3, 4, 10000, 10000, 30000, 30000}, 2, 4),
              {-0.8660686996425644, -0.8659821057616823, 0.8659821057616823, 0.8660686996425644});
  // a non-finite reward makes the average non-finite: left out, advantage 0
  const auto a = run(grpo::RewardAverage<2, grpo::DrGrpo>{}, {1, 2, 3, 4, 10, 10, 30, inf_f}, 2, 4);
  // averages [5.5, 6, 16.5, inf]: finite mean 28/3, A = (5.5 - 28/3, 6 - 28/3, 16.5 - 28/3, 0)
  check_close(a, {5.5 - 28.0 / 3.0, 6.0 - 28.0 / 3.0, 16.5 - 28.0 / 3.0, 0.0}, 1e-5);
}

TEST_CASE("reward_statistics on a hand case", "[estimators]") {
  // reward 0: [1, 2, 3, 4 | 5, 5, NaN, 5]: finite {1,2,3,4,5,5,5}, mean 25/7 = 3.571429,
  //   sample var = sum (x - 25/7)^2 / 6 = (sum x^2 - 7 mean^2) / 6 = (105 - 625/7) / 6 = 2.619048
  //   group 2 is constant -> zero_variance_fraction 1/2; one non-finite
  std::vector<float> table{1, 2, 3, 4, 5, 5, nan_f, 5};
  const auto s = grpo::reward_statistics(grpo::RewardTableView<const float>{table.data(), 1, 8}, 4);
  REQUIRE(s.size() == 1);
  CHECK(s[0].mean == Approx(25.0 / 7.0));
  CHECK(s[0].std_dev == Approx(std::sqrt((105.0 - 625.0 / 7.0) / 6.0)));
  CHECK(s[0].min == 1.0);
  CHECK(s[0].max == 5.0);
  CHECK(s[0].zero_variance_fraction == 0.5);
  CHECK(s[0].non_finite == 1);
  const auto t = grpo::reward_statistics(at::from_blob(table.data(), {8}, at::kFloat), 4);
  CHECK(t.mean.item<double>() == Approx(25.0 / 7.0));
  CHECK(t.zero_variance_fraction.item<double>() == 0.5);
  CHECK(t.non_finite.item<std::int64_t>() == 1);
  // no finite value at all: zeros, every group constant
  std::vector<float> bad{nan_f, inf_f};
  const auto b = grpo::reward_statistics(grpo::RewardTableView<const float>{bad.data(), 1, 2}, 2);
  CHECK(b[0].mean == 0.0);
  CHECK(b[0].std_dev == 0.0);
  CHECK(b[0].non_finite == 2);
  CHECK(b[0].zero_variance_fraction == 1.0);
}

TEST_CASE("the tensor path: 1-D input, other dtypes, empty batches", "[estimators]") {
  const at::Tensor r = at::tensor(std::vector<double>{1, 2, 3, 4});
  const at::Tensor a = grpo::DrGrpo{}.compute(r, 4);
  REQUIRE(a.scalar_type() == at::kFloat);
  CHECK(a[0].item<float>() == -1.5f);
  const at::Tensor half = grpo::DrGrpo{}.compute(r.to(at::kHalf), 2);
  CHECK(half[1].item<float>() == 0.5f);
  CHECK(grpo::Balanced<3>{}.compute(at::zeros({3, 0}), 4).numel() == 0);
  std::vector<float> none;
  grpo::Balanced<3>{}.compute(grpo::RewardTableView<const float>{none.data(), 3, 0}, 4, std::span<float>{});
}

TEST_CASE("bad input throws grpo::Error with the fix", "[estimators]") {
  std::vector<float> table{1, 2, 3, 4, 5, 6};
  std::vector<float> out(6);
  const grpo::RewardTableView<const float> one{table.data(), 1, 6};
  const grpo::RewardTableView<const float> two{table.data(), 2, 3};
  CHECK_THROWS_WITH(grpo::GroupNormalized{}.compute(one, 4, out), Catch::Contains("multiple of group_size"));
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(one, 0, out), grpo::Error);
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(one, 3, std::span<float>(out).first(5)), grpo::Error);
  CHECK_THROWS_WITH(grpo::GroupNormalized{}.compute(two, 3, std::span<float>(out).first(3)),
                    Catch::Contains("grpo::Balanced"));
  CHECK_THROWS_AS(grpo::GroupNormalized{.epsilon = -1.0}.compute(one, 3, out), grpo::Error);
  CHECK_THROWS_AS(grpo::GroupNormalized{.epsilon = std::nan("")}.compute(one, 3, out), grpo::Error);
  CHECK_THROWS_AS((grpo::Balanced<3>{}.compute(two, 3, std::span<float>(out).first(3))), grpo::Error);
  CHECK_THROWS_AS((grpo::Balanced<2>{.weights = {-1.0, 2.0}}.compute(two, 3, std::span<float>(out).first(3))), grpo::Error);
  CHECK_THROWS_AS((grpo::Balanced<2>{.weights = {0.0, 0.0}}.compute(two, 3, std::span<float>(out).first(3))), grpo::Error);
  CHECK_THROWS_AS((grpo::Balanced<2>{.weights = {std::nan(""), 1.0}}.compute(two, 3, std::span<float>(out).first(3))),
                  grpo::Error);
  CHECK_THROWS_WITH((grpo::Balanced<>{.weights = {1.0, 1.0, 1.0}}.compute(two, 3, std::span<float>(out).first(3))),
                    Catch::Contains("one weight per reward"));
  CHECK_THROWS_AS((grpo::RewardAverage<>{}.compute(grpo::RewardTableView<const float>{table.data(), 0, 6}, 3, out)),
                  grpo::Error);
  // tensor path
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(at::Tensor(), 2), grpo::Error);
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(at::zeros({1, 2, 2}), 2), grpo::Error);
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(at::zeros({4}, at::kLong), 2), grpo::Error);
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(at::zeros({4}), 3), grpo::Error);
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(at::zeros({4}), -1), grpo::Error);
  CHECK_THROWS_AS(grpo::GroupNormalized{}.compute(at::zeros({2, 4}), 2), grpo::Error);
  CHECK_THROWS_AS(grpo::Balanced<3>{}.compute(at::zeros({2, 4}), 2), grpo::Error);
  CHECK_THROWS_AS(grpo::reward_statistics(at::zeros({2, 5}), 2), grpo::Error);
  CHECK_THROWS_AS(grpo::reward_statistics(one, 4), grpo::Error);
}
