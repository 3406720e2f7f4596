// w8a8.cu: the W8A8 linear (int8 per-channel weights, int8 per-token activations), the
// executor's kernel for compressed-tensors' "int-quantized" export of the w8a8-smoothquant
// preset (docs/artifact.md, "compressed-tensors export"; docs/executor.md).
//
// What it computes, for x codes [M, K] (−127..127, per-token scales xs[M]) and weight codes
// w [N, K] (−127..127, per-channel scales ws[N]):
//
//   acc[m,n] = Σ_k x[m,k] · w[n,k]                         int32, exact
//   y[m,n]   = half_rn(float(acc)·(xs[m]·ws[n]) (+ bias[n]))  kernel::epilogue_int
//
// The int32 accumulator is exact: |acc| ≤ 127·127·K < 2^31 for K ≤ kMaxK (133,144), which
// can_implement enforces, and so is every partial sum of any subset of k, in any order, so no
// path can overflow or differ. The only rounding is the epilogue: one float conversion, one
// product of the two scales, one product, one optional bias addition, one rounding to fp16 —
// the same function (kernel_common.cuh) in both paths below, so they agree bit for bit in acc
// and in y by construction, and the tests check it.
//
// Two paths (config):
//   0 "dp4a": a GEMV-style kernel for decode. Weights row-major [N, K] are streamed once in
//     16-byte words (ld.global.nc, no L1 allocation); a block owns kNB = 4 output columns and
//     up to kMR = 8 rows of x (grid.y covers larger M, so it runs any M, but it is meant for
//     M ≤ kGemvMaxM); its 8 warps split K (warp w reads bytes [512w, 512w + 512) of every
//     4 KiB of a weight row, one coalesced 16-byte word per lane), 4 dp4a per word per row of
//     x. Lane sums are reduced with shuffles, warps through shared memory, then kMR·kNB threads
//     run the epilogue. PDL (pdl.cuh): the first weight words are loaded before pdl_wait() (the
//     weights are never written by a kernel), x, xs and y are touched only after it.
//   1 "cublaslt": cuBLASLt INT8 GEMM (int8 A/B, int32 C, CUBLAS_COMPUTE_32I; column-major "TN":
//     C[N, M] = Wᵀ(op T of [K, N]) · x[K, M], i.e. row-major acc[M, N]) into an int32 workspace,
//     then an epilogue kernel. M is split into chunks so that the int32 buffer stays ≤ 64 MiB.
//   -1: the dispatch: dp4a for M ≤ kGemvMaxM (8) or when cuBLASLt cannot take the shape (N % 4,
//     or no algorithm), cuBLASLt otherwise. The threshold is a guess until `bench gemm`
//     measures the crossover on the H200.
//
// Layout: x [M, K] row-major int8 with row stride K; w [N, K] row-major int8 with row stride K
// (the executor stores each linear zero-padded to [⌈N/8⌉·8, ⌈K/128⌉·128], the activation
// buffers' stride); xs [M], ws [N], bias [N] float32; y [M, N] fp16; acc_out [M, N] int32.
//
// Limits (ody_w8a8_can_implement): M, N ≥ 1; K % 16 == 0 (16-byte words; cuBLASLt's IMMA
// kernels need K % 4) and K ≤ kMaxK; x and w 16-byte aligned; cublaslt: N % 4 == 0 (its
// IMMA kernels' leading-dimension rule) and a workspace of ody_w8a8_workspace_size bytes. The
// cuBLASLt handle is created on first use, on the device current then (one device per process).
//
// Test: odyssey-rt test gemm --w8a8 (random cases against a host reference: acc exact, y
// bit-exact, both paths, odd N, M = 1..16 and 64..512; refusals). Benchmark: odyssey-rt bench
// gemm (rows w8a8_dp4a, w8a8_cublaslt beside cublaslt_int8 and cublas_fp16).
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "kernel_common.cuh"
#include "odyssey_rt.h"
#include "pdl.cuh"
#include "status.hpp"

