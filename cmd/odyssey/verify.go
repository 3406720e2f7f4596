package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/odyssey-llm/odyssey/quant"
	"github.com/odyssey-llm/odyssey/tpsim"
	"github.com/spf13/cobra"
)

// odyssey verify drives the CUDA runtime's model executor (odyssey-rt ppl|speed) as a
// subprocess; docs/executor.md is the contract. Go does what must match the CPU exactly (the
// tokenization and windows of eval ppl, the perplexity from the NLLs) and the runtime only
// runs the model.

func newVerifyCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check a model on the GPU: perplexity and end-to-end speed (through the CUDA runtime)",
		Long: `Verify runs a checkpoint or a quantized artifact on an NVIDIA GPU with the CUDA runtime's model
executor (odyssey-rt, built with odyssey runtime build): perplexity with exactly eval ppl's protocol,
and time to first token and decode speed against a baseline.`,
	}
	cmd.AddCommand(newVerifyPPLCmd(g), newVerifySpeedCmd(g))
	return cmd
}

type verifyPPLOptions struct {
	model      string
	runtime    string
	timeout    time.Duration
	kvCache    string
	kvInt8     bool // the former spelling of --kv-cache int8
	compareCPU bool
	tolerance  float64
	golden     string
	goldenName string
	goldenTol  float64
	// Tensor parallelism on the one GPU (odyssey-rt ppl --tp): the model split over tp ranks,
	// the row-parallel outputs all-reduced exactly (tpBits 16) or through the codec.
	tp          int
	tpBits      int
	tpGroup     int
	tpSymmetric bool
	compareSim  bool
	simTol      float64
	evalDataOptions
}

