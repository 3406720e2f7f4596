package calib

import (
	"fmt"
	"math"
)

// NonFiniteError reports activations that are NaN or ±Inf (or whose statistics overflow
// float32): a model whose activations overflow on the calibration data (finite but huge
// weights, in float32 or bfloat16) cannot be calibrated. It is bad input, never a panic.
type NonFiniteError struct {
	Layer int
	// What names the activation: "the layer's output", "the down_proj input", ...
	What string
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("calib: layer %d: %s is not finite (NaN or ±Inf, or beyond float32's range): the model's activations overflow on this calibration data (a weight far beyond the usual range?)", e.Layer, e.What)
}

// finite32 reports whether every value of x is finite.
func finite32(x []float32) bool {
	for _, v := range x {
		if v-v != 0 { // NaN and ±Inf give NaN
			return false
		}
	}
	return true
}

// maxAbs32 returns max |x| of finite values, compared on the float bits (for non-negative
// floats they order like the values).
func maxAbs32(x []float32) float32 {
	var m uint32
	for _, v := range x {
		m = max(m, math.Float32bits(v)&0x7fffffff)
	}
	return math.Float32frombits(m)
}

// CheckStats returns a *NonFiniteError when any statistic of s (an input of layer, named
// what) is not finite.
func CheckStats(s *Stats, layer int, what string) error {
	if s == nil {
		return nil
	}
	bad := !finite32(s.Min) || !finite32(s.Max) || !finite32(s.AbsMax) || !finite32([]float32{s.TensorAbsMax, s.TokenAbsMaxMin}) ||
		math.IsNaN(s.TokenAbsMaxMean) || math.IsInf(s.TokenAbsMaxMean, 0)
	for _, v := range s.SumSq {
		bad = bad || math.IsNaN(v) || math.IsInf(v, 0)
	}
	if bad {
		return &NonFiniteError{Layer: layer, What: what}
	}
	return nil
}
