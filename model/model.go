// Package model is the float32 reference forward pass of the LLaMA family (LLaMA 1–3,
// Mistral, Qwen2) as described by formats/hf: embedding, RMSNorm, rotary embeddings (default
// and llama3 scaling), grouped-query causal attention with an optional sliding window, SwiGLU
// MLP and an LM head, computed in float32 from F16, BF16 or F32 weights.
//
// The forward pass runs a batch of windows, each an independent sequence starting at
// position 0. It can be driven whole (Model.Forward, Model.Hidden) or one layer at a time
// (Model.Embed, Layer.Forward, Model.Norm, Model.Logits), which is how calibration walks a
// model with bounded memory. Every linear layer sits behind the Linear interface, the one
// seam where inputs are observed (Context.Observe) and where a quantized implementation is
// swapped in (Layer.SetLinear, Model.SetLinear).
package model

import (
	"errors"
	"fmt"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
)

// Model is a LLaMA-family model in float32.
type Model struct {
	Config hf.Config
	// Embedding is model.embed_tokens.weight [vocab, hidden].
	Embedding []float32
	Layers    []*Layer
	// FinalNorm is model.norm.weight [hidden].
	FinalNorm []float32
	// LMHead maps the final hidden state to logits; with tied embeddings its weight is Embedding.
	LMHead Linear
}

