package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/odyssey-llm/odyssey/model"
)

// The verify tests run the test binary itself as odyssey-rt (the pattern of os/exec's
// tests): TestMain hands the process to fakeExecutor when $ODYSSEY_FAKE_RT names a mode. The
// fake reads the real token windows file and answers with the protocol of docs/executor.md,
// so the tests check the plumbing end to end without a GPU.

const (
	envFakeRT   = "ODYSSEY_FAKE_RT"
	envFakeArgs = "ODYSSEY_FAKE_RT_ARGS" // the fake writes its arguments here, one a line
	envFakeCopy = "ODYSSEY_FAKE_RT_COPY" // and a copy of the tokens file here
)

// fakeNLL is the "hash" mode's NLL of a window: a function of every scored token and its
// predecessor, so a window written shifted, truncated or reordered gets other values.
func fakeNLL(w []int) float64 {
	var s float64
	for p := 1; p < len(w); p++ {
		s += 0.5 + float64((w[p]*7+w[p-1])%13)/4
	}
	return s
}

var fakeGPU = gpu.GPU{Name: "NVIDIA H200 (fake)", CC: "9.0", Driver: "580.65.06", MemoryBytes: 150121070592}

// fakeExecutor is odyssey-rt for the tests. Modes: hash (NLLs from fakeNLL), cpu (the CPU
// forward pass's NLLs, batch by batch as eval.Perplexity runs them), fail (a runtime error),
// hang (never answers), short (one window fewer than given), speed (canned speed rows).
func fakeExecutor(mode string, args []string) int {
	out := json.NewEncoder(os.Stdout)
	fail := func(format string, a ...any) int {
		out.Encode(map[string]any{"ok": false, "error": fmt.Sprintf(format, a...)})
		return 1
	}
	if p := os.Getenv(envFakeArgs); p != "" {
		if r := os.Getenv("ODY_RANK"); r != "" { // a tensor-parallel rank: a file of its own
			p += ".rank" + r
			args = append(args, "CUDA_VISIBLE_DEVICES="+os.Getenv("CUDA_VISIBLE_DEVICES"), "ODY_WORLD="+os.Getenv("ODY_WORLD"))
		}
		os.WriteFile(p, []byte(strings.Join(args, "\n")), 0o644)
	}
	// Tensor-parallel failure modes: the rank named by $ODYSSEY_FAKE_RT_FAIL_RANK fails, the one
	// named by $ODYSSEY_FAKE_RT_DIFFER_RANK generates other tokens (fakeSpeed).
	if r := os.Getenv("ODY_RANK"); r != "" && r == os.Getenv("ODYSSEY_FAKE_RT_FAIL_RANK") {
		return fail("rank %s: NCCL error: remote process exited or there was a network error", r)
	}
	if len(args) == 1 && args[0] == "info" {
		out.Encode(map[string]any{"ok": true, "runtime_version": "0.9.0-fake", "cuda_runtime": 13000, "cuda_driver": 13000, "devices": []any{}})
		return 0
	}
	flags := map[string]string{}
	for i := 1; i < len(args); i++ {
		if name, ok := strings.CutPrefix(args[i], "--"); ok {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				flags[name] = args[i+1]
				i++
			} else {
				flags[name] = "true"
			}
		}
	}
	if len(args) == 0 {
		return fail("usage: odyssey-rt ppl|speed")
	}
	switch args[0] {
	case "ppl":
		return fakePPL(mode, flags, out, fail)
	case "speed":
		return fakeSpeed(flags, out, fail)
	}
	return fail("unknown command %q", args[0])
}

func fakePPL(mode string, flags map[string]string, out *json.Encoder, fail func(string, ...any) int) int {
	if p := os.Getenv(envFakeCopy); p != "" {
		b, _ := os.ReadFile(flags["tokens"])
		os.WriteFile(p, b, 0o644)
	}
	f, err := os.Open(flags["tokens"])
	if err != nil {
		return fail("--tokens: %v", err)
	}
	l, windows, err := gpu.ReadTokenWindows(f)
	f.Close()
	if err != nil {
		return fail("%s: %v", flags["tokens"], err)
	}
	fmt.Fprintf(os.Stderr, "fake executor: %d windows of %d from %s\n", len(windows), l, flags["model"])
	batch := max(1, 1024/l)
	if b, err := strconv.Atoi(flags["batch"]); err == nil && b > 0 {
		batch = b
	}
	path := "fp16"
	if artifact.IsArtifact(flags["model"]) {
		path = "w4a8"
	}
	var nllFor func([][]int) ([]float64, error)
	switch mode {
	case "hash", "short", "hang":
		nllFor = func(ws [][]int) ([]float64, error) {
			nll := make([]float64, len(ws))
			for i, w := range ws {
				nll[i] = fakeNLL(w)
			}
			return nll, nil
		}
	case "cpu":
		m, err := fakeLoadModel(flags["model"])
		if err != nil {
			return fail("%v", err)
		}
		mctx := new(model.Context)
		nllFor = func(ws [][]int) ([]float64, error) { return eval.WindowNLL(m, ws, mctx) }
	case "fail":
		fmt.Fprintln(os.Stderr, "executor.cu:123: cudaMalloc(21474836480) failed: out of memory")
		return fail("model needs 20.0 GiB of GPU memory, 15.2 GiB free")
	default:
		return fail("unknown fake mode %q", mode)
	}
	var nll []float64
	for b := 0; b < len(windows); b += batch {
		if mode == "hang" {
			fmt.Fprintf(os.Stderr, "progress 0 %d\n", len(windows))
			time.Sleep(time.Minute)
		}
		v, err := nllFor(windows[b:min(b+batch, len(windows))])
		if err != nil {
			return fail("%v", err)
		}
		nll = append(nll, v...)
		fmt.Fprintf(os.Stderr, "progress %d %d\n", len(nll), len(windows))
	}
	if mode == "short" {
		nll = nll[:len(nll)-1]
	}
	var sum float64
	for _, v := range nll {
		sum += v
	}
	ans := map[string]any{"ok": true, "model": flags["model"], "path": path, "arch": "llama", "seq_len": l,
		"windows": len(nll), "tokens_scored": len(nll) * (l - 1), "batch": batch, "nll_per_window": nll, "nll_sum": sum,
		"seconds": 0.25, "tokens_per_second": float64(len(nll)*(l-1)) / 0.25, "gpu": fakeGPU, "runtime_version": "0.9.0-fake"}
	if tp, err := strconv.Atoi(flags["tp"]); err == nil && tp > 1 {
		bits, _ := strconv.Atoi(flags["tp-bits"])
		group, _ := strconv.Atoi(flags["tp-group"])
		if bits == 16 {
			group = 0
		}
		ans["tp"], ans["tp_bits"], ans["tp_group"], ans["tp_symmetric"], ans["tp_ranks_identical"] = tp, bits, group, flags["tp-sym"] == "true", true
	}
	out.Encode(ans)
	return 0
}

