package eval

import (
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/model"
)

// NonFiniteError reports a model that computes NaN or Inf: a perplexity of NaN is not a
// measurement. Stage names the first place in the forward pass whose output is not finite,
// found by running Window alone again one stage at a time.
type NonFiniteError struct {
	Model  string // "the model" or "the reference", for KL
	Window int    // index of the first window whose result is not finite
	Stage  string // e.g. "decoder layer 2 (model.layers.2)"
	// Layer is the decoder layer of Stage, -1 when Stage is not a decoder layer.
	Layer int
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("eval: %s computes NaN or Inf in window %d; the first stage whose output is not finite is %s", e.Model, e.Window, e.Stage)
}

func finite64(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func allFinite(x []float32) bool {
	for _, v := range x {
		if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
			return false
		}
	}
	return true
}

// locateNonFinite runs window through m one stage at a time and returns the first stage
// whose output is not finite; found is false when every stage is finite.
func locateNonFinite(m *model.Model, window []int) (stage string, layer int, found bool) {
	h, err := m.Embed([][]int{window})
	if err != nil {
		return "", -1, false
	}
	if !allFinite(h) {
		return "the embedding (model.embed_tokens)", -1, true
	}
	ctx := new(model.Context)
	for i, l := range m.Layers {
		if l == nil {
			return "", -1, false
		}
		l.Forward(h, 1, len(window), ctx)
		if !allFinite(h) {
			return fmt.Sprintf("decoder layer %d (model.layers.%d)", i, i), i, true
		}
	}
	m.Norm(h, len(window))
	if !allFinite(h) {
		return "the final norm (model.norm)", -1, true
	}
	if !allFinite(m.Logits(h, len(window), ctx)) {
		return "the LM head (lm_head)", -1, true
	}
	return "", -1, false
}

// nonFinite builds the error for the first of windows (numbered from first) whose forward
// pass through m is not finite; suspect(i), when non-nil, limits the search to the windows
// whose result was not finite.
func nonFinite(who string, m *model.Model, windows [][]int, first int, suspect func(i int) bool) error {
	for i, w := range windows {
		if suspect != nil && !suspect(i) {
			continue
		}
		if stage, layer, ok := locateNonFinite(m, w); ok {
			return &NonFiniteError{Model: who, Window: first + i, Stage: stage, Layer: layer}
		}
	}
	return &NonFiniteError{Model: who, Window: first, Stage: "the loss (every layer's output is finite)", Layer: -1}
}
