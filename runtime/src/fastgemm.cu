// fastgemm.cu: the W4A8 FastGEMM kernel with integer group scales (and its float-scale twin).
//
// What it computes (docs/w4a8-numerics.md, quant.W4A8GEMMRef is the scalar reference):
//
//   P'_g[m,c] = Σ_{k∈g} x[m,k] · 16·q[c,k]          int32, int8 tensor cores (mma.sync m16n8k32)
//   acc[m,c]  = Σ_g ŝ[g,c] · P'_g[m,c]               int32, one IMAD per group per output
//   y[m,c]    = half_rn(float(acc)·(xs[m]·f[c]) (+ bias[c]))   one float epilogue per output
//
// The float-scale variant (ODY_SCALE_FLOAT, quant.W4A8GEMMFloatScaleRef) instead converts every
// group's partial sum: acc_f += float(P'_g)·(s[g,c]/16), y = acc_f·xs (+ bias): one I2F and one
// float multiply-add per group per output. That per-group conversion is what Integer Scale
// removes; both variants share everything else so that the benchmark isolates it.
//
// Layout (docs/fastgemm-layout.md, format version 1): every lane's 16-byte word of a packed
// 128(k)×8(n) block holds its B fragments of four m16n8k32 steps; int4→int8 is a mask
// ((w<<4)&0xF0F0F0F0 and w&0xF0F0F0F0 give 16·q in int8 lanes), never a sign extension.
//
// Structure: a block computes a BM×BN output tile over a range of K (split-K over gridDim.z).
// Stages of A (BM×128 int8, rows padded to 144 bytes so ldmatrix is conflict-free), B (BN/8
// packed blocks, 512 bytes each, copied unchanged) and the tile's group scales are brought in by
// cp.async, STAGES deep. Warps own WM×WN sub-tiles; A fragments come from ldmatrix.x4, B from
// one 16-byte shared load per 8 columns per 128 of K. Split-K partials are summed into an int32
// workspace with atomics (integer addition is associative, so the result is bit-exact whatever
// the order); the last block of a tile, found with a counter, runs the epilogue and zeroes the
// workspace again, so there is one launch and no memset.
//
// Limits (ody_w4a8_can_implement): K % 128 == 0; group size 32, 64, 128 or K (per-channel);
// x, qweight, group_scale 16-byte aligned; M, N ≥ 1; sm_80 or newer (mma.sync int8, cp.async).
//
// Prefill on Hopper (M ≥ 256, or M ≥ 64 with enough 128×128 tiles for a wave): config
// "wgmma_r128t128_s4" (or its v2, "wgmma_r128t128_s4_v2"), a wgmma kernel with the weights as A
// in registers (fastgemm_sm90.cu, built with CUDA ≥ 12).
//
// Decode (M ≤ 64, integer scales): the dispatch picks a GEMV config instead, "gemv_w4" (dp4a,
// one block per 8 columns, M ≤ 4, gemv.cu) or "gemv_mma_s2/s4/s8" (tensor cores with
// the weights loaded straight into registers, M ≤ 64 (s8: 16), gemv_mma.cu); they share
// check_problem, the plan and this epilogue.
//
// Test: odyssey testdata gemm-cases --out C && odyssey-rt test gemm --cases C (bit-exact acc
// and y against the Go reference, every config and split). Benchmark: odyssey-rt bench gemm.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>

#include "fastgemm.hpp"
#include "kernel_common.cuh"
#include "status.hpp"

