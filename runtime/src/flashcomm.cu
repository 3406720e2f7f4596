// flashcomm.cu: Flash Communication, the compressed tensor-parallel all-reduce: the codec
// kernels (quantize, dequantize-sum-requantize, dequantize with an optional residual add), the
// NCCL all-reduce built on them, and a one-GPU simulation of N ranks.
//
// What it computes: docs/flash-communication.md, operation by operation, bit-exact with the Go
// reference quant.FlashComm (EncodeChunk / DecodeChunk / AllReduceRanks):
//   asymmetric: lo = min v, hi = max v (first of equal values wins), s = (hi − lo) / (2^b − 1),
//               s = 1 if s == 0, q = min(rint((v − lo) ⊘ s), 2^b − 1); v' = (q·s) + lo;
//   symmetric:  a = max|v|, s = a / (2^(b−1) − 1), s = 1 if s == 0,
//               q = clamp(rint(v ⊘ s), ±(2^(b−1) − 1)); v' = q·s;
//   d ⊘ s:      d·fl(1/s) (two roundings) for a normal s, d / s for a subnormal one;
//   step 3:     the integer-scale reduce: per group E = the largest scale exponent among the
//               ranks, m_i = round(s_i·2^(146−E)) (≤ 2^20), acc = Σ q_i·m_i exactly (integers),
//               t = fl(fl(acc)·2^(E−146)) (+ L, the float32 sum of the minima in rank order from
//               +0); requantize t.
// Every operation is one IEEE binary32 operation rounded to nearest even: __fsub_rn, __fdiv_rn,
// __fmul_rn, __fadd_rn, rintf (half to even), or an exact equivalent (flashcomm_kernels.cuh: the
// one explicit __fmaf_rn there is an exact product rounded once). Nothing is contracted into an FMA;
// the build also compiles this file with -fmad=false -ftz=false -prec-div=true (CMakeLists.txt),
// and it must never see --use_fast_math.
//
// Layout: the wire format of the spec ("What travels"): per message (one chunk of rows × C
// values) the codes row-major (INT8 one byte each, INT4 two per byte with the even column in the
// low nibble; two's complement when symmetric), then the float32 scales of every group
// (row-major), then for asymmetric groups the float32 minima. A buffer of messages holds
// message j at j·slot, slot = message bytes rounded up to 16.
//
// Shape of the kernels: versions 2 to 7 (flashcomm_kernels.cuh: grid-stride warps over tiles of
// 32 values per lane, several groups per warp, exact float tricks instead of int/float
// conversions; 3 divides by a checked reciprocal; 4–7 take the fast reduce (2, 4 or 8 ranks,
// double-buffered); 6, the default, also prefetches in the quantize; 7 is 6 with the INT4 g128
// reduce on tensor cores, an A/B option: bit-exact, not faster on the H200) and version 1 (one thread per
// 8 values in quantize and dequantize, kept for A/B runs: ody_fc_set_kernels). Every version's
// reduce is the integer-scale reduce. All compute the same bits.
//
// Limits: bits 4 or 8; G a power of two in 8..256 (the spec allows any multiple of 8; groups like
// 24 or 48 are refused with ODY_ERR_UNSUPPORTED); width = ranks·C with G | C; fewer than 2^35
// values per call; x, y, residual and message buffers 16-byte aligned.
//
// Test: odyssey testdata codec-cases --out DIR, then odyssey-rt test codec --cases DIR (every
// case through ody_allreduce_sim: the wire bytes after step 1 and step 3 and every rank's output
// compared bit for bit with Go; docs/codec-cases.md). Speed: odyssey-rt bench codec, and
// odyssey-rt bench allreduce under runtime/scripts/launch-allreduce.sh (ODYSSEY_WITH_NCCL).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "flashcomm_kernels.cuh"  // Geometry, element loads, the version-2 kernels
#include "odyssey_rt.h"
#include "status.hpp"

#ifdef ODYSSEY_WITH_NCCL
#include <nccl.h>
#endif

