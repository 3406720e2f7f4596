/*
 * odyssey_rt.h: the narrow C ABI of Odyssey's CUDA runtime.
 *
 * Raw device pointers and a CUDA stream (passed as void* so that this header needs no CUDA
 * headers). Every entry point returns an ody_status; on failure ody_last_error() holds a message
 * for the calling thread. A launch is always preceded by the same checks can_implement makes, so
 * a problem the kernel cannot do is refused with a message and nothing is launched.
 *
 * Layouts: docs/fastgemm-layout.md (packed int4 weights, scales), docs/w4a8-numerics.md (the
 * arithmetic), docs/gemm-cases.md (how the kernels are tested against the Go reference).
 */
#ifndef ODYSSEY_RT_H
#define ODYSSEY_RT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ODY_RUNTIME_VERSION "0.1.0"
#define ODY_LAYOUT_VERSION 1

typedef enum {
  ODY_OK = 0,
  ODY_ERR_INVALID = 1,     /* bad arguments (null pointer, negative size) */
  ODY_ERR_UNSUPPORTED = 2, /* a shape, group size or alignment the kernel cannot do */
  ODY_ERR_CUDA = 3,        /* a CUDA call failed; the message names it */
  ODY_ERR_WORKSPACE = 4    /* workspace missing or too small */
} ody_status;

/* The message of the last failure on this thread ("" if none). */
const char* ody_last_error(void);
const char* ody_version(void);

/* ---------------------------------------------------------------- W4A8 FastGEMM
 * y[M,N] (fp16) = epilogue( Σ_g ŝ[g,c] · Σ_{k∈g} x[m,k]·16·q[c,k] ), see docs/w4a8-numerics.md.
 */
typedef enum {
  ODY_SCALE_INT = 0,  /* integer group scales (int16 [G, Np]) + channel_scale: the product */
  ODY_SCALE_FLOAT = 1 /* float group scales (float [G, Np]), no channel scale: the baseline */
} ody_scale_kind;

typedef struct {
  int m, n, k;         /* logical sizes; K must be a multiple of 128 */
  int group_size;      /* 32, 64, 128, or k (per-channel) */
  int act_per_token;   /* 1: x_scale has m entries; 0: one (static per-tensor) */
  int scale_kind;      /* ody_scale_kind */
  int config;          /* -1: the dispatch table picks; else an index < ody_w4a8_num_configs() */
  int splits;          /* 0: stream-K over one wave of blocks (the default); s >= 1: split-K by s */
} ody_w4a8_problem;

typedef struct {
  const int8_t* x;            /* [m, k] row-major, 16-byte aligned, codes in -127..127 */
  const float* x_scale;       /* [m] or [1] */
  const uint8_t* qweight;     /* packed, [Np/8, K/128, 32, 16] bytes, 16-byte aligned */
  const void* group_scale;    /* int16 or float [K/group_size, Np], 16-byte aligned */
  const float* channel_scale; /* [Np]; ODY_SCALE_INT only */
  const float* bias;          /* [n] or NULL */
  void* y;                    /* [m, n] fp16 */
  int32_t* acc_out;           /* optional [m, n] int32 accumulators (ODY_SCALE_INT), for tests */
  void* workspace;            /* split-K scratch: zeroed once by the caller, left zeroed by us */
  size_t workspace_bytes;
} ody_w4a8_args;

/* ODY_OK if the problem (and, when args is not NULL, its pointers) can run; else the reason. */
ody_status ody_w4a8_can_implement(const ody_w4a8_problem* p, const ody_w4a8_args* a);
/* Bytes of workspace the problem needs (0 when no split-K is used). */
size_t ody_w4a8_workspace_size(const ody_w4a8_problem* p);
ody_status ody_w4a8_gemm(const ody_w4a8_problem* p, const ody_w4a8_args* a, void* stream);

/* Kernel configurations (tile shapes), for benchmarks and tests that sweep them. */
int ody_w4a8_num_configs(void);
const char* ody_w4a8_config_name(int config);
/* The config and the grid size (blocks) the dispatch picks for a problem on the current device. */
ody_status ody_w4a8_dispatch(const ody_w4a8_problem* p, int* config, int* blocks);

/* ---------------------------------------------------------------- W4A16 (weight-only)
 * y[M,N] (fp16) = Σ_g ŝ[g,c] · Σ_{k∈g} x[m,k]·q[c,k] · 16·f_c (+ bias): fp16 activations, the same
 * packed int4 weights, integer group scales and channel scales as W4A8 (the w4a16-gptq preset's
 * artifact). x·q accumulates in fp32 on the tensor cores (mma m16n8k16), ŝ applies per group.
 */
