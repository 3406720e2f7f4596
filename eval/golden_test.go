package eval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
)

// The golden perplexity tests evaluate the first few windows of each reference run, which
// keeps CI fast while still checking the tokenizer on the whole file (the stream length must
// give the golden number of windows). Set ODYSSEY_FULL_PPL=1 to evaluate every window and
// compare the perplexity itself, or ODYSSEY_PPL_WINDOWS=n for the first n windows.

type goldenRun struct {
	PPL          float64   `json:"ppl"`
	Windows      int       `json:"windows"`
	TokensScored int       `json:"tokens_scored"`
	NLLPerWindow []float64 `json:"nll_per_window"`
	TextSHA256   string    `json:"text_sha256"`
	L            int       `json:"L"`
	BOS          int       `json:"bos"`
	NTokens      int       `json:"n_tokens"`
}

var dataFiles = map[string]string{
	"wikitext2_test":    "data/wikitext2/wiki.test.raw",
	"c4_heldout500":     "data/c4/c4_heldout500.txt",
	"tinystories_slice": "data/tinystories/tinystories_slice.txt",
}

var (
	cacheMu sync.Mutex
	models  = map[string]*loaded{}
	streams = map[string][]int{}
)

type loaded struct {
	m   *model.Model
	tok *tokenizer.Tokenizer
	bos int
}

// loadShared loads (once per test binary) a model folder with its tokenizer.
func loadShared(t *testing.T, dir string) *loaded {
	t.Helper()
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if l, ok := models[dir]; ok {
		return l
	}
	hm, err := hf.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	m, err := model.Load(hm)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(hm.TokenizerPath)
	if err != nil {
		t.Fatal(err)
	}
	bos, err := BOS(tok, hm.Config)
	if err != nil {
		t.Fatal(err)
	}
	l := &loaded{m, tok, bos}
	models[dir] = l
	return l
}

