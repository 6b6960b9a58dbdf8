#pragma once
// safetensors checkpoints in, the Hugging Face way:
//   SafetensorsFile         one memory-mapped .safetensors file with a validated header
//   SafetensorsCheckpoint   a file, or a folder with model.safetensors or with shards listed by
//                           model.safetensors.index.json (what save_pretrained writes)
// The writers are in grpo/io/safetensors_writer.hpp; grpo/io/safetensors.hpp includes both.
//
// Loading copies: a returned tensor never aliases the mapping. Parameters are written in place by
// optimisers, and a mapped page is read-only (a write would fault) or shared with the page cache;
// a copy also lets the file be replaced or closed at any time. The copy is the one the target
// device or dtype needs anyway: CPU + same dtype is one pread() into the new tensor (the file
// descriptor stays open beside the mapping; measured faster than copying out of the mapping);
// a dtype conversion on the CPU reads the mapped pages directly; a CUDA target gets one
// host-to-device copy straight from the mapped pages, then converts the dtype on the device.
// Caveat of mmap: if another process truncates the file while it is mapped, reading the lost
// pages raises SIGBUS (pread reports it as an error); do not rewrite checkpoints in place (the
// writers here never do).

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"
#include "grpo/io/json.hpp"
#include "grpo/io/safetensors_header.hpp"

namespace grpo::io {

/// Where and as what a loaded tensor is created.
struct TensorLoadOptions {
  /// Device of the result (default CPU); a CUDA device gets one host-to-device copy.
  c10::Device device = c10::Device(c10::kCPU);
  /// Element type of the result; std::nullopt (default) keeps the file's dtype.
  std::optional<c10::ScalarType> dtype = std::nullopt;
};

/// String metadata stored in a file's "__metadata__" (transformers expects {"format": "pt"}).
using SafetensorsMetadata = std::map<std::string, std::string>;

/// Tensors in the order they should be written (sharding follows this order).
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// The torch element type of a safetensors dtype.
inline c10::ScalarType scalar_type_of(SafetensorsDtype dtype) noexcept {
  switch (dtype) {
    case SafetensorsDtype::boolean: return c10::ScalarType::Bool;
    case SafetensorsDtype::u8: return c10::ScalarType::Byte;
    case SafetensorsDtype::i8: return c10::ScalarType::Char;
    case SafetensorsDtype::f8_e5m2: return c10::ScalarType::Float8_e5m2;
    case SafetensorsDtype::f8_e4m3: return c10::ScalarType::Float8_e4m3fn;
    case SafetensorsDtype::i16: return c10::ScalarType::Short;
    case SafetensorsDtype::u16: return c10::ScalarType::UInt16;
    case SafetensorsDtype::f16: return c10::ScalarType::Half;
    case SafetensorsDtype::bf16: return c10::ScalarType::BFloat16;
    case SafetensorsDtype::i32: return c10::ScalarType::Int;
    case SafetensorsDtype::u32: return c10::ScalarType::UInt32;
    case SafetensorsDtype::f32: return c10::ScalarType::Float;
    case SafetensorsDtype::f64: return c10::ScalarType::Double;
    case SafetensorsDtype::i64: return c10::ScalarType::Long;
    case SafetensorsDtype::u64: return c10::ScalarType::UInt64;
  }
  return c10::ScalarType::Undefined;
}

/// The safetensors dtype of a torch element type, or std::nullopt (complex, quantized, ...).
inline std::optional<SafetensorsDtype> safetensors_dtype_of(c10::ScalarType type) noexcept {
  for (std::uint8_t i = 0; i <= static_cast<std::uint8_t>(SafetensorsDtype::u64); ++i) {
    if (scalar_type_of(static_cast<SafetensorsDtype>(i)) == type) return static_cast<SafetensorsDtype>(i);
  }
  return std::nullopt;
}

namespace detail {

/// A read-only private mapping of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path) {
    int fd = -1;
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block the open: fstat refuses it next
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw Error(path.string() + ": cannot open for reading: " + errno_text(errno));
    struct ::stat status {};
    if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
      const int code = errno;
      ::close(fd);
      throw Error(path.string() + ": expected a regular file" +
                  (S_ISDIR(status.st_mode) ? std::string(", found a folder") : ": " + errno_text(code)));
    }
    size_ = static_cast<std::size_t>(status.st_size);
    if (size_ > 0) {
      void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (address == MAP_FAILED) {
        const int code = errno;
        ::close(fd);
        throw Error(fmt::format("{}: cannot memory-map {} bytes: {}", path.string(), size_, errno_text(code)));
      }
      data_ = static_cast<const std::byte*>(address);
    }
    fd_ = fd;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    ::close(fd_);
  }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

  /// Copies bytes [offset, offset + size) of the file into `out` with pread: one kernel copy
  /// from the page cache, without faulting the mapping's pages in. False if the file shrank.
  bool read_into(void* out, std::uint64_t offset, std::uint64_t size) const noexcept {
    auto* target = static_cast<char*>(out);
    while (size > 0) {
      const ::ssize_t n = ::pread(fd_, target, size, static_cast<::off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      target += n;
      offset += static_cast<std::uint64_t>(n);
      size -= static_cast<std::uint64_t>(n);
    }
    return true;
  }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
};

