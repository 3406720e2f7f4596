package quant

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// AccLimit is the largest value the kernel's int32 accumulator may reach: 2³¹ − 1.
const AccLimit = math.MaxInt32

// ActQMax is the largest int8 activation magnitude. Activations are symmetric −127..127:
// −128 never occurs, which the overflow bound of the integer scales relies on.
const ActQMax = 127

// Int4Shift is the factor 16 = 2⁴ by which the FastGEMM layout stores an int4 code in the
// high nibble of a byte, so that the byte read as int8 is 16·q (docs/fastgemm-layout.md).
const Int4Shift = 16

// DefaultLog2Alpha is the default amplifier cap, α ≤ 2¹⁰ (the Integer Scale paper's 1024).
const DefaultLog2Alpha = 10

// MaxLog2Alpha bounds the amplifier: ŝ ≤ α ≤ 2¹⁴ fits the int16 .group_scale tensor of
// docs/fastgemm-layout.md. The overflow bound stops far below it for real layers anyway.
const MaxLog2Alpha = 14

// AmplifierKind chooses how the amplifier α of each output channel is picked.
type AmplifierKind int

const (
	// MaxSafePerChannel picks, for each output channel, the largest α = 2^e ≤ 2^Log2Alpha
	// for which the channel's worst-case accumulator provably fits in int32.
	MaxSafePerChannel AmplifierKind = iota
	// FixedAlpha uses α = 2^Log2Alpha for every channel and fails if any channel's
	// worst-case accumulator would not fit: the paper's global amplifier, kept for comparison.
	FixedAlpha
)

// String returns "max-safe-per-channel" or "fixed".
func (k AmplifierKind) String() string {
	switch k {
	case MaxSafePerChannel:
		return "max-safe-per-channel"
	case FixedAlpha:
		return "fixed"
	}
	return fmt.Sprintf("AmplifierKind(%d)", int(k))
}

// AmplifierRule is the rule for the amplifiers of IntegerScales. The zero value is the
// default: per channel, as large as provably safe, at most 2^DefaultLog2Alpha.
type AmplifierRule struct {
	Kind AmplifierKind
	// Log2Alpha is the cap (MaxSafePerChannel) or the value (FixedAlpha) of log2 α, in
	// [1, MaxLog2Alpha]; 0 means DefaultLog2Alpha.
	Log2Alpha int
}

func (r AmplifierRule) log2Alpha() int {
	if r.Log2Alpha == 0 {
		return DefaultLog2Alpha
	}
	return r.Log2Alpha
}

// IntScaleWeight is a QuantizedWeight whose group scales are integers: the float group scale
// s[c,g] is represented as ChannelScale[c] · IntScales[c,g] / α_c with α_c = 2^Log2Alpha[c].
// The kernel multiplies each group's int32 partial sum by the integer IntScales[c,g] and
// applies ChannelScale[c] / (16·α_c) once per output in the epilogue, next to the activation
// scale, so no group needs an int-to-float conversion (docs/w4a8-numerics.md).
//
// The embedded QuantizedWeight keeps the original float scales (the float-scale path).
type IntScaleWeight struct {
	*QuantizedWeight
	// ChannelScale[c] = max over groups of channel c with a nonzero code of Scales[c,g]
	// (1 when every code of the channel is 0), so every ratio Scales/ChannelScale is ≤ 1.
	ChannelScale []float32
	// Log2Alpha[c] is e_c with α_c = 2^e_c.
	Log2Alpha []uint8
	// IntScales holds ŝ[c,g] = max(1, round(α_c · Scales[c,g]/ChannelScale[c])), row-major
	// [Out, NumGroups()], each in [1, α_c].
	IntScales []int32
	// Bound[c] = 127·16·Σ_g ŝ[c,g]·Σ_{k∈g}|Q[c,k]| is the exact worst case of |acc_c| over
	// all int8 inputs in −127..127; IntegerScales guarantees Bound[c] ≤ AccLimit.
	Bound []int64
}

