package model

import (
	"math"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// exp32 returns e^x rounded to float32, accurate to about 1 float32 ulp, which is what
// softmax, log-sum-exp and SiLU need: they run millions of times per window. It is THE
// canonical exponential of the forward pass and calibration (docs/determinism.md): the
// vector kernel of exp_amd64.s (EXP8, after Cephes' expf) computes exactly these float32
// operations, in this order, with the same constants and the same fused multiply-adds, so
// that the pure-Go build, other architectures and CPUs without AVX2 give the same bits:
//
//	x = min(hi, x), then max(lo, x)        hi = 88, lo = −87.33654 (so e^x never overflows;
//	                                       x < lo gives e^lo ≈ 1.2e−38, x > hi gives e^88)
//	n = roundEven(fl(x·log2e))
//	r = fma(−n, c1, x); r = fma(−n, c2, r) ln 2 = c1 + c2 in two parts
//	p = p0; p = fma(p, r, pᵢ) for i = 1..5; p = fma(p, fl(r·r), r); p = fl(p + 1)
//	e^x = fl(p · 2ⁿ)
//
// NaN is returned as it is (the vector kernel returns a NaN too, possibly another one).
func exp32(x float32) float32 {
	if x != x {
		return x
	}
	if expHi < x {
		x = expHi
	}
	if expLo > x {
		x = expLo
	}
	n := float32(math.RoundToEven(float64(float32(x * expLog2e))))
	r := gemm.FMA32(-n, expC1, x)
	r = gemm.FMA32(-n, expC2, r)
	rr := float32(r * r)
	p := expP[0]
	for _, c := range expP[1:] {
		p = gemm.FMA32(p, r, c)
	}
	p = gemm.FMA32(p, rr, r)
	p = float32(p + 1)
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// The constants of exp32, as the bits exp_amd64.s holds (ln 2 = expC1 + expC2 in two parts).
var (
	expHi    = math.Float32frombits(0x42b00000) // 88
	expLo    = math.Float32frombits(0xc2aeac50) // −87.33654
	expLog2e = math.Float32frombits(0x3fb8aa3b)
	expC1    = math.Float32frombits(0x3f318000) // 0.693359375
	expC2    = math.Float32frombits(0xb95e8083) // −2.1219444e−4
)

// expP are the polynomial coefficients p0..p5 of exp32.
var expP = [6]float32{
	math.Float32frombits(0x39506967), math.Float32frombits(0x3ab743ce), math.Float32frombits(0x3c088908),
	math.Float32frombits(0x3d2aa9c1), math.Float32frombits(0x3e2aaaaa), math.Float32frombits(0x3f000000),
}

// RMSNorm writes dst[r] = x[r] · rsqrt(mean(x[r]²) + eps) · w for each of rows rows of width
// len(w), in float32 as Hugging Face's LlamaRMSNorm does (the sum of squares is accumulated in
// float64, which only makes it more exact). dst may alias x.
func RMSNorm(dst, x, w []float32, rows int, eps float64) {
	n := len(w)
	if len(x) < rows*n || len(dst) < rows*n {
		panic("model.RMSNorm: buffers shorter than rows×len(w)")
	}
	parallel.Ranges(rows, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := x[r*n : (r+1)*n]
			dr := dst[r*n : (r+1)*n]
			// float32()/float64() around a product: the compiler may not fuse it into an FMA (arm64,
			// GOAMD64=v3), so every build rounds as amd64 v1 does (docs/determinism.md, Compiler fusion).
			var ss float64
			for _, v := range xr {
				ss += float64(float64(v) * float64(v))
			}
			variance := float32(ss / float64(n))
			scale := float32(1 / math.Sqrt(float64(variance+float32(eps))))
			for i, v := range xr {
				dr[i] = w[i] * (v * scale)
			}
		}
	})
}

// swiglu writes g[i] = silu(g[i]) · u[i], silu(x) = x·sigmoid(x) = x / (1 + e^−x).
func swiglu(g, u []float32) {
	if len(u) < len(g) {
		panic("model: swiglu: u shorter than g")
	}
	parallel.Ranges(len(g)/8, 512, func(lo, hi int) {
		lo, hi = lo*8, hi*8
		if hi == len(g)/8*8 {
			hi = len(g) // the last range takes the tail
		}
		gs, us := g[lo:hi], u[lo:hi]
		i := 0
		if useAVX2 && len(gs) >= 8 {
			i = len(gs) &^ 7
			siluMulAVX2(&gs[0], &us[0], i)
		}
		for ; i < len(gs); i++ {
			x := gs[i]
			gs[i] = x / (1 + exp32(0-x)) * us[i] // 0 − x, as siluMulAVX2 computes it (−0 → +0)
		}
	})
}

// maxF32 returns the largest element of a non-empty x.
func maxF32(x []float32) float32 {
	i := 0
	var m float32
	if useAVX2 && len(x) >= 8 {
		i = len(x) &^ 7
		m = maxAVX2(&x[0], i)
	} else {
		m, i = x[0], 1
	}
	for _, v := range x[i:] {
		if v > m {
			m = v
		}
	}
	return m
}

// ExpSum sets dst[i] = e^(x[i]−shift), or only computes them when dst is nil, and returns
// their sum accumulated in float64. The exponentials agree with Exp32 to about one float32
// ulp (they use vector instructions where the CPU has them). Softmax, log-sum-exp and KL
// divergence are built on it.
func ExpSum(dst, x []float32, shift float32) float64 {
	n := len(x)
	if dst != nil && len(dst) < n {
		panic("model.ExpSum: dst shorter than x")
	}
	var s float64
	i := n &^ 7
	if useAVX2 && i > 0 {
		var d *float32
		if dst != nil {
			d = &dst[0]
		}
		s = expShiftAVX2(d, &x[0], i, shift)
	} else if i > 0 {
		s = expShiftGo(dst, x[:i], shift)
	}
	for ; i < n; i++ {
		e := exp32(x[i] - shift)
		if dst != nil {
			dst[i] = e
		}
		s += float64(e)
	}
	return s
}

// expShiftGo is expShiftAVX2 in Go, bit for bit: e = exp32(x[i] − shift), stored to dst
// unless it is nil, and summed in float64 as the vector kernel sums, which is the canonical
// order of ExpSum: element i of each 8 into lane i%8, then ((l0+l4) + (l2+l6)) +
// ((l1+l5) + (l3+l7)). len(x) is a multiple of 8.
func expShiftGo(dst, x []float32, shift float32) float64 {
	var l [8]float64
	for i := 0; i+8 <= len(x); i += 8 {
		for j := 0; j < 8; j++ {
			e := exp32(x[i+j] - shift)
			if dst != nil {
				dst[i+j] = e
			}
			l[j] += float64(e)
		}
	}
	return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

// LogSumExp returns log Σ exp(x[i]) computed stably (max subtracted) with a float64 sum.
func LogSumExp(x []float32) float64 {
	m := maxF32(x)
	return float64(m) + math.Log(ExpSum(nil, x, m))
}

// softmaxInPlace replaces x by softmax(x) in float32 with max subtraction.
func softmaxInPlace(x []float32) {
	m := maxF32(x)
	inv := float32(1 / ExpSum(x, x, m))
	for i := range x {
		x[i] *= inv
	}
}

// Exp32 is the forward pass's e^x in float32 (exp32: accurate to about one ulp, the same
// bits on every CPU and build), exported so that evaluation and calibration use the same
// function.
func Exp32(x float32) float32 { return exp32(x) }
