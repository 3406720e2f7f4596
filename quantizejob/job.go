// Package quantizejob runs a quantization job end to end without the command line: the
// finite-weights scan, the staging folder (created, or reopened to resume), the calibration
// windows (drawn, or read back from an interrupted run), the layer loop (ptq.Quantize with
// the artifact writer as the sink), assembling the artifact and publishing it, and the
// cleanup of the staging folder when anything fails.
//
// Validating the model, recipe and calibration data, checking the output folder, and printing
// belong to the caller (odyssey quantize): it takes the output's lock (LockOutput) for the
// whole run, hands the validated inputs over in Options and is told about progress through
// Callbacks.
package quantizejob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/ptq"
	"github.com/odyssey-llm/odyssey/recipes"
)

// DefaultGCPercent is GOGC while quantizing: the heap is a few large pointer-free slices (a
// layer's weights, the activations), so collecting often costs little, and a low GOGC keeps
// garbage from doubling the peak.
const DefaultGCPercent = 20

// Options are the validated inputs of a job.
type Options struct {
	Model     *hf.Model
	Tokenizer *tokenizer.Tokenizer // nil when the model has none (then windows cannot be sampled)
	Recipe    *recipes.Recipe
	PTQ       ptq.Options
	// Output is the artifact format (artifact.OutputOdyssey or OutputCompressedTensors).
	Output string
	// Calibration is recorded in the staging state and the artifact.
	Calibration artifact.Calibration
	// Windows are the calibration windows drawn already (text calibration); nil for data-free
	// calibration, which samples them (or, resuming, reads them back).
	Windows [][]int
	// NeedsCalibration is PTQ.NeedsCalibration(): when false no windows are drawn.
	NeedsCalibration bool
	Notes            []string
	// Out is the artifact's final folder (filepath.Clean'ed); it is built in Out+".partial"
	// (the staging folder) and moved to Out by Publish.
	Out string
	// Resume continues an interrupted run from the staging folder; without it a leftover
	// staging folder is discarded.
	Resume bool
	// NoSync skips the fsync of the weight files before publishing.
	NoSync bool
	// SourcePath is the model's path as recorded in odyssey.json.
	SourcePath string
	Tool       artifact.Tool
	Scheme     artifact.Scheme
	// GCPercent is GOGC while quantizing; 0 means DefaultGCPercent.
	GCPercent int
	// Publish moves the finished staging folder to Out; a failure is handled as any other
	// (the staging folder is removed). Nil leaves the artifact in the staging folder.
	Publish func() error
}

// Progress is one progress display (a bar).
type Progress interface {
	Set(done int64, desc string)
	SetTotal(total int64)
	Done()
}

// Callbacks tell the caller what the job does. Every field may be nil.
type Callbacks struct {
	// StartProgress opens a progress display for a stage of the given title, unit and total.
	StartProgress func(title, unit string, total int64) Progress
	// Note reports something the user should know now (resuming, a discarded leftover).
	Note func(msg string)
	// Cleanup reports, after a failure, what was done with the staging folder; the caller
	// prints it after the cause.
	Cleanup func(msg string)
	// OnLayer is called after each layer is checkpointed (see ptq.QuantizeOptions.OnLayer).
	OnLayer func(ev ptq.ProgressEvent, interrupt func())
	// Event receives every stage's progress, throttled, with the estimated remaining time
	// (odyssey quantize --json writes them to stderr as JSON lines).
	Event func(Event)
}

// Result is what a finished job reports.
type Result struct {
	BytesIn, FP16BytesIn int64
	ResumedLayers        int
	WindowsReused        bool
	ScanTime             time.Duration
	WindowsTime          time.Duration
	QuantizeTime         time.Duration
	AssembleTime         time.Duration
	PTQ                  *ptq.Result
	Provenance           *artifact.Provenance
}

// InputError marks a failure caused by the input (the model, the recipe against it, the
// calibration data, a staging folder that does not match), as opposed to the system.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputError(err error) error { return &InputError{Err: err} }

type noProgress struct{}

func (noProgress) Set(int64, string) {}
func (noProgress) SetTotal(int64)    {}
func (noProgress) Done()             {}

func (cb *Callbacks) progress(title, unit string, total int64) Progress {
	if cb.StartProgress == nil {
		return noProgress{}
	}
	return cb.StartProgress(title, unit, total)
}

