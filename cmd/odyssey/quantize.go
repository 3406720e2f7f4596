package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/corpus"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq"
	"github.com/odyssey-llm/odyssey/quantizejob"
	"github.com/odyssey-llm/odyssey/recipes"
	"github.com/spf13/cobra"
)

type quantizeOptions struct {
	model  string
	out    string
	recipe string
	calib  string
	export string
	asJSON bool
	force  bool
	resume bool
	noSync bool
	strict bool // refuse calibration data that does not look like text
	device string
	// gpuPrecision is the GPU calibration's arithmetic (fp16, fp32, exact; "" for
	// $ODYSSEY_CALIB_PRECISION, else gpu.DefaultCalibPrecision, exact).
	gpuPrecision string
	// runtimePath is the odyssey-rt that calibrates on the GPU ("" for the CPU), resolved
	// from device by resolveQuantizeDevice before any work.
	runtimePath string
}

// afterLayerHook, when set (by tests), is called after each layer is checkpointed with the
// layer's index and a function that interrupts the run as Ctrl-C would.
var afterLayerHook func(layer int, interrupt func())

func newQuantizeCmd(g *globalOptions) *cobra.Command {
	o := &quantizeOptions{}
	cmd := &cobra.Command{
		Use:   "quantize --model DIR --out DIR",
		Short: "Quantize a model to W4A8 and write the artifact",
		Long: `Quantize runs a recipe (default ` + recipes.Default + `: FPTQ with LAE, int4 g128 RTN weights,
integer scales, data-free calibration sampled from the model itself) over a Hugging Face checkpoint
layer by layer, and writes the quantized model as a folder: config.json with a quantization_config
block, model.safetensors (sharded by the recipe's output.shard_size) with int4 weights packed for
the FastGEMM kernel (docs/fastgemm-layout.md), the tokenizer files, and odyssey.json recording the
tool version, the full recipe, the calibration source and every layer's decisions.

Everything is checked before the heavy work: the model, the recipe against the model (layers whose
input dimension the group size does not divide are listed; they fall back to per-channel), the
calibration file and its length, the output folder, and every weight for NaN or Inf.

The artifact is built in OUT.partial beside OUT and renamed to OUT when complete, so OUT is never
half-written. Each finished layer is checkpointed there: after an interruption (Ctrl-C, exit code
130), run the same command with --resume to continue from the next layer; without --resume a
leftover OUT.partial is discarded. SIGTERM is handled as Ctrl-C (exit code 143). An existing OUT is
refused unless --force, and --force replaces only an earlier artifact or an empty folder. OUT may
not be (or contain, or lie inside) the model folder, nor be or contain the calibration file's
folder or the working directory. One run at a time may write OUT (a lock, OUT.partial.lock).

The weight files are flushed to the disk (fsync) before the rename, so that OUT survives a power
loss intact; on a slow disk that flush can take longer than the quantization itself, and
--no-sync skips it for scratch output (a CI job that uploads the artifact, say).

A recipe that needs no calibration statistics (w4a8-rtn: round-to-nearest weights, per-token
activations, no equalization) draws no calibration windows and runs no forward pass: each
weight is read from the checkpoint a few rows at a time and quantized as it is read.

With --export compressed-tensors the output is llm-compressor's pack-quantized checkpoint that
vLLM loads (int4 weights with float scales, int8 dynamic per-token activations) instead; a W8A8
recipe (w8a8-smoothquant) is exported in its int-quantized form (int8 per-channel weights). The
Odyssey output stores int4 weights only.`,
		Example: "  odyssey quantize --model testdata/tiny-llama --out /tmp/tiny-w4a8\n" +
			"  odyssey quantize --model ../shared/models/small-llama --out /tmp/small-w4a8 --calib ../shared/data/calib/calib_mix.txt --json\n" +
			"  odyssey quantize --model DIR --out OUT --recipe w4a8-rtn --export compressed-tensors",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.model == "" || o.out == "" {
				return usageErrorf("quantize needs --model DIR and --out DIR")
			}
			switch o.export {
			case "", artifact.OutputOdyssey, artifact.OutputCompressedTensors:
			default:
				return usageErrorf("unknown --export %q (want %s or %s)", o.export, artifact.OutputOdyssey, artifact.OutputCompressedTensors)
			}
			if !gpu.ValidPrecision(o.gpuPrecision) {
				return usageErrorf("unknown --gpu-precision %q (want fp16, fp32 or exact)", o.gpuPrecision)
			}
			if o.gpuPrecision != "" && o.device == "cpu" {
				return usageErrorf("--gpu-precision %s applies to the GPU calibration; --device cpu never uses it", o.gpuPrecision)
			}
			rt, err := resolveQuantizeDevice(cmd.Context(), g, o.device)
			if err != nil {
				return err
			}
			o.runtimePath = rt
			if rt == "" && o.gpuPrecision != "" {
				fmt.Fprintf(g.errOut, "odyssey: note: --gpu-precision %s is not used: calibrating on the CPU\n", o.gpuPrecision)
			}
			return runQuantize(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model folder (Hugging Face layout) or .tar.zst bundle (required)")
	f.StringVar(&o.out, "out", "", "output folder for the quantized model (required)")
	f.StringVar(&o.recipe, "recipe", recipes.Default, "recipe: a preset name (odyssey recipes list) or a YAML file")
	f.BoolVar(&o.strict, "strict", false, "refuse calibration data that does not look like text (byte-fallback tokens, control characters), instead of warning")
	f.StringVar(&o.calib, "calib", "", "calibration data, a text or JSONL file, or \"self\" (overrides the recipe's calibration.data)")
	f.StringVar(&o.export, "export", "", "output format: odyssey or compressed-tensors (default: the recipe's output.format)")
	f.BoolVar(&o.asJSON, "json", false, "print a machine-readable summary (per-layer policy, scales, errors, timings, memory) on stdout, and progress events (one JSON object a line: stage, layer, done/total, elapsed and remaining seconds; docs/quantize-events.md) on stderr")
	f.BoolVar(&o.force, "force", false, "replace an existing output folder: an earlier odyssey artifact or an empty folder")
	f.BoolVar(&o.resume, "resume", false, "continue an interrupted run from the layers checkpointed in OUT.partial")
	f.BoolVar(&o.noSync, "no-sync", false, "do not fsync the weight files before publishing OUT (faster on slow disks; a power loss may damage OUT)")
	f.StringVar(&o.device, "device", "auto", "where calibration runs: cpu, cuda (the CUDA runtime, odyssey-rt calib: docs/gpu-calibration.md) or auto (cuda when a runtime is found and sees a GPU, else cpu)")
	f.StringVar(&o.gpuPrecision, "gpu-precision", "", "arithmetic of the GPU calibration: exact (the CPU's float32 arithmetic bit for bit: the artifact equals --device cpu's), fp16 (fastest: about 0.65–0.7× exact's time on a 7B, artifacts within a few tenths of a percent of perplexity), or fp32; default $"+gpu.CalibPrecisionEnv+", else "+gpu.DefaultCalibPrecision+" (docs/gpu-calibration.md)")
	_ = cmd.MarkFlagRequired("model")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// quantizeJob is everything validated before the heavy work starts.
type quantizeJob struct {
	o         *quantizeOptions
	hm        *hf.Model
	tok       *tokenizer.Tokenizer
	recipe    *recipes.Recipe
	plan      *recipes.Plan
	opt       ptq.Options
	output    string
	calibPath string // "" for self
	calib     artifact.Calibration
	windows   [][]int // drawn already for text calibration; nil for self until sampled
	// needsCalib is false when the recipe needs no statistics (ptq.Options.NeedsCalibration):
	// then no windows are drawn and no forward pass runs.
	needsCalib bool
	notes      []string
	staging    string
}

func runQuantize(ctx context.Context, g *globalOptions, o *quantizeOptions) (err error) {
	start := time.Now()
	out := filepath.Clean(o.out)
	protected := []protectedPath{{what: "the model folder", path: o.model, inside: true}, workingDir()}
	if o.calib != "" && o.calib != recipes.Self {
		protected = append(protected, protectedPath{what: "the calibration file's folder", path: filepath.Dir(o.calib)}, protectedPath{what: "the calibration file", path: o.calib})
	}
	if err := checkOutputClear("--out", out, protected); err != nil {
		return err
	}
	if err := checkOutputClear("--out", out+".partial", protected); err != nil {
		return err
	}
	// One run at a time per output, for the whole run: a second run into the same OUT
	// would mix its layers into this one's OUT.partial.
	unlock, err := lockOutput(out)
	if err != nil {
		return err
	}
	defer unlock()
	if err := checkQuantizeOut(out, o.force); err != nil { // under the lock
		return err
	}
	job, cleanup, err := prepareQuantize(g, o)
	if err != nil {
		return err
	}
	defer cleanup()
	if job.calibPath != "" {
		// The recipe's calibration file, which --calib did not name.
		if err := checkOutputClear("--out", out, []protectedPath{{what: "the calibration file's folder", path: filepath.Dir(job.calibPath)}, {what: "the calibration file", path: job.calibPath}}); err != nil {
			return err
		}
	}
	rep := &quantizeReport{Model: o.model, Out: out, Recipe: job.recipe.Source, RecipeHash: job.recipe.Hash(),
		Output: job.output, Layers: job.hm.Config.NumLayers, Notes: job.notes}
	ver := currentVersion()
	res, err := quantizejob.Run(ctx, &quantizejob.Options{
		Model: job.hm, Tokenizer: job.tok, Recipe: job.recipe, PTQ: job.opt, Output: job.output,
		Calibration: job.calib, Windows: job.windows, NeedsCalibration: job.needsCalib, Notes: job.notes,
		Out: out, Resume: o.resume, NoSync: o.noSync, SourcePath: o.model,
		Tool:      artifact.Tool{Name: "odyssey", Version: ver.Version, Revision: ver.Revision, Modified: ver.Modified, GoVersion: ver.GoVersion},
		Scheme:    schemeOf(job.recipe),
		GCPercent: quantizejob.DefaultGCPercent,
		Publish: func() error {
			if err := checkQuantizeOut(out, o.force); err != nil {
				return err
			}
			return (&stagedDir{final: out, tmp: job.staging, force: o.force, replaceable: func(dir string) error { return checkQuantizeOut(dir, true) }}).Commit()
		},
	}, quantizejob.Callbacks{
		StartProgress: func(title, unit string, total int64) quantizejob.Progress {
			return newProgress(g.errOut, o.asJSON, total, title, unit)
		},
		Event: func(ev quantizejob.Event) {
			if o.asJSON {
				// One JSON object per line on stderr; stdout keeps the single summary.
				b, _ := json.Marshal(ev)
				fmt.Fprintf(g.errOut, "%s\n", b)
			}
		},
		Note:    func(msg string) { fmt.Fprintf(g.errOut, "odyssey: %s\n", msg) },
		Cleanup: func(msg string) { g.trail("%s", msg) },
		OnLayer: func(ev ptq.ProgressEvent, interrupt func()) {
			rep.PerLayer = append(rep.PerLayer, layerReportOf(ev.Layer))
			if afterLayerHook != nil {
				afterLayerHook(ev.Layer.Layer, interrupt)
			}
		},
	})
	if err != nil {
		var ie *quantizejob.InputError
		if errors.As(err, &ie) {
			return badInput(ie.Err)
		}
		return err
	}
	rep.BytesIn, rep.FP16BytesIn = res.BytesIn, res.FP16BytesIn
	rep.ResumedLayers, rep.WindowsReused = res.ResumedLayers, res.WindowsReused
	rep.Timings.ScanSeconds = res.ScanTime.Seconds()
	rep.Timings.WindowsSeconds = res.WindowsTime.Seconds()
	rep.Timings.QuantizeSeconds = res.QuantizeTime.Seconds()
	rep.Timings.AssembleSeconds = res.AssembleTime.Seconds()
	rep.Timings.TotalSeconds = time.Since(start).Seconds()
	rep.PeakHeapBytes = res.PTQ.Mem.PeakHeapInuse
	rep.ActivationBytes = res.PTQ.Mem.ActivationBytes
	rep.finish(res.Provenance, res.PTQ)
	if o.asJSON {
		return writeJSON(g.out, rep)
	}
	return printQuantize(g.out, rep)
}

// prepareQuantize validates everything that can be checked before the heavy work: the
// model, the recipe against it, the calibration data (drawing text windows, which only
// tokenizes), and the output format.
func prepareQuantize(g *globalOptions, o *quantizeOptions) (*quantizeJob, func(), error) {
	job := &quantizeJob{o: o, staging: filepath.Clean(o.out) + ".partial"}
	dir, cleanupBundle, err := openModelPath(g, o.model)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*quantizeJob, func(), error) {
		if job.hm != nil {
			job.hm.Close()
		}
		cleanupBundle()
		return nil, nil, err
	}
	if st, err := os.Stat(dir); err != nil {
		return fail(badInput(fmt.Errorf("--model: %w", err)))
	} else if !st.IsDir() {
		return fail(badInput(fmt.Errorf("--model %s is not a folder", o.model)))
	}
	if artifact.IsArtifact(dir) {
		return fail(badInput(fmt.Errorf("%s is already a quantized artifact; quantize its full-precision source instead", o.model)))
	}
	if job.hm, err = hf.Load(dir); err != nil {
		return fail(badInput(err))
	}
	cfg := job.hm.Config
	if err := model.CheckConfig(&cfg); err != nil {
		return fail(badInput(fmt.Errorf("%s: %w", o.model, err)))
	}

	r, err := recipes.Load(o.recipe)
	if err != nil {
		return fail(recipeError(g, o.recipe, err))
	}
	if o.calib != "" {
		// --calib is relative to the working directory, unlike a path in a recipe file.
		r.Calibration.Data, r.Calibration.Format = o.calib, ""
		if o.calib != recipes.Self {
			r.Calibration.Format = "text"
			if filepath.Ext(o.calib) == ".jsonl" {
				r.Calibration.Format = "jsonl"
			}
		}
		if err := r.Validate(); err != nil {
			return fail(recipeError(g, o.recipe, err))
		}
		if o.calib != recipes.Self {
			job.calibPath = o.calib
		}
	} else {
		job.calibPath = r.CalibrationPath()
	}
	if err := r.ValidateFiles(); err != nil && o.calib == "" {
		return fail(recipeError(g, o.recipe, err))
	}
	if job.calibPath != "" {
		if st, err := os.Stat(job.calibPath); err != nil {
			return fail(badInput(fmt.Errorf("calibration data: %w", err)))
		} else if st.IsDir() {
			return fail(badInput(fmt.Errorf("calibration data %s is a folder, not a file", job.calibPath)))
		}
		if err := eval.CheckTextFile(job.calibPath); err != nil {
			return fail(badInput(fmt.Errorf("calibration data: %w", err)))
		}
	}
	if job.plan, err = r.ValidateForModel(cfg); err != nil {
		return fail(recipeError(g, o.recipe, err))
	}
	job.recipe = r
	job.output = outputFormat(r, o.export)
	if r.Weights.Bits != 4 && job.output != artifact.OutputCompressedTensors {
		return fail(badInput(fmt.Errorf("recipe %s has %d-bit weights; the %s output stores int4 weights only (use a W4 recipe)", r.Source, r.Weights.Bits, job.output)))
	}
	if job.opt, err = ptqOptions(r, job.plan, job.calibPath); err != nil {
		return fail(badInput(fmt.Errorf("recipe %s: %w", r.Source, err)))
	}
	for _, line := range job.plan.Summary() {
		// The embedding and LM head are never quantized; saying so for every run is noise.
		if strings.HasPrefix(line, "skip: embed_tokens ") || strings.HasPrefix(line, "skip: lm_head ") {
			continue
		}
		fmt.Fprintf(g.errOut, "odyssey: %s\n", line)
	}
	job.notes = recipeNotes(job.plan)
	if job.hm.TokenizerPath == "" {
		// Quantizing needs no tokenizer (data-free or weight-only), but serving and
		// evaluating the artifact do: say so now, and in odyssey.json.
		note := fmt.Sprintf("no tokenizer: %s has no tokenizer.json, so neither has the artifact; it cannot be served or evaluated until the model's tokenizer files are copied into it", o.model)
		job.notes = append(job.notes, note)
		fmt.Fprintf(g.errOut, "odyssey: warning: %s\n", note)
	}

	if job.hm.TokenizerPath != "" {
		if job.tok, err = tokenizer.Load(job.hm.TokenizerPath); err != nil {
			return fail(badInput(err))
		}
	}
	if _, err := eval.BOS(job.tok, cfg); err != nil {
		return fail(badInput(fmt.Errorf("%s: calibration windows start with BOS: %w", o.model, err)))
	}
	c := r.Calibration
	if job.calibPath == "" && job.opt.NeedsCalibration() {
		if s, l, ok := selfCalibrationSize(c.Samples, c.SeqLen, job.hm.NumParams()); ok {
			note := fmt.Sprintf("data-free calibration sized to the model: %d×%d tokens instead of the recipe's %d×%d (a model under %dM parameters samples at most %d×%d)",
				s, l, c.Samples, c.SeqLen, smallModelParams/1_000_000, calib.DefaultSelfSamples, calib.DefaultSelfSeqLen)
			fmt.Fprintf(g.errOut, "odyssey: %s\n", note)
			job.notes = append(job.notes, note)
			c.Samples, c.SeqLen = s, l
			job.opt.Calib.Samples, job.opt.Calib.SeqLen = s, l
		}
	}
	job.calib = artifact.Calibration{Source: recipes.Self, Seed: c.Seed, Samples: c.Samples, SeqLen: c.SeqLen}
	if job.needsCalib = job.opt.NeedsCalibration(); job.needsCalib && o.runtimePath != "" {
		if why := gpuCalibUnsupported(job.opt); why != "" {
			if o.device != "auto" {
				return fail(badInput(fmt.Errorf("--device cuda: %s; use --device cpu (or auto)", why)))
			}
			fmt.Fprintf(g.errOut, "odyssey: note: calibrating on the CPU: %s\n", why)
			o.runtimePath = ""
		} else {
			job.opt.NewPass = gpuCalibPass(g, o.runtimePath, dir, o.device, o.gpuPrecision, job.opt.Calib.Propagate)
		}
	}
	if !job.needsCalib {
		// The recipe's calibration section is kept (it is recorded with the recipe), but
		// nothing reads statistics, so no windows are drawn: the artifact depends on the
		// weights alone.
		job.calib = artifact.Calibration{Source: artifact.CalibrationNone}
		if job.calibPath != "" {
			fmt.Fprintf(g.errOut, "odyssey: note: %s is not read: the recipe needs no calibration statistics\n", job.calibPath)
		}
		return job, func() { job.hm.Close(); cleanupBundle() }, nil
	}
	if job.calibPath == "" {
		// Data-free windows are sampled by decoding with the whole model in float32 (the
		// layer-by-layer pass comes after): refuse now, not after minutes of loading, when
		// that cannot fit.
		// Plus the key/value cache of one batch of 64 windows (calib.SampleOptions.Batch).
		batch := int64(min(max(job.opt.Calib.Samples, 1), 64))
		need := 4*job.hm.NumParams() + batch*int64(job.opt.Calib.SeqLen)*int64(cfg.NumLayers)*int64(2*cfg.NumKVHeads*cfg.HeadDim)*4
		if avail := memAvailableFn(); avail > 0 && need > avail {
			return fail(badInput(fmt.Errorf("data-free calibration (calibration data \"self\") samples its windows with the whole model in float32, about %s, but only %s of memory is available; calibrate from a text file instead (--calib FILE), or choose a recipe that needs no calibration (--recipe w4a8-rtn)",
				humanBytes(need), humanBytes(avail))))
		}
	}
	if job.calibPath != "" {
		if job.tok == nil {
			return fail(badInput(fmt.Errorf("%s has no tokenizer.json; calibrating from %s needs the model's tokenizer (or use --calib self)", o.model, job.calibPath)))
		}
		job.calib.Source, job.calib.Format = job.calibPath, job.opt.Calib.Format
		if job.calib.SHA256, err = artifact.FileSHA256(job.calibPath); err != nil {
			return fail(badInput(fmt.Errorf("calibration data: %w", err)))
		}
		// Reading text windows only tokenizes: do it now, so that a file too short for the
		// recipe fails before any weight is read.
		job.windows, err = calib.LoadWindows(context.Background(), job.hm, job.tok, job.opt.Calib, nil)
		if err != nil {
			return fail(calibError(err))
		}
		// Random bytes or NULs tokenize without error; what the tokenizer made of them shows it.
		bos, _ := eval.BOS(job.tok, cfg)
		if problems := corpus.MeasureQuality(job.tok, job.windows, bos).Problems(); problems != nil {
			msg := fmt.Sprintf("calibration data %s does not look like text: %s", job.calibPath, strings.Join(problems, "; "))
			if o.strict {
				return fail(badInput(errors.New(msg + " (--strict)")))
			}
			fmt.Fprintf(g.errOut, "odyssey: warning: %s; the scales calibrated on it may not fit real inputs (--strict refuses such data)\n", msg)
			job.notes = append(job.notes, "warning: "+msg)
		}
	}
	return job, func() { job.hm.Close(); cleanupBundle() }, nil
}

// calibError classifies calibration failures: cancellation stays cancellation, anything
// else (a short or unreadable file, windows longer than the model's context) is bad input.
func calibError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return badInput(err)
}

// quantizeReport is what `odyssey quantize --json` prints. Field names are a stable
// interface.
type quantizeReport struct {
	Model         string `json:"model"`
	Out           string `json:"out"`
	Recipe        string `json:"recipe"`
	RecipeHash    string `json:"recipe_hash"`
	Output        string `json:"output"`
	Layers        int    `json:"layers"`
	ResumedLayers int    `json:"resumed_layers"`
	// WindowsReused is set when a resumed run read the sampled calibration windows back
	// instead of sampling them again.
	WindowsReused bool                 `json:"calibration_windows_reused,omitempty"`
	Calibration   artifact.Calibration `json:"calibration"`
	Timings       quantizeTimings      `json:"timings"`
	// BytesIn is the size of the source tensors; FP16BytesIn the same in 16 bits (the
	// baseline of the throughput and compression figures); BytesOut the artifact's tensors.
	BytesIn     int64   `json:"bytes_in"`
	FP16BytesIn int64   `json:"fp16_bytes_in"`
	BytesOut    int64   `json:"bytes_out"`
	Compression float64 `json:"compression_ratio"`
	// GBPerSecond is fp16 input bytes (1e9) per second of the whole run;
	// GBPerSecondExclCalibration leaves out sampling windows and the calibration forward
	// passes (statistics and propagation).
	GBPerSecond                float64 `json:"gb_per_second"`
	GBPerSecondExclCalibration float64 `json:"gb_per_second_excl_calibration"`
	// PeakRSSBytes is the process's peak resident set (VmHWM; 0 where unavailable),
	// PeakHeapBytes the largest heap in use the calibration pass sampled.
	PeakRSSBytes    int64            `json:"peak_rss_bytes"`
	PeakHeapBytes   uint64           `json:"peak_heap_bytes"`
	ActivationBytes int64            `json:"activation_bytes"`
	Summary         artifact.Summary `json:"summary"`
	Notes           []string         `json:"notes,omitempty"`
	PerLayer        []layerReport    `json:"per_layer"`
}

type quantizeTimings struct {
	ScanSeconds         float64 `json:"scan_s"`
	WindowsSeconds      float64 `json:"calibration_windows_s"`
	CalibForwardSeconds float64 `json:"calibration_forward_s"`
	QuantizeSeconds     float64 `json:"layers_s"`
	AssembleSeconds     float64 `json:"assemble_s"`
	TotalSeconds        float64 `json:"total_s"`
}

type layerReport struct {
	Layer            int            `json:"layer"`
	CollectSeconds   float64        `json:"collect_s"`
	QuantizeSeconds  float64        `json:"quantize_s"`
	PropagateSeconds float64        `json:"propagate_s"`
	Linears          []linearReport `json:"linears"`
}

type linearReport struct {
	Name         string  `json:"name"`
	Policy       string  `json:"policy"`
	ActScale     float32 `json:"act_scale"`
	GroupSize    int     `json:"group_size,omitempty"`
	Fallback     bool    `json:"group_fallback,omitempty"`
	AlphaLog2Min int     `json:"alpha_log2_min,omitempty"`
	AlphaLog2Max int     `json:"alpha_log2_max,omitempty"`
	WeightError  float64 `json:"weight_error"`
	Seconds      float64 `json:"seconds"`
}

func layerReportOf(lr *ptq.LayerResult) layerReport {
	r := layerReport{Layer: lr.Layer, CollectSeconds: lr.CollectTime.Seconds(), QuantizeSeconds: lr.QuantizeTime.Seconds(),
		PropagateSeconds: lr.PropagateTime.Seconds()}
	for _, l := range lr.Linears {
		lin := linearReport{Name: l.Name, GroupSize: l.GroupSize, Fallback: l.GroupFallback, AlphaLog2Min: l.AlphaLog2Min,
			AlphaLog2Max: l.AlphaLog2Max, WeightError: l.WeightError, Seconds: l.Time.Seconds()}
		switch {
		case l.Skipped:
			lin.Policy = "skipped (16-bit)"
		case l.ActBits == 16:
			lin.Policy = artifact.PolicyNone.String()
		default:
			lin.Policy = l.Act.Policy.String()
			lin.ActScale = l.Act.Scale
		}
		r.Linears = append(r.Linears, lin)
	}
	return r
}

// finish fills the derived figures.
func (r *quantizeReport) finish(p *artifact.Provenance, res *ptq.Result) {
	r.Calibration = p.Calibration
	r.Summary = p.Summary
	r.BytesOut = p.Size.TensorBytes
	r.Compression = p.Size.CompressionRatio
	for _, l := range r.PerLayer {
		r.Timings.CalibForwardSeconds += l.CollectSeconds + l.PropagateSeconds
	}
	if t := r.Timings.TotalSeconds; t > 0 {
		r.GBPerSecond = float64(r.FP16BytesIn) / 1e9 / t
	}
	if t := r.Timings.TotalSeconds - r.Timings.WindowsSeconds - r.Timings.CalibForwardSeconds; t > 0 {
		r.GBPerSecondExclCalibration = float64(r.FP16BytesIn) / 1e9 / t
	}
	r.PeakRSSBytes = peakRSS()
}

func printQuantize(w io.Writer, r *quantizeReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "wrote\t%s (%s, %s)\n", r.Out, r.Output, humanBytes(r.BytesOut))
	fmt.Fprintf(tw, "recipe\t%s (%s)\n", r.Recipe, r.RecipeHash)
	fmt.Fprintf(tw, "calibration\t%s\n", r.Calibration.Describe())
	s := r.Summary
	fmt.Fprintf(tw, "linears\t%d quantized, %d kept in 16 bits, %d group-size fallbacks\n", s.Quantized, len(s.Skipped), len(s.Fallbacks))
	for _, k := range sortedKeys(s.Policies) {
		fmt.Fprintf(tw, "  %s\t%d\n", k, s.Policies[k])
	}
	if r.Output == artifact.OutputCompressedTensors {
		fmt.Fprintf(tw, "activations\tint8 per token at run time in the compressed-tensors export (the policies above are not carried over)\n")
	}
	fmt.Fprintf(tw, "weight error\tmean %.4f, max %.4f (relative Frobenius)\n", s.MeanWeightError, s.MaxWeightError)
	fmt.Fprintf(tw, "size\t%s → %s (%.2f× smaller than fp16)\n", humanBytes(r.FP16BytesIn), humanBytes(r.BytesOut), r.Compression)
	resumed := ""
	if r.ResumedLayers > 0 {
		resumed = fmt.Sprintf(", %d layers resumed", r.ResumedLayers)
	}
	fmt.Fprintf(tw, "time\t%.1f s: checking weights %.1f s, calibration windows %.1f s, layers %.1f s (calibration forward passes %.1f s of it), writing %.1f s%s\n",
		r.Timings.TotalSeconds, r.Timings.ScanSeconds, r.Timings.WindowsSeconds, r.Timings.QuantizeSeconds, r.Timings.CalibForwardSeconds, r.Timings.AssembleSeconds, resumed)
	fmt.Fprintf(tw, "throughput\t%.3g GB/s of fp16 input (%.3g GB/s without calibration)\n", r.GBPerSecond, r.GBPerSecondExclCalibration)
	if r.PeakRSSBytes > 0 {
		fmt.Fprintf(tw, "peak memory\t%s resident\n", humanBytes(r.PeakRSSBytes))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// peakRSS returns the process's peak resident set size (VmHWM of /proc/self/status on
// Linux), or 0 where the system does not report it.
func peakRSS() int64 { return procKB("/proc/self/status", "VmHWM:") }

// memAvailable returns the memory the kernel says can be allocated without swapping
// (MemAvailable of /proc/meminfo), or 0 where that is unknown.
func memAvailable() int64 { return procKB("/proc/meminfo", "MemAvailable:") }

// memAvailableFn is memAvailable, replaced by tests.
var memAvailableFn = memAvailable

// procKB reads the "key: N kB" line of a /proc file, in bytes (0 when absent).
func procKB(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return n << 10
				}
			}
		}
	}
	return 0
}

