#pragma once
// Data-parallel process groups on LibTorch's c10d, launched the way PyTorch jobs are launched.
//
//   torchrun --nproc_per_node 2 --no-python build/cpu/examples/longwriter-zero train --config ...
//
// LaunchEnv reads what torchrun (or any launcher that follows its conventions: RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) puts in each worker's environment.
// ProcessGroupCommunicator joins the group over a c10d::TCPStore (the one torchrun's agent hosts
// when TORCHELASTIC_USE_AGENT_STORE=True, else one that rank 0 starts) and runs collectives on a
// c10d backend: Gloo on the CPU, NCCL on GPUs (in targets that link grpo::cuda). This header is
// the only one in grpo that includes c10d; the trainer sees grpo::Communicator.
//
// Gloo's own headers are not in the torch wheel; grpo uses Debian's libgloo-dev for the
// declarations ProcessGroupGloo.hpp needs (only declarations: the code that runs is LibTorch's).

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(GRPO_WITH_CUDA)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/distributed/mesh.hpp"

namespace grpo {

/// Where this process sits in a torchrun-style launch.
struct LaunchEnv {
  int rank = 0;               ///< RANK: 0 .. world_size - 1
  int world_size = 1;         ///< WORLD_SIZE
  int local_rank = 0;         ///< LOCAL_RANK: the GPU this process uses on its node
  int local_world_size = 1;   ///< LOCAL_WORLD_SIZE
  std::string master_addr = "127.0.0.1";  ///< MASTER_ADDR: host of the rendezvous store
  int master_port = 29500;    ///< MASTER_PORT
  bool agent_store = false;   ///< TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent hosts the store
  int restart_count = 0;      ///< TORCHELASTIC_RESTART_COUNT

  [[nodiscard]] bool distributed() const { return world_size > 1; }

  /// Reads the environment. Without WORLD_SIZE (or with WORLD_SIZE=1) it is a world of one; a
  /// malformed or inconsistent variable is an error naming it.
  static LaunchEnv from_environment() {
    LaunchEnv env;
    const char* world = std::getenv("WORLD_SIZE");
    if (world == nullptr) return env;
    env.world_size = integer("WORLD_SIZE", 1, 1 << 20);
    env.rank = integer("RANK", 0, env.world_size - 1);
    env.local_rank = integer("LOCAL_RANK", 0, env.world_size - 1, env.rank);
    env.local_world_size = integer("LOCAL_WORLD_SIZE", 1, env.world_size, env.world_size);
    if (env.world_size == 1) return env;
    const char* addr = std::getenv("MASTER_ADDR");
    if (addr == nullptr || *addr == '\0')
      throw Error(fmt::format("MASTER_ADDR: WORLD_SIZE is {} but MASTER_ADDR (the host of the rendezvous store) is "
                              "not set; launch with torchrun",
                              env.world_size));
    env.master_addr = addr;
    env.master_port = integer("MASTER_PORT", 1, 65535);
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    env.agent_store = agent != nullptr && std::string(agent) == "True";
    env.restart_count = integer("TORCHELASTIC_RESTART_COUNT", 0, 1 << 20, 0);
    return env;
  }

 private:
  /// An integer variable in [lo, hi]; `fallback` when it is unset (required when there is none).
  static int integer(const char* name, int lo, int hi, std::optional<int> fallback = std::nullopt) {
    const char* text = std::getenv(name);
    if (text == nullptr) {
      if (fallback) return *fallback;
      throw Error(std::string(name) + ": not set, but WORLD_SIZE is; launch with torchrun or set " + name);
    }
    const std::string s(text);
    int value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty())
      throw Error(std::string(name) + ": expected an integer, found \"" + s + "\"");
    if (value < lo || value > hi)
      throw Error(fmt::format("{}: expected a value in [{}, {}], found {}", name, lo, hi, s));
    return value;
  }
};

/// grpo::Communicator on a c10d backend.
class ProcessGroupCommunicator final : public Communicator {
 public:
  /// Wraps a backend made elsewhere (tests build Gloo groups over a c10d::HashStore in threads).
  /// `store` (the group's rendezvous store) serves barrier_without_timeout(); without one, that
  /// is a plain barrier().
  ProcessGroupCommunicator(c10::intrusive_ptr<c10d::Backend> backend, c10::Device device,
                           c10::intrusive_ptr<c10d::Store> store = {})
      : backend_(std::move(backend)), device_(device), store_(std::move(store)) {}

