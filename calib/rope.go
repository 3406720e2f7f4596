package calib

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

// ropeInvFreq returns the rotary inverse frequencies exactly as model computes them (default
// and llama3 scaling). The incremental decoder of SampleWindows needs them and model does not
// export its table; TestDecoderMatchesForward pins the two to each other.
func ropeInvFreq(r hf.Rope, headDim int) ([]float32, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("calib: head_dim %d must be positive and even for rotary embeddings", headDim)
	}
	half := headDim / 2
	inv := make([]float64, half)
	for i := range inv {
		e := float64(float32(float64(2*i) / float64(headDim)))
		inv[i] = 1 / math.Pow(r.Theta, e)
	}
	switch r.Type {
	case "", "default":
	case "llama3":
		lowWavelen := float64(r.OriginalMaxPositionEmbeddings) / r.LowFreqFactor
		highWavelen := float64(r.OriginalMaxPositionEmbeddings) / r.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen < highWavelen:
			case wavelen > lowWavelen:
				inv[i] = f / r.Factor
			default:
				smooth := (float64(r.OriginalMaxPositionEmbeddings)/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				inv[i] = (1-smooth)*f/r.Factor + smooth*f
			}
		}
	default:
		return nil, fmt.Errorf("calib: rope type %q is not supported", r.Type)
	}
	out := make([]float32, half)
	for i, f := range inv {
		out[i] = float32(f)
	}
	return out, nil
}

// ropeTable returns cos and sin of float32(inv_freq·pos) for positions < n, [n, len(inv)].
func ropeTable(inv []float32, n int) (cos, sin []float32) {
	half := len(inv)
	cos = make([]float32, n*half)
	sin = make([]float32, n*half)
	for p := range n {
		for i, f := range inv {
			a := float64(f * float32(p))
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return cos, sin
}
