// model_cmds.cpp: `odyssey-rt ppl` and `odyssey-rt speed`, the model executor's commands
// (contract: docs/executor.md). One JSON object on stdout; `progress <done> <total>` lines on
// stderr.
//
// ppl scores the windows of a token windows file (written by `odyssey verify ppl` with the
// `eval ppl` protocol) and returns the NLL sum of each window; Go computes the perplexity.
//
// speed measures, per model (--baseline first) and batch size, prefill + first token (TTFT)
// and greedy decode steps replayed from a CUDA graph, each the median of --repeats runs after
// a warm-up, timed with CUDA events on the executor's stream. A 1 GiB device-to-device copy
// measured in the same process gives the bandwidth of the memory floor: the bytes a decode
// step must read (weights, plus the KV cache at the mean context prompt + gen/2) over it.
//
// speed --profile N adds, per model and batch size, a per-kernel profile of N eager decode
// steps (Executor::profile_decode: CUDA events around each launch group, µs by kind summed
// over the layers, median over the steps) beside the graph replay's step time: the sum runs
// without PDL overlap and with an event between groups, so graph_step_us − profile_sum_us is
// roughly what launches and kernel boundaries cost inside the graph (negative: PDL overlap
// and event gaps outweigh them). A table goes to stderr, the rows to the JSON.
//
// speed --profile-prefill N does the same for the prefill of the prompt (Executor::
// profile_prefill: N eager prefills, median per kind) beside the measured TTFT, with the GEMM
// config the dispatch picks for each linear at the prefill's M (Executor::gemm_choices). With
// --baseline, after all models a "prefill gap batch B" table per batch puts the baseline (FP16)
// and the model (W4A8) side by side per kind: where the TTFT difference comes from.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "executor/executor.hpp"
#include "executor/tokens.hpp"
#include "json.hpp"

#ifdef ODYSSEY_WITH_NCCL
#include "nccl_boot.hpp"
#endif

