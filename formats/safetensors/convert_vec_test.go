package safetensors

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// Tests of the vector slice converters (convert_amd64.s) against the portable Go ones
// (f16ToF32Go, bf16ToF32Go, float32ToF16Go), bit for bit. F16ToF32, BF16ToF32 and
// Float32ToF16 dispatch to the vector code where the CPU has it; elsewhere (other
// architectures, -tags purego) they are the Go code and these tests compare it with itself.

func logVecPath(t *testing.T) {
	t.Helper()
	if !hasF16C || !hasAVX2 {
		t.Logf("vector converters not in use (hasF16C=%v, hasAVX2=%v): comparing Go with Go", hasF16C, hasAVX2)
	}
}

// TestF16ToF32VecAllValues converts every binary16 bit pattern, in order and shuffled (so
// that each NaN, signalling ones in particular, meets every lane of the 32- and 8-element
// loops), and compares with the Go converter and HalfToFloat32.
func TestF16ToF32VecAllValues(t *testing.T) {
	logVecPath(t)
	order := make([]uint16, 1<<16)
	for i := range order {
		order[i] = uint16(i)
	}
	r := rand.New(rand.NewPCG(7, 7))
	for pass := range 4 {
		if pass > 0 {
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		src := make([]byte, 2*len(order))
		for i, h := range order {
			binary.LittleEndian.PutUint16(src[2*i:], h)
		}
		got := make([]float32, len(order))
		want := make([]float32, len(order))
		f16ToF32Go(want, src)
		// Whole, then in pieces of 15 (8-element loop and scalar tail) and 45 (all three).
		for _, piece := range []int{len(order), 15, 45} {
			for i := range got {
				got[i] = math.Float32frombits(vecSentinel * 0x01010101) // not a half value
			}
			for lo := 0; lo < len(got); lo += piece {
				hi := min(lo+piece, len(got))
				F16ToF32(got[lo:hi], src[2*lo:2*hi])
			}
			for i, h := range order {
				g, w := math.Float32bits(got[i]), math.Float32bits(want[i])
				if g != w || w != math.Float32bits(HalfToFloat32(h)) {
					t.Fatalf("pass %d, pieces of %d: F16ToF32(%#04x) = %#08x, want %#08x", pass, piece, h, g, w)
				}
			}
		}
	}
}

// TestBF16ToF32VecAllValues does the same for bfloat16.
func TestBF16ToF32VecAllValues(t *testing.T) {
	logVecPath(t)
	src := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	got := make([]float32, 1<<16)
	want := make([]float32, 1<<16)
	BF16ToF32(got, src)
	bf16ToF32Go(want, src)
	for i := range got {
		if g, w := math.Float32bits(got[i]), math.Float32bits(want[i]); g != w || w != uint32(i)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x, want %#08x", i, g, w)
		}
	}
}

const vecSentinel = 0x5a

// TestConvertVecLengths runs every length 0..100 at source and destination offsets 0..3
// (byte offsets for []byte, so odd ones misalign the halves), checking the result against the
// Go converter and that nothing outside the destination is written.
func TestConvertVecLengths(t *testing.T) {
	logVecPath(t)
	r := rand.New(rand.NewPCG(3, 4))
	const maxN, pad = 100, 8
	raw := make([]byte, 2*maxN+pad)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	// Random bit patterns as float32 (NaNs included), with every 7th replaced by a value
	// near the half range so that rounding is exercised too.
	fraw := make([]float32, maxN+pad)
	for i := range fraw {
		fraw[i] = math.Float32frombits(r.Uint32())
		if i%7 == 0 {
			fraw[i] = float32(r.NormFloat64())
		}
	}
	for n := 0; n <= maxN; n++ {
		for so := range 4 {
			for do := range 4 {
				src := raw[so : so+2*n]
				// Half to float32, both encodings.
				for _, c := range []struct {
					name     string
					vec, ref func([]float32, []byte)
				}{
					{"F16ToF32", F16ToF32, f16ToF32Go},
					{"BF16ToF32", BF16ToF32, bf16ToF32Go},
				} {
					buf := make([]float32, n+2*pad)
					for i := range buf {
						buf[i] = math.Float32frombits(vecSentinel * 0x01010101)
					}
					c.vec(buf[do:do+n], src)
					want := make([]float32, n)
					c.ref(want, src)
					for i, f := range buf {
						w := uint32(vecSentinel * 0x01010101)
						if i >= do && i < do+n {
							w = math.Float32bits(want[i-do])
						}
						if math.Float32bits(f) != w {
							t.Fatalf("%s n=%d src+%d dst+%d: element %d = %#08x, want %#08x",
								c.name, n, so, do, i-do, math.Float32bits(f), w)
						}
					}
				}
				// Float32 to half: the float32 source moves by elements, the bytes by bytes.
				fsrc := fraw[so : so+n]
				buf := make([]byte, 2*n+2*pad)
				for i := range buf {
					buf[i] = vecSentinel
				}
				Float32ToF16(buf[do:do+2*n], fsrc)
				want := make([]byte, 2*n)
				float32ToF16Go(want, fsrc)
				for i, b := range buf {
					w := byte(vecSentinel)
					if i >= do && i < do+2*n {
						w = want[i-do]
					}
					if b != w {
						t.Fatalf("Float32ToF16 n=%d src+%d dst+%d: byte %d = %#02x, want %#02x", n, so, do, i-do, b, w)
					}
				}
			}
		}
	}
}

