package tokenizer

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// bpe is HF's BPE model. Encoding a word follows tokenizers' Word::merge_all exactly: the
// word starts as one symbol per character (with unk / byte-fallback handling), and merges
// are applied from a priority queue ordered by (merge rank, position), with stale queue
// entries recognized by their result id. Porting the queue rather than writing the textbook
// "merge the best pair until none is left" loop keeps even corner cases identical, and it
// is O(n log n) on the long words that SentencePiece-style tokenizers produce (a whole
// line is one word there).
type bpe struct {
	vocab  map[string]int32
	idTok  []string // model id → token
	idOK   []bool   // whether idTok[id] exists
	merges *pairMap
	// rankNew is the id a merge produces, by rank. A rank identifies its merge, so queue
	// entries need carry only (rank, position).
	rankNew []int32

	unk          int32 // -1: none
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix

	fallback [256]int32 // ids of <0xNN>, -1 where absent
	// byteIDs are the ids of the one-rune byte-level tokens, -1 where absent or when a
	// prefix/suffix makes the lookup key differ; they let single-byte words skip the cache.
	byteIDs [256]int32

	// spSplit: a word may be cut before every ▁ that follows another character, because
	// no vocabulary entry holds such a pair, so no merge can cross that point (see
	// canSplitAtMark). It turns a whole SentencePiece line into cacheable words.
	spSplit bool

	cache wordCache
	pool  sync.Pool // *bpeScratch
}

// symbol is one element of a word during merging: a doubly linked list laid out in a slice.
type symbol struct {
	id         int32
	prev, next int32
	size       int32 // bytes of the word it covers; 0 marks a symbol merged into its left neighbour
}

