// grpo/core/enum_names.hpp and the name tables next to the library's enums. The tables are checked
// against what users write, not against themselves: the name -> enumerator pairs each enum's
// documentation gives (written out here), the table of config names in docs/training.md, the
// docs that describe the choices (docs/loss.md, docs/model.md), and the shipped configs
// (examples/configs/*.json), whose every enum-valued key must parse.
#include <grpo/core/group_rule.hpp>
#include <grpo/core/enum_names.hpp>
#include <grpo/core/generation.hpp>
#include <grpo/loss/clipped_surrogate.hpp>
#include <grpo/sampling/prompts.hpp>
#include <grpo/trainer/options.hpp>
#include <grpo/optim/schedule.hpp>

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

enum class Fruit { apple, pear, quince };
// quince has no name on purpose: enum_name must refuse it rather than print garbage.
constexpr grpo::EnumName<Fruit> fruit_names[] = {{"apple", Fruit::apple}, {"pear", Fruit::pear}};

// The lookups are usable at compile time.
static_assert(grpo::find_enum(fruit_names, "pear") == Fruit::pear);
static_assert(!grpo::find_enum(fruit_names, "Pear").has_value());
static_assert(grpo::enum_name(fruit_names, Fruit::apple) == "apple");

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The cells of the row of docs/training.md's table of named config keys whose first cell holds
/// "`key`".
std::vector<std::string> docs_row(const std::string& key) {
  std::istringstream doc(read_text(std::filesystem::path(GRPO_SOURCE_DIR) / "docs" / "training.md"));
  for (std::string line; std::getline(doc, line);) {
    if (!line.starts_with("| ")) continue;
    std::vector<std::string> cells;
    std::size_t start = 1;
    for (std::size_t bar; (bar = line.find('|', start)) != std::string::npos; start = bar + 1) {
      cells.push_back(line.substr(start, bar - start));
    }
    if (cells.size() == 3 && cells[0].find("`" + key + "`") != std::string::npos) return cells;
  }
  FAIL("docs/training.md: no row for `" << key << "` in the table of named config keys");
  return {};
}

/// The `snake_case` words of a docs cell (class names such as `grpo::Balanced` are left out).
std::vector<std::string> backticked_names(const std::string& cell) {
  std::vector<std::string> out;
  for (std::size_t open = cell.find('`'); open != std::string::npos; open = cell.find('`', open)) {
    const auto close = cell.find('`', open + 1);
    REQUIRE(close != std::string::npos);
    const auto word = cell.substr(open + 1, close - open - 1);
    if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos) {
      out.push_back(word);
    }
    open = close + 1;
  }
  return out;
}

/// Every name of `table`, in order: the expected names with their enumerators; each round-trips.
template <class E, std::size_t N>
void check_table(const grpo::EnumName<E> (&table)[N], const std::vector<std::pair<std::string, E>>& expected) {
  REQUIRE(N == expected.size());
  for (std::size_t i = 0; i < N; ++i) {
    INFO("row " << i << ": " << expected[i].first);
    CHECK(table[i].name == expected[i].first);
    CHECK(grpo::parse_enum(table, expected[i].first, "field") == expected[i].second);
    CHECK(grpo::enum_name(table, expected[i].second) == expected[i].first);
  }
}

/// The table's names are exactly those docs/training.md lists for `key`, in the same order, and
/// the documented default is one of them.
template <class E, std::size_t N>
void check_docs(const grpo::EnumName<E> (&table)[N], const std::string& key, E documented_default) {
  INFO("docs/training.md, `" << key << "`");
  const auto cells = docs_row(key);
  std::vector<std::string> names;
  for (const auto& row : table) names.emplace_back(row.name);
  CHECK(backticked_names(cells[1]) == names);
  const auto defaults = backticked_names(cells[2]);
  REQUIRE(defaults.size() == 1);
  CHECK(grpo::parse_enum(table, defaults[0], key) == documented_default);
}

}  // namespace

TEST_CASE("parse_enum finds a name, and a bad name's error lists the choices", "[enum_names]") {
  CHECK(grpo::parse_enum(fruit_names, "apple", "basket.fruit") == Fruit::apple);
  CHECK(grpo::parse_enum(fruit_names, "pear", "basket.fruit") == Fruit::pear);
  // The message names the field, the accepted names in table order and the value found.
  CHECK_THROWS_AS(grpo::parse_enum(fruit_names, "banana", "basket.fruit"), grpo::Error);
  CHECK_THROWS_WITH(grpo::parse_enum(fruit_names, "banana", "basket.fruit"),
                    "basket.fruit: expected one of apple, pear, found \"banana\"");
  // Matching is exact: no case folding, no trimming, no prefixes.
  CHECK_THROWS_WITH(grpo::parse_enum(fruit_names, "Apple", "--fruit"), "--fruit: expected one of apple, pear, found \"Apple\"");
  CHECK_THROWS_WITH(grpo::parse_enum(fruit_names, " pear", "f"), "f: expected one of apple, pear, found \" pear\"");
  CHECK_THROWS_WITH(grpo::parse_enum(fruit_names, "app", "f"), "f: expected one of apple, pear, found \"app\"");
  CHECK_THROWS_WITH(grpo::parse_enum(fruit_names, "", "f"), "f: expected one of apple, pear, found \"\"");
}