func newVerifyPPLCmd(g *globalOptions) *cobra.Command {
	o := &verifyPPLOptions{}
	cmd := &cobra.Command{
		Use:   "ppl --model DIR --data FILE",
		Short: "Perplexity of a model on a text, on the GPU",
		Long: `Ppl tokenizes the text with exactly eval ppl's protocol (BOS in front, non-overlapping windows of
--seq-len tokens, the remainder dropped, the first --max-windows), hands the windows to
odyssey-rt ppl in a temporary file (removed afterwards), and computes the perplexity from the NLL
of every window the GPU returns. The JSON has eval ppl's shape plus the GPU, the runtime version
and the executor path (fp16, w4a8, w4a16, w8a8 or mixed).

--compare-cpu also runs eval ppl on the same windows on the CPU and reports the relative
difference of the two perplexities; beyond --tolerance (default 0.2%) the command exits 1.

--golden compares with a golden perplexity file (../shared/golden/ppl.json: PyTorch's, per
model, text and L): the entry of the model named by the folder (or --golden-model), the same
text (by sha256) and L; beyond --golden-tolerance (default 0.05%) the command exits 1.

--tp N splits the model over N tensor-parallel ranks, all on the one GPU (the executor of a
multi-GPU run: each rank loads its shard of every linear, o_proj's and down_proj's partial
outputs are all-reduced): --tp-bits 16 sums them exactly, 8 or 4 through the Flash
Communication codec (--tp-group, --tp-symmetric), so that the perplexity change can be set beside
odyssey sim allreduce's prediction. N must divide the attention and key/value heads.
--compare-sim makes that comparison: the GPU also scores the windows unsplit, sim allreduce runs the
same split and codec on the CPU over the same windows, and the two ratios (split / unsplit
perplexity) must agree within --sim-tolerance (default 0.005, half a percentage point), or the
command exits 1.`,
		Example: "  odyssey verify ppl --model /tmp/tiny-w4a8 --data testdata/text/sample.txt --seq-len 256 --compare-cpu\n" +
			"  odyssey verify ppl --model ../shared/models/small-llama --data ../shared/data/wikitext2/wiki.test.raw --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runVerifyPPL(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "checkpoint or quantized artifact folder (required)")
	f.StringVar(&o.runtime, "runtime", "", "the odyssey-rt binary (default: $ODYSSEY_RT, runtime/build/odyssey-rt, PATH)")
	f.DurationVar(&o.timeout, "timeout", time.Hour, "give up after this long")
	f.StringVar(&o.kvCache, "kv-cache", "fp16", "the KV cache attention runs over: fp16, or int8 (codes with an fp16 scale per token and kv head, FPTQ's; the prefill fake-quantizes k/v as decode would read them, so the perplexity shows its cost)")
	f.BoolVar(&o.kvInt8, "kv-int8", false, "the same as --kv-cache int8")
	_ = f.MarkDeprecated("kv-int8", "use --kv-cache int8")
	f.BoolVar(&o.compareCPU, "compare-cpu", false, "also run eval ppl on the CPU on the same windows and compare")
	f.Float64Var(&o.tolerance, "tolerance", 0.002, "with --compare-cpu, the largest relative difference of the perplexities accepted")
	f.StringVar(&o.golden, "golden", "", "a golden perplexity file (../shared/golden/ppl.json) to compare with")
	f.StringVar(&o.goldenName, "golden-model", "", "the model's name in --golden (default: the --model folder's name)")
	f.Float64Var(&o.goldenTol, "golden-tolerance", 0.0005, "with --golden, the largest relative difference accepted")
	f.IntVar(&o.tp, "tp", 1, "tensor-parallel ranks, all on this one GPU (1 to 8; 1 = not split)")
	f.IntVar(&o.tpBits, "tp-bits", 16, "with --tp: the all-reduce's bits, 16 (exact sum), 8 or 4 (Flash Communication)")
	f.IntVar(&o.tpGroup, "tp-group", 128, "with --tp and --tp-bits 8 or 4: values per codec group")
	f.BoolVar(&o.tpSymmetric, "tp-symmetric", false, "with --tp and --tp-bits 8 or 4: symmetric codec groups (no zero point)")
	f.BoolVar(&o.compareSim, "compare-sim", false, "with --tp: also score unsplit on the GPU, run sim allreduce on the CPU, and compare the perplexity ratios")
	f.Float64Var(&o.simTol, "sim-tolerance", 0.005, "with --compare-sim, the largest difference of the two ratios accepted (0.005 = 0.5 points)")
	_ = cmd.MarkFlagRequired("model")
	o.register(cmd)
	f.Lookup("batch").Usage = "windows per forward pass on the GPU (0: the runtime's default); also the CPU's with --compare-cpu"
	return cmd
}

// kvCacheArg is --kv-cache for the runtime: empty for fp16, its default, so that a runtime
// older than the int8 cache still runs the fp16 one.
func kvCacheArg(v string) string {
	if v == "fp16" {
		return ""
	}
	return v
}

func (o *verifyPPLOptions) validate() error {
	if err := checkTimeout(o.timeout); err != nil {
		return err
	}
	if o.kvInt8 {
		o.kvCache = "int8"
	}
	if err := checkKVCache(o.kvCache); err != nil {
		return err
	}
	if !(o.tolerance > 0) || math.IsInf(o.tolerance, 0) {
		return usageErrorf("--tolerance must be a positive fraction (0.002 is 0.2%%), got %v", o.tolerance)
	}
	if !(o.goldenTol > 0) || math.IsInf(o.goldenTol, 0) {
		return usageErrorf("--golden-tolerance must be a positive fraction (0.0005 is 0.05%%), got %v", o.goldenTol)
	}
	if o.tp < 1 || o.tp > 8 {
		return usageErrorf("--tp must be 1 to 8 ranks on the one GPU, got %d", o.tp)
	}
	if o.tpBits != 16 && o.tpBits != 8 && o.tpBits != 4 {
		return usageErrorf("--tp-bits must be 16, 8 or 4, got %d", o.tpBits)
	}
	if o.tp == 1 && (o.tpBits != 16 || o.tpSymmetric || o.compareSim) {
		return usageErrorf("--tp-bits, --tp-symmetric and --compare-sim need --tp 2 or more")
	}
	if !(o.simTol > 0) || math.IsInf(o.simTol, 0) {
		return usageErrorf("--sim-tolerance must be a positive fraction (0.005 is half a point), got %v", o.simTol)
	}
	if o.goldenName != "" && o.golden == "" {
		return usageErrorf("--golden-model names the model in a --golden file; give --golden FILE too")
	}
	if o.seqLen > gpu.MaxTokensSeqLen {
		return usageErrorf("--seq-len %d is beyond the executor's %d tokens per window", o.seqLen, gpu.MaxTokensSeqLen)
	}
	if err := checkModelFolder("--model", o.model); err != nil {
		return err
	}
	return o.evalDataOptions.validate()
}

// checkModelFolder refuses, before anything is read, a model (flag) that is not a folder
// (or a bundle file) with a config.json.
func checkModelFolder(flag, dir string) error {
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return badInput(fmt.Errorf("%s: %w", flag, err))
	case !st.IsDir():
		return nil // a bundle, or a file openModelPath refuses with its own message
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return badInput(fmt.Errorf("%s %s has no config.json: not a Hugging Face checkpoint or an Odyssey artifact", flag, dir))
	}
	return nil
}

