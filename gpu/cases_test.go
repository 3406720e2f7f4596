package gpu

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/quant"
)

// The cases are written once per test binary and shared by the tests that read them.
var (
	casesOnce sync.Once
	casesDir  string
	casesErr  error
)

func writtenCases(t *testing.T) string {
	t.Helper()
	casesOnce.Do(func() {
		casesDir, casesErr = os.MkdirTemp("", "odyssey-gemm-cases-")
		if casesErr == nil {
			casesErr = WriteGEMMCases(casesDir, CaseOptions{Seed: 7})
		}
	})
	if casesErr != nil {
		t.Fatal(casesErr)
	}
	return casesDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if casesDir != "" {
		os.RemoveAll(casesDir)
	}
	os.Exit(code)
}

// loaded is a case file read back through formats/safetensors.
type loaded struct {
	t    *testing.T
	name string
	ck   *safetensors.Checkpoint
	meta map[string]string
}

func load(t *testing.T, dir string, c ManifestCase) *loaded {
	ck, err := safetensors.Open(filepath.Join(dir, c.File))
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	t.Cleanup(func() { ck.Close() })
	return &loaded{t: t, name: c.Name, ck: ck, meta: ck.Metadata()}
}

func (l *loaded) metaInt(key string) int {
	v, err := strconv.Atoi(l.meta[key])
	if err != nil {
		l.t.Fatalf("%s: metadata %s = %q", l.name, key, l.meta[key])
	}
	return v
}

