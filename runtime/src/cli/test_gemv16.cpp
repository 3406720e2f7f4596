// test_gemv16.cpp: `odyssey-rt test gemv16 [--quick] [--seed N]`, the FP16 GEMV (gemv_f16.cu)
// against a float64 host reference, with cuBLAS FP16 checked against the same bound.
//
// Cases are generated here (no Go reference is needed: the reference is the exact dot product,
// y_ref = Σ_k x·w (+ bias) summed in float64, whose own error K·2⁻⁵³·Σ|x·w| is negligible next to
// the bound): M = 1..8, odd N, K = 1, 13, 172 (not multiples of 8: the element-wise path), K not a
// multiple of 32 or of the warps' K split, strided x (ldx > K), x and W misaligned by one element
// (2-byte aligned only: the element-wise path), fp16 bias, fp32 output (the lm_head), and the
// shapes of a LLaMA-7B layer and lm_head (without --quick). Values: x in ±4 with zeros, W in ±0.5
// with a few ±8 outliers, one x row of ±1 by the sign of W row 0 (no cancellation: |y| = Σ|x·w|).
//
// Bound (per output): |y − y_ref| ≤ (K/16 + 8 + 4)·2⁻²²·Σ_k|x·w| + one ulp of the output type at
// |y_ref|. Why: every product x·w is exact in fp32; the kernel adds them in fp32 on the tensor cores,
// one m16n8k16 per 16 of K per lane (K/16 additions in any chain), whose internal additions are not
// guaranteed to round to nearest, so each is charged 2⁻²² (4 fp32 ulps) of the magnitude sum, as
// the W4A16 test does (docs/gemm-cases.md); then 7 fp32 additions of the 8 warps' partials, the
// bias and the output rounding (the "+ 8 + 4" and the ulp). cuBLAS accumulates in some other
// order in fp32 and must meet the same bound (its row is a check of the bound, not of our kernel).
// Also: every output poisoned (0xFF) before each launch, a guard after y that must stay poisoned,
// two launches bit-identical, a negative control (one weight of the last K element changed must be
// caught, on exactly that output column), and can_implement's refusals.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"
#include "json.hpp"
#include "report.hpp"

namespace odyssey {
namespace {

struct Result {
  std::string name, kernel, message;
  bool passed = true;
  long long checked = 0;
  double worst_err_over_tol = 0;
  long long max_ulp_vs_cublas = 0;
};

struct Spec {
  int m, n, k, ldx;
  int x_off, w_off;  // elements: a misaligned (2-byte aligned) x or W
  bool bias, f32;
  const char* note;
};

uint16_t to_half(float v) {
  const __half_raw r = static_cast<__half_raw>(__float2half_rn(v));
  return r.x;
}

// Ordered integer of an fp16 / fp32 bit pattern, so that |a − b| counts ulps across zero.
long long ordered16(uint16_t h) { return (h & 0x8000) ? -(long long)(h & 0x7FFF) : (long long)h; }
long long ordered32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u & 0x80000000u) ? -(long long)(u & 0x7FFFFFFFu) : (long long)u;
}

double ulp_at(double v, bool f32) {
  const double a = std::fabs(v);
  if (f32) return std::ldexp(1.0, std::max(-149, (int)std::floor(std::log2(std::max(a, 1e-38))) - 23));
  return std::ldexp(1.0, std::max(-24, (int)std::floor(std::log2(std::max(a, 6.1e-5))) - 10));
}

struct Host {
  std::vector<uint16_t> x, w, bias;  // x [m, ldx] (+x_off in front), w [n, k] (+w_off), bias [n]
  std::vector<double> ref, abs;      // [m, n]
};

