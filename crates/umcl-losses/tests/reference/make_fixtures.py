"""Reference fixtures for the umcl-losses tests (PyTorch, written independently of the Rust).

Run from the repository root with the reference venv:

    .venv-ref/bin/python crates/umcl-losses/tests/reference/make_fixtures.py

It writes `crates/umcl-losses/tests/fixtures/<case>.safetensors` (inputs, expected loss and
gradients, diagnostics) and `cases.json` (each case's config). Seeded: rerunning reproduces the
committed files. Label similarity is computed with Python sets, pair by pair, so it shares no
code or trick with the Rust matmul formulation.

Label codes: 1 positive, 0 negative, -1 uncertain, -2 unmentioned (absent, but comparable).
"""

import json
import math
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

# K = 5 findings, finding 0 plays "no_finding". B = 12.
LABELS = [
    [1, -2, -2, -2, -2],  # 0: no finding
    [1, 0, 0, -2, -2],  # 1: no finding, agrees with 0
    [0, 1, 0, 1, -2],  # 2: {1, 3}
    [0, 1, -1, 1, 0],  # 3: {1, 3} + uncertain 2
    [0, 1, 0, 0, -2],  # 4: {1}
    [-2, -2, -2, -2, -2],  # 5: unlabelled
    [0, 0, 1, -2, 1],  # 6: {2, 4}
    [-2, -1, -2, -2, -2],  # 7: only an uncertain finding
    [0, 1, 0, 1, 0],  # 8: {1, 3}, same as 2
    [-2, -2, -2, -2, -2],  # 9: unlabelled
    [0, 0, -2, -2, -2],  # 10: labelled, empty positive set
    [0, 0, 0, 1, 0],  # 11: {3}
]


def label_sets(row, policy):
    """(positive set, comparable set, labelled) of one sample."""
    pos, cmp, known = set(), set(), False
    for k, c in enumerate(row):
        if c == 1:
            pos.add(k), cmp.add(k)
            known = True
        elif c == 0:
            cmp.add(k)
            known = True
        elif c == -1:
            if policy == "as_positive":
                pos.add(k), cmp.add(k)
                known = True
            elif policy == "as_negative":
                cmp.add(k)
                known = True
            # ignore: not comparable, not known
        elif c == -2:
            cmp.add(k)
        else:
            raise ValueError(c)
    return pos, cmp, known


def pair(si, sj):
    """(agree, jaccard, cosine) of two samples on the findings both compare."""
    (pi, ci, _), (pj, cj, _) = si, sj
    a, b = pi & cj, pj & ci
    agree = a == b
    if not a and not b:
        return agree, 1.0, 1.0
    jac = len(a & b) / len(a | b)
    cos = 0.0 if not a or not b else len(a & b) / math.sqrt(len(a) * len(b))
    return agree, jac, cos


def targets(labels, cfg):
    """Target matrix T, removed mask R, positives count per row."""
    n = len(labels)
    sets = [label_sets(r, cfg["uncertain"]) for r in labels]
    T = torch.zeros(n, n, dtype=torch.float64)
    R = torch.zeros(n, n, dtype=torch.bool)
    support_count = []
    for i in range(n):
        li = sets[i][2]
        sims, agrees = [], []
        for j in range(n):
            lj = sets[j][2]
            ag, jac, cos = pair(sets[i], sets[j])
            sim = jac if cfg["similarity"] == "jaccard" else cos
            both = li and lj
            sims.append(sim if both else None)
            agrees.append(i == j or (both and ag))
        if cfg["target"] == "identity":
            row = [1.0 if j == i else 0.0 for j in range(n)]
        elif cfg["target"] == "multi_positive":
            cnt = sum(agrees)
            row = [1.0 / cnt if agrees[j] else 0.0 for j in range(n)]
        else:  # soft
            tau = cfg["label_temperature"]
            idx = [j for j in range(n) if j == i or sims[j] is not None]
            ex = {j: math.exp((1.0 if j == i else sims[j]) / tau) for j in idx}
            z = sum(ex.values())
            row = [ex[j] / z if j in ex else 0.0 for j in range(n)]
        support_count.append(sum(1 for v in row if v > 0.0) if cfg["target"] != "soft" else len(idx))
        T[i] = torch.tensor(row, dtype=torch.float64)
        th = cfg["threshold"]
        if th is not None:
            for j in range(n):
                if j != i and sims[j] is not None and sims[j] >= th and row[j] == 0.0:
                    R[i, j] = True
    return T, R, support_count, sum(1 for s in sets if s[2])


