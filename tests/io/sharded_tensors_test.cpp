// Tensors stored in pieces over several files (grpo/io/sharded_tensors.hpp) and the streamed
// sharded writer (save_sharded_safetensors from specs + a producer). The reference is the whole
// tensor the pieces were cut from by hand: any slice read back must equal its narrow(), however
// the writer's pieces and the reader's slices are cut. The streamed writer must write the very
// bytes the in-memory writer writes (which tests/python/test_safetensors_io.py checks against
// the safetensors package).

#include "grpo/io/sharded_tensors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "grpo/io/safetensors.hpp"
#include "io_test_support.hpp"

using Catch::Matchers::Contains;
using grpo::TensorSlice;
using grpo::io::ShardedTensors;
using grpo::io::TensorPiece;
using grpo::test::read_bytes;
using grpo::test::ScratchFolder;

namespace {

/// `whole` cut into `parts` equal slices of `dim`: piece r is what rank r of `parts` holds.
TensorPiece piece_of(const std::string& name, const at::Tensor& whole, std::int64_t dim, int rank, int parts) {
  const auto length = whole.size(dim) / parts;
  return {name, whole.narrow(dim, rank * length, length).clone(), {dim, rank * length, length, whole.size(dim)}};
}

std::vector<std::filesystem::path> write_ranks(const ScratchFolder& folder, const std::vector<at::Tensor>& rows_split,
                                               const at::Tensor& cols_split, const at::Tensor& replicated, int parts) {
  std::vector<std::filesystem::path> files;
  for (int r = 0; r < parts; ++r) {
    std::vector<TensorPiece> pieces;
    for (std::size_t i = 0; i < rows_split.size(); ++i) pieces.push_back(piece_of("w" + std::to_string(i), rows_split[i], 0, r, parts));
    pieces.push_back(piece_of("o", cols_split, 1, r, parts));
    pieces.push_back({"norm", replicated, {}});  // every rank writes its copy
    files.push_back(folder / ("rank" + std::to_string(r) + ".safetensors"));
    grpo::io::save_tensor_pieces(files.back(), pieces);
  }
  return files;
}

}  // namespace

TEST_CASE("sharded tensors: any slice reads back as the narrow of the whole tensor", "[io][sharded]") {
  ScratchFolder folder;
  const auto w = at::arange(12 * 3, at::TensorOptions().dtype(c10::kFloat)).reshape({12, 3});
  const auto o = at::arange(2 * 12, at::TensorOptions().dtype(c10::kBFloat16)).reshape({2, 12});
  const auto norm = at::arange(5, at::TensorOptions().dtype(c10::kFloat));
  const auto files = write_ranks(folder, {w}, o, norm, 4);  // T = 4 wrote them
  const auto pieces = ShardedTensors::open(files);
  CHECK((pieces.names() == std::vector<std::string>{"norm", "o", "w0"}));
  CHECK((pieces.shape("w0") == std::vector<std::int64_t>{12, 3}));  // the whole shape, not a piece's
  CHECK((pieces.shape("o") == std::vector<std::int64_t>{2, 12}));
  CHECK(pieces.dtype("o") == c10::kBFloat16);

  CHECK(at::equal(pieces.read("w0"), w));
  CHECK(at::equal(pieces.read("o"), o));
  CHECK(at::equal(pieces.read("norm"), norm));
  // T = 3 reading what T = 4 wrote: each slice crosses piece boundaries
  for (int r = 0; r < 3; ++r) {
    CHECK(at::equal(pieces.read("w0", {0, 4 * r, 4, 12}), w.narrow(0, 4 * r, 4)));
    CHECK(at::equal(pieces.read("o", {1, 4 * r, 4, 12}), o.narrow(1, 4 * r, 4)));
  }
  CHECK(at::equal(pieces.read("w0", {0, 1, 10, 12}), w.narrow(0, 1, 10)));
  CHECK(at::equal(pieces.read("norm", {0, 1, 3, 5}), norm.narrow(0, 1, 3)));  // a slice of a whole piece
  CHECK(pieces.read("w0", {0, 5, 0, 12}).sizes().equals({0, 3}));
  // converted on the way, as a whole tensor is
  CHECK(at::equal(pieces.read("o", {1, 2, 5, 12}, {.dtype = c10::kFloat}), o.narrow(1, 2, 5).to(c10::kFloat)));
}

TEST_CASE("sharded tensors: pieces read back in safetensors' own terms", "[io][sharded]") {
  // A piece is a plain tensor of its file; its slice is text in the metadata.
  ScratchFolder folder;
  const auto w = at::arange(8, at::TensorOptions().dtype(c10::kFloat)).reshape({4, 2});
  const auto files = write_ranks(folder, {w}, at::zeros({1, 2}), at::zeros({1}), 2);
  const auto file = grpo::io::SafetensorsFile::open(files[1]);
  CHECK(at::equal(file.tensor("w0"), w.narrow(0, 2, 2)));
  CHECK(file.metadata().at("slice:w0") == "0 2 2 4");
  CHECK(file.metadata().at("slice:o") == "1 1 1 2");
  CHECK(file.metadata().count("slice:norm") == 0);  // whole
}

