// kv8.cu: the int8 KV cache (format and exact arithmetic: kv8.hpp). Three kernels and a reuse:
//   kv8_prefill_kernel   warp per (row, K or V head): absmax, fp16 scale, codes; writes the
//                        dequantized fp16 values back over k/v (the prefill attention reads
//                        them: fake quantization) and, for a speed prefill, codes + scales to
//                        the cache. Grid (rows, ⌈2·nkv/4⌉), 128 threads.
//   rope_kv8_kernel      decode step's rope + int8 append: warp per head of (q | k | v); q as
//                        rope_kernel computes it (same fp32/fp64 operations, bit-identical),
//                        k rotated and rounded to fp16 as rope_kernel would store it, then
//                        quantized. Grid (batch, ⌈(nh + 2·nkv)/4⌉), 128 threads.
//   kv8_split_fast_kernel  flash-decoding split over the int8 cache, the structure of layers.cu's
//                        decode_split_fast_kernel: lane l owns 8 codes (8 bytes) of key
//                        l / (hd/8), a warp covers 32/(hd/8) keys per step, U steps of K and V
//                        loads (+ the two fp16 scales per key) in flight per lane, online softmax
//                        per lane in the log2 domain, merged by shuffles then shared memory.
//                        Dequantization in registers: 4 codes → 2 half2 by byte_perm into
//                        0x64xx (1024 + code + 128), one hsub2, then hmul2 by the scale: the
//                        exact fp16 x' of kv8.hpp, then fp32 FMAs as the fp16 kernel. Head dim 64
//                        or 128, 1, 2 or 4 query heads per block (group 8: two blocks per kv head).
//   kv8_split_mma_kernel  the default (session 17): the same split, Q·Kᵀ and P·V on mma.sync
//                        m16n8k16 (fp16 x' operands, fp32 sums; P rounded to fp16 as in the prefill
//                        flash kernel), every group ≤ 8 in one block, head dim 64 or 128; its
//                        comment says why and how a lane's bytes map to the fragments.
//   kv8_split_general_kernel  any head_dim ≤ 256 and group: block per (64-key split, kv head,
//                        sequence), q in shared memory, dequantized K/V read straight from global.
//   combine              attention_decode_combine (layers.cu): the fp16 path's own combine, the
//                        same workspace layout (ws_o, ws_ml in natural-log units, tickets).
// Why an int8 cache: at batch 16 the fp16 decode attention (its KV read) is ~40% of a W4A8 7B
// step (runtime/NOTES.md, session 6 call 1); int8 codes + one fp16 scale per 128 values read
// 0.52× the bytes.
// Limits: head_dim even and ≤ 256; nh % nkv == 0; the tensor-core kernel needs head_dim 64/128,
// group ≤ 8 and 16-byte aligned code caches, the SIMT one group 1/2/4/8 and 8-byte alignment.
// The tensor-core kernel is the default but for MHA at batch · kv heads ≤ 32, where the SIMT one is
// faster (attention_decode_kv8_kernel says which runs and why).
// ODYSSEY_KV8_ATTN=mma|simt|general forces a kernel where it applies; ODYSSEY_KV8_NB=1 halves
// the tensor-core kernel's keys per warp iteration and ODYSSEY_KV8_PF=0 drops its register prefetch
// of the next iteration (A/B switches; the defaults measured best on the H200, session 17).
// Test: `odyssey-rt test layers --only kv8` (every kernel; on the CPU runtime/tests/layers_emu/run.sh
// --only kv8); bench: `odyssey-rt bench layers --only kv8` (fast-kv8, kv8-nb1, kv8-simt rows
// beside the fp16 cache's, in one run).
#include "executor/kv8.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <map>
#include <mutex>

#include "executor/decode_split.cuh"
#include "mma_f16.cuh"
#include "pdl.cuh"

