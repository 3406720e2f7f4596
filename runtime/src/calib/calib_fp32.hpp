// calib_fp32.hpp: the float32 forward of one decoder layer for `odyssey-rt calib --precision
// fp32` (the default), computed as the CPU pass computes it (model/layer.go Layer.Forward,
// model/mathutil.go, model/rope.go, calib/stats.go), and the float32 statistics kernels.
// Implementation and the list of what is (and is not) bit-identical to Go: calib_fp32.cu.
// Test: `odyssey-rt test calib32` (cli/test_calib32.cu), a small random layer against a host
// reference written from the same Go code.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace odyssey::calibgpu::f32 {

// The layer's shape (model config) and the chunk's windows.
struct Dims {
  int hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  int seq = 0;             // tokens per window (every window starts at position 0)
  int sliding_window = 0;  // 0: none
  double eps = 1e-6;       // RMSNorm epsilon (Go: float32(eps) added to the float32 variance)
  // --precision exact: forward_chunk runs RMSNorm, attention and SwiGLU with calib_exact.cu's
  // canonical kernels (the linears are the caller's LinearFn, which must use exact::sgemm).
  bool exact = false;
};

// Linear indices, as exec::kQ... (q, k, v, o, gate, up, down).
constexpr int kLinears = 7;

// y [rows, n] = the linear lin applied to x [rows, k] (row strides n and k). The float layer's
// is SGEMM + bias; advance_quantized's is the artifact's fake-quant arithmetic.
using LinearFn = std::function<void(int lin, const float* x, int rows, float* y)>;
// Called with each of the four linear inputs (0 q/k/v, 1 o, 2 gate/up, 3 down) as the linears
// read it, [rows, cols] row-major; nullptr: none.
using ObserveFn = std::function<void(int input, const float* x, int rows, int cols)>;

// Device scratch for a chunk of up to max_rows rows (all fp32).
struct Scratch {
  float *xa = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *yo = nullptr;
  float *xm = nullptr, *g = nullptr, *u = nullptr, *yd = nullptr;
  float* scores = nullptr;           // [max_windows·heads, seq, seq]
  const float** ptrs = nullptr;      // 3 · max_windows·heads device pointers (batched SGEMM)
  const float *cos = nullptr, *sin = nullptr;  // [seq, head_dim/2] RoPE tables (rope_tables)
  // Bytes for one chunk of max_windows windows (what alloc_scratch takes).
  static size_t bytes(const Dims& d, int max_windows);
};
// Carves s out of one allocation of Scratch::bytes(d, max_windows) bytes (256-byte aligned).
void carve_scratch(Scratch& s, void* base, const Dims& d, int max_windows);

// The RoPE tables as model/rope.go ropeTable.ensure builds them: a = float64(inv·float32(p))
// (the product in float32), cos/sin in float64 rounded to float32. [seq, half] row-major.
void rope_tables(const float* inv_freq, int half, int seq, float* cos_out, float* sin_out);

// One chunk of nw windows (rows = nw·seq) of the residual stream h [rows, hidden] through the
// layer, in place: RMSNorm (attn_norm), q/k/v, RoPE, causal GQA attention with the sliding
// window, o, residual add, RMSNorm (mlp_norm), gate/up, SwiGLU, down, residual add. All in
// float32 as Layer.Forward; observe sees each linear input.
void forward_chunk(float* h, int nw, const Dims& d, const float* attn_norm, const float* mlp_norm, const LinearFn& linear,
                   const ObserveFn& observe, const Scratch& s, cublasHandle_t cublas, cudaStream_t stream);

// y = x·Wᵀ (cuBLAS SGEMM, no TF32: the handle's math mode must be CUBLAS_DEFAULT_MATH or
// pedantic), W fp32 [n, k] row-major.
void sgemm_xwT(cublasHandle_t cublas, const float* x, int rows, int k, const float* w, int n, float* y);
// y[r, c] += b[c] (float32 add, as Dense.Forward).
void add_bias(float* y, int rows, int n, const float* b, cudaStream_t stream);

// ---- statistics of a float32 input x [rows, cols] (the fp16 path's kernels, on floats)
// Per-channel min/max (fp32) and Σx² (fp64) partials of kSplits row splits.
void channel_partials(const float* x, int rows, int cols, int splits, float* pmin, float* pmax, double* psq,
                      cudaStream_t stream);
// tok[r] = max_j |x[r, j]| (NaN propagates).
void token_max(const float* x, int rows, int cols, float* tok, cudaStream_t stream);
// acc64 [cols, cols] += Xᵀ·X of this chunk: one SGEMM into tmp32 (fp32, as calib.Stats.Add's
// per-chunk float32 product), then widened and added in fp64.
void xtx_accumulate(cublasHandle_t cublas, const float* x, int rows, int cols, float* tmp32, double* acc64,
                    cudaStream_t stream);
// part[b] = Σ y² over rows b, b + blocks, ... (fixed grid: deterministic).
void out_sumsq(const float* y, int rows, int cols, int blocks, double* part, cudaStream_t stream);

// ---- the artifact's fake-quant arithmetic (quant.QLinear, qresult), for advance_quantized
// Dequantized weight with float group scales: w[c, k] = gs[g(k), c] · q[c, k] (fp32 [G, np]).
void w4_float_weight(const unsigned char* qweight, const float* group_scale, int n, int np, int k, int kp,
                     int group_size, float* w, cudaStream_t stream);
