// act_math.cuh: the elementwise activation arithmetic shared by the executor's row kernels
// (executor/layers.cu: swiglu, add_rmsnorm, the attention combine) and the decode GEMV's fused
// SwiGLU epilogue (gemv_mma.cu). One definition, so that the fused and the unfused paths are
// bit-identical by construction, not by two copies agreeing.
//
//   silu_mul        y = x / (1 + e^−x) · u, each op rounded in fp32 (model.swiglu; expf is
//                   within 2 ulp of Go's exp32; no fast-math anywhere in the runtime's flags)
//   quantize_value  clamp(roundEven(x / s), −127, 127), IEEE division, NaN → 0
//                   (quant.QuantizeActValue)
//   row_scale       quant.RowScale from max|y| as bits (absMaxBits): NaN when some value is
//                   not finite, else m/127, 1 when that is 0
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace odyssey::actmath {

__device__ __forceinline__ float silu_mul(float x, float u) {
  return __fmul_rn(__fdiv_rn(x, __fadd_rn(1.f, expf(-x))), u);
}

// clamp(roundEven(x / s), -127, 127); NaN -> 0 (fminf/fmaxf would turn it into -127).
__device__ __forceinline__ int8_t quantize_value(float x, float s) {
  float q = __fdiv_rn(x, s);
  if (q != q) return 0;
  q = fminf(fmaxf(rintf(q), -127.f), 127.f);  // rintf: half to even, as math.RoundToEven
  return (int8_t)__float2int_rn(q);
}

__device__ __forceinline__ float row_scale(unsigned mbits) {
  if (mbits >= 0x7f800000u) return __int_as_float(0x7fffffff);
  float s = __fdiv_rn(__uint_as_float(mbits), 127.f);
  return s == 0.f ? 1.f : s;
}

}  // namespace odyssey::actmath
