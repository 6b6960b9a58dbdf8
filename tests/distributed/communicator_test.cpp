// The collectives, the launcher's environment and the optimizer-state sharding plan, over 2 or 3
// Gloo ranks run as threads of one process (rank_threads.hpp). The reference for every number is
// arithmetic by hand.
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpo/core/error.hpp>
#include <grpo/distributed/communicator.hpp>
#include <grpo/distributed/process_group.hpp>

#include "../catch_torch.hpp"
#include "rank_threads.hpp"

using grpo_test::run_ranks;

namespace {

/// Sets (or unsets) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("collectives: bucketed sums, broadcast, gather, reduce-scatter and gradient sums over 3 ranks", "[distributed]") {
  constexpr int W = 3;
  std::vector<at::Tensor> sums(W), bf16(W), gathered(W), scattered(W), broadcasted(W), grads_a(W), grads_b(W), grads_c(W);
  std::vector<std::vector<double>> host(W);
  run_ranks(W, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    const auto i = static_cast<std::size_t>(r);
    // Rank r holds r + 1 in every element; 40-byte buckets split the 3 float tensors, then bf16 and
    // float64 start buckets of their own.
    std::vector<at::Tensor> ts{at::full({3}, r + 1.0, at::kFloat), at::full({2, 4}, r + 1.0, at::kFloat),
                               at::full({5}, r + 1.0, at::kFloat), at::full({4}, r + 1.0, at::kBFloat16),
                               at::full({2}, r + 1.0, at::kDouble)};
    grpo::all_reduce_sum(*comm, ts, /*bucket_bytes=*/40);
    sums[i] = at::cat({ts[0], ts[1].reshape({-1}), ts[2], ts[4].to(at::kFloat)});
    bf16[i] = ts[3];
    host[i] = grpo::all_reduce_sum(*comm, std::vector<double>{0.5 * r, 1.0});
    gathered[i] = comm->all_gather(at::full({2, 2}, static_cast<double>(r), at::kDouble));
    // rank r holds rows k * (r + 1), k = 0..5: rows [2r, 2r + 2) of the sum, 6 * k each
    scattered[i] = comm->reduce_scatter_sum(at::arange(6, at::kFloat).mul(r + 1.0).unsqueeze(1).repeat({1, 2}));
    std::vector<at::Tensor> b{at::full({3}, 10.0 * (r + 1), at::kFloat)};
    grpo::broadcast(*comm, b, /*root=*/0);
    broadcasted[i] = b[0];
    // Gradients: a has one on every rank, b only on rank 1, c on none.
    auto a = at::zeros({2}, at::kFloat).set_requires_grad(true);
    auto bp = at::zeros({2}, at::kFloat).set_requires_grad(true);
    auto c = at::zeros({2}, at::kFloat).set_requires_grad(true);
    (a * (r + 1.0)).sum().backward();
    if (r == 1) (bp * 7.0).sum().backward();
    std::vector<at::Tensor> params{a, bp, c};
    grpo::synchronize_gradients(*comm, params);
    grads_a[i] = a.grad();
    grads_b[i] = bp.grad();
    grads_c[i] = c.grad();
  });
  for (std::size_t i = 0; i < W; ++i) {
    CHECK(at::equal(sums[i], at::full({3 + 8 + 5 + 2}, 6.0, at::kFloat)));  // 1 + 2 + 3
    CHECK(bf16[i].scalar_type() == at::kBFloat16);
    CHECK(at::equal(bf16[i].to(at::kFloat), at::full({4}, 6.0, at::kFloat)));
    CHECK(host[i] == std::vector<double>{1.5, 3.0});
    CHECK(at::equal(gathered[i], at::tensor({0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0}, at::kDouble).reshape({6, 2})));
    CHECK(at::equal(scattered[i], at::tensor({12.0f * i, 12.0f * i, 12.0f * i + 6, 12.0f * i + 6}, at::kFloat).reshape({2, 2})));
    CHECK(at::equal(broadcasted[i], at::full({3}, 10.0, at::kFloat)));
    CHECK(at::equal(grads_a[i], at::full({2}, 6.0, at::kFloat)));
    REQUIRE(grads_b[i].defined());  // rank 0 and 2 had none: they receive rank 1's
    CHECK(at::equal(grads_b[i], at::full({2}, 7.0, at::kFloat)));
    CHECK_FALSE(grads_c[i].defined());  // no rank had one: AdamW must still skip it
  }
}

