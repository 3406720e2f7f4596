// fastgemm_sm90.cu: the W4A8 FastGEMM for prefill on Hopper, with wgmma (config "wgmma_r128t128_s4",
// and its second version "wgmma_r128t128_s4_v2": the same product and layouts with the weights and
// group scales staged through shared memory 5 K blocks ahead; see "v2" below).
//
// What it computes: exactly what the mma.sync kernel (fastgemm.cu) computes, bit for bit
// (docs/w4a8-numerics.md; quant.W4A8GEMMRef / W4A8AccRef, quant.W4A8GEMMFloatScaleRef):
//
//   P'_g[m,c] = Σ_{k∈g} x[m,k] · 16·q[c,k]      int32, wgmma.m64n128k32.s32.s8.s8
//   acc[m,c]  = Σ_g ŝ[g,c] · P'_g[m,c]           int32 (uint32 arithmetic: wraps mod 2³², exact)
//   y[m,c]    = half_rn(float(acc)·(xs[m]·f[c]) (+ bias[c]))   kernel::epilogue_int, shared
//
// and with float group scales (ODY_SCALE_FLOAT) acc_f += float(P'_g)·(s[g,c]/16), y = acc_f·xs
// (+ bias), in the mma kernel's order (the groups of one output are summed in K order by one
// thread in both kernels, so the float variant is bit-exact too).
//
// The transposed product. wgmma takes A (M×K) from registers or shared memory and B (K×N) only
// from shared memory. We compute Yᵀ = W·Xᵀ: the weights are A, in registers, and the activations
// are B, in shared memory. Why: the packed layout (docs/fastgemm-layout.md) already gives lane l
// of a warp, for a strip of 8 weight rows and a 128-deep K block, one 16-byte word whose 32-bit
// word s holds in byte j the codes of row 8·strip + l/4 at k = 32s + 4·(l%4) + j (low nibble) and
// k + 16 (high nibble). The wgmma A fragment for 8-bit types (PTX ISA, "Register Fragments and
// Shared Memory Matrix Layouts", wgmma .m64nNk32, A in registers; CUTLASS ALayout_64x32) gives
// warp w of the warpgroup rows 16w..16w+15, and lane l (gid = l/4, tig = l%4) registers
//   a0 = row gid,   k = 4·tig + j        a1 = row gid+8, k = 4·tig + j
//   a2 = row gid,   k = 16 + 4·tig + j   a3 = row gid+8, k = 16 + 4·tig + j
// so for each k32 step a0 = (w0 << 4) & 0xF0F0F0F0, a2 = w0 & 0xF0F0F0F0 from the strip of rows
// 16w..16w+7, and a1, a3 the same from the next strip: weights go from global memory straight
// to registers (one 16-byte load per strip per lane per 128 of K), no shared memory, no shuffle.
// The activations X [M, K] int8 row-major are B "K-major" (each token's K values contiguous):
// a token tile of 128 rows × 128 bytes per stage, copied with cp.async into the 128-byte swizzle
// that the wgmma shared-memory descriptor states (16-byte chunk c of row r at r·128 + ((c ^ r%8)·16),
// 1024-byte aligned atoms of 8 rows, stride between atoms 1024 bytes); the k32 step s reads the
// descriptor's start address + 32·s bytes (the swizzle is applied by the hardware on the address).
//
// Structure: a block of 2 warpgroups (256 threads) owns 128 weight rows (64 per warpgroup) × 128
// tokens and the whole of K (no split-K: prefill has enough tiles). STAGES-deep cp.async pipeline
// for the X tiles (every thread copies 4 chunks of 16 bytes per stage; fence.proxy.async makes the
// copies visible to the tensor cores' async proxy before the barrier); the weights of the next K
// block are loaded into registers while the current one is computed. Per group, the warpgroup
// issues its k32 steps (the first with scale-d = 0: the partial starts from zero), commits, waits,
// and folds: acc += ŝ[g,row]·partial (each thread's accumulator registers hold two weight rows,
// gid and gid+8 of its warp's 16: one ŝ each). Per-channel (one group of K) runs one chain over K
// and multiplies once at the end. The epilogue maps each accumulator register back to (token,
// channel) (D fragment: row 16w + gid + 8·((i>>1)&1), column 8·(i>>2) + 2·tig + (i&1)) and writes
// y[token, channel] (and acc_out), i.e. transposes back to the row-major [M, N] output.
// Blocks are rastered in groups of kRaster weight-row tiles so that the blocks resident at once
// share both their X tiles and their weight tiles in L2.
//
// Limits: sm_90a only (wgmma). Built only when the CUDA compiler is ≥ 12.0 and the architectures
// include 90 (runtime/CMakeLists.txt compiles this file for compute_90a,code=sm_90a alone and
// defines ODY_HAVE_SM90_WGMMA); otherwise only the host stubs at the end exist and the config is
// refused (check_problem: "not built"). At run time it is used only on a compute capability 9.x
// device. No split-K (splits 0 or 1). The FastGEMM limits otherwise (K % 128 == 0; groups 32,
// 64, 128 or per-channel; x, qweight, group_scale 16-byte aligned; M·K, Np·K/2 < 2³²).
// ODYSSEY_WGMMA=0 in the environment turns it off (dispatch and forced config), =1 makes the
// dispatch use it for every M ≥ kSm90MinM whatever the tile count (fastgemm_dispatch.cpp).
//
// Test: odyssey-rt test wgmma-probe (the A-fragment, swizzle and descriptor layouts on known
// inputs, mismatching positions printed), then odyssey testdata gemm-cases --out C &&
// ODYSSEY_WGMMA=1 odyssey-rt test gemm --cases C --configs wgmma_r128t128_s4 (every case, forced
// and through the dispatch, bit-exact; v2: ODYSSEY_WGMMA_V2=1 and --configs wgmma_r128t128_s4_v2;
// v3: ODYSSEY_WGMMA_V3=1 and --configs wgmma_r128t128_s4_v3; v3p: ODYSSEY_WGMMA_V3=p and
// --configs wgmma_r128t128_s4_v3p).
// Benchmark: odyssey-rt bench gemm --m 256,1024,4096,8192 (rows w4a8_int_wgmma, w4a8_int_wgmma2,
// w4a8_int_wgmma3, w4a8_int_wgmma3p and w4a8_int_mma beside cuBLAS). runtime/scripts/device-run.sh
// wgmma does all.
// Host check of the index arithmetic (every version; v3p's copy schedule): emulate_wgmma (ctest
// wgmma_emulated).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>

#include "bulk_copy.cuh"
#include "fastgemm.hpp"
#include "kernel_common.cuh"
#include "status.hpp"
#include "wgmma_sched.hpp"

// v4 ("wgmma_ws_r128t128_v4", ODYSSEY_WGMMA_V4=1 or the forced config): v2's product and tile,
// warp-specialized (a producer warpgroup issuing TMA / bulk copies into an 8-stage mbarrier ring,
// two consumer warpgroups alternating their wgmma issue); see "v4" below. v2 and v4 end a tile
// with the same store_tile.
// v5 ("wgmma_ws_r128t128_v5", ODYSSEY_WGMMA_V5=1 or the forced config): v4 on a persistent grid,
// the ring and the pingpong running on across tiles (the same kernel template); see "v5" below.
// The v4/v5 diagnostic variants (bench only, wrong results by design) are described above the
// kernel ("diagnostics"). Host check of v5's schedule and ring: emulate_wgmma.
// v3 ("wgmma_r128t128_s4_v3", ODYSSEY_WGMMA_V3=1 or the forced config): v2 with each warpgroup's
// tokens in two 64-token halves (m64n64k32 chains, wait_group 1), so that one half's fold
// overlaps the other half's MMAs; see "v3" below. v3p ("wgmma_r128t128_s4_v3p",
// ODYSSEY_WGMMA_V3=p): v3 on a persistent grid whose copies run ahead across tiles; see "v3p".
// Device code that uses wgmma exists only in the sm_90a compilation of this file.
// ODY_WGMMA_SYNTAX_CHECK lets an older nvcc (11.8: no sm_90a, PTX ISA 7.8) compile the C++
// around the asm to PTX for a syntax check; that PTX is never assembled.
#if defined(__CUDA_ARCH__) && (defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(ODY_WGMMA_SYNTAX_CHECK))
#define ODY_WGMMA_DEVICE 1
#else
#define ODY_WGMMA_DEVICE 0
#endif

