package gemm

import (
	"fmt"
	"testing"
)

func BenchmarkTune(b *testing.B) {
	base := defaultKernel
	var ks []*microKernel
	for _, p := range [][3]int{{384, 320, 2016}, {384, 320, 4200}, {256, 480, 2016}, {512, 256, 2016}, {384, 640, 2016}, {320, 384, 2016}} {
		ks = append(ks, &microKernel{name: fmt.Sprintf("kc%d_nb%d_mb%d", p[0], p[1], p[2]), mr: base.mr, nr: base.nr, kc: p[0], nb: p[1], mb: p[2], fn: base.fn})
	}
	for _, s := range []benchShape{benchShapes[1], benchShapes[6]} {
		a, bb, c, lda, ldb, ldc := benchOperands(s)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, ker := range ks {
			b.Run(fmt.Sprintf("%s/%s", s.name, ker.name), func(b *testing.B) {
				cpu0 := cpuSeconds()
				for b.Loop() {
					sgemmWith(ker, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, ldc)
				}
				reportFlops(b, flops, cpu0)
			})
		}
	}
}
