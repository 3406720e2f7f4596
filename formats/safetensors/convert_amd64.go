//go:build amd64 && !purego

package safetensors

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// Vector slice converters (convert_amd64.s), selected at start-up. x/sys/cpu reports AVX2
// only when the OS saves the YMM state; it has no F16C flag, so that bit (CPUID leaf 1, ECX
// bit 29) is read directly. The assembly converts whole groups of 8 elements; the rest, and
// the elements before an aligned address where streaming stores are used, go through the
// scalar functions, which keeps short slices from building the 256 KiB table of f16ToF32Go.
var (
	hasAVX2 = cpu.X86.HasAVX2
	hasF16C = hasAVX2 && cpuidLeaf1ECX()&(1<<29) != 0
)

// streamBytes is the float32 destination size from which the decoders write with
// non-temporal stores, bypassing the caches: without them every destination line is first
// read from memory, which for an fp16 source larger than the caches is most of the traffic
// (about 2.5 times as fast this way here, see convert_amd64.s). Below it the result
// likely stays in cache for the caller, and ordinary stores are faster. runtime.memmove does
// the same from 1 MiB.
const streamBytes = 4 << 20

// cpuidLeaf1ECX returns ECX of CPUID leaf 1.
func cpuidLeaf1ECX() uint32

// The assembly routines convert n elements, n > 0 and a multiple of 8; the pointers need no
// alignment, except dst to 32 bytes when stream is set.

//go:noescape
func f16ToF32F16C(dst *float32, src *byte, n int, stream bool)

//go:noescape
func bf16ToF32AVX2(dst *float32, src *byte, n int, stream bool)

//go:noescape
func float32ToF16F16C(dst *byte, src *float32, n int)

// streamHead returns whether to write dst with streaming stores and how many of its first
// elements to write otherwise so that the rest starts 32-byte aligned, as those need.
func streamHead(dst []float32) (head int, stream bool) {
	if 4*len(dst) < streamBytes {
		return 0, false
	}
	return int((-uintptr(unsafe.Pointer(&dst[0])) & 31) / 4), true
}

func f16ToF32Scalar(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = HalfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func f16ToF32(dst []float32, src []byte) {
	if !hasF16C {
		f16ToF32Go(dst, src)
		return
	}
	i, stream := streamHead(dst)
	f16ToF32Scalar(dst[:i], src[:2*i])
	if n := (len(dst) - i) &^ 7; n > 0 {
		f16ToF32F16C(&dst[i], &src[2*i], n, stream)
		i += n
	}
	f16ToF32Scalar(dst[i:], src[2*i:])
}

func bf16ToF32(dst []float32, src []byte) {
	if !hasAVX2 {
		bf16ToF32Go(dst, src)
		return
	}
	i, stream := streamHead(dst)
	bf16ToF32Go(dst[:i], src[:2*i])
	if n := (len(dst) - i) &^ 7; n > 0 {
		bf16ToF32AVX2(&dst[i], &src[2*i], n, stream)
		i += n
	}
	bf16ToF32Go(dst[i:], src[2*i:])
}

func float32ToF16(dst []byte, src []float32) {
	if !hasF16C {
		float32ToF16Go(dst, src)
		return
	}
	n := len(src) &^ 7
	if n > 0 {
		float32ToF16F16C(&dst[0], &src[0], n)
	}
	float32ToF16Go(dst[2*n:], src[n:])
}
