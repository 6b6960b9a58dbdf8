#pragma once
// Sharded checkpoints: every rank writes its own slices; nothing is gathered anywhere.
//
//   <dir>/step-000050/                         published by one rename, as a whole checkpoint
//       trainer_state.json
//       shards/index.json                      {"format": "grpo-sharded-checkpoint-1",
//                                                "tensor_parallel": T, "data_parallel": D,
//                                                "weights": [files], "optimizer": [files],
//                                                "parameters": [names, the policy's order],
//                                                "trainable": [names of param.<i>, in order]}
//       shards/config.json, tokenizer files    the policy's save_config (no weights)
//       shards/weights-tp<t>-of-<T>.safetensors            tensor rank t's slice of every
//                                                          parameter (written by data rank 0)
//       shards/optimizer-tp<t>-of-<T>-dp<d>-of-<D>.safetensors
//                                                          AdamW moments and fp32 masters of the
//                                                          tensors data rank d steps (ZeRO-1),
//                                                          tensor rank t's slices:
//                                                          param.<i>.exp_avg / .exp_avg_sq / .master,
//                                                          metadata param.<i>.step
//       policy/                                the final checkpoint only: the policy exported
//                                              whole in Hugging Face layout (transformers loads it)
//
// Each piece records its slice of the whole tensor (grpo/io/sharded_tensors.hpp), so a resume
// reads each rank's slices on the same mesh, on another data-parallel size, and on another
// tensor-parallel size (ranges are assembled from the pieces that cover them). A whole-model
// folder is made from the pieces one tensor at a time (export_sharded_policy; longwriter-zero
// convert --checkpoint): memory stays at one tensor, whatever the model's size.
//
// The write order makes it atomic: world rank 0 creates the staging folder and the config; every
// rank writes its files there; after a barrier rank 0 writes the index, the export (final
// checkpoint), trainer_state.json, publishes the folder and moves `latest`. A kill at any point
// leaves the previous checkpoints and `latest` as they were.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <system_error>
#include <functional>
#include <string>
#include <vector>

#include "grpo/concepts/policy.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/tensor_slice.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/file_kind.hpp"
#include "grpo/io/json.hpp"
#include "grpo/io/sharded_tensors.hpp"
#include "grpo/optim/adamw.hpp"

namespace grpo {

/// Where a rank's files sit in a sharded checkpoint: its tensor and data coordinates.
struct ShardCoordinates {
  int tensor_rank = 0;
  int tensor_size = 1;  ///< T
  int data_rank = 0;
  int data_size = 1;    ///< D
};

inline constexpr const char* sharded_checkpoint_format = "grpo-sharded-checkpoint-1";

namespace detail {

inline std::string weights_file_name(int t, int T) { return fmt::format("weights-tp{:03}-of-{:03}.safetensors", t, T); }
inline std::string optimizer_file_name(int t, int T, int d, int D) {
  return fmt::format("optimizer-tp{:03}-of-{:03}-dp{:03}-of-{:03}.safetensors", t, T, d, D);
}

/// Names for a message: comma-separated, "?" for an unnamed tensor, cut after ~400 characters.
inline std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (out.size() > 400) return out + ", ...";
    out += (out.empty() ? "" : ", ") + (n.empty() ? std::string("?") : n);
  }
  return out;
}

/// An optimizer file's "param.<i>.step" metadata: a non-negative integer, else an error naming
/// `file` and `key`.
inline std::int64_t parse_step(const std::string& text, const std::string& file, const std::string& key) {
  std::int64_t value = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0)
    throw Error(fmt::format("{}: {}: expected a non-negative integer, found \"{}\"", file, key, text.substr(0, 40)));
  return value;
}

/// The slice of parameter `name` the policy holds (the whole tensor for a policy that cannot be split).
template <class P>
TensorSlice slice_of(const P& policy, const std::string& name) {
  if constexpr (TensorParallelPolicy<P>) return policy.parameter_slice(name);
  else return {};
}

}  // namespace detail

