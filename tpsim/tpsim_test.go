package tpsim

import (
	"context"
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

var (
	tinyOnce   sync.Once
	tinyModel  *model.Model
	tinyStream []int
	tinyErr    error
)

// tiny loads the committed testdata/tiny-llama and the token stream of the sample text.
func tiny(t *testing.T) (*model.Model, []int) {
	t.Helper()
	tinyOnce.Do(func() {
		hm, err := hf.Load(sharedtest.Testdata("tiny-llama"))
		if err != nil {
			tinyErr = err
			return
		}
		defer hm.Close()
		if tinyModel, err = model.Load(hm); err != nil {
			tinyErr = err
			return
		}
		tok, err := tokenizer.Load(hm.TokenizerPath)
		if err != nil {
			tinyErr = err
			return
		}
		text, err := os.ReadFile(sharedtest.Testdata("text/sample.txt"))
		if err != nil {
			tinyErr = err
			return
		}
		bos, err := eval.BOS(tok, hm.Config)
		if err != nil {
			tinyErr = err
			return
		}
		tinyStream = eval.Stream(tok, string(text), bos)
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tinyModel, tinyStream
}

var tinyOpt = eval.Options{SeqLen: 128, MaxWindows: 6}

func compare(t *testing.T, c Config) *Result {
	t.Helper()
	m, stream := tiny(t)
	r, err := Compare(context.Background(), m, c, stream, tinyOpt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TP %d %+v: ppl %.5f → %.5f (ratio %.6f), KL %.3g, top-1 %.4f", c.TP, c.Codec, r.PPLReference, r.PPL, r.Ratio, r.KLMean, r.Top1Agreement)
	return r
}

// With one rank and the uncompressed control the split model computes the reference's
// numbers exactly: one partial, the whole GEMM, summed onto +0.0.
func TestOneRankIsExact(t *testing.T) {
	r := compare(t, Config{TP: 1, Codec: quant.FlashComm{Bits: 16}})
	if r.Ratio != 1 || r.KLMean != 0 || r.Top1Agreement != 1 {
		t.Fatalf("TP 1 control: ratio %v, KL %v, top-1 %v; want exactly 1, 0, 1", r.Ratio, r.KLMean, r.Top1Agreement)
	}
}

// The control at TP 4 only reorders float32 sums: the ratio stays within float rounding of 1.
func TestControlWithinRounding(t *testing.T) {
	r := compare(t, Config{TP: 4, Codec: quant.FlashComm{Bits: 16}})
	if math.Abs(r.Ratio-1) > 1e-4 || r.KLMean > 1e-7 {
		t.Fatalf("TP 4 control: ratio %v, KL %v; want within float rounding of the reference", r.Ratio, r.KLMean)
	}
}

// INT8 costs less than INT4 at the same TP and group, and both cost something.
func TestInt8BeatsInt4(t *testing.T) {
	for _, sym := range []bool{false, true} {
		r8 := compare(t, Config{TP: 4, Codec: quant.FlashComm{Bits: 8, Group: 64, Symmetric: sym}})
		r4 := compare(t, Config{TP: 4, Codec: quant.FlashComm{Bits: 4, Group: 64, Symmetric: sym}})
		if !(r8.KLMean < r4.KLMean) || !(math.Abs(math.Log(r8.Ratio)) < math.Abs(math.Log(r4.Ratio))) {
			t.Errorf("symmetric %v: INT8 ratio %v KL %v, INT4 ratio %v KL %v: INT8 should change less", sym, r8.Ratio, r8.KLMean, r4.Ratio, r4.KLMean)
		}
		if !(r8.KLMean > 0) || math.Abs(r8.Ratio-1) > 0.01 {
			t.Errorf("symmetric %v: INT8 ratio %v KL %v: want a small non-zero change", sym, r8.Ratio, r8.KLMean)
		}
	}
}

// opaque hides a Dense's type, so RowParallel takes the zero-padding path that artifacts'
// linears use.
type opaque struct{ model.Linear }

// The zero-padding path and the sliced-GEMM path compute the same partials up to float
// rounding of the GEMM's blocking.
func TestZeroPaddedPartialsMatchSlices(t *testing.T) {
	m, _ := tiny(t)
	d := m.Layers[0].Down.(*model.Dense)
	c := Config{TP: 4, Codec: quant.FlashComm{Bits: 16}}
	a, err := newRowParallel(d, c, new(scratch))
	if err != nil {
		t.Fatal(err)
	}
	b, err := newRowParallel(opaque{d}, c, new(scratch))
	if err != nil {
		t.Fatal(err)
	}
	const rows = 5
	x := make([]float32, rows*d.In())
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	ya, yb := make([]float32, rows*d.Out()), make([]float32, rows*d.Out())
	a.Forward(ya, x, rows)
	b.Forward(yb, x, rows)
	for i := range ya {
		if math.Abs(float64(ya[i]-yb[i])) > 1e-5*(1+math.Abs(float64(ya[i]))) {
			t.Fatalf("element %d: sliced %v, zero-padded %v", i, ya[i], yb[i])
		}
	}
	// A linear with a bias, of unknown type, is refused.
	biased := model.NewDense(d.W, make([]float32, d.Out()), d.Out(), d.In())
	biased.B[3] = 1
	if _, err := newRowParallel(opaque{biased}, c, new(scratch)); err == nil || !strings.Contains(err.Error(), "bias") {
		t.Fatalf("biased opaque linear: error %v", err)
	}
}

func TestCheck(t *testing.T) {
	m, _ := tiny(t) // hidden 256, heads·head_dim 256, intermediate 768
	for _, tc := range []struct {
		c    Config
		want string // "" for valid
	}{
		{Config{TP: 8, Codec: quant.FlashComm{Bits: 8, Group: 32}}, ""},
		{Config{TP: 2, Codec: quant.FlashComm{Bits: 4, Group: 128}}, ""},
		{Config{TP: 8, Codec: quant.FlashComm{Bits: 16}}, ""},
		{Config{TP: 3, Codec: quant.FlashComm{Bits: 8, Group: 32}}, "does not divide o_proj's input"},
		{Config{TP: 0, Codec: quant.FlashComm{Bits: 8, Group: 32}}, "at least 1"},
		{Config{TP: 8, Codec: quant.FlashComm{Bits: 8, Group: 64}}, "per-rank chunk"},
		{Config{TP: 4, Codec: quant.FlashComm{Bits: 8, Group: 128}}, "groups dividing it: [8 16 32 64]"},
		{Config{TP: 2, Codec: quant.FlashComm{Bits: 2, Group: 32}}, "bits 2"},
	} {
		err := Check(m, tc.c)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.c, err, tc.want)
		}
	}
	// Split leaves the original untouched.
	s, err := Split(m, Config{TP: 2, Codec: quant.FlashComm{Bits: 8, Group: 128}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Layers[0].O.(*model.Dense); !ok {
		t.Fatal("Split modified the reference model")
	}
	if _, ok := s.Layers[0].O.(*RowParallel); !ok {
		t.Fatal("Split did not replace o_proj")
	}
}

// An activation the codec refuses (here: a NaN weight makes o_proj's partials NaN) comes back
// from Compare as an error, not a crash.
func TestNonFiniteActivationIsAnError(t *testing.T) {
	m, stream := tiny(t)
	bad := *m
	bad.Layers = slices.Clone(m.Layers)
	l := *m.Layers[1]
	d := l.O.(*model.Dense)
	w := slices.Clone(d.W)
	w[7] = float32(math.NaN())
	l.O = model.NewDense(w, nil, d.Out(), d.In())
	bad.Layers[1] = &l
	_, err := Compare(context.Background(), &bad, Config{TP: 2, Codec: quant.FlashComm{Bits: 8, Group: 128}}, stream, eval.Options{SeqLen: 64, MaxWindows: 1})
	if !errors.Is(err, quant.ErrFlashCommInput) {
		t.Fatalf("error %v, want ErrFlashCommInput", err)
	}
	t.Log(err)
}
