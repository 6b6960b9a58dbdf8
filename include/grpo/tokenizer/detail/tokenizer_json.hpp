#pragma once
// Fast reading of tokenizer.json. Most of a real file is model.vocab (150k entries) and
// model.merges (150k pairs); building nlohmann DOM nodes for them costs more than everything
// else together. This SAX handler streams those two straight into flat vectors and builds an
// ordinary DOM for the rest.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/json.hpp"

namespace grpo::tokenizer_detail {

/// model.vocab and model.merges as read from the file, in file order.
struct ModelTables {
  std::vector<std::pair<std::string, std::int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool has_vocab = false;
  bool has_merges = false;
};

/// Splits "left right" (exactly one space) into its two tokens; false when malformed.
inline bool split_merge_line(const std::string& line, std::pair<std::string, std::string>& out) {
  const auto space = line.find(' ');
  if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) return false;
  out.first.assign(line, 0, space);
  out.second.assign(line, space + 1);
  return true;
}

class TokenizerJsonSax {
 public:
  using json = nlohmann::json;

  TokenizerJsonSax(std::string source, ModelTables& tables) : source_(std::move(source)), tables_(tables) {}

  json take_root() { return std::move(root_); }

  bool null() { return value(nullptr); }
  bool boolean(bool b) { return value(b); }
  bool number_integer(json::number_integer_t n) { return number(n); }
  bool number_unsigned(json::number_unsigned_t n) {
    if (mode_ == Mode::vocab && n >= (std::uint64_t{1} << 31)) vocab_error(json(n));
    return number(static_cast<std::int64_t>(n));
  }
  bool number_float(json::number_float_t f, const std::string&) {
    if (mode_ != Mode::none) table_error(json(f));
    return value(f);
  }
  bool string(std::string& s) {
    if (mode_ == Mode::merges) {
      if (merge_depth_ == 0) {
        std::pair<std::string, std::string> pair;
        if (!split_merge_line(s, pair)) merge_error(json(s));
        tables_.merges.push_back(std::move(pair));
      } else {
        merge_parts_.push_back(std::move(s));
      }
      return true;
    }
    if (mode_ == Mode::vocab) vocab_error(json(s));
    return value(std::move(s));
  }
  bool binary(json::binary_t&) { return value(nullptr); }

  bool start_object(std::size_t) {
    if (mode_ != Mode::none) table_error(json::object());
    if (at("model", "vocab")) {
      mode_ = Mode::vocab;
      tables_.has_vocab = true;
      return true;
    }
    push(json::object());
    return true;
  }
  bool key(std::string& k) {
    if (mode_ == Mode::vocab) {
      vocab_key_ = std::move(k);
      return true;
    }
    key_ = std::move(k);
    return true;
  }
  bool end_object() {
    if (mode_ == Mode::vocab) {
      mode_ = Mode::none;
      return true;
    }
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    if (mode_ == Mode::merges) {
      if (merge_depth_ != 0) merge_error(json::array());
      merge_depth_ = 1;
      merge_parts_.clear();
      return true;
    }
    if (mode_ == Mode::vocab) vocab_error(json::array());
    if (at("model", "merges")) {
      mode_ = Mode::merges;
      tables_.has_merges = true;
      return true;
    }
    push(json::array());
    return true;
  }
  bool end_array() {
    if (mode_ == Mode::merges) {
      if (merge_depth_ == 1) {
        if (merge_parts_.size() != 2) merge_error(json(merge_parts_));
        tables_.merges.emplace_back(std::move(merge_parts_[0]), std::move(merge_parts_[1]));
        merge_depth_ = 0;
      } else {
        mode_ = Mode::none;
      }
      return true;
    }
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // `position` counts the bytes read, the offending one included.
    failure = io::JsonFailure{position > 0 ? position - 1 : 0, io::detail::exception_reason(e.what())};
    return false;
  }

  std::optional<io::JsonFailure> failure;

 private:
  enum class Mode { none, vocab, merges };

  /// True when the value about to be added sits at root[parent][name].
  bool at(std::string_view parent, std::string_view name) const {
    return stack_.size() == 2 && keys_[1] == parent && key_ == name && stack_[1]->is_object();
  }

