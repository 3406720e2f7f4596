// gemv.cu: the W4A8 GEMV for decode (M ≤ 4, integer group scales), config "gemv_w4" of the
// FastGEMM table (fastgemm.cu). The dispatch's decode table (fastgemm_dispatch.cpp) picks it
// or the tensor-core GEMV gemv_mma_* (gemv_mma.cu, M ≤ 16) per M, from what bench gemm measures.
//
// What it computes: exactly what the mma kernel computes (docs/w4a8-numerics.md,
// quant.W4A8GEMMRef / W4A8AccRef), bit for bit in the int32 accumulators and the fp16 outputs:
//
//   P'_g[m,c] = Σ_{k∈g} x[m,k] · 16·q[c,k]      int32, here with __dp4a instead of tensor cores
//   acc[m,c]  = Σ_g ŝ[g,c] · P'_g[m,c]           int32
//   y[m,c]    = half_rn(float(acc)·(xs[m]·f[c]) (+ bias[c]))   kernel::epilogue_int, shared
//
// Why a GEMV: at M = 1 the mma kernel wastes 15/16 of every m16n8k32 and pays fixed latency
// (pipeline fill, a barrier per 128 of K, the split-K fix-up through the workspace): ~10 µs for
// 4096×4096 where its 8.4 MB of weights need ~2 µs. This kernel reads every weight byte once,
// straight from global memory into registers (16-byte ld.global.nc, no shared-memory staging,
// no workspace, one barrier per block), and multiplies with dp4a.
//
// Layout (docs/fastgemm-layout.md, format version 1): qweight is [Np/8, Kp/128, 32, 16] bytes.
// For a strip nb of 8 columns and a 128-deep K block kb, lane l (gid = l/4, tig = l%4) owns the
// 16 bytes at ((nb·Kp/128 + kb)·32 + l)·16: word s (step s = 0..3) holds, in byte j, the code of
// column nb·8 + gid at k = kb·128 + 32s + 4·tig + j in its low nibble and at k + 16 in its high
// nibble. So (w << 4) & 0xF0F0F0F0 is four int8 16·q for the low k's and w & 0xF0F0F0F0 four for
// the high ones (the mma kernel's b0/b1, quant.HighNibbleInt8), and each pairs with one aligned
// activation word: __dp4a(x[k..k+3], b0) and __dp4a(x[k+16..k+19], b1).
//
// Structure: one block per strip of 8 columns (grid = Np/8; every 7B linear has ≥ 512 strips, so
// no split of K over blocks is needed); its kWarps warps split K, warp w taking K blocks
// w, w + kWarps, …, kU of them loaded before any is used so that each warp keeps kU·512 bytes
// in flight. Each lane accumulates its own (m, column gid) sub-sums; the 4 tig lanes of a
// column are reduced with shuffles, the warps through shared memory, and 8·M threads run the
// epilogue.
//
// Why splitting a group's sum is exact: a lane sees only 8 of a 32-group's k values (or 32 of a
// 128-group's), and each warp only some K blocks, so every lane multiplies its own sub-sum by ŝ
// and the sub-products are added in some other order than the reference's. int32 addition and
// multiplication wrap (they are arithmetic mod 2³²), Σ_i ŝ·p_i ≡ ŝ·Σ_i p_i (mod 2³²), and the
// true acc fits int32 (the overflow bound, docs/w4a8-numerics.md §3), so the wrapped result is
// the exact acc. fastgemm.cu's split-K relies on the same argument. The arithmetic is done on
// uint32_t so that the wrap is defined behaviour, not signed overflow.
//
// Limits: M ≤ 4 (kMaxM), ODY_SCALE_INT only, splits 0 or 1 (no split-K: there is nothing to
// split across blocks), plus the FastGEMM limits (K % 128 == 0; groups 32, 64, 128 or
// per-channel; x, qweight, group_scale 16-byte aligned). check_problem refuses the rest.
//
// Test: odyssey testdata gemm-cases --out C && odyssey-rt test gemm --cases C (every M ≤ 4 case
// runs through config gemv_w4 with splits 0 and 1, and through the dispatch). Benchmark:
// odyssey-rt bench gemm --m 1,2,4 --shapes 4096x4096 (--sweep shows the mma configs next to it).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "fastgemm.hpp"
#include "kernel_common.cuh"

