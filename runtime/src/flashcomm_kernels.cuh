// flashcomm_kernels.cuh: the version-2 codec kernels of Flash Communication (see flashcomm.cu for
// what they compute and docs/flash-communication.md for the arithmetic), with the pieces they
// share with flashcomm.cu: the message geometry and the element loads/stores. Separate from
// flashcomm.cu so that the kernels can also be compiled for a host emulation of warps
// (runtime/tests/emulate_fc_kernels.cpp); it includes no CUDA header itself: the includer
// provides them (flashcomm.cu) or stand-ins (the emulation).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "odyssey_rt.h"

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

// ---------------------------------------------------------------- element loads and stores

template <class T>
struct Elem;
template <>
struct Elem<float> {
  // Raw: 8 values as loaded, before the widening to float (the v6 quantize holds the next
  // tile's in registers while it encodes the current one).
  struct Raw {
    float4 a, b;
  };
  __device__ static Raw load_raw(const float* p) {
    return Raw{reinterpret_cast<const float4*>(p)[0], reinterpret_cast<const float4*>(p)[1]};
  }
  __device__ static void unpack8(const Raw& r, float v[8]) {
    v[0] = r.a.x, v[1] = r.a.y, v[2] = r.a.z, v[3] = r.a.w, v[4] = r.b.x, v[5] = r.b.y, v[6] = r.b.z, v[7] = r.b.w;
  }
  __device__ static void load8(const float* p, float v[8]) { unpack8(load_raw(p), v); }
  __device__ static void store8(float* p, const float v[8]) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
};
template <>
struct Elem<__half> {
  using Raw = uint4;
  __device__ static Raw load_raw(const __half* p) { return *reinterpret_cast<const uint4*>(p); }
  __device__ static void unpack8(const Raw& u, float v[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float2 f = __half22float2(h[j]);  // exact
      v[2 * j] = f.x, v[2 * j + 1] = f.y;
    }
  }
  __device__ static void load8(const __half* p, float v[8]) { unpack8(load_raw(p), v); }
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
  using Raw = uint4;
  __device__ static Raw load_raw(const __nv_bfloat16* p) { return *reinterpret_cast<const uint4*>(p); }
  __device__ static void unpack8(const Raw& u, float v[8]) {
    const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&u);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = __bfloat162float(h[j]);  // exact
  }
  __device__ static void load8(const __nv_bfloat16* p, float v[8]) { unpack8(load_raw(p), v); }
  __device__ static void store8(__nv_bfloat16* p, const float v[8]) {
    uint4 u;
    __nv_bfloat16* h = reinterpret_cast<__nv_bfloat16*>(&u);
#pragma unroll
    for (int j = 0; j < 8; j++) h[j] = __float2bfloat16_rn(v[j]);
    *reinterpret_cast<uint4*>(p) = u;
  }
};

// ---------------------------------------------------------------- kernels, versions 2 and 3 (default)
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
//   wave of resident blocks); a lane holds 32 values of one to four groups, so that 64 bytes
//   (quantize, fp16 input; 128 for f32) or 4 ranks × 16–32 bytes (reduce) are in flight per
//   thread (dequantize: 8 pieces of 8 values, 32–64 bytes of codes);
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
//   permute and subtracts 2^23 (exact), or for unsigned codes takes c·s directly as
//   fma(2^23 + c, s, −2^23·s) (see decode). Both replace the quarter-rate conversions; the mapping
//   was checked against the version-1 chain (rintf, fminf/fmaxf, int conversion) for every
//   float32 t (runtime/tests/test_fc_tricks.cpp);
// - the tensor → (chunk, group) placement divides 32-bit indices by run-time constants with a
//   multiply-high (FastDiv), once per group or per 8 values, never in 64 bits.
//
// The quotient t = (v − lo)/s (or v/s) is, by the spec since session 12, fl(d·fl(1/s)) for a
// normal scale and the division fl(d/s) only for a subnormal one (whose reciprocal may overflow).
// Until then the spec divided everywhere, and version 3 had to check every t' = d·fl(1/s)
// against the ties n + 1/2 (two additions and a compare per value, a vote, and a division
// redo for about 1 value in 4000): about 3 of the ~22 instructions per value of the quantize,
// which ncu showed issue-bound. Now every value takes one multiplication; version 2 picks the
// operation per value, version 3 and later per warp (a vote on a subnormal scale).

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

// The two 16-bit lanes of w (T = __half or __nv_bfloat16), widened exactly.
template <class T>
__device__ __forceinline__ void widen2(uint32_t w, float& lo, float& hi) {
  float v[8];
  Elem<T>::unpack8(make_uint4(w, 0u, 0u, 0u), v);
  lo = v[0], hi = v[1];
}

