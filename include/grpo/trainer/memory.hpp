#pragma once
// grpo::PeakMemory: what a training step's metrics say about memory.
//
//   host_rss_peak_gib        the process's peak resident set so far (getrusage; monotone over a run)
//   cuda_peak_allocated_gib  tensors' peak on the policy's CUDA device during the step
//   cuda_peak_reserved_gib   the caching allocator's peak reservation there (what nvidia-smi sees,
//                            less the CUDA context)
//
// The CUDA figures exist in builds with GRPO_WITH_CUDA (the grpo::cuda target) when the policy
// lives on a CUDA device; reset() at the start of a step makes them per-step peaks (it resets the
// caching allocator's peak counters of that device for the whole process, as
// torch.cuda.reset_peak_memory_stats does). A CPU run never touches CUDA.

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

#if defined(GRPO_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace grpo {

class PeakMemory {
 public:
  /// `device`: where the policy's parameters live.
  explicit PeakMemory(c10::Device device = c10::Device(c10::kCPU)) : device_(device) {}

  /// Starts a new per-step window for the CUDA peaks (the host peak is the process's).
  void reset() const {
#if defined(GRPO_WITH_CUDA)
    if (device_.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index());
#endif
  }

  /// {"host_rss_peak_gib": ..., and on CUDA "cuda_peak_allocated_gib", "cuda_peak_reserved_gib"}.
  nlohmann::json read() const {
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    nlohmann::json out = nlohmann::json::object();
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
#if defined(__APPLE__)
      const double bytes = static_cast<double>(usage.ru_maxrss);  // bytes on macOS
#else
      const double bytes = static_cast<double>(usage.ru_maxrss) * 1024.0;  // kilobytes on Linux
#endif
      out["host_rss_peak_gib"] = bytes / gib;
    }
#if defined(GRPO_WITH_CUDA)
    if (device_.is_cuda()) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index());
      const auto aggregate = static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE);
      out["cuda_peak_allocated_gib"] = static_cast<double>(stats.allocated_bytes[aggregate].peak) / gib;
      out["cuda_peak_reserved_gib"] = static_cast<double>(stats.reserved_bytes[aggregate].peak) / gib;
    }
#endif
    return out;
  }

  c10::Device device() const { return device_; }

 private:
#if defined(GRPO_WITH_CUDA)
  c10::DeviceIndex cuda_index() const { return device_.has_index() ? device_.index() : c10::cuda::current_device(); }
#endif
  c10::Device device_;
};

}  // namespace grpo
