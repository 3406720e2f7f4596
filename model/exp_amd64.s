//go:build amd64 && !purego

#include "textflag.h"

// Vector exp for float32 (8 lanes, AVX2 + FMA) after Cephes' expf: x is clamped to
// [-87.34, 88], n = round(x·log2e), r = x − n·ln2 (in two parts), e^r by a degree-7
// polynomial, then scaled by 2^n through the exponent bits. About 1 ulp; NaN propagates
// (the clamps keep x as the second source of VMINPS/VMAXPS).

DATA explog2e<>+0(SB)/4, $0x3fb8aa3b
DATA explog2e<>+4(SB)/4, $0x3fb8aa3b
DATA explog2e<>+8(SB)/4, $0x3fb8aa3b
DATA explog2e<>+12(SB)/4, $0x3fb8aa3b
DATA explog2e<>+16(SB)/4, $0x3fb8aa3b
DATA explog2e<>+20(SB)/4, $0x3fb8aa3b
DATA explog2e<>+24(SB)/4, $0x3fb8aa3b
DATA explog2e<>+28(SB)/4, $0x3fb8aa3b
GLOBL explog2e<>(SB), RODATA|NOPTR, $32

DATA expc1<>+0(SB)/4, $0x3f318000
DATA expc1<>+4(SB)/4, $0x3f318000
DATA expc1<>+8(SB)/4, $0x3f318000
DATA expc1<>+12(SB)/4, $0x3f318000
DATA expc1<>+16(SB)/4, $0x3f318000
DATA expc1<>+20(SB)/4, $0x3f318000
DATA expc1<>+24(SB)/4, $0x3f318000
DATA expc1<>+28(SB)/4, $0x3f318000
GLOBL expc1<>(SB), RODATA|NOPTR, $32

DATA expc2<>+0(SB)/4, $0xb95e8083
DATA expc2<>+4(SB)/4, $0xb95e8083
DATA expc2<>+8(SB)/4, $0xb95e8083
DATA expc2<>+12(SB)/4, $0xb95e8083
DATA expc2<>+16(SB)/4, $0xb95e8083
DATA expc2<>+20(SB)/4, $0xb95e8083
DATA expc2<>+24(SB)/4, $0xb95e8083
DATA expc2<>+28(SB)/4, $0xb95e8083
GLOBL expc2<>(SB), RODATA|NOPTR, $32

DATA expp0<>+0(SB)/4, $0x39506967
DATA expp0<>+4(SB)/4, $0x39506967
DATA expp0<>+8(SB)/4, $0x39506967
DATA expp0<>+12(SB)/4, $0x39506967
DATA expp0<>+16(SB)/4, $0x39506967
DATA expp0<>+20(SB)/4, $0x39506967
DATA expp0<>+24(SB)/4, $0x39506967
DATA expp0<>+28(SB)/4, $0x39506967
GLOBL expp0<>(SB), RODATA|NOPTR, $32

DATA expp1<>+0(SB)/4, $0x3ab743ce
DATA expp1<>+4(SB)/4, $0x3ab743ce
DATA expp1<>+8(SB)/4, $0x3ab743ce
DATA expp1<>+12(SB)/4, $0x3ab743ce
DATA expp1<>+16(SB)/4, $0x3ab743ce
DATA expp1<>+20(SB)/4, $0x3ab743ce
DATA expp1<>+24(SB)/4, $0x3ab743ce
DATA expp1<>+28(SB)/4, $0x3ab743ce
GLOBL expp1<>(SB), RODATA|NOPTR, $32

DATA expp2<>+0(SB)/4, $0x3c088908
DATA expp2<>+4(SB)/4, $0x3c088908
DATA expp2<>+8(SB)/4, $0x3c088908
DATA expp2<>+12(SB)/4, $0x3c088908
DATA expp2<>+16(SB)/4, $0x3c088908
DATA expp2<>+20(SB)/4, $0x3c088908
DATA expp2<>+24(SB)/4, $0x3c088908
DATA expp2<>+28(SB)/4, $0x3c088908
GLOBL expp2<>(SB), RODATA|NOPTR, $32

