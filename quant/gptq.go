package quant

// GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization
// for Generative Pre-trained Transformers") quantizes a linear layer's weight W [out×in] so
// that the layer's output on calibration inputs X changes as little as possible: it minimises
// ‖XWᵀ − XQᵀ‖² one input column at a time, and after fixing column i it moves the columns not
// yet quantized to compensate (the Optimal Brain Surgeon update), using H = 2/n·XᵀX.
//
// The names follow the paper and its reference implementation (gptq.py, fasterquant):
//
//	H         Hessian [in×in], damped: H + λI with λ = percdamp·mean(diag H)
//	Hinv      upper Cholesky factor of H⁻¹ (H⁻¹ = Hinvᵀ·Hinv); row i holds the OBS update
//	W         working weights, updated as columns are quantized
//	Q         the quantized (dequantized) column, Err1 = (W − Q)/d with d = Hinv[i,i]
//	Losses    (W − Q)²/d²/2, the OBS increase of ½·e·H·eᵀ per quantized weight
//
// and the loop is the reference's: blocks of blocksize columns; inside a block column by
// column (quantize, Err1, W[:, i:block_end] −= Err1[:, i]·Hinv[i, i:block_end]); after the
// block the lazy batch update W[:, block_end:] −= Err1·Hinv[block, block_end:], which is
// where almost all the flops are and is one gemm.Sgemm call. Inside a block the same lazy
// trick is applied once more (sub-blocks of 32 columns, their Err1 applied to the rest of
// the block by Sgemm), and the column-by-column part runs 8 rows side by side: it is a
// chain of dependent scalar operations per row, and the rows are independent.
//
// # Where this differs from the reference, and why
//
//   - Hinv is computed without forming H⁻¹. If H = R·Rᵀ with R upper triangular, then
//     H⁻¹ = (R⁻¹)ᵀ·R⁻¹ and R⁻¹ is upper triangular with a positive diagonal, so by uniqueness
//     R⁻¹ is exactly the factor the reference gets from cholesky → cholesky_inverse →
//     cholesky(upper). R is the ordinary lower Cholesky factor of H in reversed order
//     (J·H·J = L·Lᵀ gives R = J·L·J, J the reversal), and in row-major storage J·M·J is the
//     reversal of the flat array. So: reverse, Cholesky, triangular inverse, reverse: n³/3 +
//     n³/3 flops against the reference's 4n³/3, and without a second factorization of an
//     explicit inverse (whose condition number is that of H, paid twice).
//   - The factorization runs in float32 on gemm.Sgemm (left-looking blocked Cholesky and a
//     blocked triangular inverse; the 256×256 diagonal blocks are factorized and inverted in
//     float64). The reference does all of it in float32; float64 through gonum's LAPACK is
//     available as GPTQOptions.Float64Hessian, but it is over 20× slower on two cores (14 s
//     against 0.65 s for a 4096-wide Hessian; about 4.6 minutes for an 11008-wide one,
//     against 7 s: gptq_bench_test.go), and on well-damped Hessians the float32 Hinv agrees
//     with the float64 one to about 1e-5 relative (TestGPTQHinv), far below what changes a
//     code. The working weights
//     W and the lazy batch updates are float32, as in the reference.
//   - A group's scale (without StaticGroups) is computed when the loop reaches the group's
//     first column, from the group's weights with every earlier column's update applied.
//     The reference takes them from W, which inside a block lags by the block's own updates,
//     so for groups that start inside a block (group size < blocksize) it sees weights
//     that are not yet fully updated; with group size 128 = blocksize (the usual setting)
//     the two are the same. To make the scales independent of the blocking, a block is ended
//     early at a group start when that group would otherwise straddle the block's end.
//   - Act-order with groups: a column's group is by its original index, so that groups stay
//     contiguous in memory for the kernel (no g_idx). A group's columns are then visited out
//     of order, so its scale cannot wait for its first column: group scales are computed up
//     front from the original weights, as the reference's static_groups does (reported as
//     GPTQStats.StaticGroups). The permutation sorts diag(H) descending, stably (ties keep
//     the original order, so results are deterministic).
//   - λ uses mean(|diag H|), which equals mean(diag H) for every valid (positive
//     semidefinite) Hessian but stays positive for an indefinite one, so that retries with
//     more damping can still rescue it. A factorization that fails (a pivot ≤ 0 or not finite)
//     is retried with percdamp ×10, up to MaxDampRetries times; the damping used is reported.

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/lapack/gonum"
)

const (
	// DefaultGPTQBlockSize is the reference's blocksize: wide enough that the lazy batch
	// update is an efficient GEMM, narrow enough that the column-by-column work inside a
	// block (out·in·blocksize/2 multiply-adds in all) stays small.
	DefaultGPTQBlockSize = 128
	// DefaultPercDamp is the reference's percdamp.
	DefaultPercDamp = 0.01
	// DefaultMaxDampRetries allows percdamp to grow to 100× its initial value (0.01 → 100):
	// beyond that H + λI is λI in all but name and GPTQ has become RTN.
	DefaultMaxDampRetries = 4
)

