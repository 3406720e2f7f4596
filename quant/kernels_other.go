//go:build !amd64 || purego

package quant

// Without the amd64 vector kernels (other architectures, or -tags purego) quantizeGroup,
// absMaxBits and rowErrors run their Go code; hasKernels, a constant, lets the compiler drop
// the dispatch.
const hasKernels = false

func quantizeGroupAsm(w []float32, q []int8, s float32) int32 { return quantizeGroupGo(w, q, s) }

// quantizeGroupVec reports, as on amd64, whether a vector kernel computed the codes: never.
func quantizeGroupVec(w []float32, q []int8, s float32) (int32, bool) {
	return quantizeGroupGo(w, q, s), false
}

func absMaxBitsAsm(w []float32) uint32 { return absMaxBitsGo(w) }

func rowErrorsAsm(w []float32, qw *QuantizedWeight, iw *IntScaleWeight, o int) rowErr {
	return rowErrorsGo(w, qw, iw, o)
}

func weightedClipErrorsVec(a []float32, e []float64, s, inv []float32, acc []float64) bool {
	return weightedClipErrorsGo(a, e, s, inv, acc)
}
