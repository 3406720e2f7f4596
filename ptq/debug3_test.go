package ptq

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

func TestDebugDeterminism(t *testing.T) {
	if os.Getenv("DBG3") == "" {
		t.Skip()
	}
	hm, _ := hf.Load(sharedtest.Testdata("tiny-llama"))
	tok, _ := tokenizer.Load(hm.TokenizerPath)
	ct, _ := eval.LoadText(sharedtest.Path(t, "data/calib/calib_mix.txt"), "text")
	w, _ := calib.TextWindows(tok.Encode(ct, false), 0, 16, 512, 0)
	var prev *Result
	for range 2 {
		o := DefaultOptions()
		o.Weights.Method = MethodGPTQ
		o.Activations.Bits = 16
		o.IntegerScale.Enabled = false
		res, err := RunWindows(context.Background(), hm, w, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			for i := range res.Layers {
				for j, l := range res.Layers[i].Linears {
					p := prev.Layers[i].Linears[j]
					if !slices.Equal(l.Weight.Q, p.Weight.Q) || !slices.Equal(l.Weight.Scales, p.Weight.Scales) {
						t.Errorf("layer %d %v differs", i, l.Kind)
					}
				}
			}
		}
		prev = res
	}
}
