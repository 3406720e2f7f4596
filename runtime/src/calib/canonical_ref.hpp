// canonical_ref.hpp: host references of `--precision exact` (calib_exact.cu), written from
// calib/canonical.hpp's functions in the Go code's order (model/layer.go Layer.Forward and
// attention, model/mathutil.go, model/rope.go applyRope, calib/stats.go Stats.Add). Host only
// (plain loops, slow). Used by cli/test_calib_exact.cpp (GPU kernel vs this, bit for bit) and
// tests/test_calib_exact_host.cpp (this vs the Go pass's own results, no GPU). Compile with
// -ffp-contract=off (each float operation one rounding).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "calib/canonical.hpp"

namespace odyssey::calibgpu::canon::ref {

// gemm.Sgemm by its definition: beta in the first K block only.
inline void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                  float beta, float* c, int ldc) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      auto A = [&](int p) { return ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]; };
      auto B = [&](int p) { return tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]; };
      float cur = 0;
      for (int p0 = 0; p0 < k; p0 += kCanonKC) {
        const int p1 = std::min(k, p0 + kCanonKC);
        float acc = 0;
        for (int p = p0; p < p1; p++) acc = canon_fma(A(p), B(p), acc);
        cur = p0 == 0 ? canon_update(c[(size_t)i * ldc + j], acc, alpha, beta) : canon_add(cur, canon_mul(alpha, acc));
      }
      c[(size_t)i * ldc + j] = cur;
    }
}

// quant.QLinear's integer group loop (exact::int_linear_fused, and the per-group SGEMM +
// int_group_step path): acc[r·ldacc + c] = Σ_g ŝ[g·ldsg + c]·P_g in wrapping int32 arithmetic,
// P_g = Σ_{k in group g} x[r·lda + k]·q[c·ldb + k] over integer-valued floats (exact in int64,
// then taken mod 2³²), groups of gs from k = 0 (the last may be short).
inline void int_linear(int m, int n, int k, int gs, const float* x, int lda, const float* q, int ldb, const short* sg,
                       int ldsg, int32_t* acc, int ldacc) {
  const int G = (k + gs - 1) / gs;
  for (int r = 0; r < m; r++)
    for (int c = 0; c < n; c++) {
      uint32_t a = 0;
      for (int gi = 0; gi < G; gi++) {
        long long p = 0;
        for (int kk = gi * gs; kk < std::min(k, (gi + 1) * gs); kk++)
          p += (long long)x[(size_t)r * lda + kk] * (long long)q[(size_t)c * ldb + kk];
        const uint32_t v = (uint32_t)(int32_t)sg[(size_t)gi * ldsg + c] * (uint32_t)(int32_t)p;
        a = gi == 0 ? v : a + v;
      }
      acc[(size_t)r * ldacc + c] = (int32_t)a;
    }
}

// h += delta (delta may be null), then out = RMSNorm(h)·w (out may be null).
inline void add_rmsnorm(float* h, const float* delta, const float* w, float eps, int rows, int cols, float* out) {
  for (int r = 0; r < rows; r++) {
    float* hr = h + (size_t)r * cols;
    if (delta)
      for (int j = 0; j < cols; j++) hr[j] = canon_add(hr[j], delta[(size_t)r * cols + j]);
    if (!out) continue;
    double ss = 0;
    for (int j = 0; j < cols; j++) ss = canon_dadd(ss, canon_dsq(hr[j]));
    const float sc = canon_rms_scale(ss, cols, eps);
    for (int j = 0; j < cols; j++) out[(size_t)r * cols + j] = canon_mul(w[j], canon_mul(hr[j], sc));
  }
}

// model/rope.go ropeTable.ensure, as calib_fp32.cu rope_tables (glibc cos/sin of the float64
// angle, rounded to float32).
inline void rope_tables(const float* inv, int half, int seq, float* cos_out, float* sin_out) {
  for (int p = 0; p < seq; p++)
    for (int i = 0; i < half; i++) {
      const double a = (double)canon_mul(inv[i], (float)p);
      cos_out[(size_t)p * half + i] = (float)std::cos(a);
      sin_out[(size_t)p * half + i] = (float)std::sin(a);
    }
}

