// flashcomm.cu: Flash Communication, the compressed tensor-parallel all-reduce: the codec
// kernels (quantize, dequantize-sum-requantize, dequantize with an optional residual add), the
// NCCL all-reduce built on them, and a one-GPU simulation of N ranks.
//
// What it computes: docs/flash-communication.md, operation by operation, bit-exact with the Go
// reference quant.FlashComm (EncodeChunk / DecodeChunk / AllReduceRanks):
//   asymmetric: lo = min v, hi = max v (first of equal values wins), s = (hi − lo) / (2^b − 1),
//               s = 1 if s == 0, q = min(rint((v − lo) / s), 2^b − 1); v' = (q·s) + lo;
//   symmetric:  a = max|v|, s = a / (2^(b−1) − 1), s = 1 if s == 0,
//               q = clamp(rint(v / s), ±(2^(b−1) − 1)); v' = q·s;
//   step 3:     acc = +0.0f; acc = acc + v'_i for i = 0..N−1 (rank order); requantize acc.
// Every operation is one IEEE binary32 operation rounded to nearest even: __fsub_rn, __fdiv_rn,
// __fmul_rn, __fadd_rn, rintf (half to even). The intrinsics are never contracted into an FMA;
// the build also compiles this file with -fmad=false -ftz=false -prec-div=true (CMakeLists.txt),
// and it must never see --use_fast_math.
//
// Layout: the wire format of the spec ("What travels"): per message (one chunk of rows × C
// values) the codes row-major (INT8 one byte each, INT4 two per byte with the even column in the
// low nibble; two's complement when symmetric), then the float32 scales of every group
// (row-major), then for asymmetric groups the float32 minima. A buffer of messages holds
// message j at j·slot, slot = message bytes rounded up to 16.
//
// Shape of the kernels: version 2 (the default, "kernels, version 2" below: grid-stride warps
// over tiles of 32 values per lane, several groups per warp, exact float tricks instead of
// int/float conversions) and version 1 (one thread per 8 values, kept for A/B runs:
// ody_fc_set_kernels). Both compute the same bits.
//
// Limits: bits 4 or 8; G a power of two in 8..256 (the spec allows any multiple of 8; groups like
// 24 or 48 are refused with ODY_ERR_UNSUPPORTED); width = ranks·C with G | C; fewer than 2^35
// values per call; x, y, residual and message buffers 16-byte aligned.
//
// Test: odyssey testdata codec-cases --out DIR, then odyssey-rt test codec --cases DIR (every
// case through ody_allreduce_sim: the wire bytes after step 1 and step 3 and every rank's output
// compared bit for bit with Go; docs/codec-cases.md). Speed: odyssey-rt bench codec, and
// odyssey-rt bench allreduce under runtime/scripts/launch-allreduce.sh (ODYSSEY_WITH_NCCL).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "odyssey_rt.h"
#include "status.hpp"

#ifdef ODYSSEY_WITH_NCCL
#include <nccl.h>
#endif

namespace odyssey {
namespace {

constexpr int kThreads = 256;

struct Geometry {
  int bits, group, tpg;  // tpg: threads per group (G/8)
  bool sym;
  size_t rows, cols;       // one message: rows × cols values (cols = C)
  size_t ngroups;          // groups per message: rows·C/G
  size_t code_bytes;       // rows·C·bits/8
};

__host__ __device__ inline Geometry geometry(size_t rows, size_t cols, int bits, int group, bool sym) {
  Geometry g;
  g.bits = bits;
  g.group = group;
  g.tpg = group / 8;
  g.sym = sym;
  g.rows = rows;
  g.cols = cols;
  g.ngroups = rows * (cols / group);
  g.code_bytes = rows * cols * bits / 8;
  return g;
}

size_t message_bytes(const Geometry& g) { return g.code_bytes + g.ngroups * (g.sym ? 4 : 8); }
size_t slot_bytes(const Geometry& g) { return (message_bytes(g) + 15) / 16 * 16; }

// ---------------------------------------------------------------- element loads and stores

template <class T>
struct Elem;
template <>
struct Elem<float> {
  __device__ static void load8(const float* p, float v[8]) {
    float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
  __device__ static void store8(float* p, const float v[8]) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
};
template <>
struct Elem<__half> {
  __device__ static void load8(const __half* p, float v[8]) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float2 f = __half22float2(h[j]);  // exact
      v[2 * j] = f.x, v[2 * j + 1] = f.y;
    }
  }
  __device__ static void store8(__half* p, const float v[8]) {
    uint4 u;
    __half* h = reinterpret_cast<__half*>(&u);
#pragma unroll
    for (int j = 0; j < 8; j++) h[j] = __float2half_rn(v[j]);
    *reinterpret_cast<uint4*>(p) = u;
  }
};
template <>
struct Elem<__nv_bfloat16> {
  __device__ static void load8(const __nv_bfloat16* p, float v[8]) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&u);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = __bfloat162float(h[j]);  // exact
  }
  __device__ static void store8(__nv_bfloat16* p, const float v[8]) {
    uint4 u;
    __nv_bfloat16* h = reinterpret_cast<__nv_bfloat16*>(&u);
#pragma unroll
    for (int j = 0; j < 8; j++) h[j] = __float2bfloat16_rn(v[j]);
    *reinterpret_cast<uint4*>(p) = u;
  }
};

// ---------------------------------------------------------------- the codec of one group

// Butterfly combination over the tpg lanes of a group (tpg a power of two ≤ 32). Every lane of
// the warp executes the shuffles (inactive lanes carry dummy values), so the full mask is right.
__device__ __forceinline__ int group_or(int x, int tpg) {
  for (int o = 1; o < tpg; o <<= 1) x |= __shfl_xor_sync(0xffffffffu, x, o, tpg);
  return x;
}
__device__ __forceinline__ float group_max(float x, int tpg) {
  for (int o = 1; o < tpg; o <<= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o, tpg));
  return x;
}
// Minimum (kMin) or maximum with the index of its first occurrence: the result of the spec's
// first-to-last scan with strict comparisons (among values comparing equal, i.e. ±0, the first
// one wins). (value, index) ordered lexicographically is a total order, so the tree is exact.
template <bool kMin>
__device__ __forceinline__ float group_extreme(float v, int idx, int tpg) {
  for (int o = 1; o < tpg; o <<= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o, tpg);
    int oi = __shfl_xor_sync(0xffffffffu, idx, o, tpg);
    bool take = kMin ? (ov < v || (ov == v && oi < idx)) : (ov > v || (ov == v && oi < idx));
    if (take) v = ov, idx = oi;
  }
  return v;
}

