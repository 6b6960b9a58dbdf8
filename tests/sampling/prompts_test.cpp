// Prompt templates: the shipped think prompt, the Chinese switch, ChatML as transformers renders it.
#include <catch2/catch.hpp>

#include <grpo/sampling/prompts.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

TEST_CASE("the embedded English think prompt is the shipped file, byte for byte", "[sampling]") {
  const auto path = std::filesystem::path(GRPO_SOURCE_DIR) / "examples" / "data" / "prompts" / "think_prompt_en.txt";
  std::ifstream file(path, std::ios::binary);
  REQUIRE(file);
  const std::string shipped((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  CHECK(shipped == std::string(grpo::think_prompt_en));
}

TEST_CASE("questions with a CJK ideograph get the Chinese prompt", "[sampling]") {
  using grpo::apply_prompt_template;
  CHECK(apply_prompt_template("Write a poem.") == grpo::fill_prompt(grpo::think_prompt_en, "Write a poem."));
  CHECK(apply_prompt_template("写一首诗") == grpo::fill_prompt(grpo::think_prompt_zh, "写一首诗"));
  // U+4E00 and U+9FFF are the range's ends; U+3400 (extension A), kana and hangul are outside.
  CHECK(grpo::contains_cjk_ideograph("\xE4\xB8\x80"));      // U+4E00
  CHECK(grpo::contains_cjk_ideograph("x \xE9\xBF\xBF y"));  // U+9FFF
  CHECK_FALSE(grpo::contains_cjk_ideograph("\xE3\x90\x80"));  // U+3400
  CHECK_FALSE(grpo::contains_cjk_ideograph("\xEA\x80\x80"));  // U+A000
  CHECK_FALSE(grpo::contains_cjk_ideograph("ひらがな 한국어"));
  CHECK_FALSE(grpo::contains_cjk_ideograph("\xE4\xB8"));      // truncated, invalid: no crash, no match
  CHECK(apply_prompt_template("写", {.chinese_variant = false}) == grpo::fill_prompt(grpo::think_prompt_en, "写"));
  CHECK(apply_prompt_template("写", {.style = grpo::PromptTemplate::direct}) ==
        grpo::fill_prompt(grpo::direct_prompt_zh, "写"));
}

TEST_CASE("every template has the frame and markers of the original", "[sampling]") {
  for (auto text : {grpo::think_prompt_en, grpo::think_prompt_zh, grpo::direct_prompt_en, grpo::direct_prompt_zh}) {
    CHECK(text.ends_with("  <|user|>: {question} <|assistant|>:"));
    CHECK(text.find("<answer> </answer>") != std::string_view::npos);
  }
  CHECK(grpo::think_prompt_zh.find("<think> </think>") != std::string_view::npos);
  CHECK(grpo::direct_prompt_en.find("<think>") == std::string_view::npos);
}

TEST_CASE("the question is inserted verbatim, once", "[sampling]") {
  const auto prompt = grpo::apply_prompt_template("Explain {question} and {x}", {.style = grpo::PromptTemplate::direct});
  CHECK(prompt.ends_with("<|user|>: Explain {question} and {x} <|assistant|>:"));
  CHECK_THROWS_AS(grpo::fill_prompt("no placeholder", "q"), grpo::Error);
  CHECK_THROWS_AS(grpo::fill_prompt("{question}{question}", "q"), grpo::Error);
}

TEST_CASE("ChatML matches the shipped Qwen2.5 chat template", "[sampling]") {
  // transformers 5.24, AutoTokenizer.from_pretrained("examples/data/qwen2.5-tokenizer")
  //   .apply_chat_template(messages, tokenize=False, add_generation_prompt=True):
  //   [user "Hi"]                -> '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
  //   [system "S", user "Hi"]    -> '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
  CHECK(grpo::apply_prompt_template("Hi", {.style = grpo::PromptTemplate::chatml}) ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(grpo::apply_prompt_template("Hi", {.style = grpo::PromptTemplate::chatml, .system = "S"}) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("template names parse, unknown ones are rejected", "[sampling]") {
  CHECK(grpo::parse_prompt_template("think") == grpo::PromptTemplate::think);
  CHECK(grpo::parse_prompt_template("direct") == grpo::PromptTemplate::direct);
  CHECK(grpo::parse_prompt_template("chatml") == grpo::PromptTemplate::chatml);
  CHECK_THROWS_WITH(grpo::parse_prompt_template("Think"), Catch::Contains("think, direct, chatml"));
}
