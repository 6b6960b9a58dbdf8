#pragma once
// Reads the reference cases that tests/python/fixtures/text.py makes with Python itself.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace grpo_test {

/// One case: raw bytes, Python's LongBench-Write count, Python's errors="replace" decoding.
struct PythonTextCase {
  std::string bytes;
  std::int64_t words = 0;
  std::u32string code_points;
};

inline std::string read_fixture(const std::string& name) {
  const std::string path = std::string(GRPO_FIXTURE_DIR) + "/text/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) FAIL("missing fixture " << path << " (made by ctest's fixtures/make: tests/python/fixtures/text.py)");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::vector<PythonTextCase> python_text_cases() {
  const std::string data = read_fixture("word_cases.bin");
  std::size_t pos = 0;
  const auto take = [&](void* dst, std::size_t n) {
    REQUIRE(pos + n <= data.size());
    std::memcpy(dst, data.data() + pos, n);
    pos += n;
  };
  std::vector<PythonTextCase> cases;
  while (pos < data.size()) {
    PythonTextCase c;
    std::uint32_t length = 0, points = 0;
    take(&length, 4);
    c.bytes.resize(length);
    take(c.bytes.data(), length);
    take(&c.words, 8);
    take(&points, 4);
    c.code_points.resize(points);
    take(c.code_points.data(), 4 * std::size_t{points});
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace grpo_test
