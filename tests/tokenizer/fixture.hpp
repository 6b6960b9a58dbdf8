#pragma once
// Shared helpers of the tokenizer tests: the reference cases made by Hugging Face tokenizers
// (tests/python/fixtures/tokenizer.py) and the shipped Qwen2.5 tokenizer.

#include <grpo/tokenizer/detail/byte_level.hpp>
#include <grpo/tokenizer/tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace grpo::test {

inline std::filesystem::path tokenizer_fixture_dir() { return std::filesystem::path(GRPO_FIXTURE_DIR) / "tokenizer"; }

inline std::filesystem::path qwen_tokenizer_path() {
  return std::filesystem::path(GRPO_SOURCE_DIR) / "examples/data/qwen2.5-tokenizer/tokenizer.json";
}

/// The shipped Qwen2.5 tokenizer, loaded once per test process.
inline const Tokenizer& qwen_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::from_file(qwen_tokenizer_path().parent_path());
  return tokenizer;
}

inline std::string read_binary(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": missing; run the fixtures (ctest -R fixtures/make)");
  std::ostringstream s;
  s << in.rdbuf();
  return std::move(s).str();
}

inline nlohmann::json read_json(const std::filesystem::path& path) { return nlohmann::json::parse(read_binary(path)); }

inline std::string unhex(const std::string& hex) {
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

inline std::vector<std::int64_t> ids_of(const nlohmann::json& array) { return array.get<std::vector<std::int64_t>>(); }

/// A piece spelled as tokenizers' pre_tokenize_str returns it (byte-level: " a" -> "Ġa").
inline std::string byte_level(std::string_view piece) {
  std::string out;
  tokenizer_detail::append_byte_level(out, piece);
  return out;
}

}  // namespace grpo::test
