// executor.cu: the GPU model executor declared in executor.hpp (contract: docs/executor.md).
//
// Layout of the work, per decoder layer (rows = tokens in flight: batch·L for prefill,
// batch for a decode step):
//   h (fp32 [rows, H])  --add_rmsnorm-->  qkv inputs (one buffer per activation form: fp16,
//   int8 static, int8 per token; row stride Kp, zero padded)  --GEMM(s)-->  qkv fp16
//   --rope, attention (prefill: causal over the window; decode: over the KV cache)-->
//   att fp16 [rows, Kp_o]  --(quantize)--> o GEMM  --add_rmsnorm--> gate/up GEMM(s)
//   --swiglu (fused with down's quantization)--> down GEMM --> the next layer's residual add.
// The layer kernels are layers.hpp's; the GEMMs are FastGEMM (ody_w4a8_gemm), the W4A16
// kernel (ody_w4a16_gemm) and cuBLAS (fp16 in, fp32 compute, fp16 out; fp32 out for the
// LM head). The few kernels here are glue: bias rows for cuBLAS, quantization of the
// attention output (o_proj's input, fp16 with a row stride), gathering each sequence's last
// row, and advancing decode positions inside the graph.
//
// Linear outputs of one site (q/k/v, or gate/up) live in one region; a fused GEMM writes
// [rows, Σ Np_i] with part i at column Σ_{j<i} Np_j, unfused ones write [rows, Np_i] each
// (dense weights are zero padded to Np rows too, so every layout has the same strides and
// k/v, gate/up always share a row stride).
#include "executor/executor.hpp"

#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>

#include "executor/kv8.hpp"
#include "executor/layers.hpp"
#include "executor/tp_plan.hpp"
#include "executor/w4a16_scales.hpp"
#include "fastgemm.hpp"
#include "odyssey_rt.h"
#include "pdl.cuh"
#include "safetensors.hpp"

namespace odyssey::exec {

namespace {

void cuda_ok(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e) + " (executor.cu:" + std::to_string(line) + ")");
}
#define EX_CUDA(call) cuda_ok((call), #call, __LINE__)

void cublas_ok(cublasStatus_t s, const char* what, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(s)) +
                             " (executor.cu:" + std::to_string(line) + ")");
}
#define EX_CUBLAS(call) cublas_ok((call), #call, __LINE__)

void ody_ok(ody_status s, const std::string& what) {
  if (s != ODY_OK) throw std::runtime_error(what + ": " + ody_last_error());
}

std::string gib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", bytes / 1073741824.0);
  return b;
}

int ceil_to(int x, int m) { return (x + m - 1) / m * m; }

// ------------------------------------------------------------------ glue kernels

// out[r, c] = bias[c] for c < n (row stride ld): the C operand of a cuBLAS GEMM run with
// beta = 1, which adds the bias in fp32 inside the GEMM's epilogue.
__global__ void fill_rows_kernel(__half* out, int ld, int rows, int n, const __half* bias) {
  pdl_wait();  // out may still be read by the previous kernel (pdl.cuh rule 2)
  pdl_launch_dependents();
  const long long total = (long long)rows * n;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int r = (int)(i / n), c = (int)(i % n);
    out[(size_t)r * ld + c] = bias[c];
  }
}

// out[b, :] = h[b·seq + seq − 1, :]: the last position of each sequence.
__global__ void gather_last_kernel(const float* h, int hidden, int batch, int seq, float* out) {
  pdl_wait();
  pdl_launch_dependents();
  const long long total = (long long)batch * hidden;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int b = (int)(i / hidden), c = (int)(i % hidden);
    out[i] = h[((size_t)b * seq + seq - 1) * hidden + c];
  }
}

// Holds the GPU for `ns` nanoseconds (the global timer): the profile enqueues a whole eager
// decode step behind it, so that the step's kernels then run back to back instead of waiting
// for the host.
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__global__ void spin_kernel(unsigned long long ns) {
  const unsigned long long t0 = global_ns();
  while (global_ns() - t0 < ns) {
  }
}

// One decode step done: every sequence moves on by one position (inside the graph, so that
// replays need no host writes), and folds the token it just sampled into its FNV-1a hash of
// every token generated since reset_decode_positions (Executor::tokens_hash: fused and unfused
// decode paths, or two commits, must generate the same greedy sequences).
constexpr unsigned long long kFnvOffset = 14695981039346656037ull, kFnvPrime = 1099511628211ull;
__global__ void advance_kernel(int32_t* pos, int32_t* len, const int32_t* tok, unsigned long long* hash, int batch) {
  pdl_wait();  // every kernel of the step before has read pos and len
  pdl_launch_dependents();
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b < batch) {
    pos[b] += 1;
    len[b] += 1;
    hash[b] = (hash[b] ^ (unsigned long long)(uint32_t)tok[b]) * kFnvPrime;
  }
}

int grid_for(long long n) { return (int)std::max<long long>(1, std::min<long long>((n + 255) / 256, 65535)); }

// ------------------------------------------------------------------ device memory

class Arena {
 public:
  ~Arena() {
    for (auto& kv : sizes_) cudaFree(kv.first);
  }
  template <class T>
  T* alloc(size_t count, const std::string& what) {
    const size_t bytes = count * sizeof(T);
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw std::runtime_error("out of GPU memory: " + what + " needs " + gib((double)bytes) + " more, " + gib((double)free_b) +
                               " free of " + gib((double)total_b) + " (this executor holds " + gib((double)live_) + ")");
    }
    // Zeroed: padding columns of activation buffers and the split-K workspace must start at 0.
    // On the executor's stream, so that every later use is ordered after it.
    EX_CUDA(cudaMemsetAsync(p, 0, bytes, stream));
    sizes_[p] = bytes;
    live_ += bytes;
    peak_ = std::max(peak_, live_);
    return static_cast<T*>(p);
  }
  void free(void* p) {
    if (!p) return;
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    live_ -= it->second;
    sizes_.erase(it);
    cudaFree(p);
  }
  size_t peak() const { return peak_; }
  cudaStream_t stream = nullptr;  // where allocations are zeroed
  void reset_peak() { peak_ = live_; }

 private:
  std::map<void*, size_t> sizes_;
  size_t live_ = 0, peak_ = 0;
};

// ------------------------------------------------------------------ model structures

struct Form {
  ActForm kind = ActForm::F16;
  float scale = 0;                 // I8Static
  float* d_scale = nullptr;        // I8Static: the scale on the device
};

struct Gemm {
  WeightFormat fmt = WeightFormat::Dense16;
  int n_total = 0;   // output columns (Σ Np of the parts)
  int k = 0, kp = 0;
  int group_size = 0;
  bool int_scales = true;
  int form = 0;       // index into the site's forms
  int col_base = 0;   // first column of this GEMM's output in the site region (per row count)
  void* w = nullptr;          // Dense16: fp16 [n_total, k]; else packed qweight
  void* gscale = nullptr;     // int16 or float [G, n_total]
  float* cscale = nullptr;    // [n_total]
  float* bias = nullptr;      // quantized: fp32 [n_total] or null
  __half* bias16 = nullptr;   // dense: fp16 [n_total] or null
  uint64_t bytes = 0;         // device bytes of the weights above (for the memory floor)
};

struct Site {
  std::vector<int> lins;      // LinearIndex of each part
  std::vector<Form> forms;
  std::vector<Gemm> gemms;
  std::vector<int> part_gemm, part_col;  // per part: which GEMM, column inside its output
  int width = 0;              // Σ n_total over GEMMs: output region columns
  // Tensor parallelism, a row-parallel packed shard (tp_plan.hpp): its producer writes x_cols
  // real columns from column 0, the GEMM wants them from column x_off (shard_x_offset) with
  // zeros around; run_site moves them (layers::place_columns) when x_off > 0.
  int x_off = 0, x_cols = 0;
};

struct Layer {
  float* attn_norm = nullptr;
  float* mlp_norm = nullptr;
  Site qkv, o, gu, down;
};

// Per-site scratch shared by all layers: activation buffers by form slot, the output region.
struct Scratch {
  int kp = 0;
  int8_t* i8[3] = {nullptr, nullptr, nullptr};
  __half* f16[3] = {nullptr, nullptr, nullptr};
  float* tok[3] = {nullptr, nullptr, nullptr};
  bool need_i8[3] = {false, false, false}, need_f16[3] = {false, false, false}, need_tok[3] = {false, false, false};
  __half* out = nullptr;
  int width = 0;  // max Site::width over layers
  bool need_shift = false;                 // a site here has x_off > 0 (tensor parallelism)
  bool f16_form[3] = {false, false, false};  // a site here takes fp16 in that slot
  int8_t* i8_shift[3] = {nullptr, nullptr, nullptr};  // place_columns' outputs, per form slot
  __half* f16_shift[3] = {nullptr, nullptr, nullptr};
};

enum class Mode { Prefill, PrefillKV, Decode };

}  // namespace

struct Executor::Impl {
  ModelPlan plan;  // under tensor parallelism: this rank's (rank_model_plan)
  TpOptions tp;
  ModelPlan full_plan;  // tp > 1: the whole model's plan (what the checkpoint holds)
  RankPlan rank_plan;   // tp > 1: this rank's shards
  Arena arena;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  void* cublas_ws = nullptr;

  __half* embed = nullptr;
  __half* lm_head = nullptr;
  float* final_norm = nullptr;
  float* inv_freq = nullptr;
  std::vector<Layer> layers;
  uint64_t weight_bytes = 0;
  int qdim = 0, kvdim = 0;
  float attn_scale = 0;

  // Buffers sized for `rows_cap` rows.
  int rows_cap = 0;
  float* h = nullptr;                 // [rows, H]
  __half* att = nullptr;              // [rows, Kp_o]
  int att_ld = 0;
  __half* xf = nullptr;               // final norm output [rows, H]
  Scratch s_qkv, s_o, s_gu, s_down;
  int32_t* d_ids = nullptr;           // [rows]
  int32_t* d_pos = nullptr;           // [rows]: prefill positions r % L
  int pos_seq = 0;                    // the L d_pos was filled for
  int32_t* d_target = nullptr;        // [rows]
  float* d_nll = nullptr;             // [rows]
  float* logits = nullptr;            // [chunk, V]
  int logit_rows = 0;
  void* attn_ws = nullptr;
  size_t attn_ws_bytes = 0;
  void* gemm_ws = nullptr;
  size_t gemm_ws_bytes = 0;

  // Generation state.
  int gen_batch = 0, gen_prompt = 0, gen_gen = 0, max_seq = 0;
  int prefill_seqs = 0;               // sequences per prefill chunk (the attention workspace's size)
  std::vector<__half*> kc, vc;
  // The int8 KV cache (kv8.hpp; set_kv_cache_int8): per layer, codes [batch, max_seq, nkv, hd]
  // then, in the same allocation, fp16 scales [batch, max_seq, nkv]. Prefill (ppl and speed)
  // fake-quantizes k/v exactly as decode dequantizes them.
  bool kv8 = false;
  std::vector<int8_t*> kc8, vc8;
  std::vector<__half*> ks8, vs8;
  int32_t* d_tokens = nullptr;        // [batch]: the token each sequence feeds next
  int32_t* d_dpos = nullptr;          // [batch]: its position
  int32_t* d_dlen = nullptr;          // [batch]: context length including it
  unsigned long long* d_hash = nullptr;  // [batch]: FNV-1a of the tokens generated (advance_kernel)
  int32_t* d_zero = nullptr;          // [batch]: zeros (kv_append start of a prefill)
  float* h_last = nullptr;            // [batch, H]
  int32_t* d_prompt = nullptr;        // [batch·prompt]
  int32_t* d_tokens_save = nullptr;   // [batch]: the prefill's tokens, kept across graph capture
  std::map<int, cudaGraphExec_t> graphs;  // by batch size (one at a time here)

