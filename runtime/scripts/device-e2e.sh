#!/usr/bin/env bash
# device-e2e.sh: the end-to-end checks of the model executor on the GPU machine (issue 14), run
# from the repository root after `device-run.sh build`:
#
#   ODY_BIN=bin/odyssey-linux-amd64 runtime/scripts/device-e2e.sh ppl-fp16 ppl-quant speed
#
# Data comes from .device-data (../shared/scripts/stage-for-device.sh models/small-llama-outliers
# models/stories260K-fp16 data/wikitext2 data/calib data/tinystories tokenizers/mistral; carry .device-data
# and bin).
#   ppl-fp16   FP16 path on the full WikiText-2 / TinyStories sets (compare with shared/golden/ppl.json)
#   ppl-quant  every preset's artifact of tiny-llama, small-llama-outliers and stories260K
#              (w8a8-smoothquant as its compressed-tensors export):
#              GPU perplexity against `eval ppl` (CPU) on the same windows (--compare-cpu)
#   speed      synthetic LLaMA-2-7B: FP16 checkpoint vs its w4a8-rtn artifact, and HF transformers;
#              then its w8a8-smoothquant compressed-tensors export alone (E2E_W8A8=0 skips it)
#   profile    the same two models: per-kernel profile of a decode step (odyssey-rt speed --profile)
#              at batch 1 and 16, beside the graph replay's step time; W4A8 with ODYSSEY_PDL=1 and
#              0 (PDL A/B), FP16 with PDL on (E2E_PROFILE_PDL="1 0" for both there too)
#   calib      GPU calibration (docs/gpu-calibration.md): quantize tiny-llama, small-llama-outliers
#              (and small-llama if staged) with w4a8-rtn, w4a8-fptq, w4a16-gptq, --device cpu and
#              --device cuda, compare the policies and the GPU perplexities of both artifacts
#              (goal: same policies, ppl within 0.1%), and time --device cuda on the synthetic 7B
#              (w4a8-fptq goal 300 s, w4a16-gptq 480 s); every part under `timeout`, about 9 min
#              at most; writes $E/calib.json and $E/calib.md, last line PASS or FAIL
#   cpu-rss    issue 10's CPU memory goal (≤ 4 GiB peak RSS at 7B): a 2-layer LLaMA-2-7B slice
#              quantized on the CPU (--device cpu) at the presets' 128×512 calibration with
#              w4a16-gptq, w4a8-fptq and w4a8-odyssey (E2E_RSS_PRESETS), each under a timeout
#              (E2E_RSS_TIMEOUT, 200 s); prints `cpu-rss PRESET peak_rss=… GiB wall=… s: met|MISSED`
#              and a last line `cpu-rss PASS` or `cpu-rss FAIL` (ptq/THROUGHPUT.md §3; no GPU used)
# Results: $OUT/e2e/*.json (tar them before the call ends: at most 8 files come back).
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/ody-out}
E=$OUT/e2e
mkdir -p "$E"
ODY=${ODY_BIN:-bin/odyssey-linux-amd64}
export ODYSSEY_RT=${ODYSSEY_RT:-$PWD/runtime/build/odyssey-rt}
# Every step needs the runtime: without it each command would fail one by one (a fresh machine
# has no build: run `runtime/scripts/device-run.sh build` first, in the same call).
if [ ! -x "$ODYSSEY_RT" ]; then
  echo "device-e2e: no runtime at $ODYSSEY_RT: run runtime/scripts/device-run.sh build first (in the same call: a new machine starts bare)" >&2
  exit 2
fi
D=.device-data
M=/tmp/ody-models
mkdir -p $M
WIKI=$D/data/wikitext2/wiki.test.raw
TS=$D/data/tinystories/tinystories_slice.txt
CAL=$D/data/calib/calib_mix.txt
WINDOWS=${E2E_WINDOWS:-64}
t0=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
# One line from a verify ppl --json answer: path, GPU ppl, and the CPU comparison when present.
summ() {
  python3 - "$1" <<'PY' 2>/dev/null || echo "(no JSON)"
import json, sys
d = json.load(open(sys.argv[1]))
c = d.get("cpu") or {}
print("path=%s ppl=%.6f windows=%s tok/s=%.0f" % (d.get("path"), d.get("ppl", 0), d.get("windows"), d.get("tokens_per_second", 0)),
      ("cpu_ppl=%.6f rel=%.2e met=%s" % (c.get("ppl", 0), c.get("relative_difference", 0), c.get("met"))) if c else "")
PY
}

