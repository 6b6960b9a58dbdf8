#pragma once
// Trainer checkpoints: everything a run needs to continue exactly, written atomically.
//
//   <dir>/step-000050/                 published by one rename (grpo::io::StagedDirectory)
//       policy/                         Hugging Face layout: config.json, *.safetensors, tokenizer
//       optimizer.safetensors           AdamW moments "param.<i>.exp_avg" / ".exp_avg_sq" of the trainable
//                                       tensors, with master weights their float32 masters
//                                       "param.<i>.master"; steps and policy names in the metadata
//       trainer_state.json              step, data position, update index, seed, last metrics row
//   <dir>/latest                        "step-000050", replaced atomically after the folder is published
//
// With per-rank files instead (TrainerOptions::checkpoint_layout): grpo/trainer/sharded_checkpoint.hpp;
// load_checkpoint reads either.
//
// A run killed at any moment leaves the previous checkpoints and `latest` intact: the new folder
// exists only once complete, and `latest` moves only after that.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "grpo/concepts/policy.hpp"
#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/json.hpp"
#include "grpo/io/safetensors.hpp"
#include "grpo/optim/adamw.hpp"
#include "grpo/trainer/sharded_checkpoint.hpp"

namespace grpo {

/// The trainer's own counters, saved with every checkpoint.
struct TrainerState {
  std::int64_t step = 0;            ///< steps completed
  std::uint64_t data_position = 0;  ///< prompts consumed (PromptDataset position)
  std::int64_t update_index = 0;    ///< optimizer updates taken (drives the learning-rate schedule)
  std::uint64_t seed = 0;           ///< the run's seed
  nlohmann::json metrics = nlohmann::json::object();  ///< the metrics row of the last step
};

namespace detail {

inline std::vector<at::Tensor> optimizer_params(torch::optim::AdamW& optimizer) {
  std::vector<at::Tensor> params;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) params.push_back(p);
  return params;
}

/// The policy's name of each tensor ("" for a tensor the policy does not name).
inline std::vector<std::string> param_names(const std::vector<at::Tensor>& params,
                                            const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::unordered_map<const void*, std::string> by_impl;
  for (const auto& [name, tensor] : named) by_impl.emplace(tensor.unsafeGetTensorImpl(), name);
  std::vector<std::string> names;
  for (const auto& p : params) {
    auto it = by_impl.find(p.unsafeGetTensorImpl());
    names.push_back(it == by_impl.end() ? std::string() : it->second);
  }
  return names;
}

/// AdamW moments by position among the trainable tensors, each with the policy's name of its
/// tensor, so a resume whose trainable set differs (another policy.freeze) is refused instead of
/// misapplied; and the float32 master of each tensor that has one (MasterWeights).
inline void save_adamw(const std::vector<AdamWMoments>& moments, const std::filesystem::path& path,
                       const std::vector<std::string>& names = {}) {
  io::NamedTensors tensors;
  io::SafetensorsMetadata metadata{{"format", "pt"}, {"optimizer", "AdamW"}};
  metadata["params"] = std::to_string(moments.size());
  for (std::size_t i = 0; i < names.size() && i < moments.size(); ++i) metadata[fmt::format("param.{}.name", i)] = names[i];
  for (std::size_t i = 0; i < moments.size(); ++i) {
    if (moments[i].master.defined()) tensors.emplace_back(fmt::format("param.{}.master", i), moments[i].master);
    if (!moments[i].defined()) continue;  // never updated (no gradient yet)
    tensors.emplace_back(fmt::format("param.{}.exp_avg", i), moments[i].exp_avg);
    tensors.emplace_back(fmt::format("param.{}.exp_avg_sq", i), moments[i].exp_avg_sq);
    metadata[fmt::format("param.{}.step", i)] = std::to_string(moments[i].step);
  }
  io::save_safetensors(path, tensors, metadata);
}

/// The optimizer state `path` holds for `params` (every trainable tensor, in the saved order), one
/// entry per tensor, each on its tensor's device in the file's dtype. Only the tensors `wanted`
/// marks are read (a rank's shard; empty: all); the others' entries stay undefined.
/// `to_local(i, whole)`, when given, cuts the saved (whole) tensors of trainable tensor i to the
/// part this rank holds (tensor parallelism: the policy's local_slice).
inline std::vector<AdamWMoments> read_adamw(const std::filesystem::path& path, const std::vector<at::Tensor>& params,
                                            const std::vector<std::string>& names = {},
                                            const std::vector<bool>& wanted = {},
                                            const std::function<at::Tensor(std::size_t, const at::Tensor&)>& to_local = {}) {
  const auto file = io::SafetensorsFile::open(path);
  const auto& metadata = file.metadata();
  // The names the checkpoint recorded (checkpoints before names were recorded have none).
  std::vector<std::string> saved;
  for (std::size_t i = 0;; ++i) {
    auto it = metadata.find(fmt::format("param.{}.name", i));
    if (it == metadata.end()) break;
    saved.push_back(it->second);
  }
  auto count = metadata.find("params");
  const bool same_count = count != metadata.end() && count->second == std::to_string(params.size());
  if (!same_count || (!saved.empty() && !names.empty() && saved != names)) {
    std::string detail;
    if (!saved.empty() && !names.empty()) {
      detail = " (the checkpoint trained: " + join_names(saved) + "; this run trains: " + join_names(names) + ")";
    }
    throw Error(fmt::format("{}: optimizer state for {} trainable tensors, but this run trains {}{}; resume with the "
                            "same model architecture and the same frozen parameters",
                            path.string(), count == metadata.end() ? "?" : count->second, params.size(), detail));
  }
  std::vector<AdamWMoments> out(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!wanted.empty() && !wanted[i]) continue;
    const io::TensorLoadOptions options{.device = params[i].device()};
    auto read = [&](const std::string& name) {
      // Sliced: read whole on the CPU, keep this rank's slice, move only that to the device.
      at::Tensor t = to_local ? to_local(i, file.tensor(name)).to(options.device) : file.tensor(name, options);
      if (!t.sizes().equals(params[i].sizes())) {
        throw Error(fmt::format("{}: {} does not have the shape of trainable tensor {}", path.string(), name, i));
      }
      return t;
    };
    const std::string master = fmt::format("param.{}.master", i);
    if (file.contains(master)) out[i].master = read(master);
    auto step = metadata.find(fmt::format("param.{}.step", i));
    if (step == metadata.end()) continue;
    out[i].step = parse_step(step->second, path.string(), fmt::format("param.{}.step", i));
    out[i].exp_avg = read(fmt::format("param.{}.exp_avg", i));
    out[i].exp_avg_sq = read(fmt::format("param.{}.exp_avg_sq", i));
  }
  return out;
}

