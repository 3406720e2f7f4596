// test_calib_exact.cpp: `odyssey-rt test calib-exact [--seed N] [--no-bench]`, every kernel of
// `odyssey-rt calib --precision exact` (calib/calib_exact.cu) against its host reference,
// written here from calib/canonical.hpp (the same canonical arithmetic, run on the CPU), bit
// for bit (no tolerance: the whole point of the precision is identity with the CPU pass).
//   - sgemm (both kernels): all four transposes, k = 1, 16, 383, 384, 385, 769, 1000 (partial K steps and
//     K blocks), edge tiles (m, n not multiples of 64), leading dimensions larger than the
//     width, alpha/beta (1, 0), (−1, 1), (0.37, 0), (−1.5, 0.25); inputs with zeros, denormals
//     (|x| < 2⁻¹²⁶) and a wide exponent range;
//   - attention: GQA, seq 150 (three 64-row tasks, the last ragged), no window and window 40
//     (P·V's K blocks start at the task's k0), head_dim 64 and 400 (two K blocks);
//   - add_rmsnorm (with and without the residual delta), swiglu on ±0, denormals, the exp
//     clamps (|x| > 88), ±inf, large and small values; channel_blocks (rows not a multiple of
//     64, two chunks, a column of signed zeros), xtx_accumulate (rows 500: two K blocks), row_sumsq with and without bias.
//   - the Go pass itself: tests/data/calib_exact_golden.bin (--golden PATH; written by
//     tests/exactgolden/main.go from model.Layer.Forward and calib.Stats.Add) through
//     forward_chunk with Dims.exact and the server's exact statistics calls: layer outputs,
//     min/max/Σx² and XᵀX bit for bit.
//   Every sgemm case runs through both kernels (sgemm_v 1: 64×64 tiles; 2: exact_sgemm2.cuh,
//   128×128), plus sgemm2's own edge cases (m, n around 128 / 256, k not a multiple of its
//   K stage of 8, leading dimensions multiple of 4 or not: its vector and scalar paths).
// Bench (same run, CUDA events, median of 7 after a warm-up): both exact SGEMMs (NT as the
// linears, TN as XᵀX; their outputs compared bit for bit) vs cuBLAS SGEMM on a 7B q_proj chunk
// (4096 × 4096 × 4096) and exact attention of one 512-token window × 32 heads; then every exact
// kernel at a 7B chunk's shapes and the per-layer GPU time projected from them (bench_7b).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "calib/calib_fp32.hpp"
#include "calib/canonical.hpp"
#include "calib/canonical_ref.hpp"
#include "calib/exact_golden.hpp"
#include "common.hpp"

namespace odyssey {
namespace {

namespace F = calibgpu::f32;
namespace C = calibgpu::canon;


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

void ref_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& a, int lda,
               const std::vector<float>& b, int ldb, float beta, std::vector<float>& c, int ldc) {
  C::ref::sgemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
}

// One sgemm case through both exact kernels (sgemm_v 1 and 2) against the host reference.
void sgemm_case(Rng& g, bool ta, bool tb, int m, int n, int k, float alpha, float beta, int lda, int ldb, int ldc) {
  const std::vector<float> a = rand_vec(g, (size_t)(ta ? k : m) * lda, 1.0f);
  const std::vector<float> b = rand_vec(g, (size_t)(tb ? n : k) * ldb, 1.0f);
  const std::vector<float> c = rand_vec(g, (size_t)m * ldc, 1.0f);
  std::vector<float> ref = c;
  ref_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, ref, ldc);
  Buf<float> da(a), db(b);
  for (int v = 1; v <= 2; v++) {
    Buf<float> dc(c);
    F::exact::sgemm_v(v, ta, tb, m, n, k, alpha, da.p, lda, db.p, ldb, beta, dc.p, ldc, nullptr);
    char what[160];
    std::snprintf(what, sizeof what, "sgemm%s %c%c m%d n%d k%d lda %d ldb %d ldc %d alpha %g beta %g", v == 2 ? "2" : "",
                  ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, lda, ldb, ldc, alpha, beta);
    expect_bits(what, dc.get(), ref);
  }
}

