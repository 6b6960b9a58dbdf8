// What longwriter-zero writes, checked before any work and on every write (outputs.hpp).
#include "outputs.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <set>
#include <system_error>

#include <grpo/core/error.hpp>
#include <grpo/io/file_kind.hpp>

namespace lwz {

namespace fs = std::filesystem;

namespace {

/// "a, b, c" for at most `most` names, then ", ... (N in all)".
std::string name_list(std::vector<std::string> names, std::size_t most = 6) {
  std::sort(names.begin(), names.end());
  std::string text;
  for (std::size_t i = 0; i < names.size() && i < most; ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > most) text += fmt::format(", ... ({} in all)", names.size());
  return text;
}

// The entries of a run folder (docs/training.md, "What a run writes").
const std::set<std::string, std::less<>> run_outputs = {"metrics.jsonl", "samples.jsonl", "summary.json", "checkpoints"};
constexpr std::string_view event_file_prefix = "events.out.tfevents.";
const std::set<std::string, std::less<>> rewritten_by_a_run = {"config.json", "curves.png"};
const std::set<std::string, std::less<>> cached_stages = {"base-policy", "reward-model", "warmup_metrics.jsonl",
                                                          "reward_model_metrics.jsonl"};

bool is_run_output(std::string_view name) { return run_outputs.contains(name) || name.starts_with(event_file_prefix); }
bool is_known_run_entry(std::string_view name) {
  return is_run_output(name) || rewritten_by_a_run.contains(name) || cached_stages.contains(name);
}

/// ".<name>.tmp-<random>", ".<name>.staging-<random>", ".<name>.old-<random>": what a write of
/// <name> that was interrupted left (grpo/io/atomic_file.hpp); `target` receives <name>.
bool is_write_leftover(std::string_view entry, std::string* target, bool* old) {
  if (entry.size() < 2 || entry[0] != '.') return false;
  for (const std::string_view tag : {".tmp-", ".staging-", ".old-"}) {
    const auto at = entry.rfind(tag);
    if (at == std::string_view::npos || at < 2) continue;
    *target = std::string(entry.substr(1, at - 1));
    *old = tag == ".old-";
    return true;
  }
  return false;
}

/// Whether `a` is `b` or lies inside it (both canonical).
bool is_same_or_inside(const fs::path& a, const fs::path& b) {
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty()) continue;  // a trailing separator
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

/// The files of a checkpoint folder we write (grpo::save_qwen2, save_qwen2_reward_model, the
/// cached stages' grpo_stage.json) or a transformers save_pretrained writes under the same names.
bool is_checkpoint_file(std::string_view name) {
  static const std::set<std::string, std::less<>> names = {
      "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json",
      "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json",
      "chat_template.jinja", "grpo_stage.json"};
  if (names.contains(name)) return true;
  // model-DDDDD-of-DDDDD.safetensors
  constexpr std::string_view pattern = "model-DDDDD-of-DDDDD.safetensors";
  if (name.size() != pattern.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (pattern[i] == 'D' ? !(name[i] >= '0' && name[i] <= '9') : name[i] != pattern[i]) return false;
  }
  return true;
}

}  // namespace

void write_stdout(std::string_view text) {
  std::cout.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::cout.flush();
  if (!std::cout) {
    const int code = errno;
    throw grpo::Error(fmt::format("<stdout>: write failed: {}; the output is incomplete",
                                  code != 0 ? std::strerror(code) : "unknown error"));
  }
}

grpo::io::AtomicFileWriter open_output_file(const fs::path& path, std::string_view option) {
  const auto where = fmt::format("{} {}", option, path.string());
  const auto kind = grpo::io::describe_path_kind(path);
  if (path.filename().empty() || kind == "a folder") {
    throw grpo::Error(where + ": expected a file to write, found a folder; name a file inside it");
  }
  if (kind != "nothing" && kind != "a regular file") {
    throw grpo::Error(fmt::format("{}: expected a regular file to write (or a new one), found {}", where, kind));
  }
  const auto folder = grpo::io::detail::parent_folder(path);
  const auto folder_kind = grpo::io::describe_path_kind(folder);
  if (folder_kind == "nothing") {
    throw grpo::Error(fmt::format("{}: the folder {} does not exist; create it first", where, folder.string()));
  }
  if (folder_kind != "a folder") {
    throw grpo::Error(fmt::format("{}: {} is {}, not a folder", where, folder.string(), folder_kind));
  }
  try {
    return grpo::io::AtomicFileWriter(path);
  } catch (const grpo::Error& e) {
    throw grpo::Error(fmt::format("{}: {}", option, e.what()));
  }
}

RunFolderContents read_run_folder(const fs::path& dir) {
  RunFolderContents contents;
  const auto kind = grpo::io::describe_path_kind(dir);
  if (kind == "nothing") return contents;
  if (kind != "a folder") throw grpo::Error(fmt::format("{}: expected an output folder, found {}", dir.string(), kind));
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    std::string target;
    bool old = false;
    if (is_run_output(name)) {
      contents.run.push_back(name);
    } else if (is_known_run_entry(name) || (is_write_leftover(name, &target, &old) && is_known_run_entry(target))) {
      contents.ours.push_back(name);
    } else {
      contents.foreign.push_back(name);
    }
  }
  if (ec) throw grpo::Error(fmt::format("{}: cannot list the output folder: {}", dir.string(), ec.message()));
  return contents;
}

