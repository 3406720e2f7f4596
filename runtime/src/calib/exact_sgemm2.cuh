// exact_sgemm2.cuh: the second exact SGEMM of `--precision exact` (the default; ODYSSEY_EXACT_SGEMM=1 the first):
// C = alpha·op(A)·op(B) (+ beta·C) as gemm.Sgemm, row-major, any transposes and leading
// dimensions, with exactly the result of calib_exact.cu's sgemm_kernel (and of canon_dot /
// canonical_ref.hpp's sgemm) for every output: one FMA chain per output from +0 over k in
// ascending order, closed every kCanonKC = 384 (t = fl(alpha·acc); the first block gives
// canon_update(C, acc, alpha, beta), C read only when beta ≠ 0; later blocks C + t).
//
// Why a second kernel: the first (64×64 tile, 4×4 per thread, scalar shared loads) issues 8
// shared loads per 16 FMAs and is LDS-bound (11 TFLOP/s at 4096³ on the H200, cuBLAS fp32 50).
// Here each thread owns 8×8 outputs and reads its operands as 16-byte vectors: 4 LDS.128 per
// 64 FMAs per k.
//
// Layout: block of 256 threads = 16 × 16 (tx = t % 16, ty = t / 16), C tile 128 × 128; thread
// (ty, tx) owns rows ty·4 + {0..3} and 64 + ty·4 + {0..3}, columns tx·4 + {0..3} and
// 64 + tx·4 + {0..3}. K is staged 8 at a time (kCanonKC % 8 == 0: a stage never straddles a
// canonical block) through two shared buffers As/Bs [2][8][132] (k-major, +4 floats of padding
// so that the transposing stores of K-contiguous operands hit 32 distinct banks and rows stay
// 16-byte aligned); the next stage is loaded into registers (4 floats per operand per thread)
// while the current one is multiplied, then stored into the other buffer: one barrier per stage.
// Global loads are 16-byte vectors when the operand's leading dimension is a multiple of 4 and its
// base 16-byte aligned (vec_a / vec_b, decided by the host) and the 4 floats are in range;
// otherwise 4 masked scalar loads.
//
// Edges: rows ≥ m, columns ≥ n and k ≥ K are staged as +0. Products past K are therefore
// fma(+0, +0, acc) = acc exactly: acc starts at +0 and can never become −0 (an exact zero sum of
// a product and acc is +0 under round-to-nearest unless both are −0), so adding +0·+0 changes no
// bit, and the padding only ever follows the last real k (the last stage), never a block's close.
// Padded rows/columns feed outputs that are not written. So every written output is the exact
// canonical chain.
// Running sum across K blocks: kept in C itself (the first close writes canon_update(...), each
// later close reads C back and writes C + fl(alpha·acc)); a float stored and reloaded is the
// same float, so this equals the old kernel's register `cur`, and it keeps 64 registers free
// (two blocks per SM). C must not alias A or B (as for gemm.Sgemm and the old kernel).
//
// Limits: k ≥ 1; m ≤ 65535·128 (grid.y); ld* ≥ the row width. Compile with -fmad=false (the FMAs
// are explicit __fmaf_rn via canon_fma; nothing else may be contracted).
// Tests: `odyssey-rt test calib-exact` runs this kernel and the old one on every sgemm case
// against canonical_ref.hpp bit for bit (+ both kernels on the 4096³ bench data);
// runtime/tests/layers_emu/run_sgemm2.sh runs this header on the CPU under emu.hpp (fibers) on
// the same kind of cases. Bench: `bench calib-exact` rows (old vs this vs cuBLAS fp32).
// The file also holds int_linear_kernel (the default; ODYSSEY_W4A8_INT_FUSED=0 turns it off): the W4A8 integer-scale
// fake-quant linear's whole group loop on the same tile loop (see its comment, at the end).
#pragma once

#include <cstdint>

#include "calib/canonical.hpp"

#if defined(__CUDACC__)
#define ODY_SGEMM2_BOUNDS __launch_bounds__(256, 2)
#else
#define ODY_SGEMM2_BOUNDS
#endif

