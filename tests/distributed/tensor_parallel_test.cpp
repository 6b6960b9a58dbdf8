// Tensor parallelism (Megatron layout, grpo/model/qwen2_sharding.hpp) over T = 2 and 4 Gloo
// ranks, and a T = 2 x D = 2 mesh, run as threads of one process (rank_threads.hpp). References:
// the transformers outputs of tests/python/fixtures/qwen2.py (logits, log-probs, entropies,
// greedy tokens) and the same model in one process (log-probs, gradients, sampled tokens, saved
// tensors). Sequence parallelism (Qwen2Options::sequence_parallel: the residual stream's tokens
// split over T too, padded to a multiple of T) must give the same. Fixture models: tied and untied output projections, key/value heads split (KV >= T)
// and replicated (mqa: KV = 1 < T = 2; gqa4_sharded: KV = 2 < T = 4), a 10-file sharded index.
//
// Catch2 assertions are not thread-safe: ranks record what they computed, the test thread checks.
#include <ATen/ops/equal.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/zeros_like.h>

#include <filesystem>
#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <grpo/distributed/mesh.hpp>
#include <grpo/distributed/tensor_parallel.hpp>
#include <grpo/io/safetensors.hpp>
#include <grpo/loss/vocab_parallel_logprobs.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/model/qwen2_generate.hpp>
#include <grpo/model/qwen2_policy.hpp>
#include <grpo/model/qwen2_sharding.hpp>

#include "../catch_torch.hpp"
#include "../qwen2_fixtures.hpp"
#include "rank_threads.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path& fixtures = grpo_test::qwen2_fixtures;
using grpo_test::expected;
using grpo_test::masked_max_difference;
using grpo_test::prompts_of;


struct Mesh {
  int world;
  int tensor;
};

grpo::TokenBatch logprob_batch(const std::string& model) {
  return {expected(model, "lp_ids"), expected(model, "lp_mask"), expected(model, "lp_completion_mask")};
}

// A loss that weighs every position differently (log-probs and entropies), so a wrong gradient
// anywhere shows: sum(logprobs * c) + sum(entropy * c / 3).
at::Tensor weighted_loss(const grpo::TokenLogprobs& out) {
  const auto c = at::linspace(-1.0, 2.0, out.logprobs.numel(), out.logprobs.options()).view(out.logprobs.sizes());
  return (out.logprobs * c).sum() + (out.entropy * c).sum() / 3.0;
}


}  // namespace

TEST_CASE("the device mesh and the model's split reject what does not divide, naming what would work",
          "[distributed][tensor_parallel]") {
  const auto c = grpo::mesh_coordinates(5, 8, 2);  // rank 5 of T = 2 x D = 4: t = 1, d = 2
  CHECK(c.tensor_rank == 1);
  CHECK(c.data_rank == 2);
  CHECK(c.tensor_group_ranks() == std::vector<int>{4, 5});
  CHECK(c.data_group_ranks() == std::vector<int>{1, 3, 5, 7});
  CHECK_THROWS_WITH(grpo::mesh_coordinates(0, 6, 4), Catch::Contains("parallel.tensor = 4") && Catch::Contains("WORLD_SIZE 6") &&
                                                          Catch::Contains("1, 2, 3, 6"));
  // Qwen2.5-0.5B: 14 heads, 2 key/value heads, intermediate 4864, vocabulary 151936. By hand:
  // T = 2 divides all; 7 and 14 divide the heads but neither divide nor are divided by KV = 2...
  // 14 is divisible by KV = 2 but 4864 / 14 is not whole; so only 1 and 2 work.
  grpo::Qwen2Config qwen05;
  qwen05.hidden_size = 896;
  qwen05.intermediate_size = 4864;
  qwen05.num_attention_heads = 14;
  qwen05.num_key_value_heads = 2;
  qwen05.vocab_size = 151936;
  qwen05.num_hidden_layers = 24;
  CHECK_NOTHROW(grpo::check_tensor_parallel(qwen05, 2));
  CHECK_THROWS_WITH(grpo::check_tensor_parallel(qwen05, 4, "parallel.tensor"),
                    Catch::Contains("parallel.tensor = 4") && Catch::Contains("num_attention_heads (14)") &&
                        Catch::Contains("work for this model: 1, 2"));
  CHECK_THROWS_WITH(grpo::check_tensor_parallel(qwen05, 7), Catch::Contains("num_key_value_heads (2)"));
  // Qwen2.5-32B (40 heads, 8 key/value heads, 27648, 152064): T = 8 splits everything.
  grpo::Qwen2Config qwen32 = qwen05;
  qwen32.hidden_size = 5120;
  qwen32.intermediate_size = 27648;
  qwen32.num_attention_heads = 40;
  qwen32.num_key_value_heads = 8;
  qwen32.vocab_size = 152064;
  CHECK_NOTHROW(grpo::check_tensor_parallel(qwen32, 8));
  const auto s = grpo::qwen2_shard(qwen32, 3, 8);
  CHECK(s.heads == 5);
  CHECK(s.kv_heads == 1);
  CHECK(s.intermediate == 3456);
  CHECK(s.vocab_start == 3 * 19008);
}

