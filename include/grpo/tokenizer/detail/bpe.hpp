#pragma once
// The BPE model of tokenizers (models/bpe): a pre-tokenized piece becomes one symbol per byte
// (its byte-level character), then adjacent symbols merge, lowest merge rank first and, among
// equal ranks, leftmost first, until no adjacent pair has a merge. tokenizers does this with a
// binary heap of candidate merges (Word::merge_all); so do we, with the same order, so the
// result is identical. tokenizers skips a stale heap entry when the pair now at its position
// does not merge into the entry's token; we skip it when the pair differs from the entry's pair.
// The two agree: symbols only grow, so a changed pair spells a longer string, hence another
// token. A bounded, thread-safe
// cache maps recent pieces to their ids, like tokenizers' word cache.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/tokenizer/detail/byte_level.hpp"
#include "grpo/tokenizer/detail/hash_maps.hpp"

namespace grpo::tokenizer_detail {

/// Recently seen pieces -> ids. Direct-mapped (a new piece replaces the one in its slot), split
/// into independently locked shards so concurrent encodes rarely contend.
class WordCache {
 public:
  static constexpr std::size_t max_piece_bytes = 256;  ///< longer pieces are not cached (as in tokenizers)

  WordCache() : shards_(std::make_unique<Shard[]>(shard_count)) {}

  /// Appends the cached ids of `piece` to `out` and returns true, or returns false.
  bool find(std::uint64_t hash, std::string_view piece, std::vector<std::int64_t>& out) const {
    Shard& shard = shards_[hash % shard_count];
    std::lock_guard lock(shard.mutex);
    if (shard.entries.empty()) return false;
    const Entry& e = shard.entries[(hash / shard_count) % slots_per_shard];
    if (e.hash != hash || e.key != piece) return false;
    out.insert(out.end(), e.ids.begin(), e.ids.end());
    return true;
  }

  void store(std::uint64_t hash, std::string_view piece, const std::int64_t* ids, std::size_t count) const {
    Shard& shard = shards_[hash % shard_count];
    std::lock_guard lock(shard.mutex);
    if (shard.entries.empty()) shard.entries.resize(slots_per_shard);
    Entry& e = shard.entries[(hash / shard_count) % slots_per_shard];
    e.hash = hash;
    e.key.assign(piece);
    e.ids.assign(ids, ids + count);
  }

 private:
  static constexpr std::size_t shard_count = 16;
  static constexpr std::size_t slots_per_shard = 4096;
  struct Entry {
    std::uint64_t hash = 0;
    std::string key;
    std::vector<std::int32_t> ids;
  };
  struct Shard {
    std::mutex mutex;
    std::vector<Entry> entries;  // allocated on first store
  };
  std::unique_ptr<Shard[]> shards_;
};

/// Reusable buffers for BPE (one per thread).
struct BpeScratch {
  struct Symbol {
    std::int32_t id;
    std::int32_t prev;
    std::int32_t next;
    std::uint32_t length;  ///< bytes of the piece it covers; 0 once merged into its left neighbour
  };
  struct Candidate {
    std::uint32_t rank;
    std::uint32_t pos;     ///< the left symbol
    std::int32_t left;     ///< the pair it was made for: a stale entry no longer matches it
    std::int32_t right;
    std::int32_t new_id;
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::string spelled;  ///< byte-level spelling of a piece (slow path, ignore_merges)
  std::vector<std::int64_t> word_ids;
};

/// tokenizers' BPE model configuration and tables.
class BpeModel {
 public:
  StringIdMap vocab;                      ///< token (byte-level spelling) -> id
  std::vector<std::string_view> tokens;   ///< id -> token, views into `vocab` (empty: no token)
  PairMap merges;                         ///< (left, right) -> rank and merged id
  std::optional<std::int32_t> unk_id;     ///< the unknown token, when the model has one
  bool fuse_unk = false;                  ///< consecutive unknown characters become one unk
  bool byte_fallback = false;             ///< unknown characters become <0xXX> tokens
  bool ignore_merges = false;             ///< a piece that is a whole token is taken as it is
  std::string continuing_subword_prefix;  ///< spelled before every symbol but the first
  std::string end_of_word_suffix;         ///< spelled after the last symbol