namespace odyssey {

#if defined(ODY_HAVE_SM90_WGMMA)
namespace {

using kernel::cp_async16;
using kernel::cp_async_commit;
using kernel::cp_async_wait;
using kernel::kBK;
using kernel::smem_u32;

constexpr int kWarpgroups = 2;                     // consumer warpgroups per block
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kRowTile = 64 * kWarpgroups;         // weight rows (output channels) per block
constexpr int kTokTile = 128;                      // tokens per block: wgmma N
constexpr int kStages = 4;                         // cp.async stages of X
constexpr int kStageBytes = kTokTile * kBK;        // 16 KB: 128 tokens × 128 bytes of K
constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + slack to align to 1024
constexpr int kRaster = 16;                        // weight-row tiles per raster group
constexpr int kXChunks = kTokTile * (kBK / 16) / kThreads;  // 16-byte X chunks per thread per stage
static_assert(kRowTile == kSm90RowTile && kTokTile == kSm90TokTile, "fastgemm.hpp tile constants");
static_assert(kXChunks * kThreads == kTokTile * (kBK / 16), "X chunks divide evenly");
// A CUtensorMap (CUDA 12's cuda.h: 128 opaque bytes, 64-byte aligned), defined here because
// nvcc 11.8's headers lack it (v4's X copies; see encode_x_map).
struct alignas(64) TmaMap2D {
  uint64_t opaque[16];
};
static_assert(sizeof(TmaMap2D) == 128, "CUtensorMap is 128 bytes");

// ---------------------------------------------------------------- PTX wrappers

// wgmma.fence (PTX ISA "wgmma.fence"): orders this warpgroup's earlier register writes (the A
// fragments, the fold's reads of the accumulators) before the next wgmma.mma_async reads them.
__device__ __forceinline__ void wgmma_fence() {
#if ODY_WGMMA_DEVICE
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
// wgmma.commit_group (PTX ISA "wgmma.commit_group"): the wgmma ops issued so far form a group.
__device__ __forceinline__ void wgmma_commit() {
#if ODY_WGMMA_DEVICE
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// wgmma.wait_group 0 (PTX ISA "wgmma.wait_group"): every committed group has completed, so
// the accumulators may be read and the A registers and the shared-memory stage reused.
__device__ __forceinline__ void wgmma_wait_all() {
#if ODY_WGMMA_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
// fence.proxy.async.shared::cta (PTX ISA "membar/fence", proxy fences): cp.async writes shared
// memory through the generic proxy, wgmma reads it through the async proxy; each writing thread
// fences after its copies completed and before the barrier that publishes them.
__device__ __forceinline__ void fence_proxy_async() {
#if ODY_WGMMA_DEVICE
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving accesses of r across this point (CUTLASS's
// warpgroup_fence_operand): the accumulators change behind its back while a wgmma is in flight.
__device__ __forceinline__ void fence_operand(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// Shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format" for wgmma): bits 0–13
// start address >> 4, 16–29 leading-dimension byte offset >> 4 (unused for K-major swizzled
// layouts: 1), 32–45 stride-dimension byte offset >> 4 (1024 bytes from one 8-row atom to the
// next), 49–51 base offset (0: atoms are 1024-byte aligned), 62–63 swizzle mode (1 = 128-byte).
__device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t saddr) {
  return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
         ((uint64_t)1 << 62);
}

// wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 with A in registers (PTX ISA
// "wgmma.mma_async", integer types: no scale/transpose immediates; 8-bit B must be K-major):
// d[64] (+)= A(64×32, this thread's a[4]) · B(32×128, descriptor). scale_d = 0 ignores d's old
// value (the product starts from zero), 1 accumulates.
__device__ __forceinline__ void wgmma_m64n128k32_s8(uint32_t (&d)[64], const uint32_t (&a)[4],
                                                    uint64_t desc_b, int scale_d) {
#if ODY_WGMMA_DEVICE
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
#else
  (void)d, (void)a, (void)desc_b, (void)scale_d;
#endif
}

// The same wgmma with A from shared memory too (the SS form: "{d}, desc-a, desc-b, scale-d"; A
// 64×32 s8 K-major through a descriptor like B's). Only the "ss" diagnostic variants use it (A
// read from the X stage: wrong values, right timing), to compare the tensor pipe's rate with A
// from registers (every kernel here) against A from shared memory.
__device__ __forceinline__ void wgmma_m64n128k32_s8_ss(uint32_t (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                                       int scale_d) {
#if ODY_WGMMA_DEVICE
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
#else
  (void)d, (void)desc_a, (void)desc_b, (void)scale_d;
#endif
}

// 32-bit word s of a uint4.
__device__ __forceinline__ uint32_t word(const uint4& v, int s) {
  return s == 0 ? v.x : s == 1 ? v.y : s == 2 ? v.z : v.w;
}

// The A fragments of a K block's four k32 steps from this thread's two packed words (w0v: row
// gid, w1v: row gid+8): int4 to int8 by two masks per word, each code landing in the high
// nibble as 16·w (docs/fastgemm-layout.md). a[s][0] row gid and a[s][1] row gid+8 for
// k = 32s + 4·tig + j; a[s][2], a[s][3] the same rows at k + 16.
__device__ __forceinline__ void a_fragments(const uint4& w0v, const uint4& w1v, uint32_t (&a)[4][4]) {
#pragma unroll
  for (int s = 0; s < 4; s++) {
    const uint32_t w0 = word(w0v, s), w1 = word(w1v, s);
    a[s][0] = (w0 << 4) & 0xF0F0F0F0u;
    a[s][1] = (w1 << 4) & 0xF0F0F0F0u;
    a[s][2] = w0 & 0xF0F0F0F0u;
    a[s][3] = w1 & 0xF0F0F0F0u;
  }
}

// Every A register exists before the first wgmma.fence of the block: none is written between a
// fence and the wgmma ops that read it (no injected warpgroup.arrive).
__device__ __forceinline__ void fence_a_fragments(uint32_t (&a)[4][4]) {
#pragma unroll
  for (int s = 0; s < 4; s++)
#pragma unroll
    for (int r = 0; r < 4; r++) fence_operand(a[s][r]);
}

// Weights (and their group scales) of one 128-deep K block for this thread: the two strips of
// its warp (rows 16w..16w+7 and 16w+8..16w+15), and ŝ (or s) of rows gid and gid+8 for each of
// the block's groups (up to 4, groups of 32).
template <class Scale>
struct WBlock {
  uint4 w0, w1;
  Scale s[4][2];
};

// The epilogue of every wgmma version (v1–v4: the same registers, the same formulas). Register i
// of this thread is (channel c0 + 8·((i>>1)&1), token t0 + 8·(i>>2) + 2·tig + (i&1)); 2-byte
// stores. Every input of the formulas (the 32 token scales, the 2 channel scales and biases) is
// loaded into registers before the first store: y may alias them as far as the compiler knows,
// so a load placed after a store waits for it, and the old loop (x_scale[t] and bias[c] read
// per output, between the stores) serialized 64 global-load latencies per thread: 13.6k of a
// tile's 47.6k cycles at 4096² M=4096 (session 9, v4's CLOCK diagnostic "epi"). The values and
// operations are unchanged (kernel::epilogue_int's formula, the float variant's): bit-exact.
template <bool INT_SCALE, class Acc>
__device__ __forceinline__ void store_outputs(const Sm90Params& p, const Acc (&total)[64], int c0, int t0, int tig) {
  __half* y = static_cast<__half*>(p.y);
  float f[2] = {0.f, 0.f}, b[2] = {0.f, 0.f};
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int c = c0 + 8 * h;
    if (c < p.n) {
      if constexpr (INT_SCALE) f[h] = p.channel_scale[c];
      if (p.bias) b[h] = p.bias[c];
    }
  }
  float xs[32];  // token t0 + 8·j + 2·tig + e at 2·j + e
#pragma unroll
  for (int j = 0; j < 32; j++) {
    const int t = t0 + 8 * (j >> 1) + 2 * tig + (j & 1);
    xs[j] = t < p.m ? p.x_scale[p.act_per_token ? t : 0] : 0.f;
  }
  const bool has_bias = p.bias != nullptr;
#pragma unroll
  for (int i = 0; i < 64; i++) {
    const int h = (i >> 1) & 1;
    const int c = c0 + 8 * h;
    const int t = t0 + 8 * (i >> 2) + 2 * tig + (i & 1);
    if (c >= p.n || t >= p.m) continue;
    const float x = xs[2 * (i >> 2) + (i & 1)];
    const size_t o = (size_t)t * p.n + c;
    if constexpr (INT_SCALE) {
      // kernel::epilogue_int with the bias already in a register.
      float v = __fmul_rn(__int2float_rn((int32_t)total[i]), __fmul_rn(x, f[h]));
      if (has_bias) v = __fadd_rn(v, b[h]);
      y[o] = __float2half_rn(v);
      if (p.acc_out) p.acc_out[o] = (int32_t)total[i];
    } else {
      float v = __fmul_rn(total[i], x);
      if (has_bias) v = __fadd_rn(v, b[h]);
      y[o] = __float2half_rn(v);
    }
  }
}

// Per-channel scales (SPG == 0: one chain over the whole K, scaled once at the end of the tile):
// total[OFF + j] = ŝ_c · part[j] (integer scales, uint32) or float(part[j]) · (s_c / 16) (float
// scales) for the N registers of one chain; register j belongs to channel c0 + 8·((j>>1)&1) in
// every m64nN D fragment, so the same two scales serve a whole tile (v1, v2, v4: one 64-register
// chain; v3, v3p: two 32-register halves at OFF 0 and 32). ok0/ok1: rows c0 and c0 + 8's
// strips are below Np.
template <class Scale>
__device__ __forceinline__ void channel_scales(const Sm90Params& p, int c0, bool ok0, bool ok1, Scale (&scc)[2]) {
  const Scale* gs = static_cast<const Scale*>(p.group_scale);
  scc[0] = ok0 ? gs[c0] : Scale(0);
  scc[1] = ok1 ? gs[c0 + 8] : Scale(0);
}
template <bool INT_SCALE, int OFF, int N, class Acc, class Scale>
__device__ __forceinline__ void scale_chain(Acc (&total)[64], const uint32_t (&part)[N], const Scale (&scc)[2]) {
  static_assert(OFF + N <= 64, "a chain's registers lie in total");
#pragma unroll
  for (int j = 0; j < N; j++) {
    if constexpr (INT_SCALE)
      total[OFF + j] = (uint32_t)(int32_t)scc[(j >> 1) & 1] * part[j];
    else
      total[OFF + j] = __fmul_rn(__int2float_rn((int32_t)part[j]), scc[(j >> 1) & 1] * 0.0625f);
  }
}

// The end of a tile for v1, v2 and v4 (one 64-register partial): per-channel scaling of the one
// chain (SPG == 0), then the epilogue. ok0/ok1: rows c0 and c0 + 8's strips are below Np.
template <int SPG, bool INT_SCALE, class Acc>
__device__ __forceinline__ void store_tile(const Sm90Params& p, Acc (&total)[64], const uint32_t (&part)[64], int c0,
                                           int t0, int tig, bool ok0, bool ok1) {
  using Scale = typename std::conditional<INT_SCALE, int16_t, float>::type;
  if (!SPG) {
    Scale scc[2];
    channel_scales(p, c0, ok0, ok1, scc);
    scale_chain<INT_SCALE, 0>(total, part, scc);
  }
  store_outputs<INT_SCALE>(p, total, c0, t0, tig);
}

template <int SPG, bool INT_SCALE>
__global__ void __launch_bounds__(kThreads, 1) w4a8_wgmma_kernel(const Sm90Params p) {
#if ODY_WGMMA_DEVICE
  using Scale = typename std::conditional<INT_SCALE, int16_t, float>::type;
  constexpr int kGroups = SPG ? 4 / SPG : 1;  // groups per K block (per-channel: one chain)
  extern __shared__ uint8_t smem_raw[];
  // The 128-byte swizzle repeats every 8 rows = 1024 bytes: stages start 1024-byte aligned.
  const uint32_t sbase = (smem_u32(smem_raw) + 1023u) & ~1023u;
  uint8_t* smem = smem_raw + (sbase - smem_u32(smem_raw));

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, wq = warp & 3;  // warpgroup, warp within it
  const int gid = lane >> 2, tig = lane & 3;

  // Raster: groups of kRaster row tiles × all token tiles, token tiles fastest within a group.
  const int tiles_r = (p.np + kRowTile - 1) / kRowTile;
  const int tiles_t = (p.m + kTokTile - 1) / kTokTile;
  const int per_group = kRaster * tiles_t;
  const int grp = blockIdx.x / per_group, in_grp = blockIdx.x % per_group;
  const int first_r = grp * kRaster;
  const int rows_here = min(kRaster, tiles_r - first_r);
  const int rt = first_r + in_grp % rows_here, tt = in_grp / rows_here;
  const int t0 = tt * kTokTile;
  const int kblocks = p.k / kBK;

  // This warp's 16 weight rows: strips nb and nb+1; this thread's rows c0 and c0 + 8.
  const int row0 = rt * kRowTile + wg * 64 + wq * 16;
  const int nb = row0 >> 3;
  const int c0 = row0 + gid;
  const bool ok0 = row0 < p.np, ok1 = row0 + 8 < p.np;  // Np is a multiple of 8: whole strips
  const uint4* wsrc0 = reinterpret_cast<const uint4*>(p.qweight) + (size_t)nb * kblocks * 32 + lane;
  const uint4* wsrc1 = wsrc0 + (size_t)kblocks * 32;
  const Scale* gs = static_cast<const Scale*>(p.group_scale);
  const int gpk = SPG ? kGroups : 0;  // scale rows per K block

  auto load_w = [&](WBlock<Scale>& b, int kb) {
    const uint4 z = make_uint4(0, 0, 0, 0);
    b.w0 = ok0 ? __ldg(wsrc0 + (size_t)kb * 32) : z;
    b.w1 = ok1 ? __ldg(wsrc1 + (size_t)kb * 32) : z;
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
      if (SPG) {
        const Scale* row = gs + (size_t)(kb * gpk + g) * p.np;
        b.s[g][0] = ok0 ? __ldg(row + c0) : Scale(0);
        b.s[g][1] = ok1 ? __ldg(row + c0 + 8) : Scale(0);
      } else {
        b.s[g][0] = b.s[g][1] = Scale(0);
      }
    }
  };

  // X: this thread's kXChunks chunks per stage; tokens past M are zero-filled.
  uint32_t x_src[kXChunks], x_dst[kXChunks];
  bool x_ok[kXChunks];
#pragma unroll
  for (int u = 0; u < kXChunks; u++) {
    const int i = u * kThreads + tid;
    const int r = i >> 3, c = i & 7;
    x_ok[u] = t0 + r < p.m;
    x_src[u] = x_ok[u] ? (uint32_t)((size_t)(t0 + r) * p.k + c * 16) : 0u;
    x_dst[u] = r * kBK + ((c ^ (r & 7)) << 4);  // the 128-byte swizzle (see the header)
  }
  auto load_x = [&](int stage, int kb) {
    uint8_t* s = smem + stage * kStageBytes;
#pragma unroll
    for (int u = 0; u < kXChunks; u++)
      cp_async16(s + x_dst[u], p.x + x_src[u] + (x_ok[u] ? (size_t)kb * kBK : 0), x_ok[u]);
  };

  using Acc = typename std::conditional<INT_SCALE, uint32_t, float>::type;
  Acc total[64];
  uint32_t part[64];
#pragma unroll
  for (int i = 0; i < 64; i++) {
    total[i] = 0;
    part[i] = 0;
  }

#pragma unroll
  for (int s = 0; s < kStages - 1; s++) {
    if (s < kblocks) load_x(s, s);
    cp_async_commit();
  }
  WBlock<Scale> cur, nxt;
  load_w(cur, 0);

  for (int kb = 0; kb < kblocks; kb++) {
    if (kb + 1 < kblocks) load_w(nxt, kb + 1);  // in flight during this block's math
    cp_async_wait<kStages - 2>();
    fence_proxy_async();
    __syncthreads();  // stage kb is in; every warpgroup is done with stage kb - 1
    {
      const int n = kb + kStages - 1;
      if (n < kblocks) load_x(n % kStages, n);
      cp_async_commit();
    }
    const uint32_t sx = smem_u32(smem + (kb % kStages) * kStageBytes);
    const uint64_t desc0 = smem_desc_sw128(sx);

    uint32_t a[4][4];
    a_fragments(cur.w0, cur.w1, a);

#pragma unroll
    for (int g = 0; g < kGroups; g++) {
#pragma unroll
      for (int i = 0; i < 64; i++) fence_operand(part[i]);
      wgmma_fence();
      constexpr int kSteps = SPG ? SPG : 4;
#pragma unroll
      for (int j = 0; j < kSteps; j++) {
        const int s = g * kSteps + j;
        // A group's first step starts from zero; per-channel only at K's very first step.
        const int scale_d = SPG ? (j != 0) : (kb != 0 || s != 0);
        // Step s of K reads bytes 32s..32s+31 of every token row: start address + 32s.
        wgmma_m64n128k32_s8(part, a[s], desc0 + (uint64_t)((s * 32) >> 4), scale_d);
      }
      wgmma_commit();
      wgmma_wait_all();
#pragma unroll
      for (int i = 0; i < 64; i++) fence_operand(part[i]);
      if (SPG) {
        // Fold: register i holds weight row gid + 8·((i>>1)&1) of the warp's 16.
        if constexpr (INT_SCALE) {
          const uint32_t s_lo = (uint32_t)(int32_t)cur.s[g][0], s_hi = (uint32_t)(int32_t)cur.s[g][1];
#pragma unroll
          for (int i = 0; i < 64; i++) total[i] += ((i >> 1) & 1 ? s_hi : s_lo) * part[i];
        } else {
          // float(16p)·(s/16) == float(p)·s exactly; the mma kernel's operations, in its order.
          const float s_lo = cur.s[g][0] * 0.0625f, s_hi = cur.s[g][1] * 0.0625f;
#pragma unroll
          for (int i = 0; i < 64; i++)
            total[i] = __fadd_rn(total[i], __fmul_rn(__int2float_rn((int32_t)part[i]), (i >> 1) & 1 ? s_hi : s_lo));
        }
      }
    }
    if (kb + 1 < kblocks) cur = nxt;
  }
  cp_async_wait<0>();

  store_tile<SPG, INT_SCALE>(p, total, part, c0, t0, tig, ok0, ok1);  // per-channel scaling, epilogue
#else
  // Referenced so that a non-sm_90a device pass (a syntax check) does not warn about them.
  (void)p, (void)kRaster, (void)wgmma_fence, (void)wgmma_commit, (void)wgmma_wait_all, (void)fence_proxy_async,
      (void)fence_operand, (void)smem_desc_sw128, (void)wgmma_m64n128k32_s8, (void)word;
  __trap();  // not an sm_90a device compilation: the host never launches it (sm90_wgmma_usable)
#endif
}

// ---------------------------------------------------------------- v2 ("wgmma_r128t128_s4_v2")
//
// The same product, tiles, raster, fold and epilogue as the kernel above (so the same index
// arithmetic from the packed words to A registers and from accumulators to outputs), with two
// changes aimed at what the first H200 run showed (NOTES.md, "wgmma v2"): ~1700 cycles per K
// block against ~512 of tensor work, and the float-scale fold (4× the integer fold's issue cost)
// only 2% slower, i.e. the loop waits on latency, not on issue:
//   1. the weights (and the group scales) of a K block travel through the shared-memory stages
//      with the activations (cp.async, kStagesV2 - 1 = 5 K blocks ahead) instead of one K block
//      ahead in registers (__ldg, whose DRAM/L2 latency the loop could not hide);
//   2. every A register of a K block is produced (fence_operand) before wgmma.fence, so that no
//      register of an in-flight group is written after the fence (ptxas C7519 "warpgroup.arrive
//      is injected": the A fragments of steps 1..3 were computed between the wgmma ops).
// Stage layout (1024-byte aligned, kStageBytesV2 = 26 KB): X tile [0, 16K) as above (128-byte
// swizzle), then W [16K, 24K): strip sl (0..15, rows 8·sl.. of the block's 128) at sl·512, lane l's
// 16-byte word at + 16·l, i.e. the 512 contiguous bytes of the packed layout for that strip and
// K block; then the scales [24K, 26K): group g of the block, channel j (0..127) at
// (g·128 + j)·sizeof(Scale). Copy chunk i (16 bytes) of W is strip i/32, lane i%32, smem offset
// 16·i; chunk i of the scales is group i/CPR, channels (i%CPR)·(16/sizeof) on, smem offset 16·i
// (CPR = 128·sizeof/16 chunks per group row). Rows past Np are zero-filled, as v1 zeroes them.
// tests/emulate_wgmma.cpp replays these copies (--v2 cases).
constexpr int kStagesV2 = 6;
constexpr int kXBytesV2 = kTokTile * kBK;                        // 16 KB
constexpr int kWBytesV2 = kRowTile * kBK / 2;                    // 8 KB: 16 strips × 512 bytes
constexpr int kSBytesV2 = 4 * kRowTile * 4;                      // 2 KB: up to 4 groups of float
constexpr int kStageBytesV2 = kXBytesV2 + kWBytesV2 + kSBytesV2;  // 26 KB, a multiple of 1024
constexpr int kSmemBytesV2 = kStagesV2 * kStageBytesV2 + 1024;
constexpr int kWChunksV2 = kWBytesV2 / 16 / kThreads;            // 2 W chunks per thread per stage
static_assert(kStageBytesV2 % 1024 == 0, "stages stay 1024-byte aligned (the swizzle atom)");
static_assert(kWChunksV2 * kThreads * 16 == kWBytesV2, "W chunks divide evenly");

template <int SPG, bool INT_SCALE>
__global__ void __launch_bounds__(kThreads, 1) w4a8_wgmma_v2_kernel(const Sm90Params p) {
#if ODY_WGMMA_DEVICE
  using Scale = typename std::conditional<INT_SCALE, int16_t, float>::type;
  constexpr int kGroups = SPG ? 4 / SPG : 1;
  constexpr int kSChunkCols = 16 / (int)sizeof(Scale);            // channels per 16-byte chunk
  constexpr int kSChunks = SPG ? kGroups * kRowTile / kSChunkCols : 0;  // scale chunks per stage
  static_assert(kSChunks <= kThreads && kSChunks * 16 <= kSBytesV2, "one scale chunk per thread at most");
  extern __shared__ uint8_t smem_raw[];
  const uint32_t sbase = (smem_u32(smem_raw) + 1023u) & ~1023u;
  uint8_t* smem = smem_raw + (sbase - smem_u32(smem_raw));

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, wq = warp & 3;
  const int gid = lane >> 2, tig = lane & 3;

  const int tiles_r = (p.np + kRowTile - 1) / kRowTile;
  const int tiles_t = (p.m + kTokTile - 1) / kTokTile;
  const int per_group = kRaster * tiles_t;
  const int grp = blockIdx.x / per_group, in_grp = blockIdx.x % per_group;
  const int first_r = grp * kRaster;
  const int rows_here = min(kRaster, tiles_r - first_r);
  const int rt = first_r + in_grp % rows_here, tt = in_grp / rows_here;
  const int t0 = tt * kTokTile;
  const int kblocks = p.k / kBK;

  const int row0 = rt * kRowTile + wg * 64 + wq * 16;
  const int c0 = row0 + gid;
  const bool ok0 = row0 < p.np, ok1 = row0 + 8 < p.np;
  const Scale* gs = static_cast<const Scale*>(p.group_scale);
  const int gpk = SPG ? kGroups : 0;

  // X chunks: as v1.
  uint32_t x_src[kXChunks], x_dst[kXChunks];
  bool x_ok[kXChunks];
#pragma unroll
  for (int u = 0; u < kXChunks; u++) {
    const int i = u * kThreads + tid;
    const int r = i >> 3, c = i & 7;
    x_ok[u] = t0 + r < p.m;
    x_src[u] = x_ok[u] ? (uint32_t)((size_t)(t0 + r) * p.k + c * 16) : 0u;
    x_dst[u] = r * kBK + ((c ^ (r & 7)) << 4);
  }
  // W chunks: chunk i = u·kThreads + tid is strip i/32 of the block, lane i%32 of that strip.
  const uint4* qw = reinterpret_cast<const uint4*>(p.qweight);
  size_t w_src[kWChunksV2];
  bool w_ok[kWChunksV2];
#pragma unroll
  for (int u = 0; u < kWChunksV2; u++) {
    const int i = u * kThreads + tid;
    const int strip = rt * (kRowTile / 8) + (i >> 5);
    w_ok[u] = strip * 8 < p.np;
    w_src[u] = w_ok[u] ? (size_t)strip * kblocks * 32 + (i & 31) : 0;
  }
  // Scale chunk (threads tid < kSChunks): group tid / CPR of the block, channels from col.
  constexpr int kCpr = kRowTile / kSChunkCols;  // chunks per group row (16 int16, 32 float)
  const int s_g = tid / kCpr, s_col = rt * kRowTile + (tid % kCpr) * kSChunkCols;
  const bool s_ok = tid < kSChunks && s_col < p.np;  // Np % 8 == 0: a chunk is all in or all out

  auto load_stage = [&](int stage, int kb) {
    uint8_t* s = smem + stage * kStageBytesV2;
#pragma unroll
    for (int u = 0; u < kXChunks; u++)
      cp_async16(s + x_dst[u], p.x + x_src[u] + (x_ok[u] ? (size_t)kb * kBK : 0), x_ok[u]);
#pragma unroll
    for (int u = 0; u < kWChunksV2; u++)
      cp_async16(s + kXBytesV2 + (u * kThreads + tid) * 16, qw + w_src[u] + (w_ok[u] ? (size_t)kb * 32 : 0), w_ok[u]);
    if (SPG && tid < kSChunks)
      cp_async16(s + kXBytesV2 + kWBytesV2 + tid * 16,
                 s_ok ? gs + (size_t)(kb * gpk + s_g) * p.np + s_col : gs, s_ok);
  };

  using Acc = typename std::conditional<INT_SCALE, uint32_t, float>::type;
  Acc total[64];
  uint32_t part[64];
#pragma unroll
  for (int i = 0; i < 64; i++) {
    total[i] = 0;
    part[i] = 0;
  }

#pragma unroll
  for (int s = 0; s < kStagesV2 - 1; s++) {
    if (s < kblocks) load_stage(s, s);
    cp_async_commit();
  }

  // This thread's weights in a stage: strips 2·(4·wg + wq) and the next; scales of c0, c0 + 8.
  const int w_off = kXBytesV2 + (wg * 8 + wq * 2) * 512 + lane * 16;
  const int s_off = kXBytesV2 + kWBytesV2 + (wg * 64 + wq * 16 + gid) * (int)sizeof(Scale);

  for (int kb = 0; kb < kblocks; kb++) {
    cp_async_wait<kStagesV2 - 2>();
    fence_proxy_async();
    __syncthreads();  // stage kb is in; every warpgroup is done with stage kb - 1
    {
      const int n = kb + kStagesV2 - 1;
      if (n < kblocks) load_stage(n % kStagesV2, n);
      cp_async_commit();
    }
    const uint8_t* st = smem + (kb % kStagesV2) * kStageBytesV2;
    const uint32_t sx = smem_u32(st);
    const uint64_t desc0 = smem_desc_sw128(sx);
    const uint4 w0v = *reinterpret_cast<const uint4*>(st + w_off);
    const uint4 w1v = *reinterpret_cast<const uint4*>(st + w_off + 512);
    Scale sc[4][2];
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
      if (SPG) {
        const Scale* srow = reinterpret_cast<const Scale*>(st + s_off) + g * kRowTile;
        sc[g][0] = srow[0];
        sc[g][1] = srow[8];
      } else {
        sc[g][0] = sc[g][1] = Scale(0);
      }
    }

    uint32_t a[4][4];
    a_fragments(w0v, w1v, a);
    fence_a_fragments(a);

#pragma unroll
    for (int g = 0; g < kGroups; g++) {
#pragma unroll
      for (int i = 0; i < 64; i++) fence_operand(part[i]);
      wgmma_fence();
      constexpr int kSteps = SPG ? SPG : 4;
#pragma unroll
      for (int j = 0; j < kSteps; j++) {
        const int s = g * kSteps + j;
        const int scale_d = SPG ? (j != 0) : (kb != 0 || s != 0);
        wgmma_m64n128k32_s8(part, a[s], desc0 + (uint64_t)((s * 32) >> 4), scale_d);
      }
      wgmma_commit();
      wgmma_wait_all();
#pragma unroll
      for (int i = 0; i < 64; i++) fence_operand(part[i]);
      if (SPG) {
        if constexpr (INT_SCALE) {
          const uint32_t s_lo = (uint32_t)(int32_t)sc[g][0], s_hi = (uint32_t)(int32_t)sc[g][1];
#pragma unroll
          for (int i = 0; i < 64; i++) total[i] += ((i >> 1) & 1 ? s_hi : s_lo) * part[i];
        } else {
          const float s_lo = sc[g][0] * 0.0625f, s_hi = sc[g][1] * 0.0625f;
#pragma unroll
          for (int i = 0; i < 64; i++)
            total[i] = __fadd_rn(total[i], __fmul_rn(__int2float_rn((int32_t)part[i]), (i >> 1) & 1 ? s_hi : s_lo));
        }
      }
    }
  }
  cp_async_wait<0>();
  store_tile<SPG, INT_SCALE>(p, total, part, c0, t0, tig, ok0, ok1);
#else
  (void)p;
  __trap();
#endif
}

// ---------------------------------------------------------------- v3 ("wgmma_r128t128_s4_v3")
//
// v2 with the fold taken off the tensor pipe's critical path (issues 12/14, "W4A8 prefill"). In
// v2 each warpgroup, per group of K, issues its wgmmas, waits for all of them (wait_group 0) and
// only then folds 64 accumulators (acc += ŝ·partial): the tensor pipe idles while it folds and
// while it reloads the next block's A fragments, and the H100 run showed ~1200 cycles per K block
// at 8192×28672 against ~512 of tensor work (NOTES.md "wgmma v2").
// v3 splits each warpgroup's 128 tokens into two 64-token halves, each its own
// wgmma.m64n64k32 chain into its own 32-register partial (part0: tokens 0..63, part1: 64..127:
// the same 64 registers as v2's one m64n128 partial, so no register cost), committed as its own
// group. Per group g of K the warpgroup
//   issues H0(g), commits;  wait_group 1 (all but H0(g) done: H1 of the previous group) and folds
//   part1 with that group's scales (kept in registers);  issues H1(g), commits;  wait_group 1
//   (H0(g) done) and folds part0 with g's scales.
// So every fold runs while the other half's wgmmas are in flight, and the pipe has one group
// queued across the __syncthreads of the next K block. After the last group: wait_group 0, fold
// part1. Each output is still folded once per group, in K order, with the same integer (or float)
// operations: bit-exact with v1/v2 and the mma kernel. Register i of v2's m64n128 partial is
// register i%32 of half i/32 (D fragment of m64n64: column 8·(j>>2) + 2·tig + (j&1), the same
// formula over 64 columns), so total[64], the epilogue and its index formulas are v2's.
// A registers: H1 of a block's last group is in flight while the next block builds its A
// fragments, so the K loop runs two blocks per iteration with two A arrays (even/odd blocks):
// no instruction redefines an in-flight wgmma's input registers (PTX: undefined behaviour;
// ptxas would serialize the wgmma pipeline to stay correct).
// Stages: H1 of block kb may still read stage kb when the next K block starts, so the stage
// refilled at block kb is the one of block kb − 2 (every group of it is complete: the last wait
// of block kb − 1 retired all but H1(kb − 1)), i.e. kStagesV3 − 2 blocks are prefetched; with 7
// stages of 26 KB (183 KB of shared memory, one block per SM as v2) that is 5 blocks, as v2.
// B of half h: the descriptor's start + 8192·h (64 token rows of 128 bytes = 8 swizzle atoms, so
// 1024-byte aligned and the same swizzle phase). Stage layout and copy formulas: v2's.
// tests/emulate_wgmma.cpp replays it (v3 cases: the half descriptors and register mapping and the
// delayed fold's scale bookkeeping).
constexpr int kStagesV3 = 7;
constexpr int kSmemBytesV3 = kStagesV3 * kStageBytesV2 + 1024;
static_assert(kSmemBytesV3 <= 227 * 1024, "v3 stages fit the opt-in shared memory of sm_90");

// wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8, A in registers (as the m64n128 wrapper).
__device__ __forceinline__ void wgmma_m64n64k32_s8(uint32_t (&d)[32], const uint32_t (&a)[4], uint64_t desc_b,
                                                   int scale_d) {
#if ODY_WGMMA_DEVICE
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
#else
  (void)d, (void)a, (void)desc_b, (void)scale_d;
#endif
}
// wgmma.wait_group 1: every committed group but the most recent one has completed.
__device__ __forceinline__ void wgmma_wait_1() {
#if ODY_WGMMA_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
#endif
}

// total[32·h + j] (+)= scale(row of j)·part[j]: the fold of one half (v2's fold, restricted).
template <bool INT_SCALE, class Acc, class Scale>
__device__ __forceinline__ void fold_half(Acc (&total)[64], const uint32_t (&part)[32], int h, Scale s0, Scale s1) {
  if constexpr (INT_SCALE) {
    const uint32_t s_lo = (uint32_t)(int32_t)s0, s_hi = (uint32_t)(int32_t)s1;
#pragma unroll
    for (int j = 0; j < 32; j++) total[32 * h + j] += ((j >> 1) & 1 ? s_hi : s_lo) * part[j];
  } else {
    const float s_lo = s0 * 0.0625f, s_hi = s1 * 0.0625f;
#pragma unroll
    for (int j = 0; j < 32; j++)
      total[32 * h + j] = __fadd_rn(total[32 * h + j], __fmul_rn(__int2float_rn((int32_t)part[j]), (j >> 1) & 1 ? s_hi : s_lo));
  }
}

template <int SPG, bool INT_SCALE>
__global__ void __launch_bounds__(kThreads, 1) w4a8_wgmma_v3_kernel(const Sm90Params p) {
#if ODY_WGMMA_DEVICE
  using Scale = typename std::conditional<INT_SCALE, int16_t, float>::type;
  constexpr int kGroups = SPG ? 4 / SPG : 1;
  constexpr int kSteps = SPG ? SPG : 4;  // k32 steps per group
  constexpr int kSChunkCols = 16 / (int)sizeof(Scale);
  constexpr int kSChunks = SPG ? kGroups * kRowTile / kSChunkCols : 0;
  static_assert(kSChunks <= kThreads && kSChunks * 16 <= kSBytesV2, "one scale chunk per thread at most");
  extern __shared__ uint8_t smem_raw[];
  const uint32_t sbase = (smem_u32(smem_raw) + 1023u) & ~1023u;
  uint8_t* smem = smem_raw + (sbase - smem_u32(smem_raw));

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, wq = warp & 3;
  const int gid = lane >> 2, tig = lane & 3;

  const int tiles_r = (p.np + kRowTile - 1) / kRowTile;
  const int tiles_t = (p.m + kTokTile - 1) / kTokTile;
  const int per_group = kRaster * tiles_t;
  const int grp = blockIdx.x / per_group, in_grp = blockIdx.x % per_group;
  const int first_r = grp * kRaster;
  const int rows_here = min(kRaster, tiles_r - first_r);
  const int rt = first_r + in_grp % rows_here, tt = in_grp / rows_here;
  const int t0 = tt * kTokTile;
  const int kblocks = p.k / kBK;

  const int row0 = rt * kRowTile + wg * 64 + wq * 16;
  const int c0 = row0 + gid;
  const bool ok0 = row0 < p.np, ok1 = row0 + 8 < p.np;
  const Scale* gs = static_cast<const Scale*>(p.group_scale);
  const int gpk = SPG ? kGroups : 0;

  // Copies: v2's chunks and formulas.
  uint32_t x_src[kXChunks], x_dst[kXChunks];
  bool x_ok[kXChunks];
#pragma unroll
  for (int u = 0; u < kXChunks; u++) {
    const int i = u * kThreads + tid;
    const int r = i >> 3, c = i & 7;
    x_ok[u] = t0 + r < p.m;
    x_src[u] = x_ok[u] ? (uint32_t)((size_t)(t0 + r) * p.k + c * 16) : 0u;
    x_dst[u] = r * kBK + ((c ^ (r & 7)) << 4);
  }
  const uint4* qw = reinterpret_cast<const uint4*>(p.qweight);
  size_t w_src[kWChunksV2];
  bool w_ok[kWChunksV2];
#pragma unroll
  for (int u = 0; u < kWChunksV2; u++) {
    const int i = u * kThreads + tid;
    const int strip = rt * (kRowTile / 8) + (i >> 5);
    w_ok[u] = strip * 8 < p.np;
    w_src[u] = w_ok[u] ? (size_t)strip * kblocks * 32 + (i & 31) : 0;
  }
  constexpr int kCpr = kRowTile / kSChunkCols;
  const int s_g = tid / kCpr, s_col = rt * kRowTile + (tid % kCpr) * kSChunkCols;
  const bool s_ok = tid < kSChunks && s_col < p.np;

  auto load_stage = [&](int stage, int kb) {
    uint8_t* s = smem + stage * kStageBytesV2;
#pragma unroll
    for (int u = 0; u < kXChunks; u++)
      cp_async16(s + x_dst[u], p.x + x_src[u] + (x_ok[u] ? (size_t)kb * kBK : 0), x_ok[u]);
#pragma unroll
    for (int u = 0; u < kWChunksV2; u++)
      cp_async16(s + kXBytesV2 + (u * kThreads + tid) * 16, qw + w_src[u] + (w_ok[u] ? (size_t)kb * 32 : 0), w_ok[u]);
    if (SPG && tid < kSChunks)
      cp_async16(s + kXBytesV2 + kWBytesV2 + tid * 16,
                 s_ok ? gs + (size_t)(kb * gpk + s_g) * p.np + s_col : gs, s_ok);
  };

  using Acc = typename std::conditional<INT_SCALE, uint32_t, float>::type;
  Acc total[64];
  uint32_t part0[32], part1[32];
#pragma unroll
  for (int i = 0; i < 64; i++) total[i] = 0;
#pragma unroll
  for (int j = 0; j < 32; j++) part0[j] = part1[j] = 0;

  constexpr int kAhead = kStagesV3 - 2;  // K blocks in flight (see the header)
#pragma unroll
  for (int s = 0; s < kAhead; s++) {
    if (s < kblocks) load_stage(s, s);
    cp_async_commit();
  }

  const int w_off = kXBytesV2 + (wg * 8 + wq * 2) * 512 + lane * 16;
  const int s_off = kXBytesV2 + kWBytesV2 + (wg * 64 + wq * 16 + gid) * (int)sizeof(Scale);
  // The scales part1's pending fold takes (those of the last group issued into part1).
  Scale pend0 = Scale(0), pend1 = Scale(0);
  bool pending = false;

  // One K block, its A fragments in `a`. The loop below alternates two A arrays between even and
  // odd blocks: H1 of a block's last group is still in flight (reading its A registers) while
  // the next block computes its fragments, and PTX forbids redefining the input registers of an
  // in-flight wgmma (ptxas would serialize the pipeline, or worse); with two arrays the
  // registers written at block kb + 1 are not those H1(kb) reads, and by block kb + 2 every
  // group of block kb has completed (the waits of block kb + 1).
  auto k_block = [&](const int kb, uint32_t (&a)[4][4]) {
    cp_async_wait<kAhead - 1>();  // block kb's copies are complete (this thread's)
    fence_proxy_async();
    __syncthreads();  // block kb is in for every thread; every group of block kb - 2 is done
    {
      const int n = kb + kAhead;
      if (n < kblocks) load_stage(n % kStagesV3, n);  // the stage of block kb - 2
      cp_async_commit();
    }
    const uint8_t* st = smem + (kb % kStagesV3) * kStageBytesV2;
    const uint64_t desc0 = smem_desc_sw128(smem_u32(st));
    const uint64_t desc1 = desc0 + (uint64_t)(8192 >> 4);  // tokens 64..127 of the tile
    const uint4 w0v = *reinterpret_cast<const uint4*>(st + w_off);
    const uint4 w1v = *reinterpret_cast<const uint4*>(st + w_off + 512);
    Scale sc[4][2];
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
      if (SPG) {
        const Scale* srow = reinterpret_cast<const Scale*>(st + s_off) + g * kRowTile;
        sc[g][0] = srow[0];
        sc[g][1] = srow[8];
      } else {
        sc[g][0] = sc[g][1] = Scale(0);
      }
    }
    a_fragments(w0v, w1v, a);
    fence_a_fragments(a);

#pragma unroll
    for (int g = 0; g < kGroups; g++) {
      // H0(g) into part0 (folded by the end of the previous group: free).
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part0[j]);
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < kSteps; j++) {
        const int s = g * kSteps + j;
        const int scale_d = SPG ? (j != 0) : (kb != 0 || s != 0);
        wgmma_m64n64k32_s8(part0, a[s], desc0 + (uint64_t)((s * 32) >> 4), scale_d);
      }
      wgmma_commit();
      // H1 of the previous group is done (only H0(g) may be in flight): fold it meanwhile.
      wgmma_wait_1();
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part1[j]);
      if (SPG && pending) fold_half<INT_SCALE>(total, part1, 1, pend0, pend1);
      // H1(g) into part1.
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part1[j]);
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < kSteps; j++) {
        const int s = g * kSteps + j;
        const int scale_d = SPG ? (j != 0) : (kb != 0 || s != 0);
        wgmma_m64n64k32_s8(part1, a[s], desc1 + (uint64_t)((s * 32) >> 4), scale_d);
      }
      wgmma_commit();
      pend0 = sc[g][0];
      pend1 = sc[g][1];
      pending = true;
      // H0(g) is done (H1(g) may be in flight): fold it.
      wgmma_wait_1();
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part0[j]);
      if (SPG) fold_half<INT_SCALE>(total, part0, 0, sc[g][0], sc[g][1]);
    }
  };
  uint32_t a_even[4][4], a_odd[4][4];
  for (int kb = 0; kb < kblocks; kb += 2) {
    k_block(kb, a_even);
    if (kb + 1 < kblocks) k_block(kb + 1, a_odd);
  }
  wgmma_wait_all();
