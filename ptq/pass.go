package ptq

import (
	"context"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
)

// Pass is the layer-by-layer calibration pass that RunWindows drives: it holds the residual
// stream of every calibration window between layers, loads a layer's float weights, gathers
// the statistics of its inputs, and runs a layer to move the stream on. *calib.Pass is the
// CPU implementation; gpu.CalibPass runs the same steps in the CUDA runtime
// (docs/gpu-calibration.md). The quantization itself stays with RunWindows either way.
type Pass interface {
	// Config returns the model's configuration.
	Config() *hf.Config
	// SeqLen returns the window length L.
	SeqLen() int
	// Layer loads decoder layer i in float32 from the checkpoint.
	Layer(i int) (*model.Layer, error)
	// Collect runs l on the stream without changing it and returns its inputs' statistics;
	// hessian selects the inputs whose Hessian is accumulated (nil: none).
	Collect(ctx context.Context, l *model.Layer, hessian func(model.LinearKind) bool) (*calib.LayerStats, error)
	// CollectAdvance is Collect and Advance in one run (float propagation).
	CollectAdvance(ctx context.Context, l *model.Layer, hessian func(model.LinearKind) bool) (*calib.LayerStats, error)
	// Advance runs l on the stream in place.
	Advance(ctx context.Context, l *model.Layer) error
	// ReleaseScratch drops memory kept between runs, for the quantizer's use.
	ReleaseScratch()
	// Mem returns the memory the pass used so far.
	Mem() calib.MemStats
	// SetOnChunk sets the function called as a run starts (0) and after each chunk of
	// windows (nil: none).
	SetOnChunk(fn func(done, total int))
	// Close releases what the pass holds (a subprocess, temporary files). RunWindows closes
	// the pass it made.
	Close() error
}

// ResultAdvancer is implemented by a pass that propagates the stream through a quantized
// layer from its result (the GPU pass sends the artifact's tensors of the layer, so that the
// runtime runs them with the artifact's kernels) rather than from the fake-quantized
// model.Layer that LayerResult.ModelLayer builds.
type ResultAdvancer interface {
	AdvanceResult(ctx context.Context, lr *LayerResult) error
}

// NewPassFunc makes the pass of a run: calib.NewPass's signature. Options.NewPass nil means
// the CPU pass.
type NewPassFunc func(hm *hf.Model, windows [][]int, opt calib.Options) (Pass, error)

func newCPUPass(hm *hf.Model, windows [][]int, opt calib.Options) (Pass, error) {
	p, err := calib.NewPass(hm, windows, opt)
	if err != nil {
		return nil, err
	}
	return p, nil
}

var _ Pass = (*calib.Pass)(nil)

// advanceQuantized carries the stream past the quantized layer lr.
func advanceQuantized(ctx context.Context, pass Pass, lr *LayerResult, cfg *hf.Config) error {
	if ra, ok := pass.(ResultAdvancer); ok {
		return ra.AdvanceResult(ctx, lr)
	}
	ql, err := lr.ModelLayer(cfg, false)
	if err != nil {
		return err
	}
	return pass.Advance(ctx, ql)
}
