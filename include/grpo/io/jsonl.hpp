#pragma once
// JSON Lines in and out: one object per line, errors that name the source and the line.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <fstream>
#include <istream>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/json.hpp"

namespace grpo::io {

using json = nlohmann::json;

/// Parses one JSONL line into an object (nlohmann::json, or ordered_json to keep the field order)
/// with parse_json's checks (io/json.hpp). `source` and `line` only shape the error message:
/// "prompts.jsonl:17: invalid JSON at column 5: <reason>" or "...: expected a JSON object, found array".
template <class Json = json>
Json parse_jsonl_line(std::string_view text, std::string_view source, std::size_t line) {
  Json value = parse_json<Json>(text, source, {.first_line = line});
  if (!value.is_object()) {
    throw Error(fmt::format("{}:{}: expected a JSON object, found {}", source, line, value.type_name()));
  }
  return value;
}

/// Calls `fn(object, line_number)` for every non-blank line of `in` (1-based line numbers).
template <class Fn>
void for_each_jsonl(std::istream& in, std::string_view source, Fn&& fn) {
  std::string text;
  std::size_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    fn(parse_jsonl_line(text, source, line), line);
  }
  if (in.bad()) throw Error(fmt::format("{}: read error after line {}", source, line));
}

/// Reads every object of a JSONL file; throws grpo::Error naming the file if it cannot be opened.
inline std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  std::vector<json> rows;
  for_each_jsonl(in, path, [&](json row, std::size_t) { rows.push_back(std::move(row)); });
  return rows;
}

/// Writes one object as one line. Invalid UTF-8 inside strings is replaced by U+FFFD rather
/// than aborting the stream.
inline void write_jsonl(std::ostream& out, const json& row) {
  out << row.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
}

/// Returns the string field `name` of `row`, or throws naming the source, the line and the field.
inline const std::string& require_string(const json& row, std::string_view name, std::string_view source,
                                         std::size_t line) {
  auto it = row.find(name);
  if (it == row.end() || !it->is_string()) {
    throw Error(fmt::format("{}:{}: field \"{}\" {}", source, line, name,
                            it == row.end() ? std::string("is missing")
                                            : fmt::format("must be a string, found {}", it->type_name())));
  }
  return it->get_ref<const std::string&>();
}

}  // namespace grpo::io
