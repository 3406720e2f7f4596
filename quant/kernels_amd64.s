//go:build amd64 && !purego

#include "textflag.h"

// AVX2 kernels of the RTN loops of package quant (rtn.go, weighterr.go), selected at start-up
// by kernels_amd64.go when the CPU has AVX2 and FMA (golang.org/x/sys/cpu); elsewhere, and
// with -tags purego, the Go functions quantizeGroupGo, absMaxBitsGo and rowErrorsGo run
// (kernels_other.go). Each kernel takes n elements, a multiple of 8 (the wrappers pass the
// last n%8 to the Go code); pointers need no alignment. All use the MXCSR as Go leaves it
// (round to nearest even, no FTZ/DAZ), as the scalar code does.
//
// quantizeGroupAVX2: q[k] = sign(w[k])·min(int32(float64(|w[k]|/s) + 0.5), 7) and Σ|q|, bit
// for bit like quantizeGroupGo. y = |w|/s is VDIVPS, IEEE-exact like DIVSS. For 0 ≤ y < 2²³
// the sum v = y + 2²³ is rounded to an integer, v = 2²³ + RNE(y) exactly, and its bits are
// B + RNE(y) with B = 0x4b000000; h = v − (2²³ − ½) = RNE(y) + ½ and h + (2²³ − ½) = v are
// exact. RNE(y) differs from floor(y + ½) (what the Go code computes: float64(y) + 0.5 is
// exact for y ≥ ½ and stays below 1 for y < ½) only on exact ties that RNE rounds down, which
// y ≥ h detects, so t = bits(v) − (y ≥ h ? −1 : 0) − B. For 2²³ ≤ y < 2³¹ − 2²³, bits(v) ≥
// B + 2²³ and the clamp min(·, B + 7) gives 7, as the Go code does. The kernel keeps the
// unsigned maximum of the biased t and returns ok = false when it reaches the bits of 2³¹
// (some y ≥ 2³¹ − 2²³, +Inf or NaN, for which Go's int32 conversion yields 0x80000000):
// the wrapper then runs the Go code on the whole group, as it does for s ≤ 0 or NaN (where
// truncation toward zero differs from this rounding). So the result equals the Go code for
// every input, not only for the documented y ≤ 700. The sign is applied with VPSIGND on the
// weight bits (−0 gives 0), Σ|q| is wrapping int32 addition as in Go, the codes (−7..7) are
// narrowed with signed packs and put back in order with two unpacks.
//
// absMaxBitsAVX2: max over k of bits(w[k]) & 0x7fffffff, unsigned (VPAND, VPMAXUD, four
// accumulators); exact by construction.
//
// groupErrAVX2 / groupErrFloatAVX2: for one group of rowErrors, with the float32 products
// s·float32(q) and se·float32(q) computed exactly as the scalar code does (VPMOVSXBD, an
// exact int → float32 conversion by the 1.5·2²³ magic number, VMULPS), converted to float64
// (VCVTPS2PD), accumulates (ŝ·q − w)² and w² in float64 with FMA into 8 lane sums per
// quantity that rowErrorsAsm carries across the row and adds in a fixed order. The products
// and the differences are rowErrorsGo's numbers, and so are the sums, bit for bit: rowErrorsGo
// sums in these lanes, in this order, with math.FMA (the canonical order, docs/determinism.md).
// They depend on the row only, and the
// float and weight sums are bit-identical with and without the integer scales.
//
// Tests (kernels_test.go) compare each kernel with its Go reference: lengths 0..300, 512,
// 1000, 4096, 11008 at unaligned offsets; Gaussian weights with outliers and s = SymScale
// with clip factors 1, 0.5, 0.01 (clamping at 7); exact ties (m + ½)·s, their float
// neighbours, m·s and the clamp boundary 7.5·s; negative and positive zeros, all-zero
// groups; and, for quantizeGroup, NaN, ±Inf, subnormal and huge weights and scales that are
// subnormal, infinite, negative, zero or NaN; codes and Σ|q| and the absolute maximum must be
// bit-identical, the stores must stay inside the group, the vector path must be the one
// taken for every in-range group, and the error sums must be bit-identical.
//
// Speed, 2026-12-02, AMD EPYC (AVX2, FMA, F16C, no AVX-512; 2 vCPUs, 2 GHz),
// go test -bench, one goroutine over a 16×11008 block in groups of 128 (MB/s of float32
// weights), Go code → this file:
//
//	BenchmarkQuantizeGroup          1310 → 4380 MB/s   (3.3×)
//	BenchmarkAbsMax                 6150 → 23500 MB/s  (3.8×; 704 KB, out of L2)
//	BenchmarkRowErrors              1445 → 3500 MB/s   (2.4×)
//	BenchmarkRowErrors/float-only   1970 → 5650 MB/s   (2.9×)
//
// and through the whole fused pipeline on both vCPUs (4096×11008, 45 M weights):
//
//	BenchmarkRTNIntScaleRows        170 → 75 ms   (1070 → 2400 MB/s of float32)
//	BenchmarkRTNIntScale4096x11008  100 → 39 ms   (900 → 2330 MB/s of fp16)
//	BenchmarkRTN4096x11008           95 → 37 ms   (950 → 2450 MB/s of fp16)
//
// The division bounds quantizeGroupAVX2 (VDIVPS ymm issues every ~6.5 cycles here, about
// half the loop's time); the float32 → float64 conversions bound the error kernels.