TEST_CASE("a tensor-parallel Qwen2 gives transformers' logits, log-probs and entropies, and one process's gradients",
          "[distributed][tensor_parallel]") {
  struct Case {
    std::string model;
    Mesh mesh;
    bool sequence = false;  // sequence parallelism too: the tokens of the residual stream split over T
  };
  const std::vector<Case> cases = {{"tied_gqa2", {2, 2}},       {"untied_mha", {2, 2}},       {"mqa", {2, 2}},
                                   {"gqa4_sharded", {4, 4}},    {"tied_gqa2", {4, 2}},        {"tied_gqa2", {2, 2}, true},
                                   {"untied_mha", {2, 2}, true}, {"gqa4_sharded", {4, 4}, true}, {"tied_gqa2", {4, 2}, true}};
  for (const auto& [name, mesh, sequence] : cases) {
    INFO(name << " on T = " << mesh.tensor << " x D = " << mesh.world / mesh.tensor << (sequence ? ", sequence parallel" : ""));
    // One process: the reference gradients.
    auto whole = grpo::load_qwen2(fixtures / name);
    whole->eval();
    const auto batch = logprob_batch(name);
    const grpo::TokenLogprobOptions options{.chunk_size = 5, .temperature = 0.7, .compute_entropy = true, .vocab_block = 48};
    const auto reference = grpo::teacher_forced_logprobs(whole, batch, options);
    weighted_loss(reference).backward();
    std::map<std::string, at::Tensor> whole_grads;
    for (const auto& item : whole->named_parameters()) whole_grads[item.key()] = item.value().grad();

    struct RankResult {
      at::Tensor logits, logprobs, entropy;
      std::vector<std::pair<std::string, double>> grad_errors;  // max |slice of one process - this rank|
      std::size_t parameters = 0;
      bool sequence_active = false;
    };
    std::vector<RankResult> results(static_cast<std::size_t>(mesh.world));
    grpo_test::run_mesh(mesh.world, mesh.tensor, [&](int rank, grpo::DeviceMesh& m) {
      auto model = grpo::load_qwen2(fixtures / name, {.tensor_parallel = m.tensor_parallel(), .sequence_parallel = sequence});
      model->eval();
      auto& out = results[static_cast<std::size_t>(rank)];
      out.sequence_active = model->model->sequence_parallel();
      {
        at::NoGradGuard no_grad;
        out.logits = model->logits(model->forward(expected(name, "right_ids"), expected(name, "right_mask")));
      }
      const auto lp = grpo::teacher_forced_logprobs(model, batch, options);
      out.logprobs = lp.logprobs.detach();
      out.entropy = lp.entropy.detach();
      weighted_loss(lp).backward();
      const auto shard = model->model->shard();
      for (const auto& item : model->named_parameters()) {
        const auto slice = grpo::qwen2_parameter_slice(item.key(), shard);
        auto want = whole_grads.at(item.key());
        if (!slice.whole()) want = want.narrow(slice.dim, slice.slice.start, slice.slice.length);
        // float32 sums in another order: relative to the gradient's largest element
        const double scale = std::max(1.0, want.abs().max().item<double>());
        out.grad_errors.emplace_back(item.key(), (item.value().grad() - want).abs().max().item<double>() / scale);
        ++out.parameters;
      }
    });
    for (int r = 0; r < mesh.world; ++r) {
      INFO("rank " << r);
      const auto& out = results[static_cast<std::size_t>(r)];
      CHECK(masked_max_difference(out.logits, expected(name, "right_logits"), expected(name, "right_mask")) < 1e-4);
      const auto scored = batch.completion_mask;
      CHECK(masked_max_difference(out.logprobs, expected(name, "lp_logprobs_t07"), scored) < 1e-4);
      CHECK(masked_max_difference(out.entropy, expected(name, "lp_entropy_t07"), scored) < 1e-4);
      // One process: float32 sums in another order, 1e-5 relative to the values (|log p| ~ 6 here)
      CHECK(masked_max_difference(out.logprobs, reference.logprobs.detach(), scored) <
            1e-5 * std::max(1.0, reference.logprobs.abs().max().item<double>()));
      CHECK(masked_max_difference(out.entropy, reference.entropy.detach(), scored) <
            1e-5 * std::max(1.0, reference.entropy.abs().max().item<double>()));
      CHECK(out.parameters == whole_grads.size());
      CHECK(out.sequence_active == sequence);
      // Sequence parallelism sums every block's input gradient over the group once more (the
      // reduce-scatter of the tokens, in Gloo's ring order for another buffer layout): float32
      // sums of T terms in another order at every layer. A wrong gradient is off by O(0.1-1).
      const double tolerance = sequence ? 3e-5 : 1e-5;
      for (const auto& [param, error] : out.grad_errors) {
        INFO(param);
        CHECK(error < tolerance);
      }
    }
  }
}

