#!/usr/bin/env bash
# executor-check.sh: validates the model executor (docs/executor.md) on the GPU machine, writing
# JSON and logs under $OUT. Run from the repository root, one device call per step or a few:
#   ODY_BIN=bin/odyssey-linux-amd64 runtime/scripts/executor-check.sh [build] [ppl] [sanitize] [speed-prep] [speed]
# The Go binary is cross-built here (GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -o
# bin/odyssey-linux-amd64 ./cmd/odyssey) and carried as `bin`: the GPU machine has no Go. For the
# stories260K checks (dims that need padding: hidden 64, intermediate 172, head_dim 8, tied
# embeddings) stage it first: ../shared/scripts/stage-for-device.sh models/stories260K
# data/tinystories, and carry .device-data too.
#
#   build       cmake + the host test of the loader
#   ppl         `odyssey-rt ppl` on tiny-llama (fp16, w4a8-rtn, w4a8-fptq, w4a16-gptq; L 64 × 16
#               and 512 × 2) and stories260K when staged, each against `odyssey eval ppl` (CPU)
#               on the same windows: relative difference of the perplexity and the largest
#               per-window NLL difference (goal: 0.2%); plus a small `speed` run per model
#   sanitize    compute-sanitizer memcheck on ppl and a small speed run (decode graph included)
#   speed-prep  synthetic LLaMA-2-7B (fp16, 13.5 GB) and its w4a8-rtn artifact in /tmp
#   speed       `odyssey-rt speed` on them (SPEED_BATCH, default 1,8,16; prompt 1024, gen 128)
set -uo pipefail
OUT=${OUT:-/tmp/ody-out}
mkdir -p "$OUT"
B=${B:-runtime/build}
ODY=${ODY_BIN:-bin/odyssey-linux-amd64}
RT=$B/odyssey-rt
T=/tmp/ody-exec
mkdir -p $T
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build ppl)
t0=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }

# compare NAME: GPU ppl JSON vs CPU eval JSON.
compare() {
  python3 - "$OUT/gpu-$1.json" "$OUT/cpu-$1.json" "$1" <<'PY'
import json, math, sys
g, c, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
if not g.get("ok"):
    print(f"{name}: GPU ERROR {g.get('error')}"); sys.exit(0)
p = math.exp(g["nll_sum"] / g["tokens_scored"])
d = max(abs(a - b) for a, b in zip(g["nll_per_window"], c["nll_per_window"]))
rel = p / c["ppl"] - 1
print(f"{name}: path {g['path']}, GPU ppl {p:.6f}, CPU ppl {c['ppl']:.6f}, rel {rel:+.2e} "
      f"({'ok' if abs(rel) <= 2e-3 else 'OVER 0.2%'}), max |Δ window NLL| {d:.4f}, windows {g['windows']} "
      f"(CPU {c['windows']}), {g['tokens_per_second']:.0f} tokens/s")
PY
}

# ppl_pair NAME MODEL TOKENS DATA L W: GPU and CPU on the same windows.
ppl_pair() {
  local n=$1 m=$2 tok=$3 data=$4 L=$5 W=$6
  $RT ppl --model "$m" --tokens "$tok" > "$OUT/gpu-$n.json" 2> "$OUT/gpu-$n.log" || tail -3 "$OUT/gpu-$n.log"
  $ODY eval ppl --model "$m" --data "$data" --seq-len "$L" --max-windows "$W" --json > "$OUT/cpu-$n.json" 2> "$OUT/cpu-$n.log"
  compare "$n"
}

