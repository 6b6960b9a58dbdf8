// NCCL process groups through grpo::ProcessGroupCommunicator: one rank per visible GPU (at most
// 2), each a thread with its own ProcessGroupNCCL over a shared c10d::HashStore. With one GPU the
// group has one rank: the collectives then check the NCCL plumbing (buffers on the rank's device,
// dtypes NCCL takes: float32, bfloat16, float64, uint8 for gathered text) rather than sums, and
// point to point (send/recv) needs two GPUs.
#include <catch2/catch.hpp>

#include <ATen/Functions.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <grpo/distributed/process_group.hpp>

#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

TEST_CASE("NCCL collectives: bucketed sums in float32 and bfloat16, gathers, reduce-scatter, broadcast, gradient sums", "[cuda][distributed]") {
  const int W = std::min<int>(2, static_cast<int>(c10::cuda::device_count()));
  REQUIRE(W >= 1);
  const double total = W * (W + 1) / 2.0;  // ranks hold 1, 2, ...
  // The flight recorder is not safe for several groups enqueueing from threads of one process
  // (see run_ranks in tests/distributed/rank_threads.hpp); real ranks are processes.
  ::setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/1);
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(W));
  std::vector<at::Tensor> sums(W), bf16(W), gathered(W), scattered(W), broadcasted(W), grads(W), received(W);
  std::vector<std::vector<std::string>> texts(W);
  std::vector<std::vector<double>> host(W);
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r) {
    threads.emplace_back([&, r] {
      try {
        const auto i = static_cast<std::size_t>(r);
        c10::cuda::set_device(static_cast<c10::DeviceIndex>(r));
        const c10::Device device(c10::kCUDA, static_cast<c10::DeviceIndex>(r));
        auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, r, W, c10d::ProcessGroupNCCL::Options::create());
        backend->setBoundDeviceId(device);
        grpo::ProcessGroupCommunicator comm(backend, device, store);
        const auto on = at::TensorOptions().device(device);
        std::vector<at::Tensor> ts{at::full({3}, r + 1.0, on.dtype(at::kFloat)), at::full({2, 4}, r + 1.0, on.dtype(at::kFloat)),
                                   at::full({4}, r + 1.0, on.dtype(at::kBFloat16))};
        grpo::all_reduce_sum(comm, ts, /*bucket_bytes=*/16);
        sums[i] = at::cat({ts[0], ts[1].reshape({-1})}).cpu();
        bf16[i] = ts[2].cpu();
        host[i] = grpo::all_reduce_sum(comm, std::vector<double>{0.5 * r, 1.0});
        texts[i] = grpo::all_gather(comm, std::string(static_cast<std::size_t>(r + 1), static_cast<char>('a' + r)));
        gathered[i] = comm.all_gather(at::full({1, 2}, static_cast<double>(r), on.dtype(at::kDouble))).cpu();
        // NCCL's reduce-scatter: rank r holds rows (k + 1)(r + 1); it receives row r of the sum, (r + 1) total
        scattered[i] = comm.reduce_scatter_sum(at::arange(1, W + 1, on.dtype(at::kFloat)).mul(r + 1.0).unsqueeze(1).repeat({1, 3})).cpu();
        std::vector<at::Tensor> b{at::full({3}, 10.0 * (r + 1), on.dtype(at::kFloat))};
        grpo::broadcast(comm, b, 0);
        broadcasted[i] = b[0].cpu();
        auto p = at::zeros({2}, on.dtype(at::kFloat)).set_requires_grad(true);
        (p * (r + 1.0)).sum().backward();
        std::vector<at::Tensor> params{p};
        grpo::synchronize_gradients(comm, params);
        grads[i] = p.grad().cpu();
        if (W == 2) {  // point to point, as sharded checkpoints gather AdamW moments on rank 0
          at::Tensor t = at::full({5}, r == 1 ? 7.0 : 0.0, on.dtype(at::kFloat));
          if (r == 1) comm.send(t, 0);
          else comm.recv(t, 1);
          received[i] = t.cpu();
        }
        comm.barrier();
        comm.barrier_without_timeout();
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (std::size_t i = 0; i < static_cast<std::size_t>(W); ++i) {
    CHECK(at::equal(sums[i], at::full({11}, total, at::kFloat)));
    CHECK(bf16[i].scalar_type() == at::kBFloat16);
    CHECK(at::equal(bf16[i].to(at::kFloat), at::full({4}, total, at::kFloat)));
    CHECK(host[i] == std::vector<double>{0.5 * (W - 1) * W / 2.0, static_cast<double>(W)});
    REQUIRE(texts[i].size() == static_cast<std::size_t>(W));
    for (int r = 0; r < W; ++r) CHECK(texts[i][static_cast<std::size_t>(r)] == std::string(static_cast<std::size_t>(r + 1), static_cast<char>('a' + r)));
    REQUIRE(gathered[i].size(0) == W);
    for (int r = 0; r < W; ++r) CHECK(gathered[i][r][1].item<double>() == r);
    CHECK(at::equal(scattered[i], at::full({1, 3}, static_cast<double>(i + 1) * total, at::kFloat)));
    CHECK(at::equal(broadcasted[i], at::full({3}, 10.0, at::kFloat)));
    CHECK(at::equal(grads[i], at::full({2}, total, at::kFloat)));
    if (W == 2) CHECK(at::equal(received[i], at::full({5}, 7.0, at::kFloat)));
  }
}