  // Profile (profile_decode): while on, prof_mark(kind) records an event after each launch
  // group of an eager step; the interval ending at event i belongs to prof_kind[i].
  bool prof_on = false;
  std::vector<cudaEvent_t> prof_ev;
  std::vector<const char*> prof_kind;
  size_t prof_n = 0;
  void prof_mark(const char* kind) {
    if (!prof_on) return;
    if (prof_n == prof_ev.size()) {
      cudaEvent_t e = nullptr;
      EX_CUDA(cudaEventCreate(&e));
      prof_ev.push_back(e);
      prof_kind.push_back(nullptr);
    }
    prof_kind[prof_n] = kind;
    EX_CUDA(cudaEventRecord(prof_ev[prof_n++], stream));
  }

  // Ablation (ODYSSEY_DECODE_SKIP=kind,kind,...; read at load): the decode step leaves out the
  // named launch groups (the profile's kinds: attn_norm, qkv_gemm, rope_kv, attention, o_gemm,
  // mlp_norm, gate_up, swiglu, down_gemm, final_norm, lm_head, argmax). The tokens are then
  // meaningless, but the graph replay's ms/step minus the full step's is what that kind costs
  // inside the graph, where the eager profile's per-launch events cannot look (PDL overlaps).
  std::vector<std::string> decode_skip;
  bool skip(Mode mode, const char* kind) const {
    if (mode != Mode::Decode) return false;
    for (const std::string& k : decode_skip)
      if (k == kind) return true;
    return false;
  }

  ~Impl() {
    for (cudaEvent_t e : prof_ev) cudaEventDestroy(e);
    for (auto& g : graphs) cudaGraphExecDestroy(g.second);
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
  }

  // ---------------------------------------------------------------- loading

  void load(const std::string& dir);
  void build_site(Site& site, size_t layer, const std::vector<int>& lins, const SafetensorsCheckpoint& ck);
  void build_w8a8(Gemm& g, const LayerPlan& lp, const std::vector<int>& lins, const std::vector<size_t>& grp,
                  const std::vector<int>& off, bool any_bias, const std::string& what, const SafetensorsCheckpoint& ck);
  // On the stream: from pageable memory the call returns once the source is staged, so src
  // may be freed at once, and the copy is ordered before every kernel that reads dst.
  void upload(void* dst, const void* src, size_t bytes) {
    if (bytes) EX_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  }
  float* upload_f32(const std::vector<float>& v, const std::string& what) {
    float* d = arena.alloc<float>(v.size(), what);
    upload(d, v.data(), v.size() * 4);
    return d;
  }

  // ---------------------------------------------------------------- running

  // Decode SwiGLU fusion (issue 14): at rows ≤ kFuseMaxRows, a layer whose gate/up GEMMs are
  // W4A8 with integer scales and whose down_proj takes int8 runs one kernel,
  // odyssey::w4a8_gemv_swiglu (gemv_mma.cu), instead of gate/up GEMV + layers::swiglu: the
  // same bytes in down's input (the test `test layers --only fuse` compares them), one launch
  // and no fp16 gate/up round trip. ODYSSEY_DECODE_FUSE=0 (read at load) keeps the old path.
  static constexpr int kFuseMaxRows = 8;
  // FP16 linears at decode (rows ≤ ODY_F16_GEMV_MAX_M): the FP16 GEMV or cuBLAS, per shape
  // (f16_decode_gemv below); ODYSSEY_F16_DECODE=gemv|cublas (read at load) forces one (A/B).
  int f16_decode_force = 0;  // 0 the rule, 1 the GEMV, 2 cuBLAS
  bool f16_decode_gemv(int rows, int n, int k) const;
  bool fuse_on = true;
  bool fuse_all = false;              // ODYSSEY_DECODE_FUSE=all: also per-token down inputs
  std::vector<char> gu_fusable;       // per layer
  float* fuse_y32 = nullptr;          // per token: fp32 y [kFuseMaxRows, s_down.kp]
  unsigned* fuse_slots = nullptr;     // per token: [kFuseMaxRows + 1] row maxima + ticket, left zero
  bool gu_fusable_layer(const Layer& L) const;
  void run_gu_swiglu(const Layer& L, int rows);

  void ensure_rows(int rows);
  void ensure_gemm_workspace(int rows);
  void ensure_attn_workspace(size_t bytes);
  layers::ActOut act_out(const Scratch& s, const Site& site, int f) const;
  void norm_into(float* hbuf, const __half* delta, int ld_delta, const float* w, int rows, const Site& site, const Scratch& s);
  void run_site(const Site& site, const Scratch& s, int rows, const __half* f16_input, int f16_ld);
  __half* part_out(const Site& site, const Scratch& s, int rows, int part, int* ld) const {
    const Gemm& g = site.gemms[site.part_gemm[part]];
    *ld = g.n_total;
    return s.out + (size_t)rows * g.col_base + site.part_col[part];
  }
  // Runs every layer on h[0..rows); returns the last down_proj output (the residual delta
  // still to add) and its row stride.
  const __half* run_layers(int rows, int batch, int seq, Mode mode, size_t kv_off, int* ld_delta);
  void lm_head_rows(const __half* x, int rows, float* out);
  // One decode step of gen_batch sequences (embedding → layers → head → argmax → positions + 1).
  void decode_step();
  // Decode positions back to the first step after the prompt (tokens: as the prefill left them,
  // when saved first).
  void reset_decode_positions();
};

// ==================================================================== loading

void Executor::Impl::build_site(Site& site, size_t layer, const std::vector<int>& lins,
                                const SafetensorsCheckpoint& ck) {
  const LayerPlan& lp = plan.layers[layer];
  const bool split = tp.comm != nullptr;
  // Under tensor parallelism the checkpoint holds the whole tensors (full_plan's shapes); each
  // is read whole and cut to this rank's shard (tp_plan.hpp) before its upload.
  auto whole = [&](int li) -> const LinearPlan& { return split ? full_plan.layers[layer].lin[li] : lp.lin[li]; };
  auto shard = [&](int li) -> const LinearShard& { return rank_plan.layers[layer][li]; };
  auto cut_rows = [&](std::vector<float> v, int li) {  // a column shard's slice of a per-row vector
    if (!split || shard(li).split != TpSplit::Column) return v;
    return std::vector<float>(v.begin() + shard(li).n0, v.begin() + shard(li).n1);
  };
  site.lins = lins;
  if (split && lins.size() == 1 && tp_split_of(lins[0]) == TpSplit::Row && lp.lin[lins[0]].format != WeightFormat::Dense16) {
    site.x_off = shard_x_offset(shard(lins[0]));
    site.x_cols = shard(lins[0]).k1 - shard(lins[0]).k0;
  }
  // Activation forms: one per distinct (kind, static scale) among the parts.
  std::vector<int> form_of(lins.size());
  for (size_t i = 0; i < lins.size(); i++) {
    const LinearPlan& l = lp.lin[lins[i]];
    int f = -1;
    for (size_t j = 0; j < site.forms.size(); j++) {
      const Form& x = site.forms[j];
      if (x.kind == l.act && (l.act != ActForm::I8Static || std::memcmp(&x.scale, &l.act_scale, 4) == 0)) f = (int)j;
    }
    if (f < 0) {
      Form nf;
      nf.kind = l.act;
      nf.scale = l.act_scale;
      if (l.act == ActForm::I8Static) {
        nf.d_scale = arena.alloc<float>(1, l.name + ".act_scale");
        upload(nf.d_scale, &l.act_scale, 4);
      }
      site.forms.push_back(nf);
      f = (int)site.forms.size() - 1;
    }
    form_of[i] = f;
  }
  // One GEMM over all parts when every pair can fuse; else one per part.
  bool fuse = true;
  for (size_t i = 1; i < lins.size(); i++) fuse &= can_fuse(lp.lin[lins[0]], lp.lin[lins[i]]);
  std::vector<std::vector<size_t>> groups;
  if (fuse) {
    groups.push_back({});
    for (size_t i = 0; i < lins.size(); i++) groups[0].push_back(i);
  } else {
    for (size_t i = 0; i < lins.size(); i++) groups.push_back({i});
  }
  site.part_gemm.assign(lins.size(), 0);
  site.part_col.assign(lins.size(), 0);
  int col_base = 0;
  for (const auto& grp : groups) {
    const LinearPlan& first = lp.lin[lins[grp[0]]];
    Gemm g;
    g.fmt = first.format;
    g.k = first.k;
    g.kp = first.format == WeightFormat::Dense16 ? first.k : first.kp;
    g.group_size = first.group_size;
    g.int_scales = first.int_scales;
    g.form = form_of[grp[0]];
    g.col_base = col_base;
    std::vector<int> off;
    bool any_bias = false;
    for (size_t i : grp) {
      const LinearPlan& l = lp.lin[lins[i]];
      off.push_back(g.n_total);
      site.part_gemm[i] = (int)site.gemms.size();
      site.part_col[i] = g.n_total;
      g.n_total += ceil_to(l.n, 8);
      any_bias |= l.has_bias;
    }
    const std::string what = grp.size() > 1 ? lp.lin[lins[grp[0]]].name + " (fused)" : first.name;
    if (g.fmt == WeightFormat::Dense16) {
      // fp16 [n_total, k]; rows past each part's n stay zero (zeroed allocation).
      __half* w = arena.alloc<__half>((size_t)g.n_total * g.k, what + ".weight");
      g.bytes += (uint64_t)g.n_total * g.k * 2;
      std::vector<uint16_t> bias16;
      if (any_bias) bias16.assign((size_t)g.n_total, 0);
      for (size_t j = 0; j < grp.size(); j++) {
        const LinearPlan& l = lp.lin[lins[grp[j]]];
        const LinearPlan& lw = whole(lins[grp[j]]);
        HalfData hd = to_f16(ck, l.name + ".weight", {lw.n, lw.k});
        if (split) {
          const std::vector<unsigned char> c =
              shard_dense(reinterpret_cast<const unsigned char*>(hd.data), lw.n, lw.k, shard(lins[grp[j]]));
          upload(w + (size_t)off[j] * g.k, c.data(), c.size());
        } else {
          upload(w + (size_t)off[j] * g.k, hd.data, hd.size * 2);
        }
        if (l.has_bias) {
          std::vector<float> b = cut_rows(to_f32(ck, l.name + ".bias", {lw.n}), lins[grp[j]]);
          for (int c = 0; c < l.n; c++) {
            const uint16_t hb = float_to_half_bits(b[(size_t)c]);
            if ((hb & 0x7c00) == 0x7c00 && std::isfinite(b[(size_t)c]))
              ck.file_of(l.name + ".bias").fail_tensor(l.name + ".bias", "value beyond fp16's range");
            bias16[(size_t)off[j] + c] = hb;
          }
        }
      }
      g.w = w;
      if (any_bias) {
        g.bias16 = arena.alloc<__half>(bias16.size(), what + ".bias");
        upload(g.bias16, bias16.data(), bias16.size() * 2);
        g.bytes += bias16.size() * 2;
      }
    } else if (g.fmt == WeightFormat::W8A8) {
      build_w8a8(g, lp, lins, grp, off, any_bias, what, ck);
    } else {
      const int G = first.groups;
      // W4A16 always takes int16 scales (float ones converted below).
      const bool convert = g.fmt == WeightFormat::W4A16 && !first.int_scales;
      const size_t esz = (first.int_scales || convert) ? 2 : 4;
      uint8_t* qw = arena.alloc<uint8_t>((size_t)g.n_total * g.kp / 2, what + ".qweight");
      uint8_t* gs = arena.alloc<uint8_t>((size_t)G * g.n_total * esz, what + ".group_scale");
      float* cs = arena.alloc<float>((size_t)g.n_total, what + ".channel_scale");
      float* bias = any_bias ? arena.alloc<float>((size_t)g.n_total, what + ".bias") : nullptr;
      g.bytes += (uint64_t)g.n_total * g.kp / 2 + (uint64_t)G * g.n_total * esz + (uint64_t)g.n_total * 4 +
                 (any_bias ? (uint64_t)g.n_total * 4 : 0);
      for (size_t j = 0; j < grp.size(); j++) {
        const LinearPlan& l = lp.lin[lins[grp[j]]];
        const LinearPlan& lw = whole(lins[grp[j]]);
        const size_t npj = (size_t)l.np;
        // Packed blocks are n-block-major: part j's blocks follow the earlier parts' blocks.
        const TensorInfo& tq = ck.get(l.name + ".qweight");
        // group_scale [G, Np_j] → columns [off, off + Np_j) of [G, n_total].
        const TensorInfo& tg = ck.get(l.name + ".group_scale");
        const TensorInfo& tc = ck.get(l.name + ".channel_scale");
        const void* gsrc = ck.data(tg);
        const void* csrc = ck.data(tc);
        std::vector<unsigned char> qcut, gcut, ccut;  // this rank's bytes (tensor parallelism)
        if (split) {
          const LinearShard& sh = shard(lins[grp[j]]);
          const auto* q = static_cast<const unsigned char*>(ck.data(tq));
          qcut = shard_qweight(q, lw.np, lw.kp, sh);
          gcut = shard_group_scale(static_cast<const unsigned char*>(gsrc), lw.groups, lw.np, first.int_scales ? 2 : 4, sh);
          ccut = shard_channels(static_cast<const unsigned char*>(csrc), lw.np, 4, sh);
          if (qcut.size() != npj * (size_t)l.kp / 2 || gcut.size() != (size_t)G * npj * (first.int_scales ? 2 : 4) ||
              ccut.size() != npj * 4)
            throw std::logic_error(l.name + ": a tensor-parallel shard's size disagrees with the rank's plan");
          upload(qw + (size_t)off[j] * g.kp / 2, qcut.data(), qcut.size());
          gsrc = gcut.data();
          csrc = ccut.data();
        } else {
          upload(qw + (size_t)off[j] * g.kp / 2, ck.data(tq), tq.nbytes);
        }
        std::vector<float> gf;
        std::vector<int16_t> gi;
        std::vector<float> cf;
        if (convert) {
          gf.resize((size_t)G * npj);
          std::memcpy(gf.data(), gsrc, gf.size() * 4);
          gi.resize(gf.size());
          cf.resize(npj);
          w4a16_int_scales(gf.data(), G, l.n, (int)npj, gi.data(), cf.data());
          gsrc = gi.data();
          csrc = cf.data();
        }
        EX_CUDA(cudaMemcpy2DAsync(gs + off[j] * esz, (size_t)g.n_total * esz, gsrc, npj * esz, npj * esz, (size_t)G,
                                  cudaMemcpyHostToDevice, stream));
        upload(cs + off[j], csrc, npj * 4);
        if (l.has_bias) {
          std::vector<float> b = cut_rows(to_f32(ck, l.name + ".bias", {lw.n}), lins[grp[j]]);
          upload(bias + off[j], b.data(), b.size() * 4);
        }
      }
      g.w = qw;
      g.gscale = gs;
      g.cscale = cs;
      g.bias = bias;
    }
    col_base += g.n_total;
    site.gemms.push_back(g);
  }
  site.width = col_base;
  for (const Gemm& g : site.gemms) weight_bytes += g.bytes;
}