// TestDecodeVecLarge decodes slices large enough for the streaming stores of the amd64
// decoders (streamBytes of float32, 4 MiB), at every destination alignment modulo 32 bytes
// and at an even and an odd source offset, against the Go converters, with sentinels
// around the destination.
func TestDecodeVecLarge(t *testing.T) {
	logVecPath(t)
	const n = 1<<20 + 45 // elements: 4 MiB of float32, and a ragged end
	r := rand.New(rand.NewPCG(5, 6))
	raw := make([]byte, 2*n+1)
	for i := range raw {
		raw[i] = byte(r.Uint32()) // signalling NaNs among them, about 1.5% of the halves
	}
	buf := make([]float32, n+16)
	want := make([]float32, n)
	for _, c := range []struct {
		name     string
		vec, ref func([]float32, []byte)
	}{
		{"F16ToF32", F16ToF32, f16ToF32Go},
		{"BF16ToF32", BF16ToF32, bf16ToF32Go},
	} {
		for so := range 2 {
			src := raw[so : so+2*n]
			c.ref(want, src)
			for do := range 8 {
				for i := range buf {
					buf[i] = math.Float32frombits(vecSentinel * 0x01010101)
				}
				c.vec(buf[do:do+n], src)
				for i, f := range buf {
					w := uint32(vecSentinel * 0x01010101)
					if i >= do && i < do+n {
						w = math.Float32bits(want[i-do])
					}
					if math.Float32bits(f) != w {
						t.Fatalf("%s src+%d dst+%d: element %d = %#08x, want %#08x",
							c.name, so, do, i-do, math.Float32bits(f), w)
					}
				}
			}
		}
	}
}

// checkFloat32ToF16 converts vals with the dispatching and the Go converter and compares.
func checkFloat32ToF16(t *testing.T, what string, vals []float32) {
	t.Helper()
	got := make([]byte, 2*len(vals))
	want := make([]byte, 2*len(vals))
	Float32ToF16(got, vals)
	float32ToF16Go(want, vals)
	for i, f := range vals {
		g := binary.LittleEndian.Uint16(got[2*i:])
		w := binary.LittleEndian.Uint16(want[2*i:])
		if g != w || w != Float32ToHalf(f) {
			t.Fatalf("%s: Float32ToF16(%#08x = %g) = %#04x, want %#04x (Float32ToHalf %#04x)",
				what, math.Float32bits(f), f, g, w, Float32ToHalf(f))
		}
	}
}

