// calib_fp32.cu: the float32 layer forward and statistics of `odyssey-rt calib --precision
// fp32` (the default; fp16 is the executor-kernel path of calib_server.cu). Why: the fp16
// forward's statistics see fp16-rounded activations (2⁻¹¹ relative), which moved the
// GPU-calibrated artifacts' perplexity by up to 0.47% from the CPU-calibrated ones; the CPU
// pass computes in float32 (model/layer.go) and a float32-level difference moves it by ~0.03%.
//
// What it computes, as the Go code it mirrors (each kernel names its source):
//   - RMSNorm (model.RMSNorm): Σx² in fp64, variance = float32(Σ/n), scale =
//     float32(1/sqrt(float64(variance + float32(eps)))), out = w·(x·scale);
//   - linears: cuBLAS SGEMM (fp32 in and out, no TF32: the server's handle keeps
//     CUBLAS_DEFAULT_MATH), then + bias in fp32 (model.Dense.Forward);
//   - RoPE (model/rope.go): tables built on the host exactly as ropeTable.ensure;
//     x1' = x1·c − x2·s, x2' = x2·c + x1·s, each operation rounded (no FMA: __fmul_rn...);
//   - attention (model/layer.go attention): per (window, head) S = (1/√hd)·Q·Kᵀ by batched
//     SGEMM, softmax over the visible keys (causal, sliding window w: keys > pos − w) with the
//     max subtracted, e^(x−m) in fp64 rounded to fp32 (Go's exp32: within one fp32 ulp), Σ in
//     fp64, p = e·float32(1/Σ), hidden keys 0; out = P·V by batched SGEMM;
//   - SwiGLU: g = g / (1 + e^(−g)) · u (exp in fp64, rounded; each operation rounded);
//   - residual adds in fp32.
// Not bit-identical to Go (float32-level differences, which the issue accepts): SGEMM's
// summation order, e^x (correctly rounded here, ≤1 ulp in Go), fp64 sums in another order.
//
// Layout: every activation is fp32 row-major with row stride = its width (no padding).
// Limits: seq ≤ 65535/… is not an issue (grid.x over rows); scores take 4·nw·heads·seq² bytes
// (268 MB for 8 windows × 32 heads × 512²); one head_dim ≤ 1024 (RoPE's thread per pair).
// Test: `odyssey-rt test calib32` (cli/test_calib32.cu): a small random GQA layer with a
// sliding window against a host reference written from the same Go code, tolerances named
// there.
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "calib/calib_fp32.hpp"

namespace odyssey::calibgpu::f32 {

namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("calib fp32: ") + what + ": " + cudaGetErrorString(e));
}
void ckb(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string("calib fp32: ") + what + ": cuBLAS status " + std::to_string((int)s));
}
int grid_for(size_t n) { return (int)std::max<size_t>(1, std::min<size_t>((n + 255) / 256, 65535)); }
size_t align256(size_t b) { return (b + 255) / 256 * 256; }

// h += delta (when given), then out = RMSNorm(h)·w; one block of 256 per row.
__global__ void add_rmsnorm_kernel(float* __restrict__ h, const float* __restrict__ delta, const float* __restrict__ w,
                                   float eps, int cols, float* __restrict__ out) {
  __shared__ double s[256];
  float* hr = h + (size_t)blockIdx.x * cols;
  double ss = 0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    float v = hr[j];
    if (delta) {
      v = __fadd_rn(v, delta[(size_t)blockIdx.x * cols + j]);
      hr[j] = v;
    }
    ss += (double)v * (double)v;
  }
  s[threadIdx.x] = ss;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k /= 2) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (!out) return;
  const float variance = (float)(s[0] / (double)cols);
  const float scale = (float)(1.0 / sqrt((double)__fadd_rn(variance, eps)));
  float* o = out + (size_t)blockIdx.x * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) o[j] = __fmul_rn(w[j], __fmul_rn(hr[j], scale));
}

