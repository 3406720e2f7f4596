// wgmma_sched.hpp: the tile order of the Hopper W4A8 prefill kernels (fastgemm_sm90.cu: v2–v5),
// shared with the host emulation (tests/emulate_wgmma.cpp), so that the CPU checks the kernel's
// own formulas, not a copy of them.
//
// A tile is 128 weight rows (row tile rt) × 128 tokens (token tile tt), tiles_r × tiles_t of
// them. Linear tile index i → (rt, tt) in raster groups of `raster` row tiles × every token tile,
// token tiles slowest within a group (so the blocks resident at once share X tiles and weight
// tiles in L2); the last group may hold fewer row tiles. v2–v4 launch one block per tile and use
// i = blockIdx.x; v5 (persistent) launches `grid` blocks and block b takes tiles b, b + grid,
// b + 2·grid, ... (a static schedule: at any moment the blocks work on about `grid` consecutive
// tiles of the same raster, v4's L2 locality).
// Limits: tiles_r, tiles_t ≥ 1, raster ≥ 1, tiles_r·tiles_t < 2³¹.
#pragma once

#if defined(__CUDACC__)
#define ODY_SCHED_FN __host__ __device__ __forceinline__
#else
#define ODY_SCHED_FN inline
#endif

namespace odyssey {
namespace wgmma_sched {

struct Tile {
  int rt, tt;  // row tile (weight rows 128·rt..), token tile (tokens 128·tt..)
};

// v4's raster (one CTA, CL = 1), as a function of the linear tile index.
ODY_SCHED_FN Tile raster_tile(int i, int tiles_r, int tiles_t, int raster) {
  const int per_group = raster * tiles_t;
  const int grp = i / per_group, in_grp = i % per_group;
  const int first_r = grp * raster;
  const int rows_here = tiles_r - first_r < raster ? tiles_r - first_r : raster;
  return Tile{first_r + in_grp % rows_here, in_grp / rows_here};
}

// How many tiles block b of a persistent grid of `grid` blocks takes (b, b + grid, ... < tiles).
ODY_SCHED_FN int tiles_of_block(int b, int grid, int tiles) { return b < tiles ? (tiles - 1 - b) / grid + 1 : 0; }

}  // namespace wgmma_sched
}  // namespace odyssey
