// Package tpsim simulates tensor-parallel inference on the float32 forward pass, to measure
// what a compressed all-reduce (Flash Communication, quant.FlashComm) costs in accuracy
// without a GPU.
//
// Tensor parallelism splits a decoder layer's row-parallel linears, o_proj and down_proj,
// along their input dimension K: rank r holds columns [r·K/tp, (r+1)·K/tp) of W and of the
// activation x and computes the partial product y_r = x_r·W_rᵀ in float32; the layer's output
// is the all-reduced Σ_r y_r. Split replaces those two linears of every layer, through the
// model's Linear seam, by RowParallel, which does exactly that with the all-reduce going
// through the codec; everything else (the column-parallel linears, attention, norms) computes
// the same numbers split or not, so the simulation runs it once. Compare then measures the
// split model against the unsplit one (perplexity and KL divergence).
package tpsim

import (
	"context"
	"fmt"
	"slices"

	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// Config is one simulated deployment: the tensor-parallel degree and the all-reduce codec.
type Config struct {
	TP    int
	Codec quant.FlashComm
}

// Check reports, with a message naming the dimension, whether c can split m: TP divides the
// input dimensions of o_proj (heads·head_dim) and down_proj (the intermediate size), which
// are split across ranks, and the hidden size, which the all-reduce cuts into TP chunks; and
// the codec's group divides a chunk (hidden/TP), so that no group straddles two ranks.
func Check(m *model.Model, c Config) error { return CheckConfig(&m.Config, c) }

// CheckConfig is Check on a model's configuration, before its weights are read.
func CheckConfig(cfg *hf.Config, c Config) error {
	if c.TP < 1 {
		return fmt.Errorf("tpsim: tensor-parallel degree %d must be at least 1", c.TP)
	}
	if err := c.Codec.Validate(); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		n    int
	}{
		{"o_proj's input (heads × head_dim)", cfg.NumHeads * cfg.HeadDim},
		{"down_proj's input (intermediate_size)", cfg.IntermediateSize},
		{"the hidden size", cfg.HiddenSize},
	} {
		if d.n%c.TP != 0 {
			return fmt.Errorf("tpsim: TP %d does not divide %s, %d", c.TP, d.name, d.n)
		}
	}
	if h := cfg.HiddenSize; c.Codec.Bits != 16 && (h/c.TP)%c.Codec.Group != 0 {
		return fmt.Errorf("tpsim: group %d does not divide the per-rank chunk of the all-reduce, hidden size %d / TP %d = %d values per token (groups dividing it: %v)",
			c.Codec.Group, h, c.TP, h/c.TP, ValidGroups(h/c.TP))
	}
	return nil
}

// ValidGroups lists the group sizes the codec accepts (multiples of 8) that divide chunk.
func ValidGroups(chunk int) []int {
	var gs []int
	for g := 8; g <= chunk; g += 8 {
		if chunk%g == 0 {
			gs = append(gs, g)
		}
	}
	return gs
}

// Split returns a model that shares m's weights and differs only in that the o_proj and
// down_proj of every layer are RowParallel over c.TP ranks with c.Codec. m is not modified.
func Split(m *model.Model, c Config) (*model.Model, error) {
	if err := Check(m, c); err != nil {
		return nil, err
	}
	s := *m
	s.Layers = make([]*model.Layer, len(m.Layers))
	sc := new(scratch) // the layers run one at a time and share it
	for i, l := range m.Layers {
		if l == nil {
			return nil, fmt.Errorf("tpsim: layer %d is not loaded", i)
		}
		nl := *l
		for _, k := range []model.LinearKind{model.O, model.Down} {
			rp, err := newRowParallel(l.Linear(k), c, sc)
			if err != nil {
				return nil, fmt.Errorf("tpsim: layer %d %v: %w", i, k, err)
			}
			nl.SetLinear(k, rp)
		}
		s.Layers[i] = &nl
	}
	return &s, nil
}

type scratch struct {
	partials [][]float32
	x        []float32
}

// RowParallel is a row-parallel linear over TP simulated ranks whose partial sums are
// all-reduced through a quant.FlashComm codec. A bias is added once, after the all-reduce
// (as a tensor-parallel runtime does). It is not safe for concurrent use.
//
// A *model.Dense computes each partial with the K-slice of its weight. Any other linear
// (the W4A8 reference linear of an artifact, quant.QLinear) runs once per rank on x with the
// columns outside the rank's slice set to zero, which is the rank's partial product for a
// linear map: for dynamic per-token activation quantization that is what a rank computes, an
// int8 scale from its own slice of the token.
type RowParallel struct {
	inner   model.Linear
	dense   *model.Dense // inner when it is a Dense
	bias    []float32    // added after the all-reduce
	cfg     Config
	scratch *scratch
}

func newRowParallel(lin model.Linear, c Config, sc *scratch) (*RowParallel, error) {
	rp := &RowParallel{inner: lin, cfg: c, scratch: sc}
	switch l := lin.(type) {
	case *model.Dense:
		rp.dense, rp.bias = l, l.B
	case *quant.QLinear:
		nb := *l
		nb.Bias = nil
		rp.inner, rp.bias = &nb, l.Bias
	default:
		// A linear of unknown type must map 0 to 0, or its partials would each carry the
		// bias: check it once.
		y := make([]float32, lin.Out())
		lin.Forward(y, make([]float32, lin.In()), 1)
		if slices.ContainsFunc(y, func(v float32) bool { return v != 0 }) {
			return nil, fmt.Errorf("%T has a bias (maps 0 to non-zero); its row-parallel split is not simulated", lin)
		}
	}
	return rp, nil
}

