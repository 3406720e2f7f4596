// gemv_mma.cu: the W4A8 tensor-core GEMV for decode and small batches (M ≤ 16, integer group
// scales), configs "gemv_mma_s2", "gemv_mma_s4" and "gemv_mma_s8" of the FastGEMM table
// (fastgemm.cu).
//
// What it computes: exactly what the mma kernel and gemv_w4 compute (docs/w4a8-numerics.md,
// quant.W4A8GEMMRef / W4A8AccRef), bit for bit in the int32 accumulators and the fp16 outputs:
//
//   P'_g[m,c] = Σ_{k∈g} x[m,k] · 16·q[c,k]      int32, mma.sync.m16n8k32.s32.s8.s8.s32
//   acc[m,c]  = Σ_g ŝ[g,c] · P'_g[m,c]           int32 (wrapping uint32 arithmetic, see below)
//   y[m,c]    = half_rn(float(acc)·(xs[m]·f[c]) (+ bias[c]))   kernel::epilogue_int, shared
//
// Why: gemv_w4 (gemv.cu, dp4a) reloads each activation word per row per lane, so M = 4 costs
// 1.5–2× M = 1, and M = 5..16 fell back to the mma tiles (m16n64/m16n128), which stage the
// weights through shared memory with cp.async and a barrier per 128 of K: 56 µs for 8192×28672
// at M = 16 against a 29 µs floor. Here the weights go straight from global memory into the
// registers that mma.sync reads, and one m16n8k32 covers every row up to 16, so M = 1..16 cost
// about the same instructions per weight byte.
//
// Layout (docs/fastgemm-layout.md, format version 1): qweight is [Np/8, Kp/128, 32, 16] bytes.
// Lane l's 16 bytes of (strip nb, K block kb) are its B fragments of the four m16n8k32 steps of
// that block: word s, masked ((w << 4) & 0xF0F0F0F0 and w & 0xF0F0F0F0), is b0/b1 of step s.
// So a warp loads a 512-byte (strip, K block) with one ld.global.nc.v4 per lane and needs no
// shared memory and no shuffle for the weights.
//
// Activations: int8 [M, K] are copied once per block into shared memory (cp.async, rows padded
// by 16 bytes so that the 8 row addresses of an ldmatrix hit 8 different 16-byte bank groups),
// and each warp reads its A fragments with ldmatrix.x4 — the same fragment mapping as the mma
// kernel. Rows M..15 are not stored: their ldmatrix row addresses point at a 16-byte zero row
// (so the tile's unused rows multiply zeros; for M ≤ 8 the rows 8..15 are not loaded at all,
// a1 = a3 = 0, and one ldmatrix.x4 gives the A fragments of two steps). Where M·K does not fit
// the shared-memory budget (kXBudget; for S = 8, one block per SM, the whole opt-in shared memory
// less the reduction buffer), x is staged in chunks of K, double-buffered: chunk c+1 is copied
// while chunk c is used.
//
// Structure: a block owns S consecutive 8-column strips (S = 2, 4 or 8: the three configs) and
// the whole of K; its kWarps warps split K (warp w takes K blocks w, w + kWarps, … in each
// iteration of kWarps·U K blocks). Each iteration a warp first issues all U·S weight loads
// (16 bytes per lane each: U·S·512 bytes per warp in flight; U = 1, 2 or 4, k_blocks_ahead)
// and the matching group scales, then multiplies: per K block, 2 (M ≤ 8) or 4 ldmatrix.x4, and
// 4 mma per strip. The A fragments of a K block are loaded once and used for all S strips.
// After K, the warps' accumulator fragments are added through shared memory, and one thread
// per output runs the epilogue.
//
// Small batches (M = 17..64, configs s2 and s4; session 16): the block runs RT = 2 or 4 tiles of
// 16 rows over the same weight words (template MH = 4 or 8 halves), so each 16-byte weight load
// feeds RT·4 mma and M = 64 costs about the weight traffic of M = 16. One block per SM there
// (launch bounds: RT accumulator sets), x staged whole up to the opt-in shared memory (M = 32 up
// to K ≈ 6000) or in chunks of kWarps K blocks at U = 1; red holds [row tile][warp][strip][e][lane].
// Before, these M took the mma tiles, about as fast as cuBLAS FP16 (4096² M = 64: 23.4 vs 15.0 µs).
//
// Persistent grid (where x is staged whole and x plus the reduction buffer fit kPersistSmem, not
// the SwiGLU variant, and the tiles outnumber the blocks that fit at once): the grid is the
// blocks that fit (occupancy × SMs), and block b walks strips [b·n/grid, (b+1)·n/grid) of the n = Np/8, S at a time (the last
// piece may be short: its missing strips load nothing and store nothing). Why: at the 7B shapes a
// tile is one or two rounds of loads, so a block per tile spent as long launching, staging x and
// reducing as loading; now x is staged once per block and the next tile's first weights are
// issued before this tile's reduction and epilogue, which therefore hide under them. The
// reduction buffer lies after x (x stays). Bit-exact by construction: each output is still one
// tile's sum in the same order. ODYSSEY_GEMV_PERSIST=0 restores one block per tile;
// ODYSSEY_GEMV_GRID=N caps the grid (the tests use 1 and 3 so that every block walks several
// tiles). Measured (H200, session 14): 22016×4096 M=1 16.1 vs 16.7 µs, M=16 21.1 vs 26.8;
// 12288×4096 s2 M=1 10.4 vs 11.5; 7B decode 1–4% faster end to end; but where every tile has a
// resident block (4096², 256 tiles) the walk was slower (5.4 vs 4.8 µs), so there the grid
// stays one block per tile. A cp.async ring per warp in shared memory, NST − 1 (tile, K block)
// steps ahead, was tried on top and lost (22016×4096 M=1 16.8 vs 15.9 µs; git history, e240e53).
//
// A bulk-copy pipeline (a producer warp streaming the block's weights into a ring of shared-memory
// stages with cp.async.bulk, 5–8 steps ahead across tiles) was tried in session 16 and lost:
// 0.76–0.94× this kernel at M ≤ 8 on the K = 4096 shapes, equal at K = 28672, 7B decode 2.53 vs
// 2.17 ms/step (git history, 69542aa; runtime/NOTES.md "Session 16").
//
// Group scales on the fragment accumulators: a group's mma chain starts from zero (the first
// mma of the group takes a zero C) and ends with acc += ŝ·part per fragment element; lane
// (gid, tig) holds columns 2·tig and 2·tig + 1 of the strip, whose two int16 scales it loads as
// one 32-bit word. Per-channel runs one chain over the warp's K blocks and multiplies by the
// single ŝ after the reduction. Why splitting a group's sum over lanes, warps and chunks is
// exact: int32 addition and multiplication wrap (arithmetic mod 2³²), Σ_i ŝ·p_i ≡ ŝ·Σ_i p_i
// (mod 2³²), and the true acc and every partial sum fit int32 (the overflow bound,
// docs/w4a8-numerics.md §3), so the wrapped result is the exact acc (gemv.cu's header has the
// same argument). The scaling is done on uint32_t so that the wrap is defined behaviour.
//
// PDL (pdl.cuh): the first iteration's weights and scales are loaded before pdl_wait() (they
// never depend on the previous kernel); x and x_scale are read, and y / acc_out written, only
// after it. pdl_launch_dependents() is called right after those first loads. Launched with
// launch_pdl (ODYSSEY_PDL=0 turns the attribute off).
//
// Fused SwiGLU variant (SW, w4a8_gemv_swiglu, decode M ≤ 8; issue 14): the same main loop over
// S/2 strips of gate and the same S/2 strips of up per block; the epilogue computes
// silu(gate)·up from the two fp16 values the plain epilogue would write and writes down_proj's
// int8 input (static scale directly; per token through fp32 y, row maxima and a last-block
// ticket), byte-equal to this GEMV + layers::swiglu (act_math.cuh holds the shared arithmetic).
// Test: odyssey-rt test layers --only fuse; on the CPU runtime/tests/layers_emu/run_gemv_swiglu.sh.
// Bench: odyssey-rt bench layers --only fuse (fused vs unfused rows).
//
// Limits: 1 ≤ M ≤ 64 (kGemvMmaMaxM; S = 8: 16), ODY_SCALE_INT only, splits 0 or 1, plus the FastGEMM limits
// (K % 128 == 0; groups 32, 64, 128 or per-channel; x, qweight, group_scale 16-byte aligned).
// check_problem refuses the rest. sm_80 or newer (mma.sync s8, ldmatrix, cp.async).
//
// Test: odyssey testdata gemm-cases --out C && odyssey-rt test gemm --cases C (every M ≤ 16
// case with integer scales runs through gemv_mma_s2, _s4 and _s8 with splits 0 and 1, and
// through the dispatch; run it again with ODYSSEY_GEMV_GRID=3 for the persistent walk;
// runtime/tests/emulate_gemv_mma.py replays this file's indexing on the CPU against the same
// cases, and runtime/tests/layers_emu/run_gemv_swiglu.sh runs this file's kernels on the host
// against a reference written from the layout spec, with capped grids). Benchmark: odyssey-rt bench gemm --m 1,2,4,8,16 --shapes
// 4096x4096 (rows w4a8_int_gemv_mma_s2/_s4/_s8 beside gemv_w4, the dispatch, cuBLAS and the
// floor); runtime/scripts/device-run.sh decode-gemm runs both.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <cstdint>

