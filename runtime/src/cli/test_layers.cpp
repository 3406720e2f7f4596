// test_layers.cpp: `odyssey-rt test layers`, the executor's layer kernels (executor/layers.cu)
// against host references written here in plain C++ from the Go code they must match
// (model/mathutil.go RMSNorm and swiglu, model/rope.go, model/layer.go attention,
// quant/act.go QuantizeActValue/ActScale/RowScale), over many shapes, both vector and scalar
// paths, and both prefill tile variants.
//
// Inputs are deterministic (splitmix64 with a seed per case). Every output buffer is poisoned
// (0xFF bytes: fp16/fp32 NaN, int8 −1) before its launch; padding columns, cache positions the
// kernel must not touch and rows past a sequence are poisoned or NaN in the inputs, so a read
// or write out of bounds shows up as a NaN or a changed byte.
//
// Tolerances (each named where it is used):
//   - bit-exact: embed, the residual add (one fp32 add), kv_append, argmax, and the int8
//     codes/fp16 values wherever the GPU computes the reference's own fp32 operations;
//   - kHalfUlps = 1 fp16 ulp for fp16 outputs of RMSNorm/SwiGLU/RoPE: the GPU sums x² in
//     another order (fp64, so the variance differs at most by one fp32 rounding), takes expf
//     (≤ 2 ulp) where the host takes glibc's expf, and its fp64 sin/cos (≤ 2 ulp) where the host
//     takes glibc's: a few fp32 ulps of the value, which can move its fp16 rounding by one ulp;
//   - int8 codes: exact, except a code may differ by 1 where the reference's x/s lies within
//     kNearTie (2⁻²⁰ relative) of a rounding boundary (the few-ulp differences above); any
//     other difference fails, and so do more than 1 + kMaxFlipRate·codes flips;
//   - per-token scales: within kScaleUlps = 8 fp32 ulps (max|y| moves by the few ulps above:
//     SwiGLU's expf error passes through an add, a divide and a multiply, each may round apart);
//   - attention: the bound attention_tol documents (fp16 rounding of P, fp32 score error,
//     exp approximations, fp16 output rounding), against an fp64 reference;
//   - nll: kNllAbs + 2⁻²³·|nll| (expf per term, the fp32 result).
// Decode is also captured in a CUDA graph and replayed after its lengths change on the device
// (bit-exact against a direct launch): the executor captures decode steps.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "executor/kv8.hpp"
#include "executor/layers.hpp"
#if !defined(ODYSSEY_LAYERS_EMU)  // the host emulator builds layers.cu only (fuse: run_gemv_swiglu.sh)
#include "fastgemm.hpp"
#include "odyssey_rt.h"
#endif
#include "json.hpp"
#include "report.hpp"

namespace odyssey {
namespace {

namespace L = odyssey::layers;

constexpr int kHalfUlps = 1;
constexpr double kNearTie = 1.0 / (1 << 20);
constexpr double kMaxFlipRate = 1e-3;
constexpr long long kScaleUlps = 8;
constexpr double kNllAbs = 1e-6;  // 4× the expf bound (2 ulp ≈ 2.4e-7) on a sum of positive terms
constexpr uint16_t kHalfNaN = 0x7E00;

std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

uint16_t f2h(float f) {
  __half h = __float2half_rn(f);
  return __half_raw(h).x;
}
float h2f(uint16_t b) { return half_bits_to_float(b); }
bool half_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }
long long half_ordered(uint16_t h) { return (h & 0x8000) ? -(long long)(h & 0x7FFF) : (long long)h; }
long long float_ordered(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return (b & 0x80000000u) ? -(long long)(b & 0x7FFFFFFFu) : (long long)b;
}
uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::vector<uint16_t> random_half(Rng& r, size_t n, float amp) {
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f2h(r.uniform(-amp, amp));
  return v;
}

struct Result {
  std::string name, kernel, message;
  bool passed = true;
  double worst = 0;  // largest |error| / tolerance seen (≤ 1 passes)
  long long checked = 0, flips = 0, ulp_diffs = 0;
};

// Accumulates a case's checks; keeps the first few failure messages.
struct Check {
  Result r;
  int shown = 0;
  Check(std::string name, std::string kernel) {
    r.name = std::move(name);
    r.kernel = std::move(kernel);
  }
  void bad(const std::string& m) {
    r.passed = false;
    if (shown++ < 4) r.message += (r.message.empty() ? "" : "; ") + m;
  }
  void cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) bad(std::string(what) + ": " + cudaGetErrorString(e));
  }
  void ratio(double err, double tol) {
    r.checked++;
    double q = tol > 0 ? err / tol : (err > 0 ? INFINITY : 0);
    if (q > r.worst || q != q) r.worst = q != q ? INFINITY : q;
  }
};

template <class T>
DeviceBuffer upload(const std::vector<T>& v, size_t extra_bytes = 0) {
  DeviceBuffer b(v.size() * sizeof(T) + extra_bytes);
  if (extra_bytes) b.fill(0xFF);
  b.upload(v.data(), v.size() * sizeof(T));
  return b;
}
template <class T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  b.download(v.data(), n * sizeof(T));
  return v;
}
DeviceBuffer poisoned(size_t bytes) {
  DeviceBuffer b(bytes ? bytes : 1);
  b.fill(0xFF);
  return b;
}

// An fp16 result against the reference's fp32 value (rounded to fp16 here): ≤ max_ulp apart,
// NaN where the reference is NaN.
void check_half(Check& c, uint16_t got, float want, int max_ulp, const char* what, long long at) {
  c.r.checked++;
  if (want != want) {
    if (!half_is_nan(got)) c.bad(fmt("%s[%lld]: got %g, want NaN", what, at, h2f(got)));
    return;
  }
  uint16_t w = f2h(want);
  if (half_is_nan(got)) {
    c.bad(fmt("%s[%lld]: got NaN, want %g", what, at, h2f(w)));
    return;
  }
  long long d = std::llabs(half_ordered(got) - half_ordered(w));
  if (d) c.r.ulp_diffs++;
  if (d > max_ulp) c.bad(fmt("%s[%lld]: got %g, want %g (%lld fp16 ulp)", what, at, h2f(got), h2f(w), d));
}

// quant.QuantizeActValue on the host: float32 division, round half to even, clamp, NaN → 0.
int8_t quantize_ref(float x, float s) {
  float q = x / s;
  if (q != q) return 0;
  double v = std::nearbyint((double)q);  // default rounding mode: half to even
  return (int8_t)std::min(127.0, std::max(-127.0, v));
}
// quant.RowScale on the host.
float row_scale_ref(const float* y, int n) {
  uint32_t m = 0;
  for (int i = 0; i < n; i++) m = std::max(m, float_bits(y[i]) & 0x7FFFFFFFu);
  if (m >= 0x7F800000u) return NAN;
  float mf;
  std::memcpy(&mf, &m, 4);
  float s = mf / 127.0f;
  return s == 0.f ? 1.f : s;
}

// Codes of one row against the reference values y and scale s (see kNearTie, kMaxFlipRate).
void check_codes(Check& c, const int8_t* got, const float* y, float s, int n, long long row, long long& codes) {
  for (int i = 0; i < n; i++) {
    codes++;
    c.r.checked++;
    int8_t want = quantize_ref(y[i], s);
    if (got[i] == want) continue;
    int d = std::abs((int)got[i] - (int)want);
    double t = std::fabs((double)y[i] / (double)s);
    double frac = t - std::floor(t);
    bool near_tie = std::fabs(frac - 0.5) <= kNearTie * std::max(1.0, t);
    if (d > 1 || !near_tie) {
      c.bad(fmt("code[%lld,%d]: got %d, want %d (x/s = %.9g)", row, i, got[i], want, (double)y[i] / s));
    } else {
      c.r.flips++;
    }
  }
}
void check_flip_rate(Check& c, long long codes) {
  if ((double)c.r.flips > 1 + kMaxFlipRate * (double)codes)
    c.bad(fmt("%lld code flips in %lld codes exceed 1 + %g·codes", c.r.flips, codes, kMaxFlipRate));
}
void check_scale(Check& c, float got, float want, long long row) {
  if (want != want) {
    if (got == got) c.bad(fmt("token_scale[%lld]: got %g, want NaN (non-finite row)", row, got));
    return;
  }
  if (got != got || std::llabs(float_ordered(got) - float_ordered(want)) > kScaleUlps)
    c.bad(fmt("token_scale[%lld]: got %.9g, want %.9g", row, got, want));
}

const char* kind_name(L::ActKind k) {
  return k == L::ActKind::F16 ? "f16" : k == L::ActKind::I8Static ? "i8static" : "i8token";
}

// ActOut buffers of one output for `rows` rows.
struct OutBuf {
  L::ActKind kind;
  int ld;
  DeviceBuffer data, token_scale, static_scale;
  float s_static = 0;
  L::ActOut act() const {
    L::ActOut o;
    o.kind = kind;
    o.ld = ld;
    if (kind == L::ActKind::F16) o.f16 = data.get<__half>();
    else o.i8 = data.get<int8_t>();
    if (kind == L::ActKind::I8Static) o.static_scale = static_scale.get<float>();
    if (kind == L::ActKind::I8PerToken) o.token_scale = token_scale.get<float>();
    return o;
  }
};
OutBuf make_out(L::ActKind kind, int ld, int rows, float s_static) {
  OutBuf b;
  b.kind = kind;
  b.ld = ld;
  b.data = poisoned((size_t)rows * ld * (kind == L::ActKind::F16 ? 2 : 1));
  b.token_scale = poisoned((size_t)rows * 4);
  b.s_static = s_static;
  std::vector<float> s{s_static};
  b.static_scale = upload(s);
  return b;
}

// An output against the reference values yref [rows, cols]; columns [cols, ld) must be 0.
void check_out(Check& c, const OutBuf& o, const std::vector<float>& yref, int rows, int cols) {
  long long codes = 0;
  if (o.kind == L::ActKind::F16) {
    auto got = download<uint16_t>(o.data, (size_t)rows * o.ld);
    for (int r = 0; r < rows; r++) {
      for (int i = 0; i < cols; i++)
        check_half(c, got[(size_t)r * o.ld + i], yref[(size_t)r * cols + i], kHalfUlps, "y", (long long)r * cols + i);
      for (int i = cols; i < o.ld; i++)
        if (got[(size_t)r * o.ld + i] != 0) c.bad(fmt("f16 padding [%d,%d] not zero", r, i));
    }
    return;
  }
  auto got = download<int8_t>(o.data, (size_t)rows * o.ld);
  std::vector<float> scales;
  if (o.kind == L::ActKind::I8PerToken) scales = download<float>(o.token_scale, rows);
  for (int r = 0; r < rows; r++) {
    const float* y = &yref[(size_t)r * cols];
    float s = o.s_static;
    if (o.kind == L::ActKind::I8PerToken) {
      s = row_scale_ref(y, cols);
      check_scale(c, scales[r], s, r);
    }
    check_codes(c, &got[(size_t)r * o.ld], y, s, cols, r, codes);
    for (int i = cols; i < o.ld; i++)
      if (got[(size_t)r * o.ld + i] != 0) c.bad(fmt("i8 padding [%d,%d] not zero", r, i));
  }
  check_flip_rate(c, codes);
}

int round_up(int x, int m) { return (x + m - 1) / m * m; }

// ---------------------------------------------------------------------------------------------
// embed

Result test_embed(int rows, int hidden, uint64_t seed) {
  Check c(fmt("embed rows=%d hidden=%d", rows, hidden), hidden % 4 ? "embed-scalar" : "embed");
  Rng r(seed);
  const int vocab = 97;
  auto table = random_half(r, (size_t)vocab * hidden, 3.f);
  std::vector<int32_t> ids(std::max(rows, 1));
  for (auto& id : ids) id = r.below(vocab);
  auto dt = upload(table);
  auto di = upload(ids);
  DeviceBuffer dh = poisoned((size_t)std::max(rows, 1) * hidden * 4);
  c.cuda(L::embed(di.get<int32_t>(), rows, dt.get<__half>(), hidden, dh.get<float>(), 0), "embed");
  c.cuda(cudaDeviceSynchronize(), "embed (sync)");
  auto h = download<float>(dh, (size_t)std::max(rows, 1) * hidden);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < hidden; j++) {
      c.r.checked++;
      float want = h2f(table[(size_t)ids[i] * hidden + j]);
      if (float_bits(h[(size_t)i * hidden + j]) != float_bits(want))
        c.bad(fmt("h[%d,%d] = %g, want %g", i, j, h[(size_t)i * hidden + j], want));
    }
  if (rows == 0 && float_bits(h[0]) != 0xFFFFFFFFu) c.bad("rows = 0 wrote to h");
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// add_rmsnorm

// model.RMSNorm for one row, in its own operation order.
void rmsnorm_ref(const float* x, const float* w, int n, float eps, float* y) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
  float variance = (float)(ss / n);
  float scale = (float)(1.0 / std::sqrt((double)(variance + eps)));
  for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * scale);
}

struct NormCfg {
  const char* name;
  bool delta;
  std::vector<L::ActKind> outs;
  bool pad_f16;  // F16 output with a padded stride
  bool nan_row;
};

Result test_add_rmsnorm(int rows, int hidden, const NormCfg& cfg, uint64_t seed) {
  Check c(fmt("add_rmsnorm rows=%d hidden=%d %s", rows, hidden, cfg.name), hidden % 4 ? "add_rmsnorm-scalar" : "add_rmsnorm");
  Rng r(seed);
  const int alloc_rows = std::max(rows, 1);
  const float eps = (seed & 1) ? 1e-5f : 1e-6f;
  std::vector<float> h0((size_t)alloc_rows * hidden), w(hidden);
  for (int j = 0; j < hidden; j++) w[j] = r.uniform(0.5f, 1.5f);
  for (size_t i = 0; i < h0.size(); i++) h0[i] = r.uniform(-2.f, 2.f) * ((i % hidden) % 37 == 5 ? 20.f : 1.f);
  const int ld_delta = hidden + (hidden % 4 ? 3 : 8);
  std::vector<uint16_t> delta((size_t)alloc_rows * ld_delta, kHalfNaN);  // padding columns NaN
  for (int i = 0; i < alloc_rows; i++)
    for (int j = 0; j < hidden; j++) delta[(size_t)i * ld_delta + j] = f2h(r.uniform(-1.f, 1.f));
  if (rows >= 3)  // a zero row: scale 1/sqrt(eps), y = 0, per-token scale 1, codes 0
    for (int j = 0; j < hidden; j++) h0[(size_t)hidden + j] = 0.f, delta[(size_t)ld_delta + j] = 0;
  if (cfg.nan_row && rows >= 1) h0[5 % hidden] = NAN;
  auto dh = upload(h0);
  auto dd = upload(delta);
  auto dw = upload(w);
  std::vector<OutBuf> outs;
  std::vector<L::ActOut> acts;
  for (auto k : cfg.outs) {
    int ld = k == L::ActKind::F16 ? (cfg.pad_f16 ? round_up(hidden, 128) : hidden) : round_up(hidden, 128);
    outs.push_back(make_out(k, ld, alloc_rows, 3.0f / 127));
    c.r.kernel += std::string("+") + kind_name(k);
  }
  for (auto& o : outs) acts.push_back(o.act());
  c.cuda(L::add_rmsnorm(dh.get<float>(), cfg.delta ? dd.get<__half>() : nullptr, ld_delta, dw.get<float>(), eps, rows,
                        hidden, acts.empty() ? nullptr : acts.data(), (int)acts.size(), 0),
         "add_rmsnorm");
  c.cuda(cudaDeviceSynchronize(), "add_rmsnorm (sync)");
  if (!c.r.passed) return c.r;
  // The residual: one fp32 add per element, bit-exact.
  std::vector<float> href(h0);
  if (cfg.delta && rows > 0)
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < hidden; j++) href[(size_t)i * hidden + j] = h0[(size_t)i * hidden + j] + h2f(delta[(size_t)i * ld_delta + j]);
  auto h = download<float>(dh, href.size());
  for (size_t i = 0; i < (size_t)rows * hidden; i++) {
    c.r.checked++;
    if (float_bits(h[i]) != float_bits(href[i]) && !(h[i] != h[i] && href[i] != href[i]))
      c.bad(fmt("h[%zu] = %.9g, want %.9g", i, h[i], href[i]));
  }
  std::vector<float> y((size_t)alloc_rows * hidden);
  for (int i = 0; i < rows; i++) rmsnorm_ref(&href[(size_t)i * hidden], w.data(), hidden, eps, &y[(size_t)i * hidden]);
  if (rows == 0) {
    for (auto& o : outs) {
      auto b = download<uint8_t>(o.data, 1);
      if (b[0] != 0xFF) c.bad("rows = 0 wrote an output");
    }
    return c.r;
  }
  for (auto& o : outs) check_out(c, o, y, rows, hidden);
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// swiglu

