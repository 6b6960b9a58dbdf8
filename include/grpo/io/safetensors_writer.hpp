#pragma once
// safetensors checkpoints out, the Hugging Face way (each file written atomically, grpo/io/atomic_file.hpp):
//   save_safetensors          one file, byte-identical to the reference writer's output
//   save_sharded_safetensors  model-0000i-of-0000N.safetensors + index, split like save_pretrained;
//                             from tensors in memory, or streamed: each tensor made just before it is
//                             written (bounded memory: one tensor at a time)

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/safetensors_reader.hpp"

namespace grpo::io {

/// How save_sharded_safetensors splits and names files.
struct ShardOptions {
  /// Largest shard in bytes of tensor data (default 5 GB = 5e9, huggingface_hub's default;
  /// transformers 5 save_pretrained passes 50 GB). A larger tensor gets a shard of its own.
  std::uint64_t max_shard_bytes = 5'000'000'000;
  /// File name stem: "<prefix>.safetensors" or "<prefix>-00001-of-00003.safetensors" plus
  /// "<prefix>.safetensors.index.json" (default "model", what transformers loads).
  std::string prefix = "model";
  /// "__metadata__" of every file (default {"format": "pt"}, as save_pretrained writes).
  SafetensorsMetadata metadata = {{"format", "pt"}};
};

namespace detail {

struct PlannedTensor {
  std::string name;
  at::Tensor tensor;                  ///< the data; or undefined and made by `produce` when written
  std::function<at::Tensor()> produce = {};
  SafetensorsDtype dtype = SafetensorsDtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t bytes = 0;
  [[nodiscard]] std::uint64_t numel() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= static_cast<std::uint64_t>(d);
    return n;
  }
};

inline PlannedTensor plan_tensor(std::string name, const at::Tensor& tensor, const std::string& where) {
  const std::string what = detail::tensor_where(where, name);
  if (!tensor.defined()) throw Error(what + ": the tensor is undefined (an empty at::Tensor)");
  if (name == "__metadata__") throw Error(what + ": \"__metadata__\" is reserved by the format; rename the tensor");
  if (tensor.layout() != c10::kStrided || tensor.is_quantized()) {
    throw Error(what + ": only dense (strided, non-quantized) tensors can be saved; convert it first");
  }
  const auto dtype = safetensors_dtype_of(tensor.scalar_type());
  if (!dtype) {
    throw Error(what + ": dtype " + std::string(c10::toString(tensor.scalar_type())) +
                " has no safetensors equivalent (supported: float64/32/16, bfloat16, float8_e4m3fn, float8_e5m2, "
                "int64/32/16/8, uint64/32/16/8, bool)");
  }
  PlannedTensor planned;
  planned.name = std::move(name);
  planned.tensor = tensor;
  planned.dtype = *dtype;
  planned.shape.assign(tensor.sizes().begin(), tensor.sizes().end());
  planned.bytes = static_cast<std::uint64_t>(tensor.numel()) * dtype_size(*dtype);
  return planned;
}

/// "<prefix>.safetensors", "<prefix>-DDDDD-of-DDDDD.safetensors" or "<prefix>.safetensors.index.json".
inline bool is_weight_file_name(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return false;
  name.remove_prefix(prefix.size());
  if (name == ".safetensors" || name == ".safetensors.index.json") return true;
  constexpr std::string_view pattern = "-DDDDD-of-DDDDD.safetensors";
  if (name.size() != pattern.size()) return false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const bool digit = name[i] >= '0' && name[i] <= '9';
    if (pattern[i] == 'D' ? !digit : name[i] != pattern[i]) return false;
  }
  return true;
}

template <class Range>
NamedTensors to_named_tensors(const Range& tensors) {
  NamedTensors result;
  for (const auto& item : tensors) {
    if constexpr (requires { item.key(); item.value(); }) {
      result.emplace_back(std::string(item.key()), item.value());  // torch::OrderedDict items
    } else {
      result.emplace_back(std::string(item.first), item.second);
    }
  }
  return result;
}

