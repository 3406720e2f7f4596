#!/usr/bin/env bash
# device-run.sh: one call on the GPU machine builds, tests and times the runtime, writing logs
# and JSON under $OUT (see runtime/NOTES.md). Run from the repository root:
#   ODY_BIN=bin/odyssey-linux-amd64 runtime/scripts/device-run.sh [build|test|sanitize|bench|sweep]...
# The Go binary (cross-built: GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -o bin/odyssey-linux-amd64
# ./cmd/odyssey) writes the GEMM cases; this machine has no Go.
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/ody-out}
mkdir -p "$OUT"
B=runtime/build
ODY_BIN=${ODY_BIN:-bin/odyssey-linux-amd64}
CASES=/tmp/ody-gemm-cases
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build test bench)
t0=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
for s in "${steps[@]}"; do
  case $s in
  build)
    stamp build
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv > "$OUT/nvidia-smi.txt" 2>&1
    nvcc --version | tail -2 >> "$OUT/nvidia-smi.txt"
    cmake -S runtime -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ODY_ARCH:-90} \
      -DODYSSEY_PTXAS_VERBOSE=ON > "$OUT/build.log" 2>&1 &&
      cmake --build $B -j 16 >> "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
    grep -E "registers|spill" "$OUT/build.log" | sort | uniq -c | sort -rn | head -5
    ;;
  test)
    stamp test
    rm -rf $CASES
    "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; exit 1; }
    $B/odyssey-rt test gemm --cases $CASES > "$OUT/test-gemm.json" 2> "$OUT/test-gemm.log"
    echo "test gemm rc=$?"; grep -A4 -E "FAIL" "$OUT/test-gemm.log" | head -40; grep "passed" "$OUT/test-gemm.log"
    (cd $B && ODYSSEY_GEMM_CASES=$CASES ctest --output-on-failure > "$OUT/ctest.log" 2>&1; echo "ctest rc=$?"; tail -5 "$OUT/ctest.log")
    ;;
  sanitize)
    stamp sanitize
    # A small subset of the cases keeps the sanitizers' run short.
    S=/tmp/ody-san-cases; rm -rf $S; mkdir -p $S
    python3 - "$CASES" "$S" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(src, "manifest.json")))
keep = [c for c in m["cases"] if os.path.getsize(os.path.join(src, c["file"])) < 300_000][:12]
for c in keep: shutil.copy(os.path.join(src, c["file"]), dst)
json.dump({"version": 1, "cases": keep}, open(os.path.join(dst, "manifest.json"), "w"))
PY
    for tool in memcheck racecheck; do
      compute-sanitizer --tool $tool --error-exitcode 9 $B/odyssey-rt test gemm --cases $S > "$OUT/sanitizer-$tool.log" 2>&1
      echo "compute-sanitizer $tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error" "$OUT/sanitizer-$tool.log" | head -5
    done
    ;;
  bench)
    stamp bench
    $B/odyssey-rt bench gemm --driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)" \
      --commit "${ODY_COMMIT:-unknown}" --out "$OUT/bench-gemm.json" --md "$OUT/bench-gemm.md" ${BENCH_ARGS:-} \
      > /dev/null 2> "$OUT/bench-gemm.log"
    echo "bench rc=$?"; grep -E "^goal" "$OUT/bench-gemm.log"
    ;;
  sweep)
    stamp sweep
    $B/odyssey-rt bench gemm --sweep --iters 30 ${SWEEP_ARGS:---shapes 4096x4096,8192x28672 --m 1,16,64,256,4096} \
      --out "$OUT/sweep-gemm.json" > /dev/null 2> "$OUT/sweep-gemm.log"
    echo "sweep rc=$?"; grep -E "_best" "$OUT/sweep-gemm.log" | head -40
    ;;
  profile)
    stamp profile
    # Nsight Compute on one FastGEMM launch per M (clocks left alone: --clock-control none).
    for m in ${PROFILE_M:-1 4096}; do
      ncu --clock-control none -k regex:w4a8_kernel --launch-skip 12 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
        --section MemoryWorkloadAnalysis --section SchedulerStats --section ComputeWorkloadAnalysis \
        $B/odyssey-rt bench gemm --shapes ${PROFILE_SHAPE:-8192x28672} --m $m --iters 5 > "$OUT/ncu-m$m.txt" 2>&1
      echo "ncu M=$m rc=$?"; grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Block Limit|Stall|Warp Cycles Per Issued" "$OUT/ncu-m$m.txt" | head -20
    done
    ;;
  *) echo "unknown step $s"; exit 2 ;;
  esac
done
stamp done
# At most 8 files come back: logs go into one archive.
tar -czf "$OUT/logs.tar.gz" -C "$OUT" $(cd "$OUT" && ls | grep -vE '^(logs.tar.gz|bench-gemm.json|bench-gemm.md|sweep-gemm.json|test-gemm.json|ncu-m1.txt|ncu-m4096.txt)$') 2>/dev/null &&
  (cd "$OUT" && ls | grep -vE '^(logs.tar.gz|bench-gemm.json|bench-gemm.md|sweep-gemm.json|test-gemm.json|ncu-m1.txt|ncu-m4096.txt)$' | xargs rm -f)
