// w4a16.cu: the weight-only kernel, int4 weights × fp16 activations (the w4a16-gptq preset).
//
// What it computes (docs/gemm-cases.md, kind w4a16):
//   P_g[m,c] = Σ_{k∈g} x[m,k] · q[c,k]              fp32, tensor cores (mma.sync m16n8k16 f16)
//   acc      = Σ_g float(ŝ[g,c]) · P_g               fp32, one FMA per group per output
//   y        = half_rn(acc · 16·f_c (+ bias))         f_c = channel_scale = s_c/(16·α_c)
// i.e. x times the dequantized weight q·ŝ·s_c/α_c, with the artifact's own tensors.
//
// Layout: the same packed blocks as W4A8 (docs/fastgemm-layout.md), read unchanged. A lane's
// 32-bit word for a 32-deep step holds k = 4·tig + j in its low nibbles and k + 16 in its high
// nibbles (j = byte). An m16n8k16 B fragment wants k = {2t, 2t+1} and {8+2t, 9+2t}; since a
// GEMM may permute K as long as A and B agree, virtual k {2t, 2t+1, 8+2t, 9+2t} stands for real
// k {4t, 4t+2, 4t+1, 4t+3}: B's registers are then bytes {0, 2} and {1, 3} of the word, which
// a mask turns into two fp16 pairs (the 0x6400 exponent trick: (n ^ 8) | 0x6400 is 1024 + q + 8,
// minus 1032 gives q exactly), and A's are one 8-byte shared load per row split by a byte
// permute. The low nibbles feed the first k16 mma of the step, the high nibbles the second.
//
// Scheduling, pipeline and split handling are FastGEMM's (fastgemm.cu): stream-K over one wave,
// cp.async stages of A (rows padded to 288 bytes: conflict-free 8-byte loads), B and scales;
// tiles shared between blocks are summed in an fp32 workspace and finished by the last block.
//
// Decode GEMV (config "w4a16_gemv", the last of the table; the dispatch picks it for M ≤ 4):
// the mma tile above wastes 15/16 of A at M = 1 and pays a pipeline fill, barriers and the
// split-K fix-up (71 µs for 8192×28672 where the weights need 29). The GEMV swaps the roles:
// yᵀ = W·xᵀ with A = 16 weight columns (two 8-column strips) and B = xᵀ (8 columns, x rows ≥ M
// zero), so the same packed words feed A directly: lane (gid, tig)'s 16-byte word of strip nb
// is A's row gid, of strip nb+1 row gid+8, with the same virtual-k mapping as above (bytes
// {0, 2} -> k {2t, 2t+1}, bytes {1, 3} -> {2t+8, 2t+9}); B is the 8-byte x load split by a byte
// permute, exactly the A operand of the tile kernel. One block of kGemvWarps warps per 16
// columns, warps splitting K by 128-deep blocks (kGemvU loaded ahead, straight from global
// memory with ld.global.nc, no shared-memory staging, no workspace), per-group FMA of ŝ as
// above, the warps' partials summed in shared memory in warp order, then the same epilogue.
// Launched with PDL (pdl.cuh): the first weight loads precede pdl_wait().
// Numerics: the same operations as the tile kernel (x·q exact, fp32 tensor-core sums per
// group, fmaf(ŝ, P_g, acc) per group, ·16f_c, + bias, one fp16 rounding), in another order (K
// split over warps, then kGemvWarps−1 fp32 additions): bit-exactness with the tile kernel is
// impossible, since neither the tensor cores' internal addition order nor the tile kernel's
// stream-K atomics are fixed. It is tested like the tile kernel against the float64 reference
// within (K/16 + G + 4)·2⁻²²·y_abs + one fp16 ulp (docs/gemm-cases.md); that bound covers the
// warps' additions: they are IEEE fp32 (2⁻²⁴ each) while every group FMA is charged 2⁻²², and
// 7·2⁻²⁴ < 4·2⁻²² is inside the "+ 4" even with one group.
//
// Decode GEMV 2 (configs "w4a16_gemv2_s2", "_s4", "_s8", M ≤ 16; picked by the dispatch only
// with ODYSSEY_W4A16_GEMV2=1 until a GPU run decides): the same arithmetic, restructured after
// the W4A8 tensor-core GEMV (gemv_mma.cu); its own section below says how and why.
//
// Limits: K % 128 == 0; group 32, 64, 128 or K; x, qweight, group_scale 16-byte aligned.
// The GEMV: also M ≤ kGemvMaxM (8: B has 8 columns), splits 0 or 1. GEMV 2: M ≤ 16, splits 0
// or 1.
// Test: odyssey-rt test gemm (w4a16 cases from the Go reference, every config; the GEMVs on
// every case with M ≤ 8 / 16; --kinds w4a16 --configs NAME runs one config). Bench: odyssey-rt
// bench gemm (rows w4a16 = the dispatch, w4a16_gemv, w4a16_gemv2_s2/_s4/_s8, w4a16_mma;
// --only w4a16 leaves the other kernels out); runtime/scripts/device-run.sh w4a16 runs both.
// CPU: python3 runtime/tests/emulate_w4a16_gemv2.py replays GEMV 2's indexing and dequantization.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "mma_f16.cuh"
#include "kernel_common.cuh"
#include "odyssey_rt.h"
#include "pdl.cuh"
#include "status.hpp"

