package ptq

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/quant"
)

func TestZZDebugIntScale(t *testing.T) {
	if os.Getenv("DBG") == "" {
		t.Skip()
	}
	tm := openModel(t, sharedtest.Path(t, "models/small-llama"))
	w := tm.windows(t, sharedtest.Path(t, "data/calib/calib_mix.txt"), 128, 512)
	stream := tm.stream(t, sharedtest.Path(t, "data/wikitext2/wiki.test.raw"))
	base := ppl(t, floatModel(t, tm.hm), stream, 512, 64)
	for _, static := range []bool{true, false} {
		o := DefaultOptions()
		if static {
			o.Equalization.Method = EqualizeNone
			o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysStatic}
		}
		res, err := RunWindows(context.Background(), tm.hm, w, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		qm, _ := res.FakeQuantModel(tm.hm)
		fm, _ := res.FakeQuantModelFloatScales(tm.hm)
		t.Logf("static=%v int %.5f float %.5f", static, ppl(t, qm, stream, 512, 64)/base, ppl(t, fm, stream, 512, 64)/base)
		for seed := range uint64(2) {
			r := rand.New(rand.NewPCG(seed, 9))
			saved := map[*LinearResult][]float32{}
			for _, lr := range res.Layers {
				for _, l := range lr.Linears {
					saved[l] = append([]float32(nil), l.Weight.Scales...)
					for i := range l.Weight.Scales {
						l.Weight.Scales[i] *= float32(1 + 0.001*(2*r.Float64()-1))
					}
				}
			}
			pm, _ := res.FakeQuantModelFloatScales(tm.hm)
			t.Logf("static=%v float scales ±0.1%% noise seed %d: %.5f", static, seed, ppl(t, pm, stream, 512, 64)/base)
			for l, s := range saved {
				copy(l.Weight.Scales, s)
			}
		}
	}
}
