package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
)

// hugeModel returns a copy of tiny-llama whose tensor name is stored in float32 with every
// value multiplied by factor (finite weights whose activations overflow float32).
func hugeModel(t *testing.T, names map[string]float32) string {
	t.Helper()
	dir := copyModel(t, tiny)
	ck, err := safetensors.Open(filepath.Join(tiny, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var ts []safetensors.Tensor
	for _, ti := range ck.Tensors() {
		b, _ := ck.Bytes(ti.Name)
		b = bytes.Clone(b)
		dt := ti.DType
		if f, ok := names[ti.Name]; ok {
			n := len(b) / 2
			out := make([]byte, 4*n)
			for i := 0; i < n; i++ {
				h := binary.LittleEndian.Uint16(b[2*i:])
				v := halfToFloat(h) * f
				binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
			}
			b, dt = out, safetensors.F32
		}
		ts = append(ts, safetensors.Tensor{Name: ti.Name, DType: dt, Shape: ti.Shape, Data: b})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, ck.Metadata()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0:
		f := float32(mant) / 1024 / 16384
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// Finite weights whose activations overflow float32 (here a post-attention norm weight of
// 1e25, stored in float32) made quant.Decide and the activation quantizers panic, inside
// worker goroutines too: exit 2 and OUT.partial left behind. Now it is bad input (exit 3)
// naming the layer, with the cleanup.
func TestQuantizeNonFiniteActivations(t *testing.T) {
	m := hugeModel(t, map[string]float32{"model.layers.1.post_attention_layernorm.weight": 1e25})
	out := filepath.Join(t.TempDir(), "o")
	rec := writeRecipe(t, "version: 1\nbase: w4a8-rtn\ncalibration:\n  samples: 4\n  seq_len: 64\n  seed: 3\n  propagate: quantized\nweights:\n  method: gptq\n")
	code, _, errOut := quantize(t, "--model", m, "--out", out, "--recipe", rec, "--calib", sample)
	if code != exitBadInput || !strings.Contains(errOut, "layer 1") || !strings.Contains(errOut, "not finite") {
		t.Errorf("exit %d, want %d naming layer 1: %s", code, exitBadInput, errOut)
	}
	for _, p := range []string{out, out + ".partial"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}
