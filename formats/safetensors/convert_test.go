package safetensors

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

func isNaN32(f float32) bool { return f != f }

// sameFloat compares bit patterns, so that -0 ≠ +0 and NaN == NaN.
func sameFloat(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || isNaN32(a) && isNaN32(b)
}

func TestHalfToFloat32Known(t *testing.T) {
	inf := float32(math.Inf(1))
	cases := []struct {
		h    uint16
		want float32
	}{
		{0x3c00, 1},
		{0xbc00, -1},
		{0x4000, 2},
		{0xc000, -2},
		{0x3800, 0.5},
		{0x3555, 0.333251953125},
		{0x7bff, 65504},                 // largest finite
		{0x0400, 6.103515625e-05},       // smallest normal, 2^-14
		{0x03ff, 6.097555160522461e-05}, // largest subnormal, 1023 × 2^-24
		{0x0001, 5.960464477539063e-08}, // smallest subnormal, 2^-24
		{0x8001, -5.960464477539063e-08},
		{0x0000, 0},
		{0x8000, float32(math.Copysign(0, -1))},
		{0x7c00, inf},
		{0xfc00, -inf},
	}
	for _, c := range cases {
		if got := HalfToFloat32(c.h); !sameFloat(got, c.want) {
			t.Errorf("HalfToFloat32(%#04x) = %g, want %g", c.h, got, c.want)
		}
	}
	for _, h := range []uint16{0x7c01, 0x7e00, 0x7fff, 0xfe00, 0xfc01} {
		if got := HalfToFloat32(h); !isNaN32(got) {
			t.Errorf("HalfToFloat32(%#04x) = %g, want NaN", h, got)
		}
	}
}

// TestF16ToF32AllValues checks the table-driven slice converter against the scalar one for
// all 65536 bit patterns, bit for bit.
func TestF16ToF32AllValues(t *testing.T) {
	src := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	dst := make([]float32, 1<<16)
	F16ToF32(dst, src)
	for i, f := range dst {
		if w := HalfToFloat32(uint16(i)); math.Float32bits(f) != math.Float32bits(w) {
			t.Fatalf("F16ToF32(%#04x) = %#08x, want %#08x", i, math.Float32bits(f), math.Float32bits(w))
		}
	}
}

func TestFloat32ToHalfKnown(t *testing.T) {
	p2 := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	cases := []struct {
		f    float32
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65519.99, 0x7bff},              // below the midpoint to 65536
		{65520, 0x7c00},                 // midpoint: ties to even, and even is Inf
		{1e6, 0x7c00},                   // overflow
		{-1e6, 0xfc00},                  // overflow, negative
		{p2(-14), 0x0400},               // smallest normal
		{p2(-24), 0x0001},               // smallest subnormal
		{p2(-25), 0x0000},               // half of it: tie, rounds to even (0)
		{p2(-25) * 1.0000001, 0x0001},   // just above the tie
		{3 * p2(-25), 0x0002},           // tie between 1 and 2 subnormal units: even is 2
		{5 * p2(-25), 0x0002},           // tie between 2 and 3: even is 2
		{1e-8, 0x0000},                  // underflow
		{-1e-8, 0x8000},                 // underflow keeps the sign
		{1023.5 * p2(-24), 0x0400},      // tie between largest subnormal (odd) and smallest normal
		{1 + p2(-11), 0x3c00},           // tie between 1 and next: even is 1
		{1 + 3*p2(-11), 0x3c02},         // tie between 0x3c01 and 0x3c02: even is 0x3c02
		{1 + p2(-11) + p2(-20), 0x3c01}, // just above the tie
		{float32(math.Copysign(0, -1)), 0x8000},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{math.Float32frombits(1), 0x0000}, // float32 subnormal
		{math.MaxFloat32, 0x7c00},
		{0.333333333, 0x3555},
	}
	for _, c := range cases {
		if got := Float32ToHalf(c.f); got != c.want {
			t.Errorf("Float32ToHalf(%g) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff} {
		h := Float32ToHalf(math.Float32frombits(bits))
		if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
			t.Errorf("Float32ToHalf(NaN %#08x) = %#04x, not a NaN", bits, h)
		}
		if h>>15 != uint16(bits>>31) {
			t.Errorf("Float32ToHalf(NaN %#08x) = %#04x lost the sign", bits, h)
		}
	}
}

