// emulate_fc_kernels.cpp: the version-2 to 7 Flash Communication kernels (flashcomm_kernels.cuh) run on
// the host, each warp emulated by 32 threads that meet at a barrier at every shuffle and vote,
// against the Go cases (odyssey testdata codec-cases --out DIR; docs/codec-cases.md):
//
//   emulate_fc_kernels DIR [--v2|--v3|--v4|--v5|--v6|--v7]   (v2–v3 take the generic integer-scale
//                                              reduce; v4–v6 the fast one, 16-byte pieces staged
//                                              through shared memory, whose cp.async copies happen
//                                              at once here; v6's INT4 quantize loads each warp's
//                                              next tile early; v7's INT4 g128 reduce runs its
//                                              mma's on fragments exchanged at a warp barrier)
//
// It runs the same launches as ody_allreduce_sim (quantize every rank, the all-to-all as copies,
// reduce, the all-gather as copies, dequantize) through the header's own dispatch (group layout,
// pieces, grid-stride loops over a small grid so that every warp walks several tiles), and
// compares bit for bit: every message after step 1, every requantized message after step 3,
// every rank's output, for float32 and, for grid16 cases, fp16 and bf16 inputs; then the
// residual-add dequantization. No GPU is involved, so it checks the kernels' indexing, the
// layouts, the tie rule across lanes, the float tricks and the wire format, with the host's IEEE
// binary32 arithmetic standing in for the device's (the NaN-propagating min/max take their
// portable branch here, the PTX one on the device). Compile with -ffp-contract=off.
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// ---------------------------------------------------------------- stand-ins for CUDA

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx, blockIdx;
Dim3 gridDim;

struct uint2 {
  uint32_t x, y;
};
struct uint4 {
  uint32_t x, y, z, w;
};
struct float2 {
  float x, y;
};
struct float4 {
  float x, y, z, w;
};
inline uint2 make_uint2(uint32_t x, uint32_t y) { return {x, y}; }
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// One IEEE binary32 operation each.
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __int_as_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline uint32_t __umulhi(uint32_t a, uint32_t b) { return (uint32_t)(((uint64_t)a * b) >> 32); }
inline uint32_t min(uint32_t a, uint32_t b) { return a < b ? a : b; }
inline uint32_t max(uint32_t a, uint32_t b) { return a > b ? a : b; }
inline int32_t min(int32_t a, int32_t b) { return a < b ? a : b; }
inline int32_t max(int32_t a, int32_t b) { return a > b ? a : b; }
// Conversions of the integer-scale reduce: round to nearest even, as the host's default mode.
inline float __int2float_rn(int32_t x) { volatile float r = (float)x; return r; }
inline float __ll2float_rn(long long x) { volatile float r = (float)x; return r; }
inline float __frcp_rn(float a) { volatile float r = 1.0f / a; return r; }
inline float __fmaf_rn(float a, float b, float c) { volatile float r = std::fmaf(a, b, c); return r; }
// PTX prmt (default mode): byte n of the result is byte s_n of the 8-byte value {y, x}.
inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
  const uint64_t v = ((uint64_t)y << 32) | x;
  uint32_t r = 0;
  for (int n = 0; n < 4; n++) r |= (uint32_t)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xff) << (8 * n);
  return r;
}
inline int atomicOr(int* p, int v) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lk(mu);
  int old = *p;
  *p |= v;
  return old;
}

