package ptq

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/internal/tinyfixture"
)

// memSink checkpoints in memory: it keeps the codes of each written layer and reads the
// first done layers back from a reference run.
type memSink struct {
	done    int
	from    *Result
	written []int
	codes   map[int][][]int8
	failAt  int // WriteLayer fails on this layer; −1 never
}

func (s *memSink) Done() int { return s.done }

func (s *memSink) ReadLayer(i int, _ *hf.Config, _ int) (*LayerResult, error) {
	return s.from.Layers[i], nil
}

func (s *memSink) WriteLayer(lr *LayerResult) error {
	if lr.Layer == s.failAt {
		return errors.New("disk full")
	}
	s.written = append(s.written, lr.Layer)
	for _, l := range lr.Linears {
		s.codes[lr.Layer] = append(s.codes[lr.Layer], slices.Clone(l.Weight.Q))
	}
	return nil
}

func quantizeFixture(t *testing.T) (*hf.Model, [][]int) {
	t.Helper()
	return tinyfixture.Windows(t, 4, 64, 1)
}

// Quantize, the library entry point of `odyssey quantize`, resumes after the sink's layers,
// checkpoints the others with the codes an uninterrupted run computes, reports every layer,
// and releases the written layers' weights.
func TestQuantizeLibrary(t *testing.T) {
	hm, windows := quantizeFixture(t)
	opt := DefaultOptions()
	full, err := RunWindows(context.Background(), hm, windows, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := RunWindows(context.Background(), hm, windows, opt, nil) // read back as checkpoints
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{done: 2, from: src, codes: map[int][][]int8{}, failAt: -1}
	var reported []int
	res, err := Quantize(context.Background(), hm, QuantizeOptions{
		Options: opt, Windows: windows, GroupSize: 128, GCPercent: 20,
		OnLayer: func(ev ProgressEvent, _ func()) { reported = append(reported, ev.Layer.Layer) },
	}, sink)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.written, []int{2, 3}) || !slices.Equal(reported, []int{0, 1, 2, 3}) || len(res.Layers) != 4 {
		t.Fatalf("written %v, reported %v, %d layers", sink.written, reported, len(res.Layers))
	}
	for _, i := range sink.written {
		for k, l := range full.Layers[i].Linears {
			if !slices.Equal(sink.codes[i][k], l.Weight.Q) {
				t.Errorf("layer %d %s: checkpointed codes differ from an uninterrupted run", i, l.Name)
			}
		}
		if res.Layers[i].Linears[0].Weight != nil || res.Layers[i].AttnNorm != nil {
			t.Errorf("layer %d: weights not released after the checkpoint", i)
		}
	}
}

// A sink failure cancels the run and comes back as a *SinkError; the later layers are not
// written.
func TestQuantizeSinkError(t *testing.T) {
	hm, windows := quantizeFixture(t)
	sink := &memSink{codes: map[int][][]int8{}, failAt: 1}
	_, err := Quantize(context.Background(), hm, QuantizeOptions{Options: DefaultOptions(), Windows: windows}, sink)
	var se *SinkError
	if !errors.As(err, &se) || se.Error() != "disk full" {
		t.Fatalf("err %v, want the sink's error", err)
	}
	if !slices.Equal(sink.written, []int{0}) {
		t.Errorf("written %v, want [0]", sink.written)
	}
}

// OnLayer's interrupt stops the run after the layer at hand, which is still checkpointed.
func TestQuantizeInterrupt(t *testing.T) {
	hm, windows := quantizeFixture(t)
	sink := &memSink{codes: map[int][][]int8{}, failAt: -1}
	_, err := Quantize(context.Background(), hm, QuantizeOptions{Options: DefaultOptions(), Windows: windows,
		OnLayer: func(ev ProgressEvent, interrupt func()) {
			if ev.Layer.Layer == 1 {
				interrupt()
			}
		}}, sink)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if !slices.Equal(sink.written, []int{0, 1}) {
		t.Errorf("written %v, want [0 1]", sink.written)
	}
}
