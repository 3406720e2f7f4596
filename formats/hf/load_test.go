package hf

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// fake is one tensor of a hand-written safetensors file; its data is zeros.
type fake struct {
	name  string
	dtype safetensors.DType
	shape []int64
}

// writeSafetensors writes a safetensors file by hand (8-byte little-endian header length,
// JSON header, data), so that these tests do not depend on a writer.
func writeSafetensors(t *testing.T, path string, tensors []fake) {
	t.Helper()
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var off int64
	for _, x := range tensors {
		n := int64(x.dtype.Size())
		for _, d := range x.shape {
			n *= d
		}
		header[x.name] = map[string]any{"dtype": x.dtype, "shape": x.shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(h)%8 != 0 { // the format pads the header with spaces to keep data aligned
		h = append(h, ' ')
	}
	buf := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	buf = append(buf, h...)
	buf = append(buf, make([]byte, off)...)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// synth describes a small synthetic model: hidden 8, 2 layers, 2 heads of 4 with 1 KV head,
// intermediate 12, vocab 10, so that every dimension differs and a swapped one shows.
const synthConfig = `{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 2,
  "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4, "vocab_size": 10,
  "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "torch_dtype": "float16"
}`

// synthTensors returns the tensors a config like synthConfig implies, in F16.
func synthTensors(layers int, head bool, qkvBias bool) []fake {
	f := func(name string, shape ...int64) fake { return fake{name, safetensors.F16, shape} }
	ts := []fake{f("model.embed_tokens.weight", 10, 8), f("model.norm.weight", 8)}
	if head {
		ts = append(ts, f("lm_head.weight", 10, 8))
	}
	for i := range layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts,
			f(p+"input_layernorm.weight", 8),
			f(p+"self_attn.q_proj.weight", 8, 8),
			f(p+"self_attn.k_proj.weight", 4, 8),
			f(p+"self_attn.v_proj.weight", 4, 8),
			f(p+"self_attn.o_proj.weight", 8, 8),
			f(p+"post_attention_layernorm.weight", 8),
			f(p+"mlp.gate_proj.weight", 12, 8),
			f(p+"mlp.up_proj.weight", 12, 8),
			f(p+"mlp.down_proj.weight", 8, 12),
		)
		if qkvBias {
			ts = append(ts, f(p+"self_attn.q_proj.bias", 8), f(p+"self_attn.k_proj.bias", 4), f(p+"self_attn.v_proj.bias", 4))
		}
	}
	return ts
}

// writeModel makes a checkpoint folder with the config and one model.safetensors.
func writeModel(t *testing.T, config []byte, tensors []fake) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
		t.Fatal(err)
	}
	writeSafetensors(t, filepath.Join(dir, "model.safetensors"), tensors)
	return dir
}

// edit returns ts with the named tensor replaced by fn's result, or removed when fn returns
// a tensor with an empty name.
func edit(ts []fake, name string, fn func(fake) fake) []fake {
	var out []fake
	for _, x := range ts {
		if x.name == name {
			x = fn(x)
			if x.name == "" {
				continue
			}
		}
		out = append(out, x)
	}
	return out
}

func drop(fake) fake { return fake{} }