inline std::string json_string(const std::string& text, const std::string& where, std::string_view what) {
  try {
    return nlohmann::json(text).dump();
  } catch (const nlohmann::json::exception&) {
    throw Error(where + ": " + std::string(what) + " is not valid UTF-8; names and metadata must be UTF-8 text");
  }
}

/// Sorts `tensors` into the reference writer's order (descending dtype, then name: every tensor
/// stays aligned to its element size) and returns the header, padded with spaces to a multiple
/// of 8 bytes, exactly as safetensors' serialize does.
inline std::string safetensors_header_text(std::vector<PlannedTensor>& tensors, const SafetensorsMetadata& metadata,
                                           const std::string& where) {
  std::sort(tensors.begin(), tensors.end(), [](const PlannedTensor& a, const PlannedTensor& b) {
    return a.dtype != b.dtype ? a.dtype > b.dtype : a.name < b.name;
  });
  for (std::size_t i = 1; i < tensors.size(); ++i) {
    if (tensors[i].name == tensors[i - 1].name) {
      throw Error(detail::tensor_where(where, tensors[i].name) + ": the name is given twice; names must be unique");
    }
  }
  std::string text = "{";
  if (!metadata.empty()) {
    text += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) text += ',';
      text += json_string(key, where, "a metadata key");
      text += ':';
      text += json_string(value, where, "metadata value of \"" + key + "\"");
      first = false;
    }
    text += '}';
  }
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (i != 0 || !metadata.empty()) text += ',';
    text += json_string(t.name, where, "a tensor name");
    text += ":{\"dtype\":\"";
    text += dtype_name(t.dtype);
    text += "\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d != 0) text += ',';
      text += std::to_string(t.shape[d]);
    }
    text += "],\"data_offsets\":[";
    text += std::to_string(offset);
    text += ',';
    text += std::to_string(offset + t.bytes);
    text += "]}";
    offset += t.bytes;
  }
  text += '}';
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

/// Writes one file (atomically): header, then each tensor moved to the CPU one at a time.
inline void write_safetensors_file(const std::filesystem::path& path, std::vector<PlannedTensor> tensors,
                                   const SafetensorsMetadata& metadata) {
  const std::string header = safetensors_header_text(tensors, metadata, path.string());
  write_file_atomically(path, [&](AtomicFileWriter& file) {
    const std::uint64_t length = header.size();
    file.write(&length, sizeof length);  // little-endian (checked in safetensors_header.hpp)
    file.write(header);
    for (auto& planned : tensors) {
      if (planned.bytes == 0) continue;
      const at::Tensor source = planned.tensor.defined() ? planned.tensor : planned.produce();
      // a streamed tensor must be what its header entry promised
      if (!source.defined() || !source.sizes().equals(planned.shape) ||
          safetensors_dtype_of(source.scalar_type()) != planned.dtype) {
        throw Error(detail::tensor_where(path.string(), planned.name) + ": the tensor made for writing is " +
                    (source.defined() ? std::string(c10::toString(source.scalar_type())) + " " +
                                            detail::shape_text({source.sizes().begin(), source.sizes().end()})
                                      : std::string("undefined")) +
                    ", not the " + std::string(dtype_name(planned.dtype)) + " " + detail::shape_text(planned.shape) +
                    " announced");
      }
      at::Tensor cpu;
      try {
        cpu = source.detach().cpu().resolve_neg().contiguous();
      } catch (const c10::Error& e) {
        throw Error(detail::tensor_where(path.string(), planned.name) +
                    ": cannot copy the tensor to the CPU: " + e.what_without_backtrace());
      }
      file.write(cpu.data_ptr(), planned.bytes);
      planned.tensor = at::Tensor();  // let a CPU copy of a large GPU tensor go before the next
    }
  });
}

}  // namespace detail

