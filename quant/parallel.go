package quant

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallelBlocks runs fn over [0, n) in blocks of the given size on up to workers goroutines
// (0: GOMAXPROCS), the calling goroutine included. Blocks are handed out through an atomic
// counter rather than split statically: the machine is shared, and a statically assigned
// half on a busy core would finish last. It returns the error of the lowest failing block, so
// the error reported does not depend on scheduling; after a failure no new block starts.
func parallelBlocks(n, block, workers int, fn func(lo, hi int) error) error {
	if n <= 0 {
		return nil
	}
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
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
		mu     sync.Mutex
		errBlk = blocks
		err    error
	)
	work := func() {
		defer wg.Done()
		for !failed.Load() {
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
				failed.Store(true)
			}
		}
	}
	wg.Add(workers)
	for range workers - 1 {
		go work()
	}
	work()
	wg.Wait()
	return err
}
