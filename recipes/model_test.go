package recipes

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

// The two configs of the project's test models, written out so that these tests need no
// files: testdata/tiny-llama, and the shared stories260K (whose intermediate size 172 is a
// multiple of neither 64 nor 128).
var (
	tinyLlama = hf.Config{
		Architecture: "LlamaForCausalLM", ModelType: "llama", HiddenAct: "silu",
		HiddenSize: 256, IntermediateSize: 768, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadDim: 64,
		VocabSize: 4096, MaxPositionEmbeddings: 1024, Rope: hf.Rope{Theta: 1e4, Type: "default"},
	}
	stories260K = hf.Config{
		Architecture: "LlamaForCausalLM", ModelType: "llama", HiddenAct: "silu",
		HiddenSize: 64, IntermediateSize: 172, NumLayers: 5, NumHeads: 8, NumKVHeads: 4, HeadDim: 8,
		VocabSize: 512, MaxPositionEmbeddings: 512, Rope: hf.Rope{Theta: 1e4, Type: "default"},
		TieWordEmbeddings: true,
	}
)

// kinds summarises a plan as kind → effective group size of its quantized modules (the
// same in every layer), with "skip" for kept modules and a "!" suffix for fallbacks.
func kinds(p *Plan) map[string]string {
	out := map[string]string{}
	for _, m := range p.Modules {
		v := fmt.Sprint(m.GroupSize)
		switch {
		case m.Skip != "":
			v = "skip"
		case m.Fallback:
			v += "!"
		}
		if prev, ok := out[m.Kind]; ok && prev != v {
			panic(fmt.Sprintf("kind %s differs between layers: %s, %s", m.Kind, prev, v))
		}
		out[m.Kind] = v
	}
	return out
}

