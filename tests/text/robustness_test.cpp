// Every text function on 4,100 adversarial and random byte strings (invalid UTF-8, NUL bytes, CJK,
// emoji, ...) from tests/python/fixtures/text.py, and on cut-up prompts: no crash, no exception
// beyond grpo::Error, results inside their documented ranges.
#include <grpo/rewards/format.hpp>
#include <grpo/rewards/length.hpp>
#include <grpo/text/completion.hpp>
#include <grpo/text/repetition.hpp>
#include <grpo/text/targets.hpp>
#include <grpo/text/word_count.hpp>

#include "python_reference.hpp"

using namespace grpo;

TEST_CASE("text functions accept any bytes and stay in range") {
  const auto cases = grpo_test::python_text_cases();
  REQUIRE(cases.size() > 4000);
  const TargetRules rules;
  for (const auto& c : cases) {
    INFO("bytes: " << c.bytes);
    const LengthTarget t = extract_length_target(c.bytes);
    CHECK(t.range.lower >= 0);
    CHECK(t.range.lower <= t.range.upper);
    CHECK(t.range.upper <= rules.max_upper);
    CHECK(t.range.upper - t.range.lower <= rules.max_width);
    const auto r = measure_repetition(c.bytes);
    CHECK(r.ratio >= 0.0);
    CHECK(r.ratio <= 1.0);
    const std::string completion = "<think>" + c.bytes + "</think><answer>" + c.bytes + "</answer>";
    const auto parts = parse_completion(completion);
    CHECK(parts.answer.size() <= completion.size());
    CHECK(word_count(parts.answer) <= word_count(completion));
    const double f = FormatReward{}.reward(completion);
    CHECK((f >= 0.0 && f <= 1.0));
    const Sample s{.completion = completion, .target = t.range};
    const float l = LengthReward{}(s);
    CHECK((l >= 0.0f && l <= 1.0f));
  }
}

TEST_CASE("every prefix of a requirement is handled") {
  // Cutting a prompt at every byte exercises half numbers, half units and cut UTF-8 sequences.
  for (std::string_view prompt : {std::string_view("写3篇，每篇400字左右的文章，字数不少于1,200字"),
                                  std::string_view("Write between 1,500 and 2,000 words, at least two thousand words")}) {
    for (std::size_t n = 0; n <= prompt.size(); ++n) {
      const auto t = extract_length_target(prompt.substr(0, n));
      CHECK(t.range.lower <= t.range.upper);
    }
  }
}
