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
#              then its w8a8-smoothquant compressed-tensors export alone (E2E_W8A8=0 skips it);
#              E2E_KV_CACHE=fp16,int8 times the artifact with both KV caches (goals for each)
#   profile    the same two models: per-kernel profile of a decode step (odyssey-rt speed --profile)
#              at batch 1 and 16, beside the graph replay's step time; W4A8 with ODYSSEY_PDL=1 and
#              0 (PDL A/B), FP16 with PDL on (E2E_PROFILE_PDL="1 0" for both there too); then the
#              prefill (speed --profile-prefill, batch E2E_PREFILL_BATCH=1,8): "prefill gap batch B"
#              tables FP16 vs W4A8 per kernel kind, the GEMM configs at the prefill's M, and W4A8
#              again with ODYSSEY_WGMMA_V3=1 and =p (wgmma v3 / v3p A/B; E2E_PREFILL_V3)
#              W4A8 with PDL on also with ODYSSEY_DECODE_FUSE=0 (the unfused gate/up + swiglu), then
#              `FUSE profile` lines: both paths' ms/step and generated-token hashes (must match)
#   prefill-rows  the prefill row kernels v2 (issue 14): GPU ppl with ODYSSEY_PREFILL_ROWS_V2=0 and
#              the default must be the same double (tiny-llama, small-llama-outliers; FP16 and
#              w4a8-rtn; v2 within 0.2% of the CPU), then the 7B prefill profile with both (changed
#              kinds' µs, TTFT, token hashes equal); last line `prefill-rows e2e: PASS|FAIL`
#   speed-small  the real small models (tiny-llama, small-llama-outliers, stories260K): FP16 vs
#              w4a8-rtn, both KV caches, batch 1/8/16 (E2E_SMALL_BATCH), lengths that fit each model
#   kv8        the int8 KV cache (runtime/NOTES.md, "int8 KV cache"): `test layers --only kv8`,
#              `bench layers --only kv8` (attention fp16 vs int8 cache, batch 1/2/4/8/16/64, ctx 1024),
#              perplexity with --kv-cache fp16 vs int8 on tiny-llama, small-llama-outliers and
#              stories260K (FP16 checkpoint and its w4a8-rtn artifact: the relative change is the
#              int8 cache's cost), decode speed of the synthetic 7B w4a8-rtn with both caches at
#              batch 1,8,16,32,64 (one load, `odyssey-rt speed --kv-cache fp16,int8`) beside its
#              FP16 checkpoint (fp16 cache). E2E_KV8_PARTS="test bench ppl speed" picks parts (a
#              fresh machine's 7B synth + quantize is the long one); E2E_KV8_PPL_MAX (0.05) is the
#              relative ppl change beyond which the int8 cache is called broken. Last line
#              `kv8: PASS|FAIL` with the ppl cost and the decode speed-ups.
#   calib-exact  ODYSSEY_CALIB_PRECISION=exact (the CPU's canonical arithmetic on the GPU):
#              quantize tiny-llama and small-llama-outliers with w4a8-fptq and w4a16-gptq, --device
#              cpu and --device cuda; `EXACT name preset: tensors: N tensors, 0 differ; ppl ...:
#              MATCH` per pair, last line `calib-exact: PASS|FAIL`. Needs a Go binary with the
#              determ branch. E2E_EXACT_MODELS, E2E_EXACT_PRESETS, E2E_EXACT_TIMEOUT (150 s).
#   calib      GPU calibration (docs/gpu-calibration.md): quantize tiny-llama, small-llama-outliers
#              (and small-llama if staged) with w4a8-rtn, w4a8-fptq, w4a16-gptq, --device cpu and
#              --device cuda, compare the policies and the GPU perplexities of both artifacts
#              (goal: same policies, ppl within 0.1%), and time --device cuda on the synthetic 7B
#              (w4a8-fptq goal 300 s, w4a16-gptq 480 s); every part under `timeout`, about 9 min
#              at most; writes $E/calib.json and $E/calib.md, last line PASS or FAIL.
#              E2E_CALIB_PRECISIONS="fp32 fp16" (the default) runs --device cuda once per
#              precision of the GPU forward (ODYSSEY_CALIB_PRECISION; rows cuda-fp32, cuda-fp16);
#              fp32 rows are the A/B (fp16 is the default), reported but not required to meet 0.1%.
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
. "$(dirname "$0")/commit-of-binary.sh"
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

