// status.hpp: the runtime's error plumbing. Every C entry point returns an ody_status and leaves
// a message for its thread; CUDA calls are checked through ODY_CUDA so that a failure names the
// call, the file and the line rather than surfacing later as a wrong number.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "odyssey_rt.h"

namespace odyssey {

ody_status fail(ody_status s, const std::string& msg);
void clear_error();

}  // namespace odyssey

#define ODY_CUDA(call)                                                                      \
  do {                                                                                      \
    cudaError_t ody_e_ = (call);                                                            \
    if (ody_e_ != cudaSuccess)                                                              \
      return ::odyssey::fail(ODY_ERR_CUDA, std::string(#call) + ": " +                      \
                                               cudaGetErrorString(ody_e_) + " (" __FILE__ ":" + \
                                               std::to_string(__LINE__) + ")");             \
  } while (0)
