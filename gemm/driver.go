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
	defaultKernel = kernels[0]
)

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
	var wg sync.WaitGroup
	for t := 1; t < threads; t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rowChunk(ker, t, threads, tilesM, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		}()
	}
	rowChunk(ker, 0, threads, tilesM, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	wg.Wait()
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

// runTeam computes C with a team of size goroutines that share the packed A blocks and
// divide the column tiles of C between them (see team); size 1 is the serial algorithm.
func runTeam(ker *microKernel, size int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ws := make([]*workspace, size)
	for t := range ws {
		ws[t] = ker.getWorkspace(m, n, k)
	}
	// Two A buffers, alternating per K block, so a goroutine may pack the next block while
	// the others still compute on the current one: one barrier per block suffices.
	bufs := [2][]float32{ws[0].a, ws[size-1].a}
	tm := newTeam(size, (n+ker.nr-1)/ker.nr, ker.nb/ker.nr)
	var wg sync.WaitGroup
	for t := size - 1; t >= 0; t-- {
		run := func() {
			teamMember(ker, tm, t, ws[t], bufs, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		}
		if t == 0 {
			run() // the calling goroutine is member 0
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	for _, w := range ws {
		ker.pool.Put(w)
	}
}

// team coordinates the goroutines of one runTeam call through K blocks ("steps"):
//
//   - A packing: members take chunks of the step's A micro-panels until none are left, then
//     meet at a barrier (the block is complete, and every member has finished the previous
//     step, so no two steps ever update the same C tile at once).
//   - Columns: each member owns an equal contiguous range of C's column tiles and takes
//     chunks from its front, at most nb wide, halving as the range drains. A member whose
//     range is empty steals the back half of the fullest other range.
//
// On an idle machine nobody steals and the split is the static even one. This machine is
// shared, though: when a neighbour's job takes half of one core, a static split would run
// at the speed of that core, while stealing lets the other core take over its columns.
//
// It blocks (futex, via sync.Cond) rather than spinning, for the same reason: a spinning
// goroutine would burn the core its descheduled partner needs.
type team struct {
	size    int
	tiles   int // column tiles of C
	maxTake int // tiles per chunk at most: nb/nr, one packed B block
	mu      sync.Mutex
	cond    sync.Cond
	arrived int
	gen     int
	// Per-step work, double-buffered by step parity like the A buffers: while the
	// stragglers finish step s, the others already pack step s+1.
	aNext       [2]int   // next A micro-panel to pack
	front, back [2][]int // member t's remaining column tiles are [front[t], back[t])
}

func newTeam(size, tiles, maxTake int) *team {
	tm := &team{size: size, tiles: tiles, maxTake: max(1, maxTake)}
	tm.cond.L = &tm.mu
	for q := range 2 {
		tm.front[q] = make([]int, size)
		tm.back[q] = make([]int, size)
		tm.reset(q)
	}
	return tm
}

// reset prepares the work counters of parity q for a new step.
func (tm *team) reset(q int) {
	tm.aNext[q] = 0
	for t := range tm.size {
		tm.front[q][t] = tm.tiles * t / tm.size
		tm.back[q][t] = tm.tiles * (t + 1) / tm.size
	}
}

// wait is the barrier ending step's A packing. The last member to arrive resets the other
// parity's counters for step+1: everyone has finished step-1 (they are here), and nobody
// starts step+1 before leaving this barrier.
func (tm *team) wait(step int) {
	if tm.size == 1 {
		tm.reset((step + 1) % 2)
		return
	}
	tm.mu.Lock()
	gen := tm.gen
	if tm.arrived++; tm.arrived == tm.size {
		tm.arrived = 0
		tm.gen++
		tm.reset((step + 1) % 2)
		tm.cond.Broadcast()
	} else {
		for gen == tm.gen {
			tm.cond.Wait()
		}
	}
	tm.mu.Unlock()
}

// takePanels returns the next chunk [lo, hi) of the step's A micro-panels to pack.
func (tm *team) takePanels(step, panels int) (lo, hi int) {
	const chunk = 8 // ≈ 45k floats, tens of µs: small enough to balance, large enough to amortise the lock
	q := step % 2
	tm.mu.Lock()
	lo = tm.aNext[q]
	hi = min(lo+chunk, panels)
	tm.aNext[q] = max(lo, hi)
	tm.mu.Unlock()
	return lo, hi
}

// takeCols returns member t's next chunk [lo, hi) of column tiles for the step, empty when
// the step has no columns left.
func (tm *team) takeCols(step, t int) (lo, hi int) {
	q := step % 2
	front, back := tm.front[q], tm.back[q]
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if rem := back[t] - front[t]; rem > 0 {
		// Take half of what is left (at most one B block): the chunks shrink toward the
		// end of the range, so a thief still finds something worth stealing and the
		// last chunk, which nobody can share, is short.
		n := min(max((rem+1)/2, 2), rem, tm.maxTake)
		lo = front[t]
		front[t] += n
		return lo, lo + n
	}
	v, most := -1, 0
	for u := range tm.size {
		if rem := back[u] - front[u]; rem > most {
			v, most = u, rem
		}
	}
	if v < 0 || most < 2 { // a single tile left: its owner takes it next
		return 0, 0
	}
	n := min(most/2, tm.maxTake)
	back[v] -= n
	return back[v], back[v] + n
}

// teamMember is the Goto/BLIS loop nest run by every member:
//
//	for i0 in M by mb:                  A block (mb×kc, packed once, shared by the team, L3)
//	  for p0 in K by kc:                pack chunks of the A block; barrier
//	    for each column chunk I take:   pack B block (kc×≤nb, this goroutine's, L2)
//	      for each mr-row A panel:      A micro-panel stays in L1 ...
//	        for each nr-col B panel:    ... while B micro-panels stream from L2
//	          micro-kernel (mr×nr tile of C in registers for all kc steps)
//
// beta applies at p0 == 0; later K blocks accumulate with beta = 1.
func teamMember(ker *microKernel, tm *team, t int, ws *workspace, bufs [2][]float32, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mr, nr := ker.mr, ker.nr
	// Split M into equal blocks of at most ker.mb rows rather than full blocks plus a sliver:
	// every M block repacks all of B, and a 32-row remainder would pay that for little work.
	mbStep := ker.mb
	if nblk := (m + ker.mb - 1) / ker.mb; nblk > 1 {
		mbStep = ((m+nblk-1)/nblk + mr - 1) / mr * mr
	}
	step := 0
	for i0 := 0; i0 < m; i0 += mbStep {
		mb := min(mbStep, m-i0)
		panels := (mb + mr - 1) / mr
		for p0 := 0; p0 < k; p0, step = p0+ker.kc, step+1 {
			kc := min(ker.kc, k-p0)
			abuf := bufs[step%2]
			for {
				lo, hi := tm.takePanels(step, panels)
				if lo >= hi {
					break
				}
				packA(abuf[lo*mr*kc:], transA, a, lda, i0+lo*mr, p0, min(hi*mr, mb)-lo*mr, kc, mr)
			}
			tm.wait(step)
			bet := beta
			if p0 > 0 {
				bet = 1 // later K blocks accumulate onto the first one's result
			}
			for {
				lo, hi := tm.takeCols(step, t)
				if lo >= hi {
					break
				}
				jb := lo * nr
				nb := min(hi*nr, n) - jb
				packB(ws.b, transB, b, ldb, p0, jb, kc, nb, nr)
				for ii := 0; ii < mb; ii += mr {
					ap := abuf[ii*kc : (ii+mr)*kc]
					i := i0 + ii
					rows := min(mr, m-i)
					for jj := 0; jj < nb; jj += nr {
						bp := ws.b[jj*kc : (jj+nr)*kc]
						j := jb + jj
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
