// emu.hpp: a host emulation of the CUDA features that executor/layers.cu uses, so that its
// kernels can be tested without a GPU (run.sh). Each CUDA thread is a fiber with its own stack
// (switched by the few instructions of emu_switch, x86-64); the fibers of a block run one at a
// time until each reaches a barrier (__syncthreads, or a warp barrier), blocks run one after
// another. Warp collectives exchange through a per-warp buffer between two warp barriers:
// __shfl_xor_sync, __shfl_down_sync, ldmatrix .x4 (and .trans) with the PTX fragment layouts, mma.sync
// m16n8k16 f16 → f32 (fp32 sums in k order). cp.async copies at once; __shared__ variables are
// statics (one block at a time); fp32/fp64 intrinsics are the host's IEEE operations.
//
// What it checks: indexing, fragment layouts, masks, tile ranges, the online softmax, barrier
// placement that deadlocks, and test_layers.cpp itself. What it cannot: the timing of cp.async
// (a missing wait would pass here), data races, the device's expf/sincos/ex2 and tensor-core
// rounding (the host's are used), alignment faults, reads outside an allocation.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>
#include <algorithm>

extern "C" void emu_switch(void** save_sp, void* new_sp);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
)");

namespace emu {
enum State { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
struct Copy {
  void* dst;
  const void* src;
  bool valid;
};
struct Fiber {
  void* sp = nullptr;
  State state = DONE;
  std::vector<char> stack;
  std::vector<Copy> open;                 // cp.async issued since the last commit
  std::vector<std::vector<Copy>> groups;  // committed, not yet waited for
};
// EMU_CPASYNC=late: a cp.async lands only when its thread waits for its group (the latest the
// hardware may complete it), so a read of a tile before its wait sees the old bytes; the
// default lands it at once (the earliest), so a copy into a tile another warp still reads
// shows there.
inline const bool g_late = [] {
  const char* e = std::getenv("EMU_CPASYNC");
  return e && std::strcmp(e, "late") == 0;
}();
inline void do_copy(const Copy& c) {
  if (c.valid) std::memcpy(c.dst, c.src, 16);
  else std::memset(c.dst, 0, 16);
}
inline void* g_sched_sp;
inline std::vector<Fiber> g_f;
inline int g_cur = 0;
inline std::function<void()> g_body;
inline uint3 g_threadIdx, g_blockIdx;
inline dim3 g_blockDim, g_gridDim;
inline std::vector<uint8_t> g_dyn(256 * 1024);
inline uint32_t g_x[64][32][8];  // warp exchange: [warp][lane][words]
inline long long g_blocks = 0;

inline void wait(State s) {
  g_f[g_cur].state = s;
  emu_switch(&g_f[g_cur].sp, g_sched_sp);
}
inline void fiber_entry() {
  g_body();
  for (auto& g : g_f[g_cur].groups)
    for (auto& c : g) do_copy(c);
  for (auto& c : g_f[g_cur].open) do_copy(c);
  g_f[g_cur].groups.clear();
  g_f[g_cur].open.clear();
  g_f[g_cur].state = DONE;
  emu_switch(&g_f[g_cur].sp, g_sched_sp);
  std::abort();
}
inline void run_block(int n) {
  constexpr size_t kStack = 128 * 1024;
  if ((int)g_f.size() < n) g_f.resize(n);
  for (int i = 0; i < n; i++) {
    Fiber& f = g_f[i];
    if (f.stack.size() < kStack) f.stack.resize(kStack);
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack.data()) + kStack) & ~(uintptr_t)15;
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                     // fake return address of fiber_entry
    *--sp = reinterpret_cast<void*>(&fiber_entry);       // ret target
    for (int r = 0; r < 6; r++) *--sp = nullptr;         // rbp rbx r12..r15
    f.sp = sp;
    f.state = RUN;
  }
  for (;;) {
    bool ran = false;
    for (int i = 0; i < n; i++) {
      if (g_f[i].state != RUN) continue;
      g_cur = i;
      g_threadIdx = uint3{(unsigned)i, 0, 0};
      emu_switch(&g_sched_sp, g_f[i].sp);
      ran = true;
    }
    bool all_done = true, all_block = true, any_block = false;
    for (int i = 0; i < n; i++) {
      if (g_f[i].state != DONE) all_done = false;
      if (g_f[i].state == WAIT_WARP || g_f[i].state == RUN) all_block = false;
      if (g_f[i].state == WAIT_BLOCK) any_block = true;
    }
    if (all_done) break;
    bool released = false;
    for (int w = 0; w * 32 < n; w++) {
      bool all = true, any = false;
      for (int i = w * 32; i < std::min(n, w * 32 + 32); i++) {
        if (g_f[i].state == WAIT_WARP) any = true;
        else if (g_f[i].state != DONE) all = false;
      }
      if (all && any) {
        for (int i = w * 32; i < std::min(n, w * 32 + 32); i++)
          if (g_f[i].state == WAIT_WARP) g_f[i].state = RUN;
        released = true;
      }
    }
    if (all_block && any_block) {
      for (int i = 0; i < n; i++)
        if (g_f[i].state == WAIT_BLOCK) g_f[i].state = RUN;
      released = true;
    }
    if (!released && !ran) {
      std::fprintf(stderr, "emu: deadlock in block (%u,%u,%u)\n", g_blockIdx.x, g_blockIdx.y, g_blockIdx.z);
      std::abort();
    }
    if (!released) {
      bool any_run = false;
      for (int i = 0; i < n; i++) any_run |= g_f[i].state == RUN;
      if (!any_run) {
        std::fprintf(stderr, "emu: deadlock (mixed barriers) in block (%u,%u,%u)\n", g_blockIdx.x, g_blockIdx.y, g_blockIdx.z);
        std::abort();
      }
    }
  }
}
template <class F>
cudaError_t launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, F fn) {
  if (block.y != 1 || block.z != 1 || block.x % 32 || block.x > 1024 || smem > g_dyn.size()) {
    std::fprintf(stderr, "emu: bad launch config\n");
    std::abort();
  }
  g_gridDim = grid;
  g_blockDim = block;
  g_body = fn;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        g_blockIdx = uint3{x, y, z};
        std::memset(g_dyn.data(), 0xA5, smem);  // garbage, as on a GPU
        run_block((int)block.x);
        g_blocks++;
      }
  return cudaSuccess;
}

