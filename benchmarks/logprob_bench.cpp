// Question: how much memory beyond its inputs and outputs, and how much time, does chunked
// grpo::token_logprobs (forward + backward of log-probs and entropy) take next to the naive
// computation (full [T, V] logits, log_softmax, gather, entropy, autograd), at Qwen2.5-0.5B's
// hidden 896 and vocabulary 151,936, for T = 1K..16K tokens? The claim under test: our peak is
// bounded by the chunk (1024 tokens), not by T, <= 1/10 of naive at 16K, time within 1.5x.
// Second question: how much faster are vocabulary tiles (vocab_block = 2048, the CPU default:
// each [chunk, 2048] tile reduced in cache) than whole rows (vocab_block = 0)? "tiles_vs_rows" is
// the time ratio; --hidden=64 gives the shape of the tiny demo, where the elementwise work
// (exp, log-sum-exp, entropy) rather than the GEMM dominates.
//
// Memory: on the CPU every allocation goes through a counting wrapper of the CPU allocator
// (c10::SetCPUAllocator); on CUDA, the caching allocator's allocated-bytes peak. "Extra" is the
// peak minus what was allocated before the call (inputs) minus the outputs (log-probs, entropy,
// grad of hidden, grad of weight). Inputs are float32 on both paths.
//
//   logprob_bench [--device=cpu|cuda] [--max_tokens=N] [--hidden=H] [google benchmark flags]
// Defaults: CPU T = 1K, 2K (a 2-core CPU needs ~1 min per 1K tokens; pass --max_tokens=16384 for
// all); CUDA T = 1K..16K. Naive runs are skipped when they would not fit in memory.
#include <grpo/loss/token_logprobs.hpp>

#include "memory_meter.hpp"

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>
#include <string>
#include <vector>

#if defined(GRPO_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

#include <unistd.h>

