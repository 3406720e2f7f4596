package calib

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
)

// TestTiming measures the calibration pass and self-sampling on the shared models; it runs
// only with ODYSSEY_CALIB_TIMING=1 and logs the numbers quoted in the package docs.
func TestTiming(t *testing.T) {
	if os.Getenv("ODYSSEY_CALIB_TIMING") == "" {
		t.Skip("set ODYSSEY_CALIB_TIMING=1 to measure")
	}
	ctx := context.Background()
	for _, name := range []string{"models/tiny-llama", "models/small-llama"} {
		hm, err := hf.Load(sharedtest.Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := tokenizer.Load(hm.TokenizerPath)
		text, _ := eval.LoadText(sharedtest.Path(t, "data/calib/calib_mix.txt"), "text")
		w, err := TextWindows(tok.Encode(text, false), 0, 128, 512, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, hess := range []bool{false, true} {
			start := time.Now()
			_, mem, err := CollectAll(ctx, hm, w, Options{LiveHeap: true}, func(int, model.LinearKind) bool { return hess }, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s 128×512 hessian=%v: %.1fs, peak heap %.1f MB, activations %.1f MB, layer %.1f MB",
				name, hess, time.Since(start).Seconds(), float64(mem.PeakHeapInuse)/1e6, float64(mem.ActivationBytes)/1e6, float64(mem.PeakLayerBytes)/1e6)
		}
		if name == "models/tiny-llama" {
			m, _ := model.Load(hm)
			start := time.Now()
			_, err := SampleWindows(ctx, m, 0, SampleOptions{Samples: 64, SeqLen: 256})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("self 64×256: %.1fs", time.Since(start).Seconds())
		}
		hm.Close()
	}
}
