package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExpSum checks the (vector) exponentials against math.Exp over float32's range, for
// lengths that exercise the vector body and the scalar tail.
func TestExpSum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 7, 8, 9, 31, 64, 1000} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.Float64()*170 - 85)
		}
		dst := make([]float32, n)
		const shift = 1.5
		sum := ExpSum(dst, x, shift)
		if s2 := ExpSum(nil, x, shift); s2 != sum {
			t.Errorf("n=%d: sum without dst %g, with %g", n, s2, sum)
		}
		var want float64
		for i, v := range x {
			w := math.Exp(float64(v - shift))
			want += w
			if w > 1e-37 && w < 1e38 {
				if e := math.Abs(float64(dst[i])-w) / w; e > 2.5e-7 {
					t.Errorf("n=%d: exp(%g) = %g, want %g (relative error %.2g)", n, v-shift, dst[i], w, e)
				}
			}
		}
		if e := math.Abs(sum-want) / want; e > 1e-6 {
			t.Errorf("n=%d: sum %g, want %g", n, sum, want)
		}
	}
	// Clamped extremes: tiny values underflow to (nearly) zero, NaN propagates.
	x := []float32{-200, -1000, 0, 0, 0, 0, 0, float32(math.NaN())}
	dst := make([]float32, 8)
	s := ExpSum(dst, x, 0)
	if dst[0] > 1e-37 || dst[1] > 1e-37 || dst[2] != 1 || !math.IsNaN(float64(dst[7])) || !math.IsNaN(s) {
		t.Errorf("ExpSum(%v) = %v, sum %g", x, dst, s)
	}
}

func TestSwigluAndMax(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{3, 8, 13, 4096 + 5} {
		g, u := make([]float32, n), make([]float32, n)
		for i := range g {
			g[i] = float32(r.NormFloat64() * 8)
			u[i] = float32(r.NormFloat64())
		}
		g[0] = -100 // e^100 overflows float32 in silu's denominator
		want := make([]float64, n)
		for i := range g {
			x := float64(g[i])
			want[i] = x / (1 + math.Exp(-x)) * float64(u[i])
		}
		m := g[0]
		for _, v := range g {
			m = max(m, v)
		}
		if got := maxF32(g); got != m {
			t.Errorf("n=%d: maxF32 = %g, want %g", n, got, m)
		}
		swiglu(g, u)
		for i := range g {
			if e := math.Abs(float64(g[i]) - want[i]); e > 1e-6*(1+math.Abs(want[i])) {
				t.Errorf("n=%d: swiglu[%d] = %g, want %g", n, i, g[i], want[i])
			}
		}
	}
}
