// The sampler against hand-derived distributions and against transformers' logits warpers
// (temperature, top-k, top-p; tests/python/fixtures/qwen2.py wrote their log-probs).
#include <catch2/catch.hpp>

#include <ATen/Functions.h>

#include <grpo/io/safetensors.hpp>
#include <grpo/sampling/sampler.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

// logits = log p for p = [0.5, 0.3, 0.2]: softmax gives p back exactly up to rounding.
at::Tensor three_token_logits() {
  return at::log(at::tensor(std::vector<float>{0.5f, 0.3f, 0.2f})).unsqueeze(0);
}

at::Tensor uniform(double u) { return at::tensor(std::vector<double>{u}); }

std::int64_t token_for(double u, const grpo::SamplingOptions& options) {
  return grpo::sample_tokens(three_token_logits(), uniform(u), options).tokens.item<std::int64_t>();
}

double logprob_for(double u, const grpo::SamplingOptions& options) {
  return grpo::sample_tokens(three_token_logits(), uniform(u), options).logprobs.item<double>();
}

}  // namespace

TEST_CASE("inversion sampling picks the token whose cumulative probability passes u", "[sampling]") {
  // p = [0.5, 0.3, 0.2], cumulative [0.5, 0.8, 1.0].
  const grpo::SamplingOptions plain{};
  CHECK(token_for(0.0, plain) == 0);
  CHECK(token_for(0.4, plain) == 0);
  CHECK(token_for(0.6, plain) == 1);
  CHECK(token_for(0.85, plain) == 2);
  CHECK(token_for(std::nextafter(1.0, 0.0), plain) == 2);
  CHECK(logprob_for(0.6, plain) == Approx(std::log(0.3)).margin(1e-6));
}

TEST_CASE("top-k and top-p renormalise over the kept tokens", "[sampling]") {
  SECTION("top-k 2 keeps [0.5, 0.3] -> [0.625, 0.375]") {
    const grpo::SamplingOptions options{.top_k = 2};
    CHECK(token_for(0.6, options) == 0);
    CHECK(token_for(0.7, options) == 1);
    CHECK(token_for(0.99, options) == 1);
    CHECK(logprob_for(0.7, options) == Approx(std::log(0.375)).margin(1e-6));
  }
  SECTION("top-p 0.6: ascending cumulative [0.2, 0.5, 1.0], drop those <= 0.4: token 2") {
    const grpo::SamplingOptions options{.top_p = 0.6};
    CHECK(token_for(0.99, options) == 1);
    CHECK(logprob_for(0.0, options) == Approx(std::log(0.625)).margin(1e-6));
  }
  SECTION("top-p 0.45: drop those <= 0.55: tokens 2 and 1; the top token always stays") {
    const grpo::SamplingOptions options{.top_p = 0.45};
    CHECK(token_for(0.99, options) == 0);
    CHECK(logprob_for(0.99, options) == Approx(0.0).margin(1e-6));
  }
  SECTION("temperature 2: p^(1/2) renormalised") {
    const grpo::SamplingOptions options{.temperature = 2.0};
    const double z = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.2);
    CHECK(logprob_for(0.99, options) == Approx(std::log(std::sqrt(0.2) / z)).margin(1e-6));
    // cumulative [0.4058, 0.7202, 1]: u = 0.5 -> token 1
    CHECK(token_for(0.5, options) == 1);
  }
}

TEST_CASE("greedy takes the first maximum and reports the model's log-prob", "[sampling]") {
  const auto logits = at::tensor(std::vector<float>{1.0f, 3.0f, 3.0f, -2.0f}).unsqueeze(0);
  const auto result = grpo::sample_tokens(logits, {}, {.temperature = 0.1, .greedy = true});
  CHECK(result.tokens.item<std::int64_t>() == 1);
  const double z = std::exp(1.0) + 2 * std::exp(3.0) + std::exp(-2.0);
  CHECK(result.logprobs.item<double>() == Approx(3.0 - std::log(z)).margin(1e-6));
}

TEST_CASE("the sampling distribution equals transformers' warpers", "[sampling]") {
  const auto reference = grpo::io::SafetensorsCheckpoint::open(
      std::filesystem::path(GRPO_FIXTURE_DIR) / "qwen2" / "sampling.safetensors");
  const auto logits = reference.load("logits");  // [5, 50]; row 4 has ties
  struct Case {
    const char* name;
    grpo::SamplingOptions options;
    bool tie_row;
  };
  const std::vector<Case> cases = {
      {"t07_k5", {.temperature = 0.7, .top_k = 5}, true},
      {"p09", {.top_p = 0.9}, false},
      {"t13_k10_p08", {.temperature = 1.3, .top_p = 0.8, .top_k = 10}, false},
      {"t05", {.temperature = 0.5}, true},
      {"p03", {.top_p = 0.3}, false},
      {"k1", {.top_k = 1}, true},
  };
  std::mt19937_64 draws(7);
  for (const auto& c : cases) {
    INFO(c.name);
    const auto rows = c.tie_row ? 5 : 4;
    const auto x = logits.narrow(0, 0, rows);
    const auto expected = reference.load(std::string("logprobs_") + c.name).narrow(0, 0, rows);
    const auto ours = grpo::sampling_logprobs(x, c.options);
    const auto kept = expected.isfinite();
    CHECK(ours.isfinite().equal(kept));
    CHECK((ours - expected).masked_select(kept).abs().max().item<double>() < 1e-5);
    // Every sampled token is one transformers keeps, with transformers' log-prob.
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<double> u(static_cast<std::size_t>(rows));
      for (auto& value : u) value = std::ldexp(static_cast<double>(draws() >> 11), -53);
      const auto sampled = grpo::sample_tokens(x, at::tensor(u), c.options);
      const auto at_token = expected.gather(1, sampled.tokens.unsqueeze(1)).squeeze(1);
      CHECK(at_token.isfinite().all().item<bool>());
      CHECK((sampled.logprobs - at_token).abs().max().item<double>() < 1e-5);
      CHECK(sampled.valid.all().item<bool>());
    }
  }
}

