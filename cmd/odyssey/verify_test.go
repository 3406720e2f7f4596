package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/corpus"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/gpu"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envFakeRT); mode != "" {
		os.Exit(fakeExecutor(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeRT makes the test binary the runtime in mode and returns its path, the file the fake
// writes its arguments to and the file it copies the tokens file to.
func fakeRT(t *testing.T, mode string) (rt, argsFile, copyFile string) {
	t.Helper()
	needUnix(t)
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	argsFile, copyFile = filepath.Join(dir, "args"), filepath.Join(dir, "tokens.copy")
	t.Setenv(envFakeRT, mode)
	t.Setenv(envFakeArgs, argsFile)
	t.Setenv(envFakeCopy, copyFile)
	// The tokens file goes to $TMPDIR: a private one shows whether it is removed.
	t.Setenv("TMPDIR", t.TempDir())
	return exe, argsFile, copyFile
}

// tmpLeft lists what is left in $TMPDIR.
func tmpLeft(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(os.Getenv("TMPDIR"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// sampleWindows tokenizes the sample text as the golden references' protocol says (written
// out here: tokenizer without special tokens, BOS in front, windows of l, remainder dropped)
// and returns the first n windows, the stream length and the number of windows.
func sampleWindows(t *testing.T, l, n int) (windows [][]int, streamLen, total int) {
	t.Helper()
	cfg, err := hf.LoadConfig(filepath.Join(tiny, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(tiny, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := corpus.LoadText(sample, "text")
	if err != nil {
		t.Fatal(err)
	}
	bos, ok := tok.BOS()
	if !ok {
		bos = cfg.BOSTokenID
	}
	stream := append([]int{bos}, tok.Encode(text, false)...)
	total = len(stream) / l
	for i := 0; i < min(n, total); i++ {
		windows = append(windows, stream[i*l:(i+1)*l])
	}
	return windows, len(stream), total
}

type verifyPPLJSON struct {
	Model           string    `json:"model"`
	Data            string    `json:"data"`
	PPL             float64   `json:"ppl"`
	Windows         int       `json:"windows"`
	TotalWindows    int       `json:"total_windows"`
	SeqLen          int       `json:"seq_len"`
	StreamTokens    int       `json:"stream_tokens"`
	TokensScored    int       `json:"tokens_scored"`
	NLLPerWindow    []float64 `json:"nll_per_window"`
	Seconds         float64   `json:"seconds"`
	TokensPerSecond float64   `json:"tokens_per_second"`
	Device          string    `json:"device"`
	Path            string    `json:"path"`
	Batch           int       `json:"batch"`
	GPU             gpu.GPU   `json:"gpu"`
	RuntimeVersion  string    `json:"runtime_version"`
	goldenRef       *goldenRef
	CPU             *struct {
		PPL                         float64   `json:"ppl"`
		NLLPerWindow                []float64 `json:"nll_per_window"`
		RelativeDifference          float64   `json:"relative_difference"`
		MaxWindowRelativeDifference float64   `json:"max_window_relative_difference"`
		Tolerance                   float64   `json:"tolerance"`
		Met                         bool      `json:"met"`
	} `json:"cpu"`
}

// TestVerifyPPL: the windows the runtime reads are the protocol's, its arguments are passed,
// the perplexity is computed from its NLLs, the JSON has eval ppl's shape plus the GPU, the
// progress lines are consumed and the tokens file is gone afterwards.
func TestVerifyPPL(t *testing.T) {
	rt, argsFile, copyFile := fakeRT(t, "hash")
	const l, n = 64, 5
	code, out, errOut := runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64",
		"--max-windows", "5", "--batch", "2", "--runtime", rt, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want, streamLen, total := sampleWindows(t, l, n)
	b, err := os.ReadFile(copyFile)
	if err != nil {
		t.Fatal(err)
	}
	var wantBytes bytes.Buffer
	if err := gpu.WriteTokenWindows(&wantBytes, want, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, wantBytes.Bytes()) {
		t.Errorf("the runtime read %d bytes that are not the protocol's %d windows of %d", len(b), n, l)
	}
	args := readFakeArgs(argsFile)
	if args[0] != "ppl" || argAfter(args, "--model") != tiny || argAfter(args, "--batch") != "2" || argAfter(args, "--tokens") == "" {
		t.Errorf("runtime arguments %q", args)
	}
	if _, err := os.Stat(argAfter(args, "--tokens")); !os.IsNotExist(err) {
		t.Errorf("tokens file %s left behind (%v)", argAfter(args, "--tokens"), err)
	}
	if left := tmpLeft(t); len(left) != 0 {
		t.Errorf("left in $TMPDIR: %v", left)
	}

	var r verifyPPLJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sum float64
	for i, w := range want {
		if r.NLLPerWindow[i] != fakeNLL(w) {
			t.Errorf("window %d NLL %v, want %v", i, r.NLLPerWindow[i], fakeNLL(w))
		}
		sum += fakeNLL(w)
	}
	if wantPPL := math.Exp(sum / float64(n*(l-1))); math.Abs(r.PPL-wantPPL) > 1e-12*wantPPL {
		t.Errorf("ppl %v, want %v", r.PPL, wantPPL)
	}
	if r.Model != tiny || r.Data != sample || r.Windows != n || r.TotalWindows != total || r.SeqLen != l || r.StreamTokens != streamLen ||
		r.TokensScored != n*(l-1) || len(r.NLLPerWindow) != n || r.Device != "cuda" || r.Path != "fp16" || r.Batch != 2 ||
		r.GPU != fakeGPU || r.RuntimeVersion != "0.9.0-fake" || r.Seconds != 0.25 || r.TokensPerSecond != n*l/0.25 || r.CPU != nil {
		t.Errorf("report %+v", r)
	}
	// The runtime's other stderr reaches ours; its progress lines do not.
	if !strings.Contains(errOut, "fake executor: 5 windows of 64") || strings.Contains(errOut, "progress ") {
		t.Errorf("stderr %q", errOut)
	}

	if argAfter(args, "--kv-cache") != "" || !strings.Contains(out, `"kv_cache": "fp16"`) {
		t.Errorf("the default fp16 cache: runtime arguments %q, report %s", args, out)
	}
	// --kv-cache int8 (and its former spelling --kv-int8) reaches the runtime and the report.
	for _, flag := range [][]string{{"--kv-cache", "int8"}, {"--kv-int8"}} {
		code, out, errOut := runCLI(t, "", append([]string{"verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64",
			"--max-windows", "5", "--runtime", rt, "--json"}, flag...)...)
		if a := readFakeArgs(argsFile); code != 0 || argAfter(a, "--kv-cache") != "int8" || !strings.Contains(out, `"kv_cache": "int8"`) {
			t.Errorf("%v: exit %d, runtime arguments %q, report %s%s", flag, code, a, out, errOut)
		}
	}

	// --tp and the codec flags reach the runtime, and its split reaches the report and the table.
	code, out, errOut = runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--max-windows", "5",
		"--runtime", rt, "--json", "--tp", "2", "--tp-bits", "8", "--tp-group", "64", "--tp-symmetric")
	if a := readFakeArgs(argsFile); code != 0 || argAfter(a, "--tp") != "2" || argAfter(a, "--tp-bits") != "8" ||
		argAfter(a, "--tp-group") != "64" || !slices.Contains(a, "--tp-sym") ||
		!strings.Contains(out, `"tensor_parallel": {`) || !strings.Contains(out, `"group": 64`) {
		t.Errorf("--tp 2: exit %d, runtime arguments %q, report %s%s", code, a, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--max-windows", "5",
		"--runtime", rt, "--tp", "2")
	if a := readFakeArgs(argsFile); code != 0 || argAfter(a, "--tp-bits") != "16" ||
		!strings.Contains(out, "2 ranks on one GPU, all-reduce exact") {
		t.Errorf("--tp 2 (exact): exit %d, runtime arguments %q, table %s%s", code, a, out, errOut)
	}
	// Without --tp the runtime is not asked to split.
	runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--max-windows", "5", "--runtime", rt)
	if a := readFakeArgs(argsFile); slices.Contains(a, "--tp") {
		t.Errorf("no --tp: runtime arguments %q", a)
	}

	// The table.
	code, out, errOut = runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--max-windows", "5", "--runtime", rt)
	for _, w := range []string{fmt.Sprintf("perplexity  %.4f", r.PPL), fmt.Sprintf("5 of %d, L = 64, 315 tokens scored", total),
		"NVIDIA H200 (fake), compute capability 9.0, driver 580.65.06, 139.8 GiB", "fp16 path, batch 16", "odyssey-rt 0.9.0-fake"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("exit %d, output lacks %q:\n%s%s", code, w, out, errOut)
		}
	}
}

// TestVerifyPPLCompareCPU: a runtime that computes the CPU forward pass on the windows it
// reads, batch by batch as eval ppl does, gets exactly eval ppl's NLLs: the windows written
// are the ones eval.Perplexity scores. A runtime that computes something else is reported
// beyond the tolerance, with exit 1 and the report still printed.
func TestVerifyPPLCompareCPU(t *testing.T) {
	rt, _, _ := fakeRT(t, "cpu")
	args := []string{"verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "48", "--max-windows", "6", "--batch", "4",
		"--runtime", rt, "--compare-cpu", "--json"}
	code, out, errOut := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r verifyPPLJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	// eval ppl itself, the CLI command, on the same flags.
	code, evalOut, errOut := runCLI(t, "", "eval", "ppl", "--model", tiny, "--data", sample, "--seq-len", "48", "--max-windows", "6", "--batch", "4", "--json")
	var e verifyPPLJSON
	if code != 0 || json.Unmarshal([]byte(evalOut), &e) != nil {
		t.Fatalf("eval ppl: exit %d: %s", code, errOut)
	}
	if r.CPU == nil || len(e.NLLPerWindow) != 6 || r.PPL != e.PPL || r.CPU.PPL != e.PPL || r.CPU.RelativeDifference != 0 ||
		r.CPU.MaxWindowRelativeDifference != 0 || !r.CPU.Met || r.CPU.Tolerance != 0.002 {
		t.Fatalf("verify %+v (cpu %+v), eval ppl %+v", r, r.CPU, e)
	}
	for i := range e.NLLPerWindow {
		if r.NLLPerWindow[i] != e.NLLPerWindow[i] {
			t.Errorf("window %d: GPU path %v, eval ppl %v", i, r.NLLPerWindow[i], e.NLLPerWindow[i])
		}
	}

	t.Setenv(envFakeRT, "hash")
	code, out, errOut = runCLI(t, "", args...)
	r = verifyPPLJSON{}
	if code != exitFailure || json.Unmarshal([]byte(out), &r) != nil || r.CPU == nil || r.CPU.Met ||
		!strings.Contains(errOut, "differs from the CPU's") || !strings.Contains(errOut, "tolerance of 0.2%") {
		t.Errorf("a wrong runtime: exit %d, %+v: %s", code, r.CPU, errOut)
	}
	if wantRel := (r.PPL - r.CPU.PPL) / r.CPU.PPL; r.CPU.RelativeDifference != wantRel {
		t.Errorf("relative difference %v, want %v", r.CPU.RelativeDifference, wantRel)
	}
}

// TestVerifyPPLCompareSim: --compare-sim sets the GPU's split/unsplit ratio beside sim
// allreduce's. The fake runtime computes the CPU forward pass whatever --tp says, so the GPU ratio
// is exactly 1: an exact all-reduce (the simulation's ratio is 1 to ~1e-7) is within the
// tolerance, an INT4 codec (the simulation predicts a few percent) is not, and the command says so.
func TestVerifyPPLCompareSim(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "cpu")
	base := []string{"verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "48", "--max-windows", "4", "--batch", "4",
		"--runtime", rt, "--tp", "2", "--compare-sim", "--json"}
	type simJSON struct {
		PPL float64 `json:"ppl"`
		TP  *struct {
			TP  int `json:"tp"`
			Sim *struct {
				GPUUnsplitPPL float64 `json:"gpu_unsplit_ppl"`
				GPURatio      float64 `json:"gpu_ratio"`
				SimReference  float64 `json:"sim_reference_ppl"`
				SimRatio      float64 `json:"sim_ratio"`
				Difference    float64 `json:"difference"`
				Tolerance     float64 `json:"tolerance"`
				Met           bool    `json:"met"`
			} `json:"sim"`
		} `json:"tensor_parallel"`
	}
	code, out, errOut := runCLI(t, "", base...)
	var r simJSON
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.TP == nil || r.TP.Sim == nil {
		t.Fatalf("exact: exit %d, %s%s", code, out, errOut)
	}
	sc := r.TP.Sim
	if sc.GPURatio != 1 || sc.GPUUnsplitPPL != r.PPL || math.Abs(sc.SimRatio-1) > 1e-5 || !sc.Met || sc.Tolerance != 0.005 ||
		math.Abs(sc.SimReference-r.PPL) > 1e-9*r.PPL || sc.Difference != sc.GPURatio-sc.SimRatio {
		t.Errorf("exact all-reduce: %+v (ppl %v)", *sc, r.PPL)
	}
	// The last runtime call is the unsplit one: no --tp.
	if a := readFakeArgs(argsFile); slices.Contains(a, "--tp") {
		t.Errorf("the unsplit run got %q", a)
	}

	// INT4 moves the simulation's perplexity (by ~0.04% on these few short windows); a tolerance
	// tighter than that makes the command fail and say why.
	int4 := []string{"--tp-bits", "4", "--tp-group", "64", "--sim-tolerance", "0.0001"}
	code, out, errOut = runCLI(t, "", append(slices.Clone(base), int4...)...)
	r = simJSON{}
	if code != exitFailure || json.Unmarshal([]byte(out), &r) != nil || r.TP == nil || r.TP.Sim == nil || r.TP.Sim.Met ||
		math.Abs(r.TP.Sim.SimRatio-1) < 1e-4 || r.TP.Sim.Tolerance != 1e-4 || !strings.Contains(errOut, "sim allreduce predicts") {
		t.Errorf("INT4: exit %d, %s%s", code, out, errOut)
	}
	// The table says it too.
	code, out, _ = runCLI(t, "", append(slices.Clone(base[:len(base)-1]), int4...)...)
	if code != exitFailure || !strings.Contains(out, "GPU vs simulation") || !strings.Contains(out, "BEYOND") {
		t.Errorf("INT4 table: exit %d:\n%s", code, out)
	}
}

func TestVerifyPPLRuntimeFails(t *testing.T) {
	rt, _, _ := fakeRT(t, "fail")
	code, out, errOut := runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--runtime", rt)
	if code != exitFailure || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	for _, w := range []string{"model needs 20.0 GiB of GPU memory", "cudaMalloc(21474836480) failed", "exit status 1"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q: %s", w, errOut)
		}
	}
	if left := tmpLeft(t); len(left) != 0 {
		t.Errorf("left in $TMPDIR: %v", left)
	}

	// A runtime that scores other windows than it was given.
	t.Setenv(envFakeRT, "short")
	code, _, errOut = runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--max-windows", "3", "--runtime", rt)
	if code != exitFailure || !strings.Contains(errOut, "scored 2 windows of 64 tokens; it was given 3 of 64") {
		t.Errorf("short answer: exit %d: %s", code, errOut)
	}

	// A runtime that hangs is killed at --timeout and the tokens file removed.
	t.Setenv(envFakeRT, "hang")
	start := time.Now()
	code, _, errOut = runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--runtime", rt, "--timeout", "1s")
	if code != exitFailure || !strings.Contains(errOut, "timed out") || time.Since(start) > 20*time.Second {
		t.Errorf("hang: exit %d after %v: %s", code, time.Since(start), errOut)
	}
	if left := tmpLeft(t); len(left) != 0 {
		t.Errorf("left in $TMPDIR: %v", left)
	}
}

func TestVerifyNoRuntime(t *testing.T) {
	noRuntime(t)
	for _, args := range [][]string{
		{"verify", "ppl", "--model", tiny, "--data", sample},
		{"verify", "speed", "--model", tiny},
	} {
		start := time.Now()
		code, out, errOut := runCLI(t, "", args...)
		if code != exitFailure || out != "" {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
		for _, w := range []string{"odyssey-rt) was not found", "odyssey runtime build", "ODYSSEY_RT"} {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: stderr lacks %q: %s", args, w, errOut)
			}
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%v took %v", args, time.Since(start))
		}
	}
	code, _, errOut := runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--runtime", "/nonexistent/odyssey-rt")
	if code != exitUsage || !strings.Contains(errOut, "--runtime=/nonexistent/odyssey-rt does not exist") {
		t.Errorf("--runtime missing: exit %d: %s", code, errOut)
	}
}

// TestVerifyPPLBadInput: each mistake is refused before the runtime runs, with its exit code.
func TestVerifyPPLBadInput(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "hash")
	dir := t.TempDir()
	short := filepath.Join(dir, "short.txt")
	os.WriteFile(short, []byte("Hello there."), 0o644)
	noConfig := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data", sample}, exitUsage, `required flag(s) "model"`},
		{[]string{"--model", tiny}, exitUsage, `required flag(s) "data"`},
		{[]string{"--model", tiny, "--data", sample, "--seq-len", "1"}, exitUsage, "--seq-len 1 is too short"},
		{[]string{"--model", tiny, "--data", sample, "--seq-len", "2000000", "--force"}, exitUsage, "beyond the executor's 1048576"},
		{[]string{"--model", tiny, "--data", sample, "--seq-len", "8192"}, exitBadInput, "exceeds " + tiny + "'s max_position_embeddings 1024"},
		{[]string{"--model", tiny, "--data", sample, "--max-windows", "-1"}, exitUsage, "must not be negative"},
		{[]string{"--model", tiny, "--data", sample, "--tolerance", "0"}, exitUsage, "--tolerance must be a positive fraction"},
		{[]string{"--model", tiny, "--data", sample, "--timeout", "0s"}, exitUsage, "--timeout must be positive"},
		{[]string{"--model", filepath.Join(dir, "nope"), "--data", sample}, exitBadInput, "no such file or directory"},
		{[]string{"--model", noConfig, "--data", sample}, exitBadInput, "has no config.json"},
		{[]string{"--model", tiny, "--data", filepath.Join(dir, "nope.txt")}, exitBadInput, "--data"},
		{[]string{"--model", tiny, "--data", dir}, exitBadInput, "is a folder"},
		{[]string{"--model", tiny, "--data", short, "--seq-len", "64"}, exitBadInput, "one window needs 64"},
		{[]string{"--model", tiny, "--data", sample, "--bogus"}, exitUsage, "unknown flag"},
		{[]string{"--model", tiny, "--data", sample, "--kv-cache", "int4"}, exitUsage, `--kv-cache must be fp16 or int8, got "int4"`},
		{[]string{"--model", tiny, "--data", sample, "--tp", "9"}, exitUsage, "--tp must be 1 to 8"},
		{[]string{"--model", tiny, "--data", sample, "--tp", "2", "--tp-bits", "6"}, exitUsage, "--tp-bits must be 16, 8 or 4"},
		{[]string{"--model", tiny, "--data", sample, "--tp-bits", "8"}, exitUsage, "need --tp 2 or more"},
		{[]string{"--model", tiny, "--data", sample, "--compare-sim"}, exitUsage, "need --tp 2 or more"},
		{[]string{"--model", tiny, "--data", sample, "--tp", "2", "--sim-tolerance", "0"}, exitUsage, "--sim-tolerance must be a positive"},
	}
	for _, c := range cases {
		os.Remove(argsFile)
		code, out, errOut := runCLI(t, "", append([]string{"verify", "ppl", "--runtime", rt}, c.args...)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr lacks %q: %s", c.args, code, c.code, out, c.want, errOut)
		}
		if _, err := os.Stat(argsFile); err == nil {
			t.Errorf("%v: the runtime ran", c.args)
		}
	}
	if left := tmpLeft(t); len(left) != 0 {
		t.Errorf("left in $TMPDIR: %v", left)
	}
}

// TestVerifyPPLArtifact: a quantized artifact is handed to the runtime as its folder, and
// --compare-cpu scores it with the artifact's reference arithmetic (what eval ppl runs).
func TestVerifyPPLArtifact(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "cpu")
	art := filepath.Join(t.TempDir(), "tiny-w4a8")
	if code, _, errOut := runCLI(t, "", "quantize", "--model", tiny, "--out", art, "--recipe", "w4a8-rtn", "--no-sync"); code != 0 {
		t.Fatalf("quantize: exit %d: %s", code, errOut)
	}
	flags := []string{"--model", art, "--data", sample, "--seq-len", "64", "--max-windows", "3"}
	code, out, errOut := runCLI(t, "", append([]string{"verify", "ppl", "--runtime", rt, "--compare-cpu", "--json"}, flags...)...)
	var r verifyPPLJSON
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if argAfter(readFakeArgs(argsFile), "--model") != art {
		t.Errorf("runtime arguments %q", readFakeArgs(argsFile))
	}
	code, evalOut, errOut := runCLI(t, "", append([]string{"eval", "ppl", "--json"}, flags...)...)
	var e verifyPPLJSON
	if code != 0 || json.Unmarshal([]byte(evalOut), &e) != nil {
		t.Fatalf("eval ppl: exit %d: %s", code, errOut)
	}
	if r.Path != "w4a8" || r.PPL != e.PPL || r.CPU == nil || r.CPU.PPL != e.PPL || r.CPU.RelativeDifference != 0 || !r.CPU.Met {
		t.Errorf("verify %+v (cpu %+v), eval ppl ppl %v", r, r.CPU, e.PPL)
	}
}

// TestVerifyPPLGolden: --golden picks the entry of the model, the text (by sha256) and L,
// float16 for a run of every window and the float32 entry's NLLs for the first
// --max-windows; beyond --golden-tolerance the command exits 1, the report still printed.
func TestVerifyPPLGolden(t *testing.T) {
	rt, _, _ := fakeRT(t, "hash")
	const l = 64
	all, _, total := sampleWindows(t, l, 1<<30)
	var sum float64
	nll := make([]float64, total)
	for i, w := range all {
		nll[i] = fakeNLL(w) * 1.01 // the float32 entry: 1% off
		sum += fakeNLL(w)
	}
	fullPPL := math.Exp(sum / float64(total*(l-1)))
	text, _ := os.ReadFile(sample)
	sha := fmt.Sprintf("%x", sha256.Sum256(text))
	golden := map[string]any{
		"tiny-llama": map[string]any{"model": "tiny-llama", "results": map[string]any{
			"sample/L64/float16": map[string]any{"ppl": fullPPL * 1.0003, "windows": total, "tokens_scored": total * (l - 1), "text_sha256": sha, "L": l},
			"sample/L64/float32": map[string]any{"ppl": 0, "windows": total, "nll_per_window": nll, "text_sha256": sha, "L": l},
			"other/L64/float16":  map[string]any{"ppl": 1, "windows": total, "text_sha256": "00", "L": l},
		}},
		"small-llama": map[string]any{"results": map[string]any{}},
	}
	gf := filepath.Join(t.TempDir(), "ppl.json")
	b, _ := json.Marshal(golden)
	os.WriteFile(gf, b, 0o644)
	run := func(extra ...string) (int, verifyPPLJSON, string) {
		args := append([]string{"verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--runtime", rt, "--golden", gf, "--json"}, extra...)
		code, out, errOut := runCLI(t, "", args...)
		var r struct {
			verifyPPLJSON
			Golden *goldenRef `json:"golden"`
		}
		if out != "" {
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if r.Golden == nil {
				t.Fatalf("no golden in %s", out)
			}
			r.verifyPPLJSON.goldenRef = r.Golden
		}
		return code, r.verifyPPLJSON, errOut
	}

	code, r, errOut := run()
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	g := r.goldenRef
	if g.Entry != "sample/L64/float16" || g.Model != "tiny-llama" || g.Windows != total || g.PPL != fullPPL*1.0003 ||
		!near(g.RelativeDifference, (r.PPL-g.PPL)/g.PPL) || !g.Met || g.Tolerance != 0.0005 || math.Abs(g.RelativeDifference) < 1e-4 {
		t.Errorf("golden %+v (ppl %v)", g, r.PPL)
	}

	// The first 5 windows: the float32 entry's NLLs, 1% above the runtime's.
	code, r, errOut = run("--max-windows", "5")
	var s5 float64
	for _, v := range nll[:5] {
		s5 += v
	}
	if g := r.goldenRef; code != exitFailure || g == nil || g.Entry != "sample/L64/float32" || g.Windows != 5 || !near(g.PPL, math.Exp(s5/float64(5*(l-1)))) || g.Met ||
		!strings.Contains(errOut, "differs from the golden") || !strings.Contains(errOut, "sample/L64/float32") {
		t.Errorf("5 windows: exit %d, %+v: %s", code, g, errOut)
	}

	// By another name; refusals before the runtime runs.
	if code, _, errOut := runCLI(t, "", "verify", "ppl", "--model", linkModel(t), "--data", sample, "--seq-len", "64", "--runtime", rt,
		"--golden", gf, "--golden-model", "tiny-llama"); code != 0 {
		t.Errorf("--golden-model: exit %d: %s", code, errOut)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--model", linkModel(t), "--golden", gf}, exitBadInput, `has no model "tiny-copy" (it has: small-llama, tiny-llama; name it with --golden-model)`},
		{[]string{"--model", tiny, "--seq-len", "32", "--golden", gf}, exitBadInput, "no entry for tiny-llama on sample.txt (sha256 " + sha[:12] + "…) at L = 32"},
		{[]string{"--model", tiny, "--golden-model", "x"}, exitUsage, "give --golden FILE too"},
		{[]string{"--model", tiny, "--golden", gf, "--golden-tolerance", "-1"}, exitUsage, "--golden-tolerance must be a positive fraction"},
		{[]string{"--model", tiny, "--golden", filepath.Join(t.TempDir(), "none.json")}, exitBadInput, "--golden: open"},
	} {
		code, out, errOut := runCLI(t, "", append([]string{"verify", "ppl", "--data", sample, "--runtime", rt}, c.args...)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr lacks %q: %s", c.args, code, c.code, c.want, errOut)
		}
	}
}