namespace odyssey {
namespace {

size_t message_bytes(const Geometry& g) { return g.code_bytes + g.ngroups * (g.sym ? 4 : 8); }
size_t slot_bytes(const Geometry& g) { return (message_bytes(g) + 15) / 16 * 16; }

// ---------------------------------------------------------------- the codec of one group

// Butterfly combination over the tpg lanes of a group (tpg a power of two ≤ 32). Every lane of
// the warp executes the shuffles (inactive lanes carry dummy values), so the full mask is right.
__device__ __forceinline__ int group_or(int x, int tpg) {
  for (int o = 1; o < tpg; o <<= 1) x |= __shfl_xor_sync(0xffffffffu, x, o, tpg);
  return x;
}
__device__ __forceinline__ float group_max(float x, int tpg) {
  for (int o = 1; o < tpg; o <<= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o, tpg));
  return x;
}
// Minimum (kMin) or maximum with the index of its first occurrence: the result of the spec's
// first-to-last scan with strict comparisons (among values comparing equal, i.e. ±0, the first
// one wins). (value, index) ordered lexicographically is a total order, so the tree is exact.
template <bool kMin>
__device__ __forceinline__ float group_extreme(float v, int idx, int tpg) {
  for (int o = 1; o < tpg; o <<= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o, tpg);
    int oi = __shfl_xor_sync(0xffffffffu, idx, o, tpg);
    bool take = kMin ? (ov < v || (ov == v && oi < idx)) : (ov > v || (ov == v && oi < idx));
    if (take) v = ov, idx = oi;
  }
  return v;
}

// The spec's quotient d/s of the quantization: fl(d·fl(1/s)) for a normal scale, the division
// for a subnormal (or NaN) one.
__device__ __forceinline__ float spec_quotient(float d, float s) {
  return s >= 0x1p-126f ? __fmul_rn(d, __frcp_rn(s)) : __fdiv_rn(d, s);
}

// Quantizes the group whose 8 values at lane `sub` are v and writes its codes, scale and minimum
// into the message `msg` as its group gi. bad: this lane holds an out-of-domain value.
__device__ void quantize_group(const float v[8], bool bad, int sub, const Geometry& g, size_t gi, uint8_t* msg,
                               bool active, int* flag, int flag_bit) {
  const int tpg = g.tpg;
  bad = group_or(bad ? 1 : 0, tpg) != 0;
  float s, lo = 0.f;
  uint32_t packed_lo = 0, packed_hi = 0;  // INT4: packed_lo only; INT8: both words
  if (g.sym) {
    const float qs = (float)((1 << (g.bits - 1)) - 1);
    float a = 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++) a = fmaxf(a, fabsf(v[k]));
    a = group_max(a, tpg);
    s = __fdiv_rn(a, qs);
    if (s == 0.f) s = 1.f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
      float q = fminf(fmaxf(rintf(spec_quotient(v[k], s)), -qs), qs);
      uint32_t c = (uint32_t)(int)q;
      if (g.bits == 4)
        packed_lo |= (c & 0xfu) << (4 * k);
      else if (k < 4)
        packed_lo |= (c & 0xffu) << (8 * k);
      else
        packed_hi |= (c & 0xffu) << (8 * (k - 4));
    }
  } else {
    const float qa = (float)((1 << g.bits) - 1);
    float mn = v[0], mx = v[0];
    int mni = 0, mxi = 0;
#pragma unroll
    for (int k = 1; k < 8; k++) {
      if (v[k] < mn) mn = v[k], mni = k;
      if (v[k] > mx) mx = v[k], mxi = k;
    }
    lo = group_extreme<true>(mn, sub * 8 + mni, tpg);
    const float hi = group_extreme<false>(mx, sub * 8 + mxi, tpg);
    s = __fdiv_rn(__fsub_rn(hi, lo), qa);
    if (s == 0.f) s = 1.f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
      float q = fminf(rintf(spec_quotient(__fsub_rn(v[k], lo), s)), qa);  // ≥ 0: no lower clamp
      uint32_t c = (uint32_t)(int)q;
      if (g.bits == 4)
        packed_lo |= c << (4 * k);
      else if (k < 4)
        packed_lo |= c << (8 * k);
      else
        packed_hi |= c << (8 * (k - 4));
    }
  }
  if (bad) {  // meaningless codes: send zeros with a NaN scale and minimum, and raise the flag
    packed_lo = packed_hi = 0;
    s = lo = __int_as_float(0x7fc00000);
  }
  if (!active) return;
  if (g.bits == 4) {
    *reinterpret_cast<uint32_t*>(msg + gi * (size_t)g.group / 2 + sub * 4) = packed_lo;
  } else {
    *reinterpret_cast<uint2*>(msg + gi * (size_t)g.group + sub * 8) = make_uint2(packed_lo, packed_hi);
  }
  if (sub == 0) {
    float* meta = reinterpret_cast<float*>(msg + g.code_bytes);
    meta[gi] = s;
    if (!g.sym) meta[g.ngroups + gi] = lo;
    if (bad && flag) atomicOr(flag, flag_bit);
  }
}

