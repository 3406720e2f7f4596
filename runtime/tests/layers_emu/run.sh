#!/usr/bin/env bash
# run.sh [--quick] [--only FAMILIES] [--seed N]: `odyssey-rt test layers` without a GPU. Builds
# runtime/src/executor/layers.cu and kv8.cu (rewritten by prep.py) and the unchanged test_layers.cpp as
# host C++ against emu.hpp, runs it, and prints the test's JSON on stdout and its lines on
# stderr. Needs g++ ≥ 12 (C++20), python3, the CUDA headers and libcudart (x86-64 only: the
# fiber switch is x86-64 assembly). --quick takes ~10 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rt=$(cd "$here/../.." && pwd)
out=${EMU_BUILD:-/tmp/odyssey-layers-emu}
mkdir -p "$out"
python3 "$here/prep.py" "$rt/src/executor/layers.cu" "$out/layers_emu.inc"
python3 "$here/prep.py" "$rt/src/executor/kv8.cu" "$out/kv8_emu.inc"
g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Wno-attributes \
  -I"$out" -I"$here" -I"$rt/src" -I"$rt/src/cli" -I"$rt/include" \
  "$here/main_emu.cpp" "$rt/src/json.cpp" -o "$out/emu_test" -lcudart
exec "$out/emu_test" "$@"