// TestFloat32ToF16VecBoundaries compares the converters on the values where rounding is
// decided: every half value and the float32s within 3 ulps of it and of each midpoint
// between neighbouring halves (ties, which must go to even, and their neighbours), both
// signs, including the subnormal range, the midpoint below the smallest subnormal and the
// overflow threshold 65520; then float32 subnormals, infinities and NaNs.
func TestFloat32ToF16VecBoundaries(t *testing.T) {
	logVecPath(t)
	var vals []float32
	near := func(f float32) {
		b := math.Float32bits(f)
		for d := -3; d <= 3; d++ {
			v := math.Float32frombits(uint32(int64(b) + int64(d)))
			vals = append(vals, v, -v)
		}
	}
	for h := uint16(0); h <= 0x7c00; h++ {
		lo := HalfToFloat32(h)
		near(lo)
		if h < 0x7c00 {
			hi := float64(HalfToFloat32(h + 1))
			if h == 0x7bff {
				hi = 65536 // the next binade's first value, as if the format went on
			}
			near(float32((float64(lo) + hi) / 2)) // exact in float32
		}
	}
	near(0x1p-25) // half the smallest subnormal: ties to 0
	near(0x1p-26)
	checkFloat32ToF16(t, "boundaries", vals)

	// Float32 subnormals (all of them would be 2^24; every 61st, plus the extremes),
	// infinities, and NaNs: signalling and quiet, every payload bit alone, and a stride
	// through all payloads.
	vals = vals[:0]
	for b := uint32(0); b < 1<<23; b += 61 {
		vals = append(vals, math.Float32frombits(b), math.Float32frombits(b|1<<31))
	}
	for _, b := range []uint32{1, 0x7fffff, 0x7f800000, 0x7f7fffff, 0x7f800001, 0x7fbfffff, 0x7fc00000, 0x7fffffff, 0x7fc00001, 0x7f802000, 0x7f801fff} {
		vals = append(vals, math.Float32frombits(b), math.Float32frombits(b|1<<31))
	}
	for bit := range 23 {
		b := 0x7f800000 | uint32(1)<<bit
		vals = append(vals, math.Float32frombits(b), math.Float32frombits(b|1<<31))
		b |= 0x400000
		vals = append(vals, math.Float32frombits(b), math.Float32frombits(b|1<<31))
	}
	for p := uint32(1); p < 1<<23; p += 53 {
		b := 0x7f800000 | p
		vals = append(vals, math.Float32frombits(b), math.Float32frombits(b|1<<31))
	}
	checkFloat32ToF16(t, "special", vals)
}

// TestFloat32ToF16VecRandom compares 10M random float32 bit patterns (every class: most are
// far outside the half range, a quarter of a percent are NaN) and 2M random values inside it.
func TestFloat32ToF16VecRandom(t *testing.T) {
	logVecPath(t)
	r := rand.New(rand.NewPCG(11, 13))
	vals := make([]float32, 1<<20)
	for chunk := range 12 {
		for i := range vals {
			if chunk < 10 {
				vals[i] = math.Float32frombits(r.Uint32())
			} else {
				// Exponents 2^-26 .. 2^17, where the result is a subnormal, normal or Inf.
				e := uint32(127-26) + uint32(r.IntN(44))
				vals[i] = math.Float32frombits(r.Uint32()&0x807fffff | e<<23)
			}
		}
		checkFloat32ToF16(t, "random", vals)
	}
}

// TestFloat32ToF16VecExhaustive compares all 2^32 float32 bit patterns; it takes tens of
// seconds and runs only with ODYSSEY_EXHAUSTIVE=1.
func TestFloat32ToF16VecExhaustive(t *testing.T) {
	if os.Getenv("ODYSSEY_EXHAUSTIVE") != "1" {
		t.Skip("set ODYSSEY_EXHAUSTIVE=1 to check all 2^32 float32 values")
	}
	logVecPath(t)
	const chunk = 1 << 20
	vals := make([]float32, chunk)
	got := make([]byte, 2*chunk)
	want := make([]byte, 2*chunk)
	for base := uint64(0); base < 1<<32; base += chunk {
		for i := range vals {
			vals[i] = math.Float32frombits(uint32(base) + uint32(i))
		}
		Float32ToF16(got, vals)
		float32ToF16Go(want, vals)
		if string(got) != string(want) {
			for i := range vals {
				if got[2*i] != want[2*i] || got[2*i+1] != want[2*i+1] {
					t.Fatalf("Float32ToF16(%#08x) = %#04x, want %#04x", math.Float32bits(vals[i]),
						binary.LittleEndian.Uint16(got[2*i:]), binary.LittleEndian.Uint16(want[2*i:]))
				}
			}
		}
	}
}
