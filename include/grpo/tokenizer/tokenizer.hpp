#pragma once
// grpo::Tokenizer: byte-level BPE from a Hugging Face tokenizer.json, producing the same ids as
// the `tokenizers` library (tested against tokenizers 0.23.3 on Qwen2.5's tokenizer and on
// tokenizers trained in the tests).
//
// encode(text) follows tokenizers' Tokenizer::encode step by step:
//   0. invalid UTF-8 is replaced first, one U+FFFD per maximal invalid subsequence, exactly as
//      Python's bytes.decode("utf-8", errors="replace") (a Python str, the only input tokenizers
//      accepts, cannot hold invalid UTF-8; that decode is how such bytes reach it);
//   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest);
//   2. each remaining piece is normalized (NFC, NFD, NFKC, NFKD or a sequence of them);
//   3. added tokens with normalized=true are cut out of the normalized pieces;
//   4. the pre-tokenizer splits the rest (Split steps by the file's pattern, then ByteLevel);
//   5. the BPE model turns every piece into ids, merges by rank.
// The post-processor adds nothing: files whose post_processor would add tokens are rejected.
// So encode(text, true) == tokenizer.encode(text).ids and encode(text, false) is the same with
// tokenizer.encode_special_tokens = True (transformers: split_special_tokens=True): added tokens
// marked "special" are then tokenized as plain text, while non-special added tokens (Qwen's
// <think>, </think>, <tool_call>, ...) are still matched, as in tokenizers.
//
// decode(ids) follows tokenizers' Tokenizer::decode with the ByteLevel decoder: ids that name no
// token are skipped (a model's embedding table is often larger than its vocabulary), special
// tokens are skipped on request, the bytes of the tokens are joined, and invalid UTF-8 (a
// character cut between tokens) becomes U+FFFD per maximal invalid subsequence, as Rust's
// String::from_utf8_lossy does.
//
// A Tokenizer is an immutable, cheaply copyable handle (shared ownership); every member function
// is safe to call from several threads at once.

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
#include "grpo/tokenizer/detail/bpe.hpp"
#include "grpo/tokenizer/detail/pre_tokenizer.hpp"
#include "grpo/tokenizer/detail/tokenizer_json.hpp"
#include "grpo/tokenizer/detail/tokenizer_loader.hpp"

namespace grpo {

namespace tokenizer_detail {

struct EncodeScratch {
  std::string sanitized;
  std::string normalized;
  std::string normalize_scratch;
  PreTokenizerScratch pre_tokenizer;
  BpeScratch bpe;
};

inline EncodeScratch& encode_scratch() {
  thread_local EncodeScratch scratch;
  return scratch;
}

}  // namespace tokenizer_detail

class Tokenizer {
 public:
  /// Loads `path`: a tokenizer.json, or a folder holding one. A tokenizer_config.json beside it,
  /// if present, supplies bos/eos/pad/unk tokens.
  static Tokenizer from_file(const std::filesystem::path& path) {
    std::filesystem::path file = path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) file = path / "tokenizer.json";
    const std::string text = read_file(file);
    nlohmann::json config;
    const std::filesystem::path config_path = file.parent_path() / "tokenizer_config.json";
    if (std::filesystem::is_regular_file(config_path, ec)) {
      config = io::parse_json(read_file(config_path), config_path.string());
    }
    return from_string(text, file.string(), config);
  }

  /// Builds a tokenizer from the text of a tokenizer.json (the fast path from_file uses);
  /// `source` names it in error messages.
  static Tokenizer from_string(const std::string& tokenizer_json_text, std::string_view source = "tokenizer.json",
                               const nlohmann::json& tokenizer_config = nullptr) {
    tokenizer_detail::ModelTables tables;
    const std::string name(source);
    const nlohmann::json root = tokenizer_detail::parse_tokenizer_json(tokenizer_json_text, name, tables);
    return Tokenizer(tokenizer_detail::TokenizerLoader(name).load(root, tokenizer_config, &tables));
  }

