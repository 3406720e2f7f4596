// bulk_copy.cuh: mbarriers and one-dimensional bulk copies (sm_90, PTX ISA 8.0: CUDA 12), used by
// the wgmma prefill kernel v4 (fastgemm_sm90.cu). A copy's bytes are counted on an mbarrier
// (complete_tx); a consumer waits on the barrier's phase parity. (A decode GEMV fed by bulk copies
// used them in session 16 and lost to the register kernel: gemv_mma.cu's header.)
//
// ODY_BULK_DEVICE is 1 in device code that can use them: sm_90 or newer built by nvcc 12 or newer
// (or a syntax check's PTX, never assembled, with ODY_WGMMA_SYNTAX_CHECK). Elsewhere the helpers
// compile to nothing (try_wait answers true), so no kernel that relies on them may be launched
// there (fastgemm_sm90.cu is built for sm_90a only).
#pragma once
#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && \
    ((defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12) || defined(ODY_WGMMA_SYNTAX_CHECK))
#define ODY_BULK_DEVICE 1
#else
#define ODY_BULK_DEVICE 0
#endif

namespace odyssey {
namespace bulk {

// mbarrier.init.shared::cta.b64 [addr], count (PTX ISA "mbarrier.init").
__device__ __forceinline__ void mbar_init(uint32_t addr, uint32_t count) {
#if ODY_BULK_DEVICE
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(addr), "r"(count) : "memory");
#else
  (void)addr, (void)count;
#endif
}
// fence.mbarrier_init.release.cluster (PTX ISA "membar/fence"): the inits are visible to the
// async proxy (the copies' complete_tx) before anyone uses the barriers.
__device__ __forceinline__ void mbar_init_fence() {
#if ODY_BULK_DEVICE
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
// mbarrier.arrive.expect_tx.shared::cta.b64 _, [addr], tx (PTX ISA "mbarrier.expect_tx" / arrive):
// adds tx to the phase's expected transaction bytes, then arrives (release, cta).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t addr, uint32_t tx) {
#if ODY_BULK_DEVICE
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(addr), "r"(tx) : "memory");
#else
  (void)addr, (void)tx;
#endif
}
// mbarrier.arrive.shared::cta.b64 _, [addr] (release, cta).
__device__ __forceinline__ void mbar_arrive(uint32_t addr) {
#if ODY_BULK_DEVICE
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(addr) : "memory");
#else
  (void)addr;
#endif
}
// One mbarrier.try_wait.parity.shared::cta.b64 (acquire, cta; PTX ISA "mbarrier.test_wait/
// try_wait"): true once the phase with this parity has completed, i.e. the current phase's parity
// differs from `parity` (the instruction may suspend the thread a while before answering false).
__device__ __forceinline__ bool mbar_try_wait(uint32_t addr, uint32_t parity) {
#if ODY_BULK_DEVICE
  uint32_t done = 0;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(addr), "r"(parity)
      : "memory");
  return done != 0;
#else
  (void)addr, (void)parity;
  return true;
#endif
}
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// A watchdog: a wait that has not completed after 30 s (a whole 8192×28672×4096 GEMM takes
// ~1.9 ms; a stage wait is microseconds, even under compute-sanitizer) is a protocol or byte-count
// bug (expect_tx ≠ bytes landed, a wrong parity): trap, so that the launch fails ("unspecified
// launch failure" or similar from the next CUDA call) instead of hanging the process. No printf: an extern call
// (vprintf) in the kernel makes ptxas serialize the wgmma pipeline (C7515-type notes).
__device__ __forceinline__ void mbar_hang() {
#if ODY_BULK_DEVICE
  asm volatile("trap;\n");
#endif
}
// Waits until the phase with this parity has completed (the fast path is one try_wait).
__device__ __forceinline__ void mbar_wait(uint32_t addr, uint32_t parity) {
  if (mbar_try_wait(addr, parity)) return;
  const uint64_t start = global_ns();
  while (!mbar_try_wait(addr, parity))
    if (global_ns() - start > 30000000000ull) mbar_hang();
}
// 1D bulk copy global → shared (PTX ISA "cp.async.bulk"): bytes (a multiple of 16) from src
// (16-byte aligned) to dst (16-byte aligned); completion counted on mbarrier bar.
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
#if ODY_BULK_DEVICE
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
#else
  (void)dst, (void)src, (void)bytes, (void)bar;
#endif
}

}  // namespace bulk
}  // namespace odyssey
