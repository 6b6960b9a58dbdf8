#pragma once
// Memory measurement shared by the benchmarks: on the CPU every allocation goes through a counting
// wrapper of the CPU allocator (install it with install_counting_allocator() before any tensor is
// made); on CUDA, the caching allocator's allocated-bytes statistics.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#if defined(GRPO_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace {

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(std::size_t bytes) override {
    c10::DataPtr inner = base_->allocate(bytes);
    void* data = inner.get();
    auto* context = new Context{std::move(inner), bytes, this};
    const std::int64_t now = current_.fetch_add(static_cast<std::int64_t>(bytes)) + static_cast<std::int64_t>(bytes);
    std::int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return {data, context, &release, c10::Device(c10::kCPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  std::int64_t current() const { return current_.load(); }
  std::int64_t peak() const { return peak_.load(); }
  void reset_peak() { peak_.store(current_.load()); }

 private:
  struct Context {
    c10::DataPtr inner;
    std::size_t bytes;
    CountingAllocator* owner;
  };
  static void release(void* ptr) {
    auto* context = static_cast<Context*>(ptr);
    context->owner->current_.fetch_sub(static_cast<std::int64_t>(context->bytes));
    delete context;
  }
  c10::Allocator* base_;
  std::atomic<std::int64_t> current_{0};
  std::atomic<std::int64_t> peak_{0};
};

CountingAllocator* counting = nullptr;

struct Memory {
  std::int64_t current() const {
#if defined(GRPO_WITH_CUDA)
    if (cuda) return stat().current;
#endif
    return counting->current();
  }
  std::int64_t peak() const {
#if defined(GRPO_WITH_CUDA)
    if (cuda) return stat().peak;
#endif
    return counting->peak();
  }
  void reset_peak() const {
#if defined(GRPO_WITH_CUDA)
    if (cuda) return c10::cuda::CUDACachingAllocator::resetPeakStats(c10::cuda::current_device());
#endif
    counting->reset_peak();
  }
  void sync() const {
#if defined(GRPO_WITH_CUDA)
    if (cuda) c10::cuda::device_synchronize();
#endif
  }
#if defined(GRPO_WITH_CUDA)
  static c10::CachingAllocator::Stat stat() {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::cuda::current_device());
    return stats.allocated_bytes[static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
  }
#endif
  bool cuda = false;
};

/// Wraps the CPU allocator in a counting one (once per process); Memory{} then reads it.
inline void install_counting_allocator() {
  static CountingAllocator allocator(c10::GetCPUAllocator());
  counting = &allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/100);
}

}  // namespace
