package artifact

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/quant"
)

// packInt4 is quant.PackInt4 (the reference of docs/fastgemm-layout.md), fast: it walks
// the output in order, one 128×8 block (512 bytes) at a time, and shares the 8-row blocks
// among the cores. Row r of an 8-row block fills a contiguous 64-byte stripe (lanes
// 4·(r%8) .. 4·(r%8)+3) of each 512-byte block from its 128 codes of that block; the full
// 128-column blocks go to the AVX2 kernel of kernels_amd64.s where the CPU has it
// (packBlockGo otherwise), and only a ragged last block (k not a multiple of 128) takes the
// word-at-a-time path below; padding rows stay zero. Its output equals quant.PackInt4's
// byte for byte (TestPackMatchesReference, FuzzPack, TestPackKernels). Unlike the reference
// it returns an error, naming the code, for a code outside [quant.Int4Min, quant.Int4Max]:
// the packers only flag a bad 8-row block, which is then searched in row-major order, so
// the first bad code is named whichever path packed it.
func packInt4(q []int8, n, k int) ([]byte, error) { return packInt4With(q, n, k, hasPackKernel) }

// packInt4With is packInt4 with the full blocks packed by the AVX2 kernel (vec, only where
// hasPackKernel) or by packBlockGo; tests and benchmarks compare the two.
func packInt4With(q []int8, n, k int, vec bool) ([]byte, error) {
	if n <= 0 || k <= 0 || len(q) != n*k {
		return nil, fmt.Errorf("artifact: pack: %d codes for a %d×%d weight", len(q), n, k)
	}
	np, kp := quant.PackedDims(n, k)
	out := newPacked(np * kp / 2)
	qb := unsafe.Slice((*byte)(unsafe.Pointer(&q[0])), len(q))
	kbs := kp / 128
	full := k / 128 // full 128-column blocks
	bad := make([]bool, np/8)
	parallel.For(np/8, func(_, nb int) {
		var inval uint32 // OR of validity words: a set bit 7 of a byte marks a bad code
		if full > 0 {
			dst := out[nb*kbs*512 : (nb*kbs+full)*512]
			src := qb[nb*8*k:]
			rows := min(n, nb*8+8) - nb*8
			var b bool
			if vec {
				b = packBlockAsm(dst, src, k, rows, full)
			} else {
				b = packBlockGo(dst, src, k, rows, full)
			}
			if b {
				inval = 0x80
			}
		}
		for kb := full; kb < kbs; kb++ { // the ragged last block
			blk := out[(nb*kbs+kb)*512 : (nb*kbs+kb+1)*512]
			for lane := range 32 {
				r := nb*8 + lane>>2
				if r >= n {
					continue // padding rows stay zero
				}
				dst := blk[lane*16 : lane*16+16]
				c0 := r*k + kb*128 + 4*(lane&3)
				for step := range 4 {
					c := c0 + step*32
					lo := partialWord(qb, c, r*k+k)
					hi := partialWord(qb, c+16, r*k+k)
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

// packBlockGo packs the first nkb (full) 128-column blocks of an 8-row block whose first
// rows rows (1..8) hold codes, the Go reference of the AVX2 kernel: src holds those rows
// (row g at src[g·k:], k ≥ 128·nkb), dst the nkb 512-byte output blocks. Row g's codes
// [128·kb, 128·kb+128) fill its 64-byte stripe dst[512·kb+64·g:][:64] (lanes 4g..4g+3),
// whose byte 16·tig + 4·step + j holds code 32·step + 4·tig + j of the 128 in the low
// nibble and that code + 16 in the high one; the stripes of padding rows (g ≥ rows) are
// not written. One 64-bit load covers the four codes of two lanes (tig, tig+1) for one step,
// so two loads and two masks make eight output bytes. It returns whether some code is
// outside −7..7 (the bytes written are then to be discarded).
func packBlockGo(dst, src []byte, k, rows, nkb int) bool {
	var inval uint64
	for kb := range nkb {
		for g := range rows {
			s := (*[128]byte)(src[g*k+kb*128:])
			d := (*[64]byte)(dst[kb*512+g*64:])
			for step := range 4 {
				for tig := 0; tig < 4; tig += 2 {
					lo := binary.LittleEndian.Uint64(s[step*32+4*tig:])
					hi := binary.LittleEndian.Uint64(s[step*32+16+4*tig:])
					inval |= badCodes64(lo) | badCodes64(hi)
					w := lo&0x0F0F0F0F0F0F0F0F | hi<<4&0xF0F0F0F0F0F0F0F0
					binary.LittleEndian.PutUint32(d[16*tig+4*step:], uint32(w))
					binary.LittleEndian.PutUint32(d[16*tig+16+4*step:], uint32(w>>32))
				}
			}
		}
	}
	return inval&0x8080808080808080 != 0
}

// badCodes64 is badCodes on eight bytes at once.
func badCodes64(w uint64) uint64 {
	t := (w&0x7F7F7F7F7F7F7F7F + 0x0707070707070707) ^ (w & 0x8080808080808080)
	return (t&0x7F7F7F7F7F7F7F7F + 0x7171717171717171) | t
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
	parallel.For(np/8, func(_, nb int) {
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