void test_sgemm(Rng& g) {
  // The first kernel's cases (64×64 tiles): widths + 3 / + 1 / + 2, never 16-byte rows.
  const int shapes[][3] = {{1, 1, 1}, {37, 70, 16}, {64, 64, 384}, {65, 130, 385}, {33, 17, 769}, {5, 129, 1000}, {70, 3, 383}};
  const float ab[][2] = {{1, 0}, {-1, 1}, {0.37f, 0}, {-1.5f, 0.25f}};
  int idx = 0;
  for (auto& sh : shapes)
    for (int t = 0; t < 4; t++) {
      const bool ta = t & 1, tb = t & 2;
      const int m = sh[0], n = sh[1], k = sh[2];
      const float alpha = ab[idx % 4][0], beta = ab[idx % 4][1];
      idx++;
      sgemm_case(g, ta, tb, m, n, k, alpha, beta, (ta ? m : k) + 3, (tb ? k : n) + 1, n + 2);
    }
  // sgemm2's edges (128×128 tiles, K stages of 8, 16-byte paths): m, n below / at / above 128
  // and 256, k not a multiple of 8 or 4 (masked scalar tails of the vector loads), k across 1, 2
  // and 3 canonical blocks; leading dimensions the width rounded up to 4 (vector loads and C
  // stores: the vector path with scalar tails), the exact width, and width + 1 (scalar path).
  const int shapes2[][3] = {{128, 128, 8},  {129, 127, 9},  {255, 257, 384}, {256, 256, 391},
                            {200, 130, 770}, {131, 260, 5},  {1, 300, 1153},  {300, 1, 100}};
  for (auto& sh : shapes2)
    for (int t = 0; t < 4; t++)
      for (int pad = 0; pad < 3; pad++) {
        const bool ta = t & 1, tb = t & 2;
        const int m = sh[0], n = sh[1], k = sh[2];
        const float alpha = ab[idx % 4][0], beta = ab[idx % 4][1];
        idx++;
        auto ld = [&](int w) { return pad == 0 ? (w + 3) / 4 * 4 : pad == 1 ? w : w + 1; };
        sgemm_case(g, ta, tb, m, n, k, alpha, beta, ld(ta ? m : k), ld(tb ? k : n), ld(n));
      }
}