namespace odyssey {
namespace {

constexpr int kThreads = 256;          // 8 warps per block, splitting K
constexpr int kWarps = kThreads / 32;
constexpr int kNB = 4;                 // output columns per block
constexpr int kMR = 8;                 // rows of x per block (grid.y for more)
constexpr int kU = 2;                  // 16-byte words per lane per row loaded ahead of their use
constexpr int kGemvMaxM = 8;           // the dispatch's dp4a threshold (to be measured)
constexpr int kMaxK = 2147483647 / (127 * 127);  // 133,144: |acc| < 2^31
constexpr size_t kAccBudget = 64u << 20;         // bytes of int32 accumulators per cuBLASLt chunk
constexpr size_t kLtWorkspace = 8u << 20;        // cuBLASLt's own workspace

struct Dp4aParams {
  const int8_t* x;
  const float* xs;
  const int8_t* w;
  const float* ws;
  const float* bias;
  __half* y;
  int32_t* acc_out;
  int m, n, k;
};

// Streamed once: no L1 allocation, so the activations (re-read by every block) stay in L1.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ int dot16(const uint4& a, const uint4& b, int c) {
  c = __dp4a((int)a.x, (int)b.x, c);
  c = __dp4a((int)a.y, (int)b.y, c);
  c = __dp4a((int)a.z, (int)b.z, c);
  return __dp4a((int)a.w, (int)b.w, c);
}

// MR: rows of x per block (1..8; the last grid.y block may have fewer, `rows`).
template <int MR>
__global__ void __launch_bounds__(kThreads) w8a8_dp4a_kernel(const Dp4aParams p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n0 = blockIdx.x * kNB;
  const int m0 = blockIdx.y * MR;
  const int rows = min(MR, p.m - m0);
  const int words = p.k >> 4;  // 16-byte words per row
  const uint4 zero = make_uint4(0, 0, 0, 0);

  // Weight words of column n0 + r: word c of its row at w + (n0 + r)·K + 16c. Columns past N
  // read nothing (zeros) and are not written.
  uint4 wv[kU][kNB];
  auto load = [&](int c0) {
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const int c = c0 + u * kThreads;
#pragma unroll
      for (int r = 0; r < kNB; r++)
        wv[u][r] = (c < words && n0 + r < p.n) ? ld_stream16(p.w + (size_t)(n0 + r) * p.k + (size_t)c * 16) : zero;
    }
  };
  int c0 = threadIdx.x;  // warp w, lane l: word 32w + l of every kThreads-word sweep
  load(c0);
  pdl_wait();  // x (and xs) come from the previous kernel; the weights above never do

  int acc[MR][kNB];
#pragma unroll
  for (int m = 0; m < MR; m++)
#pragma unroll
    for (int r = 0; r < kNB; r++) acc[m][r] = 0;

  for (;;) {
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const int c = c0 + u * kThreads;
      if (c < words) {
#pragma unroll
        for (int m = 0; m < MR; m++) {
          if (m < rows) {
            const uint4 xv = __ldg(reinterpret_cast<const uint4*>(p.x + (size_t)(m0 + m) * p.k) + c);
#pragma unroll
            for (int r = 0; r < kNB; r++) acc[m][r] = dot16(xv, wv[u][r], acc[m][r]);
          }
        }
      }
    }
    c0 += kU * kThreads;
    if (c0 >= words) break;
    load(c0);
  }
  pdl_launch_dependents();

  // Lanes, then warps. Every partial sum is a sum over a subset of k: |.| ≤ 127²·K < 2^31.
#pragma unroll
  for (int m = 0; m < MR; m++)
#pragma unroll
    for (int r = 0; r < kNB; r++)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[m][r] += __shfl_xor_sync(0xFFFFFFFFu, acc[m][r], o);
  __shared__ int red[kWarps][MR][kNB];
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
      for (int r = 0; r < kNB; r++) red[warp][m][r] = acc[m][r];
  }
  __syncthreads();
  if (threadIdx.x >= MR * kNB) return;
  const int m = threadIdx.x / kNB, r = threadIdx.x % kNB;
  const int n = n0 + r;
  if (m >= rows || n >= p.n) return;
  int total = 0;
