package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/ptq"
	"github.com/odyssey-llm/odyssey/quantizejob"
	"github.com/odyssey-llm/odyssey/recipes"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden files from this run")

var sample = sharedtest.Testdata("text/sample.txt")

// writeRecipe writes a recipe file into a temporary folder and returns its path.
func writeRecipe(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recipe.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// smallFPTQ is the default recipe with a calibration small enough for tests: 4 windows of
// 64 tokens of the sample text.
const smallFPTQ = "version: 1\nbase: w4a8-fptq\ncalibration:\n  samples: 4\n  seq_len: 64\n  seed: 3\n"

func quantize(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, "", append([]string{"quantize"}, args...)...)
}

// End to end through the CLI: quantize tiny-llama, inspect the artifact, and evaluate it on
// CPU: its perplexity equals the fake-quantized model's (same recipe, same windows) within
// 1e-4 relative, which is the point of the artifact: packing loses nothing.
func TestQuantizeTinyEndToEnd(t *testing.T) {
	out := filepath.Join(t.TempDir(), "tiny-w4a8")
	rec := writeRecipe(t, smallFPTQ)
	code, js, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec, "--calib", sample, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep quantizeReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if rep.Layers != 4 || len(rep.PerLayer) != 4 || len(rep.PerLayer[0].Linears) != 7 || rep.Summary.Quantized != 28 ||
		rep.BytesOut <= 0 || rep.Compression <= 1 || rep.Calibration.SHA256 == "" || rep.Calibration.WindowsSHA256 == "" {
		t.Errorf("report %+v", rep)
	}
	for _, f := range []string{"config.json", "model.safetensors", "odyssey.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("artifact lacks %s", f)
		}
	}
	if _, err := os.Stat(out + ".partial"); err == nil {
		t.Error("staging folder left behind")
	}

	code, txt, errOut := runCLI(t, "", "inspect", out)
	if code != 0 || !strings.Contains(txt, "fastgemm-w4a8") || !strings.Contains(txt, "down_proj") || !strings.Contains(txt, "static-per-tensor") {
		t.Fatalf("inspect: exit %d %s\n%s", code, errOut, txt)
	}
	code, ijs, _ := runCLI(t, "", "inspect", "--json", out)
	var ar artifactReport
	if code != 0 || json.Unmarshal([]byte(ijs), &ar) != nil || len(ar.Layers) != 28 || ar.Compression <= 1 || ar.Recipe == nil {
		t.Fatalf("inspect --json: exit %d: %s", code, ijs)
	}

	code, pjs, errOut := runCLI(t, "", "eval", "ppl", "--model", out, "--data", sample, "--seq-len", "256", "--json")
	if code != 0 {
		t.Fatalf("eval ppl: exit %d: %s", code, errOut)
	}
	var pr pplReport
	if err := json.Unmarshal([]byte(pjs), &pr); err != nil {
		t.Fatal(err)
	}
	fq := fakeQuantPPL(t, tiny, rec, sample, sample, 256, 0)
	if d := math.Abs(pr.PPL-fq) / fq; d > 1e-4 {
		t.Errorf("artifact ppl %.6f, fake-quantized %.6f (relative %.2g > 1e-4)", pr.PPL, fq, d)
	}
	t.Logf("artifact ppl %.6f, fake-quantized %.6f", pr.PPL, fq)
}