  /// NCCL: destroys the communicators now rather than warning at exit. While an exception unwinds
  /// (other ranks may be inside a collective this rank will never join), it aborts instead, since
  /// a clean shutdown could wait for them and keep the launcher from stopping the job.
  ~ProcessGroupCommunicator() override {
    try {
      if (std::uncaught_exceptions() > 0) backend_->abort();
      else backend_->shutdown();
    } catch (...) {
    }
  }
  ProcessGroupCommunicator(const ProcessGroupCommunicator&) = delete;
  ProcessGroupCommunicator& operator=(const ProcessGroupCommunicator&) = delete;

  [[nodiscard]] int rank() const override { return backend_->getRank(); }
  [[nodiscard]] int world_size() const override { return backend_->getSize(); }
  [[nodiscard]] c10::Device device() const override { return device_; }

  void all_reduce_sum(at::Tensor& t) override { reduce(t, c10d::ReduceOp::SUM); }
  void all_reduce_max(at::Tensor& t) override { reduce(t, c10d::ReduceOp::MAX); }

  void broadcast(at::Tensor& t, int root) override {
    std::vector<at::Tensor> tensors{t};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    backend_->broadcast(tensors, options)->wait();
  }

  at::Tensor all_gather(const at::Tensor& t) override {
    std::vector<at::Tensor> input{t.contiguous()};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < world_size(); ++r) output[0].push_back(at::empty_like(input[0]));
    backend_->allgather(output, input)->wait();
    return at::cat(output[0]);
  }

  at::Tensor reduce_scatter_sum(const at::Tensor& t) override {
    if (!device_.is_cuda()) return Communicator::reduce_scatter_sum(t);  // Gloo: no reduce-scatter
    at::Tensor input = t.contiguous();
    std::vector<std::int64_t> shape(input.sizes().begin(), input.sizes().end());
    shape[0] /= world_size();
    at::Tensor output = at::empty(shape, input.options());
    backend_->_reduce_scatter_base(output, input)->wait();  // NCCL: each rank receives only its rows
    return output;
  }

  void barrier() override { backend_->barrier()->wait(); }

  /// A counter in the store that each rank increments, then polls until it reaches the world size:
  /// no collective is pending meanwhile, so no timeout applies. One communicator per store (the
  /// keys count this communicator's calls).
  void barrier_without_timeout() override {
    if (!store_) {
      barrier();
      return;
    }
    const std::string key = fmt::format("grpo/wait/{}", waits_++);
    store_->add(key, 1);
    while (store_->add(key, 0) < world_size()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  void send(const at::Tensor& t, int dst) override {
    std::vector<at::Tensor> tensors{t};
    backend_->send(tensors, dst, /*tag=*/0)->wait();
  }

  void recv(at::Tensor& t, int src) override {
    std::vector<at::Tensor> tensors{t};
    backend_->recv(tensors, src, /*tag=*/0)->wait();
  }

  [[nodiscard]] const c10::intrusive_ptr<c10d::Backend>& backend() const { return backend_; }
  /// The group's rendezvous store (null when made without one).
  [[nodiscard]] const c10::intrusive_ptr<c10d::Store>& store() const { return store_; }

 private:
  void reduce(at::Tensor& t, c10d::ReduceOp op) {
    std::vector<at::Tensor> tensors{t};
    c10d::AllreduceOptions options;
    options.reduceOp = op;
    backend_->allreduce(tensors, options)->wait();
  }

  c10::intrusive_ptr<c10d::Backend> backend_;
  c10::Device device_;
  c10::intrusive_ptr<c10d::Store> store_;
  std::int64_t waits_ = 0;
};

/// How init_process_group() joins.
struct ProcessGroupOptions {
  /// How long a collective (and the rendezvous) may wait for the slowest rank before failing;
  /// default 60 minutes. (A stage one rank runs alone uses barrier_without_timeout().)
  std::chrono::milliseconds timeout{std::chrono::minutes(60)};
};

/// Joins the process group described by `env` (normally LaunchEnv::from_environment()). `device`
/// is where this rank computes: a CUDA device selects NCCL (index LOCAL_RANK unless given), the
/// CPU selects Gloo. Returns nullptr for a world of one: no store, no backend, no threads.
inline std::shared_ptr<ProcessGroupCommunicator> init_process_group(const LaunchEnv& env, c10::Device device,
                                                                    const ProcessGroupOptions& options = {}) {
  if (!env.distributed()) return nullptr;
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(env.master_port);
  store_options.isServer = !env.agent_store && env.rank == 0;
  store_options.numWorkers = static_cast<std::size_t>(env.world_size);
  store_options.waitWorkers = !env.agent_store;
  store_options.timeout = options.timeout;
  store_options.multiTenant = !env.agent_store;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    throw Error(fmt::format("rendezvous at {}:{} (MASTER_ADDR:MASTER_PORT) as rank {} of {} failed: {}",
                            env.master_addr, env.master_port, env.rank, env.world_size, e.what()));
  }
  // One namespace per launch attempt, as torch.distributed does after an elastic restart.
  store = c10::make_intrusive<c10d::PrefixStore>(fmt::format("grpo/attempt_{}/", env.restart_count), std::move(store));
  if (device.is_cuda()) {
#if defined(GRPO_WITH_CUDA)
    if (!device.has_index()) device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
    c10::cuda::set_device(device.index());
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = options.timeout;
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, nccl_options);
    backend->setBoundDeviceId(device);  // NCCL need not guess this rank's GPU from its first tensor
    return std::make_shared<ProcessGroupCommunicator>(std::move(backend), device, store);
#else
    throw Error("init_process_group: device " + device.str() +
                " needs the NCCL backend, which comes with grpo::cuda; link it (or use the CPU and Gloo)");
#endif
  }
  auto gloo_options = c10d::ProcessGroupGloo::Options::create_default(options.timeout);
  auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, gloo_options);
  return std::make_shared<ProcessGroupCommunicator>(std::move(backend), c10::Device(c10::kCPU), store);
}

