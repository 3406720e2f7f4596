// test_gemm.cpp: `odyssey-rt test gemm --cases DIR`, the kernels against the Go reference.
//
// The cases (docs/gemm-cases.md) come from `odyssey testdata gemm-cases`, i.e. from
// quant.W4A8GEMMRef and friends, never from this code. For every W4A8 case, every tile config
// and several split-K factors (each combination can_implement accepts: the decode GEMV gemv_w4
// runs the M ≤ 4 cases with integer scales, splits 0 and 1, and the tensor-core GEMVs
// gemv_mma_s2/s4/s8 the M ≤ 16 ones):
//   - integer scales: the int32 accumulators must match bit for bit, and so must the fp16
//     outputs (tolerance 0 ulp): the epilogue is IEEE float32 multiply/add with round-to-nearest
//     in the reference's order, then one round to fp16, so there is nothing to tolerate;
//   - float scales, no split: bit for bit too (groups are summed in the reference's order);
//   - float scales, K split over blocks: the partial float sums are added in whatever order the atomics
//     land, so the output may differ from the reference by reassociation only. The bound used is
//     |Δ| ≤ (G + K/128 + 2)·2⁻²⁴·Σ_k|x·q|·s·xs + one fp16 ulp of the reference, computed
//     here from the unpacked operands.
// Outputs are poisoned (0xFF bytes: fp16 NaN, acc -1) before each launch, every launch is
// checked, and the split-K workspace must be all zero again afterwards (the kernel restores it).
// W4A16 cases run through every config (the decode GEMVs w4a16_gemv where M <= 8 and
// w4a16_gemv2_s2/s4/s8/s2p where M <= 16, splits 0 and 1) and split, within the tolerance of
// docs/gemm-cases.md. Also: activation quantization cases (bit-exact codes and scales) and
// can_implement refusals. --configs NAME,... (W4A8 or W4A16 names) and --kinds w4a8,w4a16,act
// narrow a run; the dispatch's own run of each case always runs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "common.hpp"
#include "json.hpp"
#include "report.hpp"
#include "safetensors.hpp"