namespace odyssey {
namespace {

using kernel::cp_async16;
using kernel::cp_async_commit;
using kernel::cp_async_wait;
using kernel::kBK;
constexpr int kAStride = kBK * 2 + 32;  // bytes per padded fp16 row of A

struct Params {
  const __half* x;
  const uint8_t* qweight;
  const int16_t* group_scale;
  const float* channel_scale;
  const float* bias;
  __half* y;
  float* ws;
  int32_t* counters;
  int m, n, np, k, group_size, tiles_m, tiles_n;
};

// Two 4-bit two's-complement codes at bits 0..3 and 16..19 of t -> half2(q0, q1), exactly.
__device__ __forceinline__ uint32_t nibbles_to_half2(uint32_t t) {
  uint32_t h = (t ^ 0x00080008u) | 0x64006400u;  // 1024 + q + 8 in each half
  __half2 v = __hsub2(*reinterpret_cast<__half2*>(&h), __half2half2(__ushort_as_half(0x6408)));  // 1032
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES>
struct Shape {
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static constexpr int kABytes = BM * kAStride;
  static constexpr int kBBytes = (BN / 8) * 512;
  static constexpr int kSBytes = 4 * BN * 2;
  static constexpr int kStageBytes = kABytes + kBBytes + kSBytes;
  static constexpr int kSmemBytes = STAGES * kStageBytes;
  static_assert(WM % 16 == 0 && WN % 8 == 0, "warp tile must be whole mma tiles");
};

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES>
__device__ __forceinline__ void segment(const Params& p, uint8_t* smem, int tm, int tn, int kb0, int kb1) {
  using S = Shape<BM, BN, WARPS_M, WARPS_N, STAGES>;
  constexpr int MT = S::MT, NT = S::NT, WM = S::WM, WN = S::WN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  const int gid = lane >> 2, tig = lane & 3;
  const int n0 = tn * BN, m0 = tm * BM;
  const int kblocks = p.k / kBK, nkb = kb1 - kb0;
  const bool per_channel = p.group_size >= p.k;
  const int gpk = per_channel ? 0 : kBK / p.group_size;
  const int spg = per_channel ? 4 : p.group_size / 32;
  const int spg_mask = spg - 1, spg_log2 = spg == 4 ? 2 : spg == 2 ? 1 : 0;

  // Copy plan (see fastgemm.cu): 32-bit offsets, rows past M never copied.
  constexpr int kAChunks = (BM * 16 + S::kThreads - 1) / S::kThreads;  // 16 chunks per 256-byte row
  constexpr int kBChunks = ((BN / 8) * 32 + S::kThreads - 1) / S::kThreads;
  uint32_t a_src[kAChunks], a_dst[kAChunks];
#pragma unroll
  for (int u = 0; u < kAChunks; u++) {
    int i = u * S::kThreads + tid, r = i >> 4, c = i & 15;
    bool ok = i < BM * 16 && m0 + r < p.m;
    a_src[u] = ok ? (uint32_t)(((size_t)(m0 + r) * p.k) * 2 + c * 16) : 0xFFFFFFFFu;
    a_dst[u] = ok ? r * kAStride + c * 16 : 0xFFFFFFFFu;
  }
  uint32_t b_src[kBChunks], b_dst[kBChunks];
#pragma unroll
  for (int u = 0; u < kBChunks; u++) {
    int i = u * S::kThreads + tid, b = i >> 5, c = i & 31, nb = (n0 >> 3) + b;
    b_src[u] = (i < (BN / 8) * 32 && nb * 8 < p.np) ? (uint32_t)((size_t)nb * kblocks * 512 + c * 16) : 0xFFFFFFFFu;
    b_dst[u] = i < (BN / 8) * 32 ? b * 512 + c * 16 : 0xFFFFFFFFu;
  }
  const int s_chunks = gpk * (BN / 8);
  bool s_on[2], s_ok[2];
  uint32_t s_src[2], s_dst[2];
#pragma unroll
  for (int u = 0; u < 2; u++) {
    int i = u * S::kThreads + tid, g = gpk ? i / (BN / 8) : 0, c = i % (BN / 8), col = n0 + c * 8;
    s_on[u] = i < s_chunks;
    s_ok[u] = s_on[u] && col < p.np;
    s_src[u] = s_ok[u] ? (uint32_t)((size_t)g * p.np + col) : 0;
    s_dst[u] = (g * BN + c * 8) * 2;
  }
  const uint8_t* xb = reinterpret_cast<const uint8_t*>(p.x);
  auto load_stage = [&](int stage, int kb) {
    uint8_t* sa = smem + stage * S::kStageBytes;
    uint8_t* sb = sa + S::kABytes;
    uint8_t* ss = sb + S::kBBytes;
#pragma unroll
    for (int u = 0; u < kAChunks; u++)
      if (a_dst[u] != 0xFFFFFFFFu) cp_async16(sa + a_dst[u], xb + a_src[u] + (size_t)kb * kBK * 2, true);
#pragma unroll
    for (int u = 0; u < kBChunks; u++) {
      const bool ok = b_src[u] != 0xFFFFFFFFu;
      if (b_dst[u] != 0xFFFFFFFFu) cp_async16(sb + b_dst[u], p.qweight + (ok ? b_src[u] + kb * 512 : 0), ok);
    }
#pragma unroll
    for (int u = 0; u < 2; u++)
      if (s_on[u])
        cp_async16(ss + s_dst[u], p.group_scale + (s_ok[u] ? s_src[u] + (size_t)kb * gpk * p.np : 0), s_ok[u]);
  };

  float total[MT][NT][4], part[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) total[i][j][e] = part[i][j][e] = 0.f;

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
    const uint8_t* sa = smem + (it % STAGES) * S::kStageBytes;
    const uint8_t* sb = sa + S::kABytes;
    const int16_t* ss = reinterpret_cast<const int16_t*>(sb + S::kBBytes);
    uint4 bw[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) bw[j] = *reinterpret_cast<const uint4*>(sb + (warp_n * NT + j) * 512 + lane * 16);
#pragma unroll
    for (int step = 0; step < 4; step++) {
#pragma unroll
      for (int half = 0; half < 2; half++) {
        // A: rows gid and gid+8, real k = step·32 + half·16 + 4·tig .. +3 (8 bytes each).
        uint32_t af[MT][4];
#pragma unroll
        for (int i = 0; i < MT; i++) {
          const uint8_t* row = sa + (warp_m * WM + i * 16 + gid) * kAStride + (step * 32 + half * 16 + 4 * tig) * 2;
          uint2 lo = *reinterpret_cast<const uint2*>(row);
          uint2 hi = *reinterpret_cast<const uint2*>(row + 8 * kAStride);
          af[i][0] = prmt(lo.x, lo.y, 0x5410);  // (k0, k2) of row gid
          af[i][1] = prmt(hi.x, hi.y, 0x5410);  // (k0, k2) of row gid+8
          af[i][2] = prmt(lo.x, lo.y, 0x7632);  // (k1, k3) of row gid
          af[i][3] = prmt(hi.x, hi.y, 0x7632);  // (k1, k3) of row gid+8
        }
#pragma unroll
        for (int j = 0; j < NT; j++) {
          uint32_t w = step == 0 ? bw[j].x : step == 1 ? bw[j].y : step == 2 ? bw[j].z : bw[j].w;
          if (half) w >>= 4;
          uint32_t b0 = nibbles_to_half2(w & 0x000F000Fu);         // bytes 0, 2: k0, k2
          uint32_t b1 = nibbles_to_half2((w >> 8) & 0x000F000Fu);  // bytes 1, 3: k1, k3
#pragma unroll
          for (int i = 0; i < MT; i++) mma16816(part[i][j], af[i], b0, b1);
        }
      }
      if (gpk > 0 && ((step + 1) & spg_mask) == 0) {
        const int g = step >> spg_log2;
#pragma unroll
        for (int j = 0; j < NT; j++) {
          const int col = warp_n * WN + j * 8 + tig * 2;
          uint32_t s2 = *reinterpret_cast<const uint32_t*>(ss + g * BN + col);
          float s_lo = (float)(int16_t)(s2 & 0xFFFF), s_hi = (float)(int16_t)(s2 >> 16);
#pragma unroll
          for (int i = 0; i < MT; i++) {
            total[i][j][0] = fmaf(s_lo, part[i][j][0], total[i][j][0]);
            total[i][j][1] = fmaf(s_hi, part[i][j][1], total[i][j][1]);
            total[i][j][2] = fmaf(s_lo, part[i][j][2], total[i][j][2]);
            total[i][j][3] = fmaf(s_hi, part[i][j][3], total[i][j][3]);
#pragma unroll
            for (int e = 0; e < 4; e++) part[i][j][e] = 0.f;
          }
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  if (per_channel) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
      const int col = n0 + warp_n * WN + j * 8 + tig * 2;
      float s_lo = col < p.np ? (float)p.group_scale[col] : 0.f;
      float s_hi = col < p.np ? (float)p.group_scale[col + 1] : 0.f;
#pragma unroll
      for (int i = 0; i < MT; i++) {
        total[i][j][0] = s_lo * part[i][j][0];
        total[i][j][1] = s_hi * part[i][j][1];
        total[i][j][2] = s_lo * part[i][j][2];
        total[i][j][3] = s_hi * part[i][j][3];
      }
    }
  }

  if (nkb != kblocks) {
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          int r = m0 + warp_m * WM + i * 16 + gid + (e >> 1) * 8, c = n0 + warp_n * WN + j * 8 + tig * 2 + (e & 1);
          if (r < p.m && c < p.np) atomicAdd(p.ws + (size_t)r * p.np + c, total[i][j][e]);
        }
    __threadfence();
    __syncthreads();
    __shared__ int last;
    if (tid == 0) {
      int tile = tm * p.tiles_n + tn;
      int done = atomicAdd(p.counters + tile, nkb) + nkb;
      last = done == kblocks;
      if (last) p.counters[tile] = 0;
    }
    __syncthreads();
    const bool finish = last;
    __syncthreads();
    if (!finish) return;
    __threadfence();
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          int r = m0 + warp_m * WM + i * 16 + gid + (e >> 1) * 8, c = n0 + warp_n * WN + j * 8 + tig * 2 + (e & 1);
          if (r < p.m && c < p.np) {
            float* w = p.ws + (size_t)r * p.np + c;
            total[i][j][e] = __ldcg(w);
            __stcg(w, 0.f);
          }
        }
  }

#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = m0 + warp_m * WM + i * 16 + gid + h * 8;
      if (r >= p.m) continue;
#pragma unroll
      for (int j = 0; j < NT; j++) {
        const int c = n0 + warp_n * WN + j * 8 + tig * 2;
        if (c >= p.n) continue;
        const bool two = c + 1 < p.n;
        float v0 = total[i][j][h * 2] * (16.f * p.channel_scale[c]);
        float v1 = two ? total[i][j][h * 2 + 1] * (16.f * p.channel_scale[c + 1]) : 0.f;
        if (p.bias) {
          v0 += p.bias[c];
          if (two) v1 += p.bias[c + 1];
        }
        __half* out = p.y + (size_t)r * p.n + c;
        if (two && (((size_t)r * p.n + c) & 1) == 0) {
          *reinterpret_cast<__half2*>(out) = __floats2half2_rn(v0, v1);
        } else {
          out[0] = __float2half_rn(v0);
          if (two) out[1] = __float2half_rn(v1);
        }
      }
    }
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32) w4a16_kernel(const Params p) {
  extern __shared__ __align__(16) uint8_t smem[];
  kernel::stream_k((long long)p.tiles_m * p.tiles_n, p.k / kBK, [&](long long tile, int kb0, int kb1) {
    segment<BM, BN, WARPS_M, WARPS_N, STAGES>(p, smem, (int)(tile / p.tiles_n), (int)(tile % p.tiles_n), kb0, kb1);
  });
}

// ------------------------------------------------------------------ decode GEMV

constexpr int kGemvWarps = 8;  // warps per block, splitting K
constexpr int kGemvU = 4;      // K blocks per warp loaded ahead of their use
constexpr int kGemvMaxM = 8;   // columns of the mma's B

__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int s) {
  return s == 0 ? v.x : s == 1 ? v.y : s == 2 ? v.z : v.w;
}

