// Every JSON entry point of the library against every hostile family of issue 15: 70,000 levels of
// nesting, a NUL byte (after the document, where nlohmann's lexer would stop reading, and inside
// it), bytes after the value, a number out of range (1e400), invalid UTF-8 in a string, a field of
// the wrong type. Each must be a grpo::Error naming the file and the line (or, for a wrong type,
// the field): never a crash (a stack overflow kills this process), never silently accepted. The
// references are RFC 8259 (one value per text, UTF-8, no raw control characters in strings, an
// implementation may bound nesting depth and number range) and the reference safetensors, which
// rejects anything after the header's object.

#include "grpo/io/json.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "grpo/data/prompt_dataset.hpp"
#include "grpo/io/jsonl.hpp"
#include "grpo/io/safetensors.hpp"
#include "grpo/model/lora.hpp"
#include "grpo/model/qwen2_config.hpp"
#include "grpo/tokenizer/tokenizer.hpp"
#include "grpo/trainer/metrics.hpp"
#include "io_test_support.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using grpo::test::read_bytes;
using grpo::test::safetensors_bytes;
using grpo::test::ScratchFolder;
using grpo::test::write_bytes;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string deep_array = std::string(70'000, '[') + std::string(70'000, ']');

/// One hostile family: how it breaks a valid one-line object document.
struct Family {
  const char* name;
  std::string (*apply)(const std::string& object);  // {"k": ...} -> the hostile text
};

const Family hostile_families[] = {
    {"70,000 levels of nesting", [](const std::string& o) { return "{\"deep\": " + deep_array + ", " + o.substr(1); }},
    {"a NUL byte after the document", [](const std::string& o) { return o + std::string(1, '\0') + "{\"more\": 1}"; }},
    {"a NUL byte inside the document", [](const std::string& o) { return "{" + std::string(1, '\0') + o.substr(1); }},
    {"bytes after the value", [](const std::string& o) { return o + " x"; }},
    {"a number out of range", [](const std::string& o) { return "{\"big\": 1e400, " + o.substr(1); }},
    {"invalid UTF-8 in a string", [](const std::string& o) { return "{\"bad\": \"\xff\xfe\", " + o.substr(1); }},
};

/// An entry point: the file it reads, a document it accepts, the same with one field of the wrong
/// type, and how it is read. JSONL readers get a valid line 1 and the hostile text as line 2.
struct EntryPoint {
  const char* name;
  std::string file;        // written in the scratch folder
  std::string valid;       // one line, accepted
  std::string wrong_type;  // one line, valid JSON with `field` of the wrong type
  std::string field;       // what the wrong-type message names
  bool jsonl = false;
  bool has_lines = true;   // false: a binary container (the message names the byte of the header)
  std::function<void(const ScratchFolder&)> prepare = [](const ScratchFolder&) {};
  std::function<void(const ScratchFolder&)> load;
  std::function<std::string(const std::string&)> wrap = [](const std::string& text) { return text; };
};

const std::string one_u8 = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";

/// A byte-level BPE tokenizer.json with four tokens, the least the loader accepts.
const std::string tiny_tokenizer =
    R"({"version":"1.0","added_tokens":[],"normalizer":null,)"
    R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},)"
    R"("post_processor":null,)"
    R"("decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},)"
    R"("model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,)"
    R"("end_of_word_suffix":null,)"
    R"("fuse_unk":false,"byte_fallback":false,"vocab":{"a":0,"b":1,"ab":2,"c":3},"merges":["a b"]}})";

