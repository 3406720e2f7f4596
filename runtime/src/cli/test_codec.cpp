// test_codec.cpp: odyssey-rt test codec --cases DIR. Runs every Flash Communication case written
// by Go (odyssey testdata codec-cases --out DIR; docs/codec-cases.md) through ody_allreduce_sim,
// N ranks simulated on one GPU, and compares bit for bit: the message every rank sends after
// step 1, the requantized sum of every rank after step 3, and every rank's output. Cases whose
// inputs are exact in fp16 and bf16 (grid16) also run with 16-bit inputs and outputs (same wire
// bytes; outputs = the float32 outputs rounded to nearest even). Then the residual-add
// dequantization, the out-of-domain flag (a NaN in one rank's input turns that group into NaN on
// every rank and raises ODY_FC_BAD_INPUT), and the refusals.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "common.hpp"
#include "json.hpp"
#include "report.hpp"
#include "safetensors.hpp"

namespace odyssey {
namespace {

struct CodecResult {
  std::string name, dtype, message;
  int kernels = 0;  // ody_fc_kernels() when it ran
  bool passed = true;
  long long sent_mismatch_bytes = 0, reduced_mismatch_bytes = 0, output_mismatches = 0;
  bool ranks_identical = true;
  int flags = 0;
};

long long meta_ll(const SafetensorsFile& f, const std::string& key) {
  const auto& m = f.metadata_ref();
  auto it = m.find(key);
  if (it == m.end()) f.fail("metadata \"" + key + "\" is missing");
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (*end || v < 0 || v > (1LL << 40)) f.fail("metadata \"" + key + "\" is not a small integer");
  return v;
}

bool meta_bool(const SafetensorsFile& f, const std::string& key) {
  const auto& m = f.metadata_ref();
  auto it = m.find(key);
  return it != m.end() && it->second == "true";
}

uint16_t bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
uint16_t half_rne(float f) {
  __half_raw r = __half_raw(__float2half_rn(f));
  return r.x;
}

const char* dtype_label(int dt) { return dt == ODY_DTYPE_F32 ? "f32" : dt == ODY_DTYPE_F16 ? "f16" : "bf16"; }
size_t dtype_size_of(int dt) { return dt == ODY_DTYPE_F32 ? 4 : 2; }

// Host values in dtype (16-bit: rounded to nearest even; exact for grid16 inputs).
std::vector<uint8_t> to_dtype(const float* v, size_t n, int dt) {
  std::vector<uint8_t> out(n * dtype_size_of(dt));
  for (size_t i = 0; i < n; i++) {
    if (dt == ODY_DTYPE_F32) {
      std::memcpy(&out[4 * i], &v[i], 4);
    } else {
      uint16_t h = dt == ODY_DTYPE_F16 ? half_rne(v[i]) : bf16_rne(v[i]);
      std::memcpy(&out[2 * i], &h, 2);
    }
  }
  return out;
}

long long count_diff(const uint8_t* a, const uint8_t* b, size_t n, long long* first) {
  long long d = 0;
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) {
      if (d == 0 && first) *first = (long long)i;
      d++;
    }
  return d;
}

CodecResult run_case(const std::string& name, const SafetensorsFile& f, int dt) {
  CodecResult r;
  r.name = name;
  r.dtype = dtype_label(dt);
  const int n = (int)meta_ll(f, "ranks");
  const size_t rows = (size_t)meta_ll(f, "rows"), width = (size_t)meta_ll(f, "width");
  const int bits = (int)meta_ll(f, "bits"), group = (int)meta_ll(f, "group");
  const int sym = meta_bool(f, "symmetric") ? 1 : 0;
  const size_t mb = (size_t)meta_ll(f, "message_bytes");
  const size_t cols = width / n, vals = rows * width;
  auto in = f.typed<float>("inputs", DType::F32, {n, (int64_t)rows, (int64_t)width});
  auto sent = f.typed<uint8_t>("sent", DType::U8, {n, n, (int64_t)mb});
  auto reduced = f.typed<uint8_t>("reduced", DType::U8, {n, (int64_t)mb});
  auto out = f.typed<float>("output", DType::F32, {(int64_t)rows, (int64_t)width});
  if (ody_fc_message_bytes(rows, cols, bits, group, sym) != mb) {
    r.passed = false;
    r.message = "ody_fc_message_bytes = " + std::to_string(ody_fc_message_bytes(rows, cols, bits, group, sym)) +
                ", the case says " + std::to_string(mb);
    return r;
  }
  const size_t slot = ody_fc_slot_bytes(rows, cols, bits, group, sym);
  const size_t es = dtype_size_of(dt);
  std::vector<DeviceBuffer> ins, outs;
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (int i = 0; i < n; i++) {
    auto host = to_dtype(in.data() + i * vals, vals, dt);
    ins.emplace_back(vals * es);
    ins.back().upload(host.data(), host.size());
    outs.emplace_back(vals * es);
    outs.back().fill(0xA5);  // never a valid output pattern for every element
    in_ptrs.push_back(ins.back().get());
    out_ptrs.push_back(outs.back().get());
  }
  const size_t wsb = ody_allreduce_sim_workspace_size(n, rows, width, bits, group, sym);
  DeviceBuffer ws(wsb), flag(sizeof(int));
  ws.fill(0);
  flag.fill(0);
  ody_check(ody_allreduce_sim(in_ptrs.data(), out_ptrs.data(), n, rows, width, dt, bits, group, sym, ws.get(),
                              flag.get<int>(), nullptr),
            "ody_allreduce_sim");
  CK(cudaDeviceSynchronize());
  std::vector<uint8_t> w(wsb);
  ws.download(w.data(), wsb);
  flag.download(&r.flags, sizeof(int));
  const size_t nn = (size_t)n * n;
  std::string first;
  for (size_t i = 0; i < (size_t)n; i++)
    for (size_t j = 0; j < (size_t)n; j++) {
      long long at = -1;
      long long d = count_diff(&w[(i * n + j) * slot], sent.data() + (i * n + j) * mb, mb, &at);
      if (d && first.empty()) first = "sent[" + std::to_string(i) + "][" + std::to_string(j) + "] byte " + std::to_string(at);
      r.sent_mismatch_bytes += d;
    }
  for (size_t j = 0; j < (size_t)n; j++) {
    long long at = -1;
    long long d = count_diff(&w[(2 * nn + j) * slot], reduced.data() + j * mb, mb, &at);
    if (d && first.empty()) first = "reduced[" + std::to_string(j) + "] byte " + std::to_string(at);
    r.reduced_mismatch_bytes += d;
  }
  auto want = to_dtype(out.data(), vals, dt);
  std::vector<uint8_t> got(vals * es), rank0(vals * es);
  for (int k = 0; k < n; k++) {
    outs[k].download(got.data(), got.size());
    if (k == 0) rank0 = got;
    else if (got != rank0) r.ranks_identical = false;
    for (size_t e = 0; e < vals; e++)
      if (std::memcmp(&got[e * es], &want[e * es], es) != 0) {
        if (first.empty()) first = "output of rank " + std::to_string(k) + " at " + std::to_string(e);
        r.output_mismatches++;
      }
  }
  // The residual-add dequantization (float32): y = residual + decoded, one rounding.
  if (dt == ODY_DTYPE_F32) {
    DeviceBuffer y(vals * 4);
    const uint8_t* gathered0 = static_cast<const uint8_t*>(ws.get()) + (2 * nn + n) * slot;
    ody_check(ody_fc_dequantize(gathered0, n, rows, width, bits, group, sym, ODY_DTYPE_F32, ins[0].get(), y.get(),
                                nullptr),
              "ody_fc_dequantize (residual)");
    std::vector<float> yh(vals);
    y.download(yh.data(), vals * 4);
    for (size_t e = 0; e < vals; e++) {
      volatile float s = in[e] + out[e];  // one IEEE float32 addition
      float sv = s;
      if (std::memcmp(&yh[e], &sv, 4) != 0) {
        if (first.empty()) first = "residual-add output at " + std::to_string(e);
        r.output_mismatches++;
      }
    }
  }
  r.passed = !r.sent_mismatch_bytes && !r.reduced_mismatch_bytes && !r.output_mismatches && r.ranks_identical &&
             r.flags == 0;
  if (!r.passed)
    r.message = "first difference: " + (first.empty() ? std::string("none") : first) +
                (r.ranks_identical ? "" : "; ranks differ") + (r.flags ? "; error flag " + std::to_string(r.flags) : "");
  return r;
}

// A NaN in rank 1's input: the flag says so, its group is NaN on every rank, no other value is.
CodecResult test_bad_input() {
  CodecResult r;
  r.name = "codec_bad_input";
  r.dtype = "f32";
  const int n = 2, bits = 8, group = 32, sym = 0;
  const size_t rows = 1, width = 128, vals = rows * width;
  std::vector<DeviceBuffer> bufs;
  std::vector<const void*> ins;
  std::vector<void*> outs;
  for (int i = 0; i < n; i++) {
    std::vector<float> h(vals);
    for (size_t k = 0; k < vals; k++) h[k] = 0.25f * (float)((k * 7 + i) % 13) - 1.f;
    if (i == 1) h[5] = std::nanf("");
    bufs.emplace_back(vals * 4);
    bufs.back().upload(h.data(), vals * 4);
    ins.push_back(bufs.back().get());
  }
  for (int i = 0; i < n; i++) {
    bufs.emplace_back(vals * 4);
    outs.push_back(bufs.back().get());
  }
  DeviceBuffer ws(ody_allreduce_sim_workspace_size(n, rows, width, bits, group, sym)), flag(sizeof(int));
  flag.fill(0);
  ody_check(ody_allreduce_sim(ins.data(), outs.data(), n, rows, width, ODY_DTYPE_F32, bits, group, sym, ws.get(),
                              flag.get<int>(), nullptr),
            "ody_allreduce_sim (bad input)");
  CK(cudaDeviceSynchronize());
  flag.download(&r.flags, sizeof(int));
  for (int k = 0; k < n; k++) {
    std::vector<float> y(vals);
    bufs[n + k].download(y.data(), vals * 4);
    for (size_t e = 0; e < vals; e++)
      if (std::isnan(y[e]) != (e < (size_t)group)) r.output_mismatches++;
  }
  r.passed = (r.flags & ODY_FC_BAD_INPUT) && r.output_mismatches == 0;
  r.message = "flags " + std::to_string(r.flags) + ", " + std::to_string(r.output_mismatches) +
              " values whose NaN-ness is wrong (want exactly the group of the NaN, on every rank)";
  return r;
}

// Shapes and codecs the kernels refuse, each with a message and nothing launched.
std::vector<CodecResult> test_refusals() {
  struct Want {
    const char* what;
    ody_status status;
    ody_status got;
  };
  DeviceBuffer buf(1 << 16);
  const void* in[2] = {buf.get(), buf.get()};
  void* out[2] = {buf.get(), buf.get()};
  std::vector<Want> ws = {
      {"group 48", ODY_ERR_UNSUPPORTED, ody_fc_can_implement(1, 96, 2, ODY_DTYPE_F32, 8, 48, 0)},
      {"bits 2", ODY_ERR_UNSUPPORTED, ody_fc_can_implement(1, 256, 2, ODY_DTYPE_F32, 2, 32, 0)},
      {"width not split", ODY_ERR_UNSUPPORTED, ody_fc_can_implement(1, 100, 3, ODY_DTYPE_F32, 8, 32, 0)},
      {"group > chunk", ODY_ERR_UNSUPPORTED, ody_fc_can_implement(1, 128, 4, ODY_DTYPE_F32, 8, 64, 1)},
      {"bad dtype", ODY_ERR_INVALID, ody_fc_can_implement(1, 128, 1, 7, 8, 32, 1)},
      {"sim bits 16", ODY_ERR_UNSUPPORTED,
       ody_allreduce_sim(in, out, 2, 1, 128, ODY_DTYPE_F32, 16, 32, 0, buf.get(), nullptr, nullptr)},
      {"2^35 values", ODY_ERR_UNSUPPORTED, ody_fc_can_implement(size_t(1) << 20, size_t(1) << 15, 1, ODY_DTYPE_F16, 8, 128, 0)},
      {"misaligned", ODY_ERR_UNSUPPORTED,
       ody_fc_quantize(static_cast<char*>(buf.get()) + 4, ODY_DTYPE_F32, 1, 128, 2, 8, 32, 0, buf.get(), nullptr,
                       nullptr)},
  };
  std::vector<CodecResult> rs;
  for (auto& w : ws) {
    CodecResult r;
    r.name = std::string("codec_refuse_") + w.what;
    r.dtype = "-";
    r.passed = w.got == w.status;
    r.message = "status " + std::to_string(w.got) + " (want " + std::to_string(w.status) + ")";
    rs.push_back(r);
  }
  return rs;
}

}  // namespace

