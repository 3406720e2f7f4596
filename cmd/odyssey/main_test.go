package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// runCLI drives the whole CLI in-process, as a user would from a shell.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

var tiny = sharedtest.Testdata("tiny-llama")

func TestInspectTiny(t *testing.T) {
	code, out, errOut := runCLI(t, "", "inspect", tiny)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"LlamaForCausalLM", "256 / 768", "4 / 2 / 64", "4096", "theta 10000", "F16",
		"5.25M (5245184)", "model.layers.3.mlp.down_proj.weight", "[256, 768]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}

func TestInspectJSON(t *testing.T) {
	code, out, errOut := runCLI(t, "", "inspect", "--json", tiny)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep inspectReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect --json is not JSON: %v\n%s", err, out)
	}
	m := rep.Model
	if m == nil || m.HiddenSize != 256 || m.IntermediateSize != 768 || m.Layers != 4 || m.Heads != 4 ||
		m.KVHeads != 2 || m.HeadDim != 64 || m.VocabSize != 4096 || m.RopeTheta != 1e4 || m.TiedEmbeddings {
		t.Errorf("model summary = %+v", m)
	}
	// 4 layers × 9 tensors + embed + norm + lm_head.
	if len(rep.Tensors) != 4*9+3 || rep.Parameters != 5245184 || rep.DTypes["F16"] != 2*5245184 {
		t.Errorf("tensors %d, parameters %d, dtypes %v", len(rep.Tensors), rep.Parameters, rep.DTypes)
	}
}

func TestInspectSharedModels(t *testing.T) {
	small := sharedtest.Path(t, "models/small-llama")
	code, out, errOut := runCLI(t, "", "inspect", "--json", small)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep inspectReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Shards) != 3 || rep.DTypes["BF16"] == 0 || rep.Model.RopeTheta != 5e5 || rep.Model.Layers != 6 {
		t.Errorf("small-llama: shards %v dtypes %v model %+v", rep.Shards, rep.DTypes, rep.Model)
	}
	stories := sharedtest.Path(t, "models/stories260K")
	code, out, errOut = runCLI(t, "", "inspect", "--json", stories)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rep = inspectReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Model.TiedEmbeddings || rep.DTypes["F32"] == 0 || rep.Model.HeadDim != 8 || rep.Parameters != 260032 {
		t.Errorf("stories260K: dtypes %v parameters %d model %+v", rep.DTypes, rep.Parameters, rep.Model)
	}
}

