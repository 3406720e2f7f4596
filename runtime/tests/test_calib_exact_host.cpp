// test_calib_exact_host.cpp: the host reference of `--precision exact` (calib/canonical_ref.hpp,
// the same canonical.hpp code the GPU kernels run) against the Go pass's own results
// (tests/data/calib_exact_golden.bin, written by tests/exactgolden/main.go from
// model.Layer.Forward and calib.Stats.Add), bit for bit. No GPU: this shows that the order of
// operations written down for the GPU is the CPU's; `odyssey-rt test calib-exact` then shows
// that the GPU kernels compute what this reference computes.
// Usage: test_calib_exact_host [GOLDEN.bin]   (default: the source tree's file)
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "calib/exact_golden.hpp"

namespace C = odyssey::calibgpu::canon;
namespace G = odyssey::calibgpu::canon::golden;

#ifndef ODY_GOLDEN_PATH
#define ODY_GOLDEN_PATH "tests/data/calib_exact_golden.bin"
#endif

static int failed = 0;

static void check_hash(const char* cs, const char* what, const G::Case& c, const std::string& name, const void* p,
                       size_t n, size_t esize) {
  auto it = c.rec.find(name);
  if (it == c.rec.end() || it->second.kind != 2 || it->second.count != n) {
    std::printf("%s %s: FAIL, no hash record %s of %zu values\n", cs, what, name.c_str(), n);
    failed++;
    return;
  }
  const uint64_t h = G::fnv1a(p, n * esize);
  const bool ok = h == it->second.hash;
  if (!ok) failed++;
  std::printf("%s %s: %s (fnv %016llx, Go %016llx)\n", cs, what, ok ? "bit-identical" : "FAIL",
              (unsigned long long)h, (unsigned long long)it->second.hash);
}

template <class T>
static void check_full(const char* cs, const std::string& name, const G::Case& c, const std::vector<T>& got) {
  auto it = c.rec.find(name);
  const std::vector<T>* want = nullptr;
  if (it != c.rec.end()) {
    if constexpr (sizeof(T) == 4) want = &it->second.f32;
    else want = &it->second.f64;
  }
  if (!want || want->size() != got.size()) {
    std::printf("%s %s: FAIL, missing or wrong size\n", cs, name.c_str());
    failed++;
    return;
  }
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); i++)
    if (std::memcmp(&got[i], &(*want)[i], sizeof(T))) {
      if (!bad) first = i;
      bad++;
    }
  if (bad) {
    failed++;
    std::printf("%s %s: FAIL, %zu of %zu differ (first %zu: %.17g vs Go %.17g)\n", cs, name.c_str(), bad, got.size(),
                first, (double)got[first], (double)(*want)[first]);
  } else {
    std::printf("%s %s: bit-identical (%zu values)\n", cs, name.c_str(), got.size());
  }
}

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : ODY_GOLDEN_PATH;
  const std::vector<G::Case> cases = G::read(path);
  for (size_t ci = 0; ci < cases.size(); ci++) {
    const G::Case& c = cases[ci];
    G::Inputs in = G::inputs(c, (int)ci);
    const C::ref::Layer& L = in.layer;
    char cs[64];
    std::snprintf(cs, sizeof cs, "case %zu", ci);
    check_hash(cs, "rope cos table", c, "rope_cos", L.cos.data(), L.cos.size(), 4);
    check_hash(cs, "rope sin table", c, "rope_sin", L.sin.data(), L.sin.size(), 4);
    std::vector<C::ref::Stats> st;
    for (int w : {L.hidden, L.heads * L.hd, L.hidden, L.inter}) st.emplace_back(w);
    for (size_t k = 0; k < in.h.size(); k++) {  // the chunks in order, as the pass runs them
      std::vector<float>& h = in.h[k];
      C::ref::forward(L, h.data(), in.chunk_windows[k], in.seq,
                      [&](int i, const float* x, int rows, int) { st[i].add(x, rows); });
      const std::string what = "layer output, chunk " + std::to_string(k);
      check_hash(cs, what.c_str(), c, "h_out" + std::to_string(k), h.data(), h.size(), 4);
    }
    for (int i = 0; i < 4; i++) {
      const std::string p = "stats" + std::to_string(i) + "_";
      check_full(cs, p + "min", c, st[i].mn);
      check_full(cs, p + "max", c, st[i].mx);
      check_full(cs, p + "sumsq", c, st[i].sumsq);
      check_full(cs, p + "token", c, std::vector<double>{st[i].token_sum, (double)st[i].token_min});
      check_hash(cs, (p + "xtx").c_str(), c, p + "xtx", st[i].xtx.data(), st[i].xtx.size(), 8);
    }
  }
  std::printf("calib-exact host reference vs Go: %s (%d failed)\n", failed ? "FAIL" : "PASS", failed);
  return failed ? 1 : 0;
}