namespace odyssey {
namespace {

using kernel::cp_async16;
using kernel::cp_async_commit;
using kernel::cp_async_wait;
using kernel::kBK;
using kernel::smem_u32;
constexpr int kAStride = kBK + 16;  // padded A row in shared memory (bytes)

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void mma_s8(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                       uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

struct Params {
  const int8_t* x;
  const float* x_scale;
  const uint8_t* qweight;
  const void* group_scale;
  const float* channel_scale;
  const float* bias;
  __half* y;
  int32_t* acc_out;
  int32_t* ws;        // [M, Np] split-K partials (int32 or float bits)
  int32_t* counters;  // [tiles]: K blocks contributed so far
  int m, n, np, k;
  int tiles_m, tiles_n;
  int group_size;     // in K; == k for per-channel
  int act_per_token;
};

// Epilogue of one output: integer path in kernel_common.cuh (shared with the GEMV), float here.
using kernel::epilogue_int;
__device__ __forceinline__ __half epilogue_float(float acc, float xs, const float* bias, int c) {
  float y = __fmul_rn(acc, xs);
  if (bias) y = __fadd_rn(y, bias[c]);
  return __float2half_rn(y);
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool INT_SCALE>
struct Kernel {
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int WM = BM / WARPS_M;
  static constexpr int WN = BN / WARPS_N;
  static constexpr int MT = WM / 16;
  static constexpr int NT = WN / 8;
  static_assert(WM % 16 == 0 && WN % 8 == 0, "warp tile must be whole mma tiles");
  using Scale = typename std::conditional<INT_SCALE, int16_t, float>::type;
  static constexpr int kABytes = BM * kAStride;
  static constexpr int kBBytes = (BN / 8) * 512;
  static constexpr int kSBytes = 4 * BN * sizeof(Scale);  // up to 4 groups (of 32) per stage
  static constexpr int kStageBytes = kABytes + kBBytes + kSBytes;
  static constexpr int kSmemBytes = STAGES * kStageBytes;
};

// Zero-initialised mma: the first step of a group starts from 0 instead of clearing registers.
__device__ __forceinline__ void mma_s8_zero(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%10,%10,%10};\n"
      : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0));
}

// One block computes, for tile (tm, tn), the K range [kb0, kb1) of 128-blocks, and finishes the
// tile: directly when it owns all of K, else through the workspace, where the block whose
// contribution completes the tile's count of K blocks runs the epilogue.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool INT_SCALE>
__device__ __forceinline__ void w4a8_segment(const Params& p, uint8_t* smem, int tm, int tn, int kb0,
                                             int kb1) {
  using K_ = Kernel<BM, BN, WARPS_M, WARPS_N, STAGES, INT_SCALE>;
  using Scale = typename K_::Scale;
  constexpr int MT = K_::MT, NT = K_::NT, WM = K_::WM, WN = K_::WN;

  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  const int gid = lane >> 2, tig = lane & 3;
  const int n0 = tn * BN, m0 = tm * BM;

  const int kblocks = p.k / kBK;
  const int nkb = kb1 - kb0;
  const bool whole = nkb == kblocks;

  const bool per_channel = p.group_size >= p.k;
  // Groups per 128-deep stage (1, 2 or 4), and 32-deep steps per group.
  const int gpk = per_channel ? 0 : kBK / p.group_size;
  const int steps_per_group = per_channel ? 4 : p.group_size / 32;
  const size_t kblocks_sz = (size_t)kblocks;

  // Each thread's cp.async sources and destinations, computed once per segment: per K block
  // only a constant stride is added (128 bytes of A, 512 of B, gpk rows of scales), which keeps
  // the integer work per byte low enough for decode, where the kernel must stream weights at
  // HBM speed with few warps.
  constexpr int kAChunks = (BM * 8 + K_::kThreads - 1) / K_::kThreads;
  constexpr int kBChunks = ((BN / 8) * 32 + K_::kThreads - 1) / K_::kThreads;
  // Offsets are 32-bit (checked in check_problem: M·K and Np·K/2 < 2³²); an invalid chunk
  // (row past M, column past Np) gets offset 0xFFFFFFFF and zero-fills.
  uint32_t a_src[kAChunks], a_dst[kAChunks];
#pragma unroll
  for (int u = 0; u < kAChunks; u++) {
    int i = u * K_::kThreads + tid;
    int r = i >> 3, c = i & 7;
    // Rows past M are not copied at all: row r of the product depends only on row r of A, and
    // those rows' outputs are never stored, so whatever their shared memory holds is harmless.
    // For decode (M = 1 in a 16-row tile) this removes most of A's copy instructions.
    a_src[u] = (i < BM * 8 && m0 + r < p.m) ? (uint32_t)((m0 + r) * (size_t)p.k + c * 16) : 0xFFFFFFFFu;
    a_dst[u] = (i < BM * 8 && m0 + r < p.m) ? r * kAStride + c * 16 : 0xFFFFFFFFu;
  }
  uint32_t b_src[kBChunks], b_dst[kBChunks];
#pragma unroll
  for (int u = 0; u < kBChunks; u++) {
    int i = u * K_::kThreads + tid;
    int b = i >> 5, c = i & 31;
    int nb = (n0 >> 3) + b;
    b_src[u] = (i < (BN / 8) * 32 && nb * 8 < p.np) ? (uint32_t)((size_t)nb * kblocks_sz * 512 + c * 16) : 0xFFFFFFFFu;
    b_dst[u] = i < (BN / 8) * 32 ? b * 512 + c * 16 : 0xFFFFFFFFu;
  }
  // Scales: one chunk per thread at most (gpk·BN/per_chunk ≤ threads for every config).
  constexpr int per_chunk = 16 / sizeof(Scale);
  static_assert(4 * BN / (16 / sizeof(Scale)) <= K_::kThreads * 2, "scale chunks per thread");
  const int s_chunks = gpk * (BN / per_chunk);
  const Scale* s_src[2];
  uint32_t s_dst[2];
  bool s_ok[2], s_on[2];
#pragma unroll
  for (int u = 0; u < 2; u++) {
    int i = u * K_::kThreads + tid;
    int g = gpk ? i / (BN / per_chunk) : 0, c = i % (BN / per_chunk);
    int col = n0 + c * per_chunk;
    s_on[u] = i < s_chunks;
    s_ok[u] = s_on[u] && col < p.np;
    s_src[u] = s_ok[u] ? static_cast<const Scale*>(p.group_scale) + (size_t)g * p.np + col
                       : static_cast<const Scale*>(p.group_scale);
    s_dst[u] = (g * BN + c * per_chunk) * sizeof(Scale);
  }
  const size_t s_stride = (size_t)gpk * p.np;  // scale elements per K block

  auto load_stage = [&](int stage, int kb) {
    uint8_t* sa = smem + stage * K_::kStageBytes;
    uint8_t* sb = sa + K_::kABytes;
    uint8_t* ss = sb + K_::kBBytes;
#pragma unroll
    for (int u = 0; u < kAChunks; u++) {
      const bool ok = a_src[u] != 0xFFFFFFFFu;
      if (a_dst[u] != 0xFFFFFFFFu) cp_async16(sa + a_dst[u], p.x + (ok ? a_src[u] + kb * kBK : 0), ok);
    }
#pragma unroll
    for (int u = 0; u < kBChunks; u++) {
      const bool ok = b_src[u] != 0xFFFFFFFFu;
      if (b_dst[u] != 0xFFFFFFFFu) cp_async16(sb + b_dst[u], p.qweight + (ok ? b_src[u] + kb * 512 : 0), ok);
    }
#pragma unroll
    for (int u = 0; u < 2; u++)
      if (s_on[u]) cp_async16(ss + s_dst[u], s_src[u] + kb * s_stride * s_ok[u], s_ok[u]);
  };
  // Steps per group are 1, 2 or 4 (groups of 32, 64, 128): masks instead of divisions.
  const int spg_mask = steps_per_group - 1;
  const int spg_log2 = steps_per_group == 4 ? 2 : steps_per_group == 2 ? 1 : 0;

  // Accumulators: total (int32, or float for the float variant) and the current group's
  // partial sums from the tensor cores.
  using Acc = typename std::conditional<INT_SCALE, int32_t, float>::type;
  Acc total[MT][NT][4];
  int32_t part[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        total[i][j][e] = 0;
        part[i][j][e] = 0;
      }

#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < nkb) load_stage(s, kb0 + s);
    cp_async_commit();
  }

