// test_w8a8.cpp: `odyssey-rt test w8a8 [--seed N]`, the W8A8 kernels (w8a8.cu) against a host
// reference on random cases.
//
// The reference is written here from the definition (odyssey_rt.h): acc = Σ_k x·w in int64
// (must equal the kernels' int32 exactly), y = fp16_rn(float(acc)·(xs·ws) (+ bias)), every float
// operation one IEEE rounding (this file is compiled with -ffp-contract=off), the conversion to
// fp16 round-to-nearest-even. Tolerance: 0 ulp and 0 accumulator mismatches, for every path:
// config 0 (dp4a), config 1 (cuBLASLt INT8 + epilogue) and the dispatch (-1); the two paths are
// also compared with each other directly. Cases: odd and even N (cuBLASLt only where N % 4 == 0),
// K multiples of 16 (16 .. 11008), M = 1..16 and 64..512, codes at the ±127 extremes on some
// rows (the largest accumulators), with and without bias; one shape with N = 131072 makes the
// cuBLASLt path split M into chunks (128 rows each, and a tail). Outputs are poisoned (0xFF)
// before every launch. Then can_implement's refusals.
#include <cuda_fp16.h>

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
  long long acc_mismatches = 0, y_mismatches = 0;
};

uint16_t half_bits(float f) {
  const __half_raw r = __float2half_rn(f);
  return r.x;
}

struct Case {
  int m, n, k;
  bool bias;
  std::vector<int8_t> x, w;
  std::vector<float> xs, ws, b;
  std::vector<int32_t> acc;  // reference
  std::vector<uint16_t> y;   // reference
};

Case make_case(int m, int n, int k, bool bias, std::mt19937& rng) {
  Case c{m, n, k, bias, {}, {}, {}, {}, {}, {}, {}};
  std::uniform_int_distribution<int> code(-127, 127);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-12, -4);
  c.x.resize((size_t)m * k);
  c.w.resize((size_t)n * k);
  for (auto& v : c.x) v = (int8_t)code(rng);
  for (auto& v : c.w) v = (int8_t)code(rng);
  // Extremes: row 0 of x all +127 and column 0 of w all ±127 (same sign: the largest |acc|).
  for (int kk = 0; kk < k; kk++) c.x[kk] = 127;
  const int8_t sgn = (rng() & 1) ? 127 : -127;
  for (int kk = 0; kk < k; kk++) c.w[kk] = sgn;
  c.xs.resize(m);
  c.ws.resize(n);
  for (auto& v : c.xs) v = std::ldexp(mant(rng), ex(rng));
  for (auto& v : c.ws) v = std::ldexp(mant(rng), ex(rng));
  if (bias) {
    std::uniform_real_distribution<float> bd(-2.0f, 2.0f);
    c.b.resize(n);
    for (auto& v : c.b) v = bd(rng);
  }
  c.acc.resize((size_t)m * n);
  c.y.resize((size_t)m * n);
  for (int i = 0; i < m; i++) {
    const int8_t* xr = &c.x[(size_t)i * k];
    for (int j = 0; j < n; j++) {
      const int8_t* wr = &c.w[(size_t)j * k];
      long long s = 0;
      for (int kk = 0; kk < k; kk++) s += (int)xr[kk] * (int)wr[kk];
      c.acc[(size_t)i * n + j] = (int32_t)s;  // |s| ≤ 127²·K < 2^31 (K ≤ 133144)
      const float scale = c.xs[i] * c.ws[j];
      float y = (float)(int32_t)s * scale;
      if (bias) y = y + c.b[j];
      c.y[(size_t)i * n + j] = half_bits(y);
    }
  }
  return c;
}

struct Outputs {
  std::vector<int32_t> acc;
  std::vector<uint16_t> y;
};

