#pragma once
// Target word ranges for prompts (method.md, "Target range prediction"). The paper's rules for
// turning an explicit requirement into [lo, hi] are in grpo/text/length_requirement.hpp.
//
// Predictors: anything with `std::optional<WordRange> predict(std::string_view prompt) const`
// models grpo::TargetPredictor (concepts/target.hpp). RuleBasedTargetExtractor answers only for
// explicit requirements (English and Chinese), DefaultTarget always answers (ranges by deliverable
// keywords), and TargetPredictorChain asks its predictors in order: the first that answers wins,
// so a model-based predictor can be put before the default. extract_length_target() is rule-based
// then default.

#include <fmt/format.h>

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "grpo/concepts/target.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/customization_points.hpp"
#include "grpo/text/detail/length_requirement_parser.hpp"
#include "grpo/text/length_requirement.hpp"

namespace grpo {

/// A target range and where it came from: "rule", "default", "model", or a predictor's source()
/// (grpo::target_source).
struct LengthTarget {
  WordRange range;          ///< [lower, upper] in words
  std::string_view source;  ///< the predictor that answered; valid while that predictor lives
};

// ---------------------------------------------------------------------------------------------
// Predictors (grpo::TargetPredictor, concepts/target.hpp)

/// Finds an explicit length requirement in a prompt (English or Chinese), or nullopt. Handles
/// "1000-word", "1,000 words", "2k words", "approximately 3000 words", "2000-2500 words",
/// "between 2000 and 2500 words", "at least / no less than / more than / over N words",
/// "no more than / at most / within / under / up to N words", "N words or more/less",
/// "two thousand words", "1000字", "1000字左右", "200字以内", "不少于2400字", "1000多字", "三千字",
/// "1.5万字", "100至200字", "字数：3000", and per-piece counts: "写3篇，每篇400字左右" (1200),
/// "three 500-word essays" (1500), "4 chapters, 2000 words each" (8000). With several
/// requirements, "at least A" and "at most B" (A < B) form [A, B]; otherwise the largest wins.
inline std::optional<LengthRequirement> find_length_requirement(std::string_view prompt) {
  return detail::targets::extract_requirement(prompt);
}

/// TargetPredictor for explicit requirements: find_length_requirement + apply_target_rules.
struct RuleBasedTargetExtractor {
  /// The paper's rounding, cap and width rules. Default: TargetRules{}.
  TargetRules rules{};

