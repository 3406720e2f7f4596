// gemv_swiglu_emu.cpp: the decode GEMV's fused SwiGLU epilogue (gemv_mma.cu, w4a8_gemv_swiglu)
// on the host, under emu.hpp (run_gemv_swiglu.sh builds it). For each case the plain GEMV kernel
// of the same file (launch_w4a8_gemv_mma: the [gate; up] GEMM with up at column Np, as the
// executor's fused site lays it out) followed by a host SwiGLU + quantization (act_math.cuh's
// functions, the ones layers::swiglu runs) is the reference; the fused kernel must give the
// same bytes: codes, padding columns, per-token scales, and leave its slots zero (run twice).
// What it checks: the strip mapping of gate/up inside a block, the epilogue's pairing of strip j
// with strip j + S/2, the per-token ticket and the last block's quantization, padding, chunked
// staging; not the device (rounding of expf, tensor cores, races: the GPU test does that).
#include "emu.hpp"

inline float __int2float_rn(int a) { return (float)a; }

// What gemv_mma.cu takes from kernel_common.cuh (the same expressions).
namespace odyssey::kernel {
constexpr int kBK = 128;
inline __half epilogue_int(int32_t acc, float xs, float f, const float* bias, int c) {
  float y = __fmul_rn(__int2float_rn(acc), __fmul_rn(xs, f));
  if (bias) y = __fadd_rn(y, bias[c]);
  return __float2half_rn(y);
}
}  // namespace odyssey::kernel

// Host versions of gemv_mma.cu's inline-assembly helpers (prep_gemv_mma.py removes those).
#define EMU_GEMV_HELPERS                                                                           \
  inline uint4 ld_stream16(const void* p) { uint4 v; std::memcpy(&v, p, 16); return v; }          \
  inline uint32_t ld_nc32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }         \
  inline void st_shared16(uint32_t addr, const uint32_t (&w)[4]) {                                \
    std::memcpy(emu::g_dyn.data() + addr, w, 16);                                                  \
  }                                                                                                \
  inline unsigned cluster_size() { return 1; }                                                    \
  inline unsigned cluster_rank() { return 0; }                                                    \
  inline void cluster_sync() { __syncthreads(); }                                                 \
  inline void st_cluster16(uint32_t, unsigned, const uint32_t (&)[4]) { std::abort(); }           \
  inline void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) { emu_ldsm_x4(r, addr); }              \
  template <bool ZERO>                                                                             \
  inline void mma_s8(uint32_t (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,         \
                     uint32_t b0, uint32_t b1) {                                                   \
    emu_mma_s8(d, a0, a1, a2, a3, b0, b1, ZERO);                                                   \
  }

// The emulator runs no clusters (cluster > 1 is never asked of it): a plain launch.
#define EMU_LAUNCH_CLUSTER                                                                         \
  template <typename... KArgs, typename... Args>                                                   \
  cudaError_t launch_cluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, int, size_t smem,    \
                             cudaStream_t stream, Args&&... args) {                                \
    return launch_pdl(kernel, grid, block, smem, stream, std::forward<Args>(args)...);             \
  }

namespace odyssey {
inline void emu_ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  if (addr % 16) { std::fprintf(stderr, "emu: ldmatrix row address not 16-byte aligned\n"); std::abort(); }
  const int w = emu::warp(), l = emu::lane();
  emu::g_x[w][l][0] = addr;
  __syncwarp();
  for (int i = 0; i < 4; i++) {
    uint32_t a = emu::g_x[w][8 * i + l / 4][0] + (l % 4) * 4;
    std::memcpy(&r[i], emu::g_dyn.data() + a, 4);
  }
  __syncwarp();
}
// mma.sync.m16n8k32.row.col.s32.s8.s8.s32 (PTX ISA fragment layouts): a0/a2 rows gid, a1/a3
// rows gid + 8; a0/a1 k = 4·tig + 0..3, a2/a3 k = 16 + 4·tig + 0..3; b0 k = 4·tig + 0..3,
// b1 k = 16 + 4·tig + 0..3, column gid; d0/d1 row gid, d2/d3 row gid + 8, columns 2·tig, +1.
inline void emu_mma_s8(uint32_t (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                       uint32_t b1, bool zero) {
  const int w = emu::warp(), l = emu::lane();
  uint32_t* x = emu::g_x[w][l];
  x[0] = a0, x[1] = a1, x[2] = a2, x[3] = a3, x[4] = b0, x[5] = b1;
  __syncwarp();
  auto byte = [](uint32_t v, int i) { return (int32_t)(int8_t)(v >> (8 * i)); };
  const int gid = l / 4, t = l % 4;
  for (int e = 0; e < 4; e++) {
    const int row = gid + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    uint32_t sum = zero ? 0u : d[e];
    for (int k = 0; k < 32; k++) {
      const int kk = k % 16, hi = k >= 16;
      const int la = (row % 8) * 4 + kk / 4, ra = (row >= 8 ? 1 : 0) + (hi ? 2 : 0);
      const int lb = col * 4 + kk / 4, rb = hi ? 5 : 4;
      sum += (uint32_t)(byte(emu::g_x[w][la][ra], kk % 4) * byte(emu::g_x[w][lb][rb], kk % 4));
    }
    d[e] = sum;
  }
  __syncwarp();
}
}  // namespace odyssey