// A damaged checkpoint must give one line naming the file and the tensor, exit code 3, and
// no panic.
func TestInspectCorrupt(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(tiny, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.safetensors")
	if err := os.WriteFile(truncated, data[:len(data)-100000], 0o644); err != nil {
		t.Fatal(err)
	}
	reshaped := filepath.Join(dir, "reshaped.safetensors")
	bad := bytes.Replace(data, []byte("[4096,256]"), []byte("[4095,256]"), 1)
	if bytes.Equal(bad, data) {
		t.Fatal("fixture: shape string not found in header")
	}
	if err := os.WriteFile(reshaped, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, tensor string }{
		{truncated, "model.layers.3"},
		{reshaped, "weight"},
	} {
		code, _, errOut := runCLI(t, "", "inspect", c.file)
		if code != exitBadInput {
			t.Errorf("%s: exit %d, want %d", c.file, code, exitBadInput)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, c.file) || !strings.Contains(errOut, c.tensor) {
			t.Errorf("%s: error should be one line naming file and tensor, got %q", c.file, errOut)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "--bogus", tiny},
		{"nosuchcommand"},
		{"eval", "ppl", "--model", tiny},
		{"eval", "ppl", "--model", tiny, "--data", "x", "--format", "csv"},
		{"tokenize"},
	} {
		code, _, errOut := runCLI(t, "", args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
	}
	if code, _, _ := runCLI(t, "", "inspect", filepath.Join(t.TempDir(), "missing")); code != exitBadInput {
		t.Errorf("missing path: exit %d, want %d", code, exitBadInput)
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	text := "Hello world, it's 2026.\n  Tabs\tand   spaces!"
	code, out, errOut := runCLI(t, text, "tokenize", "--model", tiny, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var ids []int
	if err := json.Unmarshal([]byte(out), &ids); err != nil || len(ids) == 0 {
		t.Fatalf("ids %q: %v", out, err)
	}
	code, dec, errOut := runCLI(t, out, "tokenize", "--model", tiny, "--decode")
	if code != 0 || dec != text {
		t.Fatalf("decode: exit %d %s: %q != %q", code, errOut, dec, text)
	}
	// --add-special puts tiny-llama's <|bos|> (id 0) in front.
	_, out2, _ := runCLI(t, text, "tokenize", "--model", tiny, "--json", "--add-special")
	var ids2 []int
	if err := json.Unmarshal([]byte(out2), &ids2); err != nil || len(ids2) != len(ids)+1 || ids2[0] != 0 {
		t.Errorf("--add-special: %v (plain %v)", ids2, ids)
	}
	// Batch encoding equals encoding one by one.
	code, out, errOut = runCLI(t, `["Hello world", "", "ünïcödé"]`, "tokenize", "--model", tiny, "--batch")
	if code != 0 {
		t.Fatalf("batch: exit %d: %s", code, errOut)
	}
	var batch [][]int
	if err := json.Unmarshal([]byte(out), &batch); err != nil || len(batch) != 3 || len(batch[1]) != 0 {
		t.Fatalf("batch output %q: %v", out, err)
	}
	code, out, _ = runCLI(t, out, "tokenize", "--model", tiny, "--batch", "--decode")
	var texts []string
	if err := json.Unmarshal([]byte(out), &texts); code != 0 || err != nil || texts[0] != "Hello world" || texts[2] != "ünïcödé" {
		t.Errorf("batch decode: exit %d %q %v", code, out, err)
	}
	// Out-of-vocabulary ids are bad input, not a panic.
	if code, _, _ := runCLI(t, "5 99999", "tokenize", "--model", tiny, "--decode"); code != exitBadInput {
		t.Errorf("out-of-vocabulary id: exit %d, want %d", code, exitBadInput)
	}
}

func TestEvalPPLSample(t *testing.T) {
	code, out, errOut := runCLI(t, "", "eval", "ppl", "--model", tiny, "--data", sharedtest.Testdata("text/sample.txt"), "--seq-len", "256", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep pplReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Windows < 2 || rep.TokensScored != rep.Windows*255 || len(rep.NLLPerWindow) != rep.Windows || rep.PPL < 5 || rep.PPL > 500 {
		t.Errorf("report %+v", rep.PPLResult)
	}
}

// The golden first windows of WikiText-2 through the whole CLI path (tokenizer, model, eval).
func TestEvalPPLGoldenWindows(t *testing.T) {
	data := sharedtest.Path(t, "data/wikitext2/wiki.test.raw")
	golden := sharedtest.Path(t, "golden/ppl.json")
	code, out, errOut := runCLI(t, "", "eval", "ppl", "--model", tiny, "--data", data, "--max-windows", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep pplReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var g map[string]struct {
		Results map[string]struct {
			Windows      int       `json:"windows"`
			NLLPerWindow []float64 `json:"nll_per_window"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	want := g["tiny-llama"].Results["wikitext2_test/L512/float32"]
	if rep.TotalWindows != want.Windows {
		t.Errorf("total windows %d, golden %d", rep.TotalWindows, want.Windows)
	}
	for i, nll := range rep.NLLPerWindow {
		if d := (nll - want.NLLPerWindow[i]) / want.NLLPerWindow[i]; d > 1e-4 || d < -1e-4 {
			t.Errorf("window %d: NLL %v, golden %v", i, nll, want.NLLPerWindow[i])
		}
	}
}

func TestEvalBadInput(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short.txt")
	os.WriteFile(short, []byte("too short"), 0o644)
	noTok := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, _ := os.ReadFile(filepath.Join(tiny, f))
		os.WriteFile(filepath.Join(noTok, f), b, 0o644)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "ppl", "--model", tiny, "--data", short}, "one window needs 512"},
		{[]string{"eval", "ppl", "--model", noTok, "--data", short}, "no tokenizer.json"},
		{[]string{"eval", "ppl", "--model", tiny, "--data", short, "--seq-len", "4096"}, "max_position_embeddings"},
		{[]string{"eval", "kl", "--ref", tiny, "--model", tiny, "--data", short}, "one window needs 512"},
	} {
		code, _, errOut := runCLI(t, "", c.args...)
		if code != exitBadInput || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and a line with %q", c.args, code, errOut, exitBadInput, c.want)
		}
	}
}

func TestEvalKLSelf(t *testing.T) {
	code, out, errOut := runCLI(t, "", "eval", "kl", "--ref", tiny, "--model", tiny, "--data", sharedtest.Testdata("text/sample.txt"), "--seq-len", "256", "--max-windows", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep klReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	// A model against itself: zero divergence, full agreement, equal perplexities.
	if rep.MeanKL > 1e-6 || rep.Top1Agreement != 1 || rep.PPL != rep.RefPPL {
		t.Errorf("self-KL report %+v", rep.KLResult)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", "version", "--json")
	var v versionInfo
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.GoVersion == "" {
		t.Errorf("version: exit %d %q", code, out)
	}
}

func TestBundleInspectEval(t *testing.T) {
	out := filepath.Join(t.TempDir(), "tiny.tar.zst")
	if code, _, errOut := runCLI(t, "", "bundle", tiny, "-o", out); code != 0 {
		t.Fatalf("bundle: exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "", "bundle", tiny, "-o", out); code != exitExists {
		t.Errorf("bundle over an existing file: exit %d, want %d", code, exitExists)
	}
	code, js, errOut := runCLI(t, "", "inspect", "--json", out)
	var rep inspectReport
	if code != 0 || json.Unmarshal([]byte(js), &rep) != nil || rep.Parameters != 5245184 {
		t.Fatalf("inspect bundle: exit %d %s", code, errOut)
	}
	// A corrupted bundle is bad input naming the bundle, not a model that computes garbage.
	b, _ := os.ReadFile(out)
	bad := filepath.Join(t.TempDir(), "bad.tar.zst")
	os.WriteFile(bad, b[:len(b)/2], 0o644)
	code, _, errOut = runCLI(t, "", "eval", "ppl", "--model", bad, "--data", sharedtest.Testdata("text/sample.txt"))
	if code != exitBadInput || !strings.Contains(errOut, bad) {
		t.Errorf("corrupt bundle: exit %d %q", code, errOut)
	}
}

func TestSynthRefusesExisting(t *testing.T) {
	dir := t.TempDir() // exists
	code, _, errOut := runCLI(t, "", "testdata", "synth", "--shape", "llama2-7b", "--layers", "1", "--out", dir)
	if code != exitExists || !strings.Contains(errOut, "--force") {
		t.Errorf("exit %d %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "", "testdata", "synth", "--shape", "gpt5", "--out", filepath.Join(dir, "x")); code != exitUsage {
		t.Errorf("unknown shape: exit %d", code)
	}
}

func TestUnknownSubcommand(t *testing.T) {
	for _, args := range [][]string{{"eval", "bogus"}, {"recipes", "bogus"}, {"testdata", "bogus"}} {
		if code, _, _ := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, out, _ := runCLI(t, "", "eval"); code != 0 || !strings.Contains(out, "ppl") {
		t.Errorf("bare group: exit %d, %q", code, out)
	}
}
