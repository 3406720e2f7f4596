package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// flashCommConfigs are the codecs the property tests cover.
func flashCommConfigs() []FlashComm {
	var cs []FlashComm
	for _, bits := range []int{8, 4} {
		for _, g := range []int{32, 64, 128} {
			for _, sym := range []bool{false, true} {
				cs = append(cs, FlashComm{Bits: bits, Group: g, Symmetric: sym})
			}
		}
	}
	return append(cs, FlashComm{Bits: 16})
}

func (c FlashComm) String() string {
	if c.Bits == 16 {
		return "fp32-control"
	}
	kind := "asym"
	if c.Symmetric {
		kind = "sym"
	}
	return fmt.Sprintf("int%d-g%d-%s", c.Bits, c.Group, kind)
}

// randomPartials draws rank partials with varied magnitudes per row, outlier columns, a
// constant group and a row of subnormals, which exercise the scale rules.
func randomPartials(rng *rand.Rand, n, rows, width int) [][]float32 {
	ps := make([][]float32, n)
	for i := range ps {
		p := make([]float32, rows*width)
		for r := 0; r < rows; r++ {
			mag := math.Ldexp(1, rng.IntN(24)-12)
			for k := 0; k < width; k++ {
				v := rng.NormFloat64() * mag
				if rng.IntN(50) == 0 {
					v *= 1000 // outlier
				}
				p[r*width+k] = float32(v)
			}
		}
		if rows > 1 { // a constant stretch
			for k := 0; k < min(width, 64); k++ {
				p[width+k] = 3.25
			}
		}
		if rows > 2 { // subnormals
			for k := 0; k < width; k++ {
				p[2*width+k] = float32(rng.NormFloat64()) * 0x1p-140
			}
		}
		ps[i] = p
	}
	return ps
}

const (
	unitRoundoff = 0x1p-24
	tinyTerm     = 0x1p-116 // absolute term of one quantization (docs/flash-communication.md)
)

// quantErr is the bound on |deq(quant(v)) − v| for a value of a group with scale s and
// largest magnitude m: 0.5·s + 10u·m + 2^-116.
func quantErr(s, m float32) float64 {
	return 0.5*float64(s) + 10*unitRoundoff*float64(m) + tinyTerm
}

func groupMaxAbs(v []float32) float32 {
	var m float32
	for _, x := range v {
		m = max(m, abs32(x))
	}
	return m
}

// specReduce recomputes step 3 for one group position from the specification, written
// independently of reduceGroup (the integer scales through float64 rather than bit fields):
// E, the largest biased exponent of the scales (1 for subnormals); m_i = s_i·2^(146−E) rounded
// to the nearest integer, ties to even;
// acc = Σ_i q_i·m_i; y = fl32(fl32(acc)·2^(E−146)); L the float32 sum of the minima in rank
// order from +0; t = fl32(y + L) (asymmetric) or y. It returns y, t and E.
func specReduce(c FlashComm, codes [][]int16, scales, los []float32) (y, t []float32, e int) {
	e = 1
	for _, s := range scales {
		e = max(e, int(math.Float32bits(s)>>23)&0xff)
	}
	m := make([]int64, len(scales))
	for i, s := range scales {
		m[i] = int64(math.RoundToEven(math.Ldexp(float64(s), 146-e))) // exact in float64
	}
	p := float32(math.Ldexp(1, e-146))
	var l float32
	for _, lo := range los {
		l = float32(l + lo)
	}
	g := len(codes[0])
	y, t = make([]float32, g), make([]float32, g)
	for k := range g {
		var acc int64
		for i := range codes {
			acc += int64(codes[i][k]) * m[i]
		}
		y[k] = float32(float32(float64(acc)) * p)
		t[k] = y[k]
		if !c.Symmetric {
			t[k] = float32(y[k] + l)
		}
	}
	return y, t, e
}

