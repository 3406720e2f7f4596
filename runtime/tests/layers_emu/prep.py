#!/usr/bin/env python3
# prep.py IN.cu OUT.inc: turns layers.cu (or kv8.cu) into host C++ for the emulator (emu.hpp): drops the
# inline-assembly helpers (emu.hpp defines ldmatrix, mma.sync, cp.async and ex2 on the host),
# points the dynamic shared memory at the emulator's buffer, and rewrites every kernel launch
# `k<<<grid, block, smem, stream>>>(args)` as `emu::launch(grid, block, smem, stream, [=] { k(args); })`.
import re
import sys
s = open(sys.argv[1]).read()
s = s.replace('#include "kernel_common.cuh"', '')
s = s.replace('#include "pdl.cuh"', '')  # emu.hpp defines pdl_wait, launch_pdl
# drop the asm helpers (emu.hpp defines them)
s = s.replace('#include "mma_f16.cuh"', '')  # emu.hpp defines mma16816 and fast_exp2
for name in ['ldsm_x4', 'ldsm_x4_t']:
    m = re.search(r'__device__ __forceinline__ void ' + name + r'\(', s)
    if not m:  # kv8.cu has neither
        continue
    end = s.index('\n}\n', m.start()) + 3
    s = s[:m.start()] + s[end:]

s = re.sub(r'__launch_bounds__\((?:[^()]|\([^()]*\))*\)', '', s)
s = s.replace('extern __shared__ __align__(128) uint8_t flash_smem[];', 'uint8_t* flash_smem = emu::g_dyn.data();')
s = s.replace('extern __shared__ float rope_smem[];', 'float* rope_smem = reinterpret_cast<float*>(emu::g_dyn.data());')
s = s.replace('extern __shared__ __align__(16) uint8_t dec_smem[];', 'uint8_t* dec_smem = emu::g_dyn.data();')
s = s.replace('extern __shared__ float comb_w[];', 'float* comb_w = reinterpret_cast<float*>(emu::g_dyn.data());')
s = s.replace('extern __shared__ float kv8_smem[];', 'float* kv8_smem = reinterpret_cast<float*>(emu::g_dyn.data());')
s = s.replace('extern __shared__ float fused_w[];', 'float* fused_w = reinterpret_cast<float*>(emu::g_dyn.data());')
assert 'extern __shared__' not in s
# kernel launches
pat = re.compile(r'([A-Za-z_][\w:]*(?:<[^;<>()]*>)?)<<<')
res = ''; pos = 0
while True:
    m = pat.search(s, pos)
    if not m: res += s[pos:]; break
    res += s[pos:m.start()]
    cfg_end = s.index('>>>', m.end())
    cfg = s[m.end():cfg_end]
    j = cfg_end + 3
    assert s[j] == '('
    depth = 0; k = j
    while True:
        if s[k] == '(': depth += 1
        elif s[k] == ')':
            depth -= 1
            if depth == 0: break
        k += 1
    args = s[j+1:k]
    res += 'emu::launch(%s, [=]() { %s(%s); })' % (cfg, m.group(1), args)
    pos = k + 1
s = res
assert '<<<' not in s
open(sys.argv[2], 'w').write(s)
