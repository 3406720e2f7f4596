package gemm

// runTeam computes C with a team of size goroutines that share the packed A blocks and
// divide the column tiles of C between them (see team); size 1 is the serial algorithm.
func runTeam(ker *microKernel, size int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ws := make([]*workspace, size)
	for t := range ws {
		ws[t] = ker.getWorkspace(m, n, k)
	}
	tm := newTeam(ker, size, m, n, k)
	// Two A buffers, alternating per step, so that members may pack the next A block
	// while others still compute on the current one.
	tm.bufs = [2][]float32{ws[0].a, ws[size-1].a}
	for t := size - 1; t > 0; t-- {
		goHelper(func() {
			tm.member(t, ws[t], transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		}, func() {
			tm.mu.Lock()
			tm.released++
			tm.wake()
			tm.mu.Unlock()
		})
	}
	tm.member(0, ws[0], transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) // the caller is member 0
	// Wait until the helpers are idle again (not merely done with C), so that the next call
	// finds them warm; waitFor spins briefly first, since they finish within µs of us.
	tm.mu.Lock()
	tm.waitFor(func() bool { return tm.released == size-1 })
	tm.mu.Unlock()
	for _, w := range ws {
		ker.pool.Put(w)
	}
}

// team coordinates the goroutines of one runTeam call. The product is a sequence of steps,
// one per (M block, K block) pair; each step packs one A block, then multiplies it by
// every column of B. Per step:
//
//   - A packing: members take chunks of the block's micro-panels until none are left.
//   - Columns: each member owns an equal contiguous range of C's column tiles and takes
//     chunks from its front, at most one B block (nb) wide and halving as the range drains;
//     a member whose range is empty steals the back half of the fullest other range.
//   - A member computes step s once A(s) is completely packed and every column of step s-1
//     is done (steps s-1 and s update the same C tiles, in order). That is all the
//     synchronisation: there is no barrier on members' presence, so a goroutine that starts
//     late (waking an idle thread takes tens of µs, a large share of an attention-sized
//     product) simply finds less work left, and members pack A(s+1) while the others finish
//     step s. Buffer reuse is safe without further waiting: a member packing A(s+1) into
//     A(s-1)'s buffer got past step s's wait, so all of step s-1 was done.
//
// On an idle machine nobody steals and the split is the static even one. This machine is
// shared, though, and when a neighbour's job (or another goroutine of the program) takes
// part of one core, stealing lets the other core take over its columns instead of waiting.
type team struct {
	ker     *microKernel
	size    int
	mbStep  int // rows per M block
	kSteps  int // K blocks per M block
	tiles   int // column tiles of C
	maxTake int // tiles per chunk at most: nb/nr, one packed B block
	bufs    [2][]float32

	latch
	released int // helpers that have finished and are idle again
	// Per step (index s):
	aNext, aDone []int   // next A micro-panel to pack; micro-panels packed
	colsDone     []int   // column tiles computed
	front, back  [][]int // member t's remaining column tiles are [front[s][t], back[s][t])
}

func newTeam(ker *microKernel, size, m, n, k int) *team {
	tm := &team{ker: ker, size: size, tiles: (n + ker.nr - 1) / ker.nr, maxTake: max(1, ker.nb/ker.nr)}
	tm.init()
	// Split M into equal blocks of at most ker.mb rows rather than full blocks plus a
	// sliver: every M block repacks all of B, and a 30-row remainder would pay that for
	// little work.
	tm.mbStep = ker.mb
	if nblk := (m + ker.mb - 1) / ker.mb; nblk > 1 {
		tm.mbStep = ((m+nblk-1)/nblk + ker.mr - 1) / ker.mr * ker.mr
	}
	tm.kSteps = (k + ker.kc - 1) / ker.kc
	steps := (m + tm.mbStep - 1) / tm.mbStep * tm.kSteps
	tm.aNext = make([]int, steps)
	tm.aDone = make([]int, steps)
	tm.colsDone = make([]int, steps)
	tm.front = make([][]int, steps)
	tm.back = make([][]int, steps)
	for s := range steps {
		tm.front[s] = make([]int, size)
		tm.back[s] = make([]int, size)
		for t := range size {
			tm.front[s][t] = tm.tiles * t / size
			tm.back[s][t] = tm.tiles * (t + 1) / size
		}
	}
	return tm
}

// takePanels returns the next chunk [lo, hi) of step s's A micro-panels to pack.
func (tm *team) takePanels(s, panels int) (lo, hi int) {
	const chunk = 8 // ≈ 45k floats, tens of µs: fine enough to share, coarse enough for the lock
	tm.mu.Lock()
	lo = tm.aNext[s]
	hi = min(lo+chunk, panels)
	tm.aNext[s] = max(lo, hi)
	tm.mu.Unlock()
	return lo, hi
}

// packedPanels records that n micro-panels of step s are packed.
func (tm *team) packedPanels(s, n, panels int) {
	tm.mu.Lock()
	if tm.aDone[s] += n; tm.aDone[s] == panels {
		tm.wake()
	}
	tm.mu.Unlock()
}

// startCompute waits until step s may be computed: A(s) fully packed, step s-1 all done.
func (tm *team) startCompute(s, panels int) {
	tm.mu.Lock()
	tm.waitFor(func() bool {
		return tm.aDone[s] == panels && (s == 0 || tm.colsDone[s-1] == tm.tiles)
	})
	tm.mu.Unlock()
}

// takeCols returns member t's next chunk [lo, hi) of column tiles for step s, after
// recording that done tiles of its previous chunk are computed; empty when nothing is left.
func (tm *team) takeCols(s, t, done int) (lo, hi int) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if done > 0 {
		if tm.colsDone[s] += done; tm.colsDone[s] == tm.tiles {
			tm.wake()
		}
	}
	front, back := tm.front[s], tm.back[s]
	if rem := back[t] - front[t]; rem > 0 {
		// Half of what is left, at most one B block: chunks shrink toward the end of the
		// range, so a thief still finds something worth stealing and the last chunk,
		// which nobody can share, is short.
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

// member is the Goto/BLIS loop nest run by every member of the team:
//
//	for i0 in M by mb:                  A block (mb×kc, packed once, shared by the team, L3)
//	  for p0 in K by kc:                pack chunks of the A block; wait (see team)
//	    for each column chunk I take:   pack B block (kc×≤nb, this goroutine's, L2)
//	      for each mr-row A panel:      A micro-panel stays in L1 ...
//	        for each nr-col B panel:    ... while B micro-panels stream from L2
//	          micro-kernel (mr×nr tile of C in registers for all kc steps)
//
// beta applies at p0 == 0; later K blocks accumulate with beta = 1.
func (tm *team) member(t int, ws *workspace, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ker := tm.ker
	mr, nr := ker.mr, ker.nr
	s := 0
	for i0 := 0; i0 < m; i0 += tm.mbStep {
		mb := min(tm.mbStep, m-i0)
		panels := (mb + mr - 1) / mr
		for p0 := 0; p0 < k; p0, s = p0+ker.kc, s+1 {
			kc := min(ker.kc, k-p0)
			abuf := tm.bufs[s%2]
			for {
				lo, hi := tm.takePanels(s, panels)
				if lo >= hi {
					break
				}
				packA(abuf[lo*mr*kc:], transA, a, lda, i0+lo*mr, p0, min(hi*mr, mb)-lo*mr, kc, mr)
				tm.packedPanels(s, hi-lo, panels)
			}
			tm.startCompute(s, panels)
			bet := beta
			if p0 > 0 {
				bet = 1 // later K blocks accumulate onto the first one's result
			}
			done := 0
			for {
				lo, hi := tm.takeCols(s, t, done)
				if lo >= hi {
					break
				}
				done = hi - lo
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