  for (int it = 0; it < nkb; it++) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    {
      int nxt = it + STAGES - 1;
      if (nxt < nkb) load_stage(nxt % STAGES, kb0 + nxt);
      cp_async_commit();
    }
    const int stage = it % STAGES;
    const uint8_t* sa = smem + stage * K_::kStageBytes;
    const uint8_t* sb = sa + K_::kABytes;
    const Scale* ss = reinterpret_cast<const Scale*>(sb + K_::kBBytes);

    // B: one 16-byte word per lane per 8 columns covers the whole 128 of K.
    uint4 bw[NT];
#pragma unroll
    for (int j = 0; j < NT; j++)
      bw[j] = *reinterpret_cast<const uint4*>(sb + (warp_n * NT + j) * 512 + lane * 16);

#pragma unroll
    for (int step = 0; step < 4; step++) {
      uint32_t af[MT][4];
#pragma unroll
      for (int i = 0; i < MT; i++) {
        const uint8_t* ap =
            sa + (warp_m * WM + i * 16 + (lane & 15)) * kAStride + step * 32 + (lane >> 4) * 16;
        ldmatrix_x4(af[i], ap);
      }
      // The first step of a group (never for per-channel, which runs one chain over K).
      const bool fresh = gpk > 0 && (step & spg_mask) == 0;
#pragma unroll
      for (int j = 0; j < NT; j++) {
        uint32_t w = step == 0 ? bw[j].x : step == 1 ? bw[j].y : step == 2 ? bw[j].z : bw[j].w;
        uint32_t b0 = (w << 4) & 0xF0F0F0F0u;  // low nibbles: k = 4·tig + j
        uint32_t b1 = w & 0xF0F0F0F0u;         // high nibbles: k = 16 + 4·tig + j
#pragma unroll
        for (int i = 0; i < MT; i++) {
          if (fresh)
            mma_s8_zero(part[i][j], af[i], b0, b1);
          else
            mma_s8(part[i][j], af[i], b0, b1);
        }
      }
      // End of a group: fold its partial sums into the total with the group's scale.
      if (gpk > 0 && ((step + 1) & spg_mask) == 0) {
        const int g = step >> spg_log2;
#pragma unroll
        for (int j = 0; j < NT; j++) {
          const int col = warp_n * WN + j * 8 + tig * 2;
          if constexpr (INT_SCALE) {
            // Two adjacent int16 scales in one 32-bit load.
            uint32_t s2 = *reinterpret_cast<const uint32_t*>(ss + g * BN + col);
            int32_t s_lo = (int32_t)(int16_t)(s2 & 0xFFFF), s_hi = (int32_t)(int16_t)(s2 >> 16);
#pragma unroll
            for (int i = 0; i < MT; i++) {
              total[i][j][0] += s_lo * part[i][j][0];
              total[i][j][1] += s_hi * part[i][j][1];
              total[i][j][2] += s_lo * part[i][j][2];
              total[i][j][3] += s_hi * part[i][j][3];
            }
          } else {
            float2 s2 = *reinterpret_cast<const float2*>(ss + g * BN + col);
            // float(16p)·(s/16) == float(p)·s exactly: scaling by 2^-4 commutes with rounding.
            float s_lo = s2.x * 0.0625f, s_hi = s2.y * 0.0625f;
#pragma unroll
            for (int i = 0; i < MT; i++) {
              total[i][j][0] = __fadd_rn(total[i][j][0], __fmul_rn(__int2float_rn(part[i][j][0]), s_lo));
              total[i][j][1] = __fadd_rn(total[i][j][1], __fmul_rn(__int2float_rn(part[i][j][1]), s_hi));
              total[i][j][2] = __fadd_rn(total[i][j][2], __fmul_rn(__int2float_rn(part[i][j][2]), s_lo));
              total[i][j][3] = __fadd_rn(total[i][j][3], __fmul_rn(__int2float_rn(part[i][j][3]), s_hi));
            }
          }
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the next segment of this block reuses the stages

  // Per-channel: one group spans K; this segment's partial sum takes the single scale now.
  // Σ_seg ŝ·P_seg == ŝ·Σ_seg P_seg in wrapping int32 arithmetic, and the true result fits (the
  // bound), so splitting K stays exact.
  if (per_channel) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
      const int col = n0 + warp_n * WN + j * 8 + tig * 2;
      Acc s_lo = 0, s_hi = 0;
      if (col < p.np) {
        if constexpr (INT_SCALE) {
          const int16_t* gs = static_cast<const int16_t*>(p.group_scale);
          s_lo = gs[col];
          s_hi = gs[col + 1];
        } else {
          const float* gs = static_cast<const float*>(p.group_scale);
          s_lo = gs[col] * 0.0625f;
          s_hi = gs[col + 1] * 0.0625f;
        }
      }
#pragma unroll
      for (int i = 0; i < MT; i++) {
        if constexpr (INT_SCALE) {
          total[i][j][0] = s_lo * part[i][j][0];
          total[i][j][1] = s_hi * part[i][j][1];
          total[i][j][2] = s_lo * part[i][j][2];
          total[i][j][3] = s_hi * part[i][j][3];
        } else {
          total[i][j][0] = __fmul_rn(__int2float_rn(part[i][j][0]), s_lo);
          total[i][j][1] = __fmul_rn(__int2float_rn(part[i][j][1]), s_hi);
          total[i][j][2] = __fmul_rn(__int2float_rn(part[i][j][2]), s_lo);
          total[i][j][3] = __fmul_rn(__int2float_rn(part[i][j][3]), s_hi);
        }
      }
    }
  }

  // Part of K only: add into the workspace; the block that completes the tile finishes it.
  if (!whole) {
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          int r = m0 + warp_m * WM + i * 16 + gid + (e >> 1) * 8;
          int c = n0 + warp_n * WN + j * 8 + tig * 2 + (e & 1);
          if (r < p.m && c < p.np) {
            int32_t* w = p.ws + (size_t)r * p.np + c;
            if constexpr (INT_SCALE)
              atomicAdd(w, total[i][j][e]);
            else
              atomicAdd(reinterpret_cast<float*>(w), total[i][j][e]);
          }
        }
    __threadfence();
    __syncthreads();
    __shared__ int last;
    if (tid == 0) {
      int tile = tm * p.tiles_n + tn;
      int done = atomicAdd(p.counters + tile, nkb) + nkb;
      last = done == kblocks;
      if (last) p.counters[tile] = 0;  // ready for the next launch
    }
    __syncthreads();
    const bool finish = last;
    __syncthreads();  // `last` is reused by the next segment
    if (!finish) return;
    __threadfence();
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          int r = m0 + warp_m * WM + i * 16 + gid + (e >> 1) * 8;
          int c = n0 + warp_n * WN + j * 8 + tig * 2 + (e & 1);
          if (r < p.m && c < p.np) {
            int32_t* w = p.ws + (size_t)r * p.np + c;
            int32_t v = __ldcg(w);
            __stcg(w, 0);
            if constexpr (INT_SCALE)
              total[i][j][e] = v;
            else
              total[i][j][e] = __int_as_float(v);
          }
        }
  }

  // Epilogue: fp16 output (and the int32 accumulators when asked, for tests).
