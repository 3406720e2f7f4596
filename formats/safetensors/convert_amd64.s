//go:build amd64 && !purego

// Vector slice converters for amd64 (AVX2 + F16C), used by F16ToF32, BF16ToF32 and
// Float32ToF16 through convert_amd64.go when CPUID reports both; -tags purego or another
// GOARCH uses the Go code (convert.go, convert_other.go), which is the reference.
//
// What they compute, bit for bit the same as the Go code (HalfToFloat32, Float32ToHalf):
//
//   - f16ToF32F16C: binary16 to float32 with VCVTPH2PS, 32 halves per iteration (then 8).
//     The conversion is exact for every half, subnormals, ±0 and ±Inf included, and keeps
//     NaN payloads, but the hardware quiets signalling NaNs (0x7c01..0x7dff and their
//     negatives come out with float32 bit 22 set) where HalfToFloat32 gives mant<<13 as it
//     is. A cheap test per 32 halves (any exponent all ones?) sends the rare blocks with an
//     Inf or NaN to a fix-up that clears the quiet bit again in the signalling lanes.
//   - float32ToF16F16C: float32 to binary16 with VCVTPS2PH imm8 0 (round to nearest even,
//     from the immediate: MXCSR.RC is not used). It agrees with Float32ToHalf on all 2^32
//     inputs, including overflow to ±Inf, subnormal results, and NaNs (both give sign |
//     0x7e00 | the 9 payload bits below the quiet bit), so it needs no fix-up. Go never
//     sets MXCSR.DAZ; were it set (by foreign code in the process), float32 subnormal
//     inputs would become ±0.
//   - bf16ToF32AVX2: bfloat16 to float32, VPMOVZXWD then VPSLLD $16; exact.
//
// Limits: n must be a positive multiple of 8 (the Go callers convert the remainder with
// scalar code); loads and stores are unaligned, except that with stream set the decoders
// write with non-temporal stores (VMOVNTPS/VMOVNTDQ, then SFENCE), which need dst 32-byte
// aligned: the callers do so for destinations of streamBytes (4 MiB) and more.
//
// Tests (convert_vec_test.go) compare each routine with the Go code bit for bit: all 65536
// halves and bfloat16s, in order, shuffled and in ragged pieces (every lane of both loops
// and the scalar tails); lengths 0..100 at source and destination offsets 0..3 with guard
// values around the destination; 4 MiB decodes at each destination alignment (the streaming
// path); float32 to half at every rounding boundary, tie and overflow threshold, float32
// subnormals and NaN payloads, 12M random patterns, and (ODYSSEY_EXHAUSTIVE=1) all 2^32.
//
// Measured 2026-12-02 on an AMD EPYC (Zen 1, family 23 model 1, 2 GHz, 2 cores; AVX2, F16C,
// FMA, no AVX-512; 1 MiB L2, 8 MiB L3), Go 1.26, with
// go test -run XXX -bench 'F16|BF16' ./formats/safetensors/ (2M elements: 4 MiB of 16-bit
// data, 8 MiB of float32, so streaming stores), MB/s of the 16-bit side, median of 5:
//
//	                       asm     go   (before this file: the go path)
//	BenchmarkF16ToF32      6900   2070   (1770-1890)
//	BenchmarkBF16ToF32     6620   2070   (2140-2200)
//	BenchmarkFloat32ToF16  3340    750   (770-780; fp16 destination bytes, as before)
//
// The decoders are memory bound at that size: with ordinary stores (each destination line
// read before it is written) they ran at about 2600-2800 MB/s. In cache (256K elements)
// the asm paths ran at 5000-10000 (F16), 7700-9500 (BF16) and 16000 MB/s (Float32ToF16),
// the Go code at 1300-1600, 2900 and 770: this shared 2-core machine is noisy.

#include "textflag.h"

// func cpuidLeaf1ECX() uint32
TEXT ·cpuidLeaf1ECX(SB), NOSPLIT, $0-4
	MOVL  $1, AX
	XORL  CX, CX
	CPUID
	MOVL  CX, ret+0(FP)
	RET

// BROADCAST32 fills each doubleword of Y (X its low half) with the constant C; clobbers AX.
#define BROADCAST32(C, X, Y) \
	MOVL         C, AX; \
	VMOVD        AX, X; \
	VPBROADCASTD X, Y

// SNAN turns the halves in R into 0xffff words where a half is a signalling NaN, 0
// elsewhere: |h| + 0x03ff wraps the signalling NaNs 0x7c01..0x7dff to 0x8000..0x81fe, the
// only values below the signed threshold 0x81ff. M, B and L hold 0x7fff, 0x03ff and 0x81ff
// in each word (Y12, Y13, Y10 or their X halves, the size of R).
#define SNAN(R, M, B, L) \
	VPAND    R, M, R; \
	VPADDW   R, B, R; \
	VPCMPGTW R, L, R

// UNQUIET8 clears the float32 quiet bit (Y11) in the lanes of R (8 results) whose word
// in the 8-word mask X is 0xffff; T is scratch.
#define UNQUIET8(X, R, T) \
	VPMOVSXWD X, T; \
	VPAND     T, Y11, T; \
	VPXOR     T, R, R