/// Rejects BOOL bytes other than 0 and 1: torch's bool must hold exactly those.
inline void check_bool_bytes(std::span<const std::byte> bytes, const std::string& where) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto value = std::to_integer<unsigned>(bytes[i]);
    if (value > 1) {
      throw Error(fmt::format("{}: BOOL element {} is {}, expected 0 or 1; the data is corrupt", where, i, value));
    }
  }
}

/// A new tensor holding the little-endian bytes of `info` (`bytes` inside `file`'s mapping) on
/// the target device and dtype.
inline at::Tensor tensor_from_bytes(const MappedFile& file, std::span<const std::byte> bytes, std::uint64_t file_offset,
                                    const SafetensorsTensorInfo& info, const TensorLoadOptions& options,
                                    const std::string& where) {
  const auto file_type = scalar_type_of(info.dtype);
  const auto target_type = options.dtype.value_or(file_type);
  try {
    if (options.device.is_cpu() && target_type == file_type) {
      // pread, not memcpy from the mapping: the same single copy, ~20% faster on a warm page
      // cache (no page faults; benchmarks/safetensors_load_bench.cpp), and a file that shrank
      // since open() gives an error instead of SIGBUS.
      at::Tensor result = at::empty(info.shape, at::TensorOptions().dtype(file_type));
      if (!file.read_into(result.data_ptr(), file_offset, bytes.size())) {
        throw Error(where + ": the file is shorter than when it was opened (was it overwritten in place?)");
      }
      if (info.dtype == SafetensorsDtype::boolean) {
        check_bool_bytes({static_cast<const std::byte*>(result.data_ptr()), bytes.size()}, where);
      }
      return result;
    }
    if (info.dtype == SafetensorsDtype::boolean) check_bool_bytes(bytes, where);
    if (bytes.empty()) return at::empty(info.shape, at::TensorOptions().dtype(target_type).device(options.device));
    // A view of the mapped bytes, alive only inside this function; read, never written. The
    // conversion or the host-to-device copy reads the mapping directly: no intermediate copy.
    at::Tensor view = at::from_blob(const_cast<std::byte*>(bytes.data()), info.shape,
                                    at::TensorOptions().dtype(file_type));
    if (options.device.is_cpu()) return view.to(target_type, /*non_blocking=*/false, /*copy=*/true);
    at::Tensor on_device = view.to(options.device, file_type, /*non_blocking=*/false, /*copy=*/true);
    return target_type == file_type ? on_device : on_device.to(target_type);
  } catch (const c10::Error& e) {
    throw Error(where + ": cannot create the tensor on " + options.device.str() + " as " +
                std::string(c10::toString(target_type)) + ": " + e.what_without_backtrace());
  }
}

}  // namespace detail

/// One .safetensors file, memory-mapped (read-only, private) with its header validated at open.
/// Cheap to copy (the mapping and the header are shared); const members may be called from
/// several threads at once (loads use pread and read-only mappings).
class SafetensorsFile {
 public:
  /// Maps `path` and validates its header (see grpo/io/safetensors_header.hpp). Throws
  /// grpo::Error naming the file, the tensor and what was expected.
  static SafetensorsFile open(const std::filesystem::path& path) {
    auto state = std::make_shared<State>();
    state->path = path;
    state->mapping = std::make_unique<detail::MappedFile>(path);
    state->header = parse_safetensors_header(state->mapping->bytes(), path.string());
    SafetensorsFile file;
    file.state_ = std::move(state);
    return file;
  }