// Every 16-byte access goes through this: the identity here; the CPU emulation
// (tests/layers_emu/sgemm2_emu.cpp) defines it first to abort on an address that is not
// 16-byte aligned (the host would not fault where the GPU does).
#ifndef ODY_SGEMM2_ALIGNED
#define ODY_SGEMM2_ALIGNED(p) (p)
#endif

namespace odyssey::calibgpu::f32::exact::sgemm2 {

constexpr int kBM = 128, kBN = 128, kBK = 8, kThreads = 256, kLds = 128 + 4;
static_assert(canon::kCanonKC % kBK == 0, "a K stage must not straddle a canonical K block");

// Whether an operand may be read / written as 16-byte vectors (vec_a, vec_b, vec_c): rows of a
// multiple of 4 floats from a 16-byte aligned base (the tile origins are multiples of 4 floats).
inline bool vec16(const void* p, int ld) { return ld % 4 == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// One operand's share of the K stage [p0, p0 + 8) for rows [r0, r0 + 128) (rows: m for A, n for
// B): 4 floats per thread. KCont: the operand's K is contiguous (A not transposed, B
// transposed): element (r, p) at src[r·ld + p]; thread t takes row t/2, k (t%2)·4 + {0..3}.
// Otherwise (r, p) is at src[p·ld + r]; thread t takes k t/32, rows (t%32)·4 + {0..3}.
template <bool KCont>
__device__ __forceinline__ void load_stage(const float* __restrict__ src, int ld, int rows, int k, int r0, int p0,
                                           bool vec, float (&v)[4]) {
  const int t = threadIdx.x;
  if (KCont) {
    const int r = r0 + t / 2, p = p0 + (t % 2) * 4;
    if (vec && r < rows && p + 3 < k) {
      const float4 q = *ODY_SGEMM2_ALIGNED(reinterpret_cast<const float4*>(src + (size_t)r * ld + p));
      v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
#pragma unroll
      for (int c = 0; c < 4; c++) v[c] = (r < rows && p + c < k) ? src[(size_t)r * ld + p + c] : 0.0f;
    }
  } else {
    const int p = p0 + t / 32, r = r0 + (t % 32) * 4;
    if (vec && p < k && r + 3 < rows) {
      const float4 q = *ODY_SGEMM2_ALIGNED(reinterpret_cast<const float4*>(src + (size_t)p * ld + r));
      v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
#pragma unroll
      for (int c = 0; c < 4; c++) v[c] = (p < k && r + c < rows) ? src[(size_t)p * ld + r + c] : 0.0f;
    }
  }
}

// The same share into a k-major shared buffer S[k][row].
template <bool KCont>
__device__ __forceinline__ void store_stage(float (*S)[kLds], const float (&v)[4]) {
  const int t = threadIdx.x;
  if (KCont) {
    const int r = t / 2, p = (t % 2) * 4;
#pragma unroll
    for (int c = 0; c < 4; c++) S[p + c][r] = v[c];
  } else {
    *ODY_SGEMM2_ALIGNED(reinterpret_cast<float4*>(&S[t / 32][(t % 32) * 4])) = make_float4(v[0], v[1], v[2], v[3]);
  }
}

// Closes a canonical K block: folds acc into C (first block: canon_update with beta; later:
// C + fl(alpha·acc)) for the thread's 8×8 outputs inside [m, n], and clears acc.
__device__ __forceinline__ void close_block(float (&acc)[8][8], bool first, int i0, int j0, int m, int n, float alpha,
                                            float beta, float* __restrict__ c, int ldc, bool vec_c) {
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const bool read_c = !first || beta != 0.0f;  // the first block reads C only when beta ≠ 0
#pragma unroll
  for (int ii = 0; ii < 8; ii++) {
    const int gi = i0 + (ii / 4) * 64 + ty * 4 + ii % 4;
#pragma unroll
    for (int jh = 0; jh < 2; jh++) {
      const int gj = j0 + jh * 64 + tx * 4;
      float* cp = c + (size_t)gi * ldc + gj;
      float old[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      const bool vec = vec_c && gi < m && gj + 3 < n;
      if (read_c) {
        if (vec) {
          const float4 q = *ODY_SGEMM2_ALIGNED(reinterpret_cast<const float4*>(cp));
          old[0] = q.x, old[1] = q.y, old[2] = q.z, old[3] = q.w;
        } else {
#pragma unroll
          for (int jj = 0; jj < 4; jj++)
            if (gi < m && gj + jj < n) old[jj] = cp[jj];
        }
      }
      float r[4];
#pragma unroll
      for (int jj = 0; jj < 4; jj++) {
        const float a = acc[ii][jh * 4 + jj];
        r[jj] = first ? canon::canon_update(old[jj], a, alpha, beta) : canon::canon_add(old[jj], canon::canon_mul(alpha, a));
        acc[ii][jh * 4 + jj] = 0.0f;
      }
      if (vec) {
        *ODY_SGEMM2_ALIGNED(reinterpret_cast<float4*>(cp)) = make_float4(r[0], r[1], r[2], r[3]);
      } else {
#pragma unroll
        for (int jj = 0; jj < 4; jj++)
          if (gi < m && gj + jj < n) cp[jj] = r[jj];
      }
    }
  }
}

// The tile loop shared by the kernels below: the block's 128×128 outputs as FMA chains over k in
// ascending order, staged as described at the top; after each stage that ends a block of `every`
// k (and after the last stage) close(acc, p0) is called with the stage's first k (acc is then
// the chains of that block; close must clear it).
template <bool TA, bool TB, class Close>
__device__ __forceinline__ void run_tiles(int m, int n, int k, const float* __restrict__ a, int lda,
                                          const float* __restrict__ b, int ldb, bool vec_a, bool vec_b, int every,
                                          Close&& close) {
  __shared__ __align__(16) float As[2][kBK][kLds];
  __shared__ __align__(16) float Bs[2][kBK][kLds];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int i0 = blockIdx.y * kBM, j0 = blockIdx.x * kBN;
  float acc[8][8];
#pragma unroll
  for (int ii = 0; ii < 8; ii++)
#pragma unroll
    for (int jj = 0; jj < 8; jj++) acc[ii][jj] = 0.0f;
  float va[4], vb[4];
  // A is K-contiguous when not transposed; B when transposed.
  load_stage<!TA>(a, lda, m, k, i0, 0, vec_a, va);
  load_stage<TB>(b, ldb, n, k, j0, 0, vec_b, vb);
  store_stage<!TA>(As[0], va);
  store_stage<TB>(Bs[0], vb);
  __syncthreads();
  int buf = 0;
  for (int p0 = 0; p0 < k; p0 += kBK) {
    const bool more = p0 + kBK < k;
    if (more) {  // the next stage's loads are in flight while this one is multiplied
      load_stage<!TA>(a, lda, m, k, i0, p0 + kBK, vec_a, va);
      load_stage<TB>(b, ldb, n, k, j0, p0 + kBK, vec_b, vb);
    }
#pragma unroll
    for (int kk = 0; kk < kBK; kk++) {  // ascending k: each acc[ii][jj] is its output's chain
      const float4 a0 = *ODY_SGEMM2_ALIGNED(reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]));
      const float4 a1 = *ODY_SGEMM2_ALIGNED(reinterpret_cast<const float4*>(&As[buf][kk][64 + ty * 4]));
      const float4 b0 = *ODY_SGEMM2_ALIGNED(reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]));
      const float4 b1 = *ODY_SGEMM2_ALIGNED(reinterpret_cast<const float4*>(&Bs[buf][kk][64 + tx * 4]));
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int ii = 0; ii < 8; ii++)
#pragma unroll
        for (int jj = 0; jj < 8; jj++) acc[ii][jj] = canon::canon_fma(av[ii], bv[jj], acc[ii][jj]);
    }
    if (more) {  // the other buffer was last read before the previous barrier
      store_stage<!TA>(As[buf ^ 1], va);
      store_stage<TB>(Bs[buf ^ 1], vb);
    }
    if ((p0 + kBK) % every == 0 || !more) close(acc, p0);  // a block of `every` k ends with this stage
    __syncthreads();
    buf ^= 1;
  }
}

