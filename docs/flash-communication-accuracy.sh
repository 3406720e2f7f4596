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
: > "$OUT"
sim() { # model tp bits group [--symmetric]
  "$BIN" sim allreduce --model "$SHARED/models/$1" --data "$SHARED/data/wikitext2/wiki.test.raw" \
    --seq-len 512 --max-windows 64 --tp "$2" --bits "$3" --group "$4" ${5:-} --json |
    jq -c --arg m "$1" '{model: $m, tp, bits, group, symmetric, bytes_per_element, ppl_reference, ppl, ratio, kl_mean, top1_agreement, seconds}' | tee -a "$OUT"
}
for m in "${models[@]}"; do
  for tp in 2 4 8; do
    sim "$m" "$tp" 16 0
    # Groups from {16, 32, 64, 128} that divide hidden/tp, and hidden/tp itself (one group per chunk).
    hidden=$(jq .hidden_size "$SHARED/models/$m/config.json")
    chunk=$((hidden / tp))
    for g in $( (printf '%s\n' 16 32 64 128 "$chunk") | sort -nu); do
      [ $((chunk % g)) -eq 0 ] || continue
      for bits in 8 4; do sim "$m" "$tp" "$bits" "$g"; done
    done
    sim "$m" "$tp" 4 16 --symmetric
  done
done
# Markdown rows:
# jq -r '"| \(.model) | \(.tp) | \(if .bits==16 then "16 (control)" else "INT\(.bits)\(if .symmetric then " sym" else "" end)" end) | \(.group) | \(.bytes_per_element) | \(.ppl_reference*1000|round/1000) | \(.ppl*1000|round/1000) | \((.ratio-1)*100*1000|round/1000)% | \(.kl_mean) |"' "$OUT"