TEST_CASE("greedy and seeded sampling under tensor parallelism give one process's tokens", "[distributed][tensor_parallel]") {
  for (const std::string name : {"tied_gqa2", "mqa"}) {
    INFO(name);
    auto whole = grpo::load_qwen2(fixtures / name);
    whole->eval();
    const auto prompts = prompts_of(name);
    const grpo::SamplingOptions seeded{.temperature = 0.8, .top_p = 0.9, .top_k = 40, .max_new_tokens = 24, .seed = 7};
    const auto reference = grpo::generate(whole, prompts, seeded);
    std::vector<std::vector<grpo::Generation>> greedy(2), sampled(2);
    grpo_test::run_mesh(2, 2, [&](int rank, grpo::DeviceMesh& m) {
      auto model = grpo::load_qwen2(fixtures / name, {.tensor_parallel = m.tensor_parallel()});
      model->eval();
      greedy[static_cast<std::size_t>(rank)] = grpo::generate(model, prompts, {.max_new_tokens = 64, .greedy = true});
      sampled[static_cast<std::size_t>(rank)] = grpo::generate(model, prompts, seeded);
    });
    const auto transformers_greedy = expected(name, "gen_greedy");
    for (int r = 0; r < 2; ++r) {
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        const auto row = transformers_greedy[static_cast<std::int64_t>(i)].contiguous();
        CHECK(greedy[static_cast<std::size_t>(r)][i].ids ==
              std::vector<std::int64_t>(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + row.numel()));
        CHECK(sampled[static_cast<std::size_t>(r)][i].ids == reference[i].ids);
      }
    }
  }
}

TEST_CASE("a tensor-parallel model loads only its slices and saves the whole checkpoint back", "[distributed][tensor_parallel]") {
  // gqa4_sharded: ten safetensors files and an index; T = 4 replicates its 2 key/value heads.
  const std::string name = "gqa4_sharded";
  const auto out = fs::path(GRPO_FIXTURE_DIR) / "scratch-tensor-parallel" / "saved";
  fs::remove_all(out);
  fs::create_directories(out.parent_path());
  std::vector<std::int64_t> local_elements(4), whole_elements(4);
  grpo_test::run_mesh(4, 4, [&](int rank, grpo::DeviceMesh& m) {
    auto model = grpo::load_qwen2(fixtures / name, {.tensor_parallel = m.tensor_parallel()});
    for (const auto& p : model->parameters()) local_elements[static_cast<std::size_t>(rank)] += p.numel();
    grpo::save_qwen2(model, out);  // every rank of the group calls it; rank 0 writes
  });
  const auto source = grpo::io::SafetensorsCheckpoint::open(fixtures / name);
  const auto saved = grpo::io::SafetensorsCheckpoint::open(out);
  CHECK(saved.names() == source.names());
  for (const auto& tensor : source.names()) {
    INFO(tensor);
    CHECK(at::equal(saved.load(tensor), source.load(tensor)));
  }
  // By hand: hidden 64, 3 layers, 8 heads of 8, 2 kv heads, intermediate 96, vocab 320, untied.
  // Per layer whole: q 64*64+64, k and v 16*64+16 each, o 64*64, mlp 3*64*96, norms 2*64.
  // Per rank (T = 4): q 16*64+16, k and v one head 8*64+8 each, o 64*16, mlp 3*64*24, norms 2*64;
  // embeddings and lm_head 80*64 each, final norm 64.
  const std::int64_t per_rank_layer = (16 * 64 + 16) + 2 * (8 * 64 + 8) + 64 * 16 + 3 * 64 * 24 + 2 * 64;
  const std::int64_t per_rank = 3 * per_rank_layer + 2 * 80 * 64 + 64;
  for (int r = 0; r < 4; ++r) CHECK(local_elements[static_cast<std::size_t>(r)] == per_rank);
}