  [[nodiscard]] static std::string_view source() noexcept { return "rule"; }
  [[nodiscard]] std::optional<WordRange> predict(std::string_view prompt) const {
    detail::validate(rules);
    const auto requirement = find_length_requirement(prompt);
    if (!requirement) return std::nullopt;
    return apply_target_rules(*requirement, rules);
  }
};
static_assert(TargetPredictor<RuleBasedTargetExtractor>);

/// The deliverable class DefaultTarget finds in a prompt.
enum class Deliverable { short_text, medium_text, long_text };

namespace detail::targets {
struct DeliverableWord {
  std::string_view text;
  Deliverable kind;
};
// English keywords match whole words of the lower-cased prompt (a trailing "s" allowed).
inline constexpr auto english_deliverables = std::to_array<DeliverableWord>({
    {"poem", Deliverable::short_text}, {"haiku", Deliverable::short_text}, {"limerick", Deliverable::short_text},
    {"sonnet", Deliverable::short_text}, {"tweet", Deliverable::short_text}, {"slogan", Deliverable::short_text},
    {"tagline", Deliverable::short_text}, {"title", Deliverable::short_text}, {"headline", Deliverable::short_text},
    {"caption", Deliverable::short_text}, {"email", Deliverable::short_text}, {"e-mail", Deliverable::short_text},
    {"letter", Deliverable::short_text}, {"message", Deliverable::short_text},
    {"summary", Deliverable::short_text}, {"abstract", Deliverable::short_text}, {"synopsis", Deliverable::short_text},
    {"bio", Deliverable::short_text}, {"description", Deliverable::short_text}, {"ad", Deliverable::short_text},
    {"advertisement", Deliverable::short_text}, {"joke", Deliverable::short_text}, {"riddle", Deliverable::short_text},
    {"motto", Deliverable::short_text}, {"toast", Deliverable::short_text}, {"invitation", Deliverable::short_text},
    {"announcement", Deliverable::short_text}, {"outline", Deliverable::short_text}, {"lyrics", Deliverable::short_text},
    {"song", Deliverable::short_text}, {"paragraph", Deliverable::short_text}, {"sentence", Deliverable::short_text},
    {"novel", Deliverable::long_text}, {"novella", Deliverable::long_text}, {"book", Deliverable::long_text},
    {"ebook", Deliverable::long_text}, {"thesis", Deliverable::long_text}, {"dissertation", Deliverable::long_text},
    {"report", Deliverable::long_text}, {"manual", Deliverable::long_text}, {"handbook", Deliverable::long_text},
    {"screenplay", Deliverable::long_text}, {"memoir", Deliverable::long_text}, {"whitepaper", Deliverable::long_text},
    {"textbook", Deliverable::long_text},
    {"essay", Deliverable::medium_text}, {"article", Deliverable::medium_text}, {"story", Deliverable::medium_text},
    {"stories", Deliverable::medium_text}, {"blog", Deliverable::medium_text}, {"post", Deliverable::medium_text},
    {"speech", Deliverable::medium_text}, {"paper", Deliverable::medium_text}, {"review", Deliverable::medium_text},
    {"analysis", Deliverable::medium_text}, {"chapter", Deliverable::medium_text}, {"script", Deliverable::medium_text},
    {"proposal", Deliverable::medium_text}, {"narrative", Deliverable::medium_text}, {"tale", Deliverable::medium_text},
    {"commentary", Deliverable::medium_text}, {"critique", Deliverable::medium_text}, {"editorial", Deliverable::medium_text},
    {"lecture", Deliverable::medium_text}, {"guide", Deliverable::medium_text},
});
inline constexpr auto chinese_deliverables = std::to_array<DeliverableWord>({
    {"诗", Deliverable::short_text}, {"绝句", Deliverable::short_text}, {"律诗", Deliverable::short_text},
    {"对联", Deliverable::short_text}, {"标语", Deliverable::short_text}, {"口号", Deliverable::short_text},
    {"标题", Deliverable::short_text}, {"邮件", Deliverable::short_text}, {"书信", Deliverable::short_text},
    {"信件", Deliverable::short_text}, {"封信", Deliverable::short_text}, {"短信", Deliverable::short_text},
    {"留言", Deliverable::short_text}, {"摘要", Deliverable::short_text}, {"概要", Deliverable::short_text},
    {"简介", Deliverable::short_text}, {"广告", Deliverable::short_text}, {"祝福", Deliverable::short_text},
    {"贺词", Deliverable::short_text}, {"歌词", Deliverable::short_text}, {"笑话", Deliverable::short_text},
    {"大纲", Deliverable::short_text}, {"小说", Deliverable::long_text}, {"长篇", Deliverable::long_text},
    {"论文", Deliverable::long_text}, {"报告", Deliverable::long_text}, {"手册", Deliverable::long_text},
    {"指南", Deliverable::medium_text}, {"剧本", Deliverable::long_text}, {"传记", Deliverable::long_text},
    {"专著", Deliverable::long_text}, {"教程", Deliverable::long_text},
    {"文章", Deliverable::medium_text}, {"作文", Deliverable::medium_text}, {"故事", Deliverable::medium_text},
    {"散文", Deliverable::medium_text}, {"演讲", Deliverable::medium_text}, {"博客", Deliverable::medium_text},
    {"评论", Deliverable::medium_text}, {"读后感", Deliverable::medium_text}, {"随笔", Deliverable::medium_text},
});

inline bool has_chinese(std::string_view t) {
  for (Pos i = 0; i + 2 < t.size(); ++i) {
    const auto b0 = static_cast<unsigned char>(t[i]);
    if (b0 >= 0xE4 && b0 <= 0xE9) return true;  // lead bytes of U+4000..U+9FFF
  }
  return false;
}
}  // namespace detail::targets

/// The deliverable a prompt asks for, by keywords. English: the first keyword in the prompt (the
/// head noun comes first: "a summary of the novel" -> short). Chinese (the prompt has CJK): the
/// last keyword of the first clause that has one (the head noun comes last: "关于小说的诗" -> short).
/// No keyword: medium_text.
inline Deliverable classify_deliverable(std::string_view prompt) {
  using namespace detail::targets;
  std::string lowered(prompt);
  for (char& c : lowered)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  const std::string_view t = lowered;
  if (has_chinese(t)) {
    std::optional<Deliverable> last;
    for (Pos pos = 0; pos < t.size();) {
      for (std::string_view end : {std::string_view("，"), std::string_view("。"), std::string_view("！"),
                                   std::string_view("？"), std::string_view("；"), std::string_view("\n"),
                                   std::string_view(","), std::string_view("?")}) {
        if (at(t, pos, end) && last) return *last;
      }
      std::size_t best = 0;
      for (const auto& d : chinese_deliverables) {
        if (d.text.size() > best && at(t, pos, d.text)) {
          best = d.text.size();
          last = d.kind;
        }
      }
      pos += best > 0 ? best : 1;
    }
    if (last) return *last;
  }
  for (Pos pos = 0; pos < t.size();) {
    if (!is_alpha(t[pos])) {
      ++pos;
      continue;
    }
    Pos end = pos;
    while (end < t.size() && (is_alpha(t[end]) || (t[end] == '-' && end + 1 < t.size() && is_alpha(t[end + 1])))) ++end;
    std::string_view w = t.substr(pos, end - pos);
    for (const auto& d : english_deliverables) {
      if (w == d.text || (w.size() == d.text.size() + 1 && w.back() == 's' && w.starts_with(d.text))) return d.kind;
    }
    pos = end;
  }
  return Deliverable::medium_text;
}

/// TargetPredictor that always answers: a fixed range per deliverable class (classify_deliverable).
/// A heuristic for prompts without an explicit number; a model-based predictor should run first.
struct DefaultTarget {
  /// Poems, emails, letters, summaries, ... Default [200, 600].
  WordRange short_range{200, 600};
  /// Essays, articles, stories, and prompts with no deliverable keyword. Default [1500, 3000].
  WordRange medium_range{1500, 3000};
  /// Novels, reports, theses, guides, ... Default [4000, 7000].
  WordRange long_range{4000, 7000};

