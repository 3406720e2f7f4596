// test_fc_tricks.cpp: the exact float and integer tricks of the version-2 Flash Communication
// kernels (runtime/src/flashcomm.cu), checked on the host against the version-1 chain they
// replace (docs/flash-communication.md's operations). The tricks are IEEE-754 identities (no
// device-specific rounding is involved), so the host's binary32 arithmetic decides them:
//
//   encode: code(t) = low bits of fl(t + 2^23), clamped at 2^23 + Q  ==  (int)fminf(rintf(t), Q)
//           for every t ≥ 0 (asymmetric), and fl(t + 1.5·2^23) clamped to ±Qs around 1.5·2^23
//           == (int)clamp(rintf(t), ±Qs) for every t (symmetric), as two's-complement bits;
//   decode: bits(2^23 + c) − 2^23 == (float)c for every code (signed codes offset by 128 or 8),
//           and fma(2^23 + c, s, −2^23·s) == fl(c·s) for every unsigned code and scales of every
//           magnitude, subnormals included;
//   FastDiv: (n + mulhi(n, m)) >> l == n / d;
//   kernels v3: the code from t' = fl(d·fl(1/s)) (d = v − lo, or v) equals the code from
//           fl(d/s) whenever t' is not within 2^−13 of a half-integer and 2^−100 ≤ s ≤ 2^100
//           (else the kernel divides): random groups of every magnitude, and values placed
//           on and around every tie n + 1/2.
//
//   test_fc_tricks          every float32 t with |t| < 2^23 sampled at a stride, plus every
//                           half-integer neighbourhood and all codes (a second or so)
//   test_fc_tricks --all    every float32 bit pattern (about a minute per codec)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t as_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// volatile: one binary32 operation each, never fused or kept in wider registers.
float fadd(float a, float b) {
  volatile float r = a + b;
  return r;
}

long long failures = 0;

// Version 1: q = fminf(rintf(t), Q) (asymmetric, t ≥ 0) or clamp(rintf(t), ±Qs), then (int)q.
uint32_t code_v1(float t, int bits, bool sym) {
  const uint32_t mask = bits == 8 ? 0xffu : 0xfu;
  if (sym) {
    const float qs = (float)((1 << (bits - 1)) - 1);
    return (uint32_t)(int)std::fmin(std::fmax(std::rint(t), -qs), qs) & mask;
  }
  const float q = (float)((1 << bits) - 1);
  return (uint32_t)(int)std::fmin(std::rint(t), q) & mask;
}

// Version 2: the bits of fl(t + bias), clamped in the biased domain.
uint32_t code_v2(float t, int bits, bool sym) {
  const uint32_t mask = bits == 8 ? 0xffu : 0xfu;
  if (sym) {
    const float qs = (float)((1 << (bits - 1)) - 1), bias = 12582912.0f;
    return as_bits(std::fmin(std::fmax(fadd(t, bias), bias - qs), bias + qs)) & mask;
  }
  const float q = (float)((1 << bits) - 1), bias = 8388608.0f;
  return as_bits(std::fmin(fadd(t, bias), bias + q)) & mask;
}

void check_t(float t, int bits, bool sym) {
  const uint32_t a = code_v1(t, bits, sym), b = code_v2(t, bits, sym);
  if (a != b && failures++ < 10)
    std::fprintf(stderr, "FAIL encode int%d %s t=%a (bits %08x): v1 code %u, v2 code %u\n", bits,
                 sym ? "sym" : "asym", t, as_bits(t), a, b);
}

// The kernels see t = fl(fl(v − lo)/s) ≥ 0 (asymmetric; −0 included) with t ≤ Q(1 + 2.1u), or
// |t| ≤ Qs(1 + 2u) (symmetric). The identity is checked on a wider domain: every non-NaN t with
// |t| < 2^22 (where the trick is exact), and the clamped results for larger t up to 2^22.
bool in_domain(float t, bool sym) {
  if (std::isnan(t)) return false;
  if (!sym && t < 0) return false;  // asymmetric t ≥ 0 (−0 compares equal to 0: kept)
  return std::fabs(t) < 4194304.0f;
}

void sweep(int bits, bool sym, uint64_t stride) {
  for (uint64_t u = 0; u <= 0xffffffffull; u += stride) {
    const float t = as_float((uint32_t)u);
    if (in_domain(t, sym)) check_t(t, bits, sym);
  }
  // Every value near a half-integer (ties and their neighbours) and the clamp edges.
  const int lim = bits == 8 ? 300 : 40;
  for (int n = -lim; n <= lim; n++) {
    const float h = (float)n + 0.5f;
    float x = h;
    for (int i = 0; i < 4; i++) x = std::nextafter(x, -INFINITY);
    for (int i = 0; i < 9; i++, x = std::nextafter(x, INFINITY))
      if (in_domain(x, sym)) check_t(x, bits, sym);
    if (in_domain((float)n, sym)) check_t((float)n, bits, sym);
  }
  check_t(-0.0f, bits, sym);
  check_t(0.0f, bits, sym);
}

