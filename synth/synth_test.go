package synth

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

// A synthetic checkpoint must load as the real model family would: right shapes, right config.
func TestWriteLoads(t *testing.T) {
	s := Shape{Name: "test", HiddenSize: 128, IntermediateSize: 344, NumLayers: 8, NumHeads: 4, NumKVHeads: 2, VocabSize: 300, MaxPositions: 256, RopeTheta: 1e4, RMSNormEps: 1e-5}
	dir := filepath.Join(t.TempDir(), "m")
	if err := Write(dir, Options{Shape: s, Layers: 2, Seed: 7, MaxShardSize: 100_000}); err != nil {
		t.Fatal(err)
	}
	m, err := hf.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := m.Config
	if c.NumLayers != 2 || c.HiddenSize != 128 || c.NumKVHeads != 2 || c.HeadDim != 32 || len(m.Layers) != 2 {
		t.Errorf("config %+v", c)
	}
	if len(m.Tensors.Files()) < 2 {
		t.Errorf("expected shards, got %v", m.Tensors.Files())
	}
	w, err := m.Tensors.Float32(m.Layers[1].Down.Weight.Name)
	if err != nil {
		t.Fatal(err)
	}
	var sum, sq float64
	for _, v := range w {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean, std := sum/float64(len(w)), math.Sqrt(sq/float64(len(w)))
	if math.Abs(mean) > 2e-3 || math.Abs(std-0.02) > 2e-3 {
		t.Errorf("weights mean %g std %g, want ≈0 and 0.02", mean, std)
	}
	norm, _ := m.Tensors.Float32(m.FinalNorm.Name)
	for _, v := range norm {
		if v != 1 {
			t.Fatalf("norm weight %v, want 1", v)
		}
	}
}

// Same seed, same bytes: benchmarks on synthetic models must be repeatable.
func TestWriteDeterministic(t *testing.T) {
	s := Shapes["llama2-7b"]
	s.HiddenSize, s.IntermediateSize, s.VocabSize, s.NumHeads, s.NumKVHeads = 64, 128, 50, 2, 2
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if err := Write(d, Options{Shape: s, Layers: 1, Seed: 3}); err != nil {
			t.Fatal(err)
		}
	}
	x, _ := os.ReadFile(filepath.Join(a, "model.safetensors"))
	y, _ := os.ReadFile(filepath.Join(b, "model.safetensors"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Error("same seed gave different bytes")
	}
}

// The Qwen2 and Mistral shapes load as those architectures: q/k/v biases, a sliding window.
func TestWriteFamilies(t *testing.T) {
	for name, check := range map[string]func(m *hf.Model) bool{
		"qwen2-7b": func(m *hf.Model) bool {
			return m.Layers[0].Q.Bias != nil && m.Layers[0].V.Bias != nil && m.Layers[0].O.Bias == nil
		},
		"mistral-7b": func(m *hf.Model) bool { return m.Config.SlidingWindow == 4096 && m.Layers[0].Q.Bias == nil },
	} {
		s := Shapes[name]
		s.HiddenSize, s.IntermediateSize, s.VocabSize, s.NumHeads, s.NumKVHeads = 64, 128, 50, 4, 2
		dir := filepath.Join(t.TempDir(), name)
		if err := Write(dir, Options{Shape: s, Layers: 1, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		m, err := hf.Load(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Config.Architecture != Shapes[name].Architecture || !check(m) {
			t.Errorf("%s: loaded as %s, config %+v", name, m.Config.Architecture, m.Config)
		}
		m.Close()
	}
}
