#pragma once
// Reading a Hugging Face tokenizer.json (and tokenizer_config.json) into the tables grpo::Tokenizer
// encodes and decodes with: tokenizer_detail::TokenizerLoader checks every field it reads,
// naming the source and the JSON path of a problem, and builds a TokenizerData.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/io/json.hpp"
#include "grpo/text/utf8.hpp"
#include "grpo/tokenizer/detail/added_vocabulary.hpp"
#include "grpo/tokenizer/detail/bpe.hpp"
#include "grpo/tokenizer/detail/normalizer.hpp"
#include "grpo/tokenizer/detail/pre_tokenizer.hpp"
#include "grpo/tokenizer/detail/tokenizer_json.hpp"


namespace grpo {

/// One entry of tokenizer.json's "added_tokens".
struct AddedToken {
  std::int64_t id = 0;       ///< the token's id
  std::string content;       ///< the text it stands for
  bool special = false;      ///< skipped by decode(ids, true); plain text for encode(text, false)
  bool single_word = false;  ///< only matched where it does not touch a word character on either side
  bool lstrip = false;       ///< also swallows the white space before it
  bool rstrip = false;       ///< also swallows the white space after it
  bool normalized = false;   ///< matched in the normalized text instead of the raw text
};

namespace tokenizer_detail {

struct TokenizerData {
  std::string source;  ///< where it was loaded from, for messages
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  std::vector<AddedToken> added_tokens;     ///< in file order
  /// Parallel to added_tokens: the string tokenizers' id_to_token and decode use, the content
  /// normalized when the token is normalized=true.
  std::vector<std::string> added_token_strings;
  std::vector<std::pair<std::int64_t, std::size_t>> added_by_id;  ///< (id, index in added_tokens), sorted
  std::vector<AddedTokenRule> added_rules;  ///< parallel to added_tokens
  AddedTokenMatcher raw_matcher;            ///< normalized=false tokens, on the raw text
  AddedTokenMatcher normalized_matcher;     ///< normalized=true tokens, on normalized pieces
  StringIdMap added_ids;                    ///< content -> id
  std::string decode_bytes;                 ///< concatenated bytes of every id (ByteLevel decoder)
  std::vector<std::uint32_t> decode_offsets;  ///< id -> [offsets[id], offsets[id + 1]) in decode_bytes
  std::vector<std::uint8_t> id_flags;       ///< bit 0: the id names a token; bit 1: it is special
  std::optional<std::int64_t> bos_id, eos_id, pad_id, unk_id;
};

using json = nlohmann::json;

/// Reads tokenizer.json, naming `source` and the JSON path of every problem.
class TokenizerLoader {
 public:
  TokenizerLoader(std::string source) : source_(std::move(source)) {}

  /// `streamed`: model.vocab/merges already read by parse_tokenizer_json (else taken from `root`).
  std::shared_ptr<TokenizerData> load(const json& root, const json& config, const ModelTables* streamed = nullptr) {
    auto data = std::make_shared<TokenizerData>();
    data->source = source_;
    if (!root.is_object()) fail("", "expected a JSON object at the top level", root);
    for (const char* key : {"truncation", "padding"}) {
      auto it = root.find(key);
      if (it != root.end() && !it->is_null()) {
        fail(key, "expected null (grpo encodes whole texts; truncate or pad the ids yourself)", *it);
      }
    }
    const json& model = require(root, "model", "model");
    ModelTables extracted;
    if (streamed == nullptr) extract_model_tables(model, source_, extracted);
    load_model(model, streamed != nullptr ? *streamed : extracted, data->model);
    load_normalizer(root.contains("normalizer") ? root["normalizer"] : json(), "normalizer", data->normalizer);
    load_pre_tokenizer(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json(), data->pre_tokenizer);
    check_post_processor(root.contains("post_processor") ? root["post_processor"] : json(), "post_processor");
    check_decoder(root.contains("decoder") ? root["decoder"] : json());
    load_added_tokens(root.contains("added_tokens") ? root["added_tokens"] : json::array(), *data);
    build_decode_table(*data);
    load_config(config, *data);
    return data;
  }

 private:
  [[noreturn]] void fail(std::string_view field, std::string_view expected, const json& found) const {
    const std::string shown = found.is_discarded() ? std::string("nothing") : io::quote_json(found);
    throw Error(source_ + ": " + (field.empty() ? std::string() : std::string(field) + ": ") + std::string(expected) +
                ", found " + shown);
  }
  [[noreturn]] void fail(std::string_view field, std::string_view message) const {
    throw Error(source_ + ": " + std::string(field) + ": " + std::string(message));
  }