// Alpha returns α_c = 2^Log2Alpha[c].
func (w *IntScaleWeight) Alpha(c int) int32 { return 1 << w.Log2Alpha[c] }

// IntegerScales converts the float group scales of w into integer scales with per-channel
// amplifiers chosen by rule, and proves for every channel that the kernel's int32 accumulator
// cannot overflow (Bound). Per channel c:
//
//	s_c = max_g s[c,g]            (groups whose codes are all 0 are ignored: their scale is arbitrary)
//	r   = s[c,g] / s_c ∈ (0, 1]   (float32 division)
//	ŝ   = max(1, round(α_c·r))    (half away from zero; α_c·r is exact, α_c a power of two)
//	B_c = 127·16·Σ_g ŝ·Σ_{k∈g}|q[c,k]| ≤ 2³¹ − 1
//
// The amplifier may differ per channel at no kernel cost because the epilogue already
// multiplies every output by a per-channel factor, into which 1/α_c folds. A larger α gives
// a finer integer scale (relative error ≤ 0.5/(α·r)), so each channel takes the largest safe
// one. It returns an error, naming the layer's shape and the channel, for bad codes or
// scales, or when a channel would overflow even with α = 1 (FixedAlpha: with its α).
func IntegerScales(w *QuantizedWeight, rule AmplifierRule) (*IntScaleWeight, error) {
	if err := checkQuantizedWeight(w); err != nil {
		return nil, err
	}
	hi, lo, err := rule.span()
	if err != nil {
		return nil, err
	}
	iw := newIntScaleWeight(w)
	ng := w.NumGroups()
	err = parallel.Blocks(w.Out, 64, 0, func(c0, c1 int) error {
		abs := make([]int64, ng) // Σ_{k∈g} |q|
		ratio := make([]float32, ng)
		for c := c0; c < c1; c++ {
			if err := groupAbsSums(w, c, abs); err != nil {
				return err
			}
			if err := iw.channel(c, hi, lo, abs, ratio); err != nil {
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

func newIntScaleWeight(w *QuantizedWeight) *IntScaleWeight {
	return &IntScaleWeight{
		QuantizedWeight: w,
		ChannelScale:    make([]float32, w.Out),
		Log2Alpha:       make([]uint8, w.Out),
		IntScales:       make([]int32, w.Out*w.NumGroups()),
		Bound:           make([]int64, w.Out),
	}
}

// span validates the rule and returns the range of log2 α to try, from hi down to lo.
func (r AmplifierRule) span() (hi, lo int, err error) {
	hi = r.log2Alpha()
	if hi < 1 || hi > MaxLog2Alpha {
		return 0, 0, fmt.Errorf("quant: amplifier rule: log2 α = %d outside [1, %d]", hi, MaxLog2Alpha)
	}
	switch r.Kind {
	case MaxSafePerChannel:
		return hi, 0, nil
	case FixedAlpha:
		return hi, hi, nil
	}
	return 0, 0, fmt.Errorf("quant: amplifier rule: unknown kind %v", r.Kind)
}

// channel fills the integer scales, amplifier and bound of output channel c from the
// group magnitude sums abs, trying log2 α from hi down to lo.
func (iw *IntScaleWeight) channel(c, hi, lo int, abs []int64, ratio []float32) error {
	w := iw.QuantizedWeight
	ng := len(abs)
	sc := float32(0)
	for g, a := range abs {
		if a != 0 {
			sc = max(sc, w.Scales[c*ng+g])
		}
	}
	if sc == 0 {
		sc = 1 // every code is 0: any scale represents the channel exactly
	}
	for g := range ratio {
		ratio[g] = w.Scales[c*ng+g] / sc
	}
	shat := iw.IntScales[c*ng : (c+1)*ng]
	for e := skipInfeasible(ratio, abs, hi, lo); e >= lo; e-- {
		if b, ok := channelBound(ratio, abs, e, shat); ok {
			iw.ChannelScale[c] = sc
			iw.Log2Alpha[c] = uint8(e)
			iw.Bound[c] = b
			return nil
		}
	}
	return fmt.Errorf("quant: IntegerScales: layer %d×%d (group %d), output channel %d: "+
		"worst-case int32 accumulator 127·16·Σŝ|q| exceeds 2³¹−1 even with α = 2^%d; "+
		"the input dimension is too large for one int32 accumulation",
		w.Out, w.In, w.GroupSize, c, lo)
}

// skipInfeasible returns the largest e in [lo, hi] that is not already proven infeasible
// by a lower bound of the channel's bound, so the exact search usually needs one try instead
// of several. Rounding moves each ŝ by at most 1/2 and max(1, ·) only raises it, so
// Σŝ·A ≥ α·Σr·A − ΣA/2, and 2032·(α·Σr·A − ΣA/2) > 2³¹−1 rules α out. The float64 sum is
// shrunk by 10⁻⁹ relative so that its rounding can only make the skip more cautious; the
// exact check still decides every remaining α.
func skipInfeasible(ratio []float32, abs []int64, hi, lo int) int {
	var sra, sa float64
	for g, r := range ratio {
		if abs[g] != 0 {
			sra += float64(float64(r) * float64(abs[g]))
			sa += float64(abs[g])
		}
	}
	sra *= 1 - 1e-9
	e := hi
	for e > lo && ActQMax*Int4Shift*(math.Ldexp(sra, e)-float64(sa/2)) > AccLimit {
		e--
	}
	return e
}

// IntScale returns ŝ = max(1, round(2^log2Alpha · r)) for a ratio r ∈ (0, 1]: the rounding of
// IntegerScales, exported for tests and for tools that explain a scale.
func IntScale(r float32, log2Alpha int) int32 {
	v := math.Round(float64(r * float32(int32(1)<<log2Alpha)))
	return int32(max(v, 1))
}

// channelBound fills ŝ for amplifier 2^e and returns B = 127·16·Σ ŝ·abs and whether
// B ≤ AccLimit (accBound).
//
// A group whose codes are all 0 gets ŝ = 1: it contributes nothing, and its float scale
// (SymScale gives an all-zero group the scale 1) may exceed s_c, which would otherwise put
// its ŝ above α.
func channelBound(ratio []float32, abs []int64, e int, shat []int32) (int64, bool) {
	for g, r := range ratio {
		if abs[g] == 0 {
			shat[g] = 1
			continue
		}
		shat[g] = IntScale(r, e)
	}
	return accBound(shat, abs)
}

// accBound returns B = 127·16·Σ_g ŝ[g]·abs[g], the worst case of |acc| over all int8 inputs
// for one output channel with integer scales shat and group magnitude sums abs, and whether
// B ≤ AccLimit. With non-negative terms the sum stops as soon as it passes the limit, which
// keeps it far from int64 overflow; B is then 0. IntegerScales and RecomputeBounds both
// compute the bound here.
func accBound(shat []int32, abs []int64) (int64, bool) {
	const perUnit = ActQMax * Int4Shift // 2032
	var sum int64
	for g, s := range shat {
		sum += int64(s) * abs[g]
		if sum > AccLimit/perUnit {
			return 0, false
		}
	}
	return sum * perUnit, true
}

// RecomputeBounds sets Bound[c] of every channel from the codes and the integer scales, for a
// weight whose bounds are not stored (a loaded artifact). It does not validate: a channel
// with a bad code, or whose bound passes AccLimit, gets Bound −1, and a weight with bad
// shapes is left alone; call Validate after it.
func (w *IntScaleWeight) RecomputeBounds() {
	if w == nil || checkQuantizedWeight(w.QuantizedWeight) != nil {
		return
	}
	ng := w.NumGroups()
	if len(w.Bound) != w.Out || len(w.IntScales) != w.Out*ng {
		return
	}
	abs := make([]int64, ng)
	for c := range w.Out {
		w.Bound[c] = -1
		if groupAbsSums(w.QuantizedWeight, c, abs) != nil {
			continue
		}
		if b, ok := accBound(w.IntScales[c*ng:(c+1)*ng], abs); ok {
			w.Bound[c] = b
		}
	}
}

// absCode[uint8(q)] is |q| for a valid code and badCode otherwise, so one table lookup per
// code both sums the magnitudes and validates them: a group sum ≥ badCode flags a bad code.
var absCode = func() (t [256]int64) {
	for i := range t {
		q := int(int8(uint8(i)))
		if q < Int4Min || q > Int4Max {
			t[i] = badCode
		} else {
			t[i] = int64(max(q, -q))
		}
	}
	return t
}()

const badCode = 1 << 40 // above 7·In for any In < 2³⁷

// groupAbsSums sets abs[g] = Σ_{k∈g}|Q[c,k]| for output channel c and checks the codes.
func groupAbsSums(w *QuantizedWeight, c int, abs []int64) error {
	row := w.Q[c*w.In : (c+1)*w.In]
	for g := range abs {
		grp := row[g*w.GroupSize : (g+1)*w.GroupSize]
		var s int64
		for _, q := range grp {
			s += absCode[uint8(q)]
		}
		if s >= badCode {
			for k, q := range grp {
				if absCode[uint8(q)] == badCode {
					return fmt.Errorf("quant: layer %d×%d: code Q[%d, %d] = %d outside [%d, %d]",
						w.Out, w.In, c, g*w.GroupSize+k, q, Int4Min, Int4Max)
				}
			}
		}
		abs[g] = s
	}
	return nil
}

// checkQuantizedWeight validates shapes and scales; codes are checked where they are summed.
func checkQuantizedWeight(w *QuantizedWeight) error {
	if w == nil {
		return fmt.Errorf("quant: nil QuantizedWeight")
	}
	if w.Out <= 0 || w.In <= 0 || w.GroupSize <= 0 || w.In%w.GroupSize != 0 {
		return fmt.Errorf("quant: QuantizedWeight %d×%d with group size %d: groups must tile the rows", w.Out, w.In, w.GroupSize)
	}
	if len(w.Q) != w.Out*w.In || len(w.Scales) != w.Out*w.NumGroups() {
		return fmt.Errorf("quant: QuantizedWeight %d×%d (group %d): %d codes and %d scales, want %d and %d",
			w.Out, w.In, w.GroupSize, len(w.Q), len(w.Scales), w.Out*w.In, w.Out*w.NumGroups())
	}
	for i, s := range w.Scales {
		if !(s > 0 && s <= math.MaxFloat32) {
			return fmt.Errorf("quant: layer %d×%d: scale [%d, %d] = %v is not positive and finite",
				w.Out, w.In, i/w.NumGroups(), i%w.NumGroups(), s)
		}
	}
	return nil
}

// EffectiveScales returns the float group scales the integer scales represent,
// s_eff[c,g] = float32(ŝ[c,g]) · (ChannelScale[c] / α_c), the second factor exact (α_c is a
// power of two). Fake-quantized evaluation must use these, not Scales, so that it computes
// with the weights the kernel computes with. Row-major [Out, NumGroups()].
func (w *IntScaleWeight) EffectiveScales() []float32 {
	ng := w.NumGroups()
	eff := make([]float32, len(w.IntScales))
	for c := 0; c < w.Out; c++ {
		f := w.ChannelScale[c] / float32(w.Alpha(c))
		for g := 0; g < ng; g++ {
			eff[c*ng+g] = float32(w.IntScales[c*ng+g]) * f
		}
	}
	return eff
}

// Dequantize returns the float weight the kernel computes with, EffectiveScales · Q,
// row-major [Out, In]. It shadows QuantizedWeight.Dequantize, which uses the float scales
// (still reachable as w.QuantizedWeight.Dequantize()).
func (w *IntScaleWeight) Dequantize() []float32 {
	eff := w.EffectiveScales()
	ng := w.NumGroups()
	out := make([]float32, w.Out*w.In)
	for o := 0; o < w.Out; o++ {
		for k := 0; k < w.In; k++ {
			out[o*w.In+k] = eff[o*ng+k/w.GroupSize] * float32(w.Q[o*w.In+k])
		}
	}
	return out
}

// EpilogueFactor returns f_c = ChannelScale[c] / (16·α_c) in float32. The division is by a
// power of two, hence exact (short of subnormals), so f_c is the same number however a kernel
// computes it: multiplying by 2^−(4+e_c), ldexp, or dividing.
func (w *IntScaleWeight) EpilogueFactor(c int) float32 {
	return w.ChannelScale[c] / float32(Int4Shift*w.Alpha(c))
}

// Validate recomputes every channel's worst-case bound from the codes and the integer
// scales and checks it against Bound and AccLimit, and checks the shapes and ranges. The fast
// GEMM trusts a validated weight; IntegerScales's results are valid by construction, so this
// is for weights assembled or loaded by other code.
func (w *IntScaleWeight) Validate() error {
	if w == nil || w.QuantizedWeight == nil {
		return fmt.Errorf("quant: nil IntScaleWeight")
	}
	if err := checkQuantizedWeight(w.QuantizedWeight); err != nil {
		return err
	}
	ng := w.NumGroups()
	if len(w.ChannelScale) != w.Out || len(w.Log2Alpha) != w.Out || len(w.Bound) != w.Out || len(w.IntScales) != w.Out*ng {
		return fmt.Errorf("quant: IntScaleWeight %d×%d: per-channel slices have lengths %d, %d, %d and integer scales %d",
			w.Out, w.In, len(w.ChannelScale), len(w.Log2Alpha), len(w.Bound), len(w.IntScales))
	}
	abs := make([]int64, ng)
	for c := 0; c < w.Out; c++ {
		if err := groupAbsSums(w.QuantizedWeight, c, abs); err != nil {
			return err
		}
		if w.Log2Alpha[c] > MaxLog2Alpha {
			return fmt.Errorf("quant: IntScaleWeight %d×%d: channel %d: log2 α = %d > %d", w.Out, w.In, c, w.Log2Alpha[c], MaxLog2Alpha)
		}
		if s := w.ChannelScale[c]; !(s > 0 && s <= math.MaxFloat32) {
			return fmt.Errorf("quant: IntScaleWeight %d×%d: channel %d: channel scale %v", w.Out, w.In, c, s)
		}
		var sum int64
		for g := 0; g < ng; g++ {
			s := w.IntScales[c*ng+g]
			if s < 1 || s > w.Alpha(c) {
				return fmt.Errorf("quant: IntScaleWeight %d×%d: ŝ[%d, %d] = %d outside [1, α = %d]", w.Out, w.In, c, g, s, w.Alpha(c))
			}
			// Terms are non-negative: stop once past the limit, far from int64 overflow.
			if sum += int64(s) * abs[g]; sum > AccLimit/(ActQMax*Int4Shift) {
				return fmt.Errorf("quant: IntScaleWeight %d×%d: channel %d: worst-case accumulator exceeds %d",
					w.Out, w.In, c, int64(AccLimit))
			}
		}
		if b := sum * ActQMax * Int4Shift; b != w.Bound[c] {
			return fmt.Errorf("quant: IntScaleWeight %d×%d: channel %d: worst-case accumulator is %d, recorded %d",
				w.Out, w.In, c, b, w.Bound[c])
		}
	}
	return nil
}
