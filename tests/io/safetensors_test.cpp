// safetensors reader and writer against the Python reference (safetensors 0.8, transformers 5.24):
// files the reference wrote load with the values torch reads from them; files we write are
// byte-identical to the reference's; malformed files fail with messages naming file and tensor.
// Fixtures: tests/python/fixtures/safetensors.py. The Python side of the writer checks (loading
// our files in safetensors/transformers) is tests/python/test_safetensors_io.py, which runs the
// hidden "[python_export]" case below.

#include "grpo/io/safetensors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "grpo/model/qwen2_config.hpp"
#include "io_test_support.hpp"

using Catch::Matchers::Contains;
using grpo::io::SafetensorsCheckpoint;
using grpo::io::SafetensorsDtype;
using grpo::io::SafetensorsFile;
using grpo::test::fixture_path;
using grpo::test::read_bytes;
using grpo::test::safetensors_bytes;
using grpo::test::ScratchFolder;
using grpo::test::write_bytes;
using json = nlohmann::json;

namespace {

json read_json(const std::string& path) { return json::parse(read_bytes(path)); }

/// Python's torch dtype names -> torch C++ scalar types (independent of grpo's mapping).
c10::ScalarType scalar_type_named(const std::string& name) {
  static const std::map<std::string, c10::ScalarType> types = {
      {"float64", c10::kDouble},   {"float32", c10::kFloat},          {"float16", c10::kHalf},
      {"bfloat16", c10::kBFloat16}, {"float8_e4m3fn", c10::ScalarType::Float8_e4m3fn},
      {"float8_e5m2", c10::ScalarType::Float8_e5m2}, {"int64", c10::kLong}, {"int32", c10::kInt},
      {"int16", c10::kShort},      {"int8", c10::kChar},              {"uint8", c10::kByte},
      {"uint16", c10::ScalarType::UInt16}, {"uint32", c10::ScalarType::UInt32},
      {"uint64", c10::ScalarType::UInt64}, {"bool", c10::kBool}};
  return types.at(name);
}

/// Element `i` of a contiguous CPU tensor's bytes as a signed integer of `size` bytes
/// (how the fixture records bit patterns: uint8 for 1 byte, int16/32/64 otherwise).
std::int64_t raw_bits(const at::Tensor& t, std::int64_t i) {
  const auto size = t.element_size();
  const auto* p = static_cast<const std::byte*>(t.data_ptr()) + i * size;
  switch (size) {
    case 1: { std::uint8_t v; std::memcpy(&v, p, 1); return v; }
    case 2: { std::int16_t v; std::memcpy(&v, p, 2); return v; }
    case 4: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
    default: { std::int64_t v; std::memcpy(&v, p, 8); return v; }
  }
}

bool is_unsigned(c10::ScalarType t) {
  return t == c10::kByte || t == c10::ScalarType::UInt16 || t == c10::ScalarType::UInt32 ||
         t == c10::ScalarType::UInt64 || t == c10::kBool;
}

/// Integer element `i` read from the raw bytes with the element's own signedness.
json integer_element(const at::Tensor& t, std::int64_t i) {
  const auto size = t.element_size();
  const auto* p = static_cast<const std::byte*>(t.data_ptr()) + i * size;
  if (is_unsigned(t.scalar_type())) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, static_cast<std::size_t>(size));
    return v;
  }
  std::int64_t v = 0;
  std::memcpy(&v, p, static_cast<std::size_t>(size));
  if (size < 8) v = (v << (64 - 8 * size)) >> (64 - 8 * size);  // sign-extend
  return v;
}

/// A reference value from the fixture JSON (numbers, or "nan"/"inf"/"-inf") as a double.
double reference_value(const json& value) {
  if (value.is_string()) {
    const auto text = value.get<std::string>();
    if (text == "nan") return std::nan("");
    return text == "inf" ? INFINITY : -INFINITY;
  }
  return value.get<double>();
}

void require_same_double(double actual, double expected) {
  if (std::isnan(expected)) {
    CHECK(std::isnan(actual));
  } else {
    CHECK(actual == expected);
    CHECK(std::signbit(actual) == std::signbit(expected));
  }
}

std::vector<std::string> order_from(const std::string& path) { return read_json(path).get<std::vector<std::string>>(); }

/// Tensors of `file` in `order` (loaded to CPU in their own dtype).
grpo::io::NamedTensors tensors_in_order(const SafetensorsCheckpoint& checkpoint, const std::vector<std::string>& order) {
  grpo::io::NamedTensors tensors;
  for (const auto& name : order) tensors.emplace_back(name, checkpoint.load(name));
  return tensors;
}

}  // namespace

