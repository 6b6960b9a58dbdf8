// grpo::io::TensorBoardWriter: CRC32C against its published check values, the TFRecord framing and
// the Event bytes against hand-encoded protobuf, resuming without duplicated steps, a killed
// writer's cut-short record dropped, errors that name the folder. TensorBoard's own reader checks
// the files in tests/python/test_tensorboard_format.py, from the sample folder the last case
// writes when GRPO_TENSORBOARD_SAMPLE_DIR is set.

#include "grpo/io/tensorboard.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "io_test_support.hpp"

namespace {

using grpo::io::TensorBoardWriter;
using grpo::test::ScratchFolder;
namespace fs = std::filesystem;

std::string bytes_of(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

std::uint64_t le(std::string_view bytes) {
  std::uint64_t value = 0;
  for (std::size_t i = bytes.size(); i-- > 0;) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

/// The test's own TFRecord reader: every record's data, REQUIRE-ing the framing (length, both
/// masked CRCs) to be intact and the file to end exactly after the last record.
std::vector<std::string> read_records(const fs::path& file) {
  const std::string bytes = grpo::test::read_bytes(file);
  std::vector<std::string> records;
  std::size_t at = 0;
  while (at < bytes.size()) {
    REQUIRE(bytes.size() - at >= 16);
    const std::string_view length_bytes(bytes.data() + at, 8);
    const std::uint64_t length = le(length_bytes);
    REQUIRE(le(std::string_view(bytes.data() + at + 8, 4)) == grpo::io::detail::masked_crc32c(length_bytes));
    REQUIRE(length <= bytes.size() - at - 16);
    const std::string_view data(bytes.data() + at + 12, length);
    REQUIRE(le(std::string_view(bytes.data() + at + 12 + length, 4)) == grpo::io::detail::masked_crc32c(data));
    records.emplace_back(data);
    at += 16 + length;
  }
  return records;
}

/// Event.step of the events this writer produces: wall_time (key 0x09 + 8 bytes) comes first, then
/// step (key 0x10, a one-byte varint for the steps used here) unless it is 0 (file_version).
int step_of(const std::string& event) {
  REQUIRE(event.size() > 10);
  REQUIRE(static_cast<unsigned char>(event[0]) == 0x09);
  if (event[9] != 0x10) return 0;
  REQUIRE(static_cast<unsigned char>(event[10]) < 0x80);
  return event[10];
}

bool is_file_version(const std::string& event) {
  return event.size() == 9 + 2 + 13 && event.substr(9) == bytes_of({0x1A, 13}) + "brain.Event:2";
}

/// Our event files in `folder`, in name order (the order TensorBoard reads them).
std::vector<fs::path> event_files(const fs::path& folder) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("events.out.tfevents.") && name.ends_with(".grpo")) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// The steps of every non-header record of every event file, files in name order.
std::vector<int> steps_in(const fs::path& folder) {
  std::vector<int> steps;
  for (const auto& file : event_files(folder)) {
    const auto records = read_records(file);
    REQUIRE(!records.empty());
    CHECK(is_file_version(records.front()));  // every file opens with its header
    for (std::size_t i = 1; i < records.size(); ++i) steps.push_back(step_of(records[i]));
  }
  return steps;
}

void write_steps(const fs::path& folder, std::int64_t resume_step, int first, int last, double scale = 1.0) {
  TensorBoardWriter writer(folder, resume_step);
  for (int step = first; step <= last; ++step) writer.add_scalar("loss", scale * step, step, 1000.0 + step);
  writer.flush();
}

}  // namespace

TEST_CASE("tensorboard: CRC32C matches the published check values", "[io][tensorboard]") {
  using grpo::io::detail::crc32c;
  using grpo::io::detail::masked_crc32c;
  CHECK(crc32c("123456789") == 0xE3069283u);  // the CRC catalogue's check value for CRC-32C
  CHECK(crc32c("") == 0u);
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);    // RFC 3720 B.4: 32 bytes of zeros
  CHECK(crc32c(std::string(32, '\xFF')) == 0x62A8AB43u);  // RFC 3720 B.4: 32 bytes of ones
  // masked = rotr(crc, 15) + 0xa282ead8: rotr(0xE3069283, 15) = 0x2507C60D (low 15 bits 0x1283 go
  // on top: 0x1283 << 17 = 0x25060000, 0xE3069283 >> 15 = 0x1C60D), + 0xA282EAD8 = 0xC78AB0E5 (mod 2^32).
  CHECK(masked_crc32c("123456789") == 0xC78AB0E5u);
}

