package eval

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/model"
)

// KLResult compares a model with a reference over the scored positions of the perplexity
// windows, as llama.cpp's KL-divergence mode does.
type KLResult struct {
	// MeanKL is the mean over scored positions of KL(P_ref ‖ P_model) of the next-token
	// distributions, in nats; KLStdErr is its standard error.
	MeanKL   float64 `json:"mean_kl"`
	KLStdErr float64 `json:"kl_stderr"`
	// Quantiles of the per-position KL (nearest rank).
	MaxKL    float64 `json:"max_kl"`
	P999KL   float64 `json:"p99_9_kl"`
	P99KL    float64 `json:"p99_kl"`
	P90KL    float64 `json:"p90_kl"`
	MedianKL float64 `json:"median_kl"`
	// Top1Agreement is the fraction of positions where both models' most likely token
	// (argmax of the logits) is the same.
	Top1Agreement float64 `json:"top1_agreement"`
	// RefPPL and PPL are the two models' perplexities on the same windows; LnPPLRatio is
	// ln(PPL/RefPPL).
	RefPPL     float64 `json:"ref_ppl"`
	PPL        float64 `json:"ppl"`
	LnPPLRatio float64 `json:"ln_ppl_ratio"`

	Windows         int       `json:"windows"`
	TotalWindows    int       `json:"total_windows"`
	SeqLen          int       `json:"seq_len"`
	StreamTokens    int       `json:"stream_tokens"`
	TokensScored    int       `json:"tokens_scored"`
	KLPerWindow     []float64 `json:"kl_per_window"` // mean KL of each window
	Seconds         float64   `json:"seconds"`
	TokensPerSecond float64   `json:"tokens_per_second"` // window positions of both models per second
}

// KL measures how far m's next-token distributions are from ref's (typically ref the
// full-precision model, m its quantized version) over the windows Perplexity would score.
// Both models must share the vocabulary. Memory stays bounded: logits are reduced chunk by
// chunk and only one float32 KL per scored position is kept, for the quantiles.
func KL(ctx context.Context, ref, m *model.Model, stream []int, opt Options) (*KLResult, error) {
	if ref.VocabSize() != m.VocabSize() {
		return nil, fmt.Errorf("eval: the models' vocabularies differ (%d and %d logits); KL divergence needs the same tokens", ref.VocabSize(), m.VocabSize())
	}
	windows, total, batch, err := opt.plan(ref, stream)
	if err != nil {
		return nil, err
	}
	if opt.SeqLen > m.Config.MaxPositionEmbeddings && !opt.Force {
		return nil, fmt.Errorf("eval: sequence length %d exceeds the model's max_position_embeddings %d (use Force to run anyway)", opt.SeqLen, m.Config.MaxPositionEmbeddings)
	}
	L, vocab := opt.SeqLen, m.VocabSize()
	res := &KLResult{
		Windows: len(windows), TotalWindows: total, SeqLen: L, StreamTokens: len(stream),
		TokensScored: len(windows) * (L - 1),
		KLPerWindow:  make([]float64, len(windows)),
	}
	kls := make([]float32, 0, res.TokensScored)
	var sumKL, sumKL2, nllRef, nll float64
	agree := 0
	refCtx, mCtx := new(model.Context), new(model.Context)
	var qbuf []float32
	type rowStat struct {
		kl, nllP, nllQ float64
		same           bool
	}
	var stats []rowStat
	start := time.Now()
	for b := 0; b < len(windows); b += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wins := windows[b:min(b+batch, len(windows))]
		hRef, err := ref.Hidden(wins, refCtx)
		if err != nil {
			return nil, err
		}
		h, err := m.Hidden(wins, mCtx)
		if err != nil {
			return nil, err
		}
		hid := m.LMHead.In()
		ref.EachLogits(hRef, len(wins)*L, refCtx, func(row0, n int, p []float32) {
			if cap(qbuf) < n*vocab {
				qbuf = make([]float32, n*vocab)
			}
			q := qbuf[:n*vocab]
			m.LMHead.Forward(q, h[row0*hid:(row0+n)*hid], n)
			if cap(stats) < n {
				stats = make([]rowStat, n)
			}
			stats = stats[:n]
			parallel.Ranges(n, 8, func(lo, hi int) {
				scratch := make([]float32, vocab)
				for i := lo; i < hi; i++ {
					r := row0 + i
					w, pos := r/L, r%L
					if pos == L-1 {
						continue
					}
					target := wins[w][pos+1]
					s := &stats[i]
					s.kl, s.same, s.nllP, s.nllQ = compareRow(p[i*vocab:(i+1)*vocab], q[i*vocab:(i+1)*vocab], target, scratch)
				}
			})
			for i, s := range stats {
				r := row0 + i
				if r%L == L-1 {
					continue
				}
				kls = append(kls, float32(s.kl))
				sumKL += s.kl
				sumKL2 += float64(s.kl * s.kl)
				nllRef += s.nllP
				nll += s.nllQ
				if s.same {
					agree++
				}
				res.KLPerWindow[b+r/L] += s.kl / float64(L-1)
			}
		})
		if !finite64(nllRef) {
			return nil, nonFinite("the reference", ref, wins, b, nil)
		}
		if !finite64(nll) {
			return nil, nonFinite("the model", m, wins, b, nil)
		}
		for i := range wins {
			if !finite64(res.KLPerWindow[b+i]) {
				return nil, nonFinite("the model", m, wins, b, func(j int) bool { return !finite64(res.KLPerWindow[b+j]) })
			}
		}
		if opt.Progress != nil {
			done := b + len(wins)
			opt.Progress(done, len(windows), float64(done*L)/time.Since(start).Seconds())
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.TokensPerSecond = float64(len(windows)*L) / res.Seconds
	n := float64(len(kls))
	res.MeanKL = sumKL / n
	if len(kls) > 1 {
		res.KLStdErr = math.Sqrt(max(0, sumKL2/n-float64(res.MeanKL*res.MeanKL)) / (n - 1))
	}
	slices.Sort(kls)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*n)) - 1
		return float64(kls[max(0, min(i, len(kls)-1))])
	}
	res.MaxKL = float64(kls[len(kls)-1])
	res.P999KL, res.P99KL, res.P90KL, res.MedianKL = rank(0.999), rank(0.99), rank(0.9), rank(0.5)
	res.Top1Agreement = float64(agree) / n
	res.RefPPL = math.Exp(nllRef / n)
	res.PPL = math.Exp(nll / n)
	res.LnPPLRatio = (nll - nllRef) / n
	return res, nil
}

// compareRow returns KL(P‖Q) for the distributions softmax(p) and softmax(q), whether their
// argmaxes agree, and both NLLs of target. It uses KL = Σ P·(p−q) − lse(p) + lse(q), which
// needs each exponential once; scratch holds e^(p−max p). KL is clamped at 0 against
// rounding.
func compareRow(p, q []float32, target int, scratch []float32) (kl float64, same bool, nllP, nllQ float64) {
	ap, aq := argmax(p), argmax(q)
	mp, mq := p[ap], q[aq]
	e := scratch[:len(p)]
	sp := model.ExpSum(e, p, mp)
	sq := model.ExpSum(nil, q, mq)
	var sd float64
	for i, ei := range e {
		sd += float64(float64(ei) * (float64(p[i]) - float64(q[i])))
	}
	lseP := float64(mp) + math.Log(sp)
	lseQ := float64(mq) + math.Log(sq)
	kl = max(0, sd/sp-lseP+lseQ)
	return kl, ap == aq, lseP - float64(p[target]), lseQ - float64(q[target])
}

// argmax returns the index of the first largest element.
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
