#pragma once
// How a step's selected samples become optimizer updates: M mini-batches (one update each),
// each packed into micro-batches by a token budget (gradient accumulation), each with the loss
// normalisers of the whole mini-batch over every rank.
//
// The partition is fixed by a sample's position j in the step's global order (groups in
// Rollout::global_groups order, then in order within a group): j goes to mini-batch j mod M.
// Every rank holds part of every mini-batch (so all ranks work on each update), and the partition
// does not depend on the number of ranks (so W ranks form one process's mini-batches exactly).

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "grpo/core/loss_types.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/trainer/options.hpp"
#include "grpo/trainer/rollout.hpp"

namespace grpo {

/// One optimizer update's samples: this rank's micro-batches and the normalisers counted over
/// every rank's part of the mini-batch.
struct MiniBatch {
  std::vector<MicroBatch> micro;
  LossNormalizer normalizer;
};

/// The position of each selected sample among every rank's selected samples in the step's global
/// order. One all_gather of [groups, 2] rows when distributed.
inline std::vector<std::size_t> selected_positions(const Rollout& r, std::span<const std::size_t> selected,
                                                   Communicator* comm) {
  const auto G = static_cast<std::size_t>(r.group_size);
  const std::size_t groups = r.prompts.size();
  at::Tensor rows = at::zeros({static_cast<std::int64_t>(groups), 2}, at::kDouble);  // (global group, selected)
  double* row = rows.data_ptr<double>();
  for (std::size_t g = 0; g < groups; ++g) row[2 * g] = static_cast<double>(r.global_group(g));
  for (std::size_t i : selected) row[2 * (i / G) + 1] += 1.0;
  if (comm != nullptr && comm->world_size() > 1) rows = all_gather_rows(*comm, rows.to(comm->device())).cpu().contiguous();
  std::map<std::size_t, std::size_t> start;  // global group -> its first position
  const double* all = rows.data_ptr<double>();
  for (std::int64_t k = 0; k < rows.size(0); ++k)
    start[static_cast<std::size_t>(all[2 * k])] = static_cast<std::size_t>(all[2 * k + 1]);
  std::size_t running = 0;
  for (auto& [group, count] : start) running += std::exchange(count, running);
  std::vector<std::size_t> position;
  std::vector<std::size_t> seen(groups, 0);
  for (std::size_t i : selected) position.push_back(start[r.global_group(i / G)] + seen[i / G]++);
  return position;
}

/// The step's mini-batches (those with a sample on some rank), in order. `horizon` is Dr.GRPO's
/// constant length (max new tokens). One all_reduce of the counts when distributed.
inline std::vector<MiniBatch> plan_minibatches(const Rollout& r, std::span<const std::size_t> selected,
                                               std::int64_t mini_batches, std::int64_t micro_batch_tokens,
                                               std::int64_t pad_id, double horizon, Communicator* comm) {
  const auto parts = static_cast<std::size_t>(mini_batches);
  const std::vector<std::size_t> position = selected_positions(r, selected, comm);
  std::vector<std::vector<std::size_t>> members(parts);
  for (std::size_t k = 0; k < selected.size(); ++k) members[position[k] % parts].push_back(selected[k]);
  std::vector<MiniBatch> planned(parts);
  std::vector<double> counts;  // tokens and sequences of each part, then summed over ranks
  for (std::size_t m = 0; m < parts; ++m) {
    planned[m].micro = pack_micro_batches(r, members[m], micro_batch_tokens, pad_id);
    double tokens = 0.0;
    for (const auto& mb : planned[m].micro) tokens += static_cast<double>(mb.completion_tokens);
    counts.push_back(tokens);
    counts.push_back(static_cast<double>(members[m].size()));
  }
  if (comm != nullptr) counts = all_reduce_sum(*comm, std::move(counts));
  std::vector<MiniBatch> kept;
  for (std::size_t m = 0; m < parts; ++m) {
    if (counts[2 * m + 1] == 0) continue;
    planned[m].normalizer = {.tokens = counts[2 * m], .sequences = counts[2 * m + 1], .horizon = horizon};
    kept.push_back(std::move(planned[m]));
  }
  return kept;
}

/// The loss's inputs for a micro-batch from the policy's log-probs `lp` [B, T] and the step's
/// advantages `adv` [N]: pi_old per `source` (automatic: the detached current log-probs, ratio 1;
/// sampler: what the sampler recorded; recompute: mb.old_logprobs), pi_ref when the trainer filled
/// it, the entropy for a bonus. On the device of `lp`.
inline PolicyLossInputs loss_inputs(const TokenLogprobs& lp, const MicroBatch& mb, OldLogprobSource source,
                                    std::span<const float> adv) {
  const auto device = lp.logprobs.device();
  PolicyLossInputs in;
  in.logprobs = lp.logprobs;
  in.mask = mb.batch.completion_mask.to(device);
  in.old_logprobs = source == OldLogprobSource::automatic ? lp.logprobs.detach()
                    : source == OldLogprobSource::sampler  ? mb.sampler_logprobs.to(device)
                                                           : mb.old_logprobs.to(device);
  if (mb.ref_logprobs.defined()) in.ref_logprobs = mb.ref_logprobs.to(device);
  in.entropy = lp.entropy;  // undefined when the policy computes none
  std::vector<float> a;
  a.reserve(mb.samples.size());
  for (std::size_t i : mb.samples) a.push_back(adv[i]);
  in.advantages = at::from_blob(a.data(), {static_cast<std::int64_t>(a.size())}, at::kFloat).clone().to(device);
  return in;
}

}  // namespace grpo