def reference_loss(img, txt, logit_scale, T, R, w_it, w_ti):
    x = torch.nn.functional.normalize(img, dim=1)
    y = torch.nn.functional.normalize(txt, dim=1)
    logits = logit_scale.exp() * x @ y.T

    def direction(lg):
        logp = torch.log_softmax(lg.masked_fill(R, float("-inf")), dim=1)
        return -(T * logp.masked_fill(R, 0.0)).sum(dim=1).mean()

    return w_it * direction(logits) + w_ti * direction(logits.T)


def clip_reference(img, txt, logit_scale):
    x = torch.nn.functional.normalize(img, dim=1)
    y = torch.nn.functional.normalize(txt, dim=1)
    logits = logit_scale.exp() * x @ y.T
    gt = torch.arange(logits.shape[0])
    ce = torch.nn.functional.cross_entropy
    return 0.5 * (ce(logits, gt) + ce(logits.T, gt))


BASE = dict(target="multi_positive", similarity="jaccard", uncertain="ignore",
            label_temperature=0.1, threshold=None, w_it=0.5, w_ti=0.5, dtype="float64",
            logit_scale=1.5)
CASES = [
    dict(name="clip", target="identity"),
    dict(name="mp_ignore"),
    dict(name="mp_ones_mask_jaccard", uncertain="as_positive", threshold=0.5),
    dict(name="id_mask_cosine", target="identity", similarity="cosine", uncertain="as_negative",
         threshold=0.6, w_it=0.7, w_ti=0.3),
    dict(name="soft_cosine", target="soft", similarity="cosine", uncertain="as_negative",
         label_temperature=0.2),
    dict(name="soft_jaccard_ignore", target="soft", label_temperature=0.5, w_it=1.0, w_ti=0.0),
    dict(name="mp_mask_bf16", similarity="cosine", threshold=0.4, dtype="bfloat16",
         logit_scale=math.log(1 / 0.07)),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20230712)
    n, d = len(LABELS), 8
    labels = torch.tensor(LABELS, dtype=torch.int64)
    manifest = []
    for case in CASES:
        cfg = dict(BASE, **case)
        img = torch.randn(n, d, generator=gen, dtype=torch.float64)
        txt = img + 0.7 * torch.randn(n, d, generator=gen, dtype=torch.float64)
        if cfg["dtype"] == "bfloat16":
            img, txt = img.to(torch.bfloat16), txt.to(torch.bfloat16)
        img.requires_grad_(True)
        txt.requires_grad_(True)
        # fp64 inputs compute in fp64; bf16 inputs compute in fp32 (as the Rust loss does).
        ck = torch.float64 if cfg["dtype"] == "float64" else torch.float32
        ls = torch.tensor([cfg["logit_scale"]], dtype=ck, requires_grad=True)
        T, R, support, labeled = targets(LABELS, cfg)
        loss = reference_loss(img.to(ck), txt.to(ck), ls[0], T.to(ck), R, cfg["w_it"], cfg["w_ti"])
        loss.backward()
        tensors = {
            "img": img.detach(), "txt": txt.detach(), "labels": labels,
            "logit_scale": ls.detach(), "loss": loss.detach().reshape(1),
            "grad_img": img.grad, "grad_txt": txt.grad, "grad_logit_scale": ls.grad,
            "masked_pairs": torch.tensor([int(R.sum())], dtype=torch.int64),
            "positives": torch.tensor([sum(support)], dtype=torch.int64),
            "labeled_rows": torch.tensor([labeled], dtype=torch.int64),
        }
        if cfg["target"] == "identity" and cfg["threshold"] is None:
            ls2 = ls.detach().clone().requires_grad_(True)
            i2, t2 = img.detach().clone().requires_grad_(True), txt.detach().clone().requires_grad_(True)
            c = clip_reference(i2.to(ck), t2.to(ck), ls2[0])
            c.backward()
            tensors.update(clip_loss=c.detach().reshape(1), clip_grad_img=i2.grad,
                           clip_grad_txt=t2.grad, clip_grad_logit_scale=ls2.grad)
        save_file({k: v.contiguous() for k, v in tensors.items()},
                  os.path.join(OUT, f"{cfg['name']}.safetensors"))
        manifest.append(cfg)
        print(f"{cfg['name']}: loss {loss.item():.6f}, masked {int(R.sum())}, "
              f"positives {sum(support)}, labelled {labeled}")
    with open(os.path.join(OUT, "cases.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
