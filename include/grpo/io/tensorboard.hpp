#pragma once
// TensorBoard event files: scalars and markdown text that `tensorboard --logdir <run>` shows, the
// way verl/TRL users watch their runs.
//
// An event file is a sequence of TFRecords, each holding one serialized tensorboard.Event proto:
//   uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)
// all little endian, masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (TensorFlow's
// core/lib/hash/crc32c.h; TensorBoard's summary/writer/record_writer.py writes the same).
//
// The protos are encoded by hand (protobuf wire format: varint keys `field << 3 | wire_type`,
// fixed64 doubles, fixed32 floats, length-delimited strings and submessages), because the
// protobuf runtime cannot be used here: the torch wheel's include folder, which every grpo
// consumer has on its -isystem path, carries a partial protobuf 3.13 header tree that shadows any
// system protobuf (Debian's 3.21 headers then fail to compile) while libtorch hides its own copy's
// symbols. The messages we write are four small ones; the field numbers are tensorboard 2.21's
// (tensorboard/compat/proto/{event,summary,tensor,tensor_shape,types}.proto, checked against the
// descriptors of its *_pb2.py):
//   Event            wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5
//   Summary          value = 1 (repeated Summary.Value)
//   Summary.Value    tag = 1 (string), simple_value = 2 (float), tensor = 8 (TensorProto),
//                    metadata = 9 (SummaryMetadata)
//   SummaryMetadata  plugin_data = 1 (PluginData{plugin_name = 1 (string)})
//   TensorProto      dtype = 1 (enum DataType, DT_STRING = 7), tensor_shape = 2 (TensorShapeProto,
//                    empty = a scalar), string_val = 8 (repeated bytes)
// A text summary is what TensorBoard's text plugin reads (tensorboard/plugins/text/summary.py):
// plugin_name "text" (its TextPluginData content is version 0, i.e. empty) and a scalar DT_STRING
// tensor holding the markdown.
//
// Resuming: TensorBoardWriter(log_dir, resume_step) first cuts every event file of ours in log_dir
// (named "events.out.tfevents.<unix seconds>.<host>.grpo") back to the records with
// step <= resume_step, so steps written after the checkpoint by a killed run do not show twice.
// TensorBoard reads a folder's event files in name order, so a new file's seconds are the later of
// now and one past the newest file of ours: files sort in the order they were written.

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "grpo/core/error.hpp"
#include "grpo/io/atomic_file.hpp"

namespace grpo::io {

namespace detail {

// ---- CRC32C (Castagnoli) ----
// crc = ~0; for each byte b: crc = table[(crc ^ b) & 0xff] ^ (crc >> 8); result ~crc, where
// table[i] is i shifted right 8 times through the reflected polynomial 0x82F63B78 (RFC 3720
// appendix B.4). Check value: crc32c("123456789") = 0xE3069283.
inline constexpr std::array<std::uint32_t, 256> crc32c_table = [] {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    table[i] = crc;
  }
  return table;
}();

inline std::uint32_t crc32c(std::string_view bytes) noexcept {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (const char c : bytes) crc = crc32c_table[(crc ^ static_cast<unsigned char>(c)) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/// TFRecord's masked CRC: rotate right by 15, add a constant, so that a CRC stored inside the data
/// it covers does not checksum to a fixed value.
inline std::uint32_t masked_crc32c(std::string_view bytes) noexcept {
  const std::uint32_t crc = crc32c(bytes);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

inline void append_le(std::string& out, std::uint64_t value, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFFu));
}

inline std::uint64_t read_le(std::string_view bytes, std::size_t count) noexcept {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < count; ++i) value |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  return value;
}

// ---- TFRecord framing ----

/// Appends one record holding `data` (16 bytes of framing around it).
inline void append_record(std::string& out, std::string_view data) {
  std::string length;
  append_le(length, data.size(), 8);
  out += length;
  append_le(out, masked_crc32c(length), 4);
  out += data;
  append_le(out, masked_crc32c(data), 4);
}

/// The record at the front of `bytes`: its data, and how many bytes it spans.
struct RecordView {
  std::string_view data;
  std::size_t size = 0;
};

/// Reads the record at the front of `bytes`; nullopt when no complete record with both CRCs right
/// is there (the end of the file, a record cut short by a killed writer, or corruption).
inline std::optional<RecordView> read_record(std::string_view bytes) noexcept {
  if (bytes.size() < 16) return std::nullopt;
  if (read_le(bytes.substr(8), 4) != masked_crc32c(bytes.substr(0, 8))) return std::nullopt;
  const std::uint64_t length = read_le(bytes, 8);
  if (length > bytes.size() - 16) return std::nullopt;
  const auto data = bytes.substr(12, static_cast<std::size_t>(length));
  if (read_le(bytes.substr(12 + data.size()), 4) != masked_crc32c(data)) return std::nullopt;
  return RecordView{data, 16 + data.size()};
}

// ---- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) ----

enum class WireType : std::uint8_t { varint = 0, fixed64 = 1, length_delimited = 2, fixed32 = 5 };

/// Base-128 varint: 7 bits per byte, least significant first, high bit = more bytes follow.
inline void append_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7Fu) | 0x80u));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

