#pragma once
// grpo::Trainer: one GRPO run, composed at compile time from a policy, a set of rewards, an
// advantage estimator and a policy loss.
//
//   prompts --rollout()--> samples --score()--> rewards [K, N] --advantages()--> A [N]
//           --select_samples()--> the trained samples --update()--> micro-batches -> log-probs
//           -> loss -> backward -> ClippedAdamW (clip, schedule, AdamW)
//
// The trainer holds the phases and the run loop; the parts it composes own their state:
// ClippedAdamW (optim/adamw.hpp) and its ZeRO-1 shards (distributed/sharded_optimizer.hpp), the
// mini-batch plan (minibatches.hpp), dynamic sampling (dynamic_sampling.hpp), the typed
// StepMetrics (step_metrics.hpp) and the files people read, RunLog (run_log.hpp).
//
// Every random choice derives from (seed, step): the prompt order from (seed, data position),
// sampling seeds from (seed, step, global sample index), so a resumed run repeats exactly what an
// uninterrupted one does.
//
// Data parallel (distribute()): each of W ranks holds a replica of the policy and takes a
// contiguous 1/W of every step's prompts, whole groups, so advantages stay local. Sample seeds use
// the global sample index, the loss normalisers are counted over all ranks and the gradients
// summed, so W ranks take the step one process would take on the whole batch. Metrics are
// gathered; rank 0 writes metrics, samples and checkpoints.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "grpo/concepts/trainer.hpp"
#include "grpo/core/error.hpp"
#include "grpo/core/reward_table.hpp"
#include "grpo/distributed/agreement.hpp"
#include "grpo/distributed/communicator.hpp"
#include "grpo/distributed/mesh.hpp"
#include "grpo/distributed/sharded_optimizer.hpp"
#include "grpo/optim/adamw.hpp"
#include "grpo/sampling/prompts.hpp"
#include "grpo/trainer/autocast.hpp"
#include "grpo/trainer/checkpoint.hpp"
#include "grpo/trainer/dynamic_sampling.hpp"
#include "grpo/trainer/freeze.hpp"
#include "grpo/trainer/memory.hpp"
#include "grpo/trainer/minibatches.hpp"
#include "grpo/trainer/options.hpp"
#include "grpo/data/prompt_dataset.hpp"
#include "grpo/trainer/rollout.hpp"
#include "grpo/trainer/run_log.hpp"
#include "grpo/trainer/step_metrics.hpp"
#include "grpo/trainer/update_stats.hpp"

namespace grpo {

template <class P, class Rewards, class Advantage, class Loss>
class Trainer {
  static_assert(check_trainer_parts<P, Rewards, Advantage, Loss>());  // a sentence per unmet requirement

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
        options_(std::move(options)),
        optimizer_(checked_trainable(policy_), options_.optimizer()) {
    options_.validate();
    for (auto& name : rewards_.names()) reward_names_.push_back(std::move(name));
    memory_ = PeakMemory(optimizer_.params().front().device());
  }

  [[nodiscard]] const TrainerOptions& options() const { return options_; }
  [[nodiscard]] std::int64_t step_index() const { return step_; }
  [[nodiscard]] std::uint64_t data_position() const { return data_position_; }
  [[nodiscard]] const std::vector<std::string>& reward_names() const { return reward_names_; }
  [[nodiscard]] Rewards& rewards() { return rewards_; }
  /// This process's rank and the number of ranks (0 and 1 without distribute()).
  /// (Under tensor parallelism: the data-parallel rank and size; the ranks of one tensor group
  /// compute the same step together.)
  [[nodiscard]] int rank() const { return comm_ ? comm_->rank() : 0; }
  [[nodiscard]] int world_size() const { return comm_ ? comm_->world_size() : 1; }
  /// Whether this process writes the run's files (world rank 0).
  [[nodiscard]] bool writes() const { return writer_; }
  /// The optimizer: the trainable tensors, AdamW (this rank's shard of it), the schedule.
  [[nodiscard]] ClippedAdamW& optimizer() { return optimizer_; }

