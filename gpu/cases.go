// Package gpu drives the CUDA runtime (odyssey-rt, built from runtime/) as a subprocess and
// writes its test cases.
//
// The Go binary stays pure Go (CGO_ENABLED=0) and runs where no GPU is: everything that
// touches CUDA lives in the separate odyssey-rt executable, and this package talks to it
// through its command line and the one JSON object it prints (docs/gemm-cases.md). The CUDA
// kernels are tested against the Go scalar references, never against themselves: Go writes
// the expected results (WriteGEMMCases), odyssey-rt compares.
package gpu

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/internal/parallel"
	"github.com/odyssey-llm/odyssey/quant"
)

// ManifestVersion is the version of the case format of docs/gemm-cases.md written here.
const ManifestVersion = 1

// Case kinds (the manifest's and the metadata's "kind"); KindW4A16 is in cases_w4a16.go.
const (
	KindW4A8 = "w4a8"
	KindAct  = "act"
)

// CaseOptions controls WriteGEMMCases.
type CaseOptions struct {
	// Seed makes the random inputs; the same seed writes the same bytes.
	Seed uint64
}

// Manifest is DIR/manifest.json.
type Manifest struct {
	Version int            `json:"version"`
	Cases   []ManifestCase `json:"cases"`
}

// ManifestCase is one entry of the manifest.
type ManifestCase struct {
	Name string `json:"name"`
	File string `json:"file"`
	Kind string `json:"kind"`
}

// w4a8Spec is one W4A8 GEMM case. gs == k means per-channel.
type w4a8Spec struct {
	m, n, k, gs int
	perToken    bool
	bias        bool
	note        string
	overflow    bool // the worst-case bound case (see overflowWeight)
}

func (s w4a8Spec) name() string {
	g := "g" + strconv.Itoa(s.gs)
	if s.gs == s.k {
		g = "pc"
	}
	act := "tensor"
	if s.perToken {
		act = "tok"
	}
	name := fmt.Sprintf("w4a8_m%d_n%d_k%d_%s_%s", s.m, s.n, s.k, g, act)
	if s.bias {
		name += "_bias"
	}
	if s.overflow {
		name += "_overflow"
	}
	return name
}

// actSpec is one activation quantization case.
type actSpec struct {
	m, k   int
	static float32 // the per-tensor scale
	note   string
}

func (s actSpec) name() string { return fmt.Sprintf("act_m%d_k%d", s.m, s.k) }

