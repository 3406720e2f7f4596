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
// GEMM of package gemm: for each group, P_g = Σ x·q is one float32 product of the float
// codes (exact, see exactChunk; groups larger than exactChunk are summed in exact pieces),
// then acc += ŝ·P_g in int32 and acc·16 is the reference's acc. Integer arithmetic is exact
// within the bound whatever the order, so the result has the reference's bits; the epilogue
// is the reference's expression. This relies only on gemm computing in float32 (any order,
// FMA or not); the tests would catch a kernel that did less.
//
// The per-group sums cannot be merged into one product over the whole K by folding ŝ into
// the weight codes: float32 sums of x·ŝq are exact only below 2²⁴, and IntegerScales picks
// the largest amplifier whose int32 accumulator 16·Σŝ|P| stays within 2³¹, i.e. sums up to
// 2²⁷ (127·7·128·ŝ per group with ŝ up to α = 2¹⁰ passes 2²⁴ after a few groups). So the
// work is one k = 128 product per group, and what it costs beyond its multiply-adds is
// memory: see tileRows and packPanel.
type engine struct {
	w     *IntScaleWeight
	wp    []float32 // float32(q) packed for gemm.MulPacked as the B operand (see packPanel)
	np    int       // N rounded up to the kernel's nr
	shatT []int32   // ŝ transposed, [NumGroups×N], so the combine loop reads it contiguously
	f     []float32 // EpilogueFactor [N]
	mr    int       // the kernel's tile (gemm.Tile)
	nr    int
	tr    int // tileRows and tileCols rounded up to multiples of mr and nr
	tc    int
}

// scratchPool holds the engines' *scratch, shared by all of them: the calibration runs each
// linear of a layer once per chunk of windows, and with one pool per engine every linear
// faulted in its own packed activations (64–180 MB at 7B, a chunk of 4096 rows) on its
// first call, which cost more than packing them. Shared, the next linear reuses the pages.
var scratchPool sync.Pool

type scratch struct {
	xp    []float32   // the float codes of x [M×K], packed as gemm.MulPacked's A operand
	xs    []float32   // activation scales
	row   [][]float32 // per worker: one micro-panel's rows of codes, for packPanel
	tiles []tileScratch
}

// tileScratch is one worker's buffers for one C tile (tileRows×tileCols at most).
type tileScratch struct {
	tmp []float32 // one product's output
	pg  []int32   // a large group's partial sums
	acc []int32   // Σ ŝ·P
}

// The C tile of run, before rounding up to the kernel's tile. Per group, k is only the
// group size (128), so each output element gets 128 multiply-adds per store: computed over
// the whole M×N output (180 MB for a 4096-row chunk of a 7B MLP linear) and read back by the
// combine, once per group, the output's memory traffic made the per-group products run at
// half the float GEMM's speed and the combine cost as much again. A tile's float output and
// int32 accumulators, with the panels of one group (168×128 and 256×128 floats), take about
// 560 KiB, within a core's L2, so the combine reads what the product has just written.
const (
	tileRows = 168
	tileCols = 256
)

// The engine's packed layout of an R×K operand (activations: w = the kernel's mr; weights:
// w = nr), R rounded up to rp, a multiple of w: the columns are cut into segments, one per
// group (or per exactChunk piece of a larger group), and segment [j0, j0+kw) holds
// gemm.MulPacked's micro-panels of w rows × kw steps at [j0·rp:], so element (r, j) is at
// j0·rp + (r/w)·w·kw + (j−j0)·w + r%w (packIndex in the tests). A tile's product for one group
// thus reads its panels in place, packed once: the weights per layer, the activations per
// call. With Sgemm, which packs both operands on every call, packing (a transposing copy
// whose source rows are a K-wide stride, a page, apart) took a third of the multiply-adds'
// time at k = 128.

