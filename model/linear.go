package model

import (
	"fmt"

	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// LinearKind names one of the linear layers of a decoder layer, or the LM head.
type LinearKind int

// The linear layers of the LLaMA family, in the order a decoder layer uses them.
const (
	Q LinearKind = iota
	K
	V
	O
	Gate
	Up
	Down
	LMHead
)

// LayerKinds lists the seven linear layers of a decoder layer in execution order.
var LayerKinds = []LinearKind{Q, K, V, O, Gate, Up, Down}

var kindNames = [...]string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}

// String returns the Hugging Face module name: "q_proj", …, "down_proj", "lm_head".
func (k LinearKind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("LinearKind(%d)", int(k))
	}
	return kindNames[k]
}

// SharedInput returns the linears that read the same input as k, k first: Q, K and V share
// the normalised attention input, Gate and Up the normalised MLP input. An Observer is called
// once per distinct input (with the first kind of the group), so a calibration pass that
// needs per-linear statistics uses this to attribute them.
func (k LinearKind) SharedInput() []LinearKind {
	switch k {
	case Q, K, V:
		return []LinearKind{Q, K, V}
	case Gate, Up:
		return []LinearKind{Gate, Up}
	}
	return []LinearKind{k}
}

// Linear is the seam where a linear layer can be replaced, by a quantized or fake-quantized
// implementation, without touching the rest of the forward pass.
//
// Forward computes y[rows×Out] = x[rows×In]·Wᵀ (+ b). Implementations may be called from one
// goroutine at a time per model and may parallelise internally; they must not retain x or y.
type Linear interface {
	Forward(y, x []float32, rows int)
	In() int
	Out() int
}

// Dense is a float32 linear layer with weight W [out, in] (Hugging Face layout) and an
// optional bias B [out].
type Dense struct {
	W       []float32
	B       []float32 // nil when the layer has no bias
	out, in int
}

// NewDense wraps w [out×in] and an optional bias b [out] (nil for none). It panics when the
// lengths do not match the shape: that is a programming error, not bad input.
func NewDense(w, b []float32, out, in int) *Dense {
	if out <= 0 || in <= 0 || len(w) != out*in {
		panic(fmt.Sprintf("model.NewDense: weight has %d elements, want %d×%d", len(w), out, in))
	}
	if b != nil && len(b) != out {
		panic(fmt.Sprintf("model.NewDense: bias has %d elements, want %d", len(b), out))
	}
	return &Dense{W: w, B: b, out: out, in: in}
}

// In returns the input width.
func (d *Dense) In() int { return d.in }

// Out returns the output width.
func (d *Dense) Out() int { return d.out }

// Forward computes y = x·Wᵀ + b with the project's gemm.
func (d *Dense) Forward(y, x []float32, rows int) {
	if rows == 0 {
		return
	}
	if len(x) < rows*d.in || len(y) < rows*d.out {
		panic(fmt.Sprintf("model.Dense.Forward: x has %d, y has %d elements for %d rows of %d→%d", len(x), len(y), rows, d.in, d.out))
	}
	gemm.Sgemm(false, true, rows, d.out, d.in, 1, x, d.in, d.W, d.in, 0, y, d.out)
	if d.B != nil {
		b := d.B
		parallel.Ranges(rows, 64, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := y[r*d.out : (r+1)*d.out]
				for j := range row {
					row[j] += b[j]
				}
			}
		})
	}
}