// GPTQOptions configures GPTQ. The zero value is the reference's defaults with one group per
// output channel.
type GPTQOptions struct {
	// GroupSize is the number of consecutive input channels that share a scale; it must
	// divide in (see EffectiveGroupSize). 0 or negative means per-channel (GroupSize = in).
	GroupSize int
	// BlockSize is the number of columns quantized between two lazy batch updates;
	// 0 means DefaultGPTQBlockSize.
	BlockSize int
	// PercDamp is the damping added to the diagonal of H, as a fraction of its mean; it must
	// be positive. 0 means DefaultPercDamp.
	PercDamp float64
	// MaxDampRetries bounds how often a failed factorization is retried with PercDamp ×10.
	// 0 means DefaultMaxDampRetries; negative means no retry.
	MaxDampRetries int
	// ActOrder quantizes columns in order of descending diag(H) (the reference's actorder
	// and the "desc_act" of GPTQ checkpoints): the columns with the largest input energy are
	// quantized first, while there are still many columns left to absorb their error.
	ActOrder bool
	// StaticGroups computes every group's scale up front from the original weights (the
	// reference's static_groups). It is implied by ActOrder with GroupSize < in.
	StaticGroups bool
	// ClipSearch shrinks each group's scale when it is computed, by the factor of ClipGrid
	// whose quantized group has the least squared error against the group's weights (the
	// same criterion as RTN's clipping search, applied to the weights GPTQ has updated).
	ClipSearch bool
	// ClipGrid lists the shrink factors, each in [MinClip, 1]; nil means DefaultClipGrid().
	// The factor 1 is always tried first and ties keep the earlier factor.
	ClipGrid []float32
	// Float64Hessian factorizes H in float64 with gonum's LAPACK (Dpotrf, Dtrtri) instead of
	// the float32 Sgemm-based routine: more accurate for ill-conditioned Hessians, much slower.
	Float64Hessian bool
	// Workers bounds the goroutines that share the rows in the column-by-column part;
	// 0 means GOMAXPROCS. (gemm.Sgemm chooses its own.) The result does not depend on it.
	Workers int
}

// GPTQStats reports what a GPTQ run did.
type GPTQStats struct {
	// Loss is the sum of the reference's Losses, Σ (w − q)²/d²/2 over all weights: the OBS
	// estimate of ½·Σ_rows (W − Q)·H·(W − Q)ᵀ with H the damped Hessian, which for
	// H = 2/n·XᵀX is ‖XWᵀ − XQᵀ‖²/n plus λ/2·‖W − Q‖².
	Loss float64
	// PercDampUsed is the percdamp of the factorization that succeeded, DampUsed the λ it
	// added to the diagonal, and Retries how many factorizations failed before it.
	PercDampUsed float64
	DampUsed     float64
	Retries      int
	// DeadColumns counts the input channels with H[i,i] == 0 (never active in calibration):
	// their weights were set to zero.
	DeadColumns int
	// StaticGroups reports whether group scales were computed up front.
	StaticGroups bool
	// DeltaHDelta is tr(Δ·H·Δᵀ) with Δ = W − Q (Q dequantized with the float group scales)
	// and H the undamped Hessian: for H = 2/n·XᵀX, 2/n·‖XWᵀ − XQᵀ‖², the numerator of the
	// layer's relative output error. It comes from the OBS identity rather than a product
	// with H: GPTQ's updates make W − Q = Err1·Hinv, and Hinv·(H + λI)·Hinvᵀ = I, so
	// tr(Δ(H + λI)Δᵀ) = ‖Err1‖² = 2·Loss, and tr(ΔHΔᵀ) = 2·Loss − λ·‖Δ‖² over the live
	// columns (a dead column's H row is zero). Two out×in×in products would cost twice
	// GPTQ itself; this costs one pass over W. It is exact up to the float32 rounding of the
	// factor (TestGPTQDeltaHDelta checks it against the product).
	DeltaHDelta float64
	// Seconds is the wall time of the call. For GPTQ it includes the Hessian's preparation;
	// for GPTQWithHessian it does not, and HessianSeconds is what the shared preparation took.
	Seconds        float64
	HessianSeconds float64
}

// GPTQHessian is a damped, factorized Hessian: what GPTQ needs of H, prepared once and shared
// by every linear layer that reads the same input (q, k and v; gate and up). It is immutable
// and safe for concurrent use by GPTQWithHessian.
type GPTQHessian struct {
	In           int
	ActOrder     bool
	PercDampUsed float64
	DampUsed     float64
	Retries      int
	DeadColumns  int
	Seconds      float64

	// perm[i] is the original column quantized i-th (nil: the identity).
	perm []int
	// dead[k] is true for a dead original column k (nil when there is none).
	dead []bool
	// hinv is Hinv [In×In] row-major in processing order: the upper Cholesky factor of
	// (P·H·Pᵀ + λI)⁻¹, zero below the diagonal.
	hinv []float32
}

// ErrHessianNotPD is wrapped by the error PrepareHessian returns when no damping it was
// allowed to try made the Hessian positive definite.
var ErrHessianNotPD = errors.New("Hessian is not positive definite")