float silu_mul_ref(float x, float u) { return x / (1.0f + std::exp(-x)) * u; }  // model.swiglu

Result test_swiglu(int rows, int cols, L::ActKind kind, uint64_t seed) {
  Check c(fmt("swiglu rows=%d cols=%d %s", rows, cols, kind_name(kind)), cols % 4 ? "swiglu-scalar" : "swiglu");
  Rng r(seed);
  const int alloc_rows = std::max(rows, 1);
  const int ld_in = 2 * cols + (cols % 4 ? 1 : 8);  // [gate | up | NaN padding], as a fused gate_up output
  std::vector<uint16_t> in((size_t)alloc_rows * ld_in, kHalfNaN);
  for (int i = 0; i < alloc_rows; i++)
    for (int j = 0; j < 2 * cols; j++) in[(size_t)i * ld_in + j] = f2h(r.uniform(-4.f, 4.f));
  auto din = upload(in);
  OutBuf o = make_out(kind, kind == L::ActKind::F16 ? cols : round_up(cols, 128), alloc_rows, 6.0f / 127);
  const __half* g = din.get<__half>();
  c.cuda(L::swiglu(g, g + cols, ld_in, rows, cols, o.act(), 0), "swiglu");
  c.cuda(cudaDeviceSynchronize(), "swiglu (sync)");
  if (!c.r.passed || rows == 0) return c.r;
  std::vector<float> y((size_t)rows * cols);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++)
      y[(size_t)i * cols + j] = silu_mul_ref(h2f(in[(size_t)i * ld_in + j]), h2f(in[(size_t)i * ld_in + cols + j]));
  check_out(c, o, y, rows, cols);
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// Register row kernels against the loop kernels (bit-exact). add_rmsnorm and swiglu take
// register kernels on the vector path (one read of the row); ODYSSEY_ROWS=loop selects the
// former loop kernels. Both run on copies of the same inputs and every byte they write (the
// residual h, every output, token scales, padding) must be identical: the register kernels
// keep the fp64 partial-sum order and block size (layers.cu), so not even the variance's fp32
// rounding may move. Shapes: the decode batches of a 7B (hidden 4096, intermediate 11008),
// 13B's 5120/13824, 8192 (the norm's widest register variant), Mistral's 14336.

struct LoopEnv {  // sets ODYSSEY_ROWS=loop for its lifetime
  LoopEnv() { setenv("ODYSSEY_ROWS", "loop", 1); }
  ~LoopEnv() { unsetenv("ODYSSEY_ROWS"); }
};

Result test_rows_vs_loop(const char* op, int rows, int cols, uint64_t seed) {
  const bool norm = std::string(op) == "norm";
  Check c(fmt("%s register vs loop rows=%d cols=%d", op, rows, cols), norm ? "add_rmsnorm-reg" : "swiglu-reg");
  Rng r(seed);
  const int ld = round_up(cols, 128);
  // Two complete sets of buffers, filled identically; [0]: register kernel, [1]: loop kernel.
  std::vector<uint8_t> o8[2], oh[2], ts[2], hh[2];
  if (norm) {
    std::vector<float> h0((size_t)rows * cols), w(cols);
    for (auto& x : w) x = r.uniform(0.5f, 1.5f);
    for (size_t i = 0; i < h0.size(); i++) h0[i] = r.uniform(-2.f, 2.f) * (i % 37 == 5 ? 20.f : 1.f);
    if (rows >= 2) h0[(size_t)cols + 7] = NAN;  // a NaN row: scale NaN, codes 0
    std::vector<uint16_t> delta((size_t)rows * cols);
    for (auto& d : delta) d = f2h(r.uniform(-1.f, 1.f));
    const float eps = 1e-5f;
    auto dw = upload(w);
    auto dd = upload(delta);
    for (int v = 0; v < 2; v++) {
      auto dh = upload(h0);
      OutBuf a = make_out(L::ActKind::I8PerToken, ld, rows, 1.f), b = make_out(L::ActKind::F16, ld, rows, 1.f);
      L::ActOut acts[2] = {a.act(), b.act()};
      {
        std::unique_ptr<LoopEnv> env(v ? new LoopEnv : nullptr);
        c.cuda(L::add_rmsnorm(dh.get<float>(), dd.get<__half>(), cols, dw.get<float>(), eps, rows, cols, acts, 2, 0),
               "add_rmsnorm");
        c.cuda(cudaDeviceSynchronize(), "add_rmsnorm (sync)");
      }
      if (!c.r.passed) return c.r;
      hh[v] = download<uint8_t>(dh, (size_t)rows * cols * 4);
      o8[v] = download<uint8_t>(a.data, (size_t)rows * ld);
      oh[v] = download<uint8_t>(b.data, (size_t)rows * ld * 2);
      ts[v] = download<uint8_t>(a.token_scale, (size_t)rows * 4);
    }
  } else {
    const int ld_in = 2 * cols + 8;
    std::vector<uint16_t> in((size_t)rows * ld_in, kHalfNaN);
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < 2 * cols; j++) in[(size_t)i * ld_in + j] = f2h(r.uniform(-6.f, 6.f));
    auto din = upload(in);
    const __half* g = din.get<__half>();
    for (int v = 0; v < 2; v++) {
      OutBuf a = make_out(L::ActKind::I8PerToken, ld, rows, 1.f), b = make_out(L::ActKind::F16, ld, rows, 1.f);
      {
        std::unique_ptr<LoopEnv> env(v ? new LoopEnv : nullptr);
        c.cuda(L::swiglu(g, g + cols, ld_in, rows, cols, a.act(), 0), "swiglu i8token");
        c.cuda(L::swiglu(g, g + cols, ld_in, rows, cols, b.act(), 0), "swiglu f16");
        c.cuda(cudaDeviceSynchronize(), "swiglu (sync)");
      }
      if (!c.r.passed) return c.r;
      o8[v] = download<uint8_t>(a.data, (size_t)rows * ld);
      oh[v] = download<uint8_t>(b.data, (size_t)rows * ld * 2);
      ts[v] = download<uint8_t>(a.token_scale, (size_t)rows * 4);
    }
  }
  auto same = [&](const std::vector<uint8_t>* x, const char* what) {
    c.r.checked += (long long)x[0].size();
    if (x[0] == x[1]) return;
    size_t i = 0;
    while (i < x[0].size() && x[0][i] == x[1][i]) i++;
    c.bad(fmt("%s differs from the loop kernel at byte %zu (0x%02x vs 0x%02x)", what, i, x[0][i], x[1][i]));
  };
  if (norm) same(hh, "h");
  same(o8, "int8 codes");
  same(oh, "fp16 output");
  same(ts, "token scales");
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// rope

// model/rope.go ropeInvFreq, rope type "default".
std::vector<float> inv_freq_ref(int head_dim, double theta) {
  std::vector<float> inv(head_dim / 2);
  for (int i = 0; i < head_dim / 2; i++) {
    double e = (double)(float)((double)(2 * i) / (double)head_dim);
    inv[i] = (float)(1.0 / std::pow(theta, e));
  }
  return inv;
}

Result test_rope(int rows, int nh, int nkv, int hd, bool odd_stride, uint64_t seed) {
  Check c(fmt("rope rows=%d heads=%d/%d hd=%d%s", rows, nh, nkv, hd, odd_stride ? " odd-stride" : ""),
          (hd / 2) % 2 || odd_stride ? "rope-scalar" : "rope");
  Rng r(seed);
  const int ld_q = nh * hd + (odd_stride ? 1 : 8), ld_k = nkv * hd + (odd_stride ? 3 : 8);
  auto q = random_half(r, (size_t)rows * ld_q, 2.f);
  auto k = random_half(r, (size_t)rows * ld_k, 2.f);
  std::vector<int32_t> pos(rows);
  for (int i = 0; i < rows; i++) pos[i] = i == 0 ? 0 : i == 1 ? 131071 : r.below(8192);
  auto inv = inv_freq_ref(hd, (seed & 1) ? 10000.0 : 500000.0);
  auto dq = upload(q), dk = upload(k);
  auto dp = upload(pos);
  auto di = upload(inv);
  c.cuda(L::rope(dq.get<__half>(), ld_q, dk.get<__half>(), ld_k, rows, nh, nkv, hd, dp.get<int32_t>(), di.get<float>(), 0),
         "rope");
  c.cuda(cudaDeviceSynchronize(), "rope (sync)");
  if (!c.r.passed) return c.r;
  auto gq = download<uint16_t>(dq, q.size());
  auto gk = download<uint16_t>(dk, k.size());
  const int half = hd / 2;
  for (int i = 0; i < rows; i++) {
    std::vector<float> cs(half), sn(half);
    for (int j = 0; j < half; j++) {
      double a = (double)(inv[j] * (float)pos[i]);  // model/rope.go: float64(f · float32(p))
      cs[j] = (float)std::cos(a);
      sn[j] = (float)std::sin(a);
    }
    for (int pass = 0; pass < 2; pass++) {
      const auto& in = pass ? k : q;
      const auto& got = pass ? gk : gq;
      const int heads = pass ? nkv : nh, ld = pass ? ld_k : ld_q;
      for (int h = 0; h < heads; h++)
        for (int j = 0; j < half; j++) {
          size_t i1 = (size_t)i * ld + h * hd + j, i2 = i1 + half;
          float a = h2f(in[i1]), b = h2f(in[i2]);
          check_half(c, got[i1], a * cs[j] - b * sn[j], kHalfUlps, pass ? "k" : "q", (long long)i1);
          check_half(c, got[i2], b * cs[j] + a * sn[j], kHalfUlps, pass ? "k" : "q", (long long)i2);
        }
      for (int col = heads * hd; col < ld; col++)
        if (got[(size_t)i * ld + col] != in[(size_t)i * ld + col]) c.bad(fmt("rope changed padding column %d", col));
    }
  }
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// Prefill row kernels v2 (layers.cu, "Prefill row kernels, v2") against v1, bit for bit, and
// o_proj's input quantization (quantize_rows) against the host reference. Each case runs the
// same inputs through v1 (ODYSSEY_PREFILL_ROWS_V2=0) and v2 (=force, so that the small row
// counts reach v2 too) on separate copies of every buffer and compares every byte they write
// (h, each output including its padding columns, token scales). Shapes: prefill rows (1024;
// 8192 is the bench's) with the 7B/13B widths (hidden 4096/5120, intermediate 11008/13824,
// heads 32/32, 32/8 and 40/40 at head_dim 128), and small or odd row counts. Inputs hold a
// zero row, a NaN row and ±inf where the op lets them through (per-token scale NaN, codes 0).

struct RowsV2Env {  // sets ODYSSEY_PREFILL_ROWS_V2 for its lifetime
  explicit RowsV2Env(const char* v) { setenv("ODYSSEY_PREFILL_ROWS_V2", v, 1); }
  ~RowsV2Env() { unsetenv("ODYSSEY_PREFILL_ROWS_V2"); }
};

// Compares the byte images v2 (x[0]) and v1 (x[1]) of one output.
void same_bytes(Check& c, const std::vector<uint8_t>* x, const std::string& what) {
  c.r.checked += (long long)x[0].size();
  if (x[0] == x[1]) return;
  size_t i = 0;
  while (i < x[0].size() && x[0][i] == x[1][i]) i++;
  c.bad(fmt("%s: v2 differs from v1 at byte %zu (0x%02x vs 0x%02x)", what.c_str(), i, x[0][i], x[1][i]));
}

Result test_norm_v2(int rows, int hidden, const NormCfg& cfg, uint64_t seed) {
  Check c(fmt("add_rmsnorm v2 vs v1 rows=%d hidden=%d %s", rows, hidden, cfg.name), "add_rmsnorm-v2");
  Rng r(seed);
  std::vector<float> h0((size_t)rows * hidden), w(hidden);
  for (auto& x : w) x = r.uniform(0.5f, 1.5f);
  for (size_t i = 0; i < h0.size(); i++) h0[i] = r.uniform(-2.f, 2.f) * (i % 37 == 5 ? 20.f : 1.f);
  const int ld_delta = hidden + 8;
  std::vector<uint16_t> delta((size_t)rows * ld_delta, kHalfNaN);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < hidden; j++) delta[(size_t)i * ld_delta + j] = f2h(r.uniform(-1.f, 1.f));
  if (rows >= 3)
    for (int j = 0; j < hidden; j++) h0[(size_t)hidden + j] = 0.f, delta[(size_t)ld_delta + j] = 0;  // a zero row
  if (rows >= 3) h0[(size_t)2 * hidden + 11] = NAN;                                                   // a NaN row
  if (rows >= 5) h0[(size_t)4 * hidden + 3] = INFINITY;                                              // an inf row
  auto dw = upload(w);
  auto dd = upload(delta);
  std::vector<uint8_t> hh[2], outb[2][2], ts[2][2];
  for (int v = 0; v < 2; v++) {
    auto dh = upload(h0);
    std::vector<OutBuf> outs;
    std::vector<L::ActOut> acts;
    for (auto k : cfg.outs) {
      const int ld = k == L::ActKind::F16 && !cfg.pad_f16 ? hidden : round_up(hidden, 128) + (cfg.pad_f16 ? 128 : 0);
      outs.push_back(make_out(k, ld, rows, 3.0f / 127));
    }
    for (auto& o : outs) acts.push_back(o.act());
    {
      RowsV2Env env(v ? "0" : "force");
      c.cuda(L::add_rmsnorm(dh.get<float>(), cfg.delta ? dd.get<__half>() : nullptr, ld_delta, dw.get<float>(), 1e-5f,
                            rows, hidden, acts.empty() ? nullptr : acts.data(), (int)acts.size(), 0),
             "add_rmsnorm");
      c.cuda(cudaDeviceSynchronize(), "add_rmsnorm (sync)");
    }
    if (!c.r.passed) return c.r;
    hh[v] = download<uint8_t>(dh, (size_t)rows * hidden * 4);
    for (size_t j = 0; j < outs.size(); j++) {
      outb[j][v] = download<uint8_t>(outs[j].data, outs[j].data.bytes());
      ts[j][v] = download<uint8_t>(outs[j].token_scale, (size_t)rows * 4);
    }
  }
  same_bytes(c, hh, "h");
  for (size_t j = 0; j < cfg.outs.size(); j++) {
    same_bytes(c, outb[j], fmt("output %zu (%s)", j, kind_name(cfg.outs[j])));
    if (cfg.outs[j] == L::ActKind::I8PerToken) same_bytes(c, ts[j], "token scales");
  }
  return c.r;
}

// The norm's fp64 reduction ORDER, which a byte comparison on random rows cannot see (x² > 0:
// an order change moves Σx² by ~2⁻⁴⁵, below the fp32 rounding of the variance). Each row here is
// built so that the order decides the fp32 variance, and the output shows it: one x = 2^23
// (x² = 2^46), 2m+1 columns of x = 2^11 (x² = 2^22: Σx² = 2^46 + (2m+1)·2^22, so Σx²/n lies
// exactly on an fp32 midpoint), and a few x = 2^-4 (x² = 2^-8, a quarter of the fp64 ulp of
// 2^46): added one by one to a partial sum that holds the big term they vanish, added to each
// other first they survive, and the variance rounds down (tie to even) or up. The weight of
// the big column is chosen so that its fp16 output differs between the two scales. Expected
// values come from a host model of v1's order (256 threads: per thread chunk k then element j;
// per warp the xor butterfly; warp totals in order); rows are redrawn until the plain column
// order or its reverse gives the other variance, so an implementation with another order fails.
// The tiny terms go anywhere, into the big column's own v1 thread, or into its warp (rows
// i % 3), so that the warp-total order, the per-thread order and the butterfly are all at stake. Checked: v1
// (ODYSSEY_PREFILL_ROWS_V2=0) and v2 (=force) against the model, fp16 output, every byte.
double norm_ss_v1_order(const std::vector<float>& x, int hidden) {
  const int vt = 256;
  std::vector<double> part(vt, 0.0);
  for (int t = 0; t < vt; t++)
    for (int c = 4 * t; c < hidden; c += 4 * vt)
      for (int j = 0; j < 4; j++) part[t] += (double)x[c + j] * (double)x[c + j];
  double tot = 0;
  for (int w = 0; w < vt / 32; w++) {
    double v[32];
    for (int l = 0; l < 32; l++) v[l] = part[32 * w + l];
    for (int o = 16; o > 0; o >>= 1) {
      double nv[32];
      for (int l = 0; l < 32; l++) nv[l] = v[l] + v[l ^ o];
      std::copy(nv, nv + 32, v);
    }
    tot = w == 0 ? v[0] : tot + v[0];
  }
  return tot;
}
float norm_scale(double ss, int hidden, float eps) {
  const float variance = (float)(ss / (double)hidden);
  return (float)(1.0 / std::sqrt((double)(variance + eps)));
}

