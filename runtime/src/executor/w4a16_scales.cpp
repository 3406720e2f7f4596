// w4a16_scales.cpp: see w4a16_scales.hpp (moved here from executor.cu unchanged, so that the
// calibration server converts exactly as the executor's loader does).
#include "executor/w4a16_scales.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace odyssey::exec {

void w4a16_int_scales(const float* gs, int G, int n, int np, std::int16_t* out, float* f) {
  for (int c = 0; c < np; c++) {
    float smax = 0;
    for (int g = 0; g < G; g++) smax = std::max(smax, gs[(std::size_t)g * np + c]);
    f[c] = c < n && smax > 0 ? (float)((double)smax / (16.0 * 32767.0)) : 0.0f;
    for (int g = 0; g < G; g++) {
      const double r = smax > 0 ? (double)gs[(std::size_t)g * np + c] / (double)smax * 32767.0 : 0.0;
      out[(std::size_t)g * np + c] = (std::int16_t)std::lrint(std::min(r, 32767.0));
    }
  }
}

}  // namespace odyssey::exec
