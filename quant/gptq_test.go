package quant

import (
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The references in this file are written out from the paper and gptq.py, independently of
// gptq.go: float64 throughout, no blocking, Hinv by the reference's own route (Cholesky,
// explicit inverse, Cholesky of the inverse), RTN inline from SymScale and QuantizeValue.

// gptqTestWeights returns out×in weights, Gaussian with σ = 0.02 like an LLM linear, with a
// few 8× outliers.
func gptqTestWeights(out, in int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
		if r.IntN(200) == 0 {
			w[i] *= 8
		}
	}
	return w
}

// gptqTestInputs returns n calibration rows of width in with correlated columns: rank-in/4
// latent factors plus 30% independent noise, column scales spread log-uniformly over 25×,
// and one outlier channel 20× larger (LLM activations have a few).
func gptqTestInputs(n, in int, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 11))
	f := max(in/4, 1)
	a := make([]float64, f*in)
	for i := range a {
		a[i] = r.NormFloat64()
	}
	scale := make([]float64, in)
	for j := range scale {
		scale[j] = math.Exp(r.Float64()*math.Log(25)) / 5
	}
	scale[in/3] *= 20
	x := make([]float64, n*in)
	z := make([]float64, f)
	for s := 0; s < n; s++ {
		for i := range z {
			z[i] = r.NormFloat64()
		}
		for j := 0; j < in; j++ {
			var v float64
			for i := range z {
				v += z[i] * a[i*in+j]
			}
			x[s*in+j] = scale[j] * (v/math.Sqrt(float64(f)) + 0.3*r.NormFloat64())
		}
	}
	return x
}

// gptqTestHessian returns H = 2/n·XᵀX.
func gptqTestHessian(x []float64, n, in int) []float64 {
	h := make([]float64, in*in)
	for s := 0; s < n; s++ {
		row := x[s*in : (s+1)*in]
		for i, xi := range row {
			if xi == 0 {
				continue
			}
			hr := h[i*in : (i+1)*in]
			for j, xj := range row {
				hr[j] += xi * xj
			}
		}
	}
	for i := range h {
		h[i] *= 2 / float64(n)
	}
	return h
}

// gptqOutputErr returns ‖XWᵀ − XŴᵀ‖² for the float weight w and its dequantized ŵ.
func gptqOutputErr(x []float64, n, in int, w, wq []float32, out int) float64 {
	var sum float64
	e := make([]float64, in)
	for o := 0; o < out; o++ {
		for k := range e {
			e[k] = float64(w[o*in+k]) - float64(wq[o*in+k])
		}
		for s := 0; s < n; s++ {
			var d float64
			for k, xk := range x[s*in : (s+1)*in] {
				d += xk * e[k]
			}
			sum += d * d
		}
	}
	return sum
}

// gptqTestRTN is round to nearest with per-group scales from the group's absolute maximum,
// shrunk by the best factor of grid (grid[0] = 1; ties keep the earlier).
func gptqTestRTN(w []float32, out, in, gs int, grid []float32) *QuantizedWeight {
	qw := &QuantizedWeight{Out: out, In: in, GroupSize: gs, Q: make([]int8, out*in), Scales: make([]float32, out*in/gs)}
	for o := 0; o < out; o++ {
		for g := 0; g < in/gs; g++ {
			wg := w[o*in+g*gs : o*in+(g+1)*gs]
			s := gptqTestScale(wg, grid)
			qw.Scales[o*(in/gs)+g] = s
			for k, v := range wg {
				qw.Q[o*in+g*gs+k] = QuantizeValue(v, s)
			}
		}
	}
	return qw
}

func gptqTestScale(wg []float32, grid []float32) float32 {
	var absmax float32
	for _, v := range wg {
		absmax = max(absmax, float32(math.Abs(float64(v))))
	}
	best, bestErr := float32(0), math.Inf(1)
	for _, c := range grid {
		s := SymScale(absmax, c)
		var sse float64
		for _, v := range wg {
			d := float64(s*float32(QuantizeValue(v, s))) - float64(v)
			sse += d * d
		}
		if sse < bestErr {
			best, bestErr = s, sse
		}
	}
	return best
}

