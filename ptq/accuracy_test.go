package ptq

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// The accuracy table of the issue: every recipe on every reference model, perplexity ratio
// to the same model in float32 on the same windows. It takes tens of minutes, so it runs only
// with ODYSSEY_ACCURACY=1, and writes the table as markdown to ODYSSEY_ACCURACY_OUT
// (default ptq/ACCURACY.md). ODYSSEY_ACCURACY_MODELS and ODYSSEY_ACCURACY_ROWS (comma-
// separated names or row keys) select a subset; ODYSSEY_ACCURACY_WINDOWS and
// ODYSSEY_ACCURACY_CALIB change the evaluation windows (64) and calibration windows (128).

type accModel struct {
	name      string
	dir       string // relative to the shared folder, or absolute
	data      string // evaluation text, relative to the shared folder
	seqLen    int
	groupSize int
	// calibFromEvalTail calibrates on the tokens of data after those evaluated (stories260K:
	// calib_mix is not its domain).
	calibFromEvalTail bool
	// goal ratios: W4A8 with LAE + FPTQ, and W4A16 g128 GPTQ (0: report only).
	goalW4A8, goalW4A16 float64
}

var accModels = []accModel{
	{name: "tiny-llama", dir: sharedtest.Testdata("tiny-llama"), data: "data/wikitext2/wiki.test.raw", seqLen: 512, groupSize: 128, goalW4A8: 1.015, goalW4A16: 1.008},
	{name: "small-llama", dir: "models/small-llama", data: "data/wikitext2/wiki.test.raw", seqLen: 512, groupSize: 128, goalW4A8: 1.015, goalW4A16: 1.008},
	{name: "small-llama-outliers", dir: "models/small-llama-outliers", data: "data/wikitext2/wiki.test.raw", seqLen: 512, groupSize: 128, goalW4A8: 1.02, goalW4A16: 1.008},
	{name: "stories260K", dir: "models/stories260K", data: "data/tinystories/tinystories_slice.txt", seqLen: 256, groupSize: 64, calibFromEvalTail: true},
}

type accRow struct {
	key, label string
	opt        func(m accModel) Options
	// goal selects the model goal the row is held to: "w4a8", "w4a16" or "".
	goal string
	// self calibrates on windows sampled from the model (calib's data-free default) instead
	// of the text.
	self bool
}

func w4a8(m accModel, method string, intScale bool) Options {
	o := DefaultOptions()
	o.Weights.GroupSize = m.groupSize
	o.Weights.Method = method
	o.IntegerScale.Enabled = intScale
	return o
}

func w4a16(m accModel, method string) Options {
	o := w4a8(m, method, false)
	o.Activations.Bits = 16
	o.Equalization.Method = EqualizeNone
	return o
}