/// Whether `folder` (a step-NNNNNN folder) is a sharded checkpoint.
inline bool is_sharded_checkpoint(const std::filesystem::path& folder) {
  std::error_code ec;
  return std::filesystem::exists(folder / "shards" / "index.json", ec);
}

/// Writes this rank's files into `shards` (which exists): with data rank 0, the slice of every
/// parameter it holds; always, the optimizer state of the tensors it steps (`local`, one entry per
/// trainable tensor `params`, undefined where another rank steps it). `names` are the policy's
/// names of `params`.
template <CheckpointablePolicy P>
void write_checkpoint_shards(const std::filesystem::path& shards, P& policy, const std::vector<std::string>& names,
                             const std::vector<AdamWMoments>& local, const ShardCoordinates& at) {
  if (at.data_rank == 0) {
    std::vector<io::TensorPiece> pieces;
    for (auto& [name, tensor] : policy.named_parameters())
      pieces.push_back({.name = name, .tensor = tensor.detach(), .slice = detail::slice_of(policy, name)});
    io::save_tensor_pieces(shards / detail::weights_file_name(at.tensor_rank, at.tensor_size), pieces);
  }
  std::vector<io::TensorPiece> pieces;
  io::SafetensorsMetadata metadata{{"format", "pt"}, {"optimizer", "AdamW"}};
  metadata["params"] = std::to_string(local.size());
  for (std::size_t i = 0; i < local.size(); ++i) {
    const auto slice = detail::slice_of(policy, names[i]);
    if (local[i].master.defined()) pieces.push_back({fmt::format("param.{}.master", i), local[i].master, slice});
    if (!local[i].defined()) continue;  // stepped elsewhere, or never updated
    pieces.push_back({fmt::format("param.{}.exp_avg", i), local[i].exp_avg, slice});
    pieces.push_back({fmt::format("param.{}.exp_avg_sq", i), local[i].exp_avg_sq, slice});
    metadata[fmt::format("param.{}.step", i)] = std::to_string(local[i].step);
  }
  io::save_tensor_pieces(shards / detail::optimizer_file_name(at.tensor_rank, at.tensor_size, at.data_rank, at.data_size),
                         pieces, std::move(metadata));
}

/// Writes shards/index.json (world rank 0, after every rank wrote its files): the mesh, the files
/// it expects, the policy's parameter names in order and the trainable tensors' names.
inline void write_shard_index(const std::filesystem::path& shards, const ShardCoordinates& mesh,
                              const std::vector<std::string>& parameters, const std::vector<std::string>& trainable) {
  nlohmann::json weights = nlohmann::json::array(), optimizer = nlohmann::json::array();
  for (int t = 0; t < mesh.tensor_size; ++t) {
    weights.push_back(detail::weights_file_name(t, mesh.tensor_size));
    for (int d = 0; d < mesh.data_size; ++d)
      optimizer.push_back(detail::optimizer_file_name(t, mesh.tensor_size, d, mesh.data_size));
  }
  const nlohmann::json index = {{"format", sharded_checkpoint_format}, {"tensor_parallel", mesh.tensor_size},
                                {"data_parallel", mesh.data_size},     {"weights", weights},
                                {"optimizer", optimizer},              {"parameters", parameters},
                                {"trainable", trainable}};
  io::write_file_atomically(shards / "index.json", index.dump(2) + "\n");
}