namespace {

std::int64_t kHidden = 896;  // --hidden
constexpr std::int64_t kVocab = 151936;
constexpr std::int64_t kChunk = 1024;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::int64_t available_bytes(bool cuda) {
#if defined(GRPO_WITH_CUDA)
  if (cuda) {
    std::size_t free_bytes = 0, total = 0;
    c10::cuda::CUDACachingAllocator::emptyCache();
    cudaMemGetInfo(&free_bytes, &total);
    return static_cast<std::int64_t>(free_bytes);
  }
#endif
  (void)cuda;
  return static_cast<std::int64_t>(sysconf(_SC_AVPHYS_PAGES)) * sysconf(_SC_PAGESIZE);
}

struct Result {
  double seconds = 0;
  double extra_bytes = 0;
};
enum class Mode { naive, rows, tiles };
// Results by (mode, cuda, tokens): later modes report ratios against earlier ones.
std::map<std::tuple<Mode, bool, std::int64_t>, Result>& results() {
  static std::map<std::tuple<Mode, bool, std::int64_t>, Result> m;
  return m;
}

// One forward + backward of sum(logprob) + sum(entropy).
void naive_step(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets) {
  const at::Tensor logits = at::matmul(hidden, weight.t());          // [T, V]
  const at::Tensor log_p = at::log_softmax(logits, -1);              // [T, V]
  const at::Tensor logprobs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  const at::Tensor entropy = -(log_p.exp() * log_p).sum(-1);
  (logprobs.sum() + entropy.sum()).backward();
}

template <std::int64_t VocabBlock>
void chunked_step(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets) {
  const auto out = grpo::token_logprobs(hidden, weight, targets, {.chunk_size = kChunk, .vocab_block = VocabBlock});
  (out.logprobs.sum() + out.entropy.sum()).backward();
}

void run(benchmark::State& state, bool cuda, Mode mode) {
  const bool chunked = mode != Mode::naive;
  const std::int64_t tokens = state.range(0);
  const Memory memory{.cuda = cuda};
  const auto device = cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  // naive: logits, log_softmax, exp, product (forward) and as many gradients in backward
  const double naive_need = 5.0 * static_cast<double>(tokens) * kVocab * 4;
  if (!chunked && naive_need > 0.9 * static_cast<double>(available_bytes(cuda))) {
    state.SkipWithError(("naive needs ~" + std::to_string(static_cast<int>(naive_need / 1e9)) +
                         " GB, more than this machine has free")
                            .c_str());
    return;
  }
  at::manual_seed(0);
  const at::Tensor hidden = at::randn({tokens, kHidden}, device).requires_grad_(true);
  const at::Tensor weight = at::randn({kVocab, kHidden}, device).mul_(0.02).requires_grad_(true);
  const at::Tensor targets = at::randint(kVocab, {tokens}, at::TensorOptions().dtype(at::kLong).device(device));
  const auto step = mode == Mode::naive ? &naive_step : mode == Mode::rows ? &chunked_step<0> : &chunked_step<2048>;
  if (cuda) {  // warm-up: cuBLAS workspaces, allocator segments
    step(hidden, weight, targets);
    hidden.mutable_grad() = at::Tensor();
    weight.mutable_grad() = at::Tensor();
    memory.sync();
  }
  // outputs kept after the call: log-probs + entropy (freed at once here) and the two gradients
  const double outputs = static_cast<double>(tokens * kHidden + kVocab * kHidden) * 4;
  double total = 0;
  double extra = 0;
  for (auto _ : state) {
    hidden.mutable_grad() = at::Tensor();
    weight.mutable_grad() = at::Tensor();
    memory.sync();
    const std::int64_t before = memory.current();
    memory.reset_peak();
    const double start = now();
    step(hidden, weight, targets);
    memory.sync();
    total += now() - start;
    extra = std::max(extra, static_cast<double>(memory.peak() - before) - outputs);
  }
  const Result r{total / static_cast<double>(state.iterations()), extra};
  state.counters["peak_extra_MiB"] = r.extra_bytes / (1 << 20);
  state.counters["tokens_per_s"] = static_cast<double>(tokens) / r.seconds;
  results()[{mode, cuda, tokens}] = r;
  if (const auto it = results().find({Mode::naive, cuda, tokens}); chunked && it != results().end()) {
    state.counters["peak_vs_naive"] = r.extra_bytes / it->second.extra_bytes;
    state.counters["time_vs_naive"] = r.seconds / it->second.seconds;
  }
  if (const auto it = results().find({Mode::rows, cuda, tokens}); mode == Mode::tiles && it != results().end())
    state.counters["tiles_vs_rows"] = r.seconds / it->second.seconds;
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu";
  std::int64_t max_tokens = -1;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--device=", 0) == 0) device = arg.substr(9);
    else if (arg.rfind("--max_tokens=", 0) == 0) max_tokens = std::stoll(arg.substr(13));
    else if (arg.rfind("--hidden=", 0) == 0) kHidden = std::stoll(arg.substr(9));
    else rest.push_back(argv[i]);
  }
  const bool cuda = device == "cuda";
#if !defined(GRPO_WITH_CUDA)
  if (cuda) {
    std::fprintf(stderr, "logprob_bench: built without grpo::cuda; configure with the cuda preset\n");
    return 2;
  }
#endif
  if (cuda && !at::hasCUDA()) {
    std::fprintf(stderr, "logprob_bench: --device=cuda but no CUDA device\n");
    return 2;
  }
  if (max_tokens < 0) max_tokens = cuda ? 16384 : 2048;
  install_counting_allocator();

  for (std::int64_t t = 1024; t <= max_tokens; t *= 2) {
    // naive first, then whole rows, then tiles: each reports its ratios against the earlier ones
    const std::pair<const char*, Mode> modes[] = {{"naive/", Mode::naive}, {"chunked/", Mode::rows},
                                                  {"chunked_tiles/", Mode::tiles}};
    for (const auto& entry : modes) {
      const Mode mode = entry.second;
      benchmark::RegisterBenchmark((entry.first + device).c_str(), [cuda, mode](benchmark::State& s) { run(s, cuda, mode); })
          ->Arg(t)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(cuda ? 3 : 1);
    }
  }
  int count = static_cast<int>(rest.size());
  benchmark::Initialize(&count, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
