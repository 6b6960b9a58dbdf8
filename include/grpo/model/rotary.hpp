#pragma once
// Rotary position embeddings (RoPE, Su et al. 2021) in the "rotate half" layout of Hugging Face
// transformers' Qwen2: dimension i of a head pairs with dimension i + D/2.
//
//   inv_freq_j = 1 / theta^(2j / D)                      j = 0 .. D/2 - 1, float32
//   angle[b, t, j] = position_ids[b, t] * inv_freq_j       float32
//   cos = cos(cat(angle, angle)), sin = sin(cat(angle, angle)), then cast to the activations' dtype
//   rope(x) = x * cos + rotate_half(x) * sin,  rotate_half([x1, x2]) = [-x2, x1]
//
// Every step is the same float32 operation transformers 5.24 performs, so fp32 logits agree to
// rounding, and bf16 rounds the tables where transformers does.

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/reciprocal.h>
#include <fmt/format.h>

#include <cstdint>
#include <string>

#include "grpo/core/error.hpp"

namespace grpo {

/// cos and sin tables for one batch of positions, shared by every layer.
struct RotaryTables {
  at::Tensor cos;  ///< [B, T, D] in the activations' dtype
  at::Tensor sin;  ///< [B, T, D] in the activations' dtype
};

/// inv_freq_j = 1 / theta^(2j / head_dim): [head_dim / 2] float32.
inline at::Tensor rotary_inverse_frequencies(std::int64_t head_dim, double theta, c10::Device device = c10::kCPU) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw Error(fmt::format("rotary embedding: expected an even head_dim > 0, found {}; check config.json head_dim "
                            "(or hidden_size / num_attention_heads)",
                            head_dim));
  }
  if (!(theta > 0.0)) throw Error(fmt::format("rotary embedding: expected rope_theta > 0, found {}", theta));
  const auto exponents = at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kFloat)) / static_cast<double>(head_dim);
  return at::reciprocal(at::pow(theta, exponents)).to(device);
}

/// position_ids: [B, T] int64, inv_freq: [D/2] float32 -> cos, sin: [B, T, D] in `dtype`.
inline RotaryTables rotary_tables(const at::Tensor& inv_freq, const at::Tensor& position_ids, c10::ScalarType dtype) {
  const auto angles = position_ids.unsqueeze(-1).to(at::kFloat) * inv_freq.to(position_ids.device(), at::kFloat);
  const auto doubled = at::cat({angles, angles}, -1);
  return {doubled.cos().to(dtype), doubled.sin().to(dtype)};
}

/// x: [B, H, T, D], tables [B, T, D] -> [B, H, T, D].
inline at::Tensor apply_rotary(const at::Tensor& x, const RotaryTables& tables) {
  const auto half = x.size(-1) / 2;
  const auto rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * tables.cos.unsqueeze(1) + rotated * tables.sin.unsqueeze(1);
}

}  // namespace grpo
