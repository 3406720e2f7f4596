#!/usr/bin/env bash
# launch-allreduce.sh: runs `odyssey-rt bench allreduce` as one process per GPU (the NCCL
# all-reduce of Flash Communication, runtime/src/flashcomm.cu) and collects one JSON per rank.
#
#   runtime/scripts/launch-allreduce.sh [--gpus N] [--timeout S] [--out DIR] [--bin PATH] [--dry-run]
#                                        [--share-gpu N]
#                                        [-- ARGS for bench allreduce, e.g. --sizes 256K..256M --bits 8,4]
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
while [ $# -gt 0 ]; do
  case $1 in
  --gpus) gpus=$2; shift 2 ;;
  --timeout) timeout_s=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --bin) bin=$2; shift 2 ;;
  --dry-run) dry=1; shift ;;
  --share-gpu) share=$2; shift 2 ;;
  --) shift; break ;;
  -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "launch-allreduce: unknown flag $1 (bench arguments go after --)" >&2; exit 2 ;;
  esac
done
extra=("$@")

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
    "timeout --kill-after=10 $((timeout_s + 60)) $bin bench allreduce --rank $1 --world $2" \
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
    timeout --kill-after=10 $((timeout_s + 60)) "$bin" bench allreduce --rank $r --world $world \
    --uid-file "$uid" --timeout "$timeout_s" "${extra[@]}" \
    > "$out/allreduce-rank$r.json" 2> "$out/allreduce-rank$r.log" &
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
  [ $rc -ne 0 ] && echo "launch-allreduce: rank $r exited with status $rc: $(tail -2 "$out/allreduce-rank$r.log" | tr '\n' ' ')" >&2
done
rm -f "$uid" "$uid.tmp"
tail -n +1 "$out/allreduce-rank0.log" >&2
exit $status