namespace odyssey::layers {
namespace {

inline bool aligned8(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

constexpr int kKv8Threads = 128;  // prefill/rope kernels: 4 warps, one head each
constexpr int kMaxPairs = 4;      // head_dim ≤ 256: ≤ 4 (i, i + hd/2) pairs per lane

// |x| as bits for every lane's values → the warp's max; ≥ 0x7f800000 means not finite.
__device__ __forceinline__ unsigned warp_absmax_bits(unsigned m) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
  return m;
}
__device__ __forceinline__ unsigned abs_bits(float x) { return __float_as_uint(x) & 0x7fffffffu; }

// kv8.hpp's scale: fp16_rn(amax / 127) (IEEE division), NaN for a non-finite head.
__device__ __forceinline__ __half kv8_scale(unsigned mbits) {
  if (mbits >= 0x7f800000u) return __ushort_as_half((unsigned short)0x7E00);
  return __float2half_rn(__fdiv_rn(__uint_as_float(mbits), 127.f));
}
// clamp(roundEven(x / s), −127, 127); 0 when s is 0 or NaN.
__device__ __forceinline__ int8_t kv8_code(float x, float s) {
  if (!(s > 0.f)) return 0;
  const float q = fminf(fmaxf(rintf(__fdiv_rn(x, s)), -127.f), 127.f);
  return (int8_t)__float2int_rn(q);
}
__device__ __forceinline__ __half kv8_dequant(int8_t c, __half s) { return __hmul(__int2half_rn((int)c), s); }

// The same rotation as layers.cu's rope (x1' = a·c − b·s, x2' = b·c + a·s, one rounding each).
__device__ __forceinline__ void rotate_pair(float a, float b, float c, float s, float& x1, float& x2) {
  x1 = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
  x2 = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
}

// A warp quantizes one head whose values it holds as pairs x1[j] (element i = lane + 32j) and
// x2[j] (element half + i), j < kMaxPairs, valid where i < half: writes codes (and scale, lane
// 0) when codes != null, and the dequantized values over `back` when back != null.
__device__ __forceinline__ void warp_quantize_head(const float (&x1)[kMaxPairs], const float (&x2)[kMaxPairs], int half,
                                                   int8_t* codes, __half* scale, __half* back) {
  const int lane = threadIdx.x & 31;
  unsigned m = 0;
#pragma unroll
  for (int j = 0; j < kMaxPairs; j++)
    if (lane + 32 * j < half) m = max(m, max(abs_bits(x1[j]), abs_bits(x2[j])));
  const __half s = kv8_scale(warp_absmax_bits(m));
  const float sf = __half2float(s);
  if (codes && lane == 0) *scale = s;
#pragma unroll
  for (int j = 0; j < kMaxPairs; j++) {
    const int i = lane + 32 * j;
    if (i >= half) break;
    const int8_t c1 = kv8_code(x1[j], sf), c2 = kv8_code(x2[j], sf);
    if (codes) {
      codes[i] = c1;
      codes[half + i] = c2;
    }
    if (back) {
      back[i] = kv8_dequant(c1, s);
      back[half + i] = kv8_dequant(c2, s);
    }
  }
}

// Block (row r, 4 heads of the 2·nkv K-then-V heads); row r = b·tokens + t goes to cache
// position start[b] + t when kc != null.
__global__ void __launch_bounds__(kKv8Threads)
    kv8_prefill_kernel(__half* __restrict__ k, __half* __restrict__ v, int ld_kv, int8_t* __restrict__ kc,
                       __half* __restrict__ ks, int8_t* __restrict__ vc, __half* __restrict__ vs,
                       const int32_t* __restrict__ start, int tokens, int max_seq, int nkv, int hd) {
  pdl_wait();  // rule 1 of pdl.cuh: k/v come from the rope kernel
  pdl_launch_dependents();
  const int r = blockIdx.x, unit = blockIdx.y * (kKv8Threads / 32) + (threadIdx.x >> 5);
  if (unit >= 2 * nkv) return;
  const bool is_v = unit >= nkv;
  const int g = is_v ? unit - nkv : unit, half = hd / 2, lane = threadIdx.x & 31;
  __half* x = (is_v ? v : k) + (size_t)r * ld_kv + (size_t)g * hd;
  float x1[kMaxPairs], x2[kMaxPairs];
#pragma unroll
  for (int j = 0; j < kMaxPairs; j++) {
    const int i = lane + 32 * j;
    x1[j] = i < half ? __half2float(x[i]) : 0.f;
    x2[j] = i < half ? __half2float(x[half + i]) : 0.f;
  }
  int8_t* codes = nullptr;
  __half* scale = nullptr;
  if (kc) {
    const int b = r / tokens, p = start[b] + (r - b * tokens);
    if (p >= 0 && p < max_seq) {  // the caller checks positions; never write outside the cache
      const size_t at = ((size_t)b * max_seq + p) * nkv + g;
      codes = (is_v ? vc : kc) + at * hd;
      scale = (is_v ? vs : ks) + at;
    }
  }
  __syncwarp();  // every lane has read x before any lane overwrites it
  warp_quantize_head(x1, x2, half, codes, scale, x);
}

// Block (sequence b, 4 heads of q | k | v): q rotated in place, k rotated + quantized, v
// quantized, both into the cache at pos[b].
__global__ void __launch_bounds__(kKv8Threads)
    rope_kv8_kernel(__half* __restrict__ q, int ld_q, const __half* __restrict__ k, const __half* __restrict__ v,
                    int ld_kv, int8_t* __restrict__ kc, __half* __restrict__ ks, int8_t* __restrict__ vc,
                    __half* __restrict__ vs, int nh, int nkv, int hd, const int32_t* __restrict__ pos,
                    const float* __restrict__ inv_freq, int max_seq) {
  const int b = blockIdx.x, unit = blockIdx.y * (kKv8Threads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31, half = hd / 2;
  pdl_wait();
  pdl_launch_dependents();
  if (unit >= nh + 2 * nkv) return;
  const int p = pos[b];
  const bool in_cache = p >= 0 && p < max_seq;
  if (unit >= nh && !in_cache) return;  // q is rotated anyway, as rope_kv_decode
  const float pf = (float)p;
  const bool is_v = unit >= nh + nkv;
  const __half* src = unit < nh ? q + (size_t)b * ld_q + (size_t)unit * hd
                                 : (is_v ? v : k) + (size_t)b * ld_kv + (size_t)(unit - nh - (is_v ? nkv : 0)) * hd;
  float x1[kMaxPairs], x2[kMaxPairs];
#pragma unroll
  for (int j = 0; j < kMaxPairs; j++) {
    const int i = lane + 32 * j;
    x1[j] = x2[j] = 0.f;
    if (i >= half) continue;
    const float a = __half2float(src[i]), bb = __half2float(src[half + i]);
    if (is_v) {
      x1[j] = a, x2[j] = bb;
      continue;
    }
    // model/rope.go's angle and fp64 cos/sin rounded to fp32, as rope_kernel computes them.
    const double ang = (double)__fmul_rn(inv_freq[i], pf);
    double sd, cd;
    sincos(ang, &sd, &cd);
    float r1, r2;
    rotate_pair(a, bb, __double2float_rn(cd), __double2float_rn(sd), r1, r2);
    // The fp16 value the fp16 cache would hold (and q's stored value).
    x1[j] = __half2float(__float2half_rn(r1));
    x2[j] = __half2float(__float2half_rn(r2));
  }
  if (unit < nh) {
    __half* dst = q + (size_t)b * ld_q + (size_t)unit * hd;
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kMaxPairs; j++) {
      const int i = lane + 32 * j;
      if (i >= half) break;
      dst[i] = __float2half_rn(x1[j]);
      dst[half + i] = __float2half_rn(x2[j]);
    }
    return;
  }
  const int g = unit - nh - (is_v ? nkv : 0);
  const size_t at = ((size_t)b * max_seq + p) * nkv + g;
  warp_quantize_head(x1, x2, half, (is_v ? vc : kc) + at * hd, (is_v ? vs : ks) + at, nullptr);
}

// ---------------------------------------------------------------------------------------------
// Decode attention.

constexpr int kGenKeys = 64, kGenThreads = 128;  // general kernel
constexpr int kFastWarps = 4;                    // fast kernel

// 8 codes (uint2) and their fp16 scale → the 8 exact fp16 values x' (kv8.hpp) as floats.
__device__ __forceinline__ void dequant8(const uint2& c, __half s, float (&f)[8]) {
  const __half2 s2 = __half2half2(s);
  const __half2 bias = __float2half2_rn(1152.f);  // 0x6400 (1024) + the 128 of the flipped sign bit
  const uint32_t w[2] = {c.x ^ 0x80808080u, c.y ^ 0x80808080u};  // signed → biased unsigned
#pragma unroll
  for (int h = 0; h < 2; h++) {
#pragma unroll
    for (int p = 0; p < 2; p++) {
      // bytes (2p, 2p+1) of w[h] into the low bytes of two fp16 0x64xx: 1024 + code + 128, exact.
      const uint32_t u = __byte_perm(w[h], 0x64646464u, p == 0 ? 0x4140 : 0x4342);
      __half2 x = *reinterpret_cast<const __half2*>(&u);
      x = __hmul2(__hsub2(x, bias), s2);  // the code, exactly; then one IEEE fp16 rounding
      const float2 t = __half22float2(x);
      f[4 * h + 2 * p] = t.x;
      f[4 * h + 2 * p + 1] = t.y;
    }
  }
}

__device__ __forceinline__ __half ldcg_half(const __half* p) {
  return __ushort_as_half(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}

// Block (split s, kv head part, sequence b); the fp16 fast kernel's structure (layers.cu).
template <int HD, int G, int U>
__global__ void __launch_bounds__(kFastWarps * 32)
    kv8_split_fast_kernel(const __half* __restrict__ q, int ld_q, const int8_t* __restrict__ kc,
                          const __half* __restrict__ ks, const int8_t* __restrict__ vc, const __half* __restrict__ vs,
                          const int32_t* __restrict__ len, float* __restrict__ ws_o, float* __restrict__ ws_ml,
                          unsigned* __restrict__ tickets, int max_seq, int nh, int nkv, int parts, int splits,
                          int chunk, float scale_log2, int window) {
  constexpr int LPK = HD / 8;              // lanes per key (8 codes each)
  constexpr int KPW = 32 / LPK;            // keys per warp step
  constexpr int KPB = kFastWarps * KPW;    // keys per block step
  __shared__ float red_m[kFastWarps][G], red_l[kFastWarps][G];
  __shared__ float red_o[kFastWarps][G][HD];
  const int g = blockIdx.y, b = blockIdx.z, kvh = g / parts;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane / LPK, dc = lane % LPK;
  pdl_wait();
  pdl_launch_dependents();
  int k0, k1;
  size_t ws0;
  if (!split_keys(len, tickets, ws_ml, max_seq, nh, G, splits, chunk, window, k0, k1, ws0)) return;
  float qr[G][8];
  {
    const __half* qb = q + (size_t)b * ld_q + (size_t)g * G * HD + dc * 8;
#pragma unroll
    for (int i = 0; i < G; i++)
#pragma unroll
      for (int j = 0; j < 8; j++) qr[i][j] = __half2float(qb[i * HD + j]) * scale_log2;
  }
  const size_t rs = (size_t)nkv * HD;
  const int8_t* kb = kc + (size_t)b * max_seq * rs + (size_t)kvh * HD + dc * 8;
  const int8_t* vb = vc + (size_t)b * max_seq * rs + (size_t)kvh * HD + dc * 8;
  const __half* ksb = ks + (size_t)b * max_seq * nkv + kvh;
  const __half* vsb = vs + (size_t)b * max_seq * nkv + kvh;
  float m[G], l[G], o[G][8];
#pragma unroll
  for (int i = 0; i < G; i++) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++) o[i][j] = 0.f;
  }
  for (int base = k0; base < k1; base += U * KPB) {  // block-uniform: shuffles below are safe
    uint2 kr[U], vr[U];
    __half ksc[U], vsc[U];
    bool ok[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int key = base + u * KPB + warp * KPW + sub;
      ok[u] = key < k1;
      const size_t at = (size_t)(ok[u] ? key : k0);  // a valid row: its values are finite
      kr[u] = __ldcg(reinterpret_cast<const uint2*>(kb + at * rs));
      vr[u] = __ldcg(reinterpret_cast<const uint2*>(vb + at * rs));
      ksc[u] = ldcg_half(ksb + at * nkv);
      vsc[u] = ldcg_half(vsb + at * nkv);
    }
    float sc[U][G];
#pragma unroll
    for (int u = 0; u < U; u++) {
      float kf[8];
      dequant8(kr[u], ksc[u], kf);
#pragma unroll
      for (int i = 0; i < G; i++) {
        float dot = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) dot = fmaf(qr[i][j], kf[j], dot);
#pragma unroll
        for (int off = LPK / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        sc[u][i] = ok[u] ? dot : -INFINITY;
      }
    }
#pragma unroll
    for (int i = 0; i < G; i++) {
      float mx = m[i];
#pragma unroll
      for (int u = 0; u < U; u++) mx = fmaxf(mx, sc[u][i]);
      if (mx == -INFINITY) continue;  // no key of this lane's stream yet
      const float alpha = exp2f(m[i] - mx);  // 0 while m is −inf
      m[i] = mx;
      l[i] *= alpha;
#pragma unroll
      for (int j = 0; j < 8; j++) o[i][j] *= alpha;
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      float vf[8];
      dequant8(vr[u], vsc[u], vf);  // once per key, shared by the G heads
#pragma unroll
      for (int i = 0; i < G; i++) {
        if (m[i] == -INFINITY) continue;
        const float p = exp2f(sc[u][i] - m[i]);  // 0 for a masked key
        l[i] += p;
#pragma unroll
        for (int j = 0; j < 8; j++) o[i][j] = fmaf(p, vf[j], o[i][j]);
      }
    }
  }
  // Merge the KPW key streams of the warp (lanes dc, dc + LPK, ...), then the warps.
#pragma unroll
  for (int i = 0; i < G; i++) {
#pragma unroll
    for (int off = LPK; off < 32; off <<= 1) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[i], off);
      const float lo_ = __shfl_xor_sync(0xffffffffu, l[i], off);
      const float mn = fmaxf(m[i], mo);
      const float a = mn == -INFINITY ? 0.f : exp2f(m[i] - mn), c = mn == -INFINITY ? 0.f : exp2f(mo - mn);
      l[i] = l[i] * a + lo_ * c;
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const float oo = __shfl_xor_sync(0xffffffffu, o[i][j], off);
        o[i][j] = o[i][j] * a + oo * c;
      }
      m[i] = mn;
    }
    if (lane < LPK) {
      if (dc == 0) {
        red_m[warp][i] = m[i];
        red_l[warp][i] = l[i];
      }
#pragma unroll
      for (int j = 0; j < 8; j++) red_o[warp][i][dc * 8 + j] = o[i][j];
    }
  }
  __syncthreads();
  write_split_partials<kFastWarps, G, HD>(red_m, red_l, red_o, G, ws0, splits, ws_o, ws_ml);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core split kernel (session 17): the same block (split s, kv head g, sequence b) and the