// gptqRefHinv returns the upper Cholesky factor of a⁻¹ [n×n] the way gptq.py computes it:
// L = cholesky(a); a⁻¹ = cholesky_inverse(L); U = cholesky(a⁻¹, upper=True). It returns nil
// if a is not positive definite.
func gptqRefHinv(a []float64, n int) []float64 {
	chol := func(m []float64) []float64 { // lower, unblocked
		l := make([]float64, n*n)
		for j := 0; j < n; j++ {
			s := m[j*n+j]
			for k := 0; k < j; k++ {
				s -= l[j*n+k] * l[j*n+k]
			}
			if !(s > 0) {
				return nil
			}
			l[j*n+j] = math.Sqrt(s)
			for i := j + 1; i < n; i++ {
				t := m[i*n+j]
				for k := 0; k < j; k++ {
					t -= l[i*n+k] * l[j*n+k]
				}
				l[i*n+j] = t / l[j*n+j]
			}
		}
		return l
	}
	l := chol(a)
	if l == nil {
		return nil
	}
	// li = L⁻¹ by forward substitution; a⁻¹ = L⁻ᵀ·L⁻¹.
	li := make([]float64, n*n)
	for j := 0; j < n; j++ {
		li[j*n+j] = 1 / l[j*n+j]
		for i := j + 1; i < n; i++ {
			var s float64
			for k := j; k < i; k++ {
				s += l[i*n+k] * li[k*n+j]
			}
			li[i*n+j] = -s / l[i*n+i]
		}
	}
	ainv := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := max(i, j); k < n; k++ {
				s += li[k*n+i] * li[k*n+j]
			}
			ainv[i*n+j] = s
		}
	}
	l2 := chol(ainv)
	if l2 == nil {
		return nil
	}
	u := make([]float64, n*n) // U = L2ᵀ: a⁻¹ = L2·L2ᵀ = Uᵀ·U
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			u[i*n+j] = l2[j*n+i]
		}
	}
	return u
}

type gptqRefResult struct {
	q      []int8    // original column order
	scales []float32 // [out×ng]
	x      []float64 // w/scale before rounding, original order
	order  []int     // order[i] = original column quantized i-th
	static bool
	loss   float64
	lambda float64
	hinv   []float64 // processing order
}

// gptqReference is GPTQ column by column in float64 with the whole remaining row updated
// after every column (no lazy batching), group scales computed from the fully updated
// weights when a group's first column is reached (or up front when static), dead columns and
// act-order as in gptq.py.
func gptqReference(w []float32, out, in int, h []float64, gs int, percdamp float64, actOrder, static bool, grid []float32) gptqRefResult {
	hd := slices.Clone(h)
	dead := make([]bool, in)
	var mean float64
	for i := 0; i < in; i++ {
		if hd[i*in+i] == 0 {
			dead[i] = true
			hd[i*in+i] = 1
		}
		mean += math.Abs(hd[i*in+i]) / float64(in)
	}
	order := make([]int, in)
	for i := range order {
		order[i] = i
	}
	if actOrder {
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(hd[b*in+b], hd[a*in+a]) })
	}
	lambda := percdamp * mean
	hp := make([]float64, in*in)
	for i := 0; i < in; i++ {
		for j := 0; j < in; j++ {
			hp[i*in+j] = hd[order[i]*in+order[j]]
		}
		hp[i*in+i] += lambda
	}
	u := gptqRefHinv(hp, in)
	if u == nil {
		panic("reference: Hessian not positive definite")
	}
	static = static || (actOrder && gs < in)
	ng := in / gs
	res := gptqRefResult{
		q: make([]int8, out*in), scales: make([]float32, out*ng), x: make([]float64, out*in),
		order: order, static: static, lambda: lambda, hinv: u,
	}
	wz := make([]float32, in) // original order, dead zeroed
	wp := make([]float64, in) // processing order
	for r := 0; r < out; r++ {
		for k := 0; k < in; k++ {
			wz[k] = w[r*in+k]
			if dead[k] {
				wz[k] = 0
			}
		}
		for i, k := range order {
			wp[i] = float64(wz[k])
		}
		if static {
			for g := 0; g < ng; g++ {
				res.scales[r*ng+g] = gptqTestScale(wz[g*gs:(g+1)*gs], grid)
			}
		}
		g32 := make([]float32, gs)
		for i, k := range order {
			if !static && i%gs == 0 {
				for j := range g32 {
					g32[j] = float32(wp[i+j])
				}
				res.scales[r*ng+i/gs] = gptqTestScale(g32, grid)
			}
			s := res.scales[r*ng+k/gs]
			if !static {
				s = res.scales[r*ng+i/gs]
			}
			wi := float32(wp[i])
			c := QuantizeValue(wi, s)
			res.q[r*in+k] = c
			res.x[r*in+k] = float64(wi) / float64(s)
			diff := wp[i] - float64(s*float32(c))
			d := u[i*in+i]
			res.loss += diff * diff / (d * d) / 2
			e := diff / d
			for j := i + 1; j < in; j++ {
				wp[j] -= e * u[i*in+j]
			}
		}
	}
	return res
}

