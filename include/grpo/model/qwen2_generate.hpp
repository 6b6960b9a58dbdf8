#pragma once
// Batched generation with a Qwen2 model and a static KV cache: grpo::generate(model, prompt_ids,
// SamplingOptions, tokenizer*, DecodeOptions). What comes back (ids, text, log-probs, finish
// reasons), the seeds and the stop rules are the model-agnostic ones of grpo/sampling/generate.hpp;
// this file is the Qwen2 decode loop that produces them.
//
// Prompts of different lengths are left-padded and prefilled together (requests with the same
// prompt, a GRPO group's G samples, once: DecodeOptions::share_prompt_prefill); then one token
// per live row per step. A row ends with finish_reason stop when it samples a stop token id or when its
// decoded text contains a stop string, and with length after max_new_tokens; finished rows are
// dropped from the cache (KVCache::keep_rows), so later steps compute only the live ones.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#if defined(GRPO_WITH_CUDA)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/core/reporter.hpp"
#include "grpo/core/generation.hpp"
#include "grpo/model/kv_cache.hpp"
#include "grpo/model/qwen2.hpp"
#include "grpo/sampling/generate.hpp"
#include "grpo/sampling/sampler.hpp"
#include "grpo/tokenizer/tokenizer.hpp"

namespace grpo {

/// How the decode loop runs (results do not depend on it, up to floating-point rounding).
struct DecodeOptions {
  /// On a CUDA device (in a build with grpo::cuda), capture one decode step in a CUDA graph and
  /// replay it: the step's ~1000 kernel launches cost one. Default false: the path is checked on
  /// the CPU through static_window_steps, but it has not yet run on a GPU (docs/benchmarks/model.md);
  /// it becomes the default once its CUDA test has passed there.
  bool cuda_graphs = false;
  /// Attention window granularity of the captured step: the window (slots attended, the unwritten
  /// ones masked) grows by doubling from the first multiple of this that holds the prompt, and
  /// each window size is captured once. Default 256.
  std::int64_t graph_window = 256;
  /// Decode through the static-window cache step that CUDA graphs capture, without capturing
  /// (on any device): for testing that path where no GPU is. Default false.
  bool static_window_steps = false;
  /// Where a note goes when CUDA graph capture fails and decoding falls back to eager steps;
  /// null: no note (default).
  Reporter* reporter = nullptr;
  /// Requests with the same prompt ids (the G samples of a GRPO group) share one prefill: the
  /// distinct prompts are prefilled, then each request's cache row is a copy of its prompt's
  /// (KVCache::copy_rows). Prefill work and its activations shrink by the number of copies;
  /// the samples are the same. Default true.
  bool share_prompt_prefill = true;
};

namespace detail {

/// Requests grouped by identical prompt ids: source[i] is the distinct prompt request i has,
/// first[u] the first request with distinct prompt u (in request order).
struct PromptGroups {
  std::vector<std::int64_t> source;
  std::vector<std::int64_t> first;
};

struct IdsLess {
  bool operator()(std::span<const std::int64_t> a, std::span<const std::int64_t> b) const {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  }
};

inline PromptGroups group_identical_prompts(std::span<const std::vector<std::int64_t>> prompts) {
  PromptGroups groups;
  std::map<std::span<const std::int64_t>, std::int64_t, IdsLess> seen;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto [it, inserted] = seen.try_emplace(std::span<const std::int64_t>(prompts[i]),
                                                 static_cast<std::int64_t>(groups.first.size()));
    if (inserted) groups.first.push_back(static_cast<std::int64_t>(i));
    groups.source.push_back(it->second);
  }
  return groups;
}

/// One decode step's outputs, on the host.
struct StepResult {
  at::Tensor tokens;    // [B] int64
  at::Tensor logprobs;  // [B] float32
  at::Tensor valid;     // [B] bool
};

inline StepResult to_host(const SampledTokens& sampled) {
  return {sampled.tokens.cpu(), sampled.logprobs.cpu(), sampled.valid.cpu()};
}

/// A decode step over a static-window KV cache (KVCache::set_static_window) with static input
/// buffers (next tokens, uniforms) and output buffers. On a CUDA device with `capture`, the
/// step is captured once per window size and batch size in a CUDA graph and replayed; otherwise
/// (any device) it runs eagerly, the same work in the same order: the path a graph replays,
/// testable without a GPU.
class StaticDecodeStep {
 public:
  StaticDecodeStep(Qwen2Model& model, KVCache& cache, const SamplingOptions& options, bool capture,
                   Reporter* reporter = nullptr)
      : model_(&model), cache_(&cache), options_(&options), capture_(capture), reporter_(reporter) {}

