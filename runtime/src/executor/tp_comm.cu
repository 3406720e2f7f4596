// tp_comm.cu: the tensor-parallel executor's all-reduce (tp_comm.hpp).
#include "executor/tp_comm.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "odyssey_rt.h"

#ifdef ODYSSEY_WITH_NCCL
#include <nccl.h>
#endif

namespace odyssey::exec {

namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("tensor-parallel all-reduce: ") + what + ": " + cudaGetErrorString(e));
}

constexpr int kMaxRanks = 8;
struct RankPtrs {
  const __half* p[kMaxRanks];
};

// out[i] = half(Σ_r float(in_r[i])), r = 0, 1, ... in order, fp32 additions rounded to nearest:
// the same bits on every rank that runs it.
__global__ void sum_ranks_kernel(RankPtrs in, int ranks, size_t n, __half* out) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float s = __half2float(in.p[0][i]);
    for (int r = 1; r < ranks; r++) s = __fadd_rn(s, __half2float(in.p[r][i]));
    out[i] = __float2half_rn(s);
  }
}

}  // namespace

void check_tp_codec(const TpCodec& c, int tp, int hidden) {
  if (c.bits != 16 && c.bits != 8 && c.bits != 4)
    throw std::invalid_argument("all-reduce bits must be 16, 8 or 4, not " + std::to_string(c.bits));
  if (c.bits == 16) return;
  const bool pow2 = c.group >= 8 && c.group <= 256 && (c.group & (c.group - 1)) == 0;
  if (!pow2) throw std::invalid_argument("all-reduce group must be 8, 16, 32, 64, 128 or 256, not " + std::to_string(c.group));
  if (tp < 1 || hidden % tp != 0 || (hidden / tp) % c.group != 0)
    throw std::invalid_argument("all-reduce group " + std::to_string(c.group) + " does not divide the per-rank chunk hidden " +
                                std::to_string(hidden) + " / tp " + std::to_string(tp));
}

class InProcessTpGroup::Rank : public TpComm {
 public:
  Rank(InProcessTpGroup* g, int r) : g_(g), r_(r) {}
  int tp() const override { return g_->tp_; }
  int rank() const override { return r_; }
  void allreduce_f16(__half* buf, size_t rows, size_t width, cudaStream_t stream) override {
    g_->run(r_, buf, rows, width, stream);
  }
  bool capturable() const override { return false; }
  const TpCodec& codec() const override { return g_->codec_; }

 private:
  InProcessTpGroup* g_;
  int r_;
};

InProcessTpGroup::InProcessTpGroup(int tp, TpCodec codec) : tp_(tp), codec_(codec) {
  if (tp < 1 || tp > kMaxRanks)
    throw std::invalid_argument("in-process tensor parallelism takes 1 to " + std::to_string(kMaxRanks) + " ranks, not " +
                                std::to_string(tp));
  if (codec.bits != 16 && codec.bits != 8 && codec.bits != 4)
    throw std::invalid_argument("all-reduce bits must be 16, 8 or 4, not " + std::to_string(codec.bits));
  for (int r = 0; r < tp; r++) ranks_.push_back(std::make_unique<Rank>(this, r));
  bufs_.assign(tp, nullptr);
  sizes_.assign(tp, 0);
  tmp_.assign(tp, nullptr);
  tmp_bytes_.assign(tp, 0);
}

InProcessTpGroup::~InProcessTpGroup() {
  for (void* p : tmp_) cudaFree(p);
  cudaFree(ws_);
  cudaFree(flag_);
}

TpComm* InProcessTpGroup::comm(int rank) {
  if (rank < 0 || rank >= tp_) throw std::invalid_argument("rank outside the group");
  return ranks_[rank].get();
}

void InProcessTpGroup::abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  cv_.notify_all();
}

void InProcessTpGroup::barrier() {
  std::unique_lock<std::mutex> lock(mu_);
  if (aborted_) throw std::runtime_error("tensor-parallel all-reduce: another rank failed");
  const long long gen = generation_;
  if (++arrived_ == tp_) {
    arrived_ = 0;
    generation_++;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return generation_ != gen || aborted_; });
  if (generation_ == gen) throw std::runtime_error("tensor-parallel all-reduce: another rank failed");
}

