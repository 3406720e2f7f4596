package quant

import (
	"fmt"
	"math"
	"sync"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// This file is the W4A8 GEMM contract: the scalar reference that the CUDA FastGEMM kernel is
// tested against (integer parts bit-exact, float epilogue in a fixed operation order), the
// float-scale variant for comparison, and a fast CPU path for fake-quantized evaluation that
// returns the reference's bits.
//
// For activations x [M×K] (int8, −127..127, scale per tensor or per token) and a weight
// IntScaleWeight [N×K] in groups of G, output y [M×N] is, for each row m and channel c:
//
//	P'_g = Σ_{k∈g} int32(x[m,k]) · int32(16·q[c,k])   (int32; 16·q is the kernel's int8 operand)
//	acc  = Σ_g ŝ[c,g] · P'_g                           (int32, groups in increasing order)
//	y    = float32(acc) * (xs * f_c)                   (float32, round to nearest even)
//
// with xs the activation scale of row m and f_c = ChannelScale[c]/(16·α_c) (EpilogueFactor).
// IntegerScales proves |every partial sum| ≤ Bound[c] ≤ 2³¹−1, so int32 never overflows.

// W4A8GEMMRef computes y [M×N] = the W4A8 GEMM of x [M×K] with w, one output at a time,
// exactly as specified above (M = len(x)/K). xScale has one entry (per-tensor) or M
// (per-token). Alongside the int32 arithmetic it accumulates in int64 and panics if the two
// ever differ or a partial sum leaves int32: the overflow bound was supposed to make that
// impossible, so it is a bug, not bad input. It panics on inconsistent shapes.
func W4A8GEMMRef(x []int8, xScale []float32, w *IntScaleWeight, y []float32) {
	m := checkGEMM("W4A8GEMMRef", len(x), xScale, w.QuantizedWeight, len(y))
	k, n := w.In, w.Out
	acc := make([]int32, n)
	for r := 0; r < m; r++ {
		accRowRef(x[r*k:(r+1)*k], w, r, acc)
		xs := rowScale(xScale, r)
		for c := 0; c < n; c++ {
			y[r*n+c] = float32(acc[c]) * (xs * w.EpilogueFactor(c))
		}
	}
}

// W4A8AccRef writes the int32 accumulators acc [M×N] = Σ_g ŝ[c,g]·P'_g of the W4A8 GEMM of
// x [M×K] with w: the integer part of W4A8GEMMRef (the same code), which a kernel must match
// bit for bit. The CUDA runtime's test cases store it, so that a mismatch is reported in the
// integers before any rounding can hide or blur it. It panics like W4A8GEMMRef.
func W4A8AccRef(x []int8, w *IntScaleWeight, acc []int32) {
	m := checkRows("W4A8AccRef", len(x), w.QuantizedWeight, len(acc))
	k, n := w.In, w.Out
	for r := 0; r < m; r++ {
		accRowRef(x[r*k:(r+1)*k], w, r, acc[r*n:(r+1)*n])
	}
}

// accRowRef computes the accumulators of one row xr (row r, for messages) into acc [N],
// shadowing every int32 operation in int64.
func accRowRef(xr []int8, w *IntScaleWeight, r int, acc []int32) {
	k, n, gs, ng := w.In, w.Out, w.GroupSize, w.NumGroups()
	for c := 0; c < n; c++ {
		qc := w.Q[c*k : (c+1)*k]
		var a int32
		var a64 int64
		for g := 0; g < ng; g++ {
			var p int32
			var p64 int64
			for j := g * gs; j < (g+1)*gs; j++ {
				// The kernel's weight operand: the code in the high nibble of a byte,
				// read as int8, is 16·q (docs/fastgemm-layout.md).
				wq := int32(int8(uint8(qc[j]) << 4))
				p += int32(xr[j]) * wq
				p64 += int64(xr[j]) * int64(wq)
				if p64 != int64(p) {
					panic(overflow(w, r, c, g, "group partial sum", p64))
				}
			}
			s := w.IntScales[c*ng+g]
			if prod := int64(s) * p64; prod != int64(s*p) {
				panic(overflow(w, r, c, g, "product ŝ·P'", prod))
			}
			a += s * p
			a64 += int64(s) * p64
			if a64 != int64(a) {
				panic(overflow(w, r, c, g, "accumulator", a64))
			}
		}
		acc[c] = a
	}
}

func overflow(w *IntScaleWeight, r, c, g int, what string, v int64) string {
	return fmt.Sprintf("quant: W4A8GEMMRef: int32 overflow in the %s of row %d, channel %d, group %d of a %d×%d layer: %d (bound %d)",
		what, r, c, g, w.Out, w.In, v, w.Bound[c])
}

// W4A8GEMMFloatScaleRef is the float-scale variant, for comparison: each group's int32
// partial sum P_g = Σ x·q is converted to float32 and multiplied by its float scale, and the
// products are summed in float32 in group order:
//
//	acc = 0; for g: acc = acc + float32(float32(P_g) * s[c,g]);  y = acc * xs
//
// (each operation rounded to float32, never fused). This is the per-group int-to-float
// conversion that Integer Scale removes from the kernel's inner loop.
func W4A8GEMMFloatScaleRef(x []int8, xScale []float32, w *QuantizedWeight, y []float32) {
	m := checkGEMM("W4A8GEMMFloatScaleRef", len(x), xScale, w, len(y))
	k, n, gs, ng := w.In, w.Out, w.GroupSize, w.NumGroups()
	for r := 0; r < m; r++ {
		xr := x[r*k : (r+1)*k]
		xs := rowScale(xScale, r)
		for c := 0; c < n; c++ {
			qc := w.Q[c*k : (c+1)*k]
			var acc float32
			for g := 0; g < ng; g++ {
				var p int32
				for j := g * gs; j < (g+1)*gs; j++ {
					p += int32(xr[j]) * int32(qc[j])
				}
				acc += float32(float32(p) * w.Scales[c*ng+g])
			}
			y[r*n+c] = acc * xs
		}
	}
}

func rowScale(xScale []float32, r int) float32 {
	if len(xScale) == 1 {
		return xScale[0]
	}
	return xScale[r]
}

// checkGEMM checks the shapes and returns M.
func checkGEMM(name string, nx int, xScale []float32, w *QuantizedWeight, ny int) int {
	m := checkRows(name, nx, w, ny)
	if len(xScale) != 1 && len(xScale) != m {
		panic(fmt.Sprintf("quant: %s: %d activation scales for %d rows, want 1 or %d", name, len(xScale), m, m))
	}
	return m
}

// checkRows checks the weight and the sizes of x [M×K] and the output [M×N] and returns M.
func checkRows(name string, nx int, w *QuantizedWeight, ny int) int {
	if w == nil || w.In <= 0 || w.Out <= 0 || w.GroupSize <= 0 || w.In%w.GroupSize != 0 {
		panic(fmt.Sprintf("quant: %s: malformed weight", name))
	}
	if nx%w.In != 0 {
		panic(fmt.Sprintf("quant: %s: %d activations are not rows of %d", name, nx, w.In))
	}
	m := nx / w.In
	if ny != m*w.Out {
		panic(fmt.Sprintf("quant: %s: output has %d elements, want %d×%d", name, ny, m, w.Out))
	}
	return m
}

// ActQuant says how a linear layer quantizes its input at run time.
//
// LAEStaticPerTensor behaves as StaticPerTensor here: by the time a linear runs, the LAE
// scales are folded into its producer and its weight, and what remains is a static scale for
// the equalized input. Scale is that static scale (ActScale of the calibrated range, after
// LAE for LAEStaticPerTensor); DynamicPerToken ignores it.
type ActQuant struct {
	Policy ActPolicy
	Scale  float32
}

// Validate checks the policy and, for the static policies, the scale.
func (a ActQuant) Validate() error {
	switch a.Policy {
	case StaticPerTensor, LAEStaticPerTensor:
		if !(a.Scale > 0 && a.Scale <= math.MaxFloat32) {
			return fmt.Errorf("quant: %v activation scale %v is not positive and finite", a.Policy, a.Scale)
		}
	case DynamicPerToken:
	default:
		return fmt.Errorf("quant: unknown activation policy %d", int(a.Policy))
	}
	return nil
}

// FakeQuantLinearRef is the scalar reference of fake-quantized evaluation: y [rows×Out] =
// the W4A8 GEMM of the int8 quantization of x [rows×In] (per act) with w, plus the bias if
// any (y = float32(gemm + bias[c]), one rounding). QLinear.Forward returns the same bits.
func FakeQuantLinearRef(x []float32, rows int, act ActQuant, w *IntScaleWeight, bias []float32, y []float32) {
	if err := act.Validate(); err != nil {
		panic(err)
	}
	checkAct(len(x), rows, w.In)
	q := make([]int8, len(x))
	var scales []float32
	if act.Policy == DynamicPerToken {
		scales = make([]float32, rows)
		QuantizeActPerToken(x, rows, w.In, q, scales)
	} else {
		scales = []float32{act.Scale}
		QuantizeActPerTensor(x, act.Scale, q)
	}
	W4A8GEMMRef(q, scales, w, y)
	if bias != nil {
		addBias(y, rows, w.Out, bias)
	}
}

func addBias(y []float32, rows, n int, bias []float32) {
	for r := 0; r < rows; r++ {
		yr := y[r*n : (r+1)*n]
		for c := range yr {
			yr[c] += bias[c]
		}
	}
}

// exactChunk bounds how many int8×int4 products one float32 GEMM may sum. Every partial sum
// of at most n products x·q (|x| ≤ 127, |q| ≤ 7) is an integer of magnitude ≤ 889·n, and
// float32 represents every integer up to 2²⁴ exactly, so for n ≤ 18 870 a float32 GEMM —
// in any summation order, with or without FMA — returns the exact integer. 16384 keeps a
// margin.
const exactChunk = 16384

// engine is the fast W4A8 GEMM. It computes the reference's integers with the float32
// GEMM of package gemm: for each group, P_g = Σ x·q is one float32 GEMM of the float codes
// (exact, see exactChunk; groups larger than exactChunk are summed in exact pieces), then
// acc += ŝ·P_g in int32 and acc·16 is the reference's acc. Integer arithmetic is exact
// within the bound whatever the order, so the result has the reference's bits; the epilogue
// is the reference's expression. This relies only on gemm.Sgemm computing in float32 (any
// order, FMA or not); the tests would catch a kernel that did less.
type engine struct {
	w     *IntScaleWeight
	wf    []float32 // float32(q) [N×K]
	shatT []int32   // ŝ transposed, [NumGroups×N], so the combine loop reads it contiguously
	f     []float32 // EpilogueFactor [N]
	pool  sync.Pool // *scratch
}

type scratch struct {
	xf  []float32 // float codes of x [M×K]
	xs  []float32 // activation scales
	tmp []float32 // one GEMM's output [M×N]
	pg  []int32   // a large group's partial sums [M×N]
	acc []int32   // Σ ŝ·P [M×N]
}

func newEngine(w *IntScaleWeight) *engine {
	n, k, ng := w.Out, w.In, w.NumGroups()
	e := &engine{w: w, wf: make([]float32, n*k), shatT: make([]int32, ng*n), f: make([]float32, n)}
	for i, q := range w.Q {
		e.wf[i] = float32(q)
	}
	for c := 0; c < n; c++ {
		for g := 0; g < ng; g++ {
			e.shatT[g*n+c] = w.IntScales[c*ng+g]
		}
		e.f[c] = w.EpilogueFactor(c)
	}
	return e
}

func (e *engine) scratch(m int) *scratch {
	s, _ := e.pool.Get().(*scratch)
	if s == nil {
		s = new(scratch)
	}
	k, n := e.w.In, e.w.Out
	s.xf = grow(s.xf, m*k)
	s.xs = grow(s.xs, m)
	s.tmp = grow(s.tmp, m*n)
	s.acc = grow(s.acc, m*n)
	if e.w.GroupSize > exactChunk {
		s.pg = grow(s.pg, m*n)
	}
	return s
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// rowsPerBlock is the row block of the scalar loops that run in parallel beside the GEMMs.
const rowsPerBlock = 32

// run computes y [m×N] (+ bias) from the float codes s.xf and scales s.xs (len 1 or m).
// The last group's combine and the epilogue run row by row in one pass, while the row of
// accumulators is in L1.
func (e *engine) run(s *scratch, m int, y, bias []float32) {
	w := e.w
	k, n, gs, ng := w.In, w.Out, w.GroupSize, w.NumGroups()
	for g := 0; g < ng; g++ {
		var tmp []float32
		var pg []int32
		if gs <= exactChunk {
			gemm.Sgemm(false, true, m, n, gs, 1, s.xf[g*gs:], k, e.wf[g*gs:], k, 0, s.tmp, n)
			tmp = s.tmp
		} else {
			for j0 := g * gs; j0 < (g+1)*gs; j0 += exactChunk {
				kc := min(exactChunk, (g+1)*gs-j0)
				gemm.Sgemm(false, true, m, n, kc, 1, s.xf[j0:], k, e.wf[j0:], k, 0, s.tmp, n)
				toInt(s.pg, s.tmp, j0 == g*gs)
			}
			pg = s.pg
		}
		sg := e.shatT[g*n : (g+1)*n]
		first, last := g == 0, g == ng-1
		parallel.Blocks(m, rowsPerBlock, 0, func(r0, r1 int) error {
			for r := r0; r < r1; r++ {
				a := s.acc[r*n : (r+1)*n]
				if tmp != nil {
					combineFloat(a, sg, tmp[r*n:(r+1)*n], first)
				} else {
					combineInt(a, sg, pg[r*n:(r+1)*n], first)
				}
				if last {
					epilogue(y[r*n:(r+1)*n], a, rowScale(s.xs, r), e.f, bias)
				}
			}
			return nil
		})
	}
}

// combineFloat adds ŝ·P to the accumulators (or sets them, for the first group), P read
// from the float GEMM's output, whose values are exact integers.
func combineFloat(a, sg []int32, t []float32, first bool) {
	sg, t = sg[:len(a)], t[:len(a)]
	if first {
		for c := range a {
			a[c] = sg[c] * int32(t[c])
		}
		return
	}
	for c := range a {
		a[c] += sg[c] * int32(t[c])
	}
}

// combineInt is combineFloat for P already summed in int32.
func combineInt(a, sg, p []int32, first bool) {
	sg, p = sg[:len(a)], p[:len(a)]
	if first {
		for c := range a {
			a[c] = sg[c] * p[c]
		}
		return
	}
	for c := range a {
		a[c] += sg[c] * p[c]
	}
}

// epilogue writes one row of outputs from Σ ŝ·P: y = float32(16·Σ) * (xs * f_c), the
// reference's expression (16·Σ is the reference's acc), then + bias after a rounding.
func epilogue(yr []float32, a []int32, xs float32, f, bias []float32) {
	a, f = a[:len(yr)], f[:len(yr)]
	if bias == nil {
		for c := range yr {
			yr[c] = float32(Int4Shift*a[c]) * (xs * f[c])
		}
		return
	}
	bias = bias[:len(yr)]
	for c := range yr {
		// The conversion rounds the product before the addition: no fused multiply-add,
		// as in the reference.
		yr[c] = float32(float32(Int4Shift*a[c])*(xs*f[c])) + bias[c]
	}
}

func toInt(pg []int32, tmp []float32, first bool) {
	if first {
		for i, v := range tmp {
			pg[i] = int32(v)
		}
		return
	}
	for i, v := range tmp {
		pg[i] += int32(v)
	}
}

// W4A8GEMM computes the same y as W4A8GEMMRef, bit for bit, fast: see engine. It converts
// the weight on every call; a layer evaluated repeatedly should be a QLinear, which keeps the
// converted weight. w must be valid (IntegerScales's results are; see Validate): it panics
// otherwise, or on inconsistent shapes.
func W4A8GEMM(x []int8, xScale []float32, w *IntScaleWeight, y []float32) {
	m := checkGEMM("W4A8GEMM", len(x), xScale, w.QuantizedWeight, len(y))
	if err := w.Validate(); err != nil {
		panic(err)
	}
	e := newEngine(w)
	s := e.scratch(m)
	for i, v := range x {
		s.xf[i] = float32(v)
	}
	copy(s.xs, xScale)
	s.xs = s.xs[:len(xScale)]
	e.run(s, m, y, nil)
}

// QLinear is a fake-quantized linear layer for evaluation: Forward quantizes its input to
// int8 per Act and runs the W4A8 GEMM with W, returning exactly FakeQuantLinearRef's bits
// (hence the kernel contract's), with the float GEMM of package gemm doing the integer
// sums. It holds a float32 copy of W's codes (4 bytes per weight, fine for the models
// evaluated on a CPU), so W must not change after NewQLinear. It has the methods of
// model.Linear.
type QLinear struct {
	W    *IntScaleWeight
	Act  ActQuant
	Bias []float32 // nil when the layer has no bias
	eng  *engine
}

// NewQLinear validates w, act and the bias length and prepares the layer.
func NewQLinear(w *IntScaleWeight, act ActQuant, bias []float32) (*QLinear, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if err := act.Validate(); err != nil {
		return nil, err
	}
	if bias != nil && len(bias) != w.Out {
		return nil, fmt.Errorf("quant: NewQLinear: bias has %d elements, want %d", len(bias), w.Out)
	}
	return &QLinear{W: w, Act: act, Bias: bias, eng: newEngine(w)}, nil
}

// In returns the number of input channels.
func (l *QLinear) In() int { return l.W.In }

// Out returns the number of output channels.
func (l *QLinear) Out() int { return l.W.Out }

// Forward computes y [rows×Out] from x [rows×In]. It is safe for concurrent use.
func (l *QLinear) Forward(y, x []float32, rows int) {
	k := l.W.In
	checkAct(len(x), rows, k)
	if len(y) != rows*l.W.Out {
		panic(fmt.Sprintf("quant: QLinear.Forward: output has %d elements, want %d×%d", len(y), rows, l.W.Out))
	}
	if rows == 0 {
		return
	}
	s := l.eng.scratch(rows)
	defer l.eng.pool.Put(s)
	perToken := l.Act.Policy == DynamicPerToken
	if !perToken {
		s.xs = s.xs[:1]
		s.xs[0] = l.Act.Scale
	}
	parallel.Blocks(rows, rowsPerBlock, 0, func(r0, r1 int) error {
		for r := r0; r < r1; r++ {
			xr := x[r*k : (r+1)*k]
			sc := l.Act.Scale
			if perToken {
				sc = RowScale(xr) // NaN for a non-finite row: its output is NaN, not a panic
				s.xs[r] = sc
			}
			xf := s.xf[r*k : (r+1)*k]
			for j, v := range xr {
				xf[j] = float32(QuantizeActValue(v, sc))
			}
		}
		return nil
	})
	l.eng.run(s, rows, y, l.Bias)
}
