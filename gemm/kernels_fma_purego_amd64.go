//go:build amd64 && purego

package gemm

import "golang.org/x/sys/cpu"

// fusedGenericKernel returns the fused pure-Go kernel on an amd64 CPU with FMA, blocked in K
// like the assembly kernel the default build runs there (avx512-14x32: kc 384; avx2-6x16:
// kc 256); nil otherwise, where the default build also runs the unfused generic kernel.
func fusedGenericKernel() *microKernel {
	if !cpu.X86.HasFMA {
		return nil
	}
	kc := 256
	if cpu.X86.HasAVX512F {
		kc = 384
	}
	return &microKernel{name: "generic-4x4-fma", mr: 4, nr: 4, kc: kc, nb: 512, mb: 1024, fn: genericKernel4x4FMA}
}
