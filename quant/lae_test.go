package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestLAEScaleHand: s = m / log2(2 + m) at points worked out by hand:
// m = 1: 1/log2 3 = 1/1.584962500721156 = 0.6309297535714575; m = 2: 2/log2 4 = 1;
// m = 6: 6/log2 8 = 2; m = 100: 100/log2 102 = 100/6.672425341971495 = 14.987054163194742;
// m = 0: the guard, 1 (the formula's 0 would zero the channel).
func TestLAEScaleHand(t *testing.T) {
	for _, c := range []struct {
		m    float32
		want float64
	}{{0, 1}, {1, 0.6309297535714575}, {2, 1}, {6, 2}, {100, 14.987054163194742}} {
		if got := LAEScale(c.m); got != float32(c.want) {
			t.Errorf("LAEScale(%v) = %v, want %v", c.m, got, float32(c.want))
		}
	}
	s := LAEScales([]float32{0, 1, 2, 6, 100})
	if s[0] != 1 || s[3] != 2 || len(s) != 5 {
		t.Errorf("LAEScales = %v", s)
	}
	// After equalization a channel's statistic is m/s = log2(2+m): 1000 → ≈ 9.97.
	if got := 1000 / LAEScale(1000); math.Abs(float64(got)-math.Log2(1002)) > 1e-5 {
		t.Errorf("1000/s = %v, want log2(1002)", got)
	}
	for _, m := range []float32{-1, float32(math.Inf(1)), float32(math.NaN())} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("LAEScale(%v) did not panic", m)
				}
			}()
			LAEScale(m)
		}()
		if CheckStat([]float32{1, m}) == nil {
			t.Errorf("CheckStat accepted %v", m)
		}
	}
	if CheckStat([]float32{0, 3, 1e30}) != nil {
		t.Error("CheckStat rejected valid statistics")
	}
}

// TestFoldPreservesProduct: with the producer's rows divided by s (x/s) and the consumer's
// columns multiplied by s, (x/s)·(W·s)ᵀ equals x·Wᵀ within 1e-5 relative.
func TestFoldPreservesProduct(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	const rows, in, out = 5, 64, 24
	// The producer is a norm weight (in = 1) acting on a normalised input h: x = h ⊙ γ.
	h := make([]float32, rows*in)
	for i := range h {
		h[i] = float32(r.NormFloat64())
	}
	gamma := make([]float32, in)
	stat := make([]float32, in)
	for j := range gamma {
		gamma[j] = float32(0.5 + r.Float64())
		if j%9 == 0 {
			gamma[j] *= 60 // outlier channels
		}
	}
	w := randWeights(out*in, 11)
	x := func(g []float32) []float32 {
		v := make([]float32, rows*in)
		for i := range v {
			v[i] = h[i] * g[i%in]
		}
		return v
	}
	x0 := x(gamma)
	for i, v := range x0 {
		stat[i%in] = max(stat[i%in], float32(math.Abs(float64(v))))
	}
	s := LAEScales(stat)
	g2 := append([]float32(nil), gamma...)
	FoldIntoProducerRows(g2, in, 1, s)
	w2 := append([]float32(nil), w...)
	FoldIntoConsumerColumns(w2, out, in, s)
	x1 := x(g2)
	for rr := 0; rr < rows; rr++ {
		for o := 0; o < out; o++ {
			var y0, y1, mag float64
			for k := 0; k < in; k++ {
				y0 += float64(x0[rr*in+k]) * float64(w[o*in+k])
				y1 += float64(x1[rr*in+k]) * float64(w2[o*in+k])
				mag += math.Abs(float64(x0[rr*in+k]) * float64(w[o*in+k]))
			}
			if math.Abs(y1-y0) > 1e-5*mag {
				t.Fatalf("row %d out %d: %g vs %g (Σ|terms| %g)", rr, o, y1, y0, mag)
			}
		}
	}
	// Equalization did shrink the range: max over channels of max|x/s| = log2(2 + max m).
	var before, after float32
	for i := range x0 {
		before = max(before, float32(math.Abs(float64(x0[i]))))
		after = max(after, float32(math.Abs(float64(x1[i]))))
	}
	if after >= before/4 {
		t.Errorf("range %v → %v: LAE did not equalize", before, after)
	}
}