#include "gemv_mma_emu.inc"

namespace odyssey {
int dispatch_config(int, int, int, bool) { return kGemvMmaS4Config; }  // the emulation names strips
}  // namespace odyssey

#include <string>
#include <vector>

using namespace odyssey;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int n) { return (int)(next() % (uint64_t)n); }
  float uniform(float a, float b) { return a + (b - a) * (float)((next() >> 11) * (1.0 / 9007199254740992.0)); }
};

struct Case {
  int m, k, cols, group, strips;
  bool out_tok, in_tok, bias, blowup;
};

bool xq_vs_plain(int m, int n, int k, int group, int strips, const std::vector<float>& y32, int y_ld, int cols,
                 const std::vector<unsigned>* slots_in, uint64_t seed);

bool run_case(const Case& f, uint64_t seed) {
  Rng r(seed);
  const int np = (f.cols + 7) / 8 * 8, n2 = 2 * np, G = f.k / f.group, ld = (f.cols + 127) / 128 * 128;
  std::vector<uint8_t> qw((size_t)n2 * f.k / 2);
  for (auto& b : qw) b = (uint8_t)r.next();
  std::vector<int16_t> gs((size_t)G * n2);
  for (auto& g : gs) g = (int16_t)((1 + r.below(40)) * (r.below(2) ? 1 : -1));
  std::vector<int8_t> x((size_t)f.m * f.k);
  for (auto& v : x) v = (int8_t)(r.below(255) - 127);
  const float target = 4.f / (std::sqrt((float)f.k) * 73.f * 4.6f * 16.f * 23.f);
  std::vector<float> cs(n2), bias(n2), xs(f.in_tok ? f.m : 1);
  for (auto& v : cs) v = r.uniform(0.5f, 2.f) * target * 127.f;
  for (auto& v : bias) v = r.uniform(-1.f, 1.f);
  for (auto& v : xs) v = r.uniform(0.5f, 1.5f) / 127.f;
  if (f.blowup) cs[(size_t)std::min(5, f.cols - 1)] = 1e30f;
  const float s_static = 0.037f;
  // Reference: the plain kernel over [gate; up], then SwiGLU + quantization on the host.
  std::vector<__half> y((size_t)f.m * n2);
  GemvParams p{};
  p.x = x.data();
  p.x_scale = xs.data();
  p.qweight = qw.data();
  p.group_scale = gs.data();
  p.channel_scale = cs.data();
  p.bias = f.bias ? bias.data() : nullptr;
  p.y = y.data();
  p.m = f.m;
  p.n = n2;
  p.np = n2;
  p.k = f.k;
  p.group_size = f.group;
  p.act_per_token = f.in_tok;
  launch_w4a8_gemv_mma(p, f.strips, nullptr);
  std::vector<int8_t> want((size_t)f.m * ld, 0);
  std::vector<float> want_ts(f.m, 0.f);
  for (int m = 0; m < f.m; m++) {
    std::vector<float> yv(f.cols);
    unsigned mb = 0;
    for (int c = 0; c < f.cols; c++) {
      yv[c] = actmath::silu_mul(__half2float(y[(size_t)m * n2 + c]), __half2float(y[(size_t)m * n2 + np + c]));
      const unsigned b = __float_as_uint(yv[c]) & 0x7fffffffu;
      mb = b > mb ? b : mb;
    }
    const float s = f.out_tok ? actmath::row_scale(mb) : s_static;
    want_ts[m] = s;
    for (int c = 0; c < f.cols; c++) want[(size_t)m * ld + c] = actmath::quantize_value(yv[c], s);
  }
  // The inputs must exercise the quantization: some codes strictly inside (−127, 127), not 0.
  long long mid = 0;
  for (int8_t v : want) mid += v != 0 && v != 127 && v != -127;
  if (!(f.blowup && f.out_tok) && mid * 4 < (long long)f.m * f.cols) {  // (per-token blowup: NaN scales, all 0)
    std::fprintf(stderr, "  degenerate reference: only %lld of %lld codes inside (-127, 127) and not 0\n", mid,
                 (long long)f.m * f.cols);
    return false;
  }
  std::vector<float> y32((size_t)f.m * ld, NAN);
  std::vector<unsigned> slots(f.m + 1, 0);
  bool ok = true;
  for (int run = 0; run < 2; run++) {
    std::vector<int8_t> got((size_t)f.m * ld, -1);
    std::vector<float> ts(f.m, NAN);
    GemvSwigluArgs a{};
    a.x = x.data();
    a.x_scale = xs.data();
    a.act_per_token = f.in_tok;
    a.m = f.m;
    a.k = f.k;
    a.group_size = f.group;
    a.scale_ld = n2;
    a.qweight_g = qw.data();
    a.group_scale_g = gs.data();
    a.channel_scale_g = cs.data();
    a.bias_g = f.bias ? bias.data() : nullptr;
    a.qweight_u = qw.data() + (size_t)(np / 8) * (f.k / 128) * 512;
    a.group_scale_u = gs.data() + np;
    a.channel_scale_u = cs.data() + np;
    a.bias_u = f.bias ? bias.data() + np : nullptr;
    a.cols = f.cols;
    a.ld = ld;
    a.out = got.data();
    a.static_scale = f.out_tok ? nullptr : &s_static;
    a.token_scale = ts.data();
    a.y32 = y32.data();
    a.slots = slots.data();
    a.strips = f.strips;
    if (w4a8_gemv_swiglu(a, nullptr) != cudaSuccess) {
      std::fprintf(stderr, "  refused\n");
      return false;
    }
    for (size_t i = 0; i < got.size(); i++)
      if (got[i] != want[i]) {
        std::fprintf(stderr, "  run %d: code [%zu, %zu] = %d, unfused %d\n", run, i / ld, i % ld, got[i], want[i]);
        ok = false;
        break;
      }
    if (f.out_tok) {
      for (int m = 0; m < f.m; m++)
        if (__float_as_uint(ts[m]) != __float_as_uint(want_ts[m])) {
          std::fprintf(stderr, "  run %d: token scale %d = %g, unfused %g\n", run, m, ts[m], want_ts[m]);
          ok = false;
        }
      for (unsigned v : slots)
        if (v) {
          std::fprintf(stderr, "  run %d: slots not left zero\n", run);
          ok = false;
          break;
        }
    }
  }
  if (f.out_tok) {
    // The executor's per-token chain (downq): the fused kernel's publish mode (y32 and the row
    // maxima only, out untouched), then down's GEMV quantizing y32 itself.
    std::vector<int8_t> got((size_t)f.m * ld, -1);
    GemvSwigluArgs a{};
    a.x = x.data();
    a.x_scale = xs.data();
    a.act_per_token = f.in_tok;
    a.m = f.m;
    a.k = f.k;
    a.group_size = f.group;
    a.scale_ld = n2;
    a.qweight_g = qw.data();
    a.group_scale_g = gs.data();
    a.channel_scale_g = cs.data();
    a.bias_g = f.bias ? bias.data() : nullptr;
    a.qweight_u = qw.data() + (size_t)(np / 8) * (f.k / 128) * 512;
    a.group_scale_u = gs.data() + np;
    a.channel_scale_u = cs.data() + np;
    a.bias_u = f.bias ? bias.data() + np : nullptr;
    a.cols = f.cols;
    a.ld = ld;
    a.out = got.data();
    a.y32 = y32.data();
    a.slots = slots.data();
    a.strips = f.strips;
    a.publish = 1;
    if (w4a8_gemv_swiglu(a, nullptr) != cudaSuccess) {
      std::fprintf(stderr, "  publish refused\n");
      return false;
    }
    for (int8_t v : got)
      if (v != -1) {
        std::fprintf(stderr, "  publish mode wrote codes\n");
        ok = false;
        break;
      }
    if (slots[f.m] != 0) {
      std::fprintf(stderr, "  publish mode took a ticket\n");
      ok = false;
    }
    const std::vector<unsigned> published = slots;
    std::fill(slots.begin(), slots.end(), 0u);
    ok &= xq_vs_plain(f.m, 40, ld, 128, f.strips, y32, ld, f.cols, &published, seed + 1000);
  }
  return ok;
}

