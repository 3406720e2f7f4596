package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// presetGoldenKinds are the presets whose artifacts TestQuantizePresetsGolden pins: every
// shipped preset, the calibrated ones included.
var presetGoldenKinds = []string{"w4a8-rtn", "w4a8-fptq", "w4a8-odyssey", "w4a16-gptq", "w8a8-smoothquant"}

// TestQuantizePresetsGolden quantizes tiny-llama with every preset (a small calibration: 4
// windows of 64 tokens of the sample text) and compares the sha256 of every tensor and of
// config.json with testdata/golden/tiny-presets.sha256.json. It pins the artifacts across
// memory-only changes of the calibration and quantization (issue 10: XᵀX accumulated in its
// upper triangle, pools released between stages), which must not move a byte. Unlike
// w4a8-rtn's golden, calibrated artifacts go through float32 products whose last bits depend
// on the gemm micro-kernel, so the golden file holds hashes per GOARCH/kernel, and the test
// skips on a kernel it has none for. Regenerate (after a deliberate change, reviewing the
// diff) with: go test ./cmd/odyssey -run TestQuantizePresetsGolden -update
func TestQuantizePresetsGolden(t *testing.T) {
	key := runtime.GOARCH + "/" + gemm.Kernel()
	golden := sharedtest.Testdata("golden/tiny-presets.sha256.json")
	all := map[string]map[string]map[string]string{} // key → preset → tensor → hash
	if b, err := os.ReadFile(golden); err == nil {
		if err := json.Unmarshal(b, &all); err != nil {
			t.Fatal(err)
		}
	} else if !*updateGolden {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	want := all[key]
	if want == nil && !*updateGolden {
		t.Skipf("no golden hashes for %s (the file has them for other kernels; add with -update)", key)
	}
	got := map[string]map[string]string{}
	for _, p := range presetGoldenKinds {
		out := filepath.Join(t.TempDir(), p)
		rec := writeRecipe(t, "version: 1\nbase: "+p+"\ncalibration:\n  samples: 4\n  seq_len: 64\n  seed: 3\n")
		args := []string{"--model", tiny, "--out", out, "--recipe", rec, "--calib", sample, "--no-sync"}
		if p == "w8a8-smoothquant" { // int8 weights: the odyssey format stores int4 only
			args = append(args, "--export", "compressed-tensors")
		}
		if code, _, errOut := quantize(t, args...); code != 0 {
			t.Fatalf("%s: exit %d: %s", p, code, errOut)
		}
		got[p] = tensorHashes(t, out)
	}
	if *updateGolden {
		all[key] = got
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s for %s", golden, key)
		return
	}
	for _, p := range presetGoldenKinds {
		w := want[p]
		if w == nil {
			t.Errorf("%s: no golden hashes for %s (run with -update)", p, key)
			continue
		}
		g := got[p]
		if len(g) != len(w) {
			t.Errorf("%s: %d tensors (and config.json), golden has %d", p, len(g), len(w))
		}
		for k, v := range w {
			if g[k] != v {
				t.Errorf("%s: %s: %s, golden %s", p, k, g[k], v)
			}
		}
	}
}
