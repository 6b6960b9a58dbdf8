#pragma once
// Crash-safe writes: a file or a whole folder appears complete under its final name or not at all,
// and what was there before survives until the replacement is durable.
//
// Files: write into a temporary next to the target (".<name>.tmp-<random>", same folder so the
// rename cannot cross file systems), fsync it, rename it over the target (atomic on POSIX), fsync
// the folder so the rename itself survives a power cut. The temporary is removed on any failure.
//
// Folders (checkpoints): StagedDirectory creates ".<name>.staging-<random>" next to the final
// folder; the caller writes every file into it; publish() fsyncs the whole tree, then swaps it
// in. Linux renameat2(RENAME_EXCHANGE) swaps an existing folder atomically; where the file system
// lacks it the old folder is first renamed to ".<name>.old-<random>" (a crash between the two
// renames leaves the previous checkpoint there, never lost), then removed.
//
// A process killed with SIGKILL cannot clean up: its ".tmp-" / ".staging-" leftovers stay behind
// (the published names are never partial). They are safe to delete when no writer is running.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>
#include <system_error>
#include <type_traits>
#include <utility>

#include "grpo/core/error.hpp"

namespace grpo::io {

namespace detail {

inline std::string errno_text(int code) { return std::system_category().message(code); }

/// A name no other writer in any process picks: 64 random bits from a per-thread generator
/// seeded by std::random_device, mixed with a process-wide counter.
inline std::string random_suffix() {
  thread_local std::mt19937_64 generator{(static_cast<std::uint64_t>(std::random_device{}()) << 32) ^
                                         std::random_device{}()};
  static std::atomic<std::uint64_t> counter{0};
  const std::uint64_t value = generator() ^ (counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL);
  static constexpr char digits[] = "0123456789abcdef";
  std::string text(16, '0');
  for (int i = 0; i < 16; ++i) text[static_cast<std::size_t>(i)] = digits[(value >> (4 * i)) & 0xf];
  return text;
}

/// The folder holding `path` ("." for a bare file name).
inline std::filesystem::path parent_folder(const std::filesystem::path& path) {
  auto parent = path.parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

/// A sibling of `path` named ".<name>.<tag>-<random>".
inline std::filesystem::path sibling_name(const std::filesystem::path& path, std::string_view tag) {
  return parent_folder(path) / ("." + path.filename().string() + "." + std::string(tag) + "-" + random_suffix());
}

inline void fsync_path(const std::filesystem::path& path, int flags, std::string_view what) {
  int fd = -1;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw Error(path.string() + ": cannot open " + std::string(what) + " to fsync it: " + errno_text(errno));
  }
  int rc = ::fsync(fd);
  const int fsync_errno = errno;
  ::close(fd);
  // EINVAL: the file system cannot sync this kind of object (some FUSE/virtual folders); nothing
  // more can be done there, and the data itself was synced through its own descriptor.
  if (rc != 0 && fsync_errno != EINVAL) {
    throw Error(path.string() + ": fsync failed: " + errno_text(fsync_errno) +
                "; the data may not be on disk (check the disk and retry)");
  }
}

/// fsyncs every file and folder below `root` and root itself (so files written by any means,
/// e.g. copied tokenizer files, are durable before a checkpoint is published).
inline void fsync_tree(const std::filesystem::path& root) {
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const auto status = it->symlink_status();
    if (std::filesystem::is_regular_file(status)) {
      fsync_path(it->path(), O_RDONLY, "file");
    } else if (std::filesystem::is_directory(status)) {
      fsync_path(it->path(), O_RDONLY | O_DIRECTORY, "folder");
    }
  }
  if (ec) throw Error(root.string() + ": cannot list the folder to fsync it: " + ec.message());
  fsync_path(root, O_RDONLY | O_DIRECTORY, "folder");
}

/// Atomically swaps two existing paths (Linux renameat2 RENAME_EXCHANGE). Returns false where the
/// kernel or the file system does not support it; throws on any other failure.
inline bool exchange_paths(const std::filesystem::path& a, const std::filesystem::path& b) {
#if defined(__linux__) && defined(SYS_renameat2)
  constexpr unsigned rename_exchange = 1u << 1;  // RENAME_EXCHANGE from <linux/fs.h>
  if (::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), rename_exchange) == 0) return true;
  const int code = errno;
  if (code == EINVAL || code == ENOSYS || code == EOPNOTSUPP) return false;
  throw Error(a.string() + ": cannot swap with " + b.string() + ": " + errno_text(code));
