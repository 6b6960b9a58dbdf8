#pragma once
// JSON input, one way for every file: config.json, generation_config.json, tokenizer.json and
// tokenizer_config.json, safetensors headers and model.safetensors.index.json, adapter_config.json,
// trainer_state.json, prompt files and every JSONL row, the program's run configs and their --set
// values all go through parse_json().
//
// nlohmann's parser is iterative, but a parsed value is not: dumping, copying or comparing it
// recurses once per level, so a 140 KB line of 70,000 '[' overflows the stack wherever it is
// echoed back. And the lexer takes a NUL byte for the end of the input, silently ignoring
// whatever follows it. So parse_json() checks the raw text first:
//   - no NUL byte anywhere;
//   - nesting at most max_json_depth (256) levels;
// then parses strictly (nothing but whitespace after the value: the reference safetensors rejects
// trailing bytes in a header, and so do we everywhere), and turns every nlohmann exception (a
// syntax error, invalid UTF-8, a number out of range such as 1e400) into a grpo::Error
// "<source>:<line>: invalid JSON at column <c>: <reason>" naming the line of the file.
//
// quote_json() is the one way a value is shown in an error message: at most 120 characters and
// the value's size whatever it holds, never deeper than the characters it shows, invalid UTF-8
// replaced. json_integer() reads an integer field with a range check and no wrapping conversion.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include "grpo/core/error.hpp"

namespace grpo::io {

/// The deepest nesting accepted in any JSON input. Real files nest a few levels (tokenizer.json's
/// normalizer sequences, the deepest we read, fewer than 10); 256 keeps every recursive walk of a
/// parsed value (dump, copy, comparison) a few kilobytes of stack.
inline constexpr std::size_t max_json_depth = 256;

/// The characters of a value quote_json() shows before it cuts.
inline constexpr std::size_t json_quote_chars = 120;

/// How parse_json() reads a text.
struct JsonParseOptions {
  /// The line of the file the text starts on, for messages (a JSONL row's line; 1 for a whole file).
  std::size_t first_line = 1;
  /// Accept // and /* */ comments (hand-written run configs); default false (strict JSON).
  bool comments = false;
  /// The deepest nesting accepted; default max_json_depth.
  std::size_t max_depth = max_json_depth;
};

/// Why a text is not accepted, and where: `offset` is the 0-based byte of the text.
struct JsonFailure {
  std::size_t offset = 0;
  std::string reason;
};

namespace detail {

/// Line (from `first_line`) and 1-based column (in bytes) of the byte `offset` of `text`.
struct TextPosition {
  std::size_t line = 1;
  std::size_t column = 1;
};
inline TextPosition text_position(std::string_view text, std::size_t offset, std::size_t first_line) {
  offset = std::min(offset, text.size());
  const std::string_view before = text.substr(0, offset);
  const auto newlines = static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
  const auto last = before.rfind('\n');
  return {first_line + newlines, offset - (last == std::string_view::npos ? 0 : last + 1) + 1};
}

/// nlohmann's message fit for ours: its "[json.exception.parse_error.101] " tag and its own
/// "parse error at line 1, column 3: " (counted from the start of the text, not of the file)
/// removed; control and non-ASCII bytes (it quotes the bytes it choked on) as '?'; at most 200
/// characters (it quotes a whole string token, which may be megabytes).
inline std::string exception_reason(std::string_view what) {
  if (what.starts_with("[json.exception.")) {
    if (const auto tag_end = what.find("] "); tag_end != std::string_view::npos) what.remove_prefix(tag_end + 2);
  }
  if (what.starts_with("parse error")) {
    if (const auto colon = what.find(": "); colon != std::string_view::npos) what.remove_prefix(colon + 2);
  }
  constexpr std::size_t max_chars = 200;
  std::string reason(what.substr(0, max_chars));
  for (auto& c : reason) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  if (what.size() > max_chars) reason += "...";
  return reason;
}

/// The first reason to refuse `text` before parsing it: a NUL byte, or nesting deeper than
/// options.max_depth (brackets inside strings, and inside comments when they are allowed, do not
/// count). One pass, no allocation.
inline std::optional<JsonFailure> check_json_text(std::string_view text, const JsonParseOptions& options) {
  if (const auto nul = text.find('\0'); nul != std::string_view::npos) {
    return JsonFailure{nul, "a NUL byte, which JSON text cannot hold (is the file binary or damaged?)"};
  }
  std::size_t depth = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\') ++i;  // the escaped character, '"' included
      }
    } else if (c == '[' || c == '{') {
      if (++depth > options.max_depth) {
        return JsonFailure{i, fmt::format("nested deeper than {} levels (objects and arrays inside each other)",
                                          options.max_depth)};
      }
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    } else if (c == '/' && options.comments && i + 1 < text.size() && (text[i + 1] == '/' || text[i + 1] == '*')) {
      const auto end = text[i + 1] == '/' ? text.find('\n', i + 2) : text.find("*/", i + 2);
      if (end == std::string_view::npos) break;
      i = text[i + 1] == '/' ? end : end + 1;
    }
  }
  return std::nullopt;
}

