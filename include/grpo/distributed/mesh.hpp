#pragma once
// grpo::DeviceMesh: WORLD_SIZE = T x D ranks as a tensor-parallel x data-parallel grid.
//
//   world rank w = d * T + t        t = tensor rank (0 .. T-1), d = data rank (0 .. D-1)
//   tensor group of w: ranks d*T .. d*T + T - 1  (consecutive: one node's GPUs, NVLink)
//   data group of w:   ranks t, t + T, t + 2T, ...  (the same slice of the model on every node)
//
// A model is split over its tensor group (grpo::TensorParallel); gradients and batches go over
// the data group. The groups are made by init_device_mesh (grpo/distributed/process_group.hpp,
// c10d); this header only holds them and the arithmetic, so the model and the trainer need no c10d.

#include <fmt/format.h>

#include <memory>
#include <string_view>
#include <vector>

#include "grpo/core/error.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/distributed/tensor_parallel.hpp"

namespace grpo {

/// Where world rank `rank` sits in a T x D grid.
struct MeshCoordinates {
  int tensor_size = 1;  ///< T
  int data_size = 1;    ///< D = WORLD_SIZE / T
  int tensor_rank = 0;  ///< t = rank % T
  int data_rank = 0;    ///< d = rank / T

  /// The world ranks of this rank's tensor group (consecutive) and data group (stride T).
  [[nodiscard]] std::vector<int> tensor_group_ranks() const {
    std::vector<int> out;
    for (int t = 0; t < tensor_size; ++t) out.push_back(data_rank * tensor_size + t);
    return out;
  }
  [[nodiscard]] std::vector<int> data_group_ranks() const {
    std::vector<int> out;
    for (int d = 0; d < data_size; ++d) out.push_back(d * tensor_size + tensor_rank);
    return out;
  }
};

/// The coordinates of `rank` in a world of `world_size` split into tensor groups of
/// `tensor_size`; an error names `option` when WORLD_SIZE is not a multiple of it.
inline MeshCoordinates mesh_coordinates(int rank, int world_size, int tensor_size,
                                        std::string_view option = "parallel.tensor") {
  if (tensor_size < 1) throw Error(fmt::format("{}: expected >= 1, found {}", option, tensor_size));
  if (world_size % tensor_size != 0) {
    std::string sizes;
    for (int t = 1; t <= world_size; ++t)
      if (world_size % t == 0) sizes += (sizes.empty() ? "" : ", ") + std::to_string(t);
    throw Error(fmt::format("{} = {}: WORLD_SIZE {} is not a multiple of it; launch T x D processes (torchrun "
                            "--nproc_per_node) or pick a tensor size that divides {}: {}",
                            option, tensor_size, world_size, world_size, sizes));
  }
  return {tensor_size, world_size / tensor_size, rank % tensor_size, rank / tensor_size};
}

/// The groups of one rank: the world, its tensor group and its data group (each null when it
/// would be a group of one, so a plain single process needs none).
struct DeviceMesh {
  MeshCoordinates at{};
  std::shared_ptr<Communicator> world;   ///< every rank; null for a world of one
  std::shared_ptr<Communicator> tensor;  ///< the T ranks a model is split over; null when T = 1
  std::shared_ptr<Communicator> data;    ///< the D ranks that hold the same slices; null when D = 1

  /// The tensor group as a model takes it.
  [[nodiscard]] TensorParallel tensor_parallel() const { return {tensor.get()}; }
  /// Whether this rank writes what the run writes once (world rank 0).
  [[nodiscard]] bool is_main() const { return world == nullptr || world->rank() == 0; }
};

}  // namespace grpo
