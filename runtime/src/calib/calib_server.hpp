// calib_server.hpp: `odyssey-rt calib` (calib_server.cu; contract docs/gpu-calibration.md).
#pragma once

#include <string>

namespace odyssey::calibgpu {

constexpr int kProtocol = 1;

// Loads the checkpoint's plan, prints the greeting, and serves commands from stdin until quit
// or EOF. Returns the exit status; throws before the greeting (no GPU, a bad checkpoint).
// precision "fp32" (the default: the layer forward, statistics and quantized propagation in
// float32 as the CPU pass, calib_fp32.cu) or "fp16" (the executor's fp16 kernels).
int run_calib_server(const std::string& model, const std::string& dir, int chunk_rows, const std::string& precision);

}  // namespace odyssey::calibgpu
