// grpo::ClippedSurrogateLoss: hand-computed values and gradients (derivations in comments), every
// branch (clip low/high, clip-higher, dual clip, KL k1/k2/k3, GSPO), micro-batch additivity for
// every aggregation and ratio level, central finite differences in float64, masking, bad input.
#include <grpo/loss/clipped_surrogate.hpp>

#include <ATen/Functions.h>
#include <ATen/TensorOperators.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

// c10/util/Logging.h (pulled in by ATen) replaces Catch's CHECK with a glog-style CHECK(cond)
// that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

using grpo::Aggregation;
using grpo::ClippedSurrogateLoss;
using grpo::KlEstimator;
using grpo::RatioLevel;

at::Tensor dbl(std::vector<double> v, std::vector<std::int64_t> shape) {
  return at::tensor(v, at::kDouble).view(shape);
}

// The hand case: old log-probs all -1, logp = -1 + ln r, so the ratios are r.
//   sequence 0: A = +1, r = (1.1, 1.5, 0.5), all 3 tokens count
//   sequence 1: A = -2, r = (0.7, 1.3, .),  the third token is padding (NaN log-prob)
struct HandCase {
  at::Tensor logprobs, old, adv, mask;
};

HandCase hand_case() {
  const double nan = std::nan("");
  HandCase c;
  c.logprobs = dbl({-1 + std::log(1.1), -1 + std::log(1.5), -1 + std::log(0.5), -1 + std::log(0.7), -1 + std::log(1.3), nan},
                   {2, 3})
                   .requires_grad_(true);
  c.old = dbl({-1, -1, -1, -1, -1, nan}, {2, 3});
  c.adv = dbl({1.0, -2.0}, {2});
  c.mask = dbl({1, 1, 1, 1, 1, 0}, {2, 3});
  return c;
}

grpo::PolicyLossInputs inputs_of(const HandCase& c) {
  return {.logprobs = c.logprobs, .old_logprobs = c.old, .advantages = c.adv, .mask = c.mask};
}

std::vector<double> values(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kDouble).contiguous().view({-1});
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

void check_values(const at::Tensor& t, const std::vector<double>& expected, double margin = 1e-12) {
  const auto got = values(t);
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    CHECK(got[i] == Approx(expected[i]).margin(margin));
  }
}

}  // namespace