void check_decode() {
  for (int bits : {8, 4})
    for (bool sym : {false, true}) {
      const int n = 1 << bits;
      for (int c = 0; c < n; c++) {
        // The wire code c (low bits); its value: unsigned, or two's complement when symmetric.
        const int value = sym ? (c >= n / 2 ? c - n : c) : c;
        const uint32_t offset = sym ? (uint32_t)(c ^ (n / 2)) : (uint32_t)c;  // code + n/2 when signed
        const float bias = 8388608.0f + (sym ? (float)(n / 2) : 0.0f);
        const float got = fadd(as_float(0x4B000000u | offset), -bias);
        if (as_bits(got) != as_bits((float)value) && failures++ < 10)
          std::fprintf(stderr, "FAIL decode int%d %s code %d: %a, want %d\n", bits, sym ? "sym" : "asym", c, got, value);
      }
    }
}

void check_fma_decode() {
  std::mt19937_64 rng(5);
  std::vector<float> ss = {1.0f, 0x1p-149f, 0x1p-126f, 0x1.fffffep-127f, 0x1p-100f, 0x1p80f, 0x1.fffffep79f, 3.0f};
  for (int i = 0; i < 20000; i++) {
    const uint32_t e = (uint32_t)(rng() % 207);  // exponent fields 0..206: subnormals to 2^79
    ss.push_back(as_float((e << 23) | (uint32_t)(rng() & 0x7fffff)));
  }
  for (float s : ss) {
    if (s == 0) continue;
    volatile float k = 8388608.0f * s;
    for (int c = 0; c < 256; c++) {
      volatile float want = (float)c * s;
      const float got = std::fmaf(as_float(0x4B000000u | (uint32_t)c), s, -k);
      if (as_bits(got) != as_bits(want) && failures++ < 10)
        std::fprintf(stderr, "FAIL fma decode c=%d s=%a: %a, want %a\n", c, s, got, (float)want);
    }
  }
}

// Kernels v4 start an asymmetric rank sum from d_0 instead of +0 + d_0: that needs d_0 =
// fl(fl(c·s) + lo), decoded as fl(fma(2^23 + c, s, −2^23·s) + lo), never to be −0, so that
// fl(+0 + d_0) has d_0's bits. Checked for every code on scales from subnormal to 2^79 and minima
// of both signs, zeros and −s·c (exact cancellations) included; the check fails on a −0.
void check_sum_from_d0() {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 4000; i++) {
    const uint32_t e = (uint32_t)(rng() % 207);
    const float s = i == 0 ? 0x1p-149f : as_float((e << 23) | (uint32_t)(rng() & 0x7fffff));
    if (s == 0) continue;
    volatile float k = 8388608.0f * s;
    for (int c = 0; c < 256; c++) {
      const float cs = std::fmaf(as_float(0x4B000000u | (uint32_t)c), s, -k);
      const uint32_t le = (uint32_t)(rng() % 256);
      const float los[] = {0.0f, -0.0f, -cs, cs, as_float(((uint32_t)(rng() & 1) << 31) | (le << 23) | (uint32_t)(rng() & 0x7fffff)),
                           -as_float(0x4B000000u | (uint32_t)c) * 0.0f};
      for (float lo : los) {
        if (lo != lo || std::isinf(lo)) continue;
        const float d = fadd(cs, lo);
        if (as_bits(fadd(0.0f, d)) != as_bits(d) && failures++ < 10)
          std::fprintf(stderr, "FAIL sum from d_0: c=%d s=%a lo=%a: d_0 = %a, +0 + d_0 = %a\n", c, s, lo, d,
                       fadd(0.0f, d));
      }
    }
  }
}

uint32_t fast_div(uint32_t n, uint32_t d) {
  int l = 0;
  while ((1ull << l) < d) l++;
  const uint32_t m = (uint32_t)(((1ull << 32) * ((1ull << l) - d)) / d + 1);
  const uint32_t hi = (uint32_t)(((uint64_t)n * m) >> 32);
  return (uint32_t)(((uint64_t)hi + n) >> l);
}

