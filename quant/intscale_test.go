package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// handWeight is one output channel of 12 inputs in 6 groups of 2 whose scales make every
// ratio to the channel scale 2 an exact binary fraction, so the integer scales can be worked
// out by hand. The last group's codes are all 0 and its scale, 4, exceeds the others: it must
// not become the channel scale.
func handWeight() *QuantizedWeight {
	return &QuantizedWeight{
		Out: 1, In: 12, GroupSize: 2,
		Q:      []int8{7, -7, 3, 1, -2, 0, 5, 5, 1, -1, 0, 0},
		Scales: []float32{2, 0.75, 0.3125, 0.15625, 0.0078125, 4},
	}
}

func TestIntegerScalesHand(t *testing.T) {
	// Fixed α = 16: r = 1, 0.375, 0.15625, 0.078125, 0.00390625; α·r = 16, 6, 2.5, 1.25, 0.0625
	// → ŝ = 16, 6, 3 (half away from zero), 1, 1 (0 raised to the minimum 1); zero group 1.
	// Σ|q| per group = 14, 4, 2, 10, 2, 0 → Σ ŝ·Σ|q| = 224+24+6+10+2 = 266, B = 2032·266.
	iw, err := IntegerScales(handWeight(), AmplifierRule{Kind: FixedAlpha, Log2Alpha: 4})
	if err != nil {
		t.Fatal(err)
	}
	checkChannel(t, iw, 0, 2, 4, []int32{16, 6, 3, 1, 1, 1}, 2032*266)
	// Effective scales s_c·ŝ/α = ŝ/8.
	for g, want := range []float32{2, 0.75, 0.375, 0.125, 0.125, 0.125} {
		if got := iw.EffectiveScales()[g]; got != want {
			t.Errorf("effective scale %d = %v, want %v", g, got, want)
		}
	}
	if f := iw.EpilogueFactor(0); f != 2.0/(16*16) {
		t.Errorf("epilogue factor %v, want %v", f, 2.0/256)
	}

	// Default rule: the bound is small, so α reaches the cap 2¹⁰: ŝ = 1024·r = 1024, 384,
	// 160, 80, 4; Σ ŝ·Σ|q| = 14336+1536+320+800+8 = 17000.
	iw, err = IntegerScales(handWeight(), AmplifierRule{})
	if err != nil {
		t.Fatal(err)
	}
	checkChannel(t, iw, 0, 2, 10, []int32{1024, 384, 160, 80, 4, 1}, 2032*17000)
	if err := iw.Validate(); err != nil {
		t.Fatal(err)
	}
}

func checkChannel(t *testing.T, iw *IntScaleWeight, c int, sc float32, log2a uint8, shat []int32, bound int64) {
	t.Helper()
	if iw.ChannelScale[c] != sc || iw.Log2Alpha[c] != log2a || iw.Bound[c] != bound {
		t.Errorf("channel %d: scale %v, log2 α %d, bound %d; want %v, %d, %d", c, iw.ChannelScale[c], iw.Log2Alpha[c], iw.Bound[c], sc, log2a, bound)
	}
	ng := iw.NumGroups()
	for g, want := range shat {
		if got := iw.IntScales[c*ng+g]; got != want {
			t.Errorf("channel %d: ŝ[%d] = %d, want %d", c, g, got, want)
		}
	}
}

func TestIntScaleRounding(t *testing.T) {
	for _, c := range []struct {
		r    float32
		e    int
		want int32
	}{
		{1, 10, 1024},
		{0.5, 10, 512},
		{2.5 / 1024, 10, 3},       // half away from zero
		{3.5 / 1024, 10, 4},       // not half to even
		{0.4 / 1024, 10, 1},       // rounds to 0, raised to 1
		{1e-30, 10, 1},            // tiny ratio
		{0.99951171875, 10, 1024}, // 1023.5 → 1024
		{0.7, 0, 1},
		{1, 0, 1},
	} {
		if got := IntScale(c.r, c.e); got != c.want {
			t.Errorf("IntScale(%v, %d) = %d, want %d", c.r, c.e, got, c.want)
		}
	}
}

// worstCase returns the int8 input that maximises channel c's accumulator, x_k = 127·sign(q_k),
// and that accumulator computed in int64.
func worstCase(iw *IntScaleWeight, c int) ([]int8, int64) {
	x := make([]int8, iw.In)
	var acc int64
	ng := iw.NumGroups()
	for g := 0; g < ng; g++ {
		var p int64
		for k := g * iw.GroupSize; k < (g+1)*iw.GroupSize; k++ {
			q := iw.Q[c*iw.In+k]
			switch {
			case q > 0:
				x[k] = 127
			case q < 0:
				x[k] = -127
			}
			p += int64(x[k]) * 16 * int64(q)
		}
		acc += int64(iw.IntScales[c*ng+g]) * p
	}
	return x, acc
}