#pragma unroll
  for (int i = 0; i < MT; i++) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = m0 + warp_m * WM + i * 16 + gid + h * 8;
      if (r >= p.m) continue;
      const float xs = p.act_per_token ? p.x_scale[r] : p.x_scale[0];
#pragma unroll
      for (int j = 0; j < NT; j++) {
        const int c = n0 + warp_n * WN + j * 8 + tig * 2;
        if (c >= p.n) continue;
        const bool two = c + 1 < p.n;
        __half y0, y1;
        if constexpr (INT_SCALE) {
          y0 = epilogue_int(total[i][j][h * 2], xs, p.channel_scale[c], p.bias, c);
          y1 = two ? epilogue_int(total[i][j][h * 2 + 1], xs, p.channel_scale[c + 1], p.bias, c + 1)
                   : y0;
          if (p.acc_out) {
            p.acc_out[(size_t)r * p.n + c] = total[i][j][h * 2];
            if (two) p.acc_out[(size_t)r * p.n + c + 1] = total[i][j][h * 2 + 1];
          }
        } else {
          y0 = epilogue_float(total[i][j][h * 2], xs, p.bias, c);
          y1 = two ? epilogue_float(total[i][j][h * 2 + 1], xs, p.bias, c + 1) : y0;
        }
        __half* out = p.y + (size_t)r * p.n + c;
        if (two && (((size_t)r * p.n + c) & 1) == 0) {
          *reinterpret_cast<__half2*>(out) = __halves2half2(y0, y1);
        } else {
          out[0] = y0;
          if (two) out[1] = y1;
        }
      }
    }
  }
}

// Stream-K over the flattened (tile, K block) space: block b of gridDim.x owns the iterations
// [b·T/B, (b+1)·T/B) with T = tiles·kblocks, so every block does the same amount of work and
// there is no partial last wave; a block's range crosses tile boundaries where it must.
// A grid of tiles·s blocks is classic split-K by s.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool INT_SCALE>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32)
    w4a8_kernel(const Params p) {
  extern __shared__ __align__(16) uint8_t smem[];
  kernel::stream_k((long long)p.tiles_m * p.tiles_n, p.k / kBK, [&](long long tile, int kb0, int kb1) {
    // Tiles walk N fastest so that concurrent blocks share the activation rows.
    const int tm = (int)(tile / p.tiles_n), tn = (int)(tile % p.tiles_n);
    w4a8_segment<BM, BN, WARPS_M, WARPS_N, STAGES, INT_SCALE>(p, smem, tm, tn, kb0, kb1);
  });
}

// ---------------------------------------------------------------- configurations

struct Config {
  const char* name;
  int bm, bn, threads;
  int smem_int, smem_float;
  // Launchers for the integer and the float variant.
  void (*launch_int)(const Params&, dim3, cudaStream_t);
  void (*launch_float)(const Params&, dim3, cudaStream_t);
  const void* fn_int;
  const void* fn_float;
  // A decode GEMV, not a tile of this kernel: M ≤ gemv_max_m (0: a tile config), integer
  // scales, no split-K, no workspace. gemv_strips 0: gemv_w4 (gemv.cu, dp4a, one block per 8
  // columns); 2, 4 or 8: gemv_mma (gemv_mma.cu, tensor cores, that many 8-column strips per
  // block). The fields above are unused for them.
  int gemv_max_m;
  int gemv_strips;
  bool gemv() const { return gemv_max_m > 0; }
  // The Hopper wgmma kernel (fastgemm_sm90.cu): 128×128 tiles, whole K per block, no
  // workspace; only where sm90_wgmma_usable(). The mma fields above are unused for it.
  bool wgmma;
};

