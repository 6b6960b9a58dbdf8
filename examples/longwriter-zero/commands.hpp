#pragma once
// Subcommand registry of the longwriter-zero program: each commands_*.cpp file adds its
// subcommands at start-up, so families of subcommands live (and compile) in separate files.

#include <CLI/CLI.hpp>
#include <c10/core/Device.h>
#include <grpo/core/reporter.hpp>
#include <grpo/distributed/mesh.hpp>

#include <cstdint>
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

/// `--tensor-parallel T` of the one-model commands (generate, logprobs, eval): T = 1 is one
/// process (refuse_launcher); T > 1 needs torchrun with WORLD_SIZE = T, splits the model over
/// the T ranks (pass mesh.tensor_parallel() to the load), reads `input` (a file: every rank reads
/// it) on every rank, and lets only rank 0 write (the others' standard output goes to /dev/null;
/// mesh.is_main() says which). `device` becomes cuda:LOCAL_RANK for a CUDA device. Defined in
/// commands_train.cpp.
grpo::DeviceMesh join_tensor_group(const char* command, std::int64_t tensor, c10::Device& device, const std::string& input);

}  // namespace lwz
