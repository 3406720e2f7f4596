package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Tests of the vector kernels (kernels_amd64.s) against the Go code they replace:
// quantizeGroupAsm and absMaxBitsAsm bit for bit, rowErrorsAsm bit for bit too (the canonical order). Where the
// kernels are not in use (other architectures, -tags purego, a CPU without AVX2 and FMA) the
// …Asm functions are the Go ones and these tests compare the Go code with itself.

func logKernelPath(t testing.TB) {
	t.Helper()
	if !hasKernels {
		t.Logf("vector kernels not in use: comparing Go with Go")
	}
}

// kernelLengths are the slice lengths tried: every length up to 300 (all the remainders of
// the 32- and 8-element loops), the usual group of 128 and per-channel groups.
func kernelLengths() []int {
	var ns []int
	for n := 0; n <= 300; n++ {
		ns = append(ns, n)
	}
	return append(ns, 512, 1000, 4096, 11008)
}

const qSentinel = int8(0x55)

// checkQuantizeGroup runs both versions of quantizeGroup on w (each into a buffer with room
// after the group, to catch stray stores) and compares the codes and Σ|q|.
func checkQuantizeGroup(t *testing.T, what string, w []float32, s float32) {
	t.Helper()
	const pad = 40
	got := make([]int8, len(w)+pad)
	want := make([]int8, len(w)+pad)
	for i := range got {
		got[i], want[i] = qSentinel, qSentinel
	}
	sg, vec := quantizeGroupVec(w, got[:len(w)], s)
	// The vector kernel must take every group of 8 or more with s > 0 and ratios well in
	// range, so that these tests check it and not the Go fallback.
	inRange := s > 0
	for _, v := range w {
		if r := math.Abs(float64(v)) / float64(s); !(r < 1<<30) {
			inRange = false
		}
	}
	if want := hasKernels && len(w) >= 8 && inRange; vec != want {
		t.Fatalf("%s (n=%d, s=%v): vector kernel used: %v, want %v", what, len(w), s, vec, want)
	}
	if sa := quantizeGroupAsm(w, got[:len(w)], s); sa != sg {
		t.Fatalf("%s: quantizeGroupAsm and quantizeGroupVec differ", what)
	}
	sw := quantizeGroupGo(w, want[:len(w)], s)
	if dq := make([]int8, len(w)); quantizeGroup(w, dq, s) != sg || !slices.Equal(dq, got[:len(w)]) {
		t.Fatalf("%s: quantizeGroup does not dispatch to quantizeGroupAsm", what)
	}
	if sg != sw {
		t.Fatalf("%s (n=%d, s=%v): Σ|q| = %d, want %d", what, len(w), s, sg, sw)
	}
	for i := range got {
		if got[i] != want[i] {
			v := float32(0)
			if i < len(w) {
				v = w[i]
			}
			t.Fatalf("%s (n=%d, s=%v): q[%d] = %d, want %d (w = %v, w/s = %v)", what, len(w), s, i, got[i], want[i], v, v/s)
		}
	}
	// The reference itself, where it is defined: QuantizeValue for finite weights and scales.
	if s > 0 && !math.IsInf(float64(s), 0) {
		for i, v := range w {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || float64(v/s) > 1e9 || float64(v/s) < -1e9 {
				continue
			}
			if qv := QuantizeValue(v, s); want[i] != qv {
				t.Fatalf("%s: quantizeGroupGo(%v, %v) = %d, QuantizeValue = %d", what, v, s, want[i], qv)
			}
		}
	}
}

// absMaxOf is the group's absolute maximum as a float32.
func absMaxOf(w []float32) float32 {
	return math.Float32frombits(absMaxBitsGo(w))
}

