package gemm

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// The fused pure-Go kernel sums exactly like the assembly kernels: for every assembly kernel
// this CPU runs, genericKernel4x4FMA blocked with the same kc gives bit-identical C (beta 0
// and 1), and with k ≤ kc it equals the sequential fma32 chain. This is what makes the
// -tags purego build evaluate like the default one (docs/artifact.md).
func TestFusedGenericMatchesAsm(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 0))
	kcs := map[int]bool{256: true}
	var asm []*microKernel
	for _, k := range availableKernels() {
		if !strings.HasPrefix(k.name, "generic") {
			asm = append(asm, k)
			kcs[k.kc] = true
		}
	}
	for _, s := range [][3]int{{7, 13, 5}, {16, 16, 16}, {33, 70, 300}, {64, 96, 768}, {5, 40, 1000}} {
		m, n, k := s[0], s[1], s[2]
		a, b := randSlice(r, m*k), randSlice(r, k*n)
		c0 := randSlice(r, m*n)
		for kc := range kcs {
			fused := &microKernel{name: "generic-4x4-fma", mr: 4, nr: 4, kc: kc, nb: 512, mb: 1024, fn: genericKernel4x4FMA}
			for _, beta := range []float32{0, 1} {
				want := append([]float32(nil), c0...)
				sgemmWith(fused, false, true, m, n, k, 1, a, k, b, k, beta, want, n)
				if k <= kc {
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var acc float32
							for p := 0; p < k; p++ {
								acc = fma32(a[i*k+p], b[j*k+p], acc)
							}
							if beta != 0 {
								acc += c0[i*n+j]
							}
							if want[i*n+j] != acc {
								t.Fatalf("%v kc %d beta %g: C[%d][%d] = %g, fma chain %g", s, kc, beta, i, j, want[i*n+j], acc)
							}
						}
					}
				}
				for _, ker := range asm {
					if ker.kc != kc {
						continue
					}
					got := append([]float32(nil), c0...)
					sgemmWith(ker, false, true, m, n, k, 1, a, k, b, k, beta, got, n)
					for i := range got {
						if got[i] != want[i] {
							t.Fatalf("%v beta %g: %s C[%d] = %g, fused pure Go %g", s, beta, ker.name, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}
