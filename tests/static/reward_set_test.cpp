// Compile-only tests of grpo::RewardSet: any mix of rewards (library classes, member-score types,
// batched and per-sample lambdas, reward_traits adaptations) composes at compile time with K known
// as a constant; near-miss types are rejected by RewardList (the requirement RewardSet checks with
// readable static_asserts; tests/python/test_text_reward_set_diagnostics.py checks the messages).
#include <grpo/rewards/format.hpp>
#include <grpo/rewards/length.hpp>
#include <grpo/rewards/reward_set.hpp>
#include <grpo/text/targets.hpp>

#include <string>
#include <type_traits>

namespace {
using namespace grpo;

struct MemberScore {
  void score(SampleBatch, std::span<float>) {}
};
struct NoScore {};
struct ScoreReturnsFloat {  // near miss: batched score must return void
  float score(SampleBatch, std::span<float>) { return 0; }
};
struct PerSampleReturnsString {  // near miss: result not convertible to float
  std::string operator()(const Sample&) const { return {}; }
};
struct NotMovable {  // near miss: a set stores its rewards by value
  NotMovable() = default;
  NotMovable(NotMovable&&) = delete;
  float operator()(const Sample&) const { return 0; }
};

constexpr auto per_sample = [](const Sample& s) { return s.truncated ? 0.0f : 1.0f; };
constexpr auto batched = [](SampleBatch, std::span<float>) {};

// Deduction from a list of rewards, lambdas included; K is a compile-time constant.
using Three = decltype(RewardSet{LengthReward{}, FormatReward{}, per_sample});
static_assert(Three::size == 3);
static_assert(std::is_same_v<Three, RewardSet<LengthReward, FormatReward, std::remove_const_t<decltype(per_sample)>>>);
static_assert(RewardSet<MemberScore, decltype(batched)>::size == 2);
static_assert(std::is_same_v<std::remove_cvref_t<decltype(std::declval<Three&>().get<0>())>, LengthReward>);
static_assert(std::is_same_v<std::remove_cvref_t<decltype(std::declval<const Three&>().get<1>())>, FormatReward>);
static_assert(std::is_same_v<decltype(std::declval<const Three&>().names()), std::array<std::string, 3>>);
constexpr std::size_t k = Three::size;  // usable as a template argument
static_assert(std::array<float, k>{}.size() == 3);

static_assert(RewardList<LengthReward, FormatReward, MemberScore, decltype(per_sample), decltype(batched)>);
static_assert(RewardList<>);
static_assert(!RewardList<LengthReward, NoScore>);
static_assert(!RewardList<ScoreReturnsFloat>);
static_assert(!RewardList<PerSampleReturnsString>);
static_assert(!RewardList<NotMovable>);
static_assert(!RewardList<int>);

// The library's rewards are named rewards; TargetPredictor models and near misses.
static_assert(NamedReward<LengthReward> && NamedReward<FormatReward>);
struct PredictsInt {  // near miss: wrong result type
  int predict(std::string_view) const { return 0; }
};
struct PredictNotConst {  // near miss: predict must be const
  std::optional<WordRange> predict(std::string_view) { return {}; }
};
static_assert(TargetPredictor<RuleBasedTargetExtractor> && TargetPredictor<DefaultTarget>);
static_assert(TargetPredictor<TargetPredictorChain<RuleBasedTargetExtractor, DefaultTarget>>);
static_assert(!TargetPredictor<PredictsInt>);
static_assert(!TargetPredictor<PredictNotConst>);
static_assert(!TargetPredictor<NoScore>);

}  // namespace
