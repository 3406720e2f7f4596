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
// The division t = (v − lo)/s (or v/s) must give the code of the correctly rounded quotient:
// Go's reference divides (div.rn.f32), and a multiplication by 1/s rounds differently near the
// ties n + 1/2. Version 2 divides every value (__fdiv_rn: a MUFU reciprocal, five FFMA, a range
// check and a branch, about 13 of the ~17 issue slots per value of quantize, measured in the
// SASS). Version 3 (the default) computes t' = d·fl(1/s) with one multiplication and checks it:
// t' and fl(d/s) both lie within 3.01·u·|t| ≤ 0.75·2^−14 of d/s for |t| < 256 (u = 2^−24; t
// is below Q·(1 + 3u) by the scale's construction), so they round to the same integer unless
// t' lies within 2^−13 of a half-integer; rint(t') comes from the 2^23 trick and t' − rint(t')
// is exact, so the check costs two additions and a compare. Values that fail it (about 1 in
// 4000 at random, every NaN, and every value of a group whose scale is outside [2^−100, 2^100]
// where 1/s could leave the normal range) make the warp redo that piece with the division,
// decided by a vote. runtime/tests/test_fc_tricks.cpp checks the rule against the division on
// random groups of every magnitude and on every tie's neighbours, and fails when the margin
// or the reciprocal is off by one step. Quantize drops to about 9 issue slots per value.

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
  // rcp: divide by multiplying with 1/s where that provably gives the same code (kernels v3).
  // kV5 (the v5 reduce; needs rcp): the reciprocal path skips the clamp and INT4 asymmetric
  // codes pack without masks. Why that is exact: the fast path's codes are used only when no
  // lane of the warp redoes the piece, i.e. s in [2^−100, 2^100] and t' is off every tie; then
  // s = fl(D/Q) ≥ (D/Q)(1 − u) with D = fl(max − min) (or max|v|) and |d| ≤ D, so
  // |t| ≤ Q/(1 − u)·(1 + u) < Q + 1/2 and rint(t) is already inside [−Q, Q] (asymmetric: [0, Q]).
  // The division path (the redo) keeps the clamp: a subnormal or infinite s can push t past Q.
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
    float r[GPL];  // rcp: 1/s correctly rounded, and whether s is in the range where it is used
    bool r_ok[GPL];
#pragma unroll
    for (int k = 0; k < GPL; k++) {
      r[k] = rcp ? __frcp_rn(s[k]) : 0.f;
      r_ok[k] = s[k] >= 0x1p-100f && s[k] <= 0x1p100f;
    }
#pragma unroll
    for (int j = 0; j < NPL; j++) {
      const int k = j / PPL;
      uint32_t c[PV];  // bits of kBias + code: the code in the low bits
      bool redo = false;
#pragma unroll
      for (int e = 0; e < PV; e++) {
        const float x = v[j * PV + e];
        const float d = SYM ? x : __fsub_rn(x, lo[k]);
        float f;
        if (rcp) {
          // t' = d·(1/s) is within 3.1·u·|t| ≤ 2^−14.3 of fl(d/s) (|t| < 256): it rounds to the
          // same integer unless it lies within 2^−13 of a half-integer (or is NaN); the exact
          // division decides those (the vote below), about 1 value in 4000.
          const float tp = __fmul_rn(d, r[k]);
          f = __fadd_rn(tp, kBias);
          redo |= !(fabsf(__fsub_rn(tp, __fsub_rn(f, kBias))) < 0.5f - 0x1p-13f);
        } else {
          f = __fadd_rn(__fdiv_rn(d, s[k]), kBias);
        }
        if (kV5 && rcp) c[e] = __float_as_uint(f);  // no clamp needed (see above)
        else c[e] = __float_as_uint(SYM ? fminf(fmaxf(f, kBias - kQ), kBias + kQ) : fminf(f, kBias + kQ));  // asym: t ≥ 0
      }
      if (rcp && __any_sync(0xffffffffu, redo || !r_ok[k])) {
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
      Ln::template encode_from<PF>(v, a, b, L, sub, 0x1p64f, rcp, codes, s, lo, bad);
    } else {
      Ln::template encode<PF>(v, L, sub, 0x1p64f, rcp, codes, s, lo, bad);
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

// Step 3: the ranks messages at recv + i·slot → one requantized message at out. The lane's
// codes of 4 ranks are loaded before any is decoded (4 × 16 bytes in flight per thread).
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
    Ln::encode(acc, L, sub, 3.402823466e38f, rcp, codes, s, lo, bad);  // not finite: bad
    uint8_t* msg[Ln::GPL];
#pragma unroll
    for (int k = 0; k < Ln::GPL; k++) msg[k] = out;
    store_lane<Ln>(msg, gi, act, codes, s, lo, bad, L, sub, g.group, g.code_bytes, g.ngroups, flag,
                   ODY_FC_BAD_SUM);
  }
}

