package artifact

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/quant"
)

// nonFiniteCase describes one float type for the scan tests: its size and exponent mask.
type nonFiniteCase struct {
	dt   safetensors.DType
	size int
	mask uint64
}

var nonFiniteCases = []nonFiniteCase{
	{safetensors.F16, 2, 0x7C00},
	{safetensors.BF16, 2, 0x7F80},
	{safetensors.F32, 4, 0x7F800000},
	{safetensors.F64, 8, 0x7FF0000000000000},
}

func putElem(b []byte, size int, v uint64) {
	switch size {
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	default:
		binary.LittleEndian.PutUint64(b, v)
	}
}

// finiteBits returns random bits of a finite element: random, or (one time in four) an
// exponent with all ones but one bit, the nearest miss of the test.
func finiteBits(rng *rand.Rand, c nonFiniteCase) uint64 {
	v := rng.Uint64()
	if c.size < 8 {
		v &= 1<<(8*c.size) - 1
	}
	if rng.IntN(4) == 0 {
		v |= c.mask
	}
	if v&c.mask == c.mask { // clear one exponent bit, chosen at random
		var bits []uint64
		for m := c.mask; m != 0; m &= m - 1 {
			bits = append(bits, m&-m)
		}
		v &^= bits[rng.IntN(len(bits))]
	}
	return v
}

// nonFiniteBits returns the bits of a random NaN or ±Inf.
func nonFiniteBits(rng *rand.Rand, c nonFiniteCase) uint64 {
	v := finiteBits(rng, c) | c.mask
	if rng.IntN(3) == 0 {
		v &= c.mask | 1<<(8*c.size-1) // ±Inf
	}
	return v
}

func fillFinite(rng *rand.Rand, c nonFiniteCase, b []byte) {
	for i := 0; i+c.size <= len(b); i += c.size {
		putElem(b[i:], c.size, finiteBits(rng, c))
	}
}

// The kernel path equals the Go code for every length 0..1100 bytes at source offsets 0..7,
// with nothing, one, or two non-finite elements planted anywhere (the first one counts),
// and on 4 MiB buffers (ScanFinite's chunk) with the element near the start, at block
// edges, in the tail and at the end.
func TestFirstNonFiniteKernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range nonFiniteCases {
		buf := make([]byte, 1100+8)
		for off := range 8 {
			for n := 0; n+off <= len(buf); n += c.size * (1 + rng.IntN(3)) {
				b := buf[off : off+n]
				fillFinite(rng, c, b)
				if got := firstNonFinite(c.dt, b); got != -1 {
					t.Fatalf("%s len %d off %d: finite data gives %d", c.dt, n, off, got)
				}
				if hasScanKernel {
					if got := finiteBlocks(c.dt, b); got != n&^127 {
						t.Fatalf("%s len %d: kernel cleared %d bytes, want %d", c.dt, n, got, n&^127)
					}
				}
				ne := n / c.size
				if ne == 0 {
					continue
				}
				for range 4 {
					i := rng.IntN(ne)
					putElem(b[i*c.size:], c.size, nonFiniteBits(rng, c))
					j := rng.IntN(ne)
					if rng.IntN(2) == 0 {
						putElem(b[j*c.size:], c.size, nonFiniteBits(rng, c))
					} else {
						j = i
					}
					want := min(i, j)
					if got, ref := firstNonFinite(c.dt, b), firstNonFiniteGo(c.dt, b); got != want || ref != want {
						t.Fatalf("%s len %d off %d, bad at %d and %d: got %d, Go %d", c.dt, n, off, i, j, got, ref)
					}
					putElem(b[i*c.size:], c.size, finiteBits(rng, c))
					putElem(b[j*c.size:], c.size, finiteBits(rng, c))
				}
			}
		}
		big := make([]byte, 4<<20)
		fillFinite(rng, c, big)
		ne := len(big) / c.size
		bpe := 128 / c.size // elements per kernel block
		for _, i := range []int{0, 1, bpe - 1, bpe, 3*bpe + 1, ne/2 - 1, ne / 2, ne - bpe - 1, ne - bpe, ne - 1, rng.IntN(ne)} {
			putElem(big[i*c.size:], c.size, nonFiniteBits(rng, c))
			if got := firstNonFinite(c.dt, big); got != i {
				t.Fatalf("%s 4 MiB, bad at %d: got %d", c.dt, i, got)
			}
			// Cut so that the element falls in the Go-scanned tail.
			if cut := (i*c.size)&^127 + 128 + c.size*7; cut <= len(big) && i*c.size >= cut-128 {
				if got := firstNonFinite(c.dt, big[:cut]); got != i {
					t.Fatalf("%s %d bytes, bad at %d: got %d", c.dt, cut, i, got)
				}
			}
			putElem(big[i*c.size:], c.size, finiteBits(rng, c))
		}
		if got := firstNonFinite(c.dt, big); got != -1 {
			t.Fatalf("%s 4 MiB finite: got %d", c.dt, got)
		}
	}
}

