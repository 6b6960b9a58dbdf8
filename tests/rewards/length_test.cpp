// The length reward (paper, Eq. 3) and LongBench-Write's S_l (method.md), on hand-computed values.
#include <grpo/rewards/length.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace grpo;

namespace {
std::string words(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "word ";
  return s;
}
std::string think_answer(int answer_words) { return "<think>plan it</think><answer>" + words(answer_words) + "</answer>"; }
}  // namespace

TEST_CASE("Eq. 3 inside, below and above the range (L_max = 2 * hi by default)") {
  const LengthReward r;
  const WordRange t{1800, 2200};
  CHECK(r.reward(1800, t) == 1.0);
  CHECK(r.reward(2000, t) == 1.0);
  CHECK(r.reward(2200, t) == 1.0);
  CHECK(r.reward(900, t) == Approx(0.5));            // 900 / 1800
  CHECK(r.reward(0, t) == 0.0);                      // 0 / 1800
  CHECK(r.reward(3300, t) == Approx(0.5));           // L_max = 4400: (4400 - 3300) / (4400 - 2200)
  CHECK(r.reward(4400, t) == 0.0);                   // at L_max
  CHECK(r.reward(9000, t) == 0.0);                   // clamped at 0
  CHECK(r.reward(2201, t) == Approx(2199.0 / 2200));  // (4400 - 2201) / 2200
}

TEST_CASE("L_max options") {
  const WordRange t{1000, 2000};
  CHECK(LengthReward{.max_factor = 3.0}.reward(4000, t) == Approx(0.5));      // L_max 6000: 2000/4000
  CHECK(LengthReward{.max_words = 12000}.reward(7000, t) == Approx(0.5));     // (12000-7000)/(12000-2000)
  CHECK(LengthReward{.max_words = 12000}.max_length(t) == 12000.0);
  CHECK(LengthReward{}.max_length(t) == 4000.0);
  CHECK_THROWS_AS(LengthReward{.max_words = 2000}.reward(2500, t), Error);  // L_max must exceed hi
  CHECK_THROWS_AS(LengthReward{.max_factor = 1.0}.reward(2500, t), Error);
  CHECK_THROWS_AS(LengthReward{.max_factor = std::nan("")}.reward(2500, t), Error);
  // inside the range L_max is never needed, so a bad option does not matter there
  CHECK(LengthReward{.max_factor = 0.5}.reward(1500, t) == 1.0);
}

TEST_CASE("guards: lo = 0, no target, invalid targets") {
  const LengthReward r;
  CHECK(r.reward(0, {0, 100}) == 1.0);    // no "too short" branch when lo = 0
  CHECK(r.reward(50, {0, 100}) == 1.0);
  CHECK(r.reward(150, {0, 100}) == Approx(0.5));  // L_max 200: 50/100
  CHECK(r.reward(500, {0, 0}) == 0.0);    // no target: no_target_reward
  CHECK(LengthReward{.no_target_reward = 0.25f}.reward(500, {0, 0}) == 0.25);
  CHECK_THROWS_AS(r.reward(10, {200, 100}), Error);
  CHECK_THROWS_AS(r.reward(10, {-1, 100}), Error);
  CHECK_THROWS_AS(r.reward(-1, {100, 200}), Error);
  try {
    (void)r.reward(10, {200, 100});
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("[200, 100]") && Catch::Contains("lower <= upper"));
  }
}

TEST_CASE("the reward measures the answer block's words") {
  const LengthReward r;
  Sample s{.prompt = "p", .completion = "", .target = {100, 200}};
  const std::string done = think_answer(150);
  s.completion = done;
  CHECK(r(s) == 1.0f);
  const std::string short_answer = think_answer(50);
  s.completion = short_answer;
  CHECK(r(s) == Approx(0.5f));
  const std::string no_tags = words(150);  // no <answer>: 0 words
  s.completion = no_tags;
  CHECK(r(s) == 0.0f);
  CHECK(LengthReward{.measure = MeasuredText::completion}(s) == 1.0f);
  const std::string truncated = "<think>x</think><answer>" + words(150);  // unclosed: still measured
  s.completion = truncated;
  CHECK(r(s) == 1.0f);
  CHECK(measured_words("<think>a b c</think><answer>d e</answer>", MeasuredText::answer_block) == 2);
  // a b c d e + the 4 tag names ("think", "answer" are ASCII words between < / >) = 9
  CHECK(measured_words("<think>a b c</think><answer>d e</answer>", MeasuredText::completion) == 9);
}

TEST_CASE("batched scoring") {
  const std::string a = think_answer(100), b = think_answer(300);
  const std::array<Sample, 2> batch{Sample{.completion = a, .target = {200, 300}},
                                    Sample{.completion = b, .target = {200, 300}}};
  std::array<float, 2> out{};
  LengthReward{}.score(batch, out);
  CHECK(out[0] == Approx(0.5f));
  CHECK(out[1] == 1.0f);
  std::array<float, 1> small{};
  CHECK_THROWS_AS(LengthReward{}.score(batch, small), Error);
}

TEST_CASE("LongBench-Write S_l") {
  CHECK(longbench_length_score(1000, 1000) == 100.0);
  CHECK(longbench_length_score(1000, 2000) == Approx(100.0 * (1 - 1.0 / 3)));  // y/x = 2
  CHECK(longbench_length_score(1000, 4000) == 0.0);                           // 1 - 3/3
  CHECK(longbench_length_score(1000, 9000) == 0.0);                           // clamped
  CHECK(longbench_length_score(1000, 500) == Approx(50.0));                   // x/y = 2: 1 - 1/2
  CHECK(longbench_length_score(1000, 250) == 0.0);                            // x/y = 4: 1 - 3/2 < 0
  CHECK(longbench_length_score(1000, 0) == 0.0);
  CHECK(longbench_length_score(3000, 2000) == Approx(75.0));                  // 1 - 0.5/2
  CHECK_THROWS_AS(longbench_length_score(0, 10), Error);
  CHECK_THROWS_AS(longbench_length_score(100, -1), Error);
}