// ---------------------------------------------------------------- kernels, version 4: the reduce
//
// Why: the v3 reduce took 56–57 µs at 256 MiB for INT8 and INT4 alike (8 ranks, 16 Mi values
// per chunk), although its SASS issues about 55 lane-instructions per output value (~28 µs on
// the H200): half of its time was spent waiting. It loads 4 ranks, waits, decodes them, loads
// the next 4, waits again, with 2 blocks per SM; a lane of 32 values holds 32 accumulators and
// 4 × 16–32 bytes of codes, and 31 address instructions per rank (64-bit products of rank,
// group and piece indices). Version 4 changes only the schedule and the addressing; every float
// operation of the spec stays, in the same order:
//
// - a lane owns one piece of PV values, 16 bytes of codes (INT8: 16 values, 16 accumulators,
//   3 blocks per SM in 80 registers; INT4: 32 values, 2 blocks per SM), so that all ranks (up
//   to 8) are loaded before the first is decoded: 8 × 16 bytes of codes plus the scales and
//   minima in flight per thread. (INT4 with 8-byte pieces of 16 values issues 59 instructions
//   per output value against 50 with 32: the requantization's per-group work, the shuffles,
//   the scale, the rank addresses, spreads over half as many values; measured in the SASS.)
// - a piece p of the chunk is at p·16 bytes in every message and its group is p / L (L = G/PV
//   lanes per group, a power of two dividing 32): one 64-bit base per tile, the rank offsets
//   i·slot are warp-uniform;
// - asymmetric sums start from d_0 instead of +0 + d_0: d_0 = fl(fl(q·s) + lo) with q·s ≥ +0 is
//   never −0 (a zero sum of two floats rounds to +0 unless both are −0), so +0 + d_0 = d_0 for
//   every d_0 that is not NaN, and a NaN sum is refused as bad whatever its payload
//   (runtime/tests/test_fc_tricks.cpp checks it). One float addition per value less. Symmetric
//   sums keep the addition (q·s with s ≥ 2^−149 is not −0 either, but that path is unchanged).
// - the number of ranks NR is a template parameter (2, 4 or 8): a run-time count needs a branch
//   per rank, and nvcc then sinks each rank's loads into its branch, after the previous rank's
//   arithmetic, which serializes the loads again. Groups smaller than a piece and other rank
//   counts take the v3 kernel.
template <int BITS, bool SYM, int NR, int PV>
__global__ void __launch_bounds__(kThreads, PV == 16 ? 3 : 2)
    fc4_reduce(const uint8_t* __restrict__ recv, Geometry g, int log2_L, size_t slot,
               uint8_t* __restrict__ out, int* flag) {
  constexpr int PB = PV * BITS / 8;  // code bytes per lane: 16
  using Ln = Lane<BITS, SYM, PV, 1, PV>;
  const int lane = threadIdx.x & 31, L = 1 << log2_L, sub = lane & (L - 1);
  const uint32_t npieces = (uint32_t)(g.ngroups << log2_L), tiles = (npieces + 31) / 32;
  const uint32_t warp = blockIdx.x * kWarps + threadIdx.x / 32, nwarps = gridDim.x * kWarps;
  const size_t lo_off = g.ngroups * 4;
  for (uint32_t t = warp; t < tiles; t += nwarps) {
    const uint32_t p = t * 32 + lane, gi = p >> log2_L;
    const bool act = p < npieces;  // whole groups: L divides 32 and npieces
    // Loads without branches (a branch lets the compiler sink each rank's loads to its use):
    // an idle lane reads the last piece and stores nothing.
    const uint32_t pl = act ? p : npieces - 1;
    const uint8_t* code = recv + (size_t)pl * PB;
    const uint8_t* meta = recv + g.code_bytes + (size_t)(pl >> log2_L) * 4;
    uint32_t w[NR][Ln::WPP];
    float s[NR], lo[NR];
#pragma unroll
    for (int i = 0; i < NR; i++) {
      const size_t off = (size_t)i * slot;
      Words<Ln::WPP>::load(code + off, w[i]);
      s[i] = *reinterpret_cast<const float*>(meta + off);
      lo[i] = SYM ? 0.f : *reinterpret_cast<const float*>(meta + off + lo_off);
    }
    float acc[PV];
#pragma unroll
    for (int i = 0; i < NR; i++) {  // rank order: 0, 1, ...
      float d[PV];
      Ln::decode(w[i], s[i], lo[i], d);
#pragma unroll
      for (int e = 0; e < PV; e++) acc[e] = i == 0 ? (SYM ? __fadd_rn(0.f, d[e]) : d[e]) : __fadd_rn(acc[e], d[e]);
    }
    uint32_t codes[1][Ln::WPP];
    float so[1], loo[1];
    bool bad[1];
    Ln::encode(acc, L, sub, 3.402823466e38f, true, codes, so, loo, bad);  // not finite: bad
    uint8_t* const msg[1] = {out};
    const uint32_t gis[1] = {gi};
    const bool acts[1] = {act};
    store_lane<Ln>(msg, gis, acts, codes, so, loo, bad, L, sub, g.group, g.code_bytes, g.ngroups, flag,
                   ODY_FC_BAD_SUM);
  }
}