// Quantizes the group whose 8 values at lane `sub` are v and writes its codes, scale and minimum
// into the message `msg` as its group gi. bad: this lane holds an out-of-domain value.
__device__ void quantize_group(const float v[8], bool bad, int sub, const Geometry& g, size_t gi, uint8_t* msg,
                               bool active, int* flag, int flag_bit) {
  const int tpg = g.tpg;
  bad = group_or(bad ? 1 : 0, tpg) != 0;
  float s, lo = 0.f;
  uint32_t packed_lo = 0, packed_hi = 0;  // INT4: packed_lo only; INT8: both words
  if (g.sym) {
    const float qs = (float)((1 << (g.bits - 1)) - 1);
    float a = 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++) a = fmaxf(a, fabsf(v[k]));
    a = group_max(a, tpg);
    s = __fdiv_rn(a, qs);
    if (s == 0.f) s = 1.f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
      float q = fminf(fmaxf(rintf(__fdiv_rn(v[k], s)), -qs), qs);
      uint32_t c = (uint32_t)(int)q;
      if (g.bits == 4)
        packed_lo |= (c & 0xfu) << (4 * k);
      else if (k < 4)
        packed_lo |= (c & 0xffu) << (8 * k);
      else
        packed_hi |= (c & 0xffu) << (8 * (k - 4));
    }
  } else {
    const float qa = (float)((1 << g.bits) - 1);
    float mn = v[0], mx = v[0];
    int mni = 0, mxi = 0;
#pragma unroll
    for (int k = 1; k < 8; k++) {
      if (v[k] < mn) mn = v[k], mni = k;
      if (v[k] > mx) mx = v[k], mxi = k;
    }
    lo = group_extreme<true>(mn, sub * 8 + mni, tpg);
    const float hi = group_extreme<false>(mx, sub * 8 + mxi, tpg);
    s = __fdiv_rn(__fsub_rn(hi, lo), qa);
    if (s == 0.f) s = 1.f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
      float q = fminf(rintf(__fdiv_rn(__fsub_rn(v[k], lo), s)), qa);  // ≥ 0: no lower clamp
      uint32_t c = (uint32_t)(int)q;
      if (g.bits == 4)
        packed_lo |= c << (4 * k);
      else if (k < 4)
        packed_lo |= c << (8 * k);
      else
        packed_hi |= c << (8 * (k - 4));
    }
  }
  if (bad) {  // meaningless codes: send zeros with a NaN scale and minimum, and raise the flag
    packed_lo = packed_hi = 0;
    s = lo = __int_as_float(0x7fc00000);
  }
  if (!active) return;
  if (g.bits == 4) {
    *reinterpret_cast<uint32_t*>(msg + gi * (size_t)g.group / 2 + sub * 4) = packed_lo;
  } else {
    *reinterpret_cast<uint2*>(msg + gi * (size_t)g.group + sub * 8) = make_uint2(packed_lo, packed_hi);
  }
  if (sub == 0) {
    float* meta = reinterpret_cast<float*>(msg + g.code_bytes);
    meta[gi] = s;
    if (!g.sym) meta[g.ngroups + gi] = lo;
    if (bad && flag) atomicOr(flag, flag_bit);
  }
}

// Decodes the 8 values of lane `sub` of group gi of msg: (q·s) + lo, or q·s when symmetric.
__device__ __forceinline__ void dequantize_group(const uint8_t* msg, const Geometry& g, size_t gi, int sub,
                                                 float v[8]) {
  const float* meta = reinterpret_cast<const float*>(msg + g.code_bytes);
  const float s = meta[gi];
  const float lo = g.sym ? 0.f : meta[g.ngroups + gi];
  int code[8];
  if (g.bits == 4) {
    uint32_t w = *reinterpret_cast<const uint32_t*>(msg + gi * (size_t)g.group / 2 + sub * 4);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      uint32_t nib = (w >> (4 * k)) & 0xfu;
      code[k] = g.sym ? ((int)(nib << 28) >> 28) : (int)nib;
    }
  } else {
    uint2 w = *reinterpret_cast<const uint2*>(msg + gi * (size_t)g.group + sub * 8);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      uint32_t b = ((k < 4 ? w.x : w.y) >> (8 * (k & 3))) & 0xffu;
      code[k] = g.sym ? (int)(int8_t)b : (int)b;
    }
  }
#pragma unroll
  for (int k = 0; k < 8; k++) {
    float p = __fmul_rn((float)code[k], s);
    v[k] = g.sym ? p : __fadd_rn(p, lo);  // no +0.0 for symmetric groups: keeps −0.0
  }
}

// The message group, and the value offset in a [rows, width] tensor, of thread unit u.
struct Place {
  size_t chunk, gi, offset;
  int sub;
};
__device__ __forceinline__ Place place(size_t u, const Geometry& g, size_t width) {
  Place p;
  const size_t gid = u / g.tpg;
  p.sub = (int)(u % g.tpg);
  const size_t gpr = width / g.group, gpc = g.cols / g.group;
  const size_t r = gid / gpr, gc = gid % gpr;
  p.chunk = gc / gpc;
  p.gi = r * gpc + gc % gpc;
  p.offset = r * width + gc * g.group + (size_t)p.sub * 8;
  return p;
}

// ---------------------------------------------------------------- kernels, version 1

// Step 1: x [rows, width] → ranks messages at msgs + j·slot.
template <class T>
__global__ void __launch_bounds__(kThreads)
    fc_quantize(const T* __restrict__ x, Geometry g, size_t width, size_t units, uint8_t* __restrict__ msgs,
                size_t slot, int* flag) {
  const size_t u = (size_t)blockIdx.x * kThreads + threadIdx.x;
  const bool active = u < units;
  float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Place p = place(active ? u : 0, g, width);
  bool bad = false;
  if (active) {
    Elem<T>::load8(x + p.offset, v);
#pragma unroll
    for (int k = 0; k < 8; k++) bad |= !(fabsf(v[k]) <= 0x1p64f);  // NaN, ±Inf, beyond 2^64
  }
  quantize_group(v, bad, p.sub, g, p.gi, msgs + p.chunk * slot, active, flag, ODY_FC_BAD_INPUT);
}

// Step 3: the ranks messages at recv + i·slot → one requantized message at out.
__global__ void __launch_bounds__(kThreads)
    fc_reduce(const uint8_t* __restrict__ recv, int ranks, Geometry g, size_t units, size_t slot,
              uint8_t* __restrict__ out, int* flag) {
  const size_t u = (size_t)blockIdx.x * kThreads + threadIdx.x;
  const bool active = u < units;
  const size_t gi = (active ? u : 0) / g.tpg;
  const int sub = (int)((active ? u : 0) % g.tpg);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // +0.0f
  bool bad = false;
  if (active) {
    for (int i = 0; i < ranks; i++) {  // rank order
      float d[8];
      dequantize_group(recv + (size_t)i * slot, g, gi, sub, d);
#pragma unroll
      for (int k = 0; k < 8; k++) acc[k] = __fadd_rn(acc[k], d[k]);
    }
#pragma unroll
    for (int k = 0; k < 8; k++) bad |= !(fabsf(acc[k]) <= 3.402823466e38f);  // not finite
  }
  quantize_group(acc, bad, sub, g, gi, out, active, flag, ODY_FC_BAD_SUM);
}

// Step 5: ranks messages at recv + j·slot → y [rows, width] (+ residual).
template <class T>
__global__ void __launch_bounds__(kThreads)
    fc_dequantize(const uint8_t* __restrict__ recv, Geometry g, size_t width, size_t units, size_t slot,
                  const T* residual, T* y) {
  const size_t u = (size_t)blockIdx.x * kThreads + threadIdx.x;
  if (u >= units) return;  // no shuffles here
  Place p = place(u, g, width);
  float v[8];
  dequantize_group(recv + p.chunk * slot, g, p.gi, p.sub, v);
  if (residual) {
    float r[8];
    Elem<T>::load8(residual + p.offset, r);
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = __fadd_rn(r[k], v[k]);
  }
  Elem<T>::store8(y + p.offset, v);
}