// flashCommBound returns, for every element, the bound of docs/flash-communication.md on
// |out − Σ_i x_i|, and the output recomputed from the specification (specReduce):
//
//	Σ_i E1_i + N·Qmax·2^(E−147) + u·|y| + 2^−150 + E2                      (symmetric)
//	  + γ_{N−1}·Σ_i |lo_i| + (N−1)·2^−149 + u·|t| + 2^−150                  (asymmetric)
//
// with E1_i = E(s_i, M_i) the first quantization of rank i's group, E the largest exponent of
// the ranks' scales, y and t step 3's values and E2 = E(s₂, M₂) the requantization of t's group.
// The control's bound is γ_{N−1}·Σ_i |x_i| + (N−1)·2^−149.
func flashCommBound(c FlashComm, ps [][]float32, rows, width int) (bound []float64, want []float32) {
	n := len(ps)
	gamma := float64(n-1) * unitRoundoff / (1 - float64(n-1)*unitRoundoff)
	b := make([]float64, rows*width)
	want = make([]float32, rows*width)
	if c.Bits == 16 {
		for k := range b {
			var s float64
			for _, p := range ps {
				s += math.Abs(float64(p[k]))
				want[k] = float32(want[k] + p[k])
			}
			b[k] = gamma*s + float64(n-1)*0x1p-149
		}
		return b, want
	}
	g := c.Group
	qmax := float64(c.qmax())
	codes := make([][]int16, n)
	for i := range codes {
		codes[i] = make([]int16, g)
	}
	scales, los := make([]float32, n), make([]float32, n)
	q2 := make([]int16, g)
	for o := 0; o < rows*width; o += g {
		var e1, sumLo float64
		for i, p := range ps {
			scales[i], los[i] = c.QuantizeGroup(codes[i], p[o:o+g])
			e1 += quantErr(scales[i], groupMaxAbs(p[o:o+g]))
			sumLo += math.Abs(float64(los[i]))
		}
		y, t, e := specReduce(c, codes, scales, los)
		s2, lo2 := c.QuantizeGroup(q2, t)
		c.DequantizeGroup(want[o:o+g], q2, s2, lo2)
		e2 := quantErr(s2, groupMaxAbs(t))
		scaleRound := float64(n) * qmax * math.Ldexp(1, e-147)
		for k := range g {
			b[o+k] = e1 + scaleRound + unitRoundoff*math.Abs(float64(y[k])) + 0x1p-150 + e2
			if !c.Symmetric {
				b[o+k] += gamma*sumLo + float64(n-1)*0x1p-149 + unitRoundoff*math.Abs(float64(t[k])) + 0x1p-150
			}
		}
	}
	return b, want
}

// checkFlashComm runs both paths and checks: every rank bit-identical, the fast path
// bit-identical to the ranks and to the test's own recomputation of the specification, every
// error within the bound. It returns the largest ratio
// error/bound.
func checkFlashComm(t *testing.T, c FlashComm, ps [][]float32, rows, width int) float64 {
	t.Helper()
	outs, err := c.AllReduceRanks(ps, rows, width)
	if err != nil {
		t.Fatalf("%v: AllReduceRanks: %v", c, err)
	}
	fast := make([]float32, rows*width)
	if err := c.AllReduce(fast, ps, rows, width); err != nil {
		t.Fatalf("%v: AllReduce: %v", c, err)
	}
	for k, o := range outs {
		for e := range o {
			if math.Float32bits(o[e]) != math.Float32bits(outs[0][e]) {
				t.Fatalf("%v N=%d: rank %d element %d is %v, rank 0 has %v", c, len(ps), k, e, o[e], outs[0][e])
			}
		}
	}
	for e := range fast {
		if math.Float32bits(fast[e]) != math.Float32bits(outs[0][e]) {
			t.Fatalf("%v N=%d: AllReduce element %d is %v, AllReduceRanks %v", c, len(ps), e, fast[e], outs[0][e])
		}
	}
	bound, want := flashCommBound(c, ps, rows, width)
	worst := 0.0
	for e := range fast {
		if math.Float32bits(fast[e]) != math.Float32bits(want[e]) {
			t.Fatalf("%v N=%d: element %d is %v, the specification recomputed by the test gives %v", c, len(ps), e, fast[e], want[e])
		}
		var exact, sabs float64
		for _, p := range ps {
			exact += float64(p[e])
			sabs += math.Abs(float64(p[e]))
		}
		got := math.Abs(float64(fast[e]) - exact)
		lim := bound[e] + 0x1p-50*sabs // float64 rounding of the reference sum
		if !(got <= lim) {
			t.Fatalf("%v N=%d element %d (row %d col %d): error %g exceeds the bound %g", c, len(ps), e, e/width, e%width, got, lim)
		}
		worst = max(worst, got/lim)
	}
	return worst
}

func TestFlashCommRanksAgreeAndBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range flashCommConfigs() {
		worst := 0.0
		for _, n := range []int{1, 2, 4, 8} {
			g := max(c.Group, 8)
			width := n * 2 * g // two groups per chunk
			rows := 5
			ps := randomPartials(rng, n, rows, width)
			worst = max(worst, checkFlashComm(t, c, ps, rows, width))
		}
		t.Logf("%v: largest error / bound = %.3f", c, worst)
	}
}

