// calib_exact.cu: the kernels of `odyssey-rt calib --precision exact`
// (ODYSSEY_CALIB_PRECISION=exact): the fp32 calibration forward (calib_fp32.cu) with every
// operation in the CPU's canonical order (docs/determinism.md, canonical.hpp), so that the
// GPU's statistics, and therefore the quantized artifact, are the CPU's bit for bit.
//
// What each kernel computes (all float32 row-major, row stride = width unless named):
//   - sgemm: C = alpha·op(A)·op(B) (+ beta·C) as gemm.Sgemm, row-major, any transposes and
//     leading dimensions; SIMT (no tensor cores, no split-K, no atomics): a 64×64 C tile per
//     block of 256 threads, each thread 4×4 outputs (rows ty + 16i, columns tx + 16j), K staged
//     through shared memory 16 at a time; per output the FMA chain runs in ascending k and is
//     closed every kCanonKC = 384 (t = fl(alpha·acc), C = t then C + t), exactly canon_dot.
//     ODYSSEY_EXACT_SGEMM=2 selects exact_sgemm2.cuh instead (128×128 tile, 8×8 per thread,
//     16-byte shared loads, double-buffered K stages of 8): the same result per output.
//   - add_rmsnorm: h += delta (float32), then model.RMSNorm: one block per row, the float64 sum
//     of squares by ONE thread in column order (the CPU's sequential sum), the scale by
//     canon_rms_scale, out = fl(w·fl(x·scale)).
//   - attention: model/layer.go attention for one (window, head, query row) per block: scores
//     of the visible keys as canon_dot(hd, 1/√hd), max, e = exp32(s − max), ExpSum's 8 lanes
//     (eight threads, each its lane in order) and their pairwise combination plus the tail,
//     p = fl(e·float32(1/Σ)), hidden keys +0, then out[d] = canon_dot over the keys of the row's
//     64-row task, from its k0 (P·V's K blocks start there, zeros included as the CPU sums them).
//   - swiglu: canon_silu_mul per element.
//   - statistics (calib/stats.go Stats.Add, OutputStats.add): Σx², min and max per channel in
//     blocks of 64 rows of the chunk (Σ from 0 in row order, min/max from the block's first
//     row), merged into the totals in block order (one thread per channel; Go's min/max: −0 <
//     +0); XᵀX of the chunk by sgemm (the canonical dot over the chunk's rows), widened
//     and added in fp64; per-row Σ(y − b)² in fp64 in column order (one thread per row), summed
//     over rows on the host.
// Limits: k ≥ 1; one query row's scores live in the fp32 scores scratch (B·seq² floats, as
// calib_fp32.cu); head_dim any (K blocks of 384 also there).
// Speed: chains are sequential per output, so this is several times slower than cuBLAS SGEMM
// (estimate in runtime/NOTES.md "Exact GPU calibration").
// Test: `odyssey-rt test calib-exact` (cli/test_calib_exact.cpp) requires every kernel to equal
// its host reference (the same canonical.hpp code on the CPU) bit for bit;
// tests/test_canonical_host.cpp checks the host side without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "calib/calib_fp32.hpp"
#include "calib/canonical.hpp"
#include "calib/exact_sgemm2.cuh"

namespace odyssey::calibgpu::f32::exact {

namespace {

using namespace canon;

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("calib exact: ") + what + ": " + cudaGetErrorString(e));
}

constexpr int kTile = 64, kKStep = 16, kThreads = 256;
static_assert(kCanonKC % kKStep == 0, "a K step must not straddle a canonical K block");

