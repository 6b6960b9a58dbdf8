// grpo's CUDA kernels, compiled into each target that links grpo::cuda (INTERFACE_SOURCES) and
// registered with the header-only core at start-up (see kernels.hpp).
#include "grpo/cuda/kernels.hpp"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <math_constants.h>

#include <cstdint>

namespace grpo::detail {
namespace {

// ---- group advantages -------------------------------------------------------------------------
// One warp per group (8 groups per 256-thread block). Lanes stride over the group, so any G works;
// a group's values are re-read from L1/L2 by the three passes (moments, squared deviations,
// output), never from a staging buffer. Arithmetic in double, as on the host path
// (grpo/advantage/detail/group_advantages_host.hpp), so both agree to float rounding.
// Per reward k of weight w_k:
//   pass 1  n, sum, min, max over finite values (warp shuffles)
//   pass 2  sum (r - mean)^2 (normalize only)
//   pass 3  out_i (+)= w_k * scale * (r_i - mean), NaN if r_i is not finite
// and finally out_i = 0 where NaN (a sample with any non-finite reward). In the average-first
// mode the value of sample i is sum_k w_k r_ik, computed on the fly in every pass.

constexpr int warp_size = 32;
constexpr int groups_per_block = 8;
constexpr unsigned full_mask = 0xffffffffu;

__device__ inline double warp_sum(double v) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(full_mask, v, offset);
  return v;
}
__device__ inline double warp_min(double v) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) v = fmin(v, __shfl_xor_sync(full_mask, v, offset));
  return v;
}
__device__ inline double warp_max(double v) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) v = fmax(v, __shfl_xor_sync(full_mask, v, offset));
  return v;
}

// The value of sample `index` for reward k, or the weighted raw average in average-first mode.
__device__ inline double sample_value(const float* __restrict__ rewards, std::int64_t samples, std::int64_t index,
                                      int k, const GroupAdvantageParams& p) {
  if (!p.average_first) return static_cast<double>(rewards[k * samples + index]);
  double combined = 0.0;
  for (int r = 0; r < p.rewards; ++r)
    if (p.weights[r] > 0.0) combined += p.weights[r] * static_cast<double>(rewards[r * samples + index]);
  return combined;
}

__global__ void group_advantage_kernel(const float* __restrict__ rewards, float* __restrict__ out,
                                       std::int64_t samples, std::int64_t group_size, std::int64_t groups,
                                       const GroupAdvantageParams p) {
  const std::int64_t group = static_cast<std::int64_t>(blockIdx.x) * groups_per_block + threadIdx.x / warp_size;
  const int lane = static_cast<int>(threadIdx.x % warp_size);
  if (group >= groups) return;  // uniform per warp: the shuffles below see full warps
  const std::int64_t base = group * group_size;
  const int passes = p.average_first ? 1 : p.rewards;
  bool first = true;
  for (int k = 0; k < passes; ++k) {
    if (!p.average_first && p.weights[k] == 0.0) continue;
    double count = 0.0, sum = 0.0, low = CUDART_INF, high = -CUDART_INF;
    for (std::int64_t i = lane; i < group_size; i += warp_size) {
      const double v = sample_value(rewards, samples, base + i, k, p);
      if (isfinite(v)) {
        count += 1.0;
        sum += v;
        low = fmin(low, v);
        high = fmax(high, v);
      }
    }
    count = warp_sum(count);
    sum = warp_sum(sum);
    low = warp_min(low);
    high = warp_max(high);
    const double mean = count > 0.0 ? sum / count : 0.0;
    double scale = 0.0;
    if (count > 1.0 && low != high) {  // else: no signal, advantage exactly 0
      if (p.rule_kind == 1) {
        scale = 1.0;
      } else if (p.rule_kind == 2) {
        scale = count / (count - 1.0);
      } else {
        double squares = 0.0;
        for (std::int64_t i = lane; i < group_size; i += warp_size) {
          const double v = sample_value(rewards, samples, base + i, k, p);
          if (isfinite(v)) squares += (v - mean) * (v - mean);
        }
        squares = warp_sum(squares);
        const double dof = p.sample_std ? count - 1.0 : count;
        scale = 1.0 / (sqrt(squares / dof) + p.epsilon);
      }
    }
    const double weight = p.average_first ? 1.0 : p.weights[k];
    for (std::int64_t i = lane; i < group_size; i += warp_size) {
      const double v = sample_value(rewards, samples, base + i, k, p);
      const double a = isfinite(v) ? weight * scale * (v - mean) : CUDART_NAN;
      float& o = out[base + i];
      o = first ? static_cast<float>(a) : o + static_cast<float>(a);
    }
    first = false;
  }
  for (std::int64_t i = lane; i < group_size; i += warp_size) {
    float& o = out[base + i];
    if (isnan(o)) o = 0.0f;
  }
}

void launch_group_advantage(const at::Tensor& rewards, const at::Tensor& out, std::int64_t group_size,
                            const GroupAdvantageParams& params) {
  const c10::cuda::CUDAGuard guard(rewards.device());
  const std::int64_t samples = rewards.size(1);
  const std::int64_t groups = samples / group_size;
  if (groups == 0) return;
  const auto blocks = static_cast<unsigned>((groups + groups_per_block - 1) / groups_per_block);
  group_advantage_kernel<<<blocks, groups_per_block * warp_size, 0, at::cuda::getCurrentCUDAStream()>>>(
      rewards.data_ptr<float>(), out.data_ptr<float>(), samples, group_size, groups, params);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---- memory peaks ------------------------------------------------------------------------------
CudaMemoryPeaks read_memory_peaks(int index) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  const auto aggregate = static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  CudaMemoryPeaks peaks;
  peaks.allocated = stats.allocated_bytes[aggregate].peak;
  peaks.reserved = stats.reserved_bytes[aggregate].peak;
  return peaks;
}

void reset_memory_peaks(int index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
}

// ---- registration -----------------------------------------------------------------------------
[[maybe_unused]] const bool registered = [] {
  cuda_kernels().group_advantage = &launch_group_advantage;
  cuda_kernels().read_memory_peaks = &read_memory_peaks;
  cuda_kernels().reset_memory_peaks = &reset_memory_peaks;
  return true;
}();

}  // namespace
}  // namespace grpo::detail
