//go:build openblas && cgo

package gemm

// OpenBLAS in the same benchmark run, through cgo (package gemm/internal/openblas). Only
// built with -tags openblas, so the default build and tests never need cgo or the library:
//
//	apt-get install -y libopenblas-dev
//	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \
//	    go test -tags openblas -run '^$' -bench Sgemm ./gemm/
//
// OPENBLAS_CORETYPE forces a kernel family and OPENBLAS_L2_SIZE overrides the cache size
// OpenBLAS blocks for; some machines set them to work around bugs (this one had
// OPENBLAS_CORETYPE=Haswell, i.e. the AVX2 kernels). Unset both for the comparison so OpenBLAS
// picks its own best kernel, and read which one it used in the logged line.

import (
	"os"
	"sync"
	"testing"

	"github.com/odyssey-llm/odyssey/gemm/internal/openblas"
)

func init() {
	benchImpls = append(benchImpls, benchImpl{"openblas", openblas.Sgemm})
}

var logOnce sync.Once

// TestOpenBLASInfo records which OpenBLAS kernel and thread count the comparison ran with.
func TestOpenBLASInfo(t *testing.T) { logOpenBLAS(t) }

func logOpenBLAS(tb testing.TB) {
	core, config, threads := openblas.Info()
	tb.Logf("OpenBLAS core=%s threads=%d config=%q OPENBLAS_CORETYPE=%q OPENBLAS_L2_SIZE=%q",
		core, threads, config, os.Getenv("OPENBLAS_CORETYPE"), os.Getenv("OPENBLAS_L2_SIZE"))
}

// BenchmarkSgemmOpenBLASInfo prints the same line in benchmark output.
func BenchmarkSgemmOpenBLASInfo(b *testing.B) {
	logOnce.Do(func() { logOpenBLAS(b) })
	for b.Loop() {
	}
}
