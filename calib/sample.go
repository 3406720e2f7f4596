package calib

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/model"
)

// SampleOptions controls SampleWindows.
type SampleOptions struct {
	// Samples is the number of windows and SeqLen their length, BOS included.
	Samples, SeqLen int
	// Seed seeds one random stream per window, so a window's tokens depend only on the seed
	// and its index, not on how windows are batched.
	Seed uint64
	// Temperature divides the logits (0 means 1: the model's own distribution).
	Temperature float64
	// TopK, when positive, restricts sampling to the K most likely tokens.
	TopK int
	// Batch is the number of windows decoded together; 0 means 64. It bounds the key/value
	// cache (layers·Batch·SeqLen·2·kv_dim floats).
	Batch int
	// Progress, when non-nil, is called after each decode step with the tokens sampled so
	// far and the total to sample.
	Progress func(done, total int)
}

// seedSample separates the per-window sampling streams from TextWindows' stream.
const seedSample = 0x73656c6673616d70 // "selfsamp"

// SampleWindows draws calibration windows from the model itself: each window starts with
// bos and continues with SeqLen−1 tokens sampled autoregressively from the model's
// next-token distribution (at Temperature, optionally top-K), a data-free calibration set
// that follows the distribution the model was trained on. An end-of-sequence token is kept
// and sampling goes on after it, as it would in a packed training stream.
//
// Decoding is incremental with a key/value cache, so a window costs one forward step per
// token (O(L) steps of Batch rows each) rather than O(L²) full forward passes. The
// arithmetic follows model.Layer.Forward (same RMSNorm, rotary table, softmax exponentials)
// and the logits agree with the full forward pass to float32 rounding.
func SampleWindows(ctx context.Context, m *model.Model, bos int, opt SampleOptions) ([][]int, error) {
	if opt.Samples <= 0 || opt.SeqLen < minCalibrationSeqLen {
		return nil, fmt.Errorf("calib: %d windows of %d tokens: need at least one window of two tokens", opt.Samples, opt.SeqLen)
	}
	if bos < 0 || bos >= m.VocabSize() {
		return nil, fmt.Errorf("calib: BOS id %d outside the vocabulary [0, %d)", bos, m.VocabSize())
	}
	temp := opt.Temperature
	if temp == 0 {
		temp = 1
	}
	if !(temp > 0) || opt.TopK < 0 {
		return nil, fmt.Errorf("calib: temperature %v must be positive and top-k %d not negative", opt.Temperature, opt.TopK)
	}
	for i, l := range m.Layers {
		if l == nil {
			return nil, fmt.Errorf("calib: layer %d of the model is not loaded", i)
		}
	}
	batch := opt.Batch
	if batch <= 0 {
		batch = 64
	}
	batch = min(batch, opt.Samples)
	L := opt.SeqLen
	out := make([][]int, opt.Samples)
	for i := range out {
		out[i] = make([]int, L)
		out[i][0] = bos
	}
	d, err := newDecoder(m, batch, L)
	if err != nil {
		return nil, err
	}
	vocab := m.VocabSize()
	total := opt.Samples * (L - 1)
	done := 0
	for w0 := 0; w0 < opt.Samples; w0 += batch {
		nb := min(batch, opt.Samples-w0)
		rngs := make([]*rand.Rand, nb)
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(opt.Seed^seedSample, uint64(w0+i)))
		}
		toks := make([]int, nb)
		for pos := 0; pos < L-1; pos++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for i := range toks {
				toks[i] = out[w0+i][pos]
			}
			logits := d.step(toks, pos)
			parallel.For(nb, func(_, i int) {
				out[w0+i][pos+1] = sampleToken(logits[i*vocab:(i+1)*vocab], temp, opt.TopK, rngs[i])
			})
			done += nb
			if opt.Progress != nil {
				opt.Progress(done, total)
			}
		}
	}
	return out, nil
}

// sampleToken draws a token from softmax(logits/temp), restricted to the topK largest
// logits when topK > 0, using one uniform number from rng.
var expBufs = sync.Pool{New: func() any { return new([]float64) }}

