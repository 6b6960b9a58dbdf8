#pragma once
// The bridge between the header-only core and grpo's CUDA kernels.
//
// CUDA kernels must be compiled by nvcc, which a header-only library cannot do for its users.
// grpo::cuda therefore carries one source, kernels.cu, into every target that links it; at
// start-up it fills this table with host functions that launch the kernels. Code in the core
// calls `cuda_kernels().x` when it is set and the tensor is on a GPU, and falls back to plain
// ATen operations otherwise, so a CPU-only build behaves the same, only slower on a GPU.

namespace grpo::detail {

/// Host-side launchers of grpo's CUDA kernels; a null entry means "not compiled in".
struct CudaKernels {};

/// The process-wide table (filled by kernels.cu's static initialiser when linked).
inline CudaKernels& cuda_kernels() {
  static CudaKernels table;
  return table;
}

}  // namespace grpo::detail
