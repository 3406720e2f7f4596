package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

// testConfig is a small GQA model: 4 query heads over 2 key/value heads of width 8.
func testConfig() hf.Config {
	return hf.Config{
		ModelType: "llama", HiddenAct: "silu",
		HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 8, VocabSize: 50,
		MaxPositionEmbeddings: 128, RMSNormEps: 1e-5,
		Rope:       hf.Rope{Theta: 10000, Type: "default"},
		BOSTokenID: 0,
	}
}

func randVec(r *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64()) * scale
	}
	return v
}

// randomModel builds a model with random weights; bias adds q/k/v biases (Qwen2).
func randomModel(cfg hf.Config, seed uint64, bias bool) *Model {
	r := rand.New(rand.NewPCG(seed, 1))
	hid, inter := cfg.HiddenSize, cfg.IntermediateSize
	qd, kvd := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	lin := func(out, in int, withBias bool) *Dense {
		var b []float32
		if withBias {
			b = randVec(r, out, 0.1)
		}
		return NewDense(randVec(r, out*in, 1/float32(math.Sqrt(float64(in)))), b, out, in)
	}
	norm := func() []float32 {
		w := randVec(r, hid, 0.1)
		for i := range w {
			w[i] += 1
		}
		return w
	}
	m := &Model{Config: cfg, Embedding: randVec(r, cfg.VocabSize*hid, 1), FinalNorm: norm()}
	for i := 0; i < cfg.NumLayers; i++ {
		m.Layers = append(m.Layers, &Layer{
			Index: i, Config: &m.Config,
			AttnNorm: norm(), MLPNorm: norm(),
			Q: lin(qd, hid, bias), K: lin(kvd, hid, bias), V: lin(kvd, hid, bias), O: lin(hid, qd, false),
			Gate: lin(inter, hid, false), Up: lin(inter, hid, false), Down: lin(hid, inter, false),
		})
	}
	m.LMHead = lin(cfg.VocabSize, hid, false)
	return m
}

func randomWindows(seed uint64, n, L, vocab int) [][]int {
	r := rand.New(rand.NewPCG(seed, 2))
	w := make([][]int, n)
	for i := range w {
		w[i] = make([]int, L)
		for j := range w[i] {
			w[i][j] = r.IntN(vocab)
		}
	}
	return w
}

// refForward is a direct float64 transcription of Hugging Face's LlamaForCausalLM for one
// window, written independently of the package's blocked and parallel code.
func refForward(m *Model, tokens []int) [][]float64 {
	cfg := m.Config
	hid, nh, nkv, hd := cfg.HiddenSize, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
	L := len(tokens)
	inv, err := ropeInvFreq(cfg.Rope, hd)
	if err != nil {
		panic(err)
	}
	norm := func(x []float64, w []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+cfg.RMSNormEps)
		out := make([]float64, len(x))
		for i := range x {
			out[i] = x[i] * s * float64(w[i])
		}
		return out
	}
	linear := func(l Linear, x []float64) []float64 {
		d := l.(*Dense)
		out := make([]float64, d.out)
		for o := range out {
			var s float64
			for i := 0; i < d.in; i++ {
				s += float64(d.W[o*d.in+i]) * x[i]
			}
			if d.B != nil {
				s += float64(d.B[o])
			}
			out[o] = s
		}
		return out
	}
	rope := func(x []float64, heads, pos int) {
		half := hd / 2
		for h := 0; h < heads; h++ {
			v := x[h*hd : (h+1)*hd]
			for i := 0; i < half; i++ {
				a := float64(inv[i]) * float64(pos)
				c, s := math.Cos(a), math.Sin(a)
				x1, x2 := v[i], v[i+half]
				v[i] = x1*c - x2*s
				v[i+half] = x2*c + x1*s
			}
		}
	}
	h := make([][]float64, L)
	for t, tok := range tokens {
		h[t] = make([]float64, hid)
		for i := range h[t] {
			h[t][i] = float64(m.Embedding[tok*hid+i])
		}
	}
	for _, l := range m.Layers {
		q, k, v := make([][]float64, L), make([][]float64, L), make([][]float64, L)
		for t := range L {
			x := norm(h[t], l.AttnNorm)
			q[t], k[t], v[t] = linear(l.Q, x), linear(l.K, x), linear(l.V, x)
			rope(q[t], nh, t)
			rope(k[t], nkv, t)
		}
		for t := range L {
			att := make([]float64, nh*hd)
			for head := 0; head < nh; head++ {
				kvh := head / (nh / nkv)
				scores := make([]float64, t+1)
				mx := math.Inf(-1)
				for j := 0; j <= t; j++ {
					scores[j] = math.Inf(-1)
					if cfg.SlidingWindow > 0 && t-j >= cfg.SlidingWindow {
						continue
					}
					var s float64
					for i := 0; i < hd; i++ {
						s += q[t][head*hd+i] * k[j][kvh*hd+i]
					}
					scores[j] = s / math.Sqrt(float64(hd))
					mx = max(mx, scores[j])
				}
				var sum float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - mx)
					sum += scores[j]
				}
				for j := range scores {
					for i := 0; i < hd; i++ {
						att[head*hd+i] += scores[j] / sum * v[j][kvh*hd+i]
					}
				}
			}
			o := linear(l.O, att)
			for i := range h[t] {
				h[t][i] += o[i]
			}
		}
		for t := range L {
			x := norm(h[t], l.MLPNorm)
			g, u := linear(l.Gate, x), linear(l.Up, x)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := linear(l.Down, g)
			for i := range h[t] {
				h[t][i] += d[i]
			}
		}
	}
	logits := make([][]float64, L)
	for t := range L {
		logits[t] = linear(m.LMHead, norm(h[t], m.FinalNorm))
	}
	return logits
}

