// Tokenizer subcommand: tokenize.
//
// Reads JSON Lines (a file, or standard input) and writes JSON Lines to standard output: one
// output line per non-blank input line, in order, with the input's fields kept in their order and
// "ids" appended (replacing an input field of that name). The first bad line (invalid JSON, not an
// object, the field missing or not a string) stops the program with "<source>:<line>: <what is
// wrong>" on standard error and exit code 1, with nothing written: the whole input is read and
// checked before the first output line (the rule of every JSONL subcommand, docs/model.md).
#include <grpo/core/error.hpp>
#include <grpo/tokenizer/tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "jsonl_rows.hpp"

namespace {

void add_tokenize(CLI::App& app) {
  struct Options {
    std::string tokenizer;
    std::string field = "prompt";
    std::string input;
    bool no_special = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "tokenize",
      "Adds \"ids\": the token ids of a string field, identical to Hugging Face tokenizers' encode(text).ids "
      "(special tokens written in the text are recognised unless --no-special). Reads JSON Lines from --input "
      "(default: standard input) and writes one line per non-blank input line to standard output, in order, "
      "keeping the input's fields. Stops at the first bad line with '<source>:<line>: <reason>' and exit code 1.");
  cmd->add_option("--tokenizer", o->tokenizer, "a tokenizer.json, or a folder holding one (e.g. a model folder)")->required();
  cmd->add_option("--field", o->field, "the string field to tokenize")->capture_default_str();
  cmd->add_option("--input", o->input, "JSONL file, or - for standard input")->default_str("-");
  cmd->add_flag("--no-special", o->no_special,
                "tokenize special tokens written in the text (e.g. <|im_end|>) as plain text, like transformers' "
                "split_special_tokens=True");
  cmd->callback([o] {
    const grpo::Tokenizer tokenizer = grpo::Tokenizer::from_file(o->tokenizer);
    std::vector<std::int64_t> ids;
    lwz::transform_jsonl(o->input, [&](lwz::Row& row) {
      ids.clear();
      tokenizer.encode_into(lwz::string_field(row, o->field, " (choose it with --field)"), ids, !o->no_special);
      row["ids"] = ids;
    });
  });
}

const lwz::Registration registration{&add_tokenize};

}  // namespace