TEST_CASE("barrier_without_timeout waits for the last rank", "[distributed]") {
  std::atomic<bool> late_rank_arrived{false};
  std::vector<int> saw(3, 0);  // not vector<bool>: its bits share bytes across threads
  run_ranks(3, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm) {
    if (r == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the others are already waiting
      late_rank_arrived = true;
    }
    comm->barrier_without_timeout();
    saw[static_cast<std::size_t>(r)] = late_rank_arrived.load() ? 1 : 0;
    comm->barrier_without_timeout();  // a second use is a new barrier
  });
  CHECK(saw == std::vector<int>{1, 1, 1});
}

TEST_CASE("LaunchEnv reads torchrun's variables and names a bad one", "[distributed]") {
  {
    ScopedEnv w("WORLD_SIZE", nullptr);
    const auto env = grpo::LaunchEnv::from_environment();
    CHECK(env.world_size == 1);
    CHECK_FALSE(env.distributed());
    CHECK(grpo::init_process_group(env, c10::Device(c10::kCPU)) == nullptr);
  }
  {
    ScopedEnv w("WORLD_SIZE", "4"), r("RANK", "3"), l("LOCAL_RANK", "1"), lw("LOCAL_WORLD_SIZE", "2"),
        a("MASTER_ADDR", "10.0.0.7"), p("MASTER_PORT", "29501"), s("TORCHELASTIC_USE_AGENT_STORE", "True"),
        c("TORCHELASTIC_RESTART_COUNT", "2");
    const auto env = grpo::LaunchEnv::from_environment();
    CHECK(env.world_size == 4);
    CHECK(env.rank == 3);
    CHECK(env.local_rank == 1);
    CHECK(env.local_world_size == 2);
    CHECK(env.master_addr == "10.0.0.7");
    CHECK(env.master_port == 29501);
    CHECK(env.agent_store);
    CHECK(env.restart_count == 2);
  }
  auto message = [] {
    try {
      (void)grpo::LaunchEnv::from_environment();
    } catch (const grpo::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "2"), a("MASTER_ADDR", "h"), p("MASTER_PORT", "1");
    CHECK_THAT(message(), Catch::Contains("RANK") && Catch::Contains("[0, 1]") && Catch::Contains("found 2"));
  }
  {
    ScopedEnv w("WORLD_SIZE", "two");
    CHECK_THAT(message(), Catch::Contains("WORLD_SIZE") && Catch::Contains("\"two\""));
  }
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "0"), a("MASTER_ADDR", nullptr);
    CHECK_THAT(message(), Catch::Contains("MASTER_ADDR") && Catch::Contains("torchrun"));
  }
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", nullptr);
    CHECK_THAT(message(), Catch::Contains("RANK: not set"));
  }
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "0"), a("MASTER_ADDR", "h"), p("MASTER_PORT", "70000");
    CHECK_THAT(message(), Catch::Contains("MASTER_PORT") && Catch::Contains("65535"));
  }
}

TEST_CASE("shard_owners balances elements and is the same on every rank", "[distributed]") {
  const std::vector<at::Tensor> params{at::zeros({10}), at::zeros({3}), at::zeros({7}), at::zeros({3}), at::zeros({1})};
  // Largest first to the least-loaded rank: 10 -> r0, 7 -> r1, 3 -> r1 (7 < 10), 3 -> r0 (a tie: the lower
  // rank), 1 -> r1 (10 < 13).
  CHECK(grpo::shard_owners(params, 2) == std::vector<int>{0, 1, 1, 0, 1});
  CHECK(grpo::shard_owners(params, 1) == std::vector<int>{0, 0, 0, 0, 0});
  CHECK(grpo::shard_owners(params, 8) == std::vector<int>{0, 2, 1, 3, 4});
}
