// kernel_common.cuh: device helpers shared by the GEMM kernels (fastgemm.cu, w4a16.cu):
// asynchronous 16-byte copies into shared memory, and the stream-K partition of the
// (tile, K block) iteration space that both kernels use.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace odyssey {
namespace kernel {

constexpr int kBK = 128;  // K per pipeline stage: one packed 128×8 block per 8 columns

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; valid = false zero-fills the destination (columns past Np).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Stream-K: block b of `blocks` owns iterations [b·T/B, (b+1)·T/B) of T = tiles·kblocks; it
// calls seg(tile, kb0, kb1) for each tile its range touches. Every block does the same work,
// so there is no partial last wave; a grid of tiles·s blocks is classic split-K by s.
template <class Segment>
__device__ __forceinline__ void stream_k(long long tiles, int kblocks, Segment seg) {
  const long long total = tiles * kblocks;
  long long it = total * blockIdx.x / gridDim.x;
  const long long end = total * (blockIdx.x + 1) / gridDim.x;
  while (it < end) {
    const long long tile = it / kblocks;
    const int kb0 = (int)(it % kblocks);
    const int kb1 = (int)(kb0 + (end - it) < kblocks ? kb0 + (end - it) : kblocks);
    seg(tile, kb0, kb1);
    it += kb1 - kb0;
  }
}

// Epilogue of one W4A8 output, integer scales: every operation rounded as the Go reference
// (quant.W4A8GEMMRef) does, in its order. Shared by the mma kernel (fastgemm.cu) and the GEMV
// (gemv.cu) so that both are bit-exact with it by construction, not by two copies agreeing.
__device__ __forceinline__ __half epilogue_int(int32_t acc, float xs, float f, const float* bias,
                                               int c) {
  float y = __fmul_rn(__int2float_rn(acc), __fmul_rn(xs, f));
  if (bias) y = __fadd_rn(y, bias[c]);
  return __float2half_rn(y);
}

}  // namespace kernel

// Host: multiprocessors of the current device (cached).
int device_sms();
// Host: grid size and whether any tile is shared between blocks (then a workspace is used).
struct StreamKGrid {
  int blocks;
  bool partial;
};
StreamKGrid stream_k_grid(long long tiles, long long kblocks, int splits, int resident_per_sm);

}  // namespace odyssey