__global__ void __launch_bounds__(kThreads) sgemm_kernel(bool ta, bool tb, int m, int n, int k, float alpha,
                                                         const float* __restrict__ a, int lda,
                                                         const float* __restrict__ b, int ldb, float beta,
                                                         float* __restrict__ c, int ldc) {
  __shared__ float As[kKStep][kTile + 1], Bs[kKStep][kTile + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int i0 = blockIdx.y * kTile, j0 = blockIdx.x * kTile;
  float acc[4][4], cur[4][4];
#pragma unroll
  for (int ii = 0; ii < 4; ii++)
#pragma unroll
    for (int jj = 0; jj < 4; jj++) acc[ii][jj] = 0.0f, cur[ii][jj] = 0.0f;
  for (int p0 = 0; p0 < k; p0 += kKStep) {
#pragma unroll
    for (int r = 0; r < kTile * kKStep / kThreads; r++) {
      const int e = threadIdx.x + kThreads * r;
      // Index order chosen so that consecutive threads read consecutive addresses.
      int kk = ta ? e / kTile : e % kKStep, ii = ta ? e % kTile : e / kKStep;
      int gi = i0 + ii, gp = p0 + kk;
      As[kk][ii] = (gi < m && gp < k) ? (ta ? a[(size_t)gp * lda + gi] : a[(size_t)gi * lda + gp]) : 0.0f;
      kk = tb ? e % kKStep : e / kTile;
      const int jj = tb ? e / kKStep : e % kTile;
      const int gj = j0 + jj;
      gp = p0 + kk;
      Bs[kk][jj] = (gj < n && gp < k) ? (tb ? b[(size_t)gj * ldb + gp] : b[(size_t)gp * ldb + gj]) : 0.0f;
    }
    __syncthreads();
    const int kn = min(kKStep, k - p0);  // no padded products: the chain has exactly k terms
    for (int kk = 0; kk < kn; kk++) {
      float av[4], bv[4];
#pragma unroll
      for (int ii = 0; ii < 4; ii++) av[ii] = As[kk][ty + 16 * ii];
#pragma unroll
      for (int jj = 0; jj < 4; jj++) bv[jj] = Bs[kk][tx + 16 * jj];
#pragma unroll
      for (int ii = 0; ii < 4; ii++)
#pragma unroll
        for (int jj = 0; jj < 4; jj++) acc[ii][jj] = canon_fma(av[ii], bv[jj], acc[ii][jj]);
    }
    __syncthreads();
    if ((p0 + kKStep) % kCanonKC == 0 || p0 + kKStep >= k) {  // a canonical K block ends here
      const bool first = p0 < kCanonKC;
#pragma unroll
      for (int ii = 0; ii < 4; ii++)
#pragma unroll
        for (int jj = 0; jj < 4; jj++) {
          const int gi = i0 + ty + 16 * ii, gj = j0 + tx + 16 * jj;
          if (first) {
            // beta applies to the first block only (gemm's beta0); C is read only when beta ≠ 0.
            const float old = (beta != 0.0f && gi < m && gj < n) ? c[(size_t)gi * ldc + gj] : 0.0f;
            cur[ii][jj] = canon_update(old, acc[ii][jj], alpha, beta);
          } else {
            cur[ii][jj] = canon_add(cur[ii][jj], canon_mul(alpha, acc[ii][jj]));
          }
          acc[ii][jj] = 0.0f;
        }
    }
  }
#pragma unroll
  for (int ii = 0; ii < 4; ii++)
#pragma unroll
    for (int jj = 0; jj < 4; jj++) {
      const int gi = i0 + ty + 16 * ii, gj = j0 + tx + 16 * jj;
      if (gi < m && gj < n) c[(size_t)gi * ldc + gj] = cur[ii][jj];
    }
}

__global__ void add_rmsnorm_kernel(float* __restrict__ h, const float* __restrict__ delta, const float* __restrict__ w,
                                   float eps, int cols, float* __restrict__ out) {
  __shared__ float scale;
  float* hr = h + (size_t)blockIdx.x * cols;
  if (delta)
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
      hr[j] = canon_add(hr[j], delta[(size_t)blockIdx.x * cols + j]);
  if (!out) return;
  __syncthreads();
  if (threadIdx.x == 0) {
    double ss = 0;
    for (int j = 0; j < cols; j++) ss = canon_dadd(ss, canon_dsq(hr[j]));
    scale = canon_rms_scale(ss, cols, eps);
  }
  __syncthreads();
  const float sc = scale;
  float* o = out + (size_t)blockIdx.x * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) o[j] = canon_mul(w[j], canon_mul(hr[j], sc));
}

