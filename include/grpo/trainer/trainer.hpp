#pragma once
// grpo::Trainer: one GRPO run, composed at compile time from a policy, a set of rewards, an
// advantage estimator and a policy loss.
//
//   prompts --rollout()--> samples --score()--> rewards [K, N] --advantages()--> A [N]
//           --update()--> micro-batches -> log-probs -> loss -> backward -> clip -> AdamW step
//
// The phases are public and explicit about who does what (the sampler generates, the scorer
// scores, the updater updates). Every random choice derives from (seed, step): the prompt order
// from (seed, data position), sampling seeds from (seed, step, sample index), so a resumed run
// repeats exactly what an uninterrupted one does.
//
// Data parallel (distribute()): each of W ranks holds a replica of the policy and takes a
// contiguous 1/W of every step's prompts, whole groups, so advantages stay local. Sample seeds use
// the global sample index, the loss normalisers are counted over all ranks and the gradients
// summed, so W ranks take the step one process would take on the whole batch. Metrics are
// gathered; rank 0 writes metrics, samples and checkpoints.

#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "grpo/advantage/reward_statistics.hpp"
#include "grpo/concepts/advantage.hpp"
#include "grpo/concepts/loss.hpp"
#include "grpo/concepts/policy.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/rewards/reward_set.hpp"
#include "grpo/sampling/prompts.hpp"
#include "grpo/text/completion.hpp"
#include "grpo/text/repetition.hpp"
#include "grpo/text/word_count.hpp"
#include "grpo/trainer/checkpoint.hpp"
#include "grpo/trainer/freeze.hpp"
#include "grpo/trainer/memory.hpp"
#include "grpo/trainer/metrics.hpp"
#include "grpo/trainer/options.hpp"
#include "grpo/trainer/prompt_dataset.hpp"
#include "grpo/trainer/rollout.hpp"

namespace grpo {

/// A set of K rewards scored into a [K, N] table: grpo::RewardSet<Rs...>, or anything shaped like it.
template <class R>
concept RewardTableScorer = requires(R& r, SampleBatch batch, RewardTableView<float> out) {
  { R::size } -> std::convertible_to<std::size_t>;
  r.score(batch, out);
  { r.names() };
};

namespace detail {
/// CUDA autocast to bfloat16 for the scope's lifetime (the C++ twin of torch.autocast("cuda")).
class Bf16AutocastScope {
 public:
  explicit Bf16AutocastScope(bool on) : on_(on) {
    if (!on_) return;
    was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    was_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~Bf16AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, was_dtype_);
  }
  Bf16AutocastScope(const Bf16AutocastScope&) = delete;
  Bf16AutocastScope& operator=(const Bf16AutocastScope&) = delete;

 private:
  bool on_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};
}  // namespace detail

/// What update() measured (host numbers, read once per step).
struct UpdateStats {
  double loss = 0.0;            ///< sum of the micro-batch losses of the last epoch (the whole-batch loss)
  double clip_fraction = 0.0;   ///< clipped tokens / tokens, over every epoch
  double approx_kl = 0.0;       ///< mean 0.5 (log r)^2 against pi_old
  double ref_kl = 0.0;          ///< mean KL estimate against the reference (0 without one)
  /// The sampler against the trainer on the same weights (verl's rollout_probs_diff), over the
  /// completion tokens the trainer scored before its first update: mean and max of
  /// |exp(logprob_sampler) - exp(logprob_trainer)| and the mean of logprob_sampler -
  /// logprob_trainer. Nonzero from numerics (batching, kernels, bf16) and, with top-p < 1 or
  /// top-k, from the truncation the sampler's log-probs include.
  double sampler_prob_diff_mean = 0.0;
  double sampler_prob_diff_max = 0.0;
  double sampler_logprob_diff_mean = 0.0;
  std::int64_t sampler_compared_tokens = 0;  ///< tokens compared (0: the sampler recorded no log-probs; the means are then 0)
  double entropy = 0.0;         ///< mean token entropy of the policy (first epoch)
  double grad_norm = 0.0;       ///< global gradient norm before clipping, mean over updates
  double lr = 0.0;              ///< learning rate of the last update
  std::int64_t updates = 0;     ///< optimizer updates attempted
  std::int64_t skipped_updates = 0;  ///< updates skipped because the gradient norm was not finite
  std::int64_t trained_samples = 0;
  std::int64_t trained_tokens = 0;
};

template <Policy P, RewardTableScorer Rewards, class Advantage, PolicyLoss Loss>
  requires AdvantageEstimatorFor<Advantage, Rewards::size>
class Trainer {
 public:
  static constexpr std::size_t num_rewards = Rewards::size;

  /// `policy` (and `reference`, if given: a frozen policy for the KL term) must outlive the trainer.
  /// The optimizer owns the policy's parameters that require a gradient at construction; freeze
  /// others first (grpo::freeze_parameters). Checkpoints then hold AdamW state for those only.
  Trainer(P& policy, Rewards rewards, Advantage advantage, Loss loss, PromptDataset prompts, TrainerOptions options,
          P* reference = nullptr)
      : policy_(policy),
        reference_(reference),
        rewards_(std::move(rewards)),
        advantage_(std::move(advantage)),
        loss_(std::move(loss)),
        prompts_(std::move(prompts)),
        options_(std::move(options)) {
    options_.validate();
    params_ = trainable(policy_.parameters());
    if (params_.empty()) {
      throw Error("Trainer: the policy has no parameters to train (none, or all frozen: requires_grad is false on every one)");
    }
    optimizer_ = make_optimizer(params_);
    reward_names_ = rewards_.names();
    memory_ = PeakMemory(params_.front().device());
  }

  [[nodiscard]] const TrainerOptions& options() const { return options_; }
  [[nodiscard]] std::int64_t step_index() const { return step_; }
  [[nodiscard]] std::uint64_t data_position() const { return data_position_; }
  [[nodiscard]] const std::array<std::string, num_rewards>& reward_names() const { return reward_names_; }
  [[nodiscard]] Rewards& rewards() { return rewards_; }
  /// This process's rank and the number of ranks (0 and 1 without distribute()).
  [[nodiscard]] int rank() const { return comm_ ? comm_->rank() : 0; }
  [[nodiscard]] int world_size() const { return comm_ ? comm_->world_size() : 1; }

