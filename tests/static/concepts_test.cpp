// Compile-only tests of the concept family: every archetype models its concept, and near-miss
// types, each breaking exactly one requirement, are rejected. Building this file runs the test.
#include <grpo/concepts/advantage.hpp>
#include <grpo/concepts/loss.hpp>
#include <grpo/concepts/policy.hpp>
#include <grpo/concepts/reward.hpp>
#include <grpo/concepts/target.hpp>
#include <grpo/concepts/trainer.hpp>
#include <grpo/customization_points.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
struct ThirdPartyTwoRewards {                                    // K given through estimator_rewards below
  void compute(RewardTableView<const float>, std::size_t, std::span<float>) const {}
};

}  // namespace

template <>
inline constexpr std::size_t grpo::estimator_rewards<ThirdPartyTwoRewards> = 2;

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

// ---- RewardList ----
static_assert(RewardList<archetypes::MinimalReward, MemberReward, Adapted>);
static_assert(RewardList<>);
static_assert(!RewardList<MemberReward, NoScore>);

// ---- RewardTableScorer ----
struct ScorerWithoutSize {  // near miss: K is not a compile-time constant
  void score(SampleBatch, RewardTableView<float>) {}
  std::array<std::string, 1> names() const { return {}; }
};
struct ScorerIntoSpan {  // near miss: scores one row, not a [K, N] table
  static constexpr std::size_t size = 1;
  void score(SampleBatch, std::span<float>) {}
  std::array<std::string, 1> names() const { return {}; }
};
struct ScorerWithoutNames {  // near miss: nothing to log the rewards under
  static constexpr std::size_t size = 1;
  void score(SampleBatch, RewardTableView<float>) {}
};
static_assert(RewardTableScorer<archetypes::MinimalRewardTableScorer>);
static_assert(!RewardTableScorer<ScorerWithoutSize>);
static_assert(!RewardTableScorer<ScorerIntoSpan>);
static_assert(!RewardTableScorer<ScorerWithoutNames>);
static_assert(!RewardTableScorer<archetypes::MinimalReward>);

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
// the num_rewards hook: a member, a specialisation of estimator_rewards, or neither (any K)
static_assert(estimator_rewards<FixedThree> == 3 && estimator_rewards<archetypes::MinimalAdvantage> == std::dynamic_extent);
static_assert(AdvantageEstimatorFor<ThirdPartyTwoRewards, 2> && !AdvantageEstimatorFor<ThirdPartyTwoRewards, 3>);

// ---- TensorAdvantageEstimator ----
struct TensorComputeReturnsVoid {  // near miss: writes nowhere the caller can see
  void compute(const at::Tensor&, std::int64_t) const {}
};
struct TensorComputeNotConst {  // near miss: compute must be callable on a const estimator
  at::Tensor compute(const at::Tensor&, std::int64_t) { return {}; }
};
struct TensorComputeWithoutGroupSize {  // near miss: cannot tell where one group ends
  at::Tensor compute(const at::Tensor&) const { return {}; }
};
static_assert(TensorAdvantageEstimator<archetypes::MinimalTensorAdvantage>);
static_assert(!TensorAdvantageEstimator<TensorComputeReturnsVoid>);
static_assert(!TensorAdvantageEstimator<TensorComputeNotConst>);
static_assert(!TensorAdvantageEstimator<TensorComputeWithoutGroupSize>);
static_assert(!TensorAdvantageEstimator<archetypes::MinimalAdvantage>, "a host-only estimator has no tensor path");
static_assert(!AdvantageEstimator<archetypes::MinimalTensorAdvantage>, "a tensor-only estimator has no host path");

// ---- GroupBaseline ----
struct RuleAsKind {  // near miss: returns the kind, not the whole rule (std, epsilon)
  GroupRule::Kind group_rule() const { return {}; }
};
struct RuleNotConst {  // near miss: group_rule must be callable on a const estimator
  GroupRule group_rule() { return {}; }
};
static_assert(GroupBaseline<archetypes::MinimalGroupBaseline>);
static_assert(!GroupBaseline<RuleAsKind>);
static_assert(!GroupBaseline<RuleNotConst>);
static_assert(!GroupBaseline<archetypes::MinimalAdvantage>);

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
struct LossNotConst {  // near miss: the call must work on a const loss
  PolicyLossOutput operator()(const PolicyLossInputs&, const LossNormalizer&) { return {}; }
};
struct LossTakesOwnership {  // near miss: takes the inputs by rvalue, the trainer passes them by const reference
  PolicyLossOutput operator()(PolicyLossInputs&&, const LossNormalizer&) const { return {}; }
};
static_assert(!PolicyLoss<LossNotConst>);
static_assert(!PolicyLoss<LossTakesOwnership>);

// ---- Policy ----
struct PolicyWithoutParameters {  // near miss: nothing to optimise
  std::vector<Generation> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  TokenLogprobs logprobs(const TokenBatch&, double) { return {}; }
};
struct PolicyWithoutLogprobs {  // near miss: cannot score its own samples
  std::vector<Generation> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  std::vector<at::Tensor> parameters() { return {}; }
};
struct PolicyWithoutGenerate {  // near miss: cannot sample
  TokenLogprobs logprobs(const TokenBatch&, double) { return {}; }
  std::vector<at::Tensor> parameters() { return {}; }
};
struct PolicyGeneratesText {  // near miss: completions without ids or log-probs
  std::vector<std::string> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  TokenLogprobs logprobs(const TokenBatch&, double) { return {}; }
  std::vector<at::Tensor> parameters() { return {}; }
};
struct PolicyLogprobsAsTensor {  // near miss: a bare tensor, no entropy
  std::vector<Generation> generate(std::span<const std::string>, const SamplingOptions&) { return {}; }
  at::Tensor logprobs(const TokenBatch&, double) { return {}; }
  std::vector<at::Tensor> parameters() { return {}; }
};
static_assert(Policy<archetypes::MinimalPolicy>);
static_assert(!Policy<PolicyWithoutParameters>);
static_assert(!Policy<PolicyWithoutLogprobs>);
static_assert(!Policy<PolicyWithoutGenerate>);
static_assert(!Policy<PolicyGeneratesText>);
static_assert(!Policy<PolicyLogprobsAsTensor>);

