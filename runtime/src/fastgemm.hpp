// fastgemm.hpp: internal interface of the W4A8 FastGEMM (fastgemm.cu) and its dispatch table
// (fastgemm_dispatch.cpp). The public surface is the C ABI in odyssey_rt.h.
#pragma once

#include <cuda_runtime.h>

#include "odyssey_rt.h"

namespace odyssey {

ody_status check_problem(const ody_w4a8_problem* p);
ody_status can_implement(const ody_w4a8_problem* p, const ody_w4a8_args* a);
size_t workspace_size(const ody_w4a8_problem* p);
ody_status gemm(const ody_w4a8_problem* p, const ody_w4a8_args* a, cudaStream_t stream);
ody_status dispatch(const ody_w4a8_problem* p, int* config, int* blocks);
int num_configs();
const char* config_name(int config);

// The config index the measured table picks for an M×N×K problem (fastgemm_dispatch.cpp).
int dispatch_config(int m, int n, int k);

}  // namespace odyssey
