// Question: what do LoRA adapters (grpo::add_lora, rank 16 on all seven projections of each layer)
// save in one training step next to full fine-tuning, where the decoder layers dominate the work
// as they do in Qwen2.5 models? One step = teacher-forced log-probs of a batch (the trainer's
// path: grpo::teacher_forced_logprobs, chunked over the vocabulary), backward, AdamW step.
// Shape: Qwen2.5-0.5B's decoder layer (hidden 896, 14 query / 2 key-value heads, intermediate
// 4864) with --layers of them (default 4) and a vocabulary of 8,192 (the 151,936 of Qwen2.5
// would make this small model's output layer the main cost, which at 7B-32B it is not).
//
// Reported per variant: step time; "state_MiB", the gradients and AdamW moments the step leaves
// allocated (what stays in memory between steps beside the weights, counted from the tensors);
// "peak_extra_MiB", the allocator's peak during the step minus what was allocated before it
// (activations, temporaries, gradients, on the CPU through a counting allocator); and for LoRA
// the ratios against full fine-tuning run just before it.
//
//   lora_bench [--device=cpu|cuda] [--layers=N] [--tokens=T] [--rank=R] [google benchmark flags]
// Defaults: CPU 2 sequences x 256 tokens, CUDA 8 x 1024; both in float32 weights.
#include <grpo/model/lora.hpp>
#include <grpo/model/qwen2_policy.hpp>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "memory_meter.hpp"

namespace {

std::int64_t kLayers = 4;
std::int64_t kTokens = -1;  // per sequence; -1: the device's default
std::int64_t kRank = 16;

struct Result {
  double seconds = 0.0;
  double state_bytes = 0.0;
  double peak_extra_bytes = 0.0;
};
std::map<bool, Result> full_results;  // by cuda

grpo::Qwen2Config shape() {
  grpo::Qwen2Config c;
  c.vocab_size = 8192;
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_hidden_layers = kLayers;
  c.num_attention_heads = 14;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32768;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  return c;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void run(benchmark::State& state, bool cuda, bool lora) {
  const c10::Device device = cuda ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
  const Memory memory{.cuda = cuda};
  torch::manual_seed(0);
  grpo::Qwen2Model model(shape(), grpo::Qwen2Options{.device = device});
  if (lora) grpo::add_lora(*model, {.rank = kRank, .alpha = 2.0 * static_cast<double>(kRank)});
  std::vector<at::Tensor> trained;
  for (auto& p : model->parameters())
    if (p.requires_grad()) trained.push_back(p);
  torch::optim::AdamW optimizer(trained, torch::optim::AdamWOptions(1e-5));

  const std::int64_t rows = cuda ? 8 : 2;
  const std::int64_t tokens = kTokens > 0 ? kTokens : (cuda ? 1024 : 256);
  grpo::TokenBatch batch{at::randint(0, 8192, {rows, tokens}, at::kLong), at::ones({rows, tokens}, at::kLong),
                         at::ones({rows, tokens}, at::kLong)};
  batch.completion_mask.narrow(1, 0, tokens / 4).zero_();  // a prompt quarter, scored completion after it
  const grpo::TokenLogprobOptions options{.chunk_size = 1024, .temperature = 1.0, .compute_entropy = false};
  auto step = [&] {
    const auto scored = grpo::teacher_forced_logprobs(model, batch, options).logprobs;
    (-scored.sum() / static_cast<double>(rows * tokens)).backward();
    optimizer.step();
  };
  step();  // allocates the AdamW moments and warms up the kernels
  for (auto& p : trained) p.mutable_grad().reset();
  memory.sync();

  double total = 0.0, peak_extra = 0.0;
  for (auto _ : state) {
    const auto before = memory.current();
    memory.reset_peak();
    const double start = now();
    step();
    memory.sync();
    total += now() - start;
    peak_extra = std::max(peak_extra, static_cast<double>(memory.peak() - before));
    for (auto& p : trained) p.mutable_grad().reset();
  }
  double state_bytes = 0.0;  // gradients and both AdamW moments of every trained tensor
  for (const auto& p : trained) state_bytes += 3.0 * static_cast<double>(p.numel()) * static_cast<double>(p.element_size());

  const Result r{total / static_cast<double>(state.iterations()), state_bytes, peak_extra};
  std::int64_t trained_count = 0;
  for (const auto& p : trained) trained_count += p.numel();
  state.counters["trained_M"] = static_cast<double>(trained_count) / 1e6;
  state.counters["state_MiB"] = r.state_bytes / (1 << 20);
  state.counters["peak_extra_MiB"] = r.peak_extra_bytes / (1 << 20);
  state.counters["tokens_per_s"] = static_cast<double>(rows * tokens) / r.seconds;
  if (!lora) {
    full_results[cuda] = r;
  } else if (auto it = full_results.find(cuda); it != full_results.end()) {
    state.counters["time_vs_full"] = r.seconds / it->second.seconds;
    state.counters["state_vs_full"] = r.state_bytes / it->second.state_bytes;
    state.counters["peak_vs_full"] = r.peak_extra_bytes / it->second.peak_extra_bytes;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu";
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--device=", 0) == 0) {
      device = arg.substr(9);
    } else if (arg.rfind("--layers=", 0) == 0) {
      kLayers = std::stoll(arg.substr(9));
    } else if (arg.rfind("--tokens=", 0) == 0) {
      kTokens = std::stoll(arg.substr(9));
    } else if (arg.rfind("--rank=", 0) == 0) {
      kRank = std::stoll(arg.substr(7));
    } else {
      rest.push_back(argv[i]);
    }
  }
  const bool cuda = device == "cuda";
  if (device != "cpu" && !cuda) {
    std::fprintf(stderr, "lora_bench: --device must be cpu or cuda, found %s\n", device.c_str());
    return 2;
  }
#if !defined(GRPO_WITH_CUDA)
  if (cuda) {
    std::fprintf(stderr, "lora_bench: built without grpo::cuda; configure with the cuda preset\n");
    return 2;
  }
#endif
  if (cuda && !at::hasCUDA()) {
    std::fprintf(stderr, "lora_bench: --device=cuda but no CUDA device\n");
    return 2;
  }
  install_counting_allocator();
  // full fine-tuning first: LoRA reports its ratios against it
  for (const bool lora : {false, true}) {
    const std::string name = std::string(lora ? "lora" : "full") + "/" + device;
    benchmark::RegisterBenchmark(name.c_str(), [cuda, lora](benchmark::State& s) { run(s, cuda, lora); })
        ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(cuda ? 10 : 2);
  }
  int count = static_cast<int>(rest.size());
  benchmark::Initialize(&count, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
