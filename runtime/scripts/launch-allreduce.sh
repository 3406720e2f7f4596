#!/usr/bin/env bash
# launch-allreduce.sh: runs `odyssey-rt bench allreduce` as one process per GPU (the NCCL
# all-reduce of Flash Communication, runtime/src/flashcomm.cu) and collects one JSON per rank;
# with --command speed, `odyssey-rt speed --tp N` instead (the tensor-parallel executor, issue 11
# part 2: each rank loads its shard, o_proj/down_proj all-reduced), and checks that every rank
# generated the same tokens (their tokens_hash per row); with --command ppl, `odyssey-rt ppl --tp N`
# (each rank scores the windows; the ranks all-gather a hash of their NLLs and fail if they differ).
#
#   runtime/scripts/launch-allreduce.sh [--gpus N] [--timeout S] [--out DIR] [--bin PATH] [--dry-run]
#                                        [--share-gpu N] [--command bench-allreduce|speed|ppl]
#                                        [-- ARGS for the command, e.g. --sizes 256K..256M --bits 8,4,
#                                            or for speed --model DIR --batch 1,8 --tp-bits 8]
#
# Rank r gets CUDA_VISIBLE_DEVICES = the r-th visible GPU, ODY_RANK=r, ODY_WORLD=N and the NCCL
# unique id through a file written by rank 0 (--uid-file). NVLink multicast (NVLS) is always off:
# NCCL_NVLS_ENABLE=0 is exported here, whatever the caller's environment says.
#
# Failure handling: NCCL has no timeout of its own for a collective whose peer died, so every rank
# runs a watchdog (--timeout, passed to odyssey-rt) that calls ncclCommAbort and exits 3 with a
# message when a step makes no progress for that long or NCCL reports an asynchronous error; each
# process also runs under `timeout` (S + 60 s) in case the watchdog itself is stuck; and when one
# rank exits non-zero this script stops the others it started (by their process ids) after a grace
# period, and exits non-zero naming the rank.
#
# --dry-run: on one GPU, prints the N commands it would run, then runs rank 0 alone as a world of
# one (a real one-rank communicator: the same code path, all-to-all and all-gather to itself).
# --share-gpu N: N ranks, every one on the first visible GPU (a one-GPU test of the real
# multi-rank path: ncclSend/ncclRecv between processes, the cross-rank hash check). NCCL 2.x
# refuses a communicator with two ranks on one device ("Duplicate GPU detected", invalid usage):
# then every rank exits with that message and so does this script.
set -uo pipefail
export NCCL_NVLS_ENABLE=0

gpus=""
timeout_s=300
out=${OUT:-/tmp/ody-out}
bin=runtime/build/odyssey-rt
dry=0
share=0
command=bench-allreduce
while [ $# -gt 0 ]; do
  case $1 in
  --command) command=$2; shift 2 ;;
  --gpus) gpus=$2; shift 2 ;;
  --timeout) timeout_s=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --bin) bin=$2; shift 2 ;;
  --dry-run) dry=1; shift ;;
  --share-gpu) share=$2; shift 2 ;;
  --) shift; break ;;
  -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
  *) echo "launch-allreduce: unknown flag $1 (bench arguments go after --)" >&2; exit 2 ;;
  esac
done
extra=("$@")
case $command in
bench-allreduce) sub=(bench allreduce); world_flag=--world; tag=allreduce ;;
speed) sub=(speed); world_flag=--tp; tag=speed ;;
ppl) sub=(ppl); world_flag=--tp; tag=ppl ;;
*) echo "launch-allreduce: --command must be bench-allreduce, speed or ppl, not $command" >&2; exit 2 ;;
esac

# The GPUs: the caller's CUDA_VISIBLE_DEVICES list, else every GPU nvidia-smi lists.
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  IFS=, read -r -a devs <<< "$CUDA_VISIBLE_DEVICES"
else
  n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  devs=()
  for ((i = 0; i < n; i++)); do devs+=("$i"); done
