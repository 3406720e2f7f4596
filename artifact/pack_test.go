package artifact

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/quant"
)

func randomCodes(rng *rand.Rand, n int) []int8 {
	q := make([]int8, n)
	for i := range q {
		q[i] = int8(rng.IntN(15) - 7)
	}
	return q
}

// The fast packer is held to quant.PackInt4, the layout's reference implementation, byte
// for byte, on shapes with and without padding in both dimensions.
func TestPackMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range [][2]int{{1, 1}, {8, 128}, {7, 100}, {9, 129}, {16, 256}, {64, 172}, {33, 384}, {256, 768}, {5, 1000}} {
		n, k := s[0], s[1]
		q := randomCodes(rng, n*k)
		got, err := packInt4(q, n, k)
		if err != nil {
			t.Fatal(err)
		}
		if want := quant.PackInt4(q, n, k); !bytes.Equal(got, want) {
			t.Fatalf("%d×%d: fast pack differs from quant.PackInt4", n, k)
		}
		back, err := unpackInt4(got, n, k)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := quant.UnpackInt4(got, n, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(int8Bytes(back), int8Bytes(q)) || !bytes.Equal(int8Bytes(ref), int8Bytes(q)) {
			t.Fatalf("%d×%d: unpack does not round-trip", n, k)
		}
	}
}

func int8Bytes(q []int8) []byte {
	b := make([]byte, len(q))
	for i, v := range q {
		b[i] = byte(v)
	}
	return b
}

func TestPackRejectsBadCodes(t *testing.T) {
	for _, bad := range []int8{-8, 8, 100, -128, 127} {
		for _, col := range []int{5, 129} { // in a full 128-column block, and in the partial last one
			q := make([]int8, 3*130)
			q[2*130+col] = bad
			if _, err := packInt4(q, 3, 130); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("[2, %d]", col)) {
				t.Errorf("code %d at column %d: error %v", bad, col, err)
			}
		}
	}
	// The word test agrees with the definition on every byte, in every position.
	for b := range 256 {
		valid := int8(b) >= quant.Int4Min && int8(b) <= quant.Int4Max
		for pos := range 4 {
			w := uint32(b) << (8 * pos)
			if got := badCodes(w)&(0x80<<(8*pos)) == 0; got != valid {
				t.Fatalf("byte %#02x at %d: valid %v, badCodes says %v", b, pos, valid, got)
			}
		}
	}
}

// Bytes read from disk are untrusted: a nonzero padding code or a −8 is refused, naming
// the position, exactly as the reference refuses it.
func TestUnpackRejectsCorruption(t *testing.T) {
	n, k := 3, 100 // Np = 8, Kp = 128: padding rows and columns
	p, _ := packInt4(randomCodes(rand.New(rand.NewPCG(3, 4)), n*k), n, k)
	for _, c := range []struct {
		n, k int
		want string
	}{{7, 120, "padding"}, {1, 5, "outside"}} {
		bad := bytes.Clone(p)
		off, high := refOffset(c.n, c.k, 128)
		if c.want == "padding" {
			bad[off] |= 0x11 // make both nibbles nonzero
		} else if high {
			bad[off] = bad[off]&0x0F | 0x80
		} else {
			bad[off] = bad[off]&0xF0 | 0x08
		}
		_, err := unpackInt4(bad, n, k)
		_, refErr := quant.UnpackInt4(bad, n, k)
		if err == nil || refErr == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("corruption at [%d, %d]: fast %v, reference %v", c.n, c.k, err, refErr)
		}
	}
	if _, err := unpackInt4(p[:len(p)-1], n, k); err == nil {
		t.Error("truncated buffer accepted")
	}
}

// refOffset restates the layout's byte-offset formula (docs/fastgemm-layout.md) for tests.
func refOffset(n, k, kp int) (int, bool) {
	nb, gid := n/8, n%8
	kb, r := k/128, k%128
	step, r := r/32, r%32
	high := r >= 16
	if high {
		r -= 16
	}
	tig, j := r/4, r%4
	lane := gid*4 + tig
	return ((nb*(kp/128)+kb)*32+lane)*16 + step*4 + j, high
}

// A hand-computed block: the layout's formula places code (n, k) in the lane word of
// gid = n%8, tig = (k%16)/4, at byte step·4 + k%4, low nibble for k%32 < 16.
func TestPackKnownPositions(t *testing.T) {
	n, k := 8, 128
	q := make([]int8, n*k)
	q[0*k+0] = 1   // lane 0, step 0, byte 0, low nibble
	q[0*k+16] = -1 // lane 0, step 0, byte 0, high nibble (0xF)
	q[3*k+37] = 5  // gid 3, k 37: step 1, r 5 → tig 1, j 1: lane 13, byte 16·13 + 4 + 1
	q[7*k+127] = 7 // gid 7, step 3, r 31 → high, tig 3, j 3: lane 31, byte 16·31 + 12 + 3
	p, err := packInt4(q, n, k)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 512)
	want[0] = 0xF1
	want[16*13+4+1] = 0x05
	want[16*31+12+3] = 0x70
	if !bytes.Equal(p, want) {
		for i := range p {
			if p[i] != want[i] {
				t.Errorf("byte %d = %#02x, want %#02x", i, p[i], want[i])
			}
		}
	}
}

