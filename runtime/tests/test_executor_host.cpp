// test_executor_host.cpp: standalone test of the executor's host-side pieces (no GPU, no nvcc):
// config.json parsing (executor/model_config.hpp), RoPE inverse frequencies, the token windows
// file (executor/tokens.hpp), the tensor inventory and value checks of a checkpoint or an
// Odyssey artifact (executor/model_plan.hpp) and the host fp16 conversions. Malformed inputs
// must each fail with an error naming the file and what is wrong. Meant to run under
// -fsanitize=address,undefined (.ci/run):
//   g++ -std=c++17 -Wall -Wextra -Werror -O1 -fsanitize=address,undefined -Iruntime/src
//     runtime/src/json.cpp runtime/src/safetensors.cpp runtime/src/executor/model_config.cpp
//     runtime/src/executor/model_plan.cpp runtime/src/executor/tokens.cpp runtime/src/executor/tp_plan.cpp
//     runtime/src/calib/stats_file.cpp
//     runtime/tests/test_executor_host.cpp -o /tmp/teh && /tmp/teh [ARTIFACT_DIR CHECKPOINT_DIR]
// With ARTIFACT_DIR (tiny-llama quantized by `odyssey quantize --recipe w4a8-rtn`) and
// CHECKPOINT_DIR (testdata/tiny-llama) it also plans both real folders and damages copies of
// the artifact (layout version, a code of -8, scale padding, a truncated shard, a missing
// tensor) to check that each is refused.
//
// References: the RoPE tables are the Go forward pass's (model.RopeTables, printed as float32
// bits for the positions and indices below), so the inverse frequencies are checked against
// model/rope.go itself, through the cos/sin it derives from them.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "calib/stats_file.hpp"
#include "executor/model_config.hpp"
#include "executor/model_plan.hpp"
#include "executor/tokens.hpp"
#include "executor/tp_plan.hpp"
#include "executor/w4a16_scales.hpp"
#include "json.hpp"
#include "safetensors.hpp"

using namespace odyssey;
using namespace odyssey::exec;

namespace {

int g_checks = 0, g_failures = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++g_checks;                                                                     \
    if (!(cond)) {                                                                  \
      ++g_failures;                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

// fn must throw (any std::exception) with a message containing every part of expect.
void expect_error(const std::string& what, const std::vector<std::string>& expect, const std::function<void()>& fn) {
  ++g_checks;
  try {
    fn();
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    for (const auto& x : expect) {
      if (msg.find(x) == std::string::npos) {
        ++g_failures;
        std::fprintf(stderr, "FAIL %s: message \"%s\" lacks \"%s\"\n", what.c_str(), msg.c_str(), x.c_str());
        return;
      }
    }
    return;
  }
  ++g_failures;
  std::fprintf(stderr, "FAIL %s: no error\n", what.c_str());
}

std::string g_tmp;
std::vector<std::string> g_files, g_dirs;

void write_file(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())) {
    std::perror(path.c_str());
    std::exit(2);
  }
  std::fclose(f);
  g_files.push_back(path);
}

std::string read_file(const std::string& path) { return read_small_file(path, 1u << 30); }

std::string make_dir(const std::string& name) {
  std::string p = g_tmp + "/" + name;
  if (::mkdir(p.c_str(), 0700) != 0) {
    std::perror(p.c_str());
    std::exit(2);
  }
  g_dirs.push_back(p);
  return p;
}

// ---------------------------------------------------------------- safetensors images

struct Spec {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

std::string build(const std::vector<Spec>& specs) {
  JsonWriter w;
  w.begin_object();
  std::string data;
  for (const Spec& s : specs) {
    w.key(s.name).begin_object();
    w.field("dtype", s.dtype);
    w.key("shape").begin_array();
    for (auto d : s.shape) w.value(d);
    w.end_array();
    w.key("data_offsets").begin_array().value(data.size()).value(data.size() + s.bytes.size()).end_array();
    w.end_object();
    data += s.bytes;
  }
  w.end_object();
  std::string header = w.str();
  while (header.size() % 8) header += ' ';
  return le64(header.size()) + header + data;
}

std::string f32s(const std::vector<float>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }
std::string f32_fill(std::size_t n, float x) { return f32s(std::vector<float>(n, x)); }

// ---------------------------------------------------------------- config

Json parse(const std::string& s) { return parse_json(s); }

// The quantization_config Odyssey writes for w8a8-smoothquant --export compressed-tensors.
const char* kCTW8A8 = R"({"quantization_config": {"quant_method": "compressed-tensors", "format": "int-quantized",
  "quantization_status": "compressed", "config_groups": {"group_0": {"targets": ["Linear"],
  "weights": {"num_bits": 8, "type": "int", "symmetric": true, "group_size": null, "strategy": "channel", "block_structure": null,
    "dynamic": false, "actorder": null, "observer": "minmax", "observer_kwargs": {}},
  "input_activations": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token", "dynamic": true},
  "output_activations": null, "format": "int-quantized"}}, "ignore": ["lm_head"], "kv_cache_scheme": null}})";

const char* kTinyConfig = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 768,
  "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 4096,
  "max_position_embeddings": 1024, "rms_norm_eps": 1e-05, "model_type": "llama",
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "tie_word_embeddings": false})";