func TestQuantizeGroupKernel(t *testing.T) {
	logKernelPath(t)
	rng := rand.New(rand.NewPCG(11, 12))
	clips := []float32{1, 0.5, 0.01}
	for _, n := range kernelLengths() {
		// Offsets into a larger slice, so that the vector loads are not all aligned.
		base := make([]float32, n+7)
		for _, c := range clips {
			off := rng.IntN(8)
			w := base[off : off+n]
			for i := range w {
				w[i] = float32(rng.NormFloat64() * 0.02)
				if rng.IntN(50) == 0 {
					w[i] *= 10 // an outlier, which the clip factors < 1 clamp
				}
			}
			if n > 0 {
				w[rng.IntN(n)] = float32(math.Copysign(0, -1))
				w[rng.IntN(n)] = 0
			}
			s := SymScale(absMaxOf(w), c)
			checkQuantizeGroup(t, fmt.Sprintf("gaussian, clip %v", c), w, s)

			// Exact ties: w = ±(m + 0.5)·s for s with a short significand, so that the product is
			// exact and w/s is m + 0.5 exactly; and the floats next to them, and next to the
			// integers (m·s), which round the other way, and the clamp boundary at 7.5.
			st := float32(rng.IntN(256)+1) * float32(math.Ldexp(1, -rng.IntN(20)-4))
			if c != 1 {
				st = SymScale(float32(0.03+0.1*rng.Float64()), c) // a SymScale value: ties where exact
			}
			for i := range w {
				m := float64(rng.IntN(12))
				v := float32((m + 0.5) * float64(st))
				switch rng.IntN(6) {
				case 1:
					v = math.Nextafter32(v, 0)
				case 2:
					v = math.Nextafter32(v, float32(math.Inf(1)))
				case 3:
					v = float32(m * float64(st))
				case 4:
					v = math.Nextafter32(float32(7.5*float64(st)), float32(rng.IntN(2)*2-1))
				}
				if rng.IntN(2) == 0 {
					v = -v
				}
				w[i] = v
			}
			checkQuantizeGroup(t, fmt.Sprintf("ties, clip %v", c), w, st)
			if c == 1 {
				ties := 0
				for _, v := range w {
					if r := float64(v / st); r != math.Trunc(r) && r*2 == math.Trunc(r*2) {
						ties++
					}
				}
				if n >= 32 && ties == 0 {
					t.Fatalf("n=%d: no exact tie was built", n)
				}
			}

			// All zeros, of both signs: s = SymScale(0, c) = 1.
			for i := range w {
				w[i] = float32(math.Copysign(0, float64(rng.IntN(2)*2-1)))
			}
			checkQuantizeGroup(t, "zeros", w, SymScale(absMaxOf(w), c))
		}
	}
}

// TestQuantizeGroupKernelOutside feeds the kernel what rtnRows never passes it — weights
// that are NaN, infinite or subnormal, ratios |w|/s far beyond 700, scales that are
// subnormal, infinite, negative, zero or NaN — and still expects the Go function's result:
// the codes are the low byte of the same int32 arithmetic in both.
func TestQuantizeGroupKernelOutside(t *testing.T) {
	logKernelPath(t)
	rng := rand.New(rand.NewPCG(13, 14))
	specials := []float32{
		float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(1), math.Float32frombits(0x807fffff), math.MaxFloat32, -math.MaxFloat32,
		1e30, -3e9, 2147483520, 2147483648, 2139095040, 1<<31 - 1<<23 - 128, 1 << 24, 1<<24 + 2,
		1 << 23, 1<<23 + 1, 8388607.5, 1 << 22, 4194304.5, 4194303.75, 12582912, 7.5, 6.5, 0.5,
	}
	scales := []float32{
		1, 1e-3, math.Float32frombits(1), 1e-38, float32(math.Inf(1)),
		-0.01, -1, 0, float32(math.Copysign(0, -1)), float32(math.NaN()),
	}
	for _, n := range []int{7, 8, 31, 32, 33, 128, 172, 300} {
		w := make([]float32, n)
		for _, s := range scales {
			for range 4 {
				for i := range w {
					switch rng.IntN(3) {
					case 0:
						w[i] = specials[rng.IntN(len(specials))]
					case 1:
						w[i] = float32(rng.NormFloat64())
					default:
						w[i] = float32(rng.NormFloat64() * 1e-39) // subnormal
					}
					if rng.IntN(2) == 0 {
						w[i] = -w[i]
					}
				}
				checkQuantizeGroup(t, "outside the range", w, s)
			}
		}
	}
}