  const json& require(const json& object, const char* key, const std::string& field) const {
    if (!object.is_object()) fail(parent_of(field), "expected a JSON object", object);
    auto it = object.find(key);
    if (it == object.end()) fail(field, "is missing; it is required");
    return *it;
  }
  static std::string parent_of(const std::string& field) {
    const auto dot = field.rfind('.');
    return dot == std::string::npos ? field : field.substr(0, dot);
  }
  bool get_bool(const json& object, const char* key, const std::string& prefix, bool fallback) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(prefix + "." + key, "expected true or false", *it);
    return it->get<bool>();
  }
  std::string get_string_or_empty(const json& object, const char* key, const std::string& prefix) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return {};
    if (!it->is_string()) fail(prefix + "." + key, "expected a string or null", *it);
    return it->get<std::string>();
  }
  std::string type_of(const json& object, const std::string& field) const {
    if (!object.is_object()) fail(field, "expected a JSON object", object);
    auto it = object.find("type");
    if (it == object.end() || !it->is_string()) fail(field + ".type", "expected a string naming the type", it == object.end() ? json() : *it);
    return it->get<std::string>();
  }

  void load_model(const json& model, const ModelTables& tables, BpeModel& bpe) {
    if (!model.is_object()) fail("model", "expected a JSON object", model);
    auto type = model.find("type");
    if (type != model.end() && (!type->is_string() || type->get<std::string>() != "BPE")) {
      fail("model.type", "expected \"BPE\" (grpo implements byte-level BPE tokenizers only)", *type);
    }
    if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
      if (!it->is_number() || it->get<double>() != 0.0) {
        fail("model.dropout", "expected null or 0 (BPE dropout makes encoding random; remove it for inference)", *it);
      }
    }
    bpe.fuse_unk = get_bool(model, "fuse_unk", "model", false);
    bpe.byte_fallback = get_bool(model, "byte_fallback", "model", false);
    bpe.ignore_merges = get_bool(model, "ignore_merges", "model", false);
    bpe.continuing_subword_prefix = get_string_or_empty(model, "continuing_subword_prefix", "model");
    bpe.end_of_word_suffix = get_string_or_empty(model, "end_of_word_suffix", "model");

    if (!tables.has_vocab) {
      fail("model.vocab", "expected an object mapping token strings to ids", model.contains("vocab") ? model["vocab"] : json());
    }
    std::size_t key_bytes = 0;
    std::int64_t max_id = -1;
    for (const auto& [token, id] : tables.vocab) {
      key_bytes += token.size();
      max_id = std::max(max_id, id);
      // Tables are sized by the largest id: refuse ids no real vocabulary reaches.
      if (id > max_supported_id) {
        fail(fmt::format("model.vocab[\"{}\"]", token),
             fmt::format("id {} is above {}; grpo supports vocabularies of up to 2^24 ids", id, max_supported_id));
      }
    }
    bpe.vocab.reserve(tables.vocab.size(), key_bytes);
    std::vector<bool> used(static_cast<std::size_t>(max_id + 1), false);
    for (const auto& [token, id] : tables.vocab) {
      if (used[static_cast<std::size_t>(id)]) {
        fail(fmt::format("model.vocab[\"{}\"]", token),
             fmt::format("id {} is already used by another token; every id must name one token", id));
      }
      used[static_cast<std::size_t>(id)] = true;
      if (!bpe.vocab.insert(token, static_cast<std::int32_t>(id))) fail("model.vocab[\"" + token + "\"]", "the token appears twice");
    }
    bpe.tokens.assign(static_cast<std::size_t>(max_id + 1), std::string_view());
    bpe.vocab.for_each([&](std::string_view token, std::int32_t id) { bpe.tokens[static_cast<std::size_t>(id)] = token; });

