// calib_server.cu: `odyssey-rt calib --model CKPT --dir DIR [--chunk-rows 4096] [--precision
// fp32|fp16]`, the GPU side of layer-by-layer calibration (contract: docs/gpu-calibration.md;
// Go client: gpu/calib.go).
//
// Precision. fp16 is the default (session 7 on the H200: the fp32 forward, 3.6e-7 from Go's,
// left the artifacts' perplexity as far from the CPU-calibrated ones as fp16 did, and it cannot
// run W8A8 layers). fp32 runs collect, advance and advance_quantized through
// calib_fp32.cu: the layer forward in float32 as the CPU pass (model/layer.go), statistics of
// those float32 tensors with XᵀX summed in fp64 (written as xtx 2), and the quantized layer as
// the CPU's fake-quant modules (server methods *32 below). fp16 is what the rest of this
// comment describes: the executor's kernels (fp32 on request: ODYSSEY_CALIB_PRECISION=fp32).
//
// What it computes. The residual stream h of every calibration window lives on the GPU in
// fp32 [N·L, hidden] (embedded once by `init`). `collect i` runs the checkpoint's float layer i
// over the windows, chunk by chunk (⌊chunk_rows / L⌋ windows, at least one), with the
// executor's kernels (layers.hpp: add_rmsnorm, rope, attention_prefill, swiglu) and cuBLAS
// fp16 GEMMs with fp32 accumulation, and gathers the statistics of the four linear inputs as
// the fp16 GEMMs consume them: per-channel min/max (fp32) and Σx² (fp64), each row's max|x|
// (summed on the host in row order, fp64), XᵀX by a cuBLAS GEMM (fp16 in, fp32 accumulate,
// summed over chunks in fp32), and Σ(y − b)² of the linears reading a Hessian input. Every
// sum is in a fixed order (per-split partials reduced in split order; no float atomics), so
// the file is the same bits run after run on one GPU. `advance i` (or collect with advance)
// replaces the stream with the layer's output.
//
// Layout. Float layers' activations are row-major with the row stride equal to their width (no
// padding: cuBLAS dense GEMMs); a quantized layer's inputs have the executor's Kp strides. Weights are fp16 [out, in] as the
// checkpoint has them (BF16/F32 converted by to_f16), biases and norms fp32.
//
// advance_quantized i runs the quantized layer Go wrote (artifact.WriteLayerFile: the
// artifact's tensors for layer i) over every window with the executor's arithmetic, replacing
// the stream (see the section "advance_quantized" below for how it maps to executor.cu).
//
// Limits. Memory: the stream (4·N·L·hidden bytes), one layer's weights (the float layer is
// released before a quantized one is loaded), the chunk's activations (fp16 and int8 forms,
// rows padded to Kp), and the Hessians requested (fp32 in², 485 MB for LLaMA-7B's down_proj
// input). Group sizes and paddings: whatever the executor's loader accepts (plan_layer and
// validate_quantized run on the layer file).
//
// Test and time: runtime/scripts/device-e2e.sh step `calib` (quantizes with --device cpu and
// --device cuda, compares policies and perplexities, times the 7B synthetic model).
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "calib/calib_fp32.hpp"
#include "calib/canonical.hpp"
#include "calib/calib_server.hpp"
#include "calib/stats_file.hpp"
#include "executor/layers.hpp"
#include "executor/model_config.hpp"
#include "executor/model_plan.hpp"
#include "executor/tokens.hpp"
#include "executor/w4a16_scales.hpp"
#include "json.hpp"
#include "odyssey_rt.h"
#include "safetensors.hpp"

namespace odyssey::calibgpu {

namespace {

using exec::LayerPlan;
using exec::ModelConfig;

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void cublas_ok(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string((int)s));
}
#define CC(call) cuda_ok((call), #call)
#define CB(call) cublas_ok((call), #call)

// A request the client got wrong: answered {"ok":false,"fatal":false}, the server goes on.
struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An owning device allocation.
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  Dev() = default;
  explicit Dev(size_t count) { alloc(count); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void alloc(size_t count) {
    if (count == n && p) return;
    cudaFree(p);
    p = nullptr;
    n = count;
    if (count) CC(cudaMalloc(&p, count * sizeof(T)));
  }
  void release() {
    cudaFree(p);
    p = nullptr;
    n = 0;
  }
};

constexpr int kSplits = 64;      // row splits of the per-channel statistics (fixed: deterministic)
constexpr int kOutBlocks = 256;  // blocks of the output Σy² (fixed: deterministic)
// calib.AutoStream16Bytes: the float32 stream size above which calib.Pass keeps it in fp16.
constexpr size_t kAutoStream16Bytes = size_t(256) << 20;

// Per-channel min, max and Σx² of x fp16 [rows, cols] (row stride cols): block (32, 8) owns
// 32 columns and split blockIdx.y of the rows; the split's partials go to part_*[split, col].
__global__ void channel_partials_kernel(const __half* __restrict__ x, int rows, int cols, float* pmin, float* pmax,
                                        double* psq) {
  __shared__ float smin[8][32], smax[8][32];
  __shared__ double ssq[8][32];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float mn = INFINITY, mx = -INFINITY;
  double sq = 0;
  if (c < cols) {
    for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += gridDim.y * 8) {
      const float v = __half2float(x[(size_t)r * cols + c]);
      mn = fminf(mn, v);
      mx = fmaxf(mx, v);
      sq += (double)v * (double)v;
    }
  }
  smin[threadIdx.y][threadIdx.x] = mn;
  smax[threadIdx.y][threadIdx.x] = mx;
  ssq[threadIdx.y][threadIdx.x] = sq;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int j = 1; j < 8; j++) {
      mn = fminf(mn, smin[j][threadIdx.x]);
      mx = fmaxf(mx, smax[j][threadIdx.x]);
      sq += ssq[j][threadIdx.x];
    }
    pmin[(size_t)blockIdx.y * cols + c] = mn;
    pmax[(size_t)blockIdx.y * cols + c] = mx;
    psq[(size_t)blockIdx.y * cols + c] = sq;
  }
}

// Folds the splits' partials into the accumulators, split after split.
// exact: h[i] = table[ids[i / H]·H + i % H], the float32 embedding rows (model.Embed's copy).
__global__ void embed32_kernel(const int32_t* ids, const float* table, int H, size_t n, float* h) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    h[i] = table[(size_t)ids[i / H] * H + i % H];
}

// max |x| over h as float bits (for non-negative floats the bit order is the value order; a
// NaN's bits exceed +inf's, so a NaN keeps the chunk in float32, and the layer check reports it).
__global__ void absmax_bits_kernel(const float* h, size_t n, unsigned* out) {
  unsigned m = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    m = max(m, __float_as_uint(h[i]) & 0x7fffffffu);
  for (int o = 16; o > 0; o /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) atomicMax(out, m);
}

// calib.Pass's fp16 stream (fp16Limit = 65504: anything from 65520 up would round to +inf).
__global__ void round16_kernel(float* h, size_t n, const unsigned* maxbits) {
  if (!(__uint_as_float(*maxbits) < 65504.0f)) return;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    h[i] = __half2float(__float2half_rn(h[i]));
}

__global__ void channel_reduce_kernel(const float* pmin, const float* pmax, const double* psq, int splits, int cols,
                                      float* amin, float* amax, double* asq) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float mn = amin[c], mx = amax[c];
  double sq = asq[c];
  for (int s = 0; s < splits; s++) {
    mn = fminf(mn, pmin[(size_t)s * cols + c]);
    mx = fmaxf(mx, pmax[(size_t)s * cols + c]);
    sq += psq[(size_t)s * cols + c];
  }
  amin[c] = mn;
  amax[c] = mx;
  asq[c] = sq;
}

// tok[r] = max_j |x[r, j]|, one block per row. NaN propagates (the layer check reports it).
__global__ void token_max_kernel(const __half* __restrict__ x, int cols, float* tok) {
  __shared__ float s[256];
  const __half* row = x + (size_t)blockIdx.x * cols;
  float m = 0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = fabsf(__half2float(row[j]));
    m = (v > m || v != v) ? v : m;
  }
  s[threadIdx.x] = m;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      const float o = s[threadIdx.x + w];
      if (o > s[threadIdx.x] || o != o) s[threadIdx.x] = o;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) tok[blockIdx.x] = s[0];
}

// part[b] = Σ y² over rows b, b + gridDim.x, ... of y fp16 [rows, cols] (fixed grid and
// reduction order).
__global__ void out_sumsq_kernel(const __half* __restrict__ y, int rows, int cols, double* part) {
  __shared__ double s[256];
  double t = 0;
  for (int r = blockIdx.x; r < rows; r += gridDim.x)
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      const double v = __half2float(y[(size_t)r * cols + j]);
      t += v * v;
    }
  s[threadIdx.x] = t;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

// y[r, c] = half(float(y[r, c]) + b[c]).
__global__ void add_bias_kernel(__half* y, int rows, int cols, const float* b) {
  const size_t n = (size_t)rows * cols;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = __float2half(__half2float(y[i]) + b[i % cols]);
}

// *bad = 1 if any of x[0..n) is not finite.
__global__ void nonfinite_kernel(const float* x, size_t n, int* bad) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    if (!isfinite(x[i])) *bad = 1;
}

__global__ void positions_kernel(int32_t* pos, int rows, int seq) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < rows) pos[r] = r % seq;
}

int grid_for(size_t n) { return (int)std::max<size_t>(1, std::min<size_t>((n + 255) / 256, 65535)); }

// The statistics of one input being accumulated on the device.
struct InputAcc {
  int kind = 0, in = 0;
  bool hessian = false;
  Dev<float> mn, mx, tok, xtx;
  Dev<double> sq;
  Dev<double> xtx64;  // fp32 precision: XᵀX summed over chunks in fp64
};

