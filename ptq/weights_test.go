package ptq

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/odyssey-llm/odyssey/quant"
)

// rtnActAwareRef is the activation-aware clip search written the obvious way: one candidate
// at a time, dividing by the scale (quant.QuantizeValue). rtnActAware must give the same
// codes and scales bit for bit: its artifacts are compared byte for byte across machines,
// CPU and GPU runs (docs/determinism.md).
func rtnActAwareRef(w []float32, out, in, gs int, e []float64, grid []float32) *quant.QuantizedWeight {
	if grid == nil {
		grid = quant.DefaultClipGrid()
	}
	cands := []float32{1}
	for _, c := range grid {
		if c != 1 {
			cands = append(cands, c)
		}
	}
	ng := in / gs
	qw := &quant.QuantizedWeight{Out: out, In: in, GroupSize: gs, Q: quant.NewCodes(out * in), Scales: make([]float32, out*ng)}
	for o := range out {
		for g := range ng {
			k0 := o*in + g*gs
			wg, eg := w[k0:k0+gs], e[g*gs:(g+1)*gs]
			var absmax float32
			for _, v := range wg {
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
				qw.Q[k0+k] = quant.QuantizeValue(v, best)
			}
		}
	}
	return qw
}

func checkActAwareSame(t *testing.T, name string, w []float32, out, in, gs int, e []float64, grid []float32) {
	t.Helper()
	got, err := rtnActAware(w, out, in, gs, e, grid)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	want := rtnActAwareRef(w, out, in, gs, e, grid)
	for i := range want.Scales {
		if math.Float32bits(got.Scales[i]) != math.Float32bits(want.Scales[i]) {
			t.Fatalf("%s: group %d: scale %g (%#x), reference %g (%#x)", name, i, got.Scales[i],
				math.Float32bits(got.Scales[i]), want.Scales[i], math.Float32bits(want.Scales[i]))
		}
	}
	for i := range want.Q {
		if got.Q[i] != want.Q[i] {
			t.Fatalf("%s: weight %d (%g): code %d, reference %d (scale %g)", name, i, w[i], got.Q[i], want.Q[i], want.Scales[i/gs])
		}
	}
}

// TestRTNActAwareMatchesReference covers the cases where multiplying by 1/s could round
// differently from dividing by s: weights on and next to the half-integer points of every
// candidate scale, groups whose scales are subnormal or whose reciprocals overflow, zero
// groups, and ordinary Gaussian weights with outliers.
func TestRTNActAwareMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	const gs = 32
	energies := func(in int) []float64 {
		e := make([]float64, in)
		for i := range e {
			e[i] = r.ExpFloat64()
		}
		return e
	}
	t.Run("gaussian", func(t *testing.T) {
		out, in := 64, 256
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(r.NormFloat64() * 0.02)
			if r.IntN(200) == 0 {
				w[i] *= 40
			}
		}
		checkActAwareSame(t, "gaussian", w, out, in, gs, energies(in), nil)
		checkActAwareSame(t, "gaussian, grid 0.5..1 in 20", w, out, in, gs, energies(in), []float32{1, 0.975, 0.95, 0.9, 0.8, 0.75, 0.7, 0.6, 0.55, 0.5})
	})
	t.Run("half-integers", func(t *testing.T) {
		// Each group: its absmax first, then (n + 0.5)·s and its float32 neighbours for a
		// candidate scale s of the default grid, n in 0..7.
		grid := quant.DefaultClipGrid()
		out, in := 0, 128
		var w []float32
		for row := 0; row < 40; row++ {
			absmax := float32(math.Ldexp(1+r.Float64(), r.IntN(40)-30))
			for range in / gs {
				g := []float32{absmax}
				c := grid[r.IntN(len(grid))]
				s := quant.SymScale(absmax, c)
				for len(g) < gs {
					n := float32(r.IntN(8))
					v := (n + 0.5) * s
					switch r.IntN(4) {
					case 1:
						v = math.Nextafter32(v, 0)
					case 2:
						v = math.Nextafter32(v, math.MaxFloat32)
					case 3:
						v = (n + 0.5) / (1 / s)
					}
					if v > absmax {
						v = absmax
					}
					if r.IntN(2) == 0 {
						v = -v
					}
					g = append(g, v)
				}
				w = append(w, g...)
			}
			out++
		}
		checkActAwareSame(t, "half-integers", w, out, in, gs, energies(in), nil)
	})
	t.Run("extremes", func(t *testing.T) {
		out, in := 6, 64
		w := make([]float32, out*in)
		for k := range in {
			w[0*in+k] = 0                                               // zero row: SymScale's 1
			w[1*in+k] = float32(r.NormFloat64()) * 0x1p-140             // subnormal scales
			w[2*in+k] = float32(r.NormFloat64()) * 0x1p-125             // reciprocals near overflow
			w[3*in+k] = float32(r.NormFloat64()) * 0x1p120              // huge weights
			w[4*in+k] = float32(k%7) * 0x1p-149                         // multiples of the smallest subnormal
			w[5*in+k] = []float32{1, -1, 0.5, 3.5 / 7, 6.5 / 7, 0}[k%6] // ties of the unclipped scale 1/7
		}
		checkActAwareSame(t, "extremes", w, out, in, gs, energies(in), nil)
	})
}

// FuzzRTNActAware compares rtnActAware with its reference on weights taken from the fuzzer's
// bytes (any float32 but NaN and ±Inf, which rtnActAware rejects).
func FuzzRTNActAware(f *testing.F) {
	f.Add([]byte("\x00\x00\x80\x3f\x00\x00\x00\x3f\x00\x00\x60\x3f\x01\x00\x00\x00"), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, clip uint8) {
		const gs = 8
		n := len(b) / 4 / gs * gs
		if n == 0 {
			return
		}
		w := make([]float32, n)
		for i := range w {
			w[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			if w[i] != w[i] || math.IsInf(float64(w[i]), 0) {
				w[i] = 0
			}
		}
		e := make([]float64, gs)
		for i := range e {
			e[i] = float64(i%3) + 0.25
		}
		grid := []float32{1, 0.5 + float32(clip%50)/100, 0.5}
		checkActAwareSame(t, fmt.Sprintf("%d weights", n), w, n/gs, gs, gs, e, grid)
	})
}

// BenchmarkRTNActAware4096 is the clip search of one LLaMA-7B attention projection (the
// w4a8-fptq preset's grid): 16.8M weights × 20 candidates.
func BenchmarkRTNActAware4096(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, 4096*4096)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	e := make([]float64, 4096)
	for i := range e {
		e[i] = r.ExpFloat64()
	}
	grid := make([]float32, 20)
	for i := range grid {
		grid[i] = 1 - 0.5*float32(i)/19
	}
	b.SetBytes(int64(len(w)) * 4)
	for b.Loop() {
		if _, err := rtnActAware(w, 4096, 4096, 128, e, grid); err != nil {
			b.Fatal(err)
		}
	}
}
