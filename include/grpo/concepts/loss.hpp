#pragma once
// The PolicyLoss concept: a micro-batch of log-probs and advantages in, a scalar loss out.

#include <concepts>

#include "grpo/core/loss_types.hpp"

namespace grpo {

/// A policy loss maps one micro-batch and the global normalisers to its share of the loss.
/// Summing the outputs of all micro-batches (and ranks) must give the whole-batch loss.
///
/// Satisfied by: grpo::ClippedSurrogateLoss, and any type with that call operator.
template <class L>
concept PolicyLoss = requires(const L& loss, const PolicyLossInputs& in, const LossNormalizer& norm) {
  { loss(in, norm) } -> std::convertible_to<PolicyLossOutput>;
};

namespace archetypes {
/// The least a PolicyLoss must provide.
struct MinimalLoss {
  PolicyLossOutput operator()(const PolicyLossInputs&, const LossNormalizer&) const { return {}; }
};
}  // namespace archetypes

static_assert(PolicyLoss<archetypes::MinimalLoss>);

}  // namespace grpo