func maxAbsDiff(a []float32, b [][]float64) float64 {
	var d float64
	for t, row := range b {
		for i, v := range row {
			d = max(d, math.Abs(float64(a[t*len(row)+i])-v))
		}
	}
	return d
}

func TestForwardMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*hf.Config)
		bias   bool
		L      int
	}{
		{"llama", func(*hf.Config) {}, false, 70},
		{"qwen2-bias", func(c *hf.Config) { c.ModelType = "qwen2"; c.AttentionBias = true }, true, 20},
		{"mistral-window", func(c *hf.Config) { c.ModelType = "mistral"; c.SlidingWindow = 5 }, false, 70},
		{"window-across-blocks", func(c *hf.Config) { c.SlidingWindow = 66 }, false, 140},
		{"llama3-rope", func(c *hf.Config) {
			c.Rope = hf.Rope{Theta: 500000, Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}
		}, false, 40},
		{"mha-headdim16", func(c *hf.Config) { c.NumHeads, c.NumKVHeads, c.HeadDim = 2, 2, 16 }, false, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mutate(&cfg)
			if err := CheckConfig(&cfg); err != nil {
				t.Fatal(err)
			}
			m := randomModel(cfg, 7, tc.bias)
			win := randomWindows(3, 1, tc.L, cfg.VocabSize)
			got, err := m.Forward(win, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := refForward(m, win[0])
			if d := maxAbsDiff(got, want); d > 1e-4 {
				t.Errorf("max |logit - reference| = %g, want ≤ 1e-4", d)
			}
		})
	}
}

func TestBatchEqualsSingle(t *testing.T) {
	cfg := testConfig()
	m := randomModel(cfg, 11, false)
	wins := randomWindows(5, 3, 33, cfg.VocabSize)
	batch, err := m.Forward(wins, nil)
	if err != nil {
		t.Fatal(err)
	}
	per := 33 * cfg.VocabSize
	for i, w := range wins {
		one, err := m.Forward([][]int{w}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := range one {
			if d := math.Abs(float64(one[j] - batch[i*per+j])); d > 1e-5 {
				t.Fatalf("window %d logit %d: batch %g, alone %g", i, j, batch[i*per+j], one[j])
			}
		}
	}
}

// TestCausal checks the mask: a window's logits at positions < p do not depend on tokens at
// positions ≥ p.
func TestCausal(t *testing.T) {
	cfg := testConfig()
	m := randomModel(cfg, 13, false)
	a := randomWindows(1, 1, 90, cfg.VocabSize)[0]
	b := append([]int(nil), a...)
	const p = 70
	for i := p; i < len(b); i++ {
		b[i] = (b[i] + 1 + i) % cfg.VocabSize
	}
	la, _ := m.Forward([][]int{a}, nil)
	lb, _ := m.Forward([][]int{b}, nil)
	V := cfg.VocabSize
	for i := 0; i < p*V; i++ {
		if la[i] != lb[i] {
			t.Fatalf("position %d logit %d changed (%g vs %g) after changing tokens from %d on", i/V, i%V, la[i], lb[i], p)
		}
	}
	differ := false
	for i := p * V; i < len(la); i++ {
		differ = differ || la[i] != lb[i]
	}
	if !differ {
		t.Fatal("changing tokens did not change any later logit")
	}
	// The prefix alone gives the same logits as the prefix inside the longer window.
	lp, _ := m.Forward([][]int{a[:p]}, nil)
	for i := range lp {
		if d := math.Abs(float64(lp[i] - la[i])); d > 1e-5 {
			t.Fatalf("prefix logit %d: %g alone, %g in the longer window", i, lp[i], la[i])
		}
	}
}

func TestObserver(t *testing.T) {
	cfg := testConfig()
	m := randomModel(cfg, 17, false)
	wins := randomWindows(2, 2, 9, cfg.VocabSize)
	type call struct {
		layer   int
		kind    LinearKind
		rows, n int
	}
	var calls []call
	var firstQ []float32
	ctx := &Context{Observe: func(layer int, kind LinearKind, x []float32, rows, in int) {
		if len(x) != rows*in {
			t.Errorf("layer %d %v: len(x) = %d, want %d×%d", layer, kind, len(x), rows, in)
		}
		if layer == 0 && kind == Q {
			firstQ = append([]float32(nil), x...)
		}
		calls = append(calls, call{layer, kind, rows, in})
	}}
	if _, err := m.Forward(wins, ctx); err != nil {
		t.Fatal(err)
	}
	var want []call
	for l := range cfg.NumLayers {
		want = append(want, call{l, Q, 18, 32}, call{l, O, 18, 32}, call{l, Gate, 18, 32}, call{l, Down, 18, 48})
	}
	want = append(want, call{cfg.NumLayers, LMHead, 18, 32})
	if len(calls) != len(want) {
		t.Fatalf("observer calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d = %+v, want %+v", i, calls[i], want[i])
		}
	}
	// The first observed input is the normalised embedding of window 0 then window 1.
	h, _ := m.Embed(wins)
	RMSNorm(h, h, m.Layers[0].AttnNorm, 18, cfg.RMSNormEps)
	for i := range h {
		if h[i] != firstQ[i] {
			t.Fatalf("layer 0 q input element %d = %g, want %g", i, firstQ[i], h[i])
		}
	}
}

