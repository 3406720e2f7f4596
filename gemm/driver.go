package gemm

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// kernelFunc computes one full mr×nr tile of C from a packed A micro-panel (k steps of mr
// values) and a packed B micro-panel (k steps of nr values):
// C[i·ldc+j] = alpha·Σ_p a[p·mr+i]·b[p·nr+j] + beta·C[i·ldc+j], C not read when beta == 0.
type kernelFunc func(k int, a, b, c []float32, ldc int, alpha, beta float32)

// microKernel is a register tile plus the cache blocking tuned for it.
type microKernel struct {
	name   string
	mr, nr int // register tile: mr rows (broadcast from packed A) × nr columns (vectors of packed B)
	kc     int // K block: canonicalKC for every kernel (it is part of the arithmetic); A micro-panel mr·kc floats in L1
	nb     int // N block, a multiple of nr: the packed B block (kc·nb floats) lives in L2
	mb     int // M block, a multiple of mr: the packed A block (mb·kc floats) lives in L3
	fn     kernelFunc

	pool sync.Pool // *workspace sized for this kernel's blocking
}

// workspace holds one goroutine's packing buffers. They are reused through microKernel.pool
// because a 4096-wide problem needs megabytes of them and the forward pass calls Sgemm
// thousands of times.
type workspace struct {
	a, b []float32 // packed A block (≤ mb×kc), packed B block (≤ kc×nb)
	tile []float32 // mr×nr scratch for edge tiles
}

// getWorkspace returns buffers for an m×n×k product: full blocks at most, but no larger than
// the problem needs, so that an attention-sized call after a GC (which empties the pool) does
// not allocate and zero megabytes. A pooled workspace too small for this call is dropped and
// a larger one made; the pool thus settles on the largest shapes in use.
func (ker *microKernel) getWorkspace(m, n, k int) *workspace {
	kc := min(ker.kc, k)
	na := min(ker.mb, (m+ker.mr-1)/ker.mr*ker.mr) * kc
	nb := min(ker.nb, (n+ker.nr-1)/ker.nr*ker.nr) * kc
	if ws, ok := ker.pool.Get().(*workspace); ok && len(ws.a) >= na && len(ws.b) >= nb {
		return ws
	}
	return &workspace{a: alignedFloats(na), b: alignedFloats(nb), tile: alignedFloats(ker.mr * ker.nr)}
}

// alignedFloats returns a zeroed slice whose first element is 64-byte aligned, so every
// packed row of B starts on a cache line and ZMM loads never split lines.
func alignedFloats(n int) []float32 {
	s := make([]float32, n+16)
	off := int((64 - uintptr(unsafe.Pointer(&s[0]))%64) % 64 / 4)
	return s[off : off+n : off+n]
}

var (
	kernels       = availableKernels()
	defaultKernel = selectKernel(kernels, os.Getenv("ODYSSEY_GEMM_KERNEL"))
)

// selectKernel returns the fastest kernel, or the one named by ODYSSEY_GEMM_KERNEL (an
// A/B and test switch: every kernel computes the same bits, so this changes only the
// speed; the determinism tests run the whole pipeline under each). An unknown or
// unavailable name panics at start-up rather than quietly measuring another kernel.
func selectKernel(ks []*microKernel, name string) *microKernel {
	if name == "" {
		return ks[0]
	}
	for _, k := range ks {
		if k.name == name {
			return k
		}
	}
	panic(fmt.Sprintf("gemm: ODYSSEY_GEMM_KERNEL=%q: this CPU and build run %v", name, Kernels()))
}

// Kernels returns the names of the micro-kernels this CPU and build can run, fastest (the
// default) first; ODYSSEY_GEMM_KERNEL selects one of them.
func Kernels() []string {
	var s []string
	for _, k := range kernels {
		s = append(s, k.name)
	}
	return s
}

// minFlopsPerThread keeps small products (attention heads, tiny models) on one goroutine:
// below about 4 MFLOP (≈ 20 µs of work) goroutine start and join cost more than they save.
const minFlopsPerThread = 4 << 20

// sgemm runs the blocked algorithm with kernel ker, split across goroutines. Arguments are
// already validated, m, n, k > 0 and alpha != 0.
//
// Parallel split: the goroutines form a team that shares each packed A block (each packs a
// share of its micro-panels, then all wait at a barrier) and divides the columns of C, each
// packing the B blocks of its own columns. Nothing is packed twice, and the shared A block is
// one copy in the shared L3. When C has too few column tiles to divide (n of one or two
// tiles: attention's P·V), the goroutines instead take independent row ranges and each packs
// the (small) B itself.
func sgemm(ker *microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	threads := runtime.GOMAXPROCS(0)
	if w := 2 * float64(m) * float64(n) * float64(k) / minFlopsPerThread; w < float64(threads) {
		threads = max(int(w), 1) // float64: m·n·k overflows int on 32-bit targets
	}
	tilesM := (m + ker.mr - 1) / ker.mr
	tilesN := (n + ker.nr - 1) / ker.nr
	if threads <= 1 || (tilesN < 2*threads && tilesM < 2*threads) {
		runTeam(ker, 1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if tilesN >= 2*threads {
		runTeam(ker, threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	var l latch
	l.init()
	released := 0
	for t := 1; t < threads; t++ {
		goHelper(func() {
			rowChunk(ker, t, threads, tilesM, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		}, func() {
			l.mu.Lock()
			released++
			l.wake()
			l.mu.Unlock()
		})
	}
	rowChunk(ker, 0, threads, tilesM, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	l.mu.Lock()
	l.waitFor(func() bool { return released == threads-1 })
	l.mu.Unlock()
}

// rowChunk runs goroutine t's share of the rows of C as an independent one-goroutine product.
func rowChunk(ker *microKernel, t, threads, tilesM int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	i0, i1 := tilesM*t/threads*ker.mr, min(tilesM*(t+1)/threads*ker.mr, m)
	ao := i0 * lda // first row of op(A)
	if transA {
		ao = i0
	}
	runTeam(ker, 1, transA, transB, i1-i0, n, k, alpha, a[ao:], lda, b, ldb, beta, c[i0*ldc:], ldc)
}

// mergeTile writes C = alpha·t + beta·C for a rows×cols corner of tile t, with the canonical
// update (kernel_generic.go) that the kernels apply to full tiles.
func mergeTile(c []float32, ldc int, t []float32, ldt, rows, cols int, alpha, beta float32) {
	for r := 0; r < rows; r++ {
		cr := c[r*ldc : r*ldc+cols]
		tr := t[r*ldt : r*ldt+cols]
		for q := range cr {
			update(&cr[q], tr[q], alpha, beta)
		}
	}
}

// scaleC sets C = beta·C (the whole product when k == 0 or alpha == 0). beta == 0 stores
// zeros rather than multiplying, so NaN in C does not survive.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		cr := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(cr)
			continue
		}
		for j := range cr {
			cr[j] *= beta
		}
	}
}