// RoPE on x [rows, heads·hd] in place; block per row, thread per (head, pair).
__global__ void rope_kernel(float* __restrict__ x, int heads, int hd, int seq, const float* __restrict__ cos_t,
                            const float* __restrict__ sin_t) {
  const int half = hd / 2;
  const int pos = blockIdx.x % seq;
  float* row = x + (size_t)blockIdx.x * heads * hd;
  for (int t = threadIdx.x; t < heads * half; t += blockDim.x) {
    const int h = t / half, i = t % half;
    float* v = row + h * hd;
    const float c = cos_t[pos * half + i], s = sin_t[pos * half + i];
    const float a = v[i], b = v[i + half];
    v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    v[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
  }
}

// Pointer arrays of the batched attention GEMMs, batch index b = window·heads + head:
// ptrs[0·B + b] = K block (kv head), [1·B + b] = Q block, [2·B + b] = S, [3·B + b] = V block,
// [4·B + b] = out block.
__global__ void attn_ptrs_kernel(const float** ptrs, const float* q, const float* k, const float* v, const float* s,
                                 const float* out, int nw, int heads, int group, int seq, int hd, int qd, int kvd) {
  const int B = nw * heads;
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int w = b / heads, h = b % heads, kvh = h / group;
  const size_t r0 = (size_t)w * seq;
  ptrs[b] = k + r0 * kvd + (size_t)kvh * hd;
  ptrs[B + b] = q + r0 * qd + (size_t)h * hd;
  ptrs[2 * B + b] = s + (size_t)b * seq * seq;
  ptrs[3 * B + b] = v + r0 * kvd + (size_t)kvh * hd;
  ptrs[4 * B + b] = out + r0 * qd + (size_t)h * hd;
}

// Softmax of each score row over its visible keys [lo, pos], the rest set to 0 (model/layer.go
// attention + softmaxInPlace): one warp per row of B·seq rows.
__global__ void softmax_rows_kernel(float* __restrict__ s, long long nrows, int seq, int window) {
  const long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= nrows) return;
  const int lane = threadIdx.x % 32;
  const int pos = (int)(row % seq);
  const int lo = window > 0 ? max(0, pos - window + 1) : 0, hi = pos + 1;
  float* r = s + row * seq;
  float m = -INFINITY;
  for (int j = lo + lane; j < hi; j += 32) m = fmaxf(m, r[j]);
  for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  double sum = 0;
  for (int j = lo + lane; j < hi; j += 32) {
    const float e = (float)exp((double)__fsub_rn(r[j], m));
    r[j] = e;
    sum += (double)e;
  }
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float inv = (float)(1.0 / sum);
  for (int j = lane; j < seq; j += 32) r[j] = (j >= lo && j < hi) ? __fmul_rn(r[j], inv) : 0.0f;
}

// g = g / (1 + e^(−g)) · u (model/mathutil.go swiglu).
__global__ void swiglu_kernel(float* __restrict__ g, const float* __restrict__ u, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float x = g[i];
    const float e = (float)exp(-(double)x);
    g[i] = __fmul_rn(__fdiv_rn(x, __fadd_rn(1.0f, e)), u[i]);
  }
}

__global__ void add_bias_kernel(float* y, int rows, int cols, const float* b) {
  const size_t n = (size_t)rows * cols;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = __fadd_rn(y[i], b[i % cols]);
}

__global__ void channel_partials_kernel(const float* __restrict__ x, int rows, int cols, float* pmin, float* pmax,
                                        double* psq) {
  __shared__ float smin[8][32], smax[8][32];
  __shared__ double ssq[8][32];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float mn = INFINITY, mx = -INFINITY;
  double sq = 0;
  if (c < cols) {
    for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += gridDim.y * 8) {
      const float v = x[(size_t)r * cols + c];
      mn = fminf(mn, v);
      mx = fmaxf(mx, v);
      sq += (double)v * (double)v;
    }
  }
  smin[threadIdx.y][threadIdx.x] = mn;
  smax[threadIdx.y][threadIdx.x] = mx;
  ssq[threadIdx.y][threadIdx.x] = sq;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int j = 1; j < 8; j++) {
      mn = fminf(mn, smin[j][threadIdx.x]);
      mx = fmaxf(mx, smax[j][threadIdx.x]);
      sq += ssq[j][threadIdx.x];
    }
    pmin[(size_t)blockIdx.y * cols + c] = mn;
    pmax[(size_t)blockIdx.y * cols + c] = mx;
    psq[(size_t)blockIdx.y * cols + c] = sq;
  }
}

