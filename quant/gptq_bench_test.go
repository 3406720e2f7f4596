package quant

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/odyssey-llm/odyssey/gemm"
)

// gptqBenchHessian returns H = 2/n·XᵀX [in×in] for n random rows with correlated columns
// (a few latent factors plus noise). The time of GPTQ does not depend on the values, only
// on H being positive definite after damping, which a rank-n Hessian is.
func gptqBenchHessian(in, n int, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 3))
	const f = 64
	a := make([]float32, f*in)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	x := make([]float32, n*in)
	z := make([]float32, f)
	for s := 0; s < n; s++ {
		for i := range z {
			z[i] = float32(r.NormFloat64()) / 8
		}
		row := x[s*in : (s+1)*in]
		for j := range row {
			row[j] = 0.5 * float32(r.NormFloat64())
		}
		for i, zi := range z {
			for j, v := range a[i*in : (i+1)*in] {
				row[j] += zi * v
			}
		}
	}
	c := make([]float32, in*in)
	gemm.Sgemm(true, false, in, in, n, 2/float32(n), x, in, x, in, 0, c, in)
	h := make([]float64, in*in)
	for i, v := range c {
		h[i] = float64(v)
	}
	return h
}

func benchPrepare(b *testing.B, in int, opt GPTQOptions) {
	h := gptqBenchHessian(in, 512, 1)
	b.ResetTimer()
	for b.Loop() {
		if _, err := PrepareHessian(h, in, opt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrepareHessian4096(b *testing.B)  { benchPrepare(b, 4096, GPTQOptions{}) }
func BenchmarkPrepareHessian11008(b *testing.B) { benchPrepare(b, 11008, GPTQOptions{}) }

// BenchmarkPrepareHessian4096Float64 is the gonum LAPACK (float64) factorization, for
// comparison with the float32 one above.
func BenchmarkPrepareHessian4096Float64(b *testing.B) {
	benchPrepare(b, 4096, GPTQOptions{Float64Hessian: true})
}

// benchGPTQ times GPTQ (Hessian preparation included) of an out×in weight with group size
// 128, and reports the two parts: hessian-s (PrepareHessian) and loop-s (the GPTQ loop).
func benchGPTQ(b *testing.B, out, in int) {
	h := gptqBenchHessian(in, 512, 1)
	w := randGPTQBenchWeights(out*in, 2)
	opt := GPTQOptions{GroupSize: 128}
	if v, err := strconv.Atoi(os.Getenv("GPTQ_BS")); err == nil { // TEMP
		opt.BlockSize = v
	}
	var st GPTQStats
	b.ResetTimer()
	for b.Loop() {
		var err error
		if _, st, err = GPTQ(w, out, in, h, opt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(st.HessianSeconds, "hessian-s")
	b.ReportMetric(st.Seconds-st.HessianSeconds, "loop-s")
}

func randGPTQBenchWeights(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 5))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	return w
}

// q, k, v, o of LLaMA-2-7B (out = in = 4096).
func BenchmarkGPTQ4096x4096(b *testing.B) { benchGPTQ(b, 4096, 4096) }

// gate and up (out = 11008, in = 4096, a 4096×4096 Hessian).
func BenchmarkGPTQ11008x4096(b *testing.B) { benchGPTQ(b, 11008, 4096) }

// down (out = 4096, in = 11008, an 11008×11008 Hessian).
func BenchmarkGPTQ4096x11008(b *testing.B) { benchGPTQ(b, 4096, 11008) }

func init() { // TEMP tuning
	if v, err := strconv.Atoi(os.Getenv("GPTQ_SUB")); err == nil {
		gptqSubBlock = v
	}
	if v, err := strconv.Atoi(os.Getenv("GPTQ_NB")); err == nil {
		cholNB = v
	}
	if v, err := strconv.Atoi(os.Getenv("GPTQ_RC")); err == nil {
		trinvRows = v
	}
}