// same partials as kv8_split_fast_kernel, with Q·Kᵀ and P·V on mma.sync m16n8k16 (fp16 operands,
// fp32 accumulation). Why: the SIMT kernel spent ~4.4 instructions per cached value (dequantize
// to fp32, FMA, the dot's shuffles) and was instruction-bound at 40–60% of copy (ncu, b16 MHA:
// SM 56% busy at DRAM 39%); here a value costs ~1.75 (byte_perm, hsub2, hmul2 on fp16 pairs:
// the exact x' of kv8.hpp, then the tensor core), so the kernel can stream at copy speed.
//
// Roles (lane = 4·gid + tig): S = Q·K'ᵀ with M = the group's query heads (rows gid < group; the
// rest zero), N = 8 keys, K = 16 dims; Oᵀ = V'ᵀ·Pᵀ with M = 16 dims, N = 8 heads, K = 16 keys.
// So a lane's S accumulators (head gid, keys 2tig, 2tig+1 of each 8-key tile) are exactly its
// Pᵀ B fragment (the FA2 register reuse), and nothing goes through shared memory in the loop.
// The dot product is a sum over dims and P·V a sum over keys, so both may run in any order of
// their index: lane (gid, tig) loads the HD/4 contiguous dims [HD/4·tig, HD/4·(tig+1)) of key gid
// (k-step st takes dims HD/4·tig + 4st + {0,1} as MMA positions 2tig+{0,1} and + {2,3} as
// 2tig+8+{0,1}, the same for Q's A fragment), and for P·V the HD/8 contiguous dims [HD/8·gid, …)
// of keys 2tig, 2tig+1, 2tig+8, 2tig+9 (m-tile t's rows gid and gid+8 are dims HD/8·gid + 2t and
// + 2t + 1). Every global load is 16 (or 8) contiguous bytes; a warp reads whole key rows.
// Numerics: q is fp16 as given (the scale is applied to the fp32 score), products of fp16 values
// are exact and summed in fp32 (tensor cores may truncate: attention_tol's u = 2⁻²³), P is
// rounded to fp16 for P·V (as the prefill flash kernel; attention_tol's 2⁻¹¹ term).
// Limits: head_dim 64 or 128, group ≤ 8, 16-byte aligned code caches (the launcher checks).
// Codes (already xor 0x80: code + 128 as unsigned) in bytes 0..3 of u → two half2 of x' (bytes
// 0, 1 and bytes 2, 3), scaled by s2 (one scale per half: two keys may differ).
__device__ __forceinline__ uint32_t kv8_pair(uint32_t u, uint32_t sel, __half2 s2) {
  const uint32_t r = __byte_perm(u, 0x64646464u, sel);  // 0x64xx: 1024 + code + 128, exact
  const __half2 x = __hmul2(__hsub2(*reinterpret_cast<const __half2*>(&r), __float2half2_rn(1152.f)), s2);
  return *reinterpret_cast<const uint32_t*>(&x);
}