TEST_CASE("safetensors: every dtype the reference writes loads with torch's values and bits", "[io][safetensors]") {
  const auto file = SafetensorsFile::open(fixture_path("all_dtypes.safetensors"));
  const auto expected = read_json(fixture_path("all_dtypes.json"));
  CHECK(file.names().size() == expected.size());
  CHECK((file.metadata() == grpo::io::SafetensorsMetadata{{"format", "pt"}}));
  for (const auto& [name, entry] : expected.items()) {
    INFO("tensor " << name);
    REQUIRE(file.contains(name));
    const at::Tensor t = file.tensor(name);
    CHECK(t.device().is_cpu());
    CHECK(t.scalar_type() == scalar_type_named(entry["torch_dtype"]));
    CHECK(t.sizes().vec() == entry["shape"].get<std::vector<std::int64_t>>());
    CHECK(file.info(name).shape == entry["shape"].get<std::vector<std::int64_t>>());
    REQUIRE(t.is_contiguous());
    const auto& values = entry["values"];
    REQUIRE(t.numel() == static_cast<std::int64_t>(values.size()));
    if (entry.contains("bits")) {
      const at::Tensor as_double = t.to(c10::kDouble);
      for (std::int64_t i = 0; i < t.numel(); ++i) {
        CHECK(raw_bits(t, i) == entry["bits"][i].get<std::int64_t>());
        require_same_double(as_double.data_ptr<double>()[i], reference_value(values[i]));
      }
    } else {
      for (std::int64_t i = 0; i < t.numel(); ++i) CHECK(integer_element(t, i) == values[i]);
    }
  }
}

TEST_CASE("safetensors: loading converts to the requested dtype like torch does", "[io][safetensors]") {
  const auto file = SafetensorsFile::open(fixture_path("all_dtypes.safetensors"));
  const auto expected = read_json(fixture_path("all_dtypes.json"));
  for (const char* name : {"f64", "f32", "f16", "bf16", "f8_e4m3", "f8_e5m2", "scalar_0d", "matrix_f32"}) {
    INFO("tensor " << name);
    const at::Tensor t = file.tensor(name, {.dtype = c10::kFloat});
    REQUIRE(t.scalar_type() == c10::kFloat);
    const auto& values = expected[name]["values"];
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      // float(double) rounds to nearest: the same rounding torch's conversion uses.
      require_same_double(t.data_ptr<float>()[i], static_cast<float>(reference_value(values[i])));
    }
  }
  const at::Tensor empty = file.tensor("empty_bf16", {.dtype = c10::kFloat});
  CHECK((empty.sizes().vec() == std::vector<std::int64_t>{4, 0}));
  CHECK(empty.scalar_type() == c10::kFloat);
  const at::Tensor ints = file.tensor("i16", {.dtype = c10::kLong});
  CHECK(ints.data_ptr<std::int64_t>()[0] == -32768);
  CHECK(ints.data_ptr<std::int64_t>()[3] == 32767);
}

TEST_CASE("safetensors: metadata with several keys and non-ASCII text", "[io][safetensors]") {
  const auto file = SafetensorsFile::open(fixture_path("metadata.safetensors"));
  const auto expected = read_json(fixture_path("metadata.json")).get<std::map<std::string, std::string>>();
  CHECK(file.metadata() == expected);
  CHECK(file.metadata().at("author") == "grpo \u2713 \u00e9t\u00e9");
}

TEST_CASE("safetensors: a checkpoint sharded by save_pretrained loads completely", "[io][safetensors]") {
  const auto checkpoint = SafetensorsCheckpoint::open(fixture_path("qwen2_sharded"));
  const auto reference = SafetensorsFile::open(fixture_path("qwen2_reference.safetensors"));
  CHECK(checkpoint.files().size() == 12);
  CHECK(checkpoint.names() == reference.names());
  CHECK(checkpoint.size() == reference.names().size());
  const auto all = checkpoint.load_all();
  REQUIRE(all.size() == reference.names().size());
  for (const auto& name : reference.names()) {
    INFO("tensor " << name);
    CHECK(at::equal(all.at(name), reference.tensor(name)));
  }
  CHECK(checkpoint.file_of("lm_head.weight").path().filename() == "model-00012-of-00012.safetensors");
  CHECK((checkpoint.info("model.layers.1.self_attn.k_proj.weight").shape == std::vector<std::int64_t>{32, 64}));

  // The index file itself and a single-file folder open too.
  const auto via_index = SafetensorsCheckpoint::open(fixture_path("qwen2_sharded/model.safetensors.index.json"));
  CHECK(via_index.names() == reference.names());
  const auto single = SafetensorsCheckpoint::open(fixture_path("qwen2_single"));
  CHECK(single.files().size() == 1);
  CHECK(at::equal(single.load("model.norm.weight"), reference.tensor("model.norm.weight")));
}