#pragma unroll
  for (int j = 0; j < 32; j++) fence_operand(part1[j]);
  if (SPG && pending) fold_half<INT_SCALE>(total, part1, 1, pend0, pend1);
  cp_async_wait<0>();

  if (!SPG) {
    Scale scc[2];
    channel_scales(p, c0, ok0, ok1, scc);
    scale_chain<INT_SCALE, 0>(total, part0, scc);
    scale_chain<INT_SCALE, 32>(total, part1, scc);
  }

  store_outputs<INT_SCALE>(p, total, c0, t0, tig);  // v2's epilogue
#else
  (void)p, (void)wgmma_wait_1, (void)wgmma_m64n64k32_s8;
  __trap();
#endif
}

// ---------------------------------------------------------------- v3p ("wgmma_r128t128_s4_v3p")
//
// v3 with a persistent grid (min(tiles, SMs) blocks, tile = blockIdx.x + i·gridDim.x, so the
// blocks running at once still take consecutive tiles of the raster) and the copies running
// ahead across tile boundaries: a producer cursor (tile, K block) walks this block's tiles in
// order, kStagesV3 − 2 blocks ahead of the consumer, so the next tile's first stages arrive while
// the current tile finishes and runs its epilogue. At K = 4096 a tile is only 32 K blocks and
// v2's tile costs ~8 µs more than its K loop (NOTES.md, "W4A8 prefill"): the pipeline fill is
// the part of that this hides. Per tile the consumer is v3's (same halves, folds, order: bit-
// exact); between tiles it waits for every wgmma (wait_group 0), folds the pending half, writes
// the tile, and zeroes the accumulators. Stage safety across the boundary: the stage refilled at
// flat block f is that of flat block f − 2; within a tile v3's argument holds, and across it the
// epilogue's wait_group 0 has retired every group of the previous tile. One cp.async group is
// committed per flat block consumed (empty past the last tile), so the wait count stays v3's.
template <int SPG, bool INT_SCALE>
__global__ void __launch_bounds__(kThreads, 1) w4a8_wgmma_v3p_kernel(const Sm90Params p) {
#if ODY_WGMMA_DEVICE
  using Scale = typename std::conditional<INT_SCALE, int16_t, float>::type;
  constexpr int kGroups = SPG ? 4 / SPG : 1;
  constexpr int kSteps = SPG ? SPG : 4;
  constexpr int kSChunkCols = 16 / (int)sizeof(Scale);
  constexpr int kSChunks = SPG ? kGroups * kRowTile / kSChunkCols : 0;
  static_assert(kSChunks <= kThreads && kSChunks * 16 <= kSBytesV2, "one scale chunk per thread at most");
  extern __shared__ uint8_t smem_raw[];
  const uint32_t sbase = (smem_u32(smem_raw) + 1023u) & ~1023u;
  uint8_t* smem = smem_raw + (sbase - smem_u32(smem_raw));

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, wq = warp & 3;
  const int gid = lane >> 2, tig = lane & 3;

  const int tiles_r = (p.np + kRowTile - 1) / kRowTile;
  const int tiles_t = (p.m + kTokTile - 1) / kTokTile;
  const int tiles = tiles_r * tiles_t;
  const int per_group = kRaster * tiles_t;
  const int kblocks = p.k / kBK;
  // v1/v2/v3's raster: tile index → (row tile, token tile).
  auto tile_coords = [&](int tile, int& rt, int& tt) {
    const int grp = tile / per_group, in_grp = tile % per_group;
    const int first_r = grp * kRaster;
    const int rows_here = min(kRaster, tiles_r - first_r);
    rt = first_r + in_grp % rows_here;
    tt = in_grp / rows_here;
  };
  const Scale* gs = static_cast<const Scale*>(p.group_scale);
  const int gpk = SPG ? kGroups : 0;
  const uint4* qw = reinterpret_cast<const uint4*>(p.qweight);
  constexpr int kCpr = kRowTile / kSChunkCols;
  const int s_g = tid / kCpr;

  // Producer cursor: the tile and K block the next load_next() copies, and that tile's chunk
  // sources (v2's formulas, recomputed once per tile).
  int p_tile = blockIdx.x, p_kb = 0;
  uint32_t x_src[kXChunks], x_dst[kXChunks];
  bool x_ok[kXChunks];
  size_t w_src[kWChunksV2];
  bool w_ok[kWChunksV2];
  int s_col = 0;
  bool s_ok = false;
#pragma unroll
  for (int u = 0; u < kXChunks; u++) {
    const int i = u * kThreads + tid;
    const int r = i >> 3, c = i & 7;
    x_dst[u] = r * kBK + ((c ^ (r & 7)) << 4);
  }
  auto set_sources = [&](int tile) {
    int rt = 0, tt = 0;
    if (tile < tiles) tile_coords(tile, rt, tt);
    const int t0 = tt * kTokTile;
#pragma unroll
    for (int u = 0; u < kXChunks; u++) {
      const int i = u * kThreads + tid;
      const int r = i >> 3, c = i & 7;
      x_ok[u] = t0 + r < p.m;
      x_src[u] = x_ok[u] ? (uint32_t)((size_t)(t0 + r) * p.k + c * 16) : 0u;
    }
#pragma unroll
    for (int u = 0; u < kWChunksV2; u++) {
      const int i = u * kThreads + tid;
      const int strip = rt * (kRowTile / 8) + (i >> 5);
      w_ok[u] = strip * 8 < p.np;
      w_src[u] = w_ok[u] ? (size_t)strip * kblocks * 32 + (i & 31) : 0;
    }
    s_col = rt * kRowTile + (tid % kCpr) * kSChunkCols;
    s_ok = tid < kSChunks && s_col < p.np;
  };
  set_sources(p_tile);
  int p_idx = 0;  // flat blocks loaded (stage = p_idx % kStagesV3)
  // Copies the cursor's block into the next stage and advances the cursor; nothing past the
  // last tile. The caller commits.
  auto load_next = [&]() {
    if (p_tile < tiles) {
      const int kb = p_kb;
      uint8_t* s = smem + (p_idx % kStagesV3) * kStageBytesV2;
#pragma unroll
      for (int u = 0; u < kXChunks; u++)
        cp_async16(s + x_dst[u], p.x + x_src[u] + (x_ok[u] ? (size_t)kb * kBK : 0), x_ok[u]);
#pragma unroll
      for (int u = 0; u < kWChunksV2; u++)
        cp_async16(s + kXBytesV2 + (u * kThreads + tid) * 16, qw + w_src[u] + (w_ok[u] ? (size_t)kb * 32 : 0), w_ok[u]);
      if (SPG && tid < kSChunks)
        cp_async16(s + kXBytesV2 + kWBytesV2 + tid * 16,
                   s_ok ? gs + (size_t)(kb * gpk + s_g) * p.np + s_col : gs, s_ok);
      p_idx++;
      if (++p_kb == kblocks) {
        p_kb = 0;
        p_tile += gridDim.x;
        set_sources(p_tile);
      }
    }
  };

  using Acc = typename std::conditional<INT_SCALE, uint32_t, float>::type;
  Acc total[64];
  uint32_t part0[32], part1[32];
#pragma unroll
  for (int j = 0; j < 32; j++) part0[j] = part1[j] = 0;

  constexpr int kAhead = kStagesV3 - 2;
#pragma unroll
  for (int s = 0; s < kAhead; s++) {
    load_next();
    cp_async_commit();
  }

  const int w_off = kXBytesV2 + (wg * 8 + wq * 2) * 512 + lane * 16;
  const int s_off = kXBytesV2 + kWBytesV2 + (wg * 64 + wq * 16 + gid) * (int)sizeof(Scale);
  Scale pend0 = Scale(0), pend1 = Scale(0);
  bool pending = false;
  int c_idx = 0;  // flat blocks consumed

  // One K block (v3's body; the stage is the consumer's flat index).
  auto k_block = [&](const int kb, uint32_t (&a)[4][4]) {
    cp_async_wait<kAhead - 1>();
    fence_proxy_async();
    __syncthreads();  // flat block c_idx is in; every group of flat block c_idx - 2 is done
    load_next();      // into the stage of flat block c_idx - 2
    cp_async_commit();
    const uint8_t* st = smem + (c_idx % kStagesV3) * kStageBytesV2;
    c_idx++;
    const uint64_t desc0 = smem_desc_sw128(smem_u32(st));
    const uint64_t desc1 = desc0 + (uint64_t)(8192 >> 4);
    const uint4 w0v = *reinterpret_cast<const uint4*>(st + w_off);
    const uint4 w1v = *reinterpret_cast<const uint4*>(st + w_off + 512);
    Scale sc[4][2];
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
      if (SPG) {
        const Scale* srow = reinterpret_cast<const Scale*>(st + s_off) + g * kRowTile;
        sc[g][0] = srow[0];
        sc[g][1] = srow[8];
      } else {
        sc[g][0] = sc[g][1] = Scale(0);
      }
    }
    a_fragments(w0v, w1v, a);
    fence_a_fragments(a);
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part0[j]);
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < kSteps; j++) {
        const int s = g * kSteps + j;
        const int scale_d = SPG ? (j != 0) : (kb != 0 || s != 0);
        wgmma_m64n64k32_s8(part0, a[s], desc0 + (uint64_t)((s * 32) >> 4), scale_d);
      }
      wgmma_commit();
      wgmma_wait_1();
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part1[j]);
      if (SPG && pending) fold_half<INT_SCALE>(total, part1, 1, pend0, pend1);
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part1[j]);
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < kSteps; j++) {
        const int s = g * kSteps + j;
        const int scale_d = SPG ? (j != 0) : (kb != 0 || s != 0);
        wgmma_m64n64k32_s8(part1, a[s], desc1 + (uint64_t)((s * 32) >> 4), scale_d);
      }
      wgmma_commit();
      pend0 = sc[g][0];
      pend1 = sc[g][1];
      pending = true;
      wgmma_wait_1();