// W8A8 (compressed-tensors int-quantized): int8 codes [n_total, kp], each part's [n, k] rows
// at its column offset, zero-padded in K to the activation buffers' row stride Kp and in N to
// ⌈n/8⌉·8 (zeroed allocation: padded rows have code 0 and scale 0, so they output 0); fp32
// per-channel scales (the fp16 ones widen exactly) and bias.
void Executor::Impl::build_w8a8(Gemm& g, const LayerPlan& lp, const std::vector<int>& lins, const std::vector<size_t>& grp,
                                const std::vector<int>& off, bool any_bias, const std::string& what,
                                const SafetensorsCheckpoint& ck) {
  int8_t* w = arena.alloc<int8_t>((size_t)g.n_total * g.kp, what + ".weight");
  float* ws = arena.alloc<float>((size_t)g.n_total, what + ".weight_scale");
  float* bias = any_bias ? arena.alloc<float>((size_t)g.n_total, what + ".bias") : nullptr;
  g.bytes += (uint64_t)g.n_total * g.kp + (uint64_t)g.n_total * 4 + (any_bias ? (uint64_t)g.n_total * 4 : 0);
  for (size_t j = 0; j < grp.size(); j++) {
    const LinearPlan& l = lp.lin[lins[grp[j]]];
    const TensorInfo& tw = ck.get(l.name + ".weight");
    EX_CUDA(cudaMemcpy2DAsync(w + (size_t)off[j] * g.kp, (size_t)g.kp, ck.data(tw), (size_t)l.k, (size_t)l.k, (size_t)l.n,
                              cudaMemcpyHostToDevice, stream));
    upload(ws + off[j], to_f32(ck, l.name + ".weight_scale", {l.n, 1}).data(), (size_t)l.n * 4);
    if (l.has_bias) upload(bias + off[j], to_f32(ck, l.name + ".bias", {l.n}).data(), (size_t)l.n * 4);
  }
  g.w = w;
  g.cscale = ws;
  g.bias = bias;
}