// 16-bit floats, stored as bits; conversions round to nearest even.
struct __half {
  uint16_t x;
};
struct __half2 {
  __half a, b;
};
struct __nv_bfloat16 {
  uint16_t x;
};
inline float half_to_float(uint16_t h) {
  const uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {  // zero or subnormal: m·2^−24, exact in float
    float f = (float)m * 0x1p-24f;
    return s ? -f : f;
  }
  if (e == 31) return __int_as_float(s | 0x7f800000u | (m << 13));
  return __int_as_float(s | ((e + 112) << 23) | (m << 13));
}
inline uint16_t float_to_half(float f) {  // RNE, finite inputs in these tests
  const uint32_t u = __float_as_uint(f), s = (u >> 16) & 0x8000;
  const float a = std::fabs(f);
  if (a >= 65520.0f) return (uint16_t)(s | 0x7c00);
  if (a < 0x1p-14f) {  // subnormal half: round a·2^24 to an integer, ties to even
    return (uint16_t)(s | (uint32_t)std::nearbyint(a * 0x1p24f));
  }
  uint32_t e = ((u >> 23) & 0xff) - 112, m = u & 0x7fffff;
  uint32_t h = (e << 10) | (m >> 13);
  const uint32_t rest = m & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
  return (uint16_t)(s | h);
}
inline float2 __half22float2(__half2 h) { return {half_to_float(h.a.x), half_to_float(h.b.x)}; }
inline __half __float2half_rn(float f) { return {float_to_half(f)}; }
inline float __bfloat162float(__nv_bfloat16 b) { return __int_as_float((uint32_t)b.x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u = __float_as_uint(f);
  u += 0x7fffu + ((u >> 16) & 1u);
  return {(uint16_t)(u >> 16)};
}

// Warps: 32 threads; a shuffle or vote is a store, a barrier, a load, a barrier.
struct Warp {
  std::barrier<> bar{32};
  uint64_t slot[32];
  uint32_t frag[32][6];  // the v7 reduce's mma: each lane's a- and b-registers
};
thread_local Warp* tl_warp = nullptr;

// Every lane posts v and reads lane src's.
template <class T>
T warp_exchange(T v, int src) {
  const int lane = threadIdx.x & 31;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  tl_warp->slot[lane] = bits;
  tl_warp->bar.arrive_and_wait();
  T r;
  std::memcpy(&r, &tl_warp->slot[src], sizeof(T));
  tl_warp->bar.arrive_and_wait();
  return r;
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int o, int width = 32) {
  const int lane = threadIdx.x & 31;
  return warp_exchange(v, ((lane ^ o) & (width - 1)) | (lane & ~(width - 1)));
}
inline bool __any_sync(unsigned, bool p) {
  const int lane = threadIdx.x & 31;
  tl_warp->slot[lane] = p ? 1 : 0;
  tl_warp->bar.arrive_and_wait();
  bool any = false;
  for (int i = 0; i < 32; i++) any |= tl_warp->slot[i] != 0;
  tl_warp->bar.arrive_and_wait();
  return any;
}

template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return warp_exchange(v, src & 31);
}
inline unsigned __ballot_sync(unsigned, bool p) {
  const int lane = threadIdx.x & 31;
  tl_warp->slot[lane] = p ? 1 : 0;
  tl_warp->bar.arrive_and_wait();
  unsigned m = 0;
  for (int i = 0; i < 32; i++) m |= (tl_warp->slot[i] != 0 ? 1u : 0u) << i;
  tl_warp->bar.arrive_and_wait();
  return m;
}
// redux.sync.min/max.s32 (sm_80+).
template <bool MAX>
int32_t warp_reduce(int32_t v) {
  const int lane = threadIdx.x & 31;
  tl_warp->slot[lane] = (uint64_t)(uint32_t)v;
  tl_warp->bar.arrive_and_wait();
  int32_t r = (int32_t)(uint32_t)tl_warp->slot[0];
  for (int i = 1; i < 32; i++) {
    const int32_t x = (int32_t)(uint32_t)tl_warp->slot[i];
    r = MAX ? (x > r ? x : r) : (x < r ? x : r);
  }
  tl_warp->bar.arrive_and_wait();
  return r;
}
inline int __reduce_min_sync(unsigned, int v) { return warp_reduce<false>(v); }
inline int __reduce_max_sync(unsigned, int v) { return warp_reduce<true>(v); }

// __syncwarp: a barrier of the warp's 32 threads (the v5 reduce's shared-memory stages).
inline void __syncwarp(unsigned = 0xffffffffu) { tl_warp->bar.arrive_and_wait(); }

#include "flashcomm_kernels.cuh"