// checkQuantizeOut refuses an existing OUT without --force, and with --force anything but an
// earlier artifact or an empty folder.
func checkQuantizeOut(out string, force bool) error {
	if _, err := os.Lstat(out); err != nil {
		return nil
	}
	if !force {
		return &exitError{code: exitExists, err: fmt.Errorf("%s already exists (add --force to replace it)", out)}
	}
	return replaceableDir(out, isOdysseyArtifact, "odyssey artifact")
}

// smallModelParams is the size under which data-free calibration is capped: sampling costs
// one decode step per calibration token, and for a small model 64 windows of 256 tokens
// (calib.DefaultSelfSamples × DefaultSelfSeqLen) calibrate as well as the recipe's 128×512
// text-sized budget (ptq/ACCURACY.md: tiny-llama 1.0144 data-free at 64×256 against
// 1.0140 with 128×512 windows of real text) in a quarter of the time.
const smallModelParams = 100_000_000

// selfCalibrationSize returns the windows data-free calibration draws for a model of
// params parameters when the recipe asks for samples×seqLen: the recipe's numbers, each
// capped at calib.DefaultSelfSamples and DefaultSelfSeqLen for a model under
// smallModelParams. ok reports whether anything was capped.
func selfCalibrationSize(samples, seqLen int, params int64) (s, l int, ok bool) {
	if params >= smallModelParams {
		return samples, seqLen, false
	}
	s, l = min(samples, calib.DefaultSelfSamples), min(seqLen, calib.DefaultSelfSeqLen)
	return s, l, s != samples || l != seqLen
}

