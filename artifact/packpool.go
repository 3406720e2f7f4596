package artifact

import "sync"

// A layer's packed int4 weights (101 MB for a LLaMA-7B layer) are written to its checkpoint
// and then dead. Allocated fresh for every layer, each page of them is faulted in by the
// packing kernel's first store, which on a paravirtualised machine is a large share of the
// RTN path's time (issue 10); Writer.WriteLayer hands them back once written, and the next
// layer packs into the same, already mapped, memory. (sync.Pool would be emptied by the
// collection the pipeline runs after every layer.)

// packedPoolMax bounds what the pool keeps: one LLaMA-70B layer's packed weights fit.
const packedPoolMax = 1 << 30

var packedPool struct {
	sync.Mutex
	free  map[int][][]byte
	bytes int
}

// releasePacked hands b back for reuse; nothing may reference it any more.
func releasePacked(b []byte) {
	if len(b) == 0 {
		return
	}
	packedPool.Lock()
	defer packedPool.Unlock()
	if packedPool.bytes+cap(b) > packedPoolMax {
		return
	}
	if packedPool.free == nil {
		packedPool.free = map[int][][]byte{}
	}
	b = b[:cap(b)]
	packedPool.free[len(b)] = append(packedPool.free[len(b)], b)
	packedPool.bytes += len(b)
}

// newPacked returns n zero bytes, reusing released ones of that size when there are.
func newPacked(n int) []byte {
	packedPool.Lock()
	l := packedPool.free[n]
	if len(l) == 0 {
		packedPool.Unlock()
		return make([]byte, n)
	}
	b := l[len(l)-1]
	packedPool.free[n] = l[:len(l)-1]
	packedPool.bytes -= n
	packedPool.Unlock()
	clear(b) // padding rows must read zero; mapped already, so a memset, not page faults
	return b
}
