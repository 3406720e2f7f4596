package quant

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// RTNOptions configures round-to-nearest weight quantization.
type RTNOptions struct {
	// ClipSearch enables the per-group clipping search: for every group each shrink factor
	// of ClipGrid is tried and the one whose quantized group has the least squared error
	// against the float group is kept. Shrinking the scale trades clipping error on the few
	// largest weights for a finer grid on all the others; for the heavy-tailed weights of LLMs
	// a shrink of 0.8–0.95 often wins. This is the weight-only MSE criterion of
	// llm-compressor's MSE observer (which uses the norm 2.4; we use 2, the quantity GPTQ and
	// the perplexity care about), not AWQ's search, which needs calibration inputs.
	ClipSearch bool
	// ClipGrid lists the shrink factors tried, each in [MinClip, 1]. Nil means DefaultClipGrid().
	// The factor 1 (no clipping) is always tried first, whether listed or not, so the search
	// can never make a group worse than plain RTN; ties keep the earlier (larger) factor.
	ClipGrid []float32
	// Workers bounds the goroutines that share the output rows; 0 means GOMAXPROCS.
	Workers int
}

// MinClip is the smallest shrink factor RTN accepts. Shrinks below 0.5 are never useful for
// int4 (they clip most of the group); the floor keeps |w|/scale ≤ 700, well inside int32.
const MinClip = 0.01

// DefaultClipGrid returns the shrink factors 1.00, 0.95, …, 0.50: AWQ's range (it stops at
// a shrink of 0.5) at the step of its 20-point grid.
func DefaultClipGrid() []float32 {
	g := make([]float32, 11)
	for i := range g {
		g[i] = float32(20-i) / 20
	}
	return g
}

// EffectiveGroupSize returns the group size to use for a layer with in input channels when
// requested was asked for. Group quantization needs groups that tile the row exactly (the
// kernel has no ragged last group), so a requested size that does not divide in falls back to
// one group per output channel (g = in) and reports fellBack; requested ≤ 0 (0 or −1 by
// convention) asks for per-channel quantization and is not a fallback. The caller decides
// whether a fallback is acceptable and logs it: stories260K's 64/172 dims hit it with 128.
func EffectiveGroupSize(in, requested int) (g int, fellBack bool) {
	if requested <= 0 {
		return in, false
	}
	if requested > in || in%requested != 0 {
		return in, true
	}
	return requested, false
}

// RTN quantizes the float weight w [out×in], row-major (Hugging Face layout), to symmetric
// int4 codes in groups of groupSize consecutive input channels by rounding to nearest:
// scale = SymScale(max|w_group|, clip), code = QuantizeValue(w, scale). groupSize must divide
// in (use EffectiveGroupSize first); weights must be finite. Output rows are shared among
// goroutines; the result is identical to RTNRef, bit for bit, whatever the worker count, and
// so is the error (the first non-finite weight in row-major order).
func RTN(w []float32, out, in, groupSize int, opt RTNOptions) (*QuantizedWeight, error) {
	grid, err := checkRTN(w, out, in, groupSize, opt)
	if err != nil {
		return nil, err
	}
	qw := newQuantizedWeight(out, in, groupSize)
	// 16 rows of 11008 weights is 700 KB of input: large enough to amortise the hand-out,
	// small enough to balance the last blocks.
	err = parallel.Blocks(out, 16, opt.Workers, func(r0, r1 int) error {
		return rtnRows(w[r0*in:r1*in], qw, r0, r1, grid, nil)
	})
	if err != nil {
		return nil, err
	}
	return qw, nil
}