var accRows = []accRow{
	{key: "w4a8-rtn", label: "W4A8 RTN (default: LAE + FPTQ, act-aware clip, int scale)", opt: func(m accModel) Options { return w4a8(m, MethodRTN, true) }, goal: "w4a8"},
	{key: "w4a8-rtn-self", label: "W4A8 RTN default recipe, data-free: calibrated on 64×256 windows sampled from the model", opt: func(m accModel) Options { return w4a8(m, MethodRTN, true) }, self: true},
	{key: "w4a8-gptq", label: "W4A8 GPTQ act-order (LAE + FPTQ, int scale)", opt: func(m accModel) Options { return w4a8(m, MethodGPTQ, true) }, goal: "w4a8"},
	{key: "w4a16-rtn", label: "W4A16 RTN (act-aware clip)", opt: func(m accModel) Options { return w4a16(m, MethodRTN) }},
	{key: "w4a16-gptq", label: "W4A16 GPTQ act-order", opt: func(m accModel) Options { return w4a16(m, MethodGPTQ) }, goal: "w4a16"},
	{key: "w4a8-rtn-paper", label: "W4A8 RTN, LAE only where FPTQ's rule says (scope policy)", opt: func(m accModel) Options {
		o := w4a8(m, MethodRTN, true)
		o.Equalization.Scope = ScopePolicy
		return o
	}},
	{key: "w4a8-static-nolae", label: "W4A8 RTN, static per-tensor, no LAE", opt: func(m accModel) Options {
		o := w4a8(m, MethodRTN, true)
		o.Equalization.Method = EqualizeNone
		o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysStatic}
		return o
	}},
	{key: "w4a8-pertoken", label: "W4A8 RTN, dynamic per-token, no LAE", opt: func(m accModel) Options {
		o := w4a8(m, MethodRTN, true)
		o.Equalization.Method = EqualizeNone
		o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysPerToken}
		return o
	}},
	{key: "w8a8-sq", label: "W8A8 SmoothQuant α = 0.5 (per-channel W, per-token A)", opt: func(m accModel) Options {
		o := DefaultOptions()
		o.Equalization.Method = EqualizeSmoothQuant
		o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysPerToken}
		o.Weights.Bits = 8
		o.IntegerScale.Enabled = false
		return o
	}},
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func selected(env, name string) bool {
	v := os.Getenv(env)
	if v == "" {
		return true
	}
	for _, s := range strings.Split(v, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

func TestAccuracyTable(t *testing.T) {
	if os.Getenv("ODYSSEY_ACCURACY") != "1" {
		t.Skip("set ODYSSEY_ACCURACY=1 to produce the accuracy table (tens of minutes)")
	}
	out := os.Getenv("ODYSSEY_ACCURACY_OUT")
	if out == "" {
		out = filepath.Join(sharedtest.Root(), "ptq", "ACCURACY.md")
	}
	nEval := envInt("ODYSSEY_ACCURACY_WINDOWS", 64)
	nCalib := envInt("ODYSSEY_ACCURACY_CALIB", 128)
	ctx := context.Background()
	var b strings.Builder
	fmt.Fprintf(&b, "# Accuracy of the PTQ recipes\n\nGenerated by `ODYSSEY_ACCURACY=1 go test ./ptq -run TestAccuracyTable -timeout 0` on %s (%d cores), %s.\n\n",
		runtime.GOARCH, runtime.GOMAXPROCS(0), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Perplexity ratio = quantized / float32 on the same windows: the first %d windows of L tokens (BOS + L−1, the golden protocol). "+
		"Calibration: %d windows of L tokens, seed 0, quantized propagation; `calib_mix.txt` for the LLaMA models, the TinyStories slice's tokens after the evaluated ones for stories260K. "+
		"Defaults: int4 symmetric (−7..7) weights in groups of 128 (stories260K: 64, per-channel where 64 does not divide 172); "+
		"LAE on max|x| for the four pairs, folded where FPTQ's rule (v0 = 15, v1 = 150) says LAE and before every per-token input (scope dynamic); "+
		"RTN with the activation-aware clipping search, GPTQ with act-order; integer scales max-safe capped at 2¹⁰. "+
		"Int vs float scales compares the same int4 codes evaluated with integer and with float group scales. "+
		"Peak heap is the live heap (collected before each sample) above what the harness held before the run.\n\n",
		nEval, nCalib)
	fmt.Fprintf(&b, "| model | recipe | ppl | ratio | goal | calib+quant s | peak heap MB | eval s | inputs static / LAE+static / per-token (LAE) |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range accModels {
		if !selected("ODYSSEY_ACCURACY_MODELS", m.name) {
			continue
		}
		dir := m.dir
		if !filepath.IsAbs(dir) {
			dir = sharedtest.Path(t, dir)
		}
		hm, err := hf.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := tokenizer.Load(hm.TokenizerPath)
		if err != nil {
			t.Fatal(err)
		}
		bos, _ := eval.BOS(tok, hm.Config)
		text, err := eval.LoadText(sharedtest.Path(t, m.data), "text")
		if err != nil {
			t.Fatal(err)
		}
		stream := eval.Stream(tok, text, bos)
		var calibTokens []int
		if m.calibFromEvalTail {
			calibTokens = stream[nEval*m.seqLen:]
		} else {
			ct, err := eval.LoadText(sharedtest.Path(t, "data/calib/calib_mix.txt"), "text")
			if err != nil {
				t.Fatal(err)
			}
			calibTokens = tok.Encode(ct, false)
		}
		windows, err := calib.TextWindows(calibTokens, bos, nCalib, m.seqLen, 0)
		if err != nil {
			t.Fatal(err)
		}
		eopt := eval.Options{SeqLen: m.seqLen, MaxWindows: nEval}
		fm, err := model.Load(hm)
		if err != nil {
			t.Fatal(err)
		}
		base, err := eval.Perplexity(ctx, fm, stream, eopt)
		if err != nil {
			t.Fatal(err)
		}
		fm = nil
		fmt.Fprintf(&b, "| %s | float32 | %.4f | 1 | | | | %.1f | |\n", m.name, base.PPL, base.Seconds)
		t.Logf("%s float32 ppl %.4f", m.name, base.PPL)
		for _, row := range accRows {
			if !selected("ODYSSEY_ACCURACY_ROWS", row.key) {
				continue
			}
			opt := row.opt(m)
			opt.Calib.LiveHeap = true
			runtime.GC()
			runtime.GC() // twice: the previous row's sync.Pool scratch survives one
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			baseHeap := ms.HeapInuse
			t0 := time.Now()
			cw := windows
			if row.self {
				if cw, err = calib.LoadWindows(ctx, hm, tok, calib.Options{Source: calib.SourceSelf}, nil); err != nil {
					t.Fatal(err)
				}
			}
			res, err := RunWindows(ctx, hm, cw, opt, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", m.name, row.key, err)
			}
			qt := time.Since(t0)
			qm, err := res.FakeQuantModel(hm)
			if err != nil {
				t.Fatal(err)
			}
			p, err := eval.Perplexity(ctx, qm, stream, eopt)
			if err != nil {
				t.Fatal(err)
			}
			ratio := p.PPL / base.PPL
			goal := ""
			var g float64
			switch row.goal {
			case "w4a8":
				g = m.goalW4A8
			case "w4a16":
				g = m.goalW4A16
			}
			if g > 0 {
				mark := "✅"
				if ratio > g {
					mark = "❌"
				}
				goal = fmt.Sprintf("≤ %.3f %s", g, mark)
			}
			fmt.Fprintf(&b, "| %s | %s | %.4f | %.4f | %s | %.1f | %.0f | %.1f | %s |\n", m.name, row.label, p.PPL, ratio, goal, qt.Seconds(), float64(res.Mem.PeakHeapInuse-min(baseHeap, res.Mem.PeakHeapInuse))/1e6, p.Seconds, policyCounts(res))
			if res.Options.IntegerScale.Enabled && res.Options.Activations.Bits == 8 {
				fm, err := res.FakeQuantModelFloatScales(hm)
				if err != nil {
					t.Fatal(err)
				}
				pf, err := eval.Perplexity(ctx, fm, stream, eopt)
				if err != nil {
					t.Fatal(err)
				}
				rel := p.PPL/pf.PPL - 1
				mark := "✅"
				if math.Abs(rel) > 0.001 {
					mark = "❌"
				}
				fmt.Fprintf(&b, "| %s | ↳ same codes, float scales | %.4f | %.4f | int vs float %+.3f%% (≤ 0.1%% %s) | | | %.1f | |\n", m.name, pf.PPL, pf.PPL/base.PPL, 100*rel, mark, pf.Seconds)
				t.Logf("%s %-45s ppl %.4f (int scale vs float %+.4f%%)", m.name, row.key+" float scales", pf.PPL, 100*rel)
			}
			t.Logf("%s %-45s ppl %.4f ratio %.4f (quant %.1fs, eval %.1fs, peak heap %.0f MB) %s", m.name, row.key, p.PPL, ratio, qt.Seconds(), p.Seconds,
				float64(res.Mem.PeakHeapInuse)/1e6, policyCounts(res))
			if os.Getenv("ODYSSEY_ACCURACY_VERBOSE") != "" {
				for _, lr := range res.Layers {
					for _, in := range lr.Inputs {
						t.Logf("  layer %d %-9v %-22v scale %.4g  %s", lr.Layer, in.Kind, in.Act.Policy, in.Act.Scale, in.Decision.Reason)
					}
					for _, l := range lr.Linears {
						t.Logf("  layer %d %-9v werr %.4f g%d", lr.Layer, l.Kind, l.WeightError, l.GroupSize)
					}
				}
			}
		}
		hm.Close()
	}
	// Hand-written notes below the marker survive regeneration.
	notes := notesMarker + "\n\n## Notes\n\n(hand-written: kept when the table is regenerated)\n"
	if old, err := os.ReadFile(out); err == nil {
		if i := strings.Index(string(old), notesMarker); i >= 0 {
			notes = string(old[i:])
		}
	}
	b.WriteString("\n")
	b.WriteString(notes)
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", out)
}

// notesMarker separates the generated table from the hand-written notes of ACCURACY.md.
const notesMarker = "<!-- notes: everything below is kept when the table is regenerated -->"

func policyCounts(r *Result) string {
	if r.Options.Activations.Bits == 16 {
		return "A16"
	}
	var n [3]int
	lae := 0
	for _, l := range r.Layers {
		for _, in := range l.Inputs {
			if int(in.Act.Policy) < len(n) {
				n[in.Act.Policy]++
			}
			if in.Act.Policy == quant.DynamicPerToken && in.Equalized != "" {
				lae++
			}
		}
	}
	return fmt.Sprintf("%d / %d / %d (%d)", n[quant.StaticPerTensor], n[quant.LAEStaticPerTensor], n[quant.DynamicPerToken], lae)
}