// GPTQ quantizes w [out×in] (row-major, Hugging Face layout) to symmetric int4 with GPTQ,
// against the Hessian h [in×in] (H = 2/n·XᵀX of the layer's calibration inputs, as
// calib.Stats.Hessian returns it; it must be symmetric). It is PrepareHessian followed by
// GPTQWithHessian; neither w nor h is modified.
func GPTQ(w []float32, out, in int, h []float64, opt GPTQOptions) (*QuantizedWeight, GPTQStats, error) {
	start := time.Now()
	if err := checkGPTQWeight(w, out, in); err != nil {
		return nil, GPTQStats{}, err
	}
	hh, err := PrepareHessian(h, in, opt)
	if err != nil {
		return nil, GPTQStats{}, err
	}
	qw, st, err := GPTQWithHessian(w, out, in, hh, opt)
	st.Seconds = time.Since(start).Seconds()
	return qw, st, err
}

// PrepareHessian validates h [in×in], damps it and factorizes it for GPTQWithHessian. Of opt
// it uses PercDamp, MaxDampRetries, ActOrder and Float64Hessian. A Hessian that is not
// positive definite after damping is retried with more damping (see GPTQOptions); the
// returned GPTQHessian says what it took. The error names the first non-finite entry of h,
// or wraps ErrHessianNotPD when every retry failed.
func PrepareHessian(h []float64, in int, opt GPTQOptions) (*GPTQHessian, error) {
	if in > 0 && len(h) != in*in {
		return nil, fmt.Errorf("quant: GPTQ: Hessian has %d elements, want %d×%d", len(h), in, in)
	}
	return prepareHessian(hessianSource{n: in, full: h}, opt)
}

// PrepareHessianPacked is PrepareHessian for a Hessian given by its upper triangle, packed
// row by row (row i holds H[i][i..in-1], in·(in+1)/2 values; calib.Stats accumulates XᵀX so).
// The result is bit-identical to PrepareHessian's on the full symmetric matrix, which is
// never built: for a LLaMA-7B down_proj that is 970 MB not allocated while GPTQ's factor
// is (issue 10). It does not modify tri.
func PrepareHessianPacked(tri []float64, in int, opt GPTQOptions) (*GPTQHessian, error) {
	if in > 0 && len(tri) != in*(in+1)/2 {
		return nil, fmt.Errorf("quant: GPTQ: packed Hessian has %d elements, want %d·%d/2", len(tri), in, in+1)
	}
	return prepareHessian(hessianSource{n: in, tri: tri}, opt)
}

// hessianSource is a symmetric n×n Hessian, either full (row-major) or as its packed upper
// triangle.
type hessianSource struct {
	n    int
	full []float64
	tri  []float64
}

// at returns H[i][j].
func (h hessianSource) at(i, j int) float64 {
	if h.tri == nil {
		return h.full[i*h.n+j]
	}
	if j < i {
		i, j = j, i
	}
	return h.tri[i*h.n-i*(i-1)/2+j-i]
}