// packPanel writes micro-panel p (rows [p·w, p·w+w)) of an operand of K columns into its
// packed layout dst (see above), from buf holding those w rows, row i at [i·ld:] (zeros past
// the operand's last row): element (p·w+i, j) = buf[i·ld+j], written in the order of dst, so
// that the stores are sequential. (Written row by row instead, each store went to its own
// cache line.) The reads go down a column of buf, so ld should not be a multiple of 4 KiB
// / 4: see panelLd.
func packPanel(dst, buf []float32, k, ld, p, rp, w, gs int) {
	for g0 := 0; g0 < k; g0 += gs {
		for j0 := g0; j0 < g0+gs; j0 += exactChunk {
			kw := min(exactChunk, g0+gs-j0)
			d := dst[j0*rp+p*w*kw:][:kw*w]
			for jj := range kw {
				dj := d[jj*w : jj*w+w]
				for i := range dj {
					dj[i] = buf[i*ld+j0+jj]
				}
			}
		}
	}
}

// panelLd is the row stride of packPanel's buffer for K columns: K = 4096 floats put the w
// rows that packPanel reads together 16 KiB apart, all in one L1 set (more rows than the
// set has ways), and the packing ran at tens of ns per element; one extra cache line per
// row spreads them over the sets.
func panelLd(k int) int { return roundUp(k, 16) + 16 }

func roundUp(n, m int) int { return (n + m - 1) / m * m }

func newEngine(w *IntScaleWeight) *engine {
	n, k, ng := w.Out, w.In, w.NumGroups()
	mr, nr := gemm.Tile()
	e := &engine{w: w, np: roundUp(n, nr), shatT: make([]int32, ng*n), f: make([]float32, n),
		mr: mr, nr: nr, tr: roundUp(tileRows, mr), tc: roundUp(tileCols, nr)}
	e.wp = make([]float32, e.np*k)
	ld := panelLd(k)
	bufs := make([][]float32, parallel.Workers(e.np/nr))
	parallel.For(e.np/nr, func(worker, p int) {
		if bufs[worker] == nil {
			bufs[worker] = make([]float32, nr*ld)
		}
		buf := bufs[worker]
		for i := range nr {
			row := buf[i*ld : i*ld+k]
			c := p*nr + i
			if c >= n {
				clear(row) // the padding channels: zeros
				continue
			}
			for j, q := range w.Q[c*k : (c+1)*k] {
				row[j] = float32(q)
			}
		}
		packPanel(e.wp, buf, k, ld, p, e.np, nr, w.GroupSize)
	})
	for c := 0; c < n; c++ {
		for g := 0; g < ng; g++ {
			e.shatT[g*n+c] = w.IntScales[c*ng+g]
		}
		e.f[c] = w.EpilogueFactor(c)
	}
	return e
}

// scratch returns buffers for m rows.
func (e *engine) scratch(m int) *scratch {
	s, _ := scratchPool.Get().(*scratch)
	if s == nil {
		s = new(scratch)
	}
	s.xp = grow(s.xp, roundUp(m, e.mr)*e.w.In)
	s.xs = grow(s.xs, m)
	return s
}

