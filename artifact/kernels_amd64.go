//go:build amd64 && !purego

package artifact

import (
	"golang.org/x/sys/cpu"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
)

// Vector kernels of ScanFinite and packInt4 (kernels_amd64.s), selected at start-up. x/sys/cpu
// reports AVX2 only when the OS saves the YMM state. The Go code stays the reference
// (firstNonFiniteGo, packBlockGo) and the fallback on CPUs without AVX2.
var hasScanKernel = cpu.X86.HasAVX2

// hasPackKernel reports whether packInt4 packs its full blocks with packBlockAVX2.
var hasPackKernel = cpu.X86.HasAVX2

// nonFinite16AVX2, nonFinite32AVX2 and nonFinite64AVX2 return the offset of the first
// 128-byte block of p[0:n] holding an element e of 2, 4 or 8 bytes with e&mask == mask,
// or n when none does. n is a positive multiple of 128; p needs no alignment.
//
//go:noescape
func nonFinite16AVX2(p *byte, n int, mask uint16) int

//go:noescape
func nonFinite32AVX2(p *byte, n int, mask uint32) int

//go:noescape
func nonFinite64AVX2(p *byte, n int, mask uint64) int

// packBlockAVX2 is packBlockGo for rows in 1..8 and nkb > 0 (the same bytes written, the
// same result); k is the row stride of src.
//
//go:noescape
func packBlockAVX2(dst, src *byte, k, rows, nkb int) (bad bool)

// finiteBlocks returns how many leading bytes of b (a multiple of 128) hold only finite
// elements of dt, as far as the vector kernel looked: it stops at the first 128-byte block
// with a NaN or Inf, and leaves the last len(b)%128 bytes to the Go code. 0 for other types.
func finiteBlocks(dt safetensors.DType, b []byte) int {
	n := len(b) &^ 127
	if !hasScanKernel || n == 0 {
		return 0
	}
	switch dt {
	case safetensors.F16:
		return nonFinite16AVX2(&b[0], n, 0x7C00)
	case safetensors.BF16:
		return nonFinite16AVX2(&b[0], n, 0x7F80)
	case safetensors.F32:
		return nonFinite32AVX2(&b[0], n, 0x7F800000)
	case safetensors.F64:
		return nonFinite64AVX2(&b[0], n, 0x7FF0000000000000)
	}
	return 0
}

// packBlockAsm is packBlockGo on the vector unit; the slices are checked here, the kernel
// reads src[g·k : g·k+128·nkb] for g < rows and writes the rows' stripes of dst[:512·nkb].
func packBlockAsm(dst, src []byte, k, rows, nkb int) bool {
	if nkb <= 0 || rows <= 0 {
		return false
	}
	if rows > 8 || k < 128*nkb {
		panic("artifact: packBlockAsm: bad block")
	}
	_ = src[(rows-1)*k+128*nkb-1]
	_ = dst[512*nkb-1]
	return packBlockAVX2(&dst[0], &src[0], k, rows, nkb)
}
