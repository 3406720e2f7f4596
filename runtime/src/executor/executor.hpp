// executor.hpp: the GPU model executor (docs/executor.md): loads an Odyssey artifact or a
// Hugging Face fp16/bf16/fp32 checkpoint onto the GPU and runs the LLaMA-family forward pass:
// prefill over batches of windows for perplexity, and prefill + CUDA-graph decode steps with
// an fp16 KV cache for the speed measurement.
//
// What runs (executor.cu for the why of each choice):
//   - the residual stream is fp32; each RMSNorm is fused with the residual add before it and
//     with the activation quantization its consumers ask for (layers.hpp);
//   - q/k/v and gate/up run as ONE GEMM each when their kernels, activation forms and scale
//     layouts agree (weights concatenated along N at load, each part padded to Np = ⌈N/8⌉·8);
//   - quantized linears through ody_w4a8_gemm (policies 0/1/2) or ody_w4a16_gemm (policy 3),
//     the rest (skipped linears, the FP16 baseline, the LM head) through cuBLAS fp16 with fp32
//     accumulation; the LM head writes fp32 logits, in row chunks of at most 256 MiB;
//   - decode steps (embedding → layers → head → argmax → positions + 1) are captured once per
//     batch size as a CUDA graph and replayed.
//   - compressed-tensors int-quantized linears (w8a8-smoothquant) through ody_w8a8_gemm.
//   - the KV cache is fp16, or int8 codes with one fp16 scale per token × kv head
//     (set_kv_cache_int8, kv8.hpp): prefill then fake-quantizes k/v as decode will read them.
// Not built: the compressed-tensors W4A8 (pack-quantized) path.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "executor/model_plan.hpp"
#include "executor/tp_comm.hpp"

namespace odyssey::exec {

// Tensor parallelism (issue 11, part 2; tp_plan.hpp for the split): this executor is rank
// `rank` of `tp`. It loads only its shard of every linear (q/k/v/gate/up rows, o/down input
// columns), runs attention over its heads, and all-reduces o_proj's and down_proj's partial
// outputs through comm (which must outlive it) before each residual add; embedding, norms and
// the LM head are replicated, so every rank computes the same logits. No comm: no split; a comm
// with tp = 1 (a world of one) runs the split path with whole shards, all-reduces included.
struct TpOptions {
  int tp = 1;
  int rank = 0;
  TpComm* comm = nullptr;
};

class Executor {
 public:
  // Opens dir (config.json + safetensors), checks everything on the host, then uploads the
  // weights to the current device. Throws std::runtime_error / FormatError with the reason
  // (std::invalid_argument for a tp that does not fit the model).
  static std::unique_ptr<Executor> load(const std::string& dir, const TpOptions& tp = TpOptions{});
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  const ModelPlan& plan() const;
  cudaStream_t stream() const;

  // Perplexity: ids [batch·L] (host, each window run alone from position 0, already checked
  // against the vocabulary); nll_out[w] = Σ_{t=1..L-1} NLL of token t given its prefix (fp32
  // per token, summed in fp64 in position order). Throws on a non-finite NLL.
  void score_windows(const std::int32_t* ids, int batch, int seq_len, double* nll_out);

  // KV cache format for what follows (default fp16): int8 codes + fp16 scale per token × kv
  // head (kv8.hpp). Applies to score_windows (k/v fake-quantized before the prefill attention,
  // so perplexity measures the int8 cache's cost) and to generation (releases a set-up one).
  void set_kv_cache_int8(bool on);
  bool kv_cache_int8() const;

  // Generation (speed): allocates the KV cache and buffers for `batch` sequences of
  // prompt + gen tokens and captures the decode graph (once per batch size).
  void setup_generation(int batch, int prompt, int gen);
  // Runs the prefill of ids [batch·prompt] (host, copied to the device first, outside any
  // timing the caller makes on stream()) through the first sampled token.
  void upload_prompt(const std::int32_t* ids);
  void prefill();
  // Replays the decode graph `steps` times (steps ≤ gen), starting after the prompt (the
  // first call for a batch size captures the graph first). start/stop, when given, are
  // recorded on stream() around the replays only.
  void decode(int steps, cudaEvent_t start = nullptr, cudaEvent_t stop = nullptr);
  // Per-kernel profile of decode steps: `steps` (≤ gen) eager steps after the prompt, each
  // enqueued behind a ~20 ms spin kernel so that its kernels run back to back, with a CUDA
  // event after every launch group (per layer: norm, qkv GEMM, rope+KV, attention (+ o_proj
  // quantization), o GEMM, norm, gate/up GEMM, swiglu, down GEMM; then the final norm, LM head,
  // argmax). Returns, per kind in step order, the median over steps of its µs summed over
  // the layers, and its launch groups per step. The events themselves cost about a µs each
  // and break PDL overlap; compare the sum with a graph replay's step time. Positions and
  // tokens are restored afterwards.
  struct ProfileRow {
    std::string kind;
    double us = 0;
    int groups = 0;
  };
  std::vector<ProfileRow> profile_decode(int steps);
  // The same for the prefill of the uploaded prompt (after setup_generation and upload_prompt):
  // `runs` eager prefills (one more warms up), each behind the spin kernel, an event after every
  // launch group (embed; per layer attn_norm (the norm writes the int8 inputs: quantization is
  // fused there), qkv_gemm, rope, attention, kv_append, o_quant (W4A8/W8A8: the attention
  // output's quantization, a kernel of its own in prefill), o_gemm, mlp_norm, gate_up_gemm,
  // swiglu (fused with down's quantization), down_gemm; final_norm (+ the last-row gather),
  // lm_head, argmax). Median over the runs of each kind's µs summed over the layers. Tokens are
  // restored; the KV cache is rewritten with the same values.
  std::vector<ProfileRow> profile_prefill(int runs);
  // What each linear of a layer runs at M = rows (layer 0; every layer has the same shapes): the
  // dispatch's config ("w4a8/<config>/<blocks>blocks", "cublas_fp16", ...), for the profile.
  struct GemmChoice {
    std::string site;  // qkv, o, gate_up, down
    int m = 0, n = 0, k = 0;
    std::string kernel;
  };
  std::vector<GemmChoice> gemm_choices(int rows) const;
  // The tokens sampled last (host copy, [batch]); synchronizes.
  std::vector<std::int32_t> last_tokens();
  // FNV-1a (64-bit) over every sequence's hash of the tokens generated since the last decode()
  // began (greedy, so equal hashes mean the same generated text); synchronizes.
  std::uint64_t tokens_hash();
  void release_generation();

  // Bytes a decode step reads for weights (linears, norms, the LM head; not the embedding
  // table, of which it reads `batch` rows), and KV cache bytes per token of context.
  std::uint64_t weight_bytes() const;
  std::uint64_t kv_bytes_per_token() const;
  // Peak bytes this executor has had allocated since the last reset_peak() (weights, KV cache,
  // activations, workspaces).
  std::uint64_t peak_bytes() const;
  void reset_peak();

  struct Impl;

 private:
  explicit Executor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace odyssey::exec
