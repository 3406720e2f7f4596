// sgemm2_emu.cpp: calib/exact_sgemm2.cuh (the second exact SGEMM of --precision exact, and the
// W4A8 integer linear on its tile loop) run on the CPU under emu.hpp (each CUDA thread a fiber,
// blocks one after another, __syncthreads a real barrier), against canonical_ref.hpp's sgemm bit
// for bit and against quant.QLinear's integer arithmetic. Usage: run_sgemm2.sh (~1 min).
//
// What it checks without a GPU: the kernel's index arithmetic (which k each thread's chains
// visit, in which order: any slip gives different bits, since the chain is not associative on
// these mixed-magnitude inputs), the K stage / canonical block closing, the double buffer's
// barrier placement (a buffer overwritten before it is read shows as wrong bits here too, since
// the fibers run to the barrier one after another), the edge masks, the vector / scalar path
// choice, and the 16-byte alignment of every vector access (ODY_SGEMM2_ALIGNED aborts).
// What it cannot: the device's timing, data races between real threads, reads outside an
// allocation (the host's vectors are not fenced; compute-sanitizer does that on the device).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "emu.hpp"

inline const float4* emu_aligned16(const float4* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16) {
    std::fprintf(stderr, "sgemm2 emu: misaligned 16-byte read at %p\n", (const void*)p);
    std::abort();
  }
  return p;
}
inline float4* emu_aligned16(float4* p) { return const_cast<float4*>(emu_aligned16(const_cast<const float4*>(p))); }
#define ODY_SGEMM2_ALIGNED(p) emu_aligned16(p)

#include "calib/canonical_ref.hpp"
#include "calib/exact_sgemm2.cuh"

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

namespace S = odyssey::calibgpu::f32::exact::sgemm2;
namespace R = odyssey::calibgpu::canon::ref;

// The same dispatch as calib_exact.cu's sgemm_v(2, ...).
static void sgemm2(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                   float beta, float* c, int ldc) {
  dim3 grid((n + S::kBN - 1) / S::kBN, (m + S::kBM - 1) / S::kBM);
  const bool va = S::vec16(a, lda), vb = S::vec16(b, ldb), vc = S::vec16(c, ldc);
  auto go = [&](auto kern) {
    emu::launch(grid, dim3(S::kThreads), 0, nullptr, [=] { kern(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, va, vb, vc); });
  };
  if (!ta && !tb) go(S::sgemm2_kernel<false, false>);
  else if (!ta && tb) go(S::sgemm2_kernel<false, true>);
  else if (ta && !tb) go(S::sgemm2_kernel<true, false>);
  else go(S::sgemm2_kernel<true, true>);
}

// Mixed magnitudes as the GPU test's rand_vec: zeros, denormals, values scaled by 2^±20.
static std::vector<float> rand_vec(std::mt19937_64& g, size_t n) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_real_distribution<double> p(0.0, 1.0);
  std::vector<float> v(n);
  for (float& x : v) {
    const double q = p(g);
    x = u(g);
    if (q < 0.02) x = 0.0f;
    else if (q < 0.04) x *= 1e-39f;
    else if (q < 0.05) x = std::ldexp(x, 20);
    else if (q < 0.06) x = std::ldexp(x, -20);
  }
  return v;
}

