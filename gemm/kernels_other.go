//go:build !amd64 || purego

package gemm

// availableKernels: without assembly (other architectures, or -tags purego) only the
// pure-Go kernel exists. It computes the canonical arithmetic (kernel_generic.go), so this
// build's products are bit-identical to the assembly kernels'.
func availableKernels() []*microKernel { return []*microKernel{kernelGeneric} }

func packTransposeAsm(dst, src []float32, ld, kc, w, r int) bool { return false }
func packCopyAsm(dst, src []float32, ld, kc, w, r int) bool      { return false }
