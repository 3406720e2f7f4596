// fastgemm_dispatch.cpp: which tile configuration FastGEMM uses for a problem.
//
// The table is what `odyssey-rt bench gemm --sweep` measured on the H200 (the fastest config
// per M over the LLaMA shapes; runtime/bench/results/, runtime/NOTES.md). Indexes refer to
// kConfigs in fastgemm.cu. The grid (blocks per SM, stream-K or one block per tile) is chosen in
// fastgemm.cu's plan() from the same sweep.
#include <cstdlib>
#include <string>

#include "fastgemm.hpp"

namespace odyssey {
namespace {

// Decode and small batches with integer scales (M ≤ 16): the GEMV configs, one row per M, by N
// (below 8192 columns, and 8192 or more). This is the whole rule; change it here only, from a
// `bench gemm --sweep` (or the decode-gemm step of device-run.sh, which prints every GEMV
// config beside the dispatch for M = 1, 2, 4, 8, 16 on the 7B and 70B shapes).
//
// Status: M = 1 is measured (bbbecd2, gemm-decode-h200-2026-12-02-bbbecd2.json: gemv_w4 5.95 µs
// at 4096², 35.2 µs at 8192×28672, against 10.0 / 45.0 µs for the mma tiles). The gemv_mma
// rows are NOT yet measured (written 2026-12-02, runtime/NOTES.md); they come from counting
// bytes and instructions, and the lead must confirm them with the decode-gemm step:
//  - M = 2..4: gemv_w4 loads 8 activation words per row per K block per lane (measured: M = 4
//    costs 1.5–2× M = 1); gemv_mma reads its A fragments with 2 ldmatrix per K block for any
//    M ≤ 8 and shares them over its strips, so its cost should stay at its M = 1 cost.
//  - M = 5..16: the mma tiles stage the weights through shared memory with a barrier per 128 of
//    K (56 µs at 8192×28672, M = 16, floor 29); gemv_mma streams them into registers.
//  - strips per block: each block copies M·K bytes of x from L2 for 4·S·K bytes of weights,
//    so x traffic / weight traffic = M / (4·S): S = 2 below N = 8192 (N = 4096 gives 256
//    blocks, ~2 per SM; S = 4 would leave 4 of 132 SMs idle), S = 4 from N = 8192 (x traffic
//    ≤ the weights' at M = 16), S = 8 not by default (one block per SM).
//  - M = 1: gemv_w4 kept (measured) until the sweep shows gemv_mma faster there.
struct DecodeRow {
  int narrow;  // N < 8192
  int wide;    // N ≥ 8192
};
constexpr int kW4 = kGemvConfig, kS2 = kGemvMmaS2Config, kS4 = kGemvMmaS4Config;
constexpr DecodeRow kDecode[kGemvMmaMaxM] = {
    {kW4, kW4},  // M = 1
    {kS2, kS4},  // M = 2
    {kS2, kS4},  // M = 3
    {kS2, kS4},  // M = 4
    {kS2, kS4},  // M = 5
    {kS2, kS4},  // M = 6
    {kS2, kS4},  // M = 7
    {kS2, kS4},  // M = 8
    {kS2, kS4},  // M = 9
    {kS2, kS4},  // M = 10
    {kS2, kS4},  // M = 11
    {kS2, kS4},  // M = 12
    {kS2, kS4},  // M = 13
    {kS2, kS4},  // M = 14
    {kS2, kS4},  // M = 15
    {kS2, kS4},  // M = 16
};

}  // namespace

int dispatch_config(int m, int n, int k, bool gemv_ok) {
  // Integer scales and no explicit split-K: the decode table. Float group scales (the GEMVs have
  // no float variant) and an explicit split-K keep the mma kernel.
  if (gemv_ok && m >= 1 && m <= kGemvMmaMaxM) {
    const int c = n < 8192 ? kDecode[m - 1].narrow : kDecode[m - 1].wide;
    if (c != kGemvConfig || m <= kGemvMaxM) return c;  // (a gemv_w4 entry past its M falls through)
  }
  // Session-3 sweep (4096x4096, 8192x8192, 11008x4096, 8192x28672, 28672x8192; M = 1, 16, 64):
  //  - M ≤ 16: the 16×128 tile wins for N ≥ 8192, the 16×64 tile below (4096: 9.9 vs 10.3 µs at
  //    M = 1, 12.6 vs 14.1 at M = 16);
  //  - M ≤ 64: the 64×128 tile (2×4 warps) on the 70B shapes, the 32×64 one on the others
  //    (8192x8192: 44.9 vs 52.5 µs);
  //  - larger M (prefill): the 64×128 tile beat 128×128 and 128×64 at 256 and 4096.
  if (m <= 16) return n >= 8192 ? 1 : 0;                          // m16n128_w1x4_s4 / m16n64_w1x4_s4
  if (m <= 64) return (n >= 16384 || k >= 16384) ? 5 : 3;        // m64n128_w2x4_s4 / m32n64_w1x4_s4
  return 5;                                                      // m64n128_w2x4_s4
}

// The Hopper wgmma kernel (fastgemm_sm90.cu) for prefill, where it is usable (built with
// CUDA >= 12, a compute capability 9.x device, not ODYSSEY_WGMMA=0) and no split-K is asked.
// Measured on the H200 (runtime/NOTES.md, "Hopper wgmma prefill kernel", bench 2026-12-02):
// from M = 256 on it beats the mma kernel on every measured shape even with fewer tiles than SMs
// (8192x28672: 226 vs 338 µs with 128 tiles; 4096x4096: 40 vs 64 µs with 64 tiles), so M ≥ 256
// takes it whatever the tile count. Between kSm90MinM and 256 nothing is measured yet: there it
// keeps the first rule (its 128×128 tiles, one block each, whole K, must fill one wave, since
// below that the mma kernel's split-K keeps every SM busy and this one cannot).
// ODYSSEY_WGMMA=1 drops every condition but M ≥ kSm90MinM (tests route those cases through it).
// v1 or v2: v2 (weights staged in shared memory) only where kSm90DispatchV2 says so or
// ODYSSEY_WGMMA_V2=1 (=0 forces v1): flip the constant once `bench gemm` shows the
// w4a8_int_wgmma2 rows ahead of w4a8_int_wgmma at every M and shape (NOTES.md, "wgmma v2").
constexpr bool kSm90DispatchV2 = false;
constexpr int kSm90AlwaysM = 256;  // from here on the wgmma kernel whatever the tile count
int device_sms();  // kernel_common.cuh (a CUDA header; this file is host C++)

int dispatch_config_sm90(int m, int n, int k, int splits) {
  (void)k;
  if (splits > 1 || m < kSm90MinM || !sm90_wgmma_usable()) return -1;
  static const bool forced = [] {
    const char* e = std::getenv("ODYSSEY_WGMMA");
    return e && std::string(e) == "1";
  }();
  static const bool v2 = [] {
    const char* e = std::getenv("ODYSSEY_WGMMA_V2");
    if (e && std::string(e) == "1") return true;
    if (e && std::string(e) == "0") return false;
    return kSm90DispatchV2;
  }();
  const long long tiles = (long long)((m + kSm90TokTile - 1) / kSm90TokTile) *
                          (((n + 7) / 8 * 8 + kSm90RowTile - 1) / kSm90RowTile);
  if (!forced && m < kSm90AlwaysM && tiles < device_sms()) return -1;
  return v2 ? kWgmmaV2Config : kWgmmaConfig;
}

}  // namespace odyssey