void test_config() {
  ModelConfig c = parse_model_config(parse(kTinyConfig), "tiny/config.json");
  CHECK(c.architecture == "LlamaForCausalLM" && c.model_type == "llama");
  CHECK(c.hidden == 256 && c.intermediate == 768 && c.layers == 4 && c.heads == 4 && c.kv_heads == 2);
  CHECK(c.head_dim == 64 && c.vocab == 4096 && c.rms_norm_eps == 1e-5 && !c.tie_word_embeddings);
  CHECK(c.rope.theta == 10000 && c.rope.type == "default" && c.sliding_window == 0 && !c.qkv_bias);

  // Class defaults (formats/hf/config.go): Mistral 8 KV heads and window 4096; Qwen2 biases.
  ModelConfig m = parse_model_config(parse(R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 8, "vocab_size": 10})"), "m");
  CHECK(m.kv_heads == 8 && m.sliding_window == 4096 && m.head_dim == 8 && m.rms_norm_eps == 1e-6 && m.rope.theta == 10000);
  ModelConfig m2 = parse_model_config(parse(R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 8, "vocab_size": 10, "sliding_window": null})"), "m");
  CHECK(m2.sliding_window == 0);
  ModelConfig q = parse_model_config(parse(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 10, "tie_word_embeddings": true, "rope_theta": 1000000.0, "use_sliding_window": false})"), "q");
  CHECK(q.qkv_bias && !q.o_bias && q.tie_word_embeddings && q.rope.theta == 1e6 && q.bos_token_id == -1);
  // Classic rope_scaling with llama3 and the old "type" key.
  ModelConfig l3 = parse_model_config(parse(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10, "rope_theta": 500000.0, "rope_scaling":
    {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8192}})"), "l3");
  CHECK(l3.rope.type == "llama3" && l3.rope.factor == 8 && l3.rope.original_max_position_embeddings == 8192 &&
        l3.rope.theta == 500000);
  CHECK(l3.architecture == "LlamaForCausalLM");  // from model_type alone

  struct Bad {
    const char* name;
    std::string json;
    std::vector<std::string> expect;
  };
  const std::string base = R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10)";
  const std::vector<Bad> bad = {
      {"missing hidden_size", R"({"architectures": ["LlamaForCausalLM"], "intermediate_size": 1, "num_hidden_layers": 1, "num_attention_heads": 1, "vocab_size": 1})", {"cfg.json", "hidden_size", "missing"}},
      {"mixtral", R"({"architectures": ["MixtralForCausalLM"], )" + base + "}", {"unsupported architecture", "Mixtral"}},
      {"no family", "{" + base + "}", {"neither architectures nor model_type"}},
      {"arch vs model_type", R"({"architectures": ["LlamaForCausalLM"], "model_type": "qwen2", )" + base + "}", {"does not match model_type"}},
      {"gqa", R"({"model_type": "llama", "num_key_value_heads": 3, )" + base + "}", {"not a multiple of num_key_value_heads 3"}},
      {"hidden/heads", R"({"model_type": "llama", "hidden_size": 66, "intermediate_size": 1, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 1})", {"head_dim is not given"}},
      {"odd head_dim", R"({"model_type": "llama", "head_dim": 7, )" + base + "}", {"head_dim 7 must be even"}},
      {"gelu", R"({"model_type": "llama", "hidden_act": "gelu", )" + base + "}", {"hidden_act", "gelu"}},
      {"yarn", R"({"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}, )" + base + "}", {"rope scaling type", "yarn"}},
      {"llama3 no factor", R"({"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}, )" + base + "}", {"llama3 rope scaling"}},
      {"llama3 high<=low", R"({"model_type": "llama", "rope_parameters": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 4, "original_max_position_embeddings": 8192}, )" + base + "}", {"high_freq_factor"}},
      {"per-layer rope", R"({"model_type": "llama", "rope_parameters": {"full_attention": {"rope_theta": 1.0}}, )" + base + "}", {"per-layer-type rope"}},
      {"string size", R"({"model_type": "llama", "hidden_size": "64", "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10})", {"hidden_size", "want an integer"}},
      {"fractional", R"({"model_type": "llama", "hidden_size": 64.5, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10})", {"hidden_size", "want an integer"}},
      {"negative eps", R"({"model_type": "llama", "rms_norm_eps": -1, )" + base + "}", {"rms_norm_eps"}},
      {"zero vocab", R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 0})", {"vocab_size must be positive"}},
      {"qwen2 partial window", R"({"model_type": "qwen2", "use_sliding_window": true, "sliding_window": 64, "max_window_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10})", {"only some layers"}},
      {"huge", R"({"model_type": "llama", "hidden_size": 99999999999, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10})", {"hidden_size", "out of range"}},
      {"not an object", "[1]", {"expected an object"}},
  };
  for (const Bad& b : bad) {
    expect_error(b.name, b.expect, [&] {
      Json j = parse(b.json);
      (void)parse_model_config(j, "cfg.json");
    });
  }

  // quantization_config.
  CHECK(parse_quant_config(parse(kTinyConfig), "c").kind == QuantKind::None);
  QuantConfig oq = parse_quant_config(parse(R"({"quantization_config": {"quant_method": "odyssey", "format": "fastgemm-w4a8",
    "format_version": 1, "layout_version": 1, "weights": {"group_size": 128}}})"), "c");
  CHECK(oq.kind == QuantKind::Odyssey && oq.group_size == 128);
  expect_error("layout version 2", {"a/config.json", "layout version 2", "reads format 1, layout 1"}, [] {
    (void)parse_quant_config(parse(R"({"quantization_config": {"quant_method": "odyssey", "format_version": 1, "layout_version": 2}})"), "a/config.json");
  });
  expect_error("format version missing", {"format version -1"}, [] {
    (void)parse_quant_config(parse(R"({"quantization_config": {"quant_method": "odyssey", "layout_version": 1}})"), "c");
  });
  expect_error("gptq", {"quant_method", "gptq", "not supported"}, [] {
    (void)parse_quant_config(parse(R"({"quantization_config": {"quant_method": "gptq"}})"), "c");
  });
  QuantConfig ct = parse_quant_config(parse(R"({"quantization_config": {"quant_method": "compressed-tensors", "format": "int-quantized"}})"), "c");
  CHECK(ct.kind == QuantKind::CompressedTensors && ct.format == "int-quantized");
  // No config_groups: nothing says how the linears are quantized.
  expect_error("compressed-tensors without groups", {"dir", "compressed-tensors", "config_groups"}, [&] { check_runnable(ct, "dir"); });
  // The W8A8 scheme Odyssey's exporter writes (artifact/compressed.go ctQuantConfig) is accepted.
  QuantConfig w8 = parse_quant_config(parse(kCTW8A8), "c");
  CHECK(w8.ct_groups.size() == 1 && w8.ct_groups[0].w8a8 && w8.ct_groups[0].targets == std::vector<std::string>{"Linear"} &&
        w8.ct_ignore == std::vector<std::string>{"lm_head"});
  check_runnable(w8, "dir");
  // Anything else is refused naming the group and the difference.
  struct CtBad {
    const char* what;
    std::string from, to;
    std::vector<std::string> expect;
  } ct_bad[] = {
      {"pack-quantized W4A8", "\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"group_size\": null, \"strategy\": \"channel\"",
       "\"num_bits\": 4, \"type\": \"int\", \"symmetric\": true, \"group_size\": 128, \"strategy\": \"group\"",
       {"group_0", "num_bits 4", "group_size set", "not built"}},
      {"W8A16", "\"input_activations\": {\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"strategy\": \"token\", \"dynamic\": true},", "",
       {"group_0", "no input_activations"}},
      {"static activations", "\"dynamic\": true", "\"dynamic\": false", {"input_activations", "static (want dynamic)"}},
      {"per-tensor activations", "\"strategy\": \"token\"", "\"strategy\": \"tensor\"", {"input_activations", "strategy \"tensor\""}},
      {"asymmetric weights", "\"symmetric\": true, \"group_size\"", "\"symmetric\": false, \"group_size\"", {"weights", "asymmetric"}},
      {"pack-quantized format", "\"format\": \"int-quantized\"}}", "\"format\": \"pack-quantized\"}}", {"format \"pack-quantized\""}},
  };
  for (const CtBad& b : ct_bad) {
    std::string j = kCTW8A8;
    const std::size_t at = j.find(b.from);
    CHECK(at != std::string::npos);
    if (at == std::string::npos) continue;
    j.replace(at, b.from.size(), b.to);
    QuantConfig q = parse_quant_config(parse(j), "c");
    expect_error(b.what, b.expect, [&] { check_runnable(q, "dir"); });
  }
}

// ---------------------------------------------------------------- rope

struct RopeRef {
  int pos, i;
  std::uint32_t cos_bits, sin_bits;
};

// Go's table entry: float32(cos(float64(inv[i] · float32(pos)))) (model/rope.go ensure()).
bool rope_matches(const std::vector<float>& inv, const RopeRef& r) {
  const float a = inv[static_cast<std::size_t>(r.i)] * static_cast<float>(r.pos);
  const float c = static_cast<float>(std::cos(static_cast<double>(a)));
  const float s = static_cast<float>(std::sin(static_cast<double>(a)));
  std::uint32_t cb, sb;
  std::memcpy(&cb, &c, 4);
  std::memcpy(&sb, &s, 4);
  if (cb != r.cos_bits || sb != r.sin_bits) {
    std::fprintf(stderr, "rope pos %d i %d: cos %08x sin %08x, Go %08x %08x\n", r.pos, r.i, cb, sb, r.cos_bits, r.sin_bits);
    return false;
  }
  return true;
}

void test_rope() {
  // model.RopeTables(hf.Rope{Theta: 5e5, Type: "llama3", Factor: 8, LowFreqFactor: 1,
  // HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}, 128, 8192), [pos][i].
  const RopeRef llama3[] = {
      {1, 0, 0x3f0a5140, 0x3f576aa4},
      {1, 5, 0x3f6fb433, 0x3eb3c17d},
      {1, 20, 0x3f7ff703, 0x3c87a82d},
      {1, 40, 0x3f800000, 0x380fc8f8},
      {1, 50, 0x3f800000, 0x369406cb},
      {1, 63, 0x3f800000, 0x34a4c2ff},
      {7, 0, 0x3f40ffbd, 0x3f283046},
      {7, 5, 0xbf4ec84f, 0x3f16ebaa},
      {7, 20, 0x3f7e4827, 0x3dece10d},
      {7, 40, 0x3f800000, 0x397b9fb2},
      {7, 50, 0x3f800000, 0x380185f2},
      {7, 63, 0x3f800000, 0x36102a9f},
      {1000, 0, 0x3f0ff813, 0x3f53ae61},
      {1000, 5, 0x3f54e943, 0x3f0e24c9},
      {1000, 20, 0xbf287a93, 0xbf40bee4},
      {1000, 40, 0x3f7fd97f, 0x3d0c6338},
      {1000, 50, 0x3f7fff5d, 0x3b908e83},
      {1000, 63, 0x3f7fffff, 0x39a0e66d},
      {8191, 0, 0xbf2579d9, 0xbf43546a},
      {8191, 5, 0xbf10aa49, 0xbf5334be},
      {8191, 20, 0xbf592809, 0xbf0791cd},
      {8191, 40, 0x3f75f94c, 0x3e8de2bb},
      {8191, 50, 0x3f7fd538, 0x3d13f9ec},
      {8191, 63, 0x3f7fffcb, 0x3b24bdce},
  };
  RopeConfig r;
  r.theta = 500000;
  r.type = "llama3";
  r.factor = 8;
  r.low_freq_factor = 1;
  r.high_freq_factor = 4;
  r.original_max_position_embeddings = 8192;
  std::vector<float> inv = rope_inv_freq(r, 128);
  CHECK(inv.size() == 64);
  for (const RopeRef& x : llama3) CHECK(rope_matches(inv, x));
  // The llama3 ramp changes the low frequencies: the same theta without it differs there.
  RopeConfig plain;
  plain.theta = 500000;
  std::vector<float> inv_plain = rope_inv_freq(plain, 128);
  CHECK(inv_plain[0] == inv[0] && inv_plain[63] != inv[63]);

  // model.RopeTables(hf.Rope{Theta: 1e4, Type: "default"}, 64, 2048).
  const RopeRef deflt[] = {
      {1, 0, 0x3f0a5140, 0x3f576aa4},
      {1, 9, 0x3f7f47d1, 0x3d996f37},
      {1, 31, 0x3f800000, 0x390bd472},
      {33, 0, 0xbc5986b7, 0x3f7ffa39},
      {33, 9, 0xbf4924c2, 0x3f1e5ba7},
      {33, 31, 0x3f7fff5e, 0x3b9032f7},
      {2047, 0, 0x3e7fb55b, 0xbf77e3c6},
      {2047, 9, 0xbf6830f7, 0x3ed79f3f},
      {2047, 31, 0x3f768576, 0x3e8a0848},
  };
  RopeConfig d;
  std::vector<float> inv_d = rope_inv_freq(d, 64);
  for (const RopeRef& x : deflt) CHECK(rope_matches(inv_d, x));
  expect_error("odd head_dim", {"even"}, [] { (void)rope_inv_freq(RopeConfig{}, 7); });
}