  /// Runs one step with `tokens` [B] (host) and `uniforms` [B] (host, float64, or undefined when
  /// greedy) over the first `window` slots of the cache.
  StepResult step(const at::Tensor& tokens, const at::Tensor& uniforms, std::int64_t window) {
    const auto rows = cache_->batch_size();
    const bool reshaped = window != cache_->static_window() || rows != rows_;
    if (reshaped) {
      release();
      cache_->set_static_window(window);
      rows_ = rows;
    }
    const auto device = (*model_)->output_weight().device();
#if defined(GRPO_WITH_CUDA)
    if (capture_ && device.is_cuda()) {
      if (reshaped || !graph_) return capture_and_step(tokens, uniforms, device);
      if (uniforms.defined()) uniforms_in_.copy_(uniforms, /*non_blocking=*/false);
      graph_->replay();  // the graph feeds its sampled tokens back into tokens_in_ itself
      return finish_step();
    }
#endif
    tokens_in_ = tokens.to(device).reshape({rows, 1});
    uniforms_in_ = uniforms.defined() ? uniforms.to(device) : at::Tensor();
    run();
    return finish_step();
  }

  /// True once a capture failed: the caller goes on with plain eager steps.
  bool failed() const { return failed_; }

  /// Leaves static-window mode (before compacting the cache, or at the end).
  void release() {
#if defined(GRPO_WITH_CUDA)
    graph_.reset();
#endif
    if (cache_->static_window() != 0) cache_->set_static_window(0);
  }

 private:
  StepResult finish_step() {
    auto result = StepResult{tokens_out_.cpu(), logprobs_out_.cpu(), valid_out_.cpu()};
    cache_->advance_static();
    return result;
  }

#if defined(GRPO_WITH_CUDA)
  // New shapes: run this step eagerly on a side stream (it warms up the kernels and handles for
  // that stream), then capture the same step there; later steps replay it.
  StepResult capture_and_step(const at::Tensor& tokens, const at::Tensor& uniforms, c10::Device device) {
    tokens_in_ = tokens.to(device).reshape({rows_, 1}).clone();
    uniforms_in_ = uniforms.defined() ? uniforms.to(device) : at::Tensor();
    c10::cuda::getCurrentCUDAStream(device.index()).synchronize();  // the side stream sees the inputs
    auto stream = c10::cuda::getStreamFromPool(false, device.index());
    c10::cuda::CUDAStreamGuard guard(stream);
    run();
    stream.synchronize();
    auto result = finish_step();
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    // The capture records the step without executing it (the state stays as it is).
    if (pool_.first == 0 && pool_.second == 0) pool_ = at::cuda::graph_pool_handle();
    try {
      graph->capture_begin(pool_);
      try {
        run();
      } catch (...) {
        try {
          graph->capture_end();
        } catch (...) {
        }
        throw;
      }
      graph->capture_end();
      graph_ = std::move(graph);
    } catch (const std::exception& e) {
      // A step that cannot be captured still runs eagerly: correct, only slower.
      failed_ = true;
      report(reporter_, std::string("grpo::generate: CUDA graph capture failed (") + e.what() +
                                  "); decoding without CUDA graphs");
    }
    stream.synchronize();
    return result;
  }
#endif

  // The step: forward of tokens_in_ through the static cache, sampling into the output buffers,
  // and the sampled tokens fed back as the next input.
  void run() {
    const auto hidden = (*model_)->forward(tokens_in_, {}, cache_).select(1, 0);
    // Always the full sort: the candidate path decides on the host, which a captured graph can
    // neither do nor replay.
    const auto sampled = sample_tokens((*model_)->logits(hidden), uniforms_in_, *options_, std::span<const std::int64_t>{});
    if (!tokens_out_.defined() || tokens_out_.size(0) != rows_) {
      tokens_out_ = at::empty_like(sampled.tokens);
      logprobs_out_ = at::empty_like(sampled.logprobs);
      valid_out_ = at::empty_like(sampled.valid);
    }
    tokens_out_.copy_(sampled.tokens);
    logprobs_out_.copy_(sampled.logprobs);
    valid_out_.copy_(sampled.valid);
    tokens_in_.copy_(sampled.tokens.unsqueeze(1));
  }