template <int HD>
struct Kv8Chunk;  // the bytes a lane loads per key: K (HD/4) and V (HD/8)
template <>
struct Kv8Chunk<128> {
  using K = uint4[2];
  using V = uint4;
};
template <>
struct Kv8Chunk<64> {
  using K = uint4[1];
  using V = uint2;
};
template <class T>
__device__ __forceinline__ uint32_t word_of(const T& v, int i) {
  return reinterpret_cast<const uint32_t*>(&v)[i];
}

template <int HD, int NB, bool PF>
__global__ void __launch_bounds__(kFastWarps * 32)
    kv8_split_mma_kernel(const __half* __restrict__ q, int ld_q, const int8_t* __restrict__ kc,
                         const __half* __restrict__ ks, const int8_t* __restrict__ vc, const __half* __restrict__ vs,
                         const int32_t* __restrict__ len, float* __restrict__ ws_o, float* __restrict__ ws_ml,
                         unsigned* __restrict__ tickets, int max_seq, int nh, int nkv, int group, int splits,
                         int chunk, float scale_log2, int window) {
  constexpr int KS = HD / 16;            // k-steps of Q·Kᵀ, and m-tiles of Oᵀ
  constexpr int DK = HD / 4, DV = HD / 8;  // contiguous K / V bytes a lane loads per key
  constexpr int KPI = 16 * NB;           // keys per warp per iteration
  constexpr int KPB = kFastWarps * KPI;  // keys per block per iteration
  using KC = typename Kv8Chunk<HD>::K;
  using VC = typename Kv8Chunk<HD>::V;
  __shared__ float red_m[kFastWarps][8], red_l[kFastWarps][8];
  __shared__ float red_o[kFastWarps][8][HD];
  const int g = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, tig = lane & 3;
  pdl_wait();
  pdl_launch_dependents();
  int k0, k1;
  size_t ws0;
  if (!split_keys(len, tickets, ws_ml, max_seq, nh, group, splits, chunk, window, k0, k1, ws0)) return;
  // Q's A fragments: [st][0] = (row gid, positions 2tig+{0,1}), [st][1] = (row gid, 2tig+8+{0,1});
  // rows gid + 8 (registers 1 and 3 of the fragment) are zero.
  uint32_t qa[KS][2];
  {
    const __half* qh = q + (size_t)b * ld_q + ((size_t)g * group + gid) * HD + DK * tig;
#pragma unroll
    for (int st = 0; st < KS; st++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        __half2 v = __float2half2_rn(0.f);
        if (gid < group) v = __halves2half2(qh[4 * st + 2 * h], qh[4 * st + 2 * h + 1]);
        qa[st][h] = *reinterpret_cast<const uint32_t*>(&v);
      }
  }
  const size_t rs = (size_t)nkv * HD;
  const int8_t* kb = kc + (size_t)b * max_seq * rs + (size_t)g * HD + DK * tig;
  const int8_t* vb = vc + (size_t)b * max_seq * rs + (size_t)g * HD + DV * gid;
  const __half* ksb = ks + (size_t)b * max_seq * nkv + g;
  const __half* vsb = vs + (size_t)b * max_seq * nkv + g;
  float o[KS][4];  // Oᵀ: [t][e] = dim HD/8·gid + 2t + (e >> 1), head 2tig + (e & 1)
#pragma unroll
  for (int t = 0; t < KS; t++) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.f;
  float m = -INFINITY, l = 0.f;  // head gid: running max (log2 units), this lane's share of the sum
  // One iteration's bytes: k[j][nt] = key base + 16j + 8nt + gid; v[j][r] = key base + 16j +
  // {2tig, 2tig+1, 2tig+8, 2tig+9}[r]; their scales.
  struct Tile {
    KC k[NB][2];
    VC v[NB][4];
    __half ks[NB][2], vs[NB][4];
  };
  auto load = [&](int base, Tile& t) {
#pragma unroll
    for (int j = 0; j < NB; j++) {
#pragma unroll
      for (int nt = 0; nt < 2; nt++) {
        const int key = base + 16 * j + 8 * nt + gid;
        const size_t at = (size_t)(key < k1 ? key : k0);  // a valid row: its values are finite
#pragma unroll
        for (int c = 0; c < DK / 16; c++) t.k[j][nt][c] = __ldcg(reinterpret_cast<const uint4*>(kb + at * rs) + c);
        t.ks[j][nt] = ldcg_half(ksb + at * nkv);
      }
#pragma unroll
      for (int r = 0; r < 4; r++) {
        const int key = base + 16 * j + 2 * tig + (r & 1) + 8 * (r >> 1);
        const size_t at = (size_t)(key < k1 ? key : k0);
        t.v[j][r] = __ldcg(reinterpret_cast<const VC*>(vb + at * rs));
        t.vs[j][r] = ldcg_half(vsb + at * nkv);
      }
    }
  };
  // PF: the next iteration's loads are issued before this one's arithmetic (two register tiles),
  // so a warp keeps its bytes in flight through its MMAs; else load, then compute.
  Tile cur;
  int base = k0 + warp * KPI;
  if (PF && base < k1) load(base, cur);
  for (; base < k1; base += KPB) {  // warp-uniform: shuffles below are safe
    Tile nxt;
    if (PF) {
      if (base + KPB < k1) load(base + KPB, nxt);
    } else {
      load(base, cur);
    }
    const auto& kr = cur.k;
    const auto& vr = cur.v;
    const auto& ksc = cur.ks;
    const auto& vsc = cur.vs;
    // S = Q·K'ᵀ per 8-key tile; sc[j][nt][0..1] = head gid, keys base + 16j + 8nt + 2tig + {0, 1}.
    float sc[NB][2][4];
#pragma unroll
    for (int j = 0; j < NB; j++)
#pragma unroll
      for (int nt = 0; nt < 2; nt++) {
        sc[j][nt][0] = sc[j][nt][1] = sc[j][nt][2] = sc[j][nt][3] = 0.f;
        const __half2 s2 = __half2half2(ksc[j][nt]);
#pragma unroll
        for (int st = 0; st < KS; st++) {
          const uint32_t w = word_of(kr[j][nt], st) ^ 0x80808080u;
          const uint32_t a[4] = {qa[st][0], 0u, qa[st][1], 0u};
          mma16816(sc[j][nt], a, kv8_pair(w, 0x4140, s2), kv8_pair(w, 0x4342, s2));
        }
      }
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < NB; j++)
#pragma unroll
      for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
          const int key = base + 16 * j + 8 * nt + 2 * tig + e;
          sc[j][nt][e] = key < k1 ? sc[j][nt][e] * scale_log2 : -INFINITY;
          mx = fmaxf(mx, sc[j][nt][e]);
        }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(m, mx);
    // alpha rescales what this head has summed so far; 0 while nothing was (m = −inf).
    const float alpha = mn == -INFINITY ? 1.f : fast_exp2(m - mn);
    // Every score −inf (masked; a NaN score is not a max): p = 2^(−inf − 0) = 0, NaN stays NaN.
    const float msub = mn == -INFINITY ? 0.f : mn;
    m = mn;
    l *= alpha;
    // Oᵀ's columns are heads 2tig and 2tig + 1: their alphas live in lanes 4·head.
    const float a0 = __shfl_sync(0xffffffffu, alpha, 8 * tig), a1 = __shfl_sync(0xffffffffu, alpha, 8 * tig + 4);