// streamFor tokenizes a data file with a model's tokenizer, once per (tokenizer, file).
func streamFor(t *testing.T, l *loaded, tokPath, file string) []int {
	t.Helper()
	sum, err := os.ReadFile(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(sum)
	key := hex.EncodeToString(h[:]) + "|" + file
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if s, ok := streams[key]; ok {
		return s
	}
	text, err := LoadText(file, "text")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := Stream(l.tok, text, l.bos)
	t.Logf("tokenized %s: %d tokens in %.2fs", filepath.Base(file), len(s)-1, time.Since(start).Seconds())
	streams[key] = s
	return s
}

func readGolden(t *testing.T) map[string]struct {
	Results map[string]goldenRun `json:"results"`
} {
	t.Helper()
	b, err := os.ReadFile(sharedtest.Path(t, "golden/ppl.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g map[string]struct {
		Results map[string]goldenRun `json:"results"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func windowsToRun(t *testing.T, ciWindows int) int {
	if os.Getenv("ODYSSEY_FULL_PPL") != "" {
		return 0
	}
	if s := os.Getenv("ODYSSEY_PPL_WINDOWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("ODYSSEY_PPL_WINDOWS=%q: %v", s, err)
		}
		return n
	}
	return ciWindows
}

func TestGoldenPerplexity(t *testing.T) {
	golden := readGolden(t)
	for _, tc := range []struct {
		model  string // folder under shared/models (tiny-llama: the committed testdata)
		golden string // the model whose golden results apply
		run    string
		ci     int // windows evaluated in CI
		short  bool
	}{
		{"tiny-llama", "tiny-llama", "wikitext2_test/L512/float32", 4, true},
		{"tiny-llama", "tiny-llama", "c4_heldout500/L256/float32", 4, true},
		{"stories260K", "stories260K", "tinystories_slice/L256/float32", 8, true},
		{"stories260K", "stories260K", "wikitext2_test/L256/float32", 4, false},
		{"small-llama", "small-llama", "wikitext2_test/L512/float32", 4, false},
		{"small-llama", "small-llama", "c4_heldout500/L256/float32", 4, false},
		{"small-llama-outliers", "small-llama", "wikitext2_test/L512/float32", 4, false},
		{"tiny-llama", "tiny-llama", "wikitext2_test/L256/float32", 2, false},
		{"tiny-llama", "tiny-llama", "c4_heldout500/L512/float32", 2, false},
		{"small-llama", "small-llama", "wikitext2_test/L256/float32", 2, false},
		{"small-llama", "small-llama", "c4_heldout500/L512/float32", 2, false},
	} {
		t.Run(tc.model+"/"+tc.run, func(t *testing.T) {
			if testing.Short() && !tc.short {
				t.Skip("skipping in -short mode")
			}
			g, ok := golden[tc.golden].Results[tc.run]
			if !ok {
				t.Fatalf("ppl.json has no %s/%s", tc.golden, tc.run)
			}
			var dataset string
			for k := range dataFiles {
				if len(tc.run) > len(k) && tc.run[:len(k)+1] == k+"/" {
					dataset = k
				}
			}
			file := sharedtest.Path(t, dataFiles[dataset])
			dir := sharedtest.Testdata(tc.model)
			if tc.model != "tiny-llama" {
				dir = sharedtest.Path(t, filepath.Join("models", tc.model))
			}
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if h := sha256.Sum256(text); hex.EncodeToString(h[:]) != g.TextSHA256 {
				t.Fatalf("%s has sha256 %x, golden was computed on %s", file, h, g.TextSHA256)
			}
			l := loadShared(t, dir)
			if l.bos != g.BOS {
				t.Errorf("BOS %d, golden %d", l.bos, g.BOS)
			}
			stream := streamFor(t, l, filepath.Join(dir, "tokenizer.json"), file)
			if len(stream)-1 != g.NTokens {
				t.Errorf("tokenizer gives %d tokens, golden %d", len(stream)-1, g.NTokens)
			}
			n := windowsToRun(t, tc.ci)
			res, err := Perplexity(context.Background(), l.m, stream, Options{SeqLen: g.L, MaxWindows: n})
			if err != nil {
				t.Fatal(err)
			}
			if res.TotalWindows != g.Windows {
				t.Errorf("stream gives %d windows, golden %d", res.TotalWindows, g.Windows)
			}
			worst, at := 0.0, 0
			for i, v := range res.NLLPerWindow {
				if i >= len(g.NLLPerWindow) {
					break
				}
				if d := math.Abs(v-g.NLLPerWindow[i]) / g.NLLPerWindow[i]; d > worst || math.IsNaN(d) {
					worst, at = d, i
				}
			}
			t.Logf("%s %s: %d of %d windows in %.1fs (%.0f tokens/s); ppl %.6f (golden over all windows %.6f); worst per-window relative NLL difference %.2g (window %d)",
				tc.model, tc.run, res.Windows, res.TotalWindows, res.Seconds, res.TokensPerSecond, res.PPL, g.PPL, worst, at)
			if !(worst <= 1e-4) {
				t.Errorf("window %d: NLL %g, golden %g (relative difference %.3g > 1e-4)", at, res.NLLPerWindow[at], g.NLLPerWindow[at], worst)
			}
			if res.Windows == g.Windows {
				if d := math.Abs(res.PPL-g.PPL) / g.PPL; !(d <= 1e-4) {
					t.Errorf("ppl %.6f, golden %.6f (relative difference %.3g)", res.PPL, g.PPL, d)
				}
				if res.TokensScored != g.TokensScored {
					t.Errorf("tokens scored %d, golden %d", res.TokensScored, g.TokensScored)
				}
			}
		})
	}
}

// TestC4JSONLMatchesText checks that LoadText's jsonl reading reproduces the text the golden
// C4 perplexities were computed on; equal bytes tokenize the same.
func TestC4JSONLMatchesText(t *testing.T) {
	jl := sharedtest.Path(t, "data/c4/c4_heldout500.jsonl")
	txt := sharedtest.Path(t, "data/c4/c4_heldout500.txt")
	a, err := LoadText(jl, "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadText(txt, "text")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		i := 0
		for i < len(a) && i < len(b) && a[i] == b[i] {
			i++
		}
		t.Fatalf("jsonl text (%d bytes) differs from the .txt (%d bytes) at byte %d", len(a), len(b), i)
	}
}

// TestKLSameFunction compares small-llama with small-llama-outliers, which computes the same
// function (channels rescaled by powers of two): the divergence must be nil up to rounding.
// It also reports stories260K's fp16 weights against its fp32 weights, for scale.
func TestKLSameFunction(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode")
	}
	file := sharedtest.Path(t, dataFiles["wikitext2_test"])
	for _, tc := range []struct {
		ref, other string
		L          int
		maxMeanKL  float64
		minTop1    float64
	}{
		{"small-llama", "small-llama-outliers", 512, 1e-8, 0.999},
		{"stories260K", "stories260K-fp16", 256, 1e-3, 0.95},
	} {
		t.Run(tc.other, func(t *testing.T) {
			ref := loadShared(t, sharedtest.Path(t, filepath.Join("models", tc.ref)))
			other := loadShared(t, sharedtest.Path(t, filepath.Join("models", tc.other)))
			stream := streamFor(t, ref, filepath.Join(sharedtest.Path(t, filepath.Join("models", tc.ref)), "tokenizer.json"), file)
			res, err := KL(context.Background(), ref.m, other.m, stream, Options{SeqLen: tc.L, MaxWindows: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s vs %s: mean KL %.3g ± %.2g, max %.3g, p99 %.3g, top-1 agreement %.4f, ppl %.4f vs %.4f",
				tc.other, tc.ref, res.MeanKL, res.KLStdErr, res.MaxKL, res.P99KL, res.Top1Agreement, res.PPL, res.RefPPL)
			if !(res.MeanKL <= tc.maxMeanKL) || !(res.Top1Agreement >= tc.minTop1) {
				t.Errorf("mean KL %g (want ≤ %g), top-1 agreement %g (want ≥ %g)", res.MeanKL, tc.maxMeanKL, res.Top1Agreement, tc.minTop1)
			}
		})
	}
}
