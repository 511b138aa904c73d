"""PyTorch eager reference for the losses side-by-side bench (`benches/losses_vs_torch.rs`).

Times forward + backward of CLIP and the label-aware losses on the very inputs the Rust bench
used (it writes them as raw little-endian files plus a JSON header), so both sides do the same
work: normalise, B x B logits, targets and false-negative mask built from the label codes,
both cross-entropy directions, backward to the features and the logit scale.

The loss itself is the independent PyTorch reference of the umcl-losses tests
(`tests/reference/make_fixtures.py`: `reference_loss`, `clip_reference`), imported, not
copied. That module builds targets pair by pair with Python sets (exact but O(B^2) in
Python); here they are built with matmuls on the label codes, as a PyTorch user would, and
`--check` (run before every timing) proves the two agree on the fixture labels and on random
ones.

Run with the reference venv (or the GPU host's python):
  .venv-ref/bin/python crates/umcl-losses/benches/reference/losses_bench.py \
      --inputs target/bench/raw/loss_inputs --device cpu --threads 1
Prints one JSON line per (batch, variant): {"batch", "variant", "device", "threads",
"iters", "ms_median", "ms_min", "loss", "torch"}.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# The loss module: next to this script in the GPU bundle, under tests/reference in the repo.
for cand in (HERE, os.path.join(HERE, "..", "..", "tests", "reference")):
    if os.path.exists(os.path.join(cand, "make_fixtures.py")):
        sys.path.insert(0, cand)
        break
try:
    import safetensors.torch  # noqa: F401  (make_fixtures imports it to write fixtures)
except ImportError:  # a GPU host's torch venv may lack it; only the loss functions are used
    import types
    _st = types.ModuleType("safetensors")
    _st.torch = types.ModuleType("safetensors.torch")
    _st.torch.save_file = None
    sys.modules["safetensors"], sys.modules["safetensors.torch"] = _st, _st.torch
import make_fixtures as ref  # noqa: E402

# The variants of benches/common/mod.rs that have a dense PyTorch counterpart.
VARIANTS = {
    "clip": None,
    "multi_positive": dict(target="multi_positive", similarity="jaccard", uncertain="ignore",
                           label_temperature=0.1, threshold=None),
    "multi_positive_masked": dict(target="multi_positive", similarity="jaccard",
                                  uncertain="ignore", label_temperature=0.1, threshold=0.5),
    "soft": dict(target="soft", similarity="cosine", uncertain="ignore", label_temperature=0.1,
                 threshold=None),
}


def targets_torch(codes, cfg, dtype):
    """Target matrix T [B, B] and removed mask R (bool) from label codes [B, K], vectorised.

    Same definition as make_fixtures.targets: positive set P_i, comparable set C_i, pairs
    compare on C_i & C_j; agree when the positive sets are equal there; similarity Jaccard or
    cosine of the compared positive sets (1 when both empty)."""
    pol = cfg["uncertain"]
    unc = codes == -1
    pos = (codes == 1) | (unc & (pol == "as_positive"))
    cmp = (codes != -1) | (pol != "ignore")
    known = ((codes == 1) | (codes == 0) | (unc & (pol != "ignore"))).any(dim=1)
    p, c = pos.to(dtype), cmp.to(dtype)
    inter = p @ p.T  # |P_i & P_j| (P is inside C)
    a = p @ c.T  # |P_i & C_j|
    b = c @ p.T  # |C_i & P_j|
    n = codes.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=codes.device)
    both = known[:, None] & known[None, :]
    if cfg["similarity"] == "jaccard":
        sim = inter / (a + b - inter).clamp_min(1)
    else:
        sim = inter / (a * b).sqrt().clamp_min(1)
    sim = torch.where((a + b) == 0, torch.ones_like(sim), sim)
    if cfg["target"] == "identity":
        t = eye.to(dtype)
        support = eye
    elif cfg["target"] == "multi_positive":
        agree = eye | (both & (a == inter) & (b == inter))
        t = agree.to(dtype)
        t = t / t.sum(dim=1, keepdim=True)
        support = agree
    else:  # soft
        support = eye | both
        lg = torch.where(eye, torch.ones_like(sim), sim) / cfg["label_temperature"]
        t = torch.softmax(lg.masked_fill(~support, float("-inf")), dim=1)
    removed = torch.zeros(n, n, dtype=torch.bool, device=codes.device)
    if cfg["threshold"] is not None:
        removed = both & (sim >= cfg["threshold"]) & ~support & ~eye
    return t, removed


def loss_of(img, txt, scale, codes, cfg):
    if cfg is None:
        return ref.clip_reference(img, txt, scale)
    t, r = targets_torch(codes, cfg, img.dtype)
    return ref.reference_loss(img, txt, scale, t, r, 0.5, 0.5)


def check():
    """The vectorised targets equal make_fixtures.targets (Python sets, pair by pair)."""
    gen = torch.Generator().manual_seed(0)
    rand = torch.randint(-2, 2, (48, 6), generator=gen).tolist()
    for labels in (ref.LABELS, rand):
        codes = torch.tensor(labels, dtype=torch.int64)
        for name, cfg in VARIANTS.items():
            if cfg is None:
                continue
            want_t, want_r, _, _ = ref.targets(labels, cfg)
            got_t, got_r = targets_torch(codes, cfg, torch.float64)
            if not torch.allclose(got_t, want_t, atol=1e-12) or not torch.equal(got_r, want_r):
                raise SystemExit(f"losses_bench: vectorised targets of {name} differ from "
                                 "make_fixtures.targets")


def load_inputs(prefix, batch, device):
    with open(f"{prefix}_B{batch}.json") as fh:
        head = json.load(fh)

    def raw(name, dtype, shape):
        with open(f"{prefix}_B{batch}.{name}.bin", "rb") as fh:
            data = bytearray(fh.read())
        return torch.frombuffer(data, dtype=dtype).reshape(shape).to(device)

    n, d, k = head["batch"], head["dim"], head["labels"]
    return (raw("img", torch.float32, (n, d)), raw("txt", torch.float32, (n, d)),
            raw("labels", torch.int64, (n, k)), head)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", required=True, help="prefix of the files the Rust bench wrote")
    ap.add_argument("--batches", default="1024,4096")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per case")
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--max-iters", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    check()
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    for batch in [int(b) for b in args.batches.split(",")]:
        img, txt, codes, head = load_inputs(args.inputs, batch, dev)
        for name in args.variants.split(","):
            cfg = VARIANTS[name]

            def step():
                i = img.detach().requires_grad_(True)
                t = txt.detach().requires_grad_(True)
                s = torch.tensor(math.log(100.0), device=dev, requires_grad=True)
                loss = loss_of(i, t, s, codes, cfg)
                loss.backward()
                return loss

            value = step().item()  # warm-up
            step()
            sync()
            times = []
            start = time.perf_counter()
            while len(times) < args.max_iters and (
                    len(times) < args.min_iters or time.perf_counter() - start < args.seconds):
                t0 = time.perf_counter()
                step()
                sync()
                times.append(time.perf_counter() - t0)
            print(json.dumps({
                "batch": batch, "variant": name, "device": dev.type, "threads": args.threads,
                "iters": len(times), "ms_median": 1e3 * statistics.median(times),
                "ms_min": 1e3 * min(times), "loss": value, "torch": torch.__version__,
            }), flush=True)


if __name__ == "__main__":
    main()