TEST_CASE("tensorboard: records are framed as TFRecords around hand-checked Event bytes", "[io][tensorboard]") {
  ScratchFolder dir;
  fs::path file;
  {
    TensorBoardWriter writer(dir / "logs");
    file = writer.path();
    writer.add_scalar("loss", 0.25, 7, 1.5);
    writer.add_text("s", "hi", 300, 2.0);
    writer.flush();
  }
  REQUIRE(file.parent_path() == dir / "logs");
  CHECK(file.filename().string().find("tfevents") != std::string::npos);  // TensorBoard requires it
  const auto records = read_records(file);
  REQUIRE(records.size() == 3);
  CHECK(is_file_version(records[0]));

  // Event{wall_time=1.5 (1: fixed64 0x3FF8000000000000), step=7 (2: varint),
  //       summary (5) {value (1) {tag (1) "loss", simple_value (2) 0.25f = 0x3E800000}}}
  const std::string value = bytes_of({0x0A, 4}) + "loss" + bytes_of({0x15, 0x00, 0x00, 0x80, 0x3E});
  const std::string summary = bytes_of({0x0A, 11}) + value;
  const std::string scalar = bytes_of({0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x10, 7, 0x2A, 13}) + summary;
  CHECK(records[1] == scalar);
  CHECK(records[1].size() == 26);

  // Event{wall_time=2.0, step=300 (varint AC 02), summary {value {tag "s",
  //       tensor (8) {dtype (1) 7 = DT_STRING, tensor_shape (2) {}, string_val (8) "hi"},
  //       metadata (9) {plugin_data (1) {plugin_name (1) "text"}}}}}
  const std::string tensor = bytes_of({0x08, 7, 0x12, 0, 0x42, 2}) + "hi";
  const std::string metadata = bytes_of({0x0A, 6, 0x0A, 4}) + "text";
  const std::string text_value =
      bytes_of({0x0A, 1}) + "s" + bytes_of({0x42, 8}) + tensor + bytes_of({0x4A, 8}) + metadata;
  REQUIRE(text_value.size() == 23);
  const std::string text =
      bytes_of({0x09, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x10, 0xAC, 0x02, 0x2A, 25, 0x0A, 23}) + text_value;
  CHECK(records[2] == text);

  // Framing: 8-byte length + 4 + data + 4 per record, nothing else in the file.
  CHECK(fs::file_size(file) == 3 * 16 + records[0].size() + 26 + text.size());
}

TEST_CASE("tensorboard: a resumed run keeps steps <= resume_step once and appends after them",
          "[io][tensorboard]") {
  ScratchFolder dir;
  const auto logs = dir / "logs";
  write_steps(logs, 0, 1, 5);
  REQUIRE(steps_in(logs) == std::vector<int>{1, 2, 3, 4, 5});

  {
    TensorBoardWriter writer(logs, 3);
    // The old file now holds 1..3, the new one only its header.
    CHECK(steps_in(logs) == std::vector<int>{1, 2, 3});
    CHECK(event_files(logs).size() == 2);
    CHECK(event_files(logs).back() == writer.path());  // the new file sorts last, as TensorBoard reads
    writer.add_scalar("loss", 40.0, 4, 2004.0);
    writer.add_scalar("loss", 50.0, 5, 2005.0);
    writer.flush();
  }
  CHECK(steps_in(logs) == std::vector<int>{1, 2, 3, 4, 5});

  // Resuming at the last step written cuts nothing (the files stay byte for byte).
  const auto before = event_files(logs);
  std::vector<std::string> contents;
  for (const auto& file : before) contents.push_back(grpo::test::read_bytes(file));
  write_steps(logs, 5, 6, 6);
  CHECK(steps_in(logs) == std::vector<int>{1, 2, 3, 4, 5, 6});
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(grpo::test::read_bytes(before[i]) == contents[i]);

  // A fresh run (resume_step 0): the files left with only their header are removed.
  TensorBoardWriter fresh(logs, 0);
  CHECK(event_files(logs) == std::vector<fs::path>{fresh.path()});
  CHECK(steps_in(logs).empty());
}