// Every 16-bit pattern, at every position of a 128-byte block, among finite neighbours.
func TestFirstNonFiniteAll16(t *testing.T) {
	for _, c := range nonFiniteCases[:2] {
		b := make([]byte, 384)
		for h := range 1 << 16 {
			for i := range len(b) / 2 {
				binary.LittleEndian.PutUint16(b[2*i:], 0x3C00) // 1.0 in fp16, 1.875 in bf16
			}
			pos := 64 + h%128 // the second kernel block
			binary.LittleEndian.PutUint16(b[2*pos:], uint16(h))
			want := -1
			if uint64(h)&c.mask == c.mask {
				want = pos
			}
			if got := firstNonFinite(c.dt, b); got != want {
				t.Fatalf("%s %#04x at %d: got %d, want %d", c.dt, h, pos, got, want)
			}
		}
	}
}

// packBlockAsm writes the same bytes as packBlockGo, for any bytes (bad codes included)
// and row strides, only inside the stripes of the rows it was given, and flags the same
// blocks.
func TestPackBlockKernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, nkb := range []int{1, 2, 3, 5, 8, 32, 86} {
		for trial := range 40 {
			rows := 1 + rng.IntN(8)
			if trial < 8 {
				rows = trial + 1
			}
			k := 128*nkb + []int{0, 0, 1, 7, 100, 128}[rng.IntN(6)]
			off := rng.IntN(8)
			src := make([]byte, off+rows*k)
			s := src[off:]
			for i := range s {
				s[i] = byte(rng.IntN(15) - 7)
			}
			want := trial%4 != 0
			if want { // bad codes inside the packed columns
				for range 1 + rng.IntN(3) {
					g, c := rng.IntN(rows), rng.IntN(128*nkb)
					s[g*k+c] = []byte{0x80, 0xF8, 0x08, 0x7F, 0x10, 0xF0, 0x81}[rng.IntN(7)]
				}
			} else if k > 128*nkb { // bad codes beyond them are not looked at
				s[k-1] = 0x80
			}
			if trial%10 == 9 { // arbitrary bytes
				for i := range s {
					s[i] = byte(rng.Uint32())
				}
				want = true
			}
			d1 := bytes.Repeat([]byte{0xA5}, 512*nkb+64)
			d2 := bytes.Clone(d1)
			b1 := packBlockAsm(d1, s, k, rows, nkb)
			b2 := packBlockGo(d2, s, k, rows, nkb)
			if !bytes.Equal(d1, d2) || b1 != b2 || b1 != want {
				t.Fatalf("nkb %d rows %d k %d trial %d: outputs equal %v, bad %v (Go %v, want %v)", nkb, rows, k, trial, bytes.Equal(d1, d2), b1, b2, want)
			}
			for i, v := range d1 {
				in := i < 512*nkb && i%512 < 64*rows
				if !in && v != 0xA5 {
					t.Fatalf("nkb %d rows %d: byte %d outside the stripes written", nkb, rows, i)
				}
			}
		}
	}
}

// The fast path (AVX2 where present) and the Go path both equal quant.PackInt4, on full,
// ragged and padded shapes up to the sizes of a 7B model.
func TestPackKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, s := range [][2]int{{8, 128}, {1, 128}, {13, 300}, {7, 129}, {9, 256}, {16, 127}, {3, 1000}, {64, 4096}, {4096, 4096}, {11008, 4096}, {4096, 11008}} {
		n, k := s[0], s[1]
		if testing.Short() && n*k > 1<<22 {
			continue
		}
		q := randomCodes(rng, n*k)
		fast, err := packInt4With(q, n, k, hasPackKernel)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := packInt4With(q, n, k, false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("%d×%d: vector and Go paths differ", n, k)
		}
		if !bytes.Equal(slow, quant.PackInt4(q, n, k)) {
			t.Fatalf("%d×%d: differs from quant.PackInt4", n, k)
		}
	}
}

