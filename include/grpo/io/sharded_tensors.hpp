#pragma once
// Tensors stored in pieces across several .safetensors files: what the ranks of a tensor-parallel
// run write, each its own slice, without gathering anything.
//
//   save_tensor_pieces(path, pieces)   one file of pieces; a piece that is a slice of its whole
//                                      tensor records it in the file's metadata:
//                                        "slice:<name>": "<dim> <start> <length> <full>"
//                                      (the piece's shape is the whole shape with `length` at `dim`)
//   ShardedTensors::open(files)        every file's pieces, by name; read(name, slice) assembles
//                                      any slice (or the whole tensor) from the pieces that cover
//                                      it, reading only those bytes
//
// Pieces of one name must agree on the whole shape and the dtype; pieces may overlap (ranks that
// hold the same replicated slice each write it) and need not be cut where a reader cuts: a
// checkpoint written by T ranks reads back on any other number (each range from the pieces that
// cover it). Files are plain safetensors: the safetensors package reads every piece.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/core/tensor_slice.hpp"
#include "grpo/io/safetensors_reader.hpp"
#include "grpo/io/safetensors_writer.hpp"

namespace grpo::io {

/// One stored piece: `tensor` is `slice` of the whole tensor `name` (all of it by default).
struct TensorPiece {
  std::string name;
  at::Tensor tensor;
  TensorSlice slice = {};
};

inline std::string slice_metadata_key(std::string_view name) { return "slice:" + std::string(name); }

/// Writes `pieces` into one .safetensors file (atomically), with their slices in the metadata
/// beside `metadata`. A piece whose shape does not fit its slice is refused before anything is written.
inline void save_tensor_pieces(const std::filesystem::path& path, const std::vector<TensorPiece>& pieces,
                               SafetensorsMetadata metadata = {{"format", "pt"}}) {
  NamedTensors tensors;
  tensors.reserve(pieces.size());
  for (const auto& piece : pieces) {
    const auto& s = piece.slice;
    if (!s.whole()) {
      if (!piece.tensor.defined() || s.dim >= piece.tensor.dim() || piece.tensor.size(s.dim) != s.length ||
          s.start < 0 || s.end() > s.full) {
        throw Error(fmt::format("{}: piece '{}': slice [{}, {}) of dimension {} (whole size {}) does not fit a tensor of "
                                "shape {}",
                                path.string(), piece.name, s.start, s.end(), s.dim, s.full,
                                piece.tensor.defined() ? detail::shape_text({piece.tensor.sizes().begin(),
                                                                             piece.tensor.sizes().end()})
                                                       : std::string("(undefined)")));
      }
      metadata[slice_metadata_key(piece.name)] = fmt::format("{} {} {} {}", s.dim, s.start, s.length, s.full);
    }
    tensors.emplace_back(piece.name, piece.tensor);
  }
  save_safetensors(path, tensors, metadata);
}

/// The pieces of several files, by tensor name (see the top of this header).
class ShardedTensors {
 public:
  /// Opens `files` (memory-mapped; headers and slices checked, no data read). Throws grpo::Error
  /// naming the file and the tensor: a malformed slice, a piece whose shape does not fit it, two
  /// pieces that disagree on the whole shape or the dtype.
  static ShardedTensors open(const std::vector<std::filesystem::path>& files) {
    ShardedTensors out;
    for (const auto& path : files) {
      out.files_.push_back(SafetensorsFile::open(path));
      const auto& file = out.files_.back();
      const auto file_index = out.files_.size() - 1;
      for (const auto& entry : file.header().tensors) {
        Piece piece{.file = file_index, .key = entry.name, .slice = {}};
        std::vector<std::int64_t> whole = entry.shape;
        const auto where = detail::tensor_where(path.string(), entry.name);
        if (auto it = file.metadata().find(slice_metadata_key(entry.name)); it != file.metadata().end()) {
          piece.slice = parse_slice(it->second, where);
          const auto& s = piece.slice;
          if (s.dim >= static_cast<std::int64_t>(whole.size()) || whole[static_cast<std::size_t>(s.dim)] != s.length ||
              s.end() > s.full) {
            throw Error(fmt::format("{}: the recorded slice [{}, {}) of dimension {} (whole size {}) does not fit the "
                                    "stored shape {}",
                                    where, s.start, s.end(), s.dim, s.full, detail::shape_text(whole)));
          }
          whole[static_cast<std::size_t>(s.dim)] = s.full;
        }
        auto [it, inserted] = out.tensors_.try_emplace(entry.name, Entry{.shape = whole, .dtype = entry.dtype, .pieces = {}});
        if (!inserted) {  // the pieces of one tensor are slices of one dimension (or whole)
          for (const auto& other : it->second.pieces) {
            if (other.slice.whole() || piece.slice.whole() || other.slice.dim == piece.slice.dim) continue;
            throw Error(fmt::format("{}: a slice of dimension {}, but {} holds a slice of dimension {}; the files are "
                                    "not one checkpoint",
                                    where, piece.slice.dim, out.files_[other.file].path().string(), other.slice.dim));
          }
        }
        if (!inserted && (it->second.shape != whole || it->second.dtype != entry.dtype)) {
          const auto& first = out.files_[it->second.pieces.front().file];
          throw Error(fmt::format("{}: a piece of shape {} ({}) in a whole tensor of shape {}, but {} holds a piece of "
                                  "a whole tensor of shape {} ({}); the files are not one checkpoint",
                                  where, detail::shape_text(entry.shape), dtype_name(entry.dtype), detail::shape_text(whole),
                                  first.path().string(), detail::shape_text(it->second.shape),
                                  dtype_name(it->second.dtype)));
        }
        it->second.pieces.push_back(std::move(piece));
      }
    }
    return out;
  }