// SPG: 32-deep steps per group (1, 2, 4 for groups of 32, 64, 128); 0 per-channel (ŝ applied
// once, after the reduction, as the tile kernel does).
template <int SPG>
__global__ void __launch_bounds__(kGemvWarps * 32) w4a16_gemv_kernel(const Params p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int nb0 = blockIdx.x * 2;            // strips nb0 (A rows 0..7) and nb0 + 1 (rows 8..15)
  const bool ok1 = (nb0 + 1) * 8 < p.np;     // the second strip exists
  const int col0 = nb0 * 8 + gid, col1 = col0 + 8;
  const int kblocks = p.k / kBK;
  const uint8_t* ws0 = p.qweight + ((size_t)nb0 * kblocks * 32 + lane) * 16;
  const uint8_t* ws1 = p.qweight + ((size_t)(ok1 ? nb0 + 1 : nb0) * kblocks * 32 + lane) * 16;
  const bool okx = gid < p.m;
  // This lane's x: row gid, k = 4·tig + (0..3) of each 16 (+ 16 for the high nibbles).
  const __half* xr = p.x + (size_t)(okx ? gid : 0) * p.k + 4 * tig;

  float total[4] = {0.f, 0.f, 0.f, 0.f}, part[4] = {0.f, 0.f, 0.f, 0.f};
  uint4 w0[kGemvU], w1[kGemvU];
  auto load_w = [&](int kb0) {
#pragma unroll
    for (int u = 0; u < kGemvU; u++) {
      const int kb = kb0 + u * kGemvWarps;
      const bool in = kb < kblocks;
      w0[u] = in ? ld_stream16(ws0 + (size_t)kb * 512) : make_uint4(0, 0, 0, 0);
      w1[u] = in && ok1 ? ld_stream16(ws1 + (size_t)kb * 512) : make_uint4(0, 0, 0, 0);
    }
  };
  int kb0 = warp;
  if (kb0 < kblocks) load_w(kb0);  // before the wait: weights never depend on the previous kernel
  pdl_wait();
  for (; kb0 < kblocks; kb0 += kGemvWarps * kGemvU) {
#pragma unroll
    for (int u = 0; u < kGemvU; u++) {
      const int kb = kb0 + u * kGemvWarps;
      if (kb >= kblocks) break;
      int32_t s0[4], s1[4];
      (void)s0;
      (void)s1;
      if constexpr (SPG > 0) {
#pragma unroll
        for (int g = 0; g < 4 / SPG; g++) {
          const size_t row = (size_t)(kb * (4 / SPG) + g) * p.np;
          s0[g] = p.group_scale[row + col0];
          s1[g] = ok1 ? p.group_scale[row + col1] : 0;
        }
      }
#pragma unroll
      for (int step = 0; step < 4; step++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
          uint2 xv = make_uint2(0, 0);
          if (okx) xv = __ldg(reinterpret_cast<const uint2*>(xr + kb * kBK + step * 32 + half * 16));
          const uint32_t b0 = prmt(xv.x, xv.y, 0x5410);  // (k0, k2)
          const uint32_t b1 = prmt(xv.x, xv.y, 0x7632);  // (k1, k3)
          const uint32_t q0 = word_of(w0[u], step) >> (4 * half), q1 = word_of(w1[u], step) >> (4 * half);
          const uint32_t a0 = nibbles_to_half2(q0 & 0x000F000Fu);         // column col0, k0 k2
          const uint32_t a1 = nibbles_to_half2(q1 & 0x000F000Fu);         // column col1, k0 k2
          const uint32_t a2 = nibbles_to_half2((q0 >> 8) & 0x000F000Fu);  // column col0, k1 k3
          const uint32_t a3 = nibbles_to_half2((q1 >> 8) & 0x000F000Fu);  // column col1, k1 k3
          const uint32_t af[4] = {a0, a1, a2, a3};
          mma16816(part, af, b0, b1);
        }
        if constexpr (SPG > 0) {
          if ((step + 1) % SPG == 0) {  // end of a group: P_g takes the group's ŝ
            const float f0 = (float)s0[step / SPG], f1 = (float)s1[step / SPG];
            // part[0], part[1]: column col0 (x rows 2t, 2t+1); part[2], part[3]: column col1.
            total[0] = fmaf(f0, part[0], total[0]);
            total[1] = fmaf(f0, part[1], total[1]);
            total[2] = fmaf(f1, part[2], total[2]);
            total[3] = fmaf(f1, part[3], total[3]);
#pragma unroll
            for (int e = 0; e < 4; e++) part[e] = 0.f;
          }
        }
      }
    }
    if (kb0 + kGemvWarps * kGemvU < kblocks) load_w(kb0 + kGemvWarps * kGemvU);
  }
  pdl_launch_dependents();
  if constexpr (SPG == 0) {
#pragma unroll
    for (int e = 0; e < 4; e++) total[e] = part[e];
  }

  __shared__ float red[kGemvWarps][16][8];  // [warp][column in block][x row]
  red[warp][gid][2 * tig] = total[0];
  red[warp][gid][2 * tig + 1] = total[1];
  red[warp][gid + 8][2 * tig] = total[2];
  red[warp][gid + 8][2 * tig + 1] = total[3];
  __syncthreads();
  if (threadIdx.x >= 128) return;
  const int cl = threadIdx.x >> 3, m = threadIdx.x & 7;
  const int c = nb0 * 8 + cl;
  if (m >= p.m || c >= p.n) return;
  float acc = red[0][cl][m];
