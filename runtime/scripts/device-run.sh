#!/usr/bin/env bash
# device-run.sh: one call on the GPU machine builds, tests and times the runtime, writing logs
# and JSON under $OUT (see runtime/NOTES.md). Run from the repository root:
#   ODY_BIN=bin/odyssey-linux-amd64 runtime/scripts/device-run.sh [build|test|attn|layers|prefill-rows|w8a8|calib32|calib-exact|sanitize|bench|decode-gemm|decode-sanitize|sweep|profile|codec|nccl-dry|wgmma|wgmma4|wgmma5|fuse|w4a16]...
# wgmma4: wgmma v4 (warp-specialized; config wgmma_ws_r128t128_v4) and config 21 (v4c2: v4 on
#   2-CTA clusters with X multicast): ptxas lines (0 spill), test wgmma-probe + memcheck, test gemm
#   forced and through the dispatch (ODYSSEY_WGMMA_V4=1, =c2), bench
#   at the 7B shapes (M = 1024, 4096; WGMMA4_M, WGMMA4_SHAPES, WGMMA4_ITERS) and 8192x28672 M=4096,
#   a "v2 us, v4 us, v4/v2, v4c2 us, c2/v2, cuBLAS FP16, cuBLASLt INT8" table; WGMMA4_NCU=1 adds one ncu --set full
#   of v4 at 4096x4096 M=4096; ends with "wgmma4: PASS" or "wgmma4: FAIL".
# wgmma5: wgmma v5 (config wgmma_ws_r128t128_v5: v4 on a persistent grid) and issue 12's
#   diagnostic variants of v4/v5 (ODYSSEY_V4_DIAG): ptxas lines (v5 and each diag: registers,
#   spills), probe + memcheck (ODYSSEY_WGMMA_V5=1), test gemm forced through v5 and through the
#   dispatch, bench v4 / v5 / cuBLAS FP16 / cuBLASLt INT8, FP8 at the 7B shapes (M = 1024, 4096) and
#   8192x28672 M=4096, every diag row and the CLOCK lines at 4096x4096 and 8192x28672 M=4096,
#   a "v4 us, v5 us, v4/v5, fp16, int8, fp8, fp16/best" table and a diag table; ends with
#   "wgmma5: PASS" or "wgmma5: FAIL" (PASS: no spill in v5, probe, memcheck, bit-exact, bench ran);
#   WGMMA5_NCU=1 adds one ncu --set full of v5 at 4096x4096 M=4096.
# wgmma: the Hopper wgmma prefill kernel, v1, v2 and v3: build (their ptxas lines, C7519 count per
#   version, SASS GMMA count), test wgmma-probe (all three), test gemm --configs wgmma_r128t128_s4,
#   _v2 and _v3 with ODYSSEY_WGMMA=1 (ODYSSEY_WGMMA_V2=0/1, ODYSSEY_WGMMA_V3=1 route the dispatch's
#   runs through each), bench gemm on the 7B and 70B shapes at M = 1024, 4096 (WGMMA_M,
#   WGMMA_SHAPES, WGMMA_ITERS) and a "wgmma v2 vs v3" table; with
#   WGMMA_NCU=1 one ncu --set full of the v2 kernel at 8192x28672 M=4096 (ncu-wgmma2.txt); ends
#   with "wgmma: PASS" or "wgmma: FAIL".
# attn: the fused decode attention kernel: test layers --only decode,refuse, bench layers --only
#   decode, one ATTN line per batch/context/heads (fused vs split in the same run), "attn: PASS|FAIL".
# w8a8: odyssey-rt test w8a8 (the W8A8 kernels against a host reference) and their bench gemm rows.
# calib32: odyssey-rt test calib32 (the fp32 calibration forward, statistics and fake-quant linears
#   against a host reference; then the 7B-chunk bench line with the projected 7B collect time),
#   compute-sanitizer memcheck on it (--no-bench); ends with "calib32: PASS" or "calib32: FAIL".
# calib-exact: odyssey-rt test calib-exact (--precision exact's kernels vs their host references
#   and vs the Go pass's results in tests/data/calib_exact_golden.bin, bit for bit; every sgemm
#   case through both exact SGEMMs, 1 and 2 = exact_sgemm2.cuh; bench rows: old vs sgemm2 (NT and
#   TN, outputs compared bit for bit) vs cuBLAS fp32), the golden again with ODYSSEY_EXACT_SGEMM=1
#   (the Go pass's layer outputs and XᵀX through the first SGEMM; sgemm2 is the default), test
#   calib32 --no-bench with ODYSSEY_W4A8_INT_FUSED=0 (the per-group integer linear; the fused
#   group loop is the default), sgemm2's and
#   int_linear's ptxas lines (0 spill),
#   test_calib_exact_host, memcheck (--no-bench); ends with "calib-exact kernels: PASS" or "... FAIL".
# decode-gemm: test gemm (every case), then bench gemm at M = 1, 2, 4, 8, 16 on the 7B and 70B
#   shapes with every decode GEMV config as a row, PDL on and off, and a summary table.
# decode-sanitize: compute-sanitizer memcheck and racecheck on four gemv_mma corner cases.
# codec: Flash Communication on one GPU: test codec (every Go case, kernels v7 down to v1),
#   compute-sanitizer memcheck + racecheck on a subset (every version), bench codec
#   (CODEC_KERNELS, default 7,6,5 side by side against the copy of the same run; --sym too), soak
#   (SOAK_CALLS, default 100000 calls of 8 ranks, the default kernels; INT4 g64 symmetric bf16;
#   INT4 g128 on kernels 7), and last "ISSUE 9 v7: <% of copy per stage> PASS|FAIL" (every stage of
#   the first listed version, INT8 and INT4, asymmetric, at 256 MiB, against 80% of that run's copy).
# prefill-rows: the prefill row kernels v2 (issue 14: norm, swiglu, o_proj quantization, rope):
#   their ptxas lines, test layers --only rows2,norm,swiglu,rope,refuse (v2 byte-equal to v1),
#   memcheck on --only rows2 --quick, bench layers --only prefill-rows,rows (v1 vs v2, rows 1024
#   and 8192; 256 for the threshold) and the PREFILL-ROWS table; ends with "prefill-rows: PASS" or
#   "prefill-rows: FAIL".
# fuse: the decode gate/up + SwiGLU fusion (issue 14): test layers --only fuse (byte-equal to the
#   unfused path), memcheck on its quick set, bench layers --only fuse (FUSE lines: unfused vs
#   fused µs at batch 1, 4, 8); ends with "fuse: PASS" or "fuse: FAIL".
# gemv16: the decode GEMVs (issues 12 and 14): test gemv16 (FP16 GEMV vs float64, cuBLAS on the same
#   bound), test gemm on the W4A16 cases (w4a16_gemv on every M <= 8 case), compute-sanitizer memcheck
#   on test gemv16 --quick, then bench gemm at M = 1, 2, 4 on the 7B shapes, 8192x28672, 28672x8192 and
#   the lm_head 32000x4096 (f16_gemv, f16_gemv_f32out, w4a16 = dispatch, w4a16_gemv, w4a16_mma beside
#   cuBLAS FP16 and the floor), once with PDL and the FP16/W4A16 GEMV rows again with ODYSSEY_PDL=0.
# w4a16: the W4A16 decode GEMV 2 (w4a16_gemv2_s2/_s4/_s8, M <= 16): test gemm on the w4a16 cases (every
#   config, s2p included, then the dispatch with ODYSSEY_W4A16_GEMV2=1), memcheck on two corners, bench gemm --only w4a16
#   at M = 1, 4, 8, 16 on six decode shapes (W4A16_SHAPES, W4A16_M, W4A16_ITERS), a table (old, each GEMV,
#   new = the GEMV 2 dispatch, cuBLAS FP16, xFP16, % floor) and the issue-12 W4A16 goal lines; ends with
#   "w4a16: PASS" or "w4a16: FAIL".
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
. "$(dirname "$0")/commit-of-binary.sh"
COMMIT=$(ody_commit "$ODY_BIN")
CASES=/tmp/ody-gemm-cases
CCASES=/tmp/ody-codec-cases
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build test bench)
t0=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
attn_summary() {  # $1: a bench layers log. Fused vs split (same run) per batch/context/heads.
  awk '/^decode /{k=$3" "$5" "$7; for(i=1;i<=NF;i++) if($i=="us") t[k" "$(i-2)]=$(i-1); keys[k]=1}
       END{for(k in keys){split(k,a," "); if(!((k" fused") in t) || !((k" split") in t)) continue;
         c=((k" fused+q8-cold") in t) ? sprintf("; cold+q8 fused %.2f split %.2f (x%.2f)", t[k" fused+q8-cold"], t[k" split+q8-cold"], t[k" split+q8-cold"]/t[k" fused+q8-cold"]) : "";
         h=((k" fused-h1") in t) ? sprintf("; h1 %.2f h2 %.2f", t[k" fused-h1"], t[k" fused-h2"]) : "";
         ch=((k" fused-c64") in t) ? sprintf("; c64 %.2f c128 %.2f", t[k" fused-c64"], t[k" fused-c128"]) : "";
         printf "ATTN b=%s ctx=%s heads=%s: fused %.2f us split %.2f (x%.2f); +q8 fused %.2f split %.2f (x%.2f)%s%s%s  %s\n",
           a[1], a[2], a[3], t[k" fused"], t[k" split"], t[k" split"]/t[k" fused"], t[k" fused+q8"], t[k" split+q8"],
           t[k" split+q8"]/t[k" fused+q8"], c, h, ch, (t[k" fused+q8"] <= t[k" split+q8"]*1.02 ? "ok" : "FUSED SLOWER")}}' "$1" |
    sort -t= -k2,2n -k3,3n
}
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
  calib32)
    stamp calib32
    $B/odyssey-rt test calib32 > "$OUT/test-calib32.json" 2> "$OUT/test-calib32.log"
    rc=$?
    grep -E "FAIL|bench calib32" "$OUT/test-calib32.log" | head -40
    if command -v compute-sanitizer > /dev/null; then
      compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test calib32 --no-bench \
        > "$OUT/memcheck-calib32.log" 2>&1
      mrc=$?; echo "memcheck calib32 rc=$mrc"; tail -3 "$OUT/memcheck-calib32.log"
      [ $mrc = 0 ] || rc=1
    fi
    echo "calib32: $([ $rc = 0 ] && echo PASS || echo FAIL)"
    ;;
  calib-exact)
    # --precision exact's kernels against their host references and the Go pass's own results
    # (tests/data/calib_exact_golden.bin), bit for bit; bench rows: exact SGEMM vs cuBLAS.
    stamp calib-exact
    $B/odyssey-rt test calib-exact > "$OUT/test-calib-exact.log" 2>&1
    rc=$?
    grep -E "FAIL|bench calib-exact" "$OUT/test-calib-exact.log" | head -40
    grep -c "bit-identical" "$OUT/test-calib-exact.log" | sed 's/^/calib-exact bit-identical checks: /'
    grep -c "^calib-exact sgemm2 .*bit-identical" "$OUT/test-calib-exact.log" | sed 's/^/calib-exact sgemm2 bit-identical checks (want 127: 124 cases + 3 bench): /'
    # The whole test again with the dispatch on the first SGEMM (sgemm2 is the default):
    # forward_chunk and the statistics of the golden (Go's own layer outputs and XᵀX) then run
    # through the 64×64 kernel, which stays as the A/B baseline.
    ODYSSEY_EXACT_SGEMM=1 $B/odyssey-rt test calib-exact --no-bench > "$OUT/test-calib-exact1.log" 2>&1 || rc=1
    grep -E "FAIL" "$OUT/test-calib-exact1.log" | head -20
    echo "calib-exact with ODYSSEY_EXACT_SGEMM=1: $(grep -c "bit-identical" "$OUT/test-calib-exact1.log") bit-identical, $(grep -c "FAIL" "$OUT/test-calib-exact1.log") FAIL lines"
    # The fake-quant W4A8 integer linears with the per-group loop (ODYSSEY_W4A8_INT_FUSED=0; the
    # fused loop is the default): test calib32's bit-exact int-linear cases against their
    # integer reference.
    ODYSSEY_W4A8_INT_FUSED=0 $B/odyssey-rt test calib32 --no-bench > "$OUT/test-calib32-pergroup.json" 2> "$OUT/test-calib32-pergroup.log" || rc=1
    grep -E "FAIL" "$OUT/test-calib32-pergroup.log" | head -10
    echo "calib32 with ODYSSEY_W4A8_INT_FUSED=0: $(tail -1 "$OUT/test-calib32-pergroup.log")"
    # sgemm2's four instantiations (-Xptxas -v in the build log): registers and spills (want 0).
    if [ -f "$OUT/build.log" ]; then
      grep -E -A4 "Compiling entry function '.*(sgemm2|int_linear)_kernel" "$OUT/build.log" | grep -E "Compiling|spill|registers" |
        awk '/Compiling/{k=($0 ~ /int_linear/) ? "int_linear" : "sgemm2"} /spill/{sp=$5+$9} /registers/{n++; printf "ptxas %s: %s regs, %d spill bytes\n", k, $5, sp; if (sp) bad=1} END{if (!n) print "ptxas sgemm2: no lines (build ran in another call)"; exit bad}' || rc=1
    fi
    [ -x $B/test_calib_exact_host ] && { $B/test_calib_exact_host runtime/tests/data/calib_exact_golden.bin | tail -1 || rc=1; }
    if command -v compute-sanitizer > /dev/null; then
      compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test calib-exact --no-bench \
        > "$OUT/memcheck-calib-exact.log" 2>&1
      mrc=$?; echo "memcheck calib-exact rc=$mrc"; tail -2 "$OUT/memcheck-calib-exact.log"
      [ $mrc = 0 ] || rc=1
    fi
    echo "calib-exact kernels: $([ $rc = 0 ] && echo PASS || echo FAIL)"
    ;;
  w8a8)
    # The W8A8 kernels (w8a8.cu): random cases against the host reference (both paths bit-exact),
    # then their bench rows beside cuBLASLt INT8 and cuBLAS FP16 on the 7B shapes.
    stamp w8a8
    $B/odyssey-rt test w8a8 > "$OUT/test-w8a8.json" 2> "$OUT/test-w8a8.log"
    echo "test w8a8 rc=$?"; grep -E "FAIL|^    " "$OUT/test-w8a8.log" | head -30; grep "passed" "$OUT/test-w8a8.log"
    $B/odyssey-rt bench gemm --shapes ${W8A8_SHAPES:-4096x4096,11008x4096,4096x11008,8192x28672} --m ${W8A8_M:-1,4,8,16,64,512,4096} \
      --iters 30 --out "$OUT/bench-w8a8.json" > /dev/null 2> "$OUT/bench-w8a8.log"
    echo "bench w8a8 rc=$?"; grep -E " (w8a8[a-z_0-9]*|cublaslt_int8|cublas_fp16) " "$OUT/bench-w8a8.log"
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
      --commit "$COMMIT" --out "$OUT/bench-gemm.json" --md "$OUT/bench-gemm.md" ${BENCH_ARGS:-} \
      > /dev/null 2> "$OUT/bench-gemm.log"
    echo "bench rc=$?"; grep -E "^goal" "$OUT/bench-gemm.log"
    ;;
  decode-gemm)
    stamp decode-gemm
    # The decode GEMVs (gemv_w4, gemv_mma_s2/s4/s8) for M ≤ 16: every GEMM case bit-exact (each
    # M ≤ 16 case through every GEMV config that takes it, splits 0 and 1, and the dispatch),
    # then bench gemm on the 7B and 70B shapes at M = 1, 2, 4, 8, 16 with PDL on (the default)
    # and off, each GEMV config a row beside the dispatch, cuBLAS FP16, cuBLASLt INT8/FP8 and
    # the floor. The summary prints, per shape and M, the fastest GEMV config (what the dispatch
    # table of fastgemm_dispatch.cpp should hold) and the issue-12 decode goals.
    rm -rf $CASES
    "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; exit 1; }
    $B/odyssey-rt test gemm --cases $CASES > "$OUT/test-gemm.json" 2> "$OUT/test-gemm.log"
    echo "test gemm rc=$?"; grep -A4 -E "FAIL" "$OUT/test-gemm.log" | head -40; grep "passed" "$OUT/test-gemm.log"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=[c for c in d.get("results", d.get("cases", [])) if "gemv_mma" in str(c.get("kernel",""))]; print("gemv_mma runs: %d, failed: %d" % (len(r), sum(1 for c in r if not c.get("passed", c.get("ok", False)))))' "$OUT/test-gemm.json" 2>&1 | tail -1
    DSHAPES=${DECODE_SHAPES:-4096x4096,12288x4096,22016x4096,4096x11008,8192x28672,28672x8192}
    for pdl in 1 0; do
      f=bench-decode$([ $pdl = 0 ] && echo -nopdl).json
      ODYSSEY_PDL=$pdl $B/odyssey-rt bench gemm --shapes $DSHAPES --m ${DECODE_M:-1,2,4,8,16} --iters ${DECODE_ITERS:-50} \
        --driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)" --commit "$COMMIT" \
        --out "$OUT/$f" > /dev/null 2> "$OUT/${f%.json}.log"
      echo "bench decode (ODYSSEY_PDL=$pdl) rc=$?"
    done
    python3 - "$OUT/bench-decode.json" "$OUT/bench-decode-nopdl.json" <<'PY'
