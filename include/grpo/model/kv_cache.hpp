#pragma once
// A preallocated ("static") key/value cache for batched prefill and decode.
//
// Layout: per layer, keys and values of [batch, kv_heads, max_length, head_dim], allocated once.
// Every row of the batch shares one write position (`length()`): prompts of different lengths are
// LEFT-padded, as transformers' generate() does, and a boolean key mask [batch, max_length]
// remembers which slots hold padding. Why left padding rather than per-row lengths: one write
// position per step means a decode step writes one contiguous slice per layer and attends over
// one [0, length) range, with no scatter and no ragged kernels; the cost is the padding slots of
// the shorter prompts (bounded by the longest prompt).
//
// Rotary positions are per row: a row's positions count its real tokens only (0 for its first
// real token, whatever the padding before it), i.e. cumsum(attention_mask) - 1 as in transformers.
//
// Rows that finish can be dropped (keep_rows) so later steps compute only the live ones.
//
// Static-window mode (set_static_window(W), one-token steps only) makes a decode step's work
// independent of host-side state, so it can be captured once in a CUDA graph and replayed: the
// write position lives in a device tensor, writes use index_copy_, attention always spans the
// first W slots with the slots not yet written masked out. The host-side length() is then
// advanced by the caller (advance_static) once per executed step, replays included.
//
// Usage by the model, once per forward:
//   positions = cache.begin_step(T, mask);      // [B, T]
//   for each layer: auto [k, v] = cache.update(layer, k_new, v_new);
//   cache.end_step();

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/index_copy.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/TensorOptions.h>
#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "grpo/core/error.hpp"

namespace grpo {

/// Shape and placement of a KVCache.
struct KVCacheOptions {
  std::int64_t num_layers = 0;          ///< decoder layers (config num_hidden_layers); required
  std::int64_t batch_size = 0;          ///< rows (sequences) at the start; required
  std::int64_t num_kv_heads = 0;        ///< key/value heads (config num_key_value_heads); required
  std::int64_t head_dim = 0;            ///< per-head dimension; required
  std::int64_t max_length = 0;          ///< slots per row: longest padded prompt + max new tokens; required
  c10::Device device = c10::kCPU;       ///< device of the cache; default CPU
  c10::ScalarType dtype = c10::kFloat;  ///< dtype of keys and values (the model's); default float32
};

class KVCache {
 public:
  explicit KVCache(const KVCacheOptions& options) : options_(options), batch_(options.batch_size) {
    const auto check = [](std::int64_t value, const char* field) {
      if (value <= 0) {
        throw Error(fmt::format("KVCacheOptions.{}: expected > 0, found {}", field, value));
      }
    };
    check(options.num_layers, "num_layers");
    check(options.batch_size, "batch_size");
    check(options.num_kv_heads, "num_kv_heads");
    check(options.head_dim, "head_dim");
    check(options.max_length, "max_length");
    const auto tensor_options = at::TensorOptions().device(options.device).dtype(options.dtype);
    keys_.reserve(static_cast<std::size_t>(options.num_layers));
    values_.reserve(static_cast<std::size_t>(options.num_layers));
    for (std::int64_t layer = 0; layer < options.num_layers; ++layer) {
      // Zeroed, not empty: padding slots are masked out, but uninitialised memory may hold NaN
      // bit patterns, and 0 * NaN in the attention product would still be NaN.
      keys_.push_back(at::zeros({options.batch_size, options.num_kv_heads, options.max_length, options.head_dim}, tensor_options));
      values_.push_back(at::zeros({options.batch_size, options.num_kv_heads, options.max_length, options.head_dim}, tensor_options));
    }
    key_mask_ = at::zeros({options.batch_size, options.max_length}, at::TensorOptions().device(options.device).dtype(at::kBool));
    next_positions_ = at::zeros({options.batch_size}, at::TensorOptions().device(options.device).dtype(at::kLong));
    slot_ = at::zeros({1}, at::TensorOptions().device(options.device).dtype(at::kLong));
  }

  std::int64_t num_layers() const { return options_.num_layers; }
  std::int64_t batch_size() const { return batch_; }
  std::int64_t length() const { return length_; }             ///< slots written, shared by every row
  std::int64_t capacity() const { return options_.max_length; }
  bool has_padding() const { return has_padding_; }           ///< some written slot is padding
  bool in_step() const { return step_tokens_ > 0; }
  std::int64_t static_window() const { return static_window_; }  ///< 0 when off
  const KVCacheOptions& options() const { return options_; }