template <int BM, int BN, int WM_, int WN_, int ST, bool INT>
void launch(const Params& p, dim3 grid, cudaStream_t s) {
  using K_ = Kernel<BM, BN, WM_, WN_, ST, INT>;
  w4a8_kernel<BM, BN, WM_, WN_, ST, INT><<<grid, K_::kThreads, K_::kSmemBytes, s>>>(p);
}

#define ODY_CONFIG(NAME, BM, BN, WM_, WN_, ST)                                            \
  Config {                                                                                \
    NAME, BM, BN, WM_ * WN_ * 32, Kernel<BM, BN, WM_, WN_, ST, true>::kSmemBytes,         \
        Kernel<BM, BN, WM_, WN_, ST, false>::kSmemBytes,                                  \
        launch<BM, BN, WM_, WN_, ST, true>, launch<BM, BN, WM_, WN_, ST, false>,          \
        (const void*)w4a8_kernel<BM, BN, WM_, WN_, ST, true>,                             \
        (const void*)w4a8_kernel<BM, BN, WM_, WN_, ST, false>, 0, 0, false                \
  }

const Config kConfigs[] = {
    ODY_CONFIG("m16n64_w1x4_s4", 16, 64, 1, 4, 4),      // 0 decode
    ODY_CONFIG("m16n128_w1x4_s4", 16, 128, 1, 4, 4),    // 1 decode, wider
    ODY_CONFIG("m16n64_w1x2_s6", 16, 64, 1, 2, 6),      // 2 decode, deeper pipeline
    ODY_CONFIG("m32n64_w1x4_s4", 32, 64, 1, 4, 4),      // 3 small batch
    ODY_CONFIG("m64n64_w2x2_s4", 64, 64, 2, 2, 4),      // 4 medium
    ODY_CONFIG("m64n128_w2x4_s4", 64, 128, 2, 4, 4),    // 5 medium/prefill
    ODY_CONFIG("m128n128_w2x4_s3", 128, 128, 2, 4, 3),  // 6 prefill
    ODY_CONFIG("m128n64_w4x2_s4", 128, 64, 4, 2, 4),    // 7 prefill, narrow N
    ODY_CONFIG("m16n128_w1x4_s8", 16, 128, 1, 4, 8),    // 8 decode, many bytes in flight
    ODY_CONFIG("m16n256_w1x8_s4", 16, 256, 1, 8, 4),    // 9 decode, 8 warps
    ODY_CONFIG("m32n128_w1x4_s6", 32, 128, 1, 4, 6),    // 10 small batch, deep
    ODY_CONFIG("m128n128_w4x2_s4", 128, 128, 4, 2, 4),  // 11 prefill, warps 32x64
    Config{"gemv_w4", 1, 8, kGemvThreads, 0, 0, nullptr, nullptr, nullptr, nullptr, kGemvMaxM, 0, false},  // 12 decode GEMV
    Config{"gemv_mma_s2", 16, 16, 256, 0, 0, nullptr, nullptr, nullptr, nullptr, kGemvMmaMaxM, 2, false},  // 13 M ≤ 64 GEMV
    Config{"gemv_mma_s4", 16, 32, 256, 0, 0, nullptr, nullptr, nullptr, nullptr, kGemvMmaMaxM, 4, false},  // 14 M ≤ 64 GEMV
    Config{"gemv_mma_s8", 16, 64, 256, 0, 0, nullptr, nullptr, nullptr, nullptr, kGemvMmaS8MaxM, 8, false},  // 15 M ≤ 16 GEMV
    Config{"wgmma_r128t128_s4", kSm90TokTile, kSm90RowTile, 256, 0, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true},  // 16 Hopper prefill
    Config{"wgmma_r128t128_s4_v2", kSm90TokTile, kSm90RowTile, 256, 0, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true},  // 17 Hopper prefill, weights staged
    Config{"wgmma_r128t128_s4_v3", kSm90TokTile, kSm90RowTile, 256, 0, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true},  // 18 v2, folds overlapped
    Config{"wgmma_r128t128_s4_v3p", kSm90TokTile, kSm90RowTile, 256, 0, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true},  // 19 v3, persistent
    Config{"wgmma_ws_r128t128_v4", kSm90TokTile, kSm90RowTile, 384, 0, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true},  // 20 warp-specialized (TMA, mbarriers, pingpong)
    Config{"wgmma_ws_r128t128_v4c2", kSm90TokTile, kSm90RowTile, 384, 0, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true},  // 21 v4 on 2-CTA clusters, X multicast
    Config{"wgmma_ws_r128t128_v5", kSm90TokTile, kSm90RowTile, 384, 0, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true},  // 22 v4, persistent
};
constexpr int kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);
static_assert(kNumConfigs == kWgmmaV5Config + 1 && kWgmmaV5Config == kWgmmaV4c2Config + 1 && kWgmmaV4c2Config == kWgmmaV4Config + 1 && kWgmmaV4Config == kWgmmaV3pConfig + 1 && kWgmmaV3pConfig == kWgmmaV3Config + 1 && kWgmmaV3Config == kWgmmaV2Config + 1 && kWgmmaV2Config == kWgmmaConfig + 1 && kWgmmaConfig == kGemvMmaS8Config + 1 && kGemvConfig == kGemvMmaS2Config - 1 &&
                  kGemvMmaS2Config + 1 == kGemvMmaS4Config && kGemvMmaS4Config + 1 == kGemvMmaS8Config,
              "the GEMV configs' indexes (fastgemm.hpp) must match the table");

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