// TestIntegerScalesAlphaDrops crafts a channel whose worst case overflows int32 with the
// default cap α = 1024: two groups of 128 codes of 7 with scales 1 and 0.5, so ŝ = α, α/2 and
// B(α) = 2032·7·128·(α + α/2) = 2 731 008·α, which is 2 796 552 192 > 2³¹−1 at α = 1024 and
// 1 398 276 096 at α = 512. A second channel (codes 1) stays at 1024: α is per channel.
func TestIntegerScalesAlphaDrops(t *testing.T) {
	qw := &QuantizedWeight{Out: 2, In: 256, GroupSize: 128, Q: make([]int8, 512), Scales: []float32{1, 0.5, 1, 1}}
	for k := 0; k < 256; k++ {
		qw.Q[k] = 7
		qw.Q[256+k] = 1
	}
	iw, err := IntegerScales(qw, AmplifierRule{})
	if err != nil {
		t.Fatal(err)
	}
	checkChannel(t, iw, 0, 1, 9, []int32{512, 256}, 1398276096)
	// Channel 1: B = 2032·(1024·128 + 1024·128) = 532 676 608.
	checkChannel(t, iw, 1, 1, 10, []int32{1024, 1024}, 532676608)

	for c := 0; c < 2; c++ {
		x, acc := worstCase(iw, c)
		if acc != iw.Bound[c] || acc > math.MaxInt32 {
			t.Errorf("channel %d: worst-case accumulator %d, bound %d", c, acc, iw.Bound[c])
		}
		// The reference runs it without tripping its overflow assertion, and the negated
		// input reaches −B.
		y := make([]float32, 2)
		W4A8GEMMRef(x, []float32{1}, iw, y)
		if want := float32(acc) * iw.EpilogueFactor(c); y[c] != want {
			t.Errorf("channel %d: y = %v, want %v", c, y[c], want)
		}
		for k := range x {
			x[k] = -x[k]
		}
		W4A8GEMMRef(x, []float32{1}, iw, y)
		if want := -float32(acc) * iw.EpilogueFactor(c); y[c] != want {
			t.Errorf("channel %d: negated y = %v, want %v", c, y[c], want)
		}
	}

	// The paper's fixed α = 1024 must refuse this layer.
	_, err = IntegerScales(qw, AmplifierRule{Kind: FixedAlpha, Log2Alpha: 10})
	if err == nil || !strings.Contains(err.Error(), "2×256") || !strings.Contains(err.Error(), "channel 0") {
		t.Errorf("fixed α = 1024: err = %v, want an overflow error naming 2×256 and channel 0", err)
	}
}

// TestIntegerScalesLimit puts one channel of codes 7 exactly on the int32 limit: with α = 1
// (every ŝ = 1) B = 2032·7·K, which is 2 147 482 624 ≤ 2³¹−1 for K = 150 976 and
// 2 147 496 848 > 2³¹−1 for K = 150 977: the first must pass at α = 1 and reach B exactly on
// its worst input, the second must fail loudly.
func TestIntegerScalesLimit(t *testing.T) {
	mk := func(k int) *QuantizedWeight {
		qw := &QuantizedWeight{Out: 1, In: k, GroupSize: k, Q: make([]int8, k), Scales: []float32{0.01}}
		for i := range qw.Q {
			qw.Q[i] = 7
		}
		return qw
	}
	iw, err := IntegerScales(mk(150976), AmplifierRule{})
	if err != nil {
		t.Fatal(err)
	}
	checkChannel(t, iw, 0, 0.01, 0, []int32{1}, 2147482624)
	x, acc := worstCase(iw, 0)
	if acc != 2147482624 {
		t.Errorf("worst case %d", acc)
	}
	// The reference passes its overflow assertion; the fast path (which sums this
	// per-channel group of 150 976 in exact float pieces) agrees.
	y, yf := make([]float32, 1), make([]float32, 1)
	W4A8GEMMRef(x, []float32{0.5}, iw, y)
	W4A8GEMM(x, []float32{0.5}, iw, yf)
	if want := float32(acc) * (0.5 * iw.EpilogueFactor(0)); y[0] != want || yf[0] != want {
		t.Errorf("y = %v (ref), %v (fast), want %v", y[0], yf[0], want)
	}
	_, err = IntegerScales(mk(150977), AmplifierRule{})
	if err == nil || !strings.Contains(err.Error(), "1×150977") || !strings.Contains(err.Error(), "α = 2^0") {
		t.Errorf("err = %v, want an overflow error naming 1×150977 and α = 2^0", err)
	}
}

