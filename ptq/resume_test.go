package ptq

import (
	"context"
	"slices"
	"testing"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/internal/tinyfixture"
)

// A run resumed with the first layers' results computes the remaining layers exactly as an
// uninterrupted run does, for both propagation modes, and reports every layer.
func TestResumeMatchesUninterrupted(t *testing.T) {
	hm, windows := tinyfixture.Windows(t, 4, 64, 1)
	for _, prop := range []calib.Propagation{calib.PropagateQuantized, calib.PropagateFloat} {
		opt := DefaultOptions()
		opt.Calib.Propagate = prop
		full, err := RunWindows(context.Background(), hm, windows, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		var asked []int
		opt.Resume = func(i int) (*LayerResult, error) {
			asked = append(asked, i)
			if i < 2 {
				return full.Layers[i], nil
			}
			return nil, nil
		}
		var reported []int
		res, err := RunWindows(context.Background(), hm, windows, opt, func(ev ProgressEvent) {
			if ev.Stage == "layer" {
				reported = append(reported, ev.Layer.Layer)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(asked, []int{0, 1, 2, 3}) || !slices.Equal(reported, []int{0, 1, 2, 3}) || len(res.Layers) != 4 {
			t.Fatalf("%s: asked %v, reported %v, %d layers", prop, asked, reported, len(res.Layers))
		}
		for i := 2; i < 4; i++ {
			for k, want := range full.Layers[i].Linears {
				got := res.Layers[i].Linears[k]
				if got.Act != want.Act || !slices.Equal(got.Weight.Q, want.Weight.Q) || !slices.Equal(got.Weight.Scales, want.Weight.Scales) ||
					!slices.Equal(got.IntScale.IntScales, want.IntScale.IntScales) {
					t.Errorf("%s: layer %d %s differs after resuming", prop, i, want.Name)
				}
			}
			if !slices.Equal(res.Layers[i].AttnNorm, full.Layers[i].AttnNorm) || !slices.Equal(res.Layers[i].MLPNorm, full.Layers[i].MLPNorm) {
				t.Errorf("%s: layer %d norms differ after resuming", prop, i)
			}
		}
	}
}