// verifyPPLReport is what `odyssey verify ppl --json` prints: eval ppl's shape, plus where it ran.
type verifyPPLReport struct {
	Model string `json:"model"`
	Data  string `json:"data"`
	*eval.PPLResult
	Device         string  `json:"device"`
	Path           string  `json:"path"`
	Arch           string  `json:"arch,omitempty"`
	Batch          int     `json:"batch,omitempty"`
	KVCache        string  `json:"kv_cache"`
	GPU            gpu.GPU `json:"gpu"`
	RuntimeVersion string  `json:"runtime_version"`
	// CPU is eval ppl on the same windows, with --compare-cpu.
	CPU *cpuComparison `json:"cpu,omitempty"`
	// Golden is the golden perplexity compared with, with --golden.
	Golden *goldenRef `json:"golden,omitempty"`
	// TP is the tensor-parallel split the GPU ran, with --tp 2 or more.
	TP *tpReport `json:"tensor_parallel,omitempty"`
}

// tpReport is a --tp run's split: ranks on the one GPU and the all-reduce's codec (Group 0 for
// the exact 16-bit sum).
type tpReport struct {
	TP        int  `json:"tp"`
	Bits      int  `json:"bits"`
	Group     int  `json:"group"`
	Symmetric bool `json:"symmetric"`
	// Sim is the comparison with sim allreduce, with --compare-sim.
	Sim *simComparison `json:"sim,omitempty"`
}

// simComparison sets the GPU's perplexity ratio of the split (split / unsplit, both on the GPU,
// same windows) beside sim allreduce's (the same split and codec on the CPU's float32 forward).
type simComparison struct {
	GPUUnsplitPPL float64 `json:"gpu_unsplit_ppl"`
	GPURatio      float64 `json:"gpu_ratio"`
	SimReference  float64 `json:"sim_reference_ppl"`
	SimPPL        float64 `json:"sim_ppl"`
	SimRatio      float64 `json:"sim_ratio"`
	KLMean        float64 `json:"sim_kl_mean"`
	// Difference is GPURatio − SimRatio.
	Difference float64 `json:"difference"`
	Tolerance  float64 `json:"tolerance"`
	Met        bool    `json:"met"`
	Seconds    float64 `json:"sim_seconds"`
}

// cpuComparison is the CPU's perplexity of the same windows and how far the GPU's is from it.
type cpuComparison struct {
	*eval.PPLResult
	// RelativeDifference is (GPU ppl − CPU ppl) / CPU ppl.
	RelativeDifference float64 `json:"relative_difference"`
	// MaxWindowRelativeDifference is the largest |GPU − CPU| / CPU of one window's NLL.
	MaxWindowRelativeDifference float64 `json:"max_window_relative_difference"`
	Tolerance                   float64 `json:"tolerance"`
	Met                         bool    `json:"met"`
}

