// model_config.cpp: config.json parsing for the executor (see model_config.hpp). The defaults
// and checks follow formats/hf/config.go line by line where they decide the computation; the
// Go side stays the reference (it also reports every problem at once, which this one does not
// need: the executor refuses on the first).
#include "executor/model_config.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "safetensors.hpp"

namespace odyssey::exec {

namespace {

struct Family {
  const char* arch;
  const char* model_type;
  int kv_heads;  // 0: equal to the heads
  int max_pos;
  double eps;
  int bos;
  double theta;
  int window;  // sliding window when the key is absent (Mistral)
};

// transformers' LlamaConfig, MistralConfig, Qwen2Config defaults (formats/hf/config.go).
constexpr Family kFamilies[] = {
    {"LlamaForCausalLM", "llama", 0, 2048, 1e-6, 1, 10000, 0},
    {"MistralForCausalLM", "mistral", 8, 4096 * 32, 1e-6, 1, 10000, 4096},
    {"Qwen2ForCausalLM", "qwen2", 32, 32768, 1e-6, -1, 10000, 0},
};

// Reads typed values out of one JSON object; a key whose value is null reads as absent, as
// for transformers' config classes.
class Fields {
 public:
  Fields(const Json& obj, std::string path, std::string prefix)
      : obj_(obj), path_(std::move(path)), prefix_(std::move(prefix)) {}

  const Json* get(const char* key) const {
    const Json* v = obj_.find(key);
    return (v == nullptr || v->is_null()) ? nullptr : v;
  }
  bool present(const char* key) const { return obj_.find(key) != nullptr; }
  bool null(const char* key) const { return get(key) == nullptr; }

  [[noreturn]] void fail(const char* key, const std::string& msg) const {
    throw FormatError(path_ + ": " + prefix_ + key + ": " + msg);
  }

  // An integer; integral floats (8192.0) are accepted as the Go parser does.
  long long integer(const char* key, long long def) const {
    const Json* v = get(key);
    if (v == nullptr) return def;
    if (!v->is_number()) fail(key, std::string("want an integer, got a JSON ") + v->type_name());
    double x = 0;
    try {
      x = v->as_double();
    } catch (const JsonError& e) {
      fail(key, e.message());
    }
    if (x != std::trunc(x) || std::fabs(x) > 9007199254740992.0) fail(key, "want an integer, got " + v->number_text());
    return static_cast<long long>(x);
  }
  long long required_int(const char* key) const {
    if (null(key)) fail(key, "is missing");
    return integer(key, 0);
  }
  double number(const char* key, double def) const {
    const Json* v = get(key);
    if (v == nullptr) return def;
    if (!v->is_number()) fail(key, std::string("want a number, got a JSON ") + v->type_name());
    try {
      return v->as_double();
    } catch (const JsonError& e) {
      fail(key, e.message());
    }
  }
  bool boolean(const char* key, bool def) const {
    const Json* v = get(key);
    if (v == nullptr) return def;
    if (!v->is_bool()) fail(key, std::string("want true or false, got a JSON ") + v->type_name());
    return v->as_bool();
  }
  std::string string(const char* key, const std::string& def) const {
    const Json* v = get(key);
    if (v == nullptr) return def;
    if (!v->is_string()) fail(key, std::string("want a string, got a JSON ") + v->type_name());
    return v->as_string();
  }

