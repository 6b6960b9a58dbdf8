// Think/answer parsing: the rules at the top of grpo/text/completion.hpp, case by case.
#include <grpo/text/completion.hpp>

#include <catch2/catch.hpp>

using grpo::parse_completion;

TEST_CASE("a well-formed completion") {
  const auto p = parse_completion("<think>plan the essay</think> <answer>The essay.</answer>");
  CHECK(p.well_formed);
  CHECK(p.answer_closed);
  CHECK(p.think == "plan the essay");
  CHECK(p.answer == "The essay.");
  CHECK(p.think_open_tags == 1);
  CHECK(p.think_close_tags == 1);
  CHECK(p.answer_open_tags == 1);
  CHECK(p.answer_close_tags == 1);
}

TEST_CASE("whitespace around and between the blocks is allowed") {
  CHECK(parse_completion("\n  <think>a</think>\n\n<answer>b</answer>\n").well_formed);
  CHECK(parse_completion("<think>a</think><answer>b</answer>").well_formed);
  CHECK(parse_completion("<think></think><answer></answer>").well_formed);  // empty blocks: structure only
}

TEST_CASE("text outside the blocks breaks the structure") {
  CHECK_FALSE(parse_completion("Sure! <think>a</think><answer>b</answer>").well_formed);
  CHECK_FALSE(parse_completion("<think>a</think> so <answer>b</answer>").well_formed);
  CHECK_FALSE(parse_completion("<think>a</think><answer>b</answer> bye").well_formed);
  // but the answer is still the text of the first answer block
  CHECK(parse_completion("<think>a</think> so <answer>b</answer>").answer == "b");
}

TEST_CASE("wrong tag counts or order break the structure") {
  const auto twice = parse_completion("<think>a</think><answer>b</answer><answer>c</answer>");
  CHECK_FALSE(twice.well_formed);
  CHECK(twice.answer_open_tags == 2);
  CHECK(twice.answer_close_tags == 2);
  CHECK(twice.answer == "b");
  CHECK_FALSE(parse_completion("<answer>b</answer><think>a</think>").well_formed);
  CHECK_FALSE(parse_completion("<think>a<think>x</think><answer>b</answer>").well_formed);
  CHECK_FALSE(parse_completion("<think>a</think><answer>b<answer></answer>").well_formed);
  CHECK_FALSE(parse_completion("<THINK>a</THINK><answer>b</answer>").well_formed);  // case-sensitive
  CHECK_FALSE(parse_completion("<think>a</think><answer>b</answer ></answer").well_formed);
}

TEST_CASE("a truncated answer runs to the end and is not well formed") {
  const auto p = parse_completion("<think>plan</think><answer>It was a dark and stormy");
  CHECK_FALSE(p.well_formed);
  CHECK_FALSE(p.answer_closed);
  CHECK(p.answer == "It was a dark and stormy");
  CHECK(p.answer_close_tags == 0);
}

TEST_CASE("without an answer tag the answer is empty") {
  const auto p = parse_completion("<think>plan</think> The essay without tags.");
  CHECK_FALSE(p.well_formed);
  CHECK(p.answer.empty());
  CHECK(p.think == "plan");
  const auto plain = parse_completion("Just text.");
  CHECK(plain.answer.empty());
  CHECK(plain.think.empty());
  CHECK(plain.think_open_tags + plain.think_close_tags + plain.answer_open_tags + plain.answer_close_tags == 0);
}

TEST_CASE("an unclosed think block ends at the answer") {
  const auto p = parse_completion("<think>plan <answer>text</answer>");
  CHECK(p.think == "plan ");
  CHECK(p.answer == "text");
  CHECK_FALSE(p.well_formed);
  CHECK(parse_completion("<think>still thinking when the limit hit").think == "still thinking when the limit hit");
}

TEST_CASE("invalid UTF-8 and NUL bytes are carried, not choked on") {
  const std::string text("<think>\xFF</think><answer>\x80\0x</answer>", 36);
  const auto p = parse_completion(text);
  CHECK(p.well_formed);
  CHECK(p.answer == std::string_view("\x80\0x", 3));
}
