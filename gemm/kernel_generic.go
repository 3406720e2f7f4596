package gemm

import "math"

// The canonical arithmetic (docs/determinism.md). Every micro-kernel, assembly or Go,
// computes each element of C in exactly this order, so that Sgemm's result does not depend on
// the kernel the CPU selects, on the build (-tags purego), on the architecture or on the
// number of goroutines:
//
//	for each K block [p0, p0+kc) with kc = canonicalKC (the last block may be shorter):
//	    acc = 0
//	    for p in the block, in order:  acc = fma(op(A)[i][p], op(B)[p][j], acc)  (one rounding)
//	    t = alpha·acc                                  (rounded to float32)
//	    C = beta0 == 0 ? t : fma(beta0, C, t)          beta0 = beta in the first block, else 1
//
// fma(x, 1·y) with beta0 = 1 is the rounded sum C + t. The goroutine split only decides which
// goroutine computes an element, never how. Edge tiles are computed into a scratch tile with
// alpha = 1, beta = 0 (t = acc exactly) and merged with the same formula (mergeTile).
const canonicalKC = 384

// kernelGeneric is the portable micro-kernel: a 4×4 tile held in 16 scalar locals, which is
// what the Go compiler keeps in registers on amd64 (16 XMM) and arm64 without spilling. It is
// the only kernel under -tags purego and on non-amd64 targets, and the reference the assembly
// kernels are tested against bit for bit. Every multiply-add is fma32 (one rounding, as the
// assembly kernels' VFMADD231PS), whatever the CPU: on a CPU without hardware FMA this is
// slower than an unfused product, but the same numbers.
var kernelGeneric = &microKernel{name: "generic-4x4", mr: 4, nr: 4, kc: canonicalKC, nb: 512, mb: 1024, fn: genericKernel4x4}

func genericKernel4x4(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	a = a[:4*k] // one bounds check here lets the compiler drop those in the loop
	b = b[:4*k]
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	var mid uint64 // bit 63 set once a sum lands on a float32 midpoint
	for p := 0; p+4 <= len(a) && p+4 <= len(b); p += 4 {
		aa := a[p : p+4 : p+4]
		bb := b[p : p+4 : p+4]
		a0, a1, a2, a3 := float64(aa[0]), float64(aa[1]), float64(aa[2]), float64(aa[3])
		b0, b1, b2, b3 := float64(bb[0]), float64(bb[1]), float64(bb[2]), float64(bb[3])
		c00 = fmaFast(a0, b0, c00, &mid)
		c01 = fmaFast(a0, b1, c01, &mid)
		c02 = fmaFast(a0, b2, c02, &mid)
		c03 = fmaFast(a0, b3, c03, &mid)
		c10 = fmaFast(a1, b0, c10, &mid)
		c11 = fmaFast(a1, b1, c11, &mid)
		c12 = fmaFast(a1, b2, c12, &mid)
		c13 = fmaFast(a1, b3, c13, &mid)
		c20 = fmaFast(a2, b0, c20, &mid)
		c21 = fmaFast(a2, b1, c21, &mid)
		c22 = fmaFast(a2, b2, c22, &mid)
		c23 = fmaFast(a2, b3, c23, &mid)
		c30 = fmaFast(a3, b0, c30, &mid)
		c31 = fmaFast(a3, b1, c31, &mid)
		c32 = fmaFast(a3, b2, c32, &mid)
		c33 = fmaFast(a3, b3, c33, &mid)
	}
	if mid>>63 != 0 || hasTiny(a) || hasTiny(b) {
		// Some sum landed on a float32 midpoint, or tiny inputs could make a sum below
		// float32's normal range inexact: redo the tile with the exact fma32 (C is not
		// written yet).
		genericKernel4x4Exact(k, a, b, c, ldc, alpha, beta)
		return
	}
	store4(c[0*ldc:0*ldc+4], c00, c01, c02, c03, alpha, beta)
	store4(c[1*ldc:1*ldc+4], c10, c11, c12, c13, alpha, beta)
	store4(c[2*ldc:2*ldc+4], c20, c21, c22, c23, alpha, beta)
	store4(c[3*ldc:3*ldc+4], c30, c31, c32, c33, alpha, beta)
}

// fmaFast is fma32's fast path, small enough to inline into the kernel loop: it returns
// float32(a·b + c) with the float64 sum rounded twice, and sets bit 63 of *mid when that sum's
// 29 dropped bits were exactly a float32 midpoint (1000…0: x−1 wraps only for x = 0), the one
// case in the normal range where rounding twice can differ from rounding once. The kernel
// checks it once per tile. Sums below float32's normal range need no check here: they are
// exact in float64 (so rounded once) unless some input is tiny, which hasTiny looks for.
func fmaFast(a, b float64, c float32, mid *uint64) float32 {
	s := float64(a*b) + float64(c) // a·b is exact, so fusing would not change s; kept unfused for CI's check
	*mid |= (math.Float64bits(s)&(1<<29-1) ^ 1<<28) - 1
	return float32(s)
}

// hasTiny reports whether x holds a non-zero value below 2^-65 in magnitude. Without one, a
// product a·b of the kernel is 0 or a multiple of 2^-176 (two 24-bit significands, exponents
// ≥ −65), and the float32 accumulator a multiple of 2^-149, so any sum below 2^-126 (float32's
// normal range, where fewer bits are kept) is a multiple of 2^-176 under 2^-126: at most 50
// bits, exact in float64, and float32(s) is then a single rounding.
func hasTiny(x []float32) bool {
	m := uint32(math.MaxUint32)
	for _, v := range x {
		m = min(m, math.Float32bits(v)&0x7fffffff-1) // 0 wraps to the maximum
	}
	return m < (127-65)<<23-1
}

