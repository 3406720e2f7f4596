#!/usr/bin/env bash
# Regenerates the measurements of docs/flash-communication-accuracy.md: `odyssey sim allreduce`
# on WikiText-2 (L 512, the first 64 windows) for every TP degree, codec and group that fits
# the model, one JSON line per run in $OUT (default /tmp/flashcomm-table.jsonl).
#   docs/flash-communication-accuracy.sh [MODEL...]   (default: small-llama small-llama-outliers)
# Every run is about 30-50 s on 2 cores. Summarise the lines with the jq command at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${ODYSSEY_SHARED:-../shared}
OUT=${OUT:-/tmp/flashcomm-table.jsonl}
BIN=${BIN:-/tmp/odyssey-flashcomm}
go build -o "$BIN" ./cmd/odyssey
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(small-llama small-llama-outliers)
[ "${FRESH:-0}" = 1 ] && : > "$OUT"
touch "$OUT"
sim() { # model tp bits group [--symmetric]; skips a configuration already in $OUT
  local sym=false; [ -n "${5:-}" ] && sym=true
  local grp=$4; [ "$3" = 16 ] && grp=0
  if jq -s -e --arg m "$1" --argjson tp "$2" --argjson b "$3" --argjson g "$grp" --argjson s "$sym" \
      'any(.[]; .model==$m and .tp==$tp and .bits==$b and .group==$g and .symmetric==$s)' "$OUT" >/dev/null; then
    return
  fi
  "$BIN" sim allreduce --model "$(modelpath "$1")" --data "$SHARED/data/wikitext2/wiki.test.raw" \
    --seq-len 512 --max-windows 64 --tp "$2" --bits "$3" --group "$4" ${5:-} --json |
    jq -c --arg m "$1" '{model: $m, tp, bits, group, symmetric, bytes_per_element, ppl_reference, ppl, ratio, kl_mean, top1_agreement, seconds}' | tee -a "$OUT"
}
# A model name is a folder of $SHARED/models, or a path (a quantized artifact).
modelpath() { case "$1" in */*) echo "$1" ;; *) echo "$SHARED/models/$1" ;; esac; }
for m in "${models[@]}"; do
  hidden=$(jq .hidden_size "$(modelpath "$m")/config.json")
  for tp in 2 4 8; do
    sim "$m" "$tp" 16 0
    # Groups 32 and 64 where they divide hidden/tp, 16 at TP 8, and hidden/tp itself (one
    # group per chunk, the largest that fits).
    chunk=$((hidden / tp))
    for g in $( (printf '%s\n' 32 64 "$chunk"; [ "$tp" = 8 ] && echo 16) | sort -nu); do
      [ $((chunk % g)) -eq 0 ] || continue
      for bits in 8 4; do sim "$m" "$tp" "$bits" "$g"; done
    done
  done
  sim "$m" 8 4 "$((hidden / 8))" --symmetric
done
# Markdown rows of the tables: jq -s -r --arg m MODEL -f docs/flash-communication-accuracy.jq "$OUT"
