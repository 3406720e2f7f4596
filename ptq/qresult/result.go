// Package qresult holds what a quantization run produces per decoder layer, the types
// artifact stores and reads back: LayerResult, InputResult, InputSummary,
// LinearResult (with the int8 weight of W8 runs), and the fake-quantized linears that
// evaluate them (FloatScaleLinear, FakeActLinear). It is a leaf: ptq produces these values
// and artifact consumes them without depending on the pipeline.
package qresult

import (
	"fmt"
	"time"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// Pair names a producer→consumer pair that equalization folds through (ptq's constants).
type Pair string

// GPTQReport is GPTQ's account of one linear.
type GPTQReport = quant.GPTQStats

// LayerResult is one quantized decoder layer.
type LayerResult struct {
	Layer int `json:"layer"`
	// AttnNorm and MLPNorm are the RMSNorm weights with any equalization folded in.
	AttnNorm []float32 `json:"-"`
	MLPNorm  []float32 `json:"-"`
	// Inputs describes the four distinct inputs (read by q/k/v, o, gate/up, down).
	Inputs []*InputResult `json:"inputs"`
	// Linears holds the seven linears in model.LayerKinds order.
	Linears []*LinearResult `json:"linears"`
	// Time spent gathering statistics, deciding, folding and quantizing, and propagating.
	CollectTime   time.Duration `json:"collect_ns"`
	QuantizeTime  time.Duration `json:"quantize_ns"`
	PropagateTime time.Duration `json:"propagate_ns"`
}

// InputSummary condenses the statistics of one input.
type InputSummary struct {
	TensorAbsMax float32 `json:"tensor_absmax"`
	// MedianChannelAbsMax is the median over channels of max |x_j|; TensorAbsMax over it
	// measures how much the outlier channels stand out.
	MedianChannelAbsMax float32 `json:"median_channel_absmax"`
	// TokenAbsMaxMean is the mean over tokens of max |x| in the token (observed before any
	// equalization).
	TokenAbsMaxMean float64 `json:"token_absmax_mean"`
}

// InputResult records how one linear input is quantized and why.
type InputResult struct {
	// Kind names the input by its first consumer: Q (q/k/v), O, Gate (gate/up) or Down.
	Kind model.LinearKind `json:"kind"`
	// Pair is the producer→consumer pair of the input.
	Pair Pair `json:"pair"`
	// Equalized is "lae", "smoothquant" or "" (none).
	Equalized string `json:"equalized,omitempty"`
	// ProducerScale divides the producer's output channels, ConsumerScale multiplies the
	// consumers' input columns (they differ only for v→o under GQA); nil without
	// equalization.
	ProducerScale []float32 `json:"-"`
	ConsumerScale []float32 `json:"-"`
	// ActBits is 8 when the input is quantized to int8, 16 when activations stay float
	// (weight-only runs) and 32 when every consumer is skipped (the decision is still made
	// and recorded, and LAE folded, harmlessly for float consumers). Decision and Act are
	// not set for 16.
	ActBits int `json:"act_bits"`
	// Decision is the activation policy with the numbers it was decided on.
	Decision quant.Decision `json:"decision"`
	// Act is how the consumers quantize the input at run time (Scale: the static scale).
	Act quant.ActQuant `json:"act"`
	// Before and After summarise the input's statistics before and after equalization.
	Before InputSummary `json:"before"`
	After  InputSummary `json:"after"`
}

// LinearResult is one quantized (or skipped) linear.
type LinearResult struct {
	Kind model.LinearKind `json:"kind"`
	// Name is the Hugging Face module name, e.g. "model.layers.3.mlp.down_proj".
	Name    string `json:"name"`
	Out, In int    `json:"-"`
	// Skipped linears stay float32 in Float (equalization folded in).
	Skipped bool      `json:"skipped,omitempty"`
	Float   []float32 `json:"-"`
	// Bias is the (folded) bias, nil when the linear has none.
	Bias []float32 `json:"-"`
	// Weight is the int4 weight with its float group scales; IntScale adds the integer scales
	// when they are enabled (IntScale.QuantizedWeight == Weight). Weight8 is the int8 weight
	// of 8-bit runs.
	Weight   *quant.QuantizedWeight `json:"-"`
	IntScale *quant.IntScaleWeight  `json:"-"`
	Weight8  *Int8Weight            `json:"-"`
	// Bits is the weight width (4 or 8; 32 for skipped); ActBits the activation width.
	Bits    int `json:"bits"`
	ActBits int `json:"act_bits"`
	// GroupSize is the group used; GroupFallback is true when the requested size did not
	// divide In and per-channel groups were used instead.
	GroupSize     int  `json:"group_size,omitempty"`
	GroupFallback bool `json:"group_fallback,omitempty"`
	// Act is the input quantization (for ActBits 8).
	Act quant.ActQuant `json:"act"`
	// WeightError is ‖Ŵ − W‖_F/‖W‖_F of the weight the linear computes with (integer-scale
	// effective scales when enabled) against the float (folded) weight;
	// FloatScaleWeightError is the same with the float group scales.
	WeightError           float64 `json:"weight_error"`
	FloatScaleWeightError float64 `json:"float_scale_weight_error,omitempty"`
	// OutputError is ‖X·(Ŵ − W)ᵀ‖²/‖X·Wᵀ‖² on the calibration inputs X (from the Hessian,
	// so only when one was gathered: GPTQ), with the float group scales.
	OutputError float64 `json:"output_error,omitempty"`
	// GPTQ is GPTQ's report (nil for RTN).
	GPTQ *GPTQReport `json:"gptq,omitempty"`
	// Alpha summarises the integer-scale amplifiers log2 α over output channels.
	AlphaLog2Min  int           `json:"alpha_log2_min,omitempty"`
	AlphaLog2Max  int           `json:"alpha_log2_max,omitempty"`
	AlphaLog2Mean float64       `json:"alpha_log2_mean,omitempty"`
	Time          time.Duration `json:"time_ns"`
}

// Int8Weight is a symmetric int8 weight quantized per output channel, the weight format of
// the W8A8 SmoothQuant baseline: W[o, k] ≈ Scales[o]·Q[o·In+k], codes in −127..127.
type Int8Weight struct {
	Out, In int
	Q       []int8
	Scales  []float32
}

// Dequantize returns Scales[o]·Q[o, k], row-major [Out, In].
func (w *Int8Weight) Dequantize() []float32 {
	out := make([]float32, len(w.Q))
	for i, q := range w.Q {
		out[i] = w.Scales[i/w.In] * float32(q)
	}
	return out
}

// Module returns the model.Linear that evaluates this linear as quantized: quant.QLinear
// (W4A8, integer scales), FloatScaleLinear (W4A8, float scales), a Dense of the dequantized
// weight (W4A16), a FakeActLinear around it (W8A8), or the float Dense when skipped.
func (lr *LinearResult) Module() (model.Linear, error) { return lr.ModuleWith(false) }

// ModuleWith is Module; floatScales uses the float group scales even when integer scales exist,
// to measure what Integer Scale costs on the very same codes.
func (lr *LinearResult) ModuleWith(floatScales bool) (model.Linear, error) {
	if lr.Skipped {
		return model.NewDense(lr.Float, lr.Bias, lr.Out, lr.In), nil
	}
	switch {
	case lr.Weight8 != nil:
		d := model.NewDense(lr.Weight8.Dequantize(), lr.Bias, lr.Out, lr.In)
		if lr.ActBits == 16 {
			return d, nil
		}
		return &FakeActLinear{Act: lr.Act, Inner: d}, nil
	case lr.ActBits == 16:
		var w []float32
		if lr.IntScale != nil && !floatScales {
			w = lr.IntScale.Dequantize()
		} else {
			w = lr.Weight.Dequantize()
		}
		return model.NewDense(w, lr.Bias, lr.Out, lr.In), nil
	case lr.IntScale != nil && !floatScales:
		return quant.NewQLinear(lr.IntScale, lr.Act, lr.Bias)
	default:
		return NewFloatScaleLinear(lr.Weight, lr.Act, lr.Bias)
	}
}

// ModelLayer builds the decoder layer that computes lr as quantized (floatScales: as
// ModuleWith).
func (lr *LayerResult) ModelLayer(cfg *hf.Config, floatScales bool) (*model.Layer, error) {
	l := &model.Layer{Index: lr.Layer, Config: cfg, AttnNorm: lr.AttnNorm, MLPNorm: lr.MLPNorm}
	for _, lin := range lr.Linears {
		m, err := lin.ModuleWith(floatScales)
		if err != nil {
			return nil, fmt.Errorf("ptq: %s: %w", lin.Name, err)
		}
		l.SetLinear(lin.Kind, m)
	}
	return l, nil
}
