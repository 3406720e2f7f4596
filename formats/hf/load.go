package hf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
)

// MismatchError lists every way a checkpoint's tensors disagree with its config.json:
// missing tensors, wrong shapes, non-float weights. Load reports them all at once because a
// broken conversion usually breaks many tensors the same way, and seeing them together shows
// the pattern (a wrong head_dim, a missing "model." prefix) where the first alone would not.
type MismatchError struct {
	Dir      string
	Problems []string // one line per tensor, in model order
	// Unexpected lists the checkpoint tensors the config does not account for; with a
	// mismatch they are often the tensors that were looked for under another name.
	Unexpected []string
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hf: %s: checkpoint does not match config.json (%s):", e.Dir, plural(len(e.Problems), "problem"))
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p)
	}
	if len(e.Unexpected) > 0 {
		fmt.Fprintf(&b, "\nthe checkpoint also holds %s that the config does not account for:", plural(len(e.Unexpected), "tensor"))
		for _, u := range e.Unexpected {
			b.WriteString("\n\t")
			b.WriteString(u)
		}
	}
	return b.String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Load opens a Hugging Face checkpoint folder: config.json, the safetensors weights (one
// model.safetensors, or shards through model.safetensors.index.json) and, if present,
// tokenizer.json. It resolves every tensor the config implies, checking dtypes and shapes,
// and refuses configs that Config.Supported rejects. Tensor data is not read; the returned
// Model holds the checkpoint open until Close.
func Load(dir string) (*Model, error) {
	cfgPath := filepath.Join(dir, "config.json")
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := cfg.Supported(); err != nil {
		return nil, fmt.Errorf("hf: %s: %w", cfgPath, err)
	}
	weights, err := weightsPath(dir)
	if err != nil {
		return nil, err
	}
	ck, err := safetensors.Open(weights)
	if err != nil {
		return nil, fmt.Errorf("hf: %s: %w", dir, err)
	}
	m, err := resolve(dir, cfg, ck)
	if err != nil {
		ck.Close()
		return nil, err
	}
	tok := filepath.Join(dir, "tokenizer.json")
	if st, err := os.Stat(tok); err == nil && st.Mode().IsRegular() {
		m.TokenizerPath = tok
	}
	return m, nil
}

// weightsPath picks the file to open the way transformers' from_pretrained does (and
// safetensors.Open on a folder): model.safetensors first, then the shard index. Other
// *.safetensors files are not guessed at, since transformers would not load them either (a
// Mistral consolidated.safetensors uses other tensor names). When there are no weights the
// error names what the folder does hold, since the usual cause is a PyTorch-only (.bin)
// checkpoint that must be converted first.
func weightsPath(dir string) (string, error) {
	for _, name := range []string{"model.safetensors", "model.safetensors.index.json"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("hf: %w", err)
		}
	}
	const want = "want model.safetensors or model.safetensors.index.json"
	if found, _ := filepath.Glob(filepath.Join(dir, "*.safetensors")); len(found) > 0 {
		return "", fmt.Errorf("hf: %s: no safetensors weights under the names transformers loads (%s; found %s)", dir, want, filepath.Base(found[0]))
	}
	if bins, _ := filepath.Glob(filepath.Join(dir, "*.bin")); len(bins) > 0 {
		return "", fmt.Errorf("hf: %s: no safetensors weights, only PyTorch .bin files (%s); convert the checkpoint to safetensors first", dir, filepath.Base(bins[0]))
	}
	return "", fmt.Errorf("hf: %s: no safetensors weights (%s)", dir, want)
}

// resolver looks tensors up by name, checks them, and remembers which ones the model uses,
// so that what is left over can be reported.
type resolver struct {
	ck       *safetensors.Checkpoint
	used     map[string]bool
	problems []string
}