TEST_CASE("vocabulary-parallel log-probs equal token_logprobs, tiled or whole rows, with their gradients",
          "[distributed][tensor_parallel]") {
  at::manual_seed(3);
  const auto hidden = at::randn({13, 16}, at::kDouble);
  const auto weight = at::randn({40, 16}, at::kDouble);
  const auto targets = at::randint(0, 40, {13}, at::kLong);
  for (const std::int64_t block : {0, 7}) {
    INFO("vocab_block " << block);
    const grpo::TokenLogprobOptions options{.chunk_size = 4, .temperature = 0.9, .compute_entropy = true, .vocab_block = block};
    auto h = hidden.clone().requires_grad_(true);
    auto w = weight.clone().requires_grad_(true);
    const auto reference = grpo::token_logprobs(h, w, targets, options);
    const auto c = at::linspace(-1.0, 1.0, 13, at::kDouble);
    ((reference.logprobs * c).sum() + (reference.entropy * c * c).sum()).backward();
    std::vector<at::Tensor> lp(2), ent(2), gh(2), gw(2);
    grpo_test::run_mesh(2, 2, [&](int rank, grpo::DeviceMesh& m) {
      auto hr = hidden.clone().requires_grad_(true);
      auto wr = weight.narrow(0, rank * 20, 20).clone().requires_grad_(true);
      const auto out = grpo::vocab_parallel_token_logprobs(hr, wr, targets, rank * 20, m.tensor_parallel(), options);
      ((out.logprobs * c).sum() + (out.entropy * c * c).sum()).backward();
      const auto i = static_cast<std::size_t>(rank);
      lp[i] = out.logprobs.detach();
      ent[i] = out.entropy.detach();
      gh[i] = hr.grad();
      gw[i] = wr.grad();
    });
    for (int r = 0; r < 2; ++r) {
      const auto i = static_cast<std::size_t>(r);
      CHECK(at::allclose(lp[i], reference.logprobs.detach(), 0, 1e-12));
      CHECK(at::allclose(ent[i], reference.entropy.detach(), 0, 1e-12));
      CHECK(at::allclose(gh[i], h.grad(), 0, 1e-12));
      CHECK(at::allclose(gw[i], w.grad().narrow(0, r * 20, 20), 0, 1e-12));
    }
  }
}

TEST_CASE("a tensor-parallel reward model gives transformers' scores and one process's gradients",
          "[distributed][tensor_parallel]") {
  // Inputs: the fixture's (right-padded, 10 tokens: transformers' scores), its first 9 tokens (not
  // a multiple of T = 2: sequence parallelism pads) and the same rows left-padded.
  const auto ids = expected("reward", "rm_ids");
  const auto mask = expected("reward", "rm_mask");
  const auto odd_ids = ids.narrow(1, 0, 9).contiguous();
  const auto odd_mask = mask.narrow(1, 0, 9).contiguous();
  auto left_ids = at::zeros_like(ids);
  auto left_mask = at::zeros_like(mask);
  for (std::int64_t i = 0; i < ids.size(0); ++i) {
    const auto n = mask[i].sum().item<std::int64_t>();
    left_ids[i].narrow(0, ids.size(1) - n, n).copy_(ids[i].narrow(0, 0, n));
    left_mask[i].narrow(0, ids.size(1) - n, n).fill_(1);
  }
  struct Input {
    const char* what;
    at::Tensor ids, mask;
  };
  for (const auto& input : {Input{"fixture", ids, mask}, Input{"9 tokens", odd_ids, odd_mask},
                            Input{"left-padded", left_ids, left_mask}}) {
    auto whole = grpo::load_qwen2_reward_model(fixtures / "reward");
    whole->eval();
    const auto whole_scores = whole->forward(input.ids, input.mask);
    whole_scores.sum().backward();
    std::map<std::string, at::Tensor> whole_grads;
    for (const auto& item : whole->named_parameters()) whole_grads[item.key()] = item.value().grad();
    for (const bool sequence : {false, true}) {
      INFO(input.what << (sequence ? ", sequence parallel" : ", tensor parallel"));
      std::vector<at::Tensor> scores(2);
      std::vector<double> worst(2, 0.0);
      std::vector<bool> split_tokens(2, false);
      grpo_test::run_mesh(2, 2, [&](int rank, grpo::DeviceMesh& m) {
        auto model = grpo::load_qwen2_reward_model(fixtures / "reward",
                                                   {.tensor_parallel = m.tensor_parallel(), .sequence_parallel = sequence});
        model->eval();
        split_tokens[static_cast<std::size_t>(rank)] = model->model->sequence_parallel();
        const auto out = model->forward(input.ids, input.mask);
        scores[static_cast<std::size_t>(rank)] = out.detach();
        out.sum().backward();
        for (const auto& item : model->named_parameters()) {
          const auto slice = grpo::qwen2_parameter_slice(item.key(), model->model->shard());
          auto want = whole_grads.at(item.key());
          if (!slice.whole()) want = want.narrow(slice.dim, slice.slice.start, slice.slice.length);
          const double scale = std::max(1.0, want.abs().max().item<double>());
          worst[static_cast<std::size_t>(rank)] =
              std::max(worst[static_cast<std::size_t>(rank)], (item.value().grad() - want).abs().max().item<double>() / scale);
        }
      });
      for (int r = 0; r < 2; ++r) {
        const auto i = static_cast<std::size_t>(r);
        CHECK(split_tokens[i] == sequence);
        if (std::string(input.what) == "fixture")
          CHECK((scores[i] - expected("reward", "rm_scores")).abs().max().item<double>() < 1e-4);
        CHECK((scores[i] - whole_scores.detach()).abs().max().item<double>() < 1e-5);
        CHECK(worst[i] < 1e-5);
      }
    }
  }
}

