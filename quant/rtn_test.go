package quant

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRTNHand checks a 2×8 weight in groups of 4 against codes and scales worked out by hand.
// The group maxima are 7·2^−n so the scales are exact and every quotient can be read off.
func TestRTNHand(t *testing.T) {
	w := []float32{
		// row 0, group 0: absmax 1.75 → scale 0.25; w/s = 7, −3.2, 1.2, 0
		1.75, -0.8, 0.3, 0,
		// row 0, group 1: absmax 3.5 → scale 0.5; w/s = 7, −2.5 (half away → −3), 1.5 (→ 2), −6
		3.5, -1.25, 0.75, -3,
		// row 1, group 0: all zero → scale 1 (SymScale's convention), codes 0
		0, 0, 0, 0,
		// row 1, group 1: absmax 0.875 → scale 0.125; w/s = −7, 3.5 (→ 4), 0, 1.75 (→ 2)
		-0.875, 0.4375, 0, 0.21875,
	}
	wantQ := []int8{7, -3, 1, 0, 7, -3, 2, -6, 0, 0, 0, 0, -7, 4, 0, 2}
	wantS := []float32{0.25, 0.5, 1, 0.125}
	for _, f := range []func([]float32, int, int, int, RTNOptions) (*QuantizedWeight, error){RTN, RTNRef} {
		qw, err := f(w, 2, 8, 4, RTNOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if qw.Out != 2 || qw.In != 8 || qw.GroupSize != 4 || qw.NumGroups() != 2 {
			t.Fatalf("shape %d×%d g%d", qw.Out, qw.In, qw.GroupSize)
		}
		for i := range wantQ {
			if qw.Q[i] != wantQ[i] {
				t.Errorf("Q[%d] = %d, want %d", i, qw.Q[i], wantQ[i])
			}
		}
		for i := range wantS {
			if qw.Scales[i] != wantS[i] {
				t.Errorf("Scales[%d] = %v, want %v", i, qw.Scales[i], wantS[i])
			}
		}
	}
}

func TestEffectiveGroupSize(t *testing.T) {
	for _, c := range []struct {
		in, req, g int
		fell       bool
	}{
		{4096, 128, 128, false},
		{11008, 128, 128, false},
		{172, 128, 172, true}, // stories260K's intermediate size
		{64, 128, 64, true},   // requested larger than the row
		{172, 43, 43, false},
		{256, 256, 256, false},
		{256, 0, 256, false}, // per-channel requested
		{256, -1, 256, false},
		{96, 64, 96, true},
	} {
		g, fell := EffectiveGroupSize(c.in, c.req)
		if g != c.g || fell != c.fell {
			t.Errorf("EffectiveGroupSize(%d, %d) = %d, %v; want %d, %v", c.in, c.req, g, fell, c.g, c.fell)
		}
	}
}

func TestRTNErrors(t *testing.T) {
	w := make([]float32, 4*12)
	for _, c := range []struct {
		name       string
		w          []float32
		out, in, g int
		opt        RTNOptions
		want       string
	}{
		{"group does not divide", w, 4, 12, 8, RTNOptions{}, "does not divide"},
		{"zero group", w, 4, 12, 0, RTNOptions{}, "does not divide"},
		{"length", w[:47], 4, 12, 4, RTNOptions{}, "47 elements"},
		{"shape", w, 0, 12, 4, RTNOptions{}, "bad shape"},
		{"clip 0", w, 4, 12, 4, RTNOptions{ClipSearch: true, ClipGrid: []float32{1, 0}}, "clip factor"},
		{"clip > 1", w, 4, 12, 4, RTNOptions{ClipSearch: true, ClipGrid: []float32{1.5}}, "clip factor"},
	} {
		for name, f := range map[string]func([]float32, int, int, int, RTNOptions) (*QuantizedWeight, error){"RTN": RTN, "RTNRef": RTNRef} {
			if _, err := f(c.w, c.out, c.in, c.g, c.opt); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s %s: err = %v, want %q", name, c.name, err, c.want)
			}
		}
	}
	// Non-finite weights name the first one in row-major order, whatever the scheduling.
	big := randWeights(64*256, 7)
	big[40*256+3] = float32(math.Inf(-1))
	big[50*256+9] = float32(math.NaN())
	for name, f := range map[string]func([]float32, int, int, int, RTNOptions) (*QuantizedWeight, error){"RTN": RTN, "RTNRef": RTNRef} {
		_, err := f(big, 64, 256, 128, RTNOptions{Workers: 4})
		if err == nil || !strings.Contains(err.Error(), "[40, 3]") {
			t.Errorf("%s: err = %v, want the weight [40, 3]", name, err)
		}
	}
	if _, err := RTNIntScale(big, 64, 256, 128, RTNOptions{}, AmplifierRule{}); err == nil || !strings.Contains(err.Error(), "[40, 3]") {
		t.Errorf("RTNIntScale: err = %v, want the weight [40, 3]", err)
	}
}

