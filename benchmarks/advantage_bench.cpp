// Question: how much faster is grpo's balanced group advantage (LongWriter-Zero Eq. 5: normalise
// each of 3 rewards within its group of 32, then average) than the two usual peer approaches, at
// 512 prompts x 32 samples x 3 rewards and at 8192 x 32 x 3?
//
//   verl_loop        verl's default compute_grpo_outcome_advantage, ported faithfully: a per-sample
//                    loop appending 0-dim score tensors to a hash map uid -> list, torch.stack +
//                    mean + std per group, a second per-sample loop of scalar tensor ops; per reward,
//                    then averaged (verl's GDPO-style multi-reward path does the same per reward)
//   verl_loop_vector the same loop structure over std::vector<float> (a C++ programmer's port; a
//                    stronger baseline than verl itself)
//   trl_vectorized   TRL's GRPOTrainer: view(-1, G), mean, std, repeat_interleave, per reward, sum
//   grpo_range       grpo::Balanced<3> over spans (the host path)
//   grpo_tensor      grpo::Balanced<3> on a CPU tensor (dispatches to the host path)
// Ours report counters x_vs_<baseline> = baseline time / our time, measured in the same run
// (baselines run first, in registration order). With grpo::cuda and a GPU, the *_cuda variants
// compare our fused kernel with TRL's ops on the device.
#include <grpo/advantage/balanced.hpp>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(GRPO_WITH_CUDA)
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace {

constexpr std::int64_t kRewards = 3;
constexpr std::int64_t kGroup = 32;

struct Data {
  std::vector<float> table;  // [K, N]
  at::Tensor tensor;         // the same, CPU
  std::vector<std::string> uids;  // verl's per-sample prompt uid (uuid4 strings)
};

const Data& data(std::int64_t prompts) {
  static std::map<std::int64_t, Data> cache;
  auto it = cache.find(prompts);
  if (it != cache.end()) return it->second;
  Data d;
  const std::int64_t n = prompts * kGroup;
  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  d.table.resize(static_cast<std::size_t>(kRewards * n));
  for (auto& v : d.table) v = normal(rng);
  d.tensor = at::from_blob(d.table.data(), {kRewards, n}, at::kFloat).clone();
  char buf[40];
  for (std::int64_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%08x-4a1b-4c2d-8e3f-%012llx", static_cast<unsigned>(rng()),
                  static_cast<unsigned long long>(i / kGroup) * 2654435761ULL);
    d.uids.emplace_back(buf);
  }
  return cache.emplace(prompts, std::move(d)).first->second;
}