import json, sys
on = json.load(open(sys.argv[1]))
try: off = json.load(open(sys.argv[2]))
except Exception: off = {"rows": []}
def rows(d):
    t = {}
    for r in d["rows"]:
        if r.get("ok"): t[(r["n"], r["k"], r["m"], r["kernel"])] = r
    return t
a, b = rows(on), rows(off)
keys = sorted({(n, k, m) for (n, k, m, _) in a})
gemvs = ["w4a8_int_gemv_w4", "w4a8_int_gemv_mma_s2", "w4a8_int_gemv_mma_s4", "w4a8_int_gemv_mma_s8"]
print("N x K, M: dispatch(config) | gemv_w4 mma_s2 mma_s4 mma_s8 (us, PDL on; s4 PDL off) | cuBLAS fp16 | floor | xFP16 | /floor")
for (n, k, m) in keys:
    d = a.get((n, k, m, "w4a8_int")); fp = a.get((n, k, m, "cublas_fp16"))
    if not d: continue
    g = ["%6.2f" % a[(n, k, m, x)]["us"] if (n, k, m, x) in a else "   -  " for x in gemvs]
    s4off = b.get((n, k, m, "w4a8_int_gemv_mma_s4"))
    best = min((a[(n, k, m, x)]["us"], x[9:]) for x in gemvs if (n, k, m, x) in a)
    print("%5dx%-5d M=%-2d %6.2f (%s) | %s | s4 nopdl %s | fp16 %6.2f | floor %5.2f | %4.2fx | %4.2f | best %s" % (
        n, k, m, d["us"], d["note"].split("/")[0], " ".join(g), "%6.2f" % s4off["us"] if s4off else "  -  ",
        fp["us"] if fp else 0, d["floor_us"], (fp["us"] / d["us"]) if fp else 0, d["us"] / d["floor_us"], best[1]))
for gl in on.get("goals", []):
    print("goal:", gl.get("name"), "target", gl.get("target"), "measured %.2f" % gl.get("measured", 0), "met" if gl.get("met") else "NOT met", gl.get("detail", ""))