// scaled is a Linear that multiplies another one's output, standing in for a quantized one.
type scaled struct {
	Linear
	s float32
}

func (l scaled) Forward(y, x []float32, rows int) {
	l.Linear.Forward(y, x, rows)
	for i := range y[:rows*l.Out()] {
		y[i] *= l.s
	}
}

func TestSetLinear(t *testing.T) {
	cfg := testConfig()
	m := randomModel(cfg, 19, false)
	win := randomWindows(4, 1, 12, cfg.VocabSize)
	before, _ := m.Forward(win, nil)

	// Replacing with an equivalent implementation changes nothing.
	m.SetLinear(1, Down, scaled{m.Linear(1, Down), 1})
	same, _ := m.Forward(win, nil)
	for i := range same {
		if same[i] != before[i] {
			t.Fatalf("identity replacement changed logit %d", i)
		}
	}
	for _, k := range append(LayerKinds, LMHead) {
		m := randomModel(cfg, 19, false)
		m.SetLinear(1, k, scaled{m.Linear(1, k), 0.5})
		after, _ := m.Forward(win, nil)
		if maxAbsDiff(after, [][]float64{toF64(before)}) == 0 {
			t.Errorf("replacing %v did not change the logits", k)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("SetLinear with a wrong shape did not panic")
		}
	}()
	m.SetLinear(0, Q, m.Linear(0, Gate))
}

func toF64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func TestRMSNorm(t *testing.T) {
	x := []float32{1, 2, 3, 4, -2, 0, 0, 2}
	w := []float32{1, 0.5, 2, 1}
	dst := make([]float32, 8)
	RMSNorm(dst, x, w, 2, 1e-5)
	// Row 0: mean(x²) = 30/4 = 7.5; row 1: (4+0+0+4)/4 = 2.
	r0, r1 := 1/math.Sqrt(7.5+1e-5), 1/math.Sqrt(2+1e-5)
	want := []float64{1 * r0, 2 * r0 * 0.5, 3 * r0 * 2, 4 * r0, -2 * r1, 0, 0, 2 * r1}
	for i := range want {
		if d := math.Abs(float64(dst[i]) - want[i]); d > 1e-6 {
			t.Errorf("element %d = %g, want %g", i, dst[i], want[i])
		}
	}
}

