package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// Element conversions between the file's little-endian encodings and float32.
//
// The slice converters panic when the lengths of dst and src do not match: that is a bug in
// the caller, never a property of a file (Checkpoint sizes every buffer it converts from the
// validated header). Silently converting a prefix would hide such bugs.

// nativeLittleEndian reports whether the host stores integers little-endian, as the format
// does; then F32 data can be copied as bytes instead of decoded element by element.
var nativeLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func checkLen(op string, dstLen, srcLen, ratio int) {
	if srcLen != dstLen*ratio {
		panic(fmt.Sprintf("safetensors: %s: len(src) = %d, want %d (len(dst) = %d elements of %d bytes)",
			op, srcLen, dstLen*ratio, dstLen, ratio))
	}
}

// HalfToFloat32 converts an IEEE 754 binary16 value, given by its bits, to float32. Every
// half value is exactly representable, so the conversion is exact; NaN payloads are kept.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		// Zero or subnormal: mant × 2⁻²⁴, computed exactly in float32.
		f := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(f) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+(127-15))<<23 | mant<<13)
}

// Float32ToHalf converts f to IEEE 754 binary16 bits, rounding to nearest with ties to even
// as hardware does. Values beyond the half range become ±Inf, values below half the smallest
// subnormal become ±0, and NaN stays NaN (quiet, sign and top payload bits kept).
func Float32ToHalf(f float32) uint16 {
	// After F. Giesen's float_to_half_fast3_rtne: integer rounding for normal results, one
	// float addition (which rounds to nearest even in hardware) for subnormal ones.
	const (
		f16Max      = (127 + 16) << 23                        // 65536: this and above is Inf
		minNormal   = 113 << 23                               // 2^-14, the smallest normal half
		denormMagic = ((127 - 15) + (23 - 10) + 1) << 23      // 0.5: aligns the subnormal bits
		rebias      = uint32(((15 - 127) << 23) & 0xffffffff) // exponent bias change, mod 2^32
	)
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	u &^= 0x80000000
	switch {
	case u >= f16Max:
		if u > 0x7f800000 {
			return sign | 0x7e00 | uint16(u>>13)&0x3ff // NaN: quiet, top payload bits kept
		}
		return sign | 0x7c00
	case u < minNormal:
		// Adding 0.5 shifts the value so that its half-precision subnormal bits are the low
		// bits of the float32 mantissa; the addition rounds them to nearest even.
		v := math.Float32frombits(u) + math.Float32frombits(denormMagic)
		return sign | uint16(math.Float32bits(v)-denormMagic)
	}
	odd := (u >> 13) & 1
	u += rebias + 0xfff + odd // rebias, then round: a carry may reach the exponent (up to Inf)
	return sign | uint16(u>>13)
}

// BFloat16ToFloat32 converts bfloat16 bits to float32; exact, as bfloat16 is the top half of
// a float32.
func BFloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBFloat16 converts f to bfloat16 bits, rounding to nearest with ties to even (as
// PyTorch does). Finite values that round past the largest bfloat16 become ±Inf; NaN stays a
// quiet NaN rather than being truncated into an Inf.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F8E4M3ToFloat32 converts an FP8 E4M3 value (the "FN" variant of PyTorch's float8_e4m3fn
// and of safetensors' F8_E4M3: bias 7, no infinities, S.1111.111 is NaN, max 448) to float32.
func F8E4M3ToFloat32(b byte) float32 { return f8Tables().e4m3[b] }

// F8E5M2ToFloat32 converts an FP8 E5M2 value (bias 15, IEEE-like with Inf and NaN; the top
// byte of a binary16) to float32.
func F8E5M2ToFloat32(b byte) float32 { return HalfToFloat32(uint16(b) << 8) }

func f8E4M3Decode(b byte) float32 {
	sign := float32(1)
	if b&0x80 != 0 {
		sign = -1
	}
	e := int(b>>3) & 0xf
	m := float32(b & 7)
	switch {
	case e == 0xf && b&7 == 7:
		return float32(math.NaN()) * sign // sign of a NaN is irrelevant but kept for symmetry
	case e == 0:
		return sign * m * (1.0 / 512) // m/8 × 2^(1-7)
	}
	return sign * (1 + float32(m/8)) * float32(math.Ldexp(1, e-7))
}

type f8tabs struct{ e4m3, e5m2 [256]float32 }

// f8Tables are built on first use so that programs that never read FP8 pay nothing.
var f8Tables = sync.OnceValue(func() *f8tabs {
	t := new(f8tabs)
	for i := range 256 {
		t.e4m3[i] = f8E4M3Decode(byte(i))
		t.e5m2[i] = F8E5M2ToFloat32(byte(i))
	}
	return t
})

// f16Table maps every binary16 bit pattern to its float32 value (256 KiB). A table lookup is
// a single load per element, faster than the branchy bit manipulation, and it is built once,
// on first use, in well under a millisecond.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = HalfToFloat32(uint16(i))
	}
	return t
})

// F16ToF32 decodes little-endian binary16 data into dst; len(src) must be 2*len(dst).
// On amd64 with AVX2 and F16C it uses vector code (convert_amd64.s), bit-identical to
// HalfToFloat32.
func F16ToF32(dst []float32, src []byte) {
	checkLen("F16ToF32", len(dst), len(src), 2)
	f16ToF32(dst, src)
}

