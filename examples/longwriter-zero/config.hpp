#pragma once
// Run configurations of longwriter-zero: JSON files (examples/configs/NAME.json), `--set
// key.path=value` overrides, and a strict reader: every key must be known, every value of the
// expected type, and errors name the key path ("trainer.steps: expected an integer, found "ten"").

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <grpo/core/enum_names.hpp>

namespace lwz {

using json = nlohmann::json;

/// The values an integer key of a config accepts, unless its reader says otherwise: counts and
/// sizes (steps, epochs, batch sizes, group size, token budgets such as max_new_tokens) in
/// [0, 2^20 = 1,048,576]. Far above any real run (the paper: 14,000 new tokens, G = 32), low
/// enough that a product of three of them fits in int64 and no allocation they size is absurd
/// before the run starts. Wider ranges are explicit (seed: [0, 2^63 - 1]).
struct IntegerRange {
  std::int64_t min = 0;                    ///< smallest accepted; default 0
  std::int64_t max = std::int64_t{1} << 20;  ///< largest accepted; default 2^20
};

/// A loaded configuration: the JSON (overrides applied) and the folder relative paths start from.
struct Config {
  json root;
  std::filesystem::path base_dir;  ///< the config file's folder
  std::string source;              ///< the config file, for messages
};

/// Finds NAME (a path, NAME.json, or examples/configs/NAME.json), parses it (JSON with // and /* */
/// comments, grpo::io::parse_json's checks: errors name the file and the line) and applies the
/// `key.path=value` overrides (value parsed as JSON, else taken as a string; a key or value that is
/// not valid UTF-8 is an error naming the key).
Config load_config(const std::string& name, const std::vector<std::string>& overrides);

/// A view of one JSON object of the config that records which keys were read; finish() rejects
/// the rest, so a misspelt key is an error instead of a silently ignored setting.
class Section {
 public:
  Section(const json* object, std::string path, const Config* config);

  bool has(const std::string& key) const;
  /// An integer in `range` (a float such as 1e9, a fraction or a value outside it is an error
  /// naming the key); `fallback` when absent or null.
  std::int64_t integer(const std::string& key, std::int64_t fallback, IntegerRange range = {});
  /// The same, nullopt when absent or null.
  std::optional<std::int64_t> optional_integer(const std::string& key, IntegerRange range = {});
  double number(const std::string& key, double fallback);
  bool boolean(const std::string& key, bool fallback);
  std::string string(const std::string& key, const std::string& fallback);
  std::optional<double> optional_number(const std::string& key);
  std::optional<std::string> optional_string(const std::string& key);
  std::vector<std::string> strings(const std::string& key, const std::vector<std::string>& fallback);
  /// A path relative to the config file's folder (absolute paths are kept); nullopt when absent/null.
  std::optional<std::filesystem::path> path(const std::string& key);
  /// An enumerator named by one of the rows of `names` (an EnumName table such as
  /// grpo::lr_decay_names); `fallback` when absent. Any other string fails with the table's names.
  template <class E>
  E choice(const std::string& key, E fallback, std::type_identity_t<std::span<const grpo::EnumName<E>>> names) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, "a string", *v);
    if (const auto value = grpo::find_enum(names, v->get_ref<const std::string&>())) return *value;
    fail(key, "one of " + grpo::enum_choices(names), *v);
  }
  /// The raw JSON value (marked as read), null when absent.
  json raw(const std::string& key);
  /// A nested object ({} when absent).
  Section section(const std::string& key);
  /// Throws when a key was never read.
  void finish() const;
  const std::string& where() const { return path_; }

 private:
  const json* find(const std::string& key);
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const json& found) const;
  const json* object_;
  std::string path_;
  const Config* config_;
  std::set<std::string> used_;
  static const json empty_;
};

}  // namespace lwz