# fuse_compare STEP FUSED.log UNFUSED.log: per batch, the decode ms/step of the fused path
# (ODYSSEY_DECODE_FUSE=1) and the unfused one, and their generated-token hashes (odyssey-rt
# speed's "tokens HASH"): a `FUSE STEP batch B` line each, then `FUSE STEP PASS` when every
# batch's hashes are equal (and present), else `FUSE STEP FAIL`.
fuse_compare() {
  local step=$1 a=$2 b=$3 ok=1 n=0
  local re='s/.* batch \([0-9]*\)[^:]*: TTFT .* decode \([0-9.]*\) ms\/step (\([0-9.]*\) tokens\/s).* tokens \([0-9a-f]*\)$/\1 \2 \3 \4/p'
  while read -r bb ms tps h; do
    read -r _ ms0 tps0 h0 <<< "$(sed -n "$re" "$b" | awk -v B="$bb" '$1 == B' | head -1)"
    n=$((n + 1))
    local same=MATCH
    [ -n "$h" ] && [ "$h" = "${h0:-}" ] || { same=DIFFER; ok=0; }
    echo "FUSE $step batch $bb: fused ${ms} ms/step (${tps} tok/s) tokens $h | unfused ${ms0:-?} ms/step (${tps0:-?} tok/s) tokens ${h0:-?} | $same"
  done < <(sed -n "$re" "$a" | grep -v '^$' | awk '!seen[$1]++')
  [ "$n" -gt 0 ] && [ "$ok" = 1 ] && echo "FUSE $step PASS (token hashes equal at every batch)" || echo "FUSE $step FAIL (hashes differ or no rows parsed: $a, $b)"
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
    # name dir "pdl:fuse ..." (fuse 0: ODYSSEY_DECODE_FUSE=0, the unfused gate/up + swiglu)
    for m in "w4a8 /tmp/$S-w4a8 ${E2E_PROFILE_PDL_W4A8:-1:1 1:0 0:1}" "fp16 /tmp/$S ${E2E_PROFILE_PDL:-1}:1"; do
      read -r name dir runs <<< "$m"
      for run in $runs; do
        pdl=${run%%:*}; fuse=${run##*:}
        f="$E/profile-$name-pdl$pdl"; [ "$fuse" = 0 ] && f="$f-nofuse"
        ODYSSEY_PDL=$pdl ODYSSEY_DECODE_FUSE=$fuse $ODYSSEY_RT speed --model "$dir" --batch ${E2E_PROFILE_BATCH:-1,16} --prompt 1024 --gen 64 \
          --repeats 3 --profile ${E2E_PROFILE_STEPS:-10} > "$f.json" 2> "$f.log"
        echo "profile $name ODYSSEY_PDL=$pdl ODYSSEY_DECODE_FUSE=$fuse rc=$?"
        grep -E "^profile|^  |ms/step|WARNING" "$f.log"
      done
    done
    fuse_compare profile "$E/profile-w4a8-pdl1.log" "$E/profile-w4a8-pdl1-nofuse.log"
    # Prefill (issues 12/14: W4A8 TTFT was 0.82x FP16 at b1): per-kernel times of one prefill of
    # the 1024-token prompt, FP16 (baseline) and W4A8 in one process, then the "prefill gap batch
    # B" tables (kind, fp16 µs, w4a8 µs, diff, ratio; sum and TTFT) and the GEMM config each
    # linear gets at the prefill's M. Then W4A8 alone with the wgmma v3 kernel (ODYSSEY_WGMMA_V3=1)
    # and v3p (=p, persistent grid): their tables beside the v2 one above (same kinds).
    f="$E/profile-prefill"
    $ODYSSEY_RT speed --baseline "/tmp/$S" --model "/tmp/$S-w4a8" --batch ${E2E_PREFILL_BATCH:-1,8} --prompt 1024 \
      --gen 8 --repeats 3 --profile-prefill ${E2E_PREFILL_RUNS:-3} > "$f.json" 2> "$f.log"
    echo "profile prefill (fp16 vs w4a8, wgmma v2) rc=$?"
    grep -E "^prefill|^  |TTFT|WARNING" "$f.log"
    for v3 in ${E2E_PREFILL_V3:-1 p}; do  # 1: wgmma v3, p: v3 on a persistent grid
      f="$E/profile-prefill-v3$v3"
      ODYSSEY_WGMMA_V3=$v3 $ODYSSEY_RT speed --model "/tmp/$S-w4a8" --batch ${E2E_PREFILL_BATCH:-1,8} --prompt 1024 \
        --gen 8 --repeats 3 --profile-prefill ${E2E_PREFILL_RUNS:-3} > "$f.json" 2> "$f.log"
      echo "profile prefill (w4a8, ODYSSEY_WGMMA_V3=$v3) rc=$?"
      grep -E "^prefill|^  |TTFT|WARNING" "$f.log"
    done
    ;;
  prefill-rows)
    stamp prefill-rows
    # Issue 14 prefill row kernels v2 (runtime/NOTES.md, last section) end to end. (1) GPU
    # perplexity with v1 (ODYSSEY_PREFILL_ROWS_V2=0) and v2 (the default: every window has ≥ 256
    # rows) must be the SAME double (the kernels are bit-identical, so every logit is), on
    # tiny-llama and small-llama-outliers, FP16 and w4a8-rtn, and v2 within 0.2% of the CPU
    # (--compare-cpu). (2) The synthetic 7B prefill profile (FP16 baseline vs W4A8, batch 1,
    # prompt 1024) with v1 and v2: the changed kinds' µs, TTFT, and the generated-token hashes
    # (equal). Last line `prefill-rows e2e: PASS|FAIL`.
    ok=1
    pyppl='import json,sys; print(repr(json.load(open(sys.argv[1]))["ppl"]))'
    for m in "${models[@]:0:2}"; do
      read -r name dir data L cal <<< "$m"
      a=$M/$name-w4a8-rtn
      [ -d "$a" ] || $ODY quantize --model "$dir" --recipe w4a8-rtn --calib "$cal" --out "$a" --force --no-sync \
        > "$E/q-$name-w4a8-rtn.log" 2>&1 || { echo "$name: quantize failed"; ok=0; continue; }
      for mdl in "$dir" "$a"; do
        tag=$name$([ "$mdl" = "$a" ] && echo -w4a8-rtn)
        for v in 0 1; do
          ODYSSEY_PREFILL_ROWS_V2=$v $ODY verify ppl --model "$mdl" --data "$data" --seq-len "$L" --max-windows "$WINDOWS" \
            --compare-cpu --json > "$E/ppl-rows$v-$tag.json" 2> "$E/ppl-rows$v-$tag.log"
        done
        p0=$(python3 -c "$pyppl" "$E/ppl-rows0-$tag.json" 2>/dev/null)
        p1=$(python3 -c "$pyppl" "$E/ppl-rows1-$tag.json" 2>/dev/null)
        same=MATCH
        [ -n "$p0" ] && [ "$p0" = "$p1" ] || { same=DIFFER; ok=0; }
        python3 -c 'import json,sys; sys.exit(0 if (json.load(open(sys.argv[1])).get("cpu") or {}).get("met") else 1)' \
          "$E/ppl-rows1-$tag.json" 2>/dev/null || { same="$same, CPU NOT met"; ok=0; }
        echo "PREFILL-ROWS ppl $tag: v1 $p0 v2 $p1 $same | v2 $(summ "$E/ppl-rows1-$tag.json")"
      done
    done
    S=${E2E_SHAPE:-llama2-7b}
    synth_models
    stamp "prefill-rows: models ready"
    for v in 0 1; do
      f="$E/prefill-rows-v$v"
      ODYSSEY_PREFILL_ROWS_V2=$v $ODYSSEY_RT speed --baseline "/tmp/$S" --model "/tmp/$S-w4a8" --batch 1 --prompt 1024 \
        --gen 8 --repeats 3 --profile-prefill ${E2E_PREFILL_RUNS:-3} > "$f.json" 2> "$f.log"
      echo "profile prefill ODYSSEY_PREFILL_ROWS_V2=$v rc=$?"
    done
    # "prefill gap" table rows: kind fp16 w4a8 diff ratio.
    for k in attn_norm rope kv_append o_quant mlp_norm swiglu final_norm TTFT; do
      r0=$(awk -v K=$k '/^prefill gap/{g=1} g && $1==K {print $2, $3; exit}' "$E/prefill-rows-v0.log")
      r1=$(awk -v K=$k '/^prefill gap/{g=1} g && $1==K {print $2, $3; exit}' "$E/prefill-rows-v1.log")
      echo "PREFILL-ROWS 7B $k (us, fp16 w4a8): v1 ${r0:-?} | v2 ${r1:-?}"
    done
    h0=$(grep -o 'tokens [0-9a-f]*$' "$E/prefill-rows-v0.log" | sort | tr '\n' ' ')
    h1=$(grep -o 'tokens [0-9a-f]*$' "$E/prefill-rows-v1.log" | sort | tr '\n' ' ')
    if [ -n "$h0" ] && [ "$h0" = "$h1" ]; then echo "PREFILL-ROWS 7B token hashes MATCH: $h1"; else echo "PREFILL-ROWS 7B token hashes DIFFER: v1 $h0| v2 $h1"; ok=0; fi
    [ $ok = 1 ] && echo "prefill-rows e2e: PASS" || echo "prefill-rows e2e: FAIL"
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
    c=$(ody_commit "$ODY")
    # Files of another shape carry it (e2e-13b-h200-…); the 7B's are plain e2e-h200-….
    sh=""; [ "$S" != llama2-7b ] && sh="${S#llama2-}-"
    $ODY verify speed --model /tmp/$S-w4a8 --baseline /tmp/$S --batch ${E2E_BATCH:-1,8,16,32,64} "${hf[@]}" \
      --kv-cache ${E2E_KV_CACHE:-fp16} --out "$E/e2e-${sh}h200-$(date +%F)-$c.json" --md "$E/e2e-${sh}h200-$(date +%F)-$c.md" \
      > "$E/speed.txt" 2> "$E/speed.log"
    echo "speed rc=$?"; cat "$E/speed.txt"; tail -3 "$E/speed.log"
    # The decode fusion A/B (issue 14): the W4A8 model alone, fused (ODYSSEY_DECODE_FUSE=all: the
    # w4a8-rtn model's down_proj input is per token, which the default leaves unfused) and
    # ODYSSEY_DECODE_FUSE=0, same prompts; `FUSE speed` lines compare ms/step and token hashes.
    for fuse in all 0; do
      ODYSSEY_DECODE_FUSE=$fuse $ODYSSEY_RT speed --model /tmp/$S-w4a8 --batch ${E2E_FUSE_BATCH:-1,8} --prompt 1024 --gen 128 \
        --repeats 3 > "$E/speed-fuse$fuse.json" 2> "$E/speed-fuse$fuse.log"
      echo "speed w4a8 ODYSSEY_DECODE_FUSE=$fuse rc=$?"; grep -E "ms/step|WARNING" "$E/speed-fuse$fuse.log"
    done
    fuse_compare speed "$E/speed-fuseall.log" "$E/speed-fuse0.log"
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
        --out "$E/e2e-${sh}h200-$(date +%F)-$c-w8a8.json" > "$E/speed-w8a8.txt" 2> "$E/speed-w8a8.log"
      echo "speed w8a8 rc=$?"; cat "$E/speed-w8a8.txt"; tail -3 "$E/speed-w8a8.log"
    fi
    ;;
  speed-small)
    stamp speed-small
    # Issue 14's "plus the real small models": each model's FP16 checkpoint against its w4a8-rtn
    # artifact (quantized here with the calibration text), both KV caches, batch 1/8/16. The prompt
    # and generated lengths fit each model's max_position_embeddings (tiny-llama and
    # small-llama-outliers 1024: prompt 512 + 128; stories260K 512: prompt 256 + 64). Results:
    # e2e-small-<model>-h200-<date>-<commit>.{json,md} under $E.
    c=$(ody_commit "$ODY")
    for m in "${models[@]}"; do
      read -r name dir _ L cal <<< "$m"
      p=512 g=128
      [ "$L" -lt 512 ] && p=256 g=64
      a=$M/$name-w4a8-rtn
      [ -d "$a" ] || $ODY quantize --model "$dir" --recipe w4a8-rtn --calib "$cal" --out "$a" --no-sync > "$E/q-$name-w4a8-rtn.log" 2>&1 ||
        { echo "$name: quantize failed"; tail -3 "$E/q-$name-w4a8-rtn.log"; continue; }
      f="$E/e2e-small-$name-h200-$(date +%F)-$c"
      $ODY verify speed --model "$a" --baseline "$dir" --batch ${E2E_SMALL_BATCH:-1,8,16} --prompt $p --gen $g --repeats 3 \
        --kv-cache fp16,int8 --out "$f.json" --md "$f.md" --force > "$E/speed-small-$name.txt" 2> "$E/speed-small-$name.log"
      echo "$name speed rc=$?"; grep -E "^\| " "$E/speed-small-$name.txt" | head -12; tail -2 "$E/speed-small-$name.log"
    done
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
        for dev in cpu $(for p in ${E2E_CALIB_PRECISIONS-fp32 fp16}; do echo cuda-$p; done); do
          a=$M/calib-$name-$pn-$dev
          s0=$(date +%s.%N)
          # cuda-fp32 / cuda-fp16: --device cuda with ODYSSEY_CALIB_PRECISION=fp32 / fp16.
          prec=""; [ "${dev#cuda-}" != "$dev" ] && prec=${dev#cuda-}
          ODYSSEY_CALIB_PRECISION=$prec timeout ${E2E_CALIB_SMALL_TIMEOUT:-120} $ODY quantize --model "$dir" --recipe "$preset" \
            --calib "$cal" --device ${dev%%-*} \
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
  calib-exact)
    # Issue 10's goal met exactly: the GPU calibration in the CPU's canonical arithmetic
    # (ODYSSEY_CALIB_PRECISION=exact) must give the CPU-calibrated artifact, tensor for tensor
    # (sha256 of every tensor's dtype, shape and bytes), and the same perplexity. The Go binary
    # must contain the determ branch (docs/determinism.md). E2E_EXACT_PRESETS, E2E_EXACT_MODELS.
    # A model NAME:synth:SHAPE:LAYERS is made by `odyssey testdata synth` (random weights of a
    # real family's shape: qwen2-7b has q/k/v biases and 152064 ids, mistral-7b and llama3-8b
    # GQA) with a staged tokenizer (qwen3's for qwen2, else Mistral's: any ids below the
    # vocabulary do for random weights). E2E_EXACT_SAMPLES=NxL calibrates on N windows of L
    # tokens (a recipe file with the preset as its base) so that the CPU run of a 7B slice
    # takes seconds. For the families:
    #   E2E_EXACT_SAMPLES=16x256 E2E_EXACT_MODELS="qwen2:synth:qwen2-7b:2 mistral:synth:mistral-7b:2
    #   llama3:synth:llama3-8b:2" device-e2e.sh calib-exact
    stamp calib-exact
    ok=1; n=0
    for m in ${E2E_EXACT_MODELS-tiny-llama:testdata/tiny-llama small-llama-outliers:$D/models/small-llama-outliers}; do
      name=${m%%:*}; dir=${m#*:}
      case $dir in
        synth:*)
          spec=${dir#synth:}; shape=${spec%%:*}; layers=${spec#*:}
          dir=$M/synth-$shape-${layers}l
          if [ ! -f "$dir/tokenizer.json" ]; then
            mkdir -p $M
            $ODY testdata synth --shape "$shape" --layers "$layers" --out "$dir" --force > "$E/synth-$shape.log" 2>&1 ||
              { echo "calib-exact: synth $shape failed: $(tail -1 "$E/synth-$shape.log")"; ok=0; continue; }
            case $shape in
              qwen2*) gunzip -c $D/tokenizers/qwen3/tokenizer.json.gz > "$dir/tokenizer.json" ;;
              *) cp $D/tokenizers/mistral/tokenizer.json "$dir/" ;;
            esac || { echo "calib-exact: no staged tokenizer for $shape (stage tokenizers/qwen3 and tokenizers/mistral)"; ok=0; continue; }
          fi
          ;;
      esac
      for preset0 in ${E2E_EXACT_PRESETS-w4a8-fptq w4a16-gptq}; do
        preset=$preset0
        if [ -n "${E2E_EXACT_SAMPLES:-}" ]; then
          mkdir -p $M
          preset=$M/recipe-$preset0-${E2E_EXACT_SAMPLES}.yaml
          printf 'version: 1\nbase: %s\ncalibration:\n  samples: %s\n  seq_len: %s\n' "$preset0" \
            "${E2E_EXACT_SAMPLES%%x*}" "${E2E_EXACT_SAMPLES##*x}" > "$preset"
        fi
        ppls=()
        for dev in cpu cuda; do
          a=$M/exact-$name-$preset0-$dev
          s0=$(date +%s.%N)
          # E2E_EXACT_PRECISION="" leaves the precision to odyssey's default (which must be exact).
          prec=""; [ $dev = cuda ] && prec=${E2E_EXACT_PRECISION-exact}
          ODYSSEY_CALIB_PRECISION=$prec timeout ${E2E_EXACT_TIMEOUT:-150} $ODY quantize --model "$dir" --recipe "$preset" \
            --calib "$CAL" --device $dev --out "$a" --force --no-sync --json > "$E/xq-$name-$preset0-$dev.json" 2> "$E/xq-$name-$preset0-$dev.log"
          rc=$?; secs=$(python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 1))" "$(date +%s.%N)" "$s0")
          ppl=nan
          if [ $rc = 0 ]; then
            timeout 90 $ODY verify ppl --model "$a" --data "$WIKI" --seq-len 512 --max-windows "$WINDOWS" --json > "$E/xp-$name-$preset0-$dev.json" 2>/dev/null
            ppl=$(python3 -c "import json,sys; print(repr(json.load(open(sys.argv[1]))['ppl']))" "$E/xp-$name-$preset0-$dev.json" 2>/dev/null || echo nan)
          else
            echo "$name $preset0 $dev: quantize rc=$rc: $(grep -v '^{' "$E/xq-$name-$preset0-$dev.log" | tail -2 | cut -c1-300)"
            ok=0
          fi
          echo "$name $preset0 --device $dev${prec:+ (precision $prec)} rc=$rc ${secs}s ppl=$ppl"
          ppls+=("$ppl")
        done
        # Tensor hashes of every .safetensors file (file name, tensor name, dtype, shape, bytes).
        cmp=$(python3 - "$M/exact-$name-$preset0-cpu" "$M/exact-$name-$preset0-cuda" <<'PY'
import hashlib, json, os, struct, sys
def tensors(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in sorted(files):
            if not f.endswith(".safetensors"):
                continue
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                hdr = json.loads(fh.read(n))
                base = 8 + n
                for k, v in sorted(hdr.items()):
                    if k == "__metadata__":
                        continue
                    b, e = v["data_offsets"]
                    fh.seek(base + b)
                    h = hashlib.sha256(json.dumps([v["dtype"], v["shape"]]).encode() + fh.read(e - b)).hexdigest()
                    out[os.path.relpath(p, d) + ":" + k] = h
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
print("%d tensors, %d differ%s" % (len(a), len(diff), (" (first: %s)" % ", ".join(diff[:4])) if diff else ""))
sys.exit(0 if a and not diff else 1)
PY
)
        trc=$?
        same_ppl=0; [ "${ppls[0]}" != nan ] && [ "${ppls[0]}" = "${ppls[1]}" ] && same_ppl=1
        verdict=MATCH; [ $trc = 0 ] && [ $same_ppl = 1 ] || { verdict=DIFFER; ok=0; }
        echo "EXACT $name $preset0: tensors: $cmp; ppl cpu ${ppls[0]} cuda ${ppls[1]}: $verdict"
        n=$((n + 1))
        rm -rf "$M/exact-$name-$preset0-cpu" "$M/exact-$name-$preset0-cuda"
      done
    done
    echo "calib-exact: $([ $ok = 1 ] && [ $n -gt 0 ] && echo PASS || echo FAIL) ($n artifact pairs)"
    ;;
  kv8)
    stamp kv8
    K=$E/kv8
    mkdir -p "$K"
    parts=" ${E2E_KV8_PARTS:-test bench ppl speed} "
    if [[ $parts == *" test "* ]]; then
      $ODYSSEY_RT test layers --only kv8 > "$K/test.json" 2> "$K/test.log"
      echo "kv8 test rc=$? $(tail -1 "$K/test.log")"
      grep FAIL "$K/test.log" | head -5 | cut -c1-300
    fi
    if [[ $parts == *" bench "* ]]; then
      $ODYSSEY_RT bench layers --only kv8 --out "$K/bench.json" > /dev/null 2> "$K/bench.log"
      echo "kv8 bench rc=$?"; grep -E "^(decode|append) " "$K/bench.log"
      stamp "kv8: bench done"
    fi
    if [[ $parts == *" ppl "* ]]; then
      for m in "${models[@]}"; do
        read -r name dir data L _ <<< "$m"
        a=$M/$name-w4a8-rtn
        [ -d "$a" ] || $ODY quantize --model "$dir" --recipe w4a8-rtn --out "$a" --force --no-sync > "$K/q-$name.log" 2>&1 ||
          { echo "$name w4a8-rtn: quantize failed"; tail -3 "$K/q-$name.log"; }
        for mm in "fp16 $dir" "w4a8-rtn $a"; do
          read -r what mdir <<< "$mm"
          for kv in fp16 int8; do
            f="$K/ppl-$name-$what-$kv"
            $ODY verify ppl --model "$mdir" --data "$data" --seq-len "$L" --max-windows "$WINDOWS" --kv-cache $kv --json > "$f.json" 2> "$f.log"
            echo "$name $what kv=$kv rc=$? $(summ "$f.json")"
          done
        done
      done
      stamp "kv8: ppl done"
    fi
    if [[ $parts == *" speed "* ]]; then
      S=${E2E_SHAPE:-llama2-7b}
      synth_models
      stamp "kv8: models ready"
      $ODYSSEY_RT speed --model /tmp/$S-w4a8 --baseline /tmp/$S --batch ${E2E_KV8_BATCH:-1,8,16,32,64} --kv-cache fp16,int8 \
        --prompt 1024 --gen ${E2E_KV8_GEN:-128} --repeats ${E2E_KV8_REPEATS:-3} > "$K/speed.json" 2> "$K/speed.log"
      echo "kv8 speed rc=$?"; grep -E "TTFT|WARNING" "$K/speed.log"
      stamp "kv8: speed done"
    fi
    python3 - "$K" "$parts" "${E2E_KV8_PPL_MAX:-0.05}" <<'PY'
