// model_config.hpp: config.json → the executor's model description (host only, no CUDA: it
// compiles with g++ alone and is tested under ASan/UBSan by runtime/tests/test_executor_host.cpp).
//
// It reads the LLaMA family as the Go parser does (formats/hf/config.go): the same
// architectures (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM), the same class
// defaults for absent keys (transformers' LlamaConfig, MistralConfig, Qwen2Config), rope
// settings from rope_parameters (transformers 5) or rope_theta + rope_scaling, head_dim from
// the config when given. A config the forward pass cannot run (Mixtral, another activation,
// another rope type, Qwen2 sliding windows on only some layers) is refused here with the
// reason, so that nothing reaches the GPU that would compute wrong numbers.
//
// quantization_config is classified too (quant_config()): none → the FP16 baseline, "odyssey"
// (format_version and layout_version must be 1), or "compressed-tensors": its config_groups
// and ignore list are read, each group classified as the W8A8 scheme the executor runs (8-bit
// symmetric int per-channel weights in "int-quantized" form, 8-bit symmetric int dynamic
// per-token input activations) or not, with the reason (check_runnable refuses the rest).
//
// Errors throw FormatError "<path>: message" (safetensors.hpp), one per problem found first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "json.hpp"

namespace odyssey::exec {

struct RopeConfig {
  double theta = 10000;
  std::string type = "default";  // "default" or "llama3"
  double factor = 0, low_freq_factor = 0, high_freq_factor = 0;
  int original_max_position_embeddings = 0;
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  std::string model_type;    // "llama", "mistral", "qwen2"
  int hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v have biases (Qwen2 always; llama's attention_bias)
  bool o_bias = false;    // llama's attention_bias also covers o_proj
  bool mlp_bias = false;  // llama's mlp_bias
  int sliding_window = 0;  // 0: full causal attention
  int bos_token_id = -1;
  RopeConfig rope;
};

// Parses a config.json already read as JSON; path is used in messages.
ModelConfig parse_model_config(const Json& root, const std::string& path);

enum class QuantKind { None, Odyssey, CompressedTensors };

// One compressed-tensors config group.
struct CTGroup {
  std::string name;                  // its key in config_groups
  std::vector<std::string> targets;  // "Linear" or module names
  bool w8a8 = false;                 // the scheme the executor's W8A8 path runs
  std::string why;                   // when not: what differs
};

struct QuantConfig {
  QuantKind kind = QuantKind::None;
  std::string format;      // quantization_config.format ("fastgemm-w4a8", "int-quantized", ...)
  int group_size = 0;      // odyssey: weights.group_size (0: per channel), for messages only
  std::vector<CTGroup> ct_groups;       // compressed-tensors: config_groups, in file order
  std::vector<std::string> ct_ignore;   // compressed-tensors: ignore (modules left in 16 bits)
};

// Classifies quantization_config; checks an Odyssey artifact's format_version and
// layout_version (both 1) and that a compressed-tensors export names a format.
QuantConfig parse_quant_config(const Json& root, const std::string& path);

// inv_freq[i], i < head_dim/2, exactly as model/rope.go's ropeInvFreq computes it: the
// exponent 2i/d rounded to float32, 1/theta^e in double, the llama3 ramp in double, one final
// rounding to float32. Throws std::invalid_argument for an odd head_dim or a bad rope.
std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim);

}  // namespace odyssey::exec
