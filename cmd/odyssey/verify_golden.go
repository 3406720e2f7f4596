package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/odyssey-llm/odyssey/artifact"
)

// The golden perplexities (../shared/golden/ppl.json, produced with PyTorch + transformers):
// per model, entries "DATASET/L<L>/<dtype>" with the text's sha256, L, the windows, the
// perplexity and (float32 entries) the NLL of every window. verify ppl --golden compares the
// GPU's perplexity with the entry of the same model, text and L: issue 14 asks the FP16 path
// to be within 0.05% of it.

// maxGoldenFile bounds --golden: the shared file is a few MB.
const maxGoldenFile = 256 << 20

type goldenEntry struct {
	PPL          float64   `json:"ppl"`
	Windows      int       `json:"windows"`
	TokensScored int       `json:"tokens_scored"`
	NLLPerWindow []float64 `json:"nll_per_window"`
	TextSHA256   string    `json:"text_sha256"`
	L            int       `json:"L"`
}

// goldenRef is the golden perplexity a run is compared with.
type goldenRef struct {
	File  string `json:"file"`
	Model string `json:"model"`
	Entry string `json:"entry"`
	// Windows is how many of the entry's windows the reference covers: all of them, or the
	// first --max-windows (recomputed from the entry's nll_per_window).
	Windows int     `json:"windows"`
	PPL     float64 `json:"ppl"`

	RelativeDifference float64 `json:"relative_difference"`
	Tolerance          float64 `json:"tolerance"`
	Met                bool    `json:"met"`
}

// findGolden picks the golden entry for model (a key of the file), the data file (by its
// sha256), window length l and the number of windows the run scores. An entry of all the
// windows is compared by its ppl, float16 preferred (the GPU computes in fp16); a run of
// fewer windows needs an entry with nll_per_window (float32) and is compared with the
// perplexity of its first windows. Every refusal says what the file holds.
func findGolden(file, model, data string, l, windows, totalWindows int) (*goldenRef, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, badInput(fmt.Errorf("--golden: %w", err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxGoldenFile+1))
	if err != nil {
		return nil, badInput(fmt.Errorf("--golden: %w", err))
	}
	if len(b) > maxGoldenFile {
		return nil, badInput(fmt.Errorf("--golden %s is larger than %d MiB", file, maxGoldenFile>>20))
	}
	var all map[string]struct {
		Results map[string]goldenEntry `json:"results"`
	}
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, badInput(fmt.Errorf("--golden %s: %w", file, err))
	}
	m, ok := all[model]
	if !ok {
		var names []string
		for k := range all {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, badInput(fmt.Errorf("--golden %s has no model %q (it has: %s; name it with --golden-model)", file, model, strings.Join(names, ", ")))
	}
	sum, err := artifact.FileSHA256(data)
	if err != nil {
		return nil, badInput(fmt.Errorf("--data: %w", err))
	}
	var keys []string
	for k, e := range m.Results {
		if e.TextSHA256 == sum && e.L == l {
			keys = append(keys, k)
		}
	}
	// float16 first, then float32; by name for a stable choice.
	sort.Slice(keys, func(i, j int) bool {
		fi, fj := strings.HasSuffix(keys[i], "/float16"), strings.HasSuffix(keys[j], "/float16")
		if fi != fj {
			return fi
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		e := m.Results[k]
		ref := &goldenRef{File: file, Model: model, Entry: k, Windows: windows}
		switch {
		case e.Windows != totalWindows:
			return nil, badInput(fmt.Errorf("--golden %s: %s/%s has %d windows of %d; this text makes %d with %s's tokenizer (another tokenizer or text?)",
				file, model, k, e.Windows, l, totalWindows, model))
		case windows == e.Windows:
			ref.PPL = e.PPL
		case len(e.NLLPerWindow) == e.Windows && e.L >= 2:
			var s float64
			for _, v := range e.NLLPerWindow[:windows] {
				s += v
			}
			ref.PPL = math.Exp(s / float64(windows*(e.L-1)))
		default:
			continue // a partial run needs the windows' NLLs
		}
		if !(ref.PPL > 0) || math.IsInf(ref.PPL, 0) {
			return nil, badInput(fmt.Errorf("--golden %s: %s/%s has perplexity %v", file, model, k, ref.PPL))
		}
		return ref, nil
	}
	return nil, badInput(fmt.Errorf("--golden %s has no entry for %s on %s (sha256 %.12s…) at L = %d%s", file, model, filepath.Base(data), sum, l,
		map[bool]string{true: " with the NLL of every window (needed for --max-windows)", false: ""}[len(keys) > 0]))
}
