package ptq

import (
	"github.com/odyssey-llm/odyssey/ptq/qresult"
	"github.com/odyssey-llm/odyssey/quant"
)

// The fake-quantized linears live in qresult beside the results they evaluate.
type (
	// FloatScaleLinear is qresult.FloatScaleLinear: W4A8 with float group scales.
	FloatScaleLinear = qresult.FloatScaleLinear
	// FakeActLinear is qresult.FakeActLinear: int8 fake-quantized input, float weight.
	FakeActLinear = qresult.FakeActLinear
)

// NewFloatScaleLinear is qresult.NewFloatScaleLinear.
func NewFloatScaleLinear(w *quant.QuantizedWeight, act quant.ActQuant, bias []float32) (*FloatScaleLinear, error) {
	return qresult.NewFloatScaleLinear(w, act, bias)
}
