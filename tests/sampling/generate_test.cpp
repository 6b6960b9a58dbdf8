// Batched generation and the Qwen2 policy: greedy ids against transformers' generate(), stop
// tokens and stop strings against the tokenizer's decode, seeds, and teacher-forced log-probs
// against transformers (tests/python/fixtures/qwen2.py made the references).
#include <catch2/catch.hpp>

#include <ATen/Functions.h>
#include <torch/csrc/autograd/autograd.h>

#include <grpo/io/safetensors.hpp>
#include <grpo/model/qwen2_generate.hpp>
#include <grpo/model/qwen2_policy.hpp>

#include "../qwen2_fixtures.hpp"

#include <filesystem>
#include <string>
#include <vector>

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;

namespace {

const fs::path& fixtures = grpo_test::qwen2_fixtures;
using grpo_test::expected;
using grpo_test::prompts_of;
const std::vector<std::string> causal_models = {"tied_gqa2", "untied_mha", "gqa4_sharded", "mqa"};

std::vector<std::int64_t> to_vector(const at::Tensor& t) {
  const auto c = t.to(at::kLong).contiguous();
  return {c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel()};
}

grpo::Qwen2Policy& tiny_policy() {  // vocabulary 151,936 with the real Qwen2.5 tokenizer
  static grpo::Qwen2Policy policy = grpo::Qwen2Policy::load(fixtures / "cli_tiny");
  return policy;
}

}  // namespace

TEST_CASE("greedy generation of 64 tokens gives transformers' ids", "[sampling]") {
  for (const auto& name : causal_models) {
    INFO(name);
    auto model = grpo::load_qwen2(fixtures / name);
    model->eval();
    const auto prompts = prompts_of(name);
    const auto generations = grpo::generate(model, prompts, {.max_new_tokens = 64, .greedy = true});
    const auto reference = expected(name, "gen_greedy");
    REQUIRE(generations.size() == prompts.size());
    for (std::size_t i = 0; i < generations.size(); ++i) {
      CHECK(generations[i].ids == to_vector(reference[static_cast<std::int64_t>(i)]));
      CHECK(generations[i].prompt_ids == prompts[i]);
      CHECK(generations[i].finish_reason == grpo::FinishReason::length);
      CHECK(generations[i].logprobs.size() == 64);
    }
  }
}

TEST_CASE("requests with the same prompt share one prefill and sample what each samples alone", "[sampling]") {
  // A GRPO batch: G = 3 samples of each of 3 prompts (of different lengths), interleaved.
  const auto distinct = prompts_of("tied_gqa2");
  std::vector<std::vector<std::int64_t>> prompts;
  std::vector<std::uint64_t> seeds;
  for (int g = 0; g < 3; ++g)
    for (const auto& p : distinct) {
      prompts.push_back(p);
      seeds.push_back(100 + seeds.size());
    }
  const auto groups = grpo::detail::group_identical_prompts(prompts);
  CHECK(groups.first == std::vector<std::int64_t>{0, 1, 2});
  CHECK(groups.source == std::vector<std::int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2});

  auto model = grpo::load_qwen2(fixtures / "tied_gqa2");
  model->eval();
  // Greedy: every copy of a prompt gives transformers' tokens for it.
  const auto greedy = grpo::generate(model, prompts, {.max_new_tokens = 64, .greedy = true});
  const auto reference = expected("tied_gqa2", "gen_greedy");
  for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(greedy[i].ids == to_vector(reference[static_cast<std::int64_t>(i % 3)]));

  // Sampled: each request's own seed; the same tokens as without sharing and as the request alone.
  const grpo::SamplingOptions options{.temperature = 1.0, .top_p = 0.95, .max_new_tokens = 24, .seeds = seeds};
  const auto shared = grpo::generate(model, prompts, options);
  const auto unshared = grpo::generate(model, prompts, options, nullptr, {.share_prompt_prefill = false});
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    INFO("request " << i);
    CHECK(shared[i].ids == unshared[i].ids);
    REQUIRE(shared[i].logprobs.size() == unshared[i].logprobs.size());
    for (std::size_t k = 0; k < shared[i].logprobs.size(); ++k)
      CHECK(shared[i].logprobs[k] == Approx(unshared[i].logprobs[k]).margin(1e-5));
    const std::vector<std::vector<std::int64_t>> alone = {prompts[i]};
    auto one = options;
    one.seeds = {seeds[i]};
    CHECK(grpo::generate(model, alone, one)[0].ids == shared[i].ids);
  }
  CHECK(shared[0].ids != shared[3].ids);  // the copies of a prompt draw their own samples
}

