//go:build amd64 && !purego

#include "textflag.h"

// combineAVX2(a, sg *int32, t *float32, n int, first bool): for k < n (n > 0, a multiple
// of 8), a[k] = sg[k]·int32(t[k]) when first, else a[k] += sg[k]·int32(t[k]). The same bits
// as combineFloatGo for every input: VCVTTPS2DQ truncates like Go's conversion (CVTTSS2SL),
// giving 0x80000000 for NaN and out-of-range values as it does, and VPMULLD and VPADDD keep
// the low 32 bits, as Go's int32 arithmetic wraps.
TEXT ·combineAVX2(SB), NOSPLIT, $0-33
	MOVQ a+0(FP), DI
	MOVQ sg+8(FP), SI
	MOVQ t+16(FP), DX
	MOVQ n+24(FP), CX
	MOVBLZX first+32(FP), AX
	SHLQ $2, CX
	XORQ BX, BX
	TESTL AX, AX
	JNZ set

add:
	VCVTTPS2DQ (DX)(BX*1), Y0
	VPMULLD (SI)(BX*1), Y0, Y0
	VPADDD (DI)(BX*1), Y0, Y0
	VMOVDQU Y0, (DI)(BX*1)
	ADDQ $32, BX
	CMPQ BX, CX
	JLT add
	VZEROUPPER
	RET

set:
	VCVTTPS2DQ (DX)(BX*1), Y0
	VPMULLD (SI)(BX*1), Y0, Y0
	VMOVDQU Y0, (DI)(BX*1)
	ADDQ $32, BX
	CMPQ BX, CX
	JLT set
	VZEROUPPER
	RET