// caseSet is the default set. It is chosen to cover the kernel's edges rather than to be a
// product of every dimension (which would be ~1000 files): N at and past the 8-column mma
// tile and the 64/128-column block edges, M at and past the 16-row tile (1 and 3 are the
// decode shapes, 4096 a prefill), K from one 128-deep block to 4096, every group size, both
// activation scale layouts, with and without bias. About 10 MB in all, written in under a
// second.
func caseSet() ([]w4a8Spec, []actSpec) {
	var ws []w4a8Spec
	// N at and past tile edges.
	for i, n := range []int{8, 64, 72, 120, 128, 136, 256, 264, 1000} {
		ws = append(ws, w4a8Spec{m: 17, n: n, k: 256, gs: 64, perToken: true, bias: i%2 == 0,
			note: "N at and past the 8/64/128-column tile edges"})
	}
	// M at and past row-tile edges.
	for i, m := range []int{1, 3, 16, 64, 118, 257} {
		ws = append(ws, w4a8Spec{m: m, n: 72, k: 384, gs: 128, perToken: i%2 == 0, bias: i%3 == 1,
			note: "M at and past the 16-row tile edges, K = 3 blocks"})
	}
	// K and group size, per-tensor and per-token.
	for i, k := range []int{128, 256, 384, 1024} {
		for j, gs := range []int{32, 64, 128, k} {
			if gs == 128 && k == 128 {
				continue // the same as per-channel
			}
			ws = append(ws, w4a8Spec{m: 16 + (i+j)%2, n: 136, k: k, gs: gs, perToken: (i+j)%2 == 0, bias: j == 1,
				note: "group size along K (per-channel when g = K)"})
		}
	}
	// Decode (M = 1..4, the GEMV's range) with every group size, N not a multiple of 8 (a
	// padded last strip) and fewer K blocks than the GEMV has warps.
	for j, gs := range []int{32, 64, 128, 512} {
		ws = append(ws, w4a8Spec{m: j + 1, n: 100, k: 512, gs: gs, perToken: j%2 == 0, bias: j%2 == 1,
			note: "decode rows, every group size, padded last 8-column strip"})
	}
	// Small-batch decode (M = 5..16, the tensor-core GEMV's range: rows 0..7 use half of the
	// m16n8k32 tile, rows 8..15 the other half) with every group size, a padded last 8-column
	// strip and a strip count that is not a multiple of the GEMV's strips per block (100 and
	// 200 columns: 13 and 25 strips).
	for j, gs := range []int{32, 64, 128, 512} {
		for i, m := range []int{5, 8, 9, 16} {
			if (i+j)%2 == 1 && m != 8 && m != 16 {
				continue // keep M = 8 and 16 with every group size, 5 and 9 with half of them
			}
			ws = append(ws, w4a8Spec{m: m, n: 100 + 100*(i%2), k: 512, gs: gs, perToken: (i+j)%2 == 0, bias: j%2 == 0,
				note: "small-batch decode rows, every group size, padded last strip"})
		}
	}
	ws = append(ws,
		w4a8Spec{m: 16, n: 40, k: 11008, gs: 128, perToken: true, bias: true, note: "M = 16, K = 86 blocks (the GEMV stages x in chunks at this M·K)"},
		w4a8Spec{m: 8, n: 24, k: 11008, gs: 32, perToken: false, note: "M = 8, K = 11008, groups of 32"},
		w4a8Spec{m: 12, n: 136, k: 4096, gs: 4096, perToken: true, bias: true, note: "M = 12, long K, per-channel"},
		w4a8Spec{m: 16, n: 64, k: 4096, gs: 64, perToken: false, note: "M = 16, long K, groups of 64, per-tensor activations"},
		w4a8Spec{m: 7, n: 264, k: 2048, gs: 128, perToken: true, note: "M = 7, K = 16 blocks (one GEMV iteration)"},
	)
	// Long K with the decode shapes.
	ws = append(ws,
		w4a8Spec{m: 2, n: 24, k: 11008, gs: 64, perToken: false, bias: true, note: "decode, K = 86 blocks (not a multiple of the GEMV's warps × loads ahead)"},
		w4a8Spec{m: 1, n: 264, k: 4096, gs: 128, perToken: true, note: "long K, decode (M = 1)"},
		w4a8Spec{m: 3, n: 120, k: 4096, gs: 4096, perToken: false, bias: true, note: "long K, per-channel, per-tensor activations"},
		w4a8Spec{m: 3, n: 64, k: 4096, gs: 32, perToken: true, note: "long K with 128 groups of 32"},
		// Many rows on a small weight: a prefill-sized M.
		w4a8Spec{m: 4096, n: 64, k: 256, gs: 128, perToken: true, bias: true, note: "prefill-sized M on a small weight"},
		// A realistic-width case.
		w4a8Spec{m: 64, n: 1000, k: 1024, gs: 128, perToken: true, bias: true, note: "wide N, not a multiple of 64"},
		overflowSpec, overflowSpec16,
	)
	as := []actSpec{
		{m: 8, k: 128, static: 1.0 / 16, note: "ties (x exactly half a step), zeros, an all-zero row, fp16 extremes; static scale 2^-4"},
		{m: 17, k: 384, static: 0.0371, note: "random rows of varied range, static scale below the data's maximum (clamping)"},
		{m: 3, k: 4096, static: 0.5, note: "long rows"},
	}
	return ws, as
}

// overflowSpec is the worst-case accumulator case: channel overflowChannel of its weight has
// codes ±7 everywhere and scales chosen so that IntegerScales's bound is the largest value any
// weight can have, and row 0 of x (row 1: its negation) drives that channel's accumulator to
// exactly ±bound.
var overflowSpec = w4a8Spec{m: 3, n: 8, k: 1024, gs: 64, perToken: true, overflow: true,
	note: "worst case: channel 3's |acc| reaches its bound 2147482624 = 2^31 - 1023 exactly (rows 0 and 1)"}

