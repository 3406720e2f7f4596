//go:build !amd64

package gemm

// fusedGenericKernel: off amd64 there is no separate fused kernel (on arm64 and the other
// targets with a fused multiply-add the compiler already fuses the generic kernel's a*b+c).
func fusedGenericKernel() *microKernel { return nil }