/// A sharded checkpoint's shards/ folder, opened: its index, and the pieces of the weights and of
/// the optimizer state (memory-mapped; nothing is read until asked for).
class ShardedCheckpoint {
 public:
  /// Opens `shards` (a step folder's shards/); `optimizer` false: the weights only (an export).
  /// Throws grpo::Error naming the index and the field, or a file the index lists that is missing.
  static ShardedCheckpoint open(const std::filesystem::path& shards, bool optimizer = true) {
    ShardedCheckpoint out;
    out.folder_ = shards;
    const auto index_path = shards / "index.json";
    const std::string where = index_path.string();
    const auto index = io::read_json_file(index_path, std::uintmax_t{64} << 20);
    const auto strings = [&](const char* field) {
      std::vector<std::string> values;
      const auto it = index.is_object() ? index.find(field) : index.end();
      if (it == index.end() || !it->is_array())
        throw Error(fmt::format("{}: {}: expected an array of strings (a grpo sharded checkpoint index)", where, field));
      for (const auto& v : *it) {
        if (!v.is_string()) throw Error(fmt::format("{}: {}: expected strings, found {}", where, field, io::quote_json(v)));
        values.push_back(v.get<std::string>());
      }
      return values;
    };
    const auto format = index.is_object() ? index.find("format") : index.end();
    if (format == index.end() || !format->is_string() || format->get<std::string>() != sharded_checkpoint_format) {
      throw Error(fmt::format("{}: format: expected \"{}\"; not a grpo sharded checkpoint index", where,
                              sharded_checkpoint_format));
    }
    const auto files = [&](const char* field) {
      std::vector<std::filesystem::path> paths;
      for (const auto& name : strings(field)) {
        if (!io::detail::is_plain_file_name(name))
          throw Error(fmt::format("{}: {}: expected file names in the same folder, found \"{}\"", where, field, name));
        const auto path = shards / name;
        io::require_regular_file(path, fmt::format("a file {} lists in \"{}\"", where, field));
        paths.push_back(path);
      }
      return paths;
    };
    out.parameters_ = strings("parameters");
    out.trainable_ = strings("trainable");
    for (const char* field : {"tensor_parallel", "data_parallel"}) {
      const auto value = index.contains(field) ? io::json_integer(index.at(field), 1, 1 << 20) : std::nullopt;
      if (!value) throw Error(fmt::format("{}: {}: expected a positive integer", where, field));
      (std::string_view(field) == "tensor_parallel" ? out.mesh_.tensor_size : out.mesh_.data_size) =
          static_cast<int>(*value);
    }
    out.weights_ = io::ShardedTensors::open(files("weights"));
    if (optimizer) out.optimizer_ = io::ShardedTensors::open(files("optimizer"));
    for (const auto& name : out.parameters_)
      if (!out.weights_.contains(name))
        throw Error(fmt::format("{}: parameter '{}' is listed but no weights file holds it", where, name));
    return out;
  }

  [[nodiscard]] const std::filesystem::path& folder() const { return folder_; }
  /// The mesh that wrote it (T, D).
  [[nodiscard]] const ShardCoordinates& mesh() const { return mesh_; }
  /// The policy's parameter names, in its order.
  [[nodiscard]] const std::vector<std::string>& parameters() const { return parameters_; }
  /// The trainable tensors' names, in the optimizer's order.
  [[nodiscard]] const std::vector<std::string>& trainable() const { return trainable_; }
  [[nodiscard]] const io::ShardedTensors& weights() const { return weights_; }
  [[nodiscard]] const io::ShardedTensors& optimizer() const { return optimizer_; }

  /// Copies this rank's slice of every parameter into `policy` (by name; a missing tensor or another
  /// shape is an error naming the checkpoint and the tensor).
  template <CheckpointablePolicy P>
  void restore_policy(P& policy) const {
    at::NoGradGuard no_grad;
    for (auto& [name, param] : policy.named_parameters()) {
      if (!weights_.contains(name))
        throw Error(fmt::format("{}: missing tensor '{}' of the policy; resume with the same model architecture",
                                folder_.string(), name));
      const auto slice = detail::slice_of(policy, name);
      const auto value = weights_.read(name, slice, {.device = param.device(), .dtype = param.scalar_type()});
      if (!value.sizes().equals(param.sizes()))
        throw Error(fmt::format("{}: tensor '{}' has the wrong shape for this policy (whole shape {})", folder_.string(),
                                name, io::detail::shape_text(weights_.shape(name))));
      param.copy_(value);
    }
  }

