// Target ranges: the paper's rules (method.md) applied to explicit requirements, every prompt of
// the shipped LongWrite-Ruler set, and hand-written English/Chinese prompts. Each expected range is
// derived by hand from the rules in grpo/text/targets.hpp (outward rounding to multiples of 100,
// +-10%, cap 12,000, width <= 3,000); the derivation is in the comment beside it.
#include <grpo/text/targets.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

using namespace grpo;

namespace Catch {
template <>
struct StringMaker<grpo::WordRange> {
  static std::string convert(const grpo::WordRange& r) {
    return "[" + std::to_string(r.lower) + ", " + std::to_string(r.upper) + "]";
  }
};
}  // namespace Catch

namespace {
WordRange target(std::string_view prompt) { return extract_length_target(prompt).range; }
std::string source(std::string_view prompt) { return std::string(extract_length_target(prompt).source); }
}  // namespace

TEST_CASE("the paper's three examples") {
  CHECK(apply_target_rules({LengthBound::about, 2000}) == WordRange{1800, 2200});
  CHECK(apply_target_rules({LengthBound::at_most, 2000}) == WordRange{1800, 2000});
  CHECK(apply_target_rules({LengthBound::at_least, 2000}) == WordRange{2000, 2200});
}

TEST_CASE("rounding, small requirements, caps and width") {
  CHECK(apply_target_rules({LengthBound::about, 1234}) == WordRange{1100, 1400});   // 1110.6 -> 1100, 1357.4 -> 1400
  CHECK(apply_target_rules({LengthBound::about, 5}) == WordRange{0, 100});          // 4.5 -> 0, 5.5 -> 100
  CHECK(apply_target_rules({LengthBound::about, 0}) == WordRange{0, 0});
  CHECK(apply_target_rules({LengthBound::at_most, 150}) == WordRange{0, 100});      // hi 100, lo min(100, 0)
  CHECK(apply_target_rules({LengthBound::at_most, 50}) == WordRange{0, 100});       // hi max(100, 0)
  CHECK(apply_target_rules({LengthBound::at_most, 200}) == WordRange{100, 200});    // lo min(100, 100)
  CHECK(apply_target_rules({LengthBound::at_least, 1250}) == WordRange{1300, 1400});  // lo 1300, 1375 -> 1400
  CHECK(apply_target_rules({LengthBound::at_least, 800}) == WordRange{800, 900});   // 880 -> 900
  CHECK(apply_target_rules({LengthBound::between, 2000, 2500}) == WordRange{2000, 2500});
  CHECK(apply_target_rules({LengthBound::between, 2500, 2000}) == WordRange{2000, 2500});  // order-free
  CHECK(apply_target_rules({LengthBound::between, 1050, 1950}) == WordRange{1000, 2000});  // outward
  CHECK(apply_target_rules({LengthBound::between, 1000, 1000}) == WordRange{900, 1100});   // = about
  CHECK(apply_target_rules({LengthBound::about, 12000}) == WordRange{10800, 12000});  // 13200 capped
  CHECK(apply_target_rules({LengthBound::about, 20000}) == WordRange{10800, 12000});  // [18000, 22000] -> cap
  CHECK(apply_target_rules({LengthBound::at_least, 30000}) == WordRange{10800, 12000});
  CHECK(apply_target_rules({LengthBound::between, 15000, 20000}) == WordRange{10800, 12000});
  CHECK(apply_target_rules({LengthBound::between, 1000, 5000}) == WordRange{1500, 4500});  // excess 1000, 500 each side
  CHECK(apply_target_rules({LengthBound::between, 1000, 4100}) == WordRange{1000, 4000});  // excess 100: from the top
  CHECK(apply_target_rules({LengthBound::about, 2000}, {.tolerance_percent = 20}) == WordRange{1600, 2400});
  CHECK(apply_target_rules({LengthBound::about, 2000}, {.step = 50}) == WordRange{1800, 2200});
  CHECK(apply_target_rules({LengthBound::about, 9000}, {.max_upper = 8000}) == WordRange{7200, 8000});
  CHECK_THROWS_AS(apply_target_rules({LengthBound::about, -5}), Error);
  CHECK_THROWS_AS(apply_target_rules({LengthBound::about, 5}, {.step = 0}), Error);
  CHECK_THROWS_AS(apply_target_rules({LengthBound::about, 5}, {.tolerance_percent = 100}), Error);
}

