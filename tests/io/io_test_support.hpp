#pragma once
// Helpers shared by the io tests: scratch folders, raw files, hand-made safetensors bytes.

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

// c10/util/Logging.h (in the test precompiled header via ATen) replaces Catch's CHECK with a
// glog-style CHECK that aborts instead of reporting; restore Catch's.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace grpo::test {

/// A fresh folder under the system temp folder, removed with its contents at scope exit.
class ScratchFolder {
 public:
  ScratchFolder() {
    std::random_device random;
    path_ = std::filesystem::temp_directory_path() /
            ("grpo-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
    std::filesystem::create_directories(path_);
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  ~ScratchFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

  /// Names of the entries of the folder (or of `sub`), sorted.
  std::vector<std::string> entries(const std::filesystem::path& sub = {}) const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(sub.empty() ? path_ : path_ / sub)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// 8-byte little-endian `header_length` (default: the header's real length), the header, the data.
inline std::string safetensors_bytes(std::string_view header, std::string_view data,
                                     std::uint64_t header_length = UINT64_MAX) {
  if (header_length == UINT64_MAX) header_length = header.size();
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &header_length, 8);
  bytes.append(header);
  bytes.append(data);
  return bytes;
}

inline std::string fixture_path(std::string_view relative) {
  return (std::filesystem::path(GRPO_FIXTURE_DIR) / "safetensors" / relative).string();
}

}  // namespace grpo::test
