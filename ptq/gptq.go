package ptq

import (
	"errors"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/quant"
)

// GPTQOptions configures GPTQ.
type GPTQOptions struct{}

// GPTQReport is GPTQ's account of one linear.
type GPTQReport struct {
	Loss float64 `json:"loss"`
	Damp float64 `json:"damp"`
}

type preparedHessian struct{}

func prepareHessian(s *calib.Stats, opt GPTQOptions) (*preparedHessian, error) {
	return nil, errors.New("ptq: GPTQ is not available yet")
}

func runGPTQ(w []float32, out, in, g int, ph *preparedHessian, opt GPTQOptions) (*quant.QuantizedWeight, *GPTQReport, error) {
	return nil, nil, errors.New("ptq: GPTQ is not available yet")
}