// grid ((n + 127) / 128, (m + 127) / 128), block 256. TA / TB as gemm.Sgemm's ta / tb.
template <bool TA, bool TB>
__global__ void ODY_SGEMM2_BOUNDS sgemm2_kernel(int m, int n, int k, float alpha, const float* __restrict__ a,
                                                int lda, const float* __restrict__ b, int ldb, float beta,
                                                float* __restrict__ c, int ldc, bool vec_a, bool vec_b, bool vec_c) {
  const int i0 = blockIdx.y * kBM, j0 = blockIdx.x * kBN;
  run_tiles<TA, TB>(m, n, k, a, lda, b, ldb, vec_a, vec_b, canon::kCanonKC, [&](float(&acc)[8][8], int p0) {
    close_block(acc, p0 < canon::kCanonKC, i0, j0, m, n, alpha, beta, c, ldc, vec_c);
  });
}

// ---- The W4A8 integer-scale linear (quant.QLinear) in one launch (unless ODYSSEY_W4A8_INT_FUSED=0).
// acc32[r, c] = Σ_g ŝ[g, c]·P_g[r, c] in int32 with wrap-around (uint32 arithmetic), where
// P_g = Σ_{k in group g} x[r, k]·q[c, k] over the activation codes x (integers, |x| ≤ 127) and the
// weight codes q (integers in [−8, 7]), x [m, k] (row stride lda), q [n, k] (row stride ldb),
// ŝ [G, ldsg] shorts. This is calib_server's per-group path (one exact SGEMM per group, then
// int_group_step: p = int(P) truncated, v = uint32(int32(ŝ))·uint32(p), acc = v or acc + v) with
// the same integers: every partial sum of P_g is an integer of magnitude ≤ 127·8·group_size
// < 2²⁴ (group_size ≤ 16384), so the float chain is exact in any order and equals the SGEMM's P.
// Limits: group_size % 8 == 0 (groups end at a K stage), group_size ≤ 16384; the caller falls
// back to the per-group path otherwise. acc32 [m, n] (row stride ldacc) is written, not read.
__device__ __forceinline__ int trunc_to_int(float x) {
#if defined(__CUDA_ARCH__)
  return __float2int_rz(x);
#else
  return (int)x;  // C++ truncates toward zero, as __float2int_rz (|x| < 2²⁴ here)
#endif
}

