package quant

import (
	"fmt"
	"math"
	"sync"

	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// WeightErrors returns the relative Frobenius errors ‖Ŵ − W‖/‖W‖ of a quantized weight
// against its float original ref [Out×In], for the float group scales (fl: Ŵ =
// QuantizedWeight.Dequantize()) and, when iw is not nil, for the integer scales the kernel
// computes with (in: Ŵ = IntScaleWeight.Dequantize()); in is 0 when iw is nil. When W is 0
// the errors are the absolute ‖Ŵ − W‖. Every dequantized weight is the same float32 number
// that Dequantize gives, and the squared differences are summed in float64, so the result
// matches a computation on Dequantize()'s output to float64 rounding, but it makes one pass
// over the codes, in parallel by rows, and allocates nothing of the weight's size: the error
// report of a 7B layer would otherwise cost two full dequantized copies. Row sums are
// combined in row order, so the result does not depend on the number of goroutines.
//
// qw is the weight with the float scales; when iw is given, qw must be iw.QuantizedWeight.
func WeightErrors(ref []float32, qw *QuantizedWeight, iw *IntScaleWeight) (fl, in float64) {
	if iw != nil && iw.QuantizedWeight != qw {
		panic("quant: WeightErrors: iw does not wrap qw")
	}
	if len(ref) != qw.Out*qw.In || len(qw.Q) != len(ref) {
		panic(fmt.Sprintf("quant: WeightErrors: %d reference values for a %d×%d weight", len(ref), qw.Out, qw.In))
	}
	out, k := qw.Out, qw.In
	rows := make([]rowErr, out)
	_ = parallel.Blocks(out, 32, 0, func(r0, r1 int) error {
		for o := r0; o < r1; o++ {
			rows[o] = rowErrors(ref[o*k:(o+1)*k], qw, iw, o)
		}
		return nil
	})
	return relErrors(rows, iw != nil)
}

// rowErr holds one row's Σ(ŵ_float − w)², Σ(ŵ_int − w)² and Σw².
type rowErr [3]float64

// rowErrors returns the sums of row o, whose float values are w.
func rowErrors(w []float32, qw *QuantizedWeight, iw *IntScaleWeight, o int) rowErr {
	if hasKernels {
		return rowErrorsAsm(w, qw, iw, o)
	}
	return rowErrorsGo(w, qw, iw, o)
}

// rowErrorsGo is the portable rowErrors and the reference of the vector kernels, which
// compute the same bits: the canonical order of these sums (docs/determinism.md) is that of
// rowErrorsAsm. In each group, the elements of whole 8-element chunks go to 8 float64 lane
// sums per quantity (element j of a chunk to lane j, the square fused into the addition:
// acc = fma(d, d, acc)), carried across the row's groups; each group's ≤ 7 trailing elements
// go, one after another and unfused, to a separate sum (addGroupErrs); the row's value is
// lanes8 of the lane sums plus that trailing sum.
func rowErrorsGo(w []float32, qw *QuantizedWeight, iw *IntScaleWeight, o int) rowErr {
	k, gs, ng := qw.In, qw.GroupSize, qw.NumGroups()
	w = w[:k]
	q := qw.Q[o*k : (o+1)*k : (o+1)*k]
	var acc [24]float64
	var tail rowErr
	var f float32
	if iw != nil {
		f = iw.ChannelScale[o] / float32(iw.Alpha(o))
	}
	for g := 0; g < ng; g++ {
		k0, k1 := g*gs, min(g*gs+gs, k)
		m := k0 + (k1-k0)&^7
		s := qw.Scales[o*ng+g]
		var se float32
		if iw != nil {
			se = float32(iw.IntScales[o*ng+g]) * f
		}
		groupErrLanes(&acc, w[k0:m], q[k0:m], s, se, iw != nil)
		addGroupErrs(&tail, w[m:k1], q[m:k1], s, se, iw != nil)
	}
	return rowErr{lanes8(acc[0:8]) + tail[0], lanes8(acc[8:16]) + tail[1], lanes8(acc[16:24]) + tail[2]}
}

// groupErrLanes is groupErrAVX2 (withInt) or groupErrFloatAVX2 in Go, bit for bit: for
// len(w) a multiple of 8, element j of each 8 adds (float64(s·float32(q)) − float64(w))² to
// acc[j], (float64(se·float32(q)) − float64(w))² to acc[8+j] when withInt, and
// float64(w)² to acc[16+j], each square fused into its addition (math.FMA, correctly rounded
// with or without a hardware FMA).
func groupErrLanes(acc *[24]float64, w []float32, q []int8, s, se float32, withInt bool) {
	q = q[:len(w)]
	for i := 0; i+8 <= len(w); i += 8 {
		for j := 0; j < 8; j++ {
			v := float64(w[i+j])
			qv := float32(q[i+j])
			acc[16+j] = math.FMA(v, v, acc[16+j])
			d := float64(s*qv) - v
			acc[j] = math.FMA(d, d, acc[j])
			if withInt {
				di := float64(se*qv) - v
				acc[8+j] = math.FMA(di, di, acc[8+j])
			}
		}
	}
}

// lanes8 adds the 8 lane sums of one quantity pairwise, in a fixed order.
func lanes8(a []float64) float64 {
	a = a[:8]
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

// addGroupErrs adds to e, one element after another, the squared differences between w and
// its dequantized values s·q (and se·q, when withInt: the integer-scale value), each
// product rounded to float32 as Dequantize rounds it, and the squares of w, in float64. Each
// square is rounded before its addition (the float64 conversions keep the compiler from
// fusing them, which the Go spec allows and arm64 does), as the amd64 build always did.
func addGroupErrs(e *rowErr, w []float32, q []int8, s, se float32, withInt bool) {
	q = q[:len(w)]
	ef, ei, ww := e[0], e[1], e[2]
	if withInt {
		for j, x := range w {
			v := float64(x)
			qv := float32(q[j])
			d := float64(s*qv) - v
			di := float64(se*qv) - v
			ef += float64(d * d)
			ei += float64(di * di)
			ww += float64(v * v)
		}
	} else {
		for j, x := range w {
			v := float64(x)
			d := float64(s*float32(q[j])) - v
			ef += float64(d * d)
			ww += float64(v * v)
		}
	}
	e[0], e[1], e[2] = ef, ei, ww
}

// relErrors combines row sums, in row order, into the two relative errors.
func relErrors(rows []rowErr, hasInt bool) (fl, in float64) {
	var sf, si, sw float64
	for _, r := range rows {
		sf += r[0]
		si += r[1]
		sw += r[2]
	}
	rel := func(num float64) float64 {
		if sw == 0 {
			return math.Sqrt(num)
		}
		return math.Sqrt(num / sw)
	}
	fl = rel(sf)
	if hasInt {
		in = rel(si)
	}
	return fl, in
}

// RowLoader writes rows [r0, r1) of a float weight [out×in] into dst ((r1−r0)·in values),
// converting them from wherever the weight lives (a checkpoint's 16-bit data, say).
type RowLoader func(dst []float32, r0, r1 int) error

// RTNIntScaleRows is RTNIntScale on a weight that load produces a block of rows at a time,
// followed by WeightErrors, all fused: each goroutine loads a few rows into a buffer that
// stays in cache, quantizes them, gives them integer scales and measures their errors before
// loading the next ones, so the float32 weight is never held whole (for a 7B layer that is
// 800 MB less memory, and as many page faults fewer) and it is read once instead of three
// times. The results equal RTNIntScale followed by WeightErrors on the whole weight, bit for
// bit. An error of load is returned as it is (the lowest failing block's).
func RTNIntScaleRows(out, in, groupSize int, opt RTNOptions, rule AmplifierRule, load RowLoader) (iw *IntScaleWeight, floatErr, intErr float64, err error) {
	grid, err := checkRTNArgs(out, in, groupSize, opt)
	if err != nil {
		return nil, 0, 0, err
	}
	hi, lo, err := rule.span()
	if err != nil {
		return nil, 0, 0, err
	}
	qw := newQuantizedWeight(out, in, groupSize)
	iw = newIntScaleWeight(qw)
	ng := qw.NumGroups()
	// 16 rows of 11008 weights is 700 KB of float32, about what a core's L2 keeps.
	const rows = 16
	errs := make([]rowErr, out)
	err = parallel.Blocks(out, rows, opt.Workers, func(r0, r1 int) error {
		bp := rowBufs.Get().(*[]float32)
		defer rowBufs.Put(bp)
		if cap(*bp) < rows*in {
			*bp = make([]float32, rows*in)
		}
		w := (*bp)[:(r1-r0)*in]
		if err := load(w, r0, r1); err != nil {
			return err
		}
		abs := make([]int64, rows*ng)
		ratio := make([]float32, ng)
		if err := rtnRows(w, qw, r0, r1, grid, abs); err != nil {
			return err
		}
		for c := r0; c < r1; c++ {
			if err := iw.channel(c, hi, lo, abs[(c-r0)*ng:(c-r0+1)*ng], ratio); err != nil {
				return err
			}
			errs[c] = rowErrors(w[(c-r0)*in:(c-r0+1)*in], qw, iw, c)
		}
		return nil
	})
	if err != nil {
		return nil, 0, 0, err
	}
	floatErr, intErr = relErrors(errs, true)
	return iw, floatErr, intErr, nil
}

var rowBufs = sync.Pool{New: func() any { return new([]float32) }}