  Qwen2Model* model_;
  KVCache* cache_;
  const SamplingOptions* options_;
  bool capture_;
  Reporter* reporter_;
  bool failed_ = false;
  std::int64_t rows_ = 0;
  at::Tensor tokens_in_, uniforms_in_, tokens_out_, logprobs_out_, valid_out_;
#if defined(GRPO_WITH_CUDA)
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
  at::cuda::MempoolId_t pool_{0, 0};
#endif
};

/// One wave of grpo::generate: every request decoded together (checked already, see generate()).
inline std::vector<Generation> qwen2_decode(Qwen2Model& model, std::span<const std::vector<std::int64_t>> prompts,
                                            const SamplingOptions& options, const Tokenizer* tokenizer,
                                            const DecodeOptions& decode) {
  const auto batch = static_cast<std::int64_t>(prompts.size());
  std::vector<Generation> results(prompts.size());
  std::int64_t width = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    results[i].prompt_ids = prompts[i];
    width = std::max<std::int64_t>(width, static_cast<std::int64_t>(prompts[i].size()));
  }
  if (batch == 0 || options.max_new_tokens == 0) return results;

  c10::InferenceMode inference;  // no autograd bookkeeping at all: fewer host cycles per kernel
  const auto device = model->output_weight().device();
  // Left padding with id 0 (masked out; any id would do).
  auto ids = at::zeros({batch, width}, at::kLong);
  auto mask = at::zeros({batch, width}, at::kLong);
  for (std::int64_t i = 0; i < batch; ++i) {
    const auto& prompt = prompts[static_cast<std::size_t>(i)];
    const auto length = static_cast<std::int64_t>(prompt.size());
    ids[i].narrow(0, width - length, length).copy_(at::from_blob(const_cast<std::int64_t*>(prompt.data()), {length}, at::kLong));
    mask[i].narrow(0, width - length, length).fill_(1);
  }

  std::vector<std::mt19937_64> engines;
  std::vector<detail::CompletionText> texts;
  engines.reserve(prompts.size());
  texts.reserve(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    engines.emplace_back(detail::request_seed(options, i));
    texts.emplace_back(tokenizer, options);
  }

  const auto capacity = width + options.max_new_tokens;
  auto cache = model->make_cache(batch, capacity);
  // rows[r]: the request in cache row r; running[r]: that request is not finished
  std::vector<std::int64_t> rows(prompts.size());
  for (std::int64_t i = 0; i < batch; ++i) rows[static_cast<std::size_t>(i)] = i;
  std::vector<bool> running(prompts.size(), true);

#if defined(GRPO_WITH_CUDA)
  // Not under tensor parallelism: the sampler's logits are gathered over the group each step.
  const bool graphs = decode.cuda_graphs && device.is_cuda() && !model->tensor_parallel().active();
#else
  const bool graphs = false;
#endif
  // Static-window steps: always under CUDA graphs, on request elsewhere (tests of that path).
  bool static_steps = graphs || decode.static_window_steps;
  std::optional<detail::StaticDecodeStep> static_step;
  if (static_steps) static_step.emplace(model, cache, options, graphs, decode.reporter);
  std::int64_t window = 0;  // the static window

