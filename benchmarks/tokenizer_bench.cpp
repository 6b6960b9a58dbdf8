// Question: how fast does grpo::Tokenizer encode (single-threaded), and what does each of its
// design choices buy? Side by side in one run on the same texts:
//   BM_Encode/<corpus>          the tokenizer as shipped (hand-written split matcher for Qwen's
//                               pattern, word cache);
//   BM_EncodePcre2/<corpus>     the same tokenizer with its split pattern run by PCRE2 (JIT) on
//                               the translated pattern: the baseline for the hand-written matcher;
//   BM_Load                     reading the 11 MB tokenizer.json;
//   BM_Decode, BM_IncrementalDecode  ids back to text, whole and one id at a time.
// The comparison with Hugging Face tokenizers (Rust, single-threaded) needs Python on the same
// corpus: benchmarks/tokenizer_vs_hf.py makes the corpus, runs this binary and prints the ratio.
//
// Environment: GRPO_TOKENIZER_CORPUS = folder of <name>.bin files (documents as uint32 length +
// bytes), made by tokenizer_vs_hf.py; GRPO_TOKENIZER = tokenizer.json (default: the shipped Qwen2.5
// one, relative to the working directory). Without a corpus folder, a small built-in corpus runs.
#include <benchmark/benchmark.h>

#include <grpo/tokenizer/incremental_decoder.hpp>
#include <grpo/tokenizer/tokenizer.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

std::filesystem::path tokenizer_path() {
  const char* env = std::getenv("GRPO_TOKENIZER");
  return env != nullptr ? std::filesystem::path(env) : std::filesystem::path("examples/data/qwen2.5-tokenizer/tokenizer.json");
}

const grpo::Tokenizer& shipped() {
  static const grpo::Tokenizer tokenizer = grpo::Tokenizer::from_file(tokenizer_path());
  return tokenizer;
}

/// The same tokenizer with its split pattern wrapped in a group: identical matches, but no
/// longer recognised as Qwen's pattern, so PCRE2 runs it.
const grpo::Tokenizer& pcre2_variant() {
  static const grpo::Tokenizer tokenizer = [] {
    std::ifstream in(tokenizer_path(), std::ios::binary);
    nlohmann::json j = nlohmann::json::parse(in);
    for (auto& step : j["pre_tokenizer"]["pretokenizers"]) {
      if (step["type"] == "Split") step["pattern"]["Regex"] = "(?:" + step["pattern"]["Regex"].get<std::string>() + ")";
    }
    return grpo::Tokenizer::from_json(j, "pcre2 variant");
  }();
  return tokenizer;
}

using Corpus = std::map<std::string, std::vector<std::string>>;

Corpus load_corpus() {
  Corpus corpus;
  const char* dir = std::getenv("GRPO_TOKENIZER_CORPUS");
  if (dir == nullptr) {
    std::string english, chinese;
    for (int k = 0; k < 200; ++k) {
      english += "The quick brown fox jumps over the lazy dog; it's " + std::to_string(k) + " o'clock. ";
      chinese += "我们的目标是在正确性、内存和速度上超越同类产品，第" + std::to_string(k) + "次。";
    }
    corpus["english"] = {english};
    corpus["chinese"] = {chinese};
    return corpus;
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".bin") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    auto& docs = corpus[entry.path().stem().string()];
    std::uint32_t size = 0;
    while (in.read(reinterpret_cast<char*>(&size), 4)) {
      std::string doc(size, '\0');
      if (!in.read(doc.data(), size)) throw std::runtime_error(entry.path().string() + ": truncated");
      docs.push_back(std::move(doc));
    }
  }
  return corpus;
}

const Corpus& corpus() {
  static const Corpus c = load_corpus();
  return c;
}

void encode_corpus(benchmark::State& state, const grpo::Tokenizer& tok, const std::vector<std::string>& docs) {
  std::size_t bytes = 0, tokens = 0;
  std::vector<std::int64_t> ids;
  for (const auto& d : docs) {  // warm the word cache, as the Python side is warmed
    ids.clear();
    tok.encode_into(d, ids);
    bytes += d.size();
    tokens += ids.size();
  }
  for (auto _ : state) {
    for (const auto& d : docs) {
      ids.clear();
      tok.encode_into(d, ids);
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Load(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(grpo::Tokenizer::from_file(tokenizer_path()).vocab_size());
}
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond);

std::vector<std::int64_t> decode_ids() {
  std::vector<std::int64_t> ids;
  for (const auto& [name, docs] : corpus()) {
    for (const auto& d : docs) shipped().encode_into(d, ids);
  }
  return ids;
}

void BM_Decode(benchmark::State& state) {
  const auto ids = decode_ids();
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::string text = shipped().decode(ids);
    bytes += text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(ids.size()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_IncrementalDecode(benchmark::State& state) {
  const auto ids = decode_ids();
  std::size_t bytes = 0;
  for (auto _ : state) {
    grpo::IncrementalDecoder decoder(shipped());
    for (std::int64_t id : ids) bytes += decoder.push(id).size();
    bytes += decoder.finish().size();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(ids.size()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_IncrementalDecode)->Unit(benchmark::kMillisecond);

const bool registered = [] {
  for (const auto& [name, docs] : corpus()) {
    const auto* d = &docs;
    benchmark::RegisterBenchmark(("BM_Encode/" + name).c_str(), [d](benchmark::State& s) { encode_corpus(s, shipped(), *d); })
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_EncodePcre2/" + name).c_str(),
                                 [d](benchmark::State& s) { encode_corpus(s, pcre2_variant(), *d); })
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