// ---------------------------------------------------------------- fp16

void test_half() {
  // Every non-NaN half survives half → float → half, and the float is the value
  // (−1)^s · 2^(e−15) · (1 + m/1024) (2^−14 · m/1024 for subnormals), by ldexp.
  int bad = 0;
  for (std::uint32_t h = 0; h < 0x10000; h++) {
    const std::uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31 && m != 0) continue;  // NaN
    const float f = half_bits_to_float_host(static_cast<std::uint16_t>(h));
    double want = e == 0 ? std::ldexp(static_cast<double>(m), -24)
                         : (e == 31 ? INFINITY : std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15));
    if (h & 0x8000) want = -want;
    if (static_cast<double>(f) != want || float_to_half_bits(f) != h) bad++;
  }
  CHECK(bad == 0);
  // Ties round to even: the midpoint of two neighbours goes to the one with an even mantissa.
  int ties = 0;
  for (std::uint16_t h = 1; h < 0x7bff; h++) {
    const float a = half_bits_to_float_host(h), b = half_bits_to_float_host(static_cast<std::uint16_t>(h + 1));
    const float mid = (a + b) / 2;  // exact in float
    const std::uint16_t want = (h & 1) ? static_cast<std::uint16_t>(h + 1) : h;
    if (float_to_half_bits(mid) != want) ties++;
    // Just above / below the midpoint round away from the tie.
    if (float_to_half_bits(std::nextafter(mid, 1e9f)) != h + 1 || float_to_half_bits(std::nextafter(mid, 0.0f)) != h) ties++;
  }
  CHECK(ties == 0);
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);
  CHECK(float_to_half_bits(65519.99f) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);  // rounds past the largest half: infinity
  CHECK(float_to_half_bits(-1e10f) == 0xfc00);
  CHECK(float_to_half_bits(1e-30f) == 0);
  CHECK((float_to_half_bits(NAN) & 0x7c00) == 0x7c00 && (float_to_half_bits(NAN) & 0x3ff) != 0);
}

// ---------------------------------------------------------------- tokens

std::string token_file(std::uint32_t L, std::uint32_t W, const std::vector<std::int32_t>& ids) {
  std::string s = "ODYTOK01";
  for (std::uint32_t v : {L, W})
    for (int i = 0; i < 4; i++) s += static_cast<char>((v >> (8 * i)) & 0xff);
  s += std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * 4);
  return s;
}

void test_tokens() {
  std::vector<std::int32_t> ids = {5, 1, 2, 3, 4, 0, 7, 9};
  const std::string path = g_tmp + "/windows.bin";
  write_file(path, token_file(4, 2, ids));
  TokenWindows t = read_token_windows(path);
  CHECK(t.seq_len == 4 && t.windows == 2 && t.ids == ids);
  check_token_ids(t, 10, path);
  expect_error("id ≥ vocab", {path, "window 1, position 3", "token id 9", "[0, 9)"}, [&] { check_token_ids(t, 9, path); });
  ids[2] = -3;
  TokenWindows neg = parse_token_windows(reinterpret_cast<const std::uint8_t*>(token_file(4, 2, ids).data()), 48, "neg");
  expect_error("negative id", {"window 0, position 2", "-3"}, [&] { check_token_ids(neg, 10, "neg"); });

  auto bad = [](const std::string& what, const std::string& bytes, const std::vector<std::string>& expect) {
    expect_error(what, expect, [&] {
      (void)parse_token_windows(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "f.bin");
    });
  };
  const std::string good = token_file(4, 2, {1, 2, 3, 4, 5, 6, 7, 8});
  bad("truncated", good.substr(0, good.size() - 1), {"f.bin", "47 bytes", "need exactly 48", "truncated"});
  bad("trailing", good + "x", {"trailing bytes"});
  bad("short", "ODYTOK0", {"too short"});
  bad("magic", "ODYTOK02" + good.substr(8), {"magic"});
  bad("L = 1", token_file(1, 2, {1, 2}), {"window length 1"});
  bad("W = 0", token_file(4, 0, {}), {"window count 0"});
  bad("L huge", token_file(0x7fffffff, 1, {}), {"window length 2147483647"});
  // A header claiming the maximum sizes must fail on the size check, not allocate 64 TiB.
  bad("W·L huge", token_file(1048576, 16777216, {}), {"need exactly"});
  expect_error("missing file", {"/nonexistent/x.bin"}, [] { (void)read_token_windows("/nonexistent/x.bin"); });
}

// ---------------------------------------------------------------- plan: a synthetic checkpoint

// A one-layer LLaMA (hidden 8, 2 heads × 4, 1 KV head, intermediate 12, vocab 5) in F32, with
// the named tensor replaced (or dropped when bytes is "DROP").
std::string write_checkpoint(const std::string& name, const std::string& config,
                             const std::vector<Spec>& replace = {}) {
  const std::string dir = make_dir(name);
  write_file(dir + "/config.json", config);
  std::vector<Spec> specs = {
      {"model.embed_tokens.weight", "F32", {5, 8}, f32_fill(40, 0.5f)},
      {"model.norm.weight", "F32", {8}, f32_fill(8, 1)},
      {"lm_head.weight", "F32", {5, 8}, f32_fill(40, 0.25f)},
      {"model.layers.0.input_layernorm.weight", "BF16", {8}, std::string(16, '\0')},
      {"model.layers.0.post_attention_layernorm.weight", "F16", {8}, std::string(16, '\0')},
      {"model.layers.0.self_attn.q_proj.weight", "F16", {8, 8}, std::string(128, '\0')},
      {"model.layers.0.self_attn.k_proj.weight", "BF16", {4, 8}, std::string(64, '\0')},
      {"model.layers.0.self_attn.v_proj.weight", "F32", {4, 8}, f32_fill(32, 1)},
      {"model.layers.0.self_attn.o_proj.weight", "F32", {8, 8}, f32_fill(64, 1)},
      {"model.layers.0.mlp.gate_proj.weight", "F32", {12, 8}, f32_fill(96, 1)},
      {"model.layers.0.mlp.up_proj.weight", "F32", {12, 8}, f32_fill(96, 1)},
      {"model.layers.0.mlp.down_proj.weight", "F32", {8, 12}, f32_fill(96, 1)},
  };
  for (const Spec& r : replace) {
    bool found = false;
    for (auto it = specs.begin(); it != specs.end(); ++it) {
      if (it->name == r.name) {
        found = true;
        if (r.bytes == "DROP")
          specs.erase(it);
        else
          *it = r;
        break;
      }
    }
    if (!found) specs.push_back(r);
  }
  write_file(dir + "/model.safetensors", build(specs));
  return dir;
}

const char* kSmallConfig = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 5})";

ModelPlan plan_dir(const std::string& dir) {
  const std::string cfg_path = dir + "/config.json";
  Json root = read_json_file(cfg_path, 1 << 20);
  ModelConfig cfg = parse_model_config(root, cfg_path);
  QuantConfig q = parse_quant_config(root, cfg_path);
  check_runnable(q, dir);
  SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir);
  ModelPlan p = plan_model(dir, cfg, q, ck);
  for (const LayerPlan& lp : p.layers)
    for (const LinearPlan& l : lp.lin) validate_quantized(l, ck);
  return p;
}