 private:
  const Json& obj_;
  std::string path_, prefix_;
};

int to_int(const Fields& f, const char* key, long long v) {
  if (v > std::numeric_limits<int>::max() || v < std::numeric_limits<int>::min())
    f.fail(key, std::to_string(v) + " is out of range");
  return static_cast<int>(v);
}

RopeConfig parse_rope(const Json& root, const Fields& f, const Family& fam, const std::string& path) {
  RopeConfig r;
  r.theta = f.number("rope_theta", fam.theta);
  const char* key = "rope_parameters";
  if (f.null(key)) key = "rope_scaling";
  if (f.null(key)) return r;
  const Json& block = *root.find(key);
  if (!block.is_object()) f.fail(key, std::string("want an object, got a JSON ") + block.type_name());
  if (block.find("rope_theta") == nullptr && block.find("rope_type") == nullptr && block.find("type") == nullptr &&
      block.size() > 0) {
    bool all_objects = true;
    for (const auto& m : block.items()) all_objects &= m.second.is_object();
    if (all_objects) f.fail(key, "per-layer-type rope parameters are not supported");
  }
  Fields b(block, path, std::string(key) + ".");
  r.theta = b.number("rope_theta", r.theta);
  r.type = b.string("rope_type", "");
  if (r.type.empty()) r.type = b.string("type", "default");
  if (r.type != "default") r.factor = b.number("factor", 0);
  if (r.type == "llama3") {
    r.low_freq_factor = b.number("low_freq_factor", 0);
    r.high_freq_factor = b.number("high_freq_factor", 0);
    r.original_max_position_embeddings = to_int(b, "original_max_position_embeddings",
                                                b.integer("original_max_position_embeddings", 0));
  }
  return r;
}

}  // namespace

ModelConfig parse_model_config(const Json& root, const std::string& path) {
  if (!root.is_object()) throw FormatError(path + ": config is a JSON " + root.type_name() + ", expected an object");
  Fields f(root, path, "");
  ModelConfig c;

  // The family: architectures (the class) and model_type (what Auto classes dispatch on)
  // must agree when both are given.
  std::string model_type = f.string("model_type", "");
  const Family* fam = nullptr;
  std::vector<std::string> archs;
  if (const Json* a = f.get("architectures")) {
    if (!a->is_array()) f.fail("architectures", std::string("want a list of strings, got a JSON ") + a->type_name());
    for (const Json& e : a->elems()) {
      if (!e.is_string()) f.fail("architectures", "want a list of strings");
      archs.push_back(e.as_string());
    }
  }
  std::string supported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";
  if (!archs.empty()) {
    for (const std::string& a : archs) {
      for (const Family& x : kFamilies) {
        if (a == x.arch) {
          fam = &x;
          break;
        }
      }
      if (fam) break;
    }
    if (!fam) {
      std::string list;
      for (const auto& a : archs) list += (list.empty() ? "" : ", ") + quote_for_message(a);
      throw FormatError(path + ": unsupported architecture " + list + " (the executor runs " + supported + ")");
    }
  } else if (!model_type.empty()) {
    for (const Family& x : kFamilies) {
      if (model_type == x.model_type) fam = &x;
    }
    if (!fam)
      throw FormatError(path + ": no architectures and unsupported model_type " + quote_for_message(model_type) +
                        " (the executor runs " + supported + ")");
  } else {
    throw FormatError(path + ": neither architectures nor model_type is set; cannot tell the model");
  }
  if (!model_type.empty() && model_type != fam->model_type)
    throw FormatError(path + ": architecture " + fam->arch + " does not match model_type " +
                      quote_for_message(model_type) + " (want \"" + fam->model_type + "\")");
  c.architecture = fam->arch;
  c.model_type = fam->model_type;

  c.hidden = to_int(f, "hidden_size", f.required_int("hidden_size"));
  c.intermediate = to_int(f, "intermediate_size", f.required_int("intermediate_size"));
  c.layers = to_int(f, "num_hidden_layers", f.required_int("num_hidden_layers"));
  c.heads = to_int(f, "num_attention_heads", f.required_int("num_attention_heads"));
  c.vocab = to_int(f, "vocab_size", f.required_int("vocab_size"));
  c.kv_heads = c.heads;
  if (f.present("num_key_value_heads")) {
    c.kv_heads = to_int(f, "num_key_value_heads", f.integer("num_key_value_heads", c.heads));
  } else if (fam->kv_heads != 0) {
    c.kv_heads = fam->kv_heads;
  }
  const bool head_dim_given = !f.null("head_dim");
  c.head_dim = to_int(f, "head_dim", f.integer("head_dim", 0));
  if (!head_dim_given && c.heads > 0) c.head_dim = c.hidden / c.heads;
  c.max_position_embeddings = to_int(f, "max_position_embeddings", f.integer("max_position_embeddings", fam->max_pos));
  c.rms_norm_eps = f.number("rms_norm_eps", fam->eps);
  std::string act = f.string("hidden_act", "silu");
  if (act == "swish") act = "silu";  // transformers maps both to the same SiLU
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);