PY
    ;;
  decode-sanitize)
    stamp decode-sanitize
    [ -f $CASES/manifest.json ] || { "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; exit 1; }; }
    # memcheck and racecheck on the gemv_mma corners: M = 8 and 9 (one and two tile halves), a
    # partial last block, groups of 32 (one K block ahead), and M = 16 at K = 11008 (x staged
    # in double-buffered chunks). test gemm runs every config on them, so keep it to these.
    S=/tmp/ody-san-decode; rm -rf $S; mkdir -p $S
    python3 - "$CASES" "$S" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(src, "manifest.json")))
want = ["w4a8_m8_n200_k512_g128", "w4a8_m9_n100_k512_g32", "w4a8_m16_n200_k512_pc", "w4a8_m16_n40_k11008"]
keep = [c for c in m["cases"] if any(c["name"].startswith(w) for w in want)]
for c in keep: shutil.copy(os.path.join(src, c["file"]), dst)
json.dump({"version": 1, "cases": keep}, open(os.path.join(dst, "manifest.json"), "w"))
print("sanitizer subset:", " ".join(c["name"] for c in keep))
PY
    for tool in memcheck racecheck; do
      timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $B/odyssey-rt test gemm --cases $S > "$OUT/sanitizer-decode-$tool.log" 2>&1
      echo "compute-sanitizer $tool (gemv_mma corners) rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test gemm:" "$OUT/sanitizer-decode-$tool.log" | head -3
    done
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
    echo "bench layers rc=$?"; grep -E "copy|prefill|decode|rows" "$OUT/bench-layers.log" | head -200
    # Issue 14's per-kernel decode goals: bench layers evaluates them (its JSON "goals" list).
    grep -E "^goal " "$OUT/bench-layers.log"
    # The fused decode kernel against the former split pair, per shape (ATTN lines).
    attn_summary "$OUT/bench-layers.log"
    ;;
  attn)
    stamp attn
    # Decode attention (issue 14, branch attn): the fused kernel (split + combine + o_proj's int8
    # input in one grid) against the host reference and the former split pair (same shapes and
    # seeds), then bench layers' decode rows of both (warm, and cold = K/V from DRAM).
    $B/odyssey-rt test layers --only decode,refuse > "$OUT/test-attn.json" 2> "$OUT/test-attn.log"; trc=$?
    echo "test layers (decode) rc=$trc"; grep -E "FAIL" "$OUT/test-attn.log" | head -30; grep -E "passed" "$OUT/test-attn.log" | tail -1
    $B/odyssey-rt bench layers --only decode --out "$OUT/bench-attn.json" > /dev/null 2> "$OUT/bench-attn.log"; brc=$?
    echo "bench layers (decode) rc=$brc"; grep -E "copy" "$OUT/bench-attn.log"
    grep -E "^goal decode" "$OUT/bench-attn.log"
    attn_summary "$OUT/bench-attn.log"
    if [ $trc -eq 0 ] && [ $brc -eq 0 ]; then echo "attn: PASS"; else echo "attn: FAIL"; fi
    ;;
  fuse)
    stamp fuse
    # Issue 14 decode fusion (gemv_mma.cu w4a8_gemv_swiglu): gate/up GEMV + SwiGLU + down_proj's
    # int8 input in one kernel, byte-equal to the dispatch's GEMV + layers::swiglu; memcheck on
    # the quick set (the per-token ticket's last block reads every block's y32); then the bench
    # rows fused vs unfused in the same run (FUSE lines).
    $B/odyssey-rt test layers --only fuse > "$OUT/test-fuse.json" 2> "$OUT/test-fuse.log"
    frc=$?
    echo "test layers --only fuse rc=$frc"; grep -E "FAIL" "$OUT/test-fuse.log" | head -20; grep -E "passed" "$OUT/test-fuse.log" | tail -1
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test layers --only fuse --quick > /dev/null 2> "$OUT/sanitizer-fuse.log"
    mrc=$?
    echo "compute-sanitizer memcheck (test layers --only fuse --quick) rc=$mrc"; grep -E "ERROR SUMMARY" "$OUT/sanitizer-fuse.log" | tail -1
    $B/odyssey-rt bench layers --only fuse --iters 50 --out "$OUT/bench-fuse.json" > /dev/null 2> "$OUT/bench-fuse.log"
    echo "bench layers --only fuse rc=$?"; grep -E "^FUSE|gate_up" "$OUT/bench-fuse.log"
    [ $frc = 0 ] && [ $mrc = 0 ] && echo "fuse: PASS" || echo "fuse: FAIL"
    ;;
  prefill-rows)
    stamp prefill-rows
    # Issue 14 prefill row kernels v2 (layers.cu, "Prefill row kernels, v2"; runtime/NOTES.md, last
    # section): the v2 kernels' ptxas lines (0 spill expected), test layers --only rows2 (v2 vs v1
    # byte-equal at rows 1024 and small/odd shapes, quantize_rows vs its reference, the default path
    # vs the host references at prefill sizes) with the norm/swiglu/rope/refuse families (1000 rows:
    # v2 by default; decode sizes: v1), memcheck on --only rows2 --quick, bench layers --only
    # prefill-rows,rows (v1 vs v2 in the same run at rows 1024 and 8192; the decode rows, unchanged
    # kernels, for comparison with earlier runs), a PREFILL-ROWS table. FAIL: a test or memcheck
    # failure, or v2 more than 5% slower than v1 on a row (then ODYSSEY_PREFILL_ROWS_V2=0 is the
    # switch back).
    awk '/Function properties for/{n=$NF; w=(n ~ /6layers/ && n ~ /v2_/)} w && /spill stores/{sp=$0}
         w && /Used [0-9]+ registers/{sub(/.*layers_cu_[0-9a-f]+/, "", n); printf "ptxas %-44s %s |%s\n", substr(n,1,44), $5" regs", sp; w=0}' \
      "$OUT/build.log" | sort -u
    $B/odyssey-rt test layers --only rows2,norm,swiglu,rope,refuse > "$OUT/test-prefill-rows.json" 2> "$OUT/test-prefill-rows.log"
    prc=$?
    echo "test layers --only rows2,norm,swiglu,rope,refuse rc=$prc"; grep -E "FAIL" "$OUT/test-prefill-rows.log" | head -20
    grep -cE " ok$" "$OUT/test-prefill-rows.log" | sed 's/^/cases ok: /'; grep -E "passed" "$OUT/test-prefill-rows.log" | tail -1
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test layers --only rows2 --quick > /dev/null 2> "$OUT/sanitizer-prefill-rows.log"
    pmc=$?
    echo "compute-sanitizer memcheck (test layers --only rows2 --quick) rc=$pmc"; grep -E "ERROR SUMMARY" "$OUT/sanitizer-prefill-rows.log" | tail -1
    $B/odyssey-rt bench layers --only prefill-rows,rows --iters 30 --out "$OUT/bench-prefill-rows.json" > /dev/null 2> "$OUT/bench-prefill-rows.log"
    pbc=$?
    echo "bench layers --only prefill-rows,rows rc=$pbc"; grep -E "copy \(read|^rows " "$OUT/bench-prefill-rows.log"
    grep -E "^PREFILL-ROWS" "$OUT/bench-prefill-rows.log" | tee "$OUT/prefill-rows-table.txt"
    # Rows 1024 and 8192 decide; rows 256 (where v2 starts) is information: if v2 loses there,
    # raise the threshold (ODYSSEY_PREFILL_ROWS_V2=N; kV2MinRows in layers.cu).
    slow=$(awk '/^PREFILL-ROWS/ && / v2 / && $4 != "256:"{for(i=1;i<=NF;i++){if($i=="v1")a=$(i+1); if($i=="v2")b=$(i+1)} if(b>1.05*a) print $2" rows "$4}' "$OUT/bench-prefill-rows.log")
    [ -n "$slow" ] && echo "v2 SLOWER than v1 (> 5%): $slow"
    awk '/^PREFILL-ROWS/ && / v2 / && $4 == "256:"{for(i=1;i<=NF;i++){if($i=="v1")a=$(i+1); if($i=="v2")b=$(i+1)} if(b>1.05*a) print "note: v2 slower than v1 at rows 256: "$2}' "$OUT/bench-prefill-rows.log"
    [ $prc = 0 ] && [ $pmc = 0 ] && [ $pbc = 0 ] && [ -z "$slow" ] && [ -s "$OUT/prefill-rows-table.txt" ] && echo "prefill-rows: PASS" || echo "prefill-rows: FAIL"
    ;;
  gemv16)
    stamp gemv16
    $B/odyssey-rt test gemv16 > "$OUT/test-gemv16.json" 2> "$OUT/test-gemv16.log"
    echo "test gemv16 rc=$?"; grep -E "^    " "$OUT/test-gemv16.log" | head -30; grep -E "passed" "$OUT/test-gemv16.log"
    grep -E "^m[0-9]" "$OUT/test-gemv16.log" | cut -c1-44,82- | head -24
    if [ ! -d $CASES ]; then
      "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; exit 1; }
    fi
    # decode-gemm earlier in the same call already ran every case (W4A16 ones included): reuse it.
    if [ ! -s "$OUT/test-gemm.json" ]; then
      $B/odyssey-rt test gemm --cases $CASES > "$OUT/test-gemm.json" 2> "$OUT/test-gemm.log"
      echo "test gemm rc=$?"
    fi
    grep -A4 -E "FAIL" "$OUT/test-gemm.log" | head -30; grep -E "w4a16_gemv|passed" "$OUT/test-gemm.log" | tail -4
    python3 -c 'import json,sys; c=[x for x in json.load(open(sys.argv[1]))["cases"] if "w4a16_gemv" in x["kernel"]]; print("w4a16_gemv runs:", len(c), "failed:", sum(not x["passed"] for x in c), "max ulp:", max([x["y_max_ulp"] for x in c] or [0]))' "$OUT/test-gemm.json"
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test gemv16 --quick > /dev/null 2> "$OUT/sanitizer-gemv16.log"
    echo "compute-sanitizer memcheck (test gemv16 --quick) rc=$?"; grep -E "ERROR SUMMARY|test gemv16:" "$OUT/sanitizer-gemv16.log" | tail -2
    GS=${GEMV_SHAPES:-4096x4096,12288x4096,22016x4096,4096x11008,8192x28672,28672x8192,32000x4096}
    $B/odyssey-rt bench gemm --m ${GEMV_M:-1,2,4} --shapes $GS --commit "$COMMIT" \
      --out "$OUT/bench-gemv.json" --md "$OUT/bench-gemv.md" > /dev/null 2> "$OUT/bench-gemv.log"
    echo "bench gemv rc=$?"; grep -E "copy|f16_gemv|cublas_fp16|w4a16" "$OUT/bench-gemv.log"; grep -E "^goal" "$OUT/bench-gemv.log"
    ODYSSEY_PDL=0 $B/odyssey-rt bench gemm --m 1 --shapes $GS --iters 50 > "$OUT/bench-gemv-nopdl.json" 2> "$OUT/bench-gemv-nopdl.log"
    echo "bench gemv without PDL rc=$?"; grep -E "f16_gemv|w4a16_gemv" "$OUT/bench-gemv-nopdl.log"
    ;;
  codec)
    stamp codec
    rm -rf $CCASES
    "$ODY_BIN" testdata codec-cases --out $CCASES > "$OUT/codec-cases.log" 2>&1 || { cat "$OUT/codec-cases.log"; exit 1; }
    $B/odyssey-rt test codec --cases $CCASES --kernels 7,6,5,4,3,2,1 > "$OUT/test-codec.json" 2> "$OUT/test-codec.log"
    echo "test codec rc=$?"; grep -E "FAIL" "$OUT/test-codec.log" | head -20; grep "passed" "$OUT/test-codec.log"
    # Sanitizers: one case per (N, bits, symmetry) corner, every kernel version; and a short soak
    # (the comparison kernel, the poisoning, the stream reuse).
    S=/tmp/ody-san-codec; rm -rf $S; mkdir -p $S
    python3 - "$CCASES" "$S" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(src, "manifest.json")))
