package gpu

import (
	"fmt"
	"math"
	"strconv"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/quant"
)

// KindW4A16 is the weight-only case kind: int4 weights (the w4a8 cases' weight tensors) times
// fp16 activations, the w4a16-gptq preset's kernel (docs/gemm-cases.md).
const KindW4A16 = "w4a16"

// w4a16Spec is one W4A16 GEMM case. gs == k means per-channel.
type w4a16Spec struct {
	m, n, k, gs int
	bias        bool
	note        string
}

func (s w4a16Spec) name() string {
	g := "g" + strconv.Itoa(s.gs)
	if s.gs == s.k {
		g = "pc"
	}
	name := fmt.Sprintf("w4a16_m%d_n%d_k%d_%s", s.m, s.n, s.k, g)
	if s.bias {
		name += "_bias"
	}
	return name
}

// w4a16CaseSet is the default set of W4A16 cases: every M of {1, 2, 3, 4, 16, 17, 64, 257} (decode,
// at and past the 16-row tile, a prefill-like 257), every N of {8, 72, 136, 264} (one mma
// tile, past the 64/128-column blocks), every K of {128, 384, 1024}, group sizes 32, 64, 128
// and per-channel, half of them with bias; and the corners of the decode GEMVs (w4a16_gemv,
// GEMV 2). About 4 MB.
func w4a16CaseSet() []w4a16Spec {
	return []w4a16Spec{
		{m: 1, n: 8, k: 128, gs: 128, note: "decode, the smallest weight (one tile, one K block, per-channel)"},
		{m: 1, n: 136, k: 384, gs: 32, note: "decode, groups of 32, N past the 128-column block"},
		{m: 1, n: 264, k: 1024, gs: 128, bias: true, note: "decode, long K, g128 (the preset's shape)"},
		{m: 3, n: 72, k: 384, gs: 128, bias: true, note: "decode batch of 3, N past the 64-column block"},
		{m: 3, n: 264, k: 1024, gs: 64, note: "decode batch of 3, long K, groups of 64"},
		{m: 3, n: 8, k: 1024, gs: 1024, note: "per-channel over long K"},
		{m: 16, n: 136, k: 1024, gs: 32, bias: true, note: "one 16-row tile, 32 groups of 32"},
		{m: 16, n: 72, k: 128, gs: 32, note: "one 16-row tile, one K block of 4 groups"},
		{m: 16, n: 264, k: 128, gs: 128, bias: true, note: "one 16-row tile, per-channel with K = 128"},
		{m: 17, n: 136, k: 384, gs: 64, note: "M one past the 16-row tile"},
		{m: 17, n: 8, k: 384, gs: 384, bias: true, note: "M one past the 16-row tile, per-channel"},
		{m: 64, n: 264, k: 384, gs: 128, note: "four row tiles"},
		{m: 64, n: 72, k: 1024, gs: 1024, bias: true, note: "four row tiles, per-channel over long K"},
		{m: 257, n: 136, k: 128, gs: 64, bias: true, note: "prefill-like M, one K block"},
		{m: 257, n: 264, k: 1024, gs: 128, note: "prefill-like M, long K, g128"},
		{m: 257, n: 8, k: 384, gs: 32, note: "prefill-like M on one column tile, groups of 32"},
		// Decode GEMV (config w4a16_gemv, M <= 4): every M, N not a multiple of 16 (the second
		// 8-column strip of the last block is padding), K not a multiple of the GEMV's
		// 8 warps × 4 blocks, long K with each group size.
		{m: 2, n: 100, k: 640, gs: 32, bias: true, note: "GEMV: M = 2, N = 100 (13 strips), groups of 32"},
		{m: 4, n: 24, k: 11008, gs: 128, note: "GEMV: M = 4, K = 11008 (86 blocks, not a multiple of 32)"},
		{m: 4, n: 40, k: 4096, gs: 4096, bias: true, note: "GEMV: M = 4, per-channel over long K"},
		{m: 1, n: 56, k: 4096, gs: 64, note: "GEMV: M = 1, long K, groups of 64"},
		// Decode GEMV 2 (configs w4a16_gemv2_s2/s4/s8, M <= 16): M = 8 and 9 (one x fragment of
		// 8 rows full, a second one with one row), M = 12 and 16 (the second fragment partly and
		// wholly used), strip counts that leave the last block of 2, 4 and 8 strips partial, K
		// blocks that leave a partial round (33 = 32 + 1 for s2's 8 warps x 4, 9 = 8 + 1 for s8's
		// 8 x 1 at groups of 32), each group kind.
		{m: 8, n: 200, k: 4224, gs: 128, bias: true, note: "GEMV 2: M = 8, 25 strips, 33 K blocks"},
		{m: 9, n: 72, k: 1152, gs: 32, note: "GEMV 2: M = 9, 9 strips, groups of 32 (one K block per round)"},
		{m: 12, n: 40, k: 2048, gs: 2048, bias: true, note: "GEMV 2: M = 12, per-channel over long K"},
		{m: 16, n: 136, k: 4096, gs: 64, note: "GEMV 2: M = 16, 17 strips, long K, groups of 64"},
	}
}