#pragma unroll
    for (int t = 0; t < KS; t++) o[t][0] *= a0, o[t][1] *= a1, o[t][2] *= a0, o[t][3] *= a1;
#pragma unroll
    for (int j = 0; j < NB; j++) {
      uint32_t pb[2];  // Pᵀ's B fragment: keys 2tig+{0,1} (tile 0) and 2tig+8+{0,1} (tile 1), head gid
#pragma unroll
      for (int nt = 0; nt < 2; nt++) {
        const float p0 = fast_exp2(sc[j][nt][0] - msub), p1 = fast_exp2(sc[j][nt][1] - msub);
        l += p0 + p1;
        const __half2 h = __floats2half2_rn(p0, p1);
        pb[nt] = *reinterpret_cast<const uint32_t*>(&h);
      }
      const __half2 sab = __halves2half2(vsc[j][0], vsc[j][1]), scd = __halves2half2(vsc[j][2], vsc[j][3]);
#pragma unroll
      for (int t = 0; t < KS; t++) {
        // m-tile t: bytes 2t and 2t + 1 of each key's DV bytes (dims HD/8·gid + 2t, + 1).
        const int wi = t >> 1;
        const uint32_t sel = (t & 1) ? 0x7362u : 0x5140u;  // interleave bytes b, b+1 of two keys (b = 2(t&1))
        const uint32_t xab = __byte_perm(word_of(vr[j][0], wi), word_of(vr[j][1], wi), sel) ^ 0x80808080u;
        const uint32_t xcd = __byte_perm(word_of(vr[j][2], wi), word_of(vr[j][3], wi), sel) ^ 0x80808080u;
        const uint32_t a[4] = {kv8_pair(xab, 0x4140, sab), kv8_pair(xab, 0x4342, sab), kv8_pair(xcd, 0x4140, scd),
                               kv8_pair(xcd, 0x4342, scd)};
        mma16816(o[t], a, pb[0], pb[1]);
      }
    }
    if (PF) cur = nxt;
  }
  // The warp's sum for head gid is spread over its 4 tig lanes (same m in each).
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (tig == 0) {
    red_m[warp][gid] = m;
    red_l[warp][gid] = l;
  }
