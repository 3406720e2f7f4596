#!/usr/bin/env bash
# Session 13, call 3: codec v7 NG=8 vs NG=4 (occupancy A/B): build, test codec v7 both, sanitizers on NG=4, bench, ncu NG=4.
set -u
export NCCL_NVLS_ENABLE=0
gunzip -c bin/odyssey-linux-amd64.gz > /tmp/odyssey && chmod +x /tmp/odyssey
export ODY_BIN=/tmp/odyssey
runtime/scripts/device-run.sh build > $OUT/build-run.log 2>&1; echo "build rc=$?" >> $OUT/run.log
B=runtime/build; C=/tmp/cc; /tmp/odyssey testdata codec-cases --out $C > /dev/null
for ng in 8 4; do
  ODYSSEY_FC7_GROUPS=$ng $B/odyssey-rt test codec --cases $C --kernels 7 > $OUT/test-codec-ng$ng.json 2> $OUT/test-codec-ng$ng.log
  echo "test codec v7 NG=$ng rc=$? $(grep passed $OUT/test-codec-ng$ng.log)" >> $OUT/run.log
done
S=/tmp/s; mkdir -p $S; python3 - $C $S <<'PY'
import json,os,shutil,sys
src,dst=sys.argv[1:]; m=json.load(open(src+"/manifest.json")); keep=[c for c in m["cases"] if "int4_g128" in c["name"] and ("rows24" in c["name"] or "n8" in c["name"])]
for c in keep: shutil.copy(os.path.join(src,c["file"]),dst)
json.dump({"version":1,"cases":keep},open(dst+"/manifest.json","w"))
PY
for tool in memcheck racecheck; do
  ODYSSEY_FC7_GROUPS=4 compute-sanitizer --tool $tool --error-exitcode 9 $B/odyssey-rt test codec --cases $S --kernels 7 > $OUT/san-$tool.log 2>&1
  echo "sanitizer $tool NG=4 rc=$? $(grep -E 'SUMMARY' $OUT/san-$tool.log | tr '\n' ' ')" >> $OUT/run.log
done
for ng in 8 4; do
  for sym in "" "--sym"; do
    ODYSSEY_FC7_GROUPS=$ng $B/odyssey-rt bench codec --kernels 7,6 --bits 4 --sizes 64M,256M $sym > $OUT/bench-ng$ng$sym.json 2> $OUT/bench-ng$ng$sym.log
    echo "bench NG=$ng $sym rc=$?" >> $OUT/run.log; grep -E "reduce" $OUT/bench-ng$ng$sym.log >> $OUT/run.log
  done
done
ODYSSEY_FC7_GROUPS=4 timeout 200 ncu --kernel-name regex:fc7_reduce --launch-count 1 --set full $B/odyssey-rt bench codec --kernels 7 --sizes 256M --bits 4 --iters 2 --warmup 1 > $OUT/ncu-fc7-ng4.txt 2>&1
echo "ncu rc=$?" >> $OUT/run.log
cd $OUT && tar czf logs.tgz --exclude=logs.tgz * && find . -type f ! -name logs.tgz ! -name run.log ! -name ncu-fc7-ng4.txt -delete