typedef struct {
  int m, n, k;       /* K must be a multiple of 128 */
  int group_size;    /* 32, 64, 128, or k (per-channel) */
  int config;        /* -1: the dispatch picks; else an index < ody_w4a16_num_configs() */
  int splits;        /* 0: stream-K over one wave (default); s >= 1: split-K by s */
} ody_w4a16_problem;

typedef struct {
  const void* x;              /* fp16 [m, k], 16-byte aligned */
  const uint8_t* qweight;     /* packed, 16-byte aligned */
  const int16_t* group_scale; /* [K/group_size, Np], 16-byte aligned */
  const float* channel_scale; /* [Np] */
  const float* bias;          /* [n] or NULL */
  void* y;                    /* fp16 [m, n] */
  void* workspace;            /* zeroed once by the caller, left zeroed */
  size_t workspace_bytes;
} ody_w4a16_args;

ody_status ody_w4a16_can_implement(const ody_w4a16_problem* p, const ody_w4a16_args* a);
size_t ody_w4a16_workspace_size(const ody_w4a16_problem* p);
ody_status ody_w4a16_gemm(const ody_w4a16_problem* p, const ody_w4a16_args* a, void* stream);
int ody_w4a16_num_configs(void);
const char* ody_w4a16_config_name(int config);
ody_status ody_w4a16_dispatch(const ody_w4a16_problem* p, int* config, int* blocks);

/* ---------------------------------------------------------------- W8A8 (int8 weights and activations)
 * The compressed-tensors "int-quantized" linear (w8a8-smoothquant): w8a8.cu.
 *   acc[m,n] = Σ_k x[m,k]·w[n,k]  (int32, exact: |acc| ≤ 127²·K < 2^31)
 *   y[m,n]   = half_rn(float(acc)·(x_scale[m]·w_scale[n]) (+ bias[n]))
 * Two paths, bit-exact with each other: config 0 "dp4a" (decode GEMV, any M), config 1
 * "cublaslt" (cuBLASLt INT8 GEMM into an int32 workspace + the same epilogue); -1: the dispatch
 * (dp4a for M ≤ 8 or N % 4 != 0, else cuBLASLt, falling back to dp4a when it has no algorithm).
 */
typedef struct {
  int m, n, k;  /* K % 16 == 0, K ≤ 133144; cublaslt: N % 4 == 0 */
  int config;   /* -1, 0 (dp4a) or 1 (cublaslt) */
} ody_w8a8_problem;

typedef struct {
  const int8_t* x;        /* [m, k] row-major (stride k), 16-byte aligned, codes -127..127 */
  const float* x_scale;   /* [m] per-token scales */
  const int8_t* w;        /* [n, k] row-major (stride k), 16-byte aligned, codes -127..127 */
  const float* w_scale;   /* [n] per-channel scales */
  const float* bias;      /* [n] or NULL */
  void* y;                /* fp16 [m, n] */
  int32_t* acc_out;       /* optional [m, n] int32 accumulators, for tests */
  void* workspace;        /* cublaslt: ody_w8a8_workspace_size bytes, 16-byte aligned, no zeroing needed */
  size_t workspace_bytes;
} ody_w8a8_args;

ody_status ody_w8a8_can_implement(const ody_w8a8_problem* p, const ody_w8a8_args* a);
size_t ody_w8a8_workspace_size(const ody_w8a8_problem* p);
ody_status ody_w8a8_gemm(const ody_w8a8_problem* p, const ody_w8a8_args* a, void* stream);
int ody_w8a8_num_configs(void);
const char* ody_w8a8_config_name(int config);
/* The config the dispatch picks (before the cuBLASLt algorithm lookup, which may fall back). */
ody_status ody_w8a8_dispatch(const ody_w8a8_problem* p, int* config);

/* ---------------------------------------------------------------- FP16 GEMV (decode)
 * y[m,n] = Σ_k x[m,k]·W[n,k] (+ bias[n]) for 1 <= M <= ODY_F16_GEMV_MAX_M: W fp16 row-major [N, K]
 * (a checkpoint's layout), fp32 accumulation (tensor cores), y fp16 or fp32 (out_f32), one
 * rounding at the end. Launched with programmatic dependent launch (ODYSSEY_PDL=0 turns it off).
 * Any N, K; the fast path wants K and ldx multiples of 8 and x, W 16-byte aligned (else a slower
 * element-wise path runs: same results). src/gemv_f16.cu. No workspace.
 */