  [[nodiscard]] static std::string_view source() noexcept { return "default"; }
  [[nodiscard]] std::optional<WordRange> predict(std::string_view prompt) const {
    for (const WordRange& r : {short_range, medium_range, long_range}) {
      if (r.lower < 0 || r.lower > r.upper) {
        throw Error(fmt::format("DefaultTarget: expected ranges with 0 <= lower <= upper, found [{}, {}]; fix "
                                "short_range/medium_range/long_range",
                                r.lower, r.upper));
      }
    }
    switch (classify_deliverable(prompt)) {
      case Deliverable::short_text: return short_range;
      case Deliverable::long_text: return long_range;
      default: return medium_range;
    }
  }
};
static_assert(TargetPredictor<DefaultTarget>);

/// Asks its predictors in order; the first that answers wins ("first predictor that answers").
/// Itself a TargetPredictor, so chains nest. `predict_with_source` also says who answered.
///   grpo::TargetPredictorChain chain{MyModelPredictor{...}, grpo::RuleBasedTargetExtractor{},
///                                    grpo::DefaultTarget{}};
template <TargetPredictor... Ps>
class TargetPredictorChain {
 public:
  TargetPredictorChain() = default;
  explicit TargetPredictorChain(Ps... predictors)
    requires(sizeof...(Ps) > 0)
      : predictors_(std::move(predictors)...) {}

  /// The first answer, with the answering predictor's source(); nullopt when none answers.
  /// Throws grpo::Error when a predictor answers a range with lower > upper or a negative bound.
  [[nodiscard]] std::optional<LengthTarget> predict_with_source(std::string_view prompt) const {
    std::optional<LengthTarget> result;
    std::apply([&](const auto&... p) { (try_one(p, prompt, result) || ...); }, predictors_);
    return result;
  }
  [[nodiscard]] std::optional<WordRange> predict(std::string_view prompt) const {
    auto r = predict_with_source(prompt);
    if (!r) return std::nullopt;
    return r->range;
  }
  [[nodiscard]] std::string_view source() const { return "chain"; }

 private:
  template <class P>
  static bool try_one(const P& p, std::string_view prompt, std::optional<LengthTarget>& result) {
    if constexpr (SourcedTargetPredictor<P>) {  // a nested chain: keep the inner source
      const auto answer = p.predict_with_source(prompt);
      if (!answer) return false;
      result = LengthTarget{answer->range, answer->source};
      return true;
    }
    std::optional<WordRange> r = p.predict(prompt);
    if (!r) return false;
    if (r->lower < 0 || r->lower > r->upper) {
      throw Error(fmt::format("TargetPredictorChain: predictor \"{}\" answered [{}, {}], expected 0 <= lower <= upper; "
                              "fix that predictor",
                              target_source(p), r->lower, r->upper));
    }
    result = LengthTarget{*r, target_source(p)};
    return true;
  }
  std::tuple<Ps...> predictors_;
};

template <class... Ps>
TargetPredictorChain(Ps...) -> TargetPredictorChain<Ps...>;

static_assert(SourcedTargetPredictor<TargetPredictorChain<RuleBasedTargetExtractor, DefaultTarget>>);

/// The target of a prompt: the explicit requirement under the paper's rules (source "rule"), else
/// the deliverable default (source "default").
inline LengthTarget extract_length_target(std::string_view prompt, const TargetRules& rules = {}) {
  const TargetPredictorChain chain{RuleBasedTargetExtractor{rules}, DefaultTarget{}};
  return *chain.predict_with_source(prompt);
}

}  // namespace grpo
