package quant

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// Flash Communication compresses the tensor-parallel all-reduce of the row-parallel linears
// (o_proj, down_proj) by quantizing what travels. Every rank holds a partial sum x_i [rows×H];
// the all-reduce returns Σ_i x_i to every rank in two steps, each carrying quantized groups:
//
//  1. every rank i quantizes its whole partial in groups of G consecutive values along H
//     (per token row) and cuts it into N chunks of C = H/N columns;
//  2. all-to-all (the reduce-scatter half): rank j receives chunk j from every rank;
//  3. rank j reduces the N chunks with the integer-scale reduce: for every group position, the
//     N ranks' float32 scales become integers m_i of at most 20 bits relative to the largest
//     scale's exponent E, the codes are summed exactly in integers (Σ_i q_i·m_i), converted to
//     float32 once and multiplied by 2^(E−146), and for asymmetric groups the float32 sum of
//     the minima (in rank order from +0.0) is added; then it requantizes the result with the
//     same codec (ReduceChunks; the reduce is explained at reduceGroup);
//  4. all-gather: every rank receives every rank's requantized chunk;
//  5. every rank dequantizes all N chunks into its output.
//
// Every rank decodes the same bytes in step 5, so every rank ends bit-identical by
// construction. The arithmetic is written out operation by operation so that the CUDA
// kernels (__fsub_rn, __fdiv_rn, rintf, __fmul_rn, __fadd_rn, __int2float_rn and integer
// multiply-adds, no fused float multiply-add, no flush to zero) reproduce it bit for bit;
// docs/flash-communication.md is the specification and derives the error bound that the
// tests check.

// FlashCommMaxAbs is the largest magnitude the codec accepts. Bounding the inputs keeps every
// intermediate (group ranges, the reduced sum of N chunks, the requantized sum)
// finite, so the codec has no overflow cases to specify; activations are many orders of
// magnitude below it (fp16 stops at 65504).
const FlashCommMaxAbs = 0x1p64

// ErrFlashCommInput is returned (wrapped, with the rank, row and column) for an input that is
// NaN, infinite or larger in magnitude than FlashCommMaxAbs. A float all-reduce would
// propagate such a value; a quantized one cannot represent it, so the reference refuses it
// before writing anything, and a CUDA kernel must flag it rather than send garbage.
var ErrFlashCommInput = errors.New("quant: flash communication input is NaN, infinite or beyond 2^64")

// FlashComm is the codec of a compressed all-reduce.
type FlashComm struct {
	// Bits is 8 or 4 (quantized), or 16: the uncompressed control, which moves the float32
	// partials unchanged and sums them in float32 in rank order from +0.0, so that it differs
	// from an unsplit layer only by the split itself. (In a deployment the uncompressed
	// all-reduce is NCCL's, in the model's 16-bit type; "16" names that baseline.)
	Bits int
	// Group is the number of consecutive values along H that share a scale; a positive
	// multiple of 8 (whole 32-bit words of int4 codes). Ignored when Bits is 16.
	Group int
	// Symmetric selects scale-only groups (codes in ±(2^(Bits−1)−1)); otherwise groups are
	// asymmetric, with a scale and the group minimum as offset (codes in 0..2^Bits−1), as in
	// the Flash Communication paper.
	Symmetric bool
}

// Validate checks Bits and Group.
func (c FlashComm) Validate() error {
	switch c.Bits {
	case 16:
		return nil
	case 4, 8:
	default:
		return fmt.Errorf("quant: flash communication bits %d: want 4, 8 or 16", c.Bits)
	}
	if c.Group <= 0 || c.Group%8 != 0 {
		return fmt.Errorf("quant: flash communication group %d: want a positive multiple of 8", c.Group)
	}
	return nil
}

// CheckShape checks that an all-reduce of rows of width values over ranks ranks fits the
// codec: the width splits into ranks chunks of equal size, and the group divides the chunk,
// so that no group straddles two ranks' chunks.
func (c FlashComm) CheckShape(ranks, width int) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if ranks <= 0 || width <= 0 {
		return fmt.Errorf("quant: flash communication over %d ranks of width %d: both must be positive", ranks, width)
	}
	if width%ranks != 0 {
		return fmt.Errorf("quant: flash communication: width %d does not split into %d equal chunks", width, ranks)
	}
	if chunk := width / ranks; c.Bits != 16 && chunk%c.Group != 0 {
		return fmt.Errorf("quant: flash communication: group %d does not divide the per-rank chunk of %d values (width %d / %d ranks)", c.Group, chunk, width, ranks)
	}
	return nil
}