func TestAbsMaxBitsKernel(t *testing.T) {
	logKernelPath(t)
	rng := rand.New(rand.NewPCG(15, 16))
	check := func(what string, w []float32) {
		t.Helper()
		got, want := absMaxBitsAsm(w), absMaxBitsGo(w)
		if got != want || absMaxBits(w) != want {
			t.Fatalf("%s (n=%d): absMaxBitsAsm = %#08x, want %#08x", what, len(w), got, want)
		}
	}
	specials := []float32{float32(math.NaN()), float32(math.Inf(-1)), float32(math.Copysign(0, -1)), -math.MaxFloat32, math.Float32frombits(0x80000001)}
	for _, n := range kernelLengths() {
		base := make([]float32, n+7)
		off := rng.IntN(8)
		w := base[off : off+n]
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		check("gaussian", w)
		for i := range w {
			w[i] = float32(math.Copysign(0, -1))
		}
		check("negative zeros", w)
		// The maximum in every position (a few positions for long slices), negative too.
		for p := 0; p < n; p += 1 + n/64 {
			for i := range w {
				w[i] = float32(rng.NormFloat64() * 0.02)
			}
			w[p] = -1.5
			check("one large", w)
			w[p] = specials[rng.IntN(len(specials))]
			check("special", w)
		}
		// Random bit patterns: every exponent, NaN payloads, both signs.
		for i := range w {
			w[i] = math.Float32frombits(rng.Uint32())
		}
		check("random bits", w)
	}
}

// kernelWeight builds a weight [out×in] with groups of g, its RTN codes (optionally with
// the clipping search) and integer scales.
func kernelWeight(t testing.TB, rng *rand.Rand, out, in, g int, clip bool) ([]float32, *IntScaleWeight) {
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
		if rng.IntN(200) == 0 {
			w[i] *= 20
		}
	}
	if out > 1 {
		clear(w[in : 2*in]) // an all-zero row
	}
	qw, err := RTN(w, out, in, g, RTNOptions{ClipSearch: clip})
	if err != nil {
		t.Fatal(err)
	}
	iw, err := IntegerScales(qw, AmplifierRule{})
	if err != nil {
		t.Fatal(err)
	}
	return w, iw
}

func TestRowErrorsKernel(t *testing.T) {
	logKernelPath(t)
	rng := rand.New(rand.NewPCG(17, 18))
	near := func(got, want float64) bool { // the canonical order: bit for bit
		return math.Float64bits(got) == math.Float64bits(want)
	}
	for _, sh := range [][3]int{
		{5, 8, 8}, {5, 12, 12}, {4, 20, 4}, {6, 256, 128}, {5, 172, 172}, {4, 300, 100},
		{4, 1000, 200}, {3, 1024, 64}, {3, 11008, 128}, {3, 11008, 11008}, {2, 11008, 172},
	} {
		out, in, g := sh[0], sh[1], sh[2]
		for _, clip := range []bool{false, true} {
			w, iw := kernelWeight(t, rng, out, in, g, clip)
			qw := iw.QuantizedWeight
			for o := 0; o < out; o++ {
				row := w[o*in : (o+1)*in]
				got, want := rowErrorsAsm(row, qw, iw, o), rowErrorsGo(row, qw, iw, o)
				for i := range got {
					if !near(got[i], want[i]) {
						t.Errorf("%v clip %v row %d: sum %d = %v, want %v (rel %.3g)", sh, clip, o, i, got[i], want[i], (got[i]-want[i])/want[i])
					}
				}
				if got != rowErrors(row, qw, iw, o) {
					t.Errorf("%v row %d: rowErrors does not dispatch to rowErrorsAsm", sh, o)
				}
				if again := rowErrorsAsm(row, qw, iw, o); again != got {
					t.Errorf("%v row %d: not deterministic: %v, then %v", sh, o, got, again)
				}
				// Without the integer scales: the same float and weight sums, bit for bit.
				gf, wf := rowErrorsAsm(row, qw, nil, o), rowErrorsGo(row, qw, nil, o)
				if gf[0] != got[0] || gf[1] != 0 || gf[2] != got[2] {
					t.Errorf("%v row %d: without iw %v, with %v", sh, o, gf, got)
				}
				if !near(gf[0], wf[0]) || !near(gf[2], wf[2]) {
					t.Errorf("%v row %d: without iw %v, want %v", sh, o, gf, wf)
				}
				if o == 1 && out > 1 && (got != rowErr{}) {
					t.Errorf("%v: the zero row has sums %v", sh, got)
				}
			}
		}
	}
}