// TestVOScalesHand: 4 query heads, 2 KV heads, head dim 2. Query heads 0 and 1 read KV head 0,
// heads 2 and 3 read KV head 1, so v channel (kv, d) takes the max over its two heads.
func TestVOScalesHand(t *testing.T) {
	stat := []float32{
		1, 5, // head 0
		3, 2, // head 1
		0, 0, // head 2
		7, 0.5, // head 3
	}
	m := GQAMaxOverGroup(stat, 4, 2, 2)
	wantM := []float32{3, 5, 7, 0.5}
	for i := range wantM {
		if m[i] != wantM[i] {
			t.Fatalf("GQAMaxOverGroup = %v, want %v", m, wantM)
		}
	}
	v, o := VOScales(stat, 4, 2, 2)
	wantV := LAEScales(wantM)
	wantO := []float32{wantV[0], wantV[1], wantV[0], wantV[1], wantV[2], wantV[3], wantV[2], wantV[3]}
	for i := range wantV {
		if v[i] != wantV[i] {
			t.Errorf("vScale[%d] = %v, want %v", i, v[i], wantV[i])
		}
	}
	for i := range wantO {
		if o[i] != wantO[i] {
			t.Errorf("oScale[%d] = %v, want %v", i, o[i], wantO[i])
		}
	}
	// Without GQA the map is the identity.
	v, o = VOScales(stat, 4, 4, 2)
	for i := range stat {
		if v[i] != LAEScale(stat[i]) || o[i] != v[i] {
			t.Errorf("MHA: channel %d: v %v, o %v", i, v[i], o[i])
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("VOScales accepted 4 heads over 3 KV heads")
			}
		}()
		VOScales(make([]float32, 8), 4, 3, 2)
	}()
}

// TestVOFoldThroughAttention folds the v → o scales into v_proj (rows and bias) and o_proj
// (columns) of a small GQA attention with fixed softmax weights and checks that the output
// is unchanged: the mapping sends each o_proj column the factor its v channel was divided by.
func TestVOFoldThroughAttention(t *testing.T) {
	const (
		T, hidden      = 4, 8
		heads, kvHeads = 6, 2
		hd             = 3
		perKV          = heads / kvHeads
		vDim, oIn      = kvHeads * hd, heads * hd
	)
	r := rand.New(rand.NewPCG(12, 12))
	randn := func(n int, s float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * s)
		}
		return v
	}
	x := randn(T*hidden, 1)
	wv, bv, wo := randn(vDim*hidden, 1), randn(vDim, 1), randn(hidden*oIn, 0.3)
	wv[4*hidden+2] *= 50 // an outlier v channel
	// Causal softmax weights per query head.
	p := make([]float64, heads*T*T)
	for h := 0; h < heads; h++ {
		for i := 0; i < T; i++ {
			var z float64
			for j := 0; j <= i; j++ {
				p[(h*T+i)*T+j] = math.Exp(r.NormFloat64())
				z += p[(h*T+i)*T+j]
			}
			for j := 0; j <= i; j++ {
				p[(h*T+i)*T+j] /= z
			}
		}
	}
	forward := func(wv, bv, wo []float32) (y []float64, oin []float64) {
		v := make([]float64, T*vDim)
		for t0 := 0; t0 < T; t0++ {
			for c := 0; c < vDim; c++ {
				s := float64(bv[c])
				for k := 0; k < hidden; k++ {
					s += float64(x[t0*hidden+k]) * float64(wv[c*hidden+k])
				}
				v[t0*vDim+c] = s
			}
		}
		oin = make([]float64, T*oIn)
		for h := 0; h < heads; h++ {
			kv := h / perKV
			for i := 0; i < T; i++ {
				for d := 0; d < hd; d++ {
					var s float64
					for j := 0; j <= i; j++ {
						s += p[(h*T+i)*T+j] * v[j*vDim+kv*hd+d]
					}
					oin[i*oIn+h*hd+d] = s
				}
			}
		}
		y = make([]float64, T*hidden)
		for i := 0; i < T; i++ {
			for o := 0; o < hidden; o++ {
				var s float64
				for k := 0; k < oIn; k++ {
					s += oin[i*oIn+k] * float64(wo[o*oIn+k])
				}
				y[i*hidden+o] = s
			}
		}
		return y, oin
	}
	y0, oin := forward(wv, bv, wo)
	stat := make([]float32, oIn)
	for i, v := range oin {
		stat[i%oIn] = max(stat[i%oIn], float32(math.Abs(v)))
	}
	vs, os := VOScales(stat, heads, kvHeads, hd)
	FoldIntoProducerRows(wv, vDim, hidden, vs)
	FoldIntoProducerRows(bv, vDim, 1, vs)
	FoldIntoConsumerColumns(wo, hidden, oIn, os)
	y1, oin1 := forward(wv, bv, wo)
	for i := range y0 {
		if math.Abs(y1[i]-y0[i]) > 1e-5*(1+math.Abs(y0[i])) {
			t.Fatalf("y[%d] = %g after folding, %g before", i, y1[i], y0[i])
		}
	}
	// Each equalized o_proj input channel is within log2(2 + m) of its v channel's statistic.
	for i, v := range oin1 {
		c := i % oIn
		m := GQAMaxOverGroup(stat, heads, kvHeads, hd)[(c/hd/perKV)*hd+c%hd]
		if math.Abs(v) > math.Log2(2+float64(m))*(1+1e-5) {
			t.Fatalf("o input %d: |%g| > log2(2 + %g)", i, v, m)
		}
	}
}
