// Config loading and the strict section reader (config.hpp).
#include "config.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <utility>

#include <grpo/core/error.hpp>
#include <grpo/io/json.hpp>
#include <grpo/text/utf8.hpp>

namespace lwz {

const json Section::empty_ = json::object();

namespace {

/// The largest run config read (ours are about 2 KB).
constexpr std::uintmax_t max_config_bytes = std::uintmax_t{16} << 20;

std::filesystem::path find_config(const std::string& name) {
  namespace fs = std::filesystem;
  const std::vector<fs::path> candidates{name, name + ".json", fs::path(GRPO_EXAMPLES_DIR) / "configs" / name,
                                         fs::path(GRPO_EXAMPLES_DIR) / "configs" / (name + ".json")};
  for (const auto& c : candidates)
    if (fs::is_regular_file(c)) return c;
  throw grpo::Error("--config " + name + ": no such file (tried " + name + ", " + name + ".json and " +
                    (fs::path(GRPO_EXAMPLES_DIR) / "configs").string() + "/" + name + ".json)");
}

void apply_override(json& root, const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw grpo::Error("--set " + text + ": expected key.path=value, e.g. --set trainer.steps=10");
  }
  const std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  // Every string of the config is dumped again (the run folder's config.json, stage fingerprints):
  // nlohmann refuses to dump invalid UTF-8, so refuse it here, where the key can be named.
  for (const auto& [what, part] : {std::pair{"key", key}, std::pair{"value", value}}) {
    if (const auto bad = grpo::utf8::first_invalid(part); bad != std::string::npos) {
      throw grpo::Error(
          fmt::format("--set {}: the {} is not valid UTF-8 (byte {} of it)", grpo::io::quote_text(key), what, bad));
    }
  }
  json* node = &root;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) throw grpo::Error("--set " + text + ": empty key component");
    // A section the config does not have (or has as null) is created: --set parallel.tensor=2
    // works without a "parallel" section; a misspelled one is still an unknown key when read.
    if (node->is_null()) *node = json::object();
    if (!node->is_object()) throw grpo::Error("--set " + text + ": '" + key.substr(0, start) + "' is not an object");
    node = &(*node)[part];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  // JSON when it is JSON (checked like any config text: depth, numbers in range), else a string.
  *node = json::accept(value) ? grpo::io::parse_json(value, "--set " + key) : json(value);
}

}  // namespace

Config load_config(const std::string& name, const std::vector<std::string>& overrides) {
  const auto file = find_config(name);
  json root = grpo::io::read_json_file(file, max_config_bytes, {.comments = true});
  if (!root.is_object()) throw grpo::Error(file.string() + ": expected a JSON object at the top level");
  for (const auto& o : overrides) apply_override(root, o);
  return Config{std::move(root), std::filesystem::absolute(file).parent_path(), file.string()};
}

Section::Section(const json* object, std::string path, const Config* config)
    : object_(object ? object : &empty_), path_(std::move(path)), config_(config) {
  if (!object_->is_object()) {
    throw grpo::Error(config_->source + ": " + path_ + ": expected an object, found " + grpo::io::quote_json(*object_));
  }
}

bool Section::has(const std::string& key) const { return object_->contains(key) && !(*object_)[key].is_null(); }

const json* Section::find(const std::string& key) {
  used_.insert(key);
  auto it = object_->find(key);
  return it == object_->end() || it->is_null() ? nullptr : &*it;
}

void Section::fail(const std::string& key, const std::string& expected, const json& found) const {
  throw grpo::Error(config_->source + ": " + (path_.empty() ? "" : path_ + ".") + key + ": expected " + expected +
                    ", found " + grpo::io::quote_json(found));
}

std::int64_t Section::integer(const std::string& key, std::int64_t fallback, IntegerRange range) {
  return optional_integer(key, range).value_or(fallback);
}

std::optional<std::int64_t> Section::optional_integer(const std::string& key, IntegerRange range) {
  const json* v = find(key);
  if (!v) return std::nullopt;
  const auto value = grpo::io::json_integer(*v, range.min, range.max);
  if (!value) fail(key, fmt::format("an integer in [{}, {}]", range.min, range.max), *v);
  return value;
}

double Section::number(const std::string& key, double fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_number()) fail(key, "a number", *v);
  return v->get<double>();
}

bool Section::boolean(const std::string& key, bool fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(key, "true or false", *v);
  return v->get<bool>();
}

std::string Section::string(const std::string& key, const std::string& fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) fail(key, "a string", *v);
  return v->get<std::string>();
}

std::optional<double> Section::optional_number(const std::string& key) {
  const json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) fail(key, "a number or null", *v);
  return v->get<double>();
}

std::optional<std::string> Section::optional_string(const std::string& key) {
  const json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail(key, "a string or null", *v);
  return v->get<std::string>();
}

std::vector<std::string> Section::strings(const std::string& key, const std::vector<std::string>& fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_array()) fail(key, "a list of strings", *v);
  std::vector<std::string> out;
  for (const auto& item : *v) {
    if (!item.is_string()) fail(key, "a list of strings", *v);
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::optional<std::filesystem::path> Section::path(const std::string& key) {
  auto text = optional_string(key);
  if (!text) return std::nullopt;
  std::filesystem::path p(*text);
  return p.is_absolute() ? p : config_->base_dir / p;
}

json Section::raw(const std::string& key) {
  const json* v = find(key);
  return v ? *v : json();
}

Section Section::section(const std::string& key) {
  const json* v = find(key);
  return Section(v, path_.empty() ? key : path_ + "." + key, config_);
}

void Section::finish() const {
  for (const auto& [key, value] : object_->items()) {
    if (!used_.count(key)) {
      std::string known;
      for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
      throw grpo::Error(config_->source + ": " + (path_.empty() ? "" : path_ + ".") + key + ": unknown key (known here: " +
                        known + ")");
    }
  }
}

}  // namespace lwz