  /// Makes this trainer one rank of a data-parallel run: every rank constructs its trainer the
  /// same way (same options, prompts and seed) and calls distribute() with its communicator
  /// (grpo::init_process_group). The policy's parameters take rank 0's values. prompts_per_step
  /// must be a multiple of the world size. A null communicator (or a world of one) is one process.
  /// With options().shard_optimizer_state, this rank's optimizer keeps only the tensors it owns
  /// (grpo::shard_owners), with any state they already had; call distribute() before resume()
  /// then, so that each rank loads only its shard's moments. First of all, each rank's settings
  /// are compared with rank 0's (check_ranks_agree).
  void distribute(std::shared_ptr<Communicator> comm) {
    if (comm && comm->world_size() > 1) {
      check_ranks_agree(*comm, "distribute()");  // before any collective whose shape they decide
      if (options_.prompts_per_step % comm->world_size() != 0) {
        throw Error("prompts_per_step: expected a multiple of the world size " + std::to_string(comm->world_size()) +
                    " (each rank takes whole groups of an equal share of the prompts), found " +
                    std::to_string(options_.prompts_per_step));
      }
      const auto params = policy_.parameters();
      broadcast_parameters(*comm, params);
      if (reference_ != nullptr) {
        const auto frozen = reference_->parameters();
        // A reference that shares the policy's tensors (a LoRA policy's base-model view) is in sync already.
        const bool shared = !frozen.empty() && !params.empty() && frozen.front().is_same(params.front());
        if (!shared) broadcast_parameters(*comm, frozen);
      }
      if (options_.shard_optimizer_state) {
        owners_ = shard_owners(params_, comm->world_size());
        std::vector<at::Tensor> owned;
        for (std::size_t i = 0; i < params_.size(); ++i)
          if (owners_[i] == comm->rank()) owned.push_back(params_[i]);
        auto sharded = make_optimizer(owned);
        for (const auto& p : owned) {
          auto it = optimizer_->state().find(p.unsafeGetTensorImpl());
          if (it != optimizer_->state().end()) sharded->state()[p.unsafeGetTensorImpl()] = std::move(it->second);
        }
        optimizer_ = std::move(sharded);
      }
    }
    comm_ = std::move(comm);
  }

  /// This rank's optimizer: every trainable tensor, or its shard of them (shard_optimizer_state).
  [[nodiscard]] torch::optim::AdamW& optimizer() { return *optimizer_; }

  // ---------------------------------------------------------------------------------------
  // The phases of a step.

  /// Sampler: wraps each prompt in the template and samples group_size completions of each.
  /// Seeds: sample i of step s uses seed' + first_sample + i with seed' = mix(seed, s);
  /// first_sample is the global index of this rank's first sample (0 in one process).
  Rollout rollout(std::span<const PromptRecord* const> prompts, std::int64_t step, std::uint64_t first_sample = 0) {
    Rollout r;
    r.group_size = options_.group_size;
    std::vector<std::string> requests;
    for (const PromptRecord* p : prompts) {
      r.prompts.push_back(*p);
      r.templated.push_back(apply_prompt_template(p->prompt, options_.prompt));
      for (std::int64_t g = 0; g < options_.group_size; ++g) requests.push_back(r.templated.back());
    }
    SamplingOptions sampling = options_.sampling;
    sampling.seed = step_seed(step) + first_sample;
    {
      detail::Bf16AutocastScope autocast(options_.bf16_autocast);
      r.generations = policy_.generate(requests, sampling);
    }
    if (r.generations.size() != requests.size()) {
      throw Error("Trainer: the policy returned " + std::to_string(r.generations.size()) + " generations for " +
                  std::to_string(requests.size()) + " requests");
    }
    r.link_samples();
    const auto first_group = static_cast<std::size_t>(first_sample / static_cast<std::uint64_t>(options_.group_size));
    for (std::size_t g = 0; g < r.prompts.size(); ++g) r.global_groups.push_back(first_group + g);
    return r;
  }

  /// Scorer: every reward on every sample -> [K, N].
  RewardTable score(const Rollout& r) {
    RewardTable table(num_rewards, r.samples.size());
    rewards_.score(r.samples, table.view());
    if (options_.truncation == TruncationPolicy::zero_reward) {
      for (std::size_t i = 0; i < r.samples.size(); ++i)
        if (r.samples[i].truncated)
          for (std::size_t k = 0; k < num_rewards; ++k) table.row(k)[i] = 0.0f;
    }
    return table;
  }

  /// Advantage estimator: [K, N] -> [N].
  std::vector<float> advantages(const RewardTable& table) const {
    std::vector<float> adv(table.samples());
    advantage_.compute(table.view(), static_cast<std::size_t>(options_.group_size), adv);
    return adv;
  }

