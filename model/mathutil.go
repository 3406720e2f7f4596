package model

import (
	"math"

	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// exp32 returns e^x rounded to float32. It is several times faster than math.Exp (no special
// cases beyond float32's range) and accurate to about 1 float32 ulp, which is what softmax,
// log-sum-exp and SiLU need: they run millions of times per window.
func exp32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x < -104: // e^-104 is below float32's smallest subnormal
		return 0
	case x > 89: // above float32's largest value
		return float32(math.Inf(1))
	}
	return float32(expReduced(float64(x)))
}

// expReduced computes e^x for |x| ≤ 110 as 2^n·e^r with |r| ≤ ln2/2 and a degree-8 Taylor
// polynomial for e^r (relative error < 2e-10, far below float32's 6e-8).
func expReduced(x float64) float64 {
	const (
		invLn2 = 1.4426950408889634
		ln2Hi  = 6.93147180369123816490e-01
		ln2Lo  = 1.90821492927058770002e-10
	)
	n := math.Floor(x*invLn2 + 0.5)
	r := (x - n*ln2Hi) - n*ln2Lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040+r*(1.0/40320))))))))
	return p * math.Float64frombits(uint64(int64(n)+1023)<<52)
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
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
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
			gs[i] = x / (1 + exp32(-x)) * us[i]
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
	i := 0
	if useAVX2 && n >= 8 {
		i = n &^ 7
		var d *float32
		if dst != nil {
			d = &dst[0]
		}
		s = expShiftAVX2(d, &x[0], i, shift)
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

// Exp32 is the forward pass's e^x in float32 (accurate to about one ulp, several times faster
// than math.Exp), exported so that evaluation reduces logits with the same function.
func Exp32(x float32) float32 { return exp32(x) }
