package calib

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/model"
)

// Stats summarises the calibration inputs x [rows, In] of one linear layer (or of the group
// of linears that share the input: q/k/v, gate/up).
type Stats struct {
	In   int
	Rows int64
	// Min, Max and AbsMax are per input channel: min x_j, max x_j and max |x_j| over every
	// calibration row.
	Min, Max, AbsMax []float32
	// SumSq is Σ x_j² over the rows per channel, in float64: the diagonal of XᵀX, kept even
	// without the Hessian, for activation-weighted weight errors (E[x_j²] = SumSq_j/Rows).
	SumSq []float64
	// TensorAbsMax is max |x| over the whole tensor, which sets a static per-tensor scale.
	TensorAbsMax float32
	// TokenAbsMaxMean and TokenAbsMaxMin are the mean and the minimum over rows of each row's
	// max |x|, the quantity a dynamic per-token scale follows. TensorAbsMax/TokenAbsMaxMean
	// says how much resolution one static scale wastes on a typical token.
	TokenAbsMaxMean float64
	TokenAbsMaxMin  float32
	// Rescaled is true when the statistics were transformed by Scale after collection: the
	// per-channel, per-tensor and Hessian statistics are then exact for the rescaled input,
	// but the per-token ones still describe the input as it was observed.
	Rescaled bool

	tokenSum float64
	// xtx is Σ xᵀx over the rows, accumulated in float64; nil when the Hessian was not
	// requested. XᵀX is symmetric, so Add accumulates only its upper triangle, packed
	// (xtxPacked: row i holds columns i..In-1 at triOffset(In, i), In·(In+1)/2 values):
	// half the memory (485 MB instead of 970 MB for an 11008-wide input, at the peak of a
	// 7B layer's collection) and half the products. It is mirrored into the full row-major
	// [In, In] matrix only when the Hessian is handed over (TakeHessian, Hessian, XTX);
	// StatsFromSums keeps a full matrix as it comes (xtxPacked false).
	xtx       []float64
	xtxPacked bool
	scratch   []float32 // float32 XᵀX of one chunk
}

// triOffset is where row i of a packed upper triangle of an n×n matrix starts: rows r < i
// hold n−r values each.
func triOffset(n, i int) int { return i*n - i*(i-1)/2 }

// unpackUpper returns the full row-major n×n symmetric matrix whose upper triangle t holds
// packed, each value f·t (f = 1 copies): both copies of an off-diagonal entry are the same
// float64 product, so the result is bit-identical to scaling the full matrix.
func unpackUpper(t []float64, n int, f float64) []float64 {
	h := make([]float64, n*n)
	// Rows in parallel: row i writes its own upper part h[i][i:] and the column h[i:][i],
	// which no other row writes.
	parallel.Ranges(n, 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			src := t[triOffset(n, i) : triOffset(n, i)+n-i]
			for k, v := range src {
				v *= f
				h[i*n+i+k] = v
				h[(i+k)*n+i] = v
			}
		}
	})
	return h
}

// full turns a packed XᵀX into the full matrix in place (s keeps it), for the callers that
// need the whole matrix itself.
func (s *Stats) full() {
	if s.xtx != nil && s.xtxPacked {
		s.xtx, s.xtxPacked = unpackUpper(s.xtx, s.In, 1), false
	}
}

// NewStats returns empty statistics for inputs of width in; with hessian the XᵀX sum is
// accumulated too (In² float64s).
func NewStats(in int, hessian bool) *Stats {
	if in <= 0 {
		panic(fmt.Sprintf("calib.NewStats: width %d", in))
	}
	s := &Stats{
		In:     in,
		Min:    make([]float32, in),
		Max:    make([]float32, in),
		AbsMax: make([]float32, in),
		SumSq:  make([]float64, in),
	}
	for j := range s.Min {
		s.Min[j] = float32(math.Inf(1))
		s.Max[j] = float32(math.Inf(-1))
	}
	s.TokenAbsMaxMin = float32(math.Inf(1))
	if hessian {
		s.xtx, s.xtxPacked = make([]float64, triOffset(in, in)), true
	}
	return s
}

// HasHessian reports whether XᵀX is being accumulated.
func (s *Stats) HasHessian() bool { return s.xtx != nil }