ody_status check_problem(const ody_w4a8_problem* p) {
  if (!p) return fail(ODY_ERR_INVALID, "w4a8: null problem");
  if (p->m < 1 || p->n < 1 || p->k < 1)
    return fail(ODY_ERR_INVALID, "w4a8: M, N and K must be positive (got " + std::to_string(p->m) +
                                     "x" + std::to_string(p->n) + "x" + std::to_string(p->k) + ")");
  if (p->k % kBK != 0)
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: K=" + std::to_string(p->k) +
                                         " is not a multiple of 128 (pad the weight: "
                                         "docs/fastgemm-layout.md)");
  if (!(p->group_size == 32 || p->group_size == 64 || p->group_size == 128 ||
        p->group_size == p->k))
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: group size " + std::to_string(p->group_size) +
                                         " is not supported (32, 64, 128 or K for per-channel)");
  if (p->scale_kind != ODY_SCALE_INT && p->scale_kind != ODY_SCALE_FLOAT)
    return fail(ODY_ERR_INVALID, "w4a8: unknown scale kind " + std::to_string(p->scale_kind));
  if (p->config < -1 || p->config >= kNumConfigs)
    return fail(ODY_ERR_INVALID, "w4a8: no config " + std::to_string(p->config));
  if (p->config >= 0 && kConfigs[p->config].gemv()) {
    // The GEMVs (gemv_w4: M ≤ 4, dp4a; gemv_mma_*: M ≤ 64 or 16, tensor cores) have integer scales
    // only and no split-K (splits 1, whole K per block, is what they do anyway).
    const Config& c = kConfigs[p->config];
    const std::string name = c.name;
    if (p->scale_kind != ODY_SCALE_INT)
      return fail(ODY_ERR_UNSUPPORTED, "w4a8: config " + name + " needs integer scales (ODY_SCALE_INT)");
    if (p->m > c.gemv_max_m)
      return fail(ODY_ERR_UNSUPPORTED, "w4a8: config " + name + " takes M <= " + std::to_string(c.gemv_max_m) +
                                           " (got " + std::to_string(p->m) + ")");
    if (p->splits > 1)
      return fail(ODY_ERR_UNSUPPORTED, "w4a8: config " + name + " has no split-K (splits " +
                                           std::to_string(p->splits) + ")");
  }
  if (p->config >= 0 && kConfigs[p->config].wgmma) {
    const std::string name = kConfigs[p->config].name;
    if (!sm90_wgmma_usable())
      return fail(ODY_ERR_UNSUPPORTED, sm90_wgmma_built()
                                           ? "w4a8: config " + name + " needs a compute capability 9.x device "
                                             "(or ODYSSEY_WGMMA=0 turned it off)"
                                           : "w4a8: config " + name + " was not built (needs CUDA >= 12.0 and "
                                             "90 in CMAKE_CUDA_ARCHITECTURES)");
    if (p->splits > 1)
      return fail(ODY_ERR_UNSUPPORTED, "w4a8: config " + name + " has no split-K (splits " +
                                           std::to_string(p->splits) + ")");
  }
  if (p->splits < 0 || p->splits > p->k / kBK)
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: split-K " + std::to_string(p->splits) +
                                         " exceeds the " + std::to_string(p->k / kBK) +
                                         " blocks of 128 in K");
  // The int32 accumulators of one output are bounded by the integer-scale proof; M·Np must
  // also index the workspace, and the kernel addresses x and the weights with 32-bit offsets.
  const long long np = (p->n + 7) / 8 * 8;
  if ((long long)p->m * np > (1LL << 31) - 1 || (long long)p->m * p->k >= (1LL << 32) - 1 ||
      np * p->k / 2 >= (1LL << 32) - 1)
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: M·N, M·K or N·K/2 too large for one launch (split the problem)");
  return ODY_OK;
}

int device_sms() {
  static const int sms = [] {  // once, thread-safe
    int dev = 0, n = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 132;
  }();
  return sms;
}

StreamKGrid stream_k_grid(long long tiles, long long kblocks, int splits, int resident_per_sm) {
  long long total = tiles * kblocks;
  // Classic split-K when asked. Else: one block per tile when the tiles alone fill the target
  // wave, otherwise stream-K over exactly that many blocks, with equal shares of K blocks.
  const long long target = (long long)resident_per_sm * device_sms();
  long long blocks = splits > 0 ? tiles * splits : (tiles >= target ? tiles : target);
  blocks = std::max(1LL, std::min(blocks, total));
  StreamKGrid g;
  g.blocks = (int)std::min<long long>(blocks, 1 << 30);
  g.partial = !(total % g.blocks == 0 && (total / g.blocks) % kblocks == 0);
  return g;
}

namespace {

struct Plan {
  int config;
  long long tiles_m, tiles_n, kblocks;
  int blocks;       // grid size
  bool partial;     // some tile is split over blocks: the workspace is used
};

// Resident blocks per SM of a config (occupancy API, after raising the shared-memory limit).
int occupancy(int cfg, bool int_scale) {
  static int cache[2][64] = {};
  static std::mutex mu;  // the tensor-parallel ranks of one process dispatch from several threads
  std::lock_guard<std::mutex> lock(mu);
  int& v = cache[int_scale][cfg];
  if (!v) {
    const Config& c = kConfigs[cfg];
    const void* fn = int_scale ? c.fn_int : c.fn_float;
    int smem = int_scale ? c.smem_int : c.smem_float;
    cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, fn, c.threads, smem) != cudaSuccess || v < 1) {
      cudaGetLastError();
      v = 1;
    }
  }
  return v;
}

// The default split of K, from the session-3 sweep on the H200 (runtime/NOTES.md; every
// variant is in runtime/bench/results/gemm-sweep-*.json): an even split-K whose grid is about
// 4 blocks per SM at M ≤ 4 and 2 above, with at least 8 blocks of 128 per split so that the
// pipeline fills. On those shapes this beat one full stream-K wave by 5–25%: a split aligned to
// tiles keeps one segment per block, and fewer blocks re-read A and write fewer partials.
int auto_splits(long long tiles, long long kblocks, int m) {
  const long long target = (m <= 4 ? 4LL : 2LL) * device_sms();
  long long s = (target + tiles / 2) / tiles;
  s = std::min(s, std::max(1LL, kblocks / 8));
  return (int)std::max(1LL, std::min(s, 16LL));
}

