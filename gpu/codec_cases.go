package gpu

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/quant"
)

// KindCodec is the kind of a Flash Communication codec case (docs/codec-cases.md).
const KindCodec = "codec"

// codecSpec is one codec case: an all-reduce of ranks partials of rows×width values.
type codecSpec struct {
	ranks, rows, width int
	codec              quant.FlashComm
	grid16             bool // inputs exactly representable in both fp16 and bf16
	testVector         bool // the partials of quant.FlashCommTestVector (docs/flash-communication.md)
	long               bool // 24 rows: enough groups per chunk that every warp of a kernel takes a second step
	note               string
}

func (s codecSpec) name() string {
	sym := "asym"
	if s.codec.Symmetric {
		sym = "sym"
	}
	name := fmt.Sprintf("codec_n%d_int%d_g%d_%s", s.ranks, s.codec.Bits, s.codec.Group, sym)
	if s.testVector {
		name = fmt.Sprintf("codec_testvector_int%d_g%d_%s", s.codec.Bits, s.codec.Group, sym)
	}
	if s.long {
		name += fmt.Sprintf("_rows%d", s.rows)
	}
	if s.grid16 {
		name += "_grid16"
	}
	return name
}

// codecCaseSet is every combination of N ∈ {1, 2, 4, 8}, INT4/INT8, G ∈ {32, 64, 128} and both
// symmetries on 3 rows of N·384 values (C = 384: 3, 6 or 12 groups per chunk, not a power of
// two), half of them on the fp16/bf16 grid so that the 16-bit input paths are tested too; the
// four codecs of the specification's test vector (8 ranks, 4 rows of 1024 values); and INT4 g128
// on 24 rows for N ∈ {2, 4, 8} (72 groups per chunk): the tensor-core reduce (kernels v7) gives a
// warp 8 groups per step, so its host emulation (one block of 8 warps) needs more than 64 groups
// before any warp reaches a second step and the loads it issues for it.
func codecCaseSet() []codecSpec {
	var cs []codecSpec
	for _, n := range []int{1, 2, 4, 8} {
		for _, bits := range []int{4, 8} {
			for _, g := range []int{32, 64, 128} {
				for _, sym := range []bool{false, true} {
					grid := (n/2+bits/4+g/32+boolInt(sym))%2 == 1
					cs = append(cs, codecSpec{ranks: n, rows: 3, width: n * 384, grid16: grid,
						codec: quant.FlashComm{Bits: bits, Group: g, Symmetric: sym},
						note:  "random partials with outlier columns, a constant group, signed zeros, a subnormal group"})
				}
			}
		}
	}
	for _, c := range []quant.FlashComm{{Bits: 8, Group: 128}, {Bits: 4, Group: 128}, {Bits: 8, Group: 32, Symmetric: true}, {Bits: 4, Group: 64, Symmetric: true}} {
		cs = append(cs, codecSpec{ranks: 8, rows: 4, width: 1024, codec: c, testVector: true,
			note: "quant.FlashCommTestVector(8, 4, 1024): the output's SHA-256 is in docs/flash-communication.md"})
	}
	for _, n := range []int{2, 4, 8} {
		for _, sym := range []bool{false, true} {
			cs = append(cs, codecSpec{ranks: n, rows: 24, width: n * 384, grid16: sym == (n == 4), long: true,
				codec: quant.FlashComm{Bits: 4, Group: 128, Symmetric: sym},
				note:  "24 rows of the same partials as the 3-row cases: 72 groups per chunk"})
		}
	}
	return cs
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// codecInputs draws the partials of a case: per rank and row a normal sample at a row scale of
// 2^−6, 1 or 2^3, ×64 in the outlier columns k mod 97 = 5; in every rank a constant group (scale
// 0 → 1), a group of zeros starting with −0 and one starting with +0 (the sign of the minimum
// travels: the first of equal values wins), and a group of subnormals (tiny normals, 2^−10, when
// the case is on the 16-bit grid). grid16 rounds every value to bf16 within the fp16 normal
// range, so that it is exact in fp16, bf16 and float32.
func codecInputs(s codecSpec, seed uint64) [][]float32 {
	if s.testVector {
		return quant.FlashCommTestVector(s.ranks, s.rows, s.width)
	}
	r := caseRand(seed, s.name())
	g := s.codec.Group
	ps := make([][]float32, s.ranks)
	for i := range ps {
		p := make([]float32, s.rows*s.width)
		for row := 0; row < s.rows; row++ {
			scale := []float64{0x1p-6, 1, 8}[(row+i)%3]
			for k := 0; k < s.width; k++ {
				v := r.NormFloat64() * scale
				if k%97 == 5 {
					v *= 64
				}
				p[row*s.width+k] = float32(v)
			}
		}
		// Special groups, at positions that differ between ranks.
		ngroups := s.width / g
		grp := func(row, gi int) []float32 {
			o := row*s.width + (gi%ngroups)*g
			return p[o : o+g]
		}
		c := grp(0, i)
		for k := range c {
			c[k] = 1.5
		}
		z := grp(1%s.rows, i+1)
		for k := range z {
			z[k] = float32(k % 3) // zeros and positives: the minimum is a zero
		}
		z[0] = float32(math.Copysign(0, -1))
		z = grp(2%s.rows, i+2)
		for k := range z {
			z[k] = float32(k%5) * 0.25
		}
		z[1] = float32(math.Copysign(0, -1)) // +0 first, −0 second: lo is +0
		sub := grp(s.rows-1, i+3)
		tiny := 0x1p-140
		if s.grid16 {
			tiny = 0x1p-10
		}
		for k := range sub {
			sub[k] = float32(r.NormFloat64() * tiny)
		}
		if s.long {
			// Positions shared by every rank, so that the reduce sees them whole: a group that
			// is tiny in every rank (without grid16 the reduced group's scale is subnormal, where
			// the spec divides instead of multiplying by the reciprocal), and a group whose
			// rank 0 is 2^44 (grid16: 2^24) times larger than the others (their integer scales
			// round to 0: sh ≥ 25).
			t := grp(5%s.rows, 1)
			for k := range t {
				t[k] = float32(r.NormFloat64() * tiny)
			}
			hi, lo := 0x1p40, 0x1p-4
			if s.grid16 {
				hi, lo = 0x1p12, 0x1p-12
			}
			b := grp(7%s.rows, 2)
			for k := range b {
				if i == 0 {
					b[k] = float32(r.NormFloat64() * hi)
				} else {
					b[k] = float32(r.NormFloat64() * lo)
				}
			}
		}
		if s.grid16 {
			for k, v := range p {
				p[k] = onGrid16(v)
			}
		}
		ps[i] = p
	}
	return ps
}

// onGrid16 rounds v to bf16 (nearest even) and keeps it a normal fp16 value or zero, so that it
// is exactly representable in fp16, bf16 and float32.
func onGrid16(v float32) float32 {
	a := math.Abs(float64(v))
	switch {
	case a < 0x1p-14:
		if a == 0 {
			return v
		}
		return float32(math.Copysign(0x1p-14, float64(v)))
	case a > 60000:
		return float32(math.Copysign(60000, float64(v)))
	}
	u := math.Float32bits(v)
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

// codecCase is a case's inputs and the expected bytes and values of every step.
type codecCase struct {
	spec     codecSpec
	partials [][]float32
	sent     [][][]byte // sent[i][j]: rank i's message for chunk j (step 1)
	reduced  [][]byte   // reduced[j]: rank j's requantized reduce (step 3)
	output   []float32  // every rank's output (step 5)
}

// newCodecCase runs the all-reduce message by message with quant.FlashComm's EncodeChunk,
// ReduceChunks and DecodeChunk (the executable specification) and checks the result against
// AllReduceRanks (every rank) and AllReduce (the fast path).
func newCodecCase(s codecSpec, seed uint64) (*codecCase, error) {
	c := s.codec
	if err := c.CheckShape(s.ranks, s.width); err != nil {
		return nil, err
	}
	ps := codecInputs(s, seed)
	n, chunk := s.ranks, s.width/s.ranks
	cc := &codecCase{spec: s, partials: ps, sent: make([][][]byte, n), reduced: make([][]byte, n)}
	for i := range n {
		cc.sent[i] = make([][]byte, n)
		for j := range n {
			cc.sent[i][j] = c.EncodeChunk(nil, ps[i], s.rows, s.width, j*chunk, chunk)
		}
	}
	cc.output = make([]float32, s.rows*s.width)
	for j := range n {
		recv := make([][]byte, n)
		for i := range n {
			recv[i] = cc.sent[i][j]
		}
		t, err := c.ReduceChunks(recv, s.rows, chunk)
		if err != nil {
			return nil, err
		}
		cc.reduced[j] = c.EncodeChunk(nil, t, s.rows, chunk, 0, chunk)
		if err := c.DecodeChunk(cc.reduced[j], s.rows, chunk, cc.output, s.width, j*chunk); err != nil {
			return nil, err
		}
	}
	ranks, err := c.AllReduceRanks(ps, s.rows, s.width)
	if err != nil {
		return nil, err
	}
	fast := make([]float32, s.rows*s.width)
	if err := c.AllReduce(fast, ps, s.rows, s.width); err != nil {
		return nil, err
	}
	for k, out := range append(ranks, fast) {
		for e := range out {
			if math.Float32bits(out[e]) != math.Float32bits(cc.output[e]) {
				return nil, fmt.Errorf("gpu: codec case %s: rank %d (or the fast path) differs at %d: %v != %v", s.name(), k, e, out[e], cc.output[e])
			}
		}
	}
	return cc, nil
}

func (cc *codecCase) file(seed uint64) *caseFile {
	s := cc.spec
	n := s.ranks
	mb := s.codec.MessageBytes(s.rows, s.width/n)
	f := &caseFile{meta: map[string]string{
		"kind": KindCodec, "ranks": strconv.Itoa(n), "rows": strconv.Itoa(s.rows), "width": strconv.Itoa(s.width),
		"bits": strconv.Itoa(s.codec.Bits), "group": strconv.Itoa(s.codec.Group),
		"symmetric": strconv.FormatBool(s.codec.Symmetric), "grid16": strconv.FormatBool(s.grid16),
		"message_bytes": strconv.Itoa(mb), "seed": strconv.FormatUint(seed, 10), "note": s.note,
	}}
	in := make([]float32, 0, n*s.rows*s.width)
	for _, p := range cc.partials {
		in = append(in, p...)
	}
	f.add("inputs", safetensors.F32, f32Bytes(in), n, s.rows, s.width)
	sent := make([]byte, 0, n*n*mb)
	for i := range n {
		for j := range n {
			sent = append(sent, cc.sent[i][j]...)
		}
	}
	f.add("sent", safetensors.U8, sent, n, n, mb)
	var red []byte
	for _, m := range cc.reduced {
		red = append(red, m...)
	}
	f.add("reduced", safetensors.U8, red, n, mb)
	f.add("output", safetensors.F32, f32Bytes(cc.output), s.rows, s.width)
	return f
}

// WriteCodecCases writes the Flash Communication codec cases of the CUDA runtime into dir
// (created if needed): manifest.json (the format of ReadManifest, every case of kind "codec")
// and one safetensors file per case, as docs/codec-cases.md specifies. The expected bytes and
// values come from quant.FlashComm; the same seed writes the same bytes.
func WriteCodecCases(dir string, opts CaseOptions) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	man := Manifest{Version: ManifestVersion}
	var jobs []func() error
	for _, s := range codecCaseSet() {
		name := s.name()
		man.Cases = append(man.Cases, ManifestCase{Name: name, File: name + ".safetensors", Kind: KindCodec})
		jobs = append(jobs, func() error {
			cc, err := newCodecCase(s, opts.Seed)
			if err != nil {
				return fmt.Errorf("gpu: case %s: %w", name, err)
			}
			return cc.file(opts.Seed).write(filepath.Join(dir, name+".safetensors"))
		})
	}
	if err := runParallel(jobs); err != nil {
		return err
	}
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o644)
}

// IsCodecCases reports whether dir holds a set of codec cases (a manifest whose cases are all of
// kind "codec").
func IsCodecCases(dir string) bool {
	m, err := ReadManifest(dir)
	if err != nil || len(m.Cases) == 0 {
		return false
	}
	for _, c := range m.Cases {
		if c.Kind != KindCodec {
			return false
		}
	}
	return true
}
