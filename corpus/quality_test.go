package corpus

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/tokenizer"
)

func qualityOf(t *testing.T, text string) Quality {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join("..", "testdata", "tiny-llama", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(text, false)
	return MeasureQuality(tok, [][]int{append([]int{-1}, ids...)}, -1)
}

// Real text passes; random bytes and NULs are flagged, each for a reason that names them.
func TestQualityFlagsGarbage(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join("..", "testdata", "text", "sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	q := qualityOf(t, string(sample))
	if q.Tokens < minQualityTokens {
		t.Fatalf("sample.txt gives %d tokens, too few to judge", q.Tokens)
	}
	if p := q.Problems(); p != nil {
		t.Errorf("sample.txt flagged: %v", p)
	}
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 20000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	if p := qualityOf(t, string(random)).Problems(); len(p) == 0 {
		t.Error("random bytes not flagged")
	} else if !strings.Contains(strings.Join(p, " "), "invalid UTF-8") {
		t.Errorf("random bytes flagged without naming invalid bytes: %v", p)
	}
	if p := qualityOf(t, strings.Repeat("\x00", 20000)).Problems(); len(p) == 0 {
		t.Error("NULs not flagged")
	}
	// Too short to judge.
	if p := qualityOf(t, "\x00\x01\x02").Problems(); p != nil {
		t.Errorf("3 bytes judged: %v", p)
	}
}