func sampleToken(logits []float32, temp float64, topK int, rng *rand.Rand) int {
	cut := float32(math.Inf(-1))
	if topK > 0 && topK < len(logits) {
		s := slices.Clone(logits)
		slices.Sort(s)
		cut = s[len(s)-topK]
	}
	mx := float32(math.Inf(-1))
	for _, v := range logits {
		mx = max(mx, v)
	}
	// Each term is computed once and kept, so the scan below subtracts exactly the numbers
	// that were summed (and pays for one exp per token, not two).
	ep := expBufs.Get().(*[]float64)
	e := slices.Grow((*ep)[:0], len(logits))[:len(logits)]
	defer func() { *ep = e; expBufs.Put(ep) }()
	var sum float64
	for i, v := range logits {
		e[i] = 0
		if v >= cut {
			e[i] = math.Exp((float64(v) - float64(mx)) / temp)
			sum += e[i]
		}
	}
	u := rng.Float64() * sum
	last := 0
	for i, v := range logits {
		if v < cut {
			continue
		}
		last = i
		u -= e[i]
		if u < 0 {
			return i
		}
	}
	return last // rounding left u ≥ 0 after the last term
}

// decoder runs a model one position at a time for a batch of windows, keeping every layer's
// keys and values.
type decoder struct {
	m         *model.Model
	cfg       *hf.Config
	n, L      int
	kc, vc    [][]float32 // per layer [n, L, kvdim]
	cos, sin  []float32   // [L, headDim/2]
	h, xn     []float32
	q, k, v   []float32
	att, o    []float32
	g, u      []float32
	logits    []float32
	scoreBufs sync.Pool
}

func newDecoder(m *model.Model, n, L int) (*decoder, error) {
	cfg := &m.Config
	cos, sin, err := model.RopeTables(cfg.Rope, cfg.HeadDim, L)
	if err != nil {
		return nil, err
	}
	if len(m.Layers) == 0 {
		return nil, errors.New("calib: model has no layers")
	}
	hid, hd := cfg.HiddenSize, cfg.HeadDim
	qdim, kvdim := cfg.NumHeads*hd, cfg.NumKVHeads*hd
	inter := m.Layers[0].Gate.Out()
	d := &decoder{
		m: m, cfg: cfg, n: n, L: L,
		h: make([]float32, n*hid), xn: make([]float32, n*hid),
		q: make([]float32, n*qdim), k: make([]float32, n*kvdim), v: make([]float32, n*kvdim),
		att: make([]float32, n*qdim), o: make([]float32, n*hid),
		g: make([]float32, n*inter), u: make([]float32, n*inter),
		logits: make([]float32, n*m.VocabSize()),
	}
	d.kc = make([][]float32, len(m.Layers))
	d.vc = make([][]float32, len(m.Layers))
	for i := range d.kc {
		d.kc[i] = make([]float32, n*L*kvdim)
		d.vc[i] = make([]float32, n*L*kvdim)
	}
	d.cos, d.sin = cos, sin
	group := cfg.NumHeads / cfg.NumKVHeads
	d.scoreBufs.New = func() any { s := make([]float32, group*L); return &s }
	return d, nil
}

