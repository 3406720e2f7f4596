package quant

import "fmt"

// Packing of int4 codes for the FastGEMM kernel, as specified in docs/fastgemm-layout.md
// (format version 1). That file is the specification; this is its reference implementation
// and the kernel's tests compare against it.

// PackLayoutVersion is the version of docs/fastgemm-layout.md this code implements.
const PackLayoutVersion = 1

// PackedDims returns the padded dimensions of an N×K weight: Np = ⌈N/8⌉·8 (one mma tile's
// columns) and Kp = ⌈K/128⌉·128 (one lane's 16-byte load along K).
func PackedDims(n, k int) (np, kp int) {
	return (n + 7) / 8 * 8, (k + 127) / 128 * 128
}

// packedOffset returns the byte index and nibble (false: low, true: high) of code (n, k) in
// the packed layout of a weight with Kp padded columns.
func packedOffset(n, k, kp int) (int, bool) {
	nb, gid := n/8, n%8
	kb, r := k/128, k%128
	step, r := r/32, r%32
	high := r >= 16
	if high {
		r -= 16
	}
	tig, j := r/4, r%4
	lane := gid*4 + tig
	return ((nb*(kp/128)+kb)*32+lane)*16 + step*4 + j, high
}

// PackInt4 packs codes q (row-major [n, k], each in [Int4Min, Int4Max]) into the FastGEMM
// layout, padding to PackedDims with zero codes. It panics on a code outside the int4 range:
// callers pass quantizer output, so that is a programming error.
func PackInt4(q []int8, n, k int) []byte {
	if len(q) != n*k {
		panic(fmt.Sprintf("quant: PackInt4: %d codes for a %d×%d weight", len(q), n, k))
	}
	np, kp := PackedDims(n, k)
	out := make([]byte, np*kp/2)
	for r := 0; r < n; r++ {
		row := q[r*k : (r+1)*k]
		for c, v := range row {
			if v < Int4Min || v > Int4Max {
				panic(fmt.Sprintf("quant: PackInt4: code %d at [%d, %d] is outside [%d, %d]", v, r, c, Int4Min, Int4Max))
			}
			off, high := packedOffset(r, c, kp)
			nib := byte(v) & 0x0F
			if high {
				out[off] |= nib << 4
			} else {
				out[off] |= nib
			}
		}
	}
	return out
}

// UnpackInt4 reverses PackInt4, returning the [n, k] codes. It checks the buffer size and
// that padding holds only zero codes, since a packed tensor read from disk is untrusted.
func UnpackInt4(packed []byte, n, k int) ([]int8, error) {
	if n <= 0 || k <= 0 {
		return nil, fmt.Errorf("quant: unpack: bad dimensions %d×%d", n, k)
	}
	np, kp := PackedDims(n, k)
	if len(packed) != np*kp/2 {
		return nil, fmt.Errorf("quant: unpack: %d bytes, a %d×%d weight packs into %d", len(packed), n, k, np*kp/2)
	}
	q := make([]int8, n*k)
	for r := 0; r < np; r++ {
		for c := 0; c < kp; c++ {
			off, high := packedOffset(r, c, kp)
			b := packed[off]
			if high {
				b >>= 4
			}
			v := int8(b<<4) >> 4 // sign-extend the nibble
			if r >= n || c >= k {
				if v != 0 {
					return nil, fmt.Errorf("quant: unpack: nonzero code %d in padding at [%d, %d]", v, r, c)
				}
				continue
			}
			if v < Int4Min {
				return nil, fmt.Errorf("quant: unpack: code %d at [%d, %d] is outside [%d, %d]", v, r, c, Int4Min, Int4Max)
			}
			q[r*k+c] = v
		}
	}
	return q, nil
}

// HighNibbleInt8 returns the two int8 values the kernel obtains from byte b by masking: the
// low nibble's code times 16 and the high nibble's code times 16. It is the scalar statement
// of the conversion trick, used by the reference GEMM over packed weights and by tests.
func HighNibbleInt8(b byte) (lo16, hi16 int8) {
	return int8((b << 4) & 0xF0), int8(b & 0xF0)
}