TEST_CASE("safetensors: bf16 tied checkpoint loads and converts to fp32 exactly", "[io][safetensors]") {
  const auto checkpoint = SafetensorsCheckpoint::open(fixture_path("qwen2_tied_bf16"));
  const auto reference = SafetensorsFile::open(fixture_path("qwen2_tied_bf16_as_f32.safetensors"));
  CHECK(checkpoint.names() == reference.names());
  CHECK_FALSE(checkpoint.contains("lm_head.weight"));  // tied: transformers does not store it
  CHECK(checkpoint.info("model.embed_tokens.weight").dtype == SafetensorsDtype::bf16);
  for (const auto& name : reference.names()) {
    INFO("tensor " << name);
    const at::Tensor t = checkpoint.load(name, {.dtype = c10::kFloat});
    CHECK(t.scalar_type() == c10::kFloat);
    CHECK(at::equal(t, reference.tensor(name)));
  }
}

TEST_CASE("safetensors: require checks the shape and names file and tensor", "[io][safetensors]") {
  const auto checkpoint = SafetensorsCheckpoint::open(fixture_path("qwen2_sharded"));
  CHECK((checkpoint.require("model.embed_tokens.weight", {128, 64}).sizes().vec() == std::vector<std::int64_t>{128, 64}));
  REQUIRE_THROWS_WITH(checkpoint.require("model.embed_tokens.weight", {64, 128}),
                      Contains("model-00001-of-00012.safetensors: tensor 'model.embed_tokens.weight': "
                               "expected shape [64, 128], found [128, 64]"));
  REQUIRE_THROWS_WITH(checkpoint.require("model.norm.weight", {64, 1}), Contains("expected shape [64, 1], found [64]"));
  REQUIRE_THROWS_WITH(checkpoint.require("score.weight", {1, 64}),
                      Contains("model.safetensors.index.json: missing tensor 'score.weight'"));
  REQUIRE_THROWS_AS(checkpoint.load("nope"), grpo::Error);
}

TEST_CASE("safetensors: hand-made files at the edges of the format", "[io][safetensors]") {
  ScratchFolder folder;
  SECTION("no tensors at all") {
    write_bytes(folder / "empty.safetensors", safetensors_bytes("{}", ""));
    const auto file = SafetensorsFile::open(folder / "empty.safetensors");
    CHECK(file.names().empty());
    CHECK(file.metadata().empty());
  }
  SECTION("header padded with spaces, null metadata, unaligned F32 after an odd U8") {
    const std::string header =
        R"({"__metadata__":null,"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}}   )";
    const float b[2] = {1.5f, -2.0f};
    std::string data = "xyz";
    data.append(reinterpret_cast<const char*>(b), sizeof b);
    write_bytes(folder / "edge.safetensors", safetensors_bytes(header, data));
    const auto file = SafetensorsFile::open(folder / "edge.safetensors");
    const at::Tensor t = file.tensor("b");
    CHECK(t.data_ptr<float>()[0] == 1.5f);
    CHECK(t.data_ptr<float>()[1] == -2.0f);
    CHECK(file.tensor("b", {.dtype = c10::kDouble}).data_ptr<double>()[1] == -2.0);
    CHECK(file.info("a").byte_size() == 3);
  }
  SECTION("empty tensors may sit at any tile boundary") {
    const std::string header =
        R"({"e0":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
        R"("e2":{"dtype":"F64","shape":[0],"data_offsets":[2,2]}})";
    write_bytes(folder / "e.safetensors", safetensors_bytes(header, "ab"));
    const auto file = SafetensorsFile::open(folder / "e.safetensors");
    CHECK((file.tensor("e0").sizes().vec() == std::vector<std::int64_t>{0, 5}));
    CHECK(file.tensor("e2").numel() == 0);
  }
  SECTION("an empty tensor with large other sizes") {
    // 0 x 2^31 x 2^31: empty (0 bytes), and 2^62 fits int64, so torch can make it.
    write_bytes(folder / "h.safetensors",
                safetensors_bytes(R"({"h":{"dtype":"F32","shape":[0,2147483648,2147483648],"data_offsets":[0,0]}})", ""));
    const auto file = SafetensorsFile::open(folder / "h.safetensors");
    CHECK(file.info("h").byte_size() == 0);
    CHECK((file.tensor("h").sizes().vec() == std::vector<std::int64_t>{0, 2147483648, 2147483648}));
  }
}