// TestRopeLlama3 checks the llama3 rescaling of inv_freq against values computed with
// transformers' _compute_llama3_parameters formula for LLaMA-3.1's settings (theta 5e5,
// head_dim 128, factor 8, low 1, high 4, original context 8192): index 0 and 20 are high
// frequencies (kept), 29–34 are interpolated, 35 and 63 are low frequencies (divided by 8).
func TestRopeLlama3(t *testing.T) {
	r := hf.Rope{Theta: 500000, Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
	inv, err := ropeInvFreq(r, 128)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]float64{
		0:  1,
		20: 0.016560440080994446,
		29: 0.002166570763503359,
		32: 0.0005248461609929547,
		34: 0.00017850781276799638,
		35: 9.556212353964683e-05,
		63: 3.068925988914511e-07,
	}
	for i, w := range want {
		if d := math.Abs(float64(inv[i])-w) / w; d > 1e-6 {
			t.Errorf("inv_freq[%d] = %g, want %g (relative error %g)", i, inv[i], w, d)
		}
	}
	def, _ := ropeInvFreq(hf.Rope{Theta: 500000, Type: "default"}, 128)
	if d := math.Abs(float64(def[32])-0.001414213562373095) / 0.001414213562373095; d > 1e-6 {
		t.Errorf("default inv_freq[32] = %g, want 1/sqrt(5e5)", def[32])
	}
}

func TestCheckConfigRefuses(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*hf.Config)
		want   string
	}{
		{func(c *hf.Config) { c.Rope.Type = "yarn"; c.Rope.Factor = 4 }, "yarn"},
		{func(c *hf.Config) { c.Rope.Type = "dynamic" }, "dynamic"},
		{func(c *hf.Config) { c.ModelType = "mixtral"; c.NumLocalExperts = 8; c.NumExpertsPerTok = 2 }, "ixtral"},
		{func(c *hf.Config) { c.HiddenAct = "gelu" }, "gelu"},
		{func(c *hf.Config) { c.NumKVHeads = 3 }, "multiple"},
		{func(c *hf.Config) { c.HeadDim = 7 }, "even"},
	} {
		cfg := testConfig()
		tc.mutate(&cfg)
		err := CheckConfig(&cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckConfig(%+v) = %v, want an error mentioning %q", cfg, err, tc.want)
		}
	}
}

func TestEmbedRejectsBadTokens(t *testing.T) {
	m := randomModel(testConfig(), 1, false)
	if _, err := m.Forward([][]int{{1, 50}}, nil); err == nil || !strings.Contains(err.Error(), "vocabulary") {
		t.Errorf("token 50 of a 50-token vocabulary: err = %v", err)
	}
	if _, err := m.Forward([][]int{{1, 2}, {3}}, nil); err == nil {
		t.Error("unequal windows: no error")
	}
}

// TestExp32 checks the canonical exponential against math.Exp: within 1.5 float32 ulp
// (relative 1.8e-7) on [lo, hi] = [-87.33654, 88], and the documented clamps outside, where
// it returns e^lo ≈ 1.2e-38 (the true value is smaller) and e^88 (the true value is larger,
// or +Inf). Softmax and log-sum-exp only take x ≤ 0, SiLU's e^-x at x < -88 still gives
// silu(x) ≈ x/1.65e38, below 1e-36.
func TestExp32(t *testing.T) {
	lo, hi := exp32(expLo), exp32(expHi)
	worst := 0.0
	for x := float32(-110); x < 95; x += 0.0137 {
		got, want := float64(exp32(x)), math.Exp(float64(x))
		switch {
		case x < expLo:
			if got != float64(lo) {
				t.Fatalf("exp32(%g) = %g, want the clamp e^lo = %g", x, got, lo)
			}
			continue
		case x > expHi:
			if got != float64(hi) {
				t.Fatalf("exp32(%g) = %g, want the clamp e^88 = %g", x, got, hi)
			}
			continue
		}
		r := math.Abs(got-want) / want
		worst = max(worst, r)
		if r > 1.8e-7 {
			t.Fatalf("exp32(%g) = %g, want %g (relative error %g)", x, got, want, r)
		}
	}
	t.Logf("worst relative error %.3g", worst)
	if math.Abs(float64(lo)-math.Exp(float64(expLo)))/float64(lo) > 1.8e-7 || math.Abs(float64(hi)-math.Exp(88))/float64(hi) > 1.8e-7 {
		t.Errorf("clamp values e^lo = %g, e^88 = %g", lo, hi)
	}
}

func TestEachLogitsMatchesLogits(t *testing.T) {
	cfg := testConfig()
	m := randomModel(cfg, 23, false)
	wins := randomWindows(9, 2, 20, cfg.VocabSize)
	h, err := m.Hidden(wins, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := m.Logits(h, 40, nil)
	seen := 0
	m.EachLogits(h, 40, nil, func(row0, n int, logits []float32) {
		for i := range logits {
			if logits[i] != all[row0*cfg.VocabSize+i] {
				t.Fatalf("row %d: chunked logits differ", row0+i/cfg.VocabSize)
			}
		}
		seen += n
	})
	if seen != 40 {
		t.Errorf("EachLogits covered %d rows, want 40", seen)
	}
}
