package eval

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
)

// synthModel builds a small random LLaMA model (GQA, 2 layers) for protocol tests.
func synthModel(seed uint64, vocab int) *model.Model {
	cfg := hf.Config{
		ModelType: "llama", HiddenAct: "silu",
		HiddenSize: 32, IntermediateSize: 64, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 8, VocabSize: vocab,
		MaxPositionEmbeddings: 64, RMSNormEps: 1e-6,
		Rope: hf.Rope{Theta: 10000, Type: "default"},
	}
	r := rand.New(rand.NewPCG(seed, 99))
	vec := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	ones := func(n int) []float32 {
		v := vec(n, 0.1)
		for i := range v {
			v[i]++
		}
		return v
	}
	lin := func(out, in int) *model.Dense {
		return model.NewDense(vec(out*in, 1/math.Sqrt(float64(in))), nil, out, in)
	}
	m := &model.Model{Config: cfg, Embedding: vec(vocab*32, 1), FinalNorm: ones(32), LMHead: lin(vocab, 32)}
	for i := 0; i < cfg.NumLayers; i++ {
		m.Layers = append(m.Layers, &model.Layer{
			Index: i, Config: &m.Config, AttnNorm: ones(32), MLPNorm: ones(32),
			Q: lin(32, 32), K: lin(16, 32), V: lin(16, 32), O: lin(32, 32),
			Gate: lin(64, 32), Up: lin(64, 32), Down: lin(32, 64),
		})
	}
	return m
}

func randStream(seed uint64, n, vocab int) []int {
	r := rand.New(rand.NewPCG(seed, 5))
	s := make([]int, n)
	for i := range s {
		s[i] = r.IntN(vocab)
	}
	return s
}

// logSoftmax64 returns log softmax(row) in float64.
func logSoftmax64(row []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = max(mx, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - mx)
	}
	out := make([]float64, len(row))
	for i, v := range row {
		out[i] = float64(v) - mx - math.Log(s)
	}
	return out
}

