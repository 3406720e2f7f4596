package qresult

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// FloatScaleLinear is the float-scale counterpart of quant.QLinear: a fake-quantized W4A8
// linear whose group scales stay float32, so each group's integer partial sum is converted
// and scaled on its own (the per-group conversion Integer Scale removes). Forward returns
// exactly the bits of quant.W4A8GEMMFloatScaleRef on the int8 quantization of its input,
// plus the bias (one float32 addition), which is what the integer-scale comparison needs.
//
// Like QLinear it computes each group's partial sum Σx·q with a float32 GEMM of the codes,
// which is exact: the sum of at most In ≤ 16384 products of magnitude ≤ 127·7 is an integer
// below 2²⁴.
type FloatScaleLinear struct {
	W    *quant.QuantizedWeight
	Act  quant.ActQuant
	Bias []float32

	wf     []float32 // float32(q) [Out×In]
	scaleT []float32 // Scales transposed [NumGroups×Out]
	pool   sync.Pool
}

type fsScratch struct {
	xf, xs, tmp, acc []float32
}

// maxExactIn is the widest group FloatScaleLinear sums in one float32 GEMM exactly.
const maxExactIn = 16384

// NewFloatScaleLinear validates its arguments and prepares the layer.
func NewFloatScaleLinear(w *quant.QuantizedWeight, act quant.ActQuant, bias []float32) (*FloatScaleLinear, error) {
	if w == nil || w.Out <= 0 || w.In <= 0 || w.GroupSize <= 0 || w.In%w.GroupSize != 0 ||
		len(w.Q) != w.Out*w.In || len(w.Scales) != w.Out*w.NumGroups() {
		return nil, fmt.Errorf("ptq: malformed quantized weight")
	}
	if w.GroupSize > maxExactIn {
		return nil, fmt.Errorf("ptq: group of %d channels is too wide for an exact float32 sum (max %d)", w.GroupSize, maxExactIn)
	}
	if err := act.Validate(); err != nil {
		return nil, err
	}
	if bias != nil && len(bias) != w.Out {
		return nil, fmt.Errorf("ptq: bias has %d elements, want %d", len(bias), w.Out)
	}
	ng := w.NumGroups()
	l := &FloatScaleLinear{W: w, Act: act, Bias: bias, wf: make([]float32, len(w.Q)), scaleT: make([]float32, ng*w.Out)}
	for i, q := range w.Q {
		l.wf[i] = float32(q)
	}
	for c := 0; c < w.Out; c++ {
		for g := 0; g < ng; g++ {
			l.scaleT[g*w.Out+c] = w.Scales[c*ng+g]
		}
	}
	return l, nil
}

// In returns the input width.
func (l *FloatScaleLinear) In() int { return l.W.In }

// Out returns the output width.
func (l *FloatScaleLinear) Out() int { return l.W.Out }

// Forward computes y [rows×Out] from x [rows×In]. It is safe for concurrent use.
func (l *FloatScaleLinear) Forward(y, x []float32, rows int) {
	k, n, gs := l.W.In, l.W.Out, l.W.GroupSize
	ng := l.W.NumGroups()
	if len(x) < rows*k || len(y) < rows*n {
		panic(fmt.Sprintf("ptq: FloatScaleLinear.Forward: x has %d, y %d elements for %d rows of %d→%d", len(x), len(y), rows, k, n))
	}
	if rows == 0 {
		return
	}
	s, _ := l.pool.Get().(*fsScratch)
	if s == nil {
		s = new(fsScratch)
	}
	defer l.pool.Put(s)
	s.xf, s.xs = grow(s.xf, rows*k), grow(s.xs, rows)
	s.tmp, s.acc = grow(s.tmp, rows*n), grow(s.acc, rows*n)
	quantizeRows(s.xf, s.xs, x, rows, k, l.Act)
	for g := 0; g < ng; g++ {
		gemm.Sgemm(false, true, rows, n, gs, 1, s.xf[g*gs:], k, l.wf[g*gs:], k, 0, s.tmp, n)
		sg := l.scaleT[g*n : (g+1)*n]
		first := g == 0
		parallel.Ranges(rows, 32, func(r0, r1 int) {
			for r := r0; r < r1; r++ {
				t, a := s.tmp[r*n:(r+1)*n], s.acc[r*n:(r+1)*n]
				if first {
					for c := range a {
						a[c] = float32(t[c] * sg[c])
					}
					continue
				}
				for c := range a {
					a[c] += float32(t[c] * sg[c])
				}
			}
		})
	}
	parallel.Ranges(rows, 32, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			xs := s.xs[r]
			a, yr := s.acc[r*n:(r+1)*n], y[r*n:(r+1)*n]
			if l.Bias == nil {
				for c := range yr {
					yr[c] = a[c] * xs
				}
				continue
			}
			for c := range yr {
				// Rounded before the addition, never fused, as quant's references do.
				yr[c] = float32(a[c]*xs) + l.Bias[c]
			}
		}
	})
}

// quantizeRows writes the int8 codes of x [rows×k] as float32 into xf and each row's scale
// into xs, per act (static: the calibrated scale for every row; dynamic: per row).
func quantizeRows(xf, xs, x []float32, rows, k int, act quant.ActQuant) {
	perToken := act.Policy == quant.DynamicPerToken
	parallel.Ranges(rows, 32, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			xr := x[r*k : (r+1)*k]
			sc := act.Scale
			if perToken {
				sc = quant.RowScale(xr) // NaN for a non-finite row: NaN out, detected by calib
			}
			xs[r] = sc
			xo := xf[r*k : (r+1)*k]
			for j, v := range xr {
				xo[j] = float32(quant.QuantizeActValue(v, sc))
			}
		}
	})
}

// FakeActLinear quantize-dequantizes its input to int8 (per Act) and then applies a float
// linear: the W8A8 baseline (with int8-dequantized weights) and a float linear fed int8
// activations.
type FakeActLinear struct {
	Act   quant.ActQuant
	Inner model.Linear
	pool  sync.Pool
}

// In returns the input width.
func (l *FakeActLinear) In() int { return l.Inner.In() }

// Out returns the output width.
func (l *FakeActLinear) Out() int { return l.Inner.Out() }

// Forward fake-quantizes a copy of x and runs the inner linear on it.
func (l *FakeActLinear) Forward(y, x []float32, rows int) {
	k := l.Inner.In()
	bp, _ := l.pool.Get().(*[]float32)
	if bp == nil {
		bp = new([]float32)
	}
	defer l.pool.Put(bp)
	*bp = grow(*bp, rows*k)
	xq := *bp
	perToken := l.Act.Policy == quant.DynamicPerToken
	parallel.Ranges(rows, 32, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			xr, xo := x[r*k:(r+1)*k], xq[r*k:(r+1)*k]
			sc := l.Act.Scale
			if perToken {
				sc = quant.RowScale(xr) // NaN for a non-finite row: NaN out, detected by calib
			}
			for j, v := range xr {
				xo[j] = float32(quant.QuantizeActValue(v, sc)) * sc
			}
		}
	})
	l.Inner.Forward(y, xq, rows)
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func numCPU() int { return runtime.GOMAXPROCS(0) }
