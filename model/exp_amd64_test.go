//go:build amd64 && !purego

package model

import (
	"math"
	"testing"
)

// ulpDiff is the distance in float32 ulps between two finite float32s of the same sign.
func ulpDiff(a, b float32) int64 {
	d := int64(math.Float32bits(a)) - int64(math.Float32bits(b))
	if d < 0 {
		d = -d
	}
	return d
}

// TestExpAVX2MatchesGo compares the vector exponential of exp_amd64.s (expShiftAVX2, used
// where the CPU has AVX2 and FMA) with the pure-Go exp32 that every other machine (and
// -tags purego) uses, bit pattern by bit pattern over a dense sweep. The bounds are the
// ones the determinism note (artifact/doc.go) states:
//   - x in [-87.33, 88]: at most expAVX2MaxULP = 1 ulp apart (each is about 1 ulp from e^x);
//   - x < -87.33 (and -Inf): the vector kernel clamps x and returns about 1.2e-38 (float32's
//     smallest normal), exp32 the subnormal or 0: both at most 1.2e-38;
//   - x > 88 (and +Inf): the vector kernel returns e^88 (1.65e38), exp32 e^x or +Inf;
//   - NaN: both NaN, not necessarily the same NaN bits.
//
// Softmax, log-sum-exp and KL divergence call it with x − max(x) ≤ 0, so only the first two
// cases occur there; SiLU's e^−x takes the third for x < −88, where both give silu(x) = −0
// or a value below 1e-36.
func TestExpAVX2MatchesGo(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2+FMA: the vector kernel is not used on this CPU")
	}
	const expAVX2MaxULP = 1
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
	for len(xs)%8 != 0 {
		xs = append(xs, 0)
	}
	got := make([]float32, len(xs))
	expShiftAVX2(&got[0], &xs[0], len(xs), 0)
	worst, at, atVec := int64(0), float32(0), float32(0)
	for i, x := range xs {
		if d := ulpDiff(got[i], exp32(x)); d > worst {
			worst, at, atVec = d, x, got[i]
		}
	}
	t.Logf("%d inputs in [-87.33, 88]: at most %d ulp apart (at x = %g)", len(xs), worst, at)
	if worst > expAVX2MaxULP {
		t.Errorf("vector exp and exp32 differ by %d ulp at x = %g (exp32 %g, vector %g), bound %d", worst, at, exp32(at), atVec, expAVX2MaxULP)
	}

	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	special := []float32{-87.5, -90, -103.9, -104.5, -1000, -inf, 88.5, 89.5, 1000, inf, nan, -nan, 0, 0, 0, 0}
	out := make([]float32, len(special))
	expShiftAVX2(&out[0], &special[0], len(special), 0)
	for i, x := range special {
		g, w := out[i], exp32(x)
		ok := false
		switch {
		case x != x:
			ok = g != g && w != w
		case x < -87.33:
			ok = g >= 0 && g <= 1.2e-38 && w >= 0 && w <= 1.2e-38
		case x > 88:
			ok = g == exp32(88) && (w == inf || w >= g)
		default:
			ok = ulpDiff(g, w) <= expAVX2MaxULP
		}
		if !ok {
			t.Errorf("exp(%g): vector %g, exp32 %g: outside the documented difference", x, g, w)
		}
	}
}