#define ODY_F16_GEMV_MAX_M 8
typedef struct {
  int m, n, k;
  int ldx;     /* elements between rows of x, >= k */
  int out_f32; /* 0: y is fp16 [m, n]; 1: y is float32 [m, n] */
} ody_f16_gemv_problem;

typedef struct {
  const void* x;    /* fp16 [m, ldx] */
  const void* w;    /* fp16 [n, k] row-major */
  const void* bias; /* fp16 [n] or NULL */
  void* y;          /* [m, n], contiguous */
} ody_f16_gemv_args;

/* ODY_OK if the problem (and, when args is not NULL, its pointers) can run; else the reason. */
ody_status ody_f16_gemv_can_implement(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a);
ody_status ody_f16_gemv(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a, void* stream);
/* 1 when these arguments take the 16-byte-load path (for tests and benchmarks). */
int ody_f16_gemv_vector_path(const ody_f16_gemv_problem* p, const ody_f16_gemv_args* a);

/* ---------------------------------------------------------------- activation quantization
 * fp16 x[m,k] -> int8 codes: clamp(roundEven(x / s), -127, 127), IEEE division, NaN -> 0.
 * Per token: s_row = max|x_row| / 127 (1 when the row is 0), written to scales[m].
 * Static per tensor: s = *scale (device pointer, > 0).
 */
ody_status ody_quantize_act_per_token(const void* x, int m, int k, int8_t* q, float* scales, void* stream);
ody_status ody_quantize_act_per_tensor(const void* x, int m, int k, const float* scale, int8_t* q, void* stream);


/* ---------------------------------------------------------------- Flash Communication
 * The compressed tensor-parallel all-reduce of docs/flash-communication.md (the specification:
 * codec arithmetic op by op, wire format, the two-step all-reduce), bit-exact with the Go
 * reference quant.FlashComm. A [rows, width] buffer per rank; width = ranks·C, C a multiple of
 * the group G; groups of G consecutive values along a row; fewer than 2^35 values per call. bits 4 or 8, G in {8, 16, 32, 64,
 * 128, 256}, symmetric or asymmetric. Element types: ODY_DTYPE_F16, ODY_DTYPE_BF16, ODY_DTYPE_F32
 * (16-bit inputs are widened exactly; outputs are rounded to nearest even once, at the end).
 *
 * Buffers of messages: the message of one chunk (rows × C values) is ody_fc_message_bytes bytes
 * (codes, then float32 scales, then for asymmetric groups float32 minima, as the spec's "What
 * travels"); in a buffer of several messages, message j starts at j·ody_fc_slot_bytes (the
 * message size rounded up to 16 bytes; the padding is never read).
 *
 * Out-of-domain input (NaN, ±Inf, |v| > 2^64): the group's scale and minimum are sent as NaN
 * (so every rank's output of that group is NaN: the failure propagates like a float
 * all-reduce's NaN) and ODY_FC_BAD_INPUT is or-ed into the error flag; a non-finite sum in
 * step 3 (only possible from a NaN received) or-s ODY_FC_BAD_SUM. Kernels never synchronize to
 * check the flag: the caller reads it (ody_allreduce_flags for ody_allreduce).
 */
typedef enum { ODY_DTYPE_F16 = 0, ODY_DTYPE_BF16 = 1, ODY_DTYPE_F32 = 2 } ody_dtype;
#define ODY_FC_BAD_INPUT 1
#define ODY_FC_BAD_SUM 2

/* ODY_OK if the codec and shape are supported (with a message otherwise). */
ody_status ody_fc_can_implement(size_t rows, size_t width, int ranks, int dtype, int bits, int group,
                                int symmetric);
size_t ody_fc_message_bytes(size_t rows, size_t cols, int bits, int group, int symmetric);
size_t ody_fc_slot_bytes(size_t rows, size_t cols, int bits, int group, int symmetric);

/* Step 1: quantize x [rows, width] (dtype) into `ranks` messages, message j = columns
 * [j·C, (j+1)·C), written to msgs + j·slot. err_flag: device int or NULL. x 16-byte aligned. */
ody_status ody_fc_quantize(const void* x, int dtype, size_t rows, size_t width, int ranks, int bits,
                           int group, int symmetric, void* msgs, int* err_flag, void* stream);
/* Step 3: reduce the `ranks` messages of one chunk (rows × cols) at recv + i·slot with the
 * integer-scale reduce of docs/flash-communication.md (each group's scales as integers relative to
 * their largest exponent, the sum over ranks exact in integers, one conversion to float32, plus the
 * float32 sum of the minima), requantize into one message at out. */