func FuzzPack(f *testing.F) {
	f.Add(uint16(9), uint16(129), uint64(1))
	f.Add(uint16(1), uint16(1), uint64(2))
	f.Add(uint16(40), uint16(300), uint64(3))
	f.Fuzz(func(t *testing.T, n16, k16 uint16, seed uint64) {
		n, k := int(n16%80)+1, int(k16%700)+1
		q := randomCodes(rand.New(rand.NewPCG(seed, 0)), n*k)
		p, err := packInt4(q, n, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, quant.PackInt4(q, n, k)) {
			t.Fatalf("%d×%d: differs from the reference", n, k)
		}
		back, err := unpackInt4(p, n, k)
		if err != nil || !bytes.Equal(int8Bytes(back), int8Bytes(q)) {
			t.Fatalf("%d×%d: round trip: %v", n, k, err)
		}
	})
}

// Unpacking arbitrary bytes never panics, and accepts exactly what the reference accepts.
func FuzzUnpack(f *testing.F) {
	f.Add([]byte{0x12, 0x34}, uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, n8, k8 uint8) {
		n, k := int(n8%20)+1, int(k8%200)+1
		np, kp := quant.PackedDims(n, k)
		buf := make([]byte, np*kp/2)
		copy(buf, data)
		got, err := unpackInt4(buf, n, k)
		ref, refErr := quant.UnpackInt4(buf, n, k)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("fast %v, reference %v", err, refErr)
		}
		if err == nil && !bytes.Equal(int8Bytes(got), int8Bytes(ref)) {
			t.Fatal("fast and reference unpack differ")
		}
	})
}

// compressed-tensors' pack_to_int32: eight codes per word, code i (plus 8) in bits 4i..4i+3.
func TestPackInt32KnownWords(t *testing.T) {
	// One row of 17 codes: −7..0 are nibbles 1..8 (word 0x87654321), 1..7, 0 are 9..15, 8
	// (0x8FEDCBA9), and the 17th code 7 is 15 with seven zero padding nibbles (0x0000000F).
	q := []int8{-7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 0, 7}
	got := PackInt32(q, 1, 17)
	want := []uint32{0x87654321, 0x8FEDCBA9, 0x0000000F}
	for i, w := range want {
		if g := binary.LittleEndian.Uint32(got[4*i:]); g != w {
			t.Errorf("word %d = %#08x, want %#08x", i, g, w)
		}
	}
	back, err := UnpackInt32(got, 1, 17)
	if err != nil || !bytes.Equal(int8Bytes(back), int8Bytes(q)) {
		t.Errorf("round trip: %v %v", back, err)
	}
	// Two rows: each row is packed on its own (padding never crosses rows).
	two := PackInt32([]int8{1, 2, 3, -1, -2, -3}, 2, 3)
	if a, b := binary.LittleEndian.Uint32(two), binary.LittleEndian.Uint32(two[4:]); a != 0x0BA9 || b != 0x0567 {
		t.Errorf("2×3 words %#x %#x, want 0xba9 0x567", a, b)
	}
}

func TestScanFiniteSWAR(t *testing.T) {
	for _, c := range []struct {
		bits []uint16
		want int
	}{
		{[]uint16{0x3C00, 0x7BFF, 0xFBFF, 0x0001, 0x8000}, -1}, // 1, max, −max, subnormal, −0
		{[]uint16{0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x7C00}, 4},  // +Inf after a full word
		{[]uint16{0x3C00, 0xFE00, 0x7C00}, 1},                  // NaN first
		{[]uint16{0x7C01}, 0},
	} {
		b := make([]byte, 2*len(c.bits))
		for i, h := range c.bits {
			binary.LittleEndian.PutUint16(b[2*i:], h)
		}
		if got := firstNonFinite("F16", b); got != c.want {
			t.Errorf("%#04x: %d, want %d", c.bits, got, c.want)
		}
	}
}

func BenchmarkPackInt4(b *testing.B) {
	n, k := 11008, 4096
	q := randomCodes(rand.New(rand.NewPCG(1, 1)), n*k)
	b.SetBytes(int64(n * k))
	for b.Loop() {
		if _, err := packInt4(q, n, k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackInt4Reference(b *testing.B) {
	n, k := 11008, 4096
	q := randomCodes(rand.New(rand.NewPCG(1, 1)), n*k)
	b.SetBytes(int64(n * k))
	for b.Loop() {
		quant.PackInt4(q, n, k)
	}
}