func (cb *Callbacks) cleanup(format string, a ...any) {
	if cb.Cleanup != nil {
		cb.Cleanup(fmt.Sprintf(format, a...))
	}
}

func (cb *Callbacks) note(format string, a ...any) {
	if cb.Note != nil {
		cb.Note(fmt.Sprintf(format, a...))
	}
}

// Run runs the job. On cancellation (errors.Is(err, context.Canceled)) the staging folder is
// kept for Resume; on any other failure it is removed.
func Run(ctx context.Context, o *Options, cb Callbacks) (_ *Result, err error) {
	hm := o.Model
	res := &Result{}
	// NaN/Inf in any weight would quietly poison scales; find it before anything else.
	t0 := time.Now()
	tensors := hm.AllTensors()
	for _, t := range tensors {
		res.BytesIn += t.Bytes()
	}
	res.FP16BytesIn = 2 * hm.NumParams()
	tr := newTracker(hm.Config.NumLayers, cb.Event)
	bar := cb.progress("checking weights", "B", res.BytesIn)
	tr.simple("scan", 0, res.BytesIn, "bytes")
	err = artifact.ScanFinite(hm.Tensors, tensors, func(done, total int64) {
		bar.Set(done, "")
		tr.simple("scan", done, total, "bytes")
	})
	bar.Done()
	if err != nil {
		return nil, inputError(err)
	}
	res.ScanTime = time.Since(t0)

	staging := o.Out + ".partial"
	w, err := openStaging(o, staging, &cb)
	if err != nil {
		return nil, err
	}
	if !o.NoSync && o.Output == artifact.OutputOdyssey {
		w.Writeback = o.Recipe.Output.ShardSize
	}
	// A calibrated run keeps no written layer's buffers for the next: they would be
	// resident through its calibration (artifact.Writer.NoPackedPool; ptq.Quantize does
	// the same with the int4 codes).
	w.NoPackedPool = o.NeedsCalibration
	// Past this point the staging folder holds work. An interruption keeps it for Resume;
	// any other failure removes it, so nothing half-written is left behind.
	defer func() {
		if err == nil {
			return
		}
		if errors.Is(err, context.Canceled) {
			cb.cleanup("interrupted with %d of %d layers checkpointed in %s; run the same command with --resume to continue",
				w.Done(), hm.Config.NumLayers, staging)
			return
		}
		if os.RemoveAll(staging) == nil {
			cb.cleanup("removed the unfinished output %s", staging)
		}
	}()
	gc := o.GCPercent
	if gc == 0 {
		gc = DefaultGCPercent
	}
	defer debug.SetGCPercent(debug.SetGCPercent(gc))

	// Calibration windows: drawn now for self (the heavy part of data-free calibration),
	// unless an interrupted run recorded them.
	t0 = time.Now()
	windows := o.Windows
	if saved, ok := w.SavedWindows(); ok && windows == nil && o.Resume {
		windows, res.WindowsReused = saved, true
	}
	if windows == nil && o.NeedsCalibration {
		L := o.PTQ.Calib.SeqLen
		bar := cb.progress(fmt.Sprintf("calibration: sampling %d×%d tokens from the model", o.PTQ.Calib.Samples, L), "tok", int64(L))
		windows, err = calib.LoadWindows(ctx, hm, o.Tokenizer, o.PTQ.Calib, func(done, total int) {
			bar.Set(int64(done), "")
			tr.simple("windows", int64(done), int64(total), "tokens")
		})
		bar.Done()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil, err
			}
			return nil, inputError(err)
		}
	}
	res.WindowsTime = time.Since(t0)
	if o.NeedsCalibration {
		if err := w.SetWindows(windows); err != nil {
			return nil, inputError(err)
		}
	}

	// Layer by layer: each result is checkpointed as soon as it is done, then its weights
	// are released, so memory holds one quantized layer however large the model.
	t0 = time.Now()
	resumed := w.Done()
	res.ResumedLayers = resumed
	bar = cb.progress("quantizing", "layers", int64(hm.Config.NumLayers))
	if resumed > 0 {
		bar.Set(int64(resumed), fmt.Sprintf("quantizing (%d layers resumed)", resumed))
	}
	pres, err := ptq.Quantize(ctx, hm, ptq.QuantizeOptions{
		Options: o.PTQ, Windows: windows, GroupSize: o.Recipe.Weights.GroupSize,
		GCPercent: gc,
		OnProgress: func(ev ptq.ProgressEvent) {
			switch ev.Stage {
			case ptq.StageCollect, ptq.StagePropagate:
				bar.Set(int64(ev.Index), tr.stage(ev, "chunks"))
			case ptq.StageQuantize:
				bar.Set(int64(ev.Index), tr.stage(ev, "linears"))
			}
		},
		OnLayer: func(ev ptq.ProgressEvent, interrupt func()) {
			bar.Set(int64(ev.Done), tr.layer(ev))
			if cb.OnLayer != nil {
				cb.OnLayer(ev, interrupt)
			}
		},
	}, w)
	bar.Done()
	var werr *ptq.SinkError
	if errors.As(err, &werr) {
		if errors.Is(werr.Err, artifact.ErrNotRepresentable) {
			return nil, inputError(werr.Err)
		}
		return nil, werr.Err
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		// What fails inside the pipeline is the model and recipe together (an amplifier that
		// overflows int32 on this model, a weight that cannot be read): bad input.
		return nil, inputError(fmt.Errorf("quantizing %s: %w", o.SourcePath, err))
	}
	res.QuantizeTime = time.Since(t0)
	res.PTQ = pres

	// Assemble the artifact from the checkpoints and publish it.
	t0 = time.Now()
	bar = cb.progress("writing "+o.Out, "B", 1)
	tr.simple("write", 0, 0, "bytes") // the size is known once assembly starts
	yml, err := o.Recipe.Marshal()
	if err != nil {
		return nil, err
	}
	prov, err := w.Finish(hm, artifact.FinishOptions{
		Output: o.Output, ShardSize: o.Recipe.Output.ShardSize,
		Tool:       o.Tool,
		Recipe:     artifact.RecipeInfo{Source: o.Recipe.Source, Hash: o.Recipe.Hash(), YAML: string(yml)},
		SourcePath: o.SourcePath, Scheme: o.Scheme, Notes: o.Notes,
		NoSync: o.NoSync,
		Progress: func(done, total int64) {
			bar.SetTotal(total)
			bar.Set(done, "")
			tr.simple("write", done, total, "bytes")
		},
		Context: ctx,
	})
	bar.Done()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		err = fmt.Errorf("writing %s: %w", o.Out, err)
		if errors.Is(err, artifact.ErrNotRepresentable) {
			return nil, inputError(err)
		}
		return nil, err
	}
	if o.Publish != nil {
		if err := o.Publish(); err != nil {
			return nil, err
		}
	}
	res.AssembleTime = time.Since(t0)
	res.Provenance = prov
	return res, nil
}

