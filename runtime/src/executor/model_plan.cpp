// model_plan.cpp: the executor's tensor inventory and host-side checks (see model_plan.hpp).
// The checks mirror artifact/linear.go (decodeLinear, decodeAct) and quant/intscale.go
// (Validate: ŝ in [1, α], α = 2^e with e ≤ 14, worst-case accumulator ≤ 2^31 − 1).
#include "executor/model_plan.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

namespace odyssey::exec {

namespace {

constexpr const char* kModules[kNumLinears] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                               "mlp.down_proj"};
constexpr int kMaxLog2Alpha = 14;                 // quant.MaxLog2Alpha
constexpr std::int64_t kAccLimit = 2147483647;   // quant.AccLimit
constexpr std::int64_t kPerUnit = 127 * 16;       // ActQMax · Int4Shift

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); i++) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

[[noreturn]] void tensor_fail(const SafetensorsCheckpoint& ck, const std::string& name, const std::string& msg) {
  ck.file_of(name).fail_tensor(name, msg);
}

const TensorInfo& need(const SafetensorsCheckpoint& ck, const std::string& name, const char* what) {
  const TensorInfo* t = ck.find(name);
  if (t == nullptr) throw FormatError(ck.dir() + ": tensor " + quote_for_message(name) + ": missing (" + what + ")");
  return *t;
}

void expect(const SafetensorsCheckpoint& ck, const TensorInfo& t, std::initializer_list<DType> dtypes,
            const std::vector<std::int64_t>& shape) {
  bool dt_ok = false;
  std::string want;
  for (DType d : dtypes) {
    dt_ok |= t.dtype == d;
    want += (want.empty() ? "" : " or ") + std::string(dtype_name(d));
  }
  if (!dt_ok || t.shape != shape)
    tensor_fail(ck, t.name, std::string(dtype_name(t.dtype)) + shape_str(t.shape) + ", want " + want + shape_str(shape));
}

bool is_float(DType d) { return d == DType::F16 || d == DType::BF16 || d == DType::F32; }

