// act_math.cuh: the elementwise activation arithmetic shared by the executor's row kernels
// (executor/layers.cu: swiglu, add_rmsnorm, the attention combine) and the decode GEMV's fused
// SwiGLU epilogue (gemv_mma.cu). One definition, so that the fused and the unfused paths are
// bit-identical by construction, not by two copies agreeing.
//
//   silu_mul        y = x / (1 + e^−x) · u, each op rounded in fp32 (model.swiglu; expf is
//                   within 2 ulp of Go's exp32; no fast-math anywhere in the runtime's flags)
//   quantize_value  clamp(roundEven(x / s), −127, 127), IEEE division, NaN → 0
//                   (quant.QuantizeActValue)
//   quantize_value_rcp  quantize_value's bits from a reciprocal (for kernels that quantize a
//                   whole row per block, where the IEEE division dominates); see below
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

// quantize_value(x, s) without the IEEE division where that is provably the same: r = quant_rcp(s)
// (1/s rounded, or 0 when it is not a normal float), t = x·r rounded. t differs from the
// correctly rounded x/s by at most 3·2⁻²⁴·|x/s| (r, the product and fl(x/s) each one rounding):
// below 2.3e-5 for |x/s| ≤ 128, and beyond that both clamp to ±127 unless |x/s| is near 127.5.
// So when t is further than 1e-4 from a half-integer, rint(t) and rint(fl(x/s)) are the same
// integer (same clamp); otherwise (ties, near-ties, NaN/inf t, r = 0) the exact expression runs.
// Checked on the host against quantize_value over random and tie inputs
// (runtime/tests/act_math/check_rcp.sh) and on the GPU by `test layers --only downq`.
__device__ __forceinline__ float quant_rcp(float s) {
  const float r = __frcp_rn(s);
  return r >= 1.17549435e-38f && r <= 3.40282347e38f ? r : 0.f;  // NaN, inf, subnormal: 0
}
__device__ __forceinline__ int8_t quantize_value_rcp(float x, float s, float r) {
  if (r != 0.f) {
    const float t = __fmul_rn(x, r);
    const float n = rintf(t);
    if (fabsf(__fsub_rn(t, n)) < 0.4999f)  // exact difference; false for NaN t
      return (int8_t)__float2int_rn(fminf(fmaxf(n, -127.f), 127.f));
  }
  return quantize_value(x, s);
}

__device__ __forceinline__ float row_scale(unsigned mbits) {
  if (mbits >= 0x7f800000u) return __int_as_float(0x7fffffff);
  float s = __fdiv_rn(__uint_as_float(mbits), 127.f);
  return s == 0.f ? 1.f : s;
}

}  // namespace odyssey::actmath