Host make(const Spec& s, std::mt19937_64& r) {
  Host h;
  std::uniform_real_distribution<float> ux(-4.f, 4.f), uw(-0.5f, 0.5f);
  h.x.assign((size_t)s.x_off + (size_t)s.m * s.ldx, to_half(1e4f));  // padding: large, must be unused
  h.w.assign((size_t)s.w_off + (size_t)s.n * s.k, 0);
  for (size_t i = 0; i < (size_t)s.n * s.k; i++) {
    const uint64_t u = r() % 100;
    h.w[s.w_off + i] = to_half(u < 2 ? (u ? 8.f : -8.f) : u < 7 ? 0.f : uw(r));
  }
  for (int m = 0; m < s.m; m++)
    for (int k = 0; k < s.k; k++) {
      float v;
      if (m == s.m - 1 && s.m > 1) {  // the sign of W row 0: no cancellation on column 0
        const float w0 = half_bits_to_float(h.w[s.w_off + k]);
        v = w0 > 0 ? 1.f : w0 < 0 ? -1.f : 0.f;
      } else {
        v = r() % 10 == 0 ? 0.f : ux(r);
      }
      if (m == 0 && k == s.k - 1 && !(s.m > 1 && m == s.m - 1)) v = 1.f;  // the negative control's probe
      h.x[s.x_off + (size_t)m * s.ldx + k] = to_half(v);
    }
  if (s.bias) {
    h.bias.resize(s.n);
    for (auto& b : h.bias) b = to_half(ux(r));
  }
  h.ref.assign((size_t)s.m * s.n, 0);
  h.abs.assign((size_t)s.m * s.n, 0);
  std::vector<double> xd((size_t)s.k), wd((size_t)s.k);
  for (int n = 0; n < s.n; n++) {
    for (int k = 0; k < s.k; k++) wd[k] = half_bits_to_float(h.w[s.w_off + (size_t)n * s.k + k]);
    for (int m = 0; m < s.m; m++) {
      double acc = 0, a = 0;
      for (int k = 0; k < s.k; k++) {
        const double p = (double)half_bits_to_float(h.x[s.x_off + (size_t)m * s.ldx + k]) * wd[k];
        acc += p;
        a += std::fabs(p);
      }
      if (s.bias) acc += half_bits_to_float(h.bias[n]);
      h.ref[(size_t)m * s.n + n] = acc;
      h.abs[(size_t)m * s.n + n] = a;
    }
  }
  return h;
}

// Compares y (device, [m, n] of fp16 or fp32) with the reference; fills r. bad_cols: columns
// (n) with at least one failing output.
void compare(const Spec& s, const Host& h, const std::vector<uint8_t>& y, Result& r, std::vector<int>* bad_cols) {
  long long bad = 0;
  for (int m = 0; m < s.m; m++)
    for (int n = 0; n < s.n; n++) {
      const size_t i = (size_t)m * s.n + n;
      double got;
      if (s.f32) {
        float f;
        std::memcpy(&f, &y[i * 4], 4);
        got = f;
      } else {
        uint16_t b;
        std::memcpy(&b, &y[i * 2], 2);
        got = half_bits_to_float(b);
      }
      const double tol = (s.k / 16.0 + 8 + 4) * std::ldexp(1.0, -22) * h.abs[i] + ulp_at(h.ref[i], s.f32);
      const double err = std::fabs(got - h.ref[i]);
      r.checked++;
      if (!(err <= tol)) {  // NaN fails too
        bad++;
        if (bad_cols && (bad_cols->empty() || bad_cols->back() != n)) bad_cols->push_back(n);
      }
      r.worst_err_over_tol = std::max(r.worst_err_over_tol, std::isfinite(err) ? err / tol : 1e30);
    }
  if (bad) {
    r.passed = false;
    r.message += std::to_string(bad) + " outputs beyond the bound; ";
  }
}

struct Device {
  DeviceBuffer x, w, bias, y;
  size_t y_bytes = 0, guard = 256;
};