// Decodes the 8 values of lane `sub` of group gi of msg: (q·s) + lo, or q·s when symmetric.
__device__ __forceinline__ void dequantize_group(const uint8_t* msg, const Geometry& g, size_t gi, int sub,
                                                 float v[8]) {
  const float* meta = reinterpret_cast<const float*>(msg + g.code_bytes);
  const float s = meta[gi];
  const float lo = g.sym ? 0.f : meta[g.ngroups + gi];
  int code[8];
  if (g.bits == 4) {
    uint32_t w = *reinterpret_cast<const uint32_t*>(msg + gi * (size_t)g.group / 2 + sub * 4);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      uint32_t nib = (w >> (4 * k)) & 0xfu;
      code[k] = g.sym ? ((int)(nib << 28) >> 28) : (int)nib;
    }
  } else {
    uint2 w = *reinterpret_cast<const uint2*>(msg + gi * (size_t)g.group + sub * 8);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      uint32_t b = ((k < 4 ? w.x : w.y) >> (8 * (k & 3))) & 0xffu;
      code[k] = g.sym ? (int)(int8_t)b : (int)b;
    }
  }
#pragma unroll
  for (int k = 0; k < 8; k++) {
    float p = __fmul_rn((float)code[k], s);
    v[k] = g.sym ? p : __fadd_rn(p, lo);  // no +0.0 for symmetric groups: keeps −0.0
  }
}

// The message group, and the value offset in a [rows, width] tensor, of thread unit u.
struct Place {
  size_t chunk, gi, offset;
  int sub;
};
__device__ __forceinline__ Place place(size_t u, const Geometry& g, size_t width) {
  Place p;
  const size_t gid = u / g.tpg;
  p.sub = (int)(u % g.tpg);
  const size_t gpr = width / g.group, gpc = g.cols / g.group;
  const size_t r = gid / gpr, gc = gid % gpr;
  p.chunk = gc / gpc;
  p.gi = r * gpc + gc % gpc;
  p.offset = r * width + gc * g.group + (size_t)p.sub * 8;
  return p;
}

// ---------------------------------------------------------------- kernels, version 1

// Step 1: x [rows, width] → ranks messages at msgs + j·slot.
template <class T>
__global__ void __launch_bounds__(kThreads)
    fc_quantize(const T* __restrict__ x, Geometry g, size_t width, size_t units, uint8_t* __restrict__ msgs,
                size_t slot, int* flag) {
  const size_t u = (size_t)blockIdx.x * kThreads + threadIdx.x;
  const bool active = u < units;
  float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Place p = place(active ? u : 0, g, width);
  bool bad = false;
  if (active) {
    Elem<T>::load8(x + p.offset, v);
#pragma unroll
    for (int k = 0; k < 8; k++) bad |= !(fabsf(v[k]) <= 0x1p64f);  // NaN, ±Inf, beyond 2^64
  }
  quantize_group(v, bad, p.sub, g, p.gi, msgs + p.chunk * slot, active, flag, ODY_FC_BAD_INPUT);
}

// Step 3 of every version: reduce_codec (flashcomm_kernels.cuh), the integer-scale reduce.

// Step 5: ranks messages at recv + j·slot → y [rows, width] (+ residual).
template <class T>
__global__ void __launch_bounds__(kThreads)
    fc_dequantize(const uint8_t* __restrict__ recv, Geometry g, size_t width, size_t units, size_t slot,
                  const T* residual, T* y) {
  const size_t u = (size_t)blockIdx.x * kThreads + threadIdx.x;
  if (u >= units) return;  // no shuffles here
  Place p = place(u, g, width);
  float v[8];
  dequantize_group(recv + p.chunk * slot, g, p.gi, p.sub, v);
  if (residual) {
    float r[8];
    Elem<T>::load8(residual + p.offset, r);
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = __fadd_rn(r[k], v[k]);
  }
  Elem<T>::store8(y + p.offset, v);
}

// ---------------------------------------------------------------- host side

unsigned grid_for(size_t units) { return (unsigned)((units + kThreads - 1) / kThreads); }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