# The synthetic model of shape $S (default llama2-7b) and its w4a8-rtn artifact, once per machine.
synth_models() {
  [ -d /tmp/$S ] || $ODY testdata synth --shape $S --out /tmp/$S > "$E/synth.log" 2>&1 || { tail -5 "$E/synth.log"; exit 1; }
  [ -d /tmp/$S-w4a8 ] || $ODY quantize --model /tmp/$S --recipe w4a8-rtn --out /tmp/$S-w4a8 --no-sync > "$E/q-$S.log" 2>&1 || { tail -5 "$E/q-$S.log"; exit 1; }
}

# model name, folder, data, seq-len, calibration text
models=(
  "tiny-llama testdata/tiny-llama $WIKI 512 $CAL"
  "small-llama-outliers $D/models/small-llama-outliers $WIKI 512 $CAL"
  "stories260K $D/models/stories260K-fp16 $TS 256 $TS"
)

for s in "$@"; do
  case $s in
  ppl-fp16)
    stamp ppl-fp16
    for m in "${models[@]}"; do
      read -r name dir data L _ <<< "$m"
      $ODY verify ppl --model "$dir" --data "$data" --seq-len "$L" --json > "$E/ppl-fp16-$name.json" 2> "$E/ppl-fp16-$name.log"
      echo "$name fp16 rc=$? $(summ "$E/ppl-fp16-$name.json") $(tail -1 "$E/ppl-fp16-$name.log" | cut -c1-200)"
    done
    ;;
  ppl-quant)
    stamp ppl-quant
    for m in "${models[@]}"; do
      read -r name dir data L cal <<< "$m"
      for preset in ${E2E_PRESETS:-w4a8-rtn w4a8-fptq w4a16-gptq w8a8-smoothquant}; do
        a=$M/$name-$preset
        # The Odyssey artifact stores int4 weights only: W8A8 is exported as compressed-tensors'
        # int-quantized form (the executor's W8A8 path, w8a8.cu).
        exp=()
        [ "$preset" = w8a8-smoothquant ] && exp=(--export compressed-tensors)
        $ODY quantize --model "$dir" --recipe $preset --calib "$cal" "${exp[@]}" --out "$a" --force --no-sync > "$E/q-$name-$preset.log" 2>&1 ||
          { echo "$name $preset: quantize failed"; tail -3 "$E/q-$name-$preset.log"; continue; }
        $ODY verify ppl --model "$a" --data "$data" --seq-len "$L" --max-windows "$WINDOWS" --compare-cpu --json \
          > "$E/ppl-$name-$preset.json" 2> "$E/ppl-$name-$preset.log"
        echo "$name $preset rc=$? $(summ "$E/ppl-$name-$preset.json") $(tail -1 "$E/ppl-$name-$preset.log" | cut -c1-200)"
      done
    done
    ;;
  profile)
    stamp profile
    S=${E2E_SHAPE:-llama2-7b}
    synth_models
    stamp "profile: models ready"
    for m in "w4a8 /tmp/$S-w4a8 ${E2E_PROFILE_PDL_W4A8:-1 0}" "fp16 /tmp/$S ${E2E_PROFILE_PDL:-1}"; do
      read -r name dir pdls <<< "$m"
      for pdl in $pdls; do
        f="$E/profile-$name-pdl$pdl"
        ODYSSEY_PDL=$pdl $ODYSSEY_RT speed --model "$dir" --batch ${E2E_PROFILE_BATCH:-1,16} --prompt 1024 --gen 64 \
          --repeats 3 --profile ${E2E_PROFILE_STEPS:-10} > "$f.json" 2> "$f.log"
        echo "profile $name ODYSSEY_PDL=$pdl rc=$?"
        grep -E "^profile|^  |ms/step|WARNING" "$f.log"
      done
    done
    ;;
  speed)
    stamp speed
    S=${E2E_SHAPE:-llama2-7b}
    synth_models
    stamp "speed: models ready"
    hf=()
    # E2E_HF_FILE: an hf_baseline.py answer measured earlier on the same GPU (the HF run takes
    # minutes of device time and does not change with our commits).
    [ -n "${E2E_HF_FILE:-}" ] && hf=(--hf "$E2E_HF_FILE")
    if [ "${E2E_HF:-1}" = 1 ] && [ -z "${E2E_HF_FILE:-}" ]; then
      timeout ${E2E_HF_TIMEOUT:-240} python3 runtime/bench/hf_baseline.py --model /tmp/$S --batch ${E2E_BATCH:-1,8,16,32,64} ${E2E_HF_ARGS:-} \
        --out "$E/hf-$S.json" > "$E/hf-$S.log" 2>&1 && hf=(--hf "$E/hf-$S.json")
      echo "hf rc=$? $(tail -2 "$E/hf-$S.log" | cut -c1-300)"
      stamp "speed: hf done"
    fi
    c=$(git rev-parse --short HEAD 2>/dev/null || echo "${ODY_COMMIT:-unknown}")
    $ODY verify speed --model /tmp/$S-w4a8 --baseline /tmp/$S --batch ${E2E_BATCH:-1,8,16,32,64} "${hf[@]}" \
      --out "$E/e2e-h200-$(date +%F)-${ODY_COMMIT:-$c}.json" --md "$E/e2e-h200-$(date +%F)-${ODY_COMMIT:-$c}.md" \
      > "$E/speed.txt" 2> "$E/speed.log"
    echo "speed rc=$?"; cat "$E/speed.txt"; tail -3 "$E/speed.log"
    # W8A8 row (E2E_W8A8=0 skips it): the same synthetic model through w8a8-smoothquant, exported
    # as compressed-tensors int-quantized. The synthetic model has no tokenizer, so SmoothQuant's
    # statistics come from --calib self, shrunk to 2 windows of 32 tokens (speed does not depend
    # on the smoothing factors; the preset's 128×512 would take many CPU minutes on a 7B).
    if [ "${E2E_W8A8:-1}" = 1 ]; then
      if [ ! -d /tmp/$S-w8a8 ]; then
        sed -e 's/^  samples: .*/  samples: 2/' -e 's/^  seq_len: .*/  seq_len: 32/' recipes/presets/w8a8-smoothquant.yaml > /tmp/w8a8-speed.yaml
        timeout ${E2E_W8A8_QTIMEOUT:-300} $ODY quantize --model /tmp/$S --recipe /tmp/w8a8-speed.yaml --calib self --export compressed-tensors \
          --out /tmp/$S-w8a8 --no-sync > "$E/q-$S-w8a8.log" 2>&1 || { echo "w8a8 quantize failed"; tail -5 "$E/q-$S-w8a8.log"; }
        stamp "speed: w8a8 model ready"
      fi
      [ -d /tmp/$S-w8a8 ] && $ODY verify speed --model /tmp/$S-w8a8 --batch ${E2E_BATCH:-1,8,16,32,64} \
        --out "$E/e2e-h200-$(date +%F)-${ODY_COMMIT:-$c}-w8a8.json" > "$E/speed-w8a8.txt" 2> "$E/speed-w8a8.log"
      echo "speed w8a8 rc=$?"; cat "$E/speed-w8a8.txt"; tail -3 "$E/speed-w8a8.log"
    fi
    ;;
  calib)
    # Every part has a timeout, so that one call of at most 9 minutes answers everything
    # (E2E_CALIB_BUDGET seconds for the whole step; a timed-out 7B run whose timeout reached
    # its goal has missed it, one cut short by the budget is reported UNKNOWN).
    stamp calib
    c0=$(date +%s)
    BUDGET=${E2E_CALIB_BUDGET:-530}
    rows=()
    cmodels=("tiny-llama testdata/tiny-llama $WIKI 512 $CAL" "small-llama-outliers $D/models/small-llama-outliers $WIKI 512 $CAL")
    [ -d $D/models/small-llama ] && cmodels+=("small-llama $D/models/small-llama $WIKI 512 $CAL")
    for m in "${cmodels[@]}"; do
      read -r name dir data L cal <<< "$m"
      for preset in ${E2E_CALIB_PRESETS-w4a8-rtn w4a8-fptq w4a16-gptq}; do
        pn=$(basename "$preset" .yaml)
        for dev in cpu cuda; do
          a=$M/calib-$name-$pn-$dev
          s0=$(date +%s.%N)
          timeout ${E2E_CALIB_SMALL_TIMEOUT:-120} $ODY quantize --model "$dir" --recipe "$preset" --calib "$cal" --device $dev \
            --out "$a" --force --no-sync --json > "$E/cq-$name-$pn-$dev.json" 2> "$E/cq-$name-$pn-$dev.log"
          rc=$?; secs=$(python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 1))" "$(date +%s.%N)" "$s0")
          ppl=""
          if [ $rc = 0 ]; then
            timeout 90 $ODY verify ppl --model "$a" --data "$data" --seq-len "$L" --max-windows "$WINDOWS" --json > "$E/cp-$name-$pn-$dev.json" 2>/dev/null
            ppl=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ppl'])" "$E/cp-$name-$pn-$dev.json" 2>/dev/null)
          else
            echo "$name $pn $dev: quantize rc=$rc: $(grep -v '^{' "$E/cq-$name-$pn-$dev.log" | tail -2 | cut -c1-300)"
          fi
          echo "$name $pn $dev rc=$rc ${secs}s ppl=${ppl:-nan}"
          rows+=("$name $pn $dev $rc $secs ${ppl:-nan}")
          rm -rf "$a"
        done
      done
    done
    stamp "calib 7B"
    # The synthetic LLaMA-2-7B (32 layers), 128 windows of 512 tokens of real text (the
    # presets' samples and seq_len; calib_mix.txt is long enough), --device cuda.
    S=${E2E_SHAPE:-llama2-7b}
    [ -d /tmp/$S ] || $ODY testdata synth --shape $S --out /tmp/$S > "$E/synth.log" 2>&1
    # synth writes no tokenizer; text calibration needs one of the model's vocabulary size
    # (LLaMA-2's 32000: Mistral's SentencePiece BPE; stage tokenizers/mistral).
    if [ ! -f /tmp/$S/tokenizer.json ]; then
      cp $D/tokenizers/mistral/tokenizer.json /tmp/$S/ 2>/dev/null ||
        echo "calib 7B: no $D/tokenizers/mistral/tokenizer.json (stage-for-device.sh tokenizers/mistral)"
    fi
    for pg in ${E2E_CALIB_7B-w4a8-fptq:300 w4a16-gptq:480}; do
      pn=${pg%%:*}; goal=${pg##*:}
      left=$(( BUDGET - ($(date +%s) - c0) ))
      to=$(( left < goal ? left : goal )); [ $to -lt 30 ] && to=30
      s0=$(date +%s.%N)
      timeout $to $ODY quantize --model /tmp/$S --recipe "$pn" --calib "$CAL" --device cuda --out /tmp/$S-calib-$pn \
        --force --no-sync --json > "$E/cq-$S-$pn.json" 2> "$E/cq-$S-$pn.log"
      rc=$?; secs=$(python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 1))" "$(date +%s.%N)" "$s0")
      if [ $rc = 0 ]; then verdict=$(python3 -c "print('met' if $secs <= $goal else 'MISSED')")
      elif [ $rc = 124 ] && [ $to -ge $goal ]; then verdict="MISSED (timeout at the goal)"
      elif [ $rc = 124 ]; then verdict="UNKNOWN (cut at ${to}s by E2E_CALIB_BUDGET; run it alone: E2E_CALIB_7B=$pg)"
      else verdict="FAILED"; fi
      echo "7B $pn --device cuda rc=$rc ${secs}s goal ${goal}s: $verdict $(grep -v '^{' "$E/cq-$S-$pn.log" | tail -1 | cut -c1-200)"
      rows+=("$S $pn cuda $rc $secs nan $goal")
      rm -rf /tmp/$S-calib-$pn
    done
    printf '%s\n' "${rows[@]}" | python3 runtime/scripts/calib-compare.py "$E" > "$E/calib.md"
    cat "$E/calib.md"
    stamp "calib done"
    ;;
  cpu-rss)
    # Peak RSS is the process's VmHWM, which quantize --json reports (peak_rss_bytes). This
    # machine has more cores than the 2 the table in THROUGHPUT.md §3 was measured on: the
    # per-goroutine buffers (gemm packing, statistics partials) add a few MB each.
    stamp cpu-rss
    L7=/tmp/l7-2layer
    [ -d $L7 ] || $ODY testdata synth --shape llama2-7b --layers 2 --out $L7 > "$E/synth-l7.log" 2>&1 || { tail -5 "$E/synth-l7.log"; exit 1; }
    cp $D/tokenizers/mistral/tokenizer.json $L7/ 2>/dev/null || echo "cpu-rss: no $D/tokenizers/mistral/tokenizer.json (stage-for-device.sh tokenizers/mistral)"
    verdict=PASS
    for pn in ${E2E_RSS_PRESETS-w4a16-gptq w4a8-fptq w4a8-odyssey}; do
      s0=$(date +%s)
      timeout ${E2E_RSS_TIMEOUT:-200} $ODY quantize --model $L7 --recipe $pn --calib "$CAL" --device cpu --out /tmp/l7-$pn \
        --force --no-sync --json > "$E/rss-$pn.json" 2> "$E/rss-$pn.log"
      rc=$?
      line=$(python3 -c "
import json, sys
d = json.load(open(sys.argv[1])); p = d.get('peak_rss_bytes', 0) / 2**30
print('peak_rss=%.2f GiB %s' % (p, 'met' if 0 < p <= 4 else 'MISSED'))" "$E/rss-$pn.json" 2>/dev/null || echo "peak_rss=? FAILED")
      [ $rc = 0 ] || line="rc=$rc FAILED $(grep -v '^{' "$E/rss-$pn.log" | tail -1 | cut -c1-200)"
      case $line in *met*) ;; *) verdict=FAIL ;; esac
      echo "cpu-rss $pn $line wall=$(( $(date +%s) - s0 )) s"
      rm -rf /tmp/l7-$pn
    done
    echo "cpu-rss $verdict"
    ;;
  sanitize)
    # compute-sanitizer around the executor as `odyssey verify` drives it (the wrapper keeps the
    # sanitizer's report out of the JSON on stdout), and racecheck on the attention kernels.
    stamp sanitize
    a=$M/tiny-llama-w4a8-rtn
    [ -d "$a" ] || $ODY quantize --model testdata/tiny-llama --recipe w4a8-rtn --out "$a" --force --no-sync > /dev/null 2>&1
    w=$M/tiny-llama-w4a16-gptq
    [ -d "$w" ] || $ODY quantize --model testdata/tiny-llama --recipe w4a16-gptq --calib self --out "$w" --force --no-sync > /dev/null 2>&1
    rt=$ODYSSEY_RT
    printf '#!/bin/sh\nexec compute-sanitizer --tool memcheck --error-exitcode 9 --log-file %s/san-%%p.log %s "$@"\n' "$E" "$rt" > /tmp/rt-san.sh
    chmod +x /tmp/rt-san.sh
    ODYSSEY_RT=/tmp/rt-san.sh $ODY verify ppl --model "$a" --data testdata/text/sample.txt --seq-len 64 --max-windows 8 > /dev/null 2> "$E/san-ppl.err"
    echo "memcheck verify ppl (w4a8) rc=$?"
    ODYSSEY_RT=/tmp/rt-san.sh $ODY verify speed --model "$w" --baseline testdata/tiny-llama --batch 1,3 --prompt 70 --gen 4 --repeats 1 > /dev/null 2> "$E/san-speed.err"
    echo "memcheck verify speed (w4a16 + fp16, graphs) rc=$?"
    grep -h "ERROR SUMMARY" "$E"/san-*.log | sort | uniq -c
    compute-sanitizer --tool racecheck $(dirname "$rt")/odyssey-rt test layers --quick --only prefill,decode,norm > "$E/racecheck-layers.log" 2>&1
    echo "racecheck layers rc=$?"; grep -h "RACECHECK SUMMARY" "$E/racecheck-layers.log"
    ;;
  *) echo "device-e2e: unknown step $s" >&2; exit 2 ;;
  esac
done
stamp done
