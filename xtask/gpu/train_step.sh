#!/usr/bin/env bash
# The training step, umcl against PyTorch eager, side by side on this host.
#
#   [DEVICE=cuda|cpu] [QUICK=0|1] [PYTHON=...] bash train_step.sh BUNDLE_DIR OUT_DIR
#
# BUNDLE_DIR holds bin/umcl and reference/train_step.py (a bundle of `cargo xtask gpu-bundle`,
# or target/bench/train-step-bundle made by `cargo xtask bench`). For every case it runs
# `umcl bench step` and the reference with the same settings, one after the other, and writes
#   OUT_DIR/train_step.jsonl  one JSON line per measurement (ours and the reference's record,
#                             plus ratio and, when FLOPs are known, MFU),
#   OUT_DIR/train_step.tsv    one result line per case: umcl-bench-row, group, case, ours,
#                             reference, unit, higher, device, note (the format of
#                             xtask/src/bench.rs; printed at the end too, which is where
#                             `cargo xtask bench` reads them; run.sh collects the file),
#   OUT_DIR/train_step/       each run's JSON and stderr.
# Environment (defaults in brackets):
#   DEVICE      cuda or cpu [cuda]
#   QUICK       1: tiny shapes and one timed step, to check the script runs [0]
#   PYTHON      python with torch, torchvision, transformers [/opt/torch/.venv/bin/python]
#   CASES       space-separated model:batch list [cuda: resnet50-bert-base:64
#               resnet50-bert-base:128 vit-b16-bert-base:64 vit-b16-bert-base:128
#               resnet50-image-only:64; cpu: resnet50-bert-base:64 vit-b16-bert-base:32
#               resnet50-image-only:64 (the reference cannot hold ViT-B/16 at 64 in 24 GiB)]
#   WARMUP, STEPS  untimed and timed steps [cuda 5, 20; cpu 1, 3]
#   THREADS     intra-op threads for both [cpu: nproc; cuda: unset]
#   PEAK_TFLOPS the device's dense peak for MFU [cuda 989 (H200 bf16); cpu unset: no MFU]
#   UNFUSED     1: also time ours with the per-tensor AdamW, first case only [cuda 1, cpu 0]
#   HEAP        1: also time ours with glibc's default heap (--cpu-heap system) and the
#               reference with ours (GLIBC_TUNABLES below), every case [0]
# The exit status is 1 when any run failed; the other cases still run.
set -u -o pipefail

BUNDLE=${1:?usage: train_step.sh BUNDLE_DIR OUT_DIR}
OUT=${2:?usage: train_step.sh BUNDLE_DIR OUT_DIR}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
PYTHON=${PYTHON:-/opt/torch/.venv/bin/python}
UMCL="$BUNDLE/bin/umcl"
REF="$BUNDLE/reference/train_step.py"
for f in "$UMCL" "$REF"; do
    [ -e "$f" ] || { echo "train_step.sh: $f is missing" >&2; exit 1; }
done
case "$DEVICE" in
    cuda)
        CASES=${CASES:-"resnet50-bert-base:64 resnet50-bert-base:128 vit-b16-bert-base:64 vit-b16-bert-base:128 resnet50-image-only:64"}
        WARMUP=${WARMUP:-5} STEPS=${STEPS:-20} PEAK_TFLOPS=${PEAK_TFLOPS:-989}
        UNFUSED=${UNFUSED:-1} THREADS=${THREADS:-}
        ;;
    cpu)
        CASES=${CASES:-"resnet50-bert-base:64 vit-b16-bert-base:32 resnet50-image-only:64"}
        WARMUP=${WARMUP:-1} STEPS=${STEPS:-3} PEAK_TFLOPS=${PEAK_TFLOPS:-}
        UNFUSED=${UNFUSED:-0} THREADS=${THREADS:-$(nproc)}
        ;;
    *) echo "train_step.sh: DEVICE must be cuda or cpu, got $DEVICE" >&2; exit 2 ;;
esac
SHAPE=()
if [ "$QUICK" = 1 ]; then
    # Tiny shapes: a check that every piece runs, not a measurement.
    SHAPE=(--seq 16 --image-size 64)
    WARMUP=1 STEPS=1
    CASES=$(for c in $CASES; do echo "${c%%:*}:2"; done | sort -u | tr '\n' ' ')
fi
THREAD_ARGS=()
[ -n "$THREADS" ] && THREAD_ARGS=(--threads "$THREADS")
mkdir -p "$OUT/train_step"
JSONL="$OUT/train_step.jsonl"
TSV="$OUT/train_step.tsv"
: > "$JSONL"
: > "$TSV"