// TestIntegerScalesProperties checks on random layers: ŝ ∈ [1, α]; the bound is the brute
// force worst case and fits; the relative error of each effective scale is at most
// 0.5/(α·r) ≤ 1/(2ŝ−1) (groups whose α·r < 0.5 are raised to ŝ = 1 and only bounded
// absolutely, by s_c/α); Validate accepts the result.
func TestIntegerScalesProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for i := 0; i < 30; i++ {
		out, in, g := randShape(r)
		w := randWeights(out*in, uint64(300+i))
		if i%5 == 0 { // a tiny group: ratio far below 1/α
			for k := 0; k < g; k++ {
				w[k] *= 1e-5
			}
		}
		qw, err := RTN(w, out, in, g, RTNOptions{ClipSearch: i%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		capE := 1 + r.IntN(14)
		iw, err := IntegerScales(qw, AmplifierRule{Log2Alpha: capE})
		if err != nil {
			t.Fatal(err)
		}
		if err := iw.Validate(); err != nil {
			t.Fatal(err)
		}
		eff := iw.EffectiveScales()
		ng := iw.NumGroups()
		for c := 0; c < out; c++ {
			if _, acc := worstCase(iw, c); acc != iw.Bound[c] || acc > AccLimit {
				t.Fatalf("case %d channel %d: worst case %d, bound %d", i, c, acc, iw.Bound[c])
			}
			// α is the largest safe one: below the cap, twice α must overflow.
			if e := int(iw.Log2Alpha[c]); e < capE {
				var sum int64
				for gi := 0; gi < ng; gi++ {
					var a int64
					for _, q := range qw.Q[c*in+gi*g : c*in+(gi+1)*g] {
						a += int64(max(q, -q))
					}
					if a != 0 {
						sum += int64(IntScale(qw.Scales[c*ng+gi]/iw.ChannelScale[c], e+1)) * a
					}
				}
				if 2032*sum <= AccLimit {
					t.Fatalf("case %d channel %d: α = 2^%d, but 2^%d has bound %d", i, c, e, e+1, 2032*sum)
				}
			}
			alpha := float64(iw.Alpha(c))
			for gi := 0; gi < ng; gi++ {
				j := c*ng + gi
				shat := iw.IntScales[j]
				if shat < 1 || shat > iw.Alpha(c) {
					t.Fatalf("ŝ = %d outside [1, %v]", shat, alpha)
				}
				if allZero(qw.Q[c*in+gi*g : c*in+(gi+1)*g]) {
					continue
				}
				s, e := float64(qw.Scales[j]), float64(eff[j])
				ar := alpha * s / float64(iw.ChannelScale[c])
				if ar < 0.5 {
					if math.Abs(e-s) > float64(iw.ChannelScale[c])/alpha*(1+1e-6) {
						t.Fatalf("clamped group: |%g − %g| > s_c/α", e, s)
					}
					continue
				}
				if rel := math.Abs(e-s) / s; rel > 0.5/ar+1e-6 || rel > 1/(2*float64(shat)-1)+1e-6 {
					t.Fatalf("case %d channel %d group %d: ŝ = %d, relative error %g > 0.5/(α·r) = %g", i, c, gi, shat, rel, 0.5/ar)
				}
			}
		}
	}
}

func allZero(q []int8) bool {
	for _, v := range q {
		if v != 0 {
			return false
		}
	}
	return true
}

// TestIntegerScalesTypicalAlpha reports the amplifiers the max-safe rule picks for LLaMA-7B
// shaped rows (numbers quoted in docs/w4a8-numerics.md), and checks the cap is reached for
// the small models' dimensions.
func TestIntegerScalesTypicalAlpha(t *testing.T) {
	for _, in := range []int{256, 768, 4096, 11008} {
		const out = 32
		qw, err := RTN(randWeights(out*in, 9), out, in, 128, RTNOptions{})
		if err != nil {
			t.Fatal(err)
		}
		iw, err := IntegerScales(qw, AmplifierRule{})
		if err != nil {
			t.Fatal(err)
		}
		hist := map[int]int{}
		var worst float64
		for c := 0; c < out; c++ {
			hist[1<<iw.Log2Alpha[c]]++
			worst = max(worst, float64(iw.Bound[c])/AccLimit)
		}
		// Weight error of the float scales and of the integer scales, relative to Σw².
		w := randWeights(out*in, 9)
		var ef, ei, ew float64
		df, di := qw.Dequantize(), iw.Dequantize()
		for j, v := range w {
			ef += (float64(df[j]) - float64(v)) * (float64(df[j]) - float64(v))
			ei += (float64(di[j]) - float64(v)) * (float64(di[j]) - float64(v))
			ew += float64(v) * float64(v)
		}
		t.Logf("K = %5d, group 128: α per channel %v, largest bound %.2f of 2³¹−1; weight rel. MSE %.5f (float scales), %.5f (integer scales)",
			in, hist, worst, ef/ew, ei/ew)
		if in == 256 && hist[1024] != out {
			t.Errorf("K = 256: α %v, want 1024 everywhere", hist)
		}
	}
}

func TestIntegerScalesErrors(t *testing.T) {
	bad := func(f func(*QuantizedWeight)) *QuantizedWeight {
		qw := handWeight()
		f(qw)
		return qw
	}
	for _, c := range []struct {
		name string
		w    *QuantizedWeight
		rule AmplifierRule
		want string
	}{
		{"code −8", bad(func(w *QuantizedWeight) { w.Q[3] = -8 }), AmplifierRule{}, "Q[0, 3] = -8"},
		{"zero scale", bad(func(w *QuantizedWeight) { w.Scales[2] = 0 }), AmplifierRule{}, "scale [0, 2]"},
		{"NaN scale", bad(func(w *QuantizedWeight) { w.Scales[1] = float32(math.NaN()) }), AmplifierRule{}, "scale [0, 1]"},
		{"ragged", bad(func(w *QuantizedWeight) { w.GroupSize = 5 }), AmplifierRule{}, "tile"},
		{"short", bad(func(w *QuantizedWeight) { w.Q = w.Q[:11] }), AmplifierRule{}, "11 codes"},
		{"α too large", handWeight(), AmplifierRule{Log2Alpha: 15}, "log2 α = 15"},
		{"negative α", handWeight(), AmplifierRule{Log2Alpha: -1}, "log2 α = -1"},
		{"kind", handWeight(), AmplifierRule{Kind: 7}, "unknown kind"},
	} {
		if _, err := IntegerScales(c.w, c.rule); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

// TestValidateCatchesTampering: Validate recomputes the bound instead of trusting it.
func TestValidateCatchesTampering(t *testing.T) {
	for _, c := range []struct {
		name string
		f    func(*IntScaleWeight)
		want string
	}{
		{"bound", func(w *IntScaleWeight) { w.Bound[0]-- }, "recorded"},
		{"ŝ > α", func(w *IntScaleWeight) { w.IntScales[1] = 2000 }, "outside [1, α = 1024]"},
		{"ŝ = 0", func(w *IntScaleWeight) { w.IntScales[1] = 0 }, "outside"},
		{"α too large", func(w *IntScaleWeight) { w.Log2Alpha[0] = 15 }, "log2 α = 15"},
		{"channel scale", func(w *IntScaleWeight) { w.ChannelScale[0] = float32(math.Inf(1)) }, "channel scale"},
		{"lengths", func(w *IntScaleWeight) { w.Bound = nil }, "lengths"},
	} {
		iw, err := IntegerScales(handWeight(), AmplifierRule{})
		if err != nil {
			t.Fatal(err)
		}
		c.f(iw)
		if err := iw.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	// Integer scales inflated to α = 2¹⁴ on 256 codes of 7: 2032·16384·1792 ≫ 2³¹.
	qw := &QuantizedWeight{Out: 1, In: 256, GroupSize: 128, Q: make([]int8, 256), Scales: []float32{1, 1}}
	for k := range qw.Q {
		qw.Q[k] = 7
	}
	iw, err := IntegerScales(qw, AmplifierRule{})
	if err != nil {
		t.Fatal(err)
	}
	iw.Log2Alpha[0], iw.IntScales[0], iw.IntScales[1] = 14, 1<<14, 1<<14
	if err := iw.Validate(); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("inflated ŝ: err = %v, want an overflow", err)
	}
}

// WeightErrors gives the errors of the two dequantized weights computed the long way.
func TestWeightErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][3]int{{7, 256, 128}, {33, 384, 128}, {5, 172, 172}, {64, 1024, 64}} {
		out, in, g := sh[0], sh[1], sh[2]
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		qw, err := RTN(w, out, in, g, RTNOptions{})
		if err != nil {
			t.Fatal(err)
		}
		iw, err := IntegerScales(qw, AmplifierRule{})
		if err != nil {
			t.Fatal(err)
		}
		long := func(d []float32) float64 {
			var num, den float64
			for i, v := range w {
				e := float64(d[i]) - float64(v)
				num += e * e
				den += float64(v) * float64(v)
			}
			return math.Sqrt(num / den)
		}
		wantF, wantI := long(qw.Dequantize()), long(iw.Dequantize())
		gotF, gotI := WeightErrors(w, qw, iw)
		if math.Abs(gotF-wantF) > 1e-12*wantF || math.Abs(gotI-wantI) > 1e-12*wantI {
			t.Errorf("%v: errors %v, %v; dequantized: %v, %v", sh, gotF, gotI, wantF, wantI)
		}
		if f, i := WeightErrors(w, qw, nil); f != gotF || i != 0 {
			t.Errorf("%v: without integer scales: %v, %v", sh, f, i)
		}
		if g < in && wantI == wantF { // per channel, ŝ = α exactly
			t.Errorf("%v: the test cannot tell the two scales apart", sh)
		}
	}
}

// RTNIntScaleRows, fed by a row loader, gives RTNIntScale's weight and WeightErrors' errors
// bit for bit, and passes on the loader's error.
func TestRTNIntScaleRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sh := range [][3]int{{7, 256, 128}, {40, 384, 128}, {5, 172, 172}, {33, 1024, 64}} {
		out, in, g := sh[0], sh[1], sh[2]
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		w[3*in/2] = 0.5 // an outlier, so that amplifiers differ between channels
		for _, clip := range []bool{false, true} {
			opt := RTNOptions{ClipSearch: clip}
			want, err := RTNIntScale(w, out, in, g, opt, AmplifierRule{})
			if err != nil {
				t.Fatal(err)
			}
			wf, wi := WeightErrors(w, want.QuantizedWeight, want)
			got, gf, gi, err := RTNIntScaleRows(out, in, g, opt, AmplifierRule{}, func(dst []float32, r0, r1 int) error {
				copy(dst, w[r0*in:r1*in])
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Q, want.Q) || !slices.Equal(got.Scales, want.Scales) || !slices.Equal(got.IntScales, want.IntScales) ||
				!slices.Equal(got.Log2Alpha, want.Log2Alpha) || !slices.Equal(got.ChannelScale, want.ChannelScale) || !slices.Equal(got.Bound, want.Bound) {
				t.Errorf("%v clip %v: the weights differ", sh, clip)
			}
			if gf != wf || gi != wi {
				t.Errorf("%v clip %v: errors %v, %v; want %v, %v", sh, clip, gf, gi, wf, wi)
			}
		}
	}
	boom := errors.New("boom")
	_, _, _, err := RTNIntScaleRows(64, 128, 128, RTNOptions{}, AmplifierRule{}, func(dst []float32, r0, r1 int) error {
		if r0 >= 32 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("loader error: got %v", err)
	}
	_, _, _, err = RTNIntScaleRows(4, 128, 128, RTNOptions{}, AmplifierRule{}, func(dst []float32, r0, r1 int) error {
		dst[5] = float32(math.NaN())
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "[0, 5]") {
		t.Errorf("NaN weight: got %v", err)
	}
}

// RecomputeBounds (the loader's path) gives exactly the bounds IntegerScales recorded, and
// −1 for a channel that Validate must then reject.
func TestRecomputeBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 10; i++ {
		out, in, g := randShape(r)
		qw, err := RTN(randWeights(out*in, uint64(700+i)), out, in, g, RTNOptions{})
		if err != nil {
			t.Fatal(err)
		}
		iw, err := IntegerScales(qw, AmplifierRule{})
		if err != nil {
			t.Fatal(err)
		}
		want := append([]int64(nil), iw.Bound...)
		clear(iw.Bound)
		iw.RecomputeBounds()
		for c := range want {
			if iw.Bound[c] != want[c] {
				t.Fatalf("%d×%d channel %d: recomputed bound %d, IntegerScales %d", out, in, c, iw.Bound[c], want[c])
			}
		}
		if err := iw.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	iw, err := IntegerScales(handWeight(), AmplifierRule{})
	if err != nil {
		t.Fatal(err)
	}
	iw.Q[0] = 8 // outside the int4 range
	iw.RecomputeBounds()
	if iw.Bound[0] != -1 {
		t.Errorf("bad code: bound %d, want -1", iw.Bound[0])
	}
	if err := iw.Validate(); err == nil {
		t.Error("bad code: Validate accepted it")
	}
	var nilW *IntScaleWeight
	nilW.RecomputeBounds() // no panic
}
