package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/recipes"
)

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRecipesList(t *testing.T) {
	code, out, errOut := runCLI(t, "", "recipes", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, name := range recipes.Presets() {
		if !strings.Contains(out, name) {
			t.Errorf("list lacks %s:\n%s", name, out)
		}
	}
	if !strings.Contains(out, recipes.Default+" (default)") || strings.Count(out, "\n") != len(recipes.Presets()) {
		t.Errorf("list should be one line per preset, the default marked:\n%s", out)
	}
	code, out, errOut = runCLI(t, "", "recipes", "list", "--json")
	var rows []recipeRow
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != len(recipes.Presets()) {
		t.Fatalf("list --json: exit %d %s\n%s", code, errOut, out)
	}
	defaults := 0
	for _, r := range rows {
		if r.Default {
			defaults++
		}
		if r.Description == "" || !strings.HasPrefix(r.Hash, "sha256:") {
			t.Errorf("row %+v", r)
		}
	}
	if defaults != 1 {
		t.Errorf("%d defaults in %+v", defaults, rows)
	}
}

// show prints a valid recipe that means what it shows.
func TestRecipesShow(t *testing.T) {
	for _, name := range recipes.Presets() {
		code, out, errOut := runCLI(t, "", "recipes", "show", name)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut)
		}
		r, err := recipes.Parse("shown.yaml", []byte(out))
		if err != nil {
			t.Fatalf("show %s printed an invalid recipe: %v\n%s", name, err, out)
		}
		p, _ := recipes.Preset(name)
		if r.Hash() != p.Hash() || !strings.Contains(out, p.Hash()) {
			t.Errorf("show %s: hash %s, preset %s", name, r.Hash(), p.Hash())
		}
	}
	dir := t.TempDir()
	file := writeTestFile(t, dir, "ci.yaml", "version: 1\nbase: w4a8-odyssey\nweights:\n  group_size: 64\n")
	code, out, errOut := runCLI(t, "", "recipes", "show", file)
	if code != 0 || !strings.Contains(out, "group_size: 64") || !strings.Contains(out, "damp: 0.01") || strings.Contains(out, "base:") {
		t.Errorf("show file: exit %d %s\n%s", code, errOut, out)
	}
}

func TestRecipesValidate(t *testing.T) {
	dir := t.TempDir()
	good := writeTestFile(t, dir, "good.yaml", "version: 1\nweights: {group_size: 64}\n")
	code, out, errOut := runCLI(t, "", "recipes", "validate", good)
	if code != 0 || out != "ok\n" {
		t.Errorf("valid recipe: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "recipes", "validate", good, "--model", tiny)
	if code != 0 || !strings.HasSuffix(out, "ok\n") || !strings.Contains(out, `lm_head kept in 16 bits`) || strings.Contains(out, "fallback") {
		t.Errorf("valid recipe on tiny-llama: exit %d %s\n%s", code, errOut, out)
	}

	// Every problem, one per line, each at its place; then the one-line summary.
	bad := writeTestFile(t, dir, "bad.yaml", "version: 1\ncalibration:\n  smaples: 3\nweights:\n  bits: 5\n")
	code, out, errOut = runCLI(t, "", "recipes", "validate", bad)
	want := bad + ":3:3: unknown key \"smaples\" in calibration (did you mean \"samples\"?)\n" +
		bad + ":5:9: weights.bits: must be 4 or 8, got 5\n" +
		"odyssey: " + bad + ": 2 problems\n"
	if code != exitBadInput || out != "" || errOut != want {
		t.Errorf("bad recipe: exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
	}
	code, out, _ = runCLI(t, "", "recipes", "validate", bad, "--json")
	var rep validateReport
	if code != exitBadInput || json.Unmarshal([]byte(out), &rep) != nil || rep.OK || len(rep.Problems) != 2 || rep.Problems[1].Line != 5 {
		t.Errorf("bad recipe --json: exit %d %+v\n%s", code, rep, out)
	}

	// A model whose dimensions group 64 does not all divide: stories260K's config.
	model := t.TempDir()
	writeTestFile(t, model, "config.json", `{"architectures": ["LlamaForCausalLM"], "model_type": "llama",
		"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8,
		"num_key_value_heads": 4, "head_dim": 8, "vocab_size": 512, "max_position_embeddings": 512,
		"hidden_act": "silu", "tie_word_embeddings": true}`)
	code, out, errOut = runCLI(t, "", "recipes", "validate", good, "--model", model)
	if code != 0 || !strings.Contains(out, "fallback: down_proj in layers 0-4 quantized per channel (input dimension 172") || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("stories-like model: exit %d %s\n%s", code, errOut, out)
	}
	code, out, _ = runCLI(t, "", "recipes", "validate", good, "--model", model, "--json")
	rep = validateReport{}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Model == nil || rep.Model.Fallbacks != 5 || rep.Model.Skipped != 2 || len(rep.Modules) != 2+5*7 {
		t.Errorf("stories-like model --json: exit %d %+v", code, rep.Model)
	}
	strict := writeTestFile(t, dir, "strict.yaml", "version: 1\nweights:\n  group_size: 64\n  fallback: error\nskip: [lm_head, embed_token]\n")
	code, _, errOut = runCLI(t, "", "recipes", "validate", strict, "--model", model)
	if code != exitBadInput || !strings.Contains(errOut, strict+":4:13: weights.group_size 64 does not divide the input dimension 172 of down_proj") ||
		!strings.Contains(errOut, strict+`:5:17: skip[1]: pattern "embed_token" matches no module`) {
		t.Errorf("fallback: error: exit %d\n%s", code, errOut)
	}

	// The calibration file is checked, relative to the recipe.
	calib := writeTestFile(t, dir, "calib.yaml", "version: 1\ncalibration:\n  data: corpus.txt\n")
	if code, _, errOut := runCLI(t, "", "recipes", "validate", calib); code != exitBadInput || !strings.Contains(errOut, calib+":3:9: calibration.data: there is no file "+filepath.Join(dir, "corpus.txt")) {
		t.Errorf("missing calibration file: exit %d\n%s", code, errOut)
	}
	writeTestFile(t, dir, "corpus.txt", "Once upon a time.")
	if code, out, errOut := runCLI(t, "", "recipes", "validate", calib); code != 0 || out != "ok\n" {
		t.Errorf("present calibration file: exit %d %s %s", code, out, errOut)
	}

	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"recipes", "validate"}, exitUsage},
		{[]string{"recipes", "show"}, exitUsage},
		{[]string{"recipes", "list", "extra"}, exitUsage},
		{[]string{"recipes", "validate", good, "--bogus"}, exitUsage},
		{[]string{"recipes", "validate", filepath.Join(dir, "missing.yaml")}, exitBadInput},
		{[]string{"recipes", "validate", good, "--model", filepath.Join(dir, "nomodel")}, exitBadInput},
		{[]string{"recipes", "show", "w4a8-ftpq"}, exitBadInput},
		{[]string{"recipes", "validate", "w4a8-rtn"}, exitOK},
	} {
		if code, _, errOut := runCLI(t, "", c.args...); code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, errOut)
		}
	}
}