void Executor::Impl::load(const std::string& dir) {
  const std::string cfg_path = dir + "/config.json";
  Json root = read_json_file(cfg_path, 16u << 20);
  ModelConfig cfg = parse_model_config(root, cfg_path);
  QuantConfig quant = parse_quant_config(root, cfg_path);
  check_runnable(quant, dir);  // before opening gigabytes of shards
  SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir);
  plan = plan_model(dir, cfg, quant, ck);
  // Tensor parallelism: refusals first (before gigabytes of checks), the rank's plan after the
  // whole checkpoint's values are validated below.
  if (tp.tp > 1 && !tp.comm)
    throw std::invalid_argument("tensor parallelism " + std::to_string(tp.tp) + " needs a communicator (TpOptions::comm)");
  // With a communicator every rank's shard is cut and o/down are all-reduced, also for a world of
  // one (tp 1: the shards are the whole tensors; the dry run of the multi-GPU path on one GPU).
  if (tp.comm != nullptr) {
    if (tp.comm->tp() != tp.tp || tp.comm->rank() != tp.rank)
      throw std::invalid_argument("tensor parallelism " + std::to_string(tp.tp) + " rank " + std::to_string(tp.rank) +
                                  ": no communicator of that group and rank");
    rank_plan = plan_rank(plan, tp.tp, tp.rank);  // throws naming the dimension tp does not divide
    if (cfg.hidden % 8 != 0)  // the all-reduced rows are the linears' padded outputs: keep them the hidden size
      throw std::invalid_argument(dir + ": tensor parallelism needs a hidden size that is a multiple of 8, not " +
                                  std::to_string(cfg.hidden));
    check_tp_codec(tp.comm->codec(), tp.tp, cfg.hidden);
    // A row shard starts at its first K block: with groups wider than a block, that block must
    // open a group, or the shard's group sums would straddle the cut.
    for (size_t i = 0; i < plan.layers.size(); i++)
      for (int li : {kO, kDown}) {
        const LinearPlan& l = plan.layers[i].lin[li];
        const LinearShard& sh = rank_plan.layers[i][li];
        if (l.format != WeightFormat::Dense16 && l.group_size < l.kp && (sh.kb0 * 128) % l.group_size != 0)
          throw std::invalid_argument(dir + ": " + l.name + ": rank " + std::to_string(tp.rank) + " of tensor parallelism " +
                                      std::to_string(tp.tp) + " starts inside a group of " + std::to_string(l.group_size) +
                                      " columns (use groups of at most 128)");
      }
    for (const LayerPlan& lp : plan.layers)
      for (const LinearPlan& l : lp.lin) {
        if (l.format == WeightFormat::W8A8)
          throw std::invalid_argument(dir + ": " + l.name +
                                      ": tensor parallelism is not built for compressed-tensors W8A8 linears yet");
        if (tp_split_of((int)(&l - lp.lin)) == TpSplit::Row && l.has_bias)
          throw std::invalid_argument(dir + ": " + l.name + ": a row-parallel linear with a bias is not supported under " +
                                      "tensor parallelism (the LLaMA, Mistral and Qwen2 families have none)");
      }
  }
  const int H = cfg.hidden, V = cfg.vocab;

  // Will it fit? Tensor bytes as stored (int4 stays int4, 16-bit stays 16-bit, fp32 norms;
  // BF16/F32 linears are converted to fp16, so this overestimates those); a TP rank's shard.
  {
    uint64_t need = 0;
    need += ck.get(plan.embed).numel() * 2;
    if (!cfg.tie_word_embeddings) need += ck.get(plan.lm_head).numel() * 2;
    const ModelPlan held = tp.comm ? rank_model_plan(plan, rank_plan) : plan;
    for (const LayerPlan& lp : held.layers)
      for (const LinearPlan& l : lp.lin) {
        if (l.format == WeightFormat::Dense16)
          need += (uint64_t)ceil_to(l.n, 8) * l.k * 2;
        else if (l.format == WeightFormat::W8A8)
          need += (uint64_t)l.np * l.kp + (uint64_t)l.np * 8;
        else
          need += (uint64_t)l.np * l.kp / 2 + (uint64_t)l.groups * l.np * 4 + (uint64_t)l.np * 8;
      }
    size_t free_b = 0, total_b = 0;
    EX_CUDA(cudaMemGetInfo(&free_b, &total_b));
    if (need > free_b)
      throw std::runtime_error(dir + ": the model needs " + gib((double)need) + " of GPU memory for its weights alone, " +
                               "and the GPU has " + gib((double)free_b) + " free of " + gib((double)total_b));
  }

  // The values of every quantized linear (codes, scales, padding, the accumulator bound), on
  // all cores: about 3.5 GB of codes for a 7B model. The first error in plan order is reported.
  {
    std::vector<const LinearPlan*> todo;
    for (const LayerPlan& lp : plan.layers)
      for (const LinearPlan& l : lp.lin)
        if (l.format != WeightFormat::Dense16) todo.push_back(&l);
    std::vector<std::string> errors(todo.size());
    std::atomic<size_t> next{0};
    auto work = [&]() {
      for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
        try {
          validate_quantized(*todo[i], ck);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      }
    };
    const unsigned n = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < n; t++) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    for (const std::string& e : errors)
      if (!e.empty()) throw FormatError(e);
  }
  if (tp.comm) {  // from here on the executor runs this rank's shard as a model of its own
    full_plan = plan;
    plan = rank_model_plan(full_plan, rank_plan);
  }
  qdim = plan.cfg.heads * plan.cfg.head_dim;
  kvdim = plan.cfg.kv_heads * plan.cfg.head_dim;
  attn_scale = (float)(1.0 / std::sqrt((double)plan.cfg.head_dim));

  EX_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  arena.stream = stream;
  EX_CUBLAS(cublasCreate(&cublas));
  EX_CUBLAS(cublasSetStream(cublas, stream));
  // An explicit workspace, so that cuBLAS never allocates during graph capture.
  const size_t cublas_ws_bytes = 32u << 20;
  cublas_ws = arena.alloc<uint8_t>(cublas_ws_bytes, "cuBLAS workspace");
  EX_CUBLAS(cublasSetWorkspace(cublas, cublas_ws, cublas_ws_bytes));
  EX_CUBLAS(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));

  {
    HalfData e = to_f16(ck, plan.embed, {V, H});
    embed = arena.alloc<__half>((size_t)V * H, plan.embed);
    upload(embed, e.data, e.size * 2);
  }
  if (cfg.tie_word_embeddings) {
    lm_head = embed;
  } else {
    HalfData e = to_f16(ck, plan.lm_head, {V, H});
    lm_head = arena.alloc<__half>((size_t)V * H, plan.lm_head);
    upload(lm_head, e.data, e.size * 2);
  }
  weight_bytes += (uint64_t)V * H * 2;
  final_norm = upload_f32(to_f32(ck, plan.final_norm, {H}), plan.final_norm);
  weight_bytes += (uint64_t)H * 4;
  inv_freq = upload_f32(rope_inv_freq(cfg.rope, cfg.head_dim), "rope inv_freq");

  layers.resize(plan.layers.size());
  for (size_t i = 0; i < plan.layers.size(); i++) {
    const LayerPlan& lp = plan.layers[i];
    Layer& L = layers[i];
    L.attn_norm = upload_f32(to_f32(ck, lp.attn_norm, {H}), lp.attn_norm);
    L.mlp_norm = upload_f32(to_f32(ck, lp.mlp_norm, {H}), lp.mlp_norm);
    weight_bytes += (uint64_t)H * 8;
    build_site(L.qkv, i, {kQ, kK, kV}, ck);
    build_site(L.o, i, {kO}, ck);
    build_site(L.gu, i, {kGate, kUp}, ck);
    build_site(L.down, i, {kDown}, ck);
    if (std::getenv("ODYSSEY_RT_VERBOSE"))
      std::fprintf(stderr, "loaded layer %zu/%zu: qkv %zu GEMM(s), gate/up %zu GEMM(s)\n", i + 1, plan.layers.size(),
                   L.qkv.gemms.size(), L.gu.gemms.size());
  }

  EX_CUDA(cudaStreamSynchronize(stream));  // uploads done: the mapped files may close

  // Scratch layout: K padding per site; which form slots need which buffers.
  s_qkv.kp = ceil_to(H, 128);
  s_o.kp = ceil_to(qdim, 128);
  s_gu.kp = ceil_to(H, 128);
  s_down.kp = ceil_to(plan.cfg.intermediate, 128);
  // A row-parallel packed shard holds whole K blocks around its columns (tp_plan.hpp), which
  // may be one block more than its own columns round up to.
  for (const Layer& L : layers)
    for (const std::pair<const Site*, Scratch*>& ss : {std::make_pair(&L.o, &s_o), std::make_pair(&L.down, &s_down)}) {
      const Site* site = ss.first;
      Scratch* sc = ss.second;
      for (const Gemm& g : site->gemms)
        if (g.fmt != WeightFormat::Dense16) sc->kp = std::max(sc->kp, g.kp);
      if (site->x_off > 0) sc->need_shift = true;
    }
  att_ld = s_o.kp;
  for (Layer& L : layers) {
    std::pair<Site*, Scratch*> sites[] = {{&L.qkv, &s_qkv}, {&L.o, &s_o}, {&L.gu, &s_gu}, {&L.down, &s_down}};
    for (auto& st : sites) {
      Site& site = *st.first;
      Scratch& s = *st.second;
      s.width = std::max(s.width, site.width);
      for (size_t f = 0; f < site.forms.size(); f++) {
        if (f >= 3) throw std::logic_error("more than 3 activation forms at one site");
        const ActForm k = site.forms[f].kind;
        if (k == ActForm::F16) s.f16_form[f] = true;
        if (k == ActForm::F16) {
          // o_proj's fp16 input is the attention output itself.
          if (&site != &L.o) s.need_f16[f] = true;
        } else {
          s.need_i8[f] = true;
          if (k == ActForm::I8PerToken) s.need_tok[f] = true;
        }
      }
    }
  }
  if (const char* e = std::getenv("ODYSSEY_DECODE_SKIP")) {
    decode_skip.clear();
    std::string all(e);
    for (size_t b = 0; b <= all.size();) {
      size_t e2 = all.find(',', b);
      if (e2 == std::string::npos) e2 = all.size();
      if (e2 > b) decode_skip.push_back(all.substr(b, e2 - b));
      b = e2 + 1;
    }
    std::fprintf(stderr, "ODYSSEY_DECODE_SKIP=%s: the decode step leaves these kinds out (timing ablation; tokens meaningless)\n", e);
  }
  {
    const char* e = std::getenv("ODYSSEY_F16_DECODE");
    f16_decode_force = e && std::string(e) == "gemv" ? 1 : e && std::string(e) == "cublas" ? 2 : 0;
  }
  {
    const char* e = std::getenv("ODYSSEY_DECODE_FUSE");
    fuse_on = !(e && std::string(e) == "0");
    fuse_all = e && std::string(e) == "all";
  }
  gu_fusable.assign(layers.size(), 0);
  bool any = false;
  for (size_t i = 0; i < layers.size(); i++) any |= (gu_fusable[i] = fuse_on && gu_fusable_layer(layers[i])) != 0;
  if (any) {
    fuse_y32 = arena.alloc<float>((size_t)kFuseMaxRows * s_down.kp, "fused swiglu y (fp32)");
    fuse_slots = arena.alloc<unsigned>(kFuseMaxRows + 1 + 3, "fused swiglu row maxima and ticket");
  }
  if (std::getenv("ODYSSEY_RT_VERBOSE"))
    std::fprintf(stderr, "decode swiglu fusion: %s, %zu of %zu layers\n", fuse_on ? "on" : "off (ODYSSEY_DECODE_FUSE=0)",
                 (size_t)std::count(gu_fusable.begin(), gu_fusable.end(), 1), layers.size());
}

// The FP16 baseline's decode linears: the FP16 GEMV (gemv_f16.cu) where it beats cuBLAS, cuBLAS
// elsewhere, so that every W4A8-vs-FP16 ratio is against the better of the two. Measured on the
// H200 (session 18 call 3, `bench gemm` M = 1..8, µs GEMV / cuBLAS): the GEMV wins at N ≤ 8192
// with K ≤ 8192 (4096² M = 1 13.9 / 17.6, M = 8 15.0 / 16.1; 8192² 40.5 / 41.0 .. 41.4 / 42.5);
// cuBLAS wins on the wide and the long shapes (12288×4096 35.1 / 31.5 .. 37.0 / 30.8; 22016×4096
// 53.6 / 52.9 .. 57.8 / 53.9; 28672×8192 M = 1 129.4 / 116.4; 8192×28672 M = 1 133.5 / 122.1;
// 4096×11008 M = 8 33.6 / 30.7, but M = 1 28.8 / 29.8).
bool Executor::Impl::f16_decode_gemv(int rows, int n, int k) const {
  if (rows > ODY_F16_GEMV_MAX_M || f16_decode_force == 2) return false;
  return f16_decode_force == 1 || (n <= 8192 && k <= 8192);
}

// Whether layer L's decode gate/up + SwiGLU can run as w4a8_gemv_swiglu: gate and up are W4A8
// with integer scales, the same K, group size, input form and group-scale row stride, each at a
// strip boundary of its GEMM's output; the input is int8; down_proj has one int8 input form
// (what layers::swiglu writes there, the fused epilogue writes the same way).
bool Executor::Impl::gu_fusable_layer(const Layer& L) const {
  const Site& gu = L.gu;
  if (gu.lins.size() != 2 || gu.part_gemm.size() != 2 || L.down.forms.size() != 1) return false;
  if (L.down.forms[0].kind == ActForm::F16) return false;
  // Per-token down inputs stay unfused by default: on the H200 (session 7, call 3) the fused
  // kernel's last-block quantization of every row made it slower than the two launches (bench
  // layers b1 24.8 vs 21.4 us, b8 63.2 vs 29.0; 7B decode b1 2.42 vs 2.27 ms/step, b8 4.90 vs
  // 3.66), while with a static scale it is 1.23-1.31x faster. ODYSSEY_DECODE_FUSE=all fuses both.
  if (L.down.forms[0].kind == ActForm::I8PerToken && !fuse_all) return false;
  const Gemm& gg = gu.gemms[gu.part_gemm[0]];
  const Gemm& gup = gu.gemms[gu.part_gemm[1]];
  for (const Gemm* g : {&gg, &gup})
    if (g->fmt != WeightFormat::W4A8 || !g->int_scales || g->kp != s_gu.kp) return false;
  if (gg.group_size != gup.group_size || gg.form != gup.form || gg.n_total != gup.n_total) return false;
  if (gu.forms[gg.form].kind == ActForm::F16) return false;
  if (gu.part_col[0] % 8 != 0 || gu.part_col[1] % 8 != 0) return false;
  return plan.cfg.intermediate <= s_down.kp && s_down.kp % 16 == 0;
}

void Executor::Impl::run_gu_swiglu(const Layer& L, int rows) {
  const Site& gu = L.gu;
  const Gemm& gg = gu.gemms[gu.part_gemm[0]];
  const Gemm& gup = gu.gemms[gu.part_gemm[1]];
  const Form& fin = gu.forms[gg.form];
  const Form& fout = L.down.forms[0];
  auto at = [&](const Gemm& g, int col, odyssey::GemvSwigluArgs& a, bool up) {
    const uint8_t* qw = static_cast<const uint8_t*>(g.w) + (size_t)(col / 8) * (g.kp / 128) * 512;
    const int16_t* gs = static_cast<const int16_t*>(g.gscale) + col;
    const float* cs = g.cscale + col;
    const float* b = g.bias ? g.bias + col : nullptr;
    if (up) {
      a.qweight_u = qw, a.group_scale_u = gs, a.channel_scale_u = cs, a.bias_u = b;
    } else {
      a.qweight_g = qw, a.group_scale_g = gs, a.channel_scale_g = cs, a.bias_g = b;
    }
  };
  odyssey::GemvSwigluArgs a{};
  a.x = s_gu.i8[gg.form];
  a.act_per_token = fin.kind == ActForm::I8PerToken;
  a.x_scale = a.act_per_token ? s_gu.tok[gg.form] : fin.d_scale;
  a.m = rows;
  a.k = gg.kp;
  a.group_size = gg.group_size;
  a.scale_ld = gg.n_total;
  at(gg, gu.part_col[0], a, false);
  at(gup, gu.part_col[1], a, true);
  a.cols = plan.cfg.intermediate;
  a.ld = s_down.kp;
  a.out = s_down.i8[0];
  if (fout.kind == ActForm::I8Static) {
    a.static_scale = fout.d_scale;
  } else {
    a.token_scale = s_down.tok[0];
    a.y32 = fuse_y32;
    a.slots = fuse_slots;
  }
  EX_CUDA(odyssey::w4a8_gemv_swiglu(a, stream));
}