TEST_CASE("the span forms match the array forms", "[enum_names]") {
  const std::span<const grpo::EnumName<Fruit>> names(fruit_names);
  CHECK(grpo::find_enum(names, "pear") == Fruit::pear);
  CHECK_FALSE(grpo::find_enum(names, "plum").has_value());
  CHECK(grpo::parse_enum(names, "apple", "f") == Fruit::apple);
  CHECK(grpo::enum_name(names, Fruit::pear) == "pear");
  CHECK(grpo::enum_choices(names) == "apple, pear");
  CHECK(grpo::enum_choices(std::span<const grpo::EnumName<Fruit>>()) == "");
}

TEST_CASE("enum_name refuses an enumerator its table does not name", "[enum_names]") {
  CHECK(grpo::enum_name(fruit_names, Fruit::pear) == "pear");
  CHECK_THROWS_AS(grpo::enum_name(fruit_names, Fruit::quince), grpo::Error);
  CHECK_THROWS_WITH(grpo::enum_name(fruit_names, Fruit::quince), Catch::Contains("no name") && Catch::Contains("value 2"));
}

TEST_CASE("the library's tables: every enumerator, by the name its documentation gives", "[enum_names]") {
  using grpo::Aggregation, grpo::KlEstimator, grpo::RatioLevel, grpo::StdKind, grpo::RewardCombination,
      grpo::TruncationPolicy, grpo::OldLogprobSource, grpo::LrDecay, grpo::PromptTemplate, grpo::FinishReason;
  using Kind = grpo::GroupRule::Kind;
  // loss/clipped_surrogate.hpp and docs/loss.md (the KlEstimator and Aggregation tables).
  check_table(grpo::kl_estimator_names, {{"k1", KlEstimator::k1}, {"k2", KlEstimator::k2}, {"k3", KlEstimator::k3}});
  check_table(grpo::ratio_level_names, {{"token", RatioLevel::token}, {"sequence", RatioLevel::sequence}});
  check_table(grpo::aggregation_names, {{"token_mean", Aggregation::token_mean},
                                        {"seq_mean_token_mean", Aggregation::seq_mean_token_mean},
                                        {"seq_mean_token_sum", Aggregation::seq_mean_token_sum},
                                        {"seq_mean_token_sum_norm", Aggregation::seq_mean_token_sum_norm}});
  // core/group_rule.hpp and docs/advantages.md: GRPO normalises, Dr.GRPO centres, RLOO leaves one out;
  // Balanced normalises each reward then averages (LongWriter-Zero Eq. 5), RewardAverage the reverse.
  check_table(grpo::std_kind_names, {{"sample", StdKind::sample}, {"population", StdKind::population}});
  check_table(grpo::group_rule_kind_names,
              {{"grpo", Kind::normalize}, {"dr_grpo", Kind::center}, {"rloo", Kind::leave_one_out}});
  check_table(grpo::reward_combination_names, {{"balanced", RewardCombination::normalize_then_average},
                                               {"average", RewardCombination::average_then_normalize}});
  // trainer/options.hpp and docs/training.md ("Truncation, zero-variance groups, old log-probs").
  check_table(grpo::truncation_policy_names,
              {{"keep", TruncationPolicy::keep}, {"mask", TruncationPolicy::mask}, {"zero_reward", TruncationPolicy::zero_reward}});
  check_table(grpo::old_logprob_source_names, {{"automatic", OldLogprobSource::automatic},
                                               {"sampler", OldLogprobSource::sampler},
                                               {"recompute", OldLogprobSource::recompute}});
  check_table(grpo::lr_decay_names, {{"constant", LrDecay::constant}, {"linear", LrDecay::linear}, {"cosine", LrDecay::cosine}});
  // sampling/prompts.hpp and docs/model.md ("Prompts").
  check_table(grpo::prompt_template_names,
              {{"think", PromptTemplate::think}, {"direct", PromptTemplate::direct}, {"chatml", PromptTemplate::chatml}});
  // docs/model.md: "`finish_reason` is `stop` or `length`".
  check_table(grpo::finish_reason_names, {{"stop", FinishReason::stop}, {"length", FinishReason::length}});
}