// Integer-scale weight dequantized (W4A16 with integer scales: IntScaleWeight.Dequantize):
// w[c, k] = (float)(ŝ·q) · s_c where s_c = channel_scale[c] · 2^(4 + alpha_log2[c]).
void w4_int_dequant(const unsigned char* qweight, const short* group_scale, const float* channel_scale,
                    const unsigned char* alpha_log2, int n, int np, int k, int kp, int group_size, float* w,
                    cudaStream_t stream);
// The int4 codes alone as floats, [n, k] (W4A8 with float group scales).
void w4_codes(const unsigned char* qweight, int n, int k, int kp, float* codes, cudaStream_t stream);
// y [rows, n] (row stride n) = x [rows, k] (row stride ldx) · Wᵀ, W [n, k] with row stride ldw.
void sgemm_xwT_ld(cublasHandle_t cublas, const float* x, int ldx, int rows, int k, const float* w, int ldw, int n,
                  float* y);
// qresult.FloatScaleLinear's group step: acc = float32(t·s_g) (first) or acc += float32(t·s_g),
// s_g [n] the group's scales.
void group_accumulate(float* acc, const float* t, int rows, int n, const float* sg, bool first, cudaStream_t stream);
// QLinear's integer group step on a chunk (≤ 16384 channels) of group g: t = the chunk's Σ x·q
// (exact integers in float32); p = int(t) + pg (pg: the group's earlier chunks, unless
// first_chunk); not last_chunk: pg = p; else acc = ŝ_g·p (first_group) or acc += ŝ_g·p, int32
// wrapping; sg = the group's integer scales [n].
void int_group_step(int32_t* acc, int32_t* pg, const float* t, int rows, int n, const short* sg, bool first_chunk,
                    bool last_chunk, bool first_group, cudaStream_t stream);
// QLinear's epilogue on the int32 accumulator: y = float32(16·acc) · (xs · f_c), then + bias.
void w4a8_int_epilogue(float* y, const int32_t* acc, int rows, int n, const float* xs_static, const float* row_scale,
                       const float* f, const float* bias, cudaStream_t stream);
// FloatScaleLinear's epilogue: y = float32(acc·xs), then + bias.
void float_scale_epilogue(float* y, const float* acc, int rows, int n, const float* xs_static, const float* row_scale,
                          const float* bias, cudaStream_t stream);
// Activation int8 codes as floats: static scale (scale != nullptr: *scale) or per token
// (row_scale[r] = RowScale(x[r]) written). quant.QuantizeActValue: roundEven(x/s) clamped ±127.
void quantize_act(const float* x, int rows, int k, const float* scale, float* codes, float* row_scale,
                  cudaStream_t stream);

// ---- --precision exact (calib_exact.cu): the CPU's canonical arithmetic (canonical.hpp), bit
// for bit. Every function is a stream-ordered launch.
namespace exact {
// gemm.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), row-major, k ≥ 1.
void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc, cudaStream_t stream);
// The same with the kernel named: 1 the first (64×64 tile), 2 exact_sgemm2.cuh (128×128); the
// result is the same bit for bit. sgemm() runs 2 unless ODYSSEY_EXACT_SGEMM=1: sgemm_version().
void sgemm_v(int version, bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
             int ldb, float beta, float* c, int ldc, cudaStream_t stream);
int sgemm_version();
// quant.QLinear's integer group loop in one launch (exact_sgemm2.cuh int_linear_kernel): acc32
// [m, n] = Σ_g ŝ[g]·P_g in int32 (wrapping), P_g the group's Σ x·q over the integer codes x [m, k]
// (row stride lda) and q [n, k] (row stride ldb); ŝ [G, ldsg]. Bit for bit the per-group SGEMM +
// int_group_step path. Returns false (nothing launched) where it does not apply: group_size not
// a multiple of 8 or above 16384. int_linear_fused_enabled(): on unless ODYSSEY_W4A8_INT_FUSED=0.
bool int_linear_fused(int m, int n, int k, int group_size, const float* x, int lda, const float* q, int ldb,
                      const short* sg, int ldsg, int32_t* acc32, int ldacc, cudaStream_t stream);
bool int_linear_fused_enabled();
// h += delta (delta may be nullptr), then out = model.RMSNorm(h)·w (out nullptr: the add alone).
void add_rmsnorm(float* h, const float* delta, const float* w, float eps, int rows, int cols, float* out,
                 cudaStream_t stream);
// model/layer.go attention of nw windows: q [rows, heads·hd] and k [rows, kv·hd] after RoPE,
// v [rows, kv·hd]; scores is scratch of nw·heads·seq² floats; out [rows, heads·hd].
void attention(const float* q, const float* k, const float* v, float* scores, float* out, int nw, const Dims& d,
               cudaStream_t stream);
// g = silu(g)·u (model/mathutil.go swiglu).
void swiglu(float* g, const float* u, size_t n, cudaStream_t stream);
// The per-channel statistics of one chunk x [rows, cols] merged into mn, mx (start: +inf,
// −inf) and sumsq as calib.Stats.Add: per 64-row block Σx² from 0 and min/max from the block's
// first row, the blocks merged in order.
void channel_blocks(const float* x, int rows, int cols, float* mn, float* mx, double* sumsq, cudaStream_t stream);
// acc64 [cols, cols] += float64(XᵀX of the chunk), the product by sgemm (tmp32: cols² floats).
void xtx_accumulate(const float* x, int rows, int cols, float* tmp32, double* acc64, cudaStream_t stream);
// out_rows[r] = Σ_j float64(y[r, j] − bias[j])² in column order (bias may be nullptr), as
// calib.OutputStats.add's per-row sum; the caller adds the rows in order.
void row_sumsq(const float* y, int rows, int cols, const float* bias, double* out_rows, cudaStream_t stream);
}  // namespace exact

}  // namespace odyssey::calibgpu::f32
