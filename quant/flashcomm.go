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
//  3. rank j dequantizes the N chunks and sums them in float32 in rank order i = 0..N−1,
//     starting from +0.0, then requantizes the sum with the same codec;
//  4. all-gather: every rank receives every rank's requantized chunk;
//  5. every rank dequantizes all N chunks into its output.
//
// Every rank decodes the same bytes in step 5, so every rank ends bit-identical by
// construction. The arithmetic is written out operation by operation so that the CUDA
// kernels (__fsub_rn, __fdiv_rn, rintf, __fmul_rn, __fadd_rn, no fused multiply-add, no
// flush to zero) reproduce it bit for bit; docs/flash-communication.md is the specification
// and derives the error bound that the tests check.

// FlashCommMaxAbs is the largest magnitude the codec accepts. Bounding the inputs keeps every
// intermediate (group ranges, the float32 sum of N dequantized chunks, the requantized sum)
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
	// partials unchanged and sums them in the same rank order, so that it differs from an
	// unsplit layer only by the split itself. (In a deployment the uncompressed all-reduce is
	// NCCL's, in the model's 16-bit type; "16" names that baseline.)
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

// QuantizeGroup quantizes one group v (len(v) = len(codes), finite, |v| ≤ FlashCommMaxAbs)
// into codes and returns its scale and offset lo (0 for symmetric groups). Each line is one
// float32 operation, rounded to nearest even:
//
//	asymmetric: lo = min v, hi = max v; s = (hi − lo) / (2^b−1); t = (v − lo) / s
//	            q = clamp(roundEven(t), 0, 2^b−1)
//	symmetric:  a = max |v|; s = a / (2^(b−1)−1); t = v / s
//	            q = clamp(roundEven(t), −(2^(b−1)−1), 2^(b−1)−1)
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
			t := float32(x / s)
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
		t := float32(float32(x-lo) / s)
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

// dequantizeAddGroup adds the values of a group's codes to acc, one float32 addition each:
// step 3's sum.
func (c FlashComm) dequantizeAddGroup(acc []float32, codes []int16, scale, lo float32) {
	for k, q := range codes[:len(acc)] {
		acc[k] = float32(acc[k] + c.dequant(q, scale, lo))
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
	chunk := width / n
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
		g := c.Group
		codes := make([]int16, g)
		acc := make([]float32, chunk)
		for r := r0; r < r1; r++ {
			for j := 0; j < n; j++ {
				col0 := r*width + j*chunk
				clear(acc)
				for _, p := range partials {
					for o := 0; o < chunk; o += g {
						s, lo := c.QuantizeGroup(codes, p[col0+o:col0+o+g])
						c.dequantizeAddGroup(acc[o:o+g], codes, s, lo)
					}
				}
				for o := 0; o < chunk; o += g {
					s, lo := c.QuantizeGroup(codes, acc[o:o+g])
					c.DequantizeGroup(dst[col0+o:col0+o+g], codes, s, lo)
				}
			}
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

// DecodeChunk dequantizes a message of rows×cols values into columns [col0, col0+cols) of
// out [rows×stride]; with add it adds each value to what out holds (one float32 addition),
// which is step 3's sum.
func (c FlashComm) DecodeChunk(msg []byte, rows, cols int, out []float32, stride, col0 int, add bool) error {
	if len(msg) != c.MessageBytes(rows, cols) {
		return fmt.Errorf("quant: flash communication message has %d bytes, want %d for %d×%d values", len(msg), c.MessageBytes(rows, cols), rows, cols)
	}
	if c.Bits == 16 {
		for r := 0; r < rows; r++ {
			row := out[r*stride+col0 : r*stride+col0+cols]
			for k := range row {
				v := math.Float32frombits(binary.LittleEndian.Uint32(msg[4*(r*cols+k):]))
				if add {
					v = float32(row[k] + v)
				}
				row[k] = v
			}
		}
		return nil
	}
	g := c.Group
	ng := rows * (cols / g)
	codeBytes := rows * cols * c.Bits / 8
	meta := msg[codeBytes:]
	codes := make([]int16, g)
	for gi := 0; gi < ng; gi++ {
		s := math.Float32frombits(binary.LittleEndian.Uint32(meta[4*gi:]))
		var lo float32
		if !c.Symmetric {
			lo = math.Float32frombits(binary.LittleEndian.Uint32(meta[4*(ng+gi):]))
		}
		k0 := gi * g // index of the group's first value in the message
		for k := range codes {
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
		r, o := k0/cols, k0%cols
		dst := out[r*stride+col0+o : r*stride+col0+o+g]
		if add {
			c.dequantizeAddGroup(dst, codes, s, lo)
		} else {
			c.DequantizeGroup(dst, codes, s, lo)
		}
	}
	return nil
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
	// Step 2 (all-to-all) and step 3: rank j sums the chunks it received in rank order,
	// starting from +0.0, and requantizes the sum.
	reduced := make([][]byte, n)
	for j := range n {
		acc := make([]float32, rows*chunk)
		for i := range n {
			recv := append([]byte(nil), sent[i][j]...)
			if err := c.DecodeChunk(recv, rows, chunk, acc, chunk, 0, true); err != nil {
				return nil, err
			}
		}
		reduced[j] = c.EncodeChunk(nil, acc, rows, chunk, 0, chunk)
	}
	// Step 4 (all-gather) and step 5: every rank decodes every reduced chunk.
	out := make([][]float32, n)
	for k := range n {
		out[k] = make([]float32, rows*width)
		for j := range n {
			recv := append([]byte(nil), reduced[j]...)
			if err := c.DecodeChunk(recv, rows, chunk, out[k], width, j*chunk, false); err != nil {
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
