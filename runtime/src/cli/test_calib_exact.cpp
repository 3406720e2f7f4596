// test_calib_exact.cpp: `odyssey-rt test calib-exact [--seed N] [--no-bench]`, every kernel of
// `odyssey-rt calib --precision exact` (calib/calib_exact.cu) against its host reference,
// written here from calib/canonical.hpp (the same canonical arithmetic, run on the CPU), bit
// for bit (no tolerance: the whole point of the precision is identity with the CPU pass).
//   - sgemm: all four transposes, k = 1, 16, 383, 384, 385, 769, 1000 (partial K steps and
//     K blocks), edge tiles (m, n not multiples of 64), leading dimensions larger than the
//     width, alpha/beta (1, 0), (−1, 1), (0.37, 0), (−1.5, 0.25); inputs with zeros, denormals
//     (|x| < 2⁻¹²⁶) and a wide exponent range;
//   - attention: GQA, seq 150 (three 64-row tasks, the last ragged), no window and window 40
//     (P·V's K blocks start at the task's k0), head_dim 64 and 400 (two K blocks);
//   - add_rmsnorm (with and without the residual delta), swiglu on ±0, denormals, the exp
//     clamps (|x| > 88), ±inf, large and small values; sumsq_blocks (rows not a multiple of 64,
//     two chunks), xtx_accumulate (rows 500: two K blocks), row_sumsq with and without bias.
// Bench (same run, CUDA events, median of 7 after a warm-up): exact::sgemm vs cuBLAS SGEMM on
// a 7B q_proj chunk (4096 × 4096 × 4096) and exact attention of one 512-token window × 32 heads.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "calib/calib_fp32.hpp"
#include "calib/canonical.hpp"
#include "common.hpp"

namespace odyssey {
namespace {

namespace F = calibgpu::f32;
namespace C = calibgpu::canon;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 7) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  float uniform(float a, float b) { return (float)(a + (b - a) * uniform()); }
};

template <class T>
struct Buf {
  T* p = nullptr;
  size_t n = 0;
  explicit Buf(size_t count) : n(count) { CK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T))); }
  Buf(const std::vector<T>& v) : Buf(v.size()) { CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  std::vector<T> get() const {
    std::vector<T> v(n);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

// Values of mixed magnitude: mostly uniform ±scale, some exact zeros, some denormals, some
// scaled by 2^±20.
std::vector<float> rand_vec(Rng& g, size_t n, float scale) {
  std::vector<float> v(n);
  for (float& x : v) {
    const double u = g.uniform();
    x = g.uniform(-scale, scale);
    if (u < 0.02) x = 0.0f;
    else if (u < 0.04) x = x * 1e-39f;  // denormal
    else if (u < 0.05) x = std::ldexp(x, 20);
    else if (u < 0.06) x = std::ldexp(x, -20);
  }
  return v;
}

int g_failed = 0;

template <class T>
void expect_bits(const char* what, const std::vector<T>& got, const std::vector<T>& want) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); i++)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && !(got[i] != got[i] && want[i] != want[i])) {
      if (!bad) first = i;
      bad++;
    }
  if (bad) {
    g_failed++;
    std::printf("calib-exact %s: FAIL, %zu of %zu differ (first at %zu: gpu %.9g, ref %.9g)\n", what, bad, want.size(),
                first, (double)got[first], (double)want[first]);
  } else {
    std::printf("calib-exact %s: bit-identical (%zu values)\n", what, want.size());
  }
}

// gemm.Sgemm by the definition (canonical.hpp): beta in the first K block only.
void ref_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& a, int lda,
               const std::vector<float>& b, int ldb, float beta, std::vector<float>& c, int ldc) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      auto A = [&](int p) { return ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]; };
      auto B = [&](int p) { return tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]; };
      float cur = 0;
      for (int p0 = 0; p0 < k; p0 += C::kCanonKC) {
        const int p1 = std::min(k, p0 + C::kCanonKC);
        float acc = 0;
        for (int p = p0; p < p1; p++) acc = C::canon_fma(A(p), B(p), acc);
        cur = p0 == 0 ? C::canon_update(c[(size_t)i * ldc + j], acc, alpha, beta)
                      : C::canon_add(cur, C::canon_mul(alpha, acc));
      }
      c[(size_t)i * ldc + j] = cur;
    }
}

