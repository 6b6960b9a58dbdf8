#pragma once
// grpo::Error: the one exception type the library throws for bad input or misuse.
// Messages name the file, line or field, what was expected, what was found, and the fix.

#include <stdexcept>
#include <string>

namespace grpo {

/// Thrown for bad input (malformed files, wrong configs, invalid options) and misuse.
/// what() reads as a sentence: "<where>: expected <what>, found <what>; <fix>".
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace grpo
