#pragma once
// The safetensors header parser, without ATen (the fuzz target and the checkpoint tools use it
// on raw bytes; grpo/io/safetensors.hpp adds memory mapping and tensors).
//
// Format (https://github.com/huggingface/safetensors, "Format"):
//   [8 bytes: N, little-endian u64] [N bytes: UTF-8 JSON header] [data section]
//   header = { "__metadata__": {string: string} (optional),
//              "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ... }
// with offsets relative to the start of the data section.
//
// Validation follows the reference implementation (safetensors 0.8, Metadata::validate) and is
// stricter where the reference would let a lying file through:
//   - N <= 100,000,000 (the reference's MAX_HEADER_SIZE) and 8 + N <= file size;
//   - the header is a JSON object (leading/trailing whitespace allowed, as the reference pads
//     with spaces; a NUL byte or any other byte after the object is an error, as in the
//     reference), parsed by io::parse_json's rules (io/json.hpp); nesting deeper than the format
//     needs, or a shape of rank > 64, is rejected before it can cost memory;
//   - dtype is a known name; shape entries are integers in [0, 2^63); the product of the non-zero
//     sizes fits in int64 (torch's limit, checked even for empty tensors) and numel * itemsize in
//     uint64; end - begin == numel * itemsize;
//   - sorted by (begin, end), the byte ranges tile the data section exactly: no overlap, no hole,
//     nothing after the last tensor. The spec says "The byte buffer needs to be entirely
//     indexed, and cannot contain holes. This prevents the creation of polyglot files", and the
//     reference rejects holes and trailing bytes, so holes are errors here too (not warnings);
//   - stricter than the reference: a duplicate key anywhere (the reference keeps the last one),
//     an unknown field in a tensor entry (the reference ignores it), a tensor named
//     "__metadata__" with tensor fields, are errors: each means the file is not what it claims.
// Every error is a grpo::Error naming the source, the tensor (if any), what was expected and
// what was found.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/json.hpp"

namespace grpo::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; grpo maps it without byte swapping");

/// Element types of safetensors files that grpo reads and writes. The enumerator order is the
/// reference writer's (safetensors' Dtype enum): it writes tensors by descending dtype, then by
/// name, which keeps every tensor aligned to its element size.
enum class SafetensorsDtype : std::uint8_t {
  boolean,   ///< "BOOL": one byte, 0 or 1
  u8,        ///< "U8"
  i8,        ///< "I8"
  f8_e5m2,   ///< "F8_E5M2": torch.float8_e5m2
  f8_e4m3,   ///< "F8_E4M3": torch.float8_e4m3fn
  i16,       ///< "I16"
  u16,       ///< "U16"
  f16,       ///< "F16": IEEE half
  bf16,      ///< "BF16": bfloat16
  i32,       ///< "I32"
  u32,       ///< "U32"
  f32,       ///< "F32"
  f64,       ///< "F64"
  i64,       ///< "I64"
  u64,       ///< "U64"
};

/// The name the format uses ("F32", "BF16", ...).
constexpr std::string_view dtype_name(SafetensorsDtype dtype) noexcept {
  constexpr std::string_view names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                        "BF16", "I32", "U32", "F32",     "F64",     "I64", "U64"};
  return names[static_cast<std::size_t>(dtype)];
}

/// Bytes per element.
constexpr std::size_t dtype_size(SafetensorsDtype dtype) noexcept {
  constexpr std::size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
  return sizes[static_cast<std::size_t>(dtype)];
}

/// The dtype called `name` in a header, or std::nullopt if grpo does not know it.
constexpr std::optional<SafetensorsDtype> parse_dtype_name(std::string_view name) noexcept {
  for (std::uint8_t i = 0; i <= static_cast<std::uint8_t>(SafetensorsDtype::u64); ++i) {
    if (dtype_name(static_cast<SafetensorsDtype>(i)) == name) return static_cast<SafetensorsDtype>(i);
  }
  return std::nullopt;
}