void InProcessTpGroup::run(int rank, __half* buf, size_t rows, size_t width, cudaStream_t stream) {
  const size_t n = rows * width, bytes = n * sizeof(__half);
  ck(cudaStreamSynchronize(stream), "partial sum");  // this rank's partial is complete
  bufs_[rank] = buf;                                   // read by the others after the barrier
  sizes_[rank] = n;
  barrier();
  for (int r = 0; r < tp_; r++)  // every rank sees the same sizes, so every rank throws alike
    if (sizes_[r] != sizes_[0])
      throw std::logic_error("tensor-parallel all-reduce: rank " + std::to_string(r) + " reduces " +
                             std::to_string(sizes_[r]) + " values, rank 0 " + std::to_string(sizes_[0]));
  if (codec_.bits == 16) {
    if (tmp_bytes_[rank] < bytes) {  // each rank grows only its own buffer
      cudaFree(tmp_[rank]);
      tmp_[rank] = nullptr;
      ck(cudaMalloc(&tmp_[rank], bytes), "sum buffer");
      tmp_bytes_[rank] = bytes;
    }
    RankPtrs in{};
    for (int r = 0; r < tp_; r++) in.p[r] = bufs_[r];
    const int threads = 256;
    const size_t want = (n + threads - 1) / threads;
    const int blocks = (int)std::min<size_t>(want > 0 ? want : 1, 4096);
    sum_ranks_kernel<<<blocks, threads, 0, stream>>>(in, tp_, n, static_cast<__half*>(tmp_[rank]));
    ck(cudaGetLastError(), "sum kernel");
    ck(cudaStreamSynchronize(stream), "sum kernel");
    barrier();  // every rank has read every partial: now each may overwrite its own
    ck(cudaMemcpyAsync(buf, tmp_[rank], bytes, cudaMemcpyDeviceToDevice, stream), "copy back");
    return;
  }
  if (rank == 0) {
    const size_t need = ody_allreduce_sim_workspace_size(tp_, rows, width, codec_.bits, codec_.group, codec_.symmetric);
    if (ws_bytes_ < need) {
      cudaFree(ws_);
      ws_ = nullptr;
      ck(cudaMalloc(&ws_, need), "codec workspace");
      ws_bytes_ = need;
    }
    if (!flag_) ck(cudaMalloc(&flag_, sizeof(int)), "codec flag");
    ck(cudaMemsetAsync(flag_, 0, sizeof(int), stream), "codec flag");
    std::vector<const void*> in(bufs_.begin(), bufs_.end());
    std::vector<void*> out(bufs_.begin(), bufs_.end());
    const ody_status s = ody_allreduce_sim(in.data(), out.data(), tp_, rows, width, ODY_DTYPE_F16, codec_.bits,
                                           codec_.group, codec_.symmetric ? 1 : 0, ws_, flag_, stream);
    const cudaError_t e = cudaStreamSynchronize(stream);
    int flag = 0;
    const cudaError_t ef = e == cudaSuccess ? cudaMemcpy(&flag, flag_, sizeof(int), cudaMemcpyDeviceToHost) : e;
    if (s != ODY_OK || e != cudaSuccess || ef != cudaSuccess || flag != 0) {
      abort();  // the other ranks wait at the next barrier: let them go with an error
      throw std::runtime_error(std::string("tensor-parallel all-reduce (codec): ") +
                               (s != ODY_OK ? std::string(ody_last_error())
                                : e != cudaSuccess ? std::string(cudaGetErrorString(e))
                                : ef != cudaSuccess ? std::string(cudaGetErrorString(ef))
                                                    : "a partial sum holds a non-finite value (codec flag " + std::to_string(flag) + ")"));
    }
  }
  barrier();  // rank 0 has written every rank's buffer
}

#ifdef ODYSSEY_WITH_NCCL
namespace {
class NcclTpComm : public TpComm {
 public:
  NcclTpComm(ncclComm_t c, TpCodec codec) : c_(c), codec_(codec) {
    if (ncclCommCount(c_, &tp_) != ncclSuccess || ncclCommUserRank(c_, &rank_) != ncclSuccess)
      throw std::runtime_error("tensor-parallel all-reduce: not an initialized NCCL communicator");
    check_tp_codec(codec_, tp_, codec_.bits == 16 ? tp_ : codec_.group * tp_);  // bits and group alone
  }
  int tp() const override { return tp_; }
  int rank() const override { return rank_; }
  bool capturable() const override { return true; }
  const TpCodec& codec() const override { return codec_; }
  void allreduce_f16(__half* buf, size_t rows, size_t width, cudaStream_t stream) override {
    const size_t n = rows * width;
    if (codec_.bits == 16) {
      const ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat16, ncclSum, c_, stream);
      if (r != ncclSuccess) throw std::runtime_error(std::string("tensor-parallel all-reduce: ncclAllReduce: ") + ncclGetErrorString(r));
      return;
    }
    if (ody_allreduce(buf, n, ODY_DTYPE_F16, codec_.bits, codec_.group, codec_.symmetric ? 1 : 0, c_, stream) != ODY_OK)
      throw std::runtime_error(std::string("tensor-parallel all-reduce: ody_allreduce: ") + ody_last_error());
  }

 private:
  ncclComm_t c_;
  TpCodec codec_;
  int tp_ = 0, rank_ = 0;
};
}  // namespace

std::unique_ptr<TpComm> make_nccl_tp_comm(void* nccl_comm, TpCodec codec) {
  return std::make_unique<NcclTpComm>(static_cast<ncclComm_t>(nccl_comm), codec);
}
#else
std::unique_ptr<TpComm> make_nccl_tp_comm(void*, TpCodec) {
  throw std::runtime_error("this runtime was built without NCCL: configure it with -DODYSSEY_WITH_NCCL=ON and NCCL_HOME "
                           "pointing at an NCCL install (odyssey runtime build finds it when present)");
}
#endif

}  // namespace odyssey::exec