int cmd_test_codec(const Args& args) {
  std::string dir = args.get("cases");
  if (dir.empty()) throw std::runtime_error("test codec needs --cases DIR (odyssey testdata codec-cases --out DIR)");
  Json manifest = parse_json(read_small_file(dir + "/manifest.json", 1 << 20));
  const Json* cases = manifest.find("cases");
  if (!cases || !cases->is_array()) throw std::runtime_error(dir + "/manifest.json: no \"cases\" array");
  // Every case with each kernel version asked for (--kernels 7,6,5,4,3,2,1: v7 with the tensor-core
  // INT4 g128 reduce, the default v6, v5, v4 and the earlier versions, which must all compute the
  // same bits).
  const auto versions = args.get_list("kernels", {7, 6, 5, 4, 3, 2, 1});
  std::vector<CodecResult> results;
  for (long long version : versions)
    if (version == 8) throw std::runtime_error("test codec: --kernels 8 is the reduce's bandwidth probe, not a codec (bench codec only)");
  for (long long version : versions) {
  ody_check(ody_fc_set_kernels((int)version), "--kernels");
  const size_t first = results.size();
  for (const Json& c : cases->elems()) {
    const Json* name = c.find("name");
    const Json* file = c.find("file");
    const Json* kind = c.find("kind");
    if (!name || !file || !kind || !name->is_string() || !file->is_string() || !kind->is_string())
      throw std::runtime_error(dir + "/manifest.json: a case lacks name, file or kind");
    const std::string& fn = file->as_string();
    if (fn.find('/') != std::string::npos || fn.find("..") != std::string::npos)
      throw std::runtime_error(dir + "/manifest.json: case file \"" + fn + "\" is not a plain file name");
    if (kind->as_string() != "codec") throw std::runtime_error(fn + ": case kind \"" + kind->as_string() + "\", want codec");
    SafetensorsFile f = SafetensorsFile::open(dir + "/" + fn);
    std::vector<int> dts = {ODY_DTYPE_F32};
    if (meta_bool(f, "grid16")) dts.insert(dts.end(), {ODY_DTYPE_F16, ODY_DTYPE_BF16});
    for (int dt : dts) {
      CodecResult r = run_case(name->as_string(), f, dt);
      std::fprintf(stderr, "%-44s %-4s v%lld %s%s%s\n", r.name.c_str(), r.dtype.c_str(), version,
                   r.passed ? "ok" : "FAIL", r.passed ? "" : ": ", r.message.c_str());
      results.push_back(r);
    }
  }
  results.push_back(test_bad_input());
  for (auto& r : test_refusals()) results.push_back(r);
  for (size_t i = results.size() - 9; i < results.size(); i++)
    std::fprintf(stderr, "%-44s %s %s\n", results[i].name.c_str(), results[i].passed ? "ok" : "FAIL",
                 results[i].message.c_str());
  for (size_t i = first; i < results.size(); i++) results[i].kernels = (int)version;
  }
  return report_cases("test codec", results, [](JsonWriter& w, const auto& r) {
    w.field("name", r.name);
    w.field("dtype", r.dtype);
    w.field("kernels", r.kernels);
    w.field("passed", r.passed);
    w.field("sent_mismatch_bytes", r.sent_mismatch_bytes);
    w.field("reduced_mismatch_bytes", r.reduced_mismatch_bytes);
    w.field("output_mismatches", r.output_mismatches);
    w.field("ranks_identical", r.ranks_identical);
    w.field("flags", r.flags);
    w.field("message", r.message);
  });
}

}  // namespace odyssey