#if defined(__CUDACC__)
#define ODY_INTLIN_BOUNDS __launch_bounds__(256, 1)
#else
#define ODY_INTLIN_BOUNDS
#endif

// grid ((n + 127) / 128, (m + 127) / 128), block 256.
__global__ void ODY_INTLIN_BOUNDS int_linear_kernel(int m, int n, int k, int group_size, const float* __restrict__ x,
                                                    int lda, const float* __restrict__ q, int ldb,
                                                    const short* __restrict__ sg, int ldsg,
                                                    int32_t* __restrict__ acc32, int ldacc, bool vec_a, bool vec_b) {
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int i0 = blockIdx.y * kBM, j0 = blockIdx.x * kBN;
  uint32_t iacc[8][8];
  run_tiles<false, true>(m, n, k, x, lda, q, ldb, vec_a, vec_b, group_size, [&](float(&acc)[8][8], int p0) {
    const int g = p0 / group_size;
#pragma unroll
    for (int jj = 0; jj < 8; jj++) {
      const int gj = j0 + (jj / 4) * 64 + tx * 4 + jj % 4;
      const uint32_t s = gj < n ? (uint32_t)(int32_t)sg[(size_t)g * ldsg + gj] : 0u;
#pragma unroll
      for (int ii = 0; ii < 8; ii++) {
        const uint32_t v = s * (uint32_t)trunc_to_int(acc[ii][jj]);
        iacc[ii][jj] = g == 0 ? v : iacc[ii][jj] + v;
        acc[ii][jj] = 0.0f;
      }
    }
  });
#pragma unroll
  for (int ii = 0; ii < 8; ii++) {
    const int gi = i0 + (ii / 4) * 64 + ty * 4 + ii % 4;
#pragma unroll
    for (int jj = 0; jj < 8; jj++) {
      const int gj = j0 + (jj / 4) * 64 + tx * 4 + jj % 4;
      if (gi < m && gj < n) acc32[(size_t)gi * ldacc + gj] = (int32_t)iacc[ii][jj];
    }
  }
}

}  // namespace odyssey::calibgpu::f32::exact::sgemm2
