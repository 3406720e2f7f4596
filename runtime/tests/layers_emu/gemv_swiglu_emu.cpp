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
  inline void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) { emu_ldsm_x4(r, addr); }              \
  template <bool ZERO>                                                                             \
  inline void mma_s8(uint32_t (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,         \
                     uint32_t b0, uint32_t b1) {                                                   \
    emu_mma_s8(d, a0, a1, a2, a3, b0, b1, ZERO);                                                   \
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

namespace odyssey {
int device_sms();  // kernel_common.cuh's (the harness defines it below)
}  // namespace odyssey
#include "gemv_mma_emu.inc"

namespace odyssey {
int dispatch_config(int, int, int, bool) { return kGemvMmaS4Config; }  // the emulation names strips
int device_sms() { return 132; }                                        // kernel_common.cuh's, an H100/H200
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

// Random packed weights [n/8, k/128, 32, 16], group scales ŝ ∈ ±[1, max_scale] ([k/group, n])
// and int8 activations [m, k], drawn in that order.
struct W4A8Inputs {
  std::vector<uint8_t> qw;
  std::vector<int16_t> gs;
  std::vector<int8_t> x;
};
W4A8Inputs random_inputs(Rng& r, int n, int k, int group, int m, int max_scale) {
  W4A8Inputs in{std::vector<uint8_t>((size_t)n * k / 2), std::vector<int16_t>((size_t)(k / group) * n),
                std::vector<int8_t>((size_t)m * k)};
  for (auto& b : in.qw) b = (uint8_t)r.next();
  for (auto& g : in.gs) g = (int16_t)((1 + r.below(max_scale)) * (r.below(2) ? 1 : -1));
  for (auto& v : in.x) v = (int8_t)(r.below(255) - 127);
  return in;
}

// The plain GEMV's parameters over in's weights and activations ([m, k] → [m, n], Np = np).
GemvParams plain_params(const W4A8Inputs& in, const float* xs, const float* cs, const float* bias, __half* y,
                        int m, int n, int np, int k, int group, bool per_token) {
  GemvParams p{};
  p.x = in.x.data();
  p.x_scale = xs;
  p.qweight = in.qw.data();
  p.group_scale = in.gs.data();
  p.channel_scale = cs;
  p.bias = bias;
  p.y = y;
  p.m = m;
  p.n = n;
  p.np = np;
  p.k = k;
  p.group_size = group;
  p.act_per_token = per_token;
  return p;
}

bool run_case(const Case& f, uint64_t seed) {
  Rng r(seed);
  const int np = (f.cols + 7) / 8 * 8, n2 = 2 * np, ld = (f.cols + 127) / 128 * 128;
  W4A8Inputs in = random_inputs(r, n2, f.k, f.group, f.m, 40);
  std::vector<uint8_t>& qw = in.qw;
  std::vector<int16_t>& gs = in.gs;
  std::vector<int8_t>& x = in.x;
  const float target = 4.f / (std::sqrt((float)f.k) * 73.f * 4.6f * 16.f * 23.f);
  std::vector<float> cs(n2), bias(n2), xs(f.in_tok ? f.m : 1);
  for (auto& v : cs) v = r.uniform(0.5f, 2.f) * target * 127.f;
  for (auto& v : bias) v = r.uniform(-1.f, 1.f);
  for (auto& v : xs) v = r.uniform(0.5f, 1.5f) / 127.f;
  if (f.blowup) cs[(size_t)std::min(5, f.cols - 1)] = 1e30f;
  const float s_static = 0.037f;
  // Reference: the plain kernel over [gate; up], then SwiGLU + quantization on the host.
  std::vector<__half> y((size_t)f.m * n2);
  launch_w4a8_gemv_mma(plain_params(in, xs.data(), cs.data(), f.bias ? bias.data() : nullptr, y.data(), f.m, n2, n2,
                                    f.k, f.group, f.in_tok),
                       f.strips, nullptr);
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
  return ok;
}

// The plain GEMV (launch_w4a8_gemv_mma) against a host reference written from the layout spec
// (docs/fastgemm-layout.md: lane gid·4 + tig of strip c/8, K block kb holds, in word st, the
// low nibbles of k = 32·st + 4·tig + 0..3 and the high nibbles of k = 32·st + 16 + 4·tig + 0..3,
// column 8·strip + gid) and docs/w4a8-numerics.md (int32 per-group sums × ŝ, wrapping; one float
// epilogue). Run persistent with the grid capped (ODYSSEY_GEMV_GRID: each block walks several
// tiles and ranges that end inside a tile) and not persistent (ODYSSEY_GEMV_PERSIST=0).
struct PlainCase {
  int m, n, k, group, strips;
  const char* grid;     // ODYSSEY_GEMV_GRID, or "" for the occupancy grid
  bool persist;
};

bool run_plain(const PlainCase& f, uint64_t seed) {
  Rng r(seed);
  const int np = (f.n + 7) / 8 * 8, kb = f.k / 128, G = f.k / f.group;
  W4A8Inputs in = random_inputs(r, np, f.k, f.group, f.m, 3000);
  const std::vector<uint8_t>& qw = in.qw;
  const std::vector<int16_t>& gs = in.gs;
  const std::vector<int8_t>& x = in.x;
  std::vector<float> cs(np), bias(np), xs(f.m);
  for (auto& v : cs) v = r.uniform(0.5f, 2.f) * 1e-7f;
  for (auto& v : bias) v = r.uniform(-1.f, 1.f);
  for (auto& v : xs) v = r.uniform(0.5f, 1.5f) / 127.f;
  auto w16 = [&](int c, int k) {  // 16·q as the kernel's int8 operand
    const int nb = c / 8, gid = c % 8, kk = k % 128, st = kk / 32, rr = kk % 32;
    const int tig = (rr % 16) / 4, i = rr % 4;
    const uint8_t byte = qw[(((size_t)nb * kb + k / 128) * 32 + gid * 4 + tig) * 16 + st * 4 + i];
    return (int32_t)(int8_t)(rr < 16 ? (uint8_t)(byte << 4) : (uint8_t)(byte & 0xF0));
  };
  std::vector<int32_t> want_acc((size_t)f.m * f.n);
  std::vector<__half> want_y((size_t)f.m * f.n);
  for (int m = 0; m < f.m; m++)
    for (int c = 0; c < f.n; c++) {
      uint32_t acc = 0;
      for (int g = 0; g < G; g++) {
        uint32_t part = 0;
        for (int k = g * f.group; k < (g + 1) * f.group; k++) part += (uint32_t)(x[(size_t)m * f.k + k] * w16(c, k));
        acc += (uint32_t)(int32_t)gs[(size_t)g * np + c] * part;
      }
      want_acc[(size_t)m * f.n + c] = (int32_t)acc;
      want_y[(size_t)m * f.n + c] = kernel::epilogue_int((int32_t)acc, xs[m], cs[c], bias.data(), c);
    }
  if (f.grid[0]) setenv("ODYSSEY_GEMV_GRID", f.grid, 1); else unsetenv("ODYSSEY_GEMV_GRID");
  setenv("ODYSSEY_GEMV_PERSIST", f.persist ? "1" : "0", 1);
  std::vector<__half> y((size_t)f.m * f.n, __float2half_rn(NAN));
  std::vector<int32_t> acc((size_t)f.m * f.n, 0x7eadbeef);
  GemvParams p = plain_params(in, xs.data(), cs.data(), bias.data(), y.data(), f.m, f.n, np, f.k, f.group, true);
  p.acc_out = acc.data();
  launch_w4a8_gemv_mma(p, f.strips, nullptr);
  unsetenv("ODYSSEY_GEMV_GRID");
  unsetenv("ODYSSEY_GEMV_PERSIST");
  for (size_t i = 0; i < acc.size(); i++)
    if (acc[i] != want_acc[i] || __half_raw(y[i]).x != __half_raw(want_y[i]).x) {
      std::fprintf(stderr, "  [%zu, %zu]: acc %d y %g, reference %d %g\n", i / f.n, i % f.n, acc[i], __half2float(y[i]),
                   want_acc[i], __half2float(want_y[i]));
      return false;
    }
  return true;
}

int main() {
  int plain_failed = 0, plain_n = 0;
  {
    std::vector<PlainCase> pc;
    for (int st : {2, 4, 8})
      for (const char* grid : {"", "1", "3", "7"}) {
        pc.push_back({1, 100, 256, 128, st, grid, true});   // n % 8 ≠ 0: padded last strip
        pc.push_back({3, 264, 384, 64, st, grid, true});
        pc.push_back({9, 72, 256, 32, st, grid, true});     // M > 8: both halves of the tile
        pc.push_back({16, 136, 512, 512, st, grid, true});  // per-channel
      }
    pc.push_back({2, 1000, 4096, 128, 2, "5", true});  // the 7B K: whole iterations per tile
    pc.push_back({1, 1000, 4096, 128, 4, "", true});
    pc.push_back({4, 264, 384, 64, 4, "", false});     // not persistent
    pc.push_back({16, 40, 12416, 128, 2, "3", true});  // x in chunks: never persistent
    // Multi-tile walks with a short last iteration, every group kind at both tile halves and all
    // three strip counts, the 7B o_proj and down_proj K.
    pc.push_back({9, 200, 2048, 32, 8, "2", true});
    pc.push_back({5, 520, 1536, 64, 4, "3", true});    // 12 K blocks: a short second step
    pc.push_back({16, 64, 1024, 1024, 2, "1", true});  // per-channel, one block walks all
    pc.push_back({1, 4096, 4096, 128, 4, "7", true});  // the 7B o_proj shape, 8 steps a tile
    pc.push_back({8, 328, 11008, 128, 2, "3", true});  // the 7B down_proj K
    pc.push_back({16, 72, 8192, 128, 8, "2", true});   // s8: x whole beyond kXBudget (131 KB), persistent
    pc.push_back({4, 136, 24576, 64, 8, "3", true});   // s8: M = 4 at a 70B-like K, x whole (98 KB)
    pc.push_back({16, 40, 12416, 128, 8, "", true});   // s8: x past even its budget: chunks
    // M = 17..64: two or four 16-row tiles over the same weight words (one block per SM), x whole
    // (persistent) or in chunks of kWarps K blocks at U = 1, partial last tiles of rows.
    pc.push_back({17, 136, 1024, 128, 2, "3", true});
    pc.push_back({24, 200, 2048, 64, 4, "2", true});
    pc.push_back({32, 72, 4096, 128, 4, "", true});
    pc.push_back({40, 100, 1536, 32, 2, "3", true});
    pc.push_back({64, 64, 4096, 128, 4, "2", true});    // x in chunks (263 KB)
    pc.push_back({64, 48, 1024, 1024, 2, "1", true});   // per-channel
    pc.push_back({33, 64, 9216, 128, 2, "", true});     // x in chunks at M = 33
    pc.push_back({48, 64, 512, 64, 4, "", false});      // not persistent
    uint64_t seed = 1000;
    for (const PlainCase& c : pc) {
      const bool ok = run_plain(c, seed++);
      plain_n++;
      if (!ok || c.grid[0] == 0)
        std::fprintf(stderr, "gemv plain m=%d n=%d k=%d group=%d strips=%d grid=%s persist=%d: %s\n", c.m, c.n, c.k,
                     c.group, c.strips, c.grid[0] ? c.grid : "occupancy", c.persist, ok ? "ok" : "FAIL");
      plain_failed += !ok;
    }
    std::fprintf(stderr, "gemv plain emulation: %d cases, %d failed\n", plain_n, plain_failed);
  }
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
  std::fprintf(stderr, "gemv_swiglu emulation: %zu cases, %d failed (emulated blocks %lld)\n", cases.size(), failed, emu::g_blocks);
  return failed || plain_failed ? 1 : 0;
}
