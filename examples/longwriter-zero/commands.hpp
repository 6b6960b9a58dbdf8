#pragma once
// Subcommand registry of the longwriter-zero program: each commands_*.cpp file adds its
// subcommands at start-up, so families of subcommands live (and compile) in separate files.

#include <CLI/CLI.hpp>
#include <grpo/core/reporter.hpp>

#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <vector>

namespace lwz {

using AddCommands = void (*)(CLI::App& app);

inline std::vector<AddCommands>& command_families() {
  static std::vector<AddCommands> families;
  return families;
}

/// `static const lwz::Registration r{&add_my_commands};` in a commands_*.cpp file.
struct Registration {
  explicit Registration(AddCommands add) { command_families().push_back(add); }
};

/// Opens the JSONL input of a subcommand: a path, or "-" / empty for standard input.
std::unique_ptr<std::istream, void (*)(std::istream*)> open_input(const std::string& path);

/// The source name used in error messages: the path, or "<stdin>".
inline std::string input_name(const std::string& path) { return path.empty() || path == "-" ? "<stdin>" : path; }

/// The program's one progress reporter (stderr): the library's loops report through it.
grpo::Reporter& reporter();

/// For one-process commands (train-rm, eval: copies started by torchrun would all write the same
/// files): throws when WORLD_SIZE says this is one of several ranks. Defined in commands_train.cpp,
/// the one file that reads the launcher's environment.
void refuse_launcher(const char* command);

}  // namespace lwz
