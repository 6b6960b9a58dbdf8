// longwriter-zero: the LongWriter-Zero recipe as one program. JSONL subcommands read a file or
// standard input and write one output line per input line, in order, keeping the input's fields.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>

#include <grpo/core/error.hpp>
#include <grpo/version.hpp>

#include "commands.hpp"

namespace lwz {
std::unique_ptr<std::istream, void (*)(std::istream*)> open_input(const std::string& path) {
  if (path.empty() || path == "-") return {&std::cin, [](std::istream*) {}};
  auto* file = new std::ifstream(path, std::ios::binary);
  if (!*file) {
    delete file;
    throw grpo::Error(path + ": cannot open for reading");
  }
  return {file, [](std::istream* s) { delete s; }};
}
grpo::Reporter& reporter() {
  static grpo::StreamReporter stderr_reporter(stderr);
  return stderr_reporter;
}
}  // namespace lwz

int main(int argc, char** argv) {
  CLI::App app{"longwriter-zero: GRPO for ultra-long text generation (LongWriter-Zero) in C++"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("grpo ") + grpo::version_string);
  for (auto add : lwz::command_families()) add(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "longwriter-zero: error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
