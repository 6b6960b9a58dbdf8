#pragma once
// Think/answer parsing of a completion. The LongWriter-Zero think prompt asks for
//   <think> planning </think> <answer> final text </answer>
// and generation stops at "</answer>" (the stop string is kept in the completion).
//
// Rules (tags are matched exactly and case-sensitively: "<think>", "</think>", "<answer>",
// "</answer>"; no attributes, no spaces inside the brackets):
//  - well_formed: the completion, after leading and trailing whitespace is ignored, is exactly
//      "<think>" T "</think>" W "<answer>" A "</answer>"
//    where W is whitespace only and each of the four tags occurs exactly once (so T and A hold no
//    tag). Empty T or A still counts as well formed (an empty answer earns no length reward).
//  - answer: the text between the first "<answer>" and the first "</answer>" after it. Without a
//    closing tag (generation hit the token limit) the answer runs to the end of the completion, so
//    a truncated answer is still measured. Without any "<answer>" the answer is empty: text that
//    was not delivered as an answer earns no length, whatever its size.
//  - think: the text between the first "<think>" and the first "</think>" after it; without a
//    closing tag it runs to the first "<answer>" or the end. Empty without "<think>".
//  - answer_closed: a "</answer>" follows the first "<answer>".
// The views point into the parsed string; they are never trimmed (word counts ignore spacing).

#include <cstddef>
#include <string_view>

namespace grpo {

/// The parts of a completion, see the rules at the top of grpo/text/completion.hpp.
struct CompletionParts {
  bool well_formed = false;      ///< exactly one think block then one answer block, whitespace around
  bool answer_closed = false;    ///< the answer block has its "</answer>"
  std::string_view think;        ///< text inside the think block (view into the completion)
  std::string_view answer;       ///< text inside the answer block, or to the end when unclosed
  std::size_t think_open_tags = 0;    ///< occurrences of "<think>"
  std::size_t think_close_tags = 0;   ///< occurrences of "</think>"
  std::size_t answer_open_tags = 0;   ///< occurrences of "<answer>"
  std::size_t answer_close_tags = 0;  ///< occurrences of "</answer>"
};

namespace detail {
inline constexpr std::string_view think_open_tag = "<think>";
inline constexpr std::string_view think_close_tag = "</think>";
inline constexpr std::string_view answer_open_tag = "<answer>";
inline constexpr std::string_view answer_close_tag = "</answer>";

inline std::size_t count_occurrences(std::string_view text, std::string_view needle) noexcept {
  std::size_t n = 0;
  for (std::size_t pos = text.find(needle); pos != std::string_view::npos; pos = text.find(needle, pos + needle.size())) ++n;
  return n;
}

constexpr bool is_ascii_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

inline std::string_view trim_ascii_space(std::string_view s) noexcept {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}
}  // namespace detail

/// Splits a completion into think and answer (rules at the top of this header). Never throws.
inline CompletionParts parse_completion(std::string_view completion) noexcept {
  using namespace detail;
  CompletionParts parts;
  parts.think_open_tags = count_occurrences(completion, think_open_tag);
  parts.think_close_tags = count_occurrences(completion, think_close_tag);
  parts.answer_open_tags = count_occurrences(completion, answer_open_tag);
  parts.answer_close_tags = count_occurrences(completion, answer_close_tag);

  const std::size_t answer_open = completion.find(answer_open_tag);
  if (answer_open != std::string_view::npos) {
    const std::size_t begin = answer_open + answer_open_tag.size();
    const std::size_t close = completion.find(answer_close_tag, begin);
    parts.answer_closed = close != std::string_view::npos;
    parts.answer = completion.substr(begin, parts.answer_closed ? close - begin : std::string_view::npos);
  }
  const std::size_t think_open = completion.find(think_open_tag);
  if (think_open != std::string_view::npos) {
    const std::size_t begin = think_open + think_open_tag.size();
    std::size_t end = completion.find(think_close_tag, begin);
    if (end == std::string_view::npos) end = completion.find(answer_open_tag, begin);
    parts.think = completion.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
  }

  const bool one_each = parts.think_open_tags == 1 && parts.think_close_tags == 1 && parts.answer_open_tags == 1 &&
                        parts.answer_close_tags == 1;
  if (one_each) {
    // "<think>" T "</think>" W "<answer>" A "</answer>", nothing but whitespace outside.
    const std::string_view body = trim_ascii_space(completion);
    const std::size_t think_close = body.find(think_close_tag);
    const std::size_t answer_at = body.find(answer_open_tag);
    parts.well_formed = body.starts_with(think_open_tag) && body.ends_with(answer_close_tag) &&
                        think_close != std::string_view::npos && answer_at != std::string_view::npos &&
                        think_close < answer_at &&
                        trim_ascii_space(body.substr(think_close + think_close_tag.size(),
                                                     answer_at - think_close - think_close_tag.size()))
                            .empty();
  }
  return parts;
}

}  // namespace grpo
