package quant

import "sync"

// Int4 codes of a whole weight are out·in bytes (45 MB for a LLaMA-7B MLP projection),
// written once by the rounding kernel. Allocated fresh for every weight, each of their
// pages is faulted in by the kernel's first store, which on a paravirtualised machine cost
// a quarter of the RTN path's time (issue 10). A weight's codes are dead once its layer is
// written, so the pipeline hands them back (ReleaseCodes) and the next weight of the same
// size reuses the mapped memory. sync.Pool would not do: the pipeline collects garbage
// after every layer, which empties it.

// codesPoolMax bounds what the pool keeps: one LLaMA-70B layer's codes fit.
const codesPoolMax = 1 << 30

var codesPool struct {
	sync.Mutex
	free  map[int][][]int8
	bytes int
}

// ReleaseCodes hands q, codes no longer referenced anywhere, back for reuse by the
// quantizers. The caller must drop every reference to q.
func ReleaseCodes(q []int8) {
	if len(q) == 0 {
		return
	}
	codesPool.Lock()
	defer codesPool.Unlock()
	if codesPool.bytes+cap(q) > codesPoolMax {
		return
	}
	if codesPool.free == nil {
		codesPool.free = map[int][][]int8{}
	}
	q = q[:cap(q)]
	codesPool.free[len(q)] = append(codesPool.free[len(q)], q)
	codesPool.bytes += len(q)
}

// NewCodes returns n zeroed codes, reusing released ones of that size when there are.
func NewCodes(n int) []int8 {
	codesPool.Lock()
	l := codesPool.free[n]
	if len(l) == 0 {
		codesPool.Unlock()
		return make([]int8, n)
	}
	q := l[len(l)-1]
	codesPool.free[n] = l[:len(l)-1]
	codesPool.bytes -= n
	codesPool.Unlock()
	clear(q) // mapped already: a memset, not page faults
	return q
}
