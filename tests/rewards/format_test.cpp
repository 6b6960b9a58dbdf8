// The format reward: structure (grpo::parse_completion) times (1 - repetition ratio).
#include <grpo/rewards/format.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace grpo;

namespace {
const std::string p1 =
    "The harbour town wakes before the sun. Fishermen untangle their nets by lantern light while the bakery on "
    "the corner fills the street with the smell of bread.";
const std::string p2 =
    "By noon the tourists arrive on the ferry, cameras ready, and the cafes along the quay set out their tables "
    "under striped awnings that flap in the sea breeze.";
std::string answer(const std::string& body) { return "<think>outline: morning, noon</think>\n<answer>" + body + "</answer>"; }
}  // namespace

TEST_CASE("a well-formed answer without repetition scores 1") {
  CHECK(FormatReward{}.reward(answer(p1 + "\n\n" + p2)) == 1.0);
}

TEST_CASE("a malformed or truncated completion scores 0") {
  CHECK(FormatReward{}.reward(p1) == 0.0);
  CHECK(FormatReward{}.reward("<think>x</think><answer>" + p1) == 0.0);  // truncated
  CHECK(FormatReward{}.reward("<think>x</think><answer>" + p1 + "</answer><answer>again</answer>") == 0.0);
}

TEST_CASE("repetition lowers the reward by its share of the answer") {
  const std::string text = p1 + "\n\n" + p2 + "\n\n" + p2;  // the second paragraph twice
  const double ratio = repetition_ratio(text);
  REQUIRE(ratio > 0.2);
  CHECK(FormatReward{}.reward(answer(text)) == Approx(1.0 - ratio));
  CHECK(FormatReward{.repetition_weight = 2.0}.reward(answer(text)) == Approx(std::max(0.0, 1.0 - 2 * ratio)));
  CHECK(FormatReward{.repetition_weight = 0.0}.reward(answer(text)) == 1.0);
  CHECK_THROWS_AS(FormatReward{.repetition_weight = -1.0}.reward(answer(text)), Error);
}

TEST_CASE("FormatReward is a named reward that scores batches") {
  const std::string good = answer(p1), bad = p1;
  const std::array<Sample, 2> batch{Sample{.completion = good}, Sample{.completion = bad}};
  std::array<float, 2> out{};
  FormatReward{}.score(batch, out);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == 0.0f);
  CHECK(FormatReward::name() == "format");
}