fi
[ -z "$gpus" ] && gpus=${#devs[@]}
if [ "$share" -gt 0 ]; then
  [ ${#devs[@]} -ge 1 ] || { echo "launch-allreduce: --share-gpu needs one visible GPU" >&2; exit 2; }
  [ $dry -eq 0 ] || { echo "launch-allreduce: --share-gpu and --dry-run exclude each other" >&2; exit 2; }
  gpus=$share
  first=${devs[0]}
  devs=()
  for ((i = 0; i < share; i++)); do devs+=("$first"); done
fi
if [ "$gpus" -lt 1 ] || [ "$gpus" -gt "${#devs[@]}" ]; then
  echo "launch-allreduce: $gpus GPUs asked, ${#devs[@]} visible" >&2
  exit 2
fi
[ -x "$bin" ] || { echo "launch-allreduce: $bin is not built (cmake --build runtime/build)" >&2; exit 2; }
mkdir -p "$out"
uid="$out/nccl-uid.$$"
rm -f "$uid"

cmd_for() { # rank world
  echo "CUDA_VISIBLE_DEVICES=${devs[$1]} ODY_RANK=$1 ODY_WORLD=$2 NCCL_NVLS_ENABLE=0" \
    "timeout --kill-after=10 $((timeout_s + 60)) $bin ${sub[*]} --rank $1 $world_flag $2" \
    "--uid-file $uid --timeout $timeout_s ${extra[*]:-}"
}

world=$gpus
if [ $dry -eq 1 ]; then
  echo "launch-allreduce --dry-run: the $gpus commands of a real run:" >&2
  for ((r = 0; r < gpus; r++)); do echo "  $(cmd_for $r $gpus)" >&2; done
  echo "running rank 0 alone as a world of 1:" >&2
  world=1
fi

pids=()
for ((r = 0; r < world; r++)); do
  CUDA_VISIBLE_DEVICES=${devs[$r]} ODY_RANK=$r ODY_WORLD=$world \
    timeout --kill-after=10 $((timeout_s + 60)) "$bin" "${sub[@]}" --rank $r $world_flag $world \
    --uid-file "$uid" --timeout "$timeout_s" "${extra[@]}" \
    > "$out/$tag-rank$r.json" 2> "$out/$tag-rank$r.log" &
  pids+=($!)
done

# Wait for every rank; when one fails, give the others a grace period (their watchdogs should
# abort), then stop the ones still running.
status=0
left=$world
while [ $left -gt 0 ]; do
  wait -n "${pids[@]}" 2>/dev/null
  rc=$?
  left=0
  for ((r = 0; r < world; r++)); do
    if kill -0 "${pids[$r]}" 2>/dev/null; then left=$((left + 1)); fi
  done
  if [ $rc -ne 0 ] && [ $status -eq 0 ]; then
    status=$rc
    echo "launch-allreduce: a rank exited with status $rc; the others get 30 s to abort" >&2
    for ((t = 0; t < 30; t++)); do
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive -eq 0 ] && break
      sleep 1
    done
    for ((r = 0; r < world; r++)); do
      if kill -0 "${pids[$r]}" 2>/dev/null; then
        echo "launch-allreduce: stopping rank $r (pid ${pids[$r]})" >&2
        kill "${pids[$r]}" 2>/dev/null
      fi
    done
  fi
done
for ((r = 0; r < world; r++)); do
  wait "${pids[$r]}" 2>/dev/null
  rc=$?
  [ $rc -ne 0 ] && echo "launch-allreduce: rank $r exited with status $rc: $(tail -2 "$out/$tag-rank$r.log" | tr '\n' ' ')" >&2
done
rm -f "$uid" "$uid.tmp"
tail -n +1 "$out/$tag-rank0.log" >&2
# speed: every rank must have generated the same tokens (the all-reduce leaves every rank the
# same residual stream, and the LM head is replicated).
if [ "$command" = speed ] && [ $status -eq 0 ]; then
  python3 - "$out" "$world" <<'PY' || status=1
import json, sys
out, world = sys.argv[1], int(sys.argv[2])
rows = [json.load(open(f"{out}/speed-rank{r}.json"))["rows"] for r in range(world)]
bad = [(r, i) for r in range(1, world) for i, row in enumerate(rows[r]) if row["tokens_hash"] != rows[0][i]["tokens_hash"]]
for r, i in bad:
    print(f"launch-allreduce: rank {r} row {i} tokens {rows[r][i]['tokens_hash']}, rank 0 {rows[0][i]['tokens_hash']}", file=sys.stderr)
print(f"launch-allreduce speed: {world} ranks, {len(rows[0])} rows, token hashes " + ("DIFFER" if bad else "identical"), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
fi
exit $status
