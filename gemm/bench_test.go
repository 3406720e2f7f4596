package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// benchImpl is one Sgemm implementation in the side-by-side benchmark. openblas_test.go
// (build tag openblas, cgo) appends OpenBLAS to this list.
type benchImpl struct {
	name string
	fn   func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

var benchImpls = []benchImpl{
	{"odyssey", Sgemm},
	{"gonum", gonumSgemm},
}

// gonumSgemm is gonum's blas32 (pure Go with its SSE axpy/dot helpers): the baseline that
// the project had before this package.
func gonumSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	ra, ca, rb, cb := m, k, k, n
	if transA {
		ta, ra, ca = blas.Trans, k, m
	}
	if transB {
		tb, rb, cb = blas.Trans, n, k
	}
	blas32.Gemm(ta, tb, alpha,
		blas32.General{Rows: ra, Cols: ca, Stride: lda, Data: a},
		blas32.General{Rows: rb, Cols: cb, Stride: ldb, Data: b},
		beta, blas32.General{Rows: m, Cols: n, Stride: ldc, Data: c})
}

type benchShape struct {
	name           string
	transA, transB bool
	m, n, k        int
}

// benchShapes: square sizes from the issue, then the shapes the forward pass runs
// (Y = X·Wᵀ with W stored [n×k]: NT), including attention's Q·Kᵀ (NT) and P·V (NN).
var benchShapes = []benchShape{
	{"NN_1024", false, false, 1024, 1024, 1024},
	{"NN_2048", false, false, 2048, 2048, 2048},
	{"NN_4096", false, false, 4096, 4096, 4096},
	{"NT_1024", false, true, 1024, 1024, 1024},
	{"NT_2048", false, true, 2048, 2048, 2048},
	{"NT_4096", false, true, 4096, 4096, 4096},
	{"NT_m2048_k4096_n4096", false, true, 2048, 4096, 4096},
	{"NT_m2048_k4096_n11008", false, true, 2048, 11008, 4096},
	{"NT_m2048_k11008_n4096", false, true, 2048, 4096, 11008},
	{"NT_m512_k256_n768", false, true, 512, 768, 256},
	{"NT_attnQK_m512_k64_n512", false, true, 512, 512, 64},
	{"NN_attnPV_m512_k512_n64", false, false, 512, 64, 512},
}

func benchOperands(s benchShape) (a, b, c []float32, lda, ldb, ldc int) {
	r := rand.New(rand.NewPCG(7, 8))
	lda, ldb, ldc = s.k, s.n, s.n
	if s.transA {
		lda = s.m
	}
	if s.transB {
		ldb = s.k
	}
	return randSlice(r, s.m*s.k), randSlice(r, s.k*s.n), make([]float32, s.m*s.n), lda, ldb, ldc
}

// BenchmarkSgemm reports every implementation on every shape in the same run, as GFLOP/s:
//
//	go test -run '^$' -bench Sgemm ./gemm/                     # odyssey and gonum
//	go test -tags openblas -run '^$' -bench Sgemm ./gemm/      # plus OpenBLAS (cgo)
func BenchmarkSgemm(b *testing.B) {
	for _, s := range benchShapes {
		a, bb, c, lda, ldb, ldc := benchOperands(s)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, impl := range benchImpls {
			b.Run(s.name+"/"+impl.name, func(b *testing.B) {
				if impl.name != "gonum" { // gonum has no state to warm, and takes seconds per call
					impl.fn(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, ldc) // pools, threads
				}
				b.ResetTimer()
				cpu0 := cpuSeconds()
				for b.Loop() {
					impl.fn(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, ldc)
				}
				reportFlops(b, flops, cpu0)
			})
		}
	}
}

// reportFlops reports GFLOP/s (wall clock, the number that matters) and GFLOP per CPU-second
// of the whole process (all goroutines or OpenBLAS threads together), which is less
// sensitive to other load on the machine: time slices lost to neighbours count in neither
// the work nor the CPU time.
func reportFlops(b *testing.B, flops, cpu0 float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := cpuSeconds() - cpu0; cpu > 0 {
		b.ReportMetric(flops*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
	}
}

// BenchmarkKernelTile runs the whole blocked algorithm with each kernel the CPU supports,
// for choosing the default tile.
func BenchmarkKernelTile(b *testing.B) {
	for _, s := range []benchShape{benchShapes[1], benchShapes[6]} {
		a, bb, c, lda, ldb, ldc := benchOperands(s)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, ker := range kernels {
			b.Run(fmt.Sprintf("%s/%s", s.name, ker.name), func(b *testing.B) {
				sgemmWith(ker, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, ldc) // warm the pool
				b.ResetTimer()
				cpu0 := cpuSeconds()
				for b.Loop() {
					sgemmWith(ker, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, ldc)
				}
				reportFlops(b, flops, cpu0)
			})
		}
	}
}

// BenchmarkMicroKernel times each kernel alone on packed panels that stay in L1/L2, one
// core: the ceiling the blocking can approach.
func BenchmarkMicroKernel(b *testing.B) {
	const kc = 256
	for _, ker := range kernels {
		r := rand.New(rand.NewPCG(9, 10))
		ap := alignedFloats(ker.mr * kc)
		copy(ap, randSlice(r, len(ap)))
		const panels = 8 // a few B panels so loads are not all from one L1 region
		bp := alignedFloats(ker.nr * kc * panels)
		copy(bp, randSlice(r, len(bp)))
		c := alignedFloats(ker.mr * ker.nr * panels)
		b.Run(ker.name, func(b *testing.B) {
			for b.Loop() {
				for j := 0; j < panels; j++ {
					ker.fn(kc, ap, bp[j*ker.nr*kc:], c[j*ker.mr*ker.nr:], ker.nr, 1, 1)
				}
			}
			flops := 2 * float64(ker.mr*ker.nr*kc*panels)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkPack times the two packing shapes of the forward pass (X·Wᵀ): both operands need
// the transposing pack, A with mr-wide panels and B with nr-wide ones.
func BenchmarkPack(b *testing.B) {
	ker := defaultKernel
	const k = 4096
	r := rand.New(rand.NewPCG(11, 12))
	src := randSlice(r, 512*k)
	for _, tc := range []struct {
		name  string
		width int
		f     func(dst []float32, rows, kc int)
	}{
		{"A_rowmajor", ker.mb, func(dst []float32, rows, kc int) { packA(dst, false, src, k, 0, 0, rows, kc, ker.mr) }},
		{"B_transposed", ker.nb, func(dst []float32, rows, kc int) { packB(dst, true, src, k, 0, 0, kc, rows, ker.nr) }},
		{"A_transposed", ker.mb, func(dst []float32, rows, kc int) { packA(dst, true, src, 512, 0, 0, rows, kc, ker.mr) }},
		{"B_rowmajor", ker.nb, func(dst []float32, rows, kc int) { packB(dst, false, src, 512, 0, 0, kc, rows, ker.nr) }},
	} {
		rows := min(tc.width, 512)
		dst := alignedFloats((rows + 64) * ker.kc)
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				tc.f(dst, rows, ker.kc)
			}
			b.ReportMetric(float64(rows*ker.kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}