// TestFlashCommOnGrid builds partials whose groups lie exactly on their grids (power-of-two
// scales, every group reaching both ends of its code range) and whose sums lie on the sum's
// grid, so the compressed all-reduce must return the exact sum. Step 3 is exact on them too:
// the ranks' scales at a group position are the same power of two, so every integer scale m_i
// is exactly 2^19 and m_i·2^(E−146) = s_i (power-of-two scales within 2^20 of each other would
// do as well), the integer sum is exact, its conversion to float32 too (|Σq_i| < 2^11), and the
// minima and their sum are multiples of s well within 24 bits.
func TestFlashCommOnGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range flashCommConfigs() {
		if c.Bits == 16 {
			continue
		}
		for _, n := range []int{1, 2, 4, 8} {
			for trial := 0; trial < 4; trial++ {
				rows, width := 3, n*2*c.Group
				ps, want := onGridPartials(rng, c, n, rows, width)
				got := make([]float32, rows*width)
				if err := c.AllReduce(got, ps, rows, width); err != nil {
					t.Fatal(err)
				}
				for e := range got {
					if got[e] != want[e] {
						t.Fatalf("%v N=%d: element %d is %v, the exact on-grid sum is %v", c, n, e, got[e], want[e])
					}
				}
				checkFlashComm(t, c, ps, rows, width)
			}
		}
	}
}

// onGridPartials returns partials and their exact sum. In every group, rank i's values are
// s·(l_i + q) with s = 2^e shared by all ranks in that group and codes q in the codec's range;
// the group's first element has every rank at the code range's top (and, asymmetric, the
// second at its bottom), so each rank's scale is exactly s and the sum's scale exactly N·s;
// the last rank's codes are chosen so that every sum of codes is a multiple of N, which puts
// the sums on the grid of scale N·s.
func onGridPartials(rng *rand.Rand, c FlashComm, n, rows, width int) ([][]float32, []float32) {
	qm := int(c.qmax())
	lowest := 0
	if c.Symmetric {
		lowest = -qm
	}
	ps := make([][]float32, n)
	for i := range ps {
		ps[i] = make([]float32, rows*width)
	}
	want := make([]float32, rows*width)
	for o := 0; o < rows*width; o += c.Group {
		s := math.Ldexp(1, rng.IntN(30)-20)
		offs := make([]int, n) // l_i: 0 when symmetric
		if !c.Symmetric {
			for i := range offs {
				offs[i] = rng.IntN(2001) - 1000
			}
		}
		for k := 0; k < c.Group; k++ {
			q := make([]int, n)
			sum := 0
			for i := 0; i < n-1; i++ {
				q[i] = lowest + rng.IntN(qm-lowest+1)
				sum += q[i]
			}
			// The last rank's code makes the sum a multiple of n (the range holds ≥ 15
			// consecutive codes, enough for any residue modulo n ≤ 8).
			for {
				q[n-1] = lowest + rng.IntN(qm-lowest+1)
				if ((sum+q[n-1])%n+n)%n == 0 {
					break
				}
			}
			switch {
			case k == 0:
				for i := range q {
					q[i] = qm
				}
			case k == 1 && !c.Symmetric:
				for i := range q {
					q[i] = 0
				}
			}
			var exact float64
			for i := range q {
				v := s * float64(offs[i]+q[i])
				ps[i][o+k] = float32(v)
				exact += v
			}
			want[o+k] = float32(exact)
		}
	}
	return ps, want
}

