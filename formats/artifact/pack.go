package artifact

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/odyssey-llm/odyssey/quant"
)

// packInt4 is quant.PackInt4 (the reference of docs/fastgemm-layout.md), fast: it walks the
// output in order, one 128×8 block (512 bytes) at a time, reading the block's 8 rows ×
// 128 codes from cache, and shares the 8-row blocks among the cores. A lane's byte j of step
// s holds codes k and k+16 of its row for four consecutive k, so one 32-bit load of each and
// two masks make four output bytes. Its output equals quant.PackInt4's byte for byte
// (TestPackMatchesReference, FuzzPack). Unlike the reference it returns an error, naming
// the code, for a code outside [quant.Int4Min, quant.Int4Max].
func packInt4(q []int8, n, k int) ([]byte, error) {
	if n <= 0 || k <= 0 || len(q) != n*k {
		return nil, fmt.Errorf("artifact: pack: %d codes for a %d×%d weight", len(q), n, k)
	}
	np, kp := quant.PackedDims(n, k)
	out := make([]byte, np*kp/2)
	qb := unsafe.Slice((*byte)(unsafe.Pointer(&q[0])), len(q))
	kbs := kp / 128
	bad := make([]bool, np/8)
	parallelFor(np/8, func(nb int) {
		var inval uint32 // OR of validity words: a set bit 7 of a byte marks a bad code
		for kb := range kbs {
			blk := out[(nb*kbs+kb)*512 : (nb*kbs+kb+1)*512]
			full := kb*128+128 <= k
			for lane := range 32 {
				r := nb*8 + lane>>2
				if r >= n {
					continue // padding rows stay zero
				}
				dst := blk[lane*16 : lane*16+16]
				c0 := r*k + kb*128 + 4*(lane&3)
				for step := range 4 {
					c := c0 + step*32
					var lo, hi uint32
					if full {
						lo = binary.LittleEndian.Uint32(qb[c:])
						hi = binary.LittleEndian.Uint32(qb[c+16:])
					} else {
						lo = partialWord(qb, c, r*k+k)
						hi = partialWord(qb, c+16, r*k+k)
					}
					inval |= badCodes(lo) | badCodes(hi)
					binary.LittleEndian.PutUint32(dst[step*4:], lo&0x0F0F0F0F|hi<<4&0xF0F0F0F0)
				}
			}
		}
		bad[nb] = inval&0x80808080 != 0
	})
	for nb, b := range bad {
		if !b {
			continue
		}
		for r := nb * 8; r < min(n, nb*8+8); r++ {
			for c, v := range q[r*k : (r+1)*k] {
				if v < quant.Int4Min || v > quant.Int4Max {
					return nil, fmt.Errorf("artifact: pack: code %d at [%d, %d] is outside [%d, %d]", v, r, c, quant.Int4Min, quant.Int4Max)
				}
			}
		}
	}
	return out, nil
}

// partialWord loads up to four codes from qb[c:], stopping at the row's end (zero codes
// beyond it: the padding of the last 128-column block).
func partialWord(qb []byte, c, end int) uint32 {
	var w uint32
	for j := range 4 {
		if c+j < end {
			w |= uint32(qb[c+j]) << (8 * j)
		}
	}
	return w
}

// badCodes returns a word whose byte i has bit 7 set when byte i of w is not an int4 code
// in −7..7: t = b+7 (mod 256, per byte, no carries between bytes) must be ≤ 14, and
// t ≥ 15 shows as bit 7 of (t&0x7F)+0x71 or of t itself.
func badCodes(w uint32) uint32 {
	t := (w&0x7F7F7F7F + 0x07070707) ^ (w & 0x80808080)
	return (t&0x7F7F7F7F + 0x71717171) | t
}

// unpackInt4 is quant.UnpackInt4, fast: it returns the [n, k] codes of a packed weight and
// checks, as the reference does, the buffer size, that padding holds only zero codes and
// that no code is −8 (a packed tensor read from disk is untrusted).
func unpackInt4(packed []byte, n, k int) ([]int8, error) {
	if n <= 0 || k <= 0 {
		return nil, fmt.Errorf("artifact: unpack: bad dimensions %d×%d", n, k)
	}
	np, kp := quant.PackedDims(n, k)
	if len(packed) != np*kp/2 {
		return nil, fmt.Errorf("artifact: unpack: %d bytes, a %d×%d weight packs into %d", len(packed), n, k, np*kp/2)
	}
	q := make([]int8, n*k)
	kbs := kp / 128
	errs := make([]error, np/8)
	parallelFor(np/8, func(nb int) {
		for kb := range kbs {
			blk := packed[(nb*kbs+kb)*512 : (nb*kbs+kb+1)*512]
			for lane := range 32 {
				r := nb*8 + lane>>2
				src := blk[lane*16 : lane*16+16]
				c0 := kb*128 + 4*(lane&3)
				for step := range 4 {
					for j := range 4 {
						b := src[step*4+j]
						lo, hi := int8(b<<4)>>4, int8(b)>>4
						for h, v := range [2]int8{lo, hi} {
							c := c0 + step*32 + j + 16*h
							if r >= n || c >= k {
								if v != 0 && errs[nb] == nil {
									errs[nb] = fmt.Errorf("artifact: unpack: nonzero code %d in padding at [%d, %d]", v, r, c)
								}
								continue
							}
							if v < quant.Int4Min && errs[nb] == nil {
								errs[nb] = fmt.Errorf("artifact: unpack: code %d at [%d, %d] is outside [%d, %d]", v, r, c, quant.Int4Min, quant.Int4Max)
							}
							q[r*k+c] = v
						}
					}
				}
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return q, nil
}

// parallelFor runs fn(0..n-1) on up to GOMAXPROCS goroutines, handing out indices in order
// so that each worker writes a contiguous stretch of the output.
func parallelFor(n int, fn func(i int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	const chunk = 4
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i0 := next
				next += chunk
				mu.Unlock()
				if i0 >= n {
					return
				}
				for i := i0; i < min(n, i0+chunk); i++ {
					fn(i)
				}
			}
		}()
	}
	wg.Wait()
}