Result test_norm_order(int rows, int hidden, uint64_t seed) {
  Check c(fmt("add_rmsnorm fp64 order rows=%d hidden=%d (v1 and v2 vs v1's order)", rows, hidden), "add_rmsnorm-order");
  Rng r(seed);
  const float eps = 0.f;
  std::vector<float> h0((size_t)rows * hidden, 0.f), w((size_t)hidden, 1.f);
  std::vector<int> big_col(rows);
  std::vector<float> scale_ref(rows), scale_alt(rows);  // v1's order; the other possible scale
  int discriminating = 0;
  for (int i = 0; i < rows; i++) {
    float* x = &h0[(size_t)i * hidden];
    for (int attempt = 0; attempt < 200; attempt++) {
      std::fill(x, x + hidden, 0.f);
      auto free_col = [&] {
        for (;;) {
          int col = r.below(hidden);
          if (x[col] == 0.f) return col;
        }
      };
      const int bc = big_col[i] = free_col();
      x[bc] = 8388608.f;  // 2^23
      const int mids = 2 * r.below(8) + 1, tinies = 2 + r.below(12);
      // Where the tinies go (row i % 3): anywhere (the warp totals' order), in the big column's own
      // v1 thread (its chunk/element order), or in its warp (the butterfly).
      const int t = (bc / 4) % 256, mode = i % 3;
      std::vector<int> cand;
      for (int col = 0; col < hidden; col++)
        if (col != bc && (mode == 1 ? (col / 4) % 256 == t : (col / 4) % 256 / 32 == t / 32)) cand.push_back(col);
      for (int k = 0; k < tinies; k++) {
        int col = mode == 0 ? free_col() : cand[r.below((int)cand.size())];
        if (x[col] == 0.f) x[col] = 0.0625f;  // 2^-4
      }
      for (int k = 0; k < mids; k++) x[free_col()] = 2048.f;  // 2^11
      std::vector<float> row(x, x + hidden);
      double seq = 0, rev = 0;
      for (int col = 0; col < hidden; col++) seq += (double)row[col] * (double)row[col];
      for (int col = hidden - 1; col >= 0; col--) rev += (double)row[col] * (double)row[col];
      const float s1 = norm_scale(norm_ss_v1_order(row, hidden), hidden, eps);
      const float s2 = norm_scale(seq, hidden, eps), s3 = norm_scale(rev, hidden, eps);
      if (s1 == s2 && s1 == s3) continue;  // this row would not tell the orders apart: draw again
      scale_ref[i] = s1;
      scale_alt[i] = s1 != s2 ? s2 : s3;
      discriminating++;
      break;
    }
  }
  if (discriminating < rows) c.bad(fmt("only %d of %d rows discriminate the orders (test construction)", discriminating, rows));
  // The weights are shared by the rows: each row's big column gets a weight chosen for that row
  // (a column that is two rows' big column keeps the first row's weight: the later row is then
  // still checked exactly, only perhaps without telling the orders apart). Σx²/n lands on an fp32
  // midpoint only when n is a power of two (hence hidden 4096 and 8192 in the list).
  std::vector<int> owner(hidden, -1);
  for (int i = 0; i < rows; i++) {
    const int col = big_col[i];
    if (owner[col] >= 0) continue;
    owner[col] = i;
    const float* x = &h0[(size_t)i * hidden];
    const float s_other = scale_alt[i];
    for (int t = 0; t < 100000; t++) {
      const float wc = r.uniform(0.5f, 1.5f);
      if (f2h(wc * (x[col] * scale_ref[i])) != f2h(wc * (x[col] * s_other))) {
        w[col] = wc;
        break;
      }
    }
  }
  auto dw = upload(w);
  std::vector<uint8_t> got[2];
  for (int v = 0; v < 2; v++) {
    auto dh = upload(h0);
    OutBuf o = make_out(L::ActKind::F16, hidden, rows, 1.f);
    L::ActOut a = o.act();
    {
      RowsV2Env env(v ? "0" : "force");
      c.cuda(L::add_rmsnorm(dh.get<float>(), nullptr, 0, dw.get<float>(), eps, rows, hidden, &a, 1, 0), "add_rmsnorm");
      c.cuda(cudaDeviceSynchronize(), "add_rmsnorm (sync)");
    }
    if (!c.r.passed) return c.r;
    got[v] = download<uint8_t>(o.data, o.data.bytes());
    auto y = download<uint16_t>(o.data, (size_t)rows * hidden);
    for (int i = 0; i < rows; i++)
      for (int col = 0; col < hidden; col++) {
        c.r.checked++;
        const float x = h0[(size_t)i * hidden + col];
        const uint16_t want = f2h(w[col] * (x * scale_ref[i]));
        if (y[(size_t)i * hidden + col] != want)
          c.bad(fmt("%s row %d col %d: fp16 0x%04x, want 0x%04x (v1's fp64 order)", v ? "v1" : "v2", i, col,
                    y[(size_t)i * hidden + col], want));
      }
  }
  same_bytes(c, got, "output");
  return c.r;
}

Result test_swiglu_v2(int rows, int cols, L::ActKind kind, bool pad, uint64_t seed) {
  Check c(fmt("swiglu v2 vs v1 rows=%d cols=%d %s%s", rows, cols, kind_name(kind), pad ? " padded" : ""), "swiglu-v2");
  Rng r(seed);
  const int ld_in = 2 * cols + 8;
  std::vector<uint16_t> in((size_t)rows * ld_in, kHalfNaN);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < 2 * cols; j++) in[(size_t)i * ld_in + j] = f2h(r.uniform(-6.f, 6.f));
  if (rows >= 3)
    for (int j = 0; j < 2 * cols; j++) in[(size_t)ld_in + j] = 0;  // a zero row: scale 1, codes 0
  if (rows >= 3) in[(size_t)2 * ld_in + 5] = 0x7C00;                 // gate +inf: y = ±inf or NaN, scale NaN
  if (rows >= 5) in[(size_t)4 * ld_in + cols + 9] = kHalfNaN;       // up NaN
  auto din = upload(in);
  const __half* g = din.get<__half>();
  const int ld = kind == L::ActKind::F16 && !pad ? cols : round_up(cols, 128) + (pad ? 128 : 0);
  std::vector<uint8_t> ob[2], ts[2];
  for (int v = 0; v < 2; v++) {
    OutBuf o = make_out(kind, ld, rows, 6.0f / 127);
    {
      RowsV2Env env(v ? "0" : "force");
      c.cuda(L::swiglu(g, g + cols, ld_in, rows, cols, o.act(), 0), "swiglu");
      c.cuda(cudaDeviceSynchronize(), "swiglu (sync)");
    }
    if (!c.r.passed) return c.r;
    ob[v] = download<uint8_t>(o.data, o.data.bytes());
    ts[v] = download<uint8_t>(o.token_scale, (size_t)rows * 4);
  }
  same_bytes(c, ob, "output");
  if (kind == L::ActKind::I8PerToken) same_bytes(c, ts, "token scales");
  return c.r;
}

Result test_rope_v2(int rows, int nh, int nkv, int hd, uint64_t seed) {
  Check c(fmt("rope v2 vs v1 rows=%d heads=%d/%d hd=%d", rows, nh, nkv, hd), "rope-v2");
  Rng r(seed);
  const int ld_q = nh * hd + 8, ld_k = 2 * nkv * hd + 8;  // k inside a [k | v] row, as the fused qkv output
  auto q = random_half(r, (size_t)rows * ld_q, 2.f);
  auto k = random_half(r, (size_t)rows * ld_k, 2.f);
  std::vector<int32_t> pos(rows);
  for (int i = 0; i < rows; i++) pos[i] = i == 1 ? 131071 : (i % 3 == 0 ? i : r.below(8192));
  auto inv = inv_freq_ref(hd, (seed & 1) ? 10000.0 : 500000.0);
  auto dp = upload(pos);
  auto di = upload(inv);
  std::vector<uint8_t> gq[2], gk[2];
  for (int v = 0; v < 2; v++) {
    auto dq = upload(q), dk = upload(k);
    {
      RowsV2Env env(v ? "0" : "force");
      c.cuda(L::rope(dq.get<__half>(), ld_q, dk.get<__half>(), ld_k, rows, nh, nkv, hd, dp.get<int32_t>(),
                     di.get<float>(), 0),
             "rope");
      c.cuda(cudaDeviceSynchronize(), "rope (sync)");
    }
    if (!c.r.passed) return c.r;
    gq[v] = download<uint8_t>(dq, q.size() * 2);
    gk[v] = download<uint8_t>(dk, k.size() * 2);
  }
  same_bytes(c, gq, "q");
  same_bytes(c, gk, "k (and the v columns beside it, untouched)");
  return c.r;
}

// quantize_rows (v1 or v2 by rows and ODYSSEY_PREFILL_ROWS_V2: env "" default, "0", "force")
// against the host reference (quant.RowScale / QuantizeActValue on the fp16 values: exact, no
// tolerance: the GPU computes the reference's own fp32 operations), then v2 against v1 bytes.
Result test_quantize_rows(int rows, int cols, bool per_token, uint64_t seed) {
  Check c(fmt("quantize_rows rows=%d cols=%d %s", rows, cols, per_token ? "i8token" : "i8static"), "quantize_rows");
  Rng r(seed);
  const int ldx = cols + 8, ld = round_up(cols, 128) + 64;
  std::vector<uint16_t> x((size_t)rows * ldx, kHalfNaN);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) x[(size_t)i * ldx + j] = f2h(r.uniform(-3.f, 3.f) * (j % 29 == 3 ? 8.f : 1.f));
  if (rows >= 3)
    for (int j = 0; j < cols; j++) x[(size_t)ldx + j] = 0;  // a zero row: scale 1
  if (rows >= 3) x[(size_t)2 * ldx + 7] = kHalfNaN;         // a NaN row: scale NaN, codes 0
  if (rows >= 5) x[(size_t)4 * ldx + 1] = 0xFC00;           // −inf
  if (rows >= 6)
    for (int j = 0; j < cols; j++) x[(size_t)5 * ldx + j] = (uint16_t)(j % 7);  // subnormals only
  auto dx = upload(x);
  const L::ActKind kind = per_token ? L::ActKind::I8PerToken : L::ActKind::I8Static;
  std::vector<uint8_t> ob[2], ts[2];
  for (int v = 0; v < 2; v++) {
    OutBuf o = make_out(kind, ld, rows, 2.5f / 127);
    {
      RowsV2Env env(v ? "0" : "force");
      c.cuda(L::quantize_rows(dx.get<__half>(), ldx, rows, cols, o.act(), 0), "quantize_rows");
      c.cuda(cudaDeviceSynchronize(), "quantize_rows (sync)");
    }
    if (!c.r.passed) return c.r;
    ob[v] = download<uint8_t>(o.data, o.data.bytes());
    ts[v] = download<uint8_t>(o.token_scale, (size_t)rows * 4);
    if (v == 0) {  // v2 against the reference
      std::vector<float> y((size_t)rows * cols);
      for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) y[(size_t)i * cols + j] = h2f(x[(size_t)i * ldx + j]);
      check_out(c, o, y, rows, cols);
      if (c.r.flips) c.bad(fmt("%lld code flips: quantize_rows must be exact", c.r.flips));
    }
  }
  same_bytes(c, ob, "codes");
  if (per_token) same_bytes(c, ts, "token scales");
  return c.r;
}

// place_columns (tensor parallelism: a row-parallel shard's input moved right by its offset
// inside the first K block): every byte of dst against the definition, int8 and fp16, dst
// poisoned first (so a column left unwritten shows), and the refusals.
Result test_place_columns(int rows, int cols, int off, int esz, uint64_t seed) {
  Check c(fmt("place_columns rows=%d cols=%d off=%d esz=%d", rows, cols, off, esz), "place_columns");
  Rng r(seed);
  const int ld_src = cols + 24, ld_dst = round_up(off + cols, 128) + (off % 3) * 128;
  std::vector<uint8_t> src((size_t)rows * ld_src * esz);
  for (auto& b : src) b = (uint8_t)r.below(256);
  auto ds = upload(src);
  DeviceBuffer dd = poisoned((size_t)rows * ld_dst * esz);
  c.cuda(L::place_columns(ds.get<void>(), ld_src, rows, cols, esz, off, dd.get<void>(), ld_dst, 0), "place_columns");
  c.cuda(cudaDeviceSynchronize(), "place_columns (sync)");
  if (!c.r.passed) return c.r;
  const std::vector<uint8_t> got = download<uint8_t>(dd, (size_t)rows * ld_dst * esz);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < ld_dst; j++)
      for (int b = 0; b < esz; b++) {
        const uint8_t want = j >= off && j < off + cols ? src[((size_t)i * ld_src + j - off) * esz + b] : 0;
        const uint8_t have = got[((size_t)i * ld_dst + j) * esz + b];
        c.r.checked++;
        if (have != want) c.bad(fmt("[%d, %d] byte %d: %d, want %d", i, j, b, have, want));
      }
  // Refusals: a destination too narrow, a wider source than its stride, another element size.
  if (L::place_columns(ds.get<void>(), ld_src, rows, cols, esz, ld_dst - cols + 1, dd.get<void>(), ld_dst, 0) !=
          cudaErrorInvalidValue ||
      L::place_columns(ds.get<void>(), cols - 1, rows, cols, esz, off, dd.get<void>(), ld_dst, 0) != cudaErrorInvalidValue ||
      L::place_columns(ds.get<void>(), ld_src, rows, cols, 4, off, dd.get<void>(), ld_dst, 0) != cudaErrorInvalidValue)
    c.bad("a bad shape was not refused with cudaErrorInvalidValue");
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// Attention: an fp64 reference over keys [lo, hi) and the tolerance of a kernel output.

struct AttnRef {
  std::vector<double> o, spv;  // softmax·v and Σ p·|v| (normalized), per dim
  double ds = 0;               // bound on the kernel's fp32 score error
};

// q: head_dim fp16 values; keys/values row j at k + j·ld (head offset applied).
AttnRef attention_ref(const uint16_t* q, const uint16_t* k, const uint16_t* v, size_t ld, int lo, int hi, int hd,
                      double scale) {
  AttnRef a;
  a.o.assign(hd, 0.0);
  a.spv.assign(hd, 0.0);
  std::vector<double> s(hi - lo);
  double m = -INFINITY, mag = 0;
  for (int j = lo; j < hi; j++) {
    double dot = 0, am = 0;
    for (int d = 0; d < hd; d++) {
      double x = h2f(q[d]), y = h2f(k[(size_t)j * ld + d]);
      dot += x * y;
      am += std::fabs(x * y);
    }
    s[j - lo] = dot * scale;
    m = std::max(m, s[j - lo]);
    mag = std::max(mag, am);
  }
  // fp32 accumulation of hd products: |Δdot| ≤ hd·u·Σ|q·k| (the γ_n bound), times scale, with
  // u = 2⁻²³ rather than 2⁻²⁴ because tensor cores may truncate partial sums instead of rounding.
  a.ds = hd * std::ldexp(1.0, -23) * mag * scale;
  double l = 0;
  for (int j = lo; j < hi; j++) {
    double p = std::exp(s[j - lo] - m);
    l += p;
    for (int d = 0; d < hd; d++) {
      double y = h2f(v[(size_t)j * ld + d]);
      a.o[d] += p * y;
      a.spv[d] += p * std::fabs(y);
    }
  }
  if (hi > lo)  // else no key (len 0 in decode): the kernels write 0
    for (int d = 0; d < hd; d++) a.o[d] /= l, a.spv[d] /= l;
  return a;
}

// attention_tol: |kernel − reference| ≤ (2·2⁻¹¹ + 2·Δs + kExpRel)·Σp|v| + 2⁻¹¹·|o| + 2⁻²⁴, where
//   2⁻¹¹·Σp|v| is the flash kernel's rounding of each p to fp16 before P·V (relative 2⁻¹¹ each;
//     doubled because the normalizer is the sum of the unrounded p),
//   2·Δs·Σp|v| covers the fp32 score error Δs (each p moves by a factor e^{±Δs}, and so does
//     the normalizer),
//   kExpRel = 1e-5 covers ex2.approx/expf (≤ 2 ulp) and folding scale·log2(e) into the exponent
//     (a few fp32 ulps of logits up to |x| ≈ 100),
//   2⁻¹¹·|o| + 2⁻²⁴ is the final rounding to fp16 (half an ulp, and subnormal outputs).
constexpr double kExpRel = 1e-5;
double attention_tol(const AttnRef& a, int d) {
  return (2 * std::ldexp(1.0, -11) + 2 * a.ds + kExpRel) * a.spv[d] + std::ldexp(1.0, -11) * std::fabs(a.o[d]) +
         std::ldexp(1.0, -24);
}