// fakeQuantPPL quantizes a model in-process with the recipe (through the same translation
// as the command) and returns the fake-quantized model's perplexity on the first maxWindows
// windows (0: all) of data.
func fakeQuantPPL(t *testing.T, modelDir, recipePath, calibPath, data string, seqLen, maxWindows int) float64 {
	t.Helper()
	r, err := recipes.Load(recipePath)
	if err != nil {
		t.Fatal(err)
	}
	hm, err := hf.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	plan, err := r.ValidateForModel(hm.Config)
	if err != nil {
		t.Fatal(err)
	}
	if calibPath == "" {
		calibPath = r.CalibrationPath()
	}
	opt, err := ptqOptions(r, plan, calibPath)
	if err != nil {
		t.Fatal(err)
	}
	if calibPath != "" {
		opt.Calib.Format = "text"
	}
	tok, err := tokenizer.Load(hm.TokenizerPath)
	if err != nil {
		t.Fatal(err)
	}
	windows, err := calib.LoadWindows(context.Background(), hm, tok, opt.Calib, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ptq.RunWindows(context.Background(), hm, windows, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := res.FakeQuantModel(hm)
	if err != nil {
		t.Fatal(err)
	}
	text, err := eval.LoadText(data, "text")
	if err != nil {
		t.Fatal(err)
	}
	bos, _ := eval.BOS(tok, hm.Config)
	pr, err := eval.Perplexity(context.Background(), m, eval.Stream(tok, text, bos), eval.Options{SeqLen: seqLen, MaxWindows: maxWindows})
	if err != nil {
		t.Fatal(err)
	}
	return pr.PPL
}

// On the reference model with activation outliers, the artifact's CPU perplexity on
// WikiText-2 equals the fake-quantized model's (≤ 1e-4 relative). By default it calibrates
// on 8 windows of calib_mix and evaluates 8 windows of 512; ODYSSEY_FULL=1 runs the default
// recipe as it is (128×512 tokens sampled from the model) on 16 windows.
func TestQuantizeSmallLlamaOutliers(t *testing.T) {
	dir := sharedtest.Path(t, "models/small-llama-outliers")
	wiki := sharedtest.Path(t, "data/wikitext2/wiki.test.raw")
	rec, calibArgs, calibPath, windows := recipes.Default, []string{}, "", 16
	if os.Getenv("ODYSSEY_FULL") == "" {
		if testing.Short() {
			t.Skip("skipping in -short mode")
		}
		calibPath = sharedtest.Path(t, "data/calib/calib_mix.txt")
		rec = writeRecipe(t, "version: 1\nbase: w4a8-fptq\ncalibration:\n  samples: 8\n  seq_len: 256\n")
		calibArgs, windows = []string{"--calib", calibPath}, 8
	}
	out := filepath.Join(t.TempDir(), "outliers-w4a8")
	code, js, errOut := quantize(t, append([]string{"--model", dir, "--out", out, "--recipe", rec, "--json"}, calibArgs...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep quantizeReport
	json.Unmarshal([]byte(js), &rep)
	code, pjs, errOut := runCLI(t, "", "eval", "ppl", "--model", out, "--data", wiki, "--max-windows", fmt.Sprint(windows), "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errOut)
	}
	var pr pplReport
	if err := json.Unmarshal([]byte(pjs), &pr); err != nil {
		t.Fatal(err)
	}
	recPath := rec
	if rec == recipes.Default {
		recPath = recipes.Default
	}
	fq := fakeQuantPPL(t, dir, recPath, calibPath, wiki, 512, windows)
	d := math.Abs(pr.PPL-fq) / fq
	t.Logf("small-llama-outliers, %s: artifact ppl %.6f, fake-quantized %.6f (relative %.2g); policies %v; quantize %.1f s",
		rec, pr.PPL, fq, d, rep.Summary.Policies, rep.Timings.TotalSeconds)
	if d > 1e-4 {
		t.Errorf("artifact ppl %.6f, fake-quantized %.6f: relative difference %.2g > 1e-4", pr.PPL, fq, d)
	}
}

// tensorHashes returns the sha256 of every tensor of an artifact and of its config.json.
func tensorHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	h := map[string]string{}
	for _, ti := range ck.Tensors() {
		b, err := ck.Bytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		h[ti.Name] = string(ti.DType) + " " + shapeString(ti.Shape) + " " + hex.EncodeToString(s[:])
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	h["config.json"] = hex.EncodeToString(s[:])
	return h
}

// The same inputs, recipe and seed give a byte-identical artifact. The golden file holds the
// sha256 of every tensor of tiny-llama quantized with the w4a8-rtn baseline (per-token
// activations, no equalization), whose tensors depend on the weights alone, so the hashes
// hold on any CPU. Regenerate with: go test ./cmd/odyssey -run TestQuantizeGolden -update
func TestQuantizeGolden(t *testing.T) {
	out := filepath.Join(t.TempDir(), "tiny-rtn")
	rec := writeRecipe(t, "version: 1\nbase: w4a8-rtn\ncalibration:\n  samples: 2\n  seq_len: 32\n")
	if code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec, "--calib", sample); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := tensorHashes(t, out)
	golden := sharedtest.Testdata("golden/tiny-w4a8-rtn.sha256.json")
	if *updateGolden {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", golden)
		return
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var want map[string]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d tensors (and config.json), golden has %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, golden %s", k, got[k], v)
		}
	}
}

// filesOf returns the bytes of every file of a folder.
func filesOf(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

// An interrupted run leaves nothing at --out and its finished layers in OUT.partial;
// --resume continues from there, and the result is byte-identical (every file, odyssey.json
// included) to an uninterrupted run. A run without --resume discards the partial one.
func TestQuantizeResume(t *testing.T) {
	base := t.TempDir()
	rec := writeRecipe(t, smallFPTQ)
	args := func(out string, extra ...string) []string {
		return append([]string{"--model", tiny, "--out", out, "--recipe", rec, "--calib", sample}, extra...)
	}
	full := filepath.Join(base, "full")
	if code, _, errOut := quantize(t, args(full)...); code != 0 {
		t.Fatalf("uninterrupted: exit %d: %s", code, errOut)
	}

	out := filepath.Join(base, "resumed")
	afterLayerHook = func(layer int, interrupt func()) {
		if layer == 1 {
			interrupt()
		}
	}
	code, _, errOut := quantize(t, args(out)...)
	afterLayerHook = nil
	if code != exitInterrupted || !strings.Contains(errOut, "--resume") {
		t.Fatalf("interrupted run: exit %d, want %d: %s", code, exitInterrupted, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("an interrupted run created --out")
	}
	layers, _ := filepath.Glob(filepath.Join(out+".partial", artifact.LayersDir, "*.safetensors"))
	if len(layers) != 2 {
		t.Fatalf("%d layer checkpoints after an interruption after layer 1, want 2", len(layers))
	}

	// A different recipe must not continue these layers.
	other := writeRecipe(t, strings.Replace(smallFPTQ, "seed: 3", "seed: 4", 1))
	code, _, errOut = quantize(t, "--model", tiny, "--out", out, "--recipe", other, "--calib", sample, "--resume")
	if code != exitBadInput || !strings.Contains(errOut, "recipe") {
		t.Fatalf("resume with another recipe: exit %d: %s", code, errOut)
	}

	code, js, errOut := quantize(t, args(out, "--resume", "--json")...)
	if code != 0 || !strings.Contains(errOut, "2 of 4 layers done") {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
	// The checkpointed layers were read back, not computed again.
	var rep quantizeReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil || rep.ResumedLayers != 2 || len(rep.PerLayer) != 4 ||
		rep.PerLayer[1].QuantizeSeconds != 0 || rep.PerLayer[2].QuantizeSeconds == 0 {
		t.Errorf("resumed run's report: %v %+v", err, rep.PerLayer)
	}
	a, b := filesOf(t, full), filesOf(t, out)
	if len(a) != len(b) {
		t.Fatalf("files %d vs %d", len(a), len(b))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", name)
		}
	}

	// Interrupt again, then run without --resume: the partial run is discarded, said so.
	out2 := filepath.Join(base, "fresh")
	afterLayerHook = func(layer int, interrupt func()) { interrupt() }
	quantize(t, args(out2)...)
	afterLayerHook = nil
	code, _, errOut = quantize(t, args(out2)...)
	if code != 0 || !strings.Contains(errOut, "discarded") {
		t.Fatalf("fresh run over a partial one: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out2 + ".partial"); err == nil {
		t.Error("partial folder survived a fresh run")
	}
}

// Data-free calibration: a resumed run reuses the windows the interrupted one sampled
// (recorded in OUT.partial) and still ends byte-identical to an uninterrupted run.
func TestQuantizeResumeSelf(t *testing.T) {
	base := t.TempDir()
	rec := writeRecipe(t, "version: 1\nbase: w4a8-fptq\ncalibration:\n  samples: 2\n  seq_len: 32\n  seed: 5\n")
	args := func(out string, extra ...string) []string {
		return append([]string{"--model", tiny, "--out", out, "--recipe", rec}, extra...)
	}
	full, out := filepath.Join(base, "full"), filepath.Join(base, "resumed")
	if code, _, errOut := quantize(t, args(full)...); code != 0 {
		t.Fatalf("uninterrupted: exit %d: %s", code, errOut)
	}
	afterLayerHook = func(layer int, interrupt func()) {
		if layer == 2 {
			interrupt()
		}
	}
	code, _, errOut := quantize(t, args(out)...)
	afterLayerHook = nil
	if code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d: %s", code, errOut)
	}
	if code, js, errOut := quantize(t, args(out, "--resume", "--json")...); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	} else {
		var rep quantizeReport
		if json.Unmarshal([]byte(js), &rep) != nil || rep.ResumedLayers != 3 || !rep.WindowsReused {
			t.Errorf("resumed %d layers, windows reused %v (want 3, true)", rep.ResumedLayers, rep.WindowsReused)
		}
	}
	a, b := filesOf(t, full), filesOf(t, out)
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", name)
		}
	}
	if len(a) != len(b) {
		t.Errorf("files %d vs %d", len(a), len(b))
	}
}

// copyModel copies a model folder's small files into a new folder and returns it.
func copyModel(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// nanModel returns a copy of tiny-llama with a NaN in one weight of tensor name.
func nanModel(t *testing.T, name string, index int) string {
	t.Helper()
	dir := copyModel(t, tiny)
	ck, err := safetensors.Open(filepath.Join(tiny, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var ts []safetensors.Tensor
	for _, ti := range ck.Tensors() {
		b, _ := ck.Bytes(ti.Name)
		b = bytes.Clone(b)
		if ti.Name == name {
			b[2*index], b[2*index+1] = 0x00, 0x7E // fp16 NaN
		}
		ts = append(ts, safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: b})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, ck.Metadata()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Bad input gets one clear line, the documented exit code, and nothing half-written.
func TestQuantizeRefusals(t *testing.T) {
	base := t.TempDir()
	rec := writeRecipe(t, smallFPTQ)
	short := filepath.Join(base, "short.txt")
	os.WriteFile(short, []byte("Far too short a text to calibrate on."), 0o644)
	existing := filepath.Join(base, "exists")
	os.Mkdir(existing, 0o755)
	badRecipe := writeRecipe(t, "version: 1\nweights:\n  grup_size: 64\n")
	noFit := writeRecipe(t, "version: 1\nbase: w4a8-fptq\nskip: [lm_head, layers.9]\n")
	overflow := writeRecipe(t, smallFPTQ+"integer_scale:\n  amplifier: 16384\n")
	w8 := writeRecipe(t, "version: 1\nbase: w8a8-smoothquant\n")
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"existing out", []string{"--model", tiny, "--out", existing}, exitExists, []string{"--force"}},
		{"missing model", []string{"--model", filepath.Join(base, "nope"), "--out", filepath.Join(base, "o1")}, exitBadInput, []string{"nope"}},
		{"bad recipe", []string{"--model", tiny, "--out", filepath.Join(base, "o2"), "--recipe", badRecipe}, exitBadInput, []string{"problem"}},
		{"recipe does not fit", []string{"--model", tiny, "--out", filepath.Join(base, "o3"), "--recipe", noFit}, exitBadInput, []string{"layers.9"}},
		{"8-bit weights", []string{"--model", tiny, "--out", filepath.Join(base, "o4"), "--recipe", w8}, exitBadInput, []string{"int4"}},
		{"calibration too short", []string{"--model", tiny, "--out", filepath.Join(base, "o5"), "--recipe", rec, "--calib", short}, exitBadInput, []string{"shorter than requested", short}},
		{"calibration missing", []string{"--model", tiny, "--out", filepath.Join(base, "o6"), "--calib", filepath.Join(base, "none.txt")}, exitBadInput, []string{"none.txt"}},
		{"NaN weight", []string{"--model", nanModel(t, "model.layers.2.mlp.up_proj.weight", 1000), "--out", filepath.Join(base, "o7"), "--recipe", rec, "--calib", sample},
			exitBadInput, []string{"model.layers.2.mlp.up_proj.weight", "[3, 232]"}},
		{"int32 overflow mid-run", []string{"--model", tiny, "--out", filepath.Join(base, "o8"), "--recipe", overflow, "--calib", sample}, exitBadInput, []string{"2³¹"}},
		{"missing --out", []string{"--model", tiny}, exitUsage, []string{"out"}},
		{"bad --export", []string{"--model", tiny, "--out", filepath.Join(base, "o9"), "--export", "gguf"}, exitUsage, []string{"gguf"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := quantize(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d: %s", code, c.code, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %s", w, errOut)
				}
			}
		})
	}
	// Nothing half-written anywhere: no outputs, no staging folders.
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "o") || strings.HasSuffix(n, ".partial") {
			t.Errorf("left behind: %s", n)
		}
	}
}

