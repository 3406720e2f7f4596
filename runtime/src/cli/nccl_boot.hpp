// nccl_boot.hpp: what an odyssey-rt command needs to join an NCCL communicator as one process
// per GPU (bench allreduce, speed --tp): the unique id through NCCL_COMM_ID or a file written by
// rank 0, and a watchdog that ends a rank stuck on a dead peer with a message. Only with
// ODYSSEY_WITH_NCCL (the includer checks).
#pragma once

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace odyssey {

#define CKN(call)                                                                                       \
  do {                                                                                                  \
    ncclResult_t r_ = (call);                                                                           \
    if (r_ != ncclSuccess) throw std::runtime_error(std::string(#call) + ": " + ncclGetErrorString(r_)); \
  } while (0)

// Aborts the communicator and exits when a step outlives its deadline or NCCL reports an
// asynchronous error (a peer died): the surviving ranks end with a message instead of hanging.
class Watchdog {
 public:
  Watchdog(ncclComm_t comm, int rank, double timeout_s) : comm_(comm), rank_(rank), timeout_(timeout_s) {
    th_ = std::thread([this] { loop(); });
  }
  ~Watchdog() {
    stop_ = true;
    th_.join();
  }
  void arm(const char* what) {
    what_ = what;
    deadline_ = now() + timeout_;
  }
  // Before ncclCommDestroy: from here on the communicator is not polled (it is being freed);
  // the deadline still ends a destroy that hangs, without touching the communicator.
  void destroying() {
    destroying_ = true;
    arm("ncclCommDestroy");
  }

 private:
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  void loop() {
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ncclResult_t async = ncclSuccess;
      if (!destroying_) ncclCommGetAsyncError(comm_, &async);
      const bool late = now() > deadline_.load();
      if (async != ncclSuccess || late) {
        std::string msg = "rank " + std::to_string(rank_) + ": " +
                          (late ? "no progress for " + std::to_string((int)timeout_) + " s in " + what_.load() +
                                      " (a peer died or hangs)"
                                : std::string("NCCL asynchronous error: ") + ncclGetErrorString(async));
        std::fprintf(stderr, "odyssey-rt: %s; aborting the communicator\n", msg.c_str());
        std::printf("{\"ok\":false,\"error\":\"%s\"}\n", msg.c_str());
        std::fflush(stdout);
        if (!destroying_) std::thread([c = comm_] { ncclCommAbort(c); }).detach();
        std::this_thread::sleep_for(std::chrono::seconds(3));
        std::_Exit(3);
      }
    }
  }
  ncclComm_t comm_;
  int rank_;
  double timeout_;
  std::atomic<bool> stop_{false}, destroying_{false};
  std::atomic<double> deadline_{1e300};
  std::atomic<const char*> what_{"init"};
  std::thread th_;
};


inline ncclUniqueId get_unique_id(int rank, const std::string& uid_file, double timeout_s) {
  // Never NVLink multicast (it can take a shared host's GPUs out of service): forced off here,
  // before NCCL reads its environment, whatever the caller or launcher set.
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  ncclUniqueId id;
  if (std::getenv("NCCL_COMM_ID")) {  // env-based bootstrap: every rank derives the same id
    CKN(ncclGetUniqueId(&id));
    return id;
  }
  if (uid_file.empty()) throw std::runtime_error("set NCCL_COMM_ID=host:port or pass --uid-file PATH (runtime/scripts/launch-allreduce.sh does)");
  if (rank == 0) {
    CKN(ncclGetUniqueId(&id));
    std::string tmp = uid_file + ".tmp";
    std::ofstream(tmp, std::ios::binary).write(reinterpret_cast<const char*>(&id), sizeof(id));
    if (std::rename(tmp.c_str(), uid_file.c_str()) != 0) throw std::runtime_error("cannot write " + uid_file);
    return id;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    std::ifstream f(uid_file, std::ios::binary);
    if (f && f.read(reinterpret_cast<char*>(&id), sizeof(id)) && f.gcount() == (std::streamsize)sizeof(id)) return id;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s)
      throw std::runtime_error("rank " + std::to_string(rank) + ": no unique id in " + uid_file + " after " +
                               std::to_string((int)timeout_s) + " s (did rank 0 start?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}


}  // namespace odyssey