/// Writes `tensors` into one .safetensors file, atomically, byte-identical to what the reference
/// safetensors.torch.save_file writes for the same tensors and metadata (with at most one
/// metadata key: the reference orders several keys by hash). Tensors may live on any device, in
/// any layout; each is copied to the CPU (contiguous) just before its bytes are written.
/// An empty `metadata` omits "__metadata__". Tied weights: pass only the names you want stored.
inline void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                             const SafetensorsMetadata& metadata = {{"format", "pt"}}) {
  std::vector<detail::PlannedTensor> planned;
  planned.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) planned.push_back(detail::plan_tensor(name, tensor, path.string()));
  detail::write_safetensors_file(path, std::move(planned), metadata);
}

/// save_safetensors for any range of (name, tensor) pairs or torch::OrderedDict items.
template <class Range>
  requires(!std::is_same_v<std::remove_cvref_t<Range>, NamedTensors>)
void save_safetensors(const std::filesystem::path& path, const Range& tensors,
                      const SafetensorsMetadata& metadata = {{"format", "pt"}}) {
  save_safetensors(path, detail::to_named_tensors(tensors), metadata);
}

/// What save_sharded_safetensors wrote.
struct ShardedSaveResult {
  /// The weight files, in shard order.
  std::vector<std::filesystem::path> files;
  /// The index file, or an empty path when everything fit in "<prefix>.safetensors".
  std::filesystem::path index;
  /// Bytes of tensor data in all files (the index's metadata.total_size).
  std::uint64_t total_size = 0;
};

namespace detail {

/// save_sharded_safetensors' work once every tensor is planned (names checked unique).
inline ShardedSaveResult write_sharded(const std::filesystem::path& folder, std::vector<PlannedTensor> planned,
                                       const ShardOptions& options) {
  if (options.max_shard_bytes == 0) throw Error("ShardOptions::max_shard_bytes: expected > 0, found 0");
  if (!detail::is_plain_file_name(options.prefix)) {
    throw Error("ShardOptions::prefix: expected a plain file name stem such as \"model\", found \"" + options.prefix + "\"");
  }
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) throw Error(folder.string() + ": cannot create the folder: " + ec.message());

  std::set<std::string_view> seen;
  for (const auto& t : planned) {
    if (!seen.insert(t.name).second) {
      throw Error(detail::tensor_where(folder.string(), t.name) + ": the name is given twice; names must be unique");
    }
  }

  // huggingface_hub/serialization/_base.py, split_state_dict_into_shards_factory.
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t current_size = 0;
  ShardedSaveResult result;
  std::uint64_t total_parameters = 0;
  for (std::size_t i = 0; i < planned.size(); ++i) {
    const auto size = planned[i].bytes;
    result.total_size += size;
    total_parameters += planned[i].numel();
    if (size > options.max_shard_bytes) {
      shards.push_back({i});
      continue;
    }
    if (current_size + size > options.max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(i);
    current_size += size;
  }
  if (!current.empty()) shards.push_back(std::move(current));

  const auto shard_name = [&](std::size_t i) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%05zu-of-%05zu", i + 1, shards.size());
    return options.prefix + suffix + ".safetensors";
  };
  std::set<std::string> written;
  if (shards.size() <= 1) {
    const auto path = folder / (options.prefix + ".safetensors");
    detail::write_safetensors_file(path, std::move(planned), options.metadata);
    result.files.push_back(path);
    written.insert(path.filename().string());
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    for (std::size_t s = 0; s < shards.size(); ++s) {
      const auto name = shard_name(s);
      std::vector<detail::PlannedTensor> shard;
      for (auto i : shards[s]) {
        weight_map[planned[i].name] = name;
        shard.push_back(std::move(planned[i]));
      }
      detail::write_safetensors_file(folder / name, std::move(shard), options.metadata);
      result.files.push_back(folder / name);
      written.insert(name);
    }
    const nlohmann::json index = {
        {"metadata", {{"total_parameters", total_parameters}, {"total_size", result.total_size}}},
        {"weight_map", std::move(weight_map)}};
    result.index = folder / (options.prefix + ".safetensors.index.json");
    // json.dumps(index, indent=2, sort_keys=True) + "\n": ASCII-escaped like Python's default.
    write_file_atomically(result.index, index.dump(2, ' ', /*ensure_ascii=*/true) + "\n");
    written.insert(result.index.filename().string());
  }

