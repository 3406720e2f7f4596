//go:build amd64 && !purego

package quant

import (
	"os"

	"golang.org/x/sys/cpu"
)

// Vector kernels of the RTN and error loops (kernels_amd64.s), selected at start-up.
// x/sys/cpu reports AVX2 only when the OS saves the YMM state. The assembly handles whole
// groups of 8 elements; the last len%8 go through the Go code, which stays the reference
// (quantizeGroupGo, absMaxBitsGo, rowErrorsGo) and the fallback on CPUs without AVX2 and FMA.
// ODYSSEY_NO_SIMD=1 turns them off (the Go code computes the same bits; the determinism tests
// run the pipeline both ways).
var hasKernels = cpu.X86.HasAVX2 && cpu.X86.HasFMA && os.Getenv("ODYSSEY_NO_SIMD") == ""

// The assembly routines take n > 0 elements (n ≥ 0 for the error kernels), a multiple of 8;
// the pointers need no alignment.

// quantizeGroupAVX2 is quantizeGroupGo for s > 0, returning ok = false (and codes and sum
// to be discarded) when some |w|/s is NaN or not below 2³¹ − 2²³.
//
//go:noescape
func quantizeGroupAVX2(w *float32, q *int8, n int, s float32) (sum int32, ok bool)

//go:noescape
func absMaxBitsAVX2(w *float32, n int) uint32

// groupErrAVX2 adds, for the n weights at w and codes at q, (float64(s·float32(q)) −
// float64(w))² to the lanes of acc[0:8], (float64(se·float32(q)) − float64(w))² to
// acc[8:16] and float64(w)² to acc[16:24]: element j of each 8 goes to lane j of its sum.
//
//go:noescape
func groupErrAVX2(w *float32, q *int8, n int, s, se float32, acc *[24]float64)

// groupErrFloatAVX2 is groupErrAVX2 without the second sum: acc[8:16] is left alone, the
// other lanes receive exactly what groupErrAVX2 would add.
//
//go:noescape
func groupErrFloatAVX2(w *float32, q *int8, n int, s float32, acc *[24]float64)

// quantizeGroupAsm is quantizeGroup on the vector unit, bit for bit, for every input (not
// only those of the documented range: see kernels_amd64.s).
func quantizeGroupAsm(w []float32, q []int8, s float32) int32 {
	sum, _ := quantizeGroupVec(w, q, s)
	return sum
}

// quantizeGroupVec is quantizeGroupAsm, also reporting whether the vector kernel computed the
// codes. It leaves to the Go code groups shorter than 8, scales that are not > 0 (negative,
// zero, NaN: there truncation toward zero and the kernel's rounding part ways) and groups
// in which some |w|/s is NaN or at least 2³¹ − 2²³, where the Go conversion to int32 gives
// its out-of-range value.
func quantizeGroupVec(w []float32, q []int8, s float32) (sum int32, vec bool) {
	q = q[:len(w)]
	n := len(w) &^ 7
	if n == 0 || !(s > 0) {
		return quantizeGroupGo(w, q, s), false
	}
	sum, ok := quantizeGroupAVX2(&w[0], &q[0], n, s)
	if !ok {
		return quantizeGroupGo(w, q, s), false
	}
	if n < len(w) {
		sum += quantizeGroupGo(w[n:], q[n:], s)
	}
	return sum, true
}

// absMaxBitsAsm is absMaxBits on the vector unit.
func absMaxBitsAsm(w []float32) uint32 {
	n := len(w) &^ 7
	if n == 0 {
		return absMaxBitsGo(w)
	}
	m := absMaxBitsAVX2(&w[0], n)
	if n < len(w) {
		m = max(m, absMaxBitsGo(w[n:]))
	}
	return m
}

// rowErrorsAsm is rowErrors with the groups summed by the vector kernels: 8 float64 partial
// sums per quantity (one per lane of the 8 elements the kernel takes at a time), carried
// across the row's groups, plus one for the ≤ 7 trailing elements of each group, added in a
// fixed order at the end: bit for bit rowErrorsGo (the canonical order, described there). The
// float and weight sums are the same with and without iw.
func rowErrorsAsm(w []float32, qw *QuantizedWeight, iw *IntScaleWeight, o int) rowErr {
	k, gs, ng := qw.In, qw.GroupSize, qw.NumGroups()
	w = w[:k]
	q := qw.Q[o*k : (o+1)*k : (o+1)*k]
	var acc [24]float64
	var tail rowErr // the trailing elements of the groups
	var f float32
	if iw != nil {
		f = iw.ChannelScale[o] / float32(iw.Alpha(o))
	}
	for g := 0; g < ng; g++ {
		k0 := g * gs
		k1 := min(k0+gs, k)
		m := k0 + (k1-k0)&^7
		s := qw.Scales[o*ng+g]
		var se float32
		if iw == nil {
			if m > k0 {
				groupErrFloatAVX2(&w[k0], &q[k0], m-k0, s, &acc)
			}
		} else {
			se = float32(iw.IntScales[o*ng+g]) * f
			if m > k0 {
				groupErrAVX2(&w[k0], &q[k0], m-k0, s, se, &acc)
			}
		}
		addGroupErrs(&tail, w[m:k1], q[m:k1], s, se, iw != nil)
	}
	return rowErr{lanes8(acc[0:8]) + tail[0], lanes8(acc[8:16]) + tail[1], lanes8(acc[16:24]) + tail[2]}
}

// clipErrorsAVX2 is weightedClipErrorsGo for four candidates (s[0:4], inv[0:4], acc[0:4]) and
// n > 0 magnitudes: the four sums live in one register, each lane adding its own terms in k
// order with separate multiplies and adds (no FMA: the Go code's float64() conversion forbids
// fusing). It returns false as soon as a product is too close to a half-integer.
//
//go:noescape
func clipErrorsAVX2(a *float32, e *float64, n int, s, inv *float32, acc *float64) bool

// weightedClipErrorsVec runs the candidates four at a time on the vector unit and the last
// len(s)%4 in Go; all sums are independent, so the split changes no bit.
func weightedClipErrorsVec(a []float32, e []float64, s, inv []float32, acc []float64) bool {
	n4 := len(s) &^ 3
	for c := 0; c < n4; c += 4 {
		if !clipErrorsAVX2(&a[0], &e[0], len(a), &s[c], &inv[c], &acc[c]) {
			return false
		}
	}
	if n4 < len(s) {
		return weightedClipErrorsGo(a, e, s[n4:], inv[n4:], acc[n4:])
	}
	return true
}
