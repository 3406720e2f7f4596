// fastgemm_dispatch.cpp: which tile configuration FastGEMM uses for a problem.
//
// The table is what `odyssey-rt bench gemm --sweep` measured on the H200 (the fastest config
// per M over the LLaMA shapes; runtime/bench/results/, runtime/NOTES.md). Indexes refer to
// kConfigs in fastgemm.cu. Until a sweep has been run this is the first guess, marked so.
#include "fastgemm.hpp"

namespace odyssey {

int dispatch_config(int m, int n, int k) {
  (void)n;
  (void)k;
  if (m <= 16) return 0;   // m16n64_w1x4_s4
  if (m <= 32) return 3;   // m32n64_w1x4_s4
  if (m <= 64) return 4;   // m64n64_w2x2_s4
  if (m <= 128) return 5;  // m64n128_w2x4_s4
  return 6;                // m128n128_w2x4_s3
}

}  // namespace odyssey