ody_status check_codec(int bits, int group) {
  if (bits != 4 && bits != 8)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: bits " + std::to_string(bits) + ": want 4 or 8");
  if (group < 8 || group > 256 || (group & (group - 1)) != 0)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: group " + std::to_string(group) +
                                         ": this kernel does powers of two from 8 to 256");
  return ODY_OK;
}

ody_status check_shape(size_t rows, size_t width, int ranks, int dtype, int bits, int group) {
  if (ody_status s = check_codec(bits, group)) return s;
  if (dtype != ODY_DTYPE_F16 && dtype != ODY_DTYPE_BF16 && dtype != ODY_DTYPE_F32)
    return fail(ODY_ERR_INVALID, "flashcomm: dtype " + std::to_string(dtype) + ": want ODY_DTYPE_F16, _BF16 or _F32");
  if (ranks < 1 || ranks > 1024) return fail(ODY_ERR_INVALID, "flashcomm: ranks " + std::to_string(ranks));
  if (rows < 1 || width < 1) return fail(ODY_ERR_INVALID, "flashcomm: rows and width must be positive");
  if (width % (size_t)ranks != 0)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: width " + std::to_string(width) + " does not split into " +
                                         std::to_string(ranks) + " equal chunks");
  if ((width / ranks) % group != 0)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: group " + std::to_string(group) +
                                         " does not divide the per-rank chunk of " + std::to_string(width / ranks) +
                                         " values");
  // The kernels index pieces of 8 values with 32-bit integers: below 2^35 values (64 GiB of fp16).
  if (rows > ((size_t(1) << 35) - 1) / width)
    return fail(ODY_ERR_UNSUPPORTED, "flashcomm: " + std::to_string(rows) + "×" + std::to_string(width) +
                                         " values: the kernels take fewer than 2^35 per call");
  return ODY_OK;
}

// Which kernels run: 7 (version 6 with fc7_reduce, the INT4 g128 reduce on tensor cores; as fast
// as 6 asymmetric, slower symmetric on the H200, session 13), 6 (default: version 5 with the INT4 quantize's next tile loaded while the
// current one is encoded, no clamp, f16x2 extremes, flashcomm_kernels.cuh; on the H200 its INT4
// quantize is 1.16x v5's, the other stages are v5's, session 12), 5 (version 4 with the reduce double-buffered through shared memory and a cheaper
// INT4 decode; 1.0-1.02x v4 on the H200), 4 (version 3 with the reduce rescheduled),
// 3 (version 2 with the division by a checked reciprocal), 2, or 1 (the first version), for A/B
// runs of the benchmark and the tests (ody_fc_set_kernels).
std::atomic<int> g_kernels{6};

// The launch of the header's dispatch code (flashcomm_kernels.cuh).
template <class... P, class... A>
void fc_launch(void (*k)(P...), unsigned grid, void* stream, A... a) {
  k<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a...);
}

template <class... P, class... A>
void fc_launch_smem(void (*k)(P...), unsigned grid, size_t smem, void* stream, A... a) {
  k<<<grid, kThreads, smem, static_cast<cudaStream_t>(stream)>>>(a...);
}

// The v5 reduce's stages (flashcomm_kernels.cuh, fc5_reduce).
__device__ __forceinline__ uint8_t* fc_dyn_smem() {
  extern __shared__ __align__(16) uint8_t fc_smem[];
  return fc_smem;
}

// The v7 reduce's tensor-core step (flashcomm_kernels.cuh, fc7_reduce): d = a·b + c on u8 fragments.
__device__ __forceinline__ void fc_mma_u8_16832(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                const int32_t (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.u8.u8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]));
}

// Blocks for a grid-stride kernel: one wave of resident blocks (occupancy × SMs with smem bytes of
// dynamic shared memory per block), or fewer when the work is smaller. Cached per device and
// kernel (a kernel always asks for the same smem). A kernel that needs more than 48 KiB is opted
// in here, before the occupancy query, so that the query and the launch see the same limit; if
// the device refuses, the launch fails and reports it.
unsigned wave_grid(const void* kernel, size_t blocks_needed, size_t smem) {
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, unsigned> cache;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 1;
  unsigned wave = 0;
  {
    std::lock_guard<std::mutex> lk(mu);
    auto it = cache.find({dev, kernel});
    if (it != cache.end()) wave = it->second;
  }
  if (wave == 0) {
    int per_sm = 0, sms = 0;
    if (smem > 48 * 1024) (void)cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem) != cudaSuccess || per_sm < 1)
      per_sm = 1;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1) sms = 1;
    wave = (unsigned)(per_sm * sms);
    std::lock_guard<std::mutex> lk(mu);
    cache[{dev, kernel}] = wave;
  }
  if (blocks_needed < 1) blocks_needed = 1;
  return (unsigned)std::min<size_t>(wave, blocks_needed);
}