// qmax returns the largest code: 2^Bits−1 (asymmetric) or 2^(Bits−1)−1 (symmetric).
func (c FlashComm) qmax() float32 {
	if c.Symmetric {
		return float32(int(1)<<(c.Bits-1) - 1)
	}
	return float32(int(1)<<c.Bits - 1)
}

// metaBytes is the metadata of one group on the wire: a float32 scale, and for asymmetric
// groups the float32 minimum.
func (c FlashComm) metaBytes() int {
	if c.Symmetric {
		return 4
	}
	return 8
}

// BytesPerElement is what one value costs on the wire: the code plus its share of the group
// metadata (both float32), e.g. 1 + 8/128 = 1.0625 for asymmetric INT8 in groups of 128. For
// the control (Bits 16) it is 2, the 16-bit all-reduce of a deployment it stands for.
func (c FlashComm) BytesPerElement() float64 {
	if c.Bits == 16 {
		return 2
	}
	return float64(float64(c.Bits)/8) + float64(c.metaBytes())/float64(c.Group)
}

// quotient is the quantization's d ⊘ s: d·fl(1/s) for a normal s, d/s for a subnormal one.
func quotient(d, s float32) float32 {
	if s >= 0x1p-126 {
		r := float32(1 / s)
		return float32(d * r)
	}
	return float32(d / s)
}

// QuantizeGroup quantizes one group v (len(v) = len(codes), finite, |v| ≤ FlashCommMaxAbs)
// into codes and returns its scale and offset lo (0 for symmetric groups). Each line is one
// float32 operation, rounded to nearest even:
//
//	asymmetric: lo = min v, hi = max v; s = (hi − lo) / (2^b−1); t = (v − lo) ⊘ s
//	            q = clamp(roundEven(t), 0, 2^b−1)
//	symmetric:  a = max |v|; s = a / (2^(b−1)−1); t = v ⊘ s
//	            q = clamp(roundEven(t), −(2^(b−1)−1), 2^(b−1)−1)
//
// where d ⊘ s is d·r with r = 1/s (two roundings) for a normal s (≥ 2^−126), and the division
// d / s for a subnormal s, whose reciprocal may overflow (quotient). A multiplication is what
// the kernels can afford per value: with the division they had to check every product against
// the ties n + ½ and redo the near ones, three instructions per value of an issue-bound kernel.
//
// A scale of 0 (all values equal, or a range so small that the division underflows)
// becomes 1, so nothing divides by zero: the codes are 0 and the group decodes to lo (to 0
// for a symmetric group, whose values are then at most a few subnormals away from 0).
func (c FlashComm) QuantizeGroup(codes []int16, v []float32) (scale, lo float32) {
	qm := c.qmax()
	if c.Symmetric {
		var a float32
		for _, x := range v {
			a = max(a, abs32(x))
		}
		s := a / qm
		if s == 0 {
			s = 1
		}
		for k, x := range v {
			t := quotient(x, s)
			codes[k] = int16(min(max(math.RoundToEven(float64(t)), -float64(qm)), float64(qm)))
		}
		return s, 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		// Strict comparisons keep the first of equal values, so the sign of a zero
		// minimum is defined (it changes the message's bytes, never a decoded value).
		if x < lo {
			lo = x
		}
		if x > hi {
			hi = x
		}
	}
	d := float32(hi - lo)
	s := float32(d / qm)
	if s == 0 {
		s = 1
	}
	for k, x := range v {
		t := quotient(float32(x-lo), s)
		codes[k] = int16(min(math.RoundToEven(float64(t)), float64(qm))) // t ≥ 0: no lower clamp
	}
	return s, lo
}