#pragma unroll
  for (int v = 1; v < kGemvWarps; v++) acc = __fadd_rn(acc, red[v][cl][m]);
  if constexpr (SPG == 0) acc = __fmul_rn((float)p.group_scale[c], acc);
  float y = __fmul_rn(acc, 16.f * p.channel_scale[c]);
  if (p.bias) y = __fadd_rn(y, p.bias[c]);
  p.y[(size_t)m * p.n + c] = __float2half_rn(y);
}

// A failed launch is reported by the caller's cudaGetLastError(): the runtime records the
// error of every API call, cudaLaunchKernelEx's included.
void launch_gemv(const Params& p, int blocks, cudaStream_t s) {
  const dim3 grid(blocks), block(kGemvWarps * 32);
  if (p.group_size >= p.k)
    (void)launch_pdl(w4a16_gemv_kernel<0>, grid, block, 0, s, p);
  else if (p.group_size == 32)
    (void)launch_pdl(w4a16_gemv_kernel<1>, grid, block, 0, s, p);
  else if (p.group_size == 64)
    (void)launch_pdl(w4a16_gemv_kernel<2>, grid, block, 0, s, p);
  else
    (void)launch_pdl(w4a16_gemv_kernel<4>, grid, block, 0, s, p);
}

// ------------------------------------------------------------------ decode GEMV 2
//
// Configs "w4a16_gemv2_s2", "_s4", "_s8", "_s2p" (M ≤ 16; ODYSSEY_W4A16_GEMV2=1 makes the
// dispatch pick s2/s4/s8, see plan(); s2p is forced only, for the A/B below). Same arithmetic and operand roles as w4a16_gemv above (yᵀ = W·xᵀ, A = 16
// weight columns = two 8-column strips, B = xᵀ), restructured after the W4A8 tensor-core GEMV
// (gemv_mma.cu, 88% of the memory floor at 8192×28672 on the same packed weights):
//
// Why the first GEMV is slow (90 µs at 8192×28672 on the H100, 45% of the floor; the reasons
// read from its code and ptxas, not profiled): (1) wave quantization: one 256-thread block per
// 16 columns and whole K, 80 registers per thread (ptxas, g128), so 3 blocks per SM: 512 blocks
// over 396 slots run as 1.3 waves of blocks that each stream 229 KB; (2) its group scales are
// 16-bit loads issued in the middle of the math, each a dependent DRAM miss per K block and
// warp; (3) the nibble positions cost 3 shifts per weight word (SASS, g128, LOP3 + SHF + HADD2
// + HFMA2 per HMMA: 16.4 in the first GEMV, 11.6 here at s2, 10.2 at s8).
// Here:
//  - A block owns S = 2, 4 or 8 strips (P = S/2 strip pairs, one m16 A tile each) and all of K;
//    its 8 warps split K (warp w: K blocks w, w + 8, …). Each iteration a warp issues all its
//    U·S weight loads (16 bytes per lane, ld.global.nc L1::no_allocate) AND their group scales
//    first, then multiplies; so a warp keeps U·S·512 bytes in flight, and the launch bounds fix
//    the blocks per SM: s2 U=4 and s4 U=2 run 2 blocks per SM (≤ 128 registers), s8 U=2 one
//    (≤ 255): 64 KB in flight per SM in every config (groups of 32: U halves, see g2_ahead, to
//    keep the 4 scale words per strip and K block in registers). With 2 slots per SM the grid
//    of 8192×28672 (512 s2 blocks / 256 s4 blocks / 128 s8 blocks) is 1.9 / 0.97 / 0.97 waves.
//    The weakness: a warp's loads and math alternate (in flight 4 KB, then none while it
//    multiplies); all warps of a block start together, so a block's math phases coincide. s2p
//    (PIPE) holds two rounds of U = 2 in the same registers and issues round t + 1's loads
//    before round t's math: 2–4 KB per warp always in flight. Which wins is for the bench.
//  - The x fragment (B) of a (step, half) is one 8-byte __ldg per lane (L1-cached: x is read by
//    every block) shared by the P pairs and loaded once; lanes whose x row is ≥ M load nothing.
//  - int4 → fp16 with one shift per 32-bit word: the low nibbles by (w & 0x000F000F) ^
//    0x64086408 = 1024 + q + 8 (as the tile kernel, then − 1032), the high nibbles in place by
//    (w & 0x00F000F0) ^ 0x64806480 = 1024 + 16(q + 8), then ·1/16 − 72 (one HFMA2): both exact
//    (every value is a small integer, exact in fp16, and an FMA rounds once). Bytes 1 and 3 go
//    through w >> 8, the one shift.
//  - Up to 16 rows: B covers 8 x rows per mma, MH = 2 runs a second mma per A fragment (rows
//    8..15), reusing the dequantized weights.
// Reduction: the 8 warps' fp32 fragments through shared memory, added in warp order by one
// thread per output, then the same epilogue as w4a16_gemv. No split-K, no workspace: every
// output's value is a fixed sequence of IEEE operations (deterministic, same bits every run).
// Numerics: the operations of w4a16_gemv exactly (per warp: fp32 mma chains per group from
// zero, fmaf(ŝ, P_g, acc) per group in K order; 7 fp32 additions over warps in warp order;
// ·ŝ per-channel, ·16f_c, + bias, one fp16 rounding), so the same bound holds:
// (K/16 + G + 4)·2⁻²²·y_abs + one fp16 ulp (docs/gemm-cases.md). Only the grouping of K blocks
// over warps differs (warp w sums K blocks ≡ w mod 8 in both kernels; here in rounds of U).
// PDL: the first round of weights and scales is loaded before pdl_wait(); x only after it.
// (Weights and scales are constants of the model, uploaded before any GEMM, as gemv_mma and the
// first GEMV assume.)
// Limits: M ≤ 16, splits 0 or 1, plus the kernel's (K % 128, groups, alignment).
// Test: odyssey-rt test gemm (every w4a16 case with M ≤ 16, each config, and the dispatch with
// ODYSSEY_W4A16_GEMV2=1). Bench: odyssey-rt bench gemm (rows w4a16_gemv2_s2/_s4/_s8), or
// runtime/scripts/device-run.sh w4a16.