  /// Makes this trainer one rank of a data-parallel run: every rank constructs its trainer the
  /// same way (same options, prompts and seed) and calls distribute() with its communicator
  /// (grpo::init_process_group). The policy's parameters take rank 0's values. prompts_per_step
  /// must be a multiple of the world size. A null communicator (or a world of one) is one process.
  /// With options().shard_optimizer_state, this rank's AdamW keeps only the tensors it owns
  /// (grpo::OptimizerShards); call distribute() before resume() then, so that each rank loads only
  /// its shard's moments. First of all, each rank's settings are compared with rank 0's.
  void distribute(std::shared_ptr<Communicator> comm) {
    if (comm && comm->world_size() > 1) {
      check_ranks_agree(*comm, "distribute()", settings());  // before any collective whose shape they decide
      if (options_.prompts_per_step % comm->world_size() != 0) {
        throw Error(fmt::format("prompts_per_step: expected a multiple of the world size {} (each rank takes whole "
                                "groups of an equal share of the prompts), found {}",
                                comm->world_size(), options_.prompts_per_step));
      }
      const auto params = policy_.parameters();
      broadcast_parameters(*comm, params);
      if (reference_ != nullptr) {
        const auto frozen = reference_->parameters();
        // A reference that shares the policy's tensors (a LoRA policy's base-model view) is in sync already.
        const bool shared = !frozen.empty() && !params.empty() && frozen.front().is_same(params.front());
        if (!shared) broadcast_parameters(*comm, frozen);
      }
      if (options_.shard_optimizer_state) optimizer_.shard(std::make_shared<OptimizerShards>(comm, optimizer_.params()));
    }
    comm_ = std::move(comm);
    writer_ = comm_ == nullptr || comm_->rank() == 0;
  }

  /// Makes this trainer one rank of a tensor x data mesh (grpo::init_device_mesh): the policy is
  /// split over mesh.tensor (it was built with mesh.tensor_parallel()), batches and gradient sums
  /// go over mesh.data (see distribute(comm)), and the gradient norm counts every element once
  /// (each tensor's square sum divided by the ranks of the group that hold a copy of it). The
  /// ranks of a tensor group draw the same prompts and samples and run every phase together.
  void distribute(const DeviceMesh& mesh) {
    // Every rank of the world, the tensor group's included, before any collective they must share.
    if (mesh.world && mesh.world->world_size() > 1) check_ranks_agree(*mesh.world, "distribute(mesh)", settings());
    if (mesh.tensor && mesh.tensor->world_size() > 1) {
      if constexpr (TensorParallelPolicy<P>) {
        if (policy_.tensor_parallel_size() != mesh.tensor->world_size())
          throw Error(fmt::format("Trainer::distribute: the policy is split over {} ranks but the mesh's tensor group "
                                  "has {}; build the policy with mesh.tensor_parallel()",
                                  policy_.tensor_parallel_size(), mesh.tensor->world_size()));
        const auto copies = policy_.parameter_copies();  // aligned with parameters()
        const auto all = policy_.parameters();
        std::vector<std::int64_t> trained;  // aligned with the optimizer's tensors
        for (std::size_t i = 0; i < all.size(); ++i)
          if (all[i].requires_grad()) trained.push_back(copies[i]);
        optimizer_.set_tensor_parallel(tensor_parallel_norm(mesh.tensor, std::move(trained)));
      } else {
        throw Error("Trainer::distribute: this policy cannot be split over a tensor-parallel group (it does not "
                    "model grpo::TensorParallelPolicy)");
      }
    }
    tensor_ = mesh.tensor;
    world_ = mesh.world;
    distribute(mesh.data);
    writer_ = mesh.is_main();
  }

  // ---------------------------------------------------------------------------------------
  // The phases of a step.

