package quant

import (
	"fmt"
	"math"
)

// Activations are quantized to symmetric int8 in −ActQMax..ActQMax (−127..127): code =
// clamp(roundEven(x / s), −127, 127) with the division in float32 and rounding half to even,
// which is what a CUDA quantization kernel gets from __float2int_rn(x / s) (IEEE division) and
// PyTorch from torch.round. −128 is never produced: the grid is symmetric, and the overflow
// bound of the integer scales assumes |x| ≤ 127. Dequantized, a code is float32(code)·s.
//
// Two granularities exist. Static per-tensor uses one scale s = m/127 from a calibrated
// maximum m (values beyond it are clamped). Dynamic per-token uses one scale per row,
// s_row = max|x_row|/127, computed at run time. A zero maximum gives the scale 1, so that
// codes are 0 and no kernel ever divides by zero.

// ActScale returns the int8 scale m/127 of a maximum |x| of m (float32 division), or 1 when
// m is 0. m must be finite and non-negative.
func ActScale(m float32) float32 {
	if !(m >= 0 && m <= math.MaxFloat32) {
		panic(fmt.Sprintf("quant: ActScale: maximum %v is not finite and non-negative", m))
	}
	if m == 0 {
		return 1
	}
	s := m / ActQMax
	if s == 0 { // m subnormal
		return 1
	}
	return s
}

// QuantizeActValue returns clamp(roundEven(x/s), −127, 127). NaN maps to 0.
func QuantizeActValue(x, s float32) int8 {
	v := math.RoundToEven(float64(x / s))
	if v != v {
		return 0
	}
	return int8(min(max(v, -ActQMax), ActQMax))
}

// QuantizeActPerTensor writes the int8 codes of x with the static scale s into q (len(q) ≥
// len(x)).
func QuantizeActPerTensor(x []float32, s float32, q []int8) {
	checkActScale(s)
	q = q[:len(x)]
	for i, v := range x {
		q[i] = QuantizeActValue(v, s)
	}
}

// QuantizeActPerToken writes the int8 codes of x [rows×k] into q and the scale of each row,
// ActScale(max|x_row|), into scales[row].
func QuantizeActPerToken(x []float32, rows, k int, q []int8, scales []float32) {
	checkAct(len(x), rows, k)
	for r := 0; r < rows; r++ {
		row := x[r*k : (r+1)*k]
		s := ActScale(absMax(row))
		scales[r] = s
		QuantizeActPerTensor(row, s, q[r*k:(r+1)*k])
	}
}

// FakeQuantActPerTensor replaces each x by its int8 quantize-dequantize with the static
// scale s: float32(code)·s.
func FakeQuantActPerTensor(x []float32, s float32) {
	checkActScale(s)
	for i, v := range x {
		x[i] = float32(QuantizeActValue(v, s)) * s
	}
}

// FakeQuantActPerToken replaces each row of x [rows×k] by its per-token int8
// quantize-dequantize.
func FakeQuantActPerToken(x []float32, rows, k int) {
	checkAct(len(x), rows, k)
	for r := 0; r < rows; r++ {
		row := x[r*k : (r+1)*k]
		FakeQuantActPerTensor(row, ActScale(absMax(row)))
	}
}

// RowScale returns the dynamic per-token scale of row x, ActScale(max|x|), or NaN when x
// holds a NaN or ±Inf. Forward passes use it in place of ActScale(max|x|) so that a
// non-finite activation (a model whose activations overflow float32) does not panic inside a
// worker goroutine: the NaN scale makes the row's output NaN, which the caller detects where
// the layer's output is checked (calib reports it as an error naming the layer).
func RowScale(x []float32) float32 {
	if absMaxBits(x) >= 0x7f800000 {
		return float32(math.NaN())
	}
	return ActScale(math.Float32frombits(absMaxBits(x)))
}

// absMax returns max|x|, panicking on a non-finite value: a NaN or ±Inf activation would
// silently zero or saturate the row, and its cause is upstream.
func absMax(x []float32) float32 {
	mb := absMaxBits(x)
	if mb >= 0x7f800000 {
		panic("quant: non-finite activation")
	}
	return math.Float32frombits(mb)
}

func checkActScale(s float32) {
	if !(s > 0 && s <= math.MaxFloat32) {
		panic(fmt.Sprintf("quant: activation scale %v is not positive and finite", s))
	}
}

func checkAct(n, rows, k int) {
	if rows < 0 || k <= 0 || n != rows*k {
		panic(fmt.Sprintf("quant: activation has %d elements, want %d×%d", n, rows, k))
	}
}
