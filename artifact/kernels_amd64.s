//go:build amd64 && !purego

// AVX2 kernels of ScanFinite (scan.go) and packInt4 (pack.go), selected at start-up by
// kernels_amd64.go when the CPU has AVX2 (golang.org/x/sys/cpu); elsewhere, and with
// -tags purego, the Go functions firstNonFiniteGo and packBlockGo run (kernels_other.go).
// Both kernels are exact by construction: they compare and move bits, no arithmetic.
//
//   - nonFinite16AVX2 / nonFinite32AVX2 / nonFinite64AVX2: the offset of the first 128-byte
//     block of p[0:n] holding an element e (2, 4 or 8 bytes) with e & mask == mask (the
//     exponent mask of fp16 0x7C00, bf16 0x7F80, float32 0x7F800000, float64
//     0x7FF0000000000000: NaN or ±Inf), or n. Per block four unaligned VPANDs with the
//     broadcast mask, VPCMPEQW/D/Q against it, three VPORs and one VPTEST, so one rarely
//     taken branch per 128 bytes. n must be a positive multiple of 128 (finiteBlocks passes
//     len(b)&^127); firstNonFiniteGo then finds the exact index inside the block returned
//     and scans the last len(b)%128 bytes, so firstNonFinite returns what firstNonFiniteGo
//     returns for every input.
//   - packBlockAVX2: the full 128-column blocks of one 8-row block of packInt4, the same bytes
//     as packBlockGo (the layout of docs/fastgemm-layout.md): 128 codes of a row become the
//     row's 64-byte stripe of the 512-byte block with 16-byte loads, VINSERTI128 from memory,
//     VPAND/VPSLLW/VPOR for the nibbles and a 4×4 dword transpose (VPUNPCKL/HDQ, VPERMQ);
//     see the routine. It also returns whether some code is outside −7..7 (VPABSB, running
//     VPMAXUB, compared with 7 at the end), for any bytes (−128 included); packInt4 then
//     searches the flagged 8-row block in row-major order, as for the Go path, so the error
//     names the same first bad [row, col]. rows must be 1..8 and nkb > 0 (packBlockAsm
//     checks); the output of padding rows is not written. It walks the output in order and
//     reads the 8 rows as 8 streams, which was 10-20% faster here than a row at a time.
//
// Tests (kernels_test.go): every length 0..1100 bytes at source offsets 0..7 for F16, BF16,
// F32 and F64, random finite data (a quarter of it one exponent bit short of non-finite)
// with none, one or two NaN/±Inf planted at random places; 4 MiB buffers with the element
// at the start, at block edges, in the middle, in the Go tail and at the end; all 65536
// 16-bit patterns for fp16 and bf16 at every position of a block: the result must equal
// firstNonFiniteGo and the planted index. packBlockAsm against packBlockGo on random codes,
// bad codes and arbitrary bytes, 1..8 rows, 1..86 blocks, row strides with ragged columns,
// unaligned sources, with guard bytes outside the stripes; packInt4 on both paths against
// quant.PackInt4 for 8×128, 1×128, 13×300, 7×129, 9×256, 16×127, 3×1000, 64×4096,
// 4096×4096, 11008×4096, 4096×11008; and −8, 8, 127, −128 planted in full and ragged
// blocks, first and last rows and columns, with a second bad code later in row-major
// order: both paths must give the same error naming the first.
//
// Speed, 2026-12-02, AMD EPYC (Zen 1, family 23 model 1, 2 GHz, 2 vCPUs; AVX2, FMA, F16C, no
// AVX-512; 1 MiB L2 per core, 8 MiB L3), Go 1.26, go test -bench, median of 6 (a shared,
// noisy machine: load average 1.3-1.8 during the runs), MB/s; before = the code this file
// replaced (the SWAR loop, now firstNonFiniteGo, and the word-at-a-time packer):
//
//	                                   before   go now   asm
//	BenchmarkFirstNonFinite 4 MiB fp16   4040     4050   23000  (L3; one goroutine)
//	BenchmarkFirstNonFinite 256 KiB      4250     4200   38000  (L2)
//	BenchmarkPackInt4Paths 4096×11008     770     1790    5000  (58 → 25 → 9 ms, 1 core)
//	  on both vCPUs                       900     2200    5400  (50 → 20 → 8.4 ms)
//	PackInt4Paths/PackBlock (in cache)      -     2380   18900  (one 8×11008 block)
//
// The packer's whole-matrix time is bound by memory and by make's zeroing of the 22.5 MB
// output (about 3 ms here, runtime.memclrNoHeapPointers, a third of the profile); the
// kernel itself packs 19 GB/s of codes from cache. The Go path (packBlockGo, 64-bit SWAR,
// also what arm64 and -tags purego run) is 2.3× the code it replaced.