Plan plan(const ody_w4a8_problem* p) {
  Plan pl{};
  // The dispatch's GEMV where it gives one (integer scales, no explicit split-K, small M: never
  // the wgmma kernel there), else the wgmma kernel where it applies, else the dispatch's tile.
  pl.config = p->config;
  if (pl.config < 0) {
    const int d = dispatch_config(p->m, p->n, p->k, p->scale_kind == ODY_SCALE_INT && p->splits <= 1);
    const int sm90 = kConfigs[d].gemv() ? -1 : dispatch_config_sm90(p->m, p->n, p->k, p->splits);
    pl.config = sm90 >= 0 ? sm90 : d;
  }
  const Config& c = kConfigs[pl.config];
  long long np = (p->n + 7) / 8 * 8;
  if (c.wgmma) {  // one block per 128×128 tile, whole K: never a workspace
    pl.tiles_m = (p->m + kSm90TokTile - 1) / kSm90TokTile;
    pl.tiles_n = (np + kSm90RowTile - 1) / kSm90RowTile;
    pl.kblocks = p->k / kBK;
    pl.blocks = (int)(pl.tiles_m * pl.tiles_n);
    if (pl.config == kWgmmaV3pConfig || pl.config == kWgmmaV5Config)
      pl.blocks = (int)std::min<long long>(pl.blocks, device_sms());  // persistent
    if (pl.config == kWgmmaV4c2Config) pl.blocks = (int)(2 * ((pl.tiles_n + 1) / 2) * pl.tiles_m);  // pairs of row tiles
    pl.partial = false;
    return pl;
  }
  if (c.gemv()) {  // one block per 1, 2, 4 or 8 strips of 8 columns, whole K: never a workspace
    pl.tiles_m = 1;
    pl.tiles_n = np / 8;
    pl.kblocks = p->k / kBK;
    pl.blocks = c.gemv_strips ? gemv_mma_blocks(p->n, c.gemv_strips) : (int)(np / 8);
    pl.partial = false;
    return pl;
  }
  pl.tiles_m = (p->m + c.bm - 1) / c.bm;
  pl.tiles_n = (np + c.bn - 1) / c.bn;
  pl.kblocks = p->k / kBK;
  const int splits = p->splits > 0 ? p->splits : auto_splits(pl.tiles_m * pl.tiles_n, pl.kblocks, p->m);
  StreamKGrid g = stream_k_grid(pl.tiles_m * pl.tiles_n, pl.kblocks, splits, 1);
  pl.blocks = g.blocks;
  pl.partial = g.partial;
  return pl;
}

}  // namespace

// Dispatch: the config comes from the table measured on the H200 (fastgemm_dispatch.cpp); the
// grid is one wave of resident blocks sharing the (tile, K block) iterations evenly (stream-K),
// unless the caller asks for classic split-K.
ody_status dispatch(const ody_w4a8_problem* p, int* config, int* blocks) {
  Plan pl = plan(p);
  *config = pl.config;
  *blocks = pl.blocks;
  return ODY_OK;
}

int num_configs() { return kNumConfigs; }
const char* config_name(int i) { return (i >= 0 && i < kNumConfigs) ? kConfigs[i].name : "?"; }

size_t workspace_size(const ody_w4a8_problem* p) {
  if (check_problem(p) != ODY_OK) return 0;
  Plan pl = plan(p);
  if (!pl.partial) return 0;
  size_t np = (size_t)(p->n + 7) / 8 * 8;
  return ((size_t)p->m * np + (size_t)(pl.tiles_m * pl.tiles_n)) * sizeof(int32_t);
}

ody_status can_implement(const ody_w4a8_problem* p, const ody_w4a8_args* a) {
  if (ody_status s = check_problem(p)) return s;
  if (!a) return ODY_OK;
  if (!a->x || !a->x_scale || !a->qweight || !a->group_scale || !a->y)
    return fail(ODY_ERR_INVALID, "w4a8: x, x_scale, qweight, group_scale and y must be set");
  if (p->scale_kind == ODY_SCALE_INT && !a->channel_scale)
    return fail(ODY_ERR_INVALID, "w4a8: integer scales need channel_scale");
  if (!aligned16(a->x) || !aligned16(a->qweight) || !aligned16(a->group_scale))
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: x, qweight and group_scale must be 16-byte aligned");
  if ((reinterpret_cast<uintptr_t>(a->y) & 1) != 0)
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: y must be 2-byte aligned");
  size_t need = workspace_size(p);
  if (need > 0 && (!a->workspace || a->workspace_bytes < need))
    return fail(ODY_ERR_WORKSPACE, "w4a8: split-K needs " + std::to_string(need) +
                                       " bytes of zeroed workspace, got " +
                                       std::to_string(a->workspace_bytes));
  if (a->workspace && !aligned16(a->workspace))
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: workspace must be 16-byte aligned");
  return ODY_OK;
}

