// test_calib32.cpp: `odyssey-rt test calib32 [--seed N] [--no-bench]`, the fp32 calibration
// forward and statistics (calib/calib_fp32.cu, `odyssey-rt calib --precision fp32`) against a
// host reference written here in plain C++ from the Go code they mirror: model/layer.go
// Layer.Forward (RMSNorm with the fp64 sum of squares, RoPE tables as ropeTable.ensure, causal
// GQA attention with a sliding window, softmax with the max subtracted and an fp64 sum,
// SwiGLU), calib/stats.go (min, max, Σx², token max, XᵀX), quant.QLinear (W4A8 integer scales,
// static and per-token activations) and the W4A16 dequantization.
//
// Tolerances (named, and why):
//   - kRelTol = 2e-5 on every forward tensor (q/k/v inputs, attention output, gate/up input,
//     down input, the layer output), as max|gpu − ref| / max|ref| per tensor: the reference
//     sums its dot products in fp64 and rounds once, cuBLAS SGEMM sums in fp32 (length ≤ 224
//     here: ≲ 224·2⁻²⁴ ≈ 1.3e-5 worst case, ~1e-6 typical), and e^x differs by ≤ 1 ulp. An fp16
//     forward (the old path) is off by ~2⁻¹¹ ≈ 5e-4 and fails this bound by 25×, so the test
//     tells the precisions apart.
//   - the statistics of those tensors: the same kRelTol (min, max, token max, relative to the
//     largest |value|), Σx² and XᵀX relative to their largest entry.
//   - W4A8 integer-scale linear: bit-exact (|16·acc| < 2²⁴ here, so the SGEMM of exact
//     integers is exact, and the epilogue is QLinear's two roundings); W4A8 float-scale linear
//     bit-exact (FloatScaleLinear's per-group sums are exact integers, then the same roundings);
//     activation codes and per-token scales bit-exact; W4A16 weights (float and integer
//     scales) bit-exact.
// The bench line times one 7B-shaped chunk (4096 rows of 8 windows × 512, hidden 4096, 32/32
// heads, intermediate 11008; median of 5 after a warm-up, CUDA events) and projects the 7B
// collect time: × 16 chunks (128 windows) × 32 layers.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "calib/calib_fp32.hpp"
#include "common.hpp"