// grid (seq, nw·heads), block 128.
__global__ void attention_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                 float* __restrict__ scores, float* __restrict__ out, int heads, int group, int seq,
                                 int hd, int qd, int kvd, int window, float scale) {
  __shared__ float red[128];
  __shared__ double lanes[8];
  __shared__ float inv_s;
  const int pos = blockIdx.x, bh = blockIdx.y;
  const int w = bh / heads, h = bh % heads, kvh = h / group;
  const AttnRow ar = attn_row(pos, seq, window);
  const float* qr = q + ((size_t)w * seq + pos) * qd + (size_t)h * hd;
  const float* kb = k + (size_t)w * seq * kvd + (size_t)kvh * hd;
  const float* vb = v + (size_t)w * seq * kvd + (size_t)kvh * hd;
  float* srow = scores + ((size_t)bh * seq + pos) * seq;
  float m = -INFINITY;
  for (int j = ar.lo + threadIdx.x; j < ar.hi; j += blockDim.x) {
    const float* kr = kb + (size_t)j * kvd;
    const float s = canon_dot(hd, scale, [&](int p) { return qr[p]; }, [&](int p) { return kr[p]; });
    srow[j] = s;
    m = fmaxf(m, s);
  }
  red[threadIdx.x] = m;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o /= 2) {  // max: any order gives the same value
    if (threadIdx.x < o) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + o]);
    __syncthreads();
  }
  m = red[0];
  for (int j = ar.lo + threadIdx.x; j < ar.hi; j += blockDim.x) srow[j] = canon_exp32(canon_sub(srow[j], m));
  __syncthreads();
  const int cnt = ar.hi - ar.lo, n8 = cnt & ~7;
  if (threadIdx.x < 8) {  // ExpSum's lane l: elements l, l + 8, ... of the first n8, in order
    double s = 0;
    for (int i = threadIdx.x; i < n8; i += 8) s = canon_dadd(s, (double)srow[ar.lo + i]);
    lanes[threadIdx.x] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    ExpLanes l;
    for (int i = 0; i < 8; i++) l.l[i] = lanes[i];
    double s = l.combine();
    for (int i = n8; i < cnt; i++) s = canon_dadd(s, (double)srow[ar.lo + i]);
    inv_s = (float)__ddiv_rn(1.0, s);
  }
  __syncthreads();
  const float inv = inv_s;
  for (int j = ar.lo + threadIdx.x; j < ar.hi; j += blockDim.x) srow[j] = canon_mul(srow[j], inv);
  __syncthreads();
  float* orow = out + ((size_t)w * seq + pos) * qd + (size_t)h * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    orow[d] = canon_dot(
        ar.n, 1.0f,
        [&](int p) {
          const int j = ar.k0 + p;
          return (j >= ar.lo && j < ar.hi) ? srow[j] : 0.0f;
        },
        [&](int p) { return vb[(size_t)(ar.k0 + p) * kvd + d]; });
  }
}

__global__ void swiglu_kernel(float* __restrict__ g, const float* __restrict__ u, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    g[i] = canon_silu_mul(g[i], u[i]);
}