// ---------------------------------------------------------------- kernels, version 2 (default)
//
// Why a second set: the version-1 kernels above (one thread per 8 values, a thread per unit)
// ran at 22–59% of the copy bandwidth on the H200 (runtime/NOTES.md). They were issue-bound, not
// memory-bound: four 64-bit divisions per 8 values to place a thread (a 64-bit division is a
// software routine of tens of instructions), int↔float conversions at a quarter of the FP32
// rate (I2F/F2I, 16 per clock per SM on sm_90) for every code, twice as many shuffles as needed
// (value and index), and 16 bytes in flight per thread. Version 2 keeps every float32 operation
// of the spec in the same order and changes only how values reach the registers:
//
// - a warp works on tiles of 32 lanes × 32 values, grid-stride over the tensor (the grid is one
//   wave of resident blocks); a lane holds 32 values of one to four groups, so that 4 (quantize)
//   or 4×16 bytes per rank batch (reduce) are in flight per thread;
// - a group is spread over L lanes (L ≥ 2 when the group has two pieces or more, so that every
//   load instruction reads whole 32-byte sectors); a lane holds pieces sub, sub + L, sub + 2L...
//   of its group; min/max/max|v| combine pieces in registers and lanes with log2(L) butterfly
//   shuffles, NaN-propagating (min.NaN/max.NaN, sm_80+), so that one comparison against the
//   domain bound replaces a per-value check;
// - the first-of-equal tie rule only matters for ±0 (the only distinct values that compare
//   equal): when a group's min or max is zero, a rare warp-uniform path finds the group's first
//   zero by position and takes its sign;
// - rint, clamp and the code extraction use the exact float trick t + 2^23 (t + 1.5·2^23 when
//   symmetric): for |t| < 2^22 the sum lies in [2^23, 2^24), where the float spacing is 1, so
//   the round-to-nearest-even addition is exactly 2^23 + rint(t) (ties to even alike), and its
//   low mantissa bits are the two's-complement code; decoding builds 2^23 + c with a byte
//   permute and subtracts 2^23 (exact). Both replace the quarter-rate conversions; the mapping
//   was checked against the version-1 chain (rintf, fminf/fmaxf, int conversion) for every
//   float32 t (runtime/tests/test_fc_tricks.cpp);
// - the tensor → (chunk, group) placement divides 32-bit indices by run-time constants with a
//   multiply-high (FastDiv), once per group or per 8 values, never in 64 bits.
//
// The division (v − lo)/s stays one IEEE division per value (__fdiv_rn, div.rn.f32: a
// reciprocal on the MUFU pipe, Newton steps in FFMA and a range check), as bit-exactness with Go
// requires: a multiplication by a reciprocal rounds differently. It costs about 8 issue slots
// of the ~16 per value of quantize; at 80% of the H200's copy bandwidth quantize has about twice
// the issue slots it needs, so it is not the limit there (the INT4 reduce over 8 ranks, ~55
// slots per value for 0.6 bytes per rank and value, is the stage closest to issue-bound).

constexpr int kWarps = kThreads / 32;

// NaN-propagating min/max (PTX min.NaN, sm_80+): a NaN anywhere in a group comes out of the
// reduction, so that one comparison of the extremes with the domain bound catches NaN too.
__device__ __forceinline__ float min_nan(float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  float r;
  asm("min.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return (a != a || b != b) ? __int_as_float(0x7fc00000) : fminf(a, b);
#endif
}
__device__ __forceinline__ float max_nan(float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b);
#endif
}

// n / d for 32-bit n and a run-time constant d ≥ 1 (Granlund–Montgomery, round-up multiplier):
// l = ceil(log2 d), m = floor(2^32·(2^l − d)/d) + 1, n/d = (n + mulhi(n, m)) >> l, exact for
// every 32-bit n (runtime/tests/test_fc_tricks.cpp checks it).
struct FastDiv {
  uint32_t d, m;
  int l;
};
FastDiv fast_div(uint32_t d) {
  FastDiv f;
  f.d = d;
  f.l = 0;
  while ((1ull << f.l) < d) f.l++;
  f.m = (uint32_t)(((1ull << 32) * ((1ull << f.l) - d)) / d + 1);
  return f;
}
__device__ __forceinline__ uint32_t div_fast(uint32_t n, const FastDiv& f) {
  return (uint32_t)(((uint64_t)__umulhi(n, f.m) + n) >> f.l);
}

// Placement of a tensor group g (G consecutive values of [rows, width]) in the messages.
struct Placement {
  FastDiv gpr, gpc;  // groups per row (width/G), groups per chunk row (C/G)
};
__device__ __forceinline__ void place_group(uint32_t g, const Placement& p, uint32_t* chunk, uint32_t* gi) {
  const uint32_t r = div_fast(g, p.gpr), gc = g - r * p.gpr.d;
  const uint32_t j = div_fast(gc, p.gpc);
  *chunk = j;
  *gi = r * p.gpc.d + (gc - j * p.gpc.d);
}

// 4 codes (the low byte of each word) into one word, code 0 in the low byte.
__device__ __forceinline__ uint32_t pack4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

// Code c as a float, exactly, from 2^23 + c (byte k of w, or w's byte k already offset).
template <int K>
__device__ __forceinline__ float byte_as_float(uint32_t w, float bias) {
  return __fsub_rn(__int_as_float(__byte_perm(w, 0x4B000000u, 0x7540 | K)), bias);
}

// The codec on 32 values per lane. PV values per piece, a lane holds 32/PV pieces; PPL of them
// belong to one group, so a lane holds GPL = 32/(PV·PPL) groups (slot k: pieces k·PPL..+PPL).
// Within its group a lane (index sub among the group's L lanes) holds pieces sub + L·m.
template <int BITS, bool SYM, int PV, int PPL>
struct Lane {
  static constexpr int NPL = 32 / PV;
  static constexpr int GPL = NPL / PPL;
  static constexpr int WPP = PV * BITS / 32;  // code words per piece: 1, 2 or 4
  static constexpr int kBits = BITS, kPV = PV, kPPL = PPL;
  static constexpr bool kSym = SYM;
  static constexpr float kQ = SYM ? (float)((1 << (BITS - 1)) - 1) : (float)((1 << BITS) - 1);
  // 2^23 for asymmetric codes (t ≥ 0); 1.5·2^23 for symmetric ones (|t| < 2^22 either side).
  static constexpr float kBias = SYM ? 12582912.0f : 8388608.0f;

  // Quantizes the lane's values v (group slot k active when act[k]): codes[j][w] (piece j),
  // scale s[k], minimum lo[k] (asymmetric), bad[k]: out of domain (|v| > limit, NaN, Inf), in
  // which case codes are 0 and s, lo NaN. Every lane of the warp must call it (shuffles).
  __device__ __forceinline__ static void encode(const float (&v)[32], int L, int sub, float limit,
                                                uint32_t (&codes)[NPL][WPP], float (&s)[GPL], float (&lo)[GPL],
                                                bool (&bad)[GPL]) {
    float a[GPL], b[GPL];  // asymmetric: min, max; symmetric: a = max|v|
#pragma unroll
    for (int k = 0; k < GPL; k++) {
      a[k] = SYM ? 0.f : v[k * PPL * PV];
      b[k] = a[k];
#pragma unroll
      for (int e = 0; e < PPL * PV; e++) {
        const float x = v[k * PPL * PV + e];
        if (SYM) {
          a[k] = max_nan(a[k], fabsf(x));
        } else {
          a[k] = min_nan(a[k], x);
          b[k] = max_nan(b[k], x);
        }
      }
    }
    for (int o = 1; o < L; o <<= 1) {
#pragma unroll
      for (int k = 0; k < GPL; k++) {
        if (SYM) {
          a[k] = max_nan(a[k], __shfl_xor_sync(0xffffffffu, a[k], o));
        } else {
          a[k] = min_nan(a[k], __shfl_xor_sync(0xffffffffu, a[k], o));
          b[k] = max_nan(b[k], __shfl_xor_sync(0xffffffffu, b[k], o));
        }
      }
    }
    if (!SYM) {
      // The spec's scan keeps the first of equal values: for a zero extreme, the sign of the
      // group's first zero. key = position·2 + sign bit, smallest over the group.
      bool zero = false;
#pragma unroll
      for (int k = 0; k < GPL; k++) zero |= (a[k] == 0.f) | (b[k] == 0.f);
      if (__any_sync(0xffffffffu, zero)) {
        uint32_t key[GPL];
#pragma unroll
        for (int k = 0; k < GPL; k++) {
          key[k] = 0xffffffffu;
#pragma unroll
          for (int m = 0; m < PPL; m++)
#pragma unroll
            for (int e = 0; e < PV; e++) {
              const float x = v[(k * PPL + m) * PV + e];
              const uint32_t pos = (uint32_t)(PV * (sub + L * m) + e);
              if (x == 0.f) key[k] = min(key[k], pos * 2 + (__float_as_uint(x) >> 31));
            }
        }
        for (int o = 1; o < L; o <<= 1)
#pragma unroll
          for (int k = 0; k < GPL; k++) key[k] = min(key[k], __shfl_xor_sync(0xffffffffu, key[k], o));
#pragma unroll
        for (int k = 0; k < GPL; k++) {
          const float z = (key[k] & 1u) ? -0.f : 0.f;
          if (a[k] == 0.f) a[k] = z;
          if (b[k] == 0.f) b[k] = z;
        }
      }
    }
#pragma unroll
    for (int k = 0; k < GPL; k++) {
      if (SYM) {
        bad[k] = !(a[k] <= limit);
        s[k] = __fdiv_rn(a[k], kQ);
        lo[k] = 0.f;
      } else {
        bad[k] = !(a[k] >= -limit && b[k] <= limit);
        s[k] = __fdiv_rn(__fsub_rn(b[k], a[k]), kQ);
        lo[k] = a[k];
      }
      if (s[k] == 0.f) s[k] = 1.f;
    }
#pragma unroll
    for (int j = 0; j < NPL; j++) {
      const int k = j / PPL;
      uint32_t c[PV];  // bits of kBias + code: the code in the low bits
#pragma unroll
      for (int e = 0; e < PV; e++) {
        const float x = v[j * PV + e];
        float f;
        if (SYM) {
          f = __fadd_rn(__fdiv_rn(x, s[k]), kBias);
          f = fminf(fmaxf(f, kBias - kQ), kBias + kQ);
        } else {
          f = fminf(__fadd_rn(__fdiv_rn(__fsub_rn(x, lo[k]), s[k]), kBias), kBias + kQ);  // t ≥ 0
        }
        c[e] = __float_as_uint(f);
      }
#pragma unroll
      for (int w = 0; w < WPP; w++) {
        uint32_t word;
        if (BITS == 8) {
          word = pack4(c[4 * w], c[4 * w + 1], c[4 * w + 2], c[4 * w + 3]);
        } else {
          const uint32_t even = pack4(c[8 * w], c[8 * w + 2], c[8 * w + 4], c[8 * w + 6]);
          const uint32_t odd = pack4(c[8 * w + 1], c[8 * w + 3], c[8 * w + 5], c[8 * w + 7]);
          word = (even & 0x0f0f0f0fu) | ((odd << 4) & 0xf0f0f0f0u);
        }
        codes[j][w] = bad[k] ? 0u : word;
      }
    }
#pragma unroll
    for (int k = 0; k < GPL; k++)
      if (bad[k]) s[k] = lo[k] = __int_as_float(0x7fc00000);
  }

