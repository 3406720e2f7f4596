//go:build !amd64 || purego

package quant

func combineFloat(a, sg []int32, t []float32, first bool) { combineFloatGo(a, sg, t, first) }