float bf16_to_float(std::uint16_t b) {
  std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f32_at(const std::uint8_t* p, std::size_t i) {
  float f;
  std::memcpy(&f, p + 4 * i, 4);
  return f;
}

std::uint16_t u16_at(const std::uint8_t* p, std::size_t i) {
  return static_cast<std::uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
}

// The plan of one linear from the tensors present.
// Whether a compressed-tensors module is in the ignore list, and the W8A8 group covering it
// (nullptr if none). Targets match as the Go reader's ctActBits does: "Linear" or the name.
bool ct_ignored(const QuantConfig& q, const std::string& name) {
  for (const std::string& i : q.ct_ignore)
    if (i == name) return true;
  return false;
}
const CTGroup* ct_group(const QuantConfig& q, const std::string& name) {
  for (const CTGroup& g : q.ct_groups)
    for (const std::string& t : g.targets)
      if (t == "Linear" || t == name) return &g;
  return nullptr;
}

// A linear of a compressed-tensors int-quantized export: int8 codes and per-channel scales →
// W8A8; a 16-bit weight → Dense16, only for a module the ignore list names.
LinearPlan plan_ct_linear(const SafetensorsCheckpoint& ck, const QuantConfig& q, const std::string& name, int n, int k,
                          bool bias) {
  LinearPlan lp;
  lp.name = name;
  lp.n = n;
  lp.k = k;
  if (ck.find(name + ".weight_packed") != nullptr)
    tensor_fail(ck, name + ".weight_packed",
                "pack-quantized int4 weights: the executor's compressed-tensors W4A8 path is not built (run the Odyssey "
                "artifact, or `odyssey eval ppl` on the CPU)");
  const TensorInfo& w = need(ck, name + ".weight", "the linear's weight");
  const bool ignored = ct_ignored(q, name);
  if (w.dtype == DType::I8) {
    expect(ck, w, {DType::I8}, {n, k});
    if (ignored) tensor_fail(ck, w.name, "int8 codes for a module the ignore list leaves in 16 bits");
    const CTGroup* g = ct_group(q, name);
    if (g == nullptr || !g->w8a8)
      tensor_fail(ck, w.name, "int8 codes, but no W8A8 config group (int-quantized, int8 per-token activations) targets " +
                                  quote_for_message(name));
    expect(ck, need(ck, name + ".weight_scale", "an int8 linear's per-channel scales"), {DType::F16, DType::BF16, DType::F32},
           {n, 1});
    if (ck.find(name + ".weight_zero_point") != nullptr)
      tensor_fail(ck, name + ".weight_zero_point", "zero points (asymmetric weights) are not supported");
    lp.format = WeightFormat::W8A8;
    lp.np = (n + 7) / 8 * 8;
    lp.kp = (k + 127) / 128 * 128;
    lp.groups = 1;
    lp.group_size = lp.kp;
    lp.int_scales = true;
    lp.act = ActForm::I8PerToken;
    lp.weight_dtype = DType::I8;
  } else {
    expect(ck, w, {DType::F16, DType::BF16, DType::F32}, {n, k});
    if (!ignored)
      tensor_fail(ck, w.name, std::string(dtype_name(w.dtype)) +
                                  " weight for a module the ignore list does not name (the export quantizes every other linear)");
    lp.format = WeightFormat::Dense16;
    lp.np = n;
    lp.kp = k;
    lp.weight_dtype = w.dtype;
    lp.act = ActForm::F16;
  }
  const TensorInfo* b = ck.find(name + ".bias");
  if (bias) {
    if (b == nullptr) throw FormatError(ck.dir() + ": tensor " + quote_for_message(name + ".bias") + ": missing (the config says the linear has a bias)");
    expect(ck, *b, {DType::F32, DType::F16, DType::BF16}, {n});
    lp.has_bias = true;
  } else if (b != nullptr) {
    tensor_fail(ck, b->name, "a bias the config does not have");
  }
  return lp;
}

LinearPlan plan_linear(const SafetensorsCheckpoint& ck, const std::string& name, int n, int k, bool bias,
                       bool artifact) {
  LinearPlan lp;
  lp.name = name;
  lp.n = n;
  lp.k = k;
  const std::string qw = name + ".qweight";
  if (ck.find(name + ".qweight8") != nullptr)
    tensor_fail(ck, name + ".qweight8", "8-bit weights are a layer checkpoint's form, not an artifact's");
  if (artifact && ck.find(qw) != nullptr) {
    lp.np = (n + 7) / 8 * 8;
    lp.kp = (k + 127) / 128 * 128;
    expect(ck, ck.get(qw), {DType::U8}, {lp.np / 8, lp.kp / 128, 32, 16});
    const TensorInfo& gs = need(ck, name + ".group_scale", "a quantized linear's group scales");
    if (gs.shape.size() != 2 || gs.shape[1] != lp.np || gs.shape[0] < 1 || gs.shape[0] > lp.kp ||
        lp.kp % gs.shape[0] != 0)
      tensor_fail(ck, gs.name, "shape " + shape_str(gs.shape) + ", want [G, " + std::to_string(lp.np) +
                                   "] with G dividing " + std::to_string(lp.kp));
    lp.groups = static_cast<int>(gs.shape[0]);
    lp.group_size = lp.kp / lp.groups;
    if (lp.groups > 1 && k % lp.group_size != 0)
      tensor_fail(ck, gs.name, std::to_string(lp.groups) + " groups of " + std::to_string(lp.group_size) +
                                   " do not tile the " + std::to_string(k) + " input channels");
    if (lp.groups > 1 && lp.group_size != 32 && lp.group_size != 64 && lp.group_size != 128)
      tensor_fail(ck, gs.name, "group size " + std::to_string(lp.group_size) +
                                   ": the GPU kernels run 32, 64, 128 or per channel");
    if (gs.dtype == DType::I16) {
      lp.int_scales = true;
      expect(ck, need(ck, name + ".alpha_log2", "integer scales need their amplifiers"), {DType::U8}, {lp.np});
    } else if (gs.dtype == DType::F32) {
      lp.int_scales = false;
      if (ck.find(name + ".alpha_log2") != nullptr)
        tensor_fail(ck, name + ".alpha_log2", "present with float group scales");
    } else {
      tensor_fail(ck, gs.name, std::string("dtype ") + dtype_name(gs.dtype) + ", want I16 (integer scales) or F32");
    }
    expect(ck, need(ck, name + ".channel_scale", "a quantized linear's epilogue factors"), {DType::F32}, {lp.np});
    const TensorInfo& pol = need(ck, name + ".policy", "the activation policy");
    expect(ck, pol, {DType::U8}, {1});
    const TensorInfo& as = need(ck, name + ".act_scale", "the static activation scale");
    expect(ck, as, {DType::F32}, {1});
    lp.policy = ck.data(pol)[0];
    const float scale = f32_at(ck.data(as), 0);
    switch (lp.policy) {
      case 0:
      case 1:
        if (!(scale > 0 && scale <= std::numeric_limits<float>::max()))
          tensor_fail(ck, as.name, "static scale " + std::to_string(scale) + " is not positive and finite");
        lp.format = WeightFormat::W4A8;
        lp.act = ActForm::I8Static;
        lp.act_scale = scale;
        break;
      case 2:
        if (scale != 0) tensor_fail(ck, as.name, "nonzero with dynamic per-token activations, want 0");
        lp.format = WeightFormat::W4A8;
        lp.act = ActForm::I8PerToken;
        break;
      case 3:
        if (scale != 0) tensor_fail(ck, as.name, "nonzero with 16-bit activations, want 0");
        // Float group scales (the w4a16-gptq preset writes them) are re-expressed for the
        // W4A16 kernel's integer form at load (executor.cu, w4a16_int_scales).
        lp.format = WeightFormat::W4A16;
        lp.act = ActForm::F16;
        break;
      default:
        tensor_fail(ck, pol.name, "unknown policy code " + std::to_string(lp.policy) + " (want 0..3)");
    }
  } else {
    const TensorInfo& w = need(ck, name + ".weight", artifact ? "neither .qweight nor .weight" : "the linear's weight");
    if (artifact)
      expect(ck, w, {DType::F16}, {n, k});
    else
      expect(ck, w, {DType::F16, DType::BF16, DType::F32}, {n, k});
    lp.format = WeightFormat::Dense16;
    lp.np = n;
    lp.kp = k;
    lp.weight_dtype = w.dtype;
    lp.act = ActForm::F16;
  }
  const TensorInfo* b = ck.find(name + ".bias");
  if (bias) {
    if (b == nullptr) throw FormatError(ck.dir() + ": tensor " + quote_for_message(name + ".bias") + ": missing (the config says the linear has a bias)");
    if (artifact && lp.format != WeightFormat::Dense16)
      expect(ck, *b, {DType::F32, DType::F16}, {n});
    else
      expect(ck, *b, {DType::F32, DType::F16, DType::BF16}, {n});
    lp.has_bias = true;
  } else if (b != nullptr) {
    tensor_fail(ck, b->name, "a bias the config does not have");
  }
  return lp;
}

}  // namespace

