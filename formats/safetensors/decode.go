package safetensors

import "fmt"

// DecodeFloat32 converts src, little-endian values of the floating-point type dt, into dst
// (len(src) must be len(dst)·dt.Size()), as Checkpoint.Float32 does for a whole tensor. It
// is for callers that convert a tensor a block at a time from a Bytes view, so that the
// float32 copy is never held whole. Non-float types are an error.
func DecodeFloat32(dt DType, dst []float32, src []byte) error {
	switch dt {
	case F32:
		F32FromBytes(dst, src)
	case F16:
		F16ToF32(dst, src)
	case BF16:
		BF16ToF32(dst, src)
	case F64:
		F64ToF32(dst, src)
	case F8E4M3:
		F8E4M3ToF32(dst, src)
	case F8E5M2:
		F8E5M2ToF32(dst, src)
	default:
		return fmt.Errorf("safetensors: dtype %s is not a floating-point type", dt)
	}
	return nil
}