namespace {

/// Writes `bytes` to folder/name and requires open() to throw a grpo::Error containing every fragment.
void require_rejected(const ScratchFolder& folder, const std::string& bytes, std::vector<std::string> fragments,
                      const std::string& name = "bad.safetensors") {
  write_bytes(folder / name, bytes);
  const auto path = (folder / name).string();
  fragments.insert(fragments.begin(), path + ":");
  try {
    SafetensorsFile::open(folder / name);
    FAIL("expected grpo::Error for " << name);
  } catch (const grpo::Error& e) {
    for (const auto& fragment : fragments) CHECK_THAT(e.what(), Contains(fragment));
  }
}

const std::string one_u8 = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";

}  // namespace

TEST_CASE("safetensors: malformed files are rejected with the file and the tensor named", "[io][safetensors]") {
  ScratchFolder folder;
  const std::string valid = read_bytes(fixture_path("all_dtypes.safetensors"));

  SECTION("empty and tiny files") {
    require_rejected(folder, "", {"0 bytes is too short", "truncated or empty"});
    require_rejected(folder, std::string("\x05\0\0", 3), {"3 bytes is too short"});
  }
  SECTION("truncated in the data section") {
    // The last tensor in data order is "bool" (BOOL sorts last); cutting 3 bytes leaves its
    // range [.., end) past the data section.
    require_rejected(folder, valid.substr(0, valid.size() - 3), {"tensor 'bool'", "run past the end", "truncated"});
  }
  SECTION("truncated in the header") {
    require_rejected(folder, valid.substr(0, 100), {"runs past the end of the file (100 bytes)", "truncated"});
  }
  SECTION("header length lies") {
    require_rejected(folder, safetensors_bytes(one_u8, "ab", std::uint64_t{1} << 40),
                     {"header length 1099511627776 exceeds the safetensors limit of 100000000"});
    require_rejected(folder, safetensors_bytes(one_u8, "ab", one_u8.size() + 10), {"runs past the end of the file"});
    // Shorter than the real header: the JSON is cut.
    require_rejected(folder, safetensors_bytes(one_u8, "ab", one_u8.size() - 5), {"not valid JSON"});
    require_rejected(folder, safetensors_bytes("", "", 0), {"too short for a JSON object"});
  }
  SECTION("header is not a JSON object") {
    require_rejected(folder, safetensors_bytes("this is not json", ""), {"not valid JSON"});
    require_rejected(folder, safetensors_bytes("[1, 2]  ", ""), {"must be a JSON object, found array"});
    require_rejected(folder, safetensors_bytes("{\"a\":{}}\x01", ""), {"not valid JSON"});
    require_rejected(folder, safetensors_bytes("{\"a\xff\":1}", ""), {"not valid JSON"});  // invalid UTF-8
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", "x"),
                     {"nested deeper than the format allows"});
  }
  SECTION("offsets out of range, overlapping, holes, trailing bytes") {
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "ab"),
                     {"tensor 'a'", "[0, 4] run past the end of the data section (2 bytes)"});
    require_rejected(folder,
                     safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                       R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                                       "abc"),
                     {"tensor 'b'", "overlap tensor 'a' at [0, 2]"});
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "ab"),
                     {"tensor 'a'", "begin at 1, expected 0", "hole"});
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "ab"),
                     {"cover 1 bytes of data but the file has 2", "trailing bytes"});
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}})", "ab"),
                     {"tensor 'a'", "end before they begin"});
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0]}})", "ab"),
                     {"tensor 'a'", "\"data_offsets\": [begin, end], found [0]"});
  }
  SECTION("shape inconsistent with the byte length") {
    require_rejected(folder, safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}})",
                                               std::string(8, '\0')),
                     {"tensor 'w'", "span 8 bytes", "shape [2, 3] of F32 needs 6 x 4 = 24 bytes"});
    require_rejected(folder, safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"),
                     {"tensor 'w'", "shape: expected an integer", "found -1"});
    require_rejected(folder, safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", "abcd"),
                     {"tensor 'w'", "shape: expected an integer", "found 1.0"});
    require_rejected(folder,
                     safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})", "abcd"),
                     {"tensor 'w'", "more elements or bytes than a 64-bit size can hold"});
    // Empty, yet 2^62 x 8 elements per slice: the reference accepts it, torch cannot stride it.
    require_rejected(folder,
                     safetensors_bytes(R"({"w":{"dtype":"F32","shape":[0,4611686018427387904,8],"data_offsets":[0,0]}})", ""),
                     {"tensor 'w'", "shape [0, 4611686018427387904, 8] of F32 has more elements"});
    require_rejected(folder,
                     safetensors_bytes(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", "abcd"),
                     {"tensor 'w'", "shape: expected an integer in [0, 9223372036854775807]"});
    std::string rank65 = R"({"w":{"dtype":"U8","shape":[)";
    for (int i = 0; i < 65; ++i) rank65 += i ? ",1" : "1";
    require_rejected(folder, safetensors_bytes(rank65 + R"(],"data_offsets":[0,1]}})", "a"),
                     {"tensor 'w'", "shape has 65 dimensions, at most 64"});
  }
  SECTION("unknown and unsupported dtypes") {
    require_rejected(folder, safetensors_bytes(R"({"q":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", "ab"),
                     {"tensor 'q'", "dtype \"Q4\" is unknown", "expected one of F64 F32"});
    require_rejected(folder, safetensors_bytes(R"({"q":{"dtype":"F8_E8M0","shape":[2],"data_offsets":[0,2]}})", "ab"),
                     {"tensor 'q'", "\"F8_E8M0\" is a safetensors dtype grpo does not support"});
    require_rejected(folder, safetensors_bytes(R"({"q":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", "abcdefgh"),
                     {"tensor 'q'", "\"f32\" is unknown"});
    require_rejected(folder, safetensors_bytes(R"({"q":{"shape":[2],"data_offsets":[0,2]}})", "ab"),
                     {"tensor 'q'", "expected a string field \"dtype\", found none"});
  }
  SECTION("duplicate keys, unknown fields, bad metadata") {
    require_rejected(folder,
                     safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                       R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                       "ab"),
                     {"duplicate key \"a\""});
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","dtype":"I8","shape":[2],"data_offsets":[0,2]}})", "ab"),
                     {"duplicate key \"dtype\" inside an entry"});
    require_rejected(folder, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"x":1}})", "ab"),
                     {"tensor 'a'", "unknown field \"x\""});
    require_rejected(folder, safetensors_bytes(R"({"__metadata__":{"k":1},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "ab"),
                     {"\"__metadata__\" entry \"k\" must be a string, found 1"});
    require_rejected(folder, safetensors_bytes(R"({"__metadata__":[],"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "ab"),
                     {"\"__metadata__\" must be an object"});
    require_rejected(folder, safetensors_bytes(R"({"a":[1,2]})", ""), {"tensor 'a'", "expected an object {dtype, shape, data_offsets}"});
  }
  SECTION("not a file") {
    REQUIRE_THROWS_WITH(SafetensorsFile::open(folder / "missing.safetensors"),
                        Contains("missing.safetensors: cannot open for reading"));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(folder.path()), Contains("expected a regular file, found a folder"));
  }
}