  /// Must be called once the tables are filled.
  void finalize() {
    fast_bytes_ = continuing_subword_prefix.empty() && end_of_word_suffix.empty();
    for (int b = 0; b < 256; ++b) {
      std::string spelled;
      append_byte_level(spelled, std::string_view(reinterpret_cast<const char*>(&b), 1));
      byte_ids_[static_cast<std::size_t>(b)] = vocab.find(spelled);
      if (byte_ids_[static_cast<std::size_t>(b)] < 0) fast_bytes_ = false;
    }
  }

  /// Appends the ids of one pre-tokenized piece (raw bytes, non-empty).
  void encode_piece(std::string_view piece, std::vector<std::int64_t>& out, BpeScratch& scratch) const {
    if (ignore_merges) {
      scratch.spelled.clear();
      append_byte_level(scratch.spelled, piece);
      const std::int32_t id = vocab.find(scratch.spelled);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    const bool cacheable = piece.size() <= WordCache::max_piece_bytes;
    const std::uint64_t hash = cacheable ? hash_bytes(piece) : 0;
    if (cacheable && cache_.find(hash, piece, out)) return;
    const std::size_t first = out.size();
    if (fast_bytes_) {
      auto& symbols = scratch.symbols;
      symbols.resize(piece.size());
      for (std::size_t k = 0; k < piece.size(); ++k) {
        symbols[k] = {byte_ids_[static_cast<unsigned char>(piece[k])], static_cast<std::int32_t>(k) - 1,
                      static_cast<std::int32_t>(k + 1), 1};
      }
    } else {
      initial_symbols_slow(piece, scratch);
    }
    merge_all(scratch);
    for (const auto& s : scratch.symbols) {
      if (s.length != 0) out.push_back(s.id);
    }
    if (cacheable) cache_.store(hash, piece, out.data() + first, out.size() - first);
  }

 private:
  /// tokenizers' BPE::merge_word before merging: one symbol per byte-level character, with the
  /// subword prefix/suffix, <0xXX> byte fallback and unknown-token rules.
  void initial_symbols_slow(std::string_view piece, BpeScratch& scratch) const {
    auto& symbols = scratch.symbols;
    symbols.clear();
    const auto add = [&](std::int32_t id, std::uint32_t length) {
      const auto k = static_cast<std::int32_t>(symbols.size());
      symbols.push_back({id, k - 1, k + 1, length});
    };
    std::uint32_t unk_length = 0;  // bytes of the pending run of unknown characters (0: none)
    std::string symbol;
    for (std::size_t k = 0; k < piece.size(); ++k) {
      symbol.clear();
      if (k > 0) symbol += continuing_subword_prefix;
      append_byte_level(symbol, piece.substr(k, 1));
      if (k + 1 == piece.size()) symbol += end_of_word_suffix;
      const std::uint32_t byte_length = byte_level_alphabet.code_point_of_byte[static_cast<unsigned char>(piece[k])] < 0x80 ? 1 : 2;
      const std::int32_t id = vocab.find(symbol);
      if (id >= 0) {
        if (unk_length > 0) {
          add(*unk_id, unk_length);
          unk_length = 0;
        }
        add(id, byte_length);
        continue;
      }
      if (byte_fallback) {
        std::vector<std::int32_t> fallback;
        bool all = true;
        for (unsigned char b : symbol) {
          char name[8];
          std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned>(b));
          const std::int32_t fid = vocab.find(name);
          if (fid < 0) {
            all = false;
            break;
          }
          fallback.push_back(fid);
        }
        if (all) {
          for (std::int32_t fid : fallback) add(fid, 1);
          continue;
        }
      }
      if (unk_id) {
        if (unk_length > 0 && !fuse_unk) {
          add(*unk_id, unk_length);
          unk_length = 0;
        }
        unk_length += byte_length;
      }
      // No unknown token: tokenizers drops the character.
    }
    if (unk_length > 0) add(*unk_id, unk_length);
    if (!symbols.empty()) symbols.back().next = static_cast<std::int32_t>(symbols.size());
  }