namespace odyssey {

namespace {

void require_gpu() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    throw std::runtime_error(std::string("no CUDA GPU is visible: ") +
                             (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") +
                             " (check the NVIDIA driver with nvidia-smi, and CUDA_VISIBLE_DEVICES)");
}

std::string cuda_version_string(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

void write_gpu(JsonWriter& w) {
  int dev = 0;
  CK(cudaGetDevice(&dev));
  DeviceInfo d = device_info(dev);
  w.key("gpu").begin_object();
  w.field("name", d.name);
  w.field("cc", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
  w.field("driver", cuda_version_string(d.driver_version));
  w.field("cuda_runtime", cuda_version_string(d.runtime_version));
  w.field("memory_bytes", (unsigned long long)d.memory);
  w.end_object();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  double ms() {
    CK(cudaEventSynchronize(b));
    float t = 0;
    CK(cudaEventElapsedTime(&t, a, b));
    return t;
  }
};

// Read + write bytes per second of a 1 GiB device-to-device cudaMemcpy, median of 20 after
// warm-up (the convention of bench gemm: 2 · bytes / time).
double copy_gbps() {
  const size_t bytes = 1ull << 30;
  DeviceBuffer a(bytes), b(bytes);
  a.fill(1);
  Events ev;
  std::vector<double> ms;
  for (int i = 0; i < 23; i++) {
    CK(cudaEventRecord(ev.a));
    CK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(ev.b));
    const double t = ev.ms();
    if (i >= 3) ms.push_back(t);
  }
  return 2.0 * bytes / (median(ms) * 1e-3) / 1e9;
}

std::unique_ptr<exec::Executor> load_model(const std::string& dir, const exec::TpOptions& tp = exec::TpOptions{}) {
  std::fprintf(stderr, "loading %s (checking every tensor, then uploading)\n", dir.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  auto ex = exec::Executor::load(dir, tp);
  std::fprintf(stderr, "loaded %s in %.1f s: %s, path %s, %.2f GiB of weights read per decode step\n", dir.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               ex->plan().cfg.architecture.c_str(), ex->plan().path.c_str(), ex->weight_bytes() / 1073741824.0);
  return ex;
}

// --kv-cache fp16|int8 (speed: also a list, "fp16,int8", each batch size run with each cache
// in turn on one loaded model); --kv-int8 is the older spelling of --kv-cache int8. Returns
// the caches in order, true for int8.
std::vector<bool> kv_caches(const Args& a, bool allow_list, const char* key = "kv-cache") {
  std::string spec = a.get(key);
  if (std::strcmp(key, "kv-cache") == 0 && a.has("kv-int8")) {
    if (!spec.empty() && spec != "int8") throw std::runtime_error("--kv-int8 contradicts --kv-cache " + spec);
    spec = "int8";
  }
  if (spec.empty()) spec = "fp16";
  std::vector<bool> out;
  size_t at = 0;
  while (at <= spec.size()) {
    const size_t comma = spec.find(',', at);
    const std::string item = spec.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (item == "fp16")
      out.push_back(false);
    else if (item == "int8")
      out.push_back(true);
    else
      throw std::runtime_error("--" + std::string(key) + ": want fp16 or int8" + std::string(allow_list ? " (or a list of them)" : "") +
                               ", got '" + item + "'");
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (!allow_list && out.size() != 1) throw std::runtime_error("--kv-cache takes one value here: fp16 or int8");
  return out;
}

}  // namespace

// --tp N (N > 1): the model split over N tensor-parallel ranks, all on this one GPU in this
// process (exec::InProcessTpGroup: a thread and an executor per rank; the all-reduce after
// o_proj and down_proj sums the ranks' partials, or runs the Flash Communication codec with
// --tp-bits 8|4, --tp-group G, --tp-sym). Every rank computes the logits; their NLLs must be
// bit-identical (checked), and rank 0's are reported. What it shows: the sharded loader and
// forward pass of the multi-GPU executor, and the perplexity change of the split (and of the
// codec) to set beside `odyssey sim allreduce` on the same windows.
int cmd_ppl(const Args& a) {
  const std::string model = a.get("model"), tokens_path = a.get("tokens");
  if (model.empty() || tokens_path.empty()) throw std::runtime_error("ppl needs --model DIR and --tokens FILE");
  const bool kv8 = kv_caches(a, false)[0];
  const long long tp = a.get_int("tp", 1);
  exec::TpCodec codec;
  codec.bits = (int)a.get_int("tp-bits", 16);
  codec.group = (int)a.get_int("tp-group", 128);
  codec.symmetric = a.has("tp-sym");
  // --rank R or --uid-file F: this process is rank R of --tp N over NCCL, one process per GPU
  // (runtime/scripts/launch-allreduce.sh --command ppl), instead of N ranks in this process.
  const bool nccl_mode = a.has("rank") || a.has("uid-file") || std::getenv("ODY_RANK") || std::getenv("NCCL_COMM_ID");
  const int nccl_rank = (int)a.get_int("rank", std::getenv("ODY_RANK") ? std::atoll(std::getenv("ODY_RANK")) : 0);
  if (nccl_mode ? (tp < 1 || tp > 64 || nccl_rank < 0 || nccl_rank >= tp) : (tp < 1 || tp > 8))
    throw std::runtime_error(nccl_mode ? "--tp must be 1 to 64 and --rank in [0, --tp)" : "--tp must be 1 to 8 (ranks on this one GPU)");
  if (tp == 1 && !nccl_mode && (a.has("tp-bits") || a.has("tp-group") || a.has("tp-sym")))
    throw std::runtime_error("--tp-bits, --tp-group and --tp-sym need --tp 2 or more");
  exec::TokenWindows tw = exec::read_token_windows(tokens_path);
  require_gpu();
  const int R = nccl_mode ? 1 : (int)tp;  // ranks in this process
  std::unique_ptr<exec::TpComm> nccl_comm;
#ifdef ODYSSEY_WITH_NCCL
  ncclComm_t nccl = nullptr;
  std::unique_ptr<Watchdog> dog;
  if (nccl_mode) {
    CK(cudaSetDevice((int)a.get_int("device", 0)));
    const double timeout_s = (double)a.get_int("timeout", 600);
    ncclUniqueId id = get_unique_id(nccl_rank, a.get("uid-file"), timeout_s);
    CKN(ncclCommInitRank(&nccl, (int)tp, id, nccl_rank));
    dog = std::make_unique<Watchdog>(nccl, nccl_rank, timeout_s);
    dog->arm("loading the model");
    nccl_comm = exec::make_nccl_tp_comm(nccl, codec);
  }
  auto arm = [&](const char* what) {  // each step gets --timeout: a long healthy run is not cut
    if (dog) dog->arm(what);
  };
#else
  if (nccl_mode) nccl_comm = exec::make_nccl_tp_comm(nullptr, codec);  // throws: built without NCCL
  auto arm = [](const char*) {};
#endif
  std::unique_ptr<exec::InProcessTpGroup> group;
  if (R > 1) {
    group = std::make_unique<exec::InProcessTpGroup>(R, codec);
    const std::string ar = codec.bits == 16 ? std::string("fp32 sum of the fp16 partials")
                                            : "INT" + std::to_string(codec.bits) + " g" + std::to_string(codec.group) +
                                                  (codec.symmetric ? " symmetric" : " asymmetric");
    std::fprintf(stderr, "loading %s as %d tensor-parallel ranks on one GPU (all-reduce: %s)\n", model.c_str(), R,
                 ar.c_str());
  }
  const int L = (int)tw.seq_len, W = (int)tw.windows;
  // Default: about 8192 positions per forward pass, whole windows.
  long long batch = a.get_int("batch", std::max(1, 8192 / L));
  if (batch < 1) throw std::runtime_error("--batch must be at least 1");
  batch = std::min<long long>(batch, W);

  // One executor per rank, each on a thread of its own (the ranks meet in the all-reduces);
  // a rank that fails aborts the group, so that the others stop waiting and the error surfaces.
  std::vector<std::unique_ptr<exec::Executor>> ex((size_t)R);
  std::vector<std::vector<double>> nll((size_t)R, std::vector<double>((size_t)W));
  std::vector<std::string> errors((size_t)R);
  std::string arch, path;
  const auto t0 = std::chrono::steady_clock::now();
  auto run_rank = [&](int r) {
    try {
      if (!nccl_mode) CK(cudaSetDevice(0));  // NCCL: the --device chosen for the communicator
      ex[r] = nccl_mode ? load_model(model, exec::TpOptions{(int)tp, nccl_rank, nccl_comm.get()})
              : R == 1  ? load_model(model)
                        : exec::Executor::load(model, exec::TpOptions{R, r, group->comm(r)});
      ex[r]->set_kv_cache_int8(kv8);
      const exec::ModelPlan& plan = ex[r]->plan();
      exec::check_token_ids(tw, plan.cfg.vocab, tokens_path);
      if (r == 0) {
        arch = plan.cfg.model_type;
        path = plan.path;
        std::fprintf(stderr, "%s: %s, %d layers, path %s; %d windows of %d tokens, batch %lld\n", model.c_str(),
                     plan.cfg.architecture.c_str(), plan.cfg.layers, plan.path.c_str(), W, L, batch);
      }
      for (int w0 = 0; w0 < W; w0 += (int)batch) {
        const int nb = std::min<int>((int)batch, W - w0);
        arm("scoring a batch of windows");
        ex[r]->score_windows(tw.ids.data() + (size_t)w0 * L, nb, L, nll[r].data() + w0);
        if (r == 0) std::fprintf(stderr, "progress %d %d\n", w0 + nb, W);
      }
    } catch (const std::exception& e) {
      errors[r] = e.what();
      if (group) group->abort();
    }
  };
  if (R == 1) {
    run_rank(0);
  } else {
    std::vector<std::thread> threads;
    for (int r = 0; r < R; r++) threads.emplace_back(run_rank, r);
    for (std::thread& t : threads) t.join();
  }
  // The first rank's own error (the others then only report the abort).
  for (const std::string& e : errors)
    if (!e.empty() && e.find("another rank failed") == std::string::npos) throw std::runtime_error(e);
  for (const std::string& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int r = 1; r < R; r++)
    for (int w = 0; w < W; w++)
      if (std::memcmp(&nll[r][w], &nll[0][w], sizeof(double)) != 0)
        throw std::runtime_error("tensor-parallel ranks disagree: window " + std::to_string(w) + " NLL " +
                                 std::to_string(nll[0][w]) + " on rank 0, " + std::to_string(nll[r][w]) + " on rank " +
                                 std::to_string(r) + " (the all-reduce must leave every rank the same bits)");
  double sum = 0;
  for (double v : nll[0]) sum += v;
  // NCCL: every process's NLLs (their FNV-1a hash) all-gathered and compared.
  bool ranks_identical = true;
#ifdef ODYSSEY_WITH_NCCL
  if (nccl_mode) {
    uint64_t h = 1469598103934665603ull;
    const auto* b = reinterpret_cast<const unsigned char*>(nll[0].data());
    for (size_t i = 0; i < nll[0].size() * sizeof(double); i++) h = (h ^ b[i]) * 1099511628211ull;
    DeviceBuffer mine(8), all(8 * (size_t)tp);
    mine.upload(&h, 8);
    CKN(ncclAllGather(mine.get(), all.get(), 8, ncclUint8, nccl, ex[0]->stream()));
    CK(cudaStreamSynchronize(ex[0]->stream()));
    std::vector<uint64_t> hs((size_t)tp);
    all.download(hs.data(), 8 * (size_t)tp);
    for (uint64_t x : hs) ranks_identical &= x == h;
    if (!ranks_identical)
      throw std::runtime_error("tensor-parallel ranks disagree: their NLLs differ (the all-reduce must leave every rank the same bits)");
  }
#endif

  JsonWriter w;
  w.begin_object();
  w.field("ok", true);
  w.field("model", model);
  w.field("path", path);
  w.field("arch", arch);
  w.field("seq_len", L);
  w.field("windows", W);
  w.field("tokens_scored", (long long)W * (L - 1));
  w.field("batch", batch);
  w.field("kv_cache", kv8 ? "int8" : "fp16");
  w.field("tp", nccl_mode ? (int)tp : R);
  if (nccl_mode) {
    w.field("rank", nccl_rank);
    w.field("tp_transport", "nccl");
  }
  if (R > 1 || nccl_mode) {
    w.field("tp_bits", codec.bits);
    w.field("tp_group", codec.bits == 16 ? 0 : codec.group);
    w.field("tp_symmetric", codec.symmetric);
    w.field("tp_ranks_identical", ranks_identical);
  }
  w.key("nll_per_window").begin_array();
  for (double v : nll[0]) w.value(v);
  w.end_array();
  w.field("nll_sum", sum);
  w.field("seconds", seconds);
  w.field("tokens_per_second", (double)W * L / seconds);
  write_gpu(w);
  w.field("runtime_version", std::string(ody_version()));
  w.end_object();
  std::cout << w.str() << std::endl;
  ex.clear();
#ifdef ODYSSEY_WITH_NCCL
  if (nccl) {
    nccl_comm.reset();
    dog->destroying();
    ncclCommDestroy(nccl);
  }
#endif
  return 0;
}

// The per-kind rows of a decode or prefill profile: as JSON ("kinds": kind, µs, launch groups,
// share of the sum) and as stderr lines (name and time columns kind_w and us_w wide).
static void write_profile_kinds(JsonWriter& w, const std::vector<exec::Executor::ProfileRow>& prof, double sum) {
  w.key("kinds").begin_array();
  for (const auto& r : prof) {
    w.begin_object();
    w.field("kind", r.kind);
    w.field("us", r.us);
    w.field("groups", r.groups);
    w.field("share", sum > 0 ? r.us / sum : 0.0);
    w.end_object();
  }
  w.end_array();
}

static void print_profile_kinds(const std::vector<exec::Executor::ProfileRow>& prof, double sum, int kind_w, int us_w) {
  for (const auto& r : prof)
    std::fprintf(stderr, "  %-*s %*.1f us  %5.1f%%  %4d groups  %7.2f us/group\n", kind_w, r.kind.c_str(), us_w, r.us,
                 sum > 0 ? 100 * r.us / sum : 0.0, r.groups, r.groups ? r.us / r.groups : 0.0);
}

int cmd_speed(const Args& a) {
  const std::string model = a.get("model"), baseline = a.get("baseline");
  if (model.empty()) throw std::runtime_error("speed needs --model DIR");
  const std::vector<long long> batches = a.get_list("batch", {1, 8, 16, 32, 64});
  // --kv-cache for --model; the baseline (the FP16 checkpoint of issue 14's ratios) keeps the
  // fp16 cache unless --baseline-kv-cache says otherwise.
  const std::vector<bool> caches = kv_caches(a, true), base_caches = kv_caches(a, true, "baseline-kv-cache");
  const long long prompt = a.get_int("prompt", 1024), gen = a.get_int("gen", 128), repeats = a.get_int("repeats", 5);
  const long long profile_steps = a.get_int("profile", 0);
  const long long profile_prefill = a.get_int("profile-prefill", 0);
  if (profile_prefill < 0 || profile_prefill > 100) throw std::runtime_error("--profile-prefill N needs 0 ≤ N ≤ 100");
  if (profile_steps < 0 || (profile_steps > 0 && profile_steps + 1 > gen))
    throw std::runtime_error("--profile N needs 1 ≤ N < --gen (one eager step warms up)");
  if (prompt < 1 || prompt > (1 << 20) || gen < 1 || gen > (1 << 20) || repeats < 1 || repeats > 1000)
    throw std::runtime_error("--prompt and --gen must be in [1, 2^20], --repeats in [1, 1000]");
  for (long long b : batches)
    if (b < 1 || b > 4096) throw std::runtime_error("--batch sizes must be in [1, 4096]");
  require_gpu();

  // --tp N: this process is one rank of N, one process per GPU (runtime/scripts/launch-allreduce.sh
  // --command speed starts them): rank from --rank or ODY_RANK, the NCCL unique id from
  // NCCL_COMM_ID or --uid-file, the all-reduce after o_proj and down_proj exact (--tp-bits 16:
  // ncclAllReduce) or compressed (8, 4: ody_allreduce, --tp-group, --tp-sym). Every rank runs the
  // same loads and batches (the collectives pair them up); each prints its own answer, and the
  // ranks' token hashes must agree. A watchdog ends a rank whose peer died after --timeout s.
  const long long tp = a.get_int("tp", 0);
  const int rank = (int)a.get_int("rank", std::getenv("ODY_RANK") ? std::atoll(std::getenv("ODY_RANK")) : 0);
  exec::TpCodec codec;
  codec.bits = (int)a.get_int("tp-bits", 16);
  codec.group = (int)a.get_int("tp-group", 128);
  codec.symmetric = a.has("tp-sym");
  if (tp < 0 || tp > 64) throw std::runtime_error("--tp must be 1 to 64 ranks (one process per GPU)");
  if (tp > 0 && (rank < 0 || rank >= tp)) throw std::runtime_error("--rank must be in [0, --tp)");
  if (tp == 0)
    for (const char* k : {"rank", "uid-file", "tp-bits", "tp-group", "tp-sym", "tp-threshold"})
      if (a.has(k)) throw std::runtime_error(std::string("--") + k + " needs --tp N (one process per GPU over NCCL)");
  // --tp-threshold N: all-reduces of fewer than N values take plain ncclAllReduce even with
  // --tp-bits 8|4 (ody_allreduce_set_threshold): the decode step's messages are small, where the
  // codec's five launches cost more than they save; where the crossover lies is measured
  // (odyssey-rt bench allreduce), not assumed: the default 0 compresses every call.
  const long long threshold = a.get_int("tp-threshold", 0);
  if (threshold < 0) throw std::runtime_error("--tp-threshold must be a count of values, 0 or more");
  ody_allreduce_set_threshold((size_t)threshold);
  std::unique_ptr<exec::TpComm> tp_comm;
#ifdef ODYSSEY_WITH_NCCL
  ncclComm_t nccl = nullptr;
  std::unique_ptr<Watchdog> dog;
  if (tp > 0) {
    CK(cudaSetDevice((int)a.get_int("device", 0)));
    const double timeout_s = (double)a.get_int("timeout", 600);
    ncclUniqueId id = get_unique_id(rank, a.get("uid-file"), timeout_s);
    CKN(ncclCommInitRank(&nccl, (int)tp, id, rank));
    dog = std::make_unique<Watchdog>(nccl, rank, timeout_s);
    tp_comm = exec::make_nccl_tp_comm(nccl, codec);
    std::fprintf(stderr, "speed: rank %d of %d (NCCL), all-reduce %s\n", rank, (int)tp,
                 codec.bits == 16 ? "ncclAllReduce fp16" : ("INT" + std::to_string(codec.bits) + " g" + std::to_string(codec.group)).c_str());
  }
  auto arm = [&](const char* what) {
    if (dog) dog->arm(what);
  };
#else
  if (tp > 0) tp_comm = exec::make_nccl_tp_comm(nullptr, codec);  // throws: built without NCCL
  auto arm = [](const char*) {};
#endif
  const exec::TpOptions tpo{tp > 0 ? (int)tp : 1, tp > 0 ? rank : 0, tp_comm.get()};

  const double gbps = copy_gbps();
  std::fprintf(stderr, "device-to-device copy: %.0f GB/s (read + write)\n", gbps);
  std::vector<std::string> models;
  if (!baseline.empty()) models.push_back(baseline);
  models.push_back(model);
  const int total = (int)(((baseline.empty() ? 0 : base_caches.size()) + caches.size()) * batches.size() * (repeats + 1));
  int done = 0;

  JsonWriter w;
  w.begin_object();
  w.field("ok", true);
  w.field("runtime_version", std::string(ody_version()));
  write_gpu(w);
  w.field("copy_gbps", gbps);
  if (tp > 0) {
    w.field("tp", tp);
    w.field("rank", rank);
    w.field("tp_bits", codec.bits);
    w.field("tp_group", codec.bits == 16 ? 0 : codec.group);
    w.field("tp_symmetric", codec.symmetric);
    w.field("tp_threshold", threshold);
  }
  w.key("rows").begin_array();
  // --profile-prefill: per batch, per model (in order), its kinds and TTFT, for the gap tables.
  struct PrefillProf {
    std::string model, path;
    double ttft_us = 0, sum_us = 0;
    std::vector<exec::Executor::ProfileRow> rows;
  };
  std::vector<std::pair<long long, std::vector<PrefillProf>>> prefill_profs;
  for (const std::string& dir : models) {
    arm("loading a model");
    auto ex = load_model(dir, tpo);
    const exec::ModelPlan& plan = ex->plan();
    const bool is_base = !baseline.empty() && dir == baseline;
    for (long long B : batches)
    for (bool kv8 : is_base ? base_caches : caches) {
      arm("a batch's prefills and decodes");
      ex->set_kv_cache_int8(kv8);
      ex->reset_peak();
      ex->setup_generation((int)B, (int)prompt, (int)gen);
      // Random prompts, the same for every model (fixed seed per batch size).
      std::mt19937 rng(1234u + (unsigned)B);
      std::uniform_int_distribution<int> pick(0, plan.cfg.vocab - 1);
      std::vector<int32_t> ids((size_t)(B * prompt));
      for (auto& id : ids) id = pick(rng);
      ex->upload_prompt(ids.data());
      Events ev;
      std::vector<double> ttft, step_ms;
      // The greedy tokens after the last step, per run: the same prompts must give the same
      // tokens every run (the warm-up's eager capture step included), a cheap check that the
      // graph replays compute what the first run computed.
      std::vector<int32_t> first_tokens;
      uint64_t first_hash = 0;  // FNV-1a of every generated token (Executor::tokens_hash)
      bool same_tokens = true;
      for (int r = 0; r <= repeats; r++) {  // run 0 is the warm-up (and captures the graph)
        CK(cudaEventRecord(ev.a, ex->stream()));
        ex->prefill();
        CK(cudaEventRecord(ev.b, ex->stream()));
        const double t_prefill = ev.ms();
        ex->decode((int)gen, ev.a, ev.b);
        const double t_decode = ev.ms();
        const std::vector<int32_t> tokens = ex->last_tokens();
        const uint64_t hash = ex->tokens_hash();
        if (r == 0) {
          first_tokens = tokens;
          first_hash = hash;
        } else {
          same_tokens &= tokens == first_tokens && hash == first_hash;
        }
        if (r > 0) {
          ttft.push_back(t_prefill);
          step_ms.push_back(t_decode / (double)gen);
        }
        std::fprintf(stderr, "progress %d %d\n", ++done, total);
      }
      const double ttft_med = median(ttft), step_med = median(step_ms);
      const double kv_tok = (double)ex->kv_bytes_per_token();
      const double floor_bytes = (double)ex->weight_bytes() + (double)B * kv_tok * ((double)prompt + (double)gen / 2);
      const double floor_ms = floor_bytes / (gbps * 1e9) * 1e3;
      w.begin_object();
      w.field("model", dir);
      w.field("path", plan.path);
      w.field("batch", B);
      w.field("kv_cache", kv8 ? "int8" : "fp16");
      w.field("prompt", prompt);
      w.field("gen", gen);
      w.field("ttft_ms", ttft_med);
      w.key("ttft_ms_all").begin_array();
      for (double v : ttft) w.value(v);
      w.end_array();
      w.field("decode_tokens_per_s", (double)B / (step_med * 1e-3));
      w.field("decode_ms_per_step", step_med);
      w.key("decode_ms_per_step_all").begin_array();
      for (double v : step_ms) w.value(v);
      w.end_array();
      w.field("weight_bytes", (double)ex->weight_bytes());
      w.field("kv_bytes_per_token", (unsigned long long)ex->kv_bytes_per_token());
      w.field("memory_floor_ms_per_step", floor_ms);
      w.field("fraction_of_floor", floor_ms / step_med);
      w.field("gpu_memory_bytes", (double)ex->peak_bytes());
      w.field("same_tokens_every_run", same_tokens);
      char hash_hex[24];
      std::snprintf(hash_hex, sizeof hash_hex, "%016llx", (unsigned long long)first_hash);
      w.field("tokens_hash", std::string(hash_hex));
      if (profile_steps > 0) {
        const std::vector<exec::Executor::ProfileRow> prof = ex->profile_decode((int)profile_steps);
        // The same prompts must still give the same tokens after the eager profile steps.
        ex->prefill();
        ex->decode((int)gen);
        const bool same_after = ex->last_tokens() == first_tokens;
        double sum = 0;
        for (const auto& r : prof) sum += r.us;
        const double graph_us = step_med * 1e3;
        w.key("profile").begin_object();
        w.field("steps", profile_steps);
        w.field("graph_step_us", graph_us);
        w.field("profile_sum_us", sum);
        w.field("same_tokens_after_profile", same_after);
        write_profile_kinds(w, prof, sum);
        w.end_object();
        std::fprintf(stderr, "profile %s [%s] batch %lld (median of %lld eager steps; µs per step, all layers)\n",
                     dir.c_str(), plan.path.c_str(), B, profile_steps);
        print_profile_kinds(prof, sum, 20, 9);
        std::fprintf(stderr, "  %-20s %9.1f us   graph replay %.1f us/step (difference %+.1f us)%s\n", "sum", sum,
                     graph_us, graph_us - sum, same_after ? "" : "  WARNING: tokens changed after profiling");
      }
      if (profile_prefill > 0) {
        const std::vector<exec::Executor::ProfileRow> prof = ex->profile_prefill((int)profile_prefill);
        // The same prompts must still give the same tokens after the eager prefills.
        ex->prefill();
        ex->decode((int)gen);
        const bool same_after = ex->last_tokens() == first_tokens;
        double sum = 0;
        for (const auto& r : prof) sum += r.us;
        const int per = (int)std::min<long long>(B, std::max<long long>(1, 8192 / prompt));  // Executor's chunk
        const std::vector<exec::Executor::GemmChoice> gemms = ex->gemm_choices((int)(per * prompt));
        w.key("prefill_profile").begin_object();
        w.field("runs", profile_prefill);
        w.field("ttft_us", ttft_med * 1e3);
        w.field("profile_sum_us", sum);
        w.field("same_tokens_after_profile", same_after);
        write_profile_kinds(w, prof, sum);
        w.key("gemms").begin_array();
        for (const auto& g : gemms) {
          w.begin_object();
          w.field("site", g.site);
          w.field("m", g.m);
          w.field("n", g.n);
          w.field("k", g.k);
          w.field("kernel", g.kernel);
          w.end_object();
        }
        w.end_array();
        w.end_object();
        std::fprintf(stderr, "prefill profile %s [%s] batch %lld prompt %lld (median of %lld eager prefills; µs, all layers)\n",
                     dir.c_str(), plan.path.c_str(), B, prompt, profile_prefill);
        print_profile_kinds(prof, sum, 16, 10);
        std::fprintf(stderr, "  %-16s %10.1f us   TTFT %.1f us (difference %+.1f us)%s\n", "sum", sum, ttft_med * 1e3,
                     ttft_med * 1e3 - sum, same_after ? "" : "  WARNING: tokens changed after profiling");
        for (const auto& g : gemms)
          std::fprintf(stderr, "  gemm %-8s M=%d N=%d K=%d: %s\n", g.site.c_str(), g.m, g.n, g.k, g.kernel.c_str());
        auto it = std::find_if(prefill_profs.begin(), prefill_profs.end(), [&](const auto& e) { return e.first == B; });
        if (it == prefill_profs.end()) it = prefill_profs.insert(prefill_profs.end(), {B, {}});
        it->second.push_back(PrefillProf{dir, plan.path, ttft_med * 1e3, sum, prof});
      }
      w.end_object();
      std::fprintf(stderr, "%s [%s] batch %lld kv %s: TTFT %.2f ms, decode %.3f ms/step (%.1f tokens/s), %.0f%% of the floor %.3f ms, tokens %s\n",
                   dir.c_str(), plan.path.c_str(), B, kv8 ? "int8" : "fp16", ttft_med, step_med, (double)B / (step_med * 1e-3),
                   100.0 * floor_ms / step_med, floor_ms, hash_hex);
      if (!same_tokens)
        std::fprintf(stderr, "WARNING: %s batch %lld: the sampled tokens differ between runs of the same prompts\n",
                     dir.c_str(), B);
      ex->release_generation();
    }
  }
  w.end_array();
  w.end_object();
  // The gap tables: the first model (the baseline) against the last, per kind, per batch.
  for (const auto& [B, profs] : prefill_profs) {
    if (profs.size() < 2) continue;
    const PrefillProf &b = profs.front(), &q = profs.back();
    std::fprintf(stderr, "prefill gap batch %lld: %s [%s] vs %s [%s] (µs per prefill, all layers)\n", B, b.model.c_str(),
                 b.path.c_str(), q.model.c_str(), q.path.c_str());
    std::fprintf(stderr, "  %-16s %10s %10s %10s %7s\n", "kind", b.path.c_str(), q.path.c_str(), "diff", "ratio");
    std::vector<std::string> kinds;
    for (const auto& r : b.rows) kinds.push_back(r.kind);
    for (const auto& r : q.rows)
      if (std::find(kinds.begin(), kinds.end(), r.kind) == kinds.end()) kinds.push_back(r.kind);
    auto us_of = [](const PrefillProf& p, const std::string& k) {
      for (const auto& r : p.rows)
        if (r.kind == k) return r.us;
      return 0.0;
    };
    for (const std::string& k : kinds) {
      const double x = us_of(b, k), y = us_of(q, k);
      std::fprintf(stderr, "  %-16s %10.1f %10.1f %+10.1f %7s\n", k.c_str(), x, y, y - x,
                   x > 0 ? (std::to_string(y / x).substr(0, 5) + "x").c_str() : "-");
    }
    std::fprintf(stderr, "  %-16s %10.1f %10.1f %+10.1f %6.3fx\n", "sum", b.sum_us, q.sum_us, q.sum_us - b.sum_us,
                 b.sum_us > 0 ? q.sum_us / b.sum_us : 0.0);
    std::fprintf(stderr, "  %-16s %10.1f %10.1f %+10.1f %6.3fx  (prefill speed-up %.2fx)\n", "TTFT", b.ttft_us, q.ttft_us,
                 q.ttft_us - b.ttft_us, b.ttft_us > 0 ? q.ttft_us / b.ttft_us : 0.0,
                 q.ttft_us > 0 ? b.ttft_us / q.ttft_us : 0.0);
  }
  std::cout << w.str() << std::endl;
#ifdef ODYSSEY_WITH_NCCL
  if (nccl) {
    tp_comm.reset();
    dog->destroying();
    ncclCommDestroy(nccl);
  }
#endif
  return 0;
}

}  // namespace odyssey