echo "train_step.sh: device $DEVICE, quick $QUICK, warm-up $WARMUP, steps $STEPS, threads ${THREADS:-default}, cases: $CASES"
FAILED=0
FIRST=1
for c in $CASES; do
    model=${c%%:*}
    batch=${c##*:}
    tag="$model-b$batch"
    common=(--model "$model" --batch "$batch" --warmup "$WARMUP" --steps "$STEPS"
            --device "$DEVICE" ${THREAD_ARGS[@]+"${THREAD_ARGS[@]}"} ${SHAPE[@]+"${SHAPE[@]}"})
    flops=()
    [[ $model == vit-* ]] && flops=(--count-flops)
    echo "--- $tag: umcl"
    ours="$OUT/train_step/$tag.umcl.json"
    ref="$OUT/train_step/$tag.pytorch.json"
    unfused="$OUT/train_step/$tag.umcl-unfused.json"
    ours_sys="$OUT/train_step/$tag.umcl-system.json"
    ref_keep="$OUT/train_step/$tag.pytorch-keep.json"
    rm -f "$ours" "$ref" "$unfused" "$ours_sys" "$ref_keep"
    if ! "$UMCL" bench step "${common[@]}" --json "$ours" 2> "$OUT/train_step/$tag.umcl.log"; then
        echo "train_step.sh: umcl failed on $tag (see $OUT/train_step/$tag.umcl.log):" >&2
        tail -5 "$OUT/train_step/$tag.umcl.log" >&2
        FAILED=1
    fi
    if [ "$UNFUSED" = 1 ] && [ "$FIRST" = 1 ]; then
        echo "--- $tag: umcl, per-tensor AdamW"
        "$UMCL" bench step "${common[@]}" --no-fused --json "$unfused" \
            2> "$OUT/train_step/$tag.umcl-unfused.log" || FAILED=1
    fi
    FIRST=0
    echo "--- $tag: PyTorch eager"
    if ! "$PYTHON" "$REF" "${common[@]}" ${flops[@]+"${flops[@]}"} --json "$ref" \
        2> "$OUT/train_step/$tag.pytorch.log"; then
        echo "train_step.sh: the reference failed on $tag (see $OUT/train_step/$tag.pytorch.log):" >&2
        tail -5 "$OUT/train_step/$tag.pytorch.log" >&2
        FAILED=1
    fi
    if [ "${HEAP:-0}" = 1 ]; then
        echo "--- $tag: umcl, glibc's default heap"
        "$UMCL" bench step "${common[@]}" --cpu-heap system --json "$ours_sys" \
            2> "$OUT/train_step/$tag.umcl-system.log" || FAILED=1
        echo "--- $tag: PyTorch eager with umcl's heap policy"
        GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615 \
            "$PYTHON" "$REF" "${common[@]}" --json "$ref_keep" \
            2> "$OUT/train_step/$tag.pytorch-keep.log" || FAILED=1
    fi
    # One JSON line per measurement and one result line per case.
    "$PYTHON" - "$ours" "$ref" "$unfused" "${PEAK_TFLOPS:-0}" "$JSONL" "$TSV" "$tag" "$ours_sys" "$ref_keep" <<'EOF' || FAILED=1
import json, os, sys
ours_p, ref_p, unfused_p, peak, jsonl, tsv, tag, ours_sys_p, ref_keep_p = sys.argv[1:10]
peak = float(peak) * 1e12
def load(p):
    if not os.path.exists(p):
        return None
    with open(p) as fh:
        return json.loads(fh.readline())
ours, ref, unfused = load(ours_p), load(ref_p), load(unfused_p)
ours_sys, ref_keep = load(ours_sys_p), load(ref_keep_p)
if ref_keep is not None:
    ref_keep["heap"] = "umcl keep policy (GLIBC_TUNABLES)"
flops = (ref or {}).get("flops_per_step")
rows = [r for r in (ours, unfused, ours_sys, ref, ref_keep) if r is not None]
for r in rows:
    r["case"] = tag
    if flops:
        r["flops_per_step"] = flops
        achieved = flops / r["median_step_s"]
        r["achieved_tflops"] = achieved / 1e12
        r["mfu"] = achieved / peak if peak > 0 else None
        r["peak_tflops"] = peak / 1e12 if peak > 0 else None
    if ours is not None and ref is not None:
        r["ratio_ours_over_ref"] = ours["samples_per_s"] / ref["samples_per_s"]
with open(jsonl, "a") as fh:
    for r in rows:
        fh.write(json.dumps(r) + "\n")
        print(json.dumps({k: r.get(k) for k in ("impl", "case", "optimizer", "samples_per_s", "median_step_s", "params", "mfu", "ratio_ours_over_ref")}))
if ours is None and ref is None:
    sys.exit(1)
device = (ours or ref)["device_name"]
notes = [(ours or ref)["dtype"], f"threads {(ours or ref)['threads']}"]
if ours is not None and ref is not None:
    same = ours["params"] == ref["params"]
    notes.append("params equal" if same else f"params differ: {ours['params']} vs {ref['params']}")
if unfused is not None:
    notes.append(f"ours per-tensor AdamW {unfused['samples_per_s']:.4g} samples/s")
if ours_sys is not None:
    notes.append(f"ours with glibc's default heap {ours_sys['samples_per_s']:.4g} samples/s")
if ref_keep is not None:
    notes.append(f"PyTorch with umcl's heap policy {ref_keep['samples_per_s']:.4g} samples/s")
if flops and peak > 0:
    m = lambda r: f"{100 * r['mfu']:.1f}%" if r is not None else "-"
    notes.append(f"MFU ours {m(ours)} ref {m(ref)} of {peak / 1e12:g} TFLOP/s")
fmt = lambda r: f"{r['samples_per_s']:.6g}" if r is not None else ""
clean = lambda s: " ".join(str(s).split())  # no tabs or newlines inside a field
if ours is not None:  # a result line needs our number; the reference's may be missing
    with open(tsv, "a") as fh:
        fh.write("\t".join(["umcl-bench-row", "train_step", tag, fmt(ours), fmt(ref), "samples/s",
                            "higher", clean(device), clean("; ".join(notes))]) + "\n")
if ours is None or ref is None:
    sys.exit(1)
EOF
done
echo "train_step.sh: wrote $JSONL and $TSV"
cat "$TSV"
exit $FAILED
