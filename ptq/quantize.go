package ptq

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/quant"
)

// LayerSink checkpoints finished layers, and gives back the ones an interrupted run
// checkpointed; the artifact writer (artifact.Writer) is one.
type LayerSink interface {
	// Done returns how many leading layers are checkpointed already.
	Done() int
	// ReadLayer reads checkpointed layer i back with its exact float32 numbers.
	ReadLayer(i int, cfg *hf.Config, groupSize int) (*LayerResult, error)
	// WriteLayer checkpoints a finished layer.
	WriteLayer(lr *LayerResult) error
}

// QuantizeOptions configures Quantize.
type QuantizeOptions struct {
	// Options are the pipeline's options; Quantize sets their Resume from the sink.
	Options Options
	// Windows are the calibration windows (nil when Options need no calibration).
	Windows [][]int
	// GroupSize is the recipe's weight group size, which reading a checkpoint back checks.
	GroupSize int
	// GCPercent, when positive, is GOGC while Quantize runs. The heap is a few large
	// pointer-free slices (a layer's weights, the activations), so collecting often costs
	// little, and a low GOGC keeps garbage from doubling the peak.
	GCPercent int
	// OnLayer, when set, is called for each finished layer (resumed ones included), before the
	// layer is handed to the sink (which then releases its weights, ReleaseLayer); interrupt
	// cancels the run, the layer at hand still being checkpointed. It is not called once the
	// sink has failed.
	OnLayer func(ev ProgressEvent, interrupt func())
	// OnProgress, when set, is called with every event of RunWindows, the stages of each
	// layer included, before OnLayer. It is not called once the sink has failed.
	OnProgress func(ev ProgressEvent)
}

// SinkError is Quantize's error when the sink failed to checkpoint a layer.
type SinkError struct{ Err error }

func (e *SinkError) Error() string { return e.Err.Error() }
func (e *SinkError) Unwrap() error { return e.Err }

// Quantize runs the layer-by-layer pipeline (RunWindows) over hm and checkpoints every
// finished layer into sink, resuming after the layers sink holds already. Each layer is
// written by a goroutine while the next one is quantized: packing and writing a layer is
// partly single-threaded, and the other core would otherwise wait. At most one layer waits
// to be written, so memory holds two quantized layers at most, and a written layer's
// weights are released (ReleaseLayer). A layer handed over is always written, also after an
// interruption. A sink failure cancels the run and is returned as a *SinkError; otherwise
// the pipeline's own error is returned as it is.
func Quantize(ctx context.Context, hm *hf.Model, opt QuantizeOptions, sink LayerSink) (*Result, error) {
	ctx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	if opt.GCPercent > 0 {
		defer debug.SetGCPercent(debug.SetGCPercent(opt.GCPercent))
	}
	resumed := sink.Done()
	cfg := hm.Config
	popt := opt.Options
	popt.Resume = func(i int) (*LayerResult, error) {
		if i >= resumed {
			return nil, nil
		}
		// The checkpoint holds the exact float32 numbers, so the layers after it see the
		// activations an uninterrupted run would have given them.
		return sink.ReadLayer(i, &cfg, opt.GroupSize)
	}
	// A written layer's int4 codes are kept for the next layer's quantizer only without
	// calibration (the RTN path, layers seconds apart, where reusing mapped memory saves the
	// page faults). A calibrated run's next quantizer comes after minutes of calibration,
	// through which the kept codes (202 MB for a LLaMA-7B layer) would be resident at the
	// layer's peak (issue 10); after the collection's GC the quantizer reuses the freed
	// forward-pass scratch anyway.
	keepCodes := opt.Windows == nil
	var werr error
	var werrMu sync.Mutex
	writeErr := func() error { werrMu.Lock(); defer werrMu.Unlock(); return werr }
	toWrite := make(chan *LayerResult)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for lr := range toWrite {
			if writeErr() == nil && lr.Layer >= resumed {
				if err := sink.WriteLayer(lr); err != nil {
					werrMu.Lock()
					werr = err
					werrMu.Unlock()
					interrupt()
				}
			}
			releaseLayer(lr, keepCodes)
		}
	}()
	res, err := RunWindows(ctx, hm, opt.Windows, popt, func(ev ProgressEvent) {
		if writeErr() != nil {
			return
		}
		if opt.OnProgress != nil {
			opt.OnProgress(ev)
		}
		if ev.Stage != "layer" || ev.Layer == nil {
			return
		}
		if opt.OnLayer != nil {
			opt.OnLayer(ev, interrupt)
		}
		hm.Tensors.ReleasePages() // the layer's weights were read; keep RSS at one layer
		toWrite <- ev.Layer
	})
	close(toWrite)
	<-written
	if werr != nil {
		return nil, &SinkError{Err: werr}
	}
	return res, err
}

// ReleaseLayer drops a checkpointed layer's weights, keeping the numbers reports use (the
// timings, policies, scales and weight errors): RunWindows keeps every layer's result until
// the run ends, which would otherwise hold the whole quantized model in memory.
func ReleaseLayer(lr *LayerResult) { releaseLayer(lr, true) }

// releaseLayer is ReleaseLayer; keepCodes hands the int4 codes to quant's pool for reuse
// (quant.ReleaseCodes) rather than to the garbage collector.
func releaseLayer(lr *LayerResult, keepCodes bool) {
	lr.AttnNorm, lr.MLPNorm = nil, nil
	for _, in := range lr.Inputs {
		in.ProducerScale, in.ConsumerScale = nil, nil
	}
	for _, l := range lr.Linears {
		if l.Weight != nil && keepCodes {
			// Written: the next layer's quantizer can reuse the codes' memory.
			quant.ReleaseCodes(l.Weight.Q)
		}
		l.Float, l.Bias, l.Weight, l.IntScale, l.Weight8 = nil, nil, nil, nil, nil
	}
	// Collect now rather than at the next cycle, so the next layer reuses this one's
	// memory instead of growing the heap. Not debug.FreeOSMemory: handing the pages back
	// to the OS would make the next layer fault them in (and zero them) again, about 0.1 s
	// per LLaMA-7B layer; the runtime's scavenger returns what stays unused.
	runtime.GC()
}