void check_attn_row(Check& c, const uint16_t* got, const AttnRef& a, int hd, const char* what, long long row, int head) {
  for (int d = 0; d < hd; d++) {
    float g = h2f(got[d]);
    double err = std::fabs((double)g - a.o[d]), tol = attention_tol(a, d);
    c.ratio(g != g ? INFINITY : err, tol);
    if (!(err <= tol)) c.bad(fmt("%s row %lld head %d dim %d: got %.6g, want %.6g (tol %.3g)", what, row, head, d, g, a.o[d], tol));
  }
}

// Query rows to check: all for short sequences, else the first and last 16 and every 17th.
std::vector<int> sample_rows(int seq) {
  std::vector<int> rows;
  for (int t = 0; t < seq; t++)
    if (seq <= 160 || t < 16 || t >= seq - 16 || t % 17 == 0) rows.push_back(t);
  return rows;
}

struct PrefillShape {
  int batch, seq, nh, nkv, hd, window;
  float amp;
  bool odd_stride;  // forces the simple kernel
};

Result test_prefill(const PrefillShape& p, const char* variant, uint64_t seed) {
  const bool flash = !p.odd_stride && (p.hd == 64 || p.hd == 128);
  Check c(fmt("attention_prefill b=%d seq=%d heads=%d/%d hd=%d window=%d amp=%g%s", p.batch, p.seq, p.nh, p.nkv, p.hd,
              p.window, p.amp, p.odd_stride ? " odd-stride" : ""),
          flash ? (std::strcmp(variant, "8") == 0 ? "flash-bm128" : "flash-bm64") : "attention-rows");
  setenv("ODYSSEY_PREFILL_WARPS", variant, 1);
  Rng r(seed);
  const int rows = p.batch * p.seq, tail = 160;  // rows past the last sequence: NaN
  const int ld_q = p.nh * p.hd + (p.odd_stride ? 1 : 8), ld_kv = p.nkv * p.hd + (p.odd_stride ? 3 : 8);
  const int ld_out = p.nh * p.hd + 8;
  auto fill = [&](int ld, int width) {
    std::vector<uint16_t> x((size_t)(rows + tail) * ld, kHalfNaN);
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < width; j++) x[(size_t)i * ld + j] = f2h(r.uniform(-p.amp, p.amp));
    return x;
  };
  auto q = fill(ld_q, p.nh * p.hd), k = fill(ld_kv, p.nkv * p.hd), v = fill(ld_kv, p.nkv * p.hd);
  auto dq = upload(q), dk = upload(k), dv = upload(v);
  DeviceBuffer dout = poisoned((size_t)rows * ld_out * 2);
  const float scale = (float)(1.0 / std::sqrt((double)p.hd));
  size_t wsb = L::attention_prefill_workspace(p.batch, p.seq, p.nh, p.hd);
  DeviceBuffer ws = poisoned(wsb);
  c.cuda(L::attention_prefill(dq.get<__half>(), ld_q, dk.get<__half>(), dv.get<__half>(), ld_kv, dout.get<__half>(), ld_out,
                              p.batch, p.seq, p.nh, p.nkv, p.hd, scale, p.window, ws.get(), wsb, 0),
         "attention_prefill");
  c.cuda(cudaDeviceSynchronize(), "attention_prefill (sync)");
  if (!c.r.passed) return c.r;
  auto out = download<uint16_t>(dout, (size_t)rows * ld_out);
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < p.nh * p.hd; j++)
      if (half_is_nan(out[(size_t)i * ld_out + j])) {
        c.bad(fmt("out[%d,%d] not written (NaN)", i, j));
        break;
      }
    for (int j = p.nh * p.hd; j < ld_out; j++)
      if (out[(size_t)i * ld_out + j] != 0xFFFF) c.bad(fmt("out padding [%d,%d] written", i, j));
  }
  const int group = p.nh / p.nkv;
  for (int b = 0; b < p.batch; b++)
    for (int t : sample_rows(p.seq)) {
      const size_t row = (size_t)b * p.seq + t;
      const int lo = p.window > 0 ? std::max(0, t - p.window + 1) : 0;
      for (int h = 0; h < p.nh; h++) {
        const size_t base = (size_t)b * p.seq * ld_kv + (size_t)(h / group) * p.hd;
        AttnRef a = attention_ref(&q[row * ld_q + (size_t)h * p.hd], &k[base], &v[base], ld_kv, lo, t + 1, p.hd, scale);
        check_attn_row(c, &out[row * ld_out + (size_t)h * p.hd], a, p.hd, "prefill", (long long)row, h);
      }
    }
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// KV cache: append, then decode.

Result test_kv_append(int batch, int tokens, int max_seq, int nkv, int hd, bool odd_stride, uint64_t seed) {
  Check c(fmt("kv_append b=%d tokens=%d max_seq=%d kv=%d hd=%d%s", batch, tokens, max_seq, nkv, hd, odd_stride ? " odd-stride" : ""),
          (nkv * hd) % 8 || odd_stride ? "kv_append-scalar" : "kv_append");
  Rng r(seed);
  const int width = nkv * hd, ld = width + (odd_stride ? 1 : 8), rows = std::max(batch * tokens, 1);
  auto k = random_half(r, (size_t)rows * ld, 2.f), v = random_half(r, (size_t)rows * ld, 2.f);
  std::vector<int32_t> start(std::max(batch, 1));
  for (auto& s : start) s = r.below(max_seq - tokens + 1);
  auto dk = upload(k), dv = upload(v);
  auto ds = upload(start);
  const size_t cache = (size_t)std::max(batch, 1) * max_seq * width;
  DeviceBuffer kc = poisoned(cache * 2), vc = poisoned(cache * 2);
  c.cuda(L::kv_append(dk.get<__half>(), dv.get<__half>(), ld, kc.get<__half>(), vc.get<__half>(), ds.get<int32_t>(), batch,
                      tokens, max_seq, nkv, hd, 0),
         "kv_append");
  c.cuda(cudaDeviceSynchronize(), "kv_append (sync)");
  if (!c.r.passed) return c.r;
  auto gk = download<uint16_t>(kc, cache), gv = download<uint16_t>(vc, cache);
  for (int b = 0; b < std::max(batch, 1); b++)
    for (int pos = 0; pos < max_seq; pos++) {
      const int t = pos - start[b];
      const bool appended = b < batch && t >= 0 && t < tokens;
      for (int j = 0; j < width; j++) {
        size_t at = ((size_t)b * max_seq + pos) * width + j;
        uint16_t wk = appended ? k[(size_t)(b * tokens + t) * ld + j] : 0xFFFF;
        uint16_t wv = appended ? v[(size_t)(b * tokens + t) * ld + j] : 0xFFFF;
        c.r.checked++;
        if (gk[at] != wk || gv[at] != wv) {
          c.bad(fmt("cache[b=%d, pos=%d, %d]: %s", b, pos, j, appended ? "wrong value" : "written outside the appended rows"));
          break;
        }
      }
    }
  return c.r;
}

// rope_kv_decode against rope() followed by kv_append() (themselves tested against the host
// references above): q, the cache and the untouched k input bit-exact.
Result test_rope_kv(int batch, int max_seq, int nh, int nkv, int hd, bool odd_stride, uint64_t seed) {
  Check c(fmt("rope_kv_decode b=%d max_seq=%d heads=%d/%d hd=%d%s", batch, max_seq, nh, nkv, hd, odd_stride ? " odd-stride" : ""),
          (hd / 2) % 2 || odd_stride ? "rope_kv-scalar" : "rope_kv");
  Rng r(seed);
  const int ld_q = nh * hd + (odd_stride ? 1 : 8), ld_kv = nkv * hd + (odd_stride ? 3 : 8), width = nkv * hd;
  auto q = random_half(r, (size_t)batch * ld_q, 2.f), k = random_half(r, (size_t)batch * ld_kv, 2.f),
       v = random_half(r, (size_t)batch * ld_kv, 2.f);
  std::vector<int32_t> pos(batch);
  for (auto& x : pos) x = r.below(max_seq);
  std::vector<float> inv(hd / 2);
  for (int i = 0; i < hd / 2; i++) inv[i] = (float)std::pow(10000.0, -2.0 * i / hd);
  auto dq = upload(q), dk = upload(k), dv = upload(v), dq2 = upload(q), dk2 = upload(k);
  auto dp = upload(pos);
  auto di = upload(inv);
  const size_t cache = (size_t)batch * max_seq * width;
  DeviceBuffer kc = poisoned(cache * 2), vc = poisoned(cache * 2), kc2 = poisoned(cache * 2), vc2 = poisoned(cache * 2);
  c.cuda(L::rope_kv_decode(dq.get<__half>(), ld_q, dk.get<__half>(), dv.get<__half>(), ld_kv, kc.get<__half>(),
                           vc.get<__half>(), batch, max_seq, nh, nkv, hd, dp.get<int32_t>(), di.get<float>(), 0),
         "rope_kv_decode");
  c.cuda(L::rope(dq2.get<__half>(), ld_q, dk2.get<__half>(), ld_kv, batch, nh, nkv, hd, dp.get<int32_t>(), di.get<float>(), 0),
         "rope");
  c.cuda(L::kv_append(dk2.get<__half>(), dv.get<__half>(), ld_kv, kc2.get<__half>(), vc2.get<__half>(), dp.get<int32_t>(),
                      batch, 1, max_seq, nkv, hd, 0),
         "kv_append");
  c.cuda(cudaDeviceSynchronize(), "rope_kv_decode (sync)");
  if (!c.r.passed) return c.r;
  auto cmp = [&](const DeviceBuffer& a, const DeviceBuffer& b, size_t n, const char* what) {
    auto x = download<uint16_t>(a, n), y = download<uint16_t>(b, n);
    c.r.checked += (long long)n;
    for (size_t i = 0; i < n; i++)
      if (x[i] != y[i]) {
        c.bad(fmt("%s[%zu]: fused 0x%04x, rope + kv_append 0x%04x", what, i, x[i], y[i]));
        return;
      }
  };
  cmp(dq, dq2, (size_t)batch * ld_q, "q");
  cmp(kc, kc2, cache, "k cache");
  cmp(vc, vc2, cache, "v cache");
  if (download<uint16_t>(dk, (size_t)batch * ld_kv) != k) c.bad("the k input was modified");
  return c.r;
}

struct DecodeShape {
  int batch, max_seq, nh, nkv, hd, window;
  std::vector<int> lens;
  bool odd_stride;  // q/out strides not a multiple of 8
  L::ActKind quant = L::ActKind::F16;  // the combine's fused o_proj input (F16: none)
  bool general = false;                // ODYSSEY_DECODE_ATTN=general: the 64-key kernel
  const char* gqa = nullptr;           // ODYSSEY_DECODE_GQA: query heads per fast block ("whole", "4", "2", "1")
  bool split = false;                  // ODYSSEY_DECODE_ATTN=split: the fast split kernel + combine (not fused)
  int chunk = 0;                       // ODYSSEY_DECODE_CHUNK: the fused kernel's keys per split (0: its rule)
};

// The kernel attention_decode takes for this shape (the launcher's rule, layers.cu).
const char* decode_kernel_name(const DecodeShape& p) {
  const int g = p.nh / p.nkv;
  const bool fast = !p.general && (p.hd == 64 || p.hd == 128) && (g == 1 || g == 2 || g == 4 || g == 8);
  const char* q = p.quant == L::ActKind::I8PerToken ? "+quant-token" : p.quant == L::ActKind::I8Static ? "+quant-static" : "";
  static std::string name;  // the caller copies it at once
  if (fast) return (name = std::string(p.split ? "decode-fast" : "decode-fused") + q).c_str();
  if (p.hd % 8) return "decode-scalar";
  return p.quant == L::ActKind::F16 ? "decode" : "decode+quant";
}

// RAII for ODYSSEY_DECODE_ATTN (the launcher reads it on every call).
struct DecodeVariant {
  explicit DecodeVariant(bool general, const char* gqa = nullptr, bool split = false, int chunk = 0) {
    if (general) setenv("ODYSSEY_DECODE_ATTN", "general", 1);
    if (split) setenv("ODYSSEY_DECODE_ATTN", "split", 1);
    if (!general && !split) setenv("ODYSSEY_DECODE_ATTN", "fused", 1);  // not the default everywhere
    if (gqa) setenv("ODYSSEY_DECODE_GQA", gqa, 1);
    if (chunk > 0) setenv("ODYSSEY_DECODE_CHUNK", std::to_string(chunk).c_str(), 1);
  }
  ~DecodeVariant() {
    unsetenv("ODYSSEY_DECODE_ATTN");
    unsetenv("ODYSSEY_DECODE_GQA");
    unsetenv("ODYSSEY_DECODE_CHUNK");
  }
};