want = ["n1_int8_g32_asym", "n2_int4_g64_sym", "n4_int8_g128_sym", "n8_int4_g128_asym", "n8_int8_g32_asym_grid16", "testvector",
        "n8_int4_g128_sym_rows24"]
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
      compute-sanitizer --tool $tool --error-exitcode 9 $B/odyssey-rt test codec --cases $S --kernels 7,6,5,4,3,2,1 > "$OUT/sanitizer-codec-$tool.log" 2>&1
      echo "compute-sanitizer $tool (test codec) rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test codec:" "$OUT/sanitizer-codec-$tool.log" | head -5
    done
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt soak allreduce --calls 50 --check-every 10 \
      > "$OUT/sanitizer-soak.log" 2>&1
    echo "compute-sanitizer memcheck (soak) rc=$?"; grep -E "ERROR SUMMARY|soak allreduce:" "$OUT/sanitizer-soak.log" | tail -2
    $B/odyssey-rt bench codec --kernels ${CODEC_KERNELS:-7,6,5} ${CODEC_BENCH_ARGS:-} > "$OUT/bench-codec.json" 2> "$OUT/bench-codec.log"
    echo "bench codec rc=$?"; grep -E "^ *268435456 B" "$OUT/bench-codec.log"
    python3 -c 'import json,sys; [print("goal:", g["name"], "measured %.1f%%" % g["measured"], "met" if g["met"] else "NOT met") for g in json.load(open(sys.argv[1]))["goals"]]' "$OUT/bench-codec.json"
    # The symmetric codec, v6 against v5 and v4, at the sizes where DRAM counts.
    $B/odyssey-rt bench codec --sym --kernels ${CODEC_KERNELS:-7,6,5} --sizes 64M,256M > "$OUT/bench-codec-sym.json" 2> "$OUT/bench-codec-sym.log"
    echo "bench codec --sym rc=$?"; grep -E "^ *268435456 B" "$OUT/bench-codec-sym.log"
    python3 -c 'import json,sys; [print("goal (symmetric):", g["name"], "measured %.1f%%" % g["measured"], "met" if g["met"] else "NOT met") for g in json.load(open(sys.argv[1]))["goals"]]' "$OUT/bench-codec-sym.json"
    $B/odyssey-rt soak allreduce --calls ${SOAK_CALLS:-100000} --ranks 8 --bits 8 --group 128 --timeout 120 \
      > "$OUT/soak.json" 2> "$OUT/soak.log"
    echo "soak int8 rc=$?"; tail -1 "$OUT/soak.log"
    $B/odyssey-rt soak allreduce --calls ${SOAK_CALLS_INT4:-10000} --ranks 8 --bits 4 --group 64 --sym --dtype bf16 \
      --width 4096 --timeout 120 >> "$OUT/soak.json" 2>> "$OUT/soak.log"
    echo "soak int4 sym bf16 rc=$?"; tail -1 "$OUT/soak.log"
    $B/odyssey-rt soak allreduce --calls ${SOAK_CALLS_INT4:-10000} --ranks 8 --bits 4 --group 128 --kernels 7 \
      --width 4096 --timeout 120 >> "$OUT/soak.json" 2>> "$OUT/soak.log"
    echo "soak int4 g128 kernels 7 rc=$?"; tail -1 "$OUT/soak.log"
    # Issue 9 per stage: the first listed version's rows at the largest size, each against 80% of
    # the copy of the same run (the pct_copy field); a missing row is a FAIL.
    python3 - "$OUT/bench-codec.json" "$OUT/bench-codec-sym.json" <<'PY'
import json, sys
def verdict(path, label):
    try:
        d = json.load(open(path))
    except Exception as e:
        print(f"ISSUE 9 {label}: no bench output ({e}) FAIL"); return
    rows = d.get("rows", [])
    if not rows:
        print(f"ISSUE 9 {label}: no rows FAIL"); return
    size = max(r["size_bytes"] for r in rows)
    ver = rows[0]["kernels"]
    parts, ok = [], True
    for bits in (8, 4):
        for k in ("quantize", "reduce", "dequantize"):
            r = [x for x in rows if x["size_bytes"] == size and x["kernels"] == ver and x["bits"] == bits and x["kernel"] == k]
            if not r:
                parts.append(f"int{bits} {k} missing"); ok = False; continue
            p = r[0]["pct_copy"]; ok &= p >= 80.0
            parts.append(f"int{bits} {k} {p:.1f}%")
    print(f"ISSUE 9 v{ver}{label}: " + ", ".join(parts) + f" (copy {rows[-1]['copy_gbs']:.0f} GB/s) " + ("PASS" if ok else "FAIL"))