// Add accumulates rows of x [rows, In], row-major. The per-channel and per-token statistics
// are computed on row ranges in parallel; XᵀX of the rows is computed by gemm.Sgemm in
// float32 (one product per call, so rows should be a few thousand at most for float32 to
// hold the sum to ~1e-6) and added into the float64 accumulator.
func (s *Stats) Add(x []float32, rows int) {
	in := s.In
	if rows <= 0 {
		return
	}
	if len(x) < rows*in {
		panic(fmt.Sprintf("calib.Stats.Add: x has %d elements, want %d×%d", len(x), rows, in))
	}
	x = x[:rows*in]
	s.addRanges(x, rows)
	s.Rows += int64(rows)
	if s.xtx != nil {
		// XᵀX a block of xtxBlockRows rows at a time: the float32 scratch is then
		// xtxBlockRows·In values instead of In² (45 MB instead of 485 MB for an 11008-wide
		// input, at the peak of a 7B layer's collection), and each block is still one large
		// Sgemm. Of rows i0..i0+m only the columns from i0 on are computed (the upper
		// triangle and the block's small lower corner), and only j ≥ i is added. Every entry
		// is the same dot product, summed in the same order, whatever the block and column
		// range (gemm blocks K alone, by kc, and each C entry has its own accumulator), so
		// the triangle is bit-identical to the full product's (TestXTXTriangleBitIdentical).
		bs := min(in, xtxBlockRows)
		if cap(s.scratch) < bs*in {
			s.scratch = make([]float32, bs*in)
		}
		for i0 := 0; i0 < in; i0 += bs {
			m, w := min(bs, in-i0), in-i0
			if !s.xtxPacked { // a full matrix (StatsFromSums) keeps being summed whole
				t := s.scratch[:m*in]
				gemm.Sgemm(true, false, m, in, rows, 1, x[i0:], in, x, in, 0, t, in)
				addF64(s.xtx[i0*in:(i0+m)*in], t)
				continue
			}
			t := s.scratch[:m*w]
			gemm.Sgemm(true, false, m, w, rows, 1, x[i0:], in, x[i0:], in, 0, t, w)
			addUpperF64(s.xtx, in, i0, m, t)
		}
	}
}

// xtxBlockRows is the number of rows of XᵀX that Stats.Add computes at once (a variable so
// that tests can cover several blocks and a ragged last one on small widths).
var xtxBlockRows = 1024

// addUpperF64 adds the upper-triangle part of t, rows i0..i0+m of XᵀX from column i0 on
// (row stride n−i0), into the packed float64 triangle acc of an n×n matrix.
func addUpperF64(acc []float64, n, i0, m int, t []float32) {
	w := n - i0
	parallel.Ranges(m, max(1, (1<<16)/w), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			i := i0 + r
			a := acc[triOffset(n, i) : triOffset(n, i)+n-i]
			b := t[r*w+r : (r+1)*w]
			for j := range a {
				a[j] += float64(b[j])
			}
		}
	})
}

// addF64 adds t into acc in parallel.
func addF64(acc []float64, t []float32) {
	parallel.Ranges(len(acc), 1<<16, func(lo, hi int) {
		a, b := acc[lo:hi], t[lo:hi]
		for i := range a {
			a[i] += float64(b[i])
		}
	})
}

// partial is one worker's share of the per-channel and per-token statistics.
type partial struct {
	min, max []float32
	sumSq    []float64
	tokSum   float64
	tokMin   float32
}

// statsBlockRows and statsWaveBlocks fix how Add sums rows, whatever the core count: each
// block of statsBlockRows rows is summed alone (from zero, in row order), and the blocks'
// sums are added into the totals in block order, statsWaveBlocks blocks at a time. Float64
// sums (SumSq, the token maxima's sum) therefore come out bit-identical at any GOMAXPROCS;
// only which goroutine sums a block depends on it.
const (
	statsBlockRows  = 64
	statsWaveBlocks = 64
)

