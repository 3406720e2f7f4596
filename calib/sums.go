package calib

import "fmt"

// SetOnChunk sets OnChunk (the ptq.Pass interface).
func (p *Pass) SetOnChunk(fn func(done, total int)) { p.OnChunk = fn }

// Close drops the residual stream and scratch. The CPU pass holds nothing outside the Go
// heap, so it cannot fail; it exists for the ptq.Pass interface, whose GPU implementation
// ends a subprocess.
func (p *Pass) Close() error {
	p.stream, p.buf = nil, nil
	p.mctx.Release()
	return nil
}

// Sums are the raw sums that define an input's Stats, as a calibration pass that runs
// elsewhere (the CUDA runtime, docs/gpu-calibration.md) reports them.
type Sums struct {
	In   int
	Rows int64
	// Min, Max: per channel, over the rows. SumSq: Σ x_j² per channel.
	Min, Max []float32
	SumSq    []float64
	// TokenSum is Σ over rows of the row's max |x|; TokenMin their minimum.
	TokenSum float64
	TokenMin float32
	// XTX is Σ xᵀx [In, In] row-major, or nil without the Hessian. StatsFromSums keeps it
	// (not a copy).
	XTX []float64
}

// StatsFromSums returns the Stats that Add would have produced from rows with these sums:
// AbsMax, TensorAbsMax and TokenAbsMaxMean are derived the same way. The slices are kept,
// not copied. It refuses inconsistent lengths and no rows; non-finite values are left for
// CheckStats (CheckLayerStats) to report as a NonFiniteError, as on the CPU.
func StatsFromSums(s Sums) (*Stats, error) {
	in := s.In
	switch {
	case in <= 0:
		return nil, fmt.Errorf("calib: statistics of width %d", in)
	case s.Rows <= 0:
		return nil, fmt.Errorf("calib: statistics over %d rows", s.Rows)
	case len(s.Min) != in || len(s.Max) != in || len(s.SumSq) != in:
		return nil, fmt.Errorf("calib: statistics of width %d with %d min, %d max, %d sumsq values", in, len(s.Min), len(s.Max), len(s.SumSq))
	case s.XTX != nil && len(s.XTX) != in*in:
		return nil, fmt.Errorf("calib: XᵀX of %d values for width %d", len(s.XTX), in)
	case s.TokenSum < 0:
		return nil, fmt.Errorf("calib: token maxima sum %v", s.TokenSum)
	}
	st := &Stats{
		In: in, Rows: s.Rows,
		Min: s.Min, Max: s.Max, AbsMax: make([]float32, in), SumSq: s.SumSq,
		TokenAbsMaxMin: s.TokenMin, tokenSum: s.TokenSum, xtx: s.XTX,
	}
	for j := range in {
		st.AbsMax[j] = max(-s.Min[j], s.Max[j])
		st.TensorAbsMax = max(st.TensorAbsMax, st.AbsMax[j])
	}
	st.TokenAbsMaxMean = s.TokenSum / float64(s.Rows)
	return st, nil
}

// Sums returns the raw sums of s (the inverse of StatsFromSums; slices are not copied, and
// a packed XᵀX is mirrored into the full matrix first, as XTX does).
func (s *Stats) Sums() Sums {
	return Sums{In: s.In, Rows: s.Rows, Min: s.Min, Max: s.Max, SumSq: s.SumSq,
		TokenSum: s.tokenSum, TokenMin: s.TokenAbsMaxMin, XTX: s.XTX()}
}

// CheckLayerStats checks the statistics of a layer's four inputs as a pass does before
// handing them over (CheckStats for each).
func CheckLayerStats(ls *LayerStats) error {
	if ls == nil || len(ls.Inputs) != len(inputKinds) {
		return fmt.Errorf("calib: %d of the layer's %d inputs have statistics", lenInputs(ls), len(inputKinds))
	}
	for _, k := range inputKinds {
		s := ls.Inputs[k]
		if s == nil {
			return fmt.Errorf("calib: layer %d: no statistics for the %v input", ls.Layer, k)
		}
		if err := CheckStats(s, ls.Layer, "the "+k.String()+" input"); err != nil {
			return err
		}
	}
	return nil
}