/// The tensor and data groups of `world` (a communicator made by init_process_group or over
/// `store` in a test) for tensor groups of `tensor_size`; `make_backend(store, rank, size)` makes
/// one group's backend (every rank of the group calls it with the same prefixed store). Every
/// rank of the world calls it: groups are made in the same order everywhere (tensor, then data).
template <class MakeBackend>
DeviceMesh make_device_mesh(std::shared_ptr<ProcessGroupCommunicator> world, const c10::intrusive_ptr<c10d::Store>& store,
                            int tensor_size, MakeBackend make_backend, std::string_view option = "parallel.tensor") {
  DeviceMesh mesh;
  const int rank = world ? world->rank() : 0;
  const int size = world ? world->world_size() : 1;
  mesh.at = mesh_coordinates(rank, size, tensor_size, option);
  mesh.world = world;
  if (size == 1) return mesh;
  const auto device = world->device();
  if (mesh.at.tensor_size == 1) {
    mesh.data = world;
    return mesh;
  }
  if (mesh.at.data_size == 1) {
    mesh.tensor = world;
    return mesh;
  }
  auto group = [&](const std::string& name, int group_rank, int group_size) {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(name, store);
    return std::make_shared<ProcessGroupCommunicator>(make_backend(prefixed, group_rank, group_size), device, prefixed);
  };
  mesh.tensor = group(fmt::format("grpo/mesh/tensor_{}/", mesh.at.data_rank), mesh.at.tensor_rank, mesh.at.tensor_size);
  mesh.data = group(fmt::format("grpo/mesh/data_{}/", mesh.at.tensor_rank), mesh.at.data_rank, mesh.at.data_size);
  return mesh;
}

/// init_process_group, then the tensor x data mesh for tensor groups of `tensor_size` (the
/// backend of `device`: NCCL on GPUs, Gloo on the CPU). A world of one gives an empty mesh.
inline DeviceMesh init_device_mesh(const LaunchEnv& env, c10::Device device, int tensor_size,
                                   const ProcessGroupOptions& options = {}, std::string_view option = "parallel.tensor") {
  mesh_coordinates(env.rank, env.world_size, tensor_size, option);  // a bad mesh fails before any rendezvous
  auto world = init_process_group(env, device, options);
  if (!world) {
    DeviceMesh single;
    single.at = mesh_coordinates(0, 1, tensor_size, option);
    return single;
  }
  const auto timeout = options.timeout;
  return make_device_mesh(world, world->store(), tensor_size,
                          [&](const c10::intrusive_ptr<c10d::Store>& store, int rank, int size) -> c10::intrusive_ptr<c10d::Backend> {
#if defined(GRPO_WITH_CUDA)
                            if (world->device().is_cuda()) {
                              auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
                              nccl_options->timeout = timeout;
                              auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, nccl_options);
                              backend->setBoundDeviceId(world->device());
                              return backend;
                            }
#endif
                            return c10::make_intrusive<c10d::ProcessGroupGloo>(
                                store, rank, size, c10d::ProcessGroupGloo::Options::create_default(timeout));
                          },
                          option);
}

}  // namespace grpo