TEST_CASE("a KV cache's copied rows decode as rows prefilled on their own", "[sampling]") {
  // Two prompts prefilled, then rows [1, 0, 1] copied from them: one decode step gives the
  // hidden states of a cache prefilled with those three prompts directly.
  auto model = grpo::load_qwen2(fixtures / "tied_gqa2");
  model->eval();
  at::NoGradGuard no_grad;
  const auto ids = expected("tied_gqa2", "gen_prompt_ids");
  const auto mask = expected("tied_gqa2", "gen_prompt_mask");
  const auto two = at::arange(2, at::kLong);
  const auto order = at::tensor(std::vector<std::int64_t>{1, 0, 1}, at::kLong);
  auto copied = model->model->make_cache(3, ids.size(1) + 4);
  copied.reset(2);
  (void)model->forward(ids.index_select(0, two), mask.index_select(0, two), &copied);
  copied.copy_rows(order);
  REQUIRE(copied.batch_size() == 3);
  auto direct = model->model->make_cache(3, ids.size(1) + 4);
  (void)model->forward(ids.index_select(0, order), mask.index_select(0, order), &direct);
  const auto next = at::tensor(std::vector<std::int64_t>{5, 7, 9}, at::kLong).unsqueeze(1);
  const auto a = model->forward(next, {}, &copied);
  const auto b = model->forward(next, {}, &direct);
  CHECK((a - b).abs().max().item<double>() < 1e-6);
  REQUIRE_THROWS_WITH(copied.copy_rows(at::tensor(std::vector<std::int64_t>{0, 3}, at::kLong)),
                      Catch::Matchers::Contains("KVCache::copy_rows: row indices must lie in [0, 3)"));
  REQUIRE_THROWS_WITH(copied.copy_rows(at::zeros({4}, at::kLong)),
                      Catch::Matchers::Contains("KVCache::copy_rows: expected 1 to 3 row indices"));
}

TEST_CASE("rows that reach the EOS stop there while the others go on", "[sampling]") {
  for (const auto& name : causal_models) {
    INFO(name);
    auto model = grpo::load_qwen2(fixtures / name);
    model->eval();
    const auto eos = expected(name, "gen_eos_id").item<std::int64_t>();
    const auto reference = expected(name, "gen_eos_greedy");
    const auto lengths = expected(name, "gen_eos_lengths");
    const auto generations =
        grpo::generate(model, prompts_of(name), {.max_new_tokens = 64, .stop_token_ids = {eos}, .greedy = true});
    for (std::size_t i = 0; i < generations.size(); ++i) {
      const auto row = static_cast<std::int64_t>(i);
      const auto length = lengths[row].item<std::int64_t>();
      CHECK(generations[i].ids == to_vector(reference[row].narrow(0, 0, length)));
      const bool stopped = generations[i].ids.back() == eos;
      CHECK(generations[i].finish_reason == (stopped ? grpo::FinishReason::stop : grpo::FinishReason::length));
    }
  }
}