#include "textflag.h"

// NONFINITE128(CMP) scans p[0:n] (SI, CX) in blocks of 128 bytes for an element x with
// x & mask == mask, the mask broadcast in Y15: four unaligned 32-byte VPANDs, CMP (VPCMPEQW,
// D or Q) against the mask, the four results ORed, one VPTEST and one rarely taken branch
// per block. It stores the offset of the first such block, or n, in ret+24(FP).
#define NONFINITE128(CMP) \
	XORQ     AX, AX             \
loop:                               \
	VPAND    (SI)(AX*1), Y15, Y0   \
	VPAND    32(SI)(AX*1), Y15, Y1 \
	VPAND    64(SI)(AX*1), Y15, Y2 \
	VPAND    96(SI)(AX*1), Y15, Y3 \
	CMP      Y15, Y0, Y0        \
	CMP      Y15, Y1, Y1        \
	CMP      Y15, Y2, Y2        \
	CMP      Y15, Y3, Y3        \
	VPOR     Y1, Y0, Y0         \
	VPOR     Y3, Y2, Y2         \
	VPOR     Y2, Y0, Y0         \
	VPTEST   Y0, Y0             \
	JNZ      done               \
	ADDQ     $128, AX           \
	CMPQ     AX, CX             \
	JB       loop               \
done:                               \
	VZEROUPPER                  \
	MOVQ     AX, ret+24(FP)     \
	RET

// func nonFinite16AVX2(p *byte, n int, mask uint16) int
TEXT ·nonFinite16AVX2(SB), NOSPLIT, $0-32
	MOVQ         p+0(FP), SI
	MOVQ         n+8(FP), CX
	MOVWLZX      mask+16(FP), AX
	MOVD         AX, X15
	VPBROADCASTW X15, Y15
	NONFINITE128(VPCMPEQW)

// func nonFinite32AVX2(p *byte, n int, mask uint32) int
TEXT ·nonFinite32AVX2(SB), NOSPLIT, $0-32
	MOVQ         p+0(FP), SI
	MOVQ         n+8(FP), CX
	MOVL         mask+16(FP), AX
	MOVD         AX, X15
	VPBROADCASTD X15, Y15
	NONFINITE128(VPCMPEQD)

// func nonFinite64AVX2(p *byte, n int, mask uint64) int
TEXT ·nonFinite64AVX2(SB), NOSPLIT, $0-32
	MOVQ         p+0(FP), SI
	MOVQ         n+8(FP), CX
	MOVQ         mask+16(FP), AX
	MOVQ         AX, X15
	VPBROADCASTQ X15, Y15
	NONFINITE128(VPCMPEQQ)