// dequant is one value of a group: q·s rounded to float32, then + lo rounded (two
// operations, never a fused multiply-add; the conversions forbid Go from fusing them).
// For symmetric groups lo is 0 and the addition is skipped, so the value is q·s exactly as
// rounded (adding +0.0 would turn a −0.0 into +0.0).
func (c FlashComm) dequant(q int16, s, lo float32) float32 {
	p := float32(float32(q) * s)
	if c.Symmetric {
		return p
	}
	return float32(p + lo)
}

// DequantizeGroup writes the values of a group's codes into dst.
func (c FlashComm) DequantizeGroup(dst []float32, codes []int16, scale, lo float32) {
	for k, q := range codes[:len(dst)] {
		dst[k] = c.dequant(q, scale, lo)
	}
}

// Step 3, the integer-scale reduce. A float32 reduce (dequantize every rank's value, q·s + lo,
// and add it to a float32 sum) costs about 4 float operations per received value, which on the
// H200 makes the reduce kernel issue-bound at 38% (INT4) and 76% (INT8 asymmetric) of the copy
// bandwidth (goal 80%). With integer group scales (the Integer Scale paper's idea, the same as
// the FastGEMM's) the sum over ranks is an exact integer multiply-add per received value (one
// code extraction and one IMAD), the minima are summed once per group, and there is one
// conversion per output value. It is at least as accurate: the sum over ranks is exact, and
// the only new error is the rounding of the scales to 20 bits relative to the group position's
// largest scale (2^−20 relative), negligible next to half a quantization step.

// scaleParts returns the biased exponent e (1 for a subnormal) and the significand of a
// positive finite float32 s, so that s = sig·2^(e−150).
func scaleParts(s float32) (e int, sig int64) {
	b := math.Float32bits(s)
	e, sig = int(b>>23)&0xff, int64(b&0x7fffff)
	if e == 0 {
		return 1, sig
	}
	return e, sig | 0x800000
}

// integerScales writes into m the scales of one group position (one per rank) as integers
// relative to the largest exponent E, which it returns: m_i = roundEven(s_i·2^(146−E)), the
// nearest integer to the exact product (ties to even; 0 when it is below ½). Then m_i ≤ 2^20 and
// |s_i − m_i·2^(E−146)| ≤ 2^(E−147). (The kernels compute it as fma(s·2^a, 2^b, 2^23) − 2^23, the
// exact product rounded once in [2^23, 2^24), where the float spacing is 1.)
func integerScales(m []int64, scales []float32) int {
	E := 1
	for _, s := range scales {
		e, _ := scaleParts(s)
		E = max(E, e)
	}
	for i, s := range scales {
		e, sig := scaleParts(s)
		// s·2^(146−E) = sig / 2^sh exactly; round half to even in integers.
		sh := E - e + 4
		if sh >= 25 {
			m[i] = 0 // below ½ (sig < 2^24 ≤ 2^(sh−1))
			continue
		}
		q, r, half := sig>>sh, sig&(1<<sh-1), int64(1)<<(sh-1)
		if r > half || r == half && q&1 == 1 {
			q++
		}
		m[i] = q
	}
	return E
}

// pow2f32 is 2^k as a float32, for −149 ≤ k ≤ 127 (subnormal below −126).
func pow2f32(k int) float32 {
	if k >= -126 {
		return math.Float32frombits(uint32(k+127) << 23)
	}
	return math.Float32frombits(1 << (k + 149))
}

// reduceGroup is step 3 for one group position: codes[i], scales[i] and los[i] are rank i's
// (los ignored when symmetric), t receives the values to requantize, m is scratch of len N.
// With E and m_i from integerScales and P = 2^(E−146):
//
//	acc = Σ_i q_i·m_i                      exact integer (|acc| ≤ N·Qmax·2^20)
//	y   = fl32(fl32(acc)·P)                one conversion (nearest even), one float32 product
//	                                       (exact unless subnormal)
//	asymmetric: L = (((+0 + lo_0) + lo_1) + …) + lo_{N−1}, float32; t = fl32(y + L)
//	symmetric:  t = y
func (c FlashComm) reduceGroup(t []float32, codes [][]int16, scales, los []float32, m []int64) {
	p := pow2f32(integerScales(m, scales) - 146)
	var l float32 // +0
	if !c.Symmetric {
		for _, lo := range los {
			l = float32(l + lo)
		}
	}
	for k := range t {
		var acc int64
		for i, q := range codes {
			acc += int64(q[k]) * m[i]
		}
		// |acc| < 2^53: float64(acc) is exact and float32 rounds it once.
		y := float32(float32(float64(acc)) * p)
		if !c.Symmetric {
			y = float32(y + l)
		}
		t[k] = y
	}
}