inline void append_key(std::string& out, std::uint32_t field, WireType type) {
  append_varint(out, (std::uint64_t{field} << 3) | static_cast<std::uint64_t>(type));
}

/// int64 fields are varints of the two's complement (a negative value takes 10 bytes).
inline void append_int64_field(std::string& out, std::uint32_t field, std::int64_t value) {
  append_key(out, field, WireType::varint);
  append_varint(out, static_cast<std::uint64_t>(value));
}

inline void append_double_field(std::string& out, std::uint32_t field, double value) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  append_key(out, field, WireType::fixed64);
  append_le(out, bits, 8);
}

inline void append_float_field(std::string& out, std::uint32_t field, float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  append_key(out, field, WireType::fixed32);
  append_le(out, bits, 4);
}

/// Strings, bytes and submessages (encoded first into their own string): key, length, bytes.
inline void append_bytes_field(std::string& out, std::uint32_t field, std::string_view bytes) {
  append_key(out, field, WireType::length_delimited);
  append_varint(out, bytes.size());
  out += bytes;
}

/// Walks the fields of one encoded message.
class ProtoReader {
 public:
  explicit ProtoReader(std::string_view bytes) noexcept : rest_(bytes) {}

  bool at_end() const noexcept { return rest_.empty(); }

  bool read_varint(std::uint64_t& value) noexcept {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (rest_.empty()) return false;
      const auto byte = static_cast<unsigned char>(rest_.front());
      rest_.remove_prefix(1);
      value |= std::uint64_t{byte & 0x7Fu} << shift;
      if ((byte & 0x80u) == 0) return true;
    }
    return false;  // more than 10 bytes
  }

  /// Reads the next key; false at a malformed key.
  bool read_key(std::uint32_t& field, std::uint64_t& wire_type) noexcept {
    std::uint64_t key = 0;
    if (!read_varint(key) || (key >> 3) == 0 || (key >> 3) > 0x1FFFFFFFu) return false;
    field = static_cast<std::uint32_t>(key >> 3);
    wire_type = key & 7u;
    return true;
  }

  /// Skips the value of a field of `wire_type`; false if it runs past the end or is a group.
  bool skip(std::uint64_t wire_type) noexcept {
    std::uint64_t value = 0;
    switch (wire_type) {
      case 0: return read_varint(value);
      case 1: return take(8);
      case 2: return read_varint(value) && value <= rest_.size() && take(static_cast<std::size_t>(value));
      case 5: return take(4);
      default: return false;  // 3/4: deprecated groups, never in Event; 6/7: invalid
    }
  }

 private:
  bool take(std::size_t n) noexcept {
    if (n > rest_.size()) return false;
    rest_.remove_prefix(n);
    return true;
  }

  std::string_view rest_;
};

