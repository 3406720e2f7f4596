// tokens.cpp: the token windows file reader (see tokens.hpp).
#include "executor/tokens.hpp"

#include <cstring>

#include "safetensors.hpp"

namespace odyssey::exec {

namespace {

std::uint32_t le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

constexpr std::uint32_t kMaxSeqLen = 1048576;
constexpr std::uint32_t kMaxWindows = 16777216;

}  // namespace

TokenWindows parse_token_windows(const std::uint8_t* data, std::size_t size, const std::string& name) {
  if (size < 16) throw FormatError(name + ": " + std::to_string(size) + " bytes, too short for the 16-byte header of a token windows file");
  if (std::memcmp(data, "ODYTOK01", 8) != 0) throw FormatError(name + ": not a token windows file (magic is not ODYTOK01)");
  TokenWindows t;
  t.seq_len = le32(data + 8);
  t.windows = le32(data + 12);
  if (t.seq_len < 2 || t.seq_len > kMaxSeqLen)
    throw FormatError(name + ": window length " + std::to_string(t.seq_len) + " is outside [2, " + std::to_string(kMaxSeqLen) + "]");
  if (t.windows < 1 || t.windows > kMaxWindows)
    throw FormatError(name + ": window count " + std::to_string(t.windows) + " is outside [1, " + std::to_string(kMaxWindows) + "]");
  // Both bounded above, so 4·W·L < 2^46: no overflow.
  const std::uint64_t n = static_cast<std::uint64_t>(t.windows) * t.seq_len;
  const std::uint64_t want = 16 + 4 * n;
  if (size != want)
    throw FormatError(name + ": " + std::to_string(size) + " bytes, but " + std::to_string(t.windows) + " windows of " +
                      std::to_string(t.seq_len) + " tokens need exactly " + std::to_string(want) +
                      (size < want ? " (truncated?)" : " (trailing bytes)"));
  t.ids.resize(static_cast<std::size_t>(n));
  std::memcpy(t.ids.data(), data + 16, static_cast<std::size_t>(4 * n));  // little-endian host (safetensors.hpp)
  return t;
}

TokenWindows read_token_windows(const std::string& path) {
  // 16 + 4·2^20·2^24 bytes is the format's bound, far above memory: bound the read by what
  // a ppl run can plausibly score instead (2^31 bytes = 512M tokens).
  const std::string bytes = read_small_file(path, std::size_t{1} << 31);
  return parse_token_windows(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), path);
}

void check_token_ids(const TokenWindows& t, int vocab, const std::string& name) {
  for (std::size_t i = 0; i < t.ids.size(); i++) {
    const std::int32_t id = t.ids[i];
    if (id < 0 || id >= vocab)
      throw FormatError(name + ": window " + std::to_string(i / t.seq_len) + ", position " + std::to_string(i % t.seq_len) +
                        ": token id " + std::to_string(id) + " is outside [0, " + std::to_string(vocab) + ") of the model's vocabulary");
  }
}

}  // namespace odyssey::exec