// checkInputs validates the shapes and the domain of every partial before anything is
// written.
func (c FlashComm) checkInputs(partials [][]float32, rows, width int) error {
	if err := c.CheckShape(len(partials), width); err != nil {
		return err
	}
	if rows < 0 {
		return fmt.Errorf("quant: flash communication: %d rows", rows)
	}
	for i, p := range partials {
		if len(p) != rows*width {
			return fmt.Errorf("quant: flash communication: rank %d's partial has %d values, want %d×%d", i, len(p), rows, width)
		}
	}
	for i, p := range partials {
		for k, x := range p {
			if !(abs32(x) <= FlashCommMaxAbs) {
				return fmt.Errorf("%w: rank %d, row %d, column %d: %v", ErrFlashCommInput, i, k/width, k%width, x)
			}
		}
	}
	return nil
}

// AllReduce computes into dst [rows×width] what every rank of the compressed all-reduce of
// partials (one [rows×width] slice per rank) ends with: steps 1–5 above, without building the
// messages. It is bit-identical to AllReduceRanks (the tests hold it to that) and is the path
// a simulation uses. It returns an error, before writing dst, for a bad shape or an input
// outside the domain (ErrFlashCommInput). dst must not alias a partial.
func (c FlashComm) AllReduce(dst []float32, partials [][]float32, rows, width int) error {
	if err := c.checkInputs(partials, rows, width); err != nil {
		return err
	}
	if len(dst) != rows*width {
		return fmt.Errorf("quant: flash communication: output has %d values, want %d×%d", len(dst), rows, width)
	}
	n := len(partials)
	return parallel.Blocks(rows, 8, 0, func(r0, r1 int) error {
		if c.Bits == 16 {
			for k := r0 * width; k < r1*width; k++ {
				var acc float32
				for _, p := range partials {
					acc = float32(acc + p[k])
				}
				dst[k] = acc
			}
			return nil
		}
		// Groups never straddle a chunk (G divides it), so a row's groups in order are its
		// chunks' groups: group by group, every rank quantizes, the owner of the chunk reduces
		// and requantizes, and every rank dequantizes.
		g := c.Group
		codes := make([][]int16, n)
		for i := range codes {
			codes[i] = make([]int16, g)
		}
		scales, los, m := make([]float32, n), make([]float32, n), make([]int64, n)
		t := make([]float32, g)
		for o := r0 * width; o < r1*width; o += g {
			for i, p := range partials {
				scales[i], los[i] = c.QuantizeGroup(codes[i], p[o:o+g])
			}
			c.reduceGroup(t, codes, scales, los, m)
			s, lo := c.QuantizeGroup(codes[0], t)
			c.DequantizeGroup(dst[o:o+g], codes[0], s, lo)
		}
		return nil
	})
}

// MessageBytes is the size of the message that carries a chunk of rows×cols values: the
// codes, row-major, packed (INT8: one byte each, two's complement when symmetric; INT4: two
// per byte, the even column in the low nibble, two's complement nibbles when symmetric),
// then the float32 scale of every group (row-major: row, then group), then for asymmetric
// groups the float32 minimum of every group in the same order; all little-endian. The
// control (Bits 16) sends the float32 values.
func (c FlashComm) MessageBytes(rows, cols int) int {
	if c.Bits == 16 {
		return 4 * rows * cols
	}
	return rows*cols*c.Bits/8 + rows*(cols/c.Group)*c.metaBytes()
}