__global__ void token_max_kernel(const float* __restrict__ x, int cols, float* tok) {
  __shared__ float s[256];
  const float* row = x + (size_t)blockIdx.x * cols;
  float m = 0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = fabsf(row[j]);
    m = (v > m || v != v) ? v : m;
  }
  s[threadIdx.x] = m;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      const float o = s[threadIdx.x + w];
      if (o > s[threadIdx.x] || o != o) s[threadIdx.x] = o;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) tok[blockIdx.x] = s[0];
}

__global__ void widen_add_kernel(const float* __restrict__ t, double* __restrict__ acc, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    acc[i] += (double)t[i];
}

__global__ void out_sumsq_kernel(const float* __restrict__ y, int rows, int cols, double* part) {
  __shared__ double s[256];
  double t = 0;
  for (int r = blockIdx.x; r < rows; r += gridDim.x)
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      const double v = y[(size_t)r * cols + j];
      t += v * v;
    }
  s[threadIdx.x] = t;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

// The int4 code of (c, k) in the FastGEMM layout (docs/fastgemm-layout.md): byte offset
// ((nb·(Kp/128) + kb)·32 + lane)·16 + step·4 + j, n = nb·8 + lane/4, low nibble
// k = kb·128 + step·32 + 4·(lane%4) + j, high nibble k + 16; 4-bit two's complement.
__device__ __forceinline__ int code_at(const unsigned char* qw, int c, int k, int kp) {
  const int nb = c / 8, kb = k / 128, kr = k % 128;
  const int step = kr / 32, r32 = kr % 32;
  const bool hi = r32 >= 16;
  const int r16 = r32 % 16, tig = r16 / 4, j = r16 % 4;
  const int lane = (c % 8) * 4 + tig;
  const unsigned char b = qw[(((size_t)nb * (kp / 128) + kb) * 32 + lane) * 16 + step * 4 + j];
  const int nib = hi ? (b >> 4) : (b & 15);
  return nib >= 8 ? nib - 16 : nib;
}

// mode 1: gs·q (float scales); 2: IntScaleWeight.Dequantize (see w4_int_dequant); 3: q alone
// (W4A8: the codes, whose integer or float group scales are applied per group after the SGEMM).
__global__ void weight_kernel(const unsigned char* __restrict__ qw, const void* __restrict__ gs, const float* cs,
                              const unsigned char* alpha_log2, int n, int np, int k, int kp, int group_size, int mode,
                              float* __restrict__ w) {
  const size_t total = (size_t)n * k;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int c = (int)(i / k), kk = (int)(i % k);
    const int q = code_at(qw, c, kk, kp);
    const size_t gi = (size_t)(kk / group_size) * np + c;
    float v;
    if (mode == 3) {
      v = (float)q;
    } else if (mode == 1) {
      v = __fmul_rn(static_cast<const float*>(gs)[gi], (float)q);
    } else {
      // IntScaleWeight: ChannelScale s_c = cs·2^(4+e) (exact); EffectiveScales f = s_c/α =
      // cs·16 (exact); eff = float32(ŝ)·f; w = eff·q.
      (void)alpha_log2;
      const float f = __fmul_rn(cs[c], 16.0f);
      const float eff = __fmul_rn((float)static_cast<const short*>(gs)[gi], f);
      v = __fmul_rn(eff, (float)q);
    }
    w[i] = v;
  }
}

// quant.QuantizeActValue / RowScale / ActScale: one block per row.
__global__ void quantize_act_kernel(const float* __restrict__ x, int k, const float* scale, float* __restrict__ codes,
                                    float* row_scale) {
  __shared__ float sm[256];
  const float* xr = x + (size_t)blockIdx.x * k;
  float s;
  if (scale) {
    s = *scale;
  } else {
    float m = 0;
    bool bad = false;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      const float a = fabsf(xr[j]);
      if (!(a <= 3.402823466e38f)) bad = true;
      m = fmaxf(m, a);
    }
    sm[threadIdx.x] = bad ? INFINITY : m;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
      if (threadIdx.x < w) sm[threadIdx.x] = fmaxf(sm[threadIdx.x], sm[threadIdx.x + w]);
      __syncthreads();
    }
    m = sm[0];
    if (!(m <= 3.402823466e38f)) {
      s = NAN;  // RowScale of a non-finite row: its outputs are NaN, the layer check reports it
    } else {
      s = m == 0 ? 1.0f : __fdiv_rn(m, 127.0f);
      if (s == 0) s = 1.0f;
    }
    if (threadIdx.x == 0) row_scale[blockIdx.x] = s;
  }
  float* o = codes + (size_t)blockIdx.x * k;
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const float v = rintf(__fdiv_rn(xr[j], s));
    o[j] = v != v ? 0.0f : fminf(fmaxf(v, -127.0f), 127.0f);
  }
}