// gptqCheckRef compares a GPTQ result with the reference. Float32 against float64 rounding
// can flip a code whose w/scale sits on a rounding boundary, after which the two rows
// legitimately diverge (the error propagated differs); so in each row the codes must agree
// up to the first mismatch, that mismatch must be by one at a near-tie of the reference, and
// the scales of the groups begun before it must agree to 1e-5. It returns how many rows
// diverged.
func gptqCheckRef(t *testing.T, qw *QuantizedWeight, ref gptqRefResult, tieTol float64) int {
	t.Helper()
	out, in, gs := qw.Out, qw.In, qw.GroupSize
	ng := in / gs
	diverged := 0
	for r := 0; r < out; r++ {
		first := in
		for i, k := range ref.order {
			if got, want := qw.Q[r*in+k], ref.q[r*in+k]; got != want {
				first = i
				x := ref.x[r*in+k]
				tie := math.Abs(math.Abs(x-math.Floor(x)) - 0.5)
				if d := int(got) - int(want); d != 1 && d != -1 || tie > tieTol {
					t.Errorf("row %d column %d (step %d): code %d, reference %d at w/s = %.6f (%.2g from a tie)", r, k, i, got, want, x, tie)
				}
				diverged++
				break
			}
		}
		for g := 0; g < ng; g++ {
			if !ref.static && g*gs > first {
				break
			}
			got, want := qw.Scales[r*ng+g], ref.scales[r*ng+g]
			if math.Abs(float64(got-want)) > 1e-5*math.Abs(float64(want)) {
				t.Errorf("row %d group %d: scale %g, reference %g", r, g, got, want)
			}
		}
	}
	return diverged
}

func gptqProblem(n, out, in int, seed uint64) (x []float64, h []float64, w []float32) {
	x = gptqTestInputs(n, in, seed)
	return x, gptqTestHessian(x, n, in), gptqTestWeights(out, in, seed+1)
}