  /// The file's path.
  const std::filesystem::path& path() const noexcept { return state_->path; }
  /// The validated header (entries in data order).
  const SafetensorsHeader& header() const noexcept { return state_->header; }
  /// "__metadata__" (empty if absent).
  const SafetensorsMetadata& metadata() const noexcept { return state_->header.metadata; }

  /// Tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    result.reserve(state_->header.index.size());
    for (const auto& entry : state_->header.index) result.push_back(entry.first);
    return result;
  }
  /// Whether the file holds a tensor called `name`.
  bool contains(std::string_view name) const { return state_->header.find(name) != nullptr; }

  /// dtype, shape and byte range of `name`; throws "<file>: missing tensor '<name>'".
  const SafetensorsTensorInfo& info(std::string_view name) const {
    const auto* info = state_->header.find(name);
    if (info == nullptr) {
      throw Error(fmt::format("{}: missing tensor '{}' (the file has {} tensors)", path().string(), name,
                              state_->header.tensors.size()));
    }
    return *info;
  }

  /// The raw little-endian bytes of `name` inside the mapping (valid while this object or a copy lives).
  std::span<const std::byte> bytes(std::string_view name) const {
    const auto& entry = info(name);
    return state_->mapping->bytes().subspan(state_->header.data_offset() + entry.data_begin, entry.byte_size());
  }

  /// A new tensor holding `name`, on options.device as options.dtype (never aliasing the mapping).
  /// BOOL data other than 0/1 is rejected.
  at::Tensor tensor(std::string_view name, const TensorLoadOptions& options = {}) const {
    const auto& entry = info(name);
    return detail::tensor_from_bytes(*state_->mapping, bytes(name), state_->header.data_offset() + entry.data_begin,
                                     entry, options, detail::tensor_where(path().string(), name));
  }

  /// The slice [start, start + length) of dimension `dim` of `name`: only the slice is copied
  /// (to options.device, as options.dtype), never the whole tensor; the whole range is read as
  /// tensor() reads it. A slice outside the tensor's shape is an error naming it.
  at::Tensor tensor_slice(std::string_view name, std::int64_t dim, std::int64_t start, std::int64_t length,
                          const TensorLoadOptions& options = {}) const {
    const auto& entry = info(name);
    const auto where = detail::tensor_where(path().string(), name);
    const auto rank = static_cast<std::int64_t>(entry.shape.size());
    if (dim < 0 || dim >= rank || start < 0 || length < 0 || start + length > entry.shape[static_cast<std::size_t>(dim)])
      throw Error(fmt::format("{}: slice [{}, {}) of dimension {} is outside the tensor's shape {}", where, start,
                              start + length, dim, detail::shape_text(entry.shape)));
    if (start == 0 && length == entry.shape[static_cast<std::size_t>(dim)]) return tensor(name, options);
    if (entry.dtype == SafetensorsDtype::boolean) return tensor(name, options).narrow(dim, start, length).contiguous();
    const auto file_type = scalar_type_of(entry.dtype);
    const auto data = bytes(name);
    try {
      // A view of the mapped bytes (read, never written), narrowed before anything is copied.
      const at::Tensor view = at::from_blob(const_cast<std::byte*>(data.data()), entry.shape,
                                            at::TensorOptions().dtype(file_type))
                                  .narrow(dim, start, length);
      return view.to(options.device, options.dtype.value_or(file_type), /*non_blocking=*/false, /*copy=*/true)
          .contiguous();
    } catch (const c10::Error& e) {
      throw Error(where + ": cannot create the slice on " + options.device.str() + ": " + e.what_without_backtrace());
    }
  }

 private:
  struct State {
    std::filesystem::path path;
    std::unique_ptr<detail::MappedFile> mapping;
    SafetensorsHeader header;
  };
  SafetensorsFile() = default;
  std::shared_ptr<const State> state_;
};

namespace detail {

/// A shard name from an index must be a plain file name in the checkpoint's folder.
inline bool is_plain_file_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\\') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

}  // namespace detail