// EncodeChunk quantizes columns [col0, col0+cols) of x [rows×stride] and appends the message
// (see MessageBytes) to dst. cols must be a multiple of the group; x must be in the domain.
func (c FlashComm) EncodeChunk(dst []byte, x []float32, rows, stride, col0, cols int) []byte {
	if c.Bits == 16 {
		for r := 0; r < rows; r++ {
			for _, v := range x[r*stride+col0 : r*stride+col0+cols] {
				dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
			}
		}
		return dst
	}
	g := c.Group
	ng := rows * (cols / g)
	scales := make([]float32, 0, ng)
	los := make([]float32, 0, ng)
	codes := make([]int16, g)
	for r := 0; r < rows; r++ {
		for o := 0; o < cols; o += g {
			base := r*stride + col0 + o
			s, lo := c.QuantizeGroup(codes, x[base:base+g])
			scales, los = append(scales, s), append(los, lo)
			if c.Bits == 8 {
				for _, q := range codes {
					dst = append(dst, byte(q))
				}
				continue
			}
			for k := 0; k < g; k += 2 {
				dst = append(dst, byte(codes[k])&0xf|byte(codes[k+1])<<4)
			}
		}
	}
	for _, s := range scales {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(s))
	}
	if !c.Symmetric {
		for _, lo := range los {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(lo))
		}
	}
	return dst
}

// checkMessage checks the length of a message of rows×cols values.
func (c FlashComm) checkMessage(msg []byte, rows, cols int) error {
	if len(msg) != c.MessageBytes(rows, cols) {
		return fmt.Errorf("quant: flash communication message has %d bytes, want %d for %d×%d values", len(msg), c.MessageBytes(rows, cols), rows, cols)
	}
	return nil
}

// messageGroup reads group gi (row-major: row, then group) of a message of rows×cols values:
// its codes into codes (len G), and its scale and minimum (0 when symmetric).
func (c FlashComm) messageGroup(codes []int16, msg []byte, rows, cols, gi int) (s, lo float32) {
	g := c.Group
	ng := rows * (cols / g)
	meta := msg[rows*cols*c.Bits/8:]
	s = math.Float32frombits(binary.LittleEndian.Uint32(meta[4*gi:]))
	if !c.Symmetric {
		lo = math.Float32frombits(binary.LittleEndian.Uint32(meta[4*(ng+gi):]))
	}
	k0 := gi * g // index of the group's first value in the message
	for k := range codes[:g] {
		if c.Bits == 8 {
			codes[k] = int16(msg[k0+k])
			if c.Symmetric {
				codes[k] = int16(int8(msg[k0+k]))
			}
			continue
		}
		nib := msg[(k0+k)/2] >> (4 * ((k0 + k) % 2)) & 0xf
		codes[k] = int16(nib)
		if c.Symmetric {
			codes[k] = int16(int8(nib<<4) >> 4)
		}
	}
	return s, lo
}

// DecodeChunk dequantizes a message of rows×cols values into columns [col0, col0+cols) of
// out [rows×stride] (step 5; for Bits 16 it copies the float32 values).
func (c FlashComm) DecodeChunk(msg []byte, rows, cols int, out []float32, stride, col0 int) error {
	if err := c.checkMessage(msg, rows, cols); err != nil {
		return err
	}
	if c.Bits == 16 {
		for r := 0; r < rows; r++ {
			row := out[r*stride+col0 : r*stride+col0+cols]
			for k := range row {
				row[k] = math.Float32frombits(binary.LittleEndian.Uint32(msg[4*(r*cols+k):]))
			}
		}
		return nil
	}
	g := c.Group
	codes := make([]int16, g)
	for gi := 0; gi < rows*(cols/g); gi++ {
		s, lo := c.messageGroup(codes, msg, rows, cols, gi)
		r, o := gi*g/cols, gi*g%cols
		c.DequantizeGroup(out[r*stride+col0+o:r*stride+col0+o+g], codes, s, lo)
	}
	return nil
}