struct FloatLayer {
  Dev<float> attn_norm, mlp_norm;
  Dev<__half> w[exec::kNumLinears];  // fp16 precision
  Dev<float> w32[exec::kNumLinears];  // fp32 precision
  Dev<float> b[exec::kNumLinears];
  int n[exec::kNumLinears] = {}, k[exec::kNumLinears] = {};
  bool has_bias[exec::kNumLinears] = {};
};

// advance_quantized: one linear of the layer file on the device, as the executor's Gemm of one
// part (executor.cu build_site): packed codes, group scales (int16, or float: fp32 for W4A8's
// float-scale path, converted to int16 by w4a16_int_scales for W4A16), channel scales and fp32
// bias for a quantized linear; fp16 weight and fp16 bias (the C operand, beta 1) for a skipped one.
struct QLinear {
  exec::WeightFormat fmt = exec::WeightFormat::Dense16;
  int n = 0, np = 0, k = 0, kp = 0, group_size = 0;
  bool int_scales = true;
  int form = 0;  // index into the site's forms
  Dev<uint8_t> qw, gs;
  Dev<float> cs, bias;
  Dev<__half> w16, bias16;
};

// The distinct activation forms a site's linears read (executor.cu build_site: one per kind and
// static scale, bit for bit).
struct QForm {
  exec::ActForm kind = exec::ActForm::F16;
  float scale = 0;
  Dev<float> d_scale;  // I8Static
};

struct QSite {
  int lins[3] = {0, 0, 0};
  int nlins = 0;
  QForm forms[3];
  int nforms = 0;
  int kp = 0;  // the input's padded width (activation row stride)
};

struct QuantLayer {
  Dev<float> attn_norm, mlp_norm;
  QLinear lin[exec::kNumLinears];
  QSite site[4];  // q/k/v, o, gate/up, down
};

// advance_quantized at fp32 precision: each linear as the CPU pass's fake-quant module computes
// it (ptq/qresult LinearResult.ModuleWith): W4A8 integer scales as quant.QLinear (int8 codes of
// the input per its policy; per group P = Σ x·q by SGEMM, exact; acc += ŝ·P in int32;
// y = float32(16·acc)·(xs·f_c) then + bias); W4A8 float scales as qresult.FloatScaleLinear (per group SGEMM of codes, a +=
// float32(P·s_g), y = a·xs then + bias); W4A16 as a Dense of the dequantized weight (float
// scales: s_g·q; integer scales: IntScaleWeight.Dequantize); skipped linears as a Dense of the
// fp16-stored weight widened (the CPU uses the float32 weight: the one difference, fp16
// rounding of skipped linears' weights, which the artifact format imposes).
struct QLinear32 {
  enum Kind { DenseW, W4A8Int, W4A8Float } kind = DenseW;
  int n = 0, k = 0, group_size = 0, groups = 0;
  bool per_token = false;
  Dev<float> w;      // [n, k]: Dense weight, or the codes q (W4A8Int, W4A8Float)
  Dev<float> f;      // W4A8Int: channel_scale f_c [n]
  Dev<short> gsI;    // W4A8Int: integer group scales ŝ [G, np]
  Dev<float> gsT;    // W4A8Float: group scales [G, np]
  Dev<float> scale;  // static activation scale [1]
  Dev<float> bias;   // [n] or empty
};

class Server {
 public:
  Server(const std::string& model, const std::string& dir, int chunk_rows, bool fp32, bool exact);
  ~Server();
  void greet();
  // Runs commands from in until quit or EOF; returns the exit status.
  int serve(std::istream& in);

 private:
  void cmd_init(const Json& c, JsonWriter& w);
  void cmd_collect(const Json& c, JsonWriter& w, bool collect);
  void cmd_hidden(const Json& c, JsonWriter& w);
  void cmd_advance_quantized(const Json& c, JsonWriter& w);
  void load_quant_layer(int i, const std::string& path);
  layers::ActOut q_act_out(int site, int f);
  void q_norm_into(float* h, const __half* delta, int ld_delta, const float* w, int rows, int site);
  void q_gemm(int lin, int rows, const __half* f16_input, int f16_ld);
  void q_forward_chunk(float* h, int rows, int nw);
  __half* out_of(int lin);
  void load_layer(int i);
  void gemm(int lin, const __half* x, int rows, __half* y, double* out_part);
  void forward_chunk(float* h, int rows, int nw, bool collect);
  void stats(InputAcc& a, const __half* x, int rows, size_t row0);
  // fp32 precision (calib_fp32.cu).
  f32::Dims dims32() const;
  void forward_chunk32(float* h, int nw, bool collect);
  void stats32(InputAcc& a, const float* x, int rows, size_t row0);
  void load_quant_layer32(const SafetensorsCheckpoint& ck, const LayerPlan& lp);
  void q_linear32(int lin, const float* x, int rows, float* y);
  // y [rows, n] = x [rows, k] (row stride ldx) · Wᵀ (W [n, k], row stride ldw): cuBLAS SGEMM at
  // fp32, f32::exact::sgemm (gemm.Sgemm(false, true, ...)) at exact.
  void xwT32(const float* x, int ldx, int rows, int k, const float* w, int ldw, int n, float* y) {
    if (exact_)
      f32::exact::sgemm(false, true, rows, n, k, 1.0f, x, ldx, w, ldw, 0.0f, y, n, stream_);
    else
      f32::sgemm_xwT_ld(cublas_, x, ldx, rows, k, w, ldw, n, y);
  }

  std::string model_, dir_;
  int chunk_rows_;
  bool fp32_;  // --precision fp32 (default): calib_fp32.cu's float32 forward and statistics
  // --precision exact (fp32_ also set): the same forward and statistics in the CPU's canonical
  // arithmetic (calib_exact.cu): SGEMMs by f32::exact::sgemm, Σx² per 64-row block, the token
  // maxima summed per 64-row block of each chunk, output sums per row.
  bool exact_ = false;
  // exact with a stream above kAutoStream16Bytes: rounded through fp16 as calib.Pass stores it.
  bool stream16_ = false;
  void store_chunk16(float* h, size_t n);
  ModelConfig cfg_;
  std::unique_ptr<SafetensorsCheckpoint> ck_;
  exec::ModelPlan plan_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  Dev<uint8_t> cublas_ws_;
  int seq_ = 0, windows_ = 0;
  size_t rows_ = 0;
  Dev<float> h_;  // the stream [rows, H]
  int next_ = 0;  // the layer the stream has reached
  FloatLayer layer_;
  int loaded_ = -1;
  Dev<float> inv_freq_;
  // Chunk scratch.
  Dev<float> hc_;
  Dev<__half> xa_, q_, k_, v_, att_, yo_, xm_, g_, u_, xd_, yd_;
  Dev<int32_t> pos_;
  Dev<uint8_t> attn_ws_;
  size_t attn_ws_bytes_ = 0;
  Dev<float> pmin_, pmax_;
  Dev<double> psq_;
  Dev<unsigned> maxbits_;  // store_chunk16's max |x| as float bits
  Dev<int> bad_;
  InputAcc acc_[4];
  bool want_out_[exec::kNumLinears] = {};
  Dev<double> out_part_[exec::kNumLinears];
  int chunk_index_ = 0;
  size_t chunk_row0_ = 0;  // first row of the chunk being run
  // advance_quantized: the layer, and its chunk scratch per site and form slot (int8 codes,
  // fp16 inputs, per-token scales, row stride the site's Kp, zeroed once so that padding
  // columns read 0), the attention output with row stride Kp_o, the GEMMs' split-K workspace.
  QuantLayer ql_;
  Dev<int8_t> qi8_[4][3];
  Dev<__half> qf16_[4][3];
  Dev<float> qtok_[4][3];
  Dev<__half> qatt_;
  Dev<uint8_t> gemm_ws_;
  // fp32 precision: the chunk scratch (f32::Scratch carved from f32_ws_), XᵀX's per-chunk
  // fp32 product, the quantized layer's operands and its activation codes / row scales /
  // per-group partials.
  Dev<uint8_t> f32_ws_;
  f32::Scratch s32_;
  Dev<float> xtx_tmp_;
  QLinear32 ql32_[exec::kNumLinears];
  Dev<float> qcodes32_, qrow32_, qtmp32_, qacc32_;  // qacc32_: float (W4A8Float) or int32 (W4A8Int) sums
  Dev<int32_t> qpg32_;                               // W4A8Int: a group's partial over its chunks (> 16384)
};

// d holds count zeroed elements (reallocated and zeroed only when the count changes).
template <class T>
void ensure_zeroed(Dev<T>& d, size_t count) {
  if (d.p && d.n == count) return;
  d.alloc(count);
  CC(cudaMemset(d.p, 0, count * sizeof(T)));
}

// out[r, c] = bias[c], c < n (row stride n): the C operand of a skipped linear's cuBLAS GEMM
// with beta 1, as the executor adds an fp16 bias (executor.cu fill_rows_kernel).
__global__ void bias_rows_kernel(__half* out, int rows, int n, const __half* bias) {
  const long long total = (long long)rows * n;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    out[i] = bias[i % n];
}

int ceil_to(int x, int m) { return (x + m - 1) / m * m; }