#pragma unroll
      for (int j = 0; j < 32; j++) fence_operand(part0[j]);
      if (SPG) fold_half<INT_SCALE>(total, part0, 0, sc[g][0], sc[g][1]);
    }
  };

  uint32_t a_even[4][4], a_odd[4][4];
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int rt = 0, tt = 0;
    tile_coords(tile, rt, tt);
    const int t0 = tt * kTokTile;
    const int row0 = rt * kRowTile + wg * 64 + wq * 16;
    const int c0 = row0 + gid;
    const bool ok0 = row0 < p.np, ok1 = row0 + 8 < p.np;
#pragma unroll
    for (int i = 0; i < 64; i++) total[i] = 0;
    pending = false;
    // Even/odd A arrays as v3 (the first block of a tile follows a wait_group 0: any array).
    for (int kb = 0; kb < kblocks; kb += 2) {
      k_block(kb, a_even);
      if (kb + 1 < kblocks) k_block(kb + 1, a_odd);
    }
    wgmma_wait_all();
#pragma unroll
    for (int j = 0; j < 32; j++) fence_operand(part1[j]);
#pragma unroll
    for (int j = 0; j < 32; j++) fence_operand(part0[j]);
    if (SPG && pending) fold_half<INT_SCALE>(total, part1, 1, pend0, pend1);

    if (!SPG) {
      Scale scc[2];
      channel_scales(p, c0, ok0, ok1, scc);
      scale_chain<INT_SCALE, 0>(total, part0, scc);
      scale_chain<INT_SCALE, 32>(total, part1, scc);
    }

    store_outputs<INT_SCALE>(p, total, c0, t0, tig);  // v2's epilogue
  }
  cp_async_wait<0>();
