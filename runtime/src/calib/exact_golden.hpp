// exact_golden.hpp: reads runtime/tests/data/calib_exact_golden.bin (written by
// runtime/tests/exactgolden/main.go from the Go pass: model.Layer.Forward and calib.Stats.Add
// on generated layers) and regenerates the same inputs (gen: integer hashing, exact in Go and
// C++). Host only; used by tests/test_calib_exact_host.cpp (host reference vs Go) and
// cli/test_calib_exact.cpp (GPU vs Go).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "calib/canonical_ref.hpp"

namespace odyssey::calibgpu::canon::golden {

// One record: kind 4 float32, 8 float64, 1 int64, 2 FNV-1a 64 hash of `count` values.
struct Record {
  int kind = 0;
  uint64_t count = 0, hash = 0;
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<int64_t> i64;
};

// A case: its shape record ("case") and the named records up to the next case.
struct Case {
  std::vector<int64_t> shape;  // hidden inter heads kv hd seq window bias, then windows per chunk
  std::map<std::string, Record> rec;
};

inline std::vector<Case> read(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<Case> cases;
  auto rd = [&](void* p, size_t n) {
    if (std::fread(p, 1, n, f) != n) throw std::runtime_error(path + ": truncated");
  };
  for (;;) {
    uint32_t nl = 0;
    rd(&nl, 4);
    std::string name(nl, '\0');
    rd(name.data(), nl);
    uint8_t kind = 0;
    rd(&kind, 1);
    Record r;
    r.kind = kind;
    rd(&r.count, 8);
    if (kind == 4) {
      r.f32.resize(r.count);
      rd(r.f32.data(), r.count * 4);
    } else if (kind == 8) {
      r.f64.resize(r.count);
      rd(r.f64.data(), r.count * 8);
    } else if (kind == 1) {
      r.i64.resize(r.count);
      rd(r.i64.data(), r.count * 8);
    } else if (kind == 2) {
      rd(&r.hash, 8);
    } else {
      throw std::runtime_error(path + ": bad record kind");
    }
    if (name == "end") break;
    if (name == "case") {
      cases.push_back(Case{r.i64, {}});
      continue;
    }
    if (cases.empty()) throw std::runtime_error(path + ": record before a case");
    cases.back().rec[name] = std::move(r);
  }
  std::fclose(f);
  return cases;
}

inline uint64_t fnv1a(const void* p, size_t n) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// exactgolden's gen: splitmix64 of (seed, i), a 24-bit signed integer · 2⁻²³ · scale (scale a
// power of two: exact), 1 in 128 zero, 1 in 128 float32(float64(x)·2⁻¹³⁰) (a denormal).
inline std::vector<float> gen(uint64_t seed, size_t n, double scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xD1B54A32D192ED03ull + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    float x = (float)((double)((int64_t)(z >> 40) - (1 << 23)) * (1.0 / (1 << 23)) * scale);
    if ((z & 127) == 0) x = 0;
    else if ((z & 127) == 1) x = (float)((double)x * std::ldexp(1.0, -130));
    v[i] = x;
  }
  return v;
}

// The case's layer (weights in exactgolden's order) and its chunks' inputs.
struct Inputs {
  ref::Layer layer;
  int seq = 0;
  std::vector<int> chunk_windows;
  std::vector<std::vector<float>> h;  // per chunk, [windows·seq, hidden]
};

// inv_freq of the default rope (theta 10000) as model/rope.go ropeInvFreq: the exponent
// rounded to float32, 1/pow in float64, rounded to float32 (the executor's rope_inv_freq).
inline Inputs inputs(const Case& c, int case_index) {
  Inputs in;
  ref::Layer& L = in.layer;
  L.hidden = (int)c.shape[0], L.inter = (int)c.shape[1], L.heads = (int)c.shape[2], L.kv_heads = (int)c.shape[3];
  L.hd = (int)c.shape[4], in.seq = (int)c.shape[5], L.window = (int)c.shape[6];
  const bool bias = c.shape[7] != 0;
  for (size_t i = 8; i < c.shape.size(); i++) in.chunk_windows.push_back((int)c.shape[i]);
  L.eps = (float)1e-5;
  uint64_t seed = (uint64_t)(case_index + 1) * 100;
  const int qd = L.heads * L.hd, kvd = L.kv_heads * L.hd;
  const int outs[7] = {qd, kvd, kvd, L.hidden, L.inter, L.inter, L.hidden};
  const int ins[7] = {L.hidden, L.hidden, L.hidden, qd, L.hidden, L.hidden, L.inter};
  for (int i = 0; i < 7; i++) {
    L.w[i] = gen(++seed, (size_t)outs[i] * ins[i], 0.125);
    if (bias && i < 3) L.b[i] = gen(++seed, (size_t)outs[i], 0.125);
  }
  L.attn_norm = gen(++seed, L.hidden, 1);
  L.mlp_norm = gen(++seed, L.hidden, 1);
  const int half = L.hd / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) {
    const double e = (double)(float)((double)(2 * i) / (double)L.hd);
    inv[i] = (float)(1 / std::pow(10000.0, e));
  }
  L.cos.resize((size_t)in.seq * half);
  L.sin.resize(L.cos.size());
  ref::rope_tables(inv.data(), half, in.seq, L.cos.data(), L.sin.data());
  for (int nw : in.chunk_windows) in.h.push_back(gen(++seed, (size_t)nw * in.seq * L.hidden, 2));
  return in;
}

}  // namespace odyssey::calibgpu::canon::golden
