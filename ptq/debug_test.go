package ptq

import (
	"context"
	"os"
	"testing"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

func TestDebugGPTQ(t *testing.T) {
	if os.Getenv("DBG") == "" {
		t.Skip()
	}
	dir := sharedtest.Testdata("tiny-llama")
	if d := os.Getenv("DBGMODEL"); d != "" {
		dir = sharedtest.Path(t, d)
	}
	hm, _ := hf.Load(dir)
	tok, _ := tokenizer.Load(hm.TokenizerPath)
	ct, _ := eval.LoadText(sharedtest.Path(t, "data/calib/calib_mix.txt"), "text")
	w, _ := calib.TextWindows(tok.Encode(ct, false), 0, 32, 512, 0)
	for _, m := range []string{MethodGPTQ} {
		o := DefaultOptions()
		o.Weights.Method = m
		o.OutputError = true
		o.Weights.GPTQ.ActOrder = os.Getenv("NOACT") == ""
		res, err := RunWindows(context.Background(), hm, w, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, lr := range res.Layers {
			for _, l := range lr.Linears {
				loss := 0.0
				if l.GPTQ != nil {
					loss = l.GPTQ.Loss
				}
				t.Logf("%s L%d %-9v err %.4f float %.4f alpha %d..%d %.2f loss %.4g oerr %.5f", m, lr.Layer, l.Kind, l.WeightError, l.FloatScaleWeightError, l.AlphaLog2Min, l.AlphaLog2Max, l.AlphaLog2Mean, loss, l.OutputError)
			}
		}
	}
}
