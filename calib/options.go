package calib

import (
	"fmt"
	"strings"
)

// SourceSelf is the Source that samples calibration windows from the model itself.
const SourceSelf = "self"

// Propagation says what carries the calibration activations from one layer to the next.
type Propagation string

const (
	// PropagateQuantized runs each layer, once quantized, to produce the next layer's inputs,
	// as GPTQ does: later layers are calibrated on the inputs they will actually see, errors
	// of earlier layers included, and can partly compensate them. It is the default.
	PropagateQuantized Propagation = "quantized"
	// PropagateFloat runs the full-precision layer instead, so every layer is calibrated on
	// the float model's activations.
	PropagateFloat Propagation = "float"
)

// Defaults of Options. Text calibration uses 128 windows of 512 tokens (65 536 tokens, the
// usual GPTQ/AWQ budget). Self-sampling costs one decode step per token of every window, so
// its default is smaller: 64 windows of 256 tokens take about 7 s to sample on tiny-llama
// on two cores (128×512, four times the tokens, would take over four times as long), and
// the W4A8 perplexity ratios they give are within 0.3% of those of 128×512 text windows
// on the reference models (ptq/ACCURACY.md).
const (
	DefaultSamples       = 128
	DefaultSeqLen        = 512
	DefaultSelfSamples   = 64
	DefaultSelfSeqLen    = 256
	DefaultChunkRows     = 4096
	DefaultTemperature   = 1.0
	minCalibrationSeqLen = 2
)

// Options chooses the calibration data and how the layer-by-layer pass runs. The zero value
// of every field means its documented default, so a recipe only names what it changes.
type Options struct {
	// Source is a text file path, or "self" to sample windows from the model (data-free).
	// Default "self".
	Source string
	// Format is "text" or "jsonl" (one JSON object per line, its "text" field); "" picks
	// "jsonl" for a .jsonl file and "text" otherwise.
	Format string
	// Samples is the number N of windows; 0 means DefaultSamples (DefaultSelfSamples for
	// "self").
	Samples int
	// SeqLen is the window length L in tokens, BOS included; 0 means DefaultSeqLen
	// (DefaultSelfSeqLen for "self"). It must not exceed max_position_embeddings.
	SeqLen int
	// Seed selects the windows: the same seed gives the same windows.
	Seed uint64
	// Propagate chooses the layer output passed on to the next layer; "" means
	// PropagateQuantized.
	Propagate Propagation
	// Temperature divides the logits when sampling with "self"; 0 means 1 (the model's own
	// distribution).
	Temperature float64
	// TopK, when positive, samples "self" windows from the K most likely tokens only.
	TopK int
	// ChunkRows is the number of rows (windows × L) run through a layer at once; 0 means
	// DefaultChunkRows. It bounds the layer's scratch memory; results do not depend on it
	// beyond float rounding of the Hessian sums.
	ChunkRows int
	// LiveHeap makes the pass collect garbage before each sample of the heap (after every
	// chunk), so that MemStats.PeakHeapInuse is the memory actually live (one layer, the
	// activations, the run's scratch, the caller's own data) rather than that plus garbage
	// not yet collected. It costs a collection per chunk; use it to measure.
	LiveHeap bool
	// StreamBits is how the residual stream is stored between layers: 32 (float32), 16
	// (fp16, a chunk beyond fp16's range kept in float32), or 0, which means 16 when the
	// float32 stream would exceed AutoStream16Bytes (7B-sized calibration) and 32 otherwise.
	// Each layer still runs, and its statistics are gathered, in float32.
	StreamBits int
}

// Resolved returns o with every default filled in, or an error naming the first invalid
// field.
func (o Options) Resolved() (Options, error) {
	if o.Source == "" {
		o.Source = SourceSelf
	}
	self := o.Source == SourceSelf
	if o.Format == "" && !self {
		o.Format = "text"
		if strings.HasSuffix(strings.ToLower(o.Source), ".jsonl") {
			o.Format = "jsonl"
		}
	}
	if o.Samples == 0 {
		o.Samples = DefaultSamples
		if self {
			o.Samples = DefaultSelfSamples
		}
	}
	if o.SeqLen == 0 {
		o.SeqLen = DefaultSeqLen
		if self {
			o.SeqLen = DefaultSelfSeqLen
		}
	}
	if o.Propagate == "" {
		o.Propagate = PropagateQuantized
	}
	if o.Temperature == 0 {
		o.Temperature = DefaultTemperature
	}
	if o.ChunkRows == 0 {
		o.ChunkRows = DefaultChunkRows
	}
	switch {
	case o.Samples < 0:
		return o, fmt.Errorf("calib: Samples %d must be positive", o.Samples)
	case o.SeqLen < minCalibrationSeqLen:
		return o, fmt.Errorf("calib: SeqLen %d is too short: a window is BOS plus at least one token", o.SeqLen)
	case o.Propagate != PropagateQuantized && o.Propagate != PropagateFloat:
		return o, fmt.Errorf("calib: Propagate %q is not %q or %q", o.Propagate, PropagateQuantized, PropagateFloat)
	case !(o.Temperature > 0):
		return o, fmt.Errorf("calib: Temperature %v must be positive", o.Temperature)
	case o.TopK < 0:
		return o, fmt.Errorf("calib: TopK %d must not be negative", o.TopK)
	case o.StreamBits != 0 && o.StreamBits != 16 && o.StreamBits != 32:
		return o, fmt.Errorf("calib: StreamBits %d is not 0, 16 or 32", o.StreamBits)
	case o.ChunkRows < 0:
		return o, fmt.Errorf("calib: ChunkRows %d must not be negative", o.ChunkRows)
	case !self && o.Format != "text" && o.Format != "jsonl":
		return o, fmt.Errorf("calib: unknown Format %q (want text or jsonl)", o.Format)
	}
	return o, nil
}