  bool removed = false;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const auto name = entry.path().filename().string();
    if (entry.is_regular_file() && !written.contains(name) && detail::is_weight_file_name(name, options.prefix)) {
      std::filesystem::remove(entry.path(), ec);
      removed = true;
    }
  }
  if (removed) fsync_directory(folder);
  return result;
}

}  // namespace detail

/// Writes a Hugging Face checkpoint's weights into `folder` (created if needed) the way
/// transformers' save_pretrained does (huggingface_hub split_torch_state_dict_into_shards):
/// tensors are taken in the given order; a tensor larger than max_shard_bytes gets a shard of
/// its own (placed before the shard being filled); otherwise a new shard starts when the next
/// tensor would overflow the current one. One shard -> "<prefix>.safetensors"; several ->
/// "<prefix>-0000i-of-0000N.safetensors" plus "<prefix>.safetensors.index.json"
/// ({"metadata": {"total_parameters", "total_size"}, "weight_map"}, sorted keys, indent 2).
/// Each file is written atomically; weight files of an earlier save with this prefix that the
/// new set does not overwrite are deleted afterwards (a stale model.safetensors would otherwise
/// shadow a new index: transformers loads it first). The folder as a whole is not replaced
/// atomically: to make a checkpoint crash-safe, write it into a StagedDirectory and publish it.
/// Unlike huggingface_hub, tensors sharing storage are not grouped into one shard.
inline ShardedSaveResult save_sharded_safetensors(const std::filesystem::path& folder, const NamedTensors& tensors,
                                                  const ShardOptions& options = {}) {
  std::vector<detail::PlannedTensor> planned;
  planned.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) planned.push_back(detail::plan_tensor(name, tensor, folder.string()));
  return detail::write_sharded(folder, std::move(planned), options);
}

/// What a streamed tensor will be: its name, dtype and shape, known before its data exists.
struct TensorSpec {
  std::string name;
  c10::ScalarType dtype = c10::kFloat;
  std::vector<std::int64_t> shape;
};

/// save_sharded_safetensors without the tensors in memory: the files, shards and index are
/// planned from `specs` (the same split, names and bytes as for tensors of those shapes), and
/// produce(i) is called for specs[i] just before its bytes are written, so at most one tensor
/// (and its CPU copy) is held at a time. A produced tensor of another dtype or shape than its
/// spec is an error naming it; the file being written is then left unpublished.
inline ShardedSaveResult save_sharded_safetensors(const std::filesystem::path& folder, const std::vector<TensorSpec>& specs,
                                                  const std::function<at::Tensor(std::size_t)>& produce,
                                                  const ShardOptions& options = {}) {
  std::vector<detail::PlannedTensor> planned;
  planned.reserve(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    // plan from an empty tensor of the spec's dtype: the same checks (dtype, reserved names)
    auto t = detail::plan_tensor(spec.name, at::empty({0}, at::TensorOptions().dtype(spec.dtype)), folder.string());
    for (auto d : spec.shape)
      if (d < 0) throw Error(detail::tensor_where(folder.string(), spec.name) + ": negative dimension in the shape");
    t.tensor = at::Tensor();
    t.shape = spec.shape;
    t.bytes = t.numel() * dtype_size(t.dtype);
    t.produce = [&produce, i] { return produce(i); };
    planned.push_back(std::move(t));
  }
  return detail::write_sharded(folder, std::move(planned), options);
}

/// save_sharded_safetensors for any range of (name, tensor) pairs or torch::OrderedDict items.
template <class Range>
  requires(!std::is_same_v<std::remove_cvref_t<Range>, NamedTensors>)
ShardedSaveResult save_sharded_safetensors(const std::filesystem::path& folder, const Range& tensors,
                                           const ShardOptions& options = {}) {
  return save_sharded_safetensors(folder, detail::to_named_tensors(tensors), options);
}

}  // namespace grpo::io