/// One tensor entry of a header.
struct SafetensorsTensorInfo {
  /// The tensor's name ("model.layers.0.mlp.up_proj.weight").
  std::string name;
  /// Element type.
  SafetensorsDtype dtype = SafetensorsDtype::f32;
  /// Sizes, outermost first; empty for a 0-d tensor.
  std::vector<std::int64_t> shape;
  /// Byte range [data_begin, data_end) relative to the start of the data section.
  std::uint64_t data_begin = 0;
  /// End of the byte range (exclusive).
  std::uint64_t data_end = 0;

  /// Number of elements (1 for a 0-d tensor).
  std::uint64_t numel() const noexcept {
    std::uint64_t n = 1;
    for (auto size : shape) n *= static_cast<std::uint64_t>(size);
    return n;
  }
  /// Bytes of data.
  std::uint64_t byte_size() const noexcept { return data_end - data_begin; }
};

/// A validated header.
struct SafetensorsHeader {
  /// N, the JSON header's length in bytes (the data section starts at 8 + N).
  std::uint64_t header_size = 0;
  /// Bytes of the data section (file size - 8 - N).
  std::uint64_t data_size = 0;
  /// The entries, in data order (sorted by data_begin).
  std::vector<SafetensorsTensorInfo> tensors;
  /// "__metadata__" (empty if absent or null).
  std::map<std::string, std::string> metadata;
  /// Name -> index into `tensors`.
  std::map<std::string, std::size_t, std::less<>> index;

  /// Offset of the data section from the start of the file.
  std::uint64_t data_offset() const noexcept { return 8 + header_size; }
  /// The entry called `name`, or nullptr.
  const SafetensorsTensorInfo* find(std::string_view name) const {
    auto it = index.find(name);
    return it == index.end() ? nullptr : &tensors[it->second];
  }
};

/// The largest header accepted: the reference implementation's MAX_HEADER_SIZE.
inline constexpr std::uint64_t max_safetensors_header_size = 100'000'000;
/// The largest rank accepted (torch supports 64 dimensions at most).
inline constexpr std::size_t max_safetensors_rank = 64;