TEST_CASE("tensorboard: a record cut short or corrupted by a killed writer is dropped on resume",
          "[io][tensorboard]") {
  ScratchFolder dir;
  const auto logs = dir / "logs";
  write_steps(logs, 0, 1, 3);
  const auto file = event_files(logs).at(0);
  const std::string intact = grpo::test::read_bytes(file);
  const auto records = read_records(file);
  REQUIRE(records.size() == 4);
  // A whole copy of the step-1 record, to append damaged.
  std::string record = intact.substr(16 + records[0].size(), 16 + records[1].size());

  SECTION("cut short inside the data") { grpo::test::write_bytes(file, intact + record.substr(0, 20)); }
  SECTION("cut short inside the length") { grpo::test::write_bytes(file, intact + record.substr(0, 5)); }
  SECTION("data that fails its CRC") {
    record[14] = static_cast<char>(record[14] ^ 0x01);
    grpo::test::write_bytes(file, intact + record);
  }
  SECTION("a length that fails its CRC") {
    record[0] = static_cast<char>(record[0] ^ 0x40);
    grpo::test::write_bytes(file, intact + record);
  }

  TensorBoardWriter writer(logs, 10);
  CHECK(grpo::test::read_bytes(file) == intact);
  CHECK(steps_in(logs) == std::vector<int>{1, 2, 3});
}

TEST_CASE("tensorboard: a folder that cannot be written names itself", "[io][tensorboard]") {
  ScratchFolder dir;
  SECTION("a file in the way of the folder") {
    grpo::test::write_bytes(dir / "file", "x");
    const auto logs = dir / "file" / "logs";
    CHECK_THROWS_WITH(TensorBoardWriter(logs), Catch::Contains(logs.string()) && Catch::Contains("cannot create"));
  }
  SECTION("a folder where no file can be created") {
    // root ignores permission bits: there, /proc stands in (a folder nobody can create files in).
    fs::path folder = "/proc";
    if (::geteuid() != 0) {
      folder = dir / "read-only";
      fs::create_directories(folder);
      fs::permissions(folder, fs::perms::owner_read | fs::perms::owner_exec);
    }
    CHECK_THROWS_WITH(TensorBoardWriter(folder), Catch::Contains(folder.string()) && Catch::Contains("writable"));
    if (folder != "/proc") fs::permissions(folder, fs::perms::owner_all);
  }
}

TEST_CASE("tensorboard: an inactive writer does nothing; an empty tag is refused", "[io][tensorboard]") {
  TensorBoardWriter inactive;
  inactive.add_scalar("loss", 1.0, 1, 1.0);
  inactive.add_text("", "text", 1, 1.0);
  inactive.flush();
  CHECK(inactive.path().empty());

  ScratchFolder dir;
  TensorBoardWriter writer(dir / "logs");
  CHECK_THROWS_WITH(writer.add_scalar("", 1.0, 1, 1.0), Catch::Contains("empty tag"));
  CHECK_THROWS_WITH(writer.add_text("", "x", 1, 1.0), Catch::Contains("empty tag"));

  // Moving hands over the file; the moved-from writer is inactive.
  TensorBoardWriter moved = std::move(writer);
  moved.add_scalar("loss", 1.0, 1, 1.0);
  moved.flush();
  CHECK(steps_in(dir / "logs") == std::vector<int>{1});
}

// The sample for tests/python/test_tensorboard_format.py, which reads it with TensorBoard and
// expects exactly these values: a run writes loss at steps 1..4 and a text at step 2, is "killed"
// and resumed from step 3, and the resumed run writes step 4 again with a new value.
//   loss:        1 -> 0.5, 2 -> 0.1, 3 -> -2.75, 4 -> 0.25 (the first run's 99 at step 4 is cut)
//   reward/mean: 1 -> 1.0, 2 -> 2.5, 3 -> 1e-3
//   samples:     2 -> the markdown below
TEST_CASE("tensorboard: sample log folder for TensorBoard's reader", "[io][tensorboard]") {
  ScratchFolder scratch;
  const char* sample = std::getenv("GRPO_TENSORBOARD_SAMPLE_DIR");
  const fs::path logs = sample && *sample ? fs::path(sample) : scratch / "logs";
  {
    TensorBoardWriter writer(logs);
    const double loss[] = {0.5, 0.1, -2.75, 99.0};
    const double reward[] = {1.0, 2.5, 1e-3};
    for (int step = 1; step <= 4; ++step) {
      writer.add_scalar("loss", loss[step - 1], step, 1700000000.0 + step);
      if (step <= 3) writer.add_scalar("reward/mean", reward[step - 1], step, 1700000000.0 + step);
      if (step == 2) {
        writer.add_text("samples", "**step 2** \xE2\x80\x94 caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\n\n| a | b |\n|---|---|\n| 1 | 2 |",
                        step, 1700000002.5);
      }
    }
    writer.flush();
  }
  TensorBoardWriter resumed(logs, 3);
  resumed.add_scalar("loss", 0.25, 4, 1700000100.0);
  resumed.flush();
  CHECK(steps_in(logs) == std::vector<int>{1, 1, 2, 2, 2, 3, 3, 4});
}
