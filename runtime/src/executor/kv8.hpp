// kv8.hpp: the int8 KV cache (issue 14's optional int8 KV, as FPTQ uses one): kernels in kv8.cu.
//
// Format, per layer and per K / V: codes int8 [batch, max_seq, nkv, head_dim] and scales fp16
// [batch, max_seq, nkv] (one symmetric absmax scale per token × kv head). From the fp16 value x
// the fp16 cache would hold (k after RoPE, v as the v projection wrote it), head by head:
//   amax = max_j |x_j|                       (fp32; NaN/Inf anywhere: the head is not finite)
//   s    = fp16_rn(amax / 127)               (IEEE fp32 division, then rounded to fp16)
//   code = clamp(roundEven(x_j / float(s)), −127, 127)     (IEEE fp32 division)
//   non-finite head: s = NaN (0x7E00), codes 0 (attention then yields NaN, as the fp16 cache
//   would); s == 0 (amax < 2⁻²⁴·127·½): codes 0, scale stored 0.
// Dequantized value (what attention sees): x' = fp16_rn(float(code) · float(s)), i.e. the
// IEEE fp16 product __hmul(code, s) (exact in fp32 before the one rounding: 8 × 11 bits). The
// decode kernel computes exactly these fp16 values in registers; the prefill path writes them
// over k/v before its attention (fake quantization), so `ppl --kv-cache int8` measures what
// decode would compute from the same cache. Limit: a head whose amax is below 2⁻¹⁴·127 ≈ 7.8e-3
// gets a subnormal fp16 scale (fewer significant bits); such heads contribute values below that
// to the attention output anyway.
//
// Layers and launchers follow layers.hpp's conventions (argument checks, PDL, no sync).
// Test: `odyssey-rt test layers --only kv8` (host reference in test_layers.cpp); bench:
// `odyssey-rt bench layers` rows "fast" vs "fast-kv8".
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "executor/layers.hpp"

namespace odyssey::layers {

// Prefill: quantizes each (row, kv head) of k and v [rows, ld_kv] (rows = batch·tokens, k
// already rotated) and writes the dequantized fp16 values back over k and v (fake quantization
// for the prefill attention). When kc is not null, also appends the codes and scales to the
// cache at positions start[b] + t (row b·tokens + t), as kv_append does.
cudaError_t kv8_prefill(__half* k, __half* v, int ld_kv, int8_t* kc, __half* ks, int8_t* vc, __half* vs,
                        const int32_t* start, int batch, int tokens, int max_seq, int nkv, int head_dim,
                        cudaStream_t stream);

// Decode step's rope + int8 KV append (one token per sequence): q rotated in place exactly as
// rope() does; k rotated as rope() does (rounded to fp16), then quantized into the cache at
// pos[b]; v quantized into the cache at pos[b]. head_dim even, ≤ 256.
cudaError_t rope_kv8_decode(__half* q, int ld_q, const __half* k, const __half* v, int ld_kv, int8_t* kc, __half* ks,
                            int8_t* vc, __half* vs, int batch, int max_seq, int nh, int nkv, int head_dim,
                            const int32_t* pos, const float* inv_freq, cudaStream_t stream);

// Decode attention over the int8 cache: as attention_decode (same q/out/len/window/quant
// semantics, same combine kernel), K and V dequantized in registers to the fp16 values above.
// attention_decode_kv8_kernel names the kernel it runs for these sizes with 16-byte aligned code
// caches ("mma", "simt" or "general"; ODYSSEY_KV8_ATTN=mma|simt|general forces one where it
// applies): tests label their cases with it.
const char* attention_decode_kv8_kernel(int batch, int nh, int nkv, int head_dim);
size_t attention_decode_kv8_workspace(int batch, int nh, int head_dim, int max_seq);
cudaError_t attention_decode_kv8(const __half* q, int ld_q, const int8_t* kc, const __half* ks, const int8_t* vc,
                                 const __half* vs, const int32_t* len, __half* out, int ld_out, int batch, int max_seq,
                                 int nh, int nkv, int head_dim, float scale, int window, void* workspace,
                                 size_t workspace_bytes, cudaStream_t stream, const ActOut* quant = nullptr);

}  // namespace odyssey::layers
