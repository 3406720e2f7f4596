// gemv_f16.cu: the FP16 GEMV for decode, y[m, n] = Σ_k x[m, k]·W[n, k] (+ bias[n]) for M ≤ 8,
// W fp16 row-major [N, K] (the checkpoint's own layout: no repacking), fp32 accumulation,
// output fp16 (the FP16 baseline's linears) or fp32 (the lm_head's logits). C ABI:
// ody_f16_gemv (include/odyssey_rt.h). Used by the executor for every dense linear and the
// lm_head at rows ≤ ODY_F16_GEMV_MAX_M, cuBLAS above.
//
// Why not cuBLAS: at M = 1 cuBLAS FP16 reaches 56% of the memory floor on 4096×4096 and 72–87%
// on the other 7B shapes (bench/results/gemm-decode-h200-2026-12-02-bbbecd2.json); the FP16
// decode step is those GEMMs. A GEMV only has to stream W once at full bandwidth.
//
// How: tensor cores with the roles swapped. yᵀ[N, M] = W[N, K]·xᵀ[K, M] is an mma.m16n8k16 with
// A = 16 rows of W (row-major, straight from global memory) and B = xᵀ (8 columns = up to 8 rows
// of x; columns ≥ M are zero). So M ≤ 8 costs the same instructions as M = 1, there is no
// fp16→fp32 conversion (the mma multiplies fp16 exactly and accumulates in fp32), and each lane
// issues per 32 of K: two 16-byte loads of W (rows gid and gid+8), one of x (row gid, only when
// gid < M), two mma. A GEMM may permute K as long as A and B agree: lane (gid, t) loads the 8
// consecutive k = 8t..8t+7 (of each 32), and virtual k {2t, 2t+1, 2t+8, 2t+9} of the first mma
// stands for real k {8t, 8t+1, 8t+2, 8t+3}, of the second for {8t+4, ..., 8t+7}: A's registers
// for row gid are then the halves (.x, .y) and (.z, .w) of the lane's own 16-byte word, B's
// likewise of its x word, with no shuffle or byte permute at all.
//
// Structure (as gemv.cu): one block of kWarps warps per strip of 16 rows of W; the warps split
// K in super-steps of kU·32 (warp w takes super-steps w, w + kWarps, ...), so that a warp reads
// kU·64 contiguous bytes of each of its 16 rows per iteration and keeps 2·kU 16-byte loads in
// flight per lane. W is streamed with ld.global.nc.L1::no_allocate (read once), x through L1
// (re-read by every block). The warps' fp32 partial sums meet in shared memory, summed in warp
// order (deterministic), then bias and one rounding.
//
// PDL (pdl.cuh): the first super-step's W loads are issued before pdl_wait() (W never depends
// on the previous kernel), x is read and y written only after it; pdl_launch_dependents() is
// called once the main loop is done.
//
// Numerics: products x·w are exact in fp32 (11-bit × 11-bit significands); they are summed in
// fp32 by the tensor cores (whose internal additions are not guaranteed to round to nearest),
// then the warps' partials in fp32 in warp order, then + float(bias), then one rounding to the
// output type. The order differs from cuBLAS's (which is itself unspecified), so the test
// (odyssey-rt test gemv16) checks both against a float64 reference within
// (K/16 + kWarps + 4)·2⁻²²·Σ_k|x·w| + one ulp of the output type (the W4A16 bound of
// docs/gemm-cases.md, with the warps' additions counted).
//
// Limits: 1 ≤ M ≤ 8, any N ≥ 1, any K ≥ 1, row stride of x ldx ≥ K, y contiguous [M, N].
// Fast path: K % 8 == 0, ldx % 8 == 0, x and W 16-byte aligned (every 7B shape); otherwise the
// same kernel with element-wise loads (correct, slow; the tiny test models' K = 172). Pointers
// must be at least 2-byte (fp16) / 4-byte (fp32 y) aligned: can_implement refuses others.
//
// Test: odyssey-rt test gemv16 (odd N, K not a multiple of 8, strided and misaligned x, bias,
// fp32 output, M = 1..8, the shapes of a 7B layer; cuBLAS checked against the same bound).
// Benchmark: odyssey-rt bench gemm --m 1,2,4 (rows f16_gemv and f16_gemv_logits, beside
// cublas_fp16 and the floor).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "odyssey_rt.h"
#include "pdl.cuh"
#include "status.hpp"