// genericKernel4x4Exact is genericKernel4x4 with fma32 for every multiply-add, for the rare
// tiles where the fast path cannot vouch for its rounding.
func genericKernel4x4Exact(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	a = a[:4*k] // one bounds check here lets the compiler drop those in the loop
	b = b[:4*k]
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	for p := 0; p+4 <= len(a) && p+4 <= len(b); p += 4 {
		aa := a[p : p+4 : p+4]
		bb := b[p : p+4 : p+4]
		a0, a1, a2, a3 := aa[0], aa[1], aa[2], aa[3]
		b0, b1, b2, b3 := bb[0], bb[1], bb[2], bb[3]
		c00 = fma32(a0, b0, c00)
		c01 = fma32(a0, b1, c01)
		c02 = fma32(a0, b2, c02)
		c03 = fma32(a0, b3, c03)
		c10 = fma32(a1, b0, c10)
		c11 = fma32(a1, b1, c11)
		c12 = fma32(a1, b2, c12)
		c13 = fma32(a1, b3, c13)
		c20 = fma32(a2, b0, c20)
		c21 = fma32(a2, b1, c21)
		c22 = fma32(a2, b2, c22)
		c23 = fma32(a2, b3, c23)
		c30 = fma32(a3, b0, c30)
		c31 = fma32(a3, b1, c31)
		c32 = fma32(a3, b2, c32)
		c33 = fma32(a3, b3, c33)
	}
	store4(c[0*ldc:0*ldc+4], c00, c01, c02, c03, alpha, beta)
	store4(c[1*ldc:1*ldc+4], c10, c11, c12, c13, alpha, beta)
	store4(c[2*ldc:2*ldc+4], c20, c21, c22, c23, alpha, beta)
	store4(c[3*ldc:3*ldc+4], c30, c31, c32, c33, alpha, beta)
}

// fma32 is a·b+c rounded once to float32 (IEEE fusedMultiplyAdd), on every CPU. The product
// of two float32 is exact in float64 (24+24 significant bits), so s = p + c has a single
// float64 rounding; rounding s again to float32 can differ from rounding the exact sum once
// only when s lands exactly on a float32 midpoint (its 29 dropped bits are 1000…0), or when
// the result is below float32's normal range, where fewer bits are kept. Those rare cases go
// to roundOdd. The fast path needs no FMA instruction, so it is the same function on CPUs
// with and without one (p is exact, so fusing p + c would not change s; the conversion keeps the
// compiler from fusing anyway, so that CI's no-fused-site check stays empty).
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := float64(p) + float64(c)
	if bits := math.Float64bits(s); bits&(1<<29-1) == 1<<28 || bits&(0x7ff<<52) < (1023-126)<<52 {
		s = roundOdd(p, float64(c), s)
	}
	return float32(s)
}

// FMA32 is a·b+c rounded once to float32 (IEEE 754 fusedMultiplyAdd) on every CPU and
// build, for the pure-Go code that must compute what an assembly FMA computes (model's exp
// replicates the vector exp with it). It is not fast: use it off hot loops or where the
// vector kernel is absent.
func FMA32(a, b, c float32) float32 { return fma32(a, b, c) }

// roundOdd returns s = fl64(p + c) rounded to odd instead of to nearest: when the sum was
// inexact (the two-sum error e is not 0) and s's last bit is even, s moves one float64 ulp
// toward the exact sum. Rounding a round-to-odd float64 (53 bits) to float32 (24) is the
// correctly rounded float32 of the exact sum, since 53 ≥ 2·24 + 2 (Boldo and Melquiond).
// Non-finite sums (Inf or NaN inputs) are returned as they are.
//
//go:noinline
func roundOdd(p, c, s float64) float64 {
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return s
	}
	bb := s - p
	e := (p - (s - bb)) + (c - bb) // exact: p + c = s + e (Knuth's two-sum)
	bits := math.Float64bits(s)
	if e == 0 || bits&1 != 0 {
		return s
	}
	if (e > 0) == (s > 0) {
		return math.Float64frombits(bits + 1) // away from zero, toward the exact sum
	}
	return math.Float64frombits(bits - 1)
}

// update is the canonical C update of one element: t = alpha·acc rounded to float32, then
// C = t when beta == 0 (C not read, so NaN or Inf left in an uninitialised C does not leak
// into the result), C + t when beta == 1 (the blocked K loop's case), fma(beta, C, t)
// otherwise, which is what the assembly kernels' VMULPS and VFMADD231PS compute. The
// explicit float32 conversion keeps the compiler from fusing alpha·acc into the addition
// (the Go spec allows fusing x·y + z; arm64 does it).
func update(c *float32, acc, alpha, beta float32) {
	t := float32(alpha * acc)
	switch beta {
	case 0:
		*c = t
	case 1:
		*c += t
	default:
		*c = fma32(beta, *c, t)
	}
}

// store4 writes one tile row with the canonical update.
func store4(c []float32, x0, x1, x2, x3, alpha, beta float32) {
	c = c[:4]
	update(&c[0], x0, alpha, beta)
	update(&c[1], x1, alpha, beta)
	update(&c[2], x2, alpha, beta)
	update(&c[3], x3, alpha, beta)
}
