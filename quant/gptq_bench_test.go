package quant

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/gemm"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/gonum"
)

func TestScratchSpeed(t *testing.T) {
	n := 2048
	r := rand.New(rand.NewPCG(1, 2))
	a := make([]float32, n*n)
	for i := range a {
		a[i] = r.Float32()
	}
	c := make([]float32, n*n)
	t0 := time.Now()
	gemm.Sgemm(false, true, n, n, n, 1, a, n, a, n, 0, c, n)
	d := time.Since(t0)
	t.Logf("sgemm %d: %v %.1f GFLOP/s", n, d, 2*float64(n*n*n)/d.Seconds()/1e9)
	t0 = time.Now()
	gemm.Sgemm(false, true, n, 256, 128, 1, a, n, a, n, 0, c, n)
	d = time.Since(t0)
	t.Logf("sgemm k128: %v %.1f GFLOP/s", d, 2*float64(n*256*128)/d.Seconds()/1e9)
	x := make([]float64, n*n)
	for i := range x {
		x[i] = r.Float64()
	}
	h := make([]float64, n*n)
	t0 = time.Now()
	blas64.Implementation().Dgemm(blas.Trans, blas.NoTrans, n, n, n, 1, x, n, x, n, 0, h, n)
	d = time.Since(t0)
	t.Logf("dgemm %d: %v %.1f GFLOP/s", n, d, 2*float64(n*n*n)/d.Seconds()/1e9)
	for i := 0; i < n; i++ {
		h[i*n+i] += float64(n)
	}
	var impl gonum.Implementation
	t0 = time.Now()
	ok := impl.Dpotrf(blas.Lower, n, h, n)
	d = time.Since(t0)
	t.Logf("dpotrf %d: %v ok=%v %.1f GFLOP/s", n, d, ok, float64(n*n*n)/3/d.Seconds()/1e9)
}