#else
  (void)p;
  __trap();
#endif
}

// ---------------------------------------------------------------- v4 ("wgmma_ws_r128t128_v4")
//
// v2's product, tile (128 weight rows × 128 tokens), raster, fold order and epilogue, with the
// CUTLASS "warp-specialized" structure written by hand (issues 12/14, NOTES.md "W4A8 prefill
// slower than FP16": v2 spends ~1650 cycles per K block where the tensor work is ~512, because
// every thread copies, every K block ends in a __syncthreads, and both warpgroups fold at once
// while the tensor pipe idles).
//   Block: 384 threads = 3 warpgroups. WG0 is the producer: setmaxnreg.dec to 40 registers, and
//   one thread (tid 0) issues every copy of every stage; its other 127 threads exit. WG1 and WG2
//   are the consumers (setmaxnreg.inc to 232): consumer c = WG(c+1) owns weight rows 64c..64c+63
//   of the tile × 128 tokens, exactly as v2's warpgroup c (so v2's A-fragment, fold and
//   epilogue formulas hold with wg = c). 128·40 + 256·232 = 64512 ≤ 65536 registers.
//   Stages: kStagesV4 = 8 of v2's 26 KB layout (X 16 KB swizzled, W 8 KB, scales 2 KB; 208 KB +
//   1 KB alignment slack + the barriers), each guarded by two mbarriers:
//     full[s]  (count 1): the producer's arrive.expect_tx(bytes issued for the stage); the TMA /
//              bulk copies' complete_tx. A consumer waits on it with parity (kb / S) & 1.
//     empty[s] (count 8): lane 0 of each of the 8 consumer warps arrives once its wgmmas that read
//              stage s are complete (its wait_group 0 after the block's last group) and its
//              ld.shared of the stage's W words and scales are done (one arrive per warp, not per
//              warpgroup: wgmma.wait_group synchronizes a warp, not the warpgroup, so each warp
//              vouches for itself). The producer waits on it with parity ((kb / S) & 1) ^ 1, so
//              the first wrap passes at once (a fresh mbarrier's "previous phase" counts as done).
//   No __syncthreads in the K loop: the only block-wide barrier is the one after mbarrier.init.
//   Copies (one thread, per stage):
//     X: cp.async.bulk.tensor.2d (TMA) over X [M, K] uint8, box 128 bytes of K × 128 tokens,
//        SWIZZLE_128B: chunk c of token row r lands at r·128 + ((c ^ r%8)·16) of the 1024-byte
//        aligned stage, the image v2's descriptor (smem_desc_sw128) reads. Tokens ≥ M are zero-
//        filled by the hardware, and the transaction still counts the whole box (16384 bytes).
//     W: one 2D TMA (no swizzle) over qweight seen as uint32 [Np/8 strips][K words] (strip s,
//        K block kb at byte (s·kblocks + kb)·512, docs/fastgemm-layout.md), box 128 words × 16
//        strips at (kb·128, 16·rt): the stage's W image, strip sl at stage + 16K + sl·512. Until
//        session 8 call 4 these were 16 one-dimensional 512-byte bulk copies per stage, and the one
//        producer thread starved the consumers (ncu: 45% long-scoreboard, i.e. barrier, stalls).
//        Strips past Np/8 are zero-filled by the TMA; they would only feed MMA rows ≥ Np ≥ N
//        anyway (an MMA row of D depends only on the same row of A, and the epilogue stores no
//        channel ≥ N). The box's 8 KB always count in expect_tx.
//     Scales (SPG > 0): one bulk copy per group row g of the K block: the tile's ncols valid
//        channels (ncols·sizeof(Scale) bytes: 256 for 128 int16, 512 for float) to
//        stage + 24K + g·128·sizeof(Scale), v2's layout. Np % 8 == 0 keeps sizes multiples of 16.
//     expect_tx = 16384 + 8192 + groups·ncols·sizeof(Scale), the bytes that land.
//   Consumers, per K block: wait full[s]; load the two W words and the scales from the stage
//   (v2's offsets); build all 16 A registers before the first wgmma.fence (v2: no injected
//   warpgroup.arrive); then per group g: [turn] wgmma chain into part, commit, [pass the turn],
//   wait_group 0, fold total += ŝ·part (v2's operations, same order: bit-exact).
//   The turn ("pingpong", CUTLASS's ordered sequence): the two consumers alternate their wgmma
//   issue per group with two named barriers (id 1: consumer 0 may issue; id 2: consumer 1 may
//   issue; 256 threads each: bar.arrive by the passing warpgroup, bar.sync by the waiting one).
//   Consumer 0 issues group t, passes to consumer 1, which issues its group t behind it on the
//   tensor pipe; consumer 0 waits for its own MMAs and folds while consumer 1's run, then issues
//   t+1, and so on: one warpgroup folds while the other's MMAs keep the pipe busy (at group 128:
//   4 wgmma m64n128k32 ≈ 256 tensor cycles per turn against a ~130-cycle fold).
//   Why pingpong and not two partial accumulators: two partials need 64·3 accumulator registers
//   plus two A sets (2·16) = 224 of the 232 before addresses, scales and the loop state: a spill
//   risk that cannot be checked here (nvcc 11.8 has no sm_90a ptxas); pingpong needs v2's
//   64 + 64 + 16 (~170 in all) and takes the fold off the critical path as long as one
//   warpgroup's group of MMAs outlasts the other's fold (groups of 64 and 128; at group 32 one
//   m64n128k32 is ~64 cycles, so the fold still shows, but less than in v2).
//   Turn bookkeeping: T = kblocks·groups turns per consumer; consumer 0 waits on id 1 before each
//   turn but its first (T − 1 waits) and arrives on id 2 after each (T arrives); consumer 1
//   waits on id 2 before each turn (T waits) and arrives on id 1 after each but its last (T − 1):
//   every bar.sync has exactly one matching bar.arrive, none is left pending at exit.
//   The producer exits after issuing its last stage without waiting for the consumers (no
//   cluster: the copies land in this CTA, which lives until the consumers finish).
// Limits: v2's, plus the tensor map's: x 16-byte aligned and K (the row pitch in bytes) a
// multiple of 16 (K % 128 == 0 implies it); M, K < 2³². The tensor map is encoded on the host per
// launch (cuTensorMapEncodeTiled through cudaGetDriverEntryPoint(ByVersion), no -lcuda) and passed
// as a __grid_constant__ parameter.
// Config 21 ("wgmma_ws_r128t128_v4c2", template CL = 2): the same kernel on 2-CTA clusters over
// pairs of row tiles sharing a token tile; each CTA TMA-multicasts half of the X tile to both
// (see the kernel's comments: empty barriers count both CTAs' warps, cluster barriers at start
// and end).
// Test: ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V4=1 odyssey-rt test gemm --configs wgmma_ws_r128t128_v4
// (=c2 and _v4c2 for config 21); ODYSSEY_WGMMA_V4=1 odyssey-rt test wgmma-probe ("wgmma-probe
// v4: ...", "v4c2: ..."); ODYSSEY_WGMMA_V4=1 bench gemm rows w4a8_{int,float}_wgmma4, _wgmma4c2
// (without ODYSSEY_WGMMA_V4 the unselected test/bench runs leave them out until they have run on
// a GPU); runtime/scripts/device-run.sh wgmma4 does all. Host check: emulate_wgmma (v4 copies,
// v4 ring for one CTA and for the cluster).
constexpr int kStagesV4 = 8;
constexpr int kThreadsV4 = 384;
constexpr int kBarOffV4 = kStagesV4 * kStageBytesV2;               // mbarriers after the stages
constexpr int kSmemBytesV4 = kBarOffV4 + 2 * kStagesV4 * 8 + 1024;  // + slack to align to 1024
static_assert(kSmemBytesV4 <= 227 * 1024, "v4 stages fit the opt-in shared memory of sm_90");
constexpr int kConsumerWarpsV4 = 8;  // empty[s]'s arrival count
constexpr uint32_t kBarTurn0 = 1, kBarTurn1 = 2;  // named barriers (0 is __syncthreads)

