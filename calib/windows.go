package calib

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/odyssey-llm/odyssey/corpus"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/model"
)

// ErrTextTooShort is wrapped by the error TextWindows returns when the text cannot fill the
// requested windows.
var ErrTextTooShort = errors.New("calibration text shorter than requested")

// seedStream separates the windows' random stream from other users of the same seed.
const seedStream = 0x6f64797373657921 // "odyssey!"

// TextWindows draws n windows of seqLen tokens from a tokenized text (without BOS): each
// window is bos followed by seqLen−1 consecutive tokens. The tokens are cut into disjoint
// slots of seqLen−1 tokens starting at a random offset below seqLen−1, and n distinct slots
// are picked at random, so windows never overlap and the same seed gives the same windows.
// It fails, wrapping ErrTextTooShort, when tokens hold fewer than n·(seqLen−1) tokens.
func TextWindows(tokens []int, bos, n, seqLen int, seed uint64) ([][]int, error) {
	if n <= 0 || seqLen < minCalibrationSeqLen {
		return nil, fmt.Errorf("calib: %d windows of %d tokens: need at least one window of two tokens", n, seqLen)
	}
	body := seqLen - 1
	need := n * body
	if len(tokens) < need {
		return nil, fmt.Errorf("calib: %w: the text has %d tokens, %d windows of %d tokens (BOS + %d) need %d",
			ErrTextTooShort, len(tokens), n, seqLen, body, need)
	}
	rng := rand.New(rand.NewPCG(seed, seedStream))
	// The offset spreads the slot boundaries over the text's spare tokens, which would
	// otherwise always be the tail.
	spare := len(tokens) - need
	off := rng.IntN(min(spare, body-1) + 1)
	slots := (len(tokens) - off) / body
	perm := rng.Perm(slots)
	w := make([][]int, n)
	for i := range w {
		s := off + perm[i]*body
		win := make([]int, seqLen)
		win[0] = bos
		copy(win[1:], tokens[s:s+body])
		w[i] = win
	}
	return w, nil
}

// LoadWindows returns the calibration windows that opt describes for the model hm with
// tokenizer tok: read from the file opt.Source and tokenized, or sampled from the model when
// opt.Source is "self" (which loads the whole model in float32 to decode). tok may be nil for
// "self" when the config names the BOS token. progress, when non-nil, reports sampling
// progress (tokens decoded per window so far, of L).
func LoadWindows(ctx context.Context, hm *hf.Model, tok *tokenizer.Tokenizer, opt Options, progress func(done, total int)) ([][]int, error) {
	opt, err := opt.Resolved()
	if err != nil {
		return nil, err
	}
	if max := hm.Config.MaxPositionEmbeddings; max > 0 && opt.SeqLen > max {
		return nil, fmt.Errorf("calib: window length %d exceeds the model's max_position_embeddings %d", opt.SeqLen, max)
	}
	bos, err := corpus.BOS(tok, hm.Config)
	if err != nil {
		return nil, fmt.Errorf("calib: %w", err)
	}
	if opt.Source == SourceSelf {
		m, err := model.Load(hm)
		if err != nil {
			return nil, err
		}
		return SampleWindows(ctx, m, bos, SampleOptions{
			Samples: opt.Samples, SeqLen: opt.SeqLen, Seed: opt.Seed,
			Temperature: opt.Temperature, TopK: opt.TopK, Progress: progress,
		})
	}
	if tok == nil {
		return nil, errors.New("calib: calibrating from text needs the model's tokenizer")
	}
	text, err := corpus.LoadText(opt.Source, opt.Format)
	if err != nil {
		return nil, fmt.Errorf("calib: %w", err)
	}
	w, err := TextWindows(tok.Encode(text, false), bos, opt.Samples, opt.SeqLen, opt.Seed)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, opt.Source)
	}
	return w, nil
}