// ReduceChunks is step 3 at one rank: it reduces the messages msgs[i] of the chunk it owns
// (rows×cols values) that ranks i = 0..N−1 sent, and returns the values t [rows×cols] that it
// requantizes (EncodeChunk(nil, t, rows, cols, 0, cols) is its step-4 message): the
// integer-scale reduce of every group position (reduceGroup), or for Bits 16 the float32 sum
// in rank order from +0.0. A scale that is not positive and finite, or a minimum that is not
// finite, is an error (an encoder never sends one).
func (c FlashComm) ReduceChunks(msgs [][]byte, rows, cols int) ([]float32, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(msgs) == 0 || rows < 0 || cols < 0 || (c.Bits != 16 && cols%c.Group != 0) {
		return nil, fmt.Errorf("quant: flash communication: cannot reduce %d messages of %d×%d values", len(msgs), rows, cols)
	}
	for _, msg := range msgs {
		if err := c.checkMessage(msg, rows, cols); err != nil {
			return nil, err
		}
	}
	t := make([]float32, rows*cols)
	if c.Bits == 16 {
		for _, msg := range msgs {
			for k := range t {
				t[k] = float32(t[k] + math.Float32frombits(binary.LittleEndian.Uint32(msg[4*k:])))
			}
		}
		return t, nil
	}
	n, g := len(msgs), c.Group
	codes := make([][]int16, n)
	for i := range codes {
		codes[i] = make([]int16, g)
	}
	scales, los, m := make([]float32, n), make([]float32, n), make([]int64, n)
	for gi := 0; gi < rows*(cols/g); gi++ {
		for i, msg := range msgs {
			scales[i], los[i] = c.messageGroup(codes[i], msg, rows, cols, gi)
			if !(scales[i] > 0 && scales[i] <= math.MaxFloat32) || !(abs32(los[i]) <= math.MaxFloat32) {
				return nil, fmt.Errorf("quant: flash communication: rank %d's message has group %d with scale %v and minimum %v", i, gi, scales[i], los[i])
			}
		}
		// Groups are row-major in the message and in t alike.
		c.reduceGroup(t[gi*g:(gi+1)*g], codes, scales, los, m)
	}
	return t, nil
}

// AllReduceRanks simulates the compressed all-reduce over len(partials) ranks message by
// message, exactly as the CUDA path runs it, and returns the output [rows×width] of every
// rank. It is the executable form of the specification; AllReduce is its fast equivalent.
func (c FlashComm) AllReduceRanks(partials [][]float32, rows, width int) ([][]float32, error) {
	if err := c.checkInputs(partials, rows, width); err != nil {
		return nil, err
	}
	n := len(partials)
	chunk := width / n
	// Step 1: rank i encodes chunk j of its partial for rank j.
	sent := make([][][]byte, n)
	for i := range n {
		sent[i] = make([][]byte, n)
		for j := range n {
			sent[i][j] = c.EncodeChunk(nil, partials[i], rows, width, j*chunk, chunk)
		}
	}
	// Step 2 (all-to-all) and step 3: rank j reduces the chunks it received and requantizes.
	reduced := make([][]byte, n)
	for j := range n {
		recv := make([][]byte, n)
		for i := range n {
			recv[i] = append([]byte(nil), sent[i][j]...)
		}
		t, err := c.ReduceChunks(recv, rows, chunk)
		if err != nil {
			return nil, err
		}
		reduced[j] = c.EncodeChunk(nil, t, rows, chunk, 0, chunk)
	}
	// Step 4 (all-gather) and step 5: every rank decodes every reduced chunk.
	out := make([][]float32, n)
	for k := range n {
		out[k] = make([]float32, rows*width)
		for j := range n {
			recv := append([]byte(nil), reduced[j]...)
			if err := c.DecodeChunk(recv, rows, chunk, out[k], width, j*chunk); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// FlashCommTestVector returns n partials [rows×width] that any implementation can generate
// with 32-bit integer arithmetic (docs/flash-communication.md, "Test vector"): for rank i,
// row r, column k, u = uint32(i·1000003 + r·7919 + k); u *= 2654435761; u ^= u >> 15;
// u *= 2246822519; u ^= u >> 13; the value is float32(int32(u) >> 8)·2^-16 (exact, within
// ±128), multiplied by 64 in every column k with k mod 97 = 5 (outlier channels).
func FlashCommTestVector(n, rows, width int) [][]float32 {
	ps := make([][]float32, n)
	for i := range ps {
		ps[i] = make([]float32, rows*width)
		for r := 0; r < rows; r++ {
			for k := 0; k < width; k++ {
				u := uint32(i*1000003 + r*7919 + k)
				u *= 2654435761
				u ^= u >> 15
				u *= 2246822519
				u ^= u >> 13
				v := float32(int32(u)>>8) * 0x1p-16
				if k%97 == 5 {
					v *= 64
				}
				ps[i][r*width+k] = v
			}
		}
	}
	return ps
}
