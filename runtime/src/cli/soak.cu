// soak.cu: `odyssey-rt soak allreduce`, the no-hang / no-drift check of issue 9: ody_allreduce_sim
// (N simulated ranks on one GPU, flashcomm.cu) called --calls times in a row on fixed inputs.
//
//   odyssey-rt soak allreduce [--calls 100000] [--ranks 8] [--rows 4] [--width 1024] [--bits 8]
//                             [--group 128] [--sym] [--dtype f32|f16|bf16] [--check-every 1000]
//                             [--timeout 60] [--kernels 6]
//
// Inputs: the specification's test vector (docs/flash-communication.md, "Test vector"), generated
// here with the same 32-bit integer hash, for any ranks × rows × width.
// Expected result: a scalar host implementation of the spec written here (independent of the
// kernels: one group at a time, the first-to-last scan, the integer-scale reduce of step 3). It is first checked
// against the spec's SHA-256 table (8 ranks, 4 × 1024, four codecs: the numbers Go's
// TestFlashCommTestVector pins), so that it stands for the Go reference; then it gives the
// expected output of the configuration asked for.
// Checks: the first call's output of every rank equals the expected result bit for bit; every
// later call's output of every rank equals the first call's (a kernel compares on the device,
// then poisons the outputs so that a call that writes nothing cannot pass as identical); the
// error flag stays 0. Every --check-every calls the host synchronizes and reads the counters; a
// watchdog thread ends the process with a message when no check completes for --timeout seconds
// (a hang). Reports calls/s.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "json.hpp"