// quant.QLinear's integer group step (engine.tile: combineFloatGo, toInt, combineInt), on one
// chunk of at most 16384 channels of a group: t = Σ x·q over the chunk, an exact integer in
// float32 (|t| ≤ 127·8·16384 < 2²⁴). p = int(t) (+ pg, the group's earlier chunks); on the
// group's last chunk acc = ŝ·p (first group) or acc += ŝ·p, in int32 arithmetic that wraps
// as Go's does (uint32 here: signed overflow is undefined in C++).
__global__ void int_group_step_kernel(int32_t* acc, int32_t* pg, const float* t, int rows, int n, const short* sg,
                                      bool first_chunk, bool last_chunk, bool first_group) {
  const size_t total = (size_t)rows * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t p = (uint32_t)__float2int_rz(t[i]);
    if (!first_chunk) p += (uint32_t)pg[i];
    if (!last_chunk) {
      pg[i] = (int32_t)p;
      continue;
    }
    const uint32_t v = (uint32_t)(int32_t)sg[i % n] * p;
    acc[i] = (int32_t)(first_group ? v : (uint32_t)acc[i] + v);
  }
}

// QLinear's epilogue on the integer accumulator: y = float32(16·acc) · (xs · f_c) (16·acc wraps
// in int32 as Int4Shift*a does), then + bias after the rounding.
__global__ void w4a8_int_epilogue_kernel(float* y, const int32_t* acc, int rows, int n, const float* xs_static,
                                         const float* row_scale, const float* f, const float* bias) {
  const size_t total = (size_t)rows * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / n), c = (int)(i % n);
    const float xs = xs_static ? *xs_static : row_scale[r];
    const float a = __int2float_rn((int32_t)(16u * (uint32_t)acc[i]));
    float v = __fmul_rn(a, __fmul_rn(xs, f[c]));
    if (bias) v = __fadd_rn(v, bias[c]);
    y[i] = v;
  }
}

__global__ void group_accumulate_kernel(float* acc, const float* t, int rows, int n, const float* sg, bool first) {
  const size_t total = (size_t)rows * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const float p = __fmul_rn(t[i], sg[i % n]);
    acc[i] = first ? p : __fadd_rn(acc[i], p);
  }
}

__global__ void float_scale_epilogue_kernel(float* y, const float* acc, int rows, int n, const float* xs_static,
                                            const float* row_scale, const float* bias) {
  const size_t total = (size_t)rows * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / n), c = (int)(i % n);
    const float xs = xs_static ? *xs_static : row_scale[r];
    float v = __fmul_rn(acc[i], xs);
    if (bias) v = __fadd_rn(v, bias[c]);
    y[i] = v;
  }
}

}  // namespace

size_t Scratch::bytes(const Dims& d, int max_windows) {
  const size_t rows = (size_t)max_windows * d.seq;
  const size_t qd = (size_t)d.heads * d.head_dim, kvd = (size_t)d.kv_heads * d.head_dim;
  const size_t H = d.hidden, I = d.intermediate;
  size_t b = 0;
  for (size_t w : {H, qd, kvd, kvd, qd, H, H, I, I, H}) b += align256(rows * w * 4);
  b += align256((size_t)max_windows * d.heads * d.seq * d.seq * 4);
  b += align256((size_t)5 * max_windows * d.heads * sizeof(float*));
  b += 2 * align256((size_t)d.seq * (d.head_dim / 2) * 4);
  return b;
}