std::vector<EntryPoint> entry_points() {
  const std::string qwen2_config =
      json::parse(read_bytes(fs::path(GRPO_SOURCE_DIR) / "examples/data/tiny/base-policy/config.json")).dump();
  json wrong_config = json::parse(qwen2_config);
  wrong_config["hidden_size"] = "64";
  json wrong_tokenizer = json::parse(tiny_tokenizer);
  wrong_tokenizer["model"]["vocab"]["a"] = "zero";
  return {
      {.name = "config.json (load_qwen2_config)",
       .file = "config.json",
       .valid = qwen2_config,
       .wrong_type = wrong_config.dump(),
       .field = "hidden_size",
       .load = [](const ScratchFolder& f) { (void)grpo::load_qwen2_config(f.path()); }},
      {.name = "model.safetensors header (SafetensorsFile)",
       .file = "model.safetensors",
       .valid = one_u8,
       .wrong_type = R"({"a":{"dtype":5,"shape":[2],"data_offsets":[0,2]}})",
       .field = "dtype",
       .has_lines = false,
       .load = [](const ScratchFolder& f) { (void)grpo::io::SafetensorsFile::open(f / "model.safetensors"); },
       .wrap = [](const std::string& header) { return safetensors_bytes(header, "ab"); }},
      {.name = "model.safetensors.index.json (SafetensorsCheckpoint)",
       .file = "model.safetensors.index.json",
       .valid = R"({"metadata":{},"weight_map":{"a":"shard.safetensors"}})",
       .wrong_type = R"({"metadata":{},"weight_map":["a"]})",
       .field = "weight_map",
       .prepare = [](const ScratchFolder& f) { write_bytes(f / "shard.safetensors", safetensors_bytes(one_u8, "ab")); },
       .load = [](const ScratchFolder& f) { (void)grpo::io::SafetensorsCheckpoint::open(f.path()); }},
      {.name = "tokenizer.json (Tokenizer::from_file)",
       .file = "tokenizer.json",
       .valid = tiny_tokenizer,
       .wrong_type = wrong_tokenizer.dump(),
       .field = "model.vocab[\"a\"]",
       .load = [](const ScratchFolder& f) { (void)grpo::Tokenizer::from_file(f.path()); }},
      {.name = "tokenizer_config.json (Tokenizer::from_file)",
       .file = "tokenizer_config.json",
       .valid = R"({"eos_token":"c"})",
       .wrong_type = R"({"eos_token":5})",
       .field = "eos_token",
       .prepare = [](const ScratchFolder& f) { write_bytes(f / "tokenizer.json", tiny_tokenizer); },
       .load = [](const ScratchFolder& f) { (void)grpo::Tokenizer::from_file(f.path()); }},
      {.name = "adapter_config.json (load_lora_config)",
       .file = "adapter_config.json",
       .valid = R"({"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q_proj"]})",
       .wrong_type = R"({"peft_type":"LORA","r":"two","lora_alpha":4,"target_modules":["q_proj"]})",
       .field = "r:",
       .load = [](const ScratchFolder& f) { (void)grpo::load_lora_config(f.path()); }},
      {.name = "a prompt file (PromptDataset::from_jsonl)",
       .file = "prompts.jsonl",
       .valid = R"({"prompt":"Write about tea.","lower":100,"upper":400})",
       .wrong_type = R"({"prompt":5})",
       .field = "\"prompt\"",
       .jsonl = true,
       .load = [](const ScratchFolder& f) { (void)grpo::PromptDataset::from_jsonl(f / "prompts.jsonl"); }},
      {.name = "JSON Lines (io::read_jsonl)",
       .file = "rows.jsonl",
       .valid = R"({"text":"a b c"})",
       .wrong_type = R"({"text":["a"]})",
       .field = "\"text\"",
       .jsonl = true,
       .load =
           [](const ScratchFolder& f) {
             const auto path = (f / "rows.jsonl").string();
             std::size_t line = 0;
             for (const auto& row : grpo::io::read_jsonl(path)) {
               (void)grpo::io::require_string(row, "text", path, ++line);
             }
           }},
  };
}

