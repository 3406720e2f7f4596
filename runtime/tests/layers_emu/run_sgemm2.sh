#!/usr/bin/env bash
# run_sgemm2.sh [--quick]: calib/exact_sgemm2.cuh (ODYSSEY_EXACT_SGEMM=2) on the CPU under emu.hpp
# against canonical_ref.hpp, bit for bit, all four transposes, edge tiles, K tails, aligned and
# unaligned operands (sgemm2_emu.cpp). No GPU. Last line: "sgemm2 emu: N/N ... PASS|FAIL".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rt=$(cd "$here/../.." && pwd)
out=${EMU_BUILD:-/tmp/odyssey-sgemm2-emu}
mkdir -p "$out"
g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Wall -Wextra -Wno-attributes -Wno-unknown-pragmas \
  -I"$here" -I"$rt/src" -I"$rt/include" \
  "$here/sgemm2_emu.cpp" -o "$out/sgemm2_emu" -lcudart
exec "$out/sgemm2_emu" "$@"