  /// Updater: epochs x mini-batches optimizer steps on the selected samples. Normalisers are
  /// counted over each mini-batch as a whole (over every rank when distributed), so gradient
  /// accumulation over micro-batches (and the sum over ranks) gives the gradient of the whole
  /// mini-batch. Every rank runs the same optimizer steps, also one that has no samples.
  UpdateStats update(const Rollout& r, std::span<const float> adv, std::span<const std::size_t> selected) {
    UpdateStats stats;
    detail::Bf16AutocastScope autocast(options_.bf16_autocast);
    const std::int64_t pad_id = pad_token_id(r);
    // Fixed partition of the step's selected samples into mini-batches by their position j in the
    // step's global group order (Rollout::global_groups; then in order within a group): j goes to
    // mini-batch j mod M.
    // Every rank holds part of every mini-batch (so all ranks work on each optimizer step), and
    // the partition does not depend on the number of ranks (so W ranks form one process's
    // mini-batches exactly).
    const auto parts = static_cast<std::size_t>(options_.mini_batches);
    const std::vector<std::size_t> position = selected_positions(r, selected);
    std::vector<std::vector<std::size_t>> members(parts);
    for (std::size_t k = 0; k < selected.size(); ++k) members[position[k] % parts].push_back(selected[k]);
    std::vector<std::vector<MicroBatch>> minibatches;
    std::vector<double> counts;  // tokens and sequences of each part, then summed over ranks
    for (std::size_t m = 0; m < parts; ++m) {
      auto micro = pack_micro_batches(r, members[m], options_.micro_batch_tokens, pad_id);
      double tokens = 0.0;
      for (const auto& mb : micro) tokens += static_cast<double>(mb.completion_tokens);
      counts.push_back(tokens);
      counts.push_back(static_cast<double>(members[m].size()));
      minibatches.push_back(std::move(micro));
    }
    if (comm_) counts = all_reduce_sum(*comm_, std::move(counts));
    std::vector<LossNormalizer> normalizers;
    std::vector<std::vector<MicroBatch>> kept;  // parts with a sample on some rank
    for (std::size_t m = 0; m < parts; ++m) {
      if (counts[2 * m + 1] == 0) continue;
      normalizers.push_back({.tokens = counts[2 * m], .sequences = counts[2 * m + 1],
                             .horizon = static_cast<double>(options_.sampling.max_new_tokens)});
      kept.push_back(std::move(minibatches[m]));
    }
    minibatches = std::move(kept);
    if (minibatches.empty()) return stats;
    const bool single_pass = options_.epochs == 1 && minibatches.size() == 1;
    const OldLogprobSource source =
        options_.old_logprobs == OldLogprobSource::automatic
            ? (single_pass ? OldLogprobSource::automatic : OldLogprobSource::recompute)
            : options_.old_logprobs;
    const double temperature = options_.sampling.greedy ? 1.0 : options_.sampling.temperature;
    // The trainer's log-probs before any update against the sampler's: [abs prob diff sum, logprob
    // diff sum, tokens], and the largest abs prob diff.
    double mismatch[3] = {0.0, 0.0, 0.0};
    double mismatch_max = 0.0;
    auto compare_with_sampler = [&](const at::Tensor& trainer_logprobs, const MicroBatch& mb) {
      const at::Tensor mask = mb.batch.completion_mask * mb.sampler_recorded;  // tokens the sampler recorded
      const at::Tensor trained = trainer_logprobs.detach().to(at::kFloat).cpu();
      const at::Tensor prob_diff = (mb.sampler_logprobs.exp() - trained.exp()).abs() * mask;
      mismatch[0] += prob_diff.sum().item<double>();
      mismatch[1] += ((mb.sampler_logprobs - trained) * mask).sum().item<double>();
      mismatch[2] += mask.sum().item<double>();
      if (prob_diff.numel() > 0) mismatch_max = std::max(mismatch_max, prob_diff.max().item<double>());
    };
    // pi_old and pi_ref, once per step, before any parameter moves.
    if (source == OldLogprobSource::recompute || reference_ != nullptr) {
      at::NoGradGuard no_grad;
      for (auto& micro : minibatches)
        for (auto& mb : micro) {
          if (source == OldLogprobSource::recompute) {
            mb.old_logprobs = policy_.logprobs(mb.batch, temperature).logprobs.detach().to(at::kFloat).cpu();
            compare_with_sampler(mb.old_logprobs, mb);
          }
          if (reference_ != nullptr)
            mb.ref_logprobs = reference_->logprobs(mb.batch, temperature).logprobs.detach().to(at::kFloat).cpu();
        }
    }
    at::Tensor clipped, tokens, approx_kl, ref_kl, entropy_sum, entropy_tokens;
    double grad_norm_sum = 0.0;
    for (std::int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
      double epoch_loss = 0.0;
      for (std::size_t m = 0; m < minibatches.size(); ++m) {
        at::Tensor loss_sum;
        for (auto& mb : minibatches[m]) {
          TokenLogprobs lp = policy_.logprobs(mb.batch, temperature);
          const auto device = lp.logprobs.device();
          // Before the first update: the weights the sampler used (all of them when recomputed above).
          if (source != OldLogprobSource::recompute && epoch == 0 && m == 0) compare_with_sampler(lp.logprobs, mb);
          PolicyLossInputs in;
          in.logprobs = lp.logprobs;
          in.mask = mb.batch.completion_mask.to(device);
          in.old_logprobs = source == OldLogprobSource::automatic ? lp.logprobs.detach()
                            : source == OldLogprobSource::sampler  ? mb.sampler_logprobs.to(device)
                                                                   : mb.old_logprobs.to(device);
          if (mb.ref_logprobs.defined()) in.ref_logprobs = mb.ref_logprobs.to(device);
          in.entropy = lp.entropy;  // for an entropy bonus (undefined when the policy computes none)
          std::vector<float> a;
          a.reserve(mb.samples.size());
          for (std::size_t i : mb.samples) a.push_back(adv[i]);
          in.advantages = at::from_blob(a.data(), {static_cast<std::int64_t>(a.size())}, at::kFloat).clone().to(device);
          PolicyLossOutput out = loss_(in, normalizers[m]);
          out.loss.backward();
          accumulate(loss_sum, out.loss.detach());
          accumulate(clipped, out.stats.clipped_tokens);
          accumulate(tokens, out.stats.tokens);
          accumulate(approx_kl, out.stats.approx_kl);
          if (out.stats.ref_kl.defined()) accumulate(ref_kl, out.stats.ref_kl);
          if (epoch == 0 && lp.entropy.defined()) {
            accumulate(entropy_sum, (lp.entropy.detach() * in.mask).sum());
            accumulate(entropy_tokens, in.mask.sum());
          }
        }
        if (comm_) synchronize_gradients(*comm_, params_);
        const double norm = clip_gradients();  // identical on every rank: the gradients are summed
        stats.lr = options_.lr.at(update_index_);
        if (std::isfinite(norm)) {
          grad_norm_sum += norm;
          for (auto& group : optimizer_->param_groups()) group.options().set_lr(stats.lr);
          optimizer_->step();
          if (!owners_.empty()) broadcast_from_owners();
        } else {
          ++stats.skipped_updates;  // a NaN/inf gradient would poison the weights and Adam's moments
        }
        for (auto& p : params_) p.mutable_grad().reset();
        ++update_index_;
        ++stats.updates;
        epoch_loss += loss_sum.defined() ? loss_sum.item<double>() : 0.0;
      }
      stats.loss = epoch_loss;
    }
    // Sums over this rank's micro-batches, then over ranks.
    auto value = [](const at::Tensor& t) { return t.defined() ? t.item<double>() : 0.0; };
    std::int64_t local_tokens = 0;
    for (const auto& micro : minibatches)
      for (const auto& mb : micro) local_tokens += mb.completion_tokens;
    std::vector<double> sums{stats.loss, value(clipped), value(tokens), value(approx_kl), value(ref_kl),
                             value(entropy_sum), value(entropy_tokens), static_cast<double>(selected.size()),
                             static_cast<double>(local_tokens), mismatch[0], mismatch[1], mismatch[2]};
    if (comm_) {
      sums = all_reduce_sum(*comm_, std::move(sums));
      mismatch_max = all_reduce_max(*comm_, {mismatch_max}).front();
    }
    stats.sampler_compared_tokens = static_cast<std::int64_t>(sums[11]);
    if (sums[11] > 0) {
      stats.sampler_prob_diff_mean = sums[9] / sums[11];
      stats.sampler_logprob_diff_mean = sums[10] / sums[11];
      stats.sampler_prob_diff_max = mismatch_max;
    }
    stats.loss = sums[0];
    if (sums[2] > 0) {
      stats.clip_fraction = sums[1] / sums[2];
      stats.approx_kl = sums[3] / sums[2];
      stats.ref_kl = sums[4] / sums[2];
    }
    if (sums[6] > 0) stats.entropy = sums[5] / sums[6];
    const auto applied = stats.updates - stats.skipped_updates;
    stats.grad_norm = applied > 0 ? grad_norm_sum / static_cast<double>(applied) : 0.0;
    stats.trained_samples = static_cast<std::int64_t>(sums[7]);
    stats.trained_tokens = static_cast<std::int64_t>(sums[8]);
    return stats;
  }

