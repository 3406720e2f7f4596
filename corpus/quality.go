package corpus

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/odyssey-llm/odyssey/formats/tokenizer"
)

// Quality describes what a tokenizer made of a text, to catch calibration data that is not
// text at all (random bytes, NULs, a binary file renamed .txt). Such data tokenizes without
// error: a byte-level BPE covers every byte and a SentencePiece model falls back to byte
// tokens, so the damage only shows in the statistics, and calibration on it quietly produces
// scales for inputs the model will never see.
type Quality struct {
	Tokens int // tokens looked at (BOS excluded)
	Bytes  int // bytes they decode to
	// ByteTokens counts byte-fallback tokens ("<0x1F>") and the tokenizer's unknown token.
	ByteTokens int
	// Garbage counts decoded bytes that are invalid UTF-8 or control characters other than
	// tab, newline and carriage return (NUL included).
	Garbage int
}

// Thresholds, with a wide margin both ways: English prose runs at 3.5–4.5 bytes per token with
// no byte tokens and no control characters; random bytes give about 1 byte per token and
// 25–100% garbage, NULs 100%.
const (
	maxByteTokenFrac = 0.05
	maxGarbageFrac   = 0.01
	minBytesPerToken = 1.5
	minQualityTokens = 256 // below this the rates are too noisy to judge
)

// MeasureQuality decodes the windows (token ids, a BOS first) with tok and counts what
// Quality describes.
func MeasureQuality(tok *tokenizer.Tokenizer, windows [][]int, bos int) Quality {
	var q Quality
	unk := -1
	if id, ok := tok.TokenToID("<unk>"); ok {
		unk = id
	}
	for _, w := range windows {
		ids := w
		if len(ids) > 0 && ids[0] == bos {
			ids = ids[1:]
		}
		for _, id := range ids {
			if id == unk {
				q.ByteTokens++
				continue
			}
			if s, ok := tok.IDToToken(id); ok && isByteFallback(s) {
				q.ByteTokens++
			}
		}
		q.Tokens += len(ids)
		text := tok.Decode(ids, true)
		q.Bytes += len(text)
		for i := 0; i < len(text); {
			r, n := utf8.DecodeRuneInString(text[i:])
			if r == utf8.RuneError && n <= 1 || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
				q.Garbage += n
			}
			i += n
		}
	}
	return q
}

// isByteFallback reports a SentencePiece byte token such as "<0x0A>".
func isByteFallback(s string) bool {
	return len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>'
}

// Problems returns why the text does not look like text, or nil. Fewer than
// minQualityTokens tokens are not judged.
func (q Quality) Problems() []string {
	if q.Tokens < minQualityTokens {
		return nil
	}
	var p []string
	if f := float64(q.ByteTokens) / float64(q.Tokens); f > maxByteTokenFrac {
		p = append(p, fmt.Sprintf("%.0f%% of its tokens are byte-fallback or unknown tokens (text has under %.0f%%)", 100*f, 100*maxByteTokenFrac))
	}
	if q.Bytes > 0 {
		if f := float64(q.Garbage) / float64(q.Bytes); f > maxGarbageFrac {
			p = append(p, fmt.Sprintf("%.0f%% of its bytes are control characters or invalid UTF-8 (text has under %.0f%%)", 100*f, 100*maxGarbageFrac))
		}
	}
	if bpt := float64(q.Bytes) / float64(q.Tokens); bpt < minBytesPerToken {
		p = append(p, fmt.Sprintf("its tokens hold %.2f bytes each on average (text holds 3–5)", bpt))
	}
	return p
}