func prepareHessian(h hessianSource, opt GPTQOptions) (*GPTQHessian, error) {
	start := time.Now()
	in := h.n
	if in <= 0 {
		return nil, fmt.Errorf("quant: GPTQ: bad width %d", in)
	}
	percdamp, retries, err := opt.damping()
	if err != nil {
		return nil, err
	}
	// Non-finite entries are rejected rather than damped away: they mean the calibration
	// pass overflowed or read garbage, and any factor computed from them is meaningless.
	// Row-major over the whole matrix either way, so that the first entry named is the same.
	err = parallel.Blocks(in, 256, opt.Workers, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			for j := range in {
				if v := h.at(i, j); math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("quant: GPTQ: Hessian [%d, %d] is %v", i, j, v)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	hh := &GPTQHessian{In: in, ActOrder: opt.ActOrder}
	// Dead inputs (never active) have a zero row and column in H; the reference sets their
	// diagonal to 1 so that H stays invertible, and zeroes their weights (GPTQWithHessian).
	diag := make([]float64, in)
	var sumAbs float64
	for i := range diag {
		d := h.at(i, i)
		if d == 0 {
			if hh.dead == nil {
				hh.dead = make([]bool, in)
			}
			hh.dead[i] = true
			hh.DeadColumns++
			d = 1
		}
		diag[i] = d
		sumAbs += math.Abs(d)
	}
	mean := sumAbs / float64(in)
	if opt.ActOrder {
		hh.perm = make([]int, in)
		for i := range hh.perm {
			hh.perm[i] = i
		}
		slices.SortStableFunc(hh.perm, func(a, b int) int { return cmp.Compare(diag[b], diag[a]) })
	}

	for try := 0; ; try++ {
		lambda := percdamp * mean
		var ok bool
		if opt.Float64Hessian {
			hh.hinv, ok = hinvFloat64(h, in, hh.perm, diag, lambda, opt.Workers)
		} else {
			if hh.hinv == nil {
				hh.hinv = make([]float32, in*in)
			}
			ok = hinvFloat32(h, in, hh.perm, diag, lambda, hh.hinv, opt.Workers)
		}
		if ok {
			hh.PercDampUsed, hh.DampUsed, hh.Retries = percdamp, lambda, try
			break
		}
		if try >= retries {
			return nil, fmt.Errorf("quant: GPTQ: %w with percdamp %g (%d retries)", ErrHessianNotPD, percdamp, try)
		}
		percdamp *= 10
	}
	hh.Seconds = time.Since(start).Seconds()
	return hh, nil
}

// GPTQWithHessian quantizes w [out×in] with GPTQ against a prepared Hessian, which it does
// not modify: one PrepareHessian serves every layer with the same input. Of opt it uses
// GroupSize, BlockSize, StaticGroups, ClipSearch, ClipGrid and Workers; opt.ActOrder must
// match the one hh was prepared with, because the permutation is part of the factorization.
// It panics if hh is nil.
func GPTQWithHessian(w []float32, out, in int, hh *GPTQHessian, opt GPTQOptions) (*QuantizedWeight, GPTQStats, error) {
	start := time.Now()
	if hh == nil {
		panic("quant: GPTQWithHessian: nil Hessian")
	}
	if err := checkGPTQWeight(w, out, in); err != nil {
		return nil, GPTQStats{}, err
	}
	if hh.In != in {
		return nil, GPTQStats{}, fmt.Errorf("quant: GPTQ: Hessian is %d wide, weight has %d input channels", hh.In, in)
	}
	if opt.ActOrder != hh.ActOrder {
		return nil, GPTQStats{}, fmt.Errorf("quant: GPTQ: ActOrder is %v but the Hessian was prepared with %v", opt.ActOrder, hh.ActOrder)
	}
	gs, bs, grid, err := opt.quantParams(in)
	if err != nil {
		return nil, GPTQStats{}, err
	}

	g := &gptqRun{
		out: out, in: in, gs: gs, ng: in / gs,
		perm: hh.perm, hinv: hh.hinv, grid: grid,
		static: opt.StaticGroups || (hh.perm != nil && gs < in),
		qw: &QuantizedWeight{
			Out: out, In: in, GroupSize: gs,
			Q:      NewCodes(out * in),
			Scales: make([]float32, out*(in/gs)),
		},
		W:    make([]float32, out*in),
		loss: make([]float64, out),
	}
	// W in processing order, dead columns zeroed; static scales from these weights.
	err = parallel.Blocks(out, 64, opt.Workers, func(r0, r1 int) error {
		return g.load(w, hh.dead, r0, r1)
	})
	if err != nil {
		return nil, GPTQStats{}, err
	}
	g.udiag = make([]float32, in)
	for i := range g.udiag {
		g.udiag[i] = g.hinv[i*in+i]
	}
	g.err1 = make([]float32, out*bs)

	for i1 := 0; i1 < in; {
		i2 := g.cut(i1, min(i1+bs, in))
		bw := i2 - i1
		// Inside the block, sub-blocks of gptqSubBlock columns: the column-by-column update
		// reaches only the end of the sub-block, and the sub-block's Err1 is applied to the
		// rest of the block by one Sgemm. Same updates as the reference's (which runs them all
		// column by column), a quarter of the scalar work.
		for s1 := i1; s1 < i2; {
			s2 := g.cut(s1, min(s1+gptqSubBlock, i2))
			_ = parallel.Blocks(out, 16, opt.Workers, func(r0, r1 int) error {
				g.rows(r0, r1, i1, s1, s2, bw)
				return nil
			})
			if s2 < i2 {
				// W[:, s2:i2] −= Err1[:, s1:s2] · Hinv[s1:s2, s2:i2]
				gemm.Sgemm(false, false, out, i2-s2, s2-s1, -1, g.err1[s1-i1:], bw, g.hinv[s1*in+s2:], in, 1, g.W[s2:], in)
			}
			s1 = s2
		}
		if i2 < in {
			// The lazy batch update: W[:, i2:] −= Err1 · Hinv[i1:i2, i2:].
			gemm.Sgemm(false, false, out, in-i2, bw, -1, g.err1, bw, g.hinv[i1*in+i2:], in, 1, g.W[i2:], in)
		}
		i1 = i2
	}

	st := GPTQStats{
		PercDampUsed: hh.PercDampUsed, DampUsed: hh.DampUsed, Retries: hh.Retries,
		DeadColumns: hh.DeadColumns, StaticGroups: g.static, HessianSeconds: hh.Seconds,
	}
	for _, l := range g.loss { // in row order, so the sum does not depend on scheduling
		st.Loss += l
	}
	st.Loss /= 2
	if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
		// Only a factor with enormous entries (a Hessian barely positive definite after
		// damping) can make the propagated weights overflow.
		return nil, GPTQStats{}, fmt.Errorf("quant: GPTQ: the error propagation overflowed (loss %v); use more damping", st.Loss)
	}
	st.DeltaHDelta = max(0, 2*st.Loss-float64(hh.DampUsed*g.liveSqErr(w, hh.dead, opt.Workers)))
	st.Seconds = time.Since(start).Seconds()
	return g.qw, st, nil
}

// gptqRun is the state of one GPTQWithHessian call.
type gptqRun struct {
	out, in, gs, ng int
	perm            []int
	hinv            []float32
	udiag           []float32 // Hinv[i,i]
	grid            []float32
	static          bool
	qw              *QuantizedWeight
	W               []float32 // working weights [out×in], processing order
	err1            []float32 // Err1 of the current block, [out×(i2−i1)]
	loss            []float64 // per row, unhalved
}

// liveSqErr returns Σ (w − q̂)² over the live (not dead) columns, q̂ = scale·code, summed per
// row and then in row order, so that it does not depend on the scheduling.
func (g *gptqRun) liveSqErr(w []float32, dead []bool, workers int) float64 {
	rows := make([]float64, g.out)
	_ = parallel.Blocks(g.out, 64, workers, func(r0, r1 int) error {
		for r := r0; r < r1; r++ {
			var s float64
			q, sc := g.qw.Q[r*g.in:(r+1)*g.in], g.qw.Scales[r*g.ng:(r+1)*g.ng]
			for k, v := range w[r*g.in : (r+1)*g.in] {
				if dead != nil && dead[k] {
					continue
				}
				d := float64(v) - float64(sc[k/g.gs]*float32(q[k]))
				s += float64(d * d)
			}
			rows[r] = s
		}
		return nil
	})
	var t float64
	for _, s := range rows {
		t += s
	}
	return t
}

func (g *gptqRun) orig(i int) int {
	if g.perm == nil {
		return i
	}
	return g.perm[i]
}

// load copies rows [r0, r1) of w into g.W in processing order with dead columns zeroed, and
// computes the static group scales from them.
func (g *gptqRun) load(w []float32, dead []bool, r0, r1 int) error {
	in := g.in
	var buf []float32
	if g.static {
		buf = make([]float32, g.gs)
	}
	for r := r0; r < r1; r++ {
		src := w[r*in : (r+1)*in]
		dst := g.W[r*in : (r+1)*in]
		// NaN and ±Inf are the float32s whose magnitude bits are ≥ those of +Inf.
		for k, v := range src {
			if math.Float32bits(v)&0x7fffffff >= 0x7f800000 {
				return fmt.Errorf("quant: GPTQ: weight [%d, %d] is %v", r, k, v)
			}
		}
		if g.perm == nil {
			copy(dst, src)
		} else {
			for i, k := range g.perm {
				dst[i] = src[k]
			}
		}
		if dead != nil {
			for i := range dst {
				if dead[g.orig(i)] {
					dst[i] = 0
				}
			}
		}
		if !g.static {
			continue
		}
		for gi := 0; gi < g.ng; gi++ {
			copy(buf, src[gi*g.gs:])
			if dead != nil {
				for k := range buf {
					if dead[gi*g.gs+k] {
						buf[k] = 0
					}
				}
			}
			g.qw.Scales[r*g.ng+gi] = gptqGroupScale(buf, g.grid)
		}
	}
	return nil
}

// gptqSubBlock is the width of the column-by-column part inside a block. The scalar update
// costs out·in·gptqSubBlock/2 multiply-adds in all; narrower sub-blocks move more of it into
// Sgemm calls too thin to run fast (k = gptqSubBlock).
const gptqSubBlock = 32

// cut returns the end of a block that starts at a and would end at b: b, or, with dynamic
// group scales, the start of a group that would straddle b, so that when the group's scale
// is computed from its weights all of them have every earlier column's update applied.
func (g *gptqRun) cut(a, b int) int {
	if g.static {
		return b
	}
	if s := (b - 1) / g.gs * g.gs; s > a && s+g.gs > b {
		return s
	}
	return b
}

// gptqRowsN is how many rows the column-by-column kernel interleaves. Within a row each
// column waits for the previous one (quantize, divide, update the next weight: a chain of
// ~100 cycles of latency per weight); rows are independent, so running a few side by side
// lets the core overlap their chains. The update loop takes them four at a time.
const gptqRowsN = 8

// rows runs columns [s1, s2) of the block [i1, i1+bw) for rows [r0, r1): quantize, Err1 and
// the update of the sub-block's remaining columns, which touches only the row itself. Rows
// are independent (H is shared by all rows), which is why they can be shared among
// goroutines and interleaved.
func (g *gptqRun) rows(r0, r1, i1, s1, s2, bw int) {
	for r := r0; r < r1; r += gptqRowsN {
		g.rowGroup(r, min(gptqRowsN, r1-r), i1, s1, s2, bw)
	}
}

func (g *gptqRun) rowGroup(r0, nr, i1, s1, s2, bw int) {
	in, gs, ng := g.in, g.gs, g.ng
	var (
		wr     [gptqRowsN][]float32 // row of W
		e1     [gptqRowsN][]float32 // row of Err1
		scales [gptqRowsN][]float32
		q      [gptqRowsN][]int8
		e      [gptqRowsN]float32
		loss   [gptqRowsN]float64
	)
	for t := 0; t < nr; t++ {
		r := r0 + t
		wr[t] = g.W[r*in : (r+1)*in]
		e1[t] = g.err1[r*bw : (r+1)*bw]
		scales[t] = g.qw.Scales[r*ng : (r+1)*ng]
		q[t] = g.qw.Q[r*in : (r+1)*in]
	}
	for i := s1; i < s2; i++ {
		k := g.orig(i)
		gi := i / gs
		if g.static {
			gi = k / gs
		}
		d := g.udiag[i]
		for t := 0; t < nr; t++ {
			if !g.static && i%gs == 0 {
				scales[t][gi] = gptqGroupScale(wr[t][i:i+gs], g.grid)
			}
			s := scales[t][gi]
			wi := wr[t][i]
			c := gptqQuantize(wi, s)
			q[t][k] = c
			diff := wi - float32(s*float32(c))
			loss[t] += float64(diff) * float64(diff) / (float64(d) * float64(d))
			e[t] = diff / d
			e1[t][i-i1] = e[t]
		}
		// W[r, i+1:s2] −= Err1[r, i]·Hinv[i, i+1:s2]
		hrow := g.hinv[i*in+i+1 : i*in+s2]
		t := 0
		for ; t+4 <= nr; t += 4 {
			w0, w1, w2, w3 := wr[t][i+1:s2], wr[t+1][i+1:s2], wr[t+2][i+1:s2], wr[t+3][i+1:s2]
			w0, w1, w2, w3 = w0[:len(hrow)], w1[:len(hrow)], w2[:len(hrow)], w3[:len(hrow)]
			e0, e1, e2, e3 := e[t], e[t+1], e[t+2], e[t+3]
			// float32()/float64() around a product: the compiler may not fuse it into an FMA (arm64,
			// GOAMD64=v3), so every build rounds as amd64 v1 does (docs/determinism.md, Compiler fusion).
			for j, h := range hrow {
				w0[j] -= float32(e0 * h)
				w1[j] -= float32(e1 * h)
				w2[j] -= float32(e2 * h)
				w3[j] -= float32(e3 * h)
			}
		}
		for ; t < nr; t++ {
			rest := wr[t][i+1 : s2]
			rest = rest[:len(hrow)]
			et := e[t]
			for j, h := range hrow {
				rest[j] -= float32(et * h)
			}
		}
	}
	for t := 0; t < nr; t++ {
		g.loss[r0+t] += loss[t]
	}
}

// gptqQuantize is QuantizeValue(w, s), with the same result for every finite w and positive
// s, restated for speed: the division is the same float32 w/s, rounding half away from zero
// is done on the magnitude as int32(|x| + 0.5) (exact: |x| is a float32, so |x| + 0.5 is
// exact in float64), the magnitude is capped before the conversion so that it cannot
// overflow, and the sign is put back with two's-complement arithmetic. math.Round and its
// branches sat on the critical path of every weight.
func gptqQuantize(w, s float32) int8 {
	b := math.Float32bits(w / s)
	a := math.Float32frombits(b & 0x7fffffff)
	if a > Int4Max+1 {
		a = Int4Max + 1
	}
	t := min(int32(float64(a)+0.5), Int4Max)
	neg := int32(b) >> 31 // 0 or −1
	return int8((t ^ neg) - neg)
}

// gptqGroupScale returns the scale of a group: SymScale of its absolute maximum, shrunk by
// the grid factor (grid[0] = 1) whose quantized group has the least squared error. The
// maximum is taken on the float bits: for non-negative floats they order like the values.
func gptqGroupScale(wg []float32, grid []float32) float32 {
	var mb uint32
	for _, v := range wg {
		mb = max(mb, math.Float32bits(v)&0x7fffffff)
	}
	absmax := math.Float32frombits(mb)
	best := SymScale(absmax, grid[0])
	if len(grid) == 1 {
		return best
	}
	bestErr := math.Inf(1)
	for _, c := range grid {
		s := SymScale(absmax, c)
		var sse float64
		for _, v := range wg {
			d := float64(s*float32(gptqQuantize(v, s))) - float64(v)
			sse += float64(d * d)
		}
		if sse < bestErr {
			best, bestErr = s, sse
		}
	}
	return best
}

func checkGPTQWeight(w []float32, out, in int) error {
	if out <= 0 || in <= 0 {
		return fmt.Errorf("quant: GPTQ: bad shape %d×%d", out, in)
	}
	if len(w) != out*in {
		return fmt.Errorf("quant: GPTQ: weight has %d elements, want %d×%d", len(w), out, in)
	}
	return nil
}

// damping returns the initial percdamp and the number of retries.
func (o GPTQOptions) damping() (float64, int, error) {
	p := o.PercDamp
	if p == 0 {
		p = DefaultPercDamp
	}
	if !(p > 0) || math.IsInf(p, 0) {
		return 0, 0, fmt.Errorf("quant: GPTQ: percdamp %v must be positive", o.PercDamp)
	}
	r := o.MaxDampRetries
	if r == 0 {
		r = DefaultMaxDampRetries
	}
	return p, max(r, 0), nil
}

// quantParams returns the group size, the block size and the clip factors (1 first).
func (o GPTQOptions) quantParams(in int) (gs, bs int, grid []float32, err error) {
	gs = o.GroupSize
	if gs <= 0 {
		gs = in
	}
	if in%gs != 0 {
		return 0, 0, nil, fmt.Errorf("quant: GPTQ: group size %d does not divide %d input channels (see EffectiveGroupSize)", gs, in)
	}
	bs = o.BlockSize
	if bs == 0 {
		bs = DefaultGPTQBlockSize
	}
	if bs < 0 {
		return 0, 0, nil, fmt.Errorf("quant: GPTQ: block size %d", o.BlockSize)
	}
	bs = min(bs, in)
	grid = []float32{1}
	if o.ClipSearch {
		cg := o.ClipGrid
		if cg == nil {
			cg = DefaultClipGrid()
		}
		for _, c := range cg {
			if !(c >= MinClip && c <= 1) {
				return 0, 0, nil, fmt.Errorf("quant: GPTQ: clip factor %v outside [%v, 1]", c, MinClip)
			}
			if c != 1 {
				grid = append(grid, c)
			}
		}
	}
	return gs, bs, grid, nil
}

// reversedOrder returns k with k[r] = perm[n−1−r] (n−1−r without act-order): row and
// column r of A = J·(P·H·Pᵀ + λI)·J, the damped Hessian in processing order reversed (see the
// comment at the top of this file), are row and column k[r] of H.
func reversedOrder(n int, perm []int) []int {
	k := make([]int, n)
	for r := range k {
		k[r] = n - 1 - r
		if perm != nil {
			k[r] = perm[k[r]]
		}
	}
	return k
}

// hinvFloat32 computes Hinv in float32 into a [n×n]: builds the lower triangle of the
// reversed damped Hessian, factorizes it, inverts the factor and reverses the result. It
// reports false if the matrix is not (numerically) positive definite.
func hinvFloat32(h hessianSource, n int, perm []int, diag []float64, lambda float64, a []float32, workers int) bool {
	k := reversedOrder(n, perm)
	_ = parallel.Blocks(n, 64, workers, func(r0, r1 int) error {
		for r := r0; r < r1; r++ {
			dst := a[r*n : (r+1)*n]
			if h.tri == nil {
				src := h.full[k[r]*n : (k[r]+1)*n]
				for c, kc := range k[:r] {
					dst[c] = float32(src[kc])
				}
			} else {
				for c, kc := range k[:r] {
					dst[c] = float32(h.at(k[r], kc))
				}
			}
			dst[r] = float32(diag[k[r]] + lambda)
			clear(dst[r+1:])
		}
		return nil
	})
	invs, ok := cholLower32(a, n)
	if !ok {
		return false
	}
	trinvLower32(a, n, invs)
	slices.Reverse(a)
	return finiteFactor(a, n)
}

// hinvFloat64 is hinvFloat32 in float64 with gonum's LAPACK; it returns Hinv in float32.
func hinvFloat64(h hessianSource, n int, perm []int, diag []float64, lambda float64, workers int) ([]float32, bool) {
	a := make([]float64, n*n)
	k := reversedOrder(n, perm)
	_ = parallel.Blocks(n, 64, workers, func(r0, r1 int) error {
		for r := r0; r < r1; r++ {
			for c, kc := range k[:r] {
				a[r*n+c] = h.at(k[r], kc)
			}
			a[r*n+r] = diag[k[r]] + lambda
		}
		return nil
	})
	var impl gonum.Implementation
	if !impl.Dpotrf(blas.Lower, n, a, n) || !impl.Dtrtri(blas.Lower, blas.NonUnit, n, a, n) {
		return nil, false
	}
	slices.Reverse(a)
	u := make([]float32, n*n)
	for i, v := range a {
		u[i] = float32(v)
	}
	return u, finiteFactor(u, n)
}

// finiteFactor reports whether the upper factor u has a positive diagonal and no
// non-finite entry: a pivot that was positive but tiny can still overflow the inverse.
func finiteFactor(u []float32, n int) bool {
	for i := 0; i < n; i++ {
		if !(u[i*n+i] > 0) {
			return false
		}
		for _, v := range u[i*n+i : (i+1)*n] {
			if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) {
				return false
			}
		}
	}
	return true
}

