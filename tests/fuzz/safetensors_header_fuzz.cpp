// Fuzz target: the safetensors header parser on arbitrary bytes (a whole file held in memory).
// The only acceptable failure is grpo::Error with a valid UTF-8 message; anything else (another
// exception, a crash, a hang, an accepted header that breaks the format's invariants) is a bug. Seed corpus:
// tests/fuzz/corpus/safetensors_header_fuzz/, made by tests/fuzz/make_safetensors_corpus.py.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "grpo/io/safetensors_header.hpp"

namespace {

/// Invariants of an accepted header, checked independently of how the parser got there.
void check_accepted(const grpo::io::SafetensorsHeader& header, std::size_t file_size) {
  if (8 + header.header_size + header.data_size != file_size) std::abort();
  std::uint64_t cursor = 0;
  for (const auto& info : header.tensors) {
    if (info.data_begin != cursor || info.data_end < info.data_begin) std::abort();
    unsigned __int128 bytes = grpo::io::dtype_size(info.dtype);
    for (auto size : info.shape) {
      if (size < 0) std::abort();
      bytes *= static_cast<unsigned __int128>(size);
      if (bytes > file_size) bytes = static_cast<unsigned __int128>(file_size) + 1;  // stays a mismatch
    }
    if (bytes != info.byte_size()) std::abort();
    cursor = info.data_end;
    const auto* found = header.find(info.name);
    if (found != &info) std::abort();
  }
  if (cursor != header.data_size || header.index.size() != header.tensors.size()) std::abort();
}

/// Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    std::uint32_t code = length == 1 ? c : c & (0x7f >> length);
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next >> 6) != 0x2) return false;
      code = (code << 6) | (next & 0x3f);
    }
    constexpr std::uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += length;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    check_accepted(grpo::io::parse_safetensors_header(file, "fuzz.safetensors"), size);
  } catch (const grpo::Error& e) {
    if (!is_valid_utf8(e.what())) std::abort();
  }
  return 0;
}