std::vector<uint8_t> run_ours(const Spec& s, Device& d, Result& r) {
  ody_f16_gemv_problem p{s.m, s.n, s.k, s.ldx, s.f32 ? 1 : 0};
  ody_f16_gemv_args a{};
  a.x = d.x.get<uint16_t>() + s.x_off;
  a.w = d.w.get<uint16_t>() + s.w_off;
  a.bias = s.bias ? d.bias.get() : nullptr;
  a.y = d.y.get();
  std::vector<uint8_t> first;
  for (int rep = 0; rep < 2; rep++) {
    d.y.fill(0xFF);
    ody_check(ody_f16_gemv(&p, &a, nullptr), "ody_f16_gemv");
    CK(cudaDeviceSynchronize());
    std::vector<uint8_t> all(d.y_bytes + d.guard);
    d.y.download(all.data(), all.size());
    for (size_t i = d.y_bytes; i < all.size(); i++)
      if (all[i] != 0xFF) {
        r.passed = false;
        r.message += "wrote past y; ";
        break;
      }
    all.resize(d.y_bytes);
    if (rep == 0)
      first = all;
    else if (all != first) {
      r.passed = false;
      r.message += "two launches differ; ";
    }
  }
  r.kernel = std::string("f16_gemv/") + (ody_f16_gemv_vector_path(&p, &a) ? "vec16" : "elementwise");
  return first;
}

std::vector<uint8_t> run_cublas(cublasHandle_t blas, const Spec& s, const Host& h, Device& d) {
  // Row-major y[m, n] = x[m, k]·W[n, k]ᵀ is column-major yᵀ = W·xᵀ; bias as C with beta = 1.
  std::vector<uint8_t> c(d.y_bytes, 0);
  if (s.bias)
    for (int m = 0; m < s.m; m++)
      for (int n = 0; n < s.n; n++) {
        const size_t i = (size_t)m * s.n + n;
        if (s.f32) {
          const float f = half_bits_to_float(h.bias[n]);
          std::memcpy(&c[i * 4], &f, 4);
        } else {
          std::memcpy(&c[i * 2], &h.bias[n], 2);
        }
      }
  d.y.upload(c.data(), c.size());
  const float alpha = 1.f, beta = s.bias ? 1.f : 0.f;
  cublasStatus_t st = cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, s.n, s.m, s.k, &alpha, d.w.get<uint16_t>() + s.w_off,
                                   CUDA_R_16F, s.k, d.x.get<uint16_t>() + s.x_off, CUDA_R_16F, s.ldx, &beta, d.y.get(),
                                   s.f32 ? CUDA_R_32F : CUDA_R_16F, s.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasGemmEx: status " + std::to_string((int)st));
  CK(cudaDeviceSynchronize());
  std::vector<uint8_t> y(d.y_bytes);
  d.y.download(y.data(), y.size());
  return y;
}

long long max_ulp(const Spec& s, const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  long long worst = 0;
  for (size_t i = 0; i < (size_t)s.m * s.n; i++) {
    long long d;
    if (s.f32) {
      float fa, fb;
      std::memcpy(&fa, &a[i * 4], 4);
      std::memcpy(&fb, &b[i * 4], 4);
      d = std::llabs(ordered32(fa) - ordered32(fb));
    } else {
      uint16_t ha, hb;
      std::memcpy(&ha, &a[i * 2], 2);
      std::memcpy(&hb, &b[i * 2], 2);
      d = std::llabs(ordered16(ha) - ordered16(hb));
    }
    worst = std::max(worst, d);
  }
  return worst;
}

std::string spec_name(const Spec& s) {
  char b[160];
  std::snprintf(b, sizeof b, "m%d_n%d_k%d%s%s%s%s%s", s.m, s.n, s.k, s.ldx != s.k ? ("_ldx" + std::to_string(s.ldx)).c_str() : "",
                s.x_off ? "_xmisaligned" : "", s.w_off ? "_wmisaligned" : "", s.bias ? "_bias" : "", s.f32 ? "_f32" : "");
  return b;
}