TEST_CASE("every LongWrite-Ruler prompt: its explicit length, widened and capped") {
  std::ifstream in(std::string(GRPO_SOURCE_DIR) + "/examples/data/prompts/longwrite_ruler.jsonl");
  REQUIRE(in);
  std::string line;
  int prompts = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto row = nlohmann::json::parse(line);
    const std::string prompt = row.at("prompt");
    const std::int64_t length = row.at("length");
    // Lengths are multiples of 1000: +-10% is exact; above 12,000 the cap rule gives [10800, 12000].
    const WordRange expected = length <= 12000 ? WordRange{length * 9 / 10, length * 11 / 10 > 12000 ? 12000 : length * 11 / 10}
                                               : WordRange{10800, 12000};
    INFO(prompt);
    const LengthTarget t = extract_length_target(prompt);
    CHECK(t.range == expected);
    CHECK(t.source == "rule");
    ++prompts;
  }
  CHECK(prompts == 48);
}

TEST_CASE("English explicit requirements") {
  CHECK(target("Write a 2,000-word essay on climate policy.") == WordRange{1800, 2200});
  CHECK(target("Write an essay of no more than 2,000 words.") == WordRange{1800, 2000});
  CHECK(target("Write at least 2,000 words about your hometown.") == WordRange{2000, 2200});
  CHECK(target("Tell a story in 1,000 words.") == WordRange{900, 1100});
  CHECK(target("Write approximately 3000 words on the French Revolution") == WordRange{2700, 3300});
  CHECK(target("The essay should be 2000-2500 words long.") == WordRange{2000, 2500});
  CHECK(target("Write between 1500 and 2000 words.") == WordRange{1500, 2000});
  CHECK(target("Aim for 1500 to 2000 words.") == WordRange{1500, 2000});
  CHECK(target("Write a 1000-1500 word essay") == WordRange{1000, 1500});
  CHECK(target("It must be no less than 800 words") == WordRange{800, 900});  // 880 -> 900
  CHECK(target("Summarise the debate within 500 words.") == WordRange{400, 500});  // lo min(400, 400)
  CHECK(target("Explain it in under 300 words") == WordRange{200, 300});           // 270 -> 200
  CHECK(target("Up to 1,200 words, please.") == WordRange{1000, 1200});            // 1080 -> 1000
  CHECK(target("A 2k-word blog post about hiking") == WordRange{1800, 2200});
  CHECK(target("A 2.5k word piece") == WordRange{2200, 2800});                     // 2250 -> 2200, 2750 -> 2800
  CHECK(target("Write two thousand words on bees") == WordRange{1800, 2200});
  CHECK(target("Write a five hundred word essay") == WordRange{400, 600});         // 450 -> 400, 550 -> 600
  CHECK(target("Write twenty-five hundred words") == WordRange{2200, 2800});       // 25 x 100: 2250 -> 2200, 2750 -> 2800
  CHECK(target("An essay of 1000 words or more") == WordRange{1000, 1100});
  CHECK(target("3000+ words on the topic") == WordRange{3000, 3300});
  CHECK(target("About 1,234 words") == WordRange{1100, 1400});
  CHECK(target("Describe yourself in 5 words") == WordRange{0, 100});
  CHECK(target("The 10,000-word report on energy") == WordRange{9000, 11000});
  CHECK(target("Write a 20,000-word novel") == WordRange{10800, 12000});
  CHECK(target("Write between 1000 and 5000 words") == WordRange{1500, 4500});
  CHECK(target("Write a WORD COUNT: 1500 essay") == WordRange{1300, 1700});        // 1350 -> 1300, 1650 -> 1700
  CHECK(target("Respect a word limit of 500") == WordRange{400, 500});
}

TEST_CASE("English: several numbers, pieces, and numbers that are not lengths") {
  CHECK(target("Write 3 essays, 500 words each") == WordRange{1300, 1700});  // 1500: 1350 -> 1300, 1650 -> 1700
  CHECK(target("Write three 500-word essays") == WordRange{1300, 1700});
  CHECK(target("Write 4 chapters, each about 2000 words") == WordRange{7200, 8800});
  CHECK(target("Write at least 1000 words and no more than 1500 words") == WordRange{1000, 1500});
  CHECK(target("Write a 2000-word essay. Each paragraph should be no more than 200 words.") == WordRange{1800, 2200});
  CHECK(target("Write a 1000-word essay on the 2024 Olympics with 3 examples") == WordRange{900, 1100});
  CHECK(target("Compare GPT4 and Llama3 in 600 words") == WordRange{500, 700});  // 540 -> 500, 660 -> 700
  CHECK(source("Write a 1000-word essay") == "rule");
  CHECK_FALSE(find_length_requirement("Write an essay about the year 1990 and 3 key events").has_value());
  CHECK_FALSE(find_length_requirement("Write 1000 characters").has_value());  // characters are not words
}