namespace odyssey {
namespace {

struct CaseResult {
  std::string name, kernel, message;
  bool passed = true;
  long long acc_mismatches = 0;
  long long y_max_ulp = 0;
};

int meta_int(const SafetensorsFile& f, const std::string& key) {
  auto m = f.metadata();
  auto it = m.find(key);
  if (it == m.end()) f.fail("metadata \"" + key + "\" is missing");
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (*end || v < 0 || v > (1LL << 30)) f.fail("metadata \"" + key + "\" is not a small integer");
  return (int)v;
}

std::string meta_str(const SafetensorsFile& f, const std::string& key) {
  auto m = f.metadata();
  auto it = m.find(key);
  return it == m.end() ? "" : it->second;
}

// fp16 bit patterns as ordered integers, so |a-b| counts ulps across zero.
long long half_ordered(uint16_t h) {
  return (h & 0x8000) ? -(long long)(h & 0x7FFF) : (long long)h;
}
bool half_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }

// The int4 code of (n, k) in the packed layout (docs/fastgemm-layout.md), decoded here on its
// own so the test does not trust the kernel's reading of the spec.
int code_at(const uint8_t* packed, int n, int k, int kp) {
  int nb = n / 8, gid = n % 8, kb = k / 128, r = k % 128;
  int step = r / 32;
  r %= 32;
  bool high = r >= 16;
  if (high) r -= 16;
  int tig = r / 4, j = r % 4;
  int lane = gid * 4 + tig;
  size_t off = ((size_t)(nb * (kp / 128) + kb) * 32 + lane) * 16 + step * 4 + j;
  int nib = high ? packed[off] >> 4 : packed[off] & 15;
  return nib >= 8 ? nib - 16 : nib;
}

struct W4A8Case {
  int m, n, k, group, np, groups;
  bool per_token;
  std::vector<int8_t> x;
  std::vector<float> x_scale, channel_scale, fscale, bias;
  std::vector<uint8_t> qweight;
  std::vector<int16_t> iscale;
  std::vector<int32_t> acc;
  std::vector<uint16_t> y, y_float;
  std::vector<double> float_bound;  // Σ_g Σ_{k∈g} |x·q|·s_g·xs per output
};

template <class T>
std::vector<T> copy_view(const TensorView<T>& v) {
  return std::vector<T>(v.begin(), v.end());
}

W4A8Case load_w4a8(const SafetensorsFile& f) {
  W4A8Case c;
  c.m = meta_int(f, "m");
  c.n = meta_int(f, "n");
  c.k = meta_int(f, "k");
  c.group = meta_int(f, "group_size");
  if (c.m < 1 || c.n < 1 || c.k < 128 || c.k % 128 || c.group < 1 || c.k % c.group)
    f.fail("inconsistent m/n/k/group_size metadata");
  c.np = (c.n + 7) / 8 * 8;
  c.groups = c.k / c.group;
  c.x = copy_view(f.typed<int8_t>("x", DType::I8, {c.m, c.k}));
  auto xs = f.typed<float>("x_scale", DType::F32);
  if (xs.shape().size() != 1 || (xs.size() != 1 && xs.size() != (size_t)c.m))
    f.fail_tensor("x_scale", "want [1] or [M]");
  c.x_scale = copy_view(xs);
  c.per_token = meta_str(f, "act") == "per_token";
  if (xs.size() != (c.per_token ? (size_t)c.m : 1u)) f.fail_tensor("x_scale", "size does not match metadata act");
  c.qweight = copy_view(f.typed<uint8_t>("qweight", DType::U8, {c.np / 8, c.k / 128, 32, 16}));
  c.iscale = copy_view(f.typed<int16_t>("group_scale", DType::I16, {c.groups, c.np}));
  c.channel_scale = copy_view(f.typed<float>("channel_scale", DType::F32, {c.np}));
  c.fscale = copy_view(f.typed<float>("float_group_scale", DType::F32, {c.groups, c.np}));
  if (f.find("bias")) c.bias = copy_view(f.typed<float>("bias", DType::F32, {c.n}));
  c.acc = copy_view(f.typed<int32_t>("acc", DType::I32, {c.m, c.n}));
  c.y = copy_view(f.typed<uint16_t>("y", DType::F16, {c.m, c.n}));
  c.y_float = copy_view(f.typed<uint16_t>("y_float", DType::F16, {c.m, c.n}));
  // Σ_g Σ_{k∈g} |x·q|·s_g·xs, for the float split-K tolerance: it bounds every partial sum,
  // whichever K range a block owns.
  c.float_bound.assign((size_t)c.m * c.n, 0.0);
  std::vector<int> q((size_t)c.n * c.k);
  for (int n = 0; n < c.n; n++)
    for (int k = 0; k < c.k; k++) q[(size_t)n * c.k + k] = code_at(c.qweight.data(), n, k, c.k);
  for (int m = 0; m < c.m; m++) {
    double xsv = c.per_token ? c.x_scale[m] : c.x_scale[0];
    for (int n = 0; n < c.n; n++) {
      double b = 0;
      for (int g = 0; g < c.groups; g++) {
        long long p = 0;
        for (int k = g * c.group; k < (g + 1) * c.group; k++)
          p += std::llabs((long long)c.x[(size_t)m * c.k + k] * q[(size_t)n * c.k + k]);
        b += (double)p * c.fscale[(size_t)g * c.np + n];
      }
      c.float_bound[(size_t)m * c.n + n] = b * xsv;
    }
  }
  return c;
}

// Runs one (scale kind, config, splits) on the case and compares.
CaseResult run_w4a8(const std::string& name, const W4A8Case& c, bool int_scale, int config, int splits,
                    DeviceBuffer& dx, DeviceBuffer& dxs, DeviceBuffer& dq, DeviceBuffer& dis,
                    DeviceBuffer& dfs, DeviceBuffer& dcs, DeviceBuffer& db) {
  CaseResult r;
  r.name = name;
  r.kernel = std::string(int_scale ? "int" : "float") + "/" + ody_w4a8_config_name(config) +
             (splits ? "/split" + std::to_string(splits) : std::string("/auto"));
  ody_w4a8_problem p{};
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.group_size = c.group;
  p.act_per_token = c.per_token;
  p.scale_kind = int_scale ? ODY_SCALE_INT : ODY_SCALE_FLOAT;
  p.config = config;
  p.splits = splits;
  size_t ws_bytes = ody_w4a8_workspace_size(&p);
  DeviceBuffer ws(ws_bytes);
  if (ws_bytes) ws.fill(0);
  DeviceBuffer dy((size_t)c.m * c.n * 2), dacc((size_t)c.m * c.n * 4);
  dy.fill(0xFF);
  dacc.fill(0xFF);
  ody_w4a8_args a{};
  a.x = dx.get<int8_t>();
  a.x_scale = dxs.get<float>();
  a.qweight = dq.get<uint8_t>();
  a.group_scale = int_scale ? dis.get() : dfs.get();
  a.channel_scale = int_scale ? dcs.get<float>() : nullptr;
  a.bias = c.bias.empty() ? nullptr : db.get<float>();
  a.y = dy.get();
  a.acc_out = int_scale ? dacc.get<int32_t>() : nullptr;
  a.workspace = ws.get();
  a.workspace_bytes = ws_bytes;
  // Twice: the second launch proves the workspace and counters were restored.
  for (int rep = 0; rep < 2; rep++) {
    if (rep == 1) {
      dy.fill(0xFF);
      dacc.fill(0xFF);
    }
    ody_check(ody_w4a8_gemm(&p, &a, nullptr), "ody_w4a8_gemm");
    CK(cudaDeviceSynchronize());
  }
  std::vector<uint16_t> y((size_t)c.m * c.n);
  dy.download(y.data(), y.size() * 2);
  const std::vector<uint16_t>& want = int_scale ? c.y : c.y_float;
  // Float scales are exact only when no tile is shared between blocks.
  bool exact = int_scale || ws_bytes == 0;
  long long bad_y = 0;
  for (size_t i = 0; i < y.size(); i++) {
    if (half_nan(y[i]) != half_nan(want[i])) {
      bad_y++;
      r.y_max_ulp = 1LL << 40;
      continue;
    }
    long long d = std::llabs(half_ordered(y[i]) - half_ordered(want[i]));
    r.y_max_ulp = std::max(r.y_max_ulp, d);
    if (exact) {
      if (d != 0) bad_y++;
    } else {
      double got = half_bits_to_float(y[i]), ref = half_bits_to_float(want[i]);
      double ulp = std::ldexp(1.0, std::max(-24, (int)std::floor(std::log2(std::max(std::fabs(ref), 6.1e-5))) - 10));
      // Each float partial and each atomic add rounds once: at most (groups + K/128 + 2)
      // roundings of magnitude ≤ the bound.
      double tol = (c.groups + c.k / 128 + 2) * std::ldexp(1.0, -24) * c.float_bound[i] + ulp;
      if (std::fabs(got - ref) > tol) bad_y++;
    }
  }
  if (int_scale) {
    std::vector<int32_t> acc((size_t)c.m * c.n);
    dacc.download(acc.data(), acc.size() * 4);
    for (size_t i = 0; i < acc.size(); i++) r.acc_mismatches += acc[i] != c.acc[i];
  }
  if (ws_bytes) {
    std::vector<int32_t> w(ws_bytes / 4);
    ws.download(w.data(), ws_bytes);
    long long dirty = 0;
    for (int32_t v : w) dirty += v != 0;
    if (dirty) {
      r.passed = false;
      r.message += std::to_string(dirty) + " workspace words not restored to 0; ";
    }
  }
  if (r.acc_mismatches) {
    r.passed = false;
    r.message += std::to_string(r.acc_mismatches) + " int32 accumulators differ; ";
  }
  if (bad_y) {
    r.passed = false;
    r.message += std::to_string(bad_y) + " fp16 outputs out of tolerance (max " + std::to_string(r.y_max_ulp) + " ulp); ";
  }
  return r;
}

// --configs NAME,...: run only these configs, W4A8 or W4A16 names (the dispatch's own run
// always runs).
std::vector<std::string> g_only_configs;
bool config_selected(int cfg) {
  if (g_only_configs.empty()) return true;
  for (auto& n : g_only_configs)
    if (n == ody_w4a8_config_name(cfg)) return true;
  return false;
}
bool config16_selected(int cfg) {
  if (g_only_configs.empty()) return true;
  for (auto& n : g_only_configs)
    if (n == ody_w4a16_config_name(cfg)) return true;
  return false;
}
// wgmma v5 (config wgmma_ws_r128t128_v5) runs in an unselected test (no --configs) and in the
// probe only with ODYSSEY_WGMMA_V5 set (not "0"), until it has run on a GPU: a fault there (its
// mbarrier watchdog traps) would poison the context for every later case.
bool wgmma_v5_selected() {
  const char* e = std::getenv("ODYSSEY_WGMMA_V5");
  return e && std::string(e) != "0";
}
// --kinds KIND,...: run only the cases of these kinds (w4a8, w4a16, act); all by default.
std::vector<std::string> g_only_kinds;

std::vector<CaseResult> test_w4a8(const std::string& name, const SafetensorsFile& f) {
  W4A8Case c = load_w4a8(f);
  DeviceBuffer dx(c.x.size()), dxs(c.x_scale.size() * 4), dq(c.qweight.size()), dis(c.iscale.size() * 2),
      dfs(c.fscale.size() * 4), dcs(c.channel_scale.size() * 4), db(std::max<size_t>(4, c.bias.size() * 4));
  dx.upload(c.x.data(), c.x.size());
  dxs.upload(c.x_scale.data(), c.x_scale.size() * 4);
  dq.upload(c.qweight.data(), c.qweight.size());
  dis.upload(c.iscale.data(), c.iscale.size() * 2);
  dfs.upload(c.fscale.data(), c.fscale.size() * 4);
  dcs.upload(c.channel_scale.data(), c.channel_scale.size() * 4);
  if (!c.bias.empty()) db.upload(c.bias.data(), c.bias.size() * 4);
  std::vector<CaseResult> out;
  int kblocks = c.k / 128;
  for (int cfg = 0; cfg < ody_w4a8_num_configs(); cfg++) {
    if (!config_selected(cfg)) continue;
    if (g_only_configs.empty() && std::string(ody_w4a8_config_name(cfg)) == "wgmma_ws_r128t128_v5" && !wgmma_v5_selected())
      continue;
    // Large cases: only the configs the dispatch would use for them, to keep the run short.
    if ((long long)c.m * c.n * c.k > (1LL << 30)) {
      ody_w4a8_problem p{c.m, c.n, c.k, c.group, c.per_token, ODY_SCALE_INT, -1, 0};
      int dc = 0, ds = 0;
      ody_check(ody_w4a8_dispatch(&p, &dc, &ds), "dispatch");
      if (cfg != dc) continue;
    }
    std::vector<int> splits = {0, 1};  // the dispatch's split (the default), whole K per block
    if (kblocks >= 2) splits.push_back(2);
    if (kblocks >= 3) splits.push_back(std::min(kblocks, 7));
    for (int s : splits)
      for (int is_int = 1; is_int >= 0; is_int--) {
        // A config limited to some problems (gemv_w4: M ≤ 4, gemv_mma_s2/s4: M ≤ 64, s8: M ≤ 16; integer scales,
        // no split-K) is run
        // where can_implement accepts it. Skipping a refusal cannot hide a broken case: every
        // other config refuses only what check_problem refuses for all of them, and the
        // dispatch's own run below (config -1) always runs and must pass.
        ody_w4a8_problem p{c.m, c.n, c.k, c.group, c.per_token, is_int ? ODY_SCALE_INT : ODY_SCALE_FLOAT, cfg, s};
        if (ody_w4a8_can_implement(&p, nullptr) == ODY_ERR_UNSUPPORTED) continue;
        out.push_back(run_w4a8(name, c, is_int, cfg, s, dx, dxs, dq, dis, dfs, dcs, db));
      }
  }
  // The dispatch's own choice, as a user would call it.
  for (int is_int = 1; is_int >= 0; is_int--)
    out.push_back(run_w4a8(name, c, is_int, -1, 0, dx, dxs, dq, dis, dfs, dcs, db));
  return out;
}

// W4A16: fp32 tensor-core accumulation against a float64 reference, within the tolerance
// docs/gemm-cases.md states (rounding only), for every config and split.
std::vector<CaseResult> test_w4a16(const std::string& name, const SafetensorsFile& f) {
  int m = meta_int(f, "m"), n = meta_int(f, "n"), k = meta_int(f, "k"), group = meta_int(f, "group_size");
  if (m < 1 || n < 1 || k < 128 || k % 128 || group < 1 || k % group) f.fail("inconsistent m/n/k/group_size metadata");
  int np = (n + 7) / 8 * 8, groups = k / group;
  auto x = f.typed<uint16_t>("x", DType::F16, {m, k});
  auto qw = f.typed<uint8_t>("qweight", DType::U8, {np / 8, k / 128, 32, 16});
  auto gs = f.typed<int16_t>("group_scale", DType::I16, {groups, np});
  auto cs = f.typed<float>("channel_scale", DType::F32, {np});
  auto y_ref = f.typed<uint16_t>("y", DType::F16, {m, n});
  auto y_abs = f.typed<float>("y_abs", DType::F32, {m, n});
  std::vector<float> bias;
  if (f.find("bias")) bias = copy_view(f.typed<float>("bias", DType::F32, {n}));
  DeviceBuffer dx((size_t)m * k * 2), dq(qw.size()), dg(gs.size() * 2), dc(np * 4), db(std::max<size_t>(4, bias.size() * 4)),
      dy((size_t)m * n * 2);
  dx.upload(x.data(), (size_t)m * k * 2);
  dq.upload(qw.data(), qw.size());
  dg.upload(gs.data(), gs.size() * 2);
  dc.upload(cs.data(), np * 4);
  if (!bias.empty()) db.upload(bias.data(), bias.size() * 4);
  std::vector<CaseResult> out;
  int kblocks = k / 128;
  std::vector<std::pair<int, int>> variants;
  for (int cfg = 0; cfg < ody_w4a16_num_configs(); cfg++)
    if (config16_selected(cfg))
      for (int sp : {0, 1, 2, std::min(kblocks, 7)})
        if (sp <= kblocks) variants.push_back({cfg, sp});
  variants.push_back({-1, 0});
  for (auto [cfg, sp] : variants) {
    // The decode GEMVs (w4a16_gemv: M <= 8; w4a16_gemv2_*: M <= 16; no split-K) run where
    // can_implement accepts them; every other config refuses nothing here, and the dispatch's
    // run always runs.
    if (cfg >= 0 && std::string(ody_w4a16_config_name(cfg)).rfind("w4a16_gemv", 0) == 0) {
      ody_w4a16_problem q{m, n, k, group, cfg, sp};
      if (ody_w4a16_can_implement(&q, nullptr) == ODY_ERR_UNSUPPORTED) continue;
    }
    CaseResult r;
    r.name = name;
    r.kernel = std::string("w4a16/") + (cfg < 0 ? "dispatch" : ody_w4a16_config_name(cfg)) +
               (sp ? "/split" + std::to_string(sp) : std::string("/auto"));
    ody_w4a16_problem p{m, n, k, group, cfg, sp};
    size_t wsb = ody_w4a16_workspace_size(&p);
    DeviceBuffer ws(wsb);
    if (wsb) ws.fill(0);
    ody_w4a16_args a{};
    a.x = dx.get();
    a.qweight = dq.get<uint8_t>();
    a.group_scale = dg.get<int16_t>();
    a.channel_scale = dc.get<float>();
    a.bias = bias.empty() ? nullptr : db.get<float>();
    a.y = dy.get();
    a.workspace = ws.get();
    a.workspace_bytes = wsb;
    std::vector<uint16_t> y((size_t)m * n);
    long long bad = 0;
    for (int rep = 0; rep < 2; rep++) {
      dy.fill(0xFF);
      ody_check(ody_w4a16_gemm(&p, &a, nullptr), "ody_w4a16_gemm");
      CK(cudaDeviceSynchronize());
    }
    dy.download(y.data(), y.size() * 2);
    for (size_t i = 0; i < y.size(); i++) {
      double got = half_bits_to_float(y[i]), ref = half_bits_to_float(y_ref[i]);
      double ulp = std::ldexp(1.0, std::max(-24, (int)std::floor(std::log2(std::max(std::fabs(ref), 6.1e-5))) - 10));
      double tol = (k / 16 + groups + 4) * std::ldexp(1.0, -22) * y_abs[i] + ulp;
      long long d = std::llabs(half_ordered(y[i]) - half_ordered(y_ref[i]));
      r.y_max_ulp = std::max(r.y_max_ulp, half_nan(y[i]) ? (1LL << 40) : d);
      if (half_nan(y[i]) || !(std::fabs(got - ref) <= tol)) bad++;
    }
    if (wsb) {
      std::vector<int32_t> w(wsb / 4);
      ws.download(w.data(), wsb);
      long long dirty = 0;
      for (int32_t v : w) dirty += v != 0;
      if (dirty) {
        r.passed = false;
        r.message += std::to_string(dirty) + " workspace words not restored to 0; ";
      }
    }
    if (bad) {
      r.passed = false;
      r.message += std::to_string(bad) + " fp16 outputs out of tolerance (max " + std::to_string(r.y_max_ulp) + " ulp); ";
    }
    out.push_back(r);
  }
  return out;
}

std::vector<CaseResult> test_act(const std::string& name, const SafetensorsFile& f) {
  int m = meta_int(f, "m"), k = meta_int(f, "k");
  auto x = f.typed<uint16_t>("x", DType::F16, {m, k});
  auto ss = f.typed<float>("static_scale", DType::F32, {1});
  auto qs = f.typed<int8_t>("q_static", DType::I8, {m, k});
  auto qt = f.typed<int8_t>("q_token", DType::I8, {m, k});
  auto ts = f.typed<float>("token_scale", DType::F32, {m});
  DeviceBuffer dx((size_t)m * k * 2), dq((size_t)m * k), dsc((size_t)m * 4), dss(4);
  dx.upload(x.data(), (size_t)m * k * 2);
  dss.upload(ss.data(), 4);
  std::vector<CaseResult> out;
  for (int per_token = 1; per_token >= 0; per_token--) {
    CaseResult r;
    r.name = name;
    r.kernel = per_token ? "act/per_token" : "act/per_tensor";
    dq.fill(0x80);
    dsc.fill(0xFF);
    if (per_token)
      ody_check(ody_quantize_act_per_token(dx.get(), m, k, dq.get<int8_t>(), dsc.get<float>(), nullptr), "quantize");
    else
      ody_check(ody_quantize_act_per_tensor(dx.get(), m, k, dss.get<float>(), dq.get<int8_t>(), nullptr), "quantize");
    CK(cudaDeviceSynchronize());
    std::vector<int8_t> q((size_t)m * k);
    dq.download(q.data(), q.size());
    const int8_t* want = per_token ? qt.data() : qs.data();
    for (size_t i = 0; i < q.size(); i++) r.acc_mismatches += q[i] != want[i];
    if (per_token) {
      std::vector<float> s(m);
      dsc.download(s.data(), (size_t)m * 4);
      for (int i = 0; i < m; i++)
        if (std::memcmp(&s[i], &ts[i], 4) != 0) r.acc_mismatches++;
    }
    if (r.acc_mismatches) {
      r.passed = false;
      r.message = std::to_string(r.acc_mismatches) + " codes or scales differ";
    }
    out.push_back(r);
  }
  return out;
}

// can_implement must refuse what the kernel cannot do, with a message, before any launch.
std::vector<CaseResult> test_refusals() {
  std::vector<CaseResult> out;
  DeviceBuffer buf(1 << 20);
  auto args = [&](size_t xoff) {
    ody_w4a8_args a{};
    a.x = buf.get<int8_t>() + xoff;
    a.x_scale = buf.get<float>();
    a.qweight = buf.get<uint8_t>();
    a.group_scale = buf.get();
    a.channel_scale = buf.get<float>();
    a.y = buf.get();
    return a;
  };
  struct Want {
    const char* what;
    ody_w4a8_problem p;
    size_t xoff;
    ody_status status;
  } wants[] = {
      {"K not a multiple of 128", {4, 64, 192, 64, 1, ODY_SCALE_INT, -1, 0}, 0, ODY_ERR_UNSUPPORTED},
      {"group size 96", {4, 64, 384, 96, 1, ODY_SCALE_INT, -1, 0}, 0, ODY_ERR_UNSUPPORTED},
      {"group size 256 (not per-channel)", {4, 64, 512, 256, 1, ODY_SCALE_INT, -1, 0}, 0, ODY_ERR_UNSUPPORTED},
      {"misaligned x", {4, 64, 256, 128, 1, ODY_SCALE_INT, 0, 1}, 1, ODY_ERR_UNSUPPORTED},
      {"M = 0", {0, 64, 256, 128, 1, ODY_SCALE_INT, -1, 0}, 0, ODY_ERR_INVALID},
      {"split-K beyond K/128", {4, 64, 256, 128, 1, ODY_SCALE_INT, 0, 3}, 0, ODY_ERR_UNSUPPORTED},
      {"no workspace for split-K", {4, 64, 1024, 128, 1, ODY_SCALE_INT, 0, 4}, 0, ODY_ERR_WORKSPACE},
      {"unknown config", {4, 64, 256, 128, 1, ODY_SCALE_INT, 99, 0}, 0, ODY_ERR_INVALID},
  };
  // The decode GEMVs' limits (config indexes found by name, so the table can grow).
  int gemv = -1;
  std::vector<int> gemv_mma;
  for (int i = 0; i < ody_w4a8_num_configs(); i++) {
    const std::string nm = ody_w4a8_config_name(i);
    if (nm == "gemv_w4") gemv = i;
    if (nm.rfind("gemv_mma_", 0) == 0) gemv_mma.push_back(i);
  }
  std::vector<Want> all(std::begin(wants), std::end(wants));
  if (gemv_mma.size() != 3) {
    CaseResult r;
    r.name = "refuse: gemv_mma limits";
    r.kernel = "can_implement";
    r.passed = false;
    r.message = "want 3 configs named gemv_mma_*, found " + std::to_string(gemv_mma.size());
    out.push_back(r);
  }
  for (int c : gemv_mma) {
    // Want keeps a const char*: a deque never moves its strings.
    static std::deque<std::string> names;
    // One row past each config's limit: s8 takes M ≤ 16, s2 and s4 M ≤ 64.
    const int over = std::string(ody_w4a8_config_name(c)) == "gemv_mma_s8" ? 17 : 65;
    names.push_back(std::string(ody_w4a8_config_name(c)) + " with M = " + std::to_string(over));
    all.push_back({names.back().c_str(), {over, 64, 256, 128, 1, ODY_SCALE_INT, c, 0}, 0, ODY_ERR_UNSUPPORTED});
    names.push_back(std::string(ody_w4a8_config_name(c)) + " with float scales");
    all.push_back({names.back().c_str(), {8, 64, 256, 128, 1, ODY_SCALE_FLOAT, c, 0}, 0, ODY_ERR_UNSUPPORTED});
    names.push_back(std::string(ody_w4a8_config_name(c)) + " with split-K 2");
    all.push_back({names.back().c_str(), {16, 64, 256, 128, 1, ODY_SCALE_INT, c, 2}, 0, ODY_ERR_UNSUPPORTED});
  }
  if (gemv < 0) {
    CaseResult r;
    r.name = "refuse: gemv_w4 limits";
    r.kernel = "can_implement";
    r.passed = false;
    r.message = "no config named gemv_w4";
    out.push_back(r);
  } else {
    all.push_back({"gemv_w4 with M = 5", {5, 64, 256, 128, 1, ODY_SCALE_INT, gemv, 0}, 0, ODY_ERR_UNSUPPORTED});
    all.push_back({"gemv_w4 with float scales", {1, 64, 256, 128, 1, ODY_SCALE_FLOAT, gemv, 0}, 0, ODY_ERR_UNSUPPORTED});
    all.push_back({"gemv_w4 with split-K 2", {1, 64, 256, 128, 1, ODY_SCALE_INT, gemv, 2}, 0, ODY_ERR_UNSUPPORTED});
  }
  for (auto& w : all) {
    CaseResult r;
    r.name = std::string("refuse: ") + w.what;
    r.kernel = "can_implement";
    ody_w4a8_args a = args(w.xoff);
    ody_status s = ody_w4a8_gemm(&w.p, &a, nullptr);
    std::string msg = ody_last_error();
    if (s != w.status || msg.empty()) {
      r.passed = false;
      r.message = "status " + std::to_string(s) + " (want " + std::to_string(w.status) + "), message \"" + msg + "\"";
    } else {
      r.message = msg;
    }
    out.push_back(r);
  }
  // The W4A16 decode GEMVs' limits.
  int gemv16 = -1, gemv2_s2 = -1, gemv2_s8 = -1;
  for (int i = 0; i < ody_w4a16_num_configs(); i++) {
    const std::string nm = ody_w4a16_config_name(i);
    if (nm == "w4a16_gemv") gemv16 = i;
    if (nm == "w4a16_gemv2_s2") gemv2_s2 = i;
    if (nm == "w4a16_gemv2_s8") gemv2_s8 = i;
  }
  struct Want16 {
    const char* what;
    ody_w4a16_problem p;
  } wants16[] = {{"w4a16_gemv with M = 9", {9, 64, 256, 128, gemv16, 0}},
                 {"w4a16_gemv with split-K 2", {1, 64, 256, 128, gemv16, 2}},
                 {"w4a16_gemv2_s2 with M = 17", {17, 64, 256, 128, gemv2_s2, 0}},
                 {"w4a16_gemv2_s8 with split-K 2", {1, 64, 256, 128, gemv2_s8, 2}}};
  for (auto& w : wants16) {
    CaseResult r;
    r.name = std::string("refuse: ") + w.what;
    r.kernel = "can_implement";
    ody_w4a16_args a{};
    a.x = buf.get();
    a.qweight = buf.get<uint8_t>();
    a.group_scale = buf.get<int16_t>();
    a.channel_scale = buf.get<float>();
    a.y = buf.get();
    ody_status s = w.p.config < 0 ? ODY_ERR_INVALID : ody_w4a16_gemm(&w.p, &a, nullptr);
    std::string msg = w.p.config < 0 ? "no such config" : ody_last_error();
    if (s != ODY_ERR_UNSUPPORTED || msg.empty()) {
      r.passed = false;
      r.message = "status " + std::to_string(s) + " (want " + std::to_string(ODY_ERR_UNSUPPORTED) + "), message \"" + msg + "\"";
    } else {
      r.message = msg;
    }
    out.push_back(r);
  }
  CK(cudaDeviceSynchronize());
  return out;
}

}  // namespace

