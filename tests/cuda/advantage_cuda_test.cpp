// The CUDA paths of the advantage estimators (the fused kernel of kernels.cu and the ATen fallback)
// against the CPU range path, which tests/advantage/* checks against the numpy reference; and
// "no host synchronisation", checked by capturing each call into a CUDA graph (a sync, .item()
// or a pageable copy during capture is an error).
#include <grpo/advantage/balanced.hpp>
#include <grpo/advantage/dr_grpo.hpp>
#include <grpo/advantage/group_normalized.hpp>
#include <grpo/advantage/leave_one_out.hpp>
#include <grpo/advantage/reward_average.hpp>
#include <grpo/advantage/reward_statistics.hpp>

#include <ATen/Functions.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

// c10/util/Logging.h (pulled in by ATen) replaces Catch's CHECK with a glog-style CHECK(cond)
// that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace {

// [K, N] rewards with ties, all-equal groups (0.1f: inexact mean in float), NaN and +-inf.
at::Tensor random_table(std::int64_t k, std::int64_t groups, std::int64_t g, std::uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor t = at::randn({k, groups * g});
  t.select(0, 0).copy_(at::randint(0, 3, {groups * g}).to(at::kFloat));  // discrete: ties
  for (std::int64_t j = 0; j < groups; j += 5) t.narrow(1, j * g, g).fill_(0.1f);
  const auto n = groups * g;
  for (std::int64_t i = 0; i < std::max<std::int64_t>(1, n / 13); ++i) {
    const auto r = at::randint(0, k, {1}).item<std::int64_t>();
    const auto c = at::randint(0, n, {1}).item<std::int64_t>();
    const float bad[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                         -std::numeric_limits<float>::infinity()};
    t[r][c] = bad[i % 3];
  }
  return t.contiguous();
}

template <class E>
at::Tensor host_result(const E& e, const at::Tensor& table, std::int64_t g) {
  std::vector<float> out(static_cast<std::size_t>(table.size(1)));
  e.compute(grpo::RewardTableView<const float>{table.data_ptr<float>(), static_cast<std::size_t>(table.size(0)),
                                               static_cast<std::size_t>(table.size(1))},
            static_cast<std::size_t>(g), out);
  return at::tensor(out);
}

// CUDA result vs host result: close everywhere, and exactly 0 wherever the host gives exactly 0
// (non-finite rewards of non-zero weight, all-equal groups; the host path is checked against the
// numpy reference for these rules in tests/advantage).
void check_same(const at::Tensor& cuda, const at::Tensor& host, const at::Tensor& table) {
  REQUIRE(cuda.is_cuda());
  REQUIRE(cuda.scalar_type() == at::kFloat);
  const at::Tensor c = cuda.cpu();
  CHECK(at::allclose(c, host, 1e-5, 1e-5));
  CHECK(at::isfinite(c).all().item<bool>());
  CHECK(c.masked_select(host.eq(0.0f)).abs().sum().item<float>() == 0.0f);
  // and the table does exercise the rule: some samples have a non-finite reward
  CHECK(at::isfinite(table).logical_not().any().item<bool>());
}

template <class E>
void check_estimator(const E& e, std::int64_t k, std::int64_t groups, std::int64_t g, std::uint64_t seed) {
  INFO("K " << k << " groups " << groups << " G " << g);
  const at::Tensor table = random_table(k, groups, g, seed);
  const at::Tensor host = host_result(e, table, g);
  check_same(e.compute(table.cuda(), g), host, table);
}

}  // namespace

TEST_CASE("the fused kernel is registered when grpo::cuda is linked", "[advantage_cuda_test]") {
  REQUIRE(grpo::detail::cuda_kernels().group_advantage != nullptr);
}

TEST_CASE("CUDA kernel path equals the CPU path for every estimator and group size", "[advantage_cuda_test]") {
  std::uint64_t seed = 1;
  for (std::int64_t g : {1, 2, 7, 32, 33, 64, 1024, 1500}) {
    const std::int64_t groups = g >= 1024 ? 6 : 40;
    check_estimator(grpo::GroupNormalized{}, 1, groups, g, ++seed);
    check_estimator(grpo::GroupNormalized{.std_kind = grpo::StdKind::population, .epsilon = 1e-4}, 1, groups, g, ++seed);
    check_estimator(grpo::DrGrpo{}, 1, groups, g, ++seed);
    check_estimator(grpo::LeaveOneOut{}, 1, groups, g, ++seed);
    check_estimator(grpo::Balanced<3>{}, 3, groups, g, ++seed);
    check_estimator(grpo::Balanced<3, grpo::LeaveOneOut>{.weights = {1.0, 0.0, 2.5}}, 3, groups, g, ++seed);
    check_estimator(grpo::Balanced<>{.inner = {.std_kind = grpo::StdKind::population}}, 5, groups, g, ++seed);
    check_estimator(grpo::RewardAverage<3>{.weights = {0.5, 1.0, 2.0}}, 3, groups, g, ++seed);
    check_estimator(grpo::RewardAverage<3, grpo::DrGrpo>{}, 3, groups, g, ++seed);
  }
  // the paper's shape: 512 prompts x 32 samples x 3 rewards
  check_estimator(grpo::Balanced<3>{}, 3, 512, 32, 99);
}