void test_plan_checkpoint() {
  const std::string dir = write_checkpoint("ck", kSmallConfig);
  ModelPlan p = plan_dir(dir);
  CHECK(p.path == "fp16" && p.layers.size() == 1 && p.lm_head == "lm_head.weight");
  const LinearPlan& k = p.layers[0].lin[kK];
  CHECK(k.name == "model.layers.0.self_attn.k_proj" && k.n == 4 && k.k == 8 && k.format == WeightFormat::Dense16 &&
        k.weight_dtype == DType::BF16 && !k.has_bias);
  CHECK(p.layers[0].lin[kDown].n == 8 && p.layers[0].lin[kDown].k == 12);
  CHECK(can_fuse(p.layers[0].lin[kQ], p.layers[0].lin[kK]) && can_fuse(p.layers[0].lin[kGate], p.layers[0].lin[kUp]));
  {
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir);
    std::vector<float> v = to_f32(ck, "model.layers.0.self_attn.v_proj.weight", {4, 8});
    CHECK(v.size() == 32 && v[31] == 1.0f);
    HalfData h = to_f16(ck, "lm_head.weight", {5, 8});
    CHECK(h.size == 40 && h.data[39] == 0x3400);  // 0.25
    expect_error("to_f16 shape", {"lm_head.weight", "want a float tensor [8, 5]"}, [&] { (void)to_f16(ck, "lm_head.weight", {8, 5}); });
  }

  struct Bad {
    const char* name;
    std::vector<Spec> replace;
    std::vector<std::string> expect;
  };
  const std::vector<Bad> bad = {
      {"missing o_proj", {{"model.layers.0.self_attn.o_proj.weight", "F32", {}, "DROP"}}, {"model.layers.0.self_attn.o_proj.weight", "missing"}},
      {"wrong shape", {{"model.layers.0.mlp.down_proj.weight", "F32", {12, 8}, f32_fill(96, 1)}}, {"model.safetensors", "down_proj.weight", "F32[12, 8]", "want", "[8, 12]"}},
      {"int weight", {{"model.layers.0.mlp.up_proj.weight", "I32", {12, 8}, f32_fill(96, 1)}}, {"up_proj.weight", "I32[12, 8]"}},
      {"stray bias", {{"model.layers.0.self_attn.q_proj.bias", "F32", {8}, f32_fill(8, 1)}}, {"q_proj.bias", "a bias the config does not have"}},
      {"no lm_head", {{"lm_head.weight", "F32", {}, "DROP"}}, {"lm_head.weight", "missing"}},
      {"embedding vocab", {{"model.embed_tokens.weight", "F32", {6, 8}, f32_fill(48, 1)}}, {"embed_tokens.weight", "[6, 8]"}},
      {"norm shape", {{"model.norm.weight", "F32", {7}, f32_fill(7, 1)}}, {"model.norm.weight", "[7]"}},
      {"int8 layer checkpoint", {{"model.layers.0.mlp.up_proj.qweight8", "I8", {12, 8}, std::string(96, '\0')}}, {"qweight8", "8-bit weights"}},
  };
  int n = 0;
  for (const Bad& b : bad) {
    const std::string d = write_checkpoint("ck-bad" + std::to_string(n++), kSmallConfig, b.replace);
    expect_error(b.name, b.expect, [&] { (void)plan_dir(d); });
  }
  // A BF16/F32 weight beyond fp16's range is refused when converted, naming it.
  const std::string big = write_checkpoint("ck-big", kSmallConfig, {{"model.layers.0.mlp.gate_proj.weight", "F32", {12, 8}, f32_fill(96, 70000.0f)}});
  {
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(big);
    expect_error("beyond fp16", {"gate_proj.weight", "does not fit in fp16"}, [&] { (void)to_f16(ck, "model.layers.0.mlp.gate_proj.weight", {12, 8}); });
  }
  // Tied embeddings: no lm_head needed, the embedding serves.
  std::string tied_cfg = kSmallConfig;
  tied_cfg.insert(tied_cfg.size() - 1, R"(, "tie_word_embeddings": true)");
  const std::string tied = write_checkpoint("ck-tied", tied_cfg, {{"lm_head.weight", "F32", {}, "DROP"}});
  CHECK(plan_dir(tied).lm_head == "model.embed_tokens.weight");
  // Qwen2: q/k/v biases required.
  std::string qcfg = kSmallConfig;
  qcfg.replace(qcfg.find("LlamaForCausalLM"), 16, "Qwen2ForCausalLM");
  expect_error("qwen2 without bias", {"q_proj.bias", "missing"}, [&] { (void)plan_dir(write_checkpoint("ck-q", qcfg)); });
  const std::string qd = write_checkpoint("ck-q2", qcfg, {{"model.layers.0.self_attn.q_proj.bias", "F32", {8}, f32_fill(8, 1)},
                                                          {"model.layers.0.self_attn.k_proj.bias", "BF16", {4}, std::string(8, '\0')},
                                                          {"model.layers.0.self_attn.v_proj.bias", "F16", {4}, std::string(8, '\0')}});
  ModelPlan qp = plan_dir(qd);
  CHECK(qp.layers[0].lin[kQ].has_bias && qp.layers[0].lin[kV].has_bias && !qp.layers[0].lin[kO].has_bias);
}

// ---------------------------------------------------------------- plan: a compressed-tensors W8A8 export

std::string i8_fill(std::size_t n, std::int8_t v) { return std::string(n, static_cast<char>(v)); }
std::string f16_fill(std::size_t n, std::uint16_t bits) {
  std::string s;
  for (std::size_t i = 0; i < n; i++) s += std::string{static_cast<char>(bits & 0xFF), static_cast<char>(bits >> 8)};
  return s;
}

// kSmallConfig's model exported as int-quantized: every linear I8 + F16 [out, 1] scales,
// except down_proj, ignored (F16).
std::string write_ct(const std::string& name, const std::vector<Spec>& replace = {}, const std::string& ignore = R"(["lm_head", "model.layers.0.mlp.down_proj"])") {
  std::string cfg = kSmallConfig;
  std::string q = kCTW8A8;
  q = q.substr(1, q.size() - 2);  // the "quantization_config": {...} member
  q.replace(q.find(R"(["lm_head"])"), 11, ignore);
  cfg.insert(cfg.size() - 1, ", " + q);
  std::vector<Spec> specs = {
      {"model.layers.0.self_attn.q_proj.weight", "I8", {8, 8}, i8_fill(64, 3)},
      {"model.layers.0.self_attn.q_proj.weight_scale", "F16", {8, 1}, f16_fill(8, 0x3C00)},
      {"model.layers.0.self_attn.k_proj.weight", "I8", {4, 8}, i8_fill(32, -127)},
      {"model.layers.0.self_attn.k_proj.weight_scale", "F16", {4, 1}, f16_fill(4, 0x2000)},
      {"model.layers.0.self_attn.v_proj.weight", "I8", {4, 8}, i8_fill(32, 127)},
      {"model.layers.0.self_attn.v_proj.weight_scale", "F16", {4, 1}, f16_fill(4, 0x3C00)},
      {"model.layers.0.self_attn.o_proj.weight", "I8", {8, 8}, i8_fill(64, 1)},
      {"model.layers.0.self_attn.o_proj.weight_scale", "F16", {8, 1}, f16_fill(8, 0x3C00)},
      {"model.layers.0.mlp.gate_proj.weight", "I8", {12, 8}, i8_fill(96, 1)},
      {"model.layers.0.mlp.gate_proj.weight_scale", "F16", {12, 1}, f16_fill(12, 0x3C00)},
      {"model.layers.0.mlp.up_proj.weight", "I8", {12, 8}, i8_fill(96, 1)},
      {"model.layers.0.mlp.up_proj.weight_scale", "F16", {12, 1}, f16_fill(12, 0x3C00)},
      {"model.layers.0.mlp.down_proj.weight", "F16", {8, 12}, f16_fill(96, 0x3C00)},
  };
  for (const Spec& r : replace) {
    bool found = false;
    for (auto it = specs.begin(); it != specs.end(); ++it) {
      if (it->name == r.name) {
        found = true;
        if (r.bytes == "DROP")
          specs.erase(it);
        else
          *it = r;
        break;
      }
    }
    if (!found) specs.push_back(r);
  }
  return write_checkpoint(name, cfg, specs);
}

void test_plan_ct() {
  ModelPlan p = plan_dir(write_ct("ct"));
  CHECK(p.path == "mixed");
  const LinearPlan& q = p.layers[0].lin[kQ];
  CHECK(q.format == WeightFormat::W8A8 && q.act == ActForm::I8PerToken && q.n == 8 && q.k == 8 && q.np == 8 && q.kp == 128);
  CHECK(p.layers[0].lin[kDown].format == WeightFormat::Dense16);
  CHECK(can_fuse(p.layers[0].lin[kQ], p.layers[0].lin[kK]) && can_fuse(p.layers[0].lin[kGate], p.layers[0].lin[kUp]));
  CHECK(!can_fuse(p.layers[0].lin[kQ], p.layers[0].lin[kDown]));
  // Every linear quantized: the path is w8a8.
  ModelPlan all = plan_dir(write_ct("ct-all", {{"model.layers.0.mlp.down_proj.weight", "I8", {8, 12}, i8_fill(96, 2)},
                                              {"model.layers.0.mlp.down_proj.weight_scale", "F16", {8, 1}, f16_fill(8, 0x3C00)}},
                                  R"(["lm_head"])"));
  CHECK(all.path == "w8a8");
  struct Bad {
    const char* name;
    std::vector<Spec> replace;
    std::string ignore;
    std::vector<std::string> expect;
  };
  const std::string ig = R"(["lm_head", "model.layers.0.mlp.down_proj"])";
  const std::vector<Bad> bad = {
      {"code -128", {{"model.layers.0.mlp.up_proj.weight", "I8", {12, 8}, i8_fill(96, -128)}}, ig, {"up_proj.weight", "code -128 at [0, 0]"}},
      {"zero scale", {{"model.layers.0.self_attn.k_proj.weight_scale", "F16", {4, 1}, f16_fill(4, 0)}}, ig, {"k_proj.weight_scale", "not positive and finite"}},
      {"inf scale", {{"model.layers.0.self_attn.k_proj.weight_scale", "F16", {4, 1}, f16_fill(4, 0x7C00)}}, ig, {"k_proj.weight_scale", "not positive and finite"}},
      {"negative scale", {{"model.layers.0.self_attn.k_proj.weight_scale", "F16", {4, 1}, f16_fill(4, 0xBC00)}}, ig, {"k_proj.weight_scale", "not positive"}},
      {"scale shape", {{"model.layers.0.self_attn.q_proj.weight_scale", "F16", {8}, f16_fill(8, 0x3C00)}}, ig, {"q_proj.weight_scale", "F16[8]", "want", "[8, 1]"}},
      {"missing scale", {{"model.layers.0.self_attn.q_proj.weight_scale", "F16", {}, "DROP"}}, ig, {"q_proj.weight_scale", "missing"}},
      {"weight shape", {{"model.layers.0.self_attn.o_proj.weight", "I8", {8, 4}, i8_fill(32, 1)}}, ig, {"model.safetensors", "o_proj.weight", "I8[8, 4]", "want", "[8, 8]"}},
      {"int8 for an ignored module", {{"model.layers.0.mlp.down_proj.weight", "I8", {8, 12}, i8_fill(96, 1)}}, ig, {"down_proj.weight", "ignore list"}},
      {"f16 for a quantized module", {}, R"(["lm_head"])", {"down_proj.weight", "ignore list does not name"}},
      {"packed int4", {{"model.layers.0.mlp.up_proj.weight_packed", "I32", {12, 1}, std::string(48, '\0')}}, ig, {"up_proj.weight_packed", "not built"}},
      {"zero point", {{"model.layers.0.mlp.up_proj.weight_zero_point", "I8", {12, 1}, i8_fill(12, 0)}}, ig, {"up_proj.weight_zero_point", "asymmetric"}},
  };
  int n = 0;
  for (const Bad& b : bad) {
    const std::string d = write_ct("ct-bad" + std::to_string(n++), b.replace, b.ignore);
    expect_error(b.name, b.expect, [&] { (void)plan_dir(d); });
  }
}

