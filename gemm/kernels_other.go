//go:build !amd64 || purego

package gemm

// availableKernels: without assembly (other architectures, or -tags purego) only the
// pure-Go kernels exist. Where the CPU fuses multiply-add in hardware and the compiler does not
// do it by itself (amd64 below GOAMD64=v3), the fused variant comes first, with the K block
// of the assembly kernel the default build would pick, so that both builds sum alike.
func availableKernels() []*microKernel {
	if k := fusedGenericKernel(); k != nil {
		return []*microKernel{k, kernelGeneric}
	}
	return []*microKernel{kernelGeneric}
}

func packTransposeAsm(dst, src []float32, ld, kc, w, r int) bool { return false }
func packCopyAsm(dst, src []float32, ld, kc, w, r int) bool      { return false }