TEST_CASE("hand case: per-token clipped losses under all four aggregations", "[clipped_surrogate]") {
  // Per token, pg = max(-A r, -A clip(r, 0.8, 1.2)):
  //   seq 0 (A = 1):  r 1.1 -> max(-1.1, -1.1) = -1.1;  r 1.5 -> max(-1.5, -1.2) = -1.2 (clipped);
  //                   r 0.5 -> max(-0.5, -0.8) = -0.5
  //   seq 1 (A = -2): r 0.7 -> max(1.4, 1.6) = 1.6 (clipped);  r 1.3 -> max(2.6, 2.4) = 2.6
  // Sums: seq 0 -2.8 (3 tokens), seq 1 4.2 (2 tokens), all 1.4.
  struct Expect {
    Aggregation aggregation;
    double loss;
  };
  const grpo::LossNormalizer norm{.tokens = 5, .sequences = 2, .horizon = 4};
  for (const Expect e : {Expect{Aggregation::token_mean, 1.4 / 5},                       // 0.28
                         Expect{Aggregation::seq_mean_token_mean, (-2.8 / 3 + 4.2 / 2) / 2},  // 0.583333
                         Expect{Aggregation::seq_mean_token_sum, 1.4 / 2},                    // 0.7
                         Expect{Aggregation::seq_mean_token_sum_norm, 1.4 / (2 * 4)}}) {      // 0.175
    const HandCase c = hand_case();
    const auto out = ClippedSurrogateLoss{.aggregation = e.aggregation}(inputs_of(c), norm);
    CHECK(out.loss.item<double>() == Approx(e.loss).margin(1e-12));
    out.loss.backward();
    // d pg / d logp = -A r where the unclipped branch is active, 0 where clipped:
    //   seq 0: (-1.1, 0, -0.5), seq 1: (0, 2.6, 0 [padding]); then the aggregation's divisor.
    std::vector<double> g{-1.1, 0, -0.5, 0, 2.6, 0};
    for (std::size_t i = 0; i < 6; ++i) {
      switch (e.aggregation) {
        case Aggregation::token_mean: g[i] /= 5; break;
        case Aggregation::seq_mean_token_mean: g[i] /= (i < 3 ? 3.0 : 2.0) * 2; break;
        case Aggregation::seq_mean_token_sum: g[i] /= 2; break;
        case Aggregation::seq_mean_token_sum_norm: g[i] /= 8; break;
      }
    }
    INFO("aggregation " << static_cast<int>(e.aggregation));
    check_values(c.logprobs.grad(), g);  // padding's NaN never reaches the gradient
    CHECK(out.stats.tokens.item<double>() == 5);
    CHECK(out.stats.clipped_tokens.item<double>() == 2);
    CHECK(out.stats.ratio_max.item<double>() == Approx(1.5));
    // approx_kl = sum 0.5 (ln r)^2 over the 5 counted tokens
    double k2 = 0;
    for (double r : {1.1, 1.5, 0.5, 0.7, 1.3}) k2 += 0.5 * std::log(r) * std::log(r);
    CHECK(out.stats.approx_kl.item<double>() == Approx(k2));
    CHECK(out.stats.ref_kl.item<double>() == 0.0);
  }
}

TEST_CASE("entropy bonus: minus entropy_coef times the entropy, aggregated like the loss", "[clipped_surrogate]") {
  // Entropies of the hand case's counted tokens: seq 0 (1, 2, 3), seq 1 (4, 5), padding NaN.
  // Sums: seq 0 6 (3 tokens), seq 1 9 (2 tokens), all 15; entropy_coef 0.1.
  //   token_mean 15 / 5 = 3; seq_mean_token_mean (6/3 + 9/2) / 2 = 3.25; seq_mean_token_sum 15 / 2
  //   = 7.5; seq_mean_token_sum_norm 15 / 8 = 1.875. The loss drops by 0.1 x that; d loss / d H is
  //   -0.1 x the aggregation's weight of the token; the policy-gradient part is unchanged.
  const grpo::LossNormalizer norm{.tokens = 5, .sequences = 2, .horizon = 4};
  const double nan = std::nan("");
  for (const auto& [aggregation, bonus] : std::vector<std::pair<Aggregation, double>>{
           {Aggregation::token_mean, 3.0}, {Aggregation::seq_mean_token_mean, 3.25},
           {Aggregation::seq_mean_token_sum, 7.5}, {Aggregation::seq_mean_token_sum_norm, 1.875}}) {
    INFO("aggregation " << static_cast<int>(aggregation));
    const HandCase plain = hand_case();
    const auto without = ClippedSurrogateLoss{.aggregation = aggregation}(inputs_of(plain), norm);
    without.loss.backward();
    const HandCase c = hand_case();
    auto in = inputs_of(c);
    in.entropy = dbl({1, 2, 3, 4, 5, nan}, {2, 3}).requires_grad_(true);
    const auto with = ClippedSurrogateLoss{.aggregation = aggregation, .entropy_coef = 0.1}(in, norm);
    CHECK(with.loss.item<double>() == Approx(without.loss.item<double>() - 0.1 * bonus).margin(1e-12));
    with.loss.backward();
    check_values(c.logprobs.grad(), values(plain.logprobs.grad()));
    std::vector<double> g(6, 0.0);
    for (std::size_t i = 0; i < 5; ++i) {
      switch (aggregation) {
        case Aggregation::token_mean: g[i] = -0.1 / 5; break;
        case Aggregation::seq_mean_token_mean: g[i] = -0.1 / ((i < 3 ? 3.0 : 2.0) * 2); break;
        case Aggregation::seq_mean_token_sum: g[i] = -0.1 / 2; break;
        case Aggregation::seq_mean_token_sum_norm: g[i] = -0.1 / 8; break;
      }
    }
    check_values(in.entropy.grad(), g);
  }
  const HandCase c = hand_case();
  CHECK_THROWS_WITH((ClippedSurrogateLoss{.entropy_coef = 0.1}(inputs_of(c), norm)), Catch::Contains("needs entropy [B, T]"));
  CHECK_THROWS_WITH((ClippedSurrogateLoss{.entropy_coef = -1}(inputs_of(c), norm)), Catch::Contains("entropy_coef must be"));
}

