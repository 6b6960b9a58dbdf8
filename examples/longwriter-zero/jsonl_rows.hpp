#pragma once
// The JSONL contract every row-transforming subcommand shares: read JSON objects line by line
// from a file or standard input, add fields, write each row to standard output in order (field
// order kept), stop at the first bad line with "<source>:<line>: <reason>".

#include <grpo/core/error.hpp>
#include <grpo/text/utf8.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"

namespace lwz {

/// ordered_json keeps the input's field order in the output.
using Row = nlohmann::ordered_json;

/// The help text of the contract, appended to each subcommand's description.
inline constexpr const char* jsonl_contract =
    "Reads JSON Lines from --input (default: standard input) and writes one line per non-blank input line to "
    "standard output, in order, keeping the input's fields and adding new ones. Stops at the first bad line "
    "with '<source>:<line>: <reason>' and exit code 1.";

struct NumberedRow {
  Row row;
  std::size_t line = 0;   ///< in the input, for messages
  std::size_t index = 0;  ///< 0-based among the non-blank rows (a request's default seed offset)
};

/// Reads the input in batches of `batch_size` rows; `fn(batch, where)` fills the rows, which are
/// then written in order. `where(row)` gives the "<source>:<line>: " prefix of a row.
template <class Fn>
void transform_jsonl_batches(const std::string& input, std::int64_t batch_size, Fn&& fn) {
  if (batch_size <= 0) throw grpo::Error("--batch-size: expected >= 1, found " + std::to_string(batch_size));
  const auto stream = open_input(input);
  const std::string source = input_name(input);
  const auto where = [&](const NumberedRow& r) { return source + ":" + std::to_string(r.line) + ": "; };
  std::vector<NumberedRow> batch;
  const auto flush = [&] {
    if (batch.empty()) return;
    fn(batch, where);
    for (const auto& r : batch) std::cout << r.row.dump(-1, ' ', false, Row::error_handler_t::replace) << '\n';
    std::cout.flush();
    batch.clear();
  };
  std::string text;
  std::size_t line = 0;
  std::size_t index = 0;
  while (std::getline(*stream, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    NumberedRow r{Row(), line, index++};
    try {
      r.row = Row::parse(text);
    } catch (const Row::parse_error& e) {
      throw grpo::Error(where(r) + "invalid JSON (" + grpo::utf8::sanitize(e.what()) + "); each line must be one JSON object");
    }
    if (!r.row.is_object()) throw grpo::Error(where(r) + "expected a JSON object, found " + std::string(r.row.type_name()));
    batch.push_back(std::move(r));
    if (static_cast<std::int64_t>(batch.size()) == batch_size) flush();
  }
  if (stream->bad()) throw grpo::Error(source + ": read error after line " + std::to_string(line));
  flush();
}

/// Row by row: `fn(row)` adds fields; a grpo::Error it throws gets the row's "<source>:<line>: ".
template <class Fn>
void transform_jsonl(const std::string& input, Fn&& fn) {
  transform_jsonl_batches(input, 1, [&](std::vector<NumberedRow>& batch, auto&& where) {
    try {
      fn(batch.front().row);
    } catch (const grpo::Error& e) {
      throw grpo::Error(where(batch.front()) + e.what());
    }
  });
}

/// The string field `name` of a row, or an error naming it.
inline const std::string& string_field(const Row& row, const std::string& name, const std::string& hint = "") {
  const auto it = row.find(name);
  if (it == row.end()) throw grpo::Error("field \"" + name + "\" is missing; expected a string" + hint);
  if (!it->is_string()) throw grpo::Error("field \"" + name + "\" must be a string, found " + std::string(it->type_name()));
  return it->get_ref<const std::string&>();
}

}  // namespace lwz
