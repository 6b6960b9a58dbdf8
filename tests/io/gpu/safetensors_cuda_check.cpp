// GPU check of grpo::io's CUDA path, against torch's CPU path and the reference writer:
//   1. load_all to CUDA in the file's dtype == the CPU load, tensor by tensor;
//   2. load_all to CUDA as fp32 (bf16/fp16 converted on the device) == CPU load .to(float);
//   3. save_safetensors from the CUDA tensors == the original file, byte for byte (the file was
//      written by safetensors.torch.save_file with the same metadata);
//   4. timings (warm page cache): CUDA load same dtype and with conversion; printed as JSON for
//      run.sh, which times safetensors.torch.load_file(device="cuda") on the same file beside it.
// Usage: safetensors_cuda_check <file.safetensors> <scratch folder>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>

#include <chrono>
#include <functional>
#include <unordered_map>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "grpo/io/safetensors.hpp"

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

double seconds(const std::function<void()>& work) {
  c10::cuda::device_synchronize();
  const auto start = std::chrono::steady_clock::now();
  work();
  c10::cuda::device_synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int fail(const std::string& what) {
  std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return fail("usage: safetensors_cuda_check <file.safetensors> <scratch folder>");
  const std::filesystem::path file = argv[1];
  const std::filesystem::path scratch = argv[2];
  if (!at::hasCUDA()) return fail("no CUDA device");
  const c10::Device cuda(c10::kCUDA, 0);
  const auto checkpoint = grpo::io::SafetensorsCheckpoint::open(file);
  const auto bytes = static_cast<double>(std::filesystem::file_size(file));

  const auto cpu = checkpoint.load_all();
  (void)checkpoint.load("small_f32", {.device = cuda});  // CUDA context start-up, not timed

  std::unordered_map<std::string, at::Tensor> same, as_fp32;
  const double t_same = seconds([&] { same = checkpoint.load_all({.device = cuda}); });
  same.clear();
  const double t_same2 = seconds([&] { same = checkpoint.load_all({.device = cuda}); });
  const double t_fp32 = seconds([&] { as_fp32 = checkpoint.load_all({.device = cuda, .dtype = at::kFloat}); });

  for (const auto& [name, reference] : cpu) {
    const auto& on_gpu = same.at(name);
    if (!on_gpu.is_cuda() || on_gpu.scalar_type() != reference.scalar_type() || !at::equal(on_gpu.cpu(), reference)) {
      return fail("same-dtype CUDA load differs for " + name);
    }
    const auto& converted = as_fp32.at(name);
    if (!converted.is_cuda() || converted.scalar_type() != at::kFloat ||
        !at::equal(converted.cpu(), reference.to(at::kFloat))) {
      return fail("fp32 CUDA load differs for " + name);
    }
  }

  grpo::io::NamedTensors from_cuda;
  for (const auto& name : checkpoint.names()) from_cuda.emplace_back(name, same.at(name));
  const auto written = scratch / "from_cuda.safetensors";
  const double t_save = seconds([&] { grpo::io::save_safetensors(written, from_cuda); });
  const double t_d2h = seconds([&] {
    for (const auto& [name, tensor] : from_cuda) (void)tensor.cpu();
  });
  if (read_file(written) != read_file(file)) return fail("save_safetensors from CUDA tensors differs from the reference file");

  std::printf("{\"bytes\": %.0f, \"tensors\": %zu, \"grpo_cuda_same_dtype_s\": [%.4f, %.4f], "
              "\"grpo_cuda_to_fp32_s\": %.4f, \"grpo_save_from_cuda_s\": %.4f, \"device_to_host_only_s\": %.4f}\n",
              bytes, cpu.size(), t_same, t_same2, t_fp32, t_save, t_d2h);
  std::printf("OK: CUDA loads equal CPU loads (same dtype and fp32), save from CUDA is byte-identical\n");
  return 0;
}