ody_status launch_quantize(const void* x, int dtype, size_t rows, size_t width, int ranks, const Geometry& g,
                           void* msgs, size_t slot, int* flag, cudaStream_t st) {
  const size_t units = rows * width / 8;
  uint8_t* m = static_cast<uint8_t*>(msgs);
  (void)ranks;
  const int v = g_kernels.load();
  if (v >= 2) {
    if (dtype == ODY_DTYPE_F32) quantize_codec(v, static_cast<const float*>(x), g, width, m, slot, flag, st);
    else if (dtype == ODY_DTYPE_F16) quantize_codec(v, static_cast<const __half*>(x), g, width, m, slot, flag, st);
    else quantize_codec(v, static_cast<const __nv_bfloat16*>(x), g, width, m, slot, flag, st);
  } else if (dtype == ODY_DTYPE_F32) {
    fc_quantize<float><<<grid_for(units), kThreads, 0, st>>>(static_cast<const float*>(x), g, width, units, m, slot, flag);
  } else if (dtype == ODY_DTYPE_F16) {
    fc_quantize<__half><<<grid_for(units), kThreads, 0, st>>>(static_cast<const __half*>(x), g, width, units, m, slot,
                                                              flag);
  } else {
    fc_quantize<__nv_bfloat16><<<grid_for(units), kThreads, 0, st>>>(static_cast<const __nv_bfloat16*>(x), g, width,
                                                                     units, m, slot, flag);
  }
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

ody_status launch_reduce(const void* recv, int ranks, const Geometry& g, size_t slot, void* out, int* flag,
                         cudaStream_t st) {
  // Every version's reduce is the integer-scale reduce (flashcomm_kernels.cuh); version 1 takes
  // the generic kernel with the division, as version 2.
  reduce_codec(g_kernels.load(), static_cast<const uint8_t*>(recv), ranks, g, slot, static_cast<uint8_t*>(out), flag,
               st);
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

ody_status launch_dequantize(const void* recv, size_t rows, size_t width, const Geometry& g, size_t slot, int dtype,
                             const void* residual, void* y, cudaStream_t st) {
  const size_t units = rows * width / 8;
  const uint8_t* r = static_cast<const uint8_t*>(recv);
  if (g_kernels.load() >= 2) {  // v3 and v4 differ only in quantize and reduce
    if (dtype == ODY_DTYPE_F32)
      dequantize2_codec(r, g, width, slot, static_cast<const float*>(residual), static_cast<float*>(y), st);
    else if (dtype == ODY_DTYPE_F16)
      dequantize2_codec(r, g, width, slot, static_cast<const __half*>(residual), static_cast<__half*>(y), st);
    else
      dequantize2_codec(r, g, width, slot, static_cast<const __nv_bfloat16*>(residual),
                        static_cast<__nv_bfloat16*>(y), st);
  } else if (dtype == ODY_DTYPE_F32) {
    fc_dequantize<float><<<grid_for(units), kThreads, 0, st>>>(r, g, width, units, slot,
                                                               static_cast<const float*>(residual),
                                                               static_cast<float*>(y));
  } else if (dtype == ODY_DTYPE_F16) {
    fc_dequantize<__half><<<grid_for(units), kThreads, 0, st>>>(r, g, width, units, slot,
                                                                static_cast<const __half*>(residual),
                                                                static_cast<__half*>(y));
  } else {
    fc_dequantize<__nv_bfloat16><<<grid_for(units), kThreads, 0, st>>>(
        r, g, width, units, slot, static_cast<const __nv_bfloat16*>(residual), static_cast<__nv_bfloat16*>(y));
  }
  ODY_CUDA(cudaGetLastError());
  return ODY_OK;
}

// ody_allreduce's state: the threshold, and per device a workspace and an error flag.
std::mutex g_mu;
size_t g_threshold = 0;  // to be measured (bench allreduce); 0: always compress when the shape fits
struct DeviceState {
  void* ws = nullptr;
  size_t bytes = 0;
  int* flag = nullptr;
};
std::map<int, DeviceState> g_dev;

// The workspace of the current device, at least `bytes` (grown with cudaMalloc, which
// synchronizes the device: keep the first call and growth outside CUDA-graph capture).
ody_status device_state(size_t bytes, DeviceState** out) {
  int dev = 0;
  ODY_CUDA(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lk(g_mu);
  DeviceState& d = g_dev[dev];
  if (!d.flag) {
    ODY_CUDA(cudaMalloc(reinterpret_cast<void**>(&d.flag), sizeof(int)));
    ODY_CUDA(cudaMemset(d.flag, 0, sizeof(int)));
  }
  if (d.bytes < bytes) {
    if (d.ws) ODY_CUDA(cudaFree(d.ws));
    d.ws = nullptr;
    d.bytes = 0;
    ODY_CUDA(cudaMalloc(&d.ws, bytes));
    d.bytes = bytes;
  }
  *out = &d;
  return ODY_OK;
}

}  // namespace
}  // namespace odyssey

using namespace odyssey;

extern "C" size_t ody_fc_message_bytes(size_t rows, size_t cols, int bits, int group, int symmetric) {
  if ((bits != 4 && bits != 8) || group <= 0) return 0;
  return message_bytes(geometry(rows, cols, bits, group, symmetric != 0));
}

extern "C" size_t ody_fc_slot_bytes(size_t rows, size_t cols, int bits, int group, int symmetric) {
  if ((bits != 4 && bits != 8) || group <= 0) return 0;
  return slot_bytes(geometry(rows, cols, bits, group, symmetric != 0));
}

extern "C" ody_status ody_fc_can_implement(size_t rows, size_t width, int ranks, int dtype, int bits, int group,
                                           int symmetric) {
  clear_error();
  (void)symmetric;
  return check_shape(rows, width, ranks, dtype, bits, group);
}

extern "C" ody_status ody_fc_quantize(const void* x, int dtype, size_t rows, size_t width, int ranks, int bits,
                                      int group, int symmetric, void* msgs, int* err_flag, void* stream) {
  clear_error();
  if (ody_status s = check_shape(rows, width, ranks, dtype, bits, group)) return s;
  if (!x || !msgs) return fail(ODY_ERR_INVALID, "ody_fc_quantize: null pointer");
  if (!aligned16(x) || !aligned16(msgs)) return fail(ODY_ERR_UNSUPPORTED, "ody_fc_quantize: buffers must be 16-byte aligned");
  Geometry g = geometry(rows, width / ranks, bits, group, symmetric != 0);
  return launch_quantize(x, dtype, rows, width, ranks, g, msgs, slot_bytes(g), err_flag,
                         static_cast<cudaStream_t>(stream));
}

extern "C" ody_status ody_fc_reduce(const void* recv, int ranks, size_t rows, size_t cols, int bits, int group,
                                    int symmetric, void* out, int* err_flag, void* stream) {
  clear_error();
  if (ody_status s = check_shape(rows, cols, 1, ODY_DTYPE_F32, bits, group)) return s;
  if (ranks < 1) return fail(ODY_ERR_INVALID, "ody_fc_reduce: ranks must be positive");
  if (!recv || !out) return fail(ODY_ERR_INVALID, "ody_fc_reduce: null pointer");
  if (!aligned16(recv) || !aligned16(out)) return fail(ODY_ERR_UNSUPPORTED, "ody_fc_reduce: buffers must be 16-byte aligned");
  Geometry g = geometry(rows, cols, bits, group, symmetric != 0);
  return launch_reduce(recv, ranks, g, slot_bytes(g), out, err_flag, static_cast<cudaStream_t>(stream));
}

extern "C" ody_status ody_fc_dequantize(const void* recv, int ranks, size_t rows, size_t width, int bits, int group,
                                        int symmetric, int dtype, const void* residual, void* y, void* stream) {
  clear_error();
  if (ody_status s = check_shape(rows, width, ranks, dtype, bits, group)) return s;
  if (!recv || !y) return fail(ODY_ERR_INVALID, "ody_fc_dequantize: null pointer");
  if (!aligned16(recv) || !aligned16(y) || (residual && !aligned16(residual)))
    return fail(ODY_ERR_UNSUPPORTED, "ody_fc_dequantize: buffers must be 16-byte aligned");
  Geometry g = geometry(rows, width / ranks, bits, group, symmetric != 0);
  return launch_dequantize(recv, rows, width, g, slot_bytes(g), dtype, residual, y, static_cast<cudaStream_t>(stream));
}

extern "C" size_t ody_allreduce_sim_workspace_size(int ranks, size_t rows, size_t width, int bits, int group,
                                                   int symmetric) {
  if (ranks < 1 || (bits != 4 && bits != 8) || group <= 0 || width % ranks) return 0;
  const size_t n = (size_t)ranks;
  return (3 * n * n + n) * slot_bytes(geometry(rows, width / ranks, bits, group, symmetric != 0));
}

extern "C" ody_status ody_allreduce_sim(const void* const* inputs, void* const* outputs, int ranks, size_t rows,
                                        size_t width, int dtype, int bits, int group, int symmetric, void* workspace,
                                        int* err_flag, void* stream) {
  clear_error();
  if (bits == 16) return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce_sim: bits 16 (the float control) is not simulated");
  if (ody_status s = check_shape(rows, width, ranks, dtype, bits, group)) return s;
  if (!inputs || !outputs || !workspace) return fail(ODY_ERR_INVALID, "ody_allreduce_sim: null pointer");
  for (int i = 0; i < ranks; i++) {
    if (!inputs[i] || !outputs[i]) return fail(ODY_ERR_INVALID, "ody_allreduce_sim: null buffer of rank " + std::to_string(i));
    if (!aligned16(inputs[i]) || !aligned16(outputs[i]))
      return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce_sim: buffers must be 16-byte aligned");
  }
  if (!aligned16(workspace)) return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce_sim: workspace must be 16-byte aligned");
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const size_t n = (size_t)ranks;
  Geometry g = geometry(rows, width / n, bits, group, symmetric != 0);
  const size_t slot = slot_bytes(g), msg = message_bytes(g);
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  uint8_t* sent = ws;
  uint8_t* recv = ws + n * n * slot;
  uint8_t* reduced = ws + 2 * n * n * slot;
  uint8_t* gathered = ws + (2 * n * n + n) * slot;
  // Step 1 on every rank; step 2: rank i's message j lands in rank j's slot i.
  for (size_t i = 0; i < n; i++)
    if (ody_status s = launch_quantize(inputs[i], dtype, rows, width, ranks, g, sent + i * n * slot, slot, err_flag, st))
      return s;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++)
      ODY_CUDA(cudaMemcpyAsync(recv + (j * n + i) * slot, sent + (i * n + j) * slot, msg, cudaMemcpyDeviceToDevice, st));
  // Step 3 on every rank; step 4: every rank k receives reduced chunk j in its slot j.
  for (size_t j = 0; j < n; j++)
    if (ody_status s = launch_reduce(recv + j * n * slot, ranks, g, slot, reduced + j * slot, err_flag, st)) return s;
  for (size_t k = 0; k < n; k++)
    for (size_t j = 0; j < n; j++)
      ODY_CUDA(cudaMemcpyAsync(gathered + (k * n + j) * slot, reduced + j * slot, msg, cudaMemcpyDeviceToDevice, st));
  // Step 5 on every rank, from its own copy of the gathered messages.
  for (size_t k = 0; k < n; k++)
    if (ody_status s = launch_dequantize(gathered + k * n * slot, rows, width, g, slot, dtype, nullptr, outputs[k], st))
      return s;
  return ODY_OK;
}

