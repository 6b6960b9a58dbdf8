#pragma once
// grpo::Communicator: the collectives data-parallel training needs, behind a small interface.
//
// The trainer talks to this interface only, so its header stays free of c10d (and of Gloo's and
// NCCL's headers); grpo/distributed/process_group.hpp implements it on LibTorch's c10d process
// groups (Gloo on the CPU, NCCL on GPUs) set up the way torchrun sets up PyTorch jobs. A trainer
// without a communicator is a world of one.
//
// The helpers below are what a data-parallel GRPO step does with it:
//   all_reduce_sum(comm, tensors)     sums a list of tensors in place, in buckets (one collective per
//                                     bucket, not per tensor)
//   synchronize_gradients(comm, ps)   sums the gradients of ps over ranks (a rank without a gradient
//                                     for a tensor contributes zeros); the loss is normalised by
//                                     counts taken over every rank, so the sum is the gradient of
//                                     the whole batch, not an average of per-rank means
//   broadcast_parameters(comm, ps)    every rank starts from rank 0's weights
//   all_reduce_sum/max(comm, doubles) host numbers (token counts, metric sums, peaks)
//   all_gather(comm, double)          every rank's number (counts that differ between ranks)
//   all_gather(comm, string)          every rank's text (the completions table)
//   all_gather_rows(comm, rows)       every rank's rows, counts may differ (per-sample metrics)

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/Device.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace grpo {

/// A group of processes (ranks) that run the same program on different data. Every rank must call
/// the same collectives in the same order with tensors of the same shape and dtype; a rank that
/// has nothing to contribute still calls them (with zeros), or the others wait forever.
class Communicator {
 public:
  virtual ~Communicator() = default;

  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int world_size() const = 0;
  /// Where collective buffers must live: the CPU for Gloo, this rank's GPU for NCCL.
  [[nodiscard]] virtual c10::Device device() const = 0;

  /// In place: t = sum over ranks of t. t is contiguous and on device().
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  /// In place: t = max over ranks of t. t is contiguous and on device().
  virtual void all_reduce_max(at::Tensor& t) = 0;
  /// In place: t = root's t. t is contiguous and on device().
  virtual void broadcast(at::Tensor& t, int root) = 0;
  /// [n, ...] on every rank -> [world_size * n, ...], rank 0's rows first. Equal shapes on all ranks.
  virtual at::Tensor all_gather(const at::Tensor& t) = 0;
  /// [world_size * n, ...] on every rank -> the sum over ranks of rows [rank * n, (rank + 1) * n):
  /// this rank's part of the sum. t is contiguous and on device(). By default a sum over the group
  /// and a cut (Gloo has no reduce-scatter); NCCL's reduce-scatter moves half the data.
  virtual at::Tensor reduce_scatter_sum(const at::Tensor& t) {
    at::Tensor sum = t.clone();
    all_reduce_sum(sum);
    const auto n = t.size(0) / world_size();
    return sum.narrow(0, rank() * n, n).contiguous();
  }
  /// Returns when every rank has called it (within the group's timeout).
  virtual void barrier() = 0;
  /// Returns when every rank has called it, however long that takes: for a stage one rank runs
  /// alone while the others wait (rank 0 training the reward model). Ranks call it in the same order.
  virtual void barrier_without_timeout() = 0;
  /// Point to point (blocking): sends t to rank dst / fills t from rank src. t is contiguous and on device().
  virtual void send(const at::Tensor& t, int dst) = 0;
  virtual void recv(at::Tensor& t, int src) = 0;

  [[nodiscard]] bool is_main() const { return rank() == 0; }
};

namespace detail {
/// The dtype a bucket travels in: the CPU collectives (Gloo) reduce half precision in float32.
inline at::ScalarType wire_dtype(at::ScalarType dtype, const c10::Device& device) {
  if (device.is_cpu() && (dtype == at::kHalf || dtype == at::kBFloat16)) return at::kFloat;
  return dtype;
}

/// Runs `op` on flat buckets of the tensors (consecutive tensors of one dtype, at most
/// bucket_bytes each unless one tensor alone is larger) and copies the result back.
template <class Op>
void for_each_bucket(Communicator& comm, std::span<at::Tensor> tensors, std::int64_t bucket_bytes, Op op) {
  const c10::Device device = comm.device();
  std::size_t begin = 0;
  while (begin < tensors.size()) {
    const auto dtype = tensors[begin].scalar_type();
    std::size_t end = begin;
    std::int64_t bytes = 0;
    while (end < tensors.size() && tensors[end].scalar_type() == dtype &&
           (end == begin || bytes + static_cast<std::int64_t>(tensors[end].nbytes()) <= bucket_bytes)) {
      bytes += static_cast<std::int64_t>(tensors[end].nbytes());
      ++end;
    }
    std::vector<at::Tensor> flat;
    flat.reserve(end - begin);
    for (std::size_t i = begin; i < end; ++i)
      flat.push_back(tensors[i].reshape({-1}).to(device, wire_dtype(dtype, device)));
    at::Tensor bucket = at::cat(flat);
    op(bucket);
    std::int64_t offset = 0;
    for (std::size_t i = begin; i < end; ++i) {
      const std::int64_t n = tensors[i].numel();
      tensors[i].copy_(bucket.narrow(0, offset, n).view(tensors[i].sizes()));
      offset += n;
    }
    begin = end;
  }
}
}  // namespace detail

/// 64 MiB: few collectives per update, bounded extra memory.
inline constexpr std::int64_t default_bucket_bytes = std::int64_t{64} << 20;

/// In place: each tensor = its sum over ranks. Tensors may live anywhere; they travel in buckets.
inline void all_reduce_sum(Communicator& comm, std::span<at::Tensor> tensors,
                           std::int64_t bucket_bytes = default_bucket_bytes) {
  if (comm.world_size() == 1 || tensors.empty()) return;
  detail::for_each_bucket(comm, tensors, bucket_bytes, [&](at::Tensor& b) { comm.all_reduce_sum(b); });
}

/// In place: each tensor = root's. Tensors may live anywhere; they travel in buckets.
inline void broadcast(Communicator& comm, std::span<at::Tensor> tensors, int root = 0,
                      std::int64_t bucket_bytes = default_bucket_bytes) {
  if (comm.world_size() == 1 || tensors.empty()) return;
  detail::for_each_bucket(comm, tensors, bucket_bytes, [&](at::Tensor& b) { comm.broadcast(b, root); });
}

namespace detail {
/// Host numbers through a float64 collective `op` (in place on a tensor on comm.device()).
template <class Op>
std::vector<double> reduce_host(Communicator& comm, std::vector<double> values, Op op) {
  if (comm.world_size() == 1 || values.empty()) return values;
  at::Tensor t = at::from_blob(values.data(), {static_cast<std::int64_t>(values.size())}, at::kDouble)
                     .to(comm.device(), /*non_blocking=*/false, /*copy=*/true);
  op(t);
  t = t.cpu();
  const double* p = t.data_ptr<double>();
  return std::vector<double>(p, p + values.size());
}
}  // namespace detail

/// Host numbers summed over ranks (in float64).
inline std::vector<double> all_reduce_sum(Communicator& comm, std::vector<double> values) {
  return detail::reduce_host(comm, std::move(values), [&](at::Tensor& t) { comm.all_reduce_sum(t); });
}

/// Host numbers, each the largest over ranks (in float64).
inline std::vector<double> all_reduce_max(Communicator& comm, std::vector<double> values) {
  return detail::reduce_host(comm, std::move(values), [&](at::Tensor& t) { comm.all_reduce_max(t); });
}

/// Every rank's number, in rank order, on every rank.
inline std::vector<double> all_gather(Communicator& comm, double value) {
  if (comm.world_size() == 1) return {value};
  const at::Tensor all =
      comm.all_gather(at::full({1}, value, at::TensorOptions(at::kDouble).device(comm.device()))).cpu().contiguous();
  return std::vector<double>(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
}

/// Every rank's rows [n_r, ...] concatenated in rank order, on every rank; n_r may differ between
/// ranks (the rows travel padded to the largest n_r). Trailing shape and dtype must agree.
inline at::Tensor all_gather_rows(Communicator& comm, const at::Tensor& rows) {
  if (comm.world_size() == 1) return rows;
  const auto on = at::TensorOptions().device(comm.device());
  const std::vector<double> n = all_gather(comm, static_cast<double>(rows.size(0)));
  const auto longest = static_cast<std::int64_t>(*std::max_element(n.begin(), n.end()));
  std::vector<std::int64_t> shape(rows.sizes().begin(), rows.sizes().end());
  shape[0] = std::max<std::int64_t>(longest, 1);  // no zero-size collective when every rank has none
  at::Tensor padded = at::zeros(shape, on.dtype(rows.scalar_type()));
  if (rows.size(0) > 0) padded.narrow(0, 0, rows.size(0)).copy_(rows);
  const at::Tensor all = comm.all_gather(padded);
  std::vector<at::Tensor> parts;
  for (std::size_t r = 0; r < n.size(); ++r)
    parts.push_back(all.narrow(0, static_cast<std::int64_t>(r) * shape[0], static_cast<std::int64_t>(n[r])));
  return at::cat(parts);
}

/// Every rank's string, in rank order, on every rank (any lengths; bytes travel as uint8).
inline std::vector<std::string> all_gather(Communicator& comm, const std::string& text) {
  if (comm.world_size() == 1) return {text};
  const std::vector<double> lengths = all_gather(comm, static_cast<double>(text.size()));
  const auto longest = static_cast<std::int64_t>(*std::max_element(lengths.begin(), lengths.end()));
  at::Tensor bytes = at::zeros({1, std::max<std::int64_t>(longest, 1)}, at::kByte);
  std::copy(text.begin(), text.end(), reinterpret_cast<char*>(bytes.data_ptr<std::uint8_t>()));
  const at::Tensor all = comm.all_gather(bytes.to(comm.device())).cpu().contiguous();
  std::vector<std::string> out;
  for (int r = 0; r < comm.world_size(); ++r) {
    const auto* row = reinterpret_cast<const char*>(all[r].data_ptr<std::uint8_t>());
    out.emplace_back(row, static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)]));
  }
  return out;
}

