// mma_f16.cuh: the fp16 tensor-core step and the fast 2^x that several kernels share
// (layers.cu's flash prefill, kv8.cu's decode split kernel, w4a16.cu's tile kernel). The layers
// emulator (runtime/tests/layers_emu) strips this include and defines both on the host.
#pragma once

#include <cstdint>

namespace odyssey {

// D = A·B + D, m16n8k16, fp16 operands, fp32 accumulators (the PTX fragment layouts).
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 2^x on the SFU alone (MUFU.EX2). exp2f adds a range test and two multiplies per call to keep
// results below 2^-126 (subnormal); here those are p's far below fp16's resolution of P, so
// flushing them to 0 changes nothing the P·V mma could see. ex2(−inf) = +0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace odyssey