// The benchmarks run each kernel over a 16×11008 block (LLaMA-7B's MLP rows) in groups of
// 128, as rtnRows and rowErrors do; SetBytes counts the float32 weights.

const benchRows, benchIn, benchGroup = 16, 11008, 128

func BenchmarkQuantizeGroup(b *testing.B) {
	w := randWeights(benchRows*benchIn, 1)
	q := make([]int8, len(w))
	scales := make([]float32, len(w)/benchGroup)
	for g := range scales {
		scales[g] = SymScale(absMaxOf(w[g*benchGroup:(g+1)*benchGroup]), 1)
	}
	for _, v := range []struct {
		name string
		fn   func([]float32, []int8, float32) int32
	}{{"asm", quantizeGroupAsm}, {"go", quantizeGroupGo}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(w)))
			var sum int32
			for b.Loop() {
				for g, s := range scales {
					k := g * benchGroup
					sum += v.fn(w[k:k+benchGroup], q[k:k+benchGroup], s)
				}
			}
			_ = sum
		})
	}
}

func BenchmarkAbsMax(b *testing.B) {
	w := randWeights(benchRows*benchIn, 1)
	for _, v := range []struct {
		name string
		fn   func([]float32) uint32
	}{{"asm", absMaxBitsAsm}, {"go", absMaxBitsGo}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(w)))
			var m uint32
			for b.Loop() {
				for k := 0; k < len(w); k += benchGroup {
					m = max(m, v.fn(w[k:k+benchGroup]))
				}
			}
			_ = m
		})
	}
}

func BenchmarkRowErrors(b *testing.B) {
	w, iw := kernelWeight(b, rand.New(rand.NewPCG(1, 2)), benchRows, benchIn, benchGroup, false)
	qw := iw.QuantizedWeight
	for _, v := range []struct {
		name string
		fn   func([]float32, *QuantizedWeight, *IntScaleWeight, int) rowErr
	}{{"asm", rowErrorsAsm}, {"go", rowErrorsGo}} {
		for _, withInt := range []bool{true, false} {
			name := v.name
			iwb := iw
			if !withInt {
				name += "/float-only"
				iwb = nil
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(4 * len(w)))
				var acc rowErr
				for b.Loop() {
					for o := 0; o < benchRows; o++ {
						r := v.fn(w[o*benchIn:(o+1)*benchIn], qw, iwb, o)
						acc[0] += r[0]
					}
				}
				_ = acc
			})
		}
	}
}

// BenchmarkRTNIntScaleRows is the fused RTN + integer scales + error report of a LLaMA-7B
// MLP matrix, the loader copying from a float32 slice; SetBytes counts the float32 weights.
func BenchmarkRTNIntScaleRows(b *testing.B) {
	const out, in = 4096, 11008
	w := randWeights(out*in, 1)
	b.SetBytes(4 * out * in)
	for b.Loop() {
		if _, _, _, err := RTNIntScaleRows(out, in, 128, RTNOptions{}, AmplifierRule{}, func(dst []float32, r0, r1 int) error {
			copy(dst, w[r0*in:r1*in])
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