TEST_CASE("all-equal groups give exactly 0 on the GPU", "[advantage_cuda_test]") {
  const at::Tensor equal = at::full({3, 7 * 4}, 0.1f, at::kCUDA);
  CHECK(grpo::Balanced<3>{}.compute(equal, 7).abs().max().item<float>() == 0.0f);
  CHECK(grpo::GroupNormalized{.epsilon = 0.0}.compute(equal.select(0, 0), 7).abs().max().item<float>() == 0.0f);
}

TEST_CASE("the ATen fallback on CUDA equals the CPU path (more rewards than the kernel takes)", "[advantage_cuda_test]") {
  const at::Tensor table = random_table(grpo::detail::kernel_max_rewards + 1, 30, 16, 7);
  const grpo::Balanced<> e{};
  check_same(e.compute(table.cuda(), 16), host_result(e, table, 16), table);
  const auto weights = grpo::detail::normalized_weights({}, 3, "test");
  for (auto combination : {grpo::RewardCombination::normalize_then_average, grpo::RewardCombination::average_then_normalize}) {
    const at::Tensor t3 = random_table(3, 40, 32, 8);
    const at::Tensor out = grpo::detail::group_advantages_aten(t3.cuda(), 32, grpo::GroupRule{}, combination, weights);
    const at::Tensor host = combination == grpo::RewardCombination::normalize_then_average
                                ? host_result(grpo::Balanced<3>{}, t3, 32)
                                : host_result(grpo::RewardAverage<3>{}, t3, 32);
    check_same(out, host, t3);
  }
}

TEST_CASE("reward_statistics on CUDA equals the host statistics", "[advantage_cuda_test]") {
  const at::Tensor table = random_table(3, 50, 32, 11);
  const auto host = grpo::reward_statistics(
      grpo::RewardTableView<const float>{table.data_ptr<float>(), 3, static_cast<std::size_t>(table.size(1))}, 32);
  const auto dev = grpo::reward_statistics(table.cuda(), 32);
  REQUIRE(dev.mean.is_cuda());
  for (std::int64_t k = 0; k < 3; ++k) {
    const auto i = static_cast<std::size_t>(k);
    CHECK(dev.mean[k].item<double>() == Approx(host[i].mean).margin(1e-9));
    CHECK(dev.std_dev[k].item<double>() == Approx(host[i].std_dev).margin(1e-9));
    CHECK(dev.min[k].item<double>() == host[i].min);
    CHECK(dev.max[k].item<double>() == host[i].max);
    CHECK(dev.zero_variance_fraction[k].item<double>() == Approx(host[i].zero_variance_fraction));
    CHECK(dev.non_finite[k].item<std::int64_t>() == static_cast<std::int64_t>(host[i].non_finite));
  }
}

TEST_CASE("the CUDA advantage paths never synchronise: they capture into a CUDA graph", "[advantage_cuda_test]") {
  const at::Tensor table = random_table(3, 64, 32, 12).cuda();
  const at::Tensor many = random_table(grpo::detail::kernel_max_rewards + 1, 8, 32, 13).cuda();
  at::cuda::CUDAGraph graph;
  const auto stream = c10::cuda::getStreamFromPool();
  at::Tensor kernel_out, fallback_out, zero_variance;
  {
    const c10::cuda::CUDAStreamGuard guard(stream);
    graph.capture_begin();
    kernel_out = grpo::Balanced<3>{}.compute(table, 32);  // kernel
    fallback_out = grpo::Balanced<>{}.compute(many, 32);  // ATen fallback
    zero_variance = grpo::reward_statistics(table, 32).zero_variance_fraction;
    graph.capture_end();
  }
  graph.replay();
  c10::cuda::getCurrentCUDAStream().synchronize();
  stream.synchronize();
  const at::Tensor host = table.cpu();
  CHECK(at::allclose(kernel_out.cpu(), host_result(grpo::Balanced<3>{}, host, 32), 1e-5, 1e-5));
  CHECK(at::allclose(fallback_out.cpu(), host_result(grpo::Balanced<>{}, many.cpu(), 32), 1e-5, 1e-5));
  CHECK(zero_variance.size(0) == 3);
}
