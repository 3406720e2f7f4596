// Package parallel holds the project's parallel-for loops: one place for how work is split
// across the cores and for what happens when a worker fails.
//
// Every function runs its work on up to GOMAXPROCS goroutines, the calling goroutine
// included, and returns only once all of them are done. With one worker (GOMAXPROCS=1, or
// too little work to split) the work runs inline on the caller, in order.
//
// A panic in a worker does not crash the process from a foreign goroutine: the loop stops
// handing out work, waits for the other workers, and re-raises the panic in the caller as a
// *Panic, which carries the original value and the worker's stack. Errors (Blocks) are
// returned, not panicked.
package parallel

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Panic is the value a loop re-panics with in the caller when one of its workers panicked.
// Only the first panic is kept.
type Panic struct {
	Value any    // the value the worker panicked with
	Stack []byte // the worker's stack at the panic
}

func (p *Panic) Error() string {
	return fmt.Sprintf("parallel: worker panicked: %v\n\nworker stack:\n%s", p.Value, p.Stack)
}

// Unwrap returns the panic value when it is an error.
func (p *Panic) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// Workers returns the number of workers a loop over n independent items uses:
// min(GOMAXPROCS, n), at least 1.
func Workers(n int) int { return max(1, min(runtime.GOMAXPROCS(0), n)) }

// group runs w workers (the caller is the last) and collects the first panic.
type group struct {
	failed atomic.Bool
	mu     sync.Mutex
	panic  *Panic
}

// run calls work(i) for i in [0, w), each on its own goroutine but the last, which runs on
// the caller; it re-raises the first panic once all have returned.
func (g *group) run(w int, work func(i int)) {
	var wg sync.WaitGroup
	wg.Add(w)
	for i := range w - 1 {
		go g.do(&wg, i, work)
	}
	g.do(&wg, w-1, work)
	wg.Wait()
	if g.panic != nil {
		panic(g.panic)
	}
}

func (g *group) do(wg *sync.WaitGroup, i int, work func(i int)) {
	defer wg.Done()
	defer func() {
		if v := recover(); v != nil {
			p, ok := v.(*Panic) // a nested loop's panic keeps its original stack
			if !ok {
				p = &Panic{Value: v, Stack: debug.Stack()}
			}
			g.mu.Lock()
			if g.panic == nil {
				g.panic = p
			}
			g.mu.Unlock()
			g.failed.Store(true)
		}
	}()
	work(i)
}

// Ranges splits [0, n) into w contiguous ranges [n*i/w, n*(i+1)/w), w = min(GOMAXPROCS,
// n/minPer), and runs fn on them concurrently. With w <= 1 it calls fn(0, n) inline (also
// for n = 0). The split depends on GOMAXPROCS: use it only where fn's results do not.
func Ranges(n, minPer int, fn func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), n/max(1, minPer))
	if w <= 1 {
		fn(0, n)
		return
	}
	var g group
	g.run(w, func(i int) { fn(n*i/w, n*(i+1)/w) })
}

// For runs fn(worker, i) for every i in [0, n), handing indices out one at a time, in
// increasing order, to Workers(n) workers; worker in [0, Workers(n)) names the worker, for
// per-worker scratch space. After a panic no new index is handed out.
func For(n int, fn func(worker, i int)) {
	if n <= 0 {
		return
	}
	w := Workers(n)
	if w == 1 {
		for i := range n {
			fn(0, i)
		}
		return
	}
	var g group
	var next atomic.Int64
	g.run(w, func(worker int) {
		for !g.failed.Load() {
			i := int(next.Add(1)) - 1
			if i >= n {
				return
			}
			fn(worker, i)
		}
	})
}

// Blocks runs fn over [0, n) in blocks [k*block, min((k+1)*block, n)) on up to workers
// goroutines (0: GOMAXPROCS), the caller included. Blocks are handed out in order through an
// atomic counter rather than split statically: the machine is shared, and a statically
// assigned half on a busy core would finish last. The block boundaries do not depend on the
// number of workers. Blocks returns the error of the lowest failing block, so the error
// reported does not depend on scheduling; after a failure (error or panic) no new block
// starts.
func Blocks(n, block, workers int, fn func(lo, hi int) error) error {
	if n <= 0 {
		return nil
	}
	block = max(1, block)
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	blocks := (n + block - 1) / block
	workers = min(workers, blocks)
	if workers == 1 {
		for lo := 0; lo < n; lo += block {
			if err := fn(lo, min(lo+block, n)); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		g      group
		next   atomic.Int64
		mu     sync.Mutex
		errBlk = blocks
		err    error
	)
	g.run(workers, func(int) {
		for !g.failed.Load() {
			b := int(next.Add(1) - 1)
			if b >= blocks {
				return
			}
			lo := b * block
			if e := fn(lo, min(lo+block, n)); e != nil {
				mu.Lock()
				if b < errBlk {
					errBlk, err = b, e
				}
				mu.Unlock()
				g.failed.Store(true)
			}
		}
	})
	return err
}
