// Text subcommands: count-words, length-target, score (no model needed).
#include "commands.hpp"

namespace {
void add_text_commands(CLI::App&) {}
const lwz::Registration registration{&add_text_commands};
}  // namespace