  // Decodes the PV codes of one piece (WPP words): out[e] = code·s (+ lo).
  __device__ __forceinline__ static void decode(const uint32_t (&w)[WPP], float s, float lo, float* out) {
#pragma unroll
    for (int i = 0; i < WPP; i++) {
      float c[BITS == 8 ? 4 : 8];
      if (BITS == 8) {
        const uint32_t x = SYM ? (w[i] ^ 0x80808080u) : w[i];  // signed: code + 128
        const float bias = SYM ? 8388736.0f : 8388608.0f;
        c[0] = byte_as_float<0>(x, bias);
        c[1] = byte_as_float<1>(x, bias);
        c[2] = byte_as_float<2>(x, bias);
        c[3] = byte_as_float<3>(x, bias);
      } else {
        const uint32_t x = SYM ? (w[i] ^ 0x88888888u) : w[i];  // signed: code + 8
        const uint32_t even = x & 0x0f0f0f0fu, odd = (x >> 4) & 0x0f0f0f0fu;
        const float bias = SYM ? 8388616.0f : 8388608.0f;
        c[0] = byte_as_float<0>(even, bias);
        c[1] = byte_as_float<0>(odd, bias);
        c[2] = byte_as_float<1>(even, bias);
        c[3] = byte_as_float<1>(odd, bias);
        c[4] = byte_as_float<2>(even, bias);
        c[5] = byte_as_float<2>(odd, bias);
        c[6] = byte_as_float<3>(even, bias);
        c[7] = byte_as_float<3>(odd, bias);
      }
      constexpr int n = BITS == 8 ? 4 : 8;
#pragma unroll
      for (int e = 0; e < n; e++) {
        const float p = __fmul_rn(c[e], s);
        out[i * n + e] = SYM ? p : __fadd_rn(p, lo);  // no +0.0 for symmetric groups: keeps −0.0
      }
    }
  }
};

template <int N>
struct Words;
template <>
struct Words<1> {
  __device__ static void load(const uint8_t* p, uint32_t (&w)[1]) { w[0] = *reinterpret_cast<const uint32_t*>(p); }
  __device__ static void store(uint8_t* p, const uint32_t (&w)[1]) { *reinterpret_cast<uint32_t*>(p) = w[0]; }
};
template <>
struct Words<2> {
  __device__ static void load(const uint8_t* p, uint32_t (&w)[2]) {
    uint2 u = *reinterpret_cast<const uint2*>(p);
    w[0] = u.x, w[1] = u.y;
  }
  __device__ static void store(uint8_t* p, const uint32_t (&w)[2]) {
    *reinterpret_cast<uint2*>(p) = make_uint2(w[0], w[1]);
  }
};
template <>
struct Words<4> {
  __device__ static void load(const uint8_t* p, uint32_t (&w)[4]) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
  }
  __device__ static void store(uint8_t* p, const uint32_t (&w)[4]) {
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
  }
};

// Writes a lane's codes and its groups' metadata. msg[k], gi[k]: the message and group index
// of slot k; act[k]: the group exists.
template <class Ln>
__device__ __forceinline__ void store_lane(uint8_t* const (&msg)[Ln::GPL], const uint32_t (&gi)[Ln::GPL],
                                           const bool (&act)[Ln::GPL], const uint32_t (&codes)[Ln::NPL][Ln::WPP],
                                           const float (&s)[Ln::GPL], const float (&lo)[Ln::GPL],
                                           const bool (&bad)[Ln::GPL], int L, int sub, int G, size_t code_bytes,
                                           size_t ngroups, int* flag, int flag_bit) {
  constexpr int PPL = Ln::kPPL, PV = Ln::kPV, BITS = Ln::kBits;
#pragma unroll
  for (int j = 0; j < Ln::NPL; j++) {
    const int k = j / PPL, m = j % PPL;
    if (act[k])
      Words<Ln::WPP>::store(msg[k] + (size_t)gi[k] * G * BITS / 8 + (size_t)(sub + L * m) * PV * BITS / 8, codes[j]);
  }
#pragma unroll
  for (int k = 0; k < Ln::GPL; k++) {
    if (!act[k] || sub != 0) continue;
    float* meta = reinterpret_cast<float*>(msg[k] + code_bytes);
    meta[gi[k]] = s[k];
    if (!Ln::kSym) meta[ngroups + gi[k]] = lo[k];
    if (bad[k] && flag) atomicOr(flag, flag_bit);
  }
}

// Step 1: x [rows, width] → message chunk at msgs + chunk·slot. Tile: 32·GPL/L groups.
template <class T, int BITS, bool SYM, int PPL>
__global__ void __launch_bounds__(kThreads)
    fc2_quantize(const T* __restrict__ x, Geometry g, Placement pl, uint32_t ngroups_total, int L,
                 uint8_t* __restrict__ msgs, size_t slot, int* flag) {
  using Ln = Lane<BITS, SYM, 8, PPL>;
  const int lane = threadIdx.x & 31, sub = lane & (L - 1);
  const uint32_t per_tile = 32u * Ln::GPL / L;
  const uint32_t tiles = (ngroups_total + per_tile - 1) / per_tile;
  const uint32_t warp = blockIdx.x * kWarps + threadIdx.x / 32, nwarps = gridDim.x * kWarps;
  for (uint32_t t = warp; t < tiles; t += nwarps) {
    float v[32];
    bool act[Ln::GPL];
    uint32_t gid[Ln::GPL];
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) {
      gid[k] = t * per_tile + k * (32 / L) + lane / L;
      act[k] = gid[k] < ngroups_total;
    }
#pragma unroll
    for (int j = 0; j < Ln::NPL; j++) {
      const int k = j / PPL, m = j % PPL;
      if (act[k]) {
        Elem<T>::load8(x + (size_t)gid[k] * g.group + 8 * (sub + L * m), &v[8 * j]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) v[8 * j + e] = 1.f;  // no zero: keeps the rare path rare
      }
    }
    uint32_t codes[Ln::NPL][Ln::WPP];
    float s[Ln::GPL], lo[Ln::GPL];
    bool bad[Ln::GPL];
    Ln::encode(v, L, sub, 0x1p64f, codes, s, lo, bad);
    uint8_t* msg[Ln::GPL];
    uint32_t gi[Ln::GPL];
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) {
      uint32_t chunk = 0;
      gi[k] = 0;
      if (act[k]) place_group(gid[k], pl, &chunk, &gi[k]);
      msg[k] = msgs + chunk * slot;
    }
    store_lane<Ln>(msg, gi, act, codes, s, lo, bad, L, sub, g.group, g.code_bytes, g.ngroups, flag,
                   ODY_FC_BAD_INPUT);
  }
}

