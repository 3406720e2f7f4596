// main_emu.cpp: `odyssey-rt test layers` on the host. The kernels (layers.cu through prep.py)
// run under emu.hpp; the test itself (test_layers.cpp) is compiled unchanged, its CUDA memory
// calls mapped to host memory below. Usage: run.sh [--quick] [--only FAMILIES] [--seed N].
#define ODYSSEY_LAYERS_EMU 1  // test_layers.cpp: no streams or graphs here
#include "emu.hpp"
#include "layers_emu.inc"
#include "kv8_emu.inc"

#include <map>
#include <string>

#define cudaMalloc(pp, n) (*(pp) = std::malloc(n), cudaSuccess)
#define cudaFree(p) (std::free(p), cudaSuccess)
#define cudaMemcpy(d, s, n, k) (std::memcpy((d), (s), (n)), cudaSuccess)
#define cudaMemset(p, v, n) (std::memset((p), (v), (n)), cudaSuccess)
#define cudaDeviceSynchronize() cudaSuccess
#include "cli/test_layers.cpp"

namespace odyssey {
long long Args::get_int(const std::string& k, long long def) const {
  auto it = kv.find(k);
  return it == kv.end() ? def : std::strtoll(it->second.c_str(), nullptr, 10);
}
}  // namespace odyssey

int main(int argc, char** argv) {
  odyssey::Args a;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    if (s == "--quick")
      a.kv["quick"] = "1";
    else if (s.rfind("--", 0) == 0 && i + 1 < argc)
      a.kv[s.substr(2)] = argv[++i];
  }
  int rc = odyssey::cmd_test_layers(a);
  std::fprintf(stderr, "emulated blocks: %lld\n", emu::g_blocks);
  return rc;
}