#pragma unroll
  for (int v = 0; v < kWarps; v++) total += red[v][m][r];
  const size_t o = (size_t)(m0 + m) * p.n + n;
  p.y[o] = kernel::epilogue_int(total, p.xs[m0 + m], p.ws[n], p.bias, n);
  if (p.acc_out) p.acc_out[o] = total;
}

// The cuBLASLt path's epilogue: acc [rows, N] (int32, rows m0.. of the problem) → y.
__global__ void w8a8_epilogue_kernel(const int32_t* acc, int rows, int m0, const Dp4aParams p) {
  pdl_wait();
  const long long total = (long long)rows * p.n;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int m = (int)(i / p.n), n = (int)(i % p.n);
    const int32_t a = acc[i];
    const size_t o = (size_t)(m0 + m) * p.n + n;
    p.y[o] = kernel::epilogue_int(a, p.xs[m0 + m], p.ws[n], p.bias, n);
    if (p.acc_out) p.acc_out[o] = a;
  }
  pdl_launch_dependents();
}

template <int MR>
cudaError_t launch_dp4a_m(const Dp4aParams& p, cudaStream_t stream) {
  const dim3 grid((p.n + kNB - 1) / kNB, (p.m + MR - 1) / MR);
  return launch_pdl(w8a8_dp4a_kernel<MR>, grid, dim3(kThreads), 0, stream, p);
}

cudaError_t launch_dp4a(const Dp4aParams& p, cudaStream_t stream) {
  switch (p.m) {
    case 1: return launch_dp4a_m<1>(p, stream);
    case 2: return launch_dp4a_m<2>(p, stream);
    case 3: return launch_dp4a_m<3>(p, stream);
    case 4: return launch_dp4a_m<4>(p, stream);
    case 5: return launch_dp4a_m<5>(p, stream);
    case 6: return launch_dp4a_m<6>(p, stream);
    case 7: return launch_dp4a_m<7>(p, stream);
    default: return launch_dp4a_m<kMR>(p, stream);
  }
}

// ---------------------------------------------------------------- cuBLASLt

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;
  std::string why;
};

std::mutex lt_mu;
cublasLtHandle_t lt_handle = nullptr;
std::map<std::tuple<int, int, int>, LtPlan> lt_plans;  // by (rows, N, K); never freed (few shapes)

std::string lt_status(const char* what, cublasStatus_t s) {
  return std::string(what) + ": cuBLAS status " + std::to_string((int)s);
}

// The plan for a chunk of `rows` rows (built once per shape, under lt_mu).
const LtPlan& lt_plan(int rows, int n, int k) {
  auto key = std::make_tuple(rows, n, k);
  auto it = lt_plans.find(key);
  if (it != lt_plans.end()) return it->second;
  LtPlan& pl = lt_plans[key];
  cublasStatus_t s;
  if (!lt_handle && (s = cublasLtCreate(&lt_handle)) != CUBLAS_STATUS_SUCCESS) {
    lt_handle = nullptr;
    pl.why = lt_status("cublasLtCreate", s);
    return pl;
  }
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  if ((s = cublasLtMatmulDescCreate(&pl.desc, CUBLAS_COMPUTE_32I, CUDA_R_32I)) != CUBLAS_STATUS_SUCCESS ||
      (s = cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta))) != CUBLAS_STATUS_SUCCESS ||
      (s = cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb))) != CUBLAS_STATUS_SUCCESS ||
      (s = cublasLtMatrixLayoutCreate(&pl.la, CUDA_R_8I, k, n, k)) != CUBLAS_STATUS_SUCCESS ||
      (s = cublasLtMatrixLayoutCreate(&pl.lb, CUDA_R_8I, k, rows, k)) != CUBLAS_STATUS_SUCCESS ||
      (s = cublasLtMatrixLayoutCreate(&pl.lc, CUDA_R_32I, n, rows, n)) != CUBLAS_STATUS_SUCCESS) {
    pl.why = lt_status("cuBLASLt descriptors", s);
    return pl;
  }
  cublasLtMatmulPreference_t pref = nullptr;
  if ((s = cublasLtMatmulPreferenceCreate(&pref)) != CUBLAS_STATUS_SUCCESS) {
    pl.why = lt_status("cublasLtMatmulPreferenceCreate", s);
    return pl;
  }
  const size_t ws = kLtWorkspace;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  s = cublasLtMatmulAlgoGetHeuristic(lt_handle, pl.desc, pl.la, pl.lb, pl.lc, pl.lc, pref, 1, &heur, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
    pl.why = "no cuBLASLt INT8 algorithm for rows " + std::to_string(rows) + ", N " + std::to_string(n) + ", K " +
             std::to_string(k) + (s != CUBLAS_STATUS_SUCCESS ? " (" + lt_status("heuristic", s) + ")" : "");
    return pl;
  }
  pl.algo = heur.algo;
  pl.ok = true;
  return pl;
}

