#!/usr/bin/env bash
# The GPU part of umcl's benchmark suite, run from a bundle made by `cargo xtask gpu-bundle`.
#
#   PYTHON=/opt/torch/.venv/bin/python ./run.sh [--device cuda|cpu] [--quick] [--out DIR]
#
# PYTHON: the host's python with torch (default /opt/torch/.venv/bin/python); its torch/lib
# goes on LD_LIBRARY_PATH for our binaries, and it runs the PyTorch references.
# --device: cuda (default) or cpu (to check the bundle on a machine without a GPU).
# --quick: B = 1024 only and short timings (a smoke test of the whole bundle).
# --out: the output folder (default ./out-<UTC time> next to this script).
# Writes DIR/run.log (everything printed), DIR/raw/*.tsv (one result line per case:
# umcl-bench-row, group, case, ours, reference, unit, lower|higher, device, note; the format of
# xtask/src/bench.rs) and DIR/results.tsv (all of them).
# Each step runs even when an earlier one failed; the exit status is 1 when any failed.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEVICE=cuda
QUICK=0
OUT="$HERE/out-$(date -u +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=${2:?--device needs cuda or cpu}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "run.sh: --device must be cuda or cpu" >&2; exit 2 ;; esac
PYTHON=${PYTHON:-/opt/torch/.venv/bin/python}
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/run.log"
exec > >(tee -a "$LOG") 2>&1

FAILED=()
step() { # step NAME COMMAND...: runs one step, logs its time and status
    local name=$1; shift
    echo
    echo "=== $name ($(date -u +%H:%M:%S) UTC)"
    local t0=$SECONDS
    "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || FAILED+=("$name")
}

echo "umcl GPU bundle run: device $DEVICE, quick $QUICK, $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
echo "host: $(hostname), $(nproc) cores"
cat "$HERE/BUILD-INFO" 2>/dev/null
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "run.sh: $PYTHON cannot import torch; set PYTHON to the host's python with torch" >&2
    exit 1
fi
TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda, "| cuda available", torch.cuda.is_available(), "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

step "umcl info" "$HERE/bin/umcl" info --device "$DEVICE"

losses() {
    local batches=1024,4096 seconds=3
    [ "$QUICK" = 1 ] && batches=1024 seconds=0.5
    UMCL_BENCH_DEVICE=$DEVICE UMCL_BENCH_BATCHES=$batches UMCL_BENCH_SECONDS=$seconds \
        UMCL_BENCH_OUT="$OUT/raw" UMCL_REF_PYTHON="$PYTHON" \
        UMCL_LOSSES_REF="$HERE/reference/losses_bench.py" \
        "$HERE/bin/losses_vs_torch"
}
step "losses vs PyTorch eager" losses

if [ -f "$HERE/train_step.sh" ]; then
    step "training step vs PyTorch eager" env DEVICE="$DEVICE" QUICK="$QUICK" PYTHON="$PYTHON" \
        bash "$HERE/train_step.sh" "$HERE" "$OUT/raw"
else
    echo
    echo "=== training step: train_step.sh is not in the bundle, skipped"
fi

if [ -f "$HERE/dist_step.sh" ]; then
    step "1-rank data-parallel step vs plain step" env DEVICE="$DEVICE" QUICK="$QUICK" PYTHON="$PYTHON" \
        bash "$HERE/dist_step.sh" "$HERE" "$OUT/raw"
fi

grep -h "^umcl-bench-row$(printf '\t')" "$OUT"/raw/*.tsv > "$OUT/results.tsv" 2>/dev/null
echo
echo "=== results (ratio = how many times faster umcl is than the reference)"
awk -F'\t' '{
    ratio = "-"
    if ($5 != "" && $4 > 0 && $5 > 0) ratio = sprintf("%.2fx", ($7 == "higher") ? $4 / $5 : $5 / $4)
    printf "%-12s %-34s %12s %12s %-10s %8s  %s\n", $2, $3, $4, ($5 == "" ? "-" : $5), $6, ratio, $8
}' "$OUT/results.tsv"
echo
echo "log: $LOG"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "failed steps: ${FAILED[*]}"
    exit 1
fi
echo "all steps passed"
