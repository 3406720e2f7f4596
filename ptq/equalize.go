package ptq

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// dense returns the float linear of kind in l. Run only hands it layers loaded by
// model.LoadLayer, whose linears are all Dense, so anything else is a programming error.
func dense(l *model.Layer, kind model.LinearKind) *model.Dense {
	d, ok := l.Linear(kind).(*model.Dense)
	if !ok {
		panic(fmt.Sprintf("ptq: layer %d %v is a %T, not a float model.Dense", l.Index, kind, l.Linear(kind)))
	}
	return d
}

// channelStat returns the per-channel statistic m_j of an input: max |x_j| or max − min.
func channelStat(s *calib.Stats, stat string) []float32 {
	if stat == StatAbsMax {
		return append([]float32(nil), s.AbsMax...)
	}
	m := make([]float32, s.In)
	for j := range m {
		m[j] = max(0, s.Max[j]-s.Min[j])
	}
	return m
}

// statRange returns max_j m_j/d_j of the statistic (d nil: no division), the input range
// that the activation policy reads.
func statRange(s *calib.Stats, stat string, d []float32) float32 {
	var r float32
	for j := range s.In {
		var m float32
		if stat == StatAbsMax {
			m = s.AbsMax[j]
		} else {
			m = max(0, s.Max[j]-s.Min[j])
		}
		if d != nil {
			m /= d[j]
		}
		r = max(r, m)
	}
	return r
}

// groupUnion maps a per-o_proj-input-channel statistic onto the channels of the v_proj
// output that produce them under grouped-query attention and back: each o channel gets the
// statistic of the union of the o channels its v channel feeds (for max |x|, the maximum;
// for the range, max of maxima − min of minima, which the maximum of ranges would
// underestimate).
func groupUnion(s *calib.Stats, stat string, cfg *hf.Config) []float32 {
	nh, nkv, hd := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
	per := nh / nkv
	hi := make([]float32, nkv*hd)
	lo := make([]float32, nkv*hd)
	am := make([]float32, nkv*hd)
	for j := range hi {
		hi[j], lo[j] = float32(math.Inf(-1)), float32(math.Inf(1))
	}
	for h := range nh {
		kv := h / per
		for d := range hd {
			o, v := h*hd+d, kv*hd+d
			hi[v] = max(hi[v], s.Max[o])
			lo[v] = min(lo[v], s.Min[o])
			am[v] = max(am[v], s.AbsMax[o])
		}
	}
	out := make([]float32, nh*hd)
	for h := range nh {
		kv := h / per
		for d := range hd {
			v := kv*hd + d
			if stat == StatAbsMax {
				out[h*hd+d] = am[v]
			} else {
				out[h*hd+d] = max(0, hi[v]-lo[v])
			}
		}
	}
	return out
}

// laeScales returns the LAE scales of the pair feeding input kind: prod divides the
// producer's output channels, cons multiplies the consumers' input columns. They are the
// same vector except for v→o under grouped-query attention, where prod has one entry per v
// channel and cons one per o_proj input channel (quant.VOScales).
func laeScales(s *calib.Stats, kind model.LinearKind, stat string, cfg *hf.Config) (prod, cons []float32, err error) {
	if kind == model.O {
		m := groupUnion(s, stat, cfg)
		if err := quant.CheckStat(m); err != nil {
			return nil, nil, err
		}
		prod, cons = quant.VOScales(m, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim)
		return prod, cons, nil
	}
	m := channelStat(s, stat)
	if err := quant.CheckStat(m); err != nil {
		return nil, nil, err
	}
	cons = quant.LAEScales(m)
	return cons, cons, nil
}

// consumers returns the linears that read input kind.
func consumers(kind model.LinearKind) []model.LinearKind { return kind.SharedInput() }

// smoothScales returns SmoothQuant's scales for the pair feeding input kind:
// s_j = max|X_j|^α / max|W_j|^(1−α), max|W_j| over every consumer's column j. Channels with
// a zero statistic on either side keep 1, and the scales are clamped to [1e−5, 1e5] so that
// folding them into fp16 producers stays in range. For v→o, a v channel's statistics are the
// maxima over the o columns it feeds.
func smoothScales(s *calib.Stats, l *model.Layer, kind model.LinearKind, alpha float64, cfg *hf.Config) (prod, cons []float32) {
	in := s.In
	wmax := make([]float32, in)
	for _, k := range consumers(kind) {
		d := dense(l, k)
		for o := range d.Out() {
			row := d.W[o*in : (o+1)*in]
			for j, v := range row {
				wmax[j] = max(wmax[j], abs32(v))
			}
		}
	}
	xmax := s.AbsMax
	if kind == model.O {
		xmax = quant.GQAMaxOverGroup(s.AbsMax, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim)
		wmax = quant.GQAMaxOverGroup(wmax, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim)
	}
	sc := make([]float32, len(xmax))
	for j := range sc {
		x, w := float64(xmax[j]), float64(wmax[j])
		if x == 0 || w == 0 {
			sc[j] = 1
			continue
		}
		v := math.Pow(x, alpha) / math.Pow(w, 1-alpha)
		sc[j] = float32(min(max(v, 1e-5), 1e5))
	}
	if kind != model.O {
		return sc, sc
	}
	return sc, expandVO(sc, cfg)
}

// expandVO maps per-v-channel scales onto the o_proj input channels they feed.
func expandVO(v []float32, cfg *hf.Config) []float32 {
	nh, nkv, hd := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
	per := nh / nkv
	o := make([]float32, nh*hd)
	for h := range nh {
		copy(o[h*hd:(h+1)*hd], v[(h/per)*hd:(h/per+1)*hd])
	}
	return o
}

// foldPair divides the producer of input kind by prod and multiplies its consumers' columns by
// cons, in place. The float function of the layer is unchanged up to rounding.
func foldPair(l *model.Layer, kind model.LinearKind, prod, cons []float32) {
	producerRows := func(d *model.Dense) {
		quant.FoldIntoProducerRows(d.W, d.Out(), d.In(), prod)
		if d.B != nil {
			quant.FoldIntoProducerRows(d.B, d.Out(), 1, prod)
		}
	}
	switch kind {
	case model.Q:
		quant.FoldIntoProducerRows(l.AttnNorm, len(l.AttnNorm), 1, prod)
	case model.Gate:
		quant.FoldIntoProducerRows(l.MLPNorm, len(l.MLPNorm), 1, prod)
	case model.O:
		producerRows(dense(l, model.V))
	case model.Down:
		producerRows(dense(l, model.Up))
	default:
		panic(fmt.Sprintf("ptq: foldPair: %v does not name a layer input", kind))
	}
	for _, k := range consumers(kind) {
		d := dense(l, k)
		quant.FoldIntoConsumerColumns(d.W, d.Out(), d.In(), cons)
	}
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
