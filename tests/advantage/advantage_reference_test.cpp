// Every estimator, on every host path (range, CPU tensor, ATen fallback), and reward_statistics
// (host and tensor), against numpy references computed from the formulas in float64
// (tests/python/fixtures/rl_advantages.py: random groups with ties, all-equal groups, NaN/inf,
// large offsets, weights, G = 1..64).
#include <grpo/advantage/balanced.hpp>
#include <grpo/advantage/dr_grpo.hpp>
#include <grpo/advantage/group_normalized.hpp>
#include <grpo/advantage/leave_one_out.hpp>
#include <grpo/advantage/reward_average.hpp>
#include <grpo/advantage/reward_statistics.hpp>

#include <ATen/Functions.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

// c10/util/Logging.h (pulled in by ATen) replaces Catch's CHECK with a glog-style CHECK(cond)
// that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

struct Case {
  std::string file, estimator, inner, std_kind;
  double epsilon = 0;
  std::vector<double> weights;
  std::size_t rewards = 0, samples = 0, group = 0;
  std::vector<float> table;
  std::vector<double> expected;
  std::vector<bool> exact_zero;
  std::vector<std::vector<double>> stats;  // K rows of 6
};

double number(const std::string& token) { return std::strtod(token.c_str(), nullptr); }

Case read_case(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> t;
  for (std::string s; in >> s;) t.push_back(s);
  Case c;
  c.file = path.filename().string();
  std::size_t i = 0;
  auto expect = [&](const char* key) {
    if (t.at(i++) != key) FAIL("fixture " << c.file << ": expected key " << key);
  };
  expect("estimator");
  c.estimator = t.at(i++);
  expect("inner");
  c.inner = t.at(i++);
  expect("std");
  c.std_kind = t.at(i++);
  expect("epsilon");
  c.epsilon = number(t.at(i++));
  expect("weights");
  const auto nw = static_cast<std::size_t>(number(t.at(i++)));
  for (std::size_t k = 0; k < nw; ++k) c.weights.push_back(number(t.at(i++)));
  expect("shape");
  c.rewards = static_cast<std::size_t>(number(t.at(i++)));
  c.samples = static_cast<std::size_t>(number(t.at(i++)));
  c.group = static_cast<std::size_t>(number(t.at(i++)));
  expect("rewards");
  for (std::size_t k = 0; k < c.rewards * c.samples; ++k) c.table.push_back(static_cast<float>(number(t.at(i++))));
  expect("advantages");
  for (std::size_t k = 0; k < c.samples; ++k) c.expected.push_back(number(t.at(i++)));
  expect("exact_zero");
  for (std::size_t k = 0; k < c.samples; ++k) c.exact_zero.push_back(number(t.at(i++)) != 0.0);
  expect("stats");
  for (std::size_t k = 0; k < c.rewards; ++k) {
    c.stats.emplace_back();
    for (int j = 0; j < 6; ++j) c.stats.back().push_back(number(t.at(i++)));
  }
  return c;
}

std::vector<Case> read_cases() {
  const std::filesystem::path dir = std::filesystem::path(GRPO_FIXTURE_DIR) / "rl_advantages";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".txt") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<Case> cases;
  for (const auto& f : files) cases.push_back(read_case(f));
  return cases;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = read_cases();
  return all;
}

void check_advantages(const Case& c, const std::vector<float>& ours, const char* path) {
  REQUIRE(ours.size() == c.samples);
  for (std::size_t i = 0; i < c.samples; ++i) {
    INFO(c.file << " (" << c.estimator << ", inner " << c.inner << ", G " << c.group << ") path " << path
                << " sample " << i);
    if (c.exact_zero[i]) {
      REQUIRE(ours[i] == 0.0f);
    } else {
      REQUIRE(std::isfinite(ours[i]));
      REQUIRE(ours[i] == Approx(c.expected[i]).epsilon(2e-6).margin(2e-6));
    }
  }
}

std::vector<float> to_vector(const at::Tensor& t) {
  REQUIRE(t.scalar_type() == at::kFloat);
  const at::Tensor c = t.contiguous();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

// All host paths of one estimator object.
template <class E>
void check_all_paths(const E& estimator, const Case& c) {
  const grpo::RewardTableView<const float> view{c.table.data(), c.rewards, c.samples};
  std::vector<float> out(c.samples, 123.0f);  // poisoned: every entry must be written
  estimator.compute(view, c.group, out);
  check_advantages(c, out, "range");

  const at::Tensor table = at::from_blob(const_cast<float*>(c.table.data()),
                                         {static_cast<std::int64_t>(c.rewards), static_cast<std::int64_t>(c.samples)},
                                         at::kFloat);
  check_advantages(c, to_vector(estimator.compute(table, static_cast<std::int64_t>(c.group))), "cpu tensor");
  // float64 input goes through the same path after conversion
  check_advantages(c, to_vector(estimator.compute(table.to(at::kDouble), static_cast<std::int64_t>(c.group))),
                   "cpu tensor (float64 in)");
}

grpo::GroupRule rule_of(const Case& c) {
  grpo::GroupRule rule;
  rule.kind = c.inner == "normalize" ? grpo::GroupRule::Kind::normalize
              : c.inner == "center"  ? grpo::GroupRule::Kind::center
                                     : grpo::GroupRule::Kind::leave_one_out;
  rule.std_kind = c.std_kind == "sample" ? grpo::StdKind::sample : grpo::StdKind::population;
  rule.epsilon = c.epsilon;
  return rule;
}

template <class Inner>
void check_multi(const Case& c, const Inner& inner) {
  const bool average = c.estimator == "reward_average";
  if (c.rewards == 3) {
    std::array<double, 3> w{1.0, 1.0, 1.0};
    if (!c.weights.empty()) std::copy(c.weights.begin(), c.weights.end(), w.begin());
    if (average) check_all_paths(grpo::RewardAverage<3, Inner>{.inner = inner, .weights = w}, c);
    else check_all_paths(grpo::Balanced<3, Inner>{.inner = inner, .weights = w}, c);
  }
  if (average) check_all_paths(grpo::RewardAverage<std::dynamic_extent, Inner>{.inner = inner, .weights = c.weights}, c);
  else check_all_paths(grpo::Balanced<std::dynamic_extent, Inner>{.inner = inner, .weights = c.weights}, c);
}

}  // namespace