inline int lane() { return g_threadIdx.x & 31; }
inline int warp() { return g_threadIdx.x >> 5; }
}  // namespace emu

#define threadIdx emu::g_threadIdx
#define blockIdx emu::g_blockIdx
#define blockDim emu::g_blockDim
#define gridDim emu::g_gridDim
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __forceinline__
#define __forceinline__ inline
#undef __shared__
#define __shared__ static
#define cudaGetLastError() cudaSuccess
#define cudaFuncSetAttribute(...) cudaSuccess
// The kernels' static shared memory as the launchers query it (gemv_mma caps its attribute by
// opt-in − static); the emulator's __shared__ arrays are host statics, so report a nominal size.
#define cudaFuncGetAttributes(a, f) ((a)->sharedSizeBytes = 128, cudaSuccess)

inline void __syncthreads() { emu::wait(emu::WAIT_BLOCK); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::wait(emu::WAIT_WARP); }
// Every lane publishes v, then reads lane src's (the warp's shuffles: xor, down, indexed).
template <class T>
T emu_shfl_from(T v, int src) {
  static_assert(sizeof(T) <= 8);
  std::memcpy(emu::g_x[emu::warp()][emu::lane()], &v, sizeof(T));
  __syncwarp();
  T r;
  std::memcpy(&r, emu::g_x[emu::warp()][src], sizeof(T));
  __syncwarp();
  return r;
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int o) {
  return emu_shfl_from(v, emu::lane() ^ o);
}
template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return emu_shfl_from(v, src & 31);
}
// Lanes past 31 read their own value, as the hardware's __shfl_down_sync does.
template <class T>
T __shfl_down_sync(unsigned, T v, int o) {
  return emu_shfl_from(v, emu::lane() + o < 32 ? emu::lane() + o : emu::lane());
}
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __double2float_rn(double a) { return (float)a; }
inline int __float2int_rn(float a) { return (int)std::nearbyint(a); }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float2 __half22float2(__half2 h) { return make_float2(__half2float(h.x), __half2float(h.y)); }
inline __half2 __halves2half2(__half a, __half b) { __half2 r; r.x = a; r.y = b; return r; }
// fp16 arithmetic of kv8.cu on the host: each operation exact in fp32 on the values it sees
// (products of two fp16 values, differences of the small integers of the int8 → fp16 trick),
// then one rounding to fp16, as the device's IEEE fp16 operations.
inline __half __hmul(__half a, __half b) { return __float2half_rn(__half2float(a) * __half2float(b)); }
inline __half2 __hmul2(__half2 a, __half2 b) { return __halves2half2(__hmul(a.x, b.x), __hmul(a.y, b.y)); }
inline __half2 __hsub2(__half2 a, __half2 b) {
  return __halves2half2(__float2half_rn(__half2float(a.x) - __half2float(b.x)), __float2half_rn(__half2float(a.y) - __half2float(b.y)));
}
inline __half2 __half2half2(__half a) { return __halves2half2(a, a); }
inline __half2 emu_float2half2_rn(float a) { return __half2half2(__float2half_rn(a)); }
#define __float2half2_rn emu_float2half2_rn
inline __half __int2half_rn(int i) { return __float2half_rn((float)i); }
// PRMT in its default mode: byte n of the result is byte (selector nibble n & 7) of {y:x}.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t v = ((uint64_t)y << 32) | x;
  unsigned r = 0;
  for (int n = 0; n < 4; n++) r |= (unsigned)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
  return r;
}
using std::min;
using std::max;