  /// Starts a forward of `new_tokens` tokens per row. `attention_mask` [B, new_tokens] (1 = real,
  /// 0 = padding) or undefined for all-real. Returns the rotary position ids [B, new_tokens].
  at::Tensor begin_step(std::int64_t new_tokens, const at::Tensor& attention_mask = {}) {
    if (step_tokens_ != 0) throw Error("KVCache::begin_step: the previous step was not ended (end_step)");
    if (new_tokens <= 0) throw Error(fmt::format("KVCache::begin_step: expected new_tokens > 0, found {}", new_tokens));
    if (length_ + new_tokens > options_.max_length) {
      throw Error(fmt::format("KVCache: capacity exceeded: {} slots used + {} new > max_length {}; create the cache "
                              "with max_length >= padded prompt length + max new tokens",
                              length_, new_tokens, options_.max_length));
    }
    const auto device_long = at::TensorOptions().device(options_.device).dtype(at::kLong);
    at::Tensor positions;
    if (static_window_ > 0) {
      if (new_tokens != 1 || attention_mask.defined()) {
        throw Error("KVCache::begin_step: static-window mode takes one real token per row and step (decode)");
      }
      // index_copy_ with a device index: the write HF's StaticCache uses under CUDA graphs
      key_mask_.narrow(0, 0, batch_).index_copy_(1, slot_, real_column_.narrow(0, 0, batch_));
      positions = next_positions_.narrow(0, 0, batch_).unsqueeze(1).clone();
    } else if (attention_mask.defined()) {
      if (attention_mask.dim() != 2 || attention_mask.size(0) != batch_ || attention_mask.size(1) != new_tokens) {
        throw Error(fmt::format("KVCache::begin_step: expected attention_mask of shape [{}, {}], found {}", batch_,
                                new_tokens, shape_string(attention_mask)));
      }
      const auto real = attention_mask.to(options_.device).to(at::kLong);
      const auto counted = at::cumsum(real, 1);
      positions = (next_positions_.narrow(0, 0, batch_).unsqueeze(1) + counted - 1).clamp_min(0);
      key_mask_.narrow(0, 0, batch_).narrow(1, length_, new_tokens).copy_(real.to(at::kBool));
      next_positions_.narrow(0, 0, batch_).add_(counted.select(1, new_tokens - 1));
      if (!has_padding_) has_padding_ = !real.all().item<bool>();
    } else {
      positions = next_positions_.narrow(0, 0, batch_).unsqueeze(1) + at::arange(new_tokens, device_long).unsqueeze(0);
      key_mask_.narrow(0, 0, batch_).narrow(1, length_, new_tokens).fill_(true);
      next_positions_.narrow(0, 0, batch_).add_(new_tokens);
    }
    step_tokens_ = new_tokens;
    return positions;
  }

  /// Writes layer `layer`'s new keys/values [B, kv_heads, T, D] at the current position and returns
  /// views of everything written so far for that layer: [B, kv_heads, length + T, D] each.
  std::pair<at::Tensor, at::Tensor> update(std::int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
    if (step_tokens_ == 0) throw Error("KVCache::update: called outside begin_step/end_step");
    if (layer < 0 || layer >= options_.num_layers) {
      throw Error(fmt::format("KVCache::update: layer {} out of range [0, {})", layer, options_.num_layers));
    }
    const auto index = static_cast<std::size_t>(layer);
    auto rows_k = keys_[index].narrow(0, 0, batch_);
    auto rows_v = values_[index].narrow(0, 0, batch_);
    if (static_window_ > 0) {
      rows_k.index_copy_(2, slot_, keys);
      rows_v.index_copy_(2, slot_, values);
      return {rows_k.narrow(2, 0, static_window_), rows_v.narrow(2, 0, static_window_)};
    }
    rows_k.narrow(2, length_, step_tokens_).copy_(keys);
    rows_v.narrow(2, length_, step_tokens_).copy_(values);
    return {rows_k.narrow(2, 0, length_ + step_tokens_), rows_v.narrow(2, 0, length_ + step_tokens_)};
  }

  /// Which slots of the current step's key range hold real tokens: [B, length + T] bool.
  at::Tensor key_mask() const { return key_mask_.narrow(0, 0, batch_).narrow(1, 0, length_ + step_tokens_); }

  /// Which key slots the current step may attend to: [B, S] bool, S = length + T (or the static
  /// window), or undefined when every slot in [0, length + T) holds a real token.
  at::Tensor key_valid() const {
    if (static_window_ > 0) {
      // slots beyond the write position are not written yet
      return key_mask_.narrow(0, 0, batch_).narrow(1, 0, static_window_).logical_and(window_slots_.le(slot_));
    }
    return has_padding_ ? key_mask() : at::Tensor();
  }

  /// Rotary position of each row's next token: [B] int64.
  at::Tensor next_positions() const { return next_positions_.narrow(0, 0, batch_); }

  void end_step() {
    if (step_tokens_ == 0) throw Error("KVCache::end_step: no step in progress");
    if (static_window_ > 0) {
      slot_.add_(1);
      next_positions_.narrow(0, 0, batch_).add_(1);
    } else {
      length_ += step_tokens_;
    }
    step_tokens_ = 0;
  }

