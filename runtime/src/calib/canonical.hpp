// canonical.hpp: the CPU's canonical float32 arithmetic (docs/determinism.md "The canonical
// arithmetic", Go code in gemm/kernel_generic.go, model/mathutil.go, calib/stats.go) written
// once as __host__ __device__ functions, so that the GPU kernels of `odyssey-rt calib
// --precision exact` (calib_exact.cu) and their host references (cli/test_calib_exact.cpp,
// tests/test_canonical_host.cpp) run the same source, operation by operation.
//
// Every rounding is explicit: on the device __fmaf_rn / __fmul_rn / __fadd_rn / __dadd_rn (nvcc
// cannot contract or reorder them, whatever -fmad says); on the host plain float operations,
// which x86-64 (SSE) rounds once each, compiled with -ffp-contract=off (CMakeLists.txt) so that
// GCC does not fuse a·b + c, and std::fma (glibc's fmaf is correctly rounded) for the FMAs.
//
// What each function replicates:
//   canon_fma / mul / add / sub / div    one IEEE float32 operation, round to nearest even
//   canon_exp32                          model/mathutil.go exp32 (Cephes expf, constants by bits)
//   canon_dot                            one element of gemm.Sgemm with beta 0: K blocks of
//                                        kCanonKC from p = 0, within a block acc = fma(a, b, acc)
//                                        from +0 in ascending p, t = fl(alpha·acc), C = t
//                                        (first block) then C = fl(C + t)
//   canon_update                         gemm's update(c, acc, alpha, beta) for the first block
//   canon_gomin / gomax                  Go's builtin min / max (NaN wins, −0 < +0)
//   canon_silu_mul                       model/mathutil.go swiglu: fl(fl(x / fl(1 + exp32(0 − x))) · u)
//   ExpLanes                             model.ExpSum's float64 sum: element i of the first n &^ 7
//                                        into lane i mod 8, ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)),
//                                        then the ≤ 7 last ones in order
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define ODY_HD __host__ __device__ __forceinline__
#else
#define ODY_HD inline
#endif

namespace odyssey::calibgpu::canon {

// gemm's canonicalKC: the K block of every Sgemm element.
constexpr int kCanonKC = 384;
// calib/stats.go statsBlockRows: Σx² and the token maxima's sum are summed per block of 64
// rows (of one Stats.Add call, i.e. one chunk), from 0, and the blocks added in order.
constexpr int kStatsBlockRows = 64;
// model/layer.go attnBlock: query rows per attention task; a task's keys start at
// k0 = max(0, r0 − window + 1) of its first row r0, which fixes P·V's K blocks.
constexpr int kAttnBlock = 64;

ODY_HD float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
ODY_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

ODY_HD float canon_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
ODY_HD float canon_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ODY_HD float canon_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ODY_HD float canon_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
ODY_HD float canon_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
ODY_HD double canon_dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
// float64(v)·float64(v) is exact (48 significant bits), so fusing it or not cannot matter;
// the explicit __dmul_rn only keeps the code readable as "square, then add".
ODY_HD double canon_dsq(float v) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn((double)v, (double)v);
#else
  return (double)v * (double)v;
#endif
}

// Go's builtin min and max on float32: a NaN wins, and −0 < +0 (calib.Stats merges its
// per-block minima and maxima with them; within a block it compares with v < m, v > m).
ODY_HD float canon_gomin(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  if (a == b) return (f32_bits(a) >> 31) ? a : b;
  return a < b ? a : b;
}
ODY_HD float canon_gomax(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  if (a == b) return (f32_bits(a) >> 31) ? b : a;
  return a > b ? a : b;
}