Server::Server(const std::string& model, const std::string& dir, int chunk_rows, bool fp32, bool exact)
    : model_(model), dir_(dir), chunk_rows_(chunk_rows), fp32_(fp32 || exact), exact_(exact) {
  const std::string cfg_path = model + "/config.json";
  Json root = read_json_file(cfg_path, 16u << 20);
  cfg_ = exec::parse_model_config(root, cfg_path);
  exec::QuantConfig quant = exec::parse_quant_config(root, cfg_path);
  if (quant.kind != exec::QuantKind::None)
    throw std::runtime_error(model + " is a quantized model; calibration reads a full-precision checkpoint");
  ck_ = std::make_unique<SafetensorsCheckpoint>(SafetensorsCheckpoint::open(model));
  plan_ = exec::plan_model(model, cfg_, quant, *ck_);
  CC(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CB(cublasCreate(&cublas_));
  CB(cublasSetStream(cublas_, stream_));
  cublas_ws_.alloc(32u << 20);
  CB(cublasSetWorkspace(cublas_, cublas_ws_.p, cublas_ws_.n));
  // No TF32 in the fp32 precision's SGEMMs: the default math mode (fp16 GEMMs use tensor
  // cores under it regardless). NVIDIA_TF32_OVERRIDE=1 in the environment would override it.
  CB(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  std::vector<float> inv = exec::rope_inv_freq(cfg_.rope, cfg_.head_dim);
  inv_freq_.alloc(inv.size());
  CC(cudaMemcpy(inv_freq_.p, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
  bad_.alloc(1);
  const int kinds[4] = {exec::kQ, exec::kO, exec::kGate, exec::kDown};
  const int widths[4] = {cfg_.hidden, cfg_.heads * cfg_.head_dim, cfg_.hidden, cfg_.intermediate};
  for (int i = 0; i < 4; i++) acc_[i].kind = kinds[i], acc_[i].in = widths[i];
}

Server::~Server() {
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void Server::greet() {
  int dev = 0;
  CC(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  CC(cudaGetDeviceProperties(&p, dev));
  JsonWriter w;
  w.begin_object().field("ok", true).field("ready", true).field("protocol", kProtocol).field("model", model_);
  w.field("layers", cfg_.layers).field("hidden", cfg_.hidden).field("intermediate", cfg_.intermediate);
  w.key("gpu").begin_object().field("name", std::string(p.name));
  w.field("cc", std::to_string(p.major) + "." + std::to_string(p.minor));
  w.field("memory_bytes", (unsigned long long)p.totalGlobalMem).end_object();
  w.field("runtime_version", std::string(ody_version()));
  w.field("precision", std::string(exact_ ? "exact" : fp32_ ? "fp32" : "fp16"));
  // Which exact SGEMM this process runs (ODYSSEY_EXACT_SGEMM: 1 the first, 2 exact_sgemm2.cuh);
  // the results are the same bit for bit, only the time differs.
  if (exact_) w.field("exact_sgemm", f32::exact::sgemm_version());
  w.key("commands").begin_array();
  for (const char* c : {"init", "collect", "advance", "advance_quantized", "hidden", "quit"}) w.value(c);
  w.end_array().end_object();
  std::cout << w.str() << std::endl;
}

const Json& member(const Json& c, const char* key) {
  const Json* v = c.find(key);
  if (!v) throw BadRequest(std::string("missing \"") + key + "\"");
  return *v;
}

void Server::cmd_init(const Json& c, JsonWriter& w) {
  if (rows_) throw BadRequest("init: already initialised");
  const std::string path = member(c, "tokens").as_string();
  exec::TokenWindows t = exec::read_token_windows(path);
  exec::check_token_ids(t, cfg_.vocab, path);
  seq_ = (int)t.seq_len;
  windows_ = (int)t.windows;
  rows_ = (size_t)seq_ * windows_;
  const int H = cfg_.hidden;
  h_.alloc(rows_ * H);
  if (exact_) {
    // The CPU pass copies rows of the float32 embedding (the checkpoint's dtype widened
    // exactly), not of an fp16 table.
    std::vector<float> e = exec::to_f32(*ck_, plan_.embed, {cfg_.vocab, H});
    Dev<float> table(e.size());
    CC(cudaMemcpy(table.p, e.data(), e.size() * 4, cudaMemcpyHostToDevice));
    Dev<int32_t> ids(rows_);
    CC(cudaMemcpy(ids.p, t.ids.data(), rows_ * 4, cudaMemcpyHostToDevice));
    embed32_kernel<<<grid_for(rows_ * H), 256, 0, stream_>>>(ids.p, table.p, H, rows_ * H, h_.p);
    CC(cudaGetLastError());
    CC(cudaStreamSynchronize(stream_));
  } else {
    exec::HalfData e = exec::to_f16(*ck_, plan_.embed, {cfg_.vocab, H});
    Dev<__half> table(e.size);
    CC(cudaMemcpy(table.p, e.data, e.size * 2, cudaMemcpyHostToDevice));
    Dev<int32_t> ids(rows_);
    CC(cudaMemcpy(ids.p, t.ids.data(), rows_ * 4, cudaMemcpyHostToDevice));
    CC(layers::embed(ids.p, (int)rows_, table.p, H, h_.p, stream_));
    CC(cudaStreamSynchronize(stream_));
  }
  // Chunk scratch, sized once.
  const int wc = std::max(1, std::min(windows_, chunk_rows_ / seq_));
  const size_t rc = (size_t)wc * seq_;
  // exact: calib.Pass stores the residual stream in fp16 between layers when its float32 size
  // passes AutoStream16Bytes (256 MiB; a 7B model's 128×512 windows), chunk by chunk (a chunk
  // with |x| ≥ 65504 stays float32). Done here after the embedding and after each advanced chunk.
  stream16_ = exact_ && rows_ * (size_t)H * 4 > kAutoStream16Bytes;
  if (stream16_)
    for (int w0 = 0; w0 < windows_; w0 += wc)
      store_chunk16(h_.p + (size_t)w0 * seq_ * H, (size_t)std::min(wc, windows_ - w0) * seq_ * H);
  const int qd = cfg_.heads * cfg_.head_dim, kvd = cfg_.kv_heads * cfg_.head_dim, I = cfg_.intermediate;
  hc_.alloc(rc * H);
  xa_.alloc(rc * H);
  // Linear outputs hold ⌈n/8⌉·8 columns: the quantized kernels write rows of Np.
  q_.alloc(rc * ceil_to(qd, 8));
  k_.alloc(rc * ceil_to(kvd, 8));
  v_.alloc(rc * ceil_to(kvd, 8));
  att_.alloc(rc * qd);
  yo_.alloc(rc * ceil_to(H, 8));
  xm_.alloc(rc * H);
  g_.alloc(rc * ceil_to(I, 8));
  u_.alloc(rc * ceil_to(I, 8));
  xd_.alloc(rc * I);
  yd_.alloc(rc * ceil_to(H, 8));
  pos_.alloc(rc);
  positions_kernel<<<grid_for(rc), 256, 0, stream_>>>(pos_.p, (int)rc, seq_);
  CC(cudaGetLastError());
  attn_ws_bytes_ = layers::attention_prefill_workspace(wc, seq_, cfg_.heads, cfg_.head_dim);
  attn_ws_.alloc(std::max<size_t>(attn_ws_bytes_, 1));
  const int wmax = std::max(std::max(H, qd), I);
  pmin_.alloc((size_t)kSplits * wmax);
  pmax_.alloc((size_t)kSplits * wmax);
  psq_.alloc((size_t)kSplits * wmax);
  if (fp32_) {
    const f32::Dims d = dims32();
    f32_ws_.alloc(f32::Scratch::bytes(d, wc));
    f32::carve_scratch(s32_, f32_ws_.p, d, wc);
    const int half = cfg_.head_dim / 2;
    std::vector<float> inv = exec::rope_inv_freq(cfg_.rope, cfg_.head_dim), cs((size_t)seq_ * half), sn(cs.size());
    f32::rope_tables(inv.data(), half, seq_, cs.data(), sn.data());
    CC(cudaMemcpy(const_cast<float*>(s32_.cos), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
    CC(cudaMemcpy(const_cast<float*>(s32_.sin), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
    // advance_quantized's activation codes, row scales and float-scale partials.
    qcodes32_.alloc(rc * std::max(std::max(H, qd), I));
    qrow32_.alloc(rc);
    qtmp32_.alloc(rc * std::max(std::max(H, qd), I));
    qacc32_.alloc(rc * std::max(std::max(H, qd), I));
  }
  CC(cudaStreamSynchronize(stream_));
  w.field("rows", (unsigned long long)rows_).field("seq_len", seq_).field("windows", windows_);
  w.field("stream_bytes", (unsigned long long)(rows_ * H * 4));
}

void Server::load_layer(int i) {
  if (loaded_ == i) return;
  const LayerPlan& lp = plan_.layers[i];
  const int H = cfg_.hidden;
  auto norm = [&](Dev<float>& d, const std::string& name) {
    std::vector<float> v = exec::to_f32(*ck_, name, {H});
    d.alloc(v.size());
    CC(cudaMemcpy(d.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  };
  norm(layer_.attn_norm, lp.attn_norm);
  norm(layer_.mlp_norm, lp.mlp_norm);
  for (int l = 0; l < exec::kNumLinears; l++) {
    const exec::LinearPlan& p = lp.lin[l];
    layer_.n[l] = p.n;
    layer_.k[l] = p.k;
    if (fp32_) {
      // The checkpoint's weight widened to fp32 (F32 as stored; BF16/F16 exactly), as Go loads it.
      std::vector<float> wf = exec::to_f32(*ck_, p.name + ".weight", {p.n, p.k});
      layer_.w32[l].alloc(wf.size());
      CC(cudaMemcpy(layer_.w32[l].p, wf.data(), wf.size() * 4, cudaMemcpyHostToDevice));
    } else {
      exec::HalfData wd = exec::to_f16(*ck_, p.name + ".weight", {p.n, p.k});
      layer_.w[l].alloc(wd.size);
      CC(cudaMemcpy(layer_.w[l].p, wd.data, wd.size * 2, cudaMemcpyHostToDevice));
    }
    layer_.has_bias[l] = p.has_bias;
    if (p.has_bias) {
      std::vector<float> b = exec::to_f32(*ck_, p.name + ".bias", {p.n});
      layer_.b[l].alloc(b.size());
      CC(cudaMemcpy(layer_.b[l].p, b.data(), b.size() * 4, cudaMemcpyHostToDevice));
    } else {
      layer_.b[l].release();
    }
  }
  loaded_ = i;
}

// y [rows, n] = x [rows, k] · Wᵀ (fp16, fp32 accumulation); with out_part, Σy² (before the
// bias: Σ(y − b)²) into out_part[chunk·kOutBlocks ...]; then the bias.
void Server::gemm(int lin, const __half* x, int rows, __half* y, double* out_part) {
  const int n = layer_.n[lin], k = layer_.k[lin];
  const float alpha = 1.0f, beta = 0.0f;
  CB(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha, layer_.w[lin].p, CUDA_R_16F, k, x, CUDA_R_16F, k,
                  &beta, y, CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (out_part) {
    out_sumsq_kernel<<<kOutBlocks, 256, 0, stream_>>>(y, rows, n, out_part + (size_t)chunk_index_ * kOutBlocks);
    CC(cudaGetLastError());
  }
  if (layer_.has_bias[lin]) {
    add_bias_kernel<<<grid_for((size_t)rows * n), 256, 0, stream_>>>(y, rows, n, layer_.b[lin].p);
    CC(cudaGetLastError());
  }
}

void Server::stats(InputAcc& a, const __half* x, int rows, size_t row0) {
  const int cols = a.in;
  dim3 grid((cols + 31) / 32, kSplits), block(32, 8);
  channel_partials_kernel<<<grid, block, 0, stream_>>>(x, rows, cols, pmin_.p, pmax_.p, psq_.p);
  CC(cudaGetLastError());
  channel_reduce_kernel<<<(cols + 255) / 256, 256, 0, stream_>>>(pmin_.p, pmax_.p, psq_.p, kSplits, cols, a.mn.p, a.mx.p,
                                                                  a.sq.p);
  CC(cudaGetLastError());
  token_max_kernel<<<rows, 256, 0, stream_>>>(x, cols, a.tok.p + row0);
  CC(cudaGetLastError());
  if (a.hessian) {
    // Row-major X [rows, in] is column-major Xᶜ [in, rows]; XᵀX = Xᶜ·Xᶜᵀ (symmetric, so
    // either layout), accumulated (beta 1) over chunks in fp32.
    const float alpha = 1.0f, beta = 1.0f;
    CB(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, cols, cols, rows, &alpha, x, CUDA_R_16F, cols, x, CUDA_R_16F, cols,
                    &beta, a.xtx.p, CUDA_R_32F, cols, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

// One chunk of nw windows (rows = nw·L) of h through the loaded layer, in place.
void Server::forward_chunk(float* h, int rows, int nw, bool collect) {
  const ModelConfig& c = cfg_;
  const int H = c.hidden, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim, I = c.intermediate;
  const float eps = (float)c.rms_norm_eps;
  auto f16out = [](__half* p, int ld) {
    layers::ActOut o;
    o.kind = layers::ActKind::F16;
    o.ld = ld;
    o.f16 = p;
    return o;
  };
  auto part = [&](int lin) { return collect && want_out_[lin] ? out_part_[lin].p : nullptr; };
  const size_t r0 = chunk_row0_;
  layers::ActOut oa = f16out(xa_.p, H);
  CC(layers::add_rmsnorm(h, nullptr, 0, layer_.attn_norm.p, eps, rows, H, &oa, 1, stream_));
  if (collect) stats(acc_[0], xa_.p, rows, r0);
  gemm(exec::kQ, xa_.p, rows, q_.p, part(exec::kQ));
  gemm(exec::kK, xa_.p, rows, k_.p, part(exec::kK));
  gemm(exec::kV, xa_.p, rows, v_.p, part(exec::kV));
  CC(layers::rope(q_.p, qd, k_.p, kvd, rows, c.heads, c.kv_heads, c.head_dim, pos_.p, inv_freq_.p, stream_));
  CC(layers::attention_prefill(q_.p, qd, k_.p, v_.p, kvd, att_.p, qd, nw, seq_, c.heads, c.kv_heads, c.head_dim,
                               (float)(1.0 / std::sqrt((double)c.head_dim)), c.sliding_window, attn_ws_.p,
                               attn_ws_bytes_, stream_));
  if (collect) stats(acc_[1], att_.p, rows, r0);
  gemm(exec::kO, att_.p, rows, yo_.p, part(exec::kO));
  layers::ActOut om = f16out(xm_.p, H);
  CC(layers::add_rmsnorm(h, yo_.p, H, layer_.mlp_norm.p, eps, rows, H, &om, 1, stream_));
  if (collect) stats(acc_[2], xm_.p, rows, r0);
  gemm(exec::kGate, xm_.p, rows, g_.p, part(exec::kGate));
  gemm(exec::kUp, xm_.p, rows, u_.p, part(exec::kUp));
  CC(layers::swiglu(g_.p, u_.p, I, rows, I, f16out(xd_.p, I), stream_));
  if (collect) stats(acc_[3], xd_.p, rows, r0);
  gemm(exec::kDown, xd_.p, rows, yd_.p, part(exec::kDown));
  // The residual add alone (no output form).
  CC(layers::add_rmsnorm(h, yd_.p, H, layer_.mlp_norm.p, eps, rows, H, nullptr, 0, stream_));
  nonfinite_kernel<<<grid_for((size_t)rows * H), 256, 0, stream_>>>(h, (size_t)rows * H, bad_.p);
  CC(cudaGetLastError());
}

// collect (collect = true; advance per the command) or advance (collect = false).
void Server::cmd_collect(const Json& c, JsonWriter& w, bool collect) {
  if (!rows_) throw BadRequest("init first");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t i = member(c, "layer").as_int64();
  if (i != next_) throw BadRequest("layer " + std::to_string(i) + ", but the stream has reached layer " + std::to_string(next_));
  if (i >= cfg_.layers) throw BadRequest("layer " + std::to_string(i) + " of " + std::to_string(cfg_.layers));
  bool advance = !collect;
  std::string out;
  bool outputs = false;
  if (collect) {
    if (const Json* a = c.find("advance")) advance = a->as_bool();
    if (const Json* o = c.find("outputs")) outputs = o->as_bool();
    out = member(c, "out").as_string();
    for (InputAcc& a : acc_) a.hessian = false;
    for (const Json& hk : member(c, "hessian").elems()) {
      const std::string& n = hk.as_string();
      const int idx = n == "q" ? 0 : n == "o" ? 1 : n == "gate" ? 2 : n == "down" ? 3 : -1;
      if (idx < 0) throw BadRequest("unknown input \"" + n + "\" in hessian (want q, o, gate, down)");
      acc_[idx].hessian = true;
    }
  }
  load_layer((int)i);
  const int H = cfg_.hidden;
  const int wc = std::max(1, std::min(windows_, chunk_rows_ / seq_));
  const int chunks = (windows_ + wc - 1) / wc;
  if (collect) {
    for (InputAcc& a : acc_) {
      a.mn.alloc(a.in);
      a.mx.alloc(a.in);
      a.sq.alloc(a.in);
      a.tok.alloc(rows_);
      std::vector<float> inf(a.in, INFINITY), ninf(a.in, -INFINITY);
      CC(cudaMemcpy(a.mn.p, inf.data(), a.in * 4, cudaMemcpyHostToDevice));
      CC(cudaMemcpy(a.mx.p, ninf.data(), a.in * 4, cudaMemcpyHostToDevice));
      CC(cudaMemset(a.sq.p, 0, a.in * 8));
      if (a.hessian && fp32_) {
        a.xtx64.alloc((size_t)a.in * a.in);
        CC(cudaMemset(a.xtx64.p, 0, (size_t)a.in * a.in * 8));
        if (xtx_tmp_.n < (size_t)a.in * a.in) {
          xtx_tmp_.release();
          xtx_tmp_.alloc((size_t)a.in * a.in);
        }
      } else if (a.hessian) {
        a.xtx.alloc((size_t)a.in * a.in);
        CC(cudaMemset(a.xtx.p, 0, (size_t)a.in * a.in * 4));
      } else {
        a.xtx.release();
        a.xtx64.release();
      }
    }
    const int reader_input[exec::kNumLinears] = {0, 0, 0, 1, 2, 2, 3};
    for (int l = 0; l < exec::kNumLinears; l++) {
      want_out_[l] = outputs && acc_[reader_input[l]].hessian;
      if (want_out_[l]) out_part_[l].alloc(exact_ ? (size_t)rows_ : (size_t)chunks * kOutBlocks);
    }
  }
  CC(cudaMemsetAsync(bad_.p, 0, 4, stream_));
  for (int ci = 0; ci < chunks; ci++) {
    const int w0 = ci * wc, nw = std::min(wc, windows_ - w0);
    const int rows = nw * seq_;
    chunk_index_ = ci;
    chunk_row0_ = (size_t)w0 * seq_;
    float* h = h_.p + chunk_row0_ * H;
    if (!advance) {
      CC(cudaMemcpyAsync(hc_.p, h, (size_t)rows * H * 4, cudaMemcpyDeviceToDevice, stream_));
      h = hc_.p;
    }
    if (fp32_)
      forward_chunk32(h, nw, collect);
    else
      forward_chunk(h, rows, nw, collect);
    std::fprintf(stderr, "progress %d %d\n", ci + 1, chunks);
  }
  CC(cudaStreamSynchronize(stream_));
  int bad = 0;
  CC(cudaMemcpy(&bad, bad_.p, 4, cudaMemcpyDeviceToHost));
  if (bad) throw std::runtime_error("layer " + std::to_string(i) + ": the layer's output is not finite (NaN or Inf)");
  if (collect) {
    StatsFileWriter f(out);
    int n_out = 0;
    for (bool b : want_out_) n_out += b;
    f.header((uint32_t)i, 4, (uint32_t)n_out, (int64_t)rows_);
    std::vector<float> mn, mx, tok(rows_), slice;
    std::vector<double> sq;
    for (InputAcc& a : acc_) {
      mn.resize(a.in);
      mx.resize(a.in);
      sq.resize(a.in);
      CC(cudaMemcpy(mn.data(), a.mn.p, a.in * 4, cudaMemcpyDeviceToHost));
      CC(cudaMemcpy(mx.data(), a.mx.p, a.in * 4, cudaMemcpyDeviceToHost));
      CC(cudaMemcpy(sq.data(), a.sq.p, a.in * 8, cudaMemcpyDeviceToHost));
      CC(cudaMemcpy(tok.data(), a.tok.p, rows_ * 4, cudaMemcpyDeviceToHost));
      double tsum = 0;
      float tmin = INFINITY;
      if (exact_) {
        // calib.Stats.Add's order: per chunk (one Add call), blocks of 64 rows each summed from
        // 0 in row order, the blocks added to the total in order.
        const size_t crows = (size_t)wc * seq_;
        for (size_t c0 = 0; c0 < (size_t)rows_; c0 += crows) {
          const size_t c1 = std::min((size_t)rows_, c0 + crows);
          for (size_t b0 = c0; b0 < c1; b0 += canon::kStatsBlockRows) {
            double bs = 0;
            for (size_t r = b0; r < std::min(c1, b0 + canon::kStatsBlockRows); r++) bs += tok[r];
            tsum += bs;
          }
        }
        for (float t : tok) tmin = std::min(tmin, t);
      } else {
        for (float t : tok) {  // row order: the same sum every run
          tsum += t;
          tmin = std::min(tmin, t);
        }
      }
      f.input((uint32_t)a.kind, (uint32_t)a.in, a.hessian ? (fp32_ ? 2u : 1u) : 0u, tsum, tmin, mn.data(), mx.data(),
              sq.data());
      if (a.hessian && fp32_) {
        // 8 Mi values (64 MiB) at a time.
        const size_t total = (size_t)a.in * a.in, step = size_t(1) << 23;
        std::vector<double> slice64(std::min(total, step));
        for (size_t o = 0; o < total; o += step) {
          const size_t n = std::min(step, total - o);
          CC(cudaMemcpy(slice64.data(), a.xtx64.p + o, n * 8, cudaMemcpyDeviceToHost));
          f.xtx_f64(slice64.data(), n);
        }
        a.xtx64.release();
      } else if (a.hessian) {
        // 16 Mi values (64 MiB) at a time: the host never holds a whole 11008² Hessian.
        const size_t total = (size_t)a.in * a.in, step = size_t(1) << 24;
        slice.resize(std::min(total, step));
        for (size_t o = 0; o < total; o += step) {
          const size_t n = std::min(step, total - o);
          CC(cudaMemcpy(slice.data(), a.xtx.p + o, n * 4, cudaMemcpyDeviceToHost));
          f.xtx_f32(slice.data(), n);
        }
        a.xtx.release();
      }
    }
    for (int l = 0; l < exec::kNumLinears; l++) {
      if (!want_out_[l]) continue;
      // exact: one sum per row, added in row order (calib.OutputStats.add).
      std::vector<double> parts(exact_ ? (size_t)rows_ : (size_t)chunks * kOutBlocks);
      CC(cudaMemcpy(parts.data(), out_part_[l].p, parts.size() * 8, cudaMemcpyDeviceToHost));
      double s = 0;
      for (double p : parts) s += p;
      f.output((uint32_t)l, s);
    }
    f.finish();
    w.field("rows", (unsigned long long)rows_);
  }
  if (advance) next_++;
  if (collect && fp32_) xtx_tmp_.release();  // 485 MB for a 7B down_proj: not kept across layers
  w.field("seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// ------------------------------------------------------------------ fp32 precision

f32::Dims Server::dims32() const {
  f32::Dims d;
  d.hidden = cfg_.hidden;
  d.heads = cfg_.heads;
  d.kv_heads = cfg_.kv_heads;
  d.head_dim = cfg_.head_dim;
  d.intermediate = cfg_.intermediate;
  d.seq = seq_;
  d.sliding_window = cfg_.sliding_window;
  d.eps = cfg_.rms_norm_eps;
  d.exact = exact_;
  return d;
}

void Server::stats32(InputAcc& a, const float* x, int rows, size_t row0) {
  if (exact_) {
    // calib.Stats.Add's order: 64-row blocks of the chunk, merged in order (Go's min/max).
    f32::exact::channel_blocks(x, rows, a.in, a.mn.p, a.mx.p, a.sq.p, stream_);
  } else {
    f32::channel_partials(x, rows, a.in, kSplits, pmin_.p, pmax_.p, psq_.p, stream_);
    channel_reduce_kernel<<<(a.in + 255) / 256, 256, 0, stream_>>>(pmin_.p, pmax_.p, psq_.p, kSplits, a.in, a.mn.p,
                                                                    a.mx.p, a.sq.p);
    CC(cudaGetLastError());
  }
  f32::token_max(x, rows, a.in, a.tok.p + row0, stream_);
  if (a.hessian) {
    if (exact_)
      f32::exact::xtx_accumulate(x, rows, a.in, xtx_tmp_.p, a.xtx64.p, stream_);
    else
      f32::xtx_accumulate(cublas_, x, rows, a.in, xtx_tmp_.p, a.xtx64.p, stream_);
  }
}

// One chunk through the checkpoint's float layer in fp32 (calib_fp32.cu forward_chunk), the
// statistics taken from its fp32 linear inputs and outputs.
void Server::forward_chunk32(float* h, int nw, bool collect) {
  const size_t r0 = chunk_row0_;
  f32::LinearFn linear = [&](int lin, const float* x, int rows, float* y) {
    if (exact_) {
      // Dense.Forward: Sgemm(false, true, rows, n, k, 1, x, k, W, k, 0, y, n), then + bias; the
      // output's Σ(y − b)² per row after the bias, as Collector.ObserveOutput sees y.
      const int k = layer_.k[lin], n = layer_.n[lin];
      f32::exact::sgemm(false, true, rows, n, k, 1.0f, x, k, layer_.w32[lin].p, k, 0.0f, y, n, stream_);
      const float* b = layer_.has_bias[lin] ? layer_.b[lin].p : nullptr;
      if (b) f32::add_bias(y, rows, n, b, stream_);
      if (collect && want_out_[lin]) f32::exact::row_sumsq(y, rows, n, b, out_part_[lin].p + r0, stream_);
      return;
    }
    f32::sgemm_xwT(cublas_, x, rows, layer_.k[lin], layer_.w32[lin].p, layer_.n[lin], y);
    if (collect && want_out_[lin])
      f32::out_sumsq(y, rows, layer_.n[lin], kOutBlocks, out_part_[lin].p + (size_t)chunk_index_ * kOutBlocks, stream_);
    if (layer_.has_bias[lin]) f32::add_bias(y, rows, layer_.n[lin], layer_.b[lin].p, stream_);
  };
  f32::ObserveFn observe;
  if (collect) observe = [&](int input, const float* x, int rows, int) { stats32(acc_[input], x, rows, r0); };
  f32::forward_chunk(h, nw, dims32(), layer_.attn_norm.p, layer_.mlp_norm.p, linear, observe, s32_, cublas_, stream_);
  const size_t n = (size_t)nw * seq_ * cfg_.hidden;
  nonfinite_kernel<<<grid_for(n), 256, 0, stream_>>>(h, n, bad_.p);
  CC(cudaGetLastError());
  if (stream16_ && h != hc_.p) store_chunk16(h, n);  // advanced in place (not collect's copy)
}

// calib.Pass streamChunk.store at 16 bits: when every |x| < 65504, each value rounded to fp16
// (round to nearest even, subnormals kept) and back; else the chunk stays float32. The
// decision is made on the device (no host sync).
void Server::store_chunk16(float* h, size_t n) {
  if (!maxbits_.p) maxbits_.alloc(1);
  CC(cudaMemsetAsync(maxbits_.p, 0, 4, stream_));
  absmax_bits_kernel<<<grid_for(n), 256, 0, stream_>>>(h, n, maxbits_.p);
  round16_kernel<<<grid_for(n), 256, 0, stream_>>>(h, n, maxbits_.p);
  CC(cudaGetLastError());
}

// ------------------------------------------------------------------ advance_quantized
//
// The layer file's linears run as the executor runs an artifact layer in prefill
// (executor.cu run_layers, norm_into, run_site): add_rmsnorm writes each distinct activation
// form of a site (fp16, or int8 codes with the static or per-token scale, rows padded to Kp
// with zeros), the attention output is quantized for o_proj (the executor's quantize_rows
// arithmetic: ody_quantize_act_*, the same clamp(roundEven(x/s)) and max|row|/127 scale, on
// the zero-padded Kp_o row), SwiGLU writes down_proj's form, and the GEMMs are ody_w4a8_gemm,
// ody_w4a16_gemm (float group scales converted at load by the executor's w4a16_int_scales) and
// cuBLAS fp16 for skipped linears (fp16 bias as the C operand). Differences from the executor,
// none of them arithmetic: each linear is its own GEMM (the executor fuses q/k/v and gate/up
// when they share a form; the W4A8 kernels are bit-exact against the Go reference in every
// tile configuration, so the columns are the same), and the down_proj output is added to the
// stream at the end of the layer (the executor adds it in the next layer's norm: the same
// fp32 addition).

void Server::load_quant_layer(int i, const std::string& path) {
  SafetensorsCheckpoint ck = SafetensorsCheckpoint::open_file(path);
  const LayerPlan lp = exec::plan_layer(ck, cfg_, i, /*artifact=*/true);
  for (const exec::LinearPlan& l : lp.lin) exec::validate_quantized(l, ck);  // what the executor's loader checks
  // One layer on the GPU at a time: the float layer (collect's) goes first.
  for (int l = 0; l < exec::kNumLinears; l++) {
    layer_.w[l].release();
    layer_.w32[l].release();
    layer_.b[l].release();
  }
  loaded_ = -1;
  const int H = cfg_.hidden;
  auto norm = [&](Dev<float>& d, const std::string& name) {
    std::vector<float> v = exec::to_f32(ck, name, {H});
    d.alloc(v.size());
    CC(cudaMemcpy(d.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  };
  norm(ql_.attn_norm, lp.attn_norm);
  norm(ql_.mlp_norm, lp.mlp_norm);
  if (fp32_) {
    load_quant_layer32(ck, lp);
    return;
  }
  const int site_lins[4][3] = {{exec::kQ, exec::kK, exec::kV}, {exec::kO, 0, 0}, {exec::kGate, exec::kUp, 0}, {exec::kDown, 0, 0}};
  const int site_n[4] = {3, 1, 2, 1};
  const int site_k[4] = {H, cfg_.heads * cfg_.head_dim, H, cfg_.intermediate};
  for (int si = 0; si < 4; si++) {
    QSite& st = ql_.site[si];
    st.nlins = site_n[si];
    st.nforms = 0;
    st.kp = ceil_to(site_k[si], 128);
    for (int j = 0; j < st.nlins; j++) {
      const int li = site_lins[si][j];
      st.lins[j] = li;
      const exec::LinearPlan& l = lp.lin[li];
      int f = -1;
      for (int x = 0; x < st.nforms; x++)
        if (st.forms[x].kind == l.act &&
            (l.act != exec::ActForm::I8Static || std::memcmp(&st.forms[x].scale, &l.act_scale, 4) == 0))
          f = x;
      if (f < 0) {
        f = st.nforms++;
        st.forms[f].kind = l.act;
        st.forms[f].scale = l.act_scale;
        if (l.act == exec::ActForm::I8Static) {
          st.forms[f].d_scale.alloc(1);
          CC(cudaMemcpy(st.forms[f].d_scale.p, &l.act_scale, 4, cudaMemcpyHostToDevice));
        }
      }
      QLinear& q = ql_.lin[li];
      q.fmt = l.format;
      q.n = l.n;
      q.np = ceil_to(l.n, 8);
      q.k = l.k;
      q.kp = l.format == exec::WeightFormat::Dense16 ? l.k : l.kp;
      q.group_size = l.group_size;
      q.int_scales = l.int_scales;
      q.form = f;
      q.qw.release();
      q.gs.release();
      q.cs.release();
      q.bias.release();
      q.w16.release();
      q.bias16.release();
      if (l.format == exec::WeightFormat::Dense16) {
        // fp16 [np, k], rows past n zero (as the executor pads them).
        exec::HalfData hd = exec::to_f16(ck, l.name + ".weight", {l.n, l.k});
        ensure_zeroed(q.w16, (size_t)q.np * l.k);
        CC(cudaMemcpy(q.w16.p, hd.data, hd.size * 2, cudaMemcpyHostToDevice));
        if (l.has_bias) {
          std::vector<float> b = exec::to_f32(ck, l.name + ".bias", {l.n});
          std::vector<uint16_t> b16((size_t)q.np, 0);
          for (int c = 0; c < l.n; c++) {
            b16[(size_t)c] = exec::float_to_half_bits(b[(size_t)c]);
            if ((b16[(size_t)c] & 0x7c00) == 0x7c00 && std::isfinite(b[(size_t)c]))
              ck.file_of(l.name + ".bias").fail_tensor(l.name + ".bias", "value beyond fp16's range");
          }
          q.bias16.alloc(b16.size());
          CC(cudaMemcpy(q.bias16.p, b16.data(), b16.size() * 2, cudaMemcpyHostToDevice));
        }
        continue;
      }
      const int G = l.groups, np = l.np;
      const bool convert = l.format == exec::WeightFormat::W4A16 && !l.int_scales;
      const size_t esz = (l.int_scales || convert) ? 2 : 4;
      const TensorInfo& tq = ck.get(l.name + ".qweight");
      q.qw.alloc(tq.nbytes);
      CC(cudaMemcpy(q.qw.p, ck.data(tq), tq.nbytes, cudaMemcpyHostToDevice));
      const void* gsrc = ck.data(ck.get(l.name + ".group_scale"));
      const void* csrc = ck.data(ck.get(l.name + ".channel_scale"));
      std::vector<float> gf, cf;
      std::vector<int16_t> gi;
      if (convert) {
        gf.resize((size_t)G * np);
        std::memcpy(gf.data(), gsrc, gf.size() * 4);
        gi.resize(gf.size());
        cf.resize((size_t)np);
        exec::w4a16_int_scales(gf.data(), G, l.n, np, gi.data(), cf.data());
        gsrc = gi.data();
        csrc = cf.data();
      }
      q.gs.alloc((size_t)G * np * esz);
      CC(cudaMemcpy(q.gs.p, gsrc, (size_t)G * np * esz, cudaMemcpyHostToDevice));
      q.cs.alloc((size_t)np);
      CC(cudaMemcpy(q.cs.p, csrc, (size_t)np * 4, cudaMemcpyHostToDevice));
      if (l.has_bias) {
        std::vector<float> b = exec::to_f32(ck, l.name + ".bias", {l.n});
        q.bias.alloc(b.size());
        CC(cudaMemcpy(q.bias.p, b.data(), b.size() * 4, cudaMemcpyHostToDevice));
      }
    }
  }
  // Chunk scratch for this layer's forms, and the split-K workspace its GEMMs need.
  const int wc = std::max(1, std::min(windows_, chunk_rows_ / seq_));
  const size_t rc = (size_t)wc * seq_;
  size_t ws = 0;
  for (int si = 0; si < 4; si++) {
    const QSite& st = ql_.site[si];
    for (int f = 0; f < st.nforms; f++) {
      const exec::ActForm k = st.forms[f].kind;
      if (k == exec::ActForm::F16) {
        if (si != 1) ensure_zeroed(qf16_[si][f], rc * st.kp);  // o_proj's fp16 input is the attention output
      } else {
        ensure_zeroed(qi8_[si][f], rc * st.kp);
        if (k == exec::ActForm::I8PerToken) ensure_zeroed(qtok_[si][f], rc);
      }
    }
    for (int j = 0; j < st.nlins; j++) {
      const QLinear& q = ql_.lin[st.lins[j]];
      const bool per_token = st.forms[q.form].kind == exec::ActForm::I8PerToken;
      // Every row count the chunks will run: full chunks and the last one.
      for (int nw : {wc, windows_ % wc}) {
        if (nw == 0) continue;
        const int rows = nw * seq_;
        if (q.fmt == exec::WeightFormat::W4A8) {
          ody_w4a8_problem p{rows, q.np, q.kp, q.group_size, per_token, q.int_scales ? ODY_SCALE_INT : ODY_SCALE_FLOAT, -1, 0};
          ws = std::max(ws, ody_w4a8_workspace_size(&p));
        } else if (q.fmt == exec::WeightFormat::W4A16) {
          ody_w4a16_problem p{rows, q.np, q.kp, q.group_size, -1, 0};
          ws = std::max(ws, ody_w4a16_workspace_size(&p));
        }
      }
    }
  }
  ensure_zeroed(qatt_, rc * (size_t)ql_.site[1].kp);
  if (ws > gemm_ws_.n) {
    gemm_ws_.release();
    ensure_zeroed(gemm_ws_, ws);  // zeroed once; the kernels leave it zeroed
  }
}

layers::ActOut Server::q_act_out(int si, int f) {
  const QSite& st = ql_.site[si];
  layers::ActOut o;
  o.ld = st.kp;
  switch (st.forms[f].kind) {
    case exec::ActForm::F16:
      o.kind = layers::ActKind::F16;
      o.f16 = qf16_[si][f].p;
      break;
    case exec::ActForm::I8Static:
      o.kind = layers::ActKind::I8Static;
      o.i8 = qi8_[si][f].p;
      o.static_scale = st.forms[f].d_scale.p;
      break;
    case exec::ActForm::I8PerToken:
      o.kind = layers::ActKind::I8PerToken;
      o.i8 = qi8_[si][f].p;
      o.token_scale = qtok_[si][f].p;
      break;
  }
  return o;
}

// executor.cu norm_into: at most two forms per add_rmsnorm; the first call adds the delta.
void Server::q_norm_into(float* h, const __half* delta, int ld_delta, const float* w, int rows, int si) {
  const float eps = (float)cfg_.rms_norm_eps;
  const int nf = ql_.site[si].nforms;
  for (int f0 = 0; f0 < nf; f0 += 2) {
    layers::ActOut outs[2];
    const int n = std::min(2, nf - f0);
    for (int j = 0; j < n; j++) outs[j] = q_act_out(si, f0 + j);
    CC(layers::add_rmsnorm(h, f0 == 0 ? delta : nullptr, ld_delta, w, eps, rows, cfg_.hidden, outs, n, stream_));
  }
}

__half* Server::out_of(int lin) {
  switch (lin) {
    case exec::kQ: return q_.p;
    case exec::kK: return k_.p;
    case exec::kV: return v_.p;
    case exec::kO: return yo_.p;
    case exec::kGate: return g_.p;
    case exec::kUp: return u_.p;
    default: return yd_.p;
  }
}

void ody_call(ody_status s, const char* what) {
  if (s != ODY_OK) throw std::runtime_error(std::string(what) + ": " + ody_last_error());
}

// executor.cu run_site for one linear: y [rows, Np] (row stride Np) into out_of(lin).
void Server::q_gemm(int lin, int rows, const __half* f16_input, int f16_ld) {
  const QLinear& q = ql_.lin[lin];
  const int si = lin <= exec::kV ? 0 : lin == exec::kO ? 1 : lin == exec::kDown ? 3 : 2;
  const QSite& st = ql_.site[si];
  const QForm& form = st.forms[q.form];
  __half* y = out_of(lin);
  switch (q.fmt) {
    case exec::WeightFormat::Dense16: {
      const __half* x = f16_input ? f16_input : qf16_[si][q.form].p;
      const int ldx = f16_input ? f16_ld : st.kp;
      float alpha = 1.0f, beta = 0.0f;
      if (q.bias16.p) {
        bias_rows_kernel<<<grid_for((size_t)rows * q.np), 256, 0, stream_>>>(y, rows, q.np, q.bias16.p);
        CC(cudaGetLastError());
        beta = 1.0f;
      }
      CB(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, q.np, rows, q.k, &alpha, q.w16.p, CUDA_R_16F, q.k, x, CUDA_R_16F,
                      ldx, &beta, y, CUDA_R_16F, q.np, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      break;
    }
    case exec::WeightFormat::W4A8: {
      const bool per_token = form.kind == exec::ActForm::I8PerToken;
      ody_w4a8_problem p{rows, q.np, q.kp, q.group_size, per_token, q.int_scales ? ODY_SCALE_INT : ODY_SCALE_FLOAT, -1, 0};
      ody_w4a8_args a{};
      a.x = qi8_[si][q.form].p;
      a.x_scale = per_token ? qtok_[si][q.form].p : form.d_scale.p;
      a.qweight = q.qw.p;
      a.group_scale = q.gs.p;
      a.channel_scale = q.cs.p;
      a.bias = q.bias.p;
      a.y = y;
      a.workspace = gemm_ws_.p;
      a.workspace_bytes = gemm_ws_.n;
      ody_call(ody_w4a8_gemm(&p, &a, stream_), "ody_w4a8_gemm");
      break;
    }
    case exec::WeightFormat::W4A16: {
      ody_w4a16_problem p{rows, q.np, q.kp, q.group_size, -1, 0};
      ody_w4a16_args a{};
      a.x = f16_input ? static_cast<const void*>(f16_input) : static_cast<const void*>(qf16_[si][q.form].p);
      a.qweight = q.qw.p;
      a.group_scale = reinterpret_cast<const int16_t*>(q.gs.p);
      a.channel_scale = q.cs.p;
      a.bias = q.bias.p;
      a.y = y;
      a.workspace = gemm_ws_.p;
      a.workspace_bytes = gemm_ws_.n;
      ody_call(ody_w4a16_gemm(&p, &a, stream_), "ody_w4a16_gemm");
      break;
    }
  }
}

// One chunk of nw windows through the quantized layer, h in place (executor.cu run_layers,
// prefill, for one layer, then the residual add of its down_proj output).
void Server::q_forward_chunk(float* h, int rows, int nw) {
  const ModelConfig& c = cfg_;
  const int H = c.hidden;
  const float eps = (float)c.rms_norm_eps;
  q_norm_into(h, nullptr, 0, ql_.attn_norm.p, rows, 0);
  for (int lin : {exec::kQ, exec::kK, exec::kV}) q_gemm(lin, rows, nullptr, 0);
  const int ld_q = ql_.lin[exec::kQ].np, ld_k = ql_.lin[exec::kK].np;
  if (ld_k != ql_.lin[exec::kV].np) throw std::logic_error("k and v outputs with different row strides");
  CC(layers::rope(q_.p, ld_q, k_.p, ld_k, rows, c.heads, c.kv_heads, c.head_dim, pos_.p, inv_freq_.p, stream_));
  const int ld_att = ql_.site[1].kp;
  CC(layers::attention_prefill(q_.p, ld_q, k_.p, v_.p, ld_k, qatt_.p, ld_att, nw, seq_, c.heads, c.kv_heads, c.head_dim,
                               (float)(1.0 / std::sqrt((double)c.head_dim)), c.sliding_window, attn_ws_.p, attn_ws_bytes_,
                               stream_));
  // o_proj's input: the attention output, quantized when o_proj takes int8 (the padding
  // columns [qd, Kp_o) are zero: they change no row maximum and quantize to 0).
  const QForm& of = ql_.site[1].forms[0];
  if (of.kind == exec::ActForm::I8Static)
    ody_call(ody_quantize_act_per_tensor(qatt_.p, rows, ld_att, of.d_scale.p, qi8_[1][0].p, stream_),
             "ody_quantize_act_per_tensor");
  else if (of.kind == exec::ActForm::I8PerToken)
    ody_call(ody_quantize_act_per_token(qatt_.p, rows, ld_att, qi8_[1][0].p, qtok_[1][0].p, stream_),
             "ody_quantize_act_per_token");
  q_gemm(exec::kO, rows, of.kind == exec::ActForm::F16 ? qatt_.p : nullptr, ld_att);
  q_norm_into(h, yo_.p, ql_.lin[exec::kO].np, ql_.mlp_norm.p, rows, 2);
  q_gemm(exec::kGate, rows, nullptr, 0);
  q_gemm(exec::kUp, rows, nullptr, 0);
  const int ld_g = ql_.lin[exec::kGate].np;
  if (ld_g != ql_.lin[exec::kUp].np) throw std::logic_error("gate and up outputs with different row strides");
  CC(layers::swiglu(g_.p, u_.p, ld_g, rows, c.intermediate, q_act_out(3, 0), stream_));
  q_gemm(exec::kDown, rows, nullptr, 0);
  CC(layers::add_rmsnorm(h, yd_.p, ql_.lin[exec::kDown].np, ql_.mlp_norm.p, eps, rows, H, nullptr, 0, stream_));
  nonfinite_kernel<<<grid_for((size_t)rows * H), 256, 0, stream_>>>(h, (size_t)rows * H, bad_.p);
  CC(cudaGetLastError());
}

void Server::cmd_advance_quantized(const Json& c, JsonWriter& w) {
  if (!rows_) throw BadRequest("init first");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t i = member(c, "layer").as_int64();
  if (i != next_) throw BadRequest("layer " + std::to_string(i) + ", but the stream has reached layer " + std::to_string(next_));
  if (i >= cfg_.layers) throw BadRequest("layer " + std::to_string(i) + " of " + std::to_string(cfg_.layers));
  const std::string path = member(c, "tensors").as_string();
  load_quant_layer((int)i, path);
  const int H = cfg_.hidden;
  const int wc = std::max(1, std::min(windows_, chunk_rows_ / seq_));
  const int chunks = (windows_ + wc - 1) / wc;
  // In place, as advance runs: a non-finite output is a fatal error (the server answers and
  // exits), so a stream that failed the check is never used again.
  CC(cudaMemsetAsync(bad_.p, 0, 4, stream_));
  for (int ci = 0; ci < chunks; ci++) {
    const int w0 = ci * wc, nw = std::min(wc, windows_ - w0);
    float* h = h_.p + (size_t)w0 * seq_ * H;
    if (fp32_) {
      f32::LinearFn linear = [&](int lin, const float* x, int rows, float* y) { q_linear32(lin, x, rows, y); };
      f32::forward_chunk(h, nw, dims32(), ql_.attn_norm.p, ql_.mlp_norm.p, linear, nullptr, s32_, cublas_, stream_);
      const size_t n = (size_t)nw * seq_ * H;
      nonfinite_kernel<<<grid_for(n), 256, 0, stream_>>>(h, n, bad_.p);
      CC(cudaGetLastError());
      if (stream16_) store_chunk16(h, n);
    } else {
      q_forward_chunk(h, nw * seq_, nw);
    }
    std::fprintf(stderr, "progress %d %d\n", ci + 1, chunks);
  }
  CC(cudaStreamSynchronize(stream_));
  int bad = 0;
  CC(cudaMemcpy(&bad, bad_.p, 4, cudaMemcpyDeviceToHost));
  if (bad) throw std::runtime_error("layer " + std::to_string(i) + ": the quantized layer's output is not finite (NaN or Inf)");
  next_++;
  w.field("seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// The layer file's linears as fp32 operands (QLinear32). The file was planned and validated by
// load_quant_layer (the executor's checks), so shapes and dtypes are the plan's.
void Server::load_quant_layer32(const SafetensorsCheckpoint& ck, const LayerPlan& lp) {
  for (int li = 0; li < exec::kNumLinears; li++) {
    const exec::LinearPlan& l = lp.lin[li];
    QLinear32& q = ql32_[li];
    q.kind = QLinear32::DenseW;
    q.per_token = false;
    q.group_size = q.groups = 0;
    q.f.release();
    q.gsI.release();
    q.gsT.release();
    q.scale.release();
    q.bias.release();
    q.n = l.n;
    q.k = l.k;
    q.w.alloc((size_t)l.n * l.k);
    if (l.has_bias) {
      std::vector<float> b = exec::to_f32(ck, l.name + ".bias", {l.n});
      q.bias.alloc(b.size());
      CC(cudaMemcpy(q.bias.p, b.data(), b.size() * 4, cudaMemcpyHostToDevice));
    }
    if (l.format == exec::WeightFormat::Dense16) {
      // exact: a skipped linear's CPU module keeps the checkpoint's float32 weight; the layer
      // file holds it in fp16, so read it from the checkpoint (same name) when it is there.
      const bool from_ckpt = exact_ && ck_->find(l.name + ".weight") != nullptr;
      std::vector<float> wf = exec::to_f32(from_ckpt ? *ck_ : ck, l.name + ".weight", {l.n, l.k});
      CC(cudaMemcpy(q.w.p, wf.data(), wf.size() * 4, cudaMemcpyHostToDevice));
      continue;
    }
    if (l.format != exec::WeightFormat::W4A8 && l.format != exec::WeightFormat::W4A16)
      throw std::runtime_error(l.name + ": this weight format has no fp32 propagation; run with --precision fp16 "
                                        "(ODYSSEY_CALIB_PRECISION=fp16)");
    const int G = l.groups, np = l.np;
    const TensorInfo& tq = ck.get(l.name + ".qweight");
    Dev<uint8_t> qw(tq.nbytes);
    CC(cudaMemcpy(qw.p, ck.data(tq), tq.nbytes, cudaMemcpyHostToDevice));
    const size_t esz = l.int_scales ? 2 : 4;
    Dev<uint8_t> gs((size_t)G * np * esz);
    CC(cudaMemcpy(gs.p, ck.data(ck.get(l.name + ".group_scale")), (size_t)G * np * esz, cudaMemcpyHostToDevice));
    Dev<float> cs((size_t)np);
    CC(cudaMemcpy(cs.p, ck.data(ck.get(l.name + ".channel_scale")), (size_t)np * 4, cudaMemcpyHostToDevice));
    q.group_size = l.group_size;
    q.groups = (l.k + l.group_size - 1) / l.group_size;
    if (l.format == exec::WeightFormat::W4A16) {
      if (l.int_scales)
        f32::w4_int_dequant(qw.p, reinterpret_cast<const short*>(gs.p), cs.p, nullptr, l.n, np, l.k, l.kp, l.group_size,
                            q.w.p, stream_);
      else
        f32::w4_float_weight(qw.p, reinterpret_cast<const float*>(gs.p), l.n, np, l.k, l.kp, l.group_size, q.w.p,
                             stream_);
    } else {
      q.per_token = l.act == exec::ActForm::I8PerToken;
      if (!q.per_token) {
        q.scale.alloc(1);
        CC(cudaMemcpy(q.scale.p, &l.act_scale, 4, cudaMemcpyHostToDevice));
      }
      if (l.int_scales) {
        // quant.QLinear's integer arithmetic: per group an exact Σ x·q, acc += ŝ·P in int32.
        // (One SGEMM of the codes against ŝ·16q, as before, rounds once |16·acc| ≥ 2²⁴, which
        // per-token inputs reach: small-llama-outliers' exact artifacts differed from layer 1.)
        q.kind = QLinear32::W4A8Int;
        f32::w4_codes(qw.p, l.n, l.k, l.kp, q.w.p, stream_);
        q.gsI.alloc((size_t)G * np);
        CC(cudaMemcpyAsync(q.gsI.p, gs.p, (size_t)G * np * 2, cudaMemcpyDeviceToDevice, stream_));
        q.f.alloc((size_t)np);
        CC(cudaMemcpyAsync(q.f.p, cs.p, (size_t)np * 4, cudaMemcpyDeviceToDevice, stream_));
      } else {
        q.kind = QLinear32::W4A8Float;
        f32::w4_codes(qw.p, l.n, l.k, l.kp, q.w.p, stream_);
        q.gsT.alloc((size_t)G * np);
        CC(cudaMemcpyAsync(q.gsT.p, gs.p, (size_t)G * np * 4, cudaMemcpyDeviceToDevice, stream_));
      }
    }
    CC(cudaStreamSynchronize(stream_));  // qw, gs, cs are freed on return
  }
}

// y [rows, n] = the quantized linear lin of x [rows, k], as the CPU's fake-quant module.
void Server::q_linear32(int lin, const float* x, int rows, float* y) {
  const QLinear32& q = ql32_[lin];
  switch (q.kind) {
    case QLinear32::DenseW:
      xwT32(x, q.k, rows, q.k, q.w.p, q.k, q.n, y);
      if (q.bias.p) f32::add_bias(y, rows, q.n, q.bias.p, stream_);
      return;
    case QLinear32::W4A8Int: {
      // quant.QLinear (engine.tile): per group, chunks of at most 16384 channels (exactChunk).
      f32::quantize_act(x, rows, q.k, q.per_token ? nullptr : q.scale.p, qcodes32_.p, qrow32_.p, stream_);
      constexpr int kExactChunk = 16384;
      int32_t* acc = reinterpret_cast<int32_t*>(qacc32_.p);
      // Unless ODYSSEY_W4A8_INT_FUSED=0: the whole group loop in one launch, the same int32 acc bit for
      // bit (the integer products are exact in any order; exact_sgemm2.cuh int_linear_kernel).
      const bool fused = f32::exact::int_linear_fused_enabled() &&
                         f32::exact::int_linear_fused(rows, q.n, q.k, q.group_size, qcodes32_.p, q.k, q.w.p, q.k,
                                                      q.gsI.p, ceil_to(q.n, 8), acc, q.n, stream_);
      if (!fused && q.group_size > kExactChunk) qpg32_.alloc(qacc32_.n);
      for (int g = 0; !fused && g < q.groups; g++) {
        const int k0 = g * q.group_size, kg = std::min(q.group_size, q.k - k0);
        for (int j0 = k0; j0 < k0 + kg; j0 += kExactChunk) {
          const int kw = std::min(kExactChunk, k0 + kg - j0);
          xwT32(qcodes32_.p + j0, q.k, rows, kw, q.w.p + j0, q.k, q.n, qtmp32_.p);
          f32::int_group_step(acc, qpg32_.p, qtmp32_.p, rows, q.n, q.gsI.p + (size_t)g * ceil_to(q.n, 8), j0 == k0,
                              j0 + kw == k0 + kg, g == 0, stream_);
        }
      }
      f32::w4a8_int_epilogue(y, acc, rows, q.n, q.per_token ? nullptr : q.scale.p, qrow32_.p, q.f.p, q.bias.p,
                             stream_);
      return;
    }
    case QLinear32::W4A8Float:
      f32::quantize_act(x, rows, q.k, q.per_token ? nullptr : q.scale.p, qcodes32_.p, qrow32_.p, stream_);
      for (int g = 0; g < q.groups; g++) {
        const int k0 = g * q.group_size, kg = std::min(q.group_size, q.k - k0);
        xwT32(qcodes32_.p + k0, q.k, rows, kg, q.w.p + k0, q.k, q.n, qtmp32_.p);
        f32::group_accumulate(qacc32_.p, qtmp32_.p, rows, q.n, q.gsT.p + (size_t)g * ceil_to(q.n, 8), g == 0, stream_);
      }
      f32::float_scale_epilogue(y, qacc32_.p, rows, q.n, q.per_token ? nullptr : q.scale.p, qrow32_.p, q.bias.p,
                                stream_);
      return;
  }
}

void Server::cmd_hidden(const Json& c, JsonWriter& w) {
  if (!rows_) throw BadRequest("init first");
  const std::string out = member(c, "out").as_string();
  const size_t n = rows_ * cfg_.hidden;
  std::vector<float> h(n);
  CC(cudaMemcpy(h.data(), h_.p, n * 4, cudaMemcpyDeviceToHost));
  std::FILE* f = std::fopen(out.c_str(), "wb");
  if (!f) throw std::runtime_error(out + ": cannot create");
  const bool ok = std::fwrite(h.data(), 4, n, f) == n;
  if (std::fclose(f) != 0 || !ok) throw std::runtime_error(out + ": write failed");
  w.field("bytes", (unsigned long long)(n * 4));
}

int Server::serve(std::istream& in) {
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    JsonWriter w;
    w.begin_object();
    std::string cmd;
    try {
      Json c;
      try {
        c = parse_json(line);
        cmd = member(c, "cmd").as_string();
      } catch (const JsonError& e) {
        throw BadRequest(std::string("not a command: ") + e.what());
      }
      if (cmd == "quit") {
        w.field("ok", true).end_object();
        std::cout << w.str() << std::endl;
        return 0;
      }
      w.field("ok", true);
      if (cmd == "init") {
        cmd_init(c, w);
      } else if (cmd == "collect") {
        cmd_collect(c, w, true);
      } else if (cmd == "advance") {
        cmd_collect(c, w, false);
      } else if (cmd == "hidden") {
        cmd_hidden(c, w);
      } else if (cmd == "advance_quantized") {
        cmd_advance_quantized(c, w);
      } else {
        throw BadRequest("unknown command \"" + cmd + "\"");
      }
      w.end_object();
      std::cout << w.str() << std::endl;
    } catch (const BadRequest& e) {
      JsonWriter f;
      f.begin_object().field("ok", false).field("fatal", false).field("error", std::string(e.what())).end_object();
      std::cout << f.str() << std::endl;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "odyssey-rt calib: %s: %s\n", cmd.c_str(), e.what());
      JsonWriter f;
      f.begin_object().field("ok", false).field("fatal", true).field("error", std::string(e.what())).end_object();
      std::cout << f.str() << std::endl;
      return 1;
    }
  }
  return 0;  // EOF: the client is gone
}

}  // namespace

int run_calib_server(const std::string& model, const std::string& dir, int chunk_rows, const std::string& precision) {
  if (chunk_rows <= 0) throw std::runtime_error("--chunk-rows must be positive");
  if (precision != "fp32" && precision != "fp16" && precision != "exact")
    throw std::runtime_error("--precision " + precision + ": want fp32, fp16 or exact");
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    throw std::runtime_error(std::string("no CUDA device: ") + (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices"));
  (void)dir;  // the client names every file it wants written; dir is where they live
  Server s(model, dir, chunk_rows, precision == "fp32", precision == "exact");
  s.greet();
  return s.serve(std::cin);
}

}  // namespace odyssey::calibgpu
