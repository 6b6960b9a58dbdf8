// Also BM_GroupPrefill: the prefill of a GRPO batch with and without sharing each prompt's
// prefill among its G samples (below).
//
// Question: how many tokens per second does grpo's batched decoding (grpo::generate: static KV
// cache, one forward per step for every live row) reach on a Qwen2.5-0.5B-shaped model (hidden
// 896, 24 layers, 14 query / 2 key-value heads, intermediate 4864, vocabulary 151,936, tied;
// random weights, bfloat16) at batch 1, 16 and 64, and which fraction of the GPU's memory
// bandwidth does a decode step use? transformers' generate() on the same shape is the baseline:
// benchmarks/decode_vs_hf.py runs it and this binary in one run and prints the ratios.
//
// Each batch size runs twice: graphs:1 replays the decode step as a CUDA graph
// (DecodeOptions::cuda_graphs = true, opt-in), graphs:0 launches its kernels one by one (the
// default), so the gain of the graph is read off the same run.
//
// Protocol (the same in decode_vs_hf.py): a batch of B random prompts of 128 tokens, greedy,
// no stop token, 256 new tokens; decode time = time(256 new tokens) - time(1 new token), so the
// prefill is excluded; tokens/s = B * 255 / decode time. Bytes per step = every parameter once
// (the tied embedding is the output projection) + the keys and values read, at the mean length
// 128 + 128; the bandwidth fraction divides bytes per step / time per step by the peak given with
// --peak-tbps (H100 SXM: 3.35 TB/s).
//
//   decode_bench [--device=cuda|cpu] [--shape=qwen2.5-0.5b|tiny] [--peak-tbps=X] [--new-tokens=N]
//                [google benchmark flags]
// On the CPU (no GPU here) use --shape=tiny: a smoke run of the same code.
#include <grpo/model/qwen2.hpp>
#include <grpo/model/qwen2_generate.hpp>

#include <ATen/Context.h>
#include <ATen/Functions.h>
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

struct Settings {
  std::string device = "cuda";
  std::string shape = "qwen2.5-0.5b";
  double peak_tbps = 0.0;
  std::int64_t prompt_tokens = 128;
  std::int64_t new_tokens = 256;
};

Settings& settings() {
  static Settings s;
  return s;
}

grpo::Qwen2Config shape_config(const std::string& shape) {
  grpo::Qwen2Config c;
  c.vocab_size = 151936;
  c.rope_theta = 1e6;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  if (shape == "tiny") {
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.vocab_size = 4096;
  } else {
    c.hidden_size = 896;
    c.intermediate_size = 4864;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 14;
    c.num_key_value_heads = 2;
  }
  return c;
}

grpo::Qwen2Model& model() {
  static std::unique_ptr<grpo::Qwen2Model> instance = [] {
    const auto& s = settings();
    at::manual_seed(0);
    const bool cuda = s.device == "cuda";
    auto m = std::make_unique<grpo::Qwen2Model>(
        shape_config(s.shape), grpo::Qwen2Options{.device = cuda ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU),
                                                  .dtype = cuda ? c10::kBFloat16 : c10::kFloat});
    (*m)->eval();
    return m;
  }();
  return *instance;
}

std::vector<std::vector<std::int64_t>> prompts(std::int64_t batch) {
  const auto vocab = model()->config().vocab_size;
  const auto ids = at::randint(0, vocab, {batch, settings().prompt_tokens}, at::TensorOptions().dtype(at::kLong));
  std::vector<std::vector<std::int64_t>> out;
  for (std::int64_t i = 0; i < batch; ++i) {
    const auto row = ids[i].contiguous();
    out.emplace_back(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + row.numel());
  }
  return out;
}