  /// The optimizer state of `params` (every trainable tensor, named `names`): for the ones `held`
  /// marks (this rank steps them), their slice `slice(i)` of the moments and master, on the
  /// tensor's device in the stored dtype; the others stay undefined. The trainable set must be
  /// the one that was saved (same names, same order).
  [[nodiscard]] std::vector<AdamWMoments> read_moments(const std::vector<at::Tensor>& params,
                                                       const std::vector<std::string>& names,
                                                       const std::vector<bool>& held,
                                                       const std::function<TensorSlice(std::size_t)>& slice) const {
    if (names != trainable_) {
      throw Error(fmt::format("{}: optimizer state for {} trainable tensors ({}), but this run trains {} ({}); resume "
                              "with the same model architecture and the same frozen parameters",
                              folder_.string(), trainable_.size(), detail::join_names(trainable_), names.size(),
                              detail::join_names(names)));
    }
    std::vector<AdamWMoments> out(params.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (!held.empty() && !held[i]) continue;
      const io::TensorLoadOptions options{.device = params[i].device()};
      const auto read = [&](const std::string& key) {
        auto t = optimizer_.read(key, slice(i), options);
        if (!t.sizes().equals(params[i].sizes()))
          throw Error(fmt::format("{}: {} does not have the shape of trainable tensor {} ({})", folder_.string(), key, i,
                                  names[i]));
        return t;
      };
      const auto master = fmt::format("param.{}.master", i);
      if (optimizer_.contains(master)) out[i].master = read(master);
      const auto step = find_step(i);
      if (!step) continue;  // never updated
      out[i].step = *step;
      out[i].exp_avg = read(fmt::format("param.{}.exp_avg", i));
      out[i].exp_avg_sq = read(fmt::format("param.{}.exp_avg_sq", i));
    }
    return out;
  }

 private:
  std::optional<std::int64_t> find_step(std::size_t i) const {
    const auto key = fmt::format("param.{}.step", i);
    for (const auto& file : optimizer_.files()) {
      const auto it = file.metadata().find(key);
      if (it == file.metadata().end()) continue;
      return detail::parse_step(it->second, file.path().string(), key);
    }
    return std::nullopt;
  }

  std::filesystem::path folder_;
  ShardCoordinates mesh_;
  std::vector<std::string> parameters_, trainable_;
  io::ShardedTensors weights_, optimizer_;
};

/// Writes the policy of the sharded checkpoint `shards` (a step folder's shards/) whole into
/// `out` in Hugging Face layout (config and tokenizer files copied, weights in the stored dtype,
/// split like save_pretrained), one tensor at a time: memory stays at the largest tensor plus one
/// piece of it. `out` is replaced atomically.
inline void export_sharded_policy(const std::filesystem::path& shards, const std::filesystem::path& out,
                                  const io::ShardOptions& options = {}) {
  const auto checkpoint = ShardedCheckpoint::open(shards, /*optimizer=*/false);
  const auto& weights = checkpoint.weights();
  std::vector<io::TensorSpec> specs;
  for (const auto& name : checkpoint.parameters())
    specs.push_back({.name = name, .dtype = weights.dtype(name), .shape = weights.shape(name)});
  const auto name = out.filename().empty() ? out.parent_path().filename() : out.filename();
  io::remove_write_leftovers(io::detail::parent_folder(out), name.string() + ".");
  io::StagedDirectory stage(out);
  std::error_code ec;
  for (std::filesystem::directory_iterator it(shards, ec), end; !ec && it != end; it.increment(ec)) {
    const auto file = it->path().filename().string();
    if (file == "index.json" || file.ends_with(".safetensors") || !it->is_regular_file()) continue;
    std::filesystem::copy_file(it->path(), stage.path() / file, ec);
    if (ec) throw Error(fmt::format("{}: cannot copy into {}: {}", it->path().string(), out.string(), ec.message()));
  }
  io::save_sharded_safetensors(stage.path(), specs, [&](std::size_t i) { return weights.read(specs[i].name); },
                               {.max_shard_bytes = options.max_shard_bytes, .prefix = "model"});
  stage.publish();
}

}  // namespace grpo
