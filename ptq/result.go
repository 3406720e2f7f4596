package ptq

import (
	"fmt"
	"time"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
)

// Result is a quantized model: per layer, the folded norm weights and every linear's
// quantized weight, activation quantization and bias, plus the report of how each was
// decided. The embedding, final norm and LM head are not part of it: they stay as in the
// checkpoint, unchanged by any fold.
type Result struct {
	// Options are the options the run used, defaults filled in.
	Options Options   `json:"options"`
	Config  hf.Config `json:"-"`
	// Windows and SeqLen describe the calibration set.
	Windows int            `json:"windows"`
	SeqLen  int            `json:"seq_len"`
	Layers  []*LayerResult `json:"layers"`
	// Mem is the calibration pass's memory use (peak heap, resident activations, largest
	// layer).
	Mem calib.MemStats `json:"mem"`
	// Timings of the whole run.
	WindowsTime time.Duration `json:"windows_ns"`
	Total       time.Duration `json:"total_ns"`
}

// The result types that artifact stores live in the leaf package qresult (so
// that the artifact does not depend on the pipeline); these aliases keep their ptq names.
type (
	LayerResult  = qresult.LayerResult
	InputSummary = qresult.InputSummary
	InputResult  = qresult.InputResult
	LinearResult = qresult.LinearResult
)

// Progress stages of a layer: its statistics pass, its quantization, and the pass that
// carries the calibration stream on to the next layer (with float propagation, collect
// does both and there is no propagate stage).
const (
	StageCollect   = "collect"
	StageQuantize  = "quantize"
	StagePropagate = "propagate"
)

// ProgressEvent reports the progress of Run.
type ProgressEvent struct {
	// Stage is "windows" (sampling or reading the calibration set), "layer" (a layer is
	// done), or one of a layer's stages, StageCollect, StageQuantize or StagePropagate, as
	// it advances.
	Stage string
	// Done and Total count tokens for "windows" and layers for "layer"; for a layer's
	// stage, chunks of calibration windows (collect, propagate) or linears (quantize).
	// Every stage of a layer reports 0 of Total when it starts and Total when it ends.
	Done, Total int
	// Index is the layer a stage event is about (0-based); Layers is the model's count.
	Index, Layers int
	// Layer is the finished layer's result for "layer".
	Layer   *LayerResult
	Elapsed time.Duration
	Mem     calib.MemStats
}

var kindModule = map[model.LinearKind]string{
	model.Q: "self_attn.q_proj", model.K: "self_attn.k_proj", model.V: "self_attn.v_proj", model.O: "self_attn.o_proj",
	model.Gate: "mlp.gate_proj", model.Up: "mlp.up_proj", model.Down: "mlp.down_proj",
}

func linearName(layer int, kind model.LinearKind) string {
	return fmt.Sprintf("model.layers.%d.%s", layer, kindModule[kind])
}

// Linear returns the result of linear kind in layer i.
func (r *Result) Linear(i int, kind model.LinearKind) *LinearResult {
	for _, l := range r.Layers[i].Linears {
		if l.Kind == kind {
			return l
		}
	}
	return nil
}

// Input returns the input record of layer i read by linear kind.
func (r *Result) Input(i int, kind model.LinearKind) *InputResult {
	k := kind.SharedInput()[0]
	for _, in := range r.Layers[i].Inputs {
		if in.Kind == k {
			return in
		}
	}
	return nil
}

// FakeQuantModel returns a float32 model that computes as the quantized one: the embedding,
// final norm and LM head read from hm (the checkpoint the result was made from; it must still
// be open), and every decoder layer built from the result (folded norms, fake-quantized
// linears). eval.Perplexity and eval.KL run on it.
func (r *Result) FakeQuantModel(hm *hf.Model) (*model.Model, error) { return r.fakeQuant(hm, false) }

// FakeQuantModelFloatScales is FakeQuantModel with the float group scales in place of the
// integer scales, on the same int4 codes: the comparison that isolates what Integer Scale
// costs (a run with IntegerScale disabled also propagates, and so calibrates, differently).
func (r *Result) FakeQuantModelFloatScales(hm *hf.Model) (*model.Model, error) {
	return r.fakeQuant(hm, true)
}

func (r *Result) fakeQuant(hm *hf.Model, floatScales bool) (*model.Model, error) {
	if len(hm.Layers) != len(r.Layers) || hm.Config.HiddenSize != r.Config.HiddenSize {
		return nil, fmt.Errorf("ptq: the checkpoint (%d layers, hidden %d) is not the one quantized (%d layers, hidden %d)",
			len(hm.Layers), hm.Config.HiddenSize, len(r.Layers), r.Config.HiddenSize)
	}
	m, err := model.LoadShell(hm)
	if err != nil {
		return nil, err
	}
	for i, lr := range r.Layers {
		if m.Layers[i], err = lr.ModelLayer(&m.Config, floatScales); err != nil {
			return nil, err
		}
	}
	return m, nil
}
