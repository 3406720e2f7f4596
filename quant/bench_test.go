package quant

import (
	"math/rand/v2"
	"testing"
)

// randWeights returns n weights, Gaussian with σ = 0.02 like an LLM linear, with a few
// outliers, from a fixed seed.
func randWeights(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
		if r.IntN(1000) == 0 {
			w[i] *= 8
		}
	}
	return w
}

// BenchmarkRTNIntScale4096x11008 is the throughput target of RTN: quantize a LLaMA-7B MLP
// matrix and convert its scales to integer scales. SetBytes counts the fp16 input the
// caller converted from (2 bytes per weight), so MB/s reads as fp16 throughput; the goal is
// ≥ 1000 MB/s on 2 cores.
func BenchmarkRTNIntScale4096x11008(b *testing.B) {
	const out, in = 4096, 11008
	w := randWeights(out*in, 1)
	b.SetBytes(2 * out * in)
	b.ResetTimer()
	for b.Loop() {
		if _, err := RTNIntScale(w, out, in, 128, RTNOptions{}, AmplifierRule{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRTN4096x11008(b *testing.B) {
	const out, in = 4096, 11008
	w := randWeights(out*in, 1)
	b.SetBytes(2 * out * in)
	b.ResetTimer()
	for b.Loop() {
		if _, err := RTN(w, out, in, 128, RTNOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