// cholNB is the panel width of the blocked factorization and inverse: the diagonal blocks
// (cholNB² float64) are factorized and inverted in scalar float64, everything else is
// Sgemm with k ≥ cholNB.
const cholNB = 256

// cholLower32 overwrites the lower triangle of the symmetric a [n×n] (row-major; the strict
// upper triangle must be zero) with its Cholesky factor L, a = L·Lᵀ, and returns the inverses
// of L's diagonal blocks for trinvLower32. It is left-looking: panel j is first brought up
// to date by one Sgemm with every earlier panel (k = j0, large, so C is read and written
// once per panel), then its diagonal block is factorized in float64 and the rest of the
// panel solved by multiplying with the block's inverse (Sgemm again, instead of a scalar
// triangular solve). It reports false on a pivot that is not positive.
func cholLower32(a []float32, n int) ([][]float32, bool) {
	nb := cholNB
	d := make([]float64, nb*nb)
	inv := make([]float64, nb*nb)
	tmp := make([]float32, n*nb)
	invs := make([][]float32, 0, (n+nb-1)/nb)
	for j0 := 0; j0 < n; j0 += nb {
		j1 := min(j0+nb, n)
		jb := j1 - j0
		if j0 > 0 {
			// A[j0:, j0:j1] −= L[j0:, :j0]·L[j0:j1, :j0]ᵀ. Only the lower triangle of the
			// diagonal block is used; its upper part is cleared below.
			gemm.Sgemm(false, true, n-j0, jb, j0, -1, a[j0*n:], n, a[j0*n:], n, 1, a[j0*n+j0:], n)
		}
		for i := 0; i < jb; i++ {
			for k := 0; k <= i; k++ {
				d[i*jb+k] = float64(a[(j0+i)*n+j0+k])
			}
		}
		if !chol64(d, jb) {
			return nil, false
		}
		trinv64(d, inv, jb)
		x := make([]float32, jb*jb)
		for i := 0; i < jb; i++ {
			row := a[(j0+i)*n+j0 : (j0+i)*n+j1]
			for k := range row {
				if k <= i {
					row[k] = float32(d[i*jb+k])
					x[i*jb+k] = float32(inv[i*jb+k])
				} else {
					row[k] = 0
				}
			}
		}
		invs = append(invs, x)
		if j1 < n {
			// L[j1:, j0:j1] = A[j1:, j0:j1]·L11⁻ᵀ
			m := n - j1
			gemm.Sgemm(false, true, m, jb, jb, 1, a[j1*n+j0:], n, x, jb, 0, tmp, jb)
			for i := 0; i < m; i++ {
				copy(a[(j1+i)*n+j0:(j1+i)*n+j1], tmp[i*jb:(i+1)*jb])
			}
		}
	}
	return invs, true
}

