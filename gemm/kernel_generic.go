package gemm

import "math"

// kernelGeneric is the portable micro-kernel: a 4×4 tile held in 16 scalar locals, which is
// what the Go compiler keeps in registers on amd64 (16 XMM) and arm64 without spilling. It is
// the only kernel under -tags purego and on non-amd64 targets, and the reference the assembly
// kernels are tested against.
var kernelGeneric = &microKernel{name: "generic-4x4", mr: 4, nr: 4, kc: 256, nb: 512, mb: 1024, fn: genericKernel4x4}

func genericKernel4x4(k int, a, b, c []float32, ldc int, alpha, beta float32) {
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
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	store4(c[0*ldc:0*ldc+4], c00, c01, c02, c03, alpha, beta)
	store4(c[1*ldc:1*ldc+4], c10, c11, c12, c13, alpha, beta)
	store4(c[2*ldc:2*ldc+4], c20, c21, c22, c23, alpha, beta)
	store4(c[3*ldc:3*ldc+4], c30, c31, c32, c33, alpha, beta)
}

// genericKernel4x4FMA is genericKernel4x4 with every multiply-add fused (one rounding, as
// the assembly kernels' VFMADD231PS does). Under -tags purego on an amd64 CPU with FMA it is
// the default kernel (kernels_other.go), so that the pure-Go build computes the same GEMM sums
// as the default build: unfused, the two builds' perplexities differed by up to 8e-4 relative
// on W4A8 artifacts, fused by about 1e-8 (docs/artifact.md, "Default vs pure-Go builds").
func genericKernel4x4FMA(k int, a, b, c []float32, ldc int, alpha, beta float32) {
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

// fma32 is a·b+c rounded once to float32 in all but the rarest cases: a·b is exact in
// float64, and the double rounding (to float64, then float32) can differ from a single one only
// when the first lands exactly on a float32 midpoint.
func fma32(a, b, c float32) float32 { return float32(math.FMA(float64(a), float64(b), float64(c))) }

// store4 writes one tile row: c = alpha·acc + beta·c, never reading c when beta == 0 so that
// NaN or Inf left in an uninitialised C does not leak into the result.
func store4(c []float32, x0, x1, x2, x3, alpha, beta float32) {
	c = c[:4]
	if beta == 0 {
		c[0], c[1], c[2], c[3] = alpha*x0, alpha*x1, alpha*x2, alpha*x3
		return
	}
	c[0] = alpha*x0 + beta*c[0]
	c[1] = alpha*x1 + beta*c[1]
	c[2] = alpha*x2 + beta*c[2]
	c[3] = alpha*x3 + beta*c[3]
}