#else
  (void)a;
  (void)b;
  return false;
#endif
}

inline void rename_path(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    const int code = errno;
    std::string hint;
    if (code == EXDEV) hint = "; both must be on the same file system (create the temporary next to the target)";
    if (code == ENOTEMPTY || code == EEXIST) hint = "; the target is a non-empty folder";
    if (code == EISDIR) hint = "; the target is a folder, expected a file";
    throw Error(to.string() + ": cannot rename " + from.string() + " to it: " + errno_text(code) + hint);
  }
}

}  // namespace detail

/// fsyncs a folder, making the creation, rename or removal of its entries durable.
/// Throws grpo::Error naming the folder if it cannot be opened or synced.
inline void fsync_directory(const std::filesystem::path& folder) {
  detail::fsync_path(folder, O_RDONLY | O_DIRECTORY, "folder");
}

/// Writes one file atomically. Construct, write() any number of times, commit(); destroying an
/// uncommitted writer (an exception on the way) removes the temporary and leaves the target as
/// it was. Writes are buffered (1 MiB); large blocks go straight to the file.
class AtomicFileWriter {
 public:
  /// Creates the temporary ".<name>.tmp-<random>" next to `path` (mode 0666 minus the umask).
  /// The folder must exist.
  explicit AtomicFileWriter(std::filesystem::path path)
      : path_(std::move(path)), temporary_(detail::sibling_name(path_, "tmp")) {
    if (path_.filename().empty()) throw Error(path_.string() + ": expected a file path, found a folder path");
    for (int attempt = 0; attempt < 100; ++attempt) {
      fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0 || (errno != EEXIST && errno != EINTR)) break;
      temporary_ = detail::sibling_name(path_, "tmp");
    }
    if (fd_ < 0) {
      throw Error(path_.string() + ": cannot create a temporary file in " + detail::parent_folder(path_).string() +
                  ": " + detail::errno_text(errno) + " (does the folder exist and is it writable?)");
    }
    buffer_.reserve(buffer_capacity);
  }

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  AtomicFileWriter(AtomicFileWriter&& other) noexcept
      : path_(std::move(other.path_)),
        temporary_(std::move(other.temporary_)),
        fd_(std::exchange(other.fd_, -1)),
        buffer_(std::move(other.buffer_)),
        bytes_written_(other.bytes_written_) {}
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;

  ~AtomicFileWriter() { discard(); }

  /// Appends `size` bytes. Throws grpo::Error naming the target on an I/O error (disk full...).
  void write(const void* data, std::size_t size) {
    if (fd_ < 0) throw Error(path_.string() + ": write after commit() or after a failed write");
    const auto* bytes = static_cast<const char*>(data);
    if (buffer_.size() + size > buffer_capacity) flush_buffer();
    if (size >= buffer_capacity) {
      write_all(bytes, size);
    } else {
      buffer_.append(bytes, size);
    }
    bytes_written_ += size;
  }
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }

  /// Bytes appended so far.
  std::uint64_t bytes_written() const noexcept { return bytes_written_; }
  /// The final path.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// Where the bytes go until commit().
  const std::filesystem::path& temporary_path() const noexcept { return temporary_; }

  /// Flushes, fsyncs, renames the temporary over the target and fsyncs the folder.
  /// On failure the temporary is removed and the target is left as it was.
  void commit() {
    if (fd_ < 0) throw Error(path_.string() + ": commit() called twice or after a failed write");
    try {
      flush_buffer();
      if (::fsync(fd_) != 0) {
        throw Error(path_.string() + ": fsync of the temporary failed: " + detail::errno_text(errno) +
                    "; nothing was replaced (check the disk and retry)");
      }
      const int fd = std::exchange(fd_, -1);
      if (::close(fd) != 0) {
        throw Error(path_.string() + ": closing the temporary failed: " + detail::errno_text(errno) +
                    "; nothing was replaced");
      }
      detail::rename_path(temporary_, path_);
    } catch (...) {
      discard();
      throw;
    }
    temporary_.clear();
    fsync_directory(detail::parent_folder(path_));
  }

 private:
  static constexpr std::size_t buffer_capacity = std::size_t{1} << 20;

  void write_all(const char* data, std::size_t size) {
    while (size > 0) {
      const ::ssize_t n = ::write(fd_, data, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int code = errno;
        discard();
        throw Error(fmt::format("{}: write failed after {} bytes: {}; the previous file (if any) is unchanged{}",
                                path_.string(), bytes_written_, detail::errno_text(code),
                                code == ENOSPC ? " (free disk space and retry)" : ""));
      }
      data += n;
      size -= static_cast<std::size_t>(n);
    }
  }

  void flush_buffer() {
    if (buffer_.empty()) return;
    write_all(buffer_.data(), buffer_.size());
    buffer_.clear();
  }

  /// Closes and removes the temporary; never throws.
  void discard() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!temporary_.empty()) {
      ::unlink(temporary_.c_str());
      temporary_.clear();
    }
  }

  std::filesystem::path path_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  std::string buffer_;
  std::uint64_t bytes_written_ = 0;
};