// Seconds per iteration of each baseline, for the ratio counters of ours.
std::map<std::string, double>& baseline_seconds() {
  static std::map<std::string, double> m;
  return m;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <class F>
double timed(benchmark::State& state, F&& f) {
  double total = 0;
  for (auto _ : state) {
    const double start = now();
    f();
    total += now() - start;
  }
  return total / static_cast<double>(state.iterations());
}

void report_ratios(benchmark::State& state, const std::string& size, double ours, const char* suffix = "") {
  for (const char* base : {"verl_loop", "verl_loop_vector", "trl_vectorized"}) {
    const auto it = baseline_seconds().find(std::string(base) + suffix + "/" + size);
    if (it != baseline_seconds().end()) state.counters[std::string("x_vs_") + base] = it->second / ours;
  }
}

// ---- verl: per-sample loop, hash map of uid -> list of 0-dim tensors -----------------------------
at::Tensor verl_grpo_advantage(const at::Tensor& scores_in, const std::vector<std::string>& index, double epsilon) {
  at::Tensor scores = scores_in.clone();
  std::unordered_map<std::string, std::vector<at::Tensor>> id2score;
  std::unordered_map<std::string, at::Tensor> id2mean, id2std;
  const std::int64_t bsz = scores.size(0);
  for (std::int64_t i = 0; i < bsz; ++i) id2score[index[static_cast<std::size_t>(i)]].push_back(scores[i]);
  for (auto& [idx, list] : id2score) {
    if (list.size() == 1) {
      id2mean[idx] = at::scalar_tensor(0.0);
      id2std[idx] = at::scalar_tensor(1.0);
    } else {
      const at::Tensor stacked = at::stack(list);
      id2mean[idx] = stacked.mean();
      id2std[idx] = stacked.std();
    }
  }
  for (std::int64_t i = 0; i < bsz; ++i) {
    const auto& idx = index[static_cast<std::size_t>(i)];
    scores[i] = (scores[i] - id2mean[idx]) / (id2std[idx] + epsilon);
  }
  return scores;
}

void verl_loop(benchmark::State& state) {
  const Data& d = data(state.range(0));
  const double s = timed(state, [&] {
    at::Tensor total;
    for (std::int64_t k = 0; k < kRewards; ++k) {
      const at::Tensor a = verl_grpo_advantage(d.tensor[k], d.uids, 1e-6);
      total = total.defined() ? total + a : a;
    }
    benchmark::DoNotOptimize((total / static_cast<double>(kRewards)).data_ptr());
  });
  baseline_seconds()["verl_loop/" + std::to_string(state.range(0))] = s;
}

// ---- the same loop over std::vector<float> ------------------------------------------------------
void verl_loop_vector(benchmark::State& state) {
  const Data& d = data(state.range(0));
  const std::size_t n = d.uids.size();
  std::vector<float> out(n);
  const double s = timed(state, [&] {
    std::fill(out.begin(), out.end(), 0.0f);
    for (std::int64_t k = 0; k < kRewards; ++k) {
      const float* scores = d.table.data() + k * static_cast<std::int64_t>(n);
      std::unordered_map<std::string, std::vector<float>> id2score;
      std::unordered_map<std::string, std::pair<double, double>> id2stats;
      for (std::size_t i = 0; i < n; ++i) id2score[d.uids[i]].push_back(scores[i]);
      for (auto& [idx, list] : id2score) {
        double mean = 0, var = 0;
        for (float v : list) mean += v;
        mean /= static_cast<double>(list.size());
        for (float v : list) var += (v - mean) * (v - mean);
        id2stats[idx] = {mean, list.size() > 1 ? std::sqrt(var / static_cast<double>(list.size() - 1)) : 1.0};
      }
      for (std::size_t i = 0; i < n; ++i) {
        const auto& [mean, std] = id2stats[d.uids[i]];
        out[i] += static_cast<float>((scores[i] - mean) / (std + 1e-6) / kRewards);
      }
    }
    benchmark::DoNotOptimize(out.data());
  });
  baseline_seconds()["verl_loop_vector/" + std::to_string(state.range(0))] = s;
}

// ---- TRL: vectorised ATen ops --------------------------------------------------------------------
at::Tensor trl_advantages(const at::Tensor& rewards) {
  at::Tensor total;
  for (std::int64_t k = 0; k < rewards.size(0); ++k) {
    const at::Tensor r = rewards[k];
    const at::Tensor grouped = r.view({-1, kGroup});
    const at::Tensor mean = grouped.mean(1).repeat_interleave(kGroup, 0);
    const at::Tensor std = grouped.std(1).repeat_interleave(kGroup, 0);
    const at::Tensor a = (r - mean) / (std + 1e-4);
    total = total.defined() ? total + a : a;
  }
  return total / static_cast<double>(rewards.size(0));
}

void trl_vectorized(benchmark::State& state) {
  const Data& d = data(state.range(0));
  const double s = timed(state, [&] { benchmark::DoNotOptimize(trl_advantages(d.tensor).data_ptr()); });
  baseline_seconds()["trl_vectorized/" + std::to_string(state.range(0))] = s;
}

// ---- ours ----------------------------------------------------------------------------------------
void grpo_range(benchmark::State& state) {
  const Data& d = data(state.range(0));
  const std::size_t n = d.uids.size();
  std::vector<float> out(n);
  const grpo::Balanced<3> estimator{};
  const grpo::RewardTableView<const float> view{d.table.data(), kRewards, n};
  const double s = timed(state, [&] {
    estimator.compute(view, kGroup, out);
    benchmark::DoNotOptimize(out.data());
  });
  report_ratios(state, std::to_string(state.range(0)), s);
}

void grpo_tensor(benchmark::State& state) {
  const Data& d = data(state.range(0));
  const grpo::Balanced<3> estimator{};
  const double s = timed(state, [&] { benchmark::DoNotOptimize(estimator.compute(d.tensor, kGroup).data_ptr()); });
  report_ratios(state, std::to_string(state.range(0)), s);
}

#if defined(GRPO_WITH_CUDA)
bool have_gpu(benchmark::State& state) {
  if (at::hasCUDA()) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

void trl_vectorized_cuda(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const at::Tensor t = data(state.range(0)).tensor.cuda();
  trl_advantages(t);
  c10::cuda::device_synchronize();
  const double s = timed(state, [&] {
    benchmark::DoNotOptimize(trl_advantages(t).data_ptr());
    c10::cuda::device_synchronize();
  });
  baseline_seconds()["trl_vectorized_cuda/" + std::to_string(state.range(0))] = s;
}

void grpo_tensor_cuda(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const at::Tensor t = data(state.range(0)).tensor.cuda();
  const grpo::Balanced<3> estimator{};
  benchmark::DoNotOptimize(estimator.compute(t, kGroup).data_ptr());
  c10::cuda::device_synchronize();
  const double s = timed(state, [&] {
    benchmark::DoNotOptimize(estimator.compute(t, kGroup).data_ptr());
    c10::cuda::device_synchronize();
  });
  const auto it = baseline_seconds().find("trl_vectorized_cuda/" + std::to_string(state.range(0)));
  if (it != baseline_seconds().end()) state.counters["x_vs_trl_vectorized_cuda"] = it->second / s;
}
#endif

}  // namespace

// Order matters: baselines first, so ours can report ratios.
BENCHMARK(verl_loop)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(verl_loop)->Arg(8192)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(verl_loop_vector)->Arg(512)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(trl_vectorized)->Arg(512)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(grpo_range)->Arg(512)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(grpo_tensor)->Arg(512)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
#if defined(GRPO_WITH_CUDA)
BENCHMARK(trl_vectorized_cuda)->Arg(512)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(grpo_tensor_cuda)->Arg(512)->Arg(8192)->Unit(benchmark::kMicrosecond)->UseRealTime();
#endif

BENCHMARK_MAIN();
