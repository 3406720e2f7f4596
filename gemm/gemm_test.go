package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// refGemm is the naive triple loop in float64. It also returns, per element, the bound
// Σ_p |alpha·op(A)[i][p]·op(B)[p][j]| + |beta·C[i][j]| that float32 rounding error scales with.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, mag []float64) {
	want = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
				sa += math.Abs(float64(av) * float64(bv))
			}
			w := float64(alpha) * s
			g := math.Abs(float64(alpha)) * sa
			if beta != 0 {
				cv := float64(c[i*ldc+j])
				w += float64(beta) * cv
				g += math.Abs(float64(beta) * cv)
			}
			want[i*n+j], mag[i*n+j] = w, g
		}
	}
	return want, mag
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}

// testShapes are m, n, k triples: degenerate, smaller than one tile, ragged against every
// kernel's mr (4, 6, 9, 12, 14, 15) and nr (4, 16, 32, 48, 64), and large enough to cross
// the kc, nb blocks and to be split over goroutines.
var testShapes = [][3]int{
	{1, 1, 1}, {1, 1, 7}, {2, 3, 1}, {7, 13, 5}, {14, 32, 8}, {15, 33, 3}, {16, 16, 16},
	{13, 31, 40}, {33, 65, 17}, {29, 97, 64}, {64, 64, 64}, {100, 300, 257}, {47, 129, 400},
	{130, 70, 777}, {5, 700, 33}, {300, 5, 100}, {1, 512, 64}, {512, 1, 64}, {257, 333, 129},
}

type abCase struct{ alpha, beta float32 }

var abCases = []abCase{{1, 0}, {0.5, 0}, {1, 1}, {-1.5, 0.25}, {2, -1}}

// TestSgemmKernels runs every kernel this CPU supports (the assembly ones and the pure-Go one)
// on every shape, transpose combination, alpha/beta pair and stride layout against refGemm,
// and checks the assembly kernels against the pure-Go kernel as well.
func TestSgemmKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	t.Logf("kernels: %v (default %s)", kernelNames(), defaultKernel.name)
	for si, sh := range testShapes {
		m, n, k := sh[0], sh[1], sh[2]
		for tc := 0; tc < 4; tc++ {
			transA, transB := tc&1 != 0, tc&2 != 0
			// Cycle alpha/beta and padding over the cases instead of taking the full cross
			// product, to keep the test fast; small shapes get every combination.
			var abs []abCase
			var pads []int
			if m*n*k <= 64*64*64 {
				abs, pads = abCases, []int{0, 3}
			} else {
				abs, pads = []abCase{abCases[(si+tc)%len(abCases)]}, []int{(si + tc) % 2 * 5}
			}
			for _, ab := range abs {
				for _, pad := range pads {
					name := fmt.Sprintf("%dx%dx%d/tA=%v,tB=%v/a=%g,b=%g/pad=%d", m, n, k, transA, transB, ab.alpha, ab.beta, pad)
					checkCase(t, r, name, transA, transB, m, n, k, ab.alpha, ab.beta, pad)
				}
			}
		}
	}
}

func kernelNames() []string {
	var s []string
	for _, k := range kernels {
		s = append(s, k.name)
	}
	return s
}

func checkCase(t *testing.T, r *rand.Rand, name string, transA, transB bool, m, n, k int, alpha, beta float32, pad int) {
	t.Helper()
	ra, ca := m, k
	if transA {
		ra, ca = k, m
	}
	rb, cb := k, n
	if transB {
		rb, cb = n, k
	}
	lda, ldb, ldc := ca+pad, cb+pad, n+pad
	a := randSlice(r, ra*lda)
	b := randSlice(r, rb*ldb)
	c0 := randSlice(r, m*ldc)
	if beta == 0 {
		for i := range c0 {
			c0[i] = float32(math.NaN()) // beta == 0 must overwrite, not multiply
		}
	}
	want, mag := refGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc)
	// float32 accumulation of k products: error ≤ ~k·eps·Σ|terms|; blocking and FMA only change
	// the constant.
	tol := float64(k+2) * 2 * float64(math.Nextafter32(1, 2)-1)
	var results [][]float32
	for _, ker := range kernels {
		c := append([]float32(nil), c0...)
		sgemmWith(ker, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		for i := 0; i < m; i++ {
			for j := 0; j < ldc; j++ {
				got := c[i*ldc+j]
				if j >= n { // padding between rows must be untouched
					if math.Float32bits(got) != math.Float32bits(c0[i*ldc+j]) {
						t.Fatalf("%s kernel %s: padding C[%d][%d] changed", name, ker.name, i, j)
					}
					continue
				}
				w, g := want[i*n+j], mag[i*n+j]
				if d := math.Abs(float64(got) - w); !(d <= tol*g+1e-30) {
					t.Fatalf("%s kernel %s: C[%d][%d] = %g, want %g (|diff| %g > %g)", name, ker.name, i, j, got, w, d, tol*g)
				}
			}
		}
		results = append(results, c)
	}
	// Every kernel against the pure-Go one (last), element by element.
	gen := results[len(results)-1]
	for ki, c := range results[:len(results)-1] {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				x, y := float64(c[i*ldc+j]), float64(gen[i*ldc+j])
				if d := math.Abs(x - y); !(d <= 2*tol*mag[i*n+j]+1e-30) {
					t.Fatalf("%s: kernel %s C[%d][%d] = %g, pure Go %g", name, kernels[ki].name, i, j, x, y)
				}
			}
		}
	}
}

