// Package synth writes random-weight checkpoints with the dimensions of real models, so that
// quantization and kernel speed can be measured on LLaMA-2-7B or -70B shapes without
// downloading (or being allowed to ship) their weights. The weights mean nothing: perplexity
// on them is meaningless, speed and memory are not.
package synth

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// Shape is the architecture of a real model family member.
type Shape struct {
	Name             string
	HiddenSize       int
	IntermediateSize int
	NumLayers        int
	NumHeads         int
	NumKVHeads       int
	VocabSize        int
	MaxPositions     int
	RopeTheta        float64
	RMSNormEps       float64
	// Architecture and ModelType are the config's architectures[0] and model_type; empty
	// means LlamaForCausalLM / llama.
	Architecture, ModelType string
	// QKVBias gives q_proj, k_proj and v_proj a bias, as Qwen2 has.
	QKVBias bool
	// SlidingWindow is Mistral's attention window (0: none).
	SlidingWindow int
}

// Shapes are the dimensions of the published configs.
var Shapes = map[string]Shape{
	"llama2-7b":  {Name: "llama2-7b", HiddenSize: 4096, IntermediateSize: 11008, NumLayers: 32, NumHeads: 32, NumKVHeads: 32, VocabSize: 32000, MaxPositions: 4096, RopeTheta: 1e4, RMSNormEps: 1e-5},
	"llama2-13b": {Name: "llama2-13b", HiddenSize: 5120, IntermediateSize: 13824, NumLayers: 40, NumHeads: 40, NumKVHeads: 40, VocabSize: 32000, MaxPositions: 4096, RopeTheta: 1e4, RMSNormEps: 1e-5},
	"llama2-70b": {Name: "llama2-70b", HiddenSize: 8192, IntermediateSize: 28672, NumLayers: 80, NumHeads: 64, NumKVHeads: 8, VocabSize: 32000, MaxPositions: 4096, RopeTheta: 1e4, RMSNormEps: 1e-5},
	"llama3-8b":  {Name: "llama3-8b", HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32, NumHeads: 32, NumKVHeads: 8, VocabSize: 128256, MaxPositions: 8192, RopeTheta: 5e5, RMSNormEps: 1e-5},
	"mistral-7b": {Name: "mistral-7b", HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32, NumHeads: 32, NumKVHeads: 8, VocabSize: 32000, MaxPositions: 32768, RopeTheta: 1e4, RMSNormEps: 1e-5,
		Architecture: "MistralForCausalLM", ModelType: "mistral", SlidingWindow: 4096},
	"qwen2-7b": {Name: "qwen2-7b", HiddenSize: 3584, IntermediateSize: 18944, NumLayers: 28, NumHeads: 28, NumKVHeads: 4, VocabSize: 152064, MaxPositions: 32768, RopeTheta: 1e6, RMSNormEps: 1e-6,
		Architecture: "Qwen2ForCausalLM", ModelType: "qwen2", QKVBias: true},
}

