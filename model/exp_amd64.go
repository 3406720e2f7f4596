//go:build amd64 && !purego

package model

import "golang.org/x/sys/cpu"

// useAVX2 selects the vector kernels of exp_amd64.s for exp, softmax and SiLU: with scalar
// code the exponentials cost as much as the attention matmuls they sit between.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func expShiftAVX2(dst, src *float32, n int, shift float32) float64

//go:noescape
func siluMulAVX2(x, u *float32, n int)

//go:noescape
func maxAVX2(src *float32, n int) float32