// calib/stats.go addRanges for one chunk, one thread per channel: per 64-row block, Σx² from
// 0 in row order and the minimum / maximum from the block's first row with v < m / v > m;
// the blocks merged into the totals in order (Σ in fp64, min / max with Go's builtins).
__global__ void channel_blocks_kernel(const float* __restrict__ x, int rows, int cols, float* __restrict__ mn,
                                      float* __restrict__ mx, double* __restrict__ acc) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  double total = acc[c];
  float tmn = mn[c], tmx = mx[c];
  for (int r0 = 0; r0 < rows; r0 += kStatsBlockRows) {
    const int r1 = min(rows, r0 + kStatsBlockRows);
    double s = 0;
    float bmn = x[(size_t)r0 * cols + c], bmx = bmn;
    for (int r = r0; r < r1; r++) {
      const float v = x[(size_t)r * cols + c];
      s = canon_dadd(s, canon_dsq(v));
      if (v < bmn) bmn = v;
      if (v > bmx) bmx = v;
    }
    total = canon_dadd(total, s);
    tmn = canon_gomin(tmn, bmn);
    tmx = canon_gomax(tmx, bmx);
  }
  acc[c] = total;
  mn[c] = tmn;
  mx[c] = tmx;
}

__global__ void widen_add_kernel(const float* __restrict__ t, double* __restrict__ acc, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    acc[i] = canon_dadd(acc[i], (double)t[i]);
}

__global__ void row_sumsq_kernel(const float* __restrict__ y, int rows, int cols, const float* __restrict__ bias,
                                 double* __restrict__ out) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const float* yr = y + (size_t)r * cols;
  double t = 0;
  for (int j = 0; j < cols; j++) t = canon_dadd(t, canon_dsq(bias ? canon_sub(yr[j], bias[j]) : yr[j]));
  out[r] = t;
}

int grid_for(size_t n) { return (int)std::max<size_t>(1, std::min<size_t>((n + 255) / 256, 65535)); }

}  // namespace

int sgemm_version() {
  // Read once: exact_sgemm2.cuh unless ODYSSEY_EXACT_SGEMM=1 asks for the first kernel (kept as
  // the A/B baseline: bit-identical, 3.5x slower at 4096^3 on the H200, runtime/NOTES.md
  // "Session 10").
  static const int v = [] {
    const char* e = std::getenv("ODYSSEY_EXACT_SGEMM");
    return (e && std::string(e) == "1") ? 1 : 2;
  }();
  return v;
}

void sgemm_v(int version, bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
             int ldb, float beta, float* c, int ldc, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) throw std::runtime_error("calib exact: sgemm with k = 0");
  if (version == 2) {
    namespace S = sgemm2;
    if ((m + S::kBM - 1) / S::kBM > 65535) throw std::runtime_error("calib exact: sgemm2 with m > 65535·128");
    dim3 grid((n + S::kBN - 1) / S::kBN, (m + S::kBM - 1) / S::kBM);
    const bool va = S::vec16(a, lda), vb = S::vec16(b, ldb), vc = S::vec16(c, ldc);
    if (!ta && !tb)
      S::sgemm2_kernel<false, false><<<grid, S::kThreads, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, va, vb, vc);
    else if (!ta && tb)
      S::sgemm2_kernel<false, true><<<grid, S::kThreads, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, va, vb, vc);
    else if (ta && !tb)
      S::sgemm2_kernel<true, false><<<grid, S::kThreads, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, va, vb, vc);
    else
      S::sgemm2_kernel<true, true><<<grid, S::kThreads, 0, stream>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, va, vb, vc);
    ck(cudaGetLastError(), "sgemm2");
    return;
  }
  if ((m + kTile - 1) / kTile > 65535) throw std::runtime_error("calib exact: sgemm with m > 65535·64");
  dim3 grid((n + kTile - 1) / kTile, (m + kTile - 1) / kTile);
  sgemm_kernel<<<grid, kThreads, 0, stream>>>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  ck(cudaGetLastError(), "sgemm");
}