// ---------------------------------------------------------------- plan: a real artifact

// Copies dir to a new folder, applying edit(name, bytes) to every file.
std::string copy_model(const std::string& src, const std::string& name,
                       const std::function<void(const std::string&, std::string&)>& edit) {
  const std::string dst = make_dir(name);
  for (const char* f : {"config.json", "model.safetensors"}) {
    std::string bytes = read_file(src + "/" + f);
    edit(f, bytes);
    write_file(dst + "/" + f, bytes);
  }
  return dst;
}

// Byte offset in the file of tensor name's data: after the 8-byte length and the header.
std::size_t tensor_offset(const std::string& file, const std::string& name) {
  SafetensorsFile f = SafetensorsFile::open(file);
  return static_cast<std::size_t>(f.file_size() - f.data_size() + f.get(name).offset);
}

// A real `odyssey quantize --recipe w8a8-smoothquant --export compressed-tensors` export:
// planned as W8A8 throughout (every value check passes), and refused once a code is -128 or a
// scale is 0, naming the tensor.
void test_plan_ct_export(const std::string& dir) {
  ModelPlan p = plan_dir(dir);
  CHECK(p.path == "w8a8");
  for (const LayerPlan& lp : p.layers)
    for (const LinearPlan& l : lp.lin) CHECK(l.format == WeightFormat::W8A8 && l.act == ActForm::I8PerToken);
  const std::string st = dir + "/model.safetensors";
  const std::string L0 = "model.layers.0.";
  const std::size_t w = tensor_offset(st, L0 + "mlp.up_proj.weight");
  const std::size_t sc = tensor_offset(st, L0 + "self_attn.v_proj.weight_scale");
  const std::string bad_code = copy_model(dir, "ct-code", [&](const std::string& f, std::string& b) {
    if (f == "model.safetensors") b[w + 5] = static_cast<char>(0x80);
  });
  expect_error("export: code -128", {"up_proj.weight", "code -128 at [0, 5]"}, [&] { (void)plan_dir(bad_code); });
  const std::string bad_scale = copy_model(dir, "ct-scale", [&](const std::string& f, std::string& b) {
    if (f == "model.safetensors") b[sc + 2] = b[sc + 3] = 0;
  });
  expect_error("export: zero scale", {"v_proj.weight_scale", "[1, 0]", "not positive"}, [&] { (void)plan_dir(bad_scale); });
}

// The packed weight of column c, input k (docs/fastgemm-layout.md; the nibble as stored).
int nibble(const unsigned char* q, int kblocks, int c, int k) {
  const int nb = c / 8, gid = c % 8, kk = k % 128, st = kk / 32, rr = kk % 32, tig = (rr % 16) / 4, i = rr % 4;
  const unsigned char b = q[(((size_t)nb * kblocks + k / 128) * 32 + gid * 4 + tig) * 16 + st * 4 + i];
  return rr < 16 ? b & 15 : b >> 4;
}
int nibble(const std::vector<unsigned char>& q, int kblocks, int c, int k) { return nibble(q.data(), kblocks, c, k); }

// The integer accumulators of a packed W4A8 linear with integer group scales (the kernels'
// arithmetic, docs/w4a8-numerics.md: per group Σ x·16q, times ŝ, summed; wrapping uint32).
std::vector<uint32_t> w4a8_acc(const unsigned char* q, const int16_t* gs, int np, int kp, int group,
                               const std::vector<int8_t>& x) {
  std::vector<uint32_t> acc((size_t)np, 0);
  const int kb = kp / 128;
  for (int c = 0; c < np; c++)
    for (int g = 0; g * group < kp; g++) {
      uint32_t part = 0;
      for (int k = g * group; k < (g + 1) * group; k++) {
        const int w = nibble(q, kb, c, k);
        part += (uint32_t)((int)x[(size_t)k] * 16 * (w >= 8 ? w - 16 : w));
      }
      acc[(size_t)c] += (uint32_t)(int32_t)gs[(size_t)g * np + c] * part;
    }
  return acc;
}

