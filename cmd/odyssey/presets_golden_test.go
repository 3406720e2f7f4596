package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// presetGoldenKinds are the presets whose artifacts TestQuantizePresetsGolden pins: every
// shipped preset, the calibrated ones included.
var presetGoldenKinds = []string{"w4a8-rtn", "w4a8-fptq", "w4a8-odyssey", "w4a16-gptq", "w8a8-smoothquant"}

// goldenChildEnv marks a child process of TestQuantizePresetsGolden (it then checks the
// golden under its own kernel settings and starts no children).
const goldenChildEnv = "ODYSSEY_GOLDEN_CHILD"

// TestQuantizePresetsGolden quantizes tiny-llama with every preset (a small calibration: 4
// windows of 64 tokens of the sample text) and compares the sha256 of every tensor and of
// config.json with testdata/golden/tiny-presets.sha256.json. ONE set of hashes holds on every
// CPU, build and core count (docs/determinism.md: the gemm kernels, the exponential and the
// quantization sums all follow one canonical arithmetic), so the test never skips. Besides
// the run in this process (whatever kernel this CPU picks), it reruns itself, unless -short,
// under every assembly gemm kernel this CPU has (ODYSSEY_GEMM_KERNEL) with GOMAXPROCS 1, the
// default kernel with GOMAXPROCS 2, and the pure-Go kernel with the exp and quantization
// vector kernels off (ODYSSEY_NO_SIMD=1) at GOMAXPROCS 2: each must give the same bytes. The
// pure-Go build is checked by running the test with -tags purego. It also pins the artifacts
// across memory-only changes of the calibration and quantization (issue 10), which must not
// move a byte. Regenerate (only after a deliberate change of the arithmetic, reviewing the
// diff) with: go test ./cmd/odyssey -run TestQuantizePresetsGolden -update
func TestQuantizePresetsGolden(t *testing.T) {
	golden := sharedtest.Testdata("golden/tiny-presets.sha256.json")
	want := map[string]map[string]string{} // preset → tensor → hash
	if b, err := os.ReadFile(golden); err == nil {
		if err := json.Unmarshal(b, &want); err != nil && !*updateGolden {
			t.Fatal(err)
		}
	} else if !*updateGolden {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	t.Logf("%s, gemm kernel %s, GOMAXPROCS %d, ODYSSEY_NO_SIMD=%q", runtime.GOARCH, gemm.Kernel(),
		runtime.GOMAXPROCS(0), os.Getenv("ODYSSEY_NO_SIMD"))
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
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", golden)
		return
	}
	for _, p := range presetGoldenKinds {
		w := want[p]
		if w == nil {
			t.Errorf("%s: no golden hashes (run with -update)", p)
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
	if os.Getenv(goldenChildEnv) != "" || testing.Short() {
		return
	}
	for _, c := range goldenConfigs() {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestQuantizePresetsGolden$", "-test.count=1")
			cmd.Env = append(os.Environ(), goldenChildEnv+"=1", "GOMAXPROCS="+fmt.Sprint(c.procs), "ODYSSEY_GEMM_KERNEL="+c.kernel)
			if c.noSIMD {
				cmd.Env = append(cmd.Env, "ODYSSEY_NO_SIMD=1")
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("kernel %s, GOMAXPROCS %d, no SIMD %v: the artifacts differ from the golden (%v):\n%s",
					c.kernel, c.procs, c.noSIMD, err, out)
			}
		})
	}
}

type goldenConfig struct {
	name   string
	kernel string
	procs  int
	noSIMD bool
}

// goldenConfigs lists the child runs of TestQuantizePresetsGolden: every gemm kernel at
// GOMAXPROCS 1, the default one at 2, and the pure-Go kernel without any vector kernel at 2
// (it is ten times slower than the assembly: one run of it, about 40 s on 2 cores).
func goldenConfigs() []goldenConfig {
	ks := gemm.Kernels()
	var cs []goldenConfig
	gen := ks[len(ks)-1] // the pure-Go kernel is always last
	for _, k := range ks {
		if k != gen || len(ks) == 1 {
			cs = append(cs, goldenConfig{k + "/procs=1", k, 1, false})
		}
	}
	if len(ks) > 1 {
		cs = append(cs, goldenConfig{ks[0] + "/procs=2", ks[0], 2, false})
	}
	return append(cs, goldenConfig{gen + "/nosimd/procs=2", gen, 2, true})
}