TEST_CASE("static-window decode steps (what CUDA graphs replay) give the tokens of plain steps", "[sampling]") {
  auto model = grpo::load_qwen2(fixtures / "gqa4_sharded");
  model->eval();
  const auto prompts = prompts_of("gqa4_sharded");
  // Windows of 4 slots: the window grows (and the step is rebuilt) several times in 40 tokens.
  const grpo::DecodeOptions static_steps{.graph_window = 4, .static_window_steps = true};
  for (grpo::SamplingOptions options : {grpo::SamplingOptions{.max_new_tokens = 40, .greedy = true},
                                        grpo::SamplingOptions{.top_p = 0.9, .max_new_tokens = 40, .seed = 9}}) {
    const auto free_run = grpo::generate(model, prompts, options);
    // Row 0 stops at its 5th token and row 2 at its 12th: the static batch of 3 keeps computing
    // finished rows until two have finished, then shrinks to one row.
    options.stop_token_ids = {free_run[0].ids[4], free_run[2].ids[11]};
    const auto plain = grpo::generate(model, prompts, options);
    const auto windowed = grpo::generate(model, prompts, options, nullptr, static_steps);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      INFO("request " << i);
      CHECK(windowed[i].ids == plain[i].ids);
      CHECK(windowed[i].finish_reason == plain[i].finish_reason);
      REQUIRE(windowed[i].logprobs.size() == plain[i].logprobs.size());
      for (std::size_t t = 0; t < plain[i].logprobs.size(); ++t) {
        CHECK(windowed[i].logprobs[t] == Approx(plain[i].logprobs[t]).margin(1e-4));
      }
    }
    CHECK(plain[0].finish_reason == grpo::FinishReason::stop);
  }
}

TEST_CASE("a request's sample depends on its seed, not on the batch around it", "[sampling]") {
  auto model = grpo::load_qwen2(fixtures / "tied_gqa2");
  model->eval();
  const auto prompts = prompts_of("tied_gqa2");
  const grpo::SamplingOptions options{.temperature = 1.0, .top_p = 0.95, .max_new_tokens = 24, .seeds = {5, 6, 7}};
  const auto batch = grpo::generate(model, prompts, options);
  const auto again = grpo::generate(model, prompts, options);
  for (std::size_t i = 0; i < batch.size(); ++i) CHECK(batch[i].ids == again[i].ids);

  // Request 1 alone with its seed, and placed first in another batch, samples the same tokens.
  const std::vector<std::vector<std::int64_t>> alone = {prompts[1]};
  auto single = options;
  single.seeds = {6};
  CHECK(grpo::generate(model, alone, single)[0].ids == batch[1].ids);
  const std::vector<std::vector<std::int64_t>> reordered = {prompts[1], prompts[2]};
  auto pair = options;
  pair.seeds = {6, 7};
  const auto swapped = grpo::generate(model, reordered, pair);
  CHECK(swapped[0].ids == batch[1].ids);
  CHECK(swapped[1].ids == batch[2].ids);

  // Without explicit seeds, request i uses seed + i.
  const auto implicit = grpo::generate(model, prompts, {.top_p = 0.95, .max_new_tokens = 24, .seed = 5});
  for (std::size_t i = 0; i < batch.size(); ++i) CHECK(implicit[i].ids == batch[i].ids);
  auto other = options;
  other.seeds = {50, 60, 70};
  const auto different = grpo::generate(model, prompts, other);
  CHECK(different[0].ids != batch[0].ids);

  // In waves of at most 2 rows (requests 0-1, then 2), explicit or implicit seeds: the same samples.
  for (auto waves : {options, grpo::SamplingOptions{.top_p = 0.95, .max_new_tokens = 24, .seed = 5}}) {
    waves.max_batch_rows = 2;
    const auto in_waves = grpo::generate(model, prompts, waves);
    REQUIRE(in_waves.size() == batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      CHECK(in_waves[i].ids == batch[i].ids);
      CHECK(in_waves[i].prompt_ids == prompts[i]);
    }
  }
}