// ---- downq (issue 14): w4a8_gemv_xq (down's GEMV quantizing its fp32 input per token) against
// the host quantization (act_math.cuh's row_scale/quantize_value, what layers::swiglu runs)
// followed by the plain kernel on those codes: y and acc_out bit-equal, x_out codes, token
// scales, and the slots left zero (run twice). slots_in: the maxima as a publisher left them
// (checked against the host's), or null to set them from the host.
bool xq_vs_plain(int m, int n, int k, int group, int strips, const std::vector<float>& y32, int y_ld, int cols,
                 const std::vector<unsigned>* slots_in, uint64_t seed) {
  Rng r(seed);
  const int G = k / group, np = (n + 7) / 8 * 8;
  std::vector<uint8_t> qw((size_t)np * k / 2);
  for (auto& b : qw) b = (uint8_t)r.next();
  std::vector<int16_t> gs((size_t)G * np);
  for (auto& g : gs) g = (int16_t)((1 + r.below(40)) * (r.below(2) ? 1 : -1));
  std::vector<float> cs(np), bias(np);
  for (auto& v : cs) v = r.uniform(0.5f, 2.f) * 1e-4f;
  for (auto& v : bias) v = r.uniform(-1.f, 1.f);
  std::vector<int8_t> want((size_t)m * k, 0);
  std::vector<float> want_ts(m);
  std::vector<unsigned> maxima(m + 1, 0);
  for (int i = 0; i < m; i++) {
    unsigned mb = 0;
    for (int c = 0; c < cols; c++) {
      const unsigned b = __float_as_uint(y32[(size_t)i * y_ld + c]) & 0x7fffffffu;
      mb = b > mb ? b : mb;
    }
    maxima[i] = mb;
    want_ts[i] = actmath::row_scale(mb);
    for (int c = 0; c < cols; c++) want[(size_t)i * k + c] = actmath::quantize_value(y32[(size_t)i * y_ld + c], want_ts[i]);
  }
  bool ok = true;
  if (slots_in)
    for (int i = 0; i < m; i++)
      if ((*slots_in)[i] != maxima[i]) {
        std::fprintf(stderr, "  published max of row %d: 0x%08x, host 0x%08x\n", i, (*slots_in)[i], maxima[i]);
        ok = false;
      }
  std::vector<__half> yref((size_t)m * n);
  std::vector<int32_t> aref((size_t)m * n);
  GemvParams p{};
  p.x = want.data();
  p.x_scale = want_ts.data();
  p.qweight = qw.data();
  p.group_scale = gs.data();
  p.channel_scale = cs.data();
  p.bias = bias.data();
  p.y = yref.data();
  p.acc_out = aref.data();
  p.m = m;
  p.n = n;
  p.np = np;
  p.k = k;
  p.group_size = group;
  p.act_per_token = 1;
  launch_w4a8_gemv_mma(p, strips, nullptr);
  std::vector<unsigned> slots = slots_in ? *slots_in : maxima;
  for (int run = 0; run < 2; run++) {
    if (run == 1) std::copy(maxima.begin(), maxima.begin() + m, slots.begin());  // as a publisher would
    std::vector<__half> y((size_t)m * n);
    std::vector<int32_t> acc((size_t)m * n, -1);
    std::vector<int8_t> xo((size_t)m * k, 99);
    std::vector<float> ts(m, NAN);
    GemvXqArgs a{};
    a.y32 = y32.data();
    a.y_ld = y_ld;
    a.cols = cols;
    a.slots = slots.data();
    a.token_scale = ts.data();
    a.x_out = xo.data();
    a.qweight = qw.data();
    a.group_scale = gs.data();
    a.channel_scale = cs.data();
    a.bias = bias.data();
    a.y = y.data();
    a.acc_out = acc.data();
    a.m = m;
    a.n = n;
    a.k = k;
    a.group_size = group;
    a.strips = strips;
    if (w4a8_gemv_xq(a, nullptr) != cudaSuccess) {
      std::fprintf(stderr, "  w4a8_gemv_xq refused\n");
      return false;
    }
    if (xo != want) {
      for (size_t i = 0; i < xo.size(); i++)
        if (xo[i] != want[i]) {
          std::fprintf(stderr, "  run %d: code [%zu, %zu] = %d, host %d (y %a, s %a)\n", run, i / k, i % k, xo[i], want[i],
                       (i % k) < (size_t)cols ? y32[(i / k) * y_ld + i % k] : 0.f, want_ts[i / k]);
          break;
        }
      ok = false;
    }
    for (int i = 0; i < m; i++)
      if (__float_as_uint(ts[i]) != __float_as_uint(want_ts[i])) {
        std::fprintf(stderr, "  run %d: token scale %d = %g, host %g\n", run, i, ts[i], want_ts[i]);
        ok = false;
      }
    if (acc != aref) {
      std::fprintf(stderr, "  run %d: int32 sums differ from the plain kernel's\n", run);
      ok = false;
    }
    if (std::memcmp(y.data(), yref.data(), y.size() * 2) != 0) {
      std::fprintf(stderr, "  run %d: fp16 outputs differ from the plain kernel's\n", run);
      ok = false;
    }
    for (unsigned v : slots)
      if (v) {
        std::fprintf(stderr, "  run %d: slots not left zero\n", run);
        ok = false;
        break;
      }
  }
  return ok;
}

