package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/gpu"
)

// linkModel makes a second folder holding tiny-llama's files, so a test has a model and a
// baseline that are different folders.
func linkModel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny-copy")
	os.Mkdir(dir, 0o755)
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json"} {
		if err := os.Symlink(filepath.Join(tiny, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type speedJSON struct {
	OK        bool                  `json:"ok"`
	Model     string                `json:"model"`
	Baseline  string                `json:"baseline"`
	Batches   []int                 `json:"batches"`
	Prompt    int                   `json:"prompt"`
	Gen       int                   `json:"gen"`
	Repeats   int                   `json:"repeats"`
	CopyGBps  float64               `json:"copy_gbps"`
	CUDA      string                `json:"cuda_runtime"`
	RTVersion string                `json:"runtime_version"`
	Date      string                `json:"date"`
	Rows      []map[string]any      `json:"rows"`
	Goals     []speedGoal           `json:"goals"`
	GoalsNote string                `json:"goals_note"`
	GPUName   struct{ Name string } `json:"gpu"`
}

// TestVerifySpeed: the flags reach the runtime, its rows are passed through with the role
// and the ratios to the baseline at the same batch size, the goals follow from the rows
// (the fake's figures: fp16 at 75% of its floor, w4a8 at 50%, w4a8 decode 10/3 = 3.33× fp16
// and prefill 20/15 = 1.33×), and the results files are written once, replaced only with --force.
func TestVerifySpeed(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "speed")
	model := linkModel(t)
	dir := t.TempDir()
	outJSON, outMD := filepath.Join(dir, "e2e.json"), filepath.Join(dir, "e2e.md")
	args := []string{"verify", "speed", "--model", model, "--baseline", tiny, "--batch", "1,8,32", "--prompt", "16", "--gen", "4",
		"--repeats", "3", "--runtime", rt, "--out", outJSON, "--md", outMD}
	code, out, errOut := runCLI(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	fa := readFakeArgs(argsFile)
	// The last run is `info`, for the CUDA version of the results file.
	if len(fa) != 1 || fa[0] != "info" {
		t.Errorf("last runtime call %q, want info", fa)
	}
	var r speedJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !r.OK || r.Model != model || r.Baseline != tiny || len(r.Batches) != 3 || r.Prompt != 16 || r.Gen != 4 || r.Repeats != 3 ||
		r.CopyGBps != 4080 || r.CUDA != "13.0" || r.RTVersion != "0.9.0-fake" || r.Date == "" || len(r.Rows) != 6 {
		t.Fatalf("report %+v", r)
	}
	for i, row := range r.Rows {
		role, b := row["role"], row["batch"].(float64)
		wantRole, wantModel := "baseline", tiny
		if i >= 3 {
			wantRole, wantModel = "model", model
		}
		if role != wantRole || row["model"] != wantModel || row["extra_runtime_field"] != "kept" {
			t.Errorf("row %d: %v", i, row)
		}
		dec, pre := row["decode_speedup_vs_baseline"], row["prefill_speedup_vs_baseline"]
		if wantRole == "baseline" {
			if dec != nil || pre != nil {
				t.Errorf("baseline row %d has ratios: %v", i, row)
			}
			continue
		}
		if d := dec.(float64); !near(d, 10.0/3) {
			t.Errorf("batch %v: decode speed-up %v, want 3.333", b, d)
		}
		if p := pre.(float64); !near(p, 20.0/15) {
			t.Errorf("batch %v: prefill speed-up %v, want 1.333", b, p)
		}
	}
	type g struct {
		name     string
		target   float64
		measured float64 // NaN: not measured
		met      bool
	}
	want := []g{
		{"FP16 decode, batch 1: fraction of the memory floor", 0.70, 0.75, true},
		{"W4A8 decode, batch 1: fraction of its own memory floor", 0.60, 0.5, false},
		{"W4A8 decode tokens/s vs FP16, batch 1", 2.5, 10.0 / 3, true},
		{"W4A8 decode tokens/s vs FP16, batch 8", 2.5, 10.0 / 3, true},
		{"W4A8 prefill (time to first token) vs FP16, batch 1", 1.5, 20.0 / 15, false},
		{"W4A8 prefill (time to first token) vs FP16, batch 8", 1.5, 20.0 / 15, false},
	}
	if len(r.Goals) != len(want) {
		t.Fatalf("goals %+v", r.Goals)
	}
	if r.GoalsNote != "" {
		t.Errorf("a 4.5 ms floor is not launch-bound, but goals_note = %q", r.GoalsNote)
	}
	for i, w := range want {
		gl := r.Goals[i]
		if gl.Name != w.name || gl.Target != w.target || gl.Measured == nil || !near(*gl.Measured, w.measured) || gl.Met != w.met {
			t.Errorf("goal %d: %+v, want %+v", i, gl, w)
		}
	}
	// --out holds the same object; --md the table printed without --json.
	b, err := os.ReadFile(outJSON)
	if err != nil || string(b) != out {
		t.Errorf("--out differs from --json output (%v)", err)
	}
	md, err := os.ReadFile(outMD)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"| " + tiny + " (baseline) | fp16 | 8 | 160.00 | 533.3 | 15.000 | 11.250 | 75% | 4.7 GiB | – | – |",
		"| " + model + " | w4a8 | 32 | 480.00 | 3555.6 | 9.000 | 4.500 | 50% | 4.7 GiB | 3.33× | 1.33× |",
		"| W4A8 decode, batch 1: fraction of its own memory floor | ≥ 60% | 50% | **no** (83% of the target) |",
		"| W4A8 decode tokens/s vs FP16, batch 8 | ≥ 2.50× | 3.33× | yes |",
		"NVIDIA H200 (fake)", "CUDA 13.0", "copy bandwidth 4080 GB/s", "Prompt 16 tokens, 4 generated; median of 3 runs"} {
		if !strings.Contains(string(md), w) {
			t.Errorf("markdown lacks %q:\n%s", w, md)
		}
	}

	// The results exist: refused before the run, and left as they were.
	os.WriteFile(outMD, []byte("earlier"), 0o644)
	os.Remove(argsFile)
	code, _, errOut = runCLI(t, "", args...)
	if code != exitExists || !strings.Contains(errOut, "already exists (add --force") {
		t.Errorf("existing results: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(argsFile); err == nil {
		t.Error("the runtime ran although the results could not be written")
	}
	if b, _ := os.ReadFile(outMD); string(b) != "earlier" {
		t.Error("the markdown was replaced without --force")
	}
	code, out, errOut = runCLI(t, "", append(args, "--force")...)
	if b, _ := os.ReadFile(outMD); code != 0 || string(b) != out {
		t.Errorf("--force: exit %d, markdown %q, stdout %q: %s", code, b, out, errOut)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("the results folder holds %d entries (temporary files left?)", len(ents))
	}
}

// TestVerifySpeedKVCaches: --kv-cache fp16,int8 reaches the runtime as one run; the model's rows
// of both caches get their ratios to the same fp16 baseline, and the goals are listed for the
// fp16 cache under the names and again for the int8 cache under names ending
// "(int8 KV cache)" (the fake's int8 decode: 10/2 = 5× the baseline).
func TestVerifySpeedKVCaches(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "speed")
	model := linkModel(t)
	args := []string{"verify", "speed", "--model", model, "--baseline", tiny, "--batch", "1,8", "--prompt", "16", "--gen", "4",
		"--repeats", "2", "--runtime", rt, "--kv-cache", "fp16,int8"}
	code, out, errOut := runCLI(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if fa := readFakeArgs(argsFile); argAfter(fa, "--kv-cache") != "fp16,int8" {
		t.Errorf("runtime args %q: want --kv-cache fp16,int8", fa)
	}
	var r speedJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(r.Rows) != 6 {
		t.Fatalf("%d rows, want 2 baseline + 2 × 2 model", len(r.Rows))
	}
	for _, row := range r.Rows[2:] {
		want := 10.0 / 3
		if row["kv_cache"] == "int8" {
			want = 5
		}
		if d, _ := row["decode_speedup_vs_baseline"].(float64); !near(d, want) {
			t.Errorf("row %v: decode speed-up %v, want %v", row, d, want)
		}
		kv, ok := row["decode_speedup_vs_fp16_kv"].(float64)
		if row["kv_cache"] == "int8" && (!ok || !near(kv, 1.5)) || row["kv_cache"] != "int8" && ok {
			t.Errorf("row %v: int8 vs fp16 KV %v (%v), want 1.5 on int8 rows only", row, kv, ok)
		}
	}
	goals := map[string]float64{}
	for _, g := range r.Goals {
		if g.Measured != nil {
			goals[g.Name] = *g.Measured
		}
	}
	for name, v := range map[string]float64{
		"W4A8 decode tokens/s vs FP16, batch 8":                               10.0 / 3,
		"W4A8 decode tokens/s vs FP16, batch 8 (int8 KV cache)":               5,
		"W4A8 decode, batch 1: fraction of its own memory floor":              0.5,
		"W4A8 prefill (time to first token) vs FP16, batch 1 (int8 KV cache)": 20.0 / 15,
	} {
		if got, ok := goals[name]; !ok || !near(got, v) {
			t.Errorf("goal %q = %v (present %v), want %v; goals %v", name, got, ok, v, goals)
		}
	}
	if len(r.Goals) != 1+2*5 {
		t.Errorf("%d goals, want the FP16 floor and 5 per cache", len(r.Goals))
	}
	code, md, _ := runCLI(t, "", args...)
	if code != 0 || !strings.Contains(md, "| w4a8 (int8 KV) | 8 |") || !strings.Contains(md, "(int8 KV cache) | ≥ 2.50× | 5.00× | yes |") ||
		!strings.Contains(md, "int8 KV cache vs the fp16 one, same model: batch 1 1.50×, batch 8 1.50×.") {
		t.Errorf("markdown lacks the int8 rows or goals:\n%s", md)
	}
	// One cache twice, an unknown one, or a list with --tp: refused before the runtime runs.
	for _, bad := range [][]string{{"--kv-cache", "int8,int8"}, {"--kv-cache", "fp16,bf16"}, {"--kv-cache", "fp16,int8", "--tp", "2"}} {
		os.Remove(argsFile)
		a := append(slices.Clone(args[:len(args)-2]), bad...)
		if code, _, errOut := runCLI(t, "", a...); code != exitUsage || !strings.Contains(errOut, "--kv-cache") {
			t.Errorf("%v: exit %d: %s", bad, code, errOut)
		}
		if _, err := os.Stat(argsFile); err == nil {
			t.Errorf("%v: the runtime ran", bad)
		}
	}
}

// TestVerifySpeedNoBaseline: without a baseline the ratio goals are listed as not measured.
func TestVerifySpeedNoBaseline(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "speed")
	code, out, errOut := runCLI(t, "", "verify", "speed", "--model", tiny, "--runtime", rt, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	fa := readFakeArgs(argsFile)
	if strings.Join(fa, " ") != "speed --model "+tiny+" --batch 1,8,16,32,64 --prompt 1024 --gen 128 --repeats 5" {
		t.Errorf("runtime arguments %q", fa)
	}
	var r speedJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 5 || len(r.Goals) != 4 {
		t.Fatalf("rows %d, goals %+v", len(r.Rows), r.Goals)
	}
	for _, gl := range r.Goals[2:] {
		if gl.Measured != nil || gl.Met || !strings.Contains(gl.Note, "not measured") {
			t.Errorf("goal %+v", gl)
		}
	}
	if gl := r.Goals[0]; gl.Measured != nil || gl.Met {
		t.Errorf("FP16 goal without an FP16 row: %+v", gl)
	}
}

// TestVerifySpeedTP: --tp runs one runtime process per GPU, each told its rank, the world, its
// GPU and a shared unique-id file; rank 0's figures are reported with the split; ranks that
// generate different tokens, or a rank that fails, end the command with a message naming it.
func TestVerifySpeedTP(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "speed")
	model := linkModel(t)
	args := []string{"verify", "speed", "--model", model, "--baseline", tiny, "--batch", "1,8", "--prompt", "16", "--gen", "4",
		"--repeats", "2", "--runtime", rt, "--tp", "3", "--gpus", "5,6,7", "--tp-bits", "8", "--tp-group", "64", "--tp-threshold", "4096"}
	code, out, errOut := runCLI(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var uid string
	for r := 0; r < 3; r++ {
		a := readFakeArgs(argsFile + ".rank" + strconv.Itoa(r))
		if argAfter(a, "--tp") != "3" || argAfter(a, "--rank") != strconv.Itoa(r) || argAfter(a, "--tp-bits") != "8" ||
			argAfter(a, "--tp-group") != "64" || argAfter(a, "--tp-threshold") != "4096" || argAfter(a, "--baseline") != tiny ||
			!slices.Contains(a, "CUDA_VISIBLE_DEVICES="+strconv.Itoa(5+r)) || !slices.Contains(a, "ODY_WORLD=3") {
			t.Errorf("rank %d ran with %q", r, a)
		}
		if u := argAfter(a, "--uid-file"); u == "" || (uid != "" && u != uid) {
			t.Errorf("rank %d: unique-id file %q, rank 0's %q", r, u, uid)
		} else {
			uid = u
		}
	}
	if _, err := os.Stat(filepath.Dir(uid)); !os.IsNotExist(err) {
		t.Errorf("the unique-id folder %s is left: %v", filepath.Dir(uid), err)
	}
	var r struct {
		Rows []map[string]any `json:"rows"`
		TP   *struct {
			TP             int      `json:"tp"`
			GPUs           []string `json:"gpus"`
			Bits, Group    int
			Threshold      int64 `json:"threshold"`
			RanksIdentical bool  `json:"ranks_identical"`
		} `json:"tensor_parallel"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.TP == nil || r.TP.TP != 3 || !slices.Equal(r.TP.GPUs, []string{"5", "6", "7"}) ||
		r.TP.Bits != 8 || r.TP.Group != 64 || r.TP.Threshold != 4096 || !r.TP.RanksIdentical || len(r.Rows) != 4 {
		t.Errorf("report: %v %+v\n%s", err, r.TP, out)
	}
	// The markdown table names the split.
	code, out, _ = runCLI(t, "", args...)
	if code != 0 || !strings.Contains(out, "Tensor parallel over 3 GPUs (5,6,7)") || !strings.Contains(out, "compressed INT8, groups of 64, ncclAllReduce below 4096 values") {
		t.Errorf("table: exit %d\n%s", code, out)
	}

	t.Setenv("ODYSSEY_FAKE_RT_DIFFER_RANK", "2")
	code, _, errOut = runCLI(t, "", args...)
	if code != exitFailure || !strings.Contains(errOut, "tensor-parallel ranks disagree") || !strings.Contains(errOut, "rank 2 generated tokens") {
		t.Errorf("ranks that disagree: exit %d: %s", code, errOut)
	}
	t.Setenv("ODYSSEY_FAKE_RT_DIFFER_RANK", "")
	t.Setenv("ODYSSEY_FAKE_RT_FAIL_RANK", "1")
	code, _, errOut = runCLI(t, "", args...)
	if code != exitFailure || !strings.Contains(errOut, "tensor-parallel rank 1 of 3 (GPU 6)") || !strings.Contains(errOut, "remote process exited") {
		t.Errorf("a failing rank: exit %d: %s", code, errOut)
	}
}

func TestVerifySpeedBadInput(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "speed")
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--baseline", tiny + "/"}, exitUsage, "--model and --baseline are the same folder"},
		{[]string{"--batch", "1,0"}, exitUsage, `--batch: "0" is not a positive integer`},
		{[]string{"--batch", "8,8"}, exitUsage, "--batch lists 8 twice"},
		{[]string{"--tp", "0"}, exitUsage, "--tp must be 1 to 64"},
		{[]string{"--tp-bits", "8"}, exitUsage, "need --tp 2 or more"},
		{[]string{"--tp", "2", "--tp-bits", "6"}, exitUsage, "--tp-bits must be 16, 8 or 4"},
		{[]string{"--tp", "2", "--gpus", "1,1"}, exitUsage, "lists GPU 1 twice"},
		{[]string{"--tp", "2", "--gpus", "3"}, exitUsage, "--gpus names 1 GPUs for --tp 2"},
		{[]string{"--batch", ""}, exitUsage, "at least one batch size"},
		{[]string{"--prompt", "0"}, exitUsage, "--prompt must be at least 1"},
		{[]string{"--repeats", "0"}, exitUsage, "--repeats must be at least 1"},
		{[]string{"--kv-cache", "fp16,int8,bf16"}, exitUsage, `--kv-cache must be fp16, int8 or fp16,int8, got "fp16,int8,bf16"`},
		{[]string{"--out", filepath.Join(dir, "a.json"), "--md", filepath.Join(dir, "a.json")}, exitUsage, "name the same file"},
		{[]string{"--out", filepath.Join(dir, "no", "a.json")}, exitUsage, "does not exist"},
		{[]string{"--md", dir}, exitUsage, "is a folder"},
		{[]string{"--baseline", filepath.Join(dir, "none")}, exitBadInput, "--baseline: stat " + filepath.Join(dir, "none") + ": no such file"},
		{[]string{"--baseline", dir}, exitBadInput, "--baseline " + dir + " has no config.json"},
	}
	for _, c := range cases {
		os.Remove(argsFile)
		code, out, errOut := runCLI(t, "", append([]string{"verify", "speed", "--model", tiny, "--runtime", rt}, c.args...)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr lacks %q: %s", c.args, code, c.code, out, c.want, errOut)
		}
		if _, err := os.Stat(argsFile); err == nil {
			t.Errorf("%v: the runtime ran", c.args)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// hfJSON is what runtime/bench/hf_baseline.py prints, for batches 1 and 8 (a batch-32 row
// that ran out of memory carries only an error).
const hfJSON = `{"ok": true, "model": "/tmp/7b", "torch": "2.11.0", "transformers": "5.17.0", "cuda": "13.0",
 "gpu": {"name": "NVIDIA H200"}, "copy_gbps": 4100.0, "rows": [
 {"model": "/tmp/7b", "path": "hf-fp16-eager", "mode": "eager", "batch": 1, "prompt": 16, "gen": 4, "ttft_ms": 40, "decode_tokens_per_s": 20},
 {"model": "/tmp/7b", "path": "hf-fp16-eager", "mode": "eager", "batch": 8, "prompt": 16, "gen": 4, "ttft_ms": 300, "decode_tokens_per_s": 140},
 {"model": "/tmp/7b", "path": "hf-fp16-static", "mode": "static", "batch": 1, "prompt": 16, "gen": 4, "ttft_ms": 30, "decode_tokens_per_s": 100},
 {"model": "/tmp/7b", "path": "hf-fp16-static", "mode": "static", "batch": 8, "prompt": 16, "gen": 4, "ttft_ms": 200, "decode_tokens_per_s": 400},
 {"model": "/tmp/7b", "path": "hf-fp16-static", "mode": "static", "batch": 32, "prompt": 16, "gen": 4, "error": "out of GPU memory"}]}`

// TestVerifySpeedHF: --hf adds the speed-ups over HF transformers to the rows and the goal
// that the FP16 path beats the compiled HF generate at each batch size both measured (the
// fake's FP16 decodes 1000/10.625 = 94.1 tok/s at batch 1, 8000/15 = 533.3 at batch 8).
func TestVerifySpeedHF(t *testing.T) {
	rt, _, _ := fakeRT(t, "speed")
	model := linkModel(t)
	hf := filepath.Join(t.TempDir(), "hf.json")
	os.WriteFile(hf, []byte(hfJSON), 0o644)
	args := []string{"verify", "speed", "--model", model, "--baseline", tiny, "--batch", "1,8,32", "--prompt", "16", "--gen", "4",
		"--repeats", "3", "--runtime", rt, "--hf", hf}
	code, out, errOut := runCLI(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r speedJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	fp16b1, w4b8 := r.Rows[0], r.Rows[4]
	if !near(fp16b1["decode_speedup_vs_hf_static"].(float64), (1000/10.625)/100) || !near(fp16b1["decode_speedup_vs_hf_eager"].(float64), (1000/10.625)/20) ||
		!near(fp16b1["prefill_speedup_vs_hf_static"].(float64), 30.0/20) || !near(w4b8["decode_speedup_vs_hf_eager"].(float64), (8000/4.5)/140) {
		t.Errorf("rows %v\n%v", fp16b1, w4b8)
	}
	if _, ok := r.Rows[2]["decode_speedup_vs_hf_static"]; ok {
		t.Errorf("batch 32 compared with a row that ran out of memory: %v", r.Rows[2])
	}
	hfGoals := r.Goals[len(r.Goals)-2:]
	if hfGoals[0].Name != "FP16 decode tokens/s vs HF FP16 generate (static cache, compiled), batch 1" || !near(*hfGoals[0].Measured, 0.94117647058823529) || hfGoals[0].Met ||
		hfGoals[1].Name != "FP16 decode tokens/s vs HF FP16 generate (static cache, compiled), batch 8" || !near(*hfGoals[1].Measured, (8000.0/15)/400) || !hfGoals[1].Met {
		t.Errorf("HF goals %+v %+v", hfGoals[0], hfGoals[1])
	}
	code, out, _ = runCLI(t, "", args...)
	for _, w := range []string{"HF transformers 5.17.0 (torch 2.11.0, CUDA 13.0)", "| " + tiny + " (baseline) | fp16 | 1 | 94.1 | 20.0 | 100.0 | 4.71× | 0.94× | 20.00 | 40.00 | 30.00 |",
		"| " + model + " | w4a8 | 32 | 3555.6 | – | – | – | – |"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}

	// Other lengths, or not the script's output: refused before the run.
	for _, c := range []struct{ file, want string }{
		{strings.ReplaceAll(hfJSON, `"prompt": 16`, `"prompt": 1024`), "row 0 measured prompt 1024 and gen 4; this run has --prompt 16 --gen 4"},
		{`{"ok": true, "rows": []}`, "not the output of runtime/bench/hf_baseline.py"},
		{`[1, 2]`, "--hf"},
		{strings.Replace(hfJSON, `"decode_tokens_per_s": 20`, `"decode_tokens_per_s": 0`, 1), "row 0: mode \"eager\", batch 1, decode_tokens_per_s 0"},
	} {
		os.WriteFile(hf, []byte(c.file), 0o644)
		code, _, errOut := runCLI(t, "", args...)
		if code != exitBadInput || !strings.Contains(errOut, c.want) {
			t.Errorf("exit %d, stderr lacks %q: %s", code, c.want, errOut)
		}
	}
}

// TestLaunchBoundNote: the note appears only when every batch-1 row's floor is under 50 µs
// (tiny-llama's 2 µs), names the largest of them and the FP16 step, and a 7B-sized floor in
// any batch-1 row suppresses it; rows at other batch sizes do not count.
func TestLaunchBoundNote(t *testing.T) {
	tinyRows := []gpu.SpeedRow{
		{Path: "fp16", Batch: 1, MemoryFloorMsPerStep: 0.002, DecodeMsPerStep: 0.077},
		{Path: "w4a8", Batch: 1, MemoryFloorMsPerStep: 0.001, DecodeMsPerStep: 0.091},
		{Path: "fp16", Batch: 64, MemoryFloorMsPerStep: 0.2, DecodeMsPerStep: 0.3},
	}
	n := launchBoundNote(tinyRows)
	for _, w := range []string{"Launch-bound", "at most 2.0 µs", "the FP16 step takes 77 µs", "LLaMA-2-7B"} {
		if !strings.Contains(n, w) {
			t.Errorf("note lacks %q: %q", w, n)
		}
	}
	big := append(slices.Clone(tinyRows), gpu.SpeedRow{Path: "w4a8", Batch: 1, MemoryFloorMsPerStep: 0.99})
	if n := launchBoundNote(big); n != "" {
		t.Errorf("a 7B-sized floor got a note: %q", n)
	}
	if n := launchBoundNote(tinyRows[2:]); n != "" {
		t.Errorf("no batch-1 row, but a note: %q", n)
	}
	if n := launchBoundNote([]gpu.SpeedRow{{Path: "fp16", Batch: 1, MemoryFloorMsPerStep: launchBoundFloorMs}}); n != "" {
		t.Errorf("a floor at the threshold got a note: %q", n)
	}
}