// f16ToF32Go is the portable F16ToF32 (the table), the reference for the vector code.
func f16ToF32Go(dst []float32, src []byte) {
	t := f16Table()
	// Four elements per 8-byte load: about twice as fast as one load per element.
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		v := binary.LittleEndian.Uint64(src[2*i:])
		d := dst[i : i+4 : i+4]
		d[0] = t[uint16(v)]
		d[1] = t[uint16(v>>16)]
		d[2] = t[uint16(v>>32)]
		d[3] = t[uint16(v>>48)]
	}
	for ; i < len(dst); i++ {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
}

// BF16ToF32 decodes little-endian bfloat16 data into dst; len(src) must be 2*len(dst).
// On amd64 with AVX2 it uses vector code (convert_amd64.s).
func BF16ToF32(dst []float32, src []byte) {
	checkLen("BF16ToF32", len(dst), len(src), 2)
	bf16ToF32(dst, src)
}

// bf16ToF32Go is the portable BF16ToF32, the reference for the vector code.
func bf16ToF32Go(dst []float32, src []byte) {
	if len(dst) == 0 {
		return
	}
	// Write the bit patterns through a []uint32 view of dst: a bfloat16 is the top half of
	// a float32, so each element is a shift, four per 8-byte load.
	d := unsafe.Slice((*uint32)(unsafe.Pointer(&dst[0])), len(dst))
	i := 0
	for ; i+4 <= len(d); i += 4 {
		v := binary.LittleEndian.Uint64(src[2*i:])
		q := d[i : i+4 : i+4]
		q[0] = uint32(v) << 16
		q[1] = uint32(v) & 0xffff0000
		q[2] = uint32(v>>32) << 16
		q[3] = uint32(v>>32) & 0xffff0000
	}
	for ; i < len(d); i++ {
		d[i] = uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16
	}
}

// F32FromBytes decodes little-endian float32 data into dst; len(src) must be 4*len(dst).
func F32FromBytes(dst []float32, src []byte) {
	checkLen("F32FromBytes", len(dst), len(src), 4)
	if len(dst) == 0 {
		return
	}
	if nativeLittleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)), src)
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// F64ToF32 decodes little-endian float64 data into dst, rounding each value to the nearest
// float32 (values beyond the float32 range become ±Inf); len(src) must be 8*len(dst).
func F64ToF32(dst []float32, src []byte) {
	checkLen("F64ToF32", len(dst), len(src), 8)
	for i := range dst {
		dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
	}
}

// F8E4M3ToF32 decodes F8_E4M3 data into dst; len(src) must be len(dst).
func F8E4M3ToF32(dst []float32, src []byte) {
	checkLen("F8E4M3ToF32", len(dst), len(src), 1)
	t := &f8Tables().e4m3
	for i, b := range src {
		dst[i] = t[b]
	}
}

// F8E5M2ToF32 decodes F8_E5M2 data into dst; len(src) must be len(dst).
func F8E5M2ToF32(dst []float32, src []byte) {
	checkLen("F8E5M2ToF32", len(dst), len(src), 1)
	t := &f8Tables().e5m2
	for i, b := range src {
		dst[i] = t[b]
	}
}

// Float32ToF16 encodes src as little-endian binary16 into dst (see Float32ToHalf for the
// rounding); len(dst) must be 2*len(src). On amd64 with AVX2 and F16C it uses vector code
// (convert_amd64.s), bit-identical to Float32ToHalf.
func Float32ToF16(dst []byte, src []float32) {
	checkLen("Float32ToF16", len(src), len(dst), 2)
	float32ToF16(dst, src)
}

// float32ToF16Go is the portable Float32ToF16, the reference for the vector code.
func float32ToF16Go(dst []byte, src []float32) {
	const (
		minNormal = 113 << 23
		f16Max    = (127 + 16) << 23
		rebias    = uint32(((15 - 127) << 23) & 0xffffffff)
	)
	dst = dst[:2*len(src)]
	for i, f := range src {
		// The common case, a result in the normal range, inline; the rest out of line.
		u := math.Float32bits(f)
		a := u &^ 0x80000000
		var h uint16
		if a-minNormal < f16Max-minNormal {
			h = uint16((a+rebias+0xfff+(a>>13)&1)>>13) | uint16(u>>16)&0x8000
		} else {
			h = Float32ToHalf(f)
		}
		d := dst[2*i : 2*i+2 : 2*i+2]
		d[0], d[1] = byte(h), byte(h>>8)
	}
}

// Float32ToBF16 encodes src as little-endian bfloat16 into dst (see Float32ToBFloat16 for the
// rounding); len(dst) must be 2*len(src).
func Float32ToBF16(dst []byte, src []float32) {
	checkLen("Float32ToBF16", len(src), len(dst), 2)
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], Float32ToBFloat16(f))
	}
}

// Float32ToBytes encodes src as little-endian float32 into dst, the reverse of F32FromBytes;
// len(dst) must be 4*len(src).
func Float32ToBytes(dst []byte, src []float32) {
	checkLen("Float32ToBytes", len(src), len(dst), 4)
	if len(src) == 0 {
		return
	}
	if nativeLittleEndian {
		copy(dst, unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src)))
		return
	}
	for i, f := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
	}
}

// Float32ToF64 encodes src as little-endian float64 into dst (exact); len(dst) must be
// 8*len(src).
func Float32ToF64(dst []byte, src []float32) {
	checkLen("Float32ToF64", len(src), len(dst), 8)
	for i, f := range src {
		binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(float64(f)))
	}
}