// overflowSpec16 is the same worst case at M = 16: rows 0 and 8 reach +bound, 1 and 9 −bound,
// so both halves of the m16n8k32 tile (rows 0..7 and 8..15) carry the extreme accumulator.
var overflowSpec16 = w4a8Spec{m: 16, n: 8, k: 1024, gs: 64, perToken: false, overflow: true,
	note: "worst case at M = 16: channel 3's |acc| reaches 2147482624 in rows 0, 1, 8 and 9"}

const overflowChannel = 3

// OverflowBound is the bound of the overflow case's extreme channel: 127·16·Σ_g ŝ·Σ|q| must
// be a multiple of 127·16 = 2032, and 2032·⌊(2³¹−1)/2032⌋ = 2 147 482 624 is the largest such
// multiple that fits int32, so no weight's worst case can come closer to overflow.
const OverflowBound = 2032 * ((1<<31 - 1) / 2032)

// WriteGEMMCases writes the test cases of the CUDA runtime into dir (created if needed):
// manifest.json and one safetensors file per case, as docs/gemm-cases.md specifies. The
// expected results come from the quant package's scalar references (the w4a16 cases': an
// exact sum rounded once, newW4A16Case). Cases are generated in
// parallel; each has its own random stream derived from opts.Seed and its name, so the output
// is the same bytes whatever the scheduling.
func WriteGEMMCases(dir string, opts CaseOptions) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	ws, as := caseSet()
	man := Manifest{Version: ManifestVersion}
	var jobs []func() error
	for _, s := range ws {
		name := s.name()
		man.Cases = append(man.Cases, ManifestCase{Name: name, File: name + ".safetensors", Kind: KindW4A8})
		jobs = append(jobs, func() error {
			c, err := buildW4A8Case(s, opts.Seed)
			if err != nil {
				return fmt.Errorf("gpu: case %s: %w", name, err)
			}
			return c.write(filepath.Join(dir, name+".safetensors"))
		})
	}
	for _, s := range as {
		name := s.name()
		man.Cases = append(man.Cases, ManifestCase{Name: name, File: name + ".safetensors", Kind: KindAct})
		jobs = append(jobs, func() error {
			return buildActCase(s, opts.Seed).write(filepath.Join(dir, name+".safetensors"))
		})
	}
	for _, s := range w4a16CaseSet() {
		name := s.name()
		man.Cases = append(man.Cases, ManifestCase{Name: name, File: name + ".safetensors", Kind: KindW4A16})
		jobs = append(jobs, func() error {
			c, err := buildW4A16Case(s, opts.Seed)
			if err != nil {
				return fmt.Errorf("gpu: case %s: %w", name, err)
			}
			return c.write(filepath.Join(dir, name+".safetensors"))
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

// ReadManifest reads and checks DIR/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("gpu: %s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("gpu: %s: version %d, want %d", filepath.Join(dir, "manifest.json"), m.Version, ManifestVersion)
	}
	return &m, nil
}

// runParallel runs the jobs on GOMAXPROCS goroutines and returns the first error in job order.
func runParallel(jobs []func() error) error {
	errs := make([]error, len(jobs))
	parallel.For(len(jobs), func(_, i int) { errs[i] = jobs[i]() })
	return errors.Join(errs...)
}

// caseRand returns the random stream of one case: the seed and a hash of the case's name, so
// adding or reordering cases changes no other case.
func caseRand(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// caseFile is one case's tensors and metadata.
type caseFile struct {
	tensors []safetensors.Tensor
	meta    map[string]string
}

func (c *caseFile) add(name string, dt safetensors.DType, data []byte, shape ...int) {
	s := make([]int64, len(shape))
	for i, d := range shape {
		s[i] = int64(d)
	}
	c.tensors = append(c.tensors, safetensors.Tensor{Name: name, DType: dt, Shape: s, Data: data})
}

func (c *caseFile) write(path string) error {
	return safetensors.WriteFile(path, c.tensors, c.meta)
}

// w4a8Case holds a W4A8 case in memory, for writing and for tests.
type w4a8Case struct {
	spec   w4a8Spec
	w      *quant.IntScaleWeight
	x      []int8
	xScale []float32
	bias   []float32 // nil without bias
	acc    []int32
	y      []uint16 // fp16 bits
	yFloat []uint16
}

func buildW4A8Case(s w4a8Spec, seed uint64) (*caseFile, error) {
	c, err := newW4A8Case(s, seed)
	if err != nil {
		return nil, err
	}
	return c.file(seed), nil
}

// newW4A8Case draws the inputs and computes the expected results.
func newW4A8Case(s w4a8Spec, seed uint64) (*w4a8Case, error) {
	r := caseRand(seed, s.name())
	var qw *quant.QuantizedWeight
	var err error
	if s.overflow {
		qw = overflowWeight(r, s)
	} else if qw, err = quant.RTN(randWeight(r, s), s.n, s.k, s.gs, quant.RTNOptions{}); err != nil {
		return nil, err
	}
	// The default amplifier rule (the zero value: the largest provably safe α per channel,
	// at most 2^10) is what quantize uses, so the kernel is tested on the scales it will see.
	w, err := quant.IntegerScales(qw, quant.AmplifierRule{})
	if err != nil {
		return nil, err
	}
	c := &w4a8Case{spec: s, w: w, x: make([]int8, s.m*s.k)}
	for i := range c.x {
		c.x[i] = int8(r.IntN(255) - 127)
	}
	if s.overflow {
		// Row 0 is the extreme channel's worst-case input, row 1 its negation (and rows 8, 9
		// the same where M > 9: the upper half of a 16-row tensor-core tile).
		for k := 0; k < s.k; k++ {
			v := int8(quant.ActQMax)
			if qw.Q[overflowChannel*s.k+k] < 0 {
				v = -v
			}
			for r0 := 0; r0+1 < s.m; r0 += 8 {
				c.x[r0*s.k+k], c.x[(r0+1)*s.k+k] = v, -v
			}
		}
	} else if s.m >= 2 {
		// The last row is channel 0's worst case, so every case has an accumulator at its
		// bound (for long K near 2³¹).
		xr := c.x[(s.m-1)*s.k:]
		for k := range xr {
			if q := qw.Q[k]; q > 0 {
				xr[k] = quant.ActQMax
			} else if q < 0 {
				xr[k] = -quant.ActQMax
			}
		}
	}
	nScale := 1
	if s.perToken {
		nScale = s.m
	}
	c.xScale = make([]float32, nScale)
	for i := range c.xScale {
		// 2⁻⁹..2⁻⁴, not a round number, so that the product xs·f_c rounds.
		c.xScale[i] = float32(math.Exp2(-9 + float64(5*r.Float64())))
	}
	if s.bias {
		c.bias = make([]float32, s.n)
		for i := range c.bias {
			c.bias[i] = float32(r.NormFloat64())
		}
	}
	c.acc = make([]int32, s.m*s.n)
	quant.W4A8AccRef(c.x, w, c.acc)
	c.y = make([]uint16, s.m*s.n)
	for i, a := range c.acc {
		row, col := i/s.n, i%s.n
		c.y[i] = safetensors.Float32ToHalf(epilogue(a, c.xScale[min(row, nScale-1)], w.EpilogueFactor(col), c.bias, col))
	}
	yf := make([]float32, s.m*s.n)
	quant.W4A8GEMMFloatScaleRef(c.x, c.xScale, qw, yf)
	c.yFloat = make([]uint16, len(yf))
	for i, v := range yf {
		if c.bias != nil {
			v = float32(v + c.bias[i%s.n])
		}
		c.yFloat[i] = safetensors.Float32ToHalf(v)
	}
	for i := range c.y {
		if c.y[i]&0x7c00 == 0x7c00 || c.yFloat[i]&0x7c00 == 0x7c00 {
			return nil, fmt.Errorf("output [%d, %d] is beyond fp16's range: the case's scales are wrong", i/s.n, i%s.n)
		}
	}
	return c, nil
}

// epilogue is the kernel's epilogue in float32, each operation rounded (the explicit
// conversions keep any compiler from fusing the multiply and the add into an FMA):
// float32(acc)·(xs·f), then + bias.
func epilogue(acc int32, xs, f float32, bias []float32, c int) float32 {
	t := float32(float32(acc) * float32(xs*f))
	if bias != nil {
		t = float32(t + bias[c])
	}
	return t
}

// randWeight draws an [n×k] float weight: Gaussian, each group with its own magnitude
// (2⁻³..2 times σ = 0.02) so that the integer scales vary, rare 8× outliers; channel 1 is all
// zero and channel 2's first group is zero, the two special cases of IntegerScales (ŝ = 1,
// s_c = 1).
func randWeight(r *rand.Rand, s w4a8Spec) []float32 {
	w := make([]float32, s.n*s.k)
	for c := 0; c < s.n; c++ {
		for g := 0; g < s.k/s.gs; g++ {
			mag := 0.02 * math.Exp2(-3+float64(4*r.Float64()))
			for k := g * s.gs; k < (g+1)*s.gs; k++ {
				v := r.NormFloat64() * mag
				if r.IntN(500) == 0 {
					v *= 8
				}
				w[c*s.k+k] = float32(v)
			}
		}
	}
	if s.n > 2 {
		clear(w[s.k : 2*s.k])
		clear(w[2*s.k : 2*s.k+s.gs])
	}
	return w
}

// overflowWeight builds the overflow case's weight directly: random codes and scales for
// every channel but overflowChannel, whose codes are ±7 (random signs) and whose group scales
// are ŝ_g/1024 with ŝ_0 = 1024 and Σŝ_g = 2359, so that with α = 1024 (the default cap) the
// bound is 127·16·7·64·2359 = OverflowBound. The scales are exact binary fractions, so the
// ratios and ŝ are exact and IntegerScales reproduces these ŝ.
func overflowWeight(r *rand.Rand, s w4a8Spec) *quant.QuantizedWeight {
	ng := s.k / s.gs
	w := &quant.QuantizedWeight{Out: s.n, In: s.k, GroupSize: s.gs, Q: make([]int8, s.n*s.k), Scales: make([]float32, s.n*ng)}
	for i := range w.Q {
		w.Q[i] = int8(r.IntN(15) - 7)
	}
	for i := range w.Scales {
		w.Scales[i] = float32(0.001 + float64(0.01*r.Float64()))
	}
	// Σ over the 16 groups: 1024 + 15·89 = 2359 = OverflowBound/(2032·7·64).
	const total = OverflowBound / (quant.ActQMax * quant.Int4Shift * quant.Int4Max * 64)
	c := overflowChannel
	for k := 0; k < s.k; k++ {
		w.Q[c*s.k+k] = quant.Int4Max
		if r.IntN(2) == 0 {
			w.Q[c*s.k+k] = -quant.Int4Max
		}
	}
	w.Scales[c*ng] = 1
	rest := (total - 1024) / (ng - 1)
	for g := 1; g < ng; g++ {
		w.Scales[c*ng+g] = float32(rest) / 1024
	}
	return w
}

// file lays the case out as docs/gemm-cases.md specifies.
func (c *w4a8Case) file(seed uint64) *caseFile {
	s, w := c.spec, c.w
	np, kp := quant.PackedDims(s.n, s.k)
	ng := w.NumGroups()
	gsc := make([]int16, ng*np)
	fgs := make([]float32, ng*np)
	chs := make([]float32, np)
	for col := 0; col < s.n; col++ {
		for g := 0; g < ng; g++ {
			gsc[g*np+col] = int16(w.IntScales[col*ng+g])
			fgs[g*np+col] = w.Scales[col*ng+g]
		}
		chs[col] = w.EpilogueFactor(col)
	}
	act := "per_tensor"
	if s.perToken {
		act = "per_token"
	}
	f := &caseFile{meta: map[string]string{
		"kind": KindW4A8, "m": strconv.Itoa(s.m), "n": strconv.Itoa(s.n), "k": strconv.Itoa(s.k),
		"group_size": strconv.Itoa(s.gs), "per_channel": strconv.FormatBool(s.gs == s.k), "act": act,
		"seed": strconv.FormatUint(seed, 10), "note": s.note,
	}}
	f.add("x", safetensors.I8, i8Bytes(c.x), s.m, s.k)
	f.add("x_scale", safetensors.F32, f32Bytes(c.xScale), len(c.xScale))
	f.add("qweight", safetensors.U8, quant.PackInt4(w.Q, s.n, s.k), np/8, kp/128, 32, 16)
	f.add("group_scale", safetensors.I16, i16Bytes(gsc), ng, np)
	f.add("channel_scale", safetensors.F32, f32Bytes(chs), np)
	f.add("float_group_scale", safetensors.F32, f32Bytes(fgs), ng, np)
	if c.bias != nil {
		f.add("bias", safetensors.F32, f32Bytes(c.bias), s.n)
	}
	f.add("acc", safetensors.I32, i32Bytes(c.acc), s.m, s.n)
	f.add("y", safetensors.F16, u16Bytes(c.y), s.m, s.n)
	f.add("y_float", safetensors.F16, u16Bytes(c.yFloat), s.m, s.n)
	return f
}

// actCase holds an activation case in memory.
type actCase struct {
	spec       actSpec
	x          []uint16 // fp16 bits
	qStatic    []int8
	qToken     []int8
	tokenScale []float32
}

// newActCase draws the inputs: row 0 all zero (with some −0), row 1 ties (every value an odd
// multiple of half a step, for the static scale 2⁻⁴ and for the row's own per-token scale
// 127·2⁻⁴/127 = 2⁻⁴), row 2 large values up to ±65504 (clamped by a static scale), row 3 fp16
// subnormals, the rest Gaussian of varied σ with zeros and exact multiples of the static scale.
func newActCase(s actSpec, seed uint64) *actCase {
	r := caseRand(seed, s.name())
	x := make([]float32, s.m*s.k)
	row := func(i int) []float32 { return x[i*s.k : (i+1)*s.k] }
	for i := 0; i < s.m; i++ {
		xr := row(i)
		switch i {
		case 0:
			for k := range xr {
				if r.IntN(4) == 0 {
					xr[k] = float32(math.Copysign(0, -1))
				}
			}
		case 1:
			xr[0] = 127.0 / 16
			for k := 1; k < len(xr); k++ {
				xr[k] = (float32(r.IntN(254)-127) + 0.5) / 16
			}
		case 2:
			xr[0], xr[1] = 65504, -65504
			for k := 2; k < len(xr); k++ {
				xr[k] = float32(1000 + float64(64504*r.Float64()))
				if r.IntN(2) == 0 {
					xr[k] = -xr[k]
				}
			}
		case 3:
			for k := range xr {
				xr[k] = float32(r.IntN(2047)-1023) * 0x1p-24
			}
		default:
			sigma := math.Exp2(-6 + float64(10*r.Float64()))
			for k := range xr {
				switch r.IntN(10) {
				case 0:
					xr[k] = 0
				case 1:
					xr[k] = float32(r.IntN(255)-127) * s.static
				default:
					xr[k] = float32(r.NormFloat64() * sigma)
				}
			}
		}
	}
	c := &actCase{spec: s, x: make([]uint16, len(x)), qStatic: make([]int8, len(x)), qToken: make([]int8, len(x)), tokenScale: make([]float32, s.m)}
	for i, v := range x {
		c.x[i] = safetensors.Float32ToHalf(v)
		x[i] = safetensors.HalfToFloat32(c.x[i]) // the references see the fp16 values
	}
	quant.QuantizeActPerTensor(x, s.static, c.qStatic)
	quant.QuantizeActPerToken(x, s.m, s.k, c.qToken, c.tokenScale)
	return c
}

func buildActCase(s actSpec, seed uint64) *caseFile {
	c := newActCase(s, seed)
	f := &caseFile{meta: map[string]string{
		"kind": KindAct, "m": strconv.Itoa(s.m), "n": "0", "k": strconv.Itoa(s.k),
		"group_size": "0", "per_channel": "false", "act": "both",
		"seed": strconv.FormatUint(seed, 10), "note": s.note,
	}}
	f.add("x", safetensors.F16, u16Bytes(c.x), s.m, s.k)
	f.add("static_scale", safetensors.F32, f32Bytes([]float32{s.static}), 1)
	f.add("q_static", safetensors.I8, i8Bytes(c.qStatic), s.m, s.k)
	f.add("q_token", safetensors.I8, i8Bytes(c.qToken), s.m, s.k)
	f.add("token_scale", safetensors.F32, f32Bytes(c.tokenScale), s.m)
	return f
}

// Little-endian encodings of the tensors' data.

func i8Bytes(v []int8) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func i16Bytes(v []int16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(x))
	}
	return b
}

func u16Bytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func i32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
