// Atomic files and folders: the target holds either its old or its new complete content, no
// temporary survives a failure, and a process killed mid-write loses nothing written before.

#include "grpo/io/atomic_file.hpp"

#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "io_test_support.hpp"

using Catch::Matchers::Contains;
using grpo::io::AtomicFileWriter;
using grpo::io::StagedDirectory;
using grpo::io::write_file_atomically;
using grpo::test::read_bytes;
using grpo::test::ScratchFolder;
using grpo::test::write_bytes;

TEST_CASE("atomic file: creates and replaces, leaving nothing else behind", "[io][atomic]") {
  ScratchFolder folder;
  const auto target = folder / "state.json";
  write_file_atomically(target, "first");
  CHECK(read_bytes(target) == "first");
  write_file_atomically(target, std::string("second, longer"));
  CHECK(read_bytes(target) == "second, longer");
  write_file_atomically(target, "");
  CHECK(read_bytes(target).empty());
  CHECK(folder.entries() == std::vector<std::string>{"state.json"});
}

TEST_CASE("atomic file: permissions follow the umask like an ordinary new file", "[io][atomic]") {
  ScratchFolder folder;
  const ::mode_t old_mask = ::umask(022);
  write_file_atomically(folder / "a", "x");
  ::umask(old_mask);
  struct ::stat status {};
  REQUIRE(::stat((folder / "a").c_str(), &status) == 0);
  CHECK((status.st_mode & 0777) == 0644);  // 0666 & ~022
}

TEST_CASE("atomic file: a writer callback that throws leaves the previous file intact", "[io][atomic]") {
  ScratchFolder folder;
  const auto target = folder / "model.safetensors";
  write_bytes(target, "previous checkpoint");
  std::filesystem::path temporary;
  REQUIRE_THROWS_WITH(write_file_atomically(target,
                                            [&](AtomicFileWriter& file) {
                                              file.write(std::string(3 << 20, 'x'));  // past the buffer: on disk
                                              temporary = file.temporary_path();
                                              CHECK(std::filesystem::exists(temporary));
                                              throw std::runtime_error("simulated failure");
                                            }),
                      "simulated failure");
  CHECK(read_bytes(target) == "previous checkpoint");
  CHECK_FALSE(std::filesystem::exists(temporary));
  CHECK(folder.entries() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("atomic file: an uncommitted writer changes nothing; large writes arrive intact", "[io][atomic]") {
  ScratchFolder folder;
  const auto target = folder / "big.bin";
  {
    AtomicFileWriter file(target);
    file.write("abc");
  }
  CHECK(folder.entries().empty());

  std::string expected;
  {
    AtomicFileWriter file(target);
    for (int i = 0; i < 2000; ++i) {  // small writes through the buffer, mixed with large ones
      const std::string piece = std::to_string(i) + (i % 500 == 0 ? std::string(1 << 20, char('a' + i % 26)) : ";");
      file.write(piece);
      expected += piece;
    }
    CHECK(file.bytes_written() == expected.size());
    file.commit();
    REQUIRE_THROWS_WITH(file.commit(), Contains("commit() called twice"));
    REQUIRE_THROWS_WITH(file.write("x"), Contains("write after commit()"));
  }
  CHECK(read_bytes(target) == expected);
}

TEST_CASE("atomic file: errors name the path and leave no temporary", "[io][atomic]") {
  ScratchFolder folder;
  REQUIRE_THROWS_WITH(write_file_atomically(folder / "no/such/folder/x", "data"),
                      Contains("no/such/folder/x: cannot create a temporary file in") && Contains("does the folder exist"));
  std::filesystem::create_directory(folder / "taken");
  write_bytes(folder / "taken" / "inside", "keep");
  REQUIRE_THROWS_WITH(write_file_atomically(folder / "taken", "data"), Contains("taken: cannot rename"));
  CHECK(folder.entries() == std::vector<std::string>{"taken"});
  CHECK(read_bytes(folder / "taken" / "inside") == "keep");
  REQUIRE_THROWS_AS(grpo::io::fsync_directory(folder / "absent"), grpo::Error);
}

TEST_CASE("atomic file: a process killed mid-write loses nothing written before", "[io][atomic]") {
  ScratchFolder folder;
  const auto target = folder / "checkpoint.bin";
  write_bytes(target, "complete old checkpoint");
  const ::pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Only async-signal-safe-ish POSIX work here: no torch, no Catch2.
    AtomicFileWriter file(target);
    file.write(std::string(2 << 20, 'n'));
    ::kill(::getpid(), SIGKILL);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(read_bytes(target) == "complete old checkpoint");
  // The killed writer's temporary stays (nobody could remove it), under a name no reader opens.
  const auto entries = folder.entries();
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].rfind(".checkpoint.bin.tmp-", 0) == 0);
}

