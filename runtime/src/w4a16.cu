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
// Limits: K % 128 == 0; group 32, 64, 128 or K; x, qweight, group_scale 16-byte aligned.
// Test: odyssey-rt test gemm (w4a16 cases from the Go reference). Bench: odyssey-rt bench gemm.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernel_common.cuh"
#include "odyssey_rt.h"
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

__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

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
          for (int i = 0; i < MT; i++) mma_f16(part[i][j], af[i], b0, b1);
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

struct Config {
  const char* name;
  int bm, bn, threads, smem;
  const void* fn;
  void (*launch)(const Params&, int, cudaStream_t);
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
};
constexpr int kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);

int occupancy(int cfg) {
  static int cache[kNumConfigs] = {};
  int& v = cache[cfg];
  if (!v) {
    const Config& c = kConfigs[cfg];
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
  const long long np = (p->n + 7) / 8 * 8;
  if ((long long)p->m * np > (1LL << 31) - 1 || 2LL * p->m * p->k >= (1LL << 32) - 1 || np * p->k / 2 >= (1LL << 32) - 1)
    return fail(ODY_ERR_UNSUPPORTED, "w4a16: problem too large for one launch (split it)");
  return ODY_OK;
}

struct Plan {
  int config, tiles_m, tiles_n;
  StreamKGrid grid;
};

Plan plan(const ody_w4a16_problem* p) {
  Plan pl{};
  // As FastGEMM's table (not swept separately yet): 16×128 for decode, 64×128 above.
  pl.config = p->config >= 0 ? p->config : (p->m <= 16 ? (p->n >= 8192 ? 0 : 1) : p->m <= 32 ? 2 : 3);
  const Config& c = kConfigs[pl.config];
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