constexpr int kG2Warps = 8;
constexpr int kG2MaxM = 16;

// (a & b) ^ c in one LOP3 (immLut 0x6A = (0xF0 & 0xCC) ^ 0xAA).
__device__ __forceinline__ uint32_t and_xor(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0x6A;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__device__ __forceinline__ uint32_t h2_bits(__half2 v) { return *reinterpret_cast<uint32_t*>(&v); }
__device__ __forceinline__ __half2 bits_h2(uint32_t v) { return *reinterpret_cast<__half2*>(&v); }

// The A operand halves of one packed word w (column gid of a strip, 32-deep step): HALF 0 (low
// nibbles, real k 4t..4t+3) or 1 (high nibbles, k + 16). e = (k0, k2) for a0/a1, o = (k1, k3)
// for a2/a3 (the virtual-k mapping of the file header).
template <int HALF>
__device__ __forceinline__ void dequant_word(uint32_t w, uint32_t& e, uint32_t& o) {
  const uint32_t w8 = w >> 8;
  if constexpr (HALF == 0) {
    const __half2 c1032 = bits_h2(0x64086408u);
    e = h2_bits(__hsub2(bits_h2(and_xor(w, 0x000F000Fu, 0x64086408u)), c1032));
    o = h2_bits(__hsub2(bits_h2(and_xor(w8, 0x000F000Fu, 0x64086408u)), c1032));
  } else {
    const __half2 sixteenth = bits_h2(0x2C002C00u), m72 = bits_h2(0xD480D480u);  // 1/16, −72
    e = h2_bits(__hfma2(bits_h2(and_xor(w, 0x00F000F0u, 0x64806480u)), sixteenth, m72));
    o = h2_bits(__hfma2(bits_h2(and_xor(w8, 0x00F000F0u, 0x64806480u)), sixteenth, m72));
  }
}

// MH: 8-row halves of x in use (1: M ≤ 8, 2: M ≤ 16). SPG: 32-deep steps per group (1, 2, 4),
// 0 per-channel. S: strips per block (2, 4, 8). U: K blocks per warp per round. PIPE: two
// register buffers of rounds; round t + 1's loads are issued before round t's math, so a
// warp's weights stay in flight while it multiplies (config w4a16_gemv2_s2p; the others load a
// round, wait, multiply). The arithmetic and its order are the same either way.
template <int MH, int SPG, int S, int U, bool PIPE>
__global__ void __launch_bounds__(kG2Warps * 32, S == 8 ? 1 : 2) w4a16_gemv2_kernel(const Params p) {
  constexpr int P = S / 2;                   // strip pairs: one m16 A tile each
  constexpr int NG = SPG > 0 ? 4 / SPG : 1;  // groups per K block
  constexpr int IT = kG2Warps * U;           // K blocks per round of the block
  constexpr int NB = PIPE ? 2 : 1;           // register buffers of rounds
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int kblocks = p.k / kBK;
  const int strip0 = blockIdx.x * S;
  const int real = min(S, p.np / 8 - strip0);  // strips of this block inside Np/8
  const uint8_t* wbase = p.qweight + ((size_t)strip0 * kblocks * 32 + lane) * 16;
  const size_t wstrip = (size_t)kblocks * 512;
  const int16_t* sbase = p.group_scale + strip0 * 8 + gid;  // strip j: + 8j; group row g: + g·Np
  const bool okx0 = gid < p.m, okx1 = MH == 2 && gid + 8 < p.m;
  const __half* x0 = p.x + (size_t)(okx0 ? gid : 0) * p.k + 4 * tig;
  const __half* x1 = p.x + (size_t)(okx1 ? gid + 8 : 0) * p.k + 4 * tig;

  uint4 w[NB][U][S];
  int32_t sc[NB][U][S][NG];
  (void)sc;
  // Round t's weights and scales into buffer b (zeros past K and past the block's strips).
  auto load = [&](int b, int t) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int kb = t * IT + warp + kG2Warps * u;
#pragma unroll
      for (int j = 0; j < S; j++) {
        const bool ok = kb < kblocks && j < real;
        w[b][u][j] = ok ? ld_stream16(wbase + j * wstrip + (size_t)kb * 512) : make_uint4(0, 0, 0, 0);
      }
    }
    if constexpr (SPG > 0) {  // after every weight load: they are what the round waits for
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int kb = t * IT + warp + kG2Warps * u;
#pragma unroll
        for (int j = 0; j < S; j++)
#pragma unroll
          for (int g = 0; g < NG; g++)
            sc[b][u][j][g] = kb < kblocks && j < real ? __ldg(sbase + j * 8 + (size_t)(kb * NG + g) * p.np) : 0;
      }
    }
  };

  float total[P][MH][4], part[P][MH][4];
#pragma unroll
  for (int q = 0; q < P; q++)
#pragma unroll
    for (int h = 0; h < MH; h++)
#pragma unroll
      for (int e = 0; e < 4; e++) total[q][h][e] = part[q][h][e] = 0.f;

  // The math of round t from buffer b.
  auto compute = [&](int b, int t) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int kb = t * IT + warp + kG2Warps * u;
      if (kb >= kblocks) break;  // warp-uniform