  // Prefill, and the first token from the prompts' last position. Requests with the same prompt
  // share one prefill: the distinct prompts fill the first U rows, then every request's row is
  // copied from its prompt's.
  at::Tensor hidden;  // [B, H]
  const auto groups = decode.share_prompt_prefill ? detail::group_identical_prompts(prompts) : detail::PromptGroups{};
  if (decode.share_prompt_prefill && static_cast<std::int64_t>(groups.first.size()) < batch) {
    const auto distinct = static_cast<std::int64_t>(groups.first.size());
    const auto first = at::from_blob(const_cast<std::int64_t*>(groups.first.data()), {distinct}, at::kLong).clone();
    const auto source = at::from_blob(const_cast<std::int64_t*>(groups.source.data()), {batch}, at::kLong).clone();
    cache.reset(distinct);
    hidden = model->forward(ids.index_select(0, first).to(device), mask.index_select(0, first).to(device), &cache)
                 .select(1, width - 1);  // [U, H]
    cache.copy_rows(source);
    hidden = hidden.index_select(0, source.to(device));
  } else {
    hidden = model->forward(ids.to(device), mask.to(device), &cache).select(1, width - 1);
  }
  at::Tensor next;  // [B] host: the tokens to feed next
  for (std::int64_t step = 0; step < options.max_new_tokens; ++step) {
    const auto cache_rows = static_cast<std::int64_t>(rows.size());
    at::Tensor uniforms;
    if (!options.greedy) {
      std::vector<double> u(rows.size(), 0.5);  // finished rows (static batches) draw nothing
      for (std::size_t r = 0; r < rows.size(); ++r) {
        if (running[r]) u[r] = detail::uniform_from(engines[static_cast<std::size_t>(rows[r])]);
      }
      uniforms = at::from_blob(u.data(), {cache_rows}, at::kDouble).clone();
    }
    detail::StepResult sampled;
    if (step == 0 || !static_steps) {
      if (step > 0) hidden = model->forward(next.to(device).unsqueeze(1), {}, &cache).select(1, 0);
      sampled = detail::to_host(sample_tokens(model->logits(hidden), uniforms, options));
    } else {
      if (cache.length() + 1 > window) {
        const auto quantum = decode.graph_window;
        window = std::min(capacity, std::max(2 * window, (cache.length() + 1 + quantum - 1) / quantum * quantum));
      }
      sampled = static_step->step(next, uniforms, window);
      if (static_step->failed()) {  // this step ran eagerly; the next ones will too
        static_step->release();
        static_steps = false;
      }
    }
    const auto* token_data = sampled.tokens.data_ptr<std::int64_t>();
    const auto* logprob_data = sampled.logprobs.data_ptr<float>();
    const auto* valid_data = sampled.valid.data_ptr<bool>();

    std::int64_t still_running = 0;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      if (!running[r]) continue;
      const auto request = static_cast<std::size_t>(rows[r]);
      if (!valid_data[r]) {
        throw Error(fmt::format("generate: request {}, new token {}: the model's next-token logits have no finite "
                                "probability (NaN or infinite); check the weights and the dtype (float16 overflows "
                                "where bfloat16 does not)",
                                request, step));
      }
      if (detail::append_token(results[request], texts[request], token_data[r], logprob_data[r], step, options)) {
        running[r] = false;
      } else {
        ++still_running;
      }
    }
    if (still_running == 0) break;
    next = sampled.tokens;
    // Drop finished rows from the cache: at once when stepping eagerly; in a static (graphed)
    // batch only once half of it has finished (each new batch size costs a capture).
    const bool compact = static_steps ? 2 * still_running <= cache_rows : still_running < cache_rows;
    if (compact) {
      if (static_step) static_step->release();
      std::vector<std::int64_t> keep, kept_rows;
      for (std::size_t r = 0; r < rows.size(); ++r) {
        if (!running[r]) continue;
        keep.push_back(static_cast<std::int64_t>(r));
        kept_rows.push_back(rows[r]);
      }
      const auto kept = at::from_blob(keep.data(), {static_cast<std::int64_t>(keep.size())}, at::kLong).clone();
      cache.keep_rows(kept);
      next = next.index_select(0, kept);
      rows = std::move(kept_rows);
      running.assign(rows.size(), true);
      window = 0;
    }
  }
  if (static_step) static_step->release();
  return results;
}

}  // namespace detail

/// Generates one completion per prompt (token ids; grpo/sampling/generate.hpp gives the
/// semantics). `tokenizer` decodes the text and matches stop strings; without one, text stays
/// empty and stop_strings must be empty. Runs without gradients, in the model's device and dtype.
/// Throws grpo::Error for bad options, an empty prompt or a token id outside the vocabulary
/// (before decoding anything), and for non-finite logits.
inline std::vector<Generation> generate(Qwen2Model& model, std::span<const std::vector<std::int64_t>> prompts,
                                        const SamplingOptions& options, const Tokenizer* tokenizer = nullptr,
                                        const DecodeOptions& decode = {}) {
  detail::validate_requests(prompts.size(), options, tokenizer);
  if (decode.graph_window <= 0) {
    throw Error(fmt::format("DecodeOptions.graph_window: expected > 0, found {}", decode.graph_window));
  }
  detail::validate_prompt_ids(prompts, model->config().vocab_size);
  return detail::generate_in_waves(prompts, options,
                                   [&](std::span<const std::vector<std::int64_t>> wave, const SamplingOptions& wave_options) {
                                     return detail::qwen2_decode(model, wave, wave_options, tokenizer, decode);
                                   });
}

}  // namespace grpo
