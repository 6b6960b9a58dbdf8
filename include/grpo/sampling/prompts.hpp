#pragma once
// The prompts of the LongWriter-Zero recipe and the ChatML chat template.
//
// think   the raw completion prompt of THU-KEG/LongWriter-Zero-32B (model card): the model thinks
//         in <think>...</think>, then writes in <answer>...</answer>. The English text is the one
//         shipped in examples/data/prompts/think_prompt_en.txt (a test checks they are equal);
//         the Chinese variant, used when the question contains a CJK ideograph (U+4E00..U+9FFF)
//         as the released model does, is our translation of the same instructions with the same
//         tags and markers.
// direct  the same frame asking only for <answer>...</answer> (no thinking), English and Chinese.
// chatml  <|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n
//         for instruct models, as the shipped Qwen2.5 tokenizer's chat template renders one user
//         turn with add_generation_prompt (the system turn only when a system text is given).
//
// Templates hold "{question}" once; the question is inserted verbatim (braces in it stay).

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "grpo/core/enum_names.hpp"
#include "grpo/core/error.hpp"
#include "grpo/text/utf8.hpp"

namespace grpo {

/// The English think prompt, byte for byte examples/data/prompts/think_prompt_en.txt.
inline constexpr std::string_view think_prompt_en =
    "A conversation between the user and the assistant. The user provides a writing/general task, and the assistant "
    "completes it. The assistant first deeply thinks through the writing/answering process in their mind before "
    "providing the final written work to the user. The assistant should engage in comprehensive and in-depth planning "
    "to ensure that every aspect of the writing/general task is detailed and well-structured. If there is any "
    "uncertainty or ambiguity in the writing request, the assistant should reflect, ask themselves clarifying "
    "questions, and explore multiple writing approaches to ensure the final output meets the highest quality "
    "standards. Since writing is both a creative and structured task, the assistant should analyze it from multiple "
    "perspectives, considering coherence, clarity, style, tone, audience, purpose, etc.. Additionally, the assistant "
    "should review and refine the work to enhance its expressiveness. The writing thought process and the final "
    "written work should be enclosed within <think> </think> and <answer> </answer> tags, respectively, as shown "
    "below: <think>A comprehensive strategy for writing that encompasses detailed planning and structural "
    "design\xE2\x80\x94including brainstorming, outlining, style selection, audience adaptation, self-reflection, "
    "quality assurance, etc..</think> <answer>The final written work after thorough optimization and "
    "refinement.</answer>  <|user|>: {question} <|assistant|>:";

/// The Chinese think prompt: the same instructions, tags and markers, in Chinese.
inline constexpr std::string_view think_prompt_zh =
    "用户与助手之间的对话。用户提出一个写作/通用任务，由助手完成。助手在向用户提供最终的书面作品之前，先在脑海中深入思考写作/"
    "回答的过程。助手应进行全面而深入的规划，确保写作/通用任务的每个方面都详尽且结构清晰。如果写作要求存在任何不确定或含糊之处，"
    "助手应进行反思，向自己提出澄清性的问题，并探索多种写作思路，以确保最终作品达到最高的质量标准。由于写作既是创造性的任务，"
    "也是结构化的任务，助手应从多个角度进行分析，考虑连贯性、清晰度、风格、语气、受众、目的等。此外，助手还应审阅并完善作品，"
    "以增强其表现力。写作的思考过程和最终的书面作品应分别用 <think> </think> 和 <answer> </answer> 标签包裹，如下所示："
    "<think>一份包含详细规划与结构设计的全面写作策略——包括头脑风暴、拟定大纲、选择风格、适配受众、自我反思、质量把控等。"
    "</think> <answer>经过充分优化与润色的最终书面作品。</answer>  <|user|>: {question} <|assistant|>:";

/// The direct-answer prompt (no thinking), English.
inline constexpr std::string_view direct_prompt_en =
    "A conversation between the user and the assistant. The user provides a writing/general task, and the assistant "
    "completes it. The assistant directly provides the final written work, enclosed within <answer> </answer> tags, "
    "as shown below: <answer>The final written work.</answer>  <|user|>: {question} <|assistant|>:";

/// The direct-answer prompt, Chinese.
inline constexpr std::string_view direct_prompt_zh =
    "用户与助手之间的对话。用户提出一个写作/通用任务，由助手完成。助手直接给出最终的书面作品，并用 <answer> </answer> "
    "标签包裹，如下所示：<answer>最终的书面作品。</answer>  <|user|>: {question} <|assistant|>:";

/// Which prompt wraps a question.
enum class PromptTemplate : std::uint8_t {
  think,   ///< LongWriter-Zero's think prompt (base models); the default
  direct,  ///< answer only, no <think> section
  chatml,  ///< ChatML turns for instruct models
};

/// Names of PromptTemplate (configs' trainer.prompt_template, eval's --template; docs/model.md).
inline constexpr EnumName<PromptTemplate> prompt_template_names[] = {
    {"think", PromptTemplate::think}, {"direct", PromptTemplate::direct}, {"chatml", PromptTemplate::chatml}};

/// How apply_prompt_template builds a prompt.
struct PromptOptions {
  PromptTemplate style = PromptTemplate::think;  ///< which template; default think
  /// think/direct: use the Chinese text when the question contains a CJK ideograph
  /// (U+4E00..U+9FFF), as LongWriter-Zero does; default true.
  bool chinese_variant = true;
  /// chatml: the system turn's text; empty = no system turn (the shipped template's behaviour;
  /// Qwen2.5-Instruct's own template would insert "You are Qwen, created by Alibaba Cloud. You are
  /// a helpful assistant."). Default empty.
  std::string system;
};

/// True when `text` holds a code point in U+4E00..U+9FFF (CJK Unified Ideographs).
inline bool contains_cjk_ideograph(std::string_view text) {
  bool found = false;
  utf8::for_each_code_point(text, [&](char32_t c, bool) { found = found || (c >= 0x4E00 && c <= 0x9FFF); });
  return found;
}

/// The template text with "{question}" replaced by `question` (exactly one placeholder).
inline std::string fill_prompt(std::string_view prompt_template, std::string_view question) {
  constexpr std::string_view placeholder = "{question}";
  const auto at = prompt_template.find(placeholder);
  if (at == std::string_view::npos || prompt_template.find(placeholder, at + 1) != std::string_view::npos) {
    throw Error("prompt template: expected exactly one \"{question}\" placeholder; add it where the question goes");
  }
  std::string out;
  out.reserve(prompt_template.size() + question.size());
  out.append(prompt_template.substr(0, at)).append(question).append(prompt_template.substr(at + placeholder.size()));
  return out;
}

/// The ChatML prompt for one user turn, ending where the assistant's reply starts.
inline std::string chatml_prompt(std::string_view question, std::string_view system = {}) {
  std::string out;
  if (!system.empty()) out.append("<|im_start|>system\n").append(system).append("<|im_end|>\n");
  out.append("<|im_start|>user\n").append(question).append("<|im_end|>\n<|im_start|>assistant\n");
  return out;
}

/// The prompt for `question` in the chosen style.
inline std::string apply_prompt_template(std::string_view question, const PromptOptions& options = {}) {
  const bool chinese = options.chinese_variant && contains_cjk_ideograph(question);
  switch (options.style) {
    case PromptTemplate::think: return fill_prompt(chinese ? think_prompt_zh : think_prompt_en, question);
    case PromptTemplate::direct: return fill_prompt(chinese ? direct_prompt_zh : direct_prompt_en, question);
    case PromptTemplate::chatml: return chatml_prompt(question, options.system);
  }
  throw Error(fmt::format("apply_prompt_template: unknown PromptTemplate value {}", static_cast<int>(options.style)));
}

/// A name of prompt_template_names -> PromptTemplate (for command lines and config files).
inline PromptTemplate parse_prompt_template(std::string_view name) {
  return parse_enum(prompt_template_names, name, "prompt template");
}

}  // namespace grpo
