package recipes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

// Module is what a recipe does to one weight matrix of a model.
type Module struct {
	// Name is the Hugging Face module name: model.embed_tokens, lm_head, or
	// model.layers.N.self_attn.{q,k,v,o}_proj and model.layers.N.mlp.{gate,up,down}_proj.
	Name string `json:"name"`
	// Kind is the last segment of Name (q_proj, ..., down_proj, embed_tokens, lm_head).
	Kind string `json:"kind"`
	// Layer is the decoder layer, or -1 for the embeddings and lm_head.
	Layer int `json:"layer"`
	Out   int `json:"out"`
	In    int `json:"in"`
	// Skip is the pattern that keeps the module in 16 bits; "" when it is quantized.
	Skip string `json:"skip,omitempty"`
	// GroupSize is the group length along In that the module is quantized with: the
	// recipe's, or In when it is quantized per channel (by the recipe or by fallback).
	// 0 when skipped.
	GroupSize int `json:"group_size"`
	// Fallback is set when the recipe's group size does not divide In, so the module is
	// quantized per channel instead.
	Fallback bool `json:"fallback"`
}

// Plan is what a recipe will do to a model, decided from the model's config alone, before
// any weight is read.
type Plan struct {
	Modules []Module
}

// Fallbacks returns the modules that fall back to per-channel quantization.
func (p *Plan) Fallbacks() []Module {
	var out []Module
	for _, m := range p.Modules {
		if m.Fallback {
			out = append(out, m)
		}
	}
	return out
}

// modules lists the weight matrices of a LLaMA-family model in checkpoint order.
func modules(cfg hf.Config) []Module {
	h, hd := cfg.HiddenSize, cfg.HeadDim
	ms := []Module{{Name: "model.embed_tokens", Kind: "embed_tokens", Layer: -1, Out: cfg.VocabSize, In: h}}
	for l := 0; l < cfg.NumLayers; l++ {
		for _, k := range []struct {
			part, kind string
			out, in    int
		}{
			{"self_attn", "q_proj", cfg.NumHeads * hd, h},
			{"self_attn", "k_proj", cfg.NumKVHeads * hd, h},
			{"self_attn", "v_proj", cfg.NumKVHeads * hd, h},
			{"self_attn", "o_proj", h, cfg.NumHeads * hd},
			{"mlp", "gate_proj", cfg.IntermediateSize, h},
			{"mlp", "up_proj", cfg.IntermediateSize, h},
			{"mlp", "down_proj", h, cfg.IntermediateSize},
		} {
			ms = append(ms, Module{
				Name: fmt.Sprintf("model.layers.%d.%s.%s", l, k.part, k.kind),
				Kind: k.kind, Layer: l, Out: k.out, In: k.in,
			})
		}
	}
	return append(ms, Module{Name: "lm_head", Kind: "lm_head", Layer: -1, Out: cfg.VocabSize, In: h})
}