// The W4A8 integer linear in one launch (exact::int_linear_fused, the default)
// against calib_server's per-group path (one SGEMM of the codes per group, by each exact kernel,
// then int_group_step) and a plain integer reference (P_g in int64, uint32 wrap-around), all
// equal: codes x ∈ [−127, 127] (some −0), q ∈ [−8, 7], ŝ over the whole int16 range; a partial
// last group (k 300), 86 groups (k 11008), row strides k + 1 (scalar loads), and one 16384-wide
// group of 127·(−8) (|P| just below 2²⁴: the bound of the any-order exactness).
void test_int_linear(Rng& g) {
  struct Case {
    int m, n, k, gs, pad;
    bool extreme;
  } cases[] = {{130, 129, 300, 128, 0, false}, {257, 130, 1024, 128, 0, false}, {257, 130, 1024, 128, 1, false},
               {5, 300, 11008, 128, 0, false},  {64, 64, 16384, 16384, 0, true},  {129, 3, 4104, 4096, 1, false},
               {1, 257, 256, 8, 0, false}};
  for (const Case& cs : cases) {
    const int lda = cs.k + cs.pad, G = (cs.k + cs.gs - 1) / cs.gs, ldsg = (cs.n + 7) / 8 * 8;
    std::vector<float> x((size_t)cs.m * lda), q((size_t)cs.n * lda);
    for (size_t i = 0; i < x.size(); i++) {
      x[i] = cs.extreme ? 127.0f : (float)(int)std::floor(g.uniform(-127.0f, 128.0f));
      if (x[i] > 127.0f) x[i] = 127.0f;
      if (x[i] == 0.0f && i % 2) x[i] = -0.0f;
    }
    for (float& v : q) v = cs.extreme ? -8.0f : std::min(7.0f, (float)(int)std::floor(g.uniform(-8.0f, 8.0f)));
    std::vector<short> sg((size_t)G * ldsg);
    for (short& v : sg) v = (short)(int)std::floor(g.uniform(-32768.0f, 32767.0f));
    std::vector<int32_t> ref((size_t)cs.m * cs.n);
    C::ref::int_linear(cs.m, cs.n, cs.k, cs.gs, x.data(), lda, q.data(), lda, sg.data(), ldsg, ref.data(), cs.n);
    Buf<float> dx(x), dq(q), t((size_t)cs.m * cs.n);
    Buf<short> dsg(sg);
    char what[160];
    for (int v = 1; v <= 2; v++) {  // the per-group path, as calib_server runs it without the fusion
      Buf<int32_t> acc((size_t)cs.m * cs.n);
      for (int gi = 0; gi < G; gi++) {
        const int k0 = gi * cs.gs, kg = std::min(cs.gs, cs.k - k0);
        F::exact::sgemm_v(v, false, true, cs.m, cs.n, kg, 1.0f, dx.p + k0, lda, dq.p + k0, lda, 0.0f, t.p, cs.n, nullptr);
        F::int_group_step(acc.p, nullptr, t.p, cs.m, cs.n, dsg.p + (size_t)gi * ldsg, true, true, gi == 0, nullptr);
      }
      std::snprintf(what, sizeof what, "int linear per-group (sgemm%s) m%d n%d k%d gs%d lda %d%s", v == 2 ? "2" : "",
                    cs.m, cs.n, cs.k, cs.gs, lda, cs.extreme ? " (|P| at the bound)" : "");
      expect_bits(what, acc.get(), ref);
    }
    Buf<int32_t> acc((size_t)cs.m * cs.n);
    const bool ran = F::exact::int_linear_fused(cs.m, cs.n, cs.k, cs.gs, dx.p, lda, dq.p, lda, dsg.p, ldsg, acc.p, cs.n,
                                                nullptr);
    std::snprintf(what, sizeof what, "int linear fused m%d n%d k%d gs%d lda %d%s", cs.m, cs.n, cs.k, cs.gs, lda,
                  cs.extreme ? " (|P| at the bound)" : "");
    if (!ran) {
      g_failed++;
      std::printf("calib-exact %s: FAIL, not launched\n", what);
    } else {
      expect_bits(what, acc.get(), ref);
    }
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
    C::ref::attention(q.data(), k.data(), v.data(), out.data(), nw, d.heads, d.kv_heads, d.head_dim, d.seq,
                      d.sliding_window);
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
    C::ref::add_rmsnorm(rh.data(), pass ? delta.data() : nullptr, w.data(), eps, rows, H, out.data());
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
  // min / max / Σx² by 64-row blocks over two chunks (200 and 77 rows); a column of zeros of
  // both signs (Go's min/max: −0 < +0)
  {
    const int cols = 300, r1 = 200, r2 = 77;
    std::vector<float> a = rand_vec(g, (size_t)(r1 + r2) * cols, 4.0f);
    for (int r = 0; r < r1 + r2; r++) a[(size_t)r * cols + 5] = (r % 3 == 1) ? -0.0f : 0.0f;
    Buf<float> da(a), mn(std::vector<float>(cols, INFINITY)), mx(std::vector<float>(cols, -INFINITY));
    Buf<double> acc(std::vector<double>(cols, 0.0));
    F::exact::channel_blocks(da.p, r1, cols, mn.p, mx.p, acc.p, nullptr);
    F::exact::channel_blocks(da.p + (size_t)r1 * cols, r2, cols, mn.p, mx.p, acc.p, nullptr);
    C::ref::Stats st(cols);
    st.add(a.data(), r1);
    st.add(a.data() + (size_t)r1 * cols, r2);
    expect_bits("channel_blocks sumsq (2 chunks, ragged 64-row blocks)", acc.get(), st.sumsq);
    expect_bits("channel_blocks min (signed zeros)", mn.get(), st.mn);
    expect_bits("channel_blocks max (signed zeros)", mx.get(), st.mx);
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

// The Go pass's own results (tests/data/calib_exact_golden.bin: model.Layer.Forward and
// calib.Stats.Add on generated layers) against forward_chunk with Dims.exact and the server's
// exact statistics calls, chunk by chunk: the layer output and every statistic bit for bit.
void test_golden(const std::string& path) {
  const std::vector<C::golden::Case> cases = C::golden::read(path);
  for (size_t ci = 0; ci < cases.size(); ci++) {
    const C::golden::Case& c = cases[ci];
    C::golden::Inputs in = C::golden::inputs(c, (int)ci);
    const C::ref::Layer& L = in.layer;
    F::Dims d;
    d.hidden = L.hidden, d.heads = L.heads, d.kv_heads = L.kv_heads, d.head_dim = L.hd, d.intermediate = L.inter;
    d.seq = in.seq, d.sliding_window = L.window, d.eps = 1e-5, d.exact = true;
    int maxw = 0;
    for (int w : in.chunk_windows) maxw = std::max(maxw, w);
    Buf<unsigned char> ws(F::Scratch::bytes(d, maxw));
    F::Scratch s;
    F::carve_scratch(s, ws.p, d, maxw);
    CK(cudaMemcpy(const_cast<float*>(s.cos), L.cos.data(), L.cos.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(const_cast<float*>(s.sin), L.sin.data(), L.sin.size() * 4, cudaMemcpyHostToDevice));
    std::vector<std::unique_ptr<Buf<float>>> w, b;
    for (int i = 0; i < 7; i++) {
      w.emplace_back(new Buf<float>(L.w[i]));
      b.emplace_back(L.b[i].empty() ? nullptr : new Buf<float>(L.b[i]));
    }
    Buf<float> an(L.attn_norm), mn_(L.mlp_norm);
    const int qd = L.heads * L.hd, kvd = L.kv_heads * L.hd;
    const int outs[7] = {qd, kvd, kvd, L.hidden, L.inter, L.inter, L.hidden};
    const int ins[7] = {L.hidden, L.hidden, L.hidden, qd, L.hidden, L.hidden, L.inter};
    const int widths[4] = {L.hidden, qd, L.hidden, L.inter};
    std::vector<std::unique_ptr<Buf<float>>> smn, smx, tmp;
    std::vector<std::unique_ptr<Buf<double>>> ssq, sxtx;
    for (int i = 0; i < 4; i++) {
      smn.emplace_back(new Buf<float>(std::vector<float>(widths[i], INFINITY)));
      smx.emplace_back(new Buf<float>(std::vector<float>(widths[i], -INFINITY)));
      ssq.emplace_back(new Buf<double>(std::vector<double>(widths[i], 0.0)));
      sxtx.emplace_back(new Buf<double>(std::vector<double>((size_t)widths[i] * widths[i], 0.0)));
      tmp.emplace_back(new Buf<float>((size_t)widths[i] * widths[i]));
    }
    F::LinearFn linear = [&](int lin, const float* x, int rows, float* y) {
      F::exact::sgemm(false, true, rows, outs[lin], ins[lin], 1.0f, x, ins[lin], w[lin]->p, ins[lin], 0.0f, y, outs[lin],
                      nullptr);
      if (b[lin]) F::add_bias(y, rows, outs[lin], b[lin]->p, nullptr);
    };
    F::ObserveFn observe = [&](int i, const float* x, int rows, int cols) {
      F::exact::channel_blocks(x, rows, cols, smn[i]->p, smx[i]->p, ssq[i]->p, nullptr);
      F::exact::xtx_accumulate(x, rows, cols, tmp[i]->p, sxtx[i]->p, nullptr);
    };
    char cs[64];
    std::snprintf(cs, sizeof cs, "golden case %zu", ci);
    for (size_t k = 0; k < in.h.size(); k++) {
      Buf<float> h(in.h[k]);
      F::forward_chunk(h.p, in.chunk_windows[k], d, an.p, mn_.p, linear, observe, s, nullptr, nullptr);
      const std::vector<float> out = h.get();
      const auto it = c.rec.find("h_out" + std::to_string(k));
      const bool ok = it != c.rec.end() && C::golden::fnv1a(out.data(), out.size() * 4) == it->second.hash;
      if (!ok) g_failed++;
      std::printf("calib-exact %s layer output chunk %zu vs Go: %s\n", cs, k, ok ? "bit-identical" : "FAIL");
    }
    for (int i = 0; i < 4; i++) {
      const std::string p = "stats" + std::to_string(i) + "_";
      const std::string what = std::string(cs) + " input " + std::to_string(i);
      auto full32 = [&](const char* nm, const std::vector<float>& got) {
        expect_bits((what + " " + nm + " vs Go").c_str(), got, c.rec.at(p + nm).f32);
      };
      full32("min", smn[i]->get());
      full32("max", smx[i]->get());
      expect_bits((what + " sumsq vs Go").c_str(), ssq[i]->get(), c.rec.at(p + "sumsq").f64);
      const std::vector<double> x = sxtx[i]->get();
      const bool ok = C::golden::fnv1a(x.data(), x.size() * 8) == c.rec.at(p + "xtx").hash;
      if (!ok) g_failed++;
      std::printf("calib-exact %s xtx vs Go: %s\n", what.c_str(), ok ? "bit-identical" : "FAIL");
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
  Buf<float> x(rand_vec(g, (size_t)M * K, 1.0f)), w(rand_vec(g, (size_t)N * K, 0.05f)), y((size_t)M * N),
      y2((size_t)M * N);
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate");
  // The linears' form (x·Wᵀ: NT) and XᵀX's (TN), each by both kernels; the outputs of the two
  // kernels are compared bit for bit (K = 4096: 11 canonical blocks, data of the 7B's scale).
  const float ms_exact = time_ms([&] { F::exact::sgemm_v(1, false, true, M, N, K, 1.0f, x.p, K, w.p, K, 0.0f, y.p, N, nullptr); });
  const float ms_exact2 = time_ms([&] { F::exact::sgemm_v(2, false, true, M, N, K, 1.0f, x.p, K, w.p, K, 0.0f, y2.p, N, nullptr); });
  expect_bits("sgemm2 vs sgemm NT 4096x4096x4096 (bench data)", y2.get(), y.get());
  const float ms_xtx = time_ms([&] { F::exact::sgemm_v(1, true, false, M, N, K, 1.0f, x.p, M, x.p, N, 0.0f, y.p, N, nullptr); });
  const float ms_xtx2 = time_ms([&] { F::exact::sgemm_v(2, true, false, M, N, K, 1.0f, x.p, M, x.p, N, 0.0f, y2.p, N, nullptr); });
  expect_bits("sgemm2 vs sgemm TN (XtX) 4096x4096x4096 (bench data)", y2.get(), y.get());
  // The advance's W4A8 integer linears: one SGEMM per 128-wide group (k 128, rows of 4096).
  const float ms_g = time_ms([&] { F::exact::sgemm_v(1, false, true, M, N, 128, 1.0f, x.p, K, w.p, K, 0.0f, y.p, N, nullptr); });
  const float ms_g2 = time_ms([&] { F::exact::sgemm_v(2, false, true, M, N, 128, 1.0f, x.p, K, w.p, K, 0.0f, y2.p, N, nullptr); });
  expect_bits("sgemm2 vs sgemm NT 4096x4096x128 lda 4096 (bench data)", y2.get(), y.get());
  const float ms_cublas = time_ms([&] { F::sgemm_xwT(h, x.p, M, K, w.p, N, y.p); });
  cublasDestroy(h);
  F::Dims d;
  d.heads = 32, d.kv_heads = 32, d.head_dim = 128, d.seq = 512;
  const int rows = d.seq, qd = 4096;
  Buf<float> q(rand_vec(g, (size_t)rows * qd, 1.0f)), s((size_t)d.heads * d.seq * d.seq), o((size_t)rows * qd);
  const float ms_att = time_ms([&] { F::exact::attention(q.p, q.p, q.p, s.p, o.p, 1, d, nullptr); });
  const double tf = 2.0 * M * N * K / 1e12;
  auto tfs = [&](float ms) { return tf / (ms / 1e3); };
  std::printf("bench calib-exact sgemm 4096x4096x4096: exact %.2f ms (%.1f TFLOP/s), cuBLAS fp32 %.2f ms (%.1f TFLOP/s); "
              "exact attention 1 window x 32 heads x 512: %.2f ms\n",
              ms_exact, tfs(ms_exact), ms_cublas, tfs(ms_cublas), ms_att);
  std::printf("bench calib-exact sgemm2 4096x4096x4096: NT (x.W^T) old %.2f ms (%.1f TFLOP/s) -> sgemm2 %.2f ms (%.1f TFLOP/s, "
              "%.2fx); TN (XtX) old %.2f ms (%.1f) -> sgemm2 %.2f ms (%.1f, %.2fx); cuBLAS fp32 NT %.2f ms (%.1f)\n",
              ms_exact, tfs(ms_exact), ms_exact2, tfs(ms_exact2), ms_exact / ms_exact2, ms_xtx, tfs(ms_xtx), ms_xtx2,
              tfs(ms_xtx2), ms_xtx / ms_xtx2, ms_cublas, tfs(ms_cublas));
  const double tg = 2.0 * M * N * 128 / 1e12;
  std::printf("bench calib-exact sgemm2 per-group 4096x4096x128 (the W4A8 advance's calls): old %.3f ms (%.1f TFLOP/s) "
              "-> sgemm2 %.3f ms (%.1f TFLOP/s, %.2fx)\n",
              ms_g, tg / (ms_g / 1e3), ms_g2, tg / (ms_g2 / 1e3), ms_g / ms_g2);
  std::printf("{\"bench\":\"calib_exact\",\"sgemm_exact_ms\":%.3f,\"sgemm2_exact_ms\":%.3f,\"xtx_exact_ms\":%.3f,"
              "\"xtx2_exact_ms\":%.3f,\"group_exact_ms\":%.4f,\"group2_exact_ms\":%.4f,\"sgemm_cublas_ms\":%.3f,"
              "\"attention_exact_ms\":%.3f}\n",
              ms_exact, ms_exact2, ms_xtx, ms_xtx2, ms_g, ms_g2, ms_cublas, ms_att);
}

// A 7B chunk's exact kernels, each timed alone at LLaMA-2-7B's shapes (rows R = 4096 = one
// chunk, hidden H = 4096, intermediate I = 11008, 8 windows of 512, 32 heads of 128), then the
// per-layer GPU time of the exact pass projected from the counts per chunk (16 chunks per layer
// at 128 × 512 tokens), with the old SGEMM and with sgemm2: the split that decides what else
// must go faster (runtime/NOTES.md "Exact SGEMM 2"). Counts per chunk:
//   forward (collect's float layer, and gptq's advance: dense dequantized weights): 2 RMSNorms,
//     attention of 8 windows, SwiGLU, linears x·Wᵀ: 4 × (H, H), 2 × (I, H), 1 × (H, I) [n, k];
//   collect's statistics: channel_blocks + token_max on 3 inputs of width H and one of I;
//     gptq also XᵀX (3 × H², 1 × I², K = R, widened into fp64) and row_sumsq of all 7 outputs;
//   fptq's advance (W4A8 integer scales, g128): quantize_act on 3 sites of width H and one of I;
//     per linear one (R, n, 128) SGEMM + int_group_step per group (32 groups at k = H, 86 at
//     k = I), then the int epilogue.
// Not modelled: RoPE, bias adds, the stream's fp16 rounding, host transfers and waits.
void bench_7b(Rng& g) {
  const int R = 4096, H = 4096, I = 11008, G = 128;
  std::vector<float> host = rand_vec(g, (size_t)I * H, 1.0f);
  auto filled = [&](size_t n) {
    auto b = std::make_unique<Buf<float>>(n);
    for (size_t o = 0; o < n; o += host.size())
      CK(cudaMemcpy(b->p + o, host.data(), std::min(host.size(), n - o) * 4, cudaMemcpyHostToDevice));
    return b;
  };
  auto x = filled((size_t)R * I), w = filled((size_t)I * H), y = filled((size_t)R * I), u = filled((size_t)R * I);
  auto nw = filled(I);
  // [n, k] linear of R rows by version v.
  auto lin = [&](int v, int n, int k) {
    return time_ms([&] { F::exact::sgemm_v(v, false, true, R, n, k, 1.0f, x->p, k, w->p, k, 0.0f, y->p, n, nullptr); });
  };
  auto grp = [&](int v, int n, int k) {  // one group's call inside a k-wide input
    return time_ms([&] { F::exact::sgemm_v(v, false, true, R, n, G, 1.0f, x->p, k, w->p, k, 0.0f, y->p, n, nullptr); });
  };
  double fwd_lin[3] = {0, 0, 0}, adv_grp[3] = {0, 0, 0}, xtx_tn[3] = {0, 0, 0};
  float t_hh[3], t_ih[3], t_hi[3], t_g_h[3], t_g_i[3], t_xh[3], t_xi[3];
  std::unique_ptr<Buf<float>> xt = filled((size_t)I * I);
  for (int v = 1; v <= 2; v++) {
    t_hh[v] = lin(v, H, H), t_ih[v] = lin(v, I, H), t_hi[v] = lin(v, H, I);
    t_g_h[v] = grp(v, H, H), t_g_i[v] = grp(v, I, H);
    const float t_g_down = grp(v, H, I);
    t_xh[v] = time_ms([&] { F::exact::sgemm_v(v, true, false, H, H, R, 1.0f, x->p, H, x->p, H, 0.0f, xt->p, H, nullptr); });
    t_xi[v] = time_ms([&] { F::exact::sgemm_v(v, true, false, I, I, R, 1.0f, x->p, I, x->p, I, 0.0f, xt->p, I, nullptr); });
    fwd_lin[v] = 4 * t_hh[v] + 2 * t_ih[v] + t_hi[v];
    adv_grp[v] = 4 * (H / G) * t_g_h[v] + 2 * (H / G) * t_g_i[v] + ((I + G - 1) / G) * t_g_down;
    xtx_tn[v] = 3 * t_xh[v] + t_xi[v];
  }
  F::Dims d;
  d.hidden = H, d.heads = 32, d.kv_heads = 32, d.head_dim = 128, d.seq = 512, d.intermediate = I;
  Buf<float> sc((size_t)8 * d.heads * d.seq * d.seq), mn(I), mx(I), tok(R), rs(R);
  Buf<double> sq(I), rows64(R), acc64((size_t)H * H);
  const float t_att = time_ms([&] { F::exact::attention(x->p, x->p, x->p, sc.p, y->p, 8, d, nullptr); });
  const float t_norm = time_ms([&] { F::exact::add_rmsnorm(u->p, x->p, nw->p, 1e-5f, R, H, y->p, nullptr); });
  const float t_swiglu = time_ms([&] { F::exact::swiglu(u->p, x->p, (size_t)R * I, nullptr); });
  const float t_cb_h = time_ms([&] { F::exact::channel_blocks(x->p, R, H, mn.p, mx.p, sq.p, nullptr); });
  const float t_cb_i = time_ms([&] { F::exact::channel_blocks(x->p, R, I, mn.p, mx.p, sq.p, nullptr); });
  const float t_tm_h = time_ms([&] { F::token_max(x->p, R, H, tok.p, nullptr); });
  const float t_tm_i = time_ms([&] { F::token_max(x->p, R, I, tok.p, nullptr); });
  const float t_rs_h = time_ms([&] { F::exact::row_sumsq(y->p, R, H, nullptr, rows64.p, nullptr); });
  const float t_rs_i = time_ms([&] { F::exact::row_sumsq(y->p, R, I, nullptr, rows64.p, nullptr); });
  // XᵀX's widening into fp64 (H² here; I² scaled by (I/H)²): xtx_accumulate minus its SGEMM.
  const int vcur = F::exact::sgemm_version();
  const float t_xtx_h = time_ms([&] { F::exact::xtx_accumulate(x->p, R, H, xt->p, acc64.p, nullptr); });
  const double t_widen = std::max(0.0, (double)t_xtx_h - t_xh[vcur == 2 ? 2 : 1]);
  const float t_qa_h = time_ms([&] { F::quantize_act(x->p, R, H, nullptr, y->p, rs.p, nullptr); });
  const float t_qa_i = time_ms([&] { F::quantize_act(x->p, R, I, nullptr, y->p, rs.p, nullptr); });
  Buf<int32_t> acc((size_t)R * I);
  Buf<short> sg(std::vector<short>(I, 3));
  Buf<float> f(std::vector<float>(I, 0.01f));
  const float t_step_h = time_ms([&] { F::int_group_step(acc.p, nullptr, y->p, R, H, sg.p, true, true, false, nullptr); });
  const float t_step_i = time_ms([&] { F::int_group_step(acc.p, nullptr, y->p, R, I, sg.p, true, true, false, nullptr); });
  const float t_epi_h = time_ms([&] { F::w4a8_int_epilogue(u->p, acc.p, R, H, nullptr, rs.p, f.p, nullptr, nullptr); });
  const float t_epi_i = time_ms([&] { F::w4a8_int_epilogue(u->p, acc.p, R, I, nullptr, rs.p, f.p, nullptr, nullptr); });
  // The W4A8 integer linear of a (H, H) projection: per-group path (32 × (sgemm + int_group_step))
  // by each SGEMM vs the fused launch.
  float t_int[3] = {0, 0, 0};
  {
    Buf<short> sgh(std::vector<short>((size_t)(H / G) * H, 5));
    for (int v = 1; v <= 2; v++)
      t_int[v] = time_ms([&] {
        for (int gi = 0; gi < H / G; gi++) {
          F::exact::sgemm_v(v, false, true, R, H, G, 1.0f, x->p + gi * G, H, w->p + gi * G, H, 0.0f, y->p, H, nullptr);
          F::int_group_step(acc.p, nullptr, y->p, R, H, sgh.p + (size_t)gi * H, true, true, gi == 0, nullptr);
        }
      });
    t_int[0] = time_ms([&] { F::exact::int_linear_fused(R, H, H, G, x->p, H, w->p, H, sgh.p, H, acc.p, H, nullptr); });
  }
  std::printf("bench calib-exact W4A8 int linear 4096x4096 k4096 g128 (ms): per-group old %.2f, per-group sgemm2 %.2f, "
              "fused %.2f (%.2fx vs per-group sgemm2)\n",
              t_int[1], t_int[2], t_int[0], t_int[2] / t_int[0]);
  std::printf("bench calib-exact 7B chunk (ms; old -> sgemm2): linears NT HxH %.2f -> %.2f, IxH %.2f -> %.2f, HxI %.2f -> "
              "%.2f; per-group k128 H %.3f -> %.3f, I %.3f -> %.3f; XtX TN H %.2f -> %.2f, I %.2f -> %.2f\n",
              t_hh[1], t_hh[2], t_ih[1], t_ih[2], t_hi[1], t_hi[2], t_g_h[1], t_g_h[2], t_g_i[1], t_g_i[2], t_xh[1],
              t_xh[2], t_xi[1], t_xi[2]);
  std::printf("bench calib-exact 7B chunk (ms): attention 8 windows %.2f, add_rmsnorm %.3f, swiglu %.3f, channel_blocks "
              "H %.3f I %.3f, token_max H %.3f I %.3f, row_sumsq H %.3f I %.3f, widen H^2 %.3f, quantize_act H %.3f I "
              "%.3f, int_group_step H %.3f I %.3f, int epilogue H %.3f I %.3f\n",
              t_att, t_norm, t_swiglu, t_cb_h, t_cb_i, t_tm_h, t_tm_i, t_rs_h, t_rs_i, t_widen, t_qa_h, t_qa_i, t_step_h,
              t_step_i, t_epi_h, t_epi_i);
  const double rest_fwd = 2 * t_norm + t_att + t_swiglu;
  const double stats = 3 * (t_cb_h + t_tm_h) + t_cb_i + t_tm_i;
  const double hess = t_widen * (3 + (double)I * I / ((double)H * H)) + 5 * t_rs_h + 2 * t_rs_i;
  const double adv_int = 3 * t_qa_h + t_qa_i + 4 * (H / G) * t_step_h + 2 * (H / G) * t_step_i +
                         ((I + G - 1) / G) * t_step_h + 5 * t_epi_h + 2 * t_epi_i;
  const int chunks = 16;
  for (int v = 1; v <= 2; v++) {
    const double fptq = chunks * (fwd_lin[v] + rest_fwd + stats + adv_grp[v] + adv_int + rest_fwd) / 1e3;
    const double gptq = chunks * (fwd_lin[v] + rest_fwd + stats + xtx_tn[v] + hess + fwd_lin[v] + rest_fwd) / 1e3;
    std::printf("bench calib-exact 7B projected GPU s/layer with %s: w4a8-fptq %.2f (SGEMM %.2f, attention %.2f, "
                "int steps %.2f, rest %.2f); w4a16-gptq %.2f (SGEMM %.2f, widen+row_sumsq %.2f)\n",
                v == 1 ? "the old SGEMM" : "sgemm2", fptq, chunks * (fwd_lin[v] + adv_grp[v]) / 1e3,
                chunks * 2 * t_att / 1e3, chunks * adv_int / 1e3,
                fptq - chunks * (fwd_lin[v] + adv_grp[v] + 2 * t_att + adv_int) / 1e3, gptq,
                chunks * (2 * fwd_lin[v] + xtx_tn[v]) / 1e3, chunks * hess / 1e3);
  }
}

}  // namespace

int cmd_test_calib_exact(const Args& a) {
  Rng g((uint64_t)a.get_int("seed", 1), 7);
  test_sgemm(g);
  test_int_linear(g);
  test_attention(g);
  test_elementwise_and_stats(g);
  test_golden(a.get("golden", "runtime/tests/data/calib_exact_golden.bin"));
  if (!a.has("no-bench")) {
    bench(g);
    bench_7b(g);
  }
  std::printf("{\"ok\":%s,\"test\":\"calib-exact\",\"failed\":%d}\n", g_failed ? "false" : "true", g_failed);
  std::fprintf(stderr, "calib-exact kernels: %s (%d failed)\n", g_failed ? "FAIL" : "PASS", g_failed);
  return g_failed ? 1 : 0;
}

}  // namespace odyssey
