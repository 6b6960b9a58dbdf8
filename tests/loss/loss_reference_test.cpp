// ClippedSurrogateLoss (both its CPU loop and its ATen form) against an independent plain-torch
// (Python, float64, autograd) re-implementation in
// verl's style (tests/python/fixtures/rl_loss.py): loss, gradient and statistics for every
// aggregation x ratio level x {clip-higher, dual clip, k1/k2/k3 KL}, with global normalisers
// larger than the micro-batch's own counts.
#include <grpo/loss/clipped_surrogate.hpp>

#include <ATen/Functions.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

// c10/util/Logging.h (pulled in by ATen) replaces Catch's CHECK with a glog-style CHECK(cond)
// that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

struct Reader {
  std::vector<std::string> tokens;
  std::size_t at = 0;
  void key(const char* k) {
    if (tokens.at(at++) != k) FAIL("fixture: expected key " << k);
  }
  std::string word() { return tokens.at(at++); }
  double number() { return std::strtod(tokens.at(at++).c_str(), nullptr); }
  at::Tensor tensor(std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<double> v;
    for (std::int64_t i = 0; i < n; ++i) v.push_back(number());
    return at::tensor(v, at::kDouble).view(shape);
  }
};

grpo::Aggregation aggregation_of(const std::string& s) {
  if (s == "token_mean") return grpo::Aggregation::token_mean;
  if (s == "seq_mean_token_mean") return grpo::Aggregation::seq_mean_token_mean;
  if (s == "seq_mean_token_sum") return grpo::Aggregation::seq_mean_token_sum;
  return grpo::Aggregation::seq_mean_token_sum_norm;
}

}  // namespace

TEST_CASE("ClippedSurrogateLoss matches the plain-torch reference", "[loss_reference]") {
  const std::filesystem::path dir = std::filesystem::path(GRPO_FIXTURE_DIR) / "rl_loss";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".txt") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() == 40);
  for (const auto& file : files) {
    std::ifstream in(file);
    Reader r;
    for (std::string s; in >> s;) r.tokens.push_back(s);
    r.key("config");
    grpo::ClippedSurrogateLoss loss;
    loss.aggregation = aggregation_of(r.word());
    loss.ratio = r.word() == "sequence" ? grpo::RatioLevel::sequence : grpo::RatioLevel::token;
    loss.clip_low = r.number();
    loss.clip_high = r.number();
    if (const double c = r.number(); c != 0.0) loss.dual_clip = c;
    loss.kl_coef = r.number();
    const std::string kl = r.word();
    loss.kl = kl == "k1" ? grpo::KlEstimator::k1 : kl == "k2" ? grpo::KlEstimator::k2 : grpo::KlEstimator::k3;
    r.key("shape");
    const auto b = static_cast<std::int64_t>(r.number());
    const auto t = static_cast<std::int64_t>(r.number());
    r.key("normalizer");
    grpo::LossNormalizer norm;
    norm.tokens = r.number();
    norm.sequences = r.number();
    norm.horizon = r.number();
    r.key("logprobs");
    auto logprobs = r.tensor({b, t}).requires_grad_(true);
    r.key("old");
    const auto old = r.tensor({b, t});
    r.key("ref");
    const auto ref = r.tensor({b, t});
    r.key("advantages");
    const auto adv = r.tensor({b});
    r.key("mask");
    const auto mask = r.tensor({b, t});
    r.key("loss");
    const double expected_loss = r.number();
    r.key("grad");
    const auto expected_grad = r.tensor({b, t});
    r.key("stats");
    const auto expected_stats = r.tensor({5});

    // both implementations: the CPU loop (what operator() runs here) and the ATen form (CUDA's)
    for (const bool use_aten : {false, true}) {
      INFO(file.filename().string() << (use_aten ? " (ATen path)" : " (host loop)"));
      logprobs.mutable_grad() = at::Tensor();
      const auto out = use_aten ? grpo::detail::clipped_surrogate(loss, {logprobs, old, ref, adv, mask}, norm, true)
                                : loss({logprobs, old, ref, adv, mask}, norm);
      out.loss.backward();
      CHECK(out.loss.item<double>() == Approx(expected_loss).margin(1e-12));
      CHECK(at::allclose(logprobs.grad(), expected_grad, 1e-10, 1e-12));
      CHECK(out.stats.tokens.item<double>() == expected_stats[0].item<double>());
      CHECK(out.stats.clipped_tokens.item<double>() == expected_stats[1].item<double>());
      CHECK(out.stats.approx_kl.item<double>() == Approx(expected_stats[2].item<double>()).margin(1e-12));
      CHECK(out.stats.ref_kl.item<double>() == Approx(expected_stats[3].item<double>()).margin(1e-12));
      CHECK(out.stats.ratio_max.item<double>() == Approx(expected_stats[4].item<double>()).margin(1e-12));
    }
  }
}