/// The message `load` throws for the file holding `text`, or "accepted".
std::string error_of(const EntryPoint& entry, const std::string& text) {
  ScratchFolder folder;
  entry.prepare(folder);
  write_bytes(folder / entry.file, entry.wrap(entry.jsonl ? entry.valid + "\n" + text + "\n" : text));
  try {
    entry.load(folder);
  } catch (const grpo::Error& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("json input: every entry point refuses every hostile family, naming the file and the line",
          "[io][json_input]") {
  for (const auto& entry : entry_points()) {
    INFO(entry.name);
    REQUIRE(error_of(entry, entry.valid) == "accepted");  // the base document is fine
    const std::string line = entry.jsonl ? ":2:" : ":1:";
    for (const auto& family : hostile_families) {
      INFO(family.name);
      const std::string message = error_of(entry, family.apply(entry.valid));
      CHECK_THAT(message, Contains(entry.file));
      if (entry.has_lines) {
        CHECK_THAT(message, Contains(entry.file + line + " invalid JSON at column"));
      } else {
        CHECK_THAT(message, Contains("header is not valid JSON (at byte"));
      }
      CHECK(message.size() < 600);  // nothing of the document is echoed whole
    }
    INFO("a field of the wrong type");
    const std::string message = error_of(entry, entry.wrong_type);
    CHECK_THAT(message, Contains(entry.file) && Contains(entry.field));
    if (entry.jsonl) CHECK_THAT(message, Contains(entry.file + ":2:"));
  }
}

TEST_CASE("json input: where a failure is, by line and column of the file", "[io][json_input]") {
  const auto message = [](std::string_view text, const grpo::io::JsonParseOptions& options = {}) {
    try {
      (void)grpo::io::parse_json(text, "f.json", options);
    } catch (const grpo::Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  // The parser stops at the '}' after "tru": column 11 of line 3.
  CHECK_THAT(message("{\n  \"a\": 1,\n  \"b\": tru}"), Contains("f.json:3: invalid JSON at column 11:"));
  CHECK_THAT(message("{\"a\": 1}", {.first_line = 40}), Equals("accepted"));
  CHECK_THAT(message("{\"a\": x}", {.first_line = 40}), Contains("f.json:40: invalid JSON at column 7:"));
  // The NUL is byte 9 of line 2.
  CHECK_THAT(message(std::string("{\"a\": 1,\n \"b\": 2}\0 junk", 23)),
             Contains("f.json:2: invalid JSON at column 9: a NUL byte"));
  CHECK_THAT(message("[1e400]"), Contains("number overflow") && Contains("1e400"));
  CHECK_THAT(message("[-1e400]"), Contains("number overflow"));
  CHECK_THAT(message(""), Contains("f.json:1: invalid JSON") && Contains("end of input"));
  CHECK_THAT(message("{} {}"), Contains("f.json:1: invalid JSON at column 4:"));
  CHECK_THAT(message("{}  \n\t "), Equals("accepted"));  // whitespace after the value is not a value
  // The parser's message quotes the token it stopped at: a megabyte string is cut.
  CHECK(message("[\"" + std::string(1'000'000, 'x')).size() < 400);
}

TEST_CASE("json input: the nesting bound counts brackets outside strings and comments only", "[io][json_input]") {
  const auto depth_text = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK_NOTHROW(grpo::io::parse_json(depth_text(grpo::io::max_json_depth), "f.json"));
  CHECK_THROWS_WITH(grpo::io::parse_json(depth_text(grpo::io::max_json_depth + 1), "f.json"),
                    Contains("f.json:1: invalid JSON at column 257: nested deeper than 256 levels"));
  // 1,000 brackets inside a string (with an escaped quote before them) are text.
  const auto text = grpo::io::parse_json("[\"\\\"" + std::string(1000, '[') + "\"]", "f.json");
  CHECK(text[0].get<std::string>().size() == 1001);
  // Inside comments too, where comments are allowed; the line of a comment still counts.
  const std::string commented = "// [[[[\n{\"a\": /* " + std::string(1000, '{') + " */ 1,\n \"b\": x}";
  CHECK_THROWS_WITH(grpo::io::parse_json(commented, "c.json", {.comments = true}), Contains("c.json:3: invalid JSON"));
  CHECK(grpo::io::parse_json("// note\n{\"a\": /* [ */ 1}", "c.json", {.comments = true})["a"] == 1);
  CHECK_THROWS_WITH(grpo::io::parse_json("// note\n{}", "c.json"), Contains("c.json:1: invalid JSON"));
  // ordered_json keeps the field order.
  const auto ordered = grpo::io::parse_json<nlohmann::ordered_json>(R"({"z": 1, "a": 2})", "f.json");
  CHECK(ordered.dump() == R"({"z":1,"a":2})");
}

TEST_CASE("json input: quote_json shows at most 120 characters of any value", "[io][json_input]") {
  using grpo::io::quote_json;
  CHECK(quote_json(json{{"a", 1}}) == R"({"a":1})");
  CHECK(quote_json(json("tea")) == R"("tea")");
  CHECK(quote_json(json(1e9)) == "1000000000.0");
  const std::string long_text(10'000, 'x');
  CHECK(quote_json(json(long_text)) == "\"" + std::string(119, 'x') + "... (10000 bytes)");
  CHECK(quote_json(json::array({long_text, 1})) == "[\"" + std::string(118, 'x') + "... (2 elements)");
  // A value nested 100,000 deep (built in memory, so no parser bounded it): 120 characters, no
  // recursion past them.
  json deep = json::array();
  json* inner = &deep;
  for (int i = 0; i < 100'000; ++i) inner = &inner->emplace_back(json::array());
  CHECK(quote_json(deep) == std::string(120, '[') + "... (1 elements)");
  // Invalid UTF-8 is replaced; a character is never cut in two (the quote stays valid UTF-8).
  CHECK(grpo::io::quote_text("caf\xc3\xa9 \xff") == "\"caf\xc3\xa9 \xef\xbf\xbd\"");
  for (std::size_t limit = 1; limit < 12; ++limit) {
    const auto quoted = grpo::io::quote_text("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", limit);
    CHECK_NOTHROW(json(quoted).dump());  // nlohmann's dump throws on invalid UTF-8
  }
}

TEST_CASE("json input: json_integer reads integers in range, never wrapping", "[io][json_input]") {
  using grpo::io::json_integer;
  constexpr auto max64 = std::numeric_limits<std::int64_t>::max();
  CHECK(json_integer(json(5), 0, 10) == 5);
  CHECK(json_integer(json(-5), 0, 10) == std::nullopt);
  CHECK(json_integer(json(-5), -10, 10) == -5);
  CHECK(json_integer(json(11), 0, 10) == std::nullopt);
  CHECK(json_integer(json(5.0), 0, 10) == std::nullopt);  // a float, even a whole one
  CHECK(json_integer(json(1e9), 0, max64) == std::nullopt);
  CHECK(json_integer(json("5"), 0, 10) == std::nullopt);
  CHECK(json_integer(json(std::uint64_t{1} << 63), 0, max64) == std::nullopt);  // 2^63 does not wrap to -2^63
  CHECK(json_integer(json(std::uint64_t{1} << 63), std::numeric_limits<std::int64_t>::min(), max64) == std::nullopt);
  CHECK(json_integer(grpo::io::parse_json("18446744073709551615", "n.json"), -1, max64) == std::nullopt);
  CHECK(json_integer(json(max64), 0, max64) == max64);
  CHECK(json_integer(json(3), -10, -1) == std::nullopt);
}

TEST_CASE("json input: a prompt file's word ranges are bounded", "[io][json_input]") {
  ScratchFolder folder;
  for (const std::string row : {R"({"prompt": "p", "lower": 1, "upper": 1e29})",
                                R"({"prompt": "p", "lower": 1, "upper": 18446744073709551615})",
                                R"({"prompt": "p", "lower": -1, "upper": 10})",
                                R"({"prompt": "p", "lower": 1, "upper": 1000000001})"}) {
    INFO(row);
    write_bytes(folder / "p.jsonl", "{\"prompt\": \"ok\"}\n" + row + "\n");
    CHECK_THROWS_WITH(grpo::PromptDataset::from_jsonl(folder / "p.jsonl"),
                      Contains("p.jsonl:2:") && Contains("0 <= lower <= upper <= 1000000000"));
  }
}

TEST_CASE("json input: a resumed metrics file drops hostile rows instead of crashing", "[io][json_input]") {
  ScratchFolder folder;
  const std::string kept = R"({"step":1,"reward":0.5})";
  write_bytes(folder / "metrics.jsonl", kept + "\n" + "{\"step\":1,\"deep\":" + deep_array + "}\n" +
                                            std::string("{\"step\":1}\0x\n", 13) + "{\"step\":1e400}\n" +
                                            "{\"step\":1e30}\n{\"step\":2}\n{\"step\":1} x\n");
  { grpo::MetricsWriter writer(folder / "metrics.jsonl", /*resume_step=*/1); }
  CHECK(read_bytes(folder / "metrics.jsonl") == kept + "\n");
}
