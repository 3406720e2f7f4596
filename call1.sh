#!/usr/bin/env bash
# Session 13, call 1: codec v7 (tensor-core INT4 g128 reduce): build, test codec v7..v1, sanitizers,
# bench 7,6,5, soaks, then ncu of fc7_reduce INT4 asym at 256 MiB.
set -u
export NCCL_NVLS_ENABLE=0
gunzip -c bin/odyssey-linux-amd64.gz > /tmp/odyssey && chmod +x /tmp/odyssey
export ODY_BIN=/tmp/odyssey ODY_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo 76024ec)
SOAK_CALLS=20000 runtime/scripts/device-run.sh build codec > $OUT/run.log 2>&1
echo "device-run rc=$?" >> $OUT/run.log
B=runtime/build
echo "B=$B" >> $OUT/run.log
timeout 240 ncu --kernel-name regex:fc7_reduce --launch-count 1 --set full $B/odyssey-rt bench codec --kernels 7 --sizes 256M --bits 4 --iters 2 --warmup 1 > $OUT/ncu-fc7.txt 2>&1
echo "ncu rc=$?" >> $OUT/run.log
cd $OUT && tar czf logs.tgz --exclude=logs.tgz * && find . -type f ! -name logs.tgz ! -name run.log ! -name ncu-fc7.txt ! -name bench-codec.log ! -name bench-codec-sym.log -delete