  /// Word::merge_all of tokenizers without dropout: repeatedly merges the adjacent pair of
  /// lowest (rank, position). Short pieces (most words) scan for it; long ones use a heap.
  void merge_all(BpeScratch& scratch) const {
    if (scratch.symbols.size() <= small_piece) {
      merge_by_scan(scratch);
    } else {
      merge_by_heap(scratch);
    }
  }

  static constexpr std::size_t small_piece = 16;

  /// The lowest (rank, position) pair found by a left-to-right scan of the live symbols.
  void merge_by_scan(BpeScratch& scratch) const {
    auto& symbols = scratch.symbols;
    const auto size = static_cast<std::int32_t>(symbols.size());
    std::uint32_t rank[small_piece];
    std::int32_t new_id[small_piece];
    const auto look_up = [&](std::int32_t k) {  // the merge of the pair starting at symbol k
      const std::int32_t next = symbols[static_cast<std::size_t>(k)].next;
      const MergeRule* m = next < size ? merges.find(symbols[static_cast<std::size_t>(k)].id, symbols[static_cast<std::size_t>(next)].id) : nullptr;
      rank[k] = m != nullptr ? m->rank : UINT32_MAX;
      new_id[k] = m != nullptr ? m->new_id : -1;
    };
    for (std::int32_t k = 0; k < size; ++k) look_up(k);
    for (;;) {
      std::uint32_t best = UINT32_MAX;
      std::int32_t at = -1;
      for (std::int32_t k = 0; k < size; k = symbols[static_cast<std::size_t>(k)].next) {
        if (rank[k] < best) {
          best = rank[k];
          at = k;
        }
      }
      if (at < 0) return;
      auto& left = symbols[static_cast<std::size_t>(at)];
      auto& right = symbols[static_cast<std::size_t>(left.next)];
      left.id = new_id[at];
      left.length += right.length;
      left.next = right.next;
      right.length = 0;
      if (left.next < size) symbols[static_cast<std::size_t>(left.next)].prev = at;
      look_up(at);
      if (left.prev >= 0) look_up(left.prev);
    }
  }

  /// The same order with a min-heap of candidate merges, as tokenizers does.
  void merge_by_heap(BpeScratch& scratch) const {
    auto& symbols = scratch.symbols;
    auto& heap = scratch.heap;
    heap.clear();
    const auto later = [](const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    const auto size = static_cast<std::int32_t>(symbols.size());
    for (std::int32_t k = 0; k + 1 < size; ++k) {
      if (const MergeRule* m = merges.find(symbols[k].id, symbols[k + 1].id)) {
        heap.push_back({m->rank, static_cast<std::uint32_t>(k), symbols[k].id, symbols[k + 1].id, m->new_id});
      }
    }
    std::make_heap(heap.begin(), heap.end(), later);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const BpeScratch::Candidate top = heap.back();
      heap.pop_back();
      auto& left = symbols[top.pos];
      if (left.length == 0 || left.next >= size || left.id != top.left) continue;  // stale entry
      const std::int32_t right_pos = left.next;
      const auto right = symbols[static_cast<std::size_t>(right_pos)];
      if (right.id != top.right) continue;
      left.id = top.new_id;
      left.length += right.length;
      left.next = right.next;
      symbols[static_cast<std::size_t>(right_pos)].length = 0;
      if (right.next < size) symbols[static_cast<std::size_t>(right.next)].prev = static_cast<std::int32_t>(top.pos);
      if (left.prev >= 0) {
        const auto& prev = symbols[static_cast<std::size_t>(left.prev)];
        if (const MergeRule* m = merges.find(prev.id, left.id)) {
          heap.push_back({m->rank, static_cast<std::uint32_t>(left.prev), prev.id, left.id, m->new_id});
          std::push_heap(heap.begin(), heap.end(), later);
        }
      }
      if (left.next < size) {
        const std::int32_t next_id = symbols[static_cast<std::size_t>(left.next)].id;
        if (const MergeRule* m = merges.find(left.id, next_id)) {
          heap.push_back({m->rank, top.pos, left.id, next_id, m->new_id});
          std::push_heap(heap.begin(), heap.end(), later);
        }
      }
    }
  }

  std::array<std::int32_t, 256> byte_ids_{};
  bool fast_bytes_ = false;
  WordCache cache_;
};

}  // namespace grpo::tokenizer_detail