TEST_CASE("safetensors: BOOL bytes other than 0 and 1 are refused at load", "[io][safetensors]") {
  ScratchFolder folder;
  write_bytes(folder / "b.safetensors",
              safetensors_bytes(R"({"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x02", 3)));
  const auto file = SafetensorsFile::open(folder / "b.safetensors");
  REQUIRE_THROWS_WITH(file.tensor("mask"), Contains("b.safetensors: tensor 'mask': BOOL element 2 is 2, expected 0 or 1"));
}

namespace {

/// A copy of the HF sharded fixture in `folder`, with `edit(index_json)` applied to its index.
std::filesystem::path sharded_copy(const ScratchFolder& folder, const std::function<void(json&)>& edit) {
  const auto target = folder / "ckpt";
  std::filesystem::copy(fixture_path("qwen2_sharded"), target);
  auto index = read_json((target / "model.safetensors.index.json").string());
  edit(index);
  write_bytes(target / "model.safetensors.index.json", index.dump(2));
  return target;
}

}  // namespace

TEST_CASE("safetensors: an index that disagrees with its shards is rejected", "[io][safetensors]") {
  ScratchFolder folder;
  SECTION("index names a missing shard") {
    const auto ckpt = sharded_copy(folder, [](json&) {});
    std::filesystem::remove(ckpt / "model-00007-of-00012.safetensors");
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(ckpt),
                        Contains("model.safetensors.index.json: shard 'model-00007-of-00012.safetensors'") &&
                            Contains("does not exist in") && Contains("listed for tensor 'model.layers."));
  }
  SECTION("index lists a tensor its shard does not hold") {
    const auto ckpt = sharded_copy(folder, [](json& index) {
      index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00012.safetensors";
    });
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(ckpt),
                        Contains("tensor 'model.layers.9.mlp.up_proj.weight' is listed in shard "
                                 "'model-00001-of-00012.safetensors' but that file does not hold it"));
  }
  SECTION("a shard holds a tensor the index does not list") {
    const auto ckpt = sharded_copy(folder, [](json& index) { index["weight_map"].erase("model.norm.weight"); });
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(ckpt),
                        Contains("holds tensor 'model.norm.weight', which the index does not list"));
  }
  SECTION("index points outside the folder or is not an index") {
    auto ckpt = sharded_copy(folder, [](json& index) { index["weight_map"]["lm_head.weight"] = "../x.safetensors"; });
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(ckpt),
                        Contains("weight_map[\"lm_head.weight\"]: expected a shard file name in the same folder"));
    write_bytes(ckpt / "model.safetensors.index.json", "{\"weight_map\": 3}");
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(ckpt), Contains("expected an object field \"weight_map\""));
    write_bytes(ckpt / "model.safetensors.index.json", "{\"weight_map\": {");
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(ckpt), Contains("model.safetensors.index.json:1: invalid JSON at column"));
  }
  SECTION("a folder without weights, a missing path") {
    write_bytes(folder / "pytorch_model.bin", "x");
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(folder.path()),
                        Contains("expected model.safetensors or model.safetensors.index.json") &&
                            Contains("found pytorch_model.bin") && Contains(".bin checkpoints are not supported"));
    REQUIRE_THROWS_WITH(SafetensorsCheckpoint::open(folder / "nothing"), Contains("nothing: no such file or folder"));
  }
}

