// The writing reward against transformers' Qwen2ForSequenceClassification on the same inputs
// (fixture tests/python/fixtures/writing_reward.py), and Bradley-Terry training on a separable
// preference task with a hand-checkable objective.
#include <ATen/ops/log_sigmoid.h>
#include <ATen/ops/tensor.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/rewards/writing.hpp>
#include <grpo/trainer/reward_model_training.hpp>

#include "../catch_torch.hpp"

namespace {
const std::filesystem::path fixture = std::filesystem::path(GRPO_FIXTURE_DIR) / "writing_reward";
}

TEST_CASE("reward_model_input is one ChatML turn closed by <|im_end|>", "[writing]") {
  CHECK(grpo::reward_model_input("P", "A") == "<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\nA<|im_end|>");
}

TEST_CASE("WritingReward scores the answer like transformers, whatever the batching", "[writing]") {
  std::ifstream in(fixture / "cases.json");
  REQUIRE(in);
  const auto cases = nlohmann::json::parse(in);
  std::vector<std::string> prompts, completions;
  for (const auto& c : cases) {
    prompts.push_back(c["prompt"]);
    completions.push_back(c["completion"]);
  }
  std::vector<grpo::Sample> batch;
  for (std::size_t i = 0; i < cases.size(); ++i) batch.push_back({.prompt = prompts[i], .completion = completions[i]});
  for (std::int64_t batch_size : {1, 3, 16}) {
    grpo::WritingReward reward(grpo::load_qwen2_reward_model(fixture / "rm"),
                               grpo::Tokenizer::from_file(fixture / "rm" / "tokenizer.json"),
                               {.batch_size = batch_size, .max_tokens = 4096});
    std::vector<float> scores(batch.size());
    reward.score(batch, scores);
    for (std::size_t i = 0; i < cases.size(); ++i) {
      INFO("case " << i << " batch " << batch_size);
      CHECK(scores[i] == Approx(cases[i]["score"].get<double>()).margin(1e-4));
    }
  }
}

TEST_CASE("WritingReward keeps the tail of inputs longer than max_tokens", "[writing]") {
  auto tokenizer = grpo::Tokenizer::from_file(fixture / "rm" / "tokenizer.json");
  const grpo::RewardModelBatcher batcher{&tokenizer, 151643, 10};
  const auto full = tokenizer.encode(grpo::reward_model_input("a long prompt " + std::string(200, 'x'), "end"));
  const auto cut = batcher.encode("a long prompt " + std::string(200, 'x'), "end");
  REQUIRE(cut.size() == 10);
  CHECK(std::equal(cut.begin(), cut.end(), full.end() - 10));
}

TEST_CASE("Bradley-Terry training separates chosen from rejected", "[writing]") {
  // A separable task: chosen answers are calm sentences, rejected ones shout "BAD" words. The
  // initial model (random) is near chance; after training the held-out pairs are ranked right.
  auto tokenizer = grpo::Tokenizer::from_file(fixture / "rm" / "tokenizer.json");
  grpo::Qwen2Config config = grpo::load_qwen2_config(fixture / "rm" / "config.json");
  config.hidden_size = 32;
  torch::manual_seed(3);
  grpo::Qwen2RewardModel model(config);
  std::vector<grpo::PreferencePair> pairs;
  const char* good[] = {"The river is calm today.", "We walked home slowly.", "The bread was warm and soft.",
                        "She played the piano well.", "Leaves fell in the garden."};
  const char* bad[] = {"BAD BAD terrible awful.", "awful awful BAD noise.", "terrible BAD BAD BAD.",
                       "noise awful terrible BAD.", "BAD noise BAD awful."};
  for (int i = 0; i < 120; ++i) pairs.push_back({"Write something.", good[i % 5], bad[(i * 3) % 5]});
  grpo::RewardModelTrainingOptions options;
  options.epochs = 3;
  options.batch_size = 8;
  options.lr = {.peak = 3e-3};
  options.eval_fraction = 0.25;
  const auto result = grpo::train_reward_model(model, tokenizer, pairs, options);
  CHECK(result.train_pairs == 90);
  CHECK(result.eval_pairs == 30);
  CHECK(result.last_loss < result.first_loss);
  CHECK(result.eval_accuracy == 1.0);
  // The reported loss is the Bradley-Terry loss: recompute it for one pair by hand.
  const grpo::RewardModelBatcher batcher{&tokenizer, 151643, 2048};
  const grpo::PreferencePair* one[] = {&pairs[0]};
  at::NoGradGuard no_grad;
  auto [c, r] = grpo::detail::score_pairs(model, batcher, one);
  const double expected = std::log1p(std::exp(-(c.item<double>() - r.item<double>())));  // -log sigmoid(d)
  CHECK(-at::log_sigmoid(c - r).item<double>() == Approx(expected).epsilon(1e-5));
}

TEST_CASE("preference files: errors name the line and the field", "[writing]") {
  const auto path = std::filesystem::temp_directory_path() / "grpo_pairs_test.jsonl";
  std::ofstream(path) << R"({"prompt": "p", "chosen": "a", "rejected": "b"})" << "\n" << R"({"prompt": "p", "chosen": "a"})" << "\n";
  try {
    grpo::read_preference_pairs(path);
    FAIL("expected an error");
  } catch (const grpo::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains(path.string() + ":2") && Catch::Contains("\"rejected\""));
  }
  std::filesystem::remove(path);
}