TEST_CASE("sampled log-probs equal the teacher-forced log-probs of the same tokens", "[sampling]") {
  auto& policy = tiny_policy();
  const std::vector<std::string> prompts = {"The history of", "写一首关于秋天的诗", "x"};
  for (const double temperature : {1.0, 0.7}) {
    INFO("temperature " << temperature);
    const auto generations =
        policy.generate(prompts, {.temperature = temperature, .max_new_tokens = 12, .seed = 3});
    std::vector<std::vector<std::int64_t>> prompt_ids, completion_ids;
    for (const auto& g : generations) {
      prompt_ids.push_back(g.prompt_ids);
      completion_ids.push_back(g.ids);
      CHECK(g.prompt_ids == policy.tokenizer().encode(prompts[prompt_ids.size() - 1]));
    }
    const auto batch = grpo::make_token_batch(prompt_ids, completion_ids);
    at::NoGradGuard no_grad;
    const auto teacher = policy.logprobs(batch, temperature).logprobs;
    for (std::size_t i = 0; i < generations.size(); ++i) {
      const auto start = static_cast<std::int64_t>(prompt_ids[i].size());
      for (std::size_t t = 0; t < generations[i].logprobs.size(); ++t) {
        CHECK(generations[i].logprobs[t] ==
              Approx(teacher[static_cast<std::int64_t>(i)][start + static_cast<std::int64_t>(t)].item<double>()).margin(1e-4));
      }
    }
  }
}

TEST_CASE("teacher-forced log-probs and entropy match transformers", "[sampling]") {
  for (const auto& name : causal_models) {
    INFO(name);
    auto model = grpo::load_qwen2(fixtures / name);
    const grpo::TokenBatch batch{expected(name, "lp_ids"), expected(name, "lp_mask"), expected(name, "lp_completion_mask")};
    for (const auto& [tag, temperature] : std::vector<std::pair<std::string, double>>{{"t1", 1.0}, {"t07", 0.7}}) {
      INFO(tag);
      const auto result = grpo::teacher_forced_logprobs(model, batch, {.chunk_size = 4, .temperature = temperature});
      CHECK((result.logprobs - expected(name, "lp_logprobs_" + tag)).abs().max().item<double>() < 1e-4);
      CHECK((result.entropy - expected(name, "lp_entropy_" + tag)).abs().max().item<double>() < 1e-4);
    }
  }
}

TEST_CASE("gradients flow through the policy's log-probs to every parameter", "[sampling]") {
  auto& policy = tiny_policy();
  const std::vector<std::vector<std::int64_t>> prompts = {{9707, 11, 1879}, {14990}};
  const std::vector<std::vector<std::int64_t>> completions = {{0, 151643}, {220, 17, 18, 19}};
  const auto batch = grpo::make_token_batch(prompts, completions, 151643);
  const auto result = policy.logprobs(batch, 1.0);
  // Only completion positions are scored: [1, 3..4] of row 0 are prompt / padding.
  CHECK(result.logprobs[0][0].item<double>() == 0.0);
  CHECK(result.logprobs[0][1].item<double>() == 0.0);
  CHECK(result.logprobs[0][3].item<double>() < 0.0);
  CHECK(result.logprobs[1][4].item<double>() < 0.0);
  auto parameters = policy.parameters();
  const auto grads = torch::autograd::grad({result.logprobs.sum() + result.entropy.sum()}, parameters);
  for (std::size_t i = 0; i < grads.size(); ++i) {
    INFO(policy.named_parameters()[i].first);
    CHECK(grads[i].isfinite().all().item<bool>());
    CHECK(grads[i].abs().sum().item<double>() > 0.0);
  }
}