func (s *Stats) addRanges(x []float32, rows int) {
	in := s.In
	blocks := (rows + statsBlockRows - 1) / statsBlockRows
	wave := min(blocks, statsWaveBlocks)
	parts := make([]partial, wave)
	for p := range parts {
		parts[p] = partial{min: make([]float32, in), max: make([]float32, in), sumSq: make([]float64, in)}
	}
	for b0 := 0; b0 < blocks; b0 += wave {
		nb := min(wave, blocks-b0)
		parallel.For(nb, func(_, i int) {
			pt := &parts[i]
			lo := (b0 + i) * statsBlockRows
			hi := min(lo+statsBlockRows, rows)
			copy(pt.min, x[lo*in:(lo+1)*in])
			copy(pt.max, x[lo*in:(lo+1)*in])
			clear(pt.sumSq)
			pt.tokSum, pt.tokMin = 0, float32(math.Inf(1))
			for r := lo; r < hi; r++ {
				row := x[r*in : (r+1)*in]
				mn, mx, sq := pt.min[:len(row)], pt.max[:len(row)], pt.sumSq[:len(row)]
				var t float32
				// float32()/float64() around a product: the compiler may not fuse it into an FMA (arm64,
				// GOAMD64=v3), so every build rounds as amd64 v1 does (docs/determinism.md, Compiler fusion).
				for j, v := range row {
					sq[j] += float64(float64(v) * float64(v))
					if v < mn[j] {
						mn[j] = v
					}
					if v > mx[j] {
						mx[j] = v
					}
					if a := abs32(v); a > t {
						t = a
					}
				}
				pt.tokSum += float64(t)
				if t < pt.tokMin {
					pt.tokMin = t
				}
			}
		})
		for _, pt := range parts[:nb] { // in block order
			for j := range in {
				s.Min[j] = min(s.Min[j], pt.min[j])
				s.Max[j] = max(s.Max[j], pt.max[j])
				s.SumSq[j] += pt.sumSq[j]
			}
			s.tokenSum += pt.tokSum
			s.TokenAbsMaxMin = min(s.TokenAbsMaxMin, pt.tokMin)
		}
	}
	s.TensorAbsMax = 0
	for j := range in {
		s.AbsMax[j] = max(-s.Min[j], s.Max[j])
		s.TensorAbsMax = max(s.TensorAbsMax, s.AbsMax[j])
	}
	s.TokenAbsMaxMean = s.tokenSum / float64(s.Rows+int64(rows))
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// Range returns max_j − min_j of channel j: the width a channel's values span, the FPTQ
// alternative to max |x_j| as the statistic of an equalization.
func (s *Stats) Range(j int) float32 { return s.Max[j] - s.Min[j] }

// XTX returns the accumulated Σ xᵀx [In, In] row-major (not a copy), or nil without a
// Hessian. A packed triangle is mirrored into the full matrix first, which s keeps from
// then on (In² float64s).
func (s *Stats) XTX() []float64 {
	s.full()
	return s.xtx
}

// Hessian returns a new H = 2/n·XᵀX [In, In] row-major, the Hessian of the layer-wise
// squared error ‖XWᵀ − XŴᵀ‖² that GPTQ minimises, n being the number of rows; nil when the
// Hessian was not accumulated or no rows were seen.
func (s *Stats) Hessian() []float64 {
	if s.xtx == nil || s.Rows == 0 {
		return nil
	}
	f := 2 / float64(s.Rows)
	if s.xtxPacked {
		return unpackUpper(s.xtx, s.In, f)
	}
	h := make([]float64, len(s.xtx))
	for i, v := range s.xtx {
		h[i] = f * v
	}
	return h
}

// Merge adds the statistics of o, collected on other rows of the same input, into s.
func (s *Stats) Merge(o *Stats) {
	if o.In != s.In || (o.xtx == nil) != (s.xtx == nil) {
		panic("calib.Stats.Merge: statistics of different inputs")
	}
	if s.xtxPacked != o.xtxPacked { // one full (StatsFromSums): sum full matrices
		s.full()
		o = o.Clone()
		o.full()
	}
	for j := range s.In {
		s.Min[j] = min(s.Min[j], o.Min[j])
		s.Max[j] = max(s.Max[j], o.Max[j])
		s.AbsMax[j] = max(-s.Min[j], s.Max[j])
		s.TensorAbsMax = max(s.TensorAbsMax, s.AbsMax[j])
		s.SumSq[j] += o.SumSq[j]
	}
	for i := range s.xtx {
		s.xtx[i] += o.xtx[i]
	}
	s.tokenSum += o.tokenSum
	s.Rows += o.Rows
	s.TokenAbsMaxMean = s.tokenSum / float64(s.Rows)
	s.TokenAbsMaxMin = min(s.TokenAbsMaxMin, o.TokenAbsMaxMin)
	s.Rescaled = s.Rescaled || o.Rescaled
}

// Clone returns a deep copy of s.
func (s *Stats) Clone() *Stats {
	c := *s
	c.Min = append([]float32(nil), s.Min...)
	c.Max = append([]float32(nil), s.Max...)
	c.AbsMax = append([]float32(nil), s.AbsMax...)
	c.SumSq = append([]float64(nil), s.SumSq...)
	if s.xtx != nil {
		c.xtx = append([]float64(nil), s.xtx...)
	}
	c.scratch = nil
	return &c
}

// Scale transforms s, in place, into the statistics of the input x_j/d_j, which is what a
// consumer sees after an equalization folds 1/d into the producer of its input (d_j > 0).
// The transform is exact for the per-channel ranges, the per-tensor maximum and XᵀX
// (entries divided by d_i·d_j, SumSq by d_j²); per-token maxima cannot be transformed and are kept as they
// were, which Rescaled records.
func (s *Stats) Scale(d []float32) {
	if len(d) != s.In {
		panic(fmt.Sprintf("calib.Stats.Scale: %d factors for %d channels", len(d), s.In))
	}
	s.TensorAbsMax = 0
	for j, dj := range d {
		if !(dj > 0) {
			panic(fmt.Sprintf("calib.Stats.Scale: factor %d is %v, want > 0", j, dj))
		}
		s.Min[j] /= dj
		s.Max[j] /= dj
		s.AbsMax[j] = max(-s.Min[j], s.Max[j])
		s.TensorAbsMax = max(s.TensorAbsMax, s.AbsMax[j])
		s.SumSq[j] /= float64(dj) * float64(dj)
	}
	if s.xtx != nil && s.xtxPacked {
		// The same division per entry as the full matrix's (di·dj = dj·di exactly).
		n := s.In
		parallel.Ranges(n, 16, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				di := float64(d[i])
				row := s.xtx[triOffset(n, i) : triOffset(n, i)+n-i]
				for k := range row {
					row[k] /= di * float64(d[i+k])
				}
			}
		})
	} else if s.xtx != nil {
		n := s.In
		parallel.Ranges(n, 16, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				di := float64(d[i])
				row := s.xtx[i*n : (i+1)*n]
				for j := range row {
					row[j] /= di * float64(d[j])
				}
			}
		})
	}
	s.Rescaled = true
}

