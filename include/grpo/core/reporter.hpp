#pragma once
// grpo::Reporter: where the library's long-running loops (the GRPO trainer, the supervised
// warm-up, reward-model training) send their progress lines. The library never writes to
// stderr itself: the program owns one reporter and hands it to the loops it runs (in a
// data-parallel run, rank 0's only); a loop without one reports nothing.
//
//   grpo::StreamReporter reporter(stderr);          // the program's choice of stream
//   options.reporter = &reporter;                   // TrainerOptions, SftOptions, RewardModelTrainingOptions

#include <cstdio>
#include <string>
#include <string_view>

namespace grpo {

class Reporter {
 public:
  virtual ~Reporter() = default;
  /// One finished line, without its newline: "step 12/150 | reward 0.412 (...) | 1.9k tok/s | ETA 32m10s".
  virtual void report(std::string_view line) = 0;
};

/// Writes every line to a C stream and flushes it (a killed run keeps what it showed).
class StreamReporter final : public Reporter {
 public:
  explicit StreamReporter(std::FILE* out) : out_(out) {}
  void report(std::string_view line) override {
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fputc('\n', out_);
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
};

/// Sends `line` to `reporter` when there is one.
inline void report(Reporter* reporter, std::string_view line) {
  if (reporter != nullptr) reporter->report(line);
}

}  // namespace grpo
