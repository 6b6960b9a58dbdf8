// Question: what does loading a checkpoint through SafetensorsCheckpoint (mmap + one copy per
// tensor) cost on the CPU, compared with the obvious alternative, pread() straight into freshly
// allocated tensors, and with the floor, memcpy of bytes already in memory? Also with a dtype
// conversion on load (bf16 file -> fp32 tensors) against pread + Tensor::to.
// A 256 MB file of 32 bf16 tensors (8 MB each, like a mid-size layer) sits in the page cache;
// each iteration runs all variants side by side on it, so the ratios hold on a noisy machine.
// Counters: GB/s of each variant (bytes of the file / time) and ours / pread time ratio.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/randn.h>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <grpo/io/safetensors.hpp>

namespace {

constexpr int tensor_count = 32;
constexpr std::int64_t rows = 2048;
constexpr std::int64_t cols = 2048;  // 2048 x 2048 bf16 = 8 MiB per tensor

const std::filesystem::path& checkpoint_path() {
  static const std::filesystem::path path = [] {
    auto p = std::filesystem::temp_directory_path() / ("grpo-safetensors-bench-" + std::to_string(::getpid()) + ".safetensors");
    grpo::io::NamedTensors tensors;
    for (int i = 0; i < tensor_count; ++i) {
      tensors.emplace_back("model.layers." + std::to_string(i) + ".weight",
                           at::randn({rows, cols}).to(c10::kBFloat16));
    }
    grpo::io::save_safetensors(p, tensors);
    std::atexit([] { std::filesystem::remove(checkpoint_path()); });
    return p;
  }();
  return path;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The baseline: pread each tensor's bytes into a new tensor (offsets from the header).
std::vector<at::Tensor> pread_all(const grpo::io::SafetensorsFile& file, std::optional<c10::ScalarType> dtype) {
  const int fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<at::Tensor> result;
  for (const auto& info : file.header().tensors) {
    at::Tensor t = at::empty(info.shape, at::TensorOptions().dtype(grpo::io::scalar_type_of(info.dtype)));
    auto* out = static_cast<char*>(t.data_ptr());
    std::uint64_t done = 0;
    while (done < info.byte_size()) {
      const auto n = ::pread(fd, out + done, info.byte_size() - done,
                             static_cast<off_t>(file.header().data_offset() + info.data_begin + done));
      if (n <= 0) throw std::runtime_error("pread failed");
      done += static_cast<std::uint64_t>(n);
    }
    result.push_back(dtype ? t.to(*dtype) : t);
  }
  ::close(fd);
  return result;
}

void run(benchmark::State& state, std::optional<c10::ScalarType> dtype) {
  const auto& path = checkpoint_path();
  const auto bytes = static_cast<double>(std::filesystem::file_size(path));
  const std::string resident = [&] {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  double ours = 0, pread = 0, floor = 0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    auto loaded = grpo::io::SafetensorsCheckpoint::open(path).load_all({.dtype = dtype});
    benchmark::DoNotOptimize(loaded);
    loaded.clear();
    ours += seconds_since(start);

    start = std::chrono::steady_clock::now();
    auto baseline = pread_all(grpo::io::SafetensorsFile::open(path), dtype);
    benchmark::DoNotOptimize(baseline);
    baseline.clear();
    pread += seconds_since(start);

    start = std::chrono::steady_clock::now();
    std::vector<at::Tensor> copies;
    for (int i = 0; i < tensor_count; ++i) {
      at::Tensor t = at::empty({rows, cols}, at::TensorOptions().dtype(c10::kBFloat16));
      std::memcpy(t.data_ptr(), resident.data() + 8 + static_cast<std::size_t>(i) * rows * cols * 2, rows * cols * 2);
      copies.push_back(dtype ? t.to(*dtype) : t);
    }
    benchmark::DoNotOptimize(copies);
    copies.clear();
    floor += seconds_since(start);
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["ours_GBps"] = bytes * n / ours / 1e9;
  state.counters["pread_GBps"] = bytes * n / pread / 1e9;
  state.counters["memcpy_GBps"] = bytes * n / floor / 1e9;
  state.counters["ours_over_pread"] = ours / pread;
}

void BM_LoadAllSameDtype(benchmark::State& state) { run(state, std::nullopt); }
void BM_LoadAllBf16ToFp32(benchmark::State& state) { run(state, c10::kFloat); }

BENCHMARK(BM_LoadAllSameDtype)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_LoadAllBf16ToFp32)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
