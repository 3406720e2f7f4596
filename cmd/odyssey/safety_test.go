package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// tinyCopy copies tiny-llama into dir/name and returns the folder.
func tinyCopy(t *testing.T, dir, name string) string {
	t.Helper()
	m := filepath.Join(dir, name)
	if err := os.MkdirAll(m, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(tiny)
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(tiny, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(m, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func mustExist(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was deleted: %v", p, err)
		}
	}
}

// An output that is, contains or lies inside the model folder (or is or contains the
// calibration file's folder or the working directory) is refused with exit 2 before
// anything is touched: --force used to replace the model with the artifact, and an ancestor
// of the model was deleted with everything in it.
func TestQuantizeOutOverlapsInput(t *testing.T) {
	base := t.TempDir()
	m := tinyCopy(t, base, "model")
	unrelated := filepath.Join(base, "thesis.tex")
	os.WriteFile(unrelated, []byte("years of work"), 0o644)
	calibDir := filepath.Join(base, "data")
	os.Mkdir(calibDir, 0o755)
	cal := filepath.Join(calibDir, "calib.txt")
	b, _ := os.ReadFile(sample)
	os.WriteFile(cal, b, 0o644)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(m, link); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(base, "work")
	os.Mkdir(wd, 0o755)
	t.Chdir(wd)
	for _, c := range []struct {
		name string
		out  string
		want string
	}{
		{"out is the model", m, "is the model folder"},
		{"out is the model via a symlink", link, "is the model folder"},
		{"out is the model, relative", "../model", "is the model folder"},
		{"out contains the model", base, "contains the model folder"},
		{"out inside the model", filepath.Join(m, "w4a8"), "inside the model folder"},
		{"out is the working directory", ".", "is the working directory"},
		{"out contains the working directory", "..", "contains"},
		{"out is the calibration folder", calibDir, "calibration file's folder"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := quantize(t, "--model", m, "--out", c.out, "--force", "--recipe", "w4a8-rtn", "--calib", cal)
			if code != exitUsage || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, want %d and %q: %s", code, exitUsage, c.want, errOut)
			}
			mustExist(t, filepath.Join(m, "model.safetensors"), filepath.Join(m, "config.json"), unrelated, cal)
			if _, err := os.Stat(filepath.Join(m, "odyssey.json")); err == nil {
				t.Error("the model folder was replaced by an artifact")
			}
		})
	}
	// A relative output beside the model is fine.
	if code, _, errOut := quantize(t, "--model", "../model", "--out", "model-w4a8", "--recipe", "w4a8-rtn"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// --force replaces an earlier artifact or an empty folder, nothing else (exit 4).
func TestQuantizeForceReplacesOnlyArtifacts(t *testing.T) {
	base := t.TempDir()
	other := filepath.Join(base, "photos")
	os.Mkdir(other, 0o755)
	keep := filepath.Join(other, "holiday.jpg")
	os.WriteFile(keep, []byte("jpeg"), 0o644)
	code, _, errOut := quantize(t, "--model", tiny, "--out", other, "--force", "--recipe", "w4a8-rtn")
	if code != exitExists || !strings.Contains(errOut, "not an earlier odyssey artifact") || !strings.Contains(errOut, other) {
		t.Errorf("non-artifact folder: exit %d: %s", code, errOut)
	}
	mustExist(t, keep)
	file := filepath.Join(base, "notes.txt")
	os.WriteFile(file, []byte("x"), 0o644)
	if code, _, errOut := quantize(t, "--model", tiny, "--out", file, "--force", "--recipe", "w4a8-rtn"); code != exitExists {
		t.Errorf("a file: exit %d: %s", code, errOut)
	}
	mustExist(t, file)

	empty := filepath.Join(base, "empty")
	os.Mkdir(empty, 0o755)
	if code, _, errOut := quantize(t, "--model", tiny, "--out", empty, "--force", "--recipe", "w4a8-rtn"); code != 0 {
		t.Fatalf("empty folder: exit %d: %s", code, errOut)
	}
	// empty now holds an artifact: --force replaces it again.
	if code, _, errOut := quantize(t, "--model", tiny, "--out", empty, "--force", "--recipe", "w4a8-rtn"); code != 0 {
		t.Fatalf("earlier artifact: exit %d: %s", code, errOut)
	}
	mustExist(t, filepath.Join(empty, "odyssey.json"))
}

// testdata synth --force and bundle --force follow the same rule.
func TestForceOtherCommands(t *testing.T) {
	base := t.TempDir()
	other := filepath.Join(base, "other")
	os.Mkdir(other, 0o755)
	keep := filepath.Join(other, "keep.txt")
	os.WriteFile(keep, []byte("x"), 0o644)
	code, _, errOut := runCLI(t, "", "testdata", "synth", "--shape", "llama2-7b", "--layers", "0", "--out", other, "--force")
	if code != exitExists || !strings.Contains(errOut, "not an earlier synthetic checkpoint") {
		t.Errorf("synth over a foreign folder: exit %d: %s", code, errOut)
	}
	mustExist(t, keep)

	notBundle := filepath.Join(base, "report.tar.zst")
	os.WriteFile(notBundle, []byte("not a bundle"), 0o644)
	code, _, errOut = runCLI(t, "", "bundle", tiny, "-o", notBundle, "--force")
	if code != exitExists || !strings.Contains(errOut, "not a bundle") {
		t.Errorf("bundle over a foreign file: exit %d: %s", code, errOut)
	}
	if b, _ := os.ReadFile(notBundle); string(b) != "not a bundle" {
		t.Error("bundle --force replaced a file that is not a bundle")
	}
	out := filepath.Join(base, "tiny.tar.zst")
	for i := 0; i < 2; i++ { // the second replaces the first
		if code, _, errOut := runCLI(t, "", "bundle", tiny, "-o", out, "--force"); code != 0 {
			t.Fatalf("bundle: exit %d: %s", code, errOut)
		}
	}
}

// A second run into the same output while one holds it is refused with exit 4, naming the
// process that holds it.
func TestQuantizeConcurrentRunRefused(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	unlock, err := lockOutput(out)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", "w4a8-rtn")
	unlock()
	if code != exitExists || !strings.Contains(errOut, "process "+strconv.Itoa(os.Getpid())) {
		if lockOutputIsNoop {
			t.Skip("no file locking on this system")
		}
		t.Errorf("exit %d, want %d naming pid %d: %s", code, exitExists, os.Getpid(), errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the locked-out run wrote the output")
	}
	// Released: the next run proceeds, and leaves no lock file behind.
	if code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", "w4a8-rtn"); code != 0 {
		t.Fatalf("after unlock: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out + ".partial.lock"); err == nil {
		t.Error("lock file left behind")
	}
}

// On a failure the cause is the first thing said, the cleanup note after it.
func TestQuantizeFailureCauseFirst(t *testing.T) {
	base := t.TempDir()
	overflow := writeRecipe(t, smallFPTQ+"integer_scale:\n  amplifier: 16384\n")
	out := filepath.Join(base, "o")
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", overflow, "--calib", sample)
	if code != exitBadInput {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cause, note := strings.Index(errOut, "2³¹"), strings.Index(errOut, "removed the unfinished output")
	if cause < 0 || note < 0 || note < cause {
		t.Errorf("the cause must come before the cleanup note:\n%s", errOut)
	}
}

// A device or an oversized file as text is refused (exit 3) instead of being read without
// end: eval ppl --data /dev/zero grew without bound, quantize --calib /dev/urandom hung.
func TestUnboundedTextRefused(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	code, _, errOut := runCLI(t, "", "eval", "ppl", "--model", tiny, "--data", "/dev/zero")
	if code != exitBadInput || !strings.Contains(errOut, "/dev/zero") || !strings.Contains(errOut, "not a regular file") {
		t.Errorf("eval ppl --data /dev/zero: exit %d: %s", code, errOut)
	}
	out := filepath.Join(t.TempDir(), "o")
	code, _, errOut = quantize(t, "--model", tiny, "--out", out, "--calib", "/dev/urandom")
	if code != exitBadInput || !strings.Contains(errOut, "/dev/urandom") {
		t.Errorf("quantize --calib /dev/urandom: exit %d: %s", code, errOut)
	}
	big := filepath.Join(t.TempDir(), "big.txt")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1<<30 + 1) // sparse: nothing is written
	f.Close()
	code, _, errOut = runCLI(t, "", "eval", "ppl", "--model", tiny, "--data", big)
	if code != exitBadInput || !strings.Contains(errOut, "1 GiB") {
		t.Errorf("eval ppl on a 1 GiB + 1 file: exit %d: %s", code, errOut)
	}
}

// recipes validate lists the first 20 problems, then a count of the rest.
func TestRecipeProblemsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\n")
	for i := range 50 {
		b.WriteString("bogus_" + strconv.Itoa(i) + ": 1\n")
	}
	p := writeRecipe(t, b.String())
	code, _, errOut := runCLI(t, "", "recipes", "validate", p)
	if code != exitBadInput || !strings.Contains(errOut, "and 30 more problems") || !strings.Contains(errOut, "50 problems") ||
		strings.Count(errOut, "bogus_") != 20 {
		t.Errorf("exit %d:\n%s", code, errOut)
	}
}

// A bundle whose manifest declares more than --max-bundle-size is refused (exit 3) before
// anything is unpacked; the message says how to raise the limit.
func TestBundleSizeLimit(t *testing.T) {
	b := filepath.Join(t.TempDir(), "tiny.tar.zst")
	if code, _, errOut := runCLI(t, "", "bundle", tiny, "-o", b); code != 0 {
		t.Fatalf("bundle: exit %d: %s", code, errOut)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	code, _, errOut := runCLI(t, "", "inspect", b, "--max-bundle-size", "1MiB")
	if code != exitBadInput || !strings.Contains(errOut, "--max-bundle-size") || !strings.Contains(errOut, b) {
		t.Errorf("over the limit: exit %d: %s", code, errOut)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left %d entries in $TMPDIR", len(ents))
	}
	if code, _, errOut := runCLI(t, "", "inspect", b, "--max-bundle-size", "64MiB"); code != 0 {
		t.Errorf("within the limit: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "", "inspect", b, "--max-bundle-size", "lots"); code != exitUsage {
		t.Errorf("bad size: exit %d: %s", code, errOut)
	}
}

// A model that computes NaN is an error (exit 3) naming the first layer whose output is not
// finite, not "perplexity NaN" with exit 0.
func TestEvalNaNModel(t *testing.T) {
	m := nanModel(t, "model.layers.2.mlp.up_proj.weight", 1000)
	code, out, errOut := runCLI(t, "", "eval", "ppl", "--model", m, "--data", sample, "--seq-len", "64", "--max-windows", "2")
	if code != exitBadInput || !strings.Contains(errOut, "decoder layer 2") || strings.Contains(out, "NaN") {
		t.Errorf("ppl: exit %d: %s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "eval", "kl", "--ref", tiny, "--model", m, "--data", sample, "--seq-len", "64", "--max-windows", "2")
	if code != exitBadInput || !strings.Contains(errOut, "decoder layer 2") {
		t.Errorf("kl: exit %d: %s%s", code, out, errOut)
	}
}

// A config.json with fewer layers than the checkpoint is refused (exit 3), naming the tensors
// that would be ignored, instead of quantizing a truncated model with exit 0.
func TestQuantizeConfigFewerLayers(t *testing.T) {
	m := copyModel(t, tiny)
	p := filepath.Join(m, "config.json")
	b, _ := os.ReadFile(p)
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["num_hidden_layers"] = 2
	b, _ = json.Marshal(cfg)
	os.WriteFile(p, b, 0o644)
	out := filepath.Join(t.TempDir(), "o")
	code, _, errOut := quantize(t, "--model", m, "--out", out, "--recipe", "w4a8-rtn")
	if code != exitBadInput || !strings.Contains(errOut, "num_hidden_layers 2") || !strings.Contains(errOut, "model.layers.2.") || !strings.Contains(errOut, "more") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("wrote an artifact of a truncated model")
	}
}

// A model without tokenizer.json quantizes (w4a8-rtn needs none), but the artifact cannot be
// served: a warning on stderr, and a note in odyssey.json.
func TestQuantizeNoTokenizerWarns(t *testing.T) {
	m := copyModel(t, tiny)
	os.Remove(filepath.Join(m, "tokenizer.json"))
	out := filepath.Join(t.TempDir(), "o")
	code, _, errOut := quantize(t, "--model", m, "--out", out, "--recipe", "w4a8-rtn")
	if code != 0 || !strings.Contains(errOut, "warning") || !strings.Contains(errOut, "tokenizer.json") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(filepath.Join(out, "odyssey.json"))
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Notes []string `json:"notes"`
	}
	json.Unmarshal(b, &prov)
	found := false
	for _, n := range prov.Notes {
		found = found || strings.HasPrefix(n, "no tokenizer:")
	}
	if !found {
		t.Errorf("odyssey.json notes %q lack the missing tokenizer", prov.Notes)
	}
}