std::vector<Result> run_spec(cublasHandle_t blas, const Spec& s, std::mt19937_64& rng, bool negative_control) {
  Host h = make(s, rng);
  Device d;
  d.y_bytes = (size_t)s.m * s.n * (s.f32 ? 4 : 2);
  d.x = DeviceBuffer(h.x.size() * 2);
  d.w = DeviceBuffer(h.w.size() * 2);
  d.bias = DeviceBuffer(std::max<size_t>(2, h.bias.size() * 2));
  d.y = DeviceBuffer(d.y_bytes + d.guard);
  d.x.upload(h.x.data(), h.x.size() * 2);
  d.w.upload(h.w.data(), h.w.size() * 2);
  if (s.bias) d.bias.upload(h.bias.data(), h.bias.size() * 2);
  const std::string name = spec_name(s);
  std::vector<Result> out;

  Result ours;
  ours.name = name;
  std::vector<uint8_t> y = run_ours(s, d, ours);
  compare(s, h, y, ours, nullptr);

  Result cb;
  cb.name = name;
  cb.kernel = "cublas_fp16 (the bound's check)";
  std::vector<uint8_t> yc = run_cublas(blas, s, h, d);
  compare(s, h, yc, cb, nullptr);
  ours.max_ulp_vs_cublas = cb.max_ulp_vs_cublas = max_ulp(s, y, yc);
  out.push_back(ours);
  out.push_back(cb);

  if (negative_control) {
    // One weight at the last K element of column n0 changed by 64 (x[0][K-1] = 1, so y[0][n0]
    // moves by 64, far beyond the bound): the check must fail there and only there.
    Result nc;
    nc.name = name;
    nc.kernel = "negative control (W[n0][K-1] changed)";
    const int n0 = s.n / 2;
    const size_t wi = s.w_off + (size_t)n0 * s.k + (s.k - 1);
    const uint16_t bumped = to_half(half_bits_to_float(h.w[wi]) + 64.f);
    d.w.upload(h.w.data(), h.w.size() * 2);
    CK(cudaMemcpy(d.w.get<uint16_t>() + wi, &bumped, 2, cudaMemcpyHostToDevice));
    Result tmp;
    std::vector<uint8_t> yb = run_ours(s, d, tmp);
    std::vector<int> bad_cols;
    Result probe;
    compare(s, h, yb, probe, &bad_cols);
    std::sort(bad_cols.begin(), bad_cols.end());
    bad_cols.erase(std::unique(bad_cols.begin(), bad_cols.end()), bad_cols.end());
    if (!(bad_cols.size() == 1 && bad_cols[0] == n0)) {
      nc.passed = false;
      nc.message = "the changed weight was not caught on exactly column " + std::to_string(n0) + " (" +
                   std::to_string(bad_cols.size()) + " columns flagged)";
    } else {
      nc.message = "caught on column " + std::to_string(n0);
    }
    nc.checked = probe.checked;
    out.push_back(nc);
  }
  return out;
}

std::vector<Result> refusals() {
  std::vector<Result> out;
  DeviceBuffer buf(1 << 16);
  struct Want {
    const char* what;
    ody_f16_gemv_problem p;
    size_t x_byte_off, y_byte_off;
    bool null_w;
    ody_status status;
  } wants[] = {
      {"M = 9", {9, 64, 64, 64, 0}, 0, 0, false, ODY_ERR_UNSUPPORTED},
      {"M = 0", {0, 64, 64, 64, 0}, 0, 0, false, ODY_ERR_INVALID},
      {"ldx below K", {1, 64, 64, 32, 0}, 0, 0, false, ODY_ERR_INVALID},
      {"x at an odd byte address", {1, 64, 64, 64, 0}, 1, 0, false, ODY_ERR_UNSUPPORTED},
      {"fp32 y 2-byte aligned", {1, 64, 64, 64, 1}, 0, 2, false, ODY_ERR_UNSUPPORTED},
      {"null W", {1, 64, 64, 64, 0}, 0, 0, true, ODY_ERR_INVALID},
  };
  for (auto& w : wants) {
    Result r;
    r.name = std::string("refuse: ") + w.what;
    r.kernel = "can_implement";
    ody_f16_gemv_args a{};
    a.x = buf.get<uint8_t>() + w.x_byte_off;
    a.w = w.null_w ? nullptr : buf.get();
    a.y = buf.get<uint8_t>() + 4096 + w.y_byte_off;
    ody_status s = ody_f16_gemv(&w.p, &a, nullptr);
    std::string msg = ody_last_error();
    if (s != w.status || msg.empty()) {
      r.passed = false;
      r.message = "status " + std::to_string(s) + " (want " + std::to_string(w.status) + "), message \"" + msg + "\"";
    } else {
      r.message = msg;
    }
    out.push_back(r);
  }
  CK(cudaDeviceSynchronize());
  return out;
}

}  // namespace

