package artifact

import (
	"errors"
	"fmt"

	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// FormatVersion is the version of the artifact folder described in the package
// documentation (files, config block, odyssey.json). The packed weight layout has its own
// version, quant.PackLayoutVersion, recorded beside it as quantization_config.layout_version.
const FormatVersion = 1

// ErrNotRepresentable is wrapped by the errors of values the artifact cannot store as they
// are (a folded norm or bias beyond fp16's range, 8-bit weights): a property of the model
// and recipe, not an I/O failure.
var ErrNotRepresentable = errors.New("not representable in the artifact")

// QuantMethod is quantization_config.quant_method of an Odyssey artifact.
const QuantMethod = "odyssey"

// Format is quantization_config.format: int4 weights in the FastGEMM layout for int8
// activations.
const Format = "fastgemm-w4a8"

// File names inside an artifact folder.
const (
	ConfigFile     = "config.json"
	ProvenanceFile = "odyssey.json"
	// StateFile and LayersDir exist only in a staging folder, never in a finished artifact.
	StateFile = "state.json"
	LayersDir = "layers"
)

// TokenizerFiles are copied from the source model when present: what transformers and
// tokenizers need to load the tokenizer and the generation defaults.
var TokenizerFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
	"tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
}

// Suffixes of the tensors of one quantized linear (docs/fastgemm-layout.md), appended to the
// Hugging Face module name, e.g. model.layers.3.mlp.down_proj.qweight.
const (
	SuffixQWeight = ".qweight"
	// SuffixQWeight8 and SuffixScale8 hold a W8 linear (int8 codes [out, in] and float32
	// per-channel scales [out]) in a layer checkpoint. The Odyssey artifact does not
	// store 8-bit weights; the compressed-tensors export converts them (int-quantized).
	SuffixQWeight8     = ".qweight8"
	SuffixScale8       = ".scale8"
	SuffixGroupScale   = ".group_scale"
	SuffixChannelScale = ".channel_scale"
	SuffixAlphaLog2    = ".alpha_log2"
	SuffixActScale     = ".act_scale"
	SuffixPolicy       = ".policy"
	SuffixBias         = ".bias"
	// SuffixWeight is the 16-bit float weight of a linear the recipe keeps unquantized.
	SuffixWeight = ".weight"
)

// resumePrefix marks the float32 copies a layer checkpoint keeps so that a resumed run
// propagates calibration activations with exactly the numbers of an uninterrupted one
// (the artifact itself stores norms and biases in fp16). They never reach the artifact.
const resumePrefix = "__resume__."

// Policy is the activation policy code of the .policy tensor (docs/fastgemm-layout.md).
type Policy uint8

// Policy codes. The first three equal quant.ActPolicy's values.
const (
	PolicyStatic   Policy = 0 // static per-tensor int8
	PolicyLAE      Policy = 1 // LAE folded into the producer, then static per-tensor int8
	PolicyPerToken Policy = 2 // dynamic per-token int8
	PolicyNone     Policy = 3 // 16-bit activations (W4A16)
)

// String returns the policy's name as reports print it.
func (p Policy) String() string {
	switch p {
	case PolicyStatic, PolicyLAE, PolicyPerToken:
		return quant.ActPolicy(p).String()
	case PolicyNone:
		return "none (16-bit)"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// moduleOf maps a decoder linear to its Hugging Face module path below model.layers.N.
var moduleOf = map[model.LinearKind]string{
	model.Q: "self_attn.q_proj", model.K: "self_attn.k_proj", model.V: "self_attn.v_proj",
	model.O: "self_attn.o_proj", model.Gate: "mlp.gate_proj", model.Up: "mlp.up_proj",
	model.Down: "mlp.down_proj",
}

// LinearName returns the module name of linear kind in layer i, e.g.
// "model.layers.3.mlp.down_proj".
func LinearName(i int, kind model.LinearKind) string {
	return fmt.Sprintf("model.layers.%d.%s", i, moduleOf[kind])
}

// Norm tensor names of layer i.
func attnNormName(i int) string { return fmt.Sprintf("model.layers.%d.input_layernorm.weight", i) }
func mlpNormName(i int) string {
	return fmt.Sprintf("model.layers.%d.post_attention_layernorm.weight", i)
}

// Names of the tensors outside the decoder layers.
const (
	embedName     = "model.embed_tokens.weight"
	finalNormName = "model.norm.weight"
	lmHeadName    = "lm_head.weight"
)
