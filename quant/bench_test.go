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

// benchQLinear runs a fake-quantized linear over a 512-token window, the shape of
// evaluation, reporting MAC/s; the float GEMM of the same shape is the baseline.
func benchQLinear(b *testing.B, out, in int, act ActQuant) {
	const rows = 512
	iw, err := RTNIntScale(randWeights(out*in, 2), out, in, 128, RTNOptions{}, AmplifierRule{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewQLinear(iw, act, nil)
	if err != nil {
		b.Fatal(err)
	}
	x := randWeights(rows*in, 3)
	y := make([]float32, rows*out)
	b.ResetTimer()
	for b.Loop() {
		l.Forward(y, x, rows)
	}
	b.ReportMetric(float64(rows*out*in)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
}

func BenchmarkQLinear768x256PerToken(b *testing.B) {
	benchQLinear(b, 768, 256, ActQuant{Policy: DynamicPerToken})
}

func BenchmarkQLinear256x768Static(b *testing.B) {
	benchQLinear(b, 256, 768, ActQuant{Policy: StaticPerTensor, Scale: 0.01})
}

func BenchmarkQLinear4096x4096PerToken(b *testing.B) {
	benchQLinear(b, 4096, 4096, ActQuant{Policy: DynamicPerToken})
}

// BenchmarkFakeQuantLinearRef is the scalar reference on the small shape, for scale.
func BenchmarkFakeQuantLinearRef768x256(b *testing.B) {
	const rows, out, in = 64, 768, 256
	iw, err := RTNIntScale(randWeights(out*in, 2), out, in, 128, RTNOptions{}, AmplifierRule{})
	if err != nil {
		b.Fatal(err)
	}
	x := randWeights(rows*in, 3)
	y := make([]float32, rows*out)
	act := ActQuant{Policy: DynamicPerToken}
	for b.Loop() {
		FakeQuantLinearRef(x, rows, act, iw, nil, y)
	}
	b.ReportMetric(float64(rows*out*in)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
}
