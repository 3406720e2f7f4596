package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/spf13/cobra"
)

type verifySpeedOptions struct {
	model    string
	baseline string
	batch    string
	prompt   int
	gen      int
	repeats  int
	kvCache  string
	runtime  string
	timeout  time.Duration
	asJSON   bool
	out      string
	md       string
	hf       string
	force    bool
	// Tensor parallelism over NCCL, one process per GPU (gpu.SpeedTP): tp > 1 splits both models.
	tp          int
	tpBits      int
	tpGroup     int
	tpSymmetric bool
	tpThreshold int64
	gpus        string
}

func newVerifySpeedCmd(g *globalOptions) *cobra.Command {
	o := &verifySpeedOptions{}
	cmd := &cobra.Command{
		Use:   "speed --model DIR [--baseline DIR]",
		Short: "Time to first token and decode speed on the GPU, against a baseline",
		Long: `Speed runs odyssey-rt speed: for each batch size, random prompts of --prompt tokens are prefilled and
--gen greedy tokens decoded (CUDA graphs); every figure is the median of --repeats runs after a
warm-up. It prints, per model and batch size, the time to first token, decode tokens/s, the
fraction of the memory floor (the bytes a decode step must read over the copy bandwidth measured
in the same run), the GPU memory used, and the speed-up over --baseline (usually the FP16
checkpoint the artifact was quantized from).

--hf takes the output of runtime/bench/hf_baseline.py (HF transformers FP16 generate, eager and
with a static cache compiled, run on the same GPU with the same lengths) and adds the speed-ups
over it, and the goal that the FP16 path beats the compiled HF at every batch size.

--out and --md write the results (the runtime's rows, the ratios, the goals of issue 14 with
what was measured, GPU, driver, CUDA, commit and date) as JSON and as a markdown table; neither
replaces an existing file without --force.

--tp N splits both models over N GPUs, one odyssey-rt process each over NCCL (rank r on the r-th
of --gpus, default the first N visible): each rank loads its shard of every linear, and o_proj's
and down_proj's outputs are all-reduced by ncclAllReduce (--tp-bits 16) or the compressed
all-reduce (8 or 4, --tp-group, --tp-symmetric; all-reduces of fewer than --tp-threshold values take
plain NCCL). Every rank must generate the same tokens; rank 0's figures are reported. NVLink
multicast is always off (NCCL_NVLS_ENABLE=0).`,
		Example: "  odyssey testdata synth --shape llama2-7b --out /tmp/7b && odyssey quantize --model /tmp/7b --recipe w4a8-rtn --out /tmp/7b-w4a8\n" +
			"  odyssey verify speed --model /tmp/7b-w4a8 --baseline /tmp/7b --out e2e-h200.json --md e2e-h200.md",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerifySpeed(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "checkpoint or quantized artifact folder (required)")
	f.StringVar(&o.baseline, "baseline", "", "a model to compare with, usually the FP16 checkpoint (run first)")
	f.StringVar(&o.batch, "batch", "1,8,16,32,64", "batch sizes, comma-separated")
	f.IntVar(&o.prompt, "prompt", 1024, "prompt tokens per sequence")
	f.IntVar(&o.gen, "gen", 128, "generated tokens per sequence")
	f.IntVar(&o.repeats, "repeats", 5, "timed runs per figure, median reported")
	f.StringVar(&o.kvCache, "kv-cache", "fp16", "the KV cache of --model: fp16, int8 (codes with an fp16 scale per token and kv head), or both (fp16,int8: every batch size with each, one load); --baseline keeps fp16")
	f.StringVar(&o.runtime, "runtime", "", "the odyssey-rt binary (default: $ODYSSEY_RT, runtime/build/odyssey-rt, PATH)")
	f.DurationVar(&o.timeout, "timeout", time.Hour, "give up after this long")
	f.BoolVar(&o.asJSON, "json", false, "print the results as JSON instead of the table")
	f.StringVar(&o.out, "out", "", "also write the results as JSON to this file")
	f.StringVar(&o.md, "md", "", "also write the results as a markdown table to this file")
	f.StringVar(&o.hf, "hf", "", "the JSON of runtime/bench/hf_baseline.py on the same GPU and lengths: adds the speed-ups over HF transformers FP16")
	f.BoolVar(&o.force, "force", false, "replace existing --out and --md files")
	f.IntVar(&o.tp, "tp", 1, "tensor-parallel GPUs, one process each over NCCL (1 = not split)")
	f.IntVar(&o.tpBits, "tp-bits", 16, "with --tp: the all-reduce's bits, 16 (ncclAllReduce), 8 or 4 (compressed)")
	f.IntVar(&o.tpGroup, "tp-group", 128, "with --tp and --tp-bits 8 or 4: values per codec group")
	f.BoolVar(&o.tpSymmetric, "tp-symmetric", false, "with --tp and --tp-bits 8 or 4: symmetric codec groups")
	f.Int64Var(&o.tpThreshold, "tp-threshold", 0, "with --tp: all-reduces of fewer values than this take plain ncclAllReduce (0: every one compressed)")
	f.StringVar(&o.gpus, "gpus", "", "with --tp: the GPUs of the ranks, comma-separated CUDA device ids (default: the first N of $CUDA_VISIBLE_DEVICES, else 0..N-1)")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

func (o *verifySpeedOptions) validate() ([]int, error) {
	if err := checkTimeout(o.timeout); err != nil {
		return nil, err
	}
	caches, err := checkKVCacheList(o.kvCache)
	if err != nil {
		return nil, err
	}
	if len(caches) > 1 && o.tp > 1 {
		return nil, usageErrorf("--kv-cache %s with --tp: give one cache per tensor-parallel run", o.kvCache)
	}
	list, err := parsePositiveList("--batch", o.batch)
	if err != nil {
		return nil, err
	}
	if list == "" {
		return nil, usageErrorf("--batch needs at least one batch size")
	}
	var batches []int
	for _, s := range strings.Split(list, ",") {
		b, _ := strconv.Atoi(s)
		if slices.Contains(batches, b) {
			return nil, usageErrorf("--batch lists %d twice", b)
		}
		batches = append(batches, b)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"--prompt", o.prompt}, {"--gen", o.gen}, {"--repeats", o.repeats}} {
		if f.v < 1 {
			return nil, usageErrorf("%s must be at least 1 (got %d)", f.name, f.v)
		}
	}
	if o.tp < 1 || o.tp > 64 {
		return nil, usageErrorf("--tp must be 1 to 64 GPUs, got %d", o.tp)
	}
	if o.tpBits != 16 && o.tpBits != 8 && o.tpBits != 4 {
		return nil, usageErrorf("--tp-bits must be 16, 8 or 4, got %d", o.tpBits)
	}
	if o.tp == 1 && (o.tpBits != 16 || o.tpSymmetric || o.tpThreshold != 0 || o.gpus != "") {
		return nil, usageErrorf("--tp-bits, --tp-symmetric, --tp-threshold and --gpus need --tp 2 or more")
	}
	if o.tpThreshold < 0 {
		return nil, usageErrorf("--tp-threshold must be 0 or more values, got %d", o.tpThreshold)
	}
	if _, err := o.rankGPUs(); err != nil {
		return nil, err
	}
	if o.out != "" && o.md != "" && filepath.Clean(o.out) == filepath.Clean(o.md) {
		return nil, usageErrorf("--out and --md name the same file %s", o.out)
	}
	for _, p := range []string{o.out, o.md} {
		if err := checkResultPath(p, o.force); err != nil {
			return nil, err
		}
	}
	if err := checkModelFolder("--model", o.model); err != nil {
		return nil, err
	}
	if o.hf != "" {
		if _, err := readHFBaseline(o.hf, o.prompt, o.gen); err != nil {
			return nil, err
		}
	}
	if o.baseline != "" {
		if err := checkModelFolder("--baseline", o.baseline); err != nil {
			return nil, err
		}
		// The rows are told apart by folder.
		if samePath(o.model, o.baseline) {
			return nil, usageErrorf("--model and --baseline are the same folder %s", o.model)
		}
	}
	return batches, nil
}

// checkResultPath refuses, before the run rather than after it, a results file that exists
// (without force) or whose folder does not.
func checkResultPath(p string, force bool) error {
	if p == "" {
		return nil
	}
	if st, err := os.Stat(filepath.Dir(p)); err != nil || !st.IsDir() {
		return usageErrorf("%s: the folder %s does not exist", p, filepath.Dir(p))
	}
	if st, err := os.Lstat(p); err == nil {
		if st.IsDir() {
			return usageErrorf("%s is a folder", p)
		}
		if !force {
			return &exitError{code: exitExists, err: fmt.Errorf("%s already exists (add --force to replace it)", p)}
		}
	}
	return nil
}

// speedModel is one model of the run: its folder as the user named it and as the runtime
// gets it (a bundle's extraction), held open (and a bundle's extraction kept) until close.
type speedModel struct {
	dir, path string
	close     func()
}

func openSpeedModel(g *globalOptions, dir string) (*speedModel, error) {
	// The folder is checked as eval would (a supported configuration, every tensor present
	// with its shape), without a tokenizer: the prompts are random ids.
	lm, err := openForEval(g, dir, nil, nil)
	if err != nil {
		return nil, err
	}
	return &speedModel{dir: dir, path: lm.path, close: lm.Close}, nil
}

// speedReport is what `odyssey verify speed` writes with --json and --out: the runtime's
// answer with its rows passed through (plus the role and the ratios to the baseline), the
// goals, and what the run was.
type speedReport struct {
	OK             bool             `json:"ok"`
	Model          string           `json:"model"`
	Baseline       string           `json:"baseline,omitempty"`
	Batches        []int            `json:"batches"`
	Prompt         int              `json:"prompt"`
	Gen            int              `json:"gen"`
	Repeats        int              `json:"repeats"`
	GPU            gpu.GPU          `json:"gpu"`
	CUDARuntime    string           `json:"cuda_runtime,omitempty"`
	CUDADriver     string           `json:"cuda_driver,omitempty"`
	CopyGBps       float64          `json:"copy_gbps"`
	RuntimeVersion string           `json:"runtime_version"`
	Odyssey        string           `json:"odyssey_version"`
	Commit         string           `json:"commit,omitempty"`
	Date           string           `json:"date"`
	Rows           []map[string]any `json:"rows"`
	// HF is --hf's file as it was read.
	HF    *hfBaseline `json:"hf,omitempty"`
	Goals []speedGoal `json:"goals"`
	// GoalsNote says when the goals do not measure what they were set for: a model so small
	// that its decode step is launch latency, not memory traffic (launchBoundNote).
	GoalsNote string `json:"goals_note,omitempty"`
	// TP is the tensor-parallel split both models ran with (--tp 2 or more).
	TP *speedTP `json:"tensor_parallel,omitempty"`

	typed []gpu.SpeedRow
	roles []string
}

// speedTP is a --tp run's split: GPUs (rank order) and the all-reduce (Group 0: ncclAllReduce).
type speedTP struct {
	TP        int      `json:"tp"`
	GPUs      []string `json:"gpus"`
	Bits      int      `json:"bits"`
	Group     int      `json:"group"`
	Symmetric bool     `json:"symmetric"`
	Threshold int64    `json:"threshold"`
	// RanksIdentical: every rank generated the same tokens (gpu.SpeedTP refuses otherwise).
	RanksIdentical bool `json:"ranks_identical"`
}

// hfBaseline is the output of runtime/bench/hf_baseline.py.
type hfBaseline struct {
	File         string           `json:"file"`
	Torch        string           `json:"torch"`
	Transformers string           `json:"transformers"`
	CUDA         string           `json:"cuda"`
	GPU          map[string]any   `json:"gpu"`
	CopyGBps     float64          `json:"copy_gbps"`
	Rows         []map[string]any `json:"rows"`

	// typed[mode][batch] is a measured row.
	typed map[string]map[int]hfRow
}

type hfRow struct {
	Mode             string  `json:"mode"`
	Batch            int     `json:"batch"`
	Prompt           int     `json:"prompt"`
	Gen              int     `json:"gen"`
	TTFTMs           float64 `json:"ttft_ms"`
	DecodeTokensPerS float64 `json:"decode_tokens_per_s"`
	Error            string  `json:"error"`
}

// maxHFFile bounds --hf: the script's answer is a few KB per row.
const maxHFFile = 16 << 20

// readHFBaseline reads --hf and checks that it measured the same lengths as this run (a
// comparison at other lengths would be meaningless).
func readHFBaseline(path string, prompt, gen int) (*hfBaseline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, badInput(fmt.Errorf("--hf: %w", err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHFFile+1))
	if err != nil {
		return nil, badInput(fmt.Errorf("--hf: %w", err))
	}
	if len(b) > maxHFFile {
		return nil, badInput(fmt.Errorf("--hf %s is larger than %d MiB: not the output of hf_baseline.py", path, maxHFFile>>20))
	}
	var h hfBaseline
	var typed struct {
		OK   bool    `json:"ok"`
		Rows []hfRow `json:"rows"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, badInput(fmt.Errorf("--hf %s: %w", path, err))
	}
	if err := json.Unmarshal(b, &typed); err != nil || !typed.OK || len(typed.Rows) == 0 || len(typed.Rows) != len(h.Rows) {
		return nil, badInput(fmt.Errorf("--hf %s is not the output of runtime/bench/hf_baseline.py (want \"ok\": true and rows)", path))
	}
	h.File = path
	h.typed = map[string]map[int]hfRow{}
	for i, r := range typed.Rows {
		if r.Prompt != prompt || r.Gen != gen {
			return nil, badInput(fmt.Errorf("--hf %s row %d measured prompt %d and gen %d; this run has --prompt %d --gen %d", path, i, r.Prompt, r.Gen, prompt, gen))
		}
		if r.Error != "" {
			continue
		}
		if r.Batch < 1 || !(r.DecodeTokensPerS > 0) || !(r.TTFTMs > 0) || r.Mode == "" {
			return nil, badInput(fmt.Errorf("--hf %s row %d: mode %q, batch %d, decode_tokens_per_s %v, ttft_ms %v", path, i, r.Mode, r.Batch, r.DecodeTokensPerS, r.TTFTMs))
		}
		if h.typed[r.Mode] == nil {
			h.typed[r.Mode] = map[int]hfRow{}
		}
		h.typed[r.Mode][r.Batch] = r
	}
	return &h, nil
}

// speedGoal is one goal of issue 14 and what this run measured for it; Measured is null when
// the run has no rows for it (no --baseline, or no such batch size), and Met is then false.
type speedGoal struct {
	Name     string   `json:"name"`
	Target   float64  `json:"target"`
	Measured *float64 `json:"measured"`
	Met      bool     `json:"met"`
	Note     string   `json:"note,omitempty"`
}

// rankGPUs is the CUDA device of each tensor-parallel rank: --gpus, else the first --tp of
// $CUDA_VISIBLE_DEVICES, else 0..tp-1 (nil without --tp).
func (o *verifySpeedOptions) rankGPUs() ([]string, error) {
	if o.tp < 2 {
		return nil, nil
	}
	list := o.gpus
	if list == "" {
		list = os.Getenv("CUDA_VISIBLE_DEVICES")
	}
	var ids []string
	if list != "" {
		for _, id := range strings.Split(list, ",") {
			if id = strings.TrimSpace(id); id == "" {
				return nil, usageErrorf("--gpus %q has an empty entry", list)
			}
			if slices.Contains(ids, id) {
				return nil, usageErrorf("--gpus lists GPU %s twice (NCCL takes one rank per GPU)", id)
			}
			ids = append(ids, id)
		}
		if o.gpus != "" && len(ids) != o.tp {
			return nil, usageErrorf("--gpus names %d GPUs for --tp %d", len(ids), o.tp)
		}
		if len(ids) < o.tp {
			return nil, usageErrorf("--tp %d needs %d GPUs; CUDA_VISIBLE_DEVICES=%s has %d", o.tp, o.tp, list, len(ids))
		}
		return ids[:o.tp], nil
	}
	for i := 0; i < o.tp; i++ {
		ids = append(ids, strconv.Itoa(i))
	}
	return ids, nil
}

func runVerifySpeed(ctx context.Context, g *globalOptions, o *verifySpeedOptions) error {
	batches, err := o.validate()
	if err != nil {
		return err
	}
	rt, err := findRuntime(o.runtime)
	if err != nil {
		return err
	}
	m, err := openSpeedModel(g, o.model)
	if err != nil {
		return err
	}
	defer m.close()
	var base *speedModel
	if o.baseline != "" {
		if base, err = openSpeedModel(g, o.baseline); err != nil {
			return fmt.Errorf("--baseline: %w", err)
		}
		defer base.close()
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	so := gpu.SpeedOptions{Model: m.path, Batch: o.batch, Prompt: o.prompt, Gen: o.gen, Repeats: o.repeats, KVCache: kvCacheArg(o.kvCache)}
	if base != nil {
		so.Baseline = base.path
	}
	bar := newProgress(g.errOut, o.asJSON, int64(len(batches)*(strings.Count(o.kvCache, ",")+1+btoi(base != nil))*(o.repeats+1)),
		"loading the models on the GPU", "runs")
	ro := gpu.RunOptions{Stderr: g.errOut, Progress: rateProgress(bar, "timing on the GPU", 0)}
	var ans *gpu.SpeedAnswer
	var raw json.RawMessage
	if o.tp > 1 {
		gpus, _ := o.rankGPUs()
		// Each rank's watchdog (per load and per batch size) fires well before --timeout ends the
		// whole run, so that a rank stuck on a dead peer says so itself.
		step := min(20*time.Minute, o.timeout/2)
		ans, raw, err = gpu.SpeedTP(ctx, ro, rt, so, gpu.TPRun{N: o.tp, Bits: o.tpBits, Group: o.tpGroup, Symmetric: o.tpSymmetric,
			Threshold: o.tpThreshold, GPUs: gpus, Timeout: step})
	} else {
		ans, raw, err = gpu.Speed(ctx, ro, rt, so)
	}
	bar.Done()
	if err != nil {
		return err
	}
	rep, err := newSpeedReport(o, batches, m, base, ans, raw)
	if err != nil {
		return fmt.Errorf("%s speed: %w", rt, err)
	}
	if o.hf != "" {
		h, err := readHFBaseline(o.hf, o.prompt, o.gen)
		if err != nil {
			return err
		}
		rep.addHF(h)
	}
	if o.tp > 1 {
		gpus, _ := o.rankGPUs()
		rep.TP = &speedTP{TP: o.tp, GPUs: gpus, Bits: o.tpBits, Group: o.tpGroup, Symmetric: o.tpSymmetric, Threshold: o.tpThreshold, RanksIdentical: true}
		if o.tpBits == 16 {
			rep.TP.Group = 0
		}
	}
	if o.out != "" || o.md != "" {
		// The CUDA versions for the results file; a runtime that ran the model answers this.
		if info, _, err := gpu.GetInfo(ctx, rt); err == nil {
			rep.CUDARuntime, rep.CUDADriver = info.CUDARuntime.String(), info.CUDADriver.String()
		} else {
			fmt.Fprintf(g.errOut, "odyssey: note: odyssey-rt info failed, the results carry no CUDA version: %v\n", err)
		}
	}
	var js bytes.Buffer
	if err := writeJSON(&js, rep); err != nil {
		return err
	}
	var md bytes.Buffer
	if err := printSpeedMarkdown(&md, rep); err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{o.out, js.Bytes()}, {o.md, md.Bytes()}} {
		if f.path != "" {
			if err := writeFileAtomic(f.path, f.data, o.force); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "odyssey: wrote %s\n", f.path)
		}
	}
	if o.asJSON {
		_, err = g.out.Write(js.Bytes())
	} else {
		_, err = g.out.Write(md.Bytes())
	}
	return err
}

// addHF adds the speed-ups over HF transformers to every row and the goal that the FP16 path
// beats HF's compiled generate (static cache) at every batch size measured by both.
func (r *speedReport) addHF(h *hfBaseline) {
	r.HF = h
	for i, t := range r.typed {
		for _, mode := range []string{"eager", "static"} {
			if hr, ok := h.typed[mode][t.Batch]; ok {
				r.Rows[i]["decode_speedup_vs_hf_"+mode] = t.DecodeTokensPerS / hr.DecodeTokensPerS
				r.Rows[i]["prefill_speedup_vs_hf_"+mode] = hr.TTFTMs / t.TTFTMs
			}
		}
	}
	n := 0
	for i, t := range r.typed {
		if t.Path != "fp16" {
			continue
		}
		if v, ok := r.Rows[i]["decode_speedup_vs_hf_static"].(float64); ok {
			r.Goals = append(r.Goals, speedGoal{Name: fmt.Sprintf("FP16 decode tokens/s vs HF FP16 generate (static cache, compiled), batch %d", t.Batch),
				Target: 1, Measured: &v, Met: v >= 1})
			n++
		}
	}
	if n == 0 {
		r.Goals = append(r.Goals, speedGoal{Name: "FP16 decode tokens/s vs HF FP16 generate (static cache, compiled)", Target: 1,
			Note: "not measured: needs an FP16 row and the HF static mode at the same batch size"})
	}
}

// checkoutCommit is the commit of the checkout in the working directory, for a binary built
// without VCS stamping (-buildvcs=false, go run in some setups): the results must say what
// code they measured. "" when git or a checkout is not there.
func checkoutCommit() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+modified"
	}
	return c
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newSpeedReport(o *verifySpeedOptions, batches []int, m, base *speedModel, ans *gpu.SpeedAnswer, raw json.RawMessage) (*speedReport, error) {
	var rows struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil || len(rows.Rows) != len(ans.Rows) {
		return nil, fmt.Errorf("rows: %v", err)
	}
	v := currentVersion()
	rep := &speedReport{OK: true, Model: o.model, Baseline: o.baseline, Batches: batches, Prompt: o.prompt, Gen: o.gen, Repeats: o.repeats,
		GPU: ans.GPU, CopyGBps: ans.CopyGBps, RuntimeVersion: ans.RuntimeVersion, Odyssey: v.Version,
		Date: time.Now().UTC().Format(time.RFC3339), Rows: rows.Rows, typed: ans.Rows}
	if v.Revision != "" {
		rep.Commit = shortRev(v.Revision)
		if v.Modified {
			rep.Commit += "+modified"
		}
	} else {
		rep.Commit = checkoutCommit()
	}
	// Each row belongs to the model or the baseline by the folder the runtime was given.
	baseRow := map[int]*gpu.SpeedRow{}
	for i := range ans.Rows {
		r := &ans.Rows[i]
		role := ""
		switch {
		case samePath(r.Model, m.path):
			role = "model"
		case base != nil && samePath(r.Model, base.path):
			role = "baseline"
			baseRow[r.Batch] = r
		default:
			return nil, fmt.Errorf("row %d is for model %q, which was not asked for", i, r.Model)
		}
		rep.roles = append(rep.roles, role)
		rep.Rows[i]["role"] = role
		// The folder as the user named it, not a bundle's temporary extraction.
		if role == "model" {
			rep.Rows[i]["model"] = o.model
		} else {
			rep.Rows[i]["model"] = o.baseline
		}
	}
	for i, r := range ans.Rows {
		if b := baseRow[r.Batch]; rep.roles[i] == "model" && b != nil {
			rep.Rows[i]["decode_speedup_vs_baseline"] = r.DecodeTokensPerS / b.DecodeTokensPerS
			rep.Rows[i]["prefill_speedup_vs_baseline"] = b.TTFTMs / r.TTFTMs
		}
	}
	// With both caches (--kv-cache fp16,int8): each int8-cache row's decode against the same
	// model's fp16-cache row at its batch size, the cache's own speed-up.
	for i, r := range ans.Rows {
		if rep.roles[i] != "model" || r.KVCache != "int8" {
			continue
		}
		for j, f := range ans.Rows {
			if rep.roles[j] == "model" && f.Batch == r.Batch && (f.KVCache == "fp16" || f.KVCache == "") {
				rep.Rows[i]["decode_speedup_vs_fp16_kv"] = r.DecodeTokensPerS / f.DecodeTokensPerS
			}
		}
	}
	rep.Goals = speedGoals(ans.Rows, rep.roles)
	rep.GoalsNote = launchBoundNote(ans.Rows)
	return rep, nil
}

// launchBoundFloorMs is the memory floor per decode step below which a step measures the
// latency of its kernel chain rather than memory bandwidth: a LLaMA step is ~10 dependent
// kernels per layer, each a few microseconds even when it reads nothing, so a model whose whole
// batch-1 step needs less than 50 µs of memory traffic (~200 MB at the H200's copy speed) is
// launch-bound, and its fraction of the floor and its W4A8-over-FP16 ratio say nothing about the
// kernels' bandwidth. The 7B shape the goals were set for has a 3.3 ms floor.
const launchBoundFloorMs = 0.05

// launchBoundNote is the report's goals_note for a run whose batch-1 rows all have a memory
// floor under launchBoundFloorMs (the real small models: tiny-llama's is 2 µs), else "".
func launchBoundNote(rows []gpu.SpeedRow) string {
	maxFloor, stepMs, n := 0.0, 0.0, 0
	for _, r := range rows {
		if r.Batch != 1 {
			continue
		}
		n++
		maxFloor = math.Max(maxFloor, r.MemoryFloorMsPerStep)
		if r.Path == "fp16" {
			stepMs = r.DecodeMsPerStep
		}
	}
	if n == 0 || maxFloor >= launchBoundFloorMs {
		return ""
	}
	step := ""
	if stepMs > 0 {
		step = fmt.Sprintf(" (the FP16 step takes %.0f µs)", 1000*stepMs)
	}
	return fmt.Sprintf("Launch-bound: at batch 1 this model's decode step needs at most %.1f µs of memory traffic, far less than "+
		"the latency of its chain of kernels%s, so its fraction of the floor and the quantized-over-FP16 ratios measure kernel "+
		"latency, not bandwidth. Issue 14's goals are set for the LLaMA-2-7B shape (floor ≈ 3.3 ms); they are listed here "+
		"for completeness.", 1000*maxFloor, step)
}

// checkKVCache refuses a --kv-cache other than the two caches the runtime has.
func checkKVCache(v string) error {
	if v != "fp16" && v != "int8" {
		return usageErrorf("--kv-cache must be fp16 or int8, got %q", v)
	}
	return nil
}

// checkKVCacheList is verify speed's --kv-cache: one cache, or a comma-separated list of
// distinct ones (the runtime runs every batch size with each on one load).
func checkKVCacheList(v string) ([]string, error) {
	var caches []string
	for _, c := range strings.Split(v, ",") {
		if err := checkKVCache(c); err != nil {
			return nil, usageErrorf("--kv-cache must be fp16, int8 or fp16,int8, got %q", v)
		}
		if slices.Contains(caches, c) {
			return nil, usageErrorf("--kv-cache lists %s twice", c)
		}
		caches = append(caches, c)
	}
	return caches, nil
}

// pathCell is a row's path, with its KV cache when that is not the default fp16.
func pathCell(t gpu.SpeedRow) string {
	if t.KVCache != "" && t.KVCache != "fp16" {
		return t.Path + " (" + t.KVCache + " KV)"
	}
	return t.Path
}

// samePath reports whether the runtime's "model" names the folder it was given (it may have
// made the path absolute or resolved links).
func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 == nil && err2 == nil {
		if aa, err := filepath.Abs(ra); err == nil {
			if ab, err := filepath.Abs(rb); err == nil {
				return aa == ab
			}
		}
	}
	return false
}

// speedGoals computes issue 14's speed goals from the rows: the FP16 path's decode at batch
// 1 against its memory floor (≥ 70%), the quantized model's (≥ 60%), its decode tokens/s
// against the FP16 baseline's at each batch size of 1–16 (≥ 2.5×) and its prefill (TTFT)
// against the baseline's at each of 1–8 (≥ 1.5×). A goal whose rows the run lacks is listed
// with measured null.
//
// With both KV caches (--kv-cache fp16,int8) the quantized model's goals are listed for each:
// the int8 cache's under names ending "(int8 KV cache)", against the same FP16 baseline (which
// keeps the fp16 cache), so that the goals themselves stay the fp16-cache ones.
func speedGoals(rows []gpu.SpeedRow, roles []string) []speedGoal {
	var fp16, quant, quant8 []gpu.SpeedRow
	for i, r := range rows {
		switch {
		case roles[i] == "baseline" && r.Path == "fp16":
			fp16 = append(fp16, r)
		case roles[i] == "model" && r.Path != "fp16" && r.KVCache == "int8":
			quant8 = append(quant8, r)
		case roles[i] == "model" && r.Path != "fp16":
			quant = append(quant, r)
		}
	}
	if len(quant) == 0 { // only the int8 cache was asked for: its goals under the plain names
		quant, quant8 = quant8, nil
	}
	if len(fp16) == 0 { // no baseline: the model itself may be the FP16 checkpoint
		for i, r := range rows {
			if roles[i] == "model" && r.Path == "fp16" {
				fp16 = append(fp16, r)
			}
		}
	}
	// The goals are W4A8's; another quantized path is measured against the same targets,
	// under its own name.
	qName := "W4A8"
	if len(quant) > 0 {
		qName = strings.ToUpper(quant[0].Path)
	}
	at := func(rs []gpu.SpeedRow, b int) *gpu.SpeedRow {
		for i := range rs {
			if rs[i].Batch == b {
				return &rs[i]
			}
		}
		return nil
	}
	measured := func(name string, target, v float64) speedGoal {
		return speedGoal{Name: name, Target: target, Measured: &v, Met: v >= target}
	}
	missing := func(name string, target float64, why string) speedGoal {
		return speedGoal{Name: name, Target: target, Note: "not measured: " + why}
	}
	var goals []speedGoal
	const fp16Floor = "FP16 decode, batch 1: fraction of the memory floor"
	if r := at(fp16, 1); r != nil {
		goals = append(goals, measured(fp16Floor, 0.70, r.FractionOfFloor))
	} else {
		goals = append(goals, missing(fp16Floor, 0.70, "no FP16 row at batch 1"))
	}
	quantGoals := func(quant []gpu.SpeedRow, suffix string) {
		qFloor := qName + " decode, batch 1: fraction of its own memory floor" + suffix
		if r := at(quant, 1); r != nil {
			goals = append(goals, measured(qFloor, 0.60, r.FractionOfFloor))
		} else {
			goals = append(goals, missing(qFloor, 0.60, "no quantized row at batch 1"))
		}
		ratio := func(what string, target float64, maxBatch int, f func(q, b *gpu.SpeedRow) float64) {
			n := 0
			for _, q := range quant {
				if q.Batch > maxBatch {
					continue
				}
				if b := at(fp16, q.Batch); b != nil {
					goals = append(goals, measured(fmt.Sprintf("%s %s vs FP16, batch %d%s", qName, what, q.Batch, suffix), target, f(&q, b)))
					n++
				}
			}
			if n == 0 {
				goals = append(goals, missing(fmt.Sprintf("%s %s vs FP16, batch 1–%d%s", qName, what, maxBatch, suffix), target,
					"needs the quantized model and an FP16 --baseline at the same batch sizes"))
			}
		}
		ratio("decode tokens/s", 2.5, 16, func(q, b *gpu.SpeedRow) float64 { return q.DecodeTokensPerS / b.DecodeTokensPerS })
		ratio("prefill (time to first token)", 1.5, 8, func(q, b *gpu.SpeedRow) float64 { return b.TTFTMs / q.TTFTMs })
	}
	quantGoals(quant, "")
	if len(quant8) > 0 {
		quantGoals(quant8, " (int8 KV cache)")
	}
	return goals
}

func printSpeedMarkdown(w io.Writer, r *speedReport) error {
	fmt.Fprintf(w, "GPU: %s (compute capability %s, driver %s", r.GPU.Name, r.GPU.CC, r.GPU.Driver)
	if r.CUDARuntime != "" {
		fmt.Fprintf(w, ", CUDA %s", r.CUDARuntime)
	}
	fmt.Fprintf(w, "); copy bandwidth %.0f GB/s; odyssey-rt %s; odyssey %s", r.CopyGBps, r.RuntimeVersion, r.Odyssey)
	if r.Commit != "" {
		fmt.Fprintf(w, " (%s)", r.Commit)
	}
	fmt.Fprintf(w, "; %s\n\n", r.Date)
	fmt.Fprintf(w, "Prompt %d tokens, %d generated; median of %d runs after a warm-up.\n\n", r.Prompt, r.Gen, r.Repeats)
	if t := r.TP; t != nil {
		ar := "ncclAllReduce fp16"
		if t.Bits != 16 {
			ar = fmt.Sprintf("compressed INT%d, groups of %d", t.Bits, t.Group)
			if t.Threshold > 0 {
				ar += fmt.Sprintf(", ncclAllReduce below %d values", t.Threshold)
			}
		}
		fmt.Fprintf(w, "Tensor parallel over %d GPUs (%s), one process each; all-reduce %s; every rank generated the same tokens.\n\n",
			t.TP, strings.Join(t.GPUs, ","), ar)
	}
	fmt.Fprintln(w, "| model | path | batch | TTFT ms | decode tok/s | ms/step | floor ms/step | % of floor | GPU memory | decode × baseline | prefill × baseline |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, t := range r.typed {
		ratio := func(key string) string {
			if v, ok := r.Rows[i][key].(float64); ok {
				return fmt.Sprintf("%.2f×", v)
			}
			return "–"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.1f | %.3f | %.3f | %.0f%% | %s | %s | %s |\n",
			mdCell(r.rowName(i)), pathCell(t), t.Batch, t.TTFTMs, t.DecodeTokensPerS, t.DecodeMsPerStep, t.MemoryFloorMsPerStep,
			100*t.FractionOfFloor, humanBytes(int64(t.GPUMemoryBytes)), ratio("decode_speedup_vs_baseline"), ratio("prefill_speedup_vs_baseline"))
	}
	var kv []string
	for i, t := range r.typed {
		if v, ok := r.Rows[i]["decode_speedup_vs_fp16_kv"].(float64); ok {
			kv = append(kv, fmt.Sprintf("batch %d %.2f×", t.Batch, v))
		}
	}
	if len(kv) > 0 {
		fmt.Fprintf(w, "\nDecode with the int8 KV cache vs the fp16 one, same model: %s.\n", strings.Join(kv, ", "))
	}
	if h := r.HF; h != nil {
		fmt.Fprintf(w, "\nHF transformers %s (torch %s, CUDA %s), FP16, SDPA: %s\n\n", h.Transformers, h.Torch, h.CUDA, h.File)
		fmt.Fprintln(w, "| model | path | batch | decode tok/s | HF eager tok/s | HF compiled tok/s | × HF eager | × HF compiled | TTFT ms | HF eager TTFT ms | HF compiled TTFT ms |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for i, t := range r.typed {
			cell := func(mode string, f func(hfRow) float64, format string) string {
				if hr, ok := h.typed[mode][t.Batch]; ok {
					return fmt.Sprintf(format, f(hr))
				}
				return "–"
			}
			tps := func(hr hfRow) float64 { return hr.DecodeTokensPerS }
			ttft := func(hr hfRow) float64 { return hr.TTFTMs }
			ratio := func(key string) string {
				if v, ok := r.Rows[i][key].(float64); ok {
					return fmt.Sprintf("%.2f×", v)
				}
				return "–"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %.1f | %s | %s | %s | %s | %.2f | %s | %s |\n", mdCell(r.rowName(i)), pathCell(t), t.Batch, t.DecodeTokensPerS,
				cell("eager", tps, "%.1f"), cell("static", tps, "%.1f"), ratio("decode_speedup_vs_hf_eager"), ratio("decode_speedup_vs_hf_static"),
				t.TTFTMs, cell("eager", ttft, "%.2f"), cell("static", ttft, "%.2f"))
		}
	}
	if r.GoalsNote != "" {
		fmt.Fprintf(w, "\n%s\n", r.GoalsNote)
	}
	fmt.Fprintln(w, "\n| goal | target | measured | met |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	for _, gl := range r.Goals {
		target, meas := fmt.Sprintf("≥ %.2f×", gl.Target), "–"
		if strings.Contains(gl.Name, "fraction") {
			target = fmt.Sprintf("≥ %.0f%%", 100*gl.Target)
		}
		if gl.Measured != nil {
			meas = fmt.Sprintf("%.2f×", *gl.Measured)
			if strings.Contains(gl.Name, "fraction") {
				meas = fmt.Sprintf("%.0f%%", 100**gl.Measured)
			}
		} else {
			meas = gl.Note
		}
		met := "–"
		if gl.Met {
			met = "yes"
		} else if gl.Measured != nil {
			met = fmt.Sprintf("**no** (%.0f%% of the target)", 100**gl.Measured/gl.Target)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", gl.Name, target, meas, met)
	}
	return nil
}

func (r *speedReport) rowName(i int) string {
	if r.roles[i] == "baseline" {
		return r.Baseline + " (baseline)"
	}
	return r.Model
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// writeFileAtomic writes data to path through a temporary file in the same folder renamed
// into place, so a reader never sees half a results file; an existing path is replaced only
// when force.
func writeFileAtomic(path string, data []byte, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return &exitError{code: exitExists, err: fmt.Errorf("%s already exists (add --force to replace it)", path)}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644) // CreateTemp makes it private; results are for sharing
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