// ---- CheckpointablePolicy ----
struct CheckpointableWithoutNames : archetypes::MinimalPolicy {  // near miss: cannot restore by name
  void save_pretrained(const std::filesystem::path&) {}
};
struct CheckpointableWithoutSave : archetypes::MinimalPolicy {  // near miss: cannot write a checkpoint
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() { return {}; }
};
struct CheckpointableNamesOnly : archetypes::MinimalPolicy {  // near miss: names without their tensors
  std::vector<std::string> named_parameters() { return {}; }
  void save_pretrained(const std::filesystem::path&) {}
};
struct CheckpointableButNoPolicy {  // near miss: saves and names weights, but is no Policy
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() { return {}; }
  void save_pretrained(const std::filesystem::path&) {}
};
static_assert(CheckpointablePolicy<archetypes::MinimalCheckpointablePolicy>);
static_assert(!CheckpointablePolicy<archetypes::MinimalPolicy>);
static_assert(!CheckpointablePolicy<CheckpointableWithoutNames>);
static_assert(!CheckpointablePolicy<CheckpointableWithoutSave>);
static_assert(!CheckpointablePolicy<CheckpointableNamesOnly>);
static_assert(!CheckpointablePolicy<CheckpointableButNoPolicy>);

// ---- SelfRestoringPolicy (the restore_weights hook) ----
struct RestoresFromIndex : archetypes::MinimalCheckpointablePolicy {  // near miss: not a folder
  void restore_weights(int) {}
};
struct RestoresButNotCheckpointable : archetypes::MinimalPolicy {  // near miss: has nothing to save
  void restore_weights(const std::filesystem::path&) {}
};
static_assert(SelfRestoringPolicy<archetypes::MinimalSelfRestoringPolicy>);
static_assert(!SelfRestoringPolicy<archetypes::MinimalCheckpointablePolicy>, "the default: restore by name");
static_assert(!SelfRestoringPolicy<RestoresFromIndex>);
static_assert(!SelfRestoringPolicy<RestoresButNotCheckpointable>);

// ---- TargetPredictor, SourcedTargetPredictor (the source() hook) ----
struct NamedPredictor {
  std::optional<WordRange> predict(std::string_view) const { return WordRange{100, 200}; }
  constexpr std::string_view source() const { return "named"; }
};
struct PredictsWords {  // near miss: a word count is not a range
  std::optional<std::int64_t> predict(std::string_view) const { return {}; }
};
struct PredictsMutably {  // near miss: predict must be callable on a const predictor
  std::optional<WordRange> predict(std::string_view) { return {}; }
};
struct SourcedWithoutSource : archetypes::MinimalTargetPredictor {  // near miss: the answer has no source
  std::optional<WordRange> predict_with_source(std::string_view) const { return {}; }
};
static_assert(TargetPredictor<archetypes::MinimalTargetPredictor> && TargetPredictor<NamedPredictor>);
static_assert(!TargetPredictor<PredictsWords>);
static_assert(!TargetPredictor<PredictsMutably>);
static_assert(SourcedTargetPredictor<archetypes::MinimalSourcedTargetPredictor>);
static_assert(!SourcedTargetPredictor<NamedPredictor>);
static_assert(!SourcedTargetPredictor<SourcedWithoutSource>);
static_assert(target_source(NamedPredictor{}) == "named");
static_assert(target_source(archetypes::MinimalTargetPredictor{}) == "model", "the default source");


// ---- TrainerParts: what grpo::Trainer needs, each near miss breaking one part ----
struct TwoRewardAdvantage : archetypes::MinimalAdvantage {  // near miss: built for K = 2, the scorer has K = 1
  static constexpr std::size_t num_rewards = 2;
};
using archetypes::MinimalAdvantage, archetypes::MinimalCheckpointablePolicy, archetypes::MinimalLoss,
    archetypes::MinimalPolicy, archetypes::MinimalRewardTableScorer;
static_assert(TrainerParts<MinimalCheckpointablePolicy, MinimalRewardTableScorer, MinimalAdvantage, MinimalLoss>);
static_assert(check_trainer_parts<MinimalCheckpointablePolicy, MinimalRewardTableScorer, MinimalAdvantage, MinimalLoss>());
static_assert(!TrainerParts<MinimalPolicy, MinimalRewardTableScorer, MinimalAdvantage, MinimalLoss>,
              "a policy without checkpoints cannot be trained: train() saves them");
static_assert(!TrainerParts<MinimalCheckpointablePolicy, archetypes::MinimalReward, MinimalAdvantage, MinimalLoss>,
              "one reward is not a reward table");
static_assert(!TrainerParts<MinimalCheckpointablePolicy, MinimalRewardTableScorer, TwoRewardAdvantage, MinimalLoss>);
static_assert(!TrainerParts<MinimalCheckpointablePolicy, MinimalRewardTableScorer, MinimalAdvantage, MinimalAdvantage>);

}  // namespace
