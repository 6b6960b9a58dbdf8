#pragma once
// The TargetPredictor concepts: a prompt in, the word range its answer should have out (method.md,
// "Target range prediction"), and SourcedTargetPredictor, one that also says which predictor
// answered; grpo/text/targets.hpp holds the predictors.

#include <concepts>
#include <optional>
#include <string_view>

#include "grpo/core/sample.hpp"
#include "grpo/customization_points.hpp"  // target_source (the source() hook)

namespace grpo {

/// Predicts a prompt's target range [lower, upper] in words, or std::nullopt when it cannot tell
/// (a TargetPredictorChain then asks the next predictor).
///   predict(prompt)  -> std::optional<WordRange>, callable on a const predictor
/// An optional member `std::string_view source() const` names it in LengthTarget::source
/// (grpo::target_source, customization_points.hpp; default "model").
///
/// Satisfied by: grpo::RuleBasedTargetExtractor, grpo::DefaultTarget, grpo::TargetPredictorChain,
/// and any type with `std::optional<grpo::WordRange> predict(std::string_view) const`.
template <class P>
concept TargetPredictor = requires(const P& p, std::string_view prompt) {
  { p.predict(prompt) } -> std::convertible_to<std::optional<WordRange>>;
};

/// A TargetPredictor that also says, per answer, which predictor answered: a TargetPredictorChain
/// nested in another keeps its inner predictor's source this way (otherwise the outer chain
/// records grpo::target_source of the predictor it asked).
///   predict_with_source(prompt)  -> an optional-like answer: contextually bool (false: no answer),
///                                   ->range convertible to WordRange, ->source to std::string_view
///
/// Satisfied by: grpo::TargetPredictorChain (its answer is std::optional<grpo::LengthTarget>).
template <class P>
concept SourcedTargetPredictor = TargetPredictor<P> && requires(const P& p, std::string_view prompt) {
  { static_cast<bool>(p.predict_with_source(prompt)) };
  { p.predict_with_source(prompt)->range } -> std::convertible_to<WordRange>;
  { p.predict_with_source(prompt)->source } -> std::convertible_to<std::string_view>;
};

namespace archetypes {
/// The least a TargetPredictor must provide: it never answers.
struct MinimalTargetPredictor {
  std::optional<WordRange> predict(std::string_view) const { return std::nullopt; }
};

/// The least a SourcedTargetPredictor must provide: it never answers either.
struct MinimalSourcedTargetPredictor : MinimalTargetPredictor {
  struct Answer {
    WordRange range;
    std::string_view source;
  };
  std::optional<Answer> predict_with_source(std::string_view) const { return std::nullopt; }
};
}  // namespace archetypes

static_assert(TargetPredictor<archetypes::MinimalTargetPredictor>);
static_assert(SourcedTargetPredictor<archetypes::MinimalSourcedTargetPredictor>);
static_assert(!SourcedTargetPredictor<archetypes::MinimalTargetPredictor>);

}  // namespace grpo
