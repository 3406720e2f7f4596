// w4a16_scales.hpp: the W4A16 kernel's integer group scales from an artifact's float ones (host
// only; shared by the executor's loader, executor.cu, and the calibration server's quantized
// propagation, calib/calib_server.cu, so that both run the same converted weights; tested by
// runtime/tests/test_executor_host.cpp).
//
// The W4A16 kernel reads int16 group scales ŝ and applies y = Σ_g ŝ[g,c]·P_g · 16·f_c in fp32.
// An artifact with float group scales s[g,c] (the w4a16-gptq preset: integer scales buy
// nothing without int8 activations) is re-expressed per output channel as ratios to the
// channel's largest scale on 2^15 − 1 steps: ŝ = round(s / s_max · 32767), f_c = s_max /
// (16 · 32767). Each scale is then off by at most s_max / 65534 (absolute), finer than fp16
// rounding of the dequantized weights (2^-11 relative) for every group within 1/16 of the
// channel's largest; the perplexity check against the CPU (docs/executor.md) bounds the rest.
#pragma once

#include <cstdint>

namespace odyssey::exec {

// gs: float [G, np] (padding zero), n ≤ np real channels; out: int16 [G, np], f: f32 [np]
// (0 for padding channels and all-zero channels).
void w4a16_int_scales(const float* gs, int G, int n, int np, std::int16_t* out, float* f);

}  // namespace odyssey::exec
