// Bad tokenizer files: every unsupported feature or malformed field is a grpo::Error naming the
// file and the field, never a crash or a silently different tokenizer.
#include <catch2/catch.hpp>

#include <grpo/tokenizer/tokenizer.hpp>

#include <filesystem>
#include <fstream>

#include "fixture.hpp"

using grpo::Tokenizer;
using json = nlohmann::json;
using Catch::Contains;

namespace {

/// A valid trained tokenizer (GPT-2 style) to break one field at a time.
json base() { return grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "tiny_gpt2/tokenizer.json"); }

std::string error_of(const json& j) {
  try {
    (void)Tokenizer::from_json(j, "bad.json");
  } catch (const grpo::Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("tokenizer.json errors name the file and the field", "[tokenizer]") {
  REQUIRE(error_of(base()) == "no error");

  json j = base();
  j["model"]["type"] = "WordPiece";
  CHECK_THAT(error_of(j), Contains("bad.json") && Contains("model.type") && Contains("BPE"));

  j = base();
  j["model"]["dropout"] = 0.1;
  CHECK_THAT(error_of(j), Contains("model.dropout"));

  j = base();
  j["pre_tokenizer"] = json{{"type", "Whitespace"}};
  CHECK_THAT(error_of(j), Contains("pre_tokenizer.type") && Contains("Whitespace"));

  j = base();
  j["pre_tokenizer"] = json{{"type", "Sequence"}, {"pretokenizers", json::array({json{{"type", "Digits"}, {"individual_digits", true}}})}};
  CHECK_THAT(error_of(j), Contains("pre_tokenizer.pretokenizers[0].type") && Contains("Digits"));

  j = base();
  j["pre_tokenizer"] = json{{"type", "Sequence"},
                            {"pretokenizers", json::array({json{{"type", "ByteLevel"}, {"add_prefix_space", false}},
                                                           json{{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}}})}};
  CHECK_THAT(error_of(j), Contains("ByteLevel must be the last"));

  j = base();
  j["pre_tokenizer"] = nullptr;
  CHECK_THAT(error_of(j), Contains("pre_tokenizer") && Contains("ByteLevel"));

  j = base();
  j["pre_tokenizer"] = json{{"type", "Sequence"},
                            {"pretokenizers", json::array({json{{"type", "Split"}, {"pattern", {{"Regex", "\\p{Han}+"}}}, {"behavior", "Isolated"}},
                                                           json{{"type", "ByteLevel"}}})}};
  CHECK_THAT(error_of(j), Contains("pre_tokenizer.pretokenizers[0].pattern") && Contains("\\p{Han}"));

  j = base();
  j["pre_tokenizer"] = json{{"type", "Sequence"},
                            {"pretokenizers", json::array({json{{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}},
                                                           json{{"type", "ByteLevel"}}})}};
  CHECK_THAT(error_of(j), Contains("pretokenizers[0].behavior") && Contains("Sideways"));

  j = base();
  j["normalizer"] = json{{"type", "Lowercase"}};
  CHECK_THAT(error_of(j), Contains("normalizer.type") && Contains("Lowercase"));

  j = base();
  j["normalizer"] = json{{"type", "Sequence"}, {"normalizers", json::array({json{{"type", "NFC"}}, json{{"type", "Strip"}}})}};
  CHECK_THAT(error_of(j), Contains("normalizer.normalizers[1].type"));

  j = base();
  j["decoder"] = json{{"type", "WordPiece"}};
  CHECK_THAT(error_of(j), Contains("decoder.type"));

  j = base();
  j["post_processor"] = json{{"type", "TemplateProcessing"}};
  CHECK_THAT(error_of(j), Contains("post_processor.type") && Contains("TemplateProcessing"));

  j = base();
  j["truncation"] = json{{"max_length", 512}};
  CHECK_THAT(error_of(j), Contains("truncation"));

  j = base();
  j["model"]["merges"].push_back("Ġ notatoken");
  CHECK_THAT(error_of(j), Contains("model.merges[") && Contains("notatoken"));

  j = base();
  j["model"]["merges"].push_back("one-token-only");
  CHECK_THAT(error_of(j), Contains("model.merges["));

  j = base();
  j["model"]["vocab"]["duplicate-id"] = 5;
  CHECK_THAT(error_of(j), Contains("model.vocab[") && Contains("already used"));

  j = base();
  j["model"]["vocab"]["negative"] = -1;
  CHECK_THAT(error_of(j), Contains("model.vocab[\"negative\"]"));

  j = base();
  j["model"]["vocab"] = json::array();
  CHECK_THAT(error_of(j), Contains("model.vocab"));

  j = base();
  j["model"]["unk_token"] = "<nope>";
  CHECK_THAT(error_of(j), Contains("model.unk_token"));

  j = base();
  j["added_tokens"][1]["id"] = 9999;  // tokenizers would number it after the one before
  CHECK_THAT(error_of(j), Contains("added_tokens[1].id") && Contains("9999"));

  j = base();
  j["added_tokens"].push_back(j["added_tokens"][0]);
  CHECK_THAT(error_of(j), Contains("added twice"));

  j = base();
  j["added_tokens"][0]["lstrip"] = "yes";
  CHECK_THAT(error_of(j), Contains("added_tokens[0].lstrip"));

  CHECK_THAT(error_of(json::array()), Contains("JSON object"));
  j = base();
  j.erase("model");
  CHECK_THAT(error_of(j), Contains("model") && Contains("missing"));
}

TEST_CASE("tokenizer files: missing, truncated or not JSON", "[tokenizer]") {
  const auto dir = std::filesystem::temp_directory_path() / "grpo_tokenizer_errors_test";
  std::filesystem::create_directories(dir);
  CHECK_THROWS_WITH(Tokenizer::from_file(dir / "nope.json"), Contains("nope.json") && Contains("cannot open"));
  CHECK_THROWS_WITH(Tokenizer::from_file(dir), Contains("tokenizer.json") && Contains("cannot open"));
  const std::string full = grpo::test::read_binary(grpo::test::tokenizer_fixture_dir() / "tiny_gpt2/tokenizer.json");
  for (const std::size_t cut : {std::size_t{0}, std::size_t{1}, full.size() / 3, full.size() / 2, full.size() - 2}) {
    std::ofstream(dir / "tokenizer.json", std::ios::binary) << full.substr(0, cut);
    CHECK_THROWS_WITH(Tokenizer::from_file(dir), Contains("tokenizer.json") && Contains("invalid JSON"));
  }
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << full;
  std::ofstream(dir / "tokenizer_config.json", std::ios::binary) << R"({"eos_token": "<not-a-token>"})";
  CHECK_THROWS_WITH(Tokenizer::from_file(dir), Contains("eos_token") && Contains("<not-a-token>"));
  std::ofstream(dir / "tokenizer_config.json", std::ios::binary) << R"({"eos_token": {"content": "</s>"}, "bos_token": "<s>"})";
  const Tokenizer tok = Tokenizer::from_file(dir);
  CHECK(tok.eos_token_id() == tok.token_to_id("</s>"));
  CHECK(tok.bos_token_id() == tok.token_to_id("<s>"));
  std::filesystem::remove_all(dir);
}
