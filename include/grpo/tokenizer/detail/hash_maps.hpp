#pragma once
// Flat open-addressing hash maps for the tokenizer's hot lookups: token string -> id (keys are
// views into one arena, no node allocations) and (left id, right id) -> merge. Linear probing at
// a load factor <= 1/2 (strings) or 3/4 (pairs, 16-byte slots, so the 150k merges of a real
// vocabulary take 4 MB); built once, read-only afterwards, so safe to share across threads.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::tokenizer_detail {

inline std::uint64_t mix64(std::uint64_t x) noexcept {
  // The finaliser of MurmurHash3 / splitmix64: every input bit affects every output bit.
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDULL;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ULL;
  x ^= x >> 33;
  return x;
}

/// Hash of a byte string, 8 bytes at a time (tokens and words are short: one or two rounds).
inline std::uint64_t hash_bytes(std::string_view s) noexcept {
  std::uint64_t h = 0x9E3779B97F4A7C15ULL ^ s.size();
  const char* p = s.data();
  std::size_t n = s.size();
  while (n >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0x9E3779B97F4A7C15ULL;
  }
  return mix64(h);
}

/// string -> int32 id. Keys are copied into an arena owned by the map; a slot holds the key's
/// location and a 32-bit hash tag, so a lookup touches one slot and, on a tag match, the key.
class StringIdMap {
 public:
  StringIdMap() = default;

  void reserve(std::size_t count, std::size_t key_bytes) {
    arena_.reserve(key_bytes);
    if (count * 2 > slots_.size()) rehash(std::bit_ceil(std::max<std::size_t>(16, count * 2)));
  }

  /// Inserts `key` -> `id` (id >= 0); returns false (and changes nothing) when the key is present.
  bool insert(std::string_view key, std::int32_t id) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(std::max<std::size_t>(16, slots_.size() * 2));
    const std::uint64_t h = hash_bytes(key);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    std::size_t i = h & mask_;
    while (slots_[i].id >= 0) {
      const Slot& e = slots_[i];
      if (e.tag == tag && view(e) == key) return false;
      i = (i + 1) & mask_;
    }
    slots_[i] = Slot{tag, static_cast<std::uint32_t>(arena_.size()), static_cast<std::uint32_t>(key.size()), id};
    arena_.append(key);
    ++size_;
    return true;
  }

  /// The id of `key`, or -1.
  std::int32_t find(std::string_view key) const noexcept { return find(key, hash_bytes(key)); }

  std::int32_t find(std::string_view key, std::uint64_t h) const noexcept {
    if (slots_.empty()) return -1;
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    std::size_t i = h & mask_;
    while (slots_[i].id >= 0) {
      const Slot& e = slots_[i];
      if (e.tag == tag && view(e) == key) return e.id;
      i = (i + 1) & mask_;
    }
    return -1;
  }

  std::size_t size() const noexcept { return size_; }

  /// Calls fn(key, id) for every entry (in no particular order). The keys stay valid as long
  /// as the map is not modified.
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const Slot& e : slots_) {
      if (e.id >= 0) fn(view(e), e.id);
    }
  }

 private:
  struct Slot {
    std::uint32_t tag = 0;
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    std::int32_t id = -1;  // -1: empty
  };

  std::string_view view(const Slot& e) const noexcept { return {arena_.data() + e.offset, e.length}; }

  void rehash(std::size_t slot_count) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(slot_count, Slot{});
    mask_ = slot_count - 1;
    for (const Slot& e : old) {
      if (e.id < 0) continue;
      std::size_t i = hash_bytes(view(e)) & mask_;
      while (slots_[i].id >= 0) i = (i + 1) & mask_;
      slots_[i] = e;
    }
  }

  std::string arena_;
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

/// One BPE merge: its priority (the line number in `merges`, lower first) and the merged token.
struct MergeRule {
  std::uint32_t rank;
  std::int32_t new_id;
};

/// (left id, right id) -> MergeRule.
class PairMap {
 public:
  void reserve(std::size_t count) { rehash(std::bit_ceil(std::max<std::size_t>(16, count + count / 2))); }

  /// Inserts or overwrites (a later duplicate merge replaces an earlier one, as in `tokenizers`).
  /// The load factor stays below 3/4 (the table is read far more than written: keep it small).
  void insert_or_assign(std::int32_t left, std::int32_t right, MergeRule rule) {
    if ((size_ + 1) * 4 > slots_.size() * 3) rehash(std::max<std::size_t>(16, slots_.size() * 2));
    const std::uint64_t key = pack(left, right);
    std::size_t i = mix64(key) & mask_;
    while (slots_[i].key != empty_key) {
      if (slots_[i].key == key) {
        slots_[i].rule = rule;
        return;
      }
      i = (i + 1) & mask_;
    }
    slots_[i] = Slot{key, rule};
    ++size_;
  }

  /// The merge of (left, right), or nullptr.
  const MergeRule* find(std::int32_t left, std::int32_t right) const noexcept {
    if (slots_.empty()) return nullptr;
    const std::uint64_t key = pack(left, right);
    std::size_t i = mix64(key) & mask_;
    while (slots_[i].key != empty_key) {
      if (slots_[i].key == key) return &slots_[i].rule;
      i = (i + 1) & mask_;
    }
    return nullptr;
  }

  std::size_t size() const noexcept { return size_; }

 private:
  struct Slot {
    std::uint64_t key;
    MergeRule rule;
  };
  static constexpr std::uint64_t empty_key = ~std::uint64_t{0};
  static std::uint64_t pack(std::int32_t left, std::int32_t right) noexcept {
    return (std::uint64_t{static_cast<std::uint32_t>(left)} << 32) | static_cast<std::uint32_t>(right);
  }

  void rehash(std::size_t slot_count) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(slot_count, Slot{empty_key, {}});
    mask_ = slot_count - 1;
    for (const Slot& s : old) {
      if (s.key == empty_key) continue;
      std::size_t i = mix64(s.key) & mask_;
      while (slots_[i].key != empty_key) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace grpo::tokenizer_detail
