package safetensors

import "fmt"

// DType is a safetensors element type, spelled as in the file header.
type DType string

// The element types of the safetensors format.
const (
	F64    DType = "F64"
	F32    DType = "F32"
	F16    DType = "F16"
	BF16   DType = "BF16"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	I64    DType = "I64"
	I32    DType = "I32"
	I16    DType = "I16"
	I8     DType = "I8"
	U8     DType = "U8"
	Bool   DType = "BOOL"

	// The unsigned integer types below are part of the format too (PyTorch writes them for
	// uint16/32/64 tensors); they are read and written like their signed counterparts.
	U16 DType = "U16"
	U32 DType = "U32"
	U64 DType = "U64"
)

// Size returns the size of one element in bytes, or 0 for an unknown type.
//
// Types that the safetensors format added later (F4, F6_E2M3, F6_E3M2, F8_E8M0, C64) are
// deliberately unknown here: Open rejects them with an error naming the tensor rather than
// handing out bytes that no code in this project can interpret.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case F8E4M3, F8E5M2, I8, U8, Bool:
		return 1
	}
	return 0
}

// Valid reports whether d is one of the format's element types.
func (d DType) Valid() bool { return d.Size() != 0 }

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	switch d {
	case F64, F32, F16, BF16, F8E4M3, F8E5M2:
		return true
	}
	return false
}

// TensorInfo describes one tensor of a checkpoint without its data.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
	// File is the path of the file (shard) holding the tensor.
	File string
	// Begin and End are the byte offsets of the data inside the file's data section.
	Begin, End int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Bytes returns the byte length of the tensor's data.
func (t TensorInfo) Bytes() int64 { return t.End - t.Begin }

func (t TensorInfo) String() string {
	return fmt.Sprintf("%s %s%v", t.Name, t.DType, t.Shape)
}
