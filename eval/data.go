// Package eval measures language-model quality on text: perplexity and the KL divergence of
// one model's next-token distributions from a reference model's, with the windowing protocol
// of the project's golden references (see Perplexity).
package eval

import (
	"github.com/odyssey-llm/odyssey/corpus"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
)

// The text loading and windowing of the evaluation protocol live in package corpus, which
// calib shares; eval keeps its names for them.

// Formats lists the formats LoadText reads.
var Formats = corpus.Formats

// LoadText reads an evaluation text (corpus.LoadText).
func LoadText(path, format string) (string, error) { return corpus.LoadText(path, format) }

// MaxTextBytes bounds an evaluation or calibration text file (corpus.MaxTextBytes).
const MaxTextBytes = corpus.MaxTextBytes

// ErrTextTooLarge is returned for a text file beyond MaxTextBytes (corpus.ErrTextTooLarge).
var ErrTextTooLarge = corpus.ErrTextTooLarge

// CheckTextFile checks, without reading it, that path is a regular file of at most
// MaxTextBytes (corpus.CheckTextFile).
func CheckTextFile(path string) error { return corpus.CheckTextFile(path) }

// BOS returns the token that starts every evaluation stream (corpus.BOS).
func BOS(tok *tokenizer.Tokenizer, cfg hf.Config) (int, error) { return corpus.BOS(tok, cfg) }

// Stream returns the evaluation token stream: [bos] followed by text's tokens (corpus.Stream).
func Stream(tok *tokenizer.Tokenizer, text string, bos int) []int {
	return corpus.Stream(tok, text, bos)
}

// Windows cuts stream into its non-overlapping windows of seqLen tokens (corpus.Windows).
func Windows(stream []int, seqLen int) ([][]int, error) { return corpus.Windows(stream, seqLen) }
