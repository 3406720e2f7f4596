// fastgemm_dispatch.cpp: which tile configuration FastGEMM uses for a problem.
//
// The table is what `odyssey-rt bench gemm --sweep` measured on the H200 (the fastest config
// per M over the LLaMA shapes; runtime/bench/results/, runtime/NOTES.md). Indexes refer to
// kConfigs in fastgemm.cu. The grid (blocks per SM, stream-K or one block per tile) is chosen in
// fastgemm.cu's plan() from the same sweep.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "fastgemm.hpp"

namespace odyssey {
int device_sms();  // kernel_common.cuh (a CUDA header; this file is host C++)

namespace {

// Decode and small batches with integer scales (M ≤ 64): which GEMV config, by M, N and K
// (decode_gemv below). This is the whole rule; change it here only, from a `bench gemm --sweep`
// (or the decode-gemm step of device-run.sh, which prints every GEMV config beside the dispatch
// for M = 1, 2, 4, 8, 16 on the 7B and 70B shapes). Every config is bit-exact, so the rule only
// moves time.
//
// M ≤ 16 (session 5 call 6, commit 629f90c, H100 80GB HBM3;
// runtime/bench/results/decode-gemm-h100-2026-12-02-629f90c.json; µs, PDL on):
//  - N = 4096 (q/o/down of a 7B layer): gemv_mma_s2 is the fastest from M = 1 (5.98 vs gemv_w4
//    6.90 at 4096², 12.05 vs 13.01 at 4096×11008) to M = 8; at M = 16, s4 wins where K is large
//    (4096×11008: 17.9 vs 24.9; 4096²: 8.71 vs 8.35), so M > 8 takes s4.
//  - N ≥ 8192 (qkv 12288, gate_up 22016): s4 at M > 8. At M ≤ 8 on the H200 with the persistent
//    walk (session 16, calls 3–5: the register kernel measured three times;
//    runtime/bench/results/gemm-decode-register-h200-2026-12-04-69542aa.json) the strip count
//    that fills a block's tiles best (wide_strips): 12288×4096 s2 10.26 vs s4 10.98 µs at M = 1,
//    11.88 vs 12.91 at M = 8; 28672×8192 s2 37.3 vs s4 45.1 at M = 4; 22016×4096 s4 (15.5 vs 17.2).
//  - K ≥ 8192 with N ≥ 8192 at M = 9..16 (the 70B o_proj 8192², gate/up 28672×8192): s8, one
//    block per SM with x whole in shared memory (session 16 call 6 and session 18 call 2, H200:
//    28672×8192 M = 16 s8 48.6 / 47.6 µs vs s4 51.7 / 52.9; 8192² s8 17.0 vs s4 17.5;
//    runtime/bench/results/gemm-h200-2026-12-04-b18c099.json and session18-call3-*). Wide N at
//    K < 8192 keeps wide_strips' choice there too (12288×4096 M = 16: s2 14.2 / 14.5 vs s4
//    15.8 / 16.0 in two runs, M = 12 12.7 vs 14.0; 22016×4096 s4 21.0 vs s2 21.4); N < 8192
//    stays s4 (4096×11008 M = 16: s4 16.3 vs s8 18.0).
//  - Very long rows (K ≥ 16384: the 70B down_proj 8192×28672) want more strips per block at
//    M ≥ 4 (s8 49.5 µs vs s4 56.4 at M = 16; 48.9 vs 49.0 at M = 4) and gemv_w4 at M = 1 (45.8
//    vs 46.5): the H100 run above. gemv_w4 is picked nowhere else; it stays a config for comparison.
// M = 17..64 (decode at batch 17–64): the GEMV with 2 or 4 row tiles of 16 over the same weight
// words, s4. Until session 16 these M took the mma tiles (or wgmma at M = 64 on wide shapes),
// about as fast as cuBLAS FP16 there, so W4A8 decode at batch 32 and 64 was slower than FP16
// (0.88× and 0.93×). Measured (session 16 call 7, H200, µs, GEMV s4 vs before;
// runtime/bench/results/session16-call7-8-*): up to M = 32 the GEMV wins on every 7B/70B shape but
// one (4096² M = 32 10.6 vs 16.9; 4096×11008 21.8 vs 24.5; 12288×4096 20.4 vs 24.5; 22016×4096
// 34.3 vs 82.1; 8192×28672 99.4 vs 107.0; 28672×8192 106.5 vs 100.8); at M = 33..64 only where
// N < 8192 (4096² M = 64 14.3 vs 22.9; 4096×11008 30.5 vs 39.5), the wide shapes keep the
// tiles/wgmma (22016×4096 M = 64: 74.7 vs 42.8). s2 lost to s4 at every M > 16 but one.
constexpr int kS2 = kGemvMmaS2Config, kS4 = kGemvMmaS4Config, kS8 = kGemvMmaS8Config;
constexpr int kDecodeM = 16;  // M = 1..16: decode proper; beyond, the small-batch rule

// N ≥ 8192, M ≤ 8: the persistent grid has two blocks per SM, so a block walks about
// per = (N/8) / (2·SMs) strips, S at a time, its last tile partly empty: a fraction
// per / (S·⌈per/S⌉) of its strip slots does work. s4 shares each A fragment over more strips and
// reduces less, so it is kept unless s2 fills at least 5 points more (the 7B qkv 12288: 97% vs
// 73%; the 70B gate/up 28672: 97% vs 85%; but 22016: 87% both).
int wide_strips(int n) {
  const double per = (double)(n / 8) / (2.0 * std::max(1, device_sms()));
  auto fill = [&](int st) { return per / (st * std::ceil(per / st)); };
  return fill(2) > fill(4) + 0.05 ? kS2 : kS4;
}

// The GEMV config for integer scales at 1 ≤ M ≤ 64, or -1 where the tiles do better.
int decode_gemv(int m, int n, int k) {
  if (m > kDecodeM) return m <= dispatch_gemv_max_m() && (m <= 32 || n < 8192) ? kS4 : -1;
  if (k >= 16384 && n >= 8192) return m == 1 ? kGemvConfig : m >= 4 ? kS8 : kS4;
  if (m > 8) return n < 8192 ? kS4 : k >= 8192 ? kS8 : wide_strips(n);
  return n < 8192 ? kS2 : wide_strips(n);
}

}  // namespace

// ODYSSEY_GEMV_MAX_M=16 restores the tiles for M = 17..64 (read per call: A/B runs).
int dispatch_gemv_max_m() {
  const char* e = std::getenv("ODYSSEY_GEMV_MAX_M");
  const int v = e ? std::atoi(e) : kGemvMmaMaxM;
  return std::max(kDecodeM, std::min(v, kGemvMmaMaxM));
}

int dispatch_config(int m, int n, int k, bool gemv_ok) {
  // Integer scales and no explicit split-K: the GEMV rule. Float group scales (the GEMVs have no
  // float variant) and an explicit split-K keep the mma kernel.
  if (gemv_ok && m >= 1) {
    const int c = decode_gemv(m, n, k);
    if (c >= 0) return c;
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
// ODYSSEY_WGMMA_V2=1 (=0 forces v1). v2 is the default since session 5 call 6 (629f90c, H100):
// ahead of v1 at every measured M and shape, bit-exact (probe 10/10, 721 forced cases each):
// 8192×28672 M=4096 2387 vs 3173 µs, M=256 158 vs 224; 4096² M=4096 234 vs 252, M=256 30.6 vs
// 39.3 (runtime/bench/results/gemm-wgmma-h100-2026-12-02-629f90c.md).
constexpr bool kSm90DispatchV2 = true;
// v3 over v2: 0 (v2), 1 (v3) or 2 (v3p); ODYSSEY_WGMMA_V3=0/1/p overrides. 0 until
// `device-run.sh wgmma` shows one ahead (its "wgmma v2 vs v3" table).
constexpr int kSm90DispatchV3 = 0;
// v4 (warp-specialized: TMA + mbarrier ring, pingpong consumers; fastgemm_sm90.cu) in v2's (or
// v3's) place: 0 (not), 1 (v4) or 2 (v4c2: v4 on 2-CTA clusters with X multicast);
// ODYSSEY_WGMMA_V4=1 / =c2 / =0 overrides. v4 is the default since session 8 call 5 (1b01b36,
// H200, `device-run.sh wgmma4`: bit-exact on every GEMM case forced and through the dispatch,
// probe 48/48, memcheck clean; v4/v2 1.15–1.27× on the 7B shapes at M = 1024 and 4096 and 1.33× on
// 8192×28672 M = 4096, integer scales; float scales 1.13–1.21×). v4c2 was slower (0.73–0.80×).
constexpr int kSm90DispatchV4 = 1;
// v5 (v4 on a persistent grid, the ring running on across tiles; fastgemm_sm90.cu) in v4's place:
// false until `device-run.sh wgmma5` measures it ahead of v4 (bit-exact there); ODYSSEY_WGMMA_V5=1
// / =0 overrides (it wins over ODYSSEY_WGMMA_V4).
constexpr bool kSm90DispatchV5 = false;
constexpr int kSm90AlwaysM = 256;  // from here on the wgmma kernel whatever the tile count

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
  // v3 (two 64-token halves, folds overlapped; fastgemm_sm90.cu): not measured yet, so only
  // with ODYSSEY_WGMMA_V3=1 (v3) or =p (v3p: v3 on a persistent grid); it then takes v2's place
  // (same tiles, so the same rule). 0: none, 1: v3, 2: v3p.
  static const int v3 = [] {
    const char* e = std::getenv("ODYSSEY_WGMMA_V3");
    if (e && std::string(e) == "1") return 1;
    if (e && std::string(e) == "p") return 2;
    if (e && std::string(e) == "0") return 0;
    return kSm90DispatchV3;
  }();
  static const int v4 = [] {
    const char* e = std::getenv("ODYSSEY_WGMMA_V4");
    if (e && std::string(e) == "1") return 1;
    if (e && std::string(e) == "c2") return 2;
    if (e && std::string(e) == "0") return 0;
    return kSm90DispatchV4;
  }();
  static const bool v5 = [] {
    const char* e = std::getenv("ODYSSEY_WGMMA_V5");
    if (e && std::string(e) == "1") return true;
    if (e && std::string(e) == "0") return false;
    return kSm90DispatchV5;
  }();
  const long long tiles = (long long)((m + kSm90TokTile - 1) / kSm90TokTile) *
                          (((n + 7) / 8 * 8 + kSm90RowTile - 1) / kSm90RowTile);
  if (!forced && m < kSm90AlwaysM && tiles < device_sms()) return -1;
  if (v5) return kWgmmaV5Config;  // same tiles as v2 and v4: the same rule
  if (v4) return v4 == 2 ? kWgmmaV4c2Config : kWgmmaV4Config;  // same tiles as v2: the same rule
  return v3 == 2 ? kWgmmaV3pConfig : v3 == 1 ? kWgmmaV3Config : v2 ? kWgmmaV2Config : kWgmmaConfig;
}

}  // namespace odyssey