/// A SAX consumer that builds the value as nlohmann's own DOM builder `Base` does, and records
/// the position and message of a failure instead of throwing (nlohmann's out_of_range for 1e400
/// carries no position; here every failure has one).
template <class Base>
class LocatingBuilder : public Base {
 public:
  using Base::Base;
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& /*last_token*/, const Exception& e) {
    // `position` counts the bytes read, the offending one included.
    failure = JsonFailure{position > 0 ? position - 1 : 0, exception_reason(e.what())};
    return false;
  }
  std::optional<JsonFailure> failure;
};

/// JSON text of `text` (escaped, invalid UTF-8 replaced by U+FFFD), quoted.
inline void append_quoted(std::string_view text, std::string& out) {
  out += nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Appends `value` as JSON text until `out` holds more than `limit` bytes. Each level of
/// recursion appends at least one character first, so the recursion is at most `limit` deep
/// whatever the value's depth.
template <class Json>
void quote_into(const Json& value, std::string& out, std::size_t limit) {
  if (out.size() > limit) return;
  if (value.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& element : value) {
      if (out.size() > limit) return;
      if (!first) out += ',';
      first = false;
      quote_into(element, out, limit);
    }
    out += ']';
  } else if (value.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (out.size() > limit) return;
      if (!first) out += ',';
      first = false;
      append_quoted(std::string_view(it.key()).substr(0, limit), out);
      out += ':';
      quote_into(it.value(), out, limit);
    }
    out += '}';
  } else if (value.is_string()) {
    // Enough of the string to pass the limit; a character cut in two becomes U+FFFD, past the cut.
    const std::string_view text = value.template get_ref<const typename Json::string_t&>();
    append_quoted(text.substr(0, limit - std::min(limit, out.size()) + 2), out);
  } else {
    out += value.dump(-1, ' ', false, Json::error_handler_t::replace);  // a number, true/false, null: short
  }
}

}  // namespace detail

/// `value` as JSON text for an error message: whole when it fits `max_chars`, else its first
/// `max_chars` bytes (cut at a character boundary) and "... (N bytes)" for a string, "... (N
/// elements)" for an array, "... (N keys)" for an object. Safe on any value: never deeper than
/// the characters it shows, invalid UTF-8 replaced. nlohmann::json or ordered_json.
template <class Json>
std::string quote_json(const Json& value, std::size_t max_chars = json_quote_chars) {
  std::string out;
  detail::quote_into(value, out, max_chars);
  if (out.size() <= max_chars) return out;
  std::size_t cut = max_chars;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
  out.resize(cut);
  if (value.is_string()) {
    return out + fmt::format("... ({} bytes)", value.template get_ref<const typename Json::string_t&>().size());
  }
  if (value.is_array()) return out + fmt::format("... ({} elements)", value.size());
  if (value.is_object()) return out + fmt::format("... ({} keys)", value.size());
  return out + "...";
}

/// Raw text (a command-line value, a key) quoted the same way.
inline std::string quote_text(std::string_view text, std::size_t max_chars = json_quote_chars) {
  return quote_json(nlohmann::json(std::string(text)), max_chars);
}