// Runs one config; fills out and returns the status (message in r on failure).
bool run(const Case& c, int config, Outputs& out, Result& r) {
  DeviceBuffer x(c.x.size()), w(c.w.size()), xs(c.xs.size() * 4), ws(c.ws.size() * 4), b(c.b.size() * 4 + 4),
      y((size_t)c.m * c.n * 2), acc((size_t)c.m * c.n * 4);
  x.upload(c.x.data(), c.x.size());
  w.upload(c.w.data(), c.w.size());
  xs.upload(c.xs.data(), c.xs.size() * 4);
  ws.upload(c.ws.data(), c.ws.size() * 4);
  if (c.bias) b.upload(c.b.data(), c.b.size() * 4);
  y.fill(0xFF);
  acc.fill(0xFF);
  ody_w8a8_problem p{c.m, c.n, c.k, config};
  const size_t wsb = ody_w8a8_workspace_size(&p);
  DeviceBuffer work(wsb);
  if (wsb) work.fill(0xFF);  // the path must not need a zeroed workspace
  ody_w8a8_args a{};
  a.x = x.get<int8_t>();
  a.x_scale = xs.get<float>();
  a.w = w.get<int8_t>();
  a.w_scale = ws.get<float>();
  a.bias = c.bias ? b.get<float>() : nullptr;
  a.y = y.get();
  a.acc_out = acc.get<int32_t>();
  a.workspace = work.get();
  a.workspace_bytes = wsb;
  const ody_status s = ody_w8a8_gemm(&p, &a, nullptr);
  if (s != ODY_OK) {
    r.passed = false;
    r.message = std::string("ody_w8a8_gemm: ") + ody_last_error();
    return false;
  }
  CK(cudaDeviceSynchronize());
  out.acc.resize((size_t)c.m * c.n);
  out.y.resize((size_t)c.m * c.n);
  acc.download(out.acc.data(), out.acc.size() * 4);
  y.download(out.y.data(), out.y.size() * 2);
  return true;
}

void compare(const std::vector<int32_t>& acc_a, const std::vector<uint16_t>& y_a, const std::vector<int32_t>& acc_b,
             const std::vector<uint16_t>& y_b, int n, Result& r) {
  std::string first;
  for (size_t i = 0; i < acc_a.size(); i++) {
    if (acc_a[i] != acc_b[i]) {
      if (r.acc_mismatches++ == 0)
        first = "acc[" + std::to_string(i / n) + "," + std::to_string(i % n) + "] = " + std::to_string(acc_a[i]) +
                ", want " + std::to_string(acc_b[i]);
    }
    if (y_a[i] != y_b[i]) {
      if (r.y_mismatches++ == 0 && first.empty()) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "y[%zu,%zu] = 0x%04x, want 0x%04x", i / n, i % n, y_a[i], y_b[i]);
        first = buf;
      }
    }
  }
  if (r.acc_mismatches || r.y_mismatches) {
    r.passed = false;
    r.message = std::to_string(r.acc_mismatches) + " acc and " + std::to_string(r.y_mismatches) +
                " y mismatches; first: " + first;
  }
}

std::vector<Result> test_case(const Case& c) {
  std::vector<Result> out;
  const std::string name = std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k) +
                           (c.bias ? "+bias" : "");
  Outputs got[3];
  bool have[3] = {false, false, false};
  const int configs[3] = {0, 1, -1};
  for (int i = 0; i < 3; i++) {
    const int cfg = configs[i];
    if (cfg == 1 && c.n % 4 != 0) continue;  // refused by design (tested below)
    Result r;
    r.name = name;
    r.kernel = cfg == -1 ? "w8a8/auto" : std::string("w8a8/") + ody_w8a8_config_name(cfg);
    if (run(c, cfg, got[i], r)) {
      have[i] = true;
      compare(got[i].acc, got[i].y, c.acc, c.y, c.n, r);
    }
    out.push_back(r);
  }
  if (have[0] && have[1]) {  // the two paths against each other, not only through the reference
    Result r;
    r.name = name;
    r.kernel = "w8a8/dp4a==cublaslt";
    compare(got[0].acc, got[0].y, got[1].acc, got[1].y, c.n, r);
    out.push_back(r);
  }
  return out;
}