/// What resuming needs to know of one Event.
struct EventStep {
  std::int64_t step = 0;           ///< Event.step (0 when absent, as in proto3)
  bool is_file_version = false;    ///< carries Event.file_version: the header record of a file
};

/// Reads Event.step (field 2) and whether Event.file_version (field 3) is set; nullopt if `event`
/// is not a well-formed message.
inline std::optional<EventStep> read_event_step(std::string_view event) noexcept {
  ProtoReader reader(event);
  EventStep result;
  while (!reader.at_end()) {
    std::uint32_t field = 0;
    std::uint64_t wire_type = 0;
    if (!reader.read_key(field, wire_type)) return std::nullopt;
    if (field == 2 && wire_type == 0) {
      std::uint64_t step = 0;
      if (!reader.read_varint(step)) return std::nullopt;
      result.step = static_cast<std::int64_t>(step);
      continue;
    }
    if (field == 3 && wire_type == 2) result.is_file_version = true;
    if (!reader.skip(wire_type)) return std::nullopt;
  }
  return result;
}

// ---- the Event messages we write ----

/// Event{wall_time, step, summary{value{tag, <value fields>}}}; step omitted when 0 (proto3).
inline std::string summary_event(double wall_time, std::int64_t step, std::string_view value_fields) {
  std::string summary;
  append_bytes_field(summary, 1, value_fields);  // Summary.value
  std::string event;
  append_double_field(event, 1, wall_time);
  if (step != 0) append_int64_field(event, 2, step);
  append_bytes_field(event, 5, summary);  // Event.summary
  return event;
}

inline std::string scalar_event(std::string_view tag, double value, std::int64_t step, double wall_time) {
  std::string fields;
  append_bytes_field(fields, 1, tag);                               // Value.tag
  append_float_field(fields, 2, static_cast<float>(value));         // Value.simple_value
  return summary_event(wall_time, step, fields);
}

inline std::string text_event(std::string_view tag, std::string_view markdown, std::int64_t step, double wall_time) {
  std::string tensor;
  append_int64_field(tensor, 1, 7);            // TensorProto.dtype = DT_STRING
  append_bytes_field(tensor, 2, {});           // TensorProto.tensor_shape = {} (a scalar)
  append_bytes_field(tensor, 8, markdown);     // TensorProto.string_val[0]
  std::string plugin_data;
  append_bytes_field(plugin_data, 1, "text");  // PluginData.plugin_name
  std::string metadata;
  append_bytes_field(metadata, 1, plugin_data);  // SummaryMetadata.plugin_data
  std::string fields;
  append_bytes_field(fields, 1, tag);       // Value.tag
  append_bytes_field(fields, 8, tensor);    // Value.tensor
  append_bytes_field(fields, 9, metadata);  // Value.metadata
  return summary_event(wall_time, step, fields);
}

/// The first record of every event file: Event{wall_time, file_version = "brain.Event:2"}.
/// Version 2 tells TensorBoard not to purge "orphaned" out-of-order steps on its own.
inline std::string file_version_event(double wall_time) {
  std::string event;
  append_double_field(event, 1, wall_time);
  append_bytes_field(event, 3, "brain.Event:2");
  return event;
}

// ---- event files of ours in a log folder ----

inline constexpr std::string_view event_file_prefix = "events.out.tfevents.";
inline constexpr std::string_view event_file_suffix = ".grpo";

inline bool is_our_event_file(const std::string& name) {
  return name.size() > event_file_prefix.size() + event_file_suffix.size() &&
         name.starts_with(event_file_prefix) && name.ends_with(event_file_suffix);
}

/// The <unix seconds> of "events.out.tfevents.<unix seconds>.<...>", or -1.
inline std::int64_t event_file_seconds(const std::string& name) {
  std::int64_t seconds = 0;
  std::size_t i = event_file_prefix.size();
  const std::size_t start = i;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && i - start < 18; ++i) seconds = seconds * 10 + (name[i] - '0');
  return i > start && i < name.size() && name[i] == '.' ? seconds : -1;
}