// Synthetic fp32 rows: kind 0 random O(1–10), 1 all zeros, 2 one huge value, 3 negative max,
// 4 exact ties (max 127 → s = 1, values k + 0.5), 5 near-ties at a scale ≠ 1, 6 an inf (NaN scale).
std::vector<float> synth_rows(int m, int cols, int y_ld, Rng& r, int kind_of_row0) {
  std::vector<float> y((size_t)m * y_ld, NAN);  // columns ≥ cols: never written (NaN)
  for (int i = 0; i < m; i++) {
    const int kind = (kind_of_row0 + i) % 7;
    float* row = y.data() + (size_t)i * y_ld;
    for (int c = 0; c < cols; c++) row[c] = r.uniform(-10.f, 10.f);
    if (kind == 1)
      for (int c = 0; c < cols; c++) row[c] = 0.f;
    if (kind == 2) row[r.below(cols)] = 3e5f;
    if (kind == 3) row[r.below(cols)] = -50.f;
    if (kind == 4) {
      for (int c = 0; c < cols; c++) row[c] = (float)(r.below(254) - 127) + 0.5f;
      row[r.below(cols)] = 127.f;
    }
    if (kind == 5) {
      const float s = actmath::row_scale(__float_as_uint(9.f));
      for (int c = 0; c < cols; c++) row[c] = std::nextafter(((float)(r.below(254) - 127) + 0.5f) * s, r.below(2) ? 1e9f : -1e9f);
      row[r.below(cols)] = 9.f;
      for (int c = 0; c < cols; c++) row[c] = std::fmin(std::fmax(row[c], -9.f), 9.f);
    }
    if (kind == 6) row[r.below(cols)] = INFINITY;
  }
  return y;
}