TEST_CASE("safetensors: the writer reproduces the reference writer byte for byte", "[io][safetensors]") {
  ScratchFolder folder;
  SECTION("every dtype, 0-d and empty tensors, metadata") {
    const auto reference = SafetensorsFile::open(fixture_path("all_dtypes.safetensors"));
    grpo::io::NamedTensors tensors;
    for (const auto& name : reference.names()) tensors.emplace_back(name, reference.tensor(name));
    std::reverse(tensors.begin(), tensors.end());  // input order must not matter for one file
    grpo::io::save_safetensors(folder / "out.safetensors", tensors, reference.metadata());
    CHECK(read_bytes(folder / "out.safetensors") == read_bytes(fixture_path("all_dtypes.safetensors")));
    CHECK(folder.entries() == std::vector<std::string>{"out.safetensors"});
  }
  SECTION("a model state dict, sharded and single, like save_pretrained") {
    const auto checkpoint = SafetensorsCheckpoint::open(fixture_path("qwen2_reference.safetensors"));
    const auto tensors = tensors_in_order(checkpoint, order_from(fixture_path("state_dict_order.json")));
    const auto shard_bytes = read_json(fixture_path("shard_bytes.json")).get<std::uint64_t>();

    const auto sharded = grpo::io::save_sharded_safetensors(folder / "sharded", tensors, {.max_shard_bytes = shard_bytes});
    CHECK(sharded.files.size() == 12);
    CHECK(sharded.total_size == 313600);
    const auto hf = std::filesystem::path(fixture_path("qwen2_sharded"));
    for (const auto& file : sharded.files) {
      INFO(file.filename());
      CHECK(read_bytes(file) == read_bytes(hf / file.filename()));
    }
    CHECK(read_bytes(sharded.index) == read_bytes(hf / "model.safetensors.index.json"));

    const auto single = grpo::io::save_sharded_safetensors(folder / "single", tensors);
    REQUIRE(single.files.size() == 1);
    CHECK(single.index.empty());
    CHECK(read_bytes(single.files[0]) == read_bytes(fixture_path("qwen2_single/model.safetensors")));
    CHECK(folder.entries("single") == std::vector<std::string>{"model.safetensors"});
  }
}

