//go:build amd64 && !purego

package model

import (
	"os"

	"golang.org/x/sys/cpu"
)

// useAVX2 selects the vector kernels of exp_amd64.s for exp, softmax and SiLU: with scalar
// code the exponentials cost as much as the attention matmuls they sit between.
//
// ODYSSEY_NO_SIMD=1 turns them off (the Go code computes the same bits; the determinism
// tests run the pipeline both ways).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && os.Getenv("ODYSSEY_NO_SIMD") == ""

//go:noescape
func expShiftAVX2(dst, src *float32, n int, shift float32) float64

//go:noescape
func siluMulAVX2(x, u *float32, n int)

//go:noescape
func maxAVX2(src *float32, n int) float32
