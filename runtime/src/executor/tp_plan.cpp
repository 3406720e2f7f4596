// tp_plan.cpp: the tensor-parallel shards of a planned model (tp_plan.hpp).
#include "executor/tp_plan.hpp"

#include <stdexcept>

namespace odyssey::exec {

TpSplit tp_split_of(int linear_index) {
  return linear_index == kO || linear_index == kDown ? TpSplit::Row : TpSplit::Column;
}

namespace {

[[noreturn]] void refuse(const ModelPlan& plan, int tp, const std::string& what, int n) {
  throw std::invalid_argument(plan.dir + ": tensor parallelism " + std::to_string(tp) + " does not divide " + what +
                              " (" + std::to_string(n) + ")");
}

}  // namespace

RankPlan plan_rank(const ModelPlan& plan, int tp, int rank) {
  const ModelConfig& c = plan.cfg;
  if (tp < 1) throw std::invalid_argument(plan.dir + ": tensor parallelism must be at least 1, not " + std::to_string(tp));
  if (rank < 0 || rank >= tp)
    throw std::invalid_argument("rank " + std::to_string(rank) + " is outside a group of " + std::to_string(tp));
  if (c.heads % tp) refuse(plan, tp, "the attention heads", c.heads);
  if (c.kv_heads % tp) refuse(plan, tp, "the key/value heads (the executor splits attention by heads)", c.kv_heads);
  if (c.intermediate % tp) refuse(plan, tp, "the intermediate size", c.intermediate);
  if (c.hidden % tp) refuse(plan, tp, "the hidden size (the all-reduce cuts it into tp chunks)", c.hidden);
  RankPlan r;
  r.tp = tp;
  r.rank = rank;
  r.heads = c.heads / tp;
  r.kv_heads = c.kv_heads / tp;
  r.head0 = rank * r.heads;
  r.kv_head0 = rank * r.kv_heads;
  r.intermediate = c.intermediate / tp;
  r.layers.resize(plan.layers.size());
  for (size_t i = 0; i < plan.layers.size(); i++) {
    r.layers[i].resize(kNumLinears);
    for (int li = 0; li < kNumLinears; li++) {
      const LinearPlan& lp = plan.layers[i].lin[li];
      LinearShard& s = r.layers[i][li];
      s.split = tp_split_of(li);
      s.bias = lp.has_bias;  // column: its rows' biases; row: every rank adds it to its copy of the reduced sum
      const bool packed = lp.format != WeightFormat::Dense16;
      if (s.split == TpSplit::Column) {
        if (lp.n % tp) refuse(plan, tp, lp.name + "'s output rows", lp.n);
        const int per = lp.n / tp;
        if (packed && per % 8)
          throw std::invalid_argument(plan.dir + ": " + lp.name + ": " + std::to_string(per) +
                                      " output rows per rank at tensor parallelism " + std::to_string(tp) +
                                      " are not whole 8-row strips of the packed layout");
        s.n0 = rank * per;
        s.n1 = s.n0 + per;
      } else {
        if (lp.k % tp) refuse(plan, tp, lp.name + "'s input columns", lp.k);
        const int per = lp.k / tp;
        s.k0 = rank * per;
        s.k1 = s.k0 + per;
        if (packed) {
          constexpr int kBK = 128;
          s.kb0 = s.k0 / kBK;
          s.kb1 = (s.k1 + kBK - 1) / kBK;
          if (lp.group_size <= 0 || (lp.group_size % kBK != 0 && kBK % lp.group_size != 0))
            throw std::invalid_argument(plan.dir + ": " + lp.name + ": group size " + std::to_string(lp.group_size) +
                                        " is neither a divisor nor a multiple of the 128-column K block");
          if (lp.group_size >= lp.kp) {  // per channel: the one row of scales
            s.g0 = 0;
            s.g1 = 1;
          } else {
            s.g0 = s.kb0 * kBK / lp.group_size;
            s.g1 = (s.kb1 * kBK + lp.group_size - 1) / lp.group_size;
          }
        }
      }
    }
  }
  return r;
}

ModelPlan rank_model_plan(const ModelPlan& plan, const RankPlan& rank) {
  if (rank.layers.size() != plan.layers.size())
    throw std::invalid_argument(plan.dir + ": the rank plan has " + std::to_string(rank.layers.size()) +
                                " layers, the model " + std::to_string(plan.layers.size()));
  ModelPlan r = plan;
  r.cfg.heads = rank.heads;
  r.cfg.kv_heads = rank.kv_heads;
  r.cfg.intermediate = rank.intermediate;
  for (size_t i = 0; i < r.layers.size(); i++)
    for (int li = 0; li < kNumLinears; li++) {
      LinearPlan& lp = r.layers[i].lin[li];
      const LinearShard& s = rank.layers[i][li];
      const bool packed = lp.format != WeightFormat::Dense16;
      if (s.split == TpSplit::Column) {
        lp.n = s.n1 - s.n0;
        lp.np = packed ? (lp.n + 7) / 8 * 8 : lp.n;
        continue;
      }
      if (!packed) {
        lp.k = lp.kp = s.k1 - s.k0;
        continue;
      }
      const bool per_channel = lp.group_size >= lp.kp;
      lp.k = lp.kp = (s.kb1 - s.kb0) * 128;
      lp.groups = s.g1 - s.g0;
      lp.group_size = per_channel ? lp.kp : lp.group_size;
    }
  return r;
}

int shard_x_offset(const LinearShard& s) { return s.split == TpSplit::Row && s.kb1 > s.kb0 ? s.k0 - s.kb0 * 128 : 0; }

namespace {
// Appends bytes [from, from + n) of src to out.
void put(std::vector<unsigned char>& out, const unsigned char* src, size_t from, size_t n) {
  out.insert(out.end(), src + from, src + from + n);
}
}  // namespace

std::vector<unsigned char> shard_qweight(const unsigned char* q, int np, int kp, const LinearShard& s) {
  constexpr size_t kBlock = 512;  // bytes of one (strip, K block)
  const size_t kblocks = (size_t)kp / 128, strips = (size_t)np / 8;
  std::vector<unsigned char> out;
  if (s.split == TpSplit::Column) {
    put(out, q, (size_t)(s.n0 / 8) * kblocks * kBlock, (size_t)(s.n1 - s.n0) / 8 * kblocks * kBlock);
  } else {
    out.reserve(strips * (size_t)(s.kb1 - s.kb0) * kBlock);
    for (size_t nb = 0; nb < strips; nb++)
      put(out, q, (nb * kblocks + (size_t)s.kb0) * kBlock, (size_t)(s.kb1 - s.kb0) * kBlock);
  }
  return out;
}

std::vector<unsigned char> shard_group_scale(const unsigned char* gs, int groups, int np, int esz, const LinearShard& s) {
  std::vector<unsigned char> out;
  if (s.split == TpSplit::Column) {
    for (int g = 0; g < groups; g++) put(out, gs, ((size_t)g * np + s.n0) * esz, (size_t)(s.n1 - s.n0) * esz);
  } else {
    put(out, gs, (size_t)s.g0 * np * esz, (size_t)(s.g1 - s.g0) * np * esz);
  }
  return out;
}

std::vector<unsigned char> shard_channels(const unsigned char* v, int n, int esz, const LinearShard& s) {
  std::vector<unsigned char> out;
  if (s.split == TpSplit::Column)
    put(out, v, (size_t)s.n0 * esz, (size_t)(s.n1 - s.n0) * esz);
  else
    put(out, v, 0, (size_t)n * esz);
  return out;
}

std::vector<unsigned char> shard_dense(const unsigned char* w, int n, int k, const LinearShard& s) {
  std::vector<unsigned char> out;
  if (s.split == TpSplit::Column) {
    put(out, w, (size_t)s.n0 * k * 2, (size_t)(s.n1 - s.n0) * k * 2);
  } else {
    out.reserve((size_t)n * (s.k1 - s.k0) * 2);
    for (int r = 0; r < n; r++) put(out, w, ((size_t)r * k + s.k0) * 2, (size_t)(s.k1 - s.k0) * 2);
  }
  return out;
}

}  // namespace odyssey::exec