// w4a16Case holds a W4A16 case in memory, for writing and for tests.
type w4a16Case struct {
	spec w4a16Spec
	w    *quant.IntScaleWeight
	x    []uint16  // fp16 bits, [M, K]
	bias []float32 // nil without bias
	y    []uint16  // fp16 bits, [M, N]
	yAbs []float32 // [M, N]
}

// w4a16XMax bounds |x|: with it every fp16 x is a multiple of 2⁻²⁴ below 2⁶ = 2³⁰ units, so
// Σ_k |x·q|·ŝ stays below 2³⁰·7·K·1024 ≤ 2⁵³ units for K ≤ 1024: the int64 sums below cannot
// overflow and are exact in float64.
const w4a16XMax = 64

// newW4A16Case draws the inputs and computes the expected results. The weight is drawn and
// converted exactly as a w4a8 case's (randWeight, quant.RTN, quant.IntegerScales with the
// default amplifier rule). x is uniform in ±4 with about 10% exact zeros (a few −0) and 1% larger
// values up to ±64; for M ≥ 3 row 1 is all zero (y = bias), and for M ≥ 2 the last row is
// 4·sign(q) of channel 0 (its accumulation without cancellation).
//
// The sums are taken exactly, in integers counting units of 2⁻²⁴ (every fp16 value is a whole
// number of them): acc = Σ_g ŝ[g,c]·Σ_{k∈g} x·q, exact and below 2⁵³ (checked), so it is the
// same number as the float64 sum of docs/gemm-cases.md in any order. Then y = acc·(16·f_c)
// (+ bias) in float64, rounded once to fp16 by float64ToHalf; y_abs = Σ|x·q|·ŝ·16·f_c, rounded
// once to float32.
func newW4A16Case(s w4a16Spec, seed uint64) (*w4a16Case, error) {
	if s.k%128 != 0 || s.k%s.gs != 0 || s.k > 16384 {
		return nil, fmt.Errorf("bad shape k = %d, group size %d", s.k, s.gs)
	}
	r := caseRand(seed, s.name())
	qw, err := quant.RTN(randWeight(r, w4a8Spec{m: s.m, n: s.n, k: s.k, gs: s.gs}), s.n, s.k, s.gs, quant.RTNOptions{})
	if err != nil {
		return nil, err
	}
	w, err := quant.IntegerScales(qw, quant.AmplifierRule{})
	if err != nil {
		return nil, err
	}
	c := &w4a16Case{spec: s, w: w, x: make([]uint16, s.m*s.k)}
	for i := range c.x {
		var v float64
		switch u := r.IntN(100); {
		case u < 9:
			v = 0
		case u < 10:
			v = math.Copysign(0, -1)
		case u < 11:
			v = 4 + float64((w4a16XMax-4)*r.Float64())
			if r.IntN(2) == 0 {
				v = -v
			}
		default:
			v = float64(8*r.Float64()) - 4
		}
		c.x[i] = safetensors.Float32ToHalf(float32(v))
	}
	if s.m >= 3 {
		clear(c.x[s.k : 2*s.k])
	}
	if s.m >= 2 {
		xr := c.x[(s.m-1)*s.k:]
		for k := range xr {
			switch q := w.Q[k]; {
			case q > 0:
				xr[k] = 0x4400 // 4
			case q < 0:
				xr[k] = 0xc400 // −4
			default:
				xr[k] = 0
			}
		}
	}
	if s.bias {
		c.bias = make([]float32, s.n)
		for i := range c.bias {
			c.bias[i] = float32(r.NormFloat64())
		}
	}
	// x in units of 2⁻²⁴.
	xu := make([]int64, len(c.x))
	for i, h := range c.x {
		f := float64(safetensors.HalfToFloat32(h))
		if math.Abs(f) > w4a16XMax {
			return nil, fmt.Errorf("x[%d] = %v is beyond ±%d", i, f, w4a16XMax)
		}
		xu[i] = int64(f * 0x1p24) // exact
	}
	ng := w.NumGroups()
	c.y = make([]uint16, s.m*s.n)
	c.yAbs = make([]float32, s.m*s.n)
	for row := 0; row < s.m; row++ {
		xr := xu[row*s.k : (row+1)*s.k]
		for col := 0; col < s.n; col++ {
			q := w.Q[col*s.k : (col+1)*s.k]
			var acc, abs int64
			for g := 0; g < ng; g++ {
				var p, pa int64
				for k := g * s.gs; k < (g+1)*s.gs; k++ {
					t := xr[k] * int64(q[k])
					p += t
					pa += max(t, -t)
				}
				sh := int64(w.IntScales[col*ng+g])
				acc += sh * p
				abs += sh * pa
			}
			if abs >= 1<<53 {
				return nil, fmt.Errorf("[%d, %d]: Σ|x·q|·ŝ = %d units of 2⁻²⁴ is not exact in float64", row, col, abs)
			}
			f := 16 * float64(w.EpilogueFactor(col)) // exact
			v := float64(float64(acc) * 0x1p-24 * f) // the first product is exact
			if c.bias != nil {
				v += float64(c.bias[col])
			}
			h := float64ToHalf(v)
			if h&0x7c00 == 0x7c00 {
				return nil, fmt.Errorf("output [%d, %d] = %v is beyond fp16's range: the case's scales are wrong", row, col, v)
			}
			c.y[row*s.n+col] = h
			c.yAbs[row*s.n+col] = float32(float64(abs) * 0x1p-24 * f)
		}
	}
	return c, nil
}

