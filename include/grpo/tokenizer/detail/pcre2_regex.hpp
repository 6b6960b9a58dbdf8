#pragma once
// A compiled PCRE2 pattern (UTF, JIT when available), what the pre-tokenizer splits with.

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8  // pcre2.h needs it; the PCRE2::PCRE2 target normally sets it
#endif
#include <fmt/format.h>
#include <fmt/format.h>
#include <pcre2.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"

namespace grpo::tokenizer_detail {

// ---- PCRE2 ----

/// A compiled PCRE2 pattern (UTF, JIT when available). Matching is thread-safe: match data and
/// the JIT stack are per thread.
class Pcre2Regex {
 public:
  Pcre2Regex(const std::string& pcre2_pattern, std::string_view where, std::uint32_t extra_options = 0) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    std::unique_ptr<pcre2_compile_context, decltype(&pcre2_compile_context_free)> context(
        pcre2_compile_context_create(nullptr), &pcre2_compile_context_free);
    pcre2_set_newline(context.get(), PCRE2_NEWLINE_LF);  // Oniguruma: only \n ends a line
    const std::uint32_t options = (extra_options & PCRE2_LITERAL) ? PCRE2_UTF | PCRE2_LITERAL
                                                                   : PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | extra_options;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre2_pattern.data()), pcre2_pattern.size(), options,
                                     &error_code, &error_offset, context.get());
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof message);
      throw Error(fmt::format("{}: invalid split pattern (PCRE2: {} at offset {}); fix the pattern", where,
                              reinterpret_cast<const char*>(message), error_offset));
    }
    code_.reset(code);
    std::uint32_t min_length = 0;
    pcre2_pattern_info(code, PCRE2_INFO_MINLENGTH, &min_length);
    if (min_length == 0) {
      throw Error(std::string(where) +
                  ": the split pattern can match the empty string; tokenizers' handling of empty matches is not "
                  "reproduced, so grpo rejects such patterns");
    }
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }

  /// Finds the first match at or after `start`: returns true and sets [match_start, match_end).
  bool find(std::string_view text, std::size_t start, std::size_t& match_start, std::size_t& match_end) const {
    ThreadState& state = thread_state();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), start, 0, state.match_data, state.context)
                        : pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, state.match_data,
                                      state.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw Error(std::string("tokenizer split pattern: PCRE2 matching failed: ") +
                  reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    match_start = ovector[0];
    match_end = ovector[1];
    return true;
  }

 private:
  struct CodeFree {
    void operator()(pcre2_code* code) const noexcept { pcre2_code_free(code); }
  };
  struct ThreadState {
    pcre2_match_data* match_data = pcre2_match_data_create(1, nullptr);
    pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_match_context* context = make_context(jit_stack);
    ThreadState() = default;
    ThreadState(const ThreadState&) = delete;
    ThreadState& operator=(const ThreadState&) = delete;
    ~ThreadState() {
      pcre2_match_context_free(context);
      pcre2_jit_stack_free(jit_stack);
      pcre2_match_data_free(match_data);
    }
    static pcre2_match_context* make_context(pcre2_jit_stack* stack) {
      pcre2_match_context* context = pcre2_match_context_create(nullptr);
      pcre2_jit_stack_assign(context, nullptr, stack);
      return context;
    }
  };
  static ThreadState& thread_state() {
    thread_local ThreadState state;
    return state;
  }

  std::unique_ptr<pcre2_code, CodeFree> code_;
  bool jit_ = false;
};

}  // namespace grpo::tokenizer_detail