// TestFloat32ToHalfBoundaries checks every rounding boundary of binary16: each finite half
// round-trips, and between each pair of neighbours the midpoint rounds to the even one while
// the float32 values just either side of it round to the nearer.
func TestFloat32ToHalfBoundaries(t *testing.T) {
	for h := uint16(0); h <= 0x7bff; h++ {
		for _, sign := range []uint16{0, 0x8000} {
			if got := Float32ToHalf(HalfToFloat32(h | sign)); got != h|sign {
				t.Fatalf("round trip %#04x → %#04x", h|sign, got)
			}
		}
		lo := float64(HalfToFloat32(h))
		hi := 65536.0 // the "next" value above 0x7bff, which rounds to Inf
		if h < 0x7bff {
			hi = float64(HalfToFloat32(h + 1))
		}
		mid := float32((lo + hi) / 2) // exact: 12 significant bits
		even := h
		if h&1 == 1 {
			even = h + 1
		}
		if got := Float32ToHalf(mid); got != even {
			t.Fatalf("midpoint %g of %#04x and next: got %#04x, want %#04x", mid, h, got, even)
		}
		below := math.Nextafter32(mid, 0)
		above := math.Nextafter32(mid, float32(math.Inf(1)))
		if got := Float32ToHalf(below); got != h {
			t.Fatalf("just below midpoint %g: got %#04x, want %#04x", below, got, h)
		}
		if got := Float32ToHalf(above); got != h+1 {
			t.Fatalf("just above midpoint %g: got %#04x, want %#04x", above, got, h+1)
		}
		if got := Float32ToHalf(-mid); got != even|0x8000 {
			t.Fatalf("negative midpoint %g: got %#04x", -mid, got)
		}
	}
}

// TestFloat32ToHalfNearest checks random float32 bit patterns against the definition: the
// result is the nearest half (measured in float64), ties to even.
func TestFloat32ToHalfNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		// Bias exponents towards the half range so that most samples are interesting.
		bits := r.Uint32()
		if r.IntN(4) != 0 {
			exp := uint32(127 - 27 + r.IntN(46))
			bits = bits&0x807fffff | exp<<23
		}
		f := math.Float32frombits(bits)
		if isNaN32(f) {
			continue
		}
		h := Float32ToHalf(f)
		got := float64(HalfToFloat32(h))
		x := float64(f)
		if math.IsInf(got, 0) {
			if math.Abs(x) < 65520 {
				t.Fatalf("%g rounded to Inf", f)
			}
			continue
		}
		d := math.Abs(got - x)
		for _, n := range []uint16{h - 1, h + 1} {
			if n&0x7c00 == 0x7c00 || (h&0x7fff == 0 && n == h-1) {
				continue
			}
			alt := float64(HalfToFloat32(n))
			da := math.Abs(alt - x)
			if da < d || da == d && h&1 == 1 {
				t.Fatalf("Float32ToHalf(%g) = %#04x (%g), but %#04x (%g) is nearer or even", f, h, got, n, alt)
			}
		}
	}
}

