#pragma once
// DAPO's dynamic sampling (Yu et al. 2025, "over-sample and filter"): groups whose advantages
// are all 0 carry no gradient, so a step keeps drawing rounds of prompts_per_step prompts until
// prompts_per_step groups with a signal are found over every rank, or the rounds run out.
//
// The groups kept are the first prompts_per_step with a signal in the global order (round, rank,
// group within the rank): the same groups whatever the number of ranks, so W ranks keep what one
// process keeps. Every drawn prompt counts as consumed.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "grpo/core/reward_table.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/trainer/rollout.hpp"

namespace grpo {

/// Indices of the groups (of `group_size` contiguous advantages) that are not all 0.
inline std::vector<std::size_t> groups_with_signal(std::span<const float> adv, std::size_t group_size) {
  std::vector<std::size_t> out;
  for (std::size_t g = 0; g * group_size < adv.size(); ++g) {
    const auto group = adv.subspan(g * group_size, group_size);
    if (!std::all_of(group.begin(), group.end(), [](float a) { return a == 0.0f; })) out.push_back(g);
  }
  return out;
}

/// Runs `draw(round)` (this rank's share of round `round`, scored) for round = 0, 1, ... until
/// `prompts_per_step` groups with a signal are kept over every rank or `max_rounds` rounds ran.
/// `comm` null: one process. Returns this rank's kept groups, with their rewards, advantages and
/// each one's position in the step's global group order (Rollout::global_groups).
template <class Draw>
ScoredRollout draw_until_signal(Draw&& draw, std::size_t prompts_per_step, std::int64_t max_rounds, Communicator* comm) {
  const int rank = comm != nullptr ? comm->rank() : 0;
  std::vector<std::vector<float>> rewards;  // the kept samples' rewards, reward by reward
  std::size_t kept_total = 0;
  ScoredRollout out;
  while (out.rounds < max_rounds && kept_total < prompts_per_step) {
    ScoredRollout d = draw(out.rounds);
    const auto G = static_cast<std::size_t>(d.rollout.group_size);
    const std::size_t K = d.table.rewards();
    out.rollout.group_size = d.rollout.group_size;
    rewards.resize(K);
    const std::vector<std::size_t> signal = groups_with_signal(d.adv, G);
    // How many groups with a signal each rank found; ranks before this one come first.
    const std::vector<double> found = comm != nullptr ? all_gather(*comm, static_cast<double>(signal.size()))
                                                      : std::vector<double>{static_cast<double>(signal.size())};
    std::size_t before = 0, round_total = 0;
    for (std::size_t q = 0; q < found.size(); ++q) {
      if (static_cast<int>(q) < rank) before += static_cast<std::size_t>(found[q]);
      round_total += static_cast<std::size_t>(found[q]);
    }
    // This rank keeps its first `mine` groups with a signal; the round's other groups are dropped now.
    const std::size_t room = prompts_per_step - kept_total;
    const std::size_t mine = std::min(signal.size(), room > before ? room - before : 0);
    for (std::size_t j = 0; j < mine; ++j) {
      const std::size_t g = signal[j];
      out.rollout.global_groups.push_back(kept_total + before + j);  // round by round, rank by rank
      out.rollout.prompts.push_back(d.rollout.prompts[g]);
      out.rollout.templated.push_back(d.rollout.templated[g]);
      for (std::size_t i = g * G; i < (g + 1) * G; ++i) {
        out.rollout.generations.push_back(std::move(d.rollout.generations[i]));
        out.adv.push_back(d.adv[i]);
        for (std::size_t k = 0; k < K; ++k) rewards[k].push_back(d.table.row(k)[i]);
      }
    }
    kept_total += std::min(round_total, room);
    out.groups_with_signal += static_cast<double>(round_total);
    out.groups_drawn += static_cast<double>(prompts_per_step);
    out.sample_s += d.sample_s;
    out.score_s += d.score_s;
    out.prompts_consumed += d.prompts_consumed;
    ++out.rounds;
  }
  out.table = RewardTable(rewards.size(), out.adv.size());
  for (std::size_t k = 0; k < rewards.size(); ++k) std::copy(rewards[k].begin(), rewards[k].end(), out.table.row(k).begin());
  out.rollout.link_samples();
  return out;
}

}  // namespace grpo