func TestValidateForModel(t *testing.T) {
	for _, c := range []struct {
		name   string
		recipe string
		cfg    hf.Config
		want   map[string]string
		lines  []string
	}{
		{
			name: "tiny-llama g128 divides everything", recipe: "version: 1\n", cfg: tinyLlama,
			want: map[string]string{"embed_tokens": "skip", "lm_head": "skip",
				"q_proj": "128", "k_proj": "128", "v_proj": "128", "o_proj": "128",
				"gate_proj": "128", "up_proj": "128", "down_proj": "128"},
			lines: []string{
				`skip: embed_tokens kept in 16 bits (pattern "embed_tokens")`,
				`skip: lm_head kept in 16 bits (pattern "lm_head")`,
			},
		},
		{
			name: "stories260K g128 divides nothing", recipe: "version: 1\n", cfg: stories260K,
			want: map[string]string{"embed_tokens": "skip", "lm_head": "skip",
				"q_proj": "64!", "k_proj": "64!", "v_proj": "64!", "o_proj": "64!",
				"gate_proj": "64!", "up_proj": "64!", "down_proj": "172!"},
			lines: []string{
				`skip: embed_tokens kept in 16 bits (pattern "embed_tokens")`,
				`skip: lm_head kept in 16 bits (pattern "lm_head")`,
				"fallback: q_proj in layers 0-4 quantized per channel (input dimension 64 is not a multiple of the group size)",
				"fallback: k_proj in layers 0-4 quantized per channel (input dimension 64 is not a multiple of the group size)",
				"fallback: v_proj in layers 0-4 quantized per channel (input dimension 64 is not a multiple of the group size)",
				"fallback: o_proj in layers 0-4 quantized per channel (input dimension 64 is not a multiple of the group size)",
				"fallback: gate_proj in layers 0-4 quantized per channel (input dimension 64 is not a multiple of the group size)",
				"fallback: up_proj in layers 0-4 quantized per channel (input dimension 64 is not a multiple of the group size)",
				"fallback: down_proj in layers 0-4 quantized per channel (input dimension 172 is not a multiple of the group size)",
			},
		},
		{
			name: "stories260K g64 leaves only down_proj", recipe: "version: 1\nweights: {group_size: 64}\nskip: [lm_head, embed_tokens, layers.2]\n", cfg: stories260K,
			want: map[string]string{"embed_tokens": "skip", "lm_head": "skip",
				"q_proj": "64", "k_proj": "64", "v_proj": "64", "o_proj": "64",
				"gate_proj": "64", "up_proj": "64", "down_proj": "172!"},
			lines: []string{
				`skip: embed_tokens kept in 16 bits (pattern "embed_tokens")`,
				`skip: q_proj in layer 2 kept in 16 bits (pattern "layers.2")`,
				`skip: k_proj in layer 2 kept in 16 bits (pattern "layers.2")`,
				`skip: v_proj in layer 2 kept in 16 bits (pattern "layers.2")`,
				`skip: o_proj in layer 2 kept in 16 bits (pattern "layers.2")`,
				`skip: gate_proj in layer 2 kept in 16 bits (pattern "layers.2")`,
				`skip: up_proj in layer 2 kept in 16 bits (pattern "layers.2")`,
				`skip: down_proj in layer 2 kept in 16 bits (pattern "layers.2")`,
				`skip: lm_head kept in 16 bits (pattern "lm_head")`,
				"fallback: down_proj in layers 0-1, 3-4 quantized per channel (input dimension 172 is not a multiple of the group size)",
			},
		},
		{
			name: "per-channel never falls back", recipe: "version: 1\nbase: w8a8-smoothquant\nskip: []\n", cfg: stories260K,
			want: map[string]string{"embed_tokens": "64", "lm_head": "64",
				"q_proj": "64", "k_proj": "64", "v_proj": "64", "o_proj": "64",
				"gate_proj": "64", "up_proj": "64", "down_proj": "172"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := mustParse(t, c.recipe)
			p, err := r.ValidateForModel(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			// A layer's own skip is checked here, so that kinds() sees one value per kind.
			var rest Plan
			for _, m := range p.Modules {
				if m.Skip == "layers.2" != (m.Layer == 2 && strings.Contains(c.recipe, "layers.2")) {
					t.Errorf("%s: skip %q", m.Name, m.Skip)
				}
				if m.Skip != "layers.2" {
					rest.Modules = append(rest.Modules, m)
				}
			}
			if got := kinds(&rest); !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan %v, want %v", got, c.want)
			}
		})
		t.Run(c.name+"/summary", func(t *testing.T) {
			p, _ := mustParse(t, c.recipe).ValidateForModel(c.cfg)
			if got := p.Summary(); !reflect.DeepEqual(got, c.lines) {
				t.Errorf("summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.lines, "\n"))
			}
		})
	}

	p, _ := mustParse(t, "version: 1\n").ValidateForModel(tinyLlama)
	if n := len(p.Modules); n != 2+4*7 {
		t.Errorf("%d modules, want %d", n, 2+4*7)
	}
	down := p.Modules[len(p.Modules)-2]
	if down.Name != "model.layers.3.mlp.down_proj" || down.Out != 256 || down.In != 768 || down.Layer != 3 {
		t.Errorf("last down_proj: %+v", down)
	}
	if len(p.Fallbacks()) != 0 {
		t.Errorf("tiny-llama fallbacks: %v", p.Fallbacks())
	}
	q := p.Modules[1]
	if q.Name != "model.layers.0.self_attn.q_proj" || q.Out != 256 || q.In != 256 || p.Modules[2].Out != 128 {
		t.Errorf("q_proj %+v, k_proj %+v", q, p.Modules[2])
	}
}

func TestValidateForModelErrors(t *testing.T) {
	for _, c := range []struct {
		recipe string
		cfg    hf.Config
		want   string
	}{
		{"version: 1\nweights:\n  group_size: 64\n  fallback: error\n", stories260K,
			"test.yaml:4:13: weights.group_size 64 does not divide the input dimension 172 of down_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)"},
		{"version: 1\nweights: {fallback: error}\n", stories260K,
			strings.Join([]string{
				"test.yaml:2:21: weights.group_size 128 does not divide the input dimension 64 of q_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)",
				"test.yaml:2:21: weights.group_size 128 does not divide the input dimension 64 of k_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)",
				"test.yaml:2:21: weights.group_size 128 does not divide the input dimension 64 of v_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)",
				"test.yaml:2:21: weights.group_size 128 does not divide the input dimension 64 of o_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)",
				"test.yaml:2:21: weights.group_size 128 does not divide the input dimension 64 of gate_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)",
				"test.yaml:2:21: weights.group_size 128 does not divide the input dimension 64 of up_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)",
				"test.yaml:2:21: weights.group_size 128 does not divide the input dimension 172 of down_proj in layers 0-4, and weights.fallback is error (per-channel would quantize it)",
			}, "\n")},
		{"version: 1\nskip:\n  - lm_heads\n  - embed_tokens\n  - layers.7\n  - norm\n", tinyLlama,
			strings.Join([]string{
				`test.yaml:3:5: skip[0]: pattern "lm_heads" matches no module of this model (its modules are model.embed_tokens, lm_head and model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj for N from 0 to 3; did you mean "lm_head"?)`,
				`test.yaml:5:5: skip[2]: pattern "layers.7" matches no module of this model (its modules are model.embed_tokens, lm_head and model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj for N from 0 to 3)`,
				`test.yaml:6:5: skip[3]: pattern "norm" matches no module of this model (its modules are model.embed_tokens, lm_head and model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj for N from 0 to 3)`,
			}, "\n")},
		{"version: 1\ncalibration: {seq_len: 2048}\n", stories260K,
			"test.yaml:2:24: calibration.seq_len 2048 is longer than the model's context (max_position_embeddings 512)"},
	} {
		_, err := mustParse(t, c.recipe).ValidateForModel(c.cfg)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\ngot:\n%v\nwant:\n%s", c.recipe, err, c.want)
		}
	}
	mixtral := tinyLlama
	mixtral.ModelType, mixtral.NumLocalExperts = "mixtral", 8
	if _, err := mustParse(t, "version: 1\n").ValidateForModel(mixtral); err == nil || !strings.Contains(err.Error(), "test.yaml: model: Mixtral") {
		t.Errorf("mixtral: %v", err)
	}
	// An invalid recipe is reported as such, before the model is looked at.
	r := defaults()
	r.Weights.Bits = 3
	if _, err := r.ValidateForModel(tinyLlama); err == nil || !strings.Contains(err.Error(), "weights.bits") {
		t.Errorf("invalid recipe: %v", err)
	}
}