namespace detail {

/// "[2, 3]" for error messages.
inline std::string shape_text(std::span<const std::int64_t> shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

struct HeaderShapeError {
  std::string message;
};

/// Parses the JSON text of a header with bounded nesting and no duplicate keys (nlohmann keeps
/// the last of two equal keys silently; the reference does too).
inline nlohmann::json parse_header_json(std::string_view text, const std::string& where) {
  // depth as nlohmann counts it: top-level keys at 1, tensor-entry keys and metadata keys at 2,
  // shape/offset elements at 3. keys_at[d] holds the keys seen in the object open at depth d - 1.
  std::unordered_set<std::string> keys_at[3];
  std::size_t elements_in_array = 0;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) -> bool {
    using event_t = nlohmann::json::parse_event_t;
    const auto d = static_cast<std::size_t>(depth);
    switch (event) {
      case event_t::object_start:
      case event_t::array_start:
        if (d >= 3) {
          throw HeaderShapeError{"JSON nested deeper than the format allows (an object or array inside "
                                 "a shape, an offset pair or a metadata value)"};
        }
        if (event == event_t::object_start && d + 1 < 3) keys_at[d + 1].clear();
        elements_in_array = 0;
        break;
      case event_t::key:
        if (d < 3 && !keys_at[d].insert(parsed.get<std::string>()).second) {
          throw HeaderShapeError{"duplicate key " + quote_json(parsed) +
                                 (d == 1 ? "" : " inside an entry") + " (the file is ambiguous; re-export it)"};
        }
        break;
      case event_t::value:
        if (d == 3 && ++elements_in_array > 2 * max_safetensors_rank) {
          throw HeaderShapeError{fmt::format("an array with more than {} elements (shapes have at most {} dimensions)",
                                             2 * max_safetensors_rank, max_safetensors_rank)};
        }
        break;
      default:
        break;
    }
    return true;
  };
  nlohmann::json header;
  std::optional<JsonFailure> failure;
  try {
    failure = try_parse_json(text, header, {}, callback);
  } catch (const HeaderShapeError& e) {
    throw Error(where + ": bad header: " + e.message);
  }
  if (failure) {
    // No NUL padding, nothing after the object: the reference implementation refuses both.
    throw Error(fmt::format("{}: header is not valid JSON (at byte {} of the header: {}); the file is truncated or "
                            "not a safetensors file",
                            where, failure->offset, failure->reason));
  }
  return header;
}

inline std::string tensor_where(const std::string& source, std::string_view name) {
  return source + ": tensor '" + std::string(name) + "'";
}

inline std::uint64_t require_unsigned(const nlohmann::json& value, const std::string& where, std::string_view field,
                                      std::uint64_t max) {
  if (!value.is_number_unsigned() || value.get<std::uint64_t>() > max) {
    throw Error(
        fmt::format("{}: {}: expected an integer in [0, {}], found {}", where, field, max, quote_json(value)));
  }
  return value.get<std::uint64_t>();
}

inline SafetensorsTensorInfo parse_tensor_entry(const std::string& name, const nlohmann::json& entry,
                                                const std::string& source) {
  const std::string where = tensor_where(source, name);
  if (!entry.is_object()) throw Error(where + ": expected an object {dtype, shape, data_offsets}, found " + quote_json(entry));
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      throw Error(where + ": unknown field \"" + key + "\" (expected only dtype, shape, data_offsets)");
    }
  }
  SafetensorsTensorInfo info;
  info.name = name;

  auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) {
    throw Error(where + ": expected a string field \"dtype\", found " +
                (dtype == entry.end() ? std::string("none") : quote_json(*dtype)));
  }
  const auto& dtype_text = dtype->get_ref<const std::string&>();
  auto parsed = parse_dtype_name(dtype_text);
  if (!parsed) {
    const bool known_unsupported = dtype_text == "F8_E8M0" || dtype_text == "F8_E4M3FNUZ" ||
                                   dtype_text == "F8_E5M2FNUZ" || dtype_text == "F4" ||
                                   dtype_text == "F6_E2M3" || dtype_text == "F6_E3M2" || dtype_text == "C64";
    throw Error(where + ": dtype \"" + dtype_text + "\" is " +
                (known_unsupported ? "a safetensors dtype grpo does not support" : "unknown") +
                "; expected one of F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U64 U32 U16 U8 BOOL"
                " (convert the tensor before saving)");
  }
  info.dtype = *parsed;

  auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) {
    throw Error(where + ": expected an array field \"shape\", found " +
                (shape == entry.end() ? std::string("none") : quote_json(*shape)));
  }
  if (shape->size() > max_safetensors_rank) {
    throw Error(fmt::format("{}: shape has {} dimensions, at most {} are supported", where, shape->size(),
                            max_safetensors_rank));
  }
  std::uint64_t numel = 1;
  bool overflow = false;
  for (const auto& size : *shape) {
    const auto dim = require_unsigned(size, where, "shape", std::uint64_t{std::numeric_limits<std::int64_t>::max()});
    info.shape.push_back(static_cast<std::int64_t>(dim));
  }
  // The product of the non-zero sizes must fit in int64, even for an empty tensor: torch computes
  // strides from it (the reference accepts [0, 2^62, 8]; torch cannot create it).
  std::uint64_t nonzero_product = 1;
  for (auto dim : info.shape) {
    const auto udim = static_cast<std::uint64_t>(dim);
    if (udim == 0) continue;
    if (nonzero_product > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / udim) overflow = true;
    nonzero_product *= udim;
  }
  const bool empty = std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end();
  numel = empty ? 0 : nonzero_product;
  const auto itemsize = dtype_size(info.dtype);
  if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / itemsize) {
    throw Error(where + ": shape " + shape_text(info.shape) + " of " + std::string(dtype_name(info.dtype)) +
                " has more elements or bytes than a 64-bit size can hold; the header is corrupt");
  }

  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
    throw Error(where + ": expected a field \"data_offsets\": [begin, end], found " +
                (offsets == entry.end() ? std::string("none") : quote_json(*offsets)));
  }
  info.data_begin = require_unsigned((*offsets)[0], where, "data_offsets", std::numeric_limits<std::uint64_t>::max());
  info.data_end = require_unsigned((*offsets)[1], where, "data_offsets", std::numeric_limits<std::uint64_t>::max());
  if (info.data_end < info.data_begin) {
    throw Error(fmt::format("{}: data_offsets [{}, {}] end before they begin", where, info.data_begin, info.data_end));
  }
  const std::uint64_t expected = numel * itemsize;
  if (info.byte_size() != expected) {
    throw Error(fmt::format("{}: data_offsets [{}, {}] span {} bytes, but shape {} of {} needs {} x {} = {} bytes; "
                            "the header is inconsistent",
                            where, info.data_begin, info.data_end, info.byte_size(), shape_text(info.shape),
                            dtype_name(info.dtype), numel, itemsize, expected));
  }
  return info;
}

}  // namespace detail

