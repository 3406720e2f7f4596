#!/usr/bin/env bash
# device-run.sh: one call on the GPU machine builds, tests and times the runtime, writing logs
# and JSON under $OUT (see runtime/NOTES.md). Run from the repository root:
#   ODY_BIN=bin/odyssey-linux-amd64 runtime/scripts/device-run.sh [build|test|sanitize|bench|sweep|profile|codec|nccl-dry|wgmma]...
# wgmma: the Hopper wgmma prefill kernel: build (its ptxas lines, SASS GMMA count), test
#   wgmma-probe, test gemm --configs wgmma_r128t128_s4 with ODYSSEY_WGMMA=1, bench gemm at
#   M = 256..8192 (WGMMA_M, WGMMA_SHAPES, WGMMA_ITERS); ends with "wgmma: PASS" or "wgmma: FAIL".
# codec: Flash Communication on one GPU: test codec (every Go case, kernels v3, v2 and v1),
#   compute-sanitizer memcheck + racecheck on a subset, bench codec (v3, v2 and v1 against the copy),
#   soak (SOAK_CALLS, default 100000 calls of 8 ranks).
# nccl-dry: the NCCL path on one GPU: launch-allreduce.sh --dry-run (a world of one), then two
#   processes sharing the GPU (NCCL may refuse: "Duplicate GPU detected"); NCCL_SIZES sets the sizes.
# The Go binary (cross-built: GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -o bin/odyssey-linux-amd64
# ./cmd/odyssey) writes the GEMM cases; this machine has no Go.
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/ody-out}
mkdir -p "$OUT"
B=runtime/build
ODY_BIN=${ODY_BIN:-bin/odyssey-linux-amd64}
CASES=/tmp/ody-gemm-cases
CCASES=/tmp/ody-codec-cases
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
  layers)
    stamp layers
    # The executor's layer kernels against host references, then their speed (docs/executor.md).
    $B/odyssey-rt test layers > "$OUT/test-layers.json" 2> "$OUT/test-layers.log"
    echo "test layers rc=$?"; grep -E "FAIL" "$OUT/test-layers.log" | head -30; grep -E "passed" "$OUT/test-layers.log" | tail -2
    $B/odyssey-rt bench layers --out "$OUT/bench-layers.json" > /dev/null 2> "$OUT/bench-layers.log"
    echo "bench layers rc=$?"; grep -E "copy|prefill|decode|rows" "$OUT/bench-layers.log" | head -90
    # Issue 14 goals at batch 1 (runtime/NOTES.md, "Decode step's small kernels"): one GOAL line each.
    awk '/^rows +(add_rmsnorm|swiglu) +batch +1 .* reg /{for(i=1;i<=NF;i++) if($i=="us") print "GOAL " $2 " batch 1 <= 3 us: " $(i-1) " us " ($(i-1)<=3?"ok":"MISS")}
         /^rows +rope_kv_32\/32 +batch +1 /{for(i=1;i<=NF;i++) if($i=="us") print "GOAL rope_kv batch 1 <= 2.5 us: " $(i-1) " us " ($(i-1)<=2.5?"ok":"MISS")}
         /^decode +batch +1 ctx +1024 heads 32\/32 .* fast\+q8 /{for(i=1;i<=NF;i++) if($i=="us") print "GOAL attention+o_quant MHA batch 1 ctx 1024 <= 8 us: " $(i-1) " us " ($(i-1)<=8?"ok":"MISS")}
         /^decode +batch +1 ctx +1024 heads 32\/8 .* fast /{for(i=1;i<=NF;i++) if($i=="of") print "GOAL GQA 32/8 batch 1 ctx 1024 >= 40% of copy: " $(i-1) " " (substr($(i-1),1,length($(i-1))-1)+0>=40?"ok":"MISS")}' "$OUT/bench-layers.log"
    ;;
  codec)
    stamp codec
    rm -rf $CCASES
    "$ODY_BIN" testdata codec-cases --out $CCASES > "$OUT/codec-cases.log" 2>&1 || { cat "$OUT/codec-cases.log"; exit 1; }
    $B/odyssey-rt test codec --cases $CCASES --kernels 3,2,1 > "$OUT/test-codec.json" 2> "$OUT/test-codec.log"
    echo "test codec rc=$?"; grep -E "FAIL" "$OUT/test-codec.log" | head -20; grep "passed" "$OUT/test-codec.log"
    # Sanitizers: one case per (N, bits, symmetry) corner, every kernel version; and a short soak
    # (the comparison kernel, the poisoning, the stream reuse).
    S=/tmp/ody-san-codec; rm -rf $S; mkdir -p $S
    python3 - "$CCASES" "$S" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(src, "manifest.json")))
want = ["n1_int8_g32_asym", "n2_int4_g64_sym", "n4_int8_g128_sym", "n8_int4_g128_asym", "n8_int8_g32_asym_grid16", "testvector"]
keep = []
for w in want:
    for c in m["cases"]:
        if w in c["name"] and c not in keep:
            keep.append(c); break