void test_plan_artifact(const std::string& art, const std::string& ck_dir) {
  ModelPlan p = plan_dir(art);
  CHECK(p.path == "w4a8");
  CHECK(p.layers.size() == 4);
  const LinearPlan& q = p.layers[0].lin[kQ];
  CHECK(q.format == WeightFormat::W4A8 && q.n == 256 && q.k == 256 && q.np == 256 && q.kp == 256);
  CHECK(q.groups == 2 && q.group_size == 128 && q.int_scales && q.policy == 2 && q.act == ActForm::I8PerToken);
  CHECK(can_fuse(p.layers[0].lin[kQ], p.layers[0].lin[kV]) && can_fuse(p.layers[0].lin[kGate], p.layers[0].lin[kUp]));
  CHECK(p.layers[3].lin[kDown].k == 768 && p.layers[3].lin[kDown].groups == 6);
  ModelPlan c = plan_dir(ck_dir);
  CHECK(c.path == "fp16" && c.layers.size() == 4);

  // Tensor parallelism on the real artifact (tp_plan.hpp; tiny-llama has 2 kv heads): at TP 1 and 2 the ranks' cut
  // tensors give back the whole linear's integer accumulators — concatenated rows for the
  // column-parallel gate_proj, and for the row-parallel down_proj the sum over ranks of each
  // rank's product with the activation zeroed outside its slice (tpsim's arithmetic): equal
  // bit for bit, with the artifact's own codes and integer scales.
  {
    SafetensorsCheckpoint one = SafetensorsCheckpoint::open_file(art + "/model.safetensors");
    uint64_t st = 777;
    for (int tp : {1, 2})
      for (int li : {(int)kGate, (int)kDown}) {
        const LinearPlan& lp = p.layers[1].lin[li];
        const unsigned char* q = one.data(one.get(lp.name + ".qweight"));
        const unsigned char* gsb = one.data(one.get(lp.name + ".group_scale"));
        std::vector<int16_t> gs((size_t)lp.groups * lp.np);
        std::memcpy(gs.data(), gsb, gs.size() * 2);
        std::vector<int8_t> x((size_t)lp.kp, 0);
        for (int k = 0; k < lp.k; k++) {
          st = st * 6364136223846793005ull + 1442695040888963407ull;
          x[(size_t)k] = (int8_t)((int)(st >> 56) % 255 - 127);
        }
        const std::vector<uint32_t> whole = w4a8_acc(q, gs.data(), lp.np, lp.kp, lp.group_size, x);
        std::vector<uint32_t> got(li == kDown ? (size_t)lp.np : 0, 0);
        for (int r = 0; r < tp; r++) {
          const RankPlan rp = plan_rank(p, tp, r);
          const ModelPlan rm = rank_model_plan(p, rp);
          const LinearShard& s = rp.layers[1][li];
          const LinearPlan& rl = rm.layers[1].lin[li];
          const auto sq = shard_qweight(q, lp.np, lp.kp, s);
          const auto sg = shard_group_scale(gsb, lp.groups, lp.np, 2, s);
          std::vector<int16_t> rgs((size_t)rl.groups * rl.np);
          CHECK(sg.size() == rgs.size() * 2 && sq.size() == (size_t)rl.np * rl.kp / 2);
          std::memcpy(rgs.data(), sg.data(), sg.size());
          if (li == kDown) {
            // The rank's activation: its slice of x at shard_x_offset, zero elsewhere.
            std::vector<int8_t> xr((size_t)rl.kp, 0);
            const int off = shard_x_offset(s);
            for (int k = s.k0; k < s.k1; k++) xr[(size_t)(k - s.k0 + off)] = x[(size_t)k];
            const std::vector<uint32_t> part = w4a8_acc(sq.data(), rgs.data(), rl.np, rl.kp, rl.group_size, xr);
            for (size_t c = 0; c < got.size(); c++) got[c] += part[c];
          } else {
            const std::vector<uint32_t> part = w4a8_acc(sq.data(), rgs.data(), rl.np, rl.kp, rl.group_size, x);
            got.insert(got.end(), part.begin(), part.end());
          }
        }
        if (got != whole) std::fprintf(stderr, "tp %d %s: ranks' accumulators differ from the whole\n", tp, lp.name.c_str());
        CHECK(got == whole);
      }
  }

  // plan_layer on one file (the calibration server's layer file is opened this way) plans
  // each layer as plan_model does.
  {
    SafetensorsCheckpoint one = SafetensorsCheckpoint::open_file(art + "/model.safetensors");
    for (int i = 0; i < 4; i++) {
      const LayerPlan L = plan_layer(one, p.cfg, i, true);
      CHECK(L.attn_norm == p.layers[i].attn_norm && L.mlp_norm == p.layers[i].mlp_norm);
      for (int j = 0; j < kNumLinears; j++) {
        const LinearPlan &a = L.lin[j], &b = p.layers[i].lin[j];
        CHECK(a.name == b.name && a.format == b.format && a.n == b.n && a.k == b.k && a.np == b.np && a.kp == b.kp &&
              a.groups == b.groups && a.policy == b.policy && a.act == b.act &&
              std::memcmp(&a.act_scale, &b.act_scale, 4) == 0 && a.int_scales == b.int_scales);
      }
    }
    expect_error("open_file missing", {"nope.safetensors"}, [&] { SafetensorsCheckpoint::open_file(art + "/nope.safetensors"); });
  }

  const std::string st = art + "/model.safetensors";
  const std::string L0 = "model.layers.0.";
  std::size_t qw = tensor_offset(st, L0 + "mlp.down_proj.qweight");
  std::size_t gs = tensor_offset(st, L0 + "self_attn.k_proj.group_scale");
  std::size_t cs = tensor_offset(st, L0 + "mlp.up_proj.channel_scale");
  std::size_t al = tensor_offset(st, L0 + "self_attn.o_proj.alpha_log2");
  std::size_t po = tensor_offset(st, L0 + "mlp.gate_proj.policy");
  std::size_t as = tensor_offset(st, L0 + "mlp.gate_proj.act_scale");
  struct Damage {
    const char* name;
    std::function<void(const std::string&, std::string&)> edit;
    std::vector<std::string> expect;
  };
  auto in_weights = [](std::function<void(std::string&)> f) {
    return [f](const std::string& file, std::string& b) {
      if (file == std::string("model.safetensors")) f(b);
    };
  };
  const std::vector<Damage> damages = {
      {"layout version 2", [](const std::string& file, std::string& b) {
         if (file != std::string("config.json")) return;
         const std::size_t at = b.find("\"layout_version\": 1");
         if (at != std::string::npos) b.replace(at, 19, "\"layout_version\": 2");
       }, {"config.json", "layout version 2"}},
      {"code -8", in_weights([&](std::string& b) { b[qw + 5] = static_cast<char>(0x80); }), {"down_proj.qweight", "code -8"}},
      {"group scale 0", in_weights([&](std::string& b) { b[gs] = 0; b[gs + 1] = 0; }), {"k_proj.group_scale", "[0, 0] = 0", "outside [1, alpha"}},
      {"channel scale negative", in_weights([&](std::string& b) { b[cs + 3] = static_cast<char>(b[cs + 3] | 0x80); }), {"up_proj.channel_scale", "[0] is not positive"}},
      {"alpha 15", in_weights([&](std::string& b) { b[al] = 15; }), {"o_proj.alpha_log2", "exceeds 14"}},
      {"policy 4", in_weights([&](std::string& b) { b[po] = 4; }), {"gate_proj.policy", "unknown policy code 4"}},
      {"per-token with a scale", in_weights([&](std::string& b) { b[as + 3] = 0x3f; }), {"gate_proj.act_scale", "per-token"}},
      {"truncated shard", in_weights([](std::string& b) { b.resize(b.size() - 100); }), {"model.safetensors", "truncated"}},
      {"renamed tensor", in_weights([](std::string& b) {
         const std::size_t at = b.find("model.layers.2.mlp.up_proj.channel_scale");
         if (at != std::string::npos) b[at + 27] = 'X';  // "model.layers.2.mlp.up_proj.Xhannel_scale"
       }), {"model.layers.2.mlp.up_proj.channel_scale", "missing"}},
  };
  int n = 0;
  for (const Damage& d : damages) {
    const std::string dir = copy_model(art, "art-bad" + std::to_string(n++), d.edit);
    expect_error(d.name, d.expect, [&] { (void)plan_dir(dir); });
  }
}

}  // namespace

// The calibration statistics file (docs/gpu-calibration.md): what the writer writes the
// parser reads back exactly (XᵀX widened from float32), with the layout's exact size; a
// truncated, padded or foreign file is refused. gpu/calibstats.go reads the same layout.
void test_calib_stats_file() {
  using namespace odyssey::calibgpu;
  const std::string path = g_tmp + "/stats.bin";
  const float mn[3] = {-1.5f, 0.0f, -3.0f}, mx[3] = {2.0f, 0.25f, 1.0f};
  const double sq[3] = {10.5, 0.125, 7.0};
  const float xtx[9] = {1, 2, 3, 2, 4, 5, 3, 5, 6};
  {
    StatsFileWriter w(path);
    w.header(7, 2, 1, 96);
    w.input(0, 3, 1, 123.25, 0.5f, mn, mx, sq);
    w.xtx_f32(xtx, 4);
    w.xtx_f32(xtx + 4, 5);
    w.input(3, 3, 0, 9.0, 0.125f, mx, mx, sq);
    w.output(6, 42.5);
    w.finish();
  }
  g_files.push_back(path);
  const std::string b = read_file(path);
  CHECK(b.size() == 32 + 2 * (32 + 3 * 16) + 9 * 4 + 16 + 8);
  const auto* d = reinterpret_cast<const std::uint8_t*>(b.data());
  StatsFile f = parse_stats_file(d, b.size(), 16, "stats.bin");
  CHECK(f.layer == 7 && f.rows == 96 && f.inputs.size() == 2 && f.outputs.size() == 1);
  CHECK(f.inputs[0].kind == 0 && f.inputs[0].in == 3 && f.inputs[0].xtx == 1 && f.inputs[0].token_sum == 123.25 &&
        f.inputs[0].token_min == 0.5f);
  CHECK(f.inputs[0].mn[2] == -3.0f && f.inputs[0].mx[1] == 0.25f && f.inputs[0].sumsq[1] == 0.125);
  CHECK(f.inputs[0].xtx_values.size() == 9 && f.inputs[0].xtx_values[5] == 5.0 && f.inputs[0].xtx_values[8] == 6.0);
  CHECK(f.inputs[1].kind == 3 && f.inputs[1].xtx == 0 && f.inputs[1].xtx_values.empty());
  CHECK(f.outputs[0].first == 6 && f.outputs[0].second == 42.5);
  expect_error("stats truncated", {"truncated"}, [&] { parse_stats_file(d, b.size() - 9, 16, "s"); });
  expect_error("stats trailer", {"trailer"}, [&] { parse_stats_file(d, b.size() - 1, 16, "s"); });
  const std::string padded = b + std::string(1, '\0');
  expect_error("stats padded", {"after the trailer"}, [&] {
    parse_stats_file(reinterpret_cast<const std::uint8_t*>(padded.data()), padded.size(), 16, "s");
  });
  expect_error("stats width", {"width 3"}, [&] { parse_stats_file(d, b.size(), 2, "s"); });
  std::string foreign = b;
  foreign[7] = 'X';
  expect_error("stats magic", {"not a statistics file"}, [&] {
    parse_stats_file(reinterpret_cast<const std::uint8_t*>(foreign.data()), foreign.size(), 16, "s");
  });
  // XᵀX in float64 (xtx 2: the fp32 precision's fp64 accumulator), read back bit for bit.
  const std::string path64 = g_tmp + "/stats64.bin";
  const double xtx64[9] = {1.0 / 3, 2, 3, 2, 4.000000001, 5, 3, 5, 1e300};
  {
    StatsFileWriter w(path64);
    w.header(2, 1, 0, 8);
    w.input(6, 3, 2, 1.5, 0.25f, mn, mx, sq);
    w.xtx_f64(xtx64, 2);
    w.xtx_f64(xtx64 + 2, 7);
    w.finish();
  }
  g_files.push_back(path64);
  const std::string b64 = read_file(path64);
  CHECK(b64.size() == 32 + (32 + 3 * 16) + 9 * 8 + 8);
  StatsFile f64 = parse_stats_file(reinterpret_cast<const std::uint8_t*>(b64.data()), b64.size(), 16, "stats64.bin");
  CHECK(f64.inputs.size() == 1 && f64.inputs[0].xtx == 2 && f64.inputs[0].xtx_values.size() == 9);
  CHECK(f64.inputs[0].xtx_values[0] == 1.0 / 3 && f64.inputs[0].xtx_values[4] == 4.000000001 &&
        f64.inputs[0].xtx_values[8] == 1e300);
}