// tensor returns the bytes of a tensor after checking its dtype and shape.
func (l *loaded) tensor(name string, dt safetensors.DType, shape ...int64) []byte {
	l.t.Helper()
	info, ok := l.ck.Info(name)
	if !ok {
		l.t.Fatalf("%s: no tensor %s", l.name, name)
	}
	if info.DType != dt || !reflect.DeepEqual(info.Shape, shape) {
		l.t.Fatalf("%s: %s is %s %v, want %s %v", l.name, name, info.DType, info.Shape, dt, shape)
	}
	b, err := l.ck.Bytes(name)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

func (l *loaded) has(name string) bool { _, ok := l.ck.Info(name); return ok }

func f32s(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func i32s(b []byte) []int32 {
	v := make([]int32, len(b)/4)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func u16s(b []byte) []uint16 {
	v := make([]uint16, len(b)/2)
	for i := range v {
		v[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return v
}

// TestGEMMCasesReadBack reads every case back and checks it against the contract of
// docs/gemm-cases.md using only the file's own tensors: shapes and dtypes, acc against an
// int64 sum over the unpacked codes and the stored group scales, y and y_float against the
// epilogues recomputed from the stored scales, and the w4a16 cases' y and y_abs against a
// float64 recomputation.
func TestGEMMCasesReadBack(t *testing.T) {
	dir := writtenCases(t)
	man, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	ws, as := caseSet()
	if want := len(ws) + len(as) + len(w4a16CaseSet()); len(man.Cases) != want {
		t.Fatalf("%d cases in the manifest, want %d", len(man.Cases), want)
	}
	var total int64
	seen := map[string]bool{}
	kinds := map[string]int{}
	for _, c := range man.Cases {
		if seen[c.Name] || c.File != c.Name+".safetensors" {
			t.Fatalf("case %+v: duplicate or misnamed", c)
		}
		seen[c.Name] = true
		kinds[c.Kind]++
		st, err := os.Stat(filepath.Join(dir, c.File))
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
		l := load(t, dir, c)
		if l.meta["kind"] != c.Kind || l.meta["seed"] != "7" || l.meta["note"] == "" {
			t.Fatalf("%s: metadata %v", c.Name, l.meta)
		}
		switch c.Kind {
		case KindW4A8:
			checkW4A8File(t, l)
		case KindAct:
			checkActFile(t, l)
		case KindW4A16:
			checkW4A16File(t, l)
		default:
			t.Fatalf("%s: kind %q", c.Name, c.Kind)
		}
	}
	if kinds[KindW4A8] < 30 || kinds[KindAct] < 3 || kinds[KindW4A16] < 12 {
		t.Errorf("kinds %v", kinds)
	}
	if total > 15<<20 {
		t.Errorf("the cases take %d MB, keep them under 15", total>>20)
	}
	t.Logf("%d cases, %.1f MB", len(man.Cases), float64(total)/(1<<20))
}

func checkW4A8File(t *testing.T, l *loaded) {
	m, n, k, gs := l.metaInt("m"), l.metaInt("n"), l.metaInt("k"), l.metaInt("group_size")
	if k%128 != 0 || k%gs != 0 || l.meta["per_channel"] != strconv.FormatBool(gs == k) {
		t.Fatalf("%s: metadata %v", l.name, l.meta)
	}
	np, kp := int64((n+7)/8*8), int64(k)
	ng := int64(k / gs)
	M, N, K := int64(m), int64(n), int64(k)
	x := l.tensor("x", safetensors.I8, M, K)
	var xs []float32
	switch l.meta["act"] {
	case "per_token":
		xs = f32s(l.tensor("x_scale", safetensors.F32, M))
	case "per_tensor":
		xs = f32s(l.tensor("x_scale", safetensors.F32, 1))
	default:
		t.Fatalf("%s: act %q", l.name, l.meta["act"])
	}
	packed := l.tensor("qweight", safetensors.U8, np/8, kp/128, 32, 16)
	gsc := l.tensor("group_scale", safetensors.I16, ng, np)
	chs := f32s(l.tensor("channel_scale", safetensors.F32, np))
	fgs := f32s(l.tensor("float_group_scale", safetensors.F32, ng, np))
	var bias []float32
	if l.has("bias") {
		bias = f32s(l.tensor("bias", safetensors.F32, N))
	}
	acc := i32s(l.tensor("acc", safetensors.I32, M, N))
	y := u16s(l.tensor("y", safetensors.F16, M, N))
	yf := u16s(l.tensor("y_float", safetensors.F16, M, N))

	q, err := quant.UnpackInt4(packed, n, k)
	if err != nil {
		t.Fatalf("%s: %v", l.name, err)
	}
	shat := func(g, c int) int64 { return int64(int16(binary.LittleEndian.Uint16(gsc[2*(g*int(np)+c):]))) }
	for c := n; c < int(np); c++ {
		if chs[c] != 0 {
			t.Fatalf("%s: channel_scale padding [%d] = %v", l.name, c, chs[c])
		}
		for g := 0; g < int(ng); g++ {
			if shat(g, c) != 0 || fgs[g*int(np)+c] != 0 {
				t.Fatalf("%s: scale padding [%d, %d] nonzero", l.name, g, c)
			}
		}
	}
	for c := 0; c < n; c++ {
		if !(chs[c] > 0) {
			t.Fatalf("%s: channel_scale[%d] = %v", l.name, c, chs[c])
		}
		for g := 0; g < int(ng); g++ {
			if s := shat(g, c); s < 1 || s > 1<<quant.MaxLog2Alpha || !(fgs[g*int(np)+c] > 0) {
				t.Fatalf("%s: scales [%d, %d]: ŝ %d, s %v", l.name, g, c, s, fgs[g*int(np)+c])
			}
		}
	}
	for r := 0; r < m; r++ {
		xr := x[r*k : (r+1)*k]
		xsr := xs[min(r, len(xs)-1)]
		for c := 0; c < n; c++ {
			var want int64
			facc := float32(0)
			for g := 0; g < int(ng); g++ {
				var p int64
				for j := g * gs; j < (g+1)*gs; j++ {
					p += int64(int8(xr[j])) * int64(q[c*k+j])
				}
				want += shat(g, c) * 16 * p
				facc = float32(facc + float32(float32(p)*fgs[g*int(np)+c]))
			}
			got := acc[r*n+c]
			if int64(got) != want {
				t.Fatalf("%s: acc[%d, %d] = %d, int64 sum over the unpacked codes %d", l.name, r, c, got, want)
			}
			// The epilogue with each product taken exactly in float64 (two float32
			// factors) and rounded once to float32, which is what a float32
			// multiplication is; the additions are float32 additions.
			t1 := float32(float64(xsr) * float64(chs[c]))
			v := float32(float64(float32(got)) * float64(t1))
			vf := float32(float64(facc) * float64(xsr))
			if bias != nil {
				v += bias[c]
				vf += bias[c]
			}
			if h := halfRNE(v); y[r*n+c] != h {
				t.Fatalf("%s: y[%d, %d] = %#04x, recomputed %#04x (%v)", l.name, r, c, y[r*n+c], h, v)
			}
			if h := halfRNE(vf); yf[r*n+c] != h {
				t.Fatalf("%s: y_float[%d, %d] = %#04x, recomputed %#04x (%v)", l.name, r, c, yf[r*n+c], h, vf)
			}
		}
	}
}

func checkActFile(t *testing.T, l *loaded) {
	m, k := l.metaInt("m"), l.metaInt("k")
	M, K := int64(m), int64(k)
	xh := u16s(l.tensor("x", safetensors.F16, M, K))
	ss := f32s(l.tensor("static_scale", safetensors.F32, 1))[0]
	qs := l.tensor("q_static", safetensors.I8, M, K)
	qt := l.tensor("q_token", safetensors.I8, M, K)
	ts := f32s(l.tensor("token_scale", safetensors.F32, M))
	for r := 0; r < m; r++ {
		var mx float32
		for j := 0; j < k; j++ {
			mx = max(mx, float32(math.Abs(float64(safetensors.HalfToFloat32(xh[r*k+j])))))
		}
		s := float32(1)
		if mx > 0 {
			s = float32(float64(mx) / 127)
		}
		if ts[r] != s {
			t.Fatalf("%s: token_scale[%d] = %v, want %v", l.name, r, ts[r], s)
		}
		for j := 0; j < k; j++ {
			x := safetensors.HalfToFloat32(xh[r*k+j])
			if got, want := int8(qs[r*k+j]), actCode(x, ss); got != want {
				t.Fatalf("%s: q_static[%d, %d] = %d, want %d (x = %v)", l.name, r, j, got, want, x)
			}
			if got, want := int8(qt[r*k+j]), actCode(x, s); got != want {
				t.Fatalf("%s: q_token[%d, %d] = %d, want %d (x = %v)", l.name, r, j, got, want, x)
			}
		}
	}
}

// actCode is the activation code by the contract's words, written independently of quant:
// the float32 quotient, rounded half to even, clamped to ±127.
func actCode(x, s float32) int8 {
	v := math.RoundToEven(float64(float32(float64(x) / float64(s))))
	return int8(max(-127, min(127, v)))
}

// halfRNE rounds a float32 to fp16 bits, nearest even, by exact rational arithmetic: an
// independent check of safetensors.Float32ToHalf on the values the cases hold (finite,
// normal or subnormal fp16 range).
func halfRNE(f float32) uint16 { return halfRNE64(float64(f)) }

// halfRNE64 is halfRNE for any finite float64 (beyond the fp16 range: ±Inf).
func halfRNE64(a float64) uint16 {
	if a == 0 {
		if math.Signbit(a) {
			return 0x8000
		}
		return 0
	}
	sign := uint16(0)
	if a < 0 {
		sign, a = 0x8000, -a
	}
	// Find the fp16 step (ulp) at a: 2^(e-10) for normal, 2^-24 for subnormal.
	e := math.Floor(math.Log2(a))
	if math.Exp2(e) > a {
		e--
	} else if math.Exp2(e+1) <= a {
		e++
	}
	e = max(e, -14)
	ulp := new(big.Rat).SetFloat64(math.Exp2(e - 10))
	units := new(big.Rat).Quo(new(big.Rat).SetFloat64(a), ulp) // exact
	fl := new(big.Int).Quo(units.Num(), units.Denom())
	rem := new(big.Rat).Sub(units, new(big.Rat).SetInt(fl))
	switch rem.Cmp(big.NewRat(1, 2)) {
	case 1:
		fl.Add(fl, big.NewInt(1))
	case 0:
		if fl.Bit(0) == 1 {
			fl.Add(fl, big.NewInt(1))
		}
	}
	// value = fl·2^(e-10); encode.
	v := fl.Int64()
	if e == -14 && v < 1024 { // subnormal (or rounded up to the smallest normal: v = 1024)
		return sign | uint16(v)
	}
	exp := int64(e) + 15
	if v == 2048 { // rounded up to the next binade
		v, exp = 1024, exp+1
	}
	if exp >= 31 {
		return sign | 0x7c00
	}
	return sign | uint16(exp)<<10 | uint16(v-1024)
}

// TestFloat32ToHalfRoundsToEven: the fp16 conversion the expected outputs use rounds to
// nearest even, against the exact rational rounding above, on ties at every binade, on their
// neighbours, and on random values.
func TestFloat32ToHalfRoundsToEven(t *testing.T) {
	check := func(f float32) {
		if got, want := safetensors.Float32ToHalf(f), halfRNE(f); got != want {
			t.Fatalf("Float32ToHalf(%v = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for e := -24; e <= 15; e++ {
		for m := 0; m < 2048; m += 7 {
			// (m + 1/2) fp16 steps at exponent e: exactly a tie.
			step := math.Exp2(float64(max(e, -14) - 10))
			base := math.Exp2(float64(e))
			if e < -14 {
				base = 0
			}
			tie := float32(base + (float64(m)+0.5)*step)
			if float64(tie) >= 65504 || math.Abs(float64(tie)-(base+(float64(m)+0.5)*step)) != 0 {
				continue
			}
			for _, f := range []float32{tie, math.Nextafter32(tie, 0), math.Nextafter32(tie, 1e9)} {
				check(f)
				check(-f)
			}
		}
	}
	if safetensors.Float32ToHalf(1+0x1p-11) != 0x3c00 || safetensors.Float32ToHalf(1+3*0x1p-11) != 0x3c02 {
		t.Error("ties at 1 do not round to even")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := float32(math.Ldexp(1+r.Float64(), -25+r.IntN(41)))
		if f < 65504 {
			check(f)
			check(-f)
		}
	}
}

// TestGEMMCasesOverflow: the overflow case's extreme channel has the largest bound any weight
// can have, and rows 0 and 1 reach ±bound exactly.
func TestGEMMCasesOverflow(t *testing.T) {
	c, err := newW4A8Case(overflowSpec, 7)
	if err != nil {
		t.Fatal(err)
	}
	ch := overflowChannel
	if OverflowBound != 2147482624 || math.MaxInt32-OverflowBound >= quant.ActQMax*quant.Int4Shift {
		t.Fatalf("OverflowBound = %d", OverflowBound)
	}
	if c.w.Bound[ch] != OverflowBound || c.w.Alpha(ch) != 1024 {
		t.Fatalf("bound %d with α %d, want %d with 1024", c.w.Bound[ch], c.w.Alpha(ch), OverflowBound)
	}
	n := overflowSpec.n
	if int64(c.acc[ch]) != OverflowBound || int64(c.acc[n+ch]) != -OverflowBound {
		t.Fatalf("acc of channel %d: %d, %d, want ±%d", ch, c.acc[ch], c.acc[n+ch], OverflowBound)
	}
	for col := 0; col < n; col++ {
		if c.w.Bound[col] > quant.AccLimit {
			t.Fatalf("channel %d bound %d", col, c.w.Bound[col])
		}
	}
	// At M = 16 both halves of the tensor-core tile reach it: rows 0, 8 (+) and 1, 9 (−).
	c16, err := newW4A8Case(overflowSpec16, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{0, 1, 8, 9} {
		want := int64(OverflowBound)
		if r%2 == 1 {
			want = -want
		}
		if got := int64(c16.acc[r*overflowSpec16.n+ch]); got != want {
			t.Fatalf("M = 16, row %d: acc of channel %d = %d, want %d", r, ch, got, want)
		}
	}
}

// TestGEMMCasesDeterministic: a seed gives the same bytes (whatever the goroutines'
// scheduling); another seed other inputs.
func TestGEMMCasesDeterministic(t *testing.T) {
	dir := writtenCases(t)
	again := t.TempDir()
	if err := WriteGEMMCases(again, CaseOptions{Seed: 7}); err != nil {
		t.Fatal(err)
	}
	a, _ := newW4A8Case(overflowSpec, 7)
	b, _ := newW4A8Case(overflowSpec, 8)
	if reflect.DeepEqual(a.x, b.x) {
		t.Fatal("the seed does not change the inputs")
	}
	man, _ := ReadManifest(dir)
	for _, c := range append(man.Cases, ManifestCase{File: "manifest.json"}) {
		a, _ := os.ReadFile(filepath.Join(dir, c.File))
		b, err := os.ReadFile(filepath.Join(again, c.File))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs between two runs with the same seed", c.File)
		}
	}
}

// TestActCaseTies: the act case of static scale 2⁻⁴ has ties in its row 1 for both the static
// and the per-token scale, and they round to even (so a kernel rounding half away from zero
// fails it).
func TestActCaseTies(t *testing.T) {
	_, as := caseSet()
	c := newActCase(as[0], 7)
	k := as[0].k
	if c.tokenScale[0] != 1 || c.tokenScale[1] != 1.0/16 {
		t.Fatalf("token scales %v", c.tokenScale[:2])
	}
	ties, odd := 0, 0
	for j := 0; j < k; j++ {
		x := safetensors.HalfToFloat32(c.x[k+j])
		u := float64(x) * 16
		if u != math.Floor(u)+0.5 {
			continue
		}
		ties++
		want := int8(math.RoundToEven(u))
		if c.qStatic[k+j] != want || c.qToken[k+j] != want {
			t.Fatalf("x = %v: codes %d, %d, want %d", x, c.qStatic[k+j], c.qToken[k+j], want)
		}
		if int8(math.Round(u)) != want {
			odd++
		}
	}
	if ties < k/2 || odd == 0 {
		t.Fatalf("%d ties, %d where half-away differs", ties, odd)
	}
	for j := 0; j < k; j++ {
		if c.qStatic[j] != 0 || c.qToken[j] != 0 {
			t.Fatal("the zero row has nonzero codes")
		}
		if x := safetensors.HalfToFloat32(c.x[2*k+j]); math.Abs(float64(x)) >= 1000 && c.qStatic[2*k+j] != 127 && c.qStatic[2*k+j] != -127 {
			t.Fatalf("large value %v not clamped: %d", x, c.qStatic[2*k+j])
		}
	}
}

func checkW4A16File(t *testing.T, l *loaded) {
	m, n, k, gs := l.metaInt("m"), l.metaInt("n"), l.metaInt("k"), l.metaInt("group_size")
	if k%128 != 0 || gs <= 0 || k%gs != 0 || l.meta["per_channel"] != strconv.FormatBool(gs == k) || l.meta["act"] != "none" {
		t.Fatalf("%s: metadata %v", l.name, l.meta)
	}
	for _, absent := range []string{"x_scale", "float_group_scale", "acc", "y_float"} {
		if l.has(absent) {
			t.Fatalf("%s: has %s", l.name, absent)
		}
	}
	np, kp := (n+7)/8*8, k
	ng := k / gs
	M, N, K, Np, G := int64(m), int64(n), int64(k), int64(np), int64(ng)
	xh := u16s(l.tensor("x", safetensors.F16, M, K))
	packed := l.tensor("qweight", safetensors.U8, Np/8, int64(kp/128), 32, 16)
	gsc := l.tensor("group_scale", safetensors.I16, G, Np)
	chs := f32s(l.tensor("channel_scale", safetensors.F32, Np))
	var bias []float32
	if l.has("bias") {
		bias = f32s(l.tensor("bias", safetensors.F32, N))
	}
	y := u16s(l.tensor("y", safetensors.F16, M, N))
	yAbs := f32s(l.tensor("y_abs", safetensors.F32, M, N))
	if want := 6 + len(bias)/n; len(l.ck.Tensors()) != want {
		t.Fatalf("%s: %d tensors, want %d", l.name, len(l.ck.Tensors()), want)
	}

	q, err := quant.UnpackInt4(packed, n, k)
	if err != nil {
		t.Fatalf("%s: %v", l.name, err)
	}
	shat := func(g, c int) int64 { return int64(int16(binary.LittleEndian.Uint16(gsc[2*(g*np+c):]))) }
	for c := n; c < np; c++ {
		if chs[c] != 0 {
			t.Fatalf("%s: channel_scale padding [%d] = %v", l.name, c, chs[c])
		}
		for g := 0; g < ng; g++ {
			if shat(g, c) != 0 {
				t.Fatalf("%s: group_scale padding [%d, %d] nonzero", l.name, g, c)
			}
		}
	}
	for c := 0; c < n; c++ {
		if !(chs[c] > 0) {
			t.Fatalf("%s: channel_scale[%d] = %v", l.name, c, chs[c])
		}
		for g := 0; g < ng; g++ {
			if s := shat(g, c); s < 1 || s > 1<<quant.MaxLog2Alpha {
				t.Fatalf("%s: group_scale[%d, %d] = %d", l.name, g, c, s)
			}
		}
	}
	x := make([]float64, len(xh))
	zeros, big := 0, 0
	for i, h := range xh {
		x[i] = float64(safetensors.HalfToFloat32(h))
		if math.IsInf(x[i], 0) || math.IsNaN(x[i]) {
			t.Fatalf("%s: x[%d] = %v", l.name, i, x[i])
		}
		if x[i] == 0 {
			zeros++
		} else if math.Abs(x[i]) > 4 {
			big++
		}
	}
	if zeros == 0 || (m*k >= 1000 && big == 0) {
		t.Fatalf("%s: x has %d zeros and %d values beyond ±4", l.name, zeros, big)
	}
	for r := 0; r < m; r++ {
		xr := x[r*k : (r+1)*k]
		for c := 0; c < n; c++ {
			// The contract's formula in float64, in its order. Every x is a multiple of
			// 2⁻²⁴, so while Σ|x·q|·ŝ stays below 2²⁹ (checked) every partial sum is a
			// multiple of 2⁻²⁴ below 2⁵³ of them: exact, whatever the order.
			var acc, abs float64
			for g := 0; g < ng; g++ {
				var p, pa float64
				for j := g * gs; j < (g+1)*gs; j++ {
					v := xr[j] * float64(q[c*k+j])
					p += v
					pa += math.Abs(v)
				}
				acc += float64(shat(g, c)) * p
				abs += float64(shat(g, c)) * pa
			}
			if abs >= 1<<29 {
				t.Fatalf("%s: [%d, %d]: Σ|x·q|·ŝ = %v, the float64 sums may round", l.name, r, c, abs)
			}
			f := 16 * float64(chs[c])
			ref := acc * f
			v := ref
			if bias != nil {
				v += float64(bias[c])
			}
			if h := float64ToHalf(v); y[r*n+c] != h || h != halfRNE64(v) {
				t.Fatalf("%s: y[%d, %d] = %#04x, recomputed %#04x (exact rounding %#04x) of %v", l.name, r, c, y[r*n+c], h, halfRNE64(v), v)
			}
			if want := float32(abs * f); yAbs[r*n+c] != want {
				t.Fatalf("%s: y_abs[%d, %d] = %v, recomputed %v", l.name, r, c, yAbs[r*n+c], want)
			}
			if float64(yAbs[r*n+c]) < math.Abs(ref)*(1-1e-6) {
				t.Fatalf("%s: y_abs[%d, %d] = %v < |y_ref - bias| = %v", l.name, r, c, yAbs[r*n+c], math.Abs(ref))
			}
		}
	}
}

// TestW4A16CasesToleranceAdmitsFP32Kernel models the kernel of docs/gemm-cases.md on every
// w4a16 case (products of 16 consecutive k summed exactly and rounded once to float32, as
// one mma step at worst does, added in float32 per group; each group's sum times float32(ŝ)
// added in float32; times 16·f_c, + bias, in float32; then fp16) and checks that the
// contract's tolerance accepts it: the cases are not stricter than the kernel can be.
func TestW4A16CasesToleranceAdmitsFP32Kernel(t *testing.T) {
	worst, worstF32 := 0.0, 0.0
	for _, s := range w4a16CaseSet() {
		c, err := newW4A16Case(s, 7)
		if err != nil {
			t.Fatal(err)
		}
		ng := c.w.NumGroups()
		for r := 0; r < s.m; r++ {
			for col := 0; col < s.n; col++ {
				var tot float32
				var exact float64 // exact: multiples of 2⁻²⁴ below 2⁵³ of them
				for g := 0; g < ng; g++ {
					var ga float32
					var ge float64
					for j := g * s.gs; j < (g+1)*s.gs; j += 16 {
						var chunk float64
						for i := j; i < j+16; i++ {
							chunk += float64(safetensors.HalfToFloat32(c.x[r*s.k+i])) * float64(c.w.Q[col*s.k+i])
						}
						ga = float32(ga + float32(chunk))
						ge += chunk
					}
					tot = float32(tot + float32(ga*float32(c.w.IntScales[col*ng+g])))
					exact += ge * float64(c.w.IntScales[col*ng+g])
				}
				v := float32(tot * float32(16*c.w.EpilogueFactor(col)))
				exact *= 16 * float64(c.w.EpilogueFactor(col))
				if c.bias != nil {
					v = float32(v + c.bias[col])
					exact += float64(c.bias[col])
				}
				if rt := float64(s.k/16+ng+4) * 0x1p-22 * float64(c.yAbs[r*s.n+col]); rt > 0 {
					worstF32 = max(worstF32, math.Abs(float64(v)-exact)/rt)
				}
				got := float64(safetensors.HalfToFloat32(safetensors.Float32ToHalf(v)))
				ref := float64(safetensors.HalfToFloat32(c.y[r*s.n+col]))
				ulp := math.Exp2(float64(max(math.Ilogb(math.Abs(ref)), -14) - 10))
				tol := float64(s.k/16+ng+4)*0x1p-22*float64(c.yAbs[r*s.n+col]) + ulp
				if d := math.Abs(got - ref); d > tol {
					t.Fatalf("%s [%d, %d]: fp32 model %v, y %v: |Δ| = %v > tolerance %v", s.name(), r, col, got, ref, d, tol)
				} else if tol > 0 {
					worst = max(worst, d/tol)
				}
			}
		}
	}
	t.Logf("largest |Δ|/tolerance %.3f (fp16 outputs), %.3f (the float32 value against the rounding term)", worst, worstF32)
}

// TestFloat64ToHalf: float64ToHalf rounds once, to nearest even. On values a float32 holds
// it agrees with safetensors.Float32ToHalf (ties and their neighbours at every binade,
// specials, random); on values a float32 does not hold, against the exact rational rounding,
// on ties and on values just off them, where converting through float32 rounds twice.
func TestFloat64ToHalf(t *testing.T) {
	viaF32 := func(f float32) {
		t.Helper()
		if got, want := float64ToHalf(float64(f)), safetensors.Float32ToHalf(f); got != want {
			t.Fatalf("float64ToHalf(%v = float32 %#08x) = %#04x, Float32ToHalf %#04x", f, math.Float32bits(f), got, want)
		}
	}
	exact := func(v float64) {
		t.Helper()
		if got, want := float64ToHalf(v), halfRNE64(v); got != want {
			t.Fatalf("float64ToHalf(%v = %#016x) = %#04x, exact rounding %#04x", v, math.Float64bits(v), got, want)
		}
	}
	for _, f := range []float32{0, float32(math.Copysign(0, -1)), 1, 65504, 65519, 65519.996, 65520, 65536, math.MaxFloat32,
		float32(math.Inf(1)), float32(math.Inf(-1)), 0x1p-24, 0x1p-25, 0x1.000002p-25, 3 * 0x1p-25, 0x1p-14, 0x1.ffcp-15,
		0x1.ffep-15, 0x1.ffdp-15, 0x1p-149, 0x1p-126, 0x1p-127} {
		viaF32(f)
		viaF32(-f)
	}
	for _, v := range []float64{math.MaxFloat64, math.SmallestNonzeroFloat64, 0x1p-1022, 0x1p-25, 0x1.0000000000001p-25, 65520, 0x1.ffdfffffffffffp15} {
		exact(v)
		exact(-v)
	}
	if h := float64ToHalf(math.NaN()); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Fatalf("NaN → %#04x", h)
	}
	for e := -24; e <= 15; e++ {
		step := math.Exp2(float64(max(e, -14) - 10))
		base := math.Exp2(float64(e))
		if e < -14 {
			base = 0
		}
		for m := 0; m < 1024; m++ {
			tie := base + (float64(m)+0.5)*step // exact in float64 and in float32
			viaF32(float32(tie))
			viaF32(math.Nextafter32(float32(tie), 0))
			viaF32(math.Nextafter32(float32(tie), 1e9))
			// Just off the tie, closer than float32 resolves: through float32 these
			// round to the tie and then to even, half the time the wrong way.
			for _, d := range []float64{step * 0x1p-30, step * 0x1p-40} {
				for _, v := range []float64{tie, tie + d, tie - d, math.Nextafter(tie, 0), math.Nextafter(tie, 1e9)} {
					exact(v)
					exact(-v)
				}
			}
		}
	}
	// The double rounding the comment of float64ToHalf names.
	v := 1 + 0x1p-11 + 0x1p-40
	if float64ToHalf(v) != 0x3c01 || safetensors.Float32ToHalf(float32(v)) != 0x3c00 {
		t.Fatalf("1 + 2⁻¹¹ + 2⁻⁴⁰: %#04x (through float32 %#04x), want 0x3c01", float64ToHalf(v), safetensors.Float32ToHalf(float32(v)))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		v := math.Ldexp(1+r.Float64(), -26+r.IntN(43))
		exact(v)
		exact(-v)
		f := math.Float32frombits(r.Uint32())
		if !math.IsNaN(float64(f)) {
			viaF32(f)
		}
	}
}
