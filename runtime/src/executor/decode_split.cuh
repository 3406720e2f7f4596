// decode_split.cuh: what every flash-decoding split kernel does around its own key loop
// (layers.cu's fp16 fast kernel, kv8.cu's SIMT and tensor-core kernels): which keys block
// (split blockIdx.x, head part blockIdx.y, sequence blockIdx.z) owns, the empty split's partials,
// the combine's ticket reset, and the merge of the block's warps into the workspace.
// Why one place: the combine (layers.cu, decode_combine_kernel) reads exactly this layout — per
// (sequence, query head, split) an unnormalized O row in ws_o and (max in natural-log units, sum)
// in ws_ml — and a kernel that wrote it differently would be wrong only at some lengths.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace odyssey::layers {

// Keys [k0, k1) of this block's split of sequence b (length len[b] clamped to max_seq, the last
// `window` keys when window > 0), and ws0, the workspace index of its first head's partial
// (+ i·splits for head i of the `heads` heads it serves). Split 0 of head part 0 also resets the
// sequence's combine ticket and row maximum. An empty split writes its heads' empty partials
// (max −inf, sum 0) and returns false; the block then has nothing else to do.
__device__ __forceinline__ bool split_keys(const int32_t* __restrict__ len, unsigned* __restrict__ tickets,
                                           float* __restrict__ ws_ml, int max_seq, int nh, int heads, int splits,
                                           int chunk, int window, int& k0, int& k1, size_t& ws0) {
  const int s = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  if (s == 0 && g == 0 && threadIdx.x == 0) {  // for this call's combine: ticket and row maximum
    tickets[b] = 0;
    tickets[gridDim.z + b] = 0;
  }
  const int L = min(max(len[b], 0), max_seq);
  const int lo = window > 0 ? max(0, L - window) : 0;
  k0 = max(s * chunk, lo);
  k1 = min(s * chunk + chunk, L);
  ws0 = ((size_t)b * nh + (size_t)g * heads) * splits + s;
  if (k1 > k0) return true;
  if ((int)threadIdx.x < heads) {
    ws_ml[2 * (ws0 + (size_t)threadIdx.x * splits)] = -INFINITY;
    ws_ml[2 * (ws0 + (size_t)threadIdx.x * splits) + 1] = 0.f;
  }
  return false;
}

// The W warps' partials (log2-domain maxima red_m, sums red_l, unnormalized O red_o) merged for
// head i, dim d: the maximum mn (log2 units), the sum and the accumulator.
template <int W, int R, int HD>
__device__ __forceinline__ void merge_warps(const float (&red_m)[W][R], const float (&red_l)[W][R],
                                            const float (&red_o)[W][R][HD], int i, int d, float& mn, float& acc,
                                            float& sum) {
  mn = -INFINITY;
#pragma unroll
  for (int w = 0; w < W; w++) mn = fmaxf(mn, red_m[w][i]);
  acc = 0.f;
  sum = 0.f;
#pragma unroll
  for (int w = 0; w < W; w++) {
    const float a = red_m[w][i] == -INFINITY ? 0.f : exp2f(red_m[w][i] - mn);
    acc += a * red_o[w][i][d];
    sum += a * red_l[w][i];
  }
}

// The block's partial for each of its `heads` heads into the workspace, after a barrier that
// follows the warps' writes to red_*: O to ws_o, (max in natural-log units, sum) to ws_ml.
template <int W, int R, int HD>
__device__ __forceinline__ void write_split_partials(const float (&red_m)[W][R], const float (&red_l)[W][R],
                                                     const float (&red_o)[W][R][HD], int heads, size_t ws0,
                                                     int splits, float* __restrict__ ws_o,
                                                     float* __restrict__ ws_ml) {
  for (int idx = threadIdx.x; idx < heads * HD; idx += blockDim.x) {
    const int i = idx / HD, d = idx - i * HD;
    float mn, acc, sum;
    merge_warps<W, R, HD>(red_m, red_l, red_o, i, d, mn, acc, sum);
    const size_t at = ws0 + (size_t)i * splits;
    ws_o[at * HD + d] = acc;
    if (d == 0) {
      ws_ml[2 * at] = mn * 0.6931471805599453f;  // log2 units → natural log, as the combine expects
      ws_ml[2 * at + 1] = sum;
    }
  }
}

}  // namespace odyssey::layers
