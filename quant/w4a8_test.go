package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// handGEMMWeight: 2 channels × 4 inputs in groups of 2, with α = 8 fixed.
// Channel 0: scales 0.5, 0.25 → s_c = 0.5, ŝ = 8, 4. Channel 1: 0.125, 0.5 → s_c = 0.5, ŝ = 2, 8.
func handGEMMWeight(t *testing.T) *IntScaleWeight {
	qw := &QuantizedWeight{Out: 2, In: 4, GroupSize: 2,
		Q:      []int8{7, -3, 2, 1, -7, 0, 5, -1},
		Scales: []float32{0.5, 0.25, 0.125, 0.5}}
	iw, err := IntegerScales(qw, AmplifierRule{Kind: FixedAlpha, Log2Alpha: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int32{8, 4, 2, 8} {
		if iw.IntScales[i] != want {
			t.Fatalf("ŝ = %v", iw.IntScales)
		}
	}
	return iw
}

// TestW4A8GEMMHand works two rows through by hand (f_c = 0.5/(16·8) = 1/256 for both
// channels).
//
// Row 0, x = [10, −20, 3, 127], per-tensor scale 0.5:
//
//	c0: P'0 = 16·(70+60) = 2080, P'1 = 16·(6+127) = 2128, acc = 8·2080 + 4·2128 = 25152, y = 25152·0.5/256 = 49.125
//	c1: P'0 = 16·(−70) = −1120, P'1 = 16·(15−127) = −1792, acc = 2·(−1120) + 8·(−1792) = −16576, y = −32.375
//
// Row 1, x = [−127, 127, 0, 1], per-token scales 0.5 (row 0) and 0.25 (row 1):
//
//	c0: P'0 = 16·(−889−381) = −20320, P'1 = 16, acc = −162560 + 64 = −162496, y = −162496·0.25/256 = −158.6875
//	c1: P'0 = 16·889 = 14224, P'1 = −16, acc = 28448 − 128 = 28320, y = 27.65625
func TestW4A8GEMMHand(t *testing.T) {
	iw := handGEMMWeight(t)
	x := []int8{10, -20, 3, 127, -127, 127, 0, 1}
	want := []float32{49.125, -32.375, -158.6875, 27.65625}
	scales := []float32{0.5, 0.25}
	for name, f := range map[string]func([]int8, []float32, *IntScaleWeight, []float32){"ref": W4A8GEMMRef, "fast": W4A8GEMM} {
		y := make([]float32, 4)
		f(x, scales, iw, y)
		for i := range want {
			if y[i] != want[i] {
				t.Errorf("%s: y[%d] = %v, want %v", name, i, y[i], want[i])
			}
		}
		// Per-tensor: row 1 with scale 0.5 doubles.
		f(x, scales[:1], iw, y)
		if y[0] != 49.125 || y[2] != -317.375 || y[3] != 55.3125 {
			t.Errorf("%s: per-tensor y = %v", name, y)
		}
	}
	// The float-scale variant: the float scales equal the effective ones here.
	y := make([]float32, 4)
	W4A8GEMMFloatScaleRef(x, scales, iw.QuantizedWeight, y)
	for i := range want {
		if y[i] != want[i] {
			t.Errorf("float-scale: y[%d] = %v, want %v", i, y[i], want[i])
		}
	}
}

// randIntScaleWeight quantizes a random layer with the max-safe rule, so that many bounds
// sit just under 2³¹.
func randIntScaleWeight(t testing.TB, r *rand.Rand, out, in, g int, seed uint64) *IntScaleWeight {
	w := randWeights(out*in, seed)
	iw, err := RTNIntScale(w, out, in, g, RTNOptions{ClipSearch: seed%2 == 0}, AmplifierRule{Log2Alpha: 8 + r.IntN(7)})
	if err != nil {
		t.Fatal(err)
	}
	return iw
}

func randCodes(r *rand.Rand, n int) []int8 {
	x := make([]int8, n)
	for i := range x {
		x[i] = int8(r.IntN(255) - 127)
	}
	return x
}

// TestW4A8GEMMRefMatchesFloat: the reference equals the float computation with the
// effective scales, xs·Σ_k x_k·eff·q, up to float32 rounding; the float-scale variant equals
// the one with the float scales.
func TestW4A8GEMMRefMatchesFloat(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	for i := 0; i < 20; i++ {
		out, in, g := randShape(r)
		iw := randIntScaleWeight(t, r, out, in, g, uint64(400+i))
		m := 1 + r.IntN(5)
		x := randCodes(r, m*in)
		xs := make([]float32, m)
		for j := range xs {
			xs[j] = float32(0.01 + r.Float64())
		}
		y, yf := make([]float32, m*out), make([]float32, m*out)
		W4A8GEMMRef(x, xs, iw, y)
		W4A8GEMMFloatScaleRef(x, xs, iw.QuantizedWeight, yf)
		eff := iw.EffectiveScales()
		ng := iw.NumGroups()
		for rr := 0; rr < m; rr++ {
			for c := 0; c < out; c++ {
				var ye, ys, mag, mags float64
				for k := 0; k < in; k++ {
					q := float64(iw.Q[c*in+k])
					xv := float64(x[rr*in+k]) * float64(xs[rr])
					ye += xv * q * float64(eff[c*ng+k/g])
					ys += xv * q * float64(iw.Scales[c*ng+k/g])
					mag += math.Abs(xv * q * float64(eff[c*ng+k/g]))
					mags += math.Abs(xv * q * float64(iw.Scales[c*ng+k/g]))
				}
				if d := math.Abs(float64(y[rr*out+c]) - ye); d > 1e-6*mag+1e-30 {
					t.Fatalf("case %d [%d,%d]: ref %v, float %v (Σ|terms| %g)", i, rr, c, y[rr*out+c], ye, mag)
				}
				if d := math.Abs(float64(yf[rr*out+c]) - ys); d > 1e-6*float64(ng)*mags+1e-30 {
					t.Fatalf("case %d [%d,%d]: float-scale ref %v, float %v", i, rr, c, yf[rr*out+c], ys)
				}
			}
		}
	}
}

// TestW4A8GEMMFastMatchesRef holds the fast GEMM bit-exact to the reference on random shapes,
// on each channel's worst-case input (accumulators at the bound), and on a per-channel group
// wider than one exact float chunk.
func TestW4A8GEMMFastMatchesRef(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	check := func(name string, x []int8, xs []float32, iw *IntScaleWeight) {
		t.Helper()
		m := len(x) / iw.In
		y, yr := make([]float32, m*iw.Out), make([]float32, m*iw.Out)
		W4A8GEMM(x, xs, iw, y)
		W4A8GEMMRef(x, xs, iw, yr)
		for i := range yr {
			if math.Float32bits(y[i]) != math.Float32bits(yr[i]) {
				t.Fatalf("%s: y[%d] = %v, ref %v", name, i, y[i], yr[i])
			}
		}
	}
	for i := 0; i < 25; i++ {
		out, in, g := randShape(r)
		iw := randIntScaleWeight(t, r, out, in, g, uint64(500+i))
		m := 1 + r.IntN(70)
		xs := []float32{float32(r.Float64())}
		if i%2 == 1 {
			xs = make([]float32, m)
			for j := range xs {
				xs[j] = float32(r.Float64())
			}
		}
		check("random", randCodes(r, m*in), xs, iw)
		// Worst cases: row c drives channel c to +Bound[c].
		var x []int8
		for c := 0; c < out; c++ {
			wc, _ := worstCase(iw, c)
			x = append(x, wc...)
		}
		check("worst case", x, []float32{1}, iw)
	}
	// One per-channel group of 2·16384 + 100 inputs: summed in three exact pieces.
	const in = 2*exactChunk + 100
	iw := randIntScaleWeight(t, r, 3, in, in, 7)
	x := randCodes(r, 2*in)
	wc, _ := worstCase(iw, 1)
	copy(x[in:], wc)
	check("wide group", x, []float32{0.3, 0.7}, iw)
}

// TestQLinearMatchesRef holds QLinear.Forward bit-exact to FakeQuantLinearRef for every
// policy, with and without bias, and from concurrent callers.
func TestQLinearMatchesRef(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 15))
	for i := 0; i < 24; i++ {
		out, in, g := randShape(r)
		iw := randIntScaleWeight(t, r, out, in, g, uint64(600+i))
		rows := 1 + r.IntN(80)
		x := make([]float32, rows*in)
		for j := range x {
			x[j] = float32(r.NormFloat64())
			if r.IntN(50) == 0 {
				x[j] *= 40
			}
		}
		if i%6 == 0 {
			copy(x[:in], make([]float32, in)) // a zero row
		}
		act := ActQuant{Policy: ActPolicy(i % 3), Scale: ActScale(float32(2 + r.Float64()*30))}
		var bias []float32
		if i%4 == 1 {
			bias = make([]float32, out)
			for j := range bias {
				bias[j] = float32(r.NormFloat64())
			}
		}
		l, err := NewQLinear(iw, act, bias)
		if err != nil {
			t.Fatal(err)
		}
		if l.In() != in || l.Out() != out {
			t.Fatal("In/Out")
		}
		want := make([]float32, rows*out)
		FakeQuantLinearRef(x, rows, act, iw, bias, want)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rep := 0; rep < 2; rep++ {
					y := make([]float32, rows*out)
					l.Forward(y, x, rows)
					for j := range want {
						if math.Float32bits(y[j]) != math.Float32bits(want[j]) {
							t.Errorf("case %d (%v, %d×%d g%d, %d rows): y[%d] = %v, ref %v", i, act.Policy, out, in, g, rows, j, y[j], want[j])
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

func TestNewQLinearErrors(t *testing.T) {
	iw := handGEMMWeight(t)
	if _, err := NewQLinear(iw, ActQuant{Policy: StaticPerTensor}, nil); err == nil || !strings.Contains(err.Error(), "scale") {
		t.Errorf("zero static scale: %v", err)
	}
	if _, err := NewQLinear(iw, ActQuant{Policy: 7, Scale: 1}, nil); err == nil {
		t.Error("unknown policy accepted")
	}
	if _, err := NewQLinear(iw, ActQuant{Policy: DynamicPerToken}, make([]float32, 3)); err == nil || !strings.Contains(err.Error(), "bias") {
		t.Errorf("bias length: %v", err)
	}
	iw.Bound[0] = 1
	if _, err := NewQLinear(iw, ActQuant{Policy: DynamicPerToken}, nil); err == nil {
		t.Error("invalid weight accepted")
	}
}

// TestW4A8GEMMRefOverflowPanics: a weight whose integer scales were inflated behind
// IntegerScales's back overflows int32 on its worst input, and the reference's int64 shadow
// catches it.
func TestW4A8GEMMRefOverflowPanics(t *testing.T) {
	qw := &QuantizedWeight{Out: 1, In: 256, GroupSize: 128, Q: make([]int8, 256), Scales: []float32{1, 1}}
	for k := range qw.Q {
		qw.Q[k] = 7
	}
	iw, err := IntegerScales(qw, AmplifierRule{Log2Alpha: 8})
	if err != nil {
		t.Fatal(err)
	}
	iw.IntScales[0], iw.IntScales[1] = 1<<12, 1<<12 // B would be 2032·896·8192 ≈ 1.5·10¹⁰
	x, _ := worstCase(iw, 0)
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "int32 overflow") {
			t.Errorf("recovered %q, want an int32 overflow panic", msg)
		}
	}()
	W4A8GEMMRef(x, []float32{1}, iw, make([]float32, 1))
}

// TestQLinearTilesMatchRef holds QLinear.Forward bit-exact to FakeQuantLinearRef on shapes
// that span several of the engine's C tiles in both directions with ragged last tiles, per
// token and static, with a bias, and with one per-channel group wider than exactChunk (its
// pieces summed in int32 within every tile).
func TestQLinearTilesMatchRef(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 16))
	for i, sh := range [][4]int{
		{2*tileRows + 5, 2*tileCols + 7, 256, 128}, // rows, out, in, group
		{tileRows + 1, tileCols - 3, 192, 64},
		{tileRows + 2, tileCols + 1, exactChunk + 40, exactChunk + 40},
	} {
		rows, out, in, g := sh[0], sh[1], sh[2], sh[3]
		iw := randIntScaleWeight(t, r, out, in, g, uint64(700+i))
		x := make([]float32, rows*in)
		for j := range x {
			x[j] = float32(r.NormFloat64())
		}
		bias := make([]float32, out)
		for j := range bias {
			bias[j] = float32(r.NormFloat64())
		}
		for _, act := range []ActQuant{{Policy: DynamicPerToken}, {Policy: StaticPerTensor, Scale: ActScale(4)}} {
			l, err := NewQLinear(iw, act, bias)
			if err != nil {
				t.Fatal(err)
			}
			want, y := make([]float32, rows*out), make([]float32, rows*out)
			FakeQuantLinearRef(x, rows, act, iw, bias, want)
			l.Forward(y, x, rows)
			for j := range want {
				if math.Float32bits(y[j]) != math.Float32bits(want[j]) {
					t.Fatalf("%d×%d g%d, %d rows, %v: y[%d] = %v, ref %v", out, in, g, rows, act.Policy, j, y[j], want[j])
				}
			}
		}
	}
}

// TestCombineFloatMatchesGo holds combineFloat (the vector kernel where there is one) to
// combineFloatGo's bits on every length up to 40, with values that wrap int32 and
// conversions out of int32's range (NaN, ±Inf, ±3e9), for both the first and later groups.
func TestCombineFloatMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 17))
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 3e9, -3e9, 16777215, -16777216}
	for n := 0; n <= 40; n++ {
		for _, first := range []bool{true, false} {
			sg, tf, a := make([]int32, n), make([]float32, n), make([]int32, n)
			for i := range sg {
				sg[i] = int32(r.Uint32())
				tf[i] = float32(r.IntN(1<<25) - 1<<24)
				if r.IntN(5) == 0 {
					tf[i] = special[r.IntN(len(special))]
				}
				a[i] = int32(r.Uint32())
			}
			want := slices.Clone(a)
			combineFloatGo(want, sg, tf, first)
			combineFloat(a, sg, tf, first)
			if !slices.Equal(a, want) {
				t.Fatalf("n = %d, first = %v: %v, Go %v", n, first, a, want)
			}
		}
	}
}