import json, math, os, sys
K, parts, ppl_max = sys.argv[1], sys.argv[2].split(), float(sys.argv[3])
ok, notes = True, []
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None
if "test" in parts:
    t = load(f"{K}/test.json")
    cases = (t or {}).get("cases", [])
    good = bool(cases) and all(c.get("passed") for c in cases)
    ok &= good
    notes.append(f"test {sum(c.get('passed', False) for c in cases)}/{len(cases)} passed")
if "bench" in parts:
    b = load(f"{K}/bench.json")
    rows = (b or {}).get("decode_kv8", [])
    sp = {(r["batch"], r["kv_heads"]): r["speedup_vs_fp16"] for r in rows if "speedup_vs_fp16" in r}
    ok &= len(sp) == 12
    print("bench attention, int8 cache vs fp16 (ctx 1024, 32/32 | 32/8): " +
          ", ".join(f"b{bb} {sp.get((bb, 32), float('nan')):.2f}x|{sp.get((bb, 8), float('nan')):.2f}x" for bb in (1, 2, 4, 8, 16, 64)))
    if sp:
        notes.append("attention b16 MHA %.2fx" % sp.get((16, 32), float("nan")))
if "ppl" in parts:
    cost = []
    for name in ("tiny-llama", "small-llama-outliers", "stories260K"):
        for what in ("fp16", "w4a8-rtn"):
            a, c = load(f"{K}/ppl-{name}-{what}-fp16.json"), load(f"{K}/ppl-{name}-{what}-int8.json")
            if not a or not c or not a.get("ppl") or not c.get("ppl") or c.get("kv_cache") != "int8":
                print(f"ppl {name} {what}: missing"); ok = False; continue
            rel = (c["ppl"] - a["ppl"]) / a["ppl"]
            bad = not math.isfinite(rel) or abs(rel) > ppl_max
            ok &= not bad
            print(f"ppl {name:22s} {what:9s} fp16 KV {a['ppl']:.5f}  int8 KV {c['ppl']:.5f}  change {100*rel:+.3f}%" + ("  BEYOND E2E_KV8_PPL_MAX" if bad else ""))
            cost.append(f"{name}/{what} {100*rel:+.2f}%")
    notes.append("ppl cost " + ", ".join(cost))
