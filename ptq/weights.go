package ptq

import (
	"fmt"
	"math"
	"sync"

	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
	"github.com/odyssey-llm/odyssey/quant"
)

// Int8Weight is the int8 weight of W8 runs (qresult.Int8Weight).
type Int8Weight = qresult.Int8Weight

// QuantizeInt8 rounds w [out×in] to nearest per output channel with scale max|w_o|/127.
func QuantizeInt8(w []float32, out, in int) (*Int8Weight, error) {
	if out <= 0 || in <= 0 || len(w) != out*in {
		return nil, fmt.Errorf("ptq: int8 weight: %d elements for %d×%d", len(w), out, in)
	}
	q := &Int8Weight{Out: out, In: in, Q: make([]int8, out*in), Scales: make([]float32, out)}
	for o := range out {
		row := w[o*in : (o+1)*in]
		var m float32
		for _, v := range row {
			if v != v || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("ptq: int8 weight [%d, …] is not finite", o)
			}
			m = max(m, abs32(v))
		}
		s := quant.ActScale(m) // the same m/127 (1 for a zero row) as int8 activations
		q.Scales[o] = s
		for k, v := range row {
			q.Q[o*in+k] = quant.QuantizeActValue(v, s)
		}
	}
	return q, nil
}

// relErr returns ‖a − b‖_F / ‖b‖_F in float64 (0 for b = 0 = a).
func relErr(a, b []float32) float64 {
	var num, den float64
	for i, v := range b {
		d := float64(a[i]) - float64(v)
		num += float64(d * d)
		den += float64(float64(v) * float64(v))
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// rtnActAware is round-to-nearest with a clipping search that weighs each input channel by
// its calibration energy: for every group it tries the shrink factors of grid (1 first) and
// keeps the one whose dequantized group minimises Σ_k e_k·(w_k − ŵ_k)², e_k = E[x_k²]. That
// is the diagonal part of the layer-output error ‖X·(W − Ŵ)ᵀ‖² that GPTQ minimises in full:
// a weight that meets large inputs is kept precise at the expense of one that meets small
// ones, which the unweighted search (quant.RTNOptions.ClipSearch) cannot tell apart. Codes
// and scales follow quant.SymScale and quant.QuantizeValue, so the result is an ordinary
// QuantizedWeight.
func rtnActAware(w []float32, out, in, gs int, e []float64, grid []float32) (*quant.QuantizedWeight, error) {
	if len(w) != out*in || gs <= 0 || in%gs != 0 || len(e) != in {
		return nil, fmt.Errorf("ptq: activation-aware RTN: %d weights for %d×%d, group %d, %d channel energies", len(w), out, in, gs, len(e))
	}
	if grid == nil {
		grid = quant.DefaultClipGrid()
	}
	cands := []float32{1}
	for _, c := range grid {
		if !(c >= quant.MinClip && c <= 1) {
			return nil, fmt.Errorf("ptq: clip factor %v outside [%v, 1]", c, quant.MinClip)
		}
		if c != 1 {
			cands = append(cands, c)
		}
	}
	ng := in / gs
	qw := &quant.QuantizedWeight{Out: out, In: in, GroupSize: gs, Q: quant.NewCodes(out * in), Scales: make([]float32, out*ng)}
	var bad error
	var once sync.Once
	nc := len(cands)
	parallel.Ranges(out, 4, func(lo, hi int) {
		// Per candidate: the scale, its reciprocal and the error accumulated so far.
		// quant.WeightedClipErrors sums every candidate's errors over the group's
		// magnitudes, four candidates per vector register on amd64; each candidate's sum
		// still adds its terms in k order, so the errors, and the choice, are bit for bit
		// those of the one-candidate-at-a-time loop below (and of rtnActAwareRef in the
		// tests). The candidates are padded to a multiple of 4 with copies of the last,
		// which cannot win: the choice takes the first of equal errors. Where it refuses (a
		// product next to a half-integer: about 1.5% of Gaussian groups) or a reciprocal
		// is not finite and normal, the loop below divides.
		ncPad := (nc + 3) &^ 3
		scale, inv := make([]float32, ncPad), make([]float32, ncPad)
		acc := make([]float64, ncPad)
		mag := make([]float32, gs)
		for o := lo; o < hi; o++ {
			for g := range ng {
				k0 := o*in + g*gs
				wg, qg, eg := w[k0:k0+gs], qw.Q[k0:k0+gs], e[g*gs:(g+1)*gs]
				var absmax float32
				for _, v := range wg {
					if v != v || math.IsInf(float64(v), 0) {
						once.Do(func() { bad = fmt.Errorf("ptq: weight [%d, …] is not finite", o) })
						return
					}
					absmax = max(absmax, abs32(v))
				}
				allFast := true
				for ci, c := range cands {
					s := quant.SymScale(absmax, c)
					scale[ci], inv[ci] = s, 1/s
					// A finite normal reciprocal keeps v·(1/s) within 2 ulps of v/s.
					allFast = allFast && s >= 0x1p-126 && inv[ci] <= math.MaxFloat32
				}
				if !allFast || !weightedClipErrors(wg, eg, mag, scale, inv, acc, nc) {
					for ci := range nc {
						acc[ci] = 0
						for k, v := range wg {
							q := int(quant.QuantizeValue(v, scale[ci]))
							d := float64(float32(scale[ci]*float32(q))) - float64(v)
							acc[ci] += float64(eg[k] * d * d)
						}
					}
				}
				best, bestErr := 0, math.Inf(1)
				for ci := range nc {
					if acc[ci] < bestErr {
						best, bestErr = ci, acc[ci]
					}
				}
				s, sInv := scale[best], inv[best]
				qw.Scales[o*ng+g] = s
				for k, v := range wg {
					qa, ok := roundRecip(abs32(v), sInv)
					if !ok || !allFast {
						qa = int(quant.QuantizeValue(abs32(v), s))
					}
					// v's sign without a branch (half the weights are negative, at random):
					// the arithmetic shift of its bits gives −1 or 0, | 1 makes it ±1.
					qg[k] = int8(qa * int(int32(math.Float32bits(v))>>31|1))
				}
			}
		}
	})
	if bad != nil {
		return nil, bad
	}
	return qw, nil
}

// roundRecip returns min(round(a·inv), Int4Max) for a ≥ 0 and reports whether that is
// round(a/s), the correctly rounded quotient's rounding, for inv = 1/s finite and normal.
// a·inv is within 2 ulps of a/s (two roundings of 2⁻²⁴ each), so the two round to the same
// integer unless a·inv lies within a few ulps of a half-integer: there ok is false and the
// caller divides as quant.QuantizeValue does. Multiplying is several times cheaper than
// the float32 division, which dominated the clip search.
func roundRecip(a, inv float32) (q int, ok bool) {
	t := float64(a * inv)
	r := float64(int64(t + 0.5)) // t + 0.5 is exact for t < 2⁵², and int64() truncates
	// Above Int4Max + 0.5 (plus the margin) both round past Int4Max and clamp to it: a
	// half-integer there (the group maximum's 7/c for some clip factors c) is no tie.
	return min(int(r), quant.Int4Max), 0.5-math.Abs(t-r) > t*0x1p-20 || t-(quant.Int4Max+0.5) > t*0x1p-20
}

// weightedClipErrors zeroes acc, pads the nc candidates of scale, inv and acc (len a multiple
// of 4) with copies of the last, writes the magnitudes of wg into mag and runs
// quant.WeightedClipErrors on them; false means acc is to be recomputed.
func weightedClipErrors(wg []float32, eg []float64, mag, scale, inv []float32, acc []float64, nc int) bool {
	clear(acc)
	for c := nc; c < len(scale); c++ {
		scale[c], inv[c] = scale[nc-1], inv[nc-1]
	}
	for k, v := range wg {
		mag[k] = abs32(v)
	}
	return quant.WeightedClipErrors(mag, eg, scale, inv, acc)
}