  /// The samples update() trains on: all, less truncated ones under TruncationPolicy::mask and
  /// groups whose advantages are all zero when filter_zero_variance_groups is set.
  std::vector<std::size_t> select_samples(const Rollout& r, std::span<const float> adv,
                                          std::int64_t* zero_signal_groups = nullptr) const {
    std::vector<std::size_t> selected;
    const auto G = static_cast<std::size_t>(options_.group_size);
    std::int64_t zero_groups = 0;
    for (std::size_t g = 0; g * G < r.samples.size(); ++g) {
      const bool zero = std::all_of(adv.begin() + static_cast<std::ptrdiff_t>(g * G),
                                    adv.begin() + static_cast<std::ptrdiff_t>((g + 1) * G),
                                    [](float a) { return a == 0.0f; });
      zero_groups += zero ? 1 : 0;
      if (zero && options_.filter_zero_variance_groups) continue;
      for (std::size_t i = g * G; i < (g + 1) * G; ++i) {
        if (options_.truncation == TruncationPolicy::mask && r.samples[i].truncated) continue;
        selected.push_back(i);
      }
    }
    if (zero_signal_groups) *zero_signal_groups = zero_groups;
    return selected;
  }

  // ---------------------------------------------------------------------------------------
  // Driving a run.

  /// One step: draw prompts, rollout, score, advantages, update. Returns the step's metrics row.
  nlohmann::json step() {
    using Clock = std::chrono::steady_clock;
    memory_.reset();
    Drawn d = options_.dynamic_sampling_rounds > 0 ? draw_until_signal() : draw(0);
    const auto t2 = Clock::now();
    std::int64_t zero_groups = 0;
    const auto selected = select_samples(d.rollout, d.adv, &zero_groups);
    const UpdateStats u = update(d.rollout, d.adv, selected);
    const auto t3 = Clock::now();
    data_position_ += d.prompts_consumed;
    ++step_;
    const SampleColumns columns = gather_columns(d.rollout, d.table, d.adv, zero_groups);
    nlohmann::json row = metrics_row(columns, u, d.sample_s, d.score_s, std::chrono::duration<double>(t3 - t2).count());
    if (options_.dynamic_sampling_rounds > 0) {
      // Of every group drawn this step (the trained ones all have a signal).
      row["zero_variance_group_fraction"] = 1.0 - d.groups_with_signal / std::max(1.0, d.groups_drawn);
      row["dynamic_sampling"] = {{"rounds", d.rounds}, {"groups_drawn", d.groups_drawn},
                                 {"groups_with_signal", d.groups_with_signal}, {"groups_trained", columns.prompts}};
    }
    row["memory"] = read_memory();
    last_samples_ = std::move(d.rollout);  // kept for write_samples()
    last_table_ = std::move(d.table);
    last_advantages_ = std::move(d.adv);
    return row;
  }

  /// Runs until options().steps, writing metrics, samples, progress and checkpoints.
  void train() {
    const bool main = rank() == 0;  // rank 0 writes; the others only compute
    if (main) std::filesystem::create_directories(options_.output_dir);
    MetricsWriter metrics = main ? MetricsWriter(options_.output_dir / "metrics.jsonl", step_) : MetricsWriter();
    ProgressLine progress(step_, options_.steps);
    while (step_ < options_.steps) {
      const auto t0 = std::chrono::steady_clock::now();
      nlohmann::json row = step();
      metrics.write(row);
      if (options_.log_samples_every > 0 && (step_ - 1) % options_.log_samples_every == 0) write_samples(row["step"]);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (main && options_.progress) {
        std::vector<std::pair<std::string, double>> shown{{"reward", row["reward"].get<double>()}};
        for (const auto& name : reward_names_) shown.emplace_back(short_name(name), row["rewards"][name]["mean"].template get<double>());
        progress.print(step_, shown, row["completion_tokens"]["sum"].get<double>(), seconds);
      }
      const bool last = step_ == options_.steps && options_.save_final;
      if (last || (options_.save_every > 0 && step_ % options_.save_every == 0)) save_checkpoint(row);
    }
  }