DATA expp3<>+0(SB)/4, $0x3d2aa9c1
DATA expp3<>+4(SB)/4, $0x3d2aa9c1
DATA expp3<>+8(SB)/4, $0x3d2aa9c1
DATA expp3<>+12(SB)/4, $0x3d2aa9c1
DATA expp3<>+16(SB)/4, $0x3d2aa9c1
DATA expp3<>+20(SB)/4, $0x3d2aa9c1
DATA expp3<>+24(SB)/4, $0x3d2aa9c1
DATA expp3<>+28(SB)/4, $0x3d2aa9c1
GLOBL expp3<>(SB), RODATA|NOPTR, $32

DATA expp4<>+0(SB)/4, $0x3e2aaaaa
DATA expp4<>+4(SB)/4, $0x3e2aaaaa
DATA expp4<>+8(SB)/4, $0x3e2aaaaa
DATA expp4<>+12(SB)/4, $0x3e2aaaaa
DATA expp4<>+16(SB)/4, $0x3e2aaaaa
DATA expp4<>+20(SB)/4, $0x3e2aaaaa
DATA expp4<>+24(SB)/4, $0x3e2aaaaa
DATA expp4<>+28(SB)/4, $0x3e2aaaaa
GLOBL expp4<>(SB), RODATA|NOPTR, $32

DATA expp5<>+0(SB)/4, $0x3f000000
DATA expp5<>+4(SB)/4, $0x3f000000
DATA expp5<>+8(SB)/4, $0x3f000000
DATA expp5<>+12(SB)/4, $0x3f000000
DATA expp5<>+16(SB)/4, $0x3f000000
DATA expp5<>+20(SB)/4, $0x3f000000
DATA expp5<>+24(SB)/4, $0x3f000000
DATA expp5<>+28(SB)/4, $0x3f000000
GLOBL expp5<>(SB), RODATA|NOPTR, $32

DATA expone<>+0(SB)/4, $0x3f800000
DATA expone<>+4(SB)/4, $0x3f800000
DATA expone<>+8(SB)/4, $0x3f800000
DATA expone<>+12(SB)/4, $0x3f800000
DATA expone<>+16(SB)/4, $0x3f800000
DATA expone<>+20(SB)/4, $0x3f800000
DATA expone<>+24(SB)/4, $0x3f800000
DATA expone<>+28(SB)/4, $0x3f800000
GLOBL expone<>(SB), RODATA|NOPTR, $32

DATA exphi<>+0(SB)/4, $0x42b00000
DATA exphi<>+4(SB)/4, $0x42b00000
DATA exphi<>+8(SB)/4, $0x42b00000
DATA exphi<>+12(SB)/4, $0x42b00000
DATA exphi<>+16(SB)/4, $0x42b00000
DATA exphi<>+20(SB)/4, $0x42b00000
DATA exphi<>+24(SB)/4, $0x42b00000
DATA exphi<>+28(SB)/4, $0x42b00000
GLOBL exphi<>(SB), RODATA|NOPTR, $32

DATA explo<>+0(SB)/4, $0xc2aeac50
DATA explo<>+4(SB)/4, $0xc2aeac50
DATA explo<>+8(SB)/4, $0xc2aeac50
DATA explo<>+12(SB)/4, $0xc2aeac50
DATA explo<>+16(SB)/4, $0xc2aeac50
DATA explo<>+20(SB)/4, $0xc2aeac50
DATA explo<>+24(SB)/4, $0xc2aeac50
DATA explo<>+28(SB)/4, $0xc2aeac50
GLOBL explo<>(SB), RODATA|NOPTR, $32

DATA expi127<>+0(SB)/4, $0x0000007f
DATA expi127<>+4(SB)/4, $0x0000007f
DATA expi127<>+8(SB)/4, $0x0000007f
DATA expi127<>+12(SB)/4, $0x0000007f
DATA expi127<>+16(SB)/4, $0x0000007f
DATA expi127<>+20(SB)/4, $0x0000007f
DATA expi127<>+24(SB)/4, $0x0000007f
DATA expi127<>+28(SB)/4, $0x0000007f
GLOBL expi127<>(SB), RODATA|NOPTR, $32