#pragma unroll
  for (int t = 0; t < KS; t++)
#pragma unroll
    for (int e = 0; e < 4; e++) red_o[warp][2 * tig + (e & 1)][DV * gid + 2 * t + (e >> 1)] = o[t][e];
  __syncthreads();
  write_split_partials<kFastWarps, 8, HD>(red_m, red_l, red_o, group, ws0, splits, ws_o, ws_ml);
}

// Block (64-key split s, kv head g, sequence b), any head_dim ≤ 256 and group. Dynamic shared
// memory: q [group][hd] fp32, then p [group][64] fp32.
__global__ void __launch_bounds__(kGenThreads)
    kv8_split_general_kernel(const __half* __restrict__ q, int ld_q, const int8_t* __restrict__ kc,
                             const __half* __restrict__ ks, const int8_t* __restrict__ vc,
                             const __half* __restrict__ vs, const int32_t* __restrict__ len, float* __restrict__ ws_o,
                             float* __restrict__ ws_ml, unsigned* __restrict__ tickets, int max_seq, int nh, int nkv,
                             int hd, int group, int splits, float scale, int window) {
  extern __shared__ float kv8_smem[];
  const int s = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  pdl_wait();
  pdl_launch_dependents();
  if (s == 0 && g == 0 && threadIdx.x == 0) {
    tickets[b] = 0;
    tickets[gridDim.z + b] = 0;
  }
  const int L = min(max(len[b], 0), max_seq);
  const int lo = window > 0 ? max(0, L - window) : 0;
  const int k0 = max(s * kGenKeys, lo), k1 = min(s * kGenKeys + kGenKeys, L), nk = k1 - k0;
  const size_t ws0 = ((size_t)b * nh + (size_t)g * group) * splits + s;
  if (nk <= 0) {
    for (int i = threadIdx.x; i < group; i += blockDim.x) {
      ws_ml[2 * (ws0 + (size_t)i * splits)] = -INFINITY;
      ws_ml[2 * (ws0 + (size_t)i * splits) + 1] = 0.f;
    }
    return;
  }
  float* qs = kv8_smem;
  float* ps = qs + group * hd;
  for (int idx = threadIdx.x; idx < group * hd; idx += blockDim.x)
    qs[idx] = __half2float(q[(size_t)b * ld_q + (size_t)g * group * hd + idx]);
  __syncthreads();
  const size_t rs = (size_t)nkv * hd;
  const int8_t* kb = kc + ((size_t)b * max_seq + k0) * rs + (size_t)g * hd;
  const int8_t* vb = vc + ((size_t)b * max_seq + k0) * rs + (size_t)g * hd;
  const __half* ksb = ks + ((size_t)b * max_seq + k0) * nkv + g;
  const __half* vsb = vs + ((size_t)b * max_seq + k0) * nkv + g;
  for (int idx = threadIdx.x; idx < group * nk; idx += blockDim.x) {
    const int i = idx / nk, key = idx - i * nk;
    const float* qh = qs + i * hd;
    const int8_t* kr = kb + key * rs;
    const __half sk = ksb[(size_t)key * nkv];
    float dot = 0.f;
    for (int d = 0; d < hd; d++) dot += qh[d] * __half2float(kv8_dequant(kr[d], sk));
    ps[i * kGenKeys + key] = dot * scale;
  }
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int i = warp; i < group; i += nwarps) {
    float* pr = ps + i * kGenKeys;
    float mx = -INFINITY;
    for (int j = lane; j < nk; j += 32) mx = fmaxf(mx, pr[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
    for (int j = lane; j < nk; j += 32) {
      const float p = expf(pr[j] - mx);
      pr[j] = p;
      sum += p;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
      ws_ml[2 * (ws0 + (size_t)i * splits)] = mx;
      ws_ml[2 * (ws0 + (size_t)i * splits) + 1] = sum;
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < group * hd; idx += blockDim.x) {
    const int i = idx / hd, d = idx - i * hd;
    const float* pr = ps + i * kGenKeys;
    float acc = 0.f;
    for (int j = 0; j < nk; j++) acc += pr[j] * __half2float(kv8_dequant(vb[(size_t)j * rs + d], vsb[(size_t)j * nkv]));
    ws_o[(ws0 + (size_t)i * splits) * hd + d] = acc;
  }
}

int kv8_sms() {
  static const int sms = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        n <= 0)
      n = 132;
    return n;
  }();
  return sms;
}

// Blocks of `fn` resident per SM (no dynamic shared memory), queried once per kernel.
int kv8_resident(const void* fn, int threads) {
  static std::mutex mu;
  static std::map<const void*, int> seen;
  std::lock_guard<std::mutex> lock(mu);
  auto it = seen.find(fn);
  if (it != seen.end()) return it->second;
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, threads, 0) != cudaSuccess || n < 1) {
    (void)cudaGetLastError();  // a failed query must not surface as the launch's error
    n = 2;
  }
  seen[fn] = n;
  return n;
}

// Keys per split of the fast kernel: about 4 blocks per SM over batch · (kv head parts) ·
// splits (as layers.cu's decode_fast_chunk), a multiple of one loop iteration's keys (`step`).
int kv8_fast_chunk(int batch, int units, int max_seq, int step) {
  const long long target = 4LL * kv8_sms();
  const long long per = std::max<long long>(1, (long long)batch * units);
  const long long splits = std::max<long long>(1, (target + per - 1) / per);
  long long chunk = (max_seq + splits - 1) / splits;
  chunk = std::max<long long>(step, (chunk + step - 1) / step * step);
  return (int)std::min<long long>(chunk, (long long)(max_seq + step - 1) / step * step);
}

// Query heads per block of the fast kernel: at most 4 (registers), and, as the fp16 kernel,
// half a group when batch · nkv ≤ 16 (more blocks in flight at batch 1–2 on GQA models).
int kv8_fast_heads(int batch, int nkv, int group) {
  int h = std::min(group, 4);
  if (h == group && group >= 2 && (long long)batch * nkv <= 16) h = group / 2;
  return h;
}