/// Replaces (or creates) `path` with `bytes`, atomically and durably (see the top of this file).
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  AtomicFileWriter file(path);
  file.write(bytes);
  file.commit();
}

/// Replaces (or creates) `path` with what `write(AtomicFileWriter&)` appends. If `write` throws,
/// the exception propagates, the temporary is removed and the previous file is untouched.
template <class Write>
  requires std::is_invocable_v<Write&, AtomicFileWriter&>
void write_file_atomically(const std::filesystem::path& path, Write&& write) {
  AtomicFileWriter file(path);
  std::invoke(write, file);
  file.commit();
}

/// Makes the folder `staging` visible as `final_path`: fsyncs every file and folder inside
/// `staging`, renames it to `final_path` (atomically replacing a folder already there, whose
/// old contents are then deleted), and fsyncs the parent. `staging` must be on the same file
/// system as `final_path`, ideally its sibling (StagedDirectory does this for you).
inline void publish_directory(const std::filesystem::path& staging, const std::filesystem::path& final_path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(staging, ec)) {
    throw Error(staging.string() + ": expected a staging folder to publish as " + final_path.string() +
                ", found " + (std::filesystem::exists(staging, ec) ? "a non-folder" : "nothing"));
  }
  detail::fsync_tree(staging);
  const auto target_status = std::filesystem::symlink_status(final_path, ec);
  if (!std::filesystem::exists(target_status)) {
    detail::rename_path(staging, final_path);
  } else if (!std::filesystem::is_directory(target_status)) {
    throw Error(final_path.string() + ": cannot publish the folder " + staging.string() +
                " here: a file (not a folder) is in the way; remove or rename it");
  } else if (detail::exchange_paths(staging, final_path)) {
    // `staging` now holds the previous version.
    fsync_directory(detail::parent_folder(final_path));
    std::filesystem::remove_all(staging, ec);
  } else {
    const auto backup = detail::sibling_name(final_path, "old");
    detail::rename_path(final_path, backup);
    detail::rename_path(staging, final_path);
    fsync_directory(detail::parent_folder(final_path));
    std::filesystem::remove_all(backup, ec);
  }
  fsync_directory(detail::parent_folder(final_path));
}

