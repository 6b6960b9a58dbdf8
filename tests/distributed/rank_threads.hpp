#pragma once
// W ranks of one Gloo process group in one process: each rank is a thread with its own
// ProcessGroupGloo over a shared c10d::HashStore (what TCPStore is across processes).
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <grpo/distributed/process_group.hpp>

namespace grpo_test {

/// A Gloo backend of `size` ranks over `store` (the test ranks' only kind of group).
inline c10::intrusive_ptr<c10d::Backend> gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size) {
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size,
                                                     c10d::ProcessGroupGloo::Options::create_default(std::chrono::seconds(60)));
}

/// Runs body(rank, world communicator, store) on `world` threads, each a rank of one Gloo group
/// over one c10d::HashStore; rethrows the first exception of any rank.
template <class Body>
void run_threads(int world, Body body) {
  // c10d's flight recorder (a process-wide log of collectives for debugging hangs) is not safe
  // for several process groups enqueueing from different threads of one process (it crashed in
  // recordWithResetEnabled here); real ranks are processes. Off for the threaded test ranks.
  ::setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/1);
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto comm = std::make_shared<grpo::ProcessGroupCommunicator>(gloo_backend(store, r, world), c10::Device(c10::kCPU), store);
        body(r, comm, store);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Runs body(rank, communicator) on `world` threads, each a rank of one Gloo group.
template <class Body>
void run_ranks(int world, Body body) {
  run_threads(world, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm,
                         const c10::intrusive_ptr<c10d::Store>&) { body(r, comm); });
}

/// Runs body(rank, mesh) on `world` threads joined as a tensor x data mesh with tensor groups of
/// `tensor_size` (grpo::make_device_mesh over the same store).
template <class Body>
void run_mesh(int world, int tensor_size, Body body) {
  run_threads(world, [&](int r, const std::shared_ptr<grpo::ProcessGroupCommunicator>& comm,
                         const c10::intrusive_ptr<c10d::Store>& store) {
    grpo::DeviceMesh mesh = grpo::make_device_mesh(comm, store, tensor_size, gloo_backend);
    body(r, mesh);
  });
}

}  // namespace grpo_test