  /// Writes a checkpoint of the current state under output_dir/checkpoints/step-NNNNNN and returns
  /// that folder. When distributed, every rank calls it, rank 0 writes (every rank holds the same
  /// state) and all ranks return together.
  std::filesystem::path save_checkpoint(const nlohmann::json& last_metrics = nlohmann::json::object()) {
    TrainerState state{.step = step_, .data_position = data_position_, .update_index = update_index_,
                       .seed = options_.seed, .metrics = last_metrics};
    std::filesystem::path path = options_.output_dir / "checkpoints" / detail::checkpoint_name(step_);
    // Sharded optimizer state is gathered first, so the checkpoint is whole (any world size resumes it).
    const auto moments = owners_.empty() ? detail::adamw_moments(*optimizer_, params_) : gather_moments();
    if (rank() == 0)
      path = grpo::save_checkpoint(options_.output_dir / "checkpoints", policy_, params_, moments, state,
                                   options_.keep_checkpoints);
    if (comm_) comm_->barrier();
    return path;
  }

  /// Continues from a checkpoint (a step-NNNNNN folder, or an output folder: its latest one).
  void resume(const std::filesystem::path& path) {
    const TrainerState state = grpo::load_checkpoint(path, policy_, *optimizer_, params_);
    step_ = state.step;
    data_position_ = state.data_position;
    update_index_ = state.update_index;
    if (state.seed != options_.seed) {
      throw Error(path.string() + ": the checkpoint was made with seed " + std::to_string(state.seed) +
                  " but this run has seed " + std::to_string(options_.seed) + "; an exact resume needs the same seed");
    }
    if (comm_) check_ranks_agree(*comm_, "resume(" + path.string() + ")");
  }

 private:
  static void accumulate(at::Tensor& sum, const at::Tensor& value) {
    if (!value.defined()) return;
    sum = sum.defined() ? sum + value.detach().to(at::kDouble).cpu() : value.detach().to(at::kDouble).cpu();
  }

  static std::string short_name(const std::string& name) {
    const auto pos = name.find("_reward");
    return pos == std::string::npos ? name : name.substr(0, pos);
  }

  std::uint64_t step_seed(std::int64_t step) const {
    std::uint64_t x = options_.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(step) + 1;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x & 0x0000FFFFFFFFFFFFull;  // room for + sample index without overflow
  }

  std::int64_t pad_token_id(const Rollout& r) const {
    if (!options_.sampling.stop_token_ids.empty()) return options_.sampling.stop_token_ids.front();
    (void)r;
    return 0;  // padded positions are masked out; any valid id works
  }

  /// Data parallel: every rank must run the same schedule of collectives, so the settings that
  /// decide it (and the position of a resumed run) are compared with rank 0's; a difference is an
  /// error on every rank, naming the setting, instead of a hang or mismatched collectives later.
  void check_ranks_agree(Communicator& comm, const std::string& when) const {
    if (comm.world_size() == 1) return;
    auto elements = [](const std::vector<at::Tensor>& ts) {
      std::int64_t n = 0;
      for (const auto& t : ts) n += t.numel();
      return n;
    };
    const auto policy_params = policy_.parameters();
    const std::vector<std::pair<const char*, std::int64_t>> fields{
        {"seed", static_cast<std::int64_t>(options_.seed)},  // the same bits
        {"steps", options_.steps},
        {"prompts_per_step", options_.prompts_per_step},
        {"group_size", options_.group_size},
        {"epochs", options_.epochs},
        {"mini_batches", options_.mini_batches},
        {"save_every", options_.save_every},
        {"save_final", options_.save_final ? 1 : 0},
        {"log_samples_every", options_.log_samples_every},
        {"shard_optimizer_state", options_.shard_optimizer_state ? 1 : 0},
        {"dynamic_sampling_rounds", options_.dynamic_sampling_rounds},
        {"number of prompts", static_cast<std::int64_t>(prompts_.size())},
        {"policy tensors", static_cast<std::int64_t>(policy_params.size())},
        {"policy elements", elements(policy_params)},
        {"trainable tensors", static_cast<std::int64_t>(params_.size())},
        {"trainable elements", elements(params_)},
        {"a reference policy", reference_ != nullptr ? 1 : 0},
        {"reference elements", reference_ != nullptr ? elements(reference_->parameters()) : 0},
        {"step", step_},
        {"data position", static_cast<std::int64_t>(data_position_)},
        {"update index", update_index_}};
    const auto F = static_cast<std::int64_t>(fields.size());
    at::Tensor mine = at::empty({1, F}, at::kLong);
    for (std::int64_t f = 0; f < F; ++f) mine[0][f] = fields[static_cast<std::size_t>(f)].second;
    const at::Tensor all = comm.all_gather(mine.to(comm.device())).cpu().contiguous();
    const std::int64_t* v = all.data_ptr<std::int64_t>();
    for (int r = 1; r < comm.world_size(); ++r)
      for (std::int64_t f = 0; f < F; ++f)
        if (v[r * F + f] != v[f]) {
          throw Error(fmt::format("data parallel, {}: rank {} has {} = {} but rank 0 has {}; every rank needs the same "
                                  "options, prompts, model and checkpoint",
                                  when, r, fields[static_cast<std::size_t>(f)].first, v[r * F + f], v[f]));
        }
  }

  /// The position of each selected sample among every rank's selected samples, taken in the
  /// step's global group order (Rollout::global_groups), then in order within a group.
  std::vector<std::size_t> selected_positions(const Rollout& r, std::span<const std::size_t> selected) const {
    const auto G = static_cast<std::size_t>(options_.group_size);
    const std::size_t groups = r.prompts.size();
    at::Tensor rows = at::zeros({static_cast<std::int64_t>(groups), 2}, at::kDouble);  // (global group, selected)
    double* row = rows.data_ptr<double>();
    for (std::size_t g = 0; g < groups; ++g) row[2 * g] = static_cast<double>(r.global_group(g));
    for (std::size_t i : selected) row[2 * (i / G) + 1] += 1.0;
    if (comm_ && comm_->world_size() > 1) rows = all_gather_rows(*comm_, rows.to(comm_->device())).cpu().contiguous();
    std::map<std::size_t, std::size_t> start;  // global group -> its first position
    const double* all = rows.data_ptr<double>();
    for (std::int64_t k = 0; k < rows.size(0); ++k)
      start[static_cast<std::size_t>(all[2 * k])] = static_cast<std::size_t>(all[2 * k + 1]);
    std::size_t running = 0;
    for (auto& [group, count] : start) running += std::exchange(count, running);
    std::vector<std::size_t> position;
    std::vector<std::size_t> seen(groups, 0);
    for (std::size_t i : selected) position.push_back(start[r.global_group(i / G)] + seen[i / G]++);
    return position;
  }