// Step 3: the ranks messages at recv + i·slot → one requantized message at out. The lane's
// codes of 4 ranks are loaded before any is decoded (4 × 16 bytes in flight per thread).
#ifndef ODY_FC_REDUCE_BLOCKS
#define ODY_FC_REDUCE_BLOCKS 2
#endif
constexpr int kReduceBlocks = ODY_FC_REDUCE_BLOCKS;
template <int BITS, bool SYM, int PV, int PPL>
__global__ void __launch_bounds__(kThreads, kReduceBlocks)
    fc2_reduce(const uint8_t* __restrict__ recv, int ranks, Geometry g, int L, size_t slot,
               uint8_t* __restrict__ out, int* flag) {
  using Ln = Lane<BITS, SYM, PV, PPL>;
  constexpr int kBatch = 4;
  const int lane = threadIdx.x & 31, sub = lane & (L - 1);
  const uint32_t ngroups = (uint32_t)g.ngroups;
  const uint32_t per_tile = 32u * Ln::GPL / L;
  const uint32_t tiles = (ngroups + per_tile - 1) / per_tile;
  const uint32_t warp = blockIdx.x * kWarps + threadIdx.x / 32, nwarps = gridDim.x * kWarps;
  const size_t group_bytes = (size_t)g.group * BITS / 8, piece_bytes = PV * BITS / 8;
  for (uint32_t t = warp; t < tiles; t += nwarps) {
    bool act[Ln::GPL];
    uint32_t gi[Ln::GPL];
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) {
      gi[k] = t * per_tile + k * (32 / L) + lane / L;
      act[k] = gi[k] < ngroups;
    }
    float acc[32];
#pragma unroll
    for (int e = 0; e < 32; e++) acc[e] = 0.f;  // +0.0f
    for (int i0 = 0; i0 < ranks; i0 += kBatch) {
      uint32_t w[kBatch][Ln::NPL][Ln::WPP];
      float s[kBatch][Ln::GPL], lo[kBatch][Ln::GPL];
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        const uint8_t* msg = recv + (size_t)(i0 + b) * slot;
        const float* meta = reinterpret_cast<const float*>(msg + g.code_bytes);
#pragma unroll
        for (int j = 0; j < Ln::NPL; j++) {
          const int k = j / PPL, m = j % PPL;
          if (act[k] && i0 + b < ranks)
            Words<Ln::WPP>::load(msg + gi[k] * group_bytes + (size_t)(sub + L * m) * piece_bytes, w[b][j]);
          else
#pragma unroll
            for (int q = 0; q < Ln::WPP; q++) w[b][j][q] = 0;
        }
#pragma unroll
        for (int k = 0; k < Ln::GPL; k++) {
          const bool ok = act[k] && i0 + b < ranks;
          s[b][k] = ok ? meta[gi[k]] : 1.f;
          lo[b][k] = ok && !SYM ? meta[g.ngroups + gi[k]] : 1.f;
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        if (i0 + b >= ranks) break;  // rank order: i0, i0+1, ...
#pragma unroll
        for (int j = 0; j < Ln::NPL; j++) {
          float d[PV];
          Ln::decode(w[b][j], s[b][j / PPL], lo[b][j / PPL], d);
#pragma unroll
          for (int e = 0; e < PV; e++) acc[j * PV + e] = __fadd_rn(acc[j * PV + e], d[e]);
        }
      }
    }
    uint32_t codes[Ln::NPL][Ln::WPP];
    float s[Ln::GPL], lo[Ln::GPL];
    bool bad[Ln::GPL];
    Ln::encode(acc, L, sub, 3.402823466e38f, codes, s, lo, bad);  // not finite: bad
    uint8_t* msg[Ln::GPL];
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) msg[k] = out;
    store_lane<Ln>(msg, gi, act, codes, s, lo, bad, L, sub, g.group, g.code_bytes, g.ngroups, flag,
                   ODY_FC_BAD_SUM);
  }
}

// Step 5: ranks messages at recv + j·slot → y [rows, width] (+ residual). No group reductions:
// lane l of a warp takes pieces of 8 values l, l + 32, ... of the warp's span (every load and
// store instruction contiguous), each placed on its own with two FastDivs.
template <class T, int BITS, bool SYM>
__global__ void __launch_bounds__(kThreads)
    fc2_dequantize(const uint8_t* __restrict__ recv, Geometry g, Placement pl, uint32_t npieces, int log2_ppg,
                   size_t slot, const T* residual, T* y) {
  using Ln = Lane<BITS, SYM, 8, 1>;
  constexpr int kPieces = 8;  // per lane and iteration
  const int lane = threadIdx.x & 31;
  const uint32_t warp = blockIdx.x * kWarps + threadIdx.x / 32, nwarps = gridDim.x * kWarps;
  const uint32_t span = 32u * kPieces, spans = (npieces + span - 1) / span;
  for (uint32_t t = warp; t < spans; t += nwarps) {
    uint32_t w[kPieces][Ln::WPP];
    float s[kPieces], lo[kPieces];
#pragma unroll
    for (int j = 0; j < kPieces; j++) {
      const uint32_t p = t * span + j * 32 + lane;
      if (p < npieces) {
        uint32_t chunk, gi;
        place_group(p >> log2_ppg, pl, &chunk, &gi);
        const uint8_t* msg = recv + chunk * slot;
        const float* meta = reinterpret_cast<const float*>(msg + g.code_bytes);
        Words<Ln::WPP>::load(msg + ((size_t)gi * g.group + 8 * (p & ((1u << log2_ppg) - 1))) * BITS / 8, w[j]);
        s[j] = meta[gi];
        lo[j] = SYM ? 0.f : meta[g.ngroups + gi];
      }
    }
#pragma unroll
    for (int j = 0; j < kPieces; j++) {
      const uint32_t p = t * span + j * 32 + lane;
      if (p >= npieces) continue;
      float v[8];
      Ln::decode(w[j], s[j], lo[j], v);
      if (residual) {
        float r[8];
        Elem<T>::load8(residual + (size_t)p * 8, r);
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = __fadd_rn(r[e], v[e]);
      }
      Elem<T>::store8(y + (size_t)p * 8, v);
    }
  }
}

// ---------------------------------------------------------------- host side

unsigned grid_for(size_t units) { return (unsigned)((units + kThreads - 1) / kThreads); }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

ody_status check_codec(int bits, int group) {
  if (bits != 4 && bits != 8)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: bits " + std::to_string(bits) + ": want 4 or 8");
  if (group < 8 || group > 256 || (group & (group - 1)) != 0)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: group " + std::to_string(group) +
                                         ": this kernel does powers of two from 8 to 256");
  return ODY_OK;
}

