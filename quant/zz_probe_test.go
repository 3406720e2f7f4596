package quant

import (
	"testing"
)

func BenchmarkProbeRTN1Worker(b *testing.B) {
	const out, in = 4096, 11008
	w := randWeights(out*in, 1)
	b.SetBytes(2 * out * in)
	b.ResetTimer()
	for b.Loop() {
		if _, err := RTN(w, out, in, 128, RTNOptions{Workers: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProbeRTNPrealloc(b *testing.B) {
	const out, in = 4096, 11008
	w := randWeights(out*in, 1)
	qw := newQuantizedWeight(out, in, 128)
	grid := []float32{1}
	b.SetBytes(2 * out * in)
	b.ResetTimer()
	for b.Loop() {
		parallelBlocks(out, 16, 0, func(r0, r1 int) error { return rtnRows(w, qw, r0, r1, grid, nil) })
	}
}

func BenchmarkProbeAlloc(b *testing.B) {
	const out, in = 4096, 11008
	b.SetBytes(2 * out * in)
	for b.Loop() {
		qw := newQuantizedWeight(out, in, 128)
		sinkQ = qw.Q
	}
}

var sinkQ []int8

func BenchmarkProbeQuantGroupL1(b *testing.B) {
	w := randWeights(128, 3)
	q := make([]int8, 128)
	b.SetBytes(128 * 2)
	for b.Loop() {
		quantizeGroup(w, q, 0.01)
	}
}

func BenchmarkProbeRowsL2(b *testing.B) {
	const out, in = 16, 11008
	w := randWeights(out*in, 1)
	qw := newQuantizedWeight(out, in, 128)
	grid := []float32{1}
	b.SetBytes(2 * out * in)
	for b.Loop() {
		rtnRows(w, qw, 0, out, grid, nil)
	}
}
