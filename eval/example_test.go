package eval_test

import (
	"context"
	"fmt"
	"log"
	"math"
	"strings"

	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
)

// Example shows what `odyssey eval ppl` does: open the checkpoint, read it into float32,
// tokenize the text into the evaluation stream and measure the perplexity.
func Example() {
	hm, err := hf.Load(sharedtest.Testdata("tiny-llama"))
	if err != nil {
		log.Fatal(err)
	}
	defer hm.Close()
	m, err := model.Load(hm) // copies every weight: hm may be closed afterwards
	if err != nil {
		log.Fatal(err)
	}
	tok, err := tokenizer.Load(hm.TokenizerPath)
	if err != nil {
		log.Fatal(err)
	}
	bos, err := eval.BOS(tok, hm.Config)
	if err != nil {
		log.Fatal(err)
	}
	// In the CLI the text comes from eval.LoadText(path, "text" or "jsonl").
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 40)
	stream := eval.Stream(tok, text, bos)
	res, err := eval.Perplexity(context.Background(), m, stream, eval.Options{
		SeqLen: 128,
		Progress: func(done, total int, tokensPerSec float64) {
			// A CLI would update a progress bar here.
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d windows of %d, %d tokens scored, ppl finite: %v\n", res.Windows, res.SeqLen, res.TokensScored, !math.IsInf(res.PPL, 0) && !math.IsNaN(res.PPL))
	// Output: 5 windows of 128, 635 tokens scored, ppl finite: true
}