func runVerifyPPL(ctx context.Context, g *globalOptions, o *verifyPPLOptions) error {
	// The runtime first: without one there is nothing to tokenize for.
	rt, err := findRuntime(o.runtime)
	if err != nil {
		return err
	}
	lm, err := openForEval(g, o.model, &o.evalDataOptions, nil)
	if err != nil {
		return err
	}
	defer lm.Close()
	stream, err := lm.stream(&o.evalDataOptions)
	if err != nil {
		return err
	}
	windows, total, err := eval.ScoredWindows(stream, o.evalOptions())
	if err != nil {
		return badInput(err)
	}
	var golden *goldenRef
	if o.golden != "" {
		name := o.goldenName
		if name == "" {
			name = filepath.Base(filepath.Clean(o.model))
		}
		if golden, err = findGolden(o.golden, name, o.data, o.seqLen, len(windows), total); err != nil {
			return err
		}
		golden.Tolerance = o.goldenTol
	}
	tokens, removeTokens, err := writeTokensFile(windows, lm.cfg.VocabSize)
	if err != nil {
		return err
	}
	defer removeTokens()

	// The timeout bounds the GPU run only; the CPU comparison is as long as eval ppl is.
	gpuCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	bar := newProgress(g.errOut, o.asJSON, int64(len(windows)), "loading the model on the GPU", "windows")
	ans, _, err := gpu.PPL(gpuCtx, gpu.RunOptions{Stderr: g.errOut, Progress: rateProgress(bar, "perplexity on the GPU", int64(o.seqLen))}, rt,
		gpu.PPLOptions{Model: lm.path, Tokens: tokens, Batch: o.batch, KVCache: kvCacheArg(o.kvCache),
			TP: o.tp, TPBits: o.tpBits, TPGroup: o.tpGroup, TPSymmetric: o.tpSymmetric})
	bar.Done()
	if err != nil {
		removeTokens()
		return err
	}
	// --compare-sim: the same windows unsplit on the GPU, for the GPU's own ratio.
	var unsplit *gpu.PPLAnswer
	if o.compareSim {
		bar := newProgress(g.errOut, o.asJSON, int64(len(windows)), "loading the model on the GPU (unsplit)", "windows")
		unsplit, _, err = gpu.PPL(gpuCtx, gpu.RunOptions{Stderr: g.errOut, Progress: rateProgress(bar, "perplexity on the GPU, unsplit", int64(o.seqLen))}, rt,
			gpu.PPLOptions{Model: lm.path, Tokens: tokens, Batch: o.batch, KVCache: kvCacheArg(o.kvCache)})
		bar.Done()
		if err != nil {
			removeTokens()
			return err
		}
		if unsplit.Windows != len(windows) {
			removeTokens()
			return fmt.Errorf("%s scored %d windows unsplit; it was given %d", rt, unsplit.Windows, len(windows))
		}
	}
	removeTokens()
	if ans.SeqLen != o.seqLen || ans.Windows != len(windows) {
		return fmt.Errorf("%s scored %d windows of %d tokens; it was given %d of %d", rt, ans.Windows, ans.SeqLen, len(windows), o.seqLen)
	}
	res := &eval.PPLResult{
		Windows: len(windows), TotalWindows: total, SeqLen: o.seqLen, StreamTokens: len(stream),
		TokensScored: len(windows) * (o.seqLen - 1), NLLPerWindow: ans.NLLPerWindow, Seconds: ans.Seconds,
	}
	// As eval.Perplexity does: the windows' NLLs summed in order in float64, and the rate
	// counting every window position run (the runtime's own figure may count scored tokens).
	res.PPL = math.Exp(sumNLL(res.NLLPerWindow) / float64(res.TokensScored))
	if ans.Seconds > 0 {
		res.TokensPerSecond = float64(len(windows)*o.seqLen) / ans.Seconds
	}
	rep := verifyPPLReport{Model: o.model, Data: o.data, PPLResult: res, Device: "cuda", Path: ans.Path, Arch: ans.Arch,
		Batch: ans.Batch, KVCache: o.kvCache, GPU: ans.GPU, RuntimeVersion: ans.RuntimeVersion}
	if o.tp > 1 {
		if ans.TP != o.tp || !ans.TPRanksIdentical {
			return fmt.Errorf("%s ran %d tensor-parallel ranks (identical results: %v); --tp %d was asked for", rt, ans.TP, ans.TPRanksIdentical, o.tp)
		}
		rep.TP = &tpReport{TP: ans.TP, Bits: ans.TPBits, Group: ans.TPGroup, Symmetric: ans.TPSymmetric}
	}
	if ans.KVCache != "" && ans.KVCache != o.kvCache {
		return fmt.Errorf("%s ran over a %s KV cache; --kv-cache %s was asked for", rt, ans.KVCache, o.kvCache)
	}

	if golden != nil {
		golden.RelativeDifference = (res.PPL - golden.PPL) / golden.PPL
		golden.Met = math.Abs(golden.RelativeDifference) <= golden.Tolerance
		rep.Golden = golden
	}
	if o.compareCPU {
		if rep.CPU, err = compareOnCPU(ctx, g, o, lm, stream, res); err != nil {
			return err
		}
	}
	if unsplit != nil {
		if rep.TP.Sim, err = compareWithSim(ctx, g, o, lm, stream, res, unsplit); err != nil {
			return err
		}
	}
	if o.asJSON {
		err = writeJSON(g.out, rep)
	} else {
		err = printVerifyPPL(g.out, rt, &rep)
	}
	if err != nil {
		return err
	}
	var missed []string
	if c := rep.CPU; c != nil && !c.Met {
		missed = append(missed, fmt.Sprintf("the GPU perplexity %.6g differs from the CPU's %.6g by %+.3f%%, beyond the tolerance of %.3g%%",
			res.PPL, c.PPL, 100*c.RelativeDifference, 100*c.Tolerance))
	}
	if gr := rep.Golden; gr != nil && !gr.Met {
		missed = append(missed, fmt.Sprintf("the GPU perplexity %.6g differs from the golden %.6g (%s) by %+.3f%%, beyond the tolerance of %.3g%%",
			res.PPL, gr.PPL, gr.Entry, 100*gr.RelativeDifference, 100*gr.Tolerance))
	}
	if t := rep.TP; t != nil && t.Sim != nil && !t.Sim.Met {
		missed = append(missed, fmt.Sprintf("the split changes the GPU perplexity by %+.3f%%, sim allreduce predicts %+.3f%%: %+.3f points, beyond the tolerance of %.3g",
			100*(t.Sim.GPURatio-1), 100*(t.Sim.SimRatio-1), 100*t.Sim.Difference, 100*t.Sim.Tolerance))
	}
	if len(missed) > 0 {
		return &exitError{code: exitFailure, err: errors.New(strings.Join(missed, "; "))}
	}
	return nil
}