  /// Builds a tokenizer from parsed tokenizer.json (and optionally tokenizer_config.json);
  /// `source` names it in error messages.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, std::string_view source = "tokenizer.json",
                             const nlohmann::json& tokenizer_config = nullptr) {
    return Tokenizer(tokenizer_detail::TokenizerLoader(std::string(source)).load(tokenizer_json, tokenizer_config));
  }

  /// The ids of `text` (any bytes; see the file comment for invalid UTF-8). With
  /// allow_special = false, special added tokens in the text are tokenized as plain text.
  std::vector<std::int64_t> encode(std::string_view text, bool allow_special = true) const {
    std::vector<std::int64_t> ids;
    ids.reserve(text.size() / 3 + 4);
    encode_into(text, ids, allow_special);
    return ids;
  }

  /// Appends the ids of `text` to `out`.
  void encode_into(std::string_view text, std::vector<std::int64_t>& out, bool allow_special = true) const {
    const tokenizer_detail::TokenizerData& d = *data_;
    tokenizer_detail::EncodeScratch& scratch = tokenizer_detail::encode_scratch();
    std::string_view input = text;
    if (utf8::first_invalid(text) != std::string_view::npos) {
      scratch.sanitized = utf8::sanitize(text);
      input = scratch.sanitized;
    }
    const auto encode_plain = [&](std::string_view piece) {
      d.pre_tokenizer.for_each_piece(piece, scratch.pre_tokenizer,
                                     [&](std::string_view word) { d.model.encode_piece(word, out, scratch.bpe); });
    };
    const auto encode_raw_piece = [&](std::string_view piece) {
      const std::string_view normalized = d.normalizer.apply(piece, scratch.normalized, scratch.normalize_scratch);
      if (d.normalized_matcher.empty()) {
        encode_plain(normalized);
        return;
      }
      d.normalized_matcher.split(normalized, d.added_rules, !allow_special,
                                 [&](std::size_t start, std::size_t end, std::int32_t rule) {
                                   if (rule >= 0) {
                                     out.push_back(d.added_rules[static_cast<std::size_t>(rule)].id);
                                   } else {
                                     encode_plain(normalized.substr(start, end - start));
                                   }
                                 });
    };
    if (d.raw_matcher.empty()) {
      encode_raw_piece(input);
      return;
    }
    d.raw_matcher.split(input, d.added_rules, !allow_special, [&](std::size_t start, std::size_t end, std::int32_t rule) {
      if (rule >= 0) {
        out.push_back(d.added_rules[static_cast<std::size_t>(rule)].id);
      } else {
        encode_raw_piece(input.substr(start, end - start));
      }
    });
  }

  /// encode() of every text; `threads` > 1 spreads the texts over that many threads (0: all cores).
  std::vector<std::vector<std::int64_t>> encode_batch(std::span<const std::string> texts, bool allow_special = true,
                                                      std::size_t threads = 1) const {
    std::vector<std::vector<std::int64_t>> result(texts.size());
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads = std::min(threads, texts.size());
    if (threads <= 1) {
      for (std::size_t k = 0; k < texts.size(); ++k) result[k] = encode(texts[k], allow_special);
      return result;
    }
    std::vector<std::thread> workers;
    std::vector<std::exception_ptr> errors(threads);
    for (std::size_t w = 0; w < threads; ++w) {
      workers.emplace_back([&, w] {
        try {
          for (std::size_t k = w; k < texts.size(); k += threads) result[k] = encode(texts[k], allow_special);
        } catch (...) {
          errors[w] = std::current_exception();
        }
      });
    }
    for (auto& worker : workers) worker.join();
    for (auto& error : errors) {
      if (error) std::rethrow_exception(error);
    }
    return result;
  }

  /// The text of `ids`: ids naming no token are skipped, special tokens too when asked; bytes
  /// that do not form UTF-8 become U+FFFD (one per maximal invalid subsequence).
  std::string decode(std::span<const std::int64_t> ids, bool skip_special = false) const {
    std::string bytes;
    bytes.reserve(ids.size() * 4);
    for (std::int64_t id : ids) append_token_bytes(bytes, id, skip_special);
    return utf8::sanitize(bytes);
  }

  /// The raw bytes `id` contributes to decode() (not necessarily valid UTF-8 on their own);
  /// empty for ids that name no token.
  std::string_view token_bytes(std::int64_t id) const noexcept {
    const tokenizer_detail::TokenizerData& d = *data_;
    if (id < 0 || static_cast<std::uint64_t>(id) >= d.id_flags.size()) return {};
    const auto k = static_cast<std::size_t>(id);
    return std::string_view(d.decode_bytes).substr(d.decode_offsets[k], d.decode_offsets[k + 1] - d.decode_offsets[k]);
  }

  /// Appends token_bytes(id) unless the id names no token, or is special and skip_special.
  void append_token_bytes(std::string& out, std::int64_t id, bool skip_special = false) const {
    const tokenizer_detail::TokenizerData& d = *data_;
    if (id < 0 || static_cast<std::uint64_t>(id) >= d.id_flags.size()) return;
    const std::uint8_t flags = d.id_flags[static_cast<std::size_t>(id)];
    if (!(flags & 1) || (skip_special && (flags & 2))) return;
    out += token_bytes(id);
  }

  /// The id of a token string as tokenizer.json spells it (added tokens first, then the model
  /// vocabulary, byte-level spelling: " hello" is "Ġhello"), or nullopt.
  std::optional<std::int64_t> token_to_id(std::string_view token) const {
    std::int64_t id = data_->added_ids.find(token);
    if (id < 0) id = data_->model.vocab.find(token);
    if (id < 0) return std::nullopt;
    return id;
  }

  /// The token string of `id` as tokenizers' id_to_token gives it (byte-level spelling for
  /// model tokens; an added token's content, normalized if the token is normalized), or nullopt.
  std::optional<std::string_view> id_to_token(std::int64_t id) const {
    const tokenizer_detail::TokenizerData& d = *data_;
    if (id < 0) return std::nullopt;
    const auto added = std::lower_bound(d.added_by_id.begin(), d.added_by_id.end(), std::pair<std::int64_t, std::size_t>{id, 0});
    if (added != d.added_by_id.end() && added->first == id) return std::string_view(d.added_token_strings[added->second]);
    if (static_cast<std::uint64_t>(id) >= d.model.tokens.size() || d.model.tokens[static_cast<std::size_t>(id)].empty()) {
      return std::nullopt;
    }
    return d.model.tokens[static_cast<std::size_t>(id)];
  }

  /// One past the largest id (model vocabulary and added tokens): the embedding rows it needs.
  /// Equals tokenizers' get_vocab_size(with_added_tokens=True) when ids have no gaps.
  std::int64_t vocab_size() const noexcept { return static_cast<std::int64_t>(data_->id_flags.size()); }

  /// The added tokens, in tokenizer.json order.
  std::span<const AddedToken> added_tokens() const noexcept { return data_->added_tokens; }

  /// True when `id` is a special token (skipped by decode(ids, true)).
  bool is_special(std::int64_t id) const noexcept {
    const tokenizer_detail::TokenizerData& d = *data_;
    return id >= 0 && static_cast<std::uint64_t>(id) < d.id_flags.size() && (d.id_flags[static_cast<std::size_t>(id)] & 2);
  }

  /// Ids of the special added tokens, ascending.
  std::vector<std::int64_t> special_token_ids() const {
    std::vector<std::int64_t> ids;
    for (const AddedToken& t : data_->added_tokens) {
      if (t.special) ids.push_back(t.id);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  /// Tokens named by tokenizer_config.json (from_file with the file present), else nullopt.
  std::optional<std::int64_t> bos_token_id() const noexcept { return data_->bos_id; }
  std::optional<std::int64_t> eos_token_id() const noexcept { return data_->eos_id; }
  std::optional<std::int64_t> pad_token_id() const noexcept { return data_->pad_id; }
  std::optional<std::int64_t> unk_token_id() const noexcept { return data_->unk_id; }

  /// The normalizer alone (after replacing invalid UTF-8): tokenizers' normalizer.normalize_str.
  std::string normalize(std::string_view text) const {
    const std::string valid = utf8::sanitize(text);
    std::string storage, scratch;
    return std::string(data_->normalizer.apply(valid, storage, scratch));
  }

  /// The pre-tokenizer alone: the pieces of `text` as raw UTF-8 (tokenizers' pre_tokenize_str
  /// spells them byte-level: " a" there is "Ġa" here).
  std::vector<std::string> pre_tokenize(std::string_view text) const {
    const std::string valid = utf8::sanitize(text);
    std::vector<std::string> pieces;
    tokenizer_detail::PreTokenizerScratch scratch;
    data_->pre_tokenizer.for_each_piece(valid, scratch, [&](std::string_view piece) { pieces.emplace_back(piece); });
    return pieces;
  }

  /// Where the tokenizer was loaded from.
  const std::string& source() const noexcept { return data_->source; }

 private:
  explicit Tokenizer(std::shared_ptr<const tokenizer_detail::TokenizerData> data) : data_(std::move(data)) {}

  static std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) {
      throw Error(path.string() + ": cannot open for reading; pass a tokenizer.json or a folder holding one");
    }
    const std::streamoff size = in.tellg();
    if (size < 0) throw Error(path.string() + ": cannot determine the file size; pass a regular file");
    std::string text(static_cast<std::size_t>(size), '\0');
    in.seekg(0);
    if (!in.read(text.data(), size)) throw Error(path.string() + ": read error (the file changed or is unreadable)");
    return text;
  }

  std::shared_ptr<const tokenizer_detail::TokenizerData> data_;
};

}  // namespace grpo
