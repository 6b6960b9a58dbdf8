// A user's program built against the *installed* grpo package (tests/find_package): it composes
// rewards at compile time and checks results derived by hand, so a broken install fails here.
#include <grpo/grpo.hpp>
#include <grpo/distributed/process_group.hpp>  // c10d + Gloo headers through the installed package
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <ATen/ops/tensor.h>

#include <cmath>
#include <cstdio>
#include <string>

int main() {
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::printf("consumer: FAILED %s\n", what);
      ++failures;
    }
  };
  // LongBench-Write word count (method.md's examples).
  expect(grpo::word_count("我爱 Python 编程") == 5, "word_count of a mixed CJK/Latin string");

  // Two rewards composed at compile time: the length reward (Eq. 3) and a lambda.
  grpo::RewardSet rewards{grpo::LengthReward{}, [](const grpo::Sample& s) { return s.truncated ? 0.0f : 1.0f; }};
  static_assert(decltype(rewards)::size == 2);
  const std::string a = "<think>x</think><answer>one two three</answer>";   // 3 words
  const std::string b = "<think>x</think><answer>one two three four five six</answer>";  // 6 words
  const grpo::Sample samples[2] = {{.prompt = "p", .completion = a, .target = {6, 10}},
                                   {.prompt = "p", .completion = b, .target = {6, 10}, .truncated = true}};
  grpo::RewardTable table(2, 2);
  rewards.score(samples, table.view());
  expect(table.row(0)[0] == 0.5f && table.row(0)[1] == 1.0f, "length reward: 3/6 and 1");
  expect(table.row(1)[0] == 1.0f && table.row(1)[1] == 0.0f, "lambda reward");

  // Balanced advantages (Eq. 5): in a group of two, each reward normalises to -+1/sqrt(2)
  // (sample std = |d|/sqrt(2)), so both rewards give [-0.7071, 0.7071] and [0.7071, -0.7071]:
  // their average is 0 for both samples.
  std::vector<float> adv(2);
  grpo::Balanced<2>{}.compute(table.view(), 2, adv);
  expect(std::abs(adv[0]) < 1e-6 && std::abs(adv[1]) < 1e-6, "balanced advantages cancel");
  const auto t = grpo::Balanced<2>{.weights = {1.0, 0.0}}.compute(at::tensor({0.5f, 1.0f, 1.0f, 0.0f}).view({2, 2}), 2);
  expect(std::abs(t[0].item<float>() + 0.70710678f) < 1e-5, "tensor path, weight on the length reward only");

  // A Gloo group of one rank (what torchrun's ranks join, here without a launcher): sums are the
  // identity, and the environment without WORLD_SIZE is a world of one.
  {
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::HashStore>(), 0, 1,
                                                               c10d::ProcessGroupGloo::Options::create_default());
    grpo::ProcessGroupCommunicator comm(backend, c10::Device(c10::kCPU));
    const auto sums = grpo::all_reduce_sum(comm, std::vector<double>{1.5, 2.0});
    at::Tensor x = at::tensor({3.0f});
    comm.all_reduce_sum(x);
    expect(sums == std::vector<double>{1.5, 2.0} && x.item<float>() == 3.0f, "Gloo world of one");
    expect(grpo::LaunchEnv{}.world_size == 1, "LaunchEnv defaults to a world of one");
  }

  expect(std::string(grpo::version_string) == GRPO_PACKAGE_VERSION &&
             std::to_string(grpo::version_major) + "." + std::to_string(grpo::version_minor) + "." +
                     std::to_string(grpo::version_patch) == GRPO_PACKAGE_VERSION,
         "<grpo/version.hpp> says the package version (grpoConfigVersion.cmake's)");

  std::printf("consumer: grpo %s found, linked and checked (%d failures)\n", grpo::version_string, failures);
  return failures == 0 ? 0 : 1;
}
