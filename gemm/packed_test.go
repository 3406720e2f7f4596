package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// packRowsForTest lays out the rows×k row-major matrix x as micro-panels of width w (the
// format MulPacked documents), padding with pad.
func packRowsForTest(x []float32, rows, k, w int, pad float32) []float32 {
	p := (rows + w - 1) / w
	d := make([]float32, p*w*k)
	for i := 0; i < p*w; i++ {
		for q := 0; q < k; q++ {
			v := pad
			if i < rows {
				v = x[i*k+q]
			}
			d[i/w*w*k+q*w+i%w] = v
		}
	}
	return d
}

// TestMulPacked checks MulPacked against Sgemm on integer-valued operands (both exact, so
// bit-equal whatever the order): ragged edges, k across the kernel's kc, a C stride wider
// than n, panels taken from inside larger packed matrices, and padding that is not zero.
func TestMulPacked(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	mr, nr := Tile()
	for _, sh := range [][3]int{{1, 1, 1}, {mr, nr, 128}, {3*mr + 5, 2*nr + 3, 129}, {2*mr - 1, 5*nr + 1, 1000}, {37, 70, 7}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b := make([]float32, m*k), make([]float32, n*k)
		for i := range a {
			a[i] = float32(r.IntN(255) - 127)
		}
		for i := range b {
			b[i] = float32(r.IntN(15) - 7)
		}
		want := make([]float32, m*n)
		Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, want, n)
		ap, bp := packRowsForTest(a, m, k, mr, 3), packRowsForTest(b, n, k, nr, -2)
		ldc := n + 3
		got := make([]float32, m*ldc)
		for i := range got {
			got[i] = float32(math.NaN())
		}
		MulPacked(m, n, k, ap, bp, got, ldc)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				if math.Float32bits(got[i*ldc+j]) != math.Float32bits(want[i*n+j]) {
					t.Fatalf("%dx%dx%d: C[%d][%d] = %v, Sgemm %v", m, n, k, i, j, got[i*ldc+j], want[i*n+j])
				}
			}
			for j := n; j < ldc && i < m-1; j++ {
				if !math.IsNaN(float64(got[i*ldc+j])) {
					t.Fatalf("%dx%dx%d: C[%d][%d] past n was written", m, n, k, i, j)
				}
			}
		}
		// The last row panel and column panel alone, from inside the packed matrices.
		if pm, pn := (m+mr-1)/mr, (n+nr-1)/nr; pm > 1 && pn > 1 {
			i0, j0 := (pm-1)*mr, (pn-1)*nr
			sub := make([]float32, (m-i0)*(n-j0))
			MulPacked(m-i0, n-j0, k, ap[i0*k:], bp[j0*k:], sub, n-j0)
			for i := i0; i < m; i++ {
				for j := j0; j < n; j++ {
					if sub[(i-i0)*(n-j0)+j-j0] != want[i*n+j] {
						t.Fatalf("%dx%dx%d: sub-panel C[%d][%d] = %v, Sgemm %v", m, n, k, i, j, sub[(i-i0)*(n-j0)+j-j0], want[i*n+j])
					}
				}
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MulPacked with a short packed A did not panic")
		}
	}()
	MulPacked(mr+1, nr, 4, make([]float32, mr*4), make([]float32, nr*4), make([]float32, (mr+1)*nr), nr)
}
