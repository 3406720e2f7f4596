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

/* ---------------------------------------------------------------- activation quantization
 * fp16 x[m,k] -> int8 codes: clamp(roundEven(x / s), -127, 127), IEEE division, NaN -> 0.
 * Per token: s_row = max|x_row| / 127 (1 when the row is 0), written to scales[m].
 * Static per tensor: s = *scale (device pointer, > 0).
 */
ody_status ody_quantize_act_per_token(const void* x, int m, int k, int8_t* q, float* scales, void* stream);
ody_status ody_quantize_act_per_tensor(const void* x, int m, int k, const float* scale, int8_t* q, void* stream);

#ifdef __cplusplus
}
#endif
#endif /* ODYSSEY_RT_H */
