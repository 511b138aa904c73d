"""Reference numbers for crates/umcl-train/tests/metrics.rs.

Run from the repository root with the reference venv (numpy + torch; no scikit-learn):

    .venv-ref/bin/python crates/umcl-train/tests/reference/metrics_reference.py

It writes crates/umcl-train/tests/fixtures/metrics_reference.json. Every number is computed
here by formulas written independently of the Rust code:

- AUC: the average-rank (Mann-Whitney) formula, checked against the trapezoid area under the
  full ROC curve (one point per distinct threshold), both in float64.
- ROC: every (fpr, tpr) point at each distinct threshold, descending.
- multiclass: confusion matrix by np.add.at; macro-F1 over the labels present in truth or
  prediction (scikit-learn's f1_score(average="macro") semantics, zero_division=0).
- zero-shot: softmax(scale * cos) in float64 with torch; multi-label log-odds
  scale * (cos(pos) - cos(neg)).
- retrieval: rank = 1 + #(other candidates with similarity >= matched similarity - 1e-6), so a
  tie counts against the query; the data hold a duplicated image and a repeated text. float64.
- logistic regression: standardised features (train mean/std, ddof 0), objective
  mean CE + ||W||^2 / (2 c n), minimised in float64 by torch.optim.LBFGS (strong Wolfe) to a
  gradient below 1e-8.
"""

import json
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "metrics_reference.json")


def f32_list(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64).tolist()


def average_ranks(x):
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def auc_rank(scores, labels):
    labels = np.asarray(labels, dtype=bool)
    p, n = labels.sum(), (~labels).sum()
    r = average_ranks(np.asarray(scores, dtype=np.float64))
    return (r[labels].sum() - p * (p + 1) / 2.0) / (p * n)


def roc_full(scores, labels):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    pts = [(0.0, 0.0)]
    for t in np.unique(scores)[::-1]:
        sel = scores >= t
        pts.append(((sel & ~labels).sum() / (~labels).sum(), (sel & labels).sum() / labels.sum()))
    return pts


def trapezoid(pts):
    return sum((x1 - x0) * (y0 + y1) / 2.0 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))


def macro_f1(truth, pred, classes):
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (truth, pred), 1)
    f1s = []
    for c in range(classes):
        tp, sup, prd = m[c, c], m[c].sum(), m[:, c].sum()
        if sup + prd == 0:
            continue
        p = tp / prd if prd else 0.0
        r = tp / sup if sup else 0.0
        f1s.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(f1s)), m.tolist()