// randShape draws a small layer shape and a group size that divides it.
func randShape(r *rand.Rand) (out, in, g int) {
	out = 1 + r.IntN(40)
	g = []int{4, 8, 32, 64, 128}[r.IntN(5)]
	in = g * (1 + r.IntN(6))
	if r.IntN(4) == 0 {
		g = in // per-channel
	}
	return
}

// TestRTNMatchesRef holds the fast RTN bit-exact to the scalar reference on random layers,
// with and without the clipping search and for several worker counts.
func TestRTNMatchesRef(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for i := 0; i < 60; i++ {
		out, in, g := randShape(r)
		w := randWeights(out*in, uint64(i))
		// Exercise exact ties, zeros, a zero group and tiny values.
		for j := 0; j < 5; j++ {
			w[r.IntN(len(w))] = 0
		}
		copy(w[:g], make([]float32, g))
		w[r.IntN(len(w))] = 1e-30
		opt := RTNOptions{ClipSearch: i%2 == 1, Workers: 1 + i%3}
		if i%4 == 3 {
			opt.ClipGrid = []float32{0.9, 0.7, 1}
		}
		got, err := RTN(w, out, in, g, opt)
		if err != nil {
			t.Fatal(err)
		}
		want, err := RTNRef(w, out, in, g, opt)
		if err != nil {
			t.Fatal(err)
		}
		for j := range want.Q {
			if got.Q[j] != want.Q[j] {
				t.Fatalf("case %d (%d×%d g%d %+v): Q[%d] = %d, ref %d", i, out, in, g, opt, j, got.Q[j], want.Q[j])
			}
		}
		for j := range want.Scales {
			if math.Float32bits(got.Scales[j]) != math.Float32bits(want.Scales[j]) {
				t.Fatalf("case %d: Scales[%d] = %v, ref %v", i, j, got.Scales[j], want.Scales[j])
			}
		}
	}
}

// TestQuantizeGroupMatchesQuantizeValue checks the inlined rounding against QuantizeValue on
// values placed exactly on and one ulp around every rounding boundary.
func TestQuantizeGroupMatchesQuantizeValue(t *testing.T) {
	var w []float32
	for _, s := range []float32{1, 0.1, 0.0173, 3.3e-5} {
		for k := -8; k <= 8; k++ {
			v := (float32(k) + 0.5) * s
			w = append(w, v, math.Nextafter32(v, 0), math.Nextafter32(v, 10), math.Nextafter32(v, -10), -v)
		}
		q := make([]int8, len(w))
		quantizeGroup(w, q, s)
		for i, v := range w {
			if want := QuantizeValue(v, s); q[i] != want {
				t.Errorf("scale %v: w = %v: quantizeGroup %d, QuantizeValue %d", s, v, q[i], want)
			}
		}
		w = w[:0]
	}
	if q := make([]int8, 1); quantizeGroup([]float32{float32(math.Copysign(0, -1))}, q, 1) != 0 || q[0] != 0 {
		t.Errorf("−0 → %d", q[0])
	}
}

