#pragma once
// The pre-tokenizer: a sequence of Split steps (a pattern and what to do with its matches)
// ending in ByteLevel, which may add a leading space and split by GPT-2's pattern. Pieces are
// handed to a callback as raw UTF-8; the byte-level spelling is implicit (the BPE model works on
// bytes). Semantics follow tokenizers' NormalizedString::split and PreTokenizedString::split:
// empty pieces are dropped.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpo/tokenizer/detail/split_pattern.hpp"

namespace grpo::tokenizer_detail {

/// tokenizers' SplitDelimiterBehavior.
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

struct SplitStep {
  SplitPattern pattern;
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
};

struct ByteLevelStep {
  bool add_prefix_space = false;  ///< prepend ' ' to every piece that does not start with one
  std::optional<SplitPattern> regex;  ///< GPT-2's pattern when `use_regex` is true
};

/// Reusable buffers for one pre-tokenization (one per thread).
struct PreTokenizerScratch {
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> ranges_per_depth;
};

/// The pieces of `text` after one Split step, as [start, end) ranges (non-empty), in order.
inline void split_ranges(const SplitStep& step, std::string_view text,
                         std::vector<std::pair<std::size_t, std::size_t>>& out) {
  out.clear();
  // (end offset, is_match) of consecutive segments covering `text`, like tokenizers'
  // Pattern::find_matches (with Invert flipping the flags).
  struct Segment {
    std::size_t start, end;
    bool match;
  };
  std::vector<Segment> segments;
  std::size_t previous = 0;
  step.pattern.for_each_match(text, [&](std::size_t start, std::size_t end) {
    if (start > previous) segments.push_back({previous, start, step.invert});
    segments.push_back({start, end, !step.invert});
    previous = end;
  });
  if (previous < text.size()) segments.push_back({previous, text.size(), step.invert});

  std::vector<Segment> kept;  // `match` now means "remove"
  bool previous_match = false;
  switch (step.behavior) {
    case SplitBehavior::isolated:
      for (const Segment& s : segments) kept.push_back({s.start, s.end, false});
      break;
    case SplitBehavior::removed:
      kept = segments;
      break;
    case SplitBehavior::contiguous:
      for (const Segment& s : segments) {
        if (s.match == previous_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back({s.start, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    case SplitBehavior::merged_with_previous:
      for (const Segment& s : segments) {
        if (s.match && !previous_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back({s.start, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    case SplitBehavior::merged_with_next:
      for (std::size_t k = segments.size(); k-- > 0;) {
        const Segment& s = segments[k];
        if (s.match && !previous_match && !kept.empty()) {
          kept.back().start = s.start;
        } else {
          kept.push_back({s.start, s.end, false});
        }
        previous_match = s.match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
  }
  for (const Segment& s : kept) {
    if (!s.match && s.end > s.start) out.emplace_back(s.start, s.end);
  }
}

class PreTokenizer {
 public:
  PreTokenizer() = default;
  PreTokenizer(std::vector<SplitStep> splits, std::optional<ByteLevelStep> byte_level)
      : splits_(std::move(splits)), byte_level_(std::move(byte_level)) {}

  /// Calls fn(piece) for every non-empty piece of `text`, in order.
  template <class Fn>
  void for_each_piece(std::string_view text, PreTokenizerScratch& scratch, Fn&& fn) const {
    if (text.empty()) return;
    if (scratch.ranges_per_depth.size() < splits_.size() + 1) scratch.ranges_per_depth.resize(splits_.size() + 1);
    run(0, text, scratch, fn);
  }

  const std::vector<SplitStep>& splits() const noexcept { return splits_; }
  const std::optional<ByteLevelStep>& byte_level() const noexcept { return byte_level_; }

 private:
  template <class Fn>
  void run(std::size_t depth, std::string_view piece, PreTokenizerScratch& scratch, Fn& fn) const {
    if (depth == splits_.size()) {
      finish(piece, fn);
      return;
    }
    const SplitStep& step = splits_[depth];
    if (step.pattern.tiles() && step.behavior == SplitBehavior::isolated && !step.invert) {
      step.pattern.for_each_match(piece, [&](std::size_t start, std::size_t end) {
        run(depth + 1, piece.substr(start, end - start), scratch, fn);
      });
      return;
    }
    auto& ranges = scratch.ranges_per_depth[depth];
    split_ranges(step, piece, ranges);
    // `ranges` may be reused by a deeper level only at depth + 1, so iterating it is safe.
    for (std::size_t k = 0; k < ranges.size(); ++k) {
      const auto [start, end] = ranges[k];
      run(depth + 1, piece.substr(start, end - start), scratch, fn);
    }
  }

  template <class Fn>
  void finish(std::string_view piece, Fn& fn) const {
    if (!byte_level_) {
      fn(piece);
      return;
    }
    std::string_view text = piece;
    std::string prefixed;
    if (byte_level_->add_prefix_space && piece.front() != ' ') {
      prefixed.reserve(piece.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(piece);
      text = prefixed;
    }
    if (!byte_level_->regex) {
      fn(text);
      return;
    }
    byte_level_->regex->for_each_match(text, [&](std::size_t start, std::size_t end) {
      fn(text.substr(start, end - start));
    });
  }

  std::vector<SplitStep> splits_;
  std::optional<ByteLevelStep> byte_level_;
};

}  // namespace grpo::tokenizer_detail