// packIndex is the engine's packed layout (see packPanel), element by element.
func packIndex(r, j, rp, w, gs int) int {
	g0 := j / gs * gs
	j0 := g0 + (j-g0)/exactChunk*exactChunk
	kw := min(exactChunk, g0+gs-j0)
	return j0*rp + r/w*w*kw + (j-j0)*w + r%w
}

// TestPackPanelLayout checks packPanel against packIndex, for groups of 128 and for one
// group wider than exactChunk, every element landing where packIndex says and nothing else
// written.
func TestPackPanelLayout(t *testing.T) {
	for _, sh := range [][4]int{{3, 4, 384, 128}, {2, 6, exactChunk + 40, exactChunk + 40}} {
		panels, w, k, gs := sh[0], sh[1], sh[2], sh[3]
		rp := panels * w
		dst := make([]float32, rp*k)
		ld := panelLd(k)
		buf := make([]float32, w*ld)
		for p := range panels {
			for i := range w {
				for j := range k {
					buf[i*ld+j] = float32((p*w+i)*k + j + 1)
				}
			}
			packPanel(dst, buf, k, ld, p, rp, w, gs)
		}
		for r := range rp {
			for j := range k {
				if got, want := dst[packIndex(r, j, rp, w, gs)], float32(r*k+j+1); got != want {
					t.Fatalf("w %d k %d gs %d: element (%d, %d) = %v, want %v", w, k, gs, r, j, got, want)
				}
			}
		}
	}
}