// w4a16_int_scales (the executor's and the calibration server's converter): each channel's
// largest scale becomes 32767 and f = s_max / (16·32767); every group's ŝ·16·f is within
// s_max / 65534 (plus float rounding) of s; padding and all-zero channels get ŝ = 0, f = 0.
void test_w4a16_int_scales() {
  const int G = 3, n = 3, np = 8;
  std::vector<float> gs((std::size_t)G * np, 0.0f);
  const float vals[G][n] = {{0.5f, 1e-3f, 0.0f}, {0.25f, 7e-3f, 0.0f}, {0.125f, 3.3e-5f, 0.0f}};
  for (int g = 0; g < G; g++)
    for (int c = 0; c < n; c++) gs[(std::size_t)g * np + c] = vals[g][c];
  std::vector<std::int16_t> out(gs.size(), -1);
  std::vector<float> f(np, -1.0f);
  w4a16_int_scales(gs.data(), G, n, np, out.data(), f.data());
  CHECK(out[0] == 32767 && out[(std::size_t)np + 1] == 32767);  // channel 0's and 1's largest
  CHECK(f[0] == (float)((double)0.5f / (16.0 * 32767.0)) && f[1] == (float)((double)7e-3f / (16.0 * 32767.0)));
  for (int c = 0; c < 2; c++) {
    const double smax = c == 0 ? 0.5 : (double)7e-3f;
    for (int g = 0; g < G; g++) {
      const double back = (double)out[(std::size_t)g * np + c] * 16.0 * (double)f[c];
      CHECK(std::fabs(back - (double)vals[g][c]) <= smax / 65534.0 * 1.0001);
    }
  }
  for (int c = 2; c < np; c++) {
    CHECK(f[c] == 0.0f);
    for (int g = 0; g < G; g++) CHECK(out[(std::size_t)g * np + c] == 0);
  }
}

// A plan with the given shape whose every linear is `format` with groups of `group` (0: per
// channel), as plan_model would build it for an artifact of that shape (only what plan_rank
// reads is filled in).
ModelPlan synthetic_plan(int hidden, int inter, int heads, int kv, int head_dim, int layers, WeightFormat format,
                         int group, bool qkv_bias) {
  ModelPlan p;
  p.dir = "/models/synthetic";
  p.cfg.hidden = hidden;
  p.cfg.intermediate = inter;
  p.cfg.heads = heads;
  p.cfg.kv_heads = kv;
  p.cfg.head_dim = head_dim;
  p.cfg.layers = layers;
  p.cfg.qkv_bias = qkv_bias;
  const int nk[kNumLinears][2] = {{heads * head_dim, hidden}, {kv * head_dim, hidden}, {kv * head_dim, hidden},
                                  {hidden, heads * head_dim}, {inter, hidden},         {inter, hidden},
                                  {hidden, inter}};
  p.layers.resize(layers);
  for (int l = 0; l < layers; l++)
    for (int i = 0; i < kNumLinears; i++) {
      LinearPlan& lp = p.layers[l].lin[i];
      lp.name = "model.layers." + std::to_string(l) + "." + linear_module(i);
      lp.format = format;
      lp.n = nk[i][0];
      lp.k = nk[i][1];
      const bool packed = format != WeightFormat::Dense16;
      lp.np = packed ? (lp.n + 7) / 8 * 8 : lp.n;
      lp.kp = packed ? (lp.k + 127) / 128 * 128 : lp.k;
      lp.group_size = packed ? (group ? group : lp.kp) : 0;
      lp.groups = packed ? lp.kp / lp.group_size : 0;
      lp.has_bias = qkv_bias && (i == kQ || i == kK || i == kV);
    }
  return p;
}

// The tensor-parallel shards (tp_plan.hpp): every rank's slices partition each dimension; a
// row-parallel rank holds the K blocks and group rows that cover its columns; refusals name
// the dimension.
void test_tp_plan() {
  // LLaMA-2-7B's shape, W4A8 g128, at tp 1, 2, 4, 8 (tp 8: down_proj's 11008 columns split in
  // 1376s, not whole K blocks).
  const ModelPlan p7 = synthetic_plan(4096, 11008, 32, 32, 128, 2, WeightFormat::W4A8, 128, false);
  for (int tp : {1, 2, 4, 8}) {
    int next_n[kNumLinears] = {}, next_k[kNumLinears] = {};
    for (int r = 0; r < tp; r++) {
      const RankPlan rp = plan_rank(p7, tp, r);
      CHECK(rp.heads == 32 / tp && rp.kv_heads == 32 / tp && rp.head0 == r * (32 / tp) && rp.intermediate == 11008 / tp);
      CHECK(rp.layers.size() == 2 && rp.layers[1].size() == (size_t)kNumLinears);
      for (int i = 0; i < kNumLinears; i++) {
        const LinearPlan& lp = p7.layers[1].lin[i];
        const LinearShard& s = rp.layers[1][i];
        if (i == kO || i == kDown) {
          CHECK(s.split == TpSplit::Row && tp_split_of(i) == TpSplit::Row);
          CHECK(s.k0 == next_k[i] && s.k1 - s.k0 == lp.k / tp);  // a partition, in rank order
          next_k[i] = s.k1;
          CHECK(s.kb0 * 128 <= s.k0 && s.k1 <= s.kb1 * 128 && s.kb1 * 128 <= lp.kp);  // the blocks cover it
          CHECK((s.kb0 + 1) * 128 > s.k0 && (s.kb1 - 1) * 128 < s.k1);                // and no more
          CHECK(s.g0 == s.kb0 && s.g1 == s.kb1);                                       // g128: a row per block
        } else {
          CHECK(s.split == TpSplit::Column);
          CHECK(s.n0 == next_n[i] && s.n1 - s.n0 == lp.n / tp && s.n0 % 8 == 0);
          next_n[i] = s.n1;
        }
        CHECK(!s.bias);
      }
    }
    for (int i = 0; i < kNumLinears; i++) {
      const LinearPlan& lp = p7.layers[1].lin[i];
      CHECK(i == kO || i == kDown ? next_k[i] == lp.k : next_n[i] == lp.n);
    }
  }
  {
    const RankPlan rp = plan_rank(p7, 8, 1);
    const LinearShard& d = rp.layers[0][kDown];  // columns [1376, 2752)
    CHECK(d.k0 == 1376 && d.k1 == 2752 && d.kb0 == 10 && d.kb1 == 22);
  }
  {
    // The rank's own model plan: shapes of rank 1 of 8 (down_proj: 1376 columns held as 12 K
    // blocks from 1280, its activation's real columns at offset 96).
    const RankPlan rp = plan_rank(p7, 8, 1);
    const ModelPlan m = rank_model_plan(p7, rp);
    CHECK(m.cfg.heads == 4 && m.cfg.kv_heads == 4 && m.cfg.intermediate == 1376 && m.cfg.hidden == 4096);
    const LinearPlan* l = m.layers[1].lin;
    CHECK(l[kQ].n == 512 && l[kQ].np == 512 && l[kQ].k == 4096 && l[kQ].groups == 32 && l[kQ].name == p7.layers[1].lin[kQ].name);
    CHECK(l[kGate].n == 1376 && l[kUp].np == 1376 && l[kO].n == 4096 && l[kDown].n == 4096);
    CHECK(l[kO].k == 512 && l[kO].kp == 512 && l[kO].groups == 4 && l[kO].group_size == 128);
    CHECK(l[kDown].k == 1536 && l[kDown].kp == 1536 && l[kDown].groups == 12 && l[kDown].group_size == 128);
    CHECK(shard_x_offset(rp.layers[1][kDown]) == 96 && shard_x_offset(rp.layers[1][kO]) == 0 &&
          shard_x_offset(rp.layers[1][kGate]) == 0);
    const ModelPlan pc = synthetic_plan(4096, 11008, 32, 32, 128, 1, WeightFormat::W4A8, 0, false);
    const ModelPlan mc = rank_model_plan(pc, plan_rank(pc, 8, 1));
    CHECK(mc.layers[0].lin[kDown].groups == 1 && mc.layers[0].lin[kDown].group_size == 1536);
    const ModelPlan pd = synthetic_plan(4096, 11008, 32, 32, 128, 1, WeightFormat::Dense16, 0, false);
    const RankPlan rd = plan_rank(pd, 8, 7);
    const ModelPlan md = rank_model_plan(pd, rd);
    CHECK(md.layers[0].lin[kDown].k == 1376 && md.layers[0].lin[kDown].kp == 1376 && shard_x_offset(rd.layers[0][kDown]) == 0);
    expect_error("rank plan of another model", {"rank plan has 1 layers", "the model 2"}, [&] { rank_model_plan(p7, rd); });
  }
  // Per channel: every rank keeps the one row of scales; groups of 32: four rows per block.
  CHECK(plan_rank(synthetic_plan(4096, 11008, 32, 32, 128, 1, WeightFormat::W4A8, 0, false), 8, 3).layers[0][kDown].g1 == 1);
  {
    const RankPlan rp = plan_rank(synthetic_plan(4096, 11008, 32, 32, 128, 1, WeightFormat::W4A8, 32, false), 8, 1);
    const LinearShard& d = rp.layers[0][kDown];
    CHECK(d.g0 == 40 && d.g1 == 88);
  }
  // Biases (Qwen2's q/k/v) go with their rows; GQA with 4 kv heads splits over 2 and 4 ranks.
  const ModelPlan qw = synthetic_plan(3584, 18944, 28, 4, 128, 1, WeightFormat::W4A8, 128, true);
  for (int tp : {2, 4}) {
    const RankPlan rp = plan_rank(qw, tp, tp - 1);
    CHECK(rp.kv_heads == 4 / tp && rp.kv_head0 == 4 - 4 / tp && rp.layers[0][kK].bias && !rp.layers[0][kO].bias);
    CHECK(rp.layers[0][kK].n0 == (4 - 4 / tp) * 128);
  }
  expect_error("qwen2 tp 8", {"/models/synthetic", "tensor parallelism 8", "attention heads", "(28)"},
               [&] { plan_rank(qw, 8, 0); });
  expect_error("llama3 tp 16", {"tensor parallelism 16", "key/value heads", "(8)"},
               [&] { plan_rank(synthetic_plan(4096, 14336, 32, 8, 128, 1, WeightFormat::W4A8, 128, false), 16, 0); });
  expect_error("llama tp 3", {"tensor parallelism 3", "attention heads", "(32)"}, [&] { plan_rank(p7, 3, 0); });
  expect_error("tp 0", {"at least 1"}, [&] { plan_rank(p7, 0, 0); });
  expect_error("rank 8 of 8", {"rank 8", "group of 8"}, [&] { plan_rank(p7, 8, 8); });
  // A packed column slice must be whole 8-row strips; the same shape in fp16 splits.
  const int inter = 40;  // 20 rows per rank at tp 2
  expect_error("strips", {"mlp.gate_proj", "20 output rows per rank", "8-row strips"},
               [&] { plan_rank(synthetic_plan(256, inter, 4, 2, 64, 1, WeightFormat::W4A8, 128, false), 2, 0); });
  CHECK(plan_rank(synthetic_plan(256, inter, 4, 2, 64, 1, WeightFormat::Dense16, 0, false), 2, 1).layers[0][kGate].n0 ==
        20);
}