// func packBlockAVX2(dst, src *byte, k, rows, nkb int) (bad bool)
//
// For each block kb < nkb (dst advancing by 512, the column pointer R8 by 128) and each
// row g < rows (SI = R8 + g·k, the stripe R11 = dst + 64·g), the row's 128 codes at SI make
// its 64-byte stripe: the four 32-byte registers A, B, C, D hold codes [0,16)+[64,80),
// [16,32)+[80,96), [32,48)+[96,112) and [48,64)+[112,128) (a 16-byte load and a VINSERTI128
// from memory each, so no cross-lane shuffle), i.e. for steps 0 and 2 (A, B) and 1 and 3
// (C, D) the low-nibble and the high-nibble codes, byte 4·tig + j in each 16-byte lane.
// P = A&0x0F | (B<<4)&0xF0 is then [N0 | N2] and Q = [N1 | N3], where dword tig of N_step is
// the output word of lane tig for that step; the stripe wants lane tig's four words
// together (a 4×4 transpose of dwords): VPUNPCKLDQ/VPUNPCKHDQ of P and Q give [N0.d0 N1.d0
// N0.d1 N1.d1 | N2.d0 N3.d0 N2.d1 N3.d1] and the same for dwords 2, 3, and VPERMQ $0xD8
// (qwords 0, 2, 1, 3) puts each lane's 16 bytes in order. Validation: VPABSB of each code
// (−128 gives 0x80) and the unsigned byte maximum of them all in Y13; a code is bad when
// that maximum exceeds 7.
TEXT ·packBlockAVX2(SB), NOSPLIT, $0-41
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), R8
	MOVQ         k+16(FP), R9
	MOVQ         rows+24(FP), R10
	MOVQ         nkb+32(FP), CX
	MOVL         $0x0F0F0F0F, AX
	MOVD         AX, X15
	VPBROADCASTD X15, Y15         // 0x0F in every byte
	VPSLLW       $4, Y15, Y14     // 0xF0 in every byte
	VPXOR        Y13, Y13, Y13    // maximum |code|

blockloop:
	MOVQ R8, SI
	MOVQ DI, R11
	MOVQ R10, DX

rowloop:
	VMOVDQU     (SI), X0
	VINSERTI128 $1, 64(SI), Y0, Y0
	VMOVDQU     16(SI), X1
	VINSERTI128 $1, 80(SI), Y1, Y1
	VMOVDQU     32(SI), X2
	VINSERTI128 $1, 96(SI), Y2, Y2
	VMOVDQU     48(SI), X3
	VINSERTI128 $1, 112(SI), Y3, Y3
	VPABSB      Y0, Y4
	VPABSB      Y1, Y5
	VPABSB      Y2, Y6
	VPABSB      Y3, Y7
	VPMAXUB     Y5, Y4, Y4
	VPMAXUB     Y7, Y6, Y6
	VPMAXUB     Y4, Y13, Y13
	VPMAXUB     Y6, Y13, Y13
	VPAND       Y15, Y0, Y0
	VPSLLW      $4, Y1, Y1
	VPAND       Y14, Y1, Y1
	VPOR        Y1, Y0, Y0         // P = [N0 | N2]
	VPAND       Y15, Y2, Y2
	VPSLLW      $4, Y3, Y3
	VPAND       Y14, Y3, Y3
	VPOR        Y3, Y2, Y2         // Q = [N1 | N3]
	VPUNPCKLDQ  Y2, Y0, Y4
	VPUNPCKHDQ  Y2, Y0, Y5
	VPERMQ      $0xD8, Y4, Y4      // lanes tig 0, 1
	VPERMQ      $0xD8, Y5, Y5      // lanes tig 2, 3
	VMOVDQU     Y4, (R11)
	VMOVDQU     Y5, 32(R11)
	ADDQ        R9, SI
	ADDQ        $64, R11
	DECQ        DX
	JNZ         rowloop

	ADDQ $128, R8
	ADDQ $512, DI
	DECQ CX
	JNZ  blockloop

	MOVL         $0x07070707, AX
	MOVD         AX, X12
	VPBROADCASTD X12, Y12
	VPSUBUSB     Y12, Y13, Y13    // nonzero where the maximum exceeds 7
	VPTEST       Y13, Y13
	SETNE        bad+40(FP)
	VZEROUPPER
	RET