// trinvLower32 overwrites the lower triangular L in a [n×n] with L⁻¹, given the inverses of
// its diagonal blocks. It is LAPACK's dtrtri (lower) blocked by cholNB, from the last block
// column to the first: with L = [L11 0; L21 L22] and X22 = L22⁻¹ already in place,
// X21 = −X22·L21·X11. The product X22·L21 is done in row chunks, each of which only needs
// X22's columns up to its last row (the rest is zero), which keeps the flops near n³/3.
func trinvLower32(a []float32, n int, invs [][]float32) {
	nb := cholNB
	const rc = 512
	tmp := make([]float32, n*nb)
	for b := len(invs) - 1; b >= 0; b-- {
		j0 := b * nb
		j1 := min(j0+nb, n)
		jb := j1 - j0
		x := invs[b]
		if j1 < n {
			for r0 := j1; r0 < n; r0 += rc {
				r1 := min(r0+rc, n)
				gemm.Sgemm(false, false, r1-r0, jb, r1-j1, 1, a[r0*n+j1:], n, a[j1*n+j0:], n, 0, tmp[(r0-j1)*jb:], jb)
			}
			gemm.Sgemm(false, false, n-j1, jb, jb, -1, tmp, jb, x, jb, 0, a[j1*n+j0:], n)
		}
		for i := 0; i < jb; i++ {
			copy(a[(j0+i)*n+j0:(j0+i)*n+j0+i+1], x[i*jb:i*jb+i+1])
		}
	}
}