void carve_scratch(Scratch& s, void* base, const Dims& d, int max_windows) {
  const size_t rows = (size_t)max_windows * d.seq;
  const size_t qd = (size_t)d.heads * d.head_dim, kvd = (size_t)d.kv_heads * d.head_dim;
  const size_t H = d.hidden, I = d.intermediate;
  char* p = static_cast<char*>(base);
  auto take = [&](size_t bytes) {
    char* r = p;
    p += align256(bytes);
    return r;
  };
  s.xa = (float*)take(rows * H * 4);
  s.q = (float*)take(rows * qd * 4);
  s.k = (float*)take(rows * kvd * 4);
  s.v = (float*)take(rows * kvd * 4);
  s.att = (float*)take(rows * qd * 4);
  s.yo = (float*)take(rows * H * 4);
  s.xm = (float*)take(rows * H * 4);
  s.g = (float*)take(rows * I * 4);
  s.u = (float*)take(rows * I * 4);
  s.yd = (float*)take(rows * H * 4);
  s.scores = (float*)take((size_t)max_windows * d.heads * d.seq * d.seq * 4);
  s.ptrs = (const float**)take((size_t)5 * max_windows * d.heads * sizeof(float*));
  s.cos = (const float*)take((size_t)d.seq * (d.head_dim / 2) * 4);
  s.sin = (const float*)take((size_t)d.seq * (d.head_dim / 2) * 4);
}

void rope_tables(const float* inv_freq, int half, int seq, float* cos_out, float* sin_out) {
  for (int p = 0; p < seq; p++)
    for (int i = 0; i < half; i++) {
      volatile float prod = inv_freq[i] * (float)p;  // rounded to float32, as Go's f*float32(p)
      const double a = (double)prod;
      cos_out[(size_t)p * half + i] = (float)std::cos(a);
      sin_out[(size_t)p * half + i] = (float)std::sin(a);
    }
}

void sgemm_xwT(cublasHandle_t cublas, const float* x, int rows, int k, const float* w, int n, float* y) {
  // Row-major y [rows, n] = x [rows, k] · Wᵀ is column-major yᶜ [n, rows] = Wᶜᵀ · xᶜ.
  const float one = 1.0f, zero = 0.0f;
  ckb(cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &one, w, k, x, k, &zero, y, n), "cublasSgemm");
}

void add_bias(float* y, int rows, int n, const float* b, cudaStream_t stream) {
  add_bias_kernel<<<grid_for((size_t)rows * n), 256, 0, stream>>>(y, rows, n, b);
  ck(cudaGetLastError(), "add_bias");
}

// The fp32 precision's attention (cuBLAS batched SGEMMs and softmax_rows_kernel).
static void attention_cublas(int nw, const Dims& d, const Scratch& s, cublasHandle_t cublas, cudaStream_t stream) {
  const int hd = d.head_dim, qd = d.heads * hd, kvd = d.kv_heads * hd;
  // Attention: S = scale·K·Qᵀ in column-major terms is row-major S[i][j] = scale·q_i·k_j.
  const int B = nw * d.heads, L = d.seq;
  attn_ptrs_kernel<<<(B + 127) / 128, 128, 0, stream>>>(s.ptrs, s.q, s.k, s.v, s.scores, s.att, nw, d.heads,
                                                        d.heads / d.kv_heads, L, hd, qd, kvd);
  ck(cudaGetLastError(), "attn_ptrs");
  const float scale = (float)(1.0 / std::sqrt((double)hd)), one = 1.0f, zero = 0.0f;
  ckb(cublasSgemmBatched(cublas, CUBLAS_OP_T, CUBLAS_OP_N, L, L, hd, &scale, s.ptrs, kvd, s.ptrs + B, qd, &zero,
                         const_cast<float**>(s.ptrs + 2 * B), L, B),
      "cublasSgemmBatched QK");
  const long long nrows = (long long)B * L;
  softmax_rows_kernel<<<(unsigned)((nrows + 7) / 8), 256, 0, stream>>>(s.scores, nrows, L, d.sliding_window);
  ck(cudaGetLastError(), "softmax");
  // out [L, hd] (row stride qd) = P [L, L] · V [L, hd]: column-major outᶜ = Vᶜ · Pᶜ.
  ckb(cublasSgemmBatched(cublas, CUBLAS_OP_N, CUBLAS_OP_N, hd, L, L, &one, s.ptrs + 3 * B, kvd, s.ptrs + 2 * B, L, &zero,
                         const_cast<float**>(s.ptrs + 4 * B), qd, B),
      "cublasSgemmBatched PV");
}

