// pdl.cuh: programmatic dependent launch (PDL, sm_90) for the decode path's chain of small
// kernels.
//
// Why: a decode step of a 7B model is ~10 kernels per layer × 32 layers, most of them a few
// microseconds long. Between two dependent kernels on a stream (also inside a CUDA graph) the
// second one is only launched once the first has fully finished and flushed: its blocks then
// take ~1–3 µs to be scheduled and to reach their first load. With PDL the second grid is
// launched while the first is still running (as soon as every block of the first has called
// pdl_launch_dependents() or exited), its blocks do their independent prologue (index math,
// loading weights, which never depend on the previous kernel), and then wait in pdl_wait()
// until the first grid has completed and its memory is visible. Correctness does not depend on
// where pdl_launch_dependents() is called: pdl_wait() always waits for the whole prerequisite
// grid (PTX ISA, griddepcontrol).
//
// Rules for a kernel launched with launch_pdl():
//   1. Nothing written by an earlier kernel on the stream may be read before pdl_wait().
//   2. Nothing may be written before pdl_wait() that an earlier kernel still reads (write-after-
//      read across kernels: e.g. a buffer the previous kernel consumes).
//   3. Calling pdl_launch_dependents() early is always safe; calling it late only costs overlap.
// A kernel launched without the attribute (plain <<<>>>) may still call pdl_wait() and
// pdl_launch_dependents(): both are no-ops then. On architectures before sm_90 both compile to
// nothing and launch_pdl() launches normally.
//
// Set ODYSSEY_PDL=0 in the environment to launch everything without the attribute (for A/B
// timing and for bisecting a suspected ordering bug); the default is on.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace odyssey {

// Waits until every prerequisite grid has completed and its writes are visible.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Allows the next kernel on the stream (launched with the PDL attribute) to start launching.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launch_pdl() sets the attribute: on unless ODYSSEY_PDL=0, read once per process.
inline bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("ODYSSEY_PDL");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

// kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization, so that
// it may overlap the tail of the previous kernel on the stream (see the rules above). Returns
// the launch's error (cudaGetLastError() semantics are unchanged: the caller checks as usual).
template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(std::forward<Args>(args))...);
}

}  // namespace odyssey