func fakeLoadModel(dir string) (*model.Model, error) {
	if artifact.IsArtifact(dir) {
		a, err := artifact.Open(dir)
		if err != nil {
			return nil, err
		}
		defer a.Close()
		return a.LoadModel()
	}
	hm, err := hf.Load(dir)
	if err != nil {
		return nil, err
	}
	return model.Load(hm)
}

// fakeSpeed answers with rows whose figures follow from the batch size and the role: the
// baseline (fp16) decodes a step in 10·(1+b/16) ms with a TTFT of 20·b ms, the model (w4a8)
// in 3·(1+b/16) ms and 15·b ms; batch 1 runs at 75% (fp16) and 50% (w4a8) of the floor. With
// --kv-cache LIST the model answers a row per cache and batch size (cache-major, as odyssey-rt
// does), each carrying kv_cache; over the int8 cache it decodes in 2·(1+b/16) ms.
func fakeSpeed(flags map[string]string, out *json.Encoder, fail func(string, ...any) int) int {
	var batches []int
	for _, s := range strings.Split(flags["batch"], ",") {
		b, err := strconv.Atoi(s)
		if err != nil {
			return fail("--batch %q", flags["batch"])
		}
		batches = append(batches, b)
	}
	prompt, _ := strconv.Atoi(flags["prompt"])
	gen, _ := strconv.Atoi(flags["gen"])
	repeats, _ := strconv.Atoi(flags["repeats"])
	models := []string{flags["model"]}
	if flags["baseline"] != "" {
		models = []string{flags["baseline"], flags["model"]}
	}
	caches := []string{""}
	if flags["kv-cache"] != "" {
		caches = strings.Split(flags["kv-cache"], ",")
	}
	var rows []map[string]any
	runs, done := (len(models)-1+len(caches))*len(batches)*(repeats+1), 0
	for _, m := range models {
		path, step, ttft, frac := "w4a8", 3.0, 15.0, 0.5
		mc := caches
		if m == flags["baseline"] {
			path, step, ttft, frac, mc = "fp16", 10.0, 20.0, 0.75, []string{""}
		}
		for _, kv := range mc {
			st, kvBytes := step, 524288.0
			if kv == "int8" {
				st, kvBytes = 2.0, 266240
			}
			for _, b := range batches {
				ms := st * (1 + float64(b)/16)
				for range repeats + 1 {
					done++
					fmt.Fprintf(os.Stderr, "progress %d %d\n", done, runs)
				}
				row := map[string]any{"model": m, "path": path, "batch": b, "prompt": prompt, "gen": gen,
					"ttft_ms": ttft * float64(b), "ttft_ms_all": slices.Repeat([]float64{ttft * float64(b)}, repeats),
					"decode_tokens_per_s": float64(b) * 1000 / ms, "decode_ms_per_step": ms, "decode_ms_per_step_all": slices.Repeat([]float64{ms}, repeats),
					"weight_bytes": 3.6e9, "kv_bytes_per_token": kvBytes, "memory_floor_ms_per_step": ms * frac, "fraction_of_floor": frac,
					"gpu_memory_bytes": 5.1e9, "extra_runtime_field": "kept", "tokens_hash": fakeTokensHash(m, b)}
				if kv != "" {
					row["kv_cache"] = kv
				}
				rows = append(rows, row)
			}
		}
	}
	out.Encode(map[string]any{"ok": true, "runtime_version": "0.9.0-fake", "gpu": fakeGPU, "copy_gbps": 4080.0, "rows": rows})
	return 0
}

// fakeTokensHash is a row's tokens_hash: the same on every rank, unless this rank is
// $ODYSSEY_FAKE_RT_DIFFER_RANK.
func fakeTokensHash(model string, batch int) string {
	h := fmt.Sprintf("%016x", uint64(len(model)*1000+batch))
	if r := os.Getenv("ODY_RANK"); r != "" && r == os.Getenv("ODYSSEY_FAKE_RT_DIFFER_RANK") {
		h = "ffff" + h[4:]
	}
	return h
}

// readFakeArgs returns the arguments the fake was last run with.
func readFakeArgs(p string) []string {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	return strings.Split(string(b), "\n")
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