  std::unique_ptr<torch::optim::AdamW> make_optimizer(const std::vector<at::Tensor>& params) const {
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(options_.lr.at(0))
                                                             .betas({options_.adam_beta1, options_.adam_beta2})
                                                             .eps(options_.adam_eps)
                                                             .weight_decay(options_.weight_decay));
  }

  /// Sharded optimizer state: each rank has updated the tensors it owns; every rank takes them.
  void broadcast_from_owners() {
    at::NoGradGuard no_grad;
    for (int r = 0; r < comm_->world_size(); ++r) {
      std::vector<at::Tensor> tensors;
      for (std::size_t i = 0; i < params_.size(); ++i)
        if (owners_[i] == r) tensors.push_back(params_[i].detach());
      broadcast(*comm_, tensors, r);
    }
  }

  /// Sharded optimizer state: every tensor's moments, sent by its owner to rank 0 (returned there,
  /// on the CPU; empty elsewhere). Every rank calls it.
  std::vector<AdamWMoments> gather_moments() {
    const auto local = detail::adamw_moments(*optimizer_, params_);
    std::vector<AdamWMoments> out(rank() == 0 ? params_.size() : 0);
    const c10::Device device = comm_->device();
    const auto on = at::TensorOptions().device(device);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const int owner = owners_[i];
      if (owner == 0) {
        if (rank() == 0 && local[i].defined())
          out[i] = {local[i].exp_avg.cpu(), local[i].exp_avg_sq.cpu(), local[i].step};
        continue;
      }
      if (rank() == owner) {
        const auto& m = local[i];
        comm_->send(at::tensor({m.defined() ? 1.0 : 0.0, static_cast<double>(m.step)}, on.dtype(at::kDouble)), 0);
        if (m.defined()) {
          comm_->send(m.exp_avg.to(device).contiguous(), 0);
          comm_->send(m.exp_avg_sq.to(device).contiguous(), 0);
        }
      } else if (rank() == 0) {
        at::Tensor header = at::zeros({2}, on.dtype(at::kDouble));
        comm_->recv(header, owner);
        header = header.cpu();
        if (header[0].item<double>() == 0.0) continue;
        const auto like = on.dtype(params_[i].scalar_type());
        at::Tensor exp_avg = at::empty(params_[i].sizes(), like), exp_avg_sq = at::empty(params_[i].sizes(), like);
        comm_->recv(exp_avg, owner);
        comm_->recv(exp_avg_sq, owner);
        out[i] = {exp_avg.cpu(), exp_avg_sq.cpu(), static_cast<std::int64_t>(header[1].item<double>())};
      }
    }
    return out;
  }

  double clip_gradients() {
    std::vector<at::Tensor> grads;
    for (auto& p : params_)
      if (p.grad().defined()) grads.push_back(p);
    if (grads.empty()) return 0.0;
    const double max_norm = options_.max_grad_norm > 0 ? options_.max_grad_norm : std::numeric_limits<double>::infinity();
    return torch::nn::utils::clip_grad_norm_(grads, max_norm);
  }

  /// A step's samples, their rewards and advantages, before the update.
  struct Drawn {
    Rollout rollout;
    RewardTable table;
    std::vector<float> adv;
    std::uint64_t prompts_consumed = 0;
    double sample_s = 0, score_s = 0;
    std::int64_t rounds = 0;
    double groups_drawn = 0, groups_with_signal = 0;  ///< over every rank
  };

  /// Round `round` of the step: the next prompts_per_step prompts after the earlier rounds'; this
  /// rank rolls out, scores and estimates advantages for its share (a contiguous slice of whole
  /// prompts; all of them in one process). Sample seeds continue the global index across rounds.
  Drawn draw(std::int64_t round) {
    using Clock = std::chrono::steady_clock;
    const auto prompts_n = static_cast<std::size_t>(options_.prompts_per_step);
    const auto t0 = Clock::now();
    const auto batch = prompts_.batch(data_position_ + static_cast<std::uint64_t>(round) * prompts_n, prompts_n);
    const std::size_t share = batch.size() / static_cast<std::size_t>(world_size());
    const std::size_t first = share * static_cast<std::size_t>(rank());
    Drawn d;
    d.rollout = rollout(std::span(batch).subspan(first, share), step_,
                        (static_cast<std::uint64_t>(round) * prompts_n + first) * static_cast<std::uint64_t>(options_.group_size));
    const auto t1 = Clock::now();
    d.table = score(d.rollout);
    d.adv = advantages(d.table);
    d.sample_s = std::chrono::duration<double>(t1 - t0).count();
    d.score_s = std::chrono::duration<double>(Clock::now() - t1).count();
    d.prompts_consumed = prompts_n;
    d.rounds = 1;
    d.groups_drawn = static_cast<double>(prompts_n);
    return d;
  }

  /// Dynamic sampling: rounds of draw() until prompts_per_step groups with a signal (advantages
  /// not all 0) are found over every rank, or dynamic_sampling_rounds run out. The first
  /// prompts_per_step of them in global order (round, rank, group) are kept: the same groups
  /// whatever the number of ranks.
  Drawn draw_until_signal() {
    const auto G = static_cast<std::size_t>(options_.group_size);
    const auto prompts_n = static_cast<std::size_t>(options_.prompts_per_step);
    constexpr std::size_t K = num_rewards;
    std::vector<std::vector<float>> rewards(K);  // the kept samples' rewards, reward by reward
    std::size_t kept_total = 0;
    Drawn out;
    out.rollout.group_size = static_cast<std::int64_t>(G);
    while (out.rounds < options_.dynamic_sampling_rounds && kept_total < prompts_n) {
      Drawn d = draw(out.rounds);
      std::vector<std::size_t> signal;
      for (std::size_t g = 0; g * G < d.adv.size(); ++g) {
        const auto begin = d.adv.begin() + static_cast<std::ptrdiff_t>(g * G);
        if (!std::all_of(begin, begin + static_cast<std::ptrdiff_t>(G), [](float a) { return a == 0.0f; }))
          signal.push_back(g);
      }
      // How many groups with a signal each rank found; ranks before this one come first.
      const std::vector<double> found = comm_ ? all_gather(*comm_, static_cast<double>(signal.size()))
                                              : std::vector<double>{static_cast<double>(signal.size())};
      std::size_t before = 0, round_total = 0;
      for (std::size_t q = 0; q < found.size(); ++q) {
        if (static_cast<int>(q) < rank()) before += static_cast<std::size_t>(found[q]);
        round_total += static_cast<std::size_t>(found[q]);
      }
      // This rank keeps its first `mine` groups with a signal; the round's other groups are dropped now.
      const std::size_t room = prompts_n - kept_total;
      const std::size_t mine = std::min(signal.size(), room > before ? room - before : 0);
      for (std::size_t j = 0; j < mine; ++j) {
        const std::size_t g = signal[j];
        out.rollout.global_groups.push_back(kept_total + before + j);  // round by round, rank by rank
        out.rollout.prompts.push_back(d.rollout.prompts[g]);
        out.rollout.templated.push_back(d.rollout.templated[g]);
        for (std::size_t i = g * G; i < (g + 1) * G; ++i) {
          out.rollout.generations.push_back(std::move(d.rollout.generations[i]));
          out.adv.push_back(d.adv[i]);
          for (std::size_t k = 0; k < K; ++k) rewards[k].push_back(d.table.row(k)[i]);
        }
      }
      kept_total += std::min(round_total, room);
      out.groups_with_signal += static_cast<double>(round_total);
      out.groups_drawn += static_cast<double>(prompts_n);
      out.sample_s += d.sample_s;
      out.score_s += d.score_s;
      out.prompts_consumed += prompts_n;
      ++out.rounds;
    }
    out.table = RewardTable(K, out.adv.size());
    for (std::size_t k = 0; k < K; ++k) std::copy(rewards[k].begin(), rewards[k].end(), out.table.row(k).begin());
    out.rollout.link_samples();
    return out;
  }

  /// What the metrics row says about the step's samples, one entry per sample of every rank (in
  /// global order).
  struct SampleColumns {
    RewardTable table;  ///< [K, N]
    std::vector<float> adv;
    std::vector<double> tokens, truncated, words, well_formed, repetition;
    double prompts = 0, zero_groups = 0;
  };

  /// This rank's per-sample numbers, gathered from every rank when distributed.
  SampleColumns gather_columns(const Rollout& r, const RewardTable& table, std::span<const float> adv,
                               std::int64_t zero_groups) {
    constexpr std::int64_t K = static_cast<std::int64_t>(num_rewards);
    constexpr std::int64_t F = K + 7;  // rewards, advantage, tokens, truncated, words, well-formed, repetition, global position
    const auto G = static_cast<std::size_t>(options_.group_size);
    const auto n = static_cast<std::int64_t>(r.generations.size());
    at::Tensor local = at::zeros({n, F}, at::kDouble);
    double* row = local.data_ptr<double>();
    for (std::int64_t i = 0; i < n; ++i, row += F) {
      const auto s = static_cast<std::size_t>(i);
      for (std::int64_t k = 0; k < K; ++k) row[k] = table.row(static_cast<std::size_t>(k))[s];
      const CompletionParts parts = parse_completion(r.generations[s].text);
      row[K] = adv[s];
      row[K + 1] = static_cast<double>(r.generations[s].ids.size());
      row[K + 2] = r.samples[s].truncated ? 1.0 : 0.0;
      row[K + 3] = static_cast<double>(word_count(parts.answer));
      row[K + 4] = parts.well_formed ? 1.0 : 0.0;
      row[K + 5] = repetition_ratio(parts.answer);
      row[K + 6] = static_cast<double>(r.global_group(s / G) * G + s % G);
    }
    std::vector<double> counts{static_cast<double>(r.prompts.size()), static_cast<double>(zero_groups)};
    if (comm_ && comm_->world_size() > 1) {
      local = all_gather_rows(*comm_, local.to(comm_->device())).cpu();
      local = local.index_select(0, local.select(1, K + 6).argsort()).contiguous();  // global order
      counts = all_reduce_sum(*comm_, std::move(counts));
    }
    SampleColumns c;
    const auto N = static_cast<std::size_t>(local.size(0));
    c.table = RewardTable(num_rewards, N);
    const double* v = local.data_ptr<double>();
    for (std::size_t i = 0; i < N; ++i, v += F) {
      for (std::size_t k = 0; k < num_rewards; ++k) c.table.row(k)[i] = static_cast<float>(v[k]);
      c.adv.push_back(static_cast<float>(v[K]));
      c.tokens.push_back(v[K + 1]);
      c.truncated.push_back(v[K + 2]);
      c.words.push_back(v[K + 3]);
      c.well_formed.push_back(v[K + 4]);
      c.repetition.push_back(v[K + 5]);
    }
    c.prompts = counts[0];
    c.zero_groups = counts[1];
    return c;
  }

  /// This rank's memory peaks; when distributed, the largest of every rank's.
  nlohmann::json read_memory() const {
    nlohmann::json memory = memory_.read();
    if (!comm_ || comm_->world_size() == 1) return memory;
    std::vector<double> values;
    for (const auto& [key, value] : memory.items()) values.push_back(value.template get<double>());
    values = all_reduce_max(*comm_, std::move(values));
    std::size_t i = 0;
    for (auto& [key, value] : memory.items()) value = values[i++];
    return memory;
  }

  nlohmann::json metrics_row(const SampleColumns& c, const UpdateStats& u, double t_sample, double t_score,
                             double t_update) const {
    const RewardTable& table = c.table;
    const std::vector<float>& adv = c.adv;
    nlohmann::json row;
    row["step"] = step_;
    row["data_position"] = data_position_;
    const auto G = static_cast<std::size_t>(options_.group_size);
    const auto stats = reward_statistics(table.view(), G);
    double composite = 0.0;
    for (std::size_t k = 0; k < num_rewards; ++k) {
      const auto& s = stats[k];
      row["rewards"][reward_names_[k]] = {{"mean", s.mean}, {"std", s.std_dev}, {"min", s.min}, {"max", s.max},
                                          {"zero_std_group_fraction", s.zero_variance_fraction},
                                          {"non_finite", s.non_finite}};
      composite += s.mean;
    }
    row["reward"] = composite / static_cast<double>(num_rewards);  // the equal-weight composite
    double a_sum = 0, a_sq = 0, a_min = adv.empty() ? 0 : adv[0], a_max = a_min;
    for (float a : adv) a_sum += a, a_sq += double(a) * a, a_min = std::min<double>(a_min, a), a_max = std::max<double>(a_max, a);
    const double n = static_cast<double>(std::max<std::size_t>(1, adv.size()));
    row["advantage"] = {{"mean", a_sum / n}, {"std", std::sqrt(std::max(0.0, a_sq / n - (a_sum / n) * (a_sum / n)))},
                        {"min", a_min}, {"max", a_max}};
    row["zero_variance_group_fraction"] = c.zero_groups / std::max(1.0, c.prompts);
    // Completion lengths (tokens), truncation, answer words, repetition.
    double len_sum = 0, len_max = 0, truncated = 0, words = 0, repetition = 0, well_formed = 0;
    for (std::size_t i = 0; i < c.tokens.size(); ++i) {
      len_sum += c.tokens[i];
      len_max = std::max(len_max, c.tokens[i]);
      truncated += c.truncated[i];
      well_formed += c.well_formed[i];
      words += c.words[i];
      repetition += c.repetition[i];
    }
    const double count = static_cast<double>(std::max<std::size_t>(1, c.tokens.size()));
    row["completion_tokens"] = {{"mean", len_sum / count}, {"max", len_max}, {"sum", len_sum}};
    row["truncated_fraction"] = truncated / count;
    row["answer_words_mean"] = words / count;
    row["well_formed_fraction"] = well_formed / count;
    row["repetition_mean"] = repetition / count;
    row["loss"] = u.loss;
    row["clip_fraction"] = u.clip_fraction;
    row["approx_kl"] = u.approx_kl;
    row["ref_kl"] = u.ref_kl;
    row["entropy"] = u.entropy;
    row["sampler_mismatch"] = {{"prob_diff_mean", u.sampler_prob_diff_mean},
                               {"prob_diff_max", u.sampler_prob_diff_max},
                               {"logprob_diff_mean", u.sampler_logprob_diff_mean},
                               {"tokens", u.sampler_compared_tokens}};
    row["grad_norm"] = u.grad_norm;
    row["lr"] = u.lr;
    row["updates"] = u.updates;
    row["skipped_updates"] = u.skipped_updates;
    row["trained_samples"] = u.trained_samples;
    row["trained_tokens"] = u.trained_tokens;
    const double total = t_sample + t_score + t_update;
    row["time"] = {{"sample_s", t_sample}, {"score_s", t_score}, {"update_s", t_update}, {"step_s", total}};
    row["tokens_per_second"] = total > 0 ? len_sum / total : 0.0;
    return row;
  }

  /// A completions table (TRL's "completions" log): the first log_samples_per_group samples of
  /// every group of the last step, with each reward and the advantage. Every rank calls it; rank 0
  /// writes every rank's groups, in global group order.
  void write_samples(const nlohmann::json& step) const {
    std::string lines;
    const auto G = static_cast<std::size_t>(options_.group_size);

    const auto per_group = std::min<std::size_t>(G, static_cast<std::size_t>(options_.log_samples_per_group));
    for (std::size_t g = 0; g < last_samples_.prompts.size(); ++g) {
      for (std::size_t j = 0; j < per_group; ++j) {
        const std::size_t i = g * G + j;
        const auto& gen = last_samples_.generations[i];
        nlohmann::json rewards;
        for (std::size_t k = 0; k < num_rewards; ++k) rewards[reward_names_[k]] = last_table_.row(k)[i];
        nlohmann::json row{{"step", step},
                           {"group", last_samples_.global_group(g)},
                           {"prompt", last_samples_.prompts[g].prompt},
                           {"target", {last_samples_.prompts[g].target.lower, last_samples_.prompts[g].target.upper}},
                           {"completion", gen.text},
                           {"finish_reason", gen.finish_reason == FinishReason::stop ? "stop" : "length"},
                           {"completion_tokens", gen.ids.size()},
                           {"rewards", rewards},
                           {"advantage", last_advantages_[i]}};
        lines += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
      }
    }
    const std::vector<std::string> ranks = comm_ ? all_gather(*comm_, lines) : std::vector<std::string>{lines};
    if (rank() != 0) return;
    // Every rank's rows in global group order (a rank's groups need not be contiguous in it).
    std::vector<std::pair<std::int64_t, std::string>> rows;
    for (const auto& text : ranks) {
      std::size_t begin = 0;
      for (std::size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
        std::string line = text.substr(begin, end - begin + 1);
        rows.emplace_back(nlohmann::json::parse(line)["group"].get<std::int64_t>(), std::move(line));
      }
    }
    std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::ofstream out(options_.output_dir / "samples.jsonl", std::ios::app);
    for (const auto& [group, line] : rows) out << line;
  }

  P& policy_;
  P* reference_;
  Rewards rewards_;
  Advantage advantage_;
  Loss loss_;
  PromptDataset prompts_;
  TrainerOptions options_;
  std::vector<at::Tensor> params_;  ///< the trainable tensors, in the order of checkpoints
  std::vector<int> owners_;         ///< each tensor's owner rank when optimizer state is sharded; else empty
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::array<std::string, num_rewards> reward_names_;
  PeakMemory memory_;
  std::shared_ptr<Communicator> comm_;  ///< null: one process
  std::int64_t step_ = 0;
  std::uint64_t data_position_ = 0;
  std::int64_t update_index_ = 0;
  Rollout last_samples_;
  RewardTable last_table_;
  std::vector<float> last_advantages_;
};

}  // namespace grpo