#pragma unroll
      for (int step = 0; step < 4; step++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
          // B: x rows gid (and gid + 8), real k = 32·step + 16·half + 4·tig .. +3.
          const int off = kb * kBK + step * 32 + half * 16;
          uint2 xa = make_uint2(0, 0), xb = make_uint2(0, 0);
          if (okx0) xa = __ldg(reinterpret_cast<const uint2*>(x0 + off));
          if (MH == 2 && okx1) xb = __ldg(reinterpret_cast<const uint2*>(x1 + off));
          const uint32_t b0a = prmt(xa.x, xa.y, 0x5410), b1a = prmt(xa.x, xa.y, 0x7632);  // (k0,k2), (k1,k3)
          const uint32_t b0b = prmt(xb.x, xb.y, 0x5410), b1b = prmt(xb.x, xb.y, 0x7632);
          (void)b0b;
          (void)b1b;
#pragma unroll
          for (int q = 0; q < P; q++) {
            uint32_t af[4];  // a0 = strip 2q (k0,k2), a1 = strip 2q+1 (k0,k2), a2/a3 the (k1,k3)
            if (half == 0) {
              dequant_word<0>(word_of(w[b][u][2 * q], step), af[0], af[2]);
              dequant_word<0>(word_of(w[b][u][2 * q + 1], step), af[1], af[3]);
            } else {
              dequant_word<1>(word_of(w[b][u][2 * q], step), af[0], af[2]);
              dequant_word<1>(word_of(w[b][u][2 * q + 1], step), af[1], af[3]);
            }
            mma16816(part[q][0], af, b0a, b1a);
            if constexpr (MH == 2) mma16816(part[q][MH - 1], af, b0b, b1b);
          }
        }
        if constexpr (SPG > 0) {
          if ((step + 1) % SPG == 0) {  // end of a group: P_g takes the group's ŝ
#pragma unroll
            for (int q = 0; q < P; q++) {
              const float f0 = (float)sc[b][u][2 * q][step / SPG], f1 = (float)sc[b][u][2 * q + 1][step / SPG];
#pragma unroll
              for (int h = 0; h < MH; h++) {
                // part[.][h][0..1]: row gid = strip 2q's column; [2..3]: strip 2q+1's.
                total[q][h][0] = fmaf(f0, part[q][h][0], total[q][h][0]);
                total[q][h][1] = fmaf(f0, part[q][h][1], total[q][h][1]);
                total[q][h][2] = fmaf(f1, part[q][h][2], total[q][h][2]);
                total[q][h][3] = fmaf(f1, part[q][h][3], total[q][h][3]);
#pragma unroll
                for (int e = 0; e < 4; e++) part[q][h][e] = 0.f;
              }
            }
          }
        }
      }
    }
  };

  load(0, 0);  // weights and scales never depend on the previous kernel
  pdl_launch_dependents();
  pdl_wait();
  const int rounds = (kblocks + IT - 1) / IT;
  if constexpr (!PIPE) {
    for (int t = 0; t < rounds; t++) {
      if (t > 0) load(0, t);
      compute(0, t);
    }
  } else {
    for (int t = 0; t < rounds; t += 2) {
      if (t + 1 < rounds) load(NB - 1, t + 1);
      compute(0, t);
      if (t + 1 >= rounds) break;
      if (t + 2 < rounds) load(0, t + 2);
      compute(NB - 1, t + 1);
    }
  }
  if constexpr (SPG == 0) {  // per-channel: one chain over K, ŝ after the reduction
#pragma unroll
    for (int q = 0; q < P; q++)
#pragma unroll
      for (int h = 0; h < MH; h++)
#pragma unroll
        for (int e = 0; e < 4; e++) total[q][h][e] = part[q][h][e];
  }

  // [warp][column in block][x row]; fragment element e of lane (gid, tig) in pair q, half h:
  // column (2q + e/2)·8 + gid, x row 8h + 2·tig + e%2.
  __shared__ float red[kG2Warps][S * 8][MH * 8];
#pragma unroll
  for (int q = 0; q < P; q++)
#pragma unroll
    for (int h = 0; h < MH; h++)
#pragma unroll
      for (int e = 0; e < 4; e++) red[warp][(2 * q + (e >> 1)) * 8 + gid][h * 8 + 2 * tig + (e & 1)] = total[q][h][e];
  __syncthreads();
  for (int o = threadIdx.x; o < p.m * S * 8; o += kG2Warps * 32) {
    const int m = o / (S * 8), cl = o - m * (S * 8);
    const int c = strip0 * 8 + cl;
    if ((cl >> 3) >= real || c >= p.n) continue;  // strips past Np/8, padding columns
    float acc = red[0][cl][m];
#pragma unroll
    for (int v = 1; v < kG2Warps; v++) acc = __fadd_rn(acc, red[v][cl][m]);
    if constexpr (SPG == 0) acc = __fmul_rn((float)p.group_scale[c], acc);
    float y = __fmul_rn(acc, 16.f * p.channel_scale[c]);
    if (p.bias) y = __fadd_rn(y, p.bias[c]);
    p.y[(size_t)m * p.n + c] = __float2half_rn(y);
  }
}

// K blocks per warp per round: 64 KB in flight per SM at full occupancy (s2: 2 blocks × 8 warps
// × 4 × 2 × 512 B; s4: 2 × 8 × 2 × 4 × 512; s8: 1 × 8 × 2 × 8 × 512). Groups of 32 hold 4
// scale words per strip and K block: U halves (as gemv_mma's k_blocks_ahead), and so do groups
// of 64 at s4 with 16 rows (MH = 2: 32 accumulator registers), so that every instantiation
// stays inside its register bound without spilling (ptxas -v: 0 bytes spilled, CUDA 11.8).
// The pipelined s2 (PIPE) holds two rounds of U = 2 (groups of 32: 1): the registers of s2's one
// round of 4, with 2 to 4 KB per warp always in flight instead of 4 KB then none.
constexpr int g2_ahead(int s, int spg, int mh, bool pipe) {
  return pipe ? (spg == 1 ? 1 : 2)
              : s == 2 ? (spg == 1 ? 2 : 4) : (spg == 1 || (s == 4 && mh == 2 && spg == 2)) ? 1 : 2;
}

template <int MH, int SPG, int S, bool PIPE>
void launch_g2_t(const Params& p, int blocks, cudaStream_t s) {
  (void)launch_pdl(w4a16_gemv2_kernel<MH, SPG, S, g2_ahead(S, SPG, MH, PIPE), PIPE>, dim3(blocks),
                   dim3(kG2Warps * 32), 0, s, p);
}

template <int S, bool PIPE = false>
void launch_gemv2(const Params& p, int blocks, cudaStream_t s) {
  const int spg = p.group_size >= p.k ? 0 : p.group_size / 32;
  if (p.m <= 8) {
    if (spg == 0) launch_g2_t<1, 0, S, PIPE>(p, blocks, s);
    else if (spg == 1) launch_g2_t<1, 1, S, PIPE>(p, blocks, s);
    else if (spg == 2) launch_g2_t<1, 2, S, PIPE>(p, blocks, s);
    else launch_g2_t<1, 4, S, PIPE>(p, blocks, s);
  } else {
    if (spg == 0) launch_g2_t<2, 0, S, PIPE>(p, blocks, s);
    else if (spg == 1) launch_g2_t<2, 1, S, PIPE>(p, blocks, s);
    else if (spg == 2) launch_g2_t<2, 2, S, PIPE>(p, blocks, s);
    else launch_g2_t<2, 4, S, PIPE>(p, blocks, s);
  }
}