  [[nodiscard]] const std::vector<SafetensorsFile>& files() const { return files_; }
  [[nodiscard]] bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }
  /// Tensor names, sorted.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, entry] : tensors_) out.push_back(name);
    return out;
  }
  /// The whole tensor's shape.
  [[nodiscard]] const std::vector<std::int64_t>& shape(std::string_view name) const { return entry(name).shape; }
  [[nodiscard]] c10::ScalarType dtype(std::string_view name) const { return scalar_type_of(entry(name).dtype); }

  /// `want` of the whole tensor `name` (whole by default), assembled from the pieces that cover
  /// it: only their overlapping bytes are read. A range no piece covers is an error naming it.
  [[nodiscard]] at::Tensor read(std::string_view name, const TensorSlice& want = {},
                                const TensorLoadOptions& options = {}) const {
    const auto& e = entry(name);
    const auto where = fmt::format("{} tensor '{}'", describe(), name);
    if (!want.whole() && (want.dim >= static_cast<std::int64_t>(e.shape.size()) || want.start < 0 || want.length < 0 ||
                          want.end() > e.shape[static_cast<std::size_t>(want.dim)])) {
      throw Error(fmt::format("{}: slice [{}, {}) of dimension {} is outside the whole shape {}", where, want.start,
                              want.end(), want.dim, detail::shape_text(e.shape)));
    }
    // The asker's whole size must be the stored one: a slice of another model's tensor (another
    // intermediate size, say) would otherwise be read from the wrong rows.
    if (!want.whole() && want.full != 0 && want.full != e.shape[static_cast<std::size_t>(want.dim)]) {
      throw Error(fmt::format("{}: a slice of a tensor whose dimension {} has {} entries was asked for, but the stored "
                              "tensor has {} (whole shape {}); the checkpoint is of another model",
                              where, want.dim, want.full, e.shape[static_cast<std::size_t>(want.dim)],
                              detail::shape_text(e.shape)));
    }
    for (const auto& p : e.pieces)  // a whole piece serves any slice
      if (p.slice.whole()) {
        const auto& file = files_[p.file];
        return want.whole() ? file.tensor(p.key, options) : file.tensor_slice(p.key, want.dim, want.start, want.length, options);
      }
    // Every piece is a slice: of one dimension, which the wanted range must be of.
    const std::int64_t dim = e.pieces.front().slice.dim;
    if (!want.whole() && want.dim != dim) {
      throw Error(fmt::format("{}: the pieces are slices of dimension {}, but dimension {} was asked for; read the whole "
                              "tensor and narrow it",
                              where, dim, want.dim));
    }
    const std::int64_t begin = want.whole() ? 0 : want.start;
    const std::int64_t end = want.whole() ? e.shape[static_cast<std::size_t>(dim)] : want.end();
    // One output, each covering piece copied into its place: the result plus one piece at a time.
    auto shape = e.shape;
    shape[static_cast<std::size_t>(dim)] = end - begin;
    const auto make_output = [&] {
      return at::empty(shape, at::TensorOptions().dtype(options.dtype.value_or(dtype(name))).device(options.device));
    };
    at::Tensor out;
    for (std::int64_t at = begin; at < end;) {
      const Piece* cover = nullptr;
      for (const auto& p : e.pieces)
        if (p.slice.dim == dim && p.slice.start <= at && at < p.slice.end()) {
          cover = &p;
          break;
        }
      if (cover == nullptr) {
        std::string held;
        for (const auto& p : e.pieces) held += fmt::format("{}[{}, {})", held.empty() ? "" : ", ", p.slice.start, p.slice.end());
        throw Error(fmt::format("{}: no piece holds index {} of dimension {} (the pieces hold {}); a file of the "
                                "checkpoint is missing",
                                where, at, dim, held));
      }
      const auto take = std::min(end, cover->slice.end()) - at;
      const auto part = files_[cover->file].tensor_slice(cover->key, dim, at - cover->slice.start, take, options);
      if (take == end - begin) return part;  // one piece covers it all: no copy
      if (!out.defined()) out = make_output();
      out.narrow(dim, at - begin, take).copy_(part);
      at += take;
    }
    return out.defined() ? out : make_output();  // an empty range
  }

 private:
  struct Piece {
    std::size_t file = 0;
    std::string key;
    TensorSlice slice;
  };
  struct Entry {
    std::vector<std::int64_t> shape;  // whole
    SafetensorsDtype dtype = SafetensorsDtype::f32;
    std::vector<Piece> pieces;
  };

  static TensorSlice parse_slice(const std::string& text, const std::string& where) {
    std::int64_t values[4] = {};
    const char* p = text.data();
    const char* end = text.data() + text.size();
    for (int i = 0; i < 4; ++i) {
      if (i > 0) {
        if (p == end || *p != ' ') p = nullptr;
        else ++p;
      }
      std::from_chars_result r{};
      if (p != nullptr) r = std::from_chars(p, end, values[i]);
      if (p == nullptr || r.ec != std::errc() || values[i] < 0) {
        throw Error(fmt::format("{}: the slice metadata \"{}\" is not \"<dim> <start> <length> <full>\" (non-negative "
                                "integers)",
                                where, text.substr(0, 80)));
      }
      p = r.ptr;
    }
    if (p != end) throw Error(fmt::format("{}: the slice metadata \"{}\" has trailing text", where, text.substr(0, 80)));
    return {.dim = values[0], .start = values[1], .length = values[2], .full = values[3]};
  }

  const Entry& entry(std::string_view name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error(fmt::format("{}: missing tensor '{}'", describe(), name));
    return it->second;
  }

  std::string describe() const {
    if (files_.empty()) return "(no files)";
    return files_.size() == 1 ? files_.front().path().string()
                              : fmt::format("{} ({} files)", files_.front().path().parent_path().string(), files_.size());
  }

  std::vector<SafetensorsFile> files_;
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace grpo::io