TEST_CASE("sampled frequencies follow the distribution", "[sampling]") {
  // p = softmax([0, 1, 2, -1]) = [0.0871, 0.2369, 0.6439, 0.0321]; 20,000 draws from a fixed
  // seed: each frequency within 0.01 (>4 standard deviations of a binomial proportion).
  const auto logits = at::tensor(std::vector<float>{0.0f, 1.0f, 2.0f, -1.0f}).unsqueeze(0).expand({20000, 4});
  std::mt19937_64 draws(123);
  std::vector<double> u(20000);
  for (auto& value : u) value = std::ldexp(static_cast<double>(draws() >> 11), -53);
  const auto tokens = grpo::sample_tokens(logits.contiguous(), at::tensor(u), {}).tokens;
  const auto counts = at::bincount(tokens, {}, 4).to(at::kDouble) / 20000.0;
  const double z = 1 + std::exp(1.0) + std::exp(2.0) + std::exp(-1.0);
  const std::vector<double> p = {1 / z, std::exp(1.0) / z, std::exp(2.0) / z, std::exp(-1.0) / z};
  for (int i = 0; i < 4; ++i) CHECK(counts[i].item<double>() == Approx(p[static_cast<std::size_t>(i)]).margin(0.01));
}

TEST_CASE("bad logits and bad options are reported, not sampled from", "[sampling]") {
  const auto nan = std::numeric_limits<float>::quiet_NaN();
  const auto logits = at::tensor(std::vector<float>{0.0f, nan, 1.0f, 0.0f, 1.0f, 2.0f}).view({2, 3});
  const auto result = grpo::sample_tokens(logits, at::tensor(std::vector<double>{0.5, 0.5}), {});
  CHECK_FALSE(result.valid[0].item<bool>());
  CHECK(result.valid[1].item<bool>());
  CHECK_THROWS_AS(grpo::sample_tokens(logits, at::tensor(std::vector<double>{0.5}), {}), grpo::Error);
  CHECK_THROWS_AS(grpo::validate_sampling_options({.temperature = 0.0}), grpo::Error);
  CHECK_NOTHROW(grpo::validate_sampling_options({.temperature = 0.0, .greedy = true}));
  CHECK_THROWS_AS(grpo::validate_sampling_options({.top_p = 0.0}), grpo::Error);
  CHECK_THROWS_AS(grpo::validate_sampling_options({.top_p = 1.5}), grpo::Error);
  CHECK_THROWS_AS(grpo::validate_sampling_options({.top_k = -1}), grpo::Error);
  CHECK_THROWS_AS(grpo::validate_sampling_options({.max_new_tokens = -1}), grpo::Error);
  CHECK_THROWS_AS(grpo::validate_sampling_options({.stop_strings = {""}}), grpo::Error);
  CHECK_THROWS_AS(grpo::validate_sampling_options({.temperature = std::nan("")}), grpo::Error);
}

namespace {
// Token-order log-probs of a FilteredLogits (-inf for removed tokens).
at::Tensor token_order_logprobs(const grpo::detail::FilteredLogits& f, std::int64_t vocab) {
  const auto logp = at::log_softmax(f.logits, -1);
  if (!f.order.defined()) return logp;
  return at::full({f.logits.size(0), vocab}, -std::numeric_limits<float>::infinity()).scatter_(-1, f.order, logp);
}

// Inversion sampling over a FilteredLogits, as sample_tokens does it.
at::Tensor invert(const grpo::detail::FilteredLogits& f, const at::Tensor& u) {
  const auto cdf = at::cumsum(at::log_softmax(f.logits, -1).exp().to(at::kDouble), -1);
  const auto width = cdf.size(-1);
  const auto target = (u.clamp(0.0, 1.0 - std::ldexp(1.0, -40)) * cdf.select(-1, width - 1)).unsqueeze(-1);
  const auto position = at::searchsorted(cdf, target, false, true).clamp_max(width - 1);
  return f.order.gather(-1, position).squeeze(-1);
}
}  // namespace

