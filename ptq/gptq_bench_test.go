package ptq

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// BenchmarkGPTQLayerInPipeline compares, on one LLaMA-2-7B-shaped layer, GPTQ as the
// pipeline runs it (quantizeLayer: W4A16 GPTQ, every report it makes) with the arithmetic the
// quant benchmarks time (PrepareHessian per input, GPTQWithHessian per linear, on the same
// Hessians), alternately in each iteration so that both see the same machine load. Issue 10
// measured the pipeline at about 3× the benchmarks; pipeline-s/gptq-s is that ratio.
//
//	odyssey testdata synth --shape llama2-7b --layers 1 --out /tmp/l7b1
//	ODYSSEY_BENCH_GPTQ_LAYER=/tmp/l7b1 go test ./ptq -run '^$' -bench GPTQLayerInPipeline -benchtime 1x -count 3
//
// The Hessians come from one window of 512 random tokens, the 512 rows of the quant
// benchmarks' Hessians (the time does not depend on the values).
func BenchmarkGPTQLayerInPipeline(b *testing.B) {
	dir := os.Getenv("ODYSSEY_BENCH_GPTQ_LAYER")
	if dir == "" {
		b.Skip("set ODYSSEY_BENCH_GPTQ_LAYER to a checkpoint (odyssey testdata synth --shape llama2-7b --layers 1)")
	}
	hm, err := hf.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer hm.Close()
	cfg := hm.Config
	pass, err := calib.NewPass(hm, randWindows(1, 1, 512, cfg.VocabSize, 1), calib.Options{})
	if err != nil {
		b.Fatal(err)
	}
	l0, err := pass.Layer(0)
	if err != nil {
		b.Fatal(err)
	}
	st, err := pass.Collect(context.Background(), l0, func(model.LinearKind) bool { return true })
	if err != nil {
		b.Fatal(err)
	}
	opt := DefaultOptions()
	opt.Weights.Method = MethodGPTQ
	opt.Weights.GPTQ = GPTQOptions{}
	opt.Activations.Bits = 16
	opt.Equalization.Method = EqualizeNone
	opt.IntegerScale.Enabled = false
	if opt, err = opt.resolved(); err != nil {
		b.Fatal(err)
	}
	copyLayer := func() *model.Layer {
		l := &model.Layer{Index: 0, Config: &cfg, AttnNorm: l0.AttnNorm, MLPNorm: l0.MLPNorm}
		for _, k := range model.LayerKinds {
			d := dense(l0, k)
			l.SetLinear(k, model.NewDense(slices.Clone(d.W), d.B, d.Out(), d.In()))
		}
		return l
	}
	copyStats := func() *calib.LayerStats {
		c := &calib.LayerStats{Layer: 0, Inputs: map[model.LinearKind]*calib.Stats{}, Outputs: st.Outputs}
		for k, s := range st.Inputs {
			c.Inputs[k] = s.Clone()
		}
		return c
	}
	var pipe, ref time.Duration
	for b.Loop() {
		b.StopTimer()
		l, s := copyLayer(), copyStats()
		b.StartTimer()
		t0 := time.Now()
		if _, err := quantizeLayer(l, s, &opt, &cfg, nil); err != nil {
			b.Fatal(err)
		}
		pipe += time.Since(t0)

		b.StopTimer()
		s = copyStats()
		hs := map[model.LinearKind][]float64{}
		for k, in := range s.Inputs {
			hs[k] = in.Hessian()
		}
		s = nil
		b.StartTimer()
		t0 = time.Now()
		gopt := quant.GPTQOptions{GroupSize: opt.Weights.GroupSize}
		for _, in := range calib.InputKinds() {
			hh, err := quant.PrepareHessian(hs[in], st.Inputs[in].In, gopt)
			if err != nil {
				b.Fatal(err)
			}
			for _, k := range in.SharedInput() {
				d := dense(l0, k)
				if _, _, err := quant.GPTQWithHessian(d.W, d.Out(), d.In(), hh, gopt); err != nil {
					b.Fatal(err)
				}
			}
		}
		ref += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(pipe.Seconds()/n, "pipeline-s")
	b.ReportMetric(ref.Seconds()/n, "gptq-s")
	b.ReportMetric(pipe.Seconds()/ref.Seconds(), "ratio")
}
