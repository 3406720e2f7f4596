// Package tinyfixture gives tests the embedded tiny-llama model with a few short calibration
// windows of the committed sample text: the fixture the pipeline and artifact tests share.
// It lives apart from internal/sharedtest because it imports calib and corpus, whose own
// tests import sharedtest.
package tinyfixture

import (
	"testing"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/corpus"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// Windows loads testdata/tiny-llama (closed when the test ends) and draws n text windows of
// seqLen tokens from testdata/text/sample.txt with the given seed (BOS id 0).
func Windows(t testing.TB, n, seqLen int, seed uint64) (*hf.Model, [][]int) {
	t.Helper()
	hm, err := hf.Load(sharedtest.Testdata("tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hm.Close() })
	tok, err := tokenizer.Load(hm.TokenizerPath)
	if err != nil {
		t.Fatal(err)
	}
	text, err := corpus.LoadText(sharedtest.Testdata("text/sample.txt"), "text")
	if err != nil {
		t.Fatal(err)
	}
	windows, err := calib.TextWindows(tok.Encode(text, false), 0, n, seqLen, seed)
	if err != nil {
		t.Fatal(err)
	}
	return hm, windows
}