std::vector<Result> test_refusals() {
  std::vector<Result> out;
  DeviceBuffer buf(1 << 20);
  struct Want {
    const char* what;
    ody_w8a8_problem p;
    size_t xoff;
    bool workspace;
    ody_status status;
  } wants[] = {
      {"K not a multiple of 16", {4, 64, 24, -1}, 0, true, ODY_ERR_UNSUPPORTED},
      {"K beyond the int32 bound", {1, 4, 133152, 0}, 0, true, ODY_ERR_UNSUPPORTED},
      {"misaligned x", {4, 64, 256, 0}, 8, true, ODY_ERR_UNSUPPORTED},
      {"M = 0", {0, 64, 256, -1}, 0, true, ODY_ERR_INVALID},
      {"cublaslt with odd N", {64, 67, 256, 1}, 0, true, ODY_ERR_UNSUPPORTED},
      {"unknown config", {4, 64, 256, 7}, 0, true, ODY_ERR_INVALID},
      {"cublaslt without workspace", {64, 64, 256, 1}, 0, false, ODY_ERR_WORKSPACE},
  };
  for (const Want& w : wants) {
    Result r;
    r.name = std::string("refuse: ") + w.what;
    r.kernel = "can_implement";
    ody_w8a8_args a{};
    a.x = buf.get<int8_t>() + w.xoff;
    a.x_scale = buf.get<float>();
    a.w = buf.get<int8_t>();
    a.w_scale = buf.get<float>();
    a.y = buf.get();
    if (w.workspace) {
      a.workspace = buf.get();
      a.workspace_bytes = buf.bytes();
    }
    const ody_status s = ody_w8a8_gemm(&w.p, &a, nullptr);
    const std::string msg = ody_last_error();
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

int cmd_test_w8a8(const Args& args) {
  std::mt19937 rng((uint32_t)args.get_int("seed", 14));
  std::vector<int> small_m;
  for (int m = 1; m <= 16; m++) small_m.push_back(m);
  const std::vector<int> big_m = {64, 100, 128, 257, 512};
  struct Shape {
    int n, k;
    std::vector<int> ms;
  };
  std::vector<Shape> shapes;
  for (auto nk : std::vector<std::pair<int, int>>{{1, 16}, {7, 48}, {33, 256}, {64, 128}, {67, 1040}, {515, 528}, {516, 4096}}) {
    Shape s{nk.first, nk.second, small_m};
    s.ms.insert(s.ms.end(), big_m.begin(), big_m.end());
    shapes.push_back(s);
  }
  shapes.push_back({1024, 11008, {1, 2, 4, 8, 9, 16}});
  shapes.push_back({4096, 4096, {1, 4, 8, 64}});
  shapes.push_back({131072, 16, {1, 8, 300, 512}});  // cuBLASLt in chunks of 128 rows
  std::vector<Result> results;
  for (const Shape& s : shapes) {
    int bad = 0, runs = 0;
    for (size_t i = 0; i < s.ms.size(); i++) {
      const Case c = make_case(s.ms[i], s.n, s.k, (i % 3) == 1, rng);
      for (Result& r : test_case(c)) {
        runs++;
        if (!r.passed) {
          bad++;
          std::fprintf(stderr, "    %s %s: %s\n", r.name.c_str(), r.kernel.c_str(), r.message.c_str());
        }
        results.push_back(r);
      }
    }
    std::fprintf(stderr, "w8a8 N=%-7d K=%-6d %4d runs  %s\n", s.n, s.k, runs, bad ? "FAIL" : "ok");
  }
  for (Result& r : test_refusals()) {
    std::fprintf(stderr, "%-48s %s %s\n", r.name.c_str(), r.passed ? "ok" : "FAIL", r.message.c_str());
    results.push_back(r);
  }
  return report_cases("test w8a8", results, [](JsonWriter& w, const Result& r) {
    w.field("name", r.name);
    w.field("kernel", r.kernel);
    w.field("passed", r.passed);
    w.field("acc_mismatches", r.acc_mismatches);
    w.field("y_mismatches", r.y_mismatches);
    w.field("message", r.message);
  });
}

}  // namespace odyssey