func TestBFloat16(t *testing.T) {
	p2 := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	dec := []struct {
		h    uint16
		want float32
	}{
		{0x3f80, 1},
		{0xbf80, -1},
		{0x4049, 3.140625},
		{0x7f7f, 3.3895313892515355e+38}, // largest finite
		{0x0080, p2(-126)},               // smallest normal
		{0x0001, p2(-133)},               // smallest subnormal
		{0x8000, float32(math.Copysign(0, -1))},
		{0x7f80, float32(math.Inf(1))},
		{0xff80, float32(math.Inf(-1))},
	}
	for _, c := range dec {
		if got := BFloat16ToFloat32(c.h); !sameFloat(got, c.want) {
			t.Errorf("BFloat16ToFloat32(%#04x) = %g, want %g", c.h, got, c.want)
		}
	}
	if !isNaN32(BFloat16ToFloat32(0x7fc0)) {
		t.Error("0x7fc0 is not NaN")
	}
	enc := []struct {
		f    float32
		want uint16
	}{
		{1, 0x3f80},
		{3.14159265, 0x4049},
		{1 + p2(-8), 0x3f80},           // tie: even
		{1 + 3*p2(-8), 0x3f82},         // tie: even (up)
		{1 + p2(-8) + p2(-20), 0x3f81}, // above the tie
		{math.MaxFloat32, 0x7f80},      // rounds past the largest bf16: Inf
		{3.3895313892515355e+38, 0x7f7f},
		{p2(-133), 0x0001}, // subnormal survives
		{p2(-134), 0x0000}, // tie with zero: even
		{p2(-134) * 1.5, 0x0001},
		{float32(math.Copysign(0, -1)), 0x8000},
		{float32(math.Inf(-1)), 0xff80},
	}
	for _, c := range enc {
		if got := Float32ToBFloat16(c.f); got != c.want {
			t.Errorf("Float32ToBFloat16(%g) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	// NaNs stay NaN, even those whose payload lives only in the low 16 bits.
	for _, bits := range []uint32{0x7fc00000, 0x7f800001, 0xff800001, 0x7fffffff} {
		h := Float32ToBFloat16(math.Float32frombits(bits))
		if !isNaN32(BFloat16ToFloat32(h)) || h>>15 != uint16(bits>>31) {
			t.Errorf("Float32ToBFloat16(NaN %#08x) = %#04x", bits, h)
		}
	}
	// Every non-NaN bf16 round-trips, through the slice converters too.
	src := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	f := make([]float32, 1<<16)
	BF16ToF32(f, src)
	back := make([]byte, len(src))
	Float32ToBF16(back, f)
	for i := range 1 << 16 {
		if BFloat16ToFloat32(uint16(i)) != f[i] && !isNaN32(f[i]) {
			t.Fatalf("BF16ToF32(%#04x) = %g", i, f[i])
		}
		got := binary.LittleEndian.Uint16(back[2*i:])
		if isNaN32(f[i]) {
			if !isNaN32(BFloat16ToFloat32(got)) {
				t.Fatalf("NaN %#04x came back as %#04x", i, got)
			}
		} else if got != uint16(i) {
			t.Fatalf("%#04x came back as %#04x", i, got)
		}
	}
}

func TestF8(t *testing.T) {
	e4m3 := []struct {
		b    byte
		want float32
	}{
		{0x38, 1}, // exponent 7 = bias
		{0xb8, -1},
		{0x40, 2},
		{0x7e, 448}, // largest finite
		{0xfe, -448},
		{0x08, 0.015625},    // smallest normal, 2^-6
		{0x07, 0.013671875}, // largest subnormal, 7/8 × 2^-6
		{0x01, 0.001953125}, // smallest subnormal, 2^-9
		{0x00, 0},
		{0x80, float32(math.Copysign(0, -1))},
		{0x77, 240}, // e=14 m=7: 1.875 × 2^7
		{0x78, 256}, // e=15 m=0: finite in the FN variant
	}
	for _, c := range e4m3 {
		if got := F8E4M3ToFloat32(c.b); !sameFloat(got, c.want) {
			t.Errorf("F8E4M3ToFloat32(%#02x) = %g, want %g", c.b, got, c.want)
		}
	}
	for _, b := range []byte{0x7f, 0xff} {
		if !isNaN32(F8E4M3ToFloat32(b)) {
			t.Errorf("F8E4M3ToFloat32(%#02x) is not NaN", b)
		}
	}
	e5m2 := []struct {
		b    byte
		want float32
	}{
		{0x3c, 1},
		{0xbc, -1},
		{0x7b, 57344}, // largest finite
		{0x04, 6.103515625e-05},
		{0x01, 1.52587890625e-05}, // smallest subnormal, 2^-16
		{0x7c, float32(math.Inf(1))},
		{0xfc, float32(math.Inf(-1))},
	}
	for _, c := range e5m2 {
		if got := F8E5M2ToFloat32(c.b); !sameFloat(got, c.want) {
			t.Errorf("F8E5M2ToFloat32(%#02x) = %g, want %g", c.b, got, c.want)
		}
	}
	for _, b := range []byte{0x7d, 0x7e, 0x7f, 0xfd} {
		if !isNaN32(F8E5M2ToFloat32(b)) {
			t.Errorf("F8E5M2ToFloat32(%#02x) is not NaN", b)
		}
	}
	src := make([]byte, 256)
	for i := range src {
		src[i] = byte(i)
	}
	d4, d5 := make([]float32, 256), make([]float32, 256)
	F8E4M3ToF32(d4, src)
	F8E5M2ToF32(d5, src)
	for i := range src {
		if !sameFloat(d4[i], F8E4M3ToFloat32(byte(i))) || !sameFloat(d5[i], F8E5M2ToFloat32(byte(i))) {
			t.Fatalf("slice converters disagree at %#02x", i)
		}
	}
}

func TestF32AndF64(t *testing.T) {
	vals := []float32{0, 1, -2.5, math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Inf(-1))}
	b := make([]byte, 4*len(vals))
	Float32ToBytes(b, vals)
	if binary.LittleEndian.Uint32(b[4:]) != 0x3f800000 {
		t.Fatalf("1.0 encoded as % x", b[4:8])
	}
	got := make([]float32, len(vals))
	F32FromBytes(got, b)
	for i := range vals {
		if !sameFloat(got[i], vals[i]) {
			t.Errorf("F32 round trip %g → %g", vals[i], got[i])
		}
	}
	b64 := make([]byte, 8*len(vals))
	Float32ToF64(b64, vals)
	if binary.LittleEndian.Uint64(b64[8:]) != 0x3ff0000000000000 {
		t.Fatalf("1.0 encoded as % x", b64[8:16])
	}
	F64ToF32(got, b64)
	for i := range vals {
		if !sameFloat(got[i], vals[i]) {
			t.Errorf("F64 round trip %g → %g", vals[i], got[i])
		}
	}
	// Rounding from float64: nearest float32, overflow to Inf.
	src := []float64{0.1, 1e300, -1e300, 1 + math.Ldexp(1, -24)}
	want := []float32{0.1, float32(math.Inf(1)), float32(math.Inf(-1)), 1}
	b64 = make([]byte, 8*len(src))
	for i, v := range src {
		binary.LittleEndian.PutUint64(b64[8*i:], math.Float64bits(v))
	}
	got = make([]float32, len(src))
	F64ToF32(got, b64)
	for i := range src {
		if got[i] != want[i] {
			t.Errorf("F64ToF32(%g) = %g, want %g", src[i], got[i], want[i])
		}
	}
}

func TestConverterLengthMismatchPanics(t *testing.T) {
	cases := map[string]func(){
		"F16ToF32":       func() { F16ToF32(make([]float32, 2), make([]byte, 3)) },
		"BF16ToF32":      func() { BF16ToF32(make([]float32, 2), make([]byte, 5)) },
		"F32FromBytes":   func() { F32FromBytes(make([]float32, 1), make([]byte, 8)) },
		"F64ToF32":       func() { F64ToF32(make([]float32, 1), make([]byte, 4)) },
		"F8E4M3ToF32":    func() { F8E4M3ToF32(make([]float32, 1), make([]byte, 2)) },
		"Float32ToF16":   func() { Float32ToF16(make([]byte, 3), make([]float32, 2)) },
		"Float32ToBF16":  func() { Float32ToBF16(make([]byte, 2), make([]float32, 2)) },
		"Float32ToBytes": func() { Float32ToBytes(make([]byte, 4), make([]float32, 2)) },
	}
	for name, f := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic on mismatched lengths", name)
				}
			}()
			f()
		}()
	}
	// Empty slices are fine.
	F16ToF32(nil, nil)
	BF16ToF32(nil, nil)
	F32FromBytes(nil, nil)
	Float32ToBytes(nil, nil)
}

