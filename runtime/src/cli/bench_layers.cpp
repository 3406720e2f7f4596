// bench_layers.cpp: `odyssey-rt bench layers`, the speed of the executor's attention kernels
// (executor/layers.cu) on the LLaMA-2-7B shape (32 heads, head_dim 128).
//
// - attention_prefill: batch 1 and 8, 1024 tokens, 32/32 heads (and 32/8, GQA), both tile
//   variants (ODYSSEY_PREFILL_WARPS=4: 64 query rows per block, 8: 128). TFLOP/s counts the
//   causal work only: 4·batch·heads·head_dim·seq(seq+1)/2 (Q·Kᵀ and P·V, 2 flops per MAC, the
//   keys each query may see), the convention of the flash-attention papers' causal figures.
// - attention_decode: context 1024 and 4096 (len = max_seq), batch 1, 8 and 16, 32/32 and 32/8,
//   both split kernels (variant "fast": the register-streaming one the executor takes for
//   head_dim 64/128; "general": the 64-key shared-memory kernel, ODYSSEY_DECODE_ATTN=general,
//   the baseline measured in the same run), each followed by its combine.
//   GB/s counts the K and V bytes a step must read (batch·len·kv_heads·head_dim·2·2); pct_copy
//   divides by the device-to-device copy bandwidth (1 GiB, read + write) of the same run, the
//   memory floor convention of runtime/NOTES.md. Variant "fast+q8": the fast kernel with o_proj's
//   int8 input per token fused into the combine (the executor's W4A8 call, attention+o_quant).
//   Since the fused decode kernel (issue 14, branch attn) the variants are "fused" (default),
//   "split" (the former pair) and more: see the decode section below. --only
//   decode|prefill|rows|prefill-rows|fuse.
// - rows: add_rmsnorm (hidden 4096) and swiglu (11008), each with int8 per-token output, at batch
//   1, 8, 16, variant "reg" (register kernels) against "loop" (ODYSSEY_ROWS=loop, the former
//   kernels); rope_kv_decode at 32/32 and 32/8. Goal at batch 1: ≤ 3 µs per call.
// - decode_kv8 (also alone: --only kv8): the int8 KV cache (executor/kv8.cu) beside the fp16 one
//   in the same run, ctx 1024, batch 1/2/4/8/16/64, 32/32 and 32/8: attention "fast" (the fp16 cache,
//   attention_decode) vs "fast-kv8" (attention_decode_kv8: its default choice of kernel), "kv8-mma"
//   (the tensor-core kernel forced), "kv8-pf0" (it without its register prefetch of the next
//   iteration), "kv8-nb1" (it at 16 keys per warp iteration, not 32) and "kv8-simt" (the SIMT
//   kernel), GB/s of the bytes each must read
//   (fp16: 2·2 bytes per element; int8: 1 byte + 2 bytes of scale per head_dim elements, K and V);
//   and the decode step's append, "rope_kv" vs "rope_kv8".
// - rows gate_up+swiglu (issue 14 fusion): the decode MLP's first half on the 7B shape
//   (x int8 [batch, 4096] → gate/up 2×11008, group 128 → SwiGLU → down's int8 input), batch 1,
//   4, 8, down's input per token ("i8token") and static ("i8static"): variant "unfused" (the
//   dispatch's GEMV, ody_w4a8_gemm, then layers::swiglu: two launches, the executor with
//   ODYSSEY_DECODE_FUSE=0) against "fused" (w4a8_gemv_swiglu, one launch) in the same run. GB/s
//   and % of copy count the weight bytes (packed codes, group and channel scales) only.
// - prefill_rows (also alone: --only prefill-rows): the prefill layer's element-wise kernels
//   (norm, swiglu, o_proj's quantization, rope, kv_append) at rows 256, 1024 and 8192 on the 7B
//   shape, v1 (ODYSSEY_PREFILL_ROWS_V2=0) against v2 in the same run (section comment below).
// Each figure is the median of --iters samples (≥ 20) after a warm-up; a sample times a few
// back-to-back launches with CUDA events and divides. Inputs are random fp16 in [−1, 1].
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "common.hpp"
#include "executor/kv8.hpp"
#include "fastgemm.hpp"
#include "executor/layers.hpp"
#include "json.hpp"

namespace odyssey {
namespace {

namespace L = odyssey::layers;

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Per-launch µs of fn, one sample per `inner` launches; sorted samples.
  std::vector<double> samples_us(const std::function<void()>& fn, int iters, int inner) {
    for (int i = 0; i < 3 * inner + 2; i++) fn();  // warm-up
    CK(cudaDeviceSynchronize());
    std::vector<double> s;
    for (int it = 0; it < iters; it++) {
      CK(cudaEventRecord(a));
      for (int i = 0; i < inner; i++) fn();
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, a, b));
      s.push_back(ms * 1000.0 / inner);
    }
    CK(cudaGetLastError());
    std::sort(s.begin(), s.end());
    return s;
  }
};

double median(const std::vector<double>& s) { return s[s.size() / 2]; }