// The shard cutters (tp_plan.hpp) against the packed layout read back element by element: every
// value a rank holds is the whole tensor's value at the shard's offset.
void test_tp_shards() {
  uint64_t st = 12345;
  auto rnd = [&] {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned char)(st >> 56);
  };
  const ModelPlan p = synthetic_plan(512, 640, 8, 4, 64, 1, WeightFormat::W4A8, 64, false);
  for (int tp : {2, 4})
    for (int r = 0; r < tp; r++) {
      const RankPlan rp = plan_rank(p, tp, r);
      for (int li : {(int)kGate, (int)kDown}) {
        const LinearPlan& lp = p.layers[0].lin[li];
        const LinearShard& s = rp.layers[0][li];
        const int kb = lp.kp / 128, G = lp.groups;
        std::vector<unsigned char> q((size_t)lp.np * lp.kp / 2), gs((size_t)G * lp.np * 2), cs((size_t)lp.np * 4),
            w((size_t)lp.n * lp.k * 2);
        for (auto* v : {&q, &gs, &cs, &w})
          for (auto& x : *v) x = rnd();
        const auto sq = shard_qweight(q.data(), lp.np, lp.kp, s);
        const auto sg = shard_group_scale(gs.data(), G, lp.np, 2, s);
        const auto sc = shard_channels(cs.data(), lp.np, 4, s);
        const auto sw = shard_dense(w.data(), lp.n, lp.k, s);
        bool ok = true;
        if (s.split == TpSplit::Column) {
          const int n = s.n1 - s.n0;
          ok &= sq.size() == (size_t)n * lp.kp / 2 && sg.size() == (size_t)G * n * 2 && sc.size() == (size_t)n * 4 &&
                sw.size() == (size_t)n * lp.k * 2;
          for (int c = 0; ok && c < n; c++) {
            for (int k = 0; k < lp.kp; k++) ok &= nibble(sq, kb, c, k) == nibble(q, kb, c + s.n0, k);
            for (int g = 0; g < G; g++) ok &= !std::memcmp(&sg[((size_t)g * n + c) * 2], &gs[((size_t)g * lp.np + c + s.n0) * 2], 2);
            ok &= !std::memcmp(&sc[(size_t)c * 4], &cs[(size_t)(c + s.n0) * 4], 4);
            ok &= !std::memcmp(&sw[(size_t)c * lp.k * 2], &w[(size_t)(c + s.n0) * lp.k * 2], (size_t)lp.k * 2);
          }
        } else {
          const int kbs = s.kb1 - s.kb0, ks = s.k1 - s.k0;
          ok &= sq.size() == (size_t)lp.np * kbs * 64 && sg.size() == (size_t)(s.g1 - s.g0) * lp.np * 2 && sc == cs &&
                sw.size() == (size_t)lp.n * ks * 2;
          for (int c = 0; ok && c < lp.np; c++) {
            for (int k = 0; k < kbs * 128; k++) ok &= nibble(sq, kbs, c, k) == nibble(q, kb, c, k + s.kb0 * 128);
            for (int g = 0; g < s.g1 - s.g0; g++)
              ok &= !std::memcmp(&sg[((size_t)g * lp.np + c) * 2], &gs[((size_t)(g + s.g0) * lp.np + c) * 2], 2);
            if (c < lp.n) ok &= !std::memcmp(&sw[(size_t)c * ks * 2], &w[((size_t)c * lp.k + s.k0) * 2], (size_t)ks * 2);
          }
        }
        if (!ok) std::fprintf(stderr, "tp shards: tp %d rank %d %s differ\n", tp, r, lp.name.c_str());
        CHECK(ok);
        if (li == kDown && r == 0) {
          // The identity tpsim relies on, with slices that end inside K blocks (640 / 4 = 160):
          // Σ over ranks of (rank's cut weights · its zero-padded slice of x) = the whole product.
          std::vector<int8_t> x((size_t)lp.kp);
          for (auto& v : x) v = (int8_t)rnd();
          std::vector<int16_t> gsi((size_t)G * lp.np);
          std::memcpy(gsi.data(), gs.data(), gs.size());
          const std::vector<uint32_t> whole = w4a8_acc(q.data(), gsi.data(), lp.np, lp.kp, lp.group_size, x);
          std::vector<uint32_t> sum((size_t)lp.np, 0);
          for (int rr = 0; rr < tp; rr++) {
            const RankPlan rq = plan_rank(p, tp, rr);
            const LinearShard& t = rq.layers[0][kDown];
            const ModelPlan rm = rank_model_plan(p, rq);
            const LinearPlan& rl = rm.layers[0].lin[kDown];
            const auto tq = shard_qweight(q.data(), lp.np, lp.kp, t);
            const auto tg = shard_group_scale(gs.data(), G, lp.np, 2, t);
            std::vector<int16_t> tgi(tg.size() / 2);
            std::memcpy(tgi.data(), tg.data(), tg.size());
            std::vector<int8_t> xr((size_t)rl.kp, 0);
            for (int k = t.k0; k < t.k1; k++) xr[(size_t)(k - t.k0 + shard_x_offset(t))] = x[(size_t)k];
            const std::vector<uint32_t> part = w4a8_acc(tq.data(), tgi.data(), rl.np, rl.kp, rl.group_size, xr);
            for (size_t c = 0; c < sum.size(); c++) sum[c] += part[c];
          }
          CHECK(sum == whole);
        }
      }
    }
}

int main(int argc, char** argv) {
  char tmpl[] = "/tmp/odyssey-teh-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 2;
  }
  g_tmp = tmpl;
  try {
    test_config();
    test_rope();
    test_half();
    test_tokens();
    test_plan_checkpoint();
    test_plan_ct();
    test_calib_stats_file();
    test_w4a16_int_scales();
    test_tp_plan();
    test_tp_shards();
    if (argc >= 3) {
      test_plan_artifact(argv[1], argv[2]);
      if (argc >= 4) test_plan_ct_export(argv[3]);
    } else {
      std::printf("no ARTIFACT_DIR CHECKPOINT_DIR given: the real-artifact checks are skipped\n");
    }
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
  }
  for (auto it = g_files.rbegin(); it != g_files.rend(); ++it) ::unlink(it->c_str());
  for (auto it = g_dirs.rbegin(); it != g_dirs.rend(); ++it) ::rmdir(it->c_str());
  ::rmdir(g_tmp.c_str());
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
