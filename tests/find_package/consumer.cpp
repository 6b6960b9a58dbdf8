// A user's program built against the *installed* grpo package (tests/find_package).
#include <grpo/grpo.hpp>

#include <cstdio>

int main() {
  static_assert(grpo::Reward<grpo::archetypes::MinimalReward>);
  std::puts("consumer: grpo found and linked");
  return 0;
}