/// Loads the moments of `params` (every trainable tensor, in the saved order) into `optimizer`,
/// which may hold only some of them (a rank's shard): the others are skipped. Moments are
/// converted to the parameter's dtype, as AdamW keeps them; masters are not read (a plain AdamW
/// has none: restore a ClippedAdamW for them).
inline void load_adamw(torch::optim::AdamW& optimizer, const std::filesystem::path& path,
                       const std::vector<at::Tensor>& params, const std::vector<std::string>& names = {}) {
  std::unordered_map<const void*, bool> held;
  for (const auto& p : optimizer_params(optimizer)) held.emplace(p.unsafeGetTensorImpl(), true);
  std::vector<bool> wanted(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) wanted[i] = held.contains(params[i].unsafeGetTensorImpl());
  const auto saved = read_adamw(path, params, names, wanted);
  optimizer.state().clear();
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!saved[i].defined()) continue;
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(saved[i].step);
    state->exp_avg(saved[i].exp_avg.to(params[i].scalar_type()));
    state->exp_avg_sq(saved[i].exp_avg_sq.to(params[i].scalar_type()));
    optimizer.state()[params[i].unsafeGetTensorImpl()] = std::move(state);
  }
}

inline nlohmann::json to_json(const TrainerState& s) {
  return {{"step", s.step}, {"data_position", s.data_position}, {"update_index", s.update_index},
          {"seed", s.seed}, {"metrics", s.metrics}, {"format", "grpo-trainer-state-1"}};
}

