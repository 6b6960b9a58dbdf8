#pragma once
// RewardTable: the rewards of a batch, one row per reward, as the advantage estimators read them.

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "grpo/core/error.hpp"

namespace grpo {

/// A view of K rewards for N samples, reward-major: `row(k)[i]` is reward k of sample i.
/// Shape [K, N]; N is a multiple of the group size, each group's samples contiguous.
template <class T>
struct RewardTableView {
  T* data = nullptr;          ///< K * N values, row-major
  std::size_t rewards = 0;    ///< K: number of rewards
  std::size_t samples = 0;    ///< N: number of samples (groups x group size)

  [[nodiscard]] std::span<T> row(std::size_t k) const { return {data + k * samples, samples}; }
  [[nodiscard]] std::span<T> values() const { return {data, rewards * samples}; }
  operator RewardTableView<const T>() const  // NOLINT(google-explicit-constructor): view to const view
    requires(!std::is_const_v<T>)
  {
    return {data, rewards, samples};
  }
};

/// Owning [K, N] table of float rewards.
class RewardTable {
 public:
  RewardTable() = default;
  RewardTable(std::size_t rewards, std::size_t samples)
      : values_(rewards * samples, 0.0f), rewards_(rewards), samples_(samples) {}

  [[nodiscard]] std::size_t rewards() const { return rewards_; }
  [[nodiscard]] std::size_t samples() const { return samples_; }
  [[nodiscard]] std::span<float> row(std::size_t k) { return view().row(k); }
  [[nodiscard]] std::span<const float> row(std::size_t k) const { return view().row(k); }
  [[nodiscard]] RewardTableView<float> view() { return {values_.data(), rewards_, samples_}; }
  [[nodiscard]] RewardTableView<const float> view() const { return {values_.data(), rewards_, samples_}; }

 private:
  std::vector<float> values_;
  std::size_t rewards_ = 0;
  std::size_t samples_ = 0;
};

}  // namespace grpo