void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc, cudaStream_t stream) {
  sgemm_v(sgemm_version(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stream);
}

bool int_linear_fused_enabled() {
  // Read once: the W4A8 integer linears' group loop runs as one launch unless
  // ODYSSEY_W4A8_INT_FUSED=0 asks for the per-group SGEMM + int_group_step path (bit-identical;
  // 1.58x slower at 4096x4096x4096 on the H200, runtime/NOTES.md "Session 10").
  static const bool on = [] {
    const char* e = std::getenv("ODYSSEY_W4A8_INT_FUSED");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

bool int_linear_fused(int m, int n, int k, int group_size, const float* x, int lda, const float* q, int ldb,
                      const short* sg, int ldsg, int32_t* acc32, int ldacc, cudaStream_t stream) {
  namespace S = sgemm2;
  if (m <= 0 || n <= 0 || k <= 0 || group_size <= 0 || group_size % S::kBK != 0 || group_size > 16384) return false;
  if ((m + S::kBM - 1) / S::kBM > 65535) return false;
  dim3 grid((n + S::kBN - 1) / S::kBN, (m + S::kBM - 1) / S::kBM);
  S::int_linear_kernel<<<grid, S::kThreads, 0, stream>>>(m, n, k, group_size, x, lda, q, ldb, sg, ldsg, acc32, ldacc,
                                                         S::vec16(x, lda), S::vec16(q, ldb));
  ck(cudaGetLastError(), "int_linear");
  return true;
}

void add_rmsnorm(float* h, const float* delta, const float* w, float eps, int rows, int cols, float* out,
                 cudaStream_t stream) {
  add_rmsnorm_kernel<<<rows, 256, 0, stream>>>(h, delta, w, eps, cols, out);
  ck(cudaGetLastError(), "add_rmsnorm");
}

void attention(const float* q, const float* k, const float* v, float* scores, float* out, int nw, const Dims& d,
               cudaStream_t stream) {
  const float scale = (float)(1.0 / std::sqrt((double)d.head_dim));  // Go: float32(1 / math.Sqrt(float64(hd)))
  dim3 grid(d.seq, nw * d.heads);
  attention_kernel<<<grid, 128, 0, stream>>>(q, k, v, scores, out, d.heads, d.heads / d.kv_heads, d.seq, d.head_dim,
                                             d.heads * d.head_dim, d.kv_heads * d.head_dim, d.sliding_window, scale);
  ck(cudaGetLastError(), "attention");
}

void swiglu(float* g, const float* u, size_t n, cudaStream_t stream) {
  swiglu_kernel<<<grid_for(n), 256, 0, stream>>>(g, u, n);
  ck(cudaGetLastError(), "swiglu");
}

void channel_blocks(const float* x, int rows, int cols, float* mn, float* mx, double* sumsq, cudaStream_t stream) {
  channel_blocks_kernel<<<(cols + 127) / 128, 128, 0, stream>>>(x, rows, cols, mn, mx, sumsq);
  ck(cudaGetLastError(), "channel_blocks");
}

void xtx_accumulate(const float* x, int rows, int cols, float* tmp32, double* acc64, cudaStream_t stream) {
  // calib.Stats.Add: Sgemm(true, false, cols, cols, rows, 1, x, cols, x, cols, 0, t, cols) per
  // chunk (the CPU computes the upper triangle in row blocks; every entry is the same
  // canonical dot, and fma(a, b) = fma(b, a), so the full matrix is its mirror).
  sgemm(true, false, cols, cols, rows, 1.0f, x, cols, x, cols, 0.0f, tmp32, cols, stream);
  widen_add_kernel<<<grid_for((size_t)cols * cols), 256, 0, stream>>>(tmp32, acc64, (size_t)cols * cols);
  ck(cudaGetLastError(), "widen_add");
}

void row_sumsq(const float* y, int rows, int cols, const float* bias, double* out_rows, cudaStream_t stream) {
  row_sumsq_kernel<<<(rows + 127) / 128, 128, 0, stream>>>(y, rows, cols, bias, out_rows);
  ck(cudaGetLastError(), "row_sumsq");
}

}  // namespace odyssey::calibgpu::f32::exact