/// `value` as an integer in [min, max]; nullopt when it is not an integer JSON number (a string,
/// a fraction, 1e9 written as a float) or lies outside the range. Unsigned numbers above
/// INT64_MAX are compared as they are, never wrapped.
template <class Json>
std::optional<std::int64_t> json_integer(const Json& value, std::int64_t min, std::int64_t max) {
  if (value.is_number_unsigned()) {
    const auto v = value.template get<std::uint64_t>();
    if (max < 0 || v > static_cast<std::uint64_t>(max) || static_cast<std::int64_t>(v) < min) return std::nullopt;
    return static_cast<std::int64_t>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.template get<std::int64_t>();
    if (v < min || v > max) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

/// Parses `text` as one JSON value into `result` (nlohmann::json or ordered_json), or returns why
/// not (see the file comment for the checks). `callback`, when given, is nlohmann's parser
/// callback (it may throw to refuse a value; that exception passes through).
template <class Json>
std::optional<JsonFailure> try_parse_json(std::string_view text, Json& result, const JsonParseOptions& options = {},
                                          const typename Json::parser_callback_t& callback = nullptr) {
  if (auto failure = detail::check_json_text(text, options)) return failure;
  const auto run = [&](auto& builder) -> std::optional<JsonFailure> {
    try {
      if (Json::sax_parse(text.data(), text.data() + text.size(), &builder, Json::input_format_t::json, /*strict=*/true,
                          options.comments)) {
        return std::nullopt;
      }
    } catch (const typename Json::exception& e) {
      // Thrown by the builder itself rather than reported (none known for JSON text): no position.
      return JsonFailure{text.size(), detail::exception_reason(e.what())};
    }
    return builder.failure ? builder.failure : JsonFailure{text.size(), "unknown parse failure"};
  };
  result = Json();
  if (callback) {
    detail::LocatingBuilder<nlohmann::detail::json_sax_dom_callback_parser<Json>> builder(result, callback, true);
    return run(builder);
  }
  detail::LocatingBuilder<nlohmann::detail::json_sax_dom_parser<Json>> builder(result, true);
  return run(builder);
}

/// "<source>:<line>: invalid JSON at column <c>: <reason>" for a failure of `text`.
inline std::string json_failure_message(std::string_view text, std::string_view source, const JsonFailure& failure,
                                       const JsonParseOptions& options = {}) {
  const auto at = detail::text_position(text, failure.offset, options.first_line);
  return fmt::format("{}:{}: invalid JSON at column {}: {}", source, at.line, at.column, failure.reason);
}

/// Parses `text` as one JSON value, or throws grpo::Error naming `source` and the line (see the
/// file comment). `Json` is nlohmann::json (default) or ordered_json.
template <class Json = nlohmann::json>
Json parse_json(std::string_view text, std::string_view source, const JsonParseOptions& options = {},
                const typename Json::parser_callback_t& callback = nullptr) {
  Json result;
  if (const auto failure = try_parse_json(text, result, options, callback)) {
    throw Error(json_failure_message(text, source, *failure, options));
  }
  return result;
}

namespace detail {

/// The whole of a small file (configs, indexes): at most `limit` bytes, else an error naming the
/// file (a huge or endless file is not read into memory).
inline std::string read_small_text_file(const std::filesystem::path& path, std::uintmax_t limit) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(path.string() + ": cannot read: " + ec.message());
  if (size > limit) {
    throw Error(fmt::format("{}: {} bytes, more than the {} expected of this file; is it the right file?",
                            path.string(), size, limit));
  }
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<std::size_t>(size), '\0');
  if (!in || !in.read(text.data(), static_cast<std::streamsize>(size))) {
    throw Error(path.string() + ": cannot read the file");
  }
  return text;
}

}  // namespace detail

/// Reads and parses the JSON file `path` (at most `max_bytes`); errors name the file and the line.
template <class Json = nlohmann::json>
Json read_json_file(const std::filesystem::path& path, std::uintmax_t max_bytes, const JsonParseOptions& options = {}) {
  return parse_json<Json>(detail::read_small_text_file(path, max_bytes), path.string(), options);
}

}  // namespace grpo::io