ody_status check_shape(size_t rows, size_t width, int ranks, int dtype, int bits, int group) {
  if (ody_status s = check_codec(bits, group)) return s;
  if (dtype != ODY_DTYPE_F16 && dtype != ODY_DTYPE_BF16 && dtype != ODY_DTYPE_F32)
    return fail(ODY_ERR_INVALID, "flashcomm: dtype " + std::to_string(dtype) + ": want ODY_DTYPE_F16, _BF16 or _F32");
  if (ranks < 1 || ranks > 1024) return fail(ODY_ERR_INVALID, "flashcomm: ranks " + std::to_string(ranks));
  if (rows < 1 || width < 1) return fail(ODY_ERR_INVALID, "flashcomm: rows and width must be positive");
  if (width % (size_t)ranks != 0)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: width " + std::to_string(width) + " does not split into " +
                                         std::to_string(ranks) + " equal chunks");
  if ((width / ranks) % group != 0)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: group " + std::to_string(group) +
                                         " does not divide the per-rank chunk of " + std::to_string(width / ranks) +
                                         " values");
  // The kernels index pieces of 8 values with 32-bit integers: below 2^35 values (64 GiB of fp16).
  if (rows > ((size_t(1) << 35) - 1) / width)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: " + std::to_string(rows) + "×" + std::to_string(width) +
                                         " values: the kernels take fewer than 2^35 per call");
  return ODY_OK;
}

// Which kernels run: 2 (default) or 1, the first version kept for A/B runs of the benchmark and
// the tests (ody_fc_set_kernels).
std::atomic<int> g_kernels{2};

// Blocks for a grid-stride kernel: one wave of resident blocks (occupancy × SMs), or fewer when
// the work is smaller. Cached per device and kernel.
unsigned wave_grid(const void* kernel, size_t blocks_needed) {
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, unsigned> cache;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 1;
  unsigned wave = 0;
  {
    std::lock_guard<std::mutex> lk(mu);
    auto it = cache.find({dev, kernel});
    if (it != cache.end()) wave = it->second;
  }
  if (wave == 0) {
    int per_sm = 0, sms = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) != cudaSuccess || per_sm < 1)
      per_sm = 1;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1) sms = 1;
    wave = (unsigned)(per_sm * sms);
    std::lock_guard<std::mutex> lk(mu);
    cache[{dev, kernel}] = wave;
  }
  if (blocks_needed < 1) blocks_needed = 1;
  return (unsigned)std::min<size_t>(wave, blocks_needed);
}

// Lanes per group for pieces of PV values (L ≥ 2 when the group has two pieces, so that a load
// instruction covers whole 32-byte sectors; at most 32/PV pieces of a group per lane).
int lanes_per_group(int group, int pv) {
  const int pg = group / pv, npl = 32 / pv;
  return std::max(std::min(2, pg), pg / npl);
}

Placement placement(const Geometry& g, size_t width) {
  Placement p;
  p.gpr = fast_div((uint32_t)(width / g.group));
  p.gpc = fast_div((uint32_t)(g.cols / g.group));
  return p;
}

template <class T, int BITS, bool SYM, int PPL>
void quantize2(const T* x, const Geometry& g, size_t width, int L, uint8_t* m, size_t slot, int* flag,
               cudaStream_t st) {
  const uint32_t ngroups = (uint32_t)(g.rows * width / g.group);
  const uint32_t per_tile = 32u * (4 / PPL) / L;
  const size_t tiles = (ngroups + per_tile - 1) / per_tile;
  auto k = fc2_quantize<T, BITS, SYM, PPL>;
  k<<<wave_grid((const void*)k, (tiles + kWarps - 1) / kWarps), kThreads, 0, st>>>(x, g, placement(g, width), ngroups,
                                                                                     L, m, slot, flag);
}

template <class T, int BITS, bool SYM>
void quantize2_ppl(const T* x, const Geometry& g, size_t width, uint8_t* m, size_t slot, int* flag, cudaStream_t st) {
  const int L = lanes_per_group(g.group, 8), ppl = g.group / 8 / L;
  if (ppl == 1) quantize2<T, BITS, SYM, 1>(x, g, width, L, m, slot, flag, st);
  else if (ppl == 2) quantize2<T, BITS, SYM, 2>(x, g, width, L, m, slot, flag, st);
  else quantize2<T, BITS, SYM, 4>(x, g, width, L, m, slot, flag, st);
}

template <class T>
void quantize2_codec(const T* x, const Geometry& g, size_t width, uint8_t* m, size_t slot, int* flag, cudaStream_t st) {
  if (g.bits == 8 && !g.sym) quantize2_ppl<T, 8, false>(x, g, width, m, slot, flag, st);
  else if (g.bits == 8) quantize2_ppl<T, 8, true>(x, g, width, m, slot, flag, st);
  else if (!g.sym) quantize2_ppl<T, 4, false>(x, g, width, m, slot, flag, st);
  else quantize2_ppl<T, 4, true>(x, g, width, m, slot, flag, st);
}

template <int BITS, bool SYM, int PV, int PPL>
void reduce2(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, int* flag, cudaStream_t st) {
  const int L = lanes_per_group(g.group, PV);
  const size_t per_tile = 32u * (32 / PV / PPL) / L, tiles = (g.ngroups + per_tile - 1) / per_tile;
  auto k = fc2_reduce<BITS, SYM, PV, PPL>;
  k<<<wave_grid((const void*)k, (tiles + kWarps - 1) / kWarps), kThreads, 0, st>>>(recv, ranks, g, L, slot, out, flag);
}

template <int BITS, bool SYM>
void reduce2_layout(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, int* flag,
                    cudaStream_t st) {
  // Pieces of 16 bytes of codes (16 INT8 or 32 INT4 values) when the group is that large.
  const int pv = std::min(g.group, 128 / BITS);
  const int ppl = g.group / pv / lanes_per_group(g.group, pv);
  if (pv == 8) {
    reduce2<BITS, SYM, 8, 1>(recv, ranks, g, slot, out, flag, st);
  } else if (pv == 16 && ppl == 1) {
    reduce2<BITS, SYM, 16, 1>(recv, ranks, g, slot, out, flag, st);
  } else if constexpr (BITS == 8) {
    reduce2<BITS, SYM, 16, 2>(recv, ranks, g, slot, out, flag, st);  // G ≥ 64
  } else {
    reduce2<BITS, SYM, 32, 1>(recv, ranks, g, slot, out, flag, st);  // G ≥ 32
  }
}

template <class T, int BITS, bool SYM>
void dequantize2(const uint8_t* r, const Geometry& g, size_t width, size_t slot, const T* residual, T* y,
                 cudaStream_t st) {
  const uint32_t npieces = (uint32_t)(g.rows * width / 8);
  int log2_ppg = 0;
  while ((8 << log2_ppg) < g.group) log2_ppg++;
  const size_t spans = (npieces + 255) / 256;
  auto k = fc2_dequantize<T, BITS, SYM>;
  k<<<wave_grid((const void*)k, (spans + kWarps - 1) / kWarps), kThreads, 0, st>>>(r, g, placement(g, width), npieces,
                                                                                     log2_ppg, slot, residual, y);
}

template <class T>
void dequantize2_codec(const uint8_t* r, const Geometry& g, size_t width, size_t slot, const T* residual, T* y,
                       cudaStream_t st) {
  if (g.bits == 8 && !g.sym) dequantize2<T, 8, false>(r, g, width, slot, residual, y, st);
  else if (g.bits == 8) dequantize2<T, 8, true>(r, g, width, slot, residual, y, st);
  else if (!g.sym) dequantize2<T, 4, false>(r, g, width, slot, residual, y, st);
  else dequantize2<T, 4, true>(r, g, width, slot, residual, y, st);
}