inline TrainerState trainer_state_from_json(const nlohmann::json& j, const std::string& source) {
  // Counts are non-negative integers: a negative or fractional value is refused, never wrapped.
  const auto count = [&](const char* field) {
    const auto value = io::json_integer(j.at(field), 0, std::numeric_limits<std::int64_t>::max());
    if (!value)
      throw Error(fmt::format("{}: {}: expected a non-negative integer, found {}", source, field, io::quote_json(j.at(field))));
    return *value;
  };
  try {
    if (!j.is_object()) throw Error(source + ": not a grpo trainer state (expected a JSON object)");
    const auto& seed = j.at("seed");
    if (!seed.is_number_unsigned())
      throw Error(fmt::format("{}: seed: expected a non-negative integer, found {}", source, io::quote_json(seed)));
    return TrainerState{.step = count("step"),
                        .data_position = static_cast<std::uint64_t>(count("data_position")),
                        .update_index = count("update_index"),
                        .seed = seed.get<std::uint64_t>(),
                        .metrics = j.value("metrics", nlohmann::json::object())};
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": not a grpo trainer state (" + e.what() + ")");
  }
}

/// Copies the policy's weights from `folder`/policy (by name, exact copy; a SelfRestoringPolicy
/// restores itself) and reads the trainer state next to it.
template <CheckpointablePolicy P>
TrainerState restore_policy_and_state(const std::filesystem::path& folder, P& policy) {
  if constexpr (SelfRestoringPolicy<P>) {
    policy.restore_weights(folder / "policy");  // the policy knows its layout (Qwen2Policy: LoRA adapters)
  } else {
    const auto checkpoint = io::SafetensorsCheckpoint::open(folder / "policy");
    at::NoGradGuard no_grad;
    for (auto& [name, param] : policy.named_parameters()) param.copy_(io::load_parameter(checkpoint, folder / "policy", name, param));
  }
  const auto state_file = folder / "trainer_state.json";
  return trainer_state_from_json(io::read_json_file(state_file, std::uintmax_t{64} << 20), state_file.string());
}

inline std::string checkpoint_name(std::int64_t step) { return fmt::format("step-{:06}", step); }

/// The last part of writing a checkpoint (whole or sharded): trainer_state.json into the staged
/// folder, the folder published as dir/step-NNNNNN, `latest` moved to it, leftovers of killed
/// writes removed and the newest `keep` checkpoints kept (0 = all). Returns the published folder.
inline std::filesystem::path publish_checkpoint(const std::filesystem::path& dir, io::StagedDirectory& stage,
                                                const TrainerState& state, std::int64_t keep) {
  namespace fs = std::filesystem;
  const std::string name = checkpoint_name(state.step);
  io::write_file_atomically(stage.path() / "trainer_state.json", to_json(state).dump(2) + "\n");
  stage.publish();
  io::write_file_atomically(dir / "latest", name + "\n");
  io::remove_write_leftovers(dir);  // staging folders of writes a kill interrupted: a checkpoint's worth of disk each
  if (keep > 0) {
    std::vector<fs::path> found;
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_directory() && entry.path().filename().string().starts_with("step-")) found.push_back(entry.path());
    std::sort(found.begin(), found.end());
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < found.size(); ++i) fs::remove_all(found[i]);
  }
  return dir / name;
}

}  // namespace detail

/// The checkpoint folder `path` names: itself when it holds trainer_state.json, else the one its
/// `latest` file (or its checkpoints/latest) points at.
inline std::filesystem::path resolve_checkpoint(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (fs::exists(path / "trainer_state.json")) return path;
  for (const fs::path& dir : {path, path / "checkpoints"}) {
    std::ifstream latest(dir / "latest");
    std::string name;
    if (latest && std::getline(latest, name) && !name.empty() && fs::exists(dir / name / "trainer_state.json"))
      return dir / name;
  }
  throw Error(path.string() + ": no checkpoint here (expected trainer_state.json, or a `latest` file naming a "
              "step-NNNNNN folder, directly or under checkpoints/)");
}

