#pragma once
// What longwriter-zero writes, checked before any work and on every write (docs/training.md,
// "Output folders and files"):
//
// - standard output: every write is flushed and checked (a closed pipe, a full disk);
// - an output file (eval --output): its folder must exist, the path must not be a folder; it is
//   written atomically (a temporary beside it, renamed over it once complete), so a failed run
//   leaves the previous file, never a partial one;
// - a run folder (train): a folder holding an earlier run is refused unless --resume continues it
//   or --overwrite removes that run's files first;
// - a folder replaced wholesale (convert --out, train-rm --output, the cached stages): it may hold
//   only a checkpoint of ours, and it may not be, or contain, one of the command's inputs.

#include <grpo/io/atomic_file.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace lwz {

/// Writes `text` to standard output and flushes it; throws grpo::Error naming <stdout> when the
/// write fails (EPIPE, ENOSPC, /dev/full), so that a lost result is never an exit code 0.
void write_stdout(std::string_view text);

/// The output file `path` of option `option` (eval --output), checked before any work: its folder
/// exists and is a folder, the path is not a folder, a temporary can be created beside it.
/// Returns the atomic writer; commit() it when everything is written. Throws grpo::Error naming
/// the option and the path.
grpo::io::AtomicFileWriter open_output_file(const std::filesystem::path& path, std::string_view option);

/// How `train` treats an output folder that holds an earlier run.
enum class RerunMode {
  fresh,      ///< refuse a folder holding an earlier run's files (default)
  resume,     ///< --resume: continue; the earlier files are kept (the trainer drops later steps)
  overwrite,  ///< --overwrite: remove the earlier run's files first, keep the cached stages
};

/// The entries of a run folder, by who wrote them.
struct RunFolderContents {
  std::vector<std::string> run;      ///< an RL run's outputs: metrics.jsonl, samples.jsonl, summary.json, checkpoints, events files
  std::vector<std::string> ours;     ///< ours, harmless to keep: config.json, curves.png, the cached stages, write leftovers
  std::vector<std::string> foreign;  ///< anything else
};

/// Sorts the entries of `dir` (empty when it does not exist). Throws when `dir` is not a folder.
RunFolderContents read_run_folder(const std::filesystem::path& dir);

/// `train`'s rule for its output folder, checked on every rank before any work (reads only):
/// a folder holding foreign entries is refused unless resuming; one holding an earlier run's
/// outputs is refused unless `mode` is resume or overwrite. Throws grpo::Error naming the folder,
/// what it holds and both options.
void check_run_folder(const std::filesystem::path& dir, RerunMode mode);

/// --overwrite, on rank 0 after check_run_folder: removes the earlier run's outputs, config.json,
/// curves.png and interrupted writes of those; keeps the cached stages (base-policy/,
/// reward-model/ and their metrics), which a run reuses only when their inputs are unchanged.
/// Returns the names removed.
std::vector<std::string> clear_run_folder(const std::filesystem::path& dir);

/// Creates `dir` (and its parents) and checks that entries can be made in it (by making one);
/// throws grpo::Error naming it, `what` it is and the reason.
void create_output_folder(const std::filesystem::path& dir, std::string_view what);

/// A checkpoint folder a command replaces wholesale (`option` names it in messages), checked before
/// any work: it is not a file; it is not, and does not contain, any of `sources` (after resolving
/// symbolic links: replacing it would delete an input); where it exists it holds nothing but the
/// files of a checkpoint folder of ours (config.json, *.safetensors and the index, tokenizer and
/// generation files, adapter/, grpo_stage.json); the folder above it is created if needed and must
/// take new entries (the checkpoint is staged beside it). Throws grpo::Error naming the folder and
/// the offending input or file.
void check_checkpoint_destination(const std::filesystem::path& destination,
                                  const std::vector<std::filesystem::path>& sources, std::string_view option);

/// True when `dir` exists and is not empty.
bool folder_has_entries(const std::filesystem::path& dir);

}  // namespace lwz