/// A folder to write a checkpoint into, published atomically under its final name.
///
///     grpo::io::StagedDirectory stage("runs/x/checkpoint-000100");
///     save_sharded_safetensors(stage.path(), tensors);
///     write_file_atomically(stage.path() / "config.json", config_text);
///     stage.publish();   // runs/x/checkpoint-000100 now holds all of it, or (crash) the old one
///
/// Destroying an unpublished StagedDirectory deletes the staging folder.
/// Removes what writers killed mid-write left in `dir`: entries ".<name>.tmp-<random>" and
/// ".<name>.staging-<random>" whose <name> starts with `name_prefix` (all of them for ""). Only
/// when no writer is running there (the trainer calls it on rank 0 before its first checkpoint
/// and after each one). ".old-" folders are kept: one may hold the only copy of a folder whose
/// swap was cut short. Returns how many entries were removed; a missing `dir` removes none.
inline std::size_t remove_write_leftovers(const std::filesystem::path& dir, std::string_view name_prefix = "") {
  std::error_code ec;
  std::vector<std::filesystem::path> found;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < 2 || name[0] != '.' || name.compare(1, name_prefix.size(), name_prefix) != 0) continue;
    // ".<target>.tmp-<random>" / ".<target>.staging-<random>" with a non-empty target
    const auto tmp = name.rfind(".tmp-"), staging = name.rfind(".staging-");
    if ((tmp != std::string::npos && tmp >= 2) || (staging != std::string::npos && staging >= 2)) found.push_back(it->path());
  }
  for (const auto& path : found) {
    std::filesystem::remove_all(path, ec);
    if (ec) throw Error(fmt::format("{}: cannot remove what an interrupted write left: {}", path.string(), ec.message()));
  }
  return found.size();
}

class StagedDirectory {
 public:
  /// Creates the parent folders of `final_path` if needed, then the empty staging folder
  /// ".<name>.staging-<random>" next to it.
  explicit StagedDirectory(std::filesystem::path final_path) : final_(std::move(final_path)) {
    if (final_.filename().empty()) final_ = final_.parent_path();  // "dir/" names dir
    if (final_.filename().empty()) throw Error(final_.string() + ": expected a folder path with a name");
    std::error_code ec;
    std::filesystem::create_directories(detail::parent_folder(final_), ec);
    if (ec) {
      throw Error(detail::parent_folder(final_).string() + ": cannot create the folder: " + ec.message());
    }
    for (int attempt = 0; attempt < 100; ++attempt) {
      staging_ = detail::sibling_name(final_, "staging");
      if (::mkdir(staging_.c_str(), 0777) == 0) return;
      if (errno != EEXIST && errno != EINTR) break;
    }
    const int code = errno;
    staging_.clear();
    throw Error(final_.string() + ": cannot create a staging folder next to it: " + detail::errno_text(code));
  }

  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  StagedDirectory(StagedDirectory&& other) noexcept
      : final_(std::move(other.final_)), staging_(std::exchange(other.staging_, {})) {}
  StagedDirectory& operator=(StagedDirectory&&) = delete;

  ~StagedDirectory() {
    if (!staging_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(staging_, ec);
    }
  }

  /// The staging folder: write the checkpoint's files here.
  const std::filesystem::path& path() const noexcept { return staging_; }
  /// Where publish() puts it.
  const std::filesystem::path& final_path() const noexcept { return final_; }

  /// publish_directory(path(), final_path()); afterwards path() is empty.
  void publish() {
    if (staging_.empty()) throw Error(final_.string() + ": publish() called twice");
    publish_directory(staging_, final_);
    staging_.clear();
  }

 private:
  std::filesystem::path final_;
  std::filesystem::path staging_;
};

}  // namespace grpo::io