TEST_CASE("Chinese explicit requirements") {
  CHECK(target("写一篇1000字的文章") == WordRange{900, 1100});
  CHECK(target("写一篇1000字左右的文章") == WordRange{900, 1100});
  CHECK(target("请用200字以内概括这本书") == WordRange{100, 200});
  CHECK(target("写一篇作文，不少于2400字") == WordRange{2400, 2700});  // 2640 -> 2700
  CHECK(target("写一段100至200字的介绍") == WordRange{100, 200});
  CHECK(target("写3篇，每篇400字左右") == WordRange{1000, 1400});     // 1200: 1080 -> 1000, 1320 -> 1400
  CHECK(target("写两篇文章，每篇1500字") == WordRange{2700, 3300});    // 3000
  CHECK(target("字数不少于2400") == WordRange{2400, 2700});
  CHECK(target("字数：3000") == WordRange{2700, 3300});
  CHECK(target("写一篇三千字的小说") == WordRange{2700, 3300});
  CHECK(target("写两千五百字") == WordRange{2200, 2800});              // 2250 -> 2200, 2750 -> 2800
  CHECK(target("写三千五字") == WordRange{3100, 3900});                // 3500: 3150 -> 3100, 3850 -> 3900
  CHECK(target("写一份1.5万字的报告") == WordRange{10800, 12000});     // 15000, capped
  CHECK(target("写1000多字") == WordRange{1000, 1100});
  CHECK(target("3000字以上的散文") == WordRange{3000, 3300});
  CHECK(target("500字内说明原因") == WordRange{400, 500});
  CHECK(target("2000到3000字") == WordRange{2000, 3000});
  CHECK(target("写一篇１０００字的游记") == WordRange{900, 1100});     // fullwidth digits
  CHECK(target("写一封信，不超过300字") == WordRange{200, 300});
  CHECK(target("写一篇5000字的文章，每段不超过300字") == WordRange{4500, 5500});  // the largest wins
  CHECK(source("写一篇1000字的文章") == "rule");
}

TEST_CASE("the deliverable default for prompts without a number") {
  const DefaultTarget d;
  CHECK(target("Write a poem about the sea") == d.short_range);
  CHECK(target("Write a summary of the novel War and Peace") == d.short_range);  // the head noun comes first
  CHECK(target("Write an essay about the history of Rome") == d.medium_range);
  CHECK(target("Write an essay titled 'The title'") == d.medium_range);
  CHECK(target("Write a novel about a lighthouse keeper") == d.long_range);
  CHECK(target("Tell me something interesting") == d.medium_range);
  CHECK(target("写一首关于长篇小说的诗") == d.short_range);  // the head noun comes last in Chinese
  CHECK(target("写一篇关于人工智能的论文") == d.long_range);
  CHECK(target("写一篇关于春天的文章") == d.medium_range);
  CHECK(source("Write a poem about the sea") == "default");
  CHECK(classify_deliverable("Draft three EMAILS to my team") == Deliverable::short_text);
}

namespace {
struct FakeModel {  // answers only for prompts that mention "MODEL"
  std::optional<WordRange> predict(std::string_view prompt) const {
    if (prompt.find("MODEL") == std::string_view::npos) return std::nullopt;
    return WordRange{3000, 5000};
  }
};
struct BrokenModel {
  std::optional<WordRange> predict(std::string_view) const { return WordRange{500, 100}; }
  std::string_view source() const { return "broken"; }
};
}  // namespace

TEST_CASE("a chain asks predictors in order and names who answered") {
  const TargetPredictorChain chain{FakeModel{}, RuleBasedTargetExtractor{}, DefaultTarget{}};
  static_assert(TargetPredictor<decltype(chain)>);
  auto t = chain.predict_with_source("MODEL: write a 1000-word essay");
  REQUIRE(t);
  CHECK(t->range == WordRange{3000, 5000});
  CHECK(t->source == "model");
  t = chain.predict_with_source("write a 1000-word essay");
  CHECK(t->range == WordRange{900, 1100});
  CHECK(t->source == "rule");
  t = chain.predict_with_source("write a poem");
  CHECK(t->source == "default");
  CHECK(chain.predict("write a poem") == DefaultTarget{}.short_range);

  const TargetPredictorChain rule_only{RuleBasedTargetExtractor{}};
  CHECK_FALSE(rule_only.predict("write a poem").has_value());
  const TargetPredictorChain nested{rule_only, DefaultTarget{}};
  CHECK(nested.predict_with_source("write a 1000-word essay")->source == "rule");  // the inner answer
  CHECK_THROWS_WITH(TargetPredictorChain{BrokenModel{}}.predict("x"), Catch::Contains("broken"));
}

TEST_CASE("the extractor survives hostile input") {
  const std::string junk("\xFF\xFE 1000\xE5\xAD words \x80\x80 \xE4\xB8\x80\xE4\xB8\x87\xE4\xB8\x87 99999999999999999999 words", 70);
  CHECK_NOTHROW(extract_length_target(junk));
  CHECK(target("99999999999999999999999 words") == WordRange{10800, 12000});  // huge: capped, not overflowed
  CHECK(target("") == DefaultTarget{}.medium_range);
  CHECK(target("words words 字字字 - to 至") == DefaultTarget{}.medium_range);
}