TEST_CASE("clip-higher: clip_high = 0.28 keeps r = 1.25 unclipped for A > 0", "[clipped_surrogate]") {
  const auto logprobs = dbl({std::log(1.25)}, {1, 1});
  const auto zero = dbl({0.0}, {1, 1});
  const grpo::PolicyLossInputs in{.logprobs = logprobs, .old_logprobs = zero, .advantages = dbl({1.0}, {1}), .mask = dbl({1}, {1, 1})};
  const grpo::LossNormalizer norm{.tokens = 1};
  // symmetric 0.2: max(-1.25, -1.2) = -1.2, clipped
  const auto sym = ClippedSurrogateLoss{}(in, norm);
  CHECK(sym.loss.item<double>() == Approx(-1.2));
  CHECK(sym.stats.clipped_tokens.item<double>() == 1);
  // clip-higher 0.28: max(-1.25, -1.25) = -1.25, not clipped
  const auto high = ClippedSurrogateLoss{.clip_high = 0.28}(in, norm);
  CHECK(high.loss.item<double>() == Approx(-1.25));
  CHECK(high.stats.clipped_tokens.item<double>() == 0);
  // the low side: A < 0, r = 0.75 with clip_low 0.2: max(0.75, 0.8) = 0.8 clipped; clip_low 0.3: 0.75
  const grpo::PolicyLossInputs low{.logprobs = dbl({std::log(0.75)}, {1, 1}), .old_logprobs = zero,
                                   .advantages = dbl({-1.0}, {1}), .mask = dbl({1}, {1, 1})};
  CHECK(ClippedSurrogateLoss{}(low, norm).loss.item<double>() == Approx(0.8));
  CHECK(ClippedSurrogateLoss{.clip_low = 0.3}(low, norm).loss.item<double>() == Approx(0.75));
}

TEST_CASE("dual clip caps the loss of negative advantages at c |A|", "[clipped_surrogate]") {
  // A = -2, r = 3.5: pg = max(7.0, 2.4) = 7.0; dual clip c = 3: min(7.0, 6.0) = 6.0, gradient 0.
  // A = -2, r = 2.0: pg = max(4.0, 2.4) = 4.0 < 6: unchanged, gradient -A r = 4.0.
  // A = +1, r = 5.0: dual clip does not apply to A > 0: pg = max(-5, -1.2) = -1.2 (regular clip).
  auto logprobs = dbl({std::log(3.5), std::log(2.0), std::log(5.0)}, {3, 1}).requires_grad_(true);
  const grpo::PolicyLossInputs in{.logprobs = logprobs, .old_logprobs = at::zeros({3, 1}, at::kDouble),
                                  .advantages = dbl({-2.0, -2.0, 1.0}, {3}), .mask = at::ones({3, 1}, at::kDouble)};
  const grpo::LossNormalizer norm{.tokens = 1};
  const auto out = ClippedSurrogateLoss{.dual_clip = 3.0, .aggregation = Aggregation::seq_mean_token_sum}(
      in, {.sequences = 1});
  CHECK(out.loss.item<double>() == Approx(6.0 + 4.0 - 1.2));
  out.loss.backward();
  check_values(logprobs.grad(), {0.0, 4.0, 0.0});
  CHECK(out.stats.clipped_tokens.item<double>() == 2);  // the dual-clipped one and the clipped A > 0
  // without dual clip the first token contributes 7.0
  CHECK(ClippedSurrogateLoss{}(in, norm).loss.item<double>() == Approx(7.0 + 4.0 - 1.2));
}

