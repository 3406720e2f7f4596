package quant

import (
	"math"
	"testing"
)

// A non-finite activation row used to panic inside QLinear.Forward's worker goroutines
// (absMax, ActScale), killing the process. Now the row's output is NaN, for the caller to
// detect, and the other rows are unaffected.
func TestQLinearNonFiniteRow(t *testing.T) {
	const rows, out, in = 256, 64, 128
	iw, err := RTNIntScale(randWeights(out*in, 2), out, in, 128, RTNOptions{}, AmplifierRule{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewQLinear(iw, ActQuant{Policy: DynamicPerToken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := randWeights(rows*in, 3)
	x[200*in+5] = float32(math.Inf(1))
	x[7*in] = float32(math.NaN())
	y := make([]float32, rows*out)
	l.Forward(y, x, rows)
	for r := range rows {
		nan := math.IsNaN(float64(y[r*out]))
		if want := r == 200 || r == 7; nan != want {
			t.Errorf("row %d: output NaN %v, want %v", r, nan, want)
		}
	}
	if s := RowScale([]float32{1, float32(math.Inf(-1))}); !math.IsNaN(float64(s)) {
		t.Errorf("RowScale of an Inf row: %v", s)
	}
	if s := RowScale([]float32{-127, 2}); s != 1 {
		t.Errorf("RowScale: %v, want 1", s)
	}
}
