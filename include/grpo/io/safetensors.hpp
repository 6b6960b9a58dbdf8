#pragma once
// safetensors checkpoints in and out, the Hugging Face way:
//   SafetensorsFile         one memory-mapped .safetensors file with a validated header
//   SafetensorsCheckpoint   a file, or a folder with model.safetensors or with shards listed by
//                           model.safetensors.index.json (what save_pretrained writes)
//   save_safetensors        one file, byte-identical to the reference writer's output
//   save_sharded_safetensors  model-0000i-of-0000N.safetensors + index, split like save_pretrained
// Every file is written atomically (grpo/io/atomic_file.hpp).
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
    const auto rank = static_cast<std::int64_t>(entry.shape.size());
    if (dim < 0 || dim >= rank || start < 0 || length < 0 || start + length > entry.shape[static_cast<std::size_t>(dim)])
      throw Error(fmt::format("{}: slice [{}, {}) of dimension {} is outside the tensor's shape {}", where, start,
                              start + length, dim, detail::shape_text(entry.shape)));
    if (entry.dtype == SafetensorsDtype::boolean) return file.tensor(name, options).narrow(dim, start, length).contiguous();
    const auto file_type = scalar_type_of(entry.dtype);
    const auto bytes = file.bytes(name);
    try {
      // A view of the mapped bytes (read, never written), narrowed before anything is copied.
      const at::Tensor view = at::from_blob(const_cast<std::byte*>(bytes.data()), entry.shape,
                                            at::TensorOptions().dtype(file_type))
                                  .narrow(dim, start, length);
      return view.to(options.device, options.dtype.value_or(file_type), /*non_blocking=*/false, /*copy=*/true)
          .contiguous();
    } catch (const c10::Error& e) {
      throw Error(where + ": cannot create the slice on " + options.device.str() + ": " + e.what_without_backtrace());
    }
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

// ---------------------------------------------------------------------------------------------
// Writing

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
  at::Tensor tensor;
  SafetensorsDtype dtype = SafetensorsDtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t bytes = 0;
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
      at::Tensor cpu;
      try {
        cpu = planned.tensor.detach().cpu().resolve_neg().contiguous();
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
  if (options.max_shard_bytes == 0) throw Error("ShardOptions::max_shard_bytes: expected > 0, found 0");
  if (!detail::is_plain_file_name(options.prefix)) {
    throw Error("ShardOptions::prefix: expected a plain file name stem such as \"model\", found \"" + options.prefix + "\"");
  }
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) throw Error(folder.string() + ": cannot create the folder: " + ec.message());

  std::vector<detail::PlannedTensor> planned;
  planned.reserve(tensors.size());
  std::set<std::string_view> seen;
  for (const auto& [name, tensor] : tensors) {
    planned.push_back(detail::plan_tensor(name, tensor, folder.string()));
    if (!seen.insert(planned.back().name).second) {
      throw Error(detail::tensor_where(folder.string(), name) + ": the name is given twice; names must be unique");
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
    total_parameters += static_cast<std::uint64_t>(planned[i].tensor.numel());
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

/// save_sharded_safetensors for any range of (name, tensor) pairs or torch::OrderedDict items.
template <class Range>
  requires(!std::is_same_v<std::remove_cvref_t<Range>, NamedTensors>)
ShardedSaveResult save_sharded_safetensors(const std::filesystem::path& folder, const Range& tensors,
                                           const ShardOptions& options = {}) {
  return save_sharded_safetensors(folder, detail::to_named_tensors(tensors), options);
}

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