// resolveQuantizeDevice validates --device and returns the runtime that calibrates on the
// GPU, or "" for the CPU. cuda needs a runtime (gpu.Find) that sees a GPU (odyssey-rt info):
// without one it is refused at once as unsupported (exit 3), before the output folder is
// made. auto takes the GPU on the same condition and the CPU otherwise; cpu never asks.
func resolveQuantizeDevice(ctx context.Context, g *globalOptions, device string) (string, error) {
	switch device {
	case "cpu":
		return "", nil
	case "cuda", "auto":
	default:
		return "", usageErrorf("unknown --device %q (want cpu, cuda or auto)", device)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	refuse := func(err error) (string, error) {
		if device == "auto" {
			return "", nil
		}
		return "", badInput(fmt.Errorf("--device cuda: %w; use --device cpu (or auto)", err))
	}
	path, err := gpu.Find("")
	if err != nil {
		return refuse(fmt.Errorf("the CUDA runtime is not built or not found: %w", err))
	}
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	info, _, err := gpu.GetInfo(ictx, path)
	if err != nil {
		return refuse(fmt.Errorf("no GPU: %w", err))
	}
	if len(info.Devices) == 0 {
		return refuse(errors.New("no GPU: odyssey-rt info reports no CUDA device"))
	}
	if device == "auto" {
		fmt.Fprintf(g.errOut, "odyssey: calibrating on the GPU (%s, %s); --device cpu to stay on the CPU\n", info.Devices[0].Name, path)
	}
	return path, nil
}

// gpuCalibUnsupported says why the GPU calibration cannot run a recipe's options, or "" when it
// can: its quantized propagation (advance_quantized) reads artifact-form layers (int4 weights),
// and a W8A8 layer's 8-bit weights are not one (odyssey-rt calib refused them only after the
// first layer had been calibrated; with --device auto the run then failed instead of using
// the CPU).
func gpuCalibUnsupported(opt ptq.Options) string {
	if opt.Weights.Bits == 8 && opt.Calib.Propagate != calib.PropagateFloat {
		return "the GPU calibration has no quantized propagation for 8-bit weights (W8A8)"
	}
	return ""
}

// gpuCalibPass returns the ptq.NewPassFunc that starts `odyssey-rt calib` on the model
// folder dir (docs/gpu-calibration.md). The runtime must serve every command the run needs
// (advance_quantized for quantized propagation); with --device auto a runtime that cannot
// (an older build, a server that fails to start) leaves the calibration to the CPU pass,
// with a note, and with --device cuda it is an error.
func gpuCalibPass(g *globalOptions, runtimePath, dir, device, precision string, prop calib.Propagation) ptq.NewPassFunc {
	return func(hm *hf.Model, windows [][]int, copt calib.Options) (ptq.Pass, error) {
		need := []string{"collect", "advance"}
		if prop != calib.PropagateFloat {
			need = append(need, "advance_quantized")
		}
		p, err := gpu.StartCalib(context.Background(), gpu.CalibOptions{Runtime: runtimePath, Model: dir, Need: need, Precision: precision}, hm, windows, copt)
		if err != nil && device == "auto" {
			fmt.Fprintf(g.errOut, "odyssey: note: calibrating on the CPU: the GPU calibration did not start: %v\n", err)
			return calib.NewPass(hm, windows, copt)
		}
		if err != nil {
			return nil, err
		}
		// Which arithmetic made the statistics is worth a line: exact gives --device cpu's
		// artifact byte for byte, fp16 and fp32 do not (docs/gpu-calibration.md).
		fmt.Fprintf(g.errOut, "odyssey: calibrating on the GPU (odyssey-rt calib, %s arithmetic)\n", p.Greeting().PrecisionOrDefault())
		return p, nil
	}
}