verdict(sys.argv[2], " symmetric")
verdict(sys.argv[1], "")
PY
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
    grep -E -A3 "Compiling entry function '.*w4a8_wgmma_(v[23]p?_)?kernel" "$OUT/build-wgmma.log" | grep -E "Compiling|registers|spill|smem" | sed 's/_ZN7odyssey[^ ]*w4a8_wgmma_\(v[23]p\{0,1\}_\)\{0,1\}kernelILi\([0-9]\)ELb\([01]\)E[^ ]*/w4a8_wgmma_\1kernel<spg=\2,int=\3>/'
    grep -iE "warning.*(wgmma|C75)" "$OUT/build-wgmma.log" | sort | uniq -c | head -10
    # C7519 "warpgroup.arrive is injected": v1 had 16; v2 should have none.
    echo "C7519 v1: $(grep C7519 "$OUT/build-wgmma.log" | grep -c 'w4a8_wgmma_kernel'), v2: $(grep C7519 "$OUT/build-wgmma.log" | grep -c 'w4a8_wgmma_v2_kernel'), v3: $(grep C7519 "$OUT/build-wgmma.log" | grep -c 'w4a8_wgmma_v3_kernel'), v3p: $(grep C7519 "$OUT/build-wgmma.log" | grep -c 'w4a8_wgmma_v3p_kernel')"
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
    # ODYSSEY_WGMMA=1: the dispatch routes every M >= 64 case through the wgmma config too
    # (v1 with ODYSSEY_WGMMA_V2=0, v2 with =1, so the large cases run through each).
    ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V2=0 timeout 240 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_r128t128_s4 \
      > "$OUT/test-gemm-wgmma.json" 2> "$OUT/test-gemm-wgmma.log"
    rc=$?; echo "test gemm (wgmma v1) rc=$rc"; [ $rc -eq 0 ] || wg_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma.log" | head -20; grep "passed" "$OUT/test-gemm-wgmma.log"
    echo "runs forced through wgmma_r128t128_s4: $(grep -oE '"kernel": *"[a-z]+/wgmma_r128t128_s4/' "$OUT/test-gemm-wgmma.json" | wc -l)"
    ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V2=1 timeout 240 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_r128t128_s4_v2 \
      > "$OUT/test-gemm-wgmma2.json" 2> "$OUT/test-gemm-wgmma2.log"
    rc=$?; echo "test gemm (wgmma v2) rc=$rc"; [ $rc -eq 0 ] || wg_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma2.log" | head -20; grep "passed" "$OUT/test-gemm-wgmma2.log"
    echo "runs forced through wgmma_r128t128_s4_v2: $(grep -oE '"kernel": *"[a-z]+/wgmma_r128t128_s4_v2/' "$OUT/test-gemm-wgmma2.json" | wc -l)"
    # v3 (two 64-token halves, folds overlapped): forced, and the dispatch's M >= 64 cases with
    # ODYSSEY_WGMMA_V3=1.
    ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V3=1 timeout 240 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_r128t128_s4_v3 \
      > "$OUT/test-gemm-wgmma3.json" 2> "$OUT/test-gemm-wgmma3.log"
    rc=$?; echo "test gemm (wgmma v3) rc=$rc"; [ $rc -eq 0 ] || wg_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma3.log" | head -20; grep "passed" "$OUT/test-gemm-wgmma3.log"
    echo "runs forced through wgmma_r128t128_s4_v3: $(grep -oE '"kernel": *"[a-z]+/wgmma_r128t128_s4_v3/' "$OUT/test-gemm-wgmma3.json" | wc -l)"
    # v3p (v3 on a persistent grid): the cases' tiles rarely exceed the SMs, so the probe's
    # 160-tile case is what crosses tile boundaries; this checks every case forced through it.
    ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V3=p timeout 240 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_r128t128_s4_v3p \
      > "$OUT/test-gemm-wgmma3p.json" 2> "$OUT/test-gemm-wgmma3p.log"
    rc=$?; echo "test gemm (wgmma v3p) rc=$rc"; [ $rc -eq 0 ] || wg_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma3p.log" | head -20; grep "passed" "$OUT/test-gemm-wgmma3p.log"
    echo "runs forced through wgmma_r128t128_s4_v3p: $(grep -oE '"kernel": *"[a-z]+/wgmma_r128t128_s4_v3p/' "$OUT/test-gemm-wgmma3p.json" | wc -l)"
    # Default: the 7B linears (qkv 12288x4096, o 4096x4096, gate_up 22016x4096, down 4096x11008)
    # and the 70B's 8192x28672 / 28672x8192 at the 7B prefill's M (1024: batch 1, 4096).
    timeout 420 $B/odyssey-rt bench gemm --m ${WGMMA_M:-1024,4096} \
      --shapes ${WGMMA_SHAPES:-12288x4096,4096x4096,22016x4096,4096x11008,8192x28672,28672x8192} \
      --iters ${WGMMA_ITERS:-30} --driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)" \
      --commit "$COMMIT" --out "$OUT/bench-gemm-wgmma.json" --md "$OUT/bench-gemm-wgmma.md" \
      > /dev/null 2> "$OUT/bench-gemm-wgmma.log"
    echo "bench (wgmma) rc=$?"; grep -E "^goal" "$OUT/bench-gemm-wgmma.log"
    grep -E "w4a8_int( |_wgmma|_mma)|w4a8_float_wgmma|w4a8_float_mma|cublas" "$OUT/bench-gemm-wgmma.md" | grep -E "\| (256|1024|4096|8192) \|" | cut -d'|' -f2-6,10 | head -120
    # v2 vs v3 (integer scales), beside cuBLAS FP16, per shape and M: "v3/v2" > 1 means v3 is faster.
    echo "wgmma v2 vs v3 vs v3p (µs, int scales g128; vN/v2 > 1: faster than v2):"
    awk -F'|' '{gsub(/ /,"",$2); gsub(/ /,"",$3); gsub(/ /,"",$4); gsub(/ /,"",$5)}
      $4=="w4a8_int_wgmma2"{v2[$2" M="$3]=$5; keys[$2" M="$3]=1} $4=="w4a8_int_wgmma3"{v3[$2" M="$3]=$5}
      $4=="w4a8_int_wgmma3p"{v3p[$2" M="$3]=$5} $4=="cublas_fp16"{f[$2" M="$3]=$5}
      END{for(k in keys) if (v3[k] > 0 && v3p[k] > 0) printf "  %-22s v2 %9.2f  v3 %9.2f (%.3fx)  v3p %9.2f (%.3fx)  cublas_fp16 %9.2f  (best vs fp16 %.2fx)\n", k, v2[k], v3[k], v2[k]/v3[k], v3p[k], v2[k]/v3p[k], f[k], (f[k]>0? f[k]/(v3[k]<v3p[k]? (v3[k]<v2[k]?v3[k]:v2[k]) : (v3p[k]<v2[k]?v3p[k]:v2[k])) : 0)}' \
      "$OUT/bench-gemm-wgmma.md" | sort
    if [ "${WGMMA_NCU:-0}" = 1 ]; then
      # One launch of the v2 kernel (spg=4, int) at 8192x28672 M=4096, full set: where time goes.
      ODYSSEY_WGMMA_V2=1 timeout 240 ncu --set full -k regex:w4a8_wgmma_v2_kernel -c 1 \
        $B/odyssey-rt bench gemm --m 4096 --shapes 8192x28672 --iters 5 --out "$OUT/ncu-bench.json" > "$OUT/ncu-wgmma2.txt" 2>&1
      echo "ncu (wgmma v2) rc=$?"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Tensor|Registers|Achieved Occupancy|Stall|Issue Slots Busy" "$OUT/ncu-wgmma2.txt" | head -40
      # v3 on the same problem and on the 7B o_proj at b1 (4096x4096 M=1024): is the K loop
      # L2-bound (L2 Cache Throughput near its peak) or latency-bound (tensor pipe idle, stalls)?
      for shp in "4096 8192x28672" "1024 4096x4096"; do
        read -r nm ns <<< "$shp"
        ODYSSEY_WGMMA_V3=1 timeout 240 ncu --set full -k regex:w4a8_wgmma_v3_kernel -c 1 \
          $B/odyssey-rt bench gemm --m $nm --shapes $ns --iters 5 --out "$OUT/ncu-bench3.json" > "$OUT/ncu-wgmma3-$ns-m$nm.txt" 2>&1
        echo "ncu (wgmma v3, $ns M=$nm) rc=$?"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Tensor|Registers|Stall|Issue Slots Busy" "$OUT/ncu-wgmma3-$ns-m$nm.txt" | head -30
      done
    fi
    [ $wg_fail -eq 0 ] && echo "wgmma: PASS (probe and test gemm bit-exact)" || echo "wgmma: FAIL (see above)"
    ;;
  w4a16)
    stamp w4a16
    # The W4A16 decode GEMV 2 (w4a16.cu, configs w4a16_gemv2_s2/_s4/_s8/_s2p; runtime/NOTES.md "W4A16
    # decode GEMV 2"). 1. test gemm on the w4a16 cases: every config (the GEMV 2 ones on every
    # case with M <= 16, splits 0 and 1), the default dispatch; 2. the same with
    # ODYSSEY_W4A16_GEMV2=1 (the dispatch's runs then go through GEMV 2); 3. memcheck on two
    # corner cases; 4. bench gemm --only w4a16 at M = 1, 4, 8, 16 on the decode shapes, with
    # ODYSSEY_W4A16_GEMV2=1 (row w4a16 = the dispatch's GEMV 2 choice; the old GEMV, each GEMV 2
    # config, the tile and cuBLAS FP16 forced in the same run), and a table. Last line:
    # "w4a16: PASS" (every test run passed, memcheck clean) or "w4a16: FAIL".
    w16_fail=0
    # ptxas (the build step's log, -Xptxas -v): GEMV 2 instantiations and their spills (0 on
    # CUDA 11.8; a spill here costs speed, not correctness).
    if [ -f "$OUT/build.log" ]; then
      awk '/Function properties for .*w4a16_gemv2/{f=1; next} f{print; f=0}' "$OUT/build.log" |
        awk '{n++; if ($5 != 0 || $9 != 0) s++} END{printf "ptxas: %d GEMV 2 instantiations, %d with spills\n", n, s+0}'
    fi
    [ -f $CASES/manifest.json ] || { "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; echo "w4a16: FAIL (cases)"; exit 1; }; }
    $B/odyssey-rt test gemm --cases $CASES --kinds w4a16 > "$OUT/test-w4a16.json" 2> "$OUT/test-w4a16.log"
    rc=$?; echo "test gemm --kinds w4a16 rc=$rc"; [ $rc -eq 0 ] || w16_fail=1
    ODYSSEY_W4A16_GEMV2=1 $B/odyssey-rt test gemm --cases $CASES --kinds w4a16 \
      --configs w4a16_gemv2_s2,w4a16_gemv2_s4,w4a16_gemv2_s8,w4a16_gemv2_s2p > "$OUT/test-w4a16-gemv2.json" 2> "$OUT/test-w4a16-gemv2.log"
    rc=$?; echo "test gemm --kinds w4a16, ODYSSEY_W4A16_GEMV2=1 rc=$rc"; [ $rc -eq 0 ] || w16_fail=1
    grep -h -A4 -E "FAIL" "$OUT/test-w4a16.log" "$OUT/test-w4a16-gemv2.log" | head -30
    grep -h "passed" "$OUT/test-w4a16.log" "$OUT/test-w4a16-gemv2.log"
    python3 - "$OUT/test-w4a16.json" "$OUT/test-w4a16-gemv2.json" <<'PY' || w16_fail=1
import json, sys
bad = 0
for f, what in zip(sys.argv[1:], ["default dispatch", "ODYSSEY_W4A16_GEMV2=1"]):
    c = json.load(open(f))["cases"]
    for key in ["w4a16_gemv2_s2/", "w4a16_gemv2_s4/", "w4a16_gemv2_s8/", "w4a16_gemv2_s2p/", "w4a16/dispatch", "w4a16_gemv/", "refuse"]:
        r = [x for x in c if key in x["kernel"] or key in x["name"]]
        nf = sum(not x["passed"] for x in r)
        bad += nf
        print("  %-22s %-16s runs %4d failed %d max ulp %s" % (what, key, len(r), nf, max([x.get("y_max_ulp", 0) for x in r] or [0])))
    g2 = [x for x in c if "gemv2" in x["kernel"]]
    if not g2: print("  %s: no GEMV 2 runs" % what); bad += 1
sys.exit(1 if bad else 0)
PY
    S16=/tmp/ody-san-w4a16; rm -rf $S16; mkdir -p $S16
    python3 - "$CASES" "$S16" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(src, "manifest.json")))
