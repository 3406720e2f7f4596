package quant

import (
	"fmt"
	"math"
)

// Logarithmic activation equalization (LAE, FPTQ §3.2) divides input channel j of a linear
// by s_j = m_j / log2(2 + m_j), where m_j is a calibration statistic of the channel (its
// max |x|, or its max − min range as llm-compressor uses: the caller chooses). After the
// division the channel's statistic is m_j/s_j = log2(2 + m_j): outliers of thousands shrink
// to about 10 while small channels are lifted towards 1, so one per-tensor int8 scale fits.
// The transform is exact in real arithmetic: X/s is folded into the producer of X (the
// RMSNorm weight, or the rows of v_proj or up_proj), W·s into the columns of the consumer.

// LAEScale returns s = m / log2(2 + m) for a statistic m ≥ 0, computed in float64 and
// rounded once to float32. m = 0 gives 1, not the formula's 0: a channel that never
// activates would otherwise be divided by zero in the producer and zeroed in the consumer
// (0/log2(2) = 0), and 1 leaves it alone, which is exact for an all-zero channel. It panics
// on a negative or non-finite m (validate calibration statistics with CheckStat).
//
// For 0 < m < 2 the scale is below 1 (the channel is enlarged), and it tends to m as m → 0,
// so 1/s grows without bound: a producer stored in fp16 after folding must be range-checked
// by its writer.
func LAEScale(m float32) float32 {
	if !(m >= 0 && m <= math.MaxFloat32) {
		panic(fmt.Sprintf("quant: LAEScale: statistic %v is not finite and non-negative", m))
	}
	if m == 0 {
		return 1
	}
	f := float64(m)
	return float32(f / math.Log2(2+f))
}

// LAEScales returns LAEScale of every statistic.
func LAEScales(stat []float32) []float32 {
	s := make([]float32, len(stat))
	for j, m := range stat {
		s[j] = LAEScale(m)
	}
	return s
}

// CheckStat returns an error naming the first statistic that is negative or not finite.
func CheckStat(stat []float32) error {
	for j, m := range stat {
		if !(m >= 0 && m <= math.MaxFloat32) {
			return fmt.Errorf("quant: channel statistic [%d] = %v is not finite and non-negative", j, m)
		}
	}
	return nil
}

// FoldIntoProducerRows divides row o of the producer w [out×in] by s[o] (len(s) == out):
// the producer's output channel o is the consumer's input channel o, so this realises X/s.
// An RMSNorm weight or a bias is a producer with in = 1. Division, not multiplication by
// 1/s, so that the folded value is the correctly rounded w/s.
func FoldIntoProducerRows(w []float32, out, in int, s []float32) {
	checkFold("FoldIntoProducerRows", len(w), out, in, len(s), out)
	for o := 0; o < out; o++ {
		so := s[o]
		row := w[o*in : (o+1)*in]
		for k := range row {
			row[k] /= so
		}
	}
}

// FoldIntoConsumerColumns multiplies column j of the consumer w [out×in] by s[j]
// (len(s) == in), realising W·diag(s), so that (X/s)·(W·s)ᵀ = X·Wᵀ.
func FoldIntoConsumerColumns(w []float32, out, in int, s []float32) {
	checkFold("FoldIntoConsumerColumns", len(w), out, in, len(s), in)
	for o := 0; o < out; o++ {
		row := w[o*in : (o+1)*in]
		for k := range row {
			row[k] *= s[k]
		}
	}
}

func checkFold(name string, n, out, in, ns, want int) {
	if out < 0 || in < 0 || n != out*in || ns != want {
		panic(fmt.Sprintf("quant: %s: weight has %d elements for %d×%d and %d scales, want %d", name, n, out, in, ns, want))
	}
}

// GQAMaxOverGroup returns, for each v_proj output channel (kv head h_kv, dim d), the maximum
// of stat over the o_proj input channels it feeds: h·headDim + d for every query head h with
// h / (numHeads/numKVHeads) == h_kv. stat has numHeads·headDim entries; the result
// numKVHeads·headDim.
//
// With grouped-query attention one v channel feeds numHeads/numKVHeads query heads' slices
// of the attention output (each a convex combination of that v channel over positions), so
// dividing it by s divides all of them, and its scale must cover the largest. For the max |x|
// statistic this maximum is exactly the statistic of the union of those channels. For the
// range statistic it is a lower bound of the union's range (max of maxes − min of mins): pass
// that union range per o_proj channel if it matters.
func GQAMaxOverGroup(stat []float32, numHeads, numKVHeads, headDim int) []float32 {
	checkGQA(len(stat), numHeads, numKVHeads, headDim)
	per := numHeads / numKVHeads
	m := make([]float32, numKVHeads*headDim)
	for h := 0; h < numHeads; h++ {
		kv := h / per
		for d := 0; d < headDim; d++ {
			m[kv*headDim+d] = max(m[kv*headDim+d], stat[h*headDim+d])
		}
	}
	return m
}

// VOScales returns the LAE scales of the v_proj → o_proj pair under grouped-query attention:
// vScale [numKVHeads·headDim] divides the v_proj rows (and bias), and oScale
// [numHeads·headDim] multiplies the o_proj columns, with oScale[h·headDim+d] =
// vScale[(h/(numHeads/numKVHeads))·headDim + d], so that each o_proj input channel is
// multiplied by exactly the factor its v channel was divided by. oInputStat is the
// calibration statistic of the o_proj input channels (see GQAMaxOverGroup). Attention is
// linear in V for fixed softmax weights, which is why the fold is exact.
func VOScales(oInputStat []float32, numHeads, numKVHeads, headDim int) (vScale, oScale []float32) {
	vScale = LAEScales(GQAMaxOverGroup(oInputStat, numHeads, numKVHeads, headDim))
	oScale = make([]float32, numHeads*headDim)
	per := numHeads / numKVHeads
	for h := 0; h < numHeads; h++ {
		copy(oScale[h*headDim:(h+1)*headDim], vScale[(h/per)*headDim:(h/per+1)*headDim])
	}
	return vScale, oScale
}

func checkGQA(n, numHeads, numKVHeads, headDim int) {
	if numHeads <= 0 || numKVHeads <= 0 || headDim <= 0 || numHeads%numKVHeads != 0 || n != numHeads*headDim {
		panic(fmt.Sprintf("quant: GQA mapping: %d statistics for %d heads, %d KV heads, head dim %d", n, numHeads, numKVHeads, headDim))
	}
}