TEST_CASE("KL estimators k1, k2, k3 against their formulas", "[clipped_surrogate]") {
  // d = logp - ref: k1 = d, k2 = d^2 / 2, k3 = exp(-d) - 1 + d (capped at 10).
  // With A = 0 and ratio 1 the policy term is 0, so loss = beta * sum kl / N_tok.
  const std::vector<double> d{-0.7, -0.1, 0.0, 0.4, 1.3};
  auto logprobs = dbl({-1.0, -2.0, -0.5, -3.0, -1.5}, {1, 5}).requires_grad_(true);
  const auto ref = logprobs.detach() - dbl(d, {1, 5});
  const grpo::PolicyLossInputs in{.logprobs = logprobs, .old_logprobs = logprobs.detach(), .ref_logprobs = ref,
                                  .advantages = dbl({0.0}, {1}), .mask = at::ones({1, 5}, at::kDouble)};
  const grpo::LossNormalizer norm{.tokens = 5};
  struct Formula {
    KlEstimator estimator;
    double (*value)(double);
    double (*grad)(double);  // d kl / d logp
  };
  const Formula formulas[] = {
      {KlEstimator::k1, [](double x) { return x; }, [](double) { return 1.0; }},
      {KlEstimator::k2, [](double x) { return 0.5 * x * x; }, [](double x) { return x; }},
      {KlEstimator::k3, [](double x) { return std::exp(-x) - 1 + x; }, [](double x) { return 1 - std::exp(-x); }},
  };
  for (const Formula& f : formulas) {
    INFO("estimator " << static_cast<int>(f.estimator));
    logprobs.mutable_grad() = at::Tensor();
    const auto out = ClippedSurrogateLoss{.kl_coef = 0.1, .kl = f.estimator}(in, norm);
    double sum = 0;
    std::vector<double> grad;
    for (double x : d) {
      sum += f.value(x);
      grad.push_back(0.1 * f.grad(x) / 5);
    }
    CHECK(out.stats.ref_kl.item<double>() == Approx(sum).margin(1e-12));
    CHECK(out.loss.item<double>() == Approx(0.1 * sum / 5).margin(1e-12));
    out.loss.backward();
    check_values(logprobs.grad(), grad);
  }
  // k3 cap: d = -5 gives exp(5) - 1 - 5 = 142.4 -> 10, with zero (not NaN) gradient; even d = -100.
  auto far = dbl({-5.0, -100.0}, {1, 2}).requires_grad_(true);
  const grpo::PolicyLossInputs capped{.logprobs = far, .old_logprobs = far.detach(), .ref_logprobs = at::zeros({1, 2}, at::kDouble),
                                      .advantages = dbl({0.0}, {1}), .mask = at::ones({1, 2}, at::kDouble)};
  const auto out = ClippedSurrogateLoss{.kl_coef = 1.0}(capped, {.tokens = 1});
  CHECK(out.stats.ref_kl.item<double>() == Approx(20.0));
  out.loss.backward();
  check_values(far.grad(), {0.0, 0.0});
  // kl_coef = 0 with ref given: logged, not in the loss
  const auto logged = ClippedSurrogateLoss{.kl = KlEstimator::k1}(in, norm);
  CHECK(logged.loss.item<double>() == 0.0);
  CHECK(logged.stats.ref_kl.item<double>() == Approx(-0.7 - 0.1 + 0.0 + 0.4 + 1.3));
}

