#!/usr/bin/env bash
# Data-parallel scaling on one machine: training samples/s of the phantom-cpu preset with
#   1 rank x 1 thread, 1 rank x 2 threads, 2 ranks x 1 thread (umcl train --nproc 2, Gloo on
#   127.0.0.1; with the gradient all-reduce overlapped with the backward pass, the default, with
#   1 MiB buckets, and after the backward pass), and 1 rank x 1 thread pinned to one CPU
#   (taskset),
# each the median of REPEATS runs of STEPS steps. The configurations take turns (round r runs
# each once), so a slow spell of the machine touches all of them alike. samples/s is the
# training loop's own figure at the last step (rank 0's metrics.jsonl: global samples over loop
# wall time, before the final validation), so process start, rendezvous and data indexing are
# left out.
#
# Usage (from the repository root, after `cargo build --release -p umcl` and
# `umcl data phantom --out data/phantom`):
#   flock /tmp/umcl-heavy.lock crates/umcl/scripts/dist-scaling.sh [STEPS] [REPEATS]
# ROWS="2 3 4" runs only those configurations (numbered as printed).
set -euo pipefail
UMCL=${UMCL:-target/release/umcl}
STEPS=${1:-40}
REPEATS=${2:-3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

NAMES=(
  "1 rank x 1 thread"
  "1 rank x 2 threads"
  "2 ranks x 1 thread"
  "2 ranks, 1 MiB buckets"
  "2 ranks, no overlap"
  # Half of what two ranks have: one rank whose loader threads share its single CPU (in the
  # rows above a single-threaded rank's loader runs on the other, idle CPU).
  "1 rank x 1 CPU"
)
ARGS=(
  "--set run.threads=1"
  "--set run.threads=2"
  "--set run.threads=1 --nproc 2"
  "--set run.threads=1 --nproc 2 --set dist.bucket_mb=1"
  "--set run.threads=1 --nproc 2 --set dist.overlap=false"
  "--set run.threads=1"
)
PINS=("" "" "" "" "" "taskset -c 0")
ROWS=${ROWS:-"1 2 3 4 5 6"}

# One run of configuration $1 (numbered from 1), round $2: prints samples/s, and
# "/<overlapped>of<buckets>" for rank 0's gradient buckets at the last step when it has them.
once() {
  local i=$(($1 - 1)) r=$2 dir="$OUT/row$1-$2"
  # shellcheck disable=SC2086 # ARGS entries are word lists
  ${PINS[$i]} "$UMCL" train --preset phantom-cpu --quiet \
    --set run.out_dir="$OUT" --set run.name="row$1-$r" --set run.steps="$STEPS" \
    --set run.log_every="$STEPS" --set run.checkpoint_every=100000 --set eval.every=0 \
    --set eval.max_samples=16 --set data.workers=1 ${ARGS[$i]} >/dev/null
  python3 - "$dir/metrics.jsonl" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"step"' in l]
overlap = steps[-1].get("grad_buckets_overlapped")
print(f"{steps[-1]['samples_per_second']:.2f}" + (f"/{overlap[0]}of{overlap[1]}" if overlap else ""))
PY
}

echo "phantom-cpu, $STEPS steps, batch 64, data.workers=1 per rank, $(nproc) CPUs, $UMCL"
declare -A RATES
for r in $(seq 1 "$REPEATS"); do
  for row in $ROWS; do
    RATES[$row]+="$(once "$row" "$r") "
  done
done
for row in $ROWS; do
  name=${NAMES[$((row - 1))]}
  read -r -a rates <<<"${RATES[$row]}"
  # Rank 0's gradient buckets at the last step: how many started inside the backward pass.
  case ${rates[0]} in */*) echo "  ($name: ${rates[0]#*/} gradient buckets started inside the backward pass)" ;; esac
  printf '%s\n' "${rates[@]%%/*}" | sort -g | awk -v n="$row. $name" '{a[NR]=$1} END {printf "%-26s median %7.2f samples/s  (runs: ", n, a[int((NR+1)/2)]; for (i=1;i<=NR;i++) printf "%s%s", a[i], (i<NR?", ":")\n")}'
done