// TestFlashCommIntegerScales checks step 3's integer scales against their definition
// (docs/flash-communication.md): m_i ≤ 2^20, |s_i − m_i·2^(E−146)| ≤ 2^(E−147), m_i the
// nearest integer to s_i·2^(146−E) with ties up; and P = 2^(E−146) for every E.
func TestFlashCommIntegerScales(t *testing.T) {
	for k := -149; k <= 127; k++ {
		if got, want := pow2f32(k), float32(math.Ldexp(1, k)); got != want || got == 0 {
			t.Fatalf("pow2f32(%d) = %v, want %v", k, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	draw := func() float32 {
		switch rng.IntN(6) {
		case 0: // subnormal
			return math.Float32frombits(1 + rng.Uint32N(0x7fffff))
		case 1: // the largest significand: rounds up to 2^20
			return math.Float32frombits(rng.Uint32N(254)<<23 | 0x7fffff)
		case 2: // a tie at some shift
			return math.Float32frombits(rng.Uint32N(254)<<23 | 1<<rng.Uint32N(23))
		case 3:
			return math.MaxFloat32
		}
		return math.Float32frombits(1 + rng.Uint32N(0x7f7fffff))
	}
	for trial := 0; trial < 100000; trial++ {
		n := 1 + rng.IntN(8)
		scales := make([]float32, n)
		for i := range scales {
			scales[i] = draw()
			if trial%3 == 0 && i > 0 { // close exponents
				scales[i] = float32(float64(scales[0]) * math.Ldexp(1+rng.Float64(), -1-rng.IntN(24)))
				if scales[i] == 0 {
					scales[i] = 0x1p-149
				}
			}
		}
		m := make([]int64, n)
		e := integerScales(m, scales)
		unit := math.Ldexp(1, e-146)
		for i, s := range scales {
			x := float64(s) / unit // exact: a power-of-two ratio
			want := int64(math.RoundToEven(x))
			if m[i] != want || m[i] > 1<<20 || math.Abs(float64(s)-float64(m[i])*unit) > unit/2 {
				t.Fatalf("scales %v: m[%d] = %d (E %d), want %d = roundEven(%v)", scales, i, m[i], e, want, x)
			}
			if eb := int(math.Float32bits(s)>>23) & 0xff; eb > e || (eb == e && m[i] < 1<<19) {
				t.Fatalf("scales %v: E = %d, but scale %d has exponent %d, m %d", scales, e, i, eb, m[i])
			}
		}
	}
}

func TestFlashCommReduceChunksBadMessage(t *testing.T) {
	c := FlashComm{Bits: 8, Group: 32}
	msg := c.EncodeChunk(nil, make([]float32, 64), 1, 64, 0, 64)
	if _, err := c.ReduceChunks([][]byte{msg, msg}, 1, 64); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float32{0, -1, float32(math.Inf(1)), float32(math.NaN())} {
		m := append([]byte(nil), msg...)
		binary.LittleEndian.PutUint32(m[64+4:], math.Float32bits(bad)) // group 1's scale
		if _, err := c.ReduceChunks([][]byte{msg, m}, 1, 64); err == nil {
			t.Errorf("scale %v: no error", bad)
		}
	}
	if _, err := c.ReduceChunks([][]byte{msg, msg[1:]}, 1, 64); err == nil {
		t.Error("short message: no error")
	}
	if _, err := c.ReduceChunks(nil, 1, 64); err == nil {
		t.Error("no messages: no error")
	}
}

func TestFlashCommBadInput(t *testing.T) {
	c := FlashComm{Bits: 8, Group: 32}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0x1p65} {
		ps := [][]float32{make([]float32, 64), make([]float32, 64)}
		ps[1][37] = bad
		dst := make([]float32, 64)
		dst[0] = 42
		err := c.AllReduce(dst, ps, 1, 64)
		if !errors.Is(err, ErrFlashCommInput) {
			t.Fatalf("input %v: AllReduce error %v, want ErrFlashCommInput", bad, err)
		}
		if dst[0] != 42 {
			t.Fatalf("input %v: AllReduce wrote its output before failing", bad)
		}
		if _, err := c.AllReduceRanks(ps, 1, 64); !errors.Is(err, ErrFlashCommInput) {
			t.Fatalf("input %v: AllReduceRanks error %v, want ErrFlashCommInput", bad, err)
		}
	}
	for _, tc := range []struct {
		c            FlashComm
		ranks, width int
	}{
		{FlashComm{Bits: 2, Group: 32}, 2, 64},
		{FlashComm{Bits: 8, Group: 0}, 2, 64},
		{FlashComm{Bits: 8, Group: 12}, 2, 48},
		{FlashComm{Bits: 8, Group: 32}, 3, 64},   // width not split evenly
		{FlashComm{Bits: 8, Group: 128}, 8, 384}, // chunk 48
		{FlashComm{Bits: 4, Group: 64}, 4, 384},  // chunk 96
	} {
		if err := tc.c.CheckShape(tc.ranks, tc.width); err == nil {
			t.Errorf("%+v over %d ranks of width %d: no error", tc.c, tc.ranks, tc.width)
		} else {
			t.Logf("%+v, %d ranks, width %d: %v", tc.c, tc.ranks, tc.width, err)
		}
	}
	if err := (FlashComm{Bits: 16, Group: 0}).CheckShape(8, 384); err != nil {
		t.Errorf("the control ignores the group: %v", err)
	}
}

func TestFlashCommWireSize(t *testing.T) {
	for _, tc := range []struct {
		c    FlashComm
		want float64
	}{
		{FlashComm{Bits: 8, Group: 128}, 1 + 8.0/128},
		{FlashComm{Bits: 4, Group: 128}, 0.5 + 8.0/128},
		{FlashComm{Bits: 4, Group: 32, Symmetric: true}, 0.5 + 4.0/32},
		{FlashComm{Bits: 16}, 2},
	} {
		if got := tc.c.BytesPerElement(); got != tc.want {
			t.Errorf("%v: %v bytes per element, want %v", tc.c, got, tc.want)
		}
		if tc.c.Bits == 16 {
			continue
		}
		rows, cols := 3, 2*tc.c.Group
		msg := tc.c.EncodeChunk(nil, make([]float32, rows*cols), rows, cols, 0, cols)
		if len(msg) != tc.c.MessageBytes(rows, cols) || float64(len(msg)) != tc.want*float64(rows*cols) {
			t.Errorf("%v: message of %d bytes, MessageBytes %d, want %v", tc.c, len(msg), tc.c.MessageBytes(rows, cols), tc.want*float64(rows*cols))
		}
	}
}

// TestFlashCommTestVector pins the output bits of a fixed input that any implementation can
// generate (docs/flash-communication.md, "Test vector"): the CUDA kernels must produce the
// same SHA-256.
func TestFlashCommTestVector(t *testing.T) {
	for _, c := range []FlashComm{{Bits: 8, Group: 128}, {Bits: 4, Group: 128}, {Bits: 8, Group: 32, Symmetric: true}, {Bits: 4, Group: 64, Symmetric: true}} {
		const n, rows, width = 8, 4, 1024
		ps := FlashCommTestVector(n, rows, width)
		y := make([]float32, rows*width)
		if err := c.AllReduce(y, ps, rows, width); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		for _, v := range y {
			h.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)))
		}
		got := hex.EncodeToString(h.Sum(nil))
		t.Logf("%v: sha256 %s", c, got)
		if exp, ok := flashCommVectorSHA[c.String()]; !ok || exp != got {
			t.Errorf("%v: output sha256 %s, want %s", c, got, exp)
		}
	}
}