// inputKinds are the linears that read a distinct input, one per group of SharedInput: the
// kinds Context.Observe reports in a decoder layer.
var inputKinds = []model.LinearKind{model.Q, model.O, model.Gate, model.Down}

// InputKinds returns the kinds that name the four distinct inputs of a decoder layer: Q (the
// input q, k and v share), O, Gate (shared with up) and Down.
func InputKinds() []model.LinearKind { return append([]model.LinearKind(nil), inputKinds...) }

// LayerStats holds the statistics of the four inputs of one decoder layer.
type LayerStats struct {
	Layer  int
	Inputs map[model.LinearKind]*Stats // keyed by Q, O, Gate, Down
	// Outputs holds, for each linear whose input's Hessian was accumulated, Σ‖y − b‖² over
	// the calibration rows of its output y = x·Wᵀ + b: the n/2·tr(W·H·Wᵀ) that GPTQ's
	// relative output error divides by, at no cost beyond the forward pass.
	Outputs map[model.LinearKind]*OutputStats
}

// OutputStats sums the squares of one linear's output without its bias.
type OutputStats struct {
	SumSq float64
	Rows  int64
}

// add accumulates y [rows×out]: each row is summed alone, in parallel, and the rows are
// added in order, so that the sum does not depend on GOMAXPROCS.
func (o *OutputStats) add(y []float32, rows, out int, bias []float32) {
	sums := make([]float64, rows)
	parallel.Ranges(rows, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			var t float64
			row := y[r*out : (r+1)*out]
			if bias == nil {
				for _, v := range row {
					t += float64(float64(v) * float64(v))
				}
			} else {
				for j, v := range row {
					d := float64(v - bias[j])
					t += float64(d * d)
				}
			}
			sums[r] = t
		}
	})
	for _, t := range sums {
		o.SumSq += t
	}
	o.Rows += int64(rows)
}

// TakeHessian hands over H = 2/n·XᵀX (the same numbers as Hessian): s has no Hessian
// afterwards. A full XᵀX (StatsFromSums) is scaled in place, saving Hessian's copy (In²
// float64s, 970 MB for an 11008-wide input); the packed triangle Add accumulates is
// mirrored into a new full matrix and dropped, so that one input's H is whole only from
// here on, not during collection. nil when the Hessian was not accumulated or no rows were
// seen.
func (s *Stats) TakeHessian() []float64 {
	if s.xtx == nil || s.Rows == 0 {
		return nil
	}
	f := 2 / float64(s.Rows)
	if s.xtxPacked {
		// Mirrored into a new full matrix (the quantizer reads every entry); the triangle is
		// garbage once s drops it.
		h := unpackUpper(s.xtx, s.In, f)
		s.xtx, s.xtxPacked = nil, false
		return h
	}
	h := s.xtx
	s.xtx = nil
	parallel.Ranges(len(h), 1<<16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			h[i] *= f
		}
	})
	return h
}