// chol64 factorizes the symmetric positive definite a [n×n] (row-major, lower triangle read)
// in place into L, a = L·Lᵀ, unblocked. It reports false on a pivot that is not positive.
func chol64(a []float64, n int) bool {
	// float32()/float64() around a product: the compiler may not fuse it into an FMA (arm64,
	// GOAMD64=v3), so every build rounds as amd64 v1 does (docs/determinism.md, Compiler fusion).
	for j := 0; j < n; j++ {
		rj := a[j*n : j*n+j]
		s := a[j*n+j]
		for _, v := range rj {
			s -= float64(v * v)
		}
		if !(s > 0) || math.IsInf(s, 0) {
			return false
		}
		ljj := math.Sqrt(s)
		a[j*n+j] = ljj
		for i := j + 1; i < n; i++ {
			ri := a[i*n : i*n+j]
			t := a[i*n+j]
			for k, v := range ri {
				t -= float64(v * rj[k])
			}
			a[i*n+j] = t / ljj
		}
	}
	return true
}

// trinv64 writes the inverse of the lower triangular l [n×n] into x (lower, the strict upper
// triangle zeroed), by forward substitution column by column.
func trinv64(l, x []float64, n int) {
	clear(x[:n*n])
	for j := 0; j < n; j++ {
		x[j*n+j] = 1 / l[j*n+j]
		for i := j + 1; i < n; i++ {
			var s float64
			for k := j; k < i; k++ {
				s += float64(l[i*n+k] * x[k*n+j])
			}
			x[i*n+j] = -s / l[i*n+i]
		}
	}
}