// A bad code is named, at the same [row, col] by both paths, wherever it lies: full or
// ragged block, first or last row or column, and with two bad codes the first in row-major
// order.
func TestPackKernelsBadCodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	type pos struct{ r, c int }
	for _, s := range [][2]int{{8, 128}, {13, 300}, {9, 256}, {4096, 4096}} {
		n, k := s[0], s[1]
		q := randomCodes(rng, n*k)
		places := []pos{{0, 0}, {0, k - 1}, {n - 1, 0}, {n - 1, k - 1}, {n / 2, k / 2}, {rng.IntN(n), rng.IntN(k)}}
		if k > 128 {
			places = append(places, pos{n - 1, k/128*128 - 1}, pos{n / 3, 127}, pos{n / 3, 128})
		}
		if k%128 != 0 {
			places = append(places, pos{1, k / 128 * 128}) // the first code of the ragged block
		}
		for pi, p := range places {
			bad := []int8{-8, 8, 127, -128}[pi%4]
			q[p.r*k+p.c] = bad
			want := fmt.Sprintf("code %d at [%d, %d]", bad, p.r, p.c)
			var second pos // a later bad code in row-major order, ahead in column order
			if p.r+1 < n {
				second = pos{p.r + 1, rng.IntN(k)}
				q[second.r*k+second.c] = -8
			}
			_, e1 := packInt4With(q, n, k, hasPackKernel)
			_, e2 := packInt4With(q, n, k, false)
			if e1 == nil || e2 == nil || e1.Error() != e2.Error() || !strings.Contains(e1.Error(), want) {
				t.Fatalf("%d×%d, %s: vector %v, Go %v", n, k, want, e1, e2)
			}
			q[p.r*k+p.c] = 0
			if p.r+1 < n {
				q[second.r*k+second.c] = 0
			}
		}
	}
}

// badCodes64 agrees with the definition on every byte, in every position, and does not let
// a bad byte hide a neighbour's verdict.
func TestBadCodes64(t *testing.T) {
	for b := range 256 {
		valid := int8(b) >= quant.Int4Min && int8(b) <= quant.Int4Max
		for pos := range 8 {
			for _, fill := range []uint64{0, 0x0707070707070707, 0xF9F9F9F9F9F9F9F9, 0x8080808080808080} {
				m := uint64(0xFF) << (8 * pos)
				w := fill&^m | uint64(b)<<(8*pos)
				if got := badCodes64(w)&(0x80<<(8*pos)) == 0; got != valid {
					t.Fatalf("byte %#02x at %d among %#x: valid %v, badCodes64 says %v", b, pos, fill, valid, got)
				}
			}
		}
	}
}

func BenchmarkFirstNonFinite(b *testing.B) {
	for _, size := range []int{4 << 20, 256 << 10} {
		buf := make([]byte, size)
		fillFinite(rand.New(rand.NewPCG(1, 1)), nonFiniteCases[0], buf)
		for _, p := range []struct {
			name string
			fn   func(safetensors.DType, []byte) int
		}{{"asm", firstNonFinite}, {"go", firstNonFiniteGo}} {
			b.Run(fmt.Sprintf("%s/%dK", p.name, size>>10), func(b *testing.B) {
				if p.name == "asm" && !hasScanKernel {
					b.Skip("no AVX2 kernel")
				}
				b.SetBytes(int64(size))
				for b.Loop() {
					if p.fn(safetensors.F16, buf) >= 0 {
						b.Fatal("non-finite")
					}
				}
			})
		}
	}
}

// BenchmarkPackInt4Paths is BenchmarkPackInt4 (on all cores) with the vector path and the
// Go path; PackBlock is one core on one 8-row block of 11008 codes a row (in cache).
func BenchmarkPackInt4Paths(b *testing.B) {
	n, k := 4096, 11008
	q := randomCodes(rand.New(rand.NewPCG(1, 1)), n*k)
	for _, vec := range []bool{true, false} {
		name := map[bool]string{true: "asm", false: "go"}[vec]
		b.Run(name, func(b *testing.B) {
			if vec && !hasPackKernel {
				b.Skip("no AVX2 kernel")
			}
			b.SetBytes(int64(n * k))
			for b.Loop() {
				if _, err := packInt4With(q, n, k, vec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	qb := int8Bytes(q[:8*k])
	dst := make([]byte, 512*(k/128))
	for _, p := range []struct {
		name string
		fn   func(dst, src []byte, k, rows, nkb int) bool
	}{{"asm", packBlockAsm}, {"go", packBlockGo}} {
		b.Run("PackBlock/"+p.name, func(b *testing.B) {
			if p.name == "asm" && !hasPackKernel {
				b.Skip("no AVX2 kernel")
			}
			b.SetBytes(int64(8 * k))
			for b.Loop() {
				if p.fn(dst, qb, k, 8, k/128) {
					b.Fatal("bad code")
				}
			}
		})
	}
}