def normalise(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def fit_logreg(x, y, classes, c):
    mean, std = x.mean(0), x.std(0)
    std[std < 1e-12] = 1.0
    xs = torch.tensor((x - mean) / std)
    yt = torch.tensor(y)
    n, d = xs.shape
    w = torch.zeros(classes, d, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    lam = 1.0 / (c * n)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=2000, tolerance_grad=1e-13,
                            tolerance_change=1e-16, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ w.T + b, yt) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    loss = closure()
    gmax = max(w.grad.abs().max().item(), b.grad.abs().max().item())
    assert gmax < 1e-8, gmax
    return mean, std, w.detach(), b.detach(), loss.item()


def main():
    rng = np.random.default_rng(20260728)
    out = {}

    # AUC / ROC: scores rounded to one decimal, so many ties across labels.
    auc_cases = []
    for n, shift in [(60, 0.8), (200, 0.3), (25, -0.5)]:
        labels = rng.random(n) < 0.35
        scores = np.round(rng.normal(size=n) + shift * labels, 1)
        full = roc_full(scores, labels)
        a = auc_rank(scores, labels)
        assert abs(a - trapezoid(full)) < 1e-12
        auc_cases.append({"scores": scores.tolist(), "labels": labels.tolist(), "auc": a, "roc_full": full})
    out["auc"] = auc_cases

    # Multiclass from predictions.
    truth = rng.integers(0, 4, size=50)
    pred = np.where(rng.random(50) < 0.6, truth, rng.integers(0, 4, size=50))
    f1, conf = macro_f1(truth, pred, 5)  # class 4 never occurs: left out of the mean
    out["multiclass"] = {"truth": truth.tolist(), "pred": pred.tolist(), "classes": 5,
                         "accuracy": float((truth == pred).mean()), "macro_f1": f1, "confusion": conf}

    # Zero-shot multiclass.
    img = rng.normal(size=(12, 5)).astype(np.float32)
    cls = rng.normal(size=(3, 5)).astype(np.float32)
    zt = rng.integers(0, 3, size=12)
    cos = normalise(img) @ normalise(cls).T
    probs = torch.softmax(torch.tensor(10.0 * cos), dim=1).numpy()
    zp = cos.argmax(1)
    zf1, _ = macro_f1(zt, zp, 3)
    out["zero_shot"] = {"images": f32_list(img), "classes": f32_list(cls), "truth": zt.tolist(), "scale": 10.0,
                        "probabilities": probs.tolist(), "predictions": zp.tolist(),
                        "accuracy": float((zt == zp).mean()), "macro_f1": zf1}

    # Zero-shot multi-label: log-odds, AUC per class over the known labels (code -1 = unknown).
    img = rng.normal(size=(40, 6)).astype(np.float32)
    pos = rng.normal(size=(3, 6)).astype(np.float32)
    neg = rng.normal(size=(3, 6)).astype(np.float32)
    ni, npos, nneg = normalise(img), normalise(pos), normalise(neg)
    logodds = 20.0 * (ni @ npos.T - ni @ nneg.T)
    codes = np.where(rng.random((40, 3)) < 0.2, -1, (rng.random((40, 3)) < 0.4 + 0.2 * (logodds > 0)).astype(int))
    codes[:, 2] = np.where(codes[:, 2] == -1, -1, 0)  # class 2: no positive -> AUC undefined
    codes[0, 2] = -1
    aucs = []
    for c in range(3):
        known = codes[:, c] >= 0
        lab = codes[known, c] == 1
        aucs.append(auc_rank(logodds[known, c], lab) if 0 < lab.sum() < len(lab) else None)
    defined = [a for a in aucs if a is not None]
    out["multilabel"] = {"images": f32_list(img), "pos": f32_list(pos), "neg": f32_list(neg), "scale": 20.0,
                         "codes": codes.tolist(), "log_odds": logodds.tolist(), "aucs": aucs,
                         "mean_auc": float(np.mean(defined))}

    # Retrieval.
    ti = rng.normal(size=(15, 4)).astype(np.float32)
    tt = (ti + rng.normal(scale=0.9, size=(15, 4))).astype(np.float32)
    ti[4] = ti[3]  # one image shared by two samples
    tt[8] = tt[7]  # one report repeated
    sim = normalise(ti) @ normalise(tt).T
    others = ~np.eye(15, dtype=bool)

    def rank_and_tie(row, own, i):
        ahead = others[i] & (row >= own - 1e-6)
        tie = others[i] & (np.abs(row - own) <= 1e-6)
        return int(1 + ahead.sum()), bool(tie.any())

    i2t_t = [rank_and_tie(sim[i], sim[i, i], i) for i in range(15)]
    t2i_t = [rank_and_tie(sim[:, i], sim[i, i], i) for i in range(15)]
    i2t = [r for r, _ in i2t_t]
    t2i = [r for r, _ in t2i_t]

    def rec(rt):
        r = np.asarray([k for k, _ in rt])
        return {"r1": float((r <= 1).mean()), "r5": float((r <= 5).mean()), "r10": float((r <= 10).mean()),
                "median_rank": float(np.median(r)), "tied": int(sum(t for _, t in rt))}

    out["retrieval"] = {"images": f32_list(ti), "texts": f32_list(tt), "i2t_ranks": i2t, "t2i_ranks": t2i,
                        "i2t": rec(i2t_t), "t2i": rec(t2i_t)}

    # Logistic regression: three overlapping Gaussian classes in 6-D, two strengths.
    means = rng.normal(scale=1.2, size=(3, 6))
    ytr = np.repeat(np.arange(3), 30)
    xtr = (means[ytr] + rng.normal(size=(90, 6)) * np.array([1, 2, 0.5, 1, 3, 1])).astype(np.float32)
    yte = np.repeat(np.arange(3), 10)
    xte = (means[yte] + rng.normal(size=(30, 6)) * np.array([1, 2, 0.5, 1, 3, 1])).astype(np.float32)
    fits = []
    for c in [1.0, 0.05]:
        mean, std, w, b, loss = fit_logreg(xtr.astype(np.float64), ytr, 3, c)
        xs = torch.tensor((xte.astype(np.float64) - mean) / std)
        p = torch.softmax(xs @ w.T + b, dim=1).numpy()
        fits.append({"c": c, "objective": loss, "test_probabilities": p.tolist(),
                     "weights": w.numpy().tolist()})
    out["logreg"] = {"train_x": f32_list(xtr), "train_y": ytr.tolist(), "test_x": f32_list(xte),
                     "test_y": yte.tolist(), "fits": fits}

    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