// packRows fills the packed activations' m rows, one micro-panel (mr rows) at a time:
// codes writes row r's float codes (K values) into a per-worker buffer, which packPanel
// then lays out.
func (e *engine) packRows(s *scratch, m int, codes func(r int, row []float32)) {
	k, mr := e.w.In, e.mr
	ld := panelLd(k)
	panels := (m + mr - 1) / mr
	s.row = grow(s.row, parallel.Workers(panels))
	parallel.For(panels, func(worker, p int) {
		buf := grow(s.row[worker], mr*ld)
		s.row[worker] = buf
		for i := range mr {
			if r := p*mr + i; r < m {
				codes(r, buf[i*ld:i*ld+k])
			} else {
				clear(buf[i*ld : i*ld+k]) // the padding rows: zeros
			}
		}
		packPanel(s.xp, buf, k, ld, p, panels*mr, mr, e.w.GroupSize)
	})
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// run computes y [m×N] (+ bias) from the packed codes s.xp and scales s.xs (len 1 or m),
// one C tile at a time (see tileRows): for each group, the tile's product on one goroutine,
// then its combine into the tile's accumulators while both are in cache, and after the last
// group the epilogue. The workers take whole tiles, the tiles of one column block in a row,
// so that its weight panels (256 columns × K) are read from the shared cache after the
// first.
func (e *engine) run(s *scratch, m int, y, bias []float32) {
	n := e.w.Out
	rowTiles := (m + e.tr - 1) / e.tr
	nt := rowTiles * ((n + e.tc - 1) / e.tc)
	s.tiles = grow(s.tiles, parallel.Workers(nt))
	parallel.For(nt, func(worker, i int) {
		r0, c0 := i%rowTiles*e.tr, i/rowTiles*e.tc
		e.tile(&s.tiles[worker], s, m, r0, min(r0+e.tr, m), c0, min(c0+e.tc, n), y, bias)
	})
}

// tile computes rows [r0, r1) × columns [c0, c1) of y [m×N].
func (e *engine) tile(ts *tileScratch, s *scratch, m, r0, r1, c0, c1 int, y, bias []float32) {
	w := e.w
	n, gs, ng := w.Out, w.GroupSize, w.NumGroups()
	mp := roundUp(m, e.mr)
	tm, tn := r1-r0, c1-c0
	ts.tmp = grow(ts.tmp, tm*tn)
	ts.acc = grow(ts.acc, tm*tn)
	if gs > exactChunk {
		ts.pg = grow(ts.pg, tm*tn)
	}
	for g := 0; g < ng; g++ {
		first := g == 0
		sg := e.shatT[g*n+c0 : g*n+c1]
		g0 := g * gs
		if gs <= exactChunk {
			gemm.MulPacked(tm, tn, gs, s.xp[g0*mp+r0*gs:], e.wp[g0*e.np+c0*gs:], ts.tmp, tn)
			for r := 0; r < tm; r++ {
				combineFloat(ts.acc[r*tn:(r+1)*tn], sg, ts.tmp[r*tn:(r+1)*tn], first)
			}
			continue
		}
		for j0 := g0; j0 < g0+gs; j0 += exactChunk {
			kw := min(exactChunk, g0+gs-j0)
			gemm.MulPacked(tm, tn, kw, s.xp[j0*mp+r0*kw:], e.wp[j0*e.np+c0*kw:], ts.tmp, tn)
			toInt(ts.pg, ts.tmp, j0 == g0)
		}
		for r := 0; r < tm; r++ {
			combineInt(ts.acc[r*tn:(r+1)*tn], sg, ts.pg[r*tn:(r+1)*tn], first)
		}
	}
	var bt []float32
	if bias != nil {
		bt = bias[c0:c1]
	}
	for r := 0; r < tm; r++ {
		epilogue(y[(r0+r)*n+c0:(r0+r)*n+c1], ts.acc[r*tn:(r+1)*tn], rowScale(s.xs, r0+r), e.f[c0:c1], bt)
	}
}

// combineFloatGo adds ŝ·P to the accumulators (or sets them, for the first group), P read
// from the float GEMM's output, whose values are exact integers. combineFloat is this, on
// the vector unit where there is one (combine_amd64.go).
func combineFloatGo(a, sg []int32, t []float32, first bool) {
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
	e.packRows(s, m, func(r int, row []float32) {
		for j, v := range x[r*w.In : (r+1)*w.In] {
			row[j] = float32(v)
		}
	})
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
	defer scratchPool.Put(s)
	perToken := l.Act.Policy == DynamicPerToken
	if !perToken {
		s.xs = s.xs[:1]
		s.xs[0] = l.Act.Scale
	}
	l.eng.packRows(s, rows, func(r int, row []float32) {
		xr := x[r*k : (r+1)*k]
		sc := l.Act.Scale
		if perToken {
			sc = RowScale(xr) // NaN for a non-finite row: its output is NaN, not a panic
			s.xs[r] = sc
		}
		for j, v := range xr {
			row[j] = float32(QuantizeActValue(v, sc))
		}
	})
	l.eng.run(s, rows, y, l.Bias)
}