  bool number(std::int64_t n) {
    if (mode_ == Mode::vocab) {
      if (n < 0) vocab_error(json(n));
      tables_.vocab.emplace_back(std::move(vocab_key_), n);
      return true;
    }
    if (mode_ == Mode::merges) merge_error(json(n));
    return value(n);
  }

  template <class V>
  bool value(V&& v) {
    if (mode_ == Mode::vocab) vocab_error(json(v));
    if (mode_ == Mode::merges) merge_error(json(v));
    add(json(std::forward<V>(v)));
    return true;
  }

  json* add(json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  void push(json container) {
    std::string k = stack_.empty() || stack_.back()->is_array() ? std::string() : key_;
    stack_.push_back(add(std::move(container)));
    keys_.push_back(std::move(k));
  }

  [[noreturn]] void vocab_error(const json& found) const {
    throw Error(source_ + ": model.vocab[" + io::quote_text(vocab_key_) + "]: expected an id in [0, 2^31), found " +
                io::quote_json(found));
  }
  [[noreturn]] void merge_error(const json& found) const {
    throw Error(fmt::format("{}: model.merges[{}]: expected \"left right\" or [\"left\", \"right\"], found {}", source_,
                            tables_.merges.size(), io::quote_json(found)));
  }
  [[noreturn]] void table_error(const json& found) const {
    if (mode_ == Mode::vocab) vocab_error(found);
    merge_error(found);
  }

  std::string source_;
  ModelTables& tables_;
  json root_;
  std::vector<json*> stack_;        // open containers
  std::vector<std::string> keys_;   // the key each open container sits under ("" in arrays)
  std::string key_;                 // the last key read
  std::string vocab_key_;
  std::vector<std::string> merge_parts_;
  int merge_depth_ = 0;
  Mode mode_ = Mode::none;
};

/// Parses tokenizer.json text: the DOM without model.vocab/merges, and those two as tables.
/// The text is checked and errors are worded as io::parse_json's (io/json.hpp).
inline nlohmann::json parse_tokenizer_json(const std::string& text, const std::string& source, ModelTables& tables) {
  auto failure = io::detail::check_json_text(text, {});
  if (!failure) {
    TokenizerJsonSax handler(source, tables);
    if (nlohmann::json::sax_parse(text, &handler)) return handler.take_root();
    failure = handler.failure;
  }
  const auto reported = failure.value_or(io::JsonFailure{text.size(), "unknown parse failure"});
  throw Error(io::json_failure_message(text, source, reported) + "; the file is damaged or truncated");
}

/// model.vocab and model.merges of a DOM (from_json's path), with the same checks.
inline void extract_model_tables(const nlohmann::json& model, const std::string& source, ModelTables& tables) {
  if (!model.is_object()) return;
  if (auto vocab = model.find("vocab"); vocab != model.end() && vocab->is_object()) {
    tables.has_vocab = true;
    tables.vocab.reserve(vocab->size());
    for (auto it = vocab->begin(); it != vocab->end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
          it.value().get<std::int64_t>() >= (std::int64_t{1} << 31)) {
        throw Error(source + ": model.vocab[" + io::quote_text(it.key()) + "]: expected an id in [0, 2^31), found " +
                    io::quote_json(it.value()));
      }
      tables.vocab.emplace_back(it.key(), it.value().get<std::int64_t>());
    }
  }
  if (auto merges = model.find("merges"); merges != model.end() && merges->is_array()) {
    tables.has_merges = true;
    tables.merges.reserve(merges->size());
    for (const auto& m : *merges) {
      std::pair<std::string, std::string> pair;
      const bool ok = m.is_string() ? split_merge_line(m.get_ref<const std::string&>(), pair)
                                    : (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string());
      if (!ok) {
        throw Error(fmt::format("{}: model.merges[{}]: expected \"left right\" or [\"left\", \"right\"], found {}",
                                source, tables.merges.size(), io::quote_json(m)));
      }
      if (!m.is_string()) pair = {m[0].get<std::string>(), m[1].get<std::string>()};
      tables.merges.push_back(std::move(pair));
    }
  }
}

}  // namespace grpo::tokenizer_detail