// model/rope.go applyRope: x1' = x1·c − x2·s, x2' = x2·c + x1·s, each operation rounded.
inline void rope(float* x, int rows, int seq, int heads, int hd, const float* cs, const float* sn) {
  const int half = hd / 2;
  for (int r = 0; r < rows; r++) {
    const int pos = r % seq;
    for (int h = 0; h < heads; h++) {
      float* v = x + (size_t)r * heads * hd + (size_t)h * hd;
      for (int i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half], c = cs[(size_t)pos * half + i], s = sn[(size_t)pos * half + i];
        v[i] = canon_sub(canon_mul(a, c), canon_mul(b, s));
        v[i + half] = canon_add(canon_mul(b, c), canon_mul(a, s));
      }
    }
  }
}

// model/layer.go attention (one query row at a time: every element is computed as the task
// computes it): q [rows, heads·hd], k, v [rows, kv·hd], out [rows, heads·hd].
inline void attention(const float* q, const float* k, const float* v, float* out, int nw, int heads, int kv_heads,
                      int hd, int seq, int window) {
  const int qd = heads * hd, kvd = kv_heads * hd, group = heads / kv_heads;
  const float scale = (float)(1.0 / std::sqrt((double)hd));
  std::vector<float> row(seq);
  for (int w = 0; w < nw; w++)
    for (int h = 0; h < heads; h++)
      for (int pos = 0; pos < seq; pos++) {
        const AttnRow ar = attn_row(pos, seq, window);
        const float* qr = q + ((size_t)w * seq + pos) * qd + (size_t)h * hd;
        const float* kb = k + (size_t)w * seq * kvd + (size_t)(h / group) * hd;
        const float* vb = v + (size_t)w * seq * kvd + (size_t)(h / group) * hd;
        std::fill(row.begin(), row.end(), 0.0f);
        float m = -INFINITY;
        for (int j = ar.lo; j < ar.hi; j++) {
          row[j] = canon_dot(hd, scale, [&](int p) { return qr[p]; }, [&](int p) { return kb[(size_t)j * kvd + p]; });
          if (row[j] > m) m = row[j];
        }
        // softmaxInPlace: ExpSum (expShiftGo's lanes, then the tail in order), fl(1/Σ), x·inv.
        const int cnt = ar.hi - ar.lo, n8 = cnt & ~7;
        ExpLanes l;
        for (int i = 0; i < cnt; i++) row[ar.lo + i] = canon_exp32(canon_sub(row[ar.lo + i], m));
        for (int i = 0; i < n8; i++) l.l[i % 8] = canon_dadd(l.l[i % 8], (double)row[ar.lo + i]);
        double s = n8 ? l.combine() : 0.0;
        for (int i = n8; i < cnt; i++) s = canon_dadd(s, (double)row[ar.lo + i]);
        const float inv = (float)(1.0 / s);
        for (int j = ar.lo; j < ar.hi; j++) row[j] = canon_mul(row[j], inv);
        float* orow = out + ((size_t)w * seq + pos) * qd + (size_t)h * hd;
        for (int d = 0; d < hd; d++)
          orow[d] = canon_dot(ar.n, 1.0f, [&](int p) { return row[ar.k0 + p]; },
                              [&](int p) { return vb[(size_t)(ar.k0 + p) * kvd + d]; });
      }
}

// calib.Stats of one input, accumulated chunk by chunk (Stats.Add) in its order.
struct Stats {
  int in = 0;
  long long rows = 0;
  std::vector<float> mn, mx;
  std::vector<double> sumsq, xtx;  // xtx [in, in] full
  double token_sum = 0;
  float token_min = INFINITY;
  explicit Stats(int width)
      : in(width), mn(width, INFINITY), mx(width, -INFINITY), sumsq(width, 0.0), xtx((size_t)width * width, 0.0) {}
  void add(const float* x, int n) {
    for (int b0 = 0; b0 < n; b0 += kStatsBlockRows) {
      const int b1 = std::min(n, b0 + kStatsBlockRows);
      std::vector<double> sq(in, 0.0);
      // The block's minima and maxima start at its first row and move on v < m / v > m (the
      // sign of a zero minimum is the first row's), then merge with Go's min / max.
      std::vector<float> bmn(x + (size_t)b0 * in, x + (size_t)(b0 + 1) * in), bmx = bmn;
      double ts = 0;
      for (int r = b0; r < b1; r++) {
        float t = 0;
        for (int j = 0; j < in; j++) {
          const float v = x[(size_t)r * in + j];
          sq[j] = canon_dadd(sq[j], canon_dsq(v));
          if (v < bmn[j]) bmn[j] = v;
          if (v > bmx[j]) bmx[j] = v;
          if (std::fabs(v) > t) t = std::fabs(v);
        }
        ts = canon_dadd(ts, (double)t);
        if (t < token_min) token_min = t;
      }
      for (int j = 0; j < in; j++) {
        sumsq[j] = canon_dadd(sumsq[j], sq[j]);
        mn[j] = canon_gomin(mn[j], bmn[j]);
        mx[j] = canon_gomax(mx[j], bmx[j]);
      }
      token_sum = canon_dadd(token_sum, ts);
    }
    std::vector<float> t((size_t)in * in);
    sgemm(true, false, in, in, n, 1.0f, x, in, x, in, 0.0f, t.data(), in);
    for (size_t i = 0; i < t.size(); i++) xtx[i] = canon_dadd(xtx[i], (double)t[i]);
    rows += n;
  }
};

