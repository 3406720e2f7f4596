// emulate_wgmma.cpp: the index arithmetic of the wgmma kernel (src/fastgemm_sm90.cu) on the host.
//
// The kernel's data path is replayed with the operand layouts the PTX ISA states for
// wgmma.m64n128k32 s8 (A fragment from registers, K-major B through the 128-byte swizzle and the
// shared-memory descriptor, D fragment), so that the kernel's own index formulas — the packed
// words it turns into A registers, the swizzled offsets its cp.async writes, the descriptor start
// per k32 step, the mapping of accumulator registers back to (token, channel), the group fold —
// are checked against a plain product before any GPU sees them. What it cannot check is whether
// the hardware follows those layouts: `odyssey-rt test wgmma-probe` does that on the device.
// v2 (config wgmma_r128t128_s4_v2): the weights and group scales reach the A registers and the
// fold through the shared-memory stage instead of straight from global memory; its cp.async chunk
// formulas (W strips, int16 and float scale rows, zero-fill past Np) and the consumer's reads of
// the stage are replayed too, every case once per version.
// v3 (config wgmma_r128t128_s4_v3): v2's stage, with each warpgroup's 128 tokens as two
// m64n64k32 chains (descriptor start + 8192·h, D register j of half h = v2's register 32·h + j)
// and the delayed fold of the second half (folded after the next group's first half is issued,
// with the scales kept from its own group): replayed in the kernel's order.
// v4 (config wgmma_ws_r128t128_v4): v2's stage read by the consumers, but filled by v4's copies
// (the TMA's 128-byte swizzle image of the X box with tokens past M zero-filled, the strips below
// Np as copied — since session 8 one 2D TMA box zero-fills the strips past Np; the emulation
// leaves random stale bytes there, a superset of zeros that checks no stored output reads them —, one bulk copy of
// the tile's valid channels per group row), every case once more; and the producer/consumer ring
// (v4_ring): the kernel's stage/phase counters, mbarriers (arrival counts, transaction bytes,
// phase bit, try_wait.parity), the pingpong named barriers and copies landing at random times,
// run by a random scheduler over 1..40 K blocks, ring sizes 1..8 and 1, 2 or 4 groups: every
// consumed stage must hold the wanted K block until its last wgmma completed, no copy may land
// in a stage a consumer warp still uses, the two consumers' issues must alternate, and nothing may
// deadlock. Three mutations of the kernel's protocol must each be caught.
// v5 (config wgmma_ws_r128t128_v5, v4 on a persistent grid): the tile schedule of
// src/wgmma_sched.hpp itself (included, not copied) against v4's former inline raster formula,
// every tile covered exactly once over the blocks of grids of 1, 3, 132 and more blocks than
// tiles, and the cluster raster of config 21 (v5_schedule); and v4_ring with several tiles per
// block (ntiles > 1): the producer's stage/phase and the consumers' turns running on across tile
// boundaries, an epilogue between tiles; a fifth mutation (turns counted per tile) must be caught;
// and the "prefetch" diagnostic's order (the next stage waited for and read before this one's
// wait_group and release) over ring sizes 2..8.
// Host only (CI): emulate_wgmma [--quick]
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <vector>

#include "../src/wgmma_sched.hpp"

