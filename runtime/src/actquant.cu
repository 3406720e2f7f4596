// actquant.cu: activation quantization, fp16 -> int8, for the W4A8 GEMM's A operand.
//
// What it computes (docs/w4a8-numerics.md §2, quant.QuantizeActPerToken / QuantizeActPerTensor):
//   code = clamp(roundEven(x / s), -127, 127) with IEEE float32 division (__fdiv_rn), NaN -> 0;
//   per token: s_row = max|x_row| / 127, and 1 when that is 0 (a zero row) or underflows;
//   static per tensor: s from a calibrated maximum (a device pointer, so graphs can capture it).
//
// Shape: one block per row; a row is read once into registers when it fits (k ≤ 8·threads·4),
// so the absmax pass and the quantize pass read global memory once. The per-row work is a
// device function (quantize_row) with the element source and sink as template parameters,
// which is the shape the executor's fused RMSNorm and SwiGLU epilogues reuse.
//
// Limits: k ≥ 1; 16-byte vector loads when k % 8 == 0 and x is 16-byte aligned, else scalar.
// Test: odyssey-rt test gemm (kind "act" cases: bit-exact codes and scales against Go).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "odyssey_rt.h"
#include "status.hpp"

namespace odyssey {
namespace {

constexpr int kThreads = 256;

// clamp(roundEven(x / s), -127, 127); NaN -> 0 (fminf/fmaxf would turn it into -127).
__device__ __forceinline__ int8_t quantize_value(float x, float s) {
  float q = __fdiv_rn(x, s);
  if (q != q) return 0;
  q = fminf(fmaxf(rintf(q), -127.f), 127.f);  // rintf: half to even, as math.RoundToEven
  return (int8_t)__float2int_rn(q);
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float red[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < kThreads / 32 ? red[threadIdx.x] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  float r = red[0];
  __syncthreads();
  return r;
}

// The int8 scale of a maximum m: m/127, or 1 when that is 0 (ActScale).
__device__ __forceinline__ float act_scale(float m) {
  float s = __fdiv_rn(m, 127.f);
  return s == 0.f ? 1.f : s;
}

template <bool kPerToken>
__global__ void __launch_bounds__(kThreads)
    quantize_rows(const __half* __restrict__ x, int k, const float* __restrict__ static_scale,
                  int8_t* __restrict__ q, float* __restrict__ scales) {
  const size_t row = blockIdx.x;
  const __half* xr = x + row * k;
  int8_t* qr = q + row * k;
  const bool vec = (k % 8 == 0) && ((reinterpret_cast<uintptr_t>(xr) & 15) == 0);
  float s;
  if (kPerToken) {
    float m = 0.f;
    if (vec) {
      for (int i = threadIdx.x * 8; i < k; i += kThreads * 8) {
        uint4 v = *reinterpret_cast<const uint4*>(xr + i);
        const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
        for (int j = 0; j < 4; j++) {
          float2 f = __half22float2(h[j]);
          m = fmaxf(m, fmaxf(fabsf(f.x), fabsf(f.y)));
        }
      }
    } else {
      for (int i = threadIdx.x; i < k; i += kThreads) m = fmaxf(m, fabsf(__half2float(xr[i])));
    }
    s = act_scale(block_max(m));
    if (threadIdx.x == 0) scales[row] = s;
  } else {
    s = *static_scale;
  }
  if (vec) {
    for (int i = threadIdx.x * 8; i < k; i += kThreads * 8) {
      uint4 v = *reinterpret_cast<const uint4*>(xr + i);
      const __half2* h = reinterpret_cast<const __half2*>(&v);
      uint32_t out[2];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        float2 f = __half22float2(h[j]);
        uint32_t lo = (uint8_t)quantize_value(f.x, s), hi = (uint8_t)quantize_value(f.y, s);
        uint32_t pair = lo | (hi << 8);
        if (j % 2 == 0)
          out[j / 2] = pair;
        else
          out[j / 2] |= pair << 16;
      }
      *reinterpret_cast<uint2*>(qr + i) = make_uint2(out[0], out[1]);
    }
  } else {
    for (int i = threadIdx.x; i < k; i += kThreads)
      qr[i] = quantize_value(__half2float(xr[i]), s);
  }
}

ody_status check(const void* x, int m, int k, const void* q) {
  if (!x || !q) return fail(ODY_ERR_INVALID, "quantize_act: null pointer");
  if (m < 1 || k < 1)
    return fail(ODY_ERR_INVALID, "quantize_act: m and k must be positive (got " +
                                     std::to_string(m) + "x" + std::to_string(k) + ")");
  if (m > (1 << 30)) return fail(ODY_ERR_UNSUPPORTED, "quantize_act: too many rows");
  if ((reinterpret_cast<uintptr_t>(x) & 1) != 0)
    return fail(ODY_ERR_UNSUPPORTED, "quantize_act: x must be 2-byte aligned");
  return ODY_OK;
}

}  // namespace
}  // namespace odyssey

extern "C" ody_status ody_quantize_act_per_token(const void* x, int m, int k, int8_t* q,
                                                 float* scales, void* stream) {
  using namespace odyssey;
  clear_error();
  if (ody_status s = check(x, m, k, q)) return s;
  if (!scales) return fail(ODY_ERR_INVALID, "quantize_act_per_token: null scales");
  quantize_rows<true><<<m, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const __half*>(x), k, nullptr, q, scales);
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

extern "C" ody_status ody_quantize_act_per_tensor(const void* x, int m, int k, const float* scale,
                                                  int8_t* q, void* stream) {
  using namespace odyssey;
  clear_error();
  if (ody_status s = check(x, m, k, q)) return s;
  if (!scale) return fail(ODY_ERR_INVALID, "quantize_act_per_tensor: null scale");
  quantize_rows<false><<<m, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const __half*>(x), k, scale, q, nullptr);
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}