struct Config {
  const char* name;
  int bm, bn, threads, smem;
  const void* fn;
  void (*launch)(const Params&, int, cudaStream_t);
  bool gemv = false;  // a decode GEMV: whole K per block, no workspace, splits 0 or 1
  int max_m = 0;      // GEMVs: the largest M
  int strips = 0;     // GEMVs: 8-column strips per block
};

template <int BM, int BN, int WM_, int WN_, int ST>
void launch(const Params& p, int blocks, cudaStream_t s) {
  using S = Shape<BM, BN, WM_, WN_, ST>;
  w4a16_kernel<BM, BN, WM_, WN_, ST><<<blocks, S::kThreads, S::kSmemBytes, s>>>(p);
}

#define ODY_W4A16_CONFIG(NAME, BM, BN, WM_, WN_, ST)                                                   \
  Config {                                                                                            \
    NAME, BM, BN, WM_ * WN_ * 32, Shape<BM, BN, WM_, WN_, ST>::kSmemBytes,                            \
        (const void*)w4a16_kernel<BM, BN, WM_, WN_, ST>, launch<BM, BN, WM_, WN_, ST>                 \
  }

const Config kConfigs[] = {
    ODY_W4A16_CONFIG("m16n128_w1x4_s4", 16, 128, 1, 4, 4),  // 0 decode
    ODY_W4A16_CONFIG("m16n64_w1x4_s4", 16, 64, 1, 4, 4),    // 1 decode, narrow
    ODY_W4A16_CONFIG("m32n128_w1x4_s4", 32, 128, 1, 4, 4),  // 2 small batch
    ODY_W4A16_CONFIG("m64n128_w2x4_s3", 64, 128, 2, 4, 3),  // 3 medium / prefill
    Config{"w4a16_gemv", 8, 16, kGemvWarps * 32, 0, nullptr, launch_gemv, true, kGemvMaxM, 2},  // 4 decode GEMV, M <= 8
    // 5..7 decode GEMV 2 (M <= 16): 2, 4, 8 strips per block.
    Config{"w4a16_gemv2_s2", 16, 16, kG2Warps * 32, 0, nullptr, launch_gemv2<2>, true, kG2MaxM, 2},
    Config{"w4a16_gemv2_s4", 16, 32, kG2Warps * 32, 0, nullptr, launch_gemv2<4>, true, kG2MaxM, 4},
    Config{"w4a16_gemv2_s8", 16, 64, kG2Warps * 32, 0, nullptr, launch_gemv2<8>, true, kG2MaxM, 8},
    // 8 decode GEMV 2, 2 strips, two register buffers of rounds (PIPE).
    Config{"w4a16_gemv2_s2p", 16, 16, kG2Warps * 32, 0, nullptr, launch_gemv2<2, true>, true, kG2MaxM, 2},
};
constexpr int kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);
constexpr int kGemvConfig = 4;
constexpr int kGemv2S2Config = 5, kGemv2S4Config = 6;  // s8 (7) is forced only: never faster (session 8)
constexpr int kGemvDispatchMaxM = 4;  // the dispatch's rule (issue 12's decode shapes); the kernel takes 8
// And only below this K: measured (session 5 call 6, 629f90c, H100, µs, M = 1 / 4) the GEMV wins
// on the 7B shapes (4096² 9.06 / 9.13 vs the m16n64 tile 12.28 / 12.69; 22016×4096 27.95 / 28.56
// vs 33.55 / 38.13; lm_head-sized 32000×4096 35.4 / 36.6 vs 44.7 / 51.3) but loses at K = 28672
// (8192×28672: 90.3 / 107.5 vs 69.9 / 71.2): one block per 16 columns streams a 28672-long row
// per warp group with too little in flight. runtime/bench/results/gemv-h100-2026-12-02-629f90c.md.
constexpr int kGemvDispatchMaxK = 16384;

int occupancy(int cfg) {
  static int cache[kNumConfigs] = {};
  static std::mutex mu;  // the tensor-parallel ranks of one process dispatch from several threads
  std::lock_guard<std::mutex> lock(mu);
  int& v = cache[cfg];
  if (!v) {
    const Config& c = kConfigs[cfg];
    if (c.gemv) return v = 1;  // static shared memory only: nothing to set
    cudaFuncSetAttribute(c.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, c.fn, c.threads, c.smem) != cudaSuccess || v < 1) {
      cudaGetLastError();
      v = 1;
    }
  }
  return v;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

ody_status check(const ody_w4a16_problem* p) {
  if (!p) return fail(ODY_ERR_INVALID, "w4a16: null problem");
  if (p->m < 1 || p->n < 1 || p->k < 1) return fail(ODY_ERR_INVALID, "w4a16: M, N and K must be positive");
  if (p->k % kBK) return fail(ODY_ERR_UNSUPPORTED, "w4a16: K=" + std::to_string(p->k) + " is not a multiple of 128");
  if (!(p->group_size == 32 || p->group_size == 64 || p->group_size == 128 || p->group_size == p->k))
    return fail(ODY_ERR_UNSUPPORTED, "w4a16: group size " + std::to_string(p->group_size) +
                                         " is not supported (32, 64, 128 or K for per-channel)");
  if (p->config < -1 || p->config >= kNumConfigs) return fail(ODY_ERR_INVALID, "w4a16: no config " + std::to_string(p->config));
  if (p->splits < 0 || p->splits > p->k / kBK) return fail(ODY_ERR_UNSUPPORTED, "w4a16: split-K beyond K/128");
  if (p->config >= 0 && kConfigs[p->config].gemv) {
    const Config& c = kConfigs[p->config];
    if (p->m > c.max_m)
      return fail(ODY_ERR_UNSUPPORTED, std::string("w4a16: config ") + c.name + " takes M <= " + std::to_string(c.max_m) +
                                           ", not " + std::to_string(p->m));
    if (p->splits > 1)
      return fail(ODY_ERR_UNSUPPORTED,
                  std::string("w4a16: config ") + c.name + " has no split-K (splits " + std::to_string(p->splits) + ")");
  }
  const long long np = (p->n + 7) / 8 * 8;
  if ((long long)p->m * np > (1LL << 31) - 1 || 2LL * p->m * p->k >= (1LL << 32) - 1 || np * p->k / 2 >= (1LL << 32) - 1)
    return fail(ODY_ERR_UNSUPPORTED, "w4a16: problem too large for one launch (split it)");
  return ODY_OK;
}

struct Plan {
  int config, tiles_m, tiles_n;
  StreamKGrid grid;
};

