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
//   the reduce's integer scales: fma(s·2^a, 2^b, 2^23) − 2^23 == roundEven(s·2^(146−E)) ≤ 2^20;
//   the quotient fl(d·fl(1/s)) needs no clamp for a normal s = fl(D/Q) and |d| ≤ D;
//   the v7 reduce: fl(fl(acc)·2^(E−146)) is exact, so fl(y + L) = fma(fl(acc), P, L), and t(acc) is
//   non-decreasing (the group's extremes from the integer sums).
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

// The integer scales of the reduce (flashcomm_kernels.cuh, fc_int_scale): for a scale s of a
// group whose largest exponent is E (≥ s's), fma(s·2^a, 2^b, 2^23) − 2^23 with 2^a·2^b =
// 2^(146−E) (a = min(146 − E, 127)) equals roundEven(s·2^(146−E)) computed exactly in double, and
// is at most 2^20. Subnormal scales, ties (significands ending in 100…0 at the shift), E < 19 and
// exponent gaps past 24 included.
void check_int_scale() {
  std::mt19937_64 rng(13);
  for (int i = 0; i < 400000; i++) {
    const uint32_t e = (uint32_t)(rng() % 255);  // 0: subnormal
    uint32_t mant = (uint32_t)(rng() & 0x7fffff);
    if (i % 4 == 1) mant = 1u << (rng() % 23);  // a tie at some shift
    const float s = as_float((e << 23) | mant);
    if (s == 0) continue;
    const uint32_t es = e ? e : 1u;
    const uint32_t E = i % 8 == 0 ? es : std::min<uint32_t>(254u, es + (uint32_t)(rng() % 30));
    const int p = 146 - (int)E, p1 = p < 127 ? p : 127;
    const float f1 = as_float((uint32_t)(p1 + 127) << 23), f2 = as_float((uint32_t)(p - p1 + 127) << 23);
    const int32_t got = (int32_t)(as_bits(std::fmaf(fmul_(s, f1), f2, 8388608.0f)) - 0x4B000000u);
    const double x = std::ldexp((double)s, p);  // exact
    const double want = std::nearbyint(x);      // the default rounding mode: to nearest even
    if ((got != (int32_t)want || got > (1 << 20)) && failures++ < 10)
      std::fprintf(stderr, "FAIL int scale s=%a E=%u: %d, want %.0f (x = %a)\n", s, E, got, want, x);
  }
}

// The quantization's quotient t = fl(d·fl(1/s)) for a normal s never needs the clamp: with
// s = fl(D/Q), D = the group's range (or max|v|) and |d| ≤ D, rint(t) stays within [−Q, Q]
// (kernels v5/v6 drop the clamp on that path). D at every magnitude, d = ±D and its neighbours.
void check_rcp_no_clamp() {
  std::mt19937_64 rng(17);
  for (int bits : {8, 4})
    for (bool sym : {false, true}) {
      const float q = sym ? (float)((1 << (bits - 1)) - 1) : (float)((1 << bits) - 1);
      for (int i = 0; i < 200000; i++) {
        const uint32_t e = 1 + (uint32_t)(rng() % 190);
        const float D = as_float((e << 23) | (uint32_t)(rng() & 0x7fffff));
        const float s = fdiv_(D, q);
        if (!(s >= 0x1p-126f)) continue;  // the division path keeps its clamp
        const float r = fdiv_(1.0f, s);
        float d = D;
        for (int k = 0; k < 4; k++, d = std::nextafter(d, 0.0f)) {
          const float t = std::nearbyint(fmul_(d, r));
          if (!(t <= q) && failures++ < 10)
            std::fprintf(stderr, "FAIL no clamp int%d %s: D=%a s=%a d=%a: rint(t) = %g > %g\n", bits,
                         sym ? "sym" : "asym", D, s, d, t, q);
        }
      }
    }
}

// The v7 reduce's fused encode: y = fl(fl(acc)·P) is exact for every int32 sum and every
// P = 2^(E−146), E in 1..254 (fl(acc) has ≤ 24 significant bits, P ≥ 2^−145: a multiple of 2^−149),
// so fl(y + L) = fma(fl(acc), P, L) for every L; and the group's extremes come from the integer
// sums because t(acc) = fl(fl(fl(acc)·P) + L) is non-decreasing in acc. Sums at every magnitude,
// E near both ends, L of both signs and zero.
void check_fused_sum() {
  std::mt19937_64 rng(19);
  for (int i = 0; i < 400000; i++) {
    const int32_t acc = (int32_t)(rng() >> (33 + rng() % 31)) * (rng() & 1 ? 1 : -1);
    const uint32_t E = i % 3 == 0 ? 1 + (uint32_t)(rng() % 30) : 1 + (uint32_t)(rng() % 254);
    const int p = (int)E - 146;
    const float P = p >= -126 ? as_float((uint32_t)(p + 127) << 23) : as_float(1u << (p + 149));
    const float x = (float)acc;  // fl(acc), round to nearest even
    const float y = fmul_(x, P);
    if ((double)y != (double)x * (double)P && std::isfinite(y) && failures++ < 10)
      std::fprintf(stderr, "FAIL fl(acc)*P not exact: acc=%d E=%u\n", acc, E);
    const float L = i % 5 == 0 ? 0.0f : as_float((uint32_t)(rng() & 0xffffffffu));
    if (!std::isfinite(L)) continue;
    const float t = fadd(y, L), tf = std::fmaf(x, P, L);
    if (std::isfinite(t) && as_bits(t) != as_bits(tf) && failures++ < 10)
      std::fprintf(stderr, "FAIL fma(fl(acc), P, L) = %a, fl(y + L) = %a (acc=%d E=%u L=%a)\n", tf, t, acc, E, L);
    const float t2 = fadd(fmul_((float)(acc + 1), P), L);  // the next sum: never smaller
    if (acc < INT32_MAX && t2 < t && failures++ < 10)
      std::fprintf(stderr, "FAIL t not monotone at acc=%d E=%u L=%a\n", acc, E, L);
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
  check_fast_div();
  check_int_scale();
  check_rcp_no_clamp();
  check_fused_sum();
  std::printf("test_fc_tricks (%s): %lld failures\n", all ? "every float32" : "sampled", failures);
  return failures ? 1 : 0;
}
