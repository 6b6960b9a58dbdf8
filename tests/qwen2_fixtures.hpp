#pragma once
// The reference outputs tests/python/fixtures/qwen2.py made with transformers for the small
// random Qwen2 models under GRPO_FIXTURE_DIR/qwen2/<model>/ (expected.safetensors), and the two
// ways the tests read them: by name, and the unpadded prompts of the left-padded generation batch.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <grpo/io/safetensors.hpp>

namespace grpo_test {

inline const std::filesystem::path qwen2_fixtures = std::filesystem::path(GRPO_FIXTURE_DIR) / "qwen2";

/// Tensor `name` of model `model`'s expected.safetensors.
inline at::Tensor expected(const std::string& model, const std::string& name) {
  return grpo::io::SafetensorsCheckpoint::open(qwen2_fixtures / model / "expected.safetensors").load(name);
}

/// max |a - b| over positions where mask [B, T] is 1 (a, b: [B, T, ...]), in float64.
inline double masked_max_difference(const at::Tensor& a, const at::Tensor& b, const at::Tensor& mask) {
  auto keep = mask.to(at::kBool);
  while (keep.dim() < a.dim()) keep = keep.unsqueeze(-1);
  return ((a.to(at::kDouble) - b.to(at::kDouble)).abs() * keep).max().item<double>();
}

/// The unpadded prompts of model `model`'s left-padded generation batch (gen_prompt_ids/_mask).
inline std::vector<std::vector<std::int64_t>> prompts_of(const std::string& model) {
  const auto ids = expected(model, "gen_prompt_ids");
  const auto mask = expected(model, "gen_prompt_mask").to(at::kBool);
  std::vector<std::vector<std::int64_t>> prompts;
  for (std::int64_t i = 0; i < ids.size(0); ++i) {
    const auto row = ids[i].masked_select(mask[i]).to(at::kLong).contiguous();
    prompts.emplace_back(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + row.numel());
  }
  return prompts;
}

}  // namespace grpo_test