// NaN-propagating min / max of each 16-bit lane of a and b (PTX min.NaN.f16x2 / .bf16x2,
// sm_80+): two values per instruction for the v6 quantize's extremes. A non-NaN result is one of
// the inputs, so widening it gives the float min / max exactly; which of two equal zeros comes
// out does not matter (encode_from settles a zero extreme by position).
template <class T, bool MAX>
__device__ __forceinline__ uint32_t minmax2_nan(uint32_t a, uint32_t b) {
  static_assert(std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value, "16-bit inputs only");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t r;
  if constexpr (std::is_same<T, __half>::value) {
    if constexpr (MAX) asm("max.NaN.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    else asm("min.NaN.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  } else {
    if constexpr (MAX) asm("max.NaN.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    else asm("min.NaN.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  }
  return r;
#else
  float a0, a1, b0, b1;
  widen2<T>(a, a0, a1);
  widen2<T>(b, b0, b1);
  auto pick = [](uint32_t x, uint32_t y, float fx, float fy) -> uint32_t {
    if (fx != fx || fy != fy) return 0x7fffu;  // a NaN in both formats
    return (MAX ? fy > fx : fy < fx) ? y : x;
  };
  return pick(a & 0xffffu, b & 0xffffu, a0, b0) | pick(a >> 16, b >> 16, a1, b1) << 16;
#endif
}

// n / d for 32-bit n and a run-time constant d ≥ 1 (Granlund–Montgomery, round-up multiplier):
// l = ceil(log2 d), m = floor(2^32·(2^l − d)/d) + 1, n/d = (n + mulhi(n, m)) >> l, exact for
// every 32-bit n (runtime/tests/test_fc_tricks.cpp checks it).
struct FastDiv {
  uint32_t d, m;
  int l;
};
inline FastDiv fast_div(uint32_t d) {
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

// 2^23 + byte K of w, exactly, minus bias (bias 0: the biased value itself; the subtraction is
// exact and dropped then).
template <int K>
__device__ __forceinline__ float byte_as_float(uint32_t w, float bias) {
  const float b = __int_as_float(__byte_perm(w, 0x4B000000u, 0x7540 | K));
  return bias == 0.0f ? b : __fsub_rn(b, bias);
}

// The codec on NV values per lane (32; 16 in the v4 reduce). PV values per piece, a lane holds NV/PV
// pieces; PPL of them belong to one group, so a lane holds GPL = NV/(PV·PPL) groups (slot k: pieces k·PPL..+PPL).
// Within its group a lane (index sub among the group's L lanes) holds pieces sub + L·m.
template <int BITS, bool SYM, int PV, int PPL, int NV = 32>
struct Lane {
  static constexpr int NPL = NV / PV;
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
  // rcp (kernels 3+): multiply every value by fl(1/s) and let a warp whose group has a subnormal
  // scale redo that piece with the division (the spec's quotient is fl(d·fl(1/s)) for a normal
  // s, fl(d/s) for a subnormal one); kernels 1–2 choose per value.
  // kV5 (needs rcp): the reciprocal path skips the clamp and INT4 asymmetric codes pack without
  // masks. Why that is exact: s = fl(D/Q) ≥ (D/Q)(1 − u) with D = fl(max − min) (or max|v|),
  // |d| ≤ D and fl(1/s) ≤ (1/s)(1 + u), so |t| ≤ Q(1 + u)²/(1 − u) < Q + 1/2 and rint(t) is
  // already inside [−Q, Q] (asymmetric: [0, Q]). The division path keeps the clamp: a subnormal
  // s can push t past Q.
  template <bool kV5 = false>
  __device__ __forceinline__ static void encode(const float (&v)[NV], int L, int sub, float limit, bool rcp,
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
    encode_from<kV5>(v, a, b, L, sub, limit, rcp, codes, s, lo, bad);
  }

  // encode after the lane's own extremes: a[k], b[k] the NaN-propagating min and max of the
  // lane's values of group slot k (asymmetric), or a[k] = max|v| (symmetric). The v6 quantize
  // computes them on the 16-bit inputs two at a time (fc2_quantize) and enters here.
  template <bool kV5 = false>
  __device__ __forceinline__ static void encode_from(const float (&v)[NV], float (&a)[GPL], float (&b)[GPL], int L,
                                                     int sub, float limit, bool rcp, uint32_t (&codes)[NPL][WPP],
                                                     float (&s)[GPL], float (&lo)[GPL], bool (&bad)[GPL]) {
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
    // The spec's quotient: t = fl(d·fl(1/s)) for a normal s, fl(d/s) for a subnormal one (whose
    // reciprocal may overflow) and for a NaN s (a flagged group: its codes are dropped anyway).
    float r[GPL];
    bool r_ok[GPL];
#pragma unroll
    for (int k = 0; k < GPL; k++) {
      r[k] = __frcp_rn(s[k]);
      r_ok[k] = s[k] >= 0x1p-126f;
    }
#pragma unroll
    for (int j = 0; j < NPL; j++) {
      const int k = j / PPL;
      uint32_t c[PV];  // bits of kBias + code: the code in the low bits
#pragma unroll
      for (int e = 0; e < PV; e++) {
        const float x = v[j * PV + e];
        const float d = SYM ? x : __fsub_rn(x, lo[k]);
        // rcp (kernels 3+): every lane multiplies, and a warp with a subnormal scale redoes that
        // piece below; otherwise (kernels 1, 2) each value picks its operation. (A branch on rcp
        // alone: with the per-value choice in the multiplying path too, the division sat in every
        // value's code and the v6 quantize grew by a third, 11% slower on the H200.)
        float tq;
        if (rcp) tq = __fmul_rn(d, r[k]);
        else tq = r_ok[k] ? __fmul_rn(d, r[k]) : __fdiv_rn(d, s[k]);
        const float f = __fadd_rn(tq, kBias);
        if (kV5 && rcp) c[e] = __float_as_uint(f);  // no clamp needed (see above)
        else c[e] = __float_as_uint(SYM ? fminf(fmaxf(f, kBias - kQ), kBias + kQ) : fminf(f, kBias + kQ));  // asym: t ≥ 0
      }
      if (rcp && __any_sync(0xffffffffu, !r_ok[k]) && !r_ok[k]) {
#pragma unroll
        for (int e = 0; e < PV; e++) {
          const float x = v[j * PV + e];
          const float f = __fadd_rn(__fdiv_rn(SYM ? x : __fsub_rn(x, lo[k]), s[k]), kBias);
          c[e] = __float_as_uint(SYM ? fminf(fmaxf(f, kBias - kQ), kBias + kQ) : fminf(f, kBias + kQ));
        }
      }
#pragma unroll
      for (int w = 0; w < WPP; w++) {
        uint32_t word;
        if (BITS == 8) {
          word = pack4(c[4 * w], c[4 * w + 1], c[4 * w + 2], c[4 * w + 3]);
        } else {
          const uint32_t even = pack4(c[8 * w], c[8 * w + 2], c[8 * w + 4], c[8 * w + 6]);
          const uint32_t odd = pack4(c[8 * w + 1], c[8 * w + 3], c[8 * w + 5], c[8 * w + 7]);
          // Asymmetric codes are 0..15 on both paths (the bytes of 2^23 + code): no masks (v5).
          word = kV5 && !SYM ? even | (odd << 4) : (even & 0x0f0f0f0fu) | ((odd << 4) & 0xf0f0f0f0u);
        }
        codes[j][w] = bad[k] ? 0u : word;
      }
    }
#pragma unroll
    for (int k = 0; k < GPL; k++)
      if (bad[k]) s[k] = lo[k] = __int_as_float(0x7fc00000);
  }

  // Decodes the PV codes of one piece (WPP words): out[e] = code·s (+ lo).
  // Asymmetric codes skip the conversion: with B = 2^23 + c (exact, built by a byte permute) and
  // K = 2^23·s (exact: a power-of-two scaling; every scale the codec writes is below 2^80), fma(B, s, −K) is B·s − K = c·s
  // rounded once, the same bits as __fmul_rn(c, s) (subnormal results included: no flush), one
  // instruction instead of a subtraction and a multiplication. This is not the fused
  // multiply-add the spec forbids: (q·s) + lo still rounds twice. Signed codes keep the
  // subtraction (their offset 2^23 + 2^(b−1) times s is not exact).
  __device__ __forceinline__ static void decode(const uint32_t (&w)[WPP], float s, float lo, float* out) {
    const float nk = -__fmul_rn(8388608.0f, s);  // −K
#pragma unroll
    for (int i = 0; i < WPP; i++) {
      float c[BITS == 8 ? 4 : 8];  // symmetric: the code; asymmetric: 2^23 + the code
      if (BITS == 8) {
        const uint32_t x = SYM ? (w[i] ^ 0x80808080u) : w[i];  // signed: code + 128
        const float bias = SYM ? 8388736.0f : 0.0f;
        c[0] = byte_as_float<0>(x, bias);
        c[1] = byte_as_float<1>(x, bias);
        c[2] = byte_as_float<2>(x, bias);
        c[3] = byte_as_float<3>(x, bias);
      } else {
        const uint32_t x = SYM ? (w[i] ^ 0x88888888u) : w[i];  // signed: code + 8
        const uint32_t even = x & 0x0f0f0f0fu, odd = (x >> 4) & 0x0f0f0f0fu;
        const float bias = SYM ? 8388616.0f : 0.0f;
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
        // Symmetric: no +0.0 (it would turn −0.0 into +0.0).
        out[i * n + e] = SYM ? __fmul_rn(c[e], s) : __fadd_rn(__fmaf_rn(c[e], s, nk), lo);
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
// PF (kernels v6), three changes, each giving the same codes, scales and order of operations:
// - the loads of the warp's next tile are issued before the current tile is encoded, so that
//   each warp always has its next 64 bytes per lane (fp16) in flight (H200, session 11: +0.6
//   to +4.8 points of copy);
// - encode<true>: no clamp on the reciprocal path, INT4 asymmetric codes packed without masks;
// - asymmetric groups of 16-bit inputs: the lane's min and max two values per instruction.
// The last two because ncu then showed the quantize issue-bound (21.8 thread instructions per
// value at 72% of the issue slots). The next tile costs 16 registers (16-bit inputs); with
// 4 pieces per lane and group (G = 64 and 128) ptxas fits it in 80 without spills, which keeps
// 3 blocks per SM; other shapes are left to ptxas (asking 3 blocks there spilled 8–180 bytes;
// nvcc 11.8, sm_90).
template <class T, int BITS, bool SYM, int PPL, bool PF = false>
__global__ void __launch_bounds__(kThreads, PF && sizeof(T) == 2 && PPL == 4 ? 3 : 1)
    fc2_quantize(const T* __restrict__ x, Geometry g, Placement pl, uint32_t ngroups_total, int L,
                 uint8_t* __restrict__ msgs, size_t slot, int* flag, bool rcp) {
  using Ln = Lane<BITS, SYM, 8, PPL>;
  using Raw = typename Elem<T>::Raw;
  const int lane = threadIdx.x & 31, sub = lane & (L - 1);
  const uint32_t per_tile = 32u * Ln::GPL / L;
  const uint32_t tiles = (ngroups_total + per_tile - 1) / per_tile;
  const uint32_t warp = blockIdx.x * kWarps + threadIdx.x / 32, nwarps = gridDim.x * kWarps;
  // The raw pieces of tile t (those of groups past the end are left as they are).
  auto load_tile = [&](uint32_t t, Raw(&r)[Ln::NPL]) {
#pragma unroll
    for (int j = 0; j < Ln::NPL; j++) {
      const int k = j / PPL, m = j % PPL;
      const uint32_t gk = t * per_tile + k * (32 / L) + lane / L;
      if (t < tiles && gk < ngroups_total) r[j] = Elem<T>::load_raw(x + (size_t)gk * g.group + 8 * (sub + L * m));
    }
  };
  Raw next[PF ? Ln::NPL : 1];
  if constexpr (PF) load_tile(warp, next);
  for (uint32_t t = warp; t < tiles; t += nwarps) {
    Raw raw[PF ? Ln::NPL : 1];
    if constexpr (PF) {
#pragma unroll
      for (int j = 0; j < Ln::NPL; j++) raw[j] = next[j];
      load_tile(t + nwarps, next);
    }
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
        if constexpr (PF) Elem<T>::unpack8(raw[j], &v[8 * j]);
        else Elem<T>::load8(x + (size_t)gid[k] * g.group + 8 * (sub + L * m), &v[8 * j]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) v[8 * j + e] = 1.f;  // no zero: keeps the rare path rare
      }
    }
    uint32_t codes[Ln::NPL][Ln::WPP];
    float s[Ln::GPL], lo[Ln::GPL];
    bool bad[Ln::GPL];
    // v6 (PF) also takes v5's encode: no clamp on the reciprocal path, INT4 asymmetric codes
    // packed without masks (the argument at Lane::encode holds here: d = fl(v − lo) ≤
    // fl(max − min) = D). PF implies rcp (quantize_codec). With 16-bit inputs the lane's min
    // and max come from the raw words, two values per instruction (minmax2_nan) where the
    // float scan takes one each; symmetric groups keep the float scan (max|v| would need a
    // mask per word first: no saving).
    if constexpr (PF && sizeof(T) == 2 && !SYM) {
      float a[Ln::GPL], b[Ln::GPL];
#pragma unroll
      for (int k = 0; k < Ln::GPL; k++) {
        const uint32_t* w0 = reinterpret_cast<const uint32_t*>(&raw[k * PPL]);
        uint32_t mn = w0[0], mx = w0[0];
#pragma unroll
        for (int m = 0; m < PPL; m++) {
          const uint32_t* w = reinterpret_cast<const uint32_t*>(&raw[k * PPL + m]);
#pragma unroll
          for (int i = m == 0 ? 1 : 0; i < 4; i++) {
            mn = minmax2_nan<T, false>(mn, w[i]);
            mx = minmax2_nan<T, true>(mx, w[i]);
          }
        }
        float m0, m1, x0, x1;
        widen2<T>(mn, m0, m1);
        widen2<T>(mx, x0, x1);
        a[k] = act[k] ? min_nan(m0, m1) : 1.f;  // an idle slot holds 1s (above)
        b[k] = act[k] ? max_nan(x0, x1) : 1.f;
      }
      Ln::template encode_from<PF>(v, a, b, L, sub, 0x1p64f, PF || rcp, codes, s, lo, bad);  // v6 always multiplies
    } else {
      Ln::template encode<PF>(v, L, sub, 0x1p64f, PF || rcp, codes, s, lo, bad);
    }
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

// ---------------------------------------------------------------- step 3: the integer-scale reduce
//
// docs/flash-communication.md, "Step 3: the integer-scale reduce". For one group position the N received scales s_i
// become integers relative to the largest exponent E among them: m_i = round(s_i · 2^(146−E))
// ≤ 2^20 (ties to even), so s_i ≈ m_i·2^(E−146). The sum Σ_i q_i·m_i is
// then exact in integers (|Σ| ≤ N·255·2^20: int32 for N ≤ 8, int64 in the generic kernel), one
// conversion and one multiplication by 2^(E−146) make it a float, and asymmetric groups add L, the
// float sum of the minima in rank order from +0, once per value.
// Why: the float reduce (q·s, + lo, + acc per received value, three roundings each) was
// issue-bound on the H200 at about four float operations per received value: 38% of the copy
// bandwidth for INT4, 76% for INT8 (session 12). Here a received value costs one extraction (a
// byte permute) and one integer multiply-add, as the integer group scales of FastGEMM do.

// E from the largest scale of the group (positive floats order as their bits): its biased
// exponent, 1 for a subnormal (the exponent of its unit).
__device__ __forceinline__ uint32_t fc_group_exp(float smax) {
  const uint32_t e = (__float_as_uint(smax) >> 23) & 0xffu;  // NaN (a flagged rank) → 255
  return e ? e : 1u;
}

// The two factors of 2^(146 − E) (E in 1..254: 2^−108 .. 2^145, which need not be one float):
// f1 = 2^min(146 − E, 127), f2 = 2^(146 − E − that) (1 unless E < 19).
struct FcIntScale {
  float f1, f2;
};
__device__ __forceinline__ FcIntScale fc_int_scale_factors(uint32_t E) {
  const int p = 146 - (int)E, p1 = p < 127 ? p : 127;
  return {__int_as_float((uint32_t)(p1 + 127) << 23), __int_as_float((uint32_t)(p - p1 + 127) << 23)};
}

// m = round-half-even(s · 2^(146 − E)) ≤ 2^20 for a scale s of the group (E ≥ its exponent):
// s·f1 is exact (a power-of-two scaling of a value with at most 24 significant bits that stays
// normal or is the subnormal s scaled up), and fma(s·f1, f2, 2^23) rounds the exact s·2^(146−E)
// + 2^23 once, to an integer (the unit of [2^23, 2^24) is 1), ties to even: 2^23 + m.
__device__ __forceinline__ int32_t fc_int_scale(float s, const FcIntScale& f) {
  return (int32_t)(__float_as_uint(__fmaf_rn(__fmul_rn(s, f.f1), f.f2, 8388608.0f)) - 0x4B000000u);
}

// 2^(E − 146) as a float (E ≥ 1: down to the subnormal 2^−145). E = 255 means a scale was Inf or
// NaN (a rank flagged its group out of domain and sent NaN metadata): NaN, so that the sum is NaN
// and the requantization flags it too, as the float reduce did.
__device__ __forceinline__ float fc_int_unit(uint32_t E) {
  if (E == 255u) return __int_as_float(0x7fc00000);
  const int p = (int)E - 146;
  return __int_as_float(p >= -126 ? (uint32_t)(p + 127) << 23 : 1u << (p + 149));
}

// Code e of a piece's words as an integer (sign-extended for symmetric codes).
template <int BITS, bool SYM>
__device__ __forceinline__ int32_t fc_code(const uint32_t* w, int e) {
  if (BITS == 8) {
    const uint32_t b = (w[e >> 2] >> (8 * (e & 3))) & 0xffu;
    return SYM ? (int32_t)(int8_t)(uint8_t)b : (int32_t)b;
  }
  const uint32_t n = (w[e >> 3] >> (4 * (e & 7))) & 0xfu;
  return SYM ? ((int32_t)(n << 28)) >> 28 : (int32_t)n;
}

// Step 3, the generic kernel (any number of ranks, any group; kernels 1–3, and the fallback of
// 4–6): the ranks messages at recv + i·slot → one requantized message at out. A first pass over
// the ranks reads the scales (E) and the minima (L, in rank order); the second loads the codes of
// 4 ranks before it multiplies any (4 × 16 bytes in flight per thread) into 64-bit sums.
#ifndef ODY_FC_REDUCE_BLOCKS
#define ODY_FC_REDUCE_BLOCKS 2
#endif
constexpr int kReduceBlocks = ODY_FC_REDUCE_BLOCKS;
template <int BITS, bool SYM, int PV, int PPL>
__global__ void __launch_bounds__(kThreads, kReduceBlocks)
    fc2_reduce(const uint8_t* __restrict__ recv, int ranks, Geometry g, int L, size_t slot,
               uint8_t* __restrict__ out, int* flag, bool rcp) {
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
    uint32_t gi[Ln::GPL], E[Ln::GPL];
    float Lsum[Ln::GPL], smax[Ln::GPL];
    FcIntScale f[Ln::GPL];
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) {
      gi[k] = t * per_tile + k * (32 / L) + lane / L;
      act[k] = gi[k] < ngroups;
      smax[k] = 0.f;
      Lsum[k] = 0.f;  // +0.0f
    }
    for (int i = 0; i < ranks; i++) {  // rank order (the minima's float sum)
      const float* meta = reinterpret_cast<const float*>(recv + (size_t)i * slot + g.code_bytes);
#pragma unroll
      for (int k = 0; k < Ln::GPL; k++) {
        if (!act[k]) continue;
        smax[k] = max_nan(smax[k], meta[gi[k]]);
        if (!SYM) Lsum[k] = __fadd_rn(Lsum[k], meta[g.ngroups + gi[k]]);
      }
    }
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) {
      E[k] = fc_group_exp(smax[k]);
      f[k] = fc_int_scale_factors(E[k] == 255u ? 146u : E[k]);
    }
    long long acc[32];
#pragma unroll
    for (int e = 0; e < 32; e++) acc[e] = 0;
    for (int i0 = 0; i0 < ranks; i0 += kBatch) {
      uint32_t w[kBatch][Ln::NPL][Ln::WPP];
      int32_t m[kBatch][Ln::GPL];
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        const uint8_t* msg = recv + (size_t)(i0 + b) * slot;
        const float* meta = reinterpret_cast<const float*>(msg + g.code_bytes);
#pragma unroll
        for (int j = 0; j < Ln::NPL; j++) {
          const int k = j / PPL, mm = j % PPL;
          if (act[k] && i0 + b < ranks)
            Words<Ln::WPP>::load(msg + gi[k] * group_bytes + (size_t)(sub + L * mm) * piece_bytes, w[b][j]);
          else
#pragma unroll
            for (int q = 0; q < Ln::WPP; q++) w[b][j][q] = 0;
        }
#pragma unroll
        for (int k = 0; k < Ln::GPL; k++) m[b][k] = act[k] && i0 + b < ranks ? fc_int_scale(meta[gi[k]], f[k]) : 0;
      }
#pragma unroll
      for (int b = 0; b < kBatch; b++)
#pragma unroll
        for (int j = 0; j < Ln::NPL; j++)
#pragma unroll
          for (int e = 0; e < PV; e++)
            acc[j * PV + e] += (long long)fc_code<BITS, SYM>(w[b][j], e) * m[b][j / PPL];
    }
    float v[32];
#pragma unroll
    for (int j = 0; j < Ln::NPL; j++) {
      const int k = j / PPL;
      const float unit = fc_int_unit(E[k]);
#pragma unroll
      for (int e = 0; e < PV; e++) {
        const float y = __fmul_rn(__ll2float_rn(acc[j * PV + e]), unit);
        v[j * PV + e] = SYM ? y : __fadd_rn(y, Lsum[k]);
      }
    }
    uint32_t codes[Ln::NPL][Ln::WPP];
    float s[Ln::GPL], lo[Ln::GPL];
    bool bad[Ln::GPL];
    Ln::encode(v, L, sub, 3.402823466e38f, rcp, codes, s, lo, bad);  // not finite: bad
    uint8_t* msg[Ln::GPL];
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) msg[k] = out;
    store_lane<Ln>(msg, gi, act, codes, s, lo, bad, L, sub, g.group, g.code_bytes, g.ngroups, flag,
                   ODY_FC_BAD_SUM);
  }
}

// ---------------------------------------------------------------- kernels 4–6: the fast reduce
//
// The integer-scale reduce (above) for 2, 4 or 8 ranks and groups of at least a 16-byte piece
// (16 INT8 or 32 INT4 values); other shapes take the generic kernel. A lane owns one piece: its 16
// bytes of codes from every rank, PV int32 sums (exact: ≤ 8·255·2^20 < 2^31).
// - Double buffering through shared memory (from v5): while a warp works on tile t from one
//   stage, cp.async (sm_80+) brings tile t + nwarps's codes, scales and minima into the other,
//   so every warp keeps one tile of loads in flight during its arithmetic. A stage is ranks ×
//   (32 lanes × 16 B of codes + 64 floats of metadata), two per warp: 96 KiB per block of 8 warps
//   at 8 ranks, 2 blocks per SM (dynamic shared memory, opted in with
//   cudaFuncAttributeMaxDynamicSharedMemorySize). Lane l copies its own 16-byte piece of every
//   rank and metadata items l and l + 32 of the tile (the tile's NG = 32/L scales, then its NG
//   minima), so a __syncwarp after the wait makes the stage visible to the warp; a second
//   __syncwarp ends the reads before the stage is refilled.
// - Per received value: one byte permute (the code, zero-extended; INT4 first splits a word into
//   its even and odd nibbles, 3 instructions per 8 codes) and one IMAD. Symmetric codes are
//   offset to unsigned (x ^ 0x80.. or 0x88..: code + 128 or + 8) and the sums start at
//   −128·Σm_i (or −8·Σm_i), which takes the offset back out exactly.
// - Per group and lane: E and L from the stage's metadata (a max and, asymmetric, a float
//   addition per rank, in rank order), m_i per rank; per value one conversion, one
//   multiplication by 2^(E−146) and (asymmetric) one addition of L.
// - The requantization skips the clamp on its fast path and packs INT4 asymmetric codes without
//   masks (Lane::encode<true>, where the proof is).
// Checked on the CPU by runtime/tests/emulate_fc_kernels DIR --v5 (--v6, --v4: the same reduce);
// on the GPU by odyssey-rt test codec; timed by odyssey-rt bench codec
// (runtime/scripts/device-run.sh codec).
constexpr int kFc5MetaPerRank = 64;  // metadata floats per rank and tile: NG ≤ 32 scales + NG minima

template <int NR>
struct Fc5Stage {
  uint32_t code[NR][32][4];          // [rank][lane]: the lane's 16 bytes of codes
  float meta[NR][kFc5MetaPerRank];   // [rank][item]: scales of the tile's groups, then minima
};

// Dynamic shared memory of one v5 block: 2 stages per warp.
inline size_t fc5_smem_bytes(int ranks) {
  const size_t per_rank = sizeof(Fc5Stage<1>);
  return (size_t)kWarps * 2 * per_rank * (size_t)ranks;
}

// Asynchronous copies global → shared (cp.async, sm_80+); the host emulation copies at once.
__device__ __forceinline__ void fc_cp_async16(void* dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
               "l"(src)
               : "memory");
#else
  const uint32_t* s = static_cast<const uint32_t*>(src);
  uint32_t* d = static_cast<uint32_t*>(dst);
  d[0] = s[0], d[1] = s[1], d[2] = s[2], d[3] = s[3];
#endif
}
__device__ __forceinline__ void fc_cp_async4(void* dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)), "l"(src)
               : "memory");
