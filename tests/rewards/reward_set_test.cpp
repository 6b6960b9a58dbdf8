// RewardSet at run time: rows in construction order, names, shape checks, non-finite rewards.
#include <cmath>
#include <grpo/rewards/format.hpp>
#include <grpo/rewards/length.hpp>
#include <grpo/rewards/reward_set.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <string>

using namespace grpo;

namespace {
struct Named {
  float offset = 0;
  std::string_view name() const { return "named"; }
  void score(SampleBatch batch, std::span<float> out) const {
    for (std::size_t i = 0; i < batch.size(); ++i) out[i] = offset + static_cast<float>(i);
  }
};
}  // namespace

TEST_CASE("each reward fills its row") {
  const std::string good = "<think>p</think><answer>one two three four</answer>";
  const std::string bad = "one two three four";
  const std::array<Sample, 2> batch{Sample{.completion = good, .target = {0, 100}},
                                    Sample{.completion = bad, .target = {0, 100}, .truncated = true}};
  RewardSet rewards{LengthReward{}, FormatReward{}, [](const Sample& s) { return s.truncated ? -1.0 : 2.0; },
                    Named{.offset = 10}};
  static_assert(decltype(rewards)::size == 4);
  RewardTable table(rewards.size, batch.size());
  rewards.score(batch, table.view());
  // length: 4 words in [0, 100] -> 1; no <answer> -> 0 words, lo = 0 -> in range -> 1
  CHECK(table.row(0)[0] == 1.0f);
  CHECK(table.row(0)[1] == 1.0f);
  // format: well formed, no repetition -> 1; no tags -> 0
  CHECK(table.row(1)[0] == 1.0f);
  CHECK(table.row(1)[1] == 0.0f);
  CHECK(table.row(2)[0] == 2.0f);
  CHECK(table.row(2)[1] == -1.0f);
  CHECK(table.row(3)[0] == 10.0f);
  CHECK(table.row(3)[1] == 11.0f);
  CHECK(rewards.names() == std::array<std::string, 4>{"length", "format", "reward2", "named"});
  CHECK(rewards.get<3>().offset == 10.0f);
  rewards.get<3>().offset = 20;
  rewards.score(batch, table.view());
  CHECK(table.row(3)[0] == 20.0f);
}

TEST_CASE("a table of the wrong shape is refused") {
  const std::array<Sample, 2> batch{};
  RewardSet rewards{LengthReward{}, FormatReward{}};
  RewardTable wrong_k(3, 2), wrong_n(2, 3);
  CHECK_THROWS_WITH(rewards.score(batch, wrong_k.view()), Catch::Contains("[2, 2]") && Catch::Contains("[3, 2]"));
  CHECK_THROWS_AS(rewards.score(batch, wrong_n.view()), Error);
  CHECK_THROWS_AS(rewards.score(batch, RewardTableView<float>{nullptr, 2, 2}), Error);
  RewardTable empty(2, 0);
  CHECK_NOTHROW(rewards.score(SampleBatch{}, empty.view()));
}

TEST_CASE("a reward that produces NaN or infinity is kept by default and named when rejected") {
  const std::array<Sample, 3> batch{};
  RewardSet rewards{[](const Sample&) { return 1.0f; },
                    Named{.offset = std::numeric_limits<float>::infinity()}};
  RewardTable table(2, 3);
  // Default: the values reach the table unchanged (the estimators define what they do).
  CHECK_NOTHROW(rewards.score(batch, table.view()));
  CHECK(table.row(0)[0] == 1.0f);
  CHECK(std::isinf(table.row(1)[2]));
  rewards.non_finite = NonFiniteRewards::reject;
  CHECK_THROWS_WITH(rewards.score(batch, table.view()), Catch::Contains("\"named\"") && Catch::Contains("sample 0"));
  RewardSet nan_reward{[](const Sample&) { return std::numeric_limits<double>::quiet_NaN(); }};
  nan_reward.non_finite = NonFiniteRewards::reject;
  RewardTable one(1, 3);
  CHECK_THROWS_WITH(nan_reward.score(batch, one.view()), Catch::Contains("\"reward0\""));
}