void test_sgemm(Rng& g) {
  const int shapes[][3] = {{1, 1, 1}, {37, 70, 16}, {64, 64, 384}, {65, 130, 385}, {33, 17, 769}, {5, 129, 1000}, {70, 3, 383}};
  const float ab[][2] = {{1, 0}, {-1, 1}, {0.37f, 0}, {-1.5f, 0.25f}};
  int idx = 0;
  for (auto& sh : shapes)
    for (int t = 0; t < 4; t++) {
      const bool ta = t & 1, tb = t & 2;
      const int m = sh[0], n = sh[1], k = sh[2];
      const float alpha = ab[idx % 4][0], beta = ab[idx % 4][1];
      idx++;
      const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
      const std::vector<float> a = rand_vec(g, (size_t)(ta ? k : m) * lda, 1.0f);
      const std::vector<float> b = rand_vec(g, (size_t)(tb ? n : k) * ldb, 1.0f);
      std::vector<float> c = rand_vec(g, (size_t)m * ldc, 1.0f);
      Buf<float> da(a), db(b), dc(c);
      F::exact::sgemm(ta, tb, m, n, k, alpha, da.p, lda, db.p, ldb, beta, dc.p, ldc, nullptr);
      ref_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      char what[128];
      std::snprintf(what, sizeof what, "sgemm %c%c m%d n%d k%d alpha %g beta %g", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n,
                    k, alpha, beta);
      expect_bits(what, dc.get(), c);
    }
}

// model/layer.go attention, from canonical.hpp's pieces, one query row at a time.
void ref_attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                   std::vector<float>& out, int nw, const F::Dims& d) {
  const int L = d.seq, hd = d.head_dim, qd = d.heads * hd, kvd = d.kv_heads * hd, group = d.heads / d.kv_heads;
  const float scale = (float)(1.0 / std::sqrt((double)hd));
  std::vector<float> row(L);
  for (int w = 0; w < nw; w++)
    for (int h = 0; h < d.heads; h++)
      for (int pos = 0; pos < L; pos++) {
        const C::AttnRow ar = C::attn_row(pos, L, d.sliding_window);
        const float* qr = &q[((size_t)w * L + pos) * qd + (size_t)h * hd];
        const float* kb = &k[(size_t)w * L * kvd + (size_t)(h / group) * hd];
        const float* vb = &v[(size_t)w * L * kvd + (size_t)(h / group) * hd];
        std::fill(row.begin(), row.end(), 0.0f);
        float m = -INFINITY;
        for (int j = ar.lo; j < ar.hi; j++) {
          row[j] = C::canon_dot(hd, scale, [&](int p) { return qr[p]; }, [&](int p) { return kb[(size_t)j * kvd + p]; });
          m = std::max(m, row[j]);
        }
        // model.ExpSum as written in Go (expShiftGo + the tail).
        const int cnt = ar.hi - ar.lo, n8 = cnt & ~7;
        C::ExpLanes l;
        for (int i = 0; i < cnt; i++) row[ar.lo + i] = C::canon_exp32(C::canon_sub(row[ar.lo + i], m));
        for (int i = 0; i < n8; i++) l.l[i % 8] += (double)row[ar.lo + i];
        double s = n8 ? l.combine() : 0.0;
        for (int i = n8; i < cnt; i++) s += (double)row[ar.lo + i];
        const float inv = (float)(1.0 / s);
        for (int j = ar.lo; j < ar.hi; j++) row[j] = row[j] * inv;
        float* orow = &out[((size_t)w * L + pos) * qd + (size_t)h * hd];
        for (int dd = 0; dd < hd; dd++)
          orow[dd] = C::canon_dot(ar.n, 1.0f, [&](int p) { return row[ar.k0 + p]; },
                                  [&](int p) { return vb[(size_t)(ar.k0 + p) * kvd + dd]; });
      }
}

void test_attention(Rng& g) {
  struct Case {
    int heads, kv, hd, seq, window;
  } cases[] = {{4, 2, 64, 150, 0}, {4, 2, 64, 150, 40}, {2, 1, 400, 70, 0}};
  for (const Case& cs : cases) {
    F::Dims d;
    d.heads = cs.heads, d.kv_heads = cs.kv, d.head_dim = cs.hd, d.seq = cs.seq, d.sliding_window = cs.window;
    const int nw = 2, rows = nw * d.seq, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
    const std::vector<float> q = rand_vec(g, (size_t)rows * qd, 2.0f), k = rand_vec(g, (size_t)rows * kvd, 2.0f),
                             v = rand_vec(g, (size_t)rows * kvd, 1.0f);
    Buf<float> dq(q), dk(k), dv(v), ds((size_t)nw * d.heads * d.seq * d.seq), dout((size_t)rows * qd);
    F::exact::attention(dq.p, dk.p, dv.p, ds.p, dout.p, nw, d, nullptr);
    std::vector<float> out((size_t)rows * qd);
    ref_attention(q, k, v, out, nw, d);
    char what[128];
    std::snprintf(what, sizeof what, "attention heads %d/%d hd %d seq %d window %d", cs.heads, cs.kv, cs.hd, cs.seq,
                  cs.window);
    expect_bits(what, dout.get(), out);
  }
}

