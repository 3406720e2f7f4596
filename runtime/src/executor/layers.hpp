// layers.hpp: the executor's kernels other than the GEMMs (layers.cu): embedding, residual add
// fused with RMSNorm and activation quantization, RoPE, attention (prefill and decode over an
// fp16 KV cache), SwiGLU fused with quantization, NLL and argmax over logits.
//
// Conventions (docs/executor.md):
// - The residual stream h is fp32 [rows, hidden]. Linear outputs are fp16.
// - A kernel that feeds a linear writes an ActOut: fp16 (FP16 and W4A16 linears) or int8 codes
//   (W4A8) quantized from the fp32 value as quant.QuantizeActValue does
//   (clamp(roundEven(x / s), −127, 127), IEEE division, NaN → 0), with s static (device pointer)
//   or per token (s = max|row| / 127 as quant.ActScale/RowScale, written to token_scale[row]).
//   Int8 rows have stride ld (≥ cols, Kp for a quantized linear); the columns in [cols, ld)
//   are written 0.
// - Every launcher checks its arguments (returns cudaErrorInvalidValue on misuse), launches on
//   `stream` and returns cudaGetLastError(); nothing synchronizes.
// - Every kernel except prefill attention is launched with programmatic dependent launch
//   (pdl.cuh): it waits (griddepcontrol.wait) before its first read, so it may follow any
//   kernel; ODYSSEY_PDL=0 launches without the attribute.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace odyssey::layers {

enum class ActKind { F16 = 0, I8Static = 1, I8PerToken = 2 };

// Where a kernel that feeds a linear writes its [rows, cols] output.
struct ActOut {
  ActKind kind = ActKind::F16;
  int ld = 0;                   // row stride in elements (≥ cols)
  __half* f16 = nullptr;        // F16
  int8_t* i8 = nullptr;         // I8Static, I8PerToken
  const float* static_scale = nullptr;  // I8Static: one float on the device
  float* token_scale = nullptr;         // I8PerToken: [rows]
};

// h[r, :] = float(table[ids[r], :]). ids are checked by the caller (host side).
cudaError_t embed(const int32_t* ids, int rows, const __half* table, int hidden, float* h,
                  cudaStream_t stream);

// If delta != nullptr: h[r, :] += float(delta[r, :]) (delta row stride ld_delta), written back.
// Then y = h · rsqrt(mean(h²) + eps) · w (fp32, as model/ computes RMSNorm), written to each of
// the n_out outputs (1 or 2; two when a layer's consumers need two different forms, e.g.
// different static scales). out may be nullptr with n_out 0 (residual add only).
cudaError_t add_rmsnorm(float* h, const __half* delta, int ld_delta, const float* w, float eps,
                        int rows, int hidden, const ActOut* out, int n_out, cudaStream_t stream);

// Rotary embedding in place on q [rows, ld_q] (heads nh × head_dim from column 0) and
// k [rows, ld_k] (nkv heads), the rotate-half convention of Hugging Face LLaMA. Row r has
// position pos[r]; angle = pos · inv_freq[i] (inv_freq [head_dim/2] from the host, RoPE scaling
// already applied), cos/sin as model/rope.go computes them.
cudaError_t rope(__half* q, int ld_q, __half* k, int ld_k, int rows, int nh, int nkv,
                 int head_dim, const int32_t* pos, const float* inv_freq, cudaStream_t stream);

// Causal self-attention for `batch` independent sequences of seq tokens each (prefill): rows
// b·seq + t. q [rows, ld_q] (nh heads), k/v [rows, ld_kv] (nkv heads, GQA: head h reads kv
// head h / (nh / nkv)), out fp16 [rows, ld_out] (nh·head_dim columns). softmax(q·kᵀ·scale)
// in fp32; window > 0 limits attention to the last `window` positions (Mistral). workspace:
// attention_prefill_workspace bytes (may be 0 for a fused kernel).
size_t attention_prefill_workspace(int batch, int seq, int nh, int head_dim);
cudaError_t attention_prefill(const __half* q, int ld_q, const __half* k, const __half* v, int ld_kv,
                              __half* out, int ld_out, int batch, int seq, int nh, int nkv,
                              int head_dim, float scale, int window, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream);

// KV cache: k_cache/v_cache fp16 [batch, max_seq, nkv, head_dim] per layer. Appends `tokens`
// new rows per sequence (rows b·tokens + t of k/v, stride ld_kv) at positions
// start[b] + t.
cudaError_t kv_append(const __half* k, const __half* v, int ld_kv, __half* k_cache, __half* v_cache,
                      const int32_t* start, int batch, int tokens, int max_seq, int nkv,
                      int head_dim, cudaStream_t stream);

