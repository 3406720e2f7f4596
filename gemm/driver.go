package gemm

import (
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
	kc     int // K block: one A micro-panel (mr·kc floats) must stay in L1 while B panels stream past
	nb     int // N block, a multiple of nr: the packed B block (kc·nb floats) lives in L2
	mb     int // M block, a multiple of mr: the packed A block (mb·kc floats) lives in L3
	fn     kernelFunc

	pool sync.Pool // *workspace sized for this kernel's blocking
}

// workspace holds one goroutine's packing buffers. They are reused through microKernel.pool
// because a 4096-wide problem needs megabytes of them and the forward pass calls Sgemm
// thousands of times.
type workspace struct {
	a, b []float32 // packed A block (mb×kc), packed B block (kc×nb)
	tile []float32 // mr×nr scratch for edge tiles
}

func (ker *microKernel) getWorkspace() *workspace {
	if ws, ok := ker.pool.Get().(*workspace); ok {
		return ws
	}
	return &workspace{
		a:    alignedFloats(ker.mb * ker.kc),
		b:    alignedFloats(ker.nb * ker.kc),
		tile: alignedFloats(ker.mr * ker.nr),
	}
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
	defaultKernel = kernels[0]
)

// minFlopsPerThread keeps small products (attention heads, tiny models) on one goroutine:
// below about 4 MFLOP (≈ 20 µs of work) goroutine start and join cost more than they save.
const minFlopsPerThread = 4 << 20

// sgemm runs the blocked algorithm with kernel ker, split across goroutines. Arguments are
// already validated, m, n, k > 0 and alpha != 0.
func sgemm(ker *microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	threads := runtime.GOMAXPROCS(0)
	if w := 2 * m * n * k / minFlopsPerThread; w < threads {
		threads = max(w, 1)
	}
	tilesM := (m + ker.mr - 1) / ker.mr
	tilesN := (n + ker.nr - 1) / ker.nr
	// Each goroutine packs its own panels, so splitting N repacks all of A per goroutine and
	// splitting M repacks all of B. Split the larger dimension: the duplicated packing is then
	// of the smaller operand. Keep at least a few tiles per goroutine.
	splitN := n >= m
	tiles := tilesM
	if splitN {
		tiles = tilesN
	}
	threads = min(threads, tiles)
	if threads <= 1 {
		serial(ker, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	var wg sync.WaitGroup
	for t := threads - 1; t >= 0; t-- {
		t0, t1 := tiles*t/threads, tiles*(t+1)/threads
		var run func()
		if splitN {
			j0, j1 := t0*ker.nr, min(t1*ker.nr, n)
			bo := j0 // first column of op(B)
			if transB {
				bo = j0 * ldb
			}
			run = func() {
				serial(ker, transA, transB, m, j1-j0, k, alpha, a, lda, b[bo:], ldb, beta, c[j0:], ldc)
			}
		} else {
			i0, i1 := t0*ker.mr, min(t1*ker.mr, m)
			ao := i0 * lda // first row of op(A)
			if transA {
				ao = i0
			}
			run = func() {
				serial(ker, transA, transB, i1-i0, n, k, alpha, a[ao:], lda, b, ldb, beta, c[i0*ldc:], ldc)
			}
		}
		if t == 0 {
			run() // the calling goroutine takes the first chunk
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
}

// serial is the Goto/BLIS loop nest for one goroutine:
//
//	for i0 in M by mb:               A block  (mb×kc, packed, L3)
//	  for p0 in K by kc:             pack A block; beta applies only at p0 == 0
//	    for j0 in N by nb:           pack B block (kc×nb, L2)
//	      for each mr-row A panel:   A micro-panel stays in L1 ...
//	        for each nr-col B panel: ... while B micro-panels stream from L2
//	          micro-kernel (mr×nr tile of C, in registers for all kc steps)
func serial(ker *microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ws := ker.getWorkspace()
	defer ker.pool.Put(ws)
	mr, nr := ker.mr, ker.nr
	// Split M into equal blocks of at most ker.mb rows rather than full blocks plus a sliver:
	// every M block repacks all of B, and a 32-row remainder would pay that for little work.
	mbStep := ker.mb
	if nblk := (m + ker.mb - 1) / ker.mb; nblk > 1 {
		mbStep = ((m+nblk-1)/nblk + mr - 1) / mr * mr
	}
	for i0 := 0; i0 < m; i0 += mbStep {
		mb := min(mbStep, m-i0)
		for p0 := 0; p0 < k; p0 += ker.kc {
			kc := min(ker.kc, k-p0)
			packA(ws.a, transA, a, lda, i0, p0, mb, kc, mr)
			bet := beta
			if p0 > 0 {
				bet = 1 // later K blocks accumulate onto the first one's result
			}
			for j0 := 0; j0 < n; j0 += ker.nb {
				nb := min(ker.nb, n-j0)
				packB(ws.b, transB, b, ldb, p0, j0, kc, nb, nr)
				for ii := 0; ii < mb; ii += mr {
					ap := ws.a[ii*kc : (ii+mr)*kc]
					i := i0 + ii
					rows := min(mr, m-i)
					for jj := 0; jj < nb; jj += nr {
						bp := ws.b[jj*kc : (jj+nr)*kc]
						j := j0 + jj
						cols := min(nr, n-j)
						if rows == mr && cols == nr {
							ker.fn(kc, ap, bp, c[i*ldc+j:], ldc, alpha, bet)
							continue
						}
						// Ragged edge: compute the full tile into scratch (the packed
						// panels are zero-padded), then merge only the valid part.
						ker.fn(kc, ap, bp, ws.tile, nr, 1, 0)
						mergeTile(c[i*ldc+j:], ldc, ws.tile, nr, rows, cols, alpha, bet)
					}
				}
			}
		}
	}
}

// mergeTile writes C = alpha·t + beta·C for a rows×cols corner of tile t.
func mergeTile(c []float32, ldc int, t []float32, ldt, rows, cols int, alpha, beta float32) {
	for r := 0; r < rows; r++ {
		cr := c[r*ldc : r*ldc+cols]
		tr := t[r*ldt : r*ldt+cols]
		if beta == 0 {
			for q := range cr {
				cr[q] = alpha * tr[q]
			}
			continue
		}
		for q := range cr {
			cr[q] = alpha*tr[q] + beta*cr[q]
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