TEST_CASE("safetensors: sharding follows huggingface_hub's split", "[io][safetensors]") {
  ScratchFolder folder;
  // Sizes 40, 400, 40, 20 bytes with a 100-byte limit. huggingface_hub: "a" opens shard A (40);
  // "big" (400 > 100) becomes a shard of its own, appended at once, so before A; "c" joins A
  // (80); "d" makes 80 + 20 = 100, not > 100, so it joins A too. Shards: [big], [a, c, d].
  const grpo::io::NamedTensors tensors = {{"a", at::zeros({10})},
                                          {"big", at::ones({100})},
                                          {"c", at::zeros({10})},
                                          {"d", at::zeros({5})}};
  const auto result = grpo::io::save_sharded_safetensors(folder / "x", tensors, {.max_shard_bytes = 100, .prefix = "w"});
  REQUIRE(result.files.size() == 2);
  CHECK(result.files[0].filename() == "w-00001-of-00002.safetensors");
  CHECK(result.total_size == 500);  // 125 floats x 4 bytes
  const auto index = read_json(result.index.string());
  CHECK((index["weight_map"] == json{{"a", "w-00002-of-00002.safetensors"},
                                     {"big", "w-00001-of-00002.safetensors"},
                                     {"c", "w-00002-of-00002.safetensors"},
                                     {"d", "w-00002-of-00002.safetensors"}}));
  CHECK((index["metadata"] == json{{"total_parameters", 125}, {"total_size", 500}}));
  const auto loaded = SafetensorsCheckpoint::open(result.index);
  CHECK(at::equal(loaded.load("big"), at::ones({100})));
}

TEST_CASE("safetensors: the writer takes tensors in any layout and cleans stale shards", "[io][safetensors]") {
  ScratchFolder folder;
  SECTION("non-contiguous, requires_grad, bf16") {
    const at::Tensor base = at::arange(12, at::TensorOptions().dtype(c10::kFloat)).reshape({3, 4});
    const at::Tensor transposed = base.t();  // [4, 3], strides (1, 4)
    const at::Tensor grad = at::ones({2}).set_requires_grad(true);
    const at::Tensor half = base.to(c10::kBFloat16).slice(1, 1, 3);
    grpo::io::save_safetensors(folder / "t.safetensors",
                               std::map<std::string, at::Tensor>{{"t", transposed}, {"g", grad}, {"h", half}});
    const auto file = SafetensorsFile::open(folder / "t.safetensors");
    CHECK(at::equal(file.tensor("t"), transposed.contiguous()));
    CHECK(at::equal(file.tensor("g"), at::ones({2})));
    CHECK(file.info("h").dtype == SafetensorsDtype::bf16);
    CHECK(at::equal(file.tensor("h"), half.contiguous()));
  }
  SECTION("stale files of an earlier save with the same prefix go; others stay") {
    const grpo::io::NamedTensors tensors = {{"a", at::zeros({10})}, {"b", at::zeros({10})}, {"c", at::zeros({10})}};
    write_bytes(folder / "config.json", "{}");
    write_bytes(folder / "model-00001-of-00009.safetensors", "stale");
    write_bytes(folder / "modelx.safetensors", "unrelated");
    grpo::io::save_sharded_safetensors(folder.path(), tensors, {.max_shard_bytes = 40});
    CHECK((folder.entries() == std::vector<std::string>{"config.json", "model-00001-of-00003.safetensors",
                                                       "model-00002-of-00003.safetensors",
                                                       "model-00003-of-00003.safetensors",
                                                       "model.safetensors.index.json", "modelx.safetensors"}));
    grpo::io::save_sharded_safetensors(folder.path(), tensors);
    CHECK((folder.entries() == std::vector<std::string>{"config.json", "model.safetensors", "modelx.safetensors"}));
    grpo::io::save_sharded_safetensors(folder.path(), tensors, {.max_shard_bytes = 80});
    CHECK((folder.entries() == std::vector<std::string>{"config.json", "model-00001-of-00002.safetensors",
                                                       "model-00002-of-00002.safetensors",
                                                       "model.safetensors.index.json", "modelx.safetensors"}));
  }
  SECTION("bad input") {
    REQUIRE_THROWS_WITH(grpo::io::save_safetensors(folder / "x.safetensors",
                                                   grpo::io::NamedTensors{{"a", at::zeros({1})}, {"a", at::ones({1})}}),
                        Contains("tensor 'a': the name is given twice"));
    REQUIRE_THROWS_WITH(grpo::io::save_safetensors(folder / "x.safetensors", grpo::io::NamedTensors{{"u", at::Tensor()}}),
                        Contains("x.safetensors: tensor 'u': the tensor is undefined"));
    REQUIRE_THROWS_WITH(grpo::io::save_safetensors(folder / "x.safetensors",
                                                   grpo::io::NamedTensors{{"z", at::zeros({2}, c10::kComplexFloat)}}),
                        Contains("tensor 'z': dtype ComplexFloat has no safetensors equivalent"));
    REQUIRE_THROWS_WITH(grpo::io::save_safetensors(folder / "x.safetensors",
                                                   grpo::io::NamedTensors{{"__metadata__", at::zeros({1})}}),
                        Contains("\"__metadata__\" is reserved"));
    REQUIRE_THROWS_WITH(grpo::io::save_safetensors(folder / "x.safetensors", grpo::io::NamedTensors{{"bad\xff", at::zeros({1})}}),
                        Contains("a tensor name is not valid UTF-8"));
    REQUIRE_THROWS_WITH(grpo::io::save_sharded_safetensors(folder.path(), grpo::io::NamedTensors{}, {.max_shard_bytes = 0}),
                        Contains("max_shard_bytes: expected > 0"));
    REQUIRE_THROWS_WITH(grpo::io::save_sharded_safetensors(folder.path(), grpo::io::NamedTensors{}, {.prefix = "a/b"}),
                        Contains("ShardOptions::prefix"));
    CHECK(folder.entries().empty());  // nothing half-written
  }
}

