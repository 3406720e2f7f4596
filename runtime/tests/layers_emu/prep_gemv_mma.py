#!/usr/bin/env python3
# prep_gemv_mma.py IN.cu OUT.inc: turns gemv_mma.cu into host C++ for the emulator (emu.hpp, as
# prep.py does for layers.cu): drops kernel_common.cuh/pdl.cuh (gemv_swiglu_emu.cpp and emu.hpp
# define what the file uses from them), replaces
# the inline-assembly helpers (16-byte and 4-byte global loads, ldmatrix.x4, mma.sync m16n8k32
# s8) with host versions from the harness and points the dynamic shared memory at the emulator's
# buffer (kernel_common.cuh's cp.async comes from emu.hpp).
import re
import sys
s = open(sys.argv[1]).read()
s = s.replace('#include "kernel_common.cuh"\n', '')
s = s.replace('#include "pdl.cuh"\n', '')
for name in ['uint4 ld_stream16', 'uint32_t ld_nc32', 'void ldmatrix_x4']:
    m = re.search(r'__device__ __forceinline__ ' + re.escape(name) + r'\(', s)
    end = s.index('\n}\n', m.start()) + 3
    s = s[:m.start()] + s[end:]
m = re.search(r'template <bool ZERO>\n__device__ __forceinline__ void mma_s8\(', s)
end = s.index('\n}\n', m.start()) + 3
s = s[:m.start()] + 'EMU_GEMV_HELPERS\n' + s[end:]
s = re.sub(r'__launch_bounds__\((?:[^()]|\([^()]*\))*\)', '', s)
old = 'extern __shared__ __align__(16) uint8_t smem[];'
assert old in s
s = s.replace(old, 'uint8_t* smem = emu::g_dyn.data();')
assert 'extern __shared__' not in s and 'asm' not in s
open(sys.argv[2], 'w').write(s)