// Rows per cuBLASLt call: the int32 chunk stays within kAccBudget (at least 64 rows).
int lt_chunk_rows(int m, int n) {
  const long long cap = std::max<long long>(64, (long long)(kAccBudget / (4ull * (size_t)n)) / 64 * 64);
  return (int)std::min<long long>(m, cap);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

ody_status check_problem(const ody_w8a8_problem* p) {
  if (!p) return fail(ODY_ERR_INVALID, "w8a8: null problem");
  if (p->m < 1 || p->n < 1 || p->k < 1)
    return fail(ODY_ERR_INVALID, "w8a8: M, N and K must be positive (got " + std::to_string(p->m) + ", " +
                                     std::to_string(p->n) + ", " + std::to_string(p->k) + ")");
  if (p->k % 16 != 0)
    return fail(ODY_ERR_UNSUPPORTED, "w8a8: K=" + std::to_string(p->k) + " is not a multiple of 16 (pad K with zero codes)");
  if (p->k > kMaxK)
    return fail(ODY_ERR_UNSUPPORTED, "w8a8: K=" + std::to_string(p->k) + " exceeds " + std::to_string(kMaxK) +
                                         " (127·127·K must fit int32)");
  if ((long long)p->m * p->n > (1LL << 40) || (long long)p->n * p->k > (1LL << 40) || (long long)p->m * p->k > (1LL << 40))
    return fail(ODY_ERR_UNSUPPORTED, "w8a8: problem too large for one call");
  if (p->config < -1 || p->config > 1) return fail(ODY_ERR_INVALID, "w8a8: no config " + std::to_string(p->config));
  if (p->config == 1 && p->n % 4 != 0)
    return fail(ODY_ERR_UNSUPPORTED, "w8a8: config cublaslt needs N % 4 == 0 (got N=" + std::to_string(p->n) + ")");
  return ODY_OK;
}

// The path config -1 takes (without asking cuBLASLt for an algorithm: see gemm()).
int auto_config(const ody_w8a8_problem* p) {
  if (p->config >= 0) return p->config;
  return (p->m <= kGemvMaxM || p->n % 4 != 0) ? 0 : 1;
}

size_t workspace_size(const ody_w8a8_problem* p) {
  if (check_problem(p) != ODY_OK || auto_config(p) != 1) return 0;
  const size_t acc = (size_t)lt_chunk_rows(p->m, p->n) * p->n * 4;
  return (acc + 255) / 256 * 256 + kLtWorkspace;
}

ody_status can_implement(const ody_w8a8_problem* p, const ody_w8a8_args* a) {
  if (ody_status s = check_problem(p)) return s;
  if (!a) return ODY_OK;
  if (!a->x || !a->x_scale || !a->w || !a->w_scale || !a->y)
    return fail(ODY_ERR_INVALID, "w8a8: x, x_scale, w, w_scale and y must be set");
  if (!aligned16(a->x) || !aligned16(a->w)) return fail(ODY_ERR_UNSUPPORTED, "w8a8: x and w must be 16-byte aligned");
  if ((reinterpret_cast<uintptr_t>(a->y) & 1) != 0) return fail(ODY_ERR_UNSUPPORTED, "w8a8: y must be 2-byte aligned");
  const size_t need = workspace_size(p);
  if (need > 0 && (!a->workspace || a->workspace_bytes < need))
    return fail(ODY_ERR_WORKSPACE, "w8a8: the cuBLASLt path needs " + std::to_string(need) + " bytes of workspace, got " +
                                       std::to_string(a->workspace_bytes));
  if (need > 0 && !aligned16(a->workspace)) return fail(ODY_ERR_UNSUPPORTED, "w8a8: workspace must be 16-byte aligned");
  return ODY_OK;
}

ody_status gemm(const ody_w8a8_problem* p, const ody_w8a8_args* a, cudaStream_t stream) {
  if (ody_status s = can_implement(p, a)) return s;
  Dp4aParams d{};
  d.x = a->x;
  d.xs = a->x_scale;
  d.w = a->w;
  d.ws = a->w_scale;
  d.bias = a->bias;
  d.y = static_cast<__half*>(a->y);
  d.acc_out = a->acc_out;
  d.m = p->m;
  d.n = p->n;
  d.k = p->k;
  int cfg = auto_config(p);
  const int chunk = lt_chunk_rows(p->m, p->n);
  if (cfg == 1) {
    // Plans for the full chunks and the tail (host only: safe during graph capture once the
    // handle exists; the executor's prefill creates it before any capture).
    std::lock_guard<std::mutex> lock(lt_mu);
    const LtPlan& full = lt_plan(chunk, p->n, p->k);
    const int tail = p->m % chunk;
    const LtPlan* last = tail ? &lt_plan(tail, p->n, p->k) : &full;
    if (!full.ok || !last->ok) {
      if (p->config == 1) return fail(ODY_ERR_UNSUPPORTED, "w8a8: " + (full.ok ? last->why : full.why));
      cfg = 0;  // the dispatch falls back to the dp4a kernel, which runs every shape
    }
  }
  ODY_CUDA(cudaGetLastError());
  if (cfg == 0) {
    ODY_CUDA(launch_dp4a(d, stream));
    return ODY_OK;
  }
  int32_t* acc = static_cast<int32_t*>(a->workspace);
  const size_t acc_bytes = ((size_t)chunk * p->n * 4 + 255) / 256 * 256;
  void* lt_ws = static_cast<uint8_t*>(a->workspace) + acc_bytes;
  const int32_t one = 1, zero = 0;
  for (int m0 = 0; m0 < p->m; m0 += chunk) {
    const int rows = std::min(chunk, p->m - m0);
    const LtPlan* pl;
    {
      std::lock_guard<std::mutex> lock(lt_mu);
      pl = &lt_plan(rows, p->n, p->k);  // found above; std::map references stay valid
    }
    const cublasStatus_t s =
        cublasLtMatmul(lt_handle, pl->desc, &one, a->w, pl->la, a->x + (size_t)m0 * p->k, pl->lb, &zero, acc, pl->lc, acc,
                       pl->lc, &pl->algo, lt_ws, kLtWorkspace, stream);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(ODY_ERR_CUDA, "w8a8: " + lt_status("cublasLtMatmul", s));
    const long long total = (long long)rows * p->n;
    const int blocks = (int)std::max<long long>(1, std::min<long long>((total + 255) / 256, 8192));
    ODY_CUDA(launch_pdl(w8a8_epilogue_kernel, dim3(blocks), dim3(256), 0, stream, acc, rows, m0, d));
  }
  return ODY_OK;
}

}  // namespace
}  // namespace odyssey

extern "C" {
ody_status ody_w8a8_can_implement(const ody_w8a8_problem* p, const ody_w8a8_args* a) {
  odyssey::clear_error();
  return odyssey::can_implement(p, a);
}
size_t ody_w8a8_workspace_size(const ody_w8a8_problem* p) { return odyssey::workspace_size(p); }
ody_status ody_w8a8_gemm(const ody_w8a8_problem* p, const ody_w8a8_args* a, void* stream) {
  odyssey::clear_error();
  return odyssey::gemm(p, a, static_cast<cudaStream_t>(stream));
}
int ody_w8a8_num_configs(void) { return 2; }
const char* ody_w8a8_config_name(int c) { return c == 0 ? "dp4a" : c == 1 ? "cublaslt" : "?"; }
ody_status ody_w8a8_dispatch(const ody_w8a8_problem* p, int* config) {
  odyssey::clear_error();
  if (ody_status s = odyssey::check_problem(p)) return s;
  if (config) *config = odyssey::auto_config(p);
  return ODY_OK;
}
}
