#pragma once
// The dtypes longwriter-zero accepts by name (config "dtype", --dtype): the names torch prints.

#include <c10/core/ScalarType.h>

#include <grpo/core/enum_names.hpp>

namespace lwz {

/// Names of the parameter dtypes a run may use.
inline constexpr grpo::EnumName<c10::ScalarType> dtype_names[] = {{"float32", c10::kFloat},
                                                                  {"bfloat16", c10::kBFloat16}};

}  // namespace lwz
