package quant

import (
	"math/rand/v2"
	"testing"
)

// The layout written out by hand for one 128×8 block: lane 5 is gid 1, tig 1, so its word for
// step 2 holds column n=1, k = 64 + 4 + j (low) and k = 64 + 16 + 4 + j (high).
func TestPackOffsetsByHand(t *testing.T) {
	n, k := 8, 128
	q := make([]int8, n*k)
	q[1*k+64+4+2] = 3     // low nibble of byte j=2
	q[1*k+64+16+4+2] = -5 // high nibble of the same byte
	p := PackInt4(q, n, k)
	off := 5*16 + 2*4 + 2
	for i, b := range p {
		if i == off {
			if b != 0xB3 { // −5 = 0b1011 high, 3 low
				t.Fatalf("byte %d = %#x, want 0xb3", i, b)
			}
		} else if b != 0 {
			t.Fatalf("byte %d = %#x, want 0", i, b)
		}
	}
	lo, hi := HighNibbleInt8(p[off])
	if lo != 48 || hi != -80 {
		t.Errorf("HighNibbleInt8 = %d, %d; want 48, -80 (16·3, 16·−5)", lo, hi)
	}
}

func TestPackRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range [][2]int{{8, 128}, {16, 256}, {13, 300}, {1, 1}, {64, 172}, {172, 64}, {24, 384}} {
		n, k := d[0], d[1]
		q := make([]int8, n*k)
		for i := range q {
			q[i] = int8(r.IntN(15) - 7)
		}
		p := PackInt4(q, n, k)
		np, kp := PackedDims(n, k)
		if len(p) != np*kp/2 || np%8 != 0 || kp%128 != 0 {
			t.Fatalf("%v: packed %d bytes, dims %d %d", d, len(p), np, kp)
		}
		back, err := UnpackInt4(p, n, k)
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		for i := range q {
			if back[i] != q[i] {
				t.Fatalf("%v: code %d: %d != %d", d, i, back[i], q[i])
			}
		}
	}
}

// Every (n, k) maps to a distinct nibble: the layout is a bijection on the padded block.
func TestPackBijection(t *testing.T) {
	np, kp := 16, 256
	seen := make(map[[2]int]bool)
	for n := 0; n < np; n++ {
		for k := 0; k < kp; k++ {
			off, high := packedOffset(n, k, kp)
			h := 0
			if high {
				h = 1
			}
			key := [2]int{off, h}
			if seen[key] || off < 0 || off >= np*kp/2 {
				t.Fatalf("(%d, %d) → %v collides or is out of range", n, k, key)
			}
			seen[key] = true
		}
	}
}

// The mask trick equals sign extension times 16 for every byte.
func TestHighNibbleInt8AllBytes(t *testing.T) {
	for b := 0; b < 256; b++ {
		lo, hi := HighNibbleInt8(byte(b))
		wantLo := int8(byte(b)<<4) >> 4
		wantHi := int8(byte(b)) >> 4
		if int(lo) != 16*int(wantLo) || int(hi) != 16*int(wantHi) {
			t.Fatalf("byte %#x: got %d %d", b, lo, hi)
		}
	}
}

func TestUnpackRejects(t *testing.T) {
	if _, err := UnpackInt4(make([]byte, 10), 8, 128); err == nil {
		t.Error("wrong size accepted")
	}
	p := PackInt4(make([]int8, 5*100), 5, 100)
	off, _ := packedOffset(6, 0, 128) // padding row
	p[off] = 1
	if _, err := UnpackInt4(p, 5, 100); err == nil {
		t.Error("nonzero padding accepted")
	}
	p = PackInt4(make([]int8, 8*128), 8, 128)
	p[0] = 0x08 // code −8 is outside the symmetric range
	if _, err := UnpackInt4(p, 8, 128); err == nil {
		t.Error("code −8 accepted")
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add(PackInt4(make([]int8, 8*128), 8, 128), 8, 128)
	f.Add([]byte{1, 2, 3}, 1, 1)
	f.Fuzz(func(t *testing.T, data []byte, n, k int) {
		if n <= 0 || k <= 0 || n > 64 || k > 512 {
			return
		}
		q, err := UnpackInt4(data, n, k)
		if err != nil {
			return
		}
		// Whatever unpacks must pack back to the same bytes.
		p := PackInt4(q, n, k)
		for i := range p {
			if p[i] != data[i] {
				t.Fatalf("repack differs at byte %d", i)
			}
		}
	})
}