namespace odyssey {
namespace {

// A grid of one block (8 warps): small, so that warps loop over several tiles. The largest
// case quantizes 9216 values per rank, 9 tiles of 1024: with 3 blocks (24 warps, as before v6)
// no warp of the quantize ever reached its second tile, and a v6 that encoded its prefetched
// next tile in place of the current one passed.
unsigned wave_grid(const void*, size_t, size_t) { return 1; }

// mma.sync.aligned.m16n8k32.row.col.s32.u8.u8.s32 from the PTX ISA's fragment layouts (lane = 4·g
// + t): A element (row, k) is byte k%4 of a-register (row ≥ 8) + 2·(k ≥ 16) of lane 4·(row%8) +
// (k%16)/4; B element (k, n) is byte k%4 of b-register (k ≥ 16) of lane 4·n + (k%16)/4; the lane's
// d[i] is (row, col) = (g + 8·(i ≥ 2), 2t + i%2).
void fc_mma_u8_16832(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const int32_t (&c)[4]) {
  const int lane = threadIdx.x & 31;
  for (int q = 0; q < 4; q++) tl_warp->frag[lane][q] = a[q];
  tl_warp->frag[lane][4] = b[0], tl_warp->frag[lane][5] = b[1];
  tl_warp->bar.arrive_and_wait();
  auto A = [](int row, int k) {
    return (tl_warp->frag[4 * (row % 8) + (k % 16) / 4][(row >= 8) + 2 * (k >= 16)] >> (8 * (k % 4))) & 0xffu;
  };
  auto B = [](int k, int n) { return (tl_warp->frag[4 * n + (k % 16) / 4][4 + (k >= 16)] >> (8 * (k % 4))) & 0xffu; };
  for (int i = 0; i < 4; i++) {
    const int row = lane / 4 + 8 * (i >= 2), col = 2 * (lane % 4) + i % 2;
    int64_t sum = c[i];
    for (int k = 0; k < 32; k++) sum += (int64_t)A(row, k) * B(k, col);
    d[i] = (int32_t)sum;
  }
  tl_warp->bar.arrive_and_wait();
}

// Dynamic shared memory: blocks run one after another, so one buffer serves every block
// (fc5_smem_bytes(8) = 96 KiB).
alignas(16) uint8_t g_smem[128 * 1024];
uint8_t* fc_dyn_smem() { return g_smem; }

template <class... P, class... A>
void fc_launch(void (*k)(P...), unsigned grid, void*, A... a);
template <class... P, class... A>
void fc_launch_smem(void (*k)(P...), unsigned grid, size_t smem, void* st, A... a) {
  if (smem > sizeof(g_smem)) throw std::runtime_error("fc_launch_smem: emulated shared memory too small");
  std::memset(g_smem, 0xA5, smem);  // stale bytes from an earlier launch must not matter
  fc_launch(k, grid, st, a...);
}
template <class... P, class... A>
void fc_launch(void (*k)(P...), unsigned grid, void*, A... a) {
  gridDim.x = grid;
  for (unsigned b = 0; b < grid; b++) {
    std::vector<std::unique_ptr<Warp>> warps;
    for (int w = 0; w < kThreads / 32; w++) warps.emplace_back(new Warp);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++)
      ts.emplace_back([&, t] {
        threadIdx.x = t;
        blockIdx.x = b;
        tl_warp = warps[t / 32].get();
        k(a...);
      });
    for (auto& t : ts) t.join();
  }
}

}  // namespace
}  // namespace odyssey

#include "safetensors.hpp"
#include "json.hpp"

using namespace odyssey;

