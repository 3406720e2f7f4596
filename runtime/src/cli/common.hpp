// common.hpp: small host-side helpers shared by odyssey-rt's commands: checked CUDA calls that
// throw (the CLI turns any exception into {"ok": false, "error": ...} and a non-zero exit),
// owning device buffers (untyped DeviceBuffer, typed Buf), fp16 conversion for the host, and argument parsing.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "odyssey_rt.h"

namespace odyssey {

inline void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e) + " (" + file + ":" +
                             std::to_string(line) + ")");
}
#define CK(call) ::odyssey::cuda_check((call), #call, __FILE__, __LINE__)

inline void ody_check(ody_status s, const char* what) {
  if (s != ODY_OK) throw std::runtime_error(std::string(what) + ": " + ody_last_error());
}

// An owning device allocation (cudaMalloc: 256-byte aligned).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) CK(cudaMalloc(&ptr_, bytes));
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (ptr_) cudaFree(ptr_);
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  void upload(const void* src, size_t n) {
    if (n > bytes_) throw std::runtime_error("upload larger than the buffer");
    if (n) CK(cudaMemcpy(ptr_, src, n, cudaMemcpyHostToDevice));
  }
  void download(void* dst, size_t n) const {
    if (n > bytes_) throw std::runtime_error("download larger than the buffer");
    if (n) CK(cudaMemcpy(dst, ptr_, n, cudaMemcpyDeviceToHost));
  }
  void fill(int byte) {
    if (bytes_) CK(cudaMemset(ptr_, byte, bytes_));
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A typed device array filled from (and read back into) a host vector: the calibration tests'
// operands. get() waits for the device first, so results of kernels on any stream are complete.
template <class T>
struct Buf {
  T* p = nullptr;
  size_t n = 0;
  explicit Buf(size_t count) : n(count) { CK(cudaMalloc(&p, (count > 0 ? count : 1) * sizeof(T))); }
  Buf(const std::vector<T>& v) : Buf(v.size()) { CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  std::vector<T> get() const {
    std::vector<T> v(n);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

inline float half_bits_to_float(uint16_t h) {
  __half_raw r;
  r.x = h;
  return __half2float(__half(r));
}

// Flags of the form --name value and bare --switch, after the subcommand words.
// splitmix64: small, deterministic, and the same on every platform: the tests' random inputs.
// `salt` keeps each test's historical stream (test_calib_exact was written with 7, the others 1).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed, uint64_t salt = 1) : s(seed * 0x9E3779B97F4A7C15ull + salt) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  float uniform(float a, float b) { return (float)(a + (b - a) * uniform()); }
  int below(int n) { return (int)(next() % (uint64_t)n); }
};

struct Args {
  std::map<std::string, std::string> kv;
  bool has(const std::string& k) const { return kv.count(k) > 0; }
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  long long get_int(const std::string& k, long long def) const;
  std::vector<long long> get_list(const std::string& k, const std::vector<long long>& def) const;
};
Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& switches);

struct DeviceInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0, sms = 0;
  size_t memory = 0, l2 = 0;
  int clock_khz = 0, mem_clock_khz = 0, bus_width = 0;
  int runtime_version = 0, driver_version = 0;
};
DeviceInfo device_info(int dev);

int cmd_test_gemm(const Args& a);
int cmd_test_wgmma_probe(const Args& a);
int cmd_test_w8a8(const Args& a);        // test_w8a8.cpp
int cmd_test_gemv16(const Args& a);     // test_gemv16.cpp
int cmd_bench_gemm(const Args& a);
int cmd_test_codec(const Args& a);       // test_codec.cpp
int cmd_bench_codec(const Args& a);      // bench_codec.cpp
int cmd_bench_allreduce(const Args& a);  // bench_codec.cpp (needs ODYSSEY_WITH_NCCL)
int cmd_ppl(const Args& a);              // model_cmds.cpp (docs/executor.md)
int cmd_speed(const Args& a);            // model_cmds.cpp
int cmd_test_layers(const Args& a);      // test_layers.cpp
int cmd_test_calib32(const Args& a);     // test_calib32.cpp
int cmd_test_calib_exact(const Args& a);  // test_calib_exact.cpp
int cmd_bench_layers(const Args& a);     // bench_layers.cpp
int cmd_soak_allreduce(const Args& a);   // soak.cu

}  // namespace odyssey