// One decoder layer's weights (fp32, [out, in] row-major) and shape.
struct Layer {
  int hidden = 0, inter = 0, heads = 0, kv_heads = 0, hd = 0, window = 0;
  float eps = 1e-5f;
  std::vector<float> w[7], b[7];  // q k v o gate up down; b empty: no bias
  std::vector<float> attn_norm, mlp_norm, cos, sin;  // cos/sin [seq, hd/2]
};

// model.Dense.Forward: Sgemm(false, true, rows, n, k, 1, x, k, W, k, 0, y, n), then + bias.
inline void dense(const Layer& L, int lin, const float* x, int rows, int k, int n, float* y) {
  sgemm(false, true, rows, n, k, 1.0f, x, k, L.w[lin].data(), k, 0.0f, y, n);
  if (!L.b[lin].empty())
    for (int r = 0; r < rows; r++)
      for (int j = 0; j < n; j++) y[(size_t)r * n + j] = canon_add(y[(size_t)r * n + j], L.b[lin][j]);
}

// model.Layer.Forward of nw windows of seq rows, in place; observe(input, x, rows, cols) sees
// the four linear inputs (0 q/k/v, 1 o, 2 gate/up, 3 down).
inline void forward(const Layer& L, float* h, int nw, int seq,
                    const std::function<void(int, const float*, int, int)>& observe) {
  const int rows = nw * seq, H = L.hidden, qd = L.heads * L.hd, kvd = L.kv_heads * L.hd, I = L.inter;
  std::vector<float> xn((size_t)rows * H), q((size_t)rows * qd), k((size_t)rows * kvd), v((size_t)rows * kvd),
      att((size_t)rows * qd), out((size_t)rows * H), g((size_t)rows * I), u((size_t)rows * I);
  add_rmsnorm(h, nullptr, L.attn_norm.data(), L.eps, rows, H, xn.data());
  if (observe) observe(0, xn.data(), rows, H);
  dense(L, 0, xn.data(), rows, H, qd, q.data());
  dense(L, 1, xn.data(), rows, H, kvd, k.data());
  dense(L, 2, xn.data(), rows, H, kvd, v.data());
  rope(q.data(), rows, seq, L.heads, L.hd, L.cos.data(), L.sin.data());
  rope(k.data(), rows, seq, L.kv_heads, L.hd, L.cos.data(), L.sin.data());
  attention(q.data(), k.data(), v.data(), att.data(), nw, L.heads, L.kv_heads, L.hd, seq, L.window);
  if (observe) observe(1, att.data(), rows, qd);
  dense(L, 3, att.data(), rows, qd, H, out.data());
  add_rmsnorm(h, out.data(), L.mlp_norm.data(), L.eps, rows, H, xn.data());
  if (observe) observe(2, xn.data(), rows, H);
  dense(L, 4, xn.data(), rows, H, I, g.data());
  dense(L, 5, xn.data(), rows, H, I, u.data());
  for (size_t i = 0; i < g.size(); i++) g[i] = canon_silu_mul(g[i], u[i]);
  if (observe) observe(3, g.data(), rows, I);
  dense(L, 6, g.data(), rows, I, H, out.data());
  add_rmsnorm(h, out.data(), nullptr, L.eps, rows, H, nullptr);
}

}  // namespace odyssey::calibgpu::canon::ref
