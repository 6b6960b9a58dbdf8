#pragma once
// The JSONL contract every row-transforming subcommand shares: read JSON objects line by line
// from a file or standard input, add fields, write each row to standard output in order (field
// order kept). The whole input is read and checked before any work or output (docs/model.md,
// "Bad lines"): the first bad line stops the program with "<source>:<line>: <reason>" and
// nothing written. Lines are parsed by grpo::io::parse_jsonl_line (io/json.hpp's checks:
// nesting depth, NUL bytes, trailing bytes, numbers in range).

#include <grpo/core/error.hpp>
#include <grpo/io/jsonl.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "outputs.hpp"

namespace lwz {

/// ordered_json keeps the input's field order in the output.
using Row = nlohmann::ordered_json;

/// The help text of the contract, appended to each subcommand's description.
inline constexpr const char* jsonl_contract =
    "Reads JSON Lines from --input (default: standard input) and writes one line per non-blank input line to "
    "standard output, in order, keeping the input's fields and adding new ones. The whole input is read and "
    "checked first: a bad line stops the program with '<source>:<line>: <reason>' and exit code 1 before anything "
    "is written.";

struct NumberedRow {
  Row row;
  std::size_t line = 0;   ///< in the input, for messages
  std::size_t index = 0;  ///< 0-based among the non-blank rows (a request's default seed offset)
};

/// The whole input, parsed: its non-blank lines as rows, numbered.
struct JsonlInput {
  std::string source;  ///< the path, or "<stdin>"
  std::vector<NumberedRow> rows;

  /// "<source>:<line>: ", the prefix of a row's messages.
  std::string where(const NumberedRow& r) const { return source + ":" + std::to_string(r.line) + ": "; }
};

/// Reads every line of `input` (a path, or "-" / empty for standard input) before anything is
/// done with it; throws "<source>:<line>: <reason>" at the first line that is not one JSON object.
inline JsonlInput read_jsonl_input(const std::string& input) {
  const auto stream = open_input(input);
  JsonlInput in{input_name(input), {}};
  std::string text;
  std::size_t line = 0;
  std::size_t index = 0;
  while (std::getline(*stream, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    in.rows.push_back({grpo::io::parse_jsonl_line<Row>(text, in.source, line), line, index++});
  }
  if (stream->bad()) throw grpo::Error(in.source + ": read error after line " + std::to_string(line));
  return in;
}

/// Writes `rows` to standard output, one line each, in order; every write is checked (write_stdout).
inline void write_jsonl_rows(std::span<const NumberedRow> rows) {
  std::string text;
  for (const auto& r : rows) {
    text += r.row.dump(-1, ' ', false, Row::error_handler_t::replace);
    text += '\n';
    if (text.size() >= (std::size_t{1} << 20)) {
      write_stdout(text);
      text.clear();
    }
  }
  if (!text.empty()) write_stdout(text);
}

/// Row by row: `fn(row)` adds fields; a grpo::Error it throws gets the row's "<source>:<line>: ".
/// Every row is transformed before any is written, so a bad line leaves standard output empty.
template <class Fn>
void transform_jsonl(const std::string& input, Fn&& fn) {
  auto in = read_jsonl_input(input);
  for (auto& r : in.rows) {
    try {
      fn(r.row);
    } catch (const grpo::Error& e) {
      throw grpo::Error(in.where(r) + e.what());
    }
  }
  write_jsonl_rows(in.rows);
}

/// The string field `name` of a row, or an error naming it.
inline const std::string& string_field(const Row& row, const std::string& name, const std::string& hint = "") {
  const auto it = row.find(name);
  if (it == row.end()) throw grpo::Error("field \"" + name + "\" is missing; expected a string" + hint);
  if (!it->is_string()) throw grpo::Error("field \"" + name + "\" must be a string, found " + std::string(it->type_name()));
  return it->get_ref<const std::string&>();
}

}  // namespace lwz