namespace odyssey {
namespace {

constexpr int kWarps = kGemvThreads / 32;  // warps per block, splitting K
constexpr int kU = 4;      // K blocks per warp loaded ahead of their use (kU·512 bytes in flight)

// Streamed once: no L1 allocation, so the activations (re-read by every block) stay in L1.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t word(const uint4& v, int s) {
  return s == 0 ? v.x : s == 1 ? v.y : s == 2 ? v.z : v.w;
}

// M: rows (1..4). SPG: 32-deep steps per group (1, 2, 4 for groups of 32, 64, 128), 0 for
// per-channel (one group over all of K: the scale is applied once, after the reduction).
template <int M, int SPG>
__global__ void __launch_bounds__(kWarps * 32) w4a8_gemv_kernel(const GemvParams p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int nb = blockIdx.x;
  const int col = nb * 8 + gid;  // < Np always: the grid is Np/8 strips
  const int kblocks = p.k / kernel::kBK;
  const uint8_t* wstrip = p.qweight + ((size_t)nb * kblocks * 32 + lane) * 16;
  const int16_t* gs = p.group_scale + col;
  // This lane's activation words of step 0 (low nibbles); +16 bytes the high ones, +32 per step.
  const int8_t* xlane = p.x + 4 * tig;

  uint32_t acc[M];
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = 0;

  for (int kb0 = warp; kb0 < kblocks; kb0 += kWarps * kU) {
    // All kU weight loads first: they are what the kernel waits for.
    uint4 w[kU];
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const int kb = kb0 + u * kWarps;
      w[u] = kb < kblocks ? ld_stream16(wstrip + (size_t)kb * 512) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const int kb = kb0 + u * kWarps;
      if (kb >= kblocks) break;
      // Group scales of this K block for this column: 4/SPG groups (one row of [G, Np] each).
      int32_t sc[4];
      (void)sc;  // unused per-channel
      if constexpr (SPG > 0) {
#pragma unroll
        for (int g = 0; g < 4 / SPG; g++) sc[g] = __ldg(gs + (size_t)(kb * (4 / SPG) + g) * p.np);
      }
#pragma unroll
      for (int m = 0; m < M; m++) {
        const int8_t* xr = xlane + (size_t)m * p.k + kb * kernel::kBK;
        uint32_t part = 0;
#pragma unroll
        for (int s = 0; s < 4; s++) {
          const uint32_t ws = word(w[u], s);
          const int b0 = (int)((ws << 4) & 0xF0F0F0F0u);  // 16·q, k = 32s + 4·tig + j
          const int b1 = (int)(ws & 0xF0F0F0F0u);         // 16·q, k = 32s + 16 + 4·tig + j
          const int x0 = __ldg(reinterpret_cast<const int*>(xr + s * 32));
          const int x1 = __ldg(reinterpret_cast<const int*>(xr + s * 32 + 16));
          // dp4a wraps like the tensor cores' int32 accumulation; the casts keep C++ defined.
          part = (uint32_t)__dp4a(x1, b1, __dp4a(x0, b0, (int)part));
          if constexpr (SPG > 0) {
            if ((s + 1) % SPG == 0) {  // end of a group: its sub-sum takes the group's scale
              acc[m] += (uint32_t)sc[s / SPG] * part;
              part = 0;
            }
          }
        }
        if constexpr (SPG == 0) acc[m] += part;
      }
    }
  }

  // The 4 tig lanes of a column, then the warps.
#pragma unroll
  for (int m = 0; m < M; m++) {
    acc[m] += (uint32_t)__shfl_xor_sync(0xFFFFFFFFu, (int)acc[m], 1);
    acc[m] += (uint32_t)__shfl_xor_sync(0xFFFFFFFFu, (int)acc[m], 2);
  }
  __shared__ uint32_t red[kWarps][M][8];
  if (tig == 0) {
#pragma unroll
    for (int m = 0; m < M; m++) red[warp][m][gid] = acc[m];
  }
  __syncthreads();
  if (threadIdx.x >= M * 8) return;
  const int m = threadIdx.x >> 3, j = threadIdx.x & 7;
  const int c = nb * 8 + j;
  if (c >= p.n) return;  // padding columns of the last strip
  uint32_t total = 0;
#pragma unroll
  for (int v = 0; v < kWarps; v++) total += red[v][m][j];
  if constexpr (SPG == 0) total *= (uint32_t)(int32_t)p.group_scale[c];  // the one group's ŝ
  const int32_t a = (int32_t)total;
  const float xs = p.act_per_token ? p.x_scale[m] : p.x_scale[0];
  static_cast<__half*>(p.y)[(size_t)m * p.n + c] = kernel::epilogue_int(a, xs, p.channel_scale[c], p.bias, c);
  if (p.acc_out) p.acc_out[(size_t)m * p.n + c] = a;
}

template <int M>
void launch_m(const GemvParams& p, cudaStream_t stream) {
  const dim3 grid(p.np / 8), block(kWarps * 32);
  const bool per_channel = p.group_size >= p.k;
  if (per_channel)
    w4a8_gemv_kernel<M, 0><<<grid, block, 0, stream>>>(p);
  else if (p.group_size == 32)
    w4a8_gemv_kernel<M, 1><<<grid, block, 0, stream>>>(p);
  else if (p.group_size == 64)
    w4a8_gemv_kernel<M, 2><<<grid, block, 0, stream>>>(p);
  else
    w4a8_gemv_kernel<M, 4><<<grid, block, 0, stream>>>(p);
}

}  // namespace

// The problem was checked (check_problem, can_implement): 1 ≤ M ≤ kGemvMaxM, integer scales.
void launch_w4a8_gemv(const GemvParams& p, cudaStream_t stream) {
  switch (p.m) {
    case 1: launch_m<1>(p, stream); break;
    case 2: launch_m<2>(p, stream); break;
    case 3: launch_m<3>(p, stream); break;
    default: launch_m<4>(p, stream); break;
  }
}

}  // namespace odyssey