#include "act_math.cuh"
#include "fastgemm.hpp"
#include "kernel_common.cuh"
#include "pdl.cuh"

namespace odyssey {
namespace {

using kernel::cp_async16;
using kernel::cp_async_commit;
using kernel::cp_async_wait;
using kernel::kBK;
using kernel::smem_u32;

constexpr int kWarps = 8;               // warps per block, splitting K
constexpr int kThreads = kWarps * 32;
constexpr int kU = 2;                   // K blocks per warp per iteration (loaded before use)
constexpr int kIter = kWarps * kU;      // chunks of x are multiples of it (16 K blocks: 2048 of K)
constexpr int kZero = 16;               // bytes of the zero row at the start of shared memory
// Shared memory for x per block: with 2 blocks per SM (launch bounds) 2 × 96 KB fits the 228 KB
// of an H100/H200 SM, and the whole of K fits for M·(K+16) ≤ 96 KB (M = 16 up to K = 6128,
// M = 8 up to K = 12272); beyond, chunks of kIter·128·c columns, double-buffered.
constexpr int kXBudget = 96 * 1024;

__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  // Streamed once: no L1 allocation (the scales and bias are what little else is read).
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t ld_nc32(const void* p) {
  uint32_t v;
  asm volatile("ld.global.nc.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
  return v;
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// D = A·B + C (ZERO: C = 0, the first step of a group). The int32 accumulation of the tensor
// cores wraps like the uint32 arithmetic below, and no partial sum exceeds the bound anyway.
template <bool ZERO>
__device__ __forceinline__ void mma_s8(uint32_t (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                       uint32_t a3, uint32_t b0, uint32_t b1) {
  if constexpr (ZERO) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%10,%10,%10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ uint32_t word(const uint4& v, int s) {
  return s == 0 ? v.x : s == 1 ? v.y : s == 2 ? v.z : v.w;
}

// One K block of one warp: the A fragments of x from shared memory at aaddr (astep bytes between
// its 32-deep steps; 0 for rows ≥ M, which stay on the zero row), times the S strips' weight words
// w[j] (lane's 16 bytes of strip j, this K block), into the group's partial sums part; at the end
// of each group its scales sc[j][g] fold part into acc (see the header: wrapping uint32).
// (NC = 2·MH accumulator elements per strip, NG = 4 / SPG scale words per strip, 1 per-channel.)
template <int MH, int SPG, int S, int NC, int NG>
__device__ __forceinline__ void kblock_mma(uint32_t (&acc)[S][NC], uint32_t (&part)[S][4], const uint4 (&w)[S],
                                           const uint32_t (&sc)[S][NG], uint32_t aaddr, uint32_t astep) {
  static_assert(NC == 2 * MH && NG == (SPG > 0 ? 4 / SPG : 1), "fragment and scale counts");
  uint32_t af[4][4];  // [step][a0..a3]
  if constexpr (MH == 1) {
    uint32_t r[4];
#pragma unroll
    for (int pr = 0; pr < 2; pr++) {
      ldmatrix_x4(r, aaddr + pr * 2 * astep);
      af[2 * pr][0] = r[0];
      af[2 * pr][2] = r[1];
      af[2 * pr + 1][0] = r[2];
      af[2 * pr + 1][2] = r[3];
      af[2 * pr][1] = af[2 * pr][3] = af[2 * pr + 1][1] = af[2 * pr + 1][3] = 0u;
    }
  } else {
#pragma unroll
    for (int st = 0; st < 4; st++) ldmatrix_x4(af[st], aaddr + st * astep);
  }
#pragma unroll
  for (int st = 0; st < 4; st++) {
#pragma unroll
    for (int j = 0; j < S; j++) {
      const uint32_t ws = word(w[j], st);
      const uint32_t b0 = (ws << 4) & 0xF0F0F0F0u;  // 16·q, k = 32·st + 4·tig + 0..3
      const uint32_t b1 = ws & 0xF0F0F0F0u;         // 16·q, k = 32·st + 16 + 4·tig + 0..3
      if (SPG > 0 && st % (SPG > 0 ? SPG : 1) == 0)
        mma_s8<true>(part[j], af[st][0], af[st][1], af[st][2], af[st][3], b0, b1);
      else
        mma_s8<false>(part[j], af[st][0], af[st][1], af[st][2], af[st][3], b0, b1);
      if constexpr (SPG > 0) {
        if ((st + 1) % SPG == 0) {  // end of a group: its partial sums take its scales
          const uint32_t s2 = sc[j][st / SPG];
          const uint32_t lo = (uint32_t)(int32_t)(int16_t)(s2 & 0xFFFFu);  // column 2·tig
          const uint32_t hi = (uint32_t)(int32_t)(int16_t)(s2 >> 16);      // column 2·tig + 1
          acc[j][0] += lo * part[j][0];
          acc[j][1] += hi * part[j][1];
          if constexpr (MH == 2) {
            acc[j][2] += lo * part[j][2];
            acc[j][3] += hi * part[j][3];
          }
        }
      }
    }
  }
}

// A tile's outputs: red holds every warp's accumulator fragments ([row tile][warp][strip][e][lane], complete
// and synchronized); one thread per output adds the warps' sums in warp order, applies the
// per-channel ŝ (SPG = 0) and the float epilogue, and stores y (and acc_out). Strips j ≥ real
// (past the block's range or Np/8) and padding columns are not stored.
template <int S, int NC, int SPG>
__device__ __forceinline__ void store_tile(const GemvParams& p, const uint32_t* red, int strip0, int real) {
  for (int o = threadIdx.x; o < p.m * S * 8; o += kThreads) {
    const int m = o / (S * 8), r = o - m * (S * 8);
    const int j = r >> 3, cc = r & 7;
    const int c = (strip0 + j) * 8 + cc;
    if (j >= real || c >= p.n) continue;
    const int rt = m >> 4, l = (m & 7) * 4 + (cc >> 1), e = ((m >> 3) & 1) * 2 + (cc & 1);
    uint32_t total = 0;
#pragma unroll
    for (int v = 0; v < kWarps; v++) total += red[(((rt * kWarps + v) * S + j) * NC + e) * 32 + l];
    if constexpr (SPG == 0) total *= (uint32_t)(int32_t)p.group_scale[c];  // the one group's ŝ
    const int32_t a = (int32_t)total;
    const float xs = p.act_per_token ? p.x_scale[m] : p.x_scale[0];
    static_cast<__half*>(p.y)[(size_t)m * p.n + c] = kernel::epilogue_int(a, xs, p.channel_scale[c], p.bias, c);
    if (p.acc_out) p.acc_out[(size_t)m * p.n + c] = a;
  }
}

// The SwiGLU epilogue's operands (w4a8_gemv_swiglu, fastgemm.hpp); unused (zero) otherwise.
struct SwigluEpi {
  const uint8_t* qweight_u;
  const int16_t* group_scale_u;
  const float* channel_scale_u;
  const float* bias_u;
  int cols, ld;
  int8_t* out;
  const float* static_scale;
  float* token_scale;
  float* y32;
  unsigned* slots;
};

// The SwiGLU epilogue (SW kernels, M ≤ 8, so one output per thread: M·(S/2)·8 ≤ 256). red holds
// every warp's fragments (written, not yet synchronized); strips j and j + S/2 of the block are
// gate's and up's strip strip0 + j. Each output: the two int32 sums as the plain epilogue adds
// them, the two fp16 values epilogue_int gives, then silu·up in fp32 (act_math.cuh) and either
// the static-scale code, or fp32 y plus the row's max|y| bits (per token; the last block of
// the grid quantizes, see w4a8_gemv_swiglu).
template <int S, int NC, int SPG>
__device__ __forceinline__ void swiglu_epilogue(const GemvParams& p, const SwigluEpi& q, const uint32_t* red,
                                                int strip0, int nstrips) {
  constexpr int SH = S / 2;
  __shared__ unsigned bmax[8];  // max|y| bits per row, this block's outputs
  __shared__ float bscale[8];   // the last block: each row's scale
  __shared__ int last;
  const int tid = threadIdx.x;
  const bool per_token = q.static_scale == nullptr;
  if (tid < 8) bmax[tid] = 0;
  __syncthreads();  // red is complete, bmax zeroed
  const float ss = per_token ? 0.f : *q.static_scale;
  for (int o = tid; o < p.m * SH * 8; o += kThreads) {
    const int m = o / (SH * 8), r = o - m * (SH * 8);
    const int j = r >> 3, cc = r & 7;
    const int c = (strip0 + j) * 8 + cc;
    if (strip0 + j >= nstrips || c >= q.cols) continue;
    const int l = (m & 7) * 4 + (cc >> 1), e = (m >> 3) * 2 + (cc & 1);
    uint32_t tg = 0, tu = 0;
#pragma unroll
    for (int v = 0; v < kWarps; v++) {
      tg += red[((v * S + j) * NC + e) * 32 + l];
      tu += red[((v * S + j + SH) * NC + e) * 32 + l];
    }
    if constexpr (SPG == 0) {
      tg *= (uint32_t)(int32_t)p.group_scale[c];
      tu *= (uint32_t)(int32_t)q.group_scale_u[c];
    }
    const float xs = p.act_per_token ? p.x_scale[m] : p.x_scale[0];
    const float g = __half2float(kernel::epilogue_int((int32_t)tg, xs, p.channel_scale[c], p.bias, c));
    const float u = __half2float(kernel::epilogue_int((int32_t)tu, xs, q.channel_scale_u[c], q.bias_u, c));
    const float y = actmath::silu_mul(g, u);
    if (per_token) {
      q.y32[(size_t)m * q.ld + c] = y;
      atomicMax(&bmax[m], __float_as_uint(y) & 0x7fffffffu);
    } else {
      q.out[(size_t)m * q.ld + c] = actmath::quantize_value(y, ss);
    }
  }
  if (!per_token) {
    const int pad = q.ld - q.cols;
    if (blockIdx.x == 0 && pad > 0)  // columns [cols, ld): down's GEMV reads the padded K
      for (int i = tid; i < p.m * pad; i += kThreads) q.out[(size_t)(i / pad) * q.ld + q.cols + i % pad] = 0;
    return;
  }
  __syncthreads();  // bmax complete
  if (tid < p.m && bmax[tid] != 0) atomicMax(&q.slots[tid], bmax[tid]);
  __threadfence();  // this block's y32 and maxima are visible before its ticket
  __syncthreads();
  if (tid == 0) last = atomicAdd(&q.slots[p.m], 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();  // every other block's writes (they fenced before their tickets)
  if (tid < p.m) {
    const float sc = actmath::row_scale(__ldcg(&q.slots[tid]));
    bscale[tid] = sc;
    q.token_scale[tid] = sc;
  }
  __syncthreads();
  if (tid <= p.m) q.slots[tid] = 0;  // maxima and ticket: zero for the next launch
  // Codes of every row, 4 columns per item (ld % 4 == 0), kTail items per thread in flight (one
  // pass at M = 1 up to 12288 columns: this tail is the fused kernel's serial part, so its loads
  // go out at once); the columns [cols, ld) get 0 (their y32 words are never written or used).
  constexpr int kTail = 12;
  const int per_row = q.ld / 4, total = p.m * per_row;
  for (int b = tid; b < total; b += kTail * kThreads) {
    float4 v[kTail];
#pragma unroll
    for (int t = 0; t < kTail; t++) {
      const int i = b + t * kThreads;
      const int m = i / per_row, c4 = (i - m * per_row) * 4;
      v[t] = i < total && c4 < q.cols ? __ldcg(reinterpret_cast<const float4*>(q.y32 + (size_t)m * q.ld + c4))
                                      : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int t = 0; t < kTail; t++) {
      const int i = b + t * kThreads;
      if (i >= total) break;
      const int m = i / per_row, c4 = (i - m * per_row) * 4;
      const float sc = bscale[m];
      const float y4[4] = {v[t].x, v[t].y, v[t].z, v[t].w};
      uint32_t word4 = 0;
#pragma unroll
      for (int e = 0; e < 4; e++)
        if (c4 + e < q.cols) word4 |= (uint32_t)(uint8_t)actmath::quantize_value(y4[e], sc) << (8 * e);
      *reinterpret_cast<uint32_t*>(q.out + (size_t)m * q.ld + c4) = word4;
    }
  }
}

// MH: halves of the 16-row tile in use (1: M ≤ 8, 2: M ≤ 16). SPG: 32-deep steps per group
// (1, 2, 4 for groups of 32, 64, 128), 0 for per-channel. S: 8-column strips per block.
// U: K blocks per warp per iteration, all loaded before any is used (U·S·512 bytes in flight
// per warp; the host picks it, k_blocks_ahead). S = 8 runs one block per SM (up to 255
// registers); S = 2 and 4 two (≤ 128 registers).
// SW (SwiGLU epilogue, M ≤ 8): strips j < S/2 of a block are gate's strips strip0 + j (p's
// weights), strips j ≥ S/2 up's strips strip0 + j − S/2 (q's); the main loop is unchanged, the
// epilogue combines strip j with strip j + S/2 (see w4a8_gemv_swiglu).
template <int MH, int SPG, int S, int U, bool SW>
__global__ void __launch_bounds__(kThreads, S == 8 || MH > 2 ? 1 : 2) w4a8_gemv_mma_kernel(const GemvParams p, const SwigluEpi q) {
  extern __shared__ __align__(16) uint8_t smem[];
  // MH: 8-row halves of x in use: 1 (M ≤ 8), 2 (M ≤ 16), 4 (M ≤ 32), 8 (M ≤ 64). Beyond 16 rows
  // the block runs RT tiles of 16 rows over the same weight words (each weight fragment feeds RT
  // mma, so M = 17..64 cost little more weight traffic than M = 16; session 16).
  constexpr int RT = MH > 2 ? MH / 2 : 1;    // 16-row tiles
  constexpr int MT = MH > 2 ? 2 : MH;        // halves in use within one tile
  static_assert(!SW || RT == 1, "the SwiGLU variant takes M <= 8");
  constexpr int NC = 2 * MT;                 // accumulator fragment elements in use per strip
  constexpr int NG = SPG > 0 ? 4 / SPG : 1;  // groups per K block (scale words per strip)
  // K blocks per block iteration. With x in chunks the host picks U ≤ kU, so that IT divides
  // kIter and a chunk (a multiple of kIter K blocks) is whole iterations.
  constexpr int IT = kWarps * U;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int tig = lane & 3;
  const int kblocks = p.k / kBK;
  constexpr int SH = SW ? S / 2 : S;                    // strips per weight matrix per block
  const int nstrips = SW ? (q.cols + 7) / 8 : p.np / 8;  // of one weight matrix
  // This block's strips [s_begin, s_end) of one weight matrix: one tile of SH strips, or
  // (persistent, see the header) a balanced range walked SH strips at a time.
  int s_begin, s_end;
  if (!SW && p.persistent) {
    s_begin = (int)((long long)blockIdx.x * nstrips / gridDim.x);
    s_end = (int)((long long)(blockIdx.x + 1) * nstrips / gridDim.x);
  } else {
    s_begin = blockIdx.x * SH;
    s_end = min(s_begin + SH, nstrips);
  }
  const int cb = p.chunk_kb;                        // K blocks per chunk of x
  const int nchunks = (kblocks + cb - 1) / cb;
  const int xstride = cb * kBK + 16;                // bytes per staged row (bank-group shift)
  const int bufbytes = p.m * xstride;
  const uint32_t sbase = smem_u32(smem);

  // This lane's weight words of strip strip0 + j, K block kb: wbase + j·wstrip + kb·512; its
  // pair of group-scale columns (2·tig, 2·tig + 1) of that strip: sbase_g + j·16 + group·srow.
  // Strips past Np/8 (the last block's) are not loaded: zeros, and their outputs not stored.
  const size_t wstrip = (size_t)kblocks * 512;
  const size_t srow = (size_t)p.np * 2;  // bytes per group row of [G, Np] int16
  int strip0, real;  // the tile's first strip; its strips inside [s_begin, s_end) (per matrix)
  const uint8_t *wbase, *sbase_g, *wbase_u, *sbase_u;
  auto set_tile = [&](int s0) {
    strip0 = s0;
    real = min(SH, s_end - s0);
    wbase = p.qweight + ((size_t)s0 * kblocks * 32 + lane) * 16;
    sbase_g = reinterpret_cast<const uint8_t*>(p.group_scale + s0 * 8 + 2 * tig);
    // SW: up's strips (same offsets in its own matrices); otherwise the same as above, unused.
    wbase_u = SW ? q.qweight_u + ((size_t)s0 * kblocks * 32 + lane) * 16 : wbase;
    sbase_u = SW ? reinterpret_cast<const uint8_t*>(q.group_scale_u + s0 * 8 + 2 * tig) : sbase_g;
  };
  set_tile(s_begin);

  uint4 w[U][S];
  uint32_t sc[U][S][NG];
  auto load = [&](int t) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int kb = t * IT + warp + kWarps * u;
#pragma unroll
      for (int j = 0; j < S; j++) {
        const bool upm = SW && j >= SH;  // compile-time after unrolling
        const int jj = upm ? j - SH : j;
        const bool ok = kb < kblocks && jj < real;
        w[u][j] = ok ? ld_stream16((upm ? wbase_u : wbase) + jj * wstrip + (size_t)kb * 512) : make_uint4(0, 0, 0, 0);
        if constexpr (SPG > 0) {
#pragma unroll
          for (int g = 0; g < NG; g++)
            sc[u][j][g] = ok ? ld_nc32((upm ? sbase_u : sbase_g) + jj * 16 + (size_t)(kb * NG + g) * srow) : 0u;
        }
      }
    }
  };
  // Copies chunk c of x (rows < M) into buffer b with cp.async; the caller commits.
  auto stage = [&](int c, int b) {
    const int kb0 = c * cb, nkb = min(cb, kblocks - kb0);
    const int per_row = nkb * (kBK / 16);  // 16-byte pieces per row
    uint8_t* dst = smem + kZero + b * bufbytes;
    const int8_t* src = p.x + (size_t)kb0 * kBK;
    for (int i = tid; i < p.m * per_row; i += kThreads) {
      const int m = i / per_row, q = i - m * per_row;
      cp_async16(dst + m * xstride + q * 16, src + (size_t)m * p.k + q * 16, true);
    }
  };

  // The first iteration's weights and scales: issued before waiting for the previous kernel.
  load(0);
  pdl_launch_dependents();
  pdl_wait();
  if (tid < 4) reinterpret_cast<uint32_t*>(smem)[tid] = 0;  // the zero row (rows M..15)
  stage(0, 0);
  cp_async_commit();

  // ldmatrix row addresses of this lane, relative to a buffer and a K block. MH = 1: lane i
  // gives row i%8 of matrix i/8 = (step pair half, k half): matrices (s, lo), (s, hi),
  // (s+1, lo), (s+1, hi) → a0 and a2 of steps s and s+1. MH = 2: row i%16, k half i/16:
  // matrices (rows 0-7, lo), (8-15, lo), (0-7, hi), (8-15, hi) → a0..a3 of one step.
  const int arow = MT == 1 ? (lane & 7) : (lane & 15);
  const int akoff = MT == 1 ? ((lane >> 4) * 32 + ((lane >> 3) & 1) * 16) : (lane >> 4) * 16;

  // Persistent: x stays staged for every tile, so the reduction buffer lies after it.
  uint32_t* red = reinterpret_cast<uint32_t*>(smem + kZero + (p.persistent ? (bufbytes + 15) / 16 * 16 : 0));
  const int iters = (kblocks + IT - 1) / IT;
  for (;;) {  // tiles of this block (one unless persistent)
  uint32_t acc[RT][S][NC];
  uint32_t part[RT][S][4];
#pragma unroll
  for (int r = 0; r < RT; r++)
#pragma unroll
    for (int j = 0; j < S; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        part[r][j][e] = 0;
        if (e < NC) acc[r][j][e] = 0;
      }

  for (int t = 0; t < iters; t++) {
    if (t > 0) load(t);  // before the chunk barrier: the loads overlap it
    const int kbase = t * IT;
    const int c = kbase / cb;
    if (kbase == c * cb) {  // first iteration of chunk c (cb: all of K, or a multiple of IT)
      if (c > 0) __syncthreads();  // every warp is done with chunk c-1, whose buffer c+1 reuses
      if (c + 1 < nchunks) {
        stage(c + 1, (c + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();  // chunk c is visible to every warp
    }
    const uint32_t xbuf = sbase + kZero + (c & 1) * bufbytes;
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int kb = kbase + warp + kWarps * u;
      if (kb >= kblocks) break;  // warp-uniform
      // Rows ≥ M read the zero row, and stay on it for every step.
#pragma unroll
      for (int r = 0; r < RT; r++) {
        if (16 * r >= p.m) break;  // block-uniform: row tiles past M do nothing
        const int row = 16 * r + arow;
        const bool ok = row < p.m;
        const uint32_t aaddr = ok ? xbuf + row * xstride + (kb - c * cb) * kBK + akoff : sbase;
        kblock_mma<MT, SPG, S, NC, NG>(acc[r], part[r], w[u], sc[u], aaddr, ok ? 32u : 0u);
      }
    }
  }
  // The next tile's first weights and scales, in flight during this tile's reduction and
  // epilogue (w and sc are dead here).
  const int cur0 = strip0, cur_real = real;
  const bool more = strip0 + SH < s_end;
  if (more) {
    set_tile(strip0 + SH);
    load(0);
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with x (not persistent: the reduction reuses its buffers)
                    // and, persistent, with the previous tile's epilogue reads of red

  // Per-channel: one chain over K, scaled after the reduction.
  if constexpr (SPG == 0) {
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
      for (int j = 0; j < S; j++)
#pragma unroll
        for (int e = 0; e < NC; e++) acc[r][j][e] = part[r][j][e];
  }
  // Fragment element e of lane (gid, tig): row 16·r + gid + 8·(e/2), column 2·tig + (e%2).
  // red: [row tile][warp][strip][e][lane]
#pragma unroll
  for (int r = 0; r < RT; r++)
#pragma unroll
    for (int j = 0; j < S; j++)
#pragma unroll
      for (int e = 0; e < NC; e++) red[(((r * kWarps + warp) * S + j) * NC + e) * 32 + lane] = acc[r][j][e];
  if constexpr (SW) {
    swiglu_epilogue<S, NC, SPG>(p, q, red, cur0, nstrips);
    return;
  }
  __syncthreads();
  store_tile<S, NC, SPG>(p, red, cur0, cur_real);
  if (!more) break;
  }  // tiles
}

// Host: K blocks per chunk of x, the dynamic shared memory of a launch, and whether it runs
// persistent (x whole, and x plus the reduction buffer within kPersistSmem).
struct Shape {
  int chunk_kb;
  size_t smem;
  bool persistent;
};
constexpr size_t kPersistSmem = 110 * 1024;  // two blocks per SM still fit the 227 KB of an sm_90 SM
// The device's opt-in shared memory per block (sm_86/89 have 99 KB, sm_80 163 KB, sm_90 227 KB).
size_t smem_optin() {
  static const size_t n = [] {
    int d = 0, v = 0;
    if (cudaGetDevice(&d) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, d) != cudaSuccess || v <= 0) {
      (void)cudaGetLastError();
      return (size_t)kZero + kXBudget;
    }
    return (size_t)v;
  }();
  return n;
}
bool persist_allowed() {
  const char* e = std::getenv("ODYSSEY_GEMV_PERSIST");  // read per launch: tests switch it per case
  return !(e && e[0] == '0' && e[1] == 0);
}
// 16-row tiles of x a launch runs (the kernel's RT: 1 up to M = 16, 2 up to 32, 4 up to 64).
int row_tiles(int m) { return m <= 16 ? 1 : m <= 32 ? 2 : 4; }
Shape shape_of(int m, int k, int strips, bool sw = false) {
  const int kblocks = k / kBK;
  Shape s{};
  const size_t whole = (size_t)m * (k + 16);
  const int rt = row_tiles(m);
  const size_t red = (size_t)rt * kWarps * strips * 4 * 32 * 4;  // [row tile][warp][strip][≤4][lane] uint32
  // S = 8 and M > 16 run one block per SM (launch bounds), so they may take the whole opt-in
  // shared memory: x staged whole up to what leaves room for the reduction buffer (M = 16 up to
  // K ≈ 12000, M = 4 up to K ≈ 48000), and persistent in all of it. The others keep two blocks
  // per SM.
  const bool one_per_sm = strips == 8 || m > 16;
  const size_t optin = smem_optin();
  const size_t xcap = one_per_sm && optin > kZero + 16 + red + kXBudget ? optin - kZero - 16 - red : (size_t)kXBudget;
  const size_t pcap = one_per_sm ? optin : std::min(kPersistSmem, optin);
  if (whole <= xcap) {
    s.chunk_kb = kblocks;  // one chunk, one buffer
    s.smem = whole;
    const size_t both = kZero + (whole + 15) / 16 * 16 + red;
    if (!sw && both <= pcap && persist_allowed()) {
      s.persistent = true;
      s.smem = both;
      return s;
    }
  } else if (m > 16) {
    // Two buffers of the largest multiple of kWarps K blocks (one iteration at U = 1, which
    // k_blocks_ahead takes for these) beside the reduction buffer (M = 64: 2 × 64 × 1040 = 130 KB).
    const size_t room = optin > kZero + 16 + red ? optin - kZero - 16 - red : 0;
    const int c = (int)((room / 2 / m - 16) / kBK) / kWarps * kWarps;
    s.chunk_kb = std::max(kWarps, c);
    s.smem = 2 * (size_t)m * (s.chunk_kb * kBK + 16);
  } else {
    // Two buffers of the largest multiple of kIter K blocks that fits (at least kIter: M = 16
    // needs 2 × 16 × (2048 + 16) = 66 KB).
    int c = (int)(((size_t)kXBudget / 2 / m - 16) / kBK) / kIter * kIter;
    s.chunk_kb = std::max(kIter, c);
    s.smem = 2 * (size_t)m * (s.chunk_kb * kBK + 16);
  }
  s.smem = kZero + std::max(s.smem, red);
  return s;
}

// Blocks per SM of one instantiation at one shared-memory size, queried once (a query per launch
// cost the host more than a 5 µs GEMV takes: back-to-back launches became host-bound). A few
// sizes per instantiation (one per M); beyond kSlots the query runs each time.
template <typename F>
int blocks_per_sm(F fn, size_t smem) {
  constexpr int kSlots = 16;
  static std::mutex mu;
  static size_t key[kSlots];
  static int val[kSlots];
  static int used = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (int i = 0; i < used; i++)
      if (key[i] == smem) return val[i];
  }
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kThreads, smem) != cudaSuccess || per_sm < 1) {
    (void)cudaGetLastError();  // a failed query must not surface as the launch's error
    return 1;
  }
  std::lock_guard<std::mutex> lock(mu);
  if (used < kSlots) key[used] = smem, val[used++] = per_sm;
  return per_sm;
}
// Persistent grid: the blocks that fit on the GPU at once (occupancy of this instantiation at
// this shared memory), at most one per tile; ODYSSEY_GEMV_GRID=N caps it further (the tests use
// a small N so that every block walks several tiles).
template <typename F>
int persistent_grid(F fn, size_t smem, int tiles) {
  int g = std::min(tiles, blocks_per_sm(fn, smem) * device_sms());
  if (const char* e = std::getenv("ODYSSEY_GEMV_GRID")) {
    const int cap = std::atoi(e);
    if (cap > 0) g = std::min(g, cap);
  }
  return std::max(g, 1);
}

// K blocks per warp per iteration: 4 at 2 strips when x is staged whole (so that at K = 4096
// every warp's weights of the block are in flight at once: 4 KB per warp), else kU = 2; 1 for
// groups of 32 at 4 or 8 strips, whose 4 scale words per strip per K block would push the
// kernel past its register bound and spill. Chunked staging needs U ≤ kU (see the kernel).
int k_blocks_ahead(int strips, int spg, bool chunked, int m) {
  if (m > 16 && chunked) return 1;  // chunks of kWarps K blocks (shape_of)
  if (spg == 1) return strips >= 4 ? 1 : kU;
  return strips == 2 && !chunked ? 4 : kU;
}

template <int MH, int SPG, int S, int U, bool SW>
void launch_t(const GemvParams& p, const SwigluEpi& q, size_t smem, cudaStream_t stream) {
  auto* fn = w4a8_gemv_mma_kernel<MH, SPG, S, U, SW>;
  // Raised once per instantiation to the most any problem asks for (x's budget, or x and the
  // reduction buffer of a persistent launch), less the kernel's static shared memory (the SwiGLU
  // epilogue's row maxima and ticket): the attribute may not exceed opt-in − static, and a
  // refused call left its error for the launch's cudaGetLastError to report (session 17: the
  // first S = 8 SwiGLU launch failed "invalid argument" that way).
  static const bool raised = [&] {
    cudaFuncAttributes fa{};
    const size_t stat = cudaFuncGetAttributes(&fa, fn) == cudaSuccess ? fa.sharedSizeBytes : 1024;
    const size_t optin = smem_optin() > stat ? smem_optin() - stat : 0;
    const size_t want = S == 8 || MH > 2 ? optin : std::min(std::max<size_t>(kZero + kXBudget, kPersistSmem), optin);
    const bool ok = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)want) == cudaSuccess;
    (void)cudaGetLastError();  // a refusal surfaces below as the launch's own error, if it matters
    return ok;
  }();
  (void)raised;
  const int strips = SW ? (q.cols + 7) / 8 : p.np / 8;  // of one weight matrix
  constexpr int SH = SW ? S / 2 : S;
  const int tiles = (strips + SH - 1) / SH;
  int blocks = tiles;
  GemvParams pp = p;
  if (!SW && p.persistent) {
    blocks = persistent_grid(fn, smem, tiles);
    // Every tile has a resident block anyway: one block per tile, as before (measured: the walk
    // costs 4096² M=1 5.4 vs 4.8 µs, where the grid is one wave of 256 tiles; session 14).
    if (blocks >= tiles) pp.persistent = 0;
  }
  launch_pdl(fn, dim3(blocks), dim3(kThreads), smem, stream, pp, q);
}

template <int MH, int SPG, int S, bool SW>
void launch_u(const GemvParams& p, const SwigluEpi& q, size_t smem, int u, cudaStream_t stream) {
  if constexpr (MH > 2) {
    if (u == 1) return launch_t<MH, SPG, S, 1, SW>(p, q, smem, stream);
  }
  if constexpr (S == 2 && SPG != 1) {
    if (u == 4) return launch_t<MH, SPG, S, 4, SW>(p, q, smem, stream);
  }
  if constexpr (SPG == 1 && S >= 4) {
    launch_t<MH, SPG, S, 1, SW>(p, q, smem, stream);
  } else {
    launch_t<MH, SPG, S, kU, SW>(p, q, smem, stream);
  }
  (void)u;
}

template <int MH, int S, bool SW = false>
void launch_g(const GemvParams& p, size_t smem, bool chunked, cudaStream_t stream, const SwigluEpi& q = SwigluEpi{}) {
  const int spg = p.group_size >= p.k ? 0 : p.group_size / 32;
  const int u = k_blocks_ahead(S, spg, chunked, p.m);
  if (spg == 0)
    launch_u<MH, 0, S, SW>(p, q, smem, u, stream);
  else if (spg == 1)
    launch_u<MH, 1, S, SW>(p, q, smem, u, stream);
  else if (spg == 2)
    launch_u<MH, 2, S, SW>(p, q, smem, u, stream);
  else
    launch_u<MH, 4, S, SW>(p, q, smem, u, stream);
}

}  // namespace

// The problem was checked (check_problem, can_implement): 1 ≤ M ≤ kGemvMmaMaxM, integer scales.
void launch_w4a8_gemv_mma(GemvParams p, int strips, cudaStream_t stream) {
  const Shape s = shape_of(p.m, p.k, strips);
  p.chunk_kb = s.chunk_kb;
  p.persistent = s.persistent ? 1 : 0;
  const bool chunked = s.chunk_kb < p.k / kBK;
  if (strips == 8) {
    if (p.m <= 8)
      launch_g<1, 8>(p, s.smem, chunked, stream);
    else
      launch_g<2, 8>(p, s.smem, chunked, stream);
  } else if (strips == 4) {
    if (p.m <= 8)
      launch_g<1, 4>(p, s.smem, chunked, stream);
    else if (p.m <= 16)
      launch_g<2, 4>(p, s.smem, chunked, stream);
    else if (p.m <= 32)
      launch_g<4, 4>(p, s.smem, chunked, stream);
    else
      launch_g<8, 4>(p, s.smem, chunked, stream);
  } else {
    if (p.m <= 8)
      launch_g<1, 2>(p, s.smem, chunked, stream);
    else if (p.m <= 16)
      launch_g<2, 2>(p, s.smem, chunked, stream);
    else if (p.m <= 32)
      launch_g<4, 2>(p, s.smem, chunked, stream);
    else
      launch_g<8, 2>(p, s.smem, chunked, stream);
  }
}

int gemv_mma_blocks(int n, int strips) { return ((n + 7) / 8 + strips - 1) / strips; }  // tiles (the grid unless persistent)

namespace {
bool al16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
}  // namespace

cudaError_t w4a8_gemv_swiglu(const GemvSwigluArgs& a, cudaStream_t stream) {
  const bool per_token = a.static_scale == nullptr;
  const int gs = a.group_size;
  if (a.m < 1 || a.m > 8 || a.k <= 0 || a.k % kBK != 0 || a.cols <= 0 || a.ld < a.cols || a.ld % 16 != 0 ||
      a.scale_ld < (a.cols + 7) / 8 * 8 || !(gs == 32 || gs == 64 || gs == 128 || gs == a.k))
    return cudaErrorInvalidValue;
  if (!a.x || !a.x_scale || !a.qweight_g || !a.group_scale_g || !a.channel_scale_g || !a.qweight_u ||
      !a.group_scale_u || !a.channel_scale_u || !a.out || !al16(a.x) || !al16(a.qweight_g) || !al16(a.qweight_u) ||
      !al16(a.out))
    return cudaErrorInvalidValue;
  // The scale loads read 32-bit column pairs: both matrices' column 0 must be 4-byte aligned.
  if ((reinterpret_cast<uintptr_t>(a.group_scale_g) & 3) || (reinterpret_cast<uintptr_t>(a.group_scale_u) & 3))
    return cudaErrorInvalidValue;
  if (per_token && (!a.token_scale || !a.y32 || !a.slots || !al16(a.y32))) return cudaErrorInvalidValue;
  int strips = a.strips;
  if (strips == 0) {
    const int cfg = dispatch_config(a.m, 2 * a.cols, a.k, true);
    strips = cfg == kGemvMmaS2Config ? 2 : cfg == kGemvMmaS8Config ? 8 : 4;
  }
  if (strips != 2 && strips != 4 && strips != 8) return cudaErrorInvalidValue;
  GemvParams p{};
  p.x = a.x;
  p.x_scale = a.x_scale;
  p.qweight = a.qweight_g;
  p.group_scale = a.group_scale_g;
  p.channel_scale = a.channel_scale_g;
  p.bias = a.bias_g;
  p.m = a.m;
  p.n = a.cols;
  p.np = a.scale_ld;  // the kernel uses it as the group-scale row stride (SW counts strips from cols)
  p.k = a.k;
  p.group_size = gs;
  p.act_per_token = a.act_per_token;
  SwigluEpi q{a.qweight_u, a.group_scale_u, a.channel_scale_u, a.bias_u, a.cols, a.ld, a.out,
              a.static_scale, a.token_scale, a.y32, a.slots};
  const Shape sh = shape_of(p.m, p.k, strips, true);  // never persistent (the per-token ticket counts blocks)
  p.chunk_kb = sh.chunk_kb;
  p.persistent = 0;
  const bool chunked = sh.chunk_kb < p.k / kBK;
  if (strips == 8)
    launch_g<1, 8, true>(p, sh.smem, chunked, stream, q);
  else if (strips == 4)
    launch_g<1, 4, true>(p, sh.smem, chunked, stream, q);
  else
    launch_g<1, 2, true>(p, sh.smem, chunked, stream, q);
  return cudaGetLastError();
}

}  // namespace odyssey
