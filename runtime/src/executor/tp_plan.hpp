// tp_plan.hpp: what rank r of a tensor-parallel group of tp ranks holds of a planned model
// (issue 11, part 2: the executor split over TP ranks). Host only: compiles with g++ alone and
// is tested by runtime/tests/test_executor_host.cpp; the executor's TP load reads it.
//
// The split is Megatron's, with the numbers of `odyssey sim allreduce` (tpsim/tpsim.go), so
// that the GPU's perplexity change can be compared with what the simulation predicts:
//   - column-parallel (q, k, v, gate, up): rank r computes output rows [r·n/tp, (r+1)·n/tp),
//     i.e. heads [r·H/tp, (r+1)·H/tp) and kv heads [r·KV/tp, ...) for attention, intermediate
//     columns [r·I/tp, ...) for the MLP; its weights are those rows (packed: 8-row strips, so
//     n/tp must be a multiple of 8), with their scales and biases;
//   - row-parallel (o, down): rank r multiplies input columns [k0, k1) = [r·k/tp, (r+1)·k/tp)
//     (the slice the column-parallel producer left on that rank) and the layer's output is
//     the all-reduced sum of the ranks' partial products, plus the bias once, after the
//     reduction (tpsim: y = Σ_r y_r + b). Packed weights are stored in 128-column K blocks, so
//     a rank keeps the K blocks [kb0, kb1) that cover [k0, k1) and their group-scale rows
//     [g0, g1), and its activation is zero outside [k0, k1) (tpsim zeroes x outside the slice:
//     the same integer sums, the same per-token scale taken over the rank's slice alone);
//   - everything else (embedding, norms, lm_head) is replicated.
// Refusals (each names the dimension and the tp that does not fit it): tp must divide the
// attention heads and the kv heads (the executor splits attention by heads), the intermediate
// size and the hidden size (tpsim's conditions); a quantized column-parallel slice must be
// whole 8-row strips.
#pragma once

#include <string>
#include <vector>

#include "executor/model_plan.hpp"

namespace odyssey::exec {

enum class TpSplit { Column, Row };

struct LinearShard {
  TpSplit split = TpSplit::Column;
  // Column: logical output rows [n0, n1); packed strips [n0/8, n1/8) when quantized.
  int n0 = 0, n1 = 0;
  // Row: logical input columns [k0, k1); the K blocks [kb0, kb1) and group-scale rows [g0, g1)
  // held (Dense16: the columns [k0, k1) exactly, kb and g unused); the rank's activation over
  // [kb0·128, kb1·128) is zero outside [k0, k1).
  int k0 = 0, k1 = 0, kb0 = 0, kb1 = 0, g0 = 0, g1 = 0;
  bool bias = false;  // this rank adds the linear's bias (column: its rows; row: after the all-reduce)
};

struct RankPlan {
  int tp = 1, rank = 0;
  int heads = 0, kv_heads = 0;  // this rank's attention heads and kv heads
  int head0 = 0, kv_head0 = 0;  // its first head and first kv head
  int intermediate = 0;         // its slice of the MLP's intermediate width
  std::vector<std::vector<LinearShard>> layers;  // [layer][LinearIndex]
};

// The linear kinds by split: q, k, v, gate, up are column-parallel; o and down row-parallel.
TpSplit tp_split_of(int linear_index);

// The plan of the model rank r runs: the same tensors' names, with the rank's shapes, so that
// the executor's loader and forward pass (which read shapes from a ModelPlan) run a rank's
// shard as a model of their own: heads, kv heads and intermediate size divided by tp;
// column-parallel linears with n = n1 − n0 rows; row-parallel ones with the held input range
// (packed: k = kp = (kb1 − kb0)·128 and groups g1 − g0, per channel one group over it; dense:
// k = k1 − k0). Its activation's real columns start at shard_x_offset within that range.
ModelPlan rank_model_plan(const ModelPlan& plan, const RankPlan& rank);
int shard_x_offset(const LinearShard& s);  // k0 − kb0·128 (row-parallel packed), else 0

// The rank's bytes of a linear's tensors, cut from the whole ones (host memory; the loader then
// uploads them as it uploads an unsplit linear of the shard's shape):
//   packed qweight [Np/8, Kp/128, 512 B] (docs/fastgemm-layout.md): column shard → strips
//     [n0/8, n1/8) (one contiguous run); row shard → every strip's K blocks [kb0, kb1), giving
//     [Np/8, kb1 − kb0, 512 B];
//   group scales [G, Np] of esz-byte elements: column → each row's columns [n0, n1); row →
//     rows [g0, g1);
//   a per-output-channel vector (channel scale, bias, static activation scale is one value):
//     column → [n0, n1); row → whole (output channels are not split);
//   a dense fp16 weight [n, k] (2-byte elements): column → rows [n0, n1); row → each row's
//     columns [k0, k1).
std::vector<unsigned char> shard_qweight(const unsigned char* q, int np, int kp, const LinearShard& s);
std::vector<unsigned char> shard_group_scale(const unsigned char* gs, int groups, int np, int esz, const LinearShard& s);
std::vector<unsigned char> shard_channels(const unsigned char* v, int n, int esz, const LinearShard& s);
std::vector<unsigned char> shard_dense(const unsigned char* w, int n, int k, const LinearShard& s);

// Checks that plan can be split over tp ranks (std::invalid_argument naming the dimension and
// the model folder) and returns rank's shards. 0 ≤ rank < tp.
RankPlan plan_rank(const ModelPlan& plan, int tp, int rank);

}  // namespace odyssey::exec