// EXP8 replaces X by exp(X), using A, B, C as temporaries. Y14 = hi, Y15 = lo.
#define EXP8(X, A, B, C) \
	VMINPS X, Y14, X \
	VMAXPS X, Y15, X \
	VMULPS explog2e<>(SB), X, A \
	VROUNDPS $0, A, A \
	VFNMADD231PS expc1<>(SB), A, X \
	VFNMADD231PS expc2<>(SB), A, X \
	VMULPS X, X, B \
	VMOVUPS expp0<>(SB), C \
	VFMADD213PS expp1<>(SB), X, C \
	VFMADD213PS expp2<>(SB), X, C \
	VFMADD213PS expp3<>(SB), X, C \
	VFMADD213PS expp4<>(SB), X, C \
	VFMADD213PS expp5<>(SB), X, C \
	VFMADD213PS X, B, C \
	VADDPS expone<>(SB), C, C \
	VCVTPS2DQ A, A \
	VPADDD expi127<>(SB), A, A \
	VPSLLD $23, A, A \
	VMULPS A, C, X

// func expShiftAVX2(dst, src *float32, n int, shift float32) float64
// For i < n (a multiple of 8): e = exp(src[i] − shift); dst[i] = e unless dst is nil.
// Returns Σ e accumulated in float64.
TEXT ·expShiftAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS shift+24(FP), Y13
	VMOVUPS exphi<>(SB), Y14
	VMOVUPS explo<>(SB), Y15
	VXORPD Y11, Y11, Y11
	VXORPD Y12, Y12, Y12

loop:
	CMPQ CX, $8
	JL   done
	VMOVUPS (SI), Y0
	VSUBPS Y13, Y0, Y0
	EXP8(Y0, Y1, Y2, Y3)
	TESTQ DI, DI
	JZ    nostore
	VMOVUPS Y0, (DI)
	ADDQ  $32, DI

nostore:
	VCVTPS2PD X0, Y1
	VEXTRACTF128 $1, Y0, X2
	VCVTPS2PD X2, Y2
	VADDPD Y1, Y11, Y11
	VADDPD Y2, Y12, Y12
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  loop

done:
	VADDPD Y12, Y11, Y11
	VEXTRACTF128 $1, Y11, X12
	VADDPD X12, X11, X11
	VPERMILPD $1, X11, X12
	VADDSD X12, X11, X11
	VZEROUPPER
	MOVSD X11, ret+32(FP)
	RET

// func siluMulAVX2(x, u *float32, n int)
// For i < n (a multiple of 8): x[i] = x[i] / (1 + exp(−x[i])) · u[i].
TEXT ·siluMulAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), DI
	MOVQ u+8(FP), SI
	MOVQ n+16(FP), CX
	VMOVUPS exphi<>(SB), Y14
	VMOVUPS explo<>(SB), Y15
	VXORPS Y13, Y13, Y13

sloop:
	CMPQ CX, $8
	JL   sdone
	VMOVUPS (DI), Y0
	VSUBPS Y0, Y13, Y4
	EXP8(Y4, Y1, Y2, Y3)
	VADDPS expone<>(SB), Y4, Y4
	VDIVPS Y4, Y0, Y0
	VMULPS (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  sloop

sdone:
	VZEROUPPER
	RET

// func maxAVX2(src *float32, n int) float32
// Returns the maximum of src[:n], n a positive multiple of 8.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ src+0(FP), SI
	MOVQ n+8(FP), CX
	VMOVUPS (SI), Y0
	ADDQ $32, SI
	SUBQ $8, CX

mloop:
	CMPQ CX, $8
	JL   mdone
	VMOVUPS (SI), Y1
	VMAXPS Y1, Y0, Y0
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  mloop

mdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+16(FP)
	RET