// Register use of quantizeGroupAVX2: constants in Y10..Y15, the running unsigned maximum of
// the biased codes (the range check) in Y9, the Σ|q| accumulator in Y8, scratch in Y0..Y7.
#define QG_ABSMASK Y15
#define QG_S Y14
#define QG_MAGIC Y13
#define QG_MAGICH Y12
#define QG_CLAMP Y11
#define QG_SUM Y8
#define QG_HIGH Y9

// QGROUP8 turns the 8 weights at off(SI) into 8 int32 codes in Y, with T as scratch, and
// adds their magnitudes to QG_SUM (see the header for why each step is exact):
//
//	y = |w|/s; v = y + 2²³ (bits B + RNE(y)); h = v − (2²³ − ½) = RNE(y) + ½
//	m = y ≥ h ? −1 : 0 (an exact tie that RNE rounded down); v = h + (2²³ − ½)
//	t = min(bits(v) − m, B + 7) − B; q = sign(w)·t
#define QGROUP8(off, Y, T) \
	VANDPS   off(SI), QG_ABSMASK, Y; \
	VDIVPS   QG_S, Y, Y; \
	VADDPS   QG_MAGIC, Y, T; \
	VSUBPS   QG_MAGICH, T, T; \
	VCMPPS   $0x0d, T, Y, Y; \
	VADDPS   QG_MAGICH, T, T; \
	VPSUBD   Y, T, T; \
	VPMAXUD  T, QG_HIGH, QG_HIGH; \
	VPMINSD  QG_CLAMP, T, T; \
	VPSUBD   QG_MAGIC, T, T; \
	VPADDD   T, QG_SUM, QG_SUM; \
	VPSIGND  off(SI), T, Y

// func quantizeGroupAVX2(w *float32, q *int8, n int, s float32) (sum int32, ok bool)
TEXT ·quantizeGroupAVX2(SB), NOSPLIT, $0-37
	MOVQ w+0(FP), SI
	MOVQ q+8(FP), DI
	MOVQ n+16(FP), CX

	VBROADCASTSS s+24(FP), QG_S
	MOVL         $0x7fffffff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, QG_ABSMASK
	MOVL         $0x4b000000, AX         // 2²³, and B = its bits
	VMOVD        AX, X13
	VPBROADCASTD X13, QG_MAGIC
	MOVL         $0x4affffff, AX         // 2²³ − ½
	VMOVD        AX, X12
	VPBROADCASTD X12, QG_MAGICH
	MOVL         $0x4b000007, AX         // B + 7
	VMOVD        AX, X11
	VPBROADCASTD X11, QG_CLAMP
	VPXOR        QG_SUM, QG_SUM, QG_SUM
	VPXOR        QG_HIGH, QG_HIGH, QG_HIGH

