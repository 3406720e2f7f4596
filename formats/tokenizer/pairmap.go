package tokenizer

// pairMap is an open-addressing hash table from a token pair (packed in a uint64) to its
// merge rank. Merge lookups are the inner loop of BPE; with fixed-size integer keys, a
// multiplicative hash and linear probing in flat arrays is about twice as fast as Go's
// general map.
type pairMap struct {
	keys  []uint64
	vals  []int32
	shift uint
	n     int
}

const emptyPair = ^uint64(0) // ids are non-negative int32, so no real pair packs to this

func newPairMap(hint int) *pairMap {
	size := 16
	for size < 2*hint {
		size *= 2
	}
	m := &pairMap{}
	m.alloc(size)
	return m
}

func (m *pairMap) alloc(size int) {
	m.keys = make([]uint64, size)
	m.vals = make([]int32, size)
	for i := range m.keys {
		m.keys[i] = emptyPair
	}
	m.shift = 64
	for s := size; s > 1; s >>= 1 {
		m.shift--
	}
}

func (m *pairMap) slot(k uint64) int {
	return int((k * 0x9E3779B97F4A7C15) >> m.shift)
}

func (m *pairMap) get(k uint64) (int32, bool) {
	mask := len(m.keys) - 1
	for i := m.slot(k); ; i = (i + 1) & mask {
		switch m.keys[i] {
		case k:
			return m.vals[i], true
		case emptyPair:
			return 0, false
		}
	}
}

// set inserts or overwrites.
func (m *pairMap) set(k uint64, v int32) {
	if 2*(m.n+1) > len(m.keys) {
		oldK, oldV := m.keys, m.vals
		m.alloc(2 * len(oldK))
		m.n = 0
		for i, ok := range oldK {
			if ok != emptyPair {
				m.set(ok, oldV[i])
			}
		}
	}
	mask := len(m.keys) - 1
	for i := m.slot(k); ; i = (i + 1) & mask {
		switch m.keys[i] {
		case k:
			m.vals[i] = v
			return
		case emptyPair:
			m.keys[i], m.vals[i] = k, v
			m.n++
			return
		}
	}
}