// ShapeNames returns the known shape names, sorted.
func ShapeNames() []string {
	var n []string
	for k := range Shapes {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Options choose what Write produces.
type Options struct {
	Shape Shape
	// Layers overrides the number of decoder layers (0 keeps the shape's), so a 2-layer slice
	// of a 7B model measures per-layer cost in seconds.
	Layers int
	// Seed makes the weights reproducible.
	Seed uint64
	// MaxShardSize splits the checkpoint like transformers does (0: one file).
	MaxShardSize int64
	// Progress, if set, is called after each tensor with the bytes written so far and in all.
	Progress func(done, total int64)
}

// Write creates folder dir with config.json and an fp16 safetensors checkpoint of random
// weights (no tokenizer). Linear weights are uniform with the standard deviation 0.02 of the
// LLaMA initialiser, norms are 1; uniform rather than normal because generating a few GB of
// normals would dominate the run, and the distribution does not change any timing.
func Write(dir string, o Options) error {
	s := o.Shape
	if s.HiddenSize <= 0 || s.NumHeads <= 0 || s.HiddenSize%s.NumHeads != 0 {
		return fmt.Errorf("synth: invalid shape %+v", s)
	}
	if o.Layers < 0 {
		return fmt.Errorf("synth: layers %d is negative", o.Layers)
	}
	if o.Layers > 0 {
		s.NumLayers = o.Layers
	}
	headDim := s.HiddenSize / s.NumHeads
	var decl []safetensors.TensorInfo
	add := func(name string, shape ...int64) {
		decl = append(decl, safetensors.TensorInfo{Name: name, DType: safetensors.F16, Shape: shape})
	}
	h, in, kv := int64(s.HiddenSize), int64(s.IntermediateSize), int64(s.NumKVHeads*headDim)
	add("model.embed_tokens.weight", int64(s.VocabSize), h)
	for l := 0; l < s.NumLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", h)
		add(p+"self_attn.q_proj.weight", h, h)
		add(p+"self_attn.k_proj.weight", kv, h)
		add(p+"self_attn.v_proj.weight", kv, h)
		if s.QKVBias {
			add(p+"self_attn.q_proj.bias", h)
			add(p+"self_attn.k_proj.bias", kv)
			add(p+"self_attn.v_proj.bias", kv)
		}
		add(p+"self_attn.o_proj.weight", h, h)
		add(p+"post_attention_layernorm.weight", h)
		add(p+"mlp.gate_proj.weight", in, h)
		add(p+"mlp.up_proj.weight", in, h)
		add(p+"mlp.down_proj.weight", h, in)
	}
	add("model.norm.weight", h)
	add("lm_head.weight", int64(s.VocabSize), h)

	if err := os.MkdirAll(dir, 0o777); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := writeConfig(filepath.Join(dir, "config.json"), s, headDim); err != nil {
		return err
	}
	w, err := safetensors.NewWriter(dir, decl, safetensors.WriterOptions{
		MaxShardSize: o.MaxShardSize,
		Metadata:     map[string]string{"format": "pt", "odyssey.synthetic": s.Name},
	})
	if err != nil {
		return err
	}
	var total, done int64
	for _, t := range decl {
		total += t.NumElements() * 2
	}
	for i, t := range decl {
		data := make([]byte, t.NumElements()*2)
		if strings.HasSuffix(t.Name, "norm.weight") {
			fillConst(data, 1)
		} else {
			fillUniform(data, 0.02*math.Sqrt(3), o.Seed^uint64(i+1)*0x9E3779B97F4A7C15)
		}
		if err := w.WriteTensor(t.Name, data); err != nil {
			w.Abort()
			return err
		}
		done += int64(len(data))
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	return w.Close()
}

func writeConfig(path string, s Shape, headDim int) error {
	arch, mt := s.Architecture, s.ModelType
	if arch == "" {
		arch, mt = "LlamaForCausalLM", "llama"
	}
	cfg := map[string]any{
		"architectures":           []string{arch},
		"model_type":              mt,
		"hidden_size":             s.HiddenSize,
		"intermediate_size":       s.IntermediateSize,
		"num_hidden_layers":       s.NumLayers,
		"num_attention_heads":     s.NumHeads,
		"num_key_value_heads":     s.NumKVHeads,
		"head_dim":                headDim,
		"vocab_size":              s.VocabSize,
		"max_position_embeddings": s.MaxPositions,
		"rms_norm_eps":            s.RMSNormEps,
		"rope_theta":              s.RopeTheta,
		"hidden_act":              "silu",
		"tie_word_embeddings":     false,
		"attention_bias":          false,
		"mlp_bias":                false,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"torch_dtype":             "float16",
		"odyssey_synthetic":       s.Name,
	}
	if s.SlidingWindow > 0 {
		cfg["sliding_window"] = s.SlidingWindow
	}
	if s.QKVBias {
		delete(cfg, "attention_bias") // Qwen2's config has none: q/k/v always have biases
		delete(cfg, "mlp_bias")
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o666); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

func fillConst(dst []byte, v float32) {
	h := safetensors.Float32ToHalf(v)
	for i := 0; i+1 < len(dst); i += 2 {
		binary.LittleEndian.PutUint16(dst[i:], h)
	}
}

// fillUniform writes fp16 values uniform in [−a, a), in parallel chunks each with its own
// stream of a splitmix64 generator, so the bytes depend on the seed alone, not on the number
// of cores.
func fillUniform(dst []byte, a float64, seed uint64) {
	const chunk = 1 << 20 // bytes per independent stream
	n := (len(dst) + chunk - 1) / chunk
	bufs := make([][]float32, parallel.Workers(n))
	parallel.For(n, func(worker, c int) {
		if bufs[worker] == nil {
			bufs[worker] = make([]float32, chunk/2)
		}
		part := dst[c*chunk : min((c+1)*chunk, len(dst))]
		x := seed + uint64(c)*0xD1B54A32D192ED03
		vals := bufs[worker][:len(part)/2]
		for i := range vals {
			x += 0x9E3779B97F4A7C15
			z := x
			z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
			z = (z ^ (z >> 27)) * 0x94D049BB133111EB
			z ^= z >> 31
			// 24 random bits → [−1, 1).
			vals[i] = float32(a) * (float32(float32(z>>40)*(1.0/(1<<23))) - 1)
		}
		safetensors.Float32ToF16(part, vals)
	})
}
