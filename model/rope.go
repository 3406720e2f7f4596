package model

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// ropeInvFreq returns the rotary inverse frequencies inv_freq[i], i < headDim/2, as
// transformers computes them in float32: 1/theta^(2i/d) for rope type "default", then
// rescaled by _compute_llama3_parameters for "llama3". Both branches work in float64 and round
// once; transformers works in float32 throughout, so the two agree to about one ulp.
func ropeInvFreq(r hf.Rope, headDim int) ([]float32, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("model: head_dim %d must be positive and even for rotary embeddings", headDim)
	}
	if !(r.Theta > 0) {
		return nil, fmt.Errorf("model: rope theta %v must be positive", r.Theta)
	}
	half := headDim / 2
	inv := make([]float64, half)
	for i := range inv {
		// transformers: 1.0 / (base ** (arange(0, dim, 2) / dim)) in float32.
		e := float64(float32(float64(2*i) / float64(headDim)))
		inv[i] = 1 / math.Pow(r.Theta, e)
	}
	switch r.Type {
	case "", "default":
	case "llama3":
		if err := checkLlama3(r); err != nil {
			return nil, err
		}
		lowWavelen := float64(r.OriginalMaxPositionEmbeddings) / r.LowFreqFactor
		highWavelen := float64(r.OriginalMaxPositionEmbeddings) / r.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen < highWavelen: // high frequency: kept
			case wavelen > lowWavelen: // low frequency: divided by factor
				inv[i] = f / r.Factor
			default: // in between: interpolated
				smooth := (float64(r.OriginalMaxPositionEmbeddings)/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				inv[i] = (1-smooth)*f/r.Factor + float64(smooth*f)
			}
		}
	default:
		return nil, fmt.Errorf("model: rope type %q is not supported (only \"default\" and \"llama3\")", r.Type)
	}
	out := make([]float32, half)
	for i, f := range inv {
		out[i] = float32(f)
	}
	return out, nil
}

func checkLlama3(r hf.Rope) error {
	if !(r.Factor > 0) || !(r.LowFreqFactor > 0) || !(r.HighFreqFactor > 0) || r.OriginalMaxPositionEmbeddings <= 0 {
		return fmt.Errorf("model: llama3 rope scaling needs positive factor, low_freq_factor, high_freq_factor and original_max_position_embeddings; got %+v", r)
	}
	if r.HighFreqFactor == r.LowFreqFactor {
		return fmt.Errorf("model: llama3 rope scaling has high_freq_factor == low_freq_factor (%v)", r.LowFreqFactor)
	}
	return nil
}

// ropeTable holds cos and sin of pos·inv_freq[i] for positions < n, each row headDim/2 wide
// (the two halves of transformers' cat(freqs, freqs) are equal, so one half is stored).
type ropeTable struct {
	inv      []float32
	n        int
	cos, sin []float32
}

// table returns the cos/sin table for seqLen positions, reusing t when it already covers
// them. Angles are formed as transformers does, inv_freq·pos rounded to float32, then cos and
// sin are taken in float64 and rounded.
func (t *ropeTable) ensure(inv []float32, seqLen int) {
	if t.n >= seqLen && equalF32(t.inv, inv) {
		return
	}
	half := len(inv)
	t.inv = append(t.inv[:0], inv...)
	t.n = seqLen
	t.cos = make([]float32, seqLen*half)
	t.sin = make([]float32, seqLen*half)
	for p := 0; p < seqLen; p++ {
		for i, f := range inv {
			a := float64(f * float32(p))
			t.cos[p*half+i] = float32(math.Cos(a))
			t.sin[p*half+i] = float32(math.Sin(a))
		}
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// applyRope rotates, in place, every head of x [batch·seqLen, heads·headDim] by its row's
// position (row mod seqLen), in the rotate-half convention of Hugging Face checkpoints:
// x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin, where x1, x2 are a head's two halves.
func applyRope(x []float32, rows, seqLen, heads, headDim int, t *ropeTable) {
	half := headDim / 2
	width := heads * headDim
	parallel.Ranges(rows, 32, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			pos := r % seqLen
			c := t.cos[pos*half : (pos+1)*half]
			s := t.sin[pos*half : (pos+1)*half]
			row := x[r*width : (r+1)*width]
			for h := 0; h < heads; h++ {
				v := row[h*headDim : (h+1)*headDim]
				x1, x2 := v[:half], v[half:]
				// float32()/float64() around a product: the compiler may not fuse it into an FMA (arm64,
				// GOAMD64=v3), so every build rounds as amd64 v1 does (docs/determinism.md, Compiler fusion).
				for i := range half {
					a, b := x1[i], x2[i]
					x1[i] = float32(a*c[i]) - float32(b*s[i])
					x2[i] = float32(b*c[i]) + float32(a*s[i])
				}
			}
		}
	})
}

// RopeTables returns the cos and sin tables, [n, headDim/2] row-major, of the rotary
// embedding r for positions < n, computed exactly as the forward pass computes them, so that
// an incremental decoder (calibration's sampler) rotates keys and queries bit for bit as
// Layer.Forward does.
func RopeTables(r hf.Rope, headDim, n int) (cos, sin []float32, err error) {
	inv, err := ropeInvFreq(r, headDim)
	if err != nil {
		return nil, nil, err
	}
	var t ropeTable
	t.ensure(inv, n)
	return t.cos, t.sin, nil
}
