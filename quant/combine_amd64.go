//go:build amd64 && !purego

package quant

// combineAVX2 is combineFloatGo on n > 0 elements, n a multiple of 8 (combine_amd64.s).
//
//go:noescape
func combineAVX2(a, sg *int32, t *float32, n int, first bool)

// combineFloat is combineFloatGo, 8 lanes at a time where the CPU has AVX2: it runs once
// per group for every output (32 times per output at K = 4096), and in scalar code it cost
// a third as much as the GEMM's multiply-adds.
func combineFloat(a, sg []int32, t []float32, first bool) {
	n := len(a) &^ 7
	if !hasKernels || n == 0 {
		combineFloatGo(a, sg, t, first)
		return
	}
	sg, t = sg[:len(a)], t[:len(a)]
	combineAVX2(&a[0], &sg[0], &t[0], n, first)
	if n < len(a) {
		combineFloatGo(a[n:], sg[n:], t[n:], first)
	}
}
