package gemm

import (
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"testing"
)

// Every kernel computes the canonical arithmetic (kernel_generic.go), so every kernel this CPU
// runs, the pure-Go one included, must give bit-identical C, for any goroutine count: the
// property that makes artifacts the same bytes on every CPU (docs/determinism.md). Shapes
// cover edge tiles of every kernel's mr×nr, k below, at and above the K block (384, 385,
// 1000: a partial last block), all transposes and the alpha/beta pairs the callers use
// (1/0 forward, −1/1 GPTQ updates, a softmax scale/0) plus a general one.
func TestKernelsBitIdentical(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(11, 12))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {14, 32, 384}, {15, 33, 385}, {29, 70, 383}, {33, 65, 1000},
		{100, 47, 769}, {6, 200, 1152}, {130, 17, 64}}
	abs := []abCase{{1, 0}, {-1, 1}, {0.125, 0}, {0.0883883, 1}, {-1.5, 0.25}}
	for si, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for tc := 0; tc < 4; tc++ {
			transA, transB := tc&1 != 0, tc&2 != 0
			ab := abs[(si+tc)%len(abs)]
			if si < 3 {
				ab = abs[tc%len(abs)]
			}
			a, b := randSlice(r, m*k), randSlice(r, k*n)
			c0 := randSlice(r, m*n)
			lda, ldb := k, n
			if transA {
				lda = m
			}
			if transB {
				ldb = k
			}
			var want []float32
			for _, procs := range []int{1, 2} {
				runtime.GOMAXPROCS(procs)
				for _, ker := range kernels {
					got := append([]float32(nil), c0...)
					sgemmWith(ker, transA, transB, m, n, k, ab.alpha, a, lda, b, ldb, ab.beta, got, n)
					if want == nil {
						want = got
						checkCanonical(t, transA, transB, m, n, k, ab.alpha, a, lda, b, ldb, ab.beta, c0, got)
						continue
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%v tA=%v tB=%v a=%g b=%g procs %d: %s C[%d] = %g, %s %g",
								sh, transA, transB, ab.alpha, ab.beta, procs, ker.name, i, got[i], kernels[0].name, want[i])
						}
					}
				}
			}
		}
	}
}

// checkCanonical recomputes a few elements of C by the canonical definition, written out
// with no blocking machinery at all.
func checkCanonical(t *testing.T, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c0, got []float32) {
	t.Helper()
	at := func(i, p int) float32 {
		if transA {
			return a[p*lda+i]
		}
		return a[i*lda+p]
	}
	bt := func(p, j int) float32 {
		if transB {
			return b[j*ldb+p]
		}
		return b[p*ldb+j]
	}
	for _, ij := range [][2]int{{0, 0}, {m - 1, n - 1}, {m / 2, n / 3}} {
		i, j := ij[0], ij[1]
		c := c0[i*n+j]
		for p0 := 0; p0 < k; p0 += canonicalKC {
			var acc float32
			for p := p0; p < min(p0+canonicalKC, k); p++ {
				acc = fma32(at(i, p), bt(p, j), acc)
			}
			bet := beta
			if p0 > 0 {
				bet = 1
			}
			tt := float32(alpha * acc)
			switch bet {
			case 0:
				c = tt
			case 1:
				c = c + tt
			default:
				c = fma32(bet, c, tt)
			}
		}
		if math.Float32bits(c) != math.Float32bits(got[i*n+j]) {
			t.Fatalf("%dx%dx%d: C[%d][%d] = %g, canonical definition %g", m, n, k, i, j, got[i*n+j], c)
		}
	}
}

// TestKernelsKC: one K block for all kernels, the canonical one.
func TestKernelsKC(t *testing.T) {
	for _, k := range kernels {
		if k.kc != canonicalKC {
			t.Errorf("%s: kc %d, the canonical arithmetic needs %d", k.name, k.kc, canonicalKC)
		}
	}
}

// exactFMA32 is the correctly rounded float32 of a·b+c, through exact big.Float arithmetic.
func exactFMA32(a, b, c float32) float32 {
	x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
	x.Mul(x, new(big.Float).SetPrec(200).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetPrec(200).SetFloat64(float64(c)))
	f, _ := x.Float32() // nearest, ties to even (big.Float's Float32 rounds like IEEE)
	return f
}

