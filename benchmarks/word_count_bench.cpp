// Question: how fast is grpo::word_count on one 10,000-word answer (it runs on every completion of
// every RL step), compared with the obvious alternative, the LongBench-Write definition run through
// a JIT-compiled regex engine (PCRE2 with UTF + UCP, the two findall patterns of the Python code)?
// Both run side by side on the same text in each iteration; counters report the per-answer times
// and their ratio (speedup = pcre2 / ours). Also: the repetition measure on the same answer.
#include <benchmark/benchmark.h>

#include <pcre2.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <grpo/text/repetition.hpp>
#include <grpo/text/word_count.hpp>

namespace {

// ~10,000 words of English prose: 8 sentences cycled with a changing number, in paragraphs.
std::string english_answer() {
  const char* sentences[] = {
      "The old harbour town woke slowly under a grey sky, and the fishermen untangled their nets in silence.",
      "Along the quay, cafe owners set out chairs while gulls argued over scraps near the fish market.",
      "Historians still debate why the port declined after the railway reached the valley in the last century.",
      "Some point to the silting river; others blame merchants who moved their capital to the capital city.",
      "Whatever the cause, the population fell by half, and the grand warehouses stood empty for decades.",
      "Today artists rent those halls for a song, filling them with studios, galleries and noisy workshops.",
      "Visitors who arrive on the morning ferry often stay longer than planned, charmed by the slow pace.",
      "Yet rising rents threaten the very community that revived the town, a familiar story in many places.",
  };
  std::string text;
  std::int64_t words = 0;
  for (int i = 0; words < 10000; ++i) {
    const std::string s = sentences[i % 8];
    text += s + " ";
    words += grpo::word_count(s);
    if (i % 5 == 4) text += "\n\n";
  }
  return text;
}

// ~10,000 CJK characters of Chinese prose with some Latin words mixed in.
std::string chinese_answer() {
  const std::string sentences[] = {
      "清晨的港口小镇笼罩在薄雾之中，渔民们在码头上默默地整理渔网。",
      "历史学家至今仍在争论，为什么铁路通到山谷之后这个港口逐渐衰落。",
      "如今艺术家们以低廉的租金租下那些空置的仓库，把它们改造成工作室和画廊。",
      "许多游客乘坐早班渡轮来到这里，被小镇悠闲的节奏吸引，常常比计划停留得更久。",
      "不过不断上涨的房租正在威胁着让小镇重获新生的社区，这样的故事在 Europe 和 Asia 都很常见。",
  };
  std::string text;
  std::int64_t words = 0;
  for (int i = 0; words < 10000; ++i) {
    text += sentences[i % 5];
    words += grpo::word_count(sentences[i % 5]);
    if (i % 4 == 3) text += "\n\n";
  }
  return text;
}

class Pcre2Count {
 public:
  Pcre2Count() : cjk_(compile("[\\x{4e00}-\\x{9fff}]")), word_(compile("\\b[a-zA-Z]+\\b")) {
    data_ = pcre2_match_data_create(4, nullptr);
  }
  ~Pcre2Count() {
    pcre2_match_data_free(data_);
    pcre2_code_free(cjk_);
    pcre2_code_free(word_);
  }
  Pcre2Count(const Pcre2Count&) = delete;
  Pcre2Count& operator=(const Pcre2Count&) = delete;
  std::int64_t operator()(const std::string& text) { return count(cjk_, text) + count(word_, text); }

 private:
  static pcre2_code* compile(const char* pattern) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (!code) throw std::runtime_error("pcre2_compile failed");
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    return code;
  }
  std::int64_t count(pcre2_code* code, const std::string& text) {
    std::int64_t n = 0;
    PCRE2_SIZE start = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (start <= text.size() &&
           pcre2_jit_match(code, subject, text.size(), start, 0, data_, nullptr) > 0) {
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
      ++n;
      start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
    }
    return n;
  }
  pcre2_code* cjk_;
  pcre2_code* word_;
  pcre2_match_data* data_;
};

void side_by_side(benchmark::State& state, const std::string& text) {
  Pcre2Count pcre2;
  if (pcre2(text) != grpo::word_count(text)) {
    state.SkipWithError("PCRE2 and grpo::word_count disagree on the benchmark text");
    return;
  }
  using clock = std::chrono::steady_clock;
  double ours = 0, theirs = 0;
  for (auto _ : state) {
    const auto t0 = clock::now();
    benchmark::DoNotOptimize(grpo::word_count(text));
    const auto t1 = clock::now();
    benchmark::DoNotOptimize(pcre2(text));
    const auto t2 = clock::now();
    ours += std::chrono::duration<double, std::micro>(t1 - t0).count();
    theirs += std::chrono::duration<double, std::micro>(t2 - t1).count();
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["ours_us"] = ours / n;
  state.counters["pcre2_us"] = theirs / n;
  state.counters["speedup"] = theirs / ours;
  state.counters["words"] = static_cast<double>(grpo::word_count(text));
  state.counters["MB_per_s_ours"] = static_cast<double>(text.size()) / (ours / n);
}

void BM_WordCount_English10k(benchmark::State& state) { side_by_side(state, english_answer()); }
void BM_WordCount_Chinese10k(benchmark::State& state) { side_by_side(state, chinese_answer()); }

void BM_Repetition_English10k(benchmark::State& state) {
  const std::string text = english_answer();
  for (auto _ : state) benchmark::DoNotOptimize(grpo::measure_repetition(text));
  state.counters["words"] = static_cast<double>(grpo::word_count(text));
}

}  // namespace

BENCHMARK(BM_WordCount_English10k)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WordCount_Chinese10k)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Repetition_English10k)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