// compareOnCPU runs eval ppl's computation on the same stream and options, so it scores the
// windows the GPU scored.
func compareOnCPU(ctx context.Context, g *globalOptions, o *verifyPPLOptions, lm *loadedModel, stream []int, gpuRes *eval.PPLResult) (*cpuComparison, error) {
	if err := lm.loadWeights(); err != nil {
		return nil, err
	}
	opt, bar := o.evalOptionsWithProgress(g.errOut, gpuRes.Windows, "perplexity on the CPU")
	cpu, err := eval.Perplexity(ctx, lm.model, stream, opt)
	bar.Done()
	if err != nil {
		return nil, evalError(err)
	}
	if cpu.Windows != gpuRes.Windows {
		return nil, fmt.Errorf("the CPU scored %d windows, the GPU %d", cpu.Windows, gpuRes.Windows)
	}
	c := &cpuComparison{PPLResult: cpu, RelativeDifference: (gpuRes.PPL - cpu.PPL) / cpu.PPL, Tolerance: o.tolerance}
	for i, v := range cpu.NLLPerWindow {
		if d := math.Abs(gpuRes.NLLPerWindow[i]-v) / math.Max(math.Abs(v), 1e-12); d > c.MaxWindowRelativeDifference {
			c.MaxWindowRelativeDifference = d
		}
	}
	c.Met = math.Abs(c.RelativeDifference) <= o.tolerance
	return c, nil
}