const char* linear_module(int index) { return (index >= 0 && index < kNumLinears) ? kModules[index] : "?"; }

void check_runnable(const QuantConfig& quant, const std::string& dir) {
  if (quant.kind != QuantKind::CompressedTensors) return;
  const std::string what = dir + ": a compressed-tensors export (format " + quote_for_message(quant.format) + ")";
  if (quant.ct_groups.empty())
    throw FormatError(what + " without quantization_config.config_groups: nothing says how its linears are quantized");
  for (const CTGroup& g : quant.ct_groups)
    if (!g.w8a8)
      throw FormatError(what + ": config group " + quote_for_message(g.name) + " is not the W8A8 int-quantized scheme the " +
                        "executor runs (" + g.why + "); its W4A8 pack-quantized path is not built: evaluate it on the CPU " +
                        "with `odyssey eval ppl`, or run the Odyssey artifact it was exported from");
}

LayerPlan plan_layer(const SafetensorsCheckpoint& ck, const ModelConfig& cfg, int i, bool artifact,
                     const QuantConfig* quant) {
  const int h = cfg.hidden, inter = cfg.intermediate;
  const int qdim = cfg.heads * cfg.head_dim, kvdim = cfg.kv_heads * cfg.head_dim;
  const int outs[kNumLinears] = {qdim, kvdim, kvdim, h, inter, inter, h};
  const int ins[kNumLinears] = {h, h, h, qdim, h, h, inter};
  const bool biases[kNumLinears] = {cfg.qkv_bias, cfg.qkv_bias, cfg.qkv_bias, cfg.o_bias,
                                    cfg.mlp_bias, cfg.mlp_bias, cfg.mlp_bias};
  LayerPlan L;
  const std::string pre = "model.layers." + std::to_string(i) + ".";
  L.attn_norm = pre + "input_layernorm.weight";
  L.mlp_norm = pre + "post_attention_layernorm.weight";
  // Artifact norms are F32 (LAE folded in); older ones and checkpoints may hold 16-bit.
  expect(ck, need(ck, L.attn_norm, "the attention norm"), {DType::F32, DType::F16, DType::BF16}, {h});
  expect(ck, need(ck, L.mlp_norm, "the MLP norm"), {DType::F32, DType::F16, DType::BF16}, {h});
  for (int j = 0; j < kNumLinears; j++)
    L.lin[j] = quant && quant->kind == QuantKind::CompressedTensors
                   ? plan_ct_linear(ck, *quant, pre + kModules[j], outs[j], ins[j], biases[j])
                   : plan_linear(ck, pre + kModules[j], outs[j], ins[j], biases[j], artifact);
  return L;
}