void check_fast_div() {
  std::mt19937_64 rng(7);
  std::vector<uint32_t> ds = {1, 2, 3, 5, 6, 7, 8, 12, 40, 48, 96, 127, 128, 129, 640, 1000, 4096, 65535, 65536,
                              (1u << 31) - 1, 1u << 31, (1u << 31) + 1, 0xfffffffeu, 0xffffffffu};
  for (int i = 0; i < 200; i++) ds.push_back((uint32_t)(rng() >> (32 + rng() % 32)) | 1u);
  for (uint32_t d : ds) {
    std::vector<uint32_t> ns = {0, 1, d - 1, d, d + 1, 0xffffffffu, 0xfffffffeu, 0x80000000u};
    for (uint32_t k = 1; k < 64; k++) ns.push_back(d * k), ns.push_back(d * k - 1);
    for (int i = 0; i < 20000; i++) ns.push_back((uint32_t)rng());
    for (uint32_t n : ns)
      if (fast_div(n, d) != n / d && failures++ < 10)
        std::fprintf(stderr, "FAIL FastDiv %u / %u: %u, want %u\n", n, d, fast_div(n, d), n / d);
  }
}

float fmul_(float a, float b) {
  volatile float r = a * b;
  return r;
}
float fdiv_(float a, float b) {
  volatile float r = a / b;
  return r;
}
float fsub_(float a, float b) {
  volatile float r = a - b;
  return r;
}

// The code of d (t = d/s) in the biased domain: exact division (v2) or the v3 rule.
uint32_t code_exact(float d, float s, float q, bool sym) {
  const float bias = sym ? 12582912.0f : 8388608.0f;
  const float f = fadd(fdiv_(d, s), bias);
  return as_bits(sym ? std::fmin(std::fmax(f, bias - q), bias + q) : std::fmin(f, bias + q));
}
long long rcp_redo = 0, rcp_total = 0;
uint32_t code_rcp(float d, float s, float q, bool sym) {
  const float bias = sym ? 12582912.0f : 8388608.0f;
  const float r = fdiv_(1.0f, s);
  const float tp = fmul_(d, r), f = fadd(tp, bias);
  const bool redo = !(std::fabs(fsub_(tp, fsub_(f, bias))) < 0.5f - 0x1p-13f) || !(s >= 0x1p-100f && s <= 0x1p100f);
  rcp_total++;
  if (redo) {
    rcp_redo++;
    return code_exact(d, s, q, sym);
  }
  return as_bits(sym ? std::fmin(std::fmax(f, bias - q), bias + q) : std::fmin(f, bias + q));
}

void check_rcp(int groups) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> unit(0, 1);
  for (int bits : {8, 4})
    for (bool sym : {false, true}) {
      const float q = sym ? (float)((1 << (bits - 1)) - 1) : (float)((1 << bits) - 1);
      for (int gr = 0; gr < groups; gr++) {
        // A group range at a random magnitude, its scale as the kernels compute it.
        const int ex = (int)(rng() % 160) - 80;
        const float range = (float)std::ldexp(0.5 + unit(rng), ex);
        const float s = fdiv_(range, q);
        if (s == 0) continue;
        auto check = [&](float d) {
          if (sym ? !(std::fabs(d) <= range) : !(d >= 0 && d <= range)) return;
          const uint32_t a = code_exact(d, s, q, sym), b = code_rcp(d, s, q, sym);
          if (a != b && failures++ < 10)
            std::fprintf(stderr, "FAIL rcp int%d %s d=%a s=%a: exact code %u, rcp code %u\n", bits, sym ? "sym" : "asym",
                         d, s, a & 0xff, b & 0xff);
        };
        for (int i = 0; i < 64; i++) check((float)(range * (sym ? 2 * unit(rng) - 1 : unit(rng))));
        // Every tie n + 1/2 and its float neighbours, and the ends.
        for (int n = sym ? -(int)q - 1 : 0; n <= (int)q; n++) {
          float x = (float)(((double)n + 0.5) * (double)s);
          for (int i = 0; i < 3; i++) x = std::nextafter(x, -INFINITY);
          for (int i = 0; i < 7; i++, x = std::nextafter(x, INFINITY)) check(x);
        }
        check(0.0f), check(range), check(-range);
      }
    }
}

}  // namespace

int main(int argc, char** argv) {
  const bool all = argc > 1 && std::string(argv[1]) == "--all";
  // A stride coprime with 2^32 visits every exponent and mantissa pattern evenly.
  const uint64_t stride = all ? 1 : 4099;
  for (int bits : {8, 4})
    for (bool sym : {false, true}) sweep(bits, sym, stride);
  check_decode();
  check_fma_decode();
  check_sum_from_d0();
  check_fast_div();
  check_rcp(all ? 200000 : 3000);
  std::printf("test_fc_tricks (%s): %lld failures; v3 rule: %lld of %lld values divided exactly\n",
              all ? "every float32" : "sampled", failures, rcp_redo, rcp_total);
  return failures ? 1 : 0;
}