void forward_chunk(float* h, int nw, const Dims& d, const float* attn_norm, const float* mlp_norm, const LinearFn& linear,
                   const ObserveFn& observe, const Scratch& s, cublasHandle_t cublas, cudaStream_t stream) {
  const int rows = nw * d.seq, H = d.hidden, hd = d.head_dim;
  const int qd = d.heads * hd, I = d.intermediate;
  const float eps = (float)d.eps;
  if (d.exact) {
    exact::add_rmsnorm(h, nullptr, attn_norm, eps, rows, H, s.xa, stream);
  } else {
    add_rmsnorm_kernel<<<rows, 256, 0, stream>>>(h, nullptr, attn_norm, eps, H, s.xa);
    ck(cudaGetLastError(), "rmsnorm");
  }
  if (observe) observe(0, s.xa, rows, H);
  linear(0, s.xa, rows, s.q);
  linear(1, s.xa, rows, s.k);
  linear(2, s.xa, rows, s.v);
  rope_kernel<<<rows, 256, 0, stream>>>(s.q, d.heads, hd, d.seq, s.cos, s.sin);
  rope_kernel<<<rows, 256, 0, stream>>>(s.k, d.kv_heads, hd, d.seq, s.cos, s.sin);
  ck(cudaGetLastError(), "rope");
  if (d.exact) {
    exact::attention(s.q, s.k, s.v, s.scores, s.att, nw, d, stream);
  } else {
    attention_cublas(nw, d, s, cublas, stream);
  }
  if (observe) observe(1, s.att, rows, qd);
  linear(3, s.att, rows, s.yo);
  if (d.exact) {
    exact::add_rmsnorm(h, s.yo, mlp_norm, eps, rows, H, s.xm, stream);
  } else {
    add_rmsnorm_kernel<<<rows, 256, 0, stream>>>(h, s.yo, mlp_norm, eps, H, s.xm);
    ck(cudaGetLastError(), "rmsnorm");
  }
  if (observe) observe(2, s.xm, rows, H);
  linear(4, s.xm, rows, s.g);
  linear(5, s.xm, rows, s.u);
  if (d.exact) {
    exact::swiglu(s.g, s.u, (size_t)rows * I, stream);
  } else {
    swiglu_kernel<<<grid_for((size_t)rows * I), 256, 0, stream>>>(s.g, s.u, (size_t)rows * I);
    ck(cudaGetLastError(), "swiglu");
  }
  if (observe) observe(3, s.g, rows, I);
  linear(6, s.g, rows, s.yd);
  if (d.exact) {
    exact::add_rmsnorm(h, s.yd, mlp_norm, eps, rows, H, nullptr, stream);
  } else {
    add_rmsnorm_kernel<<<rows, 256, 0, stream>>>(h, s.yd, mlp_norm, eps, H, nullptr);
    ck(cudaGetLastError(), "residual add");
  }
}

void channel_partials(const float* x, int rows, int cols, int splits, float* pmin, float* pmax, double* psq,
                      cudaStream_t stream) {
  dim3 grid((cols + 31) / 32, splits), block(32, 8);
  channel_partials_kernel<<<grid, block, 0, stream>>>(x, rows, cols, pmin, pmax, psq);
  ck(cudaGetLastError(), "channel_partials");
}

void token_max(const float* x, int rows, int cols, float* tok, cudaStream_t stream) {
  token_max_kernel<<<rows, 256, 0, stream>>>(x, cols, tok);
  ck(cudaGetLastError(), "token_max");
}

void xtx_accumulate(cublasHandle_t cublas, const float* x, int rows, int cols, float* tmp32, double* acc64,
                    cudaStream_t stream) {
  // Row-major X [rows, cols] is column-major Xᶜ [cols, rows]; XᵀX = Xᶜ·Xᶜᵀ (symmetric).
  const float one = 1.0f, zero = 0.0f;
  ckb(cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_T, cols, cols, rows, &one, x, cols, x, cols, &zero, tmp32, cols),
      "cublasSgemm XtX");
  widen_add_kernel<<<grid_for((size_t)cols * cols), 256, 0, stream>>>(tmp32, acc64, (size_t)cols * cols);
  ck(cudaGetLastError(), "widen_add");
}

