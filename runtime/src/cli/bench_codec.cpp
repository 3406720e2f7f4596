// bench_codec.cpp: `odyssey-rt bench codec` and `odyssey-rt bench allreduce`, the speed of the
// Flash Communication codec and of the compressed all-reduce (flashcomm.cu).
//
// bench codec (one GPU): for each buffer size (bytes of a 16-bit tensor, count = size/2 fp16
// values) and each bits: the three kernels of one rank of an N-rank all-reduce (quantize the
// whole buffer into N messages; reduce N received messages of one chunk into one; dequantize N
// messages into the buffer), timed with CUDA events, the median of --iters samples after a
// warm-up. GB/s counts the bytes each kernel must read and write at least once (DRAM traffic when
// the data exceeds the 60 MB L2, i.e. at the 64M and 256M sizes):
//   quantize:   the fp16 input (size) + the N messages written (N·M, M = one chunk's message:
//               codes + float32 scales + minima; 1.0625 B/value INT8 g128, 0.5625 INT4 g128);
//   reduce:     the N messages of one chunk read + the requantized one written ((N+1)·M);
//   dequantize: the N messages read + the fp16 output written (N·M + size);
// and "pct_copy" divides it by the device-to-device copy bandwidth (2·size / time: read + write)
// of the same size measured in the same run, so both count every byte once each way.
// --kernels 7,6,5 times kernel versions in the same run for an A/B (ody_fc_set_kernels: 7 the
// tensor-core INT4 g128 reduce, 6 the default, 5 without the quantize's prefetch, 4–1 earlier
// versions; 8 is no codec but the reduce's bandwidth probe: the reduce's bytes, no arithmetic);
// the goal is judged on the first version listed (default 5,4).
//
// bench allreduce (NCCL; one process per GPU, runtime/scripts/launch-allreduce.sh): rank and world
// from --rank/--world or ODY_RANK/ODY_WORLD; the communicator from NCCL_COMM_ID when set (every
// rank derives the same id: NCCL's env-based bootstrap), else from a unique-id file (--uid-file,
// written by rank 0, read by the others). For each size: plain ncclAllReduce in fp16 and bf16,
// and ody_allreduce at each --bits (input --dtype, default bf16), each the median of --iters
// timed calls. algbw = size / time and busbw = algbw · 2(n−1)/n, the formulas of nccl-tests'
// all_reduce_perf, computed on the logical 16-bit size for every row so that rows compare.
// max_abs_err / max_rel_err: against an fp32 ncclAllReduce of the same (exactly widened) inputs;
// ranks_identical: a hash of every rank's output, all-gathered. A watchdog thread aborts the
// communicator and exits with a message when a step outlives --timeout seconds (a dead peer) or
// NCCL reports an asynchronous error.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <iostream>
#include <thread>

#include "common.hpp"
#include "json.hpp"

#ifdef ODYSSEY_WITH_NCCL
#include <cuda_bf16.h>
#include <nccl.h>
#include <unistd.h>

#include "nccl_boot.hpp"
#endif