// ==================================================================== buffers

void Executor::Impl::ensure_rows(int rows) {
  if (rows <= rows_cap) return;
  const ModelConfig& c = plan.cfg;
  // Free the old set, then allocate for the new row count (never during capture: callers
  // size everything before capturing).
  for (void* p : {(void*)h, (void*)att, (void*)xf, (void*)d_ids, (void*)d_pos, (void*)d_target, (void*)d_nll})
    arena.free(p);
  for (Scratch* s : {&s_qkv, &s_o, &s_gu, &s_down}) {
    for (int f = 0; f < 3; f++) {
      arena.free(s->i8[f]);
      arena.free(s->f16[f]);
      arena.free(s->tok[f]);
      arena.free(s->i8_shift[f]);
      arena.free(s->f16_shift[f]);
      s->i8[f] = nullptr;
      s->f16[f] = nullptr;
      s->tok[f] = nullptr;
      s->i8_shift[f] = nullptr;
      s->f16_shift[f] = nullptr;
    }
    arena.free(s->out);
  }
  rows_cap = rows;
  const size_t R = (size_t)rows;
  h = arena.alloc<float>(R * c.hidden, "residual stream");
  att = arena.alloc<__half>(R * att_ld, "attention output");
  xf = arena.alloc<__half>(R * c.hidden, "final norm output");
  d_ids = arena.alloc<int32_t>(R, "token ids");
  d_pos = arena.alloc<int32_t>(R, "positions");
  pos_seq = 0;
  d_target = arena.alloc<int32_t>(R, "targets");
  d_nll = arena.alloc<float>(R, "NLL");
  for (Scratch* s : {&s_qkv, &s_o, &s_gu, &s_down}) {
    for (int f = 0; f < 3; f++) {
      if (s->need_i8[f]) s->i8[f] = arena.alloc<int8_t>(R * s->kp, "int8 activations");
      if (s->need_f16[f]) s->f16[f] = arena.alloc<__half>(R * s->kp, "fp16 activations");
      if (s->need_tok[f]) s->tok[f] = arena.alloc<float>(R, "per-token scales");
      if (s->need_shift && s->need_i8[f]) s->i8_shift[f] = arena.alloc<int8_t>(R * s->kp, "int8 activations (TP shard)");
      if (s->need_shift && s->f16_form[f]) s->f16_shift[f] = arena.alloc<__half>(R * s->kp, "fp16 activations (TP shard)");
    }
    s->out = arena.alloc<__half>(R * s->width, "linear outputs");
  }
  ensure_gemm_workspace(rows);
}

void Executor::Impl::ensure_gemm_workspace(int rows) {
  size_t need = 0;
  for (const Layer& L : layers) {
    for (const Site* site : {&L.qkv, &L.o, &L.gu, &L.down}) {
      for (const Gemm& g : site->gemms) {
        if (g.fmt == WeightFormat::W4A8) {
          ody_w4a8_problem p{rows, g.n_total, g.kp, g.group_size, site->forms[g.form].kind == ActForm::I8PerToken,
                             g.int_scales ? ODY_SCALE_INT : ODY_SCALE_FLOAT, -1, 0};
          need = std::max(need, ody_w4a8_workspace_size(&p));
        } else if (g.fmt == WeightFormat::W4A16) {
          ody_w4a16_problem p{rows, g.n_total, g.kp, g.group_size, -1, 0};
          need = std::max(need, ody_w4a16_workspace_size(&p));
        } else if (g.fmt == WeightFormat::W8A8) {
          ody_w8a8_problem p{rows, g.n_total, g.kp, -1};
          need = std::max(need, ody_w8a8_workspace_size(&p));
        }
      }
    }
  }
  if (need <= gemm_ws_bytes) return;
  arena.free(gemm_ws);
  gemm_ws = arena.alloc<uint8_t>(need, "split-K workspace");  // zeroed once; the kernels leave it zeroed
  gemm_ws_bytes = need;
}

void Executor::Impl::ensure_attn_workspace(size_t bytes) {
  if (bytes <= attn_ws_bytes) return;
  arena.free(attn_ws);
  // Zeroed by the arena: the fused decode attention kernel needs its counters (the last bytes)
  // zero before its first call, and leaves them zero (layers.hpp).
  attn_ws = arena.alloc<uint8_t>(bytes, "attention workspace");
  attn_ws_bytes = bytes;
}

// ==================================================================== forward

layers::ActOut Executor::Impl::act_out(const Scratch& s, const Site& site, int f) const {
  layers::ActOut o;
  o.ld = s.kp;
  switch (site.forms[f].kind) {
    case ActForm::F16:
      o.kind = layers::ActKind::F16;
      o.f16 = s.f16[f];
      break;
    case ActForm::I8Static:
      o.kind = layers::ActKind::I8Static;
      o.i8 = s.i8[f];
      o.static_scale = site.forms[f].d_scale;
      break;
    case ActForm::I8PerToken:
      o.kind = layers::ActKind::I8PerToken;
      o.i8 = s.i8[f];
      o.token_scale = s.tok[f];
      break;
  }
  return o;
}

void Executor::Impl::norm_into(float* hbuf, const __half* delta, int ld_delta, const float* w, int rows, const Site& site,
                               const Scratch& s) {
  const float eps = (float)plan.cfg.rms_norm_eps;
  const int H = plan.cfg.hidden;
  const int nf = (int)site.forms.size();
  // add_rmsnorm writes at most two forms per call: the first call adds the residual, further
  // ones (a third form) normalize again without adding.
  for (int f0 = 0; f0 < nf; f0 += 2) {
    layers::ActOut outs[2];
    const int n = std::min(2, nf - f0);
    for (int j = 0; j < n; j++) outs[j] = act_out(s, site, f0 + j);
    EX_CUDA(layers::add_rmsnorm(hbuf, f0 == 0 ? delta : nullptr, ld_delta, w, eps, rows, H, outs, n, stream));
  }
}