ModelPlan plan_model(const std::string& dir, const ModelConfig& cfg, const QuantConfig& quant,
                     const SafetensorsCheckpoint& ck) {
  check_runnable(quant, dir);
  const bool artifact = quant.kind == QuantKind::Odyssey;
  ModelPlan p;
  p.dir = dir;
  p.cfg = cfg;
  p.quant = quant;
  const int h = cfg.hidden, v = cfg.vocab;

  const TensorInfo& emb = need(ck, p.embed, "the token embedding");
  if (artifact)
    expect(ck, emb, {DType::F16}, {v, h});
  else
    expect(ck, emb, {DType::F16, DType::BF16, DType::F32}, {v, h});
  const TensorInfo& fn = need(ck, p.final_norm, "the final norm");
  expect(ck, fn, {DType::F16, DType::BF16, DType::F32}, {h});
  if (cfg.tie_word_embeddings) {
    p.lm_head = p.embed;
  } else {
    p.lm_head = "lm_head.weight";
    const TensorInfo& lm = need(ck, p.lm_head, "the LM head (tie_word_embeddings is false)");
    if (artifact)
      expect(ck, lm, {DType::F16}, {v, h});
    else
      expect(ck, lm, {DType::F16, DType::BF16, DType::F32}, {v, h});
  }

  std::set<WeightFormat> formats;
  p.layers.resize(static_cast<std::size_t>(cfg.layers));
  for (int i = 0; i < cfg.layers; i++) {
    LayerPlan& L = p.layers[static_cast<std::size_t>(i)];
    L = plan_layer(ck, cfg, i, artifact, &quant);
    for (const LinearPlan& l : L.lin) formats.insert(l.format);
  }
  if (formats.size() > 1) {
    p.path = "mixed";
  } else if (formats.count(WeightFormat::W4A8)) {
    p.path = "w4a8";
  } else if (formats.count(WeightFormat::W4A16)) {
    p.path = "w4a16";
  } else if (formats.count(WeightFormat::W8A8)) {
    p.path = "w8a8";
  } else {
    p.path = "fp16";
  }
  return p;
}