// Decode attention: one query token per sequence, q [batch, ld_q] (nh heads), attending to
// positions [0, len[b]) of the cache (the current token already appended); out fp16
// [batch, ld_out]. Split over the context (flash-decoding) with attention_decode_workspace
// bytes of scratch, then a combine kernel. window as in attention_prefill. Graph-capturable:
// no host reads of len, grids fixed by max_seq. quant (optional, kind I8Static or
// I8PerToken, cols nh·head_dim, ld ≥ cols): the combine also writes o_proj's int8 input from
// the fp16 output row exactly as the executor's separate quantization did (per token:
// s = max|row|/127, 1 for a zero row, NaN for a non-finite one; codes clamp(roundEven(x/s)),
// NaN → 0; columns [cols, ld) = 0). Head dims 64/128 with groups 1, 2, 4, 8 take ONE fused
// kernel (split, combine and quantization; last-block tickets); ODYSSEY_DECODE_ATTN=split forces
// the former split + combine kernel pair, =general the general kernel.
// The workspace's last bytes hold the fused kernel's counters: they must be zero before the
// first call on a buffer (attention_decode_workspace_init, or a cudaMemset of the whole
// buffer), and every call leaves them zero. workspace_bytes must be the buffer's size, the
// same on every call.
size_t attention_decode_workspace(int batch, int nh, int head_dim, int max_seq);
// Zeroes the fused kernel's counters (the last bytes of the workspace) for calls with up to
// `batch` sequences and nh heads; once after allocating the workspace.
cudaError_t attention_decode_workspace_init(void* workspace, size_t workspace_bytes, int batch, int nh,
                                            cudaStream_t stream);
// Bytes of those counters (they start at (workspace_bytes − this) rounded down to 16 bytes; for
// the tests' check that a call leaves them zero).
size_t attention_decode_counter_bytes(int batch, int nh);
cudaError_t attention_decode(const __half* q, int ld_q, const __half* k_cache, const __half* v_cache,
                             const int32_t* len, __half* out, int ld_out, int batch, int max_seq,
                             int nh, int nkv, int head_dim, float scale, int window, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream, const ActOut* quant = nullptr);

// attention_decode's combine kernel for another split kernel (executor/kv8.cu): ws_o
// [batch, nh, splits, hd] fp32 (unnormalized Σ p·v), ws_ml [batch, nh, splits, 2] (max logit
// in natural-log units, Σ p; an empty split (−inf, 0)), tickets [2·batch] zeroed by the split
// kernel; splits of `chunk` keys. quant as attention_decode's.
cudaError_t attention_decode_combine(const float* ws_o, const float* ws_ml, unsigned* tickets, const int32_t* len,
                                     __half* out, int ld_out, int batch, int max_seq, int nh, int head_dim, int splits,
                                     int chunk, const ActOut* quant, cudaStream_t stream);

// Decode step's rope + KV append in one kernel (one token per sequence, rows = batch): q
// rotated in place as rope() does, k rotated as rope() does and written to the cache at
// position pos[b] (the k input itself is left as it was), v copied to the cache at pos[b]
// (kv_append's layout). Bit-identical to rope() followed by kv_append(start = pos, tokens 1).
cudaError_t rope_kv_decode(__half* q, int ld_q, const __half* k, const __half* v, int ld_kv, __half* k_cache,
                           __half* v_cache, int batch, int max_seq, int nh, int nkv, int head_dim,
                           const int32_t* pos, const float* inv_freq, cudaStream_t stream);

// SwiGLU: y = silu(gate) · up in fp32 (silu as model/ computes it), gate/up fp16 [rows, ld_in]
// (column offsets already applied by the caller), written as `out` [rows, cols].
cudaError_t swiglu(const __half* gate, const __half* up, int ld_in, int rows, int cols,
                   const ActOut& out, cudaStream_t stream);

// int8 codes of x (fp16 [rows, ldx], cols used) into out (kind I8Static or I8PerToken, row
// stride out.ld ≥ cols): per token s = max|row|/127 (1 for a zero row, NaN for a non-finite
// one), else the static scale; q = clamp(roundEven(x / s), −127, 127), NaN → 0; columns
// [cols, ld) = 0. The prefill's o_proj input (decode quantizes inside the attention combine).
cudaError_t quantize_rows(const __half* x, int ldx, int rows, int cols, const ActOut& out, cudaStream_t stream);

// Moves each row's columns right by off (tensor parallelism: a row-parallel shard's input
// starts inside its first 128-column K block, tp_plan.hpp shard_x_offset): dst[r, c] =
// src[r, c − off] for off ≤ c < off + cols, 0 for the other c < ld_dst. esz is the element size
// (1: int8 codes, 2: fp16); off + cols ≤ ld_dst, cols ≤ ld_src; src and dst do not overlap.
cudaError_t place_columns(const void* src, int ld_src, int rows, int cols, int esz, int off, void* dst, int ld_dst,
                          cudaStream_t stream);

// nll[r] = logsumexp(logits[r, :vocab]) − logits[r, target[r]] in fp32, logits fp32
// [rows, ld]. A row whose target is < 0 gets 0 (not scored).
cudaError_t nll(const float* logits, int ld, const int32_t* target, int rows, int vocab, float* nll,
                cudaStream_t stream);

// out[r] = argmax over logits[r, :vocab] (fp32 [rows, ld]), the lowest index among equals.
cudaError_t argmax(const float* logits, int ld, int rows, int vocab, int32_t* out,
                   cudaStream_t stream);

}  // namespace odyssey::layers