// TestFMA32 checks fma32 against exact arithmetic on random operands and on the cases that
// defeat the double rounding of float32(float64 FMA): sums that land on a float32 midpoint
// with a tiny remainder, subnormal results, signed zeros and cancellation.
func TestFMA32(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	check := func(a, b, c float32) {
		got, want := fma32(a, b, c), exactFMA32(a, b, c)
		if math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
			t.Fatalf("fma32(%g, %g, %g) = %g (%08x), exact %g (%08x)", a, b, c, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
	for i := 0; i < 200000; i++ {
		a, b, c := float32(r.NormFloat64()), float32(r.NormFloat64()), float32(r.NormFloat64())
		if i%3 == 0 {
			c *= float32(math.Ldexp(1, r.IntN(60)-30))
		}
		check(a, b, c)
	}
	// Double-rounding cases: c = 1 + 2^-23·m sits on the float32 grid (ulp 2^-23), and
	// a·b = 2^-24·(1 ± 2^-23)² = 2^-24 ± 2^-46 + 2^-70 or 2^-24·(1 − 2^-46) = 2^-24 − 2^-70
	// is half an ulp plus or minus a remainder that float64, holding c, cannot keep: s lands
	// exactly on the float32 midpoint and ties-to-even would round the wrong way for half of
	// the m. float32(math.FMA(...)) gets about half of these wrong.
	e := func(x float64, n int) float32 { return float32(math.Ldexp(x, n)) }
	for i := 0; i < 2000; i++ {
		c := float32(1 + math.Ldexp(float64(r.IntN(1<<23)), -23))
		up, dn := float32(1+math.Ldexp(1, -23)), float32(1-math.Ldexp(1, -23))
		for _, ab := range [][2]float32{{up, e(float64(dn), -24)}, {up, e(float64(up), -24)}, {dn, e(float64(dn), -24)},
			{up, e(float64(dn)*4, -24-r.IntN(3)-2)}} {
			check(ab[0], ab[1], c)
			check(-ab[0], ab[1], -c)
			check(ab[0], -ab[1], c)
		}
	}
	// The same through the fast kernel: a 4×4 tile whose sums land on midpoints must fall back
	// to the exact path (k = 2: acc = c·1, then acc = fma(a, b, acc)).
	for i := 0; i < 200; i++ {
		up, dn := float32(1+math.Ldexp(1, -23)), float32(1-math.Ldexp(1, -23))
		ap, bp := make([]float32, 8), make([]float32, 8)
		for q := 0; q < 4; q++ {
			ap[q], bp[q] = float32(1+math.Ldexp(float64(r.IntN(1<<23)), -23)), 1
			ap[4+q], bp[4+q] = up, e(float64([]float32{dn, up}[r.IntN(2)]), -24)
		}
		ct := make([]float32, 16)
		genericKernel4x4(2, ap, bp, ct, 4, 1, 0)
		for q := 0; q < 16; q++ {
			i, j := q/4, q%4
			want := exactFMA32(ap[4+i], bp[4+j], exactFMA32(ap[i], bp[j], 0))
			if ct[q] != want {
				t.Fatalf("generic kernel C[%d][%d] = %g, exact %g", i, j, ct[q], want)
			}
		}
	}
	// Below float32's normal range: c = 2^-127 + m·2^-149 (subnormal), a·b = 2^-150·(1 − 2^-46)
	// (a, b below 2^-65): the float64 sum rounds onto the subnormal midpoint c + 2^-150. The
	// kernel's fast path cannot see it in the sum; hasTiny must send the tile to fma32.
	for i := 0; i < 200; i++ {
		c := e(float64(1<<22+r.IntN(1<<22)), -149)
		a, b := e(1+math.Ldexp(1, -23), -75), e(1-math.Ldexp(1, -23), -75)
		check(a, b, c)
		ap, bp := []float32{1, 1, 1, 1, a, a, a, a}, []float32{c, c, c, c, b, b, b, b}
		ct := make([]float32, 16)
		genericKernel4x4(2, ap, bp, ct, 4, 1, 0)
		if want := exactFMA32(a, b, c); ct[5] != want {
			t.Fatalf("generic kernel, subnormal sum: %g (%08x), exact %g (%08x)", ct[5], math.Float32bits(ct[5]), want, math.Float32bits(want))
		}
	}
	tiny := float32(math.Ldexp(1, -130))
	for _, v := range [][3]float32{{0, 0, 0}, {-0.0, 1, 0}, {float32(math.Copysign(0, -1)), 1, float32(math.Copysign(0, -1))},
		{tiny, 0.75, tiny}, {tiny, 3, -tiny}, {1e-20, 1e-20, 0}, {1e-20, 1e-20, 1e-45}, {3, 1.0 / 3, -1},
		{math.MaxFloat32, 2, 0}, {math.MaxFloat32, 1, math.MaxFloat32}} {
		check(v[0], v[1], v[2])
	}
	if got := fma32(float32(math.Inf(1)), 1, 1); !math.IsInf(float64(got), 1) {
		t.Errorf("fma32(+Inf, 1, 1) = %g", got)
	}
	if got := fma32(float32(math.NaN()), 1, 1); got == got {
		t.Errorf("fma32(NaN, 1, 1) = %g", got)
	}
}
