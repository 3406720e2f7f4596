#!/usr/bin/env bash
# device-tp.sh: issue 11 (multi-GPU runs) on a machine with several GPUs, one process per GPU over
# NCCL, NVLink multicast off (NCCL_NVLS_ENABLE=0, exported here and by launch-allreduce.sh).
# Run from the repository root after `device-run.sh build`:
#
#   ODY_BIN=bin/odyssey-linux-amd64 runtime/scripts/device-tp.sh env allreduce tp-speed
#
#   env        $OUT/tp/env.txt: nvidia-smi -L and topo -m, the driver, the NCCL version, the commit, the date
#   allreduce  odyssey-rt bench allreduce on each GPU count of TP_GPUS that is visible (default 2 4 8):
#              sizes 256K..256M, INT8 and INT4 (group 128) against ncclAllReduce fp16/bf16 of the same run
#              (algbw, busbw, max error, ranks identical); $OUT/tp/allreduce-<n>gpu/
#   tp-speed   the tensor-parallel executor on a synthetic TP_SHAPE (default llama2-70b; `odyssey testdata
#              synth`, then `quantize --recipe w4a8-rtn`; made once under TP_MODELS, default /tmp): for each
#              TP in TP_TP (default 4 8) and each all-reduce in TP_BITS (16 = ncclAllReduce, 8 and 4 = the
#              compressed all-reduce, group 128), `odyssey-rt speed --tp` on the FP16 checkpoint (bits 16 only,
#              the baseline) and on the W4A8 artifact: TTFT at prompt TP_PROMPT (1024) and decode tokens/s
#              at TP_BATCH (1,8); every rank's tokens must agree (launch-allreduce.sh checks the hashes).
#              $OUT/tp/speed-tp<T>-<model>-b<bits>/ (one JSON per rank) and $OUT/tp/tp-speed.md, whose
#              last lines compare each compressed run's TTFT with the NCCL one (goal at TP 8: ≥ 1.15×).
#              TP_LAYERS=N (0 = the shape's own) synthesizes only N decoder layers (`synth --layers`): the
#              all-reduce happens twice per layer, so a slice keeps the per-layer cost and the NCCL-vs-
#              compressed ratio and fits one device call (the 80-layer 70B is 140 GB of FP16 to write and
#              quantize before any run, and the machine goes back 30 s after a call: nothing persists);
#              the table says how many layers ran.
# Knobs: TP_GPUS, TP_SHAPE, TP_LAYERS, TP_TP, TP_BITS, TP_BATCH, TP_PROMPT, TP_GEN (64), TP_REPEATS (3),
#   TP_THRESHOLD (values: all-reduces below it take plain NCCL, `odyssey-rt speed --tp-threshold`;
#   default 0, every call compressed), TP_TIMEOUT (per launch, s; default 1200), TP_MODELS.
# Everything a step writes is under $OUT/tp; tar it before the call ends (only a few files return).
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/ody-out}
T=$OUT/tp
mkdir -p "$T"
ODY=${ODY_BIN:-bin/odyssey-linux-amd64}
. "$(dirname "$0")/commit-of-binary.sh"
RT=runtime/build/odyssey-rt
L=runtime/scripts/launch-allreduce.sh
[ -x "$RT" ] || { echo "device-tp: $RT is not built (runtime/scripts/device-run.sh build)" >&2; exit 2; }
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
stamp() { echo "== $1 ($(date -u +%H:%M:%S), $ngpu GPUs)"; }

