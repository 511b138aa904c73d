#!/usr/bin/env bash
# Data-parallel scaling on one machine: training samples/s of the phantom-cpu preset with
#   1 rank x 1 thread, 1 rank x 2 threads, 2 ranks x 1 thread (umcl train --nproc 2, Gloo on
#   127.0.0.1), and 1 rank x 1 thread pinned to one CPU (taskset),
# each the median of REPEATS runs of STEPS steps. samples/s is the training loop's own figure
# at the last step (rank 0's metrics.jsonl: global samples over loop wall time, before the final
# validation), so process start, rendezvous and data indexing are left out.
#
# Usage (from the repository root, after `cargo build --release -p umcl` and
# `umcl data phantom --out data/phantom`):
#   flock /tmp/umcl-heavy.lock crates/umcl/scripts/dist-scaling.sh [STEPS] [REPEATS]
set -euo pipefail
UMCL=${UMCL:-target/release/umcl}
STEPS=${1:-40}
REPEATS=${2:-3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

run() { # name threads [extra args...]; PIN="taskset -c 0" runs it on one CPU
  local name=$1 threads=$2
  shift 2
  local rates=()
  for r in $(seq 1 "$REPEATS"); do
    ${PIN:-} "$UMCL" train --preset phantom-cpu --quiet \
      --set run.out_dir="$OUT" --set run.name="$name-$r" --set run.steps="$STEPS" \
      --set run.threads="$threads" --set run.log_every="$STEPS" \
      --set run.checkpoint_every=100000 --set eval.every=0 --set eval.max_samples=16 \
      --set data.workers=1 "$@" >/dev/null
    rates+=("$(python3 - "$OUT/$name-$r/metrics.jsonl" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"step"' in l]
print(f"{steps[-1]['samples_per_second']:.2f}")
PY
)")
  done
  printf '%s\n' "${rates[@]}" | sort -g | awk -v n="$name" '{a[NR]=$1} END {printf "%-22s median %7.2f samples/s  (runs: ", n, a[int((NR+1)/2)]; for (i=1;i<=NR;i++) printf "%s%s", a[i], (i<NR?", ":")\n")}'
}

echo "phantom-cpu, $STEPS steps, batch 64, data.workers=1 per rank, $(nproc) CPUs, $UMCL"
run "1 rank x 1 thread" 1
run "1 rank x 2 threads" 2
run "2 ranks x 1 thread" 1 --nproc 2
# Half of what two ranks have: one rank whose loader threads share its single CPU (in the rows
# above a single-threaded rank's loader runs on the other, idle CPU).
PIN="taskset -c 0" run "1 rank x 1 CPU" 1
