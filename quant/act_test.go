package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestQuantizeActValue(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		x, s float32
		want int8
	}{
		{0.25, 0.5, 0}, // 0.5 → half to even → 0
		{0.75, 0.5, 2}, // 1.5 → 2
		{1.25, 0.5, 2}, // 2.5 → 2 (half to even, not away)
		{-1.25, 0.5, -2},
		{-1.75, 0.5, -4}, // −3.5 → −4
		{63.5, 0.5, 127},
		{63.75, 0.5, 127}, // 127.5 → 128, clamped
		{-100, 0.5, -127}, // never −128
		{1e30, 0.5, 127},
		{nan, 0.5, 0},
	} {
		if got := QuantizeActValue(c.x, c.s); got != c.want {
			t.Errorf("QuantizeActValue(%v, %v) = %d, want %d", c.x, c.s, got, c.want)
		}
	}
}

func TestActScale(t *testing.T) {
	for _, c := range []struct{ m, want float32 }{{0, 1}, {127, 1}, {254, 2}, {1e-45, 1}, {63.5, 0.5}} {
		if got := ActScale(c.m); got != c.want {
			t.Errorf("ActScale(%v) = %v, want %v", c.m, got, c.want)
		}
	}
	for _, m := range []float32{-1, float32(math.Inf(1)), float32(math.NaN())} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ActScale(%v) did not panic", m)
				}
			}()
			ActScale(m)
		}()
	}
}

func TestQuantizeActPerToken(t *testing.T) {
	x := []float32{
		0, 0, 0, 0, // zero row: scale 1, codes 0
		1, -2, 0.5, 2.54, // max 2.54 → scale 0.02; 2.54 ↦ 127
		-254, 127, 1, 0.5, // max 254 → scale 2; 1/2 = 0.5 → 0 (even), 0.5/2 = 0.25 → 0
	}
	q := make([]int8, len(x))
	s := make([]float32, 3)
	QuantizeActPerToken(x, 3, 4, q, s)
	if s[0] != 1 || s[1] != float32(2.54)/127 || s[2] != 2 {
		t.Errorf("scales %v", s)
	}
	want := []int8{0, 0, 0, 0, 50, -100, 25, 127, -127, 64, 0, 0}
	for i := range want {
		if q[i] != want[i] {
			t.Errorf("q[%d] = %d, want %d", i, q[i], want[i])
		}
	}
	// The fake-quant variant is the dequantization of the same codes.
	f := append([]float32(nil), x...)
	FakeQuantActPerToken(f, 3, 4)
	for i := range f {
		if want := float32(q[i]) * s[i/4]; f[i] != want {
			t.Errorf("fake-quant [%d] = %v, want %v", i, f[i], want)
		}
	}
}

// TestFakeQuantActError: inside the calibrated range the error is at most half a step;
// outside it values are clamped to ±127·s.
func TestFakeQuantActError(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	x := make([]float32, 1000)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 3)
	}
	s := ActScale(6) // clips the tail beyond 6
	f := append([]float32(nil), x...)
	FakeQuantActPerTensor(f, s)
	q := make([]int8, len(x))
	QuantizeActPerTensor(x, s, q)
	for i, v := range x {
		if f[i] != float32(q[i])*s {
			t.Fatalf("fake-quant differs from the codes at %d", i)
		}
		if math.Abs(float64(v)) <= 6 {
			if e := math.Abs(float64(f[i] - v)); e > float64(s)*0.5*(1+1e-6) {
				t.Fatalf("x = %v: error %g > s/2", v, e)
			}
		} else if math.Abs(float64(f[i])) != float64(127*s) {
			t.Fatalf("x = %v beyond the range: %v, want ±127·s", v, f[i])
		}
	}
	rows := 7
	y := append([]float32(nil), x[:rows*100]...)
	FakeQuantActPerToken(y, rows, 100)
	for rr := 0; rr < rows; rr++ {
		st := ActScale(absMax(x[rr*100 : (rr+1)*100]))
		for i := rr * 100; i < (rr+1)*100; i++ {
			if e := math.Abs(float64(y[i] - x[i])); e > float64(st)*0.5*(1+1e-6) {
				t.Fatalf("per-token row %d: error %g > s/2", rr, e)
			}
		}
	}
}