for s in "${steps[@]}"; do
  case $s in
  build)
    stamp build
    cmake -S runtime -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ODY_ARCH:-90} \
      -DODYSSEY_WITH_NCCL=OFF > "$OUT/build.log" 2>&1 &&
      cmake --build $B -j 16 >> "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
    grep -iE "warning" "$OUT/build.log" | head -5
    $B/test_executor_host | tail -1
    ;;
  ppl)
    stamp ppl
    $ODY tokenize --model testdata/tiny-llama < testdata/text/sample.txt > $T/tiny-ids.txt
    python3 runtime/scripts/token-windows.py --ids $T/tiny-ids.txt --bos 0 --seq-len 64 --max-windows 16 --out $T/tiny-64.tok
    python3 runtime/scripts/token-windows.py --ids $T/tiny-ids.txt --bos 0 --seq-len 512 --out $T/tiny-512.tok
    for r in w4a8-rtn w4a8-fptq w4a16-gptq; do
      [ -d $T/tiny-$r ] || $ODY quantize --model testdata/tiny-llama --out $T/tiny-$r --recipe $r --no-sync > /dev/null 2>&1 ||
        echo "quantize $r failed"
    done
    for m in testdata/tiny-llama $T/tiny-w4a8-rtn $T/tiny-w4a8-fptq $T/tiny-w4a16-gptq; do
      n=$(basename $m)
      ppl_pair "$n-64" $m $T/tiny-64.tok testdata/text/sample.txt 64 16
      ppl_pair "$n-512" $m $T/tiny-512.tok testdata/text/sample.txt 512 0
      $RT speed --model $m --batch 1,3 --prompt 100 --gen 16 --repeats 2 > "$OUT/speed-$n.json" 2> "$OUT/speed-$n.log" ||
        tail -3 "$OUT/speed-$n.log"
      grep -E "batch|WARNING" "$OUT/speed-$n.log" | grep -v progress
    done
    S=.device-data/models/stories260K
    if [ -d $S ]; then
      $ODY tokenize --model $S < .device-data/data/tinystories/tinystories_slice.txt > $T/st-ids.txt
      python3 runtime/scripts/token-windows.py --ids $T/st-ids.txt --bos 1 --seq-len 256 --max-windows 16 --out $T/st-256.tok
      for r in w4a8-rtn w4a8-fptq w4a16-gptq; do
        [ -d $T/st-$r ] || $ODY quantize --model $S --out $T/st-$r --recipe $r --no-sync > /dev/null 2>&1 || echo "quantize st $r failed"
      done
      for m in $S $T/st-w4a8-rtn $T/st-w4a8-fptq $T/st-w4a16-gptq; do
        ppl_pair "st-$(basename $m)" $m $T/st-256.tok .device-data/data/tinystories/tinystories_slice.txt 256 16
      done
    fi
    ;;
  sanitize)
    stamp sanitize
    compute-sanitizer --tool memcheck --error-exitcode 9 $RT ppl --model $T/tiny-w4a8-rtn --tokens $T/tiny-64.tok \
      > /dev/null 2> "$OUT/memcheck-ppl.log"; echo "memcheck ppl rc=$?"; grep -m3 -E "ERROR|Invalid" "$OUT/memcheck-ppl.log"
    compute-sanitizer --tool memcheck --error-exitcode 9 $RT speed --model $T/tiny-w4a16-gptq \
      --baseline testdata/tiny-llama --batch 1,3 --prompt 70 --gen 4 --repeats 1 > /dev/null 2> "$OUT/memcheck-speed.log"
    echo "memcheck speed rc=$?"; grep -m3 -E "ERROR|Invalid" "$OUT/memcheck-speed.log"
    ;;
  speed-prep)
    stamp speed-prep
    [ -d $T/l7b ] || $ODY testdata synth --shape llama2-7b --out $T/l7b > "$OUT/synth.log" 2>&1 || tail -3 "$OUT/synth.log"
    [ -d $T/l7b-rtn ] || $ODY quantize --model $T/l7b --out $T/l7b-rtn --recipe w4a8-rtn --no-sync > "$OUT/quantize-7b.log" 2>&1 ||
      tail -3 "$OUT/quantize-7b.log"
    du -sh $T/l7b $T/l7b-rtn
    ;;
  speed)
    stamp speed
    $RT speed --model $T/l7b-rtn --baseline $T/l7b --batch ${SPEED_BATCH:-1,8,16} --prompt 1024 --gen 128 \
      --repeats ${SPEED_REPEATS:-3} > "$OUT/speed-7b.json" 2> "$OUT/speed-7b.log"
    echo "speed rc=$?"; grep -vE "^progress" "$OUT/speed-7b.log" | tail -20
    ;;
  *) echo "unknown step $s"; exit 2 ;;
  esac
done
stamp done
