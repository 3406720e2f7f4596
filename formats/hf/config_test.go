package hf

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// llama is a LLaMA-2-style config in the classic spelling: top-level rope_theta,
// rope_scaling null, no head_dim, no num_key_value_heads.
const llama = `{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 256,
  "intermediate_size": 688,
  "num_hidden_layers": 2,
  "num_attention_heads": 8,
  "vocab_size": 1000,
  "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "rope_scaling": null,
  "hidden_act": "silu",
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "float16"
}`

// with returns base with top-level keys set (a nil value deletes the key), so that each
// table case states only what it is about.
func with(t *testing.T, base string, kv map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawJSON is a value for with written as is, e.g. rawJSON("null") for an explicit null
// (a Go nil deletes the key instead).
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		json  []byte
		check func(t *testing.T, c Config)
	}{
		{"llama classic", []byte(llama), func(t *testing.T, c Config) {
			want := Config{
				Architecture: "LlamaForCausalLM", ModelType: "llama",
				HiddenSize: 256, IntermediateSize: 688, NumLayers: 2, NumHeads: 8,
				NumKVHeads: 8, HeadDim: 32, VocabSize: 1000, MaxPositionEmbeddings: 4096,
				RMSNormEps: 1e-5, HiddenAct: "silu", Rope: Rope{Theta: 10000, Type: "default"},
				BOSTokenID: 1, EOSTokenIDs: []int{2}, DType: "float16",
			}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got  %+v\nwant %+v", c, want)
			}
		}},
		{"llama3.1 rope_scaling", with(t, llama, map[string]any{
			"rope_theta": 500000.0, "num_key_value_heads": 2,
			"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
				"high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
			"eos_token_id": []int{128001, 128008, 128009}, "bos_token_id": 128000, "vocab_size": 128256,
		}), func(t *testing.T, c Config) {
			want := Rope{Theta: 500000, Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
			if c.Rope != want {
				t.Errorf("rope %+v, want %+v", c.Rope, want)
			}
			if !reflect.DeepEqual(c.EOSTokenIDs, []int{128001, 128008, 128009}) || c.BOSTokenID != 128000 {
				t.Errorf("bos %d eos %v", c.BOSTokenID, c.EOSTokenIDs)
			}
			if c.NumKVHeads != 2 {
				t.Errorf("kv %d", c.NumKVHeads)
			}
			if err := c.Supported(); err != nil {
				t.Errorf("Supported: %v", err)
			}
		}},
		{"old type key", with(t, llama, map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2.0}}),
			func(t *testing.T, c Config) {
				if c.Rope.Type != "linear" || c.Rope.Factor != 2 || c.Rope.Theta != 10000 {
					t.Errorf("rope %+v", c.Rope)
				}
			}},
		{"transformers 5 rope_parameters", with(t, llama, map[string]any{
			"rope_theta": nil, "rope_scaling": nil, "torch_dtype": nil, "dtype": "bfloat16",
			"rope_parameters": map[string]any{"rope_theta": 500000.0, "rope_type": "default"},
		}), func(t *testing.T, c Config) {
			if c.Rope != (Rope{Theta: 500000, Type: "default"}) || c.DType != "bfloat16" {
				t.Errorf("rope %+v dtype %q", c.Rope, c.DType)
			}
		}},
		{"rope_parameters llama3 wins over rope_theta", with(t, llama, map[string]any{
			"rope_parameters": map[string]any{"rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0,
				"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
		}), func(t *testing.T, c Config) {
			if c.Rope.Theta != 500000 || c.Rope.Type != "llama3" || c.Rope.Factor != 32 {
				t.Errorf("rope %+v", c.Rope)
			}
		}},
		{"rope_parameters without theta keeps top-level theta", with(t, llama, map[string]any{
			"rope_theta": 20000.0, "rope_parameters": map[string]any{"rope_type": "default"},
		}), func(t *testing.T, c Config) {
			if c.Rope.Theta != 20000 {
				t.Errorf("theta %g", c.Rope.Theta)
			}
		}},
		{"no rope keys: class default", with(t, llama, map[string]any{"rope_theta": nil, "rope_scaling": nil}),
			func(t *testing.T, c Config) {
				if c.Rope != (Rope{Theta: 10000, Type: "default"}) {
					t.Errorf("rope %+v", c.Rope)
				}
			}},
		{"head_dim given, not hidden/heads", with(t, llama, map[string]any{"head_dim": 64}),
			func(t *testing.T, c Config) {
				if c.HeadDim != 64 {
					t.Errorf("head_dim %d", c.HeadDim)
				}
			}},
		{"head_dim null", with(t, llama, map[string]any{"head_dim": rawJSON("null"), "num_key_value_heads": rawJSON("null")}),
			func(t *testing.T, c Config) {
				if c.HeadDim != 32 || c.NumKVHeads != 8 {
					t.Errorf("head_dim %d kv %d", c.HeadDim, c.NumKVHeads)
				}
			}},
		{"llama biases", with(t, llama, map[string]any{"attention_bias": true, "mlp_bias": true}),
			func(t *testing.T, c Config) {
				if !c.AttentionBias || !c.AttentionOutputBias || !c.MLPBias {
					t.Errorf("biases %v %v %v", c.AttentionBias, c.AttentionOutputBias, c.MLPBias)
				}
			}},
		{"swish is silu", with(t, llama, map[string]any{"hidden_act": "swish"}),
			func(t *testing.T, c Config) {
				if c.HiddenAct != "silu" {
					t.Errorf("act %q", c.HiddenAct)
				}
			}},
		{"eos null, bos absent: llama defaults only for absent", with(t, llama, map[string]any{"bos_token_id": nil, "eos_token_id": rawJSON("null")}),
			func(t *testing.T, c Config) {
				if c.BOSTokenID != 1 || c.EOSTokenIDs != nil {
					t.Errorf("bos %d eos %v", c.BOSTokenID, c.EOSTokenIDs)
				}
			}},
		{"torch. prefix", with(t, llama, map[string]any{"torch_dtype": "torch.bfloat16"}),
			func(t *testing.T, c Config) {
				if c.DType != "bfloat16" {
					t.Errorf("dtype %q", c.DType)
				}
			}},
		{"model_type only", with(t, llama, map[string]any{"architectures": nil}),
			func(t *testing.T, c Config) {
				if c.Architecture != "LlamaForCausalLM" {
					t.Errorf("arch %q", c.Architecture)
				}
			}},
		{"mistral", []byte(`{
			"architectures": ["MistralForCausalLM"], "model_type": "mistral",
			"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
			"num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
			"max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
			"sliding_window": 4096, "hidden_act": "silu", "tie_word_embeddings": false,
			"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}`),
			func(t *testing.T, c Config) {
				if c.ModelType != "mistral" || c.SlidingWindow != 4096 || c.HeadDim != 128 || c.NumKVHeads != 8 || c.AttentionBias {
					t.Errorf("%+v", c)
				}
				if err := c.Supported(); err != nil {
					t.Error(err)
				}
			}},
		{"mistral sliding_window null", []byte(`{"architectures": ["MistralForCausalLM"], "model_type": "mistral",
			"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
			"num_key_value_heads": 2, "vocab_size": 100, "sliding_window": null, "rope_theta": 1000000.0}`),
			func(t *testing.T, c Config) {
				if c.SlidingWindow != 0 || c.Rope.Theta != 1e6 || c.RMSNormEps != 1e-6 || c.MaxPositionEmbeddings != 131072 {
					t.Errorf("%+v", c)
				}
			}},
		{"mistral defaults when keys absent", []byte(`{"architectures": ["MistralForCausalLM"],
			"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 16,
			"vocab_size": 100}`),
			func(t *testing.T, c Config) {
				// MistralConfig's defaults: num_key_value_heads 8, sliding_window 4096.
				if c.SlidingWindow != 4096 || c.NumKVHeads != 8 || c.ModelType != "mistral" {
					t.Errorf("%+v", c)
				}
			}},
		{"qwen2", []byte(`{
			"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
			"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
			"num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
			"max_position_embeddings": 32768, "max_window_layers": 21, "rms_norm_eps": 1e-06,
			"rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": false,
			"hidden_act": "silu", "tie_word_embeddings": true, "bos_token_id": 151643,
			"eos_token_id": 151643, "torch_dtype": "bfloat16"}`),
			func(t *testing.T, c Config) {
				if !c.AttentionBias || c.AttentionOutputBias || c.MLPBias {
					t.Errorf("biases %v %v %v", c.AttentionBias, c.AttentionOutputBias, c.MLPBias)
				}
				if !c.TieWordEmbeddings || c.HeadDim != 64 || c.SlidingWindow != 0 || c.Rope.Theta != 1e6 {
					t.Errorf("%+v", c)
				}
				if err := c.Supported(); err != nil {
					t.Error(err)
				}
			}},
		{"qwen2 without bos/eos", []byte(`{"architectures": ["Qwen2ForCausalLM"],
			"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
			"num_key_value_heads": 2, "vocab_size": 100}`),
			func(t *testing.T, c Config) {
				if c.BOSTokenID != -1 || c.EOSTokenIDs != nil || c.TieWordEmbeddings {
					t.Errorf("%+v", c)
				}
			}},
		{"qwen2 sliding on every layer", []byte(`{"architectures": ["Qwen2ForCausalLM"],
			"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
			"num_key_value_heads": 2, "vocab_size": 100, "use_sliding_window": true, "sliding_window": 512,
			"max_window_layers": 0}`),
			func(t *testing.T, c Config) {
				if c.SlidingWindow != 512 || c.Supported() != nil {
					t.Errorf("window %d, Supported %v", c.SlidingWindow, c.Supported())
				}
			}},
		{"mixtral", []byte(`{
			"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
			"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
			"num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
			"num_local_experts": 8, "num_experts_per_tok": 2, "rope_theta": 1000000.0,
			"sliding_window": null, "hidden_act": "silu", "torch_dtype": "bfloat16"}`),
			func(t *testing.T, c Config) {
				if c.NumLocalExperts != 8 || c.NumExpertsPerTok != 2 || c.SlidingWindow != 0 || c.RMSNormEps != 1e-5 {
					t.Errorf("%+v", c)
				}
				err := c.Supported()
				if err == nil || !strings.Contains(err.Error(), "Mixtral (mixture of experts) is not supported yet") {
					t.Errorf("Supported: %v", err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.json)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		json []byte
		want []string // substrings of the error
	}{
		{"not json", []byte(`{"hidden_size": `), []string{"not a JSON object"}},
		{"json array", []byte(`[1]`), []string{"not a JSON object"}},
		{"json null", []byte(`null`), []string{"not a JSON object"}},
		{"unknown arch", with(t, llama, map[string]any{"architectures": []string{"GPT2LMHeadModel"}, "model_type": "gpt2"}),
			[]string{`"GPT2LMHeadModel"`, "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM"}},
		{"unknown model_type only", with(t, llama, map[string]any{"architectures": nil, "model_type": "gemma"}),
			[]string{`"gemma"`, "Qwen2ForCausalLM"}},
		{"no arch at all", with(t, llama, map[string]any{"architectures": nil, "model_type": nil}),
			[]string{"neither architectures nor model_type"}},
		{"arch and model_type disagree", with(t, llama, map[string]any{"model_type": "mistral"}),
			[]string{"LlamaForCausalLM", `"mistral"`}},
		{"negative and zero sizes", with(t, llama, map[string]any{"hidden_size": -1, "num_hidden_layers": 0}),
			[]string{"hidden_size must be positive, got -1", "num_hidden_layers must be positive, got 0"}},
		{"missing dimension", with(t, llama, map[string]any{"vocab_size": nil, "intermediate_size": rawJSON("null")}),
			[]string{"vocab_size is missing", "intermediate_size is missing"}},
		{"heads not divisible", with(t, llama, map[string]any{"num_key_value_heads": 3}),
			[]string{"num_attention_heads 8 is not a multiple of num_key_value_heads 3"}},
		{"more kv heads than heads", with(t, llama, map[string]any{"num_key_value_heads": 16}),
			[]string{"not a multiple"}},
		{"hidden not divisible without head_dim", with(t, llama, map[string]any{"hidden_size": 100}),
			[]string{"head_dim is not given", "hidden_size 100"}},
		{"zero head_dim", with(t, llama, map[string]any{"head_dim": 0}), []string{"head_dim must be positive"}},
		{"wrong types", with(t, llama, map[string]any{"hidden_size": "256", "tie_word_embeddings": "yes", "rms_norm_eps": []int{1}}),
			[]string{"hidden_size: want an integer", "tie_word_embeddings: want true or false", "rms_norm_eps: want a number"}},
		{"fractional int", with(t, llama, map[string]any{"num_hidden_layers": 2.5}), []string{"num_hidden_layers: want an integer, got 2.5"}},
		{"eos wrong type", with(t, llama, map[string]any{"eos_token_id": "</s>"}), []string{"eos_token_id: want an integer or a list"}},
		{"eos negative", with(t, llama, map[string]any{"eos_token_id": []int{2, -5}}), []string{"eos_token_id must not be negative"}},
		{"bad eps", with(t, llama, map[string]any{"rms_norm_eps": 0}), []string{"rms_norm_eps must be positive"}},
		{"bad theta", with(t, llama, map[string]any{"rope_theta": -1}), []string{"rope_theta must be positive"}},
		{"rope_scaling not object", with(t, llama, map[string]any{"rope_scaling": 8}), []string{"rope_scaling: want an object"}},
		{"llama3 missing params", with(t, llama, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0}}),
			[]string{"low_freq_factor must be positive", "original_max_position_embeddings must be positive"}},
		{"llama3 high <= low", with(t, llama, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0,
			"low_freq_factor": 4.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
			[]string{"high_freq_factor 4 must exceed low_freq_factor 4"}},
		{"per-layer rope parameters", with(t, llama, map[string]any{"rope_parameters": map[string]any{
			"full_attention": map[string]any{"rope_theta": 1e6}, "sliding_attention": map[string]any{"rope_theta": 1e4}}}),
			[]string{"per-layer-type rope parameters"}},
		{"negative sliding window", []byte(`{"architectures": ["MistralForCausalLM"], "hidden_size": 64,
			"intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100,
			"num_key_value_heads": 4, "sliding_window": -1}`), []string{"sliding_window must be positive or null"}},
		{"mixtral experts", []byte(`{"architectures": ["MixtralForCausalLM"], "hidden_size": 64,
			"intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100,
			"num_key_value_heads": 4, "num_local_experts": 2, "num_experts_per_tok": 3}`),
			[]string{"num_experts_per_tok 3 exceeds num_local_experts 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(tc.json)
			if err == nil {
				t.Fatalf("no error; want one containing %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "hf: config: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestSupported(t *testing.T) {
	tests := []struct {
		name string
		json []byte
		want string
	}{
		{"gelu", with(t, llama, map[string]any{"hidden_act": "gelu"}), `hidden_act "gelu" is not supported`},
		{"yarn", with(t, llama, map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 4.0}}),
			`rope scaling type "yarn" (factor 4) is not supported yet`},
		{"dynamic", with(t, llama, map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}}),
			`rope scaling type "dynamic" (factor 2)`},
		{"longrope", with(t, llama, map[string]any{"rope_parameters": map[string]any{"rope_type": "longrope", "rope_theta": 1e4}}),
			`"longrope"`},
		{"qwen2 partial sliding", []byte(`{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
			"intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "vocab_size": 100,
			"num_key_value_heads": 2, "use_sliding_window": true, "sliding_window": 512, "max_window_layers": 2}`),
			"Qwen2 sliding-window attention on only some layers"},
		{"qwen2 partial sliding by layer_types", []byte(`{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
			"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
			"num_key_value_heads": 2, "use_sliding_window": true, "sliding_window": 512,
			"layer_types": ["full_attention", "sliding_attention"]}`),
			"Qwen2 sliding-window attention on only some layers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.json)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Supported()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Supported() = %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("Supported() error does not match errors.ErrUnsupported")
			}
		})
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, with(t, llama, map[string]any{"num_key_value_heads": 3}), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("LoadConfig error %v does not name %s", err, p)
	}
	_, err = LoadConfig(filepath.Join(dir, "absent.json"))
	if err == nil || !strings.Contains(err.Error(), "absent.json") {
		t.Errorf("LoadConfig of a missing file: %v", err)
	}
}

// TestRealConfigs checks the configs of the reference checkpoints: one per spelling
// (transformers 5 rope_parameters with dtype; classic rope_theta with torch_dtype and tied
// embeddings).
func TestRealConfigs(t *testing.T) {
	tests := []struct {
		name string
		path func(t *testing.T) string
		want Config
	}{
		{"tiny-llama", func(*testing.T) string { return sharedtest.Testdata("tiny-llama") }, Config{
			Architecture: "LlamaForCausalLM", ModelType: "llama",
			HiddenSize: 256, IntermediateSize: 768, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadDim: 64,
			VocabSize: 4096, MaxPositionEmbeddings: 1024, RMSNormEps: 1e-5, HiddenAct: "silu",
			Rope: Rope{Theta: 1e4, Type: "default"}, BOSTokenID: 0, EOSTokenIDs: []int{1}, DType: "float16",
		}},
		{"small-llama", func(t *testing.T) string { return sharedtest.Path(t, "models/small-llama") }, Config{
			Architecture: "LlamaForCausalLM", ModelType: "llama",
			HiddenSize: 384, IntermediateSize: 1024, NumLayers: 6, NumHeads: 6, NumKVHeads: 2, HeadDim: 64,
			VocabSize: 8192, MaxPositionEmbeddings: 1024, RMSNormEps: 1e-5, HiddenAct: "silu",
			Rope: Rope{Theta: 5e5, Type: "default"}, BOSTokenID: 0, EOSTokenIDs: []int{1}, DType: "bfloat16",
		}},
		{"stories260K", func(t *testing.T) string { return sharedtest.Path(t, "models/stories260K") }, Config{
			Architecture: "LlamaForCausalLM", ModelType: "llama",
			HiddenSize: 64, IntermediateSize: 172, NumLayers: 5, NumHeads: 8, NumKVHeads: 4, HeadDim: 8,
			VocabSize: 512, MaxPositionEmbeddings: 512, RMSNormEps: 1e-5, HiddenAct: "silu",
			Rope: Rope{Theta: 1e4, Type: "default"}, TieWordEmbeddings: true,
			BOSTokenID: 1, EOSTokenIDs: []int{2}, DType: "float32",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig(filepath.Join(tc.path(t), "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("got  %+v\nwant %+v", c, tc.want)
			}
			if err := c.Supported(); err != nil {
				t.Errorf("Supported: %v", err)
			}
		})
	}
}

// FuzzParseConfig checks that no input panics and that an accepted config keeps the
// invariants later code relies on.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(llama))
	f.Add([]byte(`{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "use_sliding_window": true,
		"layer_types": ["full_attention", "sliding_attention"], "rope_parameters": {"rope_type": "llama3"}}`))
	f.Add([]byte(`{"model_type": "mistral", "eos_token_id": [1, 2.0], "head_dim": null, "rope_scaling": {"type": "yarn"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		_ = c.Supported()
		if c.HiddenSize <= 0 || c.NumHeads <= 0 || c.NumKVHeads <= 0 || c.HeadDim <= 0 || c.NumHeads%c.NumKVHeads != 0 ||
			c.IntermediateSize <= 0 || c.NumLayers <= 0 || c.VocabSize <= 0 || !(c.RMSNormEps > 0) || !(c.Rope.Theta > 0) {
			t.Errorf("accepted an inconsistent config: %+v", c)
		}
	})
}