namespace odyssey {
namespace {

constexpr int kWarps = 8;  // warps per block, splitting K
constexpr int kU = 4;      // 32-deep K steps per warp per iteration, loaded before any is used
constexpr int kMaxM = ODY_F16_GEMV_MAX_M;
static_assert(kMaxM == 8, "B of m16n8k16 has 8 columns");

struct Params {
  const __half* x;
  const __half* w;
  const __half* bias;
  void* y;
  int m, n, k, ldx;
};

__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void mma_f16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 8 halves at k0.. of a row of `len` valid elements; past the end, and when !ok, zeros.
// VEC: one 16-byte load (k0 % 8 == 0, len % 8 == 0, the row 16-byte aligned: k0 < len means
// all 8 are valid). Otherwise element by element (any alignment of fp16).
template <bool VEC, bool STREAM>
__device__ __forceinline__ uint4 load8(const __half* row, int k0, int len, bool ok) {
  if constexpr (VEC) {
    if (!ok || k0 >= len) return make_uint4(0, 0, 0, 0);
    if constexpr (STREAM) return ld_stream16(row + k0);
    return __ldg(reinterpret_cast<const uint4*>(row + k0));
  } else {
    uint32_t h[8];
    const unsigned short* r = reinterpret_cast<const unsigned short*>(row);
#pragma unroll
    for (int i = 0; i < 8; i++) h[i] = ok && k0 + i < len ? __ldg(r + k0 + i) : 0u;
    return make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
  }
}

template <bool VEC, bool F32OUT>
__global__ void __launch_bounds__(kWarps * 32) f16_gemv_kernel(const Params p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, t = lane & 3;
  const int r0 = blockIdx.x * 16 + gid, r1 = r0 + 8;
  const bool ok0 = r0 < p.n, ok1 = r1 < p.n, okx = gid < p.m;
  // Rows past N read nothing (zeros); their outputs are never written.
  const __half* w0 = p.w + (size_t)(ok0 ? r0 : 0) * p.k;
  const __half* w1 = p.w + (size_t)(ok1 ? r1 : 0) * p.k;
  const __half* xr = p.x + (size_t)(okx ? gid : 0) * p.ldx;
  const int nsteps = (p.k + 31) / 32;
  const int nsuper = (nsteps + kU - 1) / kU;

  float c[4] = {0.f, 0.f, 0.f, 0.f};
  uint4 a0[kU], a1[kU];
  auto load_w = [&](int ss) {
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const int k0 = (ss * kU + u) * 32 + 8 * t;
      a0[u] = load8<VEC, true>(w0, k0, p.k, ok0);
      a1[u] = load8<VEC, true>(w1, k0, p.k, ok1);
    }
  };
  int ss = warp;
  if (ss < nsuper) load_w(ss);  // before the wait: W does not depend on the previous kernel
  pdl_wait();
  for (; ss < nsuper; ss += kWarps) {
    uint4 b[kU];
#pragma unroll
    for (int u = 0; u < kU; u++) b[u] = load8<VEC, false>(xr, (ss * kU + u) * 32 + 8 * t, p.k, okx);
#pragma unroll
    for (int u = 0; u < kU; u++) {
      mma_f16(c, a0[u].x, a1[u].x, a0[u].y, a1[u].y, b[u].x, b[u].y);  // real k 8t..8t+3
      mma_f16(c, a0[u].z, a1[u].z, a0[u].w, a1[u].w, b[u].z, b[u].w);  // real k 8t+4..8t+7
    }
    if (ss + kWarps < nsuper) load_w(ss + kWarps);
  }
  pdl_launch_dependents();