  if (c.model_type == "llama") {
    c.qkv_bias = f.boolean("attention_bias", false);
    c.o_bias = c.qkv_bias;
    c.mlp_bias = f.boolean("mlp_bias", false);
  } else if (c.model_type == "qwen2") {
    c.qkv_bias = true;  // Qwen2Attention hard-codes bias on q, k, v (not o)
  }
  if (c.model_type == "mistral") {
    c.sliding_window = f.present("sliding_window") ? to_int(f, "sliding_window", f.integer("sliding_window", 0))
                                                   : fam->window;
  } else if (c.model_type == "qwen2" && f.boolean("use_sliding_window", false) && !f.null("sliding_window")) {
    // Qwen2Config: layers from max_window_layers on slide (or layer_types says which).
    int window = to_int(f, "sliding_window", f.integer("sliding_window", 4096));
    long long sliding = 0;
    if (const Json* lt = f.get("layer_types")) {
      if (!lt->is_array()) f.fail("layer_types", "want a list of strings");
      for (const Json& e : lt->elems()) {
        if (!e.is_string()) f.fail("layer_types", "want a list of strings");
        if (e.as_string() == "sliding_attention") sliding++;
      }
    } else {
      long long from = f.integer("max_window_layers", 28);
      sliding = std::max(0LL, c.layers - std::max(from, 0LL));
    }
    if (sliding == c.layers) {
      c.sliding_window = window;
    } else if (sliding != 0) {
      throw FormatError(path + ": Qwen2 sliding-window attention on only some layers (use_sliding_window with "
                               "max_window_layers or layer_types) is not supported");
    }
  }
  c.bos_token_id = fam->bos;
  if (f.present("bos_token_id")) c.bos_token_id = to_int(f, "bos_token_id", f.integer("bos_token_id", -1));
  c.rope = parse_rope(root, f, *fam, path);

  // Validation (formats/hf/config.go's validate and Supported).
  auto positive = [&](const char* key, long long v) {
    if (v <= 0) throw FormatError(path + ": " + key + " must be positive, got " + std::to_string(v));
  };
  positive("hidden_size", c.hidden);
  positive("intermediate_size", c.intermediate);
  positive("num_hidden_layers", c.layers);
  positive("vocab_size", c.vocab);
  positive("max_position_embeddings", c.max_position_embeddings);
  positive("num_attention_heads", c.heads);
  positive("num_key_value_heads", c.kv_heads);
  if (c.heads % c.kv_heads != 0)
    throw FormatError(path + ": num_attention_heads " + std::to_string(c.heads) +
                      " is not a multiple of num_key_value_heads " + std::to_string(c.kv_heads));
  if (head_dim_given) {
    positive("head_dim", c.head_dim);
  } else if (c.hidden % c.heads != 0) {
    throw FormatError(path + ": head_dim is not given and hidden_size " + std::to_string(c.hidden) +
                      " is not a multiple of num_attention_heads " + std::to_string(c.heads));
  }
  if (c.head_dim % 2 != 0)
    throw FormatError(path + ": head_dim " + std::to_string(c.head_dim) + " must be even for rotary embeddings");
  if (!(c.rms_norm_eps > 0) || std::isinf(c.rms_norm_eps))
    throw FormatError(path + ": rms_norm_eps must be positive and finite");
  if (c.sliding_window < 0)
    throw FormatError(path + ": sliding_window must be positive or null, got " + std::to_string(c.sliding_window));
  if (act != "silu")
    throw FormatError(path + ": hidden_act " + quote_for_message(act) +
                      " is not supported: the executor runs a SwiGLU MLP, whose activation is silu");
  const RopeConfig& r = c.rope;
  if (!(r.theta > 0) || std::isinf(r.theta)) throw FormatError(path + ": rope_theta must be positive and finite");
  if (r.type == "llama3") {
    if (!(r.factor > 0) || !(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) ||
        r.original_max_position_embeddings <= 0)
      throw FormatError(path + ": llama3 rope scaling needs factor > 0, low_freq_factor > 0, high_freq_factor > "
                               "low_freq_factor and original_max_position_embeddings > 0");
  } else if (r.type != "default") {
    throw FormatError(path + ": rope scaling type " + quote_for_message(r.type) +
                      " is not supported (supported: default, llama3)");
  }
  // Sizes the kernels index with 32-bit ints: keep products far from overflow.
  if ((long long)c.heads * c.head_dim > (1 << 20) || c.hidden > (1 << 20) || c.intermediate > (1 << 22) ||
      c.vocab > (1 << 24) || c.layers > 4096)
    throw FormatError(path + ": model dimensions out of the executor's range");
  return c;
}