void Executor::Impl::run_site(const Site& site, const Scratch& s, int rows, const __half* f16_input, int f16_ld) {
  // The inputs by form slot; a TP shard with x_off > 0 reads them moved right (Site::x_off).
  const int8_t* xi8[3] = {s.i8[0], s.i8[1], s.i8[2]};
  const __half* xf16[3] = {s.f16[0], s.f16[1], s.f16[2]};
  if (site.x_off > 0) {
    for (size_t f = 0; f < site.forms.size(); f++) {
      if (site.forms[f].kind == ActForm::F16) {
        const __half* src = f16_input ? f16_input : s.f16[f];
        EX_CUDA(layers::place_columns(src, f16_input ? f16_ld : s.kp, rows, site.x_cols, 2, site.x_off, s.f16_shift[f], s.kp,
                                      stream));
        xf16[f] = s.f16_shift[f];
      } else {
        EX_CUDA(layers::place_columns(s.i8[f], s.kp, rows, site.x_cols, 1, site.x_off, s.i8_shift[f], s.kp, stream));
        xi8[f] = s.i8_shift[f];
      }
    }
    f16_input = nullptr;  // now in xf16
  }
  for (const Gemm& g : site.gemms) {
    const Form& form = site.forms[g.form];
    __half* y = s.out + (size_t)rows * g.col_base;
    switch (g.fmt) {
      case WeightFormat::Dense16: {
        const __half* x = f16_input ? f16_input : xf16[g.form];
        const int ldx = f16_input ? f16_ld : s.kp;
        if (f16_decode_gemv(rows, g.n_total, g.k)) {  // decode: the FP16 GEMV (gemv_f16.cu), bias in its epilogue
          ody_f16_gemv_problem p{rows, g.n_total, g.k, ldx, 0};
          ody_f16_gemv_args a{x, g.w, g.bias16, y};
          ody_ok(ody_f16_gemv(&p, &a, stream), "ody_f16_gemv");
          break;
        }
        float alpha = 1.0f, beta = 0.0f;
        if (g.bias16) {
          EX_CUDA(launch_pdl(fill_rows_kernel, grid_for((long long)rows * g.n_total), 256, 0, stream, y, g.n_total, rows,
                             g.n_total, g.bias16));
          beta = 1.0f;
        }
        // Row-major y[rows, n] = x[rows, k]·W[n, k]ᵀ is column-major yᵀ = W·xᵀ, W read as kᵀ.
        EX_CUBLAS(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, g.n_total, rows, g.k, &alpha, g.w, CUDA_R_16F, g.k, x,
                               CUDA_R_16F, ldx, &beta, y, CUDA_R_16F, g.n_total, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        break;
      }
      case WeightFormat::W4A8: {
        ody_w4a8_problem p{rows, g.n_total, g.kp, g.group_size, form.kind == ActForm::I8PerToken,
                           g.int_scales ? ODY_SCALE_INT : ODY_SCALE_FLOAT, -1, 0};
        ody_w4a8_args a{};
        a.x = xi8[g.form];
        a.x_scale = form.kind == ActForm::I8PerToken ? s.tok[g.form] : form.d_scale;
        a.qweight = static_cast<const uint8_t*>(g.w);
        a.group_scale = g.gscale;
        a.channel_scale = g.cscale;
        a.bias = g.bias;
        a.y = y;
        a.workspace = gemm_ws;
        a.workspace_bytes = gemm_ws_bytes;
        ody_ok(ody_w4a8_gemm(&p, &a, stream), "ody_w4a8_gemm");
        break;
      }
      case WeightFormat::W4A16: {
        ody_w4a16_problem p{rows, g.n_total, g.kp, g.group_size, -1, 0};
        ody_w4a16_args a{};
        a.x = f16_input ? static_cast<const void*>(f16_input) : static_cast<const void*>(xf16[g.form]);
        a.qweight = static_cast<const uint8_t*>(g.w);
        a.group_scale = static_cast<const int16_t*>(g.gscale);
        a.channel_scale = g.cscale;
        a.bias = g.bias;
        a.y = y;
        a.workspace = gemm_ws;
        a.workspace_bytes = gemm_ws_bytes;
        ody_ok(ody_w4a16_gemm(&p, &a, stream), "ody_w4a16_gemm");
        break;
      }
      case WeightFormat::W8A8: {
        // x: the site's per-token int8 buffer (row stride s.kp == g.kp, zero-padded columns).
        ody_w8a8_problem p{rows, g.n_total, g.kp, -1};
        ody_w8a8_args a{};
        a.x = xi8[g.form];
        a.x_scale = s.tok[g.form];
        a.w = static_cast<const int8_t*>(g.w);
        a.w_scale = g.cscale;
        a.bias = g.bias;
        a.y = y;
        a.workspace = gemm_ws;
        a.workspace_bytes = gemm_ws_bytes;
        ody_ok(ody_w8a8_gemm(&p, &a, stream), "ody_w8a8_gemm");
        break;
      }
    }
  }
}

const __half* Executor::Impl::run_layers(int rows, int batch, int seq, Mode mode, size_t kv_off, int* ld_delta) {
  const ModelConfig& c = plan.cfg;
  const __half* delta = nullptr;
  int ldd = 0;
  const int32_t* pos = mode == Mode::Decode ? d_dpos : d_pos;
  for (size_t i = 0; i < layers.size(); i++) {
    const Layer& L = layers[i];
    // Attention block.
    if (!skip(mode, "attn_norm")) norm_into(h, delta, ldd, L.attn_norm, rows, L.qkv, s_qkv);
    prof_mark("attn_norm");
    if (!skip(mode, "qkv_gemm")) run_site(L.qkv, s_qkv, rows, nullptr, 0);
    prof_mark("qkv_gemm");
    int ld_q, ld_k, ld_v;
    __half* q = part_out(L.qkv, s_qkv, rows, 0, &ld_q);
    __half* k = part_out(L.qkv, s_qkv, rows, 1, &ld_k);
    __half* v = part_out(L.qkv, s_qkv, rows, 2, &ld_v);
    if (ld_k != ld_v) throw std::logic_error("k and v outputs with different row strides");
    // o_proj's input: the attention output (fp16, row stride Kp_o), quantized when o_proj
    // takes int8 (decode: inside the attention combine; prefill: a kernel of its own).
    const Form& of = L.o.forms[0];
    layers::ActOut oq;
    if (of.kind != ActForm::F16) {
      oq.kind = of.kind == ActForm::I8Static ? layers::ActKind::I8Static : layers::ActKind::I8PerToken;
      oq.ld = s_o.kp;
      oq.i8 = s_o.i8[0];
      oq.static_scale = of.kind == ActForm::I8Static ? of.d_scale : nullptr;
      oq.token_scale = of.kind == ActForm::I8PerToken ? s_o.tok[0] : nullptr;
    }
    if (mode == Mode::Decode && kv8) {
      // The int8 cache: rope + quantize + append, then the int8 split kernel and the combine.
      EX_CUDA(layers::rope_kv8_decode(q, ld_q, k, v, ld_k, kc8[i], ks8[i], vc8[i], vs8[i], batch, max_seq, c.heads,
                                      c.kv_heads, c.head_dim, pos, inv_freq, stream));
      prof_mark("rope_kv8");
      EX_CUDA(layers::attention_decode_kv8(q, ld_q, kc8[i], ks8[i], vc8[i], vs8[i], d_dlen, att, att_ld, batch, max_seq,
                                           c.heads, c.kv_heads, c.head_dim, attn_scale, c.sliding_window, attn_ws,
                                           attn_ws_bytes, stream, of.kind != ActForm::F16 ? &oq : nullptr));
      prof_mark(of.kind != ActForm::F16 ? "attention_kv8+o_quant" : "attention_kv8");
    } else if (mode == Mode::Decode) {
      // rope + KV append in one kernel; the split kernel then the combine (+ o_proj's int8 input).
      if (!skip(mode, "rope_kv"))
      EX_CUDA(layers::rope_kv_decode(q, ld_q, k, v, ld_k, kc[i], vc[i], batch, max_seq, c.heads, c.kv_heads, c.head_dim,
                                     pos, inv_freq, stream));
      prof_mark("rope_kv");
      if (!skip(mode, "attention"))
      EX_CUDA(layers::attention_decode(q, ld_q, kc[i], vc[i], d_dlen, att, att_ld, batch, max_seq, c.heads, c.kv_heads,
                                       c.head_dim, attn_scale, c.sliding_window, attn_ws, attn_ws_bytes, stream,
                                       of.kind != ActForm::F16 ? &oq : nullptr));
      prof_mark(of.kind != ActForm::F16 ? "attention+o_quant" : "attention");
    } else {
      EX_CUDA(layers::rope(q, ld_q, k, ld_k, rows, c.heads, c.kv_heads, c.head_dim, pos, inv_freq, stream));
      prof_mark("rope");
      if (kv8) {
        // k/v replaced by what the int8 cache will give back (and, for a speed prefill, appended
        // to it): the prefill attention sees exactly the values decode will read.
        const bool app = mode == Mode::PrefillKV;
        const size_t so = kv_off / (size_t)c.head_dim;  // the scales' offset of the same rows
        EX_CUDA(layers::kv8_prefill(k, v, ld_k, app ? kc8[i] + kv_off : nullptr, app ? ks8[i] + so : nullptr,
                                    app ? vc8[i] + kv_off : nullptr, app ? vs8[i] + so : nullptr, d_zero, batch, seq,
                                    max_seq, c.kv_heads, c.head_dim, stream));
        prof_mark("kv8_quant");
      }
      EX_CUDA(layers::attention_prefill(q, ld_q, k, v, ld_k, att, att_ld, batch, seq, c.heads, c.kv_heads, c.head_dim,
                                        attn_scale, c.sliding_window, attn_ws, attn_ws_bytes, stream));
      prof_mark("attention");
      if (mode == Mode::PrefillKV && !kv8) {
        EX_CUDA(layers::kv_append(k, v, ld_k, kc[i] + kv_off, vc[i] + kv_off, d_zero, batch, seq, max_seq, c.kv_heads,
                                  c.head_dim, stream));
        prof_mark("kv_append");
      }
    }
    if (mode != Mode::Decode && of.kind != ActForm::F16) {
      EX_CUDA(layers::quantize_rows(att, att_ld, rows, qdim, oq, stream));
      prof_mark("o_quant");
    }
    if (!skip(mode, "o_gemm")) run_site(L.o, s_o, rows, of.kind == ActForm::F16 ? att : nullptr, att_ld);
    prof_mark("o_gemm");
    int ld_o;
    const __half* o_out = part_out(L.o, s_o, rows, 0, &ld_o);
    if (tp.comm) {  // Σ over the ranks of their partial products (tp_comm.hpp)
      tp.comm->allreduce_f16(const_cast<__half*>(o_out), (size_t)rows, (size_t)ld_o, stream);
      prof_mark("o_allreduce");
    }
    // MLP block.
    if (!skip(mode, "mlp_norm")) norm_into(h, o_out, ld_o, L.mlp_norm, rows, L.gu, s_gu);
    prof_mark("mlp_norm");
    if (mode == Mode::Decode && rows <= kFuseMaxRows && gu_fusable[i]) {
      if (!skip(mode, "gate_up")) run_gu_swiglu(L, rows);  // gate/up GEMV + SwiGLU + down's quantization, one kernel
      prof_mark("gate_up+swiglu");
    } else {
      if (!skip(mode, "gate_up")) run_site(L.gu, s_gu, rows, nullptr, 0);
      prof_mark("gate_up_gemm");
      int ld_g, ld_u;
      const __half* gate = part_out(L.gu, s_gu, rows, 0, &ld_g);
      const __half* up = part_out(L.gu, s_gu, rows, 1, &ld_u);
      if (ld_g != ld_u) throw std::logic_error("gate and up outputs with different row strides");
      if (!skip(mode, "swiglu"))
        EX_CUDA(layers::swiglu(gate, up, ld_g, rows, c.intermediate, act_out(s_down, L.down, 0), stream));
      prof_mark("swiglu");
    }
    if (!skip(mode, "down_gemm")) run_site(L.down, s_down, rows, nullptr, 0);
    prof_mark("down_gemm");
    delta = part_out(L.down, s_down, rows, 0, &ldd);
    if (tp.comm) {
      tp.comm->allreduce_f16(const_cast<__half*>(delta), (size_t)rows, (size_t)ldd, stream);
      prof_mark("down_allreduce");
    }
  }
  *ld_delta = ldd;
  return delta;
}

void Executor::Impl::lm_head_rows(const __half* x, int rows, float* out) {
  const int H = plan.cfg.hidden, V = plan.cfg.vocab;
  if (rows <= ODY_F16_GEMV_MAX_M) {  // decode: the FP16 GEMV with fp32 logits
    ody_f16_gemv_problem p{rows, V, H, H, 1};
    ody_f16_gemv_args a{x, lm_head, nullptr, out};
    ody_ok(ody_f16_gemv(&p, &a, stream), "ody_f16_gemv (lm_head)");
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  EX_CUBLAS(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, V, rows, H, &alpha, lm_head, CUDA_R_16F, H, x, CUDA_R_16F, H,
                         &beta, out, CUDA_R_32F, V, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ==================================================================== Executor

Executor::Executor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Executor::~Executor() = default;

std::unique_ptr<Executor> Executor::load(const std::string& dir, const TpOptions& tp) {
  auto impl = std::make_unique<Impl>();
  impl->tp = tp;
  impl->load(dir);
  return std::unique_ptr<Executor>(new Executor(std::move(impl)));
}

const ModelPlan& Executor::plan() const { return impl_->plan; }
cudaStream_t Executor::stream() const { return impl_->stream; }
std::uint64_t Executor::weight_bytes() const { return impl_->weight_bytes; }
std::uint64_t Executor::kv_bytes_per_token() const {
  const ModelConfig& c = impl_->plan.cfg;
  if (impl_->kv8) return (uint64_t)c.layers * 2 * c.kv_heads * (c.head_dim + 2);  // codes + one fp16 scale per head
  return (uint64_t)c.layers * 2 * c.kv_heads * c.head_dim * 2;
}

void Executor::set_kv_cache_int8(bool on) {
  Impl& m = *impl_;
  if (m.kv8 == on) return;
  if (m.gen_batch != 0) release_generation();  // the cache and the captured graphs are per format
  m.kv8 = on;
}
bool Executor::kv_cache_int8() const { return impl_->kv8; }
std::uint64_t Executor::peak_bytes() const { return impl_->arena.peak(); }
void Executor::reset_peak() { impl_->arena.reset_peak(); }

void Executor::score_windows(const std::int32_t* ids, int batch, int seq_len, double* nll_out) {
  Impl& m = *impl_;
  const ModelConfig& c = m.plan.cfg;
  if (batch < 1 || seq_len < 2) throw std::invalid_argument("score_windows: batch ≥ 1 and L ≥ 2 needed");
  const long long rows_ll = (long long)batch * seq_len;
  if (rows_ll > (1LL << 30)) throw std::invalid_argument("score_windows: batch × L too large");
  const int rows = (int)rows_ll;
  m.ensure_rows(rows);
  m.ensure_gemm_workspace(rows);  // split-K scratch depends on M: this batch's may be the largest
  m.ensure_attn_workspace(layers::attention_prefill_workspace(batch, seq_len, c.heads, c.head_dim));
  if (m.pos_seq != seq_len) {
    std::vector<int32_t> pos((size_t)m.rows_cap);
    for (size_t r = 0; r < pos.size(); r++) pos[r] = (int32_t)(r % (size_t)seq_len);
    m.upload(m.d_pos, pos.data(), pos.size() * 4);
    m.pos_seq = seq_len;
  }
  std::vector<int32_t> target((size_t)rows);
  for (int r = 0; r < rows; r++) target[(size_t)r] = (r % seq_len == seq_len - 1) ? -1 : ids[r + 1];
  EX_CUDA(cudaMemcpyAsync(m.d_ids, ids, (size_t)rows * 4, cudaMemcpyHostToDevice, m.stream));
  EX_CUDA(cudaMemcpyAsync(m.d_target, target.data(), (size_t)rows * 4, cudaMemcpyHostToDevice, m.stream));

  EX_CUDA(layers::embed(m.d_ids, rows, m.embed, c.hidden, m.h, m.stream));
  int ldd = 0;
  const __half* delta = m.run_layers(rows, batch, seq_len, Mode::Prefill, 0, &ldd);
  layers::ActOut xo;
  xo.kind = layers::ActKind::F16;
  xo.ld = c.hidden;
  xo.f16 = m.xf;
  EX_CUDA(layers::add_rmsnorm(m.h, delta, ldd, m.final_norm, (float)c.rms_norm_eps, rows, c.hidden, &xo, 1, m.stream));

  // Logits in chunks of at most 256 MiB of fp32.
  const int chunk = (int)std::max<long long>(1, std::min<long long>(rows, (256LL << 20) / 4 / c.vocab));
  if (chunk > m.logit_rows) {
    m.arena.free(m.logits);
    m.logits = m.arena.alloc<float>((size_t)chunk * c.vocab, "logits");
    m.logit_rows = chunk;
  }
  for (int r0 = 0; r0 < rows; r0 += chunk) {
    const int n = std::min(chunk, rows - r0);
    m.lm_head_rows(m.xf + (size_t)r0 * c.hidden, n, m.logits);
    EX_CUDA(layers::nll(m.logits, c.vocab, m.d_target + r0, n, c.vocab, m.d_nll + r0, m.stream));
  }
  std::vector<float> nll((size_t)rows);
  EX_CUDA(cudaMemcpyAsync(nll.data(), m.d_nll, (size_t)rows * 4, cudaMemcpyDeviceToHost, m.stream));
  EX_CUDA(cudaStreamSynchronize(m.stream));
  for (int w = 0; w < batch; w++) {
    double s = 0;
    for (int t = 0; t < seq_len - 1; t++) {
      const float v = nll[(size_t)w * seq_len + t];
      if (!std::isfinite(v))
        throw std::runtime_error("the model computed a non-finite NLL (" + std::to_string(v) + ") in window " +
                                 std::to_string(w) + " of this batch, position " + std::to_string(t + 1));
      s += v;
    }
    nll_out[w] = s;
  }
}

void Executor::setup_generation(int batch, int prompt, int gen) {
  Impl& m = *impl_;
  const ModelConfig& c = m.plan.cfg;
  if (batch < 1 || prompt < 1 || gen < 1) throw std::invalid_argument("generation needs batch, prompt and gen ≥ 1");
  if (m.tp.comm && !m.tp.comm->capturable())
    throw std::invalid_argument("tensor-parallel generation captures its decode steps in a CUDA graph, which needs an NCCL "
                                "communicator (one process per GPU); the in-process group of ranks on one GPU scores "
                                "perplexity only");
  if (m.gen_batch != 0) release_generation();
  m.gen_batch = batch;
  m.gen_prompt = prompt;
  m.gen_gen = gen;
  m.max_seq = prompt + gen;
  // Prefill in chunks of whole sequences, about 8192 rows each (at least one sequence):
  // bounds activations and attention scratch whatever the batch.
  const int seqs_per_chunk = std::max(1, std::min(batch, 8192 / prompt));
  m.prefill_seqs = seqs_per_chunk;
  const int rows = std::max(seqs_per_chunk * prompt, batch);
  m.ensure_rows(rows);
  // Every M the GEMMs will see: full prefill chunks, the last (partial) one, decode steps.
  m.ensure_gemm_workspace(seqs_per_chunk * prompt);
  if (batch % seqs_per_chunk) m.ensure_gemm_workspace((batch % seqs_per_chunk) * prompt);
  m.ensure_gemm_workspace(batch);
  // The fused decode attention keeps its counters in the workspace's last bytes (zero between
  // calls); the prefill attention and the int8-cache kernels use the same buffer from its start,
  // so room for the counters is added past the largest of them: nothing else ever writes there.
  m.ensure_attn_workspace(std::max({layers::attention_prefill_workspace(seqs_per_chunk, prompt, c.heads, c.head_dim),
                                    layers::attention_decode_kv8_workspace(batch, c.heads, c.head_dim, m.max_seq),
                                    layers::attention_decode_workspace(batch, c.heads, c.head_dim, m.max_seq)}) +
                          layers::attention_decode_counter_bytes(batch, c.heads) + 16);
  const size_t kv_elems = (size_t)batch * m.max_seq * c.kv_heads * c.head_dim;
  if (m.kv8) {
    // Codes, then the scales from the next 16-byte boundary, in one allocation per layer and K/V.
    const size_t code_bytes = (kv_elems + 15) / 16 * 16;
    const size_t bytes = code_bytes + kv_elems / (size_t)c.head_dim * sizeof(__half);
    for (auto* v : {&m.kc8, &m.vc8}) v->resize(m.layers.size());
    for (auto* v : {&m.ks8, &m.vs8}) v->resize(m.layers.size());
    for (size_t i = 0; i < m.layers.size(); i++) {
      m.kc8[i] = m.arena.alloc<int8_t>(bytes, "int8 KV cache");
      m.vc8[i] = m.arena.alloc<int8_t>(bytes, "int8 KV cache");
      m.ks8[i] = reinterpret_cast<__half*>(m.kc8[i] + code_bytes);
      m.vs8[i] = reinterpret_cast<__half*>(m.vc8[i] + code_bytes);
    }
  } else {
    m.kc.resize(m.layers.size());
    m.vc.resize(m.layers.size());
    for (size_t i = 0; i < m.layers.size(); i++) {
      m.kc[i] = m.arena.alloc<__half>(kv_elems, "KV cache");
      m.vc[i] = m.arena.alloc<__half>(kv_elems, "KV cache");
    }
  }
  m.d_tokens = m.arena.alloc<int32_t>((size_t)batch, "decode tokens");
  m.d_tokens_save = m.arena.alloc<int32_t>((size_t)batch, "decode tokens (saved)");
  m.d_dpos = m.arena.alloc<int32_t>((size_t)batch, "decode positions");
  m.d_dlen = m.arena.alloc<int32_t>((size_t)batch, "decode lengths");
  m.d_hash = m.arena.alloc<unsigned long long>((size_t)batch, "generated tokens' hashes");
  m.d_zero = m.arena.alloc<int32_t>((size_t)batch, "zeros");
  m.h_last = m.arena.alloc<float>((size_t)batch * c.hidden, "last hidden rows");
  m.d_prompt = m.arena.alloc<int32_t>((size_t)batch * prompt, "prompt ids");
  if (m.logit_rows < batch) {
    m.arena.free(m.logits);
    m.logits = m.arena.alloc<float>((size_t)batch * c.vocab, "logits");
    m.logit_rows = batch;
  }
  if (m.pos_seq != prompt) {
    std::vector<int32_t> pos((size_t)m.rows_cap);
    for (size_t r = 0; r < pos.size(); r++) pos[r] = (int32_t)(r % (size_t)prompt);
    m.upload(m.d_pos, pos.data(), pos.size() * 4);
    m.pos_seq = prompt;
  }
}

void Executor::upload_prompt(const std::int32_t* ids) {
  Impl& m = *impl_;
  for (long long i = 0; i < (long long)m.gen_batch * m.gen_prompt; i++)
    if (ids[i] < 0 || ids[i] >= m.plan.cfg.vocab) throw std::invalid_argument("prompt id out of the vocabulary");
  m.upload(m.d_prompt, ids, (size_t)m.gen_batch * m.gen_prompt * 4);
}

void Executor::prefill() {
  Impl& m = *impl_;
  const ModelConfig& c = m.plan.cfg;
  const int B = m.gen_batch, P = m.gen_prompt;
  if (B == 0) throw std::logic_error("prefill before setup_generation");
  const int per = m.prefill_seqs;
  for (int b0 = 0; b0 < B; b0 += per) {
    const int nb = std::min(per, B - b0);
    const int rows = nb * P;
    EX_CUDA(layers::embed(m.d_prompt + (size_t)b0 * P, rows, m.embed, c.hidden, m.h, m.stream));
    m.prof_mark("embed");  // (the profile marks are no-ops outside profile_prefill/profile_decode)
    int ldd = 0;
    const size_t kv_off = (size_t)b0 * m.max_seq * c.kv_heads * c.head_dim;
    const __half* delta = m.run_layers(rows, nb, P, Mode::PrefillKV, kv_off, &ldd);
    // The last residual add on every row, then only each sequence's last row goes on.
    EX_CUDA(layers::add_rmsnorm(m.h, delta, ldd, m.final_norm, (float)c.rms_norm_eps, rows, c.hidden, nullptr, 0, m.stream));
    EX_CUDA(launch_pdl(gather_last_kernel, grid_for((long long)nb * c.hidden), 256, 0, m.stream, m.h, c.hidden, nb, P,
                       m.h_last));
    layers::ActOut xo;
    xo.kind = layers::ActKind::F16;
    xo.ld = c.hidden;
    xo.f16 = m.xf;
    EX_CUDA(layers::add_rmsnorm(m.h_last, nullptr, 0, m.final_norm, (float)c.rms_norm_eps, nb, c.hidden, &xo, 1, m.stream));
    m.prof_mark("final_norm");
    m.lm_head_rows(m.xf, nb, m.logits);
    m.prof_mark("lm_head");
    EX_CUDA(layers::argmax(m.logits, c.vocab, nb, c.vocab, m.d_tokens + b0, m.stream));
    m.prof_mark("argmax");
  }
}

std::vector<Executor::ProfileRow> Executor::profile_prefill(int runs) {
  Impl& m = *impl_;
  const int B = m.gen_batch;
  if (B == 0) throw std::logic_error("profile_prefill before setup_generation");
  if (runs < 1) throw std::invalid_argument("profile_prefill: runs ≥ 1");
  // prefill() overwrites the KV cache rows of the prompt and d_tokens with what they already
  // hold (same prompt, same kernels): a later decode() computes what it would have. The tokens
  // are still saved and restored, as profile_decode does, in case a kernel is nondeterministic.
  EX_CUDA(cudaMemcpyAsync(m.d_tokens_save, m.d_tokens, (size_t)B * 4, cudaMemcpyDeviceToDevice, m.stream));
  std::map<std::string, std::vector<double>> per_run;  // kind → µs of each run
  std::map<std::string, int> groups;
  std::vector<std::string> order;
  for (int r = 0; r <= runs; r++) {  // run 0 warms up
    // The host enqueues the whole prefill (~500 launches and events) behind ~20 ms of spinning,
    // so the kernels run back to back; the GEMMs are long enough that this matters little.
    spin_kernel<<<1, 1, 0, m.stream>>>(20000000ull);
    EX_CUDA(cudaGetLastError());
    m.prof_on = true;
    m.prof_n = 0;
    try {
      m.prof_mark("start");
      prefill();
    } catch (...) {
      m.prof_on = false;
      throw;
    }
    m.prof_on = false;
    EX_CUDA(cudaStreamSynchronize(m.stream));
    if (r == 0) continue;
    std::map<std::string, double> us;
    std::map<std::string, int> n;
    for (size_t i = 1; i < m.prof_n; i++) {
      float ms = 0;
      EX_CUDA(cudaEventElapsedTime(&ms, m.prof_ev[i - 1], m.prof_ev[i]));
      const std::string k = m.prof_kind[i];
      if (!us.count(k) && !per_run.count(k)) order.push_back(k);
      us[k] += ms * 1e3;
      n[k]++;
    }
    for (auto& kv : us) per_run[kv.first].push_back(kv.second);
    groups = n;
  }
  EX_CUDA(cudaMemcpyAsync(m.d_tokens, m.d_tokens_save, (size_t)B * 4, cudaMemcpyDeviceToDevice, m.stream));
  EX_CUDA(cudaStreamSynchronize(m.stream));
  std::vector<ProfileRow> rows;
  for (const std::string& k : order) {
    std::vector<double> v = per_run[k];
    std::sort(v.begin(), v.end());
    ProfileRow r;
    r.kind = k;
    r.us = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    r.groups = groups[k];
    rows.push_back(r);
  }
  return rows;
}

std::vector<Executor::GemmChoice> Executor::gemm_choices(int rows) const {
  const Impl& m = *impl_;
  std::vector<GemmChoice> out;
  if (m.layers.empty()) return out;
  const Layer& L = m.layers[0];  // every layer has the same shapes and formats
  const char* names[4] = {"qkv", "o", "gate_up", "down"};
  const Site* sites[4] = {&L.qkv, &L.o, &L.gu, &L.down};
  for (int si = 0; si < 4; si++)
    for (const Gemm& g : sites[si]->gemms) {
      GemmChoice ch;
      ch.site = names[si];
      ch.m = rows;
      ch.n = g.n_total;
      ch.k = g.kp;
      int cfg = -1, blocks = 0;
      switch (g.fmt) {
        case WeightFormat::Dense16:
          ch.kernel = m.f16_decode_gemv(rows, g.n_total, g.k) ? "f16_gemv" : "cublas_fp16";
          break;
        case WeightFormat::W4A8: {
          ody_w4a8_problem p{rows, g.n_total, g.kp, g.group_size, sites[si]->forms[g.form].kind == ActForm::I8PerToken,
                             g.int_scales ? ODY_SCALE_INT : ODY_SCALE_FLOAT, -1, 0};
          if (ody_w4a8_dispatch(&p, &cfg, &blocks) == ODY_OK)
            ch.kernel = std::string("w4a8/") + ody_w4a8_config_name(cfg) + "/" + std::to_string(blocks) + "blocks";
          else
            ch.kernel = std::string("w4a8/refused: ") + ody_last_error();
          break;
        }
        case WeightFormat::W4A16: {
          ody_w4a16_problem p{rows, g.n_total, g.kp, g.group_size, -1, 0};
          if (ody_w4a16_dispatch(&p, &cfg, &blocks) == ODY_OK)
            ch.kernel = std::string("w4a16/") + ody_w4a16_config_name(cfg) + "/" + std::to_string(blocks) + "blocks";
          else
            ch.kernel = std::string("w4a16/refused: ") + ody_last_error();
          break;
        }
        case WeightFormat::W8A8: {
          ody_w8a8_problem p{rows, g.n_total, g.kp, -1};
          if (ody_w8a8_dispatch(&p, &cfg) == ODY_OK)
            ch.kernel = std::string("w8a8/") + ody_w8a8_config_name(cfg);
          else
            ch.kernel = std::string("w8a8/refused: ") + ody_last_error();
          break;
        }
      }
      out.push_back(ch);
    }
  return out;
}

void Executor::decode(int steps, cudaEvent_t start, cudaEvent_t stop) {
  Impl& m = *impl_;
  const ModelConfig& c = m.plan.cfg;
  const int B = m.gen_batch;
  if (B == 0) throw std::logic_error("decode before setup_generation");
  if (steps < 0 || steps > m.gen_gen) throw std::invalid_argument("decode: more steps than the KV cache holds");
  (void)c;
  m.reset_decode_positions();
  auto step = [&]() { m.decode_step(); };

  auto it = m.graphs.find(B);
  if (it == m.graphs.end()) {
    // First use: one step eagerly (its launches are checked and any lazy initialization
    // happens outside capture), then capture one step. The eager step consumed position P
    // and overwrote the prefill's tokens, so both are restored after capture: the replays
    // then compute exactly what a run without the extra step computes.
    EX_CUDA(cudaMemcpyAsync(m.d_tokens_save, m.d_tokens, (size_t)B * 4, cudaMemcpyDeviceToDevice, m.stream));
    step();
    EX_CUDA(cudaStreamSynchronize(m.stream));
    cudaGraph_t graph = nullptr;
    EX_CUDA(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal));
    try {
      step();
    } catch (...) {
      cudaStreamEndCapture(m.stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    EX_CUDA(cudaStreamEndCapture(m.stream, &graph));
    cudaGraphExec_t exec = nullptr;
    // CUDA 12 changed cudaGraphInstantiate's signature; this builds with 11.8 and 13.
#if CUDART_VERSION >= 12000
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
#else
    cudaError_t e = cudaGraphInstantiate(&exec, graph, nullptr, nullptr, 0);
#endif
    cudaGraphDestroy(graph);
    EX_CUDA(e);
    it = m.graphs.emplace(B, exec).first;
    EX_CUDA(cudaMemcpyAsync(m.d_tokens, m.d_tokens_save, (size_t)B * 4, cudaMemcpyDeviceToDevice, m.stream));
    m.reset_decode_positions();
  }
  if (start) EX_CUDA(cudaEventRecord(start, m.stream));
  for (int s = 0; s < steps; s++) EX_CUDA(cudaGraphLaunch(it->second, m.stream));
  if (stop) EX_CUDA(cudaEventRecord(stop, m.stream));
}

void Executor::Impl::reset_decode_positions() {
  // Positions after the prompt: the first sampled token sits at position P.
  const int B = gen_batch;
  std::vector<int32_t> pos((size_t)B, gen_prompt), len((size_t)B, gen_prompt + 1);
  EX_CUDA(cudaMemcpyAsync(d_dpos, pos.data(), (size_t)B * 4, cudaMemcpyHostToDevice, stream));
  EX_CUDA(cudaMemcpyAsync(d_dlen, len.data(), (size_t)B * 4, cudaMemcpyHostToDevice, stream));
  std::vector<unsigned long long> hs((size_t)B, kFnvOffset);
  EX_CUDA(cudaMemcpyAsync(d_hash, hs.data(), (size_t)B * 8, cudaMemcpyHostToDevice, stream));
  EX_CUDA(cudaStreamSynchronize(stream));  // the host vectors die here
}

void Executor::Impl::decode_step() {
  const ModelConfig& c = plan.cfg;
  const int B = gen_batch;
  EX_CUDA(layers::embed(d_tokens, B, embed, c.hidden, h, stream));
  prof_mark("embed");
  int ldd = 0;
  const __half* delta = run_layers(B, B, 1, Mode::Decode, 0, &ldd);
  layers::ActOut xo;
  xo.kind = layers::ActKind::F16;
  xo.ld = c.hidden;
  xo.f16 = xf;
  if (!skip(Mode::Decode, "final_norm"))
    EX_CUDA(layers::add_rmsnorm(h, delta, ldd, final_norm, (float)c.rms_norm_eps, B, c.hidden, &xo, 1, stream));
  prof_mark("final_norm");
  if (!skip(Mode::Decode, "lm_head")) lm_head_rows(xf, B, logits);
  prof_mark("lm_head");
  if (!skip(Mode::Decode, "argmax")) EX_CUDA(layers::argmax(logits, c.vocab, B, c.vocab, d_tokens, stream));
  prof_mark("argmax");
  EX_CUDA(launch_pdl(advance_kernel, (B + 127) / 128, 128, 0, stream, d_dpos, d_dlen, d_tokens, d_hash, B));
  prof_mark("advance");
}

std::vector<Executor::ProfileRow> Executor::profile_decode(int steps) {
  Impl& m = *impl_;
  const int B = m.gen_batch;
  if (B == 0) throw std::logic_error("profile_decode before setup_generation");
  if (steps < 1 || steps + 1 > m.gen_gen) throw std::invalid_argument("profile_decode: 1 to gen − 1 steps (one warms up)");
  // The prefill's tokens, restored at the end: a later decode() computes what it would have.
  EX_CUDA(cudaMemcpyAsync(m.d_tokens_save, m.d_tokens, (size_t)B * 4, cudaMemcpyDeviceToDevice, m.stream));
  m.reset_decode_positions();
  std::map<std::string, std::vector<double>> per_step;  // kind → µs of each step
  std::map<std::string, int> groups;                   // kind → launch groups per step
  std::vector<std::string> order;                      // kinds in first-seen order
  for (int st = 0; st <= steps; st++) {  // step 0 warms up (events created, lazy init)
    // ~20 ms of spinning: the host enqueues the whole step (a few hundred launches and events)
    // meanwhile, so the kernels run back to back as in a replay, plus one event per group.
    spin_kernel<<<1, 1, 0, m.stream>>>(20000000ull);
    EX_CUDA(cudaGetLastError());
    m.prof_on = true;
    m.prof_n = 0;
    try {
      m.prof_mark("start");
      m.decode_step();
    } catch (...) {
      m.prof_on = false;
      throw;
    }
    m.prof_on = false;
    EX_CUDA(cudaStreamSynchronize(m.stream));
    if (st == 0) continue;
    std::map<std::string, double> us;
    std::map<std::string, int> n;
    for (size_t i = 1; i < m.prof_n; i++) {
      float ms = 0;
      EX_CUDA(cudaEventElapsedTime(&ms, m.prof_ev[i - 1], m.prof_ev[i]));
      const std::string k = m.prof_kind[i];
      if (!us.count(k) && !per_step.count(k)) order.push_back(k);
      us[k] += ms * 1e3;
      n[k]++;
    }
    for (auto& kv : us) per_step[kv.first].push_back(kv.second);
    groups = n;
  }
  EX_CUDA(cudaMemcpyAsync(m.d_tokens, m.d_tokens_save, (size_t)B * 4, cudaMemcpyDeviceToDevice, m.stream));
  m.reset_decode_positions();
  std::vector<ProfileRow> rows;
  for (const std::string& k : order) {
    std::vector<double> v = per_step[k];
    std::sort(v.begin(), v.end());
    ProfileRow r;
    r.kind = k;
    r.us = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    r.groups = groups[k];
    rows.push_back(r);
  }
  return rows;
}

std::uint64_t Executor::tokens_hash() {
  Impl& m = *impl_;
  std::vector<unsigned long long> hs((size_t)m.gen_batch);
  EX_CUDA(cudaMemcpyAsync(hs.data(), m.d_hash, hs.size() * 8, cudaMemcpyDeviceToHost, m.stream));
  EX_CUDA(cudaStreamSynchronize(m.stream));
  unsigned long long h = kFnvOffset;  // FNV-1a over the sequences' hashes, byte by byte
  for (unsigned long long v : hs)
    for (int i = 0; i < 8; i++) h = (h ^ ((v >> (8 * i)) & 0xFF)) * kFnvPrime;
  return h;
}

std::vector<std::int32_t> Executor::last_tokens() {
  Impl& m = *impl_;
  std::vector<int32_t> t((size_t)m.gen_batch);
  EX_CUDA(cudaMemcpyAsync(t.data(), m.d_tokens, t.size() * 4, cudaMemcpyDeviceToHost, m.stream));
  EX_CUDA(cudaStreamSynchronize(m.stream));
  return t;
}

void Executor::release_generation() {
  Impl& m = *impl_;
  EX_CUDA(cudaStreamSynchronize(m.stream));
  for (auto& g : m.graphs) cudaGraphExecDestroy(g.second);
  m.graphs.clear();
  for (size_t i = 0; i < m.kc.size(); i++) {
    m.arena.free(m.kc[i]);
    m.arena.free(m.vc[i]);
  }
  m.kc.clear();
  m.vc.clear();
  for (size_t i = 0; i < m.kc8.size(); i++) {
    m.arena.free(m.kc8[i]);
    m.arena.free(m.vc8[i]);
  }
  m.kc8.clear();
  m.vc8.clear();
  m.ks8.clear();
  m.vs8.clear();
  for (void* p : {(void*)m.d_tokens, (void*)m.d_tokens_save, (void*)m.d_dpos, (void*)m.d_dlen, (void*)m.d_zero, (void*)m.h_last,
                  (void*)m.d_prompt, (void*)m.d_hash})
    m.arena.free(p);
  m.d_tokens = m.d_tokens_save = m.d_dpos = m.d_dlen = m.d_zero = m.d_prompt = nullptr;
  m.d_hash = nullptr;
  m.h_last = nullptr;
  m.gen_batch = 0;
}

}  // namespace odyssey::exec