want = ["w4a16_m9_n72_k1152_g32", "w4a16_m8_n200_k4224_g128"]
keep = [c for c in m["cases"] if any(c["name"].startswith(w) for w in want)]
for c in keep: shutil.copy(os.path.join(src, c["file"]), dst)
json.dump({"version": 1, "cases": keep}, open(os.path.join(dst, "manifest.json"), "w"))
print("memcheck subset:", " ".join(c["name"] for c in keep))
PY
    ODYSSEY_W4A16_GEMV2=1 timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test gemm --cases $S16 \
      --kinds w4a16 --configs w4a16_gemv2_s2,w4a16_gemv2_s4,w4a16_gemv2_s8,w4a16_gemv2_s2p > "$OUT/sanitizer-w4a16.log" 2>&1
    rc=$?; echo "compute-sanitizer memcheck (GEMV 2 corners) rc=$rc"; grep -E "ERROR SUMMARY|test gemm:" "$OUT/sanitizer-w4a16.log" | head -3
    [ $rc -eq 0 ] || w16_fail=1
    WS=${W4A16_SHAPES:-4096x4096,8192x28672,28672x8192,12288x4096,22016x4096,4096x11008}
    ODYSSEY_W4A16_GEMV2=1 $B/odyssey-rt bench gemm --only w4a16 --shapes $WS --m ${W4A16_M:-1,4,8,16} --iters ${W4A16_ITERS:-100} \
      --commit "$COMMIT" --out "$OUT/bench-w4a16.json" > /dev/null 2> "$OUT/bench-w4a16.log"
    rc=$?; echo "bench gemm --only w4a16 rc=$rc"; grep -E "copy" "$OUT/bench-w4a16.log"
    python3 - "$OUT/bench-w4a16.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = {(r["n"], r["k"], r["m"], r["kernel"]): r for r in d["rows"] if r.get("ok", True) and r.get("us")}
keys = sorted({(n, k, m) for (n, k, m, _) in t})
us = lambda n, k, m, x: t[(n, k, m, x)]["us"] if (n, k, m, x) in t else None
f = lambda v: "%7.2f" % v if v else "    -  "
print("W4A16 (us; old = the default dispatch: w4a16_gemv at M<=4 and K<16384, else the tile w4a16_mma;")
print("  new = the dispatch with ODYSSEY_W4A16_GEMV2=1; xFP16 = cuBLAS FP16 / new; floor = int4 weights + scales + x + y at the copy rate)")
print("  N x K      M     old    gemv      s2      s4      s8     s2p     mma |     new (cfg)             cuBLAS  xFP16 new/old %floor  best")
goal = []
for (n, k, m) in keys:
    old_cfg = "w4a16_gemv" if m <= 4 and k < 16384 else "w4a16_mma"
    old = us(n, k, m, old_cfg); new = us(n, k, m, "w4a16"); fp = us(n, k, m, "cublas_fp16")
    if not new: continue
    r = t[(n, k, m, "w4a16")]
    cands = [(us(n, k, m, x), x) for x in ["w4a16_gemv", "w4a16_gemv2_s2", "w4a16_gemv2_s4", "w4a16_gemv2_s8", "w4a16_gemv2_s2p", "w4a16_mma"] if us(n, k, m, x)]
    best = min(cands)[1] if cands else "-"
    print("%5dx%-6d %2d %s %s %s %s %s %s %s | %s (%-14s) %s %5.2fx %5.2fx %5.1f%%  %s" % (
        n, k, m, f(old), f(us(n, k, m, "w4a16_gemv")), f(us(n, k, m, "w4a16_gemv2_s2")), f(us(n, k, m, "w4a16_gemv2_s4")),
        f(us(n, k, m, "w4a16_gemv2_s8")), f(us(n, k, m, "w4a16_gemv2_s2p")), f(us(n, k, m, "w4a16_mma")), f(new),
        r.get("note", "").split("/")[0], f(fp),
        (fp / new) if fp else 0, (old / new) if old else 0, r["pct_memory_floor"], best))
    if m == 1 and n * k >= (64 << 20) and fp: goal.append((n, k, fp / new, fp / 2.5, new, min(cands)))
for (n, k, x, lim, new, b) in goal:
    print("w4a16 goal (issue 12: >= 2.5x cuBLAS FP16 at M=1) %dx%d: %.2fx (new %.2f us, needs <= %.2f) %s; best forced %s %.2f us" % (
        n, k, x, new, lim, "met" if x >= 2.5 else "NOT met", b[1], b[0]))