// mbarriers and 1-D bulk copies: bulk_copy.cuh (shared with the decode GEMV's bulk pipeline).
using bulk::bulk_load;
using bulk::global_ns;
using bulk::mbar_arrive;
using bulk::mbar_arrive_expect_tx;
using bulk::mbar_hang;
using bulk::mbar_init;
using bulk::mbar_init_fence;
using bulk::mbar_try_wait;
using bulk::mbar_wait;
// TMA 2D tile load (PTX ISA "cp.async.bulk.tensor"): box at coordinates (c0 = K byte, c1 = token)
// of the tensor map into shared memory at dst; completion is counted on mbarrier bar in bytes.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void* tmap, int c0, int c1, uint32_t bar) {
#if ODY_WGMMA_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tmap)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
#else
  (void)dst, (void)tmap, (void)c0, (void)c1, (void)bar;
#endif
}
// ---- config 21 (v4 on a 2-CTA cluster, X multicast): the cluster pieces (PTX ISA "Cluster").
// This CTA's rank in its cluster (%cluster_ctarank).
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r = 0;
#if ODY_WGMMA_DEVICE
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return r;
}
// Arrives on the mbarrier at the same shared offset in CTA `cta` of the cluster (mapa gives its
// shared::cluster address; PTX ISA "mapa", "mbarrier.arrive" with .shared::cluster: release,
// cluster scope by default for a remote barrier).
__device__ __forceinline__ void mbar_arrive_cluster(uint32_t addr, uint32_t cta) {
#if ODY_WGMMA_DEVICE
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(addr),
      "r"(cta)
      : "memory");
#else
  (void)addr, (void)cta;
#endif
}
// TMA 2D tile load multicast to the CTAs of `mask` (PTX ISA "cp.async.bulk.tensor",
// .multicast::cluster): the box lands at the same shared offset in each of them, and each one's
// mbarrier at bar's offset counts the box's bytes.
__device__ __forceinline__ void tma_load_2d_mc(uint32_t dst, const void* tmap, int c0, int c1, uint32_t bar,
                                               uint16_t mask) {
#if ODY_WGMMA_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tmap)), "r"(c0), "r"(c1), "r"(bar), "h"(mask)
      : "memory");
#else
  (void)dst, (void)tmap, (void)c0, (void)c1, (void)bar, (void)mask;