for c in keep: shutil.copy(os.path.join(src, c["file"]), dst)
json.dump({"version": 1, "cases": keep}, open(os.path.join(dst, "manifest.json"), "w"))
print("sanitizer subset:", " ".join(c["name"] for c in keep))
PY
    for tool in memcheck racecheck; do
      compute-sanitizer --tool $tool --error-exitcode 9 $B/odyssey-rt test codec --cases $S --kernels 3,2,1 > "$OUT/sanitizer-codec-$tool.log" 2>&1
      echo "compute-sanitizer $tool (test codec) rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test codec:" "$OUT/sanitizer-codec-$tool.log" | head -5
    done
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt soak allreduce --calls 50 --check-every 10 \
      > "$OUT/sanitizer-soak.log" 2>&1
    echo "compute-sanitizer memcheck (soak) rc=$?"; grep -E "ERROR SUMMARY|soak allreduce:" "$OUT/sanitizer-soak.log" | tail -2
    $B/odyssey-rt bench codec --kernels 3,2,1 ${CODEC_BENCH_ARGS:-} > "$OUT/bench-codec.json" 2> "$OUT/bench-codec.log"
    echo "bench codec rc=$?"; grep -E "^ *268435456 B" "$OUT/bench-codec.log"
    python3 -c 'import json,sys; [print("goal:", g["name"], "measured %.1f%%" % g["measured"], "met" if g["met"] else "NOT met") for g in json.load(open(sys.argv[1]))["goals"]]' "$OUT/bench-codec.json"
    $B/odyssey-rt soak allreduce --calls ${SOAK_CALLS:-100000} --ranks 8 --bits 8 --group 128 --timeout 120 \
      > "$OUT/soak.json" 2> "$OUT/soak.log"
    echo "soak int8 rc=$?"; tail -1 "$OUT/soak.log"
    $B/odyssey-rt soak allreduce --calls ${SOAK_CALLS_INT4:-10000} --ranks 8 --bits 4 --group 64 --sym --dtype bf16 \
      --width 4096 --timeout 120 >> "$OUT/soak.json" 2>> "$OUT/soak.log"
    echo "soak int4 sym bf16 rc=$?"; tail -1 "$OUT/soak.log"
    ;;
  nccl-dry)
    stamp nccl-dry
    if ! grep -q "^NCCL_LIBRARY:FILEPATH=/" $B/CMakeCache.txt 2>/dev/null || grep -q "^ODYSSEY_WITH_NCCL:BOOL=OFF" $B/CMakeCache.txt; then
      echo "nccl-dry: $B was built without NCCL (set NCCL_HOME and rerun build)"; grep -i nccl "$OUT/build.log" 2>/dev/null | head -3
    else
      NS=${NCCL_SIZES:-4K..256M:4}
      # A world of one: the real ncclSend/ncclRecv/ncclAllGather calls, to itself.
      runtime/scripts/launch-allreduce.sh --dry-run --gpus 1 --timeout 120 --out "$OUT/nccl-world1" \
        -- --sizes $NS --bits 8,4 --iters 20 > "$OUT/nccl-world1.log" 2>&1
      echo "nccl world of 1 rc=$?"; grep -E " B (nccl_|flashcomm_)| skipped|RANKS DIFFER|ERROR|error" "$OUT/nccl-world1.log" | head -40
      # Two processes on the one GPU: a real 2-rank communicator, if NCCL accepts it.
      NCCL_DEBUG=WARN runtime/scripts/launch-allreduce.sh --share-gpu 2 --timeout 120 --out "$OUT/nccl-shared2" \
        -- --sizes $NS --bits 8,4 --iters 20 > "$OUT/nccl-shared2.log" 2>&1
      echo "nccl 2 ranks sharing one GPU rc=$?"
      grep -hE "Duplicate GPU|invalid usage| B (nccl_|flashcomm_)|RANKS DIFFER|ERROR|launch-allreduce:" \
        "$OUT/nccl-shared2.log" "$OUT"/nccl-shared2/allreduce-rank*.log 2>/dev/null | head -40
    fi
    ;;
  wgmma)
    stamp wgmma
    # The Hopper wgmma prefill kernel (src/fastgemm_sm90.cu, runtime/NOTES.md "wgmma"). Builds
    # (ptxas lines of the new file), probes the operand layouts, tests every GEMM case through
    # it (forced and via the dispatch), benchmarks it beside the mma kernel and cuBLAS. Each part
    # runs even if an earlier one failed; the last line says PASS or FAIL.
    wg_fail=0
    cmake -S runtime -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ODY_ARCH:-90} \
      -DODYSSEY_PTXAS_VERBOSE=ON > "$OUT/build-wgmma.log" 2>&1 &&
      cmake --build $B -j 16 >> "$OUT/build-wgmma.log" 2>&1 || { tail -60 "$OUT/build-wgmma.log"; echo "wgmma: FAIL (build)"; exit 1; }
    grep -E "FastGEMM wgmma kernel" "$OUT/build-wgmma.log"
    # ptxas: registers, spills, shared memory of each wgmma instantiation, and any wgmma
    # serialization warning (C7510 and friends: the kernel still runs, slower).
    grep -E -A3 "Compiling entry function '.*w4a8_wgmma_kernel" "$OUT/build-wgmma.log" | grep -E "Compiling|registers|spill|smem" | sed 's/_ZN7odyssey[^ ]*w4a8_wgmma_kernelILi\([0-9]\)ELb\([01]\)E[^ ]*/w4a8_wgmma_kernel<spg=\1,int=\2>/'
    grep -iE "warning.*(wgmma|C75)" "$OUT/build-wgmma.log" | sort | uniq -c | head -10
    obj=$(find $B -name 'fastgemm_sm90.cu.o' | head -1)
    [ -n "$obj" ] && cuobjdump --dump-sass "$obj" > "$OUT/sass-wgmma.txt" 2>&1 &&
      echo "SASS: $(grep -cE 'GMMA' "$OUT/sass-wgmma.txt") GMMA, $(grep -cE 'LDL|STL' "$OUT/sass-wgmma.txt") LDL/STL, $(grep -cE 'WARPSYNC|BAR' "$OUT/sass-wgmma.txt") BAR/WARPSYNC lines"
    $B/odyssey-rt test wgmma-probe > "$OUT/wgmma-probe.json" 2> "$OUT/wgmma-probe.log"
    rc=$?; echo "wgmma-probe rc=$rc"; head -60 "$OUT/wgmma-probe.log"; [ $rc -eq 0 ] || wg_fail=1
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test wgmma-probe > /dev/null 2> "$OUT/sanitizer-wgmma-probe.log"
    echo "compute-sanitizer memcheck (wgmma-probe) rc=$?"; grep -E "ERROR SUMMARY" "$OUT/sanitizer-wgmma-probe.log" | head -2
    if [ ! -f $CASES/manifest.json ]; then
      "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; wg_fail=1; }
    fi
    # ODYSSEY_WGMMA=1: the dispatch routes every M >= 64 case through the wgmma config too.
    ODYSSEY_WGMMA=1 timeout 300 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_r128t128_s4 \
      > "$OUT/test-gemm-wgmma.json" 2> "$OUT/test-gemm-wgmma.log"
    rc=$?; echo "test gemm (wgmma) rc=$rc"; [ $rc -eq 0 ] || wg_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma.log" | head -40; grep "passed" "$OUT/test-gemm-wgmma.log"
    echo "runs forced through wgmma_r128t128_s4: $(grep -oE '"kernel": *"[a-z]+/wgmma_r128t128_s4' "$OUT/test-gemm-wgmma.json" | wc -l)"
    timeout 420 $B/odyssey-rt bench gemm --m ${WGMMA_M:-256,1024,4096,8192} --shapes ${WGMMA_SHAPES:-4096x4096,8192x28672,28672x8192} \
      --iters ${WGMMA_ITERS:-30} --driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)" \
      --commit "${ODY_COMMIT:-unknown}" --out "$OUT/bench-gemm-wgmma.json" --md "$OUT/bench-gemm-wgmma.md" \
      > /dev/null 2> "$OUT/bench-gemm-wgmma.log"
    echo "bench (wgmma) rc=$?"; grep -E "^goal" "$OUT/bench-gemm-wgmma.log"
    grep -E "w4a8_int( |_wgmma|_mma)|w4a8_float_wgmma|w4a8_float_mma|cublas" "$OUT/bench-gemm-wgmma.md" | grep -E "\| (256|1024|4096|8192) \|" | cut -d'|' -f2-6,10 | head -70
    [ $wg_fail -eq 0 ] && echo "wgmma: PASS (probe and test gemm bit-exact)" || echo "wgmma: FAIL (see above)"
    ;;
  *) echo "unknown step $s"; exit 2 ;;
  esac
done
stamp done
# At most 8 files come back: the first 7 of this list that exist stay as they are, everything else
# (other logs, the launcher's folders) goes into one archive.
keep=()
for f in test-layers.json bench-layers.json bench-gemm.json bench-codec.json test-codec.json soak.json test-gemm.json bench-gemm.md sweep-gemm.json \
  ncu-m1.txt ncu-m4096.txt; do
  [ -f "$OUT/$f" ] && [ ${#keep[@]} -lt 7 ] && keep+=("$f")
done
rest=()
for f in $(cd "$OUT" && ls -A); do
  [ "$f" = logs.tar.gz ] && continue
  printf '%s\n' "${keep[@]}" | grep -qxF "$f" || rest+=("$f")
done
rm -f "$OUT/logs.tar.gz"
[ ${#rest[@]} -gt 0 ] && tar -czf "$OUT/logs.tar.gz" -C "$OUT" "${rest[@]}" && (cd "$OUT" && rm -rf -- "${rest[@]}")