extern "C" ody_status ody_fc_set_kernels(int version) {
  clear_error();
  // 8 is no codec: the reduce's bandwidth probe (flashcomm_kernels.cuh), for bench codec only.
  if (version < 1 || version > 8)
    return fail(ODY_ERR_INVALID, "ody_fc_set_kernels: version " + std::to_string(version) + ": want 1 to 8");
  g_kernels.store(version);
  return ODY_OK;
}

extern "C" int ody_fc_kernels(void) { return g_kernels.load(); }

extern "C" void ody_allreduce_set_threshold(size_t count) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_threshold = count;
}

extern "C" size_t ody_allreduce_threshold(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_threshold;
}

extern "C" ody_status ody_allreduce_flags(int* flags, void* stream) {
  clear_error();
  if (!flags) return fail(ODY_ERR_INVALID, "ody_allreduce_flags: null pointer");
  *flags = 0;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  DeviceState* d = nullptr;
  if (ody_status s = device_state(0, &d)) return s;
  ODY_CUDA(cudaMemcpyAsync(flags, d->flag, sizeof(int), cudaMemcpyDeviceToHost, st));
  ODY_CUDA(cudaMemsetAsync(d->flag, 0, sizeof(int), st));
  ODY_CUDA(cudaStreamSynchronize(st));
  return ODY_OK;
}

