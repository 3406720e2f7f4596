package model

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// Layer is one decoder layer in float32: pre-norm grouped-query self-attention and a pre-norm
// SwiGLU MLP, each added to the residual stream.
type Layer struct {
	// Index is the layer's position in the model, passed to Context.Observe.
	Index int
	// Config is the model's configuration; it must have passed CheckConfig.
	Config *hf.Config

	AttnNorm []float32 // input_layernorm.weight [hidden]
	MLPNorm  []float32 // post_attention_layernorm.weight [hidden]

	Q, K, V, O     Linear
	Gate, Up, Down Linear
}

// Linear returns the layer's linear of the given kind. It panics for LMHead or an unknown
// kind.
func (l *Layer) Linear(kind LinearKind) Linear {
	return *l.slot(kind)
}

// SetLinear replaces the layer's linear of the given kind, for instance by a quantized
// implementation. It panics when lin's shape differs from the one it replaces.
func (l *Layer) SetLinear(kind LinearKind, lin Linear) {
	p := l.slot(kind)
	if old := *p; old != nil && (old.In() != lin.In() || old.Out() != lin.Out()) {
		panic(fmt.Sprintf("model: layer %d %v is %d→%d, replacement is %d→%d", l.Index, kind, old.In(), old.Out(), lin.In(), lin.Out()))
	}
	*p = lin
}

func (l *Layer) slot(kind LinearKind) *Linear {
	switch kind {
	case Q:
		return &l.Q
	case K:
		return &l.K
	case V:
		return &l.V
	case O:
		return &l.O
	case Gate:
		return &l.Gate
	case Up:
		return &l.Up
	case Down:
		return &l.Down
	}
	panic(fmt.Sprintf("model: %v is not a decoder-layer linear", kind))
}

// attnBlock is the number of query rows per attention task: blocks let the causal mask skip
// the keys after a block's last row (about half of Q·Kᵀ) while keeping gemm calls large.
const attnBlock = 64

// Forward runs the layer on the residual stream h [batch·seqLen, hidden], in place. The
// batch holds independent windows of seqLen tokens, each starting at position 0. ctx
// provides scratch memory and the observer; nil means a fresh Context.
func (l *Layer) Forward(h []float32, batch, seqLen int, ctx *Context) {
	cfg := l.Config
	if cfg == nil {
		panic("model: Layer.Config is nil")
	}
	if ctx == nil {
		ctx = new(Context)
	}
	hid := cfg.HiddenSize
	rows := batch * seqLen
	if len(h) != rows*hid {
		panic(fmt.Sprintf("model: Layer.Forward: h has %d elements, want %d×%d×%d", len(h), batch, seqLen, hid))
	}
	nh, nkv, hd := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
	qdim, kvdim := nh*hd, nkv*hd
	inter := l.Gate.Out()

	// Attention.
	xn := ctx.buf(bufNorm, rows*hid)
	RMSNorm(xn, h, l.AttnNorm, rows, cfg.RMSNormEps)
	ctx.observe(l.Index, Q, xn, rows, hid)
	q := ctx.buf(bufQ, rows*qdim)
	k := ctx.buf(bufK, rows*kvdim)
	v := ctx.buf(bufV, rows*kvdim)
	l.Q.Forward(q, xn, rows)
	l.K.Forward(k, xn, rows)
	l.V.Forward(v, xn, rows)
	ctx.observeOutput(l.Index, Q, q, rows, qdim)
	ctx.observeOutput(l.Index, K, k, rows, kvdim)
	ctx.observeOutput(l.Index, V, v, rows, kvdim)
	rt := ctx.rope(cfg, seqLen)
	applyRope(q, rows, seqLen, nh, hd, rt)
	applyRope(k, rows, seqLen, nkv, hd, rt)
	att := ctx.buf(bufAttn, rows*qdim)
	attention(att, q, k, v, batch, seqLen, nh, nkv, hd, cfg.SlidingWindow, ctx)
	ctx.observe(l.Index, O, att, rows, qdim)
	out := ctx.buf(bufOut, rows*hid)
	l.O.Forward(out, att, rows)
	ctx.observeOutput(l.Index, O, out, rows, hid)
	addInPlace(h, out)

	// MLP.
	RMSNorm(xn, h, l.MLPNorm, rows, cfg.RMSNormEps)
	ctx.observe(l.Index, Gate, xn, rows, hid)
	g := ctx.buf(bufGate, rows*inter)
	u := ctx.buf(bufUp, rows*inter)
	l.Gate.Forward(g, xn, rows)
	l.Up.Forward(u, xn, rows)
	ctx.observeOutput(l.Index, Gate, g, rows, inter)
	ctx.observeOutput(l.Index, Up, u, rows, inter)
	swiglu(g, u)
	ctx.observe(l.Index, Down, g, rows, inter)
	l.Down.Forward(out, g, rows)
	ctx.observeOutput(l.Index, Down, out, rows, hid)
	addInPlace(h, out)
}

func addInPlace(h, d []float32) {
	parallel.Ranges(len(h), 8192, func(lo, hi int) {
		hs, ds := h[lo:hi], d[lo:hi]
		for i := range hs {
			hs[i] += ds[i]
		}
	})
}

// attention computes causal grouped-query attention for every window and head:
// out = softmax(q·kᵀ/√hd + mask)·v, where query head h reads key/value head h/(nh/nkv) and
// the mask hides later positions and, with a sliding window w > 0, positions at distance ≥ w
// (Mistral keeps the w most recent positions, the current one included).
func attention(out, q, k, v []float32, batch, seqLen, nh, nkv, hd, window int, ctx *Context) {
	qs, kvs := nh*hd, nkv*hd
	group := nh / nkv
	blocks := (seqLen + attnBlock - 1) / attnBlock
	scale := float32(1 / math.Sqrt(float64(hd)))
	ntask := batch * nh * blocks
	scratch := ctx.scratch(attnBlock * seqLen)
	parallel.For(ntask, func(worker, task int) {
		blk := task % blocks
		head := (task / blocks) % nh
		b := task / (blocks * nh)
		kvh := head / group
		r0 := blk * attnBlock
		r1 := min(r0+attnBlock, seqLen)
		k0 := 0
		if window > 0 {
			k0 = max(0, r0-window+1)
		}
		m, n := r1-r0, r1-k0
		s := scratch[worker][:m*n]
		base := b * seqLen
		gemm.Sgemm(false, true, m, n, hd, scale,
			q[(base+r0)*qs+head*hd:], qs,
			k[(base+k0)*kvs+kvh*hd:], kvs,
			0, s, n)
		for i := 0; i < m; i++ {
			pos := r0 + i
			row := s[i*n : (i+1)*n]
			lo := 0 // first visible key, relative to k0
			if window > 0 {
				lo = max(0, pos-window+1) - k0
			}
			hi := pos - k0 + 1 // one past the last visible key
			softmaxInPlace(row[lo:hi])
			clear(row[:lo])
			clear(row[hi:])
		}
		gemm.Sgemm(false, false, m, hd, n, 1,
			s, n,
			v[(base+k0)*kvs+kvh*hd:], kvs,
			0, out[(base+r0)*qs+head*hd:], qs)
	})
}