void out_sumsq(const float* y, int rows, int cols, int blocks, double* part, cudaStream_t stream) {
  out_sumsq_kernel<<<blocks, 256, 0, stream>>>(y, rows, cols, part);
  ck(cudaGetLastError(), "out_sumsq");
}


void w4_float_weight(const unsigned char* qweight, const float* group_scale, int n, int np, int k, int kp,
                     int group_size, float* w, cudaStream_t stream) {
  weight_kernel<<<grid_for((size_t)n * k), 256, 0, stream>>>(qweight, group_scale, nullptr, nullptr, n, np, k, kp,
                                                             group_size, 1, w);
  ck(cudaGetLastError(), "w4_float_weight");
}

void w4_int_dequant(const unsigned char* qweight, const short* group_scale, const float* channel_scale,
                    const unsigned char* alpha_log2, int n, int np, int k, int kp, int group_size, float* w,
                    cudaStream_t stream) {
  weight_kernel<<<grid_for((size_t)n * k), 256, 0, stream>>>(qweight, group_scale, channel_scale, alpha_log2, n, np, k,
                                                             kp, group_size, 2, w);
  ck(cudaGetLastError(), "w4_int_dequant");
}

void w4_codes(const unsigned char* qweight, int n, int k, int kp, float* codes, cudaStream_t stream) {
  weight_kernel<<<grid_for((size_t)n * k), 256, 0, stream>>>(qweight, nullptr, nullptr, nullptr, n, 0, k, kp, 1 << 30, 3,
                                                             codes);
  ck(cudaGetLastError(), "w4_codes");
}

void sgemm_xwT_ld(cublasHandle_t cublas, const float* x, int ldx, int rows, int k, const float* w, int ldw, int n,
                  float* y) {
  const float one = 1.0f, zero = 0.0f;
  ckb(cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &one, w, ldw, x, ldx, &zero, y, n), "cublasSgemm");
}

void group_accumulate(float* acc, const float* t, int rows, int n, const float* sg, bool first, cudaStream_t stream) {
  group_accumulate_kernel<<<grid_for((size_t)rows * n), 256, 0, stream>>>(acc, t, rows, n, sg, first);
  ck(cudaGetLastError(), "group_accumulate");
}

void int_group_step(int32_t* acc, int32_t* pg, const float* t, int rows, int n, const short* sg, bool first_chunk,
                    bool last_chunk, bool first_group, cudaStream_t stream) {
  int_group_step_kernel<<<grid_for((size_t)rows * n), 256, 0, stream>>>(acc, pg, t, rows, n, sg, first_chunk,
                                                                        last_chunk, first_group);
  ck(cudaGetLastError(), "int_group_step");
}

void w4a8_int_epilogue(float* y, const int32_t* acc, int rows, int n, const float* xs_static, const float* row_scale,
                       const float* f, const float* bias, cudaStream_t stream) {
  w4a8_int_epilogue_kernel<<<grid_for((size_t)rows * n), 256, 0, stream>>>(y, acc, rows, n, xs_static, row_scale, f,
                                                                           bias);
  ck(cudaGetLastError(), "w4a8_int_epilogue");
}

void float_scale_epilogue(float* y, const float* acc, int rows, int n, const float* xs_static, const float* row_scale,
                          const float* bias, cudaStream_t stream) {
  float_scale_epilogue_kernel<<<grid_for((size_t)rows * n), 256, 0, stream>>>(y, acc, rows, n, xs_static, row_scale,
                                                                              bias);
  ck(cudaGetLastError(), "float_scale_epilogue");
}

void quantize_act(const float* x, int rows, int k, const float* scale, float* codes, float* row_scale,
                  cudaStream_t stream) {
  quantize_act_kernel<<<rows, 256, 0, stream>>>(x, k, scale, codes, row_scale);
  ck(cudaGetLastError(), "quantize_act");
}


}  // namespace odyssey::calibgpu::f32