func (r *resolver) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// tensor returns the named tensor after checking that it exists, is floating point and has
// the wanted shape; each failure is recorded, not returned, so that all are reported.
func (r *resolver) tensor(name string, want ...int) safetensors.TensorInfo {
	t, ok := r.ck.Info(name)
	if !ok {
		r.problem("%s: missing (want shape %v)", name, want)
		return safetensors.TensorInfo{Name: name}
	}
	r.used[name] = true
	switch t.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		r.problem("%s: dtype %s is not supported (want F32, F16 or BF16)", name, t.DType)
	}
	if !shapeIs(t.Shape, want) {
		r.problem("%s: shape %v, want %v", name, t.Shape, want)
	}
	return t
}

func (r *resolver) linear(prefix string, out, in int, bias bool) Linear {
	l := Linear{Weight: r.tensor(prefix+".weight", out, in), Out: out, In: in}
	if bias {
		b := r.tensor(prefix+".bias", out)
		l.Bias = &b
	}
	return l
}

func shapeIs(got []int64, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != int64(want[i]) {
			return false
		}
	}
	return true
}

// benign reports tensors that transformers itself ignores on load: the rotary inverse
// frequencies that old versions saved as buffers and that are recomputed from the config.
func benign(name string) bool {
	return strings.HasSuffix(name, "rotary_emb.inv_freq")
}

// layerIndex returns N for a tensor named model.layers.N.…
func layerIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, ".")
	if !ok || num == "" || len(num) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// checkpointLayers returns the number of decoder layers the checkpoint's tensor names imply:
// one more than the highest model.layers.N.
func checkpointLayers(ck *safetensors.Checkpoint) int {
	n := 0
	for _, t := range ck.Tensors() {
		if i, ok := layerIndex(t.Name); ok && i+1 > n {
			n = i + 1
		}
	}
	return n
}

func describeLayers(n int) string {
	switch n {
	case 0:
		return "no decoder layers (no model.layers.N tensors)"
	case 1:
		return "1 decoder layer (model.layers.0)"
	}
	return fmt.Sprintf("%d decoder layers (model.layers.0 to model.layers.%d)", n, n-1)
}

// listSome lists the first k names, then how many more there are.
func listSome(names []string, k int) string {
	if len(names) <= k {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:k], ", "), len(names)-k)
}