// ---------------------------------------------------------------- kernels, version 5: the reduce
//
// Why: v4's INT4 reduce ran at 52.6% of the copy on an H100 (50–55 µs at 256 MiB, 8 ranks, g128)
// while its SASS issues 52.5 warp-instructions per output value, ~26 µs of issue at 1.98 GHz:
// half of the time no warp of a scheduler was ready. A v4 warp loads every rank of its tile,
// waits for all of them, then computes (1680 instructions per lane): with 4 warps per scheduler
// (128 registers, 2 blocks per SM) and warps that start in step, the schedulers idle while the
// loads fly and the memory idles while they compute. Version 5 (ody_fc_set_kernels(5)):
//
// - double buffering through shared memory: while a warp decodes tile t from one stage, cp.async
//   (sm_80+) brings tile t + nwarps's codes, scales and minima into the other stage, so every
//   warp keeps one tile of loads in flight during its arithmetic and no register holds a loaded
//   code across the loop (v4 already used all 128). A stage is ranks × (32 lanes × 16 B of codes
//   + 64 floats of metadata), two per warp: 96 KiB per block of 8 warps at 8 ranks, 2 blocks per
//   SM (dynamic shared memory, opted in with cudaFuncAttributeMaxDynamicSharedMemorySize). Lane
//   l copies its own 16-byte piece of every rank and metadata items l and l + 32 of the tile
//   (the tile's NG = 32/L scales, then its NG minima), so a __syncwarp after the wait makes the
//   stage visible to the warp; a second __syncwarp ends the reads before the stage is refilled.
// - INT4 unpacking without byte permutes: nibble j of a word (bits 4j..4j+3, j ≤ 4) becomes a
//   float with one LOP3, (w & 0xF<<4j) | bits(2^(23−4j)) = 2^(23−4j) + c exactly (the mantissa
//   unit of that exponent is 1); nibbles 5..7 take the same masks after one shift by 20. So a
//   word of 8 codes costs 9 instructions instead of 11 (two masks, a shift, 8 permutes).
//   Asymmetric: fma(2^(23−4j) + c, s, −2^(23−4j)·s) = c·s rounded once (the product is exact in
//   the fma and 2^(23−4j)·s is exact: a power-of-two scaling up, s ≤ 2^80 as in v2's decode), the
//   same bits as __fmul_rn(c, s); five products −2^(23−4j)·s per rank and lane. Symmetric: the
//   LOP3 also flips bit 3 of the nibble (x ^ 8 inside the mask: c + 8 for two's-complement c),
//   and 2^(23−4j) + c + 8 − (2^(23−4j) + 8) = c exactly (an immediate), then c·s as before.
//   INT8 keeps v2's byte permutes (one per value: already the floor).
// - the requantization drops the clamp on its fast path and packs INT4 asymmetric codes without
//   masks (Lane::encode<true>, where the proof is); everything else, every float operation of
//   the spec and its order (rank 0, 1, ...; asymmetric sums from d_0, v4's rule), is v4's.
//
// Same limits as v4 (2, 4 or 8 ranks, G ≥ a piece; else v3's kernel). Checked on the CPU by
// runtime/tests/emulate_fc_kernels DIR --v5; on the GPU by odyssey-rt test codec --kernels 5,...;
// timed by odyssey-rt bench codec --kernels 5,4 (runtime/scripts/device-run.sh codec).
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
// Waits until at most one group (the newest: the prefetch) is still in flight.
__device__ __forceinline__ void fc_cp_async_wait1() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 1;\n" ::: "memory");
#endif
}