void test_elementwise_and_stats(Rng& g) {
  // add_rmsnorm
  const int rows = 130, H = 1000;
  const float eps = (float)1e-5;
  std::vector<float> h = rand_vec(g, (size_t)rows * H, 3.0f), delta = rand_vec(g, (size_t)rows * H, 1.0f),
                     w = rand_vec(g, H, 1.0f);
  for (int pass = 0; pass < 2; pass++) {
    Buf<float> dh(h), dd(delta), dw(w), dout((size_t)rows * H);
    F::exact::add_rmsnorm(dh.p, pass ? dd.p : nullptr, dw.p, eps, rows, H, dout.p, nullptr);
    std::vector<float> rh = h, out((size_t)rows * H);
    for (int r = 0; r < rows; r++) {
      float* hr = &rh[(size_t)r * H];
      if (pass)
        for (int j = 0; j < H; j++) hr[j] = hr[j] + delta[(size_t)r * H + j];
      double ss = 0;
      for (int j = 0; j < H; j++) ss += (double)hr[j] * (double)hr[j];
      const float sc = C::canon_rms_scale(ss, H, eps);
      for (int j = 0; j < H; j++) out[(size_t)r * H + j] = w[j] * (hr[j] * sc);
    }
    expect_bits(pass ? "add_rmsnorm (h += delta)" : "rmsnorm", dout.get(), out);
    expect_bits(pass ? "add_rmsnorm's h" : "rmsnorm's h (unchanged)", dh.get(), rh);
  }
  // swiglu over a sweep and the edge cases of exp32
  std::vector<float> x, u;
  for (int i = 0; i < 200000; i++) x.push_back(g.uniform(-100.0f, 100.0f));
  for (int i = 0; i < 100000; i++) x.push_back(g.uniform(-8.0f, 8.0f));
  const float specials[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-39f, -1e-39f, 87.0f, 88.0f, 88.5f, -87.3f, -87.4f,
                            -88.0f, -104.0f, 1e30f, -1e30f, INFINITY, -INFINITY, 3.4e38f, -3.4e38f};
  for (float s : specials) x.push_back(s);
  for (size_t i = 0; i < x.size(); i++) u.push_back(g.uniform(-2.0f, 2.0f));
  {
    Buf<float> dg(x), du(u);
    F::exact::swiglu(dg.p, du.p, x.size(), nullptr);
    std::vector<float> ref(x.size());
    for (size_t i = 0; i < x.size(); i++) ref[i] = C::canon_silu_mul(x[i], u[i]);
    expect_bits("swiglu (exp32 sweep, clamps, ±0, denormals, ±inf)", dg.get(), ref);
  }
  // Σx² by 64-row blocks over two chunks (200 and 77 rows), XᵀX over two chunks (500, 90 rows)
  {
    const int cols = 300, r1 = 200, r2 = 77;
    const std::vector<float> a = rand_vec(g, (size_t)(r1 + r2) * cols, 4.0f);
    Buf<float> da(a);
    Buf<double> acc(std::vector<double>(cols, 0.0));
    F::exact::sumsq_blocks(da.p, r1, cols, acc.p, nullptr);
    F::exact::sumsq_blocks(da.p + (size_t)r1 * cols, r2, cols, acc.p, nullptr);
    std::vector<double> ref(cols, 0.0);
    for (int c = 0; c < cols; c++)
      for (int ch = 0; ch < 2; ch++) {
        const int lo = ch ? r1 : 0, hi = ch ? r1 + r2 : r1;
        for (int b0 = lo; b0 < hi; b0 += C::kStatsBlockRows) {
          double s = 0;
          for (int r = b0; r < std::min(hi, b0 + C::kStatsBlockRows); r++)
            s += (double)a[(size_t)r * cols + c] * (double)a[(size_t)r * cols + c];
          ref[c] += s;
        }
      }
    expect_bits("sumsq_blocks (2 chunks, ragged 64-row blocks)", acc.get(), ref);
  }
  {
    const int cols = 70, r1 = 500, r2 = 90;
    const std::vector<float> a = rand_vec(g, (size_t)(r1 + r2) * cols, 2.0f);
    Buf<float> da(a), tmp((size_t)cols * cols);
    Buf<double> acc(std::vector<double>((size_t)cols * cols, 0.0));
    F::exact::xtx_accumulate(da.p, r1, cols, tmp.p, acc.p, nullptr);
    F::exact::xtx_accumulate(da.p + (size_t)r1 * cols, r2, cols, tmp.p, acc.p, nullptr);
    std::vector<double> ref((size_t)cols * cols, 0.0);
    std::vector<float> t((size_t)cols * cols);
    for (int ch = 0; ch < 2; ch++) {
      std::vector<float> part(a.begin() + (ch ? (size_t)r1 * cols : 0), a.begin() + (size_t)(ch ? r1 + r2 : r1) * cols);
      ref_sgemm(true, false, cols, cols, ch ? r2 : r1, 1.0f, part, cols, part, cols, 0.0f, t, cols);
      for (size_t i = 0; i < t.size(); i++) ref[i] += (double)t[i];
    }
    expect_bits("xtx_accumulate (2 chunks, K 500 and 90)", acc.get(), ref);
  }
  {
    const int r = 77, cols = 500;
    const std::vector<float> y = rand_vec(g, (size_t)r * cols, 3.0f), b = rand_vec(g, cols, 1.0f);
    for (int pass = 0; pass < 2; pass++) {
      Buf<float> dy(y), dbias(b);
      Buf<double> out(r);
      F::exact::row_sumsq(dy.p, r, cols, pass ? dbias.p : nullptr, out.p, nullptr);
      std::vector<double> ref(r);
      for (int i = 0; i < r; i++) {
        double t = 0;
        for (int j = 0; j < cols; j++) {
          const double dv = (double)(pass ? y[(size_t)i * cols + j] - b[j] : y[(size_t)i * cols + j]);
          t += dv * dv;
        }
        ref[i] = t;
      }
      expect_bits(pass ? "row_sumsq (bias)" : "row_sumsq", out.get(), ref);
    }
  }
}