// compareWithSim runs sim allreduce on the CPU with --tp's split and codec over the windows the
// GPU scored, and compares its perplexity ratio with the GPU's (split over unsplit).
func compareWithSim(ctx context.Context, g *globalOptions, o *verifyPPLOptions, lm *loadedModel, stream []int, split *eval.PPLResult, unsplit *gpu.PPLAnswer) (*simComparison, error) {
	c := tpsim.Config{TP: o.tp, Codec: quant.FlashComm{Bits: o.tpBits, Group: o.tpGroup, Symmetric: o.tpSymmetric}}
	if err := tpsim.CheckConfig(&lm.cfg, c); err != nil {
		return nil, badInput(fmt.Errorf("%s: %w", o.model, err))
	}
	if err := lm.loadWeights(); err != nil {
		return nil, err
	}
	opt, bar := o.evalOptionsWithProgress(g.errOut, split.Windows, "sim allreduce on the CPU")
	sim, err := tpsim.Compare(ctx, lm.model, c, stream, opt)
	bar.Done()
	if err != nil {
		return nil, evalError(err)
	}
	if sim.Windows != split.Windows {
		return nil, fmt.Errorf("sim allreduce scored %d windows, the GPU %d", sim.Windows, split.Windows)
	}
	un := math.Exp(sumNLL(unsplit.NLLPerWindow) / float64(split.TokensScored))
	r := &simComparison{GPUUnsplitPPL: un, GPURatio: split.PPL / un, SimReference: sim.PPLReference, SimPPL: sim.PPL,
		SimRatio: sim.Ratio, KLMean: sim.KLMean, Tolerance: o.simTol, Seconds: sim.Seconds}
	r.Difference = r.GPURatio - r.SimRatio
	r.Met = math.Abs(r.Difference) <= o.simTol
	return r, nil
}

func sumNLL(nll []float64) float64 {
	var s float64
	for _, v := range nll {
		s += v
	}
	return s
}

// writeTokensFile writes the windows to a temporary file for the runtime and returns its
// path and the function that removes it (idempotent; also run on a forced exit, a second
// Ctrl-C, which skips deferred calls).
func writeTokensFile(windows [][]int, vocab int) (string, func(), error) {
	f, err := os.CreateTemp("", "odyssey-tokens-*.bin")
	if err != nil {
		return "", nil, err
	}
	name := f.Name()
	var once sync.Once
	var unregister func()
	remove := func() {
		once.Do(func() {
			os.Remove(name)
			if unregister != nil {
				unregister()
			}
		})
	}
	unregister = onForcedExit(func() { os.Remove(name) })
	if err := gpu.WriteTokenWindows(f, windows, vocab); err != nil {
		f.Close()
		remove()
		return "", nil, badInput(fmt.Errorf("the windows of the data: %w", err))
	}
	if err := f.Close(); err != nil {
		remove()
		return "", nil, fmt.Errorf("writing %s: %w", name, err)
	}
	return name, remove, nil
}