var flashCommVectorSHA = map[string]string{
	"int8-g128-asym": "b08c1c78dbf419c3357b65d34ce0998e05b17030f44eed6569816beb9ad652b8",
	"int4-g128-asym": "cfc6570acbc4210de90df3a7a4b273a9ad411b30707ed1c6369e439ea7bb61ab",
	"int8-g32-sym":   "57b355854f1620f27f71e0a55af0dff7665848758948b5b0dceae7a1c93648df",
	"int4-g64-sym":   "85cdcb602b4c44eeaa3aee4102e9c3b147a08fbe14fcd964d4e96649d998304e",
}

func FuzzFlashCommAllReduce(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(2), uint8(0), false, false)
	f.Add([]byte{0xff, 0xff, 0x7f, 0x7f, 0, 0, 0x80, 0xff}, uint8(8), uint8(2), true, true)
	f.Add([]byte{0, 0, 0xc0, 0x7f}, uint8(4), uint8(1), false, true)
	f.Fuzz(func(t *testing.T, data []byte, nRanks, gsel uint8, int4, sym bool) {
		n := []int{1, 2, 4, 8}[nRanks%4]
		c := FlashComm{Bits: 8, Group: []int{32, 64, 128, 8}[gsel%4], Symmetric: sym}
		if int4 {
			c.Bits = 4
		}
		rows, width := 2, n*c.Group
		ps := make([][]float32, n)
		nonFinite := false
		for i := range ps {
			ps[i] = make([]float32, rows*width)
			for k := range ps[i] {
				o := 4 * (i*rows*width + k)
				if len(data) == 0 {
					break
				}
				var b [4]byte
				for j := range b {
					b[j] = data[(o+j)%len(data)]
				}
				v := math.Float32frombits(binary.LittleEndian.Uint32(b[:]))
				if gsel&4 != 0 && k%3 == 0 { // keep some small values beside large ones
					v = float32(k%17) * 0.125
				}
				ps[i][k] = v
				nonFinite = nonFinite || !(abs32(v) <= FlashCommMaxAbs)
			}
		}
		if nonFinite {
			if err := c.AllReduce(make([]float32, rows*width), ps, rows, width); !errors.Is(err, ErrFlashCommInput) {
				t.Fatalf("non-finite or huge input: error %v", err)
			}
			return
		}
		checkFlashComm(t, c, ps, rows, width)
	})
}