if "speed" in parts:
    s = load(f"{K}/speed.json")
    rows = (s or {}).get("rows", [])
    fp16base = {r["batch"]: r for r in rows if r.get("path") == "fp16"}
    q = {(r["batch"], r.get("kv_cache")): r for r in rows if r.get("path") != "fp16"}
    batches = sorted({b for b, _ in q})
    print("speed synthetic 7B w4a8-rtn, decode tok/s: batch | fp16 KV | int8 KV | int8/fp16 | vs FP16 model (fp16 KV): fp16 KV, int8 KV | kv bytes/token fp16, int8")
    for bb in batches:
        a, c, f = q.get((bb, "fp16")), q.get((bb, "int8")), fp16base.get(bb)
        if not a or not c:
            ok = False; print(f"  {bb}: missing"); continue
        ok &= a.get("same_tokens_every_run", False) and c.get("same_tokens_every_run", False)
        r = c["decode_tokens_per_s"] / a["decode_tokens_per_s"]
        vs = (f"{a['decode_tokens_per_s']/f['decode_tokens_per_s']:.2f}x, {c['decode_tokens_per_s']/f['decode_tokens_per_s']:.2f}x" if f else "-")
        print(f"  {bb:3d} | {a['decode_tokens_per_s']:9.1f} | {c['decode_tokens_per_s']:9.1f} | {r:.3f}x | {vs} | {a['kv_bytes_per_token']}, {c['kv_bytes_per_token']}")
        if bb in (8, 16):
            notes.append(f"b{bb} decode int8/fp16 KV {r:.2f}x" + (f", W4A8+int8KV vs FP16 {c['decode_tokens_per_s']/f['decode_tokens_per_s']:.2f}x" if f else ""))
    ok &= bool(batches)
print("kv8: %s (%s)" % ("PASS" if ok else "FAIL", "; ".join(notes)))
PY
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