TEST_CASE("stop strings cut the text right after the first match", "[sampling]") {
  auto& policy = tiny_policy();
  const std::vector<std::string> prompts = {"Once upon a time"};
  const auto free_run = policy.generate(prompts, {.max_new_tokens = 40, .greedy = true})[0];
  const auto& tokenizer = policy.tokenizer();
  CHECK(free_run.text == tokenizer.decode(free_run.ids, true));
  CHECK(free_run.finish_reason == grpo::FinishReason::length);
  // A stop string spanning several tokens in the middle of the free-running text: the text
  // of tokens 10..14, from its first character boundary to its last.
  const auto before = tokenizer.decode(std::span(free_run.ids).first(10), true);
  const auto upto = tokenizer.decode(std::span(free_run.ids).first(15), true);
  const auto continuation = [](unsigned char byte) { return (byte & 0xC0) == 0x80; };
  std::size_t start = before.size();
  while (start < upto.size() && continuation(static_cast<unsigned char>(upto[start]))) ++start;
  auto stop = upto.substr(start);
  while (!stop.empty() && !grpo::utf8::is_valid(stop)) stop.pop_back();
  REQUIRE(!stop.empty());
  INFO("stop string: " << stop);

  const auto cut = policy.generate(prompts, {.max_new_tokens = 40, .stop_strings = {"never appears \x01", stop}, .greedy = true})[0];
  const auto first = free_run.text.find(stop);
  REQUIRE(first != std::string::npos);
  CHECK(cut.text == free_run.text.substr(0, first + stop.size()));
  CHECK(cut.finish_reason == grpo::FinishReason::stop);
  // The ids end with the token that completed the stop string.
  REQUIRE(cut.ids.size() <= free_run.ids.size());
  CHECK(std::equal(cut.ids.begin(), cut.ids.end(), free_run.ids.begin()));
  CHECK(tokenizer.decode(cut.ids, true).find(stop) != std::string::npos);
  CHECK(tokenizer.decode(std::span(cut.ids).first(cut.ids.size() - 1), true).find(stop) == std::string::npos);
}

TEST_CASE("a stop token ends the completion and stays out of the text", "[sampling]") {
  auto& policy = tiny_policy();
  const std::vector<std::string> prompts = {"Once upon a time", "<|im_start|>user\nHi<|im_end|>\n"};
  const auto free_run = policy.generate(prompts, {.max_new_tokens = 20, .greedy = true});
  const auto stop_id = free_run[0].ids[6];
  const auto stopped = policy.generate(prompts, {.max_new_tokens = 20, .stop_token_ids = {stop_id}, .greedy = true});
  const auto first = std::find(free_run[0].ids.begin(), free_run[0].ids.end(), stop_id) - free_run[0].ids.begin();
  CHECK(stopped[0].ids.size() == static_cast<std::size_t>(first + 1));
  CHECK(stopped[0].finish_reason == grpo::FinishReason::stop);
  CHECK(stopped[0].text == policy.tokenizer().decode(std::span(stopped[0].ids).first(stopped[0].ids.size() - 1), true));
  // The ChatML prompt's special tokens are encoded as special tokens.
  CHECK(stopped[1].prompt_ids.front() == 151644);  // <|im_start|>
}

TEST_CASE("generate validates its inputs", "[sampling]") {
  auto model = grpo::load_qwen2(fixtures / "tied_gqa2");
  const std::vector<std::vector<std::int64_t>> prompts = {{1, 2, 3}};
  CHECK(grpo::generate(model, prompts, {.max_new_tokens = 0})[0].ids.empty());
  CHECK(grpo::generate(model, std::vector<std::vector<std::int64_t>>{}, {}).empty());
  CHECK_THROWS_AS(grpo::generate(model, std::vector<std::vector<std::int64_t>>{{}}, {}), grpo::Error);
  CHECK_THROWS_WITH(grpo::generate(model, std::vector<std::vector<std::int64_t>>{{1, 320}}, {}),
                    Catch::Contains("outside the model's vocabulary"));
  CHECK_THROWS_WITH(grpo::generate(model, prompts, {.stop_strings = {"x"}}), Catch::Contains("tokenizer"));
  CHECK_THROWS_AS(grpo::generate(model, prompts, {.seeds = {1, 2}}), grpo::Error);
  CHECK_THROWS_AS(grpo::generate(model, prompts, {.temperature = -1.0}), grpo::Error);
  CHECK_THROWS_WITH(grpo::generate(model, prompts, {.max_batch_rows = -1}), Catch::Contains("max_batch_rows: expected >= 0"));
  const grpo::TokenBatch bad{at::ones({1, 3}, at::kLong), at::ones({1, 3}, at::kLong), at::ones({1, 3}, at::kLong)};
  CHECK_THROWS_WITH(grpo::teacher_forced_logprobs(model, bad, {}), Catch::Contains("completion_mask[:, 0]"));
}
