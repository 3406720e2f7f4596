// Package corpus loads the text files that evaluation and calibration read and cuts token
// streams into windows: the part of the evaluation protocol that both eval and calib need,
// below both of them.
//
// Its errors keep the "eval:" prefix they had when this code lived in package eval, so the
// messages users see did not change with the move.
package corpus

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
//
// The file must be a regular file of at most MaxTextBytes (CheckTextFile): a device such as
// /dev/zero or /dev/urandom, or a pipe, would otherwise be read without end.
func LoadText(path, format string) (string, error) {
	switch format {
	case "text":
		f, err := openText(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, MaxTextBytes+1))
		if err != nil {
			return "", fmt.Errorf("eval: %s: %w", path, err)
		}
		if int64(len(b)) > MaxTextBytes {
			return "", fmt.Errorf("eval: %s: %w", path, ErrTextTooLarge)
		}
		return string(b), nil
	case "jsonl":
		return loadJSONL(path)
	}
	return "", fmt.Errorf("eval: unknown data format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// MaxTextBytes bounds an evaluation or calibration text file: 1 GiB, several hundred times
// WikiText-2's test split, and more than any window count a CPU evaluation gets through.
const MaxTextBytes = 1 << 30

// ErrTextTooLarge is returned for a text file beyond MaxTextBytes.
var ErrTextTooLarge = errors.New("larger than the 1 GiB limit on text files")

// CheckTextFile checks, without reading it, that path is a regular file (symbolic links
// followed) of at most MaxTextBytes; commands call it before the heavy work.
func CheckTextFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return checkTextInfo(path, st)
}

func checkTextInfo(path string, st os.FileInfo) error {
	if st.IsDir() {
		return fmt.Errorf("eval: %s is a folder, not a text file", path)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("eval: %s is not a regular file (a device, pipe or socket has no end to read to); save the text to a file", path)
	}
	if st.Size() > MaxTextBytes {
		return fmt.Errorf("eval: %s is %d bytes, %w", path, st.Size(), ErrTextTooLarge)
	}
	return nil
}

// openText opens a text file after checking it (CheckTextFile) on the opened file itself.
func openText(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	st, err := f.Stat()
	if err == nil {
		err = checkTextInfo(path, st)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func loadJSONL(path string) (string, error) {
	f, err := openText(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var docs []string
	r := bufio.NewReaderSize(io.LimitReader(f, MaxTextBytes), 1<<20)
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
