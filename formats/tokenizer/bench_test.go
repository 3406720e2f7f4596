package tokenizer

import (
	"os"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// benchEncode encodes the whole of WikiText-2 test in one call, as the perplexity protocol
// does (tokens = tokenizer(text)), and reports MB/s of input. The word cache is warm after
// the first iteration, as it is in any long run.
func benchEncode(b *testing.B, tokRel string) {
	tk := loadCached(b, sharedtest.Path(b, tokRel))
	data, err := os.ReadFile(sharedtest.Path(b, "data/wikitext2/wiki.test.raw"))
	if err != nil {
		b.Fatal(err)
	}
	text := string(data)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		n = len(tk.Encode(text, false))
	}
	b.ReportMetric(float64(n), "tokens")
}

func BenchmarkEncodeWikitextQwen3(b *testing.B) { benchEncode(b, "tokenizers/qwen3/tokenizer.json.gz") }
func BenchmarkEncodeWikitextMistral(b *testing.B) {
	benchEncode(b, "tokenizers/mistral/tokenizer.json")
}
func BenchmarkEncodeWikitextTinyLlama(b *testing.B) {
	benchEncode(b, "models/tiny-llama/tokenizer.json")
}

// BenchmarkEncodeColdQwen3 measures encoding with an empty word cache: the cost of BPE
// itself, which is what the first pass over new text pays.
func BenchmarkEncodeColdQwen3(b *testing.B) {
	tk := loadCached(b, sharedtest.Path(b, "tokenizers/qwen3/tokenizer.json.gz"))
	data, err := os.ReadFile(sharedtest.Path(b, "data/wikitext2/wiki.test.raw"))
	if err != nil {
		b.Fatal(err)
	}
	text := string(data)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk.model.cache.reset()
		tk.Encode(text, false)
	}
}

func BenchmarkLoadQwen3(b *testing.B) {
	p := sharedtest.Path(b, "tokenizers/qwen3/tokenizer.json.gz")
	for i := 0; i < b.N; i++ {
		if _, err := Load(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeWikitextQwen3(b *testing.B) {
	tk := loadCached(b, sharedtest.Path(b, "tokenizers/qwen3/tokenizer.json.gz"))
	data, err := os.ReadFile(sharedtest.Path(b, "data/wikitext2/wiki.test.raw"))
	if err != nil {
		b.Fatal(err)
	}
	ids := tk.Encode(string(data), false)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk.Decode(ids, false)
	}
}
