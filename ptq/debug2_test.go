package ptq

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
)

func TestDebugVariants(t *testing.T) {
	if os.Getenv("DBG2") == "" {
		t.Skip()
	}
	dir := sharedtest.Testdata("tiny-llama")
	if d := os.Getenv("DBGMODEL"); d != "" {
		dir = sharedtest.Path(t, d)
	}
	hm, _ := hf.Load(dir)
	tok, _ := tokenizer.Load(hm.TokenizerPath)
	ct, _ := eval.LoadText(sharedtest.Path(t, "data/calib/calib_mix.txt"), "text")
	w, _ := calib.TextWindows(tok.Encode(ct, false), 0, 128, 512, 0)
	text, _ := eval.LoadText(sharedtest.Path(t, "data/wikitext2/wiki.test.raw"), "text")
	stream := eval.Stream(tok, text, 0)
	eo := eval.Options{SeqLen: 512, MaxWindows: 64}
	fm, _ := model.Load(hm)
	base, _ := eval.Perplexity(context.Background(), fm, stream, eo)
	variants := map[string]func(o *Options){
		"a16-gptq":          func(o *Options) {},
		"a16-gptq-act":      func(o *Options) { o.Weights.GPTQ.ActOrder = true },
		"a16-gptq-clip":     func(o *Options) { o.Weights.GPTQ.ClipSearch = true },
		"a16-gptq-act-clip": func(o *Options) { o.Weights.GPTQ.ActOrder = true; o.Weights.GPTQ.ClipSearch = true },
		"a16-gptq-damp0.1":  func(o *Options) { o.Weights.GPTQ.PercDamp = 0.1 },
		"a16-rtn-clip":      func(o *Options) { o.Weights.Method = MethodRTN; o.Weights.RTN.ClipSearch = true },
		"a16-gptq-float":    func(o *Options) { o.Calib.Propagate = calib.PropagateFloat },
		"a8-gptq-act":       func(o *Options) { o.Weights.GPTQ.ActOrder = true },
		"a8-gptq-act-clip":  func(o *Options) { o.Weights.GPTQ.ActOrder = true; o.Weights.GPTQ.ClipSearch = true },
		"a8-rtn-all":        func(o *Options) { o.Weights.Method = MethodRTN; o.Equalization.Scope = ScopeAll },
		"a8-gptq-all":       func(o *Options) { o.Weights.GPTQ.ActOrder = true; o.Equalization.Scope = ScopeAll },
		"a8-rtn-pol":        func(o *Options) { o.Weights.Method = MethodRTN; o.Equalization.Scope = ScopePolicy },
		"a8-gptq-pol":       func(o *Options) { o.Equalization.Scope = ScopePolicy },
		"a8-rtn-aa":         func(o *Options) { o.Weights.Method = MethodRTN; o.Weights.ActAwareClip = true },
		"a16-rtn-aa":        func(o *Options) { o.Weights.Method = MethodRTN; o.Weights.ActAwareClip = true },
		"a8-rtn":            func(o *Options) { o.Weights.Method = MethodRTN },
		"a8-rtn-clip":       func(o *Options) { o.Weights.Method = MethodRTN; o.Weights.RTN.ClipSearch = true },
		"a8-gptq-act-pt":    func(o *Options) { o.Weights.GPTQ.ActOrder = true; o.Activations.Rule.Kind = 2 },
	}
	for name, f := range variants {
		if v := os.Getenv("DBGV"); v != "" && !strings.Contains(","+v+",", ","+name+",") {
			continue
		}
		o := DefaultOptions()
		o.Weights.Method = MethodGPTQ
		o.Activations.Bits = 16
		o.IntegerScale.Enabled = false
		if strings.HasPrefix(name, "a8") {
			o.Activations.Bits = 8
			o.IntegerScale.Enabled = true
		}
		f(&o)
		res, err := RunWindows(context.Background(), hm, w, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		qm, _ := res.FakeQuantModel(hm)
		p, _ := eval.Perplexity(context.Background(), qm, stream, eo)
		t.Logf("%-22s ppl %.4f ratio %.4f", name, p.PPL, p.PPL/base.PPL)
	}
}
