package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Calibration data that is not text (random bytes, NULs) used to be accepted silently. Now it
// is quantized with a warning that is also recorded in odyssey.json, and --strict refuses it
// (exit 3) before any weight is read; real text gets neither.
func TestQuantizeCalibrationNotText(t *testing.T) {
	base := t.TempDir()
	rec := writeRecipe(t, "version: 1\nbase: w4a8-fptq\ncalibration:\n  samples: 4\n  seq_len: 128\n  seed: 3\n")
	r := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	garbage := filepath.Join(base, "random.txt")
	nuls := filepath.Join(base, "nuls.txt")
	if err := os.WriteFile(garbage, random, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nuls, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{garbage, nuls} {
		out := filepath.Join(base, "strict-"+filepath.Base(data))
		code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec, "--calib", data, "--strict")
		if code != exitBadInput || !strings.Contains(errOut, "does not look like text") {
			t.Errorf("--strict on %s: exit %d, want %d with the reason: %s", filepath.Base(data), code, exitBadInput, errOut)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--strict on %s left %s behind", filepath.Base(data), out)
		}
	}
	out := filepath.Join(base, "warned")
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec, "--calib", garbage)
	if code != 0 || !strings.Contains(errOut, "warning: calibration data") {
		t.Fatalf("without --strict: exit %d, want 0 with a warning: %s", code, errOut)
	}
	prov, err := os.ReadFile(filepath.Join(out, "odyssey.json"))
	if err != nil || !strings.Contains(string(prov), "does not look like text") {
		t.Errorf("odyssey.json does not record the warning (%v)", err)
	}
	clean := filepath.Join(base, "clean")
	if code, _, errOut := quantize(t, "--model", tiny, "--out", clean, "--recipe", rec, "--calib", sample); code != 0 || strings.Contains(errOut, "does not look like text") {
		t.Errorf("real text: exit %d, stderr %s", code, errOut)
	}
}