// openStaging creates the staging folder, or with Resume reopens it after checking that it
// was made from the same model, recipe and calibration.
func openStaging(o *Options, staging string, cb *Callbacks) (*artifact.Writer, error) {
	fp, err := artifact.ModelFingerprint(o.Model)
	if err != nil {
		return nil, err
	}
	n := o.Model.Config.NumLayers
	st := artifact.State{Model: fp, RecipeHash: o.Recipe.Hash(), Calibration: o.Calibration, Output: o.Output, Layers: n}
	_, statErr := os.Stat(staging)
	exists := statErr == nil
	if exists && o.Resume {
		w, err := artifact.Reopen(staging, st)
		if err != nil {
			if errors.Is(err, artifact.ErrStateMismatch) {
				return nil, inputError(fmt.Errorf("%w (run without --resume to start over)", err))
			}
			return nil, inputError(err)
		}
		cb.note("resuming from %s: %d of %d layers done", staging, w.Done(), n)
		return w, nil
	}
	if exists {
		if err := artifact.RemoveStaging(staging); err != nil {
			return nil, inputError(fmt.Errorf("%s is in the way: %w", staging, err))
		}
		cb.note("discarded the unfinished run in %s (use --resume to continue one)", staging)
	} else if o.Resume {
		cb.note("nothing to resume in %s; starting from layer 0", staging)
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return nil, statErr
	}
	return artifact.Create(staging, st)
}
