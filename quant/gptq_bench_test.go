package quant

// GPTQ timings (go test -run '^$' -bench 'GPTQ|PrepareHessian' -benchtime 1x ./quant),
// group size 128, blocksize 128, seconds per call. hessian-s is PrepareHessian (damping,
// float32 blocked Cholesky of the reversed H and triangular inverse), loop-s the GPTQ loop.
//
// A: Intel Xeon (AVX-512), 2 of its 16 cores pinned with taskset, GOMAXPROCS=2, nothing else
// of ours running; two runs each. B: this repository's shared 2-core AMD EPYC (AVX-512) at load average ≈ 3, one
// run (so slower than the machine can do).
//
//	                               out×in        A total  hessian  loop       B total  hessian  loop
//	GPTQ4096x4096   q k v o        4096×4096      1.34-1.38  0.58-0.65 0.73-0.76    1.66  0.72  0.94
//	GPTQ11008x4096  gate up        11008×4096     2.41-2.52  0.51-0.62 1.90         2.25  0.77  1.49
//	GPTQ4096x11008  down           4096×11008    10.9-11.6   7.0-7.3   3.9-4.2     17.6  11.1   6.5
//	PrepareHessian4096                            0.61-0.70                        0.78
//	PrepareHessian11008                           6.8-7.3
//	PrepareHessian4096Float64 (gonum LAPACK)     14.1   (22× the float32 factorization)
//
// The "GPTQ of 4096×4096 and 11008×4096 (with a 4096×4096 Hessian)" are the first two
// rows: 1.4 s and 2.5 s on A. The 11008-wide Hessian of down_proj is the expensive one.
//
// LLaMA-2-7B projection on 2 cores (A), per decoder layer, one PrepareHessian per distinct
// input (q/k/v share one, gate/up share one; PrepareHessian + GPTQWithHessian):
//
//	Hessians   qkv, o, gate/up: 3 × 0.65 s; down: 7.0 s           ≈  9.0 s
//	loops      q, k, v, o: 4 × 0.75 s; gate, up: 2 × 1.9 s; down 4.0 s  ≈ 10.8 s
//	layer                                                          ≈ 19.8 s
//	32 layers                                                      ≈ 10.6 min   (goal ≤ 30 min)
//
// Without sharing (a factorization per linear) it would be about 11.6 min; with the float64
// LAPACK factorization about 2.9 h (≈ 14 s per 4096-wide and ≈ 4.6 min per 11008-wide
// Hessian, scaling as n³). On B the same sums give ≈ 14 min under its load. The calibration
// forward pass that accumulates H, and I/O, are not included.

import (
	"math/rand/v2"
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