#endif
}
// Cluster-wide barrier of every non-exited thread (PTX ISA "barrier.cluster"; not .aligned: the
// producer's lane 0 reaches it from its loop, its other lanes directly).
__device__ __forceinline__ void cluster_sync() {
#if ODY_WGMMA_DEVICE
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
#endif
}
// setmaxnreg (PTX ISA "setmaxnreg"): the warpgroup releases registers down to N / asks for N.
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
#if ODY_WGMMA_DEVICE
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
#if ODY_WGMMA_DEVICE
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
// Named barriers (PTX ISA "bar/barrier"): bar.sync waits until `count` threads have arrived at
// barrier id (itself included); bar.arrive counts this thread without waiting.
__device__ __forceinline__ void named_sync(uint32_t id, uint32_t count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_arrive(uint32_t id, uint32_t count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// ---------------------------------------------------------------- v5 ("wgmma_ws_r128t128_v5")
//
// v4 on a persistent grid (issue 12): min(tiles, SMs) blocks of v4's 384 threads (one fits per
// SM: 209 KB of shared memory), block b taking tiles b, b + grid, ... of v4's raster
// (wgmma_sched.hpp: at any moment the blocks work on ~grid consecutive tiles, v4's L2 locality).
// Why: ncu on v4 (4096² M = 4096) shows 44.5k cycles per tile where the MMAs need ~16.4k, one
// block per SM and 7.76 waves. Per tile v4 pays a block launch, mbarrier init, setmaxnreg, the
// ring's fill (the first K block's TMA latency, ~1–2 µs, with the tensor pipe idle) and the
// epilogue with nothing else to do. (The last partial wave stays: 1024 tiles on 132 SMs are 8
// tiles for some blocks and 7 for others in v5 too; only split-K/stream-K would even that.)
// In v5 the producer's
// ring (stage s, phase) runs on from one tile's last K block to the next tile's first, so the
// next tile's first 8 stages are in flight while the consumers fold and store the current one;
// the consumers' pingpong turns are counted over all the block's tiles (v4's bookkeeping with
// T = tiles · kblocks · groups), so the two warpgroups keep alternating across tile boundaries.
// Everything else (copies, A fragments, fold order, store_tile) is v4's code (one kernel
// template: PERSIST = true): bit-exact against the same reference.
// What it does not do yet: overlap one consumer's epilogue with the other's next-tile MMAs (the
// pingpong makes consumer 1 wait for consumer 0's first group of the next tile, which comes after
// consumer 0's epilogue), nor coalesce the epilogue's 2-byte transposed stores.
// Test: ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V5=1 odyssey-rt test gemm --configs wgmma_ws_r128t128_v5;
// ODYSSEY_WGMMA_V5=1 odyssey-rt test wgmma-probe ("wgmma-probe v5: ..."); ODYSSEY_WGMMA_V5=1
// bench gemm rows w4a8_{int,float}_wgmma5; runtime/scripts/device-run.sh wgmma5 does all (with
// the diagnostic rows below). Host check: emulate_wgmma ("v5 schedule", "v5 ring").

// ---- diagnostics (issue 12, "where do v4's cycles go"; bench only, results wrong by design)
// DIAG (a template parameter, 0 in every kernel that test/dispatch can reach) removes one part of
// the kernel and keeps the rest, so that the time it saves is that part's cost on the critical
// path (fastgemm.hpp kSm90Diag*): nofold (no total += ŝ·part), noturn (no pingpong named
// barriers: both consumers issue at will), nowait (the producer copies nothing; the consumers
// neither wait for full stages nor release them: MMAs on whatever the stages hold, i.e. no
// memory pipeline at all), nomma (no wgmma.mma_async: fence, commit and wait_group stay), noepi
// (no epilogue stores: the totals go to a sink that never stores), mmaonly (nofold + noturn +
// nowait + noepi: the tensor pipe's own ceiling with this issue pattern), clock (the full
// kernel, plus %clock deltas per phase summed into Sm90Params::diag_clk; slots below), prefetch
// (not a removal but a what-if: the next K block's stage wait and W/scale reads under the
// current MMAs; correct results, but only ever timed), ss and mmaonly-ss (the MMAs in the SS form,
// A from the X stage instead of registers: is the RS form's rate the limit?).
// Only instantiated for integer scales, group 128 (SPG = 4), one CTA (CL = 1), v4 and v5.
// diag_clk slots (unsigned long long, zeroed by the caller, atomicAdd per block): consumer c
// (0, 1; its warp 0 lane 0) at 8·c + phase: 0 full-stage wait, 1 stage reads + A build, 2 turn
// wait (bar.sync), 3 wgmma issue (fence → commit → pass the turn), 4 wgmma.wait_group, 5 release
// + fold, 6 epilogue, 7 whole consumer (after setmaxnreg to the end); 16 the producer's empty
// waits, 17 its whole loop; 18 blocks. Divide by the tile count for cycles per tile.
static_assert(kSm90DiagClkSlots == 19, "diag_clk slots: 2 consumers × 8, producer wait and loop, blocks");
// %clock (PTX ISA "Special Registers"): the SM's 32-bit cycle counter; a tile is < 2³² cycles.
__device__ __forceinline__ uint32_t clk32() {
  uint32_t c = 0;
#if ODY_WGMMA_DEVICE
  asm volatile("mov.u32 %0, %%clock;" : "=r"(c)::"memory");
#endif
  return c;
}
#if ODY_WGMMA_DEVICE  // (only the kernel's sm_90a body uses them)
__device__ __forceinline__ uint32_t acc_bits(uint32_t v) { return v; }
__device__ __forceinline__ uint32_t acc_bits(float v) { return __float_as_uint(v); }
#endif

// The v4 kernel, and v5 (PERSIST: "wgmma_ws_r128t128_v5", see "v5" above launch_one): the same
// code with the tile loop of a persistent grid around the consumers' and the producer's K loops.
template <int SPG, bool INT_SCALE, int CL, int DIAG, bool PERSIST>
__global__ void __launch_bounds__(kThreadsV4, 1)
    w4a8_wgmma_v4_kernel(const Sm90Params p, const __grid_constant__ TmaMap2D xmap,
                         const __grid_constant__ TmaMap2D wmap) {
#if ODY_WGMMA_DEVICE
  static_assert(CL == 1 || CL == 2, "v4: one CTA, or a 2-CTA cluster (config 21)");
  static_assert(CL == 1 || (!PERSIST && DIAG == 0), "v5 and the diagnostic variants: one CTA per tile group");
  constexpr bool kNoFold = (DIAG & kSm90DiagNoFold) != 0, kNoTurn = (DIAG & kSm90DiagNoTurn) != 0,
                 kNoWait = (DIAG & kSm90DiagNoWait) != 0, kNoMma = (DIAG & kSm90DiagNoMma) != 0,
                 kNoEpi = (DIAG & kSm90DiagNoEpi) != 0, kClock = (DIAG & kSm90DiagClock) != 0,
                 kPrefetch = (DIAG & kSm90DiagPrefetch) != 0, kSsA = (DIAG & kSm90DiagSsA) != 0;
  using Scale = typename std::conditional<INT_SCALE, int16_t, float>::type;
  constexpr int kGroups = SPG ? 4 / SPG : 1;
  constexpr int kSteps = SPG ? SPG : 4;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t sbase = (smem_u32(smem_raw) + 1023u) & ~1023u;
  uint8_t* smem = smem_raw + (sbase - smem_u32(smem_raw));
  const uint32_t full0 = sbase + kBarOffV4, empty0 = full0 + kStagesV4 * 8;  // mbarrier s at + 8·s

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // v2's raster (wgmma_sched.hpp); with a cluster (CL = 2), over pairs of row tiles: CTA rank r
  // of pair q takes row tile CL·q + r and both take the same token tile (the X tile they share).
  // A rank whose row tile is past the last (odd tile count) still copies and receives its X
  // halves (its partner needs them) but its weight rows are all ≥ Np: nothing copied, nothing
  // stored. v4: one tile per block (tile index blockIdx.x); v5: tiles blockIdx.x + j·gridDim.x.
  const int rank = CL == 2 ? (int)cluster_rank() : 0;
  const int tiles_r = (p.np + kRowTile - 1) / kRowTile;
  const int tiles_q = (tiles_r + CL - 1) / CL;  // row tiles (CL = 1) or pairs of them
  const int tiles_t = (p.m + kTokTile - 1) / kTokTile;
  const int my_tiles = PERSIST ? wgmma_sched::tiles_of_block((int)blockIdx.x, (int)gridDim.x, tiles_q * tiles_t) : 1;
  auto tile_at = [&](int j) {  // this block's j-th tile: (row tile, first token)
    const int i = PERSIST ? (int)blockIdx.x + j * (int)gridDim.x : (int)blockIdx.x / CL;
    const wgmma_sched::Tile q = wgmma_sched::raster_tile(i, tiles_q, tiles_t, kRaster / CL);
    return wgmma_sched::Tile{q.rt * CL + rank, q.tt * kTokTile};
  };
  const int kblocks = p.k / kBK;
  const int gpk = SPG ? kGroups : 0;
  const Scale* gs = static_cast<const Scale*>(p.group_scale);

  if (tid == 0) {
#pragma unroll 1
    for (int s = 0; s < kStagesV4; s++) {
      mbar_init(full0 + 8 * s, 1);
      mbar_init(empty0 + 8 * s, kConsumerWarpsV4 * CL);  // with a cluster: both CTAs' consumers
    }
    mbar_init_fence();
  }
  // The barriers exist before any role uses them (the last block-wide barrier); with a cluster,
  // in both CTAs before either multicasts into the other or arrives on its barriers.
  if (CL == 2)
    cluster_sync();
  else
    __syncthreads();

  if (warp < 4) {
    // ---- producer warpgroup
    setmaxnreg_dec<40>();
    if (tid == 0) {
      uint32_t ck_wait = 0, ck_t = 0;
      const uint32_t ck_start = kClock ? clk32() : 0u;
      // The ring's stage and phase run on across this block's tiles (v5): the next tile's first
      // stages are copied while the consumers still compute (and store) the current one.
      int s = 0;
      uint32_t phase = 0;
#pragma unroll 1
      for (int j = 0; j < (kNoWait ? 0 : my_tiles); j++) {
        const wgmma_sched::Tile tl = tile_at(j);
        const int rt = tl.rt, t0 = tl.tt;
        const int ncols = max(0, min(kRowTile, p.np - rt * kRowTile));
        // W's box counts all 16 strips' 8 KB even where strips ≥ Np/8 are out of the tensor (the
        // TMA zero-fills them and still counts the whole box).
        const uint32_t tx = (uint32_t)(kXBytesV2 + kWBytesV2 + (SPG ? kGroups * ncols * (int)sizeof(Scale) : 0));
#pragma unroll 1
        for (int kb = 0; kb < kblocks; kb++) {
          // Every consumer warp that reads this stage released its last use (with a cluster: the
          // partner's too, since this CTA's X half lands in the partner's stage as well).
          if (kClock) ck_t = clk32();
          mbar_wait(empty0 + 8 * s, phase ^ 1);
          if (kClock) ck_wait += clk32() - ck_t;
          const uint32_t st = sbase + s * kStageBytesV2, full = full0 + 8 * s;
          // The whole X tile is expected even with a cluster: half from this CTA's copy, half from
          // the partner's multicast (which may land before this expect_tx: the phase cannot
          // complete before this thread's arrival, and the transaction count may dip below 0).
          mbar_arrive_expect_tx(full, tx);
          if (CL == 2)  // tokens 64·rank.. of the tile, to both CTAs (box 128 B × 64 tokens)
            tma_load_2d_mc(st + rank * (kXBytesV2 / 2), &xmap, kb * kBK, t0 + rank * (kTokTile / 2), full, (uint16_t)0x3);
          else
            tma_load_2d(st, &xmap, kb * kBK, t0, full);
          // W: one 2D TMA of the tile's 16 strips × this K block's 512 bytes (session 8 call 4: with
          // 16 one-dimensional 512-byte bulk copies per stage the single producer thread starved
          // the consumers: 45% of their stalls were barrier waits, "long scoreboard").
          tma_load_2d(st + kXBytesV2, &wmap, kb * (512 / 4), rt * (kRowTile / 8), full);  // (word, strip)
          if (SPG && ncols > 0) {
#pragma unroll
            for (int g = 0; g < kGroups; g++)
              bulk_load(st + kXBytesV2 + kWBytesV2 + g * kRowTile * (int)sizeof(Scale),
                        gs + (size_t)(kb * gpk + g) * p.np + rt * kRowTile, (uint32_t)(ncols * (int)sizeof(Scale)), full);
          }
          if (++s == kStagesV4) {
            s = 0;
            phase ^= 1;
          }
        }
      }
      if (kClock) {
        atomicAdd(p.diag_clk + 16, (unsigned long long)ck_wait);
        atomicAdd(p.diag_clk + 17, (unsigned long long)(clk32() - ck_start));
        atomicAdd(p.diag_clk + 18, 1ull);
      }
    }
    // One CTA: the producer's threads exit (the copies land in this CTA, which lives until its
    // consumers are done). A cluster: the partner's consumers arrive on this CTA's empty
    // barriers until their last K block, so no thread leaves before the final cluster barrier.
    if (CL == 2) cluster_sync();
    return;
  }

  // ---- consumer warpgroups: c = 0 (WG1) and 1 (WG2), v2's warpgroups 0 and 1.
  setmaxnreg_inc<232>();
  const int wg = (warp >> 2) - 1, wq = warp & 3;
  const int gid = lane >> 2, tig = lane & 3;
  const int w_off = kXBytesV2 + (wg * 8 + wq * 2) * 512 + lane * 16;
  const int s_off = kXBytesV2 + kWBytesV2 + (wg * 64 + wq * 16 + gid) * (int)sizeof(Scale);
  const uint32_t my_turn = wg == 0 ? kBarTurn0 : kBarTurn1, next_turn = wg == 0 ? kBarTurn1 : kBarTurn0;
  // Turns are counted over all of this block's tiles (v5): the pingpong runs on from one tile to
  // the next, so v4's bookkeeping (consumer 0 skips its first wait, consumer 1 its last arrive)
  // holds with T = tiles · kblocks · groups.
  const int turns = my_tiles * kblocks * kGroups;

  using Acc = typename std::conditional<INT_SCALE, uint32_t, float>::type;
  Acc total[64];
  uint32_t part[64];
#pragma unroll
  for (int i = 0; i < 64; i++) part[i] = 0;

  // This thread's two W words and its scales of stage si (v2's offsets).
  auto read_stage = [&](int si, uint4& w0, uint4& w1, Scale (&scv)[4][2]) {
    const uint8_t* st = smem + si * kStageBytesV2;
    w0 = *reinterpret_cast<const uint4*>(st + w_off);
    w1 = *reinterpret_cast<const uint4*>(st + w_off + 512);
#pragma unroll
    for (int g = 0; g < kGroups; g++) {
      if (SPG) {
        const Scale* srow = reinterpret_cast<const Scale*>(st + s_off) + g * kRowTile;
        scv[g][0] = srow[0];
        scv[g][1] = srow[8];
      } else {
        scv[g][0] = scv[g][1] = Scale(0);
      }
    }
  };
  uint32_t ck[7] = {0, 0, 0, 0, 0, 0, 0}, ck_t = 0;
  const uint32_t ck_start = kClock ? clk32() : 0u;
  int s = 0;
  uint32_t phase = 0;
  int turn = 0;
  // kPrefetch (diag "prefetch"): the next K block's full-stage wait and its W/scale reads move
  // under the current block's MMAs (after the last group's issue, before its wait_group), so
  // only the A build and the fold stay between a consumer's wait_group and its next issue. Plain
  // registers, not wgmma operands: the MMAs in flight read the previous a[][]. Same arithmetic.
  uint4 pw0 = make_uint4(0, 0, 0, 0), pw1 = pw0;
  Scale psc[4][2] = {};
  if (kPrefetch && my_tiles > 0) {
    mbar_wait(full0, 0);
    __syncwarp();
    read_stage(0, pw0, pw1, psc);
  }
#pragma unroll 1
  for (int j = 0; j < my_tiles; j++) {
    const wgmma_sched::Tile tl = tile_at(j);
    const int rt = tl.rt, t0 = tl.tt;
    const int row0 = rt * kRowTile + wg * 64 + wq * 16;
    const int c0 = row0 + gid;
    const bool ok0 = row0 < p.np, ok1 = row0 + 8 < p.np;
#pragma unroll
    for (int i = 0; i < 64; i++) total[i] = 0;
#pragma unroll 1
    for (int kb = 0; kb < kblocks; kb++) {
      if (kClock) ck_t = clk32();
      // Stage s holds K block kb (X, W and scales); with kPrefetch, waited for under the last MMAs.
      if (!kNoWait && !kPrefetch) mbar_wait(full0 + 8 * s, phase);
      __syncwarp();  // the warp reconverges before the .aligned wgmma ops
      if (kClock) {
        const uint32_t t = clk32();
        ck[0] += t - ck_t;
        ck_t = t;
      }
      const uint64_t desc0 = smem_desc_sw128(sbase + s * kStageBytesV2);
      uint4 w0v, w1v;
      Scale sc[4][2];
      if (kPrefetch) {  // read while the previous K block's MMAs ran (below)
        w0v = pw0;
        w1v = pw1;
#pragma unroll
        for (int g = 0; g < kGroups; g++) sc[g][0] = psc[g][0], sc[g][1] = psc[g][1];
      } else {
        read_stage(s, w0v, w1v, sc);
      }
      uint32_t a[4][4];
      a_fragments(w0v, w1v, a);
      fence_a_fragments(a);
      if (kClock) {
        const uint32_t t = clk32();
        ck[1] += t - ck_t;
        ck_t = t;
      }

#pragma unroll
      for (int g = 0; g < kGroups; g++) {
        if (!kNoTurn && (wg == 1 || turn > 0)) named_sync(my_turn, 256);  // the other consumer has issued its group
        if (kClock) {
          const uint32_t t = clk32();
          ck[2] += t - ck_t;
          ck_t = t;
        }
#pragma unroll
        for (int i = 0; i < 64; i++) fence_operand(part[i]);
        wgmma_fence();
#pragma unroll
        for (int jj = 0; jj < kSteps; jj++) {
          const int k4 = g * kSteps + jj;
          const int scale_d = SPG ? (jj != 0) : (kb != 0 || k4 != 0);
          if (kSsA)  // diag "ss": A = this warpgroup's 64 rows of the X stage (timing only)
            wgmma_m64n128k32_s8_ss(part, desc0 + (uint64_t)((wg * 8192 + k4 * 32) >> 4),
                                   desc0 + (uint64_t)((k4 * 32) >> 4), scale_d);
          else if (!kNoMma)
            wgmma_m64n128k32_s8(part, a[k4], desc0 + (uint64_t)((k4 * 32) >> 4), scale_d);
        }
        wgmma_commit();
        if (!kNoTurn && (wg == 0 || turn + 1 < turns)) named_arrive(next_turn, 256);  // its turn to issue
        turn++;
        if (kPrefetch && g == kGroups - 1 && (kb + 1 < kblocks || j + 1 < my_tiles)) {
          const int s2 = s + 1 == kStagesV4 ? 0 : s + 1;
          mbar_wait(full0 + 8 * s2, s + 1 == kStagesV4 ? phase ^ 1 : phase);
          __syncwarp();
          read_stage(s2, pw0, pw1, psc);
        }
        if (kClock) {
          const uint32_t t = clk32();
          ck[3] += t - ck_t;
          ck_t = t;
        }
        wgmma_wait_all();
#pragma unroll
        for (int i = 0; i < 64; i++) fence_operand(part[i]);
        if (kClock) {
          const uint32_t t = clk32();
          ck[4] += t - ck_t;
          ck_t = t;
        }
        if (g == kGroups - 1 && !kNoWait) {
          // Every wgmma of this warp that read stage s is complete and its W/scale loads are done
          // (the asm "memory" clobbers keep them above): release the stage to the producer, and
          // with a cluster to the partner's producer too (its X half lands in this stage).
          __syncwarp();
          if (lane == 0) {
            mbar_arrive(empty0 + 8 * s);
            if (CL == 2) mbar_arrive_cluster(empty0 + 8 * s, (uint32_t)(rank ^ 1));
          }
        }
        if (SPG && !kNoFold) {
          if constexpr (INT_SCALE) {
            const uint32_t s_lo = (uint32_t)(int32_t)sc[g][0], s_hi = (uint32_t)(int32_t)sc[g][1];
#pragma unroll
            for (int i = 0; i < 64; i++) total[i] += ((i >> 1) & 1 ? s_hi : s_lo) * part[i];
          } else {
            const float s_lo = sc[g][0] * 0.0625f, s_hi = sc[g][1] * 0.0625f;
#pragma unroll
            for (int i = 0; i < 64; i++)
              total[i] = __fadd_rn(total[i], __fmul_rn(__int2float_rn((int32_t)part[i]), (i >> 1) & 1 ? s_hi : s_lo));
          }
        }
        if (kClock) {
          const uint32_t t = clk32();
          ck[5] += t - ck_t;
          ck_t = t;
        }
      }
      if (++s == kStagesV4) {
        s = 0;
        phase ^= 1;
      }
    }

    if (!kNoEpi) {
      store_tile<SPG, INT_SCALE>(p, total, part, c0, t0, tig, ok0, ok1);  // v2's per-channel scaling and epilogue
    } else {
      // A sink the compiler cannot drop (M is never negative): the fold stays, the stores go.
      uint32_t x = 0;
#pragma unroll
      for (int i = 0; i < 64; i++) x ^= acc_bits(total[i]) ^ part[i];
      if (p.m < 0) static_cast<uint32_t*>(p.y)[tid] = x;
    }
    if (kClock) {
      const uint32_t t = clk32();
      ck[6] += t - ck_t;
      ck_t = t;
    }
  }
  if (kClock && (tid & 127) == 0) {
#pragma unroll
    for (int i = 0; i < 7; i++) atomicAdd(p.diag_clk + 8 * wg + i, (unsigned long long)ck[i]);
    atomicAdd(p.diag_clk + 8 * wg + 7, (unsigned long long)(clk32() - ck_start));
  }
  if (CL == 2) cluster_sync();  // the partner may still arrive on this CTA's empty barriers until here
#else
  (void)p, (void)xmap, (void)mbar_init, (void)mbar_init_fence, (void)mbar_arrive_expect_tx, (void)mbar_arrive,
      (void)mbar_wait, (void)mbar_try_wait, (void)global_ns, (void)mbar_hang, (void)tma_load_2d, (void)bulk_load,
      (void)named_sync, (void)named_arrive, (void)cluster_rank, (void)mbar_arrive_cluster, (void)tma_load_2d_mc,
      (void)cluster_sync, (void)clk32, (void)wgmma_m64n128k32_s8_ss;
  __trap();
#endif
}

// The X tensor map, encoded on the host. nvcc 11.8's headers have no CUtensorMap, so this is
// CUDA 12's cuda.h, restated: `typedef struct CUtensorMap_st { alignas(64) cuuint64_t
// opaque[16]; } CUtensorMap;` (128 bytes, 64-byte aligned) and
//   CUresult cuTensorMapEncodeTiled(CUtensorMap* tensorMap, CUtensorMapDataType tensorDataType,
//     cuuint32_t tensorRank, void* globalAddress, const cuuint64_t* globalDim,
//     const cuuint64_t* globalStrides, const cuuint32_t* boxDim, const cuuint32_t* elementStrides,
//     CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
//     CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill);
// with the enum values CU_TENSOR_MAP_DATA_TYPE_UINT8 = 0, CU_TENSOR_MAP_DATA_TYPE_UINT32 = 2,
// CU_TENSOR_MAP_INTERLEAVE_NONE = 0, CU_TENSOR_MAP_SWIZZLE_NONE = 0, CU_TENSOR_MAP_SWIZZLE_128B = 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B = 2,
// CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0 (out-of-bound elements read as zero), CUDA_SUCCESS = 0
// (cuda.h, CUDA 12.0+; the same values in e.g. tilelang's and NVIDIA's ctypes bindings).
using EncodeTiledFn = int (*)(TmaMap2D*, int, uint32_t, void*, const uint64_t*, const uint64_t*, const uint32_t*,
                              const uint32_t*, int, int, int, int);
constexpr int kTmaUint8 = 0, kTmaUint32 = 2, kTmaInterleaveNone = 0, kTmaSwizzleNone = 0, kTmaSwizzle128B = 3,
              kTmaL2Promo128B = 2, kTmaOobZero = 0;

// cuTensorMapEncodeTiled from the driver the runtime uses (no -lcuda). CUDA 13 dropped the
// unversioned cudaGetDriverEntryPoint's usefulness (it asks for the runtime's own version of the
// symbol); from 12.5 the ByVersion form asks for the 12.0 ABI explicitly.
EncodeTiledFn encode_tiled_fn() {
  static EncodeTiledFn fn = [] {
    void* f = nullptr;
#if CUDART_VERSION >= 12050
    cudaDriverEntryPointQueryResult q{};
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q);
    if (q != cudaDriverEntryPointSuccess) e = cudaErrorNotSupported;
#elif CUDART_VERSION >= 12000
    cudaDriverEntryPointQueryResult q{};
    cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q);
    if (q != cudaDriverEntryPointSuccess) e = cudaErrorNotSupported;
#else
    cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault);  // syntax check only
#endif
    if (e != cudaSuccess) {
      cudaGetLastError();
      f = nullptr;
    }
    return reinterpret_cast<EncodeTiledFn>(f);
  }();
  return fn;
}