// W8A8 (compressed-tensors int-quantized): what the Go reader trusts, checked: scales positive
// and finite (fp16 read as float is exact), codes −127..127 (−128 would break the symmetric
// range every reference assumes; a 7B model's 6.5 GB of codes take about 1 s on 16 cores).
static void validate_w8a8(const LinearPlan& lp, const SafetensorsCheckpoint& ck) {
  const std::string s_name = lp.name + ".weight_scale", w_name = lp.name + ".weight";
  const std::vector<float> s = to_f32(ck, s_name, {lp.n, 1});
  for (int c = 0; c < lp.n; c++) {
    const float v = s[static_cast<std::size_t>(c)];
    if (!(v > 0 && v <= std::numeric_limits<float>::max()))
      tensor_fail(ck, s_name, "[" + std::to_string(c) + ", 0] = " + std::to_string(v) + " is not positive and finite");
  }
  const std::uint8_t* q = ck.data(ck.get(w_name));
  const std::size_t total = static_cast<std::size_t>(lp.n) * static_cast<std::size_t>(lp.k);
  for (std::size_t i = 0; i < total; i++)
    if (q[i] == 0x80)
      tensor_fail(ck, w_name, "code -128 at [" + std::to_string(i / static_cast<std::size_t>(lp.k)) + ", " +
                                  std::to_string(i % static_cast<std::size_t>(lp.k)) + "] (int8 codes are -127..127)");
}