#ifdef ODYSSEY_WITH_NCCL

#define ODY_NCCL(call)                                                                                 \
  do {                                                                                                 \
    ncclResult_t ody_r_ = (call);                                                                      \
    if (ody_r_ != ncclSuccess)                                                                         \
      return ::odyssey::fail(ODY_ERR_CUDA, std::string(#call) + ": " + ncclGetErrorString(ody_r_) + " (" \
                                               __FILE__ ":" + std::to_string(__LINE__) + ")");          \
  } while (0)

extern "C" ody_status ody_allreduce(void* buf, size_t count, int dtype, int bits, int group, int symmetric, void* comm,
                                    void* stream) {
  clear_error();
  if (!buf || !comm) return fail(ODY_ERR_INVALID, "ody_allreduce: null pointer");
  if (dtype != ODY_DTYPE_F16 && dtype != ODY_DTYPE_BF16 && dtype != ODY_DTYPE_F32)
    return fail(ODY_ERR_INVALID, "ody_allreduce: dtype " + std::to_string(dtype));
  ncclComm_t c = static_cast<ncclComm_t>(comm);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  int ranks = 0, rank = 0;
  ODY_NCCL(ncclCommCount(c, &ranks));
  ODY_NCCL(ncclCommUserRank(c, &rank));
  if (bits == 16 || count < ody_allreduce_threshold()) {
    ncclDataType_t t = dtype == ODY_DTYPE_F32 ? ncclFloat : dtype == ODY_DTYPE_F16 ? ncclHalf : ncclBfloat16;
    ODY_NCCL(ncclAllReduce(buf, buf, count, t, ncclSum, c, st));
    return ODY_OK;
  }
  if (ody_status s = check_shape(1, count, ranks, dtype, bits, group)) return s;
  if (!aligned16(buf)) return fail(ODY_ERR_UNSUPPORTED, "ody_allreduce: buf must be 16-byte aligned");
  Geometry g = geometry(1, count / ranks, bits, group, symmetric != 0);
  const size_t slot = slot_bytes(g), n = (size_t)ranks;
  DeviceState* d = nullptr;
  if (ody_status s = device_state(3 * n * slot, &d)) return s;
  uint8_t* send = static_cast<uint8_t*>(d->ws);
  uint8_t* recv = send + n * slot;
  uint8_t* gather = recv + n * slot;
  // Step 1.
  if (ody_status s = launch_quantize(buf, dtype, 1, count, ranks, g, send, slot, d->flag, st)) return s;
  // Step 2: all-to-all of the quantized chunks (slots, padding included: whole 16-byte units).
  ODY_NCCL(ncclGroupStart());
  for (int p = 0; p < ranks; p++) {
    ODY_NCCL(ncclSend(send + p * slot, slot, ncclUint8, p, c, st));
    ODY_NCCL(ncclRecv(recv + p * slot, slot, ncclUint8, p, c, st));
  }
  ODY_NCCL(ncclGroupEnd());
  // Step 3, into this rank's slot of the gather buffer; step 4: in-place all-gather.
  if (ody_status s = launch_reduce(recv, ranks, g, slot, gather + rank * slot, d->flag, st)) return s;
  ODY_NCCL(ncclAllGather(gather + rank * slot, gather, slot, ncclUint8, c, st));
  // Step 5.
  return launch_dequantize(gather, 1, count, g, slot, dtype, nullptr, buf, st);
}

#else

extern "C" ody_status ody_allreduce(void* buf, size_t count, int dtype, int bits, int group, int symmetric, void* comm,
                                    void* stream) {
  (void)buf, (void)count, (void)dtype, (void)bits, (void)group, (void)symmetric, (void)comm, (void)stream;
  clear_error();
  return fail(ODY_ERR_UNSUPPORTED,
              "ody_allreduce: this runtime was built without NCCL (configure with -DODYSSEY_WITH_NCCL=ON and "
              "NCCL_HOME pointing at an NCCL 2.x install); ody_allreduce_sim runs the same kernels on one GPU");
}

#endif