ody_status ody_fc_reduce(const void* recv, int ranks, size_t rows, size_t cols, int bits, int group,
                         int symmetric, void* out, int* err_flag, void* stream);
/* Step 5: decode `ranks` messages (recv + j·slot, chunk j) into y [rows, width] (dtype). With
 * residual (same dtype and shape, may equal y): y = round(float32(residual) + decoded), one
 * float32 addition (__fadd_rn), then one rounding to dtype. */
ody_status ody_fc_dequantize(const void* recv, int ranks, size_t rows, size_t width, int bits, int group,
                             int symmetric, int dtype, const void* residual, void* y, void* stream);

/* The codec kernels in use: 6 (the default: v5 with an INT4 quantize that loads each warp's next
 * tile while it encodes the current one, skips the provably idle clamp and takes 16-bit minima
 * and maxima two at a time), 5 (v4 with the reduce's
 * loads double-buffered through shared memory by cp.async, 96 KiB per block at 8 ranks, and a
 * cheaper INT4 decode), 4 (v3 with the reduce reading every rank's codes,
 * scales and minima before decoding any, for 2, 4 or 8 ranks; other counts fall back to v3),
 * 3 (grid-stride, several groups per warp, the division by a reciprocal checked against the
 * ties), 2 (the same with an IEEE division per value) or 1
 * (the first version, one thread per 8 values), all bit-exact with the spec; for A/B runs of
 * `odyssey-rt bench codec` and `test codec`. Process-wide; ODY_ERR_INVALID for another value. */
ody_status ody_fc_set_kernels(int version);
int ody_fc_kernels(void);

/* The whole all-reduce over an NCCL communicator (comm: an ncclComm_t), in place on buf
 * (count values of dtype, viewed as one row of width count: the same output values as the
 * [rows, H] view whenever G divides H/ranks, only the chunking differs). bits 16, or count
 * below the threshold (ody_allreduce_set_threshold), runs a plain ncclAllReduce(sum) in dtype.
 * Otherwise count must split into ranks chunks that G divides (ODY_ERR_UNSUPPORTED if not).
 * Steps: quantize; grouped ncclSend/ncclRecv all-to-all; reduce; ncclAllGather; dequantize. The
 * workspace is allocated on first use and grown as needed (cudaMalloc: do not let the first call
 * or a larger one happen during CUDA-graph capture). Built without ODYSSEY_WITH_NCCL it returns
 * ODY_ERR_UNSUPPORTED. Every rank must call it with the same arguments. */
ody_status ody_allreduce(void* buf, size_t count, int dtype, int bits, int group, int symmetric, void* comm,
                         void* stream);
/* The count below which ody_allreduce uses ncclAllReduce. The default is 0 (always compress when
 * the shape fits): the crossover is to be measured (odyssey-rt bench allreduce), not guessed. */
void ody_allreduce_set_threshold(size_t count);
size_t ody_allreduce_threshold(void);
/* Synchronizes stream, returns the or of the error flags raised by ody_allreduce on this device
 * since the last call into *flags, and clears them. */
ody_status ody_allreduce_flags(int* flags, void* stream);

/* The same all-reduce for `ranks` simulated ranks on one GPU, in one process: inputs[i] and
 * outputs[i] are rank i's [rows, width] buffers (dtype; outputs may equal inputs), and the
 * all-to-all and all-gather are device-to-device copies. workspace: ody_allreduce_sim_workspace_size
 * bytes, laid out as (slot = ody_fc_slot_bytes(rows, width/ranks, ...)):
 *   [0, N²·slot)        sent: rank i's message for rank j at (i·N + j)·slot   (after step 1)
 *   [N², 2N²)·slot      received: rank j's message from rank i at (N² + j·N + i)·slot
 *   [2N², 2N²+N)·slot   reduced: rank j's requantized chunk at (2N² + j)·slot (after step 3)
 *   [2N²+N, 3N²+N)·slot gathered: rank k's copy of chunk j at (2N² + N + k·N + j)·slot
 * err_flag: device int or NULL. bits 16 is not simulated (ODY_ERR_UNSUPPORTED). */
size_t ody_allreduce_sim_workspace_size(int ranks, size_t rows, size_t width, int bits, int group, int symmetric);
ody_status ody_allreduce_sim(const void* const* inputs, void* const* outputs, int ranks, size_t rows,
                             size_t width, int dtype, int bits, int group, int symmetric, void* workspace,
                             int* err_flag, void* stream);

#ifdef __cplusplus
}
#endif
#endif /* ODYSSEY_RT_H */
