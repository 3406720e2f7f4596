//go:build !amd64 || purego

package safetensors

// Without the amd64 vector code (other architectures, or -tags purego) the slice converters
// are the portable Go ones.

// hasF16C and hasAVX2 report whether the vector converters of convert_amd64.s are in use;
// tests and benchmarks read them.
const hasF16C, hasAVX2 = false, false

func f16ToF32(dst []float32, src []byte)     { f16ToF32Go(dst, src) }
func bf16ToF32(dst []float32, src []byte)    { bf16ToF32Go(dst, src) }
func float32ToF16(dst []byte, src []float32) { float32ToF16Go(dst, src) }