namespace {

// ---------------------------------------------------------------- wgmma probe
//
// `odyssey-rt test wgmma-probe`: the layouts the wgmma kernel (fastgemm_sm90.cu) relies on,
// checked on inputs built so that every output names the operand element the tensor cores read:
//   - A (weights in registers, from the packed words): X is the identity (token t has a single 1
//     at k = t), so acc[t][c] = 16·q[c][t]; six passes with q[c][k] = one 3-bit field of c or of
//     k (minus 4) decode, for every output, which (row, k) of W the hardware used;
//   - B (X through the 128-byte swizzle and the shared-memory descriptor): W is the identity
//     (q[c][k] = 1 if k = c), so acc[t][c] = 16·x[t][c]; two passes with x[t][k] = t − 64 and
//     k − 64 decode which (token, k) of X was read;
//   - random operands, several K blocks, groups of 128 and 32 with random integer scales, M and
//     N not multiples of the tile, against a host product.
// The expected values come from this host code alone (int arithmetic); mismatches print the
// position, the value and the decoded source position, so a wrong layout shows at once.

// Packs codes q[n][k] (−7..7) into the FastGEMM layout (docs/fastgemm-layout.md).
std::vector<uint8_t> pack_fastgemm(const std::vector<int>& q, int n, int k) {
  const int np = (n + 7) / 8 * 8, kb = k / 128;
  std::vector<uint8_t> out((size_t)np * k / 2, 0);
  for (int c = 0; c < n; c++)
    for (int kk = 0; kk < k; kk++) {
      const int blk = kk / 128, r = kk % 128, step = r / 32, rr = r % 32, hi = rr >= 16, r2 = rr % 16;
      const int tig = r2 / 4, j = r2 % 4, lane = (c % 8) * 4 + tig;
      const size_t off = (((size_t)(c / 8) * kb + blk) * 32 + lane) * 16 + step * 4 + j;
      const uint8_t code = (uint8_t)(q[(size_t)c * k + kk] & 0xF);
      out[off] |= hi ? (uint8_t)(code << 4) : code;
    }
  return out;
}

// Runs the wgmma config on (x, q, integer scales, group) with unit activation and channel
// scales and returns the int32 accumulators [m][n]; throws if the config refuses or fails.
std::vector<int32_t> run_wgmma_acc(int cfg, int m, int n, int k, int group, const std::vector<int8_t>& x,
                                   const std::vector<int>& q, const std::vector<int16_t>& is) {
  const int np = (n + 7) / 8 * 8;
  std::vector<uint8_t> packed = pack_fastgemm(q, n, k);
  std::vector<float> xs(m, 1.0f), cs(np, 1.0f);
  DeviceBuffer dx(x.size()), dq(packed.size()), dis(is.size() * 2), dxs(m * 4), dcs(np * 4), dy((size_t)m * n * 2),
      dacc((size_t)m * n * 4);
  dx.upload(x.data(), x.size());
  dq.upload(packed.data(), packed.size());
  dis.upload(is.data(), is.size() * 2);
  dxs.upload(xs.data(), m * 4);
  dcs.upload(cs.data(), np * 4);
  dacc.fill(0xFF);
  ody_w4a8_problem p{m, n, k, group, 1, ODY_SCALE_INT, cfg, 0};
  ody_w4a8_args a{};
  a.x = dx.get<int8_t>();
  a.x_scale = dxs.get<float>();
  a.qweight = dq.get<uint8_t>();
  a.group_scale = dis.get();
  a.channel_scale = dcs.get<float>();
  a.y = dy.get();
  a.acc_out = dacc.get<int32_t>();
  ody_check(ody_w4a8_gemm(&p, &a, nullptr), "ody_w4a8_gemm (wgmma probe)");
  CK(cudaDeviceSynchronize());
  std::vector<int32_t> acc((size_t)m * n);
  dacc.download(acc.data(), acc.size() * 4);
  return acc;
}

// Every part below for one wgmma config (v1, v2 and v3 have the same operand layouts; v2 and v3
// stage the weights through shared memory, so the A readout checks their copies too; v3's B tile
// readout checks its two 64-token half descriptors).
std::vector<CaseResult> wgmma_probe_config(const std::string& cname) {
  std::vector<CaseResult> out;
  // "wgmma-probe: ..." for v1 as before, "wgmma-probe v2: ..." for v2, "wgmma-probe v3: ..." for v3.
  const std::string tag = cname == "wgmma_r128t128_s4"      ? "wgmma-probe: "
                          : cname == "wgmma_r128t128_s4_v2" ? "wgmma-probe v2: "
                          : cname == "wgmma_r128t128_s4_v3" ? "wgmma-probe v3: "
                          : cname == "wgmma_ws_r128t128_v4" ? "wgmma-probe v4: "
                          : cname == "wgmma_ws_r128t128_v4c2" ? "wgmma-probe v4c2: "
                          : cname == "wgmma_ws_r128t128_v5" ? "wgmma-probe v5: "
                                                            : "wgmma-probe v3p: ";
  int cfg = -1;
  for (int i = 0; i < ody_w4a8_num_configs(); i++)
    if (std::string(ody_w4a8_config_name(i)) == cname) cfg = i;
  CaseResult head;
  head.name = tag + "config usable";
  head.kernel = cname;
  if (cfg < 0) {
    head.passed = false;
    head.message = "no config named " + cname;
    out.push_back(head);
    return out;
  }
  ody_w4a8_problem p0{128, 128, 128, 128, 1, ODY_SCALE_INT, cfg, 0};
  if (ody_w4a8_can_implement(&p0, nullptr) != ODY_OK) {
    // Not built or not a Hopper device: say so loudly; the device run treats it as a failure.
    head.passed = false;
    head.message = std::string("refused: ") + ody_last_error();
    out.push_back(head);
    return out;
  }
  out.push_back(head);
  const int M = 128, N = 128, K = 128;
  std::vector<int16_t> ones(N, 1);

  // A: X identity; pass f = 0..2 decodes c's bits 3f..3f+2, f = 3..5 those of k.
  {
    CaseResult r;
    r.name = tag + "A fragment (weights in registers)";
    r.kernel = cname;
    std::vector<int8_t> x((size_t)M * K, 0);
    for (int t = 0; t < M; t++) x[(size_t)t * K + t] = 1;
    std::vector<int> seen_c((size_t)M * N, 0), seen_k((size_t)M * N, 0);
    bool garbage = false;
    for (int f = 0; f < 6; f++) {
      std::vector<int> q((size_t)N * K);
      for (int c = 0; c < N; c++)
        for (int k = 0; k < K; k++) q[(size_t)c * K + k] = (((f < 3 ? c : k) >> (3 * (f % 3))) & 7) - 4;
      std::vector<int32_t> acc = run_wgmma_acc(cfg, M, N, K, K, x, q, ones);
      for (size_t i = 0; i < acc.size(); i++) {
        int v = acc[i];
        if (v % 16 != 0 || v / 16 < -4 || v / 16 > 3) {
          garbage = true;
          v = 0;
        }
        int field = v / 16 + 4;
        (f < 3 ? seen_c : seen_k)[i] |= field << (3 * (f % 3));
      }
    }
    for (int t = 0; t < M; t++)
      for (int c = 0; c < N; c++) {
        const size_t i = (size_t)t * N + c;
        if (seen_c[i] == c && seen_k[i] == t) continue;
        r.acc_mismatches++;
        if (r.acc_mismatches <= 12)
          std::fprintf(stderr, "    A: out (token %d, channel %d) wants W[row %d][k %d], read W[row %d][k %d]\n", t, c,
                       c, t, seen_c[i], seen_k[i]);
      }
    if (garbage) r.message += "some outputs are not 16·(a single weight): the A test is not a clean readout; ";
    if (r.acc_mismatches) {
      r.passed = false;
      r.message += std::to_string(r.acc_mismatches) + " of " + std::to_string(M * N) + " outputs read the wrong weight";
    }
    out.push_back(r);
  }

  // B: W identity; pass 0 decodes the token, pass 1 the k of X that each output read.
  {
    CaseResult r;
    r.name = tag + "B tile (128B swizzle, smem descriptor)";
    r.kernel = cname;
    std::vector<int> q((size_t)N * K, 0);
    for (int c = 0; c < N; c++) q[(size_t)c * K + c] = 1;
    std::vector<int> seen[2];
    bool garbage = false;
    for (int f = 0; f < 2; f++) {
      std::vector<int8_t> x((size_t)M * K);
      for (int t = 0; t < M; t++)
        for (int k = 0; k < K; k++) x[(size_t)t * K + k] = (int8_t)((f == 0 ? t : k) - 64);
      std::vector<int32_t> acc = run_wgmma_acc(cfg, M, N, K, K, x, q, ones);
      seen[f].resize(acc.size());
      for (size_t i = 0; i < acc.size(); i++) {
        if (acc[i] % 16 != 0) garbage = true;
        seen[f][i] = acc[i] / 16 + 64;
      }
    }
    for (int t = 0; t < M; t++)
      for (int c = 0; c < N; c++) {
        const size_t i = (size_t)t * N + c;
        if (seen[0][i] == t && seen[1][i] == c) continue;
        r.acc_mismatches++;
        if (r.acc_mismatches <= 12)
          std::fprintf(stderr, "    B: out (token %d, channel %d) wants X[token %d][k %d], read X[token %d][k %d]\n", t,
                       c, t, c, seen[0][i], seen[1][i]);
      }
    if (garbage) r.message += "some outputs are not 16·(a single activation): the B test is not a clean readout; ";
    if (r.acc_mismatches) {
      r.passed = false;
      r.message += std::to_string(r.acc_mismatches) + " of " + std::to_string(M * N) + " outputs read the wrong activation";
    }
    out.push_back(r);
  }

  // Random operands against the host product, ragged M and N, several K blocks and groups; the
  // third case has more K blocks (10) than any version has stages (v3: 7), so every stage is
  // refilled while earlier ones may still be read (v3's delayed fold of its second half); the
  // last has 16 × 10 = 160 tiles, more than an H100/H200 has SMs, and 3 K blocks: v3p's blocks
  // then run two tiles each, with copies crossing tile boundaries (ragged last row tile too).
  // The fifth has 32 K blocks: v4's 8-stage mbarrier ring wraps four times (phase bits flip), with
  // a last row tile of one strip (N = 264 = 2·128 + 8: copies of strips past Np skipped); for
  // v4c2 its 3 row tiles make the second pair's rank 1 a tile past Np (copies X, stores nothing).
  struct RandomCase {
    int group, k, m, n;
  };
  for (const RandomCase rc : {RandomCase{128, 384, 200, 136}, {32, 384, 200, 136}, {64, 1280, 200, 136},
                              {64, 384, 2048, 1272}, {128, 4096, 130, 264}}) {
    CaseResult r;
    const int group = rc.group, k = rc.k, m = rc.m, n = rc.n, np = (n + 7) / 8 * 8, groups = k / group;
    r.name = tag + "random " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
             " group " + std::to_string(group);
    r.kernel = cname;
    uint32_t st = 12345u + group;
    auto rnd = [&st]() {
      st = st * 1664525u + 1013904223u;
      return st >> 8;
    };
    std::vector<int8_t> x((size_t)m * k);
    for (auto& v : x) v = (int8_t)((int)(rnd() % 255) - 127);
    std::vector<int> q((size_t)n * k);
    for (auto& v : q) v = (int)(rnd() % 15) - 7;
    std::vector<int16_t> is((size_t)groups * np, 0);
    for (int g = 0; g < groups; g++)
      for (int c = 0; c < n; c++) is[(size_t)g * np + c] = (int16_t)(1 + rnd() % 64);
    std::vector<int32_t> acc = run_wgmma_acc(cfg, m, n, k, group, x, q, is);
    for (int t = 0; t < m; t++)
      for (int c = 0; c < n; c++) {
        uint32_t want = 0;  // wraps like the kernel; the values here stay far from 2³¹
        for (int g = 0; g < groups; g++) {
          int32_t pg = 0;
          for (int kk = g * group; kk < (g + 1) * group; kk++) pg += x[(size_t)t * k + kk] * 16 * q[(size_t)c * k + kk];
          want += (uint32_t)is[(size_t)g * np + c] * (uint32_t)pg;
        }
        const int32_t got = acc[(size_t)t * n + c];
        if ((uint32_t)got == want) continue;
        r.acc_mismatches++;
        if (r.acc_mismatches <= 8)
          std::fprintf(stderr, "    random g%d: out (token %d, channel %d) = %d, want %d\n", group, t, c, got, (int32_t)want);
      }
    if (r.acc_mismatches) {
      r.passed = false;
      r.message = std::to_string(r.acc_mismatches) + " of " + std::to_string(m * n) + " accumulators differ";
    }
    out.push_back(r);
  }
  return out;
}

std::vector<CaseResult> wgmma_probe() {
  std::vector<CaseResult> out = wgmma_probe_config("wgmma_r128t128_s4");
  std::vector<CaseResult> v2 = wgmma_probe_config("wgmma_r128t128_s4_v2");
  out.insert(out.end(), v2.begin(), v2.end());
  std::vector<CaseResult> v3 = wgmma_probe_config("wgmma_r128t128_s4_v3");
  out.insert(out.end(), v3.begin(), v3.end());
  std::vector<CaseResult> v3p = wgmma_probe_config("wgmma_r128t128_s4_v3p");
  out.insert(out.end(), v3p.begin(), v3p.end());
  // v4 and v4c2 last: a trap there (their mbarrier watchdog) would poison the context for the others.
  std::vector<CaseResult> v4 = wgmma_probe_config("wgmma_ws_r128t128_v4");
  out.insert(out.end(), v4.begin(), v4.end());
  std::vector<CaseResult> v4c2 = wgmma_probe_config("wgmma_ws_r128t128_v4c2");
  out.insert(out.end(), v4c2.begin(), v4c2.end());
  // v5 (v4 persistent) only with ODYSSEY_WGMMA_V5 set until it has run on a GPU; its fourth random
  // case (160 tiles) gives blocks two tiles, the ring and the turns running on across them.
  if (wgmma_v5_selected()) {
    std::vector<CaseResult> v5 = wgmma_probe_config("wgmma_ws_r128t128_v5");
    out.insert(out.end(), v5.begin(), v5.end());
  }
  return out;
}

}  // namespace

