package hf

import "github.com/odyssey-llm/odyssey/formats/safetensors"

// Config is the part of a Hugging Face config.json that decides the computation, normalised
// across the LLaMA family's spellings (classic rope_theta/rope_scaling or the newer
// rope_parameters block, head_dim absent or present).
type Config struct {
	Architecture string // e.g. "LlamaForCausalLM"
	ModelType    string // e.g. "llama", "mistral", "qwen2", "mixtral"

	HiddenSize            int
	IntermediateSize      int
	NumLayers             int
	NumHeads              int
	NumKVHeads            int // equals NumHeads when the file omits it
	HeadDim               int // HiddenSize/NumHeads when the file omits it
	VocabSize             int
	MaxPositionEmbeddings int
	RMSNormEps            float64
	HiddenAct             string // "silu" for every supported family

	Rope Rope

	TieWordEmbeddings bool
	AttentionBias     bool // q/k/v (and o, for llama's attention_bias) biases present
	// AttentionOutputBias is whether o_proj has a bias: llama's attention_bias covers all four
	// projections, while Qwen2 has biases on q, k and v only.
	AttentionOutputBias bool
	MLPBias             bool
	// SlidingWindow is Mistral's attention window; 0 means full causal attention.
	SlidingWindow int

	// Mixtral: parsed so that later code can refuse the model with a clear message.
	NumLocalExperts  int
	NumExpertsPerTok int

	BOSTokenID  int    // -1 when absent
	EOSTokenIDs []int  // config may give one id or a list
	DType       string // "float16", "bfloat16", "float32" (torch_dtype or dtype)

	// partialSliding records a Qwen2 config whose sliding window covers only some layers,
	// which SlidingWindow alone cannot express; Supported refuses it.
	partialSliding bool
}

// Rope describes rotary position embedding and its scaling.
type Rope struct {
	Theta float64
	// Type is "default" or "llama3" (others are parsed and refused by the forward pass).
	Type string
	// Factor is the scaling factor of any type other than "default" (kept for the message
	// that refuses the unsupported ones).
	Factor float64
	// LLaMA-3 scaling parameters; zero unless Type == "llama3".
	LowFreqFactor                 float64
	HighFreqFactor                float64
	OriginalMaxPositionEmbeddings int
}

// Linear names the tensors of one linear layer y = x·Wᵀ + b with W of shape [Out, In].
type Linear struct {
	Weight safetensors.TensorInfo
	Bias   *safetensors.TensorInfo // nil when the layer has no bias
	Out    int
	In     int
}

// Layer is one decoder layer's tensors.
type Layer struct {
	InputNorm      safetensors.TensorInfo // input_layernorm.weight [hidden]
	Q, K, V, O     Linear
	PostAttnNorm   safetensors.TensorInfo // post_attention_layernorm.weight [hidden]
	Gate, Up, Down Linear
}

// Model is a checkpoint folder resolved into a typed structure: config, tensors and tokenizer,
// so later code never parses tensor names again.
type Model struct {
	Dir     string
	Config  Config
	Tensors *safetensors.Checkpoint

	Embed     safetensors.TensorInfo // model.embed_tokens.weight [vocab, hidden]
	Layers    []Layer
	FinalNorm safetensors.TensorInfo // model.norm.weight [hidden]
	// LMHead is lm_head.weight [vocab, hidden], or the embedding when the embeddings are tied.
	LMHead safetensors.TensorInfo
	Tied   bool

	// TokenizerPath is the tokenizer.json beside the config, "" when absent.
	TokenizerPath string

	// Warnings lists oddities that do not stop the model from loading, such as checkpoint
	// tensors that no layer uses, so that tools can show them.
	Warnings []string
}