void validate_quantized(const LinearPlan& lp, const SafetensorsCheckpoint& ck) {
  if (lp.format == WeightFormat::Dense16) return;
  if (lp.format == WeightFormat::W8A8) return validate_w8a8(lp, ck);
  const int n = lp.n, k = lp.k, np = lp.np, kp = lp.kp, G = lp.groups;
  const int gsz = lp.group_size;
  const int ng = G == 1 ? 1 : k / gsz;  // groups holding real input channels
  const std::string cs_name = lp.name + ".channel_scale", gs_name = lp.name + ".group_scale";
  const std::uint8_t* cs = ck.data(ck.get(cs_name));
  const std::uint8_t* gs = ck.data(ck.get(gs_name));
  for (int c = n; c < np; c++)
    if (f32_at(cs, c) != 0) tensor_fail(ck, cs_name, "padding [" + std::to_string(c) + "] is not 0");
  std::vector<int> alpha(static_cast<std::size_t>(np), 0);
  if (lp.int_scales) {
    const std::string a_name = lp.name + ".alpha_log2";
    const std::uint8_t* a = ck.data(ck.get(a_name));
    for (int c = 0; c < np; c++) {
      if (c >= n) {
        if (a[c] != 0) tensor_fail(ck, a_name, "padding [" + std::to_string(c) + "] is " + std::to_string(a[c]) + ", want 0");
        continue;
      }
      if (a[c] > kMaxLog2Alpha)
        tensor_fail(ck, a_name, "[" + std::to_string(c) + "] = " + std::to_string(a[c]) + " exceeds " + std::to_string(kMaxLog2Alpha));
      alpha[static_cast<std::size_t>(c)] = 1 << a[c];
      const float f = f32_at(cs, c);
      if (!(f > 0 && f <= std::numeric_limits<float>::max()))
        tensor_fail(ck, cs_name, "[" + std::to_string(c) + "] is not positive and finite");
    }
    for (int g = 0; g < G; g++) {
      for (int c = 0; c < np; c++) {
        const int v = static_cast<std::int16_t>(u16_at(gs, static_cast<std::size_t>(g) * np + c));
        if (c >= n || g >= ng) {
          if (v != 0) tensor_fail(ck, gs_name, "padding [" + std::to_string(g) + ", " + std::to_string(c) + "] is " + std::to_string(v) + ", want 0");
        } else if (v < 1 || v > alpha[static_cast<std::size_t>(c)]) {
          tensor_fail(ck, gs_name, "[" + std::to_string(g) + ", " + std::to_string(c) + "] = " + std::to_string(v) +
                                       " outside [1, alpha = " + std::to_string(alpha[static_cast<std::size_t>(c)]) + "]");
        }
      }
    }
  } else {
    for (int c = 0; c < n; c++)
      if (f32_at(cs, c) != 1.0f / 16) tensor_fail(ck, cs_name, "[" + std::to_string(c) + "] is not 1/16 (float group scales)");
    for (int g = 0; g < G; g++) {
      for (int c = 0; c < np; c++) {
        const float v = f32_at(gs, static_cast<std::size_t>(g) * np + c);
        if (c >= n || g >= ng) {
          if (v != 0) tensor_fail(ck, gs_name, "padding [" + std::to_string(g) + ", " + std::to_string(c) + "] is not 0");
        } else if (!(v > 0 && v <= std::numeric_limits<float>::max())) {
          tensor_fail(ck, gs_name, "[" + std::to_string(g) + ", " + std::to_string(c) + "] is not positive and finite");
        }
      }
    }
  }

  // Codes: none is −8, padding is 0, and (integer scales) every channel's worst-case
  // accumulator Σ_g ŝ·Σ|q|·127·16 fits in int32, the proof the kernel relies on.
  const std::string q_name = lp.name + ".qweight";
  const std::uint8_t* q = ck.data(ck.get(q_name));
  const int kb_n = kp / 128;
  const int sums_groups = G == 1 ? 1 : G;
  std::vector<std::int32_t> abs_sum(static_cast<std::size_t>(sums_groups) * np, 0);
  for (int nb = 0; nb < np / 8; nb++) {
    for (int kb = 0; kb < kb_n; kb++) {
      const std::uint8_t* blk = q + (static_cast<std::size_t>(nb) * kb_n + kb) * 512;
      for (int lane = 0; lane < 32; lane++) {
        const int c = nb * 8 + lane / 4;
        for (int step = 0; step < 4; step++) {
          for (int j = 0; j < 4; j++) {
            const std::uint8_t b = blk[lane * 16 + step * 4 + j];
            const int k_lo = kb * 128 + step * 32 + 4 * (lane % 4) + j, k_hi = k_lo + 16;
            const int lo = static_cast<int>(b & 0xF) - ((b & 0x8) ? 16 : 0);
            const int hi = static_cast<int>(b >> 4) - ((b & 0x80) ? 16 : 0);
            if (lo == -8 || hi == -8)
              tensor_fail(ck, q_name, "code -8 for output " + std::to_string(c) + " (int4 codes are -7..7)");
            if ((c >= n || k_lo >= k) && lo != 0)
              tensor_fail(ck, q_name, "padding code at [" + std::to_string(c) + ", " + std::to_string(k_lo) + "] is not 0");
            if ((c >= n || k_hi >= k) && hi != 0)
              tensor_fail(ck, q_name, "padding code at [" + std::to_string(c) + ", " + std::to_string(k_hi) + "] is not 0");
            const int g_lo = G == 1 ? 0 : k_lo / gsz, g_hi = G == 1 ? 0 : k_hi / gsz;
            abs_sum[static_cast<std::size_t>(g_lo) * np + c] += lo < 0 ? -lo : lo;
            abs_sum[static_cast<std::size_t>(g_hi) * np + c] += hi < 0 ? -hi : hi;
          }
        }
      }
    }
  }
  if (lp.int_scales) {
    for (int c = 0; c < n; c++) {
      std::int64_t sum = 0;
      for (int g = 0; g < ng; g++) {
        const int s = static_cast<std::int16_t>(u16_at(gs, static_cast<std::size_t>(g) * np + c));
        sum += static_cast<std::int64_t>(s) * abs_sum[static_cast<std::size_t>(g) * np + c];
        if (sum > kAccLimit / kPerUnit)
          tensor_fail(ck, q_name, "output " + std::to_string(c) + ": the worst-case int32 accumulator exceeds 2^31-1");
      }
    }
  }
}