// In returns the input width.
func (p *RowParallel) In() int { return p.inner.In() }

// Out returns the output width.
func (p *RowParallel) Out() int { return p.inner.Out() }

// allReduceError is what Forward panics with when the all-reduce refuses its input;
// Compare turns it back into an error.
type allReduceError struct{ err error }

// Forward computes the TP partial products of x and all-reduces them into y. It panics with
// the codec's error when the all-reduce refuses its input (a NaN or infinite activation, see
// quant.ErrFlashCommInput): model.Linear has no error return. Compare recovers it as an error.
func (p *RowParallel) Forward(y, x []float32, rows int) {
	tp, in, out := p.cfg.TP, p.In(), p.Out()
	ks := in / tp
	sc := p.scratch
	if len(sc.partials) < tp {
		sc.partials = make([][]float32, tp)
	}
	parts := sc.partials[:tp]
	for r := range parts {
		if cap(parts[r]) < rows*out {
			parts[r] = make([]float32, rows*out)
		}
		parts[r] = parts[r][:rows*out]
	}
	if rows == 0 {
		return
	}
	for r := range tp {
		if p.dense != nil {
			off := r * ks
			gemm.Sgemm(false, true, rows, out, ks, 1, x[off:], in, p.dense.W[off:], in, 0, parts[r], out)
			continue
		}
		if cap(sc.x) < rows*in {
			sc.x = make([]float32, rows*in)
		}
		xr := sc.x[:rows*in]
		clear(xr)
		for i := 0; i < rows; i++ {
			copy(xr[i*in+r*ks:i*in+(r+1)*ks], x[i*in+r*ks:i*in+(r+1)*ks])
		}
		p.inner.Forward(parts[r], xr, rows)
	}
	if err := p.cfg.Codec.AllReduce(y[:rows*out], parts, rows, out); err != nil {
		panic(allReduceError{err})
	}
	if p.bias != nil {
		for i := 0; i < rows; i++ {
			row := y[i*out : (i+1)*out]
			for j := range row {
				row[j] += p.bias[j]
			}
		}
	}
}

// Result compares the split model with the unsplit reference over the same windows.
type Result struct {
	// PPLReference is the unsplit model's perplexity (exact all-reduce), PPL the split
	// model's, Ratio = PPL / PPLReference.
	PPLReference float64 `json:"ppl_reference"`
	PPL          float64 `json:"ppl"`
	Ratio        float64 `json:"ratio"`
	// KLMean is the mean KL(P_reference ‖ P_split) over the scored positions, in nats.
	KLMean        float64 `json:"kl_mean"`
	KLStdErr      float64 `json:"kl_stderr"`
	KLP99         float64 `json:"kl_p99"`
	KLMax         float64 `json:"kl_max"`
	Top1Agreement float64 `json:"top1_agreement"`

	// TP, Bits, Group and Symmetric are the configuration; Group is 0 for the control
	// (Bits 16), which has no groups.
	TP        int  `json:"tp"`
	Bits      int  `json:"bits"`
	Group     int  `json:"group"`
	Symmetric bool `json:"symmetric"`
	// BytesPerElement is what one all-reduced value costs on the wire
	// (quant.FlashComm.BytesPerElement); Compression is 2 (a 16-bit all-reduce) divided by it.
	BytesPerElement float64 `json:"bytes_per_element"`
	Compression     float64 `json:"compression"`

	Windows      int     `json:"windows"`
	TotalWindows int     `json:"total_windows"`
	SeqLen       int     `json:"seq_len"`
	TokensScored int     `json:"tokens_scored"`
	Seconds      float64 `json:"seconds"`
}

// Compare runs the reference m and its split over the perplexity windows of stream (see
// eval.Perplexity) and returns both perplexities and the KL divergence between them.
func Compare(ctx context.Context, m *model.Model, c Config, stream []int, opt eval.Options) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(allReduceError)
			if !ok {
				panic(r)
			}
			res, err = nil, fmt.Errorf("tpsim: TP %d all-reduce: %w", c.TP, e.err)
		}
	}()
	split, err := Split(m, c)
	if err != nil {
		return nil, err
	}
	kl, err := eval.KL(ctx, m, split, stream, opt)
	if err != nil {
		return nil, err
	}
	group := c.Codec.Group
	if c.Codec.Bits == 16 {
		group = 0
	}
	bpe := c.Codec.BytesPerElement()
	return &Result{
		PPLReference: kl.RefPPL, PPL: kl.PPL, Ratio: kl.PPL / kl.RefPPL,
		KLMean: kl.MeanKL, KLStdErr: kl.KLStdErr, KLP99: kl.P99KL, KLMax: kl.MaxKL, Top1Agreement: kl.Top1Agreement,
		TP: c.TP, Bits: c.Codec.Bits, Group: group, Symmetric: c.Codec.Symmetric,
		BytesPerElement: bpe, Compression: 2 / bpe,
		Windows: kl.Windows, TotalWindows: kl.TotalWindows, SeqLen: kl.SeqLen, TokensScored: kl.TokensScored,
		Seconds: kl.Seconds,
	}, nil
}
