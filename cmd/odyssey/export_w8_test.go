package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
)

// w8a8-smoothquant exports to compressed-tensors' int-quantized form: per quantized linear
// NAME.weight (I8 [out, in]) and NAME.weight_scale (F16 [out, 1]), a config group with int8
// per-channel symmetric weights and int8 dynamic per-token symmetric input activations, the
// global format "int-quantized". The export evaluates to the fake-quantized model's
// perplexity (up to the fp16 rounding of the scales); an interrupted W8 run resumes from its
// int8 layer checkpoints to the same bytes; the Odyssey output still refuses W8 (exit 3).
func TestQuantizeExportCompressedTensorsW8A8(t *testing.T) {
	base := t.TempDir()
	rec := writeRecipe(t, "version: 1\nbase: w8a8-smoothquant\ncalibration:\n  samples: 4\n  seq_len: 64\n  seed: 3\n")
	args := func(out string, extra ...string) []string {
		return append([]string{"--model", tiny, "--out", out, "--recipe", rec, "--calib", sample, "--export", "compressed-tensors"}, extra...)
	}
	out := filepath.Join(base, "ct8")
	if code, _, errOut := quantize(t, args(out)...); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b, _ := os.ReadFile(filepath.Join(out, "config.json"))
	var cfg struct {
		QC struct {
			QuantMethod  string `json:"quant_method"`
			Format       string `json:"format"`
			Ignore       []string
			ConfigGroups map[string]struct {
				Targets []string
				Weights map[string]any
				Input   map[string]any `json:"input_activations"`
				Format  string
			} `json:"config_groups"`
		} `json:"quantization_config"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	q := cfg.QC
	g := q.ConfigGroups["group_0"]
	if q.QuantMethod != "compressed-tensors" || q.Format != "int-quantized" || len(q.ConfigGroups) != 1 || g.Format != "int-quantized" ||
		len(g.Targets) != 1 || g.Targets[0] != "Linear" || len(q.Ignore) != 1 || q.Ignore[0] != "lm_head" ||
		g.Weights["num_bits"] != 8.0 || g.Weights["type"] != "int" || g.Weights["symmetric"] != true || g.Weights["strategy"] != "channel" ||
		g.Weights["group_size"] != nil || g.Weights["dynamic"] != false ||
		g.Input["num_bits"] != 8.0 || g.Input["type"] != "int" || g.Input["strategy"] != "token" || g.Input["dynamic"] != true || g.Input["symmetric"] != true {
		t.Errorf("quantization_config %s", b)
	}
	ck, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	name := "model.layers.0.mlp.down_proj"
	for suffix, want := range map[string]string{".weight": "I8[256 768]", ".weight_scale": "F16[256 1]"} {
		ti, ok := ck.Info(name + suffix)
		if !ok || string(ti.DType)+fmt.Sprint(ti.Shape) != want {
			t.Errorf("%s%s: %v, want %s", name, suffix, ti, want)
		}
	}
	for _, suffix := range []string{".weight_packed", ".weight_shape", ".qweight8", ".scale8"} {
		if _, ok := ck.Info(name + suffix); ok {
			t.Errorf("%s%s present in an int-quantized export", name, suffix)
		}
	}
	if raw, err := ck.Bytes(name + ".weight"); err == nil {
		for i, v := range raw {
			if int8(v) == -128 {
				t.Fatalf("code -128 at %d (Odyssey's int8 weights are -127..127)", i)
			}
		}
	}
	ck.Close()

	code, js, errOut := runCLI(t, "", "eval", "ppl", "--model", out, "--data", sample, "--seq-len", "256", "--json")
	if code != 0 {
		t.Fatalf("eval of the export: exit %d: %s", code, errOut)
	}
	var pr struct {
		PPL float64 `json:"ppl"`
	}
	if err := json.Unmarshal([]byte(js), &pr); err != nil || pr.PPL == 0 {
		t.Fatalf("eval --json: %v: %s", err, js)
	}
	fq := fakeQuantPPL(t, tiny, rec, sample, sample, 256, 0)
	if r := math.Abs(pr.PPL/fq - 1); r > 1e-3 {
		t.Errorf("export ppl %.6f, fake-quantized %.6f (relative %.2g > 1e-3)", pr.PPL, fq, r)
	}
	t.Logf("export ppl %.6f, fake-quantized %.6f", pr.PPL, fq)

	// Interrupted after layer 1, resumed: the same files.
	resumed := filepath.Join(base, "resumed")
	afterLayerHook = func(layer int, interrupt func()) {
		if layer == 1 {
			interrupt()
		}
	}
	code, _, errOut = quantize(t, args(resumed)...)
	afterLayerHook = nil
	if code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d: %s", code, errOut)
	}
	if code, _, errOut := quantize(t, args(resumed, "--resume")...); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
	a, r := filesOf(t, out), filesOf(t, resumed)
	for n, data := range a {
		if !bytes.Equal(data, r[n]) {
			t.Errorf("%s differs between the uninterrupted and the resumed W8 run", n)
		}
	}

	code, _, errOut = quantize(t, "--model", tiny, "--out", filepath.Join(base, "odyssey8"), "--recipe", rec, "--calib", sample)
	if code != exitBadInput || !strings.Contains(errOut, "8-bit weights") {
		t.Errorf("W8 into the Odyssey output: exit %d: %s", code, errOut)
	}
}