namespace {

// Why a QuantizationArgs object (compressed-tensors) is not the given int8 scheme, or "".
std::string ct_args_differ(const Json& a, const std::string& path, const std::string& prefix, const char* strategy,
                           bool dynamic) {
  if (!a.is_object()) return prefix + " is not an object";
  Fields f(a, path, prefix + ".");
  std::string why;
  auto add = [&](const std::string& w) { why += (why.empty() ? "" : ", ") + w; };
  if (f.integer("num_bits", 0) != 8) add("num_bits " + std::to_string(f.integer("num_bits", 0)) + " (want 8)");
  if (f.string("type", "int") != "int") add("type " + quote_for_message(f.string("type", "")) + " (want \"int\")");
  if (!f.boolean("symmetric", true)) add("asymmetric (want symmetric)");
  if (f.string("strategy", "") != strategy)
    add("strategy " + quote_for_message(f.string("strategy", "")) + " (want \"" + strategy + "\")");
  if (f.get("group_size") != nullptr) add("group_size set (want none)");
  if (f.boolean("dynamic", false) != dynamic) add(dynamic ? "static (want dynamic)" : "dynamic (want static)");
  return why.empty() ? "" : prefix + ": " + why;
}

void parse_ct_groups(const Fields& f, QuantConfig& q, const std::string& path) {
  if (const Json* ig = f.get("ignore")) {
    if (!ig->is_array()) f.fail("ignore", "want an array of module names");
    for (const Json& e : ig->elems()) {
      if (!e.is_string()) f.fail("ignore", "want an array of module names");
      q.ct_ignore.push_back(e.as_string());
    }
  }
  const Json* groups = f.get("config_groups");
  if (groups == nullptr) return;
  if (!groups->is_object()) f.fail("config_groups", "want an object");
  for (const auto& member : groups->items()) {
    CTGroup g;
    g.name = member.first;
    const std::string pre = "quantization_config.config_groups." + g.name;
    if (!member.second.is_object()) throw FormatError(path + ": " + pre + ": want an object");
    Fields gf(member.second, path, pre + ".");
    if (const Json* t = gf.get("targets")) {
      if (!t->is_array()) gf.fail("targets", "want an array");
      for (const Json& e : t->elems()) {
        if (!e.is_string()) gf.fail("targets", "want an array of strings");
        g.targets.push_back(e.as_string());
      }
    }
    std::vector<std::string> whys;
    const std::string format = gf.string("format", q.format);
    if (format != "int-quantized") whys.push_back("format " + quote_for_message(format) + " (want \"int-quantized\")");
    const Json* w = gf.get("weights");
    if (w == nullptr) {
      whys.push_back("no weights scheme");
    } else if (std::string why = ct_args_differ(*w, path, "weights", "channel", false); !why.empty()) {
      whys.push_back(why);
    }
    const Json* in = gf.get("input_activations");
    if (in == nullptr) {
      whys.push_back("no input_activations (16-bit activations: W8A16 is not built)");
    } else if (std::string why = ct_args_differ(*in, path, "input_activations", "token", true); !why.empty()) {
      whys.push_back(why);
    }
    if (gf.get("output_activations") != nullptr) whys.push_back("output_activations are quantized");
    for (const std::string& why : whys) g.why += (g.why.empty() ? "" : "; ") + why;
    g.w8a8 = whys.empty();
    q.ct_groups.push_back(std::move(g));
  }
}

}  // namespace

