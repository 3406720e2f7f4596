package calib

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/corpus"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
)

func seqTokens(n int) []int {
	t := make([]int, n)
	for i := range t {
		t[i] = 10 + i
	}
	return t
}

func TestTextWindowsDeterministic(t *testing.T) {
	toks := seqTokens(5000)
	a, err := TextWindows(toks, 1, 16, 64, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := TextWindows(toks, 1, 16, 64, 7)
	c, _ := TextWindows(toks, 1, 16, 64, 8)
	if !equalWindows(a, b) {
		t.Fatal("same seed gave different windows")
	}
	if equalWindows(a, c) {
		t.Fatal("different seeds gave the same windows")
	}
	seen := map[int]bool{}
	for _, w := range a {
		if len(w) != 64 || w[0] != 1 {
			t.Fatalf("window %v: want 64 tokens starting with BOS 1", w[:4])
		}
		for i := 2; i < len(w); i++ {
			if w[i] != w[i-1]+1 {
				t.Fatal("window body is not a contiguous slice of the text")
			}
		}
		for _, x := range w[1:] {
			if seen[x] {
				t.Fatalf("token %d used by two windows", x)
			}
			seen[x] = true
		}
	}
}

func TestTextWindowsTooShort(t *testing.T) {
	_, err := TextWindows(seqTokens(1000), 1, 16, 64, 0)
	if !errors.Is(err, ErrTextTooShort) {
		t.Fatalf("err = %v, want ErrTextTooShort", err)
	}
	for _, want := range []string{"calibration text shorter than requested", "1000 tokens", "1008"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Exactly enough tokens works.
	if _, err := TextWindows(seqTokens(16*63), 1, 16, 64, 3); err != nil {
		t.Fatal(err)
	}
}

func equalWindows(a, b [][]int) bool {
	return slices.EqualFunc(a, b, func(x, y []int) bool { return slices.Equal(x, y) })
}

func randMatrix(r *rand.Rand, rows, in int) []float32 {
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(r.NormFloat64())
		if i%in == 3 {
			x[i] *= 40 // an outlier channel
		}
	}
	return x
}

// TestStatsDirect checks every statistic against a direct float64 computation, with the
// rows fed in uneven pieces.
func TestStatsDirect(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const rows, in = 300, 24
	x := randMatrix(r, rows, in)
	s := NewStats(in, true)
	for _, part := range [][2]int{{0, 1}, {1, 130}, {130, 300}} {
		s.Add(x[part[0]*in:part[1]*in], part[1]-part[0])
	}
	checkStats(t, s, x, rows, in, 1e-5)
}

// TestStatsWideHessian checks XᵀX of an input wider than the blocks Add computes it in
// (xtxBlockRows), with a ragged last block, against the naive sums; and that TakeHessian
// gives Hessian's numbers and leaves no Hessian behind.
func TestStatsWideHessian(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	rows, in := 5, 2*xtxBlockRows+37
	x := randMatrix(r, rows, in)
	s := NewStats(in, true)
	s.Add(x[:2*in], 2)
	s.Add(x[2*in:], rows-2)
	checkStats(t, s, x, rows, in, 1e-5)
	want := s.Hessian()
	if got := s.TakeHessian(); !slices.Equal(got, want) {
		t.Error("TakeHessian differs from Hessian")
	}
	if s.HasHessian() || s.Hessian() != nil || s.TakeHessian() != nil {
		t.Error("the Hessian is still there after TakeHessian")
	}
}

func checkStats(t *testing.T, s *Stats, x []float32, rows, in int, tol float64) {
	t.Helper()
	if s.Rows != int64(rows) {
		t.Fatalf("Rows = %d, want %d", s.Rows, rows)
	}
	var tensor float32
	var tokSum float64
	tokMin := float32(math.Inf(1))
	for r := range rows {
		var tm float32
		for j := range in {
			tm = max(tm, abs32(x[r*in+j]))
		}
		tokSum += float64(tm)
		tokMin = min(tokMin, tm)
		tensor = max(tensor, tm)
	}
	for j := range in {
		mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
		for r := range rows {
			mn, mx = min(mn, x[r*in+j]), max(mx, x[r*in+j])
		}
		var sq float64
		for r := range rows {
			sq += float64(x[r*in+j]) * float64(x[r*in+j])
		}
		if math.Abs(s.SumSq[j]-sq) > 1e-12*sq {
			t.Fatalf("channel %d: SumSq %v, want %v", j, s.SumSq[j], sq)
		}
		if s.Min[j] != mn || s.Max[j] != mx || s.AbsMax[j] != max(-mn, mx) {
			t.Fatalf("channel %d: min/max/absmax %v %v %v, want %v %v %v", j, s.Min[j], s.Max[j], s.AbsMax[j], mn, mx, max(-mn, mx))
		}
	}
	if s.TensorAbsMax != tensor || s.TokenAbsMaxMin != tokMin || math.Abs(s.TokenAbsMaxMean-tokSum/float64(rows)) > 1e-9*tokSum {
		t.Fatalf("tensor/token stats %v %v %v, want %v %v %v", s.TensorAbsMax, s.TokenAbsMaxMin, s.TokenAbsMaxMean, tensor, tokMin, tokSum/float64(rows))
	}
	h := s.Hessian()
	for i := range in {
		for j := range in {
			var want float64
			for r := range rows {
				want += float64(x[r*in+i]) * float64(x[r*in+j])
			}
			want *= 2 / float64(rows)
			scale := math.Sqrt(naiveDiag(x, rows, in, i) * naiveDiag(x, rows, in, j))
			if d := math.Abs(h[i*in+j] - want); d > tol*scale {
				t.Fatalf("H[%d,%d] = %v, want %v (|diff| %.3g, scale %.3g)", i, j, h[i*in+j], want, d, scale)
			}
		}
	}
}

func naiveDiag(x []float32, rows, in, j int) float64 {
	var s float64
	for r := range rows {
		s += float64(x[r*in+j]) * float64(x[r*in+j])
	}
	return 2 * s / float64(rows)
}

// TestStatsScale checks that Scale gives the statistics of x_j/d_j.
func TestStatsScale(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const rows, in = 200, 16
	x := randMatrix(r, rows, in)
	d := make([]float32, in)
	for j := range d {
		d[j] = float32(0.25 + 4*r.Float64())
	}
	s := NewStats(in, true)
	s.Add(x, rows)
	s.Scale(d)
	xs := slices.Clone(x)
	for i := range xs {
		xs[i] /= d[i%in]
	}
	want := NewStats(in, true)
	want.Add(xs, rows)
	for j := range in {
		if s.AbsMax[j] != want.AbsMax[j] || s.Min[j] != want.Min[j] || s.Max[j] != want.Max[j] {
			t.Fatalf("channel %d: scaled stats %v %v %v, direct %v %v %v", j, s.Min[j], s.Max[j], s.AbsMax[j], want.Min[j], want.Max[j], want.AbsMax[j])
		}
	}
	for j := range in {
		if math.Abs(s.SumSq[j]-want.SumSq[j]) > 1e-5*want.SumSq[j] {
			t.Fatalf("channel %d: scaled SumSq %v, direct %v", j, s.SumSq[j], want.SumSq[j])
		}
	}
	if s.TensorAbsMax != want.TensorAbsMax || !s.Rescaled {
		t.Fatalf("tensor absmax %v (rescaled %v), want %v", s.TensorAbsMax, s.Rescaled, want.TensorAbsMax)
	}
	hs, hw := s.Hessian(), want.Hessian()
	for i := range hs {
		if math.Abs(hs[i]-hw[i]) > 1e-5*math.Sqrt(hw[i/in*in+i/in]*hw[i%in*in+i%in]) {
			t.Fatalf("H[%d] = %v, direct %v", i, hs[i], hw[i])
		}
	}
}

func loadTiny(t testing.TB) (*hf.Model, *tokenizer.Tokenizer) {
	t.Helper()
	hm, err := hf.Load(sharedtest.Testdata("tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hm.Close() })
	tok, err := tokenizer.Load(hm.TokenizerPath)
	if err != nil {
		t.Fatal(err)
	}
	return hm, tok
}

func sampleWindows(t testing.TB, tok *tokenizer.Tokenizer, n, L int) [][]int {
	t.Helper()
	text, err := corpus.LoadText(sharedtest.Testdata("text/sample.txt"), "text")
	if err != nil {
		t.Fatal(err)
	}
	w, err := TextWindows(tok.Encode(text, false), 0, n, L, 1)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestPassMatchesForward checks that the layer-by-layer pass (one layer resident, windows in
// chunks) sees the same inputs as the whole model's forward pass observed directly.
func TestPassMatchesForward(t *testing.T) {
	hm, tok := loadTiny(t)
	windows := sampleWindows(t, tok, 6, 96)
	all := func(int, model.LinearKind) bool { return true }
	got, mem, err := CollectAll(context.Background(), hm, windows, Options{ChunkRows: 2 * 96}, all, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(hm)
	if err != nil {
		t.Fatal(err)
	}
	col := &Collector{Hessian: all}
	if _, err := m.Hidden(windows, &model.Context{Observe: col.Observe}); err != nil {
		t.Fatal(err)
	}
	for i := range m.Layers {
		want := col.Layer(i)
		for _, k := range InputKinds() {
			g, w := got[i].For(k), want.For(k)
			for j := range g.SumSq {
				if math.Abs(g.SumSq[j]-w.SumSq[j]) > 1e-9*w.SumSq[j] {
					t.Fatalf("layer %d %v: SumSq[%d] %v, whole-model pass %v", i, k, j, g.SumSq[j], w.SumSq[j])
				}
			}
			if !slices.Equal(g.AbsMax, w.AbsMax) || !slices.Equal(g.Min, w.Min) || g.TensorAbsMax != w.TensorAbsMax ||
				math.Abs(g.TokenAbsMaxMean-w.TokenAbsMaxMean) > 1e-9*w.TokenAbsMaxMean || g.Rows != w.Rows {
				t.Fatalf("layer %d %v: statistics differ from the whole-model pass", i, k)
			}
			hg, hw := g.Hessian(), w.Hessian()
			in := g.In
			for j := range hg {
				if d := math.Abs(hg[j] - hw[j]); d > 1e-5*math.Sqrt(hw[j/in*(in+1)]*hw[j%in*(in+1)]) {
					t.Fatalf("layer %d %v: H[%d] = %v, whole-model pass %v", i, k, j, hg[j], hw[j])
				}
			}
		}
	}
	if mem.PeakHeapInuse == 0 || mem.ActivationBytes != int64(6*96*256*4) || mem.PeakLayerBytes == 0 {
		t.Errorf("memory stats %+v", mem)
	}
}

// TestDecoderMatchesForward checks the incremental decoder against the full forward pass.
func TestDecoderMatchesForward(t *testing.T) {
	hm, tok := loadTiny(t)
	m, err := model.Load(hm)
	if err != nil {
		t.Fatal(err)
	}
	windows := sampleWindows(t, tok, 3, 40)
	want, err := m.Forward(windows, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDecoder(m, 3, 40)
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.VocabSize()
	toks := make([]int, 3)
	var worst float64
	for pos := range 40 {
		for i := range toks {
			toks[i] = windows[i][pos]
		}
		got := d.step(toks, pos)
		for i := range toks {
			g := got[i*vocab : (i+1)*vocab]
			w := want[(i*40+pos)*vocab : (i*40+pos+1)*vocab]
			var num, den float64
			for j := range g {
				num += float64(g[j]-w[j]) * float64(g[j]-w[j])
				den += float64(w[j]) * float64(w[j])
			}
			worst = max(worst, math.Sqrt(num/den))
		}
	}
	if worst > 1e-5 {
		t.Fatalf("decoder logits differ from Forward by %.3g relative", worst)
	}
}

func TestSampleWindowsDeterministic(t *testing.T) {
	hm, _ := loadTiny(t)
	m, err := model.Load(hm)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opt := SampleOptions{Samples: 4, SeqLen: 24, Seed: 5}
	a, err := SampleWindows(ctx, m, 0, opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.Batch = 3 // batching must not change the windows
	b, err := SampleWindows(ctx, m, 0, opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.Seed = 6
	c, err := SampleWindows(ctx, m, 0, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !equalWindows(a, b) {
		t.Fatalf("same seed, other batching: windows differ\n%v\n%v", a, b)
	}
	if equalWindows(a, c) {
		t.Fatal("different seeds gave the same windows")
	}
	for _, w := range a {
		if w[0] != 0 {
			t.Fatal("window does not start with BOS")
		}
	}
}

func TestLoadWindows(t *testing.T) {
	hm, tok := loadTiny(t)
	ctx := context.Background()
	path := sharedtest.Testdata("text/sample.txt")
	a, err := LoadWindows(ctx, hm, tok, Options{Source: path, Samples: 4, SeqLen: 64, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 4 || len(a[0]) != 64 || a[0][0] != 0 {
		t.Fatalf("got %d windows of %d tokens", len(a), len(a[0]))
	}
	_, err = LoadWindows(ctx, hm, tok, Options{Source: path, Samples: 128, SeqLen: 512}, nil)
	if !errors.Is(err, ErrTextTooShort) || !strings.Contains(err.Error(), "sample.txt") {
		t.Fatalf("err = %v, want ErrTextTooShort naming the file", err)
	}
	// JSON lines: the same text as one "text" field gives the same windows.
	dir := t.TempDir()
	text, _ := os.ReadFile(path)
	js := `{"text": ` + quoteJSON(string(text)) + "}\n"
	jp := filepath.Join(dir, "c.jsonl")
	if err := os.WriteFile(jp, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := LoadWindows(ctx, hm, tok, Options{Source: jp, Samples: 4, SeqLen: 64, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equalWindows(a, b) {
		t.Fatal("jsonl source gave other windows than the same text")
	}
	if _, err := LoadWindows(ctx, hm, tok, Options{Source: path, SeqLen: 4096}, nil); err == nil {
		t.Fatal("window beyond max_position_embeddings accepted")
	}
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestOptionsResolved(t *testing.T) {
	o, err := Options{}.Resolved()
	if err != nil {
		t.Fatal(err)
	}
	if o.Source != SourceSelf || o.Samples != DefaultSelfSamples || o.SeqLen != DefaultSelfSeqLen || o.Propagate != PropagateQuantized {
		t.Fatalf("defaults %+v", o)
	}
	o, _ = Options{Source: "x.jsonl"}.Resolved()
	if o.Format != "jsonl" || o.Samples != DefaultSamples || o.SeqLen != DefaultSeqLen {
		t.Fatalf("text defaults %+v", o)
	}
	for _, bad := range []Options{{Samples: -1}, {SeqLen: 1}, {Propagate: "x"}, {Temperature: -1}, {Source: "a", Format: "csv"}} {
		if _, err := bad.Resolved(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestNewPassRejectsBadWindows(t *testing.T) {
	hm, _ := loadTiny(t)
	for name, w := range map[string][][]int{
		"empty":        nil,
		"unequal":      {{0, 1, 2}, {0, 1}},
		"out of vocab": {{0, 4096}},
		"too long":     {make([]int, 1025)},
		"negative id":  {{0, -1}},
	} {
		if _, err := NewPass(hm, w, Options{}); err == nil {
			t.Errorf("%s windows accepted", name)
		}
	}
}

// Statistics are bit-identical whatever GOMAXPROCS is: rows are summed in fixed blocks and
// the blocks reduced in order, so SumSq and TokenAbsMaxMean do not change in the last bits
// with the core count (they reach the artifact: act-aware clipping, odyssey.json). The
// values span many exponents, so that the order of float64 sums matters.
func TestStatsGOMAXPROCSIndependent(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(7, 8))
	const rows, in = 1000, 16
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Exp2(float64(r.IntN(40)-20)))
	}
	collect := func(procs int) *Stats {
		runtime.GOMAXPROCS(procs)
		s := NewStats(in, false)
		s.Add(x[:700*in], 700)
		s.Add(x[700*in:], rows-700)
		return s
	}
	want := collect(1)
	for _, procs := range []int{2, 3, 8} {
		got := collect(procs)
		for j := range in {
			if math.Float64bits(got.SumSq[j]) != math.Float64bits(want.SumSq[j]) || got.Min[j] != want.Min[j] || got.Max[j] != want.Max[j] {
				t.Errorf("GOMAXPROCS=%d: channel %d: SumSq %v min %v max %v, at 1: %v %v %v", procs, j, got.SumSq[j], got.Min[j], got.Max[j], want.SumSq[j], want.Min[j], want.Max[j])
			}
		}
		if math.Float64bits(got.TokenAbsMaxMean) != math.Float64bits(want.TokenAbsMaxMean) || got.TokenAbsMaxMin != want.TokenAbsMaxMin || got.TensorAbsMax != want.TensorAbsMax {
			t.Errorf("GOMAXPROCS=%d: token stats %v %v %v, at 1: %v %v %v", procs, got.TokenAbsMaxMean, got.TokenAbsMaxMin, got.TensorAbsMax, want.TokenAbsMaxMean, want.TokenAbsMaxMin, want.TensorAbsMax)
		}
	}
}

// TestPass16BitStream checks the fp16 residual stream: after a layer, the stored stream is
// the float32 pass's output rounded to fp16 (safetensors' scalar conversion as the
// reference), it takes half the memory, and the statistics of the next layer stay close to
// the float32 pass's. Three chunks of two windows.
func TestPass16BitStream(t *testing.T) {
	hm, tok := loadTiny(t)
	windows := sampleWindows(t, tok, 6, 96)
	all := func(model.LinearKind) bool { return true }
	pass := func(bits int) *Pass {
		p, err := NewPass(hm, windows, Options{ChunkRows: 2 * 96, StreamBits: bits})
		if err != nil {
			t.Fatal(err)
		}
		if p.StreamBits() != bits {
			t.Fatalf("StreamBits %d, want %d", p.StreamBits(), bits)
		}
		return p
	}
	p32, p16 := pass(32), pass(16)
	if a, b := p32.Mem().ActivationBytes, p16.Mem().ActivationBytes; a != int64(6*96*256*4) || b != a/2 {
		t.Errorf("activation bytes %d (float32) and %d (fp16)", a, b)
	}
	for i := 0; i < 2; i++ {
		l32, err := p32.Layer(i)
		if err != nil {
			t.Fatal(err)
		}
		l16, _ := p16.Layer(i)
		s32, err := p32.CollectAdvance(context.Background(), l32, all)
		if err != nil {
			t.Fatal(err)
		}
		s16, err := p16.CollectAdvance(context.Background(), l16, all)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range InputKinds() {
			a, b := s32.For(k), s16.For(k)
			if i == 0 && (!slices.Equal(a.AbsMax, b.AbsMax) || !slices.Equal(a.SumSq, b.SumSq)) {
				// The embedding is fp16 in the checkpoint: storing it in fp16 is exact.
				t.Fatalf("layer 0 %v: statistics differ with an fp16 stream", k)
			}
			if d := math.Abs(float64(a.TensorAbsMax-b.TensorAbsMax)) / float64(a.TensorAbsMax); d > 2e-3 {
				t.Errorf("layer %d %v: max|x| %v with fp16 stream, %v with float32 (%.2g relative)", i, k, b.TensorAbsMax, a.TensorAbsMax, d)
			}
		}
		if i == 0 {
			h32, h16 := p32.Hidden(), p16.Hidden()
			for j, v := range h32 {
				if want := safetensors.HalfToFloat32(safetensors.Float32ToHalf(v)); h16[j] != want {
					t.Fatalf("stream[%d] = %v, want %v (the float32 pass's %v in fp16)", j, h16[j], want, v)
				}
			}
		}
	}
	if p, err := NewPass(hm, windows, Options{}); err != nil || p.StreamBits() != 32 {
		t.Errorf("a %d-byte stream is stored in %d bits by default, want 32 (err %v)", 6*96*256*4, p.StreamBits(), err)
	}
	if _, err := NewPass(hm, windows, Options{StreamBits: 8}); err == nil {
		t.Error("StreamBits 8 accepted")
	}
}

// TestStreamChunkRange checks that a chunk holding a value beyond fp16's range stays in
// float32, exactly, and one within it goes to fp16.
func TestStreamChunkRange(t *testing.T) {
	for _, c := range []struct {
		big  float32
		fp16 bool
	}{{65000, true}, {-65503, true}, {65504, false}, {70000, false}, {-1e6, false}} {
		h := []float32{0.1, -3.25, c.big, 1e-3}
		var sc streamChunk
		sc.store(h, 16)
		if (sc.f16 != nil) != c.fp16 {
			t.Errorf("max |x| %v: stored in fp16 %v, want %v", c.big, sc.f16 != nil, c.fp16)
		}
		got := make([]float32, len(h))
		sc.load(got)
		for j, v := range h {
			want := v
			if c.fp16 {
				want = safetensors.HalfToFloat32(safetensors.Float32ToHalf(v))
			}
			if got[j] != want {
				t.Errorf("max |x| %v: value %d loads as %v, want %v", c.big, j, got[j], want)
			}
		}
	}
}

// fullXTXStats returns empty statistics that accumulate the full XᵀX matrix, as Add did
// before it kept the upper triangle alone: the reference the triangle must match bit for bit.
func fullXTXStats(in int) *Stats {
	s := NewStats(in, true)
	s.xtx, s.xtxPacked = make([]float64, in*in), false
	return s
}

// TestXTXTriangleBitIdentical: the packed upper triangle of XᵀX that Add accumulates, and
// every Hessian made from it (Hessian, TakeHessian, XTX, after Scale and Merge), are
// bit-identical to the full-matrix path's, for widths of one block, of several blocks with
// a ragged last one, and at the real block size; chunks longer than gemm's K block (kc) and
// ragged gemm tiles included. This is what keeps artifacts byte-identical (issue 10).
func TestXTXTriangleBitIdentical(t *testing.T) {
	defer func(b int) { xtxBlockRows = b }(xtxBlockRows)
	cases := []struct{ in, block, rows int }{
		{24, 1024, 300}, {37, 16, 131}, {200, 48, 900}, {257, 64, 70},
	}
	if !testing.Short() {
		cases = append(cases, struct{ in, block, rows int }{1100, 1024, 450})
	}
	for _, c := range cases {
		xtxBlockRows = c.block
		r := rand.New(rand.NewPCG(uint64(c.in), uint64(c.rows)))
		x := randMatrix(r, c.rows, c.in)
		tri, full := NewStats(c.in, true), fullXTXStats(c.in)
		tri2, full2 := NewStats(c.in, true), fullXTXStats(c.in)
		cut := c.rows / 3
		for _, s := range []*Stats{tri, full} {
			s.Add(x[:cut*c.in], cut)
			s.Add(x[cut*c.in:], c.rows-cut)
		}
		for _, s := range []*Stats{tri2, full2} {
			s.Add(x[:cut*c.in], cut)
		}
		if !tri.xtxPacked || len(tri.xtx) != c.in*(c.in+1)/2 {
			t.Fatalf("in %d: XᵀX not packed (%d values)", c.in, len(tri.xtx))
		}
		name := fmt.Sprintf("in %d, block %d, rows %d", c.in, c.block, c.rows)
		for i := range c.in {
			for j := i; j < c.in; j++ {
				if g, w := tri.xtx[triOffset(c.in, i)+j-i], full.xtx[i*c.in+j]; math.Float64bits(g) != math.Float64bits(w) {
					t.Fatalf("%s: XᵀX[%d,%d] = %v, full path %v", name, i, j, g, w)
				}
			}
		}
		same := func(what string, g, w []float64) {
			t.Helper()
			if len(g) != len(w) {
				t.Fatalf("%s: %s: %d values, want %d", name, what, len(g), len(w))
			}
			for k := range g {
				if math.Float64bits(g[k]) != math.Float64bits(w[k]) {
					t.Fatalf("%s: %s[%d,%d] = %v, full path %v", name, what, k/c.in, k%c.in, g[k], w[k])
				}
			}
		}
		same("Hessian", tri.Hessian(), full.Hessian())
		d := make([]float32, c.in)
		for j := range d {
			d[j] = 0.25 + r.Float32()*4
		}
		tri.Scale(d)
		full.Scale(d)
		same("Hessian after Scale", tri.Hessian(), full.Hessian())
		tri.Merge(tri2)
		full.Merge(full2)
		same("Hessian after Merge", tri.Hessian(), full.Hessian())
		c1, f1 := tri.Clone(), full.Clone()
		same("TakeHessian", c1.TakeHessian(), f1.TakeHessian())
		if c1.HasHessian() {
			t.Errorf("%s: the Hessian is still there after TakeHessian", name)
		}
		same("XTX", tri.Clone().XTX(), full.XTX())
		wantH, tp := full.Hessian(), tri.Clone().TakeHessianPacked()
		for i := range c.in {
			same("TakeHessianPacked", tp[triOffset(c.in, i):triOffset(c.in, i)+c.in-i], wantH[i*c.in+i:(i+1)*c.in])
		}
		// A full matrix (as StatsFromSums makes) merged into a packed one sums whole.
		c2 := tri.Clone()
		c2.Merge(full2)
		f3 := full.Clone()
		f3.Merge(full2)
		same("Hessian after a mixed Merge", c2.Hessian(), f3.Hessian())
	}
}
