package ptq

import (
	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
	"github.com/odyssey-llm/odyssey/quant"
)

// GPTQOptions configures GPTQ (quant.GPTQOptions). Its GroupSize is ignored: Weights.GroupSize
// (after the per-channel fallback) applies to GPTQ as to RTN.
type GPTQOptions = quant.GPTQOptions

// GPTQReport is GPTQ's account of one linear: its loss estimate, the damping that made the
// Hessian factorizable, dead columns and timings.
type GPTQReport = qresult.GPTQReport

// preparedHessian is an input's damped, factorized Hessian, shared by the linears reading it.
type preparedHessian = quant.GPTQHessian

// prepareHessian damps and factorizes the Hessian of s (after any equalization: s.Scale
// transforms XᵀX with the input). It takes the Hessian out of s, which has none afterwards:
// GPTQ's output error needs no H of its own. The packed upper triangle that the CPU pass
// accumulates is factorized as it is (quant.PrepareHessianPacked: the full In² matrix,
// 970 MB for down_proj's input at 7B, is never built); a full XᵀX (from the GPU pass) is
// scaled in place (Stats.TakeHessian). Either way no copy is made.
func prepareHessian(s *calib.Stats, opt GPTQOptions) (*preparedHessian, error) {
	if tri := s.TakeHessianPacked(); tri != nil {
		return quant.PrepareHessianPacked(tri, s.In, opt)
	}
	return quant.PrepareHessian(s.TakeHessian(), s.In, opt)
}

// runGPTQ quantizes w [out×in] in groups of g with GPTQ against ph.
func runGPTQ(w []float32, out, in, g int, ph *preparedHessian, opt GPTQOptions) (*quant.QuantizedWeight, *GPTQReport, error) {
	opt.GroupSize = g
	qw, st, err := quant.GPTQWithHessian(w, out, in, ph, opt)
	if err != nil {
		return nil, nil, err
	}
	return qw, &st, nil
}
