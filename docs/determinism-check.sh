#!/usr/bin/env bash
# Byte-identical artifacts on this machine's CPU (docs/determinism.md): quantizes tiny-llama
# with every preset (4 windows of 64 tokens of testdata/text/sample.txt) under several
# settings and requires every file of every artifact to have the same sha256 as under the
# first setting:
#   default binary, all cores, the CPU's default gemm kernel      (the reference)
#   default binary, GOMAXPROCS=1, ODYSSEY_GEMM_KERNEL=avx2-6x16   (if this CPU has AVX2+FMA)
#   default binary, GOMAXPROCS=3, ODYSSEY_NO_SIMD=1, generic-4x4 (pure-Go kernels, odd core count)
#   -tags purego binary, all cores
# Binaries: ODY_BIN (default bin/odyssey-linux-amd64) and ODY_BIN_PUREGO (default
# bin/odyssey-linux-amd64-purego); built with go when missing and go is on PATH:
#   GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -o bin/odyssey-linux-amd64 ./cmd/odyssey
#   GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -tags purego -o bin/odyssey-linux-amd64-purego ./cmd/odyssey
# Prints one line per setting, a digest of all the reference hashes (the same on every machine
# when the guarantee holds), and ends with "DETERMINISM PASS" or "DETERMINISM FAIL". About
# 20 runs of a second or two each on a 16-core AVX-512 host (the pure-Go ones are slower).
set -euo pipefail
cd "$(dirname "$0")/.."
ODY_BIN=${ODY_BIN:-bin/odyssey-linux-amd64}
ODY_BIN_PUREGO=${ODY_BIN_PUREGO:-bin/odyssey-linux-amd64-purego}
for b in "$ODY_BIN" "$ODY_BIN_PUREGO"; do
  if [ ! -x "$b" ]; then
    tags=; [ "$b" = "$ODY_BIN_PUREGO" ] && tags="-tags purego"
    GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build $tags -o "$b" ./cmd/odyssey
  fi
done
# A fixed folder: odyssey.json records the recipe path given on the command line, so the same
# paths on every machine make the artifacts comparable across machines.
work=/tmp/odyssey-determinism-check
rm -rf "$work" && mkdir -p "$work"
rec() { printf 'version: 1\nbase: %s\ncalibration:\n  samples: 4\n  seq_len: 64\n  seed: 3\n' "$1" > "$work/$1.yaml"; echo "$work/$1.yaml"; }
presets=(w4a8-rtn w4a8-fptq w4a8-odyssey w4a16-gptq w8a8-smoothquant)
# run NAME BIN [ENV...]: every preset into the same --out path (so that no path differs in
# odyssey.json), then the sha256 of every file, sorted, into $work/NAME.sha256.
run() {
  local name=$1 bin=$2; shift 2
  local t0=$SECONDS
  : > "$work/$name.sha256"
  for p in "${presets[@]}"; do
    rm -rf "$work/out"
    extra=(); [ "$p" = w8a8-smoothquant ] && extra=(--export compressed-tensors)
    env "$@" "$bin" quantize --device cpu --model testdata/tiny-llama --out "$work/out" --recipe "$(rec "$p")" \
      --calib testdata/text/sample.txt --no-sync "${extra[@]}" > "$work/$name.$p.log" 2>&1 ||
      { echo "$name $p: quantize failed"; tail -5 "$work/$name.$p.log"; return 1; }
    (cd "$work/out" && find . -type f | sort | xargs sha256sum | sed "s|^|$p |") >> "$work/$name.sha256"
  done
  echo "$name: $(wc -l < "$work/$name.sha256") files, $((SECONDS - t0)) s"
}
fail=0
run ref "$ODY_BIN"
settings=(nosimd-generic-procs3 purego)
run nosimd-generic-procs3 "$ODY_BIN" GOMAXPROCS=3 ODYSSEY_NO_SIMD=1 ODYSSEY_GEMM_KERNEL=generic-4x4 || fail=1
run purego "$ODY_BIN_PUREGO" || fail=1
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  run avx2-procs1 "$ODY_BIN" GOMAXPROCS=1 ODYSSEY_GEMM_KERNEL=avx2-6x16 || fail=1
  settings+=(avx2-procs1)
fi
for s in "${settings[@]}"; do
  if [ -f "$work/$s.sha256" ] && cmp -s "$work/ref.sha256" "$work/$s.sha256"; then
    echo "$s: identical to ref"
  else
    echo "$s: DIFFERS from ref"; diff "$work/ref.sha256" "$work/$s.sha256" | head -10 || true; fail=1
  fi
done
# The digest leaves out odyssey.json, which names the tool version and Go version.
echo "ref digest (compare across machines; docs/determinism.md records this VM's): $(grep -v odyssey.json "$work/ref.sha256" | sha256sum | cut -c1-16)"
[ $fail = 0 ] && echo "DETERMINISM PASS" || { echo "DETERMINISM FAIL"; exit 1; }