#else
  *static_cast<uint32_t*>(dst) = *static_cast<const uint32_t*>(src);
#endif
}
__device__ __forceinline__ void fc_cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N groups of copies (the newest: the prefetches) are still in flight.
template <int N>
__device__ __forceinline__ void fc_cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// The block's dynamic shared memory (defined by the includer: extern __shared__ on the device,
// a buffer in the emulation).
__device__ __forceinline__ uint8_t* fc_dyn_smem();

// One rank's 16-byte piece (u: PV codes) times its integer scale m, added into acc. Code e of the
// piece is byte e of the words (INT8) or nibble e (INT4: byte e/2 of the even nibbles for even e,
// of the odd ones for odd e); x is the word offset to unsigned for symmetric codes.
template <int BITS, bool SYM>
__device__ __forceinline__ void fc5_add(const uint4& u, int32_t m, int32_t (&acc)[128 / BITS]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    if (BITS == 8) {
      const uint32_t x = SYM ? w[i] ^ 0x80808080u : w[i];
#pragma unroll
      for (int b = 0; b < 4; b++) acc[4 * i + b] += (int32_t)__byte_perm(x, 0u, 0x4440u | b) * m;
    } else {
      const uint32_t x = SYM ? w[i] ^ 0x88888888u : w[i];
      const uint32_t even = x & 0x0f0f0f0fu, odd = (x >> 4) & 0x0f0f0f0fu;
#pragma unroll
      for (int b = 0; b < 4; b++) {
        acc[8 * i + 2 * b] += (int32_t)__byte_perm(even, 0u, 0x4440u | b) * m;
        acc[8 * i + 2 * b + 1] += (int32_t)__byte_perm(odd, 0u, 0x4440u | b) * m;
      }
    }
  }
}

