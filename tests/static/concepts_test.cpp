// Compile-only tests of the concept family: every archetype models its concept, and near-miss
// types, each breaking exactly one requirement, are rejected. Building this file runs the test.
#include <grpo/concepts/advantage.hpp>
#include <grpo/concepts/loss.hpp>
#include <grpo/concepts/policy.hpp>
#include <grpo/concepts/reward.hpp>

namespace {
using namespace grpo;

// ---- Reward ----
struct MemberReward {
  void score(SampleBatch, std::span<float>) {}
  std::string_view name() const { return "member"; }
};
struct BatchLambdaShape {
  void operator()(SampleBatch, std::span<float>) const {}
};
struct NoScore {};                                               // near miss: nothing to call
struct ScoreReturnsFloat {                                       // near miss: batched score must return void
  float score(SampleBatch, std::span<float>) { return 0; }
};
struct PerSampleReturnsString {                                  // near miss: result not convertible to float
  std::string operator()(const Sample&) const { return {}; }
};
struct NotMovable {                                              // near miss: cannot be moved into a RewardSet
  NotMovable() = default;
  NotMovable(NotMovable&&) = delete;
  float operator()(const Sample&) const { return 0; }
};
struct Adapted {};                                               // adapted through reward_traits below

}  // namespace

template <>
struct grpo::reward_traits<Adapted> {
  static void score(Adapted&, SampleBatch, std::span<float>) {}
  static std::string_view name(const Adapted&) { return "adapted"; }
};

namespace {
static_assert(Reward<archetypes::MinimalReward>);
static_assert(Reward<MemberReward> && NamedReward<MemberReward>);
static_assert(Reward<BatchLambdaShape> && !NamedReward<BatchLambdaShape>);
static_assert(Reward<Adapted> && NamedReward<Adapted>);
constexpr auto per_sample_lambda = [](const Sample& s) { return s.truncated ? 0.0 : 1.0; };
static_assert(Reward<decltype(per_sample_lambda)>);
static_assert(!Reward<NoScore>);
static_assert(!Reward<ScoreReturnsFloat>);
static_assert(!Reward<PerSampleReturnsString>);
static_assert(!Reward<NotMovable>);

// ---- AdvantageEstimator ----
struct WrongOutput {  // near miss: writes doubles
  void compute(RewardTableView<const float>, std::size_t, std::span<double>) const {}
};
struct NonConstCompute {  // near miss: compute must be callable on a const estimator
  void compute(RewardTableView<const float>, std::size_t, std::span<float>) {}
};
struct FixedThree {
  static constexpr std::size_t num_rewards = 3;
  void compute(RewardTableView<const float>, std::size_t, std::span<float>) const {}
};
static_assert(AdvantageEstimator<archetypes::MinimalAdvantage>);
static_assert(!AdvantageEstimator<WrongOutput>);
static_assert(!AdvantageEstimator<NonConstCompute>);
static_assert(AdvantageEstimatorFor<FixedThree, 3> && !AdvantageEstimatorFor<FixedThree, 2>);
static_assert(AdvantageEstimatorFor<archetypes::MinimalAdvantage, 7>);

// ---- PolicyLoss ----
struct LossWithoutNormalizer {  // near miss: ignores the global normaliser
  PolicyLossOutput operator()(const PolicyLossInputs&) const { return {}; }
};
struct LossReturnsTensor {  // near miss: returns a bare tensor, no statistics
  at::Tensor operator()(const PolicyLossInputs&, const LossNormalizer&) const { return {}; }
};
static_assert(PolicyLoss<archetypes::MinimalLoss>);
static_assert(!PolicyLoss<LossWithoutNormalizer>);
static_assert(!PolicyLoss<LossReturnsTensor>);

// ---- Policy ----
struct PolicyWithoutParameters {  // near miss: nothing to optimise
  std::vector<Generation> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  TokenLogprobs logprobs(const TokenBatch&, double) { return {}; }
};
struct PolicyWithoutLogprobs {  // near miss: cannot score its own samples
  std::vector<Generation> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  std::vector<at::Tensor> parameters() { return {}; }
};
static_assert(Policy<archetypes::MinimalPolicy>);
static_assert(!Policy<PolicyWithoutParameters>);
static_assert(!Policy<PolicyWithoutLogprobs>);

}  // namespace
