// fastgemm_dispatch.cpp: which tile configuration FastGEMM uses for a problem.
//
// The table is what `odyssey-rt bench gemm --sweep` measured on the H200 (the fastest config
// per M over the LLaMA shapes; runtime/bench/results/, runtime/NOTES.md). Indexes refer to
// kConfigs in fastgemm.cu. The grid (blocks per SM, stream-K or one block per tile) is chosen in
// fastgemm.cu's plan() from the same sweep.
#include "fastgemm.hpp"

namespace odyssey {

int dispatch_config(int m, int n, int k) {
  (void)n;
  (void)k;
  // Sweep of session 3 (8192x28672, 28672x8192, 11008x4096, 4096x4096): at M ≤ 16 the 16×128
  // tile was best or within 2% on the large shapes; at M = 64 and in prefill the 64×128 tile
  // (2×4 warps of 32×32) beat the 64×64 and 128×128 ones.
  if (m <= 16) return 1;  // m16n128_w1x4_s4
  return 5;               // m64n128_w2x4_s4
}

}  // namespace odyssey
