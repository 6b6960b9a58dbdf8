#pragma once
// grpo::PeakMemory: what a training step's metrics say about memory.
//
//   host_rss_peak_gib        the process's peak resident set so far (Linux: VmHWM of /proc/self/status,
//                            which starts again at exec; getrusage's ru_maxrss elsewhere, which on
//                            Linux keeps the peak of the process image before exec: a launcher's,
//                            e.g. torchrun's Python with torch loaded; monotone over a run)
//   cuda_peak_allocated_gib  tensors' peak on the policy's CUDA device during the step
//   cuda_peak_reserved_gib   the caching allocator's peak reservation there (what nvidia-smi sees,
//                            less the CUDA context)
//
// The CUDA figures exist when the policy lives on a CUDA device and the program links grpo::cuda
// (whose kernels.cu registers the allocator calls in grpo::detail::cuda_kernels(), so this header
// reads the same in every build); reset() at the start of a step makes them per-step peaks (it
// resets the caching allocator's peak counters of that device for the whole process, as
// torch.cuda.reset_peak_memory_stats does). A CPU run never touches CUDA.

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <exception>
#include <fstream>
#include <optional>
#include <string>

#include "grpo/cuda/kernels.hpp"

namespace grpo {

/// A step's memory peaks in GiB; the CUDA ones only for a policy on a CUDA device (with grpo::cuda).
struct MemoryPeaks {
  double host_rss_peak_gib = 0.0;
  std::optional<double> cuda_peak_allocated_gib;
  std::optional<double> cuda_peak_reserved_gib;

  [[nodiscard]] nlohmann::json to_json() const {
    nlohmann::json out{{"host_rss_peak_gib", host_rss_peak_gib}};
    if (cuda_peak_allocated_gib) out["cuda_peak_allocated_gib"] = *cuda_peak_allocated_gib;
    if (cuda_peak_reserved_gib) out["cuda_peak_reserved_gib"] = *cuda_peak_reserved_gib;
    return out;
  }
};

class PeakMemory {
 public:
  /// `device`: where the policy's parameters live.
  explicit PeakMemory(c10::Device device = c10::Device(c10::kCPU)) : device_(device) {}

  /// Starts a new per-step window for the CUDA peaks (the host peak is the process's).
  void reset() const {
    if (const auto reset_peaks = detail::cuda_kernels().reset_memory_peaks; reset_peaks && device_.is_cuda())
      reset_peaks(cuda_index());
  }

  /// VmHWM ("NNN kB") of /proc/self/status; nullopt where there is none (not Linux).
  static std::optional<double> linux_peak_rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (!line.starts_with("VmHWM:")) continue;
      try {
        return std::stod(line.substr(6)) * 1024.0;
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
    return std::nullopt;
  }

  /// This process's peaks (see the header comment).
  [[nodiscard]] MemoryPeaks peaks() const {
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    MemoryPeaks out;
    if (const auto hwm = linux_peak_rss_bytes()) {
      out.host_rss_peak_gib = *hwm / gib;
    } else if (rusage usage{}; getrusage(RUSAGE_SELF, &usage) == 0) {
#if defined(__APPLE__)
      const double bytes = static_cast<double>(usage.ru_maxrss);  // bytes on macOS
#else
      const double bytes = static_cast<double>(usage.ru_maxrss) * 1024.0;  // kilobytes on Linux
#endif
      out.host_rss_peak_gib = bytes / gib;
    }
    if (const auto read_peaks = detail::cuda_kernels().read_memory_peaks; read_peaks && device_.is_cuda()) {
      const detail::CudaMemoryPeaks peaks = read_peaks(cuda_index());
      out.cuda_peak_allocated_gib = static_cast<double>(peaks.allocated) / gib;
      out.cuda_peak_reserved_gib = static_cast<double>(peaks.reserved) / gib;
    }
    return out;
  }

  /// {"host_rss_peak_gib": ..., and on CUDA "cuda_peak_allocated_gib", "cuda_peak_reserved_gib"}.
  [[nodiscard]] nlohmann::json read() const { return peaks().to_json(); }

  c10::Device device() const { return device_; }

 private:
  // A CUDA parameter's device always carries its index; 0 is the fallback of a bare "cuda".
  int cuda_index() const { return device_.has_index() ? device_.index() : 0; }
  c10::Device device_;
};

}  // namespace grpo