// quantize_value_rcp against quantize_value over random values and scales, ties and near-ties.
bool check_rcp() {
  Rng r(7);
  long long bad = 0, n = 0, fallback = 0;
  auto one = [&](float x, float s) {
    const float rc = actmath::quant_rcp(s);
    const int8_t a = actmath::quantize_value_rcp(x, s, rc), b = actmath::quantize_value(x, s);
    n++;
    if (rc == 0.f) fallback++;
    if (a != b && bad++ < 5) std::fprintf(stderr, "  rcp: x %a s %a: %d, exact %d\n", x, s, a, b);
  };
  for (int i = 0; i < 4000000; i++) {
    const float mx = std::ldexp(r.uniform(1.f, 2.f), r.below(80) - 40);
    const float s = actmath::row_scale(__float_as_uint(mx));
    const float x = r.uniform(-1.f, 1.f) * mx;
    one(x, s);
    const float t = ((float)(r.below(256) - 128) + 0.5f) * s;  // near a half-integer quotient
    one(t, s);
    one(std::nextafter(t, 1e30f), s);
    one(std::nextafter(t, -1e30f), s);
  }
  for (unsigned b : {0u, 1u, 0x007fffffu, 0x00800000u, 0x7f7fffffu, 0x7f800000u, 0x7fc00000u}) {
    const float s = actmath::row_scale(b);
    for (float x : {0.f, 1e-45f, -1e-38f, 1.f, -3.f, 1e30f, -3e38f}) one(x, s);
  }
  std::fprintf(stderr, "quantize_value_rcp: %lld values, %lld differ from quantize_value (%lld with r = 0)\n", n, bad,
               fallback);
  return bad == 0;
}