inline double unix_seconds_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// gethostname(), with anything but [A-Za-z0-9._-] replaced by '_' (it becomes part of a file name).
inline std::string file_name_host() {
  std::array<char, 256> buffer{};
  std::string host = ::gethostname(buffer.data(), buffer.size() - 1) == 0 ? std::string(buffer.data()) : "";
  for (char& c : host) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '-' || c == '_';
    if (!keep) c = '_';
  }
  return host.empty() ? "localhost" : host;
}

/// Cuts the event file `path` back to its records with step <= resume_step, replacing it
/// atomically; the first record that is cut short or fails a CRC ends what is kept (a writer
/// killed mid-record). Removes the file when nothing but file_version headers is left.
inline void keep_steps_up_to(const std::filesystem::path& path, std::int64_t resume_step) {
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path.string() + ": cannot open the TensorBoard event file to resume it: " + errno_text(errno));
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error(path.string() + ": read error in the TensorBoard event file");
  }
  std::string kept;
  bool kept_data = false;
  std::string_view rest = bytes;
  while (auto record = read_record(rest)) {
    const auto event = read_event_step(record->data);
    if (event && event->step <= resume_step) {
      kept.append(rest.data(), record->size);
      kept_data = kept_data || !event->is_file_version;
    }
    rest.remove_prefix(record->size);
  }
  if (kept.size() == bytes.size()) return;  // nothing to cut
  if (!kept_data) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (ec) throw Error(path.string() + ": cannot remove the TensorBoard event file emptied by resuming: " + ec.message());
    return;
  }
  write_file_atomically(path, kept);
}

}  // namespace detail

/// Writes one TensorBoard event file in a log folder: scalars and markdown text per step.
///
///     grpo::io::TensorBoardWriter tensorboard(output_dir / "tensorboard", resume_step);
///     tensorboard.add_scalar("reward/mean", 0.41, step, wall_time);
///     tensorboard.add_text("samples", "**prompt** ...", step, wall_time);
///     tensorboard.flush();   // once per step: the records reach the disk
///
/// A default-constructed writer is inactive: every call does nothing. Records are buffered until
/// flush() (or the destructor, which cannot report errors: call flush()). Not thread-safe.
class TensorBoardWriter {
 public:
  TensorBoardWriter() = default;