bool can_fuse(const LinearPlan& a, const LinearPlan& b) {
  if (a.format != b.format || a.k != b.k || a.act != b.act) return false;
  if (a.act == ActForm::I8Static) {
    std::uint32_t x, y;
    std::memcpy(&x, &a.act_scale, 4);
    std::memcpy(&y, &b.act_scale, 4);
    if (x != y) return false;
  }
  if (a.format == WeightFormat::Dense16) return true;
  return a.groups == b.groups && a.group_size == b.group_size && a.int_scales == b.int_scales;
}

std::uint16_t float_to_half_bits(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000;
  const std::uint32_t ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) return static_cast<std::uint16_t>(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0));  // Inf/NaN
  if (ax >= 0x477ff000) return static_cast<std::uint16_t>(sign | 0x7c00);  // rounds to ≥ 65520: overflow
  if (ax < 0x38800000) {
    // Subnormal half (or zero): value = m · 2^-24, rounded to nearest even.
    if (ax < 0x33000000) return static_cast<std::uint16_t>(sign);  // < 2^-25: rounds to 0
    const std::uint32_t e = ax >> 23;
    const std::uint32_t m = (ax & 0x7fffff) | 0x800000;
    const std::uint32_t shift = 126 - e;  // 14 + (127 - 1 - e) … number of bits dropped
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1))) r++;
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t r = ((ax - 0x38000000) >> 13);  // rebias exponent 127 → 15
  const std::uint32_t rem = ax & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
  return static_cast<std::uint16_t>(sign | r);
}

float half_bits_to_float_host(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  const std::uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  std::uint32_t x;
  if (e == 0) {
    if (m == 0) {
      x = sign;
    } else {  // subnormal: m · 2^-24
      float f = static_cast<float>(m) * 5.9604644775390625e-8f;
      std::memcpy(&x, &f, 4);
      x |= sign;
    }
  } else if (e == 31) {
    x = sign | 0x7f800000 | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

HalfData to_f16(const SafetensorsCheckpoint& ck, const std::string& name, const std::vector<std::int64_t>& shape) {
  const TensorInfo& t = ck.get(name);
  if (!is_float(t.dtype) || t.shape != shape)
    tensor_fail(ck, name, std::string(dtype_name(t.dtype)) + shape_str(t.shape) + ", want a float tensor " + shape_str(shape));
  HalfData h;
  if (t.dtype == DType::F16) {
    h.view = ck.typed<std::uint16_t>(name, DType::F16, shape);
    h.data = h.view.data();
    h.size = h.view.size();
    return h;
  }
  const std::uint8_t* p = ck.data(t);
  const std::size_t n = static_cast<std::size_t>(t.numel());
  h.owned.resize(n);
  for (std::size_t i = 0; i < n; i++) {
    const float f = t.dtype == DType::BF16 ? bf16_to_float(u16_at(p, i)) : f32_at(p, i);
    const std::uint16_t b = float_to_half_bits(f);
    if ((b & 0x7c00) == 0x7c00 && std::isfinite(f))
      tensor_fail(ck, name, "value " + std::to_string(f) + " at [" + std::to_string(i) +
                                "] does not fit in fp16 (largest 65504): the executor computes in fp16");
    h.owned[i] = b;
  }
  h.data = h.owned.data();
  h.size = n;
  return h;
}

std::vector<float> to_f32(const SafetensorsCheckpoint& ck, const std::string& name, const std::vector<std::int64_t>& shape) {
  const TensorInfo& t = ck.get(name);
  if (!is_float(t.dtype) || t.shape != shape)
    tensor_fail(ck, name, std::string(dtype_name(t.dtype)) + shape_str(t.shape) + ", want a float tensor " + shape_str(shape));
  const std::uint8_t* p = ck.data(t);
  const std::size_t n = static_cast<std::size_t>(t.numel());
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; i++) {
    switch (t.dtype) {
      case DType::F16: out[i] = half_bits_to_float_host(u16_at(p, i)); break;
      case DType::BF16: out[i] = bf16_to_float(u16_at(p, i)); break;
      default: out[i] = f32_at(p, i); break;
    }
  }
  return out;
}

}  // namespace odyssey::exec
