// calib_server.hpp: `odyssey-rt calib` (calib_server.cu; contract docs/gpu-calibration.md).
#pragma once

#include <string>

namespace odyssey::calibgpu {

constexpr int kProtocol = 1;

// Loads the checkpoint's plan, prints the greeting, and serves commands from stdin until quit
// or EOF. Returns the exit status; throws before the greeting (no GPU, a bad checkpoint).
int run_calib_server(const std::string& model, const std::string& dir, int chunk_rows);

}  // namespace odyssey::calibgpu