  /// Creates `log_dir` if needed; cuts every event file of ours there back to steps <= resume_step
  /// (0 for a fresh run: data at step >= 1 goes), see the top of this file; then creates a new
  /// event file and writes its file_version record.
  /// Throws grpo::Error naming the folder or file that cannot be created, read or replaced.
  explicit TensorBoardWriter(const std::filesystem::path& log_dir, std::int64_t resume_step = 0) {
    if (log_dir.empty()) throw Error("TensorBoardWriter: empty log folder path; pass the folder to write events into");
    if (resume_step < 0) {
      throw Error(
          fmt::format("{}: TensorBoardWriter resume_step must be >= 0, found {}", log_dir.string(), resume_step));
    }
    std::error_code ec;
    std::filesystem::create_directories(log_dir, ec);
    if (ec || !std::filesystem::is_directory(log_dir)) {
      throw Error(log_dir.string() + ": cannot create the TensorBoard log folder: " +
                  (ec ? ec.message() : std::string("a file is in the way")));
    }
    std::int64_t newest_seconds = -1;
    for (std::filesystem::directory_iterator it(log_dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!detail::is_our_event_file(name) || !it->is_regular_file()) continue;
      newest_seconds = std::max(newest_seconds, detail::event_file_seconds(name));
      detail::keep_steps_up_to(it->path(), resume_step);
    }
    if (ec) throw Error(log_dir.string() + ": cannot list the TensorBoard log folder: " + ec.message());

    const double now = detail::unix_seconds_now();
    const auto seconds = std::max(static_cast<std::int64_t>(now), newest_seconds + 1);
    std::string digits = std::to_string(seconds);
    if (digits.size() < 10) digits.insert(0, 10 - digits.size(), '0');
    const std::string stem = std::string(detail::event_file_prefix) + digits + "." + detail::file_name_host();
    int code = 0;
    for (int counter = 0; counter < 1000; ++counter) {
      path_ = log_dir / (stem + (counter ? "." + std::to_string(counter) : "") + std::string(detail::event_file_suffix));
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0666);
      code = errno;
      if (fd_ >= 0 || (code != EEXIST && code != EINTR)) break;
    }
    if (fd_ < 0) {
      throw Error(path_.string() + ": cannot create the TensorBoard event file: " + detail::errno_text(code) +
                  " (is the folder " + log_dir.string() + " writable?)");
    }
    detail::append_record(buffer_, detail::file_version_event(now));
    flush();
  }

  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;
  TensorBoardWriter(TensorBoardWriter&& other) noexcept
      : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)) {}
  TensorBoardWriter& operator=(TensorBoardWriter&& other) noexcept {
    if (this != &other) {
      close_quietly();
      path_ = std::move(other.path_);
      fd_ = std::exchange(other.fd_, -1);
      buffer_ = std::move(other.buffer_);
    }
    return *this;
  }
  ~TensorBoardWriter() { close_quietly(); }

  /// Appends Event{wall_time, step, summary{value{tag, simple_value = float(value)}}}; TensorBoard
  /// stores scalars as float32. `wall_time` is unix seconds. Throws grpo::Error on an empty tag.
  void add_scalar(std::string_view tag, double value, std::int64_t step, double wall_time) {
    if (fd_ < 0) return;
    check_tag(tag, "add_scalar");
    detail::append_record(buffer_, detail::scalar_event(tag, value, step, wall_time));
    if (buffer_.size() >= buffer_capacity) write_buffer();
  }

  /// Appends a text summary (shown by the TEXT tab, rendered as markdown) of `markdown`, UTF-8.
  void add_text(std::string_view tag, std::string_view markdown, std::int64_t step, double wall_time) {
    if (fd_ < 0) return;
    check_tag(tag, "add_text");
    detail::append_record(buffer_, detail::text_event(tag, markdown, step, wall_time));
    if (buffer_.size() >= buffer_capacity) write_buffer();
  }

  /// Writes the buffered records and fsyncs the file. Throws grpo::Error naming the file; the
  /// records of a failed flush are lost (a cut-short record is dropped when the run resumes).
  void flush() {
    if (fd_ < 0) return;
    write_buffer();
    if (::fsync(fd_) != 0 && errno != EINVAL) {
      throw Error(path_.string() + ": fsync of the TensorBoard event file failed: " + detail::errno_text(errno));
    }
  }

  /// The event file written to; empty for an inactive writer.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  static constexpr std::size_t buffer_capacity = std::size_t{1} << 20;

  static void check_tag(std::string_view tag, std::string_view what) {
    if (tag.empty()) throw Error("TensorBoardWriter::" + std::string(what) + ": empty tag; give the series a name");
  }

  void write_buffer() {
    std::string_view rest = buffer_;
    while (!rest.empty()) {
      const ::ssize_t n = ::write(fd_, rest.data(), rest.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        const int code = errno;
        buffer_.clear();
        throw Error(path_.string() + ": write to the TensorBoard event file failed: " + detail::errno_text(code) +
                    (code == ENOSPC ? " (free disk space)" : ""));
      }
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    buffer_.clear();
  }

  /// Writes what is buffered (errors ignored: a destructor cannot report them) and closes.
  void close_quietly() noexcept {
    if (fd_ < 0) return;
    try {
      write_buffer();
    } catch (...) {
    }
    ::close(std::exchange(fd_, -1));
  }

  std::filesystem::path path_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace grpo::io