int main() {
  std::vector<Case> cases;
  for (int st : {2, 4, 8})
    for (bool tok : {true, false}) {
      cases.push_back({1, 256, 100, 128, st, tok, !tok, false, false});  // cols % 8 ≠ 0
      cases.push_back({3, 384, 264, 64, st, tok, true, true, false});
      cases.push_back({8, 256, 72, 32, st, tok, false, false, false});
    }
  cases.push_back({2, 512, 98, 512, 2, true, true, true, false});    // per-channel, cols % 4 ≠ 0
  cases.push_back({5, 512, 98, 512, 4, false, false, false, false});
  cases.push_back({8, 12416, 16, 128, 2, true, true, false, false});  // x staged in chunks (M·K > 96 KB)
  cases.push_back({4, 256, 40, 128, 4, true, true, false, true});     // a non-finite value
  cases.push_back({1, 256, 40, 128, 8, false, false, false, true});
  int failed = 0;
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const bool ok = run_case(c, seed++);
    std::fprintf(stderr, "gemv_swiglu m=%d k=%d cols=%d group=%d strips=%d out=%s in=%s%s%s: %s\n", c.m, c.k, c.cols, c.group,
                 c.strips, c.out_tok ? "i8token" : "i8static", c.in_tok ? "token" : "static", c.bias ? " bias" : "",
                 c.blowup ? " blowup" : "", ok ? "ok" : "FAIL");
    failed += !ok;
  }
  // downq: w4a8_gemv_xq on synthetic rows (M 1..16, cols = K and cols < K, odd cols, chunked x)
  // and after the fused kernel's publish mode (the executor's chain).
  int xq_cases = 0;
  if (!check_rcp()) failed++;
  struct XqCase { int m, n, k, cols, group, strips; };
  const std::vector<XqCase> xq = {{1, 40, 256, 256, 128, 2},  {3, 64, 384, 380, 64, 4},  {8, 24, 256, 200, 32, 8},
                                  {9, 40, 256, 256, 128, 2},  {16, 48, 512, 500, 512, 4}, {12, 16, 1024, 1024, 128, 8},
                                  {8, 16, 12416, 12416, 128, 2}, {16, 8, 6272, 6200, 64, 4}};
  for (const XqCase& c : xq) {
    Rng r(seed);
    const int y_ld = (c.cols + 3) / 4 * 4 + 4;
    const auto y = synth_rows(c.m, c.cols, y_ld, r, (int)(seed % 7));
    const bool ok = xq_vs_plain(c.m, c.n, c.k, c.group, c.strips, y, y_ld, c.cols, nullptr, seed++);
    std::fprintf(stderr, "downq xq m=%d n=%d k=%d cols=%d group=%d strips=%d: %s\n", c.m, c.n, c.k, c.cols, c.group, c.strips,
                 ok ? "ok" : "FAIL");
    failed += !ok;
    xq_cases++;
  }
  std::fprintf(stderr, "gemv_swiglu emulation: %zu + %d cases, %d failed (emulated blocks %lld)\n", cases.size(), xq_cases,
               failed, emu::g_blocks);
  return failed ? 1 : 0;
}