namespace odyssey {
namespace {

namespace F = calibgpu::f32;

constexpr double kRelTol = 2e-5;

// CK: common.hpp's checked CUDA call.


// ---- host reference (model/layer.go, model/mathutil.go, model/rope.go)

void ref_rmsnorm(std::vector<float>& out, const std::vector<float>& x, const std::vector<float>& w, int rows, int n,
                 double eps) {
  out.assign((size_t)rows * n, 0);
  for (int r = 0; r < rows; r++) {
    double ss = 0;
    for (int j = 0; j < n; j++) ss += (double)x[(size_t)r * n + j] * (double)x[(size_t)r * n + j];
    const float variance = (float)(ss / (double)n);
    const float scale = (float)(1.0 / std::sqrt((double)(variance + (float)eps)));
    for (int j = 0; j < n; j++) out[(size_t)r * n + j] = w[j] * (x[(size_t)r * n + j] * scale);
  }
}

// y = x·Wᵀ + b, each dot product in fp64 rounded once.
void ref_linear(std::vector<float>& y, const std::vector<float>& x, const std::vector<float>& w, const float* b, int rows,
                int k, int n) {
  y.assign((size_t)rows * n, 0);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < n; c++) {
      double s = 0;
      for (int j = 0; j < k; j++) s += (double)x[(size_t)r * k + j] * (double)w[(size_t)c * k + j];
      float v = (float)s;
      if (b) v += b[c];
      y[(size_t)r * n + c] = v;
    }
}

void ref_rope(std::vector<float>& x, int rows, int seq, int heads, int hd, const std::vector<float>& cs,
              const std::vector<float>& sn) {
  const int half = hd / 2;
  for (int r = 0; r < rows; r++) {
    const int pos = r % seq;
    for (int h = 0; h < heads; h++) {
      float* v = &x[(size_t)r * heads * hd + (size_t)h * hd];
      for (int i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half], c = cs[(size_t)pos * half + i], s = sn[(size_t)pos * half + i];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

void ref_attention(std::vector<float>& out, const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, int nw, int seq, int nh, int nkv, int hd, int window) {
  const int qs = nh * hd, kvs = nkv * hd, group = nh / nkv;
  const float scale = (float)(1 / std::sqrt((double)hd));
  out.assign((size_t)nw * seq * qs, 0);
  std::vector<float> p(seq);
  for (int b = 0; b < nw; b++)
    for (int h = 0; h < nh; h++)
      for (int i = 0; i < seq; i++) {
        const int lo = window > 0 ? std::max(0, i - window + 1) : 0, hi = i + 1;
        const float* qi = &q[((size_t)b * seq + i) * qs + (size_t)h * hd];
        float m = -INFINITY;
        for (int j = lo; j < hi; j++) {
          const float* kj = &k[((size_t)b * seq + j) * kvs + (size_t)(h / group) * hd];
          double s = 0;
          for (int d = 0; d < hd; d++) s += (double)qi[d] * kj[d];
          p[j] = (float)((float)s * scale);
          m = std::max(m, p[j]);
        }
        double sum = 0;
        for (int j = lo; j < hi; j++) {
          p[j] = (float)std::exp((double)(p[j] - m));
          sum += p[j];
        }
        const float inv = (float)(1 / sum);
        for (int j = lo; j < hi; j++) p[j] *= inv;
        for (int d = 0; d < hd; d++) {
          double s = 0;
          for (int j = lo; j < hi; j++) s += (double)p[j] * v[((size_t)b * seq + j) * kvs + (size_t)(h / group) * hd + d];
          out[((size_t)b * seq + i) * qs + (size_t)h * hd + d] = (float)s;
        }
      }
}

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double mx = 0, err = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    mx = std::max(mx, (double)std::fabs(ref[i]));
    const double e = std::fabs((double)got[i] - (double)ref[i]);
    if (!(e <= err)) err = e;  // NaN sticks
  }
  return mx > 0 ? err / mx : err;
}

struct Report {
  int failed = 0;
  void check(const std::string& name, double err, double tol) {
    const bool ok = err <= tol;
    std::fprintf(stderr, "%-56s rel err %.3g (tol %.3g) %s\n", name.c_str(), err, tol, ok ? "ok" : "FAIL");
    if (!ok) failed++;
  }
  void exact(const std::string& name, size_t mismatches, size_t total) {
    std::fprintf(stderr, "%-56s %zu of %zu differ (bit-exact) %s\n", name.c_str(), mismatches, total,
                 mismatches ? "FAIL" : "ok");
    if (mismatches) failed++;
  }
};

// The forward and statistics of a small random layer.
void test_forward(uint64_t seed, Report& rep) {
  F::Dims d;
  d.hidden = 128;
  d.heads = 4;
  d.kv_heads = 2;
  d.head_dim = 32;
  d.intermediate = 224;
  d.seq = 48;
  d.sliding_window = 20;
  d.eps = 1e-5;
  const int nw = 3, rows = nw * d.seq, H = d.hidden, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  const int I = d.intermediate;
  Rng rng(seed);
  auto vec = [&](size_t n, float a, float b) {
    std::vector<float> v(n);
    for (float& x : v) x = rng.uniform(a, b);
    return v;
  };
  const int ns[7] = {qd, kvd, kvd, H, I, I, H}, ks[7] = {H, H, H, qd, H, H, I};
  std::vector<float> w[7], bias[7];
  for (int l = 0; l < 7; l++) {
    const float a = (float)(1.7 / std::sqrt((double)ks[l]));
    w[l] = vec((size_t)ns[l] * ks[l], -a, a);
    if (l < 3) bias[l] = vec(ns[l], -0.1f, 0.1f);  // Qwen2-style q/k/v biases
  }
  std::vector<float> an = vec(H, 0.8f, 1.2f), mn = vec(H, 0.8f, 1.2f), h0 = vec((size_t)rows * H, -2, 2);
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < H; j += 37) h0[(size_t)r * H + j] *= 20;  // a few outlier channels
  std::vector<float> inv(d.head_dim / 2);
  for (int i = 0; i < d.head_dim / 2; i++) inv[i] = (float)(1.0 / std::pow(10000.0, 2.0 * i / d.head_dim));
  std::vector<float> cs((size_t)d.seq * d.head_dim / 2), sn(cs.size());
  F::rope_tables(inv.data(), d.head_dim / 2, d.seq, cs.data(), sn.data());

  // Host reference.
  std::vector<float> h = h0, xa, q, k, v, att, yo, xm, g, u, yd;
  ref_rmsnorm(xa, h, an, rows, H, d.eps);
  ref_linear(q, xa, w[0], bias[0].data(), rows, H, qd);
  ref_linear(k, xa, w[1], bias[1].data(), rows, H, kvd);
  ref_linear(v, xa, w[2], bias[2].data(), rows, H, kvd);
  ref_rope(q, rows, d.seq, d.heads, d.head_dim, cs, sn);
  ref_rope(k, rows, d.seq, d.kv_heads, d.head_dim, cs, sn);
  ref_attention(att, q, k, v, nw, d.seq, d.heads, d.kv_heads, d.head_dim, d.sliding_window);
  ref_linear(yo, att, w[3], nullptr, rows, qd, H);
  for (size_t i = 0; i < h.size(); i++) h[i] += yo[i];
  ref_rmsnorm(xm, h, mn, rows, H, d.eps);
  ref_linear(g, xm, w[4], nullptr, rows, H, I);
  ref_linear(u, xm, w[5], nullptr, rows, H, I);
  for (size_t i = 0; i < g.size(); i++) {
    const float x = g[i];
    g[i] = x / (1 + (float)std::exp(-(double)x)) * u[i];
  }
  ref_linear(yd, g, w[6], nullptr, rows, I, H);
  for (size_t i = 0; i < h.size(); i++) h[i] += yd[i];
  const std::vector<float>* ref_in[4] = {&xa, &att, &xm, &g};
  const int in_w[4] = {H, qd, H, I};

  // Device.
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  cublasHandle_t cublas;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate");
  cublasSetStream(cublas, stream);
  cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH);
  Buf<uint8_t> ws(F::Scratch::bytes(d, nw));
  F::Scratch s;
  F::carve_scratch(s, ws.p, d, nw);
  CK(cudaMemcpy(const_cast<float*>(s.cos), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(const_cast<float*>(s.sin), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
  std::vector<std::unique_ptr<Buf<float>>> dw, db;
  for (int l = 0; l < 7; l++) {
    dw.emplace_back(new Buf<float>(w[l]));
    db.emplace_back(bias[l].empty() ? nullptr : new Buf<float>(bias[l]));
  }
  Buf<float> dan(an), dmn(mn), dh(h0);
  std::vector<std::vector<float>> seen(4);
  // Statistics accumulators, as the server's stats32 (one chunk here).
  const int splits = 4;
  Buf<float> pmin((size_t)splits * I), pmax((size_t)splits * I), tok((size_t)rows), tmp((size_t)I * I);
  Buf<double> psq((size_t)splits * I);
  std::vector<std::vector<float>> smin(4), smax(4), stok(4);
  std::vector<std::vector<double>> ssq(4), sxtx(4);
  F::LinearFn linear = [&](int l, const float* x, int r, float* y) {
    F::sgemm_xwT(cublas, x, r, ks[l], dw[l]->p, ns[l], y);
    if (db[l]) F::add_bias(y, r, ns[l], db[l]->p, stream);
  };
  F::ObserveFn observe = [&](int in, const float* x, int r, int cols) {
    Buf<float> copy((size_t)r * cols);
    CK(cudaMemcpyAsync(copy.p, x, (size_t)r * cols * 4, cudaMemcpyDeviceToDevice, stream));
    F::channel_partials(x, r, cols, splits, pmin.p, pmax.p, psq.p, stream);
    F::token_max(x, r, cols, tok.p, stream);
    Buf<double> acc((size_t)cols * cols);
    CK(cudaMemsetAsync(acc.p, 0, (size_t)cols * cols * 8, stream));
    F::xtx_accumulate(cublas, x, r, cols, tmp.p, acc.p, stream);
    CK(cudaStreamSynchronize(stream));
    seen[in] = copy.get();
    std::vector<float> a = pmin.get(), b = pmax.get();
    std::vector<double> c = psq.get();
    smin[in].assign(cols, INFINITY);
    smax[in].assign(cols, -INFINITY);
    ssq[in].assign(cols, 0);
    for (int sp = 0; sp < splits; sp++)
      for (int j = 0; j < cols; j++) {
        smin[in][j] = std::min(smin[in][j], a[(size_t)sp * cols + j]);
        smax[in][j] = std::max(smax[in][j], b[(size_t)sp * cols + j]);
        ssq[in][j] += c[(size_t)sp * cols + j];
      }
    stok[in] = tok.get();
    stok[in].resize(r);
    sxtx[in] = acc.get();
  };
  F::forward_chunk(dh.p, nw, d, dan.p, dmn.p, linear, observe, s, cublas, stream);
  CK(cudaStreamSynchronize(stream));
  const std::vector<float> hg = dh.get();
  const char* names[4] = {"q/k/v input (attn RMSNorm)", "o input (attention)", "gate/up input (mlp RMSNorm)",
                          "down input (SwiGLU)"};
  for (int in = 0; in < 4; in++) {
    const std::vector<float>& r = *ref_in[in];
    const int cols = in_w[in];
    rep.check(std::string("forward ") + names[in], rel_err(seen[in], r), kRelTol);
    // Reference statistics of the reference tensor.
    std::vector<float> rmin(cols, INFINITY), rmax(cols, -INFINITY), rtok(rows, 0);
    std::vector<double> rsq(cols, 0), rx((size_t)cols * cols, 0);
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) {
        const float x = r[(size_t)i * cols + j];
        rmin[j] = std::min(rmin[j], x);
        rmax[j] = std::max(rmax[j], x);
        rsq[j] += (double)x * x;
        rtok[i] = std::max(rtok[i], std::fabs(x));
      }
    for (int a = 0; a < cols; a++)
      for (int b = 0; b < cols; b++) {
        double t = 0;
        for (int i = 0; i < rows; i++) t += (double)r[(size_t)i * cols + a] * r[(size_t)i * cols + b];
        rx[(size_t)a * cols + b] = t;
      }
    double e_mm = std::max(rel_err(smin[in], rmin), rel_err(smax[in], rmax));
    rep.check(std::string("stats min/max ") + names[in], e_mm, kRelTol);
    rep.check(std::string("stats token max ") + names[in], rel_err(stok[in], rtok), kRelTol);
    auto rel64 = [](const std::vector<double>& g2, const std::vector<double>& r2) {
      double mx = 0, e = 0;
      for (size_t i = 0; i < r2.size(); i++) {
        mx = std::max(mx, std::fabs(r2[i]));
        const double x = std::fabs(g2[i] - r2[i]);
        if (!(x <= e)) e = x;
      }
      return mx > 0 ? e / mx : e;
    };
    rep.check(std::string("stats sumsq ") + names[in], rel64(ssq[in], rsq), 2 * kRelTol);
    rep.check(std::string("stats XtX ") + names[in], rel64(sxtx[in], rx), 2 * kRelTol);
  }
  rep.check("forward layer output (residual stream)", rel_err(hg, h), kRelTol);
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
}

// Packs codes q [n, k] (−7..7) into the FastGEMM layout [np/8, kp/128, 32, 16]
// (docs/fastgemm-layout.md), written here from the layout's text.
std::vector<uint8_t> pack_codes(const std::vector<int>& q, int n, int k, int np, int kp) {
  std::vector<uint8_t> out((size_t)np * kp / 2, 0);
  for (int nb = 0; nb < np / 8; nb++)
    for (int kb = 0; kb < kp / 128; kb++)
      for (int lane = 0; lane < 32; lane++)
        for (int step = 0; step < 4; step++)
          for (int j = 0; j < 4; j++) {
            const int c = nb * 8 + lane / 4, klo = kb * 128 + step * 32 + 4 * (lane % 4) + j, khi = klo + 16;
            const int lo = (c < n && klo < k) ? q[(size_t)c * k + klo] : 0;
            const int hi = (c < n && khi < k) ? q[(size_t)c * k + khi] : 0;
            out[(((size_t)nb * (kp / 128) + kb) * 32 + lane) * 16 + step * 4 + j] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
          }
  return out;
}

// The server's q_linear32 W4A8Int sequence (quant.QLinear, engine.tile): per group, chunks of at
// most 16384 channels: t = Σ x·q by SGEMM of the codes (exact integers), int_group_step (int32
// ŝ·P sums, wrapping), w4a8_int_epilogue (or, unless ODYSSEY_W4A8_INT_FUSED=0, the fused group
// loop exact::int_linear_fused where it applies). Reference: the same sums in 64-bit integers reduced
// mod 2³² (Go's int32 wraps), y = float32(float32(int32(16·acc))·(xs·f)) + bias.
// Returns the number of outputs that differ; codes/row scales checked by the caller.
size_t int_linear_mismatches(cublasHandle_t cublas, cudaStream_t stream, const std::vector<int>& q,
                             const std::vector<int16_t>& sh, const std::vector<float>& f, const std::vector<float>& bias,
                             const std::vector<float>& x, int n, int k, int np, int kp, int gs, int rows,
                             const float* static_scale_dev, float static_scale, std::vector<float>* codes_out,
                             std::vector<float>* rs_out) {
  const int G = (k + gs - 1) / gs;
  const std::vector<uint8_t> packed = pack_codes(q, n, k, np, kp);
  Buf<uint8_t> dq(packed);
  Buf<int16_t> dsh(sh);
  Buf<float> df(f), dbias(bias), dx(x);
  Buf<float> qf((size_t)n * k), codes((size_t)rows * k), rs((size_t)rows), y((size_t)rows * n), t((size_t)rows * n);
  Buf<int32_t> acc((size_t)rows * n), pg((size_t)rows * n);
  F::w4_codes(dq.p, n, k, kp, qf.p, stream);
  F::quantize_act(dx.p, rows, k, static_scale_dev, codes.p, rs.p, stream);
  constexpr int kChunk = 16384;
  // As the server: unless ODYSSEY_W4A8_INT_FUSED=0 the group loop runs as one launch (the same acc).
  const bool fused = F::exact::int_linear_fused_enabled() &&
                     F::exact::int_linear_fused(rows, n, k, gs, codes.p, k, qf.p, k,
                                                reinterpret_cast<const short*>(dsh.p), np, acc.p, n, stream);
  for (int g = 0; !fused && g < G; g++) {
    const int k0 = g * gs, kg = std::min(gs, k - k0);
    for (int j0 = k0; j0 < k0 + kg; j0 += kChunk) {
      const int kw = std::min(kChunk, k0 + kg - j0);
      F::sgemm_xwT_ld(cublas, codes.p + j0, k, rows, kw, qf.p + j0, k, n, t.p);
      F::int_group_step(acc.p, pg.p, t.p, rows, n, reinterpret_cast<const short*>(dsh.p) + (size_t)g * np, j0 == k0,
                        j0 + kw == k0 + kg, g == 0, stream);
    }
  }
  F::w4a8_int_epilogue(y.p, acc.p, rows, n, static_scale_dev, rs.p, df.p, dbias.p, stream);
  CK(cudaStreamSynchronize(stream));
  const std::vector<float> yc = y.get(), cc = codes.get(), rsc = rs.get();
  if (codes_out) *codes_out = cc;
  if (rs_out) *rs_out = rsc;
  size_t bad_y = 0;
  for (int r = 0; r < rows; r++) {
    const float s = static_scale_dev ? static_scale : rsc[r];  // row scales checked by the caller
    std::vector<int> xq(k);
    for (int j = 0; j < k; j++)
      xq[j] = (int)std::min(127.0, std::max(-127.0, std::nearbyint((double)(x[(size_t)r * k + j] / s))));
    for (int c = 0; c < n; c++) {
      uint32_t a = 0;
      for (int g = 0; g < G; g++) {
        long long p = 0;
        for (int j = g * gs; j < std::min(k, (g + 1) * gs); j++) p += (long long)xq[j] * q[(size_t)c * k + j];
        a += (uint32_t)((long long)sh[(size_t)g * np + c] * p);
      }
      const float yy = (float)((float)(int32_t)(16u * a) * (s * f[c])) + bias[c];
      bad_y += std::memcmp(&yy, &yc[(size_t)r * n + c], 4) != 0;
    }
  }
  return bad_y;
}

// quant.QLinear (W4A8 integer scales) and the W4A16 dequantizations, on a random weight.
void test_fake_quant(uint64_t seed, Report& rep) {
  const int n = 20, k = 200, np = 24, kp = 256, gs = 64, G = kp / gs, rows = 37;
  Rng rng(seed);
  std::vector<int> q((size_t)n * k);
  for (int& c : q) c = rng.below(15) - 7;
  std::vector<int16_t> sh((size_t)G * np, 0);
  std::vector<float> f(np, 0), gsf((size_t)G * np, 0), bias(n);
  for (int c = 0; c < n; c++) {
    f[c] = rng.uniform(1e-6f, 1e-5f);
    bias[c] = rng.uniform(-1, 1);
    for (int g = 0; g < G; g++) {
      // ŝ as the integer scales are (α = 2^10: hundreds to thousands): |16·acc| passes 2²⁴, where
      // a float SGEMM of the codes against ŝ·16q (the server's sequence before session 9)
      // rounds; the integer group steps stay exact.
      sh[(size_t)g * np + c] = (int16_t)(200 + rng.below(3800));
      gsf[(size_t)g * np + c] = rng.uniform(1e-3f, 1e-2f);
    }
  }
  std::vector<float> x((size_t)rows * k);
  for (float& v : x) v = rng.uniform(-3, 3);
  for (int j = 0; j < k; j++) x[(size_t)5 * k + j] = 0;  // an all-zero row: scale 1
  const float static_scale = 0.021f;
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  cublasHandle_t cublas;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate");
  cublasSetStream(cublas, stream);
  const std::vector<uint8_t> packed = pack_codes(q, n, k, np, kp);
  Buf<uint8_t> dq(packed);
  Buf<int16_t> dsh(sh);
  Buf<float> df(f), dgsf(gsf), dbias(bias), dx(x), dscale(std::vector<float>{static_scale});
  Buf<float> codes((size_t)rows * k), rs((size_t)rows), y((size_t)rows * n);
  for (int per_token = 0; per_token < 2; per_token++) {
    std::vector<float> cc, rsc;
    const size_t bad_y = int_linear_mismatches(cublas, stream, q, sh, f, bias, x, n, k, np, kp, gs, rows,
                                               per_token ? nullptr : dscale.p, static_scale, &cc, &rsc);
    size_t bad_codes = 0, bad_scales = 0;
    for (int r = 0; r < rows; r++) {
      // RowScale / ActScale / QuantizeActValue.
      float s = static_scale;
      if (per_token) {
        float m = 0;
        for (int j = 0; j < k; j++) m = std::max(m, std::fabs(x[(size_t)r * k + j]));
        s = m == 0 ? 1.0f : m / 127.0f;
        if (s == 0) s = 1;
        bad_scales += std::memcmp(&s, &rsc[r], 4) != 0;
      }
      for (int j = 0; j < k; j++) {
        double v = std::nearbyint((double)(x[(size_t)r * k + j] / s));
        v = std::min(127.0, std::max(-127.0, v));
        bad_codes += cc[(size_t)r * k + j] != (float)v;
      }
    }
    const std::string tag = per_token ? "per-token" : "static";
    rep.exact("quantize_act codes (" + tag + ")", bad_codes, (size_t)rows * k);
    if (per_token) rep.exact("quantize_act row scales (RowScale)", bad_scales, rows);
    rep.exact("W4A8 int-scale linear = quant.QLinear (" + tag + ", ŝ up to 4000)", bad_y, (size_t)rows * n);
  }
  // Per-channel scales (one group) over K > 16384: the group's P summed over two chunks in int32.
  {
    const int n2 = 8, k2 = 16384 + 256, rows2 = 3;
    std::vector<int> q2((size_t)n2 * k2);
    for (int& c : q2) c = rng.below(15) - 7;
    std::vector<int16_t> sh2(n2);
    std::vector<float> f2(n2), b2(n2), x2((size_t)rows2 * k2);
    for (int c = 0; c < n2; c++) {
      sh2[c] = (int16_t)(1 + rng.below(60));
      f2[c] = rng.uniform(1e-6f, 1e-5f);
      b2[c] = rng.uniform(-1, 1);
    }
    for (float& v : x2) v = rng.uniform(-3, 3);
    const size_t bad = int_linear_mismatches(cublas, stream, q2, sh2, f2, b2, x2, n2, k2, n2, k2, k2, rows2, nullptr,
                                             0.f, nullptr, nullptr);
    rep.exact("W4A8 int-scale linear, per-channel K = 16640 (two chunks)", bad, (size_t)rows2 * n2);
  }
  // W4A8 with float group scales = qresult.FloatScaleLinear: per group P = Σ x·q (one SGEMM
  // of exact integers), acc = float32(P·s_g) then acc += float32(P·s_g), y = float32(acc·xs)
  // + bias: bit-exact (the server's q_linear32 W4A8Float sequence).
  {
    Buf<float> qf((size_t)n * k), tmpf((size_t)rows * n), accf((size_t)rows * n);
    F::w4_codes(dq.p, n, k, kp, qf.p, stream);
    F::quantize_act(dx.p, rows, k, nullptr, codes.p, rs.p, stream);
    for (int g = 0; g * gs < k; g++) {
      const int k0 = g * gs, kg = std::min(gs, k - k0);
      F::sgemm_xwT_ld(cublas, codes.p + k0, k, rows, kg, qf.p + k0, k, n, tmpf.p);
      F::group_accumulate(accf.p, tmpf.p, rows, n, dgsf.p + (size_t)g * np, g == 0, stream);
    }
    F::float_scale_epilogue(y.p, accf.p, rows, n, nullptr, rs.p, dbias.p, stream);
    CK(cudaStreamSynchronize(stream));
    const std::vector<float> yc = y.get(), rsc = rs.get();
    size_t bad_y = 0;
    for (int r = 0; r < rows; r++) {
      const float s = rsc[r];  // checked bit-exact against RowScale above
      std::vector<int> xq(k);
      for (int j = 0; j < k; j++)
        xq[j] = (int)std::min(127.0, std::max(-127.0, std::nearbyint((double)(x[(size_t)r * k + j] / s))));
      for (int c = 0; c < n; c++) {
        float a = 0;
        for (int g = 0; g * gs < k; g++) {
          long long p = 0;
          for (int j = g * gs; j < std::min(k, (g + 1) * gs); j++) p += (long long)xq[j] * q[(size_t)c * k + j];
          const float t = (float)p * gsf[(size_t)g * np + c];
          a = g == 0 ? t : a + t;
        }
        const float yy = (float)(a * s) + bias[c];
        bad_y += std::memcmp(&yy, &yc[(size_t)r * n + c], 4) != 0;
      }
    }
    rep.exact("W4A8 float-scale linear = qresult.FloatScaleLinear (per-token)", bad_y, (size_t)rows * n);
  }
  // W4A16: float group scales (QuantizedWeight.Dequantize) and integer scales
  // (IntScaleWeight.Dequantize: eff = float32(ŝ)·(f·16), w = eff·q).
  Buf<float> wd((size_t)n * k);
  F::w4_float_weight(dq.p, dgsf.p, n, np, k, kp, gs, wd.p, stream);
  CK(cudaStreamSynchronize(stream));
  std::vector<float> got = wd.get();
  size_t bad = 0;
  for (int c = 0; c < n; c++)
    for (int j = 0; j < k; j++) {
      const float r = gsf[(size_t)(j / gs) * np + c] * (float)q[(size_t)c * k + j];
      bad += std::memcmp(&r, &got[(size_t)c * k + j], 4) != 0;
    }
  rep.exact("W4A16 float-scale dequantized weight", bad, (size_t)n * k);
  F::w4_int_dequant(dq.p, reinterpret_cast<const short*>(dsh.p), df.p, nullptr, n, np, k, kp, gs, wd.p, stream);
  CK(cudaStreamSynchronize(stream));
  got = wd.get();
  bad = 0;
  for (int c = 0; c < n; c++)
    for (int j = 0; j < k; j++) {
      const float eff = (float)sh[(size_t)(j / gs) * np + c] * (f[c] * 16.0f);
      const float r = eff * (float)q[(size_t)c * k + j];
      bad += std::memcmp(&r, &got[(size_t)c * k + j], 4) != 0;
    }
  rep.exact("W4A16 int-scale dequantized weight", bad, (size_t)n * k);
  F::w4_codes(dq.p, n, k, kp, wd.p, stream);
  CK(cudaStreamSynchronize(stream));
  got = wd.get();
  bad = 0;
  for (size_t i = 0; i < got.size(); i++) bad += got[i] != (float)q[i];
  rep.exact("int4 codes read back from the FastGEMM layout", bad, got.size());
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
}

// One 7B-shaped chunk through forward_chunk with random weights: the fp32 collect's time.
void bench_7b_chunk() {
  F::Dims d;
  d.hidden = 4096;
  d.heads = 32;
  d.kv_heads = 32;
  d.head_dim = 128;
  d.intermediate = 11008;
  d.seq = 512;
  d.eps = 1e-5;
  const int nw = 8, rows = nw * d.seq;
  const int ns[7] = {4096, 4096, 4096, 4096, 11008, 11008, 4096}, ks[7] = {4096, 4096, 4096, 4096, 4096, 4096, 11008};
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  cublasHandle_t cublas;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate");
  cublasSetStream(cublas, stream);
  cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH);
  Buf<uint8_t> ws(F::Scratch::bytes(d, nw));
  F::Scratch s;
  F::carve_scratch(s, ws.p, d, nw);
  std::vector<float> inv(64), cs((size_t)512 * 64), sn(cs.size());
  for (int i = 0; i < 64; i++) inv[i] = (float)(1.0 / std::pow(10000.0, i / 64.0));
  F::rope_tables(inv.data(), 64, 512, cs.data(), sn.data());
  CK(cudaMemcpy(const_cast<float*>(s.cos), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(const_cast<float*>(s.sin), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
  Rng rng(7);
  std::vector<std::unique_ptr<Buf<float>>> dw;
  for (int l = 0; l < 7; l++) {
    std::vector<float> w((size_t)ns[l] * ks[l]);
    const float a = (float)(1.0 / std::sqrt((double)ks[l]));
    for (float& x : w) x = rng.uniform(-a, a);
    dw.emplace_back(new Buf<float>(w));
  }
  std::vector<float> ones(4096, 1.0f), h((size_t)rows * 4096);
  for (float& x : h) x = rng.uniform(-1, 1);
  Buf<float> dn(ones), dh(h), tmp((size_t)11008 * 11008), tok((size_t)rows);
  Buf<double> acc((size_t)11008 * 11008);
  F::LinearFn linear = [&](int l, const float* x, int r, float* y) { F::sgemm_xwT(cublas, x, r, ks[l], dw[l]->p, ns[l], y); };
  // The statistics as the server takes them with every Hessian requested (w4a16-gptq).
  F::ObserveFn observe = [&](int, const float* x, int r, int cols) {
    F::token_max(x, r, cols, tok.p, stream);
    F::xtx_accumulate(cublas, x, r, cols, tmp.p, acc.p, stream);
  };
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> plain, hess;
  for (int it = 0; it < 6; it++)
    for (int withh = 0; withh < 2; withh++) {
      CK(cudaEventRecord(e0, stream));
      F::forward_chunk(dh.p, nw, d, dn.p, dn.p, linear, withh ? observe : F::ObserveFn(), s, cublas, stream);
      CK(cudaEventRecord(e1, stream));
      CK(cudaEventSynchronize(e1));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (it > 0) (withh ? hess : plain).push_back(ms);  // it 0: warm-up
    }
  std::sort(plain.begin(), plain.end());
  std::sort(hess.begin(), hess.end());
  const double p = plain[plain.size() / 2], hh = hess[hess.size() / 2];
  std::fprintf(stderr,
               "bench calib32 7B chunk (4096 rows): forward %.1f ms, forward+XtX(all 4) %.1f ms; projected 7B "
               "(16 chunks x 32 layers): advance %.1f s, collect with Hessians %.1f s\n",
               p, hh, p * 16 * 32 / 1000, hh * 16 * 32 / 1000);
  std::printf("{\"bench\":\"calib32_7b_chunk\",\"forward_ms\":%.3f,\"forward_xtx_ms\":%.3f,\"projected_7b_advance_s\":%.1f,"
              "\"projected_7b_collect_hessian_s\":%.1f}\n",
              p, hh, p * 16 * 32 / 1000, hh * 16 * 32 / 1000);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
}

}  // namespace

int cmd_test_calib32(const Args& a) {
  const uint64_t seed = (uint64_t)a.get_int("seed", 1);
  Report rep;
  for (uint64_t s = seed; s < seed + 2; s++) {
    test_forward(s, rep);
    test_fake_quant(s, rep);
  }
  if (!a.has("no-bench")) bench_7b_chunk();
  std::printf("{\"ok\":%s,\"test\":\"calib32\",\"failed\":%d}\n", rep.failed ? "false" : "true", rep.failed);
  std::fprintf(stderr, "calib32: %s (%d failed)\n", rep.failed ? "FAIL" : "PASS", rep.failed);
  return rep.failed ? 1 : 0;
}

}  // namespace odyssey
