// Package gemm is single-precision matrix multiplication for the CPU forward pass.
package gemm

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices, where op(X) is X or
// Xᵀ. op(A) is m×k, op(B) is k×n, C is m×n; lda, ldb, ldc are the row strides.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmWith(defaultKernel, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmWith is Sgemm with an explicit micro-kernel, so tests can run every kernel the CPU
// supports against the pure-Go one.
func sgemmWith(ker *microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic("gemm: negative dimension")
	}
	if m == 0 || n == 0 {
		return
	}
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	sgemm(ker, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkArgs panics, like BLAS's xerbla, on negative sizes, strides narrower than a row, or
// slices too short for the matrices they hold. The assembly kernels index raw memory, so
// these checks are what keep a wrong call from corrupting the heap.
func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ra, ca := m, k // stored shape of A
	if transA {
		ra, ca = k, m
	}
	rb, cb := k, n
	if transB {
		rb, cb = n, k
	}
	checkMat("A", ra, ca, a, lda)
	checkMat("B", rb, cb, b, ldb)
	checkMat("C", m, n, c, ldc)
}

func checkMat(name string, rows, cols int, s []float32, ld int) {
	if ld < max(1, cols) {
		panic("gemm: ld" + name + " smaller than the row width")
	}
	if rows > 0 && cols > 0 && len(s) < (rows-1)*ld+cols {
		panic("gemm: slice " + name + " too short for its dimensions")
	}
}
