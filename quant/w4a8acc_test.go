package quant

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestW4A8AccRefHand: the accumulators of TestW4A8GEMMHand, worked by hand there.
func TestW4A8AccRefHand(t *testing.T) {
	iw := handGEMMWeight(t)
	acc := make([]int32, 4)
	W4A8AccRef([]int8{10, -20, 3, 127, -127, 127, 0, 1}, iw, acc)
	for i, want := range []int32{25152, -16576, -162496, 28320} {
		if acc[i] != want {
			t.Errorf("acc[%d] = %d, want %d", i, acc[i], want)
		}
	}
}

// TestW4A8AccRefMatchesGEMMRef: the accumulators are W4A8GEMMRef's integer part, so the
// epilogue applied to them gives W4A8GEMMRef's bits, and they equal a plain int64 sum of
// x·16q·ŝ; on every channel's worst-case input they reach ±Bound.
func TestW4A8AccRefMatchesGEMMRef(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	for i := 0; i < 20; i++ {
		out, in, g := randShape(r)
		iw := randIntScaleWeight(t, r, out, in, g, uint64(700+i))
		m := 1 + r.IntN(4)
		x := randCodes(r, (m+1)*in)
		// The last row is channel 0's worst case.
		for k := 0; k < in; k++ {
			switch q := iw.Q[k]; {
			case q > 0:
				x[m*in+k] = ActQMax
			case q < 0:
				x[m*in+k] = -ActQMax
			default:
				x[m*in+k] = int8(r.IntN(255) - 127)
			}
		}
		m++
		xs := make([]float32, m)
		for j := range xs {
			xs[j] = float32(0.01 + r.Float64())
		}
		acc := make([]int32, m*out)
		y := make([]float32, m*out)
		W4A8AccRef(x, iw, acc)
		W4A8GEMMRef(x, xs, iw, y)
		ng := iw.NumGroups()
		for rr := 0; rr < m; rr++ {
			for c := 0; c < out; c++ {
				var want int64
				for k := 0; k < in; k++ {
					want += int64(x[rr*in+k]) * 16 * int64(iw.Q[c*in+k]) * int64(iw.IntScales[c*ng+k/g])
				}
				a := acc[rr*out+c]
				if int64(a) != want {
					t.Fatalf("case %d [%d,%d]: acc %d, int64 sum %d", i, rr, c, a, want)
				}
				ye := float32(a) * (xs[rr] * iw.EpilogueFactor(c))
				if math.Float32bits(ye) != math.Float32bits(y[rr*out+c]) {
					t.Fatalf("case %d [%d,%d]: epilogue of acc %v, W4A8GEMMRef %v", i, rr, c, ye, y[rr*out+c])
				}
			}
		}
		if got := int64(acc[(m-1)*out]); got != iw.Bound[0] {
			t.Errorf("case %d: worst-case acc of channel 0 = %d, bound %d", i, got, iw.Bound[0])
		}
	}
}

func TestW4A8AccRefShapes(t *testing.T) {
	iw := handGEMMWeight(t)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "W4A8AccRef") {
			t.Errorf("panic %v", r)
		}
	}()
	W4A8AccRef(make([]int8, 8), iw, make([]int32, 3))
}