TEST_CASE("advantage estimators match the float64 numpy reference on every host path", "[reference]") {
  REQUIRE(cases().size() >= 300);
  for (const Case& c : cases()) {
    const grpo::StdKind std_kind = c.std_kind == "sample" ? grpo::StdKind::sample : grpo::StdKind::population;
    if (c.estimator == "group_normalized") {
      check_all_paths(grpo::GroupNormalized{.std_kind = std_kind, .epsilon = c.epsilon}, c);
    } else if (c.estimator == "dr_grpo") {
      check_all_paths(grpo::DrGrpo{}, c);
    } else if (c.estimator == "leave_one_out") {
      check_all_paths(grpo::LeaveOneOut{}, c);
    } else if (c.inner == "normalize") {
      check_multi(c, grpo::GroupNormalized{.std_kind = std_kind, .epsilon = c.epsilon});
    } else if (c.inner == "center") {
      check_multi(c, grpo::DrGrpo{});
    } else {
      check_multi(c, grpo::LeaveOneOut{});
    }
  }
}

TEST_CASE("the ATen fallback (the CUDA path without the kernel) matches the reference", "[reference]") {
  for (const Case& c : cases()) {
    if (c.samples == 0) continue;
    const at::Tensor table = at::from_blob(const_cast<float*>(c.table.data()),
                                           {static_cast<std::int64_t>(c.rewards), static_cast<std::int64_t>(c.samples)},
                                           at::kFloat);
    const auto weights = grpo::detail::normalized_weights(c.weights, c.rewards, "test");
    const auto combination = c.estimator == "reward_average" ? grpo::RewardCombination::average_then_normalize
                                                             : grpo::RewardCombination::normalize_then_average;
    const at::Tensor out = grpo::detail::group_advantages_aten(table, static_cast<std::int64_t>(c.group), rule_of(c),
                                                               combination, weights);
    check_advantages(c, to_vector(out), "aten");
  }
}

TEST_CASE("reward_statistics matches the reference, host and tensor", "[reference]") {
  for (const Case& c : cases()) {
    INFO(c.file);
    const grpo::RewardTableView<const float> view{c.table.data(), c.rewards, c.samples};
    const auto host = grpo::reward_statistics(view, c.group);
    const at::Tensor table = at::from_blob(const_cast<float*>(c.table.data()),
                                           {static_cast<std::int64_t>(c.rewards), static_cast<std::int64_t>(c.samples)},
                                           at::kFloat);
    const auto dev = grpo::reward_statistics(table, static_cast<std::int64_t>(c.group));
    REQUIRE(host.size() == c.rewards);
    REQUIRE(dev.mean.size(0) == static_cast<std::int64_t>(c.rewards));
    for (std::size_t k = 0; k < c.rewards; ++k) {
      const auto& e = c.stats[k];
      const auto kk = static_cast<std::int64_t>(k);
      CHECK(host[k].mean == Approx(e[0]).epsilon(1e-9).margin(1e-9));
      CHECK(host[k].std_dev == Approx(e[1]).epsilon(1e-9).margin(1e-9));
      CHECK(host[k].min == e[2]);
      CHECK(host[k].max == e[3]);
      CHECK(host[k].zero_variance_fraction == Approx(e[4]));
      CHECK(static_cast<double>(host[k].non_finite) == e[5]);
      CHECK(dev.mean[kk].item<double>() == Approx(e[0]).epsilon(1e-9).margin(1e-9));
      CHECK(dev.std_dev[kk].item<double>() == Approx(e[1]).epsilon(1e-9).margin(1e-9));
      CHECK(dev.min[kk].item<double>() == e[2]);
      CHECK(dev.max[kk].item<double>() == e[3]);
      CHECK(dev.zero_variance_fraction[kk].item<double>() == Approx(e[4]));
      CHECK(dev.non_finite[kk].item<std::int64_t>() == static_cast<std::int64_t>(e[5]));
    }
  }
}