qgloop32:
	CMPQ CX, $32
	JB   qgloop8
	QGROUP8(0, Y0, Y1)
	QGROUP8(32, Y2, Y3)
	QGROUP8(64, Y4, Y5)
	QGROUP8(96, Y6, Y7)
	// The codes are in −7..7, which the signed packs keep. Per 128-bit lane they interleave
	// groups of 4 codes: dwords [A0 B0 C0 D0 | A1 B1 C1 D1] for the vectors A..D, which the
	// unpacks put back in order.
	VPACKSSDW    Y2, Y0, Y0
	VPACKSSDW    Y6, Y4, Y4
	VPACKSSWB    Y4, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPUNPCKLDQ   X1, X0, X2
	VPUNPCKHDQ   X1, X0, X3
	VMOVDQU      X2, (DI)
	VMOVDQU      X3, 16(DI)
	ADDQ         $128, SI
	ADDQ         $32, DI
	SUBQ         $32, CX
	JMP          qgloop32

qgloop8:
	TESTQ        CX, CX
	JZ           qgdone
	QGROUP8(0, Y0, Y1)
	VEXTRACTI128 $1, Y0, X1
	VPACKSSDW    X1, X0, X0
	VPACKSSWB    X0, X0, X0
	VMOVQ        X0, (DI)
	ADDQ         $32, SI
	ADDQ         $8, DI
	SUBQ         $8, CX
	JMP          qgloop8

qgdone:
	VEXTRACTI128 $1, QG_SUM, X0
	VPADDD       X0, X8, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPADDD       X1, X0, X0
	VMOVD        X0, AX
	MOVL         AX, sum+32(FP)
	VEXTRACTI128 $1, QG_HIGH, X0
	VPMAXUD      X0, X9, X0
	VPSHUFD      $0x4e, X0, X1
	VPMAXUD      X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPMAXUD      X1, X0, X0
	VMOVD        X0, AX
	CMPL         AX, $0x4f000000         // bits of 2³¹: below it every lane was in range
	SETCS        ok+36(FP)
	VZEROUPPER
	RET

// func absMaxBitsAVX2(w *float32, n int) uint32
TEXT ·absMaxBitsAVX2(SB), NOSPLIT, $0-20
	MOVQ w+0(FP), SI
	MOVQ n+8(FP), CX

	MOVL         $0x7fffffff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	VPXOR        Y0, Y0, Y0
	VPXOR        Y1, Y1, Y1
	VPXOR        Y2, Y2, Y2
	VPXOR        Y3, Y3, Y3

amloop32:
	CMPQ    CX, $32
	JB      amloop8
	VPAND   (SI), Y15, Y4
	VPAND   32(SI), Y15, Y5
	VPAND   64(SI), Y15, Y6
	VPAND   96(SI), Y15, Y7
	VPMAXUD Y4, Y0, Y0
	VPMAXUD Y5, Y1, Y1
	VPMAXUD Y6, Y2, Y2
	VPMAXUD Y7, Y3, Y3
	ADDQ    $128, SI
	SUBQ    $32, CX
	JMP     amloop32

amloop8:
	TESTQ   CX, CX
	JZ      amdone
	VPAND   (SI), Y15, Y4
	VPMAXUD Y4, Y0, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     amloop8

amdone:
	VPMAXUD      Y1, Y0, Y0
	VPMAXUD      Y3, Y2, Y2
	VPMAXUD      Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMAXUD      X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPMAXUD      X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPMAXUD      X1, X0, X0
	VMOVD        X0, AX
	MOVL         AX, ret+16(FP)
	VZEROUPPER
	RET