QuantConfig parse_quant_config(const Json& root, const std::string& path) {
  QuantConfig q;
  if (!root.is_object()) throw FormatError(path + ": config is not a JSON object");
  const Json* qc = root.find("quantization_config");
  if (qc == nullptr || qc->is_null()) return q;
  if (!qc->is_object()) throw FormatError(path + ": quantization_config is a JSON " + qc->type_name() + ", expected an object");
  Fields f(*qc, path, "quantization_config.");
  std::string method = f.string("quant_method", "");
  q.format = f.string("format", "");
  if (method == "odyssey") {
    q.kind = QuantKind::Odyssey;
    long long fv = f.integer("format_version", -1), lv = f.integer("layout_version", -1);
    if (fv != 1 || lv != 1)
      throw FormatError(path + ": Odyssey artifact of format version " + std::to_string(fv) + ", layout version " +
                        std::to_string(lv) + "; this runtime reads format 1, layout 1 (docs/artifact.md)");
    if (const Json* w = f.get("weights")) {
      if (w->is_object()) {
        Fields wf(*w, path, "quantization_config.weights.");
        q.group_size = static_cast<int>(wf.integer("group_size", 0));
      }
    }
  } else if (method == "compressed-tensors") {
    q.kind = QuantKind::CompressedTensors;
    parse_ct_groups(f, q, path);
  } else if (method.empty()) {
    throw FormatError(path + ": quantization_config has no quant_method");
  } else {
    throw FormatError(path + ": quant_method " + quote_for_message(method) +
                      " is not supported (odyssey, compressed-tensors, or no quantization_config for fp16/bf16)");
  }
  return q;
}

std::vector<float> rope_inv_freq(const RopeConfig& r, int head_dim) {
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw std::invalid_argument("rope: head_dim " + std::to_string(head_dim) + " must be positive and even");
  if (!(r.theta > 0)) throw std::invalid_argument("rope: theta must be positive");
  const int half = head_dim / 2;
  std::vector<double> inv(half);
  for (int i = 0; i < half; i++) {
    // transformers: 1 / (base ** (arange(0, dim, 2) / dim)), the exponent in float32.
    double e = static_cast<double>(static_cast<float>(static_cast<double>(2 * i) / static_cast<double>(head_dim)));
    inv[i] = 1 / std::pow(r.theta, e);
  }
  if (r.type == "llama3") {
    if (!(r.factor > 0) || !(r.low_freq_factor > 0) || !(r.high_freq_factor > 0) ||
        r.original_max_position_embeddings <= 0 || r.high_freq_factor == r.low_freq_factor)
      throw std::invalid_argument("rope: bad llama3 scaling parameters");
    const double orig = static_cast<double>(r.original_max_position_embeddings);
    const double low_wavelen = orig / r.low_freq_factor;
    const double high_wavelen = orig / r.high_freq_factor;
    const double pi = 3.14159265358979323846;  // math.Pi
    for (int i = 0; i < half; i++) {
      const double f = inv[i];
      const double wavelen = 2 * pi / f;
      if (wavelen < high_wavelen) {
        // high frequency: kept
      } else if (wavelen > low_wavelen) {
        inv[i] = f / r.factor;
      } else {
        const double smooth = (orig / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        inv[i] = (1 - smooth) * f / r.factor + smooth * f;
      }
    }
  } else if (r.type != "default" && !r.type.empty()) {
    throw std::invalid_argument("rope: type \"" + r.type + "\" is not supported");
  }
  std::vector<float> out(half);
  for (int i = 0; i < half; i++) out[i] = static_cast<float>(inv[i]);
  return out;
}

}  // namespace odyssey::exec