ody_status launch_quantize(const void* x, int dtype, size_t rows, size_t width, int ranks, const Geometry& g,
                           void* msgs, size_t slot, int* flag, cudaStream_t st) {
  const size_t units = rows * width / 8;
  uint8_t* m = static_cast<uint8_t*>(msgs);
  (void)ranks;
  if (g_kernels.load() == 2) {
    if (dtype == ODY_DTYPE_F32) quantize2_codec(static_cast<const float*>(x), g, width, m, slot, flag, st);
    else if (dtype == ODY_DTYPE_F16) quantize2_codec(static_cast<const __half*>(x), g, width, m, slot, flag, st);
    else quantize2_codec(static_cast<const __nv_bfloat16*>(x), g, width, m, slot, flag, st);
  } else if (dtype == ODY_DTYPE_F32) {
    fc_quantize<float><<<grid_for(units), kThreads, 0, st>>>(static_cast<const float*>(x), g, width, units, m, slot, flag);
  } else if (dtype == ODY_DTYPE_F16) {
    fc_quantize<__half><<<grid_for(units), kThreads, 0, st>>>(static_cast<const __half*>(x), g, width, units, m, slot,
                                                              flag);
  } else {
    fc_quantize<__nv_bfloat16><<<grid_for(units), kThreads, 0, st>>>(static_cast<const __nv_bfloat16*>(x), g, width,
                                                                     units, m, slot, flag);
  }
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

ody_status launch_reduce(const void* recv, int ranks, const Geometry& g, size_t slot, void* out, int* flag,
                         cudaStream_t st) {
  const uint8_t* r = static_cast<const uint8_t*>(recv);
  uint8_t* o = static_cast<uint8_t*>(out);
  if (g_kernels.load() == 2) {
    if (g.bits == 8 && !g.sym) reduce2_layout<8, false>(r, ranks, g, slot, o, flag, st);
    else if (g.bits == 8) reduce2_layout<8, true>(r, ranks, g, slot, o, flag, st);
    else if (!g.sym) reduce2_layout<4, false>(r, ranks, g, slot, o, flag, st);
    else reduce2_layout<4, true>(r, ranks, g, slot, o, flag, st);
  } else {
    const size_t units = g.rows * g.cols / 8;
    fc_reduce<<<grid_for(units), kThreads, 0, st>>>(r, ranks, g, units, slot, o, flag);
  }
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

ody_status launch_dequantize(const void* recv, size_t rows, size_t width, const Geometry& g, size_t slot, int dtype,
                             const void* residual, void* y, cudaStream_t st) {
  const size_t units = rows * width / 8;
  const uint8_t* r = static_cast<const uint8_t*>(recv);
  if (g_kernels.load() == 2) {
    if (dtype == ODY_DTYPE_F32)
      dequantize2_codec(r, g, width, slot, static_cast<const float*>(residual), static_cast<float*>(y), st);
    else if (dtype == ODY_DTYPE_F16)
      dequantize2_codec(r, g, width, slot, static_cast<const __half*>(residual), static_cast<__half*>(y), st);
    else
      dequantize2_codec(r, g, width, slot, static_cast<const __nv_bfloat16*>(residual),
                        static_cast<__nv_bfloat16*>(y), st);
  } else if (dtype == ODY_DTYPE_F32) {
    fc_dequantize<float><<<grid_for(units), kThreads, 0, st>>>(r, g, width, units, slot,
                                                               static_cast<const float*>(residual),
                                                               static_cast<float*>(y));
  } else if (dtype == ODY_DTYPE_F16) {
    fc_dequantize<__half><<<grid_for(units), kThreads, 0, st>>>(r, g, width, units, slot,
                                                                static_cast<const __half*>(residual),
                                                                static_cast<__half*>(y));
  } else {
    fc_dequantize<__nv_bfloat16><<<grid_for(units), kThreads, 0, st>>>(
        r, g, width, units, slot, static_cast<const __nv_bfloat16*>(residual), static_cast<__nv_bfloat16*>(y));
  }
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

// ody_allreduce's state: the threshold, and per device a workspace and an error flag.
std::mutex g_mu;
size_t g_threshold = 0;  // to be measured (bench allreduce); 0: always compress when the shape fits
struct DeviceState {
  void* ws = nullptr;
  size_t bytes = 0;
  int* flag = nullptr;
};
std::map<int, DeviceState> g_dev;

// The workspace of the current device, at least `bytes` (grown with cudaMalloc, which
// synchronizes the device: keep the first call and growth outside CUDA-graph capture).
ody_status device_state(size_t bytes, DeviceState** out) {
  int dev = 0;
  ODY_CUDA(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lk(g_mu);
  DeviceState& d = g_dev[dev];
  if (!d.flag) {
    ODY_CUDA(cudaMalloc(reinterpret_cast<void**>(&d.flag), sizeof(int)));
    ODY_CUDA(cudaMemset(d.flag, 0, sizeof(int)));
  }
  if (d.bytes < bytes) {
    if (d.ws) ODY_CUDA(cudaFree(d.ws));
    d.ws = nullptr;
    d.bytes = 0;
    ODY_CUDA(cudaMalloc(&d.ws, bytes));
    d.bytes = bytes;
  }
  *out = &d;
  return ODY_OK;
}

}  // namespace
}  // namespace odyssey

using namespace odyssey;

extern "C" size_t ody_fc_message_bytes(size_t rows, size_t cols, int bits, int group, int symmetric) {
  if ((bits != 4 && bits != 8) || group <= 0) return 0;
  return message_bytes(geometry(rows, cols, bits, group, symmetric != 0));
}

extern "C" size_t ody_fc_slot_bytes(size_t rows, size_t cols, int bits, int group, int symmetric) {
  if ((bits != 4 && bits != 8) || group <= 0) return 0;
  return slot_bytes(geometry(rows, cols, bits, group, symmetric != 0));
}

extern "C" ody_status ody_fc_can_implement(size_t rows, size_t width, int ranks, int dtype, int bits, int group,
                                           int symmetric) {
  clear_error();
  (void)symmetric;
  return check_shape(rows, width, ranks, dtype, bits, group);
}

extern "C" ody_status ody_fc_quantize(const void* x, int dtype, size_t rows, size_t width, int ranks, int bits,
                                      int group, int symmetric, void* msgs, int* err_flag, void* stream) {
  clear_error();
  if (ody_status s = check_shape(rows, width, ranks, dtype, bits, group)) return s;
  if (!x || !msgs) return fail(ODY_ERR_INVALID, "ody_fc_quantize: null pointer");
  if (!aligned16(x) || !aligned16(msgs)) return fail(ODY_ERR_UNSUPPORTED, "ody_fc_quantize: buffers must be 16-byte aligned");
  Geometry g = geometry(rows, width / ranks, bits, group, symmetric != 0);
  return launch_quantize(x, dtype, rows, width, ranks, g, msgs, slot_bytes(g), err_flag,
                         static_cast<cudaStream_t>(stream));
}

extern "C" ody_status ody_fc_reduce(const void* recv, int ranks, size_t rows, size_t cols, int bits, int group,
                                    int symmetric, void* out, int* err_flag, void* stream) {
  clear_error();
  if (ody_status s = check_shape(rows, cols, 1, ODY_DTYPE_F32, bits, group)) return s;
  if (ranks < 1) return fail(ODY_ERR_INVALID, "ody_fc_reduce: ranks must be positive");
  if (!recv || !out) return fail(ODY_ERR_INVALID, "ody_fc_reduce: null pointer");
  if (!aligned16(recv) || !aligned16(out)) return fail(ODY_ERR_UNSUPPORTED, "ody_fc_reduce: buffers must be 16-byte aligned");
  Geometry g = geometry(rows, cols, bits, group, symmetric != 0);
  return launch_reduce(recv, ranks, g, slot_bytes(g), out, err_flag, static_cast<cudaStream_t>(stream));
}

extern "C" ody_status ody_fc_dequantize(const void* recv, int ranks, size_t rows, size_t width, int bits, int group,
                                        int symmetric, int dtype, const void* residual, void* y, void* stream) {
  clear_error();
  if (ody_status s = check_shape(rows, width, ranks, dtype, bits, group)) return s;
  if (!recv || !y) return fail(ODY_ERR_INVALID, "ody_fc_dequantize: null pointer");
  if (!aligned16(recv) || !aligned16(y) || (residual && !aligned16(residual)))
    return fail(ODY_ERR_UNSUPPORTED, "ody_fc_dequantize: buffers must be 16-byte aligned");
  Geometry g = geometry(rows, width / ranks, bits, group, symmetric != 0);
  return launch_dequantize(recv, rows, width, g, slot_bytes(g), dtype, residual, y, static_cast<cudaStream_t>(stream));
}

extern "C" size_t ody_allreduce_sim_workspace_size(int ranks, size_t rows, size_t width, int bits, int group,
                                                   int symmetric) {
  if (ranks < 1 || (bits != 4 && bits != 8) || group <= 0 || width % ranks) return 0;
  const size_t n = (size_t)ranks;
  return (3 * n * n + n) * slot_bytes(geometry(rows, width / ranks, bits, group, symmetric != 0));
}

extern "C" ody_status ody_allreduce_sim(const void* const* inputs, void* const* outputs, int ranks, size_t rows,
                                        size_t width, int dtype, int bits, int group, int symmetric, void* workspace,
                                        int* err_flag, void* stream) {
  clear_error();
  if (bits == 16) return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce_sim: bits 16 (the float control) is not simulated");
  if (ody_status s = check_shape(rows, width, ranks, dtype, bits, group)) return s;
  if (!inputs || !outputs || !workspace) return fail(ODY_ERR_INVALID, "ody_allreduce_sim: null pointer");
  for (int i = 0; i < ranks; i++) {
    if (!inputs[i] || !outputs[i]) return fail(ODY_ERR_INVALID, "ody_allreduce_sim: null buffer of rank " + std::to_string(i));
    if (!aligned16(inputs[i]) || !aligned16(outputs[i]))
      return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce_sim: buffers must be 16-byte aligned");
  }
  if (!aligned16(workspace)) return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce_sim: workspace must be 16-byte aligned");
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const size_t n = (size_t)ranks;
  Geometry g = geometry(rows, width / n, bits, group, symmetric != 0);
  const size_t slot = slot_bytes(g), msg = message_bytes(g);
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  uint8_t* sent = ws;
  uint8_t* recv = ws + n * n * slot;
  uint8_t* reduced = ws + 2 * n * n * slot;
  uint8_t* gathered = ws + (2 * n * n + n) * slot;
  // Step 1 on every rank; step 2: rank i's message j lands in rank j's slot i.
  for (size_t i = 0; i < n; i++)
    if (ody_status s = launch_quantize(inputs[i], dtype, rows, width, ranks, g, sent + i * n * slot, slot, err_flag, st))
      return s;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++)
      ODY_CUDA(cudaMemcpyAsync(recv + (j * n + i) * slot, sent + (i * n + j) * slot, msg, cudaMemcpyDeviceToDevice, st));
  // Step 3 on every rank; step 4: every rank k receives reduced chunk j in its slot j.
  for (size_t j = 0; j < n; j++)
    if (ody_status s = launch_reduce(recv + j * n * slot, ranks, g, slot, reduced + j * slot, err_flag, st)) return s;
  for (size_t k = 0; k < n; k++)
    for (size_t j = 0; j < n; j++)
      ODY_CUDA(cudaMemcpyAsync(gathered + (k * n + j) * slot, reduced + j * slot, msg, cudaMemcpyDeviceToDevice, st));
  // Step 5 on every rank, from its own copy of the gathered messages.
  for (size_t k = 0; k < n; k++)
    if (ody_status s = launch_dequantize(gathered + k * n * slot, rows, width, g, slot, dtype, nullptr, outputs[k], st))
      return s;
  return ODY_OK;
}

extern "C" ody_status ody_fc_set_kernels(int version) {
  clear_error();
  if (version != 1 && version != 2)
    return fail(ODY_ERR_INVALID, "ody_fc_set_kernels: version " + std::to_string(version) + ": want 1 or 2");
  g_kernels.store(version);
  return ODY_OK;
}

extern "C" int ody_fc_kernels(void) { return g_kernels.load(); }

extern "C" void ody_allreduce_set_threshold(size_t count) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_threshold = count;
}

