#pragma once
// What kind of thing a path names, checked before a reader opens it: opening a FIFO for reading
// blocks until a writer appears (a hang, not an error), a folder or a dangling symbolic link gives
// a message that names the wrong cause. Readers of checkpoint and config files call
// require_regular_file first; input streams that may legitimately be pipes (JSONL on --input) do not.

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "grpo/core/error.hpp"

namespace grpo::io {

/// What `path` is, as a phrase for messages: "a regular file", "a folder", "a FIFO (named pipe)",
/// "a socket", "a device", "a dangling symbolic link to <target>", "a symbolic link loop", "nothing"
/// (symbolic links are followed, as open() would).
inline std::string describe_path_kind(const std::filesystem::path& path) {
  struct ::stat status {};
  if (::stat(path.c_str(), &status) == 0) {
    if (S_ISREG(status.st_mode)) return "a regular file";
    if (S_ISDIR(status.st_mode)) return "a folder";
    if (S_ISFIFO(status.st_mode)) return "a FIFO (named pipe)";
    if (S_ISSOCK(status.st_mode)) return "a socket";
    if (S_ISCHR(status.st_mode) || S_ISBLK(status.st_mode)) return "a device";
    return "not a regular file";
  }
  const int code = errno;
  if (code == ELOOP) return "a symbolic link loop";
  struct ::stat link {};
  if (::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(path, ec);
    return "a dangling symbolic link" + (ec ? std::string() : " to " + target.string());
  }
  if (code == ENOENT || code == ENOTDIR) return "nothing";
  return "unreadable (" + std::system_category().message(code) + ")";
}

/// True when something (even a dangling symbolic link) is at `path`.
inline bool path_entry_exists(const std::filesystem::path& path) {
  struct ::stat link {};
  return ::lstat(path.c_str(), &link) == 0;
}

/// Throws "<path>: expected <what> (a regular file), found <kind>" unless `path` is a regular
/// file or a symbolic link to one. Never opens the path.
inline void require_regular_file(const std::filesystem::path& path, std::string_view what) {
  const auto kind = describe_path_kind(path);
  if (kind == "a regular file") return;
  throw Error(path.string() + ": expected " + std::string(what) + " (a regular file), found " + kind);
}

}  // namespace grpo::io
