//go:build amd64 && !purego

package model

import (
	"math"
	"testing"
)

// TestExpAVX2MatchesGo compares the vector kernels of exp_amd64.s (used where the CPU has
// AVX2 and FMA) with the pure-Go code that every other machine (and -tags purego) runs: they
// implement the same canonical arithmetic (exp32's comment, docs/determinism.md), so the
// exponentials, ExpSum's float64 sums and SwiGLU's outputs must be bit-identical, over a
// dense sweep of [-87.33, 88], small magnitudes of both signs, the clamped ranges and the
// infinities. NaN gives NaN on both sides, not necessarily the same NaN bits.
func TestExpAVX2MatchesGo(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2+FMA: the vector kernel is not used on this CPU")
	}
	var xs []float32
	for k := 0; ; k++ { // a grid of step 2^-15 over the whole range: 5.7 million inputs
		x := float32(-87.33 + float64(k)*0x1p-15)
		if x > 88 {
			break
		}
		xs = append(xs, x)
	}
	for e := -126; e < 7; e++ { // and small magnitudes, a few per binade, both signs
		for _, m := range []float64{1, 1.2345, 1.5, 1.999} {
			if v := float32(math.Ldexp(m, e)); v <= 87 {
				xs = append(xs, v, -v)
			}
		}
	}
	inf := float32(math.Inf(1))
	xs = append(xs, -87.5, -90, -103.9, -104.5, -1000, -inf, 88.5, 89.5, 1000, inf, 0, float32(math.Copysign(0, -1)))
	for len(xs)%8 != 0 {
		xs = append(xs, 0)
	}
	got := make([]float32, len(xs))
	sumVec := expShiftAVX2(&got[0], &xs[0], len(xs), 0)
	for i, x := range xs {
		if w := exp32(x); math.Float32bits(got[i]) != math.Float32bits(w) {
			t.Fatalf("exp(%g): vector %g (%08x), exp32 %g (%08x)", x, got[i], math.Float32bits(got[i]), w, math.Float32bits(w))
		}
	}
	want := make([]float32, len(xs))
	if sumGo := expShiftGo(want, xs, 0); math.Float64bits(sumGo) != math.Float64bits(sumVec) {
		t.Errorf("Σ e^x: vector %v, Go %v", sumVec, sumGo)
	}
	// A shift, and sums through ExpSum with a ragged tail on both paths.
	for _, n := range []int{8, 13, 64, 1001} {
		x := xs[len(xs)/3 : len(xs)/3+n]
		d1, d2 := make([]float32, n), make([]float32, n)
		s1 := ExpSum(d1, x, 3.5)
		s2 := expShiftGo(d2[:n&^7], x[:n&^7], 3.5)
		for i := n &^ 7; i < n; i++ {
			d2[i] = exp32(x[i] - 3.5)
			s2 += float64(d2[i])
		}
		if math.Float64bits(s1) != math.Float64bits(s2) {
			t.Errorf("ExpSum n=%d: %v, Go order %v", n, s1, s2)
		}
		for i := range d1 {
			if d1[i] != d2[i] {
				t.Fatalf("ExpSum n=%d: e[%d] = %g, Go %g", n, i, d1[i], d2[i])
			}
		}
	}
	for _, x := range []float32{float32(math.NaN()), -float32(math.NaN())} {
		v := []float32{x, x, x, x, x, x, x, x}
		expShiftAVX2(&v[0], &v[0], 8, 0)
		if v[0] == v[0] || exp32(x) == exp32(x) {
			t.Errorf("exp(NaN): vector %g, exp32 %g", v[0], exp32(x))
		}
	}
	// SwiGLU: siluMulAVX2 against the Go loop, over the same sweep (u varies too).
	g1 := append([]float32(nil), xs...)
	u := make([]float32, len(xs))
	for i := range u {
		u[i] = float32(i%17) - 8.25
	}
	g2 := append([]float32(nil), xs...)
	siluMulAVX2(&g1[0], &u[0], len(g1))
	for i, x := range g2 {
		g2[i] = x / (1 + exp32(0-x)) * u[i]
	}
	for i := range g1 {
		if math.Float32bits(g1[i]) != math.Float32bits(g2[i]) {
			t.Fatalf("silu(%g)·%g: vector %g, Go %g", xs[i], u[i], g1[i], g2[i])
		}
	}
}