namespace {

int g_version = 2;  // kernels 2, 3 (reciprocal with the tie check), 4 (3 with the rescheduled reduce) or 5

size_t slot_of(const Geometry& g) {
  return (g.code_bytes + g.ngroups * (g.sym ? 4 : 8) + 15) / 16 * 16;
}

long long meta_ll(const SafetensorsFile& f, const std::string& k) {
  return std::stoll(f.metadata_ref().at(k));
}

const char* names[3] = {"f16", "bf16", "f32"};

// Inputs in dtype dt (exact for grid16 cases), as raw bytes.
std::vector<uint8_t> to_dtype(const float* v, size_t n, int dt) {
  std::vector<uint8_t> out(n * (dt == ODY_DTYPE_F32 ? 4 : 2));
  for (size_t i = 0; i < n; i++) {
    if (dt == ODY_DTYPE_F32) {
      std::memcpy(&out[4 * i], &v[i], 4);
    } else {
      uint16_t h = dt == ODY_DTYPE_F16 ? float_to_half(v[i]) : __float2bfloat16_rn(v[i]).x;
      std::memcpy(&out[2 * i], &h, 2);
    }
  }
  return out;
}

template <class T>
void quantize(const void* x, const Geometry& g, size_t width, uint8_t* m, size_t slot, int* flag) {
  quantize_codec(g_version, static_cast<const T*>(x), g, width, m, slot, flag, nullptr);
}
template <class T>
void dequantize(const uint8_t* r, const Geometry& g, size_t width, size_t slot, const void* res, void* y) {
  dequantize2_codec(r, g, width, slot, static_cast<const T*>(res), static_cast<T*>(y), nullptr);
}
void reduce(const uint8_t* r, int n, const Geometry& g, size_t slot, uint8_t* out, int* flag) {
  reduce_codec(g_version, r, n, g, slot, out, flag, nullptr);  // flashcomm.cu's dispatch
}

// Returns the number of differing bytes/values (0: bit-exact); prints the first.
long long run_case(const std::string& name, const SafetensorsFile& f, int dt) {
  const int n = (int)meta_ll(f, "ranks");
  const size_t rows = (size_t)meta_ll(f, "rows"), width = (size_t)meta_ll(f, "width");
  const int bits = (int)meta_ll(f, "bits"), group = (int)meta_ll(f, "group");
  const bool sym = f.metadata_ref().at("symmetric") == "true";
  const size_t mb = (size_t)meta_ll(f, "message_bytes"), vals = rows * width, es = dt == ODY_DTYPE_F32 ? 4 : 2;
  auto in = f.typed<float>("inputs", DType::F32, {n, (int64_t)rows, (int64_t)width});
  auto sent = f.typed<uint8_t>("sent", DType::U8, {n, n, (int64_t)mb});
  auto red = f.typed<uint8_t>("reduced", DType::U8, {n, (int64_t)mb});
  auto out = f.typed<float>("output", DType::F32, {(int64_t)rows, (int64_t)width});
  const Geometry g = geometry(rows, width / n, bits, group, sym);
  const size_t slot = slot_of(g), nn = (size_t)n * n;
  std::vector<uint8_t> ws((3 * nn + n) * slot + 16, 0);
  uint8_t *sentw = ws.data(), *recv = sentw + nn * slot, *reduced = recv + nn * slot, *gathered = reduced + n * slot;
  int flag = 0;
  long long diff = 0;
  std::string first;
  std::vector<std::vector<uint8_t>> xin(n), y(n, std::vector<uint8_t>(vals * es, 0xA5));
  for (int i = 0; i < n; i++) {
    xin[i] = to_dtype(in.data() + i * vals, vals, dt);
    uint8_t* m = sentw + (size_t)i * n * slot;
    if (dt == ODY_DTYPE_F32) quantize<float>(xin[i].data(), g, width, m, slot, &flag);
    else if (dt == ODY_DTYPE_F16) quantize<__half>(xin[i].data(), g, width, m, slot, &flag);
    else quantize<__nv_bfloat16>(xin[i].data(), g, width, m, slot, &flag);
  }
  for (size_t i = 0; i < (size_t)n; i++)
    for (size_t j = 0; j < (size_t)n; j++) {
      for (size_t b = 0; b < mb; b++)
        if (sentw[(i * n + j) * slot + b] != sent.data()[(i * n + j) * mb + b]) {
          if (first.empty()) first = "sent[" + std::to_string(i) + "][" + std::to_string(j) + "] byte " + std::to_string(b);
          diff++;
        }
      std::memcpy(recv + (j * n + i) * slot, sentw + (i * n + j) * slot, mb);
    }
  for (int j = 0; j < n; j++) reduce(recv + (size_t)j * n * slot, n, g, slot, reduced + j * slot, &flag);
  for (size_t j = 0; j < (size_t)n; j++) {
    for (size_t b = 0; b < mb; b++)
      if (reduced[j * slot + b] != red.data()[j * mb + b]) {
        if (first.empty()) first = "reduced[" + std::to_string(j) + "] byte " + std::to_string(b);
        diff++;
      }
    for (size_t k = 0; k < (size_t)n; k++) std::memcpy(gathered + (k * n + j) * slot, reduced + j * slot, mb);
  }
  auto want = to_dtype(out.data(), vals, dt);
  for (int k = 0; k < n; k++) {
    const uint8_t* gk = gathered + (size_t)k * n * slot;
    if (dt == ODY_DTYPE_F32) dequantize<float>(gk, g, width, slot, nullptr, y[k].data());
    else if (dt == ODY_DTYPE_F16) dequantize<__half>(gk, g, width, slot, nullptr, y[k].data());
    else dequantize<__nv_bfloat16>(gk, g, width, slot, nullptr, y[k].data());
    for (size_t e = 0; e < vals; e++)
      if (std::memcmp(&y[k][e * es], &want[e * es], es) != 0) {
        if (first.empty()) first = "output of rank " + std::to_string(k) + " at " + std::to_string(e);
        diff++;
      }
  }
  if (dt == ODY_DTYPE_F32) {  // residual add: fl(residual + output)
    std::vector<float> yr(vals);
    dequantize<float>(gathered, g, width, slot, xin[0].data(), yr.data());
    for (size_t e = 0; e < vals; e++) {
      const float w = __fadd_rn(in.data()[e], out.data()[e]);
      if (__float_as_uint(yr[e]) != __float_as_uint(w)) {
        if (first.empty()) first = "residual output at " + std::to_string(e);
        diff++;
      }
    }
  }
  if (flag) {
    diff++;
    if (first.empty()) first = "error flag " + std::to_string(flag);
  }
  std::printf("%-44s %-4s %s%s\n", name.c_str(), names[dt], diff ? "FAIL: first difference: " : "ok",
              first.c_str());
  return diff;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string opt = argc == 3 ? argv[2] : "";
  if (argc < 2 || argc > 3 ||
      (argc == 3 && opt != "--rcp" && opt != "--v2" && opt != "--v3" && opt != "--v4" && opt != "--v5" &&
                    opt != "--v6" && opt != "--v7")) {
    std::fprintf(stderr, "usage: emulate_fc_kernels DIR [--v2|--v3|--v4|--v5|--v6|--v7]   (DIR: odyssey testdata codec-cases --out DIR;\n"
                         "       kernels v2 (default), v3: the division by a reciprocal with the tie check (--rcp too),\n"
                         "       v4: v3 with the reduce that loads every rank of a piece first,\n"
                         "       v5: v4 with the reduce staged through shared memory and the LOP3 INT4 decode,\n"
                         "       v6: v5 with the quantize's next tile loaded before the current one is encoded,\n"
                         "       v7: v6 with the INT4 g128 reduce on (emulated) tensor cores)\n");
    return 2;
  }
  g_version = opt == "--v7" ? 7 : opt == "--v6" ? 6 : opt == "--v5" ? 5 : opt == "--v4" ? 4 : opt == "--v3" || opt == "--rcp" ? 3 : 2;
  std::printf("emulate_fc_kernels: kernels v%d\n", g_version);
  const std::string dir = argv[1];
  Json manifest = parse_json(read_small_file(dir + "/manifest.json", 1 << 20));
  int passed = 0, failed = 0;
  for (const Json& c : manifest.find("cases")->elems()) {
    const std::string name = c.find("name")->as_string(), file = c.find("file")->as_string();
    SafetensorsFile f = SafetensorsFile::open(dir + "/" + file);
    std::vector<int> dts = {ODY_DTYPE_F32};
    auto it = f.metadata_ref().find("grid16");
    if (it != f.metadata_ref().end() && it->second == "true") dts.insert(dts.end(), {ODY_DTYPE_F16, ODY_DTYPE_BF16});
    for (int dt : dts) (run_case(name, f, dt) ? failed : passed)++;
  }
  std::printf("emulate_fc_kernels: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