// TestGPTQMatchesReference is test (1) and (7): the blocked float32 GPTQ against the textbook
// float64 algorithm, per-channel and grouped, with block sizes that do and do not divide the
// group size, with act-order, static groups and both factorizations.
func TestGPTQMatchesReference(t *testing.T) {
	const n, out, in = 512, 24, 384
	_, h, w := gptqProblem(n, out, in, 1)
	cases := []struct {
		name string
		opt  GPTQOptions
	}{
		{"per-channel", GPTQOptions{}},
		{"per-channel-explicit", GPTQOptions{GroupSize: in}},
		{"g32", GPTQOptions{GroupSize: 32}},
		{"g64", GPTQOptions{GroupSize: 64}},
		{"g128", GPTQOptions{GroupSize: 128}},
		{"g96-cuts-blocks", GPTQOptions{GroupSize: 96}},
		{"g128-block1", GPTQOptions{GroupSize: 128, BlockSize: 1}},
		{"g64-block7", GPTQOptions{GroupSize: 64, BlockSize: 7}},
		{"g32-block-all", GPTQOptions{GroupSize: 32, BlockSize: 1000}},
		{"g128-block256", GPTQOptions{GroupSize: 128, BlockSize: 256}},
		{"g64-static", GPTQOptions{GroupSize: 64, StaticGroups: true}},
		{"per-channel-actorder", GPTQOptions{ActOrder: true}},
		{"g128-actorder", GPTQOptions{GroupSize: 128, ActOrder: true}},
		{"g32-actorder-block16", GPTQOptions{GroupSize: 32, ActOrder: true, BlockSize: 16}},
		{"g64-float64", GPTQOptions{GroupSize: 64, Float64Hessian: true}},
		{"g64-actorder-float64", GPTQOptions{GroupSize: 64, ActOrder: true, Float64Hessian: true}},
		{"g64-damp0.1", GPTQOptions{GroupSize: 64, PercDamp: 0.1}},
		{"g32-clip", GPTQOptions{GroupSize: 32, ClipSearch: true}},
		{"g128-clip-actorder", GPTQOptions{GroupSize: 128, ClipSearch: true, ActOrder: true}},
		{"per-channel-clip", GPTQOptions{ClipSearch: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			qw, st, err := GPTQ(w, out, in, h, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			gs := c.opt.GroupSize
			if gs <= 0 {
				gs = in
			}
			pd := c.opt.PercDamp
			if pd == 0 {
				pd = DefaultPercDamp
			}
			grid := []float32{1}
			if c.opt.ClipSearch {
				grid = DefaultClipGrid()
			}
			ref := gptqReference(w, out, in, h, gs, pd, c.opt.ActOrder, c.opt.StaticGroups, grid)
			if qw.GroupSize != gs || len(qw.Scales) != out*in/gs {
				t.Fatalf("group size %d with %d scales", qw.GroupSize, len(qw.Scales))
			}
			if st.StaticGroups != ref.static {
				t.Errorf("StaticGroups %v, want %v", st.StaticGroups, ref.static)
			}
			if math.Abs(st.DampUsed-ref.lambda) > 1e-12*ref.lambda || st.Retries != 0 {
				t.Errorf("damp %g after %d retries, want %g", st.DampUsed, st.Retries, ref.lambda)
			}
			// On this problem every code agrees (float32 against float64 never lands on a
			// tie); allow one row to diverge at a tie so that the test is not brittle.
			if d := gptqCheckRef(t, qw, ref, 1e-3); d > 1 {
				t.Errorf("%d of %d rows diverged at ties", d, out)
			}
			if math.Abs(st.Loss-ref.loss) > 1e-4*ref.loss {
				t.Errorf("loss %g, reference %g", st.Loss, ref.loss)
			}
		})
	}
}

// TestGPTQHinv checks the factorization itself: J·chol(J·H·J)⁻¹·J (float32 blocked, and
// float64 through LAPACK) against the reference's cholesky → cholesky_inverse →
// cholesky(upper), on a width that is not a multiple of the panel width, with act-order.
func TestGPTQHinv(t *testing.T) {
	const n, in = 1024, 600
	x := gptqTestInputs(n, in, 3)
	h := gptqTestHessian(x, n, in)
	for _, f64 := range []bool{false, true} {
		hh, err := PrepareHessian(h, in, GPTQOptions{ActOrder: true, Float64Hessian: f64})
		if err != nil {
			t.Fatal(err)
		}
		ref := gptqReference(make([]float32, in), 1, in, h, in, DefaultPercDamp, true, false, []float32{1})
		if !slices.Equal(hh.perm, ref.order) {
			t.Fatalf("float64=%v: act-order permutation differs from the reference", f64)
		}
		var maxRel float64
		for i := 0; i < in; i++ {
			// Compare each row relative to its diagonal: the scale the update is taken at.
			d := ref.hinv[i*in+i]
			for j := 0; j < in; j++ {
				got := float64(hh.hinv[i*in+j])
				if j < i && got != 0 {
					t.Fatalf("float64=%v: Hinv[%d,%d] = %g below the diagonal", f64, i, j, got)
				}
				maxRel = max(maxRel, math.Abs(got-ref.hinv[i*in+j])/d)
			}
		}
		t.Logf("float64=%v: max |Hinv − ref|/Hinv[i,i] = %.2g", f64, maxRel)
		if tol := map[bool]float64{false: 1e-4, true: 1e-6}[f64]; maxRel > tol {
			t.Errorf("float64=%v: Hinv differs from the reference by %.2g (relative), want ≤ %g", f64, maxRel, tol)
		}
	}
}

// TestGPTQIdentityHessianIsRTN is test (2): with uncorrelated inputs no error propagation can
// help, Hinv is diagonal, and GPTQ must be RTN exactly, codes and scales, with and without
// clipping; with a diagonal but non-constant H act-order permutes but still changes nothing.
func TestGPTQIdentityHessianIsRTN(t *testing.T) {
	const out, in = 16, 256
	w := gptqTestWeights(out, in, 5)
	r := rand.New(rand.NewPCG(5, 5))
	for _, diagonal := range []string{"identity", "random-diagonal"} {
		h := make([]float64, in*in)
		for i := 0; i < in; i++ {
			h[i*in+i] = 1
			if diagonal != "identity" {
				h[i*in+i] = 0.1 + r.Float64()
			}
		}
		for _, gs := range []int{32, 128, in} {
			for _, clip := range []bool{false, true} {
				for _, act := range []bool{false, true} {
					qw, _, err := GPTQ(w, out, in, h, GPTQOptions{GroupSize: gs, ClipSearch: clip, ActOrder: act})
					if err != nil {
						t.Fatal(err)
					}
					grid := []float32{1}
					if clip {
						grid = DefaultClipGrid()
					}
					want := gptqTestRTN(w, out, in, gs, grid)
					if !slices.Equal(qw.Q, want.Q) || !slices.Equal(qw.Scales, want.Scales) {
						t.Errorf("%s H, group %d, clip %v, act-order %v: GPTQ differs from RTN", diagonal, gs, clip, act)
					}
				}
			}
		}
	}
}

// TestGPTQBeatsRTN is test (3): on correlated inputs GPTQ's output error ‖XWᵀ − XQᵀ‖² is
// clearly below RTN's, for every group size, with and without act-order and clipping. It
// also checks the OBS identity: Loss = ½·Σ_rows e·(H + λI)·eᵀ with e = W − Q.
func TestGPTQBeatsRTN(t *testing.T) {
	const n, out, in = 512, 32, 256
	x, h, w := gptqProblem(n, out, in, 2)
	for _, gs := range []int{32, 64, 128, in} {
		for _, opt := range []GPTQOptions{
			{GroupSize: gs},
			{GroupSize: gs, ActOrder: true},
			{GroupSize: gs, ClipSearch: true},
		} {
			qw, st, err := GPTQ(w, out, in, h, opt)
			if err != nil {
				t.Fatal(err)
			}
			grid := []float32{1}
			if opt.ClipSearch {
				grid = DefaultClipGrid()
			}
			rtn := gptqTestRTN(w, out, in, gs, grid)
			eg := gptqOutputErr(x, n, in, w, qw.Dequantize(), out)
			er := gptqOutputErr(x, n, in, w, rtn.Dequantize(), out)
			t.Logf("group %3d act-order %-5v clip %-5v: GPTQ/RTN output error %.3f", gs, opt.ActOrder, opt.ClipSearch, eg/er)
			if eg > 0.7*er {
				t.Errorf("group %d act-order %v clip %v: GPTQ output error %g not clearly below RTN's %g", gs, opt.ActOrder, opt.ClipSearch, eg, er)
			}
			// OBS identity.
			deq := qw.Dequantize()
			var want float64
			e := make([]float64, in)
			for o := 0; o < out; o++ {
				for k := range e {
					e[k] = float64(w[o*in+k]) - float64(deq[o*in+k])
				}
				for i := 0; i < in; i++ {
					var s float64
					for j := 0; j < in; j++ {
						s += h[i*in+j] * e[j]
					}
					want += e[i] * (s + st.DampUsed*e[i]) / 2
				}
			}
			if math.Abs(st.Loss-want) > 1e-3*want {
				t.Errorf("group %d: Loss %g, ½·Σ e(H+λI)eᵀ = %g", gs, st.Loss, want)
			}
		}
	}
}

// TestGPTQActOrderRoundTrip is test (4): the act-order order is a permutation, descending in
// diag(H), the dequantized weight approximates W in the original column order. (That codes
// and scales land in the original order exactly is checked against the reference in
// TestGPTQMatchesReference and, with no error propagation, against RTN in
// TestGPTQIdentityHessianIsRTN.)
func TestGPTQActOrderRoundTrip(t *testing.T) {
	const n, out, in = 256, 16, 128
	x, h, w := gptqProblem(n, out, in, 4)
	hh, err := PrepareHessian(h, in, GPTQOptions{ActOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, in)
	for _, k := range hh.perm {
		if k < 0 || k >= in || seen[k] {
			t.Fatalf("act-order order is not a permutation: %v", hh.perm)
		}
		seen[k] = true
	}
	if hh.perm[0] != in/3 { // gptqTestInputs' outlier channel
		t.Errorf("first column quantized is %d, want the outlier channel %d", hh.perm[0], in/3)
	}
	for i := 1; i < in; i++ {
		if h[hh.perm[i]*in+hh.perm[i]] > h[hh.perm[i-1]*in+hh.perm[i-1]] {
			t.Fatalf("act-order order not descending in diag(H) at %d", i)
		}
	}
	for _, gs := range []int{32, in} {
		qa, _, err := GPTQWithHessian(w, out, in, hh, GPTQOptions{GroupSize: gs, ActOrder: true})
		if err != nil {
			t.Fatal(err)
		}
		deq := qa.Dequantize()
		var num, den float64
		for i := range w {
			d := float64(w[i] - deq[i])
			num += d * d
			den += float64(w[i]) * float64(w[i])
		}
		// The same dequantized weights left in processing order: what a missing
		// un-permutation would produce.
		var numWrong float64
		for o := 0; o < out; o++ {
			for i, k := range hh.perm {
				d := float64(w[o*in+k] - deq[o*in+i])
				numWrong += d * d
			}
		}
		// GPTQ trades weight error for output error: it moves weights along directions the
		// (here strongly correlated) inputs hardly see, so W − Q is well above RTN's (about
		// 0.1–0.2), but far from the ≈ √2 of misplaced columns.
		rel, relWrong := math.Sqrt(num/den), math.Sqrt(numWrong/den)
		t.Logf("group %d: ‖W − Q‖/‖W‖ = %.3f (left permuted: %.3f)", gs, rel, relWrong)
		if rel > 0.8 || rel > relWrong/2 {
			t.Errorf("group %d: ‖W − Q‖/‖W‖ = %.3f, left permuted %.3f", gs, rel, relWrong)
		}
		qp, _, err := GPTQ(w, out, in, h, GPTQOptions{GroupSize: gs})
		if err != nil {
			t.Fatal(err)
		}
		// Act-order quantizes the outlier channel first, while every other column can still
		// absorb its error; on these inputs that helps (TestGPTQBeatsRTN: about 2×).
		ea := gptqOutputErr(x, n, in, w, deq, out)
		ep := gptqOutputErr(x, n, in, w, qp.Dequantize(), out)
		t.Logf("group %d: act-order/plain output error %.3f", gs, ea/ep)
		if ea > ep {
			t.Errorf("group %d: act-order output error %g above plain GPTQ's %g", gs, ea, ep)
		}
	}
}

// TestGPTQDamping is test (5): singular and indefinite Hessians.
func TestGPTQDamping(t *testing.T) {
	const n, out, in = 96, 8, 128
	x := gptqTestInputs(n, in, 6)
	// Duplicate column 7 into 9: H is singular (rank ≤ 96 anyway) with the null vector
	// v = (e7 − e9)/√2.
	for s := 0; s < n; s++ {
		x[s*in+9] = x[s*in+7]
	}
	h := gptqTestHessian(x, n, in)
	w := gptqTestWeights(out, in, 6)
	var mean float64
	for i := 0; i < in; i++ {
		mean += h[i*in+i] / in
	}

	t.Run("singular", func(t *testing.T) {
		_, st, err := GPTQ(w, out, in, h, GPTQOptions{GroupSize: 32})
		if err != nil {
			t.Fatal(err)
		}
		if st.Retries != 0 || math.Abs(st.DampUsed-0.01*mean) > 1e-9*mean {
			t.Errorf("singular H: %d retries, damp %g, want 0 and %g", st.Retries, st.DampUsed, 0.01*mean)
		}
	})

	// H − μ·vvᵀ has the eigenvalue −μ along v and is unchanged elsewhere: with μ = 5% of
	// the mean diagonal, percdamp 0.01 cannot make it definite and 0.1 can.
	mu := 0.05 * mean
	hi := slices.Clone(h)
	for _, a := range [][3]float64{{7, 7, 1}, {9, 9, 1}, {7, 9, -1}, {9, 7, -1}} {
		hi[int(a[0])*in+int(a[1])] -= mu / 2 * a[2]
	}
	// λ is a fraction of mean(|diag H|) (a diagonal entry may have gone negative here).
	var meanI float64
	for i := 0; i < in; i++ {
		meanI += math.Abs(hi[i*in+i]) / in
	}

	t.Run("indefinite", func(t *testing.T) {
		for _, f64 := range []bool{false, true} {
			qw, st, err := GPTQ(w, out, in, hi, GPTQOptions{GroupSize: 32, Float64Hessian: f64})
			if err != nil {
				t.Fatal(err)
			}
			if st.Retries != 1 || math.Abs(st.PercDampUsed-0.1) > 1e-12 || math.Abs(st.DampUsed-0.1*meanI) > 1e-9*meanI {
				t.Errorf("float64=%v: %d retries, percdamp %g, damp %g; want 1, 0.1, %g", f64, st.Retries, st.PercDampUsed, st.DampUsed, 0.1*meanI)
			}
			ref := gptqReference(w, out, in, hi, 32, 0.1, false, false, []float32{1})
			gptqCheckRef(t, qw, ref, 1e-3)
		}
	})

	t.Run("no-retries", func(t *testing.T) {
		_, _, err := GPTQ(w, out, in, hi, GPTQOptions{GroupSize: 32, MaxDampRetries: -1})
		if !errors.Is(err, ErrHessianNotPD) {
			t.Errorf("err = %v, want ErrHessianNotPD", err)
		}
	})

	t.Run("negative-definite", func(t *testing.T) {
		neg := make([]float64, in*in)
		for i := 0; i < in; i++ {
			neg[i*in+i] = -1
		}
		// λ = 0.01, 0.1: both leave −0.9 I at best.
		if _, _, err := GPTQ(w, out, in, neg, GPTQOptions{MaxDampRetries: 1}); !errors.Is(err, ErrHessianNotPD) {
			t.Errorf("err = %v, want ErrHessianNotPD", err)
		}
		// λ = 1 leaves a zero pivot; λ = 10 (the third retry) makes it 9·I: reported, not
		// an error.
		_, st, err := GPTQ(w, out, in, neg, GPTQOptions{})
		if err != nil || st.Retries != 3 {
			t.Errorf("err = %v, retries %d; want success after 3", err, st.Retries)
		}
	})

	t.Run("non-finite", func(t *testing.T) {
		nan := make([]float64, in*in)
		for i := range nan {
			nan[i] = math.NaN()
		}
		_, _, err := GPTQ(w, out, in, nan, GPTQOptions{})
		if err == nil || !strings.Contains(err.Error(), "Hessian [0, 0] is NaN") {
			t.Errorf("all-NaN Hessian: err = %v", err)
		}
		inf := slices.Clone(h)
		inf[3*in+5] = math.Inf(1)
		_, _, err = GPTQ(w, out, in, inf, GPTQOptions{})
		if err == nil || !strings.Contains(err.Error(), "Hessian [3, 5] is +Inf") {
			t.Errorf("one +Inf: err = %v", err)
		}
	})
}

// TestGPTQDeadColumns is test (6): inputs never active get zero weights and zero codes, and
// the rest is still the reference's result.
func TestGPTQDeadColumns(t *testing.T) {
	const n, out, in = 256, 16, 128
	x := gptqTestInputs(n, in, 8)
	deadCols := []int{0, 5, 64, 127}
	for s := 0; s < n; s++ {
		for _, k := range deadCols {
			x[s*in+k] = 0
		}
	}
	h := gptqTestHessian(x, n, in)
	w := gptqTestWeights(out, in, 8)
	for _, opt := range []GPTQOptions{{GroupSize: 32}, {GroupSize: 32, ActOrder: true}, {}} {
		qw, st, err := GPTQ(w, out, in, h, opt)
		if err != nil {
			t.Fatal(err)
		}
		if st.DeadColumns != len(deadCols) {
			t.Errorf("DeadColumns = %d, want %d", st.DeadColumns, len(deadCols))
		}
		for o := 0; o < out; o++ {
			for _, k := range deadCols {
				if c := qw.Q[o*in+k]; c != 0 {
					t.Fatalf("act-order %v: dead column %d row %d has code %d", opt.ActOrder, k, o, c)
				}
			}
		}
		gs := opt.GroupSize
		if gs == 0 {
			gs = in
		}
		ref := gptqReference(w, out, in, h, gs, DefaultPercDamp, opt.ActOrder, false, []float32{1})
		if d := gptqCheckRef(t, qw, ref, 1e-3); d > 1 {
			t.Errorf("%d rows diverged", d)
		}
	}
}

// TestGPTQSharedHessian checks that one prepared Hessian serves several layers (the result
// is GPTQ's, bit for bit), that it is not modified, and that the worker count does not
// change a bit of the result.
func TestGPTQSharedHessian(t *testing.T) {
	const n, out, in = 256, 40, 128
	_, h, w1 := gptqProblem(n, out, in, 9)
	w2 := gptqTestWeights(out, in, 99)
	opt := GPTQOptions{GroupSize: 32, ClipSearch: true}
	hh, err := PrepareHessian(h, in, opt)
	if err != nil {
		t.Fatal(err)
	}
	hinv := slices.Clone(hh.hinv)
	for _, w := range [][]float32{w1, w2} {
		a, sa, err := GPTQWithHessian(w, out, in, hh, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 3} {
			o := opt
			o.Workers = workers
			b, sb, err := GPTQ(w, out, in, h, o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Q, b.Q) || !slices.Equal(a.Scales, b.Scales) || sa.Loss != sb.Loss {
				t.Errorf("workers %d: GPTQ and GPTQWithHessian differ", workers)
			}
		}
	}
	if !slices.Equal(hinv, hh.hinv) {
		t.Error("GPTQWithHessian modified the shared Hessian")
	}
	if _, _, err := GPTQWithHessian(w1, out, in, hh, GPTQOptions{GroupSize: 32, ActOrder: true}); err == nil {
		t.Error("ActOrder mismatch accepted")
	}
	if _, _, err := GPTQWithHessian(w1[:out*64], out, 64, hh, opt); err == nil {
		t.Error("width mismatch accepted")
	}
}

// TestGPTQBadInput checks that bad arguments are errors that say what is wrong.
func TestGPTQBadInput(t *testing.T) {
	const out, in = 4, 64
	w := gptqTestWeights(out, in, 10)
	h := make([]float64, in*in)
	for i := 0; i < in; i++ {
		h[i*in+i] = 1
	}
	wNaN := slices.Clone(w)
	wNaN[2*in+17] = float32(math.NaN())
	cases := []struct {
		name string
		w    []float32
		h    []float64
		opt  GPTQOptions
		want string
	}{
		{"short-w", w[:10], h, GPTQOptions{}, "weight has 10 elements"},
		{"short-h", w, h[:10], GPTQOptions{}, "Hessian has 10 elements"},
		{"nan-w", wNaN, h, GPTQOptions{}, "weight [2, 17] is NaN"},
		{"group", w, h, GPTQOptions{GroupSize: 48}, "does not divide"},
		{"block", w, h, GPTQOptions{BlockSize: -2}, "block size"},
		{"damp", w, h, GPTQOptions{PercDamp: -0.01}, "percdamp"},
		{"damp-nan", w, h, GPTQOptions{PercDamp: math.NaN()}, "percdamp"},
		{"clip", w, h, GPTQOptions{ClipSearch: true, ClipGrid: []float32{1.5}}, "clip factor"},
	}
	for _, c := range cases {
		_, _, err := GPTQ(c.w, out, in, c.h, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if _, _, err := GPTQ(w, 0, in, h, GPTQOptions{}); err == nil {
		t.Error("zero rows accepted")
	}
}

// TestGPTQQuantizeIsQuantizeValue holds the kernel's restated rounding to QuantizeValue, on
// random values, exact ties, the clamp boundaries and huge ratios.
func TestGPTQQuantizeIsQuantizeValue(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	check := func(w, s float32) {
		if got, want := gptqQuantize(w, s), QuantizeValue(w, s); got != want {
			t.Fatalf("gptqQuantize(%g, %g) = %d, QuantizeValue %d", w, s, got, want)
		}
	}
	for _, s := range []float32{1, 0.5, 1e-3, 3e-7, 1e-30, 7} {
		for k := -9; k <= 9; k++ {
			for _, f := range []float32{0, 0.5, 0.49999997, 0.50000006, -0.5} {
				x := float32(k) + f
				check(x*s, s)
				check(math.Nextafter32(x*s, 0), s)
				check(math.Nextafter32(x*s, float32(math.Inf(1))), s)
			}
		}
		check(float32(math.Copysign(0, -1)), s)
		check(math.MaxFloat32, s)
		check(-math.MaxFloat32, s)
	}
	for range 200000 {
		s := float32(math.Exp(r.Float64()*20 - 15))
		check(float32(r.NormFloat64()*10)*s, s)
	}
}

// TestGPTQDeltaHDelta checks GPTQStats.DeltaHDelta, which GPTQ derives from its own error
// terms (the OBS identity), against the output error computed from the calibration inputs
// themselves: 2/n·‖X·(W − Q)ᵀ‖². With dead columns, the weights there are nonzero but their
// inputs are zero, so they must not count.
func TestGPTQDeltaHDelta(t *testing.T) {
	const n, out, in = 512, 24, 256
	x, _, w := gptqProblem(n, out, in, 11)
	for s := 0; s < n; s++ {
		x[s*in+3], x[s*in+200] = 0, 0
	}
	h := gptqTestHessian(x, n, in)
	for _, opt := range []GPTQOptions{
		{GroupSize: 64},
		{GroupSize: 64, ActOrder: true},
		{GroupSize: 128, ClipSearch: true},
		{PercDamp: 0.1},
	} {
		qw, st, err := GPTQ(w, out, in, h, opt)
		if err != nil {
			t.Fatal(err)
		}
		if st.DeadColumns != 2 {
			t.Fatalf("%+v: %d dead columns, want 2", opt, st.DeadColumns)
		}
		want := 2 / float64(n) * gptqOutputErr(x, n, in, w, qw.Dequantize(), out)
		if math.Abs(st.DeltaHDelta-want) > 1e-3*want {
			t.Errorf("%+v: DeltaHDelta %g, 2/n·‖XΔᵀ‖² = %g", opt, st.DeltaHDelta, want)
		}
	}
}

// TestPrepareHessianPacked: the packed upper triangle gives a factorization bit-identical to
// the full matrix's, with and without act-order, in float32 and float64, with a dead input;
// and the same error, naming the same entry, for a non-finite one below the diagonal.
func TestPrepareHessianPacked(t *testing.T) {
	const n, in = 256, 200
	x := gptqTestInputs(n, in, 5)
	h := gptqTestHessian(x, n, in)
	for j := range in { // input 7 dead: a zero row and column
		h[7*in+j], h[j*in+7] = 0, 0
	}
	pack := func(h []float64) []float64 {
		tri := make([]float64, 0, in*(in+1)/2)
		for i := range in {
			tri = append(tri, h[i*in+i:(i+1)*in]...)
		}
		return tri
	}
	tri := pack(h)
	for _, act := range []bool{false, true} {
		for _, f64 := range []bool{false, true} {
			opt := GPTQOptions{ActOrder: act, Float64Hessian: f64}
			want, err := PrepareHessian(h, in, opt)
			if err != nil {
				t.Fatal(err)
			}
			got, err := PrepareHessianPacked(tri, in, opt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.hinv, want.hinv) || !slices.Equal(got.perm, want.perm) || !slices.Equal(got.dead, want.dead) ||
				got.DampUsed != want.DampUsed || got.DeadColumns != want.DeadColumns || got.DeadColumns != 1 {
				t.Errorf("act-order %v, float64 %v: the packed Hessian's factorization differs", act, f64)
			}
		}
	}
	bad := slices.Clone(h)
	bad[9*in+4], bad[4*in+9] = math.NaN(), math.NaN()
	_, errFull := PrepareHessian(bad, in, GPTQOptions{})
	_, errTri := PrepareHessianPacked(pack(bad), in, GPTQOptions{})
	if errFull == nil || errTri == nil || errFull.Error() != errTri.Error() {
		t.Errorf("non-finite entry: full %v, packed %v", errFull, errTri)
	}
	if _, err := PrepareHessianPacked(tri[1:], in, GPTQOptions{}); err == nil {
		t.Error("a packed Hessian of the wrong length was accepted")
	}
}