TEST_CASE("staged directory: published whole, replacing the old folder atomically", "[io][atomic]") {
  ScratchFolder folder;
  const auto final_path = folder / "runs" / "checkpoint-000100";
  {
    StagedDirectory stage(final_path);
    CHECK(stage.path().parent_path() == final_path.parent_path());
    write_file_atomically(stage.path() / "config.json", "v1");
    write_bytes(stage.path() / "copied.txt", "written without fsync; publish syncs it");
    CHECK_FALSE(std::filesystem::exists(final_path));
    stage.publish();
    CHECK(stage.path().empty());
    REQUIRE_THROWS_WITH(stage.publish(), Contains("publish() called twice"));
  }
  CHECK(read_bytes(final_path / "config.json") == "v1");
  CHECK(read_bytes(final_path / "copied.txt") == "written without fsync; publish syncs it");

  {
    StagedDirectory stage(final_path);
    write_file_atomically(stage.path() / "config.json", "v2");
    stage.publish();
  }
  CHECK(read_bytes(final_path / "config.json") == "v2");
  CHECK_FALSE(std::filesystem::exists(final_path / "copied.txt"));  // the old folder is gone, not merged
  CHECK(folder.entries("runs") == std::vector<std::string>{"checkpoint-000100"});
}

TEST_CASE("staged directory: abandoned stages vanish; a file in the way is an error", "[io][atomic]") {
  ScratchFolder folder;
  const auto final_path = folder / "ckpt";
  {
    StagedDirectory stage(final_path);
    write_bytes(stage.path() / "half", "written");
  }
  CHECK(folder.entries().empty());

  write_bytes(final_path, "a file");
  {
    StagedDirectory stage(final_path);
    REQUIRE_THROWS_WITH(stage.publish(), Contains("ckpt: cannot publish the folder") && Contains("a file (not a folder)"));
  }
  CHECK(folder.entries() == std::vector<std::string>{"ckpt"});
  CHECK(read_bytes(final_path) == "a file");
  REQUIRE_THROWS_WITH(grpo::io::publish_directory(folder / "missing", folder / "x"),
                      Contains("missing: expected a staging folder") && Contains("found nothing"));
}

TEST_CASE("leftovers of killed writers: staging folders and temporaries go, .old- folders and others stay",
          "[io][atomic]") {
  ScratchFolder folder;
  namespace fs = std::filesystem;
  fs::create_directories(folder / ".step-000004.staging-a1b2c3" / "policy");  // a checkpoint cut short
  write_bytes(folder / ".step-000004.staging-a1b2c3" / "policy" / "model.safetensors", "partial");
  write_bytes(folder / ".latest.tmp-x9", "step-0000");                          // a pointer cut short
  fs::create_directories(folder / ".step-000002.old-q7");  // may hold the only copy of step-000002: kept
  fs::create_directories(folder / "step-000003");
  write_bytes(folder / ".hidden", "not ours");
  write_bytes(folder / "latest", "step-000003\n");
  CHECK(grpo::io::remove_write_leftovers(folder / "missing") == 0);
  CHECK(grpo::io::remove_write_leftovers(folder.path(), "policy.") == 0);  // another target's leftovers only
  CHECK(grpo::io::remove_write_leftovers(folder.path()) == 2);
  CHECK(folder.entries() == std::vector<std::string>{".hidden", ".step-000002.old-q7", "latest", "step-000003"});

  // A target's own leftovers, by name: ".out.staging-*" of folder "out", not those of "out2".
  fs::create_directories(folder / ".out.staging-1");
  fs::create_directories(folder / ".out2.staging-1");
  CHECK(grpo::io::remove_write_leftovers(folder.path(), "out.") == 1);
  CHECK(fs::exists(folder / ".out2.staging-1"));
}
