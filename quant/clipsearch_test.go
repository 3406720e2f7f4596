package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// clipCase builds one group: magnitudes (some on and next to the half-integer points of the
// candidate scales), energies, and nc candidate scales with their reciprocals.
func clipCase(r *rand.Rand, n, nc int, ties bool) (a []float32, e []float64, s, inv []float32) {
	absmax := float32(math.Ldexp(1+r.Float64(), r.IntN(60)-40))
	s, inv = make([]float32, nc), make([]float32, nc)
	for c := range nc {
		s[c] = SymScale(absmax, 1-0.5*float32(c)/float32(max(1, nc-1)))
		inv[c] = 1 / s[c]
	}
	a, e = make([]float32, n), make([]float64, n)
	for k := range n {
		v := absmax * float32(r.Float64())
		if ties && r.IntN(3) == 0 {
			sc := s[r.IntN(nc)]
			v = (float32(r.IntN(8)) + 0.5) * sc
			switch r.IntN(3) {
			case 1:
				v = math.Nextafter32(v, 0)
			case 2:
				v = math.Nextafter32(v, math.MaxFloat32)
			}
			v = min(v, absmax)
		}
		a[k], e[k] = v, r.ExpFloat64()
	}
	return a, e, s, inv
}

// The vector kernel (amd64 with AVX2) against the Go loop: the same ok and, when ok, the same
// sums bit for bit, for candidate counts that leave 0–3 to the Go tail.
func TestWeightedClipErrorsVector(t *testing.T) {
	if !hasKernels {
		t.Skip("no vector kernels on this machine (or ODYSSEY_NO_SIMD set)")
	}
	r := rand.New(rand.NewPCG(3, 5))
	var oks, fails int
	for i := range 3000 {
		n, nc := 1+r.IntN(160), 1+r.IntN(23)
		a, e, s, inv := clipCase(r, n, nc, i%2 == 1)
		init := make([]float64, nc)
		for c := range init {
			init[c] = r.Float64()
		}
		got, want := append([]float64(nil), init...), append([]float64(nil), init...)
		okGot := WeightedClipErrors(a, e, s, inv, got)
		okWant := weightedClipErrorsGo(a, e, s, inv, want)
		if okGot != okWant {
			t.Fatalf("case %d (n %d, %d candidates): ok %v, Go %v", i, n, nc, okGot, okWant)
		}
		if !okWant {
			fails++
			continue
		}
		oks++
		for c := range want {
			if math.Float64bits(got[c]) != math.Float64bits(want[c]) {
				t.Fatalf("case %d (n %d, %d candidates): candidate %d: sum %v, Go %v", i, n, nc, c, got[c], want[c])
			}
		}
	}
	if oks < 1000 || fails < 100 {
		t.Fatalf("%d cases summed, %d refused: the cases do not cover both outcomes", oks, fails)
	}
}

// The Go loop's sums are the division's wherever it reports ok: q from a/s (QuantizeValue).
func TestWeightedClipErrorsMatchesDivision(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	for i := range 2000 {
		a, e, s, inv := clipCase(r, 1+r.IntN(130), 1+r.IntN(21), i%2 == 1)
		got := make([]float64, len(s))
		if !WeightedClipErrors(a, e, s, inv, got) {
			continue
		}
		for c := range s {
			var want float64
			for k, av := range a {
				d := float64(float32(s[c]*float32(QuantizeValue(av, s[c])))) - float64(av)
				want += float64(e[k] * d * d)
			}
			if math.Float64bits(got[c]) != math.Float64bits(want) {
				t.Fatalf("case %d candidate %d: %v, by division %v", i, c, got[c], want)
			}
		}
	}
}

func BenchmarkWeightedClipErrors(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	a, e, s, inv := clipCase(r, 128, 21, false)
	acc := make([]float64, 21)
	b.SetBytes(128 * 4)
	for b.Loop() {
		WeightedClipErrors(a, e, s, inv, acc)
	}
}
