// Question: what does grpo::ClippedSurrogateLoss cost, forward + backward, at 64 sequences x 4096
// tokens, next to the same objective written as plain ATen ops the way verl writes it
// (core_algos.compute_policy_loss + agg_loss + masked_mean statistics)?
//
//   verl_style            token-mean PPO clip, statistics with masked_mean (syncs nothing either)
//   grpo_token_mean       ours, the same configuration (x_vs_verl_style = verl time / ours)
//   grpo_gspo             ours, sequence-level ratio (GSPO), seq-mean-token-mean
//   grpo_dual_clip_kl_k3  ours, clip-higher + dual clip + k3 KL against a reference
// The same four on CUDA (suffix _cuda) when built with grpo::cuda and a GPU is present.
#include <grpo/loss/clipped_surrogate.hpp>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <string>

#if defined(GRPO_WITH_CUDA)
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace {

constexpr std::int64_t kSequences = 64;
constexpr std::int64_t kTokens = 4096;

struct Batch {
  at::Tensor logprobs, old, ref, adv, mask;
  double tokens = 0;
};

Batch make_batch(at::Device device) {
  at::manual_seed(0);
  Batch b;
  b.old = at::rand({kSequences, kTokens}).mul(-5.0);
  b.logprobs = b.old.add(at::rand({kSequences, kTokens}).sub(0.5).mul(0.6));
  b.ref = b.old.add(at::rand({kSequences, kTokens}).sub(0.5));
  b.adv = at::randn({kSequences});
  // completions of random length (1K..4K tokens), right-padded
  const at::Tensor lengths = at::randint(1024, kTokens + 1, {kSequences, 1});
  b.mask = at::arange(kTokens).unsqueeze(0).lt(lengths).to(at::kFloat);
  b.tokens = b.mask.sum().item<double>();
  for (at::Tensor* t : {&b.old, &b.logprobs, &b.ref, &b.adv, &b.mask}) *t = t->to(device);
  b.logprobs.requires_grad_(true);
  return b;
}

void sync(const Batch& b) {
#if defined(GRPO_WITH_CUDA)
  if (b.logprobs.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)b;
#endif
}

std::map<std::string, double>& baseline_seconds() {
  static std::map<std::string, double> m;
  return m;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <class F>
double timed(benchmark::State& state, const Batch& b, F&& f) {
  f();  // warm-up (allocator, kernels)
  sync(b);
  double total = 0;
  for (auto _ : state) {
    const double start = now();
    f();
    sync(b);
    total += now() - start;
  }
  return total / static_cast<double>(state.iterations());
}

bool device_or_skip(benchmark::State& state, bool cuda) {
  if (!cuda || at::hasCUDA()) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

// verl's compute_policy_loss (vanilla) + agg_loss("token-mean") + its masked_mean statistics.
void verl_style(benchmark::State& state, bool cuda) {
  if (!device_or_skip(state, cuda)) return;
  const Batch b = make_batch(cuda ? at::kCUDA : at::kCPU);
  const double s = timed(state, b, [&] {
    b.logprobs.mutable_grad() = at::Tensor();
    const at::Tensor adv = b.adv.unsqueeze(1);
    const at::Tensor negative_approx_kl = at::clamp(b.logprobs - b.old, -20.0, 20.0);
    const at::Tensor ratio = at::exp(negative_approx_kl);
    const at::Tensor ppo_kl = (-negative_approx_kl * b.mask).sum() / b.mask.sum();
    const at::Tensor pg_losses1 = -adv * ratio;
    const at::Tensor pg_losses2 = -adv * at::clamp(ratio, 0.8, 1.2);
    const at::Tensor clip_pg_losses1 = at::maximum(pg_losses1, pg_losses2);
    const at::Tensor pg_clipfrac = (at::gt(pg_losses2, pg_losses1).to(at::kFloat) * b.mask).sum() / b.mask.sum();
    const at::Tensor loss = (clip_pg_losses1 * b.mask).sum() / b.mask.sum();
    loss.backward();
    benchmark::DoNotOptimize(ppo_kl.data_ptr());
    benchmark::DoNotOptimize(pg_clipfrac.data_ptr());
  });
  baseline_seconds()[cuda ? "cuda" : "cpu"] = s;
}

void ours(benchmark::State& state, bool cuda, grpo::ClippedSurrogateLoss loss) {
  if (!device_or_skip(state, cuda)) return;
  const Batch b = make_batch(cuda ? at::kCUDA : at::kCPU);
  const grpo::LossNormalizer norm{.tokens = b.tokens, .sequences = kSequences, .horizon = kTokens};
  const double s = timed(state, b, [&] {
    b.logprobs.mutable_grad() = at::Tensor();
    const auto out = loss({b.logprobs, b.old, b.ref, b.adv, b.mask}, norm);
    out.loss.backward();
    benchmark::DoNotOptimize(out.stats.clipped_tokens.data_ptr());
  });
  const auto it = baseline_seconds().find(cuda ? "cuda" : "cpu");
  if (it != baseline_seconds().end()) state.counters["x_vs_verl_style"] = it->second / s;
  state.counters["tokens_per_s"] = benchmark::Counter(b.tokens / s);
}

const grpo::ClippedSurrogateLoss token_mean{};
const grpo::ClippedSurrogateLoss gspo{.clip_low = 3e-4, .clip_high = 4e-4, .ratio = grpo::RatioLevel::sequence,
                                      .aggregation = grpo::Aggregation::seq_mean_token_mean};
const grpo::ClippedSurrogateLoss full{.clip_high = 0.28, .dual_clip = 3.0, .kl_coef = 0.001, .kl = grpo::KlEstimator::k3};

}  // namespace

BENCHMARK_CAPTURE(verl_style, cpu, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(ours, grpo_token_mean_cpu, false, token_mean)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(ours, grpo_gspo_cpu, false, gspo)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(ours, grpo_dual_clip_kl_k3_cpu, false, full)->Unit(benchmark::kMillisecond)->UseRealTime();
#if defined(GRPO_WITH_CUDA)
BENCHMARK_CAPTURE(verl_style, cuda, true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(ours, grpo_token_mean_cuda, true, token_mean)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(ours, grpo_gspo_cuda, true, gspo)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(ours, grpo_dual_clip_kl_k3_cuda, true, full)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

BENCHMARK_MAIN();