// TestSgemmThreads forces uneven goroutine splits (GOMAXPROCS 3 and 5, both split
// directions) and a product large enough to use them.
func TestSgemmThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(3, 4))
	for _, procs := range []int{1, 3, 5} {
		runtime.GOMAXPROCS(procs)
		checkCase(t, r, fmt.Sprintf("procs=%d/wide", procs), false, true, 70, 401, 300, 1, 0, 1)
		checkCase(t, r, fmt.Sprintf("procs=%d/tall", procs), true, false, 403, 67, 300, 0.5, 2, 0)
	}
}

// TestSgemmMBlock crosses the M block (mb ≈ 2000 rows for the AVX-512 kernel) and the K
// block, with a 3-goroutine team sharing the A blocks.
func TestSgemmMBlock(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	r := rand.New(rand.NewPCG(5, 6))
	checkCase(t, r, "tall", false, false, 2100, 200, 500, 1, 0.5, 2)
}

// TestBlocking checks the invariants the driver relies on: blocks are whole tiles.
func TestBlocking(t *testing.T) {
	for _, k := range kernels {
		if k.mb%k.mr != 0 || k.nb%k.nr != 0 || k.kc <= 0 {
			t.Errorf("%s: mb %d, nb %d must be multiples of mr %d, nr %d", k.name, k.mb, k.nb, k.mr, k.nr)
		}
	}
}

func TestSgemmDegenerate(t *testing.T) {
	nan := float32(math.NaN())
	// k == 0: C = beta·C; beta == 0 clears NaN.
	c := []float32{nan, nan, 3, 4}
	Sgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, c, 2)
	for i, v := range c {
		if v != 0 {
			t.Fatalf("k=0, beta=0: c[%d] = %g, want 0", i, v)
		}
	}
	c = []float32{1, 2, 3, 4}
	Sgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 2, c, 2)
	if c[3] != 8 {
		t.Fatalf("k=0, beta=2: c = %v", c)
	}
	// alpha == 0: A and B are not read (NaN there must not propagate).
	a := []float32{nan, nan, nan, nan}
	c = []float32{1, 2, 3, 4}
	Sgemm(false, true, 2, 2, 2, 0, a, 2, a, 2, 1, c, 2)
	if c[0] != 1 || c[3] != 4 {
		t.Fatalf("alpha=0: c = %v", c)
	}
	// m == 0 or n == 0 is a no-op.
	Sgemm(true, true, 0, 5, 5, 1, nil, 1, nil, 5, 0, nil, 5)
	Sgemm(false, false, 5, 0, 5, 1, make([]float32, 25), 5, nil, 1, 0, nil, 1)
}

func TestSgemmPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"short C": func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		},
		"short A": func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		},
		"narrow lda": func() {
			Sgemm(false, false, 2, 2, 3, 1, make([]float32, 6), 2, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		},
		"narrow ldb": func() {
			Sgemm(false, true, 2, 2, 3, 1, make([]float32, 6), 3, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		},
		"negative": func() { Sgemm(false, false, -1, 2, 2, 1, nil, 2, nil, 2, 0, nil, 2) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// TestSgemmConcurrent calls Sgemm from several goroutines at once (they compete for the
// helper goroutines and pooled buffers), and again after the helpers have gone to sleep.
func TestSgemmConcurrent(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0))))
	const m, n, k = 96, 200, 300
	r := rand.New(rand.NewPCG(7, 7))
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	want, mag := refGemm(false, true, m, n, k, 1, a, k, b, k, 0, nil, n)
	tol := float64(k+2) * 2 * float64(math.Nextafter32(1, 2)-1)
	check := func(c []float32) error {
		for i, w := range want {
			if d := math.Abs(float64(c[i]) - w); !(d <= tol*mag[i]+1e-30) {
				return fmt.Errorf("C[%d] = %g, want %g", i, c[i], w)
			}
		}
		return nil
	}
	for round := 0; round < 2; round++ {
		errs := make(chan error, 4)
		for g := 0; g < 4; g++ {
			go func() {
				c := make([]float32, m*n)
				for it := 0; it < 5; it++ {
					Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
					if err := check(c); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for g := 0; g < 4; g++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3 * helperSpin) // let the helpers park, then wake them
	}
}