int cmd_test_gemv16(const Args& args) {
  const bool quick = args.has("quick");
  std::mt19937_64 rng((uint64_t)args.get_int("seed", 1));
  std::vector<Spec> specs = {
      {1, 1, 1, 1, 0, 0, false, false, "the smallest"},
      {1, 17, 13, 13, 0, 0, true, false, "K = 13: element-wise path"},
      {3, 100, 172, 172, 0, 0, false, false, "K = 172 (stories260K's MLP)"},
      {8, 33, 264, 264, 0, 0, true, false, "K % 32 = 8, M = 8"},
      {5, 1000, 1000, 1000, 0, 0, false, false, "K % 32 = 8, N % 16 = 8"},
      {2, 257, 4096, 4104, 0, 0, true, false, "strided x (ldx = K + 8): 16-byte path"},
      {2, 65, 512, 515, 0, 0, false, false, "strided x (ldx = K + 3): element-wise"},
      {1, 64, 512, 512, 1, 0, false, false, "x misaligned by one element"},
      {4, 64, 512, 512, 0, 1, true, false, "W misaligned by one element"},
      {7, 31, 2048, 2048, 0, 0, false, true, "fp32 output, M = 7"},
      {6, 48, 11008, 11008, 0, 0, true, false, "K = 11008 (not a multiple of 8 warps × 4 × 32)"},
      {4, 4096, 4096, 4096, 0, 0, false, false, "7B q/k/v/o"},
      {1, 4096, 11008, 11008, 0, 0, false, false, "7B down_proj"},
      {2, 1000, 4096, 4096, 0, 0, false, true, "logits, fp32"},
  };
  if (!quick) {
    specs.push_back({1, 22016, 4096, 4096, 0, 0, false, false, "7B gate+up fused"});
    specs.push_back({1, 12288, 4096, 4096, 0, 0, true, false, "7B q+k+v fused, bias"});
    specs.push_back({4, 4096, 11008, 11008, 0, 0, false, false, "7B down_proj, M = 4"});
    specs.push_back({1, 32000, 4096, 4096, 0, 0, false, true, "7B lm_head, fp32 logits"});
    specs.push_back({8, 32000, 4096, 4096, 0, 0, false, true, "7B lm_head, fp32 logits, M = 8"});
  }
  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  std::vector<Result> results;
  for (size_t i = 0; i < specs.size(); i++) {
    const Spec& s = specs[i];
    std::vector<Result> rs = run_spec(blas, s, rng, s.n >= 16 && s.k >= 8);
    int bad = 0;
    for (auto& r : rs) bad += !r.passed;
    std::fprintf(stderr, "%-44s %-36s %s (worst err/bound %.3f, ours vs cuBLAS max %lld ulp)\n", spec_name(s).c_str(),
                 s.note, bad ? "FAIL" : "ok", rs[0].worst_err_over_tol, rs[0].max_ulp_vs_cublas);
    for (auto& r : rs)
      if (!r.passed) std::fprintf(stderr, "    %s: %s\n", r.kernel.c_str(), r.message.c_str());
    results.insert(results.end(), rs.begin(), rs.end());
  }
  cublasDestroy(blas);
  for (auto& r : refusals()) {
    std::fprintf(stderr, "%-44s %s %s\n", r.name.c_str(), r.passed ? "ok" : "FAIL", r.message.c_str());
    results.push_back(r);
  }
  return report_cases("test gemv16", results, [](JsonWriter& w, const Result& r) {
    w.field("name", r.name);
    w.field("kernel", r.kernel);
    w.field("passed", r.passed);
    w.field("checked", r.checked);
    w.field("worst_err_over_tol", r.worst_err_over_tol);
    w.field("max_ulp_vs_cublas", r.max_ulp_vs_cublas);
    w.field("message", r.message);
  });
}

}  // namespace odyssey