/// Gradients of `params` summed over ranks, in place. A tensor with a gradient on some rank but
/// not on this one contributes zeros here and receives the sum; a tensor without a gradient on
/// any rank keeps none (so AdamW skips it, as it would in one process).
inline void synchronize_gradients(Communicator& comm, std::span<const at::Tensor> params,
                                  std::int64_t bucket_bytes = default_bucket_bytes) {
  if (comm.world_size() == 1) return;
  std::vector<double> has(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) has[i] = params[i].grad().defined() ? 1.0 : 0.0;
  has = all_reduce_sum(comm, std::move(has));
  std::vector<at::Tensor> grads;
  grads.reserve(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (has[i] == 0.0) continue;
    at::Tensor p = params[i];  // shares the TensorImpl: setting its grad sets the parameter's
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  all_reduce_sum(comm, grads, bucket_bytes);
}

/// The rank that owns each tensor when optimizer state is sharded (ZeRO stage 1): largest tensor
/// first to the rank with the fewest elements so far (the lowest rank on a tie), so every rank
/// computes the same plan and the shards differ by at most one tensor's size.
/// The same rule on element counts (what grpo/plan/memory_plan.hpp plans with, before any tensor exists).
inline std::vector<int> shard_owners(std::span<const std::int64_t> numels, int world_size) {
  std::vector<std::size_t> order(numels.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return numels[a] > numels[b]; });
  std::vector<std::int64_t> load(static_cast<std::size_t>(std::max(1, world_size)), 0);
  std::vector<int> owner(numels.size(), 0);
  for (std::size_t i : order) {
    const auto r = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = static_cast<int>(r);
    load[r] += numels[i];
  }
  return owner;
}

inline std::vector<int> shard_owners(std::span<const at::Tensor> params, int world_size) {
  std::vector<std::int64_t> numels;
  numels.reserve(params.size());
  for (const auto& p : params) numels.push_back(p.numel());
  return shard_owners(std::span<const std::int64_t>(numels), world_size);
}

/// Every rank's `params` take rank 0's values (as DistributedDataParallel does at construction).
inline void broadcast_parameters(Communicator& comm, std::span<const at::Tensor> params,
                                 std::int64_t bucket_bytes = default_bucket_bytes) {
  if (comm.world_size() == 1) return;
  std::vector<at::Tensor> data;
  data.reserve(params.size());
  for (const at::Tensor& p : params) data.push_back(p.detach());
  broadcast(comm, data, 0, bucket_bytes);
}

}  // namespace grpo