void check_run_folder(const fs::path& dir, RerunMode mode) {
  const auto contents = read_run_folder(dir);
  if (mode == RerunMode::resume) return;  // continuing: nothing is removed, every file stays
  if (!contents.foreign.empty()) {
    throw grpo::Error(fmt::format(
        "{}: the output folder holds files that are not a run's ({}); a run rotates and replaces files there, "
        "so give an empty or new folder (--output or output_dir){}",
        dir.string(), name_list(contents.foreign),
        mode == RerunMode::overwrite ? "; --overwrite removes only a run's own files" : ""));
  }
  if (!contents.run.empty() && mode == RerunMode::fresh) {
    throw grpo::Error(fmt::format(
        "{}: the output folder holds an earlier run ({}); continue it with --resume {}, or start again with "
        "--overwrite (removes those files; the cached stages base-policy/ and reward-model/ are kept and reused "
        "when their inputs are unchanged)",
        dir.string(), name_list(contents.run), dir.string()));
  }
}

std::vector<std::string> clear_run_folder(const fs::path& dir) {
  std::vector<std::string> removed;
  const auto contents = read_run_folder(dir);
  for (const auto& name : contents.run) removed.push_back(name);
  for (const auto& name : contents.ours) {
    std::string target;
    bool old = false;
    if (rewritten_by_a_run.contains(name)) {
      removed.push_back(name);
    } else if (is_write_leftover(name, &target, &old) && !old && !cached_stages.contains(target)) {
      removed.push_back(name);  // .old- folders may hold the only copy of a folder: kept
    }
  }
  for (const auto& name : removed) {
    std::error_code ec;
    fs::remove_all(dir / name, ec);
    if (ec) throw grpo::Error(fmt::format("{}: cannot remove it (--overwrite): {}", (dir / name).string(), ec.message()));
  }
  return removed;
}

void create_output_folder(const fs::path& dir, std::string_view what) {
  const auto kind = grpo::io::describe_path_kind(dir);
  if (kind != "nothing" && kind != "a folder") {
    throw grpo::Error(fmt::format("{}: expected {} (a folder), found {}", dir.string(), what, kind));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw grpo::Error(fmt::format("{}: cannot create {}: {}", dir.string(), what, ec.message()));
  // Whether entries can be made there, by making one (access() says yes to root even where
  // mkdir fails, as in /proc).
  const auto probe = dir / (".grpo-write-probe-" + grpo::io::detail::random_suffix());
  if (::mkdir(probe.c_str(), 0700) != 0) {
    throw grpo::Error(fmt::format("{}: cannot write into {}: {}", dir.string(), what, std::strerror(errno)));
  }
  ::rmdir(probe.c_str());
}

void check_checkpoint_destination(const fs::path& destination, const std::vector<fs::path>& sources,
                                  std::string_view option) {
  const auto where = fmt::format("{} {}", option, destination.string());
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(destination, ec))) {
    throw grpo::Error(where + ": is a symbolic link; the checkpoint replaces the folder as a whole, so give the "
                              "folder itself");
  }
  const auto kind = grpo::io::describe_path_kind(destination);
  if (kind != "nothing" && kind != "a folder") {
    throw grpo::Error(fmt::format("{}: expected a folder to write the checkpoint into, found {}", where, kind));
  }
  std::error_code resolve;
  const auto target = fs::weakly_canonical(fs::absolute(destination), resolve);
  for (const auto& source : sources) {
    if (source.empty() || resolve || target.empty()) continue;
    std::error_code input_resolve;
    const auto input = fs::weakly_canonical(fs::absolute(source), input_resolve);
    if (!input_resolve && is_same_or_inside(input, target)) {
      throw grpo::Error(fmt::format("{}: is or contains the input {}; writing the checkpoint replaces the whole "
                                    "folder and would delete it; choose another folder",
                                    where, source.string()));
    }
  }
  // The checkpoint is written into a staging folder beside it and renamed: its folder must take entries.
  create_output_folder(grpo::io::detail::parent_folder(destination), fmt::format("the folder of {}", where));
  if (kind != "a folder") return;
  std::vector<std::string> foreign;
  for (fs::directory_iterator it(destination, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (is_checkpoint_file(name)) continue;
    if (name == "adapter" && fs::is_directory(it->symlink_status())) {  // a PEFT adapter beside merged weights
      std::error_code inner;
      for (fs::directory_iterator a(it->path(), inner), a_end; !inner && a != a_end; a.increment(inner)) {
        const auto file = a->path().filename().string();
        if (file != "adapter_config.json" && file != "adapter_model.safetensors") foreign.push_back("adapter/" + file);
      }
      continue;
    }
    foreign.push_back(name);
  }
  if (ec) throw grpo::Error(fmt::format("{}: cannot list the folder: {}", where, ec.message()));
  if (!foreign.empty()) {
    throw grpo::Error(fmt::format("{}: holds files that are not part of a checkpoint ({}); writing the checkpoint "
                                  "replaces the whole folder and would delete them; choose an empty or new folder",
                                  where, name_list(foreign)));
  }
}

bool folder_has_entries(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && !fs::is_empty(dir, ec);
}

}  // namespace lwz
