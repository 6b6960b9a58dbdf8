#pragma once
// grpo::check_ranks_agree: every rank of a data-parallel run must run the same schedule of
// collectives, so the settings that decide it (and the position of a resumed run) are compared
// with rank 0's before any collective whose shape they decide. A difference is an error on every
// rank naming the setting, instead of a hang or mismatched collectives later.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <fmt/format.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

#include "grpo/core/error.hpp"
#include "grpo/distributed/communicator.hpp"

namespace grpo {

/// A setting every rank must share: its name in the error message and its value (bits for a seed).
using RankSetting = std::pair<const char*, std::int64_t>;

/// Throws grpo::Error on every rank when some rank's value of a setting differs from rank 0's.
/// `when` names the moment ("distribute()", "resume(DIR)"). One all_gather; every rank calls it.
inline void check_ranks_agree(Communicator& comm, std::string_view when, std::span<const RankSetting> settings) {
  if (comm.world_size() == 1) return;
  const auto F = static_cast<std::int64_t>(settings.size());
  at::Tensor mine = at::empty({1, F}, at::kLong);
  for (std::int64_t f = 0; f < F; ++f) mine[0][f] = settings[static_cast<std::size_t>(f)].second;
  const at::Tensor all = comm.all_gather(mine.to(comm.device())).cpu().contiguous();
  const std::int64_t* v = all.data_ptr<std::int64_t>();
  for (int r = 1; r < comm.world_size(); ++r)
    for (std::int64_t f = 0; f < F; ++f)
      if (v[r * F + f] != v[f]) {
        throw Error(fmt::format("data parallel, {}: rank {} has {} = {} but rank 0 has {}; every rank needs the same "
                                "options, prompts, model and checkpoint",
                                when, r, settings[static_cast<std::size_t>(f)].first, v[r * F + f], v[f]));
      }
}

}  // namespace grpo