float median_ms(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class Fn>
float time_ms(Fn fn) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  fn();  // warm-up
  std::vector<float> t;
  for (int i = 0; i < 7; i++) {
    CK(cudaEventRecord(a));
    fn();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median_ms(t);
}

void bench(Rng& g) {
  const int M = 4096, N = 4096, K = 4096;
  Buf<float> x(rand_vec(g, (size_t)M * K, 1.0f)), w(rand_vec(g, (size_t)N * K, 0.05f)), y((size_t)M * N);
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate");
  const float ms_exact = time_ms([&] { F::exact::sgemm(false, true, M, N, K, 1.0f, x.p, K, w.p, K, 0.0f, y.p, N, nullptr); });
  const float ms_cublas = time_ms([&] { F::sgemm_xwT(h, x.p, M, K, w.p, N, y.p); });
  cublasDestroy(h);
  F::Dims d;
  d.heads = 32, d.kv_heads = 32, d.head_dim = 128, d.seq = 512;
  const int rows = d.seq, qd = 4096;
  Buf<float> q(rand_vec(g, (size_t)rows * qd, 1.0f)), s((size_t)d.heads * d.seq * d.seq), o((size_t)rows * qd);
  const float ms_att = time_ms([&] { F::exact::attention(q.p, q.p, q.p, s.p, o.p, 1, d, nullptr); });
  const double tf = 2.0 * M * N * K / 1e12;
  std::printf("bench calib-exact sgemm 4096x4096x4096: exact %.2f ms (%.1f TFLOP/s), cuBLAS fp32 %.2f ms (%.1f TFLOP/s); "
              "exact attention 1 window x 32 heads x 512: %.2f ms\n",
              ms_exact, tf / (ms_exact / 1e3), ms_cublas, tf / (ms_cublas / 1e3), ms_att);
  std::printf("{\"bench\":\"calib_exact\",\"sgemm_exact_ms\":%.3f,\"sgemm_cublas_ms\":%.3f,\"attention_exact_ms\":%.3f}\n",
              ms_exact, ms_cublas, ms_att);
}

}  // namespace

int cmd_test_calib_exact(const Args& a) {
  Rng g((uint64_t)a.get_int("seed", 1));
  test_sgemm(g);
  test_attention(g);
  test_elementwise_and_stats(g);
  if (!a.has("no-bench")) bench(g);
  std::printf("{\"ok\":%s,\"test\":\"calib-exact\",\"failed\":%d}\n", g_failed ? "false" : "true", g_failed);
  std::fprintf(stderr, "calib-exact kernels: %s (%d failed)\n", g_failed ? "FAIL" : "PASS", g_failed);
  return g_failed ? 1 : 0;
}

}  // namespace odyssey