// The block's dynamic shared memory (defined by the includer: extern __shared__ on the device,
// a buffer in the emulation).
__device__ __forceinline__ uint8_t* fc_dyn_smem();

// INT4, one rank's 16-byte piece (32 codes, nibble j of word i is value 8i + j) added into acc:
// acc = d (first rank, asymmetric) or fl(acc + d), d = fl(fl(c·s) + lo) (asymmetric) or fl(c·s).
// The LOP3 operands (w & mask) ^ base: mask an immediate, base in a register (a LOP3 takes one
// 32-bit immediate; with both known, ptxas emits an AND and an XOR, two instructions; an inline
// asm mov does not stop it, ptxas folds through PTX). So `zero`, a run-time 0 that the compiler
// cannot see through (the caller passes log2_L >> 8: log2_L ≤ 5), is added to the bases (an
// addition: with an OR or XOR it re-associated the constant back into the per-code LOP3 for
// the symmetric bases), five instructions per kernel.
template <bool SYM>
__device__ __forceinline__ void fc5_bases(uint32_t zero, uint32_t (&base)[5]) {
#pragma unroll
  for (int pos = 0; pos < 5; pos++) {
    // Exponent 150 − 4·pos; symmetric: bit 3 of the nibble flipped (two's complement c → c + 8).
    base[pos] = (((uint32_t)(150 - 4 * pos) << 23) | (SYM ? 8u << (4 * pos) : 0u)) + zero;
  }
}

template <bool SYM>
__device__ __forceinline__ void fc5_add_int4(const uint32_t (&w)[4], float s, float lo, const uint32_t (&base)[5],
                                             float (&acc)[32], bool first) {
  // 2^(23−4j) for nibble position j: the float whose mantissa unit is 1 at bit 4j.
  constexpr float kP[5] = {8388608.0f, 524288.0f, 32768.0f, 2048.0f, 128.0f};
  float nk[5];
#pragma unroll
  for (int j = 0; j < 5; j++) nk[j] = SYM ? 0.f : -__fmul_rn(kP[j], s);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const uint32_t hi = w[i] >> 20;  // nibbles 5, 6, 7 at positions 0, 1, 2
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const int pos = j < 5 ? j : j - 5;
      const uint32_t src = j < 5 ? w[i] : hi;
      const float b = __int_as_float((src & (0xFu << (4 * pos))) ^ base[pos]);
      float d;
      if (SYM) d = __fmul_rn(__fsub_rn(b, kP[pos] + 8.0f), s);  // kP + 8 is exact; b − (kP + 8) = c exactly
      else d = __fadd_rn(__fmaf_rn(b, s, nk[pos]), lo);
      const int e = 8 * i + j;
      // Symmetric: +0 + d keeps the spec's first addition (d = −0 only for a negative scale).
      acc[e] = first ? (SYM ? __fadd_rn(0.f, d) : d) : __fadd_rn(acc[e], d);
    }
  }
}