template <int BITS, bool SYM, int NR>
__global__ void __launch_bounds__(kThreads, 2)
    fc5_reduce(const uint8_t* __restrict__ recv, Geometry g, int log2_L, size_t slot, uint8_t* __restrict__ out,
               int* flag) {
  constexpr int PV = 128 / BITS;  // values per 16-byte piece
  using Ln = Lane<BITS, SYM, PV, 1, PV>;
  const int lane = threadIdx.x & 31, L = 1 << log2_L, sub = lane & (L - 1);
  const uint32_t npieces = (uint32_t)(g.ngroups << log2_L), tiles = (npieces + 31) / 32;
  const uint32_t ngroups = (uint32_t)g.ngroups;
  const uint32_t warp = blockIdx.x * kWarps + threadIdx.x / 32, nwarps = gridDim.x * kWarps;
  const int ng = 32 >> log2_L, nitems = SYM ? ng : 2 * ng;  // groups and metadata floats per tile
  const uint8_t* meta0 = recv + g.code_bytes;
  const size_t lo_off = g.ngroups * 4;
  Fc5Stage<NR>* stage = reinterpret_cast<Fc5Stage<NR>*>(fc_dyn_smem()) + 2 * (threadIdx.x / 32);

  // Starts the copies of tile t into st (an idle lane of the last tile copies the last piece and
  // group: valid memory, never stored).
  auto issue = [&](uint32_t t, Fc5Stage<NR>& st) {
    const uint32_t p = min(t * 32 + lane, npieces - 1);
    const uint8_t* code = recv + (size_t)p * 16;
#pragma unroll
    for (int i = 0; i < NR; i++) fc_cp_async16(st.code[i][lane], code + (size_t)i * slot);
    const uint32_t g0 = (t * 32) >> log2_L;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int k = lane + 32 * h;
      if (k < nitems) {
        const bool is_lo = k >= ng;
        const uint32_t gg = min(g0 + (uint32_t)(is_lo ? k - ng : k), ngroups - 1);
        const uint8_t* m = meta0 + (is_lo ? lo_off : 0) + (size_t)gg * 4;
#pragma unroll
        for (int i = 0; i < NR; i++) fc_cp_async4(&st.meta[i][k], m + (size_t)i * slot);
      }
    }
  };

  int cur = 0;
  if (warp < tiles) issue(warp, stage[0]);
  fc_cp_async_commit();
  for (uint32_t t = warp; t < tiles; t += nwarps, cur ^= 1) {
    if (t + nwarps < tiles) issue(t + nwarps, stage[cur ^ 1]);
    fc_cp_async_commit();  // possibly empty: then the wait still means "tile t has landed"
    fc_cp_async_wait<1>();
    __syncwarp();
    const Fc5Stage<NR>& st = stage[cur];
    const uint32_t p = t * 32 + lane, gi = p >> log2_L;
    const bool act = p < npieces;
    const int gl = lane >> log2_L;  // the lane's group within the tile
    // The group's E, the minima's sum L (rank order, from +0) and the integer scales.
    float smax = st.meta[0][gl], Lsum = 0.f;
#pragma unroll
    for (int i = 0; i < NR; i++) {
      if (i) smax = max_nan(smax, st.meta[i][gl]);
      if (!SYM) Lsum = __fadd_rn(Lsum, st.meta[i][ng + gl]);
    }
    const uint32_t E = fc_group_exp(smax);
    const FcIntScale f = fc_int_scale_factors(E == 255u ? 146u : E);
    int32_t m[NR], msum = 0;
#pragma unroll
    for (int i = 0; i < NR; i++) {
      m[i] = fc_int_scale(st.meta[i][gl], f);
      msum += m[i];
    }
    int32_t acc[PV];
    const int32_t acc0 = SYM ? -msum * (BITS == 8 ? 128 : 8) : 0;  // takes the unsigned offset out
#pragma unroll
    for (int e = 0; e < PV; e++) acc[e] = acc0;
#pragma unroll
    for (int i = 0; i < NR; i++) fc5_add<BITS, SYM>(*reinterpret_cast<const uint4*>(st.code[i][lane]), m[i], acc);
    __syncwarp();  // every lane has read stage cur before the next iteration refills it
    const float unit = fc_int_unit(E);
    float v[PV];
#pragma unroll
    for (int e = 0; e < PV; e++) {
      const float y = __fmul_rn(__int2float_rn(acc[e]), unit);
      v[e] = SYM ? y : __fadd_rn(y, Lsum);
    }
    uint32_t codes[1][Ln::WPP];
    float so[1], loo[1];
    bool bad[1];
    Ln::template encode<true>(v, L, sub, 3.402823466e38f, true, codes, so, loo, bad);  // not finite: bad
    uint8_t* const msg[1] = {out};
    const uint32_t gis[1] = {gi};
    const bool acts[1] = {act};
    store_lane<Ln>(msg, gis, acts, codes, so, loo, bad, L, sub, g.group, g.code_bytes, g.ngroups, flag,
                   ODY_FC_BAD_SUM);
  }
}