func TestMatchModule(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"lm_head", "lm_head", true},
		{"lm_head", "model.embed_tokens", false},
		{"embed_tokens", "model.embed_tokens", true},
		{"down_proj", "model.layers.3.mlp.down_proj", true},
		{"*.down_proj", "model.layers.3.mlp.down_proj", true},
		{"mlp.down_proj", "model.layers.3.mlp.down_proj", true},
		{"layers.3", "model.layers.3.mlp.down_proj", true},
		{"layers.1", "model.layers.10.mlp.down_proj", false},
		{"layers.1?", "model.layers.10.mlp.down_proj", true},
		{"layers.[0-2].self_attn", "model.layers.1.self_attn.q_proj", true},
		{"layers.[0-2].self_attn", "model.layers.3.self_attn.q_proj", false},
		{"layers.*.mlp", "model.layers.0.mlp.up_proj", true},
		{"model.layers.0.mlp.up_proj", "model.layers.0.mlp.up_proj", true},
		{"*_proj", "model.layers.0.self_attn.o_proj", true},
		{"proj", "model.layers.0.self_attn.o_proj", false},
		{"mlp.layers", "model.layers.0.mlp.up_proj", false},
		{"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj", false},
	} {
		if got := MatchModule(c.pattern, c.name); got != c.want {
			t.Errorf("MatchModule(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}