TEST_CASE("sharded tensors: missing, inconsistent or malformed pieces are named", "[io][sharded]") {
  ScratchFolder folder;
  const auto w = at::arange(8, at::TensorOptions().dtype(c10::kFloat)).reshape({4, 2});
  const auto files = write_ranks(folder, {w}, at::zeros({1, 2}), at::zeros({1}), 2);
  SECTION("a file of the checkpoint is missing") {
    const auto half = ShardedTensors::open({files[0]});
    CHECK(at::equal(half.read("w0", {0, 0, 2, 4}), w.narrow(0, 0, 2)));  // what it has still reads
    REQUIRE_THROWS_WITH(half.read("w0"), Contains("tensor 'w0': no piece holds index 2 of dimension 0 (the pieces hold [0, 2))"));
    REQUIRE_THROWS_WITH(half.read("nope"), Contains("missing tensor 'nope'"));
  }
  SECTION("pieces of another whole tensor") {
    grpo::io::save_tensor_pieces(folder / "other.safetensors", {{"w0", at::zeros({2, 3}), {0, 0, 2, 4}}});
    REQUIRE_THROWS_WITH(ShardedTensors::open({files[0], folder / "other.safetensors"}),
                        Contains("other.safetensors: tensor 'w0': a piece of shape [2, 3] (F32) in a whole tensor of "
                                 "shape [4, 3]"));
  }
  SECTION("a slice that does not fit the stored piece") {
    grpo::io::save_safetensors(folder / "bad.safetensors", grpo::io::NamedTensors{{"x", at::zeros({2, 2})}},
                               {{"format", "pt"}, {"slice:x", "0 0 3 6"}});
    REQUIRE_THROWS_WITH(ShardedTensors::open({folder / "bad.safetensors"}),
                        Contains("bad.safetensors: tensor 'x': the recorded slice [0, 3) of dimension 0 (whole size 6) "
                                 "does not fit the stored shape [2, 2]"));
    for (const char* text : {"0 a 2 4", "0 0 2", "0 0 2 4 ", "-1 0 2 4", ""}) {
      grpo::io::save_safetensors(folder / "bad.safetensors", grpo::io::NamedTensors{{"x", at::zeros({2, 2})}},
                                 {{"format", "pt"}, {"slice:x", text}});
      REQUIRE_THROWS_WITH(ShardedTensors::open({folder / "bad.safetensors"}), Contains("bad.safetensors: tensor 'x': the slice metadata"));
    }
  }
  SECTION("pieces cut along different dimensions") {
    grpo::io::save_tensor_pieces(folder / "other.safetensors", {{"w0", at::zeros({4, 1}), {1, 1, 1, 2}}});
    REQUIRE_THROWS_WITH(ShardedTensors::open({files[0], folder / "other.safetensors"}),
                        Contains("other.safetensors: tensor 'w0': a slice of dimension 1, but"));
  }
  SECTION("a slice of another model's tensor (another whole size)") {
    const auto pieces = ShardedTensors::open(files);
    REQUIRE_THROWS_WITH(pieces.read("w0", {0, 2, 2, 8}),
                        Contains("tensor 'w0': a slice of a tensor whose dimension 0 has 8 entries was asked for, but "
                                 "the stored tensor has 4"));
    CHECK(at::equal(pieces.read("w0", {0, 2, 2, 4}), w.narrow(0, 2, 2)));
  }
  SECTION("a slice of another dimension than the pieces'") {
    const auto pieces = ShardedTensors::open(files);
    REQUIRE_THROWS_WITH(pieces.read("w0", {1, 0, 1, 2}), Contains("the pieces are slices of dimension 0, but dimension 1"));
    REQUIRE_THROWS_WITH(pieces.read("w0", {0, 3, 2, 4}), Contains("slice [3, 5) of dimension 0 is outside the whole shape [4, 2]"));
  }
  SECTION("a piece written with a slice that does not fit it") {
    REQUIRE_THROWS_WITH(grpo::io::save_tensor_pieces(folder / "x.safetensors", {{"x", at::zeros({2, 2}), {0, 3, 2, 4}}}),
                        Contains("piece 'x': slice [3, 5) of dimension 0 (whole size 4) does not fit a tensor of shape [2, 2]"));
  }
}

TEST_CASE("safetensors: the streamed writer writes what the in-memory writer writes", "[io][safetensors][sharded]") {
  ScratchFolder memory, streamed;
  grpo::io::NamedTensors tensors;
  std::vector<grpo::io::TensorSpec> specs;
  for (int i = 0; i < 5; ++i) {
    const auto t = at::arange(10 * (i + 1), at::TensorOptions().dtype(i % 2 ? c10::kBFloat16 : c10::kFloat));
    tensors.emplace_back("t" + std::to_string(i), t);
    specs.push_back({"t" + std::to_string(i), t.scalar_type(), {t.size(0)}});
  }
  grpo::io::save_sharded_safetensors(memory.path(), tensors, {.max_shard_bytes = 100});
  std::vector<std::size_t> produced;
  const auto result = grpo::io::save_sharded_safetensors(
      streamed.path(), specs, [&](std::size_t i) { produced.push_back(i); return tensors[i].second; },
      {.max_shard_bytes = 100});
  CHECK(result.files.size() > 2);
  CHECK(produced.size() == tensors.size());  // each made once, when written
  REQUIRE(memory.entries() == streamed.entries());
  for (const auto& name : memory.entries()) CHECK(read_bytes(memory / name) == read_bytes(streamed / name));

  SECTION("a made tensor that is not its spec is refused, the file left unpublished") {
    ScratchFolder bad;
    REQUIRE_THROWS_WITH(grpo::io::save_sharded_safetensors(bad.path(), specs, [&](std::size_t) { return at::zeros({3}); }),
                        Contains("tensor 't0': the tensor made for writing is Float [3], not the F32 [10] announced"));
    CHECK(bad.entries().empty());
  }
}