TEST_CASE("sequence parallelism gives each rank its tokens of the embedding", "[distributed][tensor_parallel]") {
  // The residual stream starts split: rank r holds tokens [r L / T, (r + 1) L / T) of the whole
  // model's embedding output (summed over the vocabulary slices, reduce-scattered over the tokens).
  const auto ids = expected("tied_gqa2", "right_ids").narrow(1, 0, 10).contiguous();  // [3, 10]
  auto whole = grpo::load_qwen2(fixtures / "tied_gqa2");
  at::Tensor want;
  {
    at::NoGradGuard no_grad;
    want = whole->model->embed_tokens->forward(ids);
  }
  std::vector<at::Tensor> got(2);
  grpo_test::run_mesh(2, 2, [&](int rank, grpo::DeviceMesh& m) {
    auto model = grpo::load_qwen2(fixtures / "tied_gqa2", {.tensor_parallel = m.tensor_parallel(), .sequence_parallel = true});
    at::NoGradGuard no_grad;
    got[static_cast<std::size_t>(rank)] = model->model->embed_tokens->forward(ids, /*sequence=*/true);
  });
  for (int r = 0; r < 2; ++r) {
    REQUIRE(got[static_cast<std::size_t>(r)].sizes().equals({3, 5, want.size(2)}));
    CHECK(at::equal(got[static_cast<std::size_t>(r)], want.narrow(1, 5 * r, 5)));
  }
}

TEST_CASE("activation checkpointing under tensor parallelism recomputes the same gradients", "[distributed][tensor_parallel]") {
  // The recomputed layers run their collectives again in the backward pass, on every rank alike.
  const std::string name = "gqa4_sharded";
  const auto batch = logprob_batch(name);
  const grpo::TokenLogprobOptions options{.chunk_size = 7, .temperature = 1.0, .compute_entropy = true};
  auto whole = grpo::load_qwen2(fixtures / name);
  whole->train();
  weighted_loss(grpo::teacher_forced_logprobs(whole, batch, options)).backward();
  std::map<std::string, at::Tensor> whole_grads;
  for (const auto& item : whole->named_parameters()) whole_grads[item.key()] = item.value().grad();
  for (const bool sequence : {false, true}) {
  INFO((sequence ? "sequence parallel" : "tensor parallel"));
  std::vector<double> worst(2, 0.0);
  grpo_test::run_mesh(2, 2, [&](int rank, grpo::DeviceMesh& m) {
    auto model = grpo::load_qwen2(fixtures / name, {.activation_checkpointing = true,
                                                    .tensor_parallel = m.tensor_parallel(),
                                                    .sequence_parallel = sequence});
    model->train();
    weighted_loss(grpo::teacher_forced_logprobs(model, batch, options)).backward();
    for (const auto& item : model->named_parameters()) {
      const auto slice = grpo::qwen2_parameter_slice(item.key(), model->model->shard());
      auto want = whole_grads.at(item.key());
      if (!slice.whole()) want = want.narrow(slice.dim, slice.slice.start, slice.slice.length);
      const double scale = std::max(1.0, want.abs().max().item<double>());
      auto& w = worst[static_cast<std::size_t>(rank)];
      w = std::max(w, (item.value().grad() - want).abs().max().item<double>() / scale);
    }
  });
  CHECK(worst[0] < 1e-5);
  CHECK(worst[1] < 1e-5);
  }
}
