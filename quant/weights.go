package quant

import "math"

// Symmetric int4 weights use the range −7..7, not −8..7: with scale = absmax/7 the grid is
// symmetric around zero, so the largest weight of either sign is represented exactly, and a
// code of −8 never occurs. The nibble still holds two's-complement values, so the kernel's
// high-nibble conversion (byte & 0xF0 = 16·w as int8) is unchanged; see docs/fastgemm-layout.md.
const (
	Int4Min = -7
	Int4Max = 7
)

// QuantizedWeight is a linear layer's weight W[Out, In] quantized to symmetric int4 in groups
// of GroupSize consecutive input channels: W[o, k] ≈ Scales[o·NumGroups()+k/GroupSize] · Q[o·In+k].
// GroupSize == In means one group per output channel (per-channel quantization).
type QuantizedWeight struct {
	Out, In   int
	GroupSize int
	// Q holds the int4 codes, one per int8, row-major [Out, In], each in [Int4Min, Int4Max].
	Q []int8
	// Scales holds the float group scales, row-major [Out, NumGroups()].
	Scales []float32
}

// NumGroups returns the number of groups per output channel.
func (w *QuantizedWeight) NumGroups() int { return (w.In + w.GroupSize - 1) / w.GroupSize }

// Dequantize returns the float weight the codes and scales represent, row-major [Out, In].
func (w *QuantizedWeight) Dequantize() []float32 {
	out := make([]float32, w.Out*w.In)
	ng := w.NumGroups()
	for o := 0; o < w.Out; o++ {
		for k := 0; k < w.In; k++ {
			out[o*w.In+k] = w.Scales[o*ng+k/w.GroupSize] * float32(w.Q[o*w.In+k])
		}
	}
	return out
}

// SymScale returns the symmetric int4 scale of a group whose largest |w| is absmax, shrunk by
// clip in (0, 1] (1 = no clipping). A zero group gets scale 1 so that codes stay 0 and no
// division by zero reaches the kernel.
func SymScale(absmax, clip float32) float32 {
	s := absmax * clip / Int4Max
	if s == 0 || math.IsNaN(float64(s)) {
		return 1
	}
	return s
}

// QuantizeValue rounds w/scale to the nearest int4 code (half away from zero), clamped.
func QuantizeValue(w, scale float32) int8 {
	q := math.Round(float64(w / scale))
	if q < Int4Min {
		q = Int4Min
	} else if q > Int4Max {
		q = Int4Max
	}
	return int8(q)
}