/// A checkpoint: one .safetensors file or a Hugging Face folder. Names are unique across shards.
class SafetensorsCheckpoint {
 public:
  /// `path` is a .safetensors file, a model.safetensors.index.json file, or a folder holding
  /// model.safetensors (preferred, as transformers does) or model.safetensors.index.json.
  /// For an index, every shard is opened once and the index must match the shards exactly:
  /// a name listed but absent from its shard, present in a shard but not listed there, or a
  /// missing shard file are errors naming the index, the shard and the tensor.
  static SafetensorsCheckpoint open(const std::filesystem::path& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (std::filesystem::is_directory(status)) {
      if (std::filesystem::is_regular_file(path / "model.safetensors", ec)) return from_file(path / "model.safetensors");
      if (std::filesystem::is_regular_file(path / "model.safetensors.index.json", ec)) {
        return from_index(path / "model.safetensors.index.json");
      }
      std::string found;
      int listed = 0;
      for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (listed++ == 8) {
          found += ", ...";
          break;
        }
        found += (found.empty() ? "" : ", ") + entry.path().filename().string();
      }
      const bool has_bin = std::filesystem::exists(path / "pytorch_model.bin", ec) ||
                           std::filesystem::exists(path / "pytorch_model.bin.index.json", ec);
      throw Error(path.string() + ": expected model.safetensors or model.safetensors.index.json in the folder, found " +
                  (found.empty() ? std::string("an empty folder") : found) +
                  (has_bin ? "; PyTorch .bin checkpoints are not supported: re-save the model with "
                             "save_pretrained(..., safe_serialization=True)"
                           : ""));
    }
    if (!std::filesystem::exists(status)) throw Error(path.string() + ": no such file or folder");
    const auto name = path.filename().string();
    if (name.size() > 11 && name.ends_with(".index.json")) return from_index(path);
    return from_file(path);
  }

  /// What open() was given.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// The files (one, or the shards in index order of first appearance).
  const std::vector<SafetensorsFile>& files() const noexcept { return files_; }

  /// Tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    result.reserve(where_.size());
    for (const auto& entry : where_) result.push_back(entry.first);
    return result;
  }
  /// Whether the checkpoint holds `name`.
  bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
  /// Number of tensors.
  std::size_t size() const noexcept { return where_.size(); }

  /// The file holding `name`; throws "<checkpoint>: missing tensor '<name>'".
  const SafetensorsFile& file_of(std::string_view name) const { return files_[locate(name)]; }
  /// dtype, shape and byte range of `name` (in its file).
  const SafetensorsTensorInfo& info(std::string_view name) const { return file_of(name).info(name); }

  /// Loads `name` to options.device as options.dtype.
  at::Tensor load(std::string_view name, const TensorLoadOptions& options = {}) const {
    return file_of(name).tensor(name, options);
  }

  /// Loads `name` after checking its shape (before reading any data). Throws
  /// "<checkpoint>: missing tensor '<name>'" or "<file>: tensor '<name>': expected shape [a, b], found [c, d]".
  at::Tensor require(std::string_view name, c10::IntArrayRef expected_shape, const TensorLoadOptions& options = {}) const {
    const auto& file = file_of(name);
    const auto& entry = file.info(name);
    if (!std::equal(entry.shape.begin(), entry.shape.end(), expected_shape.begin(), expected_shape.end())) {
      throw Error(detail::tensor_where(file.path().string(), name) + ": expected shape " +
                  detail::shape_text(std::vector<std::int64_t>(expected_shape.begin(), expected_shape.end())) +
                  ", found " + detail::shape_text(entry.shape) +
                  " (does config.json match these weights?)");
    }
    return file.tensor(name, options);
  }

  /// Loads the slice [start, start + length) of dimension `dim` of `name` after checking the
  /// whole tensor's shape is `expected_shape`: only the slice is read from the mapping and copied
  /// (to options.device, as options.dtype), never the whole tensor (tensor-parallel loading).
  at::Tensor require_slice(std::string_view name, c10::IntArrayRef expected_shape, std::int64_t dim, std::int64_t start,
                           std::int64_t length, const TensorLoadOptions& options = {}) const {
    const auto& file = file_of(name);
    const auto& entry = file.info(name);
    const auto where = detail::tensor_where(file.path().string(), name);
    if (!std::equal(entry.shape.begin(), entry.shape.end(), expected_shape.begin(), expected_shape.end())) {
      throw Error(where + ": expected shape " +
                  detail::shape_text(std::vector<std::int64_t>(expected_shape.begin(), expected_shape.end())) +
                  ", found " + detail::shape_text(entry.shape) + " (does config.json match these weights?)");
    }
    return file.tensor_slice(name, dim, start, length, options);
  }

  /// Every tensor, loaded with `options`.
  std::unordered_map<std::string, at::Tensor> load_all(const TensorLoadOptions& options = {}) const {
    std::unordered_map<std::string, at::Tensor> result;
    result.reserve(where_.size());
    for (const auto& [name, file_index] : where_) result.emplace(name, files_[file_index].tensor(name, options));
    return result;
  }

 private:
  static SafetensorsCheckpoint from_file(const std::filesystem::path& file) {
    SafetensorsCheckpoint checkpoint;
    checkpoint.path_ = file;
    checkpoint.files_.push_back(SafetensorsFile::open(file));
    for (const auto& entry : checkpoint.files_.front().header().tensors) checkpoint.where_.emplace(entry.name, 0);
    return checkpoint;
  }

  static SafetensorsCheckpoint from_index(const std::filesystem::path& index_path) {
    const std::string where = index_path.string();
    const auto index = read_json_file(index_path, std::uintmax_t{1} << 30);
    if (!index.is_object()) throw Error(where + ": expected a JSON object, found " + std::string(index.type_name()));
    auto map = index.find("weight_map");
    if (map == index.end() || !map->is_object()) {
      throw Error(where + ": expected an object field \"weight_map\" (tensor name -> shard file), found " +
                  (map == index.end() ? std::string("none") : std::string(map->type_name())));
    }
    SafetensorsCheckpoint checkpoint;
    checkpoint.path_ = index_path;
    const auto folder = detail::parent_folder(index_path);
    std::map<std::string, std::size_t> shard_index;
    std::vector<std::vector<std::string>> listed;  // per shard, the names the index puts there
    for (const auto& [name, shard] : map->items()) {
      if (!shard.is_string() || !detail::is_plain_file_name(shard.get_ref<const std::string&>())) {
        throw Error(where + ": weight_map[\"" + name + "\"]: expected a shard file name in the same folder, found " +
                    quote_json(shard));
      }
      const auto& shard_name = shard.get_ref<const std::string&>();
      auto [it, inserted] = shard_index.emplace(shard_name, checkpoint.files_.size());
      if (inserted) {
        const auto shard_path = folder / shard_name;
        std::error_code ec;
        if (!std::filesystem::is_regular_file(shard_path, ec)) {
          throw Error(where + ": shard '" + shard_name + "' (listed for tensor '" + name + "') does not exist in " +
                      folder.string() + "; the checkpoint is incomplete (download or copy the missing file)");
        }
        checkpoint.files_.push_back(SafetensorsFile::open(shard_path));
        listed.emplace_back();
      }
      const auto& file = checkpoint.files_[it->second];
      if (!file.contains(name)) {
        throw Error(where + ": tensor '" + name + "' is listed in shard '" + shard_name +
                    "' but that file does not hold it; the index and the shards do not match");
      }
      checkpoint.where_.emplace(name, it->second);
      listed[it->second].push_back(name);
    }
    for (std::size_t i = 0; i < checkpoint.files_.size(); ++i) {
      const auto& file = checkpoint.files_[i];
      if (listed[i].size() == file.header().tensors.size()) continue;
      std::sort(listed[i].begin(), listed[i].end());
      for (const auto& entry : file.header().tensors) {
        if (!std::binary_search(listed[i].begin(), listed[i].end(), entry.name)) {
          throw Error(where + ": shard '" + file.path().filename().string() + "' holds tensor '" + entry.name +
                      "', which the index does not list for that shard; the index and the shards do not match");
        }
      }
    }
    return checkpoint;
  }

  std::size_t locate(std::string_view name) const {
    auto it = where_.find(name);
    if (it == where_.end()) {
      throw Error(fmt::format("{}: missing tensor '{}' (the checkpoint has {} tensors)", path_.string(), name,
                              where_.size()));
    }
    return it->second;
  }

  SafetensorsCheckpoint() = default;

  std::filesystem::path path_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t, std::less<>> where_;  // name -> index into files_
};

/// The tensor `name` of a checkpoint folder for the parameter `param` (on its device, in its
/// dtype), for restoring a model's weights by name: a tensor the folder lacks or whose shape
/// differs is an error naming `folder` and the tensor.
inline at::Tensor load_parameter(const SafetensorsCheckpoint& checkpoint, const std::filesystem::path& folder,
                                 const std::string& name, const at::Tensor& param) {
  if (!checkpoint.contains(name)) {
    throw Error(folder.string() + ": missing tensor '" + name + "' of the policy; resume with the same model architecture");
  }
  const auto value = checkpoint.load(name, {.device = param.device(), .dtype = param.scalar_type()});
  if (!value.sizes().equals(param.sizes())) {
    throw Error(folder.string() + ": tensor '" + name + "' has the wrong shape for this policy");
  }
  return value;
}

}  // namespace grpo::io