namespace odyssey {
namespace {

// ---------------------------------------------------------------- SHA-256 (FIPS 180-4)

std::string sha256_hex(const uint8_t* data, size_t len) {
  static const uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::vector<uint8_t> m(data, data + len);
  m.push_back(0x80);
  while (m.size() % 64 != 56) m.push_back(0);
  const uint64_t bits = (uint64_t)len * 8;
  for (int i = 7; i >= 0; i--) m.push_back((uint8_t)(bits >> (8 * i)));
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 | (uint32_t)m[off + 4 * i + 2] << 8 |
             m[off + 4 * i + 3];
    for (int i = 16; i < 64; i++) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
  }
  char out[65];
  for (int i = 0; i < 8; i++) std::snprintf(out + 8 * i, 9, "%08x", h[i]);
  return std::string(out, 64);
}

// ---------------------------------------------------------------- the host reference

// One binary32 operation each (volatile: no fusion, no wider intermediates).
float fsub(float a, float b) { volatile float r = a - b; return r; }
float fadd(float a, float b) { volatile float r = a + b; return r; }
float fmul(float a, float b) { volatile float r = a * b; return r; }
float fdiv(float a, float b) { volatile float r = a / b; return r; }
// The quantization's quotient d ⊘ s: d·fl(1/s) for a normal s, d/s for a subnormal one.
float fquot(float d, float s) { return s >= 0x1p-126f ? fmul(d, fdiv(1.0f, s)) : fdiv(d, s); }

// quant(v) of one group (docs/flash-communication.md, "The codec"): the codes into q, the scale
// into *s and the minimum into *lo (0 for symmetric groups).
void quant_group(const float* v, int n, int bits, bool sym, int* q, float* s_out, float* lo_out) {
  if (sym) {
    const float qs = (float)((1 << (bits - 1)) - 1);
    float a = 0;
    for (int k = 0; k < n; k++) a = std::fabs(v[k]) > a ? std::fabs(v[k]) : a;
    float s = fdiv(a, qs);
    if (s == 0) s = 1;
    for (int k = 0; k < n; k++) {
      float r = std::rint(fquot(v[k], s));
      r = r < -qs ? -qs : r > qs ? qs : r;
      q[k] = (int)r;  // the code is an integer: a −0 from rint decodes as +0
    }
    *s_out = s, *lo_out = 0;
    return;
  }
  const float qa = (float)((1 << bits) - 1);
  float lo = v[0], hi = v[0];
  for (int k = 1; k < n; k++) {
    if (v[k] < lo) lo = v[k];
    if (v[k] > hi) hi = v[k];
  }
  float s = fdiv(fsub(hi, lo), qa);
  if (s == 0) s = 1;
  for (int k = 0; k < n; k++) {
    float r = std::rint(fquot(fsub(v[k], lo), s));
    if (r > qa) r = qa;
    q[k] = (int)r;
  }
  *s_out = s, *lo_out = lo;
}

// deq(quant(v)) of one group, in place: q·s, then + lo (asymmetric), each rounded.
void codec_group(float* v, int n, int bits, bool sym) {
  std::vector<int> q(n);
  float s, lo;
  quant_group(v, n, bits, sym, q.data(), &s, &lo);
  for (int k = 0; k < n; k++) v[k] = sym ? fmul((float)q[k], s) : fadd(fmul((float)q[k], s), lo);
}

// Step 3 for one group position (docs/flash-communication.md, "Step 3: the integer-scale
// reduce"): q[i·n + k], s[i], lo[i] are rank i's codes, scale and minimum; t receives the n values
// to requantize. The scales become integers m_i relative to the largest exponent E, the sum over
// ranks is exact in int64, converted to float32 once and multiplied by P = 2^(E−146); the minima
// are summed in float32 in rank order from +0.0f and added (asymmetric).
void reduce_group(float* t, int n, int ranks, const int* q, const float* s, const float* lo, bool sym) {
  std::vector<int> e(ranks);
  std::vector<int64_t> sig(ranks), m(ranks);
  int E = 1;
  for (int i = 0; i < ranks; i++) {
    uint32_t b;
    std::memcpy(&b, &s[i], 4);
    e[i] = (int)((b >> 23) & 0xFF);
    sig[i] = b & 0x7FFFFF;
    if (e[i] == 0)
      e[i] = 1;
    else
      sig[i] |= 0x800000;
    E = e[i] > E ? e[i] : E;
  }
  for (int i = 0; i < ranks; i++) {
    const int sh = E - e[i] + 4;
    // sig / 2^sh rounded to the nearest integer, ties to even (0 below ½).
    if (sh >= 25) {
      m[i] = 0;
    } else {
      const int64_t q = sig[i] >> sh, r = sig[i] & (((int64_t)1 << sh) - 1), half = (int64_t)1 << (sh - 1);
      m[i] = q + (r > half || (r == half && (q & 1)) ? 1 : 0);
    }
  }
  const int k2 = E - 146;  // ≥ −145
  const uint32_t pb = k2 >= -126 ? (uint32_t)(k2 + 127) << 23 : 1u << (k2 + 149);
  float P;
  std::memcpy(&P, &pb, 4);
  float L = 0.0f;
  if (!sym)
    for (int i = 0; i < ranks; i++) L = fadd(L, lo[i]);
  for (int k = 0; k < n; k++) {
    int64_t acc = 0;
    for (int i = 0; i < ranks; i++) acc += (int64_t)q[i * n + k] * m[i];
    volatile float fa = (float)(double)acc;  // exact in double (|acc| < 2^53), rounded once to float
    const float y = fmul(fa, P);
    t[k] = sym ? y : fadd(y, L);
  }
}

// The all-reduce's output (the same on every rank): every rank quantizes its group, step 3
// reduces the N groups at each position, the result is requantized and dequantized. Groups of G
// along each row never straddle a chunk (G | C), so working a row group by group is working it
// chunk by chunk.
std::vector<float> host_allreduce(const std::vector<float>& in, int ranks, size_t rows, size_t width, int bits,
                                  int group, bool sym) {
  const size_t vals = rows * width;
  std::vector<float> out(vals), s(ranks), lo(ranks);
  std::vector<int> q((size_t)ranks * group);
  for (size_t g = 0; g < vals; g += group) {
    for (int i = 0; i < ranks; i++)
      quant_group(in.data() + i * vals + g, group, bits, sym, &q[(size_t)i * group], &s[i], &lo[i]);
    reduce_group(&out[g], group, ranks, q.data(), s.data(), lo.data(), sym);
    codec_group(&out[g], group, bits, sym);
  }
  return out;
}

// quant.FlashCommTestVector(ranks, rows, width).
std::vector<float> test_vector(int ranks, size_t rows, size_t width) {
  std::vector<float> v((size_t)ranks * rows * width);
  size_t at = 0;
  for (int i = 0; i < ranks; i++)
    for (size_t r = 0; r < rows; r++)
      for (size_t k = 0; k < width; k++) {
        uint32_t u = (uint32_t)i * 1000003u + (uint32_t)r * 7919u + (uint32_t)k;
        u *= 2654435761u;
        u ^= u >> 15;
        u *= 2246822519u;
        u ^= u >> 13;
        float x = (float)((int32_t)u >> 8) * 0x1p-16f;
        if (k % 97 == 5) x *= 64;
        v[at++] = x;
      }
  return v;
}

struct Pinned {
  int bits, group;
  bool sym;
  const char* sha;
};
// docs/flash-communication.md, "Test vector": 8 ranks, 4 × 1024.
const Pinned kPinned[] = {
    {8, 128, false, "b08c1c78dbf419c3357b65d34ce0998e05b17030f44eed6569816beb9ad652b8"},
    {4, 128, false, "cfc6570acbc4210de90df3a7a4b273a9ad411b30707ed1c6369e439ea7bb61ab"},
    {8, 32, true, "57b355854f1620f27f71e0a55af0dff7665848758948b5b0dceae7a1c93648df"},
    {4, 64, true, "85cdcb602b4c44eeaa3aee4102e9c3b147a08fbe14fcd964d4e96649d998304e"},
};

// The host reference must reproduce the spec's table before it may judge the GPU.
void check_host_reference() {
  const auto in = test_vector(8, 4, 1024);
  for (const Pinned& p : kPinned) {
    auto out = host_allreduce(in, 8, 4, 1024, p.bits, p.group, p.sym);
    std::string got = sha256_hex(reinterpret_cast<const uint8_t*>(out.data()), out.size() * 4);
    if (got != p.sha)
      throw std::runtime_error("soak: the host reference does not reproduce the spec's test vector for int" +
                               std::to_string(p.bits) + " g" + std::to_string(p.group) +
                               (p.sym ? " sym" : " asym") + ": SHA-256 " + got + ", want " + p.sha +
                               " (docs/flash-communication.md)");
  }
}

uint16_t to_half(float f) { return __half_raw(__float2half_rn(f)).x; }
uint16_t to_bf16(float f) {  // round to nearest even (inputs are finite)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
float from_half(uint16_t h) { return half_bits_to_float(h); }
float from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---------------------------------------------------------------- device check

// Compares every rank's output with the first call's (ref) word by word, counts mismatches and
// remembers the first call that had one, then poisons the outputs (0xA5 bytes).
__global__ void compare_and_poison(uint32_t* const* outs, int ranks, const uint32_t* ref, size_t words,
                                   unsigned long long call, unsigned long long* mismatches,
                                   unsigned long long* first_bad_call) {
  const size_t n = (size_t)ranks * words;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t* o = outs[i / words];
    const size_t w = i % words;
    if (o[w] != ref[w]) {
      atomicAdd(mismatches, 1ull);
      atomicMin(first_bad_call, call);
    }
    o[w] = 0xA5A5A5A5u;
  }
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int cmd_soak_allreduce(const Args& a) {
  const long long calls = a.get_int("calls", 100000);
  const int ranks = (int)a.get_int("ranks", 8);
  const size_t rows = (size_t)a.get_int("rows", 4), width = (size_t)a.get_int("width", 1024);
  const int bits = (int)a.get_int("bits", 8), group = (int)a.get_int("group", 128);
  const bool sym = a.has("sym");
  const std::string dts = a.get("dtype", "f32");
  const long long every = a.get_int("check-every", 1000);
  const double timeout_s = (double)a.get_int("timeout", 60);
  const int kernels = (int)a.get_int("kernels", 6);
  if (calls < 1 || every < 1 || timeout_s < 1 || ranks < 1 || rows < 1 || width < 1)
    throw std::runtime_error("soak allreduce: --calls, --check-every, --timeout, --ranks, --rows and --width must be positive");
  if (dts != "f32" && dts != "f16" && dts != "bf16") throw std::runtime_error("soak allreduce: --dtype f32, f16 or bf16");
  const int dt = dts == "f32" ? ODY_DTYPE_F32 : dts == "f16" ? ODY_DTYPE_F16 : ODY_DTYPE_BF16;
  const size_t es = dt == ODY_DTYPE_F32 ? 4 : 2;
  if (kernels == 8) throw std::runtime_error("soak allreduce: --kernels 8 is the reduce's bandwidth probe, not a codec (bench codec only)");
  ody_check(ody_fc_set_kernels(kernels), "--kernels");
  ody_check(ody_fc_can_implement(rows, width, ranks, dt, bits, group, sym), "soak allreduce");
  if ((rows * width * es) % 4 != 0) throw std::runtime_error("soak allreduce: rows·width must be even for 16-bit outputs");

  // The expected output, from the host reference (itself checked against the spec first).
  check_host_reference();
  auto in = test_vector(ranks, rows, width);
  const size_t vals = rows * width;
  std::vector<uint8_t> in_dt(in.size() * es), want(vals * es);
  for (size_t e = 0; e < in.size(); e++) {  // inputs rounded to dtype; the reference sees them widened
    if (dt == ODY_DTYPE_F32) {
      std::memcpy(&in_dt[4 * e], &in[e], 4);
    } else {
      uint16_t h = dt == ODY_DTYPE_F16 ? to_half(in[e]) : to_bf16(in[e]);
      std::memcpy(&in_dt[2 * e], &h, 2);
      in[e] = dt == ODY_DTYPE_F16 ? from_half(h) : from_bf16(h);
    }
  }
  auto out = host_allreduce(in, ranks, rows, width, bits, group, sym);
  for (size_t e = 0; e < vals; e++) {
    if (dt == ODY_DTYPE_F32) {
      std::memcpy(&want[4 * e], &out[e], 4);
    } else {
      uint16_t h = dt == ODY_DTYPE_F16 ? to_half(out[e]) : to_bf16(out[e]);
      std::memcpy(&want[2 * e], &h, 2);
    }
  }
  const std::string want_sha = sha256_hex(want.data(), want.size());

  std::vector<DeviceBuffer> ins, outs;
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (int i = 0; i < ranks; i++) {
    ins.emplace_back(vals * es);
    ins.back().upload(in_dt.data() + (size_t)i * vals * es, vals * es);
    outs.emplace_back(vals * es);
    outs.back().fill(0xA5);
    in_ptrs.push_back(ins.back().get());
    out_ptrs.push_back(outs.back().get());
  }
  DeviceBuffer ws(ody_allreduce_sim_workspace_size(ranks, rows, width, bits, group, sym));
  DeviceBuffer flag(sizeof(int)), ref(vals * es), counters(2 * sizeof(unsigned long long)), outs_dev(ranks * sizeof(void*));
  flag.fill(0);
  outs_dev.upload(out_ptrs.data(), ranks * sizeof(void*));
  const unsigned long long init[2] = {0, ~0ull};
  counters.upload(init, sizeof(init));
  CK(cudaDeviceSynchronize());  // the fills above ran on the legacy stream
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  auto call = [&] {
    ody_check(ody_allreduce_sim(in_ptrs.data(), out_ptrs.data(), ranks, rows, width, dt, bits, group, sym, ws.get(),
                                flag.get<int>(), st),
              "ody_allreduce_sim");
  };

  // Watchdog: the main thread moves `checked` forward at every completed check.
  std::atomic<long long> checked{0};
  std::atomic<double> last{now_s()};
  std::atomic<bool> done{false};
  std::thread dog([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (!done && now_s() - last.load() > timeout_s) {
        std::string msg = "soak allreduce: no progress for " + std::to_string((int)timeout_s) + " s after call " +
                          std::to_string(checked.load()) + " of " + std::to_string(calls) +
                          " (a hang: the stream did not complete)";
        std::fprintf(stderr, "odyssey-rt: %s\n", msg.c_str());
        std::printf("{\"ok\":false,\"error\":\"%s\"}\n", msg.c_str());
        std::fflush(stdout);
        std::_Exit(3);
      }
    }
  });
  struct Joiner {
    std::atomic<bool>& done;
    std::thread& t;
    ~Joiner() {
      done = true;
      t.join();
    }
  } joiner{done, dog};

  // Call 1: against the expected result.
  call();
  CK(cudaStreamSynchronize(st));
  std::string first_error;
  for (int k = 0; k < ranks && first_error.empty(); k++) {
    std::vector<uint8_t> got(vals * es);
    outs[k].download(got.data(), got.size());
    for (size_t e = 0; e < vals; e++)
      if (std::memcmp(&got[e * es], &want[e * es], es) != 0) {
        float gv, wv;
        if (es == 4) {
          std::memcpy(&gv, &got[4 * e], 4), std::memcpy(&wv, &want[4 * e], 4);
        } else {
          uint16_t g16, w16;
          std::memcpy(&g16, &got[2 * e], 2), std::memcpy(&w16, &want[2 * e], 2);
          gv = dt == ODY_DTYPE_F16 ? from_half(g16) : from_bf16(g16);
          wv = dt == ODY_DTYPE_F16 ? from_half(w16) : from_bf16(w16);
        }
        first_error = "call 1, rank " + std::to_string(k) + ", value " + std::to_string(e) + ": " +
                      std::to_string(gv) + ", want " + std::to_string(wv) + " (the spec's result)";
        break;
      }
    if (k == 0 && first_error.empty()) ref.upload(got.data(), got.size());
  }
  int flags = 0;
  flag.download(&flags, sizeof(int));
  if (first_error.empty() && flags) first_error = "call 1 raised the error flag " + std::to_string(flags);
  if (!first_error.empty()) {
    std::fprintf(stderr, "soak allreduce: FAIL: %s\n", first_error.c_str());
    JsonWriter w;
    w.begin_object().field("ok", false).field("error", "soak allreduce: " + first_error).end_object();
    std::cout << w.str() << std::endl;
    return 1;
  }
  for (auto& o : outs) o.fill(0xA5);
  // cudaMemset runs on the legacy stream, which a non-blocking stream does not wait for.
  CK(cudaDeviceSynchronize());
  checked = 1;
  last = now_s();

  // Calls 2..N: against call 1, on the device.
  const double t0 = now_s();
  unsigned long long host_counters[2] = {0, ~0ull};
  long long done_calls = 1;
  std::string error;
  while (done_calls < calls && error.empty()) {
    const long long batch = std::min(every, calls - done_calls);
    for (long long c = 0; c < batch; c++) {
      call();
      compare_and_poison<<<64, 256, 0, st>>>(outs_dev.get<uint32_t*>(), ranks, ref.get<uint32_t>(), vals * es / 4,
                                             (unsigned long long)(done_calls + c + 1), counters.get<unsigned long long>(),
                                             counters.get<unsigned long long>() + 1);
      CK(cudaGetLastError());
    }
    CK(cudaStreamSynchronize(st));
    done_calls += batch;
    CK(cudaMemcpy(host_counters, counters.get(), sizeof(host_counters), cudaMemcpyDeviceToHost));
    flag.download(&flags, sizeof(int));
    if (host_counters[0])
      error = std::to_string(host_counters[0]) + " values differ from call 1's output, first at call " +
              std::to_string(host_counters[1]) + " (drift)";
    else if (flags)
      error = "the error flag was raised (" + std::to_string(flags) + ") by a call among " +
              std::to_string(done_calls - batch + 1) + ".." + std::to_string(done_calls);
    checked = done_calls;
    last = now_s();
    if (done_calls % (every * 10) == 0 || done_calls == calls)
      std::fprintf(stderr, "soak allreduce: %lld/%lld calls, %.0f calls/s\n", done_calls, calls,
                   (done_calls - 1) / std::max(1e-9, now_s() - t0));
  }
  const double secs = now_s() - t0;
  CK(cudaStreamDestroy(st));
  JsonWriter w;
  w.begin_object();
  w.field("ok", error.empty());
  if (!error.empty()) w.field("error", "soak allreduce: " + error);
  w.field("calls", done_calls);
  w.field("ranks", ranks);
  w.field("rows", (unsigned long long)rows);
  w.field("width", (unsigned long long)width);
  w.field("bits", bits);
  w.field("group", group);
  w.field("symmetric", sym);
  w.field("dtype", dts);
  w.field("kernels", ody_fc_kernels());
  w.field("expected_sha256", want_sha);
  w.field("mismatched_values", (long long)host_counters[0]);
  w.field("calls_per_s", (done_calls - 1) / std::max(1e-9, secs));
  w.end_object();
  std::cout << w.str() << std::endl;
  std::fprintf(stderr, "soak allreduce: %s: %lld calls of %d ranks (%zu×%zu, int%d g%d %s, %s), %.0f calls/s\n",
               error.empty() ? "ok" : ("FAIL: " + error).c_str(), done_calls, ranks, rows, width, bits, group,
               sym ? "sym" : "asym", dts.c_str(), (done_calls - 1) / std::max(1e-9, secs));
  return error.empty() ? 0 : 1;
}

}  // namespace odyssey