// CheckConfig reports, with a message that names the reason, whether the forward pass
// supports cfg: LLaMA-family dense models with SiLU, rope type "default" or "llama3".
func CheckConfig(cfg *hf.Config) error {
	if err := cfg.Supported(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	// hf.Load has validated sizes; these checks guard configs built by hand.
	if cfg.NumLocalExperts > 0 || strings.Contains(strings.ToLower(cfg.ModelType), "mixtral") {
		return fmt.Errorf("model: mixture-of-experts models (model_type %q, %d experts) are not supported", cfg.ModelType, cfg.NumLocalExperts)
	}
	if cfg.HiddenAct != "" && cfg.HiddenAct != "silu" {
		return fmt.Errorf("model: hidden_act %q is not supported (only silu)", cfg.HiddenAct)
	}
	if cfg.HiddenSize <= 0 || cfg.IntermediateSize <= 0 || cfg.NumLayers <= 0 || cfg.NumHeads <= 0 || cfg.NumKVHeads <= 0 || cfg.VocabSize <= 0 {
		return fmt.Errorf("model: config has non-positive sizes (hidden %d, intermediate %d, layers %d, heads %d, kv heads %d, vocab %d)",
			cfg.HiddenSize, cfg.IntermediateSize, cfg.NumLayers, cfg.NumHeads, cfg.NumKVHeads, cfg.VocabSize)
	}
	if cfg.NumHeads%cfg.NumKVHeads != 0 {
		return fmt.Errorf("model: %d attention heads are not a multiple of %d key/value heads", cfg.NumHeads, cfg.NumKVHeads)
	}
	if !(cfg.RMSNormEps > 0) {
		return fmt.Errorf("model: rms_norm_eps %v must be positive", cfg.RMSNormEps)
	}
	if cfg.SlidingWindow < 0 {
		return fmt.Errorf("model: sliding_window %d is negative", cfg.SlidingWindow)
	}
	if _, err := ropeInvFreq(cfg.Rope, cfg.HeadDim); err != nil {
		return err
	}
	return nil
}

// Load reads every weight of hm into float32. The Model keeps no reference to hm, which may
// be closed afterwards.
func Load(hm *hf.Model) (*Model, error) {
	m, err := LoadShell(hm)
	if err != nil {
		return nil, err
	}
	for i := range m.Layers {
		if m.Layers[i], err = LoadLayer(hm, i); err != nil {
			return nil, err
		}
		m.Layers[i].Config = &m.Config
	}
	return m, nil
}

// LoadShell reads the embedding, final norm and LM head of hm but no decoder layer: Layers
// has NumLayers nil entries for LoadLayer to fill, so that calibration can hold one layer
// at a time.
//
// With tied embeddings the LM head is a Dense whose W is the Embedding slice itself, as in
// transformers: quantize the LM head by replacing it (SetLinear), not by editing W in place,
// or the embeddings change too.
func LoadShell(hm *hf.Model) (*Model, error) {
	cfg := hm.Config
	if err := CheckConfig(&cfg); err != nil {
		return nil, err
	}
	if len(hm.Layers) != cfg.NumLayers {
		return nil, fmt.Errorf("model: checkpoint has %d layers, config says %d", len(hm.Layers), cfg.NumLayers)
	}
	m := &Model{Config: cfg, Layers: make([]*Layer, cfg.NumLayers)}
	var err error
	if m.Embedding, err = tensor(hm, hm.Embed, cfg.VocabSize, cfg.HiddenSize); err != nil {
		return nil, err
	}
	if m.FinalNorm, err = tensor(hm, hm.FinalNorm, cfg.HiddenSize); err != nil {
		return nil, err
	}
	w := m.Embedding
	if !hm.Tied {
		if w, err = tensor(hm, hm.LMHead, cfg.VocabSize, cfg.HiddenSize); err != nil {
			return nil, err
		}
	}
	m.LMHead = NewDense(w, nil, cfg.VocabSize, cfg.HiddenSize)
	return m, nil
}

// LoadLayer reads decoder layer i of hm into float32. Its Config points to a copy of
// hm.Config; Model.Load shares the model's.
func LoadLayer(hm *hf.Model, i int) (*Layer, error) {
	cfg := hm.Config
	if err := CheckConfig(&cfg); err != nil {
		return nil, err
	}
	if i < 0 || i >= len(hm.Layers) {
		return nil, fmt.Errorf("model: layer %d out of range [0, %d)", i, len(hm.Layers))
	}
	hl := &hm.Layers[i]
	l := &Layer{Index: i, Config: &cfg}
	var err error
	if l.AttnNorm, err = tensor(hm, hl.InputNorm, cfg.HiddenSize); err != nil {
		return nil, err
	}
	if l.MLPNorm, err = tensor(hm, hl.PostAttnNorm, cfg.HiddenSize); err != nil {
		return nil, err
	}
	qdim, kvdim := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	for _, s := range []struct {
		kind    LinearKind
		hl      hf.Linear
		out, in int
	}{
		{Q, hl.Q, qdim, cfg.HiddenSize},
		{K, hl.K, kvdim, cfg.HiddenSize},
		{V, hl.V, kvdim, cfg.HiddenSize},
		{O, hl.O, cfg.HiddenSize, qdim},
		{Gate, hl.Gate, cfg.IntermediateSize, cfg.HiddenSize},
		{Up, hl.Up, cfg.IntermediateSize, cfg.HiddenSize},
		{Down, hl.Down, cfg.HiddenSize, cfg.IntermediateSize},
	} {
		d, err := dense(hm, s.hl, s.out, s.in)
		if err != nil {
			return nil, fmt.Errorf("model: layer %d %v: %w", i, s.kind, err)
		}
		*l.slot(s.kind) = d
	}
	return l, nil
}

func dense(hm *hf.Model, hl hf.Linear, out, in int) (*Dense, error) {
	if hl.Out != out || hl.In != in {
		return nil, fmt.Errorf("shape %d×%d, want %d×%d", hl.Out, hl.In, out, in)
	}
	w, err := tensor(hm, hl.Weight, out, in)
	if err != nil {
		return nil, err
	}
	var b []float32
	if hl.Bias != nil {
		if b, err = tensor(hm, *hl.Bias, out); err != nil {
			return nil, err
		}
	}
	return NewDense(w, b, out, in), nil
}

// tensor converts one tensor to float32 after checking its shape.
func tensor(hm *hf.Model, info safetensors.TensorInfo, shape ...int) ([]float32, error) {
	if hm.Tensors == nil {
		return nil, errors.New("model: hf.Model has no tensors")
	}
	ok := len(info.Shape) == len(shape)
	for i := 0; ok && i < len(shape); i++ {
		ok = info.Shape[i] == int64(shape[i])
	}
	if !ok {
		return nil, fmt.Errorf("model: tensor %s has shape %v, want %v", info.Name, info.Shape, shape)
	}
	if !info.DType.IsFloat() {
		return nil, fmt.Errorf("model: tensor %s has type %s, want a float type", info.Name, info.DType)
	}
	v, err := hm.Tensors.Float32(info.Name)
	if err != nil {
		return nil, fmt.Errorf("model: tensor %s: %w", info.Name, err)
	}
	if len(v) != int(info.NumElements()) {
		return nil, fmt.Errorf("model: tensor %s: got %d values, want %d", info.Name, len(v), info.NumElements())
	}
	return v, nil
}

// Linear returns the linear of the given kind in layer (ignored for LMHead).
func (m *Model) Linear(layer int, kind LinearKind) Linear {
	if kind == LMHead {
		return m.LMHead
	}
	return m.Layers[layer].Linear(kind)
}

// SetLinear replaces the linear of the given kind in layer (ignored for LMHead). It panics
// when the shapes differ.
func (m *Model) SetLinear(layer int, kind LinearKind, lin Linear) {
	if kind == LMHead {
		if lin.In() != m.LMHead.In() || lin.Out() != m.LMHead.Out() {
			panic(fmt.Sprintf("model: lm_head is %d→%d, replacement is %d→%d", m.LMHead.In(), m.LMHead.Out(), lin.In(), lin.Out()))
		}
		m.LMHead = lin
		return
	}
	m.Layers[layer].SetLinear(kind, lin)
}

// VocabSize returns the number of logits per position.
func (m *Model) VocabSize() int { return m.LMHead.Out() }

// checkWindows returns the common length of the windows, or an error for an empty batch,
// unequal lengths or out-of-range token ids.
func (m *Model) checkWindows(windows [][]int) (int, error) {
	if len(windows) == 0 || len(windows[0]) == 0 {
		return 0, errors.New("model: no tokens to run")
	}
	L := len(windows[0])
	vocab := m.Config.VocabSize
	for w, win := range windows {
		if len(win) != L {
			return 0, fmt.Errorf("model: window %d has %d tokens, window 0 has %d; windows of a batch must have equal lengths", w, len(win), L)
		}
		for i, t := range win {
			if t < 0 || t >= vocab {
				return 0, fmt.Errorf("model: window %d position %d: token id %d outside the vocabulary [0, %d)", w, i, t, vocab)
			}
		}
	}
	return L, nil
}

// Embed returns the embeddings of a batch of equal-length windows, h [len(windows)·L, hidden]
// in window order, which is the residual stream that Layer.Forward updates.
func (m *Model) Embed(windows [][]int) ([]float32, error) {
	L, err := m.checkWindows(windows)
	if err != nil {
		return nil, err
	}
	hid := m.Config.HiddenSize
	h := make([]float32, len(windows)*L*hid)
	for w, win := range windows {
		for i, t := range win {
			r := w*L + i
			copy(h[r*hid:(r+1)*hid], m.Embedding[t*hid:(t+1)*hid])
		}
	}
	return h, nil
}

// Norm applies the final RMSNorm to h [rows, hidden] in place.
func (m *Model) Norm(h []float32, rows int) {
	RMSNorm(h, h, m.FinalNorm, rows, m.Config.RMSNormEps)
}

// Hidden runs the windows through embedding, every layer and the final norm, and returns the
// LM head's input [len(windows)·L, hidden]. ctx may be nil.
func (m *Model) Hidden(windows [][]int, ctx *Context) ([]float32, error) {
	h, err := m.Embed(windows)
	if err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = new(Context)
	}
	L := len(windows[0])
	for i, l := range m.Layers {
		if l == nil {
			return nil, fmt.Errorf("model: layer %d is not loaded", i)
		}
		l.Forward(h, len(windows), L, ctx)
	}
	m.Norm(h, len(windows)*L)
	return h, nil
}

