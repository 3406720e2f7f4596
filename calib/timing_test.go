package calib

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/odyssey-llm/odyssey/corpus"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
)

// TestTiming measures the calibration pass and self-sampling on the shared models; it runs
// only with ODYSSEY_CALIB_TIMING=1 and logs the numbers quoted in the package docs.
func TestTiming(t *testing.T) {
	if os.Getenv("ODYSSEY_CALIB_TIMING") == "" {
		t.Skip("set ODYSSEY_CALIB_TIMING=1 to measure")
	}
	ctx := context.Background()
	for _, name := range []string{"models/tiny-llama", "models/small-llama"} {
		hm, err := hf.Load(sharedtest.Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := tokenizer.Load(hm.TokenizerPath)
		text, _ := corpus.LoadText(sharedtest.Path(t, "data/calib/calib_mix.txt"), "text")
		w, err := TextWindows(tok.Encode(text, false), 0, 128, 512, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, hess := range []bool{false, true} {
			start := time.Now()
			_, mem, err := CollectAll(ctx, hm, w, Options{LiveHeap: true}, func(int, model.LinearKind) bool { return hess }, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s 128×512 hessian=%v: %.1fs, peak heap %.1f MB, activations %.1f MB, layer %.1f MB",
				name, hess, time.Since(start).Seconds(), float64(mem.PeakHeapInuse)/1e6, float64(mem.ActivationBytes)/1e6, float64(mem.PeakLayerBytes)/1e6)
		}
		if name == "models/tiny-llama" {
			m, _ := model.Load(hm)
			start := time.Now()
			_, err := SampleWindows(ctx, m, 0, SampleOptions{Samples: 64, SeqLen: 256})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("self 64×256: %.1fs", time.Since(start).Seconds())
		}
		hm.Close()
	}
}

// BenchmarkHessianChunk compares the two ways of accumulating XᵀX for one chunk of 4096
// rows of a 1024-wide input (small-llama's down_proj): float32 gemm.Sgemm then a float64
// add (what Stats.Add does, here alone and with the per-channel statistics), and float64 directly with gonum's Dgemm.
func BenchmarkHessianChunk(b *testing.B) {
	const rows, in = 4096, 1024
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, rows*in)
	x64 := make([]float64, rows*in)
	for i := range x {
		x[i] = float32(r.NormFloat64())
		x64[i] = float64(x[i])
	}
	b.Run("sgemm-only", func(b *testing.B) {
		t := make([]float32, in*in)
		for b.Loop() {
			gemm.Sgemm(true, false, in, in, rows, 1, x, in, x, in, 0, t, in)
		}
	})
	b.Run("Stats.Add", func(b *testing.B) {
		s := NewStats(in, true)
		for b.Loop() {
			s.Add(x, rows)
		}
	})
	b.Run("gonum-dgemm", func(b *testing.B) {
		acc := make([]float64, in*in)
		for b.Loop() {
			blas64.Implementation().Dgemm(blas.Trans, blas.NoTrans, in, in, rows, 1, x64, in, x64, in, 1, acc, in)
		}
	})
}