constexpr int kMinChunk = 32;  // the smallest split of either kernel: bounds the workspace

// Keys per split of the tensor-core kernel: the multiple c·step of one block iteration that
// minimizes waves(splits) · (chunk + kSplitCostKeys), waves counted against the blocks that fit
// at once (`resident`). Why not "about 4 blocks per SM": at batch 16, MHA, that rule gave 1024
// blocks for 924 resident ones (1.11 waves; the last 100 ran alone). kSplitCostKeys is a block's
// fixed cost (launch, q, the warps' merge, its partial for the combine) in keys' worth.
constexpr int kSplitCostKeys = 64;
int kv8_mma_chunk(int batch, int nkv, int max_seq, int step, long long resident) {
  const long long per = std::max<long long>(1, (long long)batch * nkv);
  const int cmax = (max_seq + step - 1) / step;
  int best = cmax * step;
  long long best_cost = -1;
  for (int c = 1; c <= cmax; c++) {
    const long long chunk = (long long)c * step, splits = (max_seq + chunk - 1) / chunk;
    const long long waves = (per * splits + resident - 1) / std::max<long long>(1, resident);
    const long long cost = waves * (chunk + kSplitCostKeys);
    if (best_cost < 0 || cost < best_cost) best_cost = cost, best = (int)chunk;
  }
  return best;
}

}  // namespace

// =============================================================================================