// TakeHessianPacked hands over H = 2/n·XᵀX as the packed upper triangle that Add
// accumulates (row i holds H[i][i..In-1] at i·In − i·(i−1)/2), scaled in place: the same
// numbers as Hessian's upper triangle, with no full matrix allocated
// (quant.PrepareHessianPacked takes it so). s has no Hessian afterwards. nil, and s
// unchanged, when the Hessian is not accumulated, no rows were seen, or XᵀX is held as a
// full matrix (StatsFromSums): TakeHessian then.
func (s *Stats) TakeHessianPacked() []float64 {
	if s.xtx == nil || s.Rows == 0 || !s.xtxPacked {
		return nil
	}
	h := s.xtx
	s.xtx, s.xtxPacked = nil, false
	f := 2 / float64(s.Rows)
	parallel.Ranges(len(h), 1<<16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			h[i] *= f
		}
	})
	return h
}

// For returns the statistics of the input that linear kind reads (those of Q for K and V,
// of Gate for Up), or nil.
func (l *LayerStats) For(kind model.LinearKind) *Stats {
	if l == nil {
		return nil
	}
	return l.Inputs[kind.SharedInput()[0]]
}

// Collector turns Context.Observe calls into Stats per layer and input. It is what a Pass
// installs, and it can observe a whole-model forward pass the same way, which is how the
// layer-by-layer pass is tested.
type Collector struct {
	// Hessian selects the inputs whose XᵀX is accumulated; nil means none.
	Hessian func(layer int, kind model.LinearKind) bool
	layers  map[int]*LayerStats
	// scratch is the float32 XᵀX of one chunk, shared by every input's Stats (they are
	// added one at a time) instead of one per input: In² float32s for the widest input.
	scratch []float32
}

// Observe is a model.Context.Observe function. It ignores the LM head's input.
func (c *Collector) Observe(layer int, kind model.LinearKind, x []float32, rows, in int) {
	if kind == model.LMHead {
		return
	}
	if c.layers == nil {
		c.layers = map[int]*LayerStats{}
	}
	ls := c.layers[layer]
	if ls == nil {
		ls = &LayerStats{Layer: layer, Inputs: map[model.LinearKind]*Stats{}}
		c.layers[layer] = ls
	}
	s := ls.Inputs[kind]
	if s == nil {
		s = NewStats(in, c.Hessian != nil && c.Hessian(layer, kind))
		ls.Inputs[kind] = s
	}
	s.scratch = c.scratch
	s.Add(x, rows)
	c.scratch, s.scratch = s.scratch, nil
}

// ObserveOutput is a model.Context.ObserveOutput function: it sums the squares of the
// output of every linear whose input's Hessian is accumulated (bias, the linear's bias or
// nil, subtracted first).
func (c *Collector) ObserveOutput(layer int, kind model.LinearKind, y []float32, rows, out int, bias []float32) {
	if kind == model.LMHead || c.Hessian == nil || !c.Hessian(layer, kind.SharedInput()[0]) {
		return
	}
	if c.layers == nil {
		c.layers = map[int]*LayerStats{}
	}
	ls := c.layers[layer]
	if ls == nil {
		ls = &LayerStats{Layer: layer, Inputs: map[model.LinearKind]*Stats{}}
		c.layers[layer] = ls
	}
	if ls.Outputs == nil {
		ls.Outputs = map[model.LinearKind]*OutputStats{}
	}
	o := ls.Outputs[kind]
	if o == nil {
		o = &OutputStats{}
		ls.Outputs[kind] = o
	}
	o.add(y, rows, out, bias)
}

// ReleaseScratch drops the shared XᵀX scratch (In² float32s): between layers the memory
// is better used by the quantizer.
func (c *Collector) ReleaseScratch() { c.scratch = nil }

// Layer returns the statistics collected for a layer, or nil if it was never observed.
func (c *Collector) Layer(i int) *LayerStats { return c.layers[i] }

// Take returns the statistics of layer i and forgets them, so that the next observation of
// the layer starts afresh.
func (c *Collector) Take(i int) *LayerStats {
	ls := c.layers[i]
	delete(c.layers, i)
	return ls
}
