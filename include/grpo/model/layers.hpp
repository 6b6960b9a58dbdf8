#pragma once
// The parameter-owning building blocks of the Qwen2 decoder: a linear projection, a token
// embedding and RMSNorm. Each is a torch::nn module (Impl + holder) whose parameter names match
// PyTorch's nn.Linear / nn.Embedding / Qwen2RMSNorm, so a Hugging Face checkpoint maps 1:1.
//
// Why not torch::nn::Linear and torch::nn::Embedding: those initialise their weights in fp32 on
// the CPU when constructed (kaiming), which for a 32B model costs 128 GB and minutes before the
// checkpoint overwrites every value. These allocate on the target device and dtype directly and
// initialise only when asked (ParameterInit::normal, as transformers' _init_weights does).

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/where.h>
#include <c10/core/TensorOptions.h>
#include <fmt/format.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "grpo/core/error.hpp"
#include "grpo/distributed/tensor_parallel.hpp"

namespace grpo {

/// Where and how the parameters of a module are created.
struct ParameterOptions {
  c10::Device device = c10::kCPU;       ///< device of every parameter; default CPU
  c10::ScalarType dtype = c10::kFloat;  ///< dtype of every parameter (float32 or bfloat16); default float32
  /// true: initialise like transformers' _init_weights (weights ~ N(0, init_std), biases 0,
  /// norm weights 1), from the default generator; false: leave the memory uninitialised (the
  /// caller loads a checkpoint into every parameter next). Default true.
  bool initialize = true;
  double init_std = 0.02;  ///< standard deviation of the weight initialisation (config initializer_range); default 0.02
};

namespace detail {

inline void check_floating_dtype(c10::ScalarType dtype, const char* where) {
  if (dtype != c10::kFloat && dtype != c10::kBFloat16 && dtype != c10::kHalf && dtype != c10::kDouble) {
    throw Error(std::string(where) + ": expected a floating parameter dtype (float32, bfloat16, float16 or float64), found " +
                std::string(c10::toString(dtype)) + "; pass .dtype = at::kFloat or at::kBFloat16");
  }
}

inline at::Tensor make_parameter(at::IntArrayRef shape, const ParameterOptions& options, double fill_or_std,
                                 bool normal) {
  check_floating_dtype(options.dtype, "ParameterOptions.dtype");
  auto tensor = at::empty(shape, at::TensorOptions().device(options.device).dtype(options.dtype));
  if (options.initialize) {
    if (normal) {
      tensor.normal_(0.0, fill_or_std);
    } else {
      tensor.fill_(fill_or_std);
    }
  }
  return tensor;
}

inline void check_positive(std::int64_t value, const char* module, const char* field) {
  if (value <= 0) {
    throw Error(fmt::format("{}: expected {} > 0, found {}", module, field, value));
  }
}

}  // namespace detail

/// y = x W^T (+ b). Parameters "weight" [out, in] and, when `bias`, "bias" [out], as nn.Linear.
class ProjectionImpl : public torch::nn::Module {
 public:
  ProjectionImpl(std::int64_t in_features, std::int64_t out_features, bool bias, const ParameterOptions& options = {}) {
    detail::check_positive(in_features, "Projection", "in_features");
    detail::check_positive(out_features, "Projection", "out_features");
    weight = register_parameter("weight", detail::make_parameter({out_features, in_features}, options, options.init_std, true));
    if (bias) this->bias = register_parameter("bias", detail::make_parameter({out_features}, options, 0.0, false));
  }

