package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// The artifact does not depend on the number of cores: quantizing tiny-llama at GOMAXPROCS
// 1, 2 and 8 gives byte-identical folders (every file, odyssey.json included), for a text
// calibration and for data-free (self) calibration; so does a run interrupted at one core
// count and resumed at another.
func TestQuantizeGOMAXPROCSIndependent(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		name, recipe string
		calib        []string
	}{
		// Windows of 256 and 192 tokens: calibration statistics see blocks of that many
		// rows, which are split across the cores.
		{"text", "version: 1\nbase: w4a8-fptq\ncalibration:\n  samples: 2\n  seq_len: 256\n  seed: 3\n", []string{"--calib", sample}},
		{"self", "version: 1\nbase: w4a8-fptq\ncalibration:\n  samples: 2\n  seq_len: 192\n  seed: 5\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			rec := writeRecipe(t, c.recipe)
			args := func(out string, extra ...string) []string {
				a := append([]string{"--model", tiny, "--out", out, "--recipe", rec}, c.calib...)
				return append(a, extra...)
			}
			run := func(procs int, out string, extra ...string) map[string][]byte {
				t.Helper()
				runtime.GOMAXPROCS(procs)
				if code, _, errOut := quantize(t, args(out, extra...)...); code != 0 {
					t.Fatalf("GOMAXPROCS=%d: exit %d: %s", procs, code, errOut)
				}
				return filesOf(t, out)
			}
			want := run(1, filepath.Join(base, "p1"))
			compare := func(what string, got map[string][]byte) {
				t.Helper()
				if len(got) != len(want) {
					t.Errorf("%s: %d files, want %d", what, len(got), len(want))
				}
				var names []string
				for name := range want {
					names = append(names, name)
				}
				sort.Strings(names)
				for _, name := range names {
					if !bytes.Equal(want[name], got[name]) {
						t.Errorf("%s: %s differs from the GOMAXPROCS=1 run", what, name)
					}
				}
			}
			for _, procs := range []int{2, 8} {
				compare(fmt.Sprintf("GOMAXPROCS=%d", procs), run(procs, filepath.Join(base, fmt.Sprintf("p%d", procs))))
			}

			// Interrupted after layer 1 on 8 cores, resumed on 2.
			out := filepath.Join(base, "resumed")
			afterLayerHook = func(layer int, interrupt func()) {
				if layer == 1 {
					interrupt()
				}
			}
			runtime.GOMAXPROCS(8)
			code, _, errOut := quantize(t, args(out)...)
			afterLayerHook = nil
			if code != exitInterrupted {
				t.Fatalf("interrupted run: exit %d: %s", code, errOut)
			}
			compare("interrupted at GOMAXPROCS=8, resumed at 2", run(2, out, "--resume"))
		})
	}
}

// Data-free calibration is sized to the model: under 100M parameters the recipe's windows
// are capped at 64×256 (calib.DefaultSelfSamples × DefaultSelfSeqLen), said on stderr and in
// odyssey.json's notes and calibration record; large models get the recipe's numbers.
func TestSelfCalibrationSizedToModel(t *testing.T) {
	for _, c := range []struct {
		samples, seqLen int
		params          int64
		s, l            int
		ok              bool
	}{
		{128, 512, 5_000_000, 64, 256, true},
		{32, 512, 5_000_000, 32, 256, true},
		{16, 128, 5_000_000, 16, 128, false},
		{128, 512, 7_000_000_000, 128, 512, false},
	} {
		if s, l, ok := selfCalibrationSize(c.samples, c.seqLen, c.params); s != c.s || l != c.l || ok != c.ok {
			t.Errorf("selfCalibrationSize(%d, %d, %d) = %d, %d, %v, want %d, %d, %v", c.samples, c.seqLen, c.params, s, l, ok, c.s, c.l, c.ok)
		}
	}
	out := filepath.Join(t.TempDir(), "capped")
	rec := writeRecipe(t, "version: 1\nbase: w4a8-fptq\ncalibration:\n  samples: 100\n  seq_len: 32\n")
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", rec)
	if code != 0 || !strings.Contains(errOut, "64×32 tokens instead of the recipe's 100×32") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	prov, err := os.ReadFile(filepath.Join(out, "odyssey.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prov), "sized to the model") || !strings.Contains(string(prov), `"samples": 64`) {
		t.Errorf("odyssey.json does not record the capped calibration:\n%s", prov)
	}
}