func buildW4A16Case(s w4a16Spec, seed uint64) (*caseFile, error) {
	c, err := newW4A16Case(s, seed)
	if err != nil {
		return nil, err
	}
	return c.file(seed), nil
}

// file lays the case out as docs/gemm-cases.md specifies: the w4a8 weight tensors without the
// float-scale operand, x, y and y_abs.
func (c *w4a16Case) file(seed uint64) *caseFile {
	s, w := c.spec, c.w
	np, kp := quant.PackedDims(s.n, s.k)
	ng := w.NumGroups()
	gsc := make([]int16, ng*np)
	chs := make([]float32, np)
	for col := 0; col < s.n; col++ {
		for g := 0; g < ng; g++ {
			gsc[g*np+col] = int16(w.IntScales[col*ng+g])
		}
		chs[col] = w.EpilogueFactor(col)
	}
	f := &caseFile{meta: map[string]string{
		"kind": KindW4A16, "m": strconv.Itoa(s.m), "n": strconv.Itoa(s.n), "k": strconv.Itoa(s.k),
		"group_size": strconv.Itoa(s.gs), "per_channel": strconv.FormatBool(s.gs == s.k), "act": "none",
		"seed": strconv.FormatUint(seed, 10), "note": s.note,
	}}
	f.add("x", safetensors.F16, u16Bytes(c.x), s.m, s.k)
	f.add("qweight", safetensors.U8, quant.PackInt4(w.Q, s.n, s.k), np/8, kp/128, 32, 16)
	f.add("group_scale", safetensors.I16, i16Bytes(gsc), ng, np)
	f.add("channel_scale", safetensors.F32, f32Bytes(chs), np)
	if c.bias != nil {
		f.add("bias", safetensors.F32, f32Bytes(c.bias), s.n)
	}
	f.add("y", safetensors.F16, u16Bytes(c.y), s.m, s.n)
	f.add("y_abs", safetensors.F32, f32Bytes(c.yAbs), s.m, s.n)
	return f
}

// float64ToHalf converts v to IEEE 754 binary16 bits, rounding once to nearest with ties to
// even. safetensors.Float32ToHalf(float32(v)) rounds twice and can differ: 1 + 2⁻¹¹ + 2⁻⁴⁰
// rounds to the tie 1 + 2⁻¹¹ in float32, then to 1 (even), where the nearest half is 1 + 2⁻¹⁰.
// Values beyond the half range become ±Inf, values at most half the smallest subnormal ±0, NaN
// a quiet NaN.
func float64ToHalf(v float64) uint16 {
	u := math.Float64bits(v)
	sign := uint16(u>>48) & 0x8000
	bexp := int(u>>52) & 0x7ff
	mant := u & (1<<52 - 1)
	switch {
	case bexp == 0x7ff:
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>42)&0x3ff
		}
		return sign | 0x7c00
	case bexp == 0:
		return sign // float64 subnormals are far below half the smallest fp16 subnormal
	}
	sig := mant | 1<<52 // v = ±sig·2^(e−52)
	e := bexp - 1023
	if e < -14 {
		// Subnormal result: the count of 2⁻²⁴ units, sig·2^(e−52+24), rounded. It may round
		// up to 1024, which is the encoding of the smallest normal 2⁻¹⁴.
		return sign | uint16(shiftRNE(sig, uint(28-e)))
	}
	r := shiftRNE(sig, 42) // 10 fraction bits kept: r in [1024, 2048]
	if r == 2048 {
		r, e = 1024, e+1
	}
	if e > 15 {
		return sign | 0x7c00
	}
	return sign | uint16(e+15)<<10 | uint16(r-1024)
}

// shiftRNE returns x/2^s rounded to nearest, ties to even, for x < 2⁶³.
func shiftRNE(x uint64, s uint) uint64 {
	if s == 0 {
		return x
	}
	if s >= 64 {
		return 0 // x/2^s < 1/2
	}
	q, rem, half := x>>s, x&(1<<s-1), uint64(1)<<(s-1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return q
}