/// Parses and validates the header of a whole safetensors file held in `file` (all of it: the
/// data section's size is checked against the offsets; its bytes are not read). `source` names
/// the file in error messages. Throws grpo::Error on any inconsistency (see the top of this file).
inline SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file, std::string_view source) {
  const std::string src(source);
  if (file.size() < 8) {
    throw Error(fmt::format("{}: {} bytes is too short for a safetensors file (expected at least the 8-byte header "
                            "length); the file is truncated or empty",
                            src, file.size()));
  }
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, file.data(), 8);
  const std::uint64_t available = file.size() - 8;
  if (header_size > max_safetensors_header_size) {
    throw Error(fmt::format("{}: header length {} exceeds the safetensors limit of {} bytes; not a safetensors file "
                            "or corrupt",
                            src, header_size, max_safetensors_header_size));
  }
  if (header_size > available) {
    throw Error(fmt::format("{}: header length {} runs past the end of the file ({} bytes); the file is truncated",
                            src, header_size, file.size()));
  }
  if (header_size < 2) {
    throw Error(fmt::format("{}: header length {} is too short for a JSON object (expected at least \"{{}}\")", src,
                            header_size));
  }
  const std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, header_size);
  nlohmann::json root = detail::parse_header_json(text, src);
  if (!root.is_object()) {
    throw Error(src + ": header must be a JSON object, found " + std::string(root.type_name()));
  }

  SafetensorsHeader header;
  header.header_size = header_size;
  header.data_size = available - header_size;
  header.tensors.reserve(root.size());
  for (auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) {
        throw Error(src + ": \"__metadata__\" must be an object of strings, found " + quote_json(value));
      }
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          throw Error(src + ": \"__metadata__\" entry \"" + mkey + "\" must be a string, found " +
                      quote_json(mvalue));
        }
        header.metadata.emplace(mkey, mvalue.get<std::string>());
      }
      continue;
    }
    header.tensors.push_back(detail::parse_tensor_entry(key, value, src));
  }
  root = nullptr;  // free the DOM before sorting large headers

  std::sort(header.tensors.begin(), header.tensors.end(), [](const auto& a, const auto& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
  });
  // The byte ranges must tile [0, data_size): each begins where the previous one ended.
  std::uint64_t cursor = 0;
  const SafetensorsTensorInfo* previous = nullptr;
  for (const auto& info : header.tensors) {
    if (info.data_begin < cursor) {
      throw Error(fmt::format("{}: data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]; the header is corrupt",
                              detail::tensor_where(src, info.name), info.data_begin, info.data_end, previous->name,
                              previous->data_begin, previous->data_end));
    }
    if (info.data_begin > cursor) {
      throw Error(fmt::format("{}: data_offsets begin at {}, expected {} (a hole of unindexed bytes, which the "
                              "safetensors format forbids)",
                              detail::tensor_where(src, info.name), info.data_begin, cursor));
    }
    if (info.data_end > header.data_size) {
      throw Error(fmt::format("{}: data_offsets [{}, {}] run past the end of the data section ({} bytes); the file "
                              "is truncated",
                              detail::tensor_where(src, info.name), info.data_begin, info.data_end, header.data_size));
    }
    cursor = info.data_end;
    previous = &info;
  }
  if (cursor != header.data_size) {
    throw Error(fmt::format("{}: the tensors cover {} bytes of data but the file has {} after the header (trailing "
                            "bytes, which the safetensors format forbids)",
                            src, cursor, header.data_size));
  }
  for (std::size_t i = 0; i < header.tensors.size(); ++i) header.index.emplace(header.tensors[i].name, i);
  return header;
}

}  // namespace grpo::io
