// `longwriter-zero plot METRICS.jsonl -o FILE.png`: reward and length curves of a training run.
#include <array>
#include <fstream>
#include <iostream>
#include <map>

#include <grpo/io/jsonl.hpp>

#include "commands.hpp"
#include "plot.hpp"

namespace {

struct PlotArgs {
  std::string metrics;
  std::string output = "metrics.png";
};

const std::array<std::array<std::uint8_t, 3>, 8> palette{{{31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                                                           {214, 39, 40}, {148, 103, 189}, {140, 86, 75},
                                                           {227, 119, 194}, {127, 127, 127}}};

// Reads the number at a JSON pointer of a row; NaN when absent.
double number_at(const grpo::io::json& row, const grpo::io::json::json_pointer& p) {
  if (!row.contains(p)) return NAN;
  const auto& v = row.at(p);
  return v.is_number() ? v.get<double>() : NAN;
}

void run_plot(const PlotArgs& args) {
  std::ifstream in(args.metrics, std::ios::binary);
  if (!in) throw grpo::Error(args.metrics + ": cannot open the metrics file for reading");
  std::vector<grpo::io::json> rows;
  grpo::io::for_each_jsonl(in, args.metrics, [&](grpo::io::json row, std::size_t line) {
    if (!row.contains("step") || !row["step"].is_number()) {
      throw grpo::Error(args.metrics + ":" + std::to_string(line) + ": a metrics row needs a numeric \"step\"");
    }
    rows.push_back(std::move(row));
  });
  if (rows.empty()) throw grpo::Error(args.metrics + ": no metrics rows to plot");

  auto series = [&](const std::string& name, const std::string& pointer, std::size_t color) {
    lwz::Series s{name, {}, {}, palette[color % palette.size()]};
    const grpo::io::json::json_pointer p(pointer);
    for (const auto& row : rows) {
      s.x.push_back(row["step"].get<double>());
      s.y.push_back(number_at(row, p));
    }
    return s;
  };
  lwz::Panel rewards{"Rewards (mean over the step's samples)", "reward", {series("composite", "/reward", 0)}};
  std::size_t color = 1;
  if (rows.back().contains("rewards") && rows.back()["rewards"].is_object()) {
    for (const auto& [name, value] : rows.back()["rewards"].items()) {
      rewards.series.push_back(series(name, "/rewards/" + name + "/mean", color++));
    }
  }
  lwz::Panel lengths{"Answer length (LongBench-Write words)", "words", {series("mean words", "/answer_words_mean", 0)}};
  lwz::Panel tokens{"Completion tokens", "tokens",
                    {series("tokens (mean)", "/completion_tokens/mean", 1), series("tokens (max)", "/completion_tokens/max", 3)}};
  lwz::write_line_chart_png(args.output, {rewards, lengths, tokens});
  std::cerr << "wrote " << args.output << " (" << rows.size() << " steps)\n";
}

void add_plot_command(CLI::App& app) {
  auto args = std::make_shared<PlotArgs>();
  auto* cmd = app.add_subcommand("plot", "Plot reward and length curves of a metrics.jsonl file as a PNG");
  cmd->add_option("metrics", args->metrics, "metrics.jsonl written by `longwriter-zero train`")->required();
  cmd->add_option("-o,--output", args->output, "PNG file to write")->capture_default_str();
  cmd->callback([args] { run_plot(*args); });
}

const lwz::Registration registration{&add_plot_command};

}  // namespace