TEST_CASE("GSPO: the sequence ratio and its gradient equal the sequence-level objective", "[clipped_surrogate]") {
  // s_i = exp(mean_t (logp - old)). With seq_mean_token_mean, GSPO-token's loss per sequence is
  // -A s_i (clipped or not) and its gradient d(-A s_i)/d logp_t = -A s_i / |o_i|: the same as
  // differentiating the sequence objective directly, computed here by autograd without any
  // stop-gradient trick as the reference.
  at::manual_seed(3);
  const auto old = at::randn({3, 4}, at::kDouble);
  const auto base = old + at::rand({3, 4}, at::kDouble).mul(0.1).sub(0.05);  // |log r| < 0.05: no clipping
  const auto mask = dbl({1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0}, {3, 4});
  const auto adv = dbl({0.5, -1.5, 2.0}, {3});
  auto logprobs = base.clone().requires_grad_(true);
  const grpo::PolicyLossInputs in{.logprobs = logprobs, .old_logprobs = old, .advantages = adv, .mask = mask};
  const auto out = ClippedSurrogateLoss{.ratio = RatioLevel::sequence, .aggregation = Aggregation::seq_mean_token_mean}(
      in, {.sequences = 3});
  out.loss.backward();

  auto reference = base.clone().requires_grad_(true);
  const auto length = mask.sum(1);
  const auto s = (((reference - old) * mask).sum(1) / length).exp();  // [B]
  const auto ref_loss = (-adv * s).sum() / 3;
  ref_loss.backward();
  CHECK(out.loss.item<double>() == Approx(ref_loss.item<double>()).margin(1e-12));
  CHECK(at::allclose(logprobs.grad(), reference.grad(), 1e-12, 1e-12));
  CHECK(out.stats.ratio_max.item<double>() == Approx(s.max().item<double>()));

  // clipping applies to s_i: log r = (0.1, 0.3) -> s = exp(0.2) = 1.2214 > 1.2, A = 1: loss -1.2, grad 0
  auto clipped = dbl({0.1, 0.3}, {1, 2}).requires_grad_(true);
  const grpo::PolicyLossInputs in2{.logprobs = clipped, .old_logprobs = at::zeros({1, 2}, at::kDouble),
                                   .advantages = dbl({1.0}, {1}), .mask = at::ones({1, 2}, at::kDouble)};
  const auto out2 = ClippedSurrogateLoss{.ratio = RatioLevel::sequence}(in2, {.tokens = 2});
  CHECK(out2.loss.item<double>() == Approx(-1.2));
  CHECK(out2.stats.clipped_tokens.item<double>() == 2);
  out2.loss.backward();
  check_values(clipped.grad(), {0.0, 0.0});
}

namespace {

struct Batch {
  at::Tensor logprobs, old, ref, adv, mask;
};

Batch random_batch(std::int64_t b, std::int64_t t, std::uint64_t seed) {
  at::manual_seed(seed);
  Batch x;
  x.old = at::randn({b, t}, at::kDouble).sub(2.0);
  x.logprobs = x.old + at::rand({b, t}, at::kDouble).sub(0.5);  // |log r| < 0.5: both sides clip sometimes
  x.ref = x.old + at::rand({b, t}, at::kDouble).sub(0.5).mul(2.0);
  x.adv = at::randn({b}, at::kDouble);
  x.adv[1] = 0.0;  // a zero-advantage row
  x.mask = at::rand({b, t}, at::kDouble).gt(0.25).to(at::kDouble);
  x.mask[2].zero_();  // an all-masked row
  return x;
}

std::vector<ClippedSurrogateLoss> all_configurations() {
  std::vector<ClippedSurrogateLoss> out;
  for (auto aggregation : {Aggregation::token_mean, Aggregation::seq_mean_token_mean, Aggregation::seq_mean_token_sum,
                           Aggregation::seq_mean_token_sum_norm}) {
    for (auto ratio : {RatioLevel::token, RatioLevel::sequence}) {
      out.push_back({.ratio = ratio, .aggregation = aggregation});
      out.push_back({.clip_low = 0.1, .clip_high = 0.28, .dual_clip = 1.5, .kl_coef = 0.05, .kl = KlEstimator::k3,
                     .ratio = ratio, .aggregation = aggregation});
      out.push_back({.kl_coef = 0.2, .kl = KlEstimator::k2, .ratio = ratio, .aggregation = aggregation});
      out.push_back({.kl_coef = 0.2, .kl = KlEstimator::k1, .ratio = ratio, .aggregation = aggregation});
    }
  }
  return out;
}

}  // namespace

