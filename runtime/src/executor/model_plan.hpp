// model_plan.hpp: the tensor inventory of a model folder for the executor, checked on the
// host before anything is allocated on the GPU (host only: compiles with g++ alone and is
// tested under ASan/UBSan by runtime/tests/test_executor_host.cpp).
//
// plan_model() decides, for every decoder linear, which kernel runs it and with what
// activations, from the tensors present (docs/artifact.md, docs/fastgemm-layout.md):
//   - a Hugging Face checkpoint (no quantization_config): NAME.weight [out, in] in F16, BF16
//     or F32 → cuBLAS fp16;
//   - an Odyssey artifact: NAME.qweight (+ group_scale, channel_scale, alpha_log2, act_scale,
//     policy) → FastGEMM W4A8 (policy 0/1 static per-tensor int8, 2 per-token int8) or the
//     W4A16 kernel (policy 3); a linear the recipe skipped, NAME.weight F16 → cuBLAS fp16;
//   - a compressed-tensors "int-quantized" export (w8a8-smoothquant): NAME.weight I8 [out, in]
//     + NAME.weight_scale [out, 1] → the W8A8 kernels (w8a8.cu) with per-token int8
//     activations; a module in the ignore list, NAME.weight F16/BF16/F32 → cuBLAS fp16.
// Dtypes and shapes are checked against the config (dtype [shape], naming file and tensor);
// validate_quantized() then checks the values a kernel would trust (scale ranges and
// padding, code range, the int32 accumulator bound of the integer-scale proof), as the Go
// reader (artifact.decodeLinear) does, so that an artifact the CPU refuses is refused here too.
//
// The host conversions (to_f16, to_f32) turn the checkpoint's dtypes into what the kernels
// read: fp16 weights (a BF16/F32 value beyond fp16's range is an error naming the tensor, not
// a silent infinity) and fp32 norms and biases.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "executor/model_config.hpp"
#include "safetensors.hpp"

namespace odyssey::exec {

enum LinearIndex { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kNumLinears };
const char* linear_module(int index);  // "self_attn.q_proj", ...

enum class WeightFormat { Dense16, W4A8, W4A16, W8A8 };
enum class ActForm { F16, I8Static, I8PerToken };

struct LinearPlan {
  std::string name;  // "model.layers.3.self_attn.q_proj"
  WeightFormat format = WeightFormat::Dense16;
  int n = 0, k = 0;    // logical out, in
  int np = 0, kp = 0;  // packed sizes (quantized): ⌈n/8⌉·8, ⌈k/128⌉·128; Dense16: n, k
                       // (W8A8: the executor zero-pads its int8 [n, k] to [np, kp] at load)
  int groups = 0;      // rows G of .group_scale
  int group_size = 0;  // the kernels' group size: Kp/G, or Kp for one group (per channel)
  bool int_scales = true;  // I16 group scales + alpha_log2 (else F32 group scales; for W4A16 the
                           // executor converts them to the kernel's int16 form at load)
  int policy = -1;         // .policy code, -1 for a dense linear
  ActForm act = ActForm::F16;
  float act_scale = 0;     // I8Static: the static scale
  bool has_bias = false;
  DType weight_dtype = DType::F16;  // Dense16: the stored dtype of NAME.weight
};

struct LayerPlan {
  std::string attn_norm, mlp_norm;  // tensor names
  LinearPlan lin[kNumLinears];
};

struct ModelPlan {
  std::string dir;
  ModelConfig cfg;
  QuantConfig quant;
  std::vector<LayerPlan> layers;
  std::string embed = "model.embed_tokens.weight", final_norm = "model.norm.weight", lm_head;  // lm_head: embed when tied
  std::string path;  // what runs: "fp16", "w4a8", "w4a16", "w8a8" or "mixed" (docs/executor.md)
};

// Refuses what the executor cannot run whatever the tensors (a compressed-tensors export whose
// config groups are not all the W8A8 int-quantized scheme), before any shard is opened.
void check_runnable(const QuantConfig& quant, const std::string& dir);

// Builds and checks the plan (dtypes, shapes, policies). Throws FormatError naming the file
// and tensor.
ModelPlan plan_model(const std::string& dir, const ModelConfig& cfg, const QuantConfig& quant,
                     const SafetensorsCheckpoint& ck);

// The plan of decoder layer i alone (what plan_model does for each layer): ck may hold just
// that layer's tensors (the calibration server's layer file, docs/gpu-calibration.md).
// artifact: the tensors are an Odyssey artifact's (qweight, scales, policy; skipped linears F16).
LayerPlan plan_layer(const SafetensorsCheckpoint& ck, const ModelConfig& cfg, int i, bool artifact,
                     const QuantConfig* quant = nullptr);

// Checks the values of a quantized linear's tensors (see the file comment). Reads the whole
// qweight once (about 1 s per GB on one core). W8A8: every code in −127..127, every weight
// scale positive and finite (and still so in float32).
void validate_quantized(const LinearPlan& lp, const SafetensorsCheckpoint& ck);

// Whether two linears that read the same input can run as one GEMM over their concatenated
// outputs: same kernel, same activation form (and static scale, bit for bit), same K, same
// group size and scale kind.
bool can_fuse(const LinearPlan& a, const LinearPlan& b);

// A tensor converted to fp16 (pointer into the file when it is already F16 and aligned).
struct HalfData {
  const std::uint16_t* data = nullptr;
  std::size_t size = 0;
  std::vector<std::uint16_t> owned;
  TensorView<std::uint16_t> view;
};
HalfData to_f16(const SafetensorsCheckpoint& ck, const std::string& name, const std::vector<std::int64_t>& shape);
std::vector<float> to_f32(const SafetensorsCheckpoint& ck, const std::string& name, const std::vector<std::int64_t>& shape);

// IEEE half ↔ float on the host, round to nearest even (no CUDA headers needed).
std::uint16_t float_to_half_bits(float f);
float half_bits_to_float_host(std::uint16_t h);

}  // namespace odyssey::exec
