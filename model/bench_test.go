package model

import (
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// BenchmarkForwardTiny measures the whole forward pass (logits included) of the committed
// tiny-llama on a batch of two 512-token windows, reporting tokens per second.
func BenchmarkForwardTiny(b *testing.B) {
	m := loadModel(b, sharedtest.Testdata("tiny-llama"))
	const batch, L = 2, 512
	wins := make([][]int, batch)
	for i := range wins {
		wins[i] = make([]int, L)
		for j := range wins[i] {
			wins[i][j] = (i*7919 + j*104729) % m.Config.VocabSize
		}
	}
	ctx := new(Context)
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Forward(wins, ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch*L)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkLayerTiny measures one decoder layer of tiny-llama on one 512-token window.
func BenchmarkLayerTiny(b *testing.B) {
	m := loadModel(b, sharedtest.Testdata("tiny-llama"))
	const L = 512
	win := make([]int, L)
	for j := range win {
		win[j] = j * 31 % m.Config.VocabSize
	}
	h0, _ := m.Embed([][]int{win})
	h := make([]float32, len(h0))
	ctx := new(Context)
	b.ResetTimer()
	for b.Loop() {
		copy(h, h0)
		m.Layers[0].Forward(h, 1, L, ctx)
	}
	b.ReportMetric(float64(b.N*L)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkExp32(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = -float32(i) / 256
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += exp32(v)
		}
	}
	_ = s
}
