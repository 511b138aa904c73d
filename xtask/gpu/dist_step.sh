#!/usr/bin/env bash
# The cost of the data-parallel code path: the training step on a 1-rank process group (NCCL on
# CUDA, Gloo on the CPU; features all-gathered, gradients all-reduced in buckets) against the
# plain step, same binary, same settings, alternating plain/dist/plain/dist.
#
#   [DEVICE=cuda|cpu] [QUICK=0|1] [CASE=model:batch] [PYTHON=python3] bash dist_step.sh BUNDLE_DIR OUT_DIR
#
# PYTHON (any Python 3) reads the runs' JSON summaries.
#
# Writes OUT_DIR/dist_step.tsv (one result line in the format of xtask/src/bench.rs:
# umcl-bench-row, group, case, ours = dist samples/s, reference = plain samples/s, unit, higher,
# device, note; also printed) and each run's JSON and stderr in OUT_DIR/dist_step/.
# Target (issue 9): dist / plain >= 0.97 on one GPU. The exit status is 1 when a run failed.
set -u -o pipefail

BUNDLE=${1:?usage: dist_step.sh BUNDLE_DIR OUT_DIR}
OUT=${2:?usage: dist_step.sh BUNDLE_DIR OUT_DIR}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
UMCL="$BUNDLE/bin/umcl"
PYTHON=${PYTHON:-python3}
[ -x "$UMCL" ] || { echo "dist_step.sh: $UMCL is missing" >&2; exit 1; }
case "$DEVICE" in
    cuda) CASE=${CASE:-resnet50-bert-base:64}; WARMUP=${WARMUP:-5}; STEPS=${STEPS:-20} ;;
    cpu) CASE=${CASE:-resnet50-bert-base:8}; WARMUP=${WARMUP:-1}; STEPS=${STEPS:-3} ;;
    *) echo "dist_step.sh: DEVICE must be cuda or cpu, got $DEVICE" >&2; exit 2 ;;
esac
SHAPE=()
if [ "$QUICK" = 1 ]; then
    SHAPE=(--seq 16 --image-size 64)
    WARMUP=1 STEPS=2 CASE="${CASE%%:*}:2"
fi
model=${CASE%%:*}
batch=${CASE##*:}
tag="$model-b$batch"
mkdir -p "$OUT/dist_step"
common=(--model "$model" --batch "$batch" --warmup "$WARMUP" --steps "$STEPS" --device "$DEVICE"
        ${SHAPE[@]+"${SHAPE[@]}"})
FAILED=0
for round in 1 2; do
    for mode in plain dist; do
        extra=()
        [ "$mode" = dist ] && extra=(--dist)
        json="$OUT/dist_step/$tag.$mode.$round.json"
        echo "--- $tag: $mode, round $round"
        if ! "$UMCL" bench step "${common[@]}" ${extra[@]+"${extra[@]}"} --json "$json" \
            2> "$OUT/dist_step/$tag.$mode.$round.log"; then
            echo "dist_step.sh: $mode round $round failed:" >&2
            tail -5 "$OUT/dist_step/$tag.$mode.$round.log" >&2
            FAILED=1
        fi
    done
done
# One field of a run's JSON summary (empty when the file or the field is missing).
field() {
    "$PYTHON" -c 'import json, sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2])
except (OSError, ValueError):
    v = None
print("" if v is None else v)' "$1" "$2"
}
# The best round of each mode (the slower round is the one disturbed by start-up effects).
best() {
    local mode=$1 v best=""
    for f in "$OUT"/dist_step/"$tag.$mode".*.json; do
        [ -f "$f" ] || continue
        v=$(field "$f" samples_per_s)
        [ -n "$v" ] || continue
        if [ -z "$best" ] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$v; fi
    done
    echo "$best"
}
dist=$(best dist)
plain=$(best plain)
device=$(field "$OUT/dist_step/$tag.plain.1.json" device_name)
backend=Gloo
[ "$DEVICE" = cuda ] && backend=NCCL
: > "$OUT/dist_step.tsv"
if [ -n "$dist" ]; then # a result line needs our number; the reference's may be missing
    printf 'umcl-bench-row\tdist_step\t%s-1rank-%s\t%s\t%s\tsamples/s\thigher\t%s\t%s\n' \
        "$tag" "$backend" "$dist" "$plain" "${device:-$DEVICE}" \
        "ours = 1-rank $backend data-parallel step, reference = plain step (same binary); best of 2 rounds each" \
        > "$OUT/dist_step.tsv"
fi
cat "$OUT/dist_step.tsv"
[ -n "$dist" ] && [ -n "$plain" ] || FAILED=1
exit $FAILED