// The error kernels keep six float64 accumulators of 4 lanes, loaded from and stored back
// to *acc: Σ(ŵ_float − w)² in Y8 and Y9 (elements 0–3 and 4–7 of each 8), Σ(ŵ_int − w)² in
// Y10 and Y11, Σw² in Y12 and Y13; s is broadcast in Y14, se in Y15, and Y6 = Y7 hold the
// magic number 1.5·2²³ (bits 0x4b400000): for |q| < 2²², the bits 0x4b400000 + q are the
// float32 1.5·2²³ + q, so subtracting 1.5·2²³ gives float32(q) exactly, off the conversion
// unit that VCVTPS2PD keeps busy.

// ERRW8 loads 8 codes and 8 weights: Y0 = float32(q), Y3/Y4 = float64(w) of elements
// 0–3/4–7, and adds w² to Σw².
#define ERRW8 \
	VPMOVSXBD   (DI), Y0; \
	VPADDD      Y7, Y0, Y0; \
	VSUBPS      Y6, Y0, Y0; \
	VCVTPS2PD   (SI), Y3; \
	VCVTPS2PD   16(SI), Y4; \
	VFMADD231PD Y3, Y3, Y12; \
	VFMADD231PD Y4, Y4, Y13

// ERRD8 adds (float64(S·float32(q)) − float64(w))² to the accumulators A0 (elements 0–3)
// and A1 (4–7), with Y1 and Y2 as scratch.
#define ERRD8(S, A0, A1) \
	VMULPS       S, Y0, Y1; \
	VCVTPS2PD    X1, Y2; \
	VEXTRACTF128 $1, Y1, X1; \
	VCVTPS2PD    X1, Y1; \
	VSUBPD       Y3, Y2, Y2; \
	VSUBPD       Y4, Y1, Y1; \
	VFMADD231PD  Y2, Y2, A0; \
	VFMADD231PD  Y1, Y1, A1

// func groupErrAVX2(w *float32, q *int8, n int, s, se float32, acc *[24]float64)
TEXT ·groupErrAVX2(SB), NOSPLIT, $0-40
	MOVL         $0x4b400000, AX
	VMOVD        AX, X7
	VPBROADCASTD X7, Y7
	VMOVDQU      Y7, Y6
	MOVQ         w+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         n+16(FP), CX
	MOVQ         acc+32(FP), DX
	VBROADCASTSS s+24(FP), Y14
	VBROADCASTSS se+28(FP), Y15
	VMOVUPD      0(DX), Y8
	VMOVUPD      32(DX), Y9
	VMOVUPD      64(DX), Y10
	VMOVUPD      96(DX), Y11
	VMOVUPD      128(DX), Y12
	VMOVUPD      160(DX), Y13

geloop:
	TESTQ CX, CX
	JZ    gedone
	ERRW8
	ERRD8(Y14, Y8, Y9)
	ERRD8(Y15, Y10, Y11)
	ADDQ  $32, SI
	ADDQ  $8, DI
	SUBQ  $8, CX
	JMP   geloop

gedone:
	VMOVUPD Y8, 0(DX)
	VMOVUPD Y9, 32(DX)
	VMOVUPD Y10, 64(DX)
	VMOVUPD Y11, 96(DX)
	VMOVUPD Y12, 128(DX)
	VMOVUPD Y13, 160(DX)
	VZEROUPPER
	RET

// func groupErrFloatAVX2(w *float32, q *int8, n int, s float32, acc *[24]float64)
TEXT ·groupErrFloatAVX2(SB), NOSPLIT, $0-40
	MOVL         $0x4b400000, AX
	VMOVD        AX, X7
	VPBROADCASTD X7, Y7
	VMOVDQU      Y7, Y6
	MOVQ         w+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         n+16(FP), CX
	MOVQ         acc+32(FP), DX
	VBROADCASTSS s+24(FP), Y14
	VMOVUPD      0(DX), Y8
	VMOVUPD      32(DX), Y9
	VMOVUPD      128(DX), Y12
	VMOVUPD      160(DX), Y13