// func f16ToF32F16C(dst *float32, src *byte, n int, stream bool)
TEXT ·f16ToF32F16C(SB), NOSPLIT, $0-25
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVBLZX stream+24(FP), R8

	BROADCAST32($0xf7fff7ff, X14, Y14) // 2|h| above this: exponent all ones (Inf, NaN)
	BROADCAST32($0x7fff7fff, X12, Y12)
	BROADCAST32($0x03ff03ff, X13, Y13)
	BROADCAST32($0x81ff81ff, X10, Y10)
	BROADCAST32($0x00400000, X11, Y11) // float32 quiet bit

f16loop32:
	CMPQ      CX, $32
	JB        f16loop8
	VMOVDQU   (SI), Y4
	VMOVDQU   32(SI), Y5
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VCVTPH2PS 32(SI), Y2
	VCVTPH2PS 48(SI), Y3
	// Any Inf or NaN among the 32? 2h drops the sign; the unsigned maximum of both blocks,
	// less 0xf7ff with saturation, is nonzero only then.
	VPADDW    Y4, Y4, Y6
	VPADDW    Y5, Y5, Y7
	VPMAXUW   Y6, Y7, Y6
	VPSUBUSW  Y14, Y6, Y6
	VPTEST    Y6, Y6
	JNZ       f16special32

f16store32:
	TESTQ   R8, R8
	JNZ     f16stream32
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)

f16next32:
	ADDQ $64, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  f16loop32

f16stream32:
	// Non-temporal stores: dst is 32-byte aligned (the caller sees to it).
	VMOVNTPS Y0, (DI)
	VMOVNTPS Y1, 32(DI)
	VMOVNTPS Y2, 64(DI)
	VMOVNTPS Y3, 96(DI)
	JMP      f16next32

f16special32:
	// The hardware quiets signalling NaNs; HalfToFloat32 keeps their payload as it is.
	SNAN(Y4, Y12, Y13, Y10)
	SNAN(Y5, Y12, Y13, Y10)
	UNQUIET8(X4, Y0, Y7)
	VEXTRACTI128 $1, Y4, X8
	UNQUIET8(X8, Y1, Y7)
	UNQUIET8(X5, Y2, Y7)
	VEXTRACTI128 $1, Y5, X8
	UNQUIET8(X8, Y3, Y7)
	JMP          f16store32

f16loop8:
	TESTQ     CX, CX
	JZ        f16done
	VMOVDQU   (SI), X4
	VCVTPH2PS X4, Y0
	VPADDW    X4, X4, X6
	VPSUBUSW  X14, X6, X6
	VPTEST    X6, X6
	JNZ       f16special8

f16store8:
	VMOVUPS Y0, (DI)
	ADDQ    $16, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     f16loop8

f16special8:
	SNAN(X4, X12, X13, X10)
	UNQUIET8(X4, Y0, Y7)
	JMP f16store8

f16done:
	TESTQ R8, R8
	JZ    f16ret
	SFENCE // order the streaming stores before whatever the caller stores next

f16ret:
	VZEROUPPER
	RET

// func bf16ToF32AVX2(dst *float32, src *byte, n int, stream bool)
TEXT ·bf16ToF32AVX2(SB), NOSPLIT, $0-25
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVBLZX stream+24(FP), R8

bf16loop32:
	CMPQ      CX, $32
	JB        bf16loop8
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPMOVZXWD 32(SI), Y2
	VPMOVZXWD 48(SI), Y3
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VPSLLD    $16, Y2, Y2
	VPSLLD    $16, Y3, Y3
	TESTQ     R8, R8
	JNZ       bf16stream32
	VMOVDQU   Y0, (DI)
	VMOVDQU   Y1, 32(DI)
	VMOVDQU   Y2, 64(DI)
	VMOVDQU   Y3, 96(DI)

bf16next32:
	ADDQ $64, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  bf16loop32

bf16stream32:
	VMOVNTDQ Y0, (DI)
	VMOVNTDQ Y1, 32(DI)
	VMOVNTDQ Y2, 64(DI)
	VMOVNTDQ Y3, 96(DI)
	JMP      bf16next32

bf16loop8:
	TESTQ     CX, CX
	JZ        bf16done
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JMP       bf16loop8

bf16done:
	TESTQ R8, R8
	JZ    bf16ret
	SFENCE

bf16ret:
	VZEROUPPER
	RET

// func float32ToF16F16C(dst *byte, src *float32, n int)
TEXT ·float32ToF16F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

h16loop32:
	CMPQ      CX, $32
	JB        h16loop8
	VMOVUPS   (SI), Y0
	VMOVUPS   32(SI), Y1
	VMOVUPS   64(SI), Y2
	VMOVUPS   96(SI), Y3
	VCVTPS2PH $0, Y0, (DI)         // imm8 0: round to nearest even; bit 2 clear: not MXCSR.RC
	VCVTPS2PH $0, Y1, 16(DI)
	VCVTPS2PH $0, Y2, 32(DI)
	VCVTPS2PH $0, Y3, 48(DI)
	ADDQ      $128, SI
	ADDQ      $64, DI
	SUBQ      $32, CX
	JMP       h16loop32

h16loop8:
	TESTQ     CX, CX
	JZ        h16done
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	SUBQ      $8, CX
	JMP       h16loop8

h16done:
	VZEROUPPER
	RET