// TestRTNErrorBound: without clipping every weight is within half a step of its value
// (plus float rounding of w/s and of s·q).
func TestRTNErrorBound(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 20; i++ {
		out, in, g := randShape(r)
		w := randWeights(out*in, uint64(100+i))
		qw, err := RTN(w, out, in, g, RTNOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dq := qw.Dequantize()
		ng := qw.NumGroups()
		for j, v := range w {
			s := qw.Scales[j/in*ng+j%in/g]
			if e := math.Abs(float64(dq[j]) - float64(v)); e > float64(s)*(0.5+1e-6) {
				t.Fatalf("case %d: weight %d: |%v − %v| = %g > scale/2 = %g", i, j, dq[j], v, e, s/2)
			}
		}
	}
}

// TestClipSearchNeverWorse: the clipping search never increases a group's squared error over
// plain RTN, and on heavy-tailed weights it improves some groups.
func TestClipSearchNeverWorse(t *testing.T) {
	const out, in, g = 32, 512, 128
	w := randWeights(out*in, 5)
	plain, err := RTN(w, out, in, g, RTNOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clipped, err := RTN(w, out, in, g, RTNOptions{ClipSearch: true})
	if err != nil {
		t.Fatal(err)
	}
	improved := 0
	var sPlain, sClip float64
	for o := 0; o < out; o++ {
		for gi := 0; gi < in/g; gi++ {
			k0 := o*in + gi*g
			ep := GroupSSE(w[k0:k0+g], plain.Q[k0:k0+g], plain.Scales[o*in/g+gi])
			ec := GroupSSE(w[k0:k0+g], clipped.Q[k0:k0+g], clipped.Scales[o*in/g+gi])
			if ec > ep {
				t.Fatalf("row %d group %d: clipped SSE %g > plain %g", o, gi, ec, ep)
			}
			if ec < ep {
				improved++
			}
			sPlain += ep
			sClip += ec
		}
	}
	if improved == 0 {
		t.Error("the clipping search improved no group")
	}
	t.Logf("clip search: %d of %d groups improved; total SSE %.4g → %.4g (%.1f%%)", improved, out*in/g, sPlain, sClip, 100*(sClip/sPlain-1))
}

// TestRTNIntScaleFused: the fused path equals RTN followed by IntegerScales.
func TestRTNIntScaleFused(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for i := 0; i < 20; i++ {
		out, in, g := randShape(r)
		w := randWeights(out*in, uint64(200+i))
		opt := RTNOptions{ClipSearch: i%3 == 0, Workers: 1 + i%2}
		rule := AmplifierRule{Log2Alpha: []int{0, 6, 12}[i%3]}
		got, err := RTNIntScale(w, out, in, g, opt, rule)
		if err != nil {
			t.Fatal(err)
		}
		qw, err := RTN(w, out, in, g, opt)
		if err != nil {
			t.Fatal(err)
		}
		want, err := IntegerScales(qw, rule)
		if err != nil {
			t.Fatal(err)
		}
		sameIntScale(t, got, want)
	}
}

func sameIntScale(t *testing.T, got, want *IntScaleWeight) {
	t.Helper()
	if len(got.Q) != len(want.Q) || len(got.IntScales) != len(want.IntScales) {
		t.Fatal("shapes differ")
	}
	for j := range want.Q {
		if got.Q[j] != want.Q[j] {
			t.Fatalf("Q[%d] differs", j)
		}
	}
	for j := range want.Scales {
		if got.Scales[j] != want.Scales[j] || got.IntScales[j] != want.IntScales[j] {
			t.Fatalf("group %d: scale %v/%v, ŝ %d/%d", j, got.Scales[j], want.Scales[j], got.IntScales[j], want.IntScales[j])
		}
	}
	for c := range want.ChannelScale {
		if got.ChannelScale[c] != want.ChannelScale[c] || got.Log2Alpha[c] != want.Log2Alpha[c] || got.Bound[c] != want.Bound[c] {
			t.Fatalf("channel %d: %v/%v, log2 α %d/%d, bound %d/%d", c, got.ChannelScale[c], want.ChannelScale[c],
				got.Log2Alpha[c], want.Log2Alpha[c], got.Bound[c], want.Bound[c])
		}
	}
}
