#pragma once
// The bridge between the header-only core and grpo's CUDA kernels.
//
// CUDA kernels must be compiled by nvcc, which a header-only library cannot do for its users.
// grpo::cuda therefore carries one source, kernels.cu, into every target that links it; at
// start-up it fills this table with host functions that launch the kernels. Code in the core
// calls `cuda_kernels().x` when it is set and the tensor is on a GPU, and falls back to plain
// ATen operations otherwise, so a CPU-only build behaves the same, only slower on a GPU.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace grpo::detail {

/// The most rewards the fused group-advantage kernel takes (its weights travel as kernel
/// arguments, so launching needs no host-to-device copy); more fall back to ATen.
inline constexpr int kernel_max_rewards = 32;

/// Parameters of the fused group-advantage kernel, plain data (see grpo/core/group_rule.hpp).
struct GroupAdvantageParams {
  int rule_kind = 0;          ///< 0 normalize, 1 center (Dr.GRPO), 2 leave-one-out
  bool sample_std = true;     ///< std with n - 1 (else n)
  double epsilon = 1e-6;      ///< added to the std
  bool average_first = false; ///< weighted mean of raw rewards, then the rule (else rule, then mean)
  int rewards = 0;            ///< K
  double weights[kernel_max_rewards] = {};  ///< normalised to sum 1; 0 skips the reward
};

/// Launches on the current stream of rewards' device; never synchronises.
///   rewards: [K, N] float32 contiguous CUDA, out: [N] float32 contiguous CUDA (written fully)
using GroupAdvantageLauncher = void (*)(const at::Tensor& rewards, const at::Tensor& out, std::int64_t group_size,
                                        const GroupAdvantageParams& params);

/// The CUDA caching allocator's peaks on one device, in bytes (torch.cuda.max_memory_allocated /
/// max_memory_reserved).
struct CudaMemoryPeaks {
  std::int64_t allocated = 0;
  std::int64_t reserved = 0;
};
/// Reads / resets the caching allocator's peak counters of device `index` (process-wide, as
/// torch.cuda.reset_peak_memory_stats).
using CudaPeakReader = CudaMemoryPeaks (*)(int index);
using CudaPeakReset = void (*)(int index);

/// Host-side launchers of grpo's CUDA kernels and CUDA runtime helpers; a null entry means "not
/// compiled in" (a target without grpo::cuda).
struct CudaKernels {
  GroupAdvantageLauncher group_advantage = nullptr;  ///< fused GRPO/Dr.GRPO/RLOO, K rewards, any G
  CudaPeakReader read_memory_peaks = nullptr;        ///< for grpo::PeakMemory
  CudaPeakReset reset_memory_peaks = nullptr;
};

/// The process-wide table (filled by kernels.cu's static initialiser when linked).
inline CudaKernels& cuda_kernels() {
  static CudaKernels table;
  return table;
}

}  // namespace grpo::detail