// step runs tokens (one per window of the batch, len ≤ n) at position pos and returns their
// logits [len(tokens), vocab], valid until the next step.
func (d *decoder) step(tokens []int, pos int) []float32 {
	cfg, m := d.cfg, d.m
	nb := len(tokens)
	hid, hd := cfg.HiddenSize, cfg.HeadDim
	nh, nkv := cfg.NumHeads, cfg.NumKVHeads
	qdim, kvdim := nh*hd, nkv*hd
	h := d.h[:nb*hid]
	for i, t := range tokens {
		copy(h[i*hid:(i+1)*hid], m.Embedding[t*hid:(t+1)*hid])
	}
	xn := d.xn[:nb*hid]
	for li, l := range m.Layers {
		inter := l.Gate.Out()
		model.RMSNorm(xn, h, l.AttnNorm, nb, cfg.RMSNormEps)
		q, k, v := d.q[:nb*qdim], d.k[:nb*kvdim], d.v[:nb*kvdim]
		l.Q.Forward(q, xn, nb)
		l.K.Forward(k, xn, nb)
		l.V.Forward(v, xn, nb)
		d.rope(q, nb, nh, pos)
		d.rope(k, nb, nkv, pos)
		kc, vc := d.kc[li], d.vc[li]
		for i := range nb {
			off := (i*d.L + pos) * kvdim
			copy(kc[off:off+kvdim], k[i*kvdim:(i+1)*kvdim])
			copy(vc[off:off+kvdim], v[i*kvdim:(i+1)*kvdim])
		}
		att := d.att[:nb*qdim]
		d.attend(att, q, kc, vc, nb, pos)
		o := d.o[:nb*hid]
		l.O.Forward(o, att, nb)
		add(h, o)
		model.RMSNorm(xn, h, l.MLPNorm, nb, cfg.RMSNormEps)
		g, u := d.g[:nb*inter], d.u[:nb*inter]
		l.Gate.Forward(g, xn, nb)
		l.Up.Forward(u, xn, nb)
		for i, x := range g {
			g[i] = x / (1 + model.Exp32(-x)) * u[i]
		}
		l.Down.Forward(o, g, nb)
		add(h, o)
	}
	m.Norm(h, nb)
	logits := d.logits[:nb*m.VocabSize()]
	m.LMHead.Forward(logits, h, nb)
	return logits
}

func add(h, d []float32) {
	for i := range h {
		h[i] += d[i]
	}
}

// rope rotates every head of x [nb, heads·headDim] by position pos (rotate-half convention).
func (d *decoder) rope(x []float32, nb, heads, pos int) {
	hd := d.cfg.HeadDim
	half := hd / 2
	c, s := d.cos[pos*half:(pos+1)*half], d.sin[pos*half:(pos+1)*half]
	for r := range nb * heads {
		v := x[r*hd : (r+1)*hd]
		x1, x2 := v[:half], v[half:]
		// float32()/float64() around a product: the compiler may not fuse it into an FMA (arm64,
		// GOAMD64=v3), so every build rounds as amd64 v1 does (docs/determinism.md, Compiler fusion).
		for i := range half {
			a, b := x1[i], x2[i]
			x1[i] = float32(a*c[i]) - float32(b*s[i])
			x2[i] = float32(b*c[i]) + float32(a*s[i])
		}
	}
}

// attend computes, for each window and query head, softmax(q·kᵀ/√hd)·v over the cached
// positions 0..pos (the last SlidingWindow of them when the model has a window).
func (d *decoder) attend(out, q, kc, vc []float32, nb, pos int) {
	cfg := d.cfg
	hd, nh, nkv := cfg.HeadDim, cfg.NumHeads, cfg.NumKVHeads
	qdim, kvdim := nh*hd, nkv*hd
	group := nh / nkv
	scale := float32(1 / math.Sqrt(float64(hd)))
	lo := 0
	if w := cfg.SlidingWindow; w > 0 {
		lo = max(0, pos-w+1)
	}
	n := pos + 1 - lo
	// Per window and KV head, the group query heads that share it are contiguous in q, so
	// scores and the weighted sum are two small matrix products over the cache rows lo..pos
	// (row stride kvdim): Q[group×hd]·Kᵀ and P[group×n]·V. Going through gemm rather than
	// scalar dot products makes sampling several times faster.
	parallel.For(nb*nkv, func(_, task int) {
		i, kvh := task/nkv, task%nkv
		sp := d.scoreBufs.Get().(*[]float32)
		s := (*sp)[:group*n]
		base := i*d.L*kvdim + lo*kvdim + kvh*hd
		qm := q[i*qdim+kvh*group*hd:]
		gemm.Sgemm(false, true, group, n, hd, scale, qm, hd, kc[base:], kvdim, 0, s, n)
		for g := 0; g < group; g++ {
			row := s[g*n : (g+1)*n]
			mx := row[0]
			for _, x := range row {
				mx = max(mx, x)
			}
			inv := float32(1 / model.ExpSum(row, row, mx))
			for t := range row {
				row[t] *= inv
			}
		}
		gemm.Sgemm(false, false, group, hd, n, 1, s, n, vc[base:], kvdim, 0, out[i*qdim+kvh*group*hd:], hd)
		d.scoreBufs.Put(sp)
	})
}
