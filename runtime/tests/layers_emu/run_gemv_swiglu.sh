#!/usr/bin/env bash
# run_gemv_swiglu.sh: the fused SwiGLU epilogue of gemv_mma.cu against its plain kernel + a host
# SwiGLU, without a GPU (gemv_swiglu_emu.cpp; emu.hpp runs the kernels as fibers). ~1 minute.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rt=$(cd "$here/../.." && pwd)
out=${EMU_BUILD:-/tmp/odyssey-gemv-emu}
mkdir -p "$out"
python3 "$here/prep_gemv_mma.py" "$rt/src/gemv_mma.cu" "$out/gemv_mma_emu.inc"
g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Wno-attributes \
  -I"$out" -I"$here" -I"$rt/src" -I"$rt/include" \
  "$here/gemv_swiglu_emu.cpp" -o "$out/gemv_swiglu_emu" -lcudart
exec "$out/gemv_swiglu_emu" "$@"