PY
    [ $w16_fail -eq 0 ] && echo "w4a16: PASS (test gemm, GEMV 2 forced and via the dispatch, memcheck)" || echo "w4a16: FAIL (see above)"
    ;;
  wgmma4)
    stamp wgmma4
    # wgmma v4 (config 20, wgmma_ws_r128t128_v4: warp-specialized, TMA + mbarrier ring, pingpong
    # consumers; src/fastgemm_sm90.cu, runtime/NOTES.md "wgmma v4"). Build (no-op after `build`:
    # the ptxas lines come from its log), probe, every GEMM case forced through v4 and through the
    # dispatch with ODYSSEY_WGMMA_V4=1, then v2 vs v4 (same run) beside cuBLAS FP16 / cuBLASLt INT8.
    # Each part runs even if an earlier one failed; the last line is "wgmma4: PASS" or "wgmma4: FAIL".
    w4_fail=0
    cmake -S runtime -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ODY_ARCH:-90} \
      -DODYSSEY_PTXAS_VERBOSE=ON > "$OUT/build-wgmma4.log" 2>&1 &&
      cmake --build $B -j 16 >> "$OUT/build-wgmma4.log" 2>&1 || { tail -60 "$OUT/build-wgmma4.log"; echo "wgmma4: FAIL (build)"; exit 1; }
    grep -E "FastGEMM wgmma kernel" "$OUT/build-wgmma4.log" "$OUT/build.log" 2>/dev/null | head -1
    # ptxas per v4 instantiation (spg = 32-bit steps per group: 1 = g32, 2 = g64, 4 = g128, 0 =
    # per-channel; int = integer scales): registers and spill bytes (want 0), and any wgmma warning.
    # (Since session 9 the kernel template also has DIAG and PERSIST: v4 and v4c2 are DIAG = 0,
    # PERSIST = 0; v5 and the diagnostic variants are in `wgmma5`.)
    cat "$OUT/build.log" "$OUT/build-wgmma4.log" 2>/dev/null | grep -E -A3 "Compiling entry function '.*w4a8_wgmma_v4_kernelILi[0-9]ELb[01]ELi[12]ELi0ELb0E" |
      grep -E "Compiling|registers|spill" | sed 's/_ZN7odyssey[^ ]*w4a8_wgmma_v4_kernelILi\([0-9]\)ELb\([01]\)ELi\([12]\)E[^ ]*/w4a8_wgmma_v4_kernel<spg=\1,int=\2,cluster=\3>/'
    nspill=$(cat "$OUT/build.log" "$OUT/build-wgmma4.log" 2>/dev/null | grep -E -A3 "Compiling entry function '.*w4a8_wgmma_v4_kernelILi[0-9]ELb[01]ELi[12]ELi0ELb0E" |
      grep -E "spill" | grep -vc " 0 bytes spill stores, 0 bytes spill loads")
    nent=$(cat "$OUT/build.log" "$OUT/build-wgmma4.log" 2>/dev/null | grep -cE "Compiling entry function '.*w4a8_wgmma_v4_kernelILi[0-9]ELb[01]ELi[12]ELi0ELb0E")
    echo "ptxas v4: $nent instantiations (want 16: 8 v4, 8 v4c2), with spills: $nspill (want 0)"
    [ "$nspill" = 0 ] && [ "$nent" -gt 0 ] || { w4_fail=1; [ "$nent" -gt 0 ] || echo "  no ptxas lines: run the build step first in the same call"; }
    # Any (C75xx) note: C7508 "'setmaxnreg' ignored" (then the consumers keep 168 registers), C7510/
    # C7515/C7519 wgmma serialization or injected warpgroup.arrive (correct but slow).
    cat "$OUT/build.log" "$OUT/build-wgmma4.log" 2>/dev/null | grep -E "C75[0-9][0-9]|warning.*(wgmma|setmaxnreg)" |
      grep -E "v4_kernel|setmaxnreg" | sort | uniq -c | head -10
    # (timeouts: a protocol bug in v4 shows as a hang, rc 124, not as wrong numbers)
    ODYSSEY_WGMMA_V4=1 timeout 60 $B/odyssey-rt test wgmma-probe > "$OUT/wgmma4-probe.json" 2> "$OUT/wgmma4-probe.log"
    rc=$?; echo "wgmma-probe rc=$rc (124: hung)"; grep -E "v4(c2)?: " "$OUT/wgmma4-probe.log" | head -24; [ $rc -eq 0 ] || w4_fail=1
    grep -E "FAIL" "$OUT/wgmma4-probe.log" | grep -vE "v4(c2)?: " | head -5  # v2 shares store_tile with v4 now
    tail -3 "$OUT/wgmma4-probe.log" | grep -iE "error|fail" | head -3  # a launch failure: v4's 4 s watchdog trapped
    if [ $rc -eq 124 ]; then echo "wgmma4: FAIL (probe hung: the rest of the step skipped)"; continue; fi
    ODYSSEY_WGMMA_V4=1 timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test wgmma-probe > /dev/null 2> "$OUT/sanitizer-wgmma4-probe.log"
    rc=$?; echo "compute-sanitizer memcheck (wgmma-probe, all versions) rc=$rc"; grep -E "ERROR SUMMARY" "$OUT/sanitizer-wgmma4-probe.log" | head -2
    [ $rc -eq 0 ] || w4_fail=1
    if [ ! -f $CASES/manifest.json ]; then
      "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; w4_fail=1; }
    fi
    # Forced (--configs) and the dispatch (ODYSSEY_WGMMA=1: every M >= 64 case; ODYSSEY_WGMMA_V4=1:
    # the dispatch takes v4 in v2's place).
    ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V4=1 timeout 150 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_ws_r128t128_v4 \
      > "$OUT/test-gemm-wgmma4.json" 2> "$OUT/test-gemm-wgmma4.log"
    rc=$?; echo "test gemm (wgmma v4) rc=$rc"; [ $rc -eq 0 ] || w4_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma4.log" | head -20; grep "passed" "$OUT/test-gemm-wgmma4.log"
    nrun=$(grep -oE '"kernel": *"[a-z]+/wgmma_ws_r128t128_v4/' "$OUT/test-gemm-wgmma4.json" | wc -l)
    echo "runs through wgmma_ws_r128t128_v4 (forced + dispatch): $nrun"; [ "$nrun" -gt 0 ] || w4_fail=1
    # Config 21 (v4 on 2-CTA clusters, X multicast): the same, with ODYSSEY_WGMMA_V4=c2.
    ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V4=c2 timeout 150 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_ws_r128t128_v4c2 \
      > "$OUT/test-gemm-wgmma4c2.json" 2> "$OUT/test-gemm-wgmma4c2.log"
    rc=$?; echo "test gemm (wgmma v4c2) rc=$rc"; [ $rc -eq 0 ] || w4_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma4c2.log" | head -20; grep "passed" "$OUT/test-gemm-wgmma4c2.log"
    nrun=$(grep -oE '"kernel": *"[a-z]+/wgmma_ws_r128t128_v4c2/' "$OUT/test-gemm-wgmma4c2.json" | wc -l)
    echo "runs through wgmma_ws_r128t128_v4c2 (forced + dispatch): $nrun"; [ "$nrun" -gt 0 ] || w4_fail=1
    # v2 vs v4 in the same run: the 7B linears at M = 1024, 4096 and the 70B's 8192x28672 at 4096.
    # ODYSSEY_WGMMA_V4=1: the bench's v4/v4c2 rows exist only with it (and the dispatch row is v4).
    ODYSSEY_WGMMA_V4=1 timeout 150 $B/odyssey-rt bench gemm --m ${WGMMA4_M:-1024,4096} \
      --shapes ${WGMMA4_SHAPES:-4096x4096,12288x4096,22016x4096,4096x11008} --iters ${WGMMA4_ITERS:-20} \
      --out "$OUT/bench-gemm-wgmma4.json" > /dev/null 2> "$OUT/bench-gemm-wgmma4.log"
    rc=$?; echo "bench (wgmma4, 7B shapes) rc=$rc"; [ $rc -eq 0 ] || w4_fail=1
    ODYSSEY_WGMMA_V4=1 timeout 90 $B/odyssey-rt bench gemm --m 4096 --shapes 8192x28672 --iters ${WGMMA4_ITERS:-20} \
      --out "$OUT/bench-gemm-wgmma4-70b.json" > /dev/null 2> "$OUT/bench-gemm-wgmma4-70b.log"
    rc=$?; echo "bench (wgmma4, 8192x28672) rc=$rc"; [ $rc -eq 0 ] || w4_fail=1
    # Lines: "<N> x <K> M=<M> <kernel> <us> us ...". v4/v2 > 1: v4 faster; fp16/v4 > 1: v4 beats cuBLAS FP16.
    echo "wgmma4 table (µs, integer scales, group 128; median of the run):"
    printf "  %-22s %10s %10s %8s %10s %8s %12s %12s %8s\n" "shape" "v2 us" "v4 us" "v4/v2" "v4c2 us" "c2/v2" "cublas_fp16" "lt_int8" "fp16/best"
    cat "$OUT/bench-gemm-wgmma4.log" "$OUT/bench-gemm-wgmma4-70b.log" | awk '
      $2=="x" && $4 ~ /^M=/ {k=sprintf("%5dx%-5d %s", $1, $3, $4); t[k" "$5]=$6; keys[k]=1}
      END{for(k in keys){v2=t[k" w4a8_int_wgmma2"]; v4=t[k" w4a8_int_wgmma4"]; c2=t[k" w4a8_int_wgmma4c2"]; if(!(v2>0 && v4>0)) continue;
          f=t[k" cublas_fp16"]; l=t[k" cublaslt_int8"]; b=v4; if(c2>0 && c2<b) b=c2;
          printf "  %-22s %10.2f %10.2f %7.3fx %10.2f %7.3fx %12.2f %12.2f %7.3fx\n", k, v2, v4, v2/v4, c2, (c2>0? v2/c2 : 0), f, l, (f>0? f/b : 0)}}' | sort -k1,1 -k2,2
    echo "float scales (v2 vs v4 vs v4c2):"
    cat "$OUT/bench-gemm-wgmma4.log" "$OUT/bench-gemm-wgmma4-70b.log" | awk '
      $2=="x" && $4 ~ /^M=/ {k=sprintf("%5dx%-5d %s", $1, $3, $4); t[k" "$5]=$6; keys[k]=1}
      END{for(k in keys){v2=t[k" w4a8_float_wgmma2"]; v4=t[k" w4a8_float_wgmma4"]; c2=t[k" w4a8_float_wgmma4c2"]; if(v2>0 && v4>0) printf "  %-22s v2 %10.2f  v4 %10.2f  (%.3fx)  v4c2 %10.2f  (%.3fx)\n", k, v2, v4, v2/v4, c2, (c2>0? v2/c2 : 0)}}' | sort
    if [ "${WGMMA4_NCU:-0}" = 1 ]; then
      # One launch of v4 (spg=4, int) at 4096x4096 M=4096: tensor pipe use and issue stalls.
      ODYSSEY_WGMMA_V4=1 timeout 240 ncu --set full -k regex:w4a8_wgmma_v4_kernel -c 1 \
        $B/odyssey-rt bench gemm --m 4096 --shapes 4096x4096 --iters 5 --out "$OUT/ncu-bench4.json" > "$OUT/ncu-wgmma4.txt" 2>&1
      echo "ncu (wgmma v4) rc=$?"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Tensor|Registers|Stall|Issue Slots Busy|Warp Cycles" "$OUT/ncu-wgmma4.txt" | head -40
    fi
    [ $w4_fail -eq 0 ] && echo "wgmma4: PASS (ptxas no spill, probe, test gemm bit-exact, bench ran)" || echo "wgmma4: FAIL (see above)"
    ;;
  wgmma5)
    stamp wgmma5
    # wgmma v5 (config 22, wgmma_ws_r128t128_v5: v4 on a persistent grid, the ring and the
    # pingpong running on across tiles; src/fastgemm_sm90.cu "v5") and the v4/v5 diagnostic
    # variants (bench only; runtime/NOTES.md "wgmma v5 and v4's diagnostics"). Each part runs even
    # if an earlier one failed; the last line is "wgmma5: PASS" or "wgmma5: FAIL".
    w5_fail=0
    cmake -S runtime -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ODY_ARCH:-90} \
      -DODYSSEY_PTXAS_VERBOSE=ON > "$OUT/build-wgmma5.log" 2>&1 &&
      cmake --build $B -j 16 >> "$OUT/build-wgmma5.log" 2>&1 || { tail -60 "$OUT/build-wgmma5.log"; echo "wgmma5: FAIL (build)"; exit 1; }
    # ptxas per instantiation of the v4 template <spg, int, cluster, diag, persist>: v5 is
    # persist=1 diag=0 (8: want 0 spill, and ~168 registers like v4); the diags are spg=4 int=1
    # (20: 10 variants × v4/v5; a diag that spills measures its spills, so they are listed, not failed).
    # One line per instantiation ("<name> regs R spill S/L"), each once (build.log and this log
    # may both hold it).
    ptx5() { cat "$OUT/build.log" "$OUT/build-wgmma5.log" 2>/dev/null |
      grep -E -A3 "Compiling entry function '.*w4a8_wgmma_v4_kernel$1" | grep -E "Compiling|registers|spill" |
      sed 's/_ZN7odyssey[^ ]*w4a8_wgmma_v4_kernelILi\([0-9]\)ELb\([01]\)ELi\([12]\)ELi\([0-9]*\)ELb\([01]\)E[^ ]*/v4_kernel<spg=\1,int=\2,cluster=\3,diag=\4,persist=\5>/' |
      awk '/Compiling/ {n=$0; sub(/.*function .?/, "", n); sub(/ for .*/, "", n)} /spill stores/ {sp=$5 "/" $9}
           /Used [0-9]+ registers/ {if(!(n in seen)){seen[n]=1; printf "  %-60s regs %s spill %s\n", n, $5, sp}}'; }
    ptx5 "ILi[0-9]ELb[01]ELi1ELi0ELb1E"
    nspill=$(ptx5 "ILi[0-9]ELb[01]ELi1ELi0ELb1E" | grep -vc "spill 0/0$")
    nent=$(ptx5 "ILi[0-9]ELb[01]ELi1ELi0ELb1E" | wc -l)
    echo "ptxas v5: $nent instantiations (want 8), with spills: $nspill (want 0)"
    [ "$nspill" = 0 ] && [ "$nent" -gt 0 ] || { w5_fail=1; [ "$nent" -gt 0 ] || echo "  no ptxas lines: run the build step first in the same call"; }
    echo "ptxas diag variants (diag bits: 1 nofold, 2 noturn, 4 nowait, 8 nomma, 16 noepi, 23 mmaonly, 32 clock, 64 prefetch, 128 ss, 151 mmaonly-ss):"
    ptx5 "ILi4ELb1ELi1ELi([1-9]|[1-9][0-9]|1[0-9][0-9])ELb[01]E"
    cat "$OUT/build.log" "$OUT/build-wgmma5.log" 2>/dev/null | grep -E "C75[0-9][0-9]|warning.*(wgmma|setmaxnreg)" |
      grep -E "v4_kernel|setmaxnreg" | sort | uniq -c | head -10
    ODYSSEY_WGMMA_V5=1 timeout 60 $B/odyssey-rt test wgmma-probe > "$OUT/wgmma5-probe.json" 2> "$OUT/wgmma5-probe.log"
    rc=$?; echo "wgmma-probe (v1..v4c2, then v5) rc=$rc (124: hung)"; grep -E "v5: " "$OUT/wgmma5-probe.log" | head -12; [ $rc -eq 0 ] || w5_fail=1
    grep -E "FAIL" "$OUT/wgmma5-probe.log" | grep -vE "v5: " | head -5
    tail -3 "$OUT/wgmma5-probe.log" | grep -iE "error|fail" | head -3  # a launch failure: the mbarrier watchdog trapped
    if [ $rc -eq 124 ]; then echo "wgmma5: FAIL (probe hung: the rest of the step skipped)"; continue; fi
    ODYSSEY_WGMMA_V5=1 timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $B/odyssey-rt test wgmma-probe > /dev/null 2> "$OUT/sanitizer-wgmma5-probe.log"
    rc=$?; echo "compute-sanitizer memcheck (wgmma-probe, v5 included) rc=$rc"; grep -E "ERROR SUMMARY" "$OUT/sanitizer-wgmma5-probe.log" | head -2
    [ $rc -eq 0 ] || w5_fail=1
    if [ ! -f $CASES/manifest.json ]; then
      "$ODY_BIN" testdata gemm-cases --out $CASES > "$OUT/cases.log" 2>&1 || { cat "$OUT/cases.log"; w5_fail=1; }
    fi
    # Forced (--configs) and through the dispatch (ODYSSEY_WGMMA=1: every M >= 64 case;
    # ODYSSEY_WGMMA_V5=1: the dispatch takes v5 in v4's place).
    ODYSSEY_WGMMA=1 ODYSSEY_WGMMA_V5=1 timeout 150 $B/odyssey-rt test gemm --cases $CASES --configs wgmma_ws_r128t128_v5 \
      > "$OUT/test-gemm-wgmma5.json" 2> "$OUT/test-gemm-wgmma5.log"
    rc=$?; echo "test gemm (wgmma v5) rc=$rc"; [ $rc -eq 0 ] || w5_fail=1
    grep -A3 -E "FAIL" "$OUT/test-gemm-wgmma5.log" | head -20; grep "passed" "$OUT/test-gemm-wgmma5.log"
    nrun=$(grep -oE '"kernel": *"[a-z]+/wgmma_ws_r128t128_v5/' "$OUT/test-gemm-wgmma5.json" | wc -l)
    echo "runs through wgmma_ws_r128t128_v5 (forced + dispatch): $nrun"; [ "$nrun" -gt 0 ] || w5_fail=1
    # v4 vs v5 in the same run (7B linears at M = 1024, 4096), then the diagnostic rows and the
    # CLOCK lines at 4096x4096 and 8192x28672, M = 4096 (v4, v5, cuBLAS rows there too).
    ODYSSEY_WGMMA_V5=1 timeout 150 $B/odyssey-rt bench gemm --m ${WGMMA5_M:-1024,4096} \
      --shapes ${WGMMA5_SHAPES:-4096x4096,12288x4096,22016x4096,4096x11008} --iters ${WGMMA5_ITERS:-20} \
      --out "$OUT/bench-gemm-wgmma5.json" > /dev/null 2> "$OUT/bench-gemm-wgmma5.log"
    rc=$?; echo "bench (wgmma5, 7B shapes) rc=$rc"; [ $rc -eq 0 ] || w5_fail=1
    ODYSSEY_WGMMA_V5=1 ODYSSEY_V4_DIAG=${WGMMA5_DIAG:-all} timeout 120 $B/odyssey-rt bench gemm --m 4096 \
      --shapes 4096x4096,8192x28672 --iters ${WGMMA5_ITERS:-20} \
      --out "$OUT/bench-gemm-wgmma5-diag.json" > /dev/null 2> "$OUT/bench-gemm-wgmma5-diag.log"
    rc=$?; echo "bench (wgmma5 diag, 4096x4096 and 8192x28672 M=4096) rc=$rc"; [ $rc -eq 0 ] || w5_fail=1
    # Lines: "<N> x <K> M=<M> <kernel> <us> us ...". v4/v5 > 1: v5 faster; fp16/best > 1: ours beats cuBLAS FP16.
    echo "wgmma5 table (µs, integer scales, group 128; median of the run; goals at M=4096: fp16/best >= 1.8, int8/best >= 1.3, fp8/best >= 0.9):"
    printf "  %-22s %10s %10s %8s %12s %12s %12s %9s %9s %9s\n" "shape" "v4 us" "v5 us" "v4/v5" "cublas_fp16" "lt_int8" "lt_fp8" "fp16/best" "int8/best" "fp8/best"
    cat "$OUT/bench-gemm-wgmma5.log" "$OUT/bench-gemm-wgmma5-diag.log" | awk '
      $2=="x" && $4 ~ /^M=/ {k=sprintf("%5dx%-5d %s", $1, $3, $4); if(!((k" "$5) in t)) t[k" "$5]=$6; keys[k]=1}
      END{for(k in keys){v4=t[k" w4a8_int_wgmma4"]; v5=t[k" w4a8_int_wgmma5"]; if(!(v4>0 && v5>0)) continue;
          f=t[k" cublas_fp16"]; l=t[k" cublaslt_int8"]; e=t[k" cublaslt_fp8"]; b=(v5<v4? v5 : v4);
          printf "  %-22s %10.2f %10.2f %7.3fx %12.2f %12.2f %12.2f %8.3fx %8.3fx %8.3fx\n", k, v4, v5, v4/v5, f, l, e, (f>0? f/b : 0), (l>0? l/b : 0), (e>0? e/b : 0)}}' | sort -k1,1 -k2,2
    echo "float scales (v4 vs v5):"
    cat "$OUT/bench-gemm-wgmma5.log" | awk '
      $2=="x" && $4 ~ /^M=/ {k=sprintf("%5dx%-5d %s", $1, $3, $4); t[k" "$5]=$6; keys[k]=1}
      END{for(k in keys){v4=t[k" w4a8_float_wgmma4"]; v5=t[k" w4a8_float_wgmma5"]; if(v4>0 && v5>0) printf "  %-22s v4 %10.2f  v5 %10.2f  (%.3fx)\n", k, v4, v5, v4/v5}}' | sort
    # Each diag row beside its full kernel of the same run: "saved" = full − diag, the part's
    # cost on the critical path (NOTES.md "wgmma v5 and v4's diagnostics" says how to read it).
    echo "diag table (µs; saved = full − diag, % of full):"
    grep -E " diag-v[45]-| w4a8_int_wgmma[45] " "$OUT/bench-gemm-wgmma5-diag.log" | awk '
      $2=="x" && $4 ~ /^M=/ {k=sprintf("%5dx%-5d %s", $1, $3, $4); t[k" "$5]=$6; keys[k]=1}
      END{n=split("nofold noturn nowait nomma noepi mmaonly clock prefetch ss mmaonly-ss", d, " ");
          for(k in keys) for(v=4; v<=5; v++){full=t[k" w4a8_int_wgmma" v]; if(!(full>0)) continue;
            line=sprintf("  %-22s v%d full %8.2f", k, v, full);
            for(i=1;i<=n;i++){x=t[k" diag-v" v "-" d[i]]; if(x>0) line=line sprintf(" | %s %8.2f (%+5.1f%%)", d[i], x, 100*(full-x)/full)}
            print line}}' | sort
    grep -E "^CLOCK" "$OUT/bench-gemm-wgmma5-diag.log" | head -8
    if [ "${WGMMA5_NCU:-0}" = 1 ]; then
      # One launch of v5 (spg=4, int; the dispatch's row comes first with ODYSSEY_WGMMA_V5=1, and v5
      # shares the v4 kernel template's name) at 4096x4096 M=4096, as wgmma4's ncu of v4.
      ODYSSEY_WGMMA_V5=1 timeout 240 ncu --set full -k regex:w4a8_wgmma_v4_kernel -c 1 \
        $B/odyssey-rt bench gemm --m 4096 --shapes 4096x4096 --iters 5 --out "$OUT/ncu-bench5.json" > "$OUT/ncu-wgmma5.txt" 2>&1
      echo "ncu (wgmma v5) rc=$?"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Tensor|Registers|Stall|Issue Slots Busy|Warp Cycles|Grid Size" "$OUT/ncu-wgmma5.txt" | head -40
    fi
    [ $w5_fail -eq 0 ] && echo "wgmma5: PASS (ptxas v5 no spill, probe, memcheck, test gemm bit-exact, bench ran)" || echo "wgmma5: FAIL (see above)"
    ;;
  *) echo "unknown step $s"; exit 2 ;;
  esac
done
stamp done
# At most 8 files come back: the first 7 of this list that exist stay as they are, everything else
# (other logs, the launcher's folders) goes into one archive. An archive left by an earlier
# device-run.sh of the same call is unpacked first and packed again with the new files: writing
# over it lost every earlier step's logs (session 7, call 2).
if [ -f "$OUT/logs.tar.gz" ]; then
  tar -xzf "$OUT/logs.tar.gz" -C "$OUT" && rm -f "$OUT/logs.tar.gz"
fi
keep=()
for f in bench-w4a16.json test-w4a16.json bench-attn.json test-attn.json bench-decode.json bench-decode-nopdl.json test-gemm.json test-layers.json bench-layers.json bench-gemm.json bench-gemv.json bench-codec.json test-codec.json soak.json bench-gemm.md sweep-gemm.json \
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
