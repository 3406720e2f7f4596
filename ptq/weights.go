package ptq

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/quant"
)

// Int8Weight is a symmetric int8 weight quantized per output channel, the weight format of
// the W8A8 SmoothQuant baseline: W[o, k] ≈ Scales[o]·Q[o·In+k], codes in −127..127.
type Int8Weight struct {
	Out, In int
	Q       []int8
	Scales  []float32
}

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

// Dequantize returns Scales[o]·Q[o, k], row-major [Out, In].
func (w *Int8Weight) Dequantize() []float32 {
	out := make([]float32, len(w.Q))
	for i, q := range w.Q {
		out[i] = w.Scales[i/w.In] * float32(q)
	}
	return out
}

// relErr returns ‖a − b‖_F / ‖b‖_F in float64 (0 for b = 0 = a).
func relErr(a, b []float32) float64 {
	var num, den float64
	for i, v := range b {
		d := float64(a[i]) - float64(v)
		num += d * d
		den += float64(v) * float64(v)
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