for step in "$@"; do
  case $step in
  env)
    stamp env
    {
      echo "date: $(date -u +%FT%TZ)"
      echo "commit: $(ody_commit "$ODY")"
      nvidia-smi -L
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
      echo "topology (nvidia-smi topo -m):"
      nvidia-smi topo -m
      echo "NCCL: $(python3 -c 'import torch; print(".".join(map(str, torch.cuda.nccl.version())))' 2>/dev/null || echo '?') (PyTorch's);" \
        "$(ldconfig -p 2>/dev/null | grep -m1 libnccl.so || echo 'libnccl not in ldconfig')"
    } > "$T/env.txt" 2>&1
    cat "$T/env.txt"
    ;;
  allreduce)
    stamp allreduce
    for n in ${TP_GPUS:-2 4 8}; do
      if [ "$n" -gt "$ngpu" ]; then echo "allreduce: $n GPUs asked, $ngpu visible: skipped"; continue; fi
      timeout $(( ${TP_TIMEOUT:-1200} + 120 )) $L --gpus "$n" --timeout "${TP_TIMEOUT:-1200}" --out "$T/allreduce-${n}gpu" -- \
        --sizes 256K..256M --bits 8,4 --group 128 > /dev/null 2> "$T/allreduce-${n}gpu.log"
      echo "allreduce $n GPUs rc=$?"; grep -E "^ *[0-9]+ B|ranks identical|error" "$T/allreduce-${n}gpu.log" | head -40
    done
    ;;
  tp-speed)
    stamp tp-speed
    SH=${TP_SHAPE:-llama2-70b}
    LAYERS=${TP_LAYERS:-0}
    S=$SH
    [ "$LAYERS" != 0 ] && S=$SH-${LAYERS}l
    M=${TP_MODELS:-/tmp}
    if [ ! -d "$M/$S" ]; then
      "$ODY" testdata synth --shape "$SH" --layers "$LAYERS" --out "$M/$S" > "$T/synth.log" 2>&1 || { tail -5 "$T/synth.log"; exit 1; }
    fi
    if [ ! -d "$M/$S-w4a8" ]; then
      "$ODY" quantize --model "$M/$S" --recipe w4a8-rtn --out "$M/$S-w4a8" --no-sync > "$T/quantize.log" 2>&1 ||
        { tail -5 "$T/quantize.log"; exit 1; }
    fi
    stamp "tp-speed: models ready"
    for tp in ${TP_TP:-4 8}; do
      if [ "$tp" -gt "$ngpu" ]; then echo "tp-speed: TP $tp needs $tp GPUs, $ngpu visible: skipped"; continue; fi
      for bits in ${TP_BITS:-16 8 4}; do
        for model in "$S" "$S-w4a8"; do
          [ "$model" = "$S" ] && [ "$bits" != 16 ] && continue  # the FP16 baseline with NCCL only
          d="$T/speed-tp$tp-$model-b$bits"
          timeout $(( ${TP_TIMEOUT:-1200} + 120 )) $L --gpus "$tp" --timeout "${TP_TIMEOUT:-1200}" --command speed --out "$d" -- \
            --model "$M/$model" --batch "${TP_BATCH:-1,8}" --prompt "${TP_PROMPT:-1024}" --gen "${TP_GEN:-64}" \
            --repeats "${TP_REPEATS:-3}" --tp-bits "$bits" --tp-group 128 --tp-threshold "${TP_THRESHOLD:-0}" \
            > /dev/null 2> "$d.log"
          echo "tp-speed TP $tp $model bits $bits rc=$?"; grep -E "ms/step|token hashes|error" "$d.log" | head -6
        done
      done
    done
    python3 - "$T" <<'PY' | tee "$T/tp-speed.md"
import glob, json, os, re, sys
T = sys.argv[1]
runs = {}
for f in sorted(glob.glob(os.path.join(T, "speed-tp*-b*/speed-rank0.json"))):
    m = re.search(r"speed-tp(\d+)-(.+)-b(\d+)/", f)
    try:
        d = json.load(open(f))
    except Exception:
        continue
    for r in d.get("rows", []):
        runs[(int(m.group(1)), m.group(2), int(m.group(3)), r["batch"])] = r
print(f"Models under {T}: {sorted({k[1] for k in runs})} (a name ending -<N>l is a slice of N decoder layers: TP_LAYERS).\n")
print("| TP | model | all-reduce | batch | TTFT ms | decode tok/s | TTFT vs NCCL |")
print("|---:|---|---|---:|---:|---:|---:|")
for (tp, model, bits, b), r in sorted(runs.items()):
    base = runs.get((tp, model, 16, b))
    ratio = f"{base['ttft_ms'] / r['ttft_ms']:.2f}×" if base and bits != 16 else "–"
    ar = "NCCL fp16" if bits == 16 else f"INT{bits} g128"
    print(f"| {tp} | {model} | {ar} | {b} | {r['ttft_ms']:.2f} | {r['decode_tokens_per_s']:.1f} | {ratio} |")
for (tp, model, bits, b), r in sorted(runs.items()):
    base = runs.get((tp, model, 16, b))
    if tp == 8 and bits != 16 and base:
        x = base["ttft_ms"] / r["ttft_ms"]
        print(f"goal TP 8 {model} INT{bits} batch {b}: TTFT {x:.2f}× NCCL's (target ≥ 1.15×): {'met' if x >= 1.15 else 'NOT met'}")
PY
    ;;
  *)
    echo "device-tp: unknown step $step (env, allreduce, tp-speed)" >&2
    exit 2
    ;;
  esac
done