namespace {

// docs/fastgemm-layout.md, the same formula as test_gemm.cpp's pack_fastgemm.
std::vector<uint8_t> pack(const std::vector<int>& q, int n, int k) {
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

int8_t byte_of(uint32_t w, int j) { return (int8_t)(uint8_t)(w >> (8 * j)); }

// v3's groups of one K block for warpgroup wg, in the kernel's order: per group g, H0(g) (tokens
// 0..63, descriptor start + 32·s), the fold of the pending second half with its kept scales,
// H1(g) (tokens 64..127, start + 8192 + 32·s), then the fold of H0(g) with g's scales read from
// the stage (v2's s_off). part/total: v2's 64 registers per thread; half h's D register j is
// register 32·h + j, so the m64n64 D layout (row 16w + gid + 8·((j>>1)&1), column
// 8·(j>>2) + 2·tig + (j&1)) is applied within the half.
void run_v3_groups(int wg, int kb, int rt, int np, int kgroups, int ksteps, int spg, uint32_t (*a)[4][4],
                   const uint8_t* smem, const uint8_t* ssm, uint32_t (*part)[64], uint32_t (*total)[64],
                   uint32_t (*pend)[2], bool& pending) {
  (void)rt, (void)np;
  auto issue = [&](int h, int g) {
    for (int j = 0; j < ksteps; j++) {
      const int s = g * ksteps + j;
      const bool zero = spg ? j == 0 : (kb == 0 && s == 0);
      int A[64][32];
      for (int row = 0; row < 64; row++)
        for (int kk = 0; kk < 32; kk++) {
          const int w = row / 16, lane = 4 * (row % 8) + (kk % 16) / 4, reg = ((row / 8) % 2) + 2 * (kk / 16);
          A[row][kk] = byte_of(a[w * 32 + lane][s][reg], kk % 4);
        }
      for (int tid = 0; tid < 128; tid++) {
        const int w = tid / 32, lane = tid % 32, gid = lane / 4, tig = lane % 4;
        uint32_t* d = part[wg * 128 + tid] + 32 * h;
        for (int jj = 0; jj < 32; jj++) {
          const int row = 16 * w + gid + 8 * ((jj >> 1) & 1), col = 8 * (jj >> 2) + 2 * tig + (jj & 1);
          int32_t sum = 0;
          for (int kk = 0; kk < 32; kk++) {
            const uint32_t addr = 8192 * h + 32 * s + (col / 8) * 1024 + (col % 8) * 128 + kk;
            const uint32_t phys = addr ^ (((addr >> 7) & 7) << 4);
            sum += A[row][kk] * (int8_t)smem[phys];
          }
          d[jj] = (zero ? 0u : d[jj]) + (uint32_t)sum;
        }
      }
    }
  };
  auto scales = [&](int g, int tid, uint32_t* lo, uint32_t* hi) {
    const int w = tid / 32, jx = g * 128 + wg * 64 + w * 16 + (tid % 32) / 4;
    int16_t l, hh;
    std::memcpy(&l, ssm + jx * 2, 2);
    std::memcpy(&hh, ssm + (jx + 8) * 2, 2);
    *lo = (uint32_t)(int32_t)l;
    *hi = (uint32_t)(int32_t)hh;
  };
  for (int g = 0; g < kgroups; g++) {
    issue(0, g);
    if (spg && pending)
      for (int tid = 0; tid < 128; tid++)
        for (int j = 0; j < 32; j++) total[wg * 128 + tid][32 + j] += pend[tid][(j >> 1) & 1] * part[wg * 128 + tid][32 + j];
    issue(1, g);
    for (int tid = 0; tid < 128; tid++) scales(g, tid, &pend[tid][0], &pend[tid][1]);
    pending = true;
    if (spg)
      for (int tid = 0; tid < 128; tid++) {
        uint32_t lo, hi;
        scales(g, tid, &lo, &hi);
        for (int j = 0; j < 32; j++) total[wg * 128 + tid][j] += ((j >> 1) & 1 ? hi : lo) * part[wg * 128 + tid][j];
      }
  }
}

// One problem through the emulated kernel; returns the number of wrong accumulators.
long long run(int m, int n, int k, int group, uint32_t seed, int ver) {
  const bool v2 = ver >= 2;  // W and scales through the stage (v2, v3)
  const int np = (n + 7) / 8 * 8, kblocks = k / 128, groups = k / group;
  uint32_t st = seed;
  auto rnd = [&st]() {
    st = st * 1664525u + 1013904223u;
    return st >> 8;
  };
  std::vector<int8_t> x((size_t)m * k);
  for (auto& v : x) v = (int8_t)((int)(rnd() % 255) - 127);
  std::vector<int> q((size_t)n * k);
  for (auto& v : q) v = (int)(rnd() % 15) - 7;
  std::vector<int16_t> gs((size_t)groups * np, 0);
  for (int g = 0; g < groups; g++)
    for (int c = 0; c < n; c++) gs[(size_t)g * np + c] = (int16_t)(1 + rnd() % 1000);
  std::vector<uint8_t> qw = pack(q, n, k);
  const bool per_channel = group >= k;
  const int spg = per_channel ? 0 : group / 32, kgroups = spg ? 4 / spg : 1, ksteps = spg ? spg : 4;

  std::vector<int32_t> acc((size_t)m * n, 0x7F7F7F7F);
  const int tiles_r = (np + 127) / 128, tiles_t = (m + 127) / 128;
  std::vector<uint8_t> smem(128 * 128);
  // v2's stage beyond the X tile: W (16 strips × 512 bytes), the int16 scale rows and, for the
  // float-scale instantiations, the same scales as float through their own chunk formulas.
  std::vector<uint8_t> wsm(8192), ssm(2048), fsm(2048);
  std::vector<float> gsf(gs.begin(), gs.end());
  long long bad_copy = 0;
  for (int rt = 0; rt < tiles_r; rt++)
    for (int tt = 0; tt < tiles_t; tt++) {
      const int t0 = tt * 128;
      // Per thread (warpgroup, warp, lane): total[64] and part[64], as in the kernel.
      static uint32_t total[256][64], part[256][64];
      std::memset(total, 0, sizeof total);
      std::memset(part, 0, sizeof part);
      // v3: per warpgroup, the scales of the second half's pending fold (per thread: lo, hi).
      static uint32_t v3_pend[2][128][2];
      bool v3_pending[2] = {false, false};
      for (int kb = 0; kb < kblocks; kb++) {
        // cp.async: thread tid's chunks i = u·256 + tid, row r = i>>3, chunk c = i&7.
        for (int tid = 0; tid < 256 && ver < 4; tid++)
          for (int u = 0; u < 4; u++) {
            const int i = u * 256 + tid, r = i >> 3, c = i & 7;
            uint8_t* dst = smem.data() + r * 128 + ((c ^ (r & 7)) << 4);
            if (t0 + r < m)
              std::memcpy(dst, x.data() + (size_t)(t0 + r) * k + kb * 128 + c * 16, 16);
            else
              std::memset(dst, 0, 16);
          }
        if (ver >= 4) {
          // TMA, SWIZZLE_128B: box byte (kk, token row r) at logical r·128 + kk of the box's
          // 1024-byte aligned destination, 16-byte unit bits 4–6 XORed with bits 7–9; tokens past
          // M read 0. v4: one box of 128 tokens at the stage; config 21 (ver 5): two boxes of 64
          // tokens (one per CTA of the pair, multicast), half h at stage + 8192·h, tokens t0 + 64·h on.
          const int boxes = ver == 5 ? 2 : 1, rows = 128 / boxes;
          for (int h = 0; h < boxes; h++)
            for (int r = 0; r < rows; r++)
              for (int kk = 0; kk < 128; kk++) {
                const uint32_t off = r * 128 + kk, phys = h * 8192 + (off ^ (((off >> 7) & 7) << 4));
                const int t = t0 + h * rows + r;
                smem[phys] = t < m ? (uint8_t)x[(size_t)t * k + kb * 128 + kk] : 0;
              }
          // Stale bytes from "an earlier stage" where v4 copies nothing (strips and channels
          // past Np): the outputs must not depend on them.
          for (auto& b : wsm) b = (uint8_t)rnd();
          for (auto& b : ssm) b = (uint8_t)rnd();
          for (auto& b : fsm) b = (uint8_t)rnd();
          const int nstrips = std::min(16, (np - rt * 128) / 8), ncols = std::min(128, np - rt * 128);
          for (int j = 0; j < nstrips; j++)
            std::memcpy(wsm.data() + j * 512, qw.data() + ((size_t)(rt * 16 + j) * kblocks + kb) * 512, 512);
          for (int g = 0; spg && g < kgroups; g++) {
            const size_t src = (size_t)(kb * kgroups + g) * np + rt * 128;
            std::memcpy(ssm.data() + g * 128 * 2, gs.data() + src, ncols * 2);
            std::memcpy(fsm.data() + g * 128 * 4, gsf.data() + src, ncols * 4);
          }
        } else if (v2) {
          // W: chunk i = u·256 + tid is strip i/32 of the block, lane i%32; smem offset 16·i.
          for (int tid = 0; tid < 256; tid++)
            for (int u = 0; u < 2; u++) {
              const int i = u * 256 + tid, strip = rt * 16 + (i >> 5);
              uint8_t* dst = wsm.data() + i * 16;
              if (strip * 8 < np)
                std::memcpy(dst, qw.data() + (((size_t)strip * kblocks + kb) * 32 + (i & 31)) * 16, 16);
              else
                std::memset(dst, 0, 16);
            }
          // Scales: chunk tid (< kSChunks) is group tid/CPR, channels (tid%CPR)·(16/sizeof) on.
          for (int fl = 0; fl < 2; fl++) {
            const int esz = fl ? 4 : 2, cols = 16 / esz, cpr = 128 / cols, nchunks = spg ? kgroups * 128 / cols : 0;
            uint8_t* base = fl ? fsm.data() : ssm.data();
            for (int tid = 0; tid < 256; tid++) {
              if (tid >= nchunks) continue;
              const int sg = tid / cpr, col = rt * 128 + (tid % cpr) * cols;
              uint8_t* dst = base + tid * 16;
              const size_t src = (size_t)(kb * kgroups + sg) * np + col;
              if (col < np)
                std::memcpy(dst, fl ? (const void*)(gsf.data() + src) : (const void*)(gs.data() + src), 16);
              else
                std::memset(dst, 0, 16);
            }
          }
        }
        for (int wg = 0; wg < 2; wg++) {
          // A registers of every thread of the warpgroup for the four k32 steps.
          uint32_t a[128][4][4];
          for (int wq = 0; wq < 4; wq++)
            for (int lane = 0; lane < 32; lane++) {
              const int row0 = rt * 128 + wg * 64 + wq * 16, nb = row0 >> 3;
              uint32_t w0[4] = {0, 0, 0, 0}, w1[4] = {0, 0, 0, 0};
              if (v2) {  // the kernel's w_off: strips 2·(4·wg + wq) and the next of the stage
                const int w_off = (wg * 8 + wq * 2) * 512 + lane * 16;
                std::memcpy(w0, wsm.data() + w_off, 16);
                std::memcpy(w1, wsm.data() + w_off + 512, 16);
              } else {
                if (row0 < np) std::memcpy(w0, qw.data() + (((size_t)nb * kblocks + kb) * 32 + lane) * 16, 16);
                if (row0 + 8 < np) std::memcpy(w1, qw.data() + (((size_t)(nb + 1) * kblocks + kb) * 32 + lane) * 16, 16);
              }
              for (int s = 0; s < 4; s++) {
                uint32_t* r = a[wq * 32 + lane][s];
                r[0] = (w0[s] << 4) & 0xF0F0F0F0u;
                r[1] = (w1[s] << 4) & 0xF0F0F0F0u;
                r[2] = w0[s] & 0xF0F0F0F0u;
                r[3] = w1[s] & 0xF0F0F0F0u;
              }
            }
          if (ver == 3) {
            run_v3_groups(wg, kb, rt, np, kgroups, ksteps, spg, a, smem.data(), ssm.data(), part, total, v3_pend[wg],
                          v3_pending[wg]);
            continue;
          }
          for (int g = 0; g < kgroups; g++) {
            for (int j = 0; j < ksteps; j++) {
              const int s = g * ksteps + j;
              const bool zero = spg ? j == 0 : (kb == 0 && s == 0);
              // The PTX ISA's A layout (ALayout_64x32): element (row, kk) of the 64×32 tile is
              // byte kk%4 of register (row/8 %2) + 2·(kk/16) of lane 4·(row%8) + (kk%16)/4 of warp row/16.
              int A[64][32];
              for (int row = 0; row < 64; row++)
                for (int kk = 0; kk < 32; kk++) {
                  const int w = row / 16, lane = 4 * (row % 8) + (kk % 16) / 4, reg = ((row / 8) % 2) + 2 * (kk / 16);
                  A[row][kk] = byte_of(a[w * 32 + lane][s][reg], kk % 4);
                }
              // B: K-major, 128-byte swizzle; descriptor start = stage + 32·s, SBO 1024. Element
              // (kk, col) is at logical address start + (col/8)·1024 + (col%8)·128 + kk; the
              // hardware XORs address bits 4–6 with bits 7–9 (the stage is 1024-byte aligned).
              for (int tid = 0; tid < 128; tid++) {
                const int w = tid / 32, lane = tid % 32, gid = lane / 4, tig = lane % 4;
                uint32_t* d = part[wg * 128 + tid];
                for (int i = 0; i < 64; i++) {
                  const int row = 16 * w + gid + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * tig + (i & 1);
                  int32_t sum = 0;
                  for (int kk = 0; kk < 32; kk++) {
                    const uint32_t addr = 32 * s + (col / 8) * 1024 + (col % 8) * 128 + kk;
                    const uint32_t phys = addr ^ (((addr >> 7) & 7) << 4);
                    sum += A[row][kk] * (int8_t)smem[phys];
                  }
                  d[i] = (zero ? 0u : d[i]) + (uint32_t)sum;
                }
              }
            }
            if (spg)  // fold with ŝ of rows gid and gid+8
              for (int tid = 0; tid < 128; tid++) {
                const int w = tid / 32, gid = (tid % 32) / 4, c0 = rt * 128 + wg * 64 + w * 16 + gid;
                const size_t srow = (size_t)(kb * kgroups + g) * np;
                uint32_t s_lo = c0 < np ? (uint32_t)(int32_t)gs[srow + c0] : 0;
                uint32_t s_hi = c0 + 8 < np ? (uint32_t)(int32_t)gs[srow + c0 + 8] : 0;
                if (v2) {  // the kernel's s_off: channel wg·64 + w·16 + gid of group g's row, and + 8
                  const int j = g * 128 + wg * 64 + w * 16 + (tid % 32) / 4;
                  int16_t lo, hi;
                  float flo, fhi;
                  std::memcpy(&lo, ssm.data() + j * 2, 2);
                  std::memcpy(&hi, ssm.data() + (j + 8) * 2, 2);
                  std::memcpy(&flo, fsm.data() + j * 4, 4);
                  std::memcpy(&fhi, fsm.data() + (j + 8) * 4, 4);
                  s_lo = (uint32_t)(int32_t)lo;
                  s_hi = (uint32_t)(int32_t)hi;
                  // The float rows must hold the same scales (the float kernel folds with them);
                  // v4 leaves rows ≥ Np stale (never stored), so only rows below Np count.
                  if ((c0 < np && flo != (float)lo) || (c0 + 8 < np && fhi != (float)hi)) bad_copy++;
                }
                for (int i = 0; i < 64; i++) total[wg * 128 + tid][i] += ((i >> 1) & 1 ? s_hi : s_lo) * part[wg * 128 + tid][i];
              }
          }
        }
      }
      if (ver == 3 && spg)  // after the loop: wait_group 0, fold the last second half
        for (int wg = 0; wg < 2; wg++)
          if (v3_pending[wg])
            for (int tid = 0; tid < 128; tid++)
              for (int j = 0; j < 32; j++)
                total[wg * 128 + tid][32 + j] += v3_pend[wg][tid][(j >> 1) & 1] * part[wg * 128 + tid][32 + j];
      for (int tid = 0; tid < 256; tid++) {
        const int wg = tid / 128, w = (tid % 128) / 32, lane = tid % 32, gid = lane / 4, tig = lane % 4;
        const int c0 = rt * 128 + wg * 64 + w * 16 + gid;
        for (int i = 0; i < 64; i++) {
          const int c = c0 + 8 * ((i >> 1) & 1), t = t0 + 8 * (i >> 2) + 2 * tig + (i & 1);
          if (c >= n || t >= m) continue;
          uint32_t v = total[tid][i];
          if (!spg) v = (uint32_t)(int32_t)gs[c] * part[tid][i];
          acc[(size_t)t * n + c] = (int32_t)v;
        }
      }
    }
  long long bad = bad_copy;
  if (bad_copy) std::fprintf(stderr, "  m%d n%d k%d g%d: %lld float scale reads differ from the int16 ones\n", m, n, k, group, bad_copy);
  for (int t = 0; t < m; t++)
    for (int c = 0; c < n; c++) {
      uint32_t want = 0;
      for (int g = 0; g < groups; g++) {
        int32_t p = 0;
        for (int kk = g * group; kk < (g + 1) * group; kk++) p += x[(size_t)t * k + kk] * 16 * q[(size_t)c * k + kk];
        want += (uint32_t)(int32_t)gs[(size_t)g * np + c] * (uint32_t)p;
      }
      if ((uint32_t)acc[(size_t)t * n + c] != want && ++bad <= 5)
        std::fprintf(stderr, "  m%d n%d k%d g%d: acc[%d][%d] = %d, want %d\n", m, n, k, group, t, c,
                     acc[(size_t)t * n + c], (int32_t)want);
    }
  return bad;
}

// v3p (config wgmma_r128t128_s4_v3p): the persistent grid's copy schedule, replayed with the
// kernel's own cursor (load_next: tile, K block, flat stage index p_idx % 7) and consumer order
// (tile = block + i·grid, K blocks in order, flat index c_idx): every consumed stage must hold
// the (tile, K block) the consumer wants, and a copy may only overwrite the stage of a flat
// block at least two behind the one being consumed (the kernel's waits retire those; the
// previous block's second half may still read its stage). The per-tile arithmetic is v3's.
long long v3p_schedule(int m, int n, int k, int grid) {
  const int np = (n + 7) / 8 * 8, kblocks = k / 128, stages = 7, ahead = stages - 2;
  const int tiles = ((np + 127) / 128) * ((m + 127) / 128);
  grid = std::min(grid, tiles);
  std::vector<int> seen(tiles * kblocks, 0);
  long long bad = 0;
  for (int b = 0; b < grid; b++) {
    std::vector<long long> slot_tag(stages, -1), slot_flat(stages, -1);
    int p_tile = b, p_kb = 0, p_idx = 0, c_idx = 0;
    auto load_next = [&]() {
      if (p_tile >= tiles) return;
      const int s = p_idx % stages;
      if (slot_flat[s] >= 0 && slot_flat[s] > c_idx - 2) bad++;  // c_idx: the block being consumed
      slot_tag[s] = (long long)p_tile * kblocks + p_kb;
      slot_flat[s] = p_idx;
      p_idx++;
      if (++p_kb == kblocks) {
        p_kb = 0;
        p_tile += grid;
      }
    };
    for (int s = 0; s < ahead; s++) load_next();
    for (int tile = b; tile < tiles; tile += grid)
      for (int kb = 0; kb < kblocks; kb++) {
        load_next();  // after the barrier, before this block's math: its stage is c_idx - 2's
        const int s = c_idx % stages;
        if (slot_tag[s] != (long long)tile * kblocks + kb || slot_flat[s] != c_idx) bad++;
        seen[(size_t)tile * kblocks + kb]++;
        c_idx++;
      }
  }
  for (int v : seen)
    if (v != 1) bad++;
  return bad;
}

// v5's static schedule (and v4/v4c2's raster, now the same function): block b of `grid` takes
// tiles b, b + grid, ... (wgmma_sched::tiles_of_block of them), tile i → raster_tile(i). Checks:
// raster_tile equals v4's former inline formula (kept here as the specification), every (rt, tt)
// is taken exactly once, the per-block count matches the loop, and config 21's pairs (i / 2 →
// raster over pairs, rt = 2·q.rt + rank) cover every row tile once (a rank past the last row tile
// only for an odd count). Returns the problems seen.
long long v5_schedule(int tiles_r, int tiles_t, int grid, int raster) {
  long long bad = 0;
  const int tiles = tiles_r * tiles_t;
  auto spec = [&](int bx, int& rt, int& tt) {  // v4 before session 9 (fastgemm_sm90.cu, CL = 1)
    const int per_group = raster * tiles_t;
    const int grp = bx / per_group, in_grp = bx % per_group;
    const int first_r = grp * raster;
    const int rows_here = std::min(raster, tiles_r - first_r);
    rt = first_r + in_grp % rows_here;
    tt = in_grp / rows_here;
  };
  std::vector<int> seen(tiles, 0);
  int total = 0;
  for (int b = 0; b < grid; b++) {
    const int mine = odyssey::wgmma_sched::tiles_of_block(b, grid, tiles);
    int count = 0;
    for (int i = b; i < tiles; i += grid) {
      const odyssey::wgmma_sched::Tile t = odyssey::wgmma_sched::raster_tile(i, tiles_r, tiles_t, raster);
      int rt = 0, tt = 0;
      spec(i, rt, tt);
      if (t.rt != rt || t.tt != tt) bad++;
      if (t.rt < 0 || t.rt >= tiles_r || t.tt < 0 || t.tt >= tiles_t) {
        bad++;
        continue;
      }
      seen[(size_t)t.tt * tiles_r + t.rt]++;
      count++;
    }
    if (count != mine) bad++;  // the kernel's loop bound (and its turn count) must match
    total += count;
  }
  if (total != tiles) bad++;
  for (int v : seen)
    if (v != 1) bad++;
  // Config 21: blocks 0 .. 2·pairs−1, rank = block & 1, pair index block / 2.
  const int tiles_q = (tiles_r + 1) / 2;
  std::vector<int> seen2(tiles, 0);
  for (int bx = 0; bx < 2 * tiles_q * tiles_t; bx++) {
    const odyssey::wgmma_sched::Tile q = odyssey::wgmma_sched::raster_tile(bx / 2, tiles_q, tiles_t, raster / 2);
    const int rt = q.rt * 2 + (bx & 1);
    if (q.tt < 0 || q.tt >= tiles_t || rt < 0 || rt > tiles_r || (rt == tiles_r && tiles_r % 2 == 0)) {
      bad++;
      continue;
    }
    if (rt < tiles_r) seen2[(size_t)q.tt * tiles_r + rt]++;
  }
  for (int v : seen2)
    if (v != 1) bad++;
  return bad;
}

// v4's producer/consumer ring, replayed step by step. Agents: the producer thread and the 8
// consumer warps (consumer c = warps 4c..4c+3). Each step of the random scheduler advances one
// runnable agent by one action of the kernel's code; copies issued by the producer land later,
// at random, one at a time (complete_tx). mbarrier model (PTX ISA "mbarrier"): a phase completes
// when its pending arrivals reach 0 and its transaction count is 0; the phase bit then flips and
// the arrival count resets; try_wait.parity(P) succeeds when the phase bit differs from P.
// Named barriers: 8 warps (256 threads) complete an instance; bar.sync blocks until it does.
// cl = 2 (config 21): two CTAs, each producer's X half multicast into both CTAs' stage (each
// landing on its own), each consumer warp releasing the stage in both CTAs (count 16).
// Mutations (mut): 1 = a consumer warp releases the stage right after issuing its last group
// (before wait_group 0); 2 = empty[s] counts 4 arrivals (one warpgroup) instead of 8; 3 = the
// producer waits on empty with parity `phase` instead of `phase ^ 1`; 4 (cluster) = the consumers
// release only their own CTA's stage (empty counts 8); 5 (v5, ntiles > 1) = the turns counted per
// tile (consumer 0 skips its first wait and consumer 1 its last arrive in every tile, not once).
// ntiles > 1 (v5): the K loop runs ntiles times (content id tile·kblocks + kb), the stage and
// phase and the turn counter run on, and each consumer warp spends a step in its epilogue
// between tiles (no barrier there). Returns the problems seen.
struct MBar {
  int count = 0, pending = 0, tx = 0, phase = 0;
  void init(int c) { count = pending = c; }
  void maybe_complete() {
    if (pending == 0 && tx == 0) {
      phase ^= 1;
      pending = count;
    }
  }
  void arrive() {
    pending--;
    maybe_complete();
  }
  void expect_tx(int b) { tx += b; }
  void complete_tx(int b) {
    tx -= b;
    maybe_complete();
  }
  bool try_wait(int parity) const { return phase != parity; }
};

long long v4_ring(int kblocks_tile, int stages, int kgroups, uint32_t seed, int mut, int cl = 1, int ntiles = 1,
                  bool pf = false) {
  const int kblocks = kblocks_tile * ntiles;  // K blocks over all of the block's tiles
  uint32_t rs = seed;
  auto rnd = [&rs]() {
    rs = rs * 1664525u + 1013904223u;
    return rs >> 8;
  };
  // Pieces of a stage: the X tile (cl = 1) or its two halves (cl = 2: half h is copied by CTA h's
  // producer and multicast to both CTAs), then W and the scales (each CTA its own).
  const int npieces = cl + 2, kBytes = 100;
  std::vector<MBar> full(cl * stages), empty(cl * stages);
  for (int i = 0; i < cl * stages; i++) {
    full[i].init(1);
    empty[i].init(mut == 2 ? 4 : mut == 4 ? 8 : 8 * cl);  // mutation 2: one warpgroup; 4: a cluster counting only local warps
  }
  std::vector<int> content(cl * stages * npieces, -1), users(cl * stages, 0);
  struct Copy {
    int cta, stage, piece, kb;
  };
  std::vector<Copy> flight;
  long long bad = 0;
  struct Prod {
    int kb = 0, s = 0, phase = 0;
  };
  std::vector<Prod> prod(cl);
  // Named barriers 1 and 2 of each CTA: arrivals in this instance, instance number.
  std::vector<int> nb_arr(2 * cl, 0), nb_gen(2 * cl, 0);
  auto nb_arrive = [&](int cta, int id) {
    if (++nb_arr[2 * cta + id] == 8) {
      nb_arr[2 * cta + id] = 0;
      nb_gen[2 * cta + id]++;
    }
  };
  const int turns = kblocks * kgroups;
  struct Warp {
    int kb = 0, s = 0, phase = 0, g = 0, turn = 0;
    int pc = 0;         // 0 wait full, 1 turn wait, 2 issue + pass turn, 3 wait_group + release + fold, 4 epilogue
    int wait_gen = -1;  // the named-barrier instance a bar.sync waits for
    bool in_bar = false, done = false;
    bool have_next = false;  // pf: the next K block's stage already waited for and being read
  };
  std::vector<Warp> w(8 * cl);
  std::vector<int> issued(cl * 2 * turns, 0);  // warps of (CTA, consumer c) that issued turn t
  auto holds = [&](int cta, int st, int kb) {
    for (int pc = 0; pc < npieces; pc++)
      if (content[(cta * stages + st) * npieces + pc] != kb) return false;
    return true;
  };
  auto release = [&](int cta, int st) {
    users[cta * stages + st]--;
    empty[cta * stages + st].arrive();
    if (cl == 2 && mut != 4) empty[(cta ^ 1) * stages + st].arrive();  // the remote arrive (mapa)
  };
  auto consumer_step = [&](int wi) -> bool {  // false: blocked
    Warp& q = w[wi];
    const int cta = wi / 8, c = (wi % 8) / 4;
    int* iss = issued.data() + cta * 2 * turns;
    switch (q.pc) {
      case 0:
        if (pf && q.have_next) {  // waited for (and counted as a user) under the previous MMAs
          q.have_next = false;
          q.g = 0;
          q.pc = 1;
          return true;
        }
        if (!full[cta * stages + q.s].try_wait(q.phase)) return false;
        if (!holds(cta, q.s, q.kb)) bad++;  // the stage must hold this K block
        users[cta * stages + q.s]++;
        q.g = 0;
        q.pc = 1;
        return true;
      case 4:  // the epilogue between two tiles (v5): registers and global stores only
        q.pc = 0;
        return true;
      case 1: {
        const int tturns = kblocks_tile * kgroups;  // mutation 5: the kernel's bookkeeping per tile
        if (mut == 5 ? !(c == 1 || q.turn % tturns > 0) : !(c == 1 || q.turn > 0)) {
          q.pc = 2;
          return true;
        }
        const int id = 2 * cta + c;  // consumer c waits on its own barrier (kBarTurn0 / kBarTurn1)
        if (!q.in_bar) {
          q.in_bar = true;
          q.wait_gen = nb_gen[id];
          nb_arrive(cta, c);
        }
        if (nb_gen[id] == q.wait_gen) return false;
        q.in_bar = false;
        q.pc = 2;
        return true;
      }
      case 2: {
        // The wgmma ops of turn q.turn: the other consumer must have issued its turn before
        // (consumer 1: the same turn; consumer 0: the previous one), and this one not yet.
        if (c == 1 && iss[0 * turns + q.turn] != 4) bad++;
        if (c == 0 && q.turn > 0 && iss[1 * turns + q.turn - 1] != 4) bad++;
        if (c == 0 && iss[1 * turns + q.turn] != 0) bad++;
        iss[c * turns + q.turn]++;
        if (!holds(cta, q.s, q.kb)) bad++;
        if (mut == 5 ? (c == 0 || (q.turn + 1) % (kblocks_tile * kgroups) != 0) : (c == 0 || q.turn + 1 < turns))
          nb_arrive(cta, 1 - c);  // pass the turn
        q.turn++;
        if (mut == 1 && q.g == kgroups - 1) release(cta, q.s);  // mutation: before the MMAs completed
        q.pc = pf && q.g == kgroups - 1 && q.kb + 1 < kblocks ? 5 : 3;
        return true;
      }
      case 5: {  // pf: the next stage's full wait and reads, the MMAs of this one still in flight
        const int s2 = q.s + 1 == stages ? 0 : q.s + 1, ph2 = q.s + 1 == stages ? q.phase ^ 1 : q.phase;
        if (!full[cta * stages + s2].try_wait(ph2)) return false;
        if (!holds(cta, s2, q.kb + 1)) bad++;
        users[cta * stages + s2]++;
        q.have_next = true;
        q.pc = 3;
        return true;
      }
      default:
        // wait_group 0: the wgmmas read the stage until here.
        if (!holds(cta, q.s, q.kb)) bad++;
        if (q.g == kgroups - 1) {
          if (mut != 1) release(cta, q.s);
          if (++q.kb == kblocks) {
            q.done = true;
            return true;
          }
          if (++q.s == stages) {
            q.s = 0;
            q.phase ^= 1;
          }
          q.pc = q.kb % kblocks_tile == 0 ? 4 : 0;  // a tile ended: its epilogue, then the next tile
        } else {
          q.g++;
          q.pc = 1;
        }
        return true;
    }
  };
  auto producer_step = [&](int cta) -> bool {
    Prod& pr = prod[cta];
    if (pr.kb == kblocks) return false;
    if (!empty[cta * stages + pr.s].try_wait(mut == 3 ? pr.phase : pr.phase ^ 1)) return false;
    // expect_tx of every piece this CTA's stage receives (both X halves with a cluster), then arrive.
    full[cta * stages + pr.s].expect_tx(npieces * kBytes);
    full[cta * stages + pr.s].arrive();
    for (int d = 0; d < cl; d++) flight.push_back({d, pr.s, cl == 2 ? cta : 0, pr.kb});  // X (half), multicast
    flight.push_back({cta, pr.s, cl, pr.kb});      // W
    flight.push_back({cta, pr.s, cl + 1, pr.kb});  // scales
    pr.kb++;
    if (++pr.s == stages) {
      pr.s = 0;
      pr.phase ^= 1;
    }
    return true;
  };
  auto land = [&]() -> bool {
    if (flight.empty()) return false;
    const size_t i = rnd() % flight.size();
    const Copy cp = flight[i];
    flight.erase(flight.begin() + (long)i);
    if (users[cp.cta * stages + cp.stage] > 0) bad++;  // overwrites a stage a consumer warp still uses
    content[(cp.cta * stages + cp.stage) * npieces + cp.piece] = cp.kb;
    full[cp.cta * stages + cp.stage].complete_tx(kBytes);  // (may precede the expect_tx: tx < 0 for a while)
    return true;
  };
  const int n_agents = 8 * cl + cl + 1;  // consumer warps, producers, the copy engine
  for (long long steps = 0;; steps++) {
    bool all_done = flight.empty();
    for (auto& pr : prod) all_done = all_done && pr.kb == kblocks;
    for (auto& q : w) all_done = all_done && q.done;
    if (all_done) break;
    // Try agents in a random order until one moves; none can: deadlock.
    const int first = (int)(rnd() % n_agents);
    bool moved = false;
    for (int j = 0; j < n_agents && !moved; j++) {
      const int a = (first + j) % n_agents;
      if (a < 8 * cl) moved = !w[a].done && consumer_step(a);
      else if (a < 9 * cl) moved = producer_step(a - 8 * cl);
      else moved = land();
    }
    if (!moved || steps > 100000000) {
      bad++;  // deadlock
      break;
    }
  }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  struct P {
    int m, n, k, g;
  };
  std::vector<P> ps = {{128, 128, 128, 128}, {200, 136, 384, 128}, {70, 40, 256, 32}, {130, 260, 256, 64},
                       {64, 128, 384, 384}};
  if (!quick) ps.push_back({300, 264, 512, 32});
  long long bad = 0;
  for (int ver = 1; ver <= 5; ver++)
    for (auto& p : ps) {
      long long b = run(p.m, p.n, p.k, p.g, 7u + p.m + p.n, ver);
      std::printf("emulate_wgmma%s m%d n%d k%d group %d: %s\n",
                  ver == 1 ? "" : ver == 2 ? " v2" : ver == 3 ? " v3" : ver == 4 ? " v4" : " v4c2", p.m, p.n, p.k, p.g,
                  b ? "FAIL" : "ok");
      bad += b;
    }
  // v3p's schedule: one tile per block, two or three per block, K blocks fewer than, equal to and
  // more than the stages ahead, grids of an H100/H200 (132) and odd sizes.
  long long bad_sched = 0;
  for (int kb : {1, 2, 3, 5, 7, 10, 32})
    for (int grid : {1, 3, 132})
      for (int mn : {128, 1024, 2048}) {
        const long long b = v3p_schedule(mn, mn + 8, kb * 128, grid);
        if (b) std::printf("emulate_wgmma v3p schedule m%d n%d kblocks %d grid %d: FAIL (%lld)\n", mn, mn + 8, kb, grid, b);
        bad_sched += b;
      }
  std::printf("emulate_wgmma v3p schedule: %s\n", bad_sched ? "FAIL" : "ok");
  bad += bad_sched;
  // v4's ring: 1..40 K blocks (every one with --quick off, a spread with it), ring sizes 1..8,
  // 1/2/4 groups per K block, several random interleavings each; one CTA (config 20) and a
  // 2-CTA cluster with multicast X halves (config 21).
  for (int cl = 1; cl <= 2; cl++) {
    long long bad_ring = 0;
    int ring_runs = 0;
    for (int kb = 1; kb <= 40; kb += quick ? 3 : 1)
      for (int stages = 1; stages <= 8; stages++)
        for (int kg : {1, 2, 4})
          for (uint32_t seed = 1; seed <= (quick ? 2u : 4u); seed++) {
            const long long b = v4_ring(kb, stages, kg, seed * 7919u + kb * 31u + stages, 0, cl);
            if (b)
              std::printf("emulate_wgmma v4 ring cluster %d kblocks %d stages %d groups %d seed %u: FAIL (%lld)\n", cl, kb,
                          stages, kg, seed, b);
            bad_ring += b;
            ring_runs++;
          }
    std::printf("emulate_wgmma v4 ring, cluster of %d (%d runs): %s\n", cl, ring_runs, bad_ring ? "FAIL" : "ok");
    bad += bad_ring;
  }
  // v5: the schedule over grids smaller than, equal to and larger than the tile count, ragged
  // raster groups; the ring with 2..5 tiles per block (the stage/phase and turns run on).
  long long bad_v5s = 0;
  for (int tr : {1, 2, 3, 17, 64, 172})
    for (int tt : {1, 2, 8, 32})
      for (int grid : {1, 3, 132, 5000}) {
        const long long b = v5_schedule(tr, tt, grid, 16);
        if (b) std::printf("emulate_wgmma v5 schedule tiles %dx%d grid %d: FAIL (%lld)\n", tr, tt, grid, b);
        bad_v5s += b;
      }
  std::printf("emulate_wgmma v5 schedule: %s\n", bad_v5s ? "FAIL" : "ok");
  bad += bad_v5s;
  {
    long long bad_ring = 0;
    int ring_runs = 0;
    for (int nt = 2; nt <= 5; nt++)
      for (int kb = 1; kb <= 12; kb += quick ? 3 : 1)
        for (int stages = 1; stages <= 8; stages++)
          for (int kg : {1, 2, 4})
            for (uint32_t seed = 1; seed <= (quick ? 1u : 3u); seed++) {
              const long long b = v4_ring(kb, stages, kg, seed * 6151u + kb * 37u + stages + nt, 0, 1, nt);
              if (b)
                std::printf("emulate_wgmma v5 ring tiles %d kblocks %d stages %d groups %d seed %u: FAIL (%lld)\n", nt, kb,
                            stages, kg, seed, b);
              bad_ring += b;
              ring_runs++;
            }
    std::printf("emulate_wgmma v5 ring, 2..5 tiles per block (%d runs): %s\n", ring_runs, bad_ring ? "FAIL" : "ok");
    bad += bad_ring;
  }
  // The "prefetch" diagnostic (v4 and v5): the next stage waited for and read before this
  // stage's wait_group and release. Ring sizes 2..8 (the kernel has 8); with one stage it must
  // deadlock (the consumer would wait for the stage it still holds), which the model must see.
  {
    long long bad_pf = 0;
    int runs = 0;
    for (int nt : {1, 3})
      for (int kb = 1; kb <= 12; kb += quick ? 3 : 1)
        for (int stages = 2; stages <= 8; stages++)
          for (int kg : {1, 2, 4})
            for (uint32_t seed = 1; seed <= (quick ? 1u : 3u); seed++) {
              const long long b = v4_ring(kb, stages, kg, seed * 3571u + kb * 41u + stages + nt, 0, 1, nt, true);
              if (b)
                std::printf("emulate_wgmma prefetch ring tiles %d kblocks %d stages %d groups %d seed %u: FAIL (%lld)\n", nt,
                            kb, stages, kg, seed, b);
              bad_pf += b;
              runs++;
            }
    const bool one_stage_deadlocks = v4_ring(4, 1, 1, 17u, 0, 1, 1, true) > 0;
    std::printf("emulate_wgmma prefetch ring (%d runs; one stage deadlocks: %s): %s\n", runs, one_stage_deadlocks ? "yes" : "NO",
                bad_pf || !one_stage_deadlocks ? "FAIL" : "ok");
    bad += bad_pf + (one_stage_deadlocks ? 0 : 1);
  }
  // The mutations must be caught (each on some configuration of a small sweep); 4 is the cluster's,
  // 5 is v5's (several tiles per block).
  for (int mut = 1; mut <= 5; mut++) {
    long long caught = 0;
    for (int kb : {3, 9, 20})
      for (int stages : {1, 2, 4})
        for (uint32_t seed = 1; seed <= 3; seed++)
          caught += v4_ring(kb, stages, 2, seed * 104729u + kb, mut, mut == 4 ? 2 : 1, mut == 5 ? 3 : 1) > 0;
    std::printf("emulate_wgmma v4 ring mutation %d (%s): %s\n", mut,
                mut == 1   ? "stage released before wait_group"
                : mut == 2 ? "empty counts one warpgroup"
                : mut == 3 ? "producer parity not flipped"
                : mut == 4 ? "cluster: no remote release to the partner's producer"
                           : "v5: turns counted per tile",
                caught ? "caught" : "NOT CAUGHT (FAIL)");
    if (!caught) bad++;
  }
  return bad ? 1 : 0;
}
