#pragma once
// The umbrella header: everything grpo offers. Include narrower headers to compile faster.

#include "grpo/version.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/sample.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/customization_points.hpp"
#include "grpo/concepts/reward.hpp"
#include "grpo/concepts/advantage.hpp"
#include "grpo/concepts/loss.hpp"
#include "grpo/concepts/policy.hpp"
#include "grpo/io/jsonl.hpp"