// int_linear_kernel (the W4A8 integer linear in one launch) against quant.QLinear's integer
// arithmetic written plainly: P_g exact in int64, acc = Σ_g uint32(int32 ŝ)·uint32(P_g) wrapping.
// Codes: x integers in [−127, 127] (some −0), q in [−8, 7], ŝ over the whole int16 range (the
// products wrap); one case at the bound: a 16384-wide group of 127 · (−8) (|P| just below 2²⁴).
static int int_linear_cases(std::mt19937_64& g, bool quick) {
  struct Case {
    int m, n, k, gs;
    bool extreme;
  } cases[] = {{130, 129, 300, 128, false}, {1, 257, 256, 8, false},   {257, 130, 1024, 128, false},
               {64, 64, 16384, 16384, true}, {129, 3, 4104, 4096, false}, {3, 300, 11008, 128, false}};
  std::uniform_int_distribution<int> xc(-127, 127), qc(-8, 7), sc(-32768, 32767);
  int n_cases = 0, failed = 0;
  for (const Case& cs : cases) {
    if (quick && (long)cs.m * cs.n * cs.k > 20000000) continue;
    for (int pad = 0; pad < 2; pad++) {  // row strides k (16-byte rows where k % 4 == 0) and k + 1 (scalar)
      const int lda = pad ? cs.k + 1 : cs.k, ldb = lda, G = (cs.k + cs.gs - 1) / cs.gs, ldsg = (cs.n + 7) / 8 * 8;
      std::vector<float> x((size_t)cs.m * lda), q((size_t)cs.n * ldb);
      for (float& v : x) v = cs.extreme ? 127.0f : (float)xc(g);
      for (float& v : q) v = cs.extreme ? -8.0f : (float)qc(g);
      for (size_t i = 0; i < x.size(); i += 7) if (x[i] == 0.0f) x[i] = -0.0f;
      std::vector<short> sg((size_t)G * ldsg);
      for (short& v : sg) v = (short)sc(g);
      std::vector<int32_t> acc((size_t)cs.m * cs.n, 0x5a5a5a5a), ref(acc.size());
      odyssey::calibgpu::canon::ref::int_linear(cs.m, cs.n, cs.k, cs.gs, x.data(), lda, q.data(), ldb, sg.data(), ldsg,
                                                ref.data(), cs.n);
      dim3 grid((cs.n + S::kBN - 1) / S::kBN, (cs.m + S::kBM - 1) / S::kBM);
      const bool va = S::vec16(x.data(), lda), vb = S::vec16(q.data(), ldb);
      const float* xp = x.data();
      const float* qp = q.data();
      const short* sp = sg.data();
      int32_t* ap = acc.data();
      const Case c0 = cs;
      emu::launch(grid, dim3(S::kThreads), 0, nullptr, [=] {
        S::int_linear_kernel(c0.m, c0.n, c0.k, c0.gs, xp, lda, qp, ldb, sp, ldsg, ap, c0.n, va, vb);
      });
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < acc.size(); i++)
        if (acc[i] != ref[i]) {
          if (!bad) first = i;
          bad++;
        }
      n_cases++;
      if (bad) {
        failed++;
        std::printf("int_linear emu m%d n%d k%d gs%d lda %d: FAIL, %zu differ (first at %zu: %d vs ref %d)\n", cs.m, cs.n,
                    cs.k, cs.gs, lda, bad, first, acc[first], ref[first]);
      }
    }
  }
  std::printf("int_linear emu: %d/%d cases equal to the integer reference: %s\n", n_cases - failed, n_cases,
              failed ? "FAIL" : "PASS");
  return failed;
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::mt19937_64 g(12345);
  const int shapes[][3] = {{1, 1, 1},       {37, 70, 16},   {65, 130, 385}, {128, 128, 8},   {129, 127, 9},
                           {255, 257, 384}, {200, 130, 770}, {131, 260, 5},  {1, 300, 1153}, {300, 1, 100}};
  const float ab[][2] = {{1, 0}, {-1, 1}, {0.37f, 0}, {-1.5f, 0.25f}};
  int cases = 0, failed = 0, idx = 0;
  for (auto& sh : shapes) {
    if (quick && (long)sh[0] * sh[1] * sh[2] > 4000000) continue;
    for (int t = 0; t < 4; t++)
      for (int pad = 0; pad < 4; pad++) {  // 0: width rounded up to 4; 1: width; 2: width + 1; 3: as 0 from base + 1 float
        const bool ta = t & 1, tb = t & 2;
        const int m = sh[0], n = sh[1], k = sh[2];
        const float alpha = ab[idx % 4][0], beta = ab[idx % 4][1];
        idx++;
        auto ld = [&](int w) { return pad == 0 || pad == 3 ? (w + 3) / 4 * 4 : pad == 1 ? w : w + 1; };
        const int lda = ld(ta ? m : k), ldb = ld(tb ? k : n), ldc = ld(n), off = pad == 3 ? 1 : 0;
        const std::vector<float> a = rand_vec(g, (size_t)(ta ? k : m) * lda + off),
                                 b = rand_vec(g, (size_t)(tb ? n : k) * ldb + off),
                                 c0 = rand_vec(g, (size_t)m * ldc + off);
        std::vector<float> c = c0, ref = c0;
        sgemm2(ta, tb, m, n, k, alpha, a.data() + off, lda, b.data() + off, ldb, beta, c.data() + off, ldc);
        R::sgemm(ta, tb, m, n, k, alpha, a.data() + off, lda, b.data() + off, ldb, beta, ref.data() + off, ldc);
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < c.size(); i++)  // the whole buffer: padding columns must stay untouched
          if (std::memcmp(&c[i], &ref[i], 4) != 0 && !(c[i] != c[i] && ref[i] != ref[i])) {
            if (!bad) first = i;
            bad++;
          }
        cases++;
        if (bad) {
          failed++;
          std::printf("sgemm2 emu %c%c m%d n%d k%d lda %d ldb %d ldc %d off %d: FAIL, %zu differ (first at %zu: %.9g vs ref %.9g)\n",
                      ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, lda, ldb, ldc, off, bad, first, (double)c[first],
                      (double)ref[first]);
        }
      }
  }
  std::printf("sgemm2 emu: %d/%d cases bit-identical to canonical_ref (%lld blocks emulated): %s\n", cases - failed,
              cases, emu::g_blocks, failed ? "FAIL" : "PASS");
  const int ifailed = int_linear_cases(g, quick);
  return failed || ifailed ? 1 : 0;
}