// ---------------------------------------------------------------- kernel 7: the INT4 g128 reduce on tensor cores
//
// The same integer-scale reduce (bits and bytes of fc5_reduce) for INT4 groups of 128 and 2, 4 or
// 8 ranks: the decode Σ_i q_i·m_i runs on the int8 tensor cores (mma.sync m16n8k32, u8 × u8 →
// s32) instead of a byte permute and an IMAD per received code.
// Why: ncu showed fc5_reduce INT4 issue-bound at 38 thread instructions per value (70% of the
// issue slots; 57% of the copy bandwidth, goal 80%), 19 of them the decode (session 12, call 3).
// Measured (H200, session 13): bit-exact (test codec, sanitizers, soak), 27 thread instructions
// per value, but no faster: INT4 reduce at 256 MiB 56.2% of copy (v6 55.1–56.5% in the same
// runs), symmetric 51.8% (v6 58.3%). ncu: 50–53% issue, 1.3 of 3.6 warps eligible, the ALU pipe
// the busiest (50%): the cost moved from instruction count to dependency latency (shuffles,
// redux, mma, the division) at 4 warps per scheduler; 4 groups per step at twice the occupancy
// was slower (36 instructions per value, 50.7%). So v7 is an A/B option, not the default.
//
// One warp step is NG = 8 groups; each group is one set of mma's (its 128 values, 8 ranks):
// - A (16 × 32 bytes): row r ↔ 32-bit code word w(r) of the group (w(r) = 2r for r < 8, 2(r−8)+1
//   after, so that a lane's two rows are one 8-byte load), column k = 4·rank + slot for ranks
//   0–3 and 16 + 4·(rank − 4) + slot for ranks 4–7; slot b ↔ the nibble 2b of the word in the
//   "even" matrix, 2b + 1 in the "odd" one. A lane's a-register is then one rank's word with its
//   even (x & 0x0f0f0f0f) or odd ((x >> 4) & 0x0f0f0f0f) nibbles as bytes: 3 instructions per 8
//   codes, no transposition.
// - B (32 × 8 bytes): column n = 2·slot + p, B[(rank, slot), n] = byte p of m_rank when the slots
//   agree, else 0 (block-diagonal over the 4 slots); the first mma takes the planes p = 0, 1, the
//   second p = 2, 3 (m ≤ 2^20: plane 3 is 0). A lane's b-register is one PRMT of m_rank.
// - D (16 × 8 int32): lane (g, t) = (lane/4, lane%4) gets rows g and g + 8, columns 2t, 2t + 1:
//   the planes 0 and 1 of slot t (and plane 2 from the second mma), so
//   acc = D0 + D1·2^8 + D2·2^16 = Σ_i q_i·m_i exactly (every plane sum ≤ 8·15·255; acc < 2^27;
//   symmetric codes offset to unsigned as in fc5, with −8·Σm_i entering as the first mma's C).
//   The lane holds values 2t and 2t + 1 of words 2g and 2g + 1: bytes 8g + t and 8g + 4 + t of the
//   group's output codes, one byte store each.
// - The group's extremes come from the integer sums: t(acc) = fl(fl(acc)·2^(E−146)) (+ L) is
//   non-decreasing in acc, so min t = t(min acc) and max t = t(max acc) (max |t| is at one of
//   them), two warp reductions (redux.sync) per group instead of float min/max per value. The
//   spec's first-of-equal rule for a zero extreme cannot matter here: t is never −0 (acc = 0 gives
//   y = +0, and +0 + L is −0 only for L = −0 and y = −0).
// - Per step, lanes share the scalar work: lane l holds rank l%8's scale of groups l/8 and l/8 + 4
//   (E by three xor-shuffles, m_i, the symmetric offset), the minima's rank-order sum L of group
//   l%8, and after the mma's the new scale, minimum and reciprocal of group l%8 (one division and
//   one reciprocal per lane and step, not per group); the values' encode fetches them by shuffle.
// - Loads: cp.async into a ring of 3 shared-memory stages per warp (Fc7Stage), so that two steps
//   are in flight while one is computed. The first version kept the next step in registers,
//   issued after the mma's (128 registers, 2 blocks per SM): on the H200 it ran 27 thread
//   instructions per value at only 53% of the issue slots (39.5% of cycles with no eligible
//   warp) and reached 59.7% of the copy, latency-bound (session 13, call 1).
// Limits: BITS = 4, G = 128, 2, 4 or 8 ranks (reduce_codec sends everything else to fc5/fc2).
// Checked on the CPU by runtime/tests/emulate_fc_kernels DIR --v7 (an mma stand-in that exchanges
// the fragments at a warp barrier), on the GPU by odyssey-rt test codec (kernels 7); timed by
// odyssey-rt bench codec --kernels 7,6.
constexpr int kFc7Groups = 8;  // groups per warp step

// d = a·b + c, mma.sync.aligned.m16n8k32.row.col.s32.u8.u8.s32 (sm_80+), defined by the includer
// (flashcomm.cu: the PTX; the emulation: the fragments exchanged at a warp barrier).
__device__ __forceinline__ void fc_mma_u8_16832(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                const int32_t (&c)[4]);

// A warp's stage of one step: the 8 groups' codes of every rank (rank r's 16-byte chunk c at
// chunk c ^ fc7_swizzle(r): without it the ranks 0 and 2 of a lane quarter fall on the same banks
// in the 8-byte fragment loads), scales and minima. Three stages per warp, two steps in flight
// while one is computed: 8 warps × 3 × 4.5 KiB + the scalars = 109 KiB per block, 2 blocks per SM.
constexpr int kFc7Stages = 3;
struct Fc7Stage {
  uint32_t code[kFc7Groups][8][16];
  float scale[kFc7Groups][8];
  float mins[kFc7Groups][8];
};
__host__ __device__ constexpr int fc7_swizzle(int rank) { return ((rank >> 1) & 1) << 1; }
inline size_t fc7_smem_bytes() { return (size_t)kWarps * (kFc7Groups * 16 + kFc7Stages * sizeof(Fc7Stage)); }