// rateProgress returns a gpu.RunOptions.Progress that moves bar and shows the rate in tokens
// per second (unit tokens per step) since the first progress line, which comes after the
// model is loaded. The progress bar predicts the time left.
func rateProgress(bar *progress, desc string, unit int64) func(done, total int64) {
	var t0 time.Time
	var d0 int64
	return func(done, total int64) {
		bar.SetTotal(total)
		if t0.IsZero() {
			t0, d0 = time.Now(), done
			bar.Set(done, desc)
			return
		}
		if secs := time.Since(t0).Seconds(); secs > 0 && unit > 0 {
			bar.Set(done, fmt.Sprintf("%s (%.0f tok/s)", desc, float64((done-d0)*unit)/secs))
			return
		}
		bar.Set(done, desc)
	}
}

func printVerifyPPL(w io.Writer, rt string, r *verifyPPLReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", r.Model)
	fmt.Fprintf(tw, "data\t%s (%d tokens, BOS included)\n", r.Data, r.StreamTokens)
	fmt.Fprintf(tw, "windows\t%d of %d, L = %d, %d tokens scored\n", r.Windows, r.TotalWindows, r.SeqLen, r.TokensScored)
	fmt.Fprintf(tw, "perplexity\t%.4f\n", r.PPL)
	fmt.Fprintf(tw, "time\t%.1f s (%.0f tokens/s)\n", r.Seconds, r.TokensPerSecond)
	fmt.Fprintf(tw, "GPU\t%s, compute capability %s, driver %s, %s\n", r.GPU.Name, r.GPU.CC, r.GPU.Driver, humanBytes(r.GPU.MemoryBytes))
	kv := ""
	if r.KVCache == "int8" {
		kv = ", int8 KV cache"
	}
	fmt.Fprintf(tw, "executor\t%s path, batch %d%s; odyssey-rt %s (%s)\n", r.Path, r.Batch, kv, r.RuntimeVersion, rt)
	if t := r.TP; t != nil {
		ar := "exact (fp32 sum of the fp16 partials)"
		if t.Bits != 16 {
			sym := "asymmetric"
			if t.Symmetric {
				sym = "symmetric"
			}
			ar = fmt.Sprintf("INT%d, groups of %d, %s (Flash Communication)", t.Bits, t.Group, sym)
		}
		fmt.Fprintf(tw, "tensor parallel\t%d ranks on one GPU, all-reduce %s; every rank's NLLs identical\n", t.TP, ar)
		if sc := t.Sim; sc != nil {
			verdict := "within"
			if !sc.Met {
				verdict = "BEYOND"
			}
			fmt.Fprintf(tw, "split vs unsplit\tGPU %+.4f%% (unsplit %.4f); sim allreduce %+.4f%% (reference %.4f, CPU)\n",
				100*(sc.GPURatio-1), sc.GPUUnsplitPPL, 100*(sc.SimRatio-1), sc.SimReference)
			fmt.Fprintf(tw, "GPU vs simulation\t%+.4f points (%s the tolerance of %.3g)\n", 100*sc.Difference, verdict, 100*sc.Tolerance)
		}
	}
	if c := r.CPU; c != nil {
		verdict := "within"
		if !c.Met {
			verdict = "BEYOND"
		}
		fmt.Fprintf(tw, "CPU perplexity\t%.4f (eval ppl, %.1f s)\n", c.PPL, c.Seconds)
		fmt.Fprintf(tw, "GPU vs CPU\t%+.4f%% (%s the tolerance of %.3g%%); largest window NLL difference %.4f%%\n",
			100*c.RelativeDifference, verdict, 100*c.Tolerance, 100*c.MaxWindowRelativeDifference)
	}
	if gr := r.Golden; gr != nil {
		verdict := "within"
		if !gr.Met {
			verdict = "BEYOND"
		}
		fmt.Fprintf(tw, "golden perplexity\t%.4f (%s %s, %d windows)\n", gr.PPL, gr.Model, gr.Entry, gr.Windows)
		fmt.Fprintf(tw, "GPU vs golden\t%+.4f%% (%s the tolerance of %.3g%%)\n", 100*gr.RelativeDifference, verdict, 100*gr.Tolerance)
	}
	return tw.Flush()
}