type bpeScratch struct {
	syms []symbol
	heap []uint64
	buf  []byte
	key  []byte
	ids  []int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

const spMark = "\u2581" // ▁, SentencePiece's space

// canSplitAtMark reports whether no vocabulary entry holds ▁ right after another
// character, which makes words separable before each such ▁ (see bpe.spSplit).
func canSplitAtMark(vocab map[string]int32) bool {
	if _, ok := vocab[spMark]; !ok {
		return false
	}
	for tok := range vocab {
		i := strings.Index(tok, spMark)
		for i >= 0 {
			if i > 0 && !strings.HasSuffix(tok[:i], spMark) {
				return false
			}
			j := strings.Index(tok[i+len(spMark):], spMark)
			if j < 0 {
				break
			}
			i += len(spMark) + j
		}
	}
	return true
}

// encodeWord appends the ids of one pre-tokenized word. With byteLevel the word is raw
// text whose bytes are first spelled in the byte-level alphabet.
func (m *bpe) encodeWord(word string, byteLevel bool, out []int) []int {
	if word == "" {
		return out
	}
	if byteLevel && len(word) == 1 {
		if id := m.byteIDs[word[0]]; id >= 0 {
			return append(out, int(id))
		}
	}
	if m.spSplit && !byteLevel {
		// Cut before each ▁ that follows another character.
		start := 0
		for i := 1; i < len(word); i++ {
			if word[i] == 0xE2 && strings.HasPrefix(word[i:], spMark) && !strings.HasSuffix(word[:i], spMark) {
				out = m.encodeCached(word[start:i], false, out)
				start = i
			}
		}
		return m.encodeCached(word[start:], false, out)
	}
	return m.encodeCached(word, byteLevel, out)
}

// maxCachedWord is the longest word (in bytes) kept in the cache, as in HF: longer ones are
// rare and would only evict useful entries.
const maxCachedWord = 256

func (m *bpe) encodeCached(word string, byteLevel bool, out []int) []int {
	cacheable := len(word) < maxCachedWord
	if cacheable {
		if ids, ok := m.cache.get(word); ok {
			for _, id := range ids {
				out = append(out, int(id))
			}
			return out
		}
	}
	sc, _ := m.pool.Get().(*bpeScratch)
	if sc == nil {
		sc = &bpeScratch{}
	}
	var ids []int32
	if byteLevel && !m.ignoreMerges && m.byteSymbols(word, sc) {
		ids = m.finish(m.mergeAll(sc.syms, sc), sc)
	} else {
		var w []byte
		if byteLevel {
			w = appendByteLevel(sc.buf[:0], word)
		} else {
			w = append(sc.buf[:0], word...)
		}
		sc.buf = w
		ids = m.tokenize(w, sc)
	}
	if cacheable {
		m.cache.put(word, ids)
	}
	for _, id := range ids {
		out = append(out, int(id))
	}
	m.pool.Put(sc)
	return out
}

// tokenize runs BPE on one word spelled as the vocabulary spells it. The returned slice is
// scratch space, valid until sc is reused.
func (m *bpe) tokenize(w []byte, sc *bpeScratch) []int32 {
	if m.ignoreMerges {
		if id, ok := m.vocab[string(w)]; ok {
			sc.ids = append(sc.ids[:0], id)
			return sc.ids
		}
	}
	return m.finish(m.mergeAll(m.initSymbols(w, sc), sc), sc)
}

// byteSymbols is initSymbols for a byte-level word given by its raw bytes: each byte's
// one-rune spelling is a vocabulary entry, so the symbols come from a table instead of a
// string lookup per character. It reports false (and the caller takes the general path)
// when some byte has no such entry.
func (m *bpe) byteSymbols(word string, sc *bpeScratch) bool {
	syms := sc.syms[:0]
	for i := 0; i < len(word); i++ {
		id := m.byteIDs[word[i]]
		if id < 0 {
			return false
		}
		syms = append(syms, symbol{id: id, prev: int32(i) - 1, next: int32(i) + 1, size: 1})
	}
	syms[len(syms)-1].next = -1
	sc.syms = syms
	return true
}

// finish collects the ids of the symbols left after merging.
func (m *bpe) finish(syms []symbol, sc *bpeScratch) []int32 {
	ids := sc.ids[:0]
	for i := range syms {
		if syms[i].size != 0 {
			ids = append(ids, syms[i].id)
		}
	}
	sc.ids = ids
	return ids
}

// initSymbols splits w into one symbol per character, as tokenizers' BPE::merge_word: a
// character missing from the vocabulary becomes its <0xNN> byte tokens (byte_fallback), or
// the unknown token (consecutive ones fused with fuse_unk), or is dropped when the model has
// neither.
func (m *bpe) initSymbols(w []byte, sc *bpeScratch) []symbol {
	syms := sc.syms[:0]
	push := func(id int32, size int) {
		n := int32(len(syms))
		syms = append(syms, symbol{id: id, prev: n - 1, next: n + 1, size: int32(size)})
	}
	unkID, unkLen := int32(-1), 0
	for i := 0; i < len(w); {
		size := 1
		if w[i] >= utf8.RuneSelf {
			_, size = utf8.DecodeRune(w[i:])
		}
		ch := w[i : i+size]
		first, last := i == 0, i+size == len(w)
		key := ch
		if (!first && m.prefix != "") || (last && m.suffix != "") {
			k := sc.key[:0]
			if !first {
				k = append(k, m.prefix...)
			}
			k = append(k, ch...)
			if last {
				k = append(k, m.suffix...)
			}
			sc.key = k
			key = k
		}
		i += size
		if id, ok := m.vocab[string(key)]; ok {
			if unkID >= 0 {
				push(unkID, unkLen)
				unkID = -1
			}
			push(id, size)
			continue
		}
		if m.byteFallback {
			ok := true
			for _, b := range key {
				if m.fallback[b] < 0 {
					ok = false
					break
				}
			}
			if ok {
				// HF emits these without first flushing a pending unknown token; kept so.
				for _, b := range key {
					push(m.fallback[b], 1)
				}
				continue
			}
		}
		if m.unk >= 0 {
			switch {
			case unkID >= 0 && m.fuseUnk:
				unkLen += size
			case unkID >= 0:
				push(unkID, unkLen)
				unkID, unkLen = m.unk, size
			default:
				unkID, unkLen = m.unk, size
			}
		}
	}
	if unkID >= 0 {
		push(unkID, unkLen)
	}
	if n := len(syms); n > 0 {
		syms[n-1].next = -1
	}
	sc.syms = syms
	return syms
}

// mergeAll applies the merges through a min-heap of (rank << 32 | position).
func (m *bpe) mergeAll(syms []symbol, sc *bpeScratch) []symbol {
	if len(syms) < 2 {
		return syms
	}
	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if r, ok := m.merges.get(pairKey(syms[i].id, syms[i+1].id)); ok {
			h = append(h, uint64(r)<<32|uint64(i))
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
	for len(h) > 0 {
		top := h[0]
		n := len(h) - 1
		h[0] = h[n]
		h = h[:n]
		siftDown(h, 0)

		rank, pos := int32(top>>32), int32(uint32(top))
		cur := &syms[pos]
		if cur.size == 0 || cur.next < 0 {
			continue
		}
		nextPos := cur.next
		right := syms[nextPos]
		newID := m.rankNew[rank]
		// A queue entry is stale when the pair at pos has changed since it was pushed.
		if r, ok := m.merges.get(pairKey(cur.id, right.id)); !ok || m.rankNew[r] != newID {
			continue
		}
		cur.id = newID
		cur.size += right.size
		cur.next = right.next
		syms[nextPos].size = 0
		if right.next >= 0 {
			syms[right.next].prev = pos
		}
		if cur.prev >= 0 {
			if r, ok := m.merges.get(pairKey(syms[cur.prev].id, cur.id)); ok {
				h = heapPush(h, uint64(r)<<32|uint64(uint32(cur.prev)))
			}
		}
		if cur.next >= 0 {
			if r, ok := m.merges.get(pairKey(cur.id, syms[cur.next].id)); ok {
				h = heapPush(h, uint64(r)<<32|uint64(uint32(pos)))
			}
		}
	}
	sc.heap = h
	return syms
}

func siftDown(h []uint64, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && h[r] < h[l] {
			j = r
		}
		if h[i] <= h[j] {
			return
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

func heapPush(h []uint64, v uint64) []uint64 {
	h = append(h, v)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

// wordCache maps a word to its ids. It is a fixed-size hash table of atomic pointers to
// immutable entries, each word having two candidate slots: lookups take no lock (the
// cache is hit for nearly every word, from any number of goroutines), memory is bounded
// by the table size, and a collision only costs a recomputation. A Go map behind a mutex
// spent more time in locking and probing than the rest of encoding together.
type wordCache struct {
	tab atomic.Pointer[cacheTable]
}

type cacheTable struct {
	seed  maphash.Seed
	slots []atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	word string
	ids  []int32
}

// wordCacheSlots is the table size: 128k words, 1 MiB of pointers, allocated on first use.
const wordCacheSlots = 1 << 17

func (c *wordCache) table() *cacheTable {
	if t := c.tab.Load(); t != nil {
		return t
	}
	t := &cacheTable{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[cacheEntry], wordCacheSlots)}
	if c.tab.CompareAndSwap(nil, t) {
		return t
	}
	return c.tab.Load()
}

func (t *cacheTable) slotsFor(word string) (i, j uint64, h uint64) {
	h = maphash.String(t.seed, word)
	i = h & (wordCacheSlots - 1)
	return i, i ^ 1, h
}

func (c *wordCache) get(word string) ([]int32, bool) {
	t := c.table()
	i, j, _ := t.slotsFor(word)
	if e := t.slots[i].Load(); e != nil && e.word == word {
		return e.ids, true
	}
	if e := t.slots[j].Load(); e != nil && e.word == word {
		return e.ids, true
	}
	return nil, false
}

func (c *wordCache) put(word string, ids []int32) {
	t := c.table()
	e := &cacheEntry{word: strings.Clone(word), ids: slices.Clone(ids)}
	i, j, h := t.slotsFor(word)
	switch {
	case t.slots[i].Load() == nil:
		t.slots[i].Store(e)
	case t.slots[j].Load() == nil:
		t.slots[j].Store(e)
	case h>>63 == 0:
		t.slots[i].Store(e)
	default:
		t.slots[j].Store(e)
	}
}

// reset empties the cache (for benchmarks of the uncached path).
func (c *wordCache) reset() { c.tab.Store(nil) }

// size counts the cached words (for tests).
func (c *wordCache) size() int {
	t := c.tab.Load()
	if t == nil {
		return 0
	}
	n := 0
	for i := range t.slots {
		if t.slots[i].Load() != nil {
			n++
		}
	}
	return n
}
