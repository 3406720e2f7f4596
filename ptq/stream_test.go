package ptq

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/quant"
)

// rtnBaseline is the w4a8-rtn recipe: nothing in it reads calibration statistics.
func rtnBaseline() Options {
	o := DefaultOptions()
	o.Equalization.Method = EqualizeNone
	o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysPerToken}
	o.Weights.ActAwareClip = false
	return o
}

func TestNeedsCalibration(t *testing.T) {
	if !DefaultOptions().NeedsCalibration() {
		t.Error("the default (FPTQ) recipe needs calibration")
	}
	if rtnBaseline().NeedsCalibration() {
		t.Errorf("the RTN baseline needs no calibration, reason %q", rtnBaseline().calibrationReason())
	}
	for name, change := range map[string]func(*Options){
		"lae":        func(o *Options) { o.Equalization.Method = EqualizeLAE },
		"static":     func(o *Options) { o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysStatic} },
		"gptq":       func(o *Options) { o.Weights.Method = MethodGPTQ },
		"act-aware":  func(o *Options) { o.Weights.ActAwareClip = true },
		"output-err": func(o *Options) { o.OutputError = true },
	} {
		o := rtnBaseline()
		change(&o)
		if !o.NeedsCalibration() {
			t.Errorf("%s: needs calibration", name)
		}
	}
	// Weight-only W4A16 RTN reads no activation statistics either.
	o := rtnBaseline()
	o.Activations.Bits = 16
	o.Activations.Rule = quant.DefaultPolicyRule()
	if o.NeedsCalibration() {
		t.Error("W4A16 RTN needs no calibration")
	}
	if _, err := RunWindows(context.Background(), nil, nil, DefaultOptions(), nil); err == nil || !strings.Contains(err.Error(), "need calibration") {
		t.Errorf("no windows for a calibrated recipe: %v", err)
	}
}

// A recipe that needs no statistics gives the same layers without calibration (weights read
// block by block from the checkpoint, no forward pass) as through the calibration pass, bit
// for bit: codes, scales, integer scales, folded norms, biases, policies and errors. It is
// checked on tiny-llama (fp16), on a synthetic Qwen2 with biases (f32) and with a skipped
// linear, which takes the whole-tensor path.
func TestWeightsOnlyMatchesCalibrated(t *testing.T) {
	type tc struct {
		name, dir string
		opt       Options
	}
	skip := rtnBaseline()
	skip.Skip = []string{"layers.1.down_proj"}
	for _, c := range []tc{
		{"tiny-llama", sharedtest.Testdata("tiny-llama"), rtnBaseline()},
		{"qwen2-synth", writeSynth(t, "Qwen2ForCausalLM"), rtnBaseline()},
		{"llama-synth-skip", writeSynth(t, "LlamaForCausalLM"), skip},
	} {
		t.Run(c.name, func(t *testing.T) {
			tm := openModel(t, c.dir)
			windows := randWindows(1, 2, 16, tm.hm.Config.VocabSize, 1)
			want, err := RunWindows(context.Background(), tm.hm, windows, c.opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := RunWindows(context.Background(), tm.hm, nil, c.opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Layers) != len(want.Layers) {
				t.Fatalf("%d layers, want %d", len(got.Layers), len(want.Layers))
			}
			for i, gl := range got.Layers {
				wl := want.Layers[i]
				if !slices.Equal(gl.AttnNorm, wl.AttnNorm) || !slices.Equal(gl.MLPNorm, wl.MLPNorm) {
					t.Errorf("layer %d: norms differ", i)
				}
				for j, g := range gl.Linears {
					w := wl.Linears[j]
					if g.Name != w.Name || g.Skipped != w.Skipped || !slices.Equal(g.Bias, w.Bias) || !slices.Equal(g.Float, w.Float) ||
						g.Act != w.Act || g.ActBits != w.ActBits || g.GroupSize != w.GroupSize ||
						g.WeightError != w.WeightError || g.FloatScaleWeightError != w.FloatScaleWeightError {
						t.Errorf("%s: %+v\nwant %+v", g.Name, *g, *w)
						continue
					}
					if g.Skipped {
						continue
					}
					if !reflect.DeepEqual(g.Weight, w.Weight) || !reflect.DeepEqual(g.IntScale, w.IntScale) {
						t.Errorf("%s: quantized weights differ", g.Name)
					}
				}
				for j, g := range gl.Inputs {
					w := wl.Inputs[j]
					if g.ActBits != w.ActBits || g.Act != w.Act || g.Decision.Policy != w.Decision.Policy {
						t.Errorf("layer %d input %v: %+v, want %+v", i, g.Kind, *g, *w)
					}
				}
			}
		})
	}
}