int cmd_test_wgmma_probe(const Args&) {
  std::vector<CaseResult> results = wgmma_probe();
  for (auto& r : results)
    std::fprintf(stderr, "%-60s %s %s\n", r.name.c_str(), r.passed ? "ok" : "FAIL", r.message.c_str());
  return report_cases("test wgmma-probe", results, [](JsonWriter& w, const auto& r) {
    w.field("name", r.name);
    w.field("kernel", r.kernel);
    w.field("passed", r.passed);
    w.field("mismatches", r.acc_mismatches);
    w.field("message", r.message);
  });
}

namespace {
// "a,b,c" → {"a", "b", "c"}
std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}
}  // namespace

int cmd_test_gemm(const Args& args) {
  g_only_configs = split_names(args.get("configs"));
  for (auto& n : g_only_configs) {
    bool found = false;
    for (int i = 0; i < ody_w4a8_num_configs(); i++) found |= n == ody_w4a8_config_name(i);
    for (int i = 0; i < ody_w4a16_num_configs(); i++) found |= n == ody_w4a16_config_name(i);
    if (!found) throw std::runtime_error("test gemm --configs: no config named \"" + n + "\"");
  }
  g_only_kinds = split_names(args.get("kinds"));
  for (auto& kd : g_only_kinds)
    if (kd != "w4a8" && kd != "w4a16" && kd != "act")
      throw std::runtime_error("test gemm --kinds: no case kind \"" + kd + "\" (w4a8, w4a16, act)");
  std::string dir = args.get("cases");
  if (dir.empty()) throw std::runtime_error("test gemm needs --cases DIR (odyssey testdata gemm-cases --out DIR)");
  Json manifest = parse_json(read_small_file(dir + "/manifest.json", 1 << 20));
  const Json* cases = manifest.find("cases");
  if (!cases || !cases->is_array()) throw std::runtime_error(dir + "/manifest.json: no \"cases\" array");
  std::vector<CaseResult> results;
  for (const Json& c : cases->elems()) {
    const Json* name = c.find("name");
    const Json* file = c.find("file");
    const Json* kind = c.find("kind");
    if (!name || !file || !kind || !name->is_string() || !file->is_string() || !kind->is_string())
      throw std::runtime_error(dir + "/manifest.json: a case lacks name, file or kind");
    if (!g_only_kinds.empty() &&
        std::find(g_only_kinds.begin(), g_only_kinds.end(), kind->as_string()) == g_only_kinds.end())
      continue;
    const std::string& fn = file->as_string();
    if (fn.find('/') != std::string::npos || fn.find("..") != std::string::npos)
      throw std::runtime_error(dir + "/manifest.json: case file \"" + fn + "\" is not a plain file name");
    SafetensorsFile f = SafetensorsFile::open(dir + "/" + fn);
    std::vector<CaseResult> rs;
    if (kind->as_string() == "w4a8")
      rs = test_w4a8(name->as_string(), f);
    else if (kind->as_string() == "w4a16")
      rs = test_w4a16(name->as_string(), f);
    else if (kind->as_string() == "act")
      rs = test_act(name->as_string(), f);
    else
      throw std::runtime_error(fn + ": unknown case kind \"" + kind->as_string() + "\"");
    int bad = 0;
    for (auto& r : rs) bad += !r.passed;
    std::fprintf(stderr, "%-48s %4zu runs  %s\n", name->as_string().c_str(), rs.size(), bad ? "FAIL" : "ok");
    for (auto& r : rs)
      if (!r.passed) std::fprintf(stderr, "    %s: %s\n", r.kernel.c_str(), r.message.c_str());
    results.insert(results.end(), rs.begin(), rs.end());
  }
  for (auto& r : test_refusals()) {
    std::fprintf(stderr, "%-48s %s %s\n", r.name.c_str(), r.passed ? "ok" : "FAIL", r.message.c_str());
    results.push_back(r);
  }
  return report_cases("test gemm", results, [](JsonWriter& w, const auto& r) {
    w.field("name", r.name);
    w.field("kernel", r.kernel);
    w.field("passed", r.passed);
    w.field("acc_mismatches", r.acc_mismatches);
    w.field("y_max_ulp", r.y_max_ulp);
    w.field("message", r.message);
  });
}

}  // namespace odyssey