// The wgmma kernels' parameters for config cfg (diag 0: test and dispatch never ask for more).
Sm90Params sm90_params(const ody_w4a8_problem* p, const ody_w4a8_args* a, int cfg) {
  const bool int_scale = p->scale_kind == ODY_SCALE_INT;
  Sm90Params w{};
  w.x = a->x;
  w.x_scale = a->x_scale;
  w.qweight = a->qweight;
  w.group_scale = a->group_scale;
  w.channel_scale = a->channel_scale;
  w.bias = a->bias;
  w.y = a->y;
  w.acc_out = int_scale ? a->acc_out : nullptr;
  w.m = p->m;
  w.n = p->n;
  w.np = (p->n + 7) / 8 * 8;
  w.k = p->k;
  w.group_size = p->group_size;
  w.act_per_token = p->act_per_token;
  w.int_scale = int_scale;
  w.version = cfg == kWgmmaV5Config    ? 7
              : cfg == kWgmmaV4c2Config  ? 6
              : cfg == kWgmmaV4Config  ? 5
              : cfg == kWgmmaV3pConfig ? 4
              : cfg == kWgmmaV3Config  ? 3
              : cfg == kWgmmaV2Config  ? 2
                                       : 1;
  return w;
}

ody_status gemm(const ody_w4a8_problem* p, const ody_w4a8_args* a, cudaStream_t stream) {
  if (ody_status s = can_implement(p, a)) return s;
  Plan pl = plan(p);
  const int cfg = pl.config;
  const Config& c = kConfigs[cfg];
  const bool int_scale = p->scale_kind == ODY_SCALE_INT;
  if (c.gemv()) {  // check_problem has refused float scales and M > gemv_max_m for it
    GemvParams g{};
    g.x = a->x;
    g.x_scale = a->x_scale;
    g.qweight = a->qweight;
    g.group_scale = static_cast<const int16_t*>(a->group_scale);
    g.channel_scale = a->channel_scale;
    g.bias = a->bias;
    g.y = a->y;
    g.acc_out = a->acc_out;
    g.m = p->m;
    g.n = p->n;
    g.np = (p->n + 7) / 8 * 8;
    g.k = p->k;
    g.group_size = p->group_size;
    g.act_per_token = p->act_per_token;
    ODY_CUDA(cudaGetLastError());
    if (c.gemv_strips)
      launch_w4a8_gemv_mma(g, c.gemv_strips, stream);
    else
      launch_w4a8_gemv(g, stream);
    ODY_CUDA(cudaGetLastError());
    return ODY_OK;
  }
  if (c.wgmma)  // check_problem has checked that it is usable and no split-K is asked
    return launch_w4a8_sm90(sm90_params(p, a, cfg), stream);
  Params k{};
  k.x = a->x;
  k.x_scale = a->x_scale;
  k.qweight = a->qweight;
  k.group_scale = a->group_scale;
  k.channel_scale = a->channel_scale;
  k.bias = a->bias;
  k.y = static_cast<__half*>(a->y);
  k.acc_out = int_scale ? a->acc_out : nullptr;
  k.m = p->m;
  k.n = p->n;
  k.np = (p->n + 7) / 8 * 8;
  k.k = p->k;
  k.group_size = p->group_size;
  k.act_per_token = p->act_per_token;
  k.tiles_m = (int)pl.tiles_m;
  k.tiles_n = (int)pl.tiles_n;
  if (pl.partial) {
    k.ws = static_cast<int32_t*>(a->workspace);
    k.counters = k.ws + (size_t)p->m * k.np;
  }
  occupancy(cfg, int_scale);  // raises the kernel's shared-memory limit once
  ODY_CUDA(cudaGetLastError());
  (int_scale ? c.launch_int : c.launch_float)(k, dim3(pl.blocks), stream);
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

int sm90_diag_code(const std::string& name) {
  return name == "nofold"    ? kSm90DiagNoFold
         : name == "noturn"  ? kSm90DiagNoTurn
         : name == "nowait"  ? kSm90DiagNoWait
         : name == "nomma"   ? kSm90DiagNoMma
         : name == "noepi"   ? kSm90DiagNoEpi
         : name == "mmaonly" ? kSm90DiagMmaOnly
         : name == "clock"   ? kSm90DiagClock
         : name == "prefetch" ? kSm90DiagPrefetch
         : name == "ss"       ? kSm90DiagSsA
         : name == "mmaonly-ss" ? kSm90DiagMmaOnly | kSm90DiagSsA
                             : -1;
}

// Bench only (fastgemm.hpp): the same checks as gemm for the forced config, then the variant.
ody_status w4a8_sm90_diag(const ody_w4a8_problem* p, const ody_w4a8_args* a, int config, int diag,
                          unsigned long long* clk, cudaStream_t stream) {
  if (config != kWgmmaV4Config && config != kWgmmaV5Config)
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: diagnostic variants exist for wgmma v4 and v5 only");
  if (!p || p->config != config || diag <= 0)
    return fail(ODY_ERR_INVALID, "w4a8: diagnostic launch needs problem.config == config and diag > 0");
  if (ody_status s = can_implement(p, a)) return s;
  Sm90Params w = sm90_params(p, a, config);
  w.diag = diag;
  w.diag_clk = clk;
  return launch_w4a8_sm90(w, stream);
}

}  // namespace odyssey

extern "C" {
ody_status ody_w4a8_can_implement(const ody_w4a8_problem* p, const ody_w4a8_args* a) {
  odyssey::clear_error();
  return odyssey::can_implement(p, a);
}
size_t ody_w4a8_workspace_size(const ody_w4a8_problem* p) { return odyssey::workspace_size(p); }
ody_status ody_w4a8_gemm(const ody_w4a8_problem* p, const ody_w4a8_args* a, void* stream) {
  odyssey::clear_error();
  return odyssey::gemm(p, a, static_cast<cudaStream_t>(stream));
}
int ody_w4a8_num_configs(void) { return odyssey::num_configs(); }
const char* ody_w4a8_config_name(int c) { return odyssey::config_name(c); }
ody_status ody_w4a8_dispatch(const ody_w4a8_problem* p, int* config, int* blocks) {
  odyssey::clear_error();
  if (ody_status s = odyssey::check_problem(p)) return s;
  return odyssey::dispatch(p, config, blocks);
}
}