namespace odyssey::kernel {
inline uint32_t smem_u32(const void* p) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  if (b < emu::g_dyn.data() || b >= emu::g_dyn.data() + emu::g_dyn.size()) { std::fprintf(stderr, "emu: smem_u32 outside dynamic smem\n"); std::abort(); }
  return (uint32_t)(b - emu::g_dyn.data());
}
inline void cp_async16(void* dst, const void* src, bool valid) {
  if (emu::g_late)
    emu::g_f[emu::g_cur].open.push_back({dst, src, valid});
  else
    emu::do_copy({dst, src, valid});
}
inline void cp_async_commit() {
  auto& f = emu::g_f[emu::g_cur];
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}
template <int N>
inline void cp_async_wait() {
  auto& f = emu::g_f[emu::g_cur];
  while (f.groups.size() > (size_t)N) {
    for (auto& c : f.groups.front()) emu::do_copy(c);
    f.groups.erase(f.groups.begin());
  }
}
}  // namespace odyssey::kernel

namespace odyssey::layers { namespace {
inline uint16_t emu_h(uint32_t addr) { uint16_t v; std::memcpy(&v, emu::g_dyn.data() + addr, 2); return v; }
inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  if (addr % 16) { std::fprintf(stderr, "emu: ldmatrix row address not 16-byte aligned\n"); std::abort(); }
  const int w = emu::warp(), l = emu::lane();
  emu::g_x[w][l][0] = addr;
  __syncwarp();
  for (int i = 0; i < 4; i++) {
    uint32_t a = emu::g_x[w][8 * i + l / 4][0] + (l % 4) * 4;
    std::memcpy(&r[i], emu::g_dyn.data() + a, 4);
  }
  __syncwarp();
}
inline void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
  if (addr % 16) { std::fprintf(stderr, "emu: ldmatrix row address not 16-byte aligned\n"); std::abort(); }
  const int w = emu::warp(), l = emu::lane();
  emu::g_x[w][l][0] = addr;
  __syncwarp();
  for (int i = 0; i < 4; i++) {
    uint32_t a0 = emu::g_x[w][8 * i + 2 * (l % 4)][0] + (l / 4) * 2;
    uint32_t a1 = emu::g_x[w][8 * i + 2 * (l % 4) + 1][0] + (l / 4) * 2;
    r[i] = (uint32_t)emu_h(a0) | ((uint32_t)emu_h(a1) << 16);
  }
  __syncwarp();
}
inline float fast_exp2(float x) { return std::exp2(x); }  // mma_f16.cuh
inline float emu_half_of(uint32_t word, int hi) {
  __half_raw h; h.x = (uint16_t)(hi ? word >> 16 : word & 0xFFFF); return __half2float(__half(h));
}
inline void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int w = emu::warp(), l = emu::lane();
  for (int i = 0; i < 4; i++) emu::g_x[w][l][i] = a[i];
  emu::g_x[w][l][4] = b0;
  emu::g_x[w][l][5] = b1;
  __syncwarp();
  const int gid = l / 4, t = l % 4;
  for (int e = 0; e < 4; e++) {
    const int row = gid + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    float sum = c[e];
    for (int k = 0; k < 16; k++) {
      const int la = (row % 8) * 4 + (k % 8) / 2, ra = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
      const int lb = col * 4 + (k % 8) / 2, rb = k >= 8 ? 5 : 4;
      sum += emu_half_of(emu::g_x[w][la][ra], k % 2) * emu_half_of(emu::g_x[w][lb][rb], k % 2);
    }
    c[e] = sum;
  }
  __syncwarp();
}
}}  // namespace odyssey::layers::(anonymous)

// pdl.cuh on the host: blocks run one after another, so griddepcontrol has nothing to order;
// launch_pdl launches like <<<>>>.
namespace odyssey {
inline void pdl_wait() {}
inline void pdl_launch_dependents() {}
template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  return emu::launch(grid, block, smem, stream, [=]() { kernel(static_cast<KArgs>(args)...); });
}
}  // namespace odyssey
// Global-memory helpers of the decode kernels: one block at a time, so plain accesses.
template <class T>
inline T __ldcg(const T* p) { return *p; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p += v; return o; }
inline unsigned atomicMax(unsigned* p, unsigned v) { unsigned o = *p; if (v > o) *p = v; return o; }
inline void __threadfence() {}
inline __half __ushort_as_half(unsigned short u) { __half_raw h; h.x = u; return __half(h); }
#define cudaGetDevice(p) (*(p) = 0, cudaSuccess)
#define cudaDeviceGetAttribute(p, a, d) (*(p) = (a) == cudaDevAttrMaxSharedMemoryPerBlockOptin ? 232448 : 132, cudaSuccess)
#define cudaMemsetAsync(p, v, n, s) (std::memset((p), (v), (n)), cudaSuccess)
#define cudaOccupancyMaxActiveBlocksPerMultiprocessor(p, ...) (*(p) = 4, cudaSuccess)