  /// Enters static-window mode with `window` slots (length() < window <= capacity()), or leaves
  /// it with 0. See the header comment.
  void set_static_window(std::int64_t window) {
    if (step_tokens_ != 0) throw Error("KVCache::set_static_window: not allowed inside a step");
    if (window != 0 && (window <= length_ || window > options_.max_length)) {
      throw Error(fmt::format("KVCache::set_static_window: expected a window in ({}, {}], found {}", length_,
                              options_.max_length, window));
    }
    static_window_ = window;
    if (window > 0) {
      slot_.fill_(length_);
      window_slots_ = at::arange(window, at::TensorOptions().device(options_.device).dtype(at::kLong));
      real_column_ = at::ones({options_.batch_size, 1}, at::TensorOptions().device(options_.device).dtype(at::kBool));
    }
  }

  /// Static-window mode: records on the host that `steps` steps ran on the device.
  void advance_static(std::int64_t steps = 1) {
    if (static_window_ == 0) throw Error("KVCache::advance_static: not in static-window mode");
    if (length_ + steps > static_window_) {
      throw Error(fmt::format("KVCache::advance_static: the static window of {} slots is full", static_window_));
    }
    length_ += steps;
  }

  /// Keeps only rows `rows` ([B'] int64, indices into the current rows, in the new order) and
  /// drops the others, so later steps compute B' rows. Copies the written slots once.
  void keep_rows(const at::Tensor& rows) { select_rows(rows, batch_, "keep_rows"); }

  /// The rows `rows` ([B'] int64, indices into the current rows, repeats allowed) become the
  /// cache's rows, B' up to the allocated batch: row r is a copy of current row rows[r] (its
  /// keys, values, mask and next position). Requests that share a prompt are prefilled once and
  /// then copied into their own rows this way.
  void copy_rows(const at::Tensor& rows) { select_rows(rows, options_.batch_size, "copy_rows"); }

  /// Empties the cache for a new batch of at most the original batch size.
  void reset(std::int64_t batch_size = -1) {
    if (batch_size > options_.batch_size) {
      throw Error(fmt::format("KVCache::reset: batch {} > allocated {}", batch_size, options_.batch_size));
    }
    batch_ = batch_size > 0 ? batch_size : options_.batch_size;
    length_ = 0;
    step_tokens_ = 0;
    has_padding_ = false;
    static_window_ = 0;
    key_mask_.fill_(false);
    next_positions_.zero_();
  }

 private:
  void select_rows(const at::Tensor& rows, std::int64_t most, const char* what) {
    if (step_tokens_ != 0) throw Error(fmt::format("KVCache::{}: not allowed inside a step", what));
    if (static_window_ != 0)
      throw Error(fmt::format("KVCache::{}: leave static-window mode first (set_static_window(0))", what));
    const auto kept = rows.numel();
    if (rows.dim() != 1 || kept == 0 || kept > most) {
      throw Error(fmt::format("KVCache::{}: expected 1 to {} row indices, found shape {}", what, most, shape_string(rows)));
    }
    if (rows.is_cpu() && (rows.min().item<std::int64_t>() < 0 || rows.max().item<std::int64_t>() >= batch_)) {
      throw Error(fmt::format("KVCache::{}: row indices must lie in [0, {})", what, batch_));
    }
    const auto index = rows.to(options_.device).to(at::kLong);
    for (std::size_t layer = 0; layer < keys_.size(); ++layer) {
      compact(keys_[layer], index, kept, 2);
      compact(values_[layer], index, kept, 2);
    }
    compact(key_mask_, index, kept, 1);
    next_positions_.narrow(0, 0, kept).copy_(next_positions_.narrow(0, 0, batch_).index_select(0, index));
    batch_ = kept;
  }

  static std::string shape_string(const at::Tensor& t) {
    if (!t.defined()) return "an undefined tensor";
    std::string out = "[";
    for (std::int64_t d = 0; d < t.dim(); ++d) out += (d ? ", " : "") + std::to_string(t.size(d));
    return out + "]";
  }

  // Moves rows `index` of the first `length_` slots (dimension `slot_dim`) to rows 0..kept-1
  // (index_select makes a copy first, so a row may go to a later row, or to several).
  void compact(at::Tensor& storage, const at::Tensor& index, std::int64_t kept, std::int64_t slot_dim) const {
    if (length_ == 0) return;
    auto written = storage.narrow(0, 0, batch_).narrow(slot_dim, 0, length_);
    const auto selected = written.index_select(0, index);
    storage.narrow(0, 0, kept).narrow(slot_dim, 0, length_).copy_(selected);
  }

  KVCacheOptions options_;
  std::vector<at::Tensor> keys_;
  std::vector<at::Tensor> values_;
  at::Tensor key_mask_;        // [B_max, max_length] bool
  at::Tensor next_positions_;  // [B_max] int64
  at::Tensor slot_;            // [1] int64: the write position in static-window mode
  at::Tensor window_slots_;    // [window] int64: 0 .. window - 1
  at::Tensor real_column_;     // [B_max, 1] bool, all true: what a decode step writes into key_mask_
  std::int64_t static_window_ = 0;
  std::int64_t batch_ = 0;
  std::int64_t length_ = 0;
  std::int64_t step_tokens_ = 0;
  bool has_padding_ = false;
};

}  // namespace grpo