// ODYSSEY_W4A16_GEMV2=1: the dispatch sends M ≤ 16 (no split-K asked) to the GEMV 2 configs,
// by the rule below; unset or 0: the measured table (w4a16_gemv at M ≤ 4 and K < 16384, the
// tiles otherwise). Read once per process. Until a GPU run decides, the default stays the old one.
// GEMV 2 is the default for M ≤ 16 since the H200 run of session 8 (call 2, bench w4a16: faster
// than the old GEMV and the tile at every decode shape and M, 1.2–2.2×; 2.74–2.79× cuBLAS FP16 at
// M = 1 on the ≥ 64M-weight shapes). ODYSSEY_W4A16_GEMV2=0 restores the old choice (A/B).
bool gemv2_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("ODYSSEY_W4A16_GEMV2");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

// GEMV 2's strips per block, from the H200 measurement (session 8 call 2, every config forced in
// one run at M = 1, 4, 8, 16 on the 7B and 70B decode shapes): the byte-counting guess (s2 to
// M = 4, s4 to 8, s8 above) lost to a rule by size: s4 wins on every shape with ≥ 64M weights
// (22016×4096, 8192×28672, 28672×8192: 41–42 µs vs s2's 47 at M = 1; s8 only ties it at M = 16),
// s2 on the smaller ones (4096², 4096×11008, 12288×4096) at every M ≤ 16 (more blocks per SM).
int gemv2_config(int m, int n, int k) {
  (void)m;
  return (long long)n * k >= (64ll << 20) ? kGemv2S4Config : kGemv2S2Config;
}

Plan plan(const ody_w4a16_problem* p) {
  Plan pl{};
  // The GEMV for decode (M ≤ 4, K < 16384, no split-K asked); then as FastGEMM's table (not swept
  // separately yet): 16×128 for decode, 64×128 above. GEMV 2 for M ≤ 16 first (the default;
  // ODYSSEY_W4A16_GEMV2=0 falls back to the old rule).
  const bool g2 = gemv2_enabled() && p->m <= kG2MaxM && p->splits <= 1;
  pl.config = p->config >= 0                                    ? p->config
              : g2                                              ? gemv2_config(p->m, p->n, p->k)
              : p->m <= kGemvDispatchMaxM && p->k < kGemvDispatchMaxK && p->splits <= 1 ? kGemvConfig
              : p->m <= 16                                      ? (p->n >= 8192 ? 0 : 1)
              : p->m <= 32                                      ? 2
                                                                : 3;
  const Config& c = kConfigs[pl.config];
  if (c.gemv) {  // one block per `strips` strips, whole K: never a workspace
    pl.tiles_m = 1;
    pl.tiles_n = ((p->n + 7) / 8 + c.strips - 1) / c.strips;
    pl.grid = StreamKGrid{pl.tiles_n, false};
    return pl;
  }
  pl.tiles_m = (p->m + c.bm - 1) / c.bm;
  pl.tiles_n = ((p->n + 7) / 8 * 8 + c.bn - 1) / c.bn;
  const long long tiles = (long long)pl.tiles_m * pl.tiles_n, kblocks = p->k / kBK;
  long long s = p->splits;
  if (s == 0) {  // FastGEMM's rule: about 4 blocks per SM at M ≤ 4, 2 above, ≥ 8 K blocks each
    const long long target = (p->m <= 4 ? 4LL : 2LL) * device_sms();
    s = std::max(1LL, std::min({(target + tiles / 2) / tiles, std::max(1LL, kblocks / 8), 16LL}));
  }
  pl.grid = stream_k_grid(tiles, kblocks, (int)s,
                          1);
  return pl;
}

size_t workspace(const ody_w4a16_problem* p) {
  if (check(p) != ODY_OK) return 0;
  Plan pl = plan(p);
  if (!pl.grid.partial) return 0;
  return ((size_t)p->m * ((p->n + 7) / 8 * 8) + (size_t)pl.tiles_m * pl.tiles_n) * 4;
}

ody_status can_implement(const ody_w4a16_problem* p, const ody_w4a16_args* a) {
  if (ody_status s = check(p)) return s;
  if (!a) return ODY_OK;
  if (!a->x || !a->qweight || !a->group_scale || !a->channel_scale || !a->y)
    return fail(ODY_ERR_INVALID, "w4a16: x, qweight, group_scale, channel_scale and y must be set");
  if (!aligned16(a->x) || !aligned16(a->qweight) || !aligned16(a->group_scale))
    return fail(ODY_ERR_UNSUPPORTED, "w4a16: x, qweight and group_scale must be 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(a->y) & 1) return fail(ODY_ERR_UNSUPPORTED, "w4a16: y must be 2-byte aligned");
  size_t need = workspace(p);
  if (need && (!a->workspace || a->workspace_bytes < need || !aligned16(a->workspace)))
    return fail(ODY_ERR_WORKSPACE, "w4a16: this launch splits K and needs " + std::to_string(need) +
                                       " bytes of zeroed, 16-byte aligned workspace");
  return ODY_OK;
}

}  // namespace
}  // namespace odyssey

extern "C" {
ody_status ody_w4a16_can_implement(const ody_w4a16_problem* p, const ody_w4a16_args* a) {
  odyssey::clear_error();
  return odyssey::can_implement(p, a);
}
size_t ody_w4a16_workspace_size(const ody_w4a16_problem* p) { return odyssey::workspace(p); }
int ody_w4a16_num_configs(void) { return odyssey::kNumConfigs; }
const char* ody_w4a16_config_name(int c) {
  return c >= 0 && c < odyssey::kNumConfigs ? odyssey::kConfigs[c].name : "?";
}
ody_status ody_w4a16_dispatch(const ody_w4a16_problem* p, int* config, int* blocks) {
  odyssey::clear_error();
  if (ody_status s = odyssey::check(p)) return s;
  odyssey::Plan pl = odyssey::plan(p);
  *config = pl.config;
  *blocks = pl.grid.blocks;
  return ODY_OK;
}
ody_status ody_w4a16_gemm(const ody_w4a16_problem* p, const ody_w4a16_args* a, void* stream) {
  using namespace odyssey;
  clear_error();
  if (ody_status s = can_implement(p, a)) return s;
  Plan pl = plan(p);
  Params k{};
  k.x = static_cast<const __half*>(a->x);
  k.qweight = a->qweight;
  k.group_scale = a->group_scale;
  k.channel_scale = a->channel_scale;
  k.bias = a->bias;
  k.y = static_cast<__half*>(a->y);
  k.m = p->m;
  k.n = p->n;
  k.np = (p->n + 7) / 8 * 8;
  k.k = p->k;
  k.group_size = p->group_size;
  k.tiles_m = pl.tiles_m;
  k.tiles_n = pl.tiles_n;
  if (pl.grid.partial) {
    k.ws = static_cast<float*>(a->workspace);
    k.counters = reinterpret_cast<int32_t*>(k.ws + (size_t)p->m * k.np);
  }
  occupancy(pl.config);
  kConfigs[pl.config].launch(k, pl.grid.blocks, static_cast<cudaStream_t>(stream));
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}
}