TEST_CASE("the tables hold the names docs/training.md lists for each config key", "[enum_names]") {
  check_docs(grpo::reward_combination_names, "advantage.estimator", grpo::RewardCombination::normalize_then_average);
  check_docs(grpo::group_rule_kind_names, "advantage.baseline", grpo::GroupRule::Kind::normalize);
  check_docs(grpo::std_kind_names, "advantage.std", grpo::StdKind::sample);
  check_docs(grpo::kl_estimator_names, "loss.kl", grpo::KlEstimator::k3);
  check_docs(grpo::ratio_level_names, "loss.ratio", grpo::RatioLevel::token);
  check_docs(grpo::aggregation_names, "loss.aggregation", grpo::Aggregation::token_mean);
  check_docs(grpo::prompt_template_names, "trainer.prompt_template", grpo::PromptTemplate::think);
  check_docs(grpo::truncation_policy_names, "trainer.truncation", grpo::TruncationPolicy::keep);
  check_docs(grpo::old_logprob_source_names, "trainer.old_logprobs", grpo::OldLogprobSource::automatic);
  check_docs(grpo::lr_decay_names, "trainer.lr_decay", grpo::LrDecay::constant);
  // The defaults above are the library's: a config that leaves the key out gets the same.
  const grpo::ClippedSurrogateLoss loss;
  CHECK(loss.kl == grpo::KlEstimator::k3);
  CHECK(loss.ratio == grpo::RatioLevel::token);
  CHECK(loss.aggregation == grpo::Aggregation::token_mean);
  const grpo::GroupRule rule;
  CHECK(rule.kind == grpo::GroupRule::Kind::normalize);
  CHECK(rule.std_kind == grpo::StdKind::sample);
  const grpo::TrainerOptions options;
  CHECK(options.truncation == grpo::TruncationPolicy::keep);
  CHECK(options.old_logprobs == grpo::OldLogprobSource::automatic);
  CHECK(options.prompt.style == grpo::PromptTemplate::think);
  CHECK(options.lr.decay == grpo::LrDecay::constant);
}

TEST_CASE("the names the other docs use are the tables' names", "[enum_names]") {
  const auto source = std::filesystem::path(GRPO_SOURCE_DIR) / "docs";
  const auto loss_md = read_text(source / "loss.md");
  std::string model_md;  // whitespace runs as one space, so re-wrapped lines still match
  for (const char c : read_text(source / "model.md")) {
    const bool space = c == ' ' || c == '\n';
    if (!space || (!model_md.empty() && model_md.back() != ' ')) model_md += space ? ' ' : c;
  }
  for (const auto& row : grpo::kl_estimator_names) CHECK(loss_md.find("| `" + std::string(row.name) + "` |") != std::string::npos);
  for (const auto& row : grpo::aggregation_names) CHECK(loss_md.find("| `" + std::string(row.name) + "`") != std::string::npos);
  for (const auto& row : grpo::prompt_template_names) CHECK(model_md.find("- `" + std::string(row.name) + "`") != std::string::npos);
  CHECK(model_md.find("`finish_reason` is `stop` or `length`") != std::string::npos);
}

TEST_CASE("every enum-valued key of the shipped configs parses with its table", "[enum_names]") {
  using Parse = std::function<void(const std::string&, const std::string&)>;
  auto with = [](const auto& table) -> Parse {
    return [&table](const std::string& text, const std::string& key) { (void)grpo::parse_enum(table, text, key); };
  };
  const std::vector<std::pair<std::string, Parse>> keys = {
      {"/advantage/estimator", with(grpo::reward_combination_names)},
      {"/advantage/baseline", with(grpo::group_rule_kind_names)},
      {"/advantage/std", with(grpo::std_kind_names)},
      {"/loss/kl", with(grpo::kl_estimator_names)},
      {"/loss/ratio", with(grpo::ratio_level_names)},
      {"/loss/aggregation", with(grpo::aggregation_names)},
      {"/trainer/prompt_template", with(grpo::prompt_template_names)},
      {"/trainer/truncation", with(grpo::truncation_policy_names)},
      {"/trainer/old_logprobs", with(grpo::old_logprob_source_names)},
      {"/trainer/lr_decay", with(grpo::lr_decay_names)},
      {"/policy/init/warmup/lr_decay", with(grpo::lr_decay_names)},
  };
  int configs = 0, found = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(GRPO_SOURCE_DIR) / "examples" / "configs")) {
    if (entry.path().extension() != ".json") continue;
    ++configs;
    const auto config = nlohmann::json::parse(read_text(entry.path()), nullptr, true, /*ignore_comments=*/true);
    for (const auto& [pointer, parse] : keys) {
      const nlohmann::json::json_pointer at(pointer);
      if (!config.contains(at) || config.at(at).is_null()) continue;
      INFO(entry.path().filename().string() << " " << pointer);
      REQUIRE(config.at(at).is_string());
      ++found;
      CHECK_NOTHROW(parse(config.at(at).get<std::string>(), pointer));
    }
  }
  CHECK(configs >= 3);  // tiny, qwen2.5-0.5b, qwen2.5-32b
  // tiny alone names the estimator, baseline, std, aggregation, ratio, prompt template and a decay.
  CHECK(found >= 7);
}