// X [M, K] uint8 row-major as a 2D tensor (dim 0 = K bytes, dim 1 = tokens, row pitch K bytes),
// box 128 × 128 with the 128-byte swizzle. Errors come back as a message (the caller fails with it).
// box_tokens: 128 (v4) or 64 (config 21: each CTA of the pair copies half the tile).
bool encode_x_map(const Sm90Params& p, int box_tokens, TmaMap2D* map, std::string* why) {
  if (reinterpret_cast<uintptr_t>(p.x) % 16 != 0) {
    *why = "w4a8: wgmma_ws_r128t128_v4(c2) needs x 16-byte aligned (TMA)";
    return false;
  }
  if (p.k % 16 != 0) {
    *why = "w4a8: wgmma_ws_r128t128_v4(c2) needs K (x's row pitch in bytes) a multiple of 16 (TMA)";
    return false;
  }
  const EncodeTiledFn fn = encode_tiled_fn();
  if (!fn) {
    *why = "w4a8: wgmma_ws_r128t128_v4(c2): the driver has no cuTensorMapEncodeTiled";
    return false;
  }
  const uint64_t dims[2] = {(uint64_t)p.k, (uint64_t)p.m};
  const uint64_t strides[1] = {(uint64_t)p.k};  // bytes between tokens (dim 0's stride is the element)
  const uint32_t box[2] = {(uint32_t)kBK, (uint32_t)box_tokens};
  const uint32_t estrides[2] = {1, 1};
  const int r = fn(map, kTmaUint8, 2, const_cast<int8_t*>(p.x), dims, strides, box, estrides, kTmaInterleaveNone,
                   kTmaSwizzle128B, kTmaL2Promo128B, kTmaOobZero);
  if (r != 0) {
    *why = "w4a8: wgmma_ws_r128t128_v4(c2): cuTensorMapEncodeTiled failed (CUresult " + std::to_string(r) + ")";
    return false;
  }
  return true;
}

// The packed weights as a 2D tensor of uint32: dim 0 = one strip's words over K (K/128 blocks ×
// 512 bytes = K words), dim 1 = strips (Np/8), row pitch K·4 bytes (docs/fastgemm-layout.md:
// strip s, K block kb at byte (s·kblocks + kb)·512). Box 128 words × 16 strips = the 16 × 512-byte
// W image of a v2/v4 stage (no swizzle); strips past Np/8 are zero-filled.
bool encode_w_map(const Sm90Params& p, TmaMap2D* map, std::string* why) {
  if (reinterpret_cast<uintptr_t>(p.qweight) % 16 != 0) {
    *why = "w4a8: wgmma_ws_r128t128_v4(c2) needs qweight 16-byte aligned (TMA)";
    return false;
  }
  const EncodeTiledFn fn = encode_tiled_fn();
  if (!fn) {
    *why = "w4a8: wgmma_ws_r128t128_v4(c2): the driver has no cuTensorMapEncodeTiled";
    return false;
  }
  const uint64_t dims[2] = {(uint64_t)p.k, (uint64_t)(p.np / 8)};
  const uint64_t strides[1] = {(uint64_t)p.k * 4};
  const uint32_t box[2] = {(uint32_t)kBK, (uint32_t)(kRowTile / 8)};
  const uint32_t estrides[2] = {1, 1};
  const int r = fn(map, kTmaUint32, 2, const_cast<uint8_t*>(p.qweight), dims, strides, box, estrides, kTmaInterleaveNone,
                   kTmaSwizzleNone, kTmaL2Promo128B, kTmaOobZero);
  if (r != 0) {
    *why = "w4a8: wgmma_ws_r128t128_v4(c2): cuTensorMapEncodeTiled (weights) failed (CUresult " + std::to_string(r) + ")";
    return false;
  }
  return true;
}

// v4 (config 20), v4c2 (21), v5 (22) and the diagnostic variants: raises the dynamic shared-memory
// limit once per instantiation, then launches (v5: min(tiles, SMs) persistent blocks; one fits per
// SM: 209 KB of shared memory).
template <int SPG, bool INT, int CL, int DIAG, bool PERSIST>
cudaError_t launch_ws(const Sm90Params& p, const TmaMap2D* maps, long long tiles, cudaStream_t s) {
  // Once per instantiation, thread-safe (a function-local static's initializer runs once even
  // when several threads launch at once, e.g. the tensor-parallel ranks of one process).
  static const cudaError_t attr = cudaFuncSetAttribute(w4a8_wgmma_v4_kernel<SPG, INT, CL, DIAG, PERSIST>,
                                                       cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytesV4);
  if (attr != cudaSuccess) return attr;
  if (CL == 2) {  // clusters of 2 CTAs along the row tiles (an odd last one padded: see the kernel)
    const long long pairs = (long long)((p.np + 2 * kRowTile - 1) / (2 * kRowTile)) * ((p.m + kTokTile - 1) / kTokTile);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3((unsigned)(2 * pairs));
    cfg.blockDim = dim3(kThreadsV4);
    cfg.dynamicSmemBytes = kSmemBytesV4;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = 2;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, w4a8_wgmma_v4_kernel<SPG, INT, CL, DIAG, PERSIST>, p, maps[0], maps[1]);
  }
  // 3 warpgroups: producer + 2 consumers; the tensor maps by value (__grid_constant__)
  const unsigned grid = (unsigned)(PERSIST ? std::min<long long>(tiles, device_sms()) : tiles);
  w4a8_wgmma_v4_kernel<SPG, INT, CL, DIAG, PERSIST><<<grid, kThreadsV4, kSmemBytesV4, s>>>(p, maps[0], maps[1]);
  return cudaGetLastError();
}

// The diagnostic variants (p.diag ≠ 0): v4 (version 5) or v5 (version 7), integer scales,
// group 128 only (launch_w4a8_sm90 checked it).
template <int SPG, bool INT>
cudaError_t launch_diag(const Sm90Params& p, const TmaMap2D* maps, long long tiles, cudaStream_t s) {
  if constexpr (SPG == 4 && INT) {
    const bool v5 = p.version == 7;
#define ODY_DIAG_CASE(D) \
  case D:                \
    return v5 ? launch_ws<4, true, 1, D, true>(p, maps, tiles, s) : launch_ws<4, true, 1, D, false>(p, maps, tiles, s);
    switch (p.diag) {
      ODY_DIAG_CASE(kSm90DiagNoFold)
      ODY_DIAG_CASE(kSm90DiagNoTurn)
      ODY_DIAG_CASE(kSm90DiagNoWait)
      ODY_DIAG_CASE(kSm90DiagNoMma)
      ODY_DIAG_CASE(kSm90DiagNoEpi)
      ODY_DIAG_CASE(kSm90DiagMmaOnly)
      ODY_DIAG_CASE(kSm90DiagClock)
      ODY_DIAG_CASE(kSm90DiagPrefetch)
      ODY_DIAG_CASE(kSm90DiagSsA)
      ODY_DIAG_CASE(kSm90DiagMmaOnly | kSm90DiagSsA)
      default: break;
    }
#undef ODY_DIAG_CASE
  }
  (void)p, (void)maps, (void)tiles, (void)s;
  return cudaErrorInvalidValue;
}

template <int SPG, bool INT>
cudaError_t launch_one(const Sm90Params& p, const TmaMap2D* maps, cudaStream_t s) {  // maps: v4/v5's X, W
  // Raise the dynamic shared-memory limit once per instantiation (v1, v2, v3, v3p apart; the
  // warp-specialized kernels in launch_ws).
  static bool attr[4] = {false, false, false, false};
  static std::mutex attr_mu;  // the tensor-parallel ranks of one process launch from several threads
  const int v = p.version - 1;  // 0: v1, 1: v2, 2: v3, 3: v3p, 4: v4, 5: v4 on a 2-CTA cluster, 6: v5
  if (v < 0 || v > 6) return cudaErrorInvalidValue;
  const long long tiles = (long long)((p.np + kRowTile - 1) / kRowTile) * ((p.m + kTokTile - 1) / kTokTile);
  if (p.diag) return (v == 4 || v == 6) ? launch_diag<SPG, INT>(p, maps, tiles, s) : cudaErrorInvalidValue;
  if (v == 6) return launch_ws<SPG, INT, 1, 0, true>(p, maps, tiles, s);
  if (v == 5) return launch_ws<SPG, INT, 2, 0, false>(p, maps, tiles, s);
  if (v == 4) return launch_ws<SPG, INT, 1, 0, false>(p, maps, tiles, s);
  std::unique_lock<std::mutex> attr_lock(attr_mu);
  if (!attr[v]) {
    cudaError_t e =
          v == 3 ? cudaFuncSetAttribute(w4a8_wgmma_v3p_kernel<SPG, INT>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytesV3)
        : v == 2 ? cudaFuncSetAttribute(w4a8_wgmma_v3_kernel<SPG, INT>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytesV3)
        : v == 1 ? cudaFuncSetAttribute(w4a8_wgmma_v2_kernel<SPG, INT>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytesV2)
                 : cudaFuncSetAttribute(w4a8_wgmma_kernel<SPG, INT>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (e != cudaSuccess) return e;
    attr[v] = true;
  }
  attr_lock.unlock();
  if (v == 3)  // persistent: one block per SM at most (one fits per SM: 183 KB of shared memory)
    w4a8_wgmma_v3p_kernel<SPG, INT><<<(unsigned)std::min<long long>(tiles, device_sms()), kThreads, kSmemBytesV3, s>>>(p);
  else if (v == 2)
    w4a8_wgmma_v3_kernel<SPG, INT><<<(unsigned)tiles, kThreads, kSmemBytesV3, s>>>(p);
  else if (v == 1)
    w4a8_wgmma_v2_kernel<SPG, INT><<<(unsigned)tiles, kThreads, kSmemBytesV2, s>>>(p);
  else
    w4a8_wgmma_kernel<SPG, INT><<<(unsigned)tiles, kThreads, kSmemBytes, s>>>(p);
  return cudaGetLastError();
}

template <bool INT>
cudaError_t launch_kind(const Sm90Params& p, const TmaMap2D* maps, cudaStream_t s) {
  if (p.group_size >= p.k) return launch_one<0, INT>(p, maps, s);
  switch (p.group_size) {
    case 32: return launch_one<1, INT>(p, maps, s);
    case 64: return launch_one<2, INT>(p, maps, s);
    default: return launch_one<4, INT>(p, maps, s);
  }
}

}  // namespace

bool sm90_wgmma_built() { return true; }

ody_status launch_w4a8_sm90(const Sm90Params& p, cudaStream_t stream) {
  if (!sm90_wgmma_usable()) return fail(ODY_ERR_UNSUPPORTED, "w4a8: the wgmma kernel needs a compute capability 9.x device");
  ODY_CUDA(cudaGetLastError());
  // The diagnostic variants (bench only, w4a8_sm90_diag): v4 or v5, integer scales, group 128.
  // (An unknown bit combination is refused by launch_diag: cudaErrorInvalidValue.)
  if (p.diag && !((p.version == 5 || p.version == 7) && p.int_scale && p.group_size == 128 && p.k > 128 &&
                  (p.diag != kSm90DiagClock || p.diag_clk)))
    return fail(ODY_ERR_UNSUPPORTED, "w4a8: diagnostic variant " + std::to_string(p.diag) +
                                         " exists for wgmma v4/v5, integer scales, group 128 (K > 128) only");
  TmaMap2D maps[2]{};  // v4, v4c2, v5: X's and W's tensor maps, encoded per launch (~1 µs each of host time)
  if (p.version >= 5) {
    std::string why;
    if (!encode_x_map(p, p.version == 6 ? kTokTile / 2 : kTokTile, &maps[0], &why)) return fail(ODY_ERR_UNSUPPORTED, why);
    if (!encode_w_map(p, &maps[1], &why)) return fail(ODY_ERR_UNSUPPORTED, why);
  }
  ODY_CUDA(p.int_scale ? launch_kind<true>(p, maps, stream) : launch_kind<false>(p, maps, stream));
  return ODY_OK;
}

#else  // not built: CUDA < 12 or no 90 in the architectures

bool sm90_wgmma_built() { return false; }

ody_status launch_w4a8_sm90(const Sm90Params&, cudaStream_t) {
  return fail(ODY_ERR_UNSUPPORTED,
              "w4a8: the wgmma kernel was not built (it needs CUDA >= 12.0 and 90 in CMAKE_CUDA_ARCHITECTURES)");
}

#endif

// Built, a compute capability 9.x device, and not turned off with ODYSSEY_WGMMA=0.
bool sm90_wgmma_usable() {
  static const bool usable = [] {  // once, thread-safe
    const char* env = std::getenv("ODYSSEY_WGMMA");
    int dev = 0, major = 0;
    const bool ok = sm90_wgmma_built() && !(env && std::string(env) == "0") && cudaGetDevice(&dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major == 9;
    cudaGetLastError();
    return ok;
  }();
  return usable;
}

}  // namespace odyssey