// Logits returns the logits [rows, vocab] of final hidden states h [rows, hidden] (the output
// of Hidden). It allocates the whole matrix; EachLogits bounds the memory instead.
func (m *Model) Logits(h []float32, rows int, ctx *Context) []float32 {
	if ctx == nil {
		ctx = new(Context)
	}
	ctx.observe(len(m.Layers), LMHead, h, rows, m.LMHead.In())
	out := make([]float32, rows*m.LMHead.Out())
	m.LMHead.Forward(out, h, rows)
	return out
}

// logitsBudget is the most logits EachLogits holds at once (64 MiB): a 512-token window of a
// 151k-vocabulary model would otherwise need 300 MB.
const logitsBudget = 16 << 20

// EachLogits computes the logits of h [rows, hidden] in chunks of consecutive rows and calls
// fn(row0, n, logits) with logits [n, vocab] for rows row0..row0+n-1, so that a caller can
// reduce them (to NLL, KL) without holding every row. logits is reused between calls.
// The observer sees the whole of h once, as with Logits.
func (m *Model) EachLogits(h []float32, rows int, ctx *Context, fn func(row0, n int, logits []float32)) {
	if ctx == nil {
		ctx = new(Context)
	}
	hid, vocab := m.LMHead.In(), m.LMHead.Out()
	ctx.observe(len(m.Layers), LMHead, h, rows, hid)
	chunk := max(1, min(rows, logitsBudget/vocab))
	buf := ctx.buf(bufLogits, chunk*vocab)
	for r0 := 0; r0 < rows; r0 += chunk {
		n := min(chunk, rows-r0)
		m.LMHead.Forward(buf[:n*vocab], h[r0*hid:(r0+n)*hid], n)
		fn(r0, n, buf[:n*vocab])
	}
}

// Forward runs a batch of equal-length windows, each alone from position 0, and returns
// their logits [len(windows)·L, vocab] in window order. ctx may be nil.
func (m *Model) Forward(windows [][]int, ctx *Context) ([]float32, error) {
	h, err := m.Hidden(windows, ctx)
	if err != nil {
		return nil, err
	}
	return m.Logits(h, len(windows)*len(windows[0]), ctx), nil
}