  /// Sampler: wraps each prompt in the template and samples group_size completions of each.
  /// Seeds: sample i of step s uses seed' + first_sample + i with seed' = mix(seed, s);
  /// first_sample is the global index of this rank's first sample (0 in one process).
  Rollout rollout(std::span<const PromptRecord* const> prompts, std::int64_t step, std::uint64_t first_sample = 0) {
    Rollout r;
    r.group_size = options_.group_size;  // from here on, the rollout is the one source of G
    std::vector<std::string> requests;
    for (const PromptRecord* p : prompts) {
      r.prompts.push_back(*p);
      r.templated.push_back(apply_prompt_template(p->prompt, options_.prompt));
      for (std::int64_t g = 0; g < r.group_size; ++g) requests.push_back(r.templated.back());
    }
    SamplingOptions sampling = options_.sampling;
    sampling.seed = step_seed(step) + first_sample;
    {
      Bf16AutocastScope autocast(options_.bf16_autocast);
      r.generations = policy_.generate(requests, sampling);
    }
    if (r.generations.size() != requests.size()) {
      throw Error(fmt::format("Trainer: the policy returned {} generations for {} requests", r.generations.size(),
                              requests.size()));
    }
    r.link_samples();
    const auto first_group = static_cast<std::size_t>(first_sample / static_cast<std::uint64_t>(r.group_size));
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

  /// Advantage estimator: [K, N] -> [N], groups of the rollout's group size.
  std::vector<float> advantages(const Rollout& r, const RewardTable& table) const {
    std::vector<float> adv(table.samples());
    advantage_.compute(table.view(), static_cast<std::size_t>(r.group_size), adv);
    return adv;
  }

  /// The samples update() trains on: all, less truncated ones under TruncationPolicy::mask and
  /// groups whose advantages are all zero when filter_zero_variance_groups is set.
  std::vector<std::size_t> select_samples(const Rollout& r, std::span<const float> adv,
                                          std::int64_t* zero_signal_groups = nullptr) const {
    std::vector<std::size_t> selected;
    const auto G = static_cast<std::size_t>(r.group_size);
    const auto signal = groups_with_signal(adv, G);
    std::vector<bool> has_signal(r.prompts.size(), false);
    for (std::size_t g : signal) has_signal[g] = true;
    for (std::size_t g = 0; g < r.prompts.size(); ++g) {
      if (!has_signal[g] && options_.filter_zero_variance_groups) continue;
      for (std::size_t i = g * G; i < (g + 1) * G; ++i)
        if (options_.truncation != TruncationPolicy::mask || !r.samples[i].truncated) selected.push_back(i);
    }
    if (zero_signal_groups) *zero_signal_groups = static_cast<std::int64_t>(r.prompts.size() - signal.size());
    return selected;
  }

  /// Updater: epochs x mini-batches optimizer updates on the selected samples (minibatches.hpp).
  /// Normalisers are counted over each mini-batch as a whole (over every rank when distributed),
  /// so gradient accumulation over micro-batches (and the sum over ranks) gives the gradient of
  /// the whole mini-batch. Every rank runs the same updates, also one that has no samples.
  /// Statistics stay on the device until the end (one host read per step).
  UpdateStats update(const Rollout& r, std::span<const float> adv, std::span<const std::size_t> selected) {
    Bf16AutocastScope autocast(options_.bf16_autocast);
    const std::int64_t pad_id = options_.sampling.stop_token_ids.empty() ? 0 : options_.sampling.stop_token_ids.front();
    std::vector<MiniBatch> minibatches =
        plan_minibatches(r, selected, options_.mini_batches, options_.micro_batch_tokens, pad_id,
                         static_cast<double>(options_.sampling.max_new_tokens), comm_.get());
    if (minibatches.empty()) return {};
    const bool single_pass = options_.epochs == 1 && minibatches.size() == 1;
    const OldLogprobSource source = options_.old_logprobs == OldLogprobSource::automatic && !single_pass
                                        ? OldLogprobSource::recompute
                                        : options_.old_logprobs;
    const double temperature = options_.sampling.greedy ? 1.0 : options_.sampling.temperature;
    UpdateAccumulator sums;
    // pi_old and pi_ref, once per step, before any parameter moves.
    if (source == OldLogprobSource::recompute || reference_ != nullptr) {
      at::NoGradGuard no_grad;
      for (auto& minibatch : minibatches)
        for (auto& mb : minibatch.micro) {
          if (source == OldLogprobSource::recompute) {
            mb.old_logprobs = policy_.logprobs(mb.batch, temperature).logprobs.detach().to(at::kFloat).cpu();
            sums.compare_with_sampler(mb.old_logprobs, mb);
          }
          if (reference_ != nullptr)
            mb.ref_logprobs = reference_->logprobs(mb.batch, temperature).logprobs.detach().to(at::kFloat).cpu();
        }
    }
    for (std::int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
      for (std::size_t m = 0; m < minibatches.size(); ++m) {
        for (auto& mb : minibatches[m].micro) {
          TokenLogprobs lp = policy_.logprobs(mb.batch, temperature);
          const auto device = lp.logprobs.device();
          // Before the first update: the weights the sampler used (all of them when recomputed above).
          if (source != OldLogprobSource::recompute && epoch == 0 && m == 0) sums.compare_with_sampler(lp.logprobs, mb);
          const PolicyLossInputs in = loss_inputs(lp, mb, source, adv);
          PolicyLossOutput out = loss_(in, minibatches[m].normalizer);
          out.loss.backward();
          sums.add_loss(out);
          if (epoch == 0 && lp.entropy.defined()) sums.add_entropy(lp.entropy, in.mask);
        }
        if (comm_) synchronize_gradients(*comm_, optimizer_.params());
        sums.add_update(optimizer_.step());  // the same norm on every rank: gradients are summed
      }
      sums.end_epoch();
    }
    std::int64_t local_tokens = 0;
    for (const auto& minibatch : minibatches)
      for (const auto& mb : minibatch.micro) local_tokens += mb.completion_tokens;
    return sums.finish(static_cast<std::int64_t>(selected.size()), local_tokens, comm_.get());
  }

  // ---------------------------------------------------------------------------------------
  // Driving a run.

  /// One step: draw prompts, rollout, score, advantages, select, update. Returns its metrics.
  StepMetrics step() {
    using Clock = std::chrono::steady_clock;
    memory_.reset();
    const auto prompts_n = static_cast<std::size_t>(options_.prompts_per_step);
    ScoredRollout d = options_.dynamic_sampling_rounds > 0
                          ? draw_until_signal([this](std::int64_t round) { return draw(round); }, prompts_n,
                                              options_.dynamic_sampling_rounds, comm_.get())
                          : draw(0);
    const auto t0 = Clock::now();
    std::int64_t zero_groups = 0;
    const auto selected = select_samples(d.rollout, d.adv, &zero_groups);
    const UpdateStats u = update(d.rollout, d.adv, selected);
    const double update_s = std::chrono::duration<double>(Clock::now() - t0).count();
    data_position_ += d.prompts_consumed;
    ++step_;
    auto [names, columns] = reward_sample_metrics(rewards_, d.rollout.samples);
    const StepSamples samples =
        StepSamples::gather(d.rollout, d.table, d.adv, std::move(names), columns, zero_groups, comm_.get());
    StepMetrics m = StepMetrics::summarize(samples, reward_names_, static_cast<std::size_t>(d.rollout.group_size));
    m.step = step_;
    m.data_position = data_position_;
    m.update = u;
    m.time = {.sample_s = d.sample_s, .score_s = d.score_s, .update_s = update_s};
    if (options_.dynamic_sampling_rounds > 0) {
      // Of every group drawn this step (the trained ones all have a signal).
      m.zero_variance_group_fraction = 1.0 - d.groups_with_signal / std::max(1.0, d.groups_drawn);
      m.dynamic_sampling = DynamicSamplingStats{.rounds = d.rounds, .groups_drawn = d.groups_drawn,
                                                .groups_with_signal = d.groups_with_signal,
                                                .groups_trained = samples.groups};
    }
    m.memory = max_over_ranks(memory_.peaks(), comm_.get());
    last_ = std::move(d);  // kept for the completions table
    return m;
  }

  /// Runs until options().steps, writing metrics, samples, progress and checkpoints.
  void train() {
    check_checkpoint_layout();  // before step 1, not at the first checkpoint
    const bool main = writes();  // world rank 0 writes; the others only compute
    if (main) {
      std::filesystem::create_directories(options_.output_dir);
      io::remove_write_leftovers(options_.output_dir / "checkpoints");  // a killed run's unfinished checkpoint
    }
    RunLog log = main ? RunLog(options_.output_dir, step_) : RunLog();
    ProgressLine progress(step_, options_.steps, main ? options_.reporter : nullptr);
    while (step_ < options_.steps) {
      const auto t0 = std::chrono::steady_clock::now();
      const StepMetrics m = step();
      log.write(m);
      if (options_.log_samples_every > 0 && (step_ - 1) % options_.log_samples_every == 0) {
        const auto rows = completion_rows(last_.rollout, last_.table, last_.adv, reward_names_, step_,
                                          static_cast<std::size_t>(options_.log_samples_per_group));
        log.write_samples(step_, gather_completion_rows(rows, comm_.get()));
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress.print(step_, m.progress_rewards(), m.completion_tokens_sum, seconds);
      const bool last = step_ == options_.steps && options_.save_final;
      if (last || (options_.save_every > 0 && step_ % options_.save_every == 0)) save_checkpoint(m.to_json(), last);
    }
  }

  /// Whether checkpoints are written per rank (options().checkpoint_layout; auto: when the
  /// policy is split over a tensor-parallel group).
  [[nodiscard]] bool sharded_checkpoints() const {
    if (options_.checkpoint_layout == CheckpointLayout::automatic) return tensor_ != nullptr && tensor_->world_size() > 1;
    return options_.checkpoint_layout == CheckpointLayout::sharded;
  }

  /// Writes a checkpoint of the current state under output_dir/checkpoints/step-NNNNNN and returns
  /// that folder. When distributed, every rank calls it and all ranks return together. Whole
  /// layout: world rank 0 writes (what other ranks hold is gathered to it). Sharded layout: every
  /// rank writes its slices (grpo/trainer/sharded_checkpoint.hpp); with `export_policy` the
  /// checkpoint also gets policy/, the whole policy in Hugging Face layout, made one tensor at a
  /// time from the pieces (the run's final checkpoint does this).
  std::filesystem::path save_checkpoint(const nlohmann::json& last_metrics = nlohmann::json::object(),
                                        bool export_policy = false) {
    TrainerState state{.step = step_, .data_position = data_position_, .update_index = optimizer_.update_index(),
                       .seed = options_.seed, .metrics = last_metrics};
    if (sharded_checkpoints()) return save_sharded_checkpoint(state, export_policy);
    std::filesystem::path path = options_.output_dir / "checkpoints" / detail::checkpoint_name(step_);
    auto moments = optimizer_.moments();  // sharded moments are gathered: the checkpoint is whole
    if (tensor_ && rank() == 0) {
      // Tensor-parallel: the ranks of data rank 0's tensor group gather every tensor whole (the
      // moments here, the weights in save_pretrained), so the checkpoint is one process's.
      if constexpr (TensorParallelPolicy<P>) {
        const auto names = detail::param_names(optimizer_.params(), policy_.named_parameters());
        for (std::size_t i = 0; i < moments.size(); ++i)
          for (at::Tensor* t : {&moments[i].exp_avg, &moments[i].exp_avg_sq, &moments[i].master})
            if (t->defined()) {
              auto whole = policy_.gather_whole(names[i], *t);  // every rank joins; only the writer keeps it
              *t = writes() ? std::move(whole) : at::Tensor();
            }
        if (!writes()) policy_.save_pretrained(options_.output_dir / "checkpoints");  // joins the gathers, writes nothing
      }
    }
    if (writes())
      path = grpo::save_checkpoint(options_.output_dir / "checkpoints", policy_, optimizer_.params(), moments, state,
                                   options_.keep_checkpoints);
    if (world_) world_->barrier();
    else if (comm_) comm_->barrier();
    return path;
  }

  /// Continues from a checkpoint (a step-NNNNNN folder, or an output folder: its latest one),
  /// whole or sharded; a sharded one written on any T x D mesh.
  void resume(const std::filesystem::path& path) {
    const TrainerState state = grpo::load_checkpoint(path, policy_, optimizer_);  // weights, moments, masters
    step_ = state.step;
    data_position_ = state.data_position;
    optimizer_.set_update_index(state.update_index);
    if (state.seed != options_.seed) {
      throw Error(fmt::format("{}: the checkpoint was made with seed {} but this run has seed {}; an exact resume needs "
                              "the same seed",
                              path.string(), state.seed, options_.seed));
    }
    if (comm_) check_ranks_agree(*comm_, fmt::format("resume({})", path.string()), settings());
  }

 private:
  /// save_checkpoint's sharded layout: world rank 0 stages the folder and the policy's config,
  /// every rank writes its files into it, rank 0 indexes, exports and publishes.
  std::filesystem::path save_sharded_checkpoint(const TrainerState& state, bool export_policy) {
    if constexpr (!TensorParallelPolicy<P>) {
      check_checkpoint_layout();  // throws: this policy cannot be saved sharded
      return {};
    } else {
      namespace fs = std::filesystem;
      const fs::path dir = options_.output_dir / "checkpoints";
      Communicator* world = world_ ? world_.get() : comm_.get();
      std::optional<io::StagedDirectory> stage;
      std::string staged;
      if (writes()) {
        stage.emplace(dir / detail::checkpoint_name(state.step));
        policy_.save_config(stage->path() / "shards");
        staged = stage->path().string();
      }
      if (world != nullptr) staged = all_gather(*world, staged).front();  // rank 0's staging folder, on every rank
      const auto names = detail::param_names(optimizer_.params(), policy_.named_parameters());
      const ShardCoordinates at{.tensor_rank = tensor_ ? tensor_->rank() : 0,
                                .tensor_size = tensor_ ? tensor_->world_size() : 1,
                                .data_rank = rank(),
                                .data_size = world_size()};
      auto local = optimizer_.local_moments();
      // Without ZeRO-1 every data rank holds the same state: data rank 0's copy is written.
      if (!optimizer_.sharded() && at.data_rank != 0) local.assign(local.size(), AdamWMoments{});
      write_checkpoint_shards(fs::path(staged) / "shards", policy_, names, local, at);
      if (world != nullptr) world->barrier();  // every rank's files are in place
      fs::path published = dir / detail::checkpoint_name(state.step);
      if (writes()) {
        std::vector<std::string> parameters;
        for (const auto& [name, tensor] : policy_.named_parameters()) parameters.push_back(name);
        write_shard_index(stage->path() / "shards", at, parameters, names);
        if (export_policy) export_sharded_policy(stage->path() / "shards", stage->path() / "policy");
        published = detail::publish_checkpoint(dir, *stage, state, options_.keep_checkpoints);
      }
      // Within the group's timeout (distributed.timeout_s): rank 0's export of a 32B policy takes
      // minutes, and a rank 0 that failed must not leave the others waiting forever.
      if (world != nullptr) world->barrier();
      return published;
    }
  }

  /// The sharded layout needs a policy that says which slice of each tensor it holds (and every
  /// tensor it has in such a slice: a LoRA adapter is refused by Qwen2Policy::parameter_slice).
  void check_checkpoint_layout() const {
    if (!sharded_checkpoints()) return;
    if constexpr (!TensorParallelPolicy<P>) {
      throw Error("checkpoint_layout sharded: this policy does not model grpo::TensorParallelPolicy (it cannot say "
                  "which slice of each tensor it holds); use the whole layout");
    } else {
      for (const auto& [name, tensor] : policy_.named_parameters()) (void)policy_.parameter_slice(name);
    }
  }

  static std::vector<at::Tensor> checked_trainable(P& policy) {
    auto params = trainable(policy.parameters());
    if (params.empty()) {
      throw Error("Trainer: the policy has no parameters to train (none, or all frozen: requires_grad is false on every one)");
    }
    return params;
  }

  std::uint64_t step_seed(std::int64_t step) const {
    std::uint64_t x = options_.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(step) + 1;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x & 0x0000FFFFFFFFFFFFull;  // room for + sample index without overflow
  }

  /// Round `round` of the step: the next prompts_per_step prompts after the earlier rounds'; this
  /// rank rolls out, scores and estimates advantages for its share (a contiguous slice of whole
  /// prompts; all of them in one process). Sample seeds continue the global index across rounds.
  ScoredRollout draw(std::int64_t round) {
    using Clock = std::chrono::steady_clock;
    const auto prompts_n = static_cast<std::size_t>(options_.prompts_per_step);
    const auto t0 = Clock::now();
    const auto batch = prompts_.batch(data_position_ + static_cast<std::uint64_t>(round) * prompts_n, prompts_n);
    const std::size_t share = batch.size() / static_cast<std::size_t>(world_size());
    const std::size_t first = share * static_cast<std::size_t>(rank());
    ScoredRollout d;
    d.rollout = rollout(std::span(batch).subspan(first, share), step_,
                        (static_cast<std::uint64_t>(round) * prompts_n + first) * static_cast<std::uint64_t>(options_.group_size));
    const auto t1 = Clock::now();
    d.table = score(d.rollout);
    d.adv = advantages(d.rollout, d.table);
    d.sample_s = std::chrono::duration<double>(t1 - t0).count();
    d.score_s = std::chrono::duration<double>(Clock::now() - t1).count();
    d.prompts_consumed = prompts_n;
    d.rounds = 1;
    d.groups_drawn = static_cast<double>(prompts_n);
    return d;
  }

  /// The settings every rank must share (check_ranks_agree), with the position of a resumed run.
  std::vector<RankSetting> settings() const {
    auto elements = [](const std::vector<at::Tensor>& ts) {
      std::int64_t n = 0;
      for (const auto& t : ts) n += t.numel();
      return n;
    };
    const auto policy_params = policy_.parameters();
    std::vector<RankSetting> all = options_.rank_settings();
    all.insert(all.end(), {
            {"number of prompts", static_cast<std::int64_t>(prompts_.size())},
            {"policy tensors", static_cast<std::int64_t>(policy_params.size())},
            {"policy elements", elements(policy_params)},
            {"trainable tensors", static_cast<std::int64_t>(optimizer_.params().size())},
            {"trainable elements", elements(optimizer_.params())},
            {"a reference policy", reference_ != nullptr ? 1 : 0},
            {"reference elements", reference_ != nullptr ? elements(reference_->parameters()) : 0},
            {"step", step_},
            {"data position", static_cast<std::int64_t>(data_position_)},
            {"update index", optimizer_.update_index()}});
    return all;
  }

  P& policy_;
  P* reference_;
  Rewards rewards_;
  Advantage advantage_;
  Loss loss_;
  PromptDataset prompts_;
  TrainerOptions options_;
  ClippedAdamW optimizer_;  ///< the trainable tensors, in the order of checkpoints; AdamW; the schedule
  std::vector<std::string> reward_names_;
  PeakMemory memory_;
  std::shared_ptr<Communicator> comm_;  ///< the data-parallel group; null: one process
  std::shared_ptr<Communicator> tensor_;  ///< the tensor-parallel group; null: the policy is whole here
  std::shared_ptr<Communicator> world_;   ///< every rank (tensor x data); null: see comm_
  bool writer_ = true;                    ///< this process writes the run's files
  std::int64_t step_ = 0;
  std::uint64_t data_position_ = 0;
  ScoredRollout last_;  ///< the last step's samples, for the completions table
};

}  // namespace grpo