  // x: [..., in] -> [..., out]. With a LoRA adapter (grpo/model/lora.hpp), as PEFT computes it:
  // y = x W^T + b + scaling * (x A^T) B^T, the adapter's term in the adapter's dtype (x cast to
  // it) and the sum cast back to the base output's dtype.
  at::Tensor forward(const at::Tensor& x) {
    auto y = at::linear(x, weight, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
    if (!lora_A || !lora_enabled) return y;
    const auto low = at::linear(x.to(lora_A->weight.scalar_type()), lora_A->weight);  // [..., rank]
    // One addmm on 2-D views, y + scaling (low B^T): autograd keeps only low and B for the
    // backward, no [tokens, out] intermediate (a separate product, scale and add kept ~2 of them).
    const auto flat = at::addmm(y.reshape({-1, y.size(-1)}).to(low.scalar_type()), low.reshape({-1, low.size(-1)}),
                                lora_B->weight.t(), /*beta=*/1.0, /*alpha=*/lora_scaling());
    return flat.view(y.sizes()).to(y.scalar_type());
  }

  /// The weight the layer applies: W, or with an adapter W + scaling * B A (computed in float32
  /// and rounded to W's dtype once, as PEFT's merge does).
  at::Tensor effective_weight() const {
    if (!lora_A) return weight.detach();
    const auto delta = at::matmul(lora_B->weight.detach().to(at::kFloat), lora_A->weight.detach().to(at::kFloat));
    return (weight.detach().to(at::kFloat) + delta * lora_scaling()).to(weight.scalar_type());
  }

  /// The adapter's scale: alpha / rank, or alpha / sqrt(rank) with rsLoRA (0 without an adapter).
  double lora_scaling() const {
    if (!lora_A) return 0.0;
    const auto rank = static_cast<double>(lora_A->weight.size(0));
    return lora_rslora ? lora_alpha / std::sqrt(rank) : lora_alpha / rank;
  }

  at::Tensor weight;
  at::Tensor bias;  ///< undefined without bias
  /// LoRA adapter (PEFT's names: "lora_A.weight" [rank, in], "lora_B.weight" [out, rank]); null
  /// without one. Added by grpo::add_lora.
  std::shared_ptr<ProjectionImpl> lora_A;
  std::shared_ptr<ProjectionImpl> lora_B;
  double lora_alpha = 0.0;    ///< the adapter's alpha (its scale: lora_scaling())
  bool lora_rslora = false;   ///< whether the scale is rsLoRA's alpha / sqrt(rank)
  bool lora_enabled = true;   ///< false: forward computes the base layer only (the adapter is kept)
};
TORCH_MODULE(Projection);

/// Token embedding: parameter "weight" [vocab, hidden], as nn.Embedding. `padding_idx` (or -1)
/// gets no gradient, as in nn.Embedding(padding_idx=...).
///
/// Vocabulary-parallel (a tensor-parallel group, see grpo/distributed/tensor_parallel.hpp): this
/// rank holds rows [vocab_start, vocab_start + vocab_size) of the whole table; a token outside
/// them embeds to zeros here, and the sum over the group gives every rank its row.
class TokenEmbeddingImpl : public torch::nn::Module {
 public:
  TokenEmbeddingImpl(std::int64_t vocab_size, std::int64_t hidden_size, std::int64_t padding_idx,
                     const ParameterOptions& options = {}, std::int64_t vocab_start = 0, TensorParallel tp = {})
      : padding_idx(padding_idx >= vocab_start && padding_idx < vocab_start + vocab_size ? padding_idx - vocab_start : -1),
        vocab_start(vocab_start),
        tensor_parallel(tp) {
    detail::check_positive(vocab_size, "TokenEmbedding", "vocab_size");
    detail::check_positive(hidden_size, "TokenEmbedding", "hidden_size");
    weight = register_parameter("weight", detail::make_parameter({vocab_size, hidden_size}, options, options.init_std, true));
    if (options.initialize && this->padding_idx >= 0) {
      at::NoGradGuard no_grad;
      weight[this->padding_idx].zero_();  // transformers zeroes the padding row at init
    }
  }

  // ids: [...] int64 (ids of the whole vocabulary) -> [..., hidden]. sequence (tensor-parallel,
  // ids [B, L] with L a multiple of T): this rank's L / T tokens, [B, L / T, hidden].
  at::Tensor forward(const at::Tensor& ids, bool sequence = false) {
    if (!tensor_parallel.active()) return at::embedding(weight, ids, padding_idx);
    const auto local = ids - vocab_start;
    const auto inside = local.ge(0).logical_and_(local.lt(weight.size(0)));
    const auto rows = at::embedding(weight, at::where(inside, local, 0), padding_idx);
    const auto partial = rows * inside.unsqueeze(-1).to(rows.scalar_type());  // this rank's vocabulary rows
    return sequence ? reduce_scatter_sequence(partial, tensor_parallel) : reduce_from_tensor_group(partial, tensor_parallel);
  }

  at::Tensor weight;
  std::int64_t padding_idx = -1;   ///< in this rank's rows; -1 when the padding id is not here
  std::int64_t vocab_start = 0;    ///< first vocabulary id of this rank's rows
  TensorParallel tensor_parallel;  ///< the group the table is split over (none: the whole table)
};
TORCH_MODULE(TokenEmbedding);

/// RMSNorm as Qwen2RMSNorm: y = w * (x / sqrt(mean(x^2) + eps)), the normalisation computed in
/// float32 and cast back to x's dtype before the weight multiplies (so bf16 rounds where HF does).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(std::int64_t hidden_size, double eps, const ParameterOptions& options = {}) : eps(eps) {
    detail::check_positive(hidden_size, "RMSNorm", "hidden_size");
    if (!(eps > 0.0)) throw Error(fmt::format("RMSNorm: expected eps > 0 (config rms_norm_eps), found {}", eps));
    weight = register_parameter("weight", detail::make_parameter({hidden_size}, options, 1.0, false));
  }

  // x: [..., hidden] -> [..., hidden]. tokens_split (sequence parallelism): x holds this rank's
  // tokens only, so dL/dweight is summed over that group (every rank then holds the whole one).
  at::Tensor forward(const at::Tensor& x, const TensorParallel& tokens_split = {}) {
    const auto x32 = x.to(at::kFloat);
    const auto variance = x32.pow(2).mean(-1, /*keepdim=*/true);
    const auto w = share_gradient(weight, tokens_split, tokens_split.size());
    return w * (x32 * at::rsqrt(variance + eps)).to(x.scalar_type());
  }

  at::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

}  // namespace grpo