template <bool SYM, int NR>
__global__ void __launch_bounds__(kThreads, 2)
    fc7_reduce(const uint8_t* __restrict__ recv, Geometry g, size_t slot, uint8_t* __restrict__ out, int* flag) {
  constexpr int NG = kFc7Groups, NH = NR > 4 ? 2 : 1;  // NH: ranks per lane (t, t + 4)
  constexpr unsigned kAll = 0xffffffffu;
  constexpr float kQ = Lane<4, SYM, 32, 1>::kQ, kBias = Lane<4, SYM, 32, 1>::kBias;
  constexpr uint32_t kGroupBytes = 64;  // 128 INT4 codes
  constexpr float kLimit = 3.402823466e38f;                 // not finite: bad
  const int lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int mr = lane & 7, mj = lane >> 3;  // metadata role: rank mr of groups mj and mj + 4
  const uint32_t ngroups = (uint32_t)g.ngroups, steps = (ngroups + NG - 1) / NG;
  const uint32_t warp = blockIdx.x * kWarps + threadIdx.x / 32, nwarps = gridDim.x * kWarps;
  // B selectors: byte gq/2 of the b-register takes byte p of m, the other bytes 0.
  const int bpos = 4 * (gq >> 1);
  const uint32_t sel01 = (0x4444u & ~(0xfu << bpos)) | ((uint32_t)(gq & 1) << bpos);
  const uint32_t sel2 = (0x4444u & ~(0xfu << bpos)) | ((uint32_t)(2 + (gq & 1)) << bpos);
  // Per warp, the encode's scalars of the step's groups (fast path): {P, L, lo, r} asymmetric,
  // {P·r} symmetric (P = 2^(E−146)); then the warp's ring of kFc7Stages stages.
  uint8_t* smem = fc_dyn_smem();
  float4* scal = reinterpret_cast<float4*>(smem) + NG * (threadIdx.x / 32);
  Fc7Stage* ring = reinterpret_cast<Fc7Stage*>(smem + kWarps * NG * sizeof(float4)) + kFc7Stages * (threadIdx.x / 32);
  // The lane's code words in a stage: chunk gq/2 of its rank (swizzled), words 2(gq%2), +1.
  const int cword = 4 * ((gq >> 1) ^ fc7_swizzle(tq)) + 2 * (gq & 1);

  // Starts the copies of step st into stage sg: instruction j copies group g0 + j, lane l its
  // 16-byte chunk l % 4 of rank l / 4; then the scales and (asymmetric) the minima, item k =
  // lane + 32·i ↔ group k / 8, rank k % 8. The groups of a partial last step past the end copy the
  // last group (valid memory, never stored); ranks ≥ NR copy nothing (never read).
  auto issue = [&](uint32_t st, Fc7Stage& sg) {
    const uint32_t g0 = st * NG;
    const int r = lane >> 2, c = lane & 3;
    if (r < NR) {
      const uint8_t* src = recv + (size_t)r * slot + 16 * c;
#pragma unroll
      for (int j = 0; j < NG; j++)
        fc_cp_async16(&sg.code[j][r][4 * (c ^ fc7_swizzle(r))], src + (size_t)min(g0 + j, ngroups - 1) * kGroupBytes);
    }
    const uint8_t* meta = recv + g.code_bytes;
#pragma unroll
    for (int i = 0; i < NG * 8 / 32; i++) {
      const int k = lane + 32 * i, j = k >> 3, rr = k & 7;
      if (rr < NR) {
        const uint8_t* m = meta + (size_t)rr * slot + (size_t)min(g0 + j, ngroups - 1) * 4;
        fc_cp_async4(&sg.scale[j][rr], m);
        if (!SYM) fc_cp_async4(&sg.mins[j][rr], m + (size_t)g.ngroups * 4);
      }
    }
  };

  // Prologue: the first kFc7Stages − 1 steps in flight.
#pragma unroll
  for (int p = 0; p < kFc7Stages - 1; p++) {
    const uint32_t stp = warp + p * nwarps;
    if (stp < steps) issue(stp, ring[p]);
    fc_cp_async_commit();
  }
  int cur = 0;
  for (uint32_t st = warp; st < steps; st += nwarps, cur = cur + 1 == kFc7Stages ? 0 : cur + 1) {
    const uint32_t g0 = st * NG;
    {
      const uint32_t ahead = st + (kFc7Stages - 1) * nwarps;
      const int sa = cur == 0 ? kFc7Stages - 1 : cur - 1;  // the stage the previous step used
      if (ahead < steps) issue(ahead, ring[sa]);
      fc_cp_async_commit();  // possibly empty: the wait below still means "step st has landed"
      fc_cp_async_wait<kFc7Stages - 1>();
      __syncwarp();
    }
    const Fc7Stage& sg = ring[cur];
    float sc[2];
#pragma unroll
    for (int h = 0; h < 2; h++) sc[h] = mr < NR ? sg.scale[mj + 4 * h][mr] : 0.f;
    // Metadata of the step: E, P = 2^(E−146) and m of groups mj, mj + 4 (this lane's rank mr),
    // the symmetric offsets, and L of group mr.
    int32_t m[2], off[2];
    float P[2];
    uint32_t Eh[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
      uint32_t eb = __float_as_uint(sc[h]);  // scales are positive (or a flagged NaN): order as bits
#pragma unroll
      for (int o = 1; o < 8; o <<= 1) eb = max(eb, __shfl_xor_sync(kAll, eb, o));
      Eh[h] = fc_group_exp(__int_as_float(eb));
      P[h] = fc_int_unit(Eh[h]);
      m[h] = mr < NR ? fc_int_scale(sc[h], fc_int_scale_factors(Eh[h] == 255u ? 146u : Eh[h])) : 0;
      off[h] = 0;
      if (SYM) {
        int32_t ms = m[h];
#pragma unroll
        for (int o = 1; o < 8; o <<= 1) ms += __shfl_xor_sync(kAll, ms, o);
        off[h] = -8 * ms;
      }
    }
    float Lsum = 0.f;  // +0.0f; group mr's minima in rank order
    if (!SYM)
#pragma unroll
      for (int i = 0; i < NR; i++) Lsum = __fadd_rn(Lsum, sg.mins[mr][i]);

    // The exact sums (tensor cores) and each group's integer extremes; lane l keeps group l%8's.
    int32_t acc[NG][4];  // [j][0]: word 2gq, value 2tq; [1]: word 2gq+1, value 2tq; [2], [3]: value 2tq+1
    int32_t own_min = 0, own_max = 0;
#pragma unroll
    for (int j = 0; j < NG; j++) {
      const int src = 8 * (j & 3) + tq, h = j >> 2;
      const int32_t mt = __shfl_sync(kAll, m[h], src);
      const int32_t mt4 = NR > 4 ? __shfl_sync(kAll, m[h], src + 4) : 0;
      const int32_t c0 = SYM ? __shfl_sync(kAll, off[h], 8 * (j & 3)) : 0;
      const uint32_t b01[2] = {__byte_perm((uint32_t)mt, 0u, sel01), __byte_perm((uint32_t)mt4, 0u, sel01)};
      const uint32_t b2[2] = {__byte_perm((uint32_t)mt, 0u, sel2), __byte_perm((uint32_t)mt4, 0u, sel2)};
      uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
      for (int h = 0; h < NH; h++) {
        if (tq + 4 * h < NR) {
          const uint2 u = *reinterpret_cast<const uint2*>(&sg.code[j][tq + 4 * h][cword]);
          w[2 * h] = u.x, w[2 * h + 1] = u.y;
        }
      }
      uint32_t ae[4], ao[4];
#pragma unroll
      for (int q = 0; q < 4; q++) {
        // Symmetric codes become unsigned (code + 8, as fc5): flip the nibble's top bit.
        ae[q] = (w[q] & 0x0f0f0f0fu) ^ (SYM ? 0x08080808u : 0u);
        ao[q] = ((w[q] >> 4) & 0x0f0f0f0fu) ^ (SYM ? 0x08080808u : 0u);
      }
      const int32_t cz[4] = {0, 0, 0, 0}, cs[4] = {c0, 0, c0, 0};
      int32_t de[4], de2[4], dd[4], dd2[4];
      fc_mma_u8_16832(de, ae, b01, cs);
      fc_mma_u8_16832(de2, ae, b2, cz);
      fc_mma_u8_16832(dd, ao, b01, cs);
      fc_mma_u8_16832(dd2, ao, b2, cz);
      // Plane sums are ≥ 0 except the first (the offset): combine in unsigned arithmetic.
      auto planes = [](int32_t p0, int32_t p1, int32_t p2) {
        return (int32_t)((uint32_t)p0 + ((uint32_t)p1 << 8) + ((uint32_t)p2 << 16));
      };
      acc[j][0] = planes(de[0], de[1], de2[0]);
      acc[j][1] = planes(de[2], de[3], de2[2]);
      acc[j][2] = planes(dd[0], dd[1], dd2[0]);
      acc[j][3] = planes(dd[2], dd[3], dd2[2]);
      const int32_t lmin = min(min(acc[j][0], acc[j][1]), min(acc[j][2], acc[j][3]));
      const int32_t lmax = max(max(acc[j][0], acc[j][1]), max(acc[j][2], acc[j][3]));
      const int32_t gmin = __reduce_min_sync(kAll, lmin), gmax = __reduce_max_sync(kAll, lmax);
      if (mr == j) own_min = gmin, own_max = gmax;
    }

    // Group mr's new scale, minimum and reciprocal (Lane::encode_from's arithmetic on the
    // extremes t(min acc), t(max acc)). A shuffle sends the source lane's register: fetch both
    // halves, then choose.
    const float p_lo = __shfl_sync(kAll, P[0], 8 * (mr & 3)), p_hi = __shfl_sync(kAll, P[1], 8 * (mr & 3));
    const float Po = mr < 4 ? p_lo : p_hi;
    const float tmin = SYM ? __fmul_rn(__int2float_rn(own_min), Po) : __fadd_rn(__fmul_rn(__int2float_rn(own_min), Po), Lsum);
    const float tmax = SYM ? __fmul_rn(__int2float_rn(own_max), Po) : __fadd_rn(__fmul_rn(__int2float_rn(own_max), Po), Lsum);
    float s, lo;
    bool bad;
    if (SYM) {
      const float a = max_nan(fabsf(tmin), fabsf(tmax));
      bad = !(a <= kLimit);
      s = __fdiv_rn(a, kQ);
      lo = 0.f;
    } else {
      bad = !(tmin >= -kLimit && tmax <= kLimit);
      s = __fdiv_rn(__fsub_rn(tmax, tmin), kQ);
      lo = tmin;
    }
    if (s == 0.f) s = 1.f;
    const float r = __frcp_rn(s);
    // The fast encode folds P. y = fl(acc)·P is always exact: fl(acc) is an integer of at most
    // 24 significant bits and P = 2^(E−146) ≥ 2^−145 (E ≥ 1), so the product is a multiple of
    // 2^−149 (the smallest subnormal) below the overflow bound: representable, also when
    // subnormal. Hence fl(y + L) = fma(fl(acc), P, L) (asymmetric), and fl(y·r) =
    // fl(fl(acc)·(P·r)) when P·r is normal (symmetric: the scaling of r by P is then exact).
    // Groups where that fails, or whose scale is subnormal (the spec divides), take the exact
    // path below.
    const float Pr = __fmul_rn(Po, r);
    const bool fast = !bad && s >= 0x1p-126f && (!SYM || (Pr >= 0x1p-126f && Pr <= kLimit));
    const uint32_t bad_mask = __ballot_sync(kAll, bad), slow_mask = __ballot_sync(kAll, !bad && !fast);
    if (lane < NG) {
      scal[lane] = SYM ? make_float4(Pr, 0.f, 0.f, 0.f) : make_float4(Po, Lsum, lo, r);
      if (g0 + lane < ngroups) {
        float* meta = reinterpret_cast<float*>(out + g.code_bytes);
        meta[g0 + lane] = bad ? __int_as_float(0x7fc00000) : s;
        if (!SYM) meta[g.ngroups + g0 + lane] = bad ? __int_as_float(0x7fc00000) : lo;
        if (bad && flag) atomicOr(flag, ODY_FC_BAD_SUM);
      }
    }
    __syncwarp();

    // Requantize: the lane's 4 values of every group, 2 bytes of codes each.
    uint8_t* o = out + (size_t)g0 * kGroupBytes + 8 * gq + tq;
    const bool full = g0 + NG <= ngroups;
#pragma unroll
    for (int j = 0; j < NG; j++) {
      const float4 k = scal[j];
      uint32_t c[4];
#pragma unroll
      for (int q = 0; q < 4; q++) {
        const float x = __int2float_rn(acc[j][q]);
        const float quot = SYM ? __fmul_rn(x, k.x) : __fmul_rn(__fsub_rn(__fmaf_rn(x, k.x, k.y), k.z), k.w);
        c[q] = __float_as_uint(__fadd_rn(quot, kBias));  // no clamp (Lane::encode)
      }
      if ((slow_mask >> j) & 1u) {
        // The spec's operations one by one: y = fl(fl(acc)·P), t = fl(y + L), the quotient by
        // the reciprocal for a normal scale, else the division (with the clamp).
        const float sj = __shfl_sync(kAll, s, j), rj = __shfl_sync(kAll, r, j), Pj = __shfl_sync(kAll, Po, j);
        const float Lj = SYM ? 0.f : __shfl_sync(kAll, Lsum, j), loj = SYM ? 0.f : __shfl_sync(kAll, lo, j);
#pragma unroll
        for (int q = 0; q < 4; q++) {
          const float y = __fmul_rn(__int2float_rn(acc[j][q]), Pj);
          const float d = SYM ? y : __fsub_rn(__fadd_rn(y, Lj), loj);
          if (sj >= 0x1p-126f) {
            c[q] = __float_as_uint(__fadd_rn(__fmul_rn(d, rj), kBias));
          } else {
            const float f = __fadd_rn(__fdiv_rn(d, sj), kBias);
            c[q] = __float_as_uint(SYM ? fminf(fmaxf(f, kBias - kQ), kBias + kQ) : fminf(f, kBias + kQ));
          }
        }
      }
      // Asymmetric codes are the low byte (0..15) of 2^23 + code; symmetric ones the low nibble.
      uint32_t b0 = SYM ? (c[0] & 0xfu) | (c[2] << 4) : c[0] + (c[2] << 4);
      uint32_t b1 = SYM ? (c[1] & 0xfu) | (c[3] << 4) : c[1] + (c[3] << 4);
      if ((bad_mask >> j) & 1u) b0 = b1 = 0u;
      if (full || g0 + j < ngroups) {
        o[j * kGroupBytes] = (uint8_t)b0;
        o[j * kGroupBytes + 4] = (uint8_t)b1;
      }
    }
    __syncwarp();  // the step's scal and stage reads are done before they are written again
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

// ---------------------------------------------------------------- host helpers of the launches

// Lanes per group for pieces of PV values (L ≥ 2 when the group has two pieces, so that a load
// instruction covers whole 32-byte sectors; at most 32/PV pieces of a group per lane).
inline int lanes_per_group(int group, int pv) {
  const int pg = group / pv, npl = 32 / pv;
  return std::max(std::min(2, pg), pg / npl);
}

inline Placement placement(const Geometry& g, size_t width) {
  Placement p;
  p.gpr = fast_div((uint32_t)(width / g.group));
  p.gpc = fast_div((uint32_t)(g.cols / g.group));
  return p;
}

// ---------------------------------------------------------------- dispatch of the launches
// The includer defines the two functions below: flashcomm.cu launches on the device, the host
// emulation runs the kernel body on threads.

// Launches kernel k over `grid` blocks of kThreads on stream (with smem bytes of dynamic shared
// memory: fc_launch_smem).
template <class... P, class... A>
void fc_launch(void (*k)(P...), unsigned grid, void* stream, A... a);
template <class... P, class... A>
void fc_launch_smem(void (*k)(P...), unsigned grid, size_t smem, void* stream, A... a);
// Blocks for a grid-stride kernel: one wave of resident blocks, or fewer when the work is smaller.
// smem: the kernel's dynamic shared memory per block (the includer also opts the kernel in when
// it exceeds the default 48 KiB).
unsigned wave_grid(const void* kernel, size_t blocks_needed, size_t smem = 0);

template <class T, int BITS, bool SYM, int PPL, bool PF>
void quantize2(const T* x, const Geometry& g, size_t width, int L, uint8_t* m, size_t slot, int* flag,
               bool rcp, void* st) {
  const uint32_t ngroups = (uint32_t)(g.rows * width / g.group);
  const uint32_t per_tile = 32u * (4 / PPL) / L;
  const size_t tiles = (ngroups + per_tile - 1) / per_tile;
  auto k = fc2_quantize<T, BITS, SYM, PPL, PF>;
  fc_launch(k, wave_grid((const void*)k, (tiles + kWarps - 1) / kWarps), st, x, g, placement(g, width), ngroups,
                                                                                     L, m, slot, flag, rcp);
}

template <class T, int BITS, bool SYM, bool PF>
void quantize2_ppl(const T* x, const Geometry& g, size_t width, uint8_t* m, size_t slot, int* flag, bool rcp, void* st) {
  const int L = lanes_per_group(g.group, 8), ppl = g.group / 8 / L;
  if (ppl == 1) quantize2<T, BITS, SYM, 1, PF>(x, g, width, L, m, slot, flag, rcp, st);
  else if (ppl == 2) quantize2<T, BITS, SYM, 2, PF>(x, g, width, L, m, slot, flag, rcp, st);
  else quantize2<T, BITS, SYM, 4, PF>(x, g, width, L, m, slot, flag, rcp, st);
}

template <class T, bool PF>
void quantize2_bits(const T* x, const Geometry& g, size_t width, uint8_t* m, size_t slot, int* flag, bool rcp, void* st) {
  // PF (v6) is launched for INT4 only (quantize_codec, the one caller): no INT8 instantiation.
  if constexpr (!PF) {
    if (g.bits == 8) {
      if (!g.sym) quantize2_ppl<T, 8, false, false>(x, g, width, m, slot, flag, rcp, st);
      else quantize2_ppl<T, 8, true, false>(x, g, width, m, slot, flag, rcp, st);
      return;
    }
  }
  if (!g.sym) quantize2_ppl<T, 4, false, PF>(x, g, width, m, slot, flag, rcp, st);
  else quantize2_ppl<T, 4, true, PF>(x, g, width, m, slot, flag, rcp, st);
}

// The quantize of kernels `version` ≥ 2: v2 divides, v3–v5 multiply by a checked reciprocal,
// v6 is fc2_quantize's PF variant (prefetch, clamp-free encode, 16-bit extremes) for INT4.
template <class T>
void quantize_codec(int version, const T* x, const Geometry& g, size_t width, uint8_t* m, size_t slot, int* flag,
                    void* st) {
  // v6 prefetches for INT4 only: once the tie check was gone (session 12, call 3) the plain
  // quantize beat the prefetching one for INT8 at 256 MiB (asymmetric 90.1 against 86.6% of the
  // copy, symmetric 91.7 against 85.8), while for INT4 the prefetch still wins (92.4 against 79.7).
  if (version >= 6 && g.bits == 4) quantize2_bits<T, true>(x, g, width, m, slot, flag, true, st);
  else quantize2_bits<T, false>(x, g, width, m, slot, flag, version >= 3, st);
}

template <int BITS, bool SYM, int PV, int PPL>
void reduce2(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, int* flag, bool rcp, void* st) {
  const int L = lanes_per_group(g.group, PV);
  const size_t per_tile = 32u * (32 / PV / PPL) / L, tiles = (g.ngroups + per_tile - 1) / per_tile;
  auto k = fc2_reduce<BITS, SYM, PV, PPL>;
  fc_launch(k, wave_grid((const void*)k, (tiles + kWarps - 1) / kWarps), st, recv, ranks, g, L, slot, out, flag, rcp);
}

template <int BITS, bool SYM>
void reduce2_layout(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, int* flag,
                    bool rcp, void* st) {
  // Pieces of 16 bytes of codes (16 INT8 or 32 INT4 values) when the group is that large.
  const int pv = std::min(g.group, 128 / BITS);
  const int ppl = g.group / pv / lanes_per_group(g.group, pv);
  if (pv == 8) {
    reduce2<BITS, SYM, 8, 1>(recv, ranks, g, slot, out, flag, rcp, st);
  } else if (pv == 16 && ppl == 1) {
    reduce2<BITS, SYM, 16, 1>(recv, ranks, g, slot, out, flag, rcp, st);
  } else if constexpr (BITS == 8) {
    reduce2<BITS, SYM, 16, 2>(recv, ranks, g, slot, out, flag, rcp, st);  // G ≥ 64
  } else {
    reduce2<BITS, SYM, 32, 1>(recv, ranks, g, slot, out, flag, rcp, st);  // G ≥ 32
  }
}

// The fast reduce where it applies (G ≥ a 16-byte piece; 2, 4 or 8 ranks), else the generic one.
template <int BITS, bool SYM>
void reduce5(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, int* flag, void* st) {
  constexpr int PV = 128 / BITS;
  if (g.group < PV || (ranks != 2 && ranks != 4 && ranks != 8)) {
    reduce2_layout<BITS, SYM>(recv, ranks, g, slot, out, flag, true, st);
    return;
  }
  int log2_L = 0;
  while ((PV << log2_L) < g.group) log2_L++;
  const size_t tiles = ((g.ngroups << log2_L) + 31) / 32, blocks = (tiles + kWarps - 1) / kWarps;
  const size_t smem = fc5_smem_bytes(ranks);
  auto k = ranks == 8 ? fc5_reduce<BITS, SYM, 8> : ranks == 4 ? fc5_reduce<BITS, SYM, 4> : fc5_reduce<BITS, SYM, 2>;
  fc_launch_smem(k, wave_grid((const void*)k, blocks, smem), smem, st, recv, g, log2_L, slot, out, flag);
}

// The tensor-core reduce (kernels v7) for INT4 g128 on 2, 4 or 8 ranks.
template <bool SYM>
void reduce7(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, int* flag, void* st) {
  const size_t steps = (g.ngroups + kFc7Groups - 1) / kFc7Groups, blocks = (steps + kWarps - 1) / kWarps;
  const size_t smem = fc7_smem_bytes();
  auto k = ranks == 8 ? fc7_reduce<SYM, 8> : ranks == 4 ? fc7_reduce<SYM, 4> : fc7_reduce<SYM, 2>;
  fc_launch_smem(k, wave_grid((const void*)k, blocks, smem), smem, st, recv, g, slot, out, flag);
}

// "Kernels" 8: not a codec, a bandwidth probe for the reduce's access pattern (odyssey-rt bench
// codec --kernels 8): each thread XORs the 16-byte piece p of the N received messages (codes
// and metadata alike, N loads in flight) and writes it to piece p of the output: the same bytes
// read and written as step 3, no arithmetic. Its % of copy is the ceiling a reduce of this
// layout can reach on the device (issue 9's 80% goal for the INT4 reduce, session 13).
template <int NR>
__global__ void __launch_bounds__(kThreads)
    fc_probe_reduce(const uint8_t* __restrict__ recv, size_t npieces, size_t slot, uint8_t* __restrict__ out) {
  for (size_t p = (size_t)blockIdx.x * kThreads + threadIdx.x; p < npieces; p += (size_t)gridDim.x * kThreads) {
    uint4 a[NR];
#pragma unroll
    for (int i = 0; i < NR; i++) a[i] = *reinterpret_cast<const uint4*>(recv + (size_t)i * slot + 16 * p);
    uint4 r = a[0];
#pragma unroll
    for (int i = 1; i < NR; i++) r.x ^= a[i].x, r.y ^= a[i].y, r.z ^= a[i].z, r.w ^= a[i].w;
    *reinterpret_cast<uint4*>(out + 16 * p) = r;
  }
}
inline void reduce_probe(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, void* st) {
  const size_t bytes = g.code_bytes + g.ngroups * (g.sym ? 4 : 8), npieces = (bytes + 15) / 16;  // ≤ slot / 16
  auto k = ranks == 8 ? fc_probe_reduce<8> : ranks == 4 ? fc_probe_reduce<4> : ranks == 2 ? fc_probe_reduce<2> : fc_probe_reduce<1>;
  fc_launch(k, wave_grid((const void*)k, (npieces + kThreads - 1) / kThreads), st, recv, npieces, slot, out);
}

// The reduce of kernels `version` (1 to 7; 8: the probe above). Every version computes the integer-scale reduce;
// 7 takes the tensor-core kernel for INT4 g128 on 2, 4 or 8 ranks, 4–7 the fast kernel elsewhere
// where it applies, 1–3 the generic one (1 and 2 requantize with an IEEE division per value, 3
// with the checked reciprocal).
inline void reduce_codec(int version, const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out,
                         int* flag, void* st) {
  const bool rcp = version >= 3;
  if (version == 8) {
    reduce_probe(recv, ranks, g, slot, out, st);
    return;
  }
  if (version >= 7 && g.bits == 4 && g.group == 128 && (ranks == 2 || ranks == 4 || ranks == 8)) {
    if (g.sym) reduce7<true>(recv, ranks, g, slot, out, flag, st);
    else reduce7<false>(recv, ranks, g, slot, out, flag, st);
  } else if (version >= 4) {
    if (g.bits == 8 && !g.sym) reduce5<8, false>(recv, ranks, g, slot, out, flag, st);
    else if (g.bits == 8) reduce5<8, true>(recv, ranks, g, slot, out, flag, st);
    else if (!g.sym) reduce5<4, false>(recv, ranks, g, slot, out, flag, st);
    else reduce5<4, true>(recv, ranks, g, slot, out, flag, st);
  } else if (g.bits == 8 && !g.sym) reduce2_layout<8, false>(recv, ranks, g, slot, out, flag, rcp, st);
  else if (g.bits == 8) reduce2_layout<8, true>(recv, ranks, g, slot, out, flag, rcp, st);
  else if (!g.sym) reduce2_layout<4, false>(recv, ranks, g, slot, out, flag, rcp, st);
  else reduce2_layout<4, true>(recv, ranks, g, slot, out, flag, rcp, st);
}

template <class T, int BITS, bool SYM>
void dequantize2(const uint8_t* r, const Geometry& g, size_t width, size_t slot, const T* residual, T* y,
                 void* st) {
  const uint32_t npieces = (uint32_t)(g.rows * width / 8);
  int log2_ppg = 0;
  while ((8 << log2_ppg) < g.group) log2_ppg++;
  const size_t spans = (npieces + 255) / 256;
  auto k = fc2_dequantize<T, BITS, SYM>;
  fc_launch(k, wave_grid((const void*)k, (spans + kWarps - 1) / kWarps), st, r, g, placement(g, width), npieces,
                                                                                     log2_ppg, slot, residual, y);
}

template <class T>
void dequantize2_codec(const uint8_t* r, const Geometry& g, size_t width, size_t slot, const T* residual, T* y,
                       void* st) {
  if (g.bits == 8 && !g.sym) dequantize2<T, 8, false>(r, g, width, slot, residual, y, st);
  else if (g.bits == 8) dequantize2<T, 8, true>(r, g, width, slot, residual, y, st);
  else if (!g.sym) dequantize2<T, 4, false>(r, g, width, slot, residual, y, st);
  else dequantize2<T, 4, true>(r, g, width, slot, residual, y, st);
}

}  // namespace
}  // namespace odyssey