// The compressed-tensors export: pack-quantized tensors and the config block vLLM reads.
func TestQuantizeExportCompressedTensors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ct")
	rec := writeRecipe(t, "version: 1\nbase: w4a8-rtn\ncalibration:\n  samples: 2\n  seq_len: 32\nweights:\n  group_size: 64\n")
	if code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec, "--calib", sample, "--export", "compressed-tensors"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b, _ := os.ReadFile(filepath.Join(out, "config.json"))
	var cfg struct {
		QC struct {
			QuantMethod  string `json:"quant_method"`
			Format       string `json:"format"`
			Status       string `json:"quantization_status"`
			Ignore       []string
			ConfigGroups map[string]struct {
				Targets []string
				Weights map[string]any
				Input   map[string]any `json:"input_activations"`
			} `json:"config_groups"`
		} `json:"quantization_config"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	q := cfg.QC
	g := q.ConfigGroups["group_0"]
	if q.QuantMethod != "compressed-tensors" || q.Format != "pack-quantized" || q.Status != "compressed" || len(q.Ignore) != 1 || q.Ignore[0] != "lm_head" ||
		len(g.Targets) != 1 || g.Targets[0] != "Linear" ||
		g.Weights["num_bits"] != 4.0 || g.Weights["type"] != "int" || g.Weights["symmetric"] != true || g.Weights["strategy"] != "group" || g.Weights["group_size"] != 64.0 ||
		g.Input["num_bits"] != 8.0 || g.Input["strategy"] != "token" || g.Input["dynamic"] != true || g.Input["symmetric"] != true {
		t.Errorf("quantization_config %s", b)
	}
	ck, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	name := "model.layers.0.mlp.down_proj"
	for suffix, want := range map[string]string{".weight_packed": "I32[256 96]", ".weight_scale": "F16[256 12]", ".weight_shape": "I64[2]"} {
		ti, ok := ck.Info(name + suffix)
		if !ok || string(ti.DType)+fmt.Sprint(ti.Shape) != want {
			t.Errorf("%s%s: %v, want %s", name, suffix, ti, want)
		}
	}
	if _, ok := ck.Info(name + ".weight"); ok {
		t.Error("quantized linear also has a float weight")
	}
	// Evaluating the export (dequantized weights, per-token int8 inputs) works and is close.
	if code, _, errOut := runCLI(t, "", "eval", "ppl", "--model", out, "--data", sample, "--seq-len", "256", "--max-windows", "1"); code != 0 {
		t.Errorf("eval of the export: exit %d: %s", code, errOut)
	}
}

// Data-free calibration needs the whole model in float32: when that cannot fit, quantize
// refuses before any heavy work (exit 3, saying what to do instead), and nothing is written.
// A recipe that needs no calibration is not affected.
func TestQuantizeSelfCalibrationTooLarge(t *testing.T) {
	defer func(f func() int64) { memAvailableFn = f }(memAvailableFn)
	memAvailableFn = func() int64 { return 1 << 20 }
	out := filepath.Join(t.TempDir(), "out")
	code, _, errOut := quantize(t, "--model", tiny, "--out", out)
	if code != exitBadInput || !strings.Contains(errOut, "--calib FILE") || !strings.Contains(errOut, "only 1.0 MiB") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out + ".partial"); err == nil {
		t.Error("OUT.partial was created")
	}
	if code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", "w4a8-rtn"); code != 0 {
		t.Fatalf("w4a8-rtn: exit %d: %s", code, errOut)
	}
}

// The same for a recipe without calibration whose artifact is sharded, so assembled in
// place (each layer checkpoint renamed into its shard): interrupted after layer 1 and
// resumed, it gives the files of an uninterrupted run, byte for byte.
func TestQuantizeResumeWeightsOnlySharded(t *testing.T) {
	base := t.TempDir()
	rec := writeRecipe(t, "version: 1\nbase: w4a8-rtn\noutput:\n  shard_size: 1MiB\n")
	full, out := filepath.Join(base, "full"), filepath.Join(base, "resumed")
	if code, _, errOut := quantize(t, "--model", tiny, "--out", full, "--recipe", rec); code != 0 {
		t.Fatalf("uninterrupted: exit %d: %s", code, errOut)
	}
	afterLayerHook = func(layer int, interrupt func()) {
		if layer == 1 {
			interrupt()
		}
	}
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec)
	afterLayerHook = nil
	if code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d: %s", code, errOut)
	}
	if code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec, "--resume"); code != 0 || !strings.Contains(errOut, "2 of 4 layers done") {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
	a, b := filesOf(t, full), filesOf(t, out)
	if len(a) != len(b) || len(a) < 4+3 {
		t.Fatalf("files %d vs %d (want a shard per layer)", len(a), len(b))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", name)
		}
	}
	if _, ok := a["model.safetensors.index.json"]; !ok {
		t.Error("no index")
	}
}

// --json writes progress events to stderr, one JSON object a line: every layer goes through
// collect, quantize and propagate in that order, each stage from 0 to its total, then a
// "layer" event with its stage times; the layers' remaining time appears once a layer is
// done and reaches 0 at the last one.
func TestQuantizeJSONEvents(t *testing.T) {
	out := filepath.Join(t.TempDir(), "tiny-w4a8")
	rec := writeRecipe(t, smallFPTQ)
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec, "--calib", sample, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var events []quantizejob.Event
	for _, line := range strings.Split(errOut, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var ev quantizejob.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		events = append(events, ev)
	}
	var stages []string // per layer: the stage boundaries seen
	layerDone := 0
	for _, ev := range events {
		if ev.Event != "progress" || ev.Layers != 4 {
			t.Fatalf("event %+v", ev)
		}
		switch ev.Stage {
		case "collect", "quantize", "propagate":
			if ev.Layer == nil || *ev.Layer != layerDone {
				t.Fatalf("%s event for layer %v while layer %d runs", ev.Stage, ev.Layer, layerDone)
			}
			if ev.Done == 0 || ev.Done == ev.Total {
				stages = append(stages, fmt.Sprintf("%s %d", ev.Stage, min(ev.Done, 1)))
			}
			if (ev.ETASeconds != nil) != (layerDone > 0) {
				t.Errorf("layer %d %s: eta_s %v", layerDone, ev.Stage, ev.ETASeconds)
			}
		case "layer":
			want := []string{"collect 0", "collect 1", "quantize 0", "quantize 1", "propagate 0", "propagate 1"}
			if !slices.Equal(stages, want) {
				t.Fatalf("layer %d: stage boundaries %v, want %v", layerDone, stages, want)
			}
			stages = nil
			layerDone++
			if ev.Layer == nil || *ev.Layer != layerDone-1 || ev.Done != int64(layerDone) || ev.Total != 4 || ev.CollectSeconds <= 0 || ev.PropagateSeconds <= 0 {
				t.Fatalf("layer event %+v", ev)
			}
			if ev.ETASeconds == nil || (layerDone == 4) != (*ev.ETASeconds == 0) {
				t.Errorf("layer %d: eta_s %v", layerDone-1, ev.ETASeconds)
			}
		case "scan", "write":
			if ev.Layer != nil || ev.Unit != "bytes" {
				t.Errorf("event %+v", ev)
			}
		default:
			t.Errorf("unknown stage %q", ev.Stage)
		}
	}
	if layerDone != 4 {
		t.Errorf("%d layer events, want 4", layerDone)
	}
}

// --device: cpu and auto calibrate on the CPU; cuda is refused at once as unsupported (exit
// 3, before the output folder is made), an unknown device as a usage error (exit 2).
func TestQuantizeDevice(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--device", "cuda")
	if code != exitBadInput || !strings.Contains(errOut, "--device cuda") || !strings.Contains(errOut, "not built") {
		t.Errorf("--device cuda: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--device cuda left %s behind (%v)", out, err)
	}
	if code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--device", "tpu"); code != exitUsage || !strings.Contains(errOut, "tpu") {
		t.Errorf("--device tpu: exit %d: %s", code, errOut)
	}
	if code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", "w4a8-rtn", "--device", "cpu"); code != 0 {
		t.Errorf("--device cpu: exit %d: %s", code, errOut)
	}
}
