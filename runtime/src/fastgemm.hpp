// fastgemm.hpp: internal interface of the W4A8 FastGEMM (fastgemm.cu) and its dispatch table
// (fastgemm_dispatch.cpp). The public surface is the C ABI in odyssey_rt.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

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
};
constexpr int kGemvThreads = 256;  // 8 warps per block, splitting K (gemv.cu)
void launch_w4a8_gemv(const GemvParams& p, cudaStream_t stream);

// The tensor-core GEMV for M ≤ 16 (gemv_mma.cu): configs "gemv_mma_s2", "_s4" and "_s8"
// (2, 4 or 8 strips of 8 columns per block), integer scales only, no split-K.
constexpr int kGemvMmaMaxM = 16;
constexpr int kGemvMmaS2Config = 13;  // indexes in kConfigs (fastgemm.cu asserts them)
constexpr int kGemvMmaS4Config = 14;
constexpr int kGemvMmaS8Config = 15;
void launch_w4a8_gemv_mma(GemvParams p, int strips, cudaStream_t stream);
int gemv_mma_blocks(int n, int strips);  // its grid size

}  // namespace odyssey
