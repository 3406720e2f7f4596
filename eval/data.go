// Package eval measures language-model quality on text: perplexity and the KL divergence of
// one model's next-token distributions from a reference model's, with the windowing protocol
// of the project's golden references (see Perplexity).
package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
)

// Formats lists the formats LoadText reads.
var Formats = []string{"text", "jsonl"}

// LoadText reads an evaluation text. Format "text" returns the file's bytes as they are;
// "jsonl" reads one JSON object per line and joins their "text" fields with "\n\n", which is
// how the C4 evaluation text was made from its JSON lines (blank lines are skipped).
func LoadText(path, format string) (string, error) {
	switch format {
	case "text":
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("eval: %w", err)
		}
		return string(b), nil
	case "jsonl":
		return loadJSONL(path)
	}
	return "", fmt.Errorf("eval: unknown data format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

func loadJSONL(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	var docs []string
	r := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var doc struct {
				Text *string `json:"text"`
			}
			if jerr := json.Unmarshal(b, &doc); jerr != nil {
				return "", fmt.Errorf("eval: %s:%d: %v", path, line, jerr)
			}
			if doc.Text == nil {
				return "", fmt.Errorf("eval: %s:%d: object has no \"text\" string field", path, line)
			}
			docs = append(docs, *doc.Text)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("eval: %s: %w", path, err)
		}
	}
	if len(docs) == 0 {
		return "", fmt.Errorf("eval: %s holds no JSON lines", path)
	}
	return strings.Join(docs, "\n\n"), nil
}

// BOS returns the token that starts every evaluation stream: the tokenizer's BOS token when
// it has one, else the config's bos_token_id. Models with neither cannot follow the
// protocol, which scores every token given at least the BOS.
func BOS(tok *tokenizer.Tokenizer, cfg hf.Config) (int, error) {
	if tok != nil {
		if id, ok := tok.BOS(); ok {
			return id, nil
		}
	}
	if cfg.BOSTokenID >= 0 {
		return cfg.BOSTokenID, nil
	}
	return 0, errors.New("eval: the model has no BOS token (neither the tokenizer nor config.json names one)")
}

// Stream returns the evaluation token stream: [bos] followed by text's tokens encoded
// without special tokens.
func Stream(tok *tokenizer.Tokenizer, text string, bos int) []int {
	ids := tok.Encode(text, false)
	s := make([]int, 0, len(ids)+1)
	s = append(s, bos)
	return append(s, ids...)
}

// Windows cuts stream into its non-overlapping windows of seqLen tokens, dropping the
// remainder. The windows share stream's memory.
func Windows(stream []int, seqLen int) ([][]int, error) {
	if seqLen < 2 {
		return nil, fmt.Errorf("eval: sequence length %d is too short: a window scores tokens 1..L-1", seqLen)
	}
	n := len(stream) / seqLen
	if n == 0 {
		return nil, fmt.Errorf("eval: data has %d tokens; one window needs %d", len(stream), seqLen)
	}
	w := make([][]int, n)
	for i := range w {
		w[i] = stream[i*seqLen : (i+1)*seqLen : (i+1)*seqLen]
	}
	return w, nil
}