double seconds_of(const std::vector<std::vector<std::int64_t>>& p, std::int64_t new_tokens, bool graphs) {
  const auto start = std::chrono::steady_clock::now();
  // generate() copies every step's tokens to the host, so its return waits for the GPU.
  const auto out = grpo::generate(model(), p, {.max_new_tokens = new_tokens, .greedy = true}, nullptr,
                                  grpo::DecodeOptions{.cuda_graphs = graphs});
  benchmark::DoNotOptimize(out.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Arguments: batch, CUDA graphs (1) or eager steps (0).
void BM_GrpoDecode(benchmark::State& state) {
  const auto batch = state.range(0);
  const bool graphs = state.range(1) != 0;
  const auto& s = settings();
  const auto p = prompts(batch);
  seconds_of(p, 2, graphs);  // warm-up: kernels, cuBLAS handles, the caching allocator
  double decode_total = 0.0;
  for (auto _ : state) {
    const double prefill = seconds_of(p, 1, graphs);
    const double full = seconds_of(p, s.new_tokens, graphs);
    const double decode = std::max(full - prefill, 1e-9);
    state.SetIterationTime(decode);
    decode_total += decode;
  }
  const double steps = static_cast<double>(s.new_tokens - 1);
  const double per_step = decode_total / static_cast<double>(state.iterations()) / steps;
  const auto& config = model()->config();
  double parameter_bytes = 0.0;
  for (const auto& p : model()->parameters()) parameter_bytes += static_cast<double>(p.numel() * p.element_size());
  const double element = static_cast<double>(model()->output_weight().element_size());
  const double mean_length = static_cast<double>(s.prompt_tokens) + static_cast<double>(s.new_tokens) / 2.0;
  const double kv_bytes = static_cast<double>(config.num_hidden_layers) * 2.0 * static_cast<double>(batch) *
                          static_cast<double>(config.num_key_value_heads) * mean_length *
                          static_cast<double>(grpo::head_dim_of(config)) * element;
  state.counters["tokens_per_s"] = static_cast<double>(batch) / per_step;
  state.counters["ms_per_step"] = per_step * 1e3;
  state.counters["GB_per_step"] = (parameter_bytes + kv_bytes) / 1e9;
  if (s.peak_tbps > 0.0) state.counters["bandwidth_fraction"] = (parameter_bytes + kv_bytes) / per_step / (s.peak_tbps * 1e12);
}
BENCHMARK(BM_GrpoDecode)
    ->ArgNames({"batch", "graphs"})
    ->ArgsProduct({{1, 16, 64}, {1, 0}})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

// The prefill of a GRPO batch: `prompts` distinct prompts x G = `group` samples each, one new
// token. share:1 (the default) prefills each distinct prompt once and copies its cache rows to
// its G requests (DecodeOptions::share_prompt_prefill); share:0 prefills every request, the
// baseline. rows_per_s = requests prefilled per second; the ratio of the two rows is the gain.
void BM_GroupPrefill(benchmark::State& state) {
  const auto distinct = prompts(state.range(0));
  const auto group = state.range(1);
  const bool share = state.range(2) != 0;
  std::vector<std::vector<std::int64_t>> batch;
  for (const auto& p : distinct)
    for (std::int64_t g = 0; g < group; ++g) batch.push_back(p);
  const auto run = [&] {
    const auto out = grpo::generate(model(), batch, {.max_new_tokens = 1, .greedy = true}, nullptr,
                                    grpo::DecodeOptions{.share_prompt_prefill = share});
    benchmark::DoNotOptimize(out.data());
  };
  run();  // warm-up
  for (auto _ : state) run();
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(batch.size()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GroupPrefill)
    ->ArgNames({"prompts", "group", "share"})
    ->ArgsProduct({{4}, {8}, {1, 0}})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

bool take_flag(const char* arg, const char* name, std::string& value) {
  const auto n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest{argv[0]};
  auto& s = settings();
  for (int i = 1; i < argc; ++i) {
    std::string value;
    if (take_flag(argv[i], "--device", value)) {
      s.device = value;
    } else if (take_flag(argv[i], "--shape", value)) {
      s.shape = value;
    } else if (take_flag(argv[i], "--peak-tbps", value)) {
      s.peak_tbps = std::stod(value);
    } else if (take_flag(argv[i], "--new-tokens", value)) {
      s.new_tokens = std::stoll(value);
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (s.device == "cuda" && !at::hasCUDA()) {
    std::fprintf(stderr, "decode_bench: no CUDA device (or a CPU-only build); run with --device=cpu --shape=tiny\n");
    return 1;
  }
  if (s.new_tokens < 2) {
    std::fprintf(stderr, "decode_bench: --new-tokens must be >= 2\n");
    return 1;
  }
  int count = static_cast<int>(rest.size());
  benchmark::Initialize(&count, rest.data());
  benchmark::AddCustomContext("device", s.device);
  benchmark::AddCustomContext("shape", s.shape);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
