//go:build !amd64 || purego

package model

const useAVX2 = false

func expShiftAVX2(dst, src *float32, n int, shift float32) float64 { panic("unreachable") }

func siluMulAVX2(x, u *float32, n int) { panic("unreachable") }

func maxAVX2(src *float32, n int) float32 { panic("unreachable") }