TEST_CASE("three uneven micro-batches give exactly the whole-batch loss and gradient", "[clipped_surrogate]") {
  const Batch x = random_batch(7, 6, 42);
  const grpo::LossNormalizer norm{.tokens = x.mask.sum().item<double>(), .sequences = 7, .horizon = 6};
  for (const auto& config : all_configurations()) {
   for (const bool use_aten : {false, true}) {
    INFO("aggregation " << static_cast<int>(config.aggregation) << " ratio " << static_cast<int>(config.ratio) << " kl "
                        << config.kl_coef << (use_aten ? " ATen path" : " host loop"));
    const auto loss = [&](const grpo::PolicyLossInputs& in, const grpo::LossNormalizer& n) {
      return grpo::detail::clipped_surrogate(config, in, n, use_aten);
    };
    auto whole = x.logprobs.clone().requires_grad_(true);
    const auto full = loss({whole, x.old, x.ref, x.adv, x.mask}, norm);
    full.loss.backward();

    auto parts = x.logprobs.clone().requires_grad_(true);
    double total = 0;
    grpo::PolicyLossStats stats;
    std::int64_t start = 0;
    for (std::int64_t size : {1, 2, 4}) {
      const auto rows = [&](const at::Tensor& t) { return t.narrow(0, start, size); };
      const auto part = loss({rows(parts), rows(x.old), rows(x.ref), rows(x.adv), rows(x.mask)}, norm);
      part.loss.backward();
      total += part.loss.item<double>();
      grpo::accumulate(stats, part.stats);
      start += size;
    }
    CHECK(total == Approx(full.loss.item<double>()).margin(1e-12));
    CHECK(at::allclose(parts.grad(), whole.grad(), 1e-12, 1e-14));
    CHECK(stats.tokens.item<double>() == full.stats.tokens.item<double>());
    CHECK(stats.clipped_tokens.item<double>() == full.stats.clipped_tokens.item<double>());
    CHECK(stats.approx_kl.item<double>() == Approx(full.stats.approx_kl.item<double>()));
    CHECK(stats.ref_kl.item<double>() == Approx(full.stats.ref_kl.item<double>()));
    CHECK(stats.ratio_max.item<double>() == full.stats.ratio_max.item<double>());
    // zero-advantage and all-masked rows: no policy gradient; all-masked rows none at all
    CHECK(whole.grad()[2].abs().sum().item<double>() == 0.0);
    if (config.kl_coef == 0.0) CHECK(whole.grad()[1].abs().sum().item<double>() == 0.0);
   }
  }
}

