package ptq

import (
	"math"
	"testing"

	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// FakeActLinear on a non-finite row used to panic (ptq absMax) inside parallelRows' worker
// goroutines; the row's output is now NaN, which calib reports as an error naming the layer.
func TestFakeActLinearNonFiniteRow(t *testing.T) {
	const rows, out, in = 128, 8, 16
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	l := &FakeActLinear{Act: quant.ActQuant{Policy: quant.DynamicPerToken}, Inner: model.NewDense(w, nil, out, in)}
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	x[100*in+3] = float32(math.Inf(1))
	y := make([]float32, rows*out)
	l.Forward(y, x, rows)
	for r := range rows {
		if nan := math.IsNaN(float64(y[r*out])); nan != (r == 100) {
			t.Errorf("row %d: NaN %v", r, nan)
		}
	}
}