// Not part of the suite: tests/python/test_safetensors_io.py runs this with GRPO_IO_EXPORT_DIR
// set, then checks in Python (safetensors, transformers) what grpo wrote.
TEST_CASE("python export: checkpoints written by grpo", "[.][python_export]") {
  const char* out_env = std::getenv("GRPO_IO_EXPORT_DIR");
  if (out_env == nullptr) return;
  const std::filesystem::path out(out_env);
  std::filesystem::create_directories(out);

  const auto all = SafetensorsFile::open(fixture_path("all_dtypes.safetensors"));
  grpo::io::NamedTensors all_tensors;
  for (const auto& name : all.names()) all_tensors.emplace_back(name, all.tensor(name));
  grpo::io::save_safetensors(out / "roundtrip_all_dtypes.safetensors", all_tensors, all.metadata());
  grpo::io::save_safetensors(out / "metadata.safetensors", grpo::io::NamedTensors{{"x", at::arange(6).reshape({2, 3})}},
                             {{"format", "pt"}, {"note", "grpo \u2713"}, {"quote", "a \"b\"\n"}});

  const auto order = order_from(fixture_path("state_dict_order.json"));
  const auto shard_bytes = read_json(fixture_path("shard_bytes.json")).get<std::uint64_t>();
  const auto model = SafetensorsCheckpoint::open(fixture_path("qwen2_sharded"));
  const auto config = grpo::load_qwen2_config(fixture_path("qwen2_sharded"));
  grpo::io::save_sharded_safetensors(out / "ours_sharded", tensors_in_order(model, order), {.max_shard_bytes = shard_bytes});
  grpo::save_qwen2_config(config, out / "ours_sharded");
  grpo::io::save_sharded_safetensors(out / "ours_single", tensors_in_order(model, order));
  grpo::save_qwen2_config(config, out / "ours_single");

  const auto tied = SafetensorsCheckpoint::open(fixture_path("qwen2_tied_bf16"));
  grpo::io::save_sharded_safetensors(out / "ours_tied_bf16", tensors_in_order(tied, tied.names()));
  grpo::save_qwen2_config(grpo::load_qwen2_config(fixture_path("qwen2_tied_bf16")), out / "ours_tied_bf16");

  const auto seqcls = SafetensorsCheckpoint::open(fixture_path("qwen2_seqcls"));
  grpo::io::save_sharded_safetensors(out / "ours_seqcls", tensors_in_order(seqcls, seqcls.names()));
  grpo::save_qwen2_config(grpo::load_qwen2_config(fixture_path("qwen2_seqcls")), out / "ours_seqcls");

  // Configs built in C++ (not parsed): what transformers makes of to_json.
  std::filesystem::create_directories(out / "config_programmatic");
  grpo::save_qwen2_config(grpo::Qwen2Config{.vocab_size = 1000,
                                            .hidden_size = 96,
                                            .intermediate_size = 200,
                                            .num_hidden_layers = 3,
                                            .num_attention_heads = 6,
                                            .num_key_value_heads = 2,
                                            .max_position_embeddings = 2048,
                                            .rope_theta = 1e6,
                                            .rms_norm_eps = 1e-5,
                                            .tie_word_embeddings = true,
                                            .bos_token_id = 3,
                                            .eos_token_ids = {4, 5},
                                            .pad_token_id = 6,
                                            .torch_dtype = "bfloat16",
                                            .architecture = grpo::Qwen2Architecture::sequence_classification,
                                            .num_labels = 1},
                          out / "config_programmatic");
}