    if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
      if (!it->is_string()) fail("model.unk_token", "expected a string or null", *it);
      const std::int32_t id = bpe.vocab.find(it->get<std::string>());
      if (id < 0) fail("model.unk_token", "names no token of model.vocab; add it to the vocabulary or set null", *it);
      bpe.unk_id = id;
    }

    if (!tables.has_merges) {
      fail("model.merges", "expected an array of merges", model.contains("merges") ? model["merges"] : json());
    }
    bpe.merges.reserve(tables.merges.size());
    const std::size_t prefix_length = bpe.continuing_subword_prefix.size();
    std::string merged;
    for (std::size_t rank = 0; rank < tables.merges.size(); ++rank) {
      const auto field = [rank] { return fmt::format("model.merges[{}]", rank); };
      const std::string_view left = tables.merges[rank].first;
      const std::string_view right = tables.merges[rank].second;
      const std::int32_t left_id = bpe.vocab.find(left);
      const std::int32_t right_id = bpe.vocab.find(right);
      if (left_id < 0 || right_id < 0) {
        fail(field(), "the token \"" + std::string(left_id < 0 ? left : right) + "\" is not in model.vocab");
      }
      if (right.size() < prefix_length) fail(field(), "the right token is shorter than continuing_subword_prefix");
      merged.assign(left);
      merged.append(right.substr(prefix_length));
      const std::int32_t new_id = bpe.vocab.find(merged);
      if (new_id < 0) fail(field(), "the merged token \"" + merged + "\" is not in model.vocab");
      bpe.merges.insert_or_assign(left_id, right_id, MergeRule{static_cast<std::uint32_t>(rank), new_id});
    }
    bpe.finalize();
  }

  void load_normalizer(const json& node, const std::string& field, Normalizer& out) {
    std::vector<NormalizationForm> forms;
    collect_forms(node, field, forms);
    out = Normalizer(std::move(forms));
  }
  void collect_forms(const json& node, const std::string& field, std::vector<NormalizationForm>& forms) {
    if (node.is_null()) return;
    const std::string type = type_of(node, field);
    if (type == "NFC") {
      forms.push_back(NormalizationForm::nfc);
    } else if (type == "NFD") {
      forms.push_back(NormalizationForm::nfd);
    } else if (type == "NFKC") {
      forms.push_back(NormalizationForm::nfkc);
    } else if (type == "NFKD") {
      forms.push_back(NormalizationForm::nfkd);
    } else if (type == "Sequence") {
      const json& list = require(node, "normalizers", field + ".normalizers");
      if (!list.is_array()) fail(field + ".normalizers", "expected an array", list);
      for (std::size_t k = 0; k < list.size(); ++k) {
        collect_forms(list[k], fmt::format("{}.normalizers[{}]", field, k), forms);
      }
    } else {
      fail(field + ".type", "expected NFC, NFD, NFKC, NFKD or Sequence (other normalizers are not supported)", json(type));
    }
  }

  void load_pre_tokenizer(const json& node, PreTokenizer& out) {
    std::vector<SplitStep> splits;
    std::optional<ByteLevelStep> byte_level;
    std::vector<std::pair<const json*, std::string>> steps;
    if (node.is_null()) {
      fail("pre_tokenizer", "expected a ByteLevel pre-tokenizer (grpo implements byte-level BPE only)", node);
    }
    if (type_of(node, "pre_tokenizer") == "Sequence") {
      const json& list = require(node, "pretokenizers", "pre_tokenizer.pretokenizers");
      if (!list.is_array()) fail("pre_tokenizer.pretokenizers", "expected an array", list);
      for (std::size_t k = 0; k < list.size(); ++k) {
        steps.emplace_back(&list[k], fmt::format("pre_tokenizer.pretokenizers[{}]", k));
      }
    } else {
      steps.emplace_back(&node, "pre_tokenizer");
    }
    for (const auto& [step, field] : steps) {
      const std::string type = type_of(*step, field);
      if (byte_level) fail(field + ".type", "ByteLevel must be the last pre-tokenizer; found a step after it", json(type));
      if (type == "Split") {
        splits.push_back(load_split(*step, field));
      } else if (type == "ByteLevel") {
        ByteLevelStep b;
        b.add_prefix_space = get_bool(*step, "add_prefix_space", field, true);
        if (get_bool(*step, "use_regex", field, true)) b.regex.emplace(std::string(gpt2_pattern), true, field + " (GPT-2 pattern)");
        byte_level = std::move(b);
      } else {
        fail(field + ".type", "expected Split or ByteLevel (other pre-tokenizers are not supported)", json(type));
      }
    }
    if (!byte_level) fail("pre_tokenizer", "expected a ByteLevel step (grpo implements byte-level BPE only)", node);
    out = PreTokenizer(std::move(splits), std::move(byte_level));
  }

  SplitStep load_split(const json& step, const std::string& field) {
    const json& pattern = require(step, "pattern", field + ".pattern");
    std::string source;
    bool is_regex = false;
    if (pattern.is_object() && pattern.size() == 1 && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      source = pattern["Regex"].get<std::string>();
      is_regex = true;
    } else if (pattern.is_object() && pattern.size() == 1 && pattern.contains("String") && pattern["String"].is_string()) {
      source = pattern["String"].get<std::string>();
    } else {
      fail(field + ".pattern", "expected {\"Regex\": \"...\"} or {\"String\": \"...\"}", pattern);
    }
    const json& behavior = require(step, "behavior", field + ".behavior");
    SplitBehavior b;
    const std::string name = behavior.is_string() ? behavior.get<std::string>() : std::string();
    if (name == "Isolated") {
      b = SplitBehavior::isolated;
    } else if (name == "Removed") {
      b = SplitBehavior::removed;
    } else if (name == "MergedWithPrevious") {
      b = SplitBehavior::merged_with_previous;
    } else if (name == "MergedWithNext") {
      b = SplitBehavior::merged_with_next;
    } else if (name == "Contiguous") {
      b = SplitBehavior::contiguous;
    } else {
      fail(field + ".behavior", "expected Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous", behavior);
    }
    return SplitStep{SplitPattern(std::move(source), is_regex, field + ".pattern"), b, get_bool(step, "invert", field, false)};
  }

  void check_post_processor(const json& node, const std::string& field) {
    if (node.is_null()) return;
    const std::string type = type_of(node, field);
    if (type == "ByteLevel") return;  // only adjusts offsets
    if (type == "Sequence") {
      const json& list = require(node, "processors", field + ".processors");
      if (!list.is_array()) fail(field + ".processors", "expected an array", list);
      for (std::size_t k = 0; k < list.size(); ++k) {
        check_post_processor(list[k], fmt::format("{}.processors[{}]", field, k));
      }
      return;
    }
    fail(field + ".type",
         "expected null or ByteLevel (post-processors that add tokens, e.g. TemplateProcessing, are not supported: "
         "add BOS/EOS ids yourself and remove the post_processor)",
         json(type));
  }

  void check_decoder(const json& node) {
    if (node.is_null()) fail("decoder", "expected a ByteLevel decoder (grpo implements byte-level BPE only)", node);
    const std::string type = type_of(node, "decoder");
    if (type != "ByteLevel") fail("decoder.type", "expected ByteLevel (other decoders are not supported)", json(type));
  }

  /// tokenizers' AddedVocabulary::add_tokens: a token already in the vocabulary keeps its id,
  /// a new one gets the next id after the model vocabulary and the added tokens so far. The file's
  /// ids must agree (tokenizers would silently use its own; we refuse instead).
  void load_added_tokens(const json& list, TokenizerData& data) {
    if (!list.is_array()) fail("added_tokens", "expected an array", list);
    const auto model_size = static_cast<std::int64_t>(data.model.vocab.size());
    std::int64_t max_added = -1;
    std::vector<std::string> normalized_contents;
    for (std::size_t k = 0; k < list.size(); ++k) {
      const json& t = list[k];
      const std::string field = fmt::format("added_tokens[{}]", k);
      if (!t.is_object()) fail(field, "expected a JSON object", t);
      AddedToken token;
      const json& content = require(t, "content", field + ".content");
      if (!content.is_string()) fail(field + ".content", "expected a string", content);
      token.content = content.get<std::string>();
      if (!utf8::is_valid(token.content)) fail(field + ".content", "is not valid UTF-8");
      const json& id = require(t, "id", field + ".id");
      if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() >= (std::int64_t{1} << 31)) {
        fail(field + ".id", "expected an id in [0, 2^31)", id);
      }
      token.id = id.get<std::int64_t>();
      token.special = get_bool(t, "special", field, false);
      token.single_word = get_bool(t, "single_word", field, false);
      token.lstrip = get_bool(t, "lstrip", field, false);
      token.rstrip = get_bool(t, "rstrip", field, false);
      token.normalized = get_bool(t, "normalized", field, true);
      if (token.content.empty()) continue;  // tokenizers ignores empty added tokens
      std::int64_t expected = data.added_ids.find(token.content);
      if (expected >= 0) fail(field + ".content", "\"" + token.content + "\" is added twice; keep one entry");
      expected = data.model.vocab.find(token.content);
      if (expected < 0) expected = max_added < 0 ? model_size : (max_added >= model_size || model_size == 0 ? max_added + 1 : model_size);
      if (expected != token.id) {
        fail(field + ".id", fmt::format("Hugging Face tokenizers would give \"{}\" the id {} (the id of the same model "
                                        "token, else the next id after the vocabulary and the added tokens before it), "
                                        "but the file says {}; fix the file",
                                        token.content, expected, token.id));
      }
      max_added = std::max(max_added, token.id);
      data.added_ids.insert(token.content, static_cast<std::int32_t>(token.id));
      data.added_rules.push_back(AddedTokenRule{static_cast<std::int32_t>(token.id), token.special, token.single_word,
                                                token.lstrip, token.rstrip});
      const auto rule = static_cast<std::int32_t>(data.added_tokens.size());
      if (token.normalized) {
        std::string storage, scratch;
        const std::string pattern(data.normalizer.apply(token.content, storage, scratch));
        if (!pattern.empty()) data.normalized_matcher.add(pattern, rule);
        data.added_token_strings.push_back(pattern);
      } else {
        data.raw_matcher.add(token.content, rule);
        data.added_token_strings.push_back(token.content);
      }
      data.added_by_id.emplace_back(token.id, data.added_tokens.size());
      data.added_tokens.push_back(std::move(token));
    }
    std::sort(data.added_by_id.begin(), data.added_by_id.end());
  }

  void build_decode_table(TokenizerData& data) {
    std::int64_t size = static_cast<std::int64_t>(data.model.tokens.size());
    for (const AddedToken& t : data.added_tokens) size = std::max(size, t.id + 1);
    std::vector<std::string_view> token_of(static_cast<std::size_t>(size));
    for (std::size_t id = 0; id < data.model.tokens.size(); ++id) token_of[id] = data.model.tokens[id];
    // Added tokens win over the model's token of the same id, as in tokenizers; it decodes a
    // normalized added token from its normalized content.
    for (std::size_t k = 0; k < data.added_tokens.size(); ++k) {
      token_of[static_cast<std::size_t>(data.added_tokens[k].id)] = data.added_token_strings[k];
    }
    StringIdMap special_contents;
    for (const AddedToken& t : data.added_tokens) {
      if (t.special) special_contents.insert(t.content, 1);
    }
    data.decode_offsets.assign(static_cast<std::size_t>(size) + 1, 0);
    data.id_flags.assign(static_cast<std::size_t>(size), 0);
    data.decode_bytes.reserve(static_cast<std::size_t>(size) * 4);
    for (std::size_t id = 0; id < token_of.size(); ++id) {
      data.decode_offsets[id] = static_cast<std::uint32_t>(data.decode_bytes.size());
      // A vocabulary gap (or an empty token) names nothing: decode skips it, as tokenizers does.
      if (token_of[id].empty()) continue;
      data.id_flags[id] = 1 | (special_contents.find(token_of[id]) >= 0 ? 2 : 0);
      data.decode_bytes += byte_level_token_bytes(token_of[id]);
    }
    data.decode_offsets[token_of.size()] = static_cast<std::uint32_t>(data.decode_bytes.size());
  }

  /// tokenizer_config.json's bos/eos/pad/unk tokens: a string, {"content": ...} or null.
  void load_config(const json& config, TokenizerData& data) {
    if (config.is_null()) return;
    if (!config.is_object()) fail("tokenizer_config.json", "expected a JSON object", config);
    const auto id_of = [&](const char* key) -> std::optional<std::int64_t> {
      auto it = config.find(key);
      if (it == config.end() || it->is_null()) return std::nullopt;
      std::string content;
      if (it->is_string()) {
        content = it->get<std::string>();
      } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
        content = (*it)["content"].get<std::string>();
      } else {
        fail(std::string("tokenizer_config.json: ") + key, "expected a token string, {\"content\": ...} or null", *it);
      }
      std::int64_t id = data.added_ids.find(content);
      if (id < 0) id = data.model.vocab.find(content);
      if (id < 0) fail(std::string("tokenizer_config.json: ") + key, "\"" + content + "\" is not a token of tokenizer.json");
      return id;
    };
    data.bos_id = id_of("bos_token");
    data.eos_id = id_of("eos_token");
    data.pad_id = id_of("pad_token");
    data.unk_id = id_of("unk_token");
  }

  static constexpr std::int64_t max_supported_id = (std::int64_t{1} << 24) - 1;

  std::string source_;
};

}  // namespace tokenizer_detail

}  // namespace grpo
