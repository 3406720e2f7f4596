package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/spf13/cobra"
)

type tokenizeOptions struct {
	tokenizer  string
	model      string
	asJSON     bool
	batch      bool
	decode     bool
	addSpecial bool
	skipSpec   bool
}

func newTokenizeCmd(g *globalOptions) *cobra.Command {
	o := &tokenizeOptions{}
	cmd := &cobra.Command{
		Use:   "tokenize (--tokenizer FILE | --model DIR)",
		Short: "Encode stdin text to token ids, or decode ids to text",
		Long: `Tokenize reads text on stdin and prints its token ids, exactly as Hugging Face tokenizers
would (no special tokens unless --add-special).

With --batch, stdin is a JSON array of strings and stdout a JSON array of id arrays.
With --decode, stdin holds ids (a JSON array, or numbers separated by white space) and stdout the
text; with --decode --batch, a JSON array of id arrays becomes a JSON array of strings.`,
		Example: `  echo "Hello world" | odyssey tokenize --model testdata/tiny-llama
  echo '["a b", "c"]' | odyssey tokenize --model testdata/tiny-llama --batch
  echo "0 9906 1917" | odyssey tokenize --model testdata/tiny-llama --decode`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenize(g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.tokenizer, "tokenizer", "", "path of a tokenizer.json (or .json.gz)")
	f.StringVar(&o.model, "model", "", "model folder whose tokenizer.json to use")
	f.BoolVar(&o.asJSON, "json", false, "print JSON (an id array, or for --decode a JSON string)")
	f.BoolVar(&o.batch, "batch", false, "stdin is a JSON array of strings (or of id arrays with --decode)")
	f.BoolVar(&o.decode, "decode", false, "decode ids to text instead of encoding")
	f.BoolVar(&o.addSpecial, "add-special", false, "add the special tokens of the post-processor (e.g. BOS)")
	f.BoolVar(&o.skipSpec, "skip-special", false, "with --decode, leave special tokens out of the text")
	cmd.MarkFlagsMutuallyExclusive("tokenizer", "model")
	return cmd
}

func (o *tokenizeOptions) tokenizerPath() (string, error) {
	switch {
	case o.tokenizer != "":
		return o.tokenizer, nil
	case o.model != "":
		p := filepath.Join(o.model, "tokenizer.json")
		if !fileExists(p) {
			return "", badInput(fmt.Errorf("model folder %s has no tokenizer.json", o.model))
		}
		return p, nil
	}
	return "", usageErrorf("tokenize needs --tokenizer FILE or --model DIR")
}

func runTokenize(g *globalOptions, o *tokenizeOptions) error {
	path, err := o.tokenizerPath()
	if err != nil {
		return err
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return badInput(err)
	}
	input, err := io.ReadAll(g.in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	switch {
	case o.decode && o.batch:
		var batch [][]int
		if err := json.Unmarshal(input, &batch); err != nil {
			return badInput(fmt.Errorf("--decode --batch: stdin must be a JSON array of id arrays: %v", err))
		}
		out := make([]string, len(batch))
		for i, ids := range batch {
			if err := checkIDs(tok, ids); err != nil {
				return badInput(fmt.Errorf("entry %d: %w", i, err))
			}
			out[i] = tok.Decode(ids, o.skipSpec)
		}
		return writeJSONCompact(g.out, out)
	case o.decode:
		ids, err := parseIDs(input)
		if err != nil {
			return badInput(err)
		}
		if err := checkIDs(tok, ids); err != nil {
			return badInput(err)
		}
		text := tok.Decode(ids, o.skipSpec)
		if o.asJSON {
			return writeJSONCompact(g.out, text)
		}
		_, err = io.WriteString(g.out, text)
		return err
	case o.batch:
		var batch []string
		if err := json.Unmarshal(input, &batch); err != nil {
			return badInput(fmt.Errorf("--batch: stdin must be a JSON array of strings: %v", err))
		}
		out := make([][]int, len(batch))
		for i, s := range batch {
			out[i] = nonNil(tok.Encode(s, o.addSpecial))
		}
		return writeJSONCompact(g.out, out)
	default:
		ids := nonNil(tok.Encode(string(input), o.addSpecial))
		if o.asJSON {
			return writeJSONCompact(g.out, ids)
		}
		w := bufio.NewWriter(g.out)
		for i, id := range ids {
			if i > 0 {
				w.WriteByte(' ')
			}
			w.WriteString(strconv.Itoa(id))
		}
		w.WriteByte('\n')
		return w.Flush()
	}
}

func nonNil(ids []int) []int {
	if ids == nil {
		return []int{}
	}
	return ids
}

// parseIDs accepts a JSON array or white-space separated integers, the two forms people paste.
func parseIDs(b []byte) ([]int, error) {
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "[") {
		var ids []int
		if err := json.Unmarshal([]byte(s), &ids); err != nil {
			return nil, fmt.Errorf("--decode: stdin is not a JSON array of integers: %v", err)
		}
		return ids, nil
	}
	var ids []int
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(strings.TrimSuffix(f, ","))
		if err != nil {
			return nil, fmt.Errorf("--decode: %q is not a token id", f)
		}
		ids = append(ids, n)
	}
	return ids, nil
}

func checkIDs(tok *tokenizer.Tokenizer, ids []int) error {
	n := tok.VocabSize()
	for _, id := range ids {
		if id < 0 || id >= n {
			return fmt.Errorf("token id %d is outside the vocabulary [0, %d)", id, n)
		}
	}
	return nil
}

func writeJSONCompact(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
