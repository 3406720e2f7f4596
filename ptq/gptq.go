package ptq

import (
	"runtime"

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
// transforms XᵀX with the input). It takes the Hessian out of s (Stats.TakeHessian, no
// copy), which has none afterwards: GPTQ's output error needs no H of its own.
//
// The Stats hold XᵀX as a packed triangle, which TakeHessian mirrors into a new full matrix;
// the triangle (485 MB for down_proj's input at 7B) is collected before PrepareHessian
// allocates its factor, which then reuses that memory instead of growing the heap.
func prepareHessian(s *calib.Stats, opt GPTQOptions) (*preparedHessian, error) {
	h := s.TakeHessian()
	runtime.GC()
	return quant.PrepareHessian(h, s.In, opt)
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
