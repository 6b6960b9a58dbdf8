#pragma once
// Freezing parameters by name: the trainer optimises only the tensors that require a gradient,
// so a frozen tensor gets no gradient, no AdamW state and no update.
//
// Why a user freezes: a tied embedding of a 151,936-token vocabulary is also the output
// projection, and AdamW moves every row that receives any gradient by about the learning rate,
// including rows of tokens the policy never writes (their softmax mass gives them a tiny
// gradient whose sign is noise). In a short RL run on a small model that drift alone puts mass
// on junk tokens; freezing `model.embed_tokens.weight` (and `lm_head.weight` when untied) keeps
// the vocabulary where pretraining left it, skips its weight gradient (a third of the
// output-projection backward) and its 2 x V x H floats of AdamW state.

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <regex>
#include <span>
#include <string>
#include <vector>

#include "grpo/concepts/policy.hpp"
#include "grpo/core/error.hpp"

namespace grpo {

/// Sets requires_grad(false) on every parameter whose name fully matches one of `patterns`
/// (ECMAScript regular expressions: "model\\.embed_tokens\\.weight", "model\\.layers\\.[01]\\..*").
/// A pattern that is not a valid expression, or that matches no parameter (a typo), is an error
/// naming it. Returns the names frozen, in the policy's parameter order.
template <CheckpointablePolicy P>
std::vector<std::string> freeze_parameters(P& policy, std::span<const std::string> patterns) {
  std::vector<std::regex> expressions;
  expressions.reserve(patterns.size());
  for (const auto& pattern : patterns) {
    try {
      expressions.emplace_back(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw Error("freeze: \"" + pattern + "\" is not a valid regular expression (" + e.what() + ")");
    }
  }
  // Match first, freeze after every pattern is known to match: an error leaves the policy as it was.
  auto named = policy.named_parameters();
  std::vector<bool> used(patterns.size(), false), hit(named.size(), false);
  for (std::size_t p = 0; p < named.size(); ++p) {
    for (std::size_t i = 0; i < expressions.size(); ++i) {
      if (std::regex_match(named[p].first, expressions[i])) used[i] = hit[p] = true;
    }
  }
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    if (used[i]) continue;
    std::string names;
    for (const auto& item : named) {
      if (names.size() > 300) {
        names += ", ...";
        break;
      }
      names += (names.empty() ? "" : ", ") + item.first;
    }
    throw Error("freeze: \"" + patterns[i] + "\" matches no parameter of the policy (its parameters: " + names + ")");
  }
  std::vector<std::string> frozen;
  for (std::size_t p = 0; p < named.size(); ++p) {
    if (!hit[p]) continue;
    named[p].second.set_requires_grad(false);
    frozen.push_back(named[p].first);
  }
  return frozen;
}

/// The tensors of `params` that require a gradient: what an optimizer should own.
inline std::vector<at::Tensor> trainable(std::vector<at::Tensor> params) {
  std::erase_if(params, [](const at::Tensor& t) { return !t.requires_grad(); });
  return params;
}

}  // namespace grpo