// TestSliceConvertersMatchScalar checks the unrolled and inlined slice converters against
// the scalar functions, at every length modulo the unrolling and on values from every
// range (normal, subnormal, overflow, zero, Inf, NaN).
func TestSliceConvertersMatchScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	specials := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65520, -65520, 1e6, 1e-8, 6e-8, 3e-8,
		6.1e-5, -6.1e-5, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), math.MaxFloat32, math.SmallestNonzeroFloat32}
	for n := range 13 {
		vals := make([]float32, 0, n+len(specials))
		for range n {
			bits := r.Uint32()
			if r.IntN(3) != 0 {
				bits = bits&0x807fffff | uint32(127-27+r.IntN(46))<<23
			}
			vals = append(vals, math.Float32frombits(bits))
		}
		vals = append(vals, specials[:n%len(specials)+1]...)
		h := make([]byte, 2*len(vals))
		bf := make([]byte, 2*len(vals))
		Float32ToF16(h, vals)
		Float32ToBF16(bf, vals)
		back16 := make([]float32, len(vals))
		backBF := make([]float32, len(vals))
		F16ToF32(back16, h)
		BF16ToF32(backBF, bf)
		for i, f := range vals {
			wh, wb := Float32ToHalf(f), Float32ToBFloat16(f)
			gh, gb := binary.LittleEndian.Uint16(h[2*i:]), binary.LittleEndian.Uint16(bf[2*i:])
			if gh != wh || gb != wb {
				t.Fatalf("n=%d, %g: slice gives f16 %#04x bf16 %#04x, scalar %#04x %#04x", n, f, gh, gb, wh, wb)
			}
			if !sameFloat(back16[i], HalfToFloat32(wh)) || !sameFloat(backBF[i], BFloat16ToFloat32(wb)) {
				t.Fatalf("n=%d, %g: decoding disagrees", n, f)
			}
		}
	}
}
