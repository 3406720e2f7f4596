package quant

import "math"

// WeightedClipErrors is the inner loop of an energy-weighted clipping search over one group
// (ptq's activation-aware RTN): for every candidate c, in ascending k, it adds
//
//	float64(e[k]·d·d),  d = float64(float32(s[c]·float32(q))) − float64(a[k]),
//	q = min(round(a[k]/s[c]), Int4Max)
//
// to acc[c], where a holds the group's magnitudes |w_k| (finite) and inv[c] = 1/s[c] is finite
// and normal. With q and w both negated d only changes sign, so magnitudes give the signed
// search's sums exactly. The quotient's rounding is taken from a[k]·inv[c], which is within 2
// ulps of a[k]/s[c]; when some product lies within 2⁻²⁰ of its own magnitude of a half-integer,
// where the two could round apart (and below Int4Max + 0.5, above which both clamp), it
// returns false and acc holds partial sums to be thrown
// away: the caller then divides (QuantizeValue). Each acc[c] is one float64 sum in k order,
// so the vector kernel (amd64, four candidates per register) gives the same bits as the loop
// here; len(s), len(inv) and len(acc) must be equal, and len(e) ≥ len(a).
func WeightedClipErrors(a []float32, e []float64, s, inv []float32, acc []float64) bool {
	if len(inv) != len(s) || len(acc) != len(s) || len(e) < len(a) {
		panic("quant: WeightedClipErrors: mismatched lengths")
	}
	if hasKernels && len(s) >= 4 && len(a) > 0 {
		return weightedClipErrorsVec(a, e, s, inv, acc)
	}
	return weightedClipErrorsGo(a, e, s, inv, acc)
}

// weightedClipErrorsGo is WeightedClipErrors in Go: the reference of the vector kernel.
func weightedClipErrorsGo(a []float32, e []float64, s, inv []float32, acc []float64) bool {
	inv, acc = inv[:len(s)], acc[:len(s)]
	for k, av := range a {
		ek, fa := e[k], float64(av)
		for c, ic := range inv {
			t := float64(av * ic)
			r := float64(int64(t + 0.5)) // t + 0.5 is exact (t < 2⁵²); int64() truncates
			// Above 7.5 + the margin both round past Int4Max and clamp to it.
			if !(0.5-math.Abs(t-r) > t*0x1p-20 || t-(Int4Max+0.5) > t*0x1p-20) {
				return false
			}
			d := float64(float32(s[c]*float32(min(r, Int4Max)))) - fa
			acc[c] += float64(ek * d * d)
		}
	}
	return true
}
