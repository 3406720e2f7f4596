// fastgemm.hpp: internal interface of the W4A8 FastGEMM (fastgemm.cu) and its dispatch table
// (fastgemm_dispatch.cpp). The public surface is the C ABI in odyssey_rt.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "odyssey_rt.h"

namespace odyssey {

ody_status check_problem(const ody_w4a8_problem* p);
ody_status can_implement(const ody_w4a8_problem* p, const ody_w4a8_args* a);
size_t workspace_size(const ody_w4a8_problem* p);
ody_status gemm(const ody_w4a8_problem* p, const ody_w4a8_args* a, cudaStream_t stream);
ody_status dispatch(const ody_w4a8_problem* p, int* config, int* blocks);
int num_configs();
const char* config_name(int config);

// The config index the measured table picks for an M×N×K problem (fastgemm_dispatch.cpp);
// gemv_ok: integer scales and no split-K asked (the GEMV has neither float scales nor split-K).
int dispatch_config(int m, int n, int k, bool gemv_ok);
// The largest M the dispatch gives a GEMV (integer scales, no split-K): kGemvMmaMaxM, or less
// with ODYSSEY_GEMV_MAX_M (16 at least; read per call, for A/B runs).
int dispatch_gemv_max_m();

// The W4A8 GEMV for decode (gemv.cu): config "gemv_w4", M ≤ kGemvMaxM, integer scales only.
constexpr int kGemvMaxM = 4;
constexpr int kGemvConfig = 12;  // its index in kConfigs (fastgemm.cu asserts it)
struct GemvParams {
  const int8_t* x;
  const float* x_scale;
  const uint8_t* qweight;
  const int16_t* group_scale;
  const float* channel_scale;
  const float* bias;
  void* y;  // fp16 [m, n]
  int32_t* acc_out;
  int m, n, np, k;
  int group_size;  // == k for per-channel
  int act_per_token;
  int chunk_kb;    // gemv_mma: K blocks of x staged per chunk (set by launch_w4a8_gemv_mma)
  int persistent;  // gemv_mma: 1 = each block walks a balanced range of strips (set by the launcher)
};
constexpr int kGemvThreads = 256;  // 8 warps per block, splitting K (gemv.cu)
void launch_w4a8_gemv(const GemvParams& p, cudaStream_t stream);

// The tensor-core GEMV for small M (gemv_mma.cu): configs "gemv_mma_s2", "_s4" (M ≤ 64) and
// "_s8" (M ≤ 16) (2, 4 or 8 strips of 8 columns per block), integer scales only, no split-K.
constexpr int kGemvMmaMaxM = 64;
constexpr int kGemvMmaS8MaxM = 16;
constexpr int kGemvMmaS2Config = 13;  // indexes in kConfigs (fastgemm.cu asserts them)
constexpr int kGemvMmaS4Config = 14;
constexpr int kGemvMmaS8Config = 15;
void launch_w4a8_gemv_mma(GemvParams p, int strips, cudaStream_t stream);
int gemv_mma_blocks(int n, int strips);  // its grid size (persistent: what the launch takes, at most the SMs' room)

// Decode gate/up GEMV with SwiGLU and down_proj's int8 quantization in its epilogue (gemv_mma.cu,
// issue 14): y[m, c] = silu(gate[m, c]) · up[m, c] for c < cols, where gate and up are the fp16
// outputs the plain GEMV would write (same int32 sums, same epilogue_int), and y is quantized
// as layers::swiglu quantizes it (act_math.cuh): byte-identical to gemv + swiglu. A block owns
// strips/2 strips of gate and the same strips of up (no repacking: the packed layout is per
// 8-column strip). Static scale: the epilogue writes the codes. Per token: it writes fp32 y
// (y32) and max|y| per row (slots[m], atomicMax on the bits); the grid's last block (ticket
// slots[M]) quantizes the rows, writes token_scale and leaves the slots zero again.
// Limits: 1 ≤ M ≤ 8, ODY_SCALE_INT, the gemv_mma limits (K % 128 == 0, groups 32/64/128 or
// per-channel, 16-byte aligned x/qweight/group scales), ld % 16 == 0, ld ≥ cols, both weights
// with the same K, group size and group-scale row stride.
struct GemvSwigluArgs {
  const int8_t* x;            // int8 [m, k] (the mlp_norm output)
  const float* x_scale;       // [1] static or [m] per token
  int act_per_token;
  int m, k, group_size;
  int scale_ld;               // row stride (elements) of both group-scale matrices [G, scale_ld]
  // gate (W_g) and up (W_u): qweight pointing at the strip of column 0, group_scale/channel_scale/bias
  // at column 0 (bias may be null).
  const uint8_t* qweight_g;
  const int16_t* group_scale_g;
  const float* channel_scale_g;
  const float* bias_g;
  const uint8_t* qweight_u;
  const int16_t* group_scale_u;
  const float* channel_scale_u;
  const float* bias_u;
  int cols;                   // intermediate size
  int ld;                     // row stride of out and y32; columns [cols, ld) of out are written 0
  int8_t* out;                // int8 codes [m, ld]
  const float* static_scale;  // device scalar, or null: per token
  float* token_scale;         // per token: [m]
  float* y32;                 // per token: fp32 [m, ld] scratch
  unsigned* slots;            // per token: [m + 1] zeroed before the first launch, left zero
  int strips;                 // 2, 4 or 8 (0: the dispatch's choice for an N = 2·cols GEMV)
};
// cudaErrorInvalidValue (nothing launched) when the problem is outside the limits.
cudaError_t w4a8_gemv_swiglu(const GemvSwigluArgs& a, cudaStream_t stream);
// The Hopper prefill kernel (fastgemm_sm90.cu): config "wgmma_r128t128_s4", wgmma with the
// weights as A in registers (Yᵀ = W·Xᵀ), 128 weight rows × 128 tokens per block, whole K per
// block. Built only with CUDA ≥ 12 and 90 among the architectures (else sm90_wgmma_built() is
// false and check_problem refuses the config); used only on a compute capability 9.x device.
constexpr int kWgmmaConfig = 16;  // its index in kConfigs (after the GEMV configs; fastgemm.cu asserts it)
// Its second version, "wgmma_r128t128_s4_v2" (weights and scales through the shared-memory
// stages, 5 K blocks ahead; fastgemm_sm90.cu): the last config. The dispatch takes it instead of
// v1 only where kSm90DispatchV2 (fastgemm_dispatch.cpp) or ODYSSEY_WGMMA_V2=1 says so.
constexpr int kWgmmaV2Config = 17;
// Its third version, "wgmma_r128t128_s4_v3" (v2 with two 64-token halves per warpgroup whose
// folds overlap each other's MMAs; fastgemm_sm90.cu): the dispatch takes it only with
// ODYSSEY_WGMMA_V3=1 (kSm90DispatchV3 in fastgemm_dispatch.cpp keeps v2 the default until measured).
constexpr int kWgmmaV3Config = 18;
// v3 on a persistent grid (min(tiles, SMs) blocks, copies prefetched across tiles):
// "wgmma_r128t128_s4_v3p", dispatch only with ODYSSEY_WGMMA_V3=p.
constexpr int kWgmmaV3pConfig = 19;
// v4, "wgmma_ws_r128t128_v4" (issues 12/14): warp-specialized (a producer warpgroup issuing TMA /
// bulk copies into an mbarrier ring, two consumer warpgroups alternating their wgmma issue so
// one folds while the other's MMAs run); v2's tile, fold order and epilogue: bit-exact. The
// dispatch's prefill kernel on Hopper since session 8 (1.15–1.33× v2 on the H200;
// kSm90DispatchV4 in fastgemm_dispatch.cpp; ODYSSEY_WGMMA_V4=0 returns to v2).
constexpr int kWgmmaV4Config = 20;
// v4 on 2-CTA clusters (a pair of row tiles shares its X tile: each CTA copies half and TMA
// multicasts it to both, so X's L2 reads halve): "wgmma_ws_r128t128_v4c2", dispatch only with
// ODYSSEY_WGMMA_V4=c2.
constexpr int kWgmmaV4c2Config = 21;
// v5, "wgmma_ws_r128t128_v5" (issue 12): v4 on a persistent grid (one block per SM, a static
// tile schedule in v4's raster order; the producer's ring runs on across tiles, so the next
// tile's copies overlap this tile's epilogue). v4's arithmetic and fold order: bit-exact. The
// dispatch takes it only with ODYSSEY_WGMMA_V5=1 (kSm90DispatchV5 in fastgemm_dispatch.cpp)
// until measured faster than v4.
constexpr int kWgmmaV5Config = 22;
// Diagnostic variants of v4 and v5 (issue 12: where the cycles go). Bench only: they compute
// wrong results by design, exist for integer scales at group 128 only, and are reachable only
// through w4a8_sm90_diag (no config index: test, dispatch and the C ABI never see them). Each bit
// removes one part of the kernel (fastgemm_sm90.cu, "diagnostics"); kSm90DiagClock adds per-phase
// %clock counters (kSm90DiagClkSlots unsigned long longs).
constexpr int kSm90DiagNoFold = 1, kSm90DiagNoTurn = 2, kSm90DiagNoWait = 4, kSm90DiagNoMma = 8, kSm90DiagNoEpi = 16,
              kSm90DiagClock = 32, kSm90DiagPrefetch = 64,  // prefetch: a what-if (next stage read early)
              kSm90DiagSsA = 128;  // ss: the MMAs with A from shared memory (the X stage): the SS form's rate
constexpr int kSm90DiagMmaOnly = kSm90DiagNoFold | kSm90DiagNoTurn | kSm90DiagNoWait | kSm90DiagNoEpi;
constexpr int kSm90DiagClkSlots = 19;
constexpr int kSm90RowTile = 128, kSm90TokTile = 128;
constexpr int kSm90MinM = 64;     // the dispatch never picks it below this M (from 256: always)
struct Sm90Params {
  const int8_t* x;
  const float* x_scale;
  const uint8_t* qweight;
  const void* group_scale;  // int16 or float [G, Np]
  const float* channel_scale;
  const float* bias;
  void* y;  // fp16 [m, n]
  int32_t* acc_out;
  int m, n, np, k;
  int group_size;  // == k for per-channel
  int act_per_token;
  bool int_scale;
  int version;  // 1: wgmma_r128t128_s4, 2: _v2, 3: _v3, 4: _v3p (persistent), 5: wgmma_ws_r128t128_v4, 6: _v4c2, 7: _v5
  int diag;     // 0, or kSm90Diag* bits (versions 5 and 7 only; set only by w4a8_sm90_diag)
  unsigned long long* diag_clk;  // kSm90DiagClock: kSm90DiagClkSlots counters, zeroed by the caller
};
bool sm90_wgmma_built();
// Built, a compute capability 9.x device, and not turned off by ODYSSEY_WGMMA=0.
bool sm90_wgmma_usable();
ody_status launch_w4a8_sm90(const Sm90Params& p, cudaStream_t stream);
// The dispatch rule for it (fastgemm_dispatch.cpp): kWgmmaConfig, kWgmmaV2Config, kWgmmaV3Config or -1 for the
// mma table.
int dispatch_config_sm90(int m, int n, int k, int splits);
// A diagnostic launch of v4 or v5 (config kWgmmaV4Config or kWgmmaV5Config, diag ≠ 0: kSm90Diag*
// bits) on a problem the config accepts with integer scales and group 128 (K > 128); clk: the
// counters for kSm90DiagClock (else may be null). For `odyssey-rt bench gemm` only: the output
// is garbage by design. ODY_ERR_UNSUPPORTED for anything else.
ody_status w4a8_sm90_diag(const ody_w4a8_problem* p, const ody_w4a8_args* a, int config, int diag,
                          unsigned long long* clk, cudaStream_t stream);
// The diag bits of a name (nofold, noturn, nowait, nomma, noepi, mmaonly, clock, prefetch, ss,
// mmaonly-ss), -1 if unknown.
int sm90_diag_code(const std::string& name);

}  // namespace odyssey
