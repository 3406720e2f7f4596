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
	parallel.Ranges(out, 4, func(lo, hi int) {
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
				best, bestErr := float32(0), math.Inf(1)
				for _, c := range cands {
					s := quant.SymScale(absmax, c)
					var err float64
					for k, v := range wg {
						d := float64(float32(s*float32(quant.QuantizeValue(v, s)))) - float64(v)
						err += float64(eg[k] * d * d)
					}
					if err < bestErr {
						best, bestErr = s, err
					}
				}
				qw.Scales[o*ng+g] = best
				for k, v := range wg {
					qg[k] = quant.QuantizeValue(v, best)
				}
			}
		}
	})
	if bad != nil {
		return nil, bad
	}
	return qw, nil
}