// TestPerplexityProtocol recomputes the perplexity from full logits, written out directly
// from the protocol: windows of L, each from position 0, logits at t−1 scored against t.
func TestPerplexityProtocol(t *testing.T) {
	const vocab, L = 40, 16
	m := synthModel(1, vocab)
	stream := randStream(2, 5*L+7, vocab) // 5 windows and a dropped remainder
	res, err := Perplexity(context.Background(), m, stream, Options{SeqLen: L, BatchWindows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Windows != 5 || res.TotalWindows != 5 || res.TokensScored != 5*(L-1) || len(res.NLLPerWindow) != 5 {
		t.Fatalf("windows %d/%d, scored %d, %d NLLs; want 5, 5, %d, 5", res.Windows, res.TotalWindows, res.TokensScored, len(res.NLLPerWindow), 5*(L-1))
	}
	var total float64
	for w := 0; w < 5; w++ {
		win := stream[w*L : (w+1)*L]
		logits, err := m.Forward([][]int{win}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var nll float64
		for tk := 1; tk < L; tk++ {
			nll -= logSoftmax64(logits[(tk-1)*vocab : tk*vocab])[win[tk]]
		}
		total += nll
		if d := math.Abs(nll-res.NLLPerWindow[w]) / nll; d > 1e-6 {
			t.Errorf("window %d: NLL %g, direct %g", w, res.NLLPerWindow[w], nll)
		}
	}
	if want := math.Exp(total / float64(5*(L-1))); math.Abs(res.PPL-want)/want > 1e-6 {
		t.Errorf("ppl %g, want %g", res.PPL, want)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"ppl"`, `"windows"`, `"tokens_scored"`, `"nll_per_window"`, `"seconds"`, `"tokens_per_second"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
}

func TestPerplexityBatchingAndProgress(t *testing.T) {
	const vocab, L = 40, 12
	m := synthModel(3, vocab)
	stream := randStream(4, 7*L, vocab)
	one, err := Perplexity(context.Background(), m, stream, Options{SeqLen: L, BatchWindows: 1})
	if err != nil {
		t.Fatal(err)
	}
	var calls []int
	some, err := Perplexity(context.Background(), m, stream, Options{SeqLen: L, BatchWindows: 3, MaxWindows: 5,
		Progress: func(done, total int, tps float64) {
			if total != 5 || !(tps > 0) {
				t.Errorf("progress(%d, %d, %g)", done, total, tps)
			}
			calls = append(calls, done)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if some.Windows != 5 || some.TotalWindows != 7 {
		t.Errorf("MaxWindows 5: windows %d of %d", some.Windows, some.TotalWindows)
	}
	if len(calls) != 2 || calls[0] != 3 || calls[1] != 5 {
		t.Errorf("progress calls at %v, want [3 5]", calls)
	}
	for i, v := range some.NLLPerWindow {
		if d := math.Abs(v-one.NLLPerWindow[i]) / v; d > 1e-5 {
			t.Errorf("window %d: NLL %g in a batch of 3, %g alone", i, v, one.NLLPerWindow[i])
		}
	}
}

func TestPerplexityErrors(t *testing.T) {
	m := synthModel(5, 30)
	ctx := context.Background()
	_, err := Perplexity(ctx, m, randStream(1, 10, 30), Options{SeqLen: 16})
	if err == nil || !strings.Contains(err.Error(), "data has 10 tokens; one window needs 16") {
		t.Errorf("short data: %v", err)
	}
	_, err = Perplexity(ctx, m, randStream(1, 200, 30), Options{SeqLen: 100})
	if err == nil || !strings.Contains(err.Error(), "max_position_embeddings") {
		t.Errorf("SeqLen beyond max positions: %v", err)
	}
	if _, err = Perplexity(ctx, m, randStream(1, 200, 30), Options{SeqLen: 100, Force: true}); err != nil {
		t.Errorf("Force: %v", err)
	}
	if _, err = Perplexity(ctx, m, randStream(1, 200, 30), Options{SeqLen: 1}); err == nil {
		t.Error("SeqLen 1: no error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = Perplexity(cancelled, m, randStream(1, 200, 30), Options{SeqLen: 16}); err != context.Canceled {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestKL(t *testing.T) {
	const vocab, L = 40, 16
	ref := synthModel(7, vocab)
	stream := randStream(8, 4*L, vocab)
	ctx := context.Background()

	self, err := KL(ctx, ref, ref, stream, Options{SeqLen: L})
	if err != nil {
		t.Fatal(err)
	}
	if self.MeanKL != 0 || self.MaxKL != 0 || self.Top1Agreement != 1 || self.PPL != self.RefPPL {
		t.Errorf("model against itself: %+v", self)
	}

	// A perturbed copy: the second layer's down projection scaled by 1.3.
	other := synthModel(7, vocab)
	d := other.Layers[1].Down.(*model.Dense)
	for i := range d.W {
		d.W[i] *= 1.3
	}
	res, err := KL(ctx, ref, other, stream, Options{SeqLen: L, BatchWindows: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Direct computation in float64 from full logits.
	var sum, mx float64
	agree := 0
	for w := 0; w < 4; w++ {
		win := [][]int{stream[w*L : (w+1)*L]}
		lp, _ := ref.Forward(win, nil)
		lq, _ := other.Forward(win, nil)
		for p := 0; p < L-1; p++ {
			a, b := logSoftmax64(lp[p*vocab:(p+1)*vocab]), logSoftmax64(lq[p*vocab:(p+1)*vocab])
			var kl float64
			ia, ib := 0, 0
			for i := range a {
				kl += math.Exp(a[i]) * (a[i] - b[i])
				if a[i] > a[ia] {
					ia = i
				}
				if b[i] > b[ib] {
					ib = i
				}
			}
			sum += kl
			mx = max(mx, kl)
			if ia == ib {
				agree++
			}
		}
	}
	n := float64(4 * (L - 1))
	if want := sum / n; !(want > 1e-4) || math.Abs(res.MeanKL-want)/want > 1e-4 {
		t.Errorf("mean KL %g, direct %g", res.MeanKL, want)
	}
	if math.Abs(res.MaxKL-mx)/mx > 1e-4 {
		t.Errorf("max KL %g, direct %g", res.MaxKL, mx)
	}
	if want := float64(agree) / n; res.Top1Agreement != want {
		t.Errorf("top-1 agreement %g, direct %g", res.Top1Agreement, want)
	}
	if !(res.MedianKL <= res.P90KL && res.P90KL <= res.P99KL && res.P99KL <= res.MaxKL) {
		t.Errorf("quantiles out of order: %+v", res)
	}
	ppl, _ := Perplexity(ctx, other, stream, Options{SeqLen: L})
	if math.Abs(ppl.PPL-res.PPL)/ppl.PPL > 1e-9 || math.Abs(self.PPL-res.RefPPL)/res.RefPPL > 1e-9 {
		t.Errorf("KL perplexities %g/%g, Perplexity %g/%g", res.RefPPL, res.PPL, self.PPL, ppl.PPL)
	}

	if _, err := KL(ctx, ref, synthModel(7, vocab+1), stream, Options{SeqLen: L}); err == nil || !strings.Contains(err.Error(), "vocabularies differ") {
		t.Errorf("vocabulary mismatch: %v", err)
	}
}

func TestLoadText(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "a.txt")
	os.WriteFile(txt, []byte("héllo\r\n world\n"), 0o644)
	if s, err := LoadText(txt, "text"); err != nil || s != "héllo\r\n world\n" {
		t.Errorf("text: %q, %v", s, err)
	}
	jl := filepath.Join(dir, "a.jsonl")
	os.WriteFile(jl, []byte("{\"text\": \"one\\n\", \"id\": 1}\n\n{\"text\": \"two\"}"), 0o644)
	if s, err := LoadText(jl, "jsonl"); err != nil || s != "one\n\n\ntwo" {
		t.Errorf("jsonl: %q, %v", s, err)
	}
	os.WriteFile(jl, []byte("{\"text\": \"one\"}\n{\"body\": \"two\"}\n"), 0o644)
	if _, err := LoadText(jl, "jsonl"); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("jsonl without text: %v", err)
	}
	if _, err := LoadText(txt, "csv"); err == nil || !strings.Contains(err.Error(), "unknown data format") {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := LoadText(filepath.Join(dir, "missing"), "text"); err == nil {
		t.Error("missing file: no error")
	}
}

func TestWindows(t *testing.T) {
	s := []int{0, 1, 2, 3, 4, 5, 6}
	w, err := Windows(s, 3)
	if err != nil || len(w) != 2 || w[1][0] != 3 || len(w[1]) != 3 {
		t.Errorf("Windows = %v, %v", w, err)
	}
}

// LoadText refuses devices and pipes rather than reading without end.
func TestLoadTextRefusesDevices(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	for _, format := range Formats {
		if _, err := LoadText("/dev/zero", format); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s: %v", format, err)
		}
	}
}