TEST_CASE("gradients match central finite differences in float64", "[clipped_surrogate]") {
  const Batch x = random_batch(4, 5, 7);
  const grpo::LossNormalizer norm{.tokens = x.mask.sum().item<double>(), .sequences = 4, .horizon = 5};
  const double step = 1e-6;
  for (const auto& config : all_configurations()) {
   for (const bool use_aten : {false, true}) {
    INFO("aggregation " << static_cast<int>(config.aggregation) << " ratio " << static_cast<int>(config.ratio) << " kl "
                        << config.kl_coef << (use_aten ? " ATen path" : " host loop"));
    const auto loss = [&](const grpo::PolicyLossInputs& in, const grpo::LossNormalizer& n) {
      return grpo::detail::clipped_surrogate(config, in, n, use_aten);
    };
    auto lp = x.logprobs.clone().requires_grad_(true);
    loss({lp, x.old, x.ref, x.adv, x.mask}, norm).loss.backward();
    const auto analytic = values(lp.grad());
    for (std::int64_t i = 0; i < 4; ++i) {
      for (std::int64_t t = 0; t < 5; ++t) {
        auto plus = x.logprobs.clone();
        auto minus = x.logprobs.clone();
        plus[i][t] += step;
        minus[i][t] -= step;
        const double numeric = (loss({plus, x.old, x.ref, x.adv, x.mask}, norm).loss.item<double>() -
                                loss({minus, x.old, x.ref, x.adv, x.mask}, norm).loss.item<double>()) /
                               (2 * step);
        CHECK(analytic[static_cast<std::size_t>(i * 5 + t)] == Approx(numeric).margin(1e-7));
      }
    }
   }
  }
}

TEST_CASE("float32 inputs and a bool mask work; statistics stay on the device", "[clipped_surrogate]") {
  const Batch x = random_batch(3, 4, 9);
  auto lp = x.logprobs.to(at::kFloat).requires_grad_(true);
  const auto out = ClippedSurrogateLoss{}({lp, x.old.to(at::kFloat), {}, x.adv.to(at::kFloat), x.mask.gt(0.5)},
                                          {.tokens = 10});
  CHECK(out.loss.scalar_type() == at::kFloat);
  CHECK(out.stats.tokens.device() == lp.device());
  const auto ref = ClippedSurrogateLoss{}({x.logprobs, x.old, {}, x.adv, x.mask}, {.tokens = 10});
  CHECK(out.loss.item<double>() == Approx(ref.loss.item<double>()).epsilon(1e-5));
  CHECK(out.stats.ref_kl.item<double>() == 0.0);
}

TEST_CASE("bad options and inputs throw grpo::Error", "[clipped_surrogate]") {
  const Batch x = random_batch(3, 4, 1);
  const grpo::PolicyLossInputs in{x.logprobs, x.old, {}, x.adv, x.mask};
  const grpo::LossNormalizer norm{.tokens = 5, .sequences = 3, .horizon = 4};
  CHECK_THROWS_AS(ClippedSurrogateLoss{.clip_low = 1.0}(in, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{.clip_low = -0.1}(in, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{.clip_high = std::nan("")}(in, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{.dual_clip = 1.0}(in, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{.kl_coef = -1.0}(in, norm), grpo::Error);
  CHECK_THROWS_WITH(ClippedSurrogateLoss{.kl_coef = 0.1}(in, norm), Catch::Contains("ref_logprobs"));
  CHECK_THROWS_WITH(ClippedSurrogateLoss{}(in, {.tokens = 0}), Catch::Contains("LossNormalizer::tokens"));
  CHECK_THROWS_AS(ClippedSurrogateLoss{.aggregation = Aggregation::seq_mean_token_mean}(in, {.tokens = 5}), grpo::Error);
  CHECK_THROWS_WITH(ClippedSurrogateLoss{.aggregation = Aggregation::seq_mean_token_sum_norm}(in, {.sequences = 3}),
                    Catch::Contains("horizon"));
  CHECK_THROWS_AS(ClippedSurrogateLoss{}({x.logprobs, x.old.narrow(1, 0, 3), {}, x.adv, x.mask}, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{}({x.logprobs, x.old, {}, x.adv.narrow(0, 0, 2), x.mask}, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{}({x.logprobs, x.old, {}, x.adv, {}}, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{}({x.logprobs.view({-1}), x.old, {}, x.adv, x.mask}, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{}({x.logprobs, x.old, x.ref.narrow(0, 0, 1), x.adv, x.mask}, norm), grpo::Error);
  CHECK_THROWS_AS(ClippedSurrogateLoss{}({{}, x.old, {}, x.adv, x.mask}, norm), grpo::Error);
}
