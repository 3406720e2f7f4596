package gpu

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/quant"
)

// TestCodecCasesReadBack writes the codec cases and reads every file back against the contract
// of docs/codec-cases.md: the manifest, the metadata, the shapes, the 16-bit exactness of grid16
// inputs, and the expected bytes and output recomputed from the file's own inputs through the
// specification's message-level steps.
func TestCodecCasesReadBack(t *testing.T) {
	dir := t.TempDir()
	if err := WriteCodecCases(dir, CaseOptions{Seed: 5}); err != nil {
		t.Fatal(err)
	}
	man, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(codecCaseSet()); len(man.Cases) != want || want != 58 {
		t.Fatalf("%d cases, want %d (= 58)", len(man.Cases), want)
	}
	if !IsCodecCases(dir) {
		t.Error("IsCodecCases is false on a set of codec cases")
	}
	grid := 0
	for _, mc := range man.Cases {
		l := load(t, dir, mc)
		if l.meta["kind"] != KindCodec || mc.Kind != KindCodec {
			t.Fatalf("%s: kind %q / %q", mc.Name, l.meta["kind"], mc.Kind)
		}
		n, rows, width := l.metaInt("ranks"), l.metaInt("rows"), l.metaInt("width")
		sym, _ := strconv.ParseBool(l.meta["symmetric"])
		c := quant.FlashComm{Bits: l.metaInt("bits"), Group: l.metaInt("group"), Symmetric: sym}
		if err := c.CheckShape(n, width); err != nil {
			t.Fatalf("%s: %v", mc.Name, err)
		}
		chunk := width / n
		mb := c.MessageBytes(rows, chunk)
		if l.metaInt("message_bytes") != mb {
			t.Fatalf("%s: message_bytes %s, want %d", mc.Name, l.meta["message_bytes"], mb)
		}
		in := f32s(l.tensor("inputs", safetensors.F32, int64(n), int64(rows), int64(width)))
		sent := l.tensor("sent", safetensors.U8, int64(n), int64(n), int64(mb))
		reduced := l.tensor("reduced", safetensors.U8, int64(n), int64(mb))
		out := f32s(l.tensor("output", safetensors.F32, int64(rows), int64(width)))
		if l.meta["grid16"] == "true" {
			grid++
			for k, v := range in {
				if safetensors.HalfToFloat32(safetensors.Float32ToHalf(v)) != v || math.Float32bits(v)&0xffff != 0 {
					t.Fatalf("%s: input %d = %v is not exact in fp16 and bf16", mc.Name, k, v)
				}
			}
		}
		ps := make([][]float32, n)
		for i := range ps {
			ps[i] = in[i*rows*width : (i+1)*rows*width]
		}
		for i := range n {
			for j := range n {
				want := c.EncodeChunk(nil, ps[i], rows, width, j*chunk, chunk)
				if !bytes.Equal(sent[(i*n+j)*mb:(i*n+j+1)*mb], want) {
					t.Fatalf("%s: sent[%d][%d] differs from EncodeChunk", mc.Name, i, j)
				}
			}
		}
		got := make([]float32, rows*width)
		for j := range n {
			if err := c.DecodeChunk(reduced[j*mb:(j+1)*mb], rows, chunk, got, width, j*chunk); err != nil {
				t.Fatal(err)
			}
		}
		ranks, err := c.AllReduceRanks(ps, rows, width)
		if err != nil {
			t.Fatal(err)
		}
		for e := range out {
			if math.Float32bits(got[e]) != math.Float32bits(out[e]) || math.Float32bits(ranks[n-1][e]) != math.Float32bits(out[e]) {
				t.Fatalf("%s: output %d = %v; decoded reduced %v, AllReduceRanks %v", mc.Name, e, out[e], got[e], ranks[n-1][e])
			}
		}
	}
	if grid == 0 || grid == len(man.Cases) {
		t.Errorf("%d of %d cases on the 16-bit grid, want some but not all", grid, len(man.Cases))
	}
}

// TestCodecCasesTestVector checks the test-vector cases' outputs against the SHA-256 table of
// docs/flash-communication.md, so that a CUDA run matching these files matches the spec.
func TestCodecCasesTestVector(t *testing.T) {
	want := map[string]string{
		"codec_testvector_int8_g128_asym": "b08c1c78dbf419c3357b65d34ce0998e05b17030f44eed6569816beb9ad652b8",
		"codec_testvector_int4_g128_asym": "cfc6570acbc4210de90df3a7a4b273a9ad411b30707ed1c6369e439ea7bb61ab",
		"codec_testvector_int8_g32_sym":   "57b355854f1620f27f71e0a55af0dff7665848758948b5b0dceae7a1c93648df",
		"codec_testvector_int4_g64_sym":   "85cdcb602b4c44eeaa3aee4102e9c3b147a08fbe14fcd964d4e96649d998304e",
	}
	seen := 0
	for _, s := range codecCaseSet() {
		h, ok := want[s.name()]
		if !ok {
			continue
		}
		seen++
		cc, err := newCodecCase(s, 0)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(f32Bytes(cc.output))
		if got := hex.EncodeToString(sum[:]); got != h {
			t.Errorf("%s: SHA-256 %s, want %s", s.name(), got, h)
		}
	}
	if seen != len(want) {
		t.Errorf("%d test-vector cases, want %d", seen, len(want))
	}
}

// TestCodecCasesDeterministic: the same seed writes the same bytes; another seed other inputs.
func TestCodecCasesDeterministic(t *testing.T) {
	s := codecCaseSet()[13]
	file := func(seed uint64) []byte {
		cc, err := newCodecCase(s, seed)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "c.safetensors")
		if err := cc.file(seed).write(p); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, c := file(1), file(1), file(2)
	if !bytes.Equal(a, b) {
		t.Error("same seed, different bytes")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds, same bytes")
	}
}

// TestCodecCasesSignedZeroMinimum checks that the cases exercise the first-of-equal rule: some
// asymmetric message carries a −0 group minimum and some a +0 one.
func TestCodecCasesSignedZeroMinimum(t *testing.T) {
	s := codecSpec{ranks: 2, rows: 3, width: 768, codec: quant.FlashComm{Bits: 8, Group: 32}}
	cc, err := newCodecCase(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	var neg, pos int
	for _, row := range cc.sent {
		for _, m := range row {
			ng := s.rows * (s.width / s.ranks) / 32
			meta := f32s(m[s.rows*s.width/s.ranks:])
			for _, lo := range meta[ng:] {
				if lo == 0 {
					if math.Signbit(float64(lo)) {
						neg++
					} else {
						pos++
					}
				}
			}
		}
	}
	if neg == 0 || pos == 0 {
		t.Errorf("zero minima: %d negative, %d positive; want both", neg, pos)
	}
}
