package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/model"
)

// Options selects the windows of an evaluation and how they are run.
type Options struct {
	// SeqLen is the window length L in tokens, BOS included.
	SeqLen int
	// MaxWindows evaluates only the first MaxWindows windows; 0 means all.
	MaxWindows int
	// BatchWindows is the number of windows per forward pass; 0 picks enough windows for
	// about 1024 rows, which keeps the matrix multiplications efficient.
	BatchWindows int
	// Force allows a SeqLen beyond the model's max_position_embeddings, where its positions
	// were never trained and the numbers mean little.
	Force bool
	// Progress, when non-nil, is called after each batch with the windows done so far, the
	// number to do and the throughput so far in tokens (window positions) per second.
	Progress func(done, total int, tokensPerSec float64)
}

// plan validates the options against m and the stream and returns the windows to evaluate,
// the total number of windows in the data and the batch size.
func (o *Options) plan(m *model.Model, stream []int) (windows [][]int, total, batch int, err error) {
	if o.SeqLen > m.Config.MaxPositionEmbeddings && !o.Force {
		return nil, 0, 0, fmt.Errorf("eval: sequence length %d exceeds the model's max_position_embeddings %d (use Force to run anyway)", o.SeqLen, m.Config.MaxPositionEmbeddings)
	}
	if o.BatchWindows < 0 {
		return nil, 0, 0, fmt.Errorf("eval: BatchWindows %d must not be negative", o.BatchWindows)
	}
	windows, total, err = ScoredWindows(stream, *o)
	if err != nil {
		return nil, 0, 0, err
	}
	batch = o.BatchWindows
	if batch == 0 {
		batch = max(1, 1024/o.SeqLen)
	}
	return windows, total, batch, nil
}

// ScoredWindows returns the windows Perplexity and KL score on stream with o (SeqLen and
// MaxWindows) and the number of windows the data holds. The GPU executor is handed exactly
// these (odyssey verify ppl), so that its perplexity is comparable with the CPU's.
func ScoredWindows(stream []int, o Options) (windows [][]int, total int, err error) {
	if o.MaxWindows < 0 {
		return nil, 0, fmt.Errorf("eval: MaxWindows %d must not be negative", o.MaxWindows)
	}
	windows, err = Windows(stream, o.SeqLen)
	if err != nil {
		return nil, 0, err
	}
	total = len(windows)
	if o.MaxWindows > 0 && o.MaxWindows < len(windows) {
		windows = windows[:o.MaxWindows]
	}
	return windows, total, nil
}

// PPLResult is a perplexity measurement, shaped like the golden references' entries.
type PPLResult struct {
	PPL float64 `json:"ppl"`
	// Windows is the number of windows evaluated; TotalWindows the number the data holds.
	Windows      int `json:"windows"`
	TotalWindows int `json:"total_windows"`
	SeqLen       int `json:"seq_len"`
	// StreamTokens is the length of the token stream, BOS included.
	StreamTokens int `json:"stream_tokens"`
	// TokensScored is Windows·(SeqLen−1).
	TokensScored int `json:"tokens_scored"`
	// NLLPerWindow is each window's summed negative log-likelihood in nats.
	NLLPerWindow []float64 `json:"nll_per_window"`
	// Seconds is the wall time of the forward passes; TokensPerSecond counts every window
	// position run (Windows·SeqLen) per second of it.
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
}

// Perplexity measures m on a token stream (see Stream) with the protocol of the project's
// golden references: stream is cut into non-overlapping windows of SeqLen tokens (the
// remainder dropped), each window runs alone from position 0, and in each window tokens
// 1..L−1 are scored given their prefix: the logits at position t−1 against token t. The
// perplexity is exp(total NLL / tokens scored), with NLL accumulated in float64. A model that
// computes NaN or Inf is an error, *NonFiniteError, naming the first layer that does.
func Perplexity(ctx context.Context, m *model.Model, stream []int, opt Options) (*PPLResult, error) {
	windows, total, batch, err := opt.plan(m, stream)
	if err != nil {
		return nil, err
	}
	res := &PPLResult{
		Windows: len(windows), TotalWindows: total, SeqLen: opt.SeqLen, StreamTokens: len(stream),
		TokensScored: len(windows) * (opt.SeqLen - 1),
		NLLPerWindow: make([]float64, 0, len(windows)),
	}
	mctx := new(model.Context)
	start := time.Now()
	for b := 0; b < len(windows); b += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wins := windows[b:min(b+batch, len(windows))]
		nll, err := WindowNLL(m, wins, mctx)
		if err != nil {
			return nil, err
		}
		for _, v := range nll {
			if !finite64(v) {
				return nil, nonFinite("the model", m, wins, b, func(i int) bool { return !finite64(nll[i]) })
			}
		}
		res.NLLPerWindow = append(res.NLLPerWindow, nll...)
		if opt.Progress != nil {
			done := len(res.NLLPerWindow)
			opt.Progress(done, len(windows), float64(done*opt.SeqLen)/time.Since(start).Seconds())
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.TokensPerSecond = float64(len(windows)*opt.SeqLen) / res.Seconds
	var sum float64
	for _, v := range res.NLLPerWindow {
		sum += v
	}
	res.PPL = math.Exp(sum / float64(res.TokensScored))
	return res, nil
}

// WindowNLL runs a batch of equal-length windows and returns each window's summed negative
// log-likelihood of tokens 1..L−1 given their prefix. It never holds more logits than
// model.Model.EachLogits does. mctx may be nil.
func WindowNLL(m *model.Model, windows [][]int, mctx *model.Context) ([]float64, error) {
	if len(windows) == 0 {
		return nil, errors.New("eval: no windows")
	}
	h, err := m.Hidden(windows, mctx)
	if err != nil {
		return nil, err
	}
	L, vocab := len(windows[0]), m.VocabSize()
	nll := make([]float64, len(windows))
	var rowNLL []float64
	m.EachLogits(h, len(windows)*L, mctx, func(row0, n int, logits []float32) {
		rowNLL = resize(rowNLL, n)
		parallel.Ranges(n, 8, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				r := row0 + i
				w, p := r/L, r%L
				if p == L-1 {
					rowNLL[i] = 0 // the last position predicts past the window
					continue
				}
				row := logits[i*vocab : (i+1)*vocab]
				rowNLL[i] = model.LogSumExp(row) - float64(row[windows[w][p+1]])
			}
		})
		// Summed in row order, so results do not depend on the number of cores.
		for i, v := range rowNLL[:n] {
			nll[(row0+i)/L] += v
		}
	})
	return nll, nil
}

func resize(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}
