//go:build ignore

// Command exactgolden writes runtime/tests/data/calib_exact_golden.bin: small decoder layers
// with generated weights run through model.Layer.Forward and calib.Stats.Add (the CPU pass's
// canonical arithmetic, docs/determinism.md), for runtime/tests/test_calib_exact_host.cpp,
// which generates the same inputs (gen below: integer hashing, exact in both languages),
// replays the layer with calib/canonical.hpp's host code and requires the same bits. Large
// results are stored as their FNV-1a 64 hash (kind 2), small ones in full. Regenerate (after
// a change to the canonical arithmetic) from the repository root with
//
//	go run runtime/tests/exactgolden/main.go runtime/tests/data/calib_exact_golden.bin
//
// Format: a sequence of records, each name length (u32), name, kind (u8: 4 float32, 8
// float64, 1 int64, 2 hash: count is the hashed value count, one u64 follows), count (u64),
// values, little-endian. Each case starts with "case" (its
// int64 shape), then its tensors.
package main

import (
	"bufio"
	"encoding/binary"
	"hash/fnv"
	"math"
	"os"
	"strconv"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
)

type writer struct{ w *bufio.Writer }

func (w writer) head(name string, kind byte, n int) {
	binary.Write(w.w, binary.LittleEndian, uint32(len(name)))
	w.w.WriteString(name)
	w.w.WriteByte(kind)
	binary.Write(w.w, binary.LittleEndian, uint64(n))
}
func (w writer) f32(name string, v []float32) {
	w.head(name, 4, len(v))
	binary.Write(w.w, binary.LittleEndian, v)
}
func (w writer) f64(name string, v []float64) {
	w.head(name, 8, len(v))
	binary.Write(w.w, binary.LittleEndian, v)
}
func (w writer) i64(name string, v ...int64) {
	w.head(name, 1, len(v))
	binary.Write(w.w, binary.LittleEndian, v)
}

// hash32 and hash64 store FNV-1a 64 of the values' little-endian bytes.
func (w writer) hash32(name string, v []float32) {
	h := fnv.New64a()
	binary.Write(h, binary.LittleEndian, v)
	w.head(name, 2, len(v))
	binary.Write(w.w, binary.LittleEndian, h.Sum64())
}
func (w writer) hash64(name string, v []float64) {
	h := fnv.New64a()
	binary.Write(h, binary.LittleEndian, v)
	w.head(name, 2, len(v))
	binary.Write(w.w, binary.LittleEndian, h.Sum64())
}

// gen returns n values of stream seed: splitmix64 of (seed, i); a 24-bit signed integer
// times 2⁻²³·scale (exact), 1 in 128 an exact zero, 1 in 128 scaled into the denormals
// (float32(float64(v)·2⁻¹³⁰), one IEEE rounding). scale must be a power of two.
func gen(seed uint64, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		z := seed*0x9E3779B97F4A7C15 + uint64(i)*0xD1B54A32D192ED03 + 1
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		x := float32(float64(int64(z>>40)-(1<<23)) * (1.0 / (1 << 23)) * scale)
		switch z & 127 {
		case 0:
			x = 0
		case 1:
			x = float32(float64(x) * math.Ldexp(1, -130))
		}
		v[i] = x
	}
	return v
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	w := writer{bufio.NewWriter(f)}
	type shape struct{ hidden, inter, heads, kv, hd, seq, window, bias int }
	for ci, s := range []shape{
		{96, 400, 4, 2, 24, 200, 0, 1},  // down_proj's K 400 and XᵀX's rows 400, 200: two K blocks
		{64, 160, 2, 1, 32, 150, 70, 0}, // sliding window: P·V's K blocks start at each task's k0
	} {
		seed := uint64(ci+1) * 100
		next := func() uint64 { seed++; return seed }
		cfg := &hf.Config{
			ModelType: "llama", HiddenAct: "silu",
			HiddenSize: s.hidden, IntermediateSize: s.inter, NumLayers: 1,
			NumHeads: s.heads, NumKVHeads: s.kv, HeadDim: s.hd, VocabSize: 50,
			MaxPositionEmbeddings: 4096, RMSNormEps: 1e-5, SlidingWindow: s.window,
			Rope: hf.Rope{Theta: 10000, Type: "default"},
		}
		if err := model.CheckConfig(cfg); err != nil {
			panic(err)
		}
		w.i64("case", int64(s.hidden), int64(s.inter), int64(s.heads), int64(s.kv), int64(s.hd), int64(s.seq),
			int64(s.window), int64(s.bias), 2, 1) // chunks of 2 and 1 windows
		qd, kvd := s.heads*s.hd, s.kv*s.hd
		names := []string{"q", "k", "v", "o", "gate", "up", "down"}
		outs := []int{qd, kvd, kvd, s.hidden, s.inter, s.inter, s.hidden}
		ins := []int{s.hidden, s.hidden, s.hidden, qd, s.hidden, s.hidden, s.inter}
		lins := make([]model.Linear, 7)
		for i := range lins {
			wt := gen(next(), outs[i]*ins[i], 0.125)
			var b []float32
			if s.bias == 1 && i < 3 {
				b = gen(next(), outs[i], 0.125)
			}
			_ = names
			lins[i] = model.NewDense(wt, b, outs[i], ins[i])
		}
		an := gen(next(), s.hidden, 1)
		mn := gen(next(), s.hidden, 1)
		l := &model.Layer{Config: cfg, AttnNorm: an, MLPNorm: mn, Q: lins[0], K: lins[1], V: lins[2], O: lins[3],
			Gate: lins[4], Up: lins[5], Down: lins[6]}
		cos, sin, err := model.RopeTables(cfg.Rope, s.hd, s.seq)
		if err != nil {
			panic(err)
		}
		w.hash32("rope_cos", cos) // the test checks its own tables (glibc cos/sin) against these
		w.hash32("rope_sin", sin)
		stats := []*calib.Stats{calib.NewStats(s.hidden, true), calib.NewStats(qd, true), calib.NewStats(s.hidden, true),
			calib.NewStats(s.inter, true)}
		input := map[model.LinearKind]int{model.Q: 0, model.O: 1, model.Gate: 2, model.Down: 3}
		ctx := &model.Context{Observe: func(_ int, kind model.LinearKind, x []float32, rows, _ int) {
			if i, ok := input[kind]; ok {
				stats[i].Add(x, rows)
			}
		}}
		for k, nw := range []int{2, 1} {
			h := gen(next(), nw*s.seq*s.hidden, 2)
			l.Forward(h, nw, s.seq, ctx)
			w.hash32("h_out"+strconv.Itoa(k), h)
		}
		for i, st := range stats {
			sm := st.Sums()
			p := "stats" + string(rune('0'+i)) + "_"
			w.f32(p+"min", sm.Min)
			w.f32(p+"max", sm.Max)
			w.f64(p+"sumsq", sm.SumSq)
			w.f64(p+"token", []float64{sm.TokenSum, float64(sm.TokenMin)})
			w.hash64(p+"xtx", sm.XTX)
		}
	}
	w.i64("end")
	if err := w.w.Flush(); err != nil {
		panic(err)
	}
	if err := f.Close(); err != nil {
		panic(err)
	}
}
