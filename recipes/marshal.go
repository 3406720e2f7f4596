package recipes

import (
	"bytes"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Marshal writes the recipe as canonical YAML: every value that applies, in the schema's
// order, none that does not, no base (everything is resolved). The bytes depend only on
// what the recipe means (and its description), so they can go into a quantized
// checkpoint's provenance and be compared or hashed; Parse reads them back to an equal
// recipe.
func (r *Recipe) Marshal() ([]byte, error) {
	c := r.clone()
	c.normalize()
	m := mapping()
	add(m, "version", num(int64(c.Version)))
	if c.Description != "" {
		add(m, "description", str(c.Description))
	}

	cal := mapping()
	add(cal, "data", str(c.Calibration.Data))
	if c.applies("calibration.format") {
		add(cal, "format", str(c.Calibration.Format))
	}
	add(cal, "samples", num(int64(c.Calibration.Samples)))
	add(cal, "seq_len", num(int64(c.Calibration.SeqLen)))
	add(cal, "seed", num(c.Calibration.Seed))
	add(cal, "propagate", str(string(c.Calibration.Propagate)))
	add(m, "calibration", cal)

	eq := mapping()
	add(eq, "method", str(string(c.Equalization.Method)))
	if c.applies("equalization.statistic") {
		add(eq, "statistic", str(string(c.Equalization.Statistic)))
	}
	if c.applies("equalization.alpha") {
		add(eq, "alpha", float(c.Equalization.Alpha))
	}
	if c.applies("equalization.pairs") {
		pairs := make([]string, len(c.Equalization.Pairs))
		for i, p := range c.Equalization.Pairs {
			pairs[i] = string(p)
		}
		add(eq, "pairs", list(pairs))
	}
	add(m, "equalization", eq)

	act := mapping()
	add(act, "bits", num(int64(c.Activations.Bits)))
	if c.applies("activations.policy") {
		add(act, "policy", str(string(c.Activations.Policy)))
	}
	if c.applies("activations.thresholds") {
		t := mapping()
		add(t, "v0", float(c.Activations.Thresholds.V0))
		add(t, "v1", float(c.Activations.Thresholds.V1))
		add(act, "thresholds", t)
	}
	add(m, "activations", act)

	w := mapping()
	add(w, "bits", num(int64(c.Weights.Bits)))
	if c.Weights.Grouped() {
		add(w, "group_size", num(int64(c.Weights.GroupSize)))
	} else {
		add(w, "group_size", str("per-channel"))
	}
	add(w, "method", str(string(c.Weights.Method)))
	clip := mapping()
	add(clip, "search", boolean(c.Weights.Clip.Search))
	if c.applies("weights.clip.min") {
		add(clip, "min", float(c.Weights.Clip.Min))
		add(clip, "steps", num(int64(c.Weights.Clip.Steps)))
	}
	if c.applies("weights.clip.activation_aware") {
		add(clip, "activation_aware", boolean(c.Weights.Clip.ActivationAware))
	}
	add(w, "clip", clip)
	if c.applies("weights.gptq") {
		g := mapping()
		add(g, "block_size", num(int64(c.Weights.GPTQ.BlockSize)))
		add(g, "damp", float(c.Weights.GPTQ.Damp))
		add(g, "act_order", boolean(c.Weights.GPTQ.ActOrder))
		add(g, "static_groups", boolean(c.Weights.GPTQ.StaticGroups))
		add(w, "gptq", g)
	}
	if c.applies("weights.fallback") {
		add(w, "fallback", str(string(c.Weights.Fallback)))
	}
	add(m, "weights", w)

	is := mapping()
	add(is, "enabled", boolean(c.IntegerScale.Enabled))
	if c.applies("integer_scale.amplifier") {
		if c.IntegerScale.Amplifier == MaxSafe {
			add(is, "amplifier", str("max-safe"))
		} else {
			add(is, "amplifier", num(int64(c.IntegerScale.Amplifier)))
		}
	}
	if c.applies("integer_scale.max_amplifier") {
		add(is, "max_amplifier", num(int64(c.IntegerScale.MaxAmplifier)))
	}
	add(m, "integer_scale", is)

	add(m, "skip", list(c.Skip))

	out := mapping()
	add(out, "shard_size", str(FormatSize(c.Output.ShardSize)))
	add(out, "format", str(string(c.Output.Format)))
	add(m, "output", out)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func add(m *yaml.Node, key string, v *yaml.Node) { m.Content = append(m.Content, str(key), v) }

// str is a string; the encoder quotes it when it would otherwise read back as another type.
func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// Numbers carry no tag, so 15.0 is written 15 (float fields accept integers) rather than
// "!!float 15".
func num(n int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatInt(n, 10)}
}

func float(x float64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatFloat(x, 'g', -1, 64)}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatBool(b)}
}

// list is a flow-style list of strings: short, and readable on one line.
func list(xs []string) *yaml.Node {
	l := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, x := range xs {
		l.Content = append(l.Content, str(x))
	}
	return l
}
