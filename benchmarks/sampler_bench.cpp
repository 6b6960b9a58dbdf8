// Question: what does top-p / top-k filtering cost per decoded token over a 151,936-token
// vocabulary, with grpo's candidate path (top-k over the 64 or 1,024 most likely tokens when
// that provably gives the full result) against the full stable sort of every row (what the
// sampler did before, and what transformers' TopPLogitsWarper does)? Both run in this binary;
// the ratio is in the "vs_sort" counter of the candidate rows.
//
// Logits: a batch of B rows, each a Gaussian background (std 2) with 20 tokens lifted by 8-14
// (a language model's next-token distribution after training: most mass on a few tokens); the
// nucleus of top-p 0.9 then holds a handful of tokens, as in RL rollouts of a trained policy.
//
//   sampler_bench [google benchmark flags]      (CPU; 2 threads were used for docs/benchmarks)
#include <grpo/sampling/sampler.hpp>

#include <ATen/Functions.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace {

at::Tensor peaked_logits(std::int64_t rows, std::int64_t vocab) {
  at::manual_seed(0);
  auto z = at::randn({rows, vocab}) * 2.0;
  const auto lifted = at::randint(vocab, {rows, 20});
  z.scatter_add_(1, lifted, at::rand({rows, 20}) * 6.0 + 8.0);
  return z;
}

// Seconds per iteration of each full-sort run, keyed by case and batch, for the ratio counters.
std::map<std::string, double>& sort_seconds() {
  static std::map<std::string, double> s;
  return s;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void run(benchmark::State& state, bool candidates, const grpo::SamplingOptions& options, const std::string& name) {
  const auto rows = state.range(0);
  const auto z = peaked_logits(rows, 151936);
  const std::vector<std::int64_t> none;
  const auto plan = candidates ? std::span<const std::int64_t>(grpo::detail::kFilterCandidates)
                               : std::span<const std::int64_t>(none);
  double total = 0.0;
  for (auto _ : state) {
    const double t0 = now();
    auto f = grpo::detail::filter_logits(z, options, plan);
    benchmark::DoNotOptimize(f.logits.data_ptr());
    total += now() - t0;
  }
  const double seconds = total / static_cast<double>(std::max<std::int64_t>(1, state.iterations()));
  state.SetItemsProcessed(state.iterations() * rows);
  const auto key = name + "/" + std::to_string(rows);
  if (!candidates) {
    sort_seconds()[key] = seconds;
  } else if (auto it = sort_seconds().find(key); it != sort_seconds().end()) {
    state.counters["x_vs_sort"] = it->second / seconds;
  }
}

}  // namespace

// Order matters: each full sort runs before its candidate twin, which reports x_vs_sort.
static void BM_TopP09_Sort(benchmark::State& s) { run(s, false, {.temperature = 0.8, .top_p = 0.9}, "top_p"); }
static void BM_TopP09_Candidates(benchmark::State& s) { run(s, true, {.temperature = 0.8, .top_p = 0.9}, "top_p"); }
static void BM_TopK50_Sort(benchmark::State& s) { run(s, false, {.top_k = 50}, "top_k"); }
static void BM_TopK50_Candidates(benchmark::State& s) { run(s, true, {.top_k = 50}, "top_k"); }
BENCHMARK(BM_TopP09_Sort)->Arg(1)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_TopP09_Candidates)->Arg(1)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_TopK50_Sort)->Arg(1)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_TopK50_Candidates)->Arg(1)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