// MatchModule reports whether a skip pattern matches a module name: the pattern's
// dot-separated segments, each a path.Match glob, match consecutive segments of the name.
func MatchModule(pattern, name string) bool {
	ps, ns := strings.Split(pattern, "."), strings.Split(name, ".")
	for i := 0; i+len(ps) <= len(ns); i++ {
		ok := true
		for j, p := range ps {
			if m, _ := path.Match(p, ns[i+j]); !m {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// ValidateForModel checks the recipe against a model's config and returns the plan: which
// modules are skipped, which are quantized with which group size, and which fall back to
// per-channel because the group size does not divide their input dimension. It is an error
// when a layer would fall back and weights.fallback is error, when a skip pattern matches
// nothing (a typo there would silently quantize lm_head), when calibration sequences are
// longer than the model's context, or when the model is one Odyssey cannot run.
func (r *Recipe) ValidateForModel(cfg hf.Config) (*Plan, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	d := newDiag(r.fileName(), r.src)
	if err := cfg.Supported(); err != nil {
		var reasons []string
		for _, e := range unjoin(err) {
			reasons = append(reasons, e.Error())
		}
		d.addAt(pos{}, "model: %s", strings.Join(reasons, "; "))
	}
	for name, v := range map[string]int{
		"hidden_size": cfg.HiddenSize, "intermediate_size": cfg.IntermediateSize,
		"num_hidden_layers": cfg.NumLayers, "num_attention_heads": cfg.NumHeads,
		"num_key_value_heads": cfg.NumKVHeads, "head_dim": cfg.HeadDim, "vocab_size": cfg.VocabSize,
	} {
		if v <= 0 {
			d.addAt(pos{}, "model: config has %s %d", name, v)
		}
	}
	if len(d.probs) > 0 {
		return nil, d.err()
	}
	if n := cfg.MaxPositionEmbeddings; n > 0 && r.Calibration.SeqLen > n {
		d.at([]string{"calibration.seq_len"}, "calibration.seq_len %d is longer than the model's context (max_position_embeddings %d)", r.Calibration.SeqLen, n)
	}

	plan := &Plan{Modules: modules(cfg)}
	used := make([]bool, len(r.Skip))
	for i := range plan.Modules {
		m := &plan.Modules[i]
		for j, p := range r.Skip {
			if MatchModule(p, m.Name) {
				used[j] = true
				if m.Skip == "" {
					m.Skip = p
				}
			}
		}
		switch {
		case m.Skip != "":
		case !r.Weights.Grouped():
			m.GroupSize = m.In
		case m.In%r.Weights.GroupSize == 0:
			m.GroupSize = r.Weights.GroupSize
		default:
			m.GroupSize, m.Fallback = m.In, true
		}
	}
	for j, p := range r.Skip {
		if !used[j] {
			ip := fmt.Sprintf("skip[%d]", j)
			msg := fmt.Sprintf("%s: pattern %q matches no module of this model (its modules are model.embed_tokens, lm_head and model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj for N from 0 to %d", ip, p, cfg.NumLayers-1)
			if s := closest(p, moduleWords); s != "" && !strings.Contains(p, ".") {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.at([]string{ip, "skip"}, "%s)", msg)
		}
	}
	if r.Weights.Grouped() && r.Weights.Fallback == FallbackError {
		for _, g := range plan.fallbackGroups() {
			d.at([]string{"weights.fallback", "weights.group_size"},
				"weights.group_size %d does not divide the input dimension %d of %s, and weights.fallback is error (per-channel would quantize it)",
				r.Weights.GroupSize, g.in, g.what)
		}
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return plan, nil
}

// moduleWords are the segments skip patterns are usually made of, for suggestions.
var moduleWords = []string{"model", "layers", "self_attn", "mlp", "embed_tokens", "lm_head",
	"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// unjoin splits an errors.Join result into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

type fallbackGroup struct {
	what string // "down_proj in layers 0-4", or "lm_head"
	in   int
}

// fallbackGroups summarises the fallbacks by kind, since a kind's input dimension is the
// same in every layer.
func (p *Plan) fallbackGroups() []fallbackGroup {
	var out []fallbackGroup
	for _, g := range groupByKind(p.Fallbacks()) {
		out = append(out, fallbackGroup{what: g.describe(), in: g.in})
	}
	return out
}

type kindGroup struct {
	kind   string
	in     int
	layers []int
	skip   string
}

func (g kindGroup) describe() string {
	if len(g.layers) == 0 {
		return g.kind
	}
	return g.kind + " in " + layerRanges(g.layers)
}

// groupByKind groups modules of the same kind (and skip pattern), keeping first-seen order.
func groupByKind(ms []Module) []kindGroup {
	var out []kindGroup
	index := map[string]int{}
	for _, m := range ms {
		key := m.Kind + "\x00" + m.Skip
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			out = append(out, kindGroup{kind: m.Kind, in: m.In, skip: m.Skip})
		}
		if m.Layer >= 0 {
			out[i].layers = append(out[i].layers, m.Layer)
		}
	}
	return out
}

// layerRanges writes sorted layer indices compactly: "layer 3", "layers 0-4", "layers 0-2, 5".
func layerRanges(ls []int) string {
	var parts []string
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(ls[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ls[i], ls[j]))
		}
		i = j + 1
	}
	if len(ls) == 1 {
		return "layer " + parts[0]
	}
	return "layers " + strings.Join(parts, ", ")
}

// Summary describes the plan in a few lines for people: what is kept in 16 bits and what
// falls back to per-channel.
func (p *Plan) Summary() []string {
	var lines []string
	var skipped []Module
	for _, m := range p.Modules {
		if m.Skip != "" {
			skipped = append(skipped, m)
		}
	}
	for _, g := range groupByKind(skipped) {
		lines = append(lines, fmt.Sprintf("skip: %s kept in 16 bits (pattern %q)", g.describe(), g.skip))
	}
	for _, g := range groupByKind(p.Fallbacks()) {
		lines = append(lines, fmt.Sprintf("fallback: %s quantized per channel (input dimension %d is not a multiple of the group size)", g.describe(), g.in))
	}
	return lines
}

// ValidateFiles checks that the files the recipe names exist, so that a missing calibration
// file fails when the recipe is checked rather than after the model is loaded.
func (r *Recipe) ValidateFiles() error {
	p := r.CalibrationPath()
	if p == "" {
		return nil
	}
	d := newDiag(r.fileName(), r.src)
	switch st, err := os.Stat(p); {
	case errors.Is(err, fs.ErrNotExist):
		d.at([]string{"calibration.data"}, "calibration.data: there is no file %s", p)
	case err != nil:
		d.at([]string{"calibration.data"}, "calibration.data: %v", err)
	case st.IsDir():
		d.at([]string{"calibration.data"}, "calibration.data: %s is a folder, not a file", p)
	}
	return d.err()
}