Result test_decode(const DecodeShape& p, uint64_t seed) {
  std::string lens;
  for (int l : p.lens) lens += (lens.empty() ? "" : ",") + std::to_string(l);
  Check c(fmt("attention_decode b=%d max_seq=%d heads=%d/%d hd=%d window=%d len=%s%s%s", p.batch, p.max_seq, p.nh,
              p.nkv, p.hd, p.window, lens.c_str(),
              (std::string(p.general ? " general" : p.split ? " split" : "") + (p.gqa ? std::string(" gqa=") + p.gqa : "") +
               (p.chunk > 0 ? " chunk=" + std::to_string(p.chunk) : ""))
                  .c_str(),
              p.quant == L::ActKind::I8Static ? " +i8static" : p.quant == L::ActKind::I8PerToken ? " +i8token" : ""),
          decode_kernel_name(p));
  DecodeVariant variant(p.general, p.gqa, p.split, p.chunk);
  Rng r(seed);
  const int width = p.nkv * p.hd, ld_q = p.nh * p.hd + (p.odd_stride ? 1 : 8), ld_out = p.nh * p.hd + (p.odd_stride ? 3 : 8);
  // The cache beyond len[b] is NaN: a read past the context would show.
  std::vector<uint16_t> kc((size_t)p.batch * p.max_seq * width, kHalfNaN), vc(kc.size(), kHalfNaN);
  for (int b = 0; b < p.batch; b++)
    for (size_t i = 0; i < (size_t)p.lens[b] * width; i++) {
      size_t at = (size_t)b * p.max_seq * width + i;
      kc[at] = f2h(r.uniform(-2.f, 2.f));
      vc[at] = f2h(r.uniform(-2.f, 2.f));
    }
  std::vector<uint16_t> q((size_t)p.batch * ld_q, kHalfNaN);
  for (int b = 0; b < p.batch; b++)
    for (int j = 0; j < p.nh * p.hd; j++) q[(size_t)b * ld_q + j] = f2h(r.uniform(-2.f, 2.f));
  std::vector<int32_t> len(p.lens.begin(), p.lens.end());
  auto dk = upload(kc), dv = upload(vc), dq = upload(q);
  auto dl = upload(len);
  DeviceBuffer dout = poisoned((size_t)p.batch * ld_out * 2);
  size_t wsb = L::attention_decode_workspace(p.batch, p.nh, p.hd, p.max_seq);
  DeviceBuffer ws = poisoned(wsb);
  // The fused kernel's counters (the workspace's last bytes) start at 0, as the executor's
  // zeroed arena gives them; the rest stays poisoned. Every call must leave them 0 (checked below).
  c.cuda(L::attention_decode_workspace_init(ws.get(), wsb, p.batch, p.nh, 0), "attention_decode_workspace_init");
  const size_t ctr_at = (wsb - L::attention_decode_counter_bytes(p.batch, p.nh)) & ~(size_t)15;
  auto counters_zero = [&](const char* when) {
    auto t = download<uint8_t>(ws, wsb);
    for (size_t i = ctr_at; i < wsb; i++)
      if (t[i] != 0) {
        c.bad(fmt("workspace counter byte %zu is 0x%02x %s (the fused kernel must leave its counters 0)", i - ctr_at, t[i], when));
        return;
      }
  };
  const float scale = (float)(1.0 / std::sqrt((double)p.hd));
  // o_proj's int8 input (fused into the combine): row stride cols rounded up to 128 plus 3, as
  // the executor's Kp, with the padding columns poisoned; a static scale that clips some values.
  const int cols = p.nh * p.hd, ldq8 = (cols + 127) / 128 * 128 + 3;
  DeviceBuffer dq8 = poisoned((size_t)p.batch * ldq8), dtok = poisoned((size_t)p.batch * 4);
  const float static_scale = 0.004f;
  auto dss = upload(std::vector<float>{static_scale});
  L::ActOut qo;
  qo.kind = p.quant;
  qo.ld = ldq8;
  qo.i8 = dq8.get<int8_t>();
  qo.static_scale = dss.get<float>();
  qo.token_scale = dtok.get<float>();
  const L::ActOut* qop = p.quant == L::ActKind::F16 ? nullptr : &qo;
  c.cuda(L::attention_decode(dq.get<__half>(), ld_q, dk.get<__half>(), dv.get<__half>(), dl.get<int32_t>(), dout.get<__half>(),
                             ld_out, p.batch, p.max_seq, p.nh, p.nkv, p.hd, scale, p.window, ws.get(), wsb, 0, qop),
         "attention_decode");
  c.cuda(cudaDeviceSynchronize(), "attention_decode (sync)");
  if (!c.r.passed) return c.r;
  counters_zero("after the call");
  auto out = download<uint16_t>(dout, (size_t)p.batch * ld_out);
  const int group = p.nh / p.nkv;
  for (int b = 0; b < p.batch; b++) {
    const int Lb = p.lens[b], lo = p.window > 0 ? std::max(0, Lb - p.window) : 0;
    for (int h = 0; h < p.nh; h++) {
      const uint16_t* kb = &kc[(size_t)b * p.max_seq * width + (size_t)(h / group) * p.hd];
      const uint16_t* vb = &vc[(size_t)b * p.max_seq * width + (size_t)(h / group) * p.hd];
      AttnRef a = attention_ref(&q[(size_t)b * ld_q + (size_t)h * p.hd], kb, vb, width, lo, Lb, p.hd, scale);
      check_attn_row(c, &out[(size_t)b * ld_out + (size_t)h * p.hd], a, p.hd, "decode", b, h);
    }
    for (int j = p.nh * p.hd; j < ld_out; j++)
      if (out[(size_t)b * ld_out + j] != 0xFFFF) c.bad(fmt("out padding [%d,%d] written", b, j));
  }
  // The fused quantization: bit-exact with the executor's quantize_rows_kernel applied to the
  // kernel's own fp16 output (per token: the scale as quant.RowScale, then every code).
  if (p.quant != L::ActKind::F16) {
    auto got = download<int8_t>(dq8, (size_t)p.batch * ldq8);
    auto tok = download<float>(dtok, (size_t)p.batch);
    for (int b = 0; b < p.batch; b++) {
      std::vector<float> y(cols);
      for (int j = 0; j < cols; j++) y[j] = h2f(out[(size_t)b * ld_out + j]);
      float sc = static_scale;
      if (p.quant == L::ActKind::I8PerToken) {
        sc = row_scale_ref(y.data(), cols);
        c.r.checked++;
        if (float_bits(tok[b]) != float_bits(sc) && !(sc != sc && tok[b] != tok[b]))
          c.bad(fmt("token scale [%d]: got %.9g, want %.9g", b, tok[b], sc));
      }
      for (int j = 0; j < ldq8; j++) {
        const int8_t want = j < cols ? quantize_ref(y[j], sc) : (int8_t)0;
        c.r.checked++;
        if (got[(size_t)b * ldq8 + j] != want) {
          c.bad(fmt("int8 [%d,%d]: got %d, want %d%s", b, j, got[(size_t)b * ldq8 + j], want, j < cols ? "" : " (padding)"));
          break;
        }
      }
    }
  }
#ifndef ODYSSEY_LAYERS_EMU
  // Graph capture (the executor captures decode steps): capture with these lengths, then set
  // every len to one less (at least 1) on the device and replay; the replay must write exactly
  // what a direct launch with the new lengths writes, i.e. len is read on the device at run time.
  if (c.r.passed) {
    cudaStream_t st = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    DeviceBuffer dg = poisoned((size_t)p.batch * ld_out * 2), dd = poisoned((size_t)p.batch * ld_out * 2);
    auto call = [&](DeviceBuffer& o, cudaStream_t s) {
      return L::attention_decode(dq.get<__half>(), ld_q, dk.get<__half>(), dv.get<__half>(), dl.get<int32_t>(),
                                 o.get<__half>(), ld_out, p.batch, p.max_seq, p.nh, p.nkv, p.hd, scale, p.window,
                                 ws.get(), wsb, s, qop);
    };
    c.cuda(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate");
    if (c.r.passed) c.cuda(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
    if (c.r.passed) {
      cudaError_t e = call(dg, st);
      c.cuda(cudaStreamEndCapture(st, &graph), "cudaStreamEndCapture");
      c.cuda(e, "attention_decode (captured)");
    }
    if (c.r.passed) c.cuda(cudaGraphInstantiateWithFlags(&exec, graph, 0), "cudaGraphInstantiate");
    std::vector<int32_t> len2(len);
    for (auto& l : len2) l = std::max(1, l - 1);
    if (c.r.passed) {
      dl.upload(len2.data(), len2.size() * 4);
      c.cuda(cudaGraphLaunch(exec, st), "cudaGraphLaunch");
      c.cuda(cudaStreamSynchronize(st), "cudaGraphLaunch (sync)");
      c.cuda(call(dd, 0), "attention_decode (direct, new lengths)");
      c.cuda(cudaDeviceSynchronize(), "attention_decode (sync)");
    }
    if (c.r.passed) {
      auto g = download<uint16_t>(dg, (size_t)p.batch * ld_out), d = download<uint16_t>(dd, (size_t)p.batch * ld_out);
      if (g != d) c.bad("graph replay with new lengths differs from a direct launch");
      counters_zero("after the graph replay and a direct call");
    }
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (st) cudaStreamDestroy(st);
  }
#endif
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// The int8 KV cache (executor/kv8.cu; format in kv8.hpp).
//
// Tolerances: quantization is bit-exact (codes, fp16 scales, the dequantized fp16 values the
// prefill writes back, the fused rope's q), since every step is one IEEE fp32 or fp16 operation
// the host repeats (x / s in fp32, round half to even, s = fp16(amax / 127), x' = fp16(code·s),
// exact in fp32 before its one rounding). Decode attention over the int8 cache: the fp16 decode's
// bound (attention_tol) against an fp64 reference on the dequantized values x', because the kernel
// reads exactly those fp16 values: the int8 error itself is what `ppl --kv-cache int8` measures.

// kv8.hpp's quantization of n fp16 values (one head): scale bits, codes, dequantized bits.
void kv8_ref(const uint16_t* x, size_t stride, int n, uint16_t& s_bits, int8_t* codes, uint16_t* deq) {
  uint32_t m = 0;
  for (int i = 0; i < n; i++) m = std::max(m, float_bits(h2f(x[(size_t)i * stride])) & 0x7FFFFFFFu);
  float sf;
  if (m >= 0x7F800000u) {
    s_bits = kHalfNaN;
    sf = NAN;
  } else {
    float amax;
    std::memcpy(&amax, &m, 4);
    s_bits = f2h(amax / 127.0f);
    sf = h2f(s_bits);
  }
  for (int i = 0; i < n; i++) {
    int8_t c = 0;
    if (sf > 0.f) {
      const double v = std::nearbyint((double)(h2f(x[(size_t)i * stride]) / sf));  // half to even
      c = (int8_t)std::min(127.0, std::max(-127.0, v));
    }
    codes[i] = c;
    deq[i] = f2h((float)c * sf);  // exact product in fp32 (8 × 11 bits), one rounding to fp16
  }
}

bool same_half(uint16_t a, uint16_t b) { return a == b || (half_is_nan(a) && half_is_nan(b)); }

// Random heads with the special cases kv8 must keep exact: a zero head (scale 0), a tiny one
// (subnormal fp16 scale), one with a NaN (scale NaN, values NaN), one exactly ±amax.
std::vector<uint16_t> kv8_inputs(Rng& r, int rows, int ld, int heads, int hd, float amp, bool specials) {
  std::vector<uint16_t> x((size_t)rows * ld, kHalfNaN);
  for (int i = 0; i < rows; i++)
    for (int h = 0; h < heads; h++) {
      const int kind = specials ? r.below(12) : 11;
      for (int d = 0; d < hd; d++) {
        float v = r.uniform(-amp, amp);
        if (kind == 0) v = 0.f;
        if (kind == 1) v = r.uniform(-1e-3f, 1e-3f);
        if (kind == 2 && d == hd / 2) v = NAN;
        if (kind == 3 && d % 5 == 0) v = d % 2 ? amp : -amp;
        x[(size_t)i * ld + (size_t)h * hd + d] = f2h(v);
      }
    }
  return x;
}

// kv8_prefill: in-place fake quantization and (append) the cache writes, bit-exact.
Result test_kv8_prefill(int batch, int tokens, int max_seq, int nkv, int hd, bool append, bool odd_stride, uint64_t seed) {
  Check c(fmt("kv8_prefill b=%d tokens=%d max_seq=%d kv=%d hd=%d%s%s", batch, tokens, max_seq, nkv, hd,
              append ? " append" : " fake-quant", odd_stride ? " odd-stride" : ""),
          "kv8_prefill");
  Rng r(seed);
  const int width = nkv * hd, ld = width + (odd_stride ? 1 : 8), rows = batch * tokens;
  auto k = kv8_inputs(r, std::max(rows, 1), ld, nkv, hd, 3.f, true), v = kv8_inputs(r, std::max(rows, 1), ld, nkv, hd, 0.5f, true);
  std::vector<int32_t> start(std::max(batch, 1));
  for (auto& s : start) s = r.below(max_seq - tokens + 1);
  auto dk = upload(k), dv = upload(v);
  auto ds = upload(start);
  const size_t cells = (size_t)std::max(batch, 1) * max_seq * nkv;
  DeviceBuffer kc = poisoned(cells * hd), vc = poisoned(cells * hd), ks = poisoned(cells * 2), vs = poisoned(cells * 2);
  c.cuda(L::kv8_prefill(dk.get<__half>(), dv.get<__half>(), ld, append ? kc.get<int8_t>() : nullptr,
                        append ? ks.get<__half>() : nullptr, append ? vc.get<int8_t>() : nullptr,
                        append ? vs.get<__half>() : nullptr, ds.get<int32_t>(), batch, tokens, max_seq, nkv, hd, 0),
         "kv8_prefill");
  c.cuda(cudaDeviceSynchronize(), "kv8_prefill (sync)");
  if (!c.r.passed) return c.r;
  auto gk = download<uint16_t>(dk, k.size()), gv = download<uint16_t>(dv, v.size());
  auto gkc = download<int8_t>(kc, cells * hd), gvc = download<int8_t>(vc, cells * hd);
  auto gks = download<uint16_t>(ks, cells), gvs = download<uint16_t>(vs, cells);
  std::vector<int8_t> codes(hd);
  std::vector<uint16_t> deq(hd);
  for (int which = 0; which < 2; which++) {
    const auto& in = which ? v : k;
    const auto& got = which ? gv : gk;
    const auto& gc = which ? gvc : gkc;
    const auto& gs = which ? gvs : gks;
    const char* name = which ? "v" : "k";
    std::vector<bool> written(cells, false);
    for (int row = 0; row < rows && c.r.passed; row++)
      for (int g = 0; g < nkv; g++) {
        uint16_t s;
        kv8_ref(&in[(size_t)row * ld + (size_t)g * hd], 1, hd, s, codes.data(), deq.data());
        for (int d = 0; d < hd; d++) {
          c.r.checked++;
          const uint16_t x = got[(size_t)row * ld + (size_t)g * hd + d];
          if (!same_half(x, deq[d])) {
            c.bad(fmt("%s[%d, head %d, %d] = 0x%04x, want 0x%04x", name, row, g, d, x, deq[d]));
            break;
          }
        }
        if (!append) continue;
        const int b = row / tokens, p = start[b] + row % tokens;
        const size_t cell = ((size_t)b * max_seq + p) * nkv + g;
        written[cell] = true;
        c.r.checked++;
        if (!same_half(gs[cell], s)) c.bad(fmt("%s scale [b=%d, pos=%d, head %d] = 0x%04x, want 0x%04x", name, b, p, g, gs[cell], s));
        for (int d = 0; d < hd; d++)
          if (gc[cell * hd + d] != codes[d]) {
            c.bad(fmt("%s code [b=%d, pos=%d, head %d, %d] = %d, want %d", name, b, p, g, d, gc[cell * hd + d], codes[d]));
            break;
          }
      }
    for (int row = 0; row < rows; row++)  // padding columns untouched
      for (int j = width; j < ld; j++)
        if (got[(size_t)row * ld + j] != in[(size_t)row * ld + j]) c.bad(fmt("%s padding [%d, %d] written", name, row, j));
    for (size_t cell = 0; cell < cells; cell++) {  // nothing outside the appended rows
      if (written[cell]) continue;
      bool touched = gs[cell] != 0xFFFF;
      for (int d = 0; d < hd; d++) touched |= gc[cell * hd + d] != (int8_t)-1;
      if (touched) {
        c.bad(fmt("%s cache cell %zu written outside the appended rows", name, cell));
        break;
      }
    }
  }
  return c.r;
}

// rope_kv8_decode against rope() (q bit-exact) and the host quantization of rope()'s k and of v.
Result test_rope_kv8(int batch, int max_seq, int nh, int nkv, int hd, bool odd_stride, uint64_t seed) {
  Check c(fmt("rope_kv8_decode b=%d max_seq=%d heads=%d/%d hd=%d%s", batch, max_seq, nh, nkv, hd, odd_stride ? " odd-stride" : ""),
          "rope_kv8");
  Rng r(seed);
  const int ld_q = nh * hd + (odd_stride ? 1 : 8), ld_kv = nkv * hd + (odd_stride ? 3 : 8);
  auto q = random_half(r, (size_t)std::max(batch, 1) * ld_q, 2.f);
  auto k = kv8_inputs(r, std::max(batch, 1), ld_kv, nkv, hd, 3.f, true), v = kv8_inputs(r, std::max(batch, 1), ld_kv, nkv, hd, 0.5f, true);
  std::vector<int32_t> pos(std::max(batch, 1));
  for (auto& x : pos) x = r.below(max_seq);
  std::vector<float> inv(hd / 2);
  for (int i = 0; i < hd / 2; i++) inv[i] = (float)std::pow(10000.0, -2.0 * i / hd);
  auto dq = upload(q), dk = upload(k), dv = upload(v), dq2 = upload(q), dk2 = upload(k);
  auto dp = upload(pos);
  auto di = upload(inv);
  const size_t cells = (size_t)std::max(batch, 1) * max_seq * nkv;
  DeviceBuffer kc = poisoned(cells * hd), vc = poisoned(cells * hd), ks = poisoned(cells * 2), vs = poisoned(cells * 2);
  c.cuda(L::rope_kv8_decode(dq.get<__half>(), ld_q, dk.get<__half>(), dv.get<__half>(), ld_kv, kc.get<int8_t>(),
                            ks.get<__half>(), vc.get<int8_t>(), vs.get<__half>(), batch, max_seq, nh, nkv, hd,
                            dp.get<int32_t>(), di.get<float>(), 0),
         "rope_kv8_decode");
  c.cuda(L::rope(dq2.get<__half>(), ld_q, dk2.get<__half>(), ld_kv, batch, nh, nkv, hd, dp.get<int32_t>(), di.get<float>(), 0),
         "rope");
  c.cuda(cudaDeviceSynchronize(), "rope_kv8_decode (sync)");
  if (!c.r.passed || batch == 0) return c.r;
  auto gq = download<uint16_t>(dq, q.size()), wq = download<uint16_t>(dq2, q.size()), kr = download<uint16_t>(dk2, k.size());
  c.r.checked += (long long)gq.size();
  if (gq != wq) c.bad("q differs from rope()'s");
  if (download<uint16_t>(dk, k.size()) != k || download<uint16_t>(dv, v.size()) != v) c.bad("the k or v input was modified");
  auto gkc = download<int8_t>(kc, cells * hd), gvc = download<int8_t>(vc, cells * hd);
  auto gks = download<uint16_t>(ks, cells), gvs = download<uint16_t>(vs, cells);
  std::vector<int8_t> codes(hd);
  std::vector<uint16_t> deq(hd);
  std::vector<bool> written(cells, false);
  for (int b = 0; b < batch; b++)
    for (int which = 0; which < 2; which++)
      for (int g = 0; g < nkv; g++) {
        uint16_t s;
        kv8_ref(&(which ? v : kr)[(size_t)b * ld_kv + (size_t)g * hd], 1, hd, s, codes.data(), deq.data());
        const size_t cell = ((size_t)b * max_seq + pos[b]) * nkv + g;
        written[cell] = true;
        const auto& gc = which ? gvc : gkc;
        const uint16_t gs = (which ? gvs : gks)[cell];
        c.r.checked += 1 + hd;
        if (!same_half(gs, s)) c.bad(fmt("%s scale [b=%d, head %d] = 0x%04x, want 0x%04x", which ? "v" : "k", b, g, gs, s));
        for (int d = 0; d < hd; d++)
          if (gc[cell * hd + d] != codes[d]) {
            c.bad(fmt("%s code [b=%d, head %d, %d] = %d, want %d", which ? "v" : "k", b, g, d, gc[cell * hd + d], codes[d]));
            break;
          }
      }
  for (size_t cell = 0; cell < cells; cell++)
    if (!written[cell] && (gks[cell] != 0xFFFF || gvs[cell] != 0xFFFF || gkc[cell * hd] != (int8_t)-1)) {
      c.bad(fmt("cache cell %zu written outside pos[b]", cell));
      break;
    }
  return c.r;
}

struct Kv8DecodeShape {
  int batch, max_seq, nh, nkv, hd, window;
  std::vector<int> lens;
  L::ActKind quant = L::ActKind::F16;
  const char* kernel = nullptr;  // ODYSSEY_KV8_ATTN: null (the default choice), "mma", "simt", "general"
};

// attention_decode_kv8 against the fp64 reference on the dequantized cache (attention_tol); the
// fused o_proj input bit-exact from the kernel's own fp16 output, as test_decode checks it.
Result test_decode_kv8(const Kv8DecodeShape& p, uint64_t seed) {
  std::string lens;
  for (int l : p.lens) lens += (lens.empty() ? "" : ",") + std::to_string(l);
  const int group = p.nh / p.nkv;
  const std::string kn = p.kernel ? p.kernel : "";
  if (!kn.empty()) setenv("ODYSSEY_KV8_ATTN", kn.c_str(), 1);
  else unsetenv("ODYSSEY_KV8_ATTN");
  const std::string kernel = std::string("decode-kv8-") + L::attention_decode_kv8_kernel(p.batch, p.nh, p.nkv, p.hd);
  Check c(fmt("attention_decode_kv8 b=%d max_seq=%d heads=%d/%d hd=%d window=%d len=%s%s%s", p.batch, p.max_seq, p.nh,
              p.nkv, p.hd, p.window, lens.c_str(), kn.empty() ? "" : (" " + kn).c_str(),
              p.quant == L::ActKind::I8Static ? " +i8static" : p.quant == L::ActKind::I8PerToken ? " +i8token" : ""),
          kernel);
  Rng r(seed);
  const int width = p.nkv * p.hd, ld_q = p.nh * p.hd + 8, ld_out = p.nh * p.hd + 8;
  const size_t cells = (size_t)p.batch * p.max_seq * p.nkv;
  // Beyond len[b] the cache holds codes −1 and NaN scales: a read past the context would show.
  std::vector<int8_t> kc(cells * p.hd, -1), vc(cells * p.hd, -1);
  std::vector<uint16_t> ks(cells, kHalfNaN), vs(cells, kHalfNaN);
  std::vector<uint16_t> kd(cells * p.hd, kHalfNaN), vd(cells * p.hd, kHalfNaN);  // dequantized, for the reference
  for (int b = 0; b < p.batch; b++) {
    auto kx = kv8_inputs(r, p.lens[b], width, p.nkv, p.hd, 3.f, false), vx = kv8_inputs(r, p.lens[b], width, p.nkv, p.hd, 2.f, false);
    for (int t = 0; t < p.lens[b]; t++)
      for (int g = 0; g < p.nkv; g++) {
        const size_t cell = ((size_t)b * p.max_seq + t) * p.nkv + g;
        kv8_ref(&kx[(size_t)t * width + (size_t)g * p.hd], 1, p.hd, ks[cell], &kc[cell * p.hd], &kd[cell * p.hd]);
        kv8_ref(&vx[(size_t)t * width + (size_t)g * p.hd], 1, p.hd, vs[cell], &vc[cell * p.hd], &vd[cell * p.hd]);
      }
  }
  std::vector<uint16_t> q((size_t)p.batch * ld_q, kHalfNaN);
  for (int b = 0; b < p.batch; b++)
    for (int j = 0; j < p.nh * p.hd; j++) q[(size_t)b * ld_q + j] = f2h(r.uniform(-2.f, 2.f));
  std::vector<int32_t> len(p.lens.begin(), p.lens.end());
  auto dkc = upload(kc), dvc = upload(vc), dks = upload(ks), dvs = upload(vs), dq = upload(q);
  auto dl = upload(len);
  DeviceBuffer dout = poisoned((size_t)p.batch * ld_out * 2);
  const size_t wsb = L::attention_decode_kv8_workspace(p.batch, p.nh, p.hd, p.max_seq);
  DeviceBuffer ws = poisoned(wsb);
  const float scale = (float)(1.0 / std::sqrt((double)p.hd));
  const int cols = p.nh * p.hd, ldq8 = (cols + 127) / 128 * 128 + 3;
  DeviceBuffer dq8 = poisoned((size_t)p.batch * ldq8), dtok = poisoned((size_t)p.batch * 4);
  const float static_scale = 0.004f;
  auto dss = upload(std::vector<float>{static_scale});
  L::ActOut qo;
  qo.kind = p.quant;
  qo.ld = ldq8;
  qo.i8 = dq8.get<int8_t>();
  qo.static_scale = dss.get<float>();
  qo.token_scale = dtok.get<float>();
  c.cuda(L::attention_decode_kv8(dq.get<__half>(), ld_q, dkc.get<int8_t>(), dks.get<__half>(), dvc.get<int8_t>(),
                                 dvs.get<__half>(), dl.get<int32_t>(), dout.get<__half>(), ld_out, p.batch, p.max_seq,
                                 p.nh, p.nkv, p.hd, scale, p.window, ws.get(), wsb, 0,
                                 p.quant == L::ActKind::F16 ? nullptr : &qo),
         "attention_decode_kv8");
  c.cuda(cudaDeviceSynchronize(), "attention_decode_kv8 (sync)");
  unsetenv("ODYSSEY_KV8_ATTN");
  if (!c.r.passed) return c.r;
  auto out = download<uint16_t>(dout, (size_t)p.batch * ld_out);
  for (int b = 0; b < p.batch; b++) {
    const int Lb = p.lens[b], lo = p.window > 0 ? std::max(0, Lb - p.window) : 0;
    for (int h = 0; h < p.nh; h++) {
      const size_t base = (size_t)b * p.max_seq * width + (size_t)(h / group) * p.hd;
      AttnRef a = attention_ref(&q[(size_t)b * ld_q + (size_t)h * p.hd], &kd[base], &vd[base], width, lo, Lb, p.hd, scale);
      check_attn_row(c, &out[(size_t)b * ld_out + (size_t)h * p.hd], a, p.hd, "decode-kv8", b, h);
    }
    for (int j = p.nh * p.hd; j < ld_out; j++)
      if (out[(size_t)b * ld_out + j] != 0xFFFF) c.bad(fmt("out padding [%d,%d] written", b, j));
  }
  if (p.quant != L::ActKind::F16) {
    auto got = download<int8_t>(dq8, (size_t)p.batch * ldq8);
    auto tok = download<float>(dtok, (size_t)p.batch);
    for (int b = 0; b < p.batch; b++) {
      std::vector<float> y(cols);
      for (int j = 0; j < cols; j++) y[j] = h2f(out[(size_t)b * ld_out + j]);
      float sc = static_scale;
      if (p.quant == L::ActKind::I8PerToken) {
        sc = row_scale_ref(y.data(), cols);
        c.r.checked++;
        if (float_bits(tok[b]) != float_bits(sc)) c.bad(fmt("token scale [%d]: got %.9g, want %.9g", b, tok[b], sc));
      }
      for (int j = 0; j < ldq8; j++) {
        const int8_t want = j < cols ? quantize_ref(y[j], sc) : (int8_t)0;
        c.r.checked++;
        if (got[(size_t)b * ldq8 + j] != want) {
          c.bad(fmt("int8 [%d,%d]: got %d, want %d", b, j, got[(size_t)b * ldq8 + j], want));
          break;
        }
      }
    }
  }
  return c.r;
}

// Misuse of the kv8 launchers is refused before anything runs (cudaErrorInvalidValue).
Result test_kv8_refusals() {
  Check c("kv8 refusals (odd/too large head_dim, small workspace, missing cache pointers)", "refusal");
  DeviceBuffer buf = poisoned(1 << 20);
  __half* hp = buf.get<__half>();
  int8_t* ip = buf.get<int8_t>();
  int32_t* pp = buf.get<int32_t>();
  float* fp = buf.get<float>();
  auto expect = [&](const char* what, cudaError_t got) {
    c.r.checked++;
    if (got != cudaErrorInvalidValue) c.bad(fmt("%s: returned %s", what, cudaGetErrorName(got)));
  };
  expect("kv8_prefill head_dim 7", L::kv8_prefill(hp, hp, 64, nullptr, nullptr, nullptr, nullptr, pp, 1, 1, 8, 1, 7, 0));
  expect("kv8_prefill head_dim 258", L::kv8_prefill(hp, hp, 600, nullptr, nullptr, nullptr, nullptr, pp, 1, 1, 8, 1, 258, 0));
  expect("kv8_prefill ld < width", L::kv8_prefill(hp, hp, 63, nullptr, nullptr, nullptr, nullptr, pp, 1, 1, 8, 1, 64, 0));
  expect("kv8_prefill cache without scales", L::kv8_prefill(hp, hp, 64, ip, nullptr, ip, hp, pp, 1, 1, 8, 1, 64, 0));
  expect("rope_kv8_decode head_dim 258",
         L::rope_kv8_decode(hp, 600, hp, hp, 600, ip, hp, ip, hp, 1, 8, 1, 1, 258, pp, fp, 0));
  expect("rope_kv8_decode no v cache", L::rope_kv8_decode(hp, 64, hp, hp, 64, ip, hp, nullptr, hp, 1, 8, 1, 1, 64, pp, fp, 0));
  const size_t wsb = L::attention_decode_kv8_workspace(2, 4, 64, 100);
  expect("attention_decode_kv8 small workspace", L::attention_decode_kv8(hp, 256, ip, hp, ip, hp, pp, hp, 256, 2, 100, 4, 2, 64,
                                                                         0.125f, 0, buf.get(), wsb - 4, 0));
  expect("attention_decode_kv8 nh % nkv", L::attention_decode_kv8(hp, 256, ip, hp, ip, hp, pp, hp, 256, 2, 100, 4, 3, 64,
                                                                   0.125f, 0, buf.get(), wsb, 0));
  c.cuda(cudaDeviceSynchronize(), "kv8 refusals (sync)");
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// nll, argmax

Result test_nll_argmax(int rows, int vocab, int pad, uint64_t seed, std::vector<Result>& out) {
  Check c(fmt("nll rows=%d vocab=%d ld=%d", rows, vocab, vocab + pad), (vocab + pad) % 4 || vocab % 4 ? "nll-scalar" : "nll");
  Check ca(fmt("argmax rows=%d vocab=%d ld=%d", rows, vocab, vocab + pad), "argmax");
  Rng r(seed);
  const int ld = vocab + pad;
  std::vector<float> x((size_t)rows * ld, NAN);  // padding columns NaN
  std::vector<int32_t> target(rows), want_arg(rows);
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < vocab; j++) x[(size_t)i * ld + j] = r.uniform(-10.f, 10.f);
    if (vocab > 3) {  // a tie for the maximum: the first index must win
      int a = r.below(vocab / 2), b = vocab / 2 + r.below(vocab - vocab / 2);
      x[(size_t)i * ld + a] = x[(size_t)i * ld + b] = 30.f + i;
    }
    target[i] = i % 5 == 4 ? -1 : r.below(vocab);
    int best = 0;
    for (int j = 1; j < vocab; j++)
      if (x[(size_t)i * ld + j] > x[(size_t)i * ld + best]) best = j;
    want_arg[i] = best;
  }
  auto dx = upload(x);
  auto dt = upload(target);
  DeviceBuffer dn = poisoned((size_t)rows * 4), da = poisoned((size_t)rows * 4);
  c.cuda(L::nll(dx.get<float>(), ld, dt.get<int32_t>(), rows, vocab, dn.get<float>(), 0), "nll");
  ca.cuda(L::argmax(dx.get<float>(), ld, rows, vocab, da.get<int32_t>(), 0), "argmax");
  c.cuda(cudaDeviceSynchronize(), "nll/argmax (sync)");
  if (c.r.passed) {
    auto got = download<float>(dn, rows);
    for (int i = 0; i < rows; i++) {
      double want = 0;
      if (target[i] >= 0) {
        const float* xr = &x[(size_t)i * ld];
        double m = -INFINITY, s = 0;
        for (int j = 0; j < vocab; j++) m = std::max(m, (double)xr[j]);
        for (int j = 0; j < vocab; j++) s += std::exp((double)xr[j] - m);
        want = m + std::log(s) - xr[target[i]];
      }
      double tol = kNllAbs + std::ldexp(1.0, -23) * std::fabs(want);
      double err = std::fabs((double)got[i] - want);
      c.ratio(got[i] != got[i] ? INFINITY : err, tol);
      if (!(err <= tol)) c.bad(fmt("nll[%d] = %.9g, want %.9g", i, got[i], want));
    }
  }
  if (ca.r.passed) {
    auto got = download<int32_t>(da, rows);
    for (int i = 0; i < rows; i++) {
      ca.r.checked++;
      if (got[i] != want_arg[i]) ca.bad(fmt("argmax[%d] = %d, want %d", i, got[i], want_arg[i]));
    }
  }
  out.push_back(ca.r);
  return c.r;
}

// ---------------------------------------------------------------------------------------------
// Misuse is refused (cudaErrorInvalidValue) before anything runs; empty work is a no-op.

std::vector<Result> test_refusals() {
  std::vector<Result> out;
  DeviceBuffer buf = poisoned(1 << 20);
  __half* hp = buf.get<__half>();
  float* fp = buf.get<float>();
  int8_t* ip = buf.get<int8_t>();
  int32_t* pp = buf.get<int32_t>();
  auto expect = [&](const char* name, cudaError_t got, cudaError_t want) {
    Check c(std::string("refuse: ") + name, "refusal");
    c.r.checked = 1;
    if (got != want)
      c.bad(fmt("returned %s, want %s", cudaGetErrorName(got), cudaGetErrorName(want)));
    out.push_back(c.r);
  };
  L::ActOut f16;
  f16.kind = L::ActKind::F16;
  f16.ld = 64;
  f16.f16 = hp;
  L::ActOut st;
  st.kind = L::ActKind::I8Static;
  st.ld = 128;
  st.i8 = ip;  // no static_scale
  L::ActOut three[3] = {f16, f16, f16};
  const cudaError_t inval = cudaErrorInvalidValue;
  expect("add_rmsnorm with 3 outputs", L::add_rmsnorm(fp, nullptr, 0, fp, 1e-5f, 4, 64, three, 3, 0), inval);
  L::ActOut narrow = f16;
  narrow.ld = 32;
  expect("add_rmsnorm with ld < hidden", L::add_rmsnorm(fp, nullptr, 0, fp, 1e-5f, 4, 64, &narrow, 1, 0), inval);
  expect("add_rmsnorm static int8 without a scale", L::add_rmsnorm(fp, nullptr, 0, fp, 1e-5f, 4, 64, &st, 1, 0), inval);
  expect("add_rmsnorm ld_delta < hidden", L::add_rmsnorm(fp, hp, 32, fp, 1e-5f, 4, 64, &f16, 1, 0), inval);
  expect("rope odd head_dim", L::rope(hp, 64, hp, 64, 2, 1, 1, 7, pp, fp, 0), inval);
  expect("attention_prefill nh % nkv != 0", L::attention_prefill(hp, 512, hp, hp, 512, hp, 512, 1, 8, 6, 4, 64, 0.125f, 0, nullptr, 0, 0), inval);
  expect("attention_prefill head_dim 264", L::attention_prefill(hp, 528, hp, hp, 528, hp, 528, 1, 8, 2, 2, 264, 0.06f, 0, nullptr, 0, 0), inval);
  expect("attention_prefill ld_q < nh·hd", L::attention_prefill(hp, 100, hp, hp, 128, hp, 128, 1, 8, 2, 2, 64, 0.125f, 0, nullptr, 0, 0), inval);
  expect("attention_decode workspace too small",
         L::attention_decode(hp, 256, hp, hp, pp, hp, 256, 1, 64, 4, 2, 64, 0.125f, 0, fp,
                             L::attention_decode_workspace(1, 4, 64, 64) - 4, 0),
         inval);
  expect("attention_decode no workspace", L::attention_decode(hp, 256, hp, hp, pp, hp, 256, 1, 64, 4, 2, 64, 0.125f, 0, nullptr, 0, 0), inval);
  expect("swiglu ld_in < cols", L::swiglu(hp, hp, 32, 2, 64, f16, 0), inval);
  expect("quantize_rows to fp16", L::quantize_rows(hp, 64, 2, 64, f16, 0), inval);
  expect("quantize_rows static without a scale", L::quantize_rows(hp, 128, 2, 64, st, 0), inval);
  L::ActOut tok = st;
  tok.kind = L::ActKind::I8PerToken;
  tok.ld = 32;
  tok.token_scale = fp;
  expect("quantize_rows ld < cols", L::quantize_rows(hp, 64, 2, 64, tok, 0), inval);
  expect("quantize_rows ldx < cols", L::quantize_rows(hp, 16, 2, 32, tok, 0), inval);
  expect("nll ld < vocab", L::nll(fp, 10, pp, 2, 11, fp, 0), inval);
  expect("argmax vocab 0", L::argmax(fp, 10, 2, 0, pp, 0), inval);
  expect("kv_append ld_kv < nkv·hd", L::kv_append(hp, hp, 100, hp, hp, pp, 1, 1, 8, 2, 64, 0), inval);
  // Empty work: success, nothing written (the buffer keeps its poison).
  expect("embed rows 0", L::embed(pp, 0, hp, 64, fp, 0), cudaSuccess);
  expect("attention_prefill seq 0", L::attention_prefill(hp, 128, hp, hp, 128, hp, 128, 1, 0, 2, 2, 64, 0.125f, 0, nullptr, 0, 0), cudaSuccess);
  expect("attention_decode batch 0", L::attention_decode(hp, 256, hp, hp, pp, hp, 256, 0, 64, 4, 2, 64, 0.125f, 0, nullptr, 0, 0), cudaSuccess);
  expect("swiglu rows 0", L::swiglu(hp, hp, 128, 0, 64, f16, 0), cudaSuccess);
  expect("quantize_rows rows 0", L::quantize_rows(hp, 128, 0, 32, tok, 0), cudaSuccess);
  expect("nll rows 0", L::nll(fp, 10, pp, 0, 10, fp, 0), cudaSuccess);
  CK(cudaDeviceSynchronize());
  auto bytes = download<uint8_t>(buf, 1 << 20);
  Check c("refuse: nothing written by refused or empty calls", "refusal");
  c.r.checked = (long long)bytes.size();
  for (size_t i = 0; i < bytes.size(); i++)
    if (bytes[i] != 0xFF) {
      c.bad(fmt("byte %zu changed", i));
      break;
    }
  out.push_back(c.r);
  return out;
}

#if !defined(ODYSSEY_LAYERS_EMU)
// ---------------------------------------------------------------------------------------------
// fuse: the decode gate/up GEMV with SwiGLU and down_proj's int8 quantization in its epilogue
// (odyssey::w4a8_gemv_swiglu, gemv_mma.cu) against the path it replaces in the executor: the
// dispatch's W4A8 GEMV (ody_w4a8_gemm) over [gate; up] (one GEMM, up at column Np as the
// executor's fused site lays it out), then layers::swiglu into the int8 output. Tolerance:
// none — codes, padding columns and per-token scales must be byte-equal (both paths run the
// same int32 sums, epilogue_int, and act_math.cuh's silu/quantize/row_scale). The fused kernel
// runs twice on the same stream (the second launch needs the slots the first left zero) and
// both outputs are compared. Random packed weights (every byte is two valid 4-bit codes),
// int16 group scales in ±[1, 40], channel scales sized so y is O(1–10); `blowup` puts a huge
// channel scale on one gate column (an fp16 inf: per-token rows get a NaN scale and 0 codes).
struct FuseCase {
  int m, k, cols, group;  // group == k: per-channel
  bool out_per_token, in_per_token, bias;
  int strips;             // 0: the dispatch's
  bool blowup;
};

Result test_fuse(const FuseCase& f, uint64_t seed) {
  Check c(fmt("fuse gate_up+swiglu m=%d k=%d cols=%d group=%d out=%s in=%s%s strips=%d%s", f.m, f.k, f.cols, f.group,
              f.out_per_token ? "i8token" : "i8static", f.in_per_token ? "token" : "static", f.bias ? " bias" : "",
              f.strips, f.blowup ? " blowup" : ""),
          "gemv_swiglu");
  Rng r(seed);
  const int np = round_up(f.cols, 8), n2 = 2 * np, G = f.k / f.group, ld = round_up(f.cols, 128);
  std::vector<uint8_t> qw((size_t)n2 * f.k / 2);
  for (auto& b : qw) b = (uint8_t)r.next();
  std::vector<int16_t> gs((size_t)G * n2);
  for (auto& g : gs) g = (int16_t)((1 + r.below(40)) * (r.below(2) ? 1 : -1));
  std::vector<int8_t> x((size_t)f.m * f.k);
  for (auto& v : x) v = (int8_t)(r.below(255) - 127);
  // |acc| ~ sqrt(K)·73·8·16·20 / small: scale so that y ≈ O(1–10).
  const float target = 4.f / (std::sqrt((float)f.k) * 73.f * 4.6f * 16.f * 23.f);
  std::vector<float> cs(n2), bias(n2), xs(f.in_per_token ? f.m : 1);
  for (auto& v : cs) v = r.uniform(0.5f, 2.f) * target * 127.f;
  for (auto& v : bias) v = r.uniform(-1.f, 1.f);
  for (auto& v : xs) v = r.uniform(0.5f, 1.5f) / 127.f;
  if (f.blowup) cs[(size_t)std::min(5, f.cols - 1)] = 1e30f;
  auto dq = upload(qw);
  auto dgs = upload(gs);
  auto dx = upload(x);
  auto dcs = upload(cs);
  auto db = upload(bias);
  auto dxs = upload(xs);
  // Reference: GEMV into fp16 [m, n2], then swiglu.
  DeviceBuffer y = poisoned((size_t)f.m * n2 * 2);
  ody_w4a8_problem p{f.m, n2, f.k, f.group, f.in_per_token ? 1 : 0, ODY_SCALE_INT, -1, 0};
  ody_w4a8_args a{};
  a.x = dx.get<int8_t>();
  a.x_scale = dxs.get<float>();
  a.qweight = dq.get<uint8_t>();
  a.group_scale = dgs.get<int16_t>();
  a.channel_scale = dcs.get<float>();
  a.bias = f.bias ? db.get<float>() : nullptr;
  a.y = y.get<__half>();
  if (ody_w4a8_gemm(&p, &a, nullptr) != ODY_OK) {
    c.bad(std::string("ody_w4a8_gemm: ") + ody_last_error());
    return c.r;
  }
  const L::ActKind kind = f.out_per_token ? L::ActKind::I8PerToken : L::ActKind::I8Static;
  const float s_static = 0.037f;
  OutBuf ref = make_out(kind, ld, f.m, s_static);
  const __half* yg = y.get<__half>();
  c.cuda(L::swiglu(yg, yg + np, n2, f.m, f.cols, ref.act(), 0), "swiglu (reference)");
  c.cuda(cudaDeviceSynchronize(), "reference (sync)");
  if (!c.r.passed) return c.r;
  const auto want8 = download<uint8_t>(ref.data, (size_t)f.m * ld);
  const auto wantts = download<uint8_t>(ref.token_scale, (size_t)f.m * 4);
  // Fused, twice.
  DeviceBuffer y32 = poisoned((size_t)f.m * ld * 4), slots((size_t)(f.m + 1) * 4);
  slots.fill(0);
  for (int run = 0; run < 2; run++) {
    OutBuf got = make_out(kind, ld, f.m, s_static);
    odyssey::GemvSwigluArgs s{};
    s.x = dx.get<int8_t>();
    s.x_scale = dxs.get<float>();
    s.act_per_token = f.in_per_token ? 1 : 0;
    s.m = f.m;
    s.k = f.k;
    s.group_size = f.group;
    s.scale_ld = n2;
    const size_t up_strip_bytes = (size_t)(np / 8) * (f.k / 128) * 512;
    s.qweight_g = dq.get<uint8_t>();
    s.group_scale_g = dgs.get<int16_t>();
    s.channel_scale_g = dcs.get<float>();
    s.bias_g = f.bias ? db.get<float>() : nullptr;
    s.qweight_u = dq.get<uint8_t>() + up_strip_bytes;
    s.group_scale_u = dgs.get<int16_t>() + np;
    s.channel_scale_u = dcs.get<float>() + np;
    s.bias_u = f.bias ? db.get<float>() + np : nullptr;
    s.cols = f.cols;
    s.ld = ld;
    s.out = got.data.get<int8_t>();
    s.static_scale = f.out_per_token ? nullptr : got.static_scale.get<float>();
    s.token_scale = got.token_scale.get<float>();
    s.y32 = y32.get<float>();
    s.slots = slots.get<unsigned>();
    s.strips = f.strips;
    c.cuda(odyssey::w4a8_gemv_swiglu(s, 0), "w4a8_gemv_swiglu");
    c.cuda(cudaDeviceSynchronize(), "w4a8_gemv_swiglu (sync)");
    if (!c.r.passed) return c.r;
    const auto got8 = download<uint8_t>(got.data, (size_t)f.m * ld);
    for (size_t i = 0; i < got8.size(); i++) {
      c.r.checked++;
      if (got8[i] != want8[i]) {
        c.bad(fmt("run %d: code [%zu, %zu] = %d, unfused %d", run, i / ld, i % ld, (int8_t)got8[i], (int8_t)want8[i]));
        break;
      }
    }
    if (f.out_per_token) {
      const auto gotts = download<uint8_t>(got.token_scale, (size_t)f.m * 4);
      if (gotts != wantts) c.bad(fmt("run %d: per-token scales differ from the unfused path", run));
      const auto sl = download<uint32_t>(slots, (size_t)f.m + 1);
      for (uint32_t v : sl)
        if (v != 0) {
          c.bad(fmt("run %d: slots not left zero", run));
          break;
        }
    }
  }
  return c.r;
}
#endif  // !ODYSSEY_LAYERS_EMU

}  // namespace

int cmd_test_layers(const Args& args) {
  const bool quick = args.has("quick");
  // --only embed,norm,swiglu,rope,rows2,prefill,kv,decode,kv8,nll,refuse,fuse: run those families only.
  const std::string only = args.get("only");
  auto want = [&](const char* family) {
    if (only.empty()) return true;
    const std::string f = std::string(",") + only + ",";
    return f.find(std::string(",") + family + ",") != std::string::npos;
  };
  std::vector<Result> results;
  uint64_t seed = (uint64_t)args.get_int("seed", 1);
  auto add = [&](Result r) {
    std::fprintf(stderr, "%-96s %-26s %s%s%s\n", r.name.c_str(), r.kernel.c_str(), r.passed ? "ok" : "FAIL",
                 r.message.empty() ? "" : "  ", r.message.c_str());
    results.push_back(std::move(r));
  };
  const std::vector<int> row_set = quick ? std::vector<int>{0, 1, 17} : std::vector<int>{0, 1, 3, 17, 128, 1000};
  const std::vector<int> hidden_set = {64, 256, 384, 4096, 66};  // 66: the scalar path
  using K = L::ActKind;
  const std::vector<NormCfg> norm_cfgs = {
      {"delta f16", true, {K::F16}, false, false},
      {"delta i8token", true, {K::I8PerToken}, false, false},
      {"f16(padded)+i8static", false, {K::F16, K::I8Static}, true, false},
      {"i8token+i8static", true, {K::I8PerToken, K::I8Static}, false, false},
      {"residual only", true, {}, false, false},
      {"NaN row, i8token+f16", false, {K::I8PerToken, K::F16}, false, true},
  };
  for (int rows : row_set)
    for (int hidden : hidden_set) {
      seed += 10;  // each family keeps its seeds whatever --only selects
      if (want("embed")) add(test_embed(rows, hidden, seed));
      for (size_t i = 0; i < norm_cfgs.size(); i++)
        if (want("norm")) add(test_add_rmsnorm(rows, hidden, norm_cfgs[i], seed + 1 + i));
      for (K k : {K::F16, K::I8Static, K::I8PerToken})
        if (want("swiglu")) add(test_swiglu(rows, hidden, k, seed + 7 + (int)k));
    }
  if (want("swiglu")) add(test_swiglu(17, 11008, K::I8PerToken, seed++));  // LLaMA-2-7B's intermediate size
  for (auto [rows, cols] : std::vector<std::pair<int, int>>{{1, 4096}, {8, 4096}, {16, 4096}, {3, 5120}, {2, 8192}, {5, 260}})
    if (want("norm")) add(test_rows_vs_loop("norm", rows, cols, 7000 + (uint64_t)rows * 131 + cols));
  for (auto [rows, cols] : std::vector<std::pair<int, int>>{{1, 11008}, {8, 11008}, {16, 11008}, {3, 13824}, {2, 14336}, {5, 260}})
    if (want("swiglu")) add(test_rows_vs_loop("swiglu", rows, cols, 9000 + (uint64_t)rows * 131 + cols));
  for (int rows : {1, 3, 17, 128})
    for (int hd : {8, 64, 128})
      for (auto [nh, nkv] : std::vector<std::pair<int, int>>{{4, 2}, {32, 8}, {32, 32}}) {
        seed += 2;
        if (!want("rope")) continue;
        add(test_rope(rows, nh, nkv, hd, false, seed));
        if (rows == 3) add(test_rope(rows, nh, nkv, hd, true, seed + 1));
      }
  if (want("rope")) add(test_rope(5, 6, 2, 6, false, seed++));  // half = 3: the scalar path

  // rows2: the v2 prefill row kernels against v1 (bit for bit) at prefill sizes (`big` rows;
  // --quick: 260, still ≥ kV2MinRows, for the host emulator's sake) and at small and odd
  // shapes (forced), quantize_rows against its reference, and the default path (v2 from 256
  // rows) against the host references of norm, swiglu and rope at the 7B/13B shapes.
  if (want("rows2")) {
    const int big = quick ? 260 : 1024;
    uint64_t s2 = 20000;
    for (int hidden : {4096, 5120})
      for (const NormCfg& cfg : norm_cfgs) add(test_norm_v2(big, hidden, cfg, s2++));
    for (int rows : {1, 3, 17})
      for (int hidden : {960, 1024, 2052, 6144, 8192}) add(test_norm_v2(rows, hidden, norm_cfgs[5], s2++));
    for (int hidden : {4096, 8192}) add(test_norm_order(quick ? 16 : 64, hidden, s2++));  // n a power of 2: see there
    for (int cols : {11008, 13824})
      for (K k : {K::I8PerToken, K::I8Static, K::F16})
        for (bool pad : {false, true}) add(test_swiglu_v2(big, cols, k, pad, s2++));
    for (int rows : {1, 3, 17})
      for (int cols : {8, 264, 4104, 14336, 16384, 16392})
        for (K k : {K::I8PerToken, K::F16}) add(test_swiglu_v2(rows, cols, k, rows == 3, s2++));
    for (auto [nh, nkv] : std::vector<std::pair<int, int>>{{32, 32}, {32, 8}, {40, 40}}) add(test_rope_v2(big, nh, nkv, 128, s2++));
    for (int rows : {1, 3, 17}) {
      add(test_rope_v2(rows, 4, 2, 64, s2++));
      add(test_rope_v2(rows, 64, 8, 128, s2++));  // 576 items: 8 per thread
      add(test_rope_v2(rows, 8, 8, 16, s2++));    // one chunk per head
    }
    for (int cols : {4096, 5120})
      for (bool tok : {true, false}) add(test_quantize_rows(big, cols, tok, s2++));
    for (int rows : {1, 6, 17})
      for (int cols : {8, 4096, 8192, 4100}) add(test_quantize_rows(rows, cols, rows != 6, s2++));
    // The default path at prefill sizes against the host references (tolerances as above).
    add(test_add_rmsnorm(big, 4096, norm_cfgs[3], s2++));
    add(test_add_rmsnorm(big, 5120, norm_cfgs[5], s2++));
    add(test_swiglu(big, 11008, K::I8PerToken, s2++));
    add(test_swiglu(big, 13824, K::F16, s2++));
    add(test_swiglu(big, 11008, K::I8Static, s2++));
    add(test_rope(big, 32, 8, 128, false, s2++));
    add(test_rope(big, 40, 40, 128, false, s2++));
  }

  // Prefill: every head_dim × GQA shape × short sequence × window × batch, both flash tile
  // variants where the flash kernel applies; then the long sequences on the LLaMA shapes.
  const std::vector<std::pair<int, int>> heads = {{4, 2}, {6, 2}, {8, 4}, {32, 32}, {32, 8}};
  const std::vector<int> short_seqs = quick ? std::vector<int>{1, 7, 129} : std::vector<int>{1, 7, 64, 129};
  for (int hd : {8, 64, 128})
    for (auto [nh, nkv] : heads)
      for (int seq : short_seqs)
        for (int window : {0, 5})
          for (int batch : {1, 3}) {
            if (!want("prefill") || (quick && (nh == 32 || batch == 3) && seq > 7)) {
              seed++;
              continue;
            }
            PrefillShape p{batch, seq, nh, nkv, hd, window, (seq % 2) ? 3.f : 1.f, false};
            for (const char* variant : {"4", "8"}) {
              add(test_prefill(p, variant, seed));
              if (hd == 8) break;  // one kernel for head_dim 8
            }
            seed++;
          }
  std::vector<PrefillShape> long_shapes = {
      {1, 512, 8, 4, 64, 0, 2.f, false},   {1, 1024, 32, 32, 128, 0, 2.f, false}, {3, 512, 32, 8, 128, 0, 3.f, false},
      {1, 1024, 32, 8, 64, 5, 2.f, false}, {3, 512, 8, 4, 128, 5, 1.f, false},    {1, 1024, 8, 4, 128, 100, 2.f, false},
      {1, 512, 6, 2, 8, 0, 2.f, false},    {3, 129, 8, 4, 64, 0, 2.f, true},      {1, 200, 4, 2, 96, 7, 2.f, false},
      {2, 64, 4, 2, 128, 0, 2.f, true},
  };
  if (quick) long_shapes.resize(3);
  if (!want("prefill")) long_shapes.clear();
  for (auto& p : long_shapes) {
    for (const char* variant : {"4", "8"}) {
      add(test_prefill(p, variant, seed));
      if (p.odd_stride || (p.hd != 64 && p.hd != 128)) break;
    }
    seed++;
  }
  unsetenv("ODYSSEY_PREFILL_WARPS");

  if (want("kv")) {
    add(test_kv_append(3, 7, 64, 2, 64, false, seed++));
    add(test_kv_append(1, 1, 1100, 32, 128, false, seed++));
    add(test_kv_append(2, 5, 16, 3, 6, false, seed++));  // width 18: scalar
    add(test_kv_append(2, 3, 20, 4, 64, true, seed++));
    add(test_kv_append(0, 3, 20, 4, 64, false, seed++));  // batch 0
  }

  for (int hd : want("decode") ? std::vector<int>{8, 64, 128} : std::vector<int>{})
    for (auto [nh, nkv] : heads)
      for (int window : {0, 5}) {
        add(test_decode({1, 1100, nh, nkv, hd, window, {1000}, false}, seed++));
        add(test_decode({3, 300, nh, nkv, hd, window, {1, 7, 300}, hd == 64}, seed++));
      }
  if (want("kv") || want("rope")) {
    add(test_rope_kv(1, 1100, 32, 32, 128, false, seed++));
    add(test_rope_kv(16, 300, 32, 8, 128, false, seed++));
    add(test_rope_kv(3, 64, 8, 4, 64, true, seed++));
    add(test_rope_kv(2, 40, 6, 2, 6, false, seed++));  // half = 3: scalar
    add(test_rope_kv(0, 40, 6, 2, 64, false, seed++));  // batch 0
  }
  if (want("decode")) {
    // Both split kernels on the LLaMA shapes, batch 1–16, context up to 4096, GQA and MHA,
    // and the combine's fused int8 outputs.
    for (bool general : {false, true}) {
      add(test_decode({1, 1100, 32, 32, 128, 0, {1025}, false, L::ActKind::F16, general}, seed++));
      add(test_decode({16, 1024, 32, 8, 128, 0, {1024, 1, 2, 33, 64, 65, 500, 1023, 1000, 999, 7, 31, 32, 100, 900, 1024},
                       false, L::ActKind::F16, general}, seed++));
      add(test_decode({4, 600, 32, 4, 64, 0, {600, 129, 1, 64}, false, L::ActKind::F16, general}, seed++));
      add(test_decode({2, 700, 16, 8, 128, 17, {700, 18}, false, L::ActKind::F16, general}, seed++));
    }
    for (auto k : {L::ActKind::I8Static, L::ActKind::I8PerToken})
      for (bool general : {false, true}) {
        add(test_decode({1, 1100, 32, 32, 128, 0, {1000}, false, k, general}, seed++));
        add(test_decode({3, 300, 8, 4, 64, 0, {1, 7, 300}, false, k, general}, seed++));
        add(test_decode({2, 100, 12, 4, 96, 3, {100, 64}, true, k, general}, seed++));
      }
    // GQA at small batch: the default splits a kv head's query heads over two blocks
    // (decode_fast_heads); "whole" is the former one block per group, "2"/"1" forced heads per
    // block, with the fused int8 outputs too. Groups 4 (32/8) and 8 (32/4, 16/2).
    for (const char* gqa : {(const char*)nullptr, "whole", "2", "1"}) {
      add(test_decode({1, 1024, 32, 8, 128, 0, {1024}, false, L::ActKind::F16, false, gqa}, seed++));
      add(test_decode({1, 4096, 32, 8, 128, 0, {4096}, false, L::ActKind::I8PerToken, false, gqa}, seed++));
      add(test_decode({1, 1024, 32, 4, 128, 0, {1000}, false, L::ActKind::F16, false, gqa}, seed++));
      add(test_decode({1, 4096, 32, 4, 128, 0, {4000}, false, L::ActKind::I8PerToken, false, gqa}, seed++));
      add(test_decode({2, 700, 16, 2, 128, 17, {700, 33}, false, L::ActKind::I8Static, false, gqa}, seed++));
      add(test_decode({2, 300, 16, 2, 64, 0, {1, 299}, true, L::ActKind::I8PerToken, false, gqa}, seed++));
    }
    // The fused kernel (the default) against the host reference, and the split pair it replaced
    // (ODYSSEY_DECODE_ATTN=split) on the same shapes and data (same seeds) in the same run: MHA
    // 32/32 (LLaMA-2) and GQA 32/8 (LLaMA-3, Mistral), batch 1, 2, 8, contexts 1, 63, 64, 65,
    // 1024, 1100, 4096 (len = max_seq, and len < max_seq), len 0, sliding windows (Mistral's is
    // 4096; 100 and 1000 here so that whole splits fall before the window), head_dim 128 and 64,
    // fp16 / int8 static / int8 per-token outputs. Then the fused kernel's forced variants: keys
    // per split (ODYSSEY_DECODE_CHUNK) and query heads per block (ODYSSEY_DECODE_GQA).
    using K = L::ActKind;
    const std::vector<std::pair<int, int>> fused_heads = {{32, 32}, {32, 8}};
    const uint64_t fused_seed = seed;
    for (bool split : {false, true}) {
      uint64_t sd = fused_seed;
      for (auto [nh, nkv] : fused_heads) {
        for (int ctx : {1, 63, 64, 65, 1024, 1100, 4096}) {
          if (quick && nh == nkv && ctx == 4096) continue;
          add(test_decode({1, ctx, nh, nkv, 128, 0, {ctx}, false, ctx >= 1024 ? K::I8PerToken : K::F16, false, nullptr, split},
                          sd++));
        }
        add(test_decode({1, 4096, nh, nkv, 128, 0, {1100}, false, K::I8Static, false, nullptr, split}, sd++));
        add(test_decode({1, 1100, nh, nkv, 128, 0, {0}, false, K::I8PerToken, false, nullptr, split}, sd++));
        add(test_decode({2, 1100, nh, nkv, 128, 0, {65, 1100}, false, K::I8PerToken, false, nullptr, split}, sd++));
        add(test_decode({2, 1100, nh, nkv, 128, 100, {1100, 64}, false, K::F16, false, nullptr, split}, sd++));
        add(test_decode({2, 1024, nh, nkv, 64, 0, {1024, 63}, true, K::I8PerToken, false, nullptr, split}, sd++));
        add(test_decode({8, quick ? 1100 : 4096, nh, nkv, 128, 0, {1, 63, 64, 65, 1024, 1100, quick ? 1100 : 4096, 0}, false,
                         K::I8PerToken, false, nullptr, split},
                        sd++));
        add(test_decode({8, 1100, nh, nkv, 128, 1000, {1100, 1000, 1001, 999, 65, 1, 1024, 0}, false, K::I8Static, false,
                         nullptr, split},
                        sd++));
        add(test_decode({8, 1100, nh, nkv, 64, 31, {1100, 32, 31, 30, 65, 1, 1024, 500}, false, K::F16, false, nullptr, split},
                        sd++));
      }
    }
    seed += 100;
    for (int chunk : {1, 32, 64, 100, 256}) {
      add(test_decode({2, 1100, 32, 8, 128, 0, {1100, 65}, false, K::I8PerToken, false, nullptr, false, chunk}, seed++));
      add(test_decode({1, 1100, 32, 32, 64, 50, {1000}, false, K::I8Static, false, nullptr, false, chunk}, seed++));
    }
    // The most splits the fused merge holds (kFuseSplitsMax = 256: 8192 keys in chunks of 32),
    // and just under it with a chunk that is not a multiple of the block step (8200 → 33 keys).
    add(test_decode({1, 8192, 8, 8, 128, 0, {8191}, false, K::I8PerToken, false, nullptr, false, 32}, seed++));
    add(test_decode({2, 8200, 8, 2, 128, 0, {8200, 4000}, false, K::F16, false, nullptr, false, 32}, seed++));
    for (const char* gqa : {"4", "2", "1"}) {
      add(test_decode({2, 1100, 32, 8, 128, 0, {1100, 65}, false, K::I8PerToken, false, gqa}, seed++));
      add(test_decode({2, 1024, 32, 4, 64, 20, {1024, 7}, false, K::I8PerToken, false, gqa}, seed++));
    }
    if (!quick) add(test_decode({16, 4096, 32, 32, 128, 0, std::vector<int>(16, 4096), false}, seed++));
    add(test_decode({1, 4096, 32, 32, 128, 0, {4096}, false}, seed++));
    add(test_decode({2, 1024, 32, 8, 128, 0, {1024, 129}, false}, seed++));
    add(test_decode({2, 100, 12, 4, 96, 3, {100, 64}, false}, seed++));
    add(test_decode({1, 64, 4, 1, 6, 0, {63}, false}, seed++));  // head_dim 6: scalar copies
  }

  if (want("kv8")) {
    // Quantization (bit-exact): prefill fake quantization with and without the cache append,
    // head dims 8 / 64 / 128 / 6 (stories260K has 8), odd strides, batch 0; the decode step's
    // fused rope + append.
    add(test_kv8_prefill(3, 7, 64, 2, 64, true, false, seed++));
    add(test_kv8_prefill(1, 129, 300, 32, 128, true, false, seed++));
    add(test_kv8_prefill(2, 33, 40, 4, 8, true, true, seed++));
    add(test_kv8_prefill(4, 17, 17, 8, 128, false, false, seed++));
    add(test_kv8_prefill(2, 5, 16, 3, 6, true, true, seed++));
    add(test_kv8_prefill(0, 3, 20, 4, 64, true, false, seed++));
    add(test_rope_kv8(1, 1100, 32, 32, 128, false, seed++));
    add(test_rope_kv8(16, 300, 32, 8, 128, false, seed++));
    add(test_rope_kv8(3, 64, 8, 4, 64, true, seed++));
    add(test_rope_kv8(2, 40, 6, 2, 6, false, seed++));
    add(test_rope_kv8(5, 40, 8, 4, 8, false, seed++));
    add(test_rope_kv8(0, 40, 6, 2, 64, false, seed++));
    // Decode attention over the int8 cache: the default choice and each of the three kernels
    // forced (tensor-core, SIMT, general), MHA and GQA (groups 2, 4, 8; 7 and 3: Qwen2's 28/4 and
    // 12/4, the tensor-core kernel's own), batch 1–16, windows, the fused o_proj int8 input, head
    // dims 8 and 96 (general only).
    for (const char* kernel : {(const char*)nullptr, "mma", "simt", "general"}) {
      add(test_decode_kv8({1, 1100, 32, 32, 128, 0, {1025}, L::ActKind::F16, kernel}, seed++));
      add(test_decode_kv8({16, 1024, 32, 8, 128, 0, {1024, 1, 2, 33, 64, 65, 500, 1023, 1000, 999, 7, 31, 32, 100, 900, 1024},
                           L::ActKind::F16, kernel}, seed++));
      add(test_decode_kv8({4, 600, 32, 4, 64, 0, {600, 129, 1, 64}, L::ActKind::F16, kernel}, seed++));
      add(test_decode_kv8({2, 700, 16, 8, 128, 17, {700, 18}, L::ActKind::F16, kernel}, seed++));
      add(test_decode_kv8({2, 300, 16, 2, 64, 5, {1, 299}, L::ActKind::I8PerToken, kernel}, seed++));
      add(test_decode_kv8({3, 300, 8, 4, 64, 0, {1, 7, 300}, L::ActKind::I8Static, kernel}, seed++));
      add(test_decode_kv8({1, 4096, 32, 8, 128, 0, {4096}, L::ActKind::I8PerToken, kernel}, seed++));
    }
    add(test_decode_kv8({3, 200, 8, 4, 8, 0, {200, 1, 77}, L::ActKind::F16}, seed++));
    add(test_decode_kv8({2, 100, 12, 4, 96, 3, {100, 64}, L::ActKind::I8PerToken}, seed++));
    add(test_decode_kv8({8, 1024, 32, 32, 128, 0, std::vector<int>(8, 1024), L::ActKind::F16}, seed++));
    add(test_decode_kv8({3, 1200, 28, 4, 128, 0, {1200, 17, 640}, L::ActKind::I8PerToken}, seed++));
    add(test_decode_kv8({2, 333, 12, 4, 64, 0, {333, 48}, L::ActKind::F16}, seed++));
    add(test_decode_kv8({2, 500, 12, 4, 128, 100, {500, 101}, L::ActKind::I8Static}, seed++));
    // ODYSSEY_KV8_NB=1: the tensor-core kernel at 16 keys per warp iteration.
    setenv("ODYSSEY_KV8_NB", "1", 1);
    add(test_decode_kv8({16, 1024, 32, 8, 128, 0, {1024, 1, 2, 33, 64, 65, 500, 1023, 1000, 999, 7, 31, 32, 100, 900, 1024},
                         L::ActKind::F16}, seed++));
    add(test_decode_kv8({4, 600, 28, 4, 64, 0, {600, 129, 1, 64}, L::ActKind::I8PerToken}, seed++));
    // ODYSSEY_KV8_PF=0: without the next iteration's prefetch (at 16 and 32 keys).
    setenv("ODYSSEY_KV8_PF", "0", 1);
    add(test_decode_kv8({3, 1200, 28, 4, 128, 0, {1200, 17, 640}, L::ActKind::I8PerToken}, seed++));
    unsetenv("ODYSSEY_KV8_NB");
    add(test_decode_kv8({2, 700, 16, 8, 128, 17, {700, 18}, L::ActKind::F16}, seed++));
    unsetenv("ODYSSEY_KV8_PF");
    unsetenv("ODYSSEY_KV8_NB");
    add(test_kv8_refusals());
  }

  for (int rows : want("nll") ? std::vector<int>{1, 3, 17, 70} : std::vector<int>{})  // 70: argmax's 256-thread path
    for (int vocab : {7, 1000, 32000, 32003})
      for (int pad : {0, 5}) {
        std::vector<Result> extra;
        add(test_nll_argmax(rows, vocab, pad, seed++, extra));
        for (auto& e : extra) add(e);
      }
  if (want("place")) {  // 7B down_proj at TP 8, rank 1 (1376 columns at offset 96), and small odd cases
    add(test_place_columns(3, 1376, 96, 1, seed++));
    add(test_place_columns(2, 192, 64, 2, seed++));
    add(test_place_columns(5, 43, 85, 1, seed++));
    add(test_place_columns(1, 100, 0, 2, seed++));
  }
  if (want("refuse"))
    for (auto& r : test_refusals()) add(r);
#if !defined(ODYSSEY_LAYERS_EMU)
  if (want("fuse")) {
    // The 7B decode shape (4096 → 2×11008) at every decode batch of the fused path, both output
    // forms, both input forms; then groups 32/64/per-channel, bias, forced strips 2/4/8, a long
    // K (chunked staging of x at M = 8), odd widths (cols % 8, % 4 ≠ 0), and a non-finite row.
    for (int m : quick ? std::vector<int>{1, 8} : std::vector<int>{1, 2, 3, 4, 8})
      for (bool tok : {true, false}) add(test_fuse({m, 4096, 11008, 128, tok, !tok, false, 0, false}, seed++));
    for (int g : {32, 64, 512})
      for (bool tok : {true, false}) add(test_fuse({3, 512, 1000, g, tok, true, g == 64, 0, false}, seed++));
    for (int st : {2, 4, 8})
      for (bool tok : {true, false}) add(test_fuse({5, 1024, 2064, 128, tok, false, true, st, false}, seed++));
    if (!quick) add(test_fuse({8, 14336, 4096, 128, true, true, false, 0, false}, seed++));  // x staged in chunks
    add(test_fuse({2, 256, 100, 128, true, false, false, 0, false}, seed++));    // cols % 8 ≠ 0
    add(test_fuse({2, 256, 98, 64, false, true, true, 2, false}, seed++));       // cols % 4 ≠ 0
    add(test_fuse({4, 4096, 11008, 128, true, true, false, 0, true}, seed++));   // a non-finite value
    add(test_fuse({1, 4096, 11008, 128, false, true, false, 0, true}, seed++));
  }
#endif
  CK(cudaGetLastError());

  return report_cases("test layers", results, [](JsonWriter& w, const auto& r) {
    w.field("name", r.name);
    w.field("kernel", r.kernel);
    w.field("passed", r.passed);
    w.field("checked", r.checked);
    w.field("worst_err_over_tol", r.worst);
    w.field("code_flips", r.flips);
    w.field("fp16_ulp_diffs", r.ulp_diffs);
    w.field("message", r.message);
  });
}

}  // namespace odyssey