extern "C" size_t ody_allreduce_threshold(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_threshold;
}

extern "C" ody_status ody_allreduce_flags(int* flags, void* stream) {
  clear_error();
  if (!flags) return fail(ODY_ERR_INVALID, "ody_allreduce_flags: null pointer");
  *flags = 0;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  DeviceState* d = nullptr;
  if (ody_status s = device_state(0, &d)) return s;
  ODY_CUDA(cudaMemcpyAsync(flags, d->flag, sizeof(int), cudaMemcpyDeviceToHost, st));
  ODY_CUDA(cudaMemsetAsync(d->flag, 0, sizeof(int), st));
  ODY_CUDA(cudaStreamSynchronize(st));
  return ODY_OK;
}

#ifdef ODYSSEY_WITH_NCCL

#define ODY_NCCL(call)                                                                                 \
  do {                                                                                                 \
    ncclResult_t ody_r_ = (call);                                                                      \
    if (ody_r_ != ncclSuccess)                                                                         \
      return ::odyssey::fail(ODY_ERR_CUDA, std::string(#call) + ": " + ncclGetErrorString(ody_r_) + " (" \
                                               __FILE__ ":" + std::to_string(__LINE__) + ")");          \
  } while (0)

extern "C" ody_status ody_allreduce(void* buf, size_t count, int dtype, int bits, int group, int symmetric, void* comm,
                                    void* stream) {
  clear_error();
  if (!buf || !comm) return fail(ODY_ERR_INVALID, "ody_allreduce: null pointer");
  if (dtype != ODY_DTYPE_F16 && dtype != ODY_DTYPE_BF16 && dtype != ODY_DTYPE_F32)
    return fail(ODY_ERR_INVALID, "ody_allreduce: dtype " + std::to_string(dtype));
  ncclComm_t c = static_cast<ncclComm_t>(comm);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  int ranks = 0, rank = 0;
  ODY_NCCL(ncclCommCount(c, &ranks));
  ODY_NCCL(ncclCommUserRank(c, &rank));
  if (bits == 16 || count < ody_allreduce_threshold()) {
    ncclDataType_t t = dtype == ODY_DTYPE_F32 ? ncclFloat : dtype == ODY_DTYPE_F16 ? ncclHalf : ncclBfloat16;
    ODY_NCCL(ncclAllReduce(buf, buf, count, t, ncclSum, c, st));
    return ODY_OK;
  }
  if (ody_status s = check_shape(1, count, ranks, dtype, bits, group)) return s;
  if (!aligned16(buf)) return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce: buf must be 16-byte aligned");
  Geometry g = geometry(1, count / ranks, bits, group, symmetric != 0);
  const size_t slot = slot_bytes(g), n = (size_t)ranks;
  DeviceState* d = nullptr;
  if (ody_status s = device_state(3 * n * slot, &d)) return s;
  uint8_t* send = static_cast<uint8_t*>(d->ws);
  uint8_t* recv = send + n * slot;
  uint8_t* gather = recv + n * slot;
  // Step 1.
  if (ody_status s = launch_quantize(buf, dtype, 1, count, ranks, g, send, slot, d->flag, st)) return s;
  // Step 2: all-to-all of the quantized chunks (slots, padding included: whole 16-byte units).
  ODY_NCCL(ncclGroupStart());
  for (int p = 0; p < ranks; p++) {
    ODY_NCCL(ncclSend(send + p * slot, slot, ncclUint8, p, c, st));
    ODY_NCCL(ncclRecv(recv + p * slot, slot, ncclUint8, p, c, st));
  }
  ODY_NCCL(ncclGroupEnd());
  // Step 3, into this rank's slot of the gather buffer; step 4: in-place all-gather.
  if (ody_status s = launch_reduce(recv, ranks, g, slot, gather + rank * slot, d->flag, st)) return s;
  ODY_NCCL(ncclAllGather(gather + rank * slot, gather, slot, ncclUint8, c, st));
  // Step 5.
  return launch_dequantize(gather, 1, count, g, slot, dtype, nullptr, buf, st);
}

#else

extern "C" ody_status ody_allreduce(void* buf, size_t count, int dtype, int bits, int group, int symmetric, void* comm,
                                    void* stream) {
  (void)buf, (void)count, (void)dtype, (void)bits, (void)group, (void)symmetric, (void)comm, (void)stream;
  clear_error();
  return fail(ODY_ERR_UNSUPPORTED,
              "ody_allreduce: this runtime was built without NCCL (configure with -DODYSSEY_WITH_NCCL=ON and "
              "NCCL_HOME pointing at an NCCL 2.x install); ody_allreduce_sim runs the same kernels on one GPU");
}

#endif
