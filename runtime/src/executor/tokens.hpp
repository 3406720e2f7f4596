// tokens.hpp: the token windows file that `odyssey verify ppl` writes for `odyssey-rt ppl
// --tokens FILE` (docs/executor.md, "Token windows file"). Host only (g++ alone; tested by
// runtime/tests/test_executor_host.cpp).
//
// Layout, little-endian: magic "ODYTOK01", u32 L (2..1048576), u32 W (1..16777216), then
// i32 × W·L token ids, window after window. The size must be exactly 16 + 4·W·L: a
// truncated or padded file is refused before anything is allocated for the ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace odyssey::exec {

struct TokenWindows {
  std::uint32_t seq_len = 0;   // L
  std::uint32_t windows = 0;   // W
  std::vector<std::int32_t> ids;  // W·L
};

// Parses a file image (tests) or reads a file; name/path is used in messages. Throws
// FormatError (safetensors.hpp).
TokenWindows parse_token_windows(const std::uint8_t* data, std::size_t size, const std::string& name);
TokenWindows read_token_windows(const std::string& path);

// Refuses an id outside [0, vocab), naming the window and the position in it.
void check_token_ids(const TokenWindows& t, int vocab, const std::string& name);

}  // namespace odyssey::exec