template <int BITS, bool SYM, int NR, bool ROLL = false>
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

  uint32_t base[5];
  if constexpr (BITS == 4) fc5_bases<SYM>((uint32_t)log2_L >> 8, base);
  int cur = 0;
  if (warp < tiles) issue(warp, stage[0]);
  fc_cp_async_commit();
  for (uint32_t t = warp; t < tiles; t += nwarps, cur ^= 1) {
    if (t + nwarps < tiles) issue(t + nwarps, stage[cur ^ 1]);
    fc_cp_async_commit();  // possibly empty: then wait1 still means "tile t has landed"
    fc_cp_async_wait1();
    __syncwarp();
    const Fc5Stage<NR>& st = stage[cur];
    const uint32_t p = t * 32 + lane, gi = p >> log2_L;
    const bool act = p < npieces;
    const int gl = lane >> log2_L;  // the lane's group within the tile
    float acc[PV];
    if constexpr (BITS == 4 && ROLL) {
      // v6, INT4: rank 0, then a rolled loop over ranks 1.. (rank order kept). Unrolled over 8
      // ranks the kernel is ~60 KB of SASS and ncu showed 0.88 "no instruction" stalls per
      // issue (session 11 call 2): the instruction cache misses. One rank's body is ~150
      // instructions, enough work per iteration for the loop's own cost to stay small.
      auto add_rank = [&](int i, bool first) {
        const uint4 u = *reinterpret_cast<const uint4*>(st.code[i][lane]);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
        fc5_add_int4<SYM>(w, st.meta[i][gl], SYM ? 0.f : st.meta[i][ng + gl], base, acc, first);
      };
      add_rank(0, true);
#pragma unroll 1
      for (int i = 1; i < NR; i++) add_rank(i, false);
    } else {
#pragma unroll
      for (int i = 0; i < NR; i++) {  // rank order: 0, 1, ...
        const uint4 u = *reinterpret_cast<const uint4*>(st.code[i][lane]);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
        const float s = st.meta[i][gl], lo = SYM ? 0.f : st.meta[i][ng + gl];
        if constexpr (BITS == 4) {
          fc5_add_int4<SYM>(w, s, lo, base, acc, i == 0);
        } else {
          float d[PV];
          Ln::decode(w, s, lo, d);
#pragma unroll
          for (int e = 0; e < PV; e++) acc[e] = i == 0 ? (SYM ? __fadd_rn(0.f, d[e]) : d[e]) : __fadd_rn(acc[e], d[e]);
        }
      }
    }
    __syncwarp();  // every lane has read stage cur before the next iteration refills it
    uint32_t codes[1][Ln::WPP];
    float so[1], loo[1];
    bool bad[1];
    Ln::template encode<true>(acc, L, sub, 3.402823466e38f, true, codes, so, loo, bad);  // not finite: bad
    uint8_t* const msg[1] = {out};
    const uint32_t gis[1] = {gi};
    const bool acts[1] = {act};
    store_lane<Ln>(msg, gis, acts, codes, so, loo, bad, L, sub, g.group, g.code_bytes, g.ngroups, flag,
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
  if (g.bits == 8 && !g.sym) quantize2_ppl<T, 8, false, PF>(x, g, width, m, slot, flag, rcp, st);
  else if (g.bits == 8) quantize2_ppl<T, 8, true, PF>(x, g, width, m, slot, flag, rcp, st);
  else if (!g.sym) quantize2_ppl<T, 4, false, PF>(x, g, width, m, slot, flag, rcp, st);
  else quantize2_ppl<T, 4, true, PF>(x, g, width, m, slot, flag, rcp, st);
}

// The quantize of kernels `version` ≥ 2: v2 divides, v3–v5 multiply by a checked reciprocal,
// v6 is fc2_quantize's PF variant (prefetch, clamp-free encode, 16-bit extremes).
template <class T>
void quantize_codec(int version, const T* x, const Geometry& g, size_t width, uint8_t* m, size_t slot, int* flag,
                    void* st) {
  if (version >= 6) quantize2_bits<T, true>(x, g, width, m, slot, flag, true, st);
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

// Version 4's reduce where it applies (G ≥ 16 for INT8, ≥ 32 for INT4; 2, 4 or 8 ranks), else v3's.
template <int BITS, bool SYM>
void reduce4(const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out, int* flag, void* st) {
  constexpr int PV = 128 / BITS;
  if (g.group < PV || (ranks != 2 && ranks != 4 && ranks != 8)) {
    reduce2_layout<BITS, SYM>(recv, ranks, g, slot, out, flag, true, st);
    return;
  }
  int log2_L = 0;
  while ((PV << log2_L) < g.group) log2_L++;
  const size_t tiles = ((g.ngroups << log2_L) + 31) / 32, blocks = (tiles + kWarps - 1) / kWarps;
  auto k = ranks == 8   ? fc4_reduce<BITS, SYM, 8, PV>
           : ranks == 4 ? fc4_reduce<BITS, SYM, 4, PV>
                        : fc4_reduce<BITS, SYM, 2, PV>;
  fc_launch(k, wave_grid((const void*)k, blocks), st, recv, g, log2_L, slot, out, flag);
}

// Version 5's reduce where it applies (as v4: G ≥ a 16-byte piece; 2, 4 or 8 ranks), else v3's.
template <int BITS, bool SYM, bool ROLL = false>
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
  auto k = ranks == 8   ? fc5_reduce<BITS, SYM, 8, ROLL>
           : ranks == 4 ? fc5_reduce<BITS, SYM, 4, ROLL>
                        : fc5_reduce<BITS, SYM, 2, ROLL>;
  fc_launch_smem(k, wave_grid((const void*)k, blocks, smem), smem, st, recv, g, log2_L, slot, out, flag);
}

// The reduce of kernels `version` (2 to 6; version 1 lives in flashcomm.cu).
inline void reduce_codec(int version, const uint8_t* recv, int ranks, const Geometry& g, size_t slot, uint8_t* out,
                         int* flag, void* st) {
  const bool rcp = version >= 3;
  if (version >= 6 && g.bits == 4) {  // v6: v5's reduce with the INT4 rank loop rolled
    if (!g.sym) reduce5<4, false, true>(recv, ranks, g, slot, out, flag, st);
    else reduce5<4, true, true>(recv, ranks, g, slot, out, flag, st);
  } else if (version >= 5) {
    if (g.bits == 8 && !g.sym) reduce5<8, false>(recv, ranks, g, slot, out, flag, st);
    else if (g.bits == 8) reduce5<8, true>(recv, ranks, g, slot, out, flag, st);
    else if (!g.sym) reduce5<4, false>(recv, ranks, g, slot, out, flag, st);
    else reduce5<4, true>(recv, ranks, g, slot, out, flag, st);
  } else if (version == 4) {
    if (g.bits == 8 && !g.sym) reduce4<8, false>(recv, ranks, g, slot, out, flag, st);
    else if (g.bits == 8) reduce4<8, true>(recv, ranks, g, slot, out, flag, st);
    else if (!g.sym) reduce4<4, false>(recv, ranks, g, slot, out, flag, st);
    else reduce4<4, true>(recv, ranks, g, slot, out, flag, st);
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
