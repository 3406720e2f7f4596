// Package hf reads Hugging Face checkpoint folders (config.json, safetensors weights,
// tokenizer.json) of the LLaMA family into a typed description.
//
// The point of the package is that everything later in the pipeline — the forward pass, the
// quantizers, `odyssey inspect` — works from a Config and a Model whose shapes have already
// been checked against each other, and never parses JSON keys or tensor names itself. The
// many spellings config.json has had over transformers releases (rope_theta/rope_scaling
// versus rope_parameters, head_dim absent or null, eos_token_id as a number or a list,
// torch_dtype versus dtype) are normalised here, once.
//
// Supported architectures are LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM.
// MixtralForCausalLM configs are parsed, so that tools can describe them, but Load refuses
// them. Where config.json omits a key, the default of the matching transformers config class
// applies, because that is what the checkpoint was trained and evaluated with; the exception
// is the five dimensions that define the weights' shapes (hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads, vocab_size), which must be present, since a
// default would only turn a broken file into a confusing shape mismatch.
package hf