TEST_CASE("filtering over the most likely candidates equals the full sort, or declines", "[sampling]") {
  // Rows from flat to peaked over a 20,000-token vocabulary; the last has a run of tied maxima.
  at::manual_seed(3);
  const std::int64_t vocab = 20000;
  auto logits = at::randn({6, vocab});
  for (int r = 0; r < 6; ++r) logits[r].mul_(1.0 + 2.0 * r);
  logits[5].narrow(0, 100, 40).fill_(logits[5].max().item<float>());
  const std::vector<grpo::SamplingOptions> cases = {
      {.top_p = 0.9}, {.temperature = 0.7, .top_p = 0.5}, {.top_k = 50}, {.temperature = 1.3, .top_p = 0.8, .top_k = 40},
      {.top_p = 0.3}, {.top_k = 45}};
  std::mt19937_64 draws(5);
  const std::vector<std::int64_t> none;
  // All rows (the flat ones make the batch sort), then the peaked rows (the candidates suffice).
  for (const auto& x : {logits, logits.narrow(0, 3, 3).contiguous()}) {
    for (std::size_t c = 0; c < cases.size(); ++c) {
      const auto& options = cases[c];
      const auto full = grpo::detail::filter_logits(x, options, none);  // always the whole sort
      const auto expected = token_order_logprobs(full, vocab);
      for (const std::int64_t k : {8, 64, 1024}) {
        INFO("rows " << x.size(0) << ", case " << c << ", candidates " << k);
        const std::vector<std::int64_t> candidates{k};
        const auto fast = grpo::detail::filter_logits(x, options, candidates);
        const auto ours = token_order_logprobs(fast, vocab);
        const auto kept = expected.isfinite();
        CHECK(ours.isfinite().equal(kept));
        CHECK((ours - expected).masked_select(kept).abs().max().item<double>() < 1e-5);
        for (int trial = 0; trial < 20; ++trial) {  // the same token for the same uniform number
          std::vector<double> u(static_cast<std::size_t>(x.size(0)));
          for (auto& value : u) value = std::ldexp(static_cast<double>(draws() >> 11), -53);
          CHECK(invert(fast, at::tensor(u)).equal(invert(full, at::tensor(u))));
        }
      }
    }
  }
  // The public entry points (default candidates) against the same calls that always sort, on
  // peaked rows plus a row with -inf entries and, separately, a NaN row.
  auto mixed = logits.narrow(0, 2, 4).clone();
  mixed[1].narrow(0, 0, 5000).fill_(-std::numeric_limits<float>::infinity());
  for (const auto& options : cases) {
    const auto expected = grpo::sampling_logprobs(mixed, options, none);
    const auto ours = grpo::sampling_logprobs(mixed, options);
    CHECK(ours.sizes() == expected.sizes());
    CHECK(ours.isfinite().equal(expected.isfinite()));
    CHECK((ours - expected).masked_select(expected.isfinite()).abs().max().item<double>() < 1e-5);
    std::vector<double> u(4);
    for (auto& value : u) value = std::ldexp(static_cast<double>(draws() >> 11), -53);
    const auto a = grpo::sample_tokens(mixed, at::tensor(u), options);
    const auto b = grpo::sample_tokens(mixed, at::tensor(u), options, none);
    CHECK(a.tokens.equal(b.tokens));
    CHECK((a.logprobs - b.logprobs).abs().max().item<double>() < 1e-5);
    CHECK(a.valid.all().item<bool>());
  }
  auto with_nan = logits.narrow(0, 3, 2).clone();
  with_nan[1][7] = std::numeric_limits<float>::quiet_NaN();
  const auto nan_rows = grpo::sample_tokens(with_nan, at::tensor(std::vector<double>{0.5, 0.5}), {.top_p = 0.9});
  CHECK(nan_rows.valid[0].item<bool>());
  CHECK_FALSE(nan_rows.valid[1].item<bool>());
  // top_k equal to the candidate count: the k-th value must lie strictly above the next one.
  const auto at_k = grpo::detail::filter_logits_candidates(logits.narrow(0, 3, 1).contiguous(), {.top_k = 64}, 64);
  REQUIRE(at_k.has_value());
  CHECK(at_k->logits.isfinite().sum().item<std::int64_t>() == 64);
  // The fast path is taken for peaked rows and declined where it cannot be exact.
  const auto peaked = logits.narrow(0, 3, 1).contiguous();
  CHECK(grpo::detail::filter_logits_candidates(peaked, {.top_p = 0.9}, 64).has_value());
  CHECK(grpo::detail::filter_logits_candidates(peaked, {.top_k = 50}, 64).has_value());
  CHECK_FALSE(grpo::detail::filter_logits_candidates(logits.narrow(0, 0, 1).contiguous(), {.top_p = 0.9}, 64).has_value());
  CHECK_FALSE(grpo::detail::filter_logits_candidates(logits.narrow(0, 5, 1).contiguous(), {.top_k = 10}, 20).has_value());
  CHECK_FALSE(grpo::detail::filter_logits_candidates(peaked, {.top_k = 100}, 64).has_value());
}