cudaError_t kv8_prefill(__half* k, __half* v, int ld_kv, int8_t* kc, __half* ks, int8_t* vc, __half* vs,
                        const int32_t* start, int batch, int tokens, int max_seq, int nkv, int head_dim,
                        cudaStream_t stream) {
  if (batch < 0 || tokens < 0 || nkv <= 0 || head_dim <= 0 || head_dim % 2 != 0 || head_dim > 256 ||
      ld_kv < (long long)nkv * head_dim || (kc && max_seq <= 0))
    return cudaErrorInvalidValue;
  const long long rows = (long long)batch * tokens;
  if (rows == 0) return cudaSuccess;
  if (!k || !v || rows > (1LL << 31) - 1 || (kc && (!ks || !vc || !vs || !start))) return cudaErrorInvalidValue;
  const int units = (2 * nkv + 3) / 4;
  if (units > 65535) return cudaErrorInvalidValue;
  cudaError_t e = launch_pdl(kv8_prefill_kernel, dim3((unsigned)rows, units), dim3(kKv8Threads), 0, stream, k, v, ld_kv,
                             kc, ks, vc, vs, start, tokens, max_seq, nkv, head_dim);
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

cudaError_t rope_kv8_decode(__half* q, int ld_q, const __half* k, const __half* v, int ld_kv, int8_t* kc, __half* ks,
                            int8_t* vc, __half* vs, int batch, int max_seq, int nh, int nkv, int head_dim,
                            const int32_t* pos, const float* inv_freq, cudaStream_t stream) {
  if (batch < 0 || max_seq <= 0 || nh <= 0 || nkv <= 0 || head_dim <= 0 || head_dim % 2 != 0 || head_dim > 256 ||
      batch > 65535)
    return cudaErrorInvalidValue;
  if (ld_q < (long long)nh * head_dim || ld_kv < (long long)nkv * head_dim) return cudaErrorInvalidValue;
  if (batch == 0) return cudaSuccess;
  if (!q || !k || !v || !kc || !ks || !vc || !vs || !pos || !inv_freq) return cudaErrorInvalidValue;
  const int units = (nh + 2 * nkv + 3) / 4;
  if (units > 65535) return cudaErrorInvalidValue;
  cudaError_t e = launch_pdl(rope_kv8_kernel, dim3(batch, units), dim3(kKv8Threads), 0, stream, q, ld_q, k, v, ld_kv,
                             kc, ks, vc, vs, nh, nkv, head_dim, pos, inv_freq, max_seq);
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

// The tensor-core kernel wherever it applies, but for MHA with batch · kv heads ≤ 32 (the 7B at
// batch 1): there it runs 4 splits × 32 heads = 128 blocks of one warp iteration each, fewer than
// one per SM, and the SIMT kernel's finer splits finish first (H200, ctx 1024, µs, tensor-core /
// SIMT: batch 1 10.2 / 8.9, 10.1 / 8.9, 10.2 / 9.3 in three runs; batch 2 13.1 / 13.1; batch 4
// 16.9 / 24.8; GQA 32/8 at batch 1 9.2 / 9.2; runtime/NOTES.md, session 18).
const char* attention_decode_kv8_kernel(int batch, int nh, int nkv, int head_dim) {
  const int group = nkv > 0 ? nh / nkv : 0;
  const char* force = std::getenv("ODYSSEY_KV8_ATTN");
  const std::string f = force ? force : "";
  const bool hd_ok = head_dim == 64 || head_dim == 128;
  const bool mma_ok = hd_ok && group >= 1 && group <= 8;
  const bool simt_ok = hd_ok && (group == 1 || group == 2 || group == 4 || group == 8);
  if (f == "general") return "general";
  if (f == "simt") return simt_ok ? "simt" : "general";
  if (f == "mma") return mma_ok ? "mma" : simt_ok ? "simt" : "general";
  if (mma_ok && !(group == 1 && (long long)batch * nkv <= 32 && simt_ok)) return "mma";
  return simt_ok ? "simt" : "general";
}

size_t attention_decode_kv8_workspace(int batch, int nh, int head_dim, int max_seq) {
  if (batch <= 0 || nh <= 0 || head_dim <= 0 || max_seq <= 0) return 0;
  const size_t splits = (size_t)(max_seq + kMinChunk - 1) / kMinChunk;
  return (size_t)batch * nh * splits * (head_dim + 2) * sizeof(float) + (size_t)2 * batch * sizeof(unsigned);
}

cudaError_t attention_decode_kv8(const __half* q, int ld_q, const int8_t* kc, const __half* ks, const int8_t* vc,
                                 const __half* vs, const int32_t* len, __half* out, int ld_out, int batch, int max_seq,
                                 int nh, int nkv, int head_dim, float scale, int window, void* workspace,
                                 size_t workspace_bytes, cudaStream_t stream, const ActOut* quant) {
  if (batch < 0 || max_seq <= 0 || nh <= 0 || nkv <= 0 || nh % nkv != 0 || head_dim <= 0 || head_dim > 256 ||
      window < 0 || !(scale > 0.f) || nh > 65535 || nkv > 65535)
    return cudaErrorInvalidValue;
  if (ld_q < nh * head_dim || ld_out < nh * head_dim) return cudaErrorInvalidValue;
  if (batch == 0) return cudaSuccess;
  if (!q || !kc || !ks || !vc || !vs || !len || !out || batch > 65535) return cudaErrorInvalidValue;
  if (!workspace || workspace_bytes < attention_decode_kv8_workspace(batch, nh, head_dim, max_seq) ||
      !aligned8(workspace, 16))
    return cudaErrorInvalidValue;
  const int group = nh / nkv;
  // The kernel for these sizes (attention_decode_kv8_kernel: ODYSSEY_KV8_ATTN may force one),
  // then the caches' alignment: the tensor-core kernel needs 16 bytes, the SIMT one 8.
  const std::string pick = attention_decode_kv8_kernel(batch, nh, nkv, head_dim);
  const bool mma = pick == "mma" && aligned8(kc, 16) && aligned8(vc, 16);
  const bool fast = !mma && pick != "general" && (group == 1 || group == 2 || group == 4 || group == 8) &&
                    (head_dim == 64 || head_dim == 128) && aligned8(kc, 8) && aligned8(vc, 8);
  const float sl2 = scale * 1.4426950408889634f;
  // Each kernel picks the split length; the workspace then holds the partial O rows, the
  // (max, sum) pairs and the combine's tickets (attention_decode_kv8_workspace bounds splits).
  int chunk = kGenKeys, splits = 0;
  float *ws_o = nullptr, *ws_ml = nullptr;
  unsigned* tickets = nullptr;
  auto set_splits = [&](int c) {
    chunk = c;
    splits = (max_seq + chunk - 1) / chunk;
    ws_o = static_cast<float*>(workspace);
    ws_ml = ws_o + (size_t)batch * nh * splits * head_dim;
    tickets = reinterpret_cast<unsigned*>(ws_ml + (size_t)batch * nh * splits * 2);
  };
  cudaError_t e = cudaSuccess;
  if (mma) {
    // ODYSSEY_KV8_NB=1: 16 keys per warp iteration (default 32); ODYSSEY_KV8_PF=0: no register
    // prefetch of the next iteration.
    const char* nbe = std::getenv("ODYSSEY_KV8_NB");
    const char* pfe = std::getenv("ODYSSEY_KV8_PF");
    const int nb = nbe && std::strcmp(nbe, "1") == 0 ? 1 : 2;
    const bool pf = !(pfe && std::strcmp(pfe, "0") == 0);
    auto run = [&](auto* kern) {
      const long long resident = (long long)kv8_resident(reinterpret_cast<const void*>(kern), kFastWarps * 32) * kv8_sms();
      set_splits(kv8_mma_chunk(batch, nkv, max_seq, kFastWarps * 16 * nb, resident));
      return launch_pdl(kern, dim3(splits, nkv, batch), dim3(kFastWarps * 32), 0, stream, q, ld_q, kc, ks, vc, vs, len,
                        ws_o, ws_ml, tickets, max_seq, nh, nkv, group, splits, chunk, sl2, window);
    };
    if (head_dim == 128)
      e = nb == 1 ? (pf ? run(kv8_split_mma_kernel<128, 1, true>) : run(kv8_split_mma_kernel<128, 1, false>))
                  : (pf ? run(kv8_split_mma_kernel<128, 2, true>) : run(kv8_split_mma_kernel<128, 2, false>));
    else
      e = nb == 1 ? (pf ? run(kv8_split_mma_kernel<64, 1, true>) : run(kv8_split_mma_kernel<64, 1, false>))
                  : (pf ? run(kv8_split_mma_kernel<64, 2, true>) : run(kv8_split_mma_kernel<64, 2, false>));
  } else if (fast) {
    const int hpb = kv8_fast_heads(batch, nkv, group);
    const int parts = group / hpb;
    const int U = hpb <= 2 ? 8 : 4;                            // steps in flight: registers allow 8 at ≤ 2 heads
    const int step = U * kFastWarps * (32 / (head_dim / 8));  // keys per fast-kernel iteration
    set_splits(kv8_fast_chunk(batch, nkv * parts, max_seq, step));
    const dim3 grid(splits, nkv * parts, batch), block(kFastWarps * 32);
#define ODY_KV8_FAST(HD, G, UU)                                                                                     \
  e = launch_pdl(kv8_split_fast_kernel<HD, G, UU>, grid, block, 0, stream, q, ld_q, kc, ks, vc, vs, len, ws_o, ws_ml, \
                 tickets, max_seq, nh, nkv, parts, splits, chunk, sl2, window)
    if (head_dim == 128) {
      switch (hpb) {
        case 1: ODY_KV8_FAST(128, 1, 8); break;
        case 2: ODY_KV8_FAST(128, 2, 8); break;
        default: ODY_KV8_FAST(128, 4, 4); break;
      }
    } else {
      switch (hpb) {
        case 1: ODY_KV8_FAST(64, 1, 8); break;
        case 2: ODY_KV8_FAST(64, 2, 8); break;
        default: ODY_KV8_FAST(64, 4, 4); break;
      }
    }
#undef ODY_KV8_FAST
  } else {
    set_splits(kGenKeys);
    const size_t smem = (size_t)group * (head_dim + kGenKeys) * sizeof(float);
    if (smem > 227 * 1024) return cudaErrorInvalidValue;
    if (smem > 48 * 1024) {
      e = cudaFuncSetAttribute(kv8_split_general_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
      if (e != cudaSuccess) return e;
    }
    e = launch_pdl(kv8_split_general_kernel, dim3(splits, nkv, batch), dim3(kGenThreads), smem, stream, q, ld_q, kc, ks,
                   vc, vs, len, ws_o, ws_ml, tickets, max_seq, nh, nkv, head_dim, group, splits, scale, window);
  }
  if (e != cudaSuccess) return e;
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  return attention_decode_combine(ws_o, ws_ml, tickets, len, out, ld_out, batch, max_seq, nh, head_dim, splits, chunk,
                                  quant, stream);
}

}  // namespace odyssey::layers