// Fills a device buffer of fp16 values in [−1, 1] from a host pool of 8 Mi values (generated
// once with an LCG), tiled with a rotating offset: the values only have to be finite.
void fill_random_half(DeviceBuffer& b) {
  static std::vector<uint16_t> pool = [] {
    std::vector<uint16_t> p(8u << 20);
    uint64_t s = 12345;
    for (auto& x : p) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      float f = (float)((double)(s >> 40) / (double)(1ull << 24)) * 2.f - 1.f;
      __half h = __float2half_rn(f);
      x = __half_raw(h).x;
    }
    return p;
  }();
  const size_t n = b.bytes() / 2, chunk = pool.size() - 4096;
  uint16_t* d = b.get<uint16_t>();
  for (size_t at = 0, k = 0; at < n; at += chunk, k++) {
    size_t len = std::min(chunk, n - at);
    CK(cudaMemcpy(d + at, pool.data() + (k * 977) % 4096, len * 2, cudaMemcpyHostToDevice));
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

int cmd_bench_layers(const Args& args) {
  const int iters = (int)args.get_int("iters", 30);
  if (iters < 20) throw std::runtime_error("bench layers: --iters must be at least 20 (the median needs samples)");
  int devn = 0;
  CK(cudaGetDevice(&devn));
  DeviceInfo dev = device_info(devn);
  Timer timer;

  double copy_gbps = 0;
  {
    const size_t bytes = 1ull << 30;
    DeviceBuffer a(bytes), b(bytes);
    a.fill(1);
    auto s = timer.samples_us([&] { CK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice)); }, iters, 1);
    copy_gbps = 2.0 * bytes / median(s) / 1e3;  // read + write
  }
  std::fprintf(stderr, "%s: device-to-device copy %.0f GB/s (read + write)\n", dev.name.c_str(), copy_gbps);

  JsonWriter w;
  w.begin_object();
  w.field("ok", true);
  w.field("runtime_version", std::string(ody_version()));
  w.key("gpu").begin_object();
  w.field("name", dev.name);
  w.field("cc", std::to_string(dev.cc_major) + "." + std::to_string(dev.cc_minor));
  w.field("sms", dev.sms);
  w.field("cuda_runtime", dev.runtime_version);
  w.field("cuda_driver", dev.driver_version);
  w.end_object();
  w.field("copy_gbps", copy_gbps);
  w.field("iters", iters);

  // --only prefill,decode,rows: the sections to run (all by default; device-run.sh's attn step
  // runs decode alone).
  const std::string only = args.has("only") ? args.get("only") : "";
  auto want = [&](const char* sec) { return only.empty() || ("," + only + ",").find("," + std::string(sec) + ",") != std::string::npos; };

  // The int8 KV cache against the fp16 one (same shapes, same run).
  if (want("kv8")) {
    const int hd = 128, nh = 32, ctx = 1024;
    w.key("decode_kv8").begin_array();
    for (int batch : {1, 2, 4, 8, 16, 64})
      for (int nkv : {32, 8}) {
        const size_t cache = (size_t)batch * ctx * nkv * hd, cells = cache / hd;
        DeviceBuffer q((size_t)batch * nh * hd * 2), out((size_t)batch * nh * hd * 2), kc(cache * 2), vc(cache * 2);
        DeviceBuffer k8(cache), v8(cache), ks(cells * 2), vs(cells * 2);
        fill_random_half(q);
        fill_random_half(kc);
        fill_random_half(vc);
        fill_random_half(k8);  // any byte is a valid code
        fill_random_half(v8);
        fill_random_half(ks);  // finite fp16 scales in [−1, 1]
        fill_random_half(vs);
        std::vector<int32_t> lens(batch, ctx);
        DeviceBuffer len(batch * 4);
        len.upload(lens.data(), batch * 4);
        const size_t wsb = std::max(L::attention_decode_workspace(batch, nh, hd, ctx),
                                    L::attention_decode_kv8_workspace(batch, nh, hd, ctx));
        DeviceBuffer ws(wsb);
        // The fused fp16 kernel's counters (the last bytes) must start at zero; the fp16 rows run
        // first, so the int8 rows' partials cannot disturb them before they are read.
        check(L::attention_decode_workspace_init(ws.get(), wsb, batch, nh, 0), "attention_decode_workspace_init");
        const float scale = 1.f / std::sqrt((float)hd);
        unsetenv("ODYSSEY_DECODE_ATTN");
        unsetenv("ODYSSEY_DECODE_GQA");
        unsetenv("ODYSSEY_KV8_ATTN");
        double us_fp16 = 0;
        // fast-kv8: the default choice (attention_decode_kv8_kernel); kv8-mma: the tensor-core
        // kernel (32 keys per warp iteration, the next iteration's loads in flight); kv8-nb1: it
        // at 16 keys (ODYSSEY_KV8_NB=1); -pf0: it without the prefetch (ODYSSEY_KV8_PF=0);
        // kv8-simt: the SIMT kernel (ODYSSEY_KV8_ATTN=simt).
        for (const char* variant : {"fast", "fast-kv8", "kv8-mma", "kv8-pf0", "kv8-nb1", "kv8-simt"}) {
          const std::string v = variant;
          const bool kv8 = v != "fast";
          unsetenv("ODYSSEY_KV8_NB");
          unsetenv("ODYSSEY_KV8_PF");
          unsetenv("ODYSSEY_KV8_ATTN");
          if (v.find("nb1") != std::string::npos) setenv("ODYSSEY_KV8_NB", "1", 1);
          if (v.find("pf0") != std::string::npos) setenv("ODYSSEY_KV8_PF", "0", 1);
          if (v == "kv8-simt") setenv("ODYSSEY_KV8_ATTN", "simt", 1);
          if (v == "kv8-mma" || v == "kv8-pf0" || v == "kv8-nb1") setenv("ODYSSEY_KV8_ATTN", "mma", 1);
          auto launch = [&] {
            if (kv8)
              check(L::attention_decode_kv8(q.get<__half>(), nh * hd, k8.get<int8_t>(), ks.get<__half>(), v8.get<int8_t>(),
                                            vs.get<__half>(), len.get<int32_t>(), out.get<__half>(), nh * hd, batch, ctx,
                                            nh, nkv, hd, scale, 0, ws.get(), wsb, 0),
                    "attention_decode_kv8");
            else
              check(L::attention_decode(q.get<__half>(), nh * hd, kc.get<__half>(), vc.get<__half>(), len.get<int32_t>(),
                                        out.get<__half>(), nh * hd, batch, ctx, nh, nkv, hd, scale, 0, ws.get(), wsb, 0),
                    "attention_decode");
          };
          auto s = timer.samples_us(launch, iters, 10);
          const double us = median(s), bytes = kv8 ? 2.0 * (cache + cells * 2) : 2.0 * cache * 2, gbs = bytes / us / 1e3;
          if (!kv8) us_fp16 = us;
          std::fprintf(stderr, "decode   batch %2d ctx %5d heads %d/%d hd %d  %-10s %9.2f us  %7.0f GB/s  %5.1f%% of copy",
                       batch, ctx, nh, nkv, hd, variant, us, gbs, 100 * gbs / copy_gbps);
          if (kv8)
            std::fprintf(stderr, "  %.2fx the fp16 cache\n", us_fp16 / us);
          else
            std::fprintf(stderr, "\n");
          w.begin_object();
          w.field("variant", variant);
          w.field("batch", batch);
          w.field("context", ctx);
          w.field("heads", nh);
          w.field("kv_heads", nkv);
          w.field("head_dim", hd);
          w.field("kv_bytes", bytes);
          w.field("us", us);
          w.field("us_min", s.front());
          w.field("us_max", s.back());
          w.field("gbs", gbs);
          w.field("pct_copy", 100 * gbs / copy_gbps);
          if (kv8) w.field("speedup_vs_fp16", us_fp16 / us);
          w.end_object();
        }
        unsetenv("ODYSSEY_KV8_NB");
        unsetenv("ODYSSEY_KV8_PF");
        unsetenv("ODYSSEY_KV8_ATTN");
        // The decode step's rope + append (fp16 vs int8), one token per sequence.
        DeviceBuffer kv((size_t)batch * 2 * nkv * hd * 2), qq((size_t)batch * nh * hd * 2), pos(batch * 4), inv(hd / 2 * 4);
        fill_random_half(kv);
        fill_random_half(qq);
        std::vector<int32_t> p(batch, ctx - 1);
        pos.upload(p.data(), batch * 4);
        std::vector<float> f(hd / 2);
        for (int i = 0; i < hd / 2; i++) f[i] = (float)std::pow(10000.0, -2.0 * i / hd);
        inv.upload(f.data(), f.size() * 4);
        const __half* kk = kv.get<__half>();
        for (const char* variant : {"rope_kv", "rope_kv8"}) {
          const bool kv8 = std::string(variant) == "rope_kv8";
          auto launch = [&] {
            if (kv8)
              check(L::rope_kv8_decode(qq.get<__half>(), nh * hd, kk, kk + nkv * hd, 2 * nkv * hd, k8.get<int8_t>(),
                                       ks.get<__half>(), v8.get<int8_t>(), vs.get<__half>(), batch, ctx, nh, nkv, hd,
                                       pos.get<int32_t>(), inv.get<float>(), 0),
                    "rope_kv8_decode");
            else
              check(L::rope_kv_decode(qq.get<__half>(), nh * hd, kk, kk + nkv * hd, 2 * nkv * hd, kc.get<__half>(),
                                      vc.get<__half>(), batch, ctx, nh, nkv, hd, pos.get<int32_t>(), inv.get<float>(), 0),
                    "rope_kv_decode");
          };
          auto s = timer.samples_us(launch, iters, 10);
          std::fprintf(stderr, "append   batch %2d heads %d/%d hd %d  %-10s %9.2f us\n", batch, nh, nkv, hd, variant, median(s));
          w.begin_object();
          w.field("variant", variant);
          w.field("batch", batch);
          w.field("heads", nh);
          w.field("kv_heads", nkv);
          w.field("head_dim", hd);
          w.field("us", median(s));
          w.end_object();
        }
      }
    w.end_array();
  }
  if (args.get("only") == "kv8") {  // the kv8 device step: these rows alone
    w.end_object();
    if (args.has("out")) {
      std::ofstream f(args.get("out"));
      f << w.str() << std::endl;
      if (!f) throw std::runtime_error("bench layers: cannot write " + args.get("out"));
    }
    std::cout << w.str() << std::endl;
    return 0;
  }

  // Prefill.
  w.key("prefill").begin_array();
  const int seq = 1024, hd = 128, nh = 32;
  for (int batch : want("prefill") ? std::vector<int>{1, 8} : std::vector<int>{})
    for (int nkv : {32, 8}) {
      const size_t rows = (size_t)batch * seq;
      DeviceBuffer q(rows * nh * hd * 2), k(rows * nkv * hd * 2), v(rows * nkv * hd * 2), out(rows * nh * hd * 2);
      fill_random_half(q);
      fill_random_half(k);
      fill_random_half(v);
      const float scale = 1.f / std::sqrt((float)hd);
      const double flops = 4.0 * batch * nh * hd * (double)seq * (seq + 1) / 2;
      for (const char* variant : {"4", "8"}) {
        setenv("ODYSSEY_PREFILL_WARPS", variant, 1);
        auto launch = [&] {
          check(L::attention_prefill(q.get<__half>(), nh * hd, k.get<__half>(), v.get<__half>(), nkv * hd, out.get<__half>(),
                                     nh * hd, batch, seq, nh, nkv, hd, scale, 0, nullptr, 0, 0),
                "attention_prefill");
        };
        auto s = timer.samples_us(launch, iters, 1);
        const double us = median(s), tflops = flops / us / 1e6;
        std::fprintf(stderr, "prefill  batch %d seq %d heads %d/%d hd %d  bm %-3d  %9.1f us  %6.1f TFLOP/s\n", batch, seq,
                     nh, nkv, hd, variant[0] == '8' ? 128 : 64, us, tflops);
        w.begin_object();
        w.field("batch", batch);
        w.field("seq", seq);
        w.field("heads", nh);
        w.field("kv_heads", nkv);
        w.field("head_dim", hd);
        w.field("block_m", variant[0] == '8' ? 128 : 64);
        w.field("us", us);
        w.field("us_min", s.front());
        w.field("us_max", s.back());
        w.field("tflops", tflops);
        w.end_object();
      }
    }
  unsetenv("ODYSSEY_PREFILL_WARPS");
  w.end_array();

  // The decode step's layer goals (issue 14's batch-1 decode goal broken down per kernel; the
  // targets are the ones runtime/NOTES.md sets, "Decode step" sections): each is looked up in
  // this run's rows and written as {name, target, measured, met}, like bench gemm's goals.
  struct LayerGoal {
    const char* name;
    double target;
    bool at_most;  // true: measured <= target (µs); false: measured >= target (% of copy)
    double measured = -1;
  };
  std::vector<LayerGoal> goals = {
      {"decode attention MHA 32/32, batch 1, ctx 1024: % of copy", 60, false},
      {"decode attention + o_proj int8 quantization, MHA 32/32, batch 1, ctx 1024: us", 8, true},
      {"decode attention GQA 32/8, batch 1, ctx 1024: % of copy", 40, false},
      {"decode attention GQA 32/8, batch 1, ctx 4096: % of copy", 40, false},
      {"add_rmsnorm + int8 per token, batch 1, hidden 4096: us", 3, true},
      {"swiglu + int8 per token, batch 1, 11008: us", 3, true},
      {"rope + kv append, 32/32, batch 1: us", 2.5, true},
  };

  // Decode. Variants (each row: one attention_decode call, launches back to back):
  //   fused      the default: ONE kernel (split + combine), fp16 output;
  //   fused+q8   the same with o_proj's int8 input per token (the executor's W4A8 call);
  //   split      the former pair, fast split kernel + combine (ODYSSEY_DECODE_ATTN=split), and
  //   split+q8   with the int8 output: the baselines of this run;
  //   general    the 64-key shared-memory kernel + combine (ODYSSEY_DECODE_ATTN=general);
  //   fused-h1 / fused-h2 (GQA only): 1 / 2 query heads per block (ODYSSEY_DECODE_GQA), the
  //              kv head's K/V then read group/h times (from L2 after the first);
  //   fused-c64 / fused-c128 (batch 1–2): keys per split forced (ODYSSEY_DECODE_CHUNK);
  //   fused+q8-cold / split+q8-cold (batch 1–2): as fused+q8 / split+q8, but each launch reads
  //              the next of N K/V caches (N·bytes ≥ 256 MB, ≤ 32: the model's 32 layers), so the
  //              K/V come from DRAM as in a real decode step, not from the 50 MB L2 that a
  //              single ≤ 16 MB cache stays in between back-to-back launches.
  w.key("decode").begin_array();
  const std::vector<std::string> dvariants = {"fused",     "fused+q8",  "split",         "split+q8",     "general",
                                              "fused-h1",  "fused-h2",  "fused-c64",     "fused-c128",
                                              "fused+q8-cold", "split+q8-cold"};
  for (int ctx : want("decode") ? std::vector<int>{1024, 4096} : std::vector<int>{})
    for (int batch : {1, 2, 8, 16})
      for (int nkv : {32, 8}) {
        const size_t cache = (size_t)batch * ctx * nkv * hd;
        const bool small = batch <= 2;
        // Cold rows: enough caches to overflow the L2 (the first one is the warm rows' cache).
        const int ncache = small ? (int)std::min<size_t>(32, std::max<size_t>(2, ((256u << 20) + 4 * cache - 1) / (4 * cache))) : 1;
        DeviceBuffer q((size_t)batch * nh * hd * 2), out((size_t)batch * nh * hd * 2);
        std::vector<DeviceBuffer> kcs, vcs;
        for (int i = 0; i < ncache; i++) {
          kcs.emplace_back(cache * 2);
          vcs.emplace_back(cache * 2);
          fill_random_half(kcs.back());
          fill_random_half(vcs.back());
        }
        fill_random_half(q);
        std::vector<int32_t> lens(batch, ctx);
        DeviceBuffer len(batch * 4);
        len.upload(lens.data(), batch * 4);
        const size_t wsb = L::attention_decode_workspace(batch, nh, hd, ctx);
        DeviceBuffer ws(wsb);
        check(L::attention_decode_workspace_init(ws.get(), wsb, batch, nh, 0), "attention_decode_workspace_init");
        const float scale = 1.f / std::sqrt((float)hd);
        DeviceBuffer o8((size_t)batch * nh * hd), tok((size_t)batch * 4);
        L::ActOut qo;
        qo.kind = L::ActKind::I8PerToken;
        qo.ld = nh * hd;
        qo.i8 = o8.get<int8_t>();
        qo.token_scale = tok.get<float>();
        for (const std::string& v : dvariants) {
          const bool gqa_only = v == "fused-h1" || v == "fused-h2";
          const bool cold = v.size() > 5 && v.compare(v.size() - 5, 5, "-cold") == 0;
          if (gqa_only && nkv == nh) continue;
          if ((cold || v == "fused-c64" || v == "fused-c128") && !small) continue;
          unsetenv("ODYSSEY_DECODE_ATTN");
          unsetenv("ODYSSEY_DECODE_GQA");
          unsetenv("ODYSSEY_DECODE_CHUNK");
          if (v == "general") setenv("ODYSSEY_DECODE_ATTN", "general", 1);
          if (v.rfind("split", 0) == 0) setenv("ODYSSEY_DECODE_ATTN", "split", 1);
          if (v.rfind("fused", 0) == 0) setenv("ODYSSEY_DECODE_ATTN", "fused", 1);
          if (v == "fused-h1") setenv("ODYSSEY_DECODE_GQA", "1", 1);
          if (v == "fused-h2") setenv("ODYSSEY_DECODE_GQA", "2", 1);
          if (v == "fused-c64") setenv("ODYSSEY_DECODE_CHUNK", "64", 1);
          if (v == "fused-c128") setenv("ODYSSEY_DECODE_CHUNK", "128", 1);
          const bool q8 = v.find("+q8") != std::string::npos;
          int next = 0;
          auto launch = [&] {
            const int c = cold ? next++ % ncache : 0;
            check(L::attention_decode(q.get<__half>(), nh * hd, kcs[c].get<__half>(), vcs[c].get<__half>(), len.get<int32_t>(),
                                      out.get<__half>(), nh * hd, batch, ctx, nh, nkv, hd, scale, 0, ws.get(), wsb, 0,
                                      q8 ? &qo : nullptr),
                  "attention_decode");
          };
          auto s = timer.samples_us(launch, iters, 10);
          const double us = median(s), bytes = 2.0 * cache * 2, gbs = bytes / us / 1e3;
          std::fprintf(stderr, "decode   batch %2d ctx %5d heads %d/%d hd %d  %-14s %9.2f us  %7.0f GB/s  %5.1f%% of copy\n",
                       batch, ctx, nh, nkv, hd, v.c_str(), us, gbs, 100 * gbs / copy_gbps);
          if (batch == 1 && hd == 128) {
            if (v == "fused" && nkv == nh && ctx == 1024) goals[0].measured = 100 * gbs / copy_gbps;
            if (v == "split+q8" && nkv == nh && ctx == 1024) goals[1].measured = us;  // the executor's choice
            if (v == "fused" && nkv == 8 && ctx == 1024) goals[2].measured = 100 * gbs / copy_gbps;
            if (v == "fused" && nkv == 8 && ctx == 4096) goals[3].measured = 100 * gbs / copy_gbps;
          }
          w.begin_object();
          w.field("variant", v);
          w.field("batch", batch);
          w.field("context", ctx);
          w.field("heads", nh);
          w.field("kv_heads", nkv);
          w.field("head_dim", hd);
          w.field("kv_bytes", bytes);
          w.field("caches", cold ? ncache : 1);
          w.field("us", us);
          w.field("us_min", s.front());
          w.field("us_max", s.back());
          w.field("gbs", gbs);
          w.field("pct_copy", 100 * gbs / copy_gbps);
          w.end_object();
        }
      }
  unsetenv("ODYSSEY_DECODE_ATTN");
  unsetenv("ODYSSEY_DECODE_GQA");
  unsetenv("ODYSSEY_DECODE_CHUNK");
  w.end_array();

  // The decode step's row kernels at decode batches, LLaMA-2-7B widths: add_rmsnorm (residual
  // add + norm + int8 per token, hidden 4096) and swiglu (+ int8 per token, 11008), variant
  // "reg" (register kernels, the default) against "loop" (ODYSSEY_ROWS=loop, the former
  // kernels) in the same run; rope_kv_decode (32/32 and 32/8, hd 128). GB/s counts the bytes a
  // call must move (norm: h read + written, delta, w, codes; swiglu: gate + up, codes).
  w.key("rows").begin_array();
  auto row_line = [&](const char* op, const char* variant, int batch, int cols, double bytes, const std::vector<double>& s) {
    const double us = median(s), gbs = bytes / us / 1e3;
    std::fprintf(stderr, "rows     %-11s batch %2d cols %5d  %-4s %9.2f us  %7.0f GB/s  %5.1f%% of copy\n", op, batch, cols,
                 variant, us, gbs, 100 * gbs / copy_gbps);
    w.begin_object();
    w.field("op", op);
    w.field("variant", variant);
    w.field("batch", batch);
    w.field("cols", cols);
    w.field("bytes", bytes);
    w.field("us", us);
    w.field("us_min", s.front());
    w.field("us_max", s.back());
    w.field("gbs", gbs);
    w.field("pct_copy", 100 * gbs / copy_gbps);
    w.end_object();
    if (batch == 1 && std::string(variant) == "reg") {
      const std::string o = op;
      if (o == "add_rmsnorm") goals[4].measured = us;
      if (o == "swiglu") goals[5].measured = us;
      if (o == "rope_kv_32/32") goals[6].measured = us;
    }
  };
  for (int batch : want("rows") ? std::vector<int>{1, 8, 16} : std::vector<int>{}) {
    const int hidden = 4096, inter = 11008;
    DeviceBuffer h((size_t)batch * hidden * 4), delta((size_t)batch * hidden * 2), wt((size_t)hidden * 4);
    DeviceBuffer gu((size_t)batch * 2 * inter * 2), o8((size_t)batch * inter), tok((size_t)batch * 4);
    fill_random_half(delta);
    fill_random_half(gu);
    {  // h and w: finite fp32 (the bit patterns of random halves pairs would be arbitrary floats)
      std::vector<float> hv((size_t)batch * hidden), wv(hidden);
      for (size_t i = 0; i < hv.size(); i++) hv[i] = (float)((i * 2654435761u) % 2001) / 1000.f - 1.f;
      for (int i = 0; i < hidden; i++) wv[i] = 0.5f + (float)(i % 97) / 97.f;
      h.upload(hv.data(), hv.size() * 4);
      wt.upload(wv.data(), wv.size() * 4);
    }
    L::ActOut qo;
    qo.kind = L::ActKind::I8PerToken;
    qo.i8 = o8.get<int8_t>();
    qo.token_scale = tok.get<float>();
    for (const char* variant : {"reg", "loop"}) {
      if (std::string(variant) == "loop")
        setenv("ODYSSEY_ROWS", "loop", 1);
      else
        unsetenv("ODYSSEY_ROWS");
      qo.ld = hidden;
      auto norm = [&] {
        check(L::add_rmsnorm(h.get<float>(), delta.get<__half>(), hidden, wt.get<float>(), 1e-5f, batch, hidden, &qo, 1, 0),
              "add_rmsnorm");
      };
      // The residual grows by delta (in [−1, 1]) each call: a few hundred calls stay finite.
      row_line("add_rmsnorm", variant, batch, hidden, (double)batch * hidden * (4 + 4 + 2 + 1) + hidden * 4.0,
               timer.samples_us(norm, iters, 10));
      qo.ld = inter;
      auto sw = [&] {
        const __half* g = gu.get<__half>();
        check(L::swiglu(g, g + inter, 2 * inter, batch, inter, qo, 0), "swiglu");
      };
      row_line("swiglu", variant, batch, inter, (double)batch * inter * (2 + 2 + 1), timer.samples_us(sw, iters, 10));
    }
    unsetenv("ODYSSEY_ROWS");
    for (int nkv : {32, 8}) {
      const int max_seq = 1024;
      DeviceBuffer q((size_t)batch * nh * hd * 2), kv((size_t)batch * 2 * nkv * hd * 2);
      DeviceBuffer kc((size_t)batch * max_seq * nkv * hd * 2), vc((size_t)batch * max_seq * nkv * hd * 2);
      fill_random_half(q);
      fill_random_half(kv);
      std::vector<int32_t> pos(batch, max_seq - 1);
      std::vector<float> inv(hd / 2);
      for (int i = 0; i < hd / 2; i++) inv[i] = (float)std::pow(10000.0, -2.0 * i / hd);
      DeviceBuffer dpos(batch * 4), dinv(hd / 2 * 4);
      dpos.upload(pos.data(), pos.size() * 4);
      dinv.upload(inv.data(), inv.size() * 4);
      const __half* k = kv.get<__half>();  // [batch, k | v] as the fused qkv output's k and v
      auto rk = [&] {
        // q rotates in place every call (values stay bounded: a rotation).
        check(L::rope_kv_decode(q.get<__half>(), nh * hd, k, k + nkv * hd, 2 * nkv * hd, kc.get<__half>(), vc.get<__half>(),
                                batch, max_seq, nh, nkv, hd, dpos.get<int32_t>(), dinv.get<float>(), 0),
              "rope_kv_decode");
      };
      const std::string op = "rope_kv_" + std::to_string(nh) + "/" + std::to_string(nkv);
      row_line(op.c_str(), "reg", batch, (nh + 2 * nkv) * hd, (double)batch * (2 * nh + 4 * nkv) * hd * 2,
               timer.samples_us(rk, iters, 10));
    }
  }
  if (want("fuse")) {  // gate_up + swiglu, fused against unfused (see the header)
    const int H = 4096, I = 11008, N2 = 2 * I, G = H / 128;
    std::vector<int16_t> gsv((size_t)G * N2);
    for (size_t i = 0; i < gsv.size(); i++) gsv[i] = (int16_t)(1 + (i * 2654435761u) % 40);
    std::vector<float> csv(N2, 2e-7f);
    DeviceBuffer qw((size_t)N2 * H / 2), gsd(gsv.size() * 2), csd((size_t)N2 * 4), y16((size_t)8 * N2 * 2);
    DeviceBuffer x8((size_t)8 * H), xs((size_t)8 * 4), o8((size_t)8 * I), tok((size_t)8 * 4), y32((size_t)8 * I * 4);
    DeviceBuffer slots(16 * 4), sscale(4);
    fill_random_half(qw);
    fill_random_half(x8);  // arbitrary int8 codes
    gsd.upload(gsv.data(), gsv.size() * 2);
    csd.upload(csv.data(), csv.size() * 4);
    std::vector<float> xsv(8, 0.01f);
    xs.upload(xsv.data(), 32);
    sscale.upload(xsv.data(), 4);
    slots.fill(0);
    const double wbytes = (double)N2 * H / 2 + (double)G * N2 * 2 + N2 * 4.0;
    for (int batch : {1, 4, 8})
      for (bool per_token : {true, false}) {
        L::ActOut qo;
        qo.kind = per_token ? L::ActKind::I8PerToken : L::ActKind::I8Static;
        qo.i8 = o8.get<int8_t>();
        qo.ld = I;
        qo.token_scale = tok.get<float>();
        qo.static_scale = sscale.get<float>();
        auto unfused = [&] {
          ody_w4a8_problem p{batch, N2, H, 128, 1, ODY_SCALE_INT, -1, 0};
          ody_w4a8_args a{};
          a.x = x8.get<int8_t>();
          a.x_scale = xs.get<float>();
          a.qweight = qw.get<uint8_t>();
          a.group_scale = gsd.get<int16_t>();
          a.channel_scale = csd.get<float>();
          a.y = y16.get<__half>();
          if (ody_w4a8_gemm(&p, &a, nullptr) != ODY_OK) throw std::runtime_error(std::string("ody_w4a8_gemm: ") + ody_last_error());
          const __half* g = y16.get<__half>();
          check(L::swiglu(g, g + I, N2, batch, I, qo, 0), "swiglu");
        };
        auto fused = [&] {
          odyssey::GemvSwigluArgs a{};
          a.x = x8.get<int8_t>();
          a.x_scale = xs.get<float>();
          a.act_per_token = 1;
          a.m = batch;
          a.k = H;
          a.group_size = 128;
          a.scale_ld = N2;
          a.qweight_g = qw.get<uint8_t>();
          a.group_scale_g = gsd.get<int16_t>();
          a.channel_scale_g = csd.get<float>();
          a.qweight_u = qw.get<uint8_t>() + (size_t)(I / 8) * (H / 128) * 512;
          a.group_scale_u = gsd.get<int16_t>() + I;
          a.channel_scale_u = csd.get<float>() + I;
          a.cols = I;
          a.ld = I;
          a.out = o8.get<int8_t>();
          a.static_scale = per_token ? nullptr : sscale.get<float>();
          a.token_scale = tok.get<float>();
          a.y32 = y32.get<float>();
          a.slots = slots.get<unsigned>();
          check(odyssey::w4a8_gemv_swiglu(a, 0), "w4a8_gemv_swiglu");
        };
        const std::string op = std::string("gate_up+swiglu_") + (per_token ? "i8token" : "i8static");
        auto su = timer.samples_us(unfused, iters, 10);
        auto sf = timer.samples_us(fused, iters, 10);
        row_line(op.c_str(), "unfused", batch, I, wbytes, su);
        row_line(op.c_str(), "fused", batch, I, wbytes, sf);
        std::fprintf(stderr, "FUSE gate_up+swiglu %-8s batch %d: unfused %.2f us, fused %.2f us (%.2fx)\n",
                     per_token ? "i8token" : "i8static", batch, median(su), median(sf), median(su) / median(sf));
      }
  }
  w.end_array();

  // Prefill row kernels (issue 14; --only prefill-rows): the element-wise kernels of a 7B prefill
  // layer at rows 1024 (the profiled prompt) and 8192 (8 such prompts, or one of 8192 tokens),
  // and at 256 (where v2 starts by default: is that threshold right?),
  // variant "v1" (ODYSSEY_PREFILL_ROWS_V2=0, the former kernels) against "v2" (the default
  // from 256 rows) in the same run. Bytes are what a call must move at least (h fp32 read +
  // written, delta, the outputs; gate + up; q and k read + written; w, scales and padding
  // left out); GB/s and % of the copy bandwidth of this run. At rows 1024 part of the inputs
  // stays in the 50 MB L2 between back-to-back calls (as in the executor, where the producing
  // GEMM has just written them); rows 8192 is the HBM-bound figure. kv_append is unchanged (v1
  // only, for its % of copy). One summary line per (op, rows): "PREFILL-ROWS op rows: v1 …".
  w.key("prefill_rows").begin_array();
  for (int rows : want("prefill-rows") ? std::vector<int>{256, 1024, 8192} : std::vector<int>{}) {
    const int H = 4096, I = 11008, NH = 32, HD = 128;
    DeviceBuffer h((size_t)rows * H * 4), delta((size_t)rows * H * 2), wt((size_t)H * 4);
    DeviceBuffer o16((size_t)rows * I * 2), o8((size_t)rows * I), tok((size_t)rows * 4);
    DeviceBuffer gu((size_t)rows * 2 * I * 2), qkv((size_t)rows * 3 * H * 2), att((size_t)rows * H * 2);
    DeviceBuffer kc((size_t)rows * H * 2), vc((size_t)rows * H * 2), dpos((size_t)rows * 4), dinv(HD / 2 * 4), zero(4);
    fill_random_half(delta);
    fill_random_half(gu);
    fill_random_half(qkv);
    fill_random_half(att);
    zero.fill(0);
    {
      std::vector<float> hv((size_t)rows * H), wv(H), inv(HD / 2);
      for (size_t i = 0; i < hv.size(); i++) hv[i] = (float)((i * 2654435761u) % 2001) / 1000.f - 1.f;
      for (int i = 0; i < H; i++) wv[i] = 0.5f + (float)(i % 97) / 97.f;
      for (int i = 0; i < HD / 2; i++) inv[i] = (float)std::pow(10000.0, -2.0 * i / HD);
      std::vector<int32_t> pos(rows);
      for (int i = 0; i < rows; i++) pos[i] = i;
      h.upload(hv.data(), hv.size() * 4);
      wt.upload(wv.data(), wv.size() * 4);
      dinv.upload(inv.data(), inv.size() * 4);
      dpos.upload(pos.data(), pos.size() * 4);
    }
    auto act = [&](L::ActKind k, int ld) {
      L::ActOut o;
      o.kind = k;
      o.ld = ld;
      if (k == L::ActKind::F16) o.f16 = o16.get<__half>();
      else o.i8 = o8.get<int8_t>();
      o.token_scale = tok.get<float>();
      return o;
    };
    const L::ActOut nf16 = act(L::ActKind::F16, H), ni8 = act(L::ActKind::I8PerToken, H);
    const L::ActOut sf16 = act(L::ActKind::F16, I), si8 = act(L::ActKind::I8PerToken, I);
    const __half* g = gu.get<__half>();
    __half* q = qkv.get<__half>();
    struct Op {
      const char* name;
      double bytes;
      std::function<void()> fn;
      bool v2;  // has a v2 kernel
    };
    const double R = rows;
    // The residual grows by delta (in [−1, 1]) each call: a few thousand calls stay finite.
    std::vector<Op> ops = {
        {"add_rmsnorm_f16", R * H * (4 + 4 + 2 + 2),
         [&] { check(L::add_rmsnorm(h.get<float>(), delta.get<__half>(), H, wt.get<float>(), 1e-5f, rows, H, &nf16, 1, 0), "add_rmsnorm"); },
         true},
        {"add_rmsnorm_i8tok", R * H * (4 + 4 + 2 + 1),
         [&] { check(L::add_rmsnorm(h.get<float>(), delta.get<__half>(), H, wt.get<float>(), 1e-5f, rows, H, &ni8, 1, 0), "add_rmsnorm"); },
         true},
        {"swiglu_f16", R * I * (2 + 2 + 2), [&] { check(L::swiglu(g, g + I, 2 * I, rows, I, sf16, 0), "swiglu"); }, true},
        {"swiglu_i8tok", R * I * (2 + 2 + 1), [&] { check(L::swiglu(g, g + I, 2 * I, rows, I, si8, 0), "swiglu"); }, true},
        {"o_quant_i8tok", R * H * (2 + 1),
         [&] { check(L::quantize_rows(att.get<__half>(), H, rows, H, ni8, 0), "quantize_rows"); }, true},
        {"rope_32/32", R * 2 * H * 2 * 2,
         [&] { check(L::rope(q, 3 * H, q + H, 3 * H, rows, NH, NH, HD, dpos.get<int32_t>(), dinv.get<float>(), 0), "rope"); },
         true},
        {"kv_append", R * H * 2 * 2 * 2,
         [&] {
           check(L::kv_append(q + H, q + 2 * H, 3 * H, kc.get<__half>(), vc.get<__half>(), zero.get<int32_t>(), 1, rows, rows, NH,
                              HD, 0),
                 "kv_append");
         },
         false},
    };
    for (const Op& op : ops) {
      double us[2] = {0, 0};
      for (int v = 0; v < (op.v2 ? 2 : 1); v++) {
        if (v == 0) setenv("ODYSSEY_PREFILL_ROWS_V2", "0", 1);
        else unsetenv("ODYSSEY_PREFILL_ROWS_V2");
        auto s = timer.samples_us(op.fn, iters, 10);
        us[v] = median(s);
        const double gbs = op.bytes / us[v] / 1e3;
        const char* variant = v ? "v2" : "v1";
        std::fprintf(stderr, "prefill-rows %-18s rows %5d  %-3s %9.2f us  %7.0f GB/s  %5.1f%% of copy\n", op.name, rows,
                     variant, us[v], gbs, 100 * gbs / copy_gbps);
        w.begin_object();
        w.field("op", op.name);
        w.field("variant", variant);
        w.field("rows", rows);
        w.field("bytes", op.bytes);
        w.field("us", us[v]);
        w.field("us_min", s.front());
        w.field("us_max", s.back());
        w.field("gbs", gbs);
        w.field("pct_copy", 100 * gbs / copy_gbps);
        w.end_object();
      }
      unsetenv("ODYSSEY_PREFILL_ROWS_V2");
      const double floor_us = op.bytes / copy_gbps / 1e3;
      if (op.v2)
        std::fprintf(stderr, "PREFILL-ROWS %-18s rows %5d: v1 %8.2f us  v2 %8.2f us  (%.2fx)  v2/floor %.2f  floor %.2f us\n",
                     op.name, rows, us[0], us[1], us[0] / us[1], us[1] / floor_us, floor_us);
      else
        std::fprintf(stderr, "PREFILL-ROWS %-18s rows %5d: v1 %8.2f us  (unchanged)      v1/floor %.2f  floor %.2f us\n",
                     op.name, rows, us[0], us[0] / floor_us, floor_us);
    }
  }
  w.end_array();
  w.key("goals").begin_array();
  for (const LayerGoal& g : goals) {
    const bool measured = g.measured >= 0;
    const bool met = measured && (g.at_most ? g.measured <= g.target : g.measured >= g.target);
    std::fprintf(stderr, "goal %-80s target %6.2f measured %6.2f %s\n", g.name, g.target, g.measured,
                 measured ? (met ? "met" : "NOT met") : "not measured");
    w.begin_object();
    w.field("name", g.name);
    w.field("target", g.target);
    if (measured)
      w.field("measured", g.measured);
    else
      w.key("measured").null();
    w.field("met", met);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  std::cout << w.str() << std::endl;
  if (args.has("out")) {
    std::ofstream f(args.get("out"));
    f << w.str() << "\n";
    if (!f) throw std::runtime_error("bench layers: cannot write " + args.get("out"));
  }
  return 0;
}

}  // namespace odyssey
