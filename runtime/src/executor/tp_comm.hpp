// tp_comm.hpp: the all-reduce a tensor-parallel executor calls after its row-parallel linears
// (issue 11, part 2). Rank r's o_proj and down_proj produce a partial sum y_r [rows, hidden]
// (fp16, from its slice of the input columns); every rank needs Σ_r y_r before the residual add.
//
// Two implementations:
//   - InProcessTpGroup: tp ranks as tp executors in one process on one GPU (each on its own
//     thread and stream), for validation without several GPUs. bits 16 sums the ranks' fp16
//     partials in fp32 in rank order and rounds once (every rank computes the same bits); bits
//     8 and 4 run the Flash Communication codec over all ranks' buffers (ody_allreduce_sim: the
//     arithmetic of the NCCL path, bit-exact with the Go reference). Host barriers and stream
//     synchronizations order the ranks, so it cannot be captured in a CUDA graph (decode
//     graphs refuse it: capturable() is false).
//   - NcclTpComm (tp_comm.cu, built with ODYSSEY_WITH_NCCL): one process per GPU, ncclAllReduce
//     (bits 16) or ody_allreduce (the compressed all-reduce); capturable.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace odyssey::exec {

// The all-reduce's codec: bits 16 (plain sum), 8 or 4 (Flash Communication, groups of
// `group` values, asymmetric unless symmetric).
struct TpCodec {
  int bits = 16;
  int group = 128;
  bool symmetric = false;
};

class TpComm {
 public:
  virtual ~TpComm() = default;
  virtual int tp() const = 0;
  virtual int rank() const = 0;
  // In place on buf ([rows, width] fp16, contiguous), on stream, ordered after the work already
  // enqueued there. Every rank calls it with the same rows and width, in the same order.
  virtual void allreduce_f16(__half* buf, size_t rows, size_t width, cudaStream_t stream) = 0;
  // Whether allreduce_f16 may be called during CUDA-graph capture.
  virtual bool capturable() const = 0;
  virtual const TpCodec& codec() const = 0;
};

// Checks a codec against a hidden width split over tp ranks (std::invalid_argument naming the
// numbers): bits 16, 8 or 4; for 8 and 4 a group of 8..256 (a power of two) that divides
// hidden / tp, the chunk each rank reduces.
void check_tp_codec(const TpCodec& c, int tp, int hidden);

// The NCCL communicator of one process per GPU (nccl_comm: an initialized ncclComm_t, owned by
// the caller and outliving the result): bits 16 runs ncclAllReduce (fp16, sum), 8 and 4
// ody_allreduce (the compressed all-reduce; its workspace grows on first use, so the first call
// at the largest size must come before any graph capture: the executor's prefill does that).
// Capturable. Without ODYSSEY_WITH_NCCL it throws, saying how to build with NCCL.
std::unique_ptr<TpComm> make_nccl_tp_comm(void* nccl_comm, TpCodec codec);

class InProcessTpGroup {
 public:
  InProcessTpGroup(int tp, TpCodec codec);
  ~InProcessTpGroup();
  InProcessTpGroup(const InProcessTpGroup&) = delete;
  InProcessTpGroup& operator=(const InProcessTpGroup&) = delete;
  // Rank r's communicator (owned by the group; valid while it lives).
  TpComm* comm(int rank);
  // Wakes every rank waiting in an all-reduce with an error (a rank that failed calls it, so
  // that the others do not wait forever): their allreduce_f16 throws.
  void abort();

 private:
  class Rank;
  friend class Rank;
  void barrier();  // throws once aborted
  void run(int rank, __half* buf, size_t rows, size_t width, cudaStream_t stream);

  int tp_;
  TpCodec codec_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  long long generation_ = 0;
  bool aborted_ = false;
  std::vector<__half*> bufs_;  // this call's buffer of each rank
  std::vector<size_t> sizes_;  // and its value count (every rank must reduce as many)
  std::vector<void*> tmp_;     // bits 16: each rank's sum before it overwrites its buffer
  std::vector<size_t> tmp_bytes_;
  void* ws_ = nullptr;         // bits 8/4: ody_allreduce_sim's workspace (rank 0 runs it)
  size_t ws_bytes_ = 0;
  int* flag_ = nullptr;        // its error flag
};

}  // namespace odyssey::exec