// RTNIntScale is RTN followed by IntegerScales(·, rule), fused: each block of rows gets its
// integer scales while its codes are still in cache, and the magnitude sums the overflow
// bound needs come out of the rounding loop. The result equals the two calls in sequence
// (for a layer with both a non-finite weight and an overflowing channel, the error reported
// is the one in the earlier rows).
func RTNIntScale(w []float32, out, in, groupSize int, opt RTNOptions, rule AmplifierRule) (*IntScaleWeight, error) {
	grid, err := checkRTN(w, out, in, groupSize, opt)
	if err != nil {
		return nil, err
	}
	hi, lo, err := rule.span()
	if err != nil {
		return nil, err
	}
	qw := newQuantizedWeight(out, in, groupSize)
	iw := newIntScaleWeight(qw)
	ng := qw.NumGroups()
	const rows = 16
	err = parallel.Blocks(out, rows, opt.Workers, func(r0, r1 int) error {
		abs := make([]int64, rows*ng)
		ratio := make([]float32, ng)
		if err := rtnRows(w[r0*in:r1*in], qw, r0, r1, grid, abs); err != nil {
			return err
		}
		for c := r0; c < r1; c++ {
			if err := iw.channel(c, hi, lo, abs[(c-r0)*ng:(c-r0+1)*ng], ratio); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return iw, nil
}

// RTNRef is the scalar reference of RTN: the definition, written with SymScale and
// QuantizeValue one weight at a time, that RTN is tested against.
func RTNRef(w []float32, out, in, groupSize int, opt RTNOptions) (*QuantizedWeight, error) {
	grid, err := checkRTN(w, out, in, groupSize, opt)
	if err != nil {
		return nil, err
	}
	qw := newQuantizedWeight(out, in, groupSize)
	ng := qw.NumGroups()
	for o := 0; o < out; o++ {
		for g := 0; g < ng; g++ {
			k0 := o*in + g*groupSize
			wg := w[k0 : k0+groupSize]
			var absmax float32
			for k, v := range wg {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return nil, nonFinite(o, g*groupSize+k, v)
				}
				absmax = max(absmax, float32(math.Abs(float64(v))))
			}
			best, bestErr := float32(0), math.Inf(1)
			for _, c := range grid {
				s := SymScale(absmax, c)
				var sse float64
				for _, v := range wg {
					d := float64(float32(s*float32(QuantizeValue(v, s)))) - float64(v)
					sse += float64(d * d)
				}
				if sse < bestErr {
					best, bestErr = s, sse
				}
			}
			qw.Scales[o*ng+g] = best
			for k, v := range wg {
				qw.Q[k0+k] = QuantizeValue(v, best)
			}
		}
	}
	return qw, nil
}

// GroupSSE returns Σ (ŵ − w)² over one group, in float64, where ŵ = float32(scale·q) is the
// dequantized weight exactly as Dequantize computes it. It is the criterion of the clipping
// search, exported so that tests and reports measure the same number.
func GroupSSE(w []float32, q []int8, scale float32) float64 {
	q = q[:len(w)]
	var sse float64
	for k, v := range w {
		d := float64(float32(scale*float32(q[k]))) - float64(v)
		sse += float64(d * d)
	}
	return sse
}

func newQuantizedWeight(out, in, groupSize int) *QuantizedWeight {
	return &QuantizedWeight{
		Out: out, In: in, GroupSize: groupSize,
		Q:      NewCodes(out * in),
		Scales: make([]float32, out*(in/groupSize)),
	}
}

// checkRTN validates the arguments and returns the clip factors to try, 1 first.
func checkRTN(w []float32, out, in, groupSize int, opt RTNOptions) ([]float32, error) {
	if out > 0 && in > 0 && len(w) != out*in {
		return nil, fmt.Errorf("quant: RTN: weight has %d elements, want %d×%d", len(w), out, in)
	}
	return checkRTNArgs(out, in, groupSize, opt)
}

// checkRTNArgs is checkRTN without the weight.
func checkRTNArgs(out, in, groupSize int, opt RTNOptions) ([]float32, error) {
	if out <= 0 || in <= 0 {
		return nil, fmt.Errorf("quant: RTN: bad shape %d×%d", out, in)
	}
	if groupSize <= 0 || in%groupSize != 0 {
		return nil, fmt.Errorf("quant: RTN: group size %d does not divide %d input channels (see EffectiveGroupSize)", groupSize, in)
	}
	grid := []float32{1}
	if !opt.ClipSearch {
		return grid, nil
	}
	cg := opt.ClipGrid
	if cg == nil {
		cg = DefaultClipGrid()
	}
	for _, c := range cg {
		if !(c >= MinClip && c <= 1) {
			return nil, fmt.Errorf("quant: RTN: clip factor %v outside [%v, 1]", c, MinClip)
		}
		if c != 1 {
			grid = append(grid, c)
		}
	}
	return grid, nil
}

func nonFinite(row, col int, v float32) error {
	return fmt.Errorf("quant: RTN: weight [%d, %d] is %v", row, col, v)
}

// rtnRows quantizes rows [r0, r1) of a weight, given as w (those rows only), into qw. It is RTNRef restated for speed: the group's
// absolute maximum is taken on the float bits (absMaxBits, which also flags non-finite
// weights with one comparison per group), and QuantizeValue's rounding is inlined
// (quantizeGroup). If abs
// is not nil, abs[(o−r0)·NumGroups + g] receives Σ|q| of group g of row o.
func rtnRows(w []float32, qw *QuantizedWeight, r0, r1 int, grid []float32, abs []int64) error {
	in, gs := qw.In, qw.GroupSize
	ng := in / gs
	for o := r0; o < r1; o++ {
		for g := 0; g < ng; g++ {
			k0 := o*in + g*gs
			kw := (o-r0)*in + g*gs
			wg := w[kw : kw+gs : kw+gs]
			qg := qw.Q[k0 : k0+gs : k0+gs]
			mb := absMaxBits(wg)
			if mb >= 0x7f800000 {
				for k, v := range wg {
					if math.Float32bits(v)&0x7fffffff >= 0x7f800000 {
						return nonFinite(o, g*gs+k, v)
					}
				}
			}
			absmax := math.Float32frombits(mb)
			s := SymScale(absmax, 1)
			sum := quantizeGroup(wg, qg, s)
			if len(grid) > 1 {
				best, bestErr := s, GroupSSE(wg, qg, s)
				for _, c := range grid[1:] {
					sc := SymScale(absmax, c)
					quantizeGroup(wg, qg, sc)
					if e := GroupSSE(wg, qg, sc); e < bestErr {
						best, bestErr = sc, e
					}
				}
				s = best
				sum = quantizeGroup(wg, qg, s)
			}
			qw.Scales[o*ng+g] = s
			if abs != nil {
				abs[(o-r0)*ng+g] = int64(sum)
			}
		}
	}
	return nil
}

// quantizeGroup sets q[k] = QuantizeValue(w[k], s) for the whole group. It restates
// QuantizeValue for speed, bit for bit: |w|/s is |w/s| exactly (s > 0, division by a
// positive number commutes with the sign), and adding 0.5 to a float32 value in float64 is
// exact (24 significant bits into 53), so truncating float64(|w|/s) + 0.5 is math.Round of
// the magnitude (half away from zero); the sign is put back as two's-complement negation.
// The magnitude is at most 7/clip·(1+2⁻²²) ≤ 700 for clip ≥ MinClip, so the conversion to
// int32 is always in range, and clamping the magnitude to 7 is QuantizeValue's clamp. The
// weights are read as their bit patterns, which saves a register move per weight.
// It returns Σ|q|, which IntegerScales needs and costs one addition here.
func quantizeGroup(w []float32, q []int8, s float32) (absSum int32) {
	if hasKernels {
		return quantizeGroupAsm(w, q, s)
	}
	return quantizeGroupGo(w, q, s)
}

// quantizeGroupGo is the portable quantizeGroup, and the reference of the vector kernel.
func quantizeGroupGo(w []float32, q []int8, s float32) (absSum int32) {
	wb := float32Bits(w)
	q = q[:len(wb)]
	for k, b := range wb {
		a := math.Float32frombits(b&0x7fffffff) / s
		t := min(int32(float64(a)+0.5), Int4Max)
		absSum += t
		neg := int32(b) >> 31 // 0 or −1
		q[k] = int8((t ^ neg) - neg)
	}
	return absSum
}

// absMaxBits returns the largest |w| of w as float32 bits. For non-negative floats the bit
// patterns order like the values, and NaN and ±Inf sort above every finite value, so a
// result ≥ 0x7f800000 flags a non-finite weight. Four running maxima break the dependency
// chain of one.
func absMaxBits(w []float32) uint32 {
	if hasKernels {
		return absMaxBitsAsm(w)
	}
	return absMaxBitsGo(w)
}

// absMaxBitsGo is the portable absMaxBits, and the reference of the vector kernel.
func absMaxBitsGo(w []float32) uint32 {
	wb := float32Bits(w)
	var m0, m1, m2, m3 uint32
	i := 0
	for ; i+4 <= len(wb); i += 4 {
		m0 = max(m0, wb[i]&0x7fffffff)
		m1 = max(m1, wb[i+1]&0x7fffffff)
		m2 = max(m2, wb[i+2]&0x7fffffff)
		m3 = max(m3, wb[i+3]&0x7fffffff)
	}
	for ; i < len(wb); i++ {
		m0 = max(m0, wb[i]&0x7fffffff)
	}
	return max(m0, m1, m2, m3)
}

// float32Bits views w as its IEEE bit patterns, without copying.
func float32Bits(w []float32) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(w))), len(w))
}