gfloop:
	TESTQ CX, CX
	JZ    gfdone
	ERRW8
	ERRD8(Y14, Y8, Y9)
	ADDQ  $32, SI
	ADDQ  $8, DI
	SUBQ  $8, CX
	JMP   gfloop

gfdone:
	VMOVUPD Y8, 0(DX)
	VMOVUPD Y9, 32(DX)
	VMOVUPD Y12, 128(DX)
	VMOVUPD Y13, 160(DX)
	VZEROUPPER
	RET

// func clipErrorsAVX2(a *float32, e *float64, n int, s, inv *float32, acc *float64) bool
//
// Four candidates, one per float64 lane; per magnitude a[k] (n > 0 of them):
//   t = float64(a·inv) (float32 product, widened exactly), r = floor(t + 0.5) (t ≥ 0: round
//   half away from zero), ok &= 0.5 − |t − r| > t·2⁻²⁰ or t − 7.5 > t·2⁻²⁰ (both clamp), q = min(r, 7),
//   d = float64(float32(s·float32(q))) − float64(a), acc += (e·d)·d (two roundings, then the add).
// Y8/X8 inv, X9 s, Y10 0.5, Y11 the abs mask, Y12 2⁻²⁰, Y13 7.0, Y0 7.5, Y14 ok lanes, Y15 the sums.
TEXT ·clipErrorsAVX2(SB), NOSPLIT, $0-49
	MOVQ         a+0(FP), SI
	MOVQ         e+8(FP), DI
	MOVQ         n+16(FP), CX
	MOVQ         s+24(FP), AX
	MOVQ         inv+32(FP), BX
	MOVQ         acc+40(FP), DX
	VMOVUPS      (BX), X8
	VMOVUPS      (AX), X9
	MOVQ         $0x3fe0000000000000, AX // 0.5
	VMOVQ        AX, X10
	VBROADCASTSD X10, Y10
	MOVQ         $0x7fffffffffffffff, AX
	VMOVQ        AX, X11
	VBROADCASTSD X11, Y11
	MOVQ         $0x3eb0000000000000, AX // 2⁻²⁰
	VMOVQ        AX, X12
	VBROADCASTSD X12, Y12
	MOVQ         $0x401c000000000000, AX // 7.0
	VMOVQ        AX, X13
	VBROADCASTSD X13, Y13
	MOVQ         $0x401e000000000000, AX // 7.5
	VMOVQ        AX, X0
	VBROADCASTSD X0, Y0
	VPCMPEQQ     Y14, Y14, Y14
	VMOVUPD      (DX), Y15

celoop:
	VBROADCASTSS (SI), X1
	VMULPS       X8, X1, X2
	VCVTPS2PD    X2, Y2
	VCVTPS2PD    X1, Y7
	VADDPD       Y10, Y2, Y3
	VROUNDPD     $9, Y3, Y3
	VSUBPD       Y3, Y2, Y4
	VANDPD       Y11, Y4, Y4
	VSUBPD       Y4, Y10, Y4
	VMULPD       Y12, Y2, Y5
	VCMPPD       $0x1e, Y5, Y4, Y6
	VSUBPD       Y0, Y2, Y4
	VCMPPD       $0x1e, Y5, Y4, Y4
	VORPD        Y4, Y6, Y6
	VANDPD       Y6, Y14, Y14
	VMINPD       Y13, Y3, Y3
	VCVTPD2PSY   Y3, X3
	VMULPS       X9, X3, X3
	VCVTPS2PD    X3, Y3
	VSUBPD       Y7, Y3, Y3
	VBROADCASTSD (DI), Y4
	VMULPD       Y3, Y4, Y4
	VMULPD       Y3, Y4, Y4
	VADDPD       Y4, Y15, Y15
	ADDQ         $4, SI
	ADDQ         $8, DI
	DECQ         CX
	JNZ          celoop

	VMOVUPD      Y15, (DX)
	VMOVMSKPD    Y14, AX
	CMPL         AX, $15
	SETEQ        ret+48(FP)
	VZEROUPPER
	RET
