// odyssey-rt: the runtime's command line. The Go CLI (package gpu) runs it as a subprocess and
// reads the one JSON object it prints on stdout; human-readable progress and tables go to
// stderr. Every failure prints {"ok": false, "error": "..."} and exits non-zero.
//
//   odyssey-rt info
//   odyssey-rt test gemm --cases DIR [--configs NAME,...] [--kinds w4a8,w4a16,act]
//   odyssey-rt test wgmma-probe      (the Hopper wgmma kernel's operand layouts on known inputs)
//   odyssey-rt test w8a8 [--seed N]
//   odyssey-rt bench gemm [--shapes 4096x4096,...] [--m 1,16,...] [--sweep] [--out FILE.json]
//                         [--md FILE.md] [--iters 100]
//   odyssey-rt test codec --cases DIR [--kernels 7,6,5,4,3,2,1]
//   odyssey-rt bench codec [--sizes 1M..256M:4] [--bits 8,4] [--group 128] [--ranks 8] [--sym] [--kernels 7,6,5,4,3,2,1]
//   odyssey-rt bench allreduce [--sizes 256K..256M] [--bits 8,4] [--group 128] [--sym] [--dtype bf16]
//                              [--rank R --world N | ODY_RANK/ODY_WORLD] [--uid-file F] [--timeout S]
//   odyssey-rt calib --model CKPT --dir DIR [--chunk-rows 4096] [--precision fp32|fp16|exact]   (JSON lines)
//   odyssey-rt test calib32 [--seed N]
//   odyssey-rt test calib-exact [--seed N] [--no-bench]
//   odyssey-rt ppl --model DIR --tokens FILE [--batch B] [--kv-cache fp16|int8]
//                  [--tp N [--tp-bits 16|8|4] [--tp-group G] [--tp-sym]]  (N ranks on this one GPU;
//                   with --rank R --uid-file F: rank R of N over NCCL, one process per GPU)
//   odyssey-rt speed --model DIR [--baseline DIR] [--batch 1,8,16,32,64] [--kv-cache fp16|int8|fp16,int8]
//                    [--baseline-kv-cache fp16] [--prompt 1024] [--gen 128]
//                    [--repeats 5] [--profile N] [--profile-prefill N]
//                    [--tp N --rank R --uid-file F [--tp-bits 16|8|4] [--tp-group G] [--tp-sym] [--tp-threshold N]
//                     [--timeout S]]
//                    (one process per GPU: runtime/scripts/launch-allreduce.sh --command speed)
//   odyssey-rt test layers [--quick] [--seed N] [--only embed,norm,swiglu,rope,prefill,kv,decode,kv8,nll,place,refuse,fuse]
//   odyssey-rt bench layers [--iters N] [--out FILE.json] [--only kv8|fuse]
//   odyssey-rt soak allreduce [--calls 100000] [--ranks 8] [--rows 4] [--width 1024] [--bits 8]
//                             [--group 128] [--sym] [--dtype f32|f16|bf16] [--timeout 60]
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "calib/calib_server.hpp"
#include "common.hpp"
#include "json.hpp"