// resolve maps the checkpoint's tensors onto the config's layers.
func resolve(dir string, cfg Config, ck *safetensors.Checkpoint) (*Model, error) {
	r := &resolver{ck: ck, used: map[string]bool{}}
	h, inter, vocab := cfg.HiddenSize, cfg.IntermediateSize, cfg.VocabSize
	qOut, kvOut := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim

	// A config claiming more layers than the checkpoint has tensors is reported as such
	// (counting layers), instead of listing (and allocating) every absent layer of an absurd
	// count; a few absent layers are listed tensor by tensor below. A config claiming fewer
	// layers than the checkpoint holds would silently drop the checkpoint's last layers.
	ckLayers := checkpointLayers(ck)
	if cfg.NumLayers > len(ck.Tensors()) {
		return nil, &MismatchError{Dir: dir, Problems: []string{
			fmt.Sprintf("config.json has num_hidden_layers %d but the checkpoint holds only %s", cfg.NumLayers, describeLayers(ckLayers)),
		}}
	}
	if cfg.NumLayers < ckLayers {
		var extra []string
		for _, t := range ck.Tensors() {
			if i, ok := layerIndex(t.Name); ok && i >= cfg.NumLayers {
				extra = append(extra, t.Name)
			}
		}
		return nil, &MismatchError{Dir: dir, Problems: []string{
			fmt.Sprintf("config.json has num_hidden_layers %d but the checkpoint holds %s: %s of layers %d to %d would be ignored: %s",
				cfg.NumLayers, describeLayers(ckLayers), plural(len(extra), "tensor"), cfg.NumLayers, ckLayers-1, listSome(extra, 3)),
		}}
	}
	m := &Model{Dir: dir, Config: cfg, Tensors: ck}
	m.Embed = r.tensor("model.embed_tokens.weight", vocab, h)
	m.Layers = make([]Layer, cfg.NumLayers)
	for i := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		m.Layers[i] = Layer{
			InputNorm:    r.tensor(p+"input_layernorm.weight", h),
			Q:            r.linear(p+"self_attn.q_proj", qOut, h, cfg.AttentionBias),
			K:            r.linear(p+"self_attn.k_proj", kvOut, h, cfg.AttentionBias),
			V:            r.linear(p+"self_attn.v_proj", kvOut, h, cfg.AttentionBias),
			O:            r.linear(p+"self_attn.o_proj", h, qOut, cfg.AttentionOutputBias),
			PostAttnNorm: r.tensor(p+"post_attention_layernorm.weight", h),
			Gate:         r.linear(p+"mlp.gate_proj", inter, h, cfg.MLPBias),
			Up:           r.linear(p+"mlp.up_proj", inter, h, cfg.MLPBias),
			Down:         r.linear(p+"mlp.down_proj", h, inter, cfg.MLPBias),
		}
	}
	m.FinalNorm = r.tensor("model.norm.weight", h)

	_, hasHead := ck.Info("lm_head.weight")
	switch {
	case cfg.TieWordEmbeddings:
		// transformers ties the head to the embedding after loading, so a stored
		// lm_head.weight is overwritten; do the same, but say so, since a head that differs
		// from the embedding would then be silently dropped.
		m.LMHead, m.Tied = m.Embed, true
		if hasHead {
			r.used["lm_head.weight"] = true
			m.Warnings = append(m.Warnings, "lm_head.weight is present but tie_word_embeddings is true; using model.embed_tokens.weight as the output head, as transformers does")
		}
	case hasHead:
		m.LMHead = r.tensor("lm_head.weight", vocab, h)
	default:
		r.problem("lm_head.weight: missing (want shape %v; tie_word_embeddings is false, so the head is not the embedding)", []int{vocab, h})
	}

	var unexpected []string
	for _, t := range ck.Tensors() {
		if !r.used[t.Name] && !benign(t.Name) {
			unexpected = append(unexpected, t.String())
		}
	}
	if len(r.problems) > 0 {
		return nil, &MismatchError{Dir: dir, Problems: r.problems, Unexpected: unexpected}
	}
	for _, u := range unexpected {
		m.Warnings = append(m.Warnings, "unexpected tensor "+u+" ignored")
	}
	return m, nil
}

// Close releases the checkpoint's files. The TensorInfo values stay valid as descriptions,
// but their data can no longer be read. Closing twice is harmless.
func (m *Model) Close() error {
	if m == nil || m.Tensors == nil {
		return nil
	}
	err := m.Tensors.Close()
	m.Tensors = nil
	return err
}

// AllTensors returns every tensor the model uses, each once (a tied head is the embedding),
// in model order: embedding, layers, final norm, head. Tensors in the checkpoint that the
// model ignores are not included.
func (m *Model) AllTensors() []safetensors.TensorInfo {
	out := []safetensors.TensorInfo{m.Embed}
	lin := func(l Linear) {
		out = append(out, l.Weight)
		if l.Bias != nil {
			out = append(out, *l.Bias)
		}
	}
	for _, l := range m.Layers {
		out = append(out, l.InputNorm)
		lin(l.Q)
		lin(l.K)
		lin(l.V)
		lin(l.O)
		out = append(out, l.PostAttnNorm)
		lin(l.Gate)
		lin(l.Up)
		lin(l.Down)
	}
	out = append(out, m.FinalNorm)
	if !m.Tied {
		out = append(out, m.LMHead)
	}
	return out
}

// NumParams returns the number of parameters, counting a tied embedding once, as
// transformers' num_parameters does.
func (m *Model) NumParams() int64 {
	var n int64
	for _, t := range m.AllTensors() {
		n += t.NumElements()
	}
	return n
}

// DTypes returns the bytes of weights stored in each dtype, for reporting what a checkpoint
// is made of (checkpoints that mix F32 norms with BF16 matrices are common).
func (m *Model) DTypes() map[safetensors.DType]int64 {
	out := map[safetensors.DType]int64{}
	for _, t := range m.AllTensors() {
		out[t.DType] += t.NumElements() * int64(t.DType.Size())
	}
	return out
}