// model/mathutil.go exp32, operation by operation.
ODY_HD float canon_exp32(float x) {
  if (x != x) return x;
  const float hi = f32_from_bits(0x42b00000u), lo = f32_from_bits(0xc2aeac50u);
  if (hi < x) x = hi;
  if (lo > x) x = lo;
  // roundEven(fl(x·log2e)); |x·log2e| < 128, so rintf (round to nearest even, the default
  // mode on both sides) is exact and matches math.RoundToEven.
  const float n = rintf(canon_mul(x, f32_from_bits(0x3fb8aa3bu)));
  float r = canon_fma(-n, f32_from_bits(0x3f318000u), x);
  r = canon_fma(-n, f32_from_bits(0xb95e8083u), r);
  const float rr = canon_mul(r, r);
  float p = f32_from_bits(0x39506967u);
  p = canon_fma(p, r, f32_from_bits(0x3ab743ceu));
  p = canon_fma(p, r, f32_from_bits(0x3c088908u));
  p = canon_fma(p, r, f32_from_bits(0x3d2aa9c1u));
  p = canon_fma(p, r, f32_from_bits(0x3e2aaaaau));
  p = canon_fma(p, r, f32_from_bits(0x3f000000u));
  p = canon_fma(p, rr, r);
  p = canon_add(p, 1.0f);
  return canon_mul(p, f32_from_bits((uint32_t)((int)n + 127) << 23));
}

// swiglu's element: x / (1 + exp32(0 − x)) · u (0 − x, not −x: +0 for x = +0, as Go).
ODY_HD float canon_silu_mul(float x, float u) {
  const float e = canon_exp32(canon_sub(0.0f, x));
  return canon_mul(canon_div(x, canon_add(1.0f, e)), u);
}

// gemm's update for the first K block: C = t (beta 0, C not read), C + t (beta 1), else
// fma(beta, C, t); t = fl(alpha·acc).
ODY_HD float canon_update(float c, float acc, float alpha, float beta) {
  const float t = canon_mul(alpha, acc);
  if (beta == 0.0f) return t;
  if (beta == 1.0f) return canon_add(c, t);
  return canon_fma(beta, c, t);
}

// One element of Sgemm(alpha, beta 0): Σ_p a[p·sa]·b[p·sb] over p < k (k ≥ 1) in the
// canonical K blocks. get_a(p), get_b(p) give the operands (a functor keeps masks and strides
// out of this definition).
template <class GA, class GB>
ODY_HD float canon_dot(int k, float alpha, const GA& get_a, const GB& get_b) {
  float c = 0.0f;
  for (int p0 = 0; p0 < k; p0 += kCanonKC) {
    const int p1 = p0 + kCanonKC < k ? p0 + kCanonKC : k;
    float acc = 0.0f;
    for (int p = p0; p < p1; p++) acc = canon_fma(get_a(p), get_b(p), acc);
    const float t = canon_mul(alpha, acc);
    c = p0 == 0 ? t : canon_add(c, t);
  }
  return c;
}

// model.ExpSum's eight float64 lanes (element i of the first n &^ 7 into l[i % 8]) and their
// pairwise combination; the caller then adds the ≤ 7 last elements in order.
struct ExpLanes {
  double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  ODY_HD double combine() const {
    return canon_dadd(canon_dadd(canon_dadd(l[0], l[4]), canon_dadd(l[2], l[6])),
                      canon_dadd(canon_dadd(l[1], l[5]), canon_dadd(l[3], l[7])));
  }
};

// The attention task geometry of model/layer.go attention for query position pos: the
// first key of its task (k0), the visible keys [lo, hi) and the task's key count n (P·V's K).
struct AttnRow {
  int k0, lo, hi, n;
};
ODY_HD AttnRow attn_row(int pos, int seq, int window) {
  const int r0 = pos / kAttnBlock * kAttnBlock;
  const int r1 = r0 + kAttnBlock < seq ? r0 + kAttnBlock : seq;
  AttnRow a;
  a.k0 = window > 0 ? (r0 - window + 1 > 0 ? r0 - window + 1 : 0) : 0;
  a.lo = window > 0 ? (pos - window + 1 > 0 ? pos - window + 1 : 0) : 0;
  a.hi = pos + 1;
  a.n = r1 - a.k0;
  return a;
}

// RMSNorm's per-row scale from the float64 sum of squares (model.RMSNorm):
// variance = float32(ss/n), scale = float32(1/sqrt(float64(variance + float32(eps)))).
ODY_HD float canon_rms_scale(double ss, int n, float eps) {
#if defined(__CUDA_ARCH__)
  const float variance = (float)__ddiv_rn(ss, (double)n);
  return (float)__ddiv_rn(1.0, __dsqrt_rn((double)canon_add(variance, eps)));
#else
  const float variance = (float)(ss / (double)n);
  return (float)(1.0 / std::sqrt((double)canon_add(variance, eps)));
#endif
}

}  // namespace odyssey::calibgpu::canon