namespace odyssey {

long long Args::get_int(const std::string& k, long long def) const {
  auto it = kv.find(k);
  if (it == kv.end()) return def;
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (!end || *end || it->second.empty()) throw std::runtime_error("--" + k + ": not an integer: " + it->second);
  return v;
}

std::vector<long long> Args::get_list(const std::string& k, const std::vector<long long>& def) const {
  auto it = kv.find(k);
  if (it == kv.end()) return def;
  std::vector<long long> out;
  size_t pos = 0;
  const std::string& s = it->second;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    long long v = std::strtoll(part.c_str(), &end, 10);
    if (part.empty() || *end) throw std::runtime_error("--" + k + ": not a list of integers: " + s);
    out.push_back(v);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& switches) {
  Args a;
  for (int i = first; i < argc; i++) {
    std::string s = argv[i];
    if (s.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument: " + s);
    std::string k = s.substr(2);
    bool is_switch = false;
    for (auto& w : switches) is_switch |= (w == k);
    if (is_switch) {
      a.kv[k] = "1";
      continue;
    }
    if (i + 1 >= argc) throw std::runtime_error("flag --" + k + " needs a value");
    a.kv[k] = argv[++i];
  }
  return a;
}

DeviceInfo device_info(int dev) {
  DeviceInfo d;
  cudaDeviceProp p{};
  CK(cudaGetDeviceProperties(&p, dev));
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.sms = p.multiProcessorCount;
  d.memory = p.totalGlobalMem;
  d.l2 = p.l2CacheSize;
  CK(cudaDeviceGetAttribute(&d.clock_khz, cudaDevAttrClockRate, dev));
  CK(cudaDeviceGetAttribute(&d.mem_clock_khz, cudaDevAttrMemoryClockRate, dev));
  CK(cudaDeviceGetAttribute(&d.bus_width, cudaDevAttrGlobalMemoryBusWidth, dev));
  CK(cudaRuntimeGetVersion(&d.runtime_version));
  CK(cudaDriverGetVersion(&d.driver_version));
  return d;
}

static std::string version_string(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

static int cmd_info() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    throw std::runtime_error(std::string("no CUDA GPU is visible: ") +
                             (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") +
                             " (check the NVIDIA driver with nvidia-smi, and CUDA_VISIBLE_DEVICES)");
  JsonWriter w;
  w.begin_object();
  w.field("ok", true);
  w.field("runtime_version", std::string(ody_version()));
  w.field("layout_version", ODY_LAYOUT_VERSION);
  int rt = 0, drv = 0;
  CK(cudaRuntimeGetVersion(&rt));
  CK(cudaDriverGetVersion(&drv));
  w.field("cuda_runtime", version_string(rt));
  w.field("cuda_driver", version_string(drv));
  w.key("devices").begin_array();
  for (int i = 0; i < n; i++) {
    DeviceInfo d = device_info(i);
    w.begin_object();
    w.field("index", i);
    w.field("name", d.name);
    w.field("cc", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
    w.field("sms", d.sms);
    w.field("memory_bytes", (unsigned long long)d.memory);
    w.field("l2_bytes", (unsigned long long)d.l2);
    w.field("clock_khz", d.clock_khz);
    w.field("mem_clock_khz", d.mem_clock_khz);
    w.field("bus_width", d.bus_width);
    w.end_object();
    std::fprintf(stderr, "GPU %d: %s, compute capability %d.%d, %d SMs, %.1f GiB, L2 %.0f MiB\n", i,
                 d.name.c_str(), d.cc_major, d.cc_minor, d.sms, d.memory / 1073741824.0, d.l2 / 1048576.0);
  }
  w.end_array();
  w.end_object();
  std::cout << w.str() << std::endl;
  return 0;
}

static void usage() {
  std::fprintf(stderr,
               "usage: odyssey-rt info\n"
               "       odyssey-rt test gemm --cases DIR [--configs NAME,...] [--kinds w4a8,w4a16,act]\n"
               "       odyssey-rt test wgmma-probe\n"
               "       odyssey-rt test w8a8 [--seed N]\n"
               "       odyssey-rt test gemv16 [--quick] [--seed N]   (the FP16 GEMV against float64 and cuBLAS)\n"
               "       odyssey-rt bench gemm [--shapes NxK,...] [--m 1,16,...] [--sweep] [--only w4a16] [--iters N]\n"
               "                             [--out FILE.json] [--md FILE.md]\n"
               "       odyssey-rt test codec --cases DIR [--kernels 7,6,5,4,3,2,1]\n"
               "       odyssey-rt bench codec [--sizes 1M..256M:4] [--bits 8,4] [--group 128] [--ranks 8] [--sym]\n"
               "                              [--kernels 7,6,5,4,3,2,1]\n"
               "       odyssey-rt soak allreduce [--calls 100000] [--ranks 8] [--rows 4] [--width 1024] [--bits 8]\n"
               "                                 [--group 128] [--sym] [--dtype f32|f16|bf16] [--check-every 1000]\n"
               "                                 [--timeout 60] [--kernels 6]\n"
               "       odyssey-rt bench allreduce [--sizes 256K..256M] [--bits 8,4] [--group 128] [--sym]\n"
               "                                  [--dtype bf16|fp16] [--rank R --world N] [--uid-file F]\n"
               "                                  [--timeout S]   (one process per GPU: scripts/launch-allreduce.sh)\n"
               "       odyssey-rt test layers [--quick] [--seed N] [--only prefill,decode,...]\n"
               "       odyssey-rt bench layers [--iters N] [--only kv8|fuse|prefill,decode,rows] [--out FILE.json]\n"
               "       odyssey-rt calib --model CKPT --dir DIR [--chunk-rows 4096] [--precision fp32|fp16|exact]\n"
               "                        (docs/gpu-calibration.md)\n"
               "       odyssey-rt test calib32 [--seed N] [--no-bench]   (the fp32 calibration forward vs a host ref.)\n"
               "       odyssey-rt test calib-exact [--seed N] [--no-bench]   (--precision exact's kernels, bit for bit)\n"
               "       odyssey-rt ppl --model DIR --tokens FILE [--batch B] [--kv-cache fp16|int8]\n"
               "                      [--tp N [--tp-bits 16|8|4] [--tp-group G] [--tp-sym] [--rank R --uid-file F]]  (docs/executor.md)\n"
               "       odyssey-rt speed --model DIR [--baseline DIR] [--batch 1,8,16,32,64] [--kv-cache fp16,int8] [--prompt 1024]\n"
               "                        [--gen 128] [--repeats 5] [--profile N] [--profile-prefill N]\n"
               "                        [--tp N --rank R --uid-file F [--tp-bits 16|8|4] [--tp-group G] [--tp-sym] [--tp-threshold N]]\n");
}

}  // namespace odyssey

int main(int argc, char** argv) {
  using namespace odyssey;
  try {
    std::string cmd = argc > 1 ? argv[1] : "";
    std::string sub = argc > 2 ? argv[2] : "";
    if (cmd == "info") return cmd_info();
    if (cmd == "version") {
      std::cout << "{\"ok\":true,\"runtime_version\":\"" << ody_version() << "\"}" << std::endl;
      return 0;
    }
    if (cmd == "test" && sub == "gemm") return cmd_test_gemm(parse_args(argc, argv, 3, {}));
    if (cmd == "test" && sub == "wgmma-probe") return cmd_test_wgmma_probe(parse_args(argc, argv, 3, {}));
    if (cmd == "test" && sub == "w8a8") return cmd_test_w8a8(parse_args(argc, argv, 3, {}));
    if (cmd == "test" && sub == "gemv16") return cmd_test_gemv16(parse_args(argc, argv, 3, {"quick"}));
    if (cmd == "bench" && sub == "gemm") return cmd_bench_gemm(parse_args(argc, argv, 3, {"sweep"}));
    if (cmd == "test" && sub == "codec") return cmd_test_codec(parse_args(argc, argv, 3, {}));
    if (cmd == "bench" && sub == "codec") return cmd_bench_codec(parse_args(argc, argv, 3, {"sym"}));
    if (cmd == "bench" && sub == "allreduce") return cmd_bench_allreduce(parse_args(argc, argv, 3, {"sym"}));
    if (cmd == "ppl") return cmd_ppl(parse_args(argc, argv, 2, {"kv-int8", "tp-sym"}));
    if (cmd == "speed") return cmd_speed(parse_args(argc, argv, 2, {"kv-int8", "tp-sym"}));
    if (cmd == "test" && sub == "layers") return cmd_test_layers(parse_args(argc, argv, 3, {"quick"}));
    if (cmd == "test" && sub == "calib32") return cmd_test_calib32(parse_args(argc, argv, 3, {"no-bench"}));
    if (cmd == "test" && sub == "calib-exact") return cmd_test_calib_exact(parse_args(argc, argv, 3, {"no-bench"}));
    if (cmd == "bench" && sub == "layers") return cmd_bench_layers(parse_args(argc, argv, 3, {}));
    if (cmd == "calib") {
      Args a = parse_args(argc, argv, 2, {});
      auto model = a.kv.find("model"), dir = a.kv.find("dir");
      if (model == a.kv.end() || dir == a.kv.end()) throw std::runtime_error("calib needs --model CKPT --dir DIR");
      return calibgpu::run_calib_server(model->second, dir->second, (int)a.get_int("chunk-rows", 4096),
                                        a.get("precision", "fp16"));
    }
    if (cmd == "soak" && sub == "allreduce") return cmd_soak_allreduce(parse_args(argc, argv, 3, {"sym"}));
    usage();
    JsonWriter w;
    w.begin_object().field("ok", false).field("error", std::string("unknown command: ") + cmd + " " + sub).end_object();
    std::cout << w.str() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "odyssey-rt: %s\n", e.what());
    JsonWriter w;
    w.begin_object().field("ok", false).field("error", std::string(e.what())).end_object();
    std::cout << w.str() << std::endl;
    return 1;
  }
}