func TestLoadSynthetic(t *testing.T) {
	ts := synthTensors(2, true, false)
	ts = append(ts,
		fake{"model.layers.0.self_attn.rotary_emb.inv_freq", safetensors.F32, []int64{2}}, // benign
		fake{"model.extra.weight", safetensors.F16, []int64{3}},                           // unexpected
	)
	ts = edit(ts, "model.norm.weight", func(x fake) fake { x.dtype = safetensors.F32; return x })
	dir := writeModel(t, []byte(synthConfig), ts)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if m.Tied || m.LMHead.Name != "lm_head.weight" || len(m.Layers) != 2 {
		t.Errorf("tied %v head %q layers %d", m.Tied, m.LMHead.Name, len(m.Layers))
	}
	l := m.Layers[1]
	if l.K.Weight.Name != "model.layers.1.self_attn.k_proj.weight" || l.K.Out != 4 || l.K.In != 8 || l.K.Bias != nil {
		t.Errorf("layer 1 K = %+v", l.K)
	}
	if l.Down.Out != 8 || l.Down.In != 12 || !slices.Equal(l.Down.Weight.Shape, []int64{8, 12}) {
		t.Errorf("layer 1 Down = %+v", l.Down)
	}
	if l.PostAttnNorm.Name != "model.layers.1.post_attention_layernorm.weight" {
		t.Errorf("post-attention norm %q", l.PostAttnNorm.Name)
	}
	if m.TokenizerPath != filepath.Join(dir, "tokenizer.json") {
		t.Errorf("TokenizerPath %q", m.TokenizerPath)
	}
	if want := []string{"unexpected tensor model.extra.weight F16[3] ignored"}; !reflect.DeepEqual(m.Warnings, want) {
		t.Errorf("Warnings %q, want %q", m.Warnings, want)
	}
	// 2·(10·8) + 8 + 2·(8 + 64 + 32 + 32 + 64 + 8 + 96 + 96 + 96)
	const params = 160 + 8 + 2*(8+64+32+32+64+8+96+96+96)
	if got := m.NumParams(); got != params {
		t.Errorf("NumParams = %d, want %d", got, params)
	}
	want := map[safetensors.DType]int64{safetensors.F16: 2 * (params - 8), safetensors.F32: 4 * 8}
	if got := m.DTypes(); !reflect.DeepEqual(got, want) {
		t.Errorf("DTypes = %v, want %v", got, want)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestLoadReportsAllProblems breaks a checkpoint in several ways at once and expects one
// error naming each.
func TestLoadReportsAllProblems(t *testing.T) {
	ts := synthTensors(2, false, false) // no lm_head, untied
	ts = edit(ts, "model.layers.0.self_attn.k_proj.weight", drop)
	ts = edit(ts, "model.layers.1.mlp.down_proj.weight", func(x fake) fake { x.shape = []int64{12, 8}; return x })
	ts = edit(ts, "model.layers.1.input_layernorm.weight", func(x fake) fake { x.shape = []int64{1, 8}; return x })
	ts = edit(ts, "model.layers.0.mlp.up_proj.weight", func(x fake) fake { x.dtype = safetensors.I8; return x })
	ts = append(ts, fake{"model.layers.0.self_attn.k_proj.weight_renamed", safetensors.F16, []int64{4, 8}})
	dir := writeModel(t, []byte(synthConfig), ts)

	_, err := Load(dir)
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("Load error %v is not a *MismatchError", err)
	}
	want := []string{
		"model.layers.0.self_attn.k_proj.weight: missing (want shape [4 8])",
		"model.layers.0.mlp.up_proj.weight: dtype I8 is not supported (want F32, F16 or BF16)",
		"model.layers.1.input_layernorm.weight: shape [1 8], want [8]",
		"model.layers.1.mlp.down_proj.weight: shape [12 8], want [8 12]",
		"lm_head.weight: missing (want shape [10 8]; tie_word_embeddings is false, so the head is not the embedding)",
	}
	if !reflect.DeepEqual(me.Problems, want) {
		t.Errorf("Problems:\n%s\nwant:\n%s", strings.Join(me.Problems, "\n"), strings.Join(want, "\n"))
	}
	if !reflect.DeepEqual(me.Unexpected, []string{"model.layers.0.self_attn.k_proj.weight_renamed F16[4 8]"}) {
		t.Errorf("Unexpected %q", me.Unexpected)
	}
	msg := err.Error()
	for _, w := range append(want, dir, "5 problems", "k_proj.weight_renamed") {
		if !strings.Contains(msg, w) {
			t.Errorf("error message lacks %q:\n%s", w, msg)
		}
	}
}

func TestLoadWrongDimsInConfig(t *testing.T) {
	// A head_dim that disagrees with the checkpoint breaks q, k, v and o in every layer; all
	// of them are listed.
	cfg := with(t, synthConfig, map[string]any{"head_dim": 2})
	_, err := Load(writeModel(t, cfg, synthTensors(2, true, false)))
	var me *MismatchError
	if !errors.As(err, &me) || len(me.Problems) != 8 {
		t.Fatalf("got %v, want 8 problems", err)
	}
}

func TestLoadAbsurdLayerCount(t *testing.T) {
	cfg := with(t, synthConfig, map[string]any{"num_hidden_layers": 1 << 40})
	_, err := Load(writeModel(t, cfg, synthTensors(2, true, false)))
	var me *MismatchError
	if !errors.As(err, &me) || len(me.Problems) != 1 || !strings.Contains(me.Problems[0], "num_hidden_layers 1099511627776") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadTied(t *testing.T) {
	cfg := with(t, synthConfig, map[string]any{"tie_word_embeddings": true})

	t.Run("no head", func(t *testing.T) {
		m, err := Load(writeModel(t, cfg, synthTensors(2, false, false)))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if !m.Tied || m.LMHead.Name != "model.embed_tokens.weight" || len(m.Warnings) != 0 {
			t.Errorf("tied %v head %q warnings %q", m.Tied, m.LMHead.Name, m.Warnings)
		}
		if got, want := m.NumParams(), int64(80+8+2*(8+64+32+32+64+8+96+96+96)); got != want {
			t.Errorf("NumParams = %d, want %d (embedding counted once)", got, want)
		}
	})
	t.Run("head present", func(t *testing.T) {
		m, err := Load(writeModel(t, cfg, synthTensors(2, true, false)))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if !m.Tied || m.LMHead.Name != "model.embed_tokens.weight" {
			t.Errorf("tied %v head %q", m.Tied, m.LMHead.Name)
		}
		if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "lm_head.weight is present but tie_word_embeddings is true") {
			t.Errorf("Warnings %q", m.Warnings)
		}
	})
}

func TestLoadQwen2Biases(t *testing.T) {
	cfg := with(t, synthConfig, map[string]any{"architectures": []string{"Qwen2ForCausalLM"}, "model_type": "qwen2"})
	m, err := Load(writeModel(t, cfg, synthTensors(2, true, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, l := range m.Layers {
		if l.Q.Bias == nil || l.K.Bias == nil || l.V.Bias == nil || l.O.Bias != nil || l.Gate.Bias != nil {
			t.Errorf("layer %d biases q %v k %v v %v o %v gate %v", i, l.Q.Bias, l.K.Bias, l.V.Bias, l.O.Bias, l.Gate.Bias)
		}
		if l.K.Bias != nil && (l.K.Bias.Name != fmt.Sprintf("model.layers.%d.self_attn.k_proj.bias", i) || !slices.Equal(l.K.Bias.Shape, []int64{4})) {
			t.Errorf("layer %d k bias %v", i, *l.K.Bias)
		}
	}

	// Without the biases, every one is reported.
	_, err = Load(writeModel(t, cfg, synthTensors(2, true, false)))
	var me *MismatchError
	if !errors.As(err, &me) || len(me.Problems) != 6 || !strings.Contains(me.Problems[0], "q_proj.bias: missing (want shape [8])") {
		t.Errorf("got %v, want 6 missing biases", err)
	}
}

func TestLoadLlamaBiasesAreUnexpectedWhenOff(t *testing.T) {
	m, err := Load(writeModel(t, []byte(synthConfig), synthTensors(1, true, true)))
	if err == nil {
		defer m.Close()
	}
	// synthConfig has 2 layers; with 1 written, layer 1 is missing, and the biases of layer 0
	// are listed as unexpected since attention_bias is false.
	var me *MismatchError
	if !errors.As(err, &me) || len(me.Problems) != 9 || len(me.Unexpected) != 3 {
		t.Fatalf("got %v, want 9 problems and 3 unexpected tensors", err)
	}
}

func TestLoadRefusesBeforeReadingWeights(t *testing.T) {
	tests := []struct {
		name string
		cfg  []byte
		want string
	}{
		{"mixtral", with(t, synthConfig, map[string]any{"architectures": []string{"MixtralForCausalLM"}, "model_type": "mixtral"}),
			"Mixtral (mixture of experts) is not supported yet"},
		{"gelu", with(t, synthConfig, map[string]any{"hidden_act": "gelu_pytorch_tanh"}), `hidden_act "gelu_pytorch_tanh" is not supported`},
		{"yarn", with(t, synthConfig, map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 4}}), `"yarn"`},
		{"bad config", with(t, synthConfig, map[string]any{"num_key_value_heads": 3}), "not a multiple"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir() // no weights at all: the config alone must be refused
			p := filepath.Join(dir, "config.json")
			if err := os.WriteFile(p, tc.cfg, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Load = %v, want an error naming %s and containing %q", err, p, tc.want)
			}
		})
	}
}

func TestLoadNoWeights(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(synthConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "no safetensors weights") {
		t.Errorf("Load = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "pytorch_model.bin") || !strings.Contains(err.Error(), "convert") {
		t.Errorf("Load with a .bin = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "consolidated.safetensors"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "found consolidated.safetensors") {
		t.Errorf("Load with another .safetensors = %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("Load of an empty folder = %v", err)
	}
}

// TestLoadSharded splits the synthetic model over two shards with an index, the way
// save_pretrained does, beside a stray .safetensors file that must be left alone.
func TestLoadSharded(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(synthConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := synthTensors(2, true, false)
	half := len(ts) / 2
	shards := map[string][]fake{"model-00001-of-00002.safetensors": ts[:half], "model-00002-of-00002.safetensors": ts[half:]}
	weightMap := map[string]string{}
	for file, part := range shards {
		writeSafetensors(t, filepath.Join(dir, file), part)
		for _, x := range part {
			weightMap[x.name] = file
		}
	}
	// A file transformers would not load, and not even valid: opening it instead of the
	// index fails.
	if err := os.WriteFile(filepath.Join(dir, "consolidated.safetensors"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	index, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), index, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.TokenizerPath != "" {
		t.Errorf("TokenizerPath %q, want \"\" without tokenizer.json", m.TokenizerPath)
	}
	if filepath.Base(m.LMHead.File) != "model-00001-of-00002.safetensors" ||
		filepath.Base(m.Layers[1].Down.Weight.File) != "model-00002-of-00002.safetensors" {
		t.Errorf("files: head %s, layer 1 down %s", m.LMHead.File, m.Layers[1].Down.Weight.File)
	}
}

// TestLoadReal loads the reference checkpoints: the committed fp16 tiny-llama, and from the
// shared folder the sharded bf16 small-llama and the fp32 stories260K with tied embeddings.
func TestLoadReal(t *testing.T) {
	tests := []struct {
		name     string
		path     func(t *testing.T) string
		tied     bool
		layers   int
		params   int64
		dtypes   map[safetensors.DType]int64
		tokenize bool
	}{
		{"tiny-llama", func(*testing.T) string { return sharedtest.Testdata("tiny-llama") }, false, 4, 5245184,
			map[safetensors.DType]int64{safetensors.F16: 10490368}, true},
		{"small-llama", func(t *testing.T) string { return sharedtest.Path(t, "models/small-llama") }, false, 6, 15733632,
			map[safetensors.DType]int64{safetensors.BF16: 31467264}, true},
		{"stories260K", func(t *testing.T) string { return sharedtest.Path(t, "models/stories260K") }, true, 5, 260032,
			map[safetensors.DType]int64{safetensors.F32: 1040128}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.path(t)
			m, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Tied != tc.tied || len(m.Layers) != tc.layers || len(m.Warnings) != 0 {
				t.Errorf("tied %v layers %d warnings %q", m.Tied, len(m.Layers), m.Warnings)
			}
			if got := m.NumParams(); got != tc.params {
				t.Errorf("NumParams = %d, want %d", got, tc.params)
			}
			if got := m.DTypes(); !reflect.DeepEqual(got, tc.dtypes) {
				t.Errorf("DTypes = %v, want %v", got, tc.dtypes)
			}
			if (m.TokenizerPath != "") != tc.tokenize {
				t.Errorf("TokenizerPath %q", m.TokenizerPath)
			}
			// The typed structure must point at readable data.
			w, err := m.Tensors.Float32(m.Layers[0].Q.Weight.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(w) != m.Layers[0].Q.Out*m.Layers[0].Q.In {
				t.Errorf("q_proj has %d values, want %d", len(w), m.Layers[0].Q.Out*m.Layers[0].Q.In)
			}
		})
	}
}

// A config with fewer layers than the checkpoint would quantize (or evaluate) a truncated
// model: refused, naming the unused tensors; with more, the message counts layers, not
// tensors.
func TestLoadLayerCountMismatch(t *testing.T) {
	cfg := with(t, synthConfig, map[string]any{"num_hidden_layers": 1})
	_, err := Load(writeModel(t, cfg, synthTensors(3, true, false)))
	var me *MismatchError
	if !errors.As(err, &me) || len(me.Problems) != 1 {
		t.Fatalf("got %v", err)
	}
	for _, w := range []string{"num_hidden_layers 1", "3 decoder layers", "18 tensors of layers 1 to 2", "model.layers.1.input_layernorm.weight", "and 15 more"} {
		if !strings.Contains(me.Problems[0], w) {
			t.Errorf("message lacks %q: %s", w, me.Problems[0])
		}
	}
	cfg = with(t, synthConfig, map[string]any{"num_hidden_layers": 40})
	_, err = Load(writeModel(t, cfg, synthTensors(2, true, false)))
	if !errors.As(err, &me) || len(me.Problems) != 1 || !strings.Contains(me.Problems[0], "holds only 2 decoder layers") || strings.Contains(me.Problems[0], "tensors") {
		t.Fatalf("more layers in the config: %v", err)
	}
}