/// Saves policy + AdamW moments of `params` (the trainable tensors, in order) + state under
/// dir/step-NNNNNN, points dir/latest at it and keeps the newest `keep` checkpoints (0 = all).
/// Returns the published folder.
template <CheckpointablePolicy P>
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, P& policy, const std::vector<at::Tensor>& params,
                                      const std::vector<AdamWMoments>& moments, const TrainerState& state,
                                      std::int64_t keep = 0) {
  const std::string name = detail::checkpoint_name(state.step);
  io::StagedDirectory stage(dir / name);
  policy.save_pretrained(stage.path() / "policy");
  detail::save_adamw(moments, stage.path() / "optimizer.safetensors", detail::param_names(params, policy.named_parameters()));
  return detail::publish_checkpoint(dir, stage, state, keep);
}

/// The same, with the moments of every tensor `optimizer` holds.
template <CheckpointablePolicy P>
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, P& policy, torch::optim::AdamW& optimizer,
                                      const TrainerState& state, std::int64_t keep = 0) {
  const auto params = detail::optimizer_params(optimizer);
  return save_checkpoint(dir, policy, params, detail::adamw_moments(optimizer, params), state, keep);
}

/// Restores policy weights (by name, exact copy), optimizer moments and the trainer state.
/// `params` are the trainable tensors in the saved order; `optimizer` may hold a subset of them
/// (a rank's shard of the optimizer state) and receives the moments of those. By default the
/// tensors `optimizer` holds, which is wrong for a shard: give it every trainable tensor.
template <CheckpointablePolicy P>
TrainerState load_checkpoint(const std::filesystem::path& path, P& policy, torch::optim::AdamW& optimizer,
                             std::vector<at::Tensor> params = {}) {
  if (params.empty()) params = detail::optimizer_params(optimizer);
  const auto folder = resolve_checkpoint(path);
  TrainerState state = detail::restore_policy_and_state(folder, policy);
  detail::load_adamw(optimizer, folder / "optimizer.safetensors", params,
                     detail::param_names(params, policy.named_parameters()));
  return state;
}

/// The same for a ClippedAdamW (what the trainer steps): the weights first, then the moments and
/// master weights of the tensors this rank steps (ClippedAdamW::restore), so a resumed run
/// continues bit for bit.
template <CheckpointablePolicy P>
TrainerState load_checkpoint(const std::filesystem::path& path, P& policy, ClippedAdamW& optimizer) {
  const auto folder = resolve_checkpoint(path);
  const auto& params = optimizer.params();
  const auto names = detail::param_names(params, policy.named_parameters());
  if (is_sharded_checkpoint(folder)) {
    // Each rank reads its slices of the weights and of the moments of the tensors it steps, from
    // the pieces that cover them (any mesh wrote them).
    const auto shards = ShardedCheckpoint::open(folder / "shards");
    shards.restore_policy(policy);
    optimizer.restore(shards.read_moments(params, names, optimizer.held(),
                                          [&](std::size_t i) { return detail::slice_of(policy, names[i]); }));
    const auto state_file = folder / "trainer_state.json";
    return detail::trainer_state_from_json(io::read_json_file(state_file, std::uintmax_t{64} << 20), state_file.string());
  }
  TrainerState state = detail::restore_policy_and_state(folder, policy);
  std::function<at::Tensor(std::size_t, const at::Tensor&)> to_local;
  if constexpr (TensorParallelPolicy<P>) {
    // Tensor-parallel: the checkpoint holds whole tensors (Trainer::save_checkpoint gathers them).
    to_local = [&](std::size_t i, const at::Tensor& whole) { return policy.local_slice(names[i], whole); };
  }
  optimizer.restore(detail::read_adamw(folder / "optimizer.safetensors", params, names, optimizer.held(), to_local));
  return state;
}

}  // namespace grpo
