package model

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// loadModel opens a Hugging Face checkpoint folder and reads it into float32.
func loadModel(t testing.TB, dir string) *Model {
	t.Helper()
	hm, err := hf.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	m, err := Load(hm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// goldenLogits reads input_ids (int32 [n]) and logits (fp32 [n, vocab]) written by transformers.
func goldenLogits(t *testing.T, path string) ([]int, []float32, int) {
	t.Helper()
	ck, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	info, ok := ck.Info("input_ids")
	if !ok || info.DType != safetensors.I32 {
		t.Fatalf("%s: no int32 input_ids (%v)", path, info)
	}
	raw, err := ck.Bytes("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(raw)/4)
	for i := range ids {
		ids[i] = int(int32(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	li, ok := ck.Info("logits")
	if !ok || len(li.Shape) != 2 || int(li.Shape[0]) != len(ids) {
		t.Fatalf("%s: logits %v do not match %d input ids", path, li, len(ids))
	}
	logits, err := ck.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	return ids, logits, int(li.Shape[1])
}

// TestGoldenLogits compares the float32 forward pass with transformers' logits for the first
// 32 tokens of each model's evaluation text.
func TestGoldenLogits(t *testing.T) {
	for _, tc := range []struct {
		model, golden string
	}{
		{"tiny-llama", "tiny-llama"}, // fp16, committed in testdata
		{"small-llama", "small-llama"},
		// Same function as small-llama by construction (power-of-two rescaled channels).
		{"small-llama-outliers", "small-llama"},
		{"stories260K", "stories260K"}, // fp32, tied embeddings, head_dim 8
	} {
		t.Run(tc.model, func(t *testing.T) {
			golden := sharedtest.Path(t, filepath.Join("golden", tc.golden+".logits.safetensors"))
			dir := sharedtest.Testdata(tc.model)
			if tc.model != "tiny-llama" {
				dir = sharedtest.Path(t, filepath.Join("models", tc.model))
			}
			checkGoldenLogits(t, tc.model, dir, golden)
		})
	}
}

// TestGoldenLogitsCommitted runs always, without ../shared: tiny-llama's PyTorch logits are
// committed in testdata/golden (a copy of ../shared/golden/tiny-llama.logits.safetensors), so
// CI checks the forward pass against transformers on every run.
func TestGoldenLogitsCommitted(t *testing.T) {
	checkGoldenLogits(t, "tiny-llama", sharedtest.Testdata("tiny-llama"), sharedtest.Testdata("golden/tiny-llama.logits.safetensors"))
}

// checkGoldenLogits compares the model in dir with the golden logits file, within 1e-3.
func checkGoldenLogits(t *testing.T, name, dir, golden string) {
	t.Helper()
	ids, want, vocab := goldenLogits(t, golden)
	m := loadModel(t, dir)
	if m.VocabSize() != vocab {
		t.Fatalf("model has %d logits, golden %d", m.VocabSize(), vocab)
	}
	got, err := m.Forward([][]int{ids}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var d float64
	at := 0
	for i := range want {
		if e := math.Abs(float64(got[i] - want[i])); e > d || math.IsNaN(e) {
			d, at = e, i
		}
	}
	t.Logf("%s: max |Δlogit| = %.3g over %d×%d (at position %d)", name, d, len(ids), vocab, at/vocab)
	if !(d <= 1e-3) {
		t.Errorf("max |Δlogit| = %g at position %d token %d, want ≤ 1e-3", d, at/vocab, at%vocab)
	}
}