namespace odyssey {
namespace {

// "256K..256M" (powers of two, ×2 per step, or ×F with "..256M:4") or "1M,4M,16M"; suffixes K, M,
// G are powers of 1024; sizes in bytes.
std::vector<size_t> parse_sizes(const std::string& s) {
  auto one = [&](const std::string& t) -> size_t {
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    size_t mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1ull << 30, end++;
    if (t.empty() || *end || v <= 0) throw std::runtime_error("--sizes: not a size: " + t);
    return (size_t)(v * mul);
  };
  std::vector<size_t> out;
  size_t dots = s.find("..");
  if (dots != std::string::npos) {
    std::string hi = s.substr(dots + 2);
    size_t factor = 2, colon = hi.find(':');
    if (colon != std::string::npos) {
      factor = (size_t)std::strtoul(hi.substr(colon + 1).c_str(), nullptr, 10);
      hi = hi.substr(0, colon);
      if (factor < 2) throw std::runtime_error("--sizes: factor must be at least 2");
    }
    for (size_t v = one(s.substr(0, dots)), e = one(hi); v <= e; v *= factor) out.push_back(v);
  } else {
    size_t pos = 0;
    while (pos <= s.size()) {
      size_t c = s.find(',', pos);
      out.push_back(one(s.substr(pos, c == std::string::npos ? std::string::npos : c - pos)));
      if (c == std::string::npos) break;
      pos = c + 1;
    }
  }
  if (out.empty()) throw std::runtime_error("--sizes: empty");
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Median µs of fn over iters samples (CUDA events on the default stream), after warmup calls.
// before(i) runs outside the timed region (restoring an in-place buffer).
double time_us(const std::function<void()>& fn, int iters, int warmup, cudaStream_t st = nullptr,
               const std::function<void()>& before = nullptr) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; i++) {
    if (before) before();
    fn();
  }
  CK(cudaStreamSynchronize(st));
  std::vector<double> us;
  for (int i = 0; i < iters; i++) {
    if (before) before();
    CK(cudaEventRecord(a, st));
    fn();
    CK(cudaEventRecord(b, st));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    us.push_back(ms * 1000.0);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(us);
}

// Deterministic values of rank r (the spec's test-vector hash, ±8 with outlier columns).
std::vector<float> rank_values(int r, size_t count) {
  std::vector<float> v(count);
  for (size_t k = 0; k < count; k++) {
    uint32_t u = (uint32_t)(r * 1000003u + (uint32_t)k);
    u *= 2654435761u;
    u ^= u >> 15;
    u *= 2246822519u;
    u ^= u >> 13;
    float x = (float)((int32_t)u >> 8) * 0x1p-20f;
    if (k % 97 == 5) x *= 64;
    v[k] = x;
  }
  return v;
}

}  // namespace

int cmd_bench_codec(const Args& a) {
  const auto sizes = parse_sizes(a.get("sizes", "1M..256M:4"));
  const auto bits_list = a.get_list("bits", {8, 4});
  const int group = (int)a.get_int("group", 128);
  const int ranks = (int)a.get_int("ranks", 8);
  const int sym = a.has("sym") ? 1 : 0;
  const int iters = (int)a.get_int("iters", 50), warmup = (int)a.get_int("warmup", 5);
  const auto versions = a.get_list("kernels", {5, 4});
  if (iters < 1 || ranks < 1) throw std::runtime_error("--iters and --ranks must be positive");
  for (long long v : versions) ody_check(ody_fc_set_kernels((int)v), "--kernels");
  int dev = 0;
  CK(cudaGetDevice(&dev));
  DeviceInfo di = device_info(dev);
  std::fprintf(stderr, "bench codec on %s: fp16 input, %d ranks, group %d, %s\n", di.name.c_str(), ranks, group,
               sym ? "symmetric" : "asymmetric");
  JsonWriter w;
  w.begin_object();
  w.field("ok", true);
  w.field("gpu", di.name);
  w.field("ranks", ranks);
  w.field("group", group);
  w.field("symmetric", sym != 0);
  w.field("sms", di.sms);
  double worst_pct = 1e30;
  // The whole codec of one rank at the largest size, per bits: the three stages' bytes over their
  // summed time, against the same copy bandwidth (what one rank's share of an all-reduce costs
  // beside the transport).
  std::map<long long, std::pair<double, double>> codec_bytes_us;  // bits → (bytes, µs)
  double codec_copy_gbs = 0;
  w.key("rows").begin_array();
  for (size_t size : sizes) {
    const size_t count = size / 2;
    if (count % ((size_t)ranks * group) != 0) {
      std::fprintf(stderr, "size %zu: skipped (count not a multiple of ranks·group)\n", size);
      continue;
    }
    const size_t chunk = count / ranks;
    DeviceBuffer x(size), y(size);
    {
      auto v = rank_values(0, count);
      std::vector<uint16_t> h(count);
      for (size_t k = 0; k < count; k++) h[k] = __half_raw(__float2half_rn(v[k])).x;
      x.upload(h.data(), size);
    }
    const double copy_us = time_us([&] { CK(cudaMemcpyAsync(y.get(), x.get(), size, cudaMemcpyDeviceToDevice)); },
                                   iters, warmup);
    const double copy_gbs = 2.0 * size / copy_us / 1e3;
    for (long long bits : bits_list)
    for (long long version : versions) {
      ody_check(ody_fc_set_kernels((int)version), "ody_fc_set_kernels");
      const size_t mb = ody_fc_message_bytes(1, chunk, (int)bits, group, sym);
      const size_t slot = ody_fc_slot_bytes(1, chunk, (int)bits, group, sym);
      DeviceBuffer msgs(ranks * slot), red(slot);
      msgs.fill(0);
      ody_check(ody_fc_quantize(x.get(), ODY_DTYPE_F16, 1, count, ranks, (int)bits, group, sym, msgs.get(), nullptr,
                                nullptr),
                "ody_fc_quantize");
      struct K {
        const char* name;
        double bytes;
        std::function<void()> fn;
      };
      std::vector<K> ks = {
          {"quantize", (double)size + ranks * mb,
           [&] {
             ody_check(ody_fc_quantize(x.get(), ODY_DTYPE_F16, 1, count, ranks, (int)bits, group, sym, msgs.get(),
                                       nullptr, nullptr),
                       "ody_fc_quantize");
           }},
          {"reduce", (double)(ranks + 1) * mb,
           [&] {
             ody_check(ody_fc_reduce(msgs.get(), ranks, 1, chunk, (int)bits, group, sym, red.get(), nullptr, nullptr),
                       "ody_fc_reduce");
           }},
          {"dequantize", (double)size + ranks * mb,
           [&] {
             ody_check(ody_fc_dequantize(msgs.get(), ranks, 1, count, (int)bits, group, sym, ODY_DTYPE_F16, nullptr,
                                         y.get(), nullptr),
                       "ody_fc_dequantize");
           }},
      };
      for (auto& k : ks) {
        const double us = time_us(k.fn, iters, warmup);
        const double gbs = k.bytes / us / 1e3;
        std::fprintf(stderr, "%10zu B  int%-2lld v%lld %-10s %9.2f us %8.1f GB/s  %5.1f%% of copy (%.1f GB/s)\n", size,
                     bits, version, k.name, us, gbs, 100 * gbs / copy_gbs, copy_gbs);
        w.begin_object();
        w.field("size_bytes", (unsigned long long)size);
        w.field("bits", (long long)bits);
        w.field("kernels", (long long)version);
        w.field("kernel", std::string(k.name));
        w.field("bytes", k.bytes);
        w.field("us", us);
        w.field("gbs", gbs);
        w.field("copy_gbs", copy_gbs);
        w.field("pct_copy", 100 * gbs / copy_gbs);
        w.end_object();
        // Issue 9's goal: every codec stage at >= 80% of the copy bandwidth, judged at the
        // largest size (where launch latency no longer counts).
        if (size == sizes.back() && version == versions.front()) {
          worst_pct = std::min(worst_pct, 100 * gbs / copy_gbs);
          codec_bytes_us[bits].first += k.bytes;
          codec_bytes_us[bits].second += us;
          codec_copy_gbs = copy_gbs;
        }
      }
    }
  }
  ody_check(ody_fc_set_kernels((int)versions.front()), "ody_fc_set_kernels");
  w.end_array();
  w.key("goals").begin_array();
  w.begin_object();
  w.field("name", "codec throughput (kernels v" + std::to_string(versions.front()) +
                     "), slowest stage at the largest size, % of copy bandwidth");
  w.field("target", 80.0);
  w.field("measured", worst_pct > 1e29 ? 0.0 : worst_pct);
  w.field("met", worst_pct <= 1e29 && worst_pct >= 80.0);
  w.end_object();
  for (const auto& [bits, bu] : codec_bytes_us) {
    const double pct = bu.second > 0 && codec_copy_gbs > 0 ? 100 * (bu.first / bu.second / 1e3) / codec_copy_gbs : 0.0;
    std::fprintf(stderr, "codec INT%lld (one rank: quantize + reduce + dequantize) at %zu B: %.1f%% of copy\n", bits,
                 sizes.back(), pct);
    w.begin_object();
    w.field("name", "codec throughput INT" + std::to_string(bits) + " (kernels v" + std::to_string(versions.front()) +
                       "), one rank's quantize + reduce + dequantize at the largest size, % of copy bandwidth");
    w.field("target", 80.0);
    w.field("measured", pct);
    w.field("met", pct >= 80.0);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  std::cout << w.str() << std::endl;
  return 0;
}

#ifndef ODYSSEY_WITH_NCCL

int cmd_bench_allreduce(const Args&) {
  throw std::runtime_error(
      "bench allreduce needs NCCL: configure with -DODYSSEY_WITH_NCCL=ON (and NCCL_HOME), then run it under "
      "runtime/scripts/launch-allreduce.sh");
}

#else

namespace {

uint64_t fnv(const std::vector<uint8_t>& b) {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t c : b) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

int cmd_bench_allreduce(const Args& a) {
  auto env_int = [](const char* k, long long def) {
    const char* v = std::getenv(k);
    return v ? std::strtoll(v, nullptr, 10) : def;
  };
  const int rank = (int)a.get_int("rank", env_int("ODY_RANK", 0));
  const int world = (int)a.get_int("world", env_int("ODY_WORLD", 1));
  const int device = (int)a.get_int("device", 0);
  const auto sizes = parse_sizes(a.get("sizes", "256K..256M"));
  const auto bits_list = a.get_list("bits", {8, 4});
  const int group = (int)a.get_int("group", 128);
  const int sym = a.has("sym") ? 1 : 0;
  const std::string dtype_s = a.get("dtype", "bf16");
  const int iters = (int)a.get_int("iters", 20), warmup = (int)a.get_int("warmup", 5);
  const double timeout_s = (double)a.get_int("timeout", 300);
  if (world < 1 || rank < 0 || rank >= world) throw std::runtime_error("bad --rank/--world");
  if (dtype_s != "bf16" && dtype_s != "fp16") throw std::runtime_error("--dtype: bf16 or fp16");
  const int dt = dtype_s == "bf16" ? ODY_DTYPE_BF16 : ODY_DTYPE_F16;
  CK(cudaSetDevice(device));
  ncclUniqueId id = get_unique_id(rank, a.get("uid-file"), timeout_s);
  ncclComm_t comm;
  CKN(ncclCommInitRank(&comm, world, id, rank));
  Watchdog dog(comm, rank, timeout_s);
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  DeviceInfo di = device_info(device);
  if (rank == 0)
    std::fprintf(stderr, "bench allreduce: %d ranks on %s, %s input, group %d %s\n", world, di.name.c_str(),
                 dtype_s.c_str(), group, sym ? "symmetric" : "asymmetric");
  JsonWriter w;
  w.begin_object();
  w.field("ok", true);
  w.field("rank", rank);
  w.field("world", world);
  w.field("gpu", di.name);
  w.field("dtype", dtype_s);
  w.field("group", group);
  w.field("symmetric", sym != 0);
  w.field("threshold", (unsigned long long)ody_allreduce_threshold());
  w.key("rows").begin_array();
  const double bus = world > 1 ? 2.0 * (world - 1) / world : 1.0;
  for (size_t size : sizes) {
    const size_t count = size / 2;
    auto vals = rank_values(rank, count);
    std::vector<uint16_t> h16(count), hbf(count);
    std::vector<float> widened(count);
    for (size_t k = 0; k < count; k++) {
      h16[k] = __half_raw(__float2half_rn(vals[k])).x;
      __nv_bfloat16_raw b = __nv_bfloat16_raw(__float2bfloat16_rn(vals[k]));
      hbf[k] = b.x;
      widened[k] = dt == ODY_DTYPE_BF16 ? __bfloat162float(__nv_bfloat16(b)) : __half2float(__half(__half_raw{h16[k]}));
    }
    DeviceBuffer src16(size), srcbf(size), buf(size), ref(count * 4);
    src16.upload(h16.data(), size);
    srcbf.upload(hbf.data(), size);
    // The reference: an fp32 all-reduce of the exactly widened inputs.
    ref.upload(widened.data(), count * 4);
    dog.arm("the fp32 reference all-reduce");
    CKN(ncclAllReduce(ref.get(), ref.get(), count, ncclFloat, ncclSum, comm, st));
    CK(cudaStreamSynchronize(st));
    std::vector<float> refh(count);
    ref.download(refh.data(), count * 4);
    double ref_max = 0;
    for (float v : refh) ref_max = std::max(ref_max, (double)std::fabs(v));
    struct Variant {
      std::string name;
      int bits;
      int dtype;
    };
    std::vector<Variant> vs = {{"nccl_fp16", 16, ODY_DTYPE_F16}, {"nccl_bf16", 16, ODY_DTYPE_BF16}};
    for (long long b : bits_list) vs.push_back({"flashcomm_int" + std::to_string(b), (int)b, dt});
    for (auto& v : vs) {
      const DeviceBuffer& src = v.dtype == ODY_DTYPE_F16 ? src16 : srcbf;
      ody_status probe = v.bits == 16 ? ODY_OK : ody_fc_can_implement(1, count, world, v.dtype, v.bits, group, sym);
      if (probe != ODY_OK) {
        if (rank == 0) std::fprintf(stderr, "%10zu B %-16s skipped: %s\n", size, v.name.c_str(), ody_last_error());
        continue;
      }
      auto restore = [&] { CK(cudaMemcpyAsync(buf.get(), src.get(), size, cudaMemcpyDeviceToDevice, st)); };
      auto call = [&] {
        ody_check(ody_allreduce(buf.get(), count, v.dtype, v.bits, group, sym, comm, st), "ody_allreduce");
      };
      dog.arm(v.name.c_str());
      const double us = time_us(call, iters, warmup, st, restore);
      // Accuracy and agreement, on one more call.
      restore();
      call();
      int flags = 0;
      ody_check(ody_allreduce_flags(&flags, st), "ody_allreduce_flags");
      std::vector<uint8_t> out(size);
      buf.download(out.data(), size);
      double max_err = 0;
      for (size_t k = 0; k < count; k++) {
        uint16_t u;
        std::memcpy(&u, &out[2 * k], 2);
        float y = v.dtype == ODY_DTYPE_F16 ? __half2float(__half(__half_raw{u}))
                                           : __bfloat162float(__nv_bfloat16(__nv_bfloat16_raw{u}));
        max_err = std::max(max_err, (double)std::fabs(y - refh[k]));
      }
      DeviceBuffer hashes(8 * world), mine(8);
      uint64_t hsh = fnv(out);
      mine.upload(&hsh, 8);
      CKN(ncclAllGather(mine.get(), hashes.get(), 8, ncclUint8, comm, st));
      CK(cudaStreamSynchronize(st));
      std::vector<uint64_t> all(world);
      hashes.download(all.data(), 8 * world);
      bool same = std::all_of(all.begin(), all.end(), [&](uint64_t x) { return x == all[0]; });
      const double algbw = size / us / 1e3;
      if (rank == 0)
        std::fprintf(stderr, "%10zu B %-16s %10.1f us  algbw %7.1f GB/s  busbw %7.1f GB/s  max err %.3g (%.3g of max|sum|)%s%s\n",
                     size, v.name.c_str(), us, algbw, algbw * bus, max_err, ref_max > 0 ? max_err / ref_max : 0.0,
                     same ? "" : "  RANKS DIFFER", flags ? "  ERROR FLAG" : "");
      w.begin_object();
      w.field("size_bytes", (unsigned long long)size);
      w.field("variant", v.name);
      w.field("bits", v.bits);
      w.field("us", us);
      w.field("algbw_gbs", algbw);
      w.field("busbw_gbs", algbw * bus);
      w.field("max_abs_err", max_err);
      w.field("max_rel_err", ref_max > 0 ? max_err / ref_max : 0.0);
      w.field("ranks_identical", same);
      w.field("flags", flags);
      w.end_object();
    }
  }
  w.end_array();
  w.end_object();
  dog.destroying();
  CK(cudaStreamSynchronize(st));
  CKN(ncclCommDestroy(comm));
  std::cout << w.str() << std::endl;
  return 0;
}

#endif

}  // namespace odyssey