  // c[0] = (row gid, x row 2t), c[1] = (gid, 2t+1), c[2] = (gid+8, 2t), c[3] = (gid+8, 2t+1).
  __shared__ float red[kWarps][16][8];
  red[warp][gid][2 * t] = c[0];
  red[warp][gid][2 * t + 1] = c[1];
  red[warp][gid + 8][2 * t] = c[2];
  red[warp][gid + 8][2 * t + 1] = c[3];
  __syncthreads();
  if (threadIdx.x >= 128) return;
  const int rl = threadIdx.x >> 3, m = threadIdx.x & 7;
  const int n = blockIdx.x * 16 + rl;
  if (m >= p.m || n >= p.n) return;
  float acc = red[0][rl][m];
#pragma unroll
  for (int v = 1; v < kWarps; v++) acc = __fadd_rn(acc, red[v][rl][m]);
  if (p.bias) acc = __fadd_rn(acc, __half2float(p.bias[n]));
  if constexpr (F32OUT)
    static_cast<float*>(p.y)[(size_t)m * p.n + n] = acc;
  else
    static_cast<__half*>(p.y)[(size_t)m * p.n + n] = __float2half_rn(acc);
}

bool aligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

ody_status check(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a) {
  if (!p) return fail(ODY_ERR_INVALID, "f16_gemv: null problem");
  if (p->m < 1 || p->n < 1 || p->k < 1) return fail(ODY_ERR_INVALID, "f16_gemv: M, N and K must be positive");
  if (p->m > kMaxM)
    return fail(ODY_ERR_UNSUPPORTED, "f16_gemv: M=" + std::to_string(p->m) + " is above " + std::to_string(kMaxM) +
                                         " (use a GEMM)");
  if (p->ldx < p->k) return fail(ODY_ERR_INVALID, "f16_gemv: ldx below K");
  if (p->out_f32 != 0 && p->out_f32 != 1) return fail(ODY_ERR_INVALID, "f16_gemv: out_f32 must be 0 or 1");
  if ((long long)p->m * p->n > (1LL << 31) - 1) return fail(ODY_ERR_UNSUPPORTED, "f16_gemv: M·N beyond int32");
  if (!a) return ODY_OK;
  if (!a->x || !a->w || !a->y) return fail(ODY_ERR_INVALID, "f16_gemv: x, w and y must be set");
  if (!aligned(a->x, 2) || !aligned(a->w, 2) || (a->bias && !aligned(a->bias, 2)) ||
      !aligned(a->y, p->out_f32 ? 4 : 2))
    return fail(ODY_ERR_UNSUPPORTED, "f16_gemv: x, w, bias must be 2-byte aligned and y aligned to its element");
  return ODY_OK;
}

bool vector_path(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a) {
  return p->k % 8 == 0 && p->ldx % 8 == 0 && aligned(a->x, 16) && aligned(a->w, 16);
}

}  // namespace
}  // namespace odyssey

extern "C" {
ody_status ody_f16_gemv_can_implement(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a) {
  odyssey::clear_error();
  return odyssey::check(p, a);
}

int ody_f16_gemv_vector_path(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a) {
  return p && a && odyssey::vector_path(p, a) ? 1 : 0;
}

ody_status ody_f16_gemv(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a, void* stream) {
  using namespace odyssey;
  clear_error();
  if (ody_status s = check(p, a)) return s;
  Params k{static_cast<const __half*>(a->x), static_cast<const __half*>(a->w), static_cast<const __half*>(a->bias),
           a->y, p->m, p->n, p->k, p->ldx};
  const dim3 grid((p->n + 15) / 16), block(kWarps * 32);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool vec = vector_path(p, a);
  cudaError_t e;
  if (vec)
    e = p->out_f32 ? launch_pdl(f16_gemv_kernel<true, true>, grid, block, 0, s, k)
                   : launch_pdl(f16_gemv_kernel<true, false>, grid, block, 0, s, k);
  else
    e = p->out_f32 ? launch_pdl(f16_gemv_kernel<false, true>, grid, block, 0, s, k)
                   : launch_pdl(f16_gemv_kernel<false, false>, grid, block, 0, s, k);
  ODY_CUDA(e);
  return ODY_OK;
}
}
